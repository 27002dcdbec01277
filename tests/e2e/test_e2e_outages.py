"""Infrastructure outages (what an operator on call at 3am expects), each with an exact count at the end.

* Postgres (config, message log) goes away mid-load: traffic does not stop. Bound partners keep submitting,
  messages reach the SMSC, receipts come back; a known partner binds from the last loaded snapshot; the
  message log catches up when Postgres is back (events wait in the EVENTS stream): one row per message and
  event, none missing; the config watcher reconnects and reloads.
* The gateway starts while its NATS is not reachable: it waits (and says so), and serves once NATS is up --
  the daemon (NATS down before it connects) and a Gateway whose bus is reconnecting when it starts (its
  consumers, writer and connectors retry with back-off).

Load: our SmppClient as the partner, unique texts, each submitted until acknowledged (see harness.py).
"""

from __future__ import annotations

import logging
import stat
from pathlib import Path

import attrs
import pytest
import trio

from catalyst_smpp.embedded import EmbeddedNats, EmbeddedPostgres
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig

from .harness import (
    Env,
    GatewayProcess,
    LoadResult,
    Receipts,
    check_delivered,
    open_env,
    open_gateway,
    open_sim,
    partner_client,
    partner_round,
    submit_load,
    texts,
    wait_delivered,
    wait_for,
    wait_message_log,
    wait_receipts,
)


def _sim() -> SimConfig:
    return SimConfig(
        receipt_delay=DelayRange(0.01, 0.05), id_format=IdFormat(IdForm.HEX, width=10, upper=True)
    )


def _setup(env: Env, port: int, *partners: str) -> None:
    for p in partners:
        env.add_partner(p)
    env.add_operator("opA", port, submit_id_format="hex", receipt_id_format="hex")
    env.add_route(None, "44", ["opA"])


def _dec(partner_id: str) -> str:
    """Our id as the message log has it (decimal) from the form the partner sees (hex)."""
    return str(int(partner_id, 16))


# --------------------------------------------------------------------------- Postgres down mid-load


async def test_postgres_down_mid_load(
    state_tmp: Path, nats_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO)
    pg = EmbeddedPostgres(state_tmp / "pg")
    dsn = await trio.to_thread.run_sync(pg.start)
    try:
        with open_env(state_tmp, nats_url, dsn) as env:
            await _postgres_outage(env, pg)
    finally:
        await trio.to_thread.run_sync(pg.stop)
    text = "\n".join(f"{r.levelname} {r.name}: {r.getMessage()}" for r in caplog.records)
    # the logs say what is down, and that it came back
    warned = [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING]
    for what in (
        "message log write of",
        "message log writes to Postgres resumed",
        "config watcher lost its connection to Postgres",
        "config watcher reconnected to Postgres",
    ):
        assert any(what in m for m in warned), f"no warning {what!r}:\n{text}"


