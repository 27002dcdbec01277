"""The trio side of an SMPP session, shared by the server (SMSC role) and the client (ESME role).

See docs/dev/sessions-api.md.
"""

from catalyst_smpp.transport.errors import (
    BindError,
    NotBoundError,
    ResponseTimeoutError,
    SessionClosedError,
    SessionError,
)
from catalyst_smpp.transport.net import open_stream, peer_name
from catalyst_smpp.transport.session import (
    DEFERRED,
    BindType,
    Deferred,
    Handler,
    Reply,
    SessionStats,
    SmppSession,
)

__all__ = [
    "DEFERRED",
    "BindError",
    "BindType",
    "Deferred",
    "Handler",
    "NotBoundError",
    "Reply",
    "ResponseTimeoutError",
    "SessionClosedError",
    "SessionError",
    "SessionStats",
    "SmppSession",
    "open_stream",
    "peer_name",
]
