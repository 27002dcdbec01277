"""What the gateway sees of the bus: its records and its interface (:class:`MessageBus`).

Two implementations satisfy the interface: :class:`catalyst_smpp.bus.Bus` (JetStream through nats-py, the
one that runs) and :class:`catalyst_smpp.bus.memory.MemoryBus` (in memory on the trio clock, for tests of
gateway rules).  ``tests/bus/test_contract.py`` runs the same contract against both, so the in-memory one
cannot drift from what JetStream does in the ways the gateway relies on.  Nothing here imports nats-py.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Protocol

import attrs
import trio

from ..config import NatsConfig, StreamConfig
from .names import Kind, Names

__all__ = [
    "MSG_ID_HEADER",
    "AckKind",
    "BusConsumer",
    "BusError",
    "ConnectionState",
    "ConnectionStates",
    "ConsumerState",
    "KeyValue",
    "MessageBus",
    "Msg",
    "OpIds",
    "PubAck",
    "PublishError",
    "PublishErrorKind",
    "PublishInput",
    "PublishItem",
    "StreamState",
    "redelivery_backoff",
]

MSG_ID_HEADER = "Nats-Msg-Id"


class BusError(Exception):
    """A bus operation failed as a whole (not per message)."""


class ConnectionState(enum.Enum):
    CONNECTING = "connecting"
    """Initial connect in progress (retried forever)."""
    CONNECTED = "connected"
    RECONNECTING = "reconnecting"
    """Lost the server; nats-py reconnects forever. Publishes fail per message meanwhile."""
    CLOSED = "closed"


class PublishErrorKind(enum.Enum):
    TIMEOUT = "timeout"
    """No ack in time: the message may or may not be stored (retry with the same msg_id is safe)."""
    STORE_FULL = "store_full"
    """The stream or this subject is at its limit (discard=new)."""
    NO_STREAM = "no_stream"
    """No stream listens on the subject."""
    CONNECTION = "connection"
    """Not connected / outbound buffer full."""
    SERVER = "server"
    """Another JetStream error."""


class ConnectionStates:
    """The connection-state part of :class:`MessageBus`, shared by its implementations (which set
    ``_state`` and, on each change, set and replace ``_state_changed``)."""

    _state: ConnectionState
    _state_changed: trio.Event

    @property
    def state(self) -> ConnectionState:
        return self._state

    @property
    def connected(self) -> bool:
        return self._state is ConnectionState.CONNECTED

    async def wait_state_change(self) -> ConnectionState:
        """Wait for the next change of :attr:`state` and return the new state."""
        await self._state_changed.wait()
        return self._state

    async def wait_connected(self) -> None:
        while self._state is not ConnectionState.CONNECTED:
            if self._state is ConnectionState.CLOSED:
                raise BusError("bus closed")
            await self.wait_state_change()


@attrs.frozen
class PubAck:
    stream: str
    seq: int
    duplicate: bool = False
    """True when JetStream recognised the msg_id as already stored (within the duplicate window)."""

    ok = True


@attrs.frozen
class PublishError:
    kind: PublishErrorKind
    description: str = ""
    code: int | None = None

    ok = False

    @property
    def temporary(self) -> bool:
        """Worth retrying later (partner: ESME_RMSGQFUL); otherwise a system error (ESME_RSYSERR)."""
        return self.kind in (
            PublishErrorKind.TIMEOUT,
            PublishErrorKind.STORE_FULL,
            PublishErrorKind.CONNECTION,
        )


@attrs.frozen
class PublishItem:
    subject: str
    payload: bytes
    headers: Mapping[str, str] | None = None
    msg_id: str | None = None


PublishInput = PublishItem | tuple[str, bytes, Mapping[str, str] | None, str | None]


class Msg:
    """One JetStream message from a pull consumer.  Ack it with the consumer's batch methods.

    ``headers`` is parsed from the wire on first use (the gateway never reads them on its hot path).
    """

    __slots__ = (
        "_headers",
        "_raw_headers",
        "_reply",
        "consumer_seq",
        "data",
        "num_delivered",
        "num_pending",
        "stream_seq",
        "subject",
        "timestamp",
    )  # fmt: skip

    def __init__(
        self,
        subject: str,
        data: bytes,
        headers: dict[str, str] | None,
        stream_seq: int,
        consumer_seq: int,
        num_delivered: int,
        num_pending: int,
        timestamp: float,
        reply: str,
        raw_headers: bytes | None = None,
    ) -> None:
        self.subject = subject
        self.data = data
        self._headers = headers
        self._raw_headers = raw_headers
        self.stream_seq = stream_seq
        self.consumer_seq = consumer_seq
        self.num_delivered = num_delivered
        self.num_pending = num_pending
        self.timestamp = timestamp
        """Epoch seconds when the message was stored."""
        self._reply = reply

    @property
    def headers(self) -> dict[str, str] | None:
        raw = self._raw_headers
        if raw is not None:
            self._raw_headers = None
            self._headers = _parse_headers(raw)
        return self._headers

    @property
    def msg_id(self) -> str | None:
        h = self.headers
        return h.get(MSG_ID_HEADER) if h else None

    def __repr__(self) -> str:
        return (
            f"Msg(subject={self.subject!r}, data={self.data!r}, headers={self.headers!r}, "
            f"stream_seq={self.stream_seq}, consumer_seq={self.consumer_seq}, "
            f"num_delivered={self.num_delivered}, num_pending={self.num_pending}, timestamp={self.timestamp})"
        )


_HDR_LINE = b"NATS/1.0"


def _parse_headers(raw: bytes) -> dict[str, str] | None:
    """A NATS header block (``NATS/1.0[ status]\\r\\nName: Value\\r\\n...``) → dict, as nats-py reads it."""
    if not raw.startswith(_HDR_LINE):
        return None
    first, _, rest = raw.partition(b"\r\n")
    out: dict[str, str] = {}
    status = first[len(_HDR_LINE) :].strip()
    if status:
        code, _, desc = status.partition(b" ")
        if code.isdigit():
            out["Status"] = code.decode()
        if desc:
            out["Description"] = desc.decode(errors="replace")
    for line in rest.split(b"\r\n"):
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key = name.strip().decode(errors="replace")
        if key:
            out[key] = value.strip().decode(errors="replace")
    return out or None


class AckKind(enum.Enum):
    ACK = b"+ACK"
    NAK = b"-NAK"
    TERM = b"+TERM"
    IN_PROGRESS = b"+WPI"


@attrs.frozen
class StreamState:
    messages: int
    bytes: int
    first_seq: int
    last_seq: int
    consumers: int


@attrs.frozen
class ConsumerState:
    num_pending: int
    """Stored but not yet delivered."""
    num_ack_pending: int
    """Delivered, waiting for an ack."""
    num_redelivered: int
    delivered_stream_seq: int
    ack_floor_stream_seq: int


def redelivery_backoff(sc: StreamConfig) -> tuple[float, ...]:
    """The consumer's redelivery delays: ``sc.backoff`` cut to ``max_deliver - 1`` entries (JetStream wants
    ``max_deliver > len(backoff)``).  Empty: every redelivery after ``ack_wait``."""
    b = tuple(sc.backoff)
    if b and 0 < sc.max_deliver <= len(b):
        b = b[: sc.max_deliver - 1]
    return b


class BusConsumer(Protocol):
    """A durable pull consumer on a work-queue stream: ``fetch`` a batch, settle it with one call per kind.

    Every message fetched is settled exactly once by the caller (ack, nak or term) or, if it is not, comes
    back after the stream's ``ack_wait`` with ``num_delivered`` one higher, until ``max_deliver``.
    """

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; early with what is there, ``[]`` after ``timeout`` with none."""
        ...

    async def ack(self, msgs: Iterable[Msg], *, flush: bool = True, wait: bool = True) -> None:
        """Done: removed from the stream.  ``wait=False``: the acks are queued for sending (no flush) and the
        call returns without waiting for the bus -- for a caller that does nothing but log a failed ack (the
        messages then come back after ``ack_wait``, as with any lost ack); later calls on the bus are sent
        after them."""
        ...

    async def nak(self, msgs: Iterable[Msg], delay: float | None = None, *, flush: bool = True) -> None:
        """Deliver again, after ``delay`` seconds if given."""
        ...

    async def term(self, msgs: Iterable[Msg], *, flush: bool = True) -> None:
        """Never deliver again."""
        ...

    async def in_progress(self, msgs: Iterable[Msg], *, flush: bool = False) -> None:
        """Restart the ``ack_wait`` timer of messages still being worked on."""
        ...

    async def info(self) -> ConsumerState: ...


