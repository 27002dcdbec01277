"""Message-id normalisation: one canonical key for the id an operator gives twice.

An operator's ``submit_sm_resp`` and its later delivery receipt should carry the
same message id, but in the field they often do not spell it the same way: hex
in the response and decimal in the receipt (or the other way round), leading
zeros on one side only, upper case on one side and lower on the other.  The
gateway stores ``key -> our message`` when the response arrives and looks the
key up again when the receipt arrives, so both sides must be turned into the
same key by a rule configured per operator (:class:`IdRule`).

``id_key(message_id, rule, side)`` never raises.  Under the numeric rules the
key is the decimal spelling of the number (``"255"`` for ``"ff"``, ``"0xFF"``,
``"000255"`` ...).  An id that cannot be read the way the rule says (``"xyz"``
under ``HEX``) gets a fallback key ``"?" + lower-cased id``: it can never collide
with a numeric key (those are digits only), it still matches the same malformed
id on the other side, and ``is_valid_id`` lets the caller count such ids.
"""

from __future__ import annotations

import enum
import string
from typing import Final

__all__ = ["IdRule", "IdSide", "id_key", "is_valid_id", "parse_id_rule"]


class IdSide(enum.Enum):
    """Where an operator's message id was read."""

    SUBMIT_RESP = "submit_resp"  # submit_sm_resp / data_sm_resp message_id
    RECEIPT = "receipt"  # receipt text ``id:`` or the receipted_message_id TLV


class IdRule(enum.Enum):
    """How an operator spells its message ids on the two sides.

    ``AS_IS``               exact string (outer whitespace and NULs removed).
    ``CASE_INSENSITIVE``    as ``AS_IS``, compared in lower case.
    ``STRIP_LEADING_ZEROS`` leading ``0`` removed (``"0"`` stays), lower case.
    ``HEX``                 both sides hex, any case, optional ``0x``, leading zeros.
    ``DEC``                 both sides decimal, leading zeros allowed.
    ``HEX_TO_DEC``          hex in submit_sm_resp, decimal in the receipt.
    ``DEC_TO_HEX``          decimal in submit_sm_resp, hex in the receipt.
    ``NUMERIC``             either side hex or decimal, guessed per id: a ``0x``
                            prefix or any of ``a-f`` means hex, otherwise decimal.
                            The guess is wrong for a hex id made only of digits
                            (``"1234"``), so prefer an explicit rule; this one is
                            for operators that mix spellings unpredictably and
                            whose hex ids always contain a letter.

    The numeric rules all produce the decimal spelling of the number, so the key
    is the same whichever way round the operator writes it.
    """

    AS_IS = "as_is"
    CASE_INSENSITIVE = "case_insensitive"
    STRIP_LEADING_ZEROS = "strip_leading_zeros"
    HEX = "hex"
    DEC = "dec"
    HEX_TO_DEC = "hex_to_dec"
    DEC_TO_HEX = "dec_to_hex"
    NUMERIC = "numeric"


_HEX: Final = "hex"
_DEC: Final = "dec"
_AUTO: Final = "auto"

# rule -> (form of the submit_sm_resp id, form of the receipt id); None = not numeric
_FORMS: Final[dict[IdRule, tuple[str, str]]] = {
    IdRule.HEX: (_HEX, _HEX),
    IdRule.DEC: (_DEC, _DEC),
    IdRule.HEX_TO_DEC: (_HEX, _DEC),
    IdRule.DEC_TO_HEX: (_DEC, _HEX),
    IdRule.NUMERIC: (_AUTO, _AUTO),
}

_HEX_DIGITS: Final = frozenset(string.hexdigits)
_DEC_DIGITS: Final = frozenset(string.digits)
_HEX_LETTERS: Final = frozenset("abcdefABCDEF")
_STRIP: Final = " \t\r\n\x00"


def parse_id_rule(value: str) -> IdRule:
    """Read a rule from configuration text (``"hex_to_dec"``, ``"HEX-TO-DEC"``, ``"as is"`` ...)."""
    norm = value.strip().lower().replace("-", "_").replace(" ", "_")
    try:
        return IdRule(norm)
    except ValueError:
        known = ", ".join(r.value for r in IdRule)
        raise ValueError(f"unknown message id rule {value!r} (known: {known})") from None


def _number(text: str, form: str) -> int | None:
    """The number ``text`` spells in ``form``, or None when it is not such a spelling."""
    if form == _AUTO:
        low = text[:2].lower()
        form = _HEX if low == "0x" or any(c in _HEX_LETTERS for c in text) else _DEC
    if form == _HEX:
        digits = text[2:] if text[:2].lower() == "0x" else text
        if not digits or not all(c in _HEX_DIGITS for c in digits):
            return None
        return int(digits, 16)
    if not text or not all(c in _DEC_DIGITS for c in text):
        return None
    return int(text, 10)


def _form(rule: IdRule, side: IdSide) -> str | None:
    forms = _FORMS.get(rule)
    if forms is None:
        return None
    return forms[0] if side is IdSide.SUBMIT_RESP else forms[1]


def is_valid_id(message_id: str, rule: IdRule, side: IdSide = IdSide.RECEIPT) -> bool:
    """True when ``message_id`` is spelt as ``rule`` expects on ``side`` (always true for the text rules)."""
    text = message_id.strip(_STRIP)
    form = _form(rule, side)
    if form is None:
        return bool(text)
    return _number(text, form) is not None


def id_key(message_id: str, rule: IdRule, side: IdSide = IdSide.RECEIPT) -> str:
    """The canonical lookup key of an operator message id (see the module notes); never raises."""
    text = message_id.strip(_STRIP)
    if rule is IdRule.AS_IS:
        return text
    if rule is IdRule.CASE_INSENSITIVE:
        return text.lower()
    if rule is IdRule.STRIP_LEADING_ZEROS:
        stripped = text.lstrip("0")
        return (stripped or ("0" if text else "")).lower()
    form = _form(rule, side)
    assert form is not None
    number = _number(text, form)
    if number is None:
        return "?" + text.lower()
    return str(number)
