"""Message-id normalisation: one canonical key for the id an operator gives twice.

An operator's ``submit_sm_resp`` and its later delivery receipt should carry the
same message id, but in the field they often do not spell it the same way: hex
in the response and decimal in the receipt (or the other way round), leading
zeros on one side only, upper case on one side and lower on the other.  The
gateway stores ``key -> our message`` when the response arrives and looks the
key up again when the receipt arrives, so both sides must be turned into the
same key.  :func:`normalise_id` is the one rule, applied per side with that
side's form (the gateway's operator settings ``submit_id_format`` and
``receipt_id_format``; the load generator's :class:`IdRule` names a pair).

Forms (outer whitespace and NULs are always removed):

``hex`` / ``dec`` / ``auto``   the number the id spells (``hex``: optional ``0x``, any case;
                               ``auto``: hex when it has a ``0x`` or a letter ``a-f``), as its
                               decimal spelling: ``"255"`` for ``"ff"``, ``"0xFF"``, ``"000255"``.
``text``                       lower case, leading zeros removed (``"0"`` stays).
``lower``                      lower case.
``as_is``                      the id itself.

An id a numeric form cannot read (``"xyz"`` as ``hex``) gets its ``text`` key: it still meets the
same id read as ``text`` on the other side, and it can never collide with a numeric key (it keeps
the character that made it unreadable, so it is never all digits).  Never raises for an id; an
unknown form is a ValueError.
"""

from __future__ import annotations

import enum
from typing import Final

__all__ = ["FORMS", "IdRule", "IdSide", "id_key", "is_valid_id", "normalise_id", "parse_id_rule"]


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


FORMS: Final = ("hex", "dec", "auto", "text", "lower", "as_is")

# rule -> (form of the submit_sm_resp id, form of the receipt id)
_FORMS: Final[dict[IdRule, tuple[str, str]]] = {
    IdRule.AS_IS: ("as_is", "as_is"),
    IdRule.CASE_INSENSITIVE: ("lower", "lower"),
    IdRule.STRIP_LEADING_ZEROS: ("text", "text"),
    IdRule.HEX: ("hex", "hex"),
    IdRule.DEC: ("dec", "dec"),
    IdRule.HEX_TO_DEC: ("hex", "dec"),
    IdRule.DEC_TO_HEX: ("dec", "hex"),
    IdRule.NUMERIC: ("auto", "auto"),
}
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


def normalise_id(raw: str, form: str) -> str:
    """The canonical key of an operator message id read in ``form`` (see the module notes)."""
    text = raw.strip(_STRIP)
    if form == "auto":
        form = "hex" if text[:2] in ("0x", "0X") or not _HEX_LETTERS.isdisjoint(text) else "dec"
    if form == "hex":
        # ASCII letters and digits only, so no sign, space or "_" that int() would take; int() then takes
        # exactly hex digits after an optional 0x
        if text.isascii() and text.isalnum():
            try:
                return str(int(text, 16))
            except ValueError:
                pass
    elif form == "dec":
        if text.isascii() and text.isdigit():
            return str(int(text, 10))
    elif form == "as_is":
        return text
    elif form == "lower":
        return text.lower()
    elif form != "text":
        raise ValueError(f"unknown id format {form!r} (known: {', '.join(FORMS)})")
    stripped = text.lower().lstrip("0")
    if stripped[:1] and stripped[0] in _STRIP:
        # a zero before what the next normalisation would strip (an inner NUL or space) stays: without it the
        # key would not be its own key ("0\x000" -> "\x000" -> "0")
        stripped = "0" + stripped
    return stripped or ("0" if text else "")


def _form(rule: IdRule, side: IdSide) -> str:
    forms = _FORMS[rule]
    return forms[0] if side is IdSide.SUBMIT_RESP else forms[1]


def is_valid_id(message_id: str, rule: IdRule, side: IdSide = IdSide.RECEIPT) -> bool:
    """Is ``message_id`` spelt as ``rule`` expects on ``side`` (any non-blank id for the text rules)?"""
    form = _form(rule, side)
    if form in ("hex", "dec", "auto"):
        # a numeric form reads it as a number exactly when its key is one: the ``text`` key of an id it
        # cannot read keeps the character that made it unreadable (see the module notes)
        key = normalise_id(message_id, form)
        return key.isascii() and key.isdigit()
    return bool(message_id.strip(_STRIP))


def id_key(message_id: str, rule: IdRule, side: IdSide = IdSide.RECEIPT) -> str:
    """An operator message id's key under ``rule`` on ``side``: :func:`normalise_id` in that side's form."""
    return normalise_id(message_id, _form(rule, side))
