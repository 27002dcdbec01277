"""Unit tests of the PDU model, TLVs and codec behaviour that the vectors do not pin."""

from __future__ import annotations

import struct
import subprocess
import sys

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.protocol import decode
from catalyst_smpp.protocol.codec import PduEncodeError, decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import (
    FramingError,
    LocalProtocolError,
    PduDecodeError,
    UnknownCommandError,
)
from catalyst_smpp.protocol.fields import LAYOUTS
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    AlertNotification,
    BindTransceiver,
    BindTransceiverResp,
    DataSm,
    DataSmResp,
    DeliverSm,
    DeliverSmResp,
    DistributionListDestination,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    SmeDestination,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    SubmitSmResp,
    UnsuccessSme,
    request_class,
    response_class,
)
from catalyst_smpp.protocol.tlv import TLV_SPECS, Tag, Tlv, check_tlv


def _camel(name: str) -> str:
    return "".join(w.capitalize() for w in name.split("_"))


# --- the model --------------------------------------------------------------------------


def test_every_command_has_a_class_named_as_in_the_spec() -> None:
    assert set(PDU_CLASSES) == {int(c) for c in CommandId}
    for cid, cls in PDU_CLASSES.items():
        assert cls.__name__ == _camel(CommandId(cid).name)
        assert cls.command_id == cid


def test_class_fields_follow_the_field_table() -> None:
    for cid, cls in PDU_CLASSES.items():
        names = [a.name for a in attrs.fields(cls)]
        assert names == ["sequence_number", "command_status", *(f.name for f in LAYOUTS[cid]), "tlvs"], cls
        assert "command_length" not in names and "sm_length" not in names


def test_classes_are_mutable_and_slotted() -> None:
    p = SubmitSm()
    p.source_addr = "123"
    assert p.source_addr == "123"
    with pytest.raises(AttributeError):
        p.not_a_field = 1  # type: ignore[attr-defined]


def test_request_response_mapping() -> None:
    assert response_class(CommandId.submit_sm) is SubmitSmResp
    assert request_class(CommandId.submit_sm_resp) is SubmitSm
    assert response_class(CommandId.bind_transceiver) is BindTransceiverResp
    assert request_class(CommandId.enquire_link_resp) is EnquireLink
    for cid in (CommandId.outbind, CommandId.alert_notification, CommandId.submit_sm_resp):
        with pytest.raises(KeyError):
            response_class(cid)
    with pytest.raises(KeyError):
        request_class(CommandId.generic_nack)


def test_make_response() -> None:
    req = SubmitSm(sequence_number=77, source_addr="1")
    resp = req.make_response(message_id="abc")
    assert resp == SubmitSmResp(sequence_number=77, command_status=0, message_id="abc")
    nack = EnquireLink(sequence_number=5).make_response(CommandStatus.ESME_RSYSERR)
    assert nack == EnquireLinkResp(5, CommandStatus.ESME_RSYSERR)
    with pytest.raises(LocalProtocolError):
        Outbind().make_response()


def test_get_tlv_returns_typed_first_value() -> None:
    p = DeliverSm(
        tlvs=(
            Tlv.make(Tag.receipted_message_id, "abc"),
            Tlv.make(Tag.message_state, 2),
            Tlv(0x1400, b"\x01\x02"),
            Tlv.make(Tag.message_state, 5),
        )
    )
    assert p.get_tlv(Tag.receipted_message_id) == "abc"
    assert p.get_tlv(Tag.message_state) == 2
    assert p.get_tlv(0x1400) == b"\x01\x02"
    assert p.get_tlv(Tag.network_error_code) is None
    assert [t.value for t in p.get_tlvs(Tag.message_state)] == [2, 5]


# --- TLVs ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("tag", "value", "raw"),
    [
        (Tag.sar_msg_ref_num, 0x1234, b"\x12\x34"),
        (Tag.qos_time_to_live, 3600, b"\x00\x00\x0e\x10"),
        (Tag.source_telematics_id, 1, b"\x01"),
        (Tag.dest_telematics_id, 1, b"\x00\x01"),
        (Tag.receipted_message_id, "5f3a", b"5f3a\x00"),
        (Tag.message_payload, b"\x00\x01", b"\x00\x01"),
        (Tag.alert_on_message_delivery, b"", b""),
        (Tag.ms_validity, 3, b"\x03"),
        (Tag.ms_validity, 0x01020304, b"\x01\x02\x03\x04"),
        (Tag.source_network_id, "net-0001", b"net-0001\x00"),
    ],
)
def test_tlv_make_and_value(tag: int, value: int | str | bytes, raw: bytes) -> None:
    t = Tlv.make(tag, value)
    assert t == Tlv(tag, raw)
    assert t.value == value


