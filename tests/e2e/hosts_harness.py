"""Helpers of the tests across hosts (tests/e2e/test_e2e_hosts.py) and the power-cut benchmark
(bench/power_cut.py): the simulator as the operator outside the cluster, a partner that knows both nodes,
and the exact count at the end of a fault."""

from __future__ import annotations

import collections
import itertools
import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio

from catalyst_smpp.client import SmppClient
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig
from catalyst_smpp.store import OperatorRepo
from tests.hosts import SMPP_PORT, Bench, addr, root_addr

from .harness import (
    Count,
    Env,
    LoadResult,
    Receipts,
    RecordingSim,
    check_delivered,
    message_log,
    partner_client,
    wait_delivered,
    wait_for,
    wait_message_log,
)

OP_WINDOW = 50  # the operator's window: submits in flight per bind
SIM_WINDOW = SimConfig().window  # deliver_sm in flight per bind at the SMSC
RATE = 100.0  # partner submits per second: the load lasts long enough for a fault in its middle


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
async def host_sim(cls: type[HostSim] = HostSim) -> AsyncIterator[HostSim]:
    sim = cls(sim_config())
    async with trio.open_nursery() as n:
        await n.start(sim.serve)
        try:
            yield sim
        finally:
            n.cancel_scope.cancel()


def sim_config(**kw: Any) -> SimConfig:
    return SimConfig(
        host=root_addr(),
        receipt_delay=DelayRange(0.01, 0.05),
        id_format=IdFormat(IdForm.HEX, width=10, upper=True),
        **kw,
    )


def setup(env: Env, sim_port: int, *, bind_count: int = 2) -> None:
    """The partner, the operator opA (``bind_count`` binds in all: dealt over the nodes with connectors, so
    2 gives each node one) and the route."""
    env.add_partner("acme")
    env.setup(
        lambda c: OperatorRepo(c).add(
            "opA", root_addr(), sim_port, "opA", password="pw", tps=5000.0, window=OP_WINDOW,
            submit_id_format="hex", receipt_id_format="hex", bind_count=bind_count,
        )
    )  # fmt: skip
    env.add_route(None, "44", ["opA"])


def start_gateways(bench: Bench, env: Env, *, connectors: tuple[bool, bool] = (True, True)) -> None:
    # both at once, as an operator starting a cluster does: on a fresh cluster the replicated streams'
    # creation can time out while the leaders are elected, and each node asks again until it is done
    for host, conn in zip(("gw1", "gw2"), connectors, strict=True):
        bench.gateway_config(host, namespace=env.nats.namespace, schema=env.schema, connectors=conn)
        bench.gateways[host].start()
    for host in ("gw1", "gw2"):
        bench.wait_gateway(host)


def peer_hosts(sim: RecordingSim) -> set[str]:
    """The gateway hosts whose connections the SMSC holds bound."""
    out = set()
    for s in sim.server.sessions():
        peer = str(getattr(s, "peer", "") or "")
        for h in ("gw1", "gw2"):
            if addr(h) in peer:
                out.add(h)
    return out


async def start_cluster(bench: Bench, env: Env, sim: RecordingSim) -> None:
    """Both gateway nodes, and the load may start: the operator's binds are dealt one per node.  (The node
    that binds first takes both and hands one over; receipts on the bind it closes are refused with
    ESME_RINVBNDSTS, which a real SMSC sends again and this one does not.)"""
    start_gateways(bench, env)
    await wait_for(lambda: peer_hosts(sim) == {"gw1", "gw2"}, 30, "both connectors bound to the SMSC")


