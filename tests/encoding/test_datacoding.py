"""data_coding parsing (SMPP 5.2.19 and the coding groups of 3GPP TS 23.038 chapter 4)."""

from __future__ import annotations

import pytest

from catalyst_smpp.encoding import (
    Alphabet,
    CodingGroup,
    Encoding,
    IndicationType,
    MessageClass,
    data_coding_for,
    encoding_for,
    parse_data_coding,
)

A = Alphabet


@pytest.mark.parametrize(
    ("value", "alphabet"),
    [
        (0x01, A.IA5),
        (0x02, A.BINARY),
        (0x03, A.LATIN1),
        (0x04, A.BINARY),
        (0x05, A.JIS),
        (0x06, A.CYRILLIC),
        (0x07, A.LATIN_HEBREW),
        (0x08, A.UCS2),
        (0x09, A.PICTOGRAM),
        (0x0A, A.ISO_2022_JP),
        (0x0B, A.RESERVED),
        (0x0C, A.RESERVED),
        (0x0D, A.EXTENDED_KANJI_JIS),
        (0x0E, A.KS_C_5601),
        (0x0F, A.RESERVED),
    ],
)
def test_smpp_table(value: int, alphabet: Alphabet) -> None:
    dc = parse_data_coding(value)
    assert (dc.group, dc.alphabet, dc.message_class) == (CodingGroup.SMPP, alphabet, None)


@pytest.mark.parametrize("default", [A.GSM7, A.LATIN1, A.IA5])
def test_zero_is_the_peer_default(default: Alphabet) -> None:
    assert parse_data_coding(0, default).alphabet is default
    with pytest.raises(ValueError):
        parse_data_coding(0, A.UCS2)


def test_general_group() -> None:
    dc = parse_data_coding(0x10)  # GSM 7-bit, class 0
    assert (dc.group, dc.alphabet, dc.message_class, dc.compressed) == (
        CodingGroup.GENERAL, A.GSM7, MessageClass.CLASS0, False,
    )  # fmt: skip
    assert parse_data_coding(0x18).alphabet is A.UCS2
    assert parse_data_coding(0x16).alphabet is A.BINARY
    assert parse_data_coding(0x16).message_class is MessageClass.CLASS2
    assert parse_data_coding(0x1C).alphabet is A.RESERVED
    assert parse_data_coding(0x24).compressed and not parse_data_coding(0x24).is_text
    assert parse_data_coding(0x28).message_class is None  # bit 4 clear: no class
    dc = parse_data_coding(0x48)
    assert (dc.group, dc.alphabet) == (CodingGroup.AUTOMATIC_DELETION, A.UCS2)


def test_reserved_and_mwi_groups() -> None:
    assert parse_data_coding(0x80).group is CodingGroup.RESERVED
    assert parse_data_coding(0xBF).alphabet is A.RESERVED
    dc = parse_data_coding(0xC8)
    assert (dc.group, dc.alphabet, dc.indication_active, dc.indication_type) == (
        CodingGroup.MWI_DISCARD, A.GSM7, True, IndicationType.VOICEMAIL,
    )  # fmt: skip
    dc = parse_data_coding(0xD1)
    assert (dc.group, dc.indication_active, dc.indication_type) == (
        CodingGroup.MWI_STORE,
        False,
        IndicationType.FAX,
    )
    assert parse_data_coding(0xE2).alphabet is A.UCS2
    assert parse_data_coding(0xE2).indication_type is IndicationType.EMAIL


@pytest.mark.parametrize("value", range(0xF0, 0x100))
def test_message_class_group(value: int) -> None:
    dc = parse_data_coding(value)
    assert dc.group is CodingGroup.MESSAGE_CLASS
    assert dc.alphabet is (A.BINARY if value & 0x04 else A.GSM7)
    assert dc.message_class == MessageClass(value & 0x03)


def test_every_octet_parses() -> None:
    for value in range(256):
        parse_data_coding(value)
    with pytest.raises(ValueError):
        parse_data_coding(256)


def test_data_coding_for() -> None:
    assert data_coding_for(Encoding.GSM7) == 0
    assert data_coding_for(Encoding.GSM7_PACKED) == 0
    assert data_coding_for(Encoding.UCS2) == 8
    assert data_coding_for(Encoding.LATIN1) == 3
    assert data_coding_for(Encoding.LATIN1, A.LATIN1) == 0
    assert data_coding_for(Encoding.ASCII) == 1
    assert data_coding_for(Encoding.ASCII, A.IA5) == 0
    assert data_coding_for(Encoding.BINARY) == 4
    with pytest.raises(ValueError):
        data_coding_for(Encoding.GSM7, A.LATIN1)


def test_encoding_for() -> None:
    assert encoding_for(A.GSM7) is Encoding.GSM7
    assert encoding_for(A.GSM7, gsm_packed=True) is Encoding.GSM7_PACKED
    assert encoding_for(A.UCS2) is Encoding.UCS2
    assert encoding_for(A.JIS) is None
