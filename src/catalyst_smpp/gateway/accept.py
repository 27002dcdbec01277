"""Accept: the SMPP server's request handler for partners.

``AcceptHandler.handle`` runs inline in the session's reader task (a plain function: no worker task per
PDU).  For submit_sm / data_sm / submit_multi it validates, routes, assigns our message id, builds the
:class:`MtMessage` record(s) and queues the request for the **batcher**; the handler returns ``DEFERRED``.
The batcher (one task, :meth:`AcceptHandler.run`) takes everything queued from every session (up to
``max_batch``), publishes it with one ``bus.publish_batch`` (``msg_id`` = our id, so a re-publish is stored
once), stores the batch's event rows -- ``accepted`` for each record stored, ``rejected`` for each refusal --
with one more (``events.store``: retried until EVENTS takes them; docs/dev/gateway.md, "Events are as durable
as what they record"), and only then answers each request with ``session.respond``:

* published → ``ESME_ROK`` with our id in the partner's ``message_id_format``;
* ``STORE_FULL`` / ``TIMEOUT`` / ``CONNECTION`` → ``ESME_RMSGQFUL`` (temporary: the partner retries);
* ``NO_STREAM`` / ``SERVER`` → ``ESME_RSYSERR``.

While a publish is in flight new requests queue up, so the batch size follows the load by itself (one
message when idle, hundreds under load).  Nothing is dropped silently: a request is answered with the
outcome of its own publish, or with ``ESME_RMSGQFUL`` when the handler is draining/closed.

A refusal is answered by the batcher too, once its ``rejected`` row is stored (at once when there is no event
publisher or no batcher running).

One module (over 600 lines): the handler's checks, the batcher and the answers share the queued request
(``_Pending``, ``_Mt``) and its order of steps; apart they would only pass those internals around.

Refusals before publishing: no route → ``ESME_RINVDSTADR``; empty/invalid destination → ``ESME_RINVDSTADR``;
invalid source → ``ESME_RINVSRCADR``; short_message and message_payload both set → ``ESME_RINVOPTPARAMVAL``;
a reserved data_coding → ``ESME_RINVDCS``; UCS-2 text of odd length or a message longer than
``max_message_octets`` → ``ESME_RINVMSGLEN``; field values that mean nothing (priority_flag above 3,
replace_if_present_flag above 1, a schedule/validity that is not a real time) → the field's status
(``ESME_RINVPRTFLG``, ``ESME_RINVREPFLAG``, ``ESME_RINVSCHED``, ``ESME_RINVEXPIRY``) from the protocol
core's one check, :func:`~catalyst_smpp.protocol.fields.request_problem`.

The record keeps the partner's octets exactly as received (short_message or message_payload, UDH included),
with data_coding, esm_class, the partner's data_coding 0 meaning (``partner_dc0``) and the pass-through TLVs
(SAR included); the connector decodes and re-encodes/re-segments for its operator.  A part of a message the
partner concatenated itself (UDH 8/16-bit or SAR) gets ``part``/``parts`` from its numbering.

submit_multi: one MT message (with its own id: its JetStream msg_id, KV mapping and log rows) per SME
destination; every one carries the same ``display_id`` -- the id of the first destination built -- which is
the one id of the submit_multi_resp and what each destination's receipt shows (SMPP v3.4 has one message_id
per submit_multi; the receipts' source_addr tell the destinations apart).  ``unsuccess_sme`` lists the
destinations refused or not stored (distribution lists are not supported: ``ESME_RINVDLNAME``).  When no
destination is accepted the response is the first destination's error status.

HTTP API sends (:meth:`AcceptHandler.submit_api`): the submit_sm PDUs :mod:`catalyst_smpp.http.compose` builds
from the requests go through the same ``_build`` and batcher, with an ``_ApiResponder`` in place of the SMPP
session (its ``respond`` records each PDU's status; the request resumes once all are answered).  ``_Reject``
carries the kind of refusal (``no_route``, billing's labels) so that the API can tell NO_ROUTE, UNPRICED and
INSUFFICIENT_CREDIT apart where SMPP has one status for several of them.

query_sm: answered from the message log by :mod:`~catalyst_smpp.gateway.query` when the handler has a ``db``;
without one → ``ESME_RQUERYFAIL`` (``ESME_RINVMSGID`` for an id that is not ours in the partner's format);
cancel_sm / replace_sm: of a scheduled message still waiting, by the
:class:`~catalyst_smpp.gateway.schedule.Scheduler` (replace_sm after the same field check); without a
scheduler → ``ESME_RCANCELFAIL`` / ``ESME_RREPLACEFAIL``.

Scheduled sends (gateway/schedule.py): with a scheduler, a message whose schedule_delivery_time is in the
future is stored in Postgres (``Scheduler.store``: one statement for the batch's scheduled messages) instead
of published; its answer and its ``accepted`` row are as for a published one.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio

from catalyst_smpp.billing.charging import Charge, Charger, NeedCredit, Refusal, billable_parts, cdr_fields
from catalyst_smpp.bus import Kind, MessageBus, PublishErrorKind
from catalyst_smpp.encoding.datacoding import Alphabet, CodingGroup, parse_data_coding
from catalyst_smpp.encoding.reassembly import split_message
from catalyst_smpp.gateway.events import EventPublisher, Row, event_row
from catalyst_smpp.gateway.ids import IdGenerator, format_id, parse_id
from catalyst_smpp.gateway.messages import EncodeError, mt_record
from catalyst_smpp.gateway.order import Unanswered
from catalyst_smpp.gateway.query import QueryHandler
from catalyst_smpp.gateway.routing import Router
from catalyst_smpp.gateway.schedule import Entry, Scheduler, when
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandId, CommandStatus, status_name
from catalyst_smpp.protocol.fields import request_problem
from catalyst_smpp.protocol.pdu import (
    DistributionListDestination,
    Pdu,
    SmeDestination,
    UnsuccessSme,
)
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import Partner
from catalyst_smpp.transport.session import DEFERRED, Reply, SmppSession

__all__ = ["AcceptHandler", "AcceptStats", "ApiResult", "status_for_publish_error"]

log = logging.getLogger(__name__)

S = CommandStatus
_ROK: Final = 0
_RSYSERR: Final = int(S.ESME_RSYSERR)
_RMSGQFUL: Final = int(S.ESME_RMSGQFUL)
_RINVDSTADR: Final = int(S.ESME_RINVDSTADR)
_RINVSRCADR: Final = int(S.ESME_RINVSRCADR)
_RINVMSGLEN: Final = int(S.ESME_RINVMSGLEN)
_RINVOPTPARAMVAL: Final = int(S.ESME_RINVOPTPARAMVAL)
_RINVDCS: Final = int(S.ESME_RINVDCS)

_SUBMIT_SM: Final = CommandId.submit_sm
_DATA_SM: Final = CommandId.data_sm
_SUBMIT_MULTI: Final = CommandId.submit_multi
_PAYLOAD_TAG: Final = int(Tag.message_payload)
_SAR_TAGS: Final = (int(Tag.sar_msg_ref_num), int(Tag.sar_total_segments), int(Tag.sar_segment_seqnum))
_DC0: Final = {"gsm7": Alphabet.GSM7, "latin1": Alphabet.LATIN1, "ascii": Alphabet.IA5}

_TEMPORARY: Final = frozenset(
    {PublishErrorKind.STORE_FULL, PublishErrorKind.TIMEOUT, PublishErrorKind.CONNECTION}
)


def status_for_publish_error(kind: PublishErrorKind) -> int:
    """The command_status a partner gets when its message could not be published."""
    return _RMSGQFUL if kind in _TEMPORARY else _RSYSERR


class _Reject(Exception):
    def __init__(self, status: int, reason: str, label: str = "") -> None:
        self.status = status
        self.reason = reason
        #: what kind of refusal, for the HTTP API's error codes: no_route, or billing's Refusal.label
        self.label = label


class _NeedCredit(Exception):
    """The destination's price cannot be held yet: the batcher acquires a credit lease and builds it again."""

    def __init__(self, micros: int) -> None:
        self.micros = micros


