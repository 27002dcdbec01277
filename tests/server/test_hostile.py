"""Hostile input on real sockets: each case gets the right status or a clean close, and a witness
session on the same server keeps working throughout (checked in the same test)."""

from __future__ import annotations

import socket
import struct
from collections.abc import AsyncIterator
from typing import Any

import pytest
import trio

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.pdu import (
    BindTransceiver,
    BindTransmitter,
    EnquireLink,
    GenericNack,
    Pdu,
    SubmitSm,
)
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.server import Account, ServerConfig, ServerSession, SmppServer, StaticAuthenticator
from catalyst_smpp.transport.session import Reply
from tests.transport.peer import SansIoPeer

S = CommandStatus
LIMIT = 32 * 1024


class Env:
    def __init__(self, server: SmppServer) -> None:
        self.server = server
        self.port = server.ports[0]
        self.witness: SansIoPeer | None = None
        self.streams: list[trio.abc.Stream] = []

    async def raw(self) -> trio.SocketStream:
        s = await trio.open_tcp_stream("127.0.0.1", self.port)
        self.streams.append(s)
        return s

    async def check_witness(self) -> None:
        """The witness session submits and gets an OK answer."""
        assert self.witness is not None
        with trio.fail_after(5):
            r = await self.witness.request(SubmitSm(destination_addr="1", short_message=b"still here"))
        assert r.command_status == 0

    async def wait_sessions(self, n: int) -> None:
        with trio.fail_after(5):
            while len(self.server.sessions()) != n:
                await trio.sleep(0.01)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    cfg = ServerConfig(
        port=0,
        session=SessionConfig(window_size=10, response_timeout=10, enquire_link_interval=30, bind_timeout=10),
        max_send_buffer=LIMIT,
    )
    server = SmppServer(
        cfg,
        StaticAuthenticator(
            [Account("acme", "pw"), Account("slow", "pw", throttle_rate=100, throttle_burst=50)]
        ),
    )
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        e = Env(server)
        e.witness = SansIoPeer(await e.raw(), Role.ESME)
        assert (await e.witness.bind("trx", "acme", "pw")).command_status == 0
        await e.check_witness()
        try:
            yield e
        finally:
            for st in e.streams:
                await trio.aclose_forcefully(st)
            nursery.cancel_scope.cancel()


async def read_all(stream: trio.abc.ReceiveStream, limit: float = 5) -> bytes:
    out = b""
    with trio.fail_after(limit):
        while True:
            try:
                data = await stream.receive_some(65536)
            except trio.BrokenResourceError:
                break
            if not data:
                break
            out += data
    return out


def header(data: bytes, off: int = 0) -> tuple[int, int, int, int]:
    return struct.unpack_from(">IIII", data, off)


async def test_garbage_bytes_get_nack_and_close(env: Env) -> None:
    s = await env.raw()
    await s.send_all(b"\xde\xad\xbe\xef" * 50)
    got = await read_all(s)
    length, cid, status, _seq = header(got)
    assert (length, cid, status) == (16, CommandId.generic_nack, S.ESME_RINVCMDLEN)
    assert len(got) == 16
    await s.aclose()
    await env.check_witness()
    await env.wait_sessions(1)


async def test_oversized_command_length(env: Env) -> None:
    s = await env.raw()
    await s.send_all(struct.pack(">IIII", 10_000_000, CommandId.submit_sm, 0, 1) + b"\x00" * 100)
    got = await read_all(s)
    pdu = decode_pdu(got)
    assert isinstance(pdu, GenericNack) and pdu.command_status == S.ESME_RINVCMDLEN
    await env.check_witness()
    await env.wait_sessions(1)


async def test_truncated_pdu_then_close(env: Env) -> None:
    s = await env.raw()
    wire = encode_pdu(BindTransmitter(system_id="acme", password="pw", sequence_number=1))
    await s.send_all(wire[:-3])
    await env.wait_sessions(2)
    await s.send_eof()
    assert await read_all(s) == b""  # nothing to answer; closed cleanly
    await env.wait_sessions(1)
    await env.check_witness()


