"""Decode SMPP v3.4 PDUs: one table-driven Python decoder for every command, and the C scanner
for submit_sm / deliver_sm (the hot path).

:func:`_decode_general` walks the command's field table (:data:`catalyst_smpp.protocol.fields.LAYOUTS`)
and is the reference: it works out every error status.  For a submit_sm / deliver_sm,
:func:`decode_pdu` first asks the C scanner (native/csmpp_pdu.c); a PDU the scanner declines
(anything invalid or unusual) goes to the general decoder, which then names the exact error.  The two
are compared field by field under hypothesis (tests/protocol/test_codec_properties.py, test_fuzz.py).
The wire contract (statuses, empty response bodies) is in :mod:`catalyst_smpp.protocol.codec`.
"""

from __future__ import annotations

import struct
import threading
from collections.abc import Callable, Sequence
from typing import Any, Final, NoReturn

from catalyst_smpp.protocol.constants import RESPONSE_BIT, CommandStatus
from catalyst_smpp.protocol.errors import FramingError, PduDecodeError, UnknownCommandError
from catalyst_smpp.protocol.fields import (
    LAYOUTS,
    SHORT_MESSAGE_XOR_PAYLOAD,
    SME_DEST,
    TLV_RULES,
    FieldKind,
    FieldSpec,
    dest_flag_status,
    dl_name,
)
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    DeliverSm,
    DistributionListDestination,
    Pdu,
    SmeDestination,
    SubmitSm,
    UnsuccessSme,
)
from catalyst_smpp.protocol.tlv import COCTET_TAGS, TLV_ALLOWED_LEN, TLV_SPECS, Tlv, TlvKind

__all__ = ["decode_pdu", "decode_pdu_keeping_tlvs"]

Buffer = bytes | bytearray | memoryview

_HDR: Final = struct.Struct(">IIII")
_I4: Final = struct.Struct(">I")

S = CommandStatus
_RINVCMDLEN: Final = int(S.ESME_RINVCMDLEN)
_RINVMSGLEN: Final = int(S.ESME_RINVMSGLEN)
_RINVOPTPARSTREAM: Final = int(S.ESME_RINVOPTPARSTREAM)
_RINVOPTPARAMVAL: Final = int(S.ESME_RINVOPTPARAMVAL)
_RINVNUMDESTS: Final = int(S.ESME_RINVNUMDESTS)
_MESSAGE_PAYLOAD: Final = 0x0424

_INT1: Final = FieldKind.INT1
_INT4: Final = FieldKind.INT4
_COCTET: Final = FieldKind.COCTET
_TIME: Final = FieldKind.TIME
_SHORT_MESSAGE: Final = FieldKind.SHORT_MESSAGE
_DEST_ADDRESS: Final = FieldKind.DEST_ADDRESS

_tuple_new: Final = tuple.__new__

_ONE_STRING: Final = frozenset(
    cid for cid, layout in LAYOUTS.items() if cid & RESPONSE_BIT and [f.kind for f in layout] == [_COCTET]
)
"""Responses whose body is one C-octet string (submit_sm_resp, deliver_sm_resp, data_sm_resp: the message_id),
from the layout table: read in one step when the string ends the body (see :func:`_decode_general`)."""


def _fail(status: int, cid: int, seq: int, field: str | None, message: str) -> NoReturn:
    raise PduDecodeError(status, message, command_id=cid, sequence_number=seq, field=field)


