"""Per-node shares of cluster-wide rate limits, rebalanced by a heartbeat over the bus.

Several gateway processes (nodes, and the workers of a node) serve the same partners and operators.  A
partner's ``throttle_rate`` and an operator's ``tps`` are totals over all of them, so each process applies
a *share* of the limit: ``limit * share(kind, name)``.  The share is a float kept up to date in the
background; the message path never reads anything else (the token bucket's rate is set from it).

How the shares are computed (:class:`ClusterShares`): every ``interval`` (1 s) each process samples its
demand per tracked name (submits asked per second, throttled or not: a cumulative counter the owner gives)
and sends one beacon (core NATS, nothing stored) with all of them.  Each process keeps the last beacon of
every peer; a peer not heard from for ``dead_after`` (3 s) drops out and its share goes back to the
others.  The share of a name is then :func:`allocate` over the processes that track it (itself included):
a floor each, the rest max-min fair by demand, what nobody wants spread evenly — so the shares sum to 1
once every process has heard the others' last beacons (each process counts its own demand as it last
announced it, the value the others use too), a process whose demand is below its fair part gets
what it asks plus headroom, and an idle process holds the floor so that it can start at once (its demand
shows in its next beacon).  A process that starts asks its peers for their beacons and waits ``settle``
for the answers before it reports started; a name newly tracked is announced at once; a process that stops
sends a last beacon saying so, and its share goes back at once.  Between a change and the beacon that tells
it, the shares can add up to a little more than 1 (a new name: its floor, for milliseconds).

:class:`LocalShares` is the single-process form (share 1 for everything): no bus, no heartbeat.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Callable, Sequence
from typing import Any, Final, Protocol

import attrs
import trio

from catalyst_smpp.bus import BusError, MessageBus
from catalyst_smpp.metrics import Metrics

__all__ = ["BEACON_TOPIC", "ClusterShares", "LocalShares", "Shares", "allocate"]

log = logging.getLogger(__name__)

BEACON_TOPIC: Final = "limits"
"""The bus beacon topic of the shares' heartbeat."""

_CHANGE: Final = 1e-3
"""A share that moved less than this is not re-applied (the owner's reconfigure is not free)."""


def allocate(demands: Sequence[float], limit: float, floor: float) -> list[float]:
    """Fractions of ``limit`` (summing to 1) for processes with these demands (in the limit's unit, e.g.
    submits per second).  Each gets ``min(floor, 1/n)``; the rest is shared max-min fair by demand (nobody
    gets more than it asks while another asks for more than it got); what is left over is spread evenly."""
    n = len(demands)
    if n == 0:
        return []
    f = min(max(floor, 0.0), 1.0 / n)
    rest = 1.0 - n * f
    want = [max(0.0, d / limit - f) if limit > 0 and math.isfinite(d) else 0.0 for d in demands]
    got = [0.0] * n
    left = rest
    for k, i in enumerate(sorted(range(n), key=want.__getitem__)):
        give = min(want[i], left / (n - k))
        got[i] = give
        left -= give
    extra = left / n
    return [f + g + extra for g in got]


class Shares(Protocol):
    """What the limits need: a share per (kind, name), pushed to ``apply`` whenever it changes."""

    def share(self, kind: str, name: str) -> float:
        """This process's fraction of the cluster-wide limit of ``name`` (a tracked one: its current share;
        another: what it would get on joining with no demand yet)."""
        ...

    def track(
        self,
        kind: str,
        name: str,
        limit: float,
        demand: Callable[[], float],
        apply: Callable[[float], None],
    ) -> float:
        """Take part in ``name``'s limit: ``demand()`` is a cumulative count of submits asked (sampled
        each interval; a count that goes back starts again from it), ``apply(share)`` is called on every
        change.  Again for a tracked name: new limit / callbacks.  Returns the share to start with."""
        ...

    def untrack(self, kind: str, name: str) -> None: ...

    def members(self, kind: str, name: str) -> list[str]:
        """The processes taking part in ``name`` (this one included), sorted: the same list everywhere
        once the beacons have gone round (the bind deal of operators uses it)."""
        ...

    @property
    def node(self) -> str: ...


