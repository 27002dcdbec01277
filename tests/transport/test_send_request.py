"""SmppSession.send_request: callbacks get the response PDU itself; the window and closed checks."""

from __future__ import annotations

import pytest
import trio
import trio.testing

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.events import ConnectionClosed, RequestReceived, ResponseReceived
from catalyst_smpp.protocol.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    DeliverSmResp,
    Pdu,
    SubmitSm,
    SubmitSmResp,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.transport import DEFERRED, Reply, SessionClosedError, SmppSession
from tests.transport.peer import SansIoPeer


async def _next_request(peer: SansIoPeer) -> SubmitSm:
    while True:  # the peer's core reports its Bound first
        ev = await peer.next_event()
        if isinstance(ev, RequestReceived):
            assert isinstance(ev.pdu, SubmitSm)
            return ev.pdu


async def _bound(nursery: trio.Nursery, window: int = 4) -> tuple[SmppSession, SansIoPeer]:
    a, b = trio.testing.memory_stream_pair()
    cfg = SessionConfig(window_size=window, enquire_link_interval=None, inactivity_timeout=None)
    conn = SmppConnection(Role.ESME, cfg, now=trio.current_time())
    session = SmppSession(a, conn, session_id="t", peer="p")
    peer = SansIoPeer(b, Role.SMSC)
    nursery.start_soon(session.run)

    async def answer_bind() -> None:
        req = await peer.expect_request()
        await peer.send(BindTransceiverResp(sequence_number=req.sequence_number, system_id="smsc"))

    nursery.start_soon(answer_bind)
    resp = await session.request(BindTransceiver(system_id="esme", password="pw"))
    assert resp.command_status == 0 and session.is_bound
    return session, peer


async def test_callbacks_get_the_response_pdu_and_a_failing_one_is_contained() -> None:
    async with trio.open_nursery() as nursery:
        session, peer = await _bound(nursery)
        got: list[object] = []

        def boom(result: object) -> None:
            got.append(result)
            raise RuntimeError("callback bug")

        session.send_request(SubmitSm(destination_addr="1", short_message=b"a"), boom)
        session.send_request(SubmitSm(destination_addr="2", short_message=b"b"), got.append)
        for mid in ("x1", "x2"):
            req = await _next_request(peer)
            await peer.send(SubmitSmResp(sequence_number=req.sequence_number, message_id=mid))
        with trio.fail_after(5):
            while len(got) < 2:
                await trio.sleep(0.01)
        assert [type(r) for r in got] == [SubmitSmResp, SubmitSmResp]
        assert [r.message_id for r in got] == ["x1", "x2"]  # type: ignore[attr-defined]
        assert session.stats.responses_received == 2 and session.in_flight == 0
        # the session still works after the failing callback
        session.send_request(SubmitSm(destination_addr="3", short_message=b"c"), got.append)
        req = await _next_request(peer)
        await peer.send(SubmitSmResp(sequence_number=req.sequence_number, message_id="x3"))
        with trio.fail_after(5):
            while len(got) < 3:
                await trio.sleep(0.01)
        assert got[2].message_id == "x3" and not session.is_closed  # type: ignore[attr-defined]
        session.close()


async def test_window_full_and_closed() -> None:
    async with trio.open_nursery() as nursery:
        session, _peer = await _bound(nursery, window=2)
        session.window_size = 1  # narrowed below the core's window
        session.send_request(SubmitSm(destination_addr="1"), lambda r: None)
        with pytest.raises(trio.WouldBlock):
            session.send_request(SubmitSm(destination_addr="2"), lambda r: None)
        session.window_size = 2
        session.send_request(SubmitSm(destination_addr="2"), lambda r: None)
        with pytest.raises(trio.WouldBlock):  # the core's window
            session.send_request(SubmitSm(destination_addr="3"), lambda r: None)
        outcomes: list[object] = []
        session.close()
        with pytest.raises(SessionClosedError):
            session.send_request(SubmitSm(destination_addr="4"), outcomes.append)
        await session.wait_closed()


async def test_plain_handler_reply_that_cannot_be_encoded_is_answered_rsyserr() -> None:
    """A handler's response PDU goes out on the reader's fast path; one that fails to encode is
    answered ESME_RSYSERR (and logged) as before, and the session goes on."""
    a, b = trio.testing.memory_stream_pair()
    cfg = SessionConfig(enquire_link_interval=None, bind_timeout=None)
    conn = SmppConnection(Role.SMSC, cfg, now=trio.current_time())

    def handler(session: SmppSession, pdu: Pdu) -> Reply:
        if isinstance(pdu, SubmitSm):
            mid = "x" * 300 if pdu.destination_addr == "bad" else "ok"
            return pdu.make_response(0, message_id=mid)
        return None

    session = SmppSession(a, conn, session_id="t", peer="p", handler=handler)
    peer = SansIoPeer(b, Role.ESME)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await peer.bind("trx", "esme", "pw")).command_status == 0
        bad = await peer.request(SubmitSm(destination_addr="bad"))
        assert bad.command_status == CommandStatus.ESME_RSYSERR
        good = await peer.request(SubmitSm(destination_addr="good"))
        assert good.command_status == 0 and good.message_id == "ok"  # type: ignore[attr-defined]
        assert session.stats.pdus_in == 3 and not session.is_closed  # the bind, two submit_sm
        session.close()


async def test_respond_from_a_handler_keeps_wire_order_and_survives_close() -> None:
    """respond() inside a plain handler queues the response at once: it goes out before what the
    handler sends after it (a receipt), and before the stream closes when the handler closes."""
    a, b = trio.testing.memory_stream_pair()
    cfg = SessionConfig(enquire_link_interval=None, bind_timeout=None)
    conn = SmppConnection(Role.SMSC, cfg, now=trio.current_time())
    receipts: list[object] = []

    def handler(session: SmppSession, pdu: Pdu) -> Reply:
        if not isinstance(pdu, SubmitSm):
            return None
        session.respond(pdu, pdu.make_response(0, message_id=pdu.destination_addr))
        if pdu.destination_addr == "close":
            session.close()
        else:
            session.send_request(
                DeliverSm(short_message=b"id:" + pdu.destination_addr.encode()), receipts.append
            )
        return DEFERRED

    session = SmppSession(a, conn, session_id="t", peer="p", handler=handler)
    peer = SansIoPeer(b, Role.ESME)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(session.run)
        assert (await peer.bind("trx", "esme", "pw")).command_status == 0
        await peer.send(SubmitSm(destination_addr="r1"))
        ev = await peer.next_event()
        assert isinstance(ev, ResponseReceived) and ev.pdu.message_id == "r1"  # type: ignore[attr-defined]
        dlr = await peer.expect_request()
        assert isinstance(dlr, DeliverSm) and dlr.short_message == b"id:r1"
        await peer.send(dlr.make_response())
        await peer.send(SubmitSm(destination_addr="close"))
        ev = await peer.next_event()
        assert isinstance(ev, ResponseReceived) and ev.pdu.message_id == "close"  # type: ignore[attr-defined]
        assert isinstance(await peer.expect_closed(), ConnectionClosed)
        await session.wait_closed()
    assert [type(r) for r in receipts] == [DeliverSmResp]