class KeyValue(Protocol):
    """The TTL'd key-value bucket: ``str`` keys (subject tokens, ``.``-separated), raw ``bytes`` values.

    A value lives for the bucket's TTL (``NatsConfig.kv.ttl``) after its last put; a deleted or expired key
    reads as ``None``.  Batched both ways: one call per batch.
    """

    async def put_many(
        self, items: Iterable[tuple[str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        """One result per item, in order (failures per item, never raised)."""
        ...

    async def get_many(self, keys: Iterable[str], timeout: float | None = None) -> list[bytes | None]:
        """One value (or ``None``) per key.  Raises :class:`BusError` when the bucket cannot be read."""
        ...

    async def delete_many(self, keys: Iterable[str], timeout: float | None = None) -> None:
        """Raises :class:`BusError` when a delete was not stored."""
        ...

    async def get_entry(self, key: str, timeout: float | None = None) -> tuple[bytes, int] | None:
        """The value of ``key`` and its revision (for :meth:`swap`); ``None`` when it has none (missing,
        deleted, expired).  Raises :class:`BusError` when the bucket cannot be read."""
        ...

    async def swap(self, key: str, value: bytes, revision: int, timeout: float | None = None) -> int | None:
        """Compare and set: store ``value`` only if the key's revision is still ``revision`` (0: only if the
        key has no value).  The new revision, or ``None`` when another write came first (read again and
        retry).  Raises :class:`BusError` when it could not be stored for another reason."""
        ...


class OpIds(Protocol):
    """Operator message id → the gateway's id mapping, as the octets the gateway encodes, in
    :class:`KeyValue` (``core.OpIdStore``): nothing here depends on how the gateway encodes its mappings."""

    async def put_many(
        self, items: Iterable[tuple[str, str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]: ...

    async def get_many(
        self, items: Iterable[tuple[str, str]], timeout: float | None = None
    ) -> list[bytes | None]: ...

    async def delete_many(self, items: Iterable[tuple[str, str]], timeout: float | None = None) -> None: ...


class MessageBus(Protocol):
    """The bus the gateway uses: work-queue streams per :class:`Kind`, durable pull consumers, the KV."""

    cfg: NatsConfig
    names: Names
    kv: KeyValue
    opids: OpIds
    """Operator message ids in :attr:`kv` (the gateway's id mapping)."""

    @property
    def state(self) -> ConnectionState: ...

    @property
    def connected(self) -> bool: ...

    async def wait_state_change(self) -> ConnectionState: ...

    async def wait_connected(self) -> None: ...

    def subject(self, kind: Kind, name: str) -> str: ...

    async def publish_batch(
        self, items: Iterable[PublishInput], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        """Store every item and wait for each ack; one result per item, in order, failures never raised.

        ``msg_id`` (``Nats-Msg-Id``) makes a re-publish within the stream's duplicate window a no-op that
        answers ``PubAck(duplicate=True)``.
        """
        ...

    async def publish_pair(
        self, first: Iterable[PublishInput], second: Iterable[PublishInput], timeout: float | None = None
    ) -> tuple[list[PubAck | PublishError], list[PubAck | PublishError] | None]:
        """:meth:`publish_batch` of ``first`` and then, only if every one of them was stored, of ``second``
        (its results; None when it was not published) -- for a batch whose stored items make ``second``
        true (their event rows), in one call on the bus."""
        ...

    async def consumer(self, kind: Kind, name: str | None = None) -> BusConsumer:
        """The durable consumer for ``<kind>.<name>`` (all EVENTS when ``name`` is None), shared by nodes."""
        ...

    async def delete_consumer(self, kind: Kind, name: str | None = None) -> bool: ...

    async def stream_info(self, kind: Kind) -> StreamState: ...

    async def beacon(self, topic: str, payload: bytes) -> None:
        """Send ``payload`` to every node listening on ``topic`` now (core NATS: not stored, at most once,
        lost while disconnected).  Never raises for a lost beacon."""
        ...

    def beacons(self, topic: str) -> AbstractAsyncContextManager[trio.abc.ReceiveChannel[bytes]]:
        """Listen on ``topic`` (own beacons included) while the context is open; a listener that falls
        more than a few dozen beacons behind loses the newest (beacons are periodic: the next replaces
        them)."""
        ...
