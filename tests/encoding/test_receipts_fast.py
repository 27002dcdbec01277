"""The fast path of ``parse_receipt`` (the common text form) against the general path (the C scan)."""

from __future__ import annotations

import datetime as dt

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding import receipts
from catalyst_smpp.encoding.msgid import IdRule
from catalyst_smpp.encoding.receipts import (
    KIND_DLVRD,
    KIND_DONE_DATE,
    KIND_ERR,
    KIND_ID,
    KIND_STAT,
    KIND_SUB,
    KIND_SUBMIT_DATE,
    KIND_TEXT,
    Receipt,
    ReceiptParseError,
    common_receipt_fields,
    format_receipt,
    parse_receipt,
    scan_receipt_text,
)
from catalyst_smpp.protocol.constants import MessageState

_KINDS = [KIND_ID, KIND_SUB, KIND_DLVRD, KIND_SUBMIT_DATE, KIND_DONE_DATE, KIND_STAT, KIND_ERR, KIND_TEXT]


def _general(data: bytes, tlvs: receipts.TlvValues | None, rule: IdRule, coding: int = 0) -> Receipt | str:
    """What the general path (scan, every check) reads, or the ReceiptParseError text."""
    octets, text = receipts._octets_and_text(data, coding)
    try:
        return receipts._parse_scanned(octets, text, tlvs, rule)
    except ReceiptParseError as exc:
        return f"error: {exc}"


def _parsed(data: bytes, tlvs: receipts.TlvValues | None, rule: IdRule, coding: int = 0) -> Receipt | str:
    try:
        return parse_receipt(data, tlvs, id_rule=rule, data_coding=coding)
    except ReceiptParseError as exc:
        return f"error: {exc}"


# pieces of a receipt text: mostly the common form, often a little off it
_ID_CHARS = "0123456789abcdefABCDEF-_.:/ ,;\t\x00é"
_ids = st.text(st.sampled_from(_ID_CHARS), min_size=0, max_size=14)
_digits = st.text(st.sampled_from("0123456789"), min_size=0, max_size=15)
_numbers = st.one_of(
    st.sampled_from(["001", "000", "1", "0001", "12"]), _digits, st.sampled_from(["1a", "", " 1"])
)
_dates = st.one_of(
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
        lambda d: d.strftime("%y%m%d%H%M")
    ),
    st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
        lambda d: d.strftime("%y%m%d%H%M%S")
    ),
    st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(9999, 12, 31)).map(
        lambda d: d.strftime("%Y%m%d%H%M%S")
    ),
    _digits,
    st.sampled_from(["2413011200", "0000000000", "24010215041", "2401021504 "]),
)
_stats = st.one_of(
    st.sampled_from(
        [
            "DELIVRD",
            "UNDELIV",
            "EXPIRED",
            "REJECTD",
            "ACCEPTD",
            "UNKNOWN",
            "DELETED",
            "ENROUTE",
            "Delivered",
            "delivrd",
            "UNDEL",
            "5",
            "9",
            "XYZ",
            "DELIV:RD",
            "FAILED",
            "EN_ROUTE",
        ]
    ),
    st.text(st.sampled_from("ADEILNRTUVX_:0159 "), max_size=9),
)
_errs = st.one_of(st.sampled_from(["000", "001", "0", "abc", "", "00B", "1;2"]), _ids)
_texts = st.one_of(st.none(), st.text(max_size=25), st.sampled_from(["  hi \r\n", " id:5 stat:UNDELIV", ""]))
_seps = st.sampled_from([" ", " ", " ", " ", "  ", "\t", ",", ";", " ,", ""])
_keys_common = ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "text")
_keys = st.sampled_from(
    [
        _keys_common,
        ("ID", "SUB", "DLVRD", "SUBMIT DATE", "DONE DATE", "STAT", "ERR", "TEXT"),
        ("id", "sub", "dlvrd", "submit_date", "done_date", "stat", "err", "text"),
        ("id", "sub", "dlvrd", "submit date", "done date", "status", "error", "txt"),
        ("id", "sub", "dlvrd", "submit date", "done date", "stat", "err", "Text"),
    ]
)


_clean_ids = st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=1, max_size=12)
_clean_dates = st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)).map(
    lambda d: d.strftime("%y%m%d%H%M")
)
_clean_stats = st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "REJECTD", "ACCEPTD", "ENROUTE"])


