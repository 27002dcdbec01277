"""The GSM 03.38 tables of the C core: the default tables against the gsm0338 codec, and
spot vectors for every national language table of 3GPP TS 23.038 Annex A."""

# ruff: noqa: RUF001, RUF003  (Turkish dotless i is the point of several vectors)

from __future__ import annotations

import codecs

import gsm0338  # type: ignore[import-untyped]  # noqa: F401  (registers the "gsm03.38" codec)
import pytest

from catalyst_smpp.encoding import Encoding, NationalLanguage, decode, encode, gsm_table
from catalyst_smpp.native import NativeError, lib
from tests.encoding.reference import ref_table_char

codecs.lookup("gsm03.38")

L = NationalLanguage


def test_default_alphabet_agrees_with_gsm0338() -> None:
    ours = gsm_table(L.DEFAULT, shift=False)
    for septet in range(128):
        if septet == 0x1B:
            assert ours[septet] is None
            continue
        theirs = bytes([septet]).decode("gsm03.38")
        assert ours[septet] == theirs, hex(septet)
        assert encode(theirs) == bytes([septet])
        assert theirs.encode("gsm03.38") == bytes([septet])


def test_extension_table_agrees_with_gsm0338() -> None:
    ours = gsm_table(L.DEFAULT, shift=True)
    assigned = {s: ch for s, ch in enumerate(ours) if ch is not None}
    assert assigned == {
        0x0A: "\x0c",
        0x14: "^",
        0x28: "{",
        0x29: "}",
        0x2F: "\\",
        0x3C: "[",
        0x3D: "~",
        0x3E: "]",
        0x40: "|",
        0x65: "\u20ac",
    }
    for septet, ch in assigned.items():
        assert bytes([0x1B, septet]).decode("gsm03.38") == ch
        assert ch.encode("gsm03.38") == bytes([0x1B, septet])
        assert encode(ch) == bytes([0x1B, septet])


def test_gsm0338_codec_round_trips_through_ours() -> None:
    text = "".join(ch for ch in gsm_table(L.DEFAULT, shift=False) if ch) + "^{}\\[~]|\u20ac\x0c"
    assert encode(text) == text.encode("gsm03.38")
    assert decode(text.encode("gsm03.38")) == text


@pytest.mark.parametrize("lang", list(L))
@pytest.mark.parametrize("shift", [False, True])
def test_c_tables_match_reference(lang: NationalLanguage, shift: bool) -> None:
    if not shift and not lang.has_locking_shift:
        with pytest.raises(NativeError):
            gsm_table(lang, shift=False)
        return
    table = gsm_table(lang, shift=shift)
    for septet in range(128):
        want = ref_table_char(lang, shift, septet)
        ch = table[septet]
        assert (None if ch is None else ord(ch)) == want, (lang, shift, hex(septet))


def test_table_char_argument_checks() -> None:
    assert lib.csmpp_gsm_table_char(14, 0, 0) == lib.CSMPP_E_ARG
    assert lib.csmpp_gsm_table_char(0, 0, 128) == lib.CSMPP_E_ARG
    assert lib.csmpp_gsm_table_char(-1, 1, 0) == lib.CSMPP_E_ARG
    assert lib.csmpp_gsm_table_char(2, 0, 0) == lib.CSMPP_E_ARG  # Spanish: no locking shift


