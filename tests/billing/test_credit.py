"""The node side of credit leases (billing/credit.py) against exact in-memory books."""

from __future__ import annotations

import random
from typing import Any

import psycopg
import trio
import trio.testing

from catalyst_smpp.billing.credit import NEED, REFUSED, CreditLeases, MemoryLeaseStore

PRICE = 4500  # 0.0045 in micro-units


async def _hold(c: CreditLeases, partner: str, micros: int) -> int:
    """What accept does: hold, and on NEED wait for a lease and hold again (once)."""
    r = c.hold(partner, micros)
    if r == NEED:
        await c.acquire(partner, micros)
        r = c.hold(partner, micros)
        if r == NEED:
            r = REFUSED
    return r


async def test_first_hold_needs_a_lease_then_holds_locally() -> None:
    store = MemoryLeaseStore({"acme": 100 * PRICE})
    c = CreditLeases(store, "n1", min_messages=10)
    assert c.hold("acme", PRICE) == NEED
    assert await c.acquire("acme", PRICE)
    calls = store.calls
    ids = {c.hold("acme", PRICE) for _ in range(5)}
    assert len(ids) == 1 and min(ids) > 0
    assert store.calls == calls  # no round trip per message
    assert store.open_amount("acme") == 10 * PRICE


async def test_exhausted_partner_is_refused_without_asking_again() -> None:
    store = MemoryLeaseStore({"acme": 3 * PRICE})
    c = CreditLeases(store, "n1", retry_after=1.0)
    got = [await _hold(c, "acme", PRICE) for _ in range(10)]
    assert sum(1 for g in got if g > 0) == 3
    assert got[3:] == [REFUSED] * 7
    assert store.calls <= 3  # refusals did not each ask the books


async def test_returned_lease_gives_back_exactly_what_was_not_used() -> None:
    store = MemoryLeaseStore({"acme": 1000 * PRICE})
    c = CreditLeases(store, "n1", min_messages=20)
    for _ in range(7):
        assert await _hold(c, "acme", PRICE) > 0
    await c.close()
    assert store.open_amount("acme") == 0
    assert store.balances["acme"] == (1000 - 7) * PRICE
    assert store.used_total("acme") == 7 * PRICE


async def test_unhold_of_a_message_not_stored() -> None:
    store = MemoryLeaseStore({"acme": 100 * PRICE})
    c = CreditLeases(store, "n1")
    lease = await _hold(c, "acme", PRICE)
    c.unhold("acme", lease, PRICE)
    await c.close()
    assert store.balances["acme"] == 100 * PRICE


