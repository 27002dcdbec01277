"""query_sm for partners, from the message log (docs/dev/gateway.md, "query_sm, cancel_sm, replace_sm").

:class:`QueryHandler` is what :class:`~catalyst_smpp.gateway.accept.AcceptHandler` delegates query_sm to when
it has a database.  ``QueryHandler.query(session, pdu)`` checks what it can at once (returns a status) or
returns a coroutine the session runs in one of its handler workers (no task of ours, nothing to start).
Concurrent queries from every session of the node are coalesced: the first one waiting reads the log for
everything queued with **one** ``db.run`` (``message_id = ANY(...)``, the log's primary key), the others
wait for that batch.

Answers (``query_sm_resp``: ``message_id`` in the partner's format, ``final_date``, ``message_state``,
``error_code``):

* an id that does not parse in the partner's ``message_id_format`` → ``ESME_RINVMSGID`` (as before);
* rows for the id whose ``partner`` is another partner → ``ESME_RQUERYFAIL`` -- the same answer as for an id
  nobody has, so nothing about another partner's message is shown;
* ``accepted`` / ``submitted`` rows only → ``ENROUTE`` (no final_date); still no final row
  ``unknown_after`` (3 days = the KV TTL of the id mappings, after which a receipt can no longer be matched)
  after the id was made → ``UNKNOWN``;
* a ``delivered`` row (the final receipt) → the state its ``final_state`` names (``DELIVRD`` → DELIVERED,
  ``UNDELIV`` → UNDELIVERABLE, ``EXPIRED``, ``DELETED``, ``REJECTD`` → REJECTED, ``ACCEPTD`` → ACCEPTED,
  anything unrecognised → UNKNOWN), ``final_date`` = that row's ``event_at`` (SMPP absolute time, UTC,
  ``YYMMDDhhmmsst00+``), ``error_code`` = the receipt's ``err`` when it is a number 0..255, else 0;
* a ``failed`` row (the connector gave up: the operator refused it, or it could not be built) → its
  ``final_state`` (``REJECTD`` / ``UNDELIV``; UNDELIVERABLE when missing), ``final_date`` its time,
  ``error_code`` 0 (an SMPP command_status is not a network error);
* **no row yet**: the log is written asynchronously in batches (accept → EVENTS → writer → Postgres: normally
  well under a second, longer when the database is slow or down; every row is in EVENTS before the answer
  that made it true, so a missing row is late, never lost).  An id whose embedded time
  (:func:`~catalyst_smpp.gateway.ids.id_time`) is at most ``pending_window`` (default 300 s) old -- and not
  more than ``max_skew`` in the future -- is answered ``ENROUTE``; older (or future) ones ``ESME_RQUERYFAIL``.
  Without a row the partner cannot be checked: any young well-formed id gets ENROUTE, whether it exists or
  belongs to someone else, so this reveals nothing either (it only says "too young to know").
* the database fails or is slower than ``timeout`` → ``ESME_RSYSERR`` (temporary: ask again).

**submit_multi** (one id of ours per destination, the partner was given the first destination's id for all of
them: the log's ``display_id``): the query reads the rows of the id itself and of every message whose rows
carry it as ``display_id`` (``message_log_display_id``, a partial index: migration 0003), and answers for the
submit_multi as a whole -- the **most pending** state while any destination has no final row (``ENROUTE``, or
``UNKNOWN`` when none can still get a receipt), else the **worst** final state (REJECTED, UNDELIVERABLE,
EXPIRED, DELETED, UNKNOWN, ACCEPTED, DELIVERED in that order) with that destination's ``error_code`` and the
latest ``final_date`` (when the last destination became final).  Rows of another partner among them →
``ESME_RQUERYFAIL`` as above.  (The accepted rows of all destinations are stored in one publish before the
answer and normally reach the log in the same write; a destination not logged yet is not counted.)

``source_addr`` of the query is not compared with the message's (partners fill it inconsistently: with or
without ``+``, another TON); the partner check above is what keeps messages private.
"""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, Final

import attrs
import trio

from catalyst_smpp.encoding.receipts import state_for_stat
from catalyst_smpp.gateway.ids import format_id, id_time, parse_id
from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import Partner

__all__ = ["QueryAnswer", "QueryHandler", "answer_query", "smpp_absolute_time"]

log = logging.getLogger(__name__)

S = CommandStatus
_RQUERYFAIL: Final = int(S.ESME_RQUERYFAIL)
_RINVMSGID: Final = int(S.ESME_RINVMSGID)
_RSYSERR: Final = int(S.ESME_RSYSERR)

