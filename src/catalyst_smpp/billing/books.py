"""The books: billing accounts, the append-only ledger, credit entries (hold / capture / release) and leases.

Functions over one synchronous psycopg connection (the gateway calls them through
:meth:`catalyst_smpp.store.Database.run`, the CLI directly); each does its work in one transaction (a
savepoint when the caller already has one open).  Every change to a partner's credit first locks the
partner's ``billing_accounts`` row (``SELECT ... FOR UPDATE``, in partner order when a batch touches several),
then reads what it needs in later statements: so a grant sees every lease committed before it, and two
grants, a grant and a batch of entries, or two batches never act on the same credit at once.

Committed credit (docs/dev/billing.md) is kept without summing history: each lease carries ``held`` and
``settled`` (H and S of its holds) and the account carries ``unleased_open`` (unsettled holds against no
known lease); :func:`apply_credit` moves them with the entries it inserts, and :func:`verify` recomputes them.
With those, per lease: open ``max(A, H) - S`` = (H - S) + max(A - H, 0); returned ``max(U, H) - S`` =
(H - S) + max(U - H, 0); past its ``lapses_at`` (returned or not) H - S.  So committed = **held** (all
unsettled holds) + **leased** (the part of unlapsed open leases not yet held, and of unlapsed returned
leases used beyond what their holds show).

One module (over 600 lines): every function here takes the same account lock and keeps the same counters
(balance, per-lease H and S, unleased holds) consistent with the entries; apart, the rules that keep those
counters exact would be spread over files that must change together.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from decimal import Decimal
from typing import Any, Literal

import attrs
import psycopg

from catalyst_smpp.store.repos import copy_timestamp

from .money import PLACES, CurrencyMismatch, Money, parse_amount, parse_currency

__all__ = [
    "UNCHANGED",
    "AccountExists",
    "AccountState",
    "ApplyStats",
    "BooksError",
    "CreditEntry",
    "Discrepancy",
    "Lease",
    "LedgerEntry",
    "NoAccount",
    "account_state",
    "adjust",
    "apply_credit",
    "grant_lease",
    "history",
    "open_account",
    "release_stale",
    "return_lease",
    "set_account",
    "topup",
    "verify",
]

Conn = psycopg.Connection[Any]
Mode = Literal["prepaid", "credit"]
Kind = Literal["hold", "capture", "release"]
MODES = ("prepaid", "credit")
KINDS = ("hold", "capture", "release")
_SCALE = 10**PLACES


class BooksError(ValueError):
    """A change the books refuse (the message says why)."""


class NoAccount(BooksError, LookupError):
    """The partner has no billing account."""


class AccountExists(BooksError):
    """The partner already has a billing account."""


@attrs.frozen
class AccountState:
    """A partner's account now.  ``held``: unsettled holds; ``leased``: leased credit not (yet) held;
    ``committed`` = held + leased; ``available`` = balance + credit limit (credit mode) - committed."""

    partner: int
    currency: str
    mode: Mode
    credit_limit: Money
    low_balance: Money | None
    balance: Money
    held: Money
    leased: Money

    @property
    def committed(self) -> Money:
        return self.held + self.leased

    @property
    def effective_limit(self) -> Money:
        return self.credit_limit if self.mode == "credit" else Money.zero(self.currency)

    @property
    def available(self) -> Money:
        return self.balance + self.effective_limit - self.committed


@attrs.frozen
class LedgerEntry:
    id: int
    partner: int
    at: dt.datetime
    kind: str
    amount: Money
    balance_after: Money
    message_id: str | None
    reason: str | None
    actor: str | None


@attrs.frozen
class Lease:
    id: int
    partner: int
    node: str
    amount: Money
    granted_at: dt.datetime
    expires_at: dt.datetime
    lapses_at: dt.datetime


@attrs.frozen
class CreditEntry:
    """One credit entry as the event writer produces it; ``amount`` in micro-units."""

    message_id: str
    partner: int
    kind: Kind = attrs.field(validator=attrs.validators.in_(KINDS))
    amount: int = attrs.field(validator=attrs.validators.ge(0))
    currency: str
    lease_id: int | None
    at: dt.datetime


@attrs.frozen
class ApplyStats:
    """What :func:`apply_credit` did with a batch.  ``duplicates``: already recorded; ``conflicts``: a
    settlement of a message the other kind already settled; ``orphans``: a settlement of a message with no
    hold; ``unbooked``: no account for the partner, or not in its currency; ``low_balance``: partners whose
    balance went below their ``low_balance`` in this batch."""

    holds: int = 0
    captures: int = 0
    releases: int = 0
    duplicates: int = 0
    conflicts: int = 0
    orphans: int = 0
    unbooked: int = 0
    low_balance: tuple[int, ...] = ()


@attrs.frozen
class Discrepancy:
    """Something :func:`verify` found wrong; ``ledger_id`` when one ledger row is the culprit."""

    partner: int
    what: str
    expected: Decimal
    found: Decimal
    ledger_id: int | None = None


# --------------------------------------------------------------------------- accounts


def _lock(conn: Conn, partner: int) -> tuple[str, Decimal]:
    """Lock the partner's account row; its currency and balance."""
    row = conn.execute(
        "SELECT currency, balance FROM billing_accounts WHERE partner_id = %s FOR UPDATE", (partner,)
    ).fetchone()
    if row is None:
        raise NoAccount(f"partner {partner} has no billing account")
    return str(row[0]), Decimal(row[1])


