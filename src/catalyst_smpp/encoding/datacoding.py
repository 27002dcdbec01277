"""The ``data_coding`` octet: what alphabet, message class and coding group it says.

SMPP v3.4 (5.2.19) defines the values 0x00-0x0F itself; above them SMSCs follow the
coding groups of 3GPP TS 23.038 chapter 4 (the SMPP table lists 0xC0-0xFF and calls the
rest reserved, but the general data coding groups 0x10-0x7F are what handsets and SMSCs
send).  ``parse_data_coding`` reads every value and never raises for a value in 0-255:

* 0x00 is the SMSC default alphabet, which differs by peer (GSM 03.38, Latin-1 or
  ASCII): the caller passes it as ``default_alphabet`` (a per-peer setting).
* 0x01-0x0F: SMPP's table (IA5, 8-bit, Latin-1, JIS, Cyrillic, Latin/Hebrew, UCS-2,
  pictogram, ISO-2022-JP, extended Kanji, KS C 5601; 0x0B, 0x0C, 0x0F reserved).
* 0x10-0x7F (00xx xxxx / 01xx xxxx): general data coding, bit 5 = compressed, bit 4 =
  bits 1-0 hold a message class, bits 3-2 the alphabet (GSM 7-bit, 8-bit, UCS-2,
  reserved); 01xx also marks the message for automatic deletion.
* 0x80-0xBF: reserved coding groups.
* 0xC0-0xEF: message waiting indication (discard: GSM; store: GSM; store: UCS-2),
  bit 3 = indication active, bits 1-0 = indication type.
* 0xF0-0xFF: data coding / message class: bit 2 = 8-bit data (else GSM 7-bit), bits
  1-0 = message class; bit 3 reserved.

``data_coding_for`` goes the other way: the octet to send for one of our encodings.
"""

from __future__ import annotations

import enum
from typing import Final

import attrs

from catalyst_smpp.native import lib

__all__ = [
    "Alphabet",
    "CodingGroup",
    "DataCoding",
    "Encoding",
    "IndicationType",
    "MessageClass",
    "data_coding_for",
    "encoding_for",
    "parse_data_coding",
]


class Encoding(enum.IntEnum):
    """The encodings the C core implements (``CSMPP_ENC_*``)."""

    GSM7 = lib.CSMPP_ENC_GSM7
    """GSM 03.38 7-bit, one septet per octet (SMPP's usual form)."""
    GSM7_PACKED = lib.CSMPP_ENC_GSM7_PACKED
    """GSM 03.38 7-bit, septets packed into octets."""
    LATIN1 = lib.CSMPP_ENC_LATIN1
    ASCII = lib.CSMPP_ENC_ASCII
    UCS2 = lib.CSMPP_ENC_UCS2
    """UTF-16BE (UCS-2 plus surrogate pairs for characters beyond the BMP)."""
    BINARY = lib.CSMPP_ENC_BINARY
    """8-bit data: code points 0-255 are the octets."""

    @property
    def is_gsm(self) -> bool:
        return self in (Encoding.GSM7, Encoding.GSM7_PACKED)


class Alphabet(enum.Enum):
    """The character set a data_coding value names."""

    GSM7 = "gsm7"
    IA5 = "ia5"  # IA5 / ASCII (CCITT T.50)
    LATIN1 = "latin1"  # ISO-8859-1
    UCS2 = "ucs2"
    BINARY = "binary"  # 8-bit data
    JIS = "jis"  # JIS X 0208-1990
    CYRILLIC = "cyrillic"  # ISO-8859-5
    LATIN_HEBREW = "latin_hebrew"  # ISO-8859-8
    PICTOGRAM = "pictogram"
    ISO_2022_JP = "iso_2022_jp"  # music codes
    EXTENDED_KANJI_JIS = "extended_kanji_jis"  # JIS X 0212-1990
    KS_C_5601 = "ks_c_5601"
    RESERVED = "reserved"


class CodingGroup(enum.Enum):
    SMPP = "smpp"  # 0x00-0x0F, SMPP's own table
    GENERAL = "general"  # 00xx xxxx above 0x0F
    AUTOMATIC_DELETION = "automatic_deletion"  # 01xx xxxx
    RESERVED = "reserved"  # 1000-1011 xxxx
    MWI_DISCARD = "mwi_discard"  # 1100 xxxx
    MWI_STORE = "mwi_store"  # 1101 xxxx
    MWI_STORE_UCS2 = "mwi_store_ucs2"  # 1110 xxxx
    MESSAGE_CLASS = "message_class"  # 1111 xxxx


class MessageClass(enum.IntEnum):
    CLASS0 = 0  # flash / immediate display
    CLASS1 = 1  # ME specific
    CLASS2 = 2  # (U)SIM specific
    CLASS3 = 3  # TE specific


class IndicationType(enum.IntEnum):
    VOICEMAIL = 0
    FAX = 1
    EMAIL = 2
    OTHER = 3


