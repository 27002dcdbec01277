"""The books against a real Postgres: ledger and balances, credit entries, committed credit and leases."""

from __future__ import annotations

import datetime as dt
import threading
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalyst_smpp.billing import books
from catalyst_smpp.billing.books import CreditEntry
from catalyst_smpp.billing.money import CurrencyMismatch, Money
from catalyst_smpp.store import Database, connect_sync

Conn = psycopg.Connection[Any]
NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def eur(x: str | int) -> Money:
    return Money(Decimal(x), "EUR")


def account(conn: Conn, new_partner: Callable[[], int], balance: str = "0", **kw: Any) -> int:
    p = new_partner()
    books.open_account(conn, p, "EUR", **kw)
    if Decimal(balance):
        books.topup(conn, p, eur(balance), "initial", "test")
    return p


def entry(
    msg: str, p: int, kind: Any, micros: int, lease: int | None = None, at: dt.datetime = NOW
) -> CreditEntry:
    return CreditEntry(msg, p, kind, micros, "EUR", lease, at)


def snapshot(conn: Conn, p: int) -> tuple[Any, ...]:
    return (
        books.account_state(conn, p),
        conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM ledger WHERE partner_id = %s", (p,)
        ).fetchone(),
        conn.execute("SELECT count(*) FROM credit_entries WHERE partner_id = %s", (p,)).fetchone(),
        conn.execute(
            "SELECT held, settled FROM credit_leases WHERE partner_id = %s ORDER BY id", (p,)
        ).fetchall(),
    )


def test_ledger_changes_keep_balance_the_sum(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "10")
    e = books.adjust(books_conn, p, eur("-2.5"), "refund", "ops")
    assert e.balance_after == eur("7.5") and e.kind == "adjustment"
    assert books.account_state(books_conn, p).balance == eur("7.5")
    assert [x.kind for x in books.history(books_conn, p)] == ["topup", "adjustment"]
    assert [x.kind for x in books.history(books_conn, p, limit=1)] == ["adjustment"]
    with pytest.raises(books.BooksError, match="reason"):
        books.topup(books_conn, p, eur(1), " ", "ops")
    with pytest.raises(books.BooksError, match="actor"):
        books.adjust(books_conn, p, eur(1), "why", "")
    with pytest.raises(books.BooksError, match="positive"):
        books.topup(books_conn, p, eur(-1), "why", "ops")
    with pytest.raises(books.BooksError, match="USD"):
        books.topup(books_conn, p, Money(1, "USD"), "why", "ops")
    with pytest.raises(books.AccountExists):
        books.open_account(books_conn, p, "EUR")
    with pytest.raises(books.NoAccount):
        books.account_state(books_conn, new_partner())
    assert books.account_state(books_conn, p).balance == eur("7.5")


def test_apply_credit_twice_changes_nothing(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "100")
    lease = books.grant_lease(books_conn, p, "n1", eur(10), 60, 10)
    assert lease is not None
    batch = [entry(f"m{i}", p, "hold", 4500, lease.id) for i in range(20)]
    batch += [entry(f"m{i}", p, "capture", 4500, lease.id) for i in range(10)]
    batch += [entry(f"m{i}", p, "release", 4500, lease.id) for i in range(10, 15)]
    first = books.apply_credit(books_conn, batch)
    assert (first.holds, first.captures, first.releases, first.duplicates) == (20, 10, 5, 0)
    before = snapshot(books_conn, p)
    assert before[0].balance == eur("99.955")
    again = books.apply_credit(books_conn, batch)
    assert again == books.ApplyStats(duplicates=35)
    assert snapshot(books_conn, p) == before
    assert books.verify(books_conn) == []


