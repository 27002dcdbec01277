"""Invoices and usage reports on real Postgres: books and message-log rows made by the real functions (the
event writer's :func:`write_log_and_books` over rows from :func:`event_row`), then the invoice's figures
checked to the micro-unit against what was written."""

from __future__ import annotations

import csv
import datetime as dt
import io
import itertools
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalyst_smpp.billing import books, invoices
from catalyst_smpp.billing.money import Money
from catalyst_smpp.billing.node import write_log_and_books
from catalyst_smpp.gateway.events import event_row
from tests.services import unique_name

Conn = psycopg.Connection[Any]
UTC = dt.UTC
_ids = itertools.count()


@pytest.fixture(scope="module")
def account(books_conn: Conn, new_partner: Callable[[], int]) -> Callable[[], tuple[int, str]]:
    """A new partner with an EUR account: (id, system_id)."""

    def make() -> tuple[int, str]:
        pid = new_partner()
        books.open_account(books_conn, pid, "EUR")
        row = books_conn.execute("SELECT system_id FROM partners WHERE id = %s", (pid,)).fetchone()
        assert row is not None
        return pid, str(row[0])

    return make


def send(
    conn: Conn,
    partner: str,
    at: dt.datetime,
    *,
    dest: str = "447700900123",
    operator: str = "op-a",
    parts: int = 1,
    unit: int = 4500,
    cost: int | None = 3000,
    cost_currency: str = "EUR",
    outcome: str = "submitted",
) -> str:
    """One billed charge-on-submit message accepted and settled at ``at`` through the event writer's
    function: ``submitted`` captures, ``failed`` releases, ``held`` leaves the hold open.  Its id."""
    mid = f"{unique_name('m')}-{next(_ids)}"
    price = unit * parts
    cdr = {"price": price, "currency": "EUR", "cost": None if cost is None else cost * parts}
    cdr["cost_currency"] = cost_currency if cost is not None else None
    common = {"partner": partner, "operator": operator, "dest_addr": dest, "parts": parts, **cdr}
    rows = [event_row(mid, "accepted", at=at.timestamp(), status=0, charge_state="held", **common)]
    if outcome == "submitted":
        rows.append(
            event_row(mid, "submitted", at=at.timestamp(), status=0, charge_state="captured", **common)
        )
    elif outcome == "failed":
        rows.append(
            event_row(
                mid,
                "failed",
                at=at.timestamp(),
                status=0x45,
                final_state="REJECTD",
                charge_state="released",
                **common,
            )
        )
    with conn.transaction():
        write_log_and_books(conn, rows)
    return mid


def topup_now(conn: Conn, pid: int, amount: str) -> books.LedgerEntry:
    return books.topup(conn, pid, Money(Decimal(amount), "EUR"), "wire transfer", "alice")


def month_of(t: dt.datetime) -> tuple[str, dt.datetime, dt.datetime]:
    month = f"{t.year:04d}-{t.month:02d}"
    start, end = invoices.month_period(month)
    return month, start, end


def test_month_period() -> None:
    assert invoices.month_period("2026-12") == (
        dt.datetime(2026, 12, 1, tzinfo=UTC),
        dt.datetime(2027, 1, 1, tzinfo=UTC),
    )
    assert invoices.month_period("2027-02")[1] == dt.datetime(2027, 3, 1, tzinfo=UTC)
    for bad in ("2026-13", "2026-00", "2026-1", "26-01", "2026-01-01", ""):
        with pytest.raises(ValueError):
            invoices.month_period(bad)


def test_calling_codes_are_prefix_free_and_found() -> None:
    codes = invoices._CODES
    assert not [a for a in codes for b in codes if a != b and b.startswith(a)]
    assert invoices.calling_code("447700900123") == "44"
    assert invoices.calling_code("+14155550100") == "1"
    assert invoices.calling_code("35312345678") == "353"
    assert invoices.calling_code("80012345678") == "800"
    assert invoices.calling_code("0123") == ""
    assert invoices.calling_code("SHOP") == ""


