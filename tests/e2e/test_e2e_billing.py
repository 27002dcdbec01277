"""Billing end to end, on real NATS and Postgres, with exact books at the end.

* Two gateway processes, two partners bound to both, balances that cover exactly N messages each: exactly N
  accepted per partner across both nodes, the rest refused with the partner's insufficient-credit status,
  final balance exactly zero and never negative in between.
* SIGKILL of a gateway under load, and a NATS restart under load: afterwards every hold is settled, the
  balance is the top-ups minus what was captured, and the ledger, the credit entries and the CDRs agree to
  the micro-unit.
* A charge-on-delivery partner: DELIVRD receipts capture, failure receipts release; the operator sending each
  receipt twice changes nothing.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig
from catalyst_smpp.store import PartnerRepo
from catalyst_smpp.store.plan_repo import PlanRepo

from .harness import (
    Env,
    GatewayProcess,
    Receipts,
    check_delivered,
    open_gateway,
    open_sim,
    partner_client,
    submit_load,
    texts,
    wait_delivered,
    wait_for,
    wait_receipts,
)

PRICE = Decimal("0.0125")  # EUR per part
RSUBMITFAIL = 0x45
HEADER = "prefix,country,network,mcc_mnc,submit_price,delivery_price,effective_from,effective_until"


def _sim(**kw: object) -> SimConfig:
    kw.setdefault("receipt_delay", DelayRange(0.01, 0.05))
    kw.setdefault("id_format", IdFormat(IdForm.HEX, width=10, upper=True))
    return SimConfig(**kw)  # type: ignore[arg-type]


def _billing(env: Env, sim_port: int, partners: dict[str, Decimal], **partner_fields: Any) -> dict[str, int]:
    """Operator opA on the simulator, route 44 → opA, a price plan, and each partner billed on it with an
    account topped up with the given amount; the partners' ids."""
    env.add_operator("opA", sim_port, submit_id_format="hex", receipt_id_format="hex")
    env.add_route(None, "44", ["opA"])

    def setup(conn: Any) -> dict[str, int]:
        plans = PlanRepo(conn)
        plans.add("retail", "price", "EUR")
        plans.import_csv(
            "retail",
            f"{HEADER}\n44,44,DEFAULT,,{PRICE},{PRICE * 2},2020-01-01T00:00:00+00:00,\n",
        )
        ids = {}
        for name, amount in partners.items():
            PartnerRepo(conn).add(
                name,
                "secret",
                throttle_rate=5000.0,
                throttle_burst=5000,
                window=50,
                price_plan="retail",
                **partner_fields,
            )
            pid = PartnerRepo(conn).get(name).id
            books.open_account(conn, pid, "EUR")
            if amount:
                books.topup(conn, pid, Money(amount, "EUR"), "test credit", "test")
            ids[name] = pid
        return ids

    return env.setup(setup)  # type: ignore[no-any-return]


def _books(env: Env, pid: int) -> dict[str, Any]:
    def read(conn: Any) -> dict[str, Any]:
        state = books.account_state(conn, pid)
        kinds = dict(
            conn.execute(
                "SELECT kind, count(*) FROM credit_entries WHERE partner_id = %s GROUP BY kind", (pid,)
            ).fetchall()
        )
        sums = dict(
            conn.execute(
                "SELECT kind, coalesce(sum(amount), 0) FROM credit_entries WHERE partner_id = %s"
                " GROUP BY kind",
                (pid,),
            ).fetchall()
        )
        ledger = dict(
            conn.execute(
                "SELECT kind, coalesce(sum(amount), 0) FROM ledger WHERE partner_id = %s GROUP BY kind",
                (pid,),
            ).fetchall()
        )
        open_holds = conn.execute(
            "SELECT count(*) FROM credit_entries h WHERE h.partner_id = %s AND h.kind = 'hold' AND NOT EXISTS"
            " (SELECT 1 FROM credit_entries s WHERE s.message_id = h.message_id AND s.kind <> 'hold')",
            (pid,),
        ).fetchone()[0]
        open_leases = conn.execute(
            "SELECT count(*) FROM credit_leases WHERE partner_id = %s AND state = 'open'", (pid,)
        ).fetchone()[0]
        submitted = conn.execute(
            "SELECT count(DISTINCT message_id) FROM message_log m JOIN partners p ON p.system_id = m.partner"
            " WHERE p.id = %s AND m.event = 'submitted'",
            (pid,),
        ).fetchone()[0]
        cdr_captured = conn.execute(
            "SELECT coalesce(sum(price), 0), count(DISTINCT message_id) FROM message_log m"
            " JOIN partners p ON p.system_id = m.partner WHERE p.id = %s AND m.charge_state = 'captured'",
            (pid,),
        ).fetchone()
        return {
            "balance": state.balance.amount,
            "available": state.available.amount,
            "counts": kinds,
            "sums": sums,
            "ledger": ledger,
            "open_holds": open_holds,
            "open_leases": open_leases,
            "submitted": submitted,
            "cdr_captured": (Decimal(cdr_captured[0]) / 10**6, cdr_captured[1]),
            "verify": books.verify(conn),
        }

    return env.setup(read)  # type: ignore[no-any-return]