def _nonneg(value: Decimal, what: str) -> Decimal:
    if value < 0:
        raise BooksError(f"{what} must not be negative ({value})")
    return value


def open_account(
    conn: Conn,
    partner: int,
    currency: str,
    mode: Mode = "prepaid",
    credit_limit: Decimal = Decimal(0),
    low_balance: Decimal | None = None,
) -> AccountState:
    """Open the partner's account (balance 0).  AccountExists when it has one; NoAccount when there is no
    such partner."""
    if mode not in MODES:
        raise BooksError(f"mode must be prepaid or credit, not {mode!r}")
    limit = _nonneg(parse_amount(credit_limit), "the credit limit")
    low = None if low_balance is None else parse_amount(low_balance)
    with conn.transaction():
        try:
            with conn.transaction():
                conn.execute(
                    "INSERT INTO billing_accounts (partner_id, currency, mode, credit_limit, low_balance)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    (partner, parse_currency(currency), mode, limit, low),
                )
        except psycopg.errors.UniqueViolation:
            raise AccountExists(f"partner {partner} already has a billing account") from None
        except psycopg.errors.ForeignKeyViolation:
            raise NoAccount(f"no partner {partner}") from None
        return account_state(conn, partner)


UNCHANGED: Any = object()  # set_account: leave this setting as it is


def set_account(
    conn: Conn,
    partner: int,
    *,
    mode: Mode | None = None,
    credit_limit: Decimal | None = None,
    low_balance: Decimal | None = UNCHANGED,
) -> AccountState:
    """Change the mode, credit limit or low-balance threshold (``low_balance=None`` clears it).  The
    currency of an account is fixed: its ledger is in it."""
    sets: list[str] = []
    args: list[Any] = []
    if mode is not None:
        if mode not in MODES:
            raise BooksError(f"mode must be prepaid or credit, not {mode!r}")
        sets.append("mode = %s")
        args.append(mode)
    if credit_limit is not None:
        sets.append("credit_limit = %s")
        args.append(_nonneg(parse_amount(credit_limit), "the credit limit"))
    if low_balance is not UNCHANGED:
        sets.append("low_balance = %s")
        args.append(None if low_balance is None else parse_amount(low_balance))
    with conn.transaction():
        _lock(conn, partner)
        if sets:
            conn.execute(
                f"UPDATE billing_accounts SET {', '.join(sets)}, updated_at = now() WHERE partner_id = %s",
                (*args, partner),
            )
        return account_state(conn, partner)


