"""Scheduled sends: messages kept in Postgres until their ``schedule_delivery_time``; cancel_sm, replace_sm.

At accept (gateway/accept.py) a message whose schedule_delivery_time (absolute, or relative to its acceptance)
is in the future is not published to MT: its MT record is stored in ``scheduled_messages`` (migration 0012)
with the batch's other scheduled messages in ONE statement (:meth:`Scheduler.store`), before the partner gets
ESME_ROK, and its ``accepted`` log row is stored as for any message. Its record is the one that would have
been published, except that ``schedule_delivery_time`` is emptied (the scheduling is done here; a relative
time would otherwise be counted again by the operator) and ``validity_period`` is the absolute UTC instant it
named (a relative one counts from the acceptance, not from the release).

:class:`Scheduler` runs on every node and keeps no timer per message: every ``interval`` it takes the waiting
rows whose due time (or expiry) has come, ``SELECT … FOR UPDATE SKIP LOCKED`` in batches (nodes never take the
same row), and in the same transaction

* publishes each due one to its MT subject with ``msg_id`` = its message id (a crash between the publish and
  the commit publishes it again on the next tick: JetStream keeps one copy within the stream's
  ``duplicate_window``), then marks it ``sent``;
* for one whose validity period has passed: no publish; a failure receipt EXPIRED (when the partner asked for
  one) and a ``failed`` row (final_state EXPIRED, charge_state ``released``: the hold goes back), then
  ``expired``.

cancel_sm (:meth:`Scheduler.cancel_sm`, :meth:`Scheduler.cancel`) marks waiting rows ``cancelled`` and stores
a ``cancelled`` log row per message (charge_state ``released``). The row is marked with ``logged = false`` in
the same statement and set true once the log row is stored; a node that died in between leaves it false, and
any node's scheduler stores the log row later (the row's key makes a second copy harmless). replace_sm
(:meth:`Scheduler.replace_sm`) rewrites a waiting row's record and times in place. Messages already released
(``sent``), expired, cancelled or unknown cannot be cancelled or replaced.
"""

from __future__ import annotations

import calendar
import datetime as dt
import functools
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import psycopg
import trio

from catalyst_smpp.billing.charging import billable_parts, cdr_fields
from catalyst_smpp.bus import BusError, MessageBus, PublishItem
from catalyst_smpp.encoding.datacoding import Alphabet, CodingGroup, parse_data_coding
from catalyst_smpp.gateway.events import EventPublisher, Row, event_row
from catalyst_smpp.gateway.ids import parse_id
from catalyst_smpp.gateway.messages import MT, mt_fields
from catalyst_smpp.gateway.outcomes import failed_row, failure_receipt
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.fields import RelativeTime, parse_time
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import Partner

__all__ = ["Entry", "Scheduler", "SchedulerStats", "smpp_utc", "time_at", "when"]

log = logging.getLogger(__name__)

S = CommandStatus
_ROK: Final = 0
_RSYSERR: Final = int(S.ESME_RSYSERR)
_RINVMSGID: Final = int(S.ESME_RINVMSGID)
_RCANCELFAIL: Final = int(S.ESME_RCANCELFAIL)
_RREPLACEFAIL: Final = int(S.ESME_RREPLACEFAIL)
_DC0: Final = {"gsm7": Alphabet.GSM7, "latin1": Alphabet.LATIN1, "ascii": Alphabet.IA5}
_UTC: Final = dt.UTC

_parse = functools.lru_cache(maxsize=1024)(parse_time)
"""parse_time remembered per value (partners send the same relative validity on every message)."""


def time_at(value: str, base: float) -> float | None:
    """The instant (unix seconds) an SMPP time field names: an absolute time as given, a relative one counted
    from ``base`` (years and months by the calendar, a day clamped to the month's last); None when empty.
    :class:`~catalyst_smpp.protocol.fields.TimeFormatError` (a ValueError) when it is not a time."""
    if not value:
        return None
    t = _parse(value)
    if t is None:
        return None
    if isinstance(t, dt.datetime):
        return t.timestamp()
    return _after(base, t)


