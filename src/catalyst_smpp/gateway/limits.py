"""A node's part of the cluster-wide limits: partner throttles and binds, operator TPS and binds.

* **Partner throttle**: one token bucket per partner on this process, shared by every listener's binds and
  the HTTP API, at ``throttle_rate * share`` with a burst of ``throttle_burst * share`` (at least 1), the
  share from :mod:`.shares` (demand: the submits the bucket was asked for).  The message path only calls
  the bucket's ``try_take``; a share change reconfigures the bucket in the background.
* **Partner max_binds**: counted in the :class:`.bindledger.BindLedger` (the server's ``bind_claims``
  hook), checked at bind time only.  A bucket without binds here and unused for a minute is dropped, so
  a process that served a partner once does not keep a floor of its rate.
* **Operator TPS**: the connector's client runs at ``tps * share`` (demand: the submits it asked a TPS
  token for), set without reconnecting.
* **Operator bind_count**: dealt out over the processes that may run a connector for the operator (the
  :meth:`.shares.Shares.members` list of ``operator_binds``, the same on every node once the beacons have
  gone round: the
  first ``bind_count % n`` get one more), and each process binds only as many as it has taken in the
  ledger (limit ``bind_count``): while the deal changes (a process joins or leaves) a process gives its
  surplus back before another can take it, so the operator never sees more than ``bind_count`` binds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Final, Protocol

import trio

from catalyst_smpp.gateway.bindledger import BindLedger
from catalyst_smpp.gateway.link import OperatorLink
from catalyst_smpp.gateway.shares import Shares
from catalyst_smpp.server.auth import Account
from catalyst_smpp.store.records import Operator
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = [
    "MIN_SHARE",
    "OPERATOR",
    "OPERATOR_BINDS",
    "PARTNER",
    "OperatorLimits",
    "PartnerLimits",
    "operator_deal",
]

log = logging.getLogger(__name__)

MIN_SHARE: Final = 1e-4
"""A share is never applied below this (a token bucket needs a positive rate)."""

PARTNER: Final = "partner"
OPERATOR: Final = "operator"
"""An operator's TPS: tracked by the processes with a connector for it."""
OPERATOR_BINDS: Final = "operator_binds"
"""An operator's bind deal: tracked by every process that may run a connector for it (its members)."""
IDLE_AFTER: Final = 60.0
"""A partner bucket without binds here and without demand this long is dropped (its share given back)."""


def operator_deal(bind_count: int, members: list[str], node: str) -> int:
    """This process's part of an operator's ``bind_count`` over ``members`` (sorted; it is one of them)."""
    n = len(members)
    if node not in members or n == 0:
        return 0
    k = members.index(node)
    return bind_count // n + (1 if k < bind_count % n else 0)


