"""The load generator against the SMSC simulator, in process, through every configured fault.

Every fault is checked with exact counts on both sides: what the simulator says it
did must be what the load generator saw.
"""

from __future__ import annotations

import pytest
import trio

from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.encoding.msgid import IdRule
from catalyst_smpp.loadgen.config import BindMode, LoadConfig, TextEncoding, make_text
from catalyst_smpp.loadgen.report import LoadReport
from catalyst_smpp.loadgen.runner import plan_message, run_load
from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.protocol.pdu import DataSm, QuerySm, SmeDestination, SubmitMulti
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.sim.config import DelayRange, SimConfig
from catalyst_smpp.sim.ids import IdForm, IdFormat
from catalyst_smpp.sim.server import SmscSimulator, open_simulator


async def _load(sim: SmscSimulator, **kw: object) -> LoadReport:
    kw.setdefault("receipt_timeout", 5.0)
    return await run_load(LoadConfig(port=sim.port, **kw))  # type: ignore[arg-type]


def _assert_consistent(report: LoadReport, sim: SmscSimulator) -> None:
    s = sim.stats
    assert report.submitted == s.submit_sm
    assert report.accepted == s.accepted
    rejected = dict(s.errors)
    if s.throttled:
        rejected["ESME_RTHROTTLED"] = s.throttled
    assert report.rejected == rejected
    assert report.unanswered == s.unanswered
    assert report.submitted == report.accepted + sum(report.rejected.values()) + report.unanswered


async def test_receipt_mix_and_windows_exact() -> None:
    mix = ((MessageState.DELIVERED, 90.0), (MessageState.UNDELIVERABLE, 5.0), (MessageState.EXPIRED, 5.0))
    async with open_simulator(SimConfig(receipt_mix=mix, receipt_delay=DelayRange(0.001, 0.01))) as sim:
        report = await _load(sim, count=400, binds=2, window=16, registered_delivery=1)
        await sim.wait_until(lambda s: s.stats.disconnects == 2)
    _assert_consistent(report, sim)
    assert report.accepted == 400 and report.messages == 400
    assert report.receipts == {"DELIVRD": 360, "UNDELIV": 20, "EXPIRED": 20}
    assert sim.stats.receipts_by_stat == report.receipts
    assert (report.receipts_missing, report.receipts_unmatched, report.receipts_duplicate) == (0, 0, 0)
    assert len(report.submit_resp) == 400 and len(report.submit_receipt) == 400
    assert sim.stats.binds == 2 and sim.stats.unbinds == 2


async def test_throttle_fraction() -> None:
    async with open_simulator(SimConfig(throttle_fraction=0.1)) as sim:
        report = await _load(sim, count=200, window=20)
    _assert_consistent(report, sim)
    assert report.rejected == {"ESME_RTHROTTLED": 20} and report.accepted == 180


async def test_throttle_above_rate() -> None:
    async with open_simulator(SimConfig(throttle_rate=50, throttle_burst=10)) as sim:
        report = await _load(sim, count=60, window=60)
    _assert_consistent(report, sim)
    # 60 at once against a bucket of 10: at least 40 throttled whatever the machine's speed
    assert report.rejected["ESME_RTHROTTLED"] >= 40
    assert report.accepted >= 10


async def test_error_status_mix() -> None:
    statuses = ((int(CommandStatus.ESME_RSYSERR), 5.0), (int(CommandStatus.ESME_RMSGQFUL), 2.5), (0x401, 2.5))
    async with open_simulator(SimConfig(status_mix=statuses, throttle_fraction=0.05)) as sim:
        report = await _load(sim, count=400, window=10, binds=2)
    _assert_consistent(report, sim)
    assert report.rejected == {
        "ESME_RTHROTTLED": 20,
        "ESME_RSYSERR": 19,
        "ESME_RMSGQFUL": 10,
        "vendor_0x00000401": 9,
    }
    assert report.accepted == 342


async def test_injected_latency_shows_in_percentiles() -> None:
    async with open_simulator(SimConfig(latency=DelayRange(0.02, 0.03))) as sim:
        report = await _load(sim, count=60, window=20)
    _assert_consistent(report, sim)
    summary = report.submit_resp.summary()
    assert summary["p50"] >= 0.02 and summary["max"] >= 0.02
    assert report.accepted == 60


async def test_dropped_connections_with_reconnect() -> None:
    async with open_simulator(SimConfig(drop_after=25, latency=DelayRange(0.0, 0.002))) as sim:
        report = await _load(sim, count=100, window=8, registered_delivery=1)
    _assert_consistent(report, sim)
    assert sim.stats.drops >= 3
    assert (
        report.submitted == 100
    )  # a message whose connection was lost before it went out is sent on the next
    assert report.reconnects == sim.stats.drops
    assert report.unanswered >= sim.stats.drops  # at least the dropping submit of each connection
    assert report.messages == 100
    # receipts of accepted messages reach the load generator even across reconnects
    assert sum(report.receipts.values()) == report.accepted
    assert report.receipts_missing == 0


async def test_random_drops_without_reconnect_stop_the_run() -> None:
    async with open_simulator(SimConfig(drop_probability=0.05, seed=3)) as sim:
        report = await _load(sim, count=500, window=4, reconnect=False)
    _assert_consistent(report, sim)
    assert sim.stats.drops == 1 and report.reconnects == 0
    assert report.submitted < 500


