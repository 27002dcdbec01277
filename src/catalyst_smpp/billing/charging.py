"""Pricing one message at accept: its price and cost, the margin guard, and its hold.

:meth:`Charger.charge` is what accept calls per destination, after routing and before our id is given: it
returns the :class:`Charge` the MT record and the message-log rows carry, ``None`` for a partner that is not
billed (no price plan), or raises :class:`Refusal` (with the SMPP status to answer) or :class:`NeedCredit`
(no local lease can hold it yet: the accept batcher awaits :meth:`CreditLeases.acquire` and tries again).

The number of parts a message is priced for is the number of SMS it takes with standard concatenation
(:func:`billable_parts`); a part the partner concatenated itself is one.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Final, Protocol

import attrs

from catalyst_smpp.billing.credit import NEED, REFUSED, CreditLeases
from catalyst_smpp.billing.money import Money
from catalyst_smpp.encoding.datacoding import Alphabet
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.store.records import Partner

__all__ = [
    "CDR_NONE",
    "CHARGE_ON_DELIVERY",
    "CHARGE_ON_SUBMIT",
    "Charge",
    "Charger",
    "NeedCredit",
    "PriceBook",
    "Refusal",
    "billable_parts",
    "cdr_fields",
    "settles_on_receipt",
    "settles_on_submit",
]

log = logging.getLogger(__name__)

CHARGE_ON_SUBMIT: Final = 1
"""A record's ``charge_on`` for a billed message whose price is captured when the operator accepts it
(0: not billed)."""
CHARGE_ON_DELIVERY: Final = 2
"""A record's ``charge_on`` for a billed message whose price is captured on a DELIVRD receipt."""

_RINVDSTADR: Final = int(CommandStatus.ESME_RINVDSTADR)
_RSUBMITFAIL: Final = int(CommandStatus.ESME_RSUBMITFAIL)
_RSYSERR: Final = int(CommandStatus.ESME_RSYSERR)
_CHARGE_ON: Final = {"submit": CHARGE_ON_SUBMIT, "delivery": CHARGE_ON_DELIVERY}

# (single SMS, one part of a concatenated one) per alphabet, in characters (octets for 8-bit data)
_SIZES: Final = {Alphabet.GSM7: (160, 153), Alphabet.UCS2: (70, 67)}
_OCTETS: Final = (140, 134)


