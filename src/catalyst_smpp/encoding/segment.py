"""Segmentation of a text into short messages, planned in one C call (``csmpp_seg_run``).

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
import struct
from operator import itemgetter
from typing import TYPE_CHECKING, Any, Final, overload

import attrs

from catalyst_smpp.encoding.codecs import (
    Errors,
    NationalLanguage,
    UnencodableCharacterError,
    _tls,
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


_new_tuple: Final = tuple.__new__
if TYPE_CHECKING:
    # CPython's C field getter of namedtuple; typeshed has no stub for ``_collections``.  The
    # class attributes below declare each field's type.
    def _tuplegetter(index: int, doc: str) -> Any: ...

else:
    try:
        from _collections import _tuplegetter
    except ImportError:  # not CPython

        def _tuplegetter(index: int, doc: str) -> Any:
            return property(itemgetter(index), doc=doc)


_CFGS: dict[tuple[int, ...], Any] = {}
_DC_TABLES: dict[Alphabet, tuple[tuple[Encoding, int] | None, ...]] = {}


def _cfg(values: tuple[int, ...]) -> Any:
    """A cached ``int32_t[CSMPP_SEG_CFG_LEN]`` for ``csmpp_seg_run`` (never written to)."""
    cfg = _CFGS.get(values)
    if cfg is None:
        if len(_CFGS) >= 1024:
            _CFGS.clear()
        cfg = _CFGS[values] = ffi.new("int32_t[]", list(values))
    return cfg


def _dc_table(alphabet: Alphabet) -> tuple[tuple[Encoding, int] | None, ...]:
    """For each encoding value: (Encoding, data_coding at a peer whose data_coding 0 is ``alphabet``)."""
    table = _DC_TABLES.get(alphabet)
    if table is None:
        entries: list[tuple[Encoding, int] | None] = []
        for v in range(max(int(e) for e in Encoding) + 1):
            try:
                entries.append((Encoding(v), data_coding_for(Encoding(v), alphabet)))
            except ValueError:
                entries.append(None)
        table = _DC_TABLES[alphabet] = tuple(entries)
    return table


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
    # derived once, for segment()'s fast path (not part of the policy's identity): the
    # csmpp_seg_run settings of the automatic choice (None: a bad replacement, reported by
    # segment()), the segment method, the data_coding of each encoding at this peer
    _plan_args: tuple[Any, SegmentMethod, tuple[tuple[Encoding, int] | None, ...]] = attrs.field(
        init=False, repr=False, eq=False
    )

    def __attrs_post_init__(self) -> None:
        method = SegmentMethod(self.segment_method)
        try:
            repl = replacement_code(self.errors, self.replacement)
        except ValueError:
            cfg = None
        else:
            cfg = _cfg((_AUTO, 0, 0, self.auto_encodings(), self.language_mask(), int(method), 0, 0, 0, repl))
        object.__setattr__(self, "_plan_args", (cfg, method, _dc_table(self.default_alphabet)))

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


class Part(tuple):  # type: ignore[type-arg]
    """One short message, ready for submit_sm / deliver_sm.

    A tuple of (short_message, UDH length, data_coding, esm_class, sar_msg_ref_num,
    sar_total_segments, sar_segment_seqnum, text_start, text_end): the UDH and the payload
    are slices of ``short_message`` made on access.  ``Part(udh, payload, ...)`` takes the
    fields in the order of the attributes below.
    """

    __slots__ = ()

    def __new__(
        cls,
        udh: bytes,
        payload: bytes,
        data_coding: int,
        esm_class: int,
        sar_msg_ref_num: int | None,
        sar_total_segments: int | None,
        sar_segment_seqnum: int | None,
        text_start: int,
        text_end: int,
    ) -> Part:
        return _new_tuple(
            cls,
            (
                bytes(udh) + bytes(payload),
                len(udh),
                data_coding,
                esm_class,
                sar_msg_ref_num,
                sar_total_segments,
                sar_segment_seqnum,
                text_start,
                text_end,
            ),
        )

    short_message: bytes = _tuplegetter(0, "The UDH then the payload: the PDU's short_message.")
    udh_length: int = _tuplegetter(1, "Octets of the UDH (with its length octet), or 0.")
    data_coding: int = _tuplegetter(2, "The data_coding octet.")
    esm_class: int = _tuplegetter(
        3, "0x40 (UDHI) when there is a UDH, else 0; OR it into the PDU's esm_class."
    )
    sar_msg_ref_num: int | None = _tuplegetter(4, "SAR: the reference; else None.")
    sar_total_segments: int | None = _tuplegetter(5, "SAR: the number of parts; else None.")
    sar_segment_seqnum: int | None = _tuplegetter(6, "SAR: this part's number from 1; else None.")
    text_start: int = _tuplegetter(7, "Index in the text of the first character of this part.")
    text_end: int = _tuplegetter(8, "Index in the text just past this part.")

    @property
    def udh(self) -> bytes:
        """The UDH with its length octet, or b""."""
        return self[0][: self[1]]  # type: ignore[no-any-return]

    @property
    def payload(self) -> bytes:
        """The encoded text after the UDH (packed GSM: starting with the fill bits)."""
        return self[0][self[1] :]  # type: ignore[no-any-return]

    def __repr__(self) -> str:
        return (
            f"Part(udh={self.udh!r}, payload={self.payload!r}, data_coding={self[2]}, esm_class={self[3]},"
            f" sar_msg_ref_num={self[4]}, sar_total_segments={self[5]}, sar_segment_seqnum={self[6]},"
            f" text_start={self[7]}, text_end={self[8]})"
        )

    def __getnewargs__(self) -> tuple[object, ...]:
        return (self.udh, self.payload, *self[2:])


class _LazyParts:
    """``Segmentation.parts``: built from the C core's buffer on first access, then cached."""

    @overload
    def __get__(self, seg: None, owner: type | None = None) -> _LazyParts: ...
    @overload
    def __get__(self, seg: Segmentation, owner: type | None = None) -> tuple[Part, ...]: ...
    def __get__(self, seg: Segmentation | None, owner: type | None = None) -> _LazyParts | tuple[Part, ...]:
        if seg is None:
            return self
        parts = _make_parts(seg)
        seg.__dict__["parts"] = parts
        return parts


