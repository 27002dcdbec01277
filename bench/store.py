"""Postgres access from trio: why psycopg runs synchronously in worker threads, and batch write rates.

    .venv/bin/python bench/store.py [--dsn "host=127.0.0.1 dbname=test user=postgres"] [-n 100000]

Uses the given DSN (default: 127.0.0.1:5432/test if reachable, else an embedded Postgres in a temporary
directory), in a throw-away schema.  Prints:
  * the cost of one crossing: trio.to_thread.run_sync (sync psycopg) vs our asyncio thread (async psycopg);
  * one small query per crossing, both ways;
  * per-row commits vs the batched message log (COPY + INSERT ... ON CONFLICT) vs a bare COPY.
"""

from __future__ import annotations

import argparse
import datetime as dt
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import psycopg
import trio

from catalyst_smpp.bus.bridge import AsyncioThread
from catalyst_smpp.embedded import EmbeddedPostgres
from catalyst_smpp.store import Database, MessageEvent, MessageLogRepo
from catalyst_smpp.store.db import _schema_options


def rate(n: int, t: float) -> str:
    return f"{n / t:12,.0f}/s  ({t / n * 1e6:8.1f} µs each)"


async def run(dsn: str, n: int) -> None:
    schema = "bench_" + uuid.uuid4().hex[:8]
    async with Database.open(dsn, schema=schema, migrate=True, pool_size=2) as db:
        try:
            k = 2000
            t = time.perf_counter()
            for _ in range(k):
                await trio.to_thread.run_sync(lambda: None)
            print(f"{'crossing: trio.to_thread.run_sync (no-op)':52} {rate(k, time.perf_counter() - t)}")
            aio = AsyncioThread("bench")
            aio.start()

            async def noop() -> None:
                return None

            t = time.perf_counter()
            for _ in range(k):
                await aio.call(noop)
            print(f"{'crossing: asyncio thread bridge (no-op)':52} {rate(k, time.perf_counter() - t)}")

            t = time.perf_counter()
            for _ in range(k):
                await db.run(lambda c: c.execute("SELECT 1").fetchone(), transaction=False)
            print(f"{'SELECT 1: sync psycopg via Database.run':52} {rate(k, time.perf_counter() - t)}")
            aconn: Any = await aio.call(
                psycopg.AsyncConnection.connect, dsn + " options='" + _schema_options(schema) + "'"
            )
            aconn_autocommit = aconn.set_autocommit

            async def ac() -> None:
                await aconn_autocommit(True)

            await aio.call(ac)

            async def sel() -> Any:
                cur = await aconn.execute("SELECT 1")
                return await cur.fetchone()

            t = time.perf_counter()
            for _ in range(k):
                await aio.call(sel)
            print(f"{'SELECT 1: async psycopg on the asyncio thread':52} {rate(k, time.perf_counter() - t)}")
            await aio.call(aconn.close)
            await trio.to_thread.run_sync(aio.stop)

            now = dt.datetime.now(dt.UTC)
            m = 2000

            def per_row(conn: psycopg.Connection[Any]) -> None:
                for i in range(m):
                    with conn.transaction():
                        conn.execute(
                            "INSERT INTO message_log (message_id, event, event_at) VALUES (%s, %s, %s)",
                            (f"r{i}", "accepted", now),
                        )

            t = time.perf_counter()
            await db.run(per_row, transaction=False)
            print(f"{'message log: one INSERT + commit per row':52} {rate(m, time.perf_counter() - t)}")

            evs = [
                MessageEvent(
                    f"m{i}",
                    "accepted",
                    now,
                    partner="acme",
                    operator="op1",
                    source_addr="INFO",
                    dest_addr="447700900000",
                    parts=1,
                )
                for i in range(n)
            ]
            t = time.perf_counter()
            for i in range(0, n, 5000):
                await db.write_events(evs[i : i + 5000])
            print(f"{'message log: write_events, 5000/batch':52} {rate(n, time.perf_counter() - t)}")
            t = time.perf_counter()
            for i in range(0, n, 5000):
                await db.write_events(evs[i : i + 5000])
            print(f"{'message log: same batches replayed (skipped)':52} {rate(n, time.perf_counter() - t)}")

            def bare_copy(conn: psycopg.Connection[Any]) -> None:
                conn.execute("CREATE TEMP TABLE bare (LIKE message_log INCLUDING DEFAULTS)")
                with (
                    conn.cursor() as cur,
                    cur.copy("COPY bare (message_id, event, event_at) FROM STDIN") as cp,
                ):
                    for e in evs:
                        cp.write_row((e.message_id, e.event, e.event_at))
                conn.execute("DROP TABLE bare")

            t = time.perf_counter()
            await db.run(bare_copy)
            print(f"{'reference: bare COPY into an unindexed table':52} {rate(n, time.perf_counter() - t)}")
            _ = MessageLogRepo
        finally:
            await db.drop_schema()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default="")
    ap.add_argument("-n", type=int, default=100000)
    a = ap.parse_args()
    dsn = a.dsn
    pg = tmp = None
    if not dsn:
        try:
            psycopg.connect("host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=2").close()
            dsn = "host=127.0.0.1 port=5432 dbname=test user=postgres"
        except psycopg.Error:
            tmp = tempfile.TemporaryDirectory()
            pg = EmbeddedPostgres(Path(tmp.name) / "pg")
            dsn = pg.start()
    try:
        print(f"Postgres {dsn}")
        trio.run(run, dsn, a.n)
    finally:
        if pg is not None:
            pg.stop()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