def _after(base: float, p: RelativeTime) -> float:
    d = dt.datetime.fromtimestamp(base, _UTC)
    if p.years or p.months:
        months = d.month - 1 + p.months + 12 * p.years
        year, month = d.year + months // 12, months % 12 + 1
        d = d.replace(year=year, month=month, day=min(d.day, calendar.monthrange(year, month)[1]))
    period = dt.timedelta(days=p.days, hours=p.hours, minutes=p.minutes, seconds=p.seconds)
    return (d + period).timestamp()


def smpp_utc(at: float) -> str:
    """``at`` as an absolute SMPP time in UTC (``YYMMDDhhmmsst00+``)."""
    u = dt.datetime.fromtimestamp(at, _UTC)
    return f"{u:%y%m%d%H%M%S}{u.microsecond // 100_000}00+"


def when(schedule: str, validity: str, now: float) -> tuple[tuple[float, float | None] | None, str, str]:
    """Accept's reading of a message's times: its due instant and expiry when it is scheduled (its
    schedule_delivery_time, a real time, is still to come), with the record's schedule (emptied: the scheduler
    does it) and validity (the absolute instant it names: a relative one counts from the acceptance, not from
    the release); else None and both as they are."""
    due = time_at(schedule, now)
    if due is None or due <= now:
        return None, schedule, validity
    until = time_at(validity, now)
    return (due, until), "", smpp_utc(until) if until is not None else ""


def _ts(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, _UTC)


@attrs.frozen
class Entry:
    """One scheduled message as accept stores it."""

    message_id: str
    partner: str
    display_id: str
    source_addr: str
    dest_addr: str
    service_type: str
    due_at: float
    expires_at: float | None
    subject: str
    record: bytes


@attrs.define
class SchedulerStats:
    stored: int = 0
    released: int = 0
    expired: int = 0
    cancelled: int = 0
    replaced: int = 0
    errors: int = 0


_COLUMNS: Final = (
    "message_id, partner, display_id, source_addr, dest_addr, service_type, due_at, expires_at, subject,"
    " record"
)
_DUE: Final = """
SELECT message_id, subject, record, expires_at IS NOT NULL AND expires_at <= %(now)s
FROM scheduled_messages
WHERE state = 'waiting' AND LEAST(due_at, COALESCE(expires_at, due_at)) <= %(now)s
ORDER BY LEAST(due_at, COALESCE(expires_at, due_at))
LIMIT %(n)s
FOR UPDATE SKIP LOCKED
"""
_UNLOGGED: Final = """
SELECT message_id, record FROM scheduled_messages
WHERE NOT logged AND updated_at < %(before)s
LIMIT %(n)s
FOR UPDATE SKIP LOCKED
"""


