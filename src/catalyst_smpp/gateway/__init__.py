"""The gateway: partners in, operators out, receipts back (see docs/dev/gateway.md).

Submodules import lazily where they are built in parallel; the names below are the stable ones.
"""

from catalyst_smpp.gateway.accept import AcceptHandler
from catalyst_smpp.gateway.auth import PostgresAuthenticator
from catalyst_smpp.gateway.delivery import PartnerDelivery
from catalyst_smpp.gateway.gateway import Gateway
from catalyst_smpp.gateway.ids import IdGenerator, format_id, node_number, parse_id
from catalyst_smpp.gateway.messages import Address, DlrMessage, MoMessage, MtMessage
from catalyst_smpp.gateway.routing import Router

__all__ = [
    "AcceptHandler",
    "Address",
    "DlrMessage",
    "Gateway",
    "IdGenerator",
    "MoMessage",
    "MtMessage",
    "PartnerDelivery",
    "PostgresAuthenticator",
    "Router",
    "format_id",
    "node_number",
    "parse_id",
]
