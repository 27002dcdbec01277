"""Routing: prefix, priority, source filters, partner-specific, failover, weighted share, MO routes."""

from __future__ import annotations

import datetime as dt
import random
import re
import time
from collections import Counter
from typing import Any

import attrs
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.billing.money import Money
from catalyst_smpp.gateway.routing import Router, mo_route_order, route_order
from catalyst_smpp.store.records import (
    ConfigSnapshot,
    MoRoute,
    Operator,
    Partner,
    Plan,
    PlanRow,
    Route,
    RouteTarget,
)


def op(name: str, enabled: bool = True) -> Operator:
    return Operator(
        id=hash(name) & 0xFFFF, name=name, host="127.0.0.1", port=2775, system_id=name, enabled=enabled
    )


_ids = iter(range(1, 10_000))


def route(partner: str | None, prefix: str, *targets: str | tuple[str, int], **kw: object) -> Route:
    tt = []
    for i, t in enumerate(targets):
        name, weight = (t, 1) if isinstance(t, str) else t
        tt.append(RouteTarget(name, i, weight))
    return Route(id=next(_ids), partner=partner, dest_prefix=prefix, targets=tuple(tt), **kw)  # type: ignore[arg-type]


def snap(routes: list[Route], ops: list[Operator] | None = None, **extra: object) -> ConfigSnapshot:
    ops = ops if ops is not None else [op(n) for n in ("A", "B", "C", "D")]
    partners = (
        Partner(id=1, system_id="acme", password_hash="x"),
        Partner(id=2, system_id="other", password_hash="x"),
    )
    s = ConfigSnapshot(version=1, partners=partners, operators=tuple(ops), routes=tuple(routes))
    return s


def test_longest_prefix_wins() -> None:
    r = Router(
        snap(
            [route(None, "", "A"), route(None, "44", "B"), route(None, "447", "C"), route(None, "4478", "D")]
        )
    )
    assert r.route("acme", "1", "447700900001") == ["C"]
    assert r.route("acme", "1", "447800900001") == ["D"]
    assert r.route("acme", "1", "441234") == ["B"]
    assert r.route("acme", "1", "331234") == ["A"]


def test_no_route_is_empty() -> None:
    r = Router(snap([route(None, "44", "A")]))
    assert r.route("acme", "1", "33123") == []


def test_priority_breaks_prefix_ties_only() -> None:
    r = Router(
        snap(
            [
                route(None, "44", "A", priority=1),
                route(None, "44", "B", priority=5),
                route(None, "4", "C", priority=100),
            ]
        )
    )
    assert r.route("acme", "1", "4412") == ["B"]  # prefix length first, then priority
    assert r.route("acme", "1", "4512") == ["C"]


def test_source_filters() -> None:
    r = Router(
        snap(
            [
                route(None, "44", "A"),
                route(None, "44", "B", source_prefix="900"),
                route(None, "44", "C", source_regex=r"[A-Za-z]+"),
            ]
        )
    )
    assert r.route("acme", "90012", "4412") == ["B"]
    assert r.route("acme", "Brand", "4412") == ["C"]
    assert r.route("acme", "Brand1", "4412") == ["A"]  # full match only
    assert r.route("acme", "12345", "4412") == ["A"]


def test_partner_specific_over_any_and_invisible_to_others() -> None:
    r = Router(snap([route(None, "44", "A"), route("acme", "44", "B"), route("acme", "33", "C")]))
    assert r.route("acme", "1", "4412") == ["B"]
    assert r.route("other", "1", "4412") == ["A"]
    assert r.route("other", "1", "3312") == []
    assert r.route("acme", "1", "3312") == ["C"]
    # a longer prefix for any partner still beats the partner's shorter one
    r2 = Router(snap([route("acme", "4", "B"), route(None, "44", "A")]))
    assert r2.route("acme", "1", "4412") == ["A"]


def test_failover_order_and_disabled_skipped() -> None:
    ops = [op("A"), op("B", enabled=False), op("C"), op("D")]
    r = Router(snap([route(None, "44", "A", "B", "C")], ops))
    assert r.route("acme", "1", "4412") == ["A", "C"]