def test_tlv_tag_values_from_the_spec() -> None:
    expected = {
        "dest_addr_subunit": 0x0005, "source_addr_subunit": 0x000D, "qos_time_to_live": 0x0017,
        "payload_type": 0x0019, "additional_status_info_text": 0x001D, "receipted_message_id": 0x001E,
        "ms_msg_wait_facilities": 0x0030, "privacy_indicator": 0x0201, "source_subaddress": 0x0202,
        "dest_subaddress": 0x0203, "user_message_reference": 0x0204, "source_port": 0x020A,
        "destination_port": 0x020B, "sar_msg_ref_num": 0x020C, "sar_total_segments": 0x020E,
        "sar_segment_seqnum": 0x020F, "sc_interface_version": 0x0210, "callback_num": 0x0381,
        "ms_availability_status": 0x0422, "network_error_code": 0x0423, "message_payload": 0x0424,
        "delivery_failure_reason": 0x0425, "more_messages_to_send": 0x0426, "message_state": 0x0427,
        "congestion_state": 0x0428, "ussd_service_op": 0x0501, "alert_on_message_delivery": 0x130C,
        "its_reply_type": 0x1380, "its_session_info": 0x1383, "billing_identification": 0x060B,
    }  # fmt: skip
    for name, value in expected.items():
        assert Tag[name] == value
        assert TLV_SPECS[value].name == name
    assert set(TLV_SPECS) == set(Tag)


@pytest.mark.parametrize(
    ("tag", "value"),
    [
        (Tag.message_state, 256),
        (Tag.message_state, -1),
        (Tag.message_state, "2"),
        (Tag.receipted_message_id, "a\x00b"),
        (Tag.receipted_message_id, "x" * 65),
        (Tag.network_error_code, b"\x03\x00"),
        (Tag.callback_num, b"123"),
        (0x1400, 7),
        (0x10000, b""),
    ],
)
def test_tlv_make_refuses_values_outside_the_spec(tag: int, value: int | str | bytes) -> None:
    with pytest.raises(ValueError):
        Tlv.make(tag, value)


def test_check_tlv() -> None:
    assert check_tlv(Tag.message_state, b"\x02") == 0
    assert check_tlv(Tag.message_state, b"\x00\x02") == CommandStatus.ESME_RINVOPTPARAMVAL
    assert check_tlv(Tag.receipted_message_id, b"") == CommandStatus.ESME_RINVOPTPARAMVAL
    assert check_tlv(Tag.receipted_message_id, b"a\x00b\x00") == CommandStatus.ESME_RINVOPTPARAMVAL
    # a receipted_message_id without its NUL is accepted (seen from SMSCs), value read whole
    assert check_tlv(Tag.receipted_message_id, b"abc") == 0
    assert Tlv(Tag.receipted_message_id, b"abc").value == "abc"
    assert check_tlv(0x1499, b"anything at all") == 0


def test_unknown_and_odd_tlvs_survive_byte_for_byte() -> None:
    p = DeliverSm(
        sequence_number=1,
        source_addr="1",
        tlvs=(Tlv(0x1499, b"\x00\xff"), Tlv(0x3FFF, b""), Tlv(Tag.receipted_message_id, b"no-nul")),
    )
    wire = encode_pdu(p)
    assert wire.endswith(b"\x14\x99\x00\x02\x00\xff\x3f\xff\x00\x00\x00\x1e\x00\x06no-nul")
    assert decode_pdu(wire) == p


# --- decode behaviour ---------------------------------------------------------------------


def test_unknown_status_stays_int() -> None:
    wire = struct.pack(">IIII", 16, CommandId.submit_sm_resp, 0x4A1, 3)
    p = decode_pdu(wire)
    assert p.command_status == 0x4A1 and type(p.command_status) is int


@pytest.mark.parametrize(
    "cls", [DeliverSmResp, SubmitSmResp, DataSmResp, BindTransceiverResp, SubmitMultiResp]
)
def test_response_with_empty_body_decodes_to_defaults(cls: type[Pdu]) -> None:
    for status in (0, 8):
        p = decode_pdu(struct.pack(">IIII", 16, cls.command_id, status, 9))
        assert p == cls(9, status)