_NO_CHARGE: Final = Charge(0, 0, "", -1, "", 0)
"""The billing fields of a message of a partner that is not billed."""


@attrs.define
class AcceptStats:
    accepted: int = 0
    rejected: int = 0
    failed: int = 0  # publish failed: answered RMSGQFUL / RSYSERR
    batches: int = 0
    largest_batch: int = 0


_Mt = tuple[int, str, str, bytes, int, int, str, int, str, str, Charge, tuple[float, float | None] | None]
"""One MT record to publish (built by ``_build``): our id, its canonical form (the JetStream msg_id), the
subject, the record's octets, dest ton, npi, addr, parts, display_id, the first target, its charge, and for a
scheduled message (stored, not published) its due instant and expiry."""


class _Pending:
    """One partner request waiting for the publish of its record(s) and of its event rows; ``rows``: the
    ``rejected`` rows of its refused destinations (a request refused whole has no ``mts``)."""

    __slots__ = (
        "failures",
        "mts",
        "partner",
        "partner_fmt",
        "pdu",
        "retry",
        "rows",
        "session",
        "source_addr",
        "started",
    )

    def __init__(
        self,
        session: SmppSession | _ApiResponder,
        pdu: Pdu,
        mts: list[_Mt],
        failures: list[tuple[SmeDestination, int]],
        partner_fmt: str,
        started: float,
        partner: str,
        source_addr: str,
        rows: list[Row] | None = None,
        retry: list[tuple[tuple[int, int, str], int]] | None = None,
    ) -> None:
        self.session = session
        self.pdu = pdu
        self.mts = mts
        self.failures = failures
        self.partner_fmt = partner_fmt
        self.started = started
        self.partner = partner
        self.source_addr = source_addr
        self.rows = rows
        #: destinations (and the micro-units each needs) waiting for a credit lease: built by the batcher
        self.retry = retry