@st.composite
def _receipt_lines(draw: st.DrawFn) -> str:
    """The common form, then none, one or a few things changed (a value, a key, a separator, a field...)."""
    keys = list(draw(_keys)) if draw(st.integers(0, 4)) == 0 else list(_keys_common)
    values = [
        draw(_clean_ids), "001", "001", draw(_clean_dates), draw(_clean_dates), draw(_clean_stats),
        draw(st.sampled_from(["000", "001", "00B"])),
    ]  # fmt: skip
    text = draw(st.one_of(st.none(), st.text(st.sampled_from("abc XYZ09"), max_size=20)))
    noisy = (_ids, _numbers, _numbers, _dates, _dates, _stats, _errs)
    for _ in range(draw(st.integers(0, 2))):
        i = draw(st.integers(0, 7))
        if i == 7:
            text = draw(_texts)
        else:
            values[i] = draw(noisy[i])
    parts = [f"{k}:{v}" for k, v in zip(keys, values, strict=False)]
    if text is not None:
        parts.append(f"{keys[7]}:{text}")
    if draw(st.integers(0, 4)) == 0:  # now and then a field dropped or two swapped
        i = draw(st.integers(0, len(parts) - 1))
        if draw(st.booleans()):
            del parts[i]
        else:
            j = draw(st.integers(0, len(parts) - 1))
            parts[i], parts[j] = parts[j], parts[i]
    plain = draw(st.integers(0, 2)) > 0
    line = parts[0]
    for p in parts[1:]:
        line += (" " if plain else draw(_seps)) + p
    line = draw(st.sampled_from(["", "", "", " ", "x "])) + line
    line += draw(st.sampled_from(["", "", "", "\x00", "\x00\x00", " "]))
    return line


def _receipt_texts() -> st.SearchStrategy[bytes]:
    """Receipt lines as octets of data_coding 0 (Latin-1; other characters become ``?``)."""
    return _receipt_lines().map(lambda line: line.encode("latin-1", errors="replace"))


_tlv_ids = st.one_of(
    _ids, st.sampled_from([" 1a2b ", "1A2B", "0001a2b", "  ", ""]), st.binary(max_size=6), st.integers(0, 9)
)
_tlv_states = st.one_of(st.integers(-1, 10), st.binary(max_size=2), st.sampled_from([True, "2", 2.0]))
_tlv_necs = st.one_of(st.binary(max_size=4), st.tuples(st.integers(-1, 300), st.integers(-1, 70000)))


@st.composite
def _tlv_maps(draw: st.DrawFn) -> receipts.TlvValues | None:
    if draw(st.integers(0, 3)) == 0:
        return None
    by_name = draw(st.booleans())
    out: dict[str | int, object] = {}
    for name, tag, values in (
        ("receipted_message_id", 0x001E, _tlv_ids),
        ("message_state", 0x0427, _tlv_states),
        ("network_error_code", 0x0423, _tlv_necs),
    ):
        if draw(st.booleans()):
            out[name if by_name else tag] = draw(values)
    return out


_rules = st.sampled_from(list(IdRule))


@settings(max_examples=1500, deadline=None)
@given(
    line=_receipt_lines(),
    ucs2=st.integers(0, 3),
    tlvs=_tlv_maps(),
    rule=_rules,
    matching=st.integers(0, 2),
    draw=st.data(),
)
def test_fast_path_agrees_with_the_general_parser(
    line: str, ucs2: int, tlvs: receipts.TlvValues | None, rule: IdRule, matching: int, draw: st.DataObject
) -> None:
    """Both paths read the same receipt, from Latin-1 octets or (one in four) UCS-2 ones (data_coding 8)."""
    if ucs2 == 0:
        data, coding = line.encode("utf-16-be"), 8
        fields = common_receipt_fields(line.encode("latin-1", errors="replace"))
    else:
        data, coding = line.encode("latin-1", errors="replace"), 0
        fields = common_receipt_fields(data)
    if fields is not None and matching:  # TLVs that (mostly) agree with the text, as SMSCs send them
        state = receipts.state_for_stat(fields[5])
        tlv_id = draw.draw(
            st.sampled_from(
                [fields[0], fields[0].upper(), f" {fields[0]}\x00", "0" + fields[0], "7" + fields[0]]
            )
        )  # the last: a TLV id that differs from the text's (the legacy hex TLV / decimal text form)
        agreeing: dict[str | int, object] = {0x001E: tlv_id}
        if state is not None and matching == 2:
            agreeing["message_state"] = int(state)
            if draw.draw(st.booleans()):
                agreeing[0x0423] = draw.draw(_tlv_necs)
        tlvs = agreeing
    assert _parsed(data, tlvs, rule, coding) == _general(data, tlvs, rule, coding)