def test_error_response_bodies() -> None:
    # all-default body + error -> header only (v3.4 4.4.2)
    assert encode_pdu(SubmitSmResp(3, CommandStatus.ESME_RTHROTTLED)) == struct.pack(
        ">IIII", 16, 0x80000004, 0x58, 3
    )
    # an OK response always carries its body
    assert encode_pdu(DeliverSmResp(3)) == struct.pack(">IIII", 17, 0x80000005, 0, 3) + b"\x00"
    # an error response that carries something keeps its body
    r = DataSmResp(4, CommandStatus.ESME_RDELIVERYFAILURE, "", (Tlv.make(Tag.delivery_failure_reason, 1),))
    wire = encode_pdu(r)
    assert len(wire) == 16 + 1 + 5
    assert decode_pdu(wire) == r
    # smpplib writes a 1-octet NUL body on errors: accepted, re-encoded header-only
    smpplib_style = struct.pack(">IIII", 17, 0x80000004, 0x45, 3) + b"\x00"
    assert decode_pdu(smpplib_style) == SubmitSmResp(3, 0x45)


def test_request_with_empty_body_is_too_short() -> None:
    with pytest.raises(PduDecodeError) as info:
        decode_pdu(struct.pack(">IIII", 16, CommandId.submit_sm, 0, 12))
    assert info.value.status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.command_id == CommandId.submit_sm and info.value.sequence_number == 12


def test_framing_and_unknown_command_errors() -> None:
    with pytest.raises(FramingError):
        decode_pdu(b"\x00\x00\x00\x10\x00\x00")
    with pytest.raises(FramingError):
        decode_pdu(struct.pack(">IIII", 15, 0x15, 0, 1))
    with pytest.raises(FramingError):
        decode_pdu(struct.pack(">IIII", 17, 0x15, 0, 1))
    with pytest.raises(FramingError):
        decode_pdu(struct.pack(">IIII", 16, 0x15, 0, 1), offset=-1)
    with pytest.raises(UnknownCommandError) as info:
        decode_pdu(struct.pack(">IIII", 16, 0x80000010, 0, 42))
    assert info.value.status == CommandStatus.ESME_RINVCMDID and info.value.sequence_number == 42


def test_esm_class_mode_bits_are_accepted_type_bits_checked() -> None:
    for esm in (0x00, 0x01, 0x02, 0x03, 0x43, 0x83, 0xC3, 0x08, 0x10):
        p = SubmitSm(1, source_addr="1", destination_addr="2", esm_class=esm)
        decoded = decode_pdu(encode_pdu(p))
        assert isinstance(decoded, SubmitSm) and decoded.esm_class == esm
    for esm in (0x04, 0x18, 0x20, 0x24, 0x3C):
        wire = encode_pdu(SubmitSm(1, source_addr="1", destination_addr="2", esm_class=esm))
        with pytest.raises(PduDecodeError) as info:
            decode_pdu(wire)
        assert info.value.status == CommandStatus.ESME_RINVESMCLASS and info.value.field == "esm_class"
    for esm in (0x04, 0x08, 0x10, 0x18, 0x20, 0x44):
        received = decode_pdu(encode_pdu(DeliverSm(1, esm_class=esm)))
        assert isinstance(received, DeliverSm) and received.esm_class == esm


def test_submit_multi_round_trip() -> None:
    p = SubmitMulti(
        5,
        0,
        "CMT",
        5,
        0,
        "Brand",
        (SmeDestination(1, 1, "447700900001"), DistributionListDestination("vip"), SmeDestination(0, 0, "")),
        esm_class=0x40,
        short_message=b"\x05\x00\x03\x01\x02\x01hi",
    )
    assert decode_pdu(encode_pdu(p)) == p
    r = SubmitMultiResp(5, 0, "m1", (UnsuccessSme(1, 1, "447700900001", 0x0B), UnsuccessSme(0, 0, "", 0x401)))
    assert decode_pdu(encode_pdu(r)) == r


def test_data_sm_allows_long_addresses() -> None:
    p = DataSm(1, 0, "", 1, 1, "1" * 64, 1, 1, "2" * 64, tlvs=(Tlv.make(Tag.message_payload, b"x" * 1000),))
    assert decode_pdu(encode_pdu(p)) == p


def test_alert_notification_round_trip() -> None:
    p = AlertNotification(
        1, 0, 1, 1, "447700900123", 0, 0, "esme", (Tlv.make(Tag.ms_availability_status, 0),)
    )
    assert decode_pdu(encode_pdu(p)) == p


def test_generic_nack_and_header_only() -> None:
    wire = encode_pdu(GenericNack(7, CommandStatus.ESME_RINVCMDID))
    assert wire == struct.pack(">IIII", 16, 0x80000000, 3, 7)
    assert decode_pdu(wire) == GenericNack(7, 3)


def test_latin1_text_round_trips() -> None:
    p = SubmitSm(1, source_addr="Café", destination_addr="ÿ123")
    assert decode_pdu(encode_pdu(p)) == p


