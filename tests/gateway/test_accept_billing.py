"""Billing at accept (smpplib as the partner, the in-memory bus, exact in-memory books): each destination
priced at the instant it is accepted, the margin guard, unpriced destinations, least-cost choice, holds per
destination of a submit_multi, and the partner's own insufficient-credit status."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
import trio

from catalyst_smpp.billing.charging import Charger
from catalyst_smpp.billing.credit import CreditLeases, MemoryLeaseStore
from catalyst_smpp.billing.money import Money
from catalyst_smpp.bus import Kind, MessageBus
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.gateway.messages import CHARGE_ON_SUBMIT, MtMessage
from catalyst_smpp.protocol.pdu import SmeDestination, SubmitMulti
from catalyst_smpp.store.records import ConfigSnapshot, Plan, PlanRow

from .helpers import operator, partner, partner_server, route, smpplib_client, snapshot

SWITCH = dt.datetime(2027, 2, 1, tzinfo=dt.UTC)
EPOCH = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)


@pytest.fixture
def bus(memory_bus: MemoryBus) -> MessageBus:
    return memory_bus


def _row(
    prefix: str, price: str, cur: str, start: dt.datetime = EPOCH, until: dt.datetime | None = None
) -> PlanRow:
    return PlanRow(
        prefix, prefix[:2], "DEFAULT" if len(prefix) == 2 else "", None, Money(price, cur), None, start, until
    )


def _snap(
    *, margin_guard: bool = False, insufficient: int = 0x45, strategy: str = "failover"
) -> ConfigSnapshot:
    price = Plan(
        1,
        "retail",
        "price",
        "EUR",
        rows=(
            _row("44", "0.0300", "EUR", EPOCH, SWITCH),
            _row("44", "0.0200", "EUR", SWITCH),  # a price change loaded ahead
            _row("33", "0.0100", "EUR"),
        ),
    )
    cheap = Plan(2, "cheap", "cost", "EUR", rows=(_row("44", "0.0050", "EUR"), _row("33", "0.0150", "EUR")))
    dear = Plan(3, "dear", "cost", "EUR", rows=(_row("44", "0.0090", "EUR"),))
    snap = snapshot(
        [
            partner(
                "acme",
                "secret",
                price_plan="retail",
                margin_guard=margin_guard,
                insufficient_credit_status=insufficient,
            )
        ],
        [operator("opDear", cost_plan="dear"), operator("opCheap", cost_plan="cheap")],
        [route(1, None, "44", "opDear", "opCheap", strategy=strategy), route(2, None, "33", "opCheap")],
    )
    return ConfigSnapshot(
        snap.version, snap.partners, snap.operators, snap.routes, plans=(price, cheap, dear)
    )


class _Clock:
    def __init__(self, at: dt.datetime) -> None:
        self.now = at.timestamp()

    def __call__(self) -> float:
        return self.now


def _submit_all(port: int, dests: list[str]) -> list[int]:
    c = smpplib_client(port)
    try:
        c.bind_transceiver(system_id="acme", password="secret")
        sent = [
            c.send_message(source_addr="12345", destination_addr=d, short_message=b"hello") for d in dests
        ]
        by_seq = {r.sequence: r for r in (c.read_pdu() for _ in sent)}
        out = [int(by_seq[p.sequence].status) for p in sent]
        c.unbind()
    finally:
        c.disconnect()
    return out


async def _mts(bus: MessageBus, op: str, n: int) -> list[MtMessage]:
    c = await bus.consumer(Kind.MT, op)
    out: list[Any] = []
    with trio.fail_after(10):
        while len(out) < n:
            out += await c.fetch(100, 0.5)
    await c.ack(out)
    return [MtMessage.from_bytes(m.data) for m in out]


async def _run(
    bus: MessageBus, snap: ConfigSnapshot, balance: int, clock: _Clock, dests: list[str], **kw: Any
) -> Any:
    store = MemoryLeaseStore({"acme": balance})
    credit = CreditLeases(store, "test", clock=trio.current_time)
    holder: dict[str, Any] = {}
    async with partner_server(bus, snap, accept_kw={"clock": clock}) as ps:
        ps.accept.charger = Charger(lambda: ps.router.pricing, credit)
        statuses = await trio.to_thread.run_sync(lambda: _submit_all(ps.port, dests, **kw))
        holder["statuses"] = statuses
        await credit.close()
    return statuses, store


async def test_price_switches_at_its_effective_instant(bus: MessageBus) -> None:
    snap = _snap()
    clock = _Clock(SWITCH - dt.timedelta(microseconds=1))
    statuses, _ = await _run(bus, snap, 10**9, clock, ["447700900001"])
    clock.now = SWITCH.timestamp()
    statuses += (await _run(bus, snap, 10**9, clock, ["447700900002"]))[0]
    assert statuses == [0, 0]
    mts = await _mts(bus, "opDear", 2)
    by_dest = {m.dest.addr: m for m in mts}
    assert by_dest["447700900001"].price == 30_000  # 0.03 EUR until the instant
    assert by_dest["447700900002"].price == 20_000  # 0.02 EUR from it on
    assert all(m.charge_on == CHARGE_ON_SUBMIT and m.currency == "EUR" and m.lease > 0 for m in mts)


async def test_long_text_is_priced_per_part(bus: MessageBus) -> None:
    snap = _snap()
    store = MemoryLeaseStore({"acme": 10**9})
    credit = CreditLeases(store, "test")
    async with partner_server(bus, snap) as ps:
        ps.accept.charger = Charger(lambda: ps.router.pricing, credit)

        def send() -> int:
            c = smpplib_client(ps.port)
            try:
                c.bind_transceiver(system_id="acme", password="secret")
                c.send_message(source_addr="1", destination_addr="33123", short_message=b"x" * 200)
                return int(c.read_pdu().status)
            finally:
                c.disconnect()

        assert await trio.to_thread.run_sync(send) == 0
    (mt,) = await _mts(bus, "opCheap", 1)
    assert mt.price == 2 * 10_000  # 200 GSM characters: two SMS at 0.01


async def test_margin_guard_refuses_a_message_that_would_cost_more_than_its_price(bus: MessageBus) -> None:
    # 33 costs 0.015 at opCheap and sells at 0.01; 44 costs less than it sells for
    statuses, _store = await _run(
        bus, _snap(margin_guard=True), 10**9, _Clock(EPOCH), ["33123", "447700900001"]
    )
    assert statuses == [0x45, 0]
    statuses, _ = await _run(bus, _snap(margin_guard=False), 10**9, _Clock(EPOCH), ["33123"])
    assert statuses == [0]


async def test_unpriced_destination_is_refused_and_nothing_is_held(bus: MessageBus) -> None:
    snap = _snap()
    snap = ConfigSnapshot(
        snap.version,
        snap.partners,
        snap.operators,
        (*snap.routes, route(3, None, "49", "opCheap")),
        plans=snap.plans,
    )
    statuses, store = await _run(bus, snap, 10**9, _Clock(EPOCH), ["491701234567"])
    assert statuses == [0x0B]
    assert store.used_total("acme") == 0


async def test_least_cost_route_sends_to_the_cheapest_operator_first(bus: MessageBus) -> None:
    statuses, _ = await _run(bus, _snap(strategy="least_cost"), 10**9, _Clock(EPOCH), ["447700900001"])
    assert statuses == [0]
    (mt,) = await _mts(bus, "opCheap", 1)
    assert mt.targets == ("opCheap", "opDear") and mt.cost == 5_000 and mt.cost_currency == "EUR"


async def test_insufficient_credit_answers_the_partners_own_status(bus: MessageBus) -> None:
    # credit for two messages at 0.03; the third is refused with the partner's vendor status
    statuses, store = await _run(
        bus,
        _snap(insufficient=0x401),
        60_000,
        _Clock(EPOCH),
        ["447700900001", "447700900002", "447700900003"],
    )
    assert sorted(statuses) == [0, 0, 0x401]
    assert store.used_total("acme") == 60_000 and store.balances["acme"] == 0


async def test_submit_multi_holds_once_per_destination(bus: MessageBus) -> None:
    """Three destinations: one hold each at its own price; one more over the balance is refused alone."""
    store = MemoryLeaseStore({"acme": 70_000})
    credit = CreditLeases(store, "test")
    async with partner_server(bus, _snap()) as ps:
        ps.accept.charger = Charger(lambda: ps.router.pricing, credit)
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            r = await client.request(
                SubmitMulti(
                    source_addr="1",
                    short_message=b"to four",
                    dest_address=tuple(SmeDestination(1, 1, d) for d in ("4471", "4472", "3373", "4474")),
                )
            )
            await client.aclose()
        await credit.close()
    assert r.command_status == 0
    assert [(u.destination_addr, u.error_status_code) for u in r.unsuccess_sme] == [("4474", 0x45)]
    mts = await _mts(bus, "opDear", 2) + await _mts(bus, "opCheap", 1)
    assert sorted(m.price for m in mts) == [10_000, 30_000, 30_000]
    assert len({m.message_id for m in mts}) == 3 and len({m.lease for m in mts}) >= 1
    assert store.used_total("acme") == 70_000 and store.balances["acme"] == 0


@pytest.mark.parametrize(
    "at", [EPOCH, SWITCH - dt.timedelta(microseconds=1), SWITCH, SWITCH + dt.timedelta(days=9)]
)
@pytest.mark.parametrize("digits", ["447700900001", "4471", "33123", "3", "491701234567", ""])
@pytest.mark.parametrize("parts", [1, 2, 7])
def test_micro_unit_prices_are_the_money_prices(at: dt.datetime, digits: str, parts: int) -> None:
    """The accept path's micro-unit prices and costs equal the exact Money ones (price_for / cost_for)."""
    from catalyst_smpp.gateway.routing import Router

    pricing = Router(_snap()).pricing
    t = at.timestamp()
    money = pricing.price_for("acme", digits, t, parts)
    assert pricing.price_micros("acme", digits, t, parts) == (
        None if money is None else (money.micros(), money.currency)
    )
    for op in ("opDear", "opCheap"):
        cost = pricing.cost_for(op, digits, t, parts)
        assert pricing.cost_micros(op, digits, t, parts) == (
            None if cost is None else (cost.micros(), cost.currency)
        )