async def test_submit_before_bind_and_second_bind(env: Env) -> None:
    s = await env.raw()
    await s.send_all(encode_pdu(SubmitSm(destination_addr="1", sequence_number=7)))
    with trio.fail_after(5):
        r = decode_pdu(await s.receive_some(65536))
    assert (r.command_id, r.command_status, r.sequence_number) == (
        CommandId.submit_sm_resp,
        S.ESME_RINVBNDSTS,
        7,
    )
    await env.check_witness()
    await s.send_all(encode_pdu(BindTransceiver(system_id="acme", password="pw", sequence_number=8)))
    with trio.fail_after(5):
        r = decode_pdu(await s.receive_some(65536))
    assert r.command_status == 0
    await s.send_all(encode_pdu(BindTransceiver(system_id="acme", password="pw", sequence_number=9)))
    with trio.fail_after(5):
        r = decode_pdu(await s.receive_some(65536))
    assert (r.command_id, r.command_status) == (CommandId.bind_transceiver_resp, S.ESME_RALYBND)
    await env.check_witness()
    await s.aclose()


async def test_flood_ignoring_the_window(env: Env) -> None:
    """2000 submits sent at once to a throttled account: every one answered, burst OK, the rest throttled."""
    s = await env.raw()
    await s.send_all(encode_pdu(BindTransmitter(system_id="slow", password="pw", sequence_number=1)))
    with trio.fail_after(5):
        assert decode_pdu(await s.receive_some(65536)).command_status == 0
    n = 2000
    flood = b"".join(
        encode_pdu(SubmitSm(destination_addr="1", short_message=b"x" * 20, sequence_number=i + 2))
        for i in range(n)
    )
    statuses: dict[int, int] = {}
    buf = b""

    async def send() -> None:
        await s.send_all(flood)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(send)
        with trio.fail_after(10):
            while len(statuses) < n:
                buf += await s.receive_some(65536)
                off = 0
                while len(buf) - off >= 16:
                    length = struct.unpack_from(">I", buf, off)[0]
                    if len(buf) - off < length:
                        break
                    r = decode_pdu(buf, off)
                    statuses[r.sequence_number] = r.command_status
                    off += length
                buf = buf[off:]
                await env.check_witness()
    assert set(statuses) == set(range(2, n + 2))
    ok = sum(1 for v in statuses.values() if v == 0)
    assert set(statuses.values()) == {0, S.ESME_RTHROTTLED}
    assert 50 <= ok < 1000  # the burst plus what 100/s refills while the flood lasts
    await env.check_witness()
    await s.aclose()


async def test_client_that_never_reads(env: Env) -> None:
    """A bound peer that writes enquire_links and never reads: our buffer stays bounded, the peer
    stalls in TCP, the witness keeps working; once it reads, every answer is there."""
    sock = trio.socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 4096)
    await sock.connect(("127.0.0.1", env.port))
    s = trio.SocketStream(sock)
    env.streams.append(s)
    await s.send_all(encode_pdu(BindTransmitter(system_id="acme", password="pw", sequence_number=1)))
    with trio.fail_after(5):
        assert decode_pdu(await s.receive_some(65536)).command_status == 0
    session: ServerSession = next(
        x for x in env.server.sessions() if x.bind_type and x.peer.endswith(str(sock.getsockname()[1]))
    )
    one = encode_pdu(EnquireLink(sequence_number=5))
    chunk = one * 4096  # 64 KiB
    chunks = 32  # 2 MiB, far more than the socket buffers and our limit together
    progress = 0

    async def writer() -> None:
        nonlocal progress
        for _ in range(chunks):
            await s.send_all(chunk)
            progress += 1

    async with trio.open_nursery() as nursery:
        nursery.start_soon(writer)
        # wait until the writer stalls (no progress for 0.5 s)
        last = -1
        with trio.fail_after(10):
            while progress != last:
                last = progress
                await trio.sleep(0.5)
        assert progress < chunks, "the server never stopped reading"
        await env.check_witness()
        # bounded: the limit plus what one read (64 KiB of requests) can produce
        assert LIMIT <= session.max_buffered_bytes <= LIMIT + 64 * 1024 + 16
        assert session.is_bound
        # now it reads: every enquire_link gets its answer, nothing is lost
        expected = chunks * len(chunk)
        got = 0
        with trio.fail_after(15):
            while got < expected:
                got += len(await s.receive_some(1 << 20))
        assert got == expected
    await env.check_witness()
    await s.aclose()