def test_route_with_only_disabled_operators_falls_through() -> None:
    ops = [op("A", enabled=False), op("B"), op("C"), op("D")]
    r = Router(snap([route(None, "447", "A"), route(None, "44", "B")], ops))
    assert r.route("acme", "1", "4471") == ["B"]


def test_disabled_route_skipped() -> None:
    r = Router(snap([route(None, "447", "A", enabled=False), route(None, "44", "B")]))
    assert r.route("acme", "1", "4471") == ["B"]


def test_weighted_share_and_failover_tail() -> None:
    r = Router(
        snap([route(None, "44", ("A", 70), ("B", 20), ("C", 10), strategy="weighted")]),
        rng=random.Random(1234),
    )
    n = 20_000
    firsts: Counter[str] = Counter()
    for _ in range(n):
        order = r.route("acme", "1", "4412")
        assert sorted(order) == ["A", "B", "C"]  # the others follow as failover
        rest = [o for o in ["A", "B", "C"] if o != order[0]]
        assert order[1:] == rest  # in position order
        firsts[order[0]] += 1
    for name, share in (("A", 0.7), ("B", 0.2), ("C", 0.1)):
        assert abs(firsts[name] / n - share) < 0.02, firsts


def test_weight_zero_never_first() -> None:
    r = Router(snap([route(None, "44", ("A", 0), ("B", 1), strategy="weighted")]), rng=random.Random(7))
    assert all(r.route("acme", "1", "44")[0] == "B" for _ in range(500))
    assert r.route("acme", "1", "44") == ["B", "A"]


@attrs.frozen
class MoRouteStub:
    id: int
    dest_prefix: str
    partner: str
    source_prefix: str | None = None
    priority: int = 0
    enabled: bool = True


@attrs.frozen
class SnapWithMo:
    version: int
    partners: tuple[Partner, ...]
    operators: tuple[Operator, ...]
    routes: tuple[Route, ...]
    mo_routes: tuple[MoRouteStub, ...]


def test_mo_routes() -> None:
    partners = (
        Partner(id=1, system_id="acme", password_hash="x"),
        Partner(id=2, system_id="other", password_hash="x"),
        Partner(id=3, system_id="off", password_hash="x", enabled=False),
    )
    mo = (
        MoRouteStub(1, "1234", "acme"),
        MoRouteStub(2, "12345", "other"),
        MoRouteStub(3, "1234", "other", priority=5, source_prefix="44"),
        MoRouteStub(4, "999", "off"),
        MoRouteStub(5, "555", "acme", enabled=False),
    )
    r = Router(SnapWithMo(1, partners, (), (), mo))  # type: ignore[arg-type]
    assert r.route_mo("1234") == "acme"
    assert r.route_mo("123456") == "other"
    assert r.route_mo("1234", "4477") == "other"
    assert r.route_mo("999") is None
    assert r.route_mo("555") is None
    assert Router(snap([])).route_mo("1234") is None  # snapshot without MO routes


def test_mo_route_for_some_senders_goes_before_one_for_all() -> None:
    """At the same destination prefix and priority, the route with a (longer) source prefix is the more
    specific one and wins, whichever is older -- as for MT routes."""
    partners = (
        Partner(id=1, system_id="acme", password_hash="x"),
        Partner(id=2, system_id="bank", password_hash="x"),
    )
    mo = (
        MoRouteStub(1, "1234", "acme"),
        MoRouteStub(2, "1234", "bank", source_prefix="44"),
        MoRouteStub(3, "1234", "acme", source_prefix="447"),
    )
    r = Router(SnapWithMo(1, partners, (), (), mo))  # type: ignore[arg-type]
    assert r.route_mo("1234", "4477001") == "acme"  # 447 is longer than 44
    assert r.route_mo("1234", "4412") == "bank"
    assert r.route_mo("1234", "3312") == "acme"  # no source route matches: the route for all


