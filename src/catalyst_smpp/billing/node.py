"""Billing on a gateway node: the Postgres side of credit leases, the books written with the message log, and
the release of holds whose receipt never came.

* :class:`PgLeaseStore` -- :class:`~catalyst_smpp.billing.credit.LeaseStore` over the books (one transaction
  per swap or return, in a worker thread through :meth:`Database.run`).
* :func:`write_log_and_books` -- what the event writer runs per batch: the message-log rows and the credit
  entries they imply (:func:`credit_entries`), in ONE transaction, so the CDRs and the books cannot disagree.
* :class:`StaleHolds` -- every minute, releases charge-on-delivery holds older than ``billing.receipt_wait``
  (any node may run it: the books take each settlement once).
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from typing import Any, Final

import attrs
import psycopg
import trio

from catalyst_smpp.billing import books
from catalyst_smpp.billing.credit import Grant
from catalyst_smpp.billing.money import Money
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import ConfigSnapshot, MessageEvent
from catalyst_smpp.store.repos import LogRow, MessageLogRepo

__all__ = ["PgLeaseStore", "StaleHolds", "credit_entries", "write_log_and_books"]

log = logging.getLogger(__name__)

_FIELDS: Final = tuple(f.name for f in attrs.fields(MessageEvent))
_MID, _AT, _PARTNER = _FIELDS.index("message_id"), _FIELDS.index("event_at"), _FIELDS.index("partner")
_PRICE, _CURRENCY = _FIELDS.index("price"), _FIELDS.index("currency")
_LEASE, _STATE = _FIELDS.index("lease_id"), _FIELDS.index("charge_state")
_KIND: Final[dict[str, books.Kind]] = {"held": "hold", "captured": "capture", "released": "release"}
_NCOLS: Final = len(_FIELDS)


def _partner_ids(conn: psycopg.Connection[Any], names: Sequence[str]) -> dict[str, int]:
    rows = conn.execute("SELECT system_id, id FROM partners WHERE system_id = ANY(%s)", (list(names),))
    return {name: pid for name, pid in rows.fetchall()}


def credit_entries(conn: psycopg.Connection[Any], rows: Sequence[LogRow]) -> list[books.EntryRow]:
    """The credit entries of message-log rows: a ``hold`` for each row that says ``held``, a ``capture`` /
    ``release`` for each that says ``captured`` / ``released``.  A settlement stands for its hold too
    (:func:`write_log_and_books` applies them with ``settlements_hold``: a message whose ``accepted`` row was
    lost is still held before it is settled), so no hold is sent beside it.  A row of a billed message that
    changes nothing (a receipt of a message charged at submit) gives none.  The books ignore what they
    already have (keyed by message and kind)."""
    billed = [r for r in rows if len(r) == _NCOLS and r[_STATE] is not None and r[_PRICE] is not None]
    if not billed:
        return []
    ids = _partner_ids(conn, sorted({r[_PARTNER] for r in billed}))
    out: list[books.EntryRow] = []
    for r in billed:
        pid = ids.get(r[_PARTNER])
        if pid is None:  # the partner was deleted (its account would have refused that): nothing to book
            log.warning("message %s: partner %r unknown; its charge is not booked", r[_MID], r[_PARTNER])
            continue
        out.append((r[_MID], pid, _KIND.get(r[_STATE], "hold"), r[_PRICE], r[_CURRENCY], r[_LEASE], r[_AT]))
    return out


def write_log_and_books(
    conn: psycopg.Connection[Any], rows: Sequence[LogRow]
) -> tuple[int, books.ApplyStats]:
    """Write message-log rows and apply their credit entries in the caller's transaction; (log rows
    inserted, what the books did)."""
    batch = list(rows)
    n = MessageLogRepo(conn).write_rows(batch)
    entries = credit_entries(conn, batch)
    stats = books.apply_entry_rows(conn, entries, settlements_hold=True) if entries else books.ApplyStats()
    return n, stats


class PgLeaseStore:
    """Credit leases from the books in Postgres (see :mod:`catalyst_smpp.billing.credit`)."""

    def __init__(
        self,
        db: Database,
        partner_ids: Callable[[str], int | None],
        *,
        ttl: float = 30.0,
        lapse_grace: float = 30.0,
        on_state: Callable[[str, books.AccountState], None] | None = None,
    ) -> None:
        """``partner_ids``: a partner's id from its system_id (the configuration snapshot); ``on_state``:
        told the partner's account after each grant (the node's view of its credit, for the metrics)."""
        self.db = db
        self.partner_ids = partner_ids
        self.ttl = ttl
        self.lapse_grace = lapse_grace
        self.on_state = on_state

    async def swap(self, partner: str, node: str, old: int | None, used: int, want: int) -> Grant | None:
        pid = self.partner_ids(partner)
        if pid is None:
            return None

        def _swap(conn: psycopg.Connection[Any]) -> Grant | None:
            row = conn.execute(
                "SELECT currency FROM billing_accounts WHERE partner_id = %s", (pid,)
            ).fetchone()
            if row is None:
                if old is None:
                    log.warning("[%s] has a price plan but no account: refusing its messages", partner)
                return None
            currency = row[0]
            if old is not None:
                books.return_lease(conn, old, Money.from_micros(used, currency))
            if want <= 0:
                return None
            lease = books.grant_lease(
                conn, pid, node, Money.from_micros(want, currency), self.ttl, self.lapse_grace
            )
            if self.on_state is not None:
                state = books.account_state(conn, pid)
                try:
                    self.on_state(partner, state)
                except Exception:  # metrics must never break credit
                    log.debug("account state callback failed", exc_info=True)
            if lease is None:
                return None
            return Grant(lease.id, lease.amount.micros(), currency)

        return await self.db.run(_swap)

    async def give_back(self, lease_id: int, used: int) -> None:
        def _give(conn: psycopg.Connection[Any]) -> None:
            row = conn.execute(
                "SELECT a.currency FROM credit_leases l JOIN billing_accounts a USING (partner_id)"
                " WHERE l.id = %s",
                (lease_id,),
            ).fetchone()
            if row is not None:
                books.return_lease(conn, lease_id, Money.from_micros(used, row[0]))

        await self.db.run(_give)


class StaleHolds:
    """Releases charge-on-delivery holds whose final receipt did not come within ``receipt_wait``."""

    def __init__(
        self,
        db: Database,
        snapshot: Callable[[], ConfigSnapshot | None],
        receipt_wait: float,
        *,
        every: float = 60.0,
    ) -> None:
        self.db = db
        self.snapshot = snapshot
        self.receipt_wait = receipt_wait
        self.every = every
        self.released = 0

    def _partners(self) -> list[int]:
        snap = self.snapshot()
        if snap is None:
            return []
        return [p.id for p in snap.partners if p.price_plan is not None and p.charge_on == "delivery"]

    async def once(self) -> int:
        partners = self._partners()
        if not partners:
            return 0
        older = dt.timedelta(seconds=self.receipt_wait)
        stats = await self.db.run(lambda conn: books.release_stale(conn, partners, older))
        if stats.releases:
            log.info(
                "released %d charge-on-delivery hold(s) with no final receipt after %s", stats.releases, older
            )
        self.released += stats.releases
        return stats.releases

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        task_status.started()
        while True:
            try:
                await self.once()
            except (psycopg.Error, OSError) as exc:
                log.warning("releasing stale holds failed (Postgres: %s); next try in %.0fs", exc, self.every)
            await trio.sleep(self.every)
