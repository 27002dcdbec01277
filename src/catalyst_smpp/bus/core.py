"""The trio-facing JetStream bus: :class:`Bus` implements :class:`.api.MessageBus` on nats-py.

Everything nats-py runs on a private asyncio thread (:mod:`.bridge`, :mod:`.jetstream`); each public
``async`` method here is ONE crossing that carries a whole batch.  No asyncio object ever reaches the
caller: messages, acks and errors are the records of :mod:`.api`.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from typing import Any, Final, TypeVar

import nats.errors
import nats.js.errors
import trio

from ..config import NatsConfig, StreamConfig
from .api import (
    MSG_ID_HEADER,
    AckKind,
    BusError,
    ConnectionState,
    ConnectionStates,
    ConsumerState,
    KeyValue,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishInput,
    PublishItem,
    StreamState,
)
from .bridge import AsyncioThread
from .jetstream import _AioSide
from .names import Kind, Names, token

__all__ = [
    "Bus",
    "Consumer",
    "NatsKeyValue",
    "OpIdStore",
    "opid_key",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


class _NotFound(BusError):
    """A stream or consumer is missing (internal: the caller recreates it)."""


class _NotReady(BusError):
    """The JetStream API did not answer in time or said it is not available yet: a cluster that has just
    started (or lost its meta leader) elects its leaders before it creates replicated streams.  Worth asking
    again; other errors are not."""


_JS_TEMPORARILY_UNAVAILABLE: Final = 10008  # JetStream's error code for "system temporarily unavailable"
_ENSURE_BACKOFF: Final = (0.5, 5.0)  # first and longest pause between attempts to create the streams
_ENSURE_WARN_EVERY: Final = 30.0


# --------------------------------------------------------------------------- trio side


class Bus(ConnectionStates):
    """A NATS/JetStream connection usable from trio.  Create with :meth:`connect`."""

    def __init__(self, cfg: NatsConfig, urls: Sequence[str], name: str) -> None:
        self.cfg = cfg
        self.names = Names(cfg.namespace)
        self._urls = list(urls)
        self._name = name
        self._thread = AsyncioThread(name=f"nats-{name}")
        self._state = ConnectionState.CONNECTING
        self._state_changed = trio.Event()
        self._token: trio.lowlevel.TrioToken | None = None
        self.reconnects = 0
        self.kv = NatsKeyValue(self)
        self.opids = OpIdStore(self.kv)
        self._aio = _AioSide(cfg, self.names, self._state_from_aio)

    # ---- lifecycle

    @classmethod
    @contextlib.asynccontextmanager
    async def connect(
        cls,
        urls: str | Sequence[str],
        cfg: NatsConfig | None = None,
        *,
        name: str = "catalyst-smpp",
        ensure: bool = True,
    ) -> AsyncIterator[Bus]:
        """Connect (retrying forever while no server answers), create/update streams and the KV bucket.

        Wrap in ``trio.move_on_after``/``fail_after`` to bound the initial wait.
        """
        cfg = cfg or NatsConfig()
        url_list = [urls] if isinstance(urls, str) else list(urls)
        if not url_list:
            raise ValueError("no NATS URL given (start an embedded server for an empty list)")
        bus = cls(cfg, url_list, name)
        bus._token = trio.lowlevel.current_trio_token()
        bus._thread.start()
        try:
            await bus._call(bus._aio.connect, url_list, name)
            log.info("connected to NATS %s as %s", ", ".join(url_list), name)
            if ensure:
                await bus.ensure()
            yield bus
        finally:
            with trio.CancelScope(shield=True):
                try:
                    await bus._thread.call(bus._aio.close)
                except Exception:  # pragma: no cover - closing is best effort
                    log.exception("closing the NATS connection")
                await trio.to_thread.run_sync(bus._thread.stop)
                bus._set_state(ConnectionState.CLOSED)

    async def _call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """One crossing to the asyncio thread; nats-py/asyncio errors come back as BusError."""
        if self._state is ConnectionState.CLOSED:
            raise BusError("bus closed")
        try:
            return await self._thread.call(fn, *args)
        except (TimeoutError, nats.errors.Error, ConnectionError) as e:
            if isinstance(e, nats.js.errors.NotFoundError):
                raise _NotFound(str(e)) from None
            if isinstance(e, TimeoutError | nats.errors.TimeoutError | nats.errors.NoRespondersError) or (
                isinstance(e, nats.js.errors.APIError)
                and (e.code == 503 or e.err_code == _JS_TEMPORARILY_UNAVAILABLE)
            ):
                raise _NotReady(f"{type(e).__name__}: {e}") from None
            raise BusError(f"{type(e).__name__}: {e}") from None

    async def ensure(self) -> None:
        """Create or update the streams and the KV bucket (idempotent; every node does it at start).

        A NATS cluster that has just started answers stream creation slowly or not at all until its leaders
        are elected, and two gateway nodes starting together make that likely: a timeout or "not available"
        is retried with back-off (a warning at once and every 30 s) until JetStream answers -- the same
        patience as the initial connect; cancelling (the daemon's SIGTERM) gives up.  Any other error (a
        stream that cannot be made as configured, an account without JetStream) is raised at once."""
        pause, longest = _ENSURE_BACKOFF
        since = trio.current_time()
        warned: float | None = None
        attempts = 0
        while True:
            try:
                await self._call(self._aio.ensure_streams)
                await self._call(self._aio.ensure_kv, self.cfg.kv)
            except _NotReady as e:
                attempts += 1
                now = trio.current_time()
                if warned is None or now - warned >= _ENSURE_WARN_EVERY:
                    warned = now
                    log.warning(
                        "JetStream did not create the streams yet (%s); trying again (attempt %d, %.0fs)",
                        e, attempts, now - since,
                    )  # fmt: skip
                await trio.sleep(pause)
                pause = min(pause * 2, longest)
                continue
            if attempts:
                log.info(
                    "JetStream streams ready after %d attempts (%.1fs)",
                    attempts + 1,
                    trio.current_time() - since,
                )
            return

    def _state_from_aio(self, state: ConnectionState) -> None:
        token = self._token
        if token is None:
            return
        with contextlib.suppress(trio.RunFinishedError):
            token.run_sync_soon(self._set_state, state)

    def _set_state(self, state: ConnectionState) -> None:
        if state is self._state:
            return
        if state is ConnectionState.CONNECTED and self._state is ConnectionState.RECONNECTING:
            self.reconnects += 1
        log.log(
            logging.WARNING if state is ConnectionState.RECONNECTING else logging.INFO,
            "NATS connection %s -> %s",
            self._state.value,
            state.value,
        )
        self._state = state
        self._state_changed.set()
        self._state_changed = trio.Event()

    # ---- publish

    def subject(self, kind: Kind, name: str) -> str:
        return self.names.subject(kind, name)

    async def publish_batch(
        self, items: Iterable[PublishInput], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        """Publish to JetStream and wait for every ack; one result per item, in order.

        Items are :class:`PublishItem` or ``(subject, payload, headers, msg_id)`` tuples; ``msg_id``
        goes into ``Nats-Msg-Id`` so a retry of the same message is stored once (within the
        stream's duplicate window).  Failures are per message (:class:`PublishError`), never raised.
        """
        prepared = _prepare(items)
        if not prepared:
            return []
        t = self.cfg.publish_timeout if timeout is None else timeout
        if self._state is ConnectionState.CLOSED:
            return [PublishError(PublishErrorKind.CONNECTION, "closed")] * len(prepared)
        return await self._call(self._aio.publish_batch, prepared, t)

    async def publish_pair(
        self, first: Iterable[PublishInput], second: Iterable[PublishInput], timeout: float | None = None
    ) -> tuple[list[PubAck | PublishError], list[PubAck | PublishError] | None]:
        """:meth:`publish_batch` of ``first`` and, only if every one of them was stored, of ``second`` right
        after, on the asyncio side: ONE crossing for two dependent batches.  ``(first's results, second's
        results or None when it was not published)``."""
        p1, p2 = _prepare(first), _prepare(second)
        t = self.cfg.publish_timeout if timeout is None else timeout
        if self._state is ConnectionState.CLOSED:
            return [PublishError(PublishErrorKind.CONNECTION, "closed")] * len(p1), None
        return await self._call(self._aio.publish_pair, p1, p2, t)

    # ---- consumers

    async def consumer(self, kind: Kind, name: str | None = None) -> Consumer:
        """The durable pull consumer for ``MT.<operator>``, ``DLR.<partner>``, ``MO.<partner>`` or all EVENTS.

        Durable (shared by every node that asks for the same kind and name); created or
        updated idempotently with the stream's consumer settings from the config.
        """
        sc = {
            Kind.MT: self.cfg.streams.mt,
            Kind.DLR: self.cfg.streams.dlr,
            Kind.MO: self.cfg.streams.mo,
            Kind.EVENTS: self.cfg.streams.events,
        }[kind]
        if kind is not Kind.EVENTS and not name:
            raise ValueError(f"{kind.value} consumers need an operator/partner name")
        key = await self._call(self._aio.ensure_consumer, kind, name, sc)
        return Consumer(self, kind, name, key, sc)

    async def delete_consumer(self, kind: Kind, name: str | None = None) -> bool:
        return await self._call(self._aio.delete_consumer, kind, name)

    async def stream_info(self, kind: Kind) -> StreamState:
        si = await self._call(self._aio.stream_info, kind)
        st = si.state
        return StreamState(
            messages=st.messages,
            bytes=st.bytes,
            first_seq=st.first_seq,
            last_seq=st.last_seq,
            consumers=st.consumer_count,
        )

    # ---- beacons

    async def beacon(self, topic: str, payload: bytes) -> None:
        if self._state is ConnectionState.CLOSED:
            return
        await self._call(self._aio.beacon, self.names.beacon(topic), bytes(payload))

    @contextlib.asynccontextmanager
    async def beacons(self, topic: str) -> AsyncIterator[trio.abc.ReceiveChannel[bytes]]:
        send, recv = trio.open_memory_channel[bytes](_BEACON_BUFFER)
        token = trio.lowlevel.current_trio_token()

        def offer(data: bytes) -> None:  # trio side
            with contextlib.suppress(trio.WouldBlock, trio.ClosedResourceError):
                send.send_nowait(data)

        def deliver(data: bytes) -> None:  # asyncio side: hand over, never block the read loop
            with contextlib.suppress(trio.RunFinishedError):
                token.run_sync_soon(offer, data)

        key = await self._call(self._aio.listen, self.names.beacon(topic), deliver)
        try:
            yield recv
        finally:
            send.close()
            with trio.CancelScope(shield=True), contextlib.suppress(BusError):
                await self._call(self._aio.unlisten, key)


def _prepare(items: Iterable[PublishInput]) -> list[tuple[str, bytes, dict[str, str] | None]]:
    """Publish inputs as the asyncio side takes them: ``msg_id`` into ``Nats-Msg-Id``, payloads as bytes."""
    prepared: list[tuple[str, bytes, dict[str, str] | None]] = []
    for it in items:
        if isinstance(it, PublishItem):
            subject, payload, headers, msg_id = it.subject, it.payload, it.headers, it.msg_id
        else:
            subject, payload, headers, msg_id = it
        hdr = dict(headers) if headers else None
        if msg_id:
            hdr = hdr or {}
            hdr[MSG_ID_HEADER] = msg_id
        prepared.append((subject, bytes(payload), hdr))
    return prepared


_BEACON_BUFFER: Final = 64
"""Beacons a listener may fall behind by before the newest are dropped."""


class Consumer:
    """A durable pull consumer.  ``fetch`` a batch, then ack/nak/term the batch in one call each."""

    def __init__(self, bus: Bus, kind: Kind, name: str | None, key: str, sc: StreamConfig) -> None:
        self.bus = bus
        self.kind = kind
        self.name = name
        self._key = key
        self._sc = sc

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        """Up to ``batch`` messages; returns early with what is there, ``[]`` after ``timeout`` with none.

        While NATS is unreachable it returns ``[]`` after at most ``timeout``, and resumes by itself
        once the client has reconnected (the durable consumer is on the server's file store).
        """
        if batch < 1 or timeout <= 0:
            raise ValueError("batch must be >= 1 and timeout > 0")
        try:
            return await self.bus._call(self.bus._aio.fetch, self._key, batch, timeout)
        except _NotFound:
            log.warning("consumer %s vanished; recreating it", self._key)
            await self.bus._call(self.bus._aio.ensure_consumer, self.kind, self.name, self._sc)
            return []

    async def _respond(self, msgs: Iterable[Msg], payload: bytes, flush: bool) -> None:
        replies = [m._reply for m in msgs]
        if replies:
            await self.bus._call(self.bus._aio.respond, replies, payload, flush)

    async def ack(self, msgs: Iterable[Msg], *, flush: bool = True, wait: bool = True) -> None:
        """Acknowledge a batch.  ``flush`` waits until the server has received the acks (one round trip).
        ``wait=False``: queued on the asyncio thread (after every call made before, before every call made
        after) without a flush, and not awaited -- no wake-up of trio when it is done; a failure is logged
        there.  BusError at once if the bus is closed."""
        if wait:
            await self._respond(msgs, AckKind.ACK.value, flush)
            return
        replies = [m._reply for m in msgs]
        if replies:
            if self.bus._state is ConnectionState.CLOSED:
                raise BusError("bus closed")
            what = f"ack of {len(replies)} message(s) of {self._key}"
            self.bus._thread.post(self.bus._aio.respond, replies, AckKind.ACK.value, False, what=what)
        await trio.lowlevel.checkpoint()

    async def nak(self, msgs: Iterable[Msg], delay: float | None = None, *, flush: bool = True) -> None:
        """Ask for redelivery, after ``delay`` seconds if given (temporary operator errors, throttling)."""
        payload = AckKind.NAK.value
        if delay:
            payload += b" " + json.dumps({"delay": int(delay * 1e9)}).encode()
        await self._respond(msgs, payload, flush)

    async def term(self, msgs: Iterable[Msg], *, flush: bool = True) -> None:
        """Never redeliver (permanent failure; the caller emits the failure receipt/CDR)."""
        await self._respond(msgs, AckKind.TERM.value, flush)

    async def in_progress(self, msgs: Iterable[Msg], *, flush: bool = False) -> None:
        """Reset the ack timer of messages still being worked on (e.g. waiting for a window slot)."""
        await self._respond(msgs, AckKind.IN_PROGRESS.value, flush)

    async def info(self) -> ConsumerState:
        ci = await self.bus._call(self.bus._aio.consumer_info, self._key)
        return ConsumerState(
            num_pending=ci.num_pending or 0,
            num_ack_pending=ci.num_ack_pending or 0,
            num_redelivered=ci.num_redelivered or 0,
            delivered_stream_seq=ci.delivered.stream_seq if ci.delivered and ci.delivered.stream_seq else 0,
            ack_floor_stream_seq=ci.ack_floor.stream_seq if ci.ack_floor and ci.ack_floor.stream_seq else 0,
        )


def opid_key(operator: str, operator_message_id: str) -> str:
    """KV key for a (normalised) operator message id: ``<operator>.<id>`` with both parts escaped."""
    return f"{token(operator)}.{token(operator_message_id)}"


class NatsKeyValue:
    """:class:`.api.KeyValue` on the TTL'd JetStream KV bucket of a :class:`Bus` (raw bytes values)."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def put_many(
        self, items: Iterable[tuple[str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        data = list(items)
        if not data:
            return []
        t = self._bus.cfg.publish_timeout if timeout is None else timeout
        return await self._bus._call(self._bus._aio.kv_put, data, t)

    async def get_many(self, keys: Iterable[str], timeout: float | None = None) -> list[bytes | None]:
        ks = list(keys)
        if not ks:
            return []
        t = self._bus.cfg.request_timeout if timeout is None else timeout
        return await self._bus._call(self._bus._aio.kv_get, ks, t)

    async def delete_many(self, keys: Iterable[str], timeout: float | None = None) -> None:
        ks = list(keys)
        if ks:
            t = self._bus.cfg.publish_timeout if timeout is None else timeout
            await self._bus._call(self._bus._aio.kv_delete, ks, t)

    async def get_entry(self, key: str, timeout: float | None = None) -> tuple[bytes, int] | None:
        t = self._bus.cfg.request_timeout if timeout is None else timeout
        return await self._bus._call(self._bus._aio.kv_get_entry, key, t)

    async def swap(self, key: str, value: bytes, revision: int, timeout: float | None = None) -> int | None:
        t = self._bus.cfg.publish_timeout if timeout is None else timeout
        return await self._bus._call(self._bus._aio.kv_swap, key, bytes(value), revision, t)


class OpIdStore:
    """Operator message id → a value the gateway encodes (octets: its id mapping), in a
    :class:`.api.KeyValue`.  Batched both ways."""

    def __init__(self, kv: KeyValue) -> None:
        self._kv = kv

    async def put_many(
        self, items: Iterable[tuple[str, str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        """``[(operator, normalised operator id, value)]`` → one result per item.

        The gateway stores its id mapping before acking the MT message, so an early receipt finds it.
        """
        return await self._kv.put_many([(opid_key(op, oid), v) for op, oid, v in items], timeout)

    async def get_many(
        self, items: Iterable[tuple[str, str]], timeout: float | None = None
    ) -> list[bytes | None]:
        """``[(operator, normalised operator id)]`` → value or ``None`` (unknown or expired).

        Raises BusError when the KV cannot be read.
        """
        return await self._kv.get_many([opid_key(op, oid) for op, oid in items], timeout)

    async def delete_many(self, items: Iterable[tuple[str, str]], timeout: float | None = None) -> None:
        await self._kv.delete_many([opid_key(op, oid) for op, oid in items], timeout)