def test_invoice_totals_line_items_and_reconciliation(books_conn: Conn, account: Any) -> None:
    pid, sid = account()
    first = topup_now(books_conn, pid, "100")
    month, start, end = month_of(first.at)
    t = first.at + dt.timedelta(seconds=1)
    assert t < end, "the test needs a second left in this month"
    send(books_conn, sid, t, dest="447700900001", parts=2)  # 2 x 0.0045
    send(books_conn, sid, t, dest="+447700900002", parts=1)
    send(books_conn, sid, t, dest="447700900003", parts=3, operator="op-b")
    send(books_conn, sid, t, dest="33612345678", parts=1, unit=7000)
    send(books_conn, sid, t, dest="33612345679", parts=1, outcome="failed")  # released: not invoiced
    send(books_conn, sid, t, dest="33612345670", parts=1, outcome="held")  # still held: not invoiced
    books.adjust(books_conn, pid, Money(Decimal("-0.5"), "EUR"), "duplicate top-up", "bob")
    topup_now(books_conn, pid, "20")

    inv = invoices.invoice(books_conn, sid, month)
    assert inv.ok, inv.discrepancies
    assert (inv.partner, inv.month, inv.currency) == (sid, month, "EUR")
    assert (inv.period_start, inv.period_end) == (start, end)
    assert [
        (li.country, li.operator, li.unit_price, li.messages, li.parts, li.amount) for li in inv.lines
    ] == [
        ("33", "op-a", Decimal("0.007"), 1, 1, Decimal("0.007")),
        ("44", "op-a", Decimal("0.0045"), 2, 3, Decimal("0.0135")),
        ("44", "op-b", Decimal("0.0045"), 1, 3, Decimal("0.0135")),
    ]
    assert inv.charges == Decimal("0.034") == inv.lines_total
    assert inv.charged_messages == 4
    assert inv.opening == 0
    assert [(e.kind, e.amount, e.actor) for e in inv.topups] == [
        ("topup", Decimal(100), "alice"),
        ("topup", Decimal(20), "alice"),
    ]
    assert [(e.amount, e.reason, e.actor) for e in inv.adjustments] == [
        (Decimal("-0.5"), "duplicate top-up", "bob")
    ]
    assert inv.closing == Decimal("119.466")
    assert inv.closing == books.account_state(books_conn, pid).balance.amount
    assert inv.opening + inv.topups_total + inv.adjustments_total - inv.charges == inv.closing

    # the next month opens where this one closed, and has nothing else
    nxt = invoices.invoice(books_conn, sid, month_of(end)[0])
    assert nxt.ok and nxt.opening == nxt.closing == inv.closing and not nxt.lines and nxt.charges == 0


def test_month_boundary_by_capture_time(books_conn: Conn, account: Any) -> None:
    pid, sid = account()
    first = topup_now(books_conn, pid, "10")
    month, _start, end = month_of(first.at)
    last = end - dt.timedelta(microseconds=1)  # 23:59:59.999999 on the last day
    in_month = send(books_conn, sid, last, unit=1000)
    next_month = send(books_conn, sid, end, unit=2000)  # 00:00:00 on the 1st
    at = dict(
        books_conn.execute(
            "SELECT message_id, at FROM credit_entries WHERE kind = 'capture' AND message_id = ANY(%s)",
            ([in_month, next_month],),
        ).fetchall()
    )
    assert at == {in_month: last, next_month: end}
    this = invoices.invoice(books_conn, sid, month)
    following = invoices.invoice(books_conn, sid, month_of(end)[0])
    assert this.ok and following.ok, (this.discrepancies, following.discrepancies)
    assert (this.charges, this.charged_messages) == (Decimal("0.001"), 1)
    assert (following.charges, following.charged_messages) == (Decimal("0.002"), 1)
    assert following.opening == this.closing == Decimal("9.999")
    assert following.closing == Decimal("9.997")


def test_late_capture_recorded_after_a_later_entry(books_conn: Conn, account: Any) -> None:
    """A capture of this month written after an entry of the next month (the event writer's batches of
    several nodes interleave around midnight): balance_after is then not in time order, and the invoices
    still reconcile."""
    pid, sid = account()
    first = topup_now(books_conn, pid, "5")
    month, _start, end = month_of(first.at)
    send(books_conn, sid, end + dt.timedelta(seconds=1), unit=2000)  # next month's, written first
    send(books_conn, sid, end - dt.timedelta(seconds=1), unit=1000)  # this month's, written late
    this = invoices.invoice(books_conn, sid, month)
    following = invoices.invoice(books_conn, sid, month_of(end)[0])
    assert this.ok and following.ok, (this.discrepancies, following.discrepancies)
    assert (this.opening, this.charges, this.closing) == (0, Decimal("0.001"), Decimal("4.999"))
    assert (following.opening, following.charges, following.closing) == (
        Decimal("4.999"),
        Decimal("0.002"),
        Decimal("4.997"),
    )


