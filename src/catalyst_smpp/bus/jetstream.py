"""The asyncio side of the JetStream bus: everything that touches nats-py runs here, on the bus's thread.

:class:`_AioSide` owns the nats-py client; :class:`_Puller` is one durable pull consumer.  The hot paths
(batch publish, pull replies, acks, KV gets) write NATS protocol lines themselves and read replies through
the fast path of :mod:`.nats_internals`: one buffer per batch instead of one nats-py call per message
(docs/dev/gateway-performance.md has the figures).  Callers reach this module only through :mod:`.core`.

One module of ~750 lines on purpose: the publisher, the pullers and the KV reader share the wire format,
the fast-path handlers and the batch-token bookkeeping; apart, each would need the others' internals.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import json
import logging
import re
import time
from collections.abc import Mapping
from typing import Any, Final

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg as NatsMsg
from nats.js import JetStreamContext, api

from ..config import KvConfig, NatsConfig, StreamConfig
from .api import (
    MSG_ID_HEADER,
    AckKind,
    BusError,
    ConnectionState,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    redelivery_backoff,
)
from .names import Kind, Names
from .nats_internals import WireHandler, guard_pongs, install_fast_path, send_raw, sid

log = logging.getLogger(__name__)

_PENDING_SIZE: Final = 64 * 1024 * 1024
"""nats-py's outbound buffer limit (``pending_size``): publishes and acks beyond it fail at once."""


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
        self.prefix = nc.new_inbox() + "."
        self.buf: collections.deque[tuple[float, Msg]] = collections.deque()
        self.req = 0
        self.req_subject = b""
        self.ended = False
        self.deleted = False
        self.event = asyncio.Event()
        self.lock = asyncio.Lock()
        self.sub: Any = None

    async def start(self, fast: dict[int, WireHandler]) -> None:
        self.loop = asyncio.get_running_loop()
        self.sub = await self.nc.subscribe(self.prefix + "*", cb=_unused_cb)
        self.fast = fast
        fast[sid(self.sub)] = self._on_wire

    async def stop(self) -> None:
        if self.sub is not None:
            self.fast.pop(sid(self.sub), None)
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


