"""Third-party ESMEs against our server on real TCP: smpplib (blocking, in a thread) and smpp34's asyncio
client (in a subprocess)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import AsyncIterator
from typing import Any

import pytest
import smpplib.client
import smpplib.consts
import trio

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, QuerySm, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.server import (
    Account,
    BindType,
    ServerConfig,
    ServerSession,
    SmppServer,
    StaticAuthenticator,
    accept_all_handler,
)
from catalyst_smpp.transport import Reply

S = CommandStatus


class Recorder:
    def __init__(self) -> None:
        self.received: list[Pdu] = []
        self.inner = accept_all_handler()

    def __call__(self, session: ServerSession, pdu: Pdu) -> Reply:
        self.received.append(pdu)
        return self.inner(session, pdu)  # type: ignore[return-value]


@pytest.fixture
async def server() -> AsyncIterator[tuple[SmppServer, Recorder]]:
    rec = Recorder()
    cfg = ServerConfig(port=0, session=SessionConfig(window_size=10, response_timeout=10, bind_timeout=10))
    srv = SmppServer(cfg, StaticAuthenticator([Account("acme", "pw")]), rec)
    async with trio.open_nursery() as nursery:
        await nursery.start(srv.serve)
        yield srv, rec
        nursery.cancel_scope.cancel()


def _smpplib_client(port: int) -> smpplib.client.Client:
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    return c


LONG_TEXT = b"A" * 153 + b"B" * 153 + b"C" * 20
UCS2_TEXT = "Привет, мир — ünïcødé ✓".encode("utf-16-be")


def _smpplib_transmitter(port: int) -> dict[str, Any]:
    """bind_transmitter, short + long (UDH by hand) + UCS-2 submits, unbind.

    Deviation of smpplib 2.2.4: it only lets query_sm out in BOUND_RX/BOUND_TRX (the spec: TX/TRX), so
    the query is made on the transceiver bind in test_smpplib_receives_deliver_sm.
    """
    c = _smpplib_client(port)
    out: dict[str, Any] = {}
    try:
        c.bind_transmitter(system_id="acme", password="pw")
        sent = []
        sent.append(
            c.send_message(source_addr="12345", destination_addr="447700900001", short_message=b"hello")
        )
        parts = [LONG_TEXT[i : i + 153] for i in range(0, len(LONG_TEXT), 153)]
        for n, part in enumerate(parts, 1):
            udh = bytes([5, 0, 3, 0x42, len(parts), n])
            sent.append(
                c.send_message(
                    source_addr="12345",
                    destination_addr="447700900001",
                    esm_class=smpplib.consts.SMPP_GSMFEAT_UDHI,
                    short_message=udh + part,
                )
            )
        sent.append(
            c.send_message(
                source_addr="12345",
                destination_addr="447700900001",
                data_coding=smpplib.consts.SMPP_ENCODING_ISO10646,
                short_message=UCS2_TEXT,
            )
        )
        resps = [c.read_pdu() for _ in sent]
        out["submit"] = [(r.command, r.status, r.sequence, r.message_id.decode()) for r in resps]
        out["sent_seq"] = [p.sequence for p in sent]
        ub = c.unbind()
        out["unbind"] = (ub.command, ub.status)
    finally:
        c.disconnect()
    return out


async def test_smpplib_transmitter(server: tuple[SmppServer, Recorder]) -> None:
    srv, rec = server
    out = await trio.to_thread.run_sync(_smpplib_transmitter, srv.ports[0])
    assert [r[:2] for r in out["submit"]] == [("submit_sm_resp", 0)] * 5
    assert [r[2] for r in out["submit"]] == out["sent_seq"]
    assert len({r[3] for r in out["submit"]}) == 5
    assert out["unbind"] == ("unbind_resp", 0)
    subs = [p for p in rec.received if isinstance(p, SubmitSm)]
    assert next(p.short_message for p in subs) == b"hello"
    long_parts = subs[1:4]
    assert all(p.esm_class & 0x40 for p in long_parts)
    assert b"".join(p.short_message[6:] for p in long_parts) == LONG_TEXT
    assert [p.short_message[:6] for p in long_parts] == [bytes([5, 0, 3, 0x42, 3, i]) for i in (1, 2, 3)]
    assert subs[4].data_coding == 8 and subs[4].short_message.decode("utf-16-be").startswith("Привет")
    with trio.fail_after(5):
        while srv.sessions():
            await trio.sleep(0.01)


def _smpplib_receiver(port: int, kind: str, bound: trio.Event, count: int) -> dict[str, Any]:
    c = _smpplib_client(port)
    got: list[bytes] = []

    def on_message(pdu: Any) -> int:
        got.append(pdu.short_message)
        # the second message is refused by the application: the status must reach the server
        return 0x64 if len(got) == 2 else 0

    c.set_message_received_handler(on_message)
    out: dict[str, Any] = {}
    try:
        if kind == "rx":
            c.bind_receiver(system_id="acme", password="pw")
        else:
            c.bind_transceiver(system_id="acme", password="pw")
            c.send_message(source_addr="1", destination_addr="2", short_message=b"from trx")
            r = c.read_pdu()
            out["submit"] = (r.command, r.status)
            c.query_message(message_id=r.message_id.decode(), source_addr="1")
            qr = c.read_pdu()
            out["query"] = (qr.command, qr.status, qr.message_id == r.message_id, qr.message_state)
        trio.from_thread.run_sync(bound.set)
        while len(got) < count:
            c.read_once()
        out["got"] = got
        ub = c.unbind()
        out["unbind"] = (ub.command, ub.status)
    finally:
        c.disconnect()
    return out


@pytest.mark.parametrize("kind", ["rx", "trx"])
async def test_smpplib_receives_deliver_sm(server: tuple[SmppServer, Recorder], kind: str) -> None:
    srv, rec = server
    bound = trio.Event()
    statuses: list[int] = []
    result: dict[str, Any] = {}

    async def run_client() -> None:
        result.update(await trio.to_thread.run_sync(_smpplib_receiver, srv.ports[0], kind, bound, 3))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(run_client)
        with trio.fail_after(10):
            await bound.wait()
        [session] = srv.receivers("acme")
        assert session.bind_type is (BindType.RECEIVER if kind == "rx" else BindType.TRANSCEIVER)
        for i in range(3):
            resp = await srv.deliver(
                "acme",
                DeliverSm(
                    source_addr="447700900001", destination_addr="12345", short_message=f"mo {i}".encode()
                ),
            )
            statuses.append(resp.command_status)
    assert statuses == [0, 0x64, 0]
    assert result["got"] == [b"mo 0", b"mo 1", b"mo 2"]
    assert result["unbind"] == ("unbind_resp", 0)
    if kind == "trx":
        assert result["submit"] == ("submit_sm_resp", 0)
        assert result["query"] == ("query_sm_resp", 0, True, 1)  # ENROUTE from the default handler
        assert any(isinstance(p, QuerySm) for p in rec.received)


# Deviation of smpp34 1.5.0 (seen here about one run in three): the process can die with SIGSEGV while
# the interpreter finalizes, after every call returned and the output was flushed.  The script therefore
# leaves with os._exit(0) once its work is done; a crash before that still fails the test.
SMPP34_CLIENT = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import smpp34

    async def main(port):
        c = smpp34.Client("127.0.0.1", port, "acme", "pw", bind_type="TRX")
        smsc = await c.connect()
        out = {"submit": []}
        for text, dc in ((b"hello", 0), ("Привет ✓".encode("utf-16-be"), 8)):
            r = await smsc.submit_sm("447700900001", text, source_addr="12345", data_coding=dc)
            out["submit"].append([r.command_status, r.message_id])
        print("BOUND", flush=True)
        ev = await asyncio.wait_for(smsc.next(), 10)
        out["deliver"] = ev.short_message.decode()
        await smsc.unbind()
        await c.stop()
        print(json.dumps(out), flush=True)

    asyncio.run(main(int(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)
    """
)


async def test_smpp34_asyncio_client(server: tuple[SmppServer, Recorder]) -> None:
    srv, rec = server
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                [sys.executable, "-c", SMPP34_CLIENT, str(srv.ports[0])],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                check=False,
                task_status=task_status,
            )
        )
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(20):
            while b"BOUND" not in buf:
                chunk = await proc.stdout.receive_some()
                assert chunk, "smpp34 client exited early"
                buf += chunk
            resp = await srv.deliver(
                "acme", DeliverSm(source_addr="1", destination_addr="2", short_message=b"mo!")
            )
            assert resp.command_status == 0
            while True:
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    break
                buf += chunk
            await proc.wait()
        assert proc.returncode == 0
    out = json.loads(buf.split(b"BOUND", 1)[1])
    assert [s for s, _ in out["submit"]] == [0, 0]
    assert all(mid for _, mid in out["submit"])
    assert out["deliver"] == "mo!"
    subs = [p for p in rec.received if isinstance(p, SubmitSm)]
    assert subs[0].short_message == b"hello"
    assert subs[1].data_coding == 8 and subs[1].short_message.decode("utf-16-be") == "Привет ✓"
