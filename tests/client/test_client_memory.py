"""The client (ESME role) over in-memory streams, with our sans-IO core as the SMSC and a mock clock."""

from __future__ import annotations

import itertools
import random
import struct
from collections.abc import AsyncIterator

import pytest
import trio
import trio.testing

from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.protocol.codec import encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.events import BindFailed, Bound, Unbound
from catalyst_smpp.protocol.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    EnquireLinkResp,
    Pdu,
    SubmitSm,
)
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.transport import Reply, ResponseTimeoutError, SmppSession
from catalyst_smpp.util.backoff import Backoff
from tests.transport.peer import SansIoPeer

S = CommandStatus


class FakeSmsc:
    """Hands the client one end of a memory stream per connect; the test plays the SMSC on the other."""

    def __init__(self) -> None:
        self.send, self.recv = trio.open_memory_channel[SansIoPeer](100)
        self.attempts: list[float] = []
        self.refuse = 0  # refuse this many connects first

    async def connect(self) -> trio.abc.Stream:
        self.attempts.append(trio.current_time())
        if self.refuse:
            self.refuse -= 1
            raise OSError("connection refused")
        ours, theirs = trio.testing.memory_stream_pair()
        await self.send.send(SansIoPeer(theirs, Role.SMSC))
        return ours

    async def accept(self, status: int = 0) -> SansIoPeer:
        """The next connection, its bind answered with ``status``."""
        with trio.fail_after(3600):
            peer = await self.recv.receive()
        bind = await peer.expect_request()
        assert isinstance(bind, (BindTransmitter, BindReceiver, BindTransceiver))
        assert (bind.system_id, bind.password) == ("esme", "pw")
        await peer.send(bind.make_response(status, system_id="fake"))
        await peer.expect(Bound if status == 0 else BindFailed)
        return peer


def config(**kw: object) -> ClientConfig:
    session = kw.pop("session", None) or SessionConfig(
        window_size=10, response_timeout=10.0, enquire_link_interval=None, bind_timeout=None
    )
    base: dict[str, object] = dict(
        reconnect_initial=1.0, reconnect_max=8.0, reconnect_jitter=0.5, throttle_delay=0.5, throttle_retries=3
    )
    base.update(kw)
    return ClientConfig("smsc.invalid", 2775, "esme", "pw", session=session, **base)  # type: ignore[arg-type]


class Env:
    def __init__(self, nursery: trio.Nursery) -> None:
        self.nursery = nursery
        self.smsc = FakeSmsc()

    async def start(self, cfg: ClientConfig, handler: object = None, seed: int = 1) -> SmppClient:
        client = SmppClient(cfg, handler, rng=random.Random(seed), connect=self.smsc.connect)  # type: ignore[arg-type]
        await self.nursery.start(client.run)
        return client


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    async with trio.open_nursery() as nursery:
        yield Env(nursery)
        nursery.cancel_scope.cancel()


def submit(text: bytes = b"hi") -> SubmitSm:
    return SubmitSm(source_addr="1", destination_addr="2", short_message=text)


async def test_bind_request_and_close(env: Env) -> None:
    client = await env.start(config())
    peer = await env.smsc.accept()
    await client.wait_bound()
    assert client.bound_count == 1
    result: list[Pdu] = []

    async def go() -> None:
        result.append(await client.request(submit()))

    env.nursery.start_soon(go)
    req = await peer.expect_request()
    await peer.send(req.make_response(0, message_id="abc"))
    with trio.fail_after(1):
        while not result:
            await trio.sleep(0.001)
    assert result[0].command_status == 0 and result[0].message_id == "abc"  # type: ignore[attr-defined]
    async with trio.open_nursery() as n:
        n.start_soon(client.aclose)
        ev = await peer.expect(Unbound)
        assert ev.by_peer  # type: ignore[attr-defined]
        await peer.expect_closed()
    assert client.closed and client.bound_count == 0


async def test_window_limits_requests_in_flight(env: Env) -> None:
    cfg = config(
        session=SessionConfig(
            window_size=3, response_timeout=10, enquire_link_interval=None, bind_timeout=None
        )
    )
    client = await env.start(cfg)
    peer = await env.smsc.accept()
    done: list[int] = []

    async def go(i: int) -> None:
        r = await client.request(submit(str(i).encode()))
        done.append(r.command_status)

    for i in range(8):
        env.nursery.start_soon(go, i)
    held = [await peer.expect_request() for _ in range(3)]
    await trio.sleep(0.05)
    assert peer.conn.next_event() is None  # exactly the window, no more
    assert client.sessions()[0].in_flight == 3
    for _ in range(5):
        await peer.send(held.pop(0).make_response(0, message_id="x"))
        held.append(await peer.expect_request())  # one answer frees one slot
    for req in held:
        await peer.send(req.make_response(0, message_id="x"))
    with trio.fail_after(1):
        while len(done) < 8:
            await trio.sleep(0.001)
    assert done == [0] * 8


