"""The load generator's quick read of common receipts agrees with ``parse_receipt`` wherever it answers."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding.receipts import Receipt, format_receipt, parse_receipt
from catalyst_smpp.loadgen.runner import receipt_match
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.protocol.tlv import Tag, Tlv


def _parsed(short_message: bytes, tlvs: list[Tlv]) -> tuple[str, str]:
    receipt = parse_receipt(short_message, {t.tag: t.value for t in tlvs})
    return receipt.message_id, receipt.stat or receipt.state.name


_IDS = st.text(st.sampled_from("0123456789abcdefABCDEF-_ .:"), min_size=0, max_size=20)
_DATES = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31))


@settings(max_examples=400, deadline=None)
@given(
    message_id=_IDS.filter(lambda s: s.strip() != ""),
    state=st.sampled_from(list(MessageState)),
    date=_DATES,
    digits=st.sampled_from([10, 12]),
    text=st.text(max_size=30),
    tlv_id=st.one_of(st.none(), _IDS.filter(lambda s: "\x00" not in s)),
    tlv_state=st.one_of(st.none(), st.sampled_from(list(MessageState))),
    err=st.sampled_from(["000", "001", "12", "abc", ""]),
)
def test_agrees_with_parse_receipt(
    message_id: str,
    state: MessageState,
    date: dt.datetime,
    digits: int,
    text: str,
    tlv_id: str | None,
    tlv_state: MessageState | None,
    err: str,
) -> None:
    receipt = Receipt(
        message_id=message_id, state=state, submit_date=date, done_date=date, err=err or None, text=text
    )
    short = format_receipt(receipt, digits)
    tlvs = []
    if tlv_id is not None:
        tlvs.append(Tlv.make(Tag.receipted_message_id, tlv_id))
    if tlv_state is not None:
        tlvs.append(Tlv.make(Tag.message_state, int(tlv_state)))
    found = receipt_match(short, tlvs)
    if found is not None:
        assert found == _parsed(short, tlvs)
    if message_id.isalnum() and message_id.isascii():
        assert found is not None  # the common form is read without parse_receipt


def test_common_receipt_and_tlvs() -> None:
    short = b"id:1a2b sub:001 dlvrd:001 submit date:2401021504 done date:2401021504 stat:DELIVRD err:000"
    short += b" text:hi"
    assert receipt_match(short, []) == ("1a2b", "DELIVRD")
    tlvs = [Tlv.make(Tag.receipted_message_id, " 6699 "), Tlv.make(Tag.message_state, 5)]
    assert receipt_match(short, tlvs) == ("6699", "DELIVRD") == _parsed(short, tlvs)
    blank = [Tlv.make(Tag.receipted_message_id, "  ")]  # an unusable TLV id: the text's counts
    assert receipt_match(short, blank) == ("1a2b", "DELIVRD") == _parsed(short, blank)
    spelt = short.replace(b"DELIVRD", b"Delivered")  # the stat word as written, as parse_receipt keeps it
    assert receipt_match(spelt, []) == ("1a2b", "Delivered") == _parsed(spelt, [])


def test_other_forms_are_left_to_parse_receipt() -> None:
    for short in (
        b"ID:1a2b SUB:001 DLVRD:001 SUBMIT DATE:2401021504 DONE DATE:2401021504 STAT:DELIVRD ERR:000",
        b"id:1a2b stat:DELIVRD",
        b"id:1a2b  sub:001 dlvrd:001 submit date:2401021504 done date:2401021504 stat:DELIVRD err:000",
        b"id:1a2b sub:001 dlvrd:001 submit_date:2401021504 done_date:2401021504 stat:DELIVRD err:000",
        b"id:1a2b sub:001 dlvrd:001 submit date:2401021504 done date:2401021504 stat:DELIVRD err:000 x:1",
        b"",
    ):
        assert receipt_match(short, []) is None
