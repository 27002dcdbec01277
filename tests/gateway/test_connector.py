"""OperatorConnector against the in-process SMSC simulator, on the in-memory bus (autojump clock).

These are the gateway's rules; JetStream's part is held to the same contract in tests/bus/test_contract.py,
and the flow and fault tests run on real NATS."""

from __future__ import annotations

import socket
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from catalyst_smpp.bus import Kind, MessageBus
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.encoding import Encoding, encode
from catalyst_smpp.encoding.msgid import normalise_id
from catalyst_smpp.encoding.reassembly import Scheme
from catalyst_smpp.gateway.connector import OperatorConnector, build_submits, receipt_err
from catalyst_smpp.gateway.events import EventPublisher, row_to_event, rows_from_bytes
from catalyst_smpp.gateway.mappings import IdMapping
from catalyst_smpp.gateway.messages import Address, DlrMessage, MtMessage
from catalyst_smpp.protocol.constants import CommandStatus, status_name
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import SimConfig, open_simulator
from catalyst_smpp.store import MessageEvent, Operator
from tests.services import unique_name


@pytest.fixture
def bus(memory_bus: MemoryBus) -> MessageBus:
    """These are rules of the gateway, not of JetStream: the in-memory bus, under trio's autojump clock
    (tests/bus/test_contract.py holds it to what JetStream does)."""
    return memory_bus


PARTNER = "acme"


class StubRouter:
    def __init__(self, mo: dict[str, str] | None = None) -> None:
        self.mo = mo or {}

    def route(self, partner: str, source: str, dest: str) -> list[str]:
        return []

    def route_mo(self, dest: str, source: str = "") -> str | None:
        for prefix, partner in sorted(self.mo.items(), key=lambda kv: -len(kv[0])):
            if dest.startswith(prefix):
                return partner
        return None


def make_operator(port: int, **kw: Any) -> Operator:
    fields: dict[str, Any] = {"window": 10, "tps": 5000.0}
    fields.update(kw)
    return Operator(
        id=1,
        name=fields.pop("name", unique_name("op")),
        host="127.0.0.1",
        port=port,
        system_id="gw",
        password="pw",
        **fields,
    )


_seq = iter(range(10**6, 10**9))


def mt(
    op: str | tuple[str, ...],
    text: str | None = None,
    *,
    raw: bytes | None = None,
    dc: int = 0,
    esm: int = 0,
    reg: int = 1,
    dest: str = "447700900123",
) -> MtMessage:
    targets = (op,) if isinstance(op, str) else op
    if raw is None:
        assert text is not None
        enc = {0: Encoding.GSM7, 8: Encoding.UCS2, 3: Encoding.LATIN1}[dc]
        raw = encode(text, enc)
    return MtMessage(
        message_id=str(next(_seq)),
        partner=PARTNER,
        source=Address(5, 0, "Catalyst"),
        dest=Address(1, 1, dest),
        targets=targets,
        payload=raw,
        data_coding=dc,
        esm_class=esm,
        registered_delivery=reg,
    )


async def publish_mt(bus: MessageBus, msgs: list[MtMessage]) -> None:
    res = await bus.publish_batch(
        [(bus.subject(Kind.MT, m.targets[0]), m.to_bytes(), None, m.message_id) for m in msgs]
    )
    assert all(r.ok for r in res), res


@asynccontextmanager
async def running(
    bus: MessageBus, operator: Operator, router: StubRouter | None = None, **kw: Any
) -> AsyncIterator[OperatorConnector]:
    events = EventPublisher(bus, node="n1")
    r = router or StubRouter()
    kw.setdefault("retry_delays", (0.05, 0.1, 0.2))
    kw.setdefault("client_options", {"reconnect_initial": 0.05, "reconnect_max": 0.2})
    conn = OperatorConnector(operator, bus, node="n1", events=events, router=lambda: r, **kw)
    async with trio.open_nursery() as n:
        await n.start(conn.run)
        try:
            yield conn
        finally:
            await conn.drain(1.0)
            n.cancel_scope.cancel()


