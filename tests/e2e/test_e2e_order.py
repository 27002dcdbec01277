"""What the partner sees, in the order it sees it, on real sockets (gateway, NATS, Postgres, the simulator).

* A valid submit_sm followed in the same read by octets that cannot be framed: the message is stored, sent to
  the operator, and its submit_sm_resp reaches the partner before the generic_nack and the close.
* A receipt never overtakes the submit_sm_resp that gave the partner its id: on a transceiver bind (accept
  and delivery in one process) and across two gateway nodes (the partner submits to one, gets its receipts
  from the other).  The accept side is made to answer late (its publish batches return 0.3 s after NATS
  acknowledged them: a big batch or a busy process), with receipts coming back from the simulator at once,
  so without the hold every receipt would overtake its response.
"""

from __future__ import annotations

import struct
from typing import Any

import trio

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.events import RequestReceived, ResponseReceived
from catalyst_smpp.protocol.pdu import BindTransceiver, DeliverSm, SubmitSm
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import DelayRange, SimConfig
from tests.transport.peer import SansIoPeer

from .harness import PASSWORD, Env, open_gateway, open_sim, sim_texts, wait_for

DEST = "447700900001"


def _setup(env: Env, sim_port: int) -> None:
    env.add_partner("acme")
    env.add_operator("opA", sim_port)
    env.add_route(None, "44", ["opA"])


async def test_valid_submit_then_unframeable_octets_is_stored_and_answered_first(env: Env) -> None:
    async with open_sim() as sim:
        _setup(env, sim.port)
        async with open_gateway(env) as gw:
            s = await trio.open_tcp_stream("127.0.0.1", gw.ports[0])
            await s.send_all(
                encode_pdu(BindTransceiver(system_id="acme", password=PASSWORD, sequence_number=1))
            )
            got = b""
            with trio.fail_after(10):
                while True:  # bind_resp, then (the same connection) everything until the gateway closes
                    data = await s.receive_some(65536)
                    if not data:
                        break
                    got += data
                    if len(got) == struct.unpack_from(">I", got)[0]:  # the bind_resp alone: now the test
                        assert struct.unpack_from(">I", got, 8)[0] == 0
                        submit = SubmitSm(destination_addr=DEST, short_message=b"framed then garbage")
                        submit.sequence_number = 2
                        await s.send_all(encode_pdu(submit) + b"\x00\x00\x00\x05garbage" + bytes(12))
            pdus = []
            off = struct.unpack_from(">I", got)[0]
            while off < len(got):
                n = struct.unpack_from(">I", got, off)[0]
                pdus.append(decode_pdu(got[off : off + n]))
                off += n
            assert [(p.command_id, p.sequence_number) for p in pdus] == [
                (CommandId.submit_sm_resp, 2),
                (CommandId.generic_nack, 0),
            ]
            assert pdus[0].command_status == 0 and pdus[0].message_id  # type: ignore[attr-defined]
            assert pdus[1].command_status == CommandStatus.ESME_RINVCMDLEN
            await wait_for(
                lambda: sim_texts(sim)["framed then garbage"] == 1, 20, "the message at the operator"
            )
            await s.aclose()


class _SlowAnswers:
    """The accept batcher's bus: each publish batch returns ``delay`` after NATS acknowledged it."""

    def __init__(self, bus: Any, delay: float) -> None:
        self.bus = bus
        self.delay = delay

    async def publish_batch(self, items: Any, **kw: Any) -> Any:
        results = await self.bus.publish_batch(items, **kw)
        await trio.sleep(self.delay)
        return results

    async def publish_pair(self, first: Any, second: Any, timeout: Any = None) -> Any:
        results = await self.bus.publish_pair(first, second, timeout)
        await trio.sleep(self.delay)
        return results

    def __getattr__(self, name: str) -> Any:
        return getattr(self.bus, name)


