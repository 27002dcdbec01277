"""Cross-checks of our codec against smpp34 1.5.0's (Rust core), both directions where it can.

smpp34 fully encodes and decodes only submit_sm and deliver_sm: for those the two encoders must
produce identical bytes and each decoder must read the other's values back.  Every other command
comes back from ``smpp34.decode`` as a ``RawPdu`` (header + raw body): we check that it frames
our encoding exactly (command_length, command_id, command_status, sequence_number and the body
octets).

Where smpp34 departs from SMPP v3.4 the case stays in as a named entry of ``DEVIATIONS`` with a
test that pins both sides down (see tests/protocol/peers.py); our codec is never bent to match.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import smpp34
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.protocol.peers import (
    ASCII,
    LATIN1,
    SM_FIELDS,
    Deviation,
    demonstrates,
    our_pdus,
    seed_pdus,
    smpp34_fields,
    to_smpp34,
    undemonstrated,
)

from catalyst_smpp.protocol.codec import PduEncodeError, decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import PduDecodeError
from catalyst_smpp.protocol.pdu import PDU_CLASSES, DeliverSm, Pdu, SubmitSm
from catalyst_smpp.protocol.tlv import TLV_SPECS, Tag, Tlv

S = CommandStatus
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEER = "smpp34 1.5.0"
SM_CIDS = (int(CommandId.submit_sm), int(CommandId.deliver_sm))
OTHER_CIDS = sorted(c for c in PDU_CLASSES if c not in SM_CIDS)
#: every TLV tag we know plus two vendor tags (smpp34 passes all of them through untouched)
ALL_TAGS = [*sorted(TLV_SPECS), 0x1401, 0x3FFF]

# =====================================================================================
# the named deviations of smpp34 1.5.0
# =====================================================================================

ONLY_SM_TYPED = Deviation(
    "SMPP34_ONLY_SUBMIT_DELIVER_TYPED",
    PEER,
    "chapter 4 (27 commands)",
    "encodes only submit_sm and deliver_sm; decodes every other command as RawPdu "
    "(header + raw body), so their fields are never checked",
    "a class, an encoder and a validating decoder for each command",
)
UTF8_STRINGS = Deviation(
    "SMPP34_UTF8_STRINGS",
    PEER,
    "3.1 (C-Octet String: ASCII; we carry Latin-1 octet for octet)",
    "encodes C-octet strings as UTF-8 and decodes them as UTF-8 with replacement characters, "
    "so a non-ASCII octet does not survive a round trip",
    "Latin-1: one character per octet, both ways",
)
OVERLONG_CSTRINGS = Deviation(
    "SMPP34_OVERLONG_CSTRINGS",
    PEER,
    "4.4.1 (source_addr Var. max 21, service_type Var. max 6 octets incl. NUL)",
    "encodes and decodes C-octet strings of any length",
    "PduEncodeError on encode; PduDecodeError with the field's status (ESME_RINVSRCADR ...) on decode",
)
SM_LENGTH_255 = Deviation(
    "SMPP34_SM_LENGTH_255",
    PEER,
    "4.4.1 (sm_length 0-254)",
    "decodes sm_length 255 (its encoder does refuse 255 octets, with a ValueError rather than "
    "its own SmppError)",
    "PduDecodeError ESME_RINVMSGLEN",
)
DROPS_MALFORMED_TLVS = Deviation(
    "SMPP34_DROPS_MALFORMED_TLVS",
    PEER,
    "5.3 (TLVs follow the mandatory fields, each whole)",
    "silently drops a TLV that overruns the PDU or a stub shorter than a TLV header",
    "PduDecodeError ESME_RINVOPTPARSTREAM",
)
TLV_LENGTH_WRAPS = Deviation(
    "SMPP34_TLV_LENGTH_WRAPS",
    PEER,
    "5.3 (the TLV length is 2 octets: values of at most 65535 octets)",
    "encodes a longer TLV value with its length taken modulo 65536, corrupting the PDU",
    "PduEncodeError (and a decoder that refuses the corrupt PDU)",
)
EMBEDDED_NUL = Deviation(
    "SMPP34_EMBEDDED_NUL",
    PEER,
    "3.1 (a C-Octet String ends at its NUL)",
    "writes a NUL inside a C-octet string as is, shifting every later field",
    "PduEncodeError",
)
TIME_UNCHECKED = Deviation(
    "SMPP34_TIME_FIELDS_UNCHECKED",
    PEER,
    "7.1.1 (a time is empty or 16 characters)",
    "encodes and decodes schedule_delivery_time / validity_period of any length",
    "PduEncodeError; PduDecodeError ESME_RINVSCHED / ESME_RINVEXPIRY",
)
TLV_VALUES_UNCHECKED = Deviation(
    "SMPP34_TLV_VALUES_UNCHECKED",
    PEER,
    "5.3.2 (each known TLV has a fixed type and length)",
    "accepts known TLVs with lengths their spec does not allow, and NULs inside C-octet string TLVs",
    "PduDecodeError ESME_RINVOPTPARAMVAL",
)
SM_AND_PAYLOAD = Deviation(
    "SMPP34_SM_AND_PAYLOAD",
    PEER,
    "5.3.2.32 (message_payload only with sm_length 0)",
    "encodes and decodes short_message and message_payload together",
    "PduDecodeError ESME_RINVOPTPARAMVAL (our encoder, which leaves semantics to the decoder, writes it too)",
)
ESM_CLASS_UNCHECKED = Deviation(
    "SMPP34_ESM_CLASS_UNCHECKED",
    PEER,
    "5.2.12 (submit_sm message types: default, delivery ack, manual/user ack)",
    "decodes a submit_sm whose esm_class claims to be a delivery receipt",
    "PduDecodeError ESME_RINVESMCLASS (messaging-mode and GSM bits stay free)",
)
REQUEST_STATUS_DROPPED = Deviation(
    "SMPP34_REQUEST_STATUS_DROPPED",
    PEER,
    "3.2 (a request's command_status should be NULL; a receiver reads it as sent)",
    "SubmitSm/DeliverSm expose no command_status: a non-zero one is unreadable after decode "
    "(re-encoding the decoded object does carry it through) and cannot be set on a new one",
    "command_status is a field of every PDU",
)

DEVIATIONS: tuple[Deviation, ...] = (
    ONLY_SM_TYPED,
    UTF8_STRINGS,
    OVERLONG_CSTRINGS,
    SM_LENGTH_255,
    DROPS_MALFORMED_TLVS,
    TLV_LENGTH_WRAPS,
    EMBEDDED_NUL,
    TIME_UNCHECKED,
    TLV_VALUES_UNCHECKED,
    SM_AND_PAYLOAD,
    ESM_CLASS_UNCHECKED,
    REQUEST_STATUS_DROPPED,
)


def _ours(pdu: Pdu) -> dict[str, Any]:
    out = {n: getattr(pdu, n) for n in SM_FIELDS}
    out["tlvs"] = pdu.tlvs
    out["sequence_number"] = pdu.sequence_number
    return out


# =====================================================================================
# submit_sm / deliver_sm: both directions, and byte-identical encodings
# =====================================================================================


@pytest.mark.parametrize("cid", SM_CIDS, ids=["submit_sm", "deliver_sm"])
@SETTINGS
@given(data=st.data())
def test_ours_encode_smpp34_decodes_same_values(cid: int, data: st.DataObject) -> None:
    # ASCII strings (UTF8_STRINGS); requests with command_status 0 (REQUEST_STATUS_DROPPED)
    pdu = data.draw(our_pdus(cid, tags=ALL_TAGS, alphabet=ASCII))
    wire = encode_pdu(pdu)
    theirs = smpp34.decode(wire)
    assert type(theirs) is (smpp34.SubmitSm if cid == CommandId.submit_sm else smpp34.DeliverSm)
    assert theirs.command_id == cid
    assert theirs.sm_length == len(pdu.short_message)
    assert smpp34_fields(theirs) == _ours(pdu)


@pytest.mark.parametrize("cid", SM_CIDS, ids=["submit_sm", "deliver_sm"])
@SETTINGS
@given(data=st.data())
def test_smpp34_encodes_ours_decodes_same_values_and_bytes(cid: int, data: st.DataObject) -> None:
    pdu = data.draw(our_pdus(cid, tags=ALL_TAGS, alphabet=ASCII))
    wire = to_smpp34(pdu).encode()
    assert decode_pdu(wire) == pdu
    assert wire == encode_pdu(pdu)  # the two encoders agree octet for octet


@pytest.mark.parametrize("cid", SM_CIDS, ids=["submit_sm", "deliver_sm"])
def test_seed_pdus_cross_both_ways(cid: int) -> None:
    """The fuzzer's seeds (long texts, SAR, receipts, vendor TLVs, message_payload) cross unchanged."""
    seeds = [p for p in seed_pdus() if p.command_id == cid]
    assert len(seeds) >= 3
    for pdu in seeds:
        wire = encode_pdu(pdu)
        assert smpp34_fields(smpp34.decode(wire)) == _ours(pdu)
        assert to_smpp34(pdu).encode() == wire


