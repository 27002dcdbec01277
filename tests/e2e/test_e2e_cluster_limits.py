"""Limits across nodes on real NATS and Postgres: two gateway nodes serve one partner; its throttle holds in
total (not twice over) and its max_binds counts the binds on both.  Two nodes with connectors to one
operator: its bind_count is dealt out (never more binds at the SMSC at once) and its tps holds in total.

No timing is asserted: the submits accepted are counted over the load and compared with what the rate
allows over the time it actually took (``rate * T * 1.2 + burst``), and with what two independent nodes
would have let through (twice that) — the share mechanism is what keeps the total under the first bound.
"""

from __future__ import annotations

from typing import Any

import trio

from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.gateway import Gateway
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.sim import DelayRange, SimConfig
from catalyst_smpp.transport import SessionError

from .harness import PASSWORD, Env, RecordingSim, open_gateway, partner_client, submit_load, texts, wait_for

RATE = 40.0
BURST = 10
LOAD_SECONDS = 6.0
ATTEMPTS_PER_NODE = 3 * RATE  # each node is asked for three times the whole rate: both want more than half

_THROTTLED = int(CommandStatus.ESME_RTHROTTLED)


def _client(port: int, *, reconnect: bool = True) -> SmppClient:
    return SmppClient(
        ClientConfig(
            host="127.0.0.1",
            port=port,
            system_id="acme",
            password=PASSWORD,
            binds=(BindType.TRANSMITTER,),
            session=SessionConfig(window_size=20, response_timeout=10.0, bind_timeout=None),
            reconnect=reconnect,
            reconnect_initial=0.2,
            reconnect_max=1.0,
            throttle_retries=0,
        )
    )


async def _load(client: SmppClient, seconds: float, rate: float, counts: dict[str, int]) -> None:
    """Submit at ``rate`` attempts a second for ``seconds``; count the answers by outcome."""
    interval = 1.0 / rate
    start = trio.current_time()

    async def one(i: int) -> None:
        pdu = SubmitSm(source_addr="12345", destination_addr="447700900001", short_message=f"m{i}".encode())
        try:
            resp = await client.request(pdu)
        except SessionError:
            counts["lost"] += 1
            return
        status = resp.command_status
        counts["ok" if status == 0 else "throttled" if status == _THROTTLED else f"0x{status:x}"] += 1

    async with trio.open_nursery() as n:
        i = 0
        while trio.current_time() - start < seconds:
            n.start_soon(one, i)
            i += 1
            await trio.sleep_until(start + i * interval)


async def test_partner_throttle_and_max_binds_hold_across_two_nodes(env: Env) -> None:
    env.add_operator("op1", 9)  # never connected (no connectors): accepted messages wait in MT
    env.add_partner("acme", throttle_rate=RATE, throttle_burst=BURST, max_binds=2)
    env.add_route(None, "44", ["op1"])
    async with (
        open_gateway(env, "gw-a", node_num=1, connectors=False) as a,
        open_gateway(env, "gw-b", node_num=2, connectors=False) as b,
    ):
        ca, cb = _client(a.ports[0]), _client(b.ports[0])
        async with trio.open_nursery() as n:
            await n.start(ca.run)
            await n.start(cb.run)
            with trio.fail_after(20):
                await ca.wait_bound()
                await cb.wait_bound()
            # each node serves the partner and has heard the other does (a hang guard, not a timing check)
            await wait_for(
                lambda: (
                    a.shares.members("partner", "acme")
                    == b.shares.members("partner", "acme")
                    == ["gw-a", "gw-b"]
                ),
                20,
                "both nodes to know both serve acme",
            )

            # max_binds = 2 is held by one bind on each node: a third is refused on either
            for gw in (a, b):
                third = _client(gw.ports[0], reconnect=False)
                async with trio.open_nursery() as n3:
                    await n3.start(third.run)
                    await wait_for(
                        lambda t=third: t.stats.bind_failures + t.stats.binds > 0,
                        20,
                        "the third bind's answer",
                    )
                    n3.cancel_scope.cancel()
                assert (third.stats.binds, third.stats.bind_failures) == (0, 1)

            counts = {"ok": 0, "throttled": 0, "lost": 0}
            per_node = [dict(counts), dict(counts)]
            started = trio.current_time()
            async with trio.open_nursery() as load:
                load.start_soon(_load, ca, LOAD_SECONDS, ATTEMPTS_PER_NODE, per_node[0])
                load.start_soon(_load, cb, LOAD_SECONDS, ATTEMPTS_PER_NODE, per_node[1])
            took = trio.current_time() - started
            shares = (a.shares.share("partner", "acme"), b.shares.share("partner", "acme"))
            n.cancel_scope.cancel()

    ok = per_node[0]["ok"] + per_node[1]["ok"]
    allowed = RATE * took * 1.2 + BURST
    summary = (
        f"accepted {ok} in {took:.1f}s (node a {per_node[0]}, node b {per_node[1]}); allowed {allowed:.0f}"
    )
    print(summary)
    assert ok <= allowed, summary
    # and the rate is used: both nodes accept, and together well over one node's half of it
    assert per_node[0]["ok"] > 0 and per_node[1]["ok"] > 0, summary
    assert ok >= RATE * took * 0.6, summary
    assert per_node[0]["throttled"] + per_node[1]["throttled"] > 0, summary
    # both busy: half each
    assert shares[0] + shares[1] <= 1.0 + 1e-6 and min(shares) > 0.3, shares