def decode_pdu(data: Buffer, offset: int = 0) -> Pdu:
    """Decode the PDU that starts at ``data[offset]``; its command_length says where it ends."""
    if type(data) is not bytes:  # the C scanner reads bytes: a copy of the PDU alone
        data, offset = _framed(data, offset)[:2]
    if _native_decode_sm is not None and 0 <= offset < len(data) - 15:
        # submit_sm / deliver_sm: the C scanner checks the header, every field and every TLV
        if not data[offset + 4] and (data[offset + 7] == 4 or data[offset + 7] == 5):
            try:
                rec, buf = _local.sm
            except AttributeError:
                rec, buf = _sm_record()
            n = _native_decode_sm(data, len(data), offset, _specs, _nspecs, rec)
            if n:  # 1 + the number of TLVs; 0: declined, the general decoder works out why
                # the record: the mandatory fields in constructor order (strings as bytes), then
                # (tag, value start, value end, kind, typed value) per TLV.  Read here rather than
                # in functions of their own: each call would cost ~4 % of a decode.
                r = _SM_UNPACK[n](buf)
                (
                    seq,
                    status,
                    st,
                    sat,
                    san,
                    sa,
                    dat,
                    dan,
                    da,
                    esm,
                    pid,
                    pf,
                    sd,
                    vp,
                    rd,
                    rip,
                    dc,
                    dmid,
                    sm,
                    cid,
                    flags,
                ) = r if n == 1 else r[:21]
                if n == 1:
                    tlvs: tuple[Tlv, ...] = ()
                else:
                    # each TLV keeps its wire octets and gets the typed value the scanner worked
                    # out, so Tlv.value is then a dict read
                    out = []
                    it = iter(r[21:])
                    # five items at a time; the table is whole, and strict= would cost ~100 ns
                    # (keyword calls of zip take a slower path)
                    for tag, a, b, kind, v in zip(it, it, it, it, it):  # noqa: B905
                        t = _tuple_new(Tlv, (tag, data[a:b]))
                        if kind == _KIND_INT:
                            t.__dict__["value"] = v
                        elif kind == _KIND_COCTET:
                            t.__dict__["value"] = data[a:v].decode("latin-1")
                        out.append(t)
                    tlvs = tuple(out)
                    if flags:  # a tag that triggers a rule across TLVs is present
                        _check_tlv_rules(tlvs, cid, seq)
                        if sm:
                            _check_sm_xor_payload(sm, tlvs, cid, seq)
                # '' for an empty string skips a decode call (~35 ns; most are empty)
                return (SubmitSm if cid == 4 else DeliverSm)(
                    seq,
                    status,
                    st.decode("latin-1") if st else "",
                    sat,
                    san,
                    sa.decode("latin-1") if sa else "",
                    dat,
                    dan,
                    da.decode("latin-1") if da else "",
                    esm,
                    pid,
                    pf,
                    sd.decode("latin-1") if sd else "",
                    vp.decode("latin-1") if vp else "",
                    rd,
                    rip,
                    dc,
                    dmid,
                    sm,
                    tlvs,
                )
    data, offset, length, cid, status, seq = _framed(data, offset)
    return _decode_general(data, offset, offset + length, cid, status, seq)


def _framed(data: Buffer, offset: int) -> tuple[bytes, int, int, int, int, int]:
    """The header of the PDU at ``data[offset]`` checked against the data: ``(data, offset, command_length,
    command_id, command_status, sequence_number)``, ``data`` as bytes (a copy of the PDU alone when it was
    another buffer, offset 0 then); FramingError for a length the data cannot hold."""
    if offset < 0 or len(data) - offset < 16:
        raise FramingError("fewer than 16 octets for a PDU header")
    length, cid, status, seq = _HDR.unpack_from(data, offset)
    if length < 16:
        raise FramingError(f"command_length {length} below 16", command_length=length)
    if length > len(data) - offset:
        raise FramingError(f"command_length {length} past the end of the data", command_length=length)
    if type(data) is not bytes:
        return bytes(memoryview(data).cast("B")[offset : offset + length]), 0, length, cid, status, seq
    return data, offset, length, cid, status, seq


def _decode_general(
    data: bytes, off: int, end: int, cid: int, status: int, seq: int, keep_tlvs: bool = False
) -> Pdu:
    """The table-driven decoder: every command goes through it in Python (the C scanner for
    submit_sm / deliver_sm is checked against it).

    ``keep_tlvs``: no TLV checks (see :func:`decode_pdu_keeping_tlvs`)."""
    cls = PDU_CLASSES.get(cid)
    if cls is None:
        raise UnknownCommandError(cid, seq)
    layout = LAYOUTS[cid]
    p = off + 16
    if p == end and cid & RESPONSE_BIT:
        return cls(seq, status)
    if cid in _ONE_STRING and data[end - 1] == 0 and end - p <= layout[0].max_len:
        # the windowed responses, nearly always: the string's NUL is the body's last octet (no TLVs)
        i = data.find(0, p, end)
        if i == end - 1:
            return cls(seq, status, data[p:i].decode("latin-1"))  # type: ignore[call-arg]  # (its message_id)
    values: list[Any] = [seq, status]
    for f in layout:
        kind = f.kind
        if kind is _INT1:
            if p >= end:
                _fail(_RINVCMDLEN, cid, seq, f.name, f"body ends before {f.name}")
            v = data[p]
            p += 1
            if f.check is not None and not f.check(v):
                _fail(f.status, cid, seq, f.name, f"{f.name} 0x{v:02X} not allowed")
            values.append(v)
        elif kind is _COCTET or kind is _TIME:  # _read_coctet written out (the call is a fifth of a response)
            lim = p + f.max_len
            i = data.find(0, p, lim if lim < end else end)
            if i < 0 or (kind is _TIME and i != p and i - p != 16):
                _coctet_fail(p, end, i, f, cid, seq)
            values.append(data[p:i].decode("latin-1"))
            p = i + 1
        elif kind is _SHORT_MESSAGE:
            if p >= end:
                _fail(_RINVCMDLEN, cid, seq, "sm_length", "body ends before sm_length")
            n = data[p]
            p += 1
            if n > 254 or p + n > end:
                _fail(_RINVMSGLEN, cid, seq, "sm_length", f"sm_length {n} invalid for the body")
            values.append(data[p : p + n])
            p += n
        elif kind is _INT4:
            if p + 4 > end:
                _fail(_RINVCMDLEN, cid, seq, f.name, f"body ends inside {f.name}")
            values.append(_I4.unpack_from(data, p)[0])
            p += 4
        elif kind is _DEST_ADDRESS:
            dests, p = _read_dest_addresses(data, p, end, f, cid, seq)
            values.append(dests)
        else:  # _UNSUCCESS_SME
            smes, p = _read_unsuccess(data, p, end, cid, seq)
            values.append(smes)
    if keep_tlvs:
        values.append(_tlvs_as_received(data, p, end))
        return cls(*values)
    tlvs = _decode_tlvs(data, p, end, cid, seq) if p < end else ()
    if tlvs and cid in SHORT_MESSAGE_XOR_PAYLOAD:
        _check_sm_xor_payload(values[-1], tlvs, cid, seq)
    values.append(tlvs)
    return cls(*values)