def test_several_pdus_in_one_buffer() -> None:
    a = encode_pdu(SubmitSm(1, source_addr="1", destination_addr="2", short_message=b"a"))
    b = encode_pdu(EnquireLink(2))
    c = encode_pdu(SubmitSmResp(3, 0, "id"))
    buf = a + b + c
    assert decode_pdu(buf, 0).sequence_number == 1
    assert decode_pdu(buf, len(a)).sequence_number == 2
    assert decode_pdu(buf, len(a) + len(b)) == SubmitSmResp(3, 0, "id")


# --- encode refusals ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "pdu",
    [
        SubmitSm(source_addr="1" * 21),
        SubmitSm(destination_addr="x\x00y"),
        SubmitSm(service_type="ABCDEF"),
        SubmitSm(schedule_delivery_time="2401"),
        SubmitSm(short_message=b"x" * 255),
        SubmitSm(esm_class=256),
        SubmitSm(sequence_number=-1),
        SubmitSm(source_addr="€"),
        SubmitSmResp(message_id="m" * 65),
        BindTransceiver(system_id="s" * 16),
        BindTransceiver(password="p" * 9),
        SubmitMulti(dest_address=()),
        SubmitMulti(dest_address=(SmeDestination(),) * 255),
        EnquireLink(tlvs=(Tlv(0x1400, b"x" * 0x10000),)),
        EnquireLink(command_status=1 << 32),
    ],
)
def test_encode_refuses_what_the_wire_cannot_carry(pdu: object) -> None:
    with pytest.raises(PduEncodeError):
        encode_pdu(pdu)  # type: ignore[arg-type]


def test_encode_derives_lengths() -> None:
    wire = encode_pdu(SubmitSm(9, source_addr="1", destination_addr="2", short_message=b"hello"))
    assert struct.unpack_from(">I", wire)[0] == len(wire)
    sm_length_at = 16 + 1 + 2 + 2 + 2 + 2 + 3 + 1 + 1 + 4
    assert wire[sm_length_at] == 5 and wire[sm_length_at + 1 :] == b"hello"


def test_decoding_without_the_c_core_gives_the_same_pdu(monkeypatch: pytest.MonkeyPatch) -> None:
    p = SubmitSm(1, 0, "CMT", 1, 1, "12345", 1, 1, "4477", 0x43, short_message=b"x" * 160)
    wire = encode_pdu(p)
    monkeypatch.setattr(decode, "_native_decode_sm", None)
    assert decode_pdu(wire) == p


def test_importing_the_protocol_core_pulls_in_no_io_frameworks() -> None:
    code = (
        "import sys; import catalyst_smpp.protocol.codec, catalyst_smpp.protocol.pdu; "
        "bad = [m for m in ('trio', 'nats', 'psycopg', 'asyncio') if m in sys.modules]; "
        "print(','.join(bad)); sys.exit(1 if bad else 0)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    assert out.returncode == 0, out.stdout + out.stderr


def test_pdu_decode_error_carries_field_name() -> None:
    # service_type '', source_addr_ton/npi 1, then 30 digits: no NUL within source_addr's 21 octets
    bad = bytearray(struct.pack(">IIII", 0, 4, 0, 4)) + b"\x00\x01\x01" + b"9" * 30 + b"\x00"
    bad[0:4] = len(bad).to_bytes(4, "big")
    with pytest.raises(PduDecodeError) as info:
        decode_pdu(bytes(bad))
    assert info.value.field == "source_addr" and info.value.status == CommandStatus.ESME_RINVSRCADR


@settings(max_examples=300, deadline=None)
@given(
    cid=st.sampled_from(sorted(decode._ONE_STRING)),
    text=st.binary(max_size=80).map(lambda b: b.replace(b"\x00", b"")),
    tlv=st.booleans(),
    status=st.sampled_from([0, 0x45]),
)
def test_a_one_string_response_reads_the_same_with_or_without_tlvs(
    cid: int, text: bytes, tlv: bool, status: int
) -> None:
    """A response whose body is one C-octet string (message_id / system_id) is read in one step when the
    string ends the body, by the field loop when TLVs follow: the same string either way, and the same
    refusal of one longer than its field allows."""
    f = LAYOUTS[cid][0]
    body = text + b"\x00" + (struct.pack(">HHB", 0x0210, 1, 0x34) if tlv else b"")
    data = struct.pack(">IIII", 16 + len(body), cid, status, 7) + body
    if len(text) + 1 > f.max_len:
        with pytest.raises(PduDecodeError):
            decode_pdu(data)
        return
    pdu = decode_pdu(data)
    assert (pdu.command_id, pdu.command_status, pdu.sequence_number) == (cid, status, 7)
    assert getattr(pdu, f.name) == text.decode("latin-1")
    assert decode_pdu(bytearray(data)) == pdu  # (the memoryview path too)
