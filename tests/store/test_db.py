"""The Postgres pool (store/db.py) when its connections die under it."""

from __future__ import annotations

import psycopg
import pytest
import trio

from catalyst_smpp.store.db import Database, connect_sync


async def test_after_a_dead_connection_the_idle_ones_go_too(pg_dsn: str, pg_schema: str) -> None:
    """A failure on one pooled connection drops every idle one (after an outage they are as dead), so the
    next call opens a fresh connection instead of failing on the next dead one."""
    async with Database.open(pg_dsn, schema=pg_schema, pool_size=3) as db:
        gate = trio.Event()
        pids: list[int] = []

        async def hold() -> None:  # three calls at once: three connections in the pool afterwards
            def pid(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
                return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

            pids.append(await db.run(pid))
            await gate.wait()

        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(hold)
            while len(pids) < 3:
                await trio.sleep(0.01)
            gate.set()
        assert len(set(pids)) == 3
        with connect_sync(pg_dsn) as admin:  # what an outage does to them
            for p in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (p,))

        def one(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
            return int(conn.execute("SELECT 1").fetchone()[0])

        with pytest.raises(psycopg.OperationalError):
            await db.run(one)
        assert await db.run(one) == 1  # a fresh connection, not the next dead one
