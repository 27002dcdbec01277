"""Delivery receipts: the corpus in tests/vectors/receipts/, state mapping, formatting, round trips."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.encoding.msgid import IdRule
from catalyst_smpp.encoding.receipts import (
    Receipt,
    ReceiptParseError,
    format_receipt,
    parse_receipt,
    receipt_in_text,
    receipt_text,
    receipt_tlvs,
    stat_for_state,
    state_for_stat,
)
from catalyst_smpp.protocol.constants import MessageState

CORPUS = json.loads((Path(__file__).parents[1] / "vectors" / "receipts" / "receipts.json").read_text())[
    "cases"
]

DEFAULTS: dict[str, Any] = {
    "stat": "",
    "sub": None,
    "dlvrd": None,
    "submit_date": None,
    "done_date": None,
    "err": None,
    "text": None,
    "network_error": None,
    "extras": [],
    "conflicts": [],
    "problems": [],
    "text_id": None,
}


def _tlv_value(key: str, value: Any) -> Any:
    if isinstance(value, dict):
        return bytes.fromhex(value["bytes"])
    if key in ("network_error_code", "1059"):
        return bytes.fromhex(value)
    return value


def _input(case: dict[str, Any]) -> tuple[bytes, dict[str | int, object] | None]:
    data = bytes.fromhex(case["hex"]) if "hex" in case else case["text"].encode("latin-1")
    tlvs = case.get("tlvs")
    if tlvs is None:
        return data, None
    return data, {(int(k) if k.isdigit() else k): _tlv_value(k, v) for k, v in tlvs.items()}


def test_corpus_is_big_enough() -> None:
    assert len(CORPUS) >= 30
    assert sum("error" in c for c in CORPUS) >= 5
    assert len({c["name"] for c in CORPUS}) == len(CORPUS)


@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_corpus(case: dict[str, Any]) -> None:
    data, tlvs = _input(case)
    rule = IdRule(case.get("id_rule", "as_is"))
    coding = case.get("data_coding", 0)
    if "error" in case:
        with pytest.raises(ReceiptParseError) as info:
            parse_receipt(data, tlvs, id_rule=rule, data_coding=coding)
        assert case["error"] in info.value.reason
        return
    r = parse_receipt(data, tlvs, id_rule=rule, data_coding=coding)
    want = {**DEFAULTS, **case["expect"]}
    assert r.message_id == want["message_id"]
    assert r.state is MessageState[want["state"]]
    assert r.stat == want["stat"]
    assert (r.sub, r.dlvrd) == (want["sub"], want["dlvrd"])
    for name in ("submit_date", "done_date"):
        value = getattr(r, name)
        assert (value.isoformat() if value else None) == want[name], name
        assert value is None or value.tzinfo is None
    assert (r.err, r.text) == (want["err"], want["text"])
    assert r.network_error == (tuple(want["network_error"]) if want["network_error"] else None)
    assert [list(e) for e in r.extras] == want["extras"]
    assert list(r.conflicts) == want["conflicts"]
    assert r.text_id == want["text_id"]
    assert len(r.problems) == len(want["problems"]), r.problems
    for got, expected in zip(r.problems, want["problems"], strict=True):
        assert expected in got


# --- stat <-> state ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("state", "stat"),
    [
        (MessageState.DELIVERED, "DELIVRD"),
        (MessageState.EXPIRED, "EXPIRED"),
        (MessageState.DELETED, "DELETED"),
        (MessageState.UNDELIVERABLE, "UNDELIV"),
        (MessageState.ACCEPTED, "ACCEPTD"),
        (MessageState.UNKNOWN, "UNKNOWN"),
        (MessageState.REJECTED, "REJECTD"),
        (MessageState.ENROUTE, "ENROUTE"),
    ],
)
def test_stat_state_both_ways(state: MessageState, stat: str) -> None:
    assert stat_for_state(state) == stat
    assert len(stat) == 7
    assert state_for_stat(stat) is state
    assert state_for_stat(stat.lower()) is state
    assert state_for_stat(state.name) is state  # the spelt-out form
    assert state_for_stat(str(int(state))) is state


@pytest.mark.parametrize("word", ["", "DEL", "OK", "0", "9", "XXXXXXX", "DELI"])
def test_stat_unknown_words(word: str) -> None:
    assert state_for_stat(word) is None


# --- formatting -------------------------------------------------------------------


def _receipt(**kw: Any) -> Receipt:
    base: dict[str, Any] = {
        "message_id": "0A1B2C",
        "state": MessageState.DELIVERED,
        "stat": "DELIVRD",
        "sub": 1,
        "dlvrd": 1,
        "submit_date": dt.datetime(2023, 1, 5, 12, 30, 45),
        "done_date": dt.datetime(2023, 1, 5, 12, 31, 7),
        "err": "000",
        "text": "Hello there, this is longer than twenty",
    }
    base.update(kw)
    return Receipt(**base)


def test_format_common_layout_10_digits() -> None:
    assert format_receipt(_receipt()) == (
        b"id:0A1B2C sub:001 dlvrd:001 submit date:2301051230 done date:2301051231"
        b" stat:DELIVRD err:000 text:Hello there, this is"
    )


def test_format_12_digits_and_defaults() -> None:
    r = _receipt(
        state=MessageState.UNDELIVERABLE, sub=None, dlvrd=None, err=None, text=None, submit_date=None
    )
    assert format_receipt(r, date_digits=12) == (
        b"id:0A1B2C sub:001 dlvrd:000 submit date:000000000000 done date:230105123107"
        b" stat:UNDELIV err:000 text:"
    )


def test_format_options_and_limits() -> None:
    r = _receipt(sub=1234, dlvrd=-1, err="7", text="\u20ac uro")
    out = format_receipt(r, text_len=3)
    assert b" sub:999 dlvrd:000 " in out
    assert out.endswith(b" err:007 text:? u")
    with pytest.raises(ValueError, match="date_digits"):
        format_receipt(r, date_digits=14)
    with pytest.raises(ValueError, match="two-digit year"):
        format_receipt(_receipt(done_date=dt.datetime(1999, 1, 1)))


def test_receipt_properties() -> None:
    assert _receipt().is_final
    assert not _receipt(state=MessageState.ENROUTE).is_final
    assert _receipt(err="034").err_code == 34
    assert _receipt(err="0x1F").err_code is None


def test_receipt_tlvs_round_trip() -> None:
    r = _receipt(network_error=(3, 0x0105))
    tlvs = receipt_tlvs(r)
    assert tlvs == {
        "receipted_message_id": "0A1B2C",
        "message_state": 2,
        "network_error_code": b"\x03\x01\x05",
    }
    back = parse_receipt(b"", tlvs)
    assert (back.message_id, back.state, back.network_error) == (
        "0A1B2C",
        MessageState.DELIVERED,
        (3, 0x0105),
    )


# --- round trip format -> parse ---------------------------------------------------

_ids = st.text(alphabet="0123456789ABCDEFabcdef", min_size=1, max_size=20) | st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, blacklist_characters=",;"),
    min_size=1,
    max_size=20,
)


def _dates(seconds: bool) -> st.SearchStrategy[dt.datetime]:
    d = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31, 23, 59, 59))
    return d.map(lambda v: v.replace(microsecond=0, second=v.second if seconds else 0))


@st.composite
def receipts(draw: st.DrawFn, seconds: bool) -> Receipt:
    state = draw(st.sampled_from(list(MessageState)))
    return Receipt(
        message_id=draw(_ids),
        state=state,
        stat=stat_for_state(state),
        sub=draw(st.integers(0, 999)),
        dlvrd=draw(st.integers(0, 999)),
        submit_date=draw(_dates(seconds)),
        done_date=draw(_dates(seconds)),
        err=draw(st.from_regex(r"\A[0-9]{3}\Z") | st.from_regex(r"\A[0-9A-Za-z]{1,6}\Z")),
        text=draw(
            st.text(alphabet=st.characters(min_codepoint=0x20, max_codepoint=0xFF), max_size=20)
        ).strip(),
    )


@given(receipts(seconds=False))
def test_round_trip_10_digits(r: Receipt) -> None:
    back = parse_receipt(format_receipt(r, 10))
    expected_err = r.err.zfill(3) if r.err and r.err.isdigit() else r.err
    assert back == Receipt(**{**_fields(r), "err": expected_err})


@given(receipts(seconds=True))
def test_round_trip_12_digits(r: Receipt) -> None:
    back = parse_receipt(format_receipt(r, 12))
    assert (back.submit_date, back.done_date) == (r.submit_date, r.done_date)
    assert (back.message_id, back.state, back.stat, back.sub, back.dlvrd, back.text) == (
        r.message_id,
        r.state,
        r.stat,
        r.sub,
        r.dlvrd,
        r.text,
    )
    assert back.problems == ()


def _fields(r: Receipt) -> dict[str, Any]:
    return attrs.asdict(r, recurse=False)


# --- never crashes ----------------------------------------------------------------

_tlv_values = st.one_of(
    st.none(),
    st.integers(-5, 300),
    st.text(max_size=8),
    st.binary(max_size=5),
    st.tuples(st.integers(-1, 300), st.integers(-1, 70000)),
)


@given(
    st.binary(max_size=300)
    | st.text(alphabet="idsubdlvrtexamn _:01239ABCDEF\x00,\n", max_size=200).map(str.encode),
    st.none()
    | st.dictionaries(
        st.sampled_from(["receipted_message_id", "message_state", "network_error_code", 0x1E, 0x427, 0x423]),
        _tlv_values,
    ),
)
def test_any_input_gives_receipt_or_parse_error(data: bytes, tlvs: dict[str | int, object] | None) -> None:
    try:
        r = parse_receipt(data, tlvs)
    except ReceiptParseError as exc:
        assert exc.reason
        return
    assert r.message_id
    assert isinstance(r.state, MessageState)


# --- receipts sent without the receipt bit, and the text by data_coding ---------------------------

_COMMON = "id:1a2b sub:001 dlvrd:001 submit date:2601051230 done date:2601051231 stat:UNDELIV err:001 text:x "


@pytest.mark.parametrize(
    ("octets", "coding"),
    [(_COMMON.encode(), 0), (_COMMON.encode("utf-16-be"), 8), (b"ID:1a2b, STAT:undeliv; DLVRD:0\x00", 0)],
)
def test_receipt_in_text_finds_a_receipt(octets: bytes, coding: int) -> None:
    r = receipt_in_text(octets, data_coding=coding)
    assert r is not None and (r.message_id, r.state) == ("1a2b", MessageState.UNDELIVERABLE)
    assert r == parse_receipt(octets, data_coding=coding)


@pytest.mark.parametrize(
    "text",
    [
        "Hello, see you at 5",
        "id:1a2b stat:UNDELIV",  # no sub/dlvrd/date field: could be a person's text
        "id: stat:DELIVRD dlvrd:1",  # an empty id
        "id:7 stat:later sub:1",  # a stat that names no state
        "my id:7 dlvrd:1",  # no stat
        "text:id:7 stat:DELIVRD dlvrd:1",  # all of it inside a text: field
    ],
)
def test_receipt_in_text_leaves_other_text_alone(text: str) -> None:
    assert receipt_in_text(text.encode()) is None
    assert receipt_in_text(text.encode("utf-16-be"), data_coding=8) is None


def test_receipt_text_by_data_coding() -> None:
    assert receipt_text("id:1 text:Привет".encode("utf-16-be"), 8) == "id:1 text:Привет"
    assert receipt_text("\ufeffid:1 ".encode("utf-16-be") + b"\x00\x00", 0x18) == "id:1 "  # BOM, NUL dropped
    assert receipt_text("id:1 text:Привет".encode("iso8859_5"), 6) == "id:1 text:Привет"
    # 0 (whatever the SMSC's default alphabet), IA5, Latin-1, 8-bit: the octets as Latin-1
    for coding in (0, 1, 3, 4, 0xF0):
        assert receipt_text(b"id:1 submit_date:2601051230 text:Gr\xfc\xdfe\x00", coding) == (
            "id:1 submit_date:2601051230 text:Grüße"
        )