def _append(conn: Conn, partner: int, kind: str, amount: Money, reason: str, actor: str) -> LedgerEntry:
    if not reason.strip():
        raise BooksError("a reason is required")
    if not actor.strip():
        raise BooksError("an actor is required")
    with conn.transaction():
        currency, balance = _lock(conn, partner)
        if amount.currency != currency:
            raise BooksError(f"the account of partner {partner} is in {currency}, not {amount.currency}")
        after = balance + amount.amount
        row = conn.execute(
            "INSERT INTO ledger (partner_id, kind, amount, currency, balance_after, reason, actor)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s) RETURNING id, at",
            (partner, kind, amount.amount, currency, after, reason, actor),
        ).fetchone()
        assert row is not None
        conn.execute(
            "UPDATE billing_accounts SET balance = %s, updated_at = now() WHERE partner_id = %s",
            (after, partner),
        )
    return LedgerEntry(row[0], partner, row[1], kind, amount, Money(after, currency), None, reason, actor)


def topup(conn: Conn, partner: int, amount: Money, reason: str, actor: str) -> LedgerEntry:
    """Credit the account (amount > 0)."""
    if amount.amount <= 0:
        raise BooksError(f"a top-up must be positive ({amount})")
    return _append(conn, partner, "topup", amount, reason, actor)


def adjust(conn: Conn, partner: int, amount: Money, reason: str, actor: str) -> LedgerEntry:
    """Correct the balance by ``amount`` (either sign, not zero)."""
    if amount.amount == 0:
        raise BooksError("an adjustment of zero changes nothing")
    return _append(conn, partner, "adjustment", amount, reason, actor)


# The leases that still commit credit: the predicate of the index credit_leases_live.
_LIVE = "l.partner_id = a.partner_id AND (l.state = 'open' OR l.held > l.settled OR l.used > l.settled)"
_STATE = f"""
SELECT a.currency, a.mode, a.credit_limit, a.low_balance, a.balance,
       a.unleased_open + coalesce(sum(l.held - l.settled), 0),
       coalesce(sum(CASE WHEN l.lapses_at < now() THEN 0
                         WHEN l.state = 'returned' THEN greatest(l.used - l.held, 0)
                         ELSE greatest(l.amount - l.held, 0) END), 0)
FROM billing_accounts a LEFT JOIN credit_leases l ON {_LIVE}
WHERE a.partner_id = %s
GROUP BY a.partner_id
"""


def account_state(conn: Conn, partner: int) -> AccountState:
    """Balance, limit, held, leased and available credit of the partner's account; NoAccount if none."""
    row = conn.execute(_STATE, (partner,)).fetchone()
    if row is None:
        raise NoAccount(f"partner {partner} has no billing account")
    cur, mode, limit, low, balance, held, leased = row
    cur = str(cur)
    return AccountState(
        partner,
        cur,
        mode,
        Money(limit, cur),
        None if low is None else Money(low, cur),
        Money(balance, cur),
        Money(held, cur),
        Money(leased, cur),
    )


def history(
    conn: Conn,
    partner: int,
    since: dt.datetime | None = None,
    until: dt.datetime | None = None,
    limit: int = 100,
) -> list[LedgerEntry]:
    """The partner's ledger entries with ``since <= at < until``: the newest ``limit``, oldest first."""
    rows = conn.execute(
        "SELECT * FROM (SELECT id, at, kind, amount, currency, balance_after, message_id, reason, actor"
        " FROM ledger WHERE partner_id = %s AND (%s::timestamptz IS NULL OR at >= %s)"
        " AND (%s::timestamptz IS NULL OR at < %s) ORDER BY id DESC LIMIT %s) h ORDER BY id",
        (partner, since, since, until, until, limit),
    ).fetchall()
    return [
        LedgerEntry(i, partner, at, k, Money(a, c), Money(b, c), m, r, who)
        for i, at, k, a, c, b, m, r, who in rows
    ]


# --------------------------------------------------------------------------- leases


