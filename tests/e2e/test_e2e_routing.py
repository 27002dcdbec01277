"""Routing through the running gateway, checked by its effect at the simulators (the rules themselves are
unit-tested in tests/gateway/test_routing.py): longest prefix, rule priority, failover, weighted share."""

from __future__ import annotations

import trio

from catalyst_smpp.bus import Kind
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.sim import DelayRange, SimConfig

from .harness import (
    Env,
    SimSlot,
    check_delivered,
    open_gateway,
    open_sim,
    partner_client,
    sim_texts,
    submit_load,
    texts,
    wait_delivered,
    wait_settled,
)


def _sim(**kw: object) -> SimConfig:
    return SimConfig(receipt_delay=DelayRange(0.01, 0.05), **kw)  # type: ignore[arg-type]


async def test_longest_prefix_wins_and_no_route_is_refused(env: Env) -> None:
    async with open_sim(_sim()) as sim_a, open_sim(_sim(id_start=1_000_000)) as sim_b:
        env.add_partner("acme")
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_route(None, "44", ["opA"])
        env.add_route(None, "447", ["opB"])
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                to_a, to_b = texts("pfxA", 30), texts("pfxB", 30)
                with trio.fail_after(60):
                    load = await submit_load(client, to_a, "442071234567")
                    await submit_load(client, to_b, "447700900123", result=load)
                    resp = await client.request(
                        SubmitSm(destination_addr="3361234567", short_message=b"nowhere")
                    )
                await wait_delivered(load, lambda: [sim_a, sim_b], 60)
                await client.aclose()
    assert resp.command_status == CommandStatus.ESME_RINVDSTADR
    at_a, at_b = sim_texts(sim_a), sim_texts(sim_b)
    assert set(at_a) == set(to_a) and set(at_b) == set(to_b)
    assert check_delivered(to_a + to_b, load, sim_a, sim_b).duplicates == 0


async def test_rule_priority(env: Env) -> None:
    async with open_sim(_sim()) as sim_a, open_sim(_sim(id_start=1_000_000)) as sim_b:
        env.add_partner("acme")
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_route(None, "44", ["opA"], priority=0)
        env.add_route(None, "44", ["opB"], priority=10)  # same prefix, higher priority
        env.add_route(
            None, "44", ["opA"], priority=20, source_prefix="999"
        )  # higher, but its source filter fails
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                all_texts = texts("prio", 40)
                with trio.fail_after(60):
                    load = await submit_load(client, all_texts)
                await wait_delivered(load, lambda: [sim_a, sim_b], 60)
                await trio.sleep(0.3)
                await client.aclose()
    assert set(sim_texts(sim_b)) == set(all_texts) and len(sim_a.messages) == 0
    assert check_delivered(all_texts, load, sim_a, sim_b).duplicates == 0


async def test_failover_when_the_first_operator_is_down(env: Env) -> None:
    n = 100
    async with trio.open_nursery() as sims_n, open_sim(_sim(id_start=1_000_000)) as sim_b:
        slot_a = SimSlot()
        sim_a = await slot_a.start(sims_n, _sim())
        env.add_partner("acme")
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_route(None, "44", ["opA", "opB"], strategy="failover")
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                first, second = texts("foA", n), texts("foB", n)
                with trio.fail_after(60):
                    load = await submit_load(client, first)
                await wait_delivered(load, lambda: [sim_a], 60)
                await wait_settled(
                    gw, Kind.MT, "opA", 30
                )  # (else a response on the wire is lost: a copy at opB)
                slot_a.stop()  # the first operator goes down; what comes now goes to the second
                with trio.fail_after(60):
                    await submit_load(client, second, result=load)
                await wait_delivered(load, lambda: [sim_a, sim_b], 90)
                await client.aclose()
        sims_n.cancel_scope.cancel()
    assert set(sim_texts(sim_a)) == set(first)
    assert set(sim_texts(sim_b)) == set(second)
    count = check_delivered(first + second, load, sim_a, sim_b)
    assert count.missing == [] and count.duplicates == 0


async def test_weighted_share(env: Env) -> None:
    n = 400
    async with open_sim(_sim()) as sim_a, open_sim(_sim(id_start=1_000_000)) as sim_b:
        env.add_partner("acme")
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_route(None, "44", [("opA", 3), ("opB", 1)], strategy="weighted")
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                all_texts = texts("w", n)
                with trio.fail_after(90):
                    load = await submit_load(client, all_texts)
                await wait_delivered(load, lambda: [sim_a, sim_b], 60)
                await client.aclose()
    count = check_delivered(all_texts, load, sim_a, sim_b)
    assert count.missing == [] and count.duplicates == 0
    share = len(sim_a.messages) / n
    print(f"weighted 3:1 → opA {len(sim_a.messages)}, opB {len(sim_b.messages)}")
    # 3:1 expects 0.75; 0.6..0.9 is about ±7 standard deviations for 400 draws
    assert 0.6 <= share <= 0.9 and len(sim_a.messages) + len(sim_b.messages) == n
