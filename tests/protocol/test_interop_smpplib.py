"""Cross-checks of our codec against smpplib 2.2.4's, both directions, for every command it supports.

* ours -> smpplib: we encode hypothesis-drawn, spec-valid field values; smpplib's parser must
  read back the same values.
* smpplib -> ours: smpplib encodes the same kind of values; our decoder must read them back.

Where smpplib departs from SMPP v3.4 the case stays in, as a named entry of ``DEVIATIONS``
(with the section of the spec that decides) and a test that pins the behaviour down on both
sides: what smpplib does, and what we do instead.  ``test_every_deviation_is_demonstrated``
keeps the table and the tests in step; if smpplib ever fixes one, its test fails and the table
must be updated.  Our codec is never bent to match.
"""

from __future__ import annotations

import struct
from typing import Any

import pytest
import smpplib.command
import smpplib.exceptions
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.protocol.peers import (
    LATIN1,
    SMPPLIB_COMMANDS,
    SMPPLIB_UNSUPPORTED,
    Deviation,
    demonstrates,
    our_pdus,
    seed_pdus,
    smpplib_class,
    smpplib_encode,
    smpplib_int,
    smpplib_params,
    smpplib_parse,
    smpplib_str,
    smpplib_tlv_names,
    undemonstrated,
)

from catalyst_smpp.protocol.codec import PduEncodeError, decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import PduDecodeError
from catalyst_smpp.protocol.fields import LAYOUTS, FieldKind
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    AlertNotification,
    DataSm,
    DataSmResp,
    DeliverSm,
    Pdu,
    QuerySm,
    SubmitSm,
)
from catalyst_smpp.protocol.tlv import TLV_SPECS, Tag, Tlv, TlvKind

S = CommandStatus
SETTINGS = settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
PEER = "smpplib 2.2.4"

# =====================================================================================
# the named deviations of smpplib 2.2.4
# =====================================================================================