def test_first_settlement_wins(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "10")
    later = NOW + dt.timedelta(seconds=1)
    books.apply_credit(books_conn, [entry("a", p, "hold", 1_000_000), entry("a", p, "capture", 1_000_000)])
    stats = books.apply_credit(books_conn, [entry("a", p, "release", 1_000_000)])
    assert stats == books.ApplyStats(conflicts=1)
    books.apply_credit(books_conn, [entry("b", p, "hold", 1_000_000), entry("b", p, "release", 1_000_000)])
    stats = books.apply_credit(books_conn, [entry("b", p, "capture", 1_000_000)])
    assert stats == books.ApplyStats(conflicts=1)
    # both in one batch: the earlier one settles
    stats = books.apply_credit(
        books_conn,
        [
            entry("c", p, "capture", 1_000_000, at=later),
            entry("c", p, "hold", 1_000_000),
            entry("c", p, "release", 1_000_000),
        ],
    )
    assert (stats.holds, stats.releases, stats.captures, stats.conflicts) == (1, 1, 0, 1)
    # a settlement of a message with no hold inserts nothing
    assert books.apply_credit(books_conn, [entry("d", p, "capture", 1)]) == books.ApplyStats(orphans=1)
    charges = books_conn.execute(
        "SELECT message_id FROM ledger WHERE partner_id = %s AND kind = 'charge'", (p,)
    ).fetchall()
    assert charges == [("a",)]
    state = books.account_state(books_conn, p)
    assert state.balance == eur(9) and state.held == eur(0)
    # another partner's entries, or another currency: not booked
    stats = books.apply_credit(books_conn, [CreditEntry("e", p, "hold", 1, "USD", None, NOW)])
    assert stats == books.ApplyStats(unbooked=1)


