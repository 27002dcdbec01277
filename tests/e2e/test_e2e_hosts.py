"""Gateway nodes standing in for each other across hosts (the bench of tests/hosts.py: a three-node NATS
cluster with JetStream at replicas 3, Postgres, two ``catalyst-smpp run`` nodes, each on a host of its own;
the partner and the operator's SMSC simulator in this process, outside the cluster).

Each fault runs under a paced load and ends with an exact count: every message the partner got ESME_ROK for
is at the simulator (lost = 0); every receipt the simulator had is taken by a gateway, and every one taken
reaches the partner (receipts lost = 0); the message log has each acknowledged message's ``accepted``,
``submitted`` and ``delivered`` rows, none twice; copies at the simulator are counted and bounded by what the
fault makes unavoidable.  The time from the fault to traffic flowing again is printed (not asserted).
"""

from __future__ import annotations

import collections
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import pytest
import trio

from catalyst_smpp.client import SmppClient
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig
from catalyst_smpp.store import OperatorRepo
from tests.hosts import ROOT_ADDR, SMPP_PORT, Bench, addr, nats_url, open_bench

from .harness import (
    Count,
    Env,
    LoadResult,
    Receipts,
    RecordingSim,
    check_delivered,
    message_log,
    open_env,
    partner_client,
    submit_load,
    texts,
    wait_delivered,
    wait_for,
    wait_message_log,
)

pytestmark = [pytest.mark.xdist_group("hosts"), pytest.mark.slow]

OP_WINDOW = 50  # the operator's window: submits in flight per bind
SIM_WINDOW = SimConfig().window  # deliver_sm in flight per bind at the SMSC
RATE = 100.0  # partner submits per second: the load lasts long enough for a fault in its middle


@pytest.fixture(scope="module")
def bench() -> Iterator[Bench]:
    with open_bench() as b:
        yield b


@pytest.fixture
def henv(bench: Bench, tmp_path: Path) -> Iterator[Env]:
    with open_env(tmp_path, nats_url("n1"), bench.dsn) as e:
        yield e
    bench.stop_gateways()
    bench.keep_logs(tmp_path / "logs")
    for h in list(bench.cuts):
        bench.restore(h)


# --------------------------------------------------------------------------- helpers


class HostSim(RecordingSim):
    """The recording simulator, also remembering the receipts it gave up on: a deliver_sm with no response
    within its response_timeout (10 s; sent into a cut) or refused for good.  This simulator does not send
    such a receipt again, and the gateway never saw it (or saw it after the SMSC stopped waiting)."""

    def __init__(self, config: SimConfig) -> None:
        super().__init__(config)
        self.receipts_given_up: list[str] = []

    def _receipt_answered(self, pdu: Any, status: int | None) -> None:
        super()._receipt_answered(pdu, status)
        if status != 0:
            rid = pdu.get_tlv(Tag.receipted_message_id)
            rid_text = (rid.decode() if isinstance(rid, bytes) else str(rid)).rstrip("\0")
            if rid_text in self._by_receipt_id:
                self.receipts_given_up.append(self._by_receipt_id[rid_text])


@asynccontextmanager
async def _host_sim(cls: type[HostSim] = HostSim) -> AsyncIterator[HostSim]:
    sim = cls(_sim())
    async with trio.open_nursery() as n:
        await n.start(sim.serve)
        try:
            yield sim
        finally:
            n.cancel_scope.cancel()


def _sim(**kw: Any) -> SimConfig:
    return SimConfig(
        host=ROOT_ADDR,
        receipt_delay=DelayRange(0.01, 0.05),
        id_format=IdFormat(IdForm.HEX, width=10, upper=True),
        **kw,
    )


def _setup(env: Env, sim_port: int) -> None:
    env.add_partner("acme")
    env.setup(
        lambda c: OperatorRepo(c).add(
            "opA", ROOT_ADDR, sim_port, "opA", password="pw", tps=5000.0, window=OP_WINDOW,
            submit_id_format="hex", receipt_id_format="hex",
        )
    )  # fmt: skip
    env.add_route(None, "44", ["opA"])


def _start_gateways(bench: Bench, env: Env, *, connectors: tuple[bool, bool] = (True, True)) -> None:
    # one after the other: the first makes the streams (replicas 3) -- two nodes making them at once on a
    # fresh cluster can take longer than the request timeout, and a node whose start-up fails so exits
    for host, conn in zip(("gw1", "gw2"), connectors, strict=True):
        bench.gateway_config(host, namespace=env.nats.namespace, schema=env.schema, connectors=conn)
        bench.gateways[host].start()
        bench.wait_gateway(host)