# =====================================================================================
# every other command: smpp34 frames our encoding into the same header and body
# =====================================================================================


@pytest.mark.parametrize("cid", OTHER_CIDS, ids=lambda c: CommandId(c).name)
@SETTINGS
@given(data=st.data())
def test_other_commands_frame_as_raw_pdu(cid: int, data: st.DataObject) -> None:
    pdu = data.draw(our_pdus(cid, tags=ALL_TAGS, alphabet=LATIN1))
    wire = encode_pdu(pdu)
    raw = smpp34.decode(wire)
    assert type(raw) is smpp34.RawPdu
    assert (raw.command_length, raw.command_id, raw.command_status, raw.sequence_number) == (
        len(wire),
        cid,
        pdu.command_status,
        pdu.sequence_number,
    )
    assert raw.body == wire[16:]
    # and the raw body, put back behind the header smpp34 reports, decodes to the same PDU
    rebuilt = struct.pack(
        ">IIII", raw.command_length, raw.command_id, raw.command_status, raw.sequence_number
    )
    assert decode_pdu(rebuilt + raw.body) == pdu


@demonstrates(*DEVIATIONS)
def test_every_deviation_is_demonstrated() -> None:
    namespace = {k: v for k, v in globals().items() if k != "test_every_deviation_is_demonstrated"}
    assert not undemonstrated(DEVIATIONS, namespace)
    assert len({d.name for d in DEVIATIONS}) == len(DEVIATIONS)