def test_a_capture_without_its_log_row_is_reported(books_conn: Conn, account: Any) -> None:
    """Line items come from the message log: a capture whose log row is missing makes the invoice not
    reconcile, and says why."""
    pid, sid = account()
    first = topup_now(books_conn, pid, "5")
    month, _start, _end = month_of(first.at)
    at = first.at + dt.timedelta(seconds=1)
    send(books_conn, sid, at, unit=1000)
    # a capture recorded by the books alone (no log row), as a hand-made or lost write would leave it
    books.apply_credit(
        books_conn,
        [
            books.CreditEntry("orphan-" + sid, pid, "hold", 3000, "EUR", None, at),
            books.CreditEntry("orphan-" + sid, pid, "capture", 3000, "EUR", None, at),
        ],
    )
    inv = invoices.invoice(books_conn, sid, month)
    assert not inv.ok
    assert inv.charges == Decimal("0.004") and inv.lines_total == Decimal("0.001")
    assert any("no captured message-log row" in d for d in inv.discrepancies)
    assert any("line items total 0.001000, the ledger's charges 0.004000" in d for d in inv.discrepancies)
    assert any("discrepancy" == r[0] for r in csv.reader(io.StringIO(inv.as_csv())))


def test_json_csv_and_reproducible(books_conn: Conn, account: Any) -> None:
    pid, sid = account()
    first = topup_now(books_conn, pid, "1")
    month, start, end = month_of(first.at)
    t = first.at + dt.timedelta(seconds=1)
    send(books_conn, sid, t, parts=2)
    send(books_conn, sid, t, dest="4915112345678", operator="op-de", unit=6000)
    books.adjust(books_conn, pid, Money(Decimal("0.25"), "EUR"), "goodwill, ticket 7", "carol")
    a = invoices.invoice(books_conn, sid, month)
    b = invoices.invoice(books_conn, sid, month)
    assert a == b and a.as_csv() == b.as_csv() and a.as_json() == b.as_json()

    j = a.as_json()
    assert j["period"]["start"] == start.isoformat() and j["period"]["end"] == end.isoformat()
    assert (j["opening_balance"], j["charges"], j["lines_total"], j["closing_balance"]) == (
        "0.000000",
        "0.015000",
        "0.015000",
        "1.235000",
    )
    assert j["lines"][0] == {
        "country": "44",
        "region": "GB",
        "operator": "op-a",
        "unit_price": "0.004500",
        "messages": 1,
        "parts": 2,
        "amount": "0.009000",
    }
    assert j["lines"][1]["region"] == "DE"
    assert j["adjustments"][0]["reason"] == "goodwill, ticket 7" and j["reconciles"] is True

    rows = list(csv.DictReader(io.StringIO(a.as_csv())))
    assert list(rows[0]) == list(invoices.CSV_COLUMNS)
    lines = [r for r in rows if r["row"] == "line"]
    assert sum(Decimal(r["amount"]) for r in lines) == Decimal(
        next(r["amount"] for r in rows if r["row"] == "charges")
    )
    totals = {r["row"]: Decimal(r["amount"]) for r in rows if r["row"] != "line"}
    assert (
        totals["opening"] + totals["topups"] + totals["adjustments"] - totals["charges"] == totals["closing"]
    )
    assert next(r for r in rows if r["row"] == "adjustment")["detail"].endswith("carol: goodwill, ticket 7")


def test_unknown_partner_and_no_account(books_conn: Conn, new_partner: Callable[[], int]) -> None:
    with pytest.raises(invoices.UnknownPartner):
        invoices.invoice(books_conn, "nobody-here", "2026-01")
    pid = new_partner()
    sid = books_conn.execute("SELECT system_id FROM partners WHERE id = %s", (pid,)).fetchone()
    assert sid is not None
    with pytest.raises(books.NoAccount):
        invoices.invoice(books_conn, sid[0], "2026-01")


