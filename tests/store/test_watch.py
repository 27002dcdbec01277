"""Running gateways notice configuration changes without a restart (LISTEN/NOTIFY + version counter)."""

from __future__ import annotations

import psycopg
import trio
from psycopg import sql

from catalyst_smpp.store import Database, OperatorRepo, PartnerRepo, open_config_watcher
from tests.services import unique_name


async def test_watcher_sees_each_change(db: Database) -> None:
    async with open_config_watcher(db, poll_interval=60) as w:
        v0 = w.version
        assert v0 >= 0 and w.connected
        await db.run(lambda c: PartnerRepo(c).add(unique_name("w")[:15], "pw"))
        with trio.fail_after(30):  # a hang guard (NOTIFY is immediate; a loaded machine is not)
            v1 = await w.wait_for_change(v0)
        assert v1 == v0 + 1
        name = unique_name("op")
        await db.run(lambda c: OperatorRepo(c).add(name, "h", 1, "s"))
        await db.run(lambda c: OperatorRepo(c).disable(name))
        with trio.fail_after(30):  # a hang guard (NOTIFY is immediate; a loaded machine is not)
            while w.version < v1 + 2:
                await w.wait_for_change(w.version)
        # a change made outside our repositories (psql, another tool) is seen too
        await db.run(lambda c: c.execute("UPDATE operators SET tps = tps + 1 WHERE name = %s", (name,)))
        with trio.fail_after(30):  # a hang guard (NOTIFY is immediate; a loaded machine is not)
            assert await w.wait_for_change(v1 + 2) == v1 + 3


async def test_changes_in_another_schema_are_ignored(db: Database, pg_dsn: str) -> None:
    other = unique_name("other_")
    async with Database.open(pg_dsn, schema=other, migrate=True) as db2:
        try:
            async with open_config_watcher(db, poll_interval=60) as w:
                v0 = w.version
                await db2.run(lambda c: PartnerRepo(c).add("x", "pw"))  # NOTIFY wakes us, version unchanged
                await trio.sleep(0.3)
                assert w.version == v0
        finally:
            await db2.drop_schema()


async def test_watcher_recovers_after_its_connection_is_killed(db: Database, pg_dsn: str) -> None:
    async with open_config_watcher(db, poll_interval=0.5) as w:
        v0 = w.version
        with psycopg.connect(pg_dsn, autocommit=True) as admin:
            killed = admin.execute(
                sql.SQL(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE query LIKE 'SELECT version FROM config_version%' AND pid <> pg_backend_pid() "
                    "AND application_name = 'catalyst-smpp' AND state = 'idle'"
                )
            ).fetchall()
        assert killed and all(k[0] for k in killed)
        # a change while (possibly) disconnected is still noticed: by NOTIFY after reconnect or by the poll
        await db.run(lambda c: PartnerRepo(c).add(unique_name("r")[:15], "pw"))
        with trio.fail_after(10):
            assert await w.wait_for_change(v0) > v0
