"""Scheduled sends end to end (real NATS, Postgres, the simulator as the operator).

* A message scheduled a few seconds ahead survives a gateway restart across its due time: the gateway process
  is stopped before it is due and started after; it reaches the simulator exactly once and its receipt comes
  back.
* cancel_sm before the due time: never reaches the simulator, a ``cancelled`` log row, the billed hold
  released in the books; the same cancel after the message left → ESME_RCANCELFAIL; cancel_sm by source and
  destination (no message_id) cancels every waiting message between them.
* replace_sm before the due time: the simulator gets the new text; a new text that needs another number of
  parts of a billed message is refused (ESME_RREPLACEFAIL: its price was held for the old number).
* Expiry: a scheduled message whose validity period ends before its due time gets an EXPIRED receipt and is
  never sent; an unscheduled message whose validity passed while its operator was away is not submitted when
  the connector fetches it (EXPIRED receipt too).
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import trio

from catalyst_smpp.client import SmppClient
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import CancelSm, ReplaceSm, SubmitSm
from catalyst_smpp.sim import DelayRange, SimConfig

from .harness import (
    Env,
    GatewayProcess,
    Receipts,
    SimSlot,
    message_log,
    open_gateway,
    open_sim,
    partner_client,
    sim_texts,
    wait_for,
)
from .test_e2e_billing import _billing

S = CommandStatus
DEST = "447700900123"
SOURCE = "12345"


def _sim(**kw: Any) -> SimConfig:
    kw.setdefault("receipt_delay", DelayRange(0.01, 0.05))
    return SimConfig(**kw)


def _setup(env: Env, sim_port: int) -> None:
    env.add_partner("acme", message_id_format="hex")
    env.add_operator("opA", sim_port)
    env.add_route(None, "44", ["opA"])


def _in(seconds: int) -> str:
    """A relative SMPP time ``seconds`` from now (under an hour)."""
    return f"00000000{seconds // 60:02d}{seconds % 60:02d}000R"


async def _submit(
    client: SmppClient, text: str, *, schedule: str = "", validity: str = "", dest: str = DEST
) -> str:
    resp = await client.request(
        SubmitSm(
            source_addr=SOURCE,
            source_addr_ton=1,
            source_addr_npi=1,
            dest_addr_ton=1,
            dest_addr_npi=1,
            destination_addr=dest,
            schedule_delivery_time=schedule,
            validity_period=validity,
            registered_delivery=1,
            short_message=text.encode(),
        )
    )
    assert resp.command_status == 0, hex(resp.command_status)
    mid: str = resp.message_id  # type: ignore[attr-defined]
    return mid


def _states(env: Env) -> dict[str, str]:
    """scheduled_messages: message id → state."""
    return dict(env.setup(lambda c: c.execute("SELECT message_id, state FROM scheduled_messages").fetchall()))


def test_relative_time_helper() -> None:
    assert _in(5) == "000000000005000R"
    assert _in(75) == "000000000115000R"


async def test_scheduled_message_due_across_a_gateway_restart(env: Env) -> None:
    async with open_sim(_sim()) as sim:
        _setup(env, sim.port)
        gw = GatewayProcess(env, env.tmp / "gw")
        gw.start()
        try:
            await gw.wait_listening()
            client = partner_client(gw.port)
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                shown = await _submit(client, "due after a restart", schedule=_in(8))
                await client.aclose()
            submitted_at = trio.current_time()
            assert list(_states(env).values()) == ["waiting"]
            await trio.to_thread.run_sync(gw.stop)  # before it is due
            await trio.sleep(max(0.0, submitted_at + 9.5 - trio.current_time()))
            assert len(sim.messages) == 0  # nobody released it while no gateway ran
            gw.start()
            await gw.wait_listening()
            receipts = Receipts()
            client = partner_client(gw.port, handler=receipts.handler)
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                await wait_for(lambda: bool(receipts.items), 30, "the scheduled message's receipt")
                await trio.sleep(1.5)  # a copy would come now
                await client.aclose()
        finally:
            await trio.to_thread.run_sync(gw.stop)
    assert sim_texts(sim) == {"due after a restart": 1}
    assert [rid for rid, _stat in receipts.items] == [shown]
    assert list(_states(env).values()) == ["sent"]


async def test_cancel_before_and_after_due_and_by_addresses(env: Env) -> None:
    async with open_sim(_sim()) as sim:
        ids = _billing(env, sim.port, {"acme": Decimal("10")})
        pid = ids["acme"]
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                early = await _submit(client, "cancelled early", schedule=_in(30))
                soon = await _submit(client, "sent soon", schedule=_in(1))
                pair = [
                    await _submit(client, f"pair {i}", schedule=_in(30), dest="447700900777") for i in (1, 2)
                ]
                other = await _submit(client, "other destination", schedule=_in(30), dest="447700900888")

                r = await client.request(CancelSm(message_id=early, source_addr=SOURCE))
                assert r.command_status == 0
                r = await client.request(CancelSm(message_id=early, source_addr=SOURCE))
                assert r.command_status == S.ESME_RCANCELFAIL  # already cancelled
                r = await client.request(CancelSm(message_id="ffffffff", source_addr=SOURCE))
                assert r.command_status == S.ESME_RCANCELFAIL  # unknown
                r = await client.request(CancelSm(message_id="not-hex!"))
                assert r.command_status == S.ESME_RINVMSGID
                # no message_id: every waiting message from SOURCE to that destination
                r = await client.request(CancelSm(source_addr=SOURCE, destination_addr="447700900777"))
                assert r.command_status == 0

                await wait_for(lambda: sim_texts(sim)["sent soon"] == 1, 20, "the message due in 1 s")
                r = await client.request(CancelSm(message_id=soon, source_addr=SOURCE))
                assert r.command_status == S.ESME_RCANCELFAIL  # it has left
                assert await gw.scheduler.cancel("acme", str(int(other, 16)))  # the HTTP side's call
                assert not await gw.scheduler.cancel("acme", str(int(other, 16)))
                await client.aclose()
            canonical = {str(int(x, 16)) for x in [early, *pair, other]}

            def cancelled_settled() -> bool:
                log = message_log(env)
                return set(log["cancelled"]) == canonical

            await wait_for(cancelled_settled, 20, "the cancelled rows")
            await trio.sleep(2.5)  # the scheduler had its chances to send them
    assert sim_texts(sim) == {"sent soon": 1}
    states = _states(env)
    assert {states[m] for m in canonical} == {"cancelled"}

    def books_of(conn: Any) -> dict[str, set[str]]:
        rows = conn.execute(
            "SELECT message_id, kind FROM credit_entries WHERE partner_id = %s", (pid,)
        ).fetchall()
        out: dict[str, set[str]] = {}
        for mid, kind in rows:
            out.setdefault(mid, set()).add(kind)
        return out

    entries = env.setup(books_of)
    for m in canonical:
        assert entries[m] == {"hold", "release"}, (m, entries.get(m))
    assert entries[str(int(soon, 16))] >= {"hold", "capture"}
    cdr = env.setup(
        lambda c: c.execute(
            "SELECT message_id, charge_state FROM message_log WHERE event = 'cancelled'"
        ).fetchall()
    )
    assert {s for _m, s in cdr} == {"released"}


async def test_replace_before_due(env: Env) -> None:
    async with open_sim(_sim()) as sim:
        _billing(env, sim.port, {"acme": Decimal("10")})
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0])
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                mid = await _submit(client, "old text", schedule=_in(3))
                r = await client.request(
                    ReplaceSm(
                        message_id=mid, source_addr=SOURCE, short_message=b"x" * 200, registered_delivery=1
                    )
                )
                assert r.command_status == S.ESME_RREPLACEFAIL  # 2 parts: the price held is for 1
                r = await client.request(
                    ReplaceSm(
                        message_id=mid, source_addr=SOURCE, short_message=b"new text", registered_delivery=1
                    )
                )
                assert r.command_status == 0
                r = await client.request(
                    ReplaceSm(
                        message_id="ffffff", source_addr=SOURCE, short_message=b"x", registered_delivery=1
                    )
                )
                assert r.command_status == S.ESME_RREPLACEFAIL
                await wait_for(lambda: bool(sim.messages), 20, "the replaced message")
                await trio.sleep(1.0)
                r = await client.request(
                    ReplaceSm(
                        message_id=mid, source_addr=SOURCE, short_message=b"late", registered_delivery=1
                    )
                )
                assert r.command_status == S.ESME_RREPLACEFAIL  # it has left
                await client.aclose()
    assert sim_texts(sim) == {"new text": 1}


async def test_scheduled_message_expires_before_its_due_time(env: Env) -> None:
    async with open_sim(_sim()) as sim:
        _setup(env, sim.port)
        async with open_gateway(env, "gw-a") as gw:
            receipts = Receipts()
            client = partner_client(gw.ports[0], handler=receipts.handler)
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                mid = await _submit(client, "too late", schedule=_in(4), validity=_in(1))
                await wait_for(lambda: bool(receipts.items), 20, "the EXPIRED receipt")
                await trio.sleep(4.0)  # past the due time: nothing is sent
                await client.aclose()
            await wait_for(lambda: bool(message_log(env)["failed"]), 20, "the failed row")
    assert receipts.items == [(mid, "EXPIRED")]
    assert len(sim.messages) == 0
    assert list(_states(env).values()) == ["expired"]
    rows = env.setup(
        lambda c: c.execute("SELECT event, final_state FROM message_log ORDER BY event").fetchall()
    )
    assert rows == [("accepted", None), ("failed", "EXPIRED")]


async def test_validity_passed_while_the_operator_was_away(env: Env) -> None:
    receipts = Receipts()
    async with trio.open_nursery() as sims:
        slot = SimSlot()
        sim = await slot.start(sims, _sim())
        port = sim.port
        _setup(env, port)
        async with open_gateway(env, "gw-a") as gw:
            await wait_for(lambda: gw.connectors["opA"][0].is_up, 20, "the operator bound")
            slot.stop()
            client = partner_client(gw.ports[0], handler=receipts.handler)
            async with trio.open_nursery() as n:
                await n.start(client.run)
                await client.wait_bound()
                mid = await _submit(client, "stale", validity=_in(1))
                await trio.sleep(2.0)
                sim2 = await SimSlot().start(sims, _sim(port=port))
                await wait_for(lambda: bool(receipts.items), 30, "the EXPIRED receipt")
                await client.aclose()
        sims.cancel_scope.cancel()
    assert receipts.items == [(mid, "EXPIRED")]
    assert len(sim.messages) == len(sim2.messages) == 0