_amounts = st.integers(min_value=1, max_value=5_000_000)


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("topup"), _amounts),
            st.tuples(st.just("adjust"), st.integers(-2_000_000, 2_000_000).filter(bool)),
            st.tuples(st.just("send"), st.tuples(st.integers(1, 4), st.integers(1, 90_000), st.booleans())),
        ),
        max_size=12,
    )
)
def test_random_books_reconcile(books_conn: Conn, account: Any, ops: list[tuple[str, Any]]) -> None:
    """Random top-ups, adjustments and messages (captured or released): the invoice's charges are the
    ledger's charges and the line items' sum, and the balances reconcile."""
    pid, sid = account()
    first = topup_now(books_conn, pid, "1000")
    month, _start, end = month_of(first.at)
    t = first.at
    charged = 0
    for kind, value in ops:
        t += dt.timedelta(microseconds=1)
        if t >= end:
            break
        if kind == "topup":
            topup_now(books_conn, pid, str(Money.from_micros(value, "EUR").amount))
        elif kind == "adjust":
            books.adjust(books_conn, pid, Money.from_micros(value, "EUR"), "random", "hypothesis")
        else:
            parts, unit, captured = value
            send(books_conn, sid, t, parts=parts, unit=unit, outcome="submitted" if captured else "failed")
            charged += parts * unit if captured else 0
    inv = invoices.invoice(books_conn, sid, month)
    assert inv.ok, inv.discrepancies
    ledger_charges = books_conn.execute(
        "SELECT coalesce(-sum(amount), 0) FROM ledger WHERE partner_id = %s AND kind = 'charge'", (pid,)
    ).fetchone()
    assert ledger_charges is not None
    assert inv.charges == inv.lines_total == Money.from_micros(charged, "EUR").amount == ledger_charges[0]
    assert inv.closing == books.account_state(books_conn, pid).balance.amount


def test_usage_per_day_country_operator(books_conn: Conn, account: Any) -> None:
    pid, sid = account()
    first = topup_now(books_conn, pid, "10")
    _month, _start, end = month_of(first.at)
    day1 = end - dt.timedelta(seconds=2)
    day2 = end + dt.timedelta(hours=1)
    send(books_conn, sid, day1, parts=2)  # 44/op-a: captured, cost 2 x 0.003
    send(books_conn, sid, day1, outcome="failed")  # 44/op-a: released
    # cost in another currency
    send(books_conn, sid, day1, dest="33612345678", cost=2000, cost_currency="USD")
    mid = send(books_conn, sid, day2, operator="op-b")
    with books_conn.transaction():
        write_log_and_books(
            books_conn,
            [
                event_row(
                    mid,
                    "delivered",
                    at=day2.timestamp(),
                    partner=sid,
                    operator="op-b",
                    dest_addr="447700900123",
                    final_state="DELIVRD",
                ),
                event_row(
                    f"r{mid}",
                    "rejected",
                    at=day2.timestamp(),
                    partner=sid,
                    dest_addr="447700900999",
                    status=0x45,
                ),
            ],
        )
    rows = invoices.usage(books_conn, sid, day1 - dt.timedelta(days=1), day2 + dt.timedelta(days=1))
    got = {(r.day, r.country, r.operator): r for r in rows}
    d1, d2 = day1.date(), day2.date()
    assert set(got) == {(d1, "33", "op-a"), (d1, "44", "op-a"), (d2, "44", ""), (d2, "44", "op-b")}
    uk = got[(d1, "44", "op-a")]
    assert (uk.accepted, uk.submitted, uk.failed, uk.delivered, uk.parts) == (2, 1, 1, 0, 3)
    assert (uk.charged, uk.released, uk.cost, uk.margin) == (
        Decimal("0.009"),
        Decimal("0.0045"),
        Decimal("0.006"),  # the submitted one's 2 parts x 0.003 (the failed one's cost is not counted)
        Decimal("0.003"),
    )
    fr = got[(d1, "33", "op-a")]
    assert (fr.charged, fr.cost, fr.cost_other, fr.margin) == (
        Decimal("0.0045"),
        Decimal(0),
        (("USD", Decimal("0.002")),),
        Decimal("0.0045"),
    )
    assert got[(d2, "44", "")].refused == 1
    b = got[(d2, "44", "op-b")]
    assert (b.accepted, b.submitted, b.delivered, b.charged) == (1, 1, 1, Decimal("0.0045"))
    totals = invoices.usage_totals(rows)
    assert (totals["accepted"], totals["refused"], totals["charged"]) == (4, 1, "0.018000")
