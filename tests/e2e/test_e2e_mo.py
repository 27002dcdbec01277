"""MO end to end: the SMSC simulator sends mobile-originated messages (numbered texts) → the operator
connector → MO route (destination prefix → partner) → ``MO.<partner>`` on JetStream → deliver_sm to the
partner, received by smpplib (a third-party client).  Exact counts: each MO once, none lost; an MO without a
route is answered with a temporary error at the operator side (ESME_RX_T_APPN), counted, and sent again by
the SMSC until a route added later takes it; an MO for a partner that is not bound waits for its bind.
"""

from __future__ import annotations

import collections
from collections.abc import Callable

import trio

from catalyst_smpp.bus import Kind
from catalyst_smpp.sim import SimConfig

from .harness import Env, SmpplibPartner, open_gateway, open_sim, wait_for, wait_settled

PHONE = "447700900001"


def _mo_sim(count: int, dest: str, tag: str) -> SimConfig:
    return SimConfig(
        receipts=False,
        mo_rate=100.0,
        mo_count=count,
        mo_dest=dest,
        mo_source=PHONE,
        mo_text=f"{tag} {{n}} from the phone",
    )


def _texts(tag: str, count: int) -> list[str]:
    return [f"{tag} {i} from the phone" for i in range(1, count + 1)]


def _read(n: int) -> Callable[[SmpplibPartner], None]:
    """Read deliver_sm until ``n`` came, then a second more (a copy would come then)."""
    return lambda p: p.read_until(lambda: len(p.received) >= n, 45.0)


def _received(partner: SmpplibPartner) -> collections.Counter[tuple[str, str, str, int]]:
    """(source, destination, text, esm_class) → how many times the partner got it."""
    return collections.Counter(
        (p.source_addr.decode(), p.destination_addr.decode(), p.short_message.decode(), p.esm_class)
        for p in partner.received
    )


async def test_mo_routed_to_the_partner_and_unrouted_mo_kept_until_a_route(env: Env) -> None:
    n, n_unrouted = 40, 15
    # opA's SMSC sends MO to 12345 (routed to acme by the prefix 123), opB's to 55501 (no MO route yet)
    async with (
        open_sim(_mo_sim(n, "12345", "mo")) as sim_a,
        open_sim(_mo_sim(n_unrouted, "55501", "late")) as sim_b,
    ):
        env.add_partner("acme")
        env.add_partner("other")
        env.add_partner("late")
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_mo_route("123", "acme")
        env.add_mo_route("1", "other")  # a shorter prefix: loses to 123
        async with open_gateway(env, "gw-a") as gw:
            partner = SmpplibPartner(gw.ports[0], "acme", bind="receiver")
            with trio.fail_after(60):
                await trio.to_thread.run_sync(partner.run, _read(n))
            await wait_for(lambda: sim_a.stats.mo_sent == n, 10, "the SMSC saw each MO acknowledged")
            inbound_a = gw.connectors["opA"][0].inbound.stats
            inbound_b = gw.connectors["opB"][0].inbound.stats
            # no route yet: each unrouted MO answered with a temporary error, kept and sent again by the SMSC
            await wait_for(
                lambda: inbound_b.mo_unrouted >= 2 * n_unrouted and sim_b.stats.deliver_retries >= n_unrouted,
                30,
                "each unrouted MO refused for now and sent again",
            )
            assert (inbound_b.mo, sim_b.stats.mo_sent, sim_b.stats.mo_failed) == (0, 0, 0)
            # the route added now takes them all, once each
            env.add_mo_route("555", "late")
            late = SmpplibPartner(gw.ports[0], "late", bind="receiver")
            with trio.fail_after(60):
                await trio.to_thread.run_sync(late.run, _read(n_unrouted))
            await wait_for(lambda: sim_b.stats.mo_sent == n_unrouted, 10, "the SMSC saw each MO acknowledged")
            acme = await wait_settled(gw, Kind.MO, "acme", 10)  # each MO acknowledged by smpplib
            late_info = await wait_settled(gw, Kind.MO, "late", 10)
            other = await (await gw.bus.consumer(Kind.MO, "other")).info()
    got = _received(partner)
    assert got == collections.Counter((PHONE, "12345", t, 0) for t in _texts("mo", n)), got
    assert (inbound_a.mo, inbound_a.mo_unrouted) == (n, 0)
    assert _received(late) == collections.Counter((PHONE, "55501", t, 0) for t in _texts("late", n_unrouted))
    assert inbound_b.mo == n_unrouted and sim_b.stats.mo_failed == 0  # none dropped by the SMSC
    # nothing sent twice; nothing for the partner of the shorter prefix
    assert acme.num_redelivered == 0 and acme.delivered_stream_seq >= n
    assert late_info.num_redelivered == 0
    assert (other.num_pending, other.num_ack_pending) == (0, 0)


async def test_mo_for_an_offline_partner_accumulates_and_arrives_when_it_binds(env: Env) -> None:
    n = 30
    async with open_sim(_mo_sim(n, "12345", "late")) as sim:
        env.add_partner("acme")
        env.add_operator("opA", sim.port)
        env.add_mo_route("12345", "acme")
        async with open_gateway(env, "gw-a") as gw:
            # nobody bound: the gateway acknowledges each MO to the SMSC once it is stored on JetStream
            await wait_for(lambda: sim.stats.mo_sent == n, 30, "every MO taken by the gateway")
            await trio.sleep(1.0)
            assert "acme" not in gw.deliveries
            consumer = await gw.bus.consumer(Kind.MO, "acme")
            assert (await consumer.info()).num_pending == n, "waiting in MO.acme"
            partner = SmpplibPartner(gw.ports[0], "acme", bind="transceiver")
            with trio.fail_after(60):
                await trio.to_thread.run_sync(partner.run, _read(n))
            info = await wait_settled(gw, Kind.MO, "acme", 10)  # each acknowledged by the partner
    assert _received(partner) == collections.Counter((PHONE, "12345", t, 0) for t in _texts("late", n))
    assert info.num_redelivered == 0