class Segmentation(tuple):  # type: ignore[type-arg]
    """The short messages of one text and how they were made.

    ``parts`` is built on first access from the one buffer the C core wrote (the short
    messages, then a table of their bounds), and kept.
    """

    # no __slots__: the instance __dict__ (made on first use) caches ``parts``
    encoding: Encoding = _tuplegetter(0, "The encoding chosen (or given).")
    data_coding: int = _tuplegetter(1, "The data_coding octet for this peer.")
    single_shift: NationalLanguage = _tuplegetter(2, "GSM national single-shift table.")
    locking_shift: NationalLanguage = _tuplegetter(3, "GSM national locking-shift table.")
    units: int = _tuplegetter(4, "Septets, octets or UTF-16 units of the whole text.")
    method: SegmentMethod = _tuplegetter(5, "How the parts are tied together.")
    fill_bits: int = _tuplegetter(6, "Packed GSM: fill bits after the UDH.")
    parts = _LazyParts()

    def __new__(
        cls,
        parts: tuple[Part, ...],
        encoding: Encoding,
        data_coding: int,
        single_shift: NationalLanguage,
        locking_shift: NationalLanguage,
        units: int,
        method: SegmentMethod,
        fill_bits: int,
    ) -> Segmentation:
        fields = (encoding, data_coding, single_shift, locking_shift, units, method, fill_bits, None, 0)
        seg = _new_tuple(cls, fields)
        seg.__dict__["parts"] = tuple(parts)
        return seg

    @property
    def use_message_payload(self) -> bool:
        return self.method == SegmentMethod.PAYLOAD

    def _key(self) -> tuple[object, ...]:
        return (self.parts, *self[:7])

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Segmentation):
            return NotImplemented
        return self._key() == other._key()

    def __ne__(self, other: object) -> bool:
        eq = self.__eq__(other)
        return eq if eq is NotImplemented else not eq

    def __hash__(self) -> int:
        return hash(self._key())

    def __repr__(self) -> str:
        return (
            f"Segmentation(parts={self.parts!r}, encoding={self[0]!r}, data_coding={self[1]},"
            f" single_shift={self[2]!r}, locking_shift={self[3]!r}, units={self[4]}, method={self[5]!r},"
            f" fill_bits={self[6]})"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (Segmentation, (self.parts, *self[:7]))


def _make_parts(seg: Segmentation) -> tuple[Part, ...]:
    """The Part tuples of a Segmentation made by ``segment``, from its C core buffer."""
    raw: bytes = seg[7]
    info = _HEAD.unpack_from(raw)
    n: int = info[5]
    udh: int = info[7]
    tab = _table(n).unpack_from(raw, _HEAD_LEN)
    dc = seg[1]
    esm = UDHI if udh else 0
    new = _new_tuple
    bounds = zip(tab[:n], tab[n : 2 * n], tab[2 * n : 3 * n], tab[3 * n :], strict=False)
    if seg[5] == SegmentMethod.SAR and n > 1:
        ref = seg[8]
        return tuple(
            [
                new(Part, (raw[a:b], udh, dc, esm, ref, n, seq, s, e))
                for seq, (a, b, s, e) in enumerate(bounds, 1)
            ]
        )
    return tuple([new(Part, (raw[a:b], udh, dc, esm, None, None, None, s, e)) for a, b, s, e in bounds])


def _table(np: int) -> struct.Struct:
    s = _TABLES.get(np)
    if s is None:
        s = _TABLES[np] = struct.Struct(f"={4 * np}i")
    return s


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
    cfg, seg_method, dcs = policy._plan_args
    if (
        encoding is not None or method is not None or ports is not None
        or single_shift or locking_shift or cfg is None
    ):  # fmt: skip
        cfg, seg_method = _config(policy, encoding, single_shift, locking_shift, method, ports, port_ie_16bit)
    n = len(text)
    sc = _tls.__dict__.get("s")
    if sc is None or sc.size < 4 * n + _RUN_SLACK:
        sc = scratch(4 * n + _RUN_SLACK)
    if text.isascii():
        rc: int = _seg_run(text.encode("ascii"), _NULL, n, ref, cfg, sc.out, sc.size)
    else:
        rc = _seg_run(_NULL, text, n, ref, cfg, sc.out, sc.size)
    if rc < 0:
        raise _seg_error(rc, sc, text, encoding, seg_method, ref, ports)
    raw = sc.out_bytes[:rc]
    enc_v, single_v, locking_v, units, _err, _np, fill, _udh = _HEAD.unpack_from(raw)
    enc, data_coding = dcs[enc_v] or _raise_dc(enc_v, policy)
    return _new_tuple(
        Segmentation,
        (enc, data_coding, _LANGUAGES[single_v], _LANGUAGES[locking_v], units, seg_method, fill, raw, ref),
    )


def _config(
    policy: TextPolicy,
    encoding: Encoding | None,
    single_shift: NationalLanguage,
    locking_shift: NationalLanguage,
    method: SegmentMethod | None,
    ports: tuple[int, int] | None,
    port_ie_16bit: bool | None,
) -> tuple[object, SegmentMethod]:
    """The ``csmpp_seg_run`` settings for a call off the fast path; checks the arguments."""
    seg_method = policy.segment_method if method is None else SegmentMethod(method)
    auto_encs, auto_langs = policy.auto_encodings(), policy.language_mask()
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
    values = (
        enc_arg, int(single_shift), int(locking_shift), auto_encs, auto_langs, int(seg_method),
        port_ie, dst, src, repl,
    )  # fmt: skip
    if not all(-(1 << 31) <= v < (1 << 31) for v in values):
        raise ValueError(f"segment: argument out of range (ports={ports})")
    return _cfg(values), seg_method


def _seg_error(
    rc: int,
    sc: object,
    text: str,
    encoding: Encoding | None,
    seg_method: SegmentMethod,
    ref: int,
    ports: tuple[int, int] | None,
) -> Exception:
    info = _HEAD.unpack_from(sc.out_bytes)  # type: ignore[attr-defined]
    if rc == _E_UNMAPPABLE:
        pos = info[4]
        return UnencodableCharacterError(text[pos], pos, Encoding(info[0] if encoding is None else encoding))
    if rc == _E_INPUT:
        if seg_method == SegmentMethod.PAYLOAD:
            return SegmentationError(f"message_payload of {info[5]} octets exceeds 65535")
        return SegmentationError(f"text needs {info[5]} parts, more than {_MAX_PARTS}")
    if rc == _E_ARG:
        return ValueError(f"segment: argument out of range (ref={ref}, ports={ports}, method={seg_method!r})")
    return NativeError(rc, "seg_run")


def _raise_dc(enc_v: int, policy: TextPolicy) -> tuple[Encoding, int]:
    return Encoding(enc_v), data_coding_for(Encoding(enc_v), policy.default_alphabet)  # raises


# --- hot-path helpers -------------------------------------------------------------------

_seg_run: Final = lib.csmpp_seg_run
_NULL: Final = ffi.NULL
_HEAD: Final = struct.Struct(f"={_INFO_LEN}i")
_HEAD_LEN: Final[int] = lib.CSMPP_SEG_HEAD
# csmpp_seg_run_max_len(n) <= 4 n + _RUN_SLACK for every n and method
_RUN_SLACK: Final[int] = lib.csmpp_seg_run_max_len(0, 0) + 24 * _MAX_PARTS
assert lib.csmpp_seg_run_max_len(10_000, 0) <= 40_000 + _RUN_SLACK
_TABLES: dict[int, struct.Struct] = {}
_LANGUAGES: Final = tuple(sorted(NationalLanguage))  # values 0.. without gaps
assert all(int(lang) == i for i, lang in enumerate(_LANGUAGES))
