"""Gateway records on JetStream (the binary form) and packed event rows."""

from __future__ import annotations

import datetime as dt
import json
import random

import attrs
import pytest

from catalyst_smpp.encoding.receipts import Receipt, format_receipt, state_for_stat
from catalyst_smpp.gateway.delivery import _date, dlr_pdu, partner_message_id
from catalyst_smpp.gateway.events import (
    ROW_FIELDS,
    event_row,
    row_to_event,
    rows_from_bytes,
)
from catalyst_smpp.gateway.messages import (
    Address,
    DecodeError,
    DlrMessage,
    EncodeError,
    MoMessage,
    MtMessage,
    decode_record,
)
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.store import MessageEvent

from .helpers import partner

MT = MtMessage(
    message_id="7212345678901234567",
    partner="acme",
    source=Address(5, 0, "Catalyst"),
    dest=Address(1, 1, "+447700900123"),
    targets=("op1", "op2", "op3"),
    payload=b"\x05\x00\x03\x07\x02\x01Hello\nworld\x00",
    data_coding=8,
    esm_class=0x43,
    protocol_id=1,
    priority_flag=2,
    service_type="CMT",
    schedule_delivery_time="000000000100000R",
    validity_period="250101120000000+",
    registered_delivery=3,
    partner_dc0="latin1",
    tlvs=((0x0204, b"\x00\x07"), (0x1403, b"x" * 300)),
    part=2,
    parts=3,
    attempt=4,
    accepted_at=1714564801.123456,
    node="gw-ü",
)
DLR = DlrMessage(
    message_id="7212345678901234567",
    partner="acme",
    state="UNDELIV",
    source=Address(5, 0, "Catalyst"),
    dest=Address(1, 1, "447700900123"),
    error="034",
    submit_date=1714564801.5,
    done_date=1714564861.25,
    operator="op1",
    operator_message_id="0A1f",
    network_error_code="030022",
    text="Grüße — 20 chars....",
    part=2,
    parts=3,
)
MO = MoMessage(
    message_id="99",
    partner="acme",
    source=Address(1, 1, "447700900123"),
    dest=Address(0, 1, "5555"),
    payload=bytes(range(256)),
    data_coding=4,
    esm_class=0x40,
    protocol_id=0x7F,
    tlvs=((0x020C, b"\x00\x01"),),
    operator="op1",
    received_at=1714564801.0,
)


@pytest.mark.parametrize("rec", [MT, DLR, MO, MtMessage("1", "p", Address(), Address(), ("a",))], ids=str)
def test_binary_round_trip(rec: MtMessage | DlrMessage | MoMessage) -> None:
    data = rec.to_bytes()
    assert data[0] == 0xCA and data[1] == 2
    assert type(rec).from_bytes(data) == rec
    assert decode_record(data) == rec


def test_what_the_binary_form_cannot_carry_is_refused_when_written() -> None:
    odd = [
        DlrMessage("1", "acme", "DELIVRD", text="a\x00b"),  # a NUL in a text field
        MtMessage("1", "acme", Address(300, 0, "x"), Address(), ("op",)),  # ton out of range
        MoMessage("1", "acme", Address(), Address(), tlvs=((1, b"x" * 70000),)),  # TLV too long
        MtMessage("1", "acme", Address(), Address(), ("op",), parts=70000),
        MtMessage("1", "acme", Address(), Address(), ("op",) * 256),  # more targets than the count holds
        DlrMessage("1", "acme", "DELIVRD", text="\ud800"),  # not encodable as UTF-8
    ]
    for rec in odd:
        with pytest.raises(EncodeError):
            rec.to_bytes()


def test_kinds_versions_and_garbage_are_refused() -> None:
    with pytest.raises(DecodeError):
        DlrMessage.from_bytes(MT.to_bytes())
    with pytest.raises(DecodeError):
        MtMessage.from_bytes(MO.to_bytes())
    data = bytearray(MT.to_bytes())
    data[1] = 1  # a version this reader does not know
    with pytest.raises(DecodeError, match="format"):
        MtMessage.from_bytes(bytes(data))
    full = MT.to_bytes()
    for cut in (1, 3, 10, 30, 60, len(full) - len(MT.payload) - 1):
        with pytest.raises(DecodeError):
            MtMessage.from_bytes(full[:cut])
    with pytest.raises(DecodeError, match="after it"):  # a DLR has no payload: nothing may follow it
        DlrMessage.from_bytes(DLR.to_bytes() + b"x")
    for bad in (b"", b"\xca", b"\xca\x02M", b"garbage", b"{}\n", b"\xca\x02Z\x00"):
        with pytest.raises(DecodeError):
            decode_record(bad)
        with pytest.raises(DecodeError):
            MtMessage.from_bytes(bad)
    rnd = random.Random(5)
    for _ in range(2000):  # random damage: a DecodeError or some record, never another exception
        d = bytearray(full)
        for _ in range(rnd.randint(1, 4)):
            d[rnd.randrange(len(d))] = rnd.randrange(256)
        try:
            MtMessage.from_bytes(bytes(d[: rnd.randint(0, len(d))]))
        except DecodeError:
            pass