def decode_pdu_keeping_tlvs(data: Buffer, offset: int = 0) -> Pdu:
    """:func:`decode_pdu` without the TLV checks, for a request that must not be lost to an odd TLV.

    Every whole TLV is kept exactly as received -- a known tag with a length or a NUL its spec does not
    allow too (``tlv.raw`` is the wire value; ``tlv.value`` types it as well as it can); octets after
    the last whole TLV (a truncated or overrunning one) are dropped; short_message and message_payload
    may both be present; the TLV rules (SAR set) are not applied.  The header and the mandatory fields
    are checked as by :func:`decode_pdu` (same errors).  Used by the ESME side of a session for a
    deliver_sm / data_sm (a receipt or an MO) that the strict decoder refused only for its TLVs
    (field-lessons 6: never drop a receipt because a TLV was odd).
    """
    data, offset, length, cid, status, seq = _framed(data, offset)
    return _decode_general(data, offset, offset + length, cid, status, seq, keep_tlvs=True)


def _tlvs_as_received(data: bytes, p: int, end: int) -> tuple[Tlv, ...]:
    out: list[Tlv] = []
    while p + 4 <= end:
        tag = data[p] << 8 | data[p + 1]
        q = p + 4 + (data[p + 2] << 8 | data[p + 3])
        if q > end:
            break
        out.append(_tuple_new(Tlv, (tag, data[p + 4 : q])))
        p = q
    return tuple(out)


def _read_coctet(data: bytes, p: int, end: int, f: FieldSpec, cid: int, seq: int) -> tuple[str, int]:
    """The C-octet string field ``f`` at ``data[p]``, and the offset after its NUL."""
    lim = p + f.max_len
    i = data.find(0, p, lim if lim < end else end)
    if i < 0 or (f.kind is _TIME and i != p and i - p != 16):
        _coctet_fail(p, end, i, f, cid, seq)
    return data[p:i].decode("latin-1"), i + 1


def _coctet_fail(p: int, end: int, nul: int, f: FieldSpec, cid: int, seq: int) -> NoReturn:
    """Refuse the C-octet string field ``f`` at ``p`` whose first NUL is at ``nul`` (-1: none
    within its maximum size)."""
    if nul < 0:
        if p + f.max_len > end:
            _fail(_RINVCMDLEN, cid, seq, f.name, f"body ends inside {f.name}")
        _fail(f.status, cid, seq, f.name, f"{f.name} longer than {f.max_len - 1} octets")
    _fail(f.status, cid, seq, f.name, f"{f.name} is neither empty nor 16 characters")


