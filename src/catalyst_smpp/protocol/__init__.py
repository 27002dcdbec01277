"""The SMPP v3.4 protocol core: PDUs, codec, framing and the session state machine.

Sans-IO: nothing here touches a socket, a clock or a random generator, and
importing it imports neither trio nor nats nor psycopg.
"""
