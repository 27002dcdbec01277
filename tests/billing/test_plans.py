"""billing.plans: the plan CSV (round trip, errors naming line and column), PlanIndex lookups, prices,
Pricing."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.billing.money import Money
from catalyst_smpp.billing.plans import (
    CSV_COLUMNS,
    PlanCsvError,
    PlanIndex,
    Pricing,
    decode_csv,
    format_csv,
    parse_csv,
    price,
)
from catalyst_smpp.store.records import ConfigSnapshot, Operator, Partner, Plan, PlanRow

HEADER = ",".join(CSV_COLUMNS)
T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)


def row(
    prefix: str, submit: str, start: dt.datetime = T0, until: dt.datetime | None = None, **kw: object
) -> PlanRow:
    fields: dict[str, object] = {
        "country": prefix[:2],
        "network": "",
        "mcc_mnc": None,
        "delivery_price": None,
        **kw,
    }
    return PlanRow(
        prefix=prefix,
        submit_price=Money(submit, "EUR"),
        effective_from=start,
        effective_until=until,
        **fields,  # type: ignore[arg-type]
    )


# --------------------------------------------------------------------------- CSV

EXAMPLE = f"""{HEADER}
44,44,DEFAULT,,0.0300,,2027-01-01T00:00:00+00:00,
447700,44,Vodafone UK,23415,0.0250,0.0280,2027-01-01T00:00:00+00:00,2027-02-01T00:00:00+00:00
447700,44,Vodafone UK,23415,0.0200,,2027-02-01T01:00:00+01:00,
"""


def test_parse_the_documented_example() -> None:
    rows = parse_csv(EXAMPLE, "EUR")
    assert len(rows) == 3
    default, old, new = rows
    assert default.network == "DEFAULT" and default.prefix == default.country == "44"
    assert default.submit_price == Money("0.03", "EUR") and default.delivery_price is None
    assert old.mcc_mnc == "23415" and old.delivery_price == Money("0.028", "EUR")
    assert old.effective_until == new.effective_from == dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
    assert new.effective_until is None


def _bad(text: str) -> PlanCsvError:
    with pytest.raises(PlanCsvError) as e:
        parse_csv(text, "EUR")
    return e.value


@pytest.mark.parametrize(
    ("line", "column", "fragment"),
    [
        ("+44,44,,,0.01,,2027-01-01T00:00:00Z,", "prefix", "not a destination prefix"),
        ("44,x,,,0.01,,2027-01-01T00:00:00Z,", "country", "country calling code"),
        ("44,44,,2341,0.01,,2027-01-01T00:00:00Z,", "mcc_mnc", "MCC+MNC"),
        ("44,44,,,-0.01,,2027-01-01T00:00:00Z,", "submit_price", "negative"),
        ("44,44,,,0.0000001,,2027-01-01T00:00:00Z,", "submit_price", "decimal places"),
        ("44,44,,,1e20,,2027-01-01T00:00:00Z,", "submit_price", "too large"),
        ("44,44,,,0.01,abc,2027-01-01T00:00:00Z,", "delivery_price", "not an amount"),
        ("44,44,,,0.01,,2027-01-01T00:00:00,", "effective_from", "no UTC offset"),
        (
            "44,44,,,0.01,,2027-01-01T00:00:00Z,2026-01-01T00:00:00Z",
            "effective_until",
            "after effective_from",
        ),
        ("4477,33,,,0.01,,2027-01-01T00:00:00Z,", "prefix", "does not start with its country code"),
        ("447,44,DEFAULT,,0.01,,2027-01-01T00:00:00Z,", "prefix", "DEFAULT row"),
        ("44,44,,,0.01,,2027-01-01T00:00:00Z", "effective_until", "7 values"),
    ],
)
def test_errors_name_line_and_column(line: str, column: str, fragment: str) -> None:
    e = _bad(f"{HEADER}\n44,44,DEFAULT,,0.03,,2027-01-01T00:00:00Z,\n{line}\n")
    assert (e.line, e.column) == (3, column)
    assert str(e).startswith(f"line 3, column {column}: ") and fragment in str(e)


def test_overlapping_rows_of_one_prefix_are_refused_naming_both_lines() -> None:
    e = _bad(
        f"{HEADER}\n4477,44,,,0.01,,2027-01-01T00:00:00Z,2027-03-01T00:00:00Z\n"
        "44,44,DEFAULT,,0.03,,2027-01-01T00:00:00Z,\n"
        "4477,44,,,0.02,,2027-02-01T00:00:00Z,\n"
    )
    assert (e.line, e.column) == (4, "effective_from") and "by line 2" in str(e)
    # adjacent windows (until == the next from) are fine
    ok = parse_csv(
        f"{HEADER}\n4477,44,,,0.01,,2027-01-01T00:00:00Z,2027-02-01T00:00:00Z\n4477,44,,,0.02,,2027-02-01T00:00:00Z,\n",
        "EUR",
    )
    assert len(ok) == 2


def test_header_must_be_exact() -> None:
    assert _bad("prefix,country\n44,44\n").line == 1
    assert _bad("").line == 1
    assert parse_csv(HEADER + "\n", "EUR") == []


def test_decode_names_the_line_of_a_bad_byte() -> None:
    with pytest.raises(PlanCsvError) as e:
        decode_csv(HEADER.encode() + b"\n44,44,\xff\n")
    assert e.value.line == 2
    assert decode_csv(b"\xef\xbb\xbf" + HEADER.encode()) == HEADER


_instants = st.datetimes(
    min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2100, 1, 1), timezones=st.just(dt.UTC)
)
_amounts = st.decimals(min_value=0, max_value=Decimal("99999999999999.999999"), places=6)


@st.composite
def plan_rows(draw: st.DrawFn) -> list[PlanRow]:
    """Rows that are valid together: per prefix, consecutive non-overlapping windows."""
    out: list[PlanRow] = []
    prefixes = draw(st.lists(st.from_regex(r"[1-9][0-9]{0,8}", fullmatch=True), max_size=6, unique=True))
    for prefix in prefixes:
        starts = sorted(draw(st.lists(_instants, min_size=1, max_size=3, unique=True)))
        country = prefix[: draw(st.integers(1, min(4, len(prefix))))]
        for i, start in enumerate(starts):
            last = i == len(starts) - 1
            until = (
                None
                if last and draw(st.booleans())
                else (starts[i + 1] if not last else start + dt.timedelta(days=1))
            )
            delivery = draw(st.none() | _amounts)
            out.append(
                PlanRow(
                    prefix=prefix,
                    country=country,
                    network=draw(st.sampled_from(["", "Vodafone, UK", 'The "Net"']))
                    if prefix != country
                    else "DEFAULT",
                    mcc_mnc=draw(st.none() | st.from_regex(r"[0-9]{5,6}", fullmatch=True)),
                    submit_price=Money(draw(_amounts), "EUR"),
                    delivery_price=None if delivery is None else Money(delivery, "EUR"),
                    effective_from=start,
                    effective_until=until,
                )
            )
    return out


@given(plan_rows())
def test_csv_round_trip(rows: list[PlanRow]) -> None:
    assert parse_csv(format_csv(rows), "EUR") == rows


_csv_alphabet = st.sampled_from([*'0123456789,.:-+TZ"\n\r ;aé\x00', "DEFAULT", "2027-01-01T00:00:00Z"])


@settings(max_examples=300)
@given(st.lists(_csv_alphabet, max_size=80).map("".join), st.booleans())
def test_bad_input_is_always_a_value_error_naming_the_line(body: str, with_header: bool) -> None:
    text = (HEADER + "\n" + body) if with_header else body
    try:
        parse_csv(text, "EUR")
    except PlanCsvError as e:
        assert str(e).startswith(f"line {e.line}")
        assert e.line >= 1


@settings(max_examples=200)
@given(st.binary(max_size=60))
def test_bad_bytes_are_always_a_plan_csv_error(data: bytes) -> None:
    try:
        parse_csv(decode_csv(HEADER.encode() + b"\n" + data), "EUR")
    except PlanCsvError as e:
        assert str(e).startswith("line ")


# --------------------------------------------------------------------------- lookup


def _reference(rows: list[PlanRow], digits: str, at: float) -> PlanRow | None:
    """Brute force: every row in effect at ``at`` whose prefix starts ``digits``; the longest prefix."""
    live = [
        r
        for r in rows
        if digits.startswith(r.prefix)
        and r.effective_from.timestamp() <= at
        and (r.effective_until is None or at < r.effective_until.timestamp())
    ]
    return max(live, key=lambda r: len(r.prefix)) if live else None


@st.composite
def index_cases(draw: st.DrawFn) -> tuple[list[PlanRow], list[tuple[str, float]]]:
    rows: list[PlanRow] = []
    for prefix in draw(st.lists(st.from_regex(r"4[0-9]{0,4}", fullmatch=True), max_size=8, unique=True)):
        bounds = sorted(draw(st.lists(st.integers(0, 100), min_size=1, max_size=5, unique=True)))
        open_end = draw(st.booleans())
        for i, b in enumerate(bounds):
            if i + 1 < len(bounds):
                until: int | None = bounds[i + 1]
            else:
                until = None if open_end else b + 10
            if draw(st.booleans()):  # gaps between windows
                rows.append(
                    row(
                        prefix,
                        str(i),
                        T0 + dt.timedelta(seconds=b),
                        None if until is None else T0 + dt.timedelta(seconds=until),
                        country=prefix[:1],
                    )
                )
    probes = draw(
        st.lists(
            st.tuples(
                st.from_regex(r"4[0-9]{0,7}", fullmatch=True),
                st.integers(-5, 120).map(lambda s: T0.timestamp() + s)
                | st.floats(T0.timestamp() - 5, T0.timestamp() + 120),
            ),
            min_size=1,
            max_size=20,
        )
    )
    return rows, probes


@given(index_cases())
def test_lookup_is_the_longest_prefix_in_effect(case: tuple[list[PlanRow], list[tuple[str, float]]]) -> None:
    rows, probes = case
    index = PlanIndex(rows, "EUR")
    for digits, at in probes:
        assert index.lookup(digits, at) == _reference(rows, digits, at)


def test_price_switches_exactly_at_effective_from() -> None:
    switch = T0 + dt.timedelta(days=31)
    old = row("4477", "0.025", T0, switch)
    new = row("4477", "0.020", switch)
    index = PlanIndex([old, new, row("44", "0.03")], "EUR")
    at = switch.timestamp()
    assert index.lookup("447700900123", at - 1e-6) is old
    assert index.lookup("447700900123", at) is new
    assert index.lookup("447700900123", at + 1) is new
    assert index.lookup("447700900123", T0.timestamp() - 1) is None  # before any row
    assert index.lookup("441234", at).prefix == "44"  # type: ignore[union-attr]
    assert index.lookup("33123", at) is None


def test_a_longer_prefix_not_yet_in_effect_falls_back_to_the_shorter() -> None:
    later = T0 + dt.timedelta(days=10)
    index = PlanIndex([row("44", "0.03"), row("4477", "0.02", later)], "EUR")
    assert index.lookup("447712", T0.timestamp()).prefix == "44"  # type: ignore[union-attr]
    assert index.lookup("447712", later.timestamp()).prefix == "4477"  # type: ignore[union-attr]


def test_price_by_charging_point_and_parts() -> None:
    both = row("44", "0.0045", delivery_price=Money("0.005", "EUR"))
    submit_only = row("44", "0.0045")
    assert price(both, "submit", 3) == Money("0.0135", "EUR")
    assert price(both, "delivery", 3) == Money("0.015", "EUR")
    assert price(submit_only, "delivery", 2) == Money("0.009", "EUR")  # falls back to submit_price
    with pytest.raises(ValueError):
        price(both, "receipt", 1)
    with pytest.raises(ValueError):
        price(both, "submit", 0)


def test_pricing_from_a_snapshot() -> None:
    price_plan = Plan(
        1, "retail", "price", "EUR", rows=(row("44", "0.05", delivery_price=Money("0.06", "EUR")),)
    )
    cost_plan = Plan(
        2, "smsc-a", "cost", "EUR", rows=(row("44", "0.02", delivery_price=Money("0.9", "EUR")),)
    )
    snap = ConfigSnapshot(
        version=1,
        partners=(
            Partner(1, "acme", "x", price_plan="retail", charge_on="delivery"),
            Partner(2, "free", "x"),
        ),
        operators=(
            Operator(1, "A", "h", 1, "a", cost_plan="smsc-a"),
            Operator(2, "B", "h", 1, "b"),
        ),
        routes=(),
        plans=(price_plan, cost_plan),
    )
    p = Pricing(snap)
    at = T0.timestamp() + 60
    assert p.billed("acme") and not p.billed("free")
    assert p.price_currency("acme") == "EUR" and p.price_currency("free") is None
    assert p.price_for("acme", "4477", at, 2) == Money("0.12", "EUR")  # its charging point: delivery
    assert p.price_for("acme", "3312", at) is None  # unpriced destination
    assert p.price_for("free", "4477", at) is None
    assert p.cost_for("A", "4477", at, 2) == Money("0.04", "EUR")  # costs: submit_price per part
    assert p.cost_for("B", "4477", at) is None
