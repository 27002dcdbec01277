"""Partner delivery: DLR/MO records on JetStream → deliver_sm to smpplib (a real partner client)."""

from __future__ import annotations

import datetime as dt
import math
import time
from collections.abc import Callable
from typing import Any

import trio
import trio.testing

from catalyst_smpp.bus import Bus, Kind, MessageBus
from catalyst_smpp.encoding.receipts import parse_receipt
from catalyst_smpp.gateway.delivery import PartnerDelivery, dlr_pdu
from catalyst_smpp.gateway.messages import Address, DlrMessage, MoMessage
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.protocol.events import RequestReceived
from catalyst_smpp.protocol.pdu import DeliverSm
from catalyst_smpp.protocol.states import Role
from tests.transport.peer import SansIoPeer

from .helpers import operator, partner, partner_server, receive_deliveries, snapshot

OUR_ID = 123456789012345678
SUBMIT = dt.datetime(2025, 3, 4, 5, 6, 7, tzinfo=dt.UTC).timestamp()
DONE = SUBMIT + 65


def _dlr(i: int, state: str = "DELIVRD") -> DlrMessage:
    return DlrMessage(
        message_id=str(OUR_ID + i),
        partner="acme",
        state=state,
        source=Address(1, 1, "12345"),
        dest=Address(1, 1, f"44770090000{i}"),
        error="000" if state == "DELIVRD" else "034",
        submit_date=SUBMIT,
        done_date=DONE,
        operator="opA",
        text="hello",
        network_error_code="030022",
    )


def _mo(i: int, payload: bytes) -> MoMessage:
    return MoMessage(
        message_id=f"mo{i}",
        partner="acme",
        source=Address(1, 1, "447700900100"),
        dest=Address(0, 0, "1234"),
        payload=payload,
        data_coding=0,
        operator="opA",
    )


async def _publish(bus: MessageBus, items: list[tuple[Kind, Any, str]]) -> None:
    res = await bus.publish_batch(
        [(bus.subject(k, "acme"), rec.to_bytes(), None, mid) for k, rec, mid in items]
    )
    assert all(r.ok for r in res), res


def _snap(**pkw: Any) -> Any:
    return snapshot([partner("acme", "secret", **pkw)], [operator("opA")], [])


async def _pending(bus: MessageBus, kind: Kind) -> int:
    c = await bus.consumer(kind, "acme")
    info = await c.info()
    return info.num_pending + info.num_ack_pending


async def test_accumulated_receipts_and_mo_delivered_when_partner_binds(bus: Bus) -> None:
    snap = _snap(message_id_format="hex", receipt_date_digits=12)
    long_mo = bytes(range(32, 127)) * 3  # 285 octets: goes in message_payload
    await _publish(
        bus,
        [
            (Kind.DLR, _dlr(0), "dlr:0"),
            (Kind.DLR, _dlr(1, "UNDELIV"), "dlr:1"),
            (Kind.MO, _mo(0, b"STOP"), "mo:0"),
            (Kind.MO, _mo(1, long_mo), "mo:1"),
        ],
    )
    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(ps.server, bus, snap.partners[0], fetch_timeout=0.3)
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            await trio.sleep(0.5)  # not bound: nothing is taken from JetStream
            assert await _pending(bus, Kind.DLR) == 2 and await _pending(bus, Kind.MO) == 2
            assert pd.delivered == 0
            got = await trio.to_thread.run_sync(lambda: receive_deliveries(ps.port, "acme", "secret", 4))
            with trio.fail_after(20):
                while pd.delivered < 4:
                    await trio.sleep(0.05)
            pd.stop()
        assert await _pending(bus, Kind.DLR) == 0 and await _pending(bus, Kind.MO) == 0
    assert len(got) == 4
    receipts = sorted((p for p in got if p.esm_class == 0x04), key=lambda p: p.receipted_message_id)
    mos = [p for p in got if p.esm_class != 0x04]
    assert [p.receipted_message_id.decode() for p in receipts] == [
        format(OUR_ID, "x"),
        format(OUR_ID + 1, "x"),
    ]
    assert [int(p.message_state) for p in receipts] == [MessageState.DELIVERED, MessageState.UNDELIVERABLE]
    r0 = parse_receipt(receipts[0].short_message)
    assert r0.message_id == format(OUR_ID, "x") and r0.state is MessageState.DELIVERED
    assert r0.submit_date == dt.datetime(2025, 3, 4, 5, 6, 7) and r0.done_date == dt.datetime(
        2025, 3, 4, 5, 7, 12
    )
    assert b"submit date:250304050607 " in receipts[0].short_message  # 12 digits for this partner
    assert receipts[1].short_message.count(b"stat:UNDELIV err:034") == 1
    assert receipts[0].source_addr == b"447700900000" and receipts[0].destination_addr == b"12345"
    assert sorted((p.short_message or p.message_payload) for p in mos) == sorted([b"STOP", long_mo])
    assert all(p.destination_addr == b"1234" for p in mos)


