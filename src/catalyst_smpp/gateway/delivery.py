"""Partner delivery: receipts (``DLR.<partner>``) and MO messages (``MO.<partner>``) to a bound partner.

One :class:`PartnerDelivery` per partner that has a receiver or transceiver bind on this node (the Gateway
starts it on the first such bind and stops it when the last one goes).  It pulls from the partner's durable
consumers — shared with every other node where the partner is bound, so each message goes to one of them —
once a deliver_sm window slot of the partner's receivers on this node is free, up to their whole window at a
time, and sends a ``deliver_sm`` per message spread over those receivers (round robin over those with a free
slot, by the :class:`~catalyst_smpp.transport.sender.WindowedSender` the operator connector sends with), each
as soon as a slot is free.  Nothing waits on a timer: a slot is signalled by the
``deliver_sm_resp`` (or failure) that frees it, a new bind by :meth:`PartnerDelivery.receiver_bound`.  The
window of a receiver is its partner's ``window`` as configured (set on the session at bind).  With an
``order`` (:class:`~catalyst_smpp.gateway.order.ReceiptOrder`, the Gateway's) a receipt waits until the submit
response that gave the partner its id has gone out (see gateway/order.py).

A message is acked on ``deliver_sm_resp`` ``ESME_ROK``; on an error status, a response timeout or the
session's loss it is nak'ed with a delay (the next fetch, here or on another node, gets it again).  The delay
after an error status doubles with each delivery of that message (``nak_delay``, 2x, 4x, ... up to
``max_nak_delay``), so a partner that refuses a message for hours is not sent it every few seconds.  The two
statuses SMPP v3.4 defines as final for the receiving ESME, ``ESME_RX_P_APPN`` (0x65, permanent application
error) and ``ESME_RX_R_APPN`` (0x66, reject message), end the message: it is acked, counted as
``deliver_total{status="refused"}`` and logged, never sent again.  Refusals are logged at most once per
``log_every`` seconds per partner, with a count.  A record
that cannot be decoded is terminated (never redelivered) with an error log.  A partner that is not bound
anywhere is not fetched for at all: its messages stay in JetStream, bounded by the stream's limits.  A kind
the partner takes by webhook (``wants``: catalyst_smpp.http.webhooks) is not fetched here either.

Receipts: ``esm_class`` 0x04, the common receipt text (``encoding.receipts.format_receipt``: the id the
partner was given -- the record's ``display_id``, for a submit_multi the one id of its response -- in the
partner's ``message_id_format``, dates with the partner's ``receipt_date_digits``), and the
``receipted_message_id`` / ``message_state`` (and ``network_error_code`` when known) TLVs; the receipt goes
from the original destination to the original source.  Whether the partner wants a receipt at all
(registered_delivery) is decided upstream, where the flags are known (the KV mapping): every DLR record here
is delivered.

MO: source/destination, esm_class (UDHI kept), protocol_id, data_coding and the TLVs as received; the payload
in ``short_message`` up to 254 octets, else in ``message_payload``.
"""

from __future__ import annotations

import collections
import datetime as dt
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import trio

from catalyst_smpp.bus import BusConsumer, BusError, Kind, MessageBus, Msg
from catalyst_smpp.encoding.receipts import Receipt, format_receipt, stat_for_state, state_for_stat
from catalyst_smpp.gateway.events import EventPublisher
from catalyst_smpp.gateway.ids import format_id
from catalyst_smpp.gateway.messages import DLR, DecodeError, DlrFields, DlrMessage, MoMessage, dlr_fields
from catalyst_smpp.gateway.order import ReceiptOrder
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.store.records import Partner
from catalyst_smpp.transport.errors import NotBoundError, ResponseTimeoutError
from catalyst_smpp.transport.sender import WindowedSender
from catalyst_smpp.transport.session import SmppSession

__all__ = ["PartnerDelivery", "dlr_pdu", "mo_pdu"]

log = logging.getLogger(__name__)

