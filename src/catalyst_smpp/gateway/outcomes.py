"""What becomes of an MT message at the operator connector: its outcome, and the action each outcome takes.

:class:`Outcome` is what happened to a fetched message; :func:`classify` reads it off the submit results of
its parts (responses, timeouts, lost binds, the operator's own ``temporary_statuses``); :data:`ACTIONS` says
per outcome what is done about it, and :class:`Settlement` does that, for a batch of messages at a time, in
one place:

======== =========================================================================================
outcome   action
======== =========================================================================================
OK        id mappings stored (KV), ``submitted`` event row stored, then ack
TEMP      nak with the growing delay (``retry_delays``); parts the operator accepted count as duplicates
WAIT      nak with ``down_retry`` (operator down, no further target)
FAILOVER  republished to ``MT.<next target>`` (msg_id ``"<id>@<operator>"``), then ack
PERM      failure receipt REJECTD (when the partner asked), ``failed`` row, then term
BUILD     failure receipt UNDELIV (when the partner asked), ``failed`` row, then term
EXPIRED   failure receipt EXPIRED (when the partner asked), ``failed`` row, then term: its validity period
          had passed when it was fetched (never submitted)
POISON    term (an undecodable record)
======== =========================================================================================

Every step that must happen before the message is settled (mappings, publishes, rows) that fails turns the
message into a nak with the growing delay, so it is tried again rather than lost.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Callable
from typing import Any

import attrs
import trio

from catalyst_smpp.billing.charging import cdr_fields, settles_on_submit
from catalyst_smpp.bus import BusError, Kind, MessageBus, Msg, PublishItem
from catalyst_smpp.encoding.msgid import normalise_id
from catalyst_smpp.gateway.events import EventPublisher, Row, event_row
from catalyst_smpp.gateway.inbound import wants_receipt
from catalyst_smpp.gateway.mappings import IdMapping
from catalyst_smpp.gateway.messages import MT, MtFields, dlr_record
from catalyst_smpp.gateway.submits import mapping_flags
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.store import Operator

__all__ = [
    "ACTIONS",
    "TEMPORARY_STATUSES",
    "Action",
    "ConnectorStats",
    "Job",
    "Outcome",
    "Settle",
    "Settlement",
    "classify",
    "failed_row",
    "failure_receipt",
    "receipt_err",
]

# the connector's logger: these lines are the connector's (operators grep their logs by it)
log = logging.getLogger("catalyst_smpp.gateway.connector")

TEMPORARY_STATUSES = frozenset(
    {
        int(CommandStatus.ESME_RTHROTTLED),
        int(CommandStatus.ESME_RMSGQFUL),
        int(CommandStatus.ESME_RX_T_APPN),
    }
)
"""Statuses that are worth trying again whatever the operator (its ``temporary_statuses`` add to them)."""


class Outcome(enum.Enum):
    """What happened to a fetched MT message (see the module's table for what is done about it)."""

    OK = "ok"
    TEMP = "temp"
    WAIT = "wait"
    FAILOVER = "failover"
    PERM = "perm"
    BUILD = "build"
    EXPIRED = "expired"
    POISON = "poison"

    # members are singletons compared by identity: hash them by identity too, in C (Enum's own __hash__ is
    # a Python call, and ACTIONS is looked up by outcome several times per message)
    __hash__ = object.__hash__


class Settle(enum.Enum):
    ACK = "ack"
    NAK = "nak"
    TERM = "term"


@attrs.frozen
class Action:
    """What is done about one outcome, in this order: mappings, publish, event row, then ``settle``."""

    settle: Settle
    store_mappings: bool = False
    """Store the parts' id mappings before anything else (OK: a receipt may come any moment)."""
    publish: str | None = None
    """``"next_target"``: the message to its next target; ``"receipt"``: a failure receipt, when wanted."""
    final_state: str = ""
    """The state of the failure receipt and the ``failed`` row."""
    event: str | None = None
    """The event row stored before the ack/term that makes it final: ``submitted`` / ``failed``."""
    down_delay: bool = False
    """A nak waits ``down_retry`` (else the growing ``retry_delays``)."""


ACTIONS: dict[Outcome, Action] = {
    Outcome.OK: Action(Settle.ACK, store_mappings=True, event="submitted"),
    Outcome.TEMP: Action(Settle.NAK),
    Outcome.WAIT: Action(Settle.NAK, down_delay=True),
    Outcome.FAILOVER: Action(Settle.ACK, publish="next_target"),
    Outcome.PERM: Action(Settle.TERM, publish="receipt", final_state="REJECTD", event="failed"),
    Outcome.BUILD: Action(Settle.TERM, publish="receipt", final_state="UNDELIV", event="failed"),
    Outcome.EXPIRED: Action(Settle.TERM, publish="receipt", final_state="EXPIRED", event="failed"),
    Outcome.POISON: Action(Settle.TERM),
}


def receipt_err(status: int) -> str:
    """The ``err`` of a failure receipt we write for a command_status: the status in hex, at least 3 digits
    (``00B`` = ESME_RINVDSTADR 0x0B, ``401`` = vendor status 0x401; longer only beyond 0xFFF).  The full
    status is in the ``failed`` event / message log (``status``)."""
    return f"{status:03X}"


@attrs.define
class ConnectorStats:
    fetched: int = 0
    submitted: int = 0
    """MT messages fully accepted by the operator (mapping stored, acked)."""
    parts_submitted: int = 0
    nacked: int = 0
    termed: int = 0
    failed: int = 0
    failure_receipts: int = 0
    failed_over: int = 0
    poison: int = 0
    redelivered: int = 0
    """Messages JetStream delivered more than once (an earlier attempt may have reached the operator)."""
    duplicate_parts: int = 0
    """Parts accepted by the operator in an attempt that was then retried (they will be sent again)."""
    kv_errors: int = 0
    kv_retries: int = 0
    ack_retries: int = 0
    """Retries of storing id mappings (NATS unavailable); each one that succeeds saves a re-submission."""


class Job:
    """One fetched MT message on its way (a plain class: one is made per message)."""

    __slots__ = ("error", "keys", "last_only", "msg", "mt", "outcome", "pdus", "pending", "results",
                 "settled", "started", "status")  # fmt: skip

    def __init__(self, msg: Msg, started: float = 0.0) -> None:
        self.msg = msg
        self.mt: MtFields | None = None
        self.pdus: list[SubmitSm] = []
        self.results: list[Any] = []  # per part: the response, the exception that ended it, or None
        self.outcome = Outcome.OK  # set by classify (or where the message stopped before submitting)
        self.status: int | None = None
        self.error = ""
        self.started = started
        self.settled = False
        self.pending = 0  # parts sent (or about to be) whose outcome is not known yet
        self.keys: list[Any] = []  # per part: (operator id, normalised key, IdMapping) remembered early
        self.last_only = False  # only the last of several parts asked for a receipt (receipt_parts "last")

    def flags(self, i: int) -> int:
        """The id mapping flags of part ``i`` (0-based)."""
        assert self.mt is not None
        return mapping_flags(self.mt.registered_delivery, i + 1, len(self.pdus), self.last_only)

    def mapping(self, i: int) -> IdMapping:
        """The id mapping of part ``i`` (0-based): what its operator id leads a receipt to."""
        mt = self.mt
        assert mt is not None
        return IdMapping(
            mt.message_id,
            mt.partner,
            self.flags(i),
            i + 1,
            len(self.pdus),
            mt.display_id,
            charge_on=mt.charge_on,
            price=mt.price,
            currency=mt.currency,
            cost=mt.cost,
            cost_currency=mt.cost_currency,
            lease=mt.lease,
        )

    def accepted_parts(self) -> int:
        """Parts the operator answered ESME_ROK."""
        return sum(
            1
            for r in self.results
            if r is not None and not isinstance(r, BaseException) and r.command_status == 0
        )


def classify(job: Job, temporary_statuses: frozenset[int] | tuple[int, ...]) -> None:
    """Set ``job.outcome`` (and ``status``/``error``) from the results of its parts: any permanent answer
    → FAILOVER when the message has a further target, else PERM; else any temporary answer (a status in
    :data:`TEMPORARY_STATUSES` or the operator's ``temporary_statuses``), response timeout, lost bind or
    unsent part → TEMP; else OK."""
    perm = temp = None
    for r in job.results:
        if r is None or isinstance(r, BaseException):
            temp = temp or (r if r is not None else "cancelled")
        elif r.command_status == 0:
            continue
        elif r.command_status in TEMPORARY_STATUSES or r.command_status in temporary_statuses:
            temp = temp or r
        elif perm is None:
            perm = r
    if perm is not None:
        job.status = perm.command_status
        job.error = f"operator answered 0x{perm.command_status:08X}"
        assert job.mt is not None
        job.outcome = Outcome.FAILOVER if len(job.mt.targets) > 1 else Outcome.PERM
    elif temp is not None:
        job.outcome = Outcome.TEMP
        if isinstance(temp, BaseException):
            job.error = repr(temp)
        elif isinstance(temp, str):
            job.error = temp
        else:
            job.status = temp.command_status
            job.error = f"operator answered 0x{temp.command_status:08X}"
    else:
        job.outcome = Outcome.OK


@attrs.define
class Settlement:
    """Applies :data:`ACTIONS` to batches of messages of one operator's connector."""

    bus: MessageBus
    stats: ConnectorStats
    events: EventPublisher | None
    node: str
    operator: Callable[[], Operator]
    retry_delays: tuple[float, ...]
    down_retry: Callable[[], float]

    def retry_delay(self, m: Msg) -> float:
        d = self.retry_delays
        return d[min(max(m.num_delivered, 1) - 1, len(d) - 1)] if d else 1.0

    async def settle(self, batch: list[Job], consumer: Any) -> None:
        op = self.operator()
        name = op.name
        ack: list[Msg] = []
        term: list[Msg] = []
        naks: dict[float, list[Msg]] = {}
        publish: list[tuple[PublishItem, Job]] = []
        # settled with an event row (submitted / failed): acked or termed only once the row is stored
        logged: list[tuple[Row, Job]] = []
        # the id mappings, the event rows and the acks are retried (through a NATS reconnect) until shortly
        # before JetStream would redeliver the messages anyway (ack_wait after the fetch)
        deadline = min(j.started for j in batch) + 0.8 * self.bus.cfg.streams.mt.ack_wait

        def nak(j: Job, delay: float) -> None:
            naks.setdefault(delay, []).append(j.msg)

        def done(j: Job, a: Action) -> None:
            """Every step before settling went through: settle it as its action ``a`` says."""
            s = a.settle
            if s is Settle.ACK:
                ack.append(j.msg)
                if j.outcome is Outcome.OK:
                    self.stats.submitted += 1
                    self.stats.parts_submitted += len(j.results)
            elif s is Settle.TERM:
                term.append(j.msg)
                if j.outcome is Outcome.POISON:
                    self.stats.poison += 1
                else:
                    self.stats.failed += 1
            else:
                nak(j, self.down_retry() if a.down_delay else self.retry_delay(j.msg))

        # 1. mappings of fully accepted messages, stored before the ack
        mapped = [j for j in batch if ACTIONS[j.outcome].store_mappings]
        stored = {id(j) for j in await self._store_mappings(mapped, op, deadline)} if mapped else set()
        now = time.time()
        for j in batch:
            a = ACTIONS[j.outcome]
            if a.store_mappings:
                if id(j) not in stored:
                    nak(j, self.retry_delay(j.msg))
                    continue
                logged.append((self._submitted(j, name, now), j))
            elif a.publish is not None:
                item = self._publication(j, a, name)
                if item is not None:
                    publish.append((item, j))
                elif a.event is not None:
                    logged.append((self._failed(j, a.final_state, name), j))
            else:
                if j.outcome is Outcome.TEMP:
                    self.stats.duplicate_parts += j.accepted_parts()
                done(j, a)

        # 2. failovers and failure receipts, published before the ack / term
        if publish:
            res: list[Any]
            try:
                res = list(await self.bus.publish_batch([p for p, _ in publish]))
            except BusError as exc:
                res = [exc] * len(publish)
            for (item, j), r in zip(publish, res, strict=True):
                a = ACTIONS[j.outcome]
                if not getattr(r, "ok", False):
                    log.warning("operator %s: publish to %s failed: %s", name, item.subject, r)
                    nak(j, self.retry_delay(j.msg))
                elif a.publish == "next_target":
                    self.stats.failed_over += 1
                    log.info(
                        "operator %s: message %s failed over to %s (%s)",
                        name,
                        j.mt.message_id if j.mt else "?",
                        item.subject,
                        j.error,
                    )
                    done(j, a)
                else:
                    self.stats.failure_receipts += 1
                    logged.append((self._failed(j, a.final_state, name), j))

        # 3. their event rows, stored (one packed publish) before the ack or term that makes them final: a
        # message acked without its row would never come back to be logged.  Rows not stored by the
        # deadline: the message is nak'ed and submitted again (a copy at the operator, counted) -- the row
        # is written then.
        if logged:
            lost: set[int] = set()
            if self.events is not None:
                lost = set(await self.events.store([row for row, _ in logged], until=deadline))
            for k, (_row, j) in enumerate(logged):
                if k in lost:
                    self.stats.duplicate_parts += len(j.results) if j.outcome is Outcome.OK else 0
                    nak(j, self.retry_delay(j.msg))
                else:
                    done(j, ACTIONS[j.outcome])

        # 4. settling
        if ack:
            # an ack lost to a NATS outage means a redelivery and so a second submit: retry it through the
            # reconnect (the consumer's pending state survives a server restart) until ack_wait is near.  No
            # flush: the server's PONG would prove nothing more (a flush timing out is not an error either),
            # and the settler's next call on the bus is sent after the acks anyway.
            delay = 0.1
            while True:
                try:
                    await consumer.ack(ack, flush=False)
                    break
                except BusError:
                    if trio.current_time() + delay >= deadline:
                        raise
                    self.stats.ack_retries += 1
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        if term:
            self.stats.termed += len(term)
            await consumer.term(term)
        for delay, msgs in naks.items():
            self.stats.nacked += len(msgs)
            await consumer.nak(msgs, delay=delay)

    async def _store_mappings(self, ok: list[Job], op: Operator, deadline: float) -> list[Job]:
        """Store the id mappings of ``ok``; the jobs whose mappings are all stored (the others counted)."""
        items: list[tuple[str, str, bytes]] = []
        owners: list[Job] = []
        for j in ok:
            assert j.mt is not None
            keys = j.keys
            for i, r in enumerate(j.results):
                known = keys[i] if keys else None
                if known is not None and known[0] == r.message_id:  # normalised when remembered already
                    items.append((op.name, known[1], known[2].to_bytes()))
                else:
                    oid = normalise_id(r.message_id, op.submit_id_format)
                    items.append((op.name, oid, j.mapping(i).to_bytes()))
                owners.append(j)
        results: list[Any] = []
        # The operator has accepted these: giving one back to the queue means submitting it again (a
        # duplicate at the handset).  So keep trying to store the mapping -- through a NATS reconnect --
        # until shortly before JetStream would redeliver the message anyway (ack_wait after the fetch).
        delay = 0.1
        while True:
            try:
                results = await self.bus.opids.put_many(items)
            except BusError as exc:
                results = [exc] * len(items)
            bad = [k for k, r in enumerate(results) if not getattr(r, "ok", False)]
            if not bad or trio.current_time() + delay >= deadline:
                break
            self.stats.kv_retries += 1
            await trio.sleep(delay)
            delay = min(delay * 2, 2.0)
            items = [items[k] for k in bad]
            owners = [owners[k] for k in bad]
        failed_jobs = {id(owners[k]) for k, r in enumerate(results) if not getattr(r, "ok", False)}
        stored: list[Job] = []
        for j in ok:
            if id(j) in failed_jobs:
                self.stats.kv_errors += 1
                self.stats.duplicate_parts += len(j.results)
                log.warning(
                    "operator %s: id mapping of %s not stored; retrying the message",
                    op.name,
                    j.mt.message_id if j.mt else "?",
                )
            else:
                stored.append(j)
        return stored

    def _publication(self, j: Job, a: Action, name: str) -> PublishItem | None:
        """What ``a.publish`` publishes for ``j``: the message for its next target, or its failure receipt
        (None when the partner did not ask for one)."""
        mt = j.mt
        assert mt is not None
        if a.publish == "next_target":
            nxt = attrs.evolve(MT.record(mt), targets=mt.targets[1:], attempt=mt.attempt + 1)
            return PublishItem(
                self.bus.subject(Kind.MT, nxt.targets[0]), nxt.to_bytes(), None, f"{mt.message_id}@{name}"
            )
        return failure_receipt(self.bus, mt, a.final_state, receipt_err(j.status or 0), name, len(j.pdus))

    def _submitted(self, j: Job, name: str, now: float) -> Row:
        """The ``submitted`` row of a fully accepted message."""
        mt = j.mt
        assert mt is not None
        rs = j.results
        return event_row(
            mt.message_id,
            "submitted",
            at=now,
            partner=mt.partner,
            operator=name,
            source_addr=mt.source_addr,
            dest_addr=mt.dest_addr,
            parts=len(rs),
            status=0,
            operator_message_id=",".join(r.message_id for r in rs),
            node=self.node,
            display_id=mt.display_id if mt.display_id != mt.message_id else None,
            **cdr_fields(mt, settles_on_submit(mt)),
        )

    def _failed(self, j: Job, state: str, name: str) -> Row:
        """Log a permanent failure; its ``failed`` row."""
        mt = j.mt
        assert mt is not None
        log.info("operator %s: message %s failed permanently: %s", name, mt.message_id, j.error)
        return failed_row(mt, state, name, len(j.pdus), j.status, j.error, self.node)


def failure_receipt(
    bus: MessageBus, mt: Any, state: str, err: str, operator: str, parts: int
) -> PublishItem | None:
    """The failure receipt (``state``: REJECTD, UNDELIV, EXPIRED) of the MT record ``mt`` (its view or the
    record) for ``DLR.<partner>``; None when the partner did not ask for one.  Also the scheduler's (an
    expired scheduled message)."""
    if not wants_receipt(mt.registered_delivery, state):
        return None
    parts = max(1, parts)
    dlr = dlr_record(
        message_id=mt.message_id,
        partner=mt.partner,
        state=state,
        source=(mt.source_ton, mt.source_npi, mt.source_addr),
        dest=(mt.dest_ton, mt.dest_npi, mt.dest_addr),
        error=err,
        submit_date=mt.accepted_at,
        done_date=time.time(),
        operator=operator,
        parts=parts,
        display_id=mt.display_id,
    )
    return PublishItem(bus.subject(Kind.DLR, mt.partner), dlr, None, f"dlr:{mt.message_id}:{parts}:{state}")


def failed_row(
    mt: Any, state: str, operator: str, parts: int, status: int | None, error: str, node: str
) -> Row:
    """The ``failed`` row of a message that ends without reaching the operator's handset (its hold released):
    the connector's permanent failures and expiries, the scheduler's expiries.  ``mt``: the record's view."""
    return event_row(
        mt.message_id,
        "failed",
        partner=mt.partner,
        operator=operator,
        source_addr=mt.source_addr,
        dest_addr=mt.dest_addr,
        parts=max(1, parts),
        status=status,
        final_state=state,
        error=error[:200],
        node=node,
        display_id=mt.display_id if mt.display_id != mt.message_id else None,
        **cdr_fields(mt, "released"),
    )
