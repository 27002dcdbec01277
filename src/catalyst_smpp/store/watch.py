"""Notice configuration changes without a restart: LISTEN/NOTIFY plus a version counter.

Triggers on partners/operators/routes/route_operators bump ``config_version.version`` and send
``NOTIFY catalyst_config '<schema>:<table>:<version>'`` in the same transaction.  The watcher
holds one dedicated connection that LISTENs; trio waits for its socket to become readable
(``trio.lowlevel.wait_readable``: no thread parked), then reads the counter in a worker thread.
It also re-reads the counter every ``poll_interval`` seconds and after every reconnect, so a
notification lost while the connection was down still leads to a reload.

    async with open_config_watcher(db) as watcher:
        seen = watcher.version
        while True:
            seen = await watcher.wait_for_change(seen)
            snapshot = await db.snapshot()        # reload
"""

from __future__ import annotations

import contextlib
import logging
import random
from collections.abc import AsyncIterator
from typing import Any

import psycopg
import trio

from ..util.backoff import Backoff
from .db import Database
from .repos import config_version

__all__ = ["CHANNEL", "ConfigWatcher", "open_config_watcher"]

log = logging.getLogger(__name__)

CHANNEL = "catalyst_config"


class ConfigWatcher:
    def __init__(self, db: Database, poll_interval: float) -> None:
        self._db = db
        self._poll_interval = poll_interval
        self.version = -1
        """Last counter value seen (-1 until the first read)."""
        self.connected = False
        self._changed = trio.Event()
        self._ready = trio.Event()

    def _update(self, version: int) -> None:
        if version != self.version:
            log.info("configuration version %d -> %d", self.version, version)
            self.version = version
            self._changed.set()
            self._changed = trio.Event()

    async def wait_for_change(self, since: int) -> int:
        """Return the current version as soon as it differs from ``since``."""
        while self.version == since:
            await self._changed.wait()
        return self.version

    async def _run(self) -> None:
        backoff = Backoff(initial=0.2, maximum=10.0, rng=random.Random())
        failures = 0
        while True:
            conn: psycopg.Connection[Any] | None = None
            try:
                conn = await trio.to_thread.run_sync(self._db.connect_sync)
                await trio.to_thread.run_sync(conn.execute, f"LISTEN {CHANNEL}")
                self.connected = True
                backoff.reset()
                if failures:
                    log.warning(
                        "config watcher reconnected to Postgres after %d failed attempt(s); "
                        "re-reading the configuration version",
                        failures,
                    )
                    failures = 0
                self._update(await trio.to_thread.run_sync(config_version, conn))
                self._ready.set()
                while True:
                    with trio.move_on_after(self._poll_interval):
                        await trio.lowlevel.wait_readable(conn.fileno())
                    # readable (a notification, ours or another schema's) or poll time: read the counter;
                    # executing a statement also makes psycopg consume the pending notifications
                    self._update(await trio.to_thread.run_sync(config_version, conn))
            except (psycopg.Error, OSError) as e:
                self.connected = False
                failures += 1
                delay = backoff.next_delay()
                log.warning(
                    "config watcher lost its connection to Postgres (%s); running on the last loaded "
                    "configuration, retrying in %.1fs",
                    " ".join(str(e).split()),
                    delay,
                )
                await trio.sleep(delay)
            finally:
                if conn is not None:
                    with trio.CancelScope(shield=True):
                        await trio.to_thread.run_sync(conn.close)


@contextlib.asynccontextmanager
async def open_config_watcher(
    db: Database, *, poll_interval: float = 30.0, ready_timeout: float = 10.0
) -> AsyncIterator[ConfigWatcher]:
    """Start watching; on entry the first version has been read (or the first connect is being retried:
    after ``ready_timeout`` seconds, 0 when Postgres is known to be down)."""
    w = ConfigWatcher(db, poll_interval)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(w._run)
        with trio.move_on_after(ready_timeout):
            await w._ready.wait()
        try:
            yield w
        finally:
            nursery.cancel_scope.cancel()
