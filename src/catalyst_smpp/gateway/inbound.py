"""The operator connector's handler for incoming deliver_sm / data_sm: receipts and MO.

``InboundHandler.handle`` is the :class:`~catalyst_smpp.client.SmppClient` handler.  It never answers
at once: it queues the PDU and returns ``DEFERRED``; :meth:`InboundHandler.run` takes everything
queued (from all sessions, all messages) as one batch, does one KV lookup and one JetStream publish
for the batch, stores the batch's ``delivered`` event rows (one packed publish; docs/dev/gateway.md, "Events
are as durable as what they record"), and only then answers each PDU with ``session.respond`` --
``ESME_ROK`` after both acks, ``ESME_RX_T_APPN`` (temporary, the SMSC sends it again) when the bus failed or
the rows were not stored within ``events_timeout``.

Receipts (esm_class message-type bits set, or a ``receipted_message_id`` TLV; for an operator with
``receipts_by_text`` also a text that reads as one: :func:`~catalyst_smpp.encoding.receipts.receipt_in_text`)
are parsed from the TLVs or the text read by its data_coding
(:func:`catalyst_smpp.encoding.receipts.parse_receipt`), the id normalised with the operator's
``receipt_id_format`` (when the TLV and text ids differ, both, each also read with ``submit_id_format``:
:func:`receipt_keys`), looked up in the KV (``bus.opids``) → ``DlrMessage`` on
``DLR.<partner>`` with msg_id ``"dlr:<message_id>:<part>:<state>"`` (our own id: unique per destination of a
submit_multi) and the mapping's ``display_id`` (the id the partner was given: the submit_multi's one id).

* The ids this node's connector got in submit_sm_resp are remembered in memory (:class:`RecentIds`,
  bounded, filled by the connector as each response arrives): a receipt that comes back on this node
  -- the common case -- is mapped without a KV read, even before the connector has stored the mapping.
  The KV stays the source of truth across nodes and restarts (it is read for every id not found here).
* An unknown id (a fast SMSC can send the receipt before the connector has stored the mapping of
  the submit_sm_resp) is looked up again once after ``quick_retry`` (20 ms: the response may just
  not have been processed yet), then after each of ``lookup_delays`` (default 0.25, 0.5, 1, 2 s)
  while its deliver_sm stays unanswered; then it is answered ``ESME_ROK``, counted
  (``stats.unknown``) and logged.
* Intermediate notifications (ENROUTE) are answered and not forwarded.
* The partner's ``registered_delivery`` (the mapping's ``flags``) decides what it gets: 0 nothing,
  2 failures only, 1/3 every final state (:func:`wants_receipt`).  Receipts it does not want are not
  published (the ``delivered`` row is still stored).
* **Messages of several parts** (mapping ``parts > 1``): the partner gets one receipt per our id.  The
  state of each part is kept **in the same KV bucket** (TTL'd like the mappings, so it works across
  nodes and restarts) as a :class:`~catalyst_smpp.gateway.mappings.PartState` under
  :func:`~catalyst_smpp.gateway.mappings.part_key`.  A receipt is published on the first failing part
  (UNDELIV, REJECTD, EXPIRED, DELETED; msg_id with that part) or, when no part failed, when the last
  part reaches a final state (the worst of the states, msg_id with ``part = parts``).
  Two nodes finishing the last parts at the same moment
  publish the same msg_id (de-duplicated by JetStream); two failures processed on two nodes at the
  same moment can each be "first": the partner then gets two failure receipts (a duplicate, never a
  loss).
* **Only the last part asked** (the operator's ``receipt_parts = "last"``): the connector marks the
  mappings (:data:`PART_DECIDES` on the last part, :data:`PART_UNASKED` on the others), so no part state
  is kept or waited for: the last part's final receipt is published at once as the message's (msg_id
  with ``part = parts``, as above), and a receipt the SMSC sends anyway for an unasked part is answered
  and dropped (``stats.unasked``).

MO (anything else): ``router().route_mo(dest, source)`` → ``MoMessage`` on ``MO.<partner>`` with
msg_id ``"mo:<new id>"``.  No route → answered ``ESME_RX_T_APPN``: temporary, so the SMSC keeps the MO and
sends it again (a permanent error would make it drop the message, and a route added later then takes it);
counted (``stats.mo_unrouted``, ``mo_unrouted_total{operator}``) and logged at most once per
``unrouted_log_every`` seconds, with the count.  Concatenated MO parts
are forwarded part by part as received (UDH or SAR TLVs kept in ``payload`` / ``tlvs``); the partner
reassembles.

One module although it is long: receipts and MO arrive on the same deliver_sm stream and share one batch (one
KV lookup, one publish, one answer per PDU), and the receipt steps (id lookup, parking, part states,
publishing) only make sense read together; split, the batching would have to be shared across modules.
"""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from catalyst_smpp.billing.charging import cdr_fields, settles_on_receipt
from catalyst_smpp.bus import BusError, Kind, MessageBus, PublishItem
from catalyst_smpp.encoding.msgid import normalise_id
from catalyst_smpp.encoding.receipts import (
    Receipt,
    ReceiptParseError,
    parse_receipt,
    receipt_in_text,
    stat_for_state,
)
from catalyst_smpp.gateway.events import EventPublisher, Row, event_row
from catalyst_smpp.gateway.ids import id_time
from catalyst_smpp.gateway.mappings import PART_STATE, IdMapping, PartState, part_key
from catalyst_smpp.gateway.messages import Address, MoMessage, dlr_record
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import DataSm, DeliverSm, Pdu
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.store import Operator
from catalyst_smpp.transport import DEFERRED