def grant_lease(
    conn: Conn, partner: int, node: str, want: Money, ttl_s: float, lapse_grace_s: float
) -> Lease | None:
    """Lease ``min(want, available)`` to ``node`` for ``ttl_s`` seconds; None when nothing is available."""
    if want.amount <= 0:
        raise BooksError(f"a lease must be for a positive amount ({want})")
    if ttl_s <= 0 or lapse_grace_s < 0:
        raise BooksError("a lease needs ttl_s > 0 and lapse_grace_s >= 0")
    with conn.transaction():
        currency, _ = _lock(conn, partner)  # then read the state in a new statement: it sees every grant
        if want.currency != currency:
            raise CurrencyMismatch(f"the account of partner {partner} is in {currency}, not {want.currency}")
        state = account_state(conn, partner)
        available = state.available
        if available.amount <= 0:
            return None
        amount = min(want, available)
        row = conn.execute(
            "INSERT INTO credit_leases (partner_id, node, amount, expires_at, lapses_at)"
            " VALUES (%s, %s, %s, now() + make_interval(secs => %s),"
            " now() + make_interval(secs => %s)) RETURNING id, granted_at, expires_at, lapses_at",
            (partner, node, amount.amount, ttl_s, ttl_s + lapse_grace_s),
        ).fetchone()
        assert row is not None
    return Lease(row[0], partner, node, amount, row[1], row[2], row[3])


def return_lease(conn: Conn, lease_id: int, used: Money) -> bool:
    """Record what the node used of the lease and return the rest; False when it was already returned."""
    if used.amount < 0:
        raise BooksError(f"used must not be negative ({used})")
    with conn.transaction():
        row = conn.execute("SELECT partner_id FROM credit_leases WHERE id = %s", (lease_id,)).fetchone()
        if row is None:
            raise BooksError(f"no lease {lease_id}")
        currency, _ = _lock(conn, row[0])
        if used.currency != currency:
            raise BooksError(f"lease {lease_id} is in {currency}, not {used.currency}")
        cur = conn.execute(
            "UPDATE credit_leases SET state = 'returned', used = %s, closed_at = now()"
            " WHERE id = %s AND state = 'open'",
            (used.amount, lease_id),
        )
        return cur.rowcount == 1


# --------------------------------------------------------------------------- credit entries

_TEMP = """
CREATE TEMP TABLE IF NOT EXISTS books_credit_in (
    seq int NOT NULL, message_id text NOT NULL, partner bigint NOT NULL, kind text NOT NULL,
    micros bigint NOT NULL, currency text NOT NULL, lease_id bigint, at timestamptz NOT NULL
) ON COMMIT DELETE ROWS
"""

# The batch is applied in two statements whose RETURNING gives the counters' deltas (per partner and lease),
# so nothing reads the batch back (no UPDATE of the temporary table, no join of it with credit_entries
# beyond one primary-key probe per settlement).  Rows of a partner with no account in that currency are
# left out.  ON CONFLICT covers both the primary key (a duplicate) and credit_entries_one_settlement (the
# other settlement came first, in an earlier batch or earlier in this one: rows go in (at, seq) order).

# holds: (partner, lease, holds inserted, their sum)
_HOLDS = """
WITH ins AS (
    INSERT INTO credit_entries (message_id, kind, partner_id, amount, currency, lease_id, at)
    SELECT t.message_id, 'hold', t.partner, t.micros::numeric / 1000000, t.currency, t.lease_id, t.at
    FROM books_credit_in t JOIN billing_accounts a ON a.partner_id = t.partner AND a.currency = t.currency
    WHERE t.kind = 'hold'
    ORDER BY t.at, t.seq
    ON CONFLICT DO NOTHING
    RETURNING partner_id, lease_id, amount
)
SELECT partner_id, lease_id, count(*), sum(amount) FROM ins GROUP BY partner_id, lease_id
"""

