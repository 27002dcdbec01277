"""The record machinery (``RecordCodec``): every record kind round-trips through its one declaration --
writer, reader and flat view -- and a field added to a declaration travels through JetStream with nothing
else changed."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import trio
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.gateway.mappings import ID_MAPPING, PART_STATE, IdMapping, PartState
from catalyst_smpp.gateway.messages import (
    DLR,
    MO,
    MT,
    Address,
    DecodeError,
    DlrMessage,
    EncodeError,
    MoMessage,
    MtMessage,
    Record,
    RecordCodec,
    RecordView,
    address,
    f64,
    payload,
    string,
    strings,
    tlv_list,
    u8,
    u16,
)

_text = st.text(
    alphabet=st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=12
)
_u8 = st.integers(0, 255)
_u16 = st.integers(0, 65535)
_time = st.floats(allow_nan=False)
_address = st.builds(Address, _u8, _u8, _text)
_tlvs = st.lists(st.tuples(_u16, st.binary(max_size=20)), max_size=3).map(tuple)
_payload = st.binary(max_size=300)

RECORDS: dict[Any, st.SearchStrategy[Any]] = {
    MT: st.builds(
        MtMessage, _text, _text, _address, _address, st.lists(_text, max_size=4).map(tuple), _payload, _u8,
        _u8, _u8, _u8, _text, _text, _text, _u8, _text, _tlvs, _u16, _u16, _u16, _time, _text, _text,
    ),
    DLR: st.builds(
        DlrMessage, _text, _text, _text, _address, _address, _text, _time, _time, _text, _text, _text, _text,
        _u16, _u16, _text,
    ),
    MO: st.builds(MoMessage, _text, _text, _address, _address, _payload, _u8, _u8, _u8, _tlvs, _text, _time),
    ID_MAPPING: st.builds(IdMapping, _text, _text, _u8, _u16, _u16, _text),
    PART_STATE: st.builds(PartState, _text),
}  # fmt: skip


@pytest.mark.parametrize("codec", list(RECORDS), ids=lambda c: c.kind)
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_every_record_round_trips_through_its_declaration(
    codec: RecordCodec[Any], data: st.DataObject
) -> None:
    rec = data.draw(RECORDS[codec])
    octets = rec.to_bytes()
    assert type(rec).from_bytes(octets) == rec
    view = codec.view(octets)
    assert isinstance(view, RecordView) and tuple(view) == codec.flat(rec)
    assert codec.record(view) == rec
    for name in codec.names:  # the view reads each field by its name
        assert getattr(view, name) == view[codec.index[name]]
    # the keyword writer: the same octets, addresses given as (ton, npi, addr) or by their flat names
    kw = {f.name: getattr(rec, f.name) for f in attrs.fields(type(rec))}
    kw = {k: attrs.astuple(v) if isinstance(v, Address) else v for k, v in kw.items()}
    assert codec.write(**kw) == octets
    assert codec.write(**dict(zip(codec.names, codec.flat(rec), strict=True))) == octets
    # another kind's reader refuses it
    for other in RECORDS:
        if other is not codec:
            with pytest.raises(DecodeError):
                other.decode(octets)


@settings(max_examples=200, deadline=None)
@given(rec=RECORDS[DLR], where=st.sampled_from(["state", "text", "operator"]), at=st.integers(0, 5))
def test_a_nul_in_any_text_field_is_refused_when_written(rec: DlrMessage, where: str, at: int) -> None:
    value = getattr(rec, where)
    with pytest.raises(EncodeError, match="NUL"):
        attrs.evolve(rec, **{where: value[:at] + "\x00" + value[at:]}).to_bytes()


@settings(max_examples=100, deadline=None)
@given(rec=RECORDS[DLR], data=st.data())
def test_the_keyword_writer_refuses_what_is_not_the_declaration(rec: DlrMessage, data: st.DataObject) -> None:
    """Every path of ``write`` (every field flat, every field with addresses as tuples, some left to their
    defaults) gives the record's octets, and a wrong or missing name is a TypeError on each of them -- also
    when the count of the fields given is that of a complete record."""
    codec = DLR
    octets = rec.to_bytes()
    flat = dict(zip(codec.names, codec.flat(rec), strict=True))
    tupled = {f.name: getattr(rec, f.name) for f in attrs.fields(DlrMessage)}
    tupled = {k: attrs.astuple(v) if isinstance(v, Address) else v for k, v in tupled.items()}
    assert codec.write(**flat) == octets and codec.write(**tupled) == octets
    for kw in (flat, tupled):
        name = data.draw(st.sampled_from(sorted(kw)))
        swapped = {("x_" + k if k == name else k): v for k, v in kw.items()}  # as many fields, one unknown
        with pytest.raises(TypeError, match=r"no field \['x_"):
            codec.write(**swapped)
        if name not in ("source", "dest", "source_ton", "source_npi", "source_addr", "dest_ton", "dest_npi",
                        "dest_addr") and name not in codec.defaults and name != "display_id":  # fmt: skip
            with pytest.raises(TypeError, match="missing"):
                codec.write(**{k: v for k, v in kw.items() if k != name})
    # an address as None, or left out, or partly flat: the declared default for what is not given
    plain = attrs.evolve(rec, source=Address(), dest=Address(rec.dest.ton, rec.dest.npi, rec.dest.addr))
    assert codec.write(**{**tupled, "source": None}) == plain.to_bytes()
    assert codec.write(**{k: v for k, v in tupled.items() if k != "source"}) == plain.to_bytes()
    mixed = {k: v for k, v in tupled.items() if k != "dest"} | {"dest_ton": rec.dest.ton,
             "dest_npi": rec.dest.npi, "dest_addr": rec.dest.addr}  # fmt: skip
    assert codec.write(**mixed) == octets
    # display_id left out: message_id (its declared ``same_as``)
    assert (
        codec.write(**{k: v for k, v in flat.items() if k != "display_id"})
        == attrs.evolve(rec, display_id=rec.message_id).to_bytes()
    )


@settings(max_examples=100, deadline=None)
@given(rec=RECORDS[MT])
def test_the_flat_writer_and_the_keyword_writer_agree(rec: MtMessage) -> None:
    """``pack`` (the flat tuple) and ``write`` (names) are the same writer: same octets, same refusals."""
    flat = MT.flat(rec)
    assert MT.pack(flat) == MT.write(**dict(zip(MT.names, flat, strict=True))) == rec.to_bytes()
    bad = dict(zip(MT.names, flat, strict=True)) | {"node": rec.node + "\x00"}
    with pytest.raises(EncodeError, match="NUL"):
        MT.write(**bad)
    with pytest.raises(EncodeError, match="NUL"):
        MT.pack(tuple(bad.values()))
    with pytest.raises(EncodeError):
        MT.write(**(dict(zip(MT.names, flat, strict=True)) | {"part": 70000}))  # out of its u16


# --------------------------------------------------------------------------- a field added, through NATS


@attrs.frozen(slots=True)
class _Receipt(Record):
    """A test record declared with the gateway's machinery, like ``DlrMessage``."""

    message_id: str = string()
    partner: str = string()
    source: Address = address(Address())  # noqa: RUF009 (a field declaration)
    attempts: int = u16(1)
    done_date: float = f64()
    operators: tuple[str, ...] = strings(())
    tlvs: tuple[tuple[int, bytes], ...] = tlv_list()
    payload: bytes = payload()


