"""Gateway nodes standing in for each other across hosts (the bench of tests/hosts.py: a three-node NATS
cluster with JetStream at replicas 3, Postgres, two ``catalyst-smpp run`` nodes, each on a host of its own;
the partner and the operator's SMSC simulator in this process, outside the cluster).

Each fault runs under a paced load and ends with an exact count: every message the partner got ESME_ROK for
is at the simulator (lost = 0); every acknowledged message's receipt reaches the partner (receipts lost = 0)
-- except, in the cut, receipts the simulator sent into the cut and gave up on (it does not send a receipt
again after a deliver_sm timeout; counted and bounded); the message log has each acknowledged message's
``accepted``, ``submitted`` and ``delivered`` rows, none twice; copies at the simulator are counted and
bounded by what the fault makes unavoidable.  The time from the fault to traffic flowing again is printed
(not asserted).  Helpers: hosts_harness.py.
"""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.sim import SimConfig
from catalyst_smpp.store import PartnerRepo
from catalyst_smpp.store.plan_repo import PlanRepo
from tests.hosts import Bench, nats_url, open_bench

from .harness import Env, open_env, submit_load, texts, wait_delivered, wait_for
from .hosts_harness import (
    OP_WINDOW,
    RATE,
    SIM_WINDOW,
    HostSim,
    Partner,
    RecordingSim,
    assert_exact,
    bound,
    final_checks,
    host_sim,
    peer_hosts,
    setup,
    start_cluster,
)
from .test_e2e_billing import HEADER as PLAN_HEADER
from .test_e2e_billing import PRICE, _books, _check_settled

# one worker runs them all, one after the other, on one bench: benches side by side (tests/hosts.py can) made
# the whole suite slower on this 2-core machine, whose CPU is what the suite waits for (6:00 against 4:50),
# and stretched the faults' timing
pytestmark = [pytest.mark.xdist_group("hosts"), pytest.mark.slow]


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    with open_bench() as b:
        yield b


@pytest.fixture
def henv(bench: Bench, tmp_path: Path) -> Iterator[Env]:
    with open_env(tmp_path, nats_url("n1"), bench.dsn) as e:
        yield e
    for h in list(bench.cuts):  # a failed test may leave a host cut: its gateway stops quicker reachable
        bench.restore(h)
    bench.stop_gateways()
    bench.keep_logs(tmp_path / "logs")


# --------------------------------------------------------------------------- (a) the MT stream's NATS leader


