"""Text encoding for SMPP: the typed Python face of the C core's codecs and segmentation.

* :mod:`.codecs` -- encode / decode (GSM 03.38 with national tables, Latin-1, ASCII,
  UCS-2/UTF-16BE, 8-bit) and inbound ``short_message`` decoding;
* :mod:`.segment` -- one-call segmentation into parts (UDH 8/16-bit reference, SAR,
  message_payload) with the automatic choice of the cheapest encoding;
* :mod:`.datacoding` -- the data_coding octet (coding groups, message class).

Receipts (:mod:`.receipts`), reassembly (:mod:`.reassembly`) and message ids
(:mod:`.msgid`) are separate modules and are not imported here.
"""

from __future__ import annotations

from catalyst_smpp.encoding.codecs import (
    DecodedMessage,
    Errors,
    NationalLanguage,
    UnencodableCharacterError,
    decode,
    decode_short_message,
    encode,
    encode_counted,
    gsm_table,
)
from catalyst_smpp.encoding.datacoding import (
    Alphabet,
    CodingGroup,
    DataCoding,
    Encoding,
    IndicationType,
    MessageClass,
    data_coding_for,
    encoding_for,
    parse_data_coding,
)
from catalyst_smpp.encoding.segment import (
    DEFAULT_POLICY,
    Part,
    Segmentation,
    SegmentationError,
    SegmentMethod,
    TextPolicy,
    segment,
)

__all__ = [
    "DEFAULT_POLICY",
    "Alphabet",
    "CodingGroup",
    "DataCoding",
    "DecodedMessage",
    "Encoding",
    "Errors",
    "IndicationType",
    "MessageClass",
    "NationalLanguage",
    "Part",
    "SegmentMethod",
    "Segmentation",
    "SegmentationError",
    "TextPolicy",
    "UnencodableCharacterError",
    "data_coding_for",
    "decode",
    "decode_short_message",
    "encode",
    "encode_counted",
    "encoding_for",
    "gsm_table",
    "parse_data_coding",
    "segment",
]