@attrs.define
class Partner:
    """A partner with both nodes' addresses, trying them in order (gw1 first): what partners configure for
    a gateway of several hosts.  ``bound_to``: the node of each connection it made, with the time."""

    receipts: Receipts = attrs.Factory(Receipts)
    connections: list[tuple[float, str]] = attrs.Factory(list)
    ack_times: list[float] = attrs.Factory(list)
    client: SmppClient | None = None

    def make(self) -> SmppClient:
        async def connect() -> trio.abc.Stream:
            last: BaseException | None = None
            for host in ("gw1", "gw2"):
                try:
                    with trio.fail_after(2.0):  # a cut host does not answer: give up on it soon
                        stream = await trio.open_tcp_stream(addr(host), SMPP_PORT)
                    self.connections.append((trio.current_time(), host))
                    return stream
                except (OSError, trio.TooSlowError) as e:
                    last = e
            raise OSError(f"no gateway reachable: {last!r}")

        self.client = partner_client(0, handler=self.receipts.handler, connect=connect, response_timeout=5.0)
        return self.client

    def on_ack(self, n: int) -> None:
        self.ack_times.append(trio.current_time())

    def resumed_after(self, fault_at: float) -> float:
        """Seconds from ``fault_at`` to the end of the longest pause between acknowledgements after it: when
        traffic flowed again (the acks of submits already under way just before the fault do not count)."""
        after = [t for t in self.ack_times if t >= fault_at]
        if not after:
            return float("nan")
        gaps = [(b - a, b) for a, b in zip([fault_at, *after], after, strict=False)]
        return max(gaps)[1] - fault_at


@asynccontextmanager
async def _bound(partner: Partner) -> AsyncIterator[SmppClient]:
    client = partner.make()
    async with trio.open_nursery() as n:
        await n.start(client.run)
        with trio.fail_after(30):
            await client.wait_bound()
        try:
            yield client
        finally:
            await client.aclose()
            n.cancel_scope.cancel()


def _dec(shown: str) -> str:
    return str(int(shown, 16))


@attrs.define
class Outcome:
    count: Count
    log: dict[str, collections.Counter[str]]
    receipts_given_up: int
    """acknowledged messages without a receipt at the partner because the SMSC gave up on one"""


async def _final_checks(
    env: Env, load: LoadResult, partner: Partner, sim: HostSim, all_texts: list[str]
) -> Outcome:
    """Wait until everything acknowledged is at the SMSC, every receipt the SMSC has is settled (taken by a
    gateway or given up on), every one taken is at the partner, and the message log has caught up."""
    await wait_delivered(load, lambda: [sim], 90)
    await wait_for(
        lambda: set(sim.receipts_acked) | set(sim.receipts_given_up) >= set(sim.receipt_stats),
        90,
        "every receipt the SMSC has settled",
    )
    # every acknowledged message has its receipt at the partner, except where the SMSC gave up on the
    # receipt of one of its copies: the other copy's receipt (taken) then carries an operator id whose
    # submit_sm_resp the gateway never read (lost in the cut), which it answers and counts as unknown
    given_up = _shown_ids(load, sim, set(sim.receipts_given_up))
    want = set(load.acked.values()) - given_up
    try:
        await wait_for(
            lambda: want <= {r for r, _ in partner.receipts.items}, 60, "each receipt at the partner"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}: {_why_missing(env, load, partner, sim, want)}") from None
    await trio.sleep(1.0)  # a late receipt (a copy's) comes now
    lost_with_sim = given_up - {r for r, _ in partner.receipts.items}
    acked = {_dec(i) for i in load.acked.values()}
    # a receipt the SMSC gave up on may still have reached the partner (its DLR stored, the publish ack
    # late: answered as an error, which an SMSC that retries answers with the receipt again -- this one
    # does not): its `delivered` row is not promised
    receipted = {_dec(r) for r, _ in partner.receipts.items if r not in given_up}
    try:
        log = await wait_message_log(
            env, {"accepted": acked, "submitted": acked | receipted, "delivered": receipted}, 60
        )
    except AssertionError as e:
        log = message_log(env)
        lacking = {i for i in load.acked.values() if _dec(i) not in log.get("delivered", ())}
        lacking &= {r for r, _ in partner.receipts.items}
        raise AssertionError(f"{e}: {_story(env, load, partner, sim, lacking)}") from None
    return Outcome(check_delivered(all_texts, load, sim), log, len(lost_with_sim))


def _why_missing(env: Env, load: LoadResult, partner: Partner, sim: HostSim, want: set[str]) -> str:
    """What became of the receipts missing at the partner (for the failure message)."""
    return _story(env, load, partner, sim, want - {r for r, _ in partner.receipts.items})


def _story(env: Env, load: LoadResult, partner: Partner, sim: HostSim, ids: set[str]) -> str:
    """What became of these messages (shown ids), for a failure message."""
    missing = sorted(ids)
    text_of = {v: k for k, v in load.acked.items()}
    copies: dict[str, list[str]] = collections.defaultdict(list)
    for m in sim.messages:
        copies[m.text or ""].append(m.message_id)
    log = message_log(env)
    lines = [f"{len(missing)} missing"]
    for shown in missing[:8]:
        ops = copies[text_of[shown]]
        lines.append(
            f"{shown}: operator ids {ops}, taken {[o for o in ops if o in sim.receipts_acked]}, given up "
            f"{[o for o in ops if o in sim.receipts_given_up]}, "
            f"log {[ev for ev in log if _dec(shown) in log[ev]]}, "
            f"at the partner {partner.receipts.by_id().get(shown)}"
        )
    return "\n".join(lines)


