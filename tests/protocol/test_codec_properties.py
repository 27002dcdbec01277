"""Property tests of the codec: round trips for every PDU type; the C scanner and the struct encoders
give the table-driven reference's results."""

from __future__ import annotations

import functools
import struct
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from catalyst_smpp.protocol import decode, encode
from catalyst_smpp.protocol.codec import PduEncodeError, decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import RESPONSE_BIT, CommandId
from catalyst_smpp.protocol.errors import PduDecodeError, ProtocolError
from catalyst_smpp.protocol.fields import LAYOUTS, SHORT_MESSAGE_XOR_PAYLOAD, FieldKind, FieldSpec
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    DistributionListDestination,
    Pdu,
    SmeDestination,
    UnsuccessSme,
)
from catalyst_smpp.protocol.tlv import TLV_SPECS, Tag, Tlv, TlvKind

SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)


# The strategy builders are cached: a strategy built anew for each draw is validated anew each time,
# which was a third of this module's CPU.  A cached strategy draws exactly what a new one would.


@functools.cache
def coctet(max_len: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=max_len - 1)


time_field = st.one_of(
    st.just(""), st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=16, max_size=16)
)


@functools.cache
def esm_class(f: FieldSpec) -> st.SearchStrategy[int]:
    assert f.check is not None
    return u8.filter(f.check)


sme_dest = st.builds(SmeDestination, u8, u8, coctet(21))
dl_dest = st.builds(DistributionListDestination, coctet(21))
unsuccess = st.builds(UnsuccessSme, u8, u8, coctet(21), u32)


@functools.cache
def field_strategy(f: FieldSpec) -> st.SearchStrategy[Any]:
    kind = f.kind
    if kind is FieldKind.INT1:
        return esm_class(f) if f.check is not None else u8
    if kind is FieldKind.INT4:
        return u32
    if kind is FieldKind.COCTET:
        return coctet(f.max_len)
    if kind is FieldKind.TIME:
        return time_field
    if kind is FieldKind.SHORT_MESSAGE:
        return st.binary(max_size=254)
    if kind is FieldKind.DEST_ADDRESS:
        return st.lists(st.one_of(sme_dest, dl_dest), min_size=1, max_size=6).map(tuple)
    return st.lists(unsuccess, max_size=6).map(tuple)


_SAR = {Tag.sar_msg_ref_num, Tag.sar_total_segments, Tag.sar_segment_seqnum}


@functools.cache
def known_tlv(tag: int) -> st.SearchStrategy[Tlv]:
    spec = TLV_SPECS[tag]
    if spec.kind is TlvKind.INT:
        return (
            st.sampled_from(spec.sizes)
            .flatmap(lambda n: st.binary(min_size=n, max_size=n))
            .map(lambda raw: Tlv(tag, raw))
        )
    if spec.kind is TlvKind.COCTET:
        hi = min(spec.max_len, 80) - 1
        return st.text(
            st.characters(min_codepoint=1, max_codepoint=255), min_size=spec.min_len - 1, max_size=hi
        ).map(lambda s: Tlv.make(tag, s))
    return st.binary(min_size=spec.min_len, max_size=min(spec.max_len, 80)).map(lambda raw: Tlv(tag, raw))


unknown_tlv = st.builds(
    Tlv, st.integers(0, 0xFFFF).filter(lambda t: t not in TLV_SPECS), st.binary(max_size=40)
)
plain_known_tags = sorted(t for t in TLV_SPECS if t not in _SAR)


@st.composite
def sar_set(draw: st.DrawFn) -> list[Tlv]:
    total = draw(st.integers(1, 255))
    seq = draw(st.integers(1, total))
    return [
        Tlv.make(Tag.sar_msg_ref_num, draw(st.integers(0, 0xFFFF))),
        Tlv.make(Tag.sar_total_segments, total),
        Tlv.make(Tag.sar_segment_seqnum, seq),
    ]


@functools.cache
def _tlv_items(allow_payload: bool) -> st.SearchStrategy[list[Tlv]]:
    tags = plain_known_tags if allow_payload else [t for t in plain_known_tags if t != Tag.message_payload]
    return st.lists(st.one_of(st.sampled_from(tags).flatmap(known_tlv), unknown_tlv), max_size=5)


@st.composite
def tlv_lists(draw: st.DrawFn, allow_payload: bool = True) -> tuple[Tlv, ...]:
    items = draw(_tlv_items(allow_payload))
    if draw(st.booleans()):
        sar = draw(sar_set())
        pos = draw(st.integers(0, len(items)))
        items[pos:pos] = sar
    return tuple(items)


