"""Credit leases on a gateway node: holding a message's price without a database round trip per message.

Each node draws credit for a partner from its balance in blocks (a **lease**, granted by the books in one
transaction that locks the partner's account, so two nodes never lease the same credit).  Accept holds each
message's price against the local lease in memory (:meth:`CreditLeases.hold`); the books learn of each hold
from the message log (the ``accepted`` row, stored before the partner is answered) and settle it from there.

A lease is replaced (**swapped**: the old one returned with what was used, a new one granted, one
transaction) when it runs low, and returned when it expires, when the partner has been idle for
``idle_return`` seconds, and on drain.  While a partner's swap is in flight its holds answer :data:`NEED`
(the accept batcher waits for the swap, then holds again): the used amount a swap returns is then exact.
When the books cannot cover even the message asked for, the partner is **refused** without asking again for
``retry_after`` seconds, so an empty balance does not cost a database round trip per refused message.

Sizing: a lease is ``lease_seconds`` of the partner's recent rate on this node (held amount per second,
smoothed), at least ``min_messages`` times the price asked for and at most ``lease_max`` micro-units; the
books may grant less when less is available.  Amounts are integers in micro-units
(:meth:`~catalyst_smpp.billing.money.Money.micros`).

**Postgres unreachable.**  A swap or renewal that fails because the books cannot be reached (connection
refused, timed out, a partition) does not stop a partner that holds a lease: the node keeps holding against
it **on its own word** for up to ``outage_allowance`` seconds, extended once by that many seconds of the
partner's recent rate.  The holds still reach the books through the message log once Postgres is back, and
the lease is returned with what it really used, which may then exceed what was granted: the books stay exact
(balance = the ledger), and a prepaid balance can go below zero by at most the allowance per node.  Beyond
the allowance, or for a partner with no lease yet, the partner is refused as for an empty balance.  0 turns
this off (refuse as soon as a lease cannot be renewed).

The books are behind :class:`LeaseStore` (the Postgres one is in :mod:`catalyst_smpp.billing.books`);
:class:`MemoryLeaseStore` is an exact in-memory one for tests of the rules here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Final, Protocol

import attrs
import psycopg
import trio

__all__ = [
    "NEED",
    "REFUSED",
    "CreditLeases",
    "Grant",
    "LeaseStore",
    "MemoryLeaseStore",
]

log = logging.getLogger(__name__)

NEED: Final = -1
"""``hold``: no local credit yet; await :meth:`CreditLeases.acquire` and hold again."""
REFUSED: Final = -2
"""``hold``: the partner's credit is exhausted (the books said so less than ``retry_after`` ago)."""


@attrs.frozen
class Grant:
    """A lease the books granted: its id and amount (micro-units of the account's currency)."""

    lease_id: int
    amount: int
    currency: str


class LeaseStore(Protocol):
    """The books' side of leases (each call one transaction)."""

    async def swap(self, partner: str, node: str, old: int | None, used: int, want: int) -> Grant | None:
        """Return lease ``old`` (when not None) with ``used`` micro-units used, then grant a new lease of up
        to ``want`` for ``partner`` on ``node``: None when nothing is available."""
        ...

    async def give_back(self, lease_id: int, used: int) -> None:
        """Return a lease with ``used`` micro-units used."""
        ...


def _unreachable(exc: BaseException) -> bool:
    """The books could not be reached (as opposed to refusing or failing a statement)."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError | OSError | trio.TooSlowError)


@attrs.define
class _Local:
    """This node's lease of one partner."""

    lease_id: int | None = None
    amount: int = 0
    used: int = 0
    currency: str = ""
    expires: float = 0.0  # trio clock
    last_hold: float = 0.0
    since: float = 0.0  # when the lease was taken
    rate: float = 0.0  # smoothed micro-units held per second
    swapping: trio.Event | None = None
    refused_until: float = -math.inf
    outage_since: float | None = None  # holding on the node's word since then (the books unreachable)
    renewing: trio.Event | None = None  # set when a background renewal in flight ends
    outage_extra: int = 0  # what the lease was extended by for it