@attrs.define
class Partner:
    """A partner with both nodes' addresses, trying them in order (gw1 first): what partners configure for
    a gateway of several hosts.  ``bound_to``: the node of each connection it made, with the time."""

    receipts: Receipts = attrs.Factory(Receipts)
    order: tuple[str, ...] = ("gw1", "gw2")
    """the nodes it tries, in this order"""
    connections: list[tuple[float, str]] = attrs.Factory(list)
    ack_times: list[float] = attrs.Factory(list)
    client: SmppClient | None = None

    def make(self) -> SmppClient:
        async def connect() -> trio.abc.Stream:
            last: BaseException | None = None
            for host in self.order:
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

    def longest_pause(self, since: float) -> tuple[float, float]:
        """The longest time between two acknowledgements after ``since``, and when (after ``since``) it
        began."""
        after = [t for t in self.ack_times if t >= since]
        return max(((b - a, a - since) for a, b in itertools.pairwise(after)), default=(math.nan, math.nan))

    def resumed_after(self, fault_at: float) -> float:
        """Seconds from ``fault_at`` to the end of the longest pause between acknowledgements after it: when
        traffic flowed again (the acks of submits already under way just before the fault do not count)."""
        after = [t for t in self.ack_times if t >= fault_at]
        if not after:
            return float("nan")
        gaps = [(b - a, b) for a, b in zip([fault_at, *after], after, strict=False)]
        return max(gaps)[1] - fault_at


@asynccontextmanager
async def bound(partner: Partner) -> AsyncIterator[SmppClient]:
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


def dec(shown: str) -> str:
    return str(int(shown, 16))


@attrs.define
class Outcome:
    count: Count
    log: dict[str, collections.Counter[str]]
    receipts_given_up: int
    """acknowledged messages without a receipt at the partner because the SMSC gave up on one"""


async def final_checks(
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
    given_up = shown_ids(load, sim, set(sim.receipts_given_up))
    want = set(load.acked.values()) - given_up
    try:
        await wait_for(
            lambda: want <= {r for r, _ in partner.receipts.items}, 60, "each receipt at the partner"
        )
    except AssertionError as e:
        raise AssertionError(f"{e}: {why_missing(env, load, partner, sim, want)}") from None
    await trio.sleep(1.0)  # a late receipt (a copy's) comes now
    lost_with_sim = given_up - {r for r, _ in partner.receipts.items}
    acked = {dec(i) for i in load.acked.values()}
    # a receipt the SMSC gave up on may still have reached the partner (its DLR stored, the publish ack
    # late: answered as an error, which an SMSC that retries answers with the receipt again -- this one
    # does not): its `delivered` row is not promised
    receipted = {dec(r) for r, _ in partner.receipts.items if r not in given_up}
    try:
        log = await wait_message_log(
            env, {"accepted": acked, "submitted": acked | receipted, "delivered": receipted}, 60
        )
    except AssertionError as e:
        log = message_log(env)
        lacking = {i for i in load.acked.values() if dec(i) not in log.get("delivered", ())}
        lacking &= {r for r, _ in partner.receipts.items}
        raise AssertionError(f"{e}: {story(env, load, partner, sim, lacking)}") from None
    return Outcome(check_delivered(all_texts, load, sim), log, len(lost_with_sim))


def why_missing(env: Env, load: LoadResult, partner: Partner, sim: HostSim, want: set[str]) -> str:
    """What became of the receipts missing at the partner (for the failure message)."""
    return story(env, load, partner, sim, want - {r for r, _ in partner.receipts.items})


def story(env: Env, load: LoadResult, partner: Partner, sim: HostSim, ids: set[str]) -> str:
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
            f"log {[ev for ev in log if dec(shown) in log[ev]]}, "
            f"at the partner {partner.receipts.by_id().get(shown)}"
        )
    return "\n".join(lines)


def shown_ids(load: LoadResult, sim: RecordingSim, op_ids: set[str]) -> set[str]:
    """Our ids (as the partner sees them) of the acknowledged messages of these operator ids."""
    text_of = {m.message_id: m.text for m in sim.messages}
    return {load.acked[t] for op_id in op_ids if (t := text_of.get(op_id) or "") in load.acked}


def assert_exact(out: Outcome, n: int, dup_bound: int, given_up: int = 0) -> None:
    count, log = out.count, out.log
    assert out.receipts_given_up <= given_up, out.receipts_given_up
    assert count.acked == n and count.missing == [] and count.unexpected == 0, count
    assert count.duplicates <= dup_bound, (count, dup_bound)
    doubled = {(mid, ev) for ev, ids in log.items() for mid, k in ids.items() if k > 1}
    assert doubled == set(), sorted(doubled)[:10]