async def test_tps_limit(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    client = await env.start(config(tps=10.0, tps_burst=1.0))
    peer = await env.smsc.accept()
    arrivals: list[float] = []

    async def answer() -> None:
        while True:
            req = await peer.expect_request()
            arrivals.append(trio.current_time())
            await peer.send(req.make_response(0, message_id="m"))

    env.nursery.start_soon(answer)
    async with trio.open_nursery() as n:
        for _ in range(21):
            n.start_soon(client.request, submit())
    assert len(arrivals) == 21
    span = arrivals[-1] - arrivals[0]
    assert 1.95 <= span <= 2.1  # 20 gaps at 10/s
    assert min(b - a for a, b in itertools.pairwise(arrivals)) >= 0.099


async def test_response_timeout_is_an_error(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    client = await env.start(config())
    peer = await env.smsc.accept()
    env.nursery.start_soon(peer.expect_request)  # never answered
    t0 = trio.current_time()
    with pytest.raises(ResponseTimeoutError) as info:
        await client.request(submit(b"lost"))
    assert info.value.request.short_message == b"lost"  # type: ignore[attr-defined]
    assert 10 <= trio.current_time() - t0 < 10.5
    # the session is still usable
    env.nursery.start_soon(lambda: _answer_one(peer))
    assert (await client.request(submit())).command_status == 0


async def _answer_one(peer: SansIoPeer) -> None:
    req = await peer.expect_request()
    await peer.send(req.make_response(0, message_id="ok"))


async def test_throttled_is_retried_with_backoff(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    client = await env.start(config(throttle_delay=0.5, throttle_retries=3))
    peer = await env.smsc.accept()
    seen: list[tuple[float, bytes]] = []
    answers = [S.ESME_RTHROTTLED, S.ESME_RMSGQFUL, 0]

    async def smsc() -> None:
        for status in answers:
            req = await peer.expect_request()
            seen.append((trio.current_time(), req.short_message))  # type: ignore[attr-defined]
            await peer.send(req.make_response(status, message_id="m" if status == 0 else ""))

    env.nursery.start_soon(smsc)
    r = await client.request(submit(b"same"))
    assert r.command_status == 0
    assert [m for _, m in seen] == [b"same"] * 3  # the same PDU each time
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(seen)]
    assert 0.5 <= gaps[0] < 0.6 and 1.0 <= gaps[1] < 1.1  # growing delay
    assert client.stats.throttled_retries == 2


async def test_throttle_answers_are_logged_with_counts_not_one_line_each(
    env: Env, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    # an operator throttling every submit for a while must not write a log line per answer
    client = await env.start(config(throttle_delay=0.01, throttle_retries=1000))
    peer = await env.smsc.accept()

    async def smsc() -> None:
        while True:
            req = await peer.expect_request()
            # throttled for the first 15 s of (mock) time, then accepted
            status = S.ESME_RTHROTTLED if trio.current_time() < 15 else 0
            await peer.send(req.make_response(status, message_id="m" if status == 0 else ""))

    env.nursery.start_soon(smsc)
    caplog.set_level("INFO", logger="catalyst_smpp")
    statuses: list[int] = []

    async def send(i: int) -> None:
        statuses.append((await client.request(submit(b"m%d" % i))).command_status)

    async with trio.open_nursery() as n:
        for i in range(50):
            n.start_soon(send, i)
    assert statuses == [0] * 50
    retries = client.stats.throttled_retries
    # many throttle answers (how many depends on which requests trio schedules into the window first:
    # 199 to 280 were seen over runs)...
    assert retries >= 150
    lines = [rec.getMessage() for rec in caplog.records if "peer asks to slow down" in rec.getMessage()]
    assert 1 <= len(lines) <= 3  # ...but one line per 10 s, carrying the counts
    assert "slow down: 1 x 0x00000058;" in lines[0]  # the first answer is logged at once
    logged = [int(line.split("down: ", 1)[1].split(" x ")[0]) for line in lines]
    assert sum(logged) <= retries and max(logged) > 10


async def test_throttle_retries_are_bounded(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    client = await env.start(config(throttle_delay=0.1, throttle_retries=2))
    peer = await env.smsc.accept()
    count = 0

    async def smsc() -> None:
        nonlocal count
        while True:
            req = await peer.expect_request()
            count += 1
            await peer.send(req.make_response(S.ESME_RTHROTTLED))

    env.nursery.start_soon(smsc)
    r = await client.request(submit())
    assert r.command_status == S.ESME_RTHROTTLED
    assert count == 3


async def test_deliver_sm_handler_decides_status(env: Env) -> None:
    got: list[bytes] = []

    def handler(session: SmppSession, pdu: Pdu) -> Reply:
        assert isinstance(pdu, (DeliverSm, DataSm))
        if isinstance(pdu, DataSm):
            return None
        got.append(pdu.short_message)
        return S.ESME_RX_T_APPN if pdu.short_message == b"refuse" else 0

    await env.start(config(), handler)
    peer = await env.smsc.accept()
    statuses = []
    for text in (b"one", b"refuse"):
        r = await peer.request(DeliverSm(source_addr="1", destination_addr="2", short_message=text))
        statuses.append(r.command_status)
    assert (await peer.request(DataSm(source_addr="1", destination_addr="2"))).command_status == 0
    assert statuses == [0, S.ESME_RX_T_APPN]
    assert got == [b"one", b"refuse"]


async def test_pdu_in_the_same_segment_as_bind_resp(env: Env) -> None:
    got: list[bytes] = []
    await env.start(config(), lambda s, p: got.append(p.short_message))
    with trio.fail_after(1):
        peer = await env.smsc.recv.receive()
    bind = await peer.expect_request()
    deliver = encode_pdu(DeliverSm(short_message=b"early", sequence_number=1))
    await peer.send_raw(encode_pdu(bind.make_response(0)) + deliver)
    with trio.fail_after(1):
        data = await peer.stream.receive_some(65536)
    _length, cid, status, seq = struct.unpack(">IIII", data[:16])
    assert (cid, status, seq) == (CommandId.deliver_sm_resp, 0, 1)
    assert got == [b"early"]


async def test_reconnect_with_backoff_and_jitter(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    env.smsc.refuse = 3
    client = await env.start(config(), seed=42)
    peer = await env.smsc.accept()
    await client.wait_bound()
    # the delays follow util.backoff with the same seeded generator
    ref = Backoff(initial=1.0, maximum=8.0, multiplier=2.0, jitter=0.5, rng=random.Random(42))
    expected = [ref.next_delay() for _ in range(3)]
    a = env.smsc.attempts
    gaps = [b - x for x, b in itertools.pairwise(a)]
    assert gaps == pytest.approx(expected, abs=1e-6)
    assert 0.5 <= gaps[0] <= 1.0 and 1.0 <= gaps[1] <= 2.0 and 2.0 <= gaps[2] <= 4.0
    # losing the bound connection: a new attempt after the first (reset) delay
    lost_at = trio.current_time()
    await peer.stream.aclose()
    peer2 = await env.smsc.accept()
    assert 0.5 <= env.smsc.attempts[-1] - lost_at <= 1.0
    await client.wait_bound()
    assert client.stats.reconnects == 4 and client.stats.binds == 2
    # a request in the new session works
    env.nursery.start_soon(lambda: _answer_one(peer2))
    assert (await client.request(submit())).command_status == 0


async def test_bind_failure_is_retried(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    client = await env.start(config())
    await env.smsc.accept(S.ESME_RINVPASWD)
    await env.smsc.accept(S.ESME_RINVPASWD)
    await env.smsc.accept(0)
    await client.wait_bound()
    assert client.stats.bind_failures == 2 and client.stats.binds == 1
    assert len(env.smsc.attempts) == 3


async def test_enquire_link_keepalive_and_dead_link(env: Env, autojump_clock: trio.testing.MockClock) -> None:
    cfg = config(
        session=SessionConfig(
            window_size=10, response_timeout=5.0, enquire_link_interval=10.0, bind_timeout=None
        )
    )
    client = await env.start(cfg)
    peer = await env.smsc.accept()
    t0 = trio.current_time()
    for _ in range(3):  # answered by hand, so the test sees each one
        data = await peer.stream.receive_some(65536)
        _length, cid, _status, seq = struct.unpack(">IIII", data[:16])
        assert cid == CommandId.enquire_link
        await peer.send_raw(encode_pdu(EnquireLinkResp(sequence_number=seq)))
    assert 30 <= trio.current_time() - t0 < 31
    assert client.bound_count == 1
    # stop answering: after response_timeout the link is dead, the client reconnects
    data = await peer.stream.receive_some(65536)
    assert struct.unpack(">IIII", data[:16])[1] == CommandId.enquire_link
    await env.smsc.accept()
    await client.wait_bound()
    assert client.stats.binds == 2


async def test_several_binds_tx_and_rx(env: Env) -> None:
    got: list[bytes] = []
    client = await env.start(
        config(binds=(BindType.TRANSMITTER, BindType.TRANSMITTER, BindType.RECEIVER)),
        lambda s, p: got.append(p.short_message),
    )
    peers = [await env.smsc.accept() for _ in range(3)]
    await client.wait_bound(3)
    kinds = sorted(
        type(p.conn.bind_request).__name__ if p.conn.bind_request else p.conn.state.name for p in peers
    )
    assert kinds == ["BOUND_RX", "BOUND_TX", "BOUND_TX"]
    rx = next(p for p in peers if p.conn.state.name == "BOUND_RX")
    txs = [p for p in peers if p.conn.state.name == "BOUND_TX"]
    counts = {id(p): 0 for p in txs}

    async def serve(p: SansIoPeer) -> None:
        while True:
            req = await p.expect_request()
            counts[id(p)] += 1
            await p.send(req.make_response(0, message_id="m"))

    for p in txs:
        env.nursery.start_soon(serve, p)
    async with trio.open_nursery() as n:
        for _ in range(10):
            n.start_soon(client.request, submit())
    assert sorted(counts.values()) == [5, 5]  # round robin over the transmitters, none on the receiver
    r = await rx.request(DeliverSm(short_message=b"mo"))
    assert r.command_status == 0 and got == [b"mo"]
