"""The server (SMSC role) over in-memory streams, with our sans-IO core as the ESME and a mock clock."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.events import CloseReason, ResponseReceived, Unbound, UnexpectedResponse
from catalyst_smpp.protocol.pdu import (
    BindTransmitter,
    DataSm,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    QuerySm,
    SubmitSm,
    Unbind,
    UnbindResp,
)
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role, SessionState
from catalyst_smpp.server import (
    DEFERRED,
    Account,
    BindType,
    ServerConfig,
    ServerSession,
    SmppServer,
    StaticAuthenticator,
)
from catalyst_smpp.transport import NotBoundError, Reply, ResponseTimeoutError
from tests.transport.peer import SansIoPeer

S = CommandStatus

ACCOUNTS = [
    Account("acme", "secret"),
    Account("solo", "pw", max_binds=1),
    Account("slow", "pw", throttle_rate=10, throttle_burst=5),
    Account("narrow", "pw", deliver_window=2),
]


def make_server(handler: Callable[..., Reply] | None = None, **session: object) -> SmppServer:
    cfg = dict(
        window_size=10,
        response_timeout=10.0,
        enquire_link_interval=30.0,
        inactivity_timeout=None,
        bind_timeout=5.0,
    )
    cfg.update(session)  # type: ignore[arg-type]
    return SmppServer(
        ServerConfig(port=0, session=SessionConfig(**cfg), shutdown_timeout=3.0),  # type: ignore[arg-type]
        StaticAuthenticator(ACCOUNTS),
        handler,
    )


class Harness:
    def __init__(self, server: SmppServer, nursery: trio.Nursery) -> None:
        self.server = server
        self.nursery = nursery
        self.n = 0

    def connect(self) -> SansIoPeer:
        ours, theirs = trio.testing.memory_stream_pair()
        self.n += 1
        self.nursery.start_soon(self.server.serve_stream, theirs, f"mem{self.n}")
        return SansIoPeer(ours, Role.ESME)

    async def bound(self, kind: str = "trx", system_id: str = "acme", password: str = "secret") -> SansIoPeer:
        peer = self.connect()
        resp = await peer.bind(kind, system_id, password)
        assert resp.command_status == 0
        return peer


@pytest.fixture
async def harness() -> AsyncIterator[Harness]:
    async with trio.open_nursery() as nursery:
        yield Harness(make_server(), nursery)
        nursery.cancel_scope.cancel()


async def test_bind_kinds_and_submit(harness: Harness) -> None:
    for kind, state in (
        ("tx", SessionState.BOUND_TX),
        ("rx", SessionState.BOUND_RX),
        ("trx", SessionState.BOUND_TRX),
    ):
        peer = harness.connect()
        resp = await peer.bind(kind, "acme", "secret")
        assert resp.command_status == 0
        assert resp.system_id == "catalyst"  # type: ignore[attr-defined]
        assert peer.conn.state is state
    assert len(harness.server.bound_sessions("acme")) == 3
    assert {s.bind_type for s in harness.server.receivers("acme")} == {
        BindType.RECEIVER,
        BindType.TRANSCEIVER,
    }
    peer = await harness.bound("tx")
    r1 = await peer.request(SubmitSm(source_addr="1", destination_addr="2", short_message=b"hi"))
    r2 = await peer.request(SubmitSm(source_addr="1", destination_addr="2", short_message=b"ho"))
    assert r1.command_status == 0 and r2.command_status == 0
    assert r1.message_id and r1.message_id != r2.message_id  # type: ignore[attr-defined]
    q = await peer.request(QuerySm(message_id=r1.message_id))  # type: ignore[attr-defined]
    assert q.command_status == 0 and q.message_id == r1.message_id  # type: ignore[attr-defined]


async def test_bind_refusals(harness: Harness) -> None:
    peer = harness.connect()
    assert (await peer.bind("trx", "nobody", "x")).command_status == S.ESME_RINVSYSID
    # the session is OPEN again: a wrong password next, then the right one
    assert (await peer.bind("trx", "acme", "wrong")).command_status == S.ESME_RINVPASWD
    assert (await peer.bind("trx", "acme", "secret")).command_status == 0
    # bind while bound: ESME_RALYBND (sent outside the peer core's state machine)
    await peer.raw_request(BindTransmitter(system_id="acme", password="secret"), seq=77)
    ev = await peer.expect(UnexpectedResponse)
    assert ev.pdu.command_status == S.ESME_RALYBND and ev.pdu.sequence_number == 77  # type: ignore[attr-defined]
    # still bound and working
    assert (await peer.request(SubmitSm(destination_addr="1"))).command_status == 0


async def test_submit_before_bind_is_refused(harness: Harness) -> None:
    peer = harness.connect()
    await peer.raw_request(SubmitSm(destination_addr="1", short_message=b"x"), seq=5)
    ev = await peer.expect(UnexpectedResponse)
    assert ev.pdu.command_status == S.ESME_RINVBNDSTS  # type: ignore[attr-defined]
    assert (await peer.bind("tx", "acme", "secret")).command_status == 0


async def test_max_binds_gives_bindfail_and_frees_on_close(harness: Harness) -> None:
    first = await harness.bound("tx", "solo", "pw")
    second = harness.connect()
    assert (await second.bind("rx", "solo", "pw")).command_status == S.ESME_RBINDFAIL
    # the first unbinds: the slot is free again
    assert isinstance(await first.request(Unbind()), UnbindResp)
    await first.expect_closed()
    with trio.fail_after(1):
        while harness.server.bound_sessions("solo"):
            await trio.sleep(0.01)
    assert (await second.bind("rx", "solo", "pw")).command_status == 0


async def test_bind_timeout_closes(harness: Harness, autojump_clock: trio.testing.MockClock) -> None:
    peer = harness.connect()
    t0 = trio.current_time()
    closed = await peer.expect_closed()
    assert closed.reason is CloseReason.PEER_CLOSED
    assert 5.0 <= trio.current_time() - t0 < 5.5
    # a session that binds in time is not closed
    other = harness.connect()
    await trio.sleep(4)
    assert (await other.bind("trx", "acme", "secret")).command_status == 0
    await trio.sleep(10)
    assert other.conn.state is SessionState.BOUND_TRX and not other.eof


async def test_throttle_answers_rthrottled_and_recovers(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(make_server(), nursery)
        peer = await h.bound("tx", "slow", "pw")
        seqs = [await peer.send(SubmitSm(destination_addr="1", short_message=b"x")) for _ in range(8)]
        statuses = {}
        for _ in seqs:
            ev = await peer.expect(ResponseReceived)
            statuses[ev.pdu.sequence_number] = ev.pdu.command_status  # type: ignore[attr-defined]
        # burst 5 at once, the rest throttled -- and the session stays up
        assert [statuses[s] for s in seqs] == [0] * 5 + [S.ESME_RTHROTTLED] * 3
        assert h.server.stats_throttled == 3
        await trio.sleep(0.2)  # 10/s: two tokens back
        assert (await peer.request(SubmitSm(destination_addr="1"))).command_status == 0
        assert (await peer.request(SubmitSm(destination_addr="1"))).command_status == 0
        assert (await peer.request(SubmitSm(destination_addr="1"))).command_status == S.ESME_RTHROTTLED
        nursery.cancel_scope.cancel()


async def test_enquire_link_from_peer_is_answered_in_any_state(harness: Harness) -> None:
    peer = harness.connect()
    assert isinstance(await peer.request(EnquireLink()), EnquireLinkResp)  # before the bind
    assert (await peer.bind("trx", "acme", "secret")).command_status == 0
    assert isinstance(await peer.request(EnquireLink()), EnquireLinkResp)


async def test_server_enquire_link_then_dead_link(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(make_server(enquire_link_interval=30.0, response_timeout=10.0), nursery)
        peer = await h.bound()
        session = h.server.bound_sessions("acme")[0]
        # our peer answers enquire_links automatically: after 100 s the session is still up
        events: list[object] = []
        with trio.move_on_after(100):
            await peer.pump(events)  # type: ignore[arg-type]
        assert events == []  # nothing for the application: the cores did it all
        assert session.is_bound
        assert session.conn.in_flight == 0
        # now a peer that stops answering: read raw bytes without answering
        t0 = trio.current_time()
        got = b""
        while True:
            data = await peer.stream.receive_some(65536)
            if not data:
                break
            got += data
        # an enquire_link (command_id 0x15) arrived, went unanswered, and the link was declared dead
        assert got[4:8] == b"\x00\x00\x00\x15"
        assert 30 <= trio.current_time() - t0 <= 41
        assert session.close_reason is CloseReason.ENQUIRE_LINK_TIMEOUT
        nursery.cancel_scope.cancel()


async def test_inactivity_timeout(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(make_server(inactivity_timeout=20.0, enquire_link_interval=None), nursery)
        peer = await h.bound()
        session = h.server.bound_sessions("acme")[0]
        await trio.sleep(15)
        await peer.request(EnquireLink())  # activity resets the clock
        await trio.sleep(15)
        assert session.is_bound
        t0 = trio.current_time()
        await peer.expect_closed()
        assert 4 <= trio.current_time() - t0 <= 6
        assert session.close_reason is CloseReason.INACTIVITY_TIMEOUT
        nursery.cancel_scope.cancel()


async def test_unbind_by_peer_closes(harness: Harness) -> None:
    peer = await harness.bound()
    session = harness.server.bound_sessions("acme")[0]
    assert isinstance(await peer.request(Unbind()), UnbindResp)
    await peer.expect_closed()
    await session.wait_closed()
    assert session.close_reason is CloseReason.UNBOUND
    assert harness.server.bound_sessions("acme") == []


async def test_deliver_to_receiver_and_window(harness: Harness) -> None:
    server = harness.server
    with pytest.raises(NotBoundError):
        await server.deliver("acme", DeliverSm(destination_addr="1"))
    tx = await harness.bound("tx")
    assert server.receivers("acme") == []
    rx = await harness.bound("rx", "narrow", "pw")
    session = server.receivers("narrow")[0]
    assert session.window_size == 2  # the account's deliver_window
    results: list[int] = []

    async def push(i: int) -> None:
        r = await server.deliver("narrow", DeliverSm(destination_addr=str(i), short_message=b"mo"))
        results.append(r.command_status)

    async with trio.open_nursery() as n:
        for i in range(5):
            n.start_soon(push, i)
        # the peer sees at most 2 deliver_sm before it answers any
        first = [await rx.expect_request(), await rx.expect_request()]
        await trio.sleep(0.05)
        assert rx.conn.next_event() is None
        assert session.in_flight == 2
        pending = first
        answered = 0
        while answered < 5:
            req = pending.pop(0)
            await rx.send(req.make_response(0))
            answered += 1
            if answered <= 3:
                pending.append(await rx.expect_request())
    assert results == [0] * 5
    del tx


async def test_deliver_timeout_is_an_error(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        h = Harness(make_server(response_timeout=10.0), nursery)
        peer = await h.bound("rx")
        t0 = trio.current_time()
        nursery.start_soon(peer.expect_request)  # receives it, never answers
        with pytest.raises(ResponseTimeoutError):
            await h.server.deliver("acme", DeliverSm(destination_addr="1"))
        assert 10 <= trio.current_time() - t0 < 11
        nursery.cancel_scope.cancel()


async def test_handler_reply_forms() -> None:
    held: list[tuple[ServerSession, object]] = []

    async def slow_ok(session: ServerSession, pdu: object) -> Reply:
        await trio.sleep(0.01)
        return pdu.make_response(0, message_id="async-1")  # type: ignore[attr-defined]

    def handler(session: ServerSession, pdu: SubmitSm) -> object:
        text = pdu.short_message
        if text == b"status":
            return S.ESME_RINVDSTADR
        if text == b"none":
            return None
        if text == b"boom":
            raise RuntimeError("handler bug")
        if text == b"later":
            held.append((session, pdu))
            return DEFERRED
        if text == b"async":
            return slow_ok(session, pdu)
        return pdu.make_response(0, message_id="pdu-1")

    async with trio.open_nursery() as nursery:
        h = Harness(make_server(handler), nursery)  # type: ignore[arg-type]
        peer = await h.bound("tx")

        async def submit(text: bytes) -> object:
            return await peer.request(SubmitSm(destination_addr="1", short_message=text))

        assert (await submit(b"pdu")).message_id == "pdu-1"  # type: ignore[attr-defined]
        assert (await submit(b"status")).command_status == S.ESME_RINVDSTADR  # type: ignore[attr-defined]
        assert (await submit(b"none")).command_status == 0  # type: ignore[attr-defined]
        assert (await submit(b"boom")).command_status == S.ESME_RSYSERR  # type: ignore[attr-defined]
        assert (await submit(b"async")).message_id == "async-1"  # type: ignore[attr-defined]
        seq = await peer.send(SubmitSm(destination_addr="1", short_message=b"later"))
        await trio.sleep(0.05)
        assert held and peer.conn.next_event() is None
        session, req = held[0]
        session.respond(req, req.make_response(0, message_id="late-1"))  # type: ignore[attr-defined]
        ev = await peer.expect(ResponseReceived)
        assert ev.pdu.sequence_number == seq and ev.pdu.message_id == "late-1"  # type: ignore[attr-defined]
        nursery.cancel_scope.cancel()


async def test_graceful_shutdown_unbinds_and_waits() -> None:
    async with trio.open_nursery() as nursery:
        server = make_server()
        h = Harness(server, nursery)
        a = await h.bound("trx")
        b = await h.bound("rx")
        # a deliver_sm in flight toward b when the shutdown begins
        delivered: list[int] = []

        async def push() -> None:
            s = next(x for x in server.receivers("acme") if x.bind_type is BindType.RECEIVER)
            delivered.append((await s.request(DeliverSm(destination_addr="9"))).command_status)

        nursery.start_soon(push)
        req = await b.expect_request()
        async with trio.open_nursery() as n:
            n.start_soon(server.shutdown)
            # both peers get an unbind (their cores answer it); b answers the deliver_sm after that,
            # and the server still takes that late response before closing
            ua = await a.expect(Unbound)
            assert ua.by_peer  # type: ignore[attr-defined]
            ub = await b.expect(Unbound)
            assert ub.by_peer  # type: ignore[attr-defined]
            await trio.sleep(0.05)
            await b.send(req.make_response(0))
            await a.expect_closed()
            await b.expect_closed()
        assert delivered == [0]
        assert server.sessions() == []
        # new connections are refused once shut down
        c = h.connect()
        await c.expect_closed()
        nursery.cancel_scope.cancel()


async def test_graceful_shutdown_is_bounded(autojump_clock: trio.testing.MockClock) -> None:
    async with trio.open_nursery() as nursery:
        server = make_server()
        h = Harness(server, nursery)
        peer = await h.bound()
        t0 = trio.current_time()
        await server.shutdown(timeout=3.0)  # the peer never answers the unbind
        assert trio.current_time() - t0 <= 3.5
        assert server.sessions() == []
        got = await peer.stream.receive_some(65536)
        assert got[4:8] == b"\x00\x00\x00\x06"  # it did get the unbind
        nursery.cancel_scope.cancel()


async def test_data_sm_and_bound_event_counts(harness: Harness) -> None:
    seen: list[str] = []
    harness.server.on_bound = lambda s: seen.append(s.system_id)
    peer = await harness.bound("trx")
    r = await peer.request(DataSm(destination_addr="1"))
    assert r.command_status == 0 and r.message_id  # type: ignore[attr-defined]
    assert seen == ["acme"]