class AcceptHandler:
    """The SmppServer handler for partner requests; run :meth:`run` (the batcher) in a nursery."""

    def __init__(
        self,
        bus: MessageBus,
        router: Callable[[], Router],
        partners: Callable[[str], Partner | None],
        ids: IdGenerator,
        *,
        events: EventPublisher | None = None,
        node: str = "",
        metrics: Metrics | None = None,
        max_batch: int = 500,
        max_message_octets: int = 255 * 140,
        publish_timeout: float | None = None,
        clock: Callable[[], float] = time.time,
        db: Database | None = None,
        charger: Charger | None = None,
        scheduler: Scheduler | None = None,
    ) -> None:
        self.bus = bus
        self.scheduler = scheduler
        self.charger = charger
        self.router = router
        self.partners = partners
        self.ids = ids
        self.events = events
        self.node = node
        self.metrics = metrics
        self.max_batch = max_batch
        self.max_message_octets = max_message_octets
        self.publish_timeout = publish_timeout
        self.clock = clock
        # query_sm from the message log (gateway/query.py) when there is a database
        self.queries = QueryHandler(db, partners) if db is not None else None
        self.stats = AcceptStats()
        self._queue: collections.deque[_Pending] = collections.deque()
        self._lot = trio.lowlevel.ParkingLot()
        self._idle = trio.Event()
        self._idle.set()
        self._busy = False
        self._running = False
        self._closed = False
        self._dc_cache: dict[tuple[int, str], Any] = {}
        self._subjects: dict[str, str] = {}
        self._counters: dict[tuple[str, str], Any] = {}
        #: ids published and not answered yet: partner delivery holds their receipts (gateway/order.py)
        self.unanswered = Unanswered()

    # ------------------------------------------------------------------ the handler

    def handle(self, session: SmppSession, pdu: Pdu) -> Reply | Awaitable[Reply]:
        cid = pdu.command_id
        try:
            if cid == _SUBMIT_SM or cid == _DATA_SM:
                return self._submit(session, pdu)
            if cid == _SUBMIT_MULTI:
                return self._submit_multi(session, pdu)
            if cid == CommandId.query_sm:
                if self.queries is not None:
                    return self.queries.query(session, pdu)
                return self._query(session, pdu)
            if cid == CommandId.cancel_sm:
                if self.scheduler is not None:
                    return self.scheduler.cancel_sm(session, pdu)
                return int(S.ESME_RCANCELFAIL)
            if cid == CommandId.replace_sm:
                problem = request_problem(pdu)
                if problem is not None:
                    return problem[0]
                if self.scheduler is not None:
                    return self.scheduler.replace_sm(session, pdu)
                return int(S.ESME_RREPLACEFAIL)
        except Exception:
            log.exception("%s [%s]: accepting %s failed", session.session_id, session.system_id, cid.name)
            if cid == _SUBMIT_SM or cid == _DATA_SM or cid == _SUBMIT_MULTI:
                self.count_refused(session.system_id, _RSYSERR)
            return _RSYSERR
        return int(S.ESME_RINVCMDID)

    def _partner(self, session: SmppSession | _ApiResponder) -> tuple[Partner | None, str, str]:
        p = self.partners(session.system_id)
        if p is None:
            return None, "hex", "gsm7"
        return p, p.message_id_format, p.data_coding_0

    def _query(self, session: SmppSession, pdu: Pdu) -> Reply:
        _p, fmt, _dc0 = self._partner(session)
        try:
            parse_id(pdu.message_id, fmt)  # type: ignore[attr-defined]
        except ValueError:
            return int(S.ESME_RINVMSGID)
        return int(S.ESME_RQUERYFAIL)

    def _submit(self, session: SmppSession, pdu: Pdu) -> Reply:
        partner, fmt, dc0 = self._partner(session)
        system_id = session.system_id
        source: tuple[int, int, str] = (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)  # type: ignore[attr-defined]
        dest: tuple[int, int, str] = (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)  # type: ignore[attr-defined]
        try:
            if self._closed:
                raise _Reject(_RMSGQFUL, "draining")
            mt = self._build(system_id, dc0, pdu, source, dest, None, partner)
        except _NeedCredit as need:
            if not self._running:
                return _RSYSERR
            retry = [(dest, need.micros)]
            self._enqueue(
                _Pending(session, pdu, [], [], fmt, self.clock(), system_id, source[2], retry=retry)
            )
            return DEFERRED
        except _Reject as r:
            row = self._rejected(system_id, source[2], dest[2], r)
            if row is None or not self._running:
                return r.status
            # answered once its rejected row is stored (the batcher): the log has every answer given
            failed = [(SmeDestination(dest[0], dest[1], dest[2]), r.status)]
            self._enqueue(_Pending(session, pdu, [], failed, fmt, self.clock(), system_id, source[2], [row]))
            return DEFERRED
        self._enqueue(_Pending(session, pdu, [mt], [], fmt, self.clock(), system_id, source[2]))
        return DEFERRED

    def _submit_multi(self, session: SmppSession, pdu: Pdu) -> Reply:
        partner, fmt, dc0 = self._partner(session)
        source: tuple[int, int, str] = (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)  # type: ignore[attr-defined]
        dests: tuple[Any, ...] = pdu.dest_address  # type: ignore[attr-defined]
        if not dests:
            self.count_refused(session.system_id, int(S.ESME_RINVNUMDESTS))
            return int(S.ESME_RINVNUMDESTS)
        if self._closed:
            self.count_refused(session.system_id, _RMSGQFUL, len(dests))
            return _RMSGQFUL
        mts: list[_Mt] = []
        failures: list[tuple[SmeDestination, int]] = []
        rows: list[Row] = []
        retry: list[tuple[tuple[int, int, str], int]] = []
        display: str | None = None  # the first destination's id: the one the partner gets for all of them
        for d in dests:
            if isinstance(d, DistributionListDestination):
                failures.append((SmeDestination(0, 0, d.dl_name), int(S.ESME_RINVDLNAME)))
                self.count_refused(session.system_id, int(S.ESME_RINVDLNAME))
                continue
            dest = (d.dest_addr_ton, d.dest_addr_npi, d.destination_addr)
            try:
                mt = self._build(session.system_id, dc0, pdu, source, dest, display, partner)
            except _NeedCredit as need:
                retry.append((dest, need.micros))
                continue
            except _Reject as r:
                row = self._rejected(session.system_id, source[2], dest[2], r)
                if row is not None:
                    rows.append(row)
                failures.append((d, r.status))
                continue
            if display is None:
                display = mt[1]
            mts.append(mt)
        if retry and not self._running:
            failures += [(SmeDestination(*d), _RSYSERR) for d, _m in retry]
            retry = []
        if not mts and not retry and (not rows or not self._running):
            return failures[0][1]
        self._enqueue(
            _Pending(
                session,
                pdu,
                mts,
                failures,
                fmt,
                self.clock(),
                session.system_id,
                source[2],
                rows or None,
                retry or None,
            )
        )
        return DEFERRED

    def _data_coding(self, value: int, dc0: str) -> Any:
        key = (value, dc0)
        dc = self._dc_cache.get(key)
        if dc is None:
            dc = parse_data_coding(value, _DC0.get(dc0, Alphabet.GSM7))
            self._dc_cache[key] = dc
        return dc

    def _build(
        self,
        partner: str,
        dc0: str,
        pdu: Pdu,
        source: tuple[int, int, str],
        dest: tuple[int, int, str],
        display: str | None = None,
        partner_rec: Partner | None = None,
    ) -> _Mt:
        """The MT record of one destination (``mt_record``: no ``MtMessage``/``Address`` objects) with what
        publishing and answering need; ``display``: the id the partner is shown when it is not this
        message's own (the destinations of a submit_multi after the first)."""
        dest_addr = dest[2]
        if not dest_addr or len(dest_addr) > 20:
            raise _Reject(_RINVDSTADR, "empty or too long destination")
        if len(source[2]) > 20:
            raise _Reject(_RINVSRCADR, "source too long")
        # user data: short_message or message_payload, never both
        payload: bytes = getattr(pdu, "short_message", b"")
        tlvs: list[tuple[int, bytes]] = []
        tlv_values: dict[int, Any] = {}
        has_payload_tlv = False
        for t in pdu.tlvs:
            if t.tag == _PAYLOAD_TAG:
                if has_payload_tlv:
                    raise _Reject(_RINVOPTPARAMVAL, "message_payload repeated")
                has_payload_tlv = True
                if payload:
                    raise _Reject(_RINVOPTPARAMVAL, "short_message and message_payload both set")
                payload = t.raw
                continue
            if t.tag in _SAR_TAGS:
                tlv_values[t.tag] = t.value
            tlvs.append((t.tag, t.raw))
        if len(payload) > self.max_message_octets:
            raise _Reject(_RINVMSGLEN, f"message of {len(payload)} octets")
        data_coding: int = pdu.data_coding  # type: ignore[attr-defined]
        dc = self._data_coding(data_coding, dc0)
        if dc.alphabet is Alphabet.RESERVED or dc.group is CodingGroup.RESERVED:
            raise _Reject(_RINVDCS, f"reserved data_coding 0x{data_coding:02X}")
        esm_class: int = pdu.esm_class  # type: ignore[attr-defined]
        udhi = bool(esm_class & 0x40)
        part = parts = 1
        if udhi or tlv_values:
            split = split_message(payload, udhi=udhi, tlvs=tlv_values or None)
            if split.part is not None:
                part, parts = split.part.seq, split.part.total
            text_octets = len(split.payload)
        else:
            text_octets = len(payload)
        if dc.alphabet is Alphabet.UCS2 and text_octets % 2:
            raise _Reject(_RINVMSGLEN, "UCS-2 text of an odd number of octets")
        problem = request_problem(pdu)
        if problem is not None:
            raise _Reject(*problem)
        schedule = getattr(pdu, "schedule_delivery_time", "")
        validity = getattr(pdu, "validity_period", "")
        scheduled = None
        if schedule and self.scheduler is not None:
            scheduled, schedule, validity = when(schedule, validity, self.clock())
        route_dest = dest_addr[1:] if dest_addr.startswith("+") else dest_addr
        targets = self.router().route(partner, source[2], route_dest)
        if not targets:
            raise _Reject(_RINVDSTADR, "no route", "no_route")
        target = targets[0]
        charge = _NO_CHARGE
        if self.charger is not None and partner_rec is not None:
            # a part the partner concatenated itself is one SMS; a long text is as many as it takes
            nparts = 1 if parts > 1 else billable_parts(text_octets, dc.alphabet)
            try:
                charge = (
                    self.charger.charge(partner_rec, route_dest, target, nparts, self.clock()) or _NO_CHARGE
                )
            except Refusal as r:
                self._count_billing(partner, r.label)
                raise _Reject(r.status, r.reason, r.label) from None
            except NeedCredit as n:
                raise _NeedCredit(n.micros) from None
        our_id = self.ids.next()
        mid = str(our_id)
        display_id = display or mid
        try:
            data = mt_record(
                message_id=mid,
                partner=partner,
                source=source,
                dest=dest,
                targets=tuple(targets),
                payload=payload,
                data_coding=data_coding,
                esm_class=esm_class,
                protocol_id=getattr(pdu, "protocol_id", 0),
                priority_flag=getattr(pdu, "priority_flag", 0),
                service_type=getattr(pdu, "service_type", ""),
                schedule_delivery_time=schedule,
                validity_period=validity,
                registered_delivery=pdu.registered_delivery,  # type: ignore[attr-defined]
                partner_dc0=dc0,
                tlvs=tuple(tlvs),
                part=part,
                parts=parts,
                attempt=1,
                accepted_at=self.clock(),
                node=self.node,
                display_id=display_id,
                charge_on=charge.charge_on,
                price=charge.price,
                currency=charge.currency,
                cost=charge.cost,
                cost_currency=charge.cost_currency,
                lease=charge.lease,
            )
        except EncodeError as exc:  # not from a decoded PDU (its strings have no NUL, its integers fit)
            self._unhold(partner, charge)
            raise _Reject(_RSYSERR, str(exc)) from None
        subject = self._subjects.get(target)
        if subject is None:
            subject = self._subject(target)
        return (
            our_id, mid, subject, data, dest[0], dest[1], dest_addr, parts, display_id, target, charge,
            scheduled,
        )  # fmt: skip

    def _unhold(self, partner: str, charge: Charge) -> None:
        if charge.charge_on and self.charger is not None:
            self.charger.release(partner, charge)

    def _count_billing(self, partner: str, reason: str) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            m.billing_refusals_total.labels(partner=partner, reason=reason).inc()
        except Exception:  # metrics must never break accepting
            log.debug("metrics update failed", exc_info=True)

    def _rejected(self, partner: str, source: str, dest: str, r: _Reject) -> Row | None:
        """Count and log a refusal; its ``rejected`` row (None without an event publisher)."""
        self.stats.rejected += 1
        log.debug("[%s] submit to %r refused 0x%08X: %s", partner, dest, r.status, r.reason)
        self.count_refused(partner, r.status)
        if self.events is None:
            return None
        # a refused message has no id of ours; the log row still needs a unique key
        return event_row(
            f"r{self.ids.next()}",
            "rejected",
            partner=partner,
            source_addr=source,
            dest_addr=dest,
            status=r.status,
            error=r.reason,
            node=self.node,
            at=self.clock(),
        )

    def count_refused(self, partner: str, status: int, n: int = 1) -> None:
        """Count ``n`` submits of ``partner`` answered with the error ``status`` (label: its SMPP status name,
        as in ``ESME_RTHROTTLED``).  Also called by the gateway for the submits the server throttles before
        they reach this handler."""
        self._count(partner, status_name(status), n)

    def _count(self, partner: str, status: str, n: int = 1) -> None:
        m = self.metrics
        if m is None:
            return
        try:
            c = self._counters.get((partner, status))
            if c is None:  # .labels() per message cost more than the rest of the count
                c = self._counters[(partner, status)] = m.submits_total.labels(partner=partner, status=status)
            c.inc(n)
        except Exception:  # metrics must never break accepting
            log.debug("metrics update failed", exc_info=True)

    # ------------------------------------------------------------------ the batcher

    def _enqueue(self, p: _Pending) -> None:
        self._queue.append(p)
        if self._idle.is_set():
            self._idle = trio.Event()
        if self._lot:  # the batcher is parked (unpark of an empty lot is not free)
            self._lot.unpark()

    @property
    def queued(self) -> int:
        return len(self._queue)

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """The batcher: publish what is queued, answer, repeat.  Cancel it to stop (after :meth:`drain`)."""
        self._running = True
        task_status.started()
        queue = self._queue
        try:
            while True:
                if not queue:
                    self._idle.set()
                    await self._lot.park()
                    continue
                batch: list[_Pending] = []
                n = 0
                while queue and n < self.max_batch:
                    p = queue.popleft()
                    batch.append(p)
                    n += len(p.mts)
                self._busy = True
                try:
                    if any(p.retry for p in batch):
                        await self._with_credit(batch)
                    await self._publish(batch)
                finally:
                    self._busy = False
        finally:
            self._running = False
            # whatever is still queued gets an answer: nothing was published for it
            while queue:
                p = queue.popleft()
                self.stats.failed += 1
                p.session.respond(p.pdu, _RMSGQFUL)
            self._idle.set()

    async def _with_credit(self, batch: list[_Pending]) -> None:
        """Build the destinations that waited for a credit lease: acquire one per partner (one transaction
        of the books per lease, not per message), then build them again; one that still cannot be held is
        refused with its partner's insufficient-credit status."""
        assert self.charger is not None
        for p in batch:
            if not p.retry:
                continue
            retry, p.retry = p.retry, None
            partner, _fmt, dc0 = self._partner(p.session)
            pdu = p.pdu
            source = (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)  # type: ignore[attr-defined]
            for dest, micros in retry:
                await self.charger.credit.acquire(p.partner, micros)
                display = p.mts[0][8] if p.mts and pdu.command_id == _SUBMIT_MULTI else None
                try:
                    try:
                        p.mts.append(self._build(p.partner, dc0, pdu, source, dest, display, partner))
                    except _NeedCredit:
                        self._count_billing(p.partner, "insufficient_credit")
                        status = partner.insufficient_credit_status if partner is not None else _RSYSERR
                        raise _Reject(status, "insufficient credit", "insufficient_credit") from None
                except _Reject as r:
                    if isinstance(p.session, _ApiResponder):
                        p.session.labels[id(pdu)] = r.label
                    row = self._rejected(p.partner, source[2], dest[2], r)
                    if row is not None:
                        p.rows = [*(p.rows or ()), row]
                    p.failures.append((SmeDestination(*dest), r.status))

    def _subject(self, operator: str) -> str:
        s = self._subjects.get(operator)
        if s is None:
            s = self.bus.subject(Kind.MT, operator)
            self._subjects[operator] = s
        return s

    async def _publish(self, batch: list[_Pending]) -> None:
        """One batch: mark its ids unanswered (a receipt for one of them waits in partner delivery), publish
        the MT records, store the event rows, answer; then the ids are answered."""
        ids = [mt[1] for p in batch for mt in p.mts]
        self.unanswered.add(ids)  # before the records can reach a connector
        try:
            await self._publish_and_answer(batch)
        finally:
            self.unanswered.answered(ids)

    async def _publish_and_answer(self, batch: list[_Pending]) -> None:
        """One batch: publish the MT records, then store the event rows of what was stored (``accepted``)
        and refused (``rejected``), then answer.  A request is answered only once both are durable."""
        items = [(mt[2], mt[3], None, mt[1]) for p in batch for mt in p.mts if mt[11] is None]
        scheduled = [(p, mt) for p in batch for mt in p.mts if mt[11] is not None]
        self.stats.batches += 1
        self.stats.largest_batch = max(self.stats.largest_batch, len(items) + len(scheduled))
        try:
            results: list[Any]
            rows: list[Row] = []
            if items and not scheduled and self.events is not None:
                # the common batch: its rows as if every record is stored, published right after the records
                # if they all are (one call on the bus instead of two in a row; no deadline, as below: it
                # returns once they are stored); if a record failed, its rows are left for the store below
                results, lost = await self.events.store_after(
                    items,
                    self._rows(batch, [_STORED] * len(items)),
                    timeout=self.publish_timeout,
                    bus=self.bus,
                )
                if lost is None:
                    rows = self._rows(batch, results)
            else:
                results = await self.bus.publish_batch(items, timeout=self.publish_timeout) if items else []
                if scheduled:
                    results = self._merge(batch, results, await self._store_scheduled(scheduled))
                rows = self._rows(batch, results) if self.events is not None else []
            if rows and self.events is not None:
                # No deadline: these records are stored and will be submitted whatever the partner is told,
                # so neither an error answer (the partner submits again: a second copy at the handset) nor
                # ESME_ROK without the row (a message missing from the log) is right.  The answers wait for
                # EVENTS; the partners' windows fill meanwhile (docs/operations.md, "NATS").
                await self.events.store(rows)
        except trio.Cancelled:
            for p in batch:
                p.session.respond(p.pdu, _RMSGQFUL)
            raise
        except Exception as exc:  # BusError: bus closed
            log.warning("publishing %d message(s) failed: %s", len(items), exc)
            results = [_Failed(PublishErrorKind.CONNECTION)] * len(items)
        i = 0
        now = self.clock()
        accepted: dict[str, int] = {}  # per partner: counted once per batch
        observe = None
        if self.metrics is not None:
            try:
                observe = self.metrics.accept_seconds.observe
            except Exception:
                log.debug("metrics update failed", exc_info=True)
        for p in batch:
            n = len(p.mts)
            res = results[i : i + n] if n != 1 else [results[i]]
            i += n
            self._answer(p, res, accepted)
            if observe is not None:
                try:
                    observe(max(0.0, now - p.started))
                except Exception:
                    log.debug("metrics update failed", exc_info=True)
        for partner, k in accepted.items():
            self.stats.accepted += k
            self._count(partner, "ok", k)

    async def _store_scheduled(self, scheduled: list[tuple[_Pending, _Mt]]) -> Any:
        """Store the batch's scheduled messages (one statement); the result each of them gets."""
        assert self.scheduler is not None
        entries = [
            Entry(mt[1], p.partner, mt[8], p.source_addr, mt[6], getattr(p.pdu, "service_type", ""),
                  mt[11][0], mt[11][1], mt[2], mt[3])
            for p, mt in scheduled
            if mt[11] is not None
        ]  # fmt: skip
        if await self.scheduler.store(entries):
            return _STORED
        return _Failed(PublishErrorKind.CONNECTION, "database unavailable")

    @staticmethod
    def _merge(batch: list[_Pending], published: list[Any], stored: Any) -> list[Any]:
        """Each record's result in batch order: its publish's, or for a scheduled one its store's."""
        out: list[Any] = []
        it = iter(published)
        for p in batch:
            for mt in p.mts:
                out.append(next(it) if mt[11] is None else stored)
        return out

    def _rows(self, batch: list[_Pending], results: list[Any]) -> list[Row]:
        """The event rows of a published batch: ``accepted`` for each record stored, the ``rejected`` rows."""
        rows: list[Row] = []
        add = rows.append
        now = self.clock()
        node = self.node
        i = 0
        for p in batch:
            if p.rows:
                rows.extend(p.rows)
            partner = p.partner
            multi = p.pdu.command_id == _SUBMIT_MULTI
            for mt in p.mts:
                if results[i].ok:
                    # display_id on each destination of a submit_multi (the first too): the log finds them all
                    add(
                        event_row(
                            mt[1],
                            "accepted",
                            at=now,
                            partner=partner,
                            operator=mt[9],
                            source_addr=p.source_addr,
                            dest_addr=mt[6],
                            parts=mt[7],
                            status=0,
                            node=node,
                            display_id=mt[8] if multi else None,
                            **cdr_fields(mt[10], "held"),
                        )
                    )
                i += 1
        return rows

    def _answer(self, p: _Pending, results: list[Any], accepted: dict[str, int]) -> None:
        ok_ids: list[int] = []
        failures: list[tuple[Any, int]] = list(p.failures) if p.failures else []
        first_error = 0
        partner = p.partner
        for mt, r in zip(p.mts, results, strict=True):
            if r.ok:
                ok_ids.append(mt[0])
            else:
                status = status_for_publish_error(r.kind)
                self._unhold(partner, mt[10])
                self.stats.failed += 1
                self.count_refused(partner, status)
                log.warning(
                    "[%s] message %s not stored (%s: %s): answering 0x%08X",
                    partner,
                    mt[1],
                    r.kind.value,
                    getattr(r, "description", ""),
                    status,
                )
                first_error = first_error or status
                failures.append((SmeDestination(mt[4], mt[5], mt[6]), status))
        if ok_ids:
            accepted[partner] = accepted.get(partner, 0) + len(ok_ids)
        pdu = p.pdu
        if pdu.command_id == _SUBMIT_MULTI:
            if not ok_ids:
                p.session.respond(pdu, failures[0][1] if failures else _RSYSERR)
                return
            unsuccess = tuple(
                UnsuccessSme(d.dest_addr_ton, d.dest_addr_npi, d.destination_addr, status)
                for d, status in failures
            )
            # the one id of the submit_multi (the first destination's, also when that one was not stored)
            shown = format_id(int(p.mts[0][8]), p.partner_fmt)
            p.session.respond(pdu, pdu.make_response(0, message_id=shown, unsuccess_sme=unsuccess))
            return
        if ok_ids:
            p.session.respond(pdu, pdu.make_response(0, message_id=format_id(ok_ids[0], p.partner_fmt)))
        else:
            # a refused request (failures: its own status) or a record not stored
            p.session.respond(pdu, first_error or (failures[0][1] if failures else _RSYSERR))

    # ------------------------------------------------------------------ the HTTP API

    async def submit_api(self, partner: Partner, pdus: Sequence[Pdu], dc0: str = "gsm7") -> list[ApiResult]:
        """HTTP submits (submit_sm PDUs built by :mod:`catalyst_smpp.http.compose`) through the same
        ``_build`` and batcher as an SMPP submit; one :class:`ApiResult` per PDU, once each is answered (its
        record published and its event rows stored, or refused).  ``dc0``: what data_coding 0 means in these
        PDUs (the API encodes GSM text itself, whatever the partner's SMPP setting).  Many PDUs (a bulk) are
        queued ``max_batch`` at a time, with a checkpoint between: the batcher publishes the first batches
        while the next are built."""
        resp = _ApiResponder(partner.system_id, len(pdus))
        sid = partner.system_id
        fmt = partner.message_id_format
        pending: list[_Pending | None] = []
        step = self.max_batch
        for k, pdu in enumerate(pdus):
            if k and k % step == 0:
                # a batch's worth is queued: let the batcher publish it while the rest are built
                await trio.sleep(0)
            source: tuple[int, int, str] = (pdu.source_addr_ton, pdu.source_addr_npi, pdu.source_addr)  # type: ignore[attr-defined]
            dest: tuple[int, int, str] = (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr)  # type: ignore[attr-defined]
            p: _Pending | None = None
            try:
                if self._closed:
                    raise _Reject(_RMSGQFUL, "draining")
                mt = self._build(sid, dc0, pdu, source, dest, None, partner)
            except _NeedCredit as need:
                if self._running:
                    retry = [(dest, need.micros)]
                    p = _Pending(resp, pdu, [], [], fmt, self.clock(), sid, source[2], retry=retry)
                else:
                    resp.respond(pdu, _RSYSERR)
            except _Reject as r:
                resp.labels[id(pdu)] = r.label
                row = self._rejected(sid, source[2], dest[2], r)
                if row is None or not self._running:
                    resp.respond(pdu, r.status)
                else:
                    failed = [(SmeDestination(*dest), r.status)]
                    p = _Pending(resp, pdu, [], failed, fmt, self.clock(), sid, source[2], [row])
            else:
                p = _Pending(resp, pdu, [mt], [], fmt, self.clock(), sid, source[2])
            if p is not None:
                self._enqueue(p)
            pending.append(p)
        await resp.done.wait()
        out: list[ApiResult] = []
        for pdu, p in zip(pdus, pending, strict=True):
            status = resp.statuses[id(pdu)]
            label = resp.labels.get(id(pdu), "")
            if status == 0 and p is not None and p.mts:
                mt = p.mts[0]
                due = mt[11][0] if mt[11] is not None else None
                out.append(ApiResult(0, mt[0], mt[7], mt[10].price, mt[10].currency, "", mt[9], due))
            else:
                out.append(ApiResult(status, None, 0, 0, "", label, ""))
        return out

    # ------------------------------------------------------------------ draining

    async def drain(self) -> None:
        """Refuse new messages (``ESME_RMSGQFUL``); wait until every queued one is published and answered."""
        self._closed = True
        if not self._running:
            while self._queue:
                p = self._queue.popleft()
                self.stats.failed += 1
                p.session.respond(p.pdu, _RMSGQFUL)
            return
        while self._queue or self._busy:
            await self._idle.wait()
            if self._queue or self._busy:
                await trio.sleep(0)

    def reopen(self) -> None:
        self._closed = False

    async def wait_idle(self) -> None:
        """Until nothing is queued or being published (tests)."""
        while self._queue or self._busy:
            await self._idle.wait()
            await trio.sleep(0)