class CreditLeases:
    """This node's credit leases, one per billed partner (see the module notes).  Run :meth:`run` in a
    nursery for renewals and returns; :meth:`close` returns every lease (drain)."""

    def __init__(
        self,
        store: LeaseStore,
        node: str,
        *,
        lease_seconds: float = 5.0,
        lease_ttl: float = 30.0,
        lease_max: int = 10**12,
        min_messages: int = 10,
        idle_return: float = 2.0,
        retry_after: float = 1.0,
        low_water: float = 0.25,
        outage_allowance: float = 60.0,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.store = store
        self.node = node
        self.lease_seconds = lease_seconds
        self.lease_ttl = lease_ttl
        self.lease_max = lease_max
        self.min_messages = min_messages
        self.idle_return = idle_return
        self.retry_after = retry_after
        self.low_water = low_water
        self.outage_allowance = outage_allowance
        self.clock = clock
        self._leases: dict[str, _Local] = {}
        self._wake = trio.lowlevel.ParkingLot()
        self._low: set[str] = set()  # partners whose lease ran low: renewed by run()
        self.swaps = 0
        self.refusals = 0
        self.outages = 0  # times a lease was extended on the node's word

    # ------------------------------------------------------------------ the accept side (sync)

    def hold(self, partner: str, micros: int) -> int:
        """Hold ``micros`` of ``partner``'s credit: the lease id it is held against, or :data:`NEED` /
        :data:`REFUSED`."""
        loc = self._leases.get(partner)
        now = self.clock()
        if loc is None:
            return NEED
        if loc.swapping is None and loc.lease_id is not None and now < loc.expires:
            left = loc.amount - loc.used
            if micros <= left:
                loc.used += micros
                loc.last_hold = now
                if left - micros < loc.amount * self.low_water and partner not in self._low:
                    self._low.add(partner)  # renewed in the background before it runs out
                    self._wake.unpark_all()
                return loc.lease_id
        if now < loc.refused_until:
            self.refusals += 1
            return REFUSED
        return NEED

    def unhold(self, partner: str, lease_id: int, micros: int) -> None:
        """Give back a hold whose message was not stored (so never held in the books)."""
        loc = self._leases.get(partner)
        if loc is not None and loc.lease_id == lease_id and loc.swapping is None:
            loc.used = max(0, loc.used - micros)

    def currency(self, partner: str) -> str | None:
        loc = self._leases.get(partner)
        return loc.currency or None if loc is not None else None

    # ------------------------------------------------------------------ swaps

    async def acquire(self, partner: str, micros: int) -> bool:
        """Make sure ``partner`` has a lease that can hold ``micros`` (swapping the current one); False when
        the books cannot cover it (the partner is then refused for ``retry_after`` seconds)."""
        loc = self._leases.setdefault(partner, _Local())
        while loc.swapping is not None:
            await loc.swapping.wait()
        if loc.renewing is not None:
            # a renewal is already asking the books: its answer (or its failure, when they cannot be
            # reached) settles this too, instead of a second question waiting as long
            await loc.renewing.wait()
        now = self.clock()
        if loc.lease_id is not None and now < loc.expires and loc.amount - loc.used >= micros:
            return True
        if now < loc.refused_until:
            return False
        await self._swap(partner, loc, micros)
        return loc.lease_id is not None and loc.amount - loc.used >= micros

    def _want(self, loc: _Local, micros: int) -> int:
        want = max(micros * self.min_messages, int(loc.rate * self.lease_seconds))
        return max(micros, min(want, self.lease_max))

    async def _swap(self, partner: str, loc: _Local, micros: int) -> None:
        loc.swapping = done = trio.Event()
        try:
            now = self.clock()
            if loc.lease_id is not None and now > loc.since:
                # the rate over the lease just ending, smoothed with the one before
                rate = loc.used / max(now - loc.since, 0.1)
                loc.rate = rate if loc.rate == 0 else 0.5 * (loc.rate + rate)
            want = self._want(loc, micros)
            try:
                grant = await self.store.swap(partner, self.node, loc.lease_id, loc.used, want)
            except Exception as exc:
                # nothing changed in the books (one transaction): keep the lease, refuse for a moment --
                # unless the books are unreachable and the lease may be held on the node's word
                if _unreachable(exc) and self._ride_out(partner, loc, micros, exc):
                    return
                if not _unreachable(exc):
                    log.exception("[%s] credit lease swap failed", partner)
                loc.refused_until = self.clock() + self.retry_after
                return
            self.swaps += 1
            self._reached(partner, loc)
            now = self.clock()
            if grant is None:
                loc.lease_id, loc.amount, loc.used = None, 0, 0
                loc.refused_until = now + self.retry_after
                return
            loc.lease_id, loc.amount, loc.used, loc.currency = grant.lease_id, grant.amount, 0, grant.currency
            loc.expires = now + self.lease_ttl
            loc.since = now
            if grant.amount < micros:
                loc.refused_until = now + self.retry_after
            else:
                loc.refused_until = -math.inf
        finally:
            loc.swapping = None
            done.set()

    async def _renew(self, partner: str, loc: _Local) -> None:
        """Replace a lease that runs low or expires soon WITHOUT stopping holds: a new lease is granted while
        the old one still holds, then the partner switches to it and the old one is returned with what it
        used (nothing holds against it after the switch, so that amount is exact)."""
        old, since = loc.lease_id, loc.since
        if old is None:
            return
        loc.renewing = renewing = trio.Event()
        try:
            await self._renew_lease(partner, loc, old, since)
        finally:
            loc.renewing = None
            renewing.set()

    async def _renew_lease(self, partner: str, loc: _Local, old: int, since: float) -> None:
        now = self.clock()
        if now > since:
            rate = loc.used / max(now - since, 0.1)
            loc.rate = rate if loc.rate == 0 else 0.5 * (loc.rate + rate)
        try:
            grant = await self.store.swap(partner, self.node, None, 0, self._want(loc, 0))
        except Exception as exc:
            if not (_unreachable(exc) and self._ride_out(partner, loc, 0, exc)):
                log.warning("[%s] credit lease renewal failed (the current lease goes on): %s", partner, exc)
            return
        self.swaps += 1
        self._reached(partner, loc)
        # nothing more to lease (the old one runs out), or a swap for a message replaced it (done or going)
        if grant is None or loc.lease_id != old or loc.swapping is not None:
            if grant is not None:
                await self._return(partner, grant.lease_id, 0)
            return
        used = loc.used
        now = self.clock()
        loc.lease_id, loc.amount, loc.used, loc.currency = grant.lease_id, grant.amount, 0, grant.currency
        loc.expires, loc.since = now + self.lease_ttl, now
        await self._return(partner, old, used)

    def _ride_out(self, partner: str, loc: _Local, micros: int, exc: BaseException) -> bool:
        """The books cannot be reached: hold against the current lease on this node's word (extended once
        by ``outage_allowance`` seconds of the partner's rate); whether ``micros`` more can be held."""
        if self.outage_allowance <= 0 or loc.lease_id is None:
            return False
        now = self.clock()
        if loc.outage_since is None:
            loc.outage_since = now
            extra = max(int(loc.rate * self.outage_allowance), micros * self.min_messages)
            loc.outage_extra = min(extra, self.lease_max)
            loc.amount += loc.outage_extra
            loc.expires = now + self.outage_allowance
            self.outages += 1
            log.warning(
                "[%s] Postgres unreachable for credit lease %s (%s): holding on this node's word for up to "
                "%.0fs, %d micro-units beyond the lease",
                partner, loc.lease_id, " ".join(str(exc).split()) or type(exc).__name__,
                self.outage_allowance, loc.outage_extra,
            )  # fmt: skip
        return now < loc.expires and loc.amount - loc.used >= micros

    def _reached(self, partner: str, loc: _Local) -> None:
        if loc.outage_since is not None:
            beyond = max(0, loc.used - (loc.amount - loc.outage_extra))
            log.warning(
                "[%s] Postgres reachable again for credit leases after %.1fs; %d micro-units held beyond "
                "the lease meanwhile",
                partner, self.clock() - loc.outage_since, beyond,
            )  # fmt: skip
            loc.outage_since, loc.outage_extra = None, 0

    async def _return(self, partner: str, lease_id: int, used: int) -> None:
        try:
            await self.store.give_back(lease_id, used)
        except Exception:
            log.exception("[%s] returning credit lease %s failed (it lapses in the books)", partner, lease_id)

    async def _give_back(self, partner: str, loc: _Local) -> None:
        if loc.lease_id is None or loc.swapping is not None:
            return
        loc.swapping = done = trio.Event()
        lease_id, used = loc.lease_id, loc.used
        try:
            await self.store.give_back(lease_id, used)
            self._reached(partner, loc)
            loc.lease_id, loc.amount, loc.used = None, 0, 0
        except Exception as exc:
            if _unreachable(exc):  # asked again next round; the writer's warnings say Postgres is away
                log.debug("[%s] returning credit lease %s: %s", partner, lease_id, exc)
            else:
                log.exception(
                    "[%s] returning credit lease %s failed (it lapses in the books)", partner, lease_id
                )
        finally:
            loc.swapping = None
            done.set()

    # ------------------------------------------------------------------ background

    async def run(
        self, *, tick: float = 0.5, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Renew leases that ran low, return expiring and idle ones; every ``tick`` or when woken."""
        task_status.started()
        while True:
            with trio.move_on_after(tick):
                await self._wake.park()
            await self.tend()

    async def tend(self) -> None:
        """One round of renewals and returns (what :meth:`run` does each tick)."""
        now = self.clock()
        low, self._low = self._low, set()
        for partner, loc in list(self._leases.items()):
            if loc.lease_id is None or loc.swapping is not None:
                continue
            if now - loc.last_hold >= self.idle_return and now - loc.since >= self.idle_return:
                await self._give_back(partner, loc)
            elif partner in low or now >= loc.expires - min(self.lease_ttl / 4, 5.0):
                await self._renew(partner, loc)

    async def close(self) -> None:
        """Return every lease (drain)."""
        for partner, loc in list(self._leases.items()):
            while loc.swapping is not None:
                await loc.swapping.wait()
            await self._give_back(partner, loc)


@attrs.define
class _MemLease:
    partner: str
    node: str
    amount: int
    used: int | None = None  # None while open


class MemoryLeaseStore:
    """Exact in-memory books for tests: ``balances[partner]`` micro-units available for leasing; a returned
    lease gives back ``amount - used`` (negative when a node held beyond it while the books were away)."""

    def __init__(self, balances: dict[str, int], currency: str = "EUR") -> None:
        self.balances = dict(balances)
        self.currency = currency
        self.leases: dict[int, _MemLease] = {}
        self.calls = 0

    async def swap(self, partner: str, node: str, old: int | None, used: int, want: int) -> Grant | None:
        self.calls += 1
        await trio.sleep(0)
        if old is not None:
            self._return(old, used)
        n = min(want, self.balances.get(partner, 0))
        if n <= 0:
            return None
        self.balances[partner] -= n
        lease_id = len(self.leases) + 1
        self.leases[lease_id] = _MemLease(partner, node, n)
        return Grant(lease_id, n, self.currency)

    async def give_back(self, lease_id: int, used: int) -> None:
        self.calls += 1
        await trio.sleep(0)
        self._return(lease_id, used)

    def _return(self, lease_id: int, used: int) -> None:
        lease = self.leases[lease_id]
        if lease.used is not None:
            raise AssertionError(f"lease {lease_id} returned twice")
        if used < 0:
            raise AssertionError(f"lease {lease_id}: used {used} of {lease.amount}")
        lease.used = used
        self.balances[lease.partner] += lease.amount - used

    def open_amount(self, partner: str) -> int:
        return sum(le.amount for le in self.leases.values() if le.partner == partner and le.used is None)

    def used_total(self, partner: str) -> int:
        return sum(le.used or 0 for le in self.leases.values() if le.partner == partner)
