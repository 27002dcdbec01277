"""MT records written by ``mt_record`` (accept) and read as ``MtFields`` (connector): the same octets and
fields as ``MtMessage.to_bytes`` / ``MtMessage.from_bytes``, both forms."""

from __future__ import annotations

import attrs
import pytest

from catalyst_smpp.gateway.connector import _build_submits, build_submits
from catalyst_smpp.gateway.messages import (
    Address,
    DecodeError,
    MtFields,
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
    attrs.evolve(PLAIN, dest=Address(1, 1, "44\x0077")),  # a NUL: the JSON form
    attrs.evolve(PLAIN, data_coding=300),  # out of range: the JSON form
    attrs.evolve(PLAIN, partner="acme\udcff"),  # not encodable: the JSON form
]


def _record(mt: MtMessage) -> bytes:
    s, d = mt.source, mt.dest
    return mt_record(
        mt.message_id, mt.partner, (s.ton, s.npi, s.addr), (d.ton, d.npi, d.addr), mt.targets, mt.payload,
        mt.data_coding, mt.esm_class, mt.protocol_id, mt.priority_flag, mt.service_type,
        mt.schedule_delivery_time, mt.validity_period, mt.registered_delivery, mt.partner_dc0, mt.tlvs,
        mt.part, mt.parts, mt.attempt, mt.accepted_at, mt.node, mt.display_id,
    )  # fmt: skip


@pytest.mark.parametrize("mt", CASES)
def test_mt_record_writes_the_octets_of_to_bytes(mt: MtMessage) -> None:
    try:
        expected = mt.to_bytes()
    except UnicodeEncodeError:  # neither form can carry it: both raise
        with pytest.raises(UnicodeEncodeError):
            _record(mt)
        return
    assert _record(mt) == expected


@pytest.mark.parametrize("mt", CASES[:5])
@pytest.mark.parametrize("form", ["binary", "json"])
def test_mt_fields_reads_what_from_bytes_reads(mt: MtMessage, form: str) -> None:
    data = mt.to_bytes() if form == "binary" else mt.to_json_bytes()
    fields = mt_fields(data)
    assert fields.to_message() == MtMessage.from_bytes(data)
    assert attrs.astuple(MtFields.of(mt).to_message()) == attrs.astuple(mt)
    for name in MtFields.__slots__:
        assert getattr(fields, name) == getattr(MtFields.of(MtMessage.from_bytes(data)), name)


def test_mt_fields_refuses_what_from_bytes_refuses() -> None:
    data = PLAIN.to_bytes()
    for bad in (data[:10], data[:1] + b"\x02" + data[2:], data[:2] + b"D" + data[3:], b"garbage", b"{}\n"):
        with pytest.raises(DecodeError):
            MtMessage.from_bytes(bad)
        with pytest.raises(DecodeError):
            mt_fields(bad)


@pytest.mark.parametrize("mt", [MT, PLAIN, attrs.evolve(PLAIN, payload=b"x" * 400)])
def test_connector_builds_the_same_submits_from_fields(mt: MtMessage) -> None:
    op = operator("op1")
    assert _build_submits(mt_fields(mt.to_bytes()), op, 7) == build_submits(mt, op, 7)