async def _unused_cb(msg: NatsMsg) -> None:  # pragma: no cover - the fast path takes these subjects
    pass


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
        self.resent = 0  # publishes sent again for want of an ack (a stream leader lost)
        self.fast: dict[int, WireHandler] = {}
        self.listening: dict[int, Any] = {}  # beacon subscriptions by sid

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
            pending_size=_PENDING_SIZE,
        )
        reachable()
        guard_pongs(self.nc)
        install_fast_path(self.nc, self.fast)
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
        backoff = list(redelivery_backoff(sc)) or None
        max_deliver = sc.max_deliver
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
        Its replies come through the fast path (:func:`.nats_internals.install_fast_path`).
        """
        assert self.nc is not None
        self.pub_prefix = self.nc.new_inbox() + "."
        self.pub_plen = len(self.pub_prefix)
        self.pub_pending = {}
        self.pub_counter = 0
        sub = await self.nc.subscribe(self.pub_prefix + "*", cb=_unused_cb)
        self.fast[sid(sub)] = self._on_pub_reply
        # KV direct gets: replies on a second inbox of ours, through the same fast path
        self.get_prefix = self.nc.new_inbox() + "."
        self.get_plen = len(self.get_prefix)
        self.get_pending: dict[int, _GetBatch] = {}
        self.get_counter = 0
        sub = await self.nc.subscribe(self.get_prefix + "*", cb=_unused_cb)
        self.fast[sid(sub)] = self._on_get_reply

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
        max_payload = nc.max_payload
        pending = self.pub_pending
        bad_subject = _SUBJECT_INVALID.search
        parts: list[bytes] = []
        add = parts.append
        size = 0
        tok = base
        resend: list[tuple[int, int, int]] = []  # (token, first part, end part) of items carrying a msg id
        try:
            for i, (subject, payload, headers) in enumerate(items):
                if not subject or bad_subject(subject):
                    results[i] = _pub_error(nats.errors.BadSubjectError())
                elif len(payload) > max_payload:
                    results[i] = _pub_error(nats.errors.MaxPayloadError())
                else:
                    first = len(parts)
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
                    if headers and MSG_ID_HEADER in headers:
                        resend.append((tok, first, len(parts)))
                    size += len(payload)
                    pending[tok] = b
                    b.left += 1
                tok += 1
            if b.left:
                nc.stats["out_msgs"] += b.left
                nc.stats["out_bytes"] += size
                try:
                    await send_raw(nc, b"".join(parts))
                except Exception as e:
                    err = _pub_error(e)
                    for t in range(base, base + n):
                        if pending.pop(t, None) is not None:
                            results[t - base] = err
                    b.left = 0
                if b.left:
                    await self._await_acks(fut, timeout, parts, resend, pending)
        finally:
            for t in range(base, base + n):
                pending.pop(t, None)  # timed out (or cancelled): a late ack is simply dropped
        timeout_err = PublishError(PublishErrorKind.TIMEOUT, "no ack in time")
        return [timeout_err if r is None else r for r in results]

    async def _await_acks(
        self,
        fut: asyncio.Future[None],
        timeout: float,
        parts: list[bytes],
        resend: list[tuple[int, int, int]],
        pending: dict[int, _PubBatch],
    ) -> None:
        """Until every ack of a batch is in or ``timeout`` is over.  Items with a message id still unacked
        after ``publish_retry`` are sent again, and again each ``publish_retry``: a stream leader that is
        stopping or has just died drops what it had not stored without a word, and the new leader (elected
        meanwhile) stores the copy -- or, within the stream's duplicate window, acks it as a duplicate of
        what the old one did store.  Without this the batch, and every partner waiting on it, would sit
        out the whole publish timeout after a leader change that took a fraction of it."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        step = self.cfg.publish_retry
        nc = self.nc
        assert nc is not None
        if not resend or step <= 0:
            await asyncio.wait((fut,), timeout=timeout)
            return
        while True:
            remaining = deadline - loop.time()
            if remaining <= 0:
                return
            await asyncio.wait((fut,), timeout=min(remaining, step))
            if fut.done() or loop.time() >= deadline:
                return  # at the deadline nothing more is sent: a copy stored now would be a message refused
            again = [b"".join(parts[a:z]) for tok, a, z in resend if tok in pending]
            if again and nc.is_connected:
                self.resent += len(again)
                with contextlib.suppress(Exception):  # the next round (or the deadline) settles it
                    await send_raw(nc, b"".join(again))

    async def publish_pair(
        self,
        first: list[tuple[str, bytes, dict[str, str] | None]],
        second: list[tuple[str, bytes, dict[str, str] | None]],
        timeout: float,
    ) -> tuple[list[PubAck | PublishError], list[PubAck | PublishError] | None]:
        """:meth:`publish_batch` of ``first``, then -- only if every one of them was stored -- of ``second``
        (None when not published): two dependent batches for one crossing."""
        r1 = await self.publish_batch(first, timeout) if first else []
        if not all(r.ok for r in r1):
            return r1, None
        return r1, (await self.publish_batch(second, timeout) if second else [])

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
            if not nc.is_connected and (len(buf) + nc.pending_data_size > _PENDING_SIZE):
                raise nats.errors.OutboundBufferLimitError
            nc.stats["out_msgs"] += len(replies)
            nc.stats["out_bytes"] += len(payload) * len(replies)
            await send_raw(nc, buf)
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
        # direct gets need allow_direct on the stream as it is (an existing one may not have it)
        self.kv_direct = bool((await self.js.stream_info(f"KV_{bucket}")).config.allow_direct)
        self.kv_direct_prefix = f"$JS.API.DIRECT.GET.KV_{bucket}.$KV.{bucket}."

    async def kv_put(self, items: list[tuple[str, bytes]], timeout: float) -> list[PubAck | PublishError]:
        prefix = f"$KV.{self.names.bucket(self.cfg.kv.bucket)}."
        return await self.publish_batch([(prefix + k, v, None) for k, v in items], timeout)

    async def kv_get(self, keys: list[str], timeout: float) -> list[bytes | None]:
        """The values of ``keys`` (None: no such key, deleted or expired).  With direct gets allowed on the
        bucket's stream (ours are created so), ONE buffer of direct-get requests on our own inbox, replies
        through the fast path, one future per batch; else nats-py's ``KeyValue.get`` per key."""
        nc = self.nc
        assert nc is not None and self.kv is not None
        if not self.kv_direct:
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
        api_prefix = self.kv_direct_prefix
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
                await send_raw(nc, b"".join(parts))
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

    async def kv_get_entry(self, key: str, timeout: float) -> tuple[bytes, int] | None:
        """The value and revision of ``key`` (nats-py's ``KeyValue.get``; None: missing, deleted, expired)."""
        assert self.kv is not None
        try:
            e = await asyncio.wait_for(self.kv.get(key), timeout)
        except nats.js.errors.KeyNotFoundError:  # nats-py raises it for a deleted key too
            return None
        return (e.value or b"", int(e.revision or 0))

    async def kv_swap(self, key: str, value: bytes, revision: int, timeout: float) -> int | None:
        """Compare and set (``create`` for revision 0, else ``update(last=revision)``); None on a conflict."""
        assert self.kv is not None
        try:
            if revision == 0:
                return int(await asyncio.wait_for(self.kv.create(key, value), timeout))
            return int(await asyncio.wait_for(self.kv.update(key, value, last=revision), timeout))
        except nats.js.errors.KeyWrongLastSequenceError:
            return None

    # ---- beacons (core NATS: no stream)

    async def beacon(self, subject: str, payload: bytes) -> None:
        nc = self.nc
        if nc is None or not nc.is_connected:
            return  # lost: the next beacon replaces it
        with contextlib.suppress(nats.errors.Error, OSError):
            await nc.publish(subject, payload)

    async def listen(self, subject: str, deliver: Any) -> int:
        """Subscribe ``deliver(payload)`` (called on this thread, through the fast path) to ``subject``."""
        assert self.nc is not None
        sub = await self.nc.subscribe(subject, cb=_unused_cb)
        key = sid(sub)
        self.fast[key] = lambda _subject, _reply, data, _hdr: deliver(bytes(data))
        self.listening[key] = sub
        return key

    async def unlisten(self, key: int) -> None:
        self.fast.pop(key, None)
        sub = self.listening.pop(key, None)
        if sub is not None and self.nc is not None and not self.nc.is_closed:
            with contextlib.suppress(nats.errors.Error, OSError):
                await sub.unsubscribe()

    async def kv_delete(self, keys: list[str], timeout: float) -> None:
        prefix = f"$KV.{self.names.bucket(self.cfg.kv.bucket)}."
        hdr = {"KV-Operation": "PURGE", "Nats-Rollup": "sub"}
        res = await self.publish_batch([(prefix + k, b"", dict(hdr)) for k in keys], timeout)
        bad = [r for r in res if isinstance(r, PublishError)]
        if bad:
            raise BusError(f"KV delete failed for {len(bad)} keys: {bad[0].kind.value} {bad[0].description}")
