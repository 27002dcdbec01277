"""Per-PDU CPU cost of the shared session layer (sans-IO core and trio driver), one command::

    .venv/bin/python bench/session_core.py               # both parts, 100,000 messages each
    .venv/bin/python bench/session_core.py --count 50000 --repeat 5

``core``: two sans-IO ``SmppConnection`` (ESME and SMSC, bound TRX) pass submit_sm / submit_sm_resp
to each other in windows of 64, no I/O at all.  Each message is four PDU crossings (ESME send, SMSC
receive, SMSC send, ESME receive); the figure is CPU per crossing.  ``codec`` is the floor under
it: the same PDUs through ``encode_pdu`` + ``Framer`` + ``decode_pdu`` + ``make_response`` only.

``transport``: an ``SmppClient`` and an ``SmppServer`` in one trio process over a Unix socket pair,
the client pipelining with ``acquire()`` + ``send_request`` (as the load generator does), the server
answering inline (as the simulator does).  CPU per message covers both sessions, syscalls included.
``deferred``: the same, but the server's handler returns ``DEFERRED`` and a separate task answers what
has accumulated with ``session.respond`` (as the gateway's accept batcher does).

Prints the best of ``--repeat`` runs (CPU time of this process, ``time.process_time``).
"""

from __future__ import annotations

import argparse
import gc
import time
from collections.abc import Callable

import trio

from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.events import RequestReceived, ResponseReceived
from catalyst_smpp.protocol.framing import Framer
from catalyst_smpp.protocol.pdu import BindTransceiver, Pdu, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.server import Account, ServerConfig, SmppServer, StaticAuthenticator
from catalyst_smpp.transport import DEFERRED, Reply, SmppSession

WINDOW = 64


def _submit(i: int) -> SubmitSm:
    return SubmitSm(
        source_addr="CATALYST",
        destination_addr=f"4477009{i % 100000:05d}",
        short_message=b"Benchmark message 0123456789",
    )


def _bound_pair() -> tuple[SmppConnection, SmppConnection]:
    cfg = SessionConfig(window_size=WINDOW, enquire_link_interval=30.0, bind_timeout=30.0)
    esme = SmppConnection(Role.ESME, cfg, now=0.0)
    smsc = SmppConnection(Role.SMSC, cfg, now=0.0)
    esme.send(BindTransceiver(system_id="bench", password="pw"), 0.0)
    smsc.receive_data(esme.data_to_send(), 0.0)
    ev = smsc.next_event()
    assert isinstance(ev, RequestReceived)
    smsc.send(ev.pdu.make_response(0, system_id="smsc"), 0.0)
    while smsc.next_event() is not None:
        pass
    esme.receive_data(smsc.data_to_send(), 0.0)
    while esme.next_event() is not None:
        pass
    return esme, smsc


def bench_core(count: int) -> float:
    """CPU seconds for ``count`` messages through two sans-IO connections."""
    esme, smsc = _bound_pair()
    pdus = [_submit(i) for i in range(count)]
    got = 0
    now = 1.0
    gc.collect()
    t0 = time.process_time()
    i = 0
    while i < count:
        for pdu in pdus[i : i + WINDOW]:
            esme.send(pdu, now)
        i += WINDOW
        smsc.receive_data(esme.data_to_send(), now)
        while (ev := smsc.next_event()) is not None:
            if type(ev) is RequestReceived:
                smsc.send(ev.pdu.make_response(0, message_id="abc"), now)
        esme.receive_data(smsc.data_to_send(), now)
        while (ev := esme.next_event()) is not None:
            if type(ev) is ResponseReceived:
                got += 1
        now += 0.001
    t = time.process_time() - t0
    assert got == count, got
    return t


def bench_codec(count: int) -> float:
    """The same traffic through the codec and framer only (the floor under ``bench_core``)."""
    pdus = [_submit(i) for i in range(count)]
    f1, f2 = Framer(), Framer()
    got = 0
    seq = 0
    gc.collect()
    t0 = time.process_time()
    i = 0
    while i < count:
        out = []
        for pdu in pdus[i : i + WINDOW]:
            seq += 1
            pdu.sequence_number = seq
            out.append(encode_pdu(pdu))
        i += WINDOW
        buf, offs = f1.feed(b"".join(out))
        back = [encode_pdu(decode_pdu(buf, off).make_response(0, message_id="abc")) for off in offs]
        buf, offs = f2.feed(b"".join(back))
        for off in offs:
            decode_pdu(buf, off)
            got += 1
    t = time.process_time() - t0
    assert got == count, got
    return t


