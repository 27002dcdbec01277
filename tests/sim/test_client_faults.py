"""SmppClient.request (the gateway's operator side) against the simulator through each fault it injects."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import pytest
import trio

from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.sim.config import DelayRange, SimConfig
from catalyst_smpp.sim.server import SmscSimulator, open_simulator
from catalyst_smpp.transport import Reply, ResponseTimeoutError, SessionClosedError, SmppSession

S = CommandStatus


def submit(i: int = 0, registered_delivery: int = 0) -> SubmitSm:
    return SubmitSm(
        source_addr="1",
        destination_addr="447700900001",
        short_message=f"m{i}".encode(),
        registered_delivery=registered_delivery,
    )


@asynccontextmanager
async def client_for(sim: SmscSimulator, handler: object = None, **kw: Any) -> AsyncIterator[SmppClient]:
    session = kw.pop(
        "session",
        SessionConfig(window_size=10, response_timeout=5.0, enquire_link_interval=None, bind_timeout=None),
    )
    cfg = ClientConfig(
        "127.0.0.1",
        sim.port,
        "esme",
        "pw",
        session=session,
        reconnect_initial=0.05,
        reconnect_max=0.2,
        **kw,
    )
    client = SmppClient(cfg, handler)  # type: ignore[arg-type]
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with trio.fail_after(5):
            await client.wait_bound()
        yield client
        await client.aclose()


async def test_throttling_is_absorbed_by_retries() -> None:
    """Every third submit throttled: the client retries each one, the caller only sees successes."""
    async with open_simulator(SimConfig(throttle_fraction=1 / 3)) as sim:
        async with client_for(sim, throttle_delay=0.001, throttle_retries=5) as client:
            with trio.fail_after(10):
                results = [await client.request(submit(i)) for i in range(20)]
    assert [r.command_status for r in results] == [0] * 20
    assert sim.stats.accepted == 20
    assert client.stats.throttled_retries == sim.stats.throttled >= 6
    assert sim.stats.submit_sm == 20 + sim.stats.throttled


async def test_error_statuses_reach_the_caller() -> None:
    statuses = ((int(S.ESME_RSYSERR), 25.0), (0x401, 25.0))
    async with open_simulator(SimConfig(status_mix=statuses)) as sim:
        async with client_for(sim) as client:
            with trio.fail_after(10):
                results = [(await client.request(submit(i))).command_status for i in range(8)]
    assert sorted(results) == [0] * 4 + [int(S.ESME_RSYSERR)] * 2 + [0x401] * 2  # not retried, not hidden
    assert client.stats.throttled_retries == 0
    assert sim.stats.errors == {"ESME_RSYSERR": 2, "vendor_0x00000401": 2}


async def test_latency_and_response_timeout() -> None:
    """Injected latency below the response timeout is waited for; above it the caller gets the error."""
    async with open_simulator(SimConfig(latency=DelayRange(0.05, 0.05))) as sim:
        async with client_for(sim) as client:
            t0 = trio.current_time()
            r = await client.request(submit())
            assert r.command_status == 0 and trio.current_time() - t0 >= 0.05
    async with open_simulator(SimConfig(latency=DelayRange(1.0, 1.0))) as sim:
        session = SessionConfig(
            window_size=10, response_timeout=0.2, enquire_link_interval=None, bind_timeout=None
        )
        async with client_for(sim, session=session) as client:
            with pytest.raises(ResponseTimeoutError):
                await client.request(submit())
            assert client.bound_count == 1  # a timed-out request does not end the session
            await sim.wait_until(lambda s: s.stats.accepted == 1)  # the late answer is dropped quietly
            assert client.sessions()[0].stats.timeouts == 1


async def test_dropped_connection_then_reconnect_with_receipts() -> None:
    """The simulator drops the connection on the 5th submit: that request fails with SessionClosedError,
    the client binds again, later requests work and receipts of earlier messages still arrive."""
    receipts: list[Pdu] = []

    def handler(session: SmppSession, pdu: Pdu) -> Reply:
        receipts.append(pdu)
        return None

    async with open_simulator(SimConfig(drop_after=5, receipt_delay=DelayRange(0.3, 0.3))) as sim:
        async with client_for(sim, handler) as client:
            ok = [await client.request(submit(i, registered_delivery=1)) for i in range(4)]
            assert [r.command_status for r in ok] == [0] * 4
            with pytest.raises(SessionClosedError):
                await client.request(submit(4, registered_delivery=1))
            with trio.fail_after(5):
                while client.stats.binds < 2:
                    await trio.sleep(0.01)
                await client.wait_bound()
            r = await client.request(submit(5, registered_delivery=1))
            assert r.command_status == 0
            await sim.wait_until(lambda s: s.stats.receipts_sent == 5)
    assert client.stats.reconnects >= 1 and sim.stats.drops == 1
    assert sim.stats.unanswered == 1 and sim.stats.accepted == 5
    assert len(receipts) == 5 and all(isinstance(p, DeliverSm) and p.esm_class & 0x04 for p in receipts)