async def test_nats_node_leading_mt_killed_and_restarted(bench: Bench, henv: Env) -> None:
    n = 1500
    all_texts = texts("lead", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with host_sim() as sim:
        setup(henv, sim.port)
        await start_cluster(bench, henv, sim)
        stream = f"{henv.nats.namespace}_MT"
        async with bound(partner) as client:

            async def fault() -> None:
                await wait_for(lambda: len(partner.ack_times) >= n // 3, 60, "a third acknowledged")
                leader = await trio.to_thread.run_sync(bench.stream_leader, stream)
                assert leader in bench.nats, leader
                marks["leader"] = leader
                marks["killed_at"] = trio.current_time()
                marks["acked_at_kill"] = len(partner.ack_times)
                bench.nats[leader].kill()
                # a new leader among the two left
                await wait_for(
                    lambda: bench.stream_leader(stream) not in (None, leader), 30, "a new MT leader"
                )
                marks["new_leader"] = bench.stream_leader(stream)
                marks["elected_after"] = trio.current_time() - marks["killed_at"]
                await trio.sleep(4.0)
                marks["acked_while_down"] = len(partner.ack_times) - marks["acked_at_kill"]
                bench.nats[leader].start()
                marks["restarted_at"] = trio.current_time()
                await trio.to_thread.run_sync(bench.wait_nats_ready)

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fault)
                with trio.fail_after(150):
                    load = await submit_load(client, all_texts, rate=RATE, on_ack=partner.on_ack)
            out = await final_checks(henv, load, partner, sim, all_texts)
        await trio.to_thread.run_sync(bench.stop_gateways)  # the simulator answers the drains
    resumed = partner.resumed_after(marks["killed_at"])
    print(
        f"MT leader {marks['leader']} killed after {marks['acked_at_kill']} acks; new leader "
        f"{marks['new_leader']} seen {marks['elected_after']:.2f}s later; partner traffic flowing again "
        f"{resumed:.2f}s after the kill; {marks['acked_while_down']} acked while it was down; "
        f"connections {partner.connections}"
    )
    assert marks["acked_while_down"] > 0, marks  # traffic continued on two nodes of three
    assert [h for _, h in partner.connections] == ["gw1"], partner.connections  # the partner stayed bound
    # copies: re-submits of unknown outcome, and operator submits whose id mappings could not be stored
    # while the KV's stream elected its leader (nak'ed after 0.8 x ack_wait, submitted again): at most the
    # in-flight submits of each node's connector.  A receipt that arrived during the election is answered
    # only once its DLR is stored, which can take longer than the SMSC waits (10 s): the SMSC gives up on
    # it (at most a window per node's bind; exempt from the receipt checks, as a real SMSC would send again)
    assert_exact(out, n, dup_bound=len(load.uncertain) + 2 * OP_WINDOW, given_up=2 * SIM_WINDOW)


# --------------------------------------------------------------------------- (b) a gateway node killed


class OneBindSim(HostSim):
    """An SMSC that takes one bind at a time (as many operators do per account): a second node's connector
    is refused (ESME_RALYBND) until the holder's connection is gone."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.server.authenticator = _OneBind(self, self.server.authenticator)


@attrs.define
class _OneBind:
    sim: RecordingSim
    inner: Any

    async def authenticate(self, bind: Any) -> Any:
        if self.sim.bound_sessions >= 1:
            return int(CommandStatus.ESME_RALYBND)
        return await self.inner.authenticate(bind)


async def test_gateway_node_killed_holding_partner_and_operator(bench: Bench, henv: Env) -> None:
    n = 1500
    all_texts = texts("node", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with host_sim(OneBindSim) as sim:
        setup(henv, sim.port, bind_count=1)  # the operator's one bind: held by one node at a time
        bench.gateway_config("gw1", namespace=henv.nats.namespace, schema=henv.schema)
        bench.gateways["gw1"].start()
        bench.wait_gateway("gw1")
        await wait_for(lambda: sim.bound_sessions == 1, 30, "gw1's connector bound to the SMSC")
        bench.gateway_config("gw2", namespace=henv.nats.namespace, schema=henv.schema)
        bench.gateways["gw2"].start()
        bench.wait_gateway("gw2")
        async with bound(partner) as client:
            assert peer_hosts(sim) == {"gw1"} and partner.connections[-1][1] == "gw1"

            async def fault() -> None:
                await wait_for(lambda: len(partner.ack_times) >= n // 3, 60, "a third acknowledged")
                marks["at_sim_at_kill"] = len(sim.messages)
                marks["killed_at"] = t0 = trio.current_time()
                bench.gateways["gw1"].kill()
                await wait_for(lambda: peer_hosts(sim) == {"gw2"}, 90, "gw2's connector bound to the SMSC")
                marks["operator_after"] = trio.current_time() - t0
                at = len(sim.messages)
                await wait_for(lambda: len(sim.messages) > at, 30, "submits from gw2")
                marks["submits_after"] = trio.current_time() - t0
                bench.gateways["gw1"].start()
                await trio.to_thread.run_sync(bench.wait_gateway, "gw1")
                marks["gw1_back_after"] = trio.current_time() - t0

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fault)
                with trio.fail_after(200):
                    load = await submit_load(client, all_texts, rate=RATE, on_ack=partner.on_ack)
            out = await final_checks(henv, load, partner, sim, all_texts)
        await trio.to_thread.run_sync(bench.stop_gateways)  # the simulator answers the drains
    t0 = marks["killed_at"]
    rebound = next(t for t, h in partner.connections if h == "gw2" and t >= t0) - t0
    resumed = partner.resumed_after(t0)
    print(
        f"gw1 killed: the partner rebound on gw2 after {rebound:.2f}s, its traffic flowed again after "
        f"{resumed:.2f}s; gw2 bound the SMSC after {marks['operator_after']:.2f}s, submitted after "
        f"{marks['submits_after']:.2f}s; gw1 back {marks['gw1_back_after']:.2f}s; binds at the SMSC "
        f"{sim.stats.binds}; connections {[(round(t - t0, 2), h) for t, h in partner.connections]}"
    )
    assert [h for _, h in partner.connections][:2] == ["gw1", "gw2"], partner.connections
    # copies: partner re-submits of unknown outcome, and gw1's submits in flight at the SMSC when it died
    # (their ids never stored: redelivered by JetStream after ack_wait, submitted again by gw2)
    assert_exact(out, n, dup_bound=len(load.uncertain) + OP_WINDOW)


# --------------------------------------------------------------------------- (c) a gateway node cut off


async def test_gateway_node_cut_off_for_30s(bench: Bench, henv: Env) -> None:
    n = 5000
    all_texts = texts("cut", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with host_sim() as sim:
        setup(henv, sim.port)
        await start_cluster(bench, henv, sim)
        async with bound(partner) as client:
            assert partner.connections[-1][1] == "gw1"

            async def fault() -> None:
                await wait_for(lambda: len(partner.ack_times) >= 500, 60, "500 acknowledged")
                marks["cut_at"] = t0 = trio.current_time()
                bench.cut("gw1")
                await trio.sleep(30.0)
                marks["acked_in_cut"] = len([t for t in partner.ack_times if t >= t0])
                binds = sim.stats.binds
                bench.restore("gw1")
                marks["restored_at"] = trio.current_time()
                # gw1 serves again: its connector (which gave its link up during the cut) binds anew
                await wait_for(lambda: sim.stats.binds > binds, 90, "gw1's connector bound again")
                marks["gw1_operator_back"] = trio.current_time() - marks["restored_at"]

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fault)
                with trio.fail_after(240):
                    load = await submit_load(client, all_texts, rate=RATE, on_ack=partner.on_ack)
                # the cut and gw1's return happen within the load (50 s at RATE)
            assert "gw1_operator_back" in marks, marks
            out = await final_checks(henv, load, partner, sim, all_texts)
        # a partner binding to gw1 now is served there
        late = Partner()
        late_texts = texts("back", 50)
        async with bound(late) as client:
            assert late.connections[-1][1] == "gw1"
            with trio.fail_after(60):
                late_load = await submit_load(client, late_texts)
        await wait_delivered(late_load, lambda: [sim], 60)
        await trio.to_thread.run_sync(bench.stop_gateways)  # the simulator answers the drains
    t0 = marks["cut_at"]
    rebound = next(t for t, h in partner.connections if h == "gw2" and t >= t0) - t0
    print(
        f"receipts the SMSC gave up on (sent into the cut): {out.receipts_given_up} of acknowledged "
        f"messages, {sim.stats.receipts_failed} in all"
    )
    print(
        f"gw1 cut off 30 s: the partner rebound on gw2 after {rebound:.2f}s, traffic flowing again after "
        f"{partner.resumed_after(t0):.2f}s, {marks['acked_in_cut']} acked during the cut; "
        f"gw1's connector back "
        f"{marks['gw1_operator_back']:.2f}s after the cut ended; SMSC binds {sim.stats.binds}, disconnects "
        f"{sim.stats.disconnects}"
    )
    assert marks["acked_in_cut"] > 0
    # copies: re-submits of unknown outcome (the partner's requests lost in the cut), and gw1's operator
    # submits in flight when it was cut (redelivered after ack_wait to gw2), once per connection it lost.
    # Receipts: every one a gateway took is at the partner; the SMSC gives up on what it sends into the cut
    # (a window of deliver_sm per 10 s response timeout, while its connection to gw1 lasts)
    # the SMSC gives up a window of receipts per response timeout (10 s) for as long as it keeps the cut
    # session: the 30 s of the cut and until its own link checks end that session (seen: 4 to 6 windows)
    assert_exact(out, n, dup_bound=len(load.uncertain) + 2 * OP_WINDOW, given_up=SIM_WINDOW * 8)
    assert late_load.acked.keys() == set(late_texts)


# --------------------------------------------------------------------------- (d) Postgres cut off


def _bill(env: Env, partner: str, topped: Decimal) -> int:
    """``partner`` billed per submitted part on a price plan, its account topped up; its id."""

    def setup(conn: Any) -> int:
        plans = PlanRepo(conn)
        plans.add("retail", "price", "EUR")
        plans.import_csv("retail", f"{PLAN_HEADER}\n44,44,DEFAULT,,{PRICE},,2020-01-01T00:00:00+00:00,\n")
        PartnerRepo(conn).change(partner, price_plan="retail")
        pid = PartnerRepo(conn).get(partner).id
        books.open_account(conn, pid, "EUR")
        books.topup(conn, pid, Money(topped, "EUR"), "test credit", "test")
        return pid

    return env.setup(setup)  # type: ignore[no-any-return]


async def test_postgres_cut_off_for_a_minute(bench: Bench, henv: Env) -> None:
    """Postgres unreachable (its packets dropped: connections hang, as in a partition) for 60 s under a
    billed load through both nodes: traffic goes on, and afterwards the message log and the books are exact
    (every hold settled, balance = top-up - captured, ledger, credit entries and CDRs agreeing)."""
    rate, n = 50.0, 4500
    topped = Decimal(1000)
    all_texts = texts("pg", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with host_sim() as sim:
        setup(henv, sim.port)
        pid = _bill(henv, "acme", topped)
        await start_cluster(bench, henv, sim)
        async with bound(partner) as client:

            async def fault() -> None:
                await wait_for(lambda: len(partner.ack_times) >= 500, 60, "500 acknowledged")
                marks["cut_at"] = t0 = trio.current_time()
                bench.cut("pg")
                await trio.sleep(60.0)
                marks["acked_in_cut"] = len([t for t in partner.ack_times if t >= t0])
                marks["at_sim_in_cut"] = len(sim.messages)
                bench.restore("pg")

            async with trio.open_nursery() as nursery:
                nursery.start_soon(fault)
                with trio.fail_after(240):
                    load = await submit_load(client, all_texts, rate=rate, on_ack=partner.on_ack)
            out = await final_checks(henv, load, partner, sim, all_texts)
            await wait_for(lambda: _books(henv, pid)["open_holds"] == 0, 90, "every hold settled")
        bench.stop_gateways()
    print(
        f"Postgres cut for 60 s: {marks['acked_in_cut']} submits acknowledged during the cut "
        "(paced at {:.0f}/s), longest pause {:.2f}s from {:.1f}s after the cut began".format(
            rate, *partner.longest_pause(marks["cut_at"])
        )
    )
    # traffic went on: in the cut's minute at least three quarters of what was acknowledged per second in
    # the 10 s before it (the pace this machine kept up; a few seconds' pause when the cut begins)
    t0 = marks["cut_at"]
    before = len([t for t in partner.ack_times if t0 - 10 <= t < t0]) / 10
    assert marks["acked_in_cut"] >= 0.75 * before * 60, (marks, before)
    assert_exact(out, n, dup_bound=len(load.uncertain))
    b = _books(henv, pid)
    _check_settled(b, topped)
    assert b["counts"]["capture"] == b["submitted"] >= n, b