def billable_parts(text_octets: int, alphabet: Alphabet) -> int:
    """How many SMS a text of ``text_octets`` octets as the partner sent it takes: GSM 7-bit text one octet
    per septet (160 alone, 153 per part), UCS-2 two octets per character (70 / 67), anything else octets
    (140 / 134)."""
    if alphabet is Alphabet.UCS2:
        single, part = _SIZES[Alphabet.UCS2]
        n = (text_octets + 1) // 2
    elif alphabet is Alphabet.GSM7 or alphabet is Alphabet.IA5 or alphabet is Alphabet.LATIN1:
        single, part = _SIZES[Alphabet.GSM7]
        n = text_octets
    else:
        single, part = _OCTETS
        n = text_octets
    return 1 if n <= single else -(-n // part)


class PriceBook(Protocol):
    """Prices and costs now (built from the configuration snapshot)."""

    def billed(self, partner: str) -> bool:
        """Whether ``partner`` has a price plan."""
        ...

    def price_for(self, partner: str, digits: str, at: float, parts: int = 1) -> Money | None:
        """What ``partner`` pays for a message of ``parts`` parts to ``digits`` at ``at`` (unix seconds) at
        its charging point; None when its plan has no row for the destination."""
        ...

    def cost_for(self, operator: str, digits: str, at: float, parts: int = 1) -> Money | None:
        """What ``operator`` charges us for it; None when there is no cost row (or no cost plan)."""
        ...

    def price_micros(self, partner: str, digits: str, at: float, parts: int = 1) -> tuple[int, str] | None:
        """:meth:`price_for` as (micro-units, currency), without a ``Money`` (per message at accept)."""
        ...

    def cost_micros(self, operator: str, digits: str, at: float, parts: int = 1) -> tuple[int, str] | None:
        """:meth:`cost_for` as (micro-units, currency)."""
        ...


class Refusal(Exception):
    """The message is refused: ``status`` to the partner, ``reason`` for the log and the metrics."""

    def __init__(self, status: int, reason: str, label: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason
        self.label = label  # the metrics' reason: insufficient_credit, unpriced, margin, currency


class NeedCredit(Exception):
    """No local lease can hold ``micros`` yet: acquire one and price the message again."""

    def __init__(self, micros: int) -> None:
        super().__init__(micros)
        self.micros = micros


@attrs.frozen(slots=True)
class Charge:
    """A billed message's charge as its records carry it (amounts in micro-units, for all parts)."""

    charge_on: int
    price: int
    currency: str
    cost: int  # -1: unknown
    cost_currency: str
    lease: int


class Charger:
    """Prices and holds messages for accept (see the module notes)."""

    def __init__(self, book: Callable[[], PriceBook], credit: CreditLeases) -> None:
        """``book``: the prices now (the router's, rebuilt on every configuration reload)."""
        self.book = book
        self.credit = credit

    def charge(self, partner: Partner, digits: str, operator: str, parts: int, at: float) -> Charge | None:
        book = self.book()
        name = partner.system_id
        # micro-units throughout: no Money or Decimal per message on the accept path
        priced = book.price_micros(name, digits, at, parts)
        if priced is None:
            if not book.billed(name):
                return None
            raise Refusal(_RINVDSTADR, f"no price for {digits}", "unpriced")
        micros, currency = priced
        costed = book.cost_micros(operator, digits, at, parts)
        if partner.margin_guard and costed is not None and costed[1] == currency and costed[0] > micros:
            raise Refusal(
                _RSUBMITFAIL, f"cost {costed[0]} above price {micros} (micro-units {currency})", "margin"
            )
        account = self.credit.currency(name)
        if account is not None and account != currency:
            log.error("[%s] price plan in %s, account in %s: refusing", name, currency, account)
            raise Refusal(_RSYSERR, f"price in {currency}, account in {account}", "currency")
        lease = self.credit.hold(name, micros)
        if lease == NEED:
            raise NeedCredit(micros)
        if lease == REFUSED:
            raise Refusal(partner.insufficient_credit_status, "insufficient credit", "insufficient_credit")
        return Charge(
            _CHARGE_ON[partner.charge_on],
            micros,
            currency,
            costed[0] if costed is not None else -1,
            costed[1] if costed is not None else "",
            lease,
        )

    def release(self, partner: str, charge: Charge) -> None:
        """Give back the hold of a message that was not stored."""
        self.credit.unhold(partner, charge.lease, charge.price)


CDR_NONE: Final[dict[str, Any]] = {
    "price": None,
    "currency": None,
    "cost": None,
    "cost_currency": None,
    "lease_id": None,
    "charge_state": None,
}
"""The CDR columns of a message-log row of a message that is not billed."""


def cdr_fields(rec: Any, state: str | None) -> dict[str, Any]:
    """The CDR columns of a message-log row (:class:`~catalyst_smpp.store.records.MessageEvent`'s names)
    from anything that carries a message's charge (a :class:`Charge`, an MT record's view, an id mapping:
    ``charge_on``, ``price``, ``currency``, ``cost``, ``cost_currency``, ``lease``); ``state`` is what the
    row does to the hold (``held``, ``captured``, ``released``, or None: nothing)."""
    if not rec.charge_on:
        return CDR_NONE
    cost = rec.cost
    return {
        "price": rec.price,
        "currency": rec.currency,
        "cost": cost if cost >= 0 else None,
        "cost_currency": rec.cost_currency or None,
        "lease_id": rec.lease,
        "charge_state": state,
    }


def settles_on_submit(rec: Any) -> str:
    """The ``charge_state`` of the ``submitted`` row of a billed message."""
    return "captured" if rec.charge_on == CHARGE_ON_SUBMIT else "held"


def settles_on_receipt(rec: Any, state: str) -> str | None:
    """The ``charge_state`` of a final receipt's row: a charge-on-delivery message is captured on DELIVRD
    and released on any other final state; a charge-on-submit one was settled at submit (None)."""
    if rec.charge_on != CHARGE_ON_DELIVERY:
        return None
    return "captured" if state == "DELIVRD" else "released"
