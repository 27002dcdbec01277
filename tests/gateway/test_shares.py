"""Rules of the cluster-wide limits, on the in-memory bus under trio's autojump clock: the allocation, the
shares' heartbeat (join, leave, a process that goes silent), the bind ledger, and a node's partner
throttle and binds at their share.  The same mechanism on real NATS with two gateways:
``tests/e2e/test_e2e_cluster_limits.py``."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable

import pytest
import trio
import trio.testing
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.gateway.bindledger import BindLedger
from catalyst_smpp.gateway.limits import PartnerLimits, operator_deal
from catalyst_smpp.gateway.shares import ClusterShares, LocalShares, allocate
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.server.auth import Account

# ----------------------------------------------------------------------------- allocate


@given(
    demands=st.lists(st.floats(min_value=0, max_value=1e6, allow_nan=False), min_size=1, max_size=12),
    limit=st.floats(min_value=0.01, max_value=1e5),
    floor=st.floats(min_value=0, max_value=0.5),
)
def test_allocation_sums_to_the_limit_with_a_floor_each(
    demands: list[float], limit: float, floor: float
) -> None:
    got = allocate(demands, limit, floor)
    assert sum(got) == pytest.approx(1.0)
    least = min(floor, 1 / len(demands))
    assert all(g >= least - 1e-9 for g in got)
    # max-min fair: a process that got less than it asked has at least as much as every other
    for i, g in enumerate(got):
        if g * limit < demands[i] * (1 - 1e-9) - 1e-9:
            assert all(g >= h - 1e-9 for h in got)


def test_allocation_examples() -> None:
    assert allocate([], 100, 0.05) == []
    assert allocate([0.0], 100, 0.05) == [1.0]
    assert allocate([500, 500], 100, 0.05) == pytest.approx([0.5, 0.5])
    # the small one gets what it asks, the big one the rest
    assert allocate([500, 10], 100, 0.05) == pytest.approx([0.9, 0.1])
    # under the limit in total: each gets its demand, what nobody asks for is spread evenly
    assert allocate([50, 0], 100, 0.05) == pytest.approx([0.725, 0.275])
    # more processes than floors fit: 1/n each
    assert allocate([0.0] * 40, 100, 0.05) == pytest.approx([1 / 40] * 40)


def test_operator_bind_deal_adds_up_to_the_bind_count() -> None:
    for binds in range(1, 9):
        for n in range(1, 6):
            members = [f"n{i}" for i in range(n)]
            deal = [operator_deal(binds, members, m) for m in members]
            assert sum(deal) == binds and max(deal) - min(deal) <= 1
    assert operator_deal(4, ["a", "b"], "c") == 0  # not a member: nothing


# ----------------------------------------------------------------------------- shares over beacons


class Demand:
    """A process's demand counter for one name, driven by the test: ``rate`` submits a second."""

    def __init__(self) -> None:
        self.rate = 0.0
        self.count = 0.0
        self.applied: list[float] = []

    async def run(self) -> None:
        while True:
            await trio.sleep(0.1)
            self.count += self.rate * 0.1


