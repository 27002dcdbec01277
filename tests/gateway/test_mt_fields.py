"""MT records written by ``mt_record`` (accept) and read as ``MtFields`` (connector): the same octets and
fields as ``MtMessage.to_bytes`` / ``MtMessage.from_bytes``."""

from __future__ import annotations

import attrs
import pytest

from catalyst_smpp.gateway.connector import _build_submits, build_submits
from catalyst_smpp.gateway.messages import (
    MT as MT_CODEC,
)
from catalyst_smpp.gateway.messages import (
    Address,
    DecodeError,
    EncodeError,
    MtMessage,
    mt_fields,
    mt_record,
)

from .helpers import operator
from .test_records import MT

PLAIN = MtMessage(
    "7212345678901234568", "loadgen", Address(5, 0, "CATALYST"), Address(1, 1, "447700900123"), ("sim",),
    b"Benchmark message 0123456789", registered_delivery=1, accepted_at=1714564801.5, node="n1",
)  # fmt: skip
CASES = [
    MT,
    PLAIN,
    attrs.evolve(PLAIN, display_id="7212345678901234000"),  # a later destination of a submit_multi
    attrs.evolve(PLAIN, targets=("a", "b"), tlvs=((0x020C, b"\x00\x01"),)),
    attrs.evolve(PLAIN, targets=()),
]


def _record(mt: MtMessage) -> bytes:
    s, d = mt.source, mt.dest
    return mt_record(
        message_id=mt.message_id, partner=mt.partner, source=(s.ton, s.npi, s.addr),
        dest=(d.ton, d.npi, d.addr), targets=mt.targets, payload=mt.payload, data_coding=mt.data_coding,
        esm_class=mt.esm_class, protocol_id=mt.protocol_id, priority_flag=mt.priority_flag,
        service_type=mt.service_type, schedule_delivery_time=mt.schedule_delivery_time,
        validity_period=mt.validity_period, registered_delivery=mt.registered_delivery,
        partner_dc0=mt.partner_dc0, tlvs=mt.tlvs, part=mt.part, parts=mt.parts, attempt=mt.attempt,
        accepted_at=mt.accepted_at, node=mt.node, display_id=mt.display_id,
    )  # fmt: skip


@pytest.mark.parametrize("mt", CASES)
def test_mt_record_writes_the_octets_of_to_bytes(mt: MtMessage) -> None:
    assert _record(mt) == mt.to_bytes()


def test_mt_record_defaults_and_names() -> None:
    # fields not given take the declaration's defaults (display_id: message_id)
    short = mt_record(message_id="5", partner="p", source=(0, 0, ""), dest=(1, 1, "44"), targets=("op",))
    assert MtMessage.from_bytes(short) == MtMessage("5", "p", Address(), Address(1, 1, "44"), ("op",))
    with pytest.raises(TypeError, match="no field"):
        mt_record(message_id="5", partner="p", source=(0, 0, ""), dest=(1, 1, "44"), targets=(), prio=1)
    with pytest.raises(TypeError, match="missing"):
        mt_record(message_id="5", partner="p", source=(0, 0, ""), targets=())
    with pytest.raises(EncodeError):
        mt_record(message_id="5", partner="p", source=(0, 0, ""), dest=(1, 1, "4\x004"), targets=())


@pytest.mark.parametrize("mt", CASES)
def test_mt_fields_reads_what_from_bytes_reads(mt: MtMessage) -> None:
    data = mt.to_bytes()
    fields = mt_fields(data)
    assert MT_CODEC.record(fields) == MtMessage.from_bytes(data) == mt
    assert fields.source_addr == mt.source.addr and fields.dest_npi == mt.dest.npi
    for name in MT_CODEC.names:
        assert getattr(fields, name) == getattr(MT_CODEC.view_of(mt), name)


def test_mt_fields_refuses_what_from_bytes_refuses() -> None:
    data = PLAIN.to_bytes()
    for bad in (data[:10], data[:1] + b"\x01" + data[2:], data[:2] + b"D" + data[3:], b"garbage", b"{}\n"):
        with pytest.raises(DecodeError):
            MtMessage.from_bytes(bad)
        with pytest.raises(DecodeError):
            mt_fields(bad)


@pytest.mark.parametrize("mt", [MT, PLAIN, attrs.evolve(PLAIN, payload=b"x" * 400)])
def test_connector_builds_the_same_submits_from_fields(mt: MtMessage) -> None:
    op = operator("op1")
    assert _build_submits(mt_fields(mt.to_bytes()), op, 7) == build_submits(mt, op, 7)