@settings(max_examples=500, deadline=None)
@given(data=st.binary(max_size=60), tlvs=_tlv_maps(), rule=_rules)
def test_fast_path_agrees_on_any_octets(data: bytes, tlvs: receipts.TlvValues | None, rule: IdRule) -> None:
    assert _parsed(data, tlvs, rule) == _general(data, tlvs, rule)


@settings(max_examples=1500, deadline=None)
@given(data=_receipt_texts())
def test_common_fields_are_what_the_scan_finds(data: bytes) -> None:
    fields = common_receipt_fields(data)
    if fields is None:
        return
    stripped = data.rstrip(b"\x00")
    text = stripped.decode("latin-1")
    scanned = scan_receipt_text(stripped)
    expected = list(fields)
    if expected[7] is None:
        expected.pop()
    assert [f[0] for f in scanned] == _KINDS[: len(expected)]
    assert [text[f[3] : f[4]] for f in scanned] == expected


@settings(max_examples=400, deadline=None)
@given(
    message_id=st.text(st.sampled_from("0123456789abcdefABCDEF"), min_size=1, max_size=20),
    state=st.sampled_from(list(MessageState)),
    date=st.datetimes(min_value=dt.datetime(2000, 1, 1), max_value=dt.datetime(2099, 12, 31)),
    digits=st.sampled_from([10, 12]),
    text=st.text(max_size=30),
    err=st.sampled_from(["000", "001", "12", "abc", ""]),
    with_tlvs=st.booleans(),
)
def test_the_common_form_takes_the_fast_path(
    message_id: str, state: MessageState, date: dt.datetime, digits: int, text: str, err: str, with_tlvs: bool
) -> None:
    """What format_receipt writes (the gateway's and most SMSCs' form) is read without the scan."""
    receipt = Receipt(
        message_id=message_id, state=state, submit_date=date, done_date=date, err=err or None, text=text
    )
    data = format_receipt(receipt, digits)
    tlvs = receipts.receipt_tlvs(receipt) if with_tlvs else None
    stripped = data.rstrip(b"\x00")
    fast = receipts._parse_common(stripped.decode("latin-1"), tlvs, IdRule.AS_IS)
    assert fast is not None
    assert fast == _general(data, tlvs, IdRule.AS_IS)
    assert fast.message_id == message_id and fast.state is state and not fast.problems


def test_examples() -> None:
    common = b"id:1a2b sub:001 dlvrd:001 submit date:2401021504 done date:240102150407 stat:DELIVRD err:000"
    common += b" text:hi "
    assert common_receipt_fields(common) == (
        "1a2b", "001", "001", "2401021504", "240102150407", "DELIVRD", "000", "hi ",
    )  # fmt: skip
    assert common_receipt_fields(common[: common.index(b" text:")] + b"\x00") is not None
    r = parse_receipt(common, {0x001E: " 1a2b ", 0x0427: 2, 0x0423: b"\x03\x00\x01"})
    assert r == Receipt(
        "1a2b", MessageState.DELIVERED, "DELIVRD", 1, 1, dt.datetime(2024, 1, 2, 15, 4),
        dt.datetime(2024, 1, 2, 15, 4, 7), "000", "hi ", (3, 1),
    )  # fmt: skip
    # the legacy form (TLV id hex as in the submit_sm_resp, text id decimal) stays on the fast path
    legacy = common.replace(b"id:1a2b", b"id:6699")
    fast = receipts._parse_common(legacy.decode(), {0x001E: "1A2B"}, IdRule.AS_IS)
    assert fast is not None and fast == parse_receipt(legacy, {0x001E: "1A2B"}) == _general(
        legacy, {0x001E: "1A2B"}, IdRule.AS_IS
    )
    assert (fast.message_id, fast.text_id, fast.conflicts) == ("1A2B", "6699", ("message_id",))
    # a conflict, an unusable TLV, a date that is no date, an unknown stat: the general path says so
    assert parse_receipt(common, {0x0427: 5}).conflicts == ("state",)
    assert parse_receipt(common, {0x001E: "9"}).conflicts == ("message_id",)
    assert parse_receipt(common, {0x0427: 99}).problems
    assert parse_receipt(common.replace(b"2401021504 ", b"2413021504 "), None).problems
    assert parse_receipt(common.replace(b"DELIVRD", b"XYZ"), None).problems
    for other in (
        common.replace(b"sub:", b"SUB:"),
        common.replace(b" dlvrd", b"  dlvrd"),
        common.replace(b"submit date", b"submit_date"),
        common.replace(b" text:", b" foo:1 text:"),
        b"x " + common,
    ):
        assert common_receipt_fields(other) is None
        assert parse_receipt(other, None) == _general(other, None, IdRule.AS_IS)