# (language, shift?, septet, character): values read from 3GPP TS 23.038 Annex A
NATIONAL_VECTORS = [
    # A.2.1 / A.3.1 Turkish
    (L.TURKISH, True, 0x47, "\u011e"),  # Ğ
    (L.TURKISH, True, 0x49, "\u0130"),  # İ
    (L.TURKISH, True, 0x53, "\u015e"),  # Ş
    (L.TURKISH, True, 0x63, "\u00e7"),  # ç
    (L.TURKISH, True, 0x65, "\u20ac"),
    (L.TURKISH, True, 0x67, "\u011f"),  # ğ
    (L.TURKISH, True, 0x69, "\u0131"),  # ı
    (L.TURKISH, True, 0x73, "\u015f"),  # ş
    (L.TURKISH, False, 0x04, "\u20ac"),
    (L.TURKISH, False, 0x07, "\u0131"),
    (L.TURKISH, False, 0x0B, "\u011e"),
    (L.TURKISH, False, 0x0C, "\u011f"),
    (L.TURKISH, False, 0x1C, "\u015e"),
    (L.TURKISH, False, 0x1D, "\u015f"),
    (L.TURKISH, False, 0x40, "\u0130"),
    (L.TURKISH, False, 0x60, "\u00e7"),
    # A.2.2 Spanish
    (L.SPANISH, True, 0x09, "\u00e7"),
    (L.SPANISH, True, 0x41, "\u00c1"),
    (L.SPANISH, True, 0x49, "\u00cd"),
    (L.SPANISH, True, 0x4F, "\u00d3"),
    (L.SPANISH, True, 0x55, "\u00da"),
    (L.SPANISH, True, 0x61, "\u00e1"),
    (L.SPANISH, True, 0x69, "\u00ed"),
    (L.SPANISH, True, 0x6F, "\u00f3"),
    (L.SPANISH, True, 0x75, "\u00fa"),
    (L.SPANISH, True, 0x65, "\u20ac"),
    # A.2.3 / A.3.3 Portuguese
    (L.PORTUGUESE, True, 0x05, "\u00ea"),
    (L.PORTUGUESE, True, 0x12, "\u03a6"),
    (L.PORTUGUESE, True, 0x5B, "\u00c3"),
    (L.PORTUGUESE, True, 0x7F, "\u00e2"),
    (L.PORTUGUESE, False, 0x04, "\u00ea"),
    (L.PORTUGUESE, False, 0x12, "\u00aa"),
    (L.PORTUGUESE, False, 0x15, "\u221e"),
    (L.PORTUGUESE, False, 0x16, "^"),
    (L.PORTUGUESE, False, 0x18, "\u20ac"),
    (L.PORTUGUESE, False, 0x24, "\u00ba"),
    (L.PORTUGUESE, False, 0x60, "~"),
    (L.PORTUGUESE, False, 0x7B, "\u00e3"),
    (L.PORTUGUESE, False, 0x7D, "`"),
    # Indian languages: locking shift starts with the vowel signs / vowels of each script
    (L.BENGALI, False, 0x00, "\u0981"),
    (L.BENGALI, False, 0x03, "\u0985"),
    (L.BENGALI, True, 0x19, "\u09e6"),  # Bengali digit zero (no danda in this table)
    (L.BENGALI, True, 0x1C, "\u09e8"),
    (L.GUJARATI, False, 0x00, "\u0a81"),
    (L.GUJARATI, True, 0x1C, "\u0ae6"),
    (L.HINDI, False, 0x00, "\u0901"),
    (L.HINDI, False, 0x15, "\u0915"),  # KA
    (L.HINDI, False, 0x2C, ","),
    (L.HINDI, True, 0x19, "\u0964"),  # danda
    (L.HINDI, True, 0x1C, "\u0966"),  # Devanagari digit zero
    (L.KANNADA, False, 0x24, "\u0ca1"),  # DDA (the spec prints U+0CAA here by mistake)
    (L.KANNADA, True, 0x1C, "\u0ce6"),
    (L.MALAYALAM, False, 0x01, "\u0d02"),
    (L.MALAYALAM, True, 0x1C, "\u0d66"),
    (L.ORIYA, False, 0x00, "\u0b01"),
    (L.ORIYA, True, 0x1C, "\u0b66"),
    (L.PUNJABI, False, 0x00, "\u0a01"),
    (L.PUNJABI, True, 0x1C, "\u0a66"),
    (L.TAMIL, False, 0x01, "\u0b82"),
    (L.TAMIL, True, 0x24, "\u0bee"),
    (L.TELUGU, False, 0x00, "\u0c01"),
    (L.TELUGU, True, 0x22, "\u0c6c"),
    (L.TELUGU, True, 0x23, "\u0c6d"),
    (L.URDU, False, 0x00, "\u0627"),  # ALEF
    (L.URDU, True, 0x1C, "\u06f0"),
]


@pytest.mark.parametrize(("lang", "shift", "septet", "char"), NATIONAL_VECTORS)
def test_national_table_vectors(lang: NationalLanguage, shift: bool, septet: int, char: str) -> None:
    assert gsm_table(lang, shift=shift)[septet] == char
    if shift:
        data = encode(char, Encoding.GSM7, single_shift=lang)
        main = gsm_table(L.DEFAULT, shift=False)
        want = bytes([main.index(char)]) if char in main else bytes([0x1B, septet])
        assert data == want
        assert decode(bytes([0x1B, septet]), single_shift=lang) == char
    else:
        assert decode(bytes([septet]), locking_shift=lang) == char
        assert encode(char, Encoding.GSM7, locking_shift=lang)[:1] in (bytes([septet]), bytes([0x1B]))


@pytest.mark.parametrize("lang", [lang for lang in L if lang >= L.BENGALI])
def test_indian_locking_tables_carry_the_common_punctuation(lang: NationalLanguage) -> None:
    table = gsm_table(lang, shift=False)
    for ch in " !(),.0123456789:;?\n\rabcdefghijklmnopqrstuvwxyz":
        assert ch in table, (lang, ch)
    shift = gsm_table(lang, shift=True)
    for ch in "@$\"'*+-/<=>^_#{}\\[~]|\u20acABCXYZ\x0c":
        assert ch in shift, (lang, ch)


def test_turkish_text_both_tables() -> None:
    text = "Günaydın, İstanbul! Şişli'de çay içtik. €5"
    for single, locking in [(L.TURKISH, L.DEFAULT), (L.DEFAULT, L.TURKISH), (L.TURKISH, L.TURKISH)]:
        data = encode(text, single_shift=single, locking_shift=locking)
        assert decode(data, single_shift=single, locking_shift=locking) == text
    with pytest.raises(ValueError, match="GSM7 cannot encode 'ı'"):
        encode(text)


def test_hindi_text_with_locking_table() -> None:
    text = "नमस्ते, आप कैसे हैं? १२३"
    data = encode(text, single_shift=L.HINDI, locking_shift=L.HINDI)
    assert len(data) == len(text) + 3  # the three digits come through the single-shift table
    assert decode(data, single_shift=L.HINDI, locking_shift=L.HINDI) == text