async def _postgres_outage(env: Env, pg: EmbeddedPostgres, outage: float = 3.0) -> None:
    n_a, n_b = 600, 100
    texts_a, texts_b = texts("pga", n_a), texts("pgb", n_b)
    receipts_a, receipts_b = Receipts(), Receipts()
    load_a, load_b = LoadResult(), LoadResult()
    marks: dict[str, int] = {}
    async with open_sim(_sim()) as sim:
        _setup(env, sim.port, "acme", "beta")
        async with open_gateway(env, "gw-a") as gw:
            watcher = gw.infra.watcher
            a = partner_client(gw.ports[0], "acme", handler=receipts_a.handler)
            b = partner_client(gw.ports[0], "beta", handler=receipts_b.handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(a.run)
                await a.wait_bound()

                async def fault() -> None:
                    await wait_for(lambda: len(load_a.acked) >= n_a // 5, 60, "a fifth of the load acked")
                    await trio.to_thread.run_sync(pg.stop)
                    down_until = trio.current_time() + outage
                    marks["acked_at_stop"] = len(load_a.acked)
                    # a known partner binds now (from the snapshot loaded before) and submits too
                    await nursery.start(b.run)
                    await b.wait_bound()
                    await submit_load(b, texts_b, rate=200, result=load_b)  # Postgres comes back after this
                    marks["b_acked_in_outage"] = len(load_b.acked)
                    await wait_for(lambda: not watcher.connected, outage, "the watcher noticing the outage")
                    await trio.sleep_until(down_until)
                    marks["acked_at_start"] = len(load_a.acked)
                    await trio.to_thread.run_sync(pg.start)

                nursery.start_soon(fault)
                with trio.fail_after(60):
                    await submit_load(a, texts_a, rate=100, result=load_a)
                await wait_for(lambda: "acked_at_start" in marks, 30, "Postgres back")
                await wait_delivered(load_a, lambda: [sim], 60)
                await wait_delivered(load_b, lambda: [sim], 60)
                await wait_receipts(load_a, receipts_a, 60)
                await wait_receipts(load_b, receipts_b, 60)
                # the watcher reconnects and reloads: a partner added now can bind
                await wait_for(lambda: watcher.connected, 30, "the config watcher reconnected")
                await trio.to_thread.run_sync(env.add_partner, "gamma")
                await wait_for(lambda: gw.partner("gamma") is not None, 30, "the new partner loaded")
                c = partner_client(gw.ports[0], "gamma")
                await nursery.start(c.run)
                with trio.fail_after(10):
                    await c.wait_bound()
                await c.aclose()
                # the writer catches up: every event of the outage is in the log, once
                log = await wait_message_log(
                    env,
                    {
                        "accepted": {_dec(i) for i in [*load_a.acked.values(), *load_b.acked.values()]},
                        "submitted": {_dec(i) for i in [*load_a.acked.values(), *load_b.acked.values()]},
                        "delivered": {_dec(r) for r, _ in [*receipts_a.items, *receipts_b.items]},
                    },
                    60,
                )
                await trio.sleep(0.5)  # nothing else comes
                await a.aclose()
                await b.aclose()
            assert gw.events.stats.unstored == 0
        both = LoadResult(
            acked={**load_a.acked, **load_b.acked}, uncertain=load_a.uncertain | load_b.uncertain
        )
        count = check_delivered(texts_a + texts_b, both, sim)
    print(f"marks {marks}; writer {gw.writer.stats}")
    # the outage was in the middle of the load: messages were acked, and a partner bound, while it lasted
    assert marks["acked_at_stop"] < marks["acked_at_start"] < n_a, marks
    assert marks["b_acked_in_outage"] == n_b
    assert count.acked == n_a + n_b and count.missing == [] and count.unexpected == 0
    assert count.duplicates == 0, count  # the partners stayed bound: no re-submits, no copies
    acked = {_dec(i) for i in [*load_a.acked.values(), *load_b.acked.values()]}
    receipted = [_dec(r) for r, _ in [*receipts_a.items, *receipts_b.items]]
    assert sorted(receipted) == sorted(acked), "one receipt per message"
    # exactly one row per message and event (nothing lost, no duplicates)
    assert set(log["accepted"]) == acked and set(log["accepted"].values()) == {1}
    assert set(log["submitted"]) == acked and set(log["submitted"].values()) == {1}
    assert set(log["delivered"]) == acked and set(log["delivered"].values()) == {1}
    assert set(log) <= {"accepted", "submitted", "delivered"}, {k: len(v) for k, v in log.items()}


# --------------------------------------------------------------------------- started while Postgres is down


async def test_gateway_started_while_postgres_down(state_tmp: Path, nats_url: str) -> None:
    """A node restarted while Postgres is down starts from the snapshot it saved on its last run: it binds the
    partner and relays (receipts too); once Postgres is back the log catches up and config changes apply."""
    pg = EmbeddedPostgres(state_tmp / "pg")
    dsn = await trio.to_thread.run_sync(pg.start)
    try:
        with open_env(state_tmp, nats_url, dsn) as env:
            await _start_without_postgres(env, pg)
    finally:
        await trio.to_thread.run_sync(pg.stop)


async def _start_without_postgres(env: Env, pg: EmbeddedPostgres) -> None:
    n = 100
    all_texts = texts("nopg", n)
    receipts = Receipts()
    async with open_sim(_sim()) as sim:
        _setup(env, sim.port, "acme")
        gw = GatewayProcess(env, env.tmp / "gw")
        saved = gw.dir / "state" / "config-snapshot.json"
        # 1. a normal run (Postgres up) saves the snapshot
        gw.start()
        try:
            await gw.wait_listening(timeout=60)
            await wait_for(saved.exists, 30, "the config snapshot saved")
        finally:
            await gw.stop_async()
        assert stat.S_IMODE(saved.stat().st_mode) == 0o600
        # 2. Postgres down; the gateway (re)starts: from the saved snapshot, within a bounded time
        await trio.to_thread.run_sync(pg.stop)
        gw.start()
        try:
            t0 = trio.current_time()
            await gw.wait_listening(timeout=45)
            listening_after = trio.current_time() - t0
            line = "Postgres is DOWN at start: serving from the configuration snapshot saved"
            try:  # the line and the listening socket come from different tasks: either may come first
                await wait_for(lambda: line in gw.tail(400), 15, "the start-from-snapshot warning")
            except AssertionError:
                raise AssertionError(gw.tail(400)) from None
            assert gw.metric("catalyst_smpp_config_from_snapshot") == 1  # what the NOC sees
            await wait_for(lambda: sim.bound_sessions == 1, 30, "the connector bound to the SMSC")
            client = partner_client(gw.port, handler=receipts.handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                with trio.fail_after(10):
                    await client.wait_bound()
                with trio.fail_after(60):
                    load = await submit_load(client, all_texts)
                await wait_delivered(load, lambda: [sim], 60)
                await wait_receipts(load, receipts, 60)
                # 3. Postgres back: the message log gets every row, the real snapshot is loaded
                await trio.to_thread.run_sync(pg.start)
                acked = {_dec(i) for i in load.acked.values()}
                log = await wait_message_log(
                    env, {"accepted": acked, "submitted": acked, "delivered": acked}, 60
                )
                await wait_for(
                    # "after": the start warning says "... wait until Postgres is back" too
                    lambda: "Postgres is back after" in gw.tail(400),
                    60,
                    "the gateway noticing Postgres",
                )
                assert gw.metric("catalyst_smpp_config_from_snapshot") == 0
                # a route added now takes effect (before it, there is no route for 33)
                refused = await client.request(
                    SubmitSm(destination_addr="337700900001", dest_addr_ton=1, short_message=b"no route yet")
                )
                assert refused.command_status != 0
                await trio.to_thread.run_sync(env.add_route, None, "33", ["opA"])
                late = texts("nopg33", 5)
                with trio.fail_after(30):
                    load33 = await submit_load(client, late, dest="337700900001")
                await wait_delivered(load33, lambda: [sim], 30)
                await client.aclose()
        finally:
            await gw.stop_async()
        count = check_delivered(
            all_texts + late, attrs.evolve(load, acked={**load.acked, **load33.acked}), sim
        )
    print(f"listening {listening_after:.1f}s after the start with Postgres down")
    assert listening_after < 30
    assert count.acked == n + 5 and count.missing == [] and count.duplicates == 0 and count.unexpected == 0
    assert sorted(r for r, _ in receipts.items if _dec(r) in acked) == sorted(load.acked.values())
    for event in ("accepted", "submitted", "delivered"):
        assert {m for m in log[event] if m in acked} == acked and set(log[event].values()) == {1}, event


# --------------------------------------------------------------------------- started while NATS is down


async def test_gateway_started_while_nats_down(env: Env, nats_server_factory: object) -> None:
    srv: EmbeddedNats = nats_server_factory()  # type: ignore[operator]
    await trio.to_thread.run_sync(srv.stop)
    env.nats_url = srv.url  # the gateway's (private) NATS, not running now
    n = 100
    all_texts = texts("late", n)
    receipts = Receipts()
    async with open_sim(_sim()) as sim:
        _setup(env, sim.port, "acme")
        gw = GatewayProcess(env, env.tmp)
        gw.start()
        try:
            # its start-up (seconds on a loaded machine) ends in the line saying what it waits for; then it
            # keeps trying for a while, which must not log again
            await wait_for(
                lambda: "not reachable" in gw.tail(400), 60, f"the gateway's line about NATS:\n{gw.tail()}"
            )
            await trio.sleep(2.0)
            assert gw.proc is not None and gw.proc.poll() is None, f"the gateway gave up:\n{gw.tail()}"
            with pytest.raises(OSError):  # no partner bind before the messages have somewhere to go
                await trio.open_tcp_stream("127.0.0.1", gw.port)
            waiting_log = gw.tail(400)
            await trio.to_thread.run_sync(srv.start)
            t0 = trio.current_time()
            await gw.wait_listening(timeout=20)
            listening_after = trio.current_time() - t0
            await wait_for(lambda: sim.bound_sessions == 1, 20, "the connector bound to the SMSC")
            load = await partner_round(gw.port, receipts, all_texts, lambda: [sim], bind_timeout=10)
        finally:
            await gw.stop_async()
        count = check_delivered(all_texts, load, sim)
    print(f"listening {listening_after:.2f}s after NATS started")
    assert listening_after < 10
    assert count.acked == n and count.missing == [] and count.duplicates == 0 and count.unexpected == 0
    assert sorted(r for r, _ in receipts.items) == sorted(load.acked.values())
    # the log says once, clearly, what the gateway is waiting for (not a line per connect attempt)
    said = [line for line in waiting_log.splitlines() if "NATS" in line and "not reachable" in line]
    assert len(said) == 1 and srv.url in said[0], waiting_log
    assert waiting_log.count("ConnectionRefused") <= 1, waiting_log
    assert "reachable again" in gw.tail(400)


async def test_gateway_started_in_process_while_its_bus_is_reconnecting(
    env: Env, nats_server_factory: object
) -> None:
    srv: EmbeddedNats = nats_server_factory()  # type: ignore[operator]
    env.nats_url = srv.url
    # JetStream requests (consumer creation, fetch) fail after 1 s, not 5: within the 2 s outage every part
    # that sets up a consumer as it starts sees it fail, and must retry
    env.nats = attrs.evolve(env.nats, request_timeout=1.0)
    n = 100
    all_texts = texts("recon", n)
    receipts = Receipts()
    stopped = trio.Event()

    async def nats_down() -> None:
        await trio.to_thread.run_sync(srv.stop)
        stopped.set()

    async def nats_back_later() -> None:
        await stopped.wait()
        await trio.sleep(2.0)
        await trio.to_thread.run_sync(srv.start)

    async with open_sim(_sim()) as sim, trio.open_nursery() as outer:
        _setup(env, sim.port, "acme")
        outer.start_soon(nats_back_later)
        t0 = trio.current_time()
        async with open_gateway(env, "gw-a", before_run=nats_down) as gw:
            await wait_for(lambda: sim.bound_sessions == 1, 30, "the connector bound to the SMSC")
            load = await partner_round(gw.ports[0], receipts, all_texts, lambda: [sim])
            served_after = trio.current_time() - t0
            assert gw.bus.reconnects >= 1
        count = check_delivered(all_texts, load, sim)
    print(f"all {n} delivered with receipts {served_after:.1f}s after the start (NATS down the first 2 s)")
    assert count.acked == n and count.missing == [] and count.duplicates == 0 and count.unexpected == 0
    assert sorted(r for r, _ in receipts.items) == sorted(load.acked.values())