# settlements of messages that (now) have a hold of the same partner (its lease and amount are what the
# settlement settles) and, when the caller says a settlement brings its own hold (``implied``), of messages
# with no hold at all: their hold (the settlement's amount, lease and time) goes in with them.  Per message
# the first settlement of the batch (by at, seq), and only if the message has none yet: so every row of
# ``s`` is inserted (the account rows are locked: no other writer books these partners meanwhile) and
# nothing joins the inserted rows back (a join a kept plan could make a nested loop over the batch).
# ``checked`` makes sure of it: a difference fails the batch (psycopg.InternalError; the event writer tries
# it again).  One ledger charge per capture, balance_after the running sum from the locked balance.
# Returns (kind, partner, the hold's lease, inserted, sum of the holds, sum of the settlements, missing),
# kind ``hold`` for the holds settlements brought.  A message's entries are found by a per-row index scan
# (a LATERAL aggregate is never flattened into a join).
_SETTLEMENTS = """
WITH s AS (
    SELECT DISTINCT ON (t.message_id)
           t.seq, t.message_id, t.kind, t.partner, t.micros, t.currency, t.lease_id, t.at, a.balance,
           h.partner_id IS NULL AS unheld,
           CASE WHEN h.partner_id IS NULL THEN t.lease_id ELSE h.lease_id END AS hold_lease,
           coalesce(h.amount, t.micros::numeric / 1000000) AS hold_amount
    FROM books_credit_in t
    JOIN billing_accounts a ON a.partner_id = t.partner AND a.currency = t.currency
    CROSS JOIN LATERAL (
        SELECT max(e.partner_id) FILTER (WHERE e.kind = 'hold') AS partner_id,
               max(e.lease_id) FILTER (WHERE e.kind = 'hold') AS lease_id,
               max(e.amount) FILTER (WHERE e.kind = 'hold') AS amount,
               coalesce(bool_or(e.kind <> 'hold'), false) AS settled
        FROM credit_entries e WHERE e.message_id = t.message_id
    ) h
    WHERE t.kind <> 'hold' AND NOT h.settled
      AND (h.partner_id = t.partner OR (h.partner_id IS NULL AND {implied}))
    ORDER BY t.message_id, t.at, t.seq
), held AS (
    INSERT INTO credit_entries (message_id, kind, partner_id, amount, currency, lease_id, at)
    SELECT message_id, 'hold', partner, hold_amount, currency, hold_lease, at FROM s WHERE unheld
    ON CONFLICT DO NOTHING
    RETURNING partner_id, lease_id, amount
), ins AS (
    INSERT INTO credit_entries (message_id, kind, partner_id, amount, currency, lease_id, at)
    SELECT message_id, kind, partner, micros::numeric / 1000000, currency, lease_id, at FROM s
    ORDER BY at, seq
    ON CONFLICT DO NOTHING
    RETURNING 1
), charges AS (
    INSERT INTO ledger (partner_id, at, kind, amount, currency, balance_after, message_id)
    SELECT partner, at, 'charge', -(micros::numeric / 1000000), currency,
           balance - sum(micros::numeric / 1000000) OVER (PARTITION BY partner ORDER BY seq), message_id
    FROM s WHERE kind = 'capture'
    ORDER BY partner, seq
), checked AS (
    SELECT (SELECT count(*) FROM ins) + (SELECT count(*) FROM held)
           - (SELECT count(*) FROM s) - (SELECT count(*) FROM s WHERE unheld) AS missing
)
SELECT 'hold', partner_id, lease_id, count(*), sum(amount), 0, (SELECT missing FROM checked)
FROM held GROUP BY partner_id, lease_id
UNION ALL
SELECT kind, partner, hold_lease, count(*), sum(hold_amount), sum(micros::numeric / 1000000),
       (SELECT missing FROM checked)
FROM s GROUP BY partner, hold_lease, kind
"""

# the flag as a literal (no parameter: a statement with none is planned alike whatever its values)
_SETTLEMENTS_IMPLIED = _SETTLEMENTS.format(implied="true")
_SETTLEMENTS_ONLY = _SETTLEMENTS.format(implied="false")

# H and S per lease (the leases that exist and are the partner's: the others' holds count as unleased)
_LEASES = """
UPDATE credit_leases l SET held = l.held + d.dh, settled = l.settled + d.ds
FROM unnest(%s::bigint[], %s::bigint[], %s::numeric[], %s::numeric[]) AS d(partner, lease, dh, ds)
WHERE l.id = d.lease AND l.partner_id = d.partner
RETURNING l.id
"""

_ACCOUNTS = """
UPDATE billing_accounts a
SET balance = a.balance - d.charge, unleased_open = a.unleased_open + d.unleased, updated_at = now()
FROM unnest(%s::bigint[], %s::numeric[], %s::numeric[]) AS d(partner, charge, unleased)
WHERE a.partner_id = d.partner
RETURNING a.partner_id, a.balance
"""