INTERFACE_VERSION_FORCED = Deviation(
    "SMPPLIB_BIND_INTERFACE_VERSION_FORCED",
    PEER,
    "4.1.1, 5.2.4 (interface_version is the caller's)",
    "bind_transmitter/receiver/transceiver are always encoded with interface_version 0x34, "
    "whatever the caller passes",
    "encode the interface_version given; smpplib's decoder reads ours correctly",
)
ERROR_RESP_NUL_BODY = Deviation(
    "SMPPLIB_ERROR_RESPONSE_NUL_BODY",
    PEER,
    "4.1.2, 4.4.2 (the body is not returned when command_status is non-zero)",
    "an error *_resp carries its default body: a 1-octet NUL (empty message_id / system_id), "
    "4 octets for query_sm_resp",
    "send an error response whose body is all defaults header-only; decode the NUL body as the "
    "empty field (same values)",
)
INT_TLV_WRITTEN_AT_WRONG_SIZE = Deviation(
    "SMPPLIB_INT_TLV_WRITTEN_AT_WRONG_SIZE",
    PEER,
    "5.3.2.2 source_addr_subunit Integer(1); 5.3.2.9 source_telematics_id Integer(1)",
    "submit_sm/data_sm source_addr_subunit and data_sm source_telematics_id are written as 2-octet integers",
    "refuse them: PduDecodeError ESME_RINVOPTPARAMVAL naming the TLV",
)
INT_TLV_DECODED_AT_OWN_SIZE = Deviation(
    "SMPPLIB_INT_TLV_DECODED_AT_OWN_SIZE",
    PEER,
    "5.3 (the TLV length gives the size of the value)",
    "its decoder reads an integer TLV at its own fixed size, ignoring the length: a 1-octet "
    "source_addr_subunit swallows an octet of the next TLV (256 when that tag starts with 0x00) "
    "and the rest is lost or raises; as the last TLV it raises struct.error",
    "decode by the TLV length",
)
OCTET_TLV_AS_CSTRING = Deviation(
    "SMPPLIB_OCTET_TLV_AS_CSTRING",
    PEER,
    "5.3.2.15 source_subaddress, 5.3.2.16 dest_subaddress, 5.3.2.37 callback_num_atag: Octet String",
    "treats them as C-octet strings: appends a NUL on encode and drops the last octet on decode; "
    "the subaddress type octet (0x80 / 0x88 / 0xA0) can only be passed as text, which it encodes "
    "as UTF-8 with the TLV length counted in characters, corrupting the PDU",
    "keep the octets as they are",
)
DATA_SM_RESP_CSTRING_TLVS = Deviation(
    "SMPPLIB_DATA_SM_RESP_CSTRING_TLVS",
    PEER,
    "5.3.2.33 delivery_failure_reason Integer(1); 5.3.2.31 network_error_code Octet String(3)",
    "data_sm_resp's delivery_failure_reason and network_error_code are written (and read) as "
    "C-octet strings; an int value cannot be encoded at all",
    "refuse the wrong lengths with ESME_RINVOPTPARAMVAL; encode the spec's forms, which smpplib then "
    "reads one octet short",
)
STRING_TLV_LAST_OCTET_DROPPED = Deviation(
    "SMPPLIB_STRING_TLV_LAST_OCTET_DROPPED",
    PEER,
    "5.3.2.19 receipted_message_id C-Octet String (we tolerate a missing NUL)",
    "drops the last octet of every string TLV, so a value sent without its NUL loses its last character",
    "keep the raw value; tlv.value strips the NUL only if there is one",
)
STRING_TLV_UTF8 = Deviation(
    "SMPPLIB_STRING_TLV_UTF8_LENGTH_IN_CHARS",
    PEER,
    "3.1 (C-Octet String: ASCII), 5.3 (TLV length in octets)",
    "string TLVs are UTF-8 encoded but their length is counted in characters: any non-ASCII "
    "character corrupts the PDU (mandatory strings are Latin-1)",
    "Latin-1 throughout; the corrupt PDU is refused with ESME_RINVOPTPARSTREAM",
)
STRING_TLV_MAX_OFF_BY_ONE = Deviation(
    "SMPPLIB_STRING_TLV_MAX_OFF_BY_ONE",
    PEER,
    "5.3.2.19 receipted_message_id: at most 65 octets including the NUL",
    "a string TLV of exactly max characters is written with max+1 octets; a longer one is cut to "
    "max-1 characters",
    "refuse the 66-octet receipted_message_id with ESME_RINVOPTPARAMVAL",
)
SILENT_TRUNCATION = Deviation(
    "SMPPLIB_SILENT_TRUNCATION",
    PEER,
    "4.4.1 (source_addr Var. max 21 octets incl. NUL)",
    "over-long mandatory C-octet strings are silently cut to max-1 characters",
    "PduEncodeError: nothing is sent that differs from what the caller asked for",
)
ADDRESS_CAP_20 = Deviation(
    "SMPPLIB_DATA_SM_ALERT_ADDRESS_CAP_20",
    PEER,
    "4.7.1 data_sm and 4.12.1 alert_notification: addresses Var. max 65 octets",
    "data_sm source_addr/destination_addr and alert_notification source_addr/esme_addr are "
    "capped at 20 characters on encode (its decoder reads longer ones fine)",
    "encode and decode up to 64 characters",
)
REPEATED_TLV_LAST_WINS = Deviation(
    "SMPPLIB_REPEATED_TLV_LAST_WINS",
    PEER,
    "5.3 (TLVs in any order; v5.0 4.8.1 makes some repeatable)",
    "keeps only the last of repeated TLVs (we read the first with get_tlv)",
    "keep every TLV in wire order; get_tlv returns the first",
)
UNLISTED_TLV_KEYERROR = Deviation(
    "SMPPLIB_UNLISTED_TLV_KEYERROR",
    PEER,
    "4.4.1 submit_sm lists callback_num_atag; 4.7.1 data_sm lists set_dpf",
    "raises KeyError on a known TLV that it does not list for the command",
    "accept any well-formed TLV",
)
UNKNOWN_TLV_RAISES = Deviation(
    "SMPPLIB_UNKNOWN_TLV_RAISES",
    PEER,
    "5.3 (an unrecognised optional parameter is to be ignored)",
    "raises UnknownCommandError on a vendor TLV unless allow_unknown_opt_params=True, and then drops it",
    "keep unknown TLVs byte for byte",
)
FLAG_TLV_IGNORED = Deviation(
    "SMPPLIB_FLAG_TLV_IGNORED",
    PEER,
    "5.3.2.41 alert_on_message_delivery: a TLV with no value",
    "never encodes alert_on_message_delivery and ignores it on decode (the attribute stays None)",
    "encode and decode it as a zero-length TLV",
)
EMPTY_TLV_DROPPED = Deviation(
    "SMPPLIB_EMPTY_TLV_DROPPED",
    PEER,
    "5.3.2.19 (receipted_message_id may be the bare NUL), 5.3.2.32 (message_payload may be empty)",
    "a string or octet-string TLV with an empty value is silently not written",
    "write every TLV given",
)
QUERY_SM_NEEDS_ID = Deviation(
    "SMPPLIB_QUERY_SM_REQUIRES_MESSAGE_ID",
    PEER,
    "4.8.1 query_sm message_id: C-Octet String Var. max 65",
    "refuses to encode a query_sm with an empty message_id (ValueError)",
    "encode it; whether it matches a message is the SMSC's business",
)
UNSUPPORTED_COMMANDS = Deviation(
    "SMPPLIB_UNSUPPORTED_COMMANDS",
    PEER,
    "4.1.7 outbind, 4.5 submit_multi, 4.9 cancel_sm, 4.10 replace_sm (and their responses)",
    "has no class for these: make_pdu and parse_pdu raise smpplib.exceptions.UnknownCommandError",
    "encode and decode all 27 commands",
)

