"""Routing: which operators a partner's message goes to, and which partner an MO message goes to.

MT (``Router.route``), among the enabled routes of that partner or of any partner whose destination prefix
matches and whose source filter (``source_prefix`` or ``source_regex``, full match) accepts the source:

1. the longest destination prefix wins;
2. then the higher ``priority``;
3. then a route with a source filter over one without;
4. then a route of that partner over a route for any partner;
5. then the older route (lower id), so the choice is stable.

The winning route's targets give the try order: ``failover`` in position order, ``weighted`` one target
drawn by weight (injected ``random.Random``) first and the others after it in position order (they are the
failover), ``least_cost`` cheapest first by the operators' cost plans for the destination at the message's
instant (:meth:`Router.route`'s ``at``), equal costs in position order, operators whose cost is unknown (no
cost plan, no row, or a cost in another currency than the one compared) last in position order; failover walks
the rest in that order.  The currency compared is the partner's price plan's, else that of the first operator
in position order with a cost.  Disabled or unknown operators are left out; a route left with no usable
operator does not match, so the next route in the order above is used.  ``[]`` means no route (answer
``ESME_RINVDSTADR``).

MO (``Router.route_mo``): the enabled MO routes (``snapshot.mo_routes``, when the snapshot has them) whose
destination prefix and optional source prefix match; longest destination prefix, then priority, then the
longer source prefix, then the older route.  Routes to a disabled partner are skipped.

Both orders are one key function each (:func:`route_order_key`, :func:`mo_route_order_key`; sort descending),
which ``route list`` / ``mo-route list`` use too, so what they print is the order routes are tried in.  Two
enabled routes that match the same messages and differ in the key only by id (same partner scope, prefix,
priority and source filter) would leave the later one unreachable; the database refuses them (migration 0007,
``store.DuplicateRoute``).
"""

from __future__ import annotations

import random
import re
import time
from collections.abc import Iterable, Sequence
from typing import Any, Final

from catalyst_smpp.billing.plans import Pricing
from catalyst_smpp.store.records import ConfigSnapshot, MoRoute, Route

__all__ = [
    "MO_ROUTE_ORDER",
    "ROUTE_ORDER",
    "Router",
    "mo_route_order",
    "mo_route_order_key",
    "route_order",
    "route_order_key",
]

ROUTE_ORDER: Final = (
    "longest destination prefix first, then higher priority, then a route with a source filter, then a "
    "partner's own route before an any-partner one, then the older (lower id); the first enabled route "
    "that matches wins"
)
"""What :func:`route_order_key` means, in words (the CLI shows it)."""

MO_ROUTE_ORDER: Final = (
    "longest destination prefix first, then higher priority, then the longer source prefix, then the older "
    "(lower id); the first enabled MO route whose prefixes match wins"
)
"""What :func:`mo_route_order_key` means, in words."""


def route_order_key(route: Route) -> tuple[int, int, int, int, int]:
    """The router's rank of an MT route: the routes a message may take are tried in descending key order."""
    has_filter = 1 if (route.source_prefix or route.source_regex) else 0
    specific = 1 if route.partner is not None else 0
    return (len(route.dest_prefix or ""), route.priority, has_filter, specific, -route.id)


def mo_route_order_key(route: MoRoute) -> tuple[int, int, int, int]:
    """The router's rank of an MO route (descending key order, as :func:`route_order_key`): longest
    destination prefix, then priority, then the longer source prefix (a route for some senders goes before
    one for all of them at the same prefix and priority, as for MT routes), then the older route."""
    return (len(route.dest_prefix or ""), int(route.priority), len(route.source_prefix or ""), -int(route.id))


def route_order(routes: Iterable[Route]) -> list[Route]:
    """``routes`` in the order the router tries them."""
    return sorted(routes, key=route_order_key, reverse=True)


def mo_route_order(routes: Iterable[MoRoute]) -> list[MoRoute]:
    """``routes`` in the order the router tries them."""
    return sorted(routes, key=mo_route_order_key, reverse=True)


class _Compiled:
    __slots__ = (
        "dest_prefix",
        "key",
        "least_cost",
        "operators",
        "regex",
        "route",
        "source_prefix",
        "weighted",
        "weights",
    )

    def __init__(self, route: Route, operators: list[str], weights: list[int]) -> None:
        self.route = route
        self.dest_prefix = route.dest_prefix or ""
        self.source_prefix = route.source_prefix
        self.regex = re.compile(route.source_regex) if route.source_regex else None
        self.operators = operators
        self.weights = weights
        self.weighted = route.strategy == "weighted" and len(operators) > 1 and sum(weights) > 0
        self.least_cost = route.strategy == "least_cost" and len(operators) > 1
        self.key = route_order_key(route)  # sort descending

    def matches(self, source: str, dest: str) -> bool:
        if not dest.startswith(self.dest_prefix):
            return False
        if self.source_prefix is not None and not source.startswith(self.source_prefix):
            return False
        return not (self.regex is not None and self.regex.fullmatch(source) is None)