# Only when some settlements were neither applied nor unbooked: why (rows with an account in their
# currency).  A row whose kind is recorded for its message was applied or is a duplicate; else one whose
# message has a hold conflicts with the settlement that came first; else it has no hold (an orphan).
_WHY = """
SELECT count(*) FILTER (WHERE s.x), count(*) FILTER (WHERE s.x IS NULL AND h.x),
       count(*) FILTER (WHERE h.x IS NULL)
FROM books_credit_in t
JOIN billing_accounts a ON a.partner_id = t.partner AND a.currency = t.currency
LEFT JOIN LATERAL (SELECT true AS x FROM credit_entries e
                   WHERE e.message_id = t.message_id AND e.kind = t.kind LIMIT 1) s ON true
LEFT JOIN LATERAL (SELECT true AS x FROM credit_entries e
                   WHERE e.message_id = t.message_id AND e.kind = 'hold' LIMIT 1) h ON true
WHERE t.kind <> 'hold'
"""


def _copy_rows(entries: Iterable[EntryRow]) -> list[EntryRow]:
    """The batch for COPY, one entry per (message_id, kind): the first of duplicates within the batch (its
    place in the list is its ``seq``)."""
    seen: dict[tuple[str, str], EntryRow] = {}
    for e in entries:
        key = (e[0], e[2])
        if key not in seen:
            seen[key] = e
    return list(seen.values())


EntryRow = tuple[str, int, str, int, str, "int | None", Any]
"""A credit entry as the event writer makes it, without a :class:`CreditEntry` per entry: ``(message_id,
partner id, kind, micro-units, currency, lease id or None, at)`` with ``at`` unix seconds or a datetime."""


def apply_credit(conn: Conn, entries: Iterable[CreditEntry]) -> ApplyStats:
    """Record a batch of credit entries, set-based and idempotent (see the module docstring)."""
    batch = list(entries)
    return apply_entry_rows(
        conn, [(e.message_id, e.partner, e.kind, e.amount, e.currency, e.lease_id, e.at) for e in batch]
    )


def _copy_text(rows: list[EntryRow]) -> str | None:
    """The COPY text of the batch (``seq`` first: the place in ``rows``), or None when a value is not plain
    text (then the rows go through psycopg's own row writer)."""
    out = []
    nulls = 0
    times: dict[Any, str] = {}  # the entries of a log row, and the rows of a producer's batch, share a time
    for seq, (mid, partner, kind, micros, currency, lease, at) in enumerate(rows):
        if lease is None:
            nulls += 1
        t = times.get(at)
        if t is None:
            t = times[at] = copy_timestamp(at)
        out.append(
            f"{seq}\t{mid}\t{partner}\t{kind}\t{micros}\t{currency}\t{_NULL if lease is None else lease}\t{t}"
        )
    data = "\n".join(out) + "\n"
    n = len(rows)
    if data.count("\t") != 7 * n or data.count("\n") != n or data.count("\\") != nulls or "\r" in data:
        return None
    return data


def _row_values(seq: int, r: EntryRow) -> tuple[Any, ...]:
    """A batch row for psycopg's row writer: ``at`` as a datetime."""
    at = r[-1]
    if not isinstance(at, dt.datetime):
        at = dt.datetime.fromtimestamp(float(at), dt.UTC)
    return (seq, *r[:-1], at)


_NULL = "\\N"