def _read_dest_addresses(
    data: bytes, p: int, end: int, f: FieldSpec, cid: int, seq: int
) -> tuple[tuple[SmeDestination | DistributionListDestination, ...], int]:
    if p >= end:
        _fail(_RINVCMDLEN, cid, seq, "number_of_dests", "body ends before number_of_dests")
    n = data[p]
    p += 1
    if n == 0 or n > f.max_len:
        _fail(_RINVNUMDESTS, cid, seq, "number_of_dests", f"number_of_dests {n}")
    out: list[SmeDestination | DistributionListDestination] = []
    addr_f = SME_DEST[2]
    for _ in range(n):
        if p >= end:
            _fail(_RINVCMDLEN, cid, seq, "dest_flag", "body ends before dest_flag")
        flag = data[p]
        p += 1
        if flag == 1:
            if p + 2 > end:
                _fail(_RINVCMDLEN, cid, seq, "dest_addr_ton", "body ends inside dest_address")
            ton, npi = data[p], data[p + 1]
            addr, p = _read_coctet(data, p + 2, end, addr_f, cid, seq)
            out.append(SmeDestination(ton, npi, addr))
        elif flag == 2:
            name, p = _read_coctet(data, p, end, dl_name, cid, seq)
            out.append(DistributionListDestination(name))
        else:
            _fail(dest_flag_status, cid, seq, "dest_flag", f"dest_flag {flag}")
    return tuple(out), p


def _read_unsuccess(
    data: bytes, p: int, end: int, cid: int, seq: int
) -> tuple[tuple[UnsuccessSme, ...], int]:
    if p >= end:
        _fail(_RINVCMDLEN, cid, seq, "no_unsuccess", "body ends before no_unsuccess")
    n = data[p]
    p += 1
    addr_f = SME_DEST[2]
    out: list[UnsuccessSme] = []
    for _ in range(n):
        if p + 2 > end:
            _fail(_RINVCMDLEN, cid, seq, "unsuccess_sme", "body ends inside unsuccess_sme")
        ton, npi = data[p], data[p + 1]
        addr, p = _read_coctet(data, p + 2, end, addr_f, cid, seq)
        if p + 4 > end:
            _fail(_RINVCMDLEN, cid, seq, "error_status_code", "body ends inside error_status_code")
        code = _I4.unpack_from(data, p)[0]
        p += 4
        out.append(UnsuccessSme(ton, npi, addr, code))
    return tuple(out), p


def _decode_tlvs(data: bytes, p: int, end: int, cid: int, seq: int) -> tuple[Tlv, ...]:
    """Walk the TLVs in ``data[p:end]``, check each known one against its spec, apply the rules."""
    # straight-line on purpose: a generator expression costs ~600 ns here, a check_tlv call ~400 ns
    out: list[Tlv] = []
    allowed_len = TLV_ALLOWED_LEN
    while p < end:
        if p + 4 > end:
            _fail(_RINVOPTPARSTREAM, cid, seq, None, "trailing octets shorter than a TLV header")
        tag = data[p] << 8 | data[p + 1]
        n = data[p + 2] << 8 | data[p + 3]
        q = p + 4 + n
        if q > end:
            _fail(_RINVOPTPARSTREAM, cid, seq, None, f"TLV 0x{tag:04X} runs past the end of the PDU")
        raw = data[p + 4 : q]
        allowed = allowed_len.get(tag)
        if allowed is not None:
            if n not in allowed:
                _fail(_RINVOPTPARAMVAL, cid, seq, TLV_SPECS[tag].name, f"TLV length {n} not allowed")
            if tag in COCTET_TAGS:
                i = raw.find(0)
                if 0 <= i < n - 1:
                    _fail(_RINVOPTPARAMVAL, cid, seq, TLV_SPECS[tag].name, "NUL inside a C-octet string")
        out.append(_tuple_new(Tlv, (tag, raw)))
        p = q
    _check_tlv_rules(out, cid, seq)
    return tuple(out)


def _check_tlv_rules(out: Sequence[Tlv], cid: int, seq: int) -> None:
    """Apply the command's rules across TLVs (fields.TLV_RULES: the SAR set, required TLVs)."""
    rules = TLV_RULES.get(cid)
    if rules is not None:
        first: dict[int, bytes] | None = None
        for triggers, rule in rules:
            if triggers is not None:
                for t in out:
                    if t[0] in triggers:
                        break
                else:
                    continue
            if first is None:
                first = {}
                for t in out:
                    first.setdefault(t[0], t[1])
            st = rule(first)
            if st:
                _fail(st, cid, seq, None, "optional parameters do not form a valid set")


def _check_sm_xor_payload(short_message: bytes, tlvs: tuple[Tlv, ...], cid: int, seq: int) -> None:
    if short_message:
        for t in tlvs:
            if t[0] == _MESSAGE_PAYLOAD:
                _fail(
                    _RINVOPTPARAMVAL,
                    cid,
                    seq,
                    "message_payload",
                    "short_message and message_payload both set",
                )