__all__ = [
    "FAILED_STATES",
    "InboundHandler",
    "InboundStats",
    "RecentIds",
    "receipt_keys",
    "wants_receipt",
]

log = logging.getLogger(__name__)

# Bits of an id mapping's flags beside the partner's registered_delivery (bits 0-4; 5-7 are reserved in SMPP
# and masked off by the connector), set when the operator asks for a receipt on the last part only
# (``Operator.receipt_parts = "last"``):
PART_DECIDES = 0x80
"""The one part of a long message that asked the SMSC for a receipt: its final receipt is the message's."""
PART_UNASKED = 0x40
"""A part that asked for no receipt: one the SMSC sends anyway is answered and dropped (``stats.unasked``)."""
FAILED_STATES = frozenset({"UNDELIV", "REJECTD", "EXPIRED", "DELETED"})
# worst first, among the final states that are not failures
_OK_ORDER = ("UNKNOWN", "ACCEPTD", "DELIVRD")
_FAIL_ORDER = ("REJECTD", "UNDELIV", "EXPIRED", "DELETED")
_RECEIPT_TYPES = 0x3C
_TAG_RMI = int(Tag.receipted_message_id)
_TAG_PAYLOAD = int(Tag.message_payload)
_TAG_NEC = int(Tag.network_error_code)
_OK = int(CommandStatus.ESME_ROK)
_TEMP = int(CommandStatus.ESME_RX_T_APPN)
# what Bus.publish_batch takes: a PublishItem or a (subject, payload, headers, msg_id) tuple
_Publish = PublishItem | tuple[str, bytes, None, str]


def wants_receipt(registered_delivery: int, state: str) -> bool:
    """Does a partner with this registered_delivery get a receipt in ``state``?"""
    f = registered_delivery & 0x03
    if f == 0:
        return False
    if f == 2:
        return state in FAILED_STATES
    return True


def _tracked(m: IdMapping) -> bool:
    """Is this part's state kept until every part is final (a long message whose parts all asked)?"""
    return m.parts > 1 and not m.flags & (PART_DECIDES | PART_UNASKED)