def apply_entry_rows(
    conn: Conn, entries: Sequence[EntryRow], *, settlements_hold: bool = False
) -> ApplyStats:
    """:func:`apply_credit` for entries as :data:`EntryRow` tuples (the event writer's form: trusted, so not
    validated field by field; the database's checks still apply).

    ``settlements_hold``: a settlement of a message that has no hold (in the books or in the batch) brings
    its own, of the same amount, lease and time, instead of being an orphan (the event writer: a row that
    settles a message also holds it, for when its ``held`` row was lost; so it need not send that hold
    beside every settlement).  The holds it brings count as holds, not as duplicates when they exist."""
    rows = _copy_rows(entries)
    if not rows:
        return ApplyStats()
    with conn.transaction():
        # the table, empty (a caller's earlier batch in the same transaction), in one round trip.  DELETE,
        # not TRUNCATE: the table is empty at the start of every transaction (ON COMMIT DELETE ROWS), and a
        # TRUNCATE gives it a new file per batch (a pg_class update) and makes every statement over it be
        # planned again (the statements below are safe to keep planned: no join of the batch with itself)
        conn.execute(_TEMP + "; DELETE FROM books_credit_in")
        data = _copy_text(rows)
        with conn.cursor().copy(
            "COPY books_credit_in (seq, message_id, partner, kind, micros, currency, lease_id, at) FROM STDIN"
        ) as copy:
            if data is not None:
                copy.write(data)
            else:
                for seq, r in enumerate(rows):
                    copy.write_row(_row_values(seq, r))
        partners = sorted({r[1] for r in rows})
        accounts = {
            p: (str(cur), Decimal(b), None if low is None else Decimal(low))
            for p, cur, b, low in conn.execute(
                "SELECT partner_id, currency, balance, low_balance FROM billing_accounts"
                " WHERE partner_id = ANY(%s) ORDER BY partner_id FOR UPDATE",
                (partners,),
            ).fetchall()
        }
        sent = {"hold": 0, "settle": 0}
        unbooked = 0
        for r in rows:
            acc = accounts.get(r[1])
            if acc is None or acc[0] != r[4]:
                unbooked += 1
            else:
                sent["hold" if r[2] == "hold" else "settle"] += 1
        counts: dict[str, int] = dict.fromkeys(("hold", "capture", "release"), 0)
        explicit = 0  # holds of the batch inserted (not those settlements brought)
        # per (partner, lease): [held, settled]; per partner: charged
        per_lease: dict[tuple[int, int | None], list[Decimal]] = {}
        charged: dict[int, Decimal] = {}
        for p, lease, n, total in conn.execute(_HOLDS).fetchall():
            counts["hold"] += n
            explicit += n
            per_lease.setdefault((p, lease), [Decimal(0), Decimal(0)])[0] += total
        for kind, p, lease, n, held, amount, missing in conn.execute(
            _SETTLEMENTS_IMPLIED if settlements_hold else _SETTLEMENTS_ONLY
        ).fetchall():
            if missing:  # a row did not go in after all: the batch is not booked (the writer tries it again)
                raise psycopg.InternalError(
                    f"books: {missing} credit entries of a batch conflicted unexpectedly"
                )
            counts[kind] += n
            per_lease.setdefault((p, lease), [Decimal(0), Decimal(0)])[0 if kind == "hold" else 1] += held
            if kind == "capture":
                charged[p] = charged.get(p, Decimal(0)) + amount
        low: list[int] = []
        if per_lease:
            keys = [k for k in per_lease if k[1] is not None]
            found = {
                r[0]
                for r in conn.execute(
                    _LEASES,
                    (
                        [k[0] for k in keys],
                        [k[1] for k in keys],
                        [per_lease[k][0] for k in keys],
                        [per_lease[k][1] for k in keys],
                    ),
                ).fetchall()
            }
            unleased: dict[int, Decimal] = {}
            for (p, lease), (dh, ds) in per_lease.items():
                unleased[p] = unleased.get(p, Decimal(0)) + (0 if lease in found else dh - ds)
            ps = sorted(unleased)
            for p, balance in conn.execute(
                _ACCOUNTS, (ps, [charged.get(p, Decimal(0)) for p in ps], [unleased[p] for p in ps])
            ).fetchall():
                _cur, was, threshold = accounts[p]
                if threshold is not None and was >= threshold > balance:
                    low.append(p)
        settled = counts["capture"] + counts["release"]
        duplicates = sent["hold"] - explicit + len(entries) - len(rows)
        conflicts = orphans = 0
        if sent["settle"] > settled:  # not all settlements went in: why (a duplicate, a conflict, no hold)
            row = conn.execute(_WHY, prepare=False).fetchone()
            assert row is not None
            same, conflicts, orphans = row
            duplicates += same - settled
    return ApplyStats(
        holds=counts["hold"],
        captures=counts["capture"],
        releases=counts["release"],
        duplicates=duplicates,
        conflicts=conflicts,
        orphans=orphans,
        unbooked=unbooked,
        low_balance=tuple(sorted(low)),
    )