_TLV_RECEIPTED_ID: Final = int(Tag.receipted_message_id)
_TLV_STATE: Final = int(Tag.message_state)
_TLV_NEC: Final = int(Tag.network_error_code)
_TLV_PAYLOAD: Final = int(Tag.message_payload)
# deliver_sm_resp statuses that end the message (SMPP v3.4 5.1.3: the ESME will not take it, ever)
REFUSED_FOR_GOOD: Final = frozenset({0x65, 0x66})  # ESME_RX_P_APPN, ESME_RX_R_APPN
_OK, _RETRY, _REFUSED = 0, 1, 2
# longest wait for a free window slot before looking again (a safety net: slots are signalled)
_SLOT_WAIT_LIMIT: Final = 1.0
# fetched messages waiting this long for a window slot are marked in progress (below every ack_wait used)
_KEEP_ALIVE: Final = 2.0


def _date(ts: float) -> dt.datetime | None:
    if not ts:
        return None
    d = dt.datetime.fromtimestamp(ts, dt.UTC).replace(tzinfo=None)
    return d if 2000 <= d.year <= 2099 else None


def partner_message_id(message_id: str, fmt: str) -> str:
    """Our canonical (decimal) id as the partner sees it; anything not decimal is passed as is."""
    if message_id.isdigit():
        try:
            return format_id(int(message_id), fmt)
        except ValueError:
            return message_id
    return message_id


def _receipt_text(
    shown: str, stat: str, state: MessageState, error: str, submit_date: float, done_date: float, text: str,
    digits: int,
) -> bytes:  # fmt: skip
    """``format_receipt`` of the receipt :func:`dlr_pdu` describes (the same octets, checked by the tests),
    without a ``Receipt`` and ``datetime`` per message."""
    if digits not in (10, 12):
        receipt = Receipt(
            message_id=shown,
            state=state,
            stat=stat,
            sub=1,
            dlvrd=1 if state is MessageState.DELIVERED else 0,
            submit_date=_date(submit_date),
            done_date=_date(done_date),
            err=error or "000",
            text=text,
        )
        return format_receipt(receipt, digits)  # raises the error
    err = error or "000"
    if len(err) < 3 and err.isdigit():
        err = err.zfill(3)
    return (
        f"id:{shown} sub:001 dlvrd:{'001' if state is MessageState.DELIVERED else '000'}"
        f" submit date:{_date_text(submit_date, digits)} done date:{_date_text(done_date, digits)}"
        f" stat:{stat_for_state(state)} err:{err} text:{(text or '')[:20]}"
    ).encode("latin-1", errors="replace")


_DATES: dict[tuple[int, int], str] = {}