async def test_idle_lease_is_returned_and_another_node_can_use_it(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = MemoryLeaseStore({"acme": 30 * PRICE})
    a = CreditLeases(store, "a", min_messages=30, idle_return=2.0, retry_after=1.0)
    b = CreditLeases(store, "b", min_messages=30, idle_return=2.0, retry_after=1.0)
    assert await _hold(a, "acme", PRICE) > 0  # a leases everything
    assert await _hold(b, "acme", PRICE) == REFUSED
    async with trio.open_nursery() as n:
        n.start_soon(a.run)
        await trio.sleep(3)  # a is idle: its lease goes back
        got = [await _hold(b, "acme", PRICE) for _ in range(40)]
        n.cancel_scope.cancel()
    assert sum(1 for g in got if g > 0) == 29


async def test_two_nodes_never_hold_more_than_the_balance(autojump_clock: trio.testing.MockClock) -> None:
    """Two nodes, several partners, random prices and pauses: every hold is covered, and once everything is
    returned the books give back exactly what was not held."""
    rnd = random.Random(7)
    balances = {"p1": 500 * PRICE, "p2": 77 * PRICE + 1234}
    store = MemoryLeaseStore(balances)
    nodes = [CreditLeases(store, f"n{i}", min_messages=5, idle_return=1.0, lease_ttl=4.0) for i in range(2)]
    held = {"p1": 0, "p2": 0}

    async def partner_load(node: CreditLeases, partner: str, seed: int) -> None:
        r = random.Random(seed)
        for _ in range(300):
            micros = r.choice([PRICE, 2 * PRICE, 3 * PRICE])
            if await _hold(node, partner, micros) > 0:
                held[partner] += micros
            await trio.sleep(r.random() * 0.05)

    async with trio.open_nursery() as n:
        for node in nodes:
            n.start_soon(node.run)
        async with trio.open_nursery() as load:
            for k, node in enumerate(nodes):
                for partner in balances:
                    load.start_soon(partner_load, node, partner, rnd.randrange(1 << 30) + k)
        for node in nodes:
            await node.close()
        n.cancel_scope.cancel()
    for partner, start in balances.items():
        assert held[partner] <= start
        assert store.open_amount(partner) == 0
        assert store.balances[partner] == start - held[partner]
    assert held["p2"] >= 77 * PRICE - 3 * PRICE  # the small balance was used up (within one message)


class _SlowStore(MemoryLeaseStore):
    """Grants wait until ``go`` is set (a busy database)."""

    def __init__(self, balances: dict[str, int]) -> None:
        super().__init__(balances)
        self.go = trio.Event()

    async def swap(self, partner: str, node: str, old: int | None, used: int, want: int) -> Any:
        await self.go.wait()
        return await super().swap(partner, node, old, used, want)


async def test_a_renewal_does_not_stop_holds_and_returns_exactly_what_was_used() -> None:
    store = _SlowStore({"acme": 1000 * PRICE})
    store.go.set()
    c = CreditLeases(store, "n1", min_messages=10, low_water=0.5)
    first = await _hold(c, "acme", PRICE)
    for _ in range(5):  # half the lease used: it runs low
        assert c.hold("acme", PRICE) == first
    store.go = trio.Event()  # the next grant waits
    async with trio.open_nursery() as n:
        n.start_soon(c.tend)
        await trio.sleep(0.01)
        # the renewal is under way: holds go on against the old lease, none waits
        assert [c.hold("acme", PRICE) for _ in range(3)] == [first] * 3
        store.go.set()
    second = c.hold("acme", PRICE)
    assert second > 0 and second != first
    assert store.leases[first].used == 9 * PRICE  # returned with every hold it took, renewal or not
    await c.close()
    assert store.balances["acme"] == (1000 - 10) * PRICE


class _AwayStore(MemoryLeaseStore):
    """Books that cannot be reached while ``away`` (a Postgres partition)."""

    def __init__(self, balances: dict[str, int]) -> None:
        super().__init__(balances)
        self.away = False

    async def swap(self, partner: str, node: str, old: int | None, used: int, want: int) -> Any:
        if self.away:
            raise psycopg.OperationalError("connection timeout expired")
        return await super().swap(partner, node, old, used, want)

    async def give_back(self, lease_id: int, used: int) -> None:
        if self.away:
            raise psycopg.OperationalError("connection timeout expired")
        await super().give_back(lease_id, used)


async def test_books_unreachable_a_lease_is_held_on_the_nodes_word_for_the_allowance(
    autojump_clock: trio.testing.MockClock,
) -> None:
    store = _AwayStore({"acme": 10_000 * PRICE})
    c = CreditLeases(store, "n1", min_messages=10, lease_seconds=1.0, lease_ttl=30.0, outage_allowance=20.0)
    async with trio.open_nursery() as n:
        await n.start(c.run)
        held = 0
        for _ in range(50):  # 10 messages/s for 5 s: the rate the allowance is sized by
            assert await _hold(c, "acme", PRICE) > 0
            held += 1
            await trio.sleep(0.1)
        store.away = True
        # 10/s on for 20 s with the books away: all of it held on the node's word
        for _ in range(200):
            assert await _hold(c, "acme", PRICE) > 0, held
            held += 1
            await trio.sleep(0.1)
        assert c.outages == 1
        # past the allowance: refused, as for an empty balance
        await trio.sleep(1.0)
        assert await _hold(c, "acme", PRICE) == REFUSED
        store.away = False
        await trio.sleep(2.0)  # the next swap reaches the books
        assert await _hold(c, "acme", PRICE) > 0
        held += 1
        n.cancel_scope.cancel()
    await c.close()
    # the books learn exactly what was held, beyond the granted leases or not
    assert store.used_total("acme") == held * PRICE
    assert store.balances["acme"] == (10_000 - held) * PRICE


async def test_without_an_allowance_a_lease_the_books_cannot_renew_ends_in_refusals() -> None:
    store = _AwayStore({"acme": 10_000 * PRICE})
    c = CreditLeases(store, "n1", min_messages=10, outage_allowance=0.0)
    got = [await _hold(c, "acme", PRICE) for _ in range(10)]  # the first lease: ten messages' worth
    assert all(g > 0 for g in got)
    store.away = True
    assert await _hold(c, "acme", PRICE) == REFUSED
    assert c.outages == 0
