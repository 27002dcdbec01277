"""JetStream bus: nats-py on its own asyncio thread, a batched trio-facing API.

See docs/dev/infra-api.md.  Nothing here hands asyncio objects to the caller.
"""

from .core import (
    AckKind,
    Bus,
    BusError,
    ConnectionState,
    Consumer,
    ConsumerState,
    IdMapping,
    Msg,
    OpIdStore,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishItem,
    StreamState,
    opid_key,
)
from .names import Kind, Names, token

__all__ = [
    "AckKind",
    "Bus",
    "BusError",
    "ConnectionState",
    "Consumer",
    "ConsumerState",
    "IdMapping",
    "Kind",
    "Msg",
    "Names",
    "OpIdStore",
    "PubAck",
    "PublishError",
    "PublishErrorKind",
    "PublishItem",
    "StreamState",
    "opid_key",
    "token",
]