def receipt_keys(receipt: Receipt, op: Operator) -> tuple[str, ...]:
    """The KV keys a receipt's message may be stored under, the likeliest first.

    The connector stored the mapping under the submit_sm_resp id read with ``submit_id_format``.  The
    receipt's id is read with ``receipt_id_format``: the receipted_message_id TLV's (``message_id``, or the
    text's ``id:`` when there is no TLV) -- one key.  When the TLV and the text ids differ (``text_id``)
    both are read with ``receipt_id_format`` and, since some SMSCs copy the submit_sm_resp id into the TLV
    as it was (hex) and write the text's in decimal, also with ``submit_id_format``; a key that two of
    these readings agree on (that legacy pair) goes first.
    """
    first = normalise_id(receipt.message_id, op.receipt_id_format)
    if receipt.text_id is None:
        return (first,)
    readings = [
        first,
        normalise_id(receipt.text_id, op.receipt_id_format),
        normalise_id(receipt.message_id, op.submit_id_format),
        normalise_id(receipt.text_id, op.submit_id_format),
    ]
    agreed = [k for k in readings if readings.count(k) > 1]
    return tuple(dict.fromkeys(agreed + readings))


def worst_state(states: list[str]) -> str:
    for s in _FAIL_ORDER:
        if s in states:
            return s
    for s in _OK_ORDER:
        if s in states:
            return s
    return states[0] if states else "UNKNOWN"


class _Router(Protocol):
    def route_mo(self, dest: str, source: str = "") -> str | None: ...


class RecentIds:
    """Normalised operator id → :class:`IdMapping` for the ids this node submitted lately (bounded, oldest
    out first).  A cache in front of the KV, never instead of it: the connector still stores every mapping
    in the KV before acking the MT message."""

    __slots__ = ("_d", "max_entries")

    def __init__(self, max_entries: int = 200_000) -> None:
        self._d: dict[str, IdMapping] = {}
        self.max_entries = max_entries

    def put(self, key: str, mapping: IdMapping) -> None:
        d = self._d
        d[key] = mapping
        if len(d) > self.max_entries:
            for k in list(itertools.islice(d, len(d) - self.max_entries)):
                del d[k]

    def get(self, key: str) -> IdMapping | None:
        return self._d.get(key)

    def discard(self, key: str) -> None:
        self._d.pop(key, None)

    def __len__(self) -> int:
        return len(self._d)


@attrs.define
class InboundStats:
    receipts: int = 0
    published: int = 0
    """Receipts published to partners."""
    not_wanted: int = 0
    intermediate: int = 0
    unknown: int = 0
    """Receipts whose id never showed up in the KV (answered ESME_ROK)."""
    lookup_retries: int = 0
    local_hits: int = 0
    """Receipts mapped from :class:`RecentIds` (no KV read)."""
    bad_receipts: int = 0
    unasked: int = 0
    """Receipts for parts that asked for none (the SMSC sent them anyway): answered, not forwarded."""
    mo: int = 0
    mo_unrouted: int = 0
    """MO without a route (answered ESME_RX_T_APPN: the SMSC sends it again)."""
    bus_errors: int = 0


@attrs.define(slots=True, eq=False)
class _In:
    session: Any
    pdu: Any  # DeliverSm | DataSm
    receipt: Receipt | None = None
    keys: tuple[str, ...] = ()
    """Where the receipt's message may be stored (:func:`receipt_keys`)."""
    key: str = ""
    """The one of ``keys`` it was found under."""
    attempts: int = 0
    due: float = 0.0
    quick: bool = False


def _payload(pdu: Pdu) -> bytes:
    sm: bytes = getattr(pdu, "short_message", b"") or b""
    if not sm:
        for t in pdu.tlvs:
            if t.tag == _TAG_PAYLOAD:
                return bytes(t.raw)
    return sm


_TIMES: dict[dt.datetime, float] = {}


def _date(d: dt.datetime | None) -> float:
    """A receipt date (naive, UTC) as unix time; cached (a receipt's dates repeat for a minute)."""
    if d is None:
        return 0.0
    t = _TIMES.get(d)
    if t is None:
        if len(_TIMES) >= 4096:
            _TIMES.clear()
        t = _TIMES[d] = d.replace(tzinfo=dt.UTC).timestamp()
    return t


