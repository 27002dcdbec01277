"""Exact money: a ``Decimal`` amount with its ISO 4217 currency, never a float.

Amounts are kept to :data:`PLACES` decimal places (per-part SMS prices are often fractions of a cent).  The
stream records carry **micro-units** (an integer, ``amount * 10**PLACES``) so that a price travels as one
integer field; :meth:`Money.micros` and :meth:`Money.from_micros` convert without rounding surprises.
"""

from __future__ import annotations

import decimal
import re
from decimal import Decimal

import attrs

__all__ = ["PLACES", "CurrencyMismatch", "Money", "parse_amount", "parse_currency"]

PLACES = 6
_QUANTUM = Decimal(1).scaleb(-PLACES)
_SCALE = 10**PLACES
_CURRENCY = re.compile(r"[A-Z]{3}")
# Exact for every amount a numeric(20,6) column holds: 14 integer digits + 6 places, with room to spare.
_CONTEXT = decimal.Context(prec=34, rounding=decimal.ROUND_HALF_EVEN, traps=[decimal.InvalidOperation])


class CurrencyMismatch(ValueError):
    """Two amounts of different currencies were added or compared (there is no implicit conversion)."""


def parse_currency(text: str) -> str:
    """An ISO 4217 code as three capital letters; ValueError otherwise."""
    code = text.strip().upper()
    if not _CURRENCY.fullmatch(code):
        raise ValueError(f"{text!r} is not a currency code (three letters, e.g. EUR)")
    return code


def parse_amount(text: str | int | Decimal) -> Decimal:
    """An exact amount from text (``"0.0045"``), an int or a Decimal, to :data:`PLACES` places.

    Refuses floats (they are not exact), non-finite values and more than :data:`PLACES` decimals rather
    than round silently: a price list with 7 decimals is a mistake its author must hear about."""
    if isinstance(text, bool) or isinstance(text, float):
        raise ValueError(f"{text!r}: amounts are exact decimals, not floats")
    try:
        d = Decimal(text.strip()) if isinstance(text, str) else Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is not an amount") from None
    if not d.is_finite():
        raise ValueError(f"{text!r} is not an amount")
    try:
        q = d.quantize(_QUANTUM, context=_CONTEXT)
    except decimal.InvalidOperation:
        raise ValueError(f"{text!r} is out of range") from None
    if q != d:
        raise ValueError(f"{text!r} has more than {PLACES} decimal places")
    return q


def _amount(value: Decimal | int | str) -> Decimal:
    return parse_amount(value)


@attrs.frozen(slots=True, order=False)
class Money:
    """An amount and its currency.  Exact arithmetic; mixing currencies raises :class:`CurrencyMismatch`."""

    amount: Decimal = attrs.field(converter=_amount)
    currency: str = attrs.field(converter=parse_currency)

    @classmethod
    def zero(cls, currency: str) -> Money:
        return cls(Decimal(0), currency)

    @classmethod
    def from_micros(cls, micros: int, currency: str) -> Money:
        return cls(Decimal(micros).scaleb(-PLACES), currency)

    def micros(self) -> int:
        """The amount in millionths (exact: amounts have at most :data:`PLACES` places)."""
        return int(self.amount * _SCALE)

    def _same(self, other: Money) -> None:
        if other.currency != self.currency:
            raise CurrencyMismatch(f"{self.currency} and {other.currency} amounts do not mix")

    def __add__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount + other.amount, self.currency)

    def __sub__(self, other: Money) -> Money:
        self._same(other)
        return Money(self.amount - other.amount, self.currency)

    def __neg__(self) -> Money:
        return Money(-self.amount, self.currency)

    def times(self, n: int) -> Money:
        """This amount ``n`` times (a per-part price times the parts)."""
        return Money(self.amount * n, self.currency)

    def __lt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount < other.amount

    def __le__(self, other: Money) -> bool:
        self._same(other)
        return self.amount <= other.amount

    def __gt__(self, other: Money) -> bool:
        self._same(other)
        return self.amount > other.amount

    def __ge__(self, other: Money) -> bool:
        self._same(other)
        return self.amount >= other.amount

    def __str__(self) -> str:
        return f"{self.amount:f} {self.currency}"
