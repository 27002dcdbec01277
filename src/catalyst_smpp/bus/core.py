"""The trio-facing JetStream bus.

Everything nats-py runs on a private asyncio thread (:mod:`.bridge`); each public
``async`` method here is ONE crossing that carries a whole batch.  No asyncio object
ever reaches the caller: messages, acks and errors are our own attrs records.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import enum
import json
import logging
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Any, Final, TypeVar

import attrs
import nats
import nats.errors
import nats.js.errors
import trio
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext, api

from ..config import KvConfig, NatsConfig, StreamConfig
from .bridge import AsyncioThread
from .names import Kind, Names, token

__all__ = [
    "AckKind",
    "Bus",
    "BusError",
    "ConnectionState",
    "Consumer",
    "Msg",
    "OpIdStore",
    "PubAck",
    "PublishError",
    "PublishErrorKind",
    "PublishItem",
]

log = logging.getLogger(__name__)

T = TypeVar("T")

MSG_ID_HEADER = "Nats-Msg-Id"


class BusError(Exception):
    """A bus operation failed as a whole (not per message)."""


class _NotFound(BusError):
    """A stream or consumer is missing (internal: the caller recreates it)."""


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
            out[api.Header.STATUS.value] = code.decode()
        if desc:
            out[api.Header.DESCRIPTION.value] = desc.decode(errors="replace")
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


def _pub_error(exc: BaseException) -> PublishError:
    if isinstance(exc, nats.js.errors.NoStreamResponseError):
        return PublishError(PublishErrorKind.NO_STREAM, "no stream for subject")
    if isinstance(exc, nats.js.errors.TooManyStalledMsgsError):
        return PublishError(PublishErrorKind.TIMEOUT, "too many publishes pending")
    if isinstance(exc, asyncio.TimeoutError | nats.errors.TimeoutError):
        return PublishError(PublishErrorKind.TIMEOUT, "no ack in time")
    if isinstance(exc, nats.js.errors.APIError):
        desc = exc.description or ""
        low = desc.lower()
        if "maximum" in low or "insufficient" in low or exc.err_code in (10047, 10077, 10078):
            return PublishError(PublishErrorKind.STORE_FULL, desc, exc.err_code)
        return PublishError(PublishErrorKind.SERVER, desc, exc.err_code)
    if isinstance(
        exc,
        nats.errors.ConnectionClosedError
        | nats.errors.OutboundBufferLimitError
        | nats.errors.ConnectionReconnectingError
        | nats.errors.StaleConnectionError
        | OSError,
    ):
        return PublishError(PublishErrorKind.CONNECTION, type(exc).__name__)
    return PublishError(PublishErrorKind.SERVER, f"{type(exc).__name__}: {exc}")


def _js_msg(subject: bytes, reply: bytes, data: bytes, hdr: bytes | None) -> Msg:
    """A JetStream message straight from the wire: metadata from the ack subject, headers parsed lazily."""
    r = reply.decode()
    t = r.split(".")
    n = len(t)
    # $JS.ACK.<stream>.<consumer>.<delivered>.<sseq>.<cseq>.<ts>.<pending>
    if n == 9 and t[0] == "$JS" and t[1] == "ACK":
        i = 4
    elif n >= 11 and t[0] == "$JS" and t[1] == "ACK":  # + <domain>.<account hash> ... [.<token>]
        i = 6
    else:
        raise nats.errors.NotJSMessageError
    return Msg(
        subject.decode(),
        data,
        None,
        int(t[i + 1]),
        int(t[i + 2]),
        int(t[i]) or 1,
        int(t[i + 4]),
        int(t[i + 3]) / 1e9,
        r,
        hdr or None,
    )


def _stream_config(name: str, subjects: list[str], sc: StreamConfig, replicas: int) -> api.StreamConfig:
    return api.StreamConfig(
        name=name,
        subjects=subjects,
        retention=api.RetentionPolicy.WORK_QUEUE,  # acked = removed; one durable per subject
        storage=api.StorageType.FILE,
        num_replicas=replicas,
        max_age=sc.max_age or None,
        max_bytes=sc.max_bytes,
        max_msgs_per_subject=sc.max_msgs_per_subject,
        discard=api.DiscardPolicy.NEW if sc.discard == "new" else api.DiscardPolicy.OLD,
        discard_new_per_subject=sc.discard == "new" and sc.max_msgs_per_subject > 0,
        duplicate_window=sc.duplicate_window,
    )


def _api_error_code(exc: BaseException) -> int | None:
    return exc.err_code if isinstance(exc, nats.js.errors.APIError) else None


# --------------------------------------------------------------------------- asyncio side


class _Puller:
    """Pull requests for one durable consumer on a private inbox (asyncio side).

    Replaces nats-py's PullSubscription.fetch, which waits per message with asyncio.wait_for (a task each
    on Python 3.11) and capped fetch+ack near 9k/s here.  Phase 1 asks for up to ``batch`` messages with
    ``no_wait`` (returns at once with what is stored); only when nothing is there, phase 2 long-polls for
    ONE message until the timeout, so at most one message can arrive after we gave up waiting.  Such a
    late message is kept for the next fetch — unless it has aged past half the ack wait, in which case it
    is nak'ed rather than handed out just before the server redelivers it elsewhere.
    """

    def __init__(self, nc: NatsClient, stream: str, durable: str, ack_wait: float) -> None:
        self.nc = nc
        self.stream = stream
        self.durable = durable
        self.ack_wait = ack_wait
        self.next_subject = f"$JS.API.CONSUMER.MSG.NEXT.{stream}.{durable}"
        self.prefix = f"{nc._inbox_prefix.decode()}.{nc._nuid.next().decode()}."
        self.buf: collections.deque[tuple[float, Msg]] = collections.deque()
        self.req = 0
        self.req_subject = b""
        self.ended = False
        self.deleted = False
        self.event = asyncio.Event()
        self.lock = asyncio.Lock()
        self.sub: Any = None

    async def start(self, fast: dict[int, _WireHandler]) -> None:
        self.loop = asyncio.get_running_loop()
        self.sub = await self.nc.subscribe(self.prefix + "*", cb=_unused_cb)
        self.fast = fast
        fast[self.sub._id] = self._on_wire

    async def stop(self) -> None:
        if self.sub is not None:
            self.fast.pop(self.sub._id, None)
            with contextlib.suppress(Exception):
                await self.sub.unsubscribe()

    def _on_wire(self, subject: bytes, reply: bytes, data: bytes, hdr: bytes | None) -> None:
        """A message on our inbox, straight from nats-py's parser (no nats-py ``Msg``, queue or task)."""
        if hdr and hdr.startswith(b"NATS/1.0 "):  # an inline status: not a stored message
            status = hdr[9:12]
            if status == b"100":  # idle heartbeat / flow control
                return
            first = hdr.partition(b"\r\n")[0].lower()
            if status == b"503" or (status == b"409" and b"deleted" in first):
                self.deleted = True  # no responders: the consumer is gone (deleted, or the stream was)
            if subject == self.req_subject:
                self.ended = True  # 404 no messages, 408 request expired, 409 ...: this request is over
                self.event.set()
            return
        self.buf.append((self.loop.time(), _js_msg(subject, reply, data, hdr)))
        self.event.set()

    def _take(self, n: int, out: list[Msg], stale: list[Msg]) -> None:
        now = asyncio.get_running_loop().time()
        while self.buf and len(out) < n:
            t, m = self.buf.popleft()
            (stale if now - t > self.ack_wait / 2 else out).append(m)

    async def _request(self, body: dict[str, Any]) -> None:
        self.req += 1
        self.ended = False
        self.event.clear()
        reply = self.prefix + str(self.req)
        self.req_subject = reply.encode()
        await self.nc.publish(self.next_subject, json.dumps(body).encode(), reply=reply)

    async def _wait(self, until: float, done: Any) -> None:
        loop = asyncio.get_running_loop()
        while not done():
            remaining = until - loop.time()
            if remaining <= 0:
                return
            self.event.clear()
            if done():
                return
            try:
                await asyncio.wait_for(self.event.wait(), remaining)
            except TimeoutError:
                return

    async def fetch(self, batch: int, timeout: float) -> list[Msg]:
        async with self.lock:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            out: list[Msg] = []
            stale: list[Msg] = []
            try:
                self._take(batch, out, stale)
                if len(out) >= batch or not self.nc.is_connected:
                    if not out and not self.nc.is_connected:
                        await asyncio.sleep(min(timeout, 0.25))
                    return out
                need = batch - len(out)
                # phase 1: whatever is stored now, up to the batch
                await self._request({"batch": need, "no_wait": True})
                await self._wait(deadline, lambda: self.ended or len(self.buf) >= need)
                self._take(batch, out, stale)
                if out:
                    return out
                # phase 2: long-poll for one message until the deadline
                remaining = deadline - loop.time()
                if remaining > 0.02:
                    await self._request({"batch": 1, "expires": int((remaining - 0.01) * 1e9)})
                    await self._wait(deadline, lambda: self.ended or bool(self.buf))
                    self._take(batch, out, stale)
                if self.deleted:
                    raise nats.js.errors.NotFoundError(description="consumer deleted")
                return out
            finally:
                for m in stale:
                    with contextlib.suppress(Exception):
                        await self.nc.publish(m._reply, AckKind.NAK.value)


