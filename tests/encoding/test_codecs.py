"""encode / decode of the C core: vectors, robustness, and agreement with the slow reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding import (
    Alphabet,
    Encoding,
    NationalLanguage,
    UnencodableCharacterError,
    decode,
    decode_short_message,
    encode,
    encode_counted,
    gsm_table,
)
from catalyst_smpp.native import NativeError
from tests.encoding import reference as ref

L = NationalLanguage
E = Encoding
SETTINGS = settings(max_examples=150, deadline=None)

GSM_BASIC = "".join(ch for ch in gsm_table(L.DEFAULT, shift=False) if ch)
GSM_EXT = "".join(ch for ch in gsm_table(L.DEFAULT, shift=True) if ch)
NATIONAL = "".join(
    ch
    for lang in L
    for shift in (False, True)
    if shift or lang.has_locking_shift
    for ch in gsm_table(lang, shift=shift)
    if ch
)
EMOJI = "😀👍🏽🎉❤️‍🔥🇪🇺"
MIXED = GSM_BASIC + GSM_EXT + NATIONAL + EMOJI + "âçšŁ字\u200d\ufffd\U0010ffff"

mixed_text = st.text(alphabet=st.sampled_from(MIXED), max_size=80)
any_text = st.one_of(mixed_text, st.text(max_size=60))
lang_pairs = st.tuples(
    st.sampled_from(list(L)), st.sampled_from([lang for lang in L if lang.has_locking_shift])
)


# --- vectors -----------------------------------------------------------------------------


def test_gsm_unpacked_vectors() -> None:
    assert encode("@£$") == b"\x00\x01\x02"
    assert encode("Hello €[]") == b"Hello \x1be\x1b<\x1b>"
    assert encode("\n\r\x0c") == b"\n\r\x1b\n"
    assert decode(b"Hello \x1be\x1b<\x1b>") == "Hello €[]"


def test_gsm_packed_vectors() -> None:
    # the classic example of 3GPP TS 23.038 / every SMS tutorial
    assert encode("hellohello", E.GSM7_PACKED) == bytes.fromhex("E8329BFD4697D9EC37")
    assert decode(bytes.fromhex("E8329BFD4697D9EC37"), E.GSM7_PACKED) == "hellohello"
    # 7 characters leave 7 spare bits: they are filled with <CR>, which decoding drops
    data = encode("1234567", E.GSM7_PACKED)
    assert data == bytes.fromhex("31D98C56B3DD1A")
    assert data[-1] >> 1 == 0x0D
    assert decode(data, E.GSM7_PACKED) == "1234567"
    assert decode(data, E.GSM7_PACKED, septets=8) == "1234567\r"
    # one fill bit after a 6-octet UDH
    assert encode("hi", E.GSM7_PACKED, fill_bits=1) == bytes([0x68 << 1, 0x69])
    assert decode(bytes([0xD0, 0x69]), E.GSM7_PACKED, fill_bits=1) == "hi"


def test_other_encodings() -> None:
    assert encode("héllo", E.LATIN1) == "héllo".encode("latin-1")
    assert encode("hello", E.ASCII) == b"hello"
    assert encode("a😀", E.UCS2) == "a😀".encode("utf-16-be")
    assert encode_counted("a😀", E.UCS2) == ("a😀".encode("utf-16-be"), 3)
    assert encode("\x00\xff", E.BINARY) == b"\x00\xff"
    assert decode("ab😀€".encode("utf-16-be"), E.UCS2) == "ab😀€"
    assert decode(b"\xe9", E.LATIN1) == "é"


def test_strict_reports_char_and_position() -> None:
    with pytest.raises(UnencodableCharacterError) as info:
        encode("abc€d", E.LATIN1)
    assert (info.value.char, info.value.position, info.value.encoding) == ("€", 3, E.LATIN1)
    with pytest.raises(UnencodableCharacterError) as info:
        encode("ok 😀", E.GSM7)
    assert (info.value.char, info.value.position) == ("😀", 3)
    with pytest.raises(UnencodableCharacterError) as info:
        encode("x\ud800y", E.UCS2)  # a lone surrogate in the str is no character
    assert (info.value.char, info.value.position) == ("\ud800", 1)
    with pytest.raises(UnencodableCharacterError):
        encode("tab\there")  # GSM has no TAB


def test_replace_mode() -> None:
    assert encode("a😀b", errors="replace") == b"a?b"
    assert encode("a😀b", errors="replace", replacement=" ") == b"a b"
    assert encode("x\ud800y", E.UCS2, errors="replace") == "x?y".encode("utf-16-be")
    assert encode("€", E.ASCII, errors="replace", replacement="*") == b"*"
    assert encode("€", errors="replace", replacement="€") == b"\x1be"
    with pytest.raises(ValueError, match="itself not encodable"):
        encode("字", E.ASCII, errors="replace", replacement="é")
    with pytest.raises(ValueError):
        encode("a", errors="replace", replacement="ab")


def test_decode_never_fails_on_bad_data() -> None:
    assert decode(b"a\x80b") == "a\ufffdb"
    assert decode(b"a\x1b") == "a "  # a lone escape at the end shows as a space
    assert decode(b"\x1b\x1b") == " "  # <ESC><ESC>: reserved, shown as a space
    assert decode(b"\x1bA") == "A"  # no extension character: the default table's one
    assert decode(b"\x1b\xff") == "\ufffd\ufffd"
    assert decode(b"\xd8\x00\x00a", E.UCS2) == "\ufffda"  # lone high surrogate
    assert decode(b"\xdc\x00", E.UCS2) == "\ufffd"  # lone low surrogate
    assert decode(b"\x00a\x00", E.UCS2) == "a\ufffd"  # odd length
    assert decode(b"\xff", E.ASCII) == "\ufffd"
    assert decode(b"\x80", replacement="?") == "?"
    # unassigned positions of a national locking table
    assert decode(b"\x0c", locking_shift=L.BENGALI) == "\ufffd"


def test_argument_errors() -> None:
    with pytest.raises(ValueError, match="no locking-shift table"):
        encode("a", locking_shift=L.SPANISH)
    with pytest.raises(ValueError, match="GSM 7-bit only"):
        encode("a", E.UCS2, single_shift=L.TURKISH)
    with pytest.raises(NativeError):
        encode("a", E.GSM7, fill_bits=1)  # fill bits only for packed
    with pytest.raises(NativeError):
        decode(b"\x00", E.GSM7_PACKED, septets=2)


# --- agreement with the reference ----------------------------------------------------------


def _c_encode(text: str, enc: Encoding, single: int, locking: int, repl: str | None, fill: int) -> object:
    try:
        return encode_counted(
            text,
            enc,
            errors="strict" if repl is None else "replace",
            replacement=repl or "?",
            single_shift=L(single),
            locking_shift=L(locking),
            fill_bits=fill,
        )
    except UnencodableCharacterError as exc:
        return ("unmappable", exc.position)


def _ref_encode(text: str, enc: Encoding, single: int, locking: int, repl: str | None, fill: int) -> object:
    try:
        return ref.ref_encode(text, enc, single, locking, repl, fill)
    except ref.RefUnmappable as exc:
        return ("unmappable", exc.position)


@SETTINGS
@given(any_text, lang_pairs, st.sampled_from([None, "?", " "]), st.integers(0, 6))
def test_encode_gsm_matches_reference(text: str, langs: tuple[L, L], repl: str | None, fill: int) -> None:
    single, locking = langs
    for enc, f in ((E.GSM7, 0), (E.GSM7_PACKED, fill)):
        assert _c_encode(text, enc, single, locking, repl, f) == _ref_encode(
            text, enc, single, locking, repl, f
        )


@SETTINGS
@given(any_text, st.sampled_from([E.LATIN1, E.ASCII, E.UCS2, E.BINARY]), st.sampled_from([None, "?"]))
def test_encode_octets_matches_reference(text: str, enc: Encoding, repl: str | None) -> None:
    assert _c_encode(text, enc, 0, 0, repl, 0) == _ref_encode(text, enc, 0, 0, repl, 0)


@SETTINGS
@given(st.binary(max_size=200), lang_pairs, st.integers(0, 6), st.booleans())
def test_decode_gsm_matches_reference(data: bytes, langs: tuple[L, L], fill: int, give_count: bool) -> None:
    single, locking = langs
    assert decode(data, E.GSM7, single_shift=single, locking_shift=locking) == ref.ref_decode(
        data, E.GSM7, single, locking
    )
    septets = None
    if give_count and len(data) * 8 >= fill:
        septets = (len(data) * 8 - fill) // 7
    assert decode(
        data, E.GSM7_PACKED, single_shift=single, locking_shift=locking, fill_bits=fill, septets=septets
    ) == (ref.ref_decode(data, E.GSM7_PACKED, single, locking, fill, septets))


@SETTINGS
@given(st.binary(max_size=200), st.sampled_from([E.LATIN1, E.ASCII, E.UCS2, E.BINARY]))
def test_decode_octets_matches_reference(data: bytes, enc: Encoding) -> None:
    assert decode(data, enc) == ref.ref_decode(data, enc)


@SETTINGS
@given(mixed_text, lang_pairs, st.integers(0, 6))
def test_round_trip_whenever_encoding_succeeds(text: str, langs: tuple[L, L], fill: int) -> None:
    single, locking = langs
    for enc in E:
        kw = {"single_shift": single, "locking_shift": locking} if enc.is_gsm else {}
        f = fill if enc is E.GSM7_PACKED else 0
        try:
            data, units = encode_counted(text, enc, fill_bits=f, **kw)  # type: ignore[arg-type]
        except UnencodableCharacterError:
            continue
        if enc is E.GSM7_PACKED:
            assert decode(data, enc, fill_bits=f, septets=units, **kw) == text  # type: ignore[arg-type]
            if not text.endswith("\r"):
                assert decode(data, enc, fill_bits=f, **kw) == text  # type: ignore[arg-type]
        else:
            assert decode(data, enc, **kw) == text  # type: ignore[arg-type]


# --- inbound short_message -------------------------------------------------------------------


def test_decode_short_message_with_udh_and_national_ies() -> None:
    body = encode("Şişli", single_shift=L.TURKISH, locking_shift=L.TURKISH)
    udh = bytes([11, 0x00, 3, 7, 2, 1, 0x24, 1, 1, 0x25, 1, 1])
    msg = decode_short_message(udh + body, 0x00, udhi=True)
    assert msg.text == "Şişli"
    assert (msg.single_shift, msg.locking_shift, msg.udh, msg.problems) == (L.TURKISH, L.TURKISH, udh, ())


def test_decode_short_message_packed_after_udh() -> None:
    udh = bytes([5, 0x00, 3, 1, 2, 1])
    body = encode("€uro", E.GSM7_PACKED, fill_bits=1)
    assert decode_short_message(udh + body, 0xF1, udhi=True, gsm_packed=True).text == "€uro"


def test_decode_short_message_data_codings() -> None:
    assert decode_short_message("é€".encode("utf-16-be"), 0x08).text == "é€"
    assert decode_short_message("é".encode("utf-16-be"), 0x18).text == "é"  # general group, UCS-2, class 0
    assert decode_short_message(b"\xe9", 0x03).text == "é"
    assert decode_short_message(b"\xe9", 0x00, default_alphabet=Alphabet.LATIN1).text == "é"
    assert decode_short_message(b"\x05", 0x00).text == "é"  # GSM default
    assert decode_short_message(b"abc", 0x01).text == "abc"
    assert decode_short_message("Жж".encode("iso8859_5"), 0x06).text == "Жж"
    assert decode_short_message(b"\x01\x02", 0x04).text is None
    assert decode_short_message(b"\x01\x02", 0xF4).text is None
    assert decode_short_message(b"abc", 0x25).text is None  # compressed
    assert decode_short_message(b"\x80\x81", 0x00).text == "\ufffd\ufffd"


def test_decode_short_message_bad_udh_is_not_fatal() -> None:
    msg = decode_short_message(b"\x09\x00\x03", 0x00, udhi=True)
    assert msg.text is not None and msg.problems
    msg = decode_short_message(bytes([4, 0x24, 1, 99, 0x25]) + b"abc", 0x00, udhi=True)
    assert msg.text == "abc" and msg.single_shift is L.DEFAULT and msg.problems
    assert decode_short_message(b"", 0x00, udhi=True).text == ""