# =====================================================================================
# one test per deviation
# =====================================================================================


def _sm_body(
    *,
    service_type: bytes = b"",
    source_addr: bytes = b"1",
    esm_class: int = 0,
    schedule: bytes = b"",
    short_message: bytes = b"",
    sm_length: int | None = None,
    tail: bytes = b"",
) -> bytes:
    n = len(short_message) if sm_length is None else sm_length
    return (
        service_type + b"\x00" + b"\x01\x01" + source_addr + b"\x00" + b"\x01\x01" + b"2\x00"
        + bytes((esm_class, 0, 0)) + schedule + b"\x00" + b"\x00" + b"\x00\x00\x00\x00"
        + bytes((n,)) + short_message + tail
    )  # fmt: skip


def _wire(cid: int, body: bytes, status: int = 0, seq: int = 7) -> bytes:
    return struct.pack(">IIII", 16 + len(body), cid, status, seq) + body


def _refused(wire: bytes) -> PduDecodeError:
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    return exc.value


@demonstrates(ONLY_SM_TYPED)
def test_only_submit_and_deliver_typed() -> None:
    exported = {n for n in dir(smpp34) if n[0].isupper()}
    assert {"SubmitSm", "DeliverSm", "RawPdu"} <= exported
    for cid in OTHER_CIDS:
        assert PDU_CLASSES[cid].__name__ not in exported or PDU_CLASSES[cid].__name__ in (
            "SubmitSmResp",  # smpp34's SubmitSmResp / DeliverSmResp are session results, not codecs
            "DeliverSmResp",
        )
        assert not hasattr(getattr(smpp34, PDU_CLASSES[cid].__name__, None), "encode")
    # a bind with an over-long system_id: smpp34 hands it over raw, we refuse the field
    body = b"x" * 30 + b"\x00pw\x00\x00\x34\x00\x00\x00"
    wire = _wire(CommandId.bind_transmitter, body)
    assert smpp34.decode(wire).body == body
    assert _refused(wire).status == S.ESME_RINVSYSID


