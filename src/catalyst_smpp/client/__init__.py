"""The SMPP client (ESME role) on trio; see docs/dev/sessions-api.md."""

from catalyst_smpp.client.client import ClientConfig, ClientSession, ClientStats, SmppClient
from catalyst_smpp.transport.session import DEFERRED, BindType

__all__ = ["DEFERRED", "BindType", "ClientConfig", "ClientSession", "ClientStats", "SmppClient"]
