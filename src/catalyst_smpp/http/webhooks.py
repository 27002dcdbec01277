"""Receipts and MO messages to partners' webhooks: signed JSON batches POSTed over HTTP, at least once.

A partner with an enabled webhook of a kind (``dlr`` receipts, ``mo`` messages; ``store.records.Webhook``,
migration 0014) gets that kind **only** by webhook: its SMPP binds stop taking it (``PartnerDelivery``'s
``wants``) and the pull endpoint refuses (``http.receipts``).  Every gateway node runs a
:class:`WebhookDelivery` per such webhook (:class:`WebhookTasks`, started and stopped as the configuration
snapshot changes); they pull from the same durable consumer SMPP delivery uses (``DLR_<partner>`` /
``MO_<partner>``), so JetStream spreads the messages over the nodes and each goes to one request at a time.

One fetch is one request: up to ``batch_size`` messages (what is waiting, without lingering), one item each,
``{"kind": "dlr" | "mo", "items": [...]}``, signed with the webhook's secret (:func:`signature`: headers
``X-Catalyst-Timestamp`` and ``X-Catalyst-Signature: v1=<hex HMAC-SHA256(secret, "<timestamp>." + body)>``).
A 2xx answer acks the batch's messages; anything else (another status, a timeout, a refused connection) naks
them with a delay and pauses this node's fetching for the same time: :func:`retry_delay` (1 s, 10 s, 30 s,
90 s, then every 5 minutes; the step is the larger of this node's failures in a row and the most deliveries
of a message in the batch, so a node that joins late does not start again at 1 s).  Meanwhile the messages
stay in the stream (bounded by its limits: ``max_age``, ``max_msgs_per_subject`` with discard "old").
While a request is outstanding its messages are marked in progress, so JetStream does not hand them to
another node.  Duplicates are possible (at least once: the receiver answered 2xx but the answer was lost, or
the node stopped between the answer and the ack); an item sent again after an earlier attempt is counted as
``webhook_deliveries_total{outcome="redelivered"}``, and each item has a stable ``event_id`` to de-duplicate
on.  A record that cannot be read is terminated (``outcome="poison"``), with an error log line.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol

import httpx
import trio

from catalyst_smpp import __version__
from catalyst_smpp.bus import BusConsumer, BusError, Kind, MessageBus, Msg
from catalyst_smpp.encoding import Alphabet
from catalyst_smpp.encoding.codecs import decode_short_message
from catalyst_smpp.gateway.delivery import partner_message_id
from catalyst_smpp.gateway.messages import DecodeError, MoMessage, dlr_fields
from catalyst_smpp.gateway.order import ReceiptOrder
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.store.records import ConfigSnapshot, Partner, Webhook

__all__ = [
    "BACKOFF",
    "RETRY_STEP",
    "STATUS_NAMES",
    "HttpPoster",
    "Poster",
    "WebhookDelivery",
    "WebhookTasks",
    "mo_item",
    "receipt_item",
    "request_body",
    "retry_delay",
    "signature",
    "verify_signature",
]

log = logging.getLogger(__name__)

BACKOFF: Final = (1.0, 10.0, 30.0, 90.0)
"""The delay after the 1st, 2nd, 3rd, 4th failed attempt; every later one waits :data:`RETRY_STEP`."""
RETRY_STEP: Final = 300.0
STATUS_NAMES: Final = {
    "DELIVRD": "DELIVERED",
    "UNDELIV": "UNDELIVERED",
    "EXPIRED": "EXPIRED",
    "DELETED": "DELETED",
    "REJECTD": "REJECTED",
    "ACCEPTD": "ACCEPTED",
    "ENROUTE": "ENROUTE",
    "UNKNOWN": "UNKNOWN",
}
"""The receipt's SMPP state (receipt text ``stat:``) → the item's ``status``; anything else is UNKNOWN."""
_KINDS: Final = {"dlr": Kind.DLR, "mo": Kind.MO}
_DC0: Final = {"gsm7": Alphabet.GSM7, "latin1": Alphabet.LATIN1, "ascii": Alphabet.IA5}
_USER_AGENT: Final = f"catalyst-smpp/{__version__} webhooks"
_LOG_EVERY: Final = 60.0


def retry_delay(attempt: int) -> float:
    """The wait after failed attempt number ``attempt`` (1 = the first): :data:`BACKOFF`, then
    :data:`RETRY_STEP`."""
    if attempt <= len(BACKOFF):
        return BACKOFF[max(attempt, 1) - 1]
    return RETRY_STEP


def signature(secret: str, timestamp: int, body: bytes) -> str:
    """``X-Catalyst-Signature``: ``v1=`` and the hex HMAC-SHA256 of ``"<timestamp>." + body`` keyed by the
    secret (its UTF-8 octets)."""
    mac = hmac.new(secret.encode(), str(timestamp).encode() + b"." + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(
    secret: str, timestamp: str, sig: str, body: bytes, *, tolerance: float = 300.0, now: float | None = None
) -> bool:
    """A receiver's check: the signature matches and the timestamp is within ``tolerance`` seconds of now
    (a replayed old request fails).  Constant-time comparison."""
    try:
        ts = int(timestamp)
    except ValueError:
        return False
    if abs((time.time() if now is None else now) - ts) > tolerance:
        return False
    return hmac.compare_digest(signature(secret, ts, body), sig.strip())


def _iso(ts: float) -> str | None:
    if not ts:
        return None
    try:
        return dt.datetime.fromtimestamp(ts, dt.UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


def _event_id(*parts: object) -> str:
    """A stable id of one receipt / MO (the same on every redelivery), revealing nothing of our ids."""
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()[:32]


def receipt_item(data: bytes, partner: Partner) -> dict[str, Any]:
    """One receipt (a DLR record's octets) as a webhook / pull item; :class:`DecodeError` if unreadable."""
    v = dlr_fields(data)
    return {
        "event_id": _event_id("dlr", v.message_id, v.part, v.state),
        "message_id": partner_message_id(v.display_id, partner.message_id_format),
        "status": STATUS_NAMES.get(v.state, "UNKNOWN"),
        "smpp_state": v.state,
        "error_code": v.error or "000",
        "network_error_code": v.network_error_code or None,
        "to": v.dest_addr,
        "from": v.source_addr,
        "operator": v.operator or None,
        "submitted_at": _iso(v.submit_date),
        "done_at": _iso(v.done_date),
        "parts": v.parts,
    }


def mo_item(data: bytes, partner: Partner, data_coding_0: str = "gsm7") -> dict[str, Any]:
    """One MO message (an MO record's octets) as a webhook item: the text decoded with the operator's
    meaning of data_coding 0; 8-bit data (no text) as ``payload_hex``; the UDH (a part of a concatenated
    message) as ``udh_hex``.  :class:`DecodeError` if unreadable."""
    mo = MoMessage.from_bytes(data)
    d = decode_short_message(
        mo.payload,
        mo.data_coding,
        udhi=bool(mo.esm_class & 0x40),
        default_alphabet=_DC0.get(data_coding_0, Alphabet.GSM7),
    )
    return {
        "event_id": _event_id("mo", mo.message_id),
        "message_id": partner_message_id(mo.message_id, partner.message_id_format),
        "from": mo.source.addr,
        "to": mo.dest.addr,
        "text": d.text,
        "payload_hex": None if d.text is not None else d.payload.hex(),
        "udh_hex": d.udh.hex() or None,
        "data_coding": mo.data_coding,
        "operator": mo.operator or None,
        "received_at": _iso(mo.received_at),
    }


def request_body(kind: str, items: Sequence[Mapping[str, Any]]) -> bytes:
    return json.dumps({"kind": kind, "items": list(items)}, separators=(",", ":")).encode()


class Poster(Protocol):
    """POST ``body`` to ``url``: the response status, or raise ``OSError`` / ``httpx.HTTPError``."""

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int: ...


class HttpPoster:
    """:class:`Poster` with one ``httpx.AsyncClient`` (connections kept alive; no redirects followed)."""

    def __init__(self, timeout: float = 10.0) -> None:
        self.client = httpx.AsyncClient(timeout=timeout, follow_redirects=False)

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        r = await self.client.post(url, content=body, headers=dict(headers))
        await r.aread()
        return r.status_code

    async def aclose(self) -> None:
        await self.client.aclose()


class WebhookDelivery:
    """One partner's receipts or MO to its webhook, from this node; see the module notes."""

    def __init__(
        self,
        bus: MessageBus,
        partner: Partner,
        hook: Webhook,
        *,
        poster: Poster | None = None,
        metrics: Metrics | None = None,
        order: ReceiptOrder | None = None,
        data_coding_0: Callable[[str], str] = lambda _operator: "gsm7",
        fetch_timeout: float = 1.0,
        request_timeout: float = 10.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.bus = bus
        self.partner = partner
        self.hook = hook
        self.kind = _KINDS[hook.kind]
        self._own_poster = poster is None
        self.poster: Poster = poster if poster is not None else HttpPoster(request_timeout)
        self.metrics = metrics
        self.order = order
        self.data_coding_0 = data_coding_0
        self.fetch_timeout = fetch_timeout
        self.clock = clock
        self.failures = 0
        """Failed requests in a row (this node)."""
        self.delivered = 0
        self.requests = 0
        self._stopping = False
        self._scope: trio.CancelScope | None = None  # cancels a fetch or a pause, never a request
        self._logged = -1e9
        self._unlogged = 0
        sc = bus.cfg.streams.dlr if self.kind is Kind.DLR else bus.cfg.streams.mo
        self._keep_alive = max(0.05, min(5.0, sc.ack_wait / 3))
        self.stopped = trio.Event()

    @property
    def name(self) -> str:
        return f"{self.partner.system_id} {self.hook.kind} webhook"

    def update(self, partner: Partner, hook: Webhook) -> None:
        """New settings (URL, secret, batch size, id format) for the next request."""
        self.partner, self.hook = partner, hook

    def stop(self) -> None:
        """Stop fetching; a request under way is finished and its batch settled, then :meth:`run` returns."""
        self._stopping = True
        if self._scope is not None:
            self._scope.cancel()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        try:
            consumer = await self._consumer()
            if consumer is not None:
                await self._loop(consumer)
        finally:
            if self._own_poster and isinstance(self.poster, HttpPoster):
                with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                    await self.poster.aclose()
            self.stopped.set()

    async def _consumer(self) -> BusConsumer | None:
        delay = 0.2
        while not self._stopping:
            try:
                return await self.bus.consumer(self.kind, self.partner.system_id)
            except BusError as e:
                log.warning("[%s] consumer unavailable (%s); retrying", self.name, e)
                await self._pause(delay)
                delay = min(delay * 2, 5.0)
        return None

    async def _pause(self, seconds: float) -> None:
        with trio.CancelScope() as self._scope:
            if not self._stopping:
                await trio.sleep(seconds)
        self._scope = None

    async def _loop(self, consumer: BusConsumer) -> None:
        while not self._stopping:
            msgs: list[Msg] = []
            with trio.CancelScope() as self._scope:
                if self._stopping:
                    break
                try:
                    msgs = await consumer.fetch(self.hook.batch_size, self.fetch_timeout)
                except BusError as e:
                    log.warning("[%s] fetch failed: %s", self.name, e)
                    await trio.sleep(0.5)
            self._scope = None
            if not msgs:
                continue
            delay = await self._deliver(consumer, msgs)
            if delay:
                await self._pause(delay)

    def _items(self, msgs: list[Msg]) -> tuple[list[Msg], list[dict[str, Any]], list[Msg]]:
        good: list[Msg] = []
        items: list[dict[str, Any]] = []
        poison: list[Msg] = []
        for m in msgs:
            try:
                if self.kind is Kind.DLR:
                    item = receipt_item(m.data, self.partner)
                else:
                    item = mo_item(m.data, self.partner, self.data_coding_0(_mo_operator(m.data)))
            except (DecodeError, ValueError) as e:
                log.error("[%s] message seq %d is not a record (%s); terminated", self.name, m.stream_seq, e)
                poison.append(m)
                continue
            good.append(m)
            items.append(item)
        return good, items, poison

    async def _deliver(self, consumer: BusConsumer, msgs: list[Msg]) -> float:
        """POST one batch and settle it; the pause before the next fetch (0 after a success)."""
        good, items, poison = self._items(msgs)
        if poison:
            self._count("poison", len(poison))
            try:
                await consumer.term(poison)
            except BusError as e:
                log.warning("[%s] term failed: %s", self.name, e)
        if not good:
            return 0.0
        ok, why = False, ""
        async with trio.open_nursery() as n:
            n.start_soon(self._keep_marking, consumer, good)
            try:
                await self._hold(good)
                ok, why = await self._post(items)
            finally:
                n.cancel_scope.cancel()
        if ok:
            again = sum(1 for m in good if m.num_delivered > 1)
            self.failures = 0
            self.delivered += len(good)
            if len(good) - again:
                self._count("ok", len(good) - again)
            if again:
                self._count("redelivered", again)
            try:
                await consumer.ack(good)
            except BusError as e:  # they come back after ack_wait: duplicates, counted as redelivered
                log.warning("[%s] ack of %d message(s) failed: %s", self.name, len(good), e)
            return 0.0
        self.failures += 1
        delay = retry_delay(max(self.failures, max(m.num_delivered for m in good)))
        self._count("retry", len(good))
        self._failed(why, len(good), delay)
        try:
            await consumer.nak(good, delay=delay)
        except BusError as e:
            log.warning("[%s] nak of %d message(s) failed: %s", self.name, len(good), e)
        return delay

    async def _keep_marking(self, consumer: BusConsumer, msgs: list[Msg]) -> None:
        """Keep the batch ours while its request is out (JetStream would hand it to another node after
        ``ack_wait``)."""
        while True:
            await trio.sleep(self._keep_alive)
            try:
                await consumer.in_progress(msgs, flush=True)
            except BusError as e:
                log.debug("[%s] in_progress failed: %s", self.name, e)

    async def _hold(self, msgs: list[Msg]) -> None:
        """Receipts wait for their submit responses (gateway/order.py), as on SMPP."""
        order = self.order
        if order is None or self.kind is not Kind.DLR:
            return
        for m in msgs:
            try:
                mid = dlr_fields(m.data).message_id
            except DecodeError:
                continue
            delay = order.delay(mid)
            if delay is not None:
                await order.hold(mid, delay)

    async def _post(self, items: list[dict[str, Any]]) -> tuple[bool, str]:
        hook = self.hook
        body = request_body(hook.kind, items)
        ts = int(self.clock())
        headers = {
            "Content-Type": "application/json",
            "User-Agent": _USER_AGENT,
            "X-Catalyst-Timestamp": str(ts),
            "X-Catalyst-Signature": signature(hook.secret, ts, body),
        }
        self.requests += 1
        try:
            status = await self.poster(hook.url, body, headers)
        except (OSError, httpx.HTTPError) as e:
            return False, f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
        if 200 <= status < 300:
            if self._unlogged or self._logged > -1e9:
                log.info("[%s] %s answers again", self.name, hook.url)
                self._logged, self._unlogged = -1e9, 0
            return True, ""
        return False, f"HTTP {status}"

    def _failed(self, why: str, n: int, delay: float) -> None:
        """Log a failed request: the first of a run at once, then at most once a minute with a count."""
        self._unlogged += 1
        now = trio.current_time()
        if now - self._logged < _LOG_EVERY:
            return
        log.warning(
            "[%s] POST %s failed (%s; %d failed request(s) since the last line); %d item(s) again in %.0f s",
            self.name,
            self.hook.url,
            why,
            self._unlogged,
            n,
            delay,
        )
        self._logged, self._unlogged = now, 0

    def _count(self, outcome: str, n: int) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            m.webhook_deliveries_total.labels(self.partner.system_id, self.hook.kind, outcome).inc(n)
        except Exception:
            log.debug("metrics update failed", exc_info=True)


def _mo_operator(data: bytes) -> str:
    try:
        return MoMessage.from_bytes(data).operator
    except (DecodeError, ValueError):
        return ""


class WebhookTasks:
    """The Gateway's webhook deliveries: one :class:`WebhookDelivery` per enabled webhook of an enabled
    partner, started, changed and stopped by :meth:`sync` as the configuration snapshot changes."""

    def __init__(
        self,
        bus: MessageBus,
        *,
        metrics: Metrics | None = None,
        order: ReceiptOrder | None = None,
        poster: Callable[[], Poster] | None = None,
        options: Mapping[str, Any] | None = None,
    ) -> None:
        self.bus = bus
        self.metrics = metrics
        self.order = order
        self.poster = poster
        self.options = dict(options or {})
        self.running: dict[tuple[str, str], WebhookDelivery] = {}
        self._covered: frozenset[tuple[str, Kind]] = frozenset()
        self._dc0: dict[str, str] = {}
        self._nursery: trio.Nursery | None = None
        self._closed = False

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as n:
            self._nursery = n
            task_status.started()
            await trio.sleep_forever()

    def covers(self, system_id: str, kind: Kind) -> bool:
        """True when the partner's ``kind`` goes to its webhook (not to its SMPP binds nor the pull API)."""
        return (system_id, kind) in self._covered

    def sync(self, snapshot: ConfigSnapshot) -> None:
        partners = {p.system_id: p for p in snapshot.partners if p.enabled}
        self._dc0 = {o.name: o.data_coding_0 for o in snapshot.operators}
        wanted = {(h.partner, h.kind): h for h in snapshot.webhooks if h.enabled and h.partner in partners}
        self._covered = frozenset((p, _KINDS[k]) for p, k in wanted)
        for key in [k for k in self.running if k not in wanted]:
            self.running.pop(key).stop()
        if self._closed or self._nursery is None:
            return
        for key, hook in wanted.items():
            have = self.running.get(key)
            if have is not None:
                have.update(partners[hook.partner], hook)
                continue
            wd = WebhookDelivery(
                self.bus,
                partners[hook.partner],
                hook,
                poster=self.poster() if self.poster is not None else None,
                metrics=self.metrics,
                order=self.order,
                data_coding_0=lambda op: self._dc0.get(op, "gsm7"),
                **self.options,
            )
            self.running[key] = wd
            self._nursery.start_soon(self._run, wd)

    async def _run(self, wd: WebhookDelivery) -> None:
        try:
            await wd.run()
        except Exception:
            log.exception("[%s] webhook delivery failed", wd.name)
        finally:
            key = (wd.partner.system_id, wd.hook.kind)
            if self.running.get(key) is wd:
                del self.running[key]

    async def close(self) -> None:
        """Stop every delivery (drain) and wait until each has settled its batch."""
        self._closed = True
        deliveries = list(self.running.values())
        for wd in deliveries:
            wd.stop()
        for wd in deliveries:
            await wd.stopped.wait()
