from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.billing.money import CurrencyMismatch, Money, parse_amount, parse_currency

micros = st.integers(min_value=-(10**19), max_value=10**19)


@given(micros)
def test_micro_units_round_trip_exactly(n: int) -> None:
    m = Money.from_micros(n, "EUR")
    assert m.micros() == n
    assert Money(str(m.amount), "EUR") == m


@given(micros, micros, st.integers(min_value=0, max_value=255))
def test_arithmetic_is_exact(a: int, b: int, parts: int) -> None:
    x, y = Money.from_micros(a, "USD"), Money.from_micros(b, "USD")
    assert (x + y).micros() == a + b
    assert (x - y).micros() == a - b
    assert x.times(parts).micros() == a * parts


def test_currencies_do_not_mix() -> None:
    with pytest.raises(CurrencyMismatch):
        Money("1", "EUR") + Money("1", "USD")
    with pytest.raises(CurrencyMismatch):
        assert Money("1", "EUR") < Money("2", "USD")


@pytest.mark.parametrize("bad", ["", "abc", "1e400000", "NaN", "Infinity", "0.0000001"])
def test_bad_amounts_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        parse_amount(bad)


def test_floats_are_refused() -> None:
    with pytest.raises(ValueError, match="float"):
        parse_amount(0.1)  # type: ignore[arg-type]


def test_amount_and_currency_forms() -> None:
    assert parse_amount(" 0.0045 ") == Decimal("0.004500")
    assert parse_currency(" eur") == "EUR"
    with pytest.raises(ValueError):
        parse_currency("EURO")
    assert str(Money("12.5", "GBP")) == "12.500000 GBP"
