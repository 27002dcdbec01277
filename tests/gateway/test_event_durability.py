"""Each event row is durable in EVENTS before the answer or ack that makes it true (real NATS, smpplib, the
simulator): accept before the submit_sm_resp, the connector before the MT ack, inbound before the
deliver_sm_resp.  No publisher task runs in these tests: a row that was only queued in memory would never
reach the stream, so a row missing at the moment of the answer fails them."""

from __future__ import annotations

import asyncio
from typing import Any

import trio

from catalyst_smpp.bus import Bus, Kind, Names
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.gateway.events import EventPublisher, rows_from_bytes
from catalyst_smpp.gateway.ids import parse_id
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.sim import DelayRange, SimConfig
from tests.e2e.harness import open_sim
from tests.gateway.test_connector import make_operator, mt, publish_mt, running, wait_for

from .helpers import operator, partner, partner_server, route, snapshot
from .test_accept import _submits


def _snap() -> Any:
    return snapshot([partner("acme", "secret")], [operator("opA")], [route(1, None, "44", "opA")])


async def _rows(bus: Bus) -> dict[tuple[str, str], Any]:
    """Every row in EVENTS now, by (message_id, event) (read without acking: nothing else consumes it)."""
    c = await bus.consumer(Kind.EVENTS)
    out: dict[tuple[str, str], Any] = {}
    while True:
        msgs = await c.fetch(100, 0.3)
        if not msgs:
            return out
        for m in msgs:
            for row in rows_from_bytes(m.data)[0]:
                out[(row[0], row[1])] = row


def _delete_events_stream(url: str, cfg: NatsConfig) -> None:
    """EVENTS gone (publishes to it fail) while MT, DLR and the KV work; ``bus.ensure()`` brings it back."""
    import nats as nats_py

    async def go() -> None:
        nc = await nats_py.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            await nc.jetstream().delete_stream(Names(cfg.namespace).stream(Kind.EVENTS))
        finally:
            await nc.close()

    asyncio.run(go())


_SEND = dict(source_addr="12345", destination_addr="447700900001", short_message=b"hi", registered_delivery=1)


# --------------------------------------------------------------------------- accept


async def test_accepted_and_rejected_rows_are_in_events_when_the_partner_gets_the_answer(bus: Bus) -> None:
    events = EventPublisher(bus, node="test")
    async with partner_server(bus, _snap(), events=events) as ps:
        got = await trio.to_thread.run_sync(
            _submits, ps.port, [_SEND, dict(_SEND, destination_addr="337700900001"), _SEND]
        )
        rows = await _rows(bus)  # at once: no task of the publisher could have caught up
        assert ps.accept.stats.batches >= 1
    assert [st for st, _ in got] == [0, int(S.ESME_RINVDSTADR), 0]
    for _, hex_id in (got[0], got[2]):
        row = rows[(str(parse_id(hex_id, "hex")), "accepted")]
        assert row[3] == "acme" and row[4] == "opA" and row[6] == "447700900001" and row[12] == "test"
    rejected = [r for (mid, ev), r in rows.items() if ev == "rejected"]
    assert (
        len(rejected) == 1 and rejected[0][8] == int(S.ESME_RINVDSTADR) and rejected[0][6] == "337700900001"
    )
    assert len(rows) == 3


async def test_the_answer_waits_for_events_then_is_given(
    bus: Bus, nats_url: str, nats_config: NatsConfig
) -> None:
    """EVENTS down while MT works: the record is stored and will be submitted, so the partner is answered
    only once its accepted row is stored too -- not an error (it would submit a second copy) and not
    ESME_ROK without a row."""
    events = EventPublisher(bus, node="test", retry_delay=0.05, max_retry_delay=0.2)
    await trio.to_thread.run_sync(_delete_events_stream, nats_url, nats_config)
    got: list[tuple[int, str]] = []
    async with partner_server(bus, _snap(), events=events) as ps:
        async with trio.open_nursery() as n:

            async def submit() -> None:
                got.extend(await trio.to_thread.run_sync(_submits, ps.port, [_SEND]))

            n.start_soon(submit)
            await wait_for(lambda: events.stats.retries >= 3)
            assert got == []  # the record is in MT; the answer waits for its row
            await bus.ensure()  # EVENTS back
        rows = await _rows(bus)
    [(status, hex_id)] = got
    assert status == 0
    assert (str(parse_id(hex_id, "hex")), "accepted") in rows and events.stats.unstored == 0


# --------------------------------------------------------------------------- connector and inbound


async def test_submitted_and_delivered_rows_are_in_events_before_the_ack_and_the_receipt_answer(
    bus: Bus,
) -> None:
    async with open_sim(SimConfig(receipt_delay=DelayRange(0.01, 0.02))) as sim:
        op = make_operator(sim.port)
        msgs = [mt(op.name, f"durable {i}") for i in range(5)]
        await publish_mt(bus, msgs)
        async with running(bus, op) as conn:
            await wait_for(lambda: conn.stats.submitted == 5 and len(sim.receipts_acked) == 5)

            async def acked() -> bool:
                c = await bus.consumer(Kind.MT, op.name)
                info = await c.info()
                return info.num_ack_pending == 0 and info.num_pending == 0

            with trio.fail_after(20):
                while not await acked():
                    await trio.sleep(0.05)
            rows = await _rows(bus)
    for m in msgs:
        sub = rows[(m.message_id, "submitted")]
        assert sub[4] == op.name and sub[11] and sub[12] == "n1"
        assert rows[(m.message_id, "delivered")][9] == "DELIVRD"


async def test_receipt_answered_with_a_temporary_error_while_events_is_down(
    bus: Bus, nats_url: str, nats_config: NatsConfig
) -> None:
    """The SMSC sends the receipt again (ESME_RX_T_APPN); once EVENTS is back it is taken and logged."""
    async with open_sim(SimConfig(receipt_delay=DelayRange(0.01, 0.02))) as sim:
        op = make_operator(sim.port)
        m = mt(op.name, "receipt waits")
        await trio.to_thread.run_sync(_delete_events_stream, nats_url, nats_config)
        await publish_mt(bus, [m])
        async with running(bus, op) as conn:
            conn.inbound.events_timeout = 0.2
            await wait_for(lambda: sim.stats.deliver_retries >= 1)
            assert sim.receipts_acked == [] and conn.stats.submitted == 0
            await bus.ensure()
            await wait_for(lambda: len(sim.receipts_acked) == 1 and conn.stats.submitted == 1)
            rows = await _rows(bus)
    assert rows[(m.message_id, "delivered")][9] == "DELIVRD"
    assert (m.message_id, "submitted") in rows
    assert conn.inbound.stats.published >= 1