async def test_connection_limits_refuse_at_accept(caplog: pytest.LogCaptureFixture) -> None:
    """Over max_connections_per_address (from one source address) or max_connections (in total) a
    connection is closed at accept, before any PDU is read; the refusals are counted, logged at a bounded
    rate, and the sessions already open keep working."""
    refused: list[str] = []
    cfg = ServerConfig(
        port=0,
        session=SessionConfig(window_size=10, response_timeout=10, enquire_link_interval=30, bind_timeout=10),
        max_connections=4,
        max_connections_per_address=2,
    )
    server = SmppServer(cfg, StaticAuthenticator([Account("acme", "pw")]), on_refused=refused.append)
    opened: list[trio.SocketStream] = []

    async def connect(source: str) -> trio.SocketStream:
        s = await trio.open_tcp_stream("127.0.0.1", server.ports[0], local_address=source)
        opened.append(s)
        return s

    async def is_refused(stream: trio.SocketStream) -> bool:
        """Closed by the server without a byte: a bind sent now gets no answer, only EOF (or a reset)."""
        try:
            await stream.send_all(encode_pdu(BindTransceiver(system_id="acme", password="pw")))
        except trio.BrokenResourceError:
            return True
        return await read_all(stream) == b""

    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        e = Env(server)
        e.witness = SansIoPeer(await connect("127.0.0.2"), Role.ESME)
        assert (await e.witness.bind("trx", "acme", "pw")).command_status == 0
        await connect("127.0.0.2")  # the address's second connection: allowed
        await e.wait_sessions(2)
        for _ in range(3):  # its third, fourth, fifth: refused at accept
            assert await is_refused(await connect("127.0.0.2"))
        # other addresses may still connect, up to the total of four
        other = SansIoPeer(await connect("127.0.0.3"), Role.ESME)
        assert (await other.bind("trx", "acme", "pw")).command_status == 0
        await connect("127.0.0.4")
        await e.wait_sessions(4)
        assert await is_refused(await connect("127.0.0.5"))
        assert refused == ["per_address"] * 3 + ["total"]
        assert server.stats_refused == {"per_address": 3, "total": 1}
        # one line per reason within the interval, however many were refused
        lines = [r for r in caplog.records if "refused at accept" in r.getMessage()]
        assert len(lines) == 2
        await e.check_witness()
        # a closed connection frees its place
        await trio.aclose_forcefully(opened[1])
        await e.wait_sessions(3)
        again = SansIoPeer(await connect("127.0.0.2"), Role.ESME)
        assert (await again.bind("trx", "acme", "pw")).command_status == 0
        for s in opened:
            await trio.aclose_forcefully(s)
        nursery.cancel_scope.cancel()  # the server serves until cancelled


def _pdus(data: bytes) -> list[Any]:
    out, off = [], 0
    while off < len(data):
        out.append(decode_pdu(data[off : off + header(data, off)[0]]))
        off += header(data, off)[0]
    return out


async def _answer_later(session: ServerSession, pdu: Pdu) -> Reply:
    await trio.sleep(0.05)  # an answer that comes after the read (the gateway answers after its publish)
    return pdu.make_response(0, message_id="later")


@pytest.mark.parametrize("answer", ["inline", "deferred"])
async def test_valid_submit_then_garbage_in_one_send_is_answered_before_the_nack(answer: str) -> None:
    handler = None if answer == "inline" else _answer_later
    cfg = ServerConfig(port=0, session=SessionConfig(response_timeout=10, bind_timeout=10))
    server = SmppServer(cfg, StaticAuthenticator([Account("acme", "pw")]), handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(server.serve)
        s = await trio.open_tcp_stream("127.0.0.1", server.ports[0])
        await s.send_all(encode_pdu(BindTransceiver(system_id="acme", password="pw", sequence_number=1)))
        with trio.fail_after(5):
            bound = b""
            while len(bound) < 16 or len(bound) < header(bound)[0]:
                bound += await s.receive_some(4096)
        assert header(bound)[2] == 0
        submit = encode_pdu(SubmitSm(destination_addr="1", short_message=b"hello", sequence_number=7))
        await s.send_all(
            submit + b"\xde\xad\xbe\xef" * 8
        )  # one send: the PDU, then octets that cannot be framed
        resp, nack = _pdus(await read_all(s))  # ... then EOF
        assert (resp.command_id, resp.sequence_number, resp.command_status) == (
            CommandId.submit_sm_resp,
            7,
            0,
        )
        assert resp.message_id  # type: ignore[attr-defined]
        assert isinstance(nack, GenericNack) and nack.command_status == S.ESME_RINVCMDLEN
        await s.aclose()
        nursery.cancel_scope.cancel()