async def wait_for(pred: Callable[[], bool], timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while not pred():
            await trio.sleep(0.02)


async def collect(bus: MessageBus, kind: Kind, name: str, n: int, timeout: float = 20.0) -> list[bytes]:
    c = await bus.consumer(kind, name)
    out: list[bytes] = []
    with trio.fail_after(timeout):
        while len(out) < n:
            msgs = await c.fetch(n - len(out), 0.5)
            out.extend(m.data for m in msgs)
            await c.ack(msgs)
    return out


async def mt_left(bus: MessageBus) -> int:
    return (await bus.stream_info(Kind.MT)).messages


LONG = "The quick brown fox jumps over the lazy dog, again and again; " * 3  # 186 GSM septets → 2 parts
UNICODE = "Привет, мир! Съешь же ещё этих мягких французских булок, да выпей чаю. " * 1  # UCS-2, 2 parts


@pytest.mark.parametrize("method", ["udh8", "udh16", "sar", "payload"])
async def test_submitted_exactly_as_intended(
    bus: MessageBus, autojump_clock: trio.testing.MockClock, method: str
) -> None:
    async with open_simulator(SimConfig(receipts=False)) as sim:
        op = make_operator(sim.port, segmentation=method, submit_id_format="hex")
        msgs = [
            mt(op.name, "Hello €uro [world]"),
            mt(op.name, LONG),
            mt(op.name, UNICODE, dc=8),
            mt(op.name, "Grüße à vous", dc=3),
        ]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            await wait_for(lambda: conn.stats.submitted == 4)
        got = {a.text: a for a in sim.assembled()}
        assert set(got) == {"Hello €uro [world]", LONG, UNICODE, "Grüße à vous"}
        expect_parts = {"udh8": 2, "udh16": 2, "sar": 2, "payload": 1}[method]
        assert len(got[LONG].parts) == expect_parts and len(got[UNICODE].parts) == expect_parts
        assert len(got["Hello €uro [world]"].parts) == 1
        assert got[LONG].data_coding == 0 and got[UNICODE].data_coding == 8
        assert got["Grüße à vous"].data_coding == 3  # Latin-1 kept (operator's data_coding 0 is GSM)
        scheme = {"udh8": Scheme.UDH8, "udh16": Scheme.UDH16, "sar": Scheme.SAR}.get(method)
        for part in got[LONG].parts:
            if scheme is None:
                assert part.short_message == b"" and any(t.tag == Tag.message_payload for t in part.tlvs)
            else:
                assert part.concat is not None and part.concat.scheme is scheme and part.concat.total == 2
        assert got[LONG].complete and got[UNICODE].complete
        # two long messages got different references
        if scheme is not None:
            assert got[LONG].parts[0].concat.ref != got[UNICODE].parts[0].concat.ref  # type: ignore[union-attr]
        # every part's operator id maps to our id in the KV (normalised with submit_id_format)
        for text, a in got.items():
            ours = next(m for m in msgs if _text_of(m) == text)
            keys = [(op.name, normalise_id(p.message_id, "hex")) for p in a.parts]
            found = [IdMapping.from_bytes(r) if r else None for r in await bus.opids.get_many(keys)]
            assert [(f.message_id, f.partner, f.flags, f.part, f.parts) for f in found if f] == [
                (ours.message_id, PARTNER, 1, i + 1, len(a.parts)) for i in range(len(a.parts))
            ]
        assert await mt_left(bus) == 0
        assert conn.stats.nacked == 0 and conn.stats.parts_submitted == 1 + 1 + 2 * expect_parts


def _text_of(m: MtMessage) -> str:
    from catalyst_smpp.encoding import decode

    return decode(m.payload, {0: Encoding.GSM7, 8: Encoding.UCS2, 3: Encoding.LATIN1}[m.data_coding])


def test_build_submits_keeps_binary_and_udh_as_sent() -> None:
    op = make_operator(1, data_coding_0="latin1", segmentation="sar")
    udh = bytes([5, 0, 3, 7, 2, 1])
    m1 = mt(op.name, raw=udh + b"part one", esm=0x40 | 0x03)
    (p,) = build_submits(m1, op, 5)
    assert p.short_message == m1.payload and p.esm_class == 0x43 and p.data_coding == 0 and p.tlvs == ()
    m2 = MtMessage(
        "1", PARTNER, Address(), Address(0, 0, "1"), (op.name,), payload=bytes(range(256)) * 2, data_coding=4
    )
    (p2,) = build_submits(m2, op, 5)
    assert p2.short_message == b"" and p2.tlvs[-1].raw == m2.payload and p2.data_coding == 4
    # GSM text for an operator whose data_coding 0 is Latin-1: Latin-1 as its 0x00
    (p3,) = build_submits(mt(op.name, "Hallo Welt"), op, 5)
    assert p3.data_coding == 0 and p3.short_message == b"Hallo Welt" and p3.registered_delivery == 1
    # the euro sign is not Latin-1: UCS-2
    (p4,) = build_submits(mt(op.name, "5 €"), op, 5)
    assert p4.data_coding == 8 and p4.short_message == "5 €".encode("utf-16-be")
    # the operator is asked for a receipt even when the partner wants none
    (p5,) = build_submits(mt(op.name, "x", reg=0), op, 5)
    assert p5.registered_delivery == 1


async def test_throttling_is_retried_and_all_delivered(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_simulator(SimConfig(receipts=False, throttle_fraction=0.4, seed=7)) as sim:
        op = make_operator(sim.port)
        msgs = [mt(op.name, f"message number {i}") for i in range(40)]
        async with running(bus, op, client_options={"throttle_retries": 0}) as conn:
            await publish_mt(bus, msgs)
            await wait_for(lambda: conn.stats.submitted == 40, 60)
        assert sim.stats.throttled > 0 and conn.stats.nacked > 0
        texts = [a.text for a in sim.assembled()]
        assert sorted(set(texts)) == sorted(f"message number {i}" for i in range(40))
        assert len(texts) == 40  # single parts: a throttled part was not accepted, so no duplicates
        assert conn.stats.duplicate_parts == 0
        assert await mt_left(bus) == 0


async def test_throttled_parts_are_resent_on_the_bind_before_any_nak(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    # the connector sends with callbacks (no task per message): a throttled answer is retried after a pause
    # on the bind (client throttle_retries), as SmppClient.request would; only then is the message nak'ed
    async with open_simulator(SimConfig(receipts=False, throttle_fraction=0.3, seed=11)) as sim:
        op = make_operator(sim.port)
        msgs = [mt(op.name, f"retry me {i}") for i in range(30)] + [mt(op.name, LONG)]
        opts = {"throttle_retries": 10, "throttle_delay": 0.005}
        async with running(bus, op, client_options=opts) as conn:
            await publish_mt(bus, msgs)
            await wait_for(lambda: conn.stats.submitted == 31, 60)
            assert conn.client is not None and conn.client.stats.throttled_retries > 0
        assert sim.stats.throttled > 0
        assert conn.stats.nacked == 0 and conn.stats.duplicate_parts == 0
        texts = [a.text for a in sim.assembled()]
        assert sorted(texts) == sorted([f"retry me {i}" for i in range(30)] + [LONG])
        assert conn._inflight_parts == 0 and not conn._active
        assert await mt_left(bus) == 0


async def test_permanent_error_gives_a_failure_receipt(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    status = int(CommandStatus.ESME_RINVDSTADR)
    async with open_simulator(SimConfig(receipts=False, status_mix=((status, 100.0),))) as sim:
        op = make_operator(sim.port)
        wants, silent = mt(op.name, "fail me", reg=1), mt(op.name, "fail quietly", reg=0)
        async with running(bus, op) as conn:
            await publish_mt(bus, [wants, silent])
            await wait_for(lambda: conn.stats.failed == 2)
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
        dlr = DlrMessage.from_bytes(raw[0])
        assert (dlr.message_id, dlr.partner, dlr.state, dlr.error) == (
            wants.message_id,
            PARTNER,
            "REJECTD",
            "00B",  # the status in hex (receipt_err), not 11 decimal
        )
        assert dlr.dest.addr == wants.dest.addr and dlr.operator == op.name
        assert conn.stats.failure_receipts == 1 and conn.stats.termed == 2
        assert sim.stats.submits == 2
        assert await mt_left(bus) == 0
        assert (await bus.stream_info(Kind.DLR)).messages == 0  # only the one receipt (collected, acked)


async def _failed_events(bus: MessageBus, n: int) -> list[MessageEvent]:
    c = await bus.consumer(Kind.EVENTS)
    out: list[MessageEvent] = []
    with trio.fail_after(20):
        while len([e for e in out if e.event == "failed"]) < n:
            msgs = await c.fetch(100, 0.5)
            for m in msgs:
                out.extend(row_to_event(r) for r in rows_from_bytes(m.data)[0])
            await c.ack(msgs)
    return [e for e in out if e.event == "failed"]


def test_receipt_err_is_the_status_in_hex() -> None:
    assert receipt_err(int(CommandStatus.ESME_RSYSERR)) == "008"
    assert receipt_err(int(CommandStatus.ESME_RINVDSTADR)) == "00B"
    assert receipt_err(0x45) == "045"  # ESME_RSUBMITFAIL
    assert receipt_err(0x400) == "400" and receipt_err(0x4FF) == "4FF"  # vendor range: as the SMSC's docs
    assert receipt_err(0x10400) == "10400"  # beyond 0xFFF: longer rather than ambiguous


async def test_operator_temporary_vendor_status_is_retried_until_delivered(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    # lesson 6c: the SMSC answers vendor status 0x4C1 for "busy, try again"; listed in the operator's
    # temporary_statuses it is nak'ed with back-off (no failover, no failure receipt) until accepted
    vendor = 0x4C1
    async with (
        open_simulator(SimConfig(receipts=False, status_mix=((vendor, 40.0),), seed=5)) as sim,
        open_simulator(SimConfig(receipts=False)) as other,
    ):
        op = make_operator(sim.port, temporary_statuses=["0x4C1"])
        assert op.temporary_statuses == (vendor,)
        spare = make_operator(other.port, name=unique_name("spare"))
        msgs = [mt((op.name, spare.name), f"vendor retry {i}") for i in range(30)]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            await wait_for(lambda: conn.stats.submitted == 30, 60)
        assert sim.stats.errors.get(status_name(vendor), 0) > 0 and conn.stats.nacked > 0
        assert conn.stats.failed == conn.stats.failed_over == conn.stats.failure_receipts == 0
        texts = [a.text for a in sim.assembled()]
        assert sorted(texts) == sorted(f"vendor retry {i}" for i in range(30))  # each exactly once
        assert other.stats.submits == 0
        assert await mt_left(bus) == 0
        assert (await bus.stream_info(Kind.DLR)).messages == 0


async def test_unlisted_vendor_status_is_permanent_with_a_clear_err(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    # the same vendor status at an operator that does not list it (it lists another one): one failure
    # receipt, err "4C1" (the status in hex), the full status in the failed event (message log)
    vendor = 0x4C1
    async with open_simulator(SimConfig(receipts=False, status_mix=((vendor, 100.0),))) as sim:
        op = make_operator(sim.port, temporary_statuses=(0x4C2,))
        m = mt(op.name, "vendor says no", reg=1)
        async with running(bus, op) as conn:
            await publish_mt(bus, [m])
            await wait_for(lambda: conn.stats.failed == 1)
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
            (failed,) = await _failed_events(bus, 1)
        dlr = DlrMessage.from_bytes(raw[0])
        assert (dlr.message_id, dlr.state, dlr.error) == (m.message_id, "REJECTD", "4C1")
        assert (failed.message_id, failed.status, failed.final_state) == (m.message_id, vendor, "REJECTD")
        assert failed.error == "operator answered 0x000004C1"
        assert conn.stats.failure_receipts == 1 and conn.stats.nacked == 0 and sim.stats.submits == 1
        assert await mt_left(bus) == 0


async def test_temporary_statuses_change_applies_without_reconnect(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    # a snapshot reload hands the connector the changed operator (Gateway._sync_connectors → update):
    # temporary_statuses is not a connection setting, so the binds stay and the next answers use it
    vendor = 0x4C1
    async with open_simulator(SimConfig(receipts=False, status_mix=((vendor, 100.0),))) as sim:
        op = make_operator(sim.port)
        async with running(bus, op, retry_delays=(0.05,)) as conn:
            await wait_for(lambda: conn.is_up)
            client = conn.client
            conn.update(attrs.evolve(op, temporary_statuses=(vendor,)))
            await publish_mt(bus, [mt(op.name, "held back")])
            await wait_for(lambda: conn.stats.nacked >= 2)
            assert conn.client is client and sim.stats.binds == 1  # no rebind
            assert conn.stats.failed == 0
            conn.update(op)  # removed again: the next answer fails the message
            await wait_for(lambda: conn.stats.failed == 1)
            assert conn.client is client and sim.stats.binds == 1
        assert await mt_left(bus) == 0


def _free_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


async def test_failover_to_the_second_operator_when_the_first_is_down(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with open_simulator(SimConfig(receipts=False)) as sim:
        down = make_operator(_free_port(), name=unique_name("down"))
        up = make_operator(sim.port, name=unique_name("up"))
        msgs = [mt((down.name, up.name), f"failover {i}") for i in range(5)]
        only_down = mt(down.name, "nowhere else to go")
        async with running(bus, up) as c_up, running(bus, down, down_after=0.3, down_retry=30) as c_down:
            await publish_mt(bus, [*msgs, only_down])
            await wait_for(lambda: c_up.stats.submitted == 5)
            await wait_for(lambda: c_down.stats.nacked >= 1)
            assert c_down.stats.failed_over == 5
        assert sorted(a.text or "" for a in sim.assembled()) == sorted(f"failover {i}" for i in range(5))
        # the message with no further target waits (nak'ed) for its operator
        assert (await bus.stream_info(Kind.MT)).messages == 1


async def test_permanent_reject_fails_over(bus: MessageBus, autojump_clock: trio.testing.MockClock) -> None:
    status = int(CommandStatus.ESME_RINVDSTADR)
    async with (
        open_simulator(SimConfig(receipts=False, status_mix=((status, 100.0),))) as bad,
        open_simulator(SimConfig(receipts=False)) as good,
    ):
        a = make_operator(bad.port, name=unique_name("a"))
        b = make_operator(good.port, name=unique_name("b"))
        m = mt((a.name, b.name), "second choice")
        async with running(bus, a) as ca, running(bus, b) as cb:
            await publish_mt(bus, [m])
            await wait_for(lambda: cb.stats.submitted == 1)
        assert ca.stats.failed_over == 1 and ca.stats.failure_receipts == 0
        assert [x.text for x in good.assembled()] == ["second choice"]
        assert await mt_left(bus) == 0


async def test_update_reconnects_to_the_new_address(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with (
        open_simulator(SimConfig(receipts=False)) as s1,
        open_simulator(SimConfig(receipts=False)) as s2,
    ):
        op = make_operator(s1.port)
        async with running(bus, op) as conn:
            await publish_mt(bus, [mt(op.name, "to the first")])
            await wait_for(lambda: conn.stats.submitted == 1)
            conn.update(make_operator(s2.port, name=op.name, segmentation="udh16"))
            await wait_for(lambda: s2.bound_sessions == 1)
            await publish_mt(bus, [mt(op.name, "to the second")])
            await wait_for(lambda: conn.stats.submitted == 2)
        assert [x.text for x in s1.assembled()] == ["to the first"]
        assert [x.text for x in s2.assembled()] == ["to the second"]
