"""Embedded nats-server and Postgres under a state directory: start, connect, stop, restart with data kept."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
import trio

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.embedded import (
    EmbeddedNats,
    EmbeddedPostgres,
    find_nats_server,
    find_postgres_bin,
    nats_has_jetstream,
    open_embedded_nats,
    open_embedded_postgres,
)
from catalyst_smpp.store import Database, PartnerRepo


def test_binaries_are_found() -> None:
    assert find_nats_server().name == "nats-server"
    assert (find_postgres_bin() / "pg_ctl").is_file()


async def test_start_connect_stop_and_restart_with_data(state_tmp: Path) -> None:
    state = state_tmp / "state"
    async with open_embedded_nats(state) as srv, open_embedded_postgres(state) as pg:
        assert srv.owned and pg.owned
        nats_url, dsn = srv.url, pg.dsn
        async with Bus.connect(srv.url, NatsConfig()) as bus:
            [ack] = await bus.publish_batch([(bus.subject(Kind.MT, "op"), b"kept", None, "k1")])
            assert ack.ok
        async with Database.open(pg.dsn, migrate=True) as db:
            await db.run(lambda c: PartnerRepo(c).add("acme", "pw"))
    assert (state / "nats" / "jetstream").is_dir() and (state / "postgres" / "PG_VERSION").is_file()
    host, port = nats_url.removeprefix("nats://").split(":")
    assert not nats_has_jetstream(host, int(port))
    with pytest.raises(psycopg.OperationalError):
        psycopg.connect(dsn, connect_timeout=2)

    # a second start on the same state dir keeps URL, DSN and data
    async with open_embedded_nats(state) as srv, open_embedded_postgres(state) as pg:
        assert srv.url == nats_url and pg.dsn == dsn
        async with Bus.connect(srv.url, NatsConfig()) as bus:
            c = await bus.consumer(Kind.MT, "op")
            with trio.fail_after(5):
                [m] = await c.fetch(1, 2.0)
            assert m.data == b"kept"
        async with Database.open(pg.dsn, migrate=True) as db:
            assert (await db.run(lambda c: PartnerRepo(c).get("acme"))) is not None


def test_second_process_reuses_running_nats(tmp_path: Path) -> None:
    a = EmbeddedNats(tmp_path / "nats")
    a.start()
    try:
        b = EmbeddedNats(tmp_path / "nats")
        assert b.start() == a.url and not b.owned
        b.stop()  # not the owner: leaves it running
        assert a.running and nats_has_jetstream(a.host, a.port)
    finally:
        a.stop()
    assert not a.running


def test_second_process_reuses_running_postgres(state_tmp: Path) -> None:
    a = EmbeddedPostgres(state_tmp / "pg")
    a.start()
    try:
        b = EmbeddedPostgres(state_tmp / "pg")
        assert b.start() == a.dsn and not b.owned
        b.stop()
        with psycopg.connect(a.dsn) as c:
            assert c.execute("SELECT 1").fetchone() == (1,)
    finally:
        a.stop()


async def test_open_infrastructure_from_an_empty_config(state_tmp: Path) -> None:
    from catalyst_smpp.config import parse_config
    from catalyst_smpp.embedded import open_infrastructure

    cfg = parse_config(
        """
        [node]
        id = "n1"
        state_dir = "state"
        [[partners]]
        system_id = "acme"
        password = "pw"
        [[operators]]
        name = "op1"
        host = "smsc"
        port = 2775
        system_id = "gw"
        """,
        base_dir=state_tmp,
    )
    async with open_infrastructure(cfg) as infra:
        assert infra.embedded_nats is not None and infra.embedded_postgres is not None
        assert infra.watcher is not None and infra.watcher.version >= 0
        snap = await infra.db.snapshot()
        assert [p.system_id for p in snap.partners] == ["acme"] and [o.name for o in snap.operators] == [
            "op1"
        ]
        [ack] = await infra.bus.publish_batch([(infra.bus.subject(Kind.MT, "op1"), b"x", None, "1")])
        assert ack.ok
    # seeding twice leaves the rows alone (no duplicate error), data is kept
    async with open_infrastructure(cfg, watch=False) as infra:
        assert len((await infra.db.snapshot()).partners) == 1
    assert (state_tmp / "state" / "nats").is_dir() and (state_tmp / "state" / "postgres").is_dir()