@attrs.frozen(slots=True)
class DataCoding:
    value: int
    group: CodingGroup
    alphabet: Alphabet
    message_class: MessageClass | None = None
    compressed: bool = False
    indication_active: bool | None = None
    indication_type: IndicationType | None = None

    @property
    def is_text(self) -> bool:
        """True when the alphabet is a character set (not 8-bit data, not reserved)."""
        return self.alphabet not in (Alphabet.BINARY, Alphabet.RESERVED) and not self.compressed


_SMPP_TABLE: Final = {
    0x01: Alphabet.IA5,
    0x02: Alphabet.BINARY,
    0x03: Alphabet.LATIN1,
    0x04: Alphabet.BINARY,
    0x05: Alphabet.JIS,
    0x06: Alphabet.CYRILLIC,
    0x07: Alphabet.LATIN_HEBREW,
    0x08: Alphabet.UCS2,
    0x09: Alphabet.PICTOGRAM,
    0x0A: Alphabet.ISO_2022_JP,
    0x0D: Alphabet.EXTENDED_KANJI_JIS,
    0x0E: Alphabet.KS_C_5601,
}
_GENERAL_ALPHABET: Final = (Alphabet.GSM7, Alphabet.BINARY, Alphabet.UCS2, Alphabet.RESERVED)
_DEFAULT_ALPHABETS: Final = (Alphabet.GSM7, Alphabet.LATIN1, Alphabet.IA5)


def parse_data_coding(value: int, default_alphabet: Alphabet = Alphabet.GSM7) -> DataCoding:
    """What ``value`` (0-255) says; ``default_alphabet`` is what 0x00 means for this peer."""
    if not 0 <= value <= 0xFF:
        raise ValueError(f"data_coding {value} is not an octet")
    if default_alphabet not in _DEFAULT_ALPHABETS:
        raise ValueError(f"default alphabet must be one of {[a.name for a in _DEFAULT_ALPHABETS]}")
    if value == 0x00:
        return DataCoding(value, CodingGroup.SMPP, default_alphabet)
    if value <= 0x0F:
        return DataCoding(value, CodingGroup.SMPP, _SMPP_TABLE.get(value, Alphabet.RESERVED))
    top = value >> 4
    if top <= 0x7:
        group = CodingGroup.GENERAL if top <= 0x3 else CodingGroup.AUTOMATIC_DELETION
        cls = MessageClass(value & 0x03) if value & 0x10 else None
        return DataCoding(
            value,
            group,
            _GENERAL_ALPHABET[(value >> 2) & 0x03],
            message_class=cls,
            compressed=bool(value & 0x20),
        )
    if top <= 0xB:
        return DataCoding(value, CodingGroup.RESERVED, Alphabet.RESERVED)
    if top <= 0xE:
        group = (CodingGroup.MWI_DISCARD, CodingGroup.MWI_STORE, CodingGroup.MWI_STORE_UCS2)[top - 0xC]
        return DataCoding(
            value,
            group,
            Alphabet.UCS2 if top == 0xE else Alphabet.GSM7,
            indication_active=bool(value & 0x08),
            indication_type=IndicationType(value & 0x03),
        )
    return DataCoding(
        value,
        CodingGroup.MESSAGE_CLASS,
        Alphabet.BINARY if value & 0x04 else Alphabet.GSM7,
        message_class=MessageClass(value & 0x03),
    )


def encoding_for(alphabet: Alphabet, *, gsm_packed: bool = False) -> Encoding | None:
    """The C core encoding for an alphabet, or None when the core has none for it."""
    if alphabet is Alphabet.GSM7:
        return Encoding.GSM7_PACKED if gsm_packed else Encoding.GSM7
    return {
        Alphabet.IA5: Encoding.ASCII,
        Alphabet.LATIN1: Encoding.LATIN1,
        Alphabet.UCS2: Encoding.UCS2,
        Alphabet.BINARY: Encoding.BINARY,
    }.get(alphabet)


def data_coding_for(encoding: Encoding, default_alphabet: Alphabet = Alphabet.GSM7) -> int:
    """The data_coding octet to send text of ``encoding`` to a peer whose 0x00 is ``default_alphabet``.

    GSM 7-bit has no data_coding without a message class other than 0x00, so it needs a
    peer whose default alphabet is GSM (ValueError otherwise).  Latin-1 and ASCII are sent
    as 0x00 to a peer whose default they are, else as 0x03 / 0x01.
    """
    if default_alphabet not in _DEFAULT_ALPHABETS:
        raise ValueError(f"default alphabet must be one of {[a.name for a in _DEFAULT_ALPHABETS]}")
    if encoding.is_gsm:
        if default_alphabet is not Alphabet.GSM7:
            raise ValueError("GSM 7-bit text needs a peer whose data_coding 0 is GSM 03.38")
        return 0x00
    if encoding is Encoding.LATIN1:
        return 0x00 if default_alphabet is Alphabet.LATIN1 else 0x03
    if encoding is Encoding.ASCII:
        return 0x00 if default_alphabet is Alphabet.IA5 else 0x01
    if encoding is Encoding.UCS2:
        return 0x08
    return 0x04