class Scheduler:
    """Stores, releases, expires, cancels and replaces scheduled messages (module notes); run :meth:`run` on
    every node.  ``partners``: the partner records (message_id_format, data_coding 0 meaning)."""

    def __init__(
        self,
        db: Database,
        bus: MessageBus,
        *,
        events: EventPublisher | None,
        partners: Callable[[str], Partner | None],
        node: str = "",
        batch: int = 500,
        interval: float = 1.0,
        keep: float = 3 * 86400.0,
        relog_after: float = 30.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``interval``: how often due rows are looked for (a message leaves at most about that late);
        ``keep``: how long rows no longer waiting stay (then deleted); ``relog_after``: when a cancelled
        row's missing log row is stored by the sweep (its cancel died before storing it)."""
        self.db = db
        self.bus = bus
        self.events = events
        self.partners = partners
        self.node = node
        self.batch = batch
        self.interval = interval
        self.keep = keep
        self.relog_after = relog_after
        self.clock = clock
        self.stats = SchedulerStats()
        self._last_purge = 0.0

    # ------------------------------------------------------------------ accept

    async def store(self, entries: Sequence[Entry]) -> bool:
        """Store ``entries`` (one accept batch's scheduled messages) with one COPY; False when the database
        failed (accept then answers them ESME_RMSGQFUL: the partner submits again)."""

        def _store(conn: Any) -> None:
            with conn.cursor() as cur, cur.copy(f"COPY scheduled_messages ({_COLUMNS}) FROM STDIN") as cp:
                for e in entries:
                    cp.write_row(
                        (e.message_id, e.partner, e.display_id, e.source_addr, e.dest_addr, e.service_type,
                         _ts(e.due_at), _ts(e.expires_at), e.subject, e.record)
                    )  # fmt: skip

        try:
            await self.db.run(_store)
        except (psycopg.Error, OSError) as exc:
            self.stats.errors += 1
            log.warning("storing %d scheduled message(s) failed: %s", len(entries), exc)
            return False
        self.stats.stored += len(entries)
        return True

    # ------------------------------------------------------------------ the release loop

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        warned = -60.0
        while True:
            try:
                await self.tick()
            except (psycopg.Error, OSError, BusError) as exc:
                self.stats.errors += 1
                if trio.current_time() - warned >= 60.0:  # once a minute while the database/NATS is down
                    warned = trio.current_time()
                    log.warning("scheduled messages: %s (trying again every %.1fs)", exc, self.interval)
            except Exception:
                self.stats.errors += 1
                log.exception("scheduled messages: releasing failed")
            await trio.sleep(self.interval)

    async def tick(self) -> int:
        """Release (or expire) every message due now, batch after batch (until a batch is not full or not
        all done); the sweeps; the count released or expired."""
        total = 0
        while True:
            taken, done = await self.db.run(self._release, self.clock())
            total += done
            if taken < self.batch or done < taken:  # all due ones taken, or some failed: next tick
                break
        await self.db.run(self._relog, self.clock() - self.relog_after)
        now = self.clock()
        if now - self._last_purge > 3600.0:
            self._last_purge = now
            await self.db.run(_purge, now - self.keep)
        return total

    def _release(self, conn: Any, now: float) -> tuple[int, int]:
        """In a worker thread, one transaction: lock a batch of due rows, publish them (trio), mark them."""
        rows = conn.execute(_DUE, {"now": _ts(now), "n": self.batch}).fetchall()
        if not rows:
            return 0, 0
        sent, expired = trio.from_thread.run(self._publish, rows)
        conn.execute(
            "UPDATE scheduled_messages SET state = CASE WHEN message_id = ANY(%(x)s) THEN 'expired'"
            " ELSE 'sent' END, updated_at = now() WHERE message_id = ANY(%(ids)s)",
            {"x": expired, "ids": sent + expired},
        )
        self.stats.released += len(sent)
        self.stats.expired += len(expired)
        return len(rows), len(sent) + len(expired)

    async def _publish(self, rows: list[tuple[str, str, bytes, bool]]) -> tuple[list[str], list[str]]:
        """Publish the due rows to MT; the expired ones' receipts and ``failed`` rows.  The ids done (sent,
        expired): a row not done stays waiting and is tried again on the next tick."""
        due = [(mid, subject, record) for mid, subject, record, gone in rows if not gone]
        sent: list[str] = []
        if due:
            res = await self.bus.publish_batch([PublishItem(s, r, None, mid) for mid, s, r in due])
            sent = [mid for (mid, _s, _r), x in zip(due, res, strict=True) if getattr(x, "ok", False)]
            if len(sent) < len(due):
                log.warning("scheduled messages: %d of %d not published", len(due) - len(sent), len(due))
        expired: list[str] = []
        gone = [(mid, mt_fields(record)) for mid, _s, record, g in rows if g]
        if gone:
            receipts = [
                r
                for _mid, mt in gone
                if (r := failure_receipt(self.bus, mt, "EXPIRED", "000", "", mt.parts)) is not None
            ]
            if receipts:
                res = await self.bus.publish_batch(receipts)
                if not all(getattr(x, "ok", False) for x in res):
                    return sent, []  # the expired rows stay waiting: receipts again next tick (same msg_ids)
            error = "validity period passed before its scheduled time"
            rowz = [failed_row(mt, "EXPIRED", "", mt.parts, None, error, self.node) for _mid, mt in gone]
            if self.events is not None:
                lost = await self.events.store(rowz, until=trio.current_time() + 10.0)
                if lost:
                    return sent, []
            expired = [mid for mid, _mt in gone]
        return sent, expired

    def _relog(self, conn: Any, before: float) -> None:
        """Store the ``cancelled`` rows of cancels that died before storing them (module notes)."""
        rows = conn.execute(_UNLOGGED, {"before": _ts(before), "n": self.batch}).fetchall()
        if not rows:
            return
        done = trio.from_thread.run(self._log_cancelled, [mt_fields(r) for _m, r in rows])
        if done:
            _mark_logged(conn, [m for m, _ in rows])

    async def _log_cancelled(self, mts: list[Any]) -> bool:
        if self.events is None:
            return True
        now = self.clock()
        rows: list[Row] = [
            event_row(
                mt.message_id,
                "cancelled",
                at=now,
                partner=mt.partner,
                operator=mt.targets[0] if mt.targets else "",
                source_addr=mt.source_addr,
                dest_addr=mt.dest_addr,
                parts=mt.parts,
                status=0,
                final_state="DELETED",
                node=self.node,
                display_id=mt.display_id if mt.display_id != mt.message_id else None,
                **cdr_fields(mt, "released"),
            )
            for mt in mts
        ]
        return not await self.events.store(rows, until=trio.current_time() + 10.0)

    # ------------------------------------------------------------------ cancel

    async def cancel(self, partner: str, message_id: str) -> bool:
        """Cancel ``partner``'s waiting message ``message_id`` (our canonical id, or the id a submit_multi's
        destinations share: all of them); False when none was waiting (sent, expired, cancelled, unknown)."""
        n = await self._cancel(partner, "(message_id = %(id)s OR display_id = %(id)s)", {"id": message_id})
        return n > 0

    async def _cancel(self, partner: str, where: str, params: dict[str, Any]) -> int:
        def _mark(conn: Any) -> list[tuple[str, bytes]]:
            sql = (
                "UPDATE scheduled_messages SET state = 'cancelled', logged = false, updated_at = now()"
                f" WHERE state = 'waiting' AND partner = %(partner)s AND {where} RETURNING message_id, record"
            )
            rows: list[tuple[str, bytes]] = conn.execute(sql, {"partner": partner, **params}).fetchall()
            return rows

        rows = await self.db.run(_mark)
        if not rows:
            return 0
        self.stats.cancelled += len(rows)
        ids = [m for m, _r in rows]
        log.info("[%s] cancelled scheduled message(s) %s", partner, ", ".join(ids[:10]))
        # the log rows release the holds; a cancel that dies before this leaves them to the sweep (_relog)
        if await self._log_cancelled([mt_fields(r) for _m, r in rows]):
            await self.db.run(_mark_logged, ids)
        return len(rows)

    def cancel_sm(self, session: Any, pdu: Pdu) -> Reply:
        """The answer to a partner's cancel_sm (SMPP v3.4 section 4.9): by message_id (its source_addr and,
        when given, destination_addr must match), or without one every waiting message from source_addr to
        destination_addr (and of service_type when given)."""
        partner = self.partners(session.system_id)
        if partner is None:
            return _RCANCELFAIL
        mid: str = pdu.message_id  # type: ignore[attr-defined]
        source: str = pdu.source_addr  # type: ignore[attr-defined]
        dest: str = pdu.destination_addr  # type: ignore[attr-defined]
        service: str = pdu.service_type  # type: ignore[attr-defined]
        clauses: list[str] = []
        params: dict[str, Any] = {"source": source, "dest": dest, "service": service}
        if mid.strip(" \x00"):
            try:
                params["id"] = str(parse_id(mid, partner.message_id_format))
            except ValueError:
                return _RINVMSGID
            clauses.append("(message_id = %(id)s OR display_id = %(id)s)")
        elif not (source and dest):
            return _RCANCELFAIL  # neither an id nor both addresses: nothing to cancel by
        if source:
            clauses.append("source_addr = %(source)s")
        if dest:
            clauses.append("dest_addr = %(dest)s")
        if service:
            clauses.append("service_type = %(service)s")
        return self._answer(self._cancel(partner.system_id, " AND ".join(clauses), params), _RCANCELFAIL)

    async def _answer(self, work: Awaitable[int], fail: int) -> int:
        try:
            n = await work
        except (psycopg.Error, OSError) as exc:
            self.stats.errors += 1
            log.warning("cancel/replace of a scheduled message failed: %s", exc)
            return _RSYSERR
        return _ROK if n > 0 else fail

    # ------------------------------------------------------------------ replace

    def replace_sm(self, session: Any, pdu: Pdu) -> Reply:
        """The answer to a partner's replace_sm (section 4.10) of a waiting message: its text, and its
        schedule, validity and registered_delivery when given; ESME_RREPLACEFAIL for anything else."""
        partner = self.partners(session.system_id)
        if partner is None:
            return _RREPLACEFAIL
        try:
            mid = str(parse_id(pdu.message_id, partner.message_id_format))  # type: ignore[attr-defined]
        except ValueError:
            return _RINVMSGID
        return self._answer(self.replace(partner, mid, pdu), _RREPLACEFAIL)

    async def replace(self, partner: Partner, message_id: str, pdu: Pdu) -> int:
        """Replace the waiting message(s) shown to ``partner`` as ``message_id`` per ``pdu`` (a replace_sm);
        the count replaced (0: refused, reason logged)."""
        now = self.clock()
        new_text: bytes = pdu.short_message  # type: ignore[attr-defined]
        source: str = pdu.source_addr  # type: ignore[attr-defined]
        try:
            due = time_at(pdu.schedule_delivery_time, now)  # type: ignore[attr-defined]
            until = time_at(pdu.validity_period, now)  # type: ignore[attr-defined]
        except ValueError:  # refused by request_problem before this
            return 0

        def _replace(conn: Any) -> int:
            rows = conn.execute(
                "SELECT message_id, record FROM scheduled_messages"
                " WHERE state = 'waiting' AND partner = %(p)s"
                " AND (message_id = %(id)s OR display_id = %(id)s) FOR UPDATE",
                {"p": partner.system_id, "id": message_id},
            ).fetchall()
            updates = []
            for mid, record in rows:
                rec = MT.decode(record)
                why = _replace_problem(rec, new_text, source, partner)
                if why is not None:
                    log.info("[%s] replace_sm of %s refused: %s", partner.system_id, mid, why)
                    return 0
                rec = attrs.evolve(
                    rec,
                    payload=new_text,
                    registered_delivery=pdu.registered_delivery,  # type: ignore[attr-defined]
                    validity_period=smpp_utc(until) if until is not None else rec.validity_period,
                )
                updates.append((rec.to_bytes(), _ts(due), _ts(until), mid))
            for u in updates:
                conn.execute(
                    "UPDATE scheduled_messages SET record = %s, due_at = COALESCE(%s, due_at),"
                    " expires_at = COALESCE(%s, expires_at), updated_at = now() WHERE message_id = %s",
                    u,
                )
            return len(updates)

        n: int = await self.db.run(_replace)
        self.stats.replaced += n
        return n


def _replace_problem(rec: Any, text: bytes, source: str, partner: Partner) -> str | None:
    """Why ``rec`` cannot take ``text`` (None: it can)."""
    if source and source != rec.source.addr:
        return "source_addr differs from the message's"
    if rec.esm_class & 0x40 or rec.parts > 1:
        return "a part of a message the partner concatenated itself"
    dc = parse_data_coding(rec.data_coding, _DC0.get(rec.partner_dc0, Alphabet.GSM7))
    if dc.alphabet is Alphabet.UCS2 and len(text) % 2:
        return "UCS-2 text of an odd number of octets"
    if dc.group is CodingGroup.RESERVED:
        return "reserved data_coding"
    if rec.charge_on:
        # the hold is for the parts priced at accept: another number of parts would need another price
        old, new = billable_parts(len(rec.payload), dc.alphabet), billable_parts(len(text), dc.alphabet)
        if old != new:
            return f"the new text takes {new} part(s), the price held is for {old}"
    return None


def _purge(conn: Any, before: float) -> None:
    """Forget the rows no longer waiting (and logged) since ``before``."""
    conn.execute(
        "DELETE FROM scheduled_messages WHERE state <> 'waiting' AND logged AND updated_at < %s",
        (_ts(before),),
    )


def _mark_logged(conn: Any, ids: list[str]) -> None:
    conn.execute("UPDATE scheduled_messages SET logged = true WHERE message_id = ANY(%s)", (ids,))


Reply = int | Awaitable[int]