def _date_text(ts: float, digits: int) -> str:
    """A receipt date (YYMMDDhhmm[ss], UTC) of a unix time, zeros when unknown; cached per minute/second."""
    if not ts:
        return "0" * digits
    try:
        sec = int(ts)
    except (OverflowError, ValueError):
        return "0" * digits
    key = (sec if digits == 12 else sec // 60, digits)
    # within a millisecond of the next second/minute datetime's rounding may already be there: no cache
    cacheable = ts - sec < 0.999 if digits == 12 else ts - (sec - sec % 60) < 59.999
    text = _DATES.get(key) if cacheable else None
    if text is None:
        d = _date(ts)
        if d is None:
            text = "0" * digits
        else:
            text = d.strftime("%y%m%d%H%M%S" if digits == 12 else "%y%m%d%H%M")
        if cacheable:
            if len(_DATES) >= 4096:
                _DATES.clear()
            _DATES[key] = text
    return text


_STATE_TLVS: dict[MessageState, Tlv] = {s: Tlv(_TLV_STATE, bytes([int(s)])) for s in MessageState}
_STATES: dict[str, MessageState] = {}


def dlr_pdu(dlr: DlrMessage, partner: Partner) -> DeliverSm:
    """The deliver_sm receipt for a partner."""
    return _fields_pdu(DLR.view_of(dlr), partner)


def _fields_pdu(v: DlrFields, partner: Partner) -> DeliverSm:
    """:func:`dlr_pdu` of a record read with :func:`dlr_fields` (no ``DlrMessage``, no ``Address``)."""
    return _receipt_pdu(
        v.display_id, v.state, v.error, v.submit_date, v.done_date, v.text, v.network_error_code,
        v.source_ton, v.source_npi, v.source_addr, v.dest_ton, v.dest_npi, v.dest_addr, partner,
    )  # fmt: skip


def _receipt_pdu(
    display_id: str, stat: str, error: str, submit_date: float, done_date: float, text: str,
    network_error_code: str, s_ton: int, s_npi: int, s_addr: str, d_ton: int, d_npi: int, d_addr: str,
    partner: Partner,
) -> DeliverSm:  # fmt: skip
    # the id the partner was given (a submit_multi's one id for each of its destinations' receipts)
    shown = partner_message_id(display_id, partner.message_id_format)
    state = _STATES.get(stat)
    if state is None:
        state = state_for_stat(stat) or MessageState.UNKNOWN
        if len(_STATES) < 256:
            _STATES[stat] = state
    short = _receipt_text(
        shown, stat, state, error, submit_date, done_date, text, partner.receipt_date_digits
    )
    rmi = Tlv(_TLV_RECEIPTED_ID, shown.encode("latin-1", "replace") + b"\x00")
    tlvs: tuple[Tlv, ...] = (rmi, _STATE_TLVS[state])
    if network_error_code:
        try:
            raw = bytes.fromhex(network_error_code)
        except ValueError:
            raw = b""
        if len(raw) == 3:
            tlvs = (*tlvs, Tlv(_TLV_NEC, raw))
    # the receipt goes from the original destination to the original source
    return DeliverSm(
        source_addr_ton=d_ton,
        source_addr_npi=d_npi,
        source_addr=d_addr,
        dest_addr_ton=s_ton,
        dest_addr_npi=s_npi,
        destination_addr=s_addr,
        esm_class=0x04,
        data_coding=0,
        short_message=short,
        tlvs=tlvs,
    )


def mo_pdu(mo: MoMessage) -> DeliverSm:
    """The deliver_sm of an MO message."""
    tlvs = [Tlv(tag, raw) for tag, raw in mo.tlvs if tag != _TLV_PAYLOAD]
    short = mo.payload
    if len(short) > 254:
        tlvs.append(Tlv(_TLV_PAYLOAD, short))
        short = b""
    return DeliverSm(
        source_addr_ton=mo.source.ton,
        source_addr_npi=mo.source.npi,
        source_addr=mo.source.addr,
        dest_addr_ton=mo.dest.ton,
        dest_addr_npi=mo.dest.npi,
        destination_addr=mo.dest.addr,
        esm_class=mo.esm_class & ~0x3C,  # not a receipt
        protocol_id=mo.protocol_id,
        data_coding=mo.data_coding,
        short_message=short,
        tlvs=tuple(tlvs),
    )


class PartnerDelivery:
    """Receipts and MO to one partner's receivers on this node; see the module notes."""

    def __init__(
        self,
        server: Any,
        bus: MessageBus,
        partner: Partner,
        *,
        events: EventPublisher | None = None,
        metrics: Metrics | None = None,
        max_batch: int = 256,
        fetch_timeout: float = 1.0,
        nak_delay: float = 5.0,
        max_nak_delay: float = 300.0,
        lost_delay: float = 0.5,
        log_every: float = 10.0,
        order: ReceiptOrder | None = None,
        wants: Callable[[Kind], bool] | None = None,
    ) -> None:
        self.server = server
        self.bus = bus
        self.partner = partner
        self.events = events
        self.metrics = metrics
        self.max_batch = max_batch
        self.fetch_timeout = fetch_timeout
        self.nak_delay = nak_delay
        self.max_nak_delay = max_nak_delay
        self.lost_delay = lost_delay
        self.log_every = log_every
        self.order = order
        """When set, a receipt waits for its message's submit response (gateway/order.py)."""
        self.wants = wants
        """When set, a kind it answers False for is not fetched (it goes to the partner's webhook instead);
        asked before each fetch, so a webhook added or removed applies at once."""
        self.delivered = 0
        self.failed = 0
        """Deliveries to be tried again (error status, no answer, session lost)."""
        self.refused = 0
        """Messages the partner refused for good (REFUSED_FOR_GOOD): acked, not sent again."""
        self._refusals: dict[tuple[int, bool], int] = {}  # (status, final) -> count since the last log line
        self._refusals_logged = -1e9
        self._stopping = False
        self._scope: trio.CancelScope | None = None
        self._fetch_scopes: list[trio.CancelScope] = []
        self._in_flight = 0
        self._done: collections.deque[tuple[Any, Any, int, float]] = collections.deque()
        self._done_lot = trio.lowlevel.ParkingLot()
        self._slot_lot = trio.lowlevel.ParkingLot()  # pullers waiting for a free window slot
        # deliver_sm on the partner's receivers (ctx: (consumer, msg)); no throttle retry: naks back off
        self._sender: WindowedSender[SmppSession] = WindowedSender(self._on_done)
        self._pullers = 0

    @property
    def system_id(self) -> str:
        return self.partner.system_id

    def update(self, partner: Partner) -> None:
        """A changed partner record (id format, date digits) applies to the next messages."""
        self.partner = partner

    def stop(self) -> None:
        """Stop fetching; what is in flight is settled (ack/nak), then :meth:`run` returns."""
        self._stopping = True
        for s in self._fetch_scopes:
            s.cancel()
        self._done_lot.unpark_all()
        self._slot_lot.unpark_all()

    async def run(self, *, task_status: trio.TaskStatus[PartnerDelivery] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        try:
            async with trio.open_nursery() as n:
                n.start_soon(self._settler)
                for kind in (Kind.DLR, Kind.MO):
                    await n.start(self._pull, kind)
                task_status.started(self)
                started = True
        finally:
            if not started:
                task_status.started(self)

    # ------------------------------------------------------------------ pulling and sending

    async def _consumer(self, kind: Kind) -> Any:
        delay = 0.2
        while True:
            try:
                return await self.bus.consumer(kind, self.system_id)
            except BusError as e:
                log.warning("[%s] %s consumer unavailable (%s); retrying", self.system_id, kind.value, e)
                await trio.sleep(delay)
                delay = min(delay * 2, 5.0)

    async def _pull(
        self, kind: Kind, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._pullers += 1
        try:
            consumer = await self._consumer(kind)
            task_status.started()
            await self._pull_loop(consumer, kind)
        finally:
            self._pullers -= 1
            self._done_lot.unpark_all()

    async def _pull_loop(self, consumer: BusConsumer, kind: Kind) -> None:
        while not self._stopping:
            if self.wants is not None and not self.wants(kind):
                await self._wait_for_slot()  # looked at again after a reload (receiver_bound) or a second
                continue
            receivers = self.server.receivers(self.system_id)
            free = sum(max(0, s.window_available) for s in receivers)
            if free <= 0:
                await self._wait_for_slot()
                continue
            # up to a whole window at once, not just the slots free now: the rest wait in _send for the
            # slots the partner frees meanwhile, so a busy partner costs one fetch per window, not one per
            # answered deliver_sm (and the window does not run dry during the fetch)
            want = max(free, sum(s.window_size for s in receivers))
            scope = trio.CancelScope()
            self._fetch_scopes.append(scope)
            msgs: list[Any] = []
            try:
                with scope:
                    msgs = await consumer.fetch(min(self.max_batch, want), self.fetch_timeout)
            except BusError as e:
                log.warning("[%s] fetching %s failed: %s", self.system_id, kind.value, e)
                await trio.sleep(0.5)
                continue
            finally:
                self._fetch_scopes.remove(scope)
            if msgs:
                await self._send_all(consumer, kind, msgs)

    async def _send_all(self, consumer: BusConsumer, kind: Kind, msgs: list[Msg]) -> None:
        poison: list[Any] = []
        order = self.order
        pos = [0]  # msgs[pos[0]:]: the ones not sent yet
        acquire = self._acquirer(consumer, msgs, pos)
        send = self._sender.send
        for i, m in enumerate(msgs):
            pos[0] = i
            message_id = ""
            try:
                if kind is Kind.DLR:
                    dlr = dlr_fields(m.data)  # read flat, without a DlrMessage
                    pdu: Pdu = _fields_pdu(dlr, self.partner)
                    message_id = dlr.message_id
                else:
                    pdu = mo_pdu(MoMessage.from_bytes(m.data))
            except (DecodeError, ValueError) as e:
                log.error(
                    "[%s] %s message seq %d is not a record (%s); terminated",
                    self.system_id,
                    kind.value,
                    m.stream_seq,
                    e,
                )
                poison.append(m)
                continue
            if order is not None and message_id:
                delay = order.delay(message_id)
                if delay is not None:  # its submit response is not out yet
                    await order.hold(message_id, delay)
            # on a receiver with a free window slot (waiting for one); the outcome comes to _on_done
            err = await send(pdu, (consumer, m), acquire)
            if err is None:
                self._in_flight += 1
            elif isinstance(err, NotBoundError):
                # nobody bound any more: everything left goes back at once
                self._finish(consumer, m, _RETRY, self.lost_delay)
                for rest in msgs[i + 1 :]:
                    self._finish(consumer, rest, _RETRY, self.lost_delay)
                break
            else:
                log.warning("[%s] deliver_sm not sent (%r); redelivery", self.system_id, err)
                self._finish(consumer, m, _RETRY, self._backoff(m))
        if poison:
            try:
                await consumer.term(poison)
            except BusError as e:
                log.warning("[%s] term failed: %s", self.system_id, e)

    def _acquirer(
        self, consumer: Any, batch: list[Any], pos: list[int]
    ) -> Callable[[], Awaitable[SmppSession]]:
        """The ``acquire`` of the windowed sender for one fetched batch: a receiver of the partner that can
        send now (round robin), waiting for a slot; NotBoundError when none is bound.

        ``batch[pos[0]:]``: the fetched messages not sent yet; while they wait for slots longer than
        ``_KEEP_ALIVE`` they are marked in progress (JetStream would redeliver them after its ``ack_wait``: a
        partner that stops answering holds a window for up to the response timeout)."""
        alive = trio.current_time()  # when they were fetched or last marked
        take_slot = self._sender.take_slot

        async def acquire() -> SmppSession:
            nonlocal alive
            while True:
                receivers = self.server.receivers(self.system_id)
                if not receivers:
                    raise NotBoundError("no receiver of the partner bound here")
                s = take_slot(receivers)
                if s is not None:
                    return s
                # every window is full: wait for a slot on the least loaded one
                if trio.current_time() - alive >= _KEEP_ALIVE:
                    alive = trio.current_time()
                    try:
                        await consumer.in_progress(batch[pos[0] :])
                    except BusError as e:
                        log.debug("[%s] in_progress failed: %s", self.system_id, e)
                best = max(receivers, key=lambda s: s.window_available - s.in_flight)
                try:
                    with trio.move_on_after(1.0):
                        await best.wait_window()
                except Exception:
                    await trio.sleep(0.01)

        return acquire

    async def _wait_for_slot(self) -> None:
        """Until a window slot may have come free on this node's receivers: one of our deliver_sm was
        answered or failed (:meth:`_callback`), a receiver bound (:meth:`receiver_bound`) or :meth:`stop`.
        Those are the only ways a slot frees (only this object sends deliver_sm to the partner's sessions
        here), so the wait ends as soon as there is one; the timeout is a safety net, not a pace."""
        with trio.move_on_after(_SLOT_WAIT_LIMIT):
            await self._slot_lot.park()

    def receiver_bound(self) -> None:
        """Another receiver/transceiver bind of the partner on this node: its window is free now."""
        self._slot_lot.unpark_all()

    def _on_done(self, sent: tuple[Any, Any], result: Any, _sent_at: float | None) -> None:
        """A deliver_sm's outcome (runs in the session's task): ack, refusal or nak (see the module notes)."""
        consumer, msg = sent
        self._in_flight -= 1
        if self._slot_lot:  # a puller waits for a slot: this one is free (unparking an empty lot costs)
            self._slot_lot.unpark_all()
        if isinstance(result, Pdu):
            status = result.command_status
            if status == 0:
                self._finish(consumer, msg, _OK, 0.0)
            elif status in REFUSED_FOR_GOOD:
                self._refusal(status, True)
                self._finish(consumer, msg, _REFUSED, 0.0)
            else:
                self._refusal(status, False)
                self._finish(consumer, msg, _RETRY, self._backoff(msg))
        else:
            log.info("[%s] deliver_sm not answered (%s); redelivery", self.system_id, type(result).__name__)
            delay = self._backoff(msg) if isinstance(result, ResponseTimeoutError) else self.lost_delay
            self._finish(consumer, msg, _RETRY, delay)

    def _backoff(self, msg: Msg) -> float:
        """nak_delay, doubled for each earlier delivery of ``msg``, at most max_nak_delay."""
        n = getattr(msg, "num_delivered", 1) or 1
        return min(self.nak_delay * (1 << min(n - 1, 30)), self.max_nak_delay)

    def _refusal(self, status: int, final: bool) -> None:
        """Count a refused deliver_sm; log the counts at most once per ``log_every`` seconds."""
        key = (status, final)
        self._refusals[key] = self._refusals.get(key, 0) + 1
        now = trio.current_time()
        if now - self._refusals_logged < self.log_every:
            return
        self._refusals_logged = now
        parts = [
            f"{n} x 0x{st:08X} ({'refused for good: dropped' if fin else 'redelivery with back-off'})"
            for (st, fin), n in sorted(self._refusals.items())
        ]
        self._refusals.clear()
        log.warning("[%s] deliver_sm refused by the partner: %s", self.system_id, ", ".join(parts))

    def _finish(self, consumer: BusConsumer, msg: Msg, outcome: int, delay: float) -> None:
        self._done.append((consumer, msg, outcome, delay))
        if self._done_lot:  # the settler is parked (unpark of an empty lot is not free)
            self._done_lot.unpark()

    # ------------------------------------------------------------------ acking

    async def _settler(self) -> None:
        done = self._done
        while True:
            if not done:
                if self._stopping and self._in_flight <= 0 and self._pullers <= 0:
                    return
                with trio.move_on_after(0.5):
                    await self._done_lot.park()
                continue
            acks: dict[int, tuple[Any, list[Any]]] = {}
            naks: dict[tuple[int, float], tuple[Any, list[Any]]] = {}
            refused = 0
            while done:
                consumer, msg, outcome, delay = done.popleft()
                if outcome == _RETRY:
                    naks.setdefault((id(consumer), delay), (consumer, []))[1].append(msg)
                else:
                    acks.setdefault(id(consumer), (consumer, []))[1].append(msg)
                    refused += outcome == _REFUSED
            acked = sum(len(msgs) for _c, msgs in acks.values())
            if acked - refused:
                self.delivered += acked - refused
                self._count("ok", acked - refused)
            if refused:
                self.refused += refused
                self._count("refused", refused)
            for consumer, msgs in acks.values():
                try:
                    await consumer.ack(msgs, wait=False)  # a failure is only logged: not waited for
                except (
                    BusError
                ) as e:  # redelivered after ack_wait: a duplicate for the partner, counted there
                    log.warning("[%s] ack of %d message(s) failed: %s", self.system_id, len(msgs), e)
            for (_cid, delay), (consumer, msgs) in naks.items():
                self.failed += len(msgs)
                self._count("retry", len(msgs))
                try:
                    await consumer.nak(msgs, delay=delay)
                except BusError as e:
                    log.warning("[%s] nak of %d message(s) failed: %s", self.system_id, len(msgs), e)

    def _count(self, status: str, n: int) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            m.deliver_total.labels(partner=self.system_id, status=status).inc(n)
        except Exception:
            log.debug("metrics update failed", exc_info=True)
