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
    _tls,
    c_text,
    replacement_code,
    scratch,
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
    # derived once, for segment()'s hot path (not part of the policy's identity)
    _plan_args: tuple[int, int, int | None] = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        try:
            repl: int | None = replacement_code(self.errors, self.replacement)
        except ValueError:
            repl = None  # reported by segment(), as before
        object.__setattr__(self, "_plan_args", (self.auto_encodings(), self.language_mask(), repl))

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
    auto_encs, auto_langs, repl = policy._plan_args
    if repl is None:
        repl = replacement_code(policy.errors, policy.replacement)  # raises the ValueError
    if encoding is None:
        enc_arg = _AUTO
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

    if text.isascii():
        buf: object = text.encode("ascii")
        width = 1
    else:
        buf, width = c_text(text)
    n = len(text)
    cap = _max_len(n, seg_method)
    sc = _tls.__dict__.get("s")
    if sc is None or sc.size < cap:
        sc = scratch(cap)
    parts_arr, info, out_bytes = sc.parts, sc.info, sc.out_bytes
    # IntEnum arguments cost cffi a __index__ call each: plain ints for the common defaults
    rc: int = _seg_plan(
        buf, n, width, enc_arg, int(single_shift) if single_shift else 0,
        int(locking_shift) if locking_shift else 0, auto_encs, auto_langs, _METHOD_INT[seg_method],
        ref, port_ie, dst, src, repl, sc.out, sc.size, parts_arr, _MAX_PARTS, info,
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

    enc_v, single_v, locking_v, units, _err, _np, fill, udh_len = _unpack(info, _INFO_LEN)
    enc = _ENCODINGS[enc_v]
    data_coding = _data_coding(enc, policy.default_alphabet)
    meta = _unpack(parts_arr, 5 * rc)
    new_part = _new_tuple
    esm = UDHI if udh_len else 0
    if seg_method == SegmentMethod.SAR and rc > 1:
        result = tuple(
            [
                new_part(
                    Part,
                    (
                        out_bytes[off : off + udh_len],
                        out_bytes[off + udh_len : off + sm_len],
                        data_coding,
                        esm,
                        ref,
                        rc,
                        seq,
                        start,
                        end,
                    ),
                )
                for seq, (off, _udh, sm_len, start, end) in enumerate(zip(*[iter(meta)] * 5, strict=True), 1)
            ]
        )
    else:
        result = tuple(
            [
                new_part(
                    Part,
                    (
                        out_bytes[off : off + udh_len],
                        out_bytes[off + udh_len : off + sm_len],
                        data_coding,
                        esm,
                        None,
                        None,
                        None,
                        start,
                        end,
                    ),
                )
                for off, _udh, sm_len, start, end in zip(*[iter(meta)] * 5, strict=True)
            ]
        )
    return Segmentation(
        result,
        enc,
        data_coding,
        _LANGUAGES[single_v],
        _LANGUAGES[locking_v],
        units,
        seg_method,
        fill,
    )


# --- hot-path helpers -------------------------------------------------------------------

_seg_plan: Final = lib.csmpp_seg_plan
_max_len: Final = lib.csmpp_seg_max_len
_unpack: Final = ffi.unpack
_new_tuple: Final = tuple.__new__
_METHOD_INT: Final = {m: int(m) for m in SegmentMethod}
_ENCODINGS: Final = {int(e): e for e in Encoding}
_LANGUAGES: Final = {int(lang): lang for lang in NationalLanguage}
_DATA_CODING: dict[tuple[Encoding, Alphabet], int] = {}


def _data_coding(enc: Encoding, default_alphabet: Alphabet) -> int:
    key = (enc, default_alphabet)
    value = _DATA_CODING.get(key)
    if value is None:
        value = _DATA_CODING[key] = data_coding_for(enc, default_alphabet)
    return value