async def _answer(port: int, count: int, status_for: Callable[[DeliverSm, int], int]) -> list[DeliverSm]:
    """Bind a transceiver; answer ``count`` deliver_sm with ``status_for(pdu, n)`` (n from 1)."""
    peer = await _receiver(port, "trx")
    got: list[DeliverSm] = []
    try:
        while len(got) < count:
            pdu = await peer.expect_request()
            assert isinstance(pdu, DeliverSm)
            got.append(pdu)
            await peer.send(pdu.make_response(status_for(pdu, len(got))))
    finally:
        await trio.aclose_forcefully(peer.stream)
    return got


async def test_error_answer_is_redelivered(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus  # a rule of partner delivery, on the in-memory bus under the autojump clock
    snap = _snap(message_id_format="dec")
    await _publish(bus, [(Kind.DLR, _dlr(5), "dlr:5")])
    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(ps.server, bus, snap.partners[0], fetch_timeout=0.3, nak_delay=0.2)
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            # the first deliver_sm is refused with ESME_RX_T_APPN (0x64), the redelivery accepted
            got = await _answer(ps.port, 2, lambda _pdu, n: 0x64 if n == 1 else 0)
            with trio.fail_after(20):
                while pd.delivered < 1:
                    await trio.sleep(0.05)
            pd.stop()
        assert await _pending(bus, Kind.DLR) == 0
    assert len(got) == 2
    assert [parse_receipt(p.short_message).message_id for p in got] == [str(OUR_ID + 5)] * 2  # dec format
    assert pd.failed == 1 and pd.delivered == 1


async def test_refused_for_good_is_dropped_and_other_errors_back_off(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    # ESME_RX_P_APPN / ESME_RX_R_APPN end a message (SMPP v3.4: final for the receiving ESME); any other error
    # status is retried with a delay that doubles per delivery.  In-memory bus, autojump clock: the delays
    # below are trio's clock, exact.
    bus = memory_bus
    snap = _snap(message_id_format="dec")
    await _publish(bus, [(Kind.DLR, _dlr(i), f"dlr:{i}") for i in (1, 2, 3)])
    refuse = {str(OUR_ID + 1): 0x65, str(OUR_ID + 2): 0x66}
    answers: dict[str, list[int]] = {}
    times: dict[str, list[float]] = {}

    def status_for(pdu: DeliverSm, _n: int) -> int:
        mid = parse_receipt(pdu.short_message).message_id
        st = refuse.get(mid, 0x08 if len(answers.get(mid, [])) < 3 else 0)  # the third: 3 x RSYSERR first
        answers.setdefault(mid, []).append(st)
        times.setdefault(mid, []).append(trio.current_time())
        return st

    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(
            ps.server,
            bus,
            snap.partners[0],
            fetch_timeout=0.3,
            nak_delay=0.3,
            max_nak_delay=0.6,
            log_every=0.0,
        )
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            got = await _answer(ps.port, 6, status_for)
            with trio.fail_after(20):
                while pd.delivered + pd.refused < 3:
                    await trio.sleep(0.05)
            await trio.sleep(1.0)  # nothing refused for good comes back
            pd.stop()
        assert await _pending(bus, Kind.DLR) == 0
    assert len(got) == 6
    assert answers == {
        str(OUR_ID + 1): [0x65],
        str(OUR_ID + 2): [0x66],
        str(OUR_ID + 3): [0x08, 0x08, 0x08, 0],
    }
    assert pd.refused == 2 and pd.delivered == 1 and pd.failed == 3
    gaps = [b - a for a, b in zip(times[str(OUR_ID + 3)], times[str(OUR_ID + 3)][1:], strict=False)]
    # 0.3 s, then 0.6 s, then capped at 0.6 s (trio's clock); the second wait is not the first again
    assert all(g >= want - 1e-6 for g, want in zip(gaps, (0.3, 0.6, 0.6), strict=True)), gaps


async def test_poison_record_terminated_and_others_delivered(bus: Bus) -> None:
    snap = _snap()
    res = await bus.publish_batch([(bus.subject(Kind.DLR, "acme"), b"garbage", None, "x")])
    assert res[0].ok
    await _publish(bus, [(Kind.DLR, _dlr(7), "dlr:7")])
    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(ps.server, bus, snap.partners[0], fetch_timeout=0.3)
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            got = await trio.to_thread.run_sync(lambda: receive_deliveries(ps.port, "acme", "secret", 1))
            with trio.fail_after(20):
                while pd.delivered < 1:
                    await trio.sleep(0.05)
            pd.stop()
        assert await _pending(bus, Kind.DLR) == 0
    assert [p.receipted_message_id.decode() for p in got] == [format(OUR_ID + 7, "x")]


async def _receiver(port: int, bind: str = "rx") -> SansIoPeer:
    peer = SansIoPeer(await trio.open_tcp_stream("127.0.0.1", port), Role.ESME)
    # the password hash runs in a worker thread: an autojump clock would jump to the bind timeout meanwhile
    clock = trio.lowlevel.current_clock()
    jump = clock.autojump_threshold if isinstance(clock, trio.testing.MockClock) else None
    if isinstance(clock, trio.testing.MockClock):
        clock.autojump_threshold = math.inf
    try:
        assert (await peer.bind(bind, "acme", "secret")).command_status == 0
    finally:
        if isinstance(clock, trio.testing.MockClock) and jump is not None:
            clock.autojump_threshold = jump
    return peer


async def test_partner_window_wider_than_the_listener_default_is_used(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus  # a rule of partner delivery, on the in-memory bus under the autojump clock
    # the listener's session window is 10 (limits.default_window in the daemon); the partner's own window
    # of 50 is what its bind gets: 50 deliver_sm in flight before the partner answers any
    snap = _snap(window=50)
    await _publish(bus, [(Kind.DLR, _dlr(i), f"dlr:{i}") for i in range(60)])
    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(ps.server, bus, snap.partners[0], fetch_timeout=0.3)
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            peer = await _receiver(ps.port)
            held: list[DeliverSm] = []
            with trio.fail_after(20):
                while len(held) < 50:
                    pdu = await peer.expect_request()
                    assert isinstance(pdu, DeliverSm)
                    held.append(pdu)
            (session,) = ps.server.receivers("acme")
            assert session.window_size == 50 and session.in_flight == 50
            for pdu in held:  # answer them: the last 10 follow
                await peer.send(pdu.make_response())
            with trio.fail_after(20):
                for _ in range(10):
                    await peer.send((await peer.expect_request()).make_response())
                while pd.delivered < 60:
                    await trio.sleep(0.02)
            pd.stop()
            await trio.aclose_forcefully(peer.stream)


async def test_receipts_flow_with_the_clock_frozen(bus: Bus, mock_clock: trio.testing.MockClock) -> None:
    # trio's clock does not move (MockClock, rate 0): a delivery loop that paced itself with sleeps or
    # timeouts would stop at the first full window.  Every receipt still arrives through a window of 10:
    # each free slot is signalled by the deliver_sm_resp that frees it.
    count = 300
    snap = _snap(window=10)
    await _publish(bus, [(Kind.DLR, _dlr(i), f"dlr:{i}") for i in range(count)])
    answered = 0

    async def partner_answers(peer: SansIoPeer) -> None:
        nonlocal answered
        while True:
            ev = await peer.next_event()
            if isinstance(ev, RequestReceived):
                await peer.send(ev.pdu.make_response())
                answered += 1

    async with partner_server(bus, snap) as ps:
        pd = PartnerDelivery(ps.server, bus, snap.partners[0], fetch_timeout=0.3)
        async with trio.open_nursery() as n:
            await n.start(pd.run)
            peer = await _receiver(ps.port)
            pd.receiver_bound()  # what the Gateway does on every receiver bind
            n.start_soon(partner_answers, peer)
            real_deadline = time.monotonic() + 60  # a hang guard in real time (trio's clock stands still)
            while pd.delivered < count and time.monotonic() < real_deadline:
                await trio.to_thread.run_sync(time.sleep, 0.02)
            assert pd.delivered == count and answered == count
            assert trio.current_time() == 0.0  # no timer ran
            pd.stop()
            n.cancel_scope.cancel()
        await trio.aclose_forcefully(peer.stream)


def test_dlr_pdu_non_numeric_id_and_unknown_state() -> None:
    p = dlr_pdu(DlrMessage(message_id="abc", partner="acme", state="WEIRD"), partner("acme"))
    r = parse_receipt(p.short_message)
    assert r.message_id == "abc" and r.state is MessageState.UNKNOWN
    assert p.esm_class == 0x04