@attrs.frozen(slots=True)
class _ReceiptWithMore(Record):
    """``_Receipt`` with two fields added (a number and a text): the only change."""

    message_id: str = string()
    partner: str = string()
    source: Address = address(Address())  # noqa: RUF009 (a field declaration)
    attempts: int = u16(1)
    priority: int = u8(0)
    done_date: float = f64()
    reason: str = string("")
    operators: tuple[str, ...] = strings(())
    tlvs: tuple[tuple[int, bytes], ...] = tlv_list()
    payload: bytes = payload()


RecordCodec(_Receipt, "t")
RecordCodec(_ReceiptWithMore, "u")


async def test_an_added_field_round_trips_through_jetstream(bus: Bus) -> None:
    plain = _Receipt("1", "acme", Address(1, 1, "4477"), 2, 1714564801.5, ("op1", "op2"), ((1, b"x"),), b"hi")
    more = _ReceiptWithMore(
        "2", "acme", Address(1, 1, "4477"), 2, 7, 1714564801.5, "operator gave up", ("op1",), (), b"\x00\xff"
    )
    subject = bus.subject(Kind.DLR, "acme")
    res = await bus.publish_batch(
        [(subject, plain.to_bytes(), None, "a"), (subject, more.to_bytes(), None, "b")]
    )
    assert all(r.ok for r in res)
    consumer = await bus.consumer(Kind.DLR, "acme")
    got: list[Any] = []
    with trio.fail_after(10):
        while len(got) < 2:
            got += await consumer.fetch(2 - len(got), 0.5)
    await consumer.ack(got)
    assert _Receipt.from_bytes(got[0].data) == plain
    back = _ReceiptWithMore.from_bytes(got[1].data)
    assert back == more and (back.priority, back.reason) == (7, "operator gave up")
    view = _ReceiptWithMore.CODEC.view(got[1].data)
    assert (view.priority, view.reason, view.source_addr) == (7, "operator gave up", "4477")
    # the keyword writer knows the new fields too, by the declaration alone
    codec = _ReceiptWithMore.CODEC
    flat = dict(zip(codec.names, codec.flat(more), strict=True))
    assert codec.write(**{**flat, "reason": "x"}) == attrs.evolve(more, reason="x").to_bytes()