class InboundHandler:
    """Receipts → ``DLR.<partner>``, MO → ``MO.<partner>``; answers after the publish ack."""

    def __init__(
        self,
        operator: Callable[[], Operator],
        bus: MessageBus,
        *,
        router: Callable[[], _Router],
        events: EventPublisher | None = None,
        ids: Callable[[], str] | None = None,
        node: str = "",
        metrics: Metrics | None = None,
        lookup_delays: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0),
        max_batch: int = 1000,
        quick_retry: float = 0.02,
        recent_size: int = 200_000,
        unrouted_log_every: float = 10.0,
        events_timeout: float = 5.0,
    ) -> None:
        """``events_timeout``: how long a batch's event rows may take to be stored before its receipts are
        answered with a temporary error instead."""
        self.operator = operator
        self.bus = bus
        self.router = router
        self.events = events
        self.node = node
        self.metrics = metrics
        self.lookup_delays = lookup_delays
        self.max_batch = max_batch
        self.quick_retry = quick_retry
        self.recent = RecentIds(recent_size)
        self.events_timeout = events_timeout
        self.stats = InboundStats()
        if ids is None:
            from catalyst_smpp.gateway.ids import IdGenerator, node_number

            gen = IdGenerator(node_number(node or "0"))
            ids = gen.next_str
        self.ids = ids
        self._queue: list[_In] = []
        self._parked: list[_In] = []
        self._receipt_seconds: dict[str, Any] = {}  # operator → its receipt_seconds histogram child
        self._wake = trio.Event()
        self._draining = False
        self._counters: dict[tuple[str, str], Any] = {}
        self._subjects: dict[str, str] = {}
        self.unrouted_log_every = unrouted_log_every
        self._unrouted = 0  # MO without a route since the last log line
        self._unrouted_logged = -float("inf")

    # ------------------------------------------------------------------ the client handler

    def submitted(self, key: str, mapping: IdMapping) -> None:
        """The connector's operator accepted a part under the normalised operator id ``key``: its receipt may
        come before the KV has the mapping, so keep it here too (:class:`RecentIds`)."""
        self.recent.put(key, mapping)

    def handle(self, session: Any, pdu: Pdu) -> Any:
        if not isinstance(pdu, DeliverSm | DataSm):
            return None
        if self._draining:
            return _TEMP
        self._queue.append(_In(session, pdu))
        self._wake.set()
        return DEFERRED

    # ------------------------------------------------------------------ worker

    async def run(self, *, task_status: trio.TaskStatus[InboundHandler] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started(self)
        while True:
            now = trio.current_time()
            due = [p for p in self._parked if p.due <= now]
            if due:
                self._parked = [p for p in self._parked if p.due > now]
            batch = self._queue[: self.max_batch]
            del self._queue[: len(batch)]
            batch = due + batch
            if not batch:
                self._wake = trio.Event()
                if self._queue:
                    continue
                deadline = min((p.due for p in self._parked), default=None)
                if deadline is None:
                    await self._wake.wait()
                else:
                    with trio.move_on_at(deadline):
                        await self._wake.wait()
                continue
            with trio.CancelScope(shield=True):
                try:
                    await self._process(batch)
                except Exception:
                    log.exception("inbound batch of %d failed; answering temporary errors", len(batch))
                    for it in batch:
                        if it not in self._parked:
                            self._respond(it, _TEMP)

    async def drain(self, grace: float) -> None:
        """Answer what is queued; parked unknown receipts get a temporary error (the SMSC retries)."""
        self._draining = True
        with trio.move_on_after(grace):
            while self._queue:
                self._wake.set()
                await trio.sleep(0.01)
        parked, self._parked = self._parked, []
        for it in parked:
            self._respond(it, _TEMP)

    def _respond(self, it: _In, status: int) -> None:
        try:
            it.session.respond(it.pdu, status)
        except Exception:  # a closed session: the SMSC sends it again on another bind
            log.debug("respond failed", exc_info=True)

    # ------------------------------------------------------------------ a batch

    async def _process(self, batch: list[_In]) -> None:
        op = self.operator()
        receipts: list[_In] = []
        mos: list[_In] = []
        for it in batch:
            if it.receipt is not None:
                receipts.append(it)
                continue
            pdu = it.pdu
            tlvs = {t.tag: t.value for t in pdu.tlvs}
            is_receipt = bool(getattr(pdu, "esm_class", 0) & _RECEIPT_TYPES) or _TAG_RMI in tlvs
            if not is_receipt:
                if op.receipts_by_text:  # an SMSC that sends receipts as plain deliver_sm
                    it.receipt = receipt_in_text(_payload(pdu), data_coding=pdu.data_coding)
                if it.receipt is None:
                    mos.append(it)
                    continue
            try:
                if it.receipt is None:
                    it.receipt = parse_receipt(_payload(pdu), tlvs, data_coding=pdu.data_coding)
            except ReceiptParseError as exc:
                self.stats.bad_receipts += 1
                self._unmatched(op.name, "unreadable")
                log.warning("operator %s: unusable receipt (%s); answered ESME_ROK", op.name, exc)
                self._respond(it, _OK)
                continue
            self.stats.receipts += 1
            it.keys = receipt_keys(it.receipt, op)
            it.key = it.keys[0]
            receipts.append(it)

        publish: list[tuple[_Publish, list[_In], Callable[[], None] | None]] = []
        answered_ok: list[_In] = []
        logged: list[tuple[Row, list[_In]]] = []  # the event rows of final receipts, with their PDUs
        if receipts:
            await self._receipts(op, receipts, publish, answered_ok, logged)
        for it in mos:
            self._mo(op, it, publish)

        lost: list[int] | None = None  # the rows not stored, once they were published
        if publish:
            res: list[Any]
            try:
                if logged and self.events is not None:
                    # the rows right after the publications if all are stored: one call on the bus, not two
                    res, lost = await self.events.store_after(
                        [p for p, _, _ in publish],
                        [row for row, _ in logged],
                        until=trio.current_time() + self.events_timeout,
                        bus=self.bus,
                    )
                else:
                    res = list(await self.bus.publish_batch([p for p, _, _ in publish]))
            except BusError as exc:
                res = [exc] * len(publish)
            failed: set[int] = set()
            for (_, items, on_ok), r in zip(publish, res, strict=True):
                if getattr(r, "ok", False):
                    if on_ok is not None:
                        on_ok()
                    answered_ok.extend(items)
                else:
                    self.stats.bus_errors += 1
                    log.warning("operator %s: inbound publish failed: %s", op.name, r)
                    for it in items:
                        if id(it) not in failed:
                            failed.add(id(it))
                            self._respond(it, _TEMP)
            answered_ok = [it for it in answered_ok if id(it) not in failed]
            if failed:  # (the rows were not published then)
                logged = [(row, items) for row, items in logged if not any(id(it) in failed for it in items)]
        if logged and self.events is not None:
            # the rows are stored before the deliver_sm_resp that makes them final: a receipt answered
            # ESME_ROK is never sent again, so its row could not come back.  Not stored in time → a temporary
            # error: the SMSC sends the receipt again (its DLR is de-duplicated by msg_id), logged then.
            if lost is None:
                lost = await self.events.store(
                    [row for row, _ in logged], until=trio.current_time() + self.events_timeout
                )
            if lost:
                self.stats.bus_errors += 1
                refused: set[int] = set()
                for k in lost:
                    for it in logged[k][1]:
                        if id(it) not in refused:
                            refused.add(id(it))
                            self._respond(it, _TEMP)
                answered_ok = [it for it in answered_ok if id(it) not in refused]
        seen: set[int] = set()
        for it in answered_ok:
            if id(it) not in seen:
                seen.add(id(it))
                self._respond(it, _OK)

    async def _receipts(
        self,
        op: Operator,
        receipts: list[_In],
        publish: list[tuple[_Publish, list[_In], Callable[[], None] | None]],
        answered_ok: list[_In],
        logged: list[tuple[Row, list[_In]]],
    ) -> None:
        recent = self.recent
        found: list[IdMapping | None] = [self._recent_mapping(it) for it in receipts]
        missing = [k for k, m in enumerate(found) if m is None]
        if missing and any(not receipts[k].quick for k in missing):
            # the submit_sm_resp of these may have arrived with the receipt, its task not yet run: let it
            await trio.sleep(0)
            for k in missing:
                found[k] = self._recent_mapping(receipts[k])
            missing = [k for k in missing if found[k] is None]
        self.stats.local_hits += len(found) - len(missing)
        if missing:
            try:
                got_kv = await self.bus.opids.get_many(
                    [(op.name, key) for k in missing for key in receipts[k].keys]
                )
            except BusError as exc:
                self.stats.bus_errors += 1
                log.warning(
                    "operator %s: KV lookup failed (%s); receipts answered with a temporary error",
                    op.name,
                    exc,
                )
                for it in receipts:
                    self._respond(it, _TEMP)
                return
            at = 0
            for k in missing:
                it = receipts[k]
                for key, raw in zip(it.keys, got_kv[at : at + len(it.keys)], strict=True):
                    if raw is not None:
                        found[k], it.key = IdMapping.from_bytes(raw), key
                        break
                else:
                    found[k] = self._recent_mapping(it)
                at += len(it.keys)
        known: list[tuple[_In, IdMapping]] = []
        now = trio.current_time()
        for it, m in zip(receipts, found, strict=True):
            if m is not None:
                known.append((it, m))
                continue
            if not it.quick and self.quick_retry > 0:
                it.quick = True
                it.due = now + self.quick_retry
                self._parked.append(it)
                continue
            if it.attempts < len(self.lookup_delays):
                it.due = now + self.lookup_delays[it.attempts]
                it.attempts += 1
                self.stats.lookup_retries += 1
                self._parked.append(it)
                continue
            self.stats.unknown += 1
            self._unmatched(op.name, "unknown_id")
            assert it.receipt is not None
            log.warning(
                "operator %s: receipt for unknown id %r (key %s); answered ESME_ROK",
                op.name,
                it.receipt.message_id
                if it.receipt.text_id is None
                else f"{it.receipt.message_id}/{it.receipt.text_id}",
                "/".join(it.keys),
            )
            self._respond(it, _OK)

        # part states of multi-part messages, across nodes: read, merge in order, write back
        multi = {m.message_id: m.parts for _, m in known if _tracked(m)}
        states: dict[str, dict[int, str]] = {mid: {} for mid in multi}
        if multi:
            keys = [part_key(mid, p) for mid, n in multi.items() for p in range(1, n + 1)]
            parts = [(mid, p) for mid, n in multi.items() for p in range(1, n + 1)]
            try:
                got = await self.bus.opids.get_many(keys)
            except BusError as exc:
                self.stats.bus_errors += 1
                log.warning("operator %s: part state lookup failed: %s", op.name, exc)
                for it, m in known:
                    if _tracked(m):
                        self._respond(it, _TEMP)
                known = [(it, m) for it, m in known if not _tracked(m)]
                got = []
                multi = {}
            for (mid, p), raw in zip(parts, got, strict=False):
                if raw is not None:
                    states[mid][p] = PartState.from_bytes(raw).state
        writes: list[tuple[str, str, bytes]] = []
        multi_items: list[_In] = []
        decided: list[tuple[list[_In], IdMapping, str, int, Receipt]] = []
        for it, m in known:
            r = it.receipt
            assert r is not None
            if m.flags & PART_UNASKED:
                self.stats.unasked += 1
                log.debug("operator %s: receipt for part %d of %s, which asked for none", op.name, m.part,
                          m.message_id)  # fmt: skip
                answered_ok.append(it)
                continue
            if not r.is_final:
                self.stats.intermediate += 1
                answered_ok.append(it)
                continue
            state = stat_for_state(r.state)
            recent.discard(it.key)
            if not _tracked(m):  # one part, or the only part asked (PART_DECIDES): it decides at once
                decided.append(([it], m, state, m.part, r))
                continue
            multi_items.append(it)
            st = states[m.message_id]
            other_failed = any(s in FAILED_STATES for q, s in st.items() if q != m.part)
            st[m.part] = state
            writes.append((*part_key(m.message_id, m.part), PART_STATE.write(state=state)))
            if state in FAILED_STATES:
                if not other_failed:
                    decided.append(([it], m, state, m.part, r))
                else:
                    answered_ok.append(it)
            elif len(st) >= m.parts and all(st.get(p) for p in range(1, m.parts + 1)):
                if any(s in FAILED_STATES for s in st.values()):
                    answered_ok.append(it)  # the failure receipt went out already
                else:
                    decided.append(([it], m, worst_state(list(st.values())), m.parts, r))
            else:
                answered_ok.append(it)
        if writes:
            try:
                res = await self.bus.opids.put_many(writes)
                bad = any(not getattr(x, "ok", False) for x in res)
            except BusError:
                bad = True
            if bad:
                self.stats.bus_errors += 1
                log.warning(
                    "operator %s: part states not stored; receipts answered with a temporary error", op.name
                )
                for it in multi_items:
                    self._respond(it, _TEMP)
                drop = {id(i) for i in multi_items}
                decided = [d for d in decided if id(d[0][0]) not in drop]
                answered_ok[:] = [i for i in answered_ok if id(i) not in drop]

        for items, m, state, part, r in decided:
            self._receipt_out(op, items, m, state, part, r, publish, answered_ok, logged)

    def _observe_receipt_latency(self, operator: str, message_id: str) -> None:
        """``receipt_seconds``: from the partner's submit being accepted (the time in our message id) until
        the operator's final receipt for it is matched here and queued for the partner.  The partner's own
        delivery is left out (it waits while the partner is not bound: ``backlog{kind="dlr"}`` shows that)."""
        try:
            accepted = id_time(int(message_id))
        except ValueError:  # not one of our ids (cannot happen for a matched receipt; never fail on metrics)
            return
        h = self._receipt_seconds.get(operator)
        if h is None:
            assert self.metrics is not None  # observed only with metrics
            h = self._receipt_seconds[operator] = self.metrics.receipt_seconds.labels(operator)
        h.observe(max(0.0, time.time() - accepted))  # another node's clock may run slightly ahead

    def _receipt_out(
        self,
        op: Operator,
        items: list[_In],
        m: IdMapping,
        state: str,
        part: int,
        r: Receipt,
        publish: list[tuple[_Publish, list[_In], Callable[[], None] | None]],
        answered_ok: list[_In],
        logged: list[tuple[Row, list[_In]]],
    ) -> None:
        pdu = items[0].pdu

        def done() -> None:
            if self.metrics is not None:
                c = self._counters.get((m.partner, state))
                if c is None:
                    c = self.metrics.receipts_total.labels(m.partner, state)
                    self._counters[(m.partner, state)] = c
                c.inc()
                self._observe_receipt_latency(op.name, m.message_id)
            if self.events is not None:
                row = event_row(
                    message_id=m.message_id,
                    event="delivered",
                    partner=m.partner,
                    operator=op.name,
                    source_addr=getattr(pdu, "destination_addr", ""),
                    dest_addr=getattr(pdu, "source_addr", ""),
                    parts=m.parts,
                    final_state=state,
                    error=r.err,
                    operator_message_id=r.message_id,
                    node=self.node,
                    display_id=m.display_id if m.display_id != m.message_id else None,
                    **cdr_fields(m, settles_on_receipt(m, state)),
                )
                logged.append((row, items))

        if not wants_receipt(m.flags, state):
            self.stats.not_wanted += 1
            done()
            answered_ok.extend(items)
            return
        nec = ""
        for t in pdu.tlvs:
            if t.tag == _TAG_NEC:
                nec = t.raw.hex()
                break
        err = r.err or "000"
        if err.isdigit():
            err = err.zfill(3)[-3:]
        # the DlrMessage's octets straight from the fields (no record and Address objects per receipt)
        # a NUL cannot travel in a record's text (see messages): one in the operator's receipt text is dropped
        data = dlr_record(
            message_id=m.message_id,
            partner=m.partner,
            state=state,
            source=(pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr),
            dest=(pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr),
            error=err,
            submit_date=_date(r.submit_date),
            done_date=_date(r.done_date) or time.time(),
            operator=op.name,
            operator_message_id=r.message_id.replace("\x00", ""),
            network_error_code=nec,
            text=(r.text or "").replace("\x00", ""),
            part=part,
            parts=m.parts,
            display_id=m.display_id,
        )

        def ok() -> None:
            self.stats.published += 1
            done()

        publish.append(
            ((self._dlr_subject(m.partner), data, None, f"dlr:{m.message_id}:{part}:{state}"), items, ok)
        )

    def _recent_mapping(self, it: _In) -> IdMapping | None:
        """The mapping of a receipt from :class:`RecentIds` under any of its keys (``it.key`` set to it)."""
        for key in it.keys:
            m = self.recent.get(key)
            if m is not None:
                it.key = key
                return m
        return None

    def _unmatched(self, operator: str, reason: str) -> None:
        """``receipts_unmatched_total``: what a NOC alerts on (ids in the wrong format lose every receipt)."""
        if self.metrics is None:
            return
        try:
            self.metrics.receipts_unmatched_total.labels(operator, reason).inc()
        except Exception:  # metrics must never cost a receipt
            log.debug("metrics update failed", exc_info=True)

    def _unrouted_mo(self, operator: str, source: str, dest: str) -> None:
        """Count an MO without a route; log the count at most once per ``unrouted_log_every`` seconds."""
        self.stats.mo_unrouted += 1
        self._unrouted += 1
        if self.metrics is not None:
            try:
                self.metrics.mo_unrouted_total.labels(operator).inc()
            except Exception:  # metrics must never cost an MO
                log.debug("metrics update failed", exc_info=True)
        now = trio.current_time()
        if now - self._unrouted_logged < self.unrouted_log_every:
            return
        log.warning(
            "operator %s: %d MO without a route (the last from %s to %s); answered ESME_RX_T_APPN, the SMSC "
            "sends them again",
            operator,
            self._unrouted,
            source,
            dest,
        )
        self._unrouted_logged = now
        self._unrouted = 0

    def _dlr_subject(self, partner: str) -> str:
        s = self._subjects.get(partner)
        if s is None:
            if len(self._subjects) > 10_000:
                self._subjects.clear()
            s = self._subjects[partner] = self.bus.subject(Kind.DLR, partner)
        return s

    def _mo(
        self, op: Operator, it: _In, publish: list[tuple[_Publish, list[_In], Callable[[], None] | None]]
    ) -> None:
        pdu = it.pdu
        dest, source = pdu.destination_addr, pdu.source_addr
        try:
            partner = self.router().route_mo(dest, source)
        except Exception:
            log.exception("operator %s: MO routing failed", op.name)
            partner = None
        if not partner:
            self._unrouted_mo(op.name, source, dest)
            self._respond(it, _TEMP)
            return
        sm: bytes = getattr(pdu, "short_message", b"") or b""
        payload = _payload(pdu)
        tlvs = tuple((t.tag, bytes(t.raw)) for t in pdu.tlvs if not (t.tag == _TAG_PAYLOAD and not sm))
        mid = self.ids()
        mo = MoMessage(
            message_id=mid,
            partner=partner,
            source=Address(pdu.source_addr_ton, pdu.source_addr_npi, source),
            dest=Address(pdu.dest_addr_ton, pdu.dest_addr_npi, dest),
            payload=payload,
            data_coding=pdu.data_coding,
            esm_class=pdu.esm_class,
            protocol_id=getattr(pdu, "protocol_id", 0),
            tlvs=tlvs,
            operator=op.name,
            received_at=time.time(),
        )

        def ok() -> None:
            self.stats.mo += 1
            if self.metrics is not None:
                self.metrics.mo_total.labels(partner).inc()

        publish.append(
            (PublishItem(self.bus.subject(Kind.MO, partner), mo.to_bytes(), None, f"mo:{mid}"), [it], ok)
        )