@attrs.frozen
class _Failed:
    kind: PublishErrorKind
    description: str = "bus unavailable"
    ok: bool = False


@attrs.frozen
class _Stored:
    """The result of a scheduled message stored in Postgres (it has no publish result)."""

    ok: bool = True


_STORED: Final = _Stored()


@attrs.frozen
class ApiResult:
    """The outcome of one HTTP submit: ``status`` 0 (published: ``message_id`` our id, its ``parts``, its
    price in micro-units and currency: 0 and "" for a partner not billed, the operator it is routed to) or
    the SMPP status an SMPP partner would have been answered with, and ``label`` the kind of refusal
    (``no_route``, ``unpriced``, ``insufficient_credit``, ``margin``, ``currency``; "" for the others)."""

    status: int
    message_id: int | None
    parts: int
    price: int
    currency: str
    label: str
    operator: str
    scheduled_at: float | None = None
    """When a scheduled message is due (it was stored, not published); None for the others."""


class _ApiResponder:
    """Stands in for the SMPP session of the HTTP submits of one request: the batcher's ``respond(pdu,
    reply)`` records each PDU's status; ``done`` is set once every PDU has its answer."""

    __slots__ = ("done", "labels", "remaining", "session_id", "statuses", "system_id")

    def __init__(self, system_id: str, n: int) -> None:
        self.system_id = system_id
        self.session_id = "http"
        self.statuses: dict[int, int] = {}
        self.labels: dict[int, str] = {}
        self.remaining = n
        self.done = trio.Event()
        if n == 0:
            self.done.set()

    def respond(self, pdu: Pdu, reply: Reply) -> None:
        key = id(pdu)
        if key in self.statuses:
            return
        if isinstance(reply, Pdu):
            reply = reply.command_status
        self.statuses[key] = reply if isinstance(reply, int) else _RSYSERR
        self.remaining -= 1
        if self.remaining <= 0:
            self.done.set()