@contextlib.asynccontextmanager
async def node(
    bus: MemoryBus, name: str, nursery: trio.Nursery, **kw: float
) -> AsyncIterator[tuple[ClusterShares, trio.CancelScope]]:
    shares = ClusterShares(bus, name, **kw)  # type: ignore[arg-type]
    scope = trio.CancelScope()

    async def run(task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        with scope:
            await shares.run(task_status=task_status)

    await nursery.start(run)
    yield shares, scope


def track(shares: ClusterShares, demand: Demand, limit: float = 100.0) -> None:
    demand.applied.append(shares.track("partner", "acme", limit, lambda: demand.count, demand.applied.append))


async def test_two_busy_processes_get_half_each_and_a_quiet_one_what_it_asks(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as n:
        da, db = Demand(), Demand()
        n.start_soon(da.run)
        n.start_soon(db.run)
        async with node(memory_bus, "a", n) as (a, _), node(memory_bus, "b", n) as (b, _):
            track(a, da)
            track(b, db)
            da.rate = db.rate = 300.0
            await trio.sleep(5)
            assert a.share("partner", "acme") == pytest.approx(0.5, abs=0.01)
            assert b.share("partner", "acme") == pytest.approx(0.5, abs=0.01)
            assert a.members("partner", "acme") == b.members("partner", "acme") == ["a", "b"]
            db.rate = 10.0  # b asks for 10 of 100: it keeps about that, a gets the rest
            await trio.sleep(15)  # (a demand that falls is halved towards the new one per interval)
            assert b.share("partner", "acme") == pytest.approx(0.1, abs=0.02)
            assert a.share("partner", "acme") + b.share("partner", "acme") == pytest.approx(1.0, abs=0.02)
            assert da.applied[-1] == a.share("partner", "acme")  # pushed to the owner
            db.rate = 0.0  # b idle: a takes all but b's floor, which lets b start at once
            await trio.sleep(15)
            assert a.share("partner", "acme") == pytest.approx(0.95)
            assert b.share("partner", "acme") == pytest.approx(0.05)
            b.untrack("partner", "acme")  # b no longer serves the partner: a gets all at b's next beacon
            await trio.sleep(1.5)
            assert a.share("partner", "acme") == pytest.approx(1.0)
            assert a.members("partner", "acme") == ["a"]
            n.cancel_scope.cancel()


async def test_a_process_that_leaves_or_goes_silent_gives_its_share_back(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    async with trio.open_nursery() as n:
        ds = [Demand() for _ in range(3)]
        for d in ds:
            d.rate = 500.0
            n.start_soon(d.run)
        async with (
            node(memory_bus, "a", n) as (a, _),
            node(memory_bus, "b", n) as (b, b_scope),
            node(memory_bus, "c", n) as (c, _),
        ):
            for s, d in zip((a, b, c), ds, strict=True):
                track(s, d)
            await trio.sleep(5)
            assert a.share("partner", "acme") == pytest.approx(1 / 3, abs=0.01)
            # b leaves in order: its last beacon says so, the others take its share at once
            b_scope.cancel()
            await trio.sleep(0.01)
            assert a.share("partner", "acme") == pytest.approx(0.5, abs=0.01)
            assert c.members("partner", "acme") == ["a", "c"]

            # c goes silent (hung, or cut off): after dead_after a counts it out
            async def mute(**kw: bool) -> None:
                await trio.lowlevel.checkpoint()

            monkeypatch.setattr(c, "_send", mute)
            t0 = trio.current_time()
            while a.share("partner", "acme") < 0.99:
                await trio.sleep(0.1)
            assert trio.current_time() - t0 >= a.dead_after - a.interval
            assert a.members("partner", "acme") == ["a"]
            n.cancel_scope.cancel()


async def test_a_starting_process_hears_its_peers_before_it_reports_started(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as n:
        da = Demand()
        da.rate = 1000.0
        n.start_soon(da.run)
        async with node(memory_bus, "a", n, interval=5.0, dead_after=15.0) as (a, _):
            track(a, da)
            await trio.sleep(12)  # a has sent its demand (every 5 s)
            async with node(memory_bus, "b", n, interval=5.0, dead_after=15.0) as (b, _):
                # started: a answered b's first beacon, so b knows a is busy before its first interval
                assert b.members("partner", "acme") == ["a", "b"]
                assert b.share("partner", "acme") == pytest.approx(0.05)
                db = Demand()
                track(b, db)
                assert db.applied == [pytest.approx(0.05)]
        n.cancel_scope.cancel()


def test_local_shares_are_whole() -> None:
    s = LocalShares("n1")
    assert s.track("partner", "p", 10.0, lambda: 0.0, lambda _: None) == 1.0
    assert s.share("operator", "op") == 1.0 and s.members("partner", "p") == ["n1"]


async def test_shares_are_exported_per_name(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    m = Metrics()
    async with trio.open_nursery() as n, node(memory_bus, "a", n, metrics=m) as (a, _):  # type: ignore[arg-type]
        d = Demand()
        track(a, d)
        await trio.sleep(2)
        assert (
            m.registry.get_sample_value("catalyst_smpp_limit_share", {"kind": "partner", "name": "acme"})
            == 1.0
        )
        assert m.registry.get_sample_value("catalyst_smpp_cluster_nodes") == 1.0
        a.untrack("partner", "acme")
        assert (
            m.registry.get_sample_value("catalyst_smpp_limit_share", {"kind": "partner", "name": "acme"})
            is None
        )
        n.cancel_scope.cancel()


# ----------------------------------------------------------------------------- the bind ledger


def ledger(bus: MemoryBus, name: str, ttl: float = 15.0) -> BindLedger:
    return BindLedger(bus.kv, name, ttl=ttl, clock=trio.current_time)


async def test_ledger_never_grants_more_than_the_limit_over_processes(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = ledger(memory_bus, "a"), ledger(memory_bus, "b")
    granted: list[str] = []

    async def bind(lg: BindLedger) -> None:
        if await lg.acquire("partner", "acme", 3):
            granted.append(lg.node)

    async with trio.open_nursery() as n:  # ten binds at once, five on each process
        for _ in range(5):
            n.start_soon(bind, a)
            n.start_soon(bind, b)
    assert len(granted) == 3
    assert a.held("partner", "acme") + b.held("partner", "acme") == 3
    assert await a.total("partner", "acme") == 3
    assert a.conflicts + b.conflicts > 0 or len(set(granted)) == 1  # concurrent writes were refereed
    loser = b if a.held("partner", "acme") else a
    assert not await loser.acquire("partner", "acme", 3)
    winner = a if loser is b else b
    async with trio.open_nursery() as n:
        await n.start(winner.run)
        winner.release("partner", "acme")  # written in the background, at once
        await trio.sleep(0.1)
        assert await loser.acquire("partner", "acme", 3)
        n.cancel_scope.cancel()


async def test_ledger_counts_of_a_silent_process_lapse_and_a_restart_replaces_its_own(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    a, b = ledger(memory_bus, "a", ttl=6.0), ledger(memory_bus, "b", ttl=6.0)
    async with trio.open_nursery() as n:
        await n.start(a.run)  # a refreshes; b is never run: it goes silent after its binds
        assert await a.acquire("operator", "op", 2) and await b.acquire("operator", "op", 2)
        assert not await a.acquire("operator", "op", 2)
        await trio.sleep(30)  # a's count stays (refreshed every ttl/3), b's lapses after ttl
        assert await a.total("operator", "op") == 1
        assert await a.acquire("operator", "op", 2)
        assert not await ledger(memory_bus, "c", ttl=6.0).acquire("operator", "op", 2)
        # a restarted under the same id starts from nothing: the old process's binds are gone with it
        a2 = ledger(memory_bus, "a", ttl=6.0)
        assert await a2.acquire("operator", "op", 2) and await a2.acquire("operator", "op", 2)
        assert await a2.total("operator", "op") == 2
        n.cancel_scope.cancel()


# ----------------------------------------------------------------------------- a node's partner limits


class Now:
    def __init__(self) -> None:
        self.t = 0.0

    def __call__(self) -> float:
        return self.t


def taken(bucket_take: Callable[[float], bool], now: Now, seconds: float, tries_per_second: int) -> int:
    ok = 0
    for _ in range(int(seconds * tries_per_second)):
        now.t += 1 / tries_per_second
        ok += bucket_take(now.t)
    return ok


async def test_partner_bucket_is_one_per_process_at_its_share(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    async with trio.open_nursery() as n, node(memory_bus, "a", n) as (a, _):
        now = Now()
        limits = PartnerLimits(a, ledger(memory_bus, "a"), clock=now)
        acct = Account("acme", max_binds=2, throttle_rate=100.0, throttle_burst=20.0)
        bucket = limits.bucket_for(acct)
        assert bucket is not None and limits.bucket_for(acct) is bucket  # every listener's binds share it
        assert (bucket.rate, bucket.burst) == (100.0, 20.0)  # alone: all of it
        a._entries["partner", "acme"].apply(0.25)  # what a rebalance pushes
        assert (bucket.rate, bucket.burst) == (25.0, 5.0)
        assert taken(bucket.try_take, now, 10, 1000) <= 25 * 10 + 5
        assert bucket.asked == 10_000  # every submit asked counts as demand, granted or not
        limits.bucket_for(Account("acme", max_binds=2, throttle_rate=40.0, throttle_burst=8.0))  # reload
        assert bucket.rate == pytest.approx(40.0 * a.share("partner", "acme"))
        # binds: counted in the ledger against max_binds
        assert await limits.acquire(acct) and await limits.acquire(acct)
        assert not await limits.acquire(acct)
        limits.release(acct)
        assert limits.ledger is not None and limits.ledger.held("partner", "acme") == 1
        assert await limits.acquire(Account("free"))  # no max_binds: nothing to count
        limits.forget(lambda sid: False)
        fresh = limits.bucket_for(acct)
        assert fresh is not bucket and fresh is not None
        # a bucket with a bind here is kept however idle; without binds, dropped after a quiet minute
        limits.sweep()
        now.t += 120
        limits.sweep()
        assert limits.bucket_for(acct) is fresh
        assert fresh.try_take(now.t)  # demand: the quiet minute starts again
        limits.release(acct)  # no bind left here
        limits.sweep()
        now.t += 59
        limits.sweep()
        assert limits.bucket_for(acct) is fresh
        now.t += 2
        limits.sweep()
        assert limits.bucket_for(acct) is not fresh
        n.cancel_scope.cancel()


async def test_shares_start_and_stay_whole_when_the_bus_cannot_listen(
    autojump_clock: trio.testing.MockClock,
) -> None:
    bus = MemoryBus()
    bus.close()  # as NATS away when the node starts: the node still starts, alone
    async with trio.open_nursery() as n:
        shares = await n.start(ClusterShares(bus, "a").run)
        assert shares.track("partner", "acme", 10.0, lambda: 0.0, lambda _: None) == 1.0
        await trio.sleep(10)  # it keeps trying, quietly
        assert shares.share("partner", "acme") == 1.0
        n.cancel_scope.cancel()