class _TimedSim(RecordingSim):
    """The simulator, noting when each submit arrived and the most binds it held at once."""

    def __init__(self) -> None:
        super().__init__(SimConfig(receipt_delay=DelayRange(0.0, 0.0)))
        self.arrivals: list[float] = []
        self.most_bound = 0

    def _accepted(self, conn: Any, pdu: Any, verdict: Any, now: float) -> None:
        super()._accepted(conn, pdu, verdict, now)
        self.arrivals.append(trio.current_time())

    async def watch_binds(self) -> None:
        while True:  # the invariant at every sample (not a timing check)
            self.most_bound = max(self.most_bound, self.bound_sessions)
            await trio.sleep(0.005)


OP_TPS = 40.0
OP_BINDS = 3
OP_MESSAGES = 240


async def test_operator_binds_and_tps_hold_across_two_nodes(env: Env) -> None:
    sim = _TimedSim()
    async with trio.open_nursery() as n:
        await n.start(sim.serve)
        n.start_soon(sim.watch_binds)
        env.add_operator("op1", sim.port, tps=OP_TPS, bind_count=OP_BINDS, window=10)
        env.add_partner("acme")
        env.add_route(None, "44", ["op1"])
        async with open_gateway(env, "gw-a", node_num=1) as a:
            await wait_for(lambda: _op_binds(a) == OP_BINDS, 20, "node a alone to hold all 3 binds")
            async with open_gateway(env, "gw-b", node_num=2) as b:
                # the deal over two nodes: 2 + 1; a gives one back before b takes it
                await wait_for(
                    lambda: (_op_binds(a), _op_binds(b)) == (2, 1), 30, "the binds dealt out as 2 + 1"
                )
                assert b.shares.members("operator_binds", "op1") == ["gw-a", "gw-b"]
                client = partner_client(a.ports[0])
                async with trio.open_nursery() as pn:
                    await pn.start(client.run)
                    with trio.fail_after(20):
                        await client.wait_bound()
                    load = await submit_load(client, texts("op", OP_MESSAGES), concurrency=20)
                    assert len(load.acked) == OP_MESSAGES
                    await wait_for(lambda: len(sim.arrivals) >= OP_MESSAGES, 60, "every message at the SMSC")
                    pn.cancel_scope.cancel()
                shares = (a.shares.share("operator", "op1"), b.shares.share("operator", "op1"))
        n.cancel_scope.cancel()
    assert sim.most_bound <= OP_BINDS, f"the SMSC saw {sim.most_bound} binds at once"
    took = sim.arrivals[-1] - sim.arrivals[0]
    burst = 2 * max(1.0, OP_TPS / 10)  # each node's client may run a burst ahead of its schedule
    summary = f"{len(sim.arrivals)} submits in {took:.1f}s at tps {OP_TPS:g} (shares {shares})"
    print(summary)
    assert len(sim.arrivals) <= OP_TPS * took * 1.2 + burst, summary
    # each node reads its own view, up to one heartbeat apart from the other's: while demand moves the two
    # views may disagree by a share's floor (5 %); the total rate above is the bound the operator sees
    assert sum(shares) <= 1.05 + 1e-6, summary


def _op_binds(gw: Gateway) -> int:
    have = gw.connectors.get("op1")
    return int(have[0].binds) if have is not None else 0