@st.composite
def pdus(draw: st.DrawFn, cid: int) -> Pdu:
    cls: Any = PDU_CLASSES[cid]
    values: dict[str, Any] = {f.name: draw(field_strategy(f)) for f in LAYOUTS[cid]}
    allow_payload = not (cid in SHORT_MESSAGE_XOR_PAYLOAD and values.get("short_message"))
    status = draw(st.one_of(st.just(0), u32))
    pdu: Pdu = cls(
        sequence_number=draw(u32),
        command_status=status,
        tlvs=draw(tlv_lists(allow_payload)),
        **values,
    )
    return pdu


any_pdu = st.sampled_from(sorted(PDU_CLASSES)).flatmap(pdus)


# --- an independent, simple-minded wire writer for the "valid bytes" direction --------------


def write_wire(p: Pdu) -> bytes:
    out = bytearray()
    for f in LAYOUTS[p.command_id]:
        v = getattr(p, f.name)
        if f.kind is FieldKind.INT1:
            out.append(v)
        elif f.kind is FieldKind.INT4:
            out += v.to_bytes(4, "big")
        elif f.kind in (FieldKind.COCTET, FieldKind.TIME):
            out += v.encode("latin-1") + b"\0"
        elif f.kind is FieldKind.SHORT_MESSAGE:
            out.append(len(v))
            out += v
        elif f.kind is FieldKind.DEST_ADDRESS:
            out.append(len(v))
            for d in v:
                if isinstance(d, SmeDestination):
                    out += (
                        bytes([1, d.dest_addr_ton, d.dest_addr_npi])
                        + d.destination_addr.encode("latin-1")
                        + b"\0"
                    )
                else:
                    out += b"\x02" + d.dl_name.encode("latin-1") + b"\0"
        else:
            out.append(len(v))
            for u in v:
                out += (
                    bytes([u.dest_addr_ton, u.dest_addr_npi]) + u.destination_addr.encode("latin-1") + b"\0"
                )
                out += u.error_status_code.to_bytes(4, "big")
    for t in p.tlvs:
        out += struct.pack(">HH", t.tag, len(t.raw)) + t.raw
    return struct.pack(">IIII", 16 + len(out), p.command_id, p.command_status, p.sequence_number) + bytes(out)


# --- round trips ---------------------------------------------------------------------------


@pytest.mark.parametrize("cid", sorted(PDU_CLASSES), ids=lambda c: CommandId(c).name)
@SETTINGS
@given(data=st.data())
def test_round_trip_every_pdu_type(cid: int, data: st.DataObject) -> None:
    p = data.draw(pdus(cid))
    wire = encode_pdu(p)
    assert decode_pdu(wire) == p
    assert encode._encode_general(p) == wire


@pytest.mark.parametrize("cid", sorted(PDU_CLASSES), ids=lambda c: CommandId(c).name)
@SETTINGS
@given(data=st.data())
def test_valid_wire_bytes_reencode_identically(cid: int, data: st.DataObject) -> None:
    p = data.draw(pdus(cid))
    wire = write_wire(p)
    # the one canonicalisation: an error response whose body is all defaults goes header-only
    defaults = PDU_CLASSES[cid]()
    assume(
        not (
            cid & RESPONSE_BIT
            and p.command_status
            and not p.tlvs
            and all(getattr(p, f.name) == getattr(defaults, f.name) for f in LAYOUTS[cid])
            and LAYOUTS[cid]
        )
    )
    decoded = decode_pdu(wire)
    assert encode_pdu(decoded) == wire
    assert decoded == p


# --- the C scanner gives the table-driven decoder's results -----------------------------------

_C_CIDS = [CommandId.submit_sm, CommandId.deliver_sm]


def _outcome(fn: Any, *args: Any) -> Any:
    """What a decoder made of the bytes: the PDU with the type and typed value of every TLV, or the
    error with its status, field, command and sequence number."""
    try:
        pdu = fn(*args)
    except PduDecodeError as e:
        return ("err", type(e), e.status, e.field, e.command_id, e.sequence_number)
    except ProtocolError as e:
        return ("err", type(e), e.status)
    return ("ok", pdu, [(type(t.value), t.value) for t in pdu.tlvs])


def _all_decoders(wire: bytes, offset: int = 0) -> list[Any]:
    """decode_pdu on bytes and on a bytearray (the C scanner for submit_sm / deliver_sm), and the
    table-driven decoder called directly."""
    length, cid, status, seq = struct.unpack_from(">IIII", wire, offset)
    end = offset + length
    return [
        _outcome(decode_pdu, wire, offset),
        _outcome(decode_pdu, bytearray(wire), offset),
        _outcome(decode._decode_general, wire, offset, end, cid, status, seq),
    ]


