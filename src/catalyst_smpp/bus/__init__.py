"""The bus: work-queue streams, durable pull consumers and a TTL'd KV, behind :class:`MessageBus`.

:mod:`.api` declares the interface and its records; :class:`Bus` (:mod:`.core`, :mod:`.jetstream`,
:mod:`.bridge`) implements it on JetStream with nats-py on its own asyncio thread, every use of nats-py
internals in :mod:`.nats_internals`; :class:`.memory.MemoryBus` implements it in memory for tests.
See docs/dev/gateway.md ("The bus").  Nothing here hands asyncio objects to the caller.
"""

from .api import (
    AckKind,
    BusConsumer,
    BusError,
    ConnectionState,
    ConsumerState,
    KeyValue,
    MessageBus,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishInput,
    PublishItem,
    StreamState,
)
from .core import Bus, Consumer, NatsKeyValue, OpIdStore, opid_key
from .names import Kind, Names, token

__all__ = [
    "AckKind",
    "Bus",
    "BusConsumer",
    "BusError",
    "ConnectionState",
    "Consumer",
    "ConsumerState",
    "KeyValue",
    "Kind",
    "MessageBus",
    "Msg",
    "Names",
    "NatsKeyValue",
    "OpIdStore",
    "PubAck",
    "PublishError",
    "PublishErrorKind",
    "PublishInput",
    "PublishItem",
    "StreamState",
    "opid_key",
    "token",
]
