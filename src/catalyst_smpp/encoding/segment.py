"""Segmentation of a text into short messages, planned in one C call (``csmpp_seg_plan``).

``segment(text, ref=..., policy=...)`` picks the encoding (or takes the one given),
splits the text into parts and builds each part's ``short_message`` (UDH + payload):

* capacity per part from the real UDH length: 160 septets / 140 octets / 70 UCS-2
  units in a lone message, 153 / 134 / 67 with an 8-bit-reference concatenation IE,
  less again with a 16-bit reference, national language IEs or port IEs;
* a GSM escape pair or a UTF-16 surrogate pair is never split;
* concatenation per peer (:class:`SegmentMethod`): UDH IE 0x00 (8-bit reference), UDH
  IE 0x08 (16-bit), SAR TLVs (``Part.sar_*``), or one message with the whole text in
  ``message_payload``;
* national language IEs (0x24 single shift, 0x25 locking shift) and the application
  port IE (0x04 8-bit / 0x05 16-bit) are repeated in every part;
* packed GSM parts carry the fill bits that align the septets after the UDH.

The automatic choice takes the cheapest (fewest parts, then fewest bits) of: GSM 7-bit,
GSM 7-bit with the national tables the policy allows, ASCII / Latin-1 when allowed,
UCS-2 -- in that order of preference on a tie.  The reference number is the caller's.
"""

from __future__ import annotations

import enum
from typing import Final, NamedTuple

import attrs

from catalyst_smpp.encoding.codecs import (
    Errors,
    NationalLanguage,
    UnencodableCharacterError,
    replacement_code,
    text_buffer,
)
from catalyst_smpp.encoding.datacoding import Alphabet, Encoding, data_coding_for
from catalyst_smpp.native import NativeError, ffi, lib

__all__ = [
    "Part",
    "SegmentMethod",
    "Segmentation",
    "SegmentationError",
    "TextPolicy",
    "segment",
]

UDHI: Final = 0x40
_E_UNMAPPABLE: Final[int] = lib.CSMPP_E_UNMAPPABLE
_E_INPUT: Final[int] = lib.CSMPP_E_INPUT
_E_ARG: Final[int] = lib.CSMPP_E_ARG
_MAX_PARTS: Final[int] = lib.CSMPP_SEG_MAX_PARTS
_AUTO: Final[int] = lib.CSMPP_ENC_AUTO
_INFO_LEN: Final[int] = lib.CSMPP_SEG_INFO_LEN


class SegmentMethod(enum.IntEnum):
    """How the parts of a long message are tied together (a per-peer setting)."""

    UDH8 = lib.CSMPP_SEG_UDH8
    UDH16 = lib.CSMPP_SEG_UDH16
    SAR = lib.CSMPP_SEG_SAR
    PAYLOAD = lib.CSMPP_SEG_PAYLOAD


class SegmentationError(ValueError):
    """The text needs more than 255 parts, or more than 65535 octets in message_payload."""


@attrs.frozen(slots=True)
class TextPolicy:
    """What a peer accepts; one per partner / operator."""

    default_alphabet: Alphabet = Alphabet.GSM7
    """What data_coding 0 means at this peer: GSM7, LATIN1 or IA5."""
    gsm_packed: bool = False
    """Send GSM 7-bit packed (most SMSCs want one septet per octet)."""
    national_languages: frozenset[NationalLanguage] = frozenset()
    """National shift tables the automatic choice may use (their handsets must know them)."""
    allow_latin1: bool = False
    """May the automatic choice send Latin-1 (data_coding 3, or 0 if that is the default)."""
    allow_ascii: bool = False
    """May the automatic choice send IA5 (data_coding 1, or 0 if that is the default)."""
    allow_ucs2: bool = True
    segment_method: SegmentMethod = SegmentMethod.UDH8
    errors: Errors = "strict"
    replacement: str = "?"

    def auto_encodings(self) -> int:
        """The bit mask of candidate encodings for ``csmpp_seg_plan``."""
        mask = 0
        if self.default_alphabet is Alphabet.GSM7:
            mask |= 1 << (Encoding.GSM7_PACKED if self.gsm_packed else Encoding.GSM7)
        if self.allow_ascii or self.default_alphabet is Alphabet.IA5:
            mask |= 1 << Encoding.ASCII
        if self.allow_latin1 or self.default_alphabet is Alphabet.LATIN1:
            mask |= 1 << Encoding.LATIN1
        if self.allow_ucs2:
            mask |= 1 << Encoding.UCS2
        return mask

    def language_mask(self) -> int:
        mask = 0
        for lang in self.national_languages:
            if lang is not NationalLanguage.DEFAULT:
                mask |= 1 << lang
        return mask


DEFAULT_POLICY: Final = TextPolicy()