# --- the C scanner for submit_sm / deliver_sm -----------------------------------------
# csmpp_pdu_decode_sm (native/csmpp_pdu.h) validates every mandatory field and every TLV and
# writes the mandatory fields into a fixed record of Pascal strings, in constructor order,
# followed by a table of (tag, value start, value end, kind, typed value) per TLV; it returns
# 1 + the number of TLVs.  The TLV checks take their lengths from a table built once from
# TLV_SPECS; tags that trigger a rule across TLVs (fields.TLV_RULES, message_payload) set a
# flag, and only then does Python run the rules.  Integer TLV values and C-octet string ends
# come from C, so a decoded Tlv carries its typed value (tlv._TypedValue).
_SM_RECORD: Final = struct.Struct(">II6pBB21pBB21pBBB17p17pBBBB255pBB")
_SM_TLV_ENTRY: Final = ">HIIBQ"  # tag, value start, value end, value kind, int value / string end
_SM_MAX_TLVS: Final = 32
_local = threading.local()
_native_decode_sm: Callable[[bytes, int, int, Any, int, Any], int] | None
try:
    from catalyst_smpp.native import ffi as _ffi
    from catalyst_smpp.native import lib as _lib

    _native_decode_sm = _lib.csmpp_pdu_decode_sm
    if (
        _lib.CSMPP_SM_RECORD_BASE != _SM_RECORD.size
        or _lib.CSMPP_SM_TLV_ENTRY_LEN != struct.calcsize(_SM_TLV_ENTRY)
        or _lib.CSMPP_SM_MAX_TLVS != _SM_MAX_TLVS
        or _lib.CSMPP_SM_RECORD_LEN != _SM_RECORD.size + _lib.CSMPP_SM_TLV_ENTRY_LEN * _SM_MAX_TLVS
    ):  # pragma: no cover - a stale build
        _native_decode_sm = None
except (ImportError, AttributeError):  # pragma: no cover - extension not built with csmpp_pdu.c
    _native_decode_sm = None


def _tlv_spec_table() -> tuple[Any, int]:
    """The csmpp_tlv_spec[] the C scanner checks TLVs against (built once from TLV_SPECS)."""
    triggers: set[int] = {_MESSAGE_PAYLOAD}
    for rules in TLV_RULES.values():
        for trig, _ in rules:
            if trig is not None:
                triggers.update(trig)
    tags = sorted(set(TLV_SPECS) | triggers)
    table = _ffi.new("csmpp_tlv_spec[]", len(tags))
    for i, tag in enumerate(tags):
        e = table[i]
        e.tag = tag
        spec = TLV_SPECS.get(tag)
        if spec is None:  # a trigger we do not type: any length
            e.kind, e.min_len, e.max_len = _lib.CSMPP_TLV_OCTET, 0, 0xFFFF
        elif spec.kind is TlvKind.INT:
            e.kind = _lib.CSMPP_TLV_INT
            e.sizes = sum(1 << (n - 1) for n in spec.sizes)
        else:
            e.kind = _lib.CSMPP_TLV_COCTET if spec.kind is TlvKind.COCTET else _lib.CSMPP_TLV_OCTET
            e.min_len, e.max_len = spec.min_len, spec.max_len
        e.flags = _lib.CSMPP_TLV_TRIGGER if tag in triggers else 0
    return table, len(tags)


# commands with a rule that runs whatever TLVs are present: the native path must not skip it
_ALWAYS_RULES: Final = frozenset(
    cid for cid, rules in TLV_RULES.items() if any(tags is None for tags, _ in rules)
)
if _native_decode_sm is not None:
    _specs, _nspecs = _tlv_spec_table()
    if {4, 5} & _ALWAYS_RULES:  # pragma: no cover - no such rule in v3.4
        _native_decode_sm = None
else:  # pragma: no cover
    _specs, _nspecs = None, 0

# the csmpp_pdu_decode_sm result n (1 + the number of TLVs) -> the unpacker of the record's
# mandatory part and its n - 1 TLV entries (slot 0 is never used)
_SM_UNPACK: Final = [
    struct.Struct(_SM_RECORD.format + _SM_TLV_ENTRY[1:] * max(n - 1, 0)).unpack_from
    for n in range(_SM_MAX_TLVS + 2)
]
_KIND_INT: Final = 1
_KIND_COCTET: Final = 2


def _sm_record() -> tuple[Any, Any]:
    # one record per thread: cffi releases the GIL during the C call
    rec = _ffi.new("uint8_t[]", _lib.CSMPP_SM_RECORD_LEN)
    pair = (rec, _ffi.buffer(rec))
    _local.sm = pair
    return pair
