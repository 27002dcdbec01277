"""Text <-> octets by data_coding, and splitting long texts into concatenated parts, for the test tools.

A small stand-in for ``catalyst_smpp.encoding`` (the gateway's codecs in the C core)
so the simulator and the load generator can encode and decode texts: GSM 03.38
(unpacked, one septet per octet, as SMPP carries it; through the ``gsm0338``
codec), IA5/ASCII, Latin-1 and UCS-2.  Splitting never cuts a GSM escape pair or
a UTF-16 surrogate pair, and counts each part's room with a 6-octet UDH
(153 GSM septets, 134 octets, 67 UCS-2 units).
"""

from __future__ import annotations

import codecs
import enum
from typing import Final

__all__ = [
    "DataCoding",
    "UnsupportedDataCoding",
    "choose_data_coding",
    "decode_for_data_coding",
    "encode_for_data_coding",
    "split_octets",
]

try:
    import gsm0338  # type: ignore[import-untyped]  # noqa: F401  (registers the "gsm03.38" codec)

    codecs.lookup("gsm03.38")
    _HAVE_GSM = True
except (ImportError, LookupError):  # pragma: no cover
    _HAVE_GSM = False


class UnsupportedDataCoding(ValueError):
    pass


class DataCoding(enum.IntEnum):
    DEFAULT = 0x00  # SMSC default alphabet: GSM 03.38 here
    IA5 = 0x01
    BINARY = 0x02
    LATIN1 = 0x03
    BINARY_8BIT = 0x04
    UCS2 = 0x08


_CODEC: Final = {0x00: "gsm03.38", 0x01: "ascii", 0x03: "latin-1", 0x08: "utf-16-be"}

SINGLE_OCTETS: Final = 140
SINGLE_SEPTETS: Final = 160
PART_SEPTETS: Final = 153
PART_OCTETS: Final = 134


def _codec(data_coding: int) -> str:
    dc = data_coding
    if dc & 0xF0 == 0xF0:  # message class coding group: bit 2 selects 8-bit data, else GSM
        dc = 0x04 if dc & 0x04 else 0x00
    name = _CODEC.get(dc)
    if name is None:
        raise UnsupportedDataCoding(f"data_coding 0x{data_coding:02X} is not a text coding here")
    if name == "gsm03.38" and not _HAVE_GSM:  # pragma: no cover
        raise UnsupportedDataCoding("no GSM 03.38 codec installed")
    return name


def encode_for_data_coding(text: str, data_coding: int) -> bytes:
    return text.encode(_codec(data_coding))


def decode_for_data_coding(data: bytes, data_coding: int) -> str:
    return bytes(data).decode(_codec(data_coding))


def choose_data_coding(text: str) -> int:
    """GSM 03.38 when every character has a GSM spelling, else UCS-2."""
    try:
        encode_for_data_coding(text, DataCoding.DEFAULT)
    except (UnicodeEncodeError, UnsupportedDataCoding):
        return int(DataCoding.UCS2)
    return int(DataCoding.DEFAULT)


def split_octets(data: bytes, data_coding: int) -> list[bytes]:
    """The encoded text as one part when it fits one message, else as parts sized for a 6-octet UDH."""
    gsm = _codec(data_coding) == "gsm03.38"
    ucs2 = data_coding == DataCoding.UCS2
    single, room = (SINGLE_SEPTETS, PART_SEPTETS) if gsm else (SINGLE_OCTETS, PART_OCTETS)
    if len(data) <= single:
        return [data]
    parts: list[bytes] = []
    i = 0
    while i < len(data):
        end = min(i + room, len(data))
        if end < len(data):
            if gsm and data[end - 1] == 0x1B:  # never split an escape pair
                end -= 1
            elif ucs2:
                end -= (end - i) % 2
                high = (data[end - 2] << 8) | data[end - 1]
                if 0xD800 <= high <= 0xDBFF:  # never split a surrogate pair
                    end -= 2
        parts.append(data[i:end])
        i = end
    return parts