DEVIATIONS: tuple[Deviation, ...] = (
    INTERFACE_VERSION_FORCED,
    ERROR_RESP_NUL_BODY,
    INT_TLV_WRITTEN_AT_WRONG_SIZE,
    INT_TLV_DECODED_AT_OWN_SIZE,
    OCTET_TLV_AS_CSTRING,
    DATA_SM_RESP_CSTRING_TLVS,
    STRING_TLV_LAST_OCTET_DROPPED,
    STRING_TLV_UTF8,
    STRING_TLV_MAX_OFF_BY_ONE,
    SILENT_TRUNCATION,
    ADDRESS_CAP_20,
    REPEATED_TLV_LAST_WINS,
    UNLISTED_TLV_KEYERROR,
    UNKNOWN_TLV_RAISES,
    FLAG_TLV_IGNORED,
    EMPTY_TLV_DROPPED,
    QUERY_SM_NEEDS_ID,
    UNSUPPORTED_COMMANDS,
)

#: (command, TLV) pairs whose smpplib type does not match the spec's; every other TLV smpplib lists
#: for a command takes part in the property cross-checks below
TLV_DEVIATIONS: dict[tuple[str, str], Deviation] = {
    ("submit_sm", "source_addr_subunit"): INT_TLV_WRITTEN_AT_WRONG_SIZE,
    ("data_sm", "source_telematics_id"): INT_TLV_WRITTEN_AT_WRONG_SIZE,
    ("submit_sm", "source_subaddress"): OCTET_TLV_AS_CSTRING,
    ("submit_sm", "dest_subaddress"): OCTET_TLV_AS_CSTRING,
    ("deliver_sm", "source_subaddress"): OCTET_TLV_AS_CSTRING,
    ("deliver_sm", "dest_subaddress"): OCTET_TLV_AS_CSTRING,
    ("data_sm", "source_subaddress"): OCTET_TLV_AS_CSTRING,
    ("data_sm", "dest_subaddress"): OCTET_TLV_AS_CSTRING,
    ("data_sm", "callback_num_atag"): OCTET_TLV_AS_CSTRING,
    ("data_sm_resp", "delivery_failure_reason"): DATA_SM_RESP_CSTRING_TLVS,
    ("data_sm_resp", "network_error_code"): DATA_SM_RESP_CSTRING_TLVS,
    ("submit_sm", "alert_on_message_delivery"): FLAG_TLV_IGNORED,
    ("data_sm", "alert_on_message_delivery"): FLAG_TLV_IGNORED,
}

#: mandatory fields where smpplib's size limit is below the spec's (octets including the NUL)
FIELD_CAPS: dict[str, dict[str, int]] = {
    "data_sm": {"source_addr": 21, "destination_addr": 21},
    "alert_notification": {"source_addr": 21, "esme_addr": 21},
}


def _treatment(command: str, name: str) -> str:
    """'faithful' if smpplib's Param for TLV ``name`` matches the spec's type and size, else 'deviant'."""
    param = smpplib_params(command)[name]
    spec = TLV_SPECS[Tag[name]]
    ptype = param.type
    if ptype is int:
        if spec.kind is TlvKind.INT and param.size in spec.sizes:
            return "faithful"
        if spec.kind is TlvKind.OCTET and spec.min_len == spec.max_len == param.size:
            return "faithful"  # its_session_info: 2 octets either way, smpplib shows them as an int
        return "deviant"
    if ptype is str:
        return "faithful" if spec.kind is TlvKind.COCTET else "deviant"
    if ptype is smpplib.command.ostr:
        return "faithful" if spec.kind is TlvKind.OCTET else "deviant"
    return "deviant"  # flag