class PartnerLimits:
    """The partners' throttles and bind claims of this process; the servers' ``bucket_for`` and
    ``bind_claims`` (see the module notes).  ``ledger`` None: binds are counted per server only."""

    def __init__(
        self,
        shares: Shares,
        ledger: BindLedger | None = None,
        *,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.shares = shares
        self.ledger = ledger
        self.clock = clock
        self._buckets: dict[str, TokenBucket] = {}
        self._configured: dict[str, tuple[float, float]] = {}  # system_id -> (throttle_rate, burst)
        self._binds: dict[str, int] = {}  # system_id -> binds held on this process
        self._seen: dict[str, tuple[float, float]] = {}  # system_id -> (bucket.asked, when it last moved)

    def bucket_for(self, account: Account) -> TokenBucket | None:
        """The partner's bucket on this process (made on first use), at its share of the account's rate."""
        if account.throttle_rate is None:
            return None
        sid = account.system_id
        rate = account.throttle_rate
        burst = account.throttle_burst if account.throttle_burst is not None else max(1.0, rate)
        bucket = self._buckets.get(sid)
        if bucket is None:
            bucket = self._buckets[sid] = TokenBucket(rate, burst)
            self._configured[sid] = (rate, burst)
            share = self.shares.track(PARTNER, sid, rate, lambda: bucket.asked, lambda s: self._apply(sid, s))
            self._apply(sid, share)
        elif self._configured[sid] != (rate, burst):
            self._configured[sid] = (rate, burst)
            self.shares.track(PARTNER, sid, rate, lambda: bucket.asked, lambda s: self._apply(sid, s))
            self._apply(sid, self.shares.share(PARTNER, sid))
        return bucket

    def _apply(self, sid: str, share: float) -> None:
        bucket = self._buckets.get(sid)
        if bucket is None:
            return
        rate, burst = self._configured[sid]
        s = max(share, MIN_SHARE)
        bucket.reconfigure(rate * s, max(1.0, burst * s), self.clock())

    def forget(self, keep: Callable[[str], bool]) -> None:
        """Drop the buckets of partners ``keep`` says no (removed from the configuration)."""
        for sid in [s for s in self._buckets if not keep(s)]:
            self._drop(sid)

    def sweep(self, idle_after: float = IDLE_AFTER) -> None:
        """Drop the buckets of partners without binds here whose demand stayed 0 for ``idle_after``: their
        floor goes back to the processes that serve them (the HTTP API makes a bucket again on use)."""
        now = self.clock()
        for sid, bucket in list(self._buckets.items()):
            asked, since = self._seen.get(sid, (-1.0, now))
            if bucket.asked != asked:
                self._seen[sid] = (bucket.asked, now)
            elif not self._binds.get(sid) and now - since >= idle_after:
                self._drop(sid)

    def _drop(self, sid: str) -> None:
        del self._buckets[sid]
        del self._configured[sid]
        self._seen.pop(sid, None)
        self.shares.untrack(PARTNER, sid)

    # ---- the servers' bind_claims

    async def acquire(self, account: Account) -> bool:
        sid = account.system_id
        if self.ledger is not None and account.max_binds is not None:
            if not await self.ledger.acquire(PARTNER, sid, account.max_binds):
                return False
        self._binds[sid] = self._binds.get(sid, 0) + 1
        return True

    def release(self, account: Account) -> None:
        sid = account.system_id
        left = self._binds.get(sid, 0) - 1
        if left > 0:
            self._binds[sid] = left
        else:
            self._binds.pop(sid, None)
        if self.ledger is not None and account.max_binds is not None:
            self.ledger.release(PARTNER, sid)


class _Connector(Protocol):
    """What the operator limits use of a connector: its open binds and its link's TPS."""

    @property
    def binds(self) -> int: ...

    @property
    def link(self) -> OperatorLink: ...


class OperatorLimits:
    """The operators' TPS shares and bind deal of this process (see the module notes).

    ``running(name)`` is the operator's connector on this process (None: none runs), ``stopping(name)`` its
    connectors being stopped (their binds still open count until they are closed)."""

    def __init__(
        self,
        shares: Shares,
        ledger: BindLedger,
        *,
        running: Callable[[str], _Connector | None],
        stopping: Callable[[str], Iterable[_Connector]],
    ) -> None:
        self.shares = shares
        self.ledger = ledger
        self.running = running
        self.stopping = stopping
        self._binds: dict[str, int] = {}  # operator -> binds this process may open

    def binds(self, name: str) -> int:
        """How many binds the operator's connector here may open (0: it does not run here)."""
        return self._binds.get(name, 0)

    def track(self, operators: Mapping[str, Operator]) -> None:
        """``operators``: the enabled ones this process may serve.  Each takes part in its bind deal; in its
        TPS share while its connector runs here (the share set on the link before its client is made)."""
        for name in list(self._binds):
            if name not in operators:
                self.shares.untrack(OPERATOR_BINDS, name)
        for name, op in operators.items():
            self.shares.track(OPERATOR_BINDS, name, float(op.bind_count), lambda: 0.0, lambda s: None)
            self._binds.setdefault(name, 0)
            conn = self.running(name)
            if conn is None:
                self.shares.untrack(OPERATOR, name)
                continue
            share = self.shares.track(
                OPERATOR,
                name,
                op.tps,
                lambda name=name: self._asked(name),  # type: ignore[misc]
                lambda s, name=name: self._apply(name, s),  # type: ignore[misc]
            )
            conn.link.tps_share = max(share, MIN_SHARE)

    def _asked(self, name: str) -> float:
        conn = self.running(name)
        return float(conn.link.tps_asked()) if conn is not None else 0.0

    def _apply(self, name: str, share: float) -> None:
        conn = self.running(name)
        if conn is not None:
            conn.link.set_tps_share(max(share, MIN_SHARE))

    async def deal(self, operators: Mapping[str, Operator]) -> bool:
        """Bring the binds held per operator to this process's part of the deal: a surplus is given back in
        the ledger once its binds are closed, a shortfall is taken while the ledger has room.  True when
        a count changed (the caller then rebinds its connectors with :meth:`binds`)."""
        self.track(operators)
        changed = False
        for name in list(self._binds):
            op = operators.get(name)
            held = self.ledger.held(OPERATOR, name)
            members = self.shares.members(OPERATOR_BINDS, name)
            target = 0 if op is None else operator_deal(op.bind_count, members, self.shares.node)
            if held > target:
                if self._binds.get(name, 0) != target:
                    self._binds[name] = target  # the connector rebinds with fewer (or stops) first
                    changed = True
                surplus = held - max(target, self.bound(name, op))
                if surplus > 0:
                    self.ledger.release(OPERATOR, name, surplus)
            elif held < target and op is not None:
                while held < target and await self.ledger.acquire(OPERATOR, name, op.bind_count):
                    held += 1
                if self._binds.get(name, 0) != held:
                    self._binds[name] = held
                    changed = True
            if op is None and not self.ledger.held(OPERATOR, name) and not self.bound(name, op):
                self._binds.pop(name, None)
        return changed

    def bound(self, name: str, op: Operator | None) -> int:
        """Binds of the operator open on this process, in ``bind_count`` units (tx_rx: a pair is one; an
        operator no longer configured: each bind is one)."""
        conns = [c for c in (self.running(name),) if c is not None]
        conns += self.stopping(name)
        per = 2 if op is not None and op.bind_type == "tx_rx" else 1
        return sum(-(-int(c.binds) // per) for c in conns)
