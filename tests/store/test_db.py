"""The Postgres pool (store/db.py) when its connections die under it."""

from __future__ import annotations

import threading

import psycopg
import pytest
import trio

from catalyst_smpp.store.db import Database, connect_sync


async def test_after_a_dead_connection_the_idle_ones_go_too(pg_dsn: str, pg_schema: str) -> None:
    """A failure on one pooled connection drops every idle one (after an outage they are as dead), so the
    next call opens a fresh connection instead of failing on the next dead one."""
    async with Database.open(pg_dsn, schema=pg_schema, pool_size=3) as db:
        together = threading.Barrier(3, timeout=10)
        pids: list[int] = []

        def pid(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
            together.wait()  # all three calls hold a connection at once: three in the pool afterwards
            return int(conn.execute("SELECT pg_backend_pid()").fetchone()[0])

        async def one_call() -> None:
            pids.append(await db.run(pid))

        async with trio.open_nursery() as n:
            for _ in range(3):
                n.start_soon(one_call)
        assert len(set(pids)) == 3
        with connect_sync(pg_dsn) as admin:  # what an outage does to them
            for p in pids:
                admin.execute("SELECT pg_terminate_backend(%s)", (p,))

        def one(conn: psycopg.Connection) -> int:  # type: ignore[type-arg]
            return int(conn.execute("SELECT 1").fetchone()[0])

        with pytest.raises(psycopg.OperationalError):
            await db.run(one)
        assert await db.run(one) == 1  # a fresh connection, not the next dead one