_WireHandler = Callable[[bytes, bytes, bytes, "bytes | None"], None]


async def _unused_cb(msg: NatsMsg) -> None:  # pragma: no cover - _install_fast_path takes these subjects
    pass


def _install_fast_path(nc: Any, fast: dict[int, _WireHandler]) -> None:
    """Hand messages for our own inboxes (publish acks, pull replies) straight from nats-py's parser to a
    plain function: no nats-py ``Msg``, header dict, subscription queue, task switch or callback coroutine
    per message.  The subscriptions stay ordinary nats-py subscriptions (nats-py re-subscribes them with
    the same sid after a reconnect); every other sid goes through nats-py as before.  A handler's error is
    logged, never raised into the read loop (which would end it).
    """
    orig = nc._process_msg
    stats = nc.stats

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        h = fast.get(sid)
        if h is None:
            await orig(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            h(subject, reply, data, headers)
        except Exception:
            log.exception("handling a message on %r", subject)

    nc._process_msg = process_msg


_SUBJECT_INVALID = re.compile(r"[ \t\r\n]")
_HEADER_KEY = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEADER_VALUE_NEWLINES = str.maketrans({"\r": " ", "\n": " "})


def _encode_headers(headers: Mapping[str, str]) -> bytes:
    """The header block nats-py's publish writes (same validation: bad key → BadHeaderError)."""
    parts = ["NATS/1.0\r\n"]
    for k, v in headers.items():
        key = k.strip()
        if not key:
            continue
        if not _HEADER_KEY.fullmatch(key):
            raise nats.errors.BadHeaderError(key)
        parts.append(f"{key}: {v.strip().translate(_HEADER_VALUE_NEWLINES)}\r\n")
    parts.append("\r\n")
    return "".join(parts).encode()


class _PubBatch:
    """The publish acks awaited by one ``publish_batch`` (tokens ``base .. base + len(results) - 1``)."""

    __slots__ = ("base", "fut", "left", "results")

    def __init__(self, base: int, n: int, fut: asyncio.Future[None]) -> None:
        self.base = base
        self.results: list[PubAck | PublishError | None] = [None] * n
        self.left = 0
        self.fut = fut


_NO_REPLY: Final = object()


class _GetBatch:
    """The direct-get replies awaited by one ``kv_get`` (tokens ``base .. base + len(results) - 1``)."""

    __slots__ = ("base", "fut", "left", "results")

    def __init__(self, base: int, n: int, fut: asyncio.Future[None]) -> None:
        self.base = base
        self.results: list[Any] = [_NO_REPLY] * n
        self.left = 0
        self.fut = fut


def _guard_pongs(nc: Any) -> None:
    """Work around a nats-py (2.x) flaw that silently stops a connection from reading.

    ``flush(timeout)`` cancels its PONG future when the timeout expires (or when the awaiting task is
    cancelled) but leaves it queued; the PONG that arrives later is matched to it and ``set_result`` on the
    cancelled future raises ``InvalidStateError`` inside the read loop, which logs "encountered error" and
    *ends the read loop*: no more messages, publish acks or pull replies, and no reconnect until the ping
    timer notices minutes later.  Matching stays one future per PONG; a future that is already done is just
    skipped.
    """
    if not hasattr(nc, "_pongs"):  # a future nats-py without the queue: nothing to guard
        return

    async def process_pong() -> None:
        if nc._pongs:
            fut = nc._pongs.pop(0)
            if not fut.done():
                fut.set_result(True)
            nc._pongs_received += 1
            nc._pings_outstanding = 0

    nc._process_pong = process_pong


class _AioSide:
    """State that lives on the asyncio thread.  Only its coroutines touch nats-py."""

    def __init__(self, cfg: NatsConfig, names: Names, on_state: Any) -> None:
        self.cfg = cfg
        self.names = names
        self.on_state = on_state
        self.nc: NatsClient | None = None
        self.js: JetStreamContext | None = None
        self.pullers: dict[str, _Puller] = {}
        self.closing = False
        self.pub_prefix = ""
        self.pub_plen = 0
        self.pub_pending: dict[int, _PubBatch] = {}
        self.pub_counter = 0
        self.fast: dict[int, _WireHandler] = {}

    async def connect(self, urls: list[str], name: str) -> None:
        async def disconnected() -> None:
            if not self.closing:
                self.on_state(ConnectionState.RECONNECTING)

        # Unreachable servers: nats-py reports every failed attempt (each reconnect_wait, for as long as NATS
        # is down).  Say once, clearly, that NATS is unreachable and that we keep trying, then remind every
        # 30 s; other errors are logged as they come.
        down: dict[str, float] = {"since": 0.0, "attempts": 0, "logged": 0.0}
        where = ", ".join(urls)

        def reachable() -> None:
            if down["attempts"]:
                log.warning(
                    "NATS %s reachable again after %.1fs (%d failed attempts)",
                    where, time.monotonic() - down["since"], down["attempts"],
                )  # fmt: skip
            down.update(since=0.0, attempts=0, logged=0.0)

        async def reconnected() -> None:
            reachable()
            self.on_state(ConnectionState.CONNECTED)

        async def closed() -> None:
            self.on_state(ConnectionState.CLOSED)

        async def error(e: Exception) -> None:
            if not isinstance(e, (OSError, TimeoutError, asyncio.TimeoutError, nats.errors.NoServersError)):
                log.warning("nats: %s: %s", type(e).__name__, e)
                return
            now = time.monotonic()
            down["attempts"] += 1
            if down["attempts"] == 1:
                down["since"] = down["logged"] = now
                log.warning(
                    "NATS %s not reachable (%s: %s); retrying every %gs until it is (messages cannot be "
                    "accepted meanwhile)", where, type(e).__name__, e, self.cfg.reconnect_wait,
                )  # fmt: skip
            elif now - down["logged"] >= 30.0:
                down["logged"] = now
                log.warning(
                    "NATS %s still not reachable after %.0fs (%d attempts; last: %s: %s)",
                    where, now - down["since"], down["attempts"], type(e).__name__, e,
                )  # fmt: skip

        self.nc = await nats.connect(
            servers=urls,
            name=name,
            allow_reconnect=True,
            max_reconnect_attempts=-1,
            reconnect_time_wait=self.cfg.reconnect_wait,  # type: ignore[arg-type,unused-ignore]
            connect_timeout=max(1, round(self.cfg.connect_timeout)),
            disconnected_cb=disconnected,
            reconnected_cb=reconnected,
            closed_cb=closed,
            error_cb=error,
            pending_size=64 * 1024 * 1024,
        )
        reachable()
        _guard_pongs(self.nc)
        _install_fast_path(self.nc, self.fast)
        self.js = self.nc.jetstream(timeout=self.cfg.request_timeout)
        await self._init_publish()
        self.on_state(ConnectionState.CONNECTED)

    async def close(self) -> None:
        self.closing = True
        if self.nc is not None and not self.nc.is_closed:
            # flush what is buffered (acks) and close; drain() would wait for pending pull requests to expire
            if self.nc.is_connected:
                with contextlib.suppress(Exception):
                    await self.nc.flush(timeout=2)
            if not self.nc.is_closed:
                await self.nc.close()

    # ---- streams and consumers

    async def ensure_stream(self, config: api.StreamConfig) -> None:
        assert self.js is not None
        try:
            await self.js.add_stream(config)
            return
        except nats.js.errors.BadRequestError as e:
            if e.err_code != 10058:  # stream name already in use with a different configuration
                raise
        try:
            await self.js.update_stream(config)
            log.info("stream %s updated to the configured settings", config.name)
        except nats.js.errors.APIError as e:
            # some settings cannot change in place (e.g. storage type); keep running on the existing stream
            log.warning(
                "stream %s exists with other settings that cannot be updated: %s", config.name, e.description
            )

    async def ensure_streams(self) -> None:
        s = self.cfg.streams
        for kind, sc in ((Kind.MT, s.mt), (Kind.DLR, s.dlr), (Kind.MO, s.mo)):
            await self.ensure_stream(
                _stream_config(self.names.stream(kind), [self.names.wildcard(kind)], sc, self.cfg.replicas)
            )
        ev = Kind.EVENTS
        await self.ensure_stream(
            _stream_config(
                self.names.stream(ev), [f"{self.names._prefix(ev)}.>"], s.events, self.cfg.replicas
            )
        )

    def _consumer_config(self, kind: Kind, name: str | None, sc: StreamConfig) -> api.ConsumerConfig:
        if name is None:
            filt = f"{self.names._prefix(kind)}.>" if kind is Kind.EVENTS else self.names.wildcard(kind)
        else:
            filt = self.names.subject(kind, name)
        backoff = list(sc.backoff) or None
        max_deliver = sc.max_deliver
        if backoff and 0 < max_deliver <= len(backoff):
            # the server wants max_deliver > len(backoff)
            backoff = backoff[: max_deliver - 1] or None
        return api.ConsumerConfig(
            durable_name=self.names.durable(kind, name),
            deliver_policy=api.DeliverPolicy.ALL,
            ack_policy=api.AckPolicy.EXPLICIT,
            ack_wait=sc.ack_wait,
            max_deliver=max_deliver,
            backoff=backoff,
            filter_subject=filt,
            max_ack_pending=sc.max_ack_pending,
            max_waiting=512,
            replay_policy=api.ReplayPolicy.INSTANT,
            num_replicas=None,
        )

    async def ensure_consumer(self, kind: Kind, name: str | None, sc: StreamConfig) -> str:
        assert self.js is not None
        stream = self.names.stream(kind)
        cc = self._consumer_config(kind, name, sc)
        assert cc.durable_name is not None
        try:
            await self.js.add_consumer(stream, cc)
        except nats.js.errors.APIError as e:
            # an existing durable with other (non-updatable) settings: use it as it is
            log.warning(
                "consumer %s on %s: %s; using the existing one", cc.durable_name, stream, e.description
            )
            await self.js.consumer_info(stream, cc.durable_name)
        key = f"{stream}/{cc.durable_name}"
        if key not in self.pullers:
            assert self.nc is not None
            p = _Puller(self.nc, stream, cc.durable_name, sc.ack_wait)
            await p.start(self.fast)
            self.pullers[key] = p
        else:
            self.pullers[key].deleted = False
        return key

    async def delete_consumer(self, kind: Kind, name: str | None) -> bool:
        assert self.js is not None
        stream, durable = self.names.stream(kind), self.names.durable(kind, name)
        key = f"{stream}/{durable}"
        p = self.pullers.pop(key, None)
        if p is not None:
            await p.stop()
        try:
            return await self.js.delete_consumer(stream, durable)
        except nats.js.errors.NotFoundError:
            return False

    # ---- publish

    async def _init_publish(self) -> None:
        """Our own async-publish inbox: nats-py's publish_async loses 503 replies ("maximum messages per
        subject exceeded" raises inside its callback, so the future never resolves: it looks like a timeout).
        Its replies come through the fast path (:func:`_install_fast_path`).
        """
        assert self.nc is not None
        self.pub_prefix = f"{self.nc._inbox_prefix.decode()}.{self.nc._nuid.next().decode()}."
        self.pub_plen = len(self.pub_prefix)
        self.pub_pending = {}
        self.pub_counter = 0
        sub = await self.nc.subscribe(self.pub_prefix + "*", cb=_unused_cb)
        self.fast[sub._id] = self._on_pub_reply
        # KV direct gets: replies on a second inbox of ours, through the same fast path
        self.get_prefix = f"{self.nc._inbox_prefix.decode()}.{self.nc._nuid.next().decode()}."
        self.get_plen = len(self.get_prefix)
        self.get_pending: dict[int, _GetBatch] = {}
        self.get_counter = 0
        sub = await self.nc.subscribe(self.get_prefix + "*", cb=_unused_cb)
        self.fast[sub._id] = self._on_get_reply

    def _on_pub_reply(self, subject: bytes, reply: bytes, data: bytes, hdr: bytes | None) -> None:
        try:
            tok = int(subject[self.pub_plen :])
        except ValueError:
            return
        b = self.pub_pending.pop(tok, None)
        if b is None:  # timed out already (a late ack is dropped)
            return
        res: PubAck | PublishError
        if hdr and hdr.startswith(b"NATS/1.0 503"):
            res = PublishError(PublishErrorKind.NO_STREAM, "no stream for subject")
        else:
            try:
                resp = json.loads(data)
                err = resp.get("error")
                if err:
                    res = _pub_error(
                        nats.js.errors.APIError(
                            code=err.get("code"),
                            description=err.get("description"),
                            err_code=err.get("err_code"),
                        )
                    )
                else:
                    res = PubAck(resp["stream"], int(resp["seq"]), bool(resp.get("duplicate")))
            except (ValueError, KeyError, TypeError, AttributeError):
                res = PublishError(PublishErrorKind.SERVER, "unreadable publish ack")
        b.results[tok - b.base] = res
        b.left -= 1
        if b.left <= 0 and not b.fut.done():
            b.fut.set_result(None)

    def _on_get_reply(self, subject: bytes, reply: bytes, data: bytes, hdr: bytes | None) -> None:
        """A JetStream direct-get reply: the stored message (headers Nats-Subject, Nats-Sequence, ...), or a
        status line (404: no such key; anything else: an error)."""
        try:
            tok = int(subject[self.get_plen :])
        except ValueError:
            return
        b = self.get_pending.pop(tok, None)
        if b is None:  # timed out already
            return
        res: bytes | BusError | None
        status = hdr[9:12] if hdr and hdr.startswith(b"NATS/1.0 ") else b""
        if status == b"404":
            res = None
        elif status:
            line = hdr.split(b"\r\n", 1)[0].decode("latin-1", "replace") if hdr else ""
            res = BusError(f"KV get failed: {line}")
        elif hdr and b"KV-Operation:" in hdr:  # a delete or purge marker: the key has no value
            res = None
        else:
            res = data
        b.results[tok - b.base] = res
        b.left -= 1
        if b.left <= 0 and not b.fut.done():
            b.fut.set_result(None)

    async def publish_batch(
        self, items: list[tuple[str, bytes, dict[str, str] | None]], timeout: float
    ) -> list[PubAck | PublishError]:
        """The whole batch as PUB/HPUB protocol lines in ONE buffer, queued with one ``_send_command``
        (nats-py's own outbound queue and flusher: its pending-size limit and write ordering hold), acks
        matched by token in :meth:`_on_pub_reply`, one future per batch.
        """
        nc = self.nc
        assert nc is not None
        n = len(items)
        if not nc.is_connected:
            # fail fast instead of letting nats-py buffer the publish until it reconnects: a buffered
            # message would be stored later although the caller was told it failed
            return [PublishError(PublishErrorKind.CONNECTION, "not connected")] * n
        if nc.is_draining_pubs:
            return [_pub_error(nats.errors.ConnectionDrainingError())] * n
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        base = self.pub_counter + 1
        self.pub_counter += n
        b = _PubBatch(base, n, fut)
        results = b.results
        prefix = self.pub_prefix
        max_payload = nc._max_payload
        pending = self.pub_pending
        bad_subject = _SUBJECT_INVALID.search
        parts: list[bytes] = []
        add = parts.append
        size = 0
        tok = base
        try:
            for i, (subject, payload, headers) in enumerate(items):
                if not subject or bad_subject(subject):
                    results[i] = _pub_error(nats.errors.BadSubjectError())
                elif len(payload) > max_payload:
                    results[i] = _pub_error(nats.errors.MaxPayloadError())
                else:
                    if headers:
                        try:
                            hdr = _encode_headers(headers)
                        except nats.errors.Error as e:
                            results[i] = _pub_error(e)
                            tok += 1
                            continue
                        hl = len(hdr)
                        add(f"HPUB {subject} {prefix}{tok} {hl} {hl + len(payload)}\r\n".encode())
                        add(hdr)
                    else:
                        add(f"PUB {subject} {prefix}{tok} {len(payload)}\r\n".encode())
                    add(payload)
                    add(b"\r\n")
                    size += len(payload)
                    pending[tok] = b
                    b.left += 1
                tok += 1
            if b.left:
                nc.stats["out_msgs"] += b.left
                nc.stats["out_bytes"] += size
                try:
                    await nc._send_command(b"".join(parts))
                    if nc._flush_queue is not None and nc._flush_queue.empty():
                        await nc._flush_pending()
                except Exception as e:
                    err = _pub_error(e)
                    for t in range(base, base + n):
                        if pending.pop(t, None) is not None:
                            results[t - base] = err
                    b.left = 0
                if b.left:
                    await asyncio.wait((fut,), timeout=timeout)
        finally:
            for t in range(base, base + n):
                pending.pop(t, None)  # timed out (or cancelled): a late ack is simply dropped
        timeout_err = PublishError(PublishErrorKind.TIMEOUT, "no ack in time")
        return [timeout_err if r is None else r for r in results]

    # ---- consume

    async def fetch(self, key: str, batch: int, timeout: float) -> list[Msg]:
        p = self.pullers.get(key)
        if p is None:
            raise nats.js.errors.NotFoundError(description="consumer deleted")
        return await p.fetch(batch, timeout)

    async def respond(self, replies: list[str], payload: bytes, flush: bool) -> None:
        """The same ``payload`` (``+ACK``, ``-NAK``, ...) to every reply subject: one buffer of PUB lines,
        one ``_send_command`` (as ``nc.publish`` would queue them, also while reconnecting, within nats-py's
        pending limit)."""
        nc = self.nc
        assert nc is not None
        if nc.is_closed:
            raise nats.errors.ConnectionClosedError
        tail = f" {len(payload)}\r\n".encode() + payload + b"\r\n"
        buf = b"".join([b"PUB " + r.encode() + tail for r in replies if r])
        if buf:
            if not nc.is_connected and (
                nc._max_pending_size <= 0 or len(buf) + nc._pending_data_size > nc._max_pending_size
            ):
                raise nats.errors.OutboundBufferLimitError
            nc.stats["out_msgs"] += len(replies)
            nc.stats["out_bytes"] += len(payload) * len(replies)
            await nc._send_command(buf)
            if nc._flush_queue is not None and nc._flush_queue.empty():
                await nc._flush_pending()
        if flush and not nc.is_reconnecting:
            with contextlib.suppress(nats.errors.TimeoutError, asyncio.TimeoutError):
                await nc.flush(timeout=max(1, round(self.cfg.request_timeout)))

    async def stream_info(self, kind: Kind) -> api.StreamInfo:
        assert self.js is not None
        return await self.js.stream_info(self.names.stream(kind))

    async def consumer_info(self, key: str) -> api.ConsumerInfo:
        assert self.js is not None
        p = self.pullers[key]
        info: api.ConsumerInfo = await self.js.consumer_info(p.stream, p.durable)
        return info

    # ---- KV

    async def ensure_kv(self, kv: KvConfig) -> None:
        assert self.js is not None
        bucket = self.names.bucket(kv.bucket)
        cfg = api.StreamConfig(
            name=f"KV_{bucket}",
            subjects=[f"$KV.{bucket}.>"],
            allow_direct=True,
            allow_rollup_hdrs=True,
            deny_delete=True,
            discard=api.DiscardPolicy.NEW,
            duplicate_window=min(120.0, kv.ttl),
            max_age=kv.ttl,
            max_bytes=kv.max_bytes,
            max_msgs=-1,
            max_msgs_per_subject=1,
            num_replicas=self.cfg.replicas,
            storage=api.StorageType.FILE,
        )
        await self.ensure_stream(cfg)
        self.kv = await self.js.key_value(bucket)

    async def kv_put(self, items: list[tuple[str, bytes]], timeout: float) -> list[PubAck | PublishError]:
        prefix = f"$KV.{self.names.bucket(self.cfg.kv.bucket)}."
        return await self.publish_batch([(prefix + k, v, None) for k, v in items], timeout)

    async def kv_get(self, keys: list[str], timeout: float) -> list[bytes | None]:
        """The values of ``keys`` (None: no such key, deleted or expired).  With direct gets allowed on the
        bucket's stream (ours are created so), ONE buffer of direct-get requests on our own inbox, replies
        through the fast path, one future per batch; else nats-py's ``KeyValue.get`` per key."""
        nc = self.nc
        assert nc is not None and self.kv is not None
        if not getattr(self.kv, "_direct", False):
            return await self._kv_get_each(keys, timeout)
        if not nc.is_connected:
            raise BusError("KV get failed: not connected")
        n = len(keys)
        if not n:
            return []
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        base = self.get_counter + 1
        self.get_counter += n
        b = _GetBatch(base, n, fut)
        pending = self.get_pending
        api_prefix = f"$JS.API.DIRECT.GET.{self.kv._stream}.{self.kv._pre}"
        prefix = self.get_prefix
        parts = []
        for i, k in enumerate(keys):
            if not k or _SUBJECT_INVALID.search(k):
                b.results[i] = BusError(f"KV get failed: bad key {k!r}")
                continue
            parts.append(f"PUB {api_prefix}{k} {prefix}{base + i} 0\r\n\r\n".encode())
            pending[base + i] = b
            b.left += 1
        try:
            if b.left:
                await nc._send_command(b"".join(parts))
                if nc._flush_queue is not None and nc._flush_queue.empty():
                    await nc._flush_pending()
                await asyncio.wait((fut,), timeout=timeout)
        finally:
            for t in range(base, base + n):
                pending.pop(t, None)  # a late reply is dropped
        out: list[bytes | None] = []
        for r in b.results:
            if isinstance(r, BusError):
                raise r
            if r is _NO_REPLY:
                raise BusError("KV get failed: no reply in time")
            out.append(r)
        return out

    async def _kv_get_each(self, keys: list[str], timeout: float) -> list[bytes | None]:
        import nats.js.kv

        async def one(k: str) -> bytes | None:
            try:
                e = await self.kv.get(k)
            except (nats.js.errors.KeyNotFoundError, nats.js.errors.KeyDeletedError):
                return None
            return e.value

        res = await asyncio.wait_for(asyncio.gather(*(one(k) for k in keys), return_exceptions=True), timeout)
        out: list[bytes | None] = []
        for r in res:
            if isinstance(r, BaseException):
                raise BusError(f"KV get failed: {type(r).__name__}: {r}") from r
            out.append(r)
        return out

    async def kv_delete(self, keys: list[str], timeout: float) -> None:
        prefix = f"$KV.{self.names.bucket(self.cfg.kv.bucket)}."
        hdr = {"KV-Operation": "PURGE", "Nats-Rollup": "sub"}
        res = await self.publish_batch([(prefix + k, b"", dict(hdr)) for k in keys], timeout)
        bad = [r for r in res if isinstance(r, PublishError)]
        if bad:
            raise BusError(f"KV delete failed for {len(bad)} keys: {bad[0].kind.value} {bad[0].description}")


# --------------------------------------------------------------------------- trio side


class Bus:
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
        self.opids = OpIdStore(self)
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
            raise BusError(f"{type(e).__name__}: {e}") from None

    async def ensure(self) -> None:
        """Create or update the streams and the KV bucket (idempotent; every node does it at start)."""
        await self._call(self._aio.ensure_streams)
        await self._call(self._aio.ensure_kv, self.cfg.kv)

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
                raise BusError("NATS connection closed")
            await self.wait_state_change()

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
        if not prepared:
            return []
        t = self.cfg.publish_timeout if timeout is None else timeout
        if self._state is ConnectionState.CLOSED:
            return [PublishError(PublishErrorKind.CONNECTION, "closed")] * len(prepared)
        return await self._call(self._aio.publish_batch, prepared, t)

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

    async def ack(self, msgs: Iterable[Msg], *, flush: bool = True) -> None:
        """Acknowledge a batch.  ``flush`` waits until the server has received the acks (one round trip)."""
        await self._respond(msgs, AckKind.ACK.value, flush)

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


class OpIdStore:
    """Operator message id → a value the gateway encodes (octets), in the TTL'd KV bucket.  Batched both
    ways."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus

    async def put_many(
        self, items: Iterable[tuple[str, str, bytes]], timeout: float | None = None
    ) -> list[PubAck | PublishError]:
        """``[(operator, normalised operator id, value)]`` → one result per item.

        The gateway stores its id mapping before acking the MT message, so an early receipt finds it.
        """
        data = [(opid_key(op, oid), value) for op, oid, value in items]
        if not data:
            return []
        t = self._bus.cfg.publish_timeout if timeout is None else timeout
        return await self._bus._call(self._bus._aio.kv_put, data, t)

    async def get_many(
        self, items: Iterable[tuple[str, str]], timeout: float | None = None
    ) -> list[bytes | None]:
        """``[(operator, normalised operator id)]`` → value or ``None`` (unknown or expired).

        Raises BusError when the KV cannot be read.
        """
        keys = [opid_key(op, oid) for op, oid in items]
        if not keys:
            return []
        t = self._bus.cfg.request_timeout if timeout is None else timeout
        raw = await self._bus._call(self._bus._aio.kv_get, keys, t)
        values: list[bytes | None] = raw
        return values

    async def delete_many(self, items: Iterable[tuple[str, str]], timeout: float | None = None) -> None:
        keys = [opid_key(op, oid) for op, oid in items]
        if keys:
            t = self._bus.cfg.publish_timeout if timeout is None else timeout
            await self._bus._call(self._bus._aio.kv_delete, keys, t)