class Part(NamedTuple):
    """One short message, ready for submit_sm / deliver_sm."""

    udh: bytes
    """The UDH with its length octet, or b""."""
    payload: bytes
    """The encoded text after the UDH (packed GSM: starting with the fill bits)."""
    data_coding: int
    esm_class: int
    """0x40 (UDHI) when there is a UDH, else 0; OR it into the PDU's esm_class."""
    sar_msg_ref_num: int | None
    sar_total_segments: int | None
    sar_segment_seqnum: int | None
    text_start: int
    """Index in the text of the first character of this part."""
    text_end: int

    @property
    def short_message(self) -> bytes:
        return self.udh + self.payload


@attrs.frozen(slots=True)
class Segmentation:
    parts: tuple[Part, ...]
    encoding: Encoding
    data_coding: int
    single_shift: NationalLanguage
    locking_shift: NationalLanguage
    units: int
    """Septets, octets or UTF-16 units of the whole text."""
    method: SegmentMethod
    fill_bits: int

    @property
    def use_message_payload(self) -> bool:
        return self.method is SegmentMethod.PAYLOAD


def segment(
    text: str,
    *,
    ref: int = 0,
    policy: TextPolicy = DEFAULT_POLICY,
    encoding: Encoding | None = None,
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    method: SegmentMethod | None = None,
    ports: tuple[int, int] | None = None,
    port_ie_16bit: bool | None = None,
) -> Segmentation:
    """Split ``text`` into short messages; see the module doc.

    ``ref``: the concatenation reference (0-255 for UDH8, 0-65535 otherwise).
    ``encoding``: None = the automatic choice under ``policy``; else this encoding with
    ``single_shift`` / ``locking_shift`` (GSM only).  ``method``: overrides the policy's.
    ``ports``: (destination, source) application ports; 8-bit IE when both are below 256
    unless ``port_ie_16bit``.
    Raises :class:`UnencodableCharacterError` (strict policy), :class:`SegmentationError`,
    ValueError for bad arguments.
    """
    seg_method = policy.segment_method if method is None else method
    repl = replacement_code(policy.errors, policy.replacement)
    if encoding is None:
        enc_arg, auto_encs, auto_langs = _AUTO, policy.auto_encodings(), policy.language_mask()
        if single_shift or locking_shift:
            raise ValueError("single_shift / locking_shift go with an explicit encoding")
    else:
        enc_arg, auto_encs, auto_langs = int(encoding), 0, 0
        if not NationalLanguage(locking_shift).has_locking_shift:
            raise ValueError(f"{NationalLanguage(locking_shift).name} has no locking-shift table")
        if encoding.is_gsm and policy.default_alphabet is not Alphabet.GSM7:
            raise ValueError("GSM 7-bit text needs a peer whose data_coding 0 is GSM 03.38")
    port_ie = dst = src = 0
    if ports is not None:
        dst, src = ports
        wide = port_ie_16bit if port_ie_16bit is not None else (dst > 0xFF or src > 0xFF)
        port_ie = 16 if wide else 8

    buf, width = text_buffer(text)
    n = len(text)
    cap = lib.csmpp_seg_max_len(n, seg_method)
    out = bytearray(cap)
    max_parts = min(_MAX_PARTS, n + 1) if seg_method != SegmentMethod.PAYLOAD else 1
    parts_arr = ffi.new("int32_t[]", 5 * max_parts)
    info = ffi.new("int32_t[]", _INFO_LEN)
    rc: int = lib.csmpp_seg_plan(
        ffi.from_buffer(buf), n, width, enc_arg, single_shift, locking_shift, auto_encs, auto_langs,
        seg_method, ref, port_ie, dst, src, repl, ffi.from_buffer(out), cap, parts_arr, max_parts, info,
    )  # fmt: skip
    if rc < 0:
        if rc == _E_UNMAPPABLE:
            pos = int(info[4])
            raise UnencodableCharacterError(
                text[pos], pos, Encoding(int(info[0]) if encoding is None else encoding)
            )
        if rc == _E_INPUT:
            if seg_method == SegmentMethod.PAYLOAD:
                raise SegmentationError(f"message_payload of {info[5]} octets exceeds 65535")
            raise SegmentationError(f"text needs {info[5]} parts, more than {_MAX_PARTS}")
        if rc == _E_ARG:
            raise ValueError(
                f"segment: argument out of range (ref={ref}, ports={ports}, method={seg_method!r})"
            )
        raise NativeError(rc, "seg_plan")

    enc = Encoding(int(info[0]))
    data_coding = data_coding_for(enc, policy.default_alphabet)
    mv = memoryview(out)
    sar = seg_method == SegmentMethod.SAR and rc > 1
    result = []
    for i in range(rc):
        off, udh_len, sm_len, start, end = parts_arr[5 * i : 5 * i + 5]
        result.append(
            Part(
                bytes(mv[off : off + udh_len]),
                bytes(mv[off + udh_len : off + sm_len]),
                data_coding,
                UDHI if udh_len else 0,
                ref if sar else None,
                rc if sar else None,
                i + 1 if sar else None,
                start,
                end,
            )
        )
    return Segmentation(
        tuple(result),
        enc,
        data_coding,
        NationalLanguage(int(info[1])),
        NationalLanguage(int(info[2])),
        int(info[3]),
        seg_method,
        int(info[6]),
    )
