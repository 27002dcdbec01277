-- 0006: per-operator receipt requests for long messages, and the TLS trust settings of the operator link.
--
-- receipt_parts   'all':  every part of a message the gateway split asks the SMSC for a receipt (as before);
--                 'last': only the last part asks, the others ask none -- one receipt per message from the
--                         operator instead of one per part (the partner gets one per message either way).
-- receipt_request 'final':      the parts that ask, ask for a receipt in every final state (registered_delivery
--                               1) whatever the partner asked, so the message log learns every final state;
--                 'as_partner': they ask what the partner asked (none / failures only / every final state).
-- tls_ca_file     PEM file of the CA certificates that sign this SMSC's certificate ('' = the system's CAs).
-- tls_server_name the name its certificate must carry, also sent as SNI ('' = host).
-- Columns with constant defaults are added instantly; existing operators keep today's behaviour.
ALTER TABLE operators
    ADD COLUMN receipt_parts text NOT NULL DEFAULT 'all' CHECK (receipt_parts IN ('all', 'last')),
    ADD COLUMN receipt_request text NOT NULL DEFAULT 'final'
        CHECK (receipt_request IN ('final', 'as_partner')),
    ADD COLUMN tls_ca_file text NOT NULL DEFAULT '',
    ADD COLUMN tls_server_name text NOT NULL DEFAULT '';