class Router:
    """Routes computed from one :class:`ConfigSnapshot` (immutable; build a new one on reload).

    ``pricing``: the prices and costs of that same snapshot (built from it when not given); least-cost routes
    read the operators' costs from it, and the accept path may read partners' prices from ``router.pricing``
    (one object per reload, so routing and pricing never see two different snapshots)."""

    def __init__(
        self, snapshot: ConfigSnapshot, *, rng: random.Random | None = None, pricing: Pricing | None = None
    ) -> None:
        self.snapshot = snapshot
        self.rng = rng if rng is not None else random.Random()
        self.pricing = pricing if pricing is not None else Pricing(snapshot)
        usable = {op.name for op in snapshot.operators if op.enabled}
        self.operators = {op.name: op for op in snapshot.operators}
        self.partners = {p.system_id: p for p in snapshot.partners}
        compiled: list[_Compiled] = []
        for r in snapshot.routes:
            if not r.enabled:
                continue
            targets = sorted(r.targets, key=lambda t: t.position)
            ops = [t.operator for t in targets if t.operator in usable]
            weights = [max(0, t.weight) for t in targets if t.operator in usable]
            if not ops:
                continue
            try:
                compiled.append(_Compiled(r, ops, weights))
            except re.error:  # the repository checks this; never let a bad row stop routing
                continue
        compiled.sort(key=lambda c: c.key, reverse=True)
        self._any = [c for c in compiled if c.route.partner is None]
        self._by_partner: dict[str, list[_Compiled]] = {}
        for c in compiled:
            if c.route.partner is not None:
                self._by_partner.setdefault(c.route.partner, [])
        for name in self._by_partner:
            self._by_partner[name] = [c for c in compiled if c.route.partner in (None, name)]
        self._mo = self._compile_mo(getattr(snapshot, "mo_routes", ()) or ())

    # ------------------------------------------------------------------ MT

    def best_route(self, partner: str, source: str, dest: str) -> Route | None:
        c = self._match(partner, source, dest)
        return c.route if c is not None else None

    def _match(self, partner: str, source: str, dest: str) -> _Compiled | None:
        for c in self._by_partner.get(partner, self._any):
            if c.matches(source, dest):
                return c
        return None

    def route(self, partner: str, source: str, dest: str, at: float | None = None) -> list[str]:
        """Operator names in try order; ``[]`` = no route.  ``at``: the message's instant (unix seconds, its
        accept time; default now), which least-cost routes price the destination at."""
        c = self._match(partner, source, dest)
        if c is None:
            return []
        if c.least_cost:
            return self._cheapest_first(c.operators, partner, dest, time.time() if at is None else at)
        if not c.weighted:
            return list(c.operators)
        pick = self._pick(c.weights)
        ops = c.operators
        return [ops[pick], *ops[:pick], *ops[pick + 1 :]]

    def _cheapest_first(self, operators: Sequence[str], partner: str, dest: str, at: float) -> list[str]:
        """``operators`` (in position order) cheapest first for ``dest`` at ``at``; equal costs keep position
        order; unknown costs (or costs in another currency than the one compared) last, in position order."""
        pricing = self.pricing
        # micro-units, as accept prices messages: no Money or Decimal per message on a least-cost route
        costs = [pricing.cost_micros(op, dest, at) for op in operators]
        currency = pricing.price_currency(partner)
        if currency is None:
            currency = next((c[1] for c in costs if c is not None), None)
        keyed: list[tuple[int, int, int, str]] = []
        for i, (op, cost) in enumerate(zip(operators, costs, strict=True)):
            if cost is not None and cost[1] == currency:
                keyed.append((0, cost[0], i, op))
            else:
                keyed.append((1, 0, i, op))
        keyed.sort()
        return [op for *_, op in keyed]

    def _pick(self, weights: Sequence[int]) -> int:
        total = sum(weights)
        x = self.rng.random() * total
        acc = 0.0
        for i, w in enumerate(weights):
            acc += w
            if x < acc:
                return i
        return max(i for i, w in enumerate(weights) if w > 0)  # float edge: the last positive weight

    # ------------------------------------------------------------------ MO

    def _compile_mo(
        self, routes: Sequence[Any]
    ) -> list[tuple[tuple[int, int, int, int], str, str | None, str]]:
        out = []
        disabled = {p.system_id for p in self.snapshot.partners if not p.enabled}
        for r in routes:
            if not getattr(r, "enabled", True):
                continue
            partner = getattr(r, "partner", None)
            if not partner or partner in disabled:
                continue
            dest_prefix = getattr(r, "dest_prefix", "") or ""
            out.append(
                (mo_route_order_key(r), dest_prefix, getattr(r, "source_prefix", None) or None, partner)
            )
        out.sort(key=lambda t: t[0], reverse=True)
        return out

    def route_mo(self, dest: str, source: str = "") -> str | None:
        """The partner (system_id) an MO message to ``dest`` goes to, or None."""
        for _key, dest_prefix, source_prefix, partner in self._mo:
            if dest.startswith(dest_prefix) and (source_prefix is None or source.startswith(source_prefix)):
                return partner
        return None