def test_a_settlement_brings_its_hold_when_asked(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    """``settlements_hold`` (the event writer): a settlement of a message with no hold holds it first, with
    its own amount, lease and time; one whose hold is booked, or in the batch, adds no hold; the first of two
    settlements in a batch settles; another partner's hold is not taken over."""
    p = account(books_conn, new_partner, "10")
    q = account(books_conn, new_partner, "10")
    lease = books.grant_lease(books_conn, p, "n1", eur(5), 60, 10)
    assert lease is not None
    at = 1_800_000_000.5

    def row(m: str, kind: str, micros: int = 1_000_000, who: int = p) -> books.EntryRow:
        return (f"{m}-{p}", who, kind, micros, "EUR", lease.id if who == p else None, at)

    books.apply_entry_rows(books_conn, [row("booked", "hold")])
    batch = [
        row("lost", "capture"),  # its held row was lost: held and captured here
        row("booked", "capture"),  # held in an earlier batch
        row("here", "hold"),
        row("here", "release"),  # held in this batch
        row("both", "capture", 2_000_000),
        row("both", "release", 2_000_000),  # the capture came first (seq): a conflict
        row("theirs", "hold", who=q),
    ]
    assert books.apply_entry_rows(books_conn, batch[-1:]).holds == 1
    batch[-1] = row("theirs", "capture")  # q's message: p's settlement of it is refused
    stats = books.apply_entry_rows(books_conn, batch, settlements_hold=True)
    assert (stats.holds, stats.captures, stats.releases) == (3, 3, 1)
    assert (stats.duplicates, stats.conflicts, stats.orphans, stats.unbooked) == (0, 2, 0, 0)
    kinds = books_conn.execute(
        "SELECT message_id, kind, amount, lease_id, at FROM credit_entries WHERE partner_id = %s"
        " ORDER BY message_id, kind",
        (p,),
    ).fetchall()
    when = dt.datetime.fromtimestamp(at, dt.UTC)
    assert [(m.split("-")[0], k, a) for m, k, a, _l, _at in kinds] == [
        ("booked", "capture", Decimal(1)),
        ("booked", "hold", Decimal(1)),
        ("both", "capture", Decimal(2)),
        ("both", "hold", Decimal(2)),
        ("here", "hold", Decimal(1)),
        ("here", "release", Decimal(1)),
        ("lost", "capture", Decimal(1)),
        ("lost", "hold", Decimal(1)),
    ]
    assert {(lease_id, t) for _m, _k, _a, lease_id, t in kinds} == {(lease.id, when)}
    state = books.account_state(books_conn, p)
    assert (state.balance, state.held) == (eur(6), eur(0))
    assert books.account_state(books_conn, q).held == eur(1)
    again = books.apply_entry_rows(books_conn, batch, settlements_hold=True)
    assert (again.holds, again.captures, again.releases, again.duplicates, again.conflicts) == (0, 0, 0, 5, 2)
    assert books.account_state(books_conn, p) == state
    assert books.verify(books_conn) == []


def test_append_only(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "10")
    books.apply_credit(books_conn, [entry("x", p, "hold", 1)])
    for q in (
        "UPDATE ledger SET amount = 0 WHERE partner_id = %s",
        "DELETE FROM ledger WHERE partner_id = %s",
        "UPDATE credit_entries SET amount = 0 WHERE partner_id = %s",
        "DELETE FROM credit_entries WHERE partner_id = %s",
    ):
        with pytest.raises(psycopg.errors.RestrictViolation, match="append-only"):
            books_conn.execute(q, (p,))
    for t in ("ledger", "credit_entries", "billing_accounts, credit_leases"):
        with pytest.raises(psycopg.errors.RestrictViolation):
            books_conn.execute(f"TRUNCATE {t}")
    # an account keeps its identity and currency (what the entries' partner and currency refer to)
    for q in (
        "DELETE FROM billing_accounts WHERE partner_id = %s",
        "UPDATE billing_accounts SET currency = 'USD' WHERE partner_id = %s",
    ):
        with pytest.raises(psycopg.errors.RestrictViolation, match="billing account"):
            books_conn.execute(q, (p,))
    # its settings may change
    books_conn.execute("UPDATE billing_accounts SET low_balance = 1 WHERE partner_id = %s", (p,))


def test_verify_finds_a_balance_that_is_not_the_ledger(
    books_conn: Conn, new_partner: Callable[[], int]
) -> None:
    p = account(books_conn, new_partner, "10")
    assert books.verify(books_conn) == []
    books_conn.execute("UPDATE billing_accounts SET balance = 11 WHERE partner_id = %s", (p,))
    try:
        found = books.verify(books_conn)
        assert [(d.partner, d.expected, d.found) for d in found] == [(p, Decimal(10), Decimal(11))]
    finally:
        books_conn.execute("UPDATE billing_accounts SET balance = 10 WHERE partner_id = %s", (p,))


def test_committed_per_lease_state(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "100")

    def holds(lease: int | None, n: int, settle: int, tag: str) -> None:
        es = [entry(f"{tag}{i}", p, "hold", 1_000_000, lease) for i in range(n)]
        es += [entry(f"{tag}{i}", p, "capture", 1_000_000, lease) for i in range(settle)]
        books.apply_credit(books_conn, es)

    def committed() -> Money:
        return books.account_state(books_conn, p).committed

    a = books.grant_lease(books_conn, p, "n1", eur(5), 60, 10)
    assert a is not None and a.amount == eur(5)
    assert committed() == eur(5)  # open, nothing held: A
    holds(a.id, 3, 1, "a")
    assert committed() == eur(5 - 1)  # max(A=5, H=3) - S=1
    holds(a.id, 4, 0, "a2")
    assert committed() == eur(7 - 1)  # max(5, H=7) - 1
    assert books.return_lease(books_conn, a.id, eur(8))
    assert committed() == eur(8 - 1)  # returned: max(U=8, H=7) - 1
    assert not books.return_lease(books_conn, a.id, eur(2))  # already returned: unchanged
    assert committed() == eur(7)

    b = books.grant_lease(books_conn, p, "n2", eur(10), 60, 10)
    assert b is not None and books.return_lease(books_conn, b.id, eur(2))
    holds(b.id, 3, 2, "b")
    assert committed() == eur(7) + eur(3 - 2)  # returned: max(U=2, H=3) - S=2

    c = books.grant_lease(books_conn, p, "dead", eur(10), 30, 5)
    assert c is not None
    assert c.expires_at - c.granted_at == dt.timedelta(seconds=30)
    assert c.lapses_at - c.expires_at == dt.timedelta(seconds=5)
    holds(c.id, 4, 1, "c")
    assert committed() == eur(8) + eur(10 - 1)  # open: max(A=10, H=4) - S=1
    # its node died: the lease expired, then its grace passed too (moved into the past, not waited for)
    books_conn.execute(
        "UPDATE credit_leases SET granted_at = now() - interval '1 minute',"
        " expires_at = now() - interval '2 s', lapses_at = now() + interval '1 minute' WHERE id = %s",
        (c.id,),
    )
    assert committed() == eur(8) + eur(10 - 1)  # expired but within its grace: still A
    books_conn.execute("UPDATE credit_leases SET lapses_at = now() - interval '1 s' WHERE id = %s", (c.id,))
    assert committed() == eur(8) + eur(4 - 1)  # lapsed: H - S

    holds(None, 2, 1, "u")
    assert committed() == eur(11) + eur(2 - 1)  # no lease: H - S
    state = books.account_state(books_conn, p)
    assert state.available == state.balance - eur(12)
    # a returned lease that reported more used than its holds show (a hold given back after a swap): the
    # overstatement counts only until the lease's grace has passed, then its holds alone do
    books_conn.execute(
        "UPDATE credit_leases SET granted_at = now() - interval '1 minute',"
        " expires_at = now() - interval '2 s', lapses_at = now() - interval '1 s' WHERE id = %s",
        (a.id,),
    )
    assert committed() == eur(12) - eur(8 - 1) + eur(7 - 1)  # a: max(U=8, H=7) - 1 became H - S = 6
    assert books.verify(books_conn) == []


def test_grant_is_at_most_available(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "3", mode="credit", credit_limit=Decimal(2))
    lease = books.grant_lease(books_conn, p, "n1", eur(4), 60, 10)
    assert lease is not None and lease.amount == eur(4)
    lease = books.grant_lease(books_conn, p, "n1", eur(4), 60, 10)
    assert lease is not None and lease.amount == eur(1)
    assert books.grant_lease(books_conn, p, "n1", eur(4), 60, 10) is None
    with pytest.raises(CurrencyMismatch):
        books.grant_lease(books_conn, p, "n1", Money(1, "USD"), 60, 10)
    books.set_account(books_conn, p, mode="prepaid")  # the limit no longer counts: available is negative
    assert books.account_state(books_conn, p).available == eur(-2)


@pytest.mark.parametrize(("mode", "limit"), [("prepaid", "0"), ("credit", "7.5")])
def test_concurrent_grants_never_lease_more_than_available(
    books_conn: Conn, new_partner: Callable[[], int], pg_dsn: str, pg_schema: str, mode: Any, limit: str
) -> None:
    """Two nodes (threads, own connections): first both ask for everything at once, 20 rounds (each round
    one of them gets it all, the other nothing); then both draw small leases until nothing is left."""
    p = account(books_conn, new_partner, "20", mode=mode, credit_limit=Decimal(limit))
    start = books.account_state(books_conn, p).available
    assert start == eur(20) + eur(limit)
    rounds = 20
    barrier = threading.Barrier(2)
    at_once: list[list[Decimal]] = [[Decimal(0)] * rounds for _ in range(2)]
    drawn: list[list[Money]] = [[], []]
    errors: list[BaseException] = []

    def node(i: int) -> None:
        try:
            with connect_sync(pg_dsn, schema=pg_schema) as conn:
                for r in range(rounds):
                    barrier.wait()
                    lease = books.grant_lease(conn, p, f"n{i}", eur(1000), 60, 10)
                    barrier.wait()
                    if lease is not None:
                        at_once[i][r] = lease.amount.amount
                        books.return_lease(conn, lease.id, eur(0))
                barrier.wait()
                while (lease := books.grant_lease(conn, p, f"n{i}", eur("0.1"), 60, 10)) is not None:
                    drawn[i].append(lease.amount)
        except BaseException as e:
            errors.append(e)
            barrier.abort()

    threads = [threading.Thread(target=node, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors
    assert [sorted([a, b]) for a, b in zip(*at_once, strict=True)] == [[0, start.amount]] * rounds
    total = sum((m.amount for m in drawn[0] + drawn[1]), Decimal(0))
    assert total == start.amount  # all of it, and not a micro-unit more
    assert drawn[0] and drawn[1]
    assert books.account_state(books_conn, p).available == eur(0)


def test_low_balance_crossing_reported_once(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "10", low_balance=Decimal(5))
    q = account(books_conn, new_partner, "10")  # no threshold: never reported
    n = iter(range(1000))

    def charge(euros: int, who: int = p) -> tuple[int, ...]:
        m = f"lb{next(n)}"
        batch = [entry(m, who, "hold", euros * 10**6), entry(m, who, "capture", euros * 10**6)]
        return books.apply_credit(books_conn, batch).low_balance

    assert charge(4) == ()  # 10 -> 6
    assert charge(2) == (p,)  # 6 -> 4: crossed
    assert charge(1) == ()  # 4 -> 3: already below
    assert charge(9, q) == ()
    books.topup(books_conn, p, eur(7), "refill", "test")  # 10
    assert charge(5) == ()  # 10 -> 5: not below
    assert charge(1) == (p,)  # 5 -> 4


def test_release_stale(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    p = account(books_conn, new_partner, "10")  # charged on delivery
    q = account(books_conn, new_partner, "10")  # charged on submit: not named
    old = dt.datetime.now(dt.UTC) - dt.timedelta(hours=3)
    recent = dt.datetime.now(dt.UTC)
    books.apply_credit(
        books_conn,
        [
            entry("s1", p, "hold", 10**6, at=old),
            entry("s2", p, "hold", 10**6, at=old),
            entry("s2", p, "capture", 10**6, at=old),
            entry("s3", p, "hold", 10**6, at=recent),
            entry("s4", q, "hold", 10**6, at=old),
        ],
    )
    stats = books.release_stale(books_conn, [p], dt.timedelta(hours=1))
    assert stats.releases == 1
    kinds = books_conn.execute(
        "SELECT message_id, kind FROM credit_entries"
        " WHERE message_id IN ('s1','s2','s3','s4') AND kind <> 'hold' ORDER BY 1"
    ).fetchall()
    assert kinds == [("s1", "release"), ("s2", "capture")]
    assert books.account_state(books_conn, p).held == eur(1)  # s3
    assert books.release_stale(books_conn, [p], dt.timedelta(hours=1)).releases == 0


# --------------------------------------------------------------------------- a sequence of operations

_OPS = st.lists(
    st.one_of(
        st.tuples(st.just("topup"), st.integers(1, 10**8)),
        st.tuples(st.just("adjust"), st.integers(-(10**8), 10**8).filter(bool)),
        st.tuples(st.just("hold"), st.integers(0, 9), st.integers(0, 5 * 10**6), st.booleans()),
        st.tuples(st.sampled_from(["capture", "release"]), st.integers(0, 9)),
        st.tuples(st.just("flush")),
    ),
    max_size=40,
)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=_OPS)
def test_balance_is_the_sum_of_the_ledger(
    books_conn: Conn, new_partner: Callable[[], int], ops: list[Any]
) -> None:
    """Top-ups, adjustments and credit entries in random batches: the balance is always the sum of the ledger
    and of the model's money, and what is held is exactly the model's unsettled holds."""
    p = account(books_conn, new_partner, mode="credit", credit_limit=Decimal(10**6))
    lease = books.grant_lease(books_conn, p, "n1", eur(50), 600, 60)
    assert lease is not None
    balance = 0
    holds: dict[str, int] = {}  # message -> micros held
    settled: dict[str, str] = {}
    pending: list[CreditEntry] = []

    def flush() -> None:
        nonlocal balance
        books.apply_credit(books_conn, pending)
        for e in pending:  # the model: holds first, then the first settlement of a held message
            if e.kind == "hold":
                holds.setdefault(e.message_id, e.amount)
        for e in pending:
            if e.kind != "hold" and e.message_id in holds and e.message_id not in settled:
                settled[e.message_id] = e.kind
                balance -= e.amount if e.kind == "capture" else 0
        pending.clear()

    for op in ops:
        if op[0] in ("topup", "adjust"):
            flush()
            change = books.topup if op[0] == "topup" else books.adjust
            change(books_conn, p, Money.from_micros(op[1], "EUR"), "test", "hypothesis")
            balance += op[1]
        elif op[0] == "hold":
            _, m, micros, leased = op
            pending.append(entry(f"h{p}-{m}", p, "hold", micros, lease.id if leased else None))
        elif op[0] == "flush":
            flush()
        else:
            kind, m = op
            pending.append(entry(f"h{p}-{m}", p, kind, m * 1000 + 1))
    flush()
    state = books.account_state(books_conn, p)
    ledger_sum = books_conn.execute("SELECT coalesce(sum(amount), 0) FROM ledger WHERE partner_id = %s", (p,))
    assert (
        state.balance == Money.from_micros(balance, "EUR") == eur(0) + Money(ledger_sum.fetchone()[0], "EUR")
    )
    open_holds = sum(v for m, v in holds.items() if m not in settled)
    assert state.held == Money.from_micros(open_holds, "EUR")
    assert [d for d in books.verify(books_conn) if d.partner == p] == []


async def test_through_database_run(db: Database, books_conn: Conn, new_partner: Callable[[], int]) -> None:
    """The gateway's path: a worker thread, inside the pool's transaction; two batches in one transaction,
    then again on the pooled connection (its temporary table is reused, never carries rows over)."""
    p = account(books_conn, new_partner, "10")
    first = [entry("r1", p, "hold", 10**6), entry("r1", p, "capture", 10**6)]
    second = [entry("r2", p, "hold", 10**6)]

    def both(conn: Conn) -> tuple[books.ApplyStats, books.ApplyStats]:
        return books.apply_credit(conn, first), books.apply_credit(conn, second)

    a, b = await db.run(both)
    assert (a.holds, a.captures, b.holds, b.captures) == (1, 1, 1, 0)
    again = await db.run(books.apply_credit, [*first, *second])
    assert again == books.ApplyStats(duplicates=3)
    state = await db.run(books.account_state, p)
    assert (state.balance, state.held) == (eur(9), eur(1))


def test_entry_rows_plain_and_odd_take_the_same_effect(
    books_conn: Conn, new_partner: Callable[[], int]
) -> None:
    """The event writer's tuples (unix-second times, COPY text built at once) and ids COPY text cannot carry
    plainly (a tab: psycopg's own row writer) are booked alike, at the same instants as the message log."""
    p = account(books_conn, new_partner, "10")
    at = 1_800_000_000.123456
    m1, m2 = f"rows{p}-1", f"rows{p}\t2"  # ids of this partner alone: other tests share the schema
    plain = [(m1, p, "hold", 1_000_000, "EUR", None, at), (m1, p, "capture", 1_000_000, "EUR", None, at)]
    odd = [
        (m2, p, "hold", 2_000_000, "EUR", None, at),
        (m2, p, "capture", 2_000_000, "EUR", None, at),
    ]
    assert books._copy_text(books._copy_rows(plain)) is not None
    assert books._copy_text(books._copy_rows(odd)) is None
    for rows in (plain, odd):
        stats = books.apply_entry_rows(books_conn, rows)
        assert (stats.holds, stats.captures) == (1, 1), (rows, stats)
    state = books.account_state(books_conn, p)
    assert state.balance == eur(7) and state.held == eur(0)
    ats = {r[0] for r in books_conn.execute("SELECT at FROM credit_entries WHERE partner_id = %s", (p,))}
    assert ats == {dt.datetime.fromtimestamp(at, dt.UTC)}