def _c_scanner_takes(wire: bytes) -> bool:
    """Whether the C scanner takes the PDU (decode_pdu then builds it from the scanner's record)."""
    assert decode._native_decode_sm is not None, "the C core is built with csmpp_pdu.c"
    rec, _ = decode._sm_record()
    return bool(decode._native_decode_sm(wire, len(wire), 0, decode._specs, decode._nspecs, rec))


@pytest.mark.parametrize("cid", _C_CIDS, ids=lambda c: CommandId(c).name)
@SETTINGS
@given(data=st.data())
def test_c_scanner_takes_every_valid_sm_and_agrees_with_the_reference(cid: int, data: st.DataObject) -> None:
    p = data.draw(pdus(cid))
    wire = write_wire(p)
    assert _c_scanner_takes(wire)  # every valid submit_sm / deliver_sm (up to 32 TLVs)
    reference = _outcome(decode._decode_general, wire, 0, len(wire), cid, p.command_status, p.sequence_number)
    assert _outcome(decode_pdu, wire) == reference
    assert reference[1] == p


mutation = st.tuples(st.integers(16, 400), u8)


@pytest.mark.parametrize("cid", _C_CIDS, ids=lambda c: CommandId(c).name)
@SETTINGS
@given(data=st.data())
def test_c_scanner_matches_the_reference_on_valid_and_mutated_bytes(cid: int, data: st.DataObject) -> None:
    p = data.draw(pdus(cid))
    wire = bytearray(write_wire(p))
    for pos, value in data.draw(st.lists(mutation, max_size=3)):
        if pos < len(wire):
            wire[pos] = value
    cut = data.draw(st.integers(16, len(wire)))
    if cut < len(wire):  # truncate the body but keep command_length consistent
        del wire[cut:]
        wire[0:4] = len(wire).to_bytes(4, "big")
    prefix = data.draw(st.integers(0, 3))
    blob = b"\x00" * prefix + bytes(wire) + data.draw(st.binary(max_size=30))
    results = _all_decoders(blob, prefix)
    assert all(r == results[0] for r in results), results


@pytest.mark.parametrize("cid", [CommandId.submit_sm, CommandId.deliver_sm])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_sm_decoders_agree_on_field_level_corruption(cid: int, data: st.DataObject) -> None:
    """Overlong strings, odd time lengths, any esm_class, any sm_length: the decoders agree."""
    text = st.text(st.characters(min_codepoint=1, max_codepoint=255), max_size=24)
    body = bytearray()
    body += data.draw(text).encode("latin-1") + b"\0"
    body += bytes(data.draw(st.lists(u8, min_size=2, max_size=2)))
    body += data.draw(text).encode("latin-1") + b"\0"
    body += bytes(data.draw(st.lists(u8, min_size=2, max_size=2)))
    body += data.draw(text).encode("latin-1") + b"\0"
    body += bytes(data.draw(st.lists(u8, min_size=3, max_size=3)))
    body += data.draw(st.sampled_from(["", "x" * 16, "y" * 15, "z" * 17])).encode() + b"\0"
    body += data.draw(st.sampled_from(["", "x" * 16, "y" * 3, "z" * 20])).encode() + b"\0"
    body += bytes(data.draw(st.lists(u8, min_size=4, max_size=4)))
    sm = data.draw(st.binary(max_size=255))
    body.append(data.draw(st.sampled_from([len(sm), min(len(sm) + 1, 255), 255, 0])))
    body += sm
    body += data.draw(st.binary(max_size=12))
    wire = struct.pack(">IIII", 16 + len(body), cid, 0, 99) + bytes(body)
    results = _all_decoders(wire)
    assert all(r == results[0] for r in results), results


@SETTINGS
@given(any_pdu)
def test_fast_encoders_match_general(p: Pdu) -> None:
    assert encode_pdu(p) == encode._encode_general(p)


bad_values = st.one_of(
    st.booleans(),
    st.floats(allow_nan=False),
    st.integers(-5, -1),
    st.integers(256, 1000),
    st.text(max_size=70),
    st.binary(max_size=300),
    st.none(),
)


@pytest.mark.parametrize("cid", sorted(encode._FAST_ENCODE, key=str), ids=lambda c: c.__name__)
@SETTINGS
@given(data=st.data())
def test_fast_encoders_refuse_what_general_refuses(cid: type[Pdu], data: st.DataObject) -> None:
    p = data.draw(pdus(cid.command_id))
    fields = [f.name for f in LAYOUTS[cid.command_id]] + ["sequence_number", "command_status"]
    name = data.draw(st.sampled_from(fields))
    setattr(p, name, data.draw(bad_values))

    def run(fn: Any) -> Any:
        try:
            return fn(p)
        except PduEncodeError:
            return PduEncodeError

    fast, general = run(encode_pdu), run(encode._encode_general)
    assert fast == general
    if fast is not PduEncodeError:
        assert decode_pdu(fast) is not None