async def _transport(count: int, deferred: bool) -> tuple[float, float]:
    pending: list[tuple[SmppSession, Pdu]] = []
    lot = trio.lowlevel.ParkingLot()

    def defer(session: SmppSession, pdu: Pdu) -> Reply:
        pending.append((session, pdu))
        lot.unpark()
        return DEFERRED

    async def responder() -> None:
        while True:
            while not pending:
                await lot.park()
            batch = pending[:]
            pending.clear()
            for session, pdu in batch:
                session.respond(pdu, pdu.make_response(0, message_id="abc"))
            await trio.lowlevel.checkpoint()

    server = SmppServer(
        ServerConfig(port=0, session=SessionConfig(window_size=WINDOW)),
        StaticAuthenticator([Account("bench", "pw")]),
        handler=defer if deferred else None,
    )
    a, b = trio.socket.socketpair()
    server_stream, client_stream = trio.SocketStream(a), trio.SocketStream(b)
    used = False

    async def connect() -> trio.abc.Stream:
        nonlocal used
        assert not used
        used = True
        return client_stream

    client = SmppClient(
        ClientConfig(
            host="memory",
            port=0,
            system_id="bench",
            password="pw",
            session=SessionConfig(window_size=WINDOW, bind_timeout=None),
            reconnect=False,
        ),
        connect=connect,
    )
    pdus = [_submit(i) for i in range(count)]
    done = 0
    finished = trio.Event()

    def on_done(result: Pdu | BaseException) -> None:
        nonlocal done
        if isinstance(result, BaseException):
            raise result
        done += 1
        if done == count:
            finished.set()

    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.serve_stream, server_stream, "memory")
        if deferred:
            nursery.start_soon(responder)
        await nursery.start(client.run)
        await client.wait_bound()
        gc.collect()
        c0, w0 = time.process_time(), time.perf_counter()
        for pdu in pdus:
            session: SmppSession = await client.acquire()
            session.send_request(pdu, on_done)
        await finished.wait()
        cpu, wall = time.process_time() - c0, time.perf_counter() - w0
        await client.aclose()
        await server.shutdown()
        nursery.cancel_scope.cancel()
    return cpu, wall


def bench_transport(count: int, deferred: bool = False) -> tuple[float, float]:
    return trio.run(_transport, count, deferred)


def _best(fn: Callable[[], float], repeat: int) -> float:
    return min(fn() for _ in range(repeat))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--count", type=int, default=100_000, help="messages per run (default 100000)")
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the best is printed")
    parser.add_argument("--only", choices=["core", "codec", "transport", "deferred"])
    args = parser.parse_args()
    n = args.count
    if args.only in (None, "codec"):
        t = _best(lambda: bench_codec(n), args.repeat)
        print(f"codec      {t / n * 1e6:7.2f} us/msg  {t / (4 * n) * 1e6:6.2f} us/PDU  (codec only)")
    if args.only in (None, "core"):
        t = _best(lambda: bench_core(n), args.repeat)
        print(f"core       {t / n * 1e6:7.2f} us/msg  {t / (4 * n) * 1e6:6.2f} us/PDU  (sans-IO, both ends)")
    for name, deferred, what in (
        ("transport", False, "client + server sessions, one process, Unix socket pair"),
        ("deferred", True, "the same, answered by respond() from another task"),
    ):
        if args.only in (None, name):
            runs = [bench_transport(n, deferred) for _ in range(args.repeat)]
            cpu, wall = min(runs)
            print(
                f"{name:10s} {cpu / n * 1e6:7.2f} us/msg  {cpu / (4 * n) * 1e6:6.2f} us/PDU  "
                f"{n / wall:9,.0f} msgs/s  ({what})"
            )


if __name__ == "__main__":
    main()