async def _partner(
    submit_port: int, receipt_port: int | None, count: int, seen: list[tuple[str, str]]
) -> None:
    """Bind (one TRX, or a TX and an RX on two ports), submit ``count`` messages, record ("resp", id) and
    ("rcpt", id) in the order the PDUs arrive until every response and receipt is in."""
    tx = SansIoPeer(await trio.open_tcp_stream("127.0.0.1", submit_port), Role.ESME)
    assert (await tx.bind("trx" if receipt_port is None else "tx", "acme", PASSWORD)).command_status == 0
    peers = [tx]
    if receipt_port is not None:
        rx = SansIoPeer(await trio.open_tcp_stream("127.0.0.1", receipt_port), Role.ESME)
        assert (await rx.bind("rx", "acme", PASSWORD)).command_status == 0
        peers.append(rx)
    done = trio.Event()

    async def read(peer: SansIoPeer) -> None:
        while True:
            ev = await peer.next_event()
            if isinstance(ev, ResponseReceived):
                assert ev.pdu.command_status == 0
                seen.append(("resp", ev.pdu.message_id))  # type: ignore[attr-defined]
            elif isinstance(ev, RequestReceived) and isinstance(ev.pdu, DeliverSm):
                rid = ev.pdu.get_tlv(Tag.receipted_message_id)
                seen.append(("rcpt", (rid.decode() if isinstance(rid, bytes) else str(rid)).rstrip("\0")))
                await peer.send(ev.pdu.make_response())
            if sum(1 for kind, _ in seen if kind == "rcpt") == count and len(seen) == 2 * count:
                done.set()

    async with trio.open_nursery() as n:
        for p in peers:
            n.start_soon(read, p)
        for i in range(count):
            await tx.send(
                SubmitSm(destination_addr=DEST, short_message=f"order {i}".encode(), registered_delivery=1)
            )
        with trio.fail_after(60):
            await done.wait()
        n.cancel_scope.cancel()
    for p in peers:
        await trio.aclose_forcefully(p.stream)


def _overtaken(seen: list[tuple[str, str]]) -> list[str]:
    answered: set[str] = set()
    early = []
    for kind, mid in seen:
        if kind == "resp":
            answered.add(mid)
        elif mid not in answered:
            early.append(mid)
    return early


async def test_receipt_never_overtakes_its_response_on_a_transceiver(env: Env) -> None:
    count = 40
    async with open_sim(SimConfig(receipt_delay=DelayRange(0.0, 0.0))) as sim:
        _setup(env, sim.port)
        async with open_gateway(env) as gw:
            assert gw.accept is not None
            gw.accept.bus = _SlowAnswers(gw.accept.bus, 0.3)
            seen: list[tuple[str, str]] = []
            await _partner(gw.ports[0], None, count, seen)
    assert sorted(mid for kind, mid in seen if kind == "rcpt") == sorted(
        mid for kind, mid in seen if kind == "resp"
    )
    assert _overtaken(seen) == []
    assert gw.receipt_order is not None and gw.receipt_order.held > 0  # the race was there


async def test_receipt_from_another_node_waits_for_the_response(env: Env) -> None:
    # the partner submits to node A (TX) and takes its receipts from node B (RX): B cannot see A's answers
    # and holds each receipt until its id is foreign_hold old
    count = 20
    async with open_sim(SimConfig(receipt_delay=DelayRange(0.0, 0.0))) as sim:
        _setup(env, sim.port)
        async with open_gateway(env, "gw-a", node_num=1) as a, open_gateway(env, "gw-b", node_num=2) as b:
            assert a.accept is not None and b.receipt_order is not None
            a.accept.bus = _SlowAnswers(a.accept.bus, 0.3)
            b.receipt_order.foreign_hold = 3.0  # well above the 0.3 s late answers
            seen: list[tuple[str, str]] = []
            await _partner(a.ports[0], b.ports[0], count, seen)
    assert _overtaken(seen) == []
    assert b.receipt_order.held >= 1  # (the first one waits; those after it are as old by then)
