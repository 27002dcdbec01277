"""An HTTP send as a submit_sm (catalyst_smpp.http.compose): E.164, senders, the encoding choice, the
message_payload threshold, relative validity -- with hypothesis for the text and the numbers."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.encoding.codecs import decode
from catalyst_smpp.encoding.datacoding import Encoding
from catalyst_smpp.http.compose import ComposeError, compose, e164, relative_time, source_address
from catalyst_smpp.protocol.fields import request_problem
from catalyst_smpp.protocol.tlv import Tag

GSM = "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abc"


def test_e164() -> None:
    assert e164("+447700900123") == "447700900123"
    assert e164("+33 6 12 34 56 78") == "33612345678"
    for bad in ("447700900123", "07700900123", "+44", "+999123456789", "+4477009001234567890", "hello", ""):
        with pytest.raises(ComposeError) as e:
            e164(bad)
        assert e.value.code == "INVALID_DESTINATION"
        assert e.value.details == {"provided": bad, "required_format": "E.164"}


def test_source_address() -> None:
    assert source_address("+447700900123") == (1, 1, "447700900123")
    assert source_address("12345") == (1, 1, "12345")
    assert source_address("Catalyst") == (5, 0, "Catalyst")
    for bad in ("TwelveLetter", "日本", "", "a\x00b"):
        with pytest.raises(ComposeError):
            source_address(bad)


@given(st.integers(min_value=0, max_value=100 * 86400 - 1))
def test_relative_time(seconds: int) -> None:
    t = relative_time(seconds)
    assert len(t) == 16 and t.endswith("000R")
    d, h, m, s = int(t[4:6]), int(t[6:8]), int(t[8:10]), int(t[10:12])
    assert d * 86400 + h * 3600 + m * 60 + s == seconds and h < 24 and m < 60 and s < 60


@given(st.text(alphabet=GSM, min_size=1, max_size=500))
def test_gsm_text_stays_gsm(text: str) -> None:
    pdu, parts = compose("+447700900123", "Catalyst", text)
    data = pdu.short_message or pdu.tlvs[0].raw
    assert pdu.data_coding == 0 and decode(data, Encoding.GSM7) == text
    assert (pdu.short_message == b"") == (len(data) > 254)
    assert (pdu.tlvs[0].tag == Tag.message_payload) if pdu.tlvs else len(data) <= 254
    assert parts == (1 if len(data) <= 160 else -(-len(data) // 153))
    assert request_problem(pdu) is None


@given(st.text(min_size=1, max_size=300).filter(lambda t: any(ord(c) > 0x2000 for c in t)))
def test_other_text_is_ucs2(text: str) -> None:
    try:
        pdu, parts = compose("+447700900123", "Catalyst", text)
    except ComposeError:
        return
    data = pdu.short_message or pdu.tlvs[0].raw
    assert pdu.data_coding == 8 and data == text.encode("utf-16-be")
    n = len(data) // 2
    assert parts == (1 if n <= 70 else -(-n // 67))


def test_explicit_encodings_binary_and_fields() -> None:
    pdu, _ = compose("+447700900123", "Catalyst", "abc", encoding="ucs2")
    assert (pdu.data_coding, pdu.short_message) == (8, "abc".encode("utf-16-be"))
    pdu, _ = compose("+447700900123", "Catalyst", "café", encoding="latin1")
    assert (pdu.data_coding, pdu.short_message) == (3, "café".encode("latin-1"))
    pdu, _ = compose("+447700900123", "Catalyst", "0a0BFF", message_type="binary")
    assert (pdu.data_coding, pdu.short_message) == (4, b"\x0a\x0b\xff")
    pdu, _ = compose("+447700900123", "1234", "x", delivery_report=True, validity_period=3600, priority=2)
    assert (pdu.registered_delivery, pdu.validity_period, pdu.priority_flag) == (1, "000000010000000R", 2)
    assert (pdu.dest_addr_ton, pdu.dest_addr_npi, pdu.destination_addr) == (1, 1, "447700900123")
    assert request_problem(pdu) is None
    for kw in ({"encoding": "gsm7", "message": "日本"}, {"encoding": "latin1", "message": "日本"},
               {"message_type": "binary", "message": "xyz"}):  # fmt: skip
        with pytest.raises(ComposeError) as e:
            compose("+447700900123", "Catalyst", **kw)  # type: ignore[arg-type]
        assert e.value.code == "INVALID_REQUEST"


@given(st.from_regex(r"\A\+[1-9][0-9]{6,14}\Z"))
def test_e164_fast_path_agrees_with_phonenumbers(number: str) -> None:
    import phonenumbers

    try:
        parsed = phonenumbers.parse(number, None)
        want = phonenumbers.is_possible_number(parsed)
    except phonenumbers.NumberParseException:
        want = False
    try:
        got = e164(number)
    except ComposeError:
        assert not want, number
    else:
        assert want, number
        assert got.isdigit() and got[:1] == number[1:2]