def _check_settled(b: dict[str, Any], topped_up: Decimal) -> None:
    """Every hold settled; balance = top-ups - captured; ledger, credit entries and CDRs agree exactly."""
    captured = b["sums"].get("capture", Decimal(0))
    assert b["open_holds"] == 0, b
    assert b["counts"].get("hold", 0) == b["counts"].get("capture", 0) + b["counts"].get("release", 0), b
    assert b["balance"] == topped_up - captured, b
    assert b["ledger"].get("charge", Decimal(0)) == -captured, b
    assert b["cdr_captured"] == (captured, b["counts"].get("capture", 0)), b
    assert b["verify"] == [], b


# --------------------------------------------------------------------------- exactly N across two nodes


async def test_two_nodes_accept_exactly_what_the_balance_covers(env: Env) -> None:
    n = {"acme": 23, "beta": 17}
    topped = {name: PRICE * k for name, k in n.items()}
    async with open_sim(_sim()) as sim:
        ids = _billing(env, sim.port, topped)
        gws = [GatewayProcess(env, env.tmp / f"gw{i}", node_id=f"gw-{i}") for i in range(2)]
        for gw in gws:
            gw.start()
        lowest = {name: topped[name] for name in n}
        try:
            for gw in gws:
                await gw.wait_listening()
            clients = {(name, i): partner_client(gw.port, name) for name in n for i, gw in enumerate(gws)}
            accepted = {name: 0 for name in n}
            refused: dict[str, list[int]] = {name: [] for name in n}
            done = trio.Event()

            async def watch_balances() -> None:
                while not done.is_set():
                    for name, pid in ids.items():
                        bal = await trio.to_thread.run_sync(lambda pid=pid: _books(env, pid)["balance"])
                        lowest[name] = min(lowest[name], bal)
                    await trio.sleep(0.2)

            async def partner(name: str) -> None:
                # alternate the nodes; keep going until the whole balance is used, then make sure both nodes
                # keep refusing once every lease has gone back (idle leases return after ~2 s)
                k = 0
                with trio.fail_after(120):
                    while accepted[name] < n[name]:
                        res = await submit_once(clients[(name, k % 2)], f"{name} {k}")
                        k += 1
                        if res == 0:
                            accepted[name] += 1
                        else:
                            refused[name].append(res)
                            await trio.sleep(0.3)
                await trio.sleep(4)
                for j in range(6):
                    res = await submit_once(clients[(name, j % 2)], f"{name} late {j}")
                    assert res != 0, f"{name}: accepted beyond its balance"
                    refused[name].append(res)

            async with trio.open_nursery() as nursery:
                for c in clients.values():
                    await nursery.start(c.run)
                for c in clients.values():
                    await c.wait_bound()
                nursery.start_soon(watch_balances)
                async with trio.open_nursery() as load:
                    for name in n:
                        load.start_soon(partner, name)
                for c in clients.values():
                    await c.aclose()

                # everything submitted and captured at the operator's acceptance: balances reach exactly 0
                def settled() -> bool:
                    return all(
                        _books(env, pid)["counts"].get("capture", 0) == n[name] for name, pid in ids.items()
                    )

                with trio.fail_after(60):
                    while not await trio.to_thread.run_sync(settled):
                        await trio.sleep(0.2)
                done.set()
        finally:
            for gw in gws:
                await gw.stop_async()
    assert accepted == n
    for name, pid in ids.items():
        assert set(refused[name]) == {RSUBMITFAIL}, refused[name]
        b = _books(env, pid)
        _check_settled(b, topped[name])
        assert b["balance"] == 0 and b["open_leases"] == 0, b
        assert lowest[name] >= 0, (name, lowest[name])
    assert sim.stats.accepted == sum(n.values())


async def submit_once(client: Any, text: str) -> int:
    """One submit_sm to 44…; its command_status."""
    from catalyst_smpp.protocol.pdu import SubmitSm

    resp = await client.request(
        SubmitSm(
            source_addr="12345",
            destination_addr="447700900001",
            dest_addr_ton=1,
            dest_addr_npi=1,
            registered_delivery=1,
            short_message=text.encode("ascii"),
        )
    )
    return int(resp.command_status)


# --------------------------------------------------------------------------- faults: SIGKILL, NATS restart