def faithful_tlvs(command: str) -> list[str]:
    return [n for n in smpplib_tlv_names(command) if _treatment(command, n) == "faithful"]


# --- reading and writing TLVs the smpplib way ---------------------------------------------------


def _expected_smpplib_view(command: str, t: Tlv) -> Any:
    """What smpplib's parser should hold for a (faithful) TLV of ours."""
    name = TLV_SPECS[t.tag].name
    ptype = smpplib_params(command)[name].type
    if ptype is int:
        return int.from_bytes(t.raw, "big")
    if ptype is str:
        assert t.raw.endswith(b"\x00")
        return t.raw[:-1]
    return t.raw


def _smpplib_kwarg(command: str, t: Tlv) -> Any:
    """The keyword value to give smpplib for one of our (faithful) TLVs."""
    name = TLV_SPECS[t.tag].name
    ptype = smpplib_params(command)[name].type
    if ptype is int:
        return int.from_bytes(t.raw, "big")
    if ptype is str:
        return t.raw[:-1].decode("ascii")
    return t.raw


def _check_smpplib_holds(command: str, obj: Any, pdu: Pdu, wire: bytes) -> None:
    assert obj.command == command
    assert obj.sequence == pdu.sequence_number
    assert obj.status == pdu.command_status
    assert obj.length == len(wire)
    for f in LAYOUTS[pdu.command_id]:
        ours = getattr(pdu, f.name)
        if f.kind is FieldKind.INT1:
            assert smpplib_int(obj, f.name) == ours, f.name
        elif f.kind in (FieldKind.COCTET, FieldKind.TIME):
            assert smpplib_str(obj, f.name) == ours, f.name
        elif f.kind is FieldKind.SHORT_MESSAGE:
            assert (obj.short_message or b"") == ours
            assert smpplib_int(obj, "sm_length") == len(ours)
        else:  # pragma: no cover - smpplib has no submit_multi
            raise AssertionError(f.kind)
    seen = {TLV_SPECS[t.tag].name: t for t in pdu.tlvs}
    for name in smpplib_tlv_names(command):
        got = getattr(obj, name, None)
        if name in seen:
            assert got == _expected_smpplib_view(command, seen[name]), name
        else:
            assert got is None, name


# =====================================================================================
# the property cross-checks, every supported command, both directions
# =====================================================================================


def _cid(command: str) -> int:
    return int(CommandId[command])


@pytest.mark.parametrize("command", SMPPLIB_COMMANDS)
@SETTINGS
@given(data=st.data())
def test_ours_encode_smpplib_decodes_same_values(command: str, data: st.DataObject) -> None:
    tags = [Tag[n] for n in faithful_tlvs(command)]
    pdu = data.draw(our_pdus(_cid(command), tags=tags, caps=FIELD_CAPS.get(command)))
    wire = encode_pdu(pdu)
    obj = smpplib_parse(wire)
    _check_smpplib_holds(command, obj, pdu, wire)


@pytest.mark.parametrize("command", SMPPLIB_COMMANDS)
@SETTINGS
@given(data=st.data())
def test_smpplib_encodes_ours_decodes_same_values(command: str, data: st.DataObject) -> None:
    cid = _cid(command)
    tags = [Tag[n] for n in faithful_tlvs(command)]
    min_sizes = {"message_id": 1} if command == "query_sm" else None  # QUERY_SM_NEEDS_ID
    want = data.draw(
        our_pdus(
            cid,
            tags=tags,
            alphabet=LATIN1,
            caps=FIELD_CAPS.get(command),
            min_sizes=min_sizes,
            non_empty_tlvs=True,  # EMPTY_TLV_DROPPED
        )
    )
    # string TLVs in ASCII (STRING_TLV_UTF8); mandatory strings may use all of Latin-1
    tlvs = tuple(
        Tlv.make(t.tag, t.raw[:-1].decode("latin-1").encode("ascii", "replace").decode("ascii"))
        if TLV_SPECS[t.tag].kind is TlvKind.COCTET
        else t
        for t in want.tlvs
    )
    want.tlvs = tlvs
    kwargs: dict[str, Any] = {f.name: getattr(want, f.name) for f in LAYOUTS[cid]}
    kwargs.update({TLV_SPECS[t.tag].name: _smpplib_kwarg(command, t) for t in tlvs})
    wire = smpplib_encode(command, seq=want.sequence_number, status=want.command_status, **kwargs)
    got = decode_pdu(wire)
    assert type(got) is type(want)
    if "interface_version" in kwargs:
        want.interface_version = 0x34  # INTERFACE_VERSION_FORCED
    # smpplib writes TLVs in its own order: compare them by tag (the tags are distinct)
    assert sorted(got.tlvs) == sorted(want.tlvs)
    got.tlvs = want.tlvs = ()
    assert got == want