# --- the order route list prints is the order the router tries -----------------------------------------

_route_specs = st.lists(
    st.tuples(
        st.sampled_from([None, "acme", "other"]),  # partner scope
        st.sampled_from(["", "4", "44", "447"]),  # dest prefix
        st.integers(0, 2),  # priority
        st.sampled_from([(None, None), ("1", None), ("12", None), (None, r"1\d*")]),  # source filter
        st.booleans(),  # enabled
    ),
    max_size=12,
)


@given(_route_specs, st.sampled_from(["acme", "other", "third"]), st.sampled_from(["1", "12", "9"]))
def test_route_order_is_the_order_the_router_tries(specs: list[Any], partner: str, source: str) -> None:
    routes = [
        Route(
            id=i,
            partner=p,
            dest_prefix=d,
            priority=prio,
            source_prefix=sp,
            source_regex=rx,
            enabled=on,
            targets=(RouteTarget(f"op{i}", 0, 1),),
        )
        for i, (p, d, prio, (sp, rx), on) in enumerate(specs, start=1)
    ]
    router = Router(snap(routes, [op(f"op{r.id}") for r in routes]))
    ordered = route_order(routes)
    for dest in ("4471", "441", "49", "33"):
        # what route list prints, read top-down as an operator would: the first enabled route of this partner
        # (or any partner) whose prefix and source filter match
        first = next(
            (
                r
                for r in ordered
                if r.enabled
                and r.partner in (None, partner)
                and dest.startswith(r.dest_prefix)
                and (r.source_prefix is None or source.startswith(r.source_prefix))
                and (r.source_regex is None or re.fullmatch(r.source_regex, source))
            ),
            None,
        )
        assert router.best_route(partner, source, dest) == first


def test_route_order_is_not_priority_first() -> None:
    low_long, high_short = route(None, "447", "A"), route(None, "44", "B", priority=9)
    assert route_order([high_short, low_long]) == [low_long, high_short]
    assert Router(snap([high_short, low_long])).best_route("acme", "1", "4471") == low_long


@given(
    st.lists(
        st.tuples(st.sampled_from(["", "12", "123"]), st.integers(0, 2), st.sampled_from(["", "44"])),
        max_size=10,
    ),
    st.sampled_from(["1234", "129", "5"]),
    st.sampled_from(["447", "33"]),
)
def test_mo_route_order_is_the_order_the_router_tries(specs: list[Any], dest: str, source: str) -> None:
    # each MO route to its own partner, so the partner the router answers tells which route it took
    partners = tuple(Partner(id=i, system_id=f"p{i}", password_hash="x") for i in range(1, len(specs) + 1))
    mo = tuple(
        MoRoute(id=i, dest_prefix=d, partner=f"p{i}", source_prefix=sp, priority=prio)
        for i, (d, prio, sp) in enumerate(specs, start=1)
    )
    first = next(
        (
            m
            for m in mo_route_order(mo)
            if dest.startswith(m.dest_prefix) and source.startswith(m.source_prefix)
        ),
        None,
    )
    router = Router(attrs.evolve(snap([]), partners=partners, mo_routes=mo))
    assert router.route_mo(dest, source) == (first.partner if first else None)


# --------------------------------------------------------------------------- least cost


def _cost_plan(
    name: str, *rows: tuple[str, str, dt.datetime, dt.datetime | None], currency: str = "EUR"
) -> Plan:
    return Plan(
        id=abs(hash(name)) % 10_000,
        name=name,
        kind="cost",
        currency=currency,
        rows=tuple(
            PlanRow(prefix, prefix[:2], "", None, Money(cost, currency), None, start, until)
            for prefix, cost, start, until in rows
        ),
    )


_T0 = dt.datetime(2027, 1, 1, tzinfo=dt.UTC)
_T1 = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)


