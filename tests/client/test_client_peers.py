"""Our client (ESME role) against a third-party SMSC: smpp34's asyncio server in a subprocess, real TCP."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import textwrap

import trio

from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.encoding import Encoding, segment
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.transport import Reply, SmppSession

S = CommandStatus

# The SMSC: accepts every bind (smpp34's server has no authentication hook), answers submit_sm with
# increasing hex ids, refuses the first submit to "busy" with ESME_RTHROTTLED, pushes two deliver_sm
# to the bound ESME and reports what it saw once the ESME unbinds.
# Deviation of smpp34 1.5.0 (see tests/server/test_server_peers.py): the process may crash while the
# interpreter finalizes, so the script leaves with os._exit(0) once its output is flushed.
SMPP34_SMSC = textwrap.dedent(
    """
    import asyncio, json, os, sys
    import smpp34

    async def main(port):
        server = smpp34.Server("127.0.0.1", port, system_id="smpp34smsc")
        await server.start()
        print("READY", flush=True)
        out = {"esme": None, "submits": [], "deliver": []}
        tasks = []
        n = 0
        busy_once = True

        async def push(esme):
            for i in range(2):
                r = await esme.deliver_sm("12345", f"mo {i}".encode(), source_addr="447700900001")
                out["deliver"].append(r.command_status)

        while True:
            ev = await asyncio.wait_for(server.next(), 30)
            if isinstance(ev, smpp34.Esme):
                out["esme"] = [ev.system_id, ev.can_receive]
                tasks.append(asyncio.create_task(push(ev)))
            elif isinstance(ev, smpp34.SubmitSmEvent):
                out["submits"].append(
                    [ev.destination_addr, ev.esm_class, ev.data_coding, ev.short_message.hex()]
                )
                if ev.destination_addr == "busy" and busy_once:
                    busy_once = False
                    ev.reject(smpp34.ESME_RTHROTTLED)
                else:
                    n += 1
                    ev.accept(format(n, "x"))
            elif isinstance(ev, smpp34.Unbound):
                break
        await asyncio.gather(*tasks)
        await server.stop()
        print(json.dumps(out), flush=True)

    asyncio.run(main(int(sys.argv[1])))
    sys.stdout.flush()
    os._exit(0)
    """
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def test_our_client_against_smpp34_server() -> None:
    port = _free_port()
    got: list[bytes] = []
    delivered = trio.Event()

    def on_deliver(session: SmppSession, pdu: Pdu) -> Reply:
        assert isinstance(pdu, DeliverSm)
        got.append(pdu.short_message)
        if len(got) == 2:
            delivered.set()
        return S.ESME_RX_T_APPN if pdu.short_message == b"mo 1" else None  # the handler decides the status

    long_text = "Long message through smpp34, split in parts with a UDH each. " * 4
    long_seg = segment(long_text, ref=0x2A, encoding=Encoding.GSM7)
    ucs2 = segment("Привет ✓", encoding=Encoding.UCS2)
    assert len(long_seg.parts) == 2 and len(ucs2.parts) == 1
    cfg = ClientConfig(
        "127.0.0.1",
        port,
        "cat",
        "pw",
        binds=(BindType.TRANSCEIVER,),
        session=SessionConfig(
            window_size=10, response_timeout=10, enquire_link_interval=None, bind_timeout=None
        ),
        throttle_delay=0.05,
        reconnect_initial=0.05,
        reconnect_max=0.2,
    )
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    async with trio.open_nursery() as nursery:
        proc: trio.Process = await nursery.start(
            lambda task_status: trio.run_process(
                [sys.executable, "-c", SMPP34_SMSC, str(port)],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                env=env,
                check=False,
                task_status=task_status,
            )
        )
        assert proc.stdout is not None
        buf = b""
        with trio.fail_after(30):
            while b"READY" not in buf:
                chunk = await proc.stdout.receive_some()
                assert chunk, "smpp34 server exited early"
                buf += chunk
            client = SmppClient(cfg, on_deliver)
            await nursery.start(client.run)
            await client.wait_bound()
            statuses = []
            ids = []
            pdus = [SubmitSm(source_addr="1", destination_addr="447700900001", short_message=b"hello")]
            pdus += [
                SubmitSm(
                    source_addr="1",
                    destination_addr="447700900002",
                    esm_class=p.esm_class,
                    data_coding=p.data_coding,
                    short_message=p.short_message,
                )
                for p in long_seg.parts
            ]
            pdus.append(
                SubmitSm(
                    source_addr="1",
                    destination_addr="447700900003",
                    data_coding=8,
                    short_message=ucs2.parts[0].short_message,
                )
            )
            pdus.append(SubmitSm(source_addr="1", destination_addr="busy", short_message=b"retried"))
            for pdu in pdus:
                r = await client.request(pdu)
                statuses.append(r.command_status)
                ids.append(r.message_id)  # type: ignore[attr-defined]
            await delivered.wait()
            await client.aclose()
            while True:
                chunk = await proc.stdout.receive_some()
                if not chunk:
                    break
                buf += chunk
            await proc.wait()
    assert proc.returncode == 0
    out = json.loads(buf.split(b"READY", 1)[1])
    assert statuses == [0] * 5 and ids == ["1", "2", "3", "4", "5"]
    # ESME_RTHROTTLED from the SMSC was retried by the client, not returned to the caller
    assert client.stats.throttled_retries == 1
    assert out["esme"] == ["cat", True]
    dests = [s[0] for s in out["submits"]]
    assert dests == ["447700900001", "447700900002", "447700900002", "447700900003", "busy", "busy"]
    first, part1, part2, uni, *_ = out["submits"]
    assert bytes.fromhex(first[3]) == b"hello"
    assert part1[1] & 0x40 and part2[1] & 0x40  # UDHI
    assert [bytes.fromhex(p[3])[:6] for p in (part1, part2)] == [bytes([5, 0, 3, 0x2A, 2, i]) for i in (1, 2)]
    assert (uni[2], bytes.fromhex(uni[3]).decode("utf-16-be")) == (8, "Привет ✓")
    assert got == [b"mo 0", b"mo 1"]
    assert out["deliver"] == [0, S.ESME_RX_T_APPN]