def release_stale(
    conn: Conn, partners: Sequence[int], older_than: dt.timedelta, limit: int = 10_000
) -> ApplyStats:
    """Release holds of ``partners`` (charge-on-delivery ones: their receipt never came) taken more than
    ``older_than`` ago and neither captured nor released; at most ``limit`` per call."""
    rows = conn.execute(
        "SELECT h.message_id, h.partner_id, h.amount, h.currency, h.lease_id FROM credit_entries h"
        " WHERE h.kind = 'hold' AND h.partner_id = ANY(%s) AND h.at < now() - %s"
        " AND NOT EXISTS (SELECT 1 FROM credit_entries s WHERE s.message_id = h.message_id"
        " AND s.kind <> 'hold') ORDER BY h.at LIMIT %s",
        (list(partners), older_than, limit),
    ).fetchall()
    now = dt.datetime.now(dt.UTC)
    return apply_credit(
        conn,
        (
            CreditEntry(m, p, "release", int(Decimal(a) * _SCALE), str(c), lease, now)
            for m, p, a, c, lease in rows
        ),
    )


# --------------------------------------------------------------------------- verification

_VERIFY = """
SELECT a.partner_id, a.balance,
       coalesce((SELECT sum(amount) FROM ledger g WHERE g.partner_id = a.partner_id), 0)
FROM billing_accounts a ORDER BY a.partner_id
"""
_RUNNING = """
SELECT partner_id, id, balance_after, running FROM (
    SELECT partner_id, id, balance_after,
           sum(amount) OVER (PARTITION BY partner_id ORDER BY id) AS running
    FROM ledger) r
WHERE balance_after <> running ORDER BY partner_id, id
"""
_COUNTERS = """
WITH holds AS (
    SELECT h.partner_id, h.lease_id, h.amount,
           EXISTS (SELECT 1 FROM credit_entries s
                   WHERE s.message_id = h.message_id AND s.kind <> 'hold') AS done
    FROM credit_entries h WHERE h.kind = 'hold'
)
SELECT 'lease ' || l.id || ' held', l.partner_id, coalesce(sum(h.amount), 0), l.held
FROM credit_leases l LEFT JOIN holds h ON h.lease_id = l.id AND h.partner_id = l.partner_id
GROUP BY l.id HAVING coalesce(sum(h.amount), 0) <> l.held
UNION ALL
SELECT 'lease ' || l.id || ' settled', l.partner_id,
       coalesce(sum(h.amount) FILTER (WHERE h.done), 0), l.settled
FROM credit_leases l LEFT JOIN holds h ON h.lease_id = l.id AND h.partner_id = l.partner_id
GROUP BY l.id HAVING coalesce(sum(h.amount) FILTER (WHERE h.done), 0) <> l.settled
UNION ALL
SELECT 'unleased holds', a.partner_id, coalesce(sum(h.amount) FILTER (WHERE NOT h.done), 0), a.unleased_open
FROM billing_accounts a LEFT JOIN holds h ON h.partner_id = a.partner_id AND NOT EXISTS (
    SELECT 1 FROM credit_leases l WHERE l.id = h.lease_id AND l.partner_id = h.partner_id)
GROUP BY a.partner_id HAVING coalesce(sum(h.amount) FILTER (WHERE NOT h.done), 0) <> a.unleased_open
"""


def verify(conn: Conn) -> list[Discrepancy]:
    """Every account whose balance is not the sum of its ledger, every ledger row whose balance_after is not
    the running sum (in id order), and every held/settled counter its credit entries do not bear out."""
    out: list[Discrepancy] = []
    outside = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if outside:  # one consistent view of all three (inside a caller's transaction: its view)
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        for p, balance, total in conn.execute(_VERIFY).fetchall():
            if balance != total:
                out.append(Discrepancy(p, "balance is not the sum of the ledger", total, balance))
        for p, i, after, running in conn.execute(_RUNNING).fetchall():
            out.append(Discrepancy(p, "balance_after is not the running sum", running, after, i))
        for what, p, expected, found in conn.execute(_COUNTERS).fetchall():
            out.append(Discrepancy(p, f"{what} is not what its credit entries sum to", expected, found))
    return out
