"""An in-memory :class:`.api.MessageBus` on the trio clock, for tests of gateway rules.

It keeps what the gateway relies on from JetStream (``tests/bus/test_contract.py`` runs the same tests
against it and against a real nats-server):

* one work-queue stream per :class:`Kind`; a publish to a subject no stream listens on fails per message
  (``NO_STREAM``); ``msg_id`` de-duplicates within the stream's ``duplicate_window`` (``PubAck.duplicate``,
  the first one's ``seq``); ``max_msgs_per_subject`` with ``discard`` "new" (``STORE_FULL``) or "old";
* durable pull consumers shared by everyone asking for the same kind and name; a fetched message is
  pending until acked (removed from the stream), termed (removed), nak'ed (back at once or after its
  delay) or not settled within ``ack_wait`` (or the ``backoff`` entry for its delivery), then delivered
  again with ``num_delivered`` one higher, at most ``max_deliver`` times; at most ``max_ack_pending``
  pending; ``in_progress`` restarts the wait;
* the KV: raw bytes values that read as ``None`` once deleted or ``kv.ttl`` after their last put, with
  revisions for compare-and-set (``get_entry`` / ``swap``);
* beacons: delivered at once to every listener of the topic (a full listener loses them, as on NATS).

Timers run on ``trio.current_time()``, so a test under pytest-trio's ``autojump_clock`` sees an ack_wait
or a nak delay pass at once.  Not modelled: stream ``max_age``/``max_bytes``, KV ``max_bytes``, connection
loss (``state`` is CONNECTED until :meth:`MemoryBus.close`), and a durable's settings changing after it
was created.
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import AsyncIterator, Iterable
from typing import Final

import attrs
import trio

from ..config import NatsConfig, StreamConfig
from .api import (
    MSG_ID_HEADER,
    BusError,
    ConnectionState,
    ConnectionStates,
    ConsumerState,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishInput,
    PublishItem,
    StreamState,
    redelivery_backoff,
)
from .core import OpIdStore
from .names import Kind, Names

__all__ = ["MemoryBus", "MemoryConsumer", "MemoryKeyValue"]

_FOREVER: Final = math.inf


@attrs.define
class _Stored:
    subject: str
    data: bytes
    headers: dict[str, str] | None
    timestamp: float


@attrs.define
class _Pending:
    """A delivered, unsettled message of one durable: deliverable again from ``due``."""

    deliveries: int
    due: float


@attrs.define
class _Durable:
    filter: str
    """An exact subject, or ``<prefix>.`` for every subject of the stream."""
    sc: StreamConfig
    backoff: tuple[float, ...]
    pending: dict[int, _Pending] = attrs.Factory(dict)
    exhausted: set[int] = attrs.Factory(set)
    """Delivered ``max_deliver`` times without an ack: never delivered again (still stored)."""
    delivered_seq: int = 0
    consumer_seq: int = 0

    def matches(self, subject: str) -> bool:
        return subject.startswith(self.filter) if self.filter.endswith(".") else subject == self.filter

    def wait_for(self, deliveries: int) -> float:
        b = self.backoff
        return b[min(deliveries, len(b)) - 1] if b else self.sc.ack_wait


class _Stream:
    def __init__(self, name: str, prefix: str, sc: StreamConfig) -> None:
        self.name = name
        self.prefix = prefix
        self.sc = sc
        self.msgs: dict[int, _Stored] = {}
        self.last_seq = 0
        self.dedup: dict[str, tuple[int, float]] = {}
        self.durables: dict[str, _Durable] = {}
        self.changed = trio.Event()

    def wake(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def remove(self, seq: int) -> None:
        self.msgs.pop(seq, None)
        for d in self.durables.values():
            d.pending.pop(seq, None)
            d.exhausted.discard(seq)

    def store(
        self, subject: str, data: bytes, headers: dict[str, str] | None, now: float
    ) -> PubAck | PublishError:
        msg_id = headers.get(MSG_ID_HEADER) if headers else None
        if msg_id:
            window = self.sc.duplicate_window
            self.dedup = {k: v for k, v in self.dedup.items() if now - v[1] < window}
            seen = self.dedup.get(msg_id)
            if seen is not None:
                return PubAck(self.name, seen[0], duplicate=True)
        limit = self.sc.max_msgs_per_subject
        if limit > 0:
            same = [s for s, m in self.msgs.items() if m.subject == subject]
            if len(same) >= limit:
                if self.sc.discard == "new":
                    return PublishError(
                        PublishErrorKind.STORE_FULL, "maximum messages per subject exceeded", 10077
                    )
                for s in same[: len(same) - limit + 1]:
                    self.remove(s)
        self.last_seq += 1
        self.msgs[self.last_seq] = _Stored(subject, data, headers, time.time())
        if msg_id:
            self.dedup[msg_id] = (self.last_seq, now)
        return PubAck(self.name, self.last_seq)


class MemoryBus(ConnectionStates):
    """:class:`.api.MessageBus` in memory.  Create inside trio (its timers are trio's clock)."""

    def __init__(self, cfg: NatsConfig | None = None) -> None:
        self.cfg = cfg or NatsConfig()
        self.names = Names(self.cfg.namespace)
        s = self.cfg.streams
        self._streams = {
            kind: _Stream(self.names.stream(kind), f"{self.names._prefix(kind)}.", sc)
            for kind, sc in ((Kind.MT, s.mt), (Kind.DLR, s.dlr), (Kind.MO, s.mo), (Kind.EVENTS, s.events))
        }
        self._state = ConnectionState.CONNECTED
        self._state_changed = trio.Event()
        self.kv = MemoryKeyValue(self)
        self.opids = OpIdStore(self.kv)
        self._listeners: dict[str, set[trio.MemorySendChannel[bytes]]] = {}

    # ---- connection (always up until closed)

    def close(self) -> None:
        self._state = ConnectionState.CLOSED
        self._state_changed.set()
        for st in self._streams.values():
            st.wake()

    def _check_open(self) -> None:
        if self._state is ConnectionState.CLOSED:
            raise BusError("bus closed")

    # ---- publish

    def subject(self, kind: Kind, name: str) -> str:
        return self.names.subject(kind, name)

    def _stream_for(self, subject: str) -> _Stream | None:
        for kind, st in self._streams.items():
            if subject.startswith(st.prefix):
                rest = subject[len(st.prefix) :]
                if rest and (kind is Kind.EVENTS or "." not in rest):
                    return st
        return None

    async def publish_batch(
        self, items: Iterable[PublishInput], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        await trio.lowlevel.checkpoint()
        out: list[PubAck | PublishError] = []
        now = trio.current_time()
        touched: set[int] = set()
        for it in items:
            if isinstance(it, PublishItem):
                subject, payload, headers, msg_id = it.subject, it.payload, it.headers, it.msg_id
            else:
                subject, payload, headers, msg_id = it
            if self._state is ConnectionState.CLOSED:
                out.append(PublishError(PublishErrorKind.CONNECTION, "closed"))
                continue
            hdr = dict(headers) if headers else None
            if msg_id:
                hdr = hdr or {}
                hdr[MSG_ID_HEADER] = msg_id
            st = self._stream_for(subject)
            if st is None:
                out.append(PublishError(PublishErrorKind.NO_STREAM, "no stream for subject"))
                continue
            out.append(st.store(subject, bytes(payload), hdr, now))
            touched.add(id(st))
        for st in self._streams.values():
            if id(st) in touched:
                st.wake()
        return out

    async def publish_pair(
        self, first: Iterable[PublishInput], second: Iterable[PublishInput], timeout: float | None = None
    ) -> tuple[list[PubAck | PublishError], list[PubAck | PublishError] | None]:
        r1 = await self.publish_batch(first, timeout)
        if not all(r.ok for r in r1):
            return r1, None
        return r1, await self.publish_batch(second, timeout)

    # ---- consumers

    def _durable(self, kind: Kind, name: str | None) -> _Durable:
        st = self._streams[kind]
        key = self.names.durable(kind, name)
        d = st.durables.get(key)
        if d is None:
            filt = st.prefix if name is None else self.names.subject(kind, name)
            d = st.durables[key] = _Durable(filt, st.sc, redelivery_backoff(st.sc))
        return d

    async def consumer(self, kind: Kind, name: str | None = None) -> MemoryConsumer:
        await trio.lowlevel.checkpoint()
        self._check_open()
        if kind is not Kind.EVENTS and not name:
            raise ValueError(f"{kind.value} consumers need an operator/partner name")
        self._durable(kind, name)
        return MemoryConsumer(self, kind, name)

    async def delete_consumer(self, kind: Kind, name: str | None = None) -> bool:
        await trio.lowlevel.checkpoint()
        self._check_open()
        return self._streams[kind].durables.pop(self.names.durable(kind, name), None) is not None

    async def stream_info(self, kind: Kind) -> StreamState:
        await trio.lowlevel.checkpoint()
        self._check_open()
        st = self._streams[kind]
        seqs = list(st.msgs)
        return StreamState(
            messages=len(seqs),
            bytes=sum(len(m.data) for m in st.msgs.values()),
            first_seq=seqs[0] if seqs else st.last_seq + 1,
            last_seq=st.last_seq,
            consumers=len(st.durables),
        )

    # ---- beacons

    async def beacon(self, topic: str, payload: bytes) -> None:
        await trio.lowlevel.checkpoint()
        if self._state is ConnectionState.CLOSED:
            return
        for send in list(self._listeners.get(self.names.beacon(topic), ())):
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                send.send_nowait(bytes(payload))

    @contextlib.asynccontextmanager
    async def beacons(self, topic: str) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        self._check_open()
        send, recv = trio.open_memory_channel[bytes](_BEACON_BUFFER)
        listeners = self._listeners.setdefault(self.names.beacon(topic), set())
        listeners.add(send)
        try:
            yield recv
        finally:
            listeners.discard(send)
            send.close()


_BEACON_BUFFER: Final = 64
"""Beacons a listener may fall behind by (as the NATS implementation's buffer)."""


class MemoryConsumer:
    """:class:`.api.BusConsumer` on a :class:`MemoryBus` durable (recreated if it was deleted)."""

    def __init__(self, bus: MemoryBus, kind: Kind, name: str | None) -> None:
        self._bus = bus
        self.kind = kind
        self.name = name
        self._stream = bus._streams[kind]
        self._key = bus.names.durable(kind, name)

    def _take(self, d: _Durable, batch: int, now: float) -> tuple[list[Msg], float]:
        """Up to ``batch`` deliverable messages, and when the next pending one falls due."""
        st = self._stream
        sc = d.sc
        out: list[Msg] = []
        next_due = _FOREVER
        waiting = sum(1 for p in d.pending.values() if p.due > now)
        for seq, m in st.msgs.items():
            if len(out) >= batch:
                break
            if seq in d.exhausted or not d.matches(m.subject):
                continue
            p = d.pending.get(seq)
            if p is not None and p.due > now:
                next_due = min(next_due, p.due)
                continue
            if p is None and 0 < sc.max_ack_pending <= waiting + len(out):
                continue
            n = 1 if p is None else p.deliveries + 1
            if 0 < sc.max_deliver < n:
                d.pending.pop(seq, None)
                d.exhausted.add(seq)
                continue
            d.pending[seq] = _Pending(n, now + d.wait_for(n))
            d.consumer_seq += 1
            d.delivered_seq = max(d.delivered_seq, seq)
            reply = f"{self._key}.{seq}"
            out.append(Msg(m.subject, m.data, m.headers, seq, d.consumer_seq, n, 0, m.timestamp, reply))
        if out:
            left = sum(1 for s, m in st.msgs.items() if d.matches(m.subject) and s not in d.pending)
            for msg in out:
                msg.num_pending = left
        return out, next_due

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        if batch < 1 or timeout <= 0:
            raise ValueError("batch must be >= 1 and timeout > 0")
        bus = self._bus
        deadline = trio.current_time() + timeout
        while True:
            bus._check_open()
            d = self._stream.durables.get(self._key)
            if d is None:  # deleted under us: recreate, return nothing this time (as on NATS)
                bus._durable(self.kind, self.name)
                await trio.lowlevel.checkpoint()
                return []
            changed = self._stream.changed
            now = trio.current_time()
            out, next_due = self._take(d, batch, now)
            if out:
                await trio.lowlevel.checkpoint()
                return out
            if now >= deadline:
                await trio.lowlevel.checkpoint()
                return []
            with trio.move_on_at(min(deadline, next_due)):
                await changed.wait()

    def _settle(self, msgs: Iterable[Msg], how: str, delay: float | None = None) -> None:
        self._bus._check_open()
        st = self._stream
        d = st.durables.get(self._key)
        now = trio.current_time()
        for m in msgs:
            seq = m.stream_seq
            if d is None or seq not in d.pending:
                continue  # settled already, or the durable was deleted
            if how == "remove":
                st.remove(seq)
            elif how == "nak":
                d.pending[seq].due = now + (delay or 0.0)
            else:  # in progress
                d.pending[seq].due = now + d.wait_for(d.pending[seq].deliveries)
        st.wake()

    async def ack(self, msgs: Iterable[Msg], *, flush: bool = True, wait: bool = True) -> None:
        self._settle(msgs, "remove")
        await trio.lowlevel.checkpoint()

    async def nak(self, msgs: Iterable[Msg], delay: float | None = None, *, flush: bool = True) -> None:
        self._settle(msgs, "nak", delay)
        await trio.lowlevel.checkpoint()

    async def term(self, msgs: Iterable[Msg], *, flush: bool = True) -> None:
        self._settle(msgs, "remove")  # a work-queue stream drops a terminated message as an acked one
        await trio.lowlevel.checkpoint()

    async def in_progress(self, msgs: Iterable[Msg], *, flush: bool = False) -> None:
        self._settle(msgs, "wip")
        await trio.lowlevel.checkpoint()

    async def info(self) -> ConsumerState:
        await trio.lowlevel.checkpoint()
        self._bus._check_open()
        st = self._stream
        d = st.durables.get(self._key) or self._bus._durable(self.kind, self.name)
        undelivered = [
            s
            for s, m in st.msgs.items()
            if d.matches(m.subject) and s not in d.pending and s not in d.exhausted
        ]
        floor = min(d.pending, default=d.delivered_seq + 1) - 1
        return ConsumerState(
            num_pending=sum(1 for s in undelivered if s > d.delivered_seq),
            num_ack_pending=len(d.pending),
            num_redelivered=sum(1 for p in d.pending.values() if p.deliveries > 1),
            delivered_stream_seq=d.delivered_seq,
            ack_floor_stream_seq=max(floor, 0),
        )


class MemoryKeyValue:
    """:class:`.api.KeyValue` in memory: a value lives ``kv.ttl`` (trio clock) after its last put."""

    def __init__(self, bus: MemoryBus) -> None:
        self._bus = bus
        self._stream = f"KV_{bus.names.bucket(bus.cfg.kv.bucket)}"
        self._values: dict[str, tuple[bytes, float, int]] = {}  # key -> (value, expires, revision)
        self._seq = 0

    @staticmethod
    def _bad(key: str) -> bool:
        return not key or any(c in key for c in " \t\r\n") or key.startswith(".") or key.endswith(".")

    async def put_many(
        self, items: Iterable[tuple[str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        await trio.lowlevel.checkpoint()
        expires = trio.current_time() + self._bus.cfg.kv.ttl
        out: list[PubAck | PublishError] = []
        for k, v in items:
            if self._bus.state is ConnectionState.CLOSED:
                out.append(PublishError(PublishErrorKind.CONNECTION, "closed"))
            elif self._bad(k):
                out.append(PublishError(PublishErrorKind.SERVER, f"bad key {k!r}"))
            else:
                out.append(PubAck(self._stream, self._store(k, v, expires)))
        return out

    def _store(self, key: str, value: bytes, expires: float) -> int:
        self._seq += 1
        self._values[key] = (bytes(value), expires, self._seq)
        return self._seq

    def _live(self, key: str, now: float) -> tuple[bytes, float, int] | None:
        v = self._values.get(key)
        if v is not None and v[1] <= now:
            del self._values[key]
            return None
        return v

    async def get_entry(self, key: str, timeout: float | None = None) -> tuple[bytes, int] | None:
        await trio.lowlevel.checkpoint()
        self._bus._check_open()
        if self._bad(key):
            raise BusError(f"KV get failed: bad key {key!r}")
        v = self._live(key, trio.current_time())
        return None if v is None else (v[0], v[2])

    async def swap(self, key: str, value: bytes, revision: int, timeout: float | None = None) -> int | None:
        await trio.lowlevel.checkpoint()
        self._bus._check_open()
        if self._bad(key):
            raise BusError(f"KV swap failed: bad key {key!r}")
        now = trio.current_time()
        v = self._live(key, now)
        if (0 if v is None else v[2]) != revision:
            return None
        return self._store(key, value, now + self._bus.cfg.kv.ttl)

    async def get_many(self, keys: Iterable[str], timeout: float | None = None) -> list[bytes | None]:
        await trio.lowlevel.checkpoint()
        self._bus._check_open()
        now = trio.current_time()
        out: list[bytes | None] = []
        for k in keys:
            if self._bad(k):
                raise BusError(f"KV get failed: bad key {k!r}")
            v = self._live(k, now)
            out.append(None if v is None else v[0])
        return out

    async def delete_many(self, keys: Iterable[str], timeout: float | None = None) -> None:
        await trio.lowlevel.checkpoint()
        self._bus._check_open()
        for k in keys:
            self._values.pop(k, None)