_COLUMNS: Final = "message_id, event, event_at, partner, final_state, error, status, display_id"
# the id's own rows, then those of the other destinations of a submit_multi shown as that id (migration 0003)
_READ: Final = (
    f"SELECT {_COLUMNS} FROM message_log WHERE message_id = ANY(%(ids)s)"
    f" UNION ALL SELECT {_COLUMNS} FROM message_log JOIN (SELECT DISTINCT message_id FROM message_log"
    " WHERE display_id = ANY(%(ids)s) AND message_id <> ALL(%(ids)s)) d USING (message_id)"
)
# worst first (the answer for a submit_multi whose destinations are all final)
_RANK: Final = {
    int(s): i
    for i, s in enumerate(
        (
            MessageState.REJECTED,
            MessageState.UNDELIVERABLE,
            MessageState.EXPIRED,
            MessageState.DELETED,
            MessageState.UNKNOWN,
            MessageState.ACCEPTED,
            MessageState.DELIVERED,
        )
    )
}


@attrs.frozen
class LogRow:
    """The message-log columns a query needs."""

    message_id: str
    event: str
    event_at: dt.datetime
    partner: str
    final_state: str | None = None
    error: str | None = None
    status: int | None = None
    display_id: str | None = None
    """The id the partner was given, when not ``message_id`` (submit_multi; migration 0003)."""


@attrs.frozen
class QueryAnswer:
    """``status`` 0 → the other fields go into query_sm_resp; else the command_status to answer."""

    status: int
    message_state: int = 0
    final_date: str = ""
    error_code: int = 0


def smpp_absolute_time(at: dt.datetime) -> str:
    """``YYMMDDhhmmsstnnp`` in UTC (t = tenths of a second, nn = 00 quarter hours, p = ``+``)."""
    if at.tzinfo is None:
        at = at.replace(tzinfo=dt.UTC)
    u = at.astimezone(dt.UTC)
    return f"{u:%y%m%d%H%M%S}{u.microsecond // 100_000}00+"


def _error_code(err: str | None) -> int:
    if err is None:
        return 0
    s = err.strip()
    if s.isdigit() and int(s) <= 255:
        return int(s)
    return 0


def answer_query(
    rows: Sequence[LogRow],
    partner: str,
    our_id: int,
    now: float,
    *,
    pending_window: float = 300.0,
    max_skew: float = 60.0,
    unknown_after: float = 3 * 86400.0,
) -> QueryAnswer:
    """The answer to ``partner``'s query for ``our_id`` from the id's log rows (pure; module notes).  Rows of
    several messages (the destinations of a submit_multi shown as ``our_id``) give the most pending / worst
    state over them."""
    groups: dict[str, list[LogRow]] = {}
    for r in rows:
        groups.setdefault(r.message_id, []).append(r)
    if len(groups) > 1:
        if any(r.partner != partner for r in rows):
            return QueryAnswer(_RQUERYFAIL)
        kw = {"pending_window": pending_window, "max_skew": max_skew, "unknown_after": unknown_after}
        return _overall([answer_query(g, partner, our_id, now, **kw) for g in groups.values()])
    made = id_time(our_id)
    if rows:
        if any(r.partner != partner for r in rows):
            return QueryAnswer(_RQUERYFAIL)
        by_event = {r.event: r for r in rows}
        final = by_event.get("delivered") or by_event.get("failed") or by_event.get("cancelled")
        if final is not None:
            state = state_for_stat(final.final_state) if final.final_state else None
            if state is None:
                state = MessageState.UNDELIVERABLE if final.event == "failed" and not final.final_state \
                    else MessageState.UNKNOWN  # fmt: skip
            code = _error_code(final.error) if final.event == "delivered" else 0
            return QueryAnswer(0, int(state), smpp_absolute_time(final.event_at), code)
        if now - made > unknown_after:
            return QueryAnswer(0, int(MessageState.UNKNOWN))
        return QueryAnswer(0, int(MessageState.ENROUTE))
    if -max_skew <= now - made <= pending_window:
        return QueryAnswer(0, int(MessageState.ENROUTE))
    return QueryAnswer(_RQUERYFAIL)


def _overall(answers: list[QueryAnswer]) -> QueryAnswer:
    """A submit_multi's answer from its destinations' (each a state, no refusal): see the module notes."""
    pending = [a for a in answers if not a.final_date]
    if pending:
        return next((a for a in pending if a.message_state == int(MessageState.ENROUTE)), pending[0])
    worst = min(answers, key=lambda a: _RANK.get(a.message_state, _RANK[int(MessageState.UNKNOWN)]))
    return attrs.evolve(worst, final_date=max(a.final_date for a in answers))


def _read_rows(conn: Any, ids: list[str], timeout_ms: int) -> list[LogRow]:
    conn.execute(f"SET LOCAL statement_timeout = {int(timeout_ms)}")
    cur = conn.execute(_READ, {"ids": ids})
    return [LogRow(*r) for r in cur.fetchall()]


