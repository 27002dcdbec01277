"""The last good config snapshot on disk (start while Postgres is down): round trip, mode 0600, atomicity."""

from __future__ import annotations

import datetime as dt
import ipaddress
import os
import stat
from pathlib import Path

import pytest

from catalyst_smpp.store import (
    ConfigSnapshot,
    MoRoute,
    Operator,
    Partner,
    Route,
    RouteTarget,
    hash_password,
    load_snapshot_file,
    save_snapshot_file,
)
from catalyst_smpp.store.snapshot_file import decode_snapshot


def _snapshot() -> ConfigSnapshot:
    t0 = dt.datetime(2024, 5, 6, 7, 8, 9, 123456, tzinfo=dt.UTC)
    t1 = dt.datetime(2024, 5, 7, 1, 2, 3, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    return ConfigSnapshot(
        version=42,
        partners=(
            Partner(
                1,
                "acme",
                hash_password("secret"),
                allowed_ips=("10.0.0.0/8", "2001:db8::/32", "192.0.2.7"),
                max_binds=3,
                throttle_rate=12.5,
                message_id_format="dec",
                data_coding_0="latin1",
                receipt_date_digits=12,
                description="ünïcode",
                created_at=t0,
                updated_at=t1,
            ),
            Partner(2, "beta", hash_password("pw"), enabled=False),
        ),
        operators=(
            Operator(
                7,
                "opA",
                "smsc.example",
                2775,
                "sysA",
                password="opsecret",
                bind_type="tx_rx",
                bind_count=2,
                tps=33.3,
                submit_id_format="hex",
                receipt_id_format="dec",
                temporary_statuses=(0x401, 0x4FF),
                created_at=t0,
            ),
        ),
        routes=(
            Route(
                3,
                None,
                "44",
                source_regex=r"^1\d+$",
                priority=5,
                strategy="weighted",
                targets=(RouteTarget("opA", 0, 3), RouteTarget("opB", 1, 1)),
                updated_at=t1,
            ),
            Route(4, "acme", "", source_prefix="12"),
        ),
        mo_routes=(MoRoute(9, "4477", "acme", source_prefix="33", priority=2, created_at=t0),),
    )


def test_round_trip_is_equal(tmp_path: Path) -> None:
    snap = _snapshot()
    path = tmp_path / "state" / "config-snapshot.json"  # the directory is created
    saved_at = dt.datetime(2024, 6, 1, 12, 0, tzinfo=dt.UTC)
    save_snapshot_file(path, snap, saved_at=saved_at)
    back = load_snapshot_file(path)
    assert back.snapshot == snap
    assert back.saved_at == saved_at
    p = back.snapshot.partners[0]
    assert p.allowed_ips == (
        ipaddress.ip_network("10.0.0.0/8"),
        ipaddress.ip_network("2001:db8::/32"),
        ipaddress.ip_network("192.0.2.7/32"),
    )
    assert isinstance(p.allowed_ips, tuple) and p.ip_allowed("10.1.2.3") and not p.ip_allowed("11.0.0.1")
    assert p.check_password("secret") and not p.check_password("nope")
    assert (
        p.created_at is not None
        and p.created_at.tzinfo is not None
        and p.updated_at == snap.partners[0].updated_at
    )
    assert back.snapshot.routes[0].targets == (RouteTarget("opA", 0, 3), RouteTarget("opB", 1, 1))
    assert back.snapshot.operators[0].temporary_statuses == (0x401, 0x4FF)
    assert back.age(saved_at + dt.timedelta(seconds=90)) == 90


def test_mode_0600_and_atomic_replace(tmp_path: Path) -> None:
    path = tmp_path / "config-snapshot.json"
    old_umask = os.umask(0)  # even with a permissive umask
    try:
        save_snapshot_file(path, _snapshot())
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        path.chmod(0o644)  # replaced by a fresh 0600 file on the next save
        newer = ConfigSnapshot(version=43, partners=(), operators=(), routes=())
        save_snapshot_file(path, newer)
    finally:
        os.umask(old_umask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_snapshot_file(path).snapshot == newer
    assert [p.name for p in tmp_path.iterdir()] == ["config-snapshot.json"]  # no temp file left


def test_missing_and_damaged_files(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError):
        load_snapshot_file(tmp_path / "none.json")
    for bad in (b"", b"{", b"[]", b'{"format": 99}', b'{"format": 1, "version": 1}'):
        with pytest.raises(ValueError):
            decode_snapshot(bad)


async def test_open_infrastructure_without_postgres(state_tmp: Path, nats_url: str) -> None:
    """``db_wait``: Postgres down → the infrastructure opens anyway (``db_ready`` False) and ``db_setup`` does
    the skipped migrations and seeds once it is up; ``db_wait=None`` (the default) still fails as before."""
    import psycopg
    import trio

    from catalyst_smpp.config import parse_config
    from catalyst_smpp.embedded import EmbeddedPostgres, free_port, open_infrastructure
    from tests.services import delete_namespace_streams, unique_name

    port = free_port()
    cfg = parse_config(
        f"""
        [node]
        id = "n1"
        state_dir = "state"
        [nats]
        urls = ["{nats_url}"]
        namespace = "{unique_name("s")}"
        [database]
        dsn = "host=127.0.0.1 port={port} user=postgres dbname=catalyst"
        connect_timeout = "1s"
        [[partners]]
        system_id = "acme"
        password = "pw"
        """,
        base_dir=state_tmp,
    )
    try:
        with pytest.raises(psycopg.OperationalError):
            async with open_infrastructure(cfg, watch=False):
                pass
        t0 = trio.current_time()
        async with open_infrastructure(cfg, db_wait=1.0) as infra:
            assert trio.current_time() - t0 < 5
            assert not infra.db_ready and infra.db_setup is not None
            assert infra.watcher is not None and not infra.watcher.connected
            with pytest.raises(psycopg.OperationalError):
                await infra.db.snapshot()
            pg = EmbeddedPostgres(state_tmp / "pg", port=port)
            await trio.to_thread.run_sync(pg.start)
            try:
                await infra.db_setup()  # migrations + seeds, now
                assert [p.system_id for p in (await infra.db.snapshot()).partners] == ["acme"]
                with trio.fail_after(30):
                    while not infra.watcher.connected:
                        await trio.sleep(0.05)
            finally:
                await trio.to_thread.run_sync(pg.stop)
    finally:
        delete_namespace_streams(nats_url, cfg.nats)