def test_display_id_defaults_to_message_id_and_travels_when_different() -> None:
    assert MT.display_id == MT.message_id and DLR.display_id == DLR.message_id
    assert MtMessage.from_bytes(MT.to_bytes()).display_id == MT.message_id
    mt = attrs.evolve(MT, display_id="7212345678901234500")
    dlr = attrs.evolve(DLR, display_id="7212345678901234500")
    for rec in (mt, dlr):
        back = type(rec).from_bytes(rec.to_bytes())
        assert back == rec and back.display_id == "7212345678901234500"
        assert back.message_id == "7212345678901234567"
    # the failover copy keeps it
    assert attrs.evolve(mt, targets=mt.targets[1:]).display_id == mt.display_id


def test_receipt_shows_display_id() -> None:
    p = partner(message_id_format="hex")
    dlr = attrs.evolve(DLR, display_id="255")
    pdu = dlr_pdu(dlr, p)
    assert pdu.short_message.startswith(b"id:ff ")
    assert pdu.get_tlv(0x001E) in (b"ff\x00", "ff")


# --------------------------------------------------------------------------- receipts toward the partner


def _reference_text(dlr: DlrMessage, fmt: str, digits: int) -> bytes:
    """What dlr_pdu wrote before its fast path: format_receipt of a Receipt."""
    shown = partner_message_id(dlr.message_id, fmt)
    state = state_for_stat(dlr.state) or MessageState.UNKNOWN
    r = Receipt(
        message_id=shown, state=state, stat=dlr.state, sub=1,
        dlvrd=1 if state is MessageState.DELIVERED else 0, submit_date=_date(dlr.submit_date),
        done_date=_date(dlr.done_date), err=dlr.error or "000", text=dlr.text,
    )  # fmt: skip
    return format_receipt(r, digits)


def test_receipt_text_is_what_format_receipt_writes() -> None:
    rnd = random.Random(3)
    states = ["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "DELETED", "ACCEPTD", "UNKNOWN", "ENROUTE", "WEIRD",
              "delivered", "UNDEL", ""]  # fmt: skip
    base = dt.datetime(2024, 12, 31, 23, 59, 59, tzinfo=dt.UTC).timestamp()
    dates = [0.0, base, base + 0.9995, base + 0.9999999, base + 1, 946684800.0 - 1, 4102444800.0 + 5]
    for _ in range(3000):
        dlr = DlrMessage(
            message_id=rnd.choice(["123456789012345678", "abc", "0", "18446744073709551615"]),
            partner="acme",
            state=rnd.choice(states),
            error=rnd.choice(["000", "0", "34", "", "ABC", "1234", "€"]),
            submit_date=rnd.choice(dates) + rnd.choice([0.0, rnd.random() * 600]),
            done_date=rnd.choice(dates) + rnd.choice([0.0, rnd.random() * 600]),
            text=rnd.choice(["", "short", "é" * 25, "Ω mega text beyond Latin-1 ....."]),
        )
        for fmt in ("hex", "dec"):
            for digits in (10, 12):
                p = partner("acme", message_id_format=fmt, receipt_date_digits=digits)
                assert dlr_pdu(dlr, p).short_message == _reference_text(dlr, fmt, digits), dlr


# --------------------------------------------------------------------------- event rows


def test_event_rows_round_trip_through_the_packed_form() -> None:
    row = event_row(
        "123", "delivered", partner="acme", operator="op1", source_addr="4477", dest_addr="Cat", parts=2,
        final_state="UNDELIV", error="034", operator_message_id="0A,0B", node="n1", at=1714564801.005,
    )  # fmt: skip
    with pytest.raises(TypeError, match="no event row field"):
        event_row("1", "accepted", parnter="acme")  # a misspelt field is an error, never dropped
    assert len(row) == len(ROW_FIELDS)
    ev = row_to_event(list(row))
    assert ev == MessageEvent(
        "123", "delivered", dt.datetime.fromtimestamp(1714564801.005, dt.UTC), partner="acme", operator="op1",
        source_addr="4477", dest_addr="Cat", parts=2, final_state="UNDELIV", error="034",
        operator_message_id="0A,0B", node="n1",
    )  # fmt: skip
    packed = json.dumps([row, event_row("124", "accepted", at=5.0), ["bad"], [1, "x", 2.0], "junk"]).encode()
    rows, bad = rows_from_bytes(packed)
    evs = [row_to_event(r) for r in rows]
    assert [e.message_id for e in evs] == ["123", "124"] and bad == 3
    assert evs[0] == ev
    assert rows_from_bytes(b"[not json") == ([], 1)