def _by_query(rows: list[LogRow], wanted: set[str]) -> dict[str, list[LogRow]]:
    """The rows of each queried id: its own, and those of every message shown to the partner as that id (found
    through the ``display_id`` of any of its rows -- the accepted one has it)."""
    shown: dict[str, set[str]] = {}
    for r in rows:
        d = r.display_id
        if d and d != r.message_id and d in wanted:
            shown.setdefault(r.message_id, set()).add(d)
    by_id: dict[str, list[LogRow]] = {}
    for r in rows:
        if r.message_id in wanted:
            by_id.setdefault(r.message_id, []).append(r)
        for d in shown.get(r.message_id, ()):
            by_id.setdefault(d, []).append(r)
    return by_id


class _Wait:
    __slots__ = ("done", "error", "message_id", "rows")

    def __init__(self, message_id: str) -> None:
        self.message_id = message_id
        self.rows: list[LogRow] = []
        self.done = False
        self.error: BaseException | None = None


@attrs.define
class QueryStats:
    queries: int = 0
    answered: int = 0
    refused: int = 0  # RQUERYFAIL / RINVMSGID
    errors: int = 0  # RSYSERR: database failure or timeout
    batches: int = 0
    unlogged_enroute: int = 0  # ENROUTE from the id's age alone (no log row yet)


class QueryHandler:
    """query_sm from the message log; ``query(session, pdu)`` is a handler reply (status or coroutine)."""

    def __init__(
        self,
        db: Database,
        partners: Callable[[str], Partner | None],
        *,
        pending_window: float = 300.0,
        max_skew: float = 60.0,
        unknown_after: float = 3 * 86400.0,
        timeout: float = 5.0,
        max_batch: int = 500,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.db = db
        self.partners = partners
        self.pending_window = pending_window
        self.max_skew = max_skew
        self.unknown_after = unknown_after
        self.timeout = timeout
        self.max_batch = max_batch
        self.clock = clock
        self.stats = QueryStats()
        self._queue: list[_Wait] = []
        self._leading = False
        self._changed = trio.Event()

    def query(self, session: Any, pdu: Pdu) -> int | Awaitable[Any]:
        self.stats.queries += 1
        p = self.partners(session.system_id)
        fmt = p.message_id_format if p is not None else "hex"
        try:
            our_id = parse_id(pdu.message_id, fmt)  # type: ignore[attr-defined]
        except ValueError:
            self.stats.refused += 1
            return _RINVMSGID
        if p is None:  # removed since it bound
            self.stats.refused += 1
            return _RQUERYFAIL
        return self._answer(p, pdu, our_id)

    async def _answer(self, p: Partner, pdu: Pdu, our_id: int) -> Any:
        try:
            rows = await self.rows(str(our_id))
        except Exception as exc:
            self.stats.errors += 1
            log.warning("[%s] query_sm %s: reading the message log failed: %s", p.system_id, our_id, exc)
            return _RSYSERR
        a = answer_query(
            rows,
            p.system_id,
            our_id,
            self.clock(),
            pending_window=self.pending_window,
            max_skew=self.max_skew,
            unknown_after=self.unknown_after,
        )
        if a.status:
            self.stats.refused += 1
            return a.status
        self.stats.answered += 1
        if not rows:
            self.stats.unlogged_enroute += 1
        return pdu.make_response(
            0,
            message_id=format_id(our_id, p.message_id_format),
            final_date=a.final_date,
            message_state=a.message_state,
            error_code=a.error_code,
        )

    async def rows(self, message_id: str) -> list[LogRow]:
        """The log rows of ``message_id``, read together with every other query waiting at the same time."""
        w = _Wait(message_id)
        self._queue.append(w)
        while not w.done:
            if self._leading:
                await self._changed.wait()
            else:
                await self._lead()
        if w.error is not None:
            raise w.error
        return w.rows

    async def _lead(self) -> None:
        self._leading = True
        batch: list[_Wait] = []
        try:
            while self._queue:
                batch = self._queue[: self.max_batch]
                del self._queue[: len(batch)]
                ids = list({w.message_id for w in batch})
                self.stats.batches += 1
                try:
                    with trio.fail_after(self.timeout + 1.0):
                        rows = await self.db.run(_read_rows, ids, int(self.timeout * 1000))
                except Exception as exc:
                    for w in batch:
                        w.error = exc
                        w.done = True
                else:
                    by_id = _by_query(rows, set(ids))
                    for w in batch:
                        w.rows = by_id.get(w.message_id, [])
                        w.done = True
                batch = []
                self._wake()
        finally:
            # cancelled in the middle: what was taken goes back, another waiter leads
            if batch:
                self._queue[:0] = [w for w in batch if not w.done]
            self._leading = False
            self._wake()

    def _wake(self) -> None:
        ev, self._changed = self._changed, trio.Event()
        ev.set()