def _lc_snap(
    plans: list[Plan], costs: dict[str, str | None], partners: tuple[Partner, ...] = ()
) -> ConfigSnapshot:
    ops = tuple(attrs.evolve(op(n), cost_plan=costs.get(n)) for n in ("A", "B", "C", "D"))
    return ConfigSnapshot(
        version=1,
        partners=partners or (Partner(id=1, system_id="acme", password_hash="x"),),
        operators=ops,
        routes=(route(None, "44", "A", "B", "C", "D", strategy="least_cost"),),
        plans=tuple(plans),
    )


def test_least_cost_orders_by_cost_at_the_instant() -> None:
    plans = [
        _cost_plan("ca", ("44", "0.03", _T0, None)),
        # B is cheapest until T1, then the dearest
        _cost_plan("cb", ("4477", "0.01", _T0, _T1), ("4477", "0.05", _T1, None), ("44", "0.04", _T0, None)),
        _cost_plan("cc", ("44", "0.02", _T0, None)),
    ]
    r = Router(_lc_snap(plans, {"A": "ca", "B": "cb", "C": "cc"}))
    before, at = _T1.timestamp() - 1, _T1.timestamp()
    assert r.route("acme", "1", "447700900123", at=before) == ["B", "C", "A", "D"]  # D: no cost plan, last
    assert r.route("acme", "1", "447700900123", at=at) == ["C", "A", "B", "D"]
    assert r.route("acme", "1", "441234", at=before) == ["C", "A", "B", "D"]  # B's 44 row: 0.04
    # before any row: every cost unknown, the route's order
    assert r.route("acme", "1", "447700900123", at=_T0.timestamp() - 1) == ["A", "B", "C", "D"]


def test_least_cost_ties_keep_the_route_order_and_disabled_operators_stay_out() -> None:
    plans = [_cost_plan("same", ("44", "0.02", _T0, None)), _cost_plan("dear", ("44", "0.09", _T0, None))]
    snap = _lc_snap(plans, {"A": "dear", "B": "same", "C": "same", "D": "same"})
    at = _T0.timestamp() + 10
    assert Router(snap).route("acme", "1", "4477", at=at) == ["B", "C", "D", "A"]
    ops = tuple(attrs.evolve(o, enabled=o.name != "C") for o in snap.operators)
    assert Router(attrs.evolve(snap, operators=ops)).route("acme", "1", "4477", at=at) == ["B", "D", "A"]


def test_least_cost_compares_only_the_price_currency() -> None:
    plans = [
        _cost_plan("eur", ("44", "0.03", _T0, None)),
        _cost_plan("usd", ("44", "0.01", _T0, None), currency="USD"),
        Plan(
            9,
            "retail",
            "price",
            "EUR",
            rows=(PlanRow("44", "44", "DEFAULT", None, Money("0.05", "EUR"), None, _T0),),
        ),
    ]
    partners = (
        Partner(id=1, system_id="acme", password_hash="x", price_plan="retail"),
        Partner(id=2, system_id="other", password_hash="x"),
    )
    r = Router(_lc_snap(plans, {"A": "usd", "B": "eur"}, partners))
    at = _T0.timestamp() + 10
    # acme pays in EUR: A's USD cost is not comparable, so it goes with the unknown ones (route order)
    assert r.route("acme", "1", "4477", at=at) == ["B", "A", "C", "D"]
    # no price plan: the currency of the first operator with a cost (A: USD) is the one compared
    assert r.route("other", "1", "4477", at=at) == ["A", "B", "C", "D"]
    assert r.pricing.price_for("acme", "4477", at) == Money("0.05", "EUR")


def test_least_cost_defaults_to_now() -> None:
    past = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
    plans = [_cost_plan("old", ("44", "0.01", past, _T0)), _cost_plan("cur", ("44", "0.02", past, None))]
    r = Router(_lc_snap(plans, {"A": "old", "B": "cur"}))
    assert r.route("acme", "1", "4477", at=past.timestamp()) == ["A", "B", "C", "D"]
    assert r.route("acme", "1", "4477") == (
        ["B", "A", "C", "D"] if time.time() >= _T0.timestamp() else ["A", "B", "C", "D"]
    )