@demonstrates(UTF8_STRINGS)
def test_utf8_strings() -> None:
    ours = SubmitSm(sequence_number=3, source_addr="Caf\xe9", destination_addr="1")
    wire = encode_pdu(ours)
    assert b"Caf\xe9\x00" in wire
    assert smpp34.decode(wire).source_addr == "Caf\ufffd"  # lossy
    theirs = to_smpp34(ours).encode()
    assert b"Caf\xc3\xa9\x00" in theirs
    assert decode_pdu(theirs).source_addr == "Caf\xc3\xa9"  # two Latin-1 characters


@demonstrates(OVERLONG_CSTRINGS)
def test_overlong_cstrings() -> None:
    theirs = smpp34.SubmitSm("1" * 40, "2", service_type="LONGTYPE").encode()
    assert smpp34.decode(theirs).source_addr == "1" * 40
    err = _refused(theirs)
    assert (err.status, err.field) == (S.ESME_RINVSERTYP, "service_type")
    theirs = smpp34.SubmitSm("1" * 40, "2").encode()
    err = _refused(theirs)
    assert (err.status, err.field, err.sequence_number) == (S.ESME_RINVSRCADR, "source_addr", 1)
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(source_addr="1" * 40))


@demonstrates(SM_LENGTH_255)
def test_sm_length_255() -> None:
    wire = _wire(CommandId.submit_sm, _sm_body(short_message=b"x" * 255))
    assert len(smpp34.decode(wire).short_message) == 255
    assert _refused(wire).status == S.ESME_RINVMSGLEN
    # smpp34 1.5.0 refuses 255 octets on encode with a plain ValueError, not its SmppError
    with pytest.raises(ValueError, match="254"):
        smpp34.SubmitSm("1", "2", b"x" * 255).encode()
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(source_addr="1", destination_addr="2", short_message=b"x" * 255))


@demonstrates(DROPS_MALFORMED_TLVS)
@pytest.mark.parametrize(
    "tail",
    [struct.pack(">HH", Tag.receipted_message_id, 9) + b"ab\x00", b"\x00\x1e", b"\x04"],
    ids=["overrun", "stub-2", "stub-1"],
)
def test_drops_malformed_tlvs(tail: bytes) -> None:
    wire = _wire(CommandId.deliver_sm, _sm_body(esm_class=4, tail=tail))
    assert smpp34.decode(wire).tlvs == []
    assert _refused(wire).status == S.ESME_RINVOPTPARSTREAM


@demonstrates(TLV_LENGTH_WRAPS)
def test_tlv_length_wraps() -> None:
    value = b"x" * 70000
    wire = smpp34.SubmitSm("1", "2", tlvs=[smpp34.Tlv(Tag.message_payload, value)]).encode()
    assert len(wire) == 16 + len(_sm_body(source_addr=b"1")) + 4 + 70000
    assert struct.pack(">HH", Tag.message_payload, 70000 % 65536) in wire  # the length wrapped
    err = _refused(wire)
    assert err.status == S.ESME_RINVOPTPARSTREAM
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(tlvs=(Tlv(Tag.message_payload, value),)))


@demonstrates(EMBEDDED_NUL)
def test_embedded_nul() -> None:
    wire = smpp34.SubmitSm("1\x002", "3").encode()
    d = smpp34.decode(wire)
    assert (d.source_addr, d.dest_addr_ton) == ("1", ord("2"))  # every later field shifted
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(source_addr="1\x002", destination_addr="3"))