class LocalShares:
    """One process alone: every share is 1."""

    def __init__(self, node: str = "local") -> None:
        self._node = node
        self._tracked: set[tuple[str, str]] = set()

    @property
    def node(self) -> str:
        return self._node

    def share(self, kind: str, name: str) -> float:
        return 1.0

    def track(
        self,
        kind: str,
        name: str,
        limit: float,
        demand: Callable[[], float],
        apply: Callable[[float], None],
    ) -> float:
        self._tracked.add((kind, name))
        return 1.0

    def untrack(self, kind: str, name: str) -> None:
        self._tracked.discard((kind, name))

    def members(self, kind: str, name: str) -> list[str]:
        return [self._node]


@attrs.define
class _Entry:
    limit: float
    demand: Callable[[], float]
    apply: Callable[[float], None]
    count: float | None = None
    """The demand counter at the last sample."""
    sampled: float = 0.0
    rate: float = 0.0
    """Recent demand per second (rises at once, falls by half per interval)."""
    share: float = 1.0


@attrs.define
class _Peer:
    heard: float
    demands: dict[str, dict[str, float]]


class ClusterShares:
    """:class:`Shares` over the bus's beacons; see the module notes.  ``run`` must be running."""

    def __init__(
        self,
        bus: MessageBus,
        node: str,
        *,
        interval: float = 1.0,
        dead_after: float = 3.0,
        floor: float = 0.05,
        settle: float | None = None,
        metrics: Metrics | None = None,
        unexported: frozenset[str] = frozenset(),
    ) -> None:
        self.bus = bus
        self._node = node
        self.interval = interval
        self.dead_after = dead_after
        self.floor = floor
        #: how long a starting process listens for its peers' answers before it reports started
        self.settle = min(0.25, interval / 2) if settle is None else settle
        self.metrics = metrics
        #: kinds tracked for their membership only (no rate): not exported as limit_share
        self.unexported = unexported
        self._entries: dict[tuple[str, str], _Entry] = {}
        self._peers: dict[str, _Peer] = {}
        self._wake = trio.Event()
        self._stopping = False
        self.beacons_sent = 0
        self.beacons_heard = 0

    @property
    def node(self) -> str:
        return self._node

    # ---- the interface

    def share(self, kind: str, name: str) -> float:
        e = self._entries.get((kind, name))
        if e is not None:
            return e.share
        return self._compute(kind, name, 0.0, 1.0)

    def track(
        self,
        kind: str,
        name: str,
        limit: float,
        demand: Callable[[], float],
        apply: Callable[[float], None],
    ) -> float:
        key = (kind, name)
        e = self._entries.get(key)
        if e is None:
            e = self._entries[key] = _Entry(limit, demand, apply, sampled=trio.current_time())
            e.count = demand()
            e.share = self._compute(kind, name, 0.0, limit)
            self._export(kind, name, e)
            self._wake.set()  # announce it now: the others make room for it
        else:
            e.limit, e.demand, e.apply = limit, demand, apply
        return e.share

    def untrack(self, kind: str, name: str) -> None:
        if (
            self._entries.pop((kind, name), None) is not None
            and self.metrics is not None
            and kind not in self.unexported
        ):
            for g in (self.metrics.limit_share, self.metrics.limit_demand):
                try:
                    g.remove(kind, name)
                except KeyError:
                    pass

    def members(self, kind: str, name: str) -> list[str]:
        now = trio.current_time()
        out = {self._node}
        for node, p in self._peers.items():
            if now - p.heard < self.dead_after and name in p.demands.get(kind, {}):
                out.add(node)
        return sorted(out)

    # ---- running

    async def run(self, *, task_status: trio.TaskStatus[ClusterShares] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen to the peers' beacons, send ours every ``interval``; started once the peers had
        ``settle`` to answer our first one.  On cancellation a last beacon says we are gone.  When the bus
        cannot listen (closed, NATS away at start) the shares stay as they are and it tries again."""
        started = False
        delay = self.interval
        while True:
            try:
                async with self.bus.beacons(BEACON_TOPIC) as beacons, trio.open_nursery() as n:
                    n.start_soon(self._listen, beacons)
                    try:
                        await self._send(ask=True)
                        await trio.sleep(self.settle)
                        self._rebalance()
                        if not started:
                            started = True
                            task_status.started(self)
                        delay = self.interval
                        await self._beat()
                    finally:
                        with trio.CancelScope(shield=True), trio.move_on_after(1.0):
                            await self._send(bye=True)
                        n.cancel_scope.cancel()
            except BusError as e:
                log.warning("limits heartbeat cannot listen (%s); shares kept as they are, trying again in "
                            "%.0fs", e, delay)  # fmt: skip
                if not started:
                    started = True
                    task_status.started(self)
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _beat(self) -> None:
        while True:
            with trio.move_on_after(self.interval):
                await self._wake.wait()
            self._wake = trio.Event()
            # this process's share from the demand it announced last time, as the others see it: a
            # demand that rises everywhere at once never makes every process take the lion's share
            self._rebalance()
            self._sample()
            await self._send()

    def stop(self) -> None:
        """Drain: send the last beacon at the next tick (the owner cancels ``run`` after it)."""
        self._stopping = True
        self._wake.set()

    async def _listen(self, beacons: trio.abc.ReceiveChannel[bytes]) -> None:
        async for data in beacons:
            try:
                msg = json.loads(data)
                node = str(msg["n"])
                demands = {
                    str(k): {str(nm): float(d) for nm, d in v.items()} for k, v in dict(msg["d"]).items()
                }
            except (ValueError, KeyError, TypeError, AttributeError):
                log.warning("unreadable limits beacon ignored: %r", bytes(data[:100]))
                continue
            if node == self._node:
                continue
            self.beacons_heard += 1
            if msg.get("bye"):
                if self._peers.pop(node, None) is not None:
                    self._rebalance()
                continue
            old = self._peers.get(node)
            self._peers[node] = _Peer(trio.current_time(), demands)
            if msg.get("ask") or old is None:
                self._wake.set()  # a process starting (or one we did not know): answer at once
            if old is None or {k: set(v) for k, v in old.demands.items()} != {
                k: set(v) for k, v in demands.items()
            }:
                self._rebalance()  # it tracks other names now: make room (or take it back) at once

    def _sample(self) -> None:
        now = trio.current_time()
        for e in self._entries.values():
            count = e.demand()
            dt = now - e.sampled
            if dt <= 0:
                continue
            delta = count - e.count if e.count is not None and count >= e.count else count
            rate = delta / dt
            e.rate = max(rate, (e.rate + rate) / 2)
            if e.rate < 1e-3:
                e.rate = 0.0
            e.count, e.sampled = count, now

    async def _send(self, *, ask: bool = False, bye: bool = False) -> None:
        d: dict[str, dict[str, float]] = {}
        if not bye and not self._stopping:
            for (kind, name), e in self._entries.items():
                d.setdefault(kind, {})[name] = round(e.rate, 3)
        msg: dict[str, Any] = {"n": self._node, "d": d}
        if ask:
            msg["ask"] = True
        if bye or self._stopping:
            msg["bye"] = True
        try:
            await self.bus.beacon(BEACON_TOPIC, json.dumps(msg, separators=(",", ":")).encode())
            self.beacons_sent += 1
        except Exception as e:  # a lost beacon is replaced by the next one
            log.debug("limits beacon not sent: %s", e)

    def _compute(self, kind: str, name: str, own: float, limit: float) -> float:
        now = trio.current_time()
        demands = [own]
        for p in self._peers.values():
            if now - p.heard < self.dead_after:
                d = p.demands.get(kind, {}).get(name)
                if d is not None:
                    demands.append(d)
        return allocate(demands, limit, self.floor)[0]

    def _rebalance(self) -> None:
        now = trio.current_time()
        for node in [k for k, p in self._peers.items() if now - p.heard >= self.dead_after]:
            log.info("limits: no heartbeat from %s for %.1fs; its shares go to the others", node,
                     now - self._peers[node].heard)  # fmt: skip
            del self._peers[node]
        if self.metrics is not None:
            self.metrics.cluster_nodes.set(1 + len(self._peers))
        for (kind, name), e in self._entries.items():
            share = self._compute(kind, name, e.rate, e.limit)
            if abs(share - e.share) >= _CHANGE:
                e.share = share
                try:
                    e.apply(share)
                except Exception:
                    log.exception("applying the %s share of %r failed", kind, name)
            self._export(kind, name, e)

    def _export(self, kind: str, name: str, e: _Entry) -> None:
        if self.metrics is not None and kind not in self.unexported:
            self.metrics.limit_share.labels(kind, name).set(e.share)
            self.metrics.limit_demand.labels(kind, name).set(e.rate)