def test_every_smpplib_command_is_cross_checked() -> None:
    covered = set(SMPPLIB_COMMANDS) | set(SMPPLIB_UNSUPPORTED)
    assert covered == {c.name for c in CommandId}
    for name in SMPPLIB_COMMANDS:
        smpplib_class(name)  # it really has a class for each


def test_tlv_table_lists_exactly_the_mismatched_types() -> None:
    found = {
        (command, name): _treatment(command, name)
        for command in SMPPLIB_COMMANDS
        for name in smpplib_tlv_names(command)
    }
    deviant = {k for k, v in found.items() if v == "deviant"}
    assert deviant == set(TLV_DEVIATIONS)
    # every TLV name smpplib knows is one of our tags
    assert {n for _, n in found} <= {t.name for t in Tag}


def test_mandatory_limits_agree_except_named_caps() -> None:
    """smpplib's own size limits of the mandatory strings equal our field table's but for ADDRESS_CAP_20."""
    for command in SMPPLIB_COMMANDS:
        params = smpplib_params(command)
        for f in LAYOUTS[_cid(command)]:
            if f.kind not in (FieldKind.COCTET, FieldKind.TIME):
                continue
            theirs = params[f.name].max
            expected = FIELD_CAPS.get(command, {}).get(f.name, f.max_len)
            assert theirs == expected, (command, f.name, theirs, f.max_len)


@demonstrates(*DEVIATIONS)
def test_every_deviation_is_demonstrated() -> None:
    """Each named deviation has its own test below (this one only checks the bookkeeping)."""
    namespace = {k: v for k, v in globals().items() if k != "test_every_deviation_is_demonstrated"}
    assert not undemonstrated(DEVIATIONS, namespace)
    assert len({d.name for d in DEVIATIONS}) == len(DEVIATIONS)
    assert set(TLV_DEVIATIONS.values()) <= set(DEVIATIONS)


# =====================================================================================
# one test per deviation: what smpplib does, and what we do instead
# =====================================================================================


def _header(wire: bytes) -> tuple[int, int, int, int]:
    return struct.unpack_from(">IIII", wire)


@demonstrates(INTERFACE_VERSION_FORCED)
@pytest.mark.parametrize("command", ["bind_transmitter", "bind_receiver", "bind_transceiver"])
@pytest.mark.parametrize("version", [0x33, 0x50, 0x00])
def test_bind_interface_version_forced(command: str, version: int) -> None:
    wire = smpplib_encode(command, system_id="esme", password="pw", interface_version=version)
    assert decode_pdu(wire).interface_version == 0x34  # not `version`
    ours = PDU_CLASSES[_cid(command)](
        sequence_number=5, system_id="esme", password="pw", interface_version=version
    )
    assert smpplib_parse(encode_pdu(ours)).interface_version == version  # its decoder is right


@demonstrates(ERROR_RESP_NUL_BODY)
@pytest.mark.parametrize(
    "command", [c for c in SMPPLIB_COMMANDS if c.endswith("_resp") and LAYOUTS[CommandId[c]]]
)
def test_error_response_carries_default_body(command: str) -> None:
    cid = _cid(command)
    wire = smpplib_encode(command, seq=9, status=S.ESME_RTHROTTLED)
    default_body = wire[16:]
    assert default_body and set(default_body) == {0}  # the NUL body (4 NULs for query_sm_resp)
    got = decode_pdu(wire)
    assert got == PDU_CLASSES[cid](sequence_number=9, command_status=S.ESME_RTHROTTLED)
    ours = encode_pdu(got)
    assert _header(ours) == (16, cid, S.ESME_RTHROTTLED, 9)  # header only, as the spec says
    back = smpplib_parse(ours)
    assert (back.status, back.sequence) == (S.ESME_RTHROTTLED, 9)