@demonstrates(TIME_UNCHECKED)
def test_time_fields_unchecked() -> None:
    wire = smpp34.SubmitSm("1", "2", schedule_delivery_time="2405").encode()
    assert smpp34.decode(wire).schedule_delivery_time == "2405"
    err = _refused(wire)
    assert (err.status, err.field) == (S.ESME_RINVSCHED, "schedule_delivery_time")
    wire = smpp34.SubmitSm("1", "2", validity_period="x" * 17).encode()
    assert _refused(wire).status == S.ESME_RINVEXPIRY
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(schedule_delivery_time="2405"))


@demonstrates(TLV_VALUES_UNCHECKED)
@pytest.mark.parametrize(
    ("tlv", "status"),
    [
        (Tlv(Tag.message_state, b"\x00\x02"), S.ESME_RINVOPTPARAMVAL),
        (Tlv(Tag.network_error_code, b"\x03"), S.ESME_RINVOPTPARAMVAL),
        (Tlv(Tag.receipted_message_id, b"a\x00b\x00"), S.ESME_RINVOPTPARAMVAL),
    ],
    ids=["message_state-2", "network_error_code-1", "receipted_message_id-nul"],
)
def test_tlv_values_unchecked(tlv: Tlv, status: int) -> None:
    wire = smpp34.DeliverSm("1", "2", esm_class=4, tlvs=[smpp34.Tlv(tlv.tag, tlv.raw)]).encode()
    assert [(t.tag, t.value) for t in smpp34.decode(wire).tlvs] == [(tlv.tag, tlv.raw)]
    err = _refused(wire)
    assert (err.status, err.field) == (status, TLV_SPECS[tlv.tag].name)


@demonstrates(SM_AND_PAYLOAD)
def test_short_message_and_payload() -> None:
    tlvs = [smpp34.Tlv(Tag.message_payload, b"more")]
    wire = smpp34.SubmitSm("1", "2", b"hi", tlvs=tlvs).encode()
    d = smpp34.decode(wire)
    assert (d.short_message, [t.value for t in d.tlvs]) == (b"hi", [b"more"])
    err = _refused(wire)
    assert (err.status, err.field) == (S.ESME_RINVOPTPARAMVAL, "message_payload")
    # our encoder writes it as well (semantic checks are the decoder's), the same bytes
    ours = SubmitSm(sequence_number=1, source_addr="1", destination_addr="2", short_message=b"hi",
                    tlvs=(Tlv(Tag.message_payload, b"more"),))  # fmt: skip
    assert encode_pdu(ours) == wire


@demonstrates(ESM_CLASS_UNCHECKED)
def test_esm_class_unchecked() -> None:
    wire = smpp34.SubmitSm("1", "2", esm_class=0x04).encode()
    assert smpp34.decode(wire).esm_class == 0x04
    err = _refused(wire)
    assert (err.status, err.field) == (S.ESME_RINVESMCLASS, "esm_class")
    # messaging-mode and GSM bits are free on both sides (Kannel's 0x43)
    wire = smpp34.SubmitSm("1", "2", esm_class=0x43).encode()
    assert decode_pdu(wire).esm_class == 0x43


@demonstrates(REQUEST_STATUS_DROPPED)
def test_request_status_dropped() -> None:
    ours = DeliverSm(sequence_number=5, command_status=0x0B, source_addr="1")
    wire = encode_pdu(ours)
    d = smpp34.decode(wire)
    assert not hasattr(d, "command_status")
    assert d.encode() == wire  # kept inside, out of reach
    with pytest.raises(TypeError):
        smpp34.DeliverSm("1", "", command_status=0x0B)
    fresh = smpp34.DeliverSm("1", "", sequence_number=5).encode()
    assert fresh == wire[:8] + b"\x00\x00\x00\x00" + wire[12:]
    assert decode_pdu(wire).command_status == 0x0B