async def test_books_exact_after_a_gateway_sigkill_mid_load(env: Env) -> None:
    n = 300
    topped = Decimal(1000)
    all_texts = texts("bill-kill", n)
    receipts = Receipts()
    async with open_sim(_sim()) as sim:
        ids = _billing(env, sim.port, {"acme": topped})
        gw = GatewayProcess(env, env.tmp)
        gw.start()
        try:
            await gw.wait_listening()
            client = partner_client(gw.port, handler=receipts.handler)
            killed = trio.Event()
            async with trio.open_nursery() as n_:
                await n_.start(client.run)
                await client.wait_bound()

                def on_ack(count: int) -> None:
                    if count == n // 3:
                        killed.set()

                async def killer() -> None:
                    await killed.wait()
                    gw.kill()  # no drain: the node's lease is left to lapse, its holds in flight
                    gw.start()
                    await gw.wait_listening()

                n_.start_soon(killer)
                with trio.fail_after(150):
                    load = await submit_load(client, all_texts, on_ack=on_ack)
                await wait_delivered(load, lambda: [sim], 90)
                await wait_receipts(load, receipts, 90)
                await client.aclose()
            pid = ids["acme"]

            def settled() -> bool:
                b = _books(env, pid)
                return b["open_holds"] == 0 and b["counts"].get("capture", 0) >= n

            await wait_for(lambda: settled(), 60, "every hold settled")
        finally:
            await gw.stop_async()
        count = check_delivered(all_texts, load, sim)
    assert count.acked == n and count.missing == []
    b = _books(env, pid)
    _check_settled(b, topped)
    # every message of ours the operator accepted is captured exactly once: a copy JetStream redelivered
    # after the kill (the same id, submitted again) is not charged twice, while a message the partner
    # submitted again after an unknown outcome is a message of its own (its own id), charged once
    assert b["counts"]["capture"] == b["submitted"] >= n, b
    assert b["submitted"] <= sim.stats.accepted, (b, sim.stats.accepted)
    assert b["counts"].get("release", 0) == 0


async def test_books_exact_after_a_nats_restart_mid_load(env: Env, nats_server_factory: object) -> None:
    srv = nats_server_factory()  # type: ignore[operator]
    env.nats_url = srv.url
    n = 300
    topped = Decimal(1000)
    all_texts = texts("bill-nats", n)
    receipts = Receipts()
    async with open_sim(_sim()) as sim:
        ids = _billing(env, sim.port, {"acme": topped})
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0], handler=receipts.handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                started = trio.Event()

                def on_ack(count: int) -> None:
                    if count == n // 3:
                        started.set()

                async def restart() -> None:
                    await started.wait()
                    srv.stop()
                    await trio.sleep(1.5)
                    srv.start()

                nursery.start_soon(restart)
                with trio.fail_after(150):
                    load = await submit_load(client, all_texts, on_ack=on_ack)
                await wait_delivered(load, lambda: [sim], 90)
                await wait_receipts(load, receipts, 90)
                await client.aclose()
            pid = ids["acme"]
            await wait_for(lambda: _books(env, pid)["open_holds"] == 0, 60, "every hold settled")
            assert gw.bus.reconnects >= 1
        count = check_delivered(all_texts, load, sim)
    assert count.acked == n and count.missing == []
    b = _books(env, pid)
    _check_settled(b, topped)
    assert b["counts"]["capture"] == b["submitted"] >= n, b
    assert b["submitted"] <= sim.stats.accepted, (b, sim.stats.accepted)


# --------------------------------------------------------------------------- charge on delivery


async def test_charge_on_delivery_captures_delivered_releases_the_rest_and_ignores_repeated_receipts(
    env: Env,
) -> None:
    n = 60
    topped = Decimal(100)
    mix = ((MessageState.DELIVERED, 70.0), (MessageState.UNDELIVERABLE, 30.0))
    receipts = Receipts()
    async with open_sim(_sim(receipt_mix=mix, receipt_copies=2)) as sim:
        ids = _billing(env, sim.port, {"acme": topped}, charge_on="delivery")
        pid = ids["acme"]
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0], handler=receipts.handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                with trio.fail_after(60):
                    load = await submit_load(client, texts("cod", n))
                await wait_receipts(load, receipts, 60)
                await wait_for(lambda: _books(env, pid)["open_holds"] == 0, 60, "every hold settled")
                await client.aclose()
    assert len(load.acked) == n
    delivered = sum(1 for s in sim.receipt_stats.values() if s == "DELIVRD")
    assert 0 < delivered < n
    b = _books(env, pid)
    _check_settled(b, topped)
    assert b["counts"]["capture"] == delivered and b["counts"]["release"] == n - delivered, b
    # charged on delivery: the plan's delivery price (twice the submit price here), only for DELIVRD
    assert b["balance"] == topped - delivered * PRICE * 2, b
    assert sim.stats.receipts_sent == 2 * n  # every receipt came twice; the books took each once