@demonstrates(INT_TLV_WRITTEN_AT_WRONG_SIZE)
@pytest.mark.parametrize(
    ("command", "name"), [k for k, v in TLV_DEVIATIONS.items() if v is INT_TLV_WRITTEN_AT_WRONG_SIZE]
)
def test_int_tlv_written_at_wrong_size(command: str, name: str) -> None:
    wire = smpplib_encode(command, source_addr="1", destination_addr="2", **{name: 1})
    tag = Tag[name]
    assert wire.endswith(struct.pack(">HH", tag, 2) + b"\x00\x01")  # 2 octets, the spec says 1
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    assert exc.value.status == S.ESME_RINVOPTPARAMVAL
    assert exc.value.field == name
    assert exc.value.command_id == _cid(command)


@demonstrates(INT_TLV_DECODED_AT_OWN_SIZE)
def test_int_tlv_decoded_at_own_size() -> None:
    subunit = Tlv.make(Tag.source_addr_subunit, 1)
    assert subunit.raw == b"\x01"
    # followed by a TLV whose tag starts with 0x00: smpplib reads 0x01 0x00 = 256, then loses the rest
    pdu = SubmitSm(
        sequence_number=3,
        source_addr="1",
        destination_addr="2",
        tlvs=(subunit, Tlv.make(Tag.dest_addr_subunit, 2), Tlv.make(Tag.user_message_reference, 7)),
    )
    wire = encode_pdu(pdu)
    assert decode_pdu(wire) == pdu  # ours: every TLV, by its length
    obj = smpplib_parse(wire, allow_unknown=True)
    assert obj.source_addr_subunit == 256
    assert obj.dest_addr_subunit is None
    assert obj.user_message_reference is None
    with pytest.raises(smpplib.exceptions.UnknownCommandError):  # the misread "tag" 0x0500
        smpplib_parse(wire)
    # as the last TLV it runs off the end
    last = SubmitSm(sequence_number=3, tlvs=(Tlv.make(Tag.user_message_reference, 7), subunit))
    with pytest.raises(struct.error):
        smpplib_parse(encode_pdu(last))
    # data_sm's source_telematics_id the same way
    dsm = DataSm(sequence_number=4, tlvs=(Tlv.make(Tag.source_telematics_id, 1),))
    with pytest.raises(struct.error):
        smpplib_parse(encode_pdu(dsm))


@demonstrates(OCTET_TLV_AS_CSTRING)
@pytest.mark.parametrize(
    ("command", "name"), [k for k, v in TLV_DEVIATIONS.items() if v is OCTET_TLV_AS_CSTRING]
)
def test_octet_tlv_as_cstring(command: str, name: str) -> None:
    cid = _cid(command)
    tag = Tag[name]
    # smpplib -> ours: an ASCII value gains a NUL that is not part of it
    wire = smpplib_encode(command, esm_class=0, **{name: "PQ"})
    got = decode_pdu(wire)
    assert got.get_tlvs(tag) == [Tlv(tag, b"PQ\x00")]
    # ours -> smpplib: a spec subaddress (type octet 0xA0, user specified) loses its last octet
    value = b"\xa0\x12\x34"
    ours = PDU_CLASSES[cid](sequence_number=2, tlvs=(Tlv.make(tag, value),))
    assert getattr(smpplib_parse(encode_pdu(ours)), name) == value[:-1]
    # and smpplib cannot write that value at all: text is UTF-8 encoded, the length counts characters
    bad = smpplib_encode(command, **{name: value.decode("latin-1")})
    assert struct.pack(">HH", tag, 4) + b"\xc2\xa0\x12\x34\x00" in bad
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(bad)
    assert exc.value.status == S.ESME_RINVOPTPARSTREAM


@demonstrates(DATA_SM_RESP_CSTRING_TLVS)
def test_data_sm_resp_cstring_tlvs() -> None:
    # delivery_failure_reason as the text '1': a 2-octet C-string where the spec has a 1-octet int
    wire = smpplib_encode("data_sm_resp", message_id="m1", delivery_failure_reason="1")
    assert wire.endswith(struct.pack(">HH", Tag.delivery_failure_reason, 2) + b"1\x00")
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    assert (exc.value.status, exc.value.field) == (S.ESME_RINVOPTPARAMVAL, "delivery_failure_reason")
    with pytest.raises(TypeError):  # the spec's int cannot be given
        smpplib_encode("data_sm_resp", message_id="m1", delivery_failure_reason=1)
    # network_error_code: 2 characters + NUL happen to make 3 octets; 3 characters make 4
    wire = smpplib_encode("data_sm_resp", message_id="m1", network_error_code="\x03\x01")
    assert decode_pdu(wire).get_tlv(Tag.network_error_code) == b"\x03\x01\x00"  # NUL, not the code's octet
    wire = smpplib_encode("data_sm_resp", message_id="m1", network_error_code="abc")
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    assert (exc.value.status, exc.value.field) == (S.ESME_RINVOPTPARAMVAL, "network_error_code")
    # ours (the spec's forms) -> smpplib reads each one octet short
    ours = DataSmResp(
        sequence_number=3,
        message_id="m1",
        tlvs=(Tlv.make(Tag.delivery_failure_reason, 1), Tlv.make(Tag.network_error_code, b"\x03\x00\x01")),
    )
    obj = smpplib_parse(encode_pdu(ours))
    assert obj.delivery_failure_reason == b""
    assert obj.network_error_code == b"\x03\x00"


