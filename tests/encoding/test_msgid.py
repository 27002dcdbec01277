"""Operator message-id normalisation (catalyst_smpp.encoding.msgid)."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.encoding.msgid import (
    FORMS,
    IdRule,
    IdSide,
    id_key,
    is_valid_id,
    normalise_id,
    parse_id_rule,
)

RESP, RCPT = IdSide.SUBMIT_RESP, IdSide.RECEIPT
numbers = st.integers(min_value=0, max_value=2**80)
zeros = st.integers(0, 6).map(lambda n: "0" * n)
blank = st.sampled_from(["", " ", "\x00", "  \x00\x00", "\t"])


def hex_spellings(n: int) -> st.SearchStrategy[str]:
    digits = format(n, "x")
    return st.tuples(st.sampled_from(["", "0x", "0X"]), zeros, st.booleans(), blank).map(
        lambda t: t[0] + t[1] + (digits.upper() if t[2] else digits) + t[3]
    )


def dec_spellings(n: int) -> st.SearchStrategy[str]:
    return st.tuples(zeros, blank).map(lambda t: t[0] + str(n) + t[1])


@given(numbers.flatmap(lambda n: st.tuples(st.just(n), hex_spellings(n), dec_spellings(n))))
def test_hex_resp_and_decimal_receipt_meet(t: tuple[int, str, str]) -> None:
    n, hex_id, dec_id = t
    assert id_key(hex_id, IdRule.HEX_TO_DEC, RESP) == id_key(dec_id, IdRule.HEX_TO_DEC, RCPT) == str(n)
    assert id_key(dec_id, IdRule.DEC_TO_HEX, RESP) == id_key(hex_id, IdRule.DEC_TO_HEX, RCPT) == str(n)


@given(numbers.flatmap(lambda n: st.tuples(st.just(n), hex_spellings(n), hex_spellings(n))))
def test_hex_both_sides_any_case_and_zeros(t: tuple[int, str, str]) -> None:
    n, a, b = t
    assert id_key(a, IdRule.HEX, RESP) == id_key(b, IdRule.HEX, RCPT) == str(n)


@given(numbers.flatmap(lambda n: st.tuples(st.just(n), dec_spellings(n), dec_spellings(n))))
def test_decimal_both_sides_with_zeros(t: tuple[int, str, str]) -> None:
    n, a, b = t
    assert id_key(a, IdRule.DEC, RESP) == id_key(b, IdRule.DEC, RCPT) == str(n)
    assert id_key(a, IdRule.STRIP_LEADING_ZEROS, RESP) == id_key(b, IdRule.STRIP_LEADING_ZEROS, RCPT)


@given(numbers.flatmap(lambda n: st.tuples(st.just(n), dec_spellings(n), hex_spellings(n))))
def test_numeric_guess_meets_when_hex_is_recognisable(t: tuple[int, str, str]) -> None:
    n, dec_id, hex_id = t
    recognisable = hex_id.strip(" \t\x00")[:2].lower() == "0x" or any(c in "abcdefABCDEF" for c in hex_id)
    if recognisable:
        assert id_key(hex_id, IdRule.NUMERIC, RESP) == id_key(dec_id, IdRule.NUMERIC, RCPT) == str(n)
    else:  # digits only: read as decimal, which is the documented limit of the guess
        assert id_key(hex_id, IdRule.NUMERIC, RESP) == str(int(hex_id.strip(" \t\x00"), 10))


@given(
    st.text(alphabet="0123456789abcdefABCDEFxyz-", max_size=24),
    st.sampled_from(list(IdRule)),
    st.sampled_from(list(IdSide)),
)
def test_key_is_idempotent_on_text_rules_and_never_raises(raw: str, rule: IdRule, side: IdSide) -> None:
    key = id_key(raw, rule, side)
    if rule in (IdRule.AS_IS, IdRule.CASE_INSENSITIVE, IdRule.STRIP_LEADING_ZEROS):
        assert id_key(key, rule, side) == key
    elif is_valid_id(raw, rule, side):
        assert key.isdigit()
    else:
        assert not (key.isascii() and key.isdigit())  # never collides with a numeric key


@given(st.text(alphabet="0123456789abcdefABCDEF", min_size=1, max_size=16))
def test_case_insensitive(raw: str) -> None:
    assert id_key(raw.upper(), IdRule.CASE_INSENSITIVE) == id_key(raw.lower(), IdRule.CASE_INSENSITIVE, RESP)


@pytest.mark.parametrize(
    ("rule", "resp", "receipt", "match"),
    [
        (IdRule.AS_IS, "ABC123", "ABC123 ", True),
        (IdRule.AS_IS, "ABC123", "abc123", False),
        (IdRule.CASE_INSENSITIVE, "ABC123", "abc123", True),
        (IdRule.STRIP_LEADING_ZEROS, "000123", "123", True),
        (IdRule.STRIP_LEADING_ZEROS, "000", "0", True),
        (IdRule.STRIP_LEADING_ZEROS, "00AB", "ab", True),
        (IdRule.HEX_TO_DEC, "7B", "123", True),
        (IdRule.HEX_TO_DEC, "0x7b", "0000000123", True),
        (IdRule.HEX_TO_DEC, "7B", "124", False),
        (IdRule.DEC_TO_HEX, "123", "7b", True),
        (IdRule.HEX, "00ff", "FF", True),
        (IdRule.DEC, "00255", "255", True),
        (IdRule.DEC, "255", "ff", False),
        (IdRule.NUMERIC, "7B", "123", True),
        (IdRule.NUMERIC, "123", "0x7B", True),
        (IdRule.HEX, "xyz", "xyz", True),  # equally malformed on both sides still match ...
        (IdRule.HEX, "xyz", "0", False),  # ... but never a numeric key
    ],
)
def test_rule_table(rule: IdRule, resp: str, receipt: str, match: bool) -> None:
    assert (id_key(resp, rule, RESP) == id_key(receipt, rule, RCPT)) is match


def test_validity_and_fallback() -> None:
    assert is_valid_id("0x1F", IdRule.HEX, RESP)
    assert not is_valid_id("0x", IdRule.HEX, RESP)
    assert not is_valid_id("12G", IdRule.HEX_TO_DEC, RESP)
    assert is_valid_id("12", IdRule.HEX_TO_DEC, RCPT)
    assert not is_valid_id("1A", IdRule.HEX_TO_DEC, RCPT)
    assert not is_valid_id("  ", IdRule.AS_IS)
    assert id_key("1A", IdRule.HEX_TO_DEC, RCPT) == "1a"  # unreadable as a number: its text key
    assert id_key("", IdRule.DEC) == ""
    assert id_key("", IdRule.STRIP_LEADING_ZEROS) == ""


@pytest.mark.parametrize(
    ("text", "rule"),
    [
        ("hex_to_dec", IdRule.HEX_TO_DEC),
        ("HEX-TO-DEC", IdRule.HEX_TO_DEC),
        (" as is ", IdRule.AS_IS),
        ("Numeric", IdRule.NUMERIC),
    ],
)
def test_parse_rule(text: str, rule: IdRule) -> None:
    assert parse_id_rule(text) is rule


def test_parse_rule_unknown() -> None:
    with pytest.raises(ValueError, match="unknown message id rule 'octal'"):
        parse_id_rule("octal")


# --------------------------------------------------------------------------- normalise_id (gateway operators)


@pytest.mark.parametrize(
    ("resp_id", "resp_fmt", "dlr_id", "dlr_fmt"),
    [
        ("0A1F", "hex", "2591", "dec"),  # hex in submit_sm_resp, decimal in the receipt
        ("0a1f", "hex", "00002591", "dec"),  # case and leading zeros
        ("2591", "dec", "A1F", "hex"),
        ("0x0A1F", "hex", "2591", "dec"),
        ("ABC-123", "text", "abc-123", "text"),  # case-insensitive text ids
        ("000ABC", "text", "abc", "text"),  # leading zeros
        (" 12345 ", "dec", "12345\x00", "dec"),  # padding and a stray NUL
        ("ffffffffffffffff", "hex", "18446744073709551615", "dec"),  # 64-bit ids
        ("12ab", "dec", "12AB", "text"),  # unreadable as decimal: its text key meets the text side
    ],
)
def test_normalised_ids_meet(resp_id: str, resp_fmt: str, dlr_id: str, dlr_fmt: str) -> None:
    assert normalise_id(resp_id, resp_fmt) == normalise_id(dlr_id, dlr_fmt)


def test_lenient_spellings_int_would_take_are_not_numbers() -> None:
    # int() reads these; an operator id spelt so is not the number (its text key, never a numeric one)
    for raw, form in [
        ("-ff", "hex"),
        ("1_0", "hex"),
        ("0x0x12", "hex"),
        ("+12", "dec"),
        ("١٢", "dec"),
        ("²", "dec"),
    ]:
        assert normalise_id(raw, form) == normalise_id(raw, "text")
    with pytest.raises(ValueError, match="unknown id format"):
        normalise_id("1", "base36")


def _reference_number(raw: str, form: str) -> int | None:
    """The number an id spells in a numeric form, read independently (regular expressions)."""
    text = raw.strip(" \t\r\n\x00")
    if form == "auto":
        form = "hex" if re.match(r"0[xX]", text) or re.search("[a-fA-F]", text) else "dec"
    if form == "hex":
        m = re.fullmatch(r"(?:0[xX])?([0-9a-fA-F]+)", text)
        return int(m.group(1), 16) if m else None
    return int(text) if re.fullmatch("[0-9]+", text) else None


@given(
    st.one_of(st.text(max_size=24), st.text(alphabet="0123456789abcdefxX _-+\x00", max_size=24)),
    st.sampled_from(FORMS),
)
def test_normalise_never_raises_and_numeric_keys_never_collide(raw: str, form: str) -> None:
    key = normalise_id(raw, form)
    if form in ("hex", "dec", "auto"):
        n = _reference_number(raw, form)
        if n is not None:
            assert key == str(n)
        else:  # unreadable as a number: the text key, which is never all ASCII digits
            assert key == normalise_id(raw, "text")
            assert not (key.isascii() and key.isdigit())
    # a key is its own key again: the text forms are idempotent, a number stays its decimal spelling
    assert normalise_id(key, "dec" if form in ("hex", "auto") and key.isdigit() else form) == key


@given(numbers, st.sampled_from(["hex", "dec", "auto"]), st.sampled_from(["hex", "dec"]))
def test_numbers_meet_in_every_spelling(n: int, a: str, b: str) -> None:
    spelt = {"hex": f"0x{n:X}", "dec": f"00{n}", "auto": f"0x{n:x}"}
    assert normalise_id(spelt[a], a) == normalise_id(spelt[b], b) == str(n)


_SPELT = {  # what each numeric form reads as a number (outer whitespace and NULs removed first)
    "hex": re.compile(r"(0[xX])?[0-9a-fA-F]+"),
    "dec": re.compile(r"[0-9]+"),
}


@given(
    st.one_of(st.text(max_size=12), st.text(alphabet="0123456789abcdefxX \x00", max_size=12)),
    st.sampled_from(list(IdRule)),
    st.sampled_from([RESP, RCPT]),
)
def test_validity_is_what_the_form_spells_as_a_number(raw: str, rule: IdRule, side: IdSide) -> None:
    """``is_valid_id`` (read from the key) against the forms' grammar: a numeric form takes exactly its
    digits (``auto``: hex with a ``0x`` or a letter a-f, else decimal); the text forms any non-blank id."""
    text = raw.strip(" \t\r\n\x00")
    form = {"hex_to_dec": "hex", "dec_to_hex": "dec"}.get(rule.value, rule.value)
    if rule in (IdRule.HEX_TO_DEC, IdRule.DEC_TO_HEX) and side is RCPT:
        form = "dec" if rule is IdRule.HEX_TO_DEC else "hex"
    if form == "numeric":
        form = "hex" if text[:2] in ("0x", "0X") or re.search("[a-fA-F]", text) else "dec"
    expected = _SPELT[form].fullmatch(text) is not None if form in _SPELT else bool(text)
    assert is_valid_id(raw, rule, side) is expected


def test_a_zero_before_an_inner_nul_stays_in_the_key() -> None:
    """Found by hypothesis: the key of "0\\x000" was "\\x000", whose own key is "0" (not its own key)."""
    key = normalise_id("0\x000", "hex")
    assert key == "0\x000" and normalise_id(key, "hex") == key
    assert not (key.isascii() and key.isdigit())