def _shown_ids(load: LoadResult, sim: RecordingSim, op_ids: set[str]) -> set[str]:
    """Our ids (as the partner sees them) of the acknowledged messages of these operator ids."""
    text_of = {m.message_id: m.text for m in sim.messages}
    return {load.acked[t] for op_id in op_ids if (t := text_of.get(op_id) or "") in load.acked}


def _assert_exact(out: Outcome, n: int, dup_bound: int, given_up: int = 0) -> None:
    count, log = out.count, out.log
    assert out.receipts_given_up <= given_up, out.receipts_given_up
    assert count.acked == n and count.missing == [] and count.unexpected == 0, count
    assert count.duplicates <= dup_bound, (count, dup_bound)
    doubled = {(mid, ev) for ev, ids in log.items() for mid, k in ids.items() if k > 1}
    assert doubled == set(), sorted(doubled)[:10]


# --------------------------------------------------------------------------- (a) the MT stream's NATS leader


async def test_nats_node_leading_mt_killed_and_restarted(bench: Bench, henv: Env) -> None:
    n = 1500
    all_texts = texts("lead", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with _host_sim() as sim:
        _setup(henv, sim.port)
        _start_gateways(bench, henv)
        stream = f"{henv.nats.namespace}_MT"
        async with _bound(partner) as client:

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
            out = await _final_checks(henv, load, partner, sim, all_texts)
        bench.stop_gateways()
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
    # in-flight submits of each node's connector
    _assert_exact(out, n, dup_bound=len(load.uncertain) + 2 * OP_WINDOW)


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


def _peer_hosts(sim: RecordingSim) -> set[str]:
    """The gateway hosts whose connections the SMSC holds bound."""
    out = set()
    for s in sim.server.sessions():
        peer = str(getattr(s, "peer", "") or "")
        for h in ("gw1", "gw2"):
            if addr(h) in peer:
                out.add(h)
    return out


async def test_gateway_node_killed_holding_partner_and_operator(bench: Bench, henv: Env) -> None:
    n = 1500
    all_texts = texts("node", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with _host_sim(OneBindSim) as sim:
        _setup(henv, sim.port)
        bench.gateway_config("gw1", namespace=henv.nats.namespace, schema=henv.schema)
        bench.gateways["gw1"].start()
        bench.wait_gateway("gw1")
        await wait_for(lambda: sim.bound_sessions == 1, 30, "gw1's connector bound to the SMSC")
        bench.gateway_config("gw2", namespace=henv.nats.namespace, schema=henv.schema)
        bench.gateways["gw2"].start()
        bench.wait_gateway("gw2")
        async with _bound(partner) as client:
            assert _peer_hosts(sim) == {"gw1"} and partner.connections[-1][1] == "gw1"

            async def fault() -> None:
                await wait_for(lambda: len(partner.ack_times) >= n // 3, 60, "a third acknowledged")
                marks["at_sim_at_kill"] = len(sim.messages)
                marks["killed_at"] = t0 = trio.current_time()
                bench.gateways["gw1"].kill()
                await wait_for(lambda: _peer_hosts(sim) == {"gw2"}, 90, "gw2's connector bound to the SMSC")
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
            out = await _final_checks(henv, load, partner, sim, all_texts)
        bench.stop_gateways()
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
    _assert_exact(out, n, dup_bound=len(load.uncertain) + OP_WINDOW)


# --------------------------------------------------------------------------- (c) a gateway node cut off


async def test_gateway_node_cut_off_for_30s(bench: Bench, henv: Env) -> None:
    n = 5000
    all_texts = texts("cut", n)
    partner = Partner()
    marks: dict[str, Any] = {}
    async with _host_sim() as sim:
        _setup(henv, sim.port)
        _start_gateways(bench, henv)
        await wait_for(lambda: _peer_hosts(sim) == {"gw1", "gw2"}, 30, "both connectors bound to the SMSC")
        async with _bound(partner) as client:
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
            out = await _final_checks(henv, load, partner, sim, all_texts)
        # a partner binding to gw1 now is served there
        late = Partner()
        late_texts = texts("back", 50)
        async with _bound(late) as client:
            assert late.connections[-1][1] == "gw1"
            with trio.fail_after(60):
                late_load = await submit_load(client, late_texts)
        await wait_delivered(late_load, lambda: [sim], 60)
        bench.stop_gateways()
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
    _assert_exact(out, n, dup_bound=len(load.uncertain) + 2 * OP_WINDOW, given_up=SIM_WINDOW * 5)
    assert late_load.acked.keys() == set(late_texts)
