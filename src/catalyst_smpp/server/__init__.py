"""The SMPP server (SMSC role) on trio; see docs/dev/sessions-api.md."""

from catalyst_smpp.server.auth import Account, Authenticator, BindRequest, StaticAuthenticator
from catalyst_smpp.server.server import ServerConfig, ServerSession, SmppServer, accept_all_handler
from catalyst_smpp.transport.session import DEFERRED, BindType

__all__ = [
    "DEFERRED",
    "Account",
    "Authenticator",
    "BindRequest",
    "BindType",
    "ServerConfig",
    "ServerSession",
    "SmppServer",
    "StaticAuthenticator",
    "accept_all_handler",
]