@demonstrates(STRING_TLV_LAST_OCTET_DROPPED)
def test_string_tlv_last_octet_dropped() -> None:
    pdu = DeliverSm(sequence_number=3, esm_class=4, tlvs=(Tlv(Tag.receipted_message_id, b"0A1B2C"),))
    wire = encode_pdu(pdu)
    assert smpplib_parse(wire).receipted_message_id == b"0A1B2"
    assert decode_pdu(wire).get_tlv(Tag.receipted_message_id) == "0A1B2C"
    # with the NUL both agree
    pdu.tlvs = (Tlv.make(Tag.receipted_message_id, "0A1B2C"),)
    assert smpplib_parse(encode_pdu(pdu)).receipted_message_id == b"0A1B2C"


@demonstrates(STRING_TLV_UTF8)
def test_string_tlv_utf8_length_in_chars() -> None:
    wire = smpplib_encode("deliver_sm", esm_class=4, receipted_message_id="\xe91")
    assert struct.pack(">HH", Tag.receipted_message_id, 3) + b"\xc3\xa91\x00" in wire
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    assert exc.value.status == S.ESME_RINVOPTPARSTREAM
    # mandatory strings are Latin-1 and come through
    wire = smpplib_encode("deliver_sm", source_addr="\xe91")
    assert decode_pdu(wire).source_addr == "\xe91"


@demonstrates(STRING_TLV_MAX_OFF_BY_ONE)
def test_string_tlv_max_off_by_one() -> None:
    wire = smpplib_encode("deliver_sm", esm_class=4, receipted_message_id="a" * 65)
    assert struct.pack(">HH", Tag.receipted_message_id, 66) in wire
    with pytest.raises(PduDecodeError) as exc:
        decode_pdu(wire)
    assert (exc.value.status, exc.value.field) == (S.ESME_RINVOPTPARAMVAL, "receipted_message_id")
    wire = smpplib_encode("deliver_sm", esm_class=4, receipted_message_id="a" * 66)
    assert decode_pdu(wire).get_tlv(Tag.receipted_message_id) == "a" * 64  # cut, silently
    with pytest.raises(ValueError):
        Tlv.make(Tag.receipted_message_id, "a" * 65)


@demonstrates(SILENT_TRUNCATION)
def test_silent_truncation_of_mandatory_strings() -> None:
    wire = smpplib_encode("submit_sm", source_addr="1" * 25, destination_addr="2", service_type="LONGTYPE")
    got = decode_pdu(wire)
    assert got.source_addr == "1" * 20
    assert got.service_type == "LONGT"
    with pytest.raises(PduEncodeError):
        encode_pdu(SubmitSm(source_addr="1" * 25, destination_addr="2"))


@demonstrates(ADDRESS_CAP_20)
@pytest.mark.parametrize(
    ("cls", "fields"),
    [(DataSm, ("source_addr", "destination_addr")), (AlertNotification, ("source_addr", "esme_addr"))],
)
def test_data_sm_and_alert_addresses_capped(cls: type[Pdu], fields: tuple[str, str]) -> None:
    command = cls.command_id.name
    long = {f: str(i) * 40 for i, f in enumerate(fields, 1)}
    got = decode_pdu(smpplib_encode(command, **long))
    assert [getattr(got, f) for f in fields] == [v[:20] for v in long.values()]
    ours = cls(sequence_number=6, **{f: str(i) * 64 for i, f in enumerate(fields, 1)})
    obj = smpplib_parse(encode_pdu(ours))
    assert [smpplib_str(obj, f) for f in fields] == [getattr(ours, f) for f in fields]  # its decoder copes


