"""Trio-facing access to Postgres: synchronous psycopg in worker threads, a small connection pool.

Why sync-in-threads (measured, see docs/dev/infra-api.md): a ``trio.to_thread.run_sync`` crossing costs
tens of microseconds, a Postgres round trip hundreds, and every write on the hot path is a batch
(COPY), so the crossing is noise.  psycopg's async API would need trio-asyncio (every loop tick ~8x
dearer, measured) or our own asyncio thread, for no gain; and the CLI uses the very same sync
repositories directly.  The event loop thread never touches a connection.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, TypeVar

import psycopg
import trio
from psycopg import sql

from .migrate import migrate
from .records import ConfigSnapshot, MessageEvent
from .repos import LogRow, MessageLogRepo, load_snapshot

__all__ = ["Database", "connect_sync"]

log = logging.getLogger(__name__)

T = TypeVar("T")


def _schema_options(schema: str) -> str:
    # libpq "options": -c search_path=<schema>; the schema name is quoted as an identifier
    quoted = '"' + schema.replace('"', '""') + '"'
    return "-c search_path=" + quoted.replace("\\", "\\\\").replace(" ", "\\ ")


# A Postgres host that drops off the network (a partition, a dead switch) leaves its connections open on our
# side: a statement sent on one waits for TCP to give up, which is many minutes, holding a pool thread (and
# the message log, the credit leases, a partner's accept batch waiting for a lease) all that time.  libpq's
# TCP settings bound it: unacknowledged data fails the connection after ``tcp_user_timeout``, an idle one is
# found dead by keepalives within ``keepalives_idle + keepalives_interval * keepalives_count`` seconds.  Only
# where the DSN does not set them itself.
_TCP_DEFAULTS: dict[str, Any] = {
    "keepalives": 1,
    "keepalives_idle": 10,
    "keepalives_interval": 3,
    "keepalives_count": 3,
    # ms: data unacknowledged by the server's TCP for this long fails the connection.  A busy server still
    # acknowledges at once (this is not a statement timeout); 5 s keeps a partner's accept batch that waits
    # for a credit lease from waiting much longer when the database host is gone
    "tcp_user_timeout": 5_000,
}
# The server's side of the same connection: a backend whose client vanished in a partition in the middle of a
# transaction keeps the transaction and its row locks (a partner's account row, locked by a credit lease
# swap) until it notices, which with the server's defaults is hours -- every node then waits on that lock
# after the partition heals.  The same keepalives for our sessions make the server drop such a backend
# within half a minute, and ``tcp_user_timeout`` within seconds one whose answer went unacknowledged (the
# cut caught it sending: keepalives never start while data is in flight, and TCP retransmits for many
# minutes, backing off to a minute and more between tries).  Session settings (``-c`` in libpq's options),
# so no server configuration needed (Postgres 12 or later).
_SERVER_TCP = " ".join(
    f"-c {k}={v}"
    for k, v in (
        ("tcp_keepalives_idle", 10),
        ("tcp_keepalives_interval", 3),
        ("tcp_keepalives_count", 3),
        ("tcp_user_timeout", 5000),  # ms
    )
)


def connect_sync(
    dsn: str,
    *,
    schema: str = "",
    autocommit: bool = True,
    connect_timeout: float = 5.0,
    application_name: str = "catalyst-smpp",
) -> psycopg.Connection[Any]:
    """A plain psycopg connection with our search_path (for the CLI and worker threads)."""
    kwargs: dict[str, Any] = {
        "autocommit": autocommit,
        "connect_timeout": max(1, round(connect_timeout)),
        "application_name": application_name,
    }
    given = psycopg.conninfo.conninfo_to_dict(dsn)  # (libpq ignores these on a Unix socket)
    options = [str(given["options"])] if given.get("options") else []  # the DSN's own come first
    options.append(_SERVER_TCP)
    if schema:
        options.append(_schema_options(schema))
    kwargs["options"] = " ".join(options)
    kwargs.update({k: v for k, v in _TCP_DEFAULTS.items() if k not in given})
    return psycopg.connect(dsn, **kwargs)


class Database:
    """A pool of ``pool_size`` connections, each used by one worker thread at a time."""

    def __init__(
        self,
        dsn: str,
        *,
        schema: str = "",
        pool_size: int = 4,
        connect_timeout: float = 5.0,
        application_name: str = "catalyst-smpp",
    ) -> None:
        if pool_size < 1:
            raise ValueError("pool_size must be >= 1")
        self.dsn = dsn
        self.schema = schema
        self.connect_timeout = connect_timeout
        self.application_name = application_name
        self._limiter = trio.CapacityLimiter(pool_size)
        self._idle: list[psycopg.Connection[Any]] = []
        self._closed = False

    @classmethod
    @contextlib.asynccontextmanager
    async def open(
        cls,
        dsn: str,
        *,
        schema: str = "",
        pool_size: int = 4,
        migrate: bool = False,
        connect_timeout: float = 5.0,
        application_name: str = "catalyst-smpp",
    ) -> AsyncIterator[Database]:
        """Open the pool; ``migrate=True`` applies pending migrations first (safe on many nodes at once)."""
        db = cls(
            dsn,
            schema=schema,
            pool_size=pool_size,
            connect_timeout=connect_timeout,
            application_name=application_name,
        )
        try:
            if migrate:
                await db.migrate()
            yield db
        finally:
            with trio.CancelScope(shield=True):
                await db.aclose()

    def connect_sync(self, *, autocommit: bool = True) -> psycopg.Connection[Any]:
        return connect_sync(
            self.dsn,
            schema=self.schema,
            autocommit=autocommit,
            connect_timeout=self.connect_timeout,
            application_name=self.application_name,
        )

    async def aclose(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for c in idle:
            await trio.to_thread.run_sync(c.close)

    def _call(self, fn: Callable[..., T], args: tuple[Any, ...], transaction: bool) -> T:
        conn = self._idle.pop() if self._idle else None
        if conn is not None and conn.closed:
            conn = None
        if conn is None:
            conn = self.connect_sync()
        try:
            if transaction:
                with conn.transaction():
                    result = fn(conn, *args)
            else:
                result = fn(conn, *args)
        except psycopg.OperationalError:
            # the connection may be broken: drop it, the next call opens a fresh one -- and the idle ones
            # too: after an outage or a partition they are as dead, and each would cost the next callers a
            # timeout of its own (a credit lease waiting out one dead connection after another)
            stale, self._idle = self._idle, []
            for c in (conn, *stale):
                with contextlib.suppress(Exception):
                    c.close()
            raise
        except BaseException:
            if conn.closed or conn.info.transaction_status != psycopg.pq.TransactionStatus.IDLE:
                with contextlib.suppress(Exception):
                    conn.close()
            else:
                self._idle.append(conn)
            raise
        if self._closed:
            conn.close()
        else:
            self._idle.append(conn)
        return result

    async def run(self, fn: Callable[..., T], *args: Any, transaction: bool = True) -> T:
        """Run ``fn(conn, *args)`` in a worker thread on a pooled connection, inside one transaction.

        One call = one thread crossing: put a whole batch or a whole admin change in ``fn``.
        Cancelling the caller waits for the statement to finish (psycopg is not interruptible from here).
        """
        if self._closed:
            raise RuntimeError("database closed")
        return await trio.to_thread.run_sync(self._call, fn, args, transaction, limiter=self._limiter)

    async def migrate(self) -> list[int]:
        """Apply pending migrations (advisory-locked; idempotent)."""

        def _m(conn: psycopg.Connection[Any]) -> list[int]:
            return migrate(conn, schema=self.schema)

        return await self.run(_m, transaction=False)

    async def write_events(self, events: Iterable[MessageEvent]) -> int:
        """Batch-insert message log rows (COPY); duplicates of (message_id, event) are skipped."""
        evs = list(events)
        if not evs:
            return 0
        return await self.run(lambda conn: MessageLogRepo(conn).write(evs))

    async def write_log_rows(self, rows: Iterable[LogRow]) -> int:
        """Batch-insert message log rows given as tuples/lists (:data:`~catalyst_smpp.store.repos.LogRow`,
        no :class:`MessageEvent` per row); duplicates of (message_id, event) are skipped."""
        batch = list(rows)
        if not batch:
            return 0
        return await self.run(lambda conn: MessageLogRepo(conn).write_rows(batch))

    async def snapshot(self) -> ConfigSnapshot:
        """Partners, operators and routes, read in one REPEATABLE READ transaction."""

        def _s(conn: psycopg.Connection[Any]) -> ConfigSnapshot:
            with conn.transaction():
                conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
                return load_snapshot(conn)

        return await self.run(_s, transaction=False)

    async def drop_schema(self) -> None:
        """Drop our schema and everything in it (tests)."""
        if not self.schema:
            raise RuntimeError("no schema configured")

        def _d(conn: psycopg.Connection[Any]) -> None:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(self.schema)))

        await self.run(_d)
