"""The receipt path without record objects: ``dlr_record`` / ``dlr_values`` / partner delivery's short path
give what ``DlrMessage.to_bytes`` / ``from_bytes`` / ``dlr_pdu`` give."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.gateway import delivery
from catalyst_smpp.gateway.messages import Address, DecodeError, DlrMessage, dlr_record, dlr_values
from tests.gateway.helpers import partner

_texts = st.one_of(st.sampled_from(["", "123456789012345678", "DELIVRD", "abc"]), st.text(max_size=12))
_small = st.one_of(st.integers(0, 255), st.sampled_from([-1, 256]))
_addresses = st.builds(Address, _small, _small, _texts)


@st.composite
def _dlrs(draw: st.DrawFn) -> DlrMessage:
    message_id = draw(st.one_of(st.sampled_from(["123456789012345678", "18446744073709551615"]), _texts))
    return DlrMessage(
        message_id=message_id,
        partner=draw(_texts),
        state=draw(st.one_of(st.sampled_from(["DELIVRD", "UNDELIV", "EXPIRED", "WEIRD"]), _texts)),
        source=draw(_addresses),
        dest=draw(_addresses),
        error=draw(st.one_of(st.sampled_from(["000", "1", "00B"]), _texts)),
        submit_date=draw(st.one_of(st.just(0.0), st.floats(0, 4.2e9))),
        done_date=draw(st.one_of(st.just(1733000000.0), st.floats(0, 4.2e9))),
        operator=draw(_texts),
        operator_message_id=draw(_texts),
        network_error_code=draw(st.sampled_from(["", "030001", "0300", "zz0001", "03000100"])),
        text=draw(_texts),
        part=draw(st.one_of(st.integers(1, 3), st.sampled_from([0, 70000]))),
        parts=draw(st.integers(1, 3)),
        display_id=draw(st.one_of(st.just(message_id), _texts)),
    )


@settings(max_examples=600, deadline=None)
@given(dlr=_dlrs())
def test_dlr_record_writes_what_to_bytes_writes(dlr: DlrMessage) -> None:
    s, d = dlr.source, dlr.dest
    data = dlr_record(
        dlr.message_id, dlr.partner, dlr.state, (s.ton, s.npi, s.addr), (d.ton, d.npi, d.addr), dlr.error,
        dlr.submit_date, dlr.done_date, dlr.operator, dlr.operator_message_id, dlr.network_error_code,
        dlr.text, dlr.part, dlr.parts, dlr.display_id,
    )  # fmt: skip
    assert data == dlr.to_bytes()


@settings(max_examples=600, deadline=None)
@given(dlr=_dlrs(), fmt=st.sampled_from(["hex", "dec"]), digits=st.sampled_from([10, 12]))
def test_delivery_short_path_builds_what_dlr_pdu_builds(dlr: DlrMessage, fmt: str, digits: int) -> None:
    data = dlr.to_bytes()
    values = dlr_values(data)
    if values is None:  # the JSON form: partner delivery decodes the record
        assert data[:1] == b"{"
        return
    read = DlrMessage.from_bytes(data)
    s, d = read.source, read.dest
    assert values == (
        read.message_id, read.partner, read.state, s.ton, s.npi, s.addr, d.ton, d.npi, d.addr, read.error,
        read.submit_date, read.done_date, read.operator, read.operator_message_id, read.network_error_code,
        read.text, read.part, read.parts, read.payload, read.display_id,
    )  # fmt: skip
    p = partner("acme", message_id_format=fmt, receipt_date_digits=digits)
    try:
        expected = delivery.dlr_pdu(read, p)
    except ValueError as exc:
        with pytest.raises(ValueError, match=str(exc)[:20]):
            delivery._values_pdu(values, p)
        return
    assert delivery._values_pdu(values, p) == expected


def test_dlr_values_json_form_and_damage() -> None:
    dlr = DlrMessage("123", "acme", "DELIVRD", Address(1, 1, "447700"), Address(5, 0, "Cat"), text="hi")
    assert dlr_values(dlr.to_json_bytes()) is None
    data = dlr.to_bytes()
    assert dlr_values(data) is not None
    for bad in (data[:10], data[:-1], data[:1] + b"\x02" + data[2:], data[:2] + b"M" + data[3:]):
        with pytest.raises(DecodeError):
            dlr_values(bad)
        with pytest.raises(DecodeError):
            DlrMessage.from_bytes(bad)