@demonstrates(REPEATED_TLV_LAST_WINS)
def test_repeated_tlv_last_wins() -> None:
    pdu = SubmitSm(
        sequence_number=3,
        tlvs=(Tlv.make(Tag.user_message_reference, 7), Tlv.make(Tag.user_message_reference, 9)),
    )
    wire = encode_pdu(pdu)
    assert smpplib_parse(wire).user_message_reference == 9
    got = decode_pdu(wire)
    assert got == pdu
    assert got.get_tlv(Tag.user_message_reference) == 7


@demonstrates(UNLISTED_TLV_KEYERROR)
@pytest.mark.parametrize(
    ("cls", "tlv"),
    [(SubmitSm, Tlv.make(Tag.callback_num_atag, b"\x00home")), (DataSm, Tlv.make(Tag.set_dpf, 1))],
)
def test_unlisted_known_tlv_keyerror(cls: type[Pdu], tlv: Tlv) -> None:
    pdu = cls(sequence_number=3, tlvs=(tlv,))
    wire = encode_pdu(pdu)
    assert decode_pdu(wire) == pdu
    assert TLV_SPECS[tlv.tag].name not in smpplib_params(cls.command_id.name)
    with pytest.raises(KeyError):
        smpplib_parse(wire)


@demonstrates(UNKNOWN_TLV_RAISES)
def test_unknown_tlv_raises() -> None:
    vendor = Tlv(0x1401, b"\x01\x02")
    pdu = DeliverSm(sequence_number=3, short_message=b"hi", tlvs=(vendor, Tlv.make(Tag.message_state, 2)))
    wire = encode_pdu(pdu)
    with pytest.raises(smpplib.exceptions.UnknownCommandError):
        smpplib_parse(wire)
    obj = smpplib_parse(wire, allow_unknown=True)
    assert (obj.short_message, obj.message_state) == (b"hi", 2)  # the vendor TLV is gone
    assert decode_pdu(wire).tlvs == (vendor, Tlv.make(Tag.message_state, 2))


@demonstrates(FLAG_TLV_IGNORED)
@pytest.mark.parametrize("command", ["submit_sm", "data_sm"])
def test_flag_tlv_ignored(command: str) -> None:
    wire = smpplib_encode(command, alert_on_message_delivery=True)
    assert decode_pdu(wire).tlvs == ()  # never written
    ours = PDU_CLASSES[_cid(command)](sequence_number=2, tlvs=(Tlv.make(Tag.alert_on_message_delivery, b""),))
    wire = encode_pdu(ours)
    assert wire.endswith(struct.pack(">HH", Tag.alert_on_message_delivery, 0))
    assert decode_pdu(wire) == ours
    assert smpplib_parse(wire).alert_on_message_delivery is None  # read past, not reported


@demonstrates(EMPTY_TLV_DROPPED)
def test_empty_tlv_dropped() -> None:
    wire = smpplib_encode("deliver_sm", receipted_message_id="", message_payload=b"")
    assert decode_pdu(wire).tlvs == ()
    ours = DeliverSm(
        sequence_number=2,
        tlvs=(Tlv.make(Tag.receipted_message_id, ""), Tlv.make(Tag.message_payload, b"")),
    )
    wire = encode_pdu(ours)
    assert decode_pdu(wire) == ours
    obj = smpplib_parse(wire)  # its decoder reads both fine
    assert (obj.receipted_message_id, obj.message_payload) == (b"", b"")


@demonstrates(QUERY_SM_NEEDS_ID)
def test_query_sm_requires_message_id() -> None:
    with pytest.raises(ValueError, match="message_id"):
        smpplib_encode("query_sm", source_addr="1")
    ours = QuerySm(sequence_number=2, source_addr="1")
    obj = smpplib_parse(encode_pdu(ours))
    assert smpplib_str(obj, "message_id") == "" and smpplib_str(obj, "source_addr") == "1"


@demonstrates(UNSUPPORTED_COMMANDS)
@pytest.mark.parametrize("command", SMPPLIB_UNSUPPORTED)
def test_unsupported_commands(command: str) -> None:
    cid = _cid(command)
    seeds = [p for p in seed_pdus() if p.command_id == cid]
    assert seeds
    for pdu in seeds:
        wire = encode_pdu(pdu)
        assert decode_pdu(wire) == pdu
        with pytest.raises(smpplib.exceptions.UnknownCommandError):
            smpplib_parse(wire)
    with pytest.raises(smpplib.exceptions.UnknownCommandError):
        smpplib_encode(command)
