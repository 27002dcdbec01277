"""Matching responses and receipts in the load generator, without I/O."""

from __future__ import annotations

import json

import pytest

from catalyst_smpp.encoding.msgid import IdRule
from catalyst_smpp.encoding.receipts import Receipt
from catalyst_smpp.loadgen.config import LoadConfig, TextEncoding, make_text
from catalyst_smpp.loadgen.report import LoadReport
from catalyst_smpp.loadgen.tracker import Tracker
from catalyst_smpp.protocol.constants import CommandStatus, MessageState


def _receipt(message_id: str, state: MessageState = MessageState.DELIVERED, stat: str = "DELIVRD") -> Receipt:
    return Receipt(message_id=message_id, state=state, stat=stat)


def test_responses_receipts_and_latencies() -> None:
    report = LoadReport()
    t = Tracker(report, IdRule.HEX_TO_DEC)
    for _ in range(4):
        t.submitted()
    t.response(0.0, 0.010, 0, "FF", wants_receipt=True)
    t.response(0.0, 0.020, int(CommandStatus.ESME_RTHROTTLED), "", wants_receipt=True)
    t.response(1.0, 1.030, 0, "0100", wants_receipt=True)
    t.unanswered()
    t.receipt(_receipt("255"), 0.5)  # the decimal spelling of 0xFF
    t.receipt(_receipt("255"), 0.6)  # a duplicate
    t.receipt(_receipt("999", MessageState.UNDELIVERABLE, "UNDELIV"), 0.7)  # nobody sent that
    t.finish()
    assert report.submitted == 4 and report.accepted == 2 and report.unanswered == 1
    assert report.rejected == {"ESME_RTHROTTLED": 1}
    assert report.receipts == {"DELIVRD": 1}
    assert (report.receipts_duplicate, report.receipts_unmatched, report.receipts_missing) == (1, 1, 1)
    assert report.submit_resp.summary()["max"] == pytest.approx(0.030)
    assert report.submit_receipt.summary()["p50"] == pytest.approx(0.5)


def test_receipt_before_its_response_is_matched() -> None:
    report = LoadReport()
    t = Tracker(report)
    t.receipt(_receipt("abc", MessageState.EXPIRED, "EXPIRED"), 0.004)
    assert t.receipts_outstanding == 0
    t.response(0.0, 0.005, 0, "abc", wants_receipt=True)
    t.finish()
    assert report.receipts == {"EXPIRED": 1}
    assert report.receipts_early == 1 and report.receipts_unmatched == 0 and report.receipts_missing == 0
    assert report.submit_receipt.summary()["max"] == pytest.approx(0.004)


def test_report_json_and_text() -> None:
    report = LoadReport(binds=2, window=8, submitted=3, accepted=2, elapsed=2.0)
    report.reject(0x58)
    report.reject(0x400)
    report.submit_resp.add(0.001)
    data = json.loads(json.dumps(report.to_dict()))
    assert data["rejected"] == {"ESME_RTHROTTLED": 1, "vendor_0x00000400": 1}
    assert data["throughput"] == pytest.approx(2.0)
    assert data["latency"]["submit_receipt"]["p50"] is None
    text = report.format_text()
    assert "rejected   2 (ESME_RTHROTTLED 1, vendor_0x00000400 1)" in text
    assert "submit->resp" in text


def test_load_config() -> None:
    assert LoadConfig().message_limit == 1000
    assert LoadConfig(duration=5).message_limit is None
    assert len(make_text(400, TextEncoding.UCS2)) == 400
    assert not make_text(400, TextEncoding.UCS2).isascii()
    assert make_text(200, TextEncoding.GSM).isascii()
    with pytest.raises(ValueError):
        LoadConfig(window=0)