async def test_receipt_ids_in_another_form() -> None:
    cfg = SimConfig(
        id_format=IdFormat(IdForm.HEX, width=8, upper=True),
        receipt_id_format=IdFormat(IdForm.DEC),
        id_start=0xFFF0,
    )
    async with open_simulator(cfg) as sim:
        matched = await _load(sim, count=40, registered_delivery=1, id_rule=IdRule.HEX_TO_DEC)
    assert matched.receipts == {"DELIVRD": 40} and matched.receipts_unmatched == 0
    first = next(iter(sim.messages))
    assert (first.message_id, first.receipt_id) == ("0000FFF0", str(0xFFF0))
    async with open_simulator(cfg) as sim:
        naive = await _load(sim, count=40, registered_delivery=1, receipt_timeout=0.3)
    # compared as plain strings, no receipt matches its message
    assert naive.receipts == {} and naive.receipts_unmatched == 40 and naive.receipts_missing == 40


@pytest.mark.parametrize(
    ("text", "encoding", "payload", "segments", "data_coding"),
    [
        (make_text(150, TextEncoding.UCS2), TextEncoding.AUTO, False, 3, 8),
        ("Price: 10€ [promo] " * 12, TextEncoding.GSM, False, 2, 0),
        ("short and sweet", TextEncoding.AUTO, False, 1, 0),
        ("café au lait " * 20, TextEncoding.LATIN1, True, 1, 3),
    ],
)
async def test_long_texts_arrive_whole(
    text: str, encoding: TextEncoding, payload: bool, segments: int, data_coding: int
) -> None:
    assert plan_message(text, encoding, payload).segments == segments
    async with open_simulator(SimConfig()) as sim:
        report = await _load(sim, count=5, text=text, encoding=encoding, use_payload=payload, window=3)
    assert report.messages == 5 and report.submitted == 5 * segments == report.accepted
    whole = sim.assembled()
    assert len(whole) == 5
    for message in whole:
        assert message.complete and len(message.parts) == segments
        assert message.text == text and message.data_coding == data_coding
    # every message used its own concatenation reference
    if segments > 1:
        assert len({m.parts[0].concat.ref for m in whole if m.parts[0].concat}) == 5


async def test_credentials_are_checked() -> None:
    async with open_simulator(SimConfig(credentials={"alice": "wonder"})) as sim:
        refused = await _load(sim, count=10, system_id="alice", password="wrong")
        accepted = await _load(sim, count=10, system_id="alice", password="wonder")
    assert refused.bind_failures == 1 and refused.submitted == 0
    assert accepted.accepted == 10
    assert sim.stats.bind_failures == 1 and sim.stats.binds == 1


async def test_receipts_wait_for_a_receiver_bind() -> None:
    async with open_simulator(SimConfig()) as sim:
        tx = await _load(sim, count=7, bind_mode=BindMode.TX, registered_delivery=1)
        assert tx.accepted == 7 and tx.receipts == {}
        await sim.wait_until(lambda s: s.summary()["receipts_pending"] == 7)
        # a transceiver bind of the same system_id collects them (not matched: another run sent them)
        await _load(sim, count=0, receipt_timeout=0.0)
        await sim.wait_until(lambda s: s.stats.receipts_sent == 7)
    assert sim.summary()["receipts_pending"] == 0


async def test_mo_messages_reach_the_load_generator() -> None:
    async with open_simulator(SimConfig(mo_rate=200, mo_count=10, mo_text="STOP")) as sim:
        report = await _load(sim, duration=0.5, rate=20)
    assert report.mo == 10 and sim.stats.mo_sent == 10


async def test_data_sm_and_submit_multi_are_answered_and_stored() -> None:
    async with open_simulator(SimConfig(id_format=IdFormat(IdForm.DEC, width=4))) as sim:
        client = SmppClient(ClientConfig("127.0.0.1", sim.port, "t", "p"))
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            with trio.fail_after(5):
                await client.wait_bound()
                data = await client.request(
                    DataSm(
                        source_addr="1",
                        destination_addr="2",
                        data_coding=8,
                        tlvs=(Tlv(int(Tag.message_payload), "Привет".encode("utf-16-be")),),
                    )
                )
                multi = await client.request(
                    SubmitMulti(
                        source_addr="1",
                        short_message=b"to many",
                        dest_address=(
                            SmeDestination(1, 1, "447700900001"),
                            SmeDestination(1, 1, "447700900002"),
                        ),
                    )
                )
                # a command the simulator does not handle is refused, the session stays up
                query = await client.request(QuerySm(message_id="0001", source_addr="1"))
            await client.aclose()
    answers = [(r.command_status, getattr(r, "message_id", None)) for r in (data, multi)]
    assert answers == [(0, "0001"), (0, "0002")]
    assert query.command_status == CommandStatus.ESME_RINVCMDID
    stored_data, stored_multi = list(sim.messages)
    assert (stored_data.command, stored_data.text) == ("data_sm", "Привет")
    assert (stored_multi.command, stored_multi.text, stored_multi.destinations) == (
        "submit_multi",
        "to many",
        ("447700900001", "447700900002"),
    )
    assert (sim.stats.data_sm, sim.stats.submit_multi, sim.stats.other) == (1, 1, 1)
    assert sim.stats.unbinds == 1
