"""Fixtures for tests against real NATS and Postgres (no mocks, no skips).

* ``nats_url`` (session): ``nats://127.0.0.1:4222`` when it answers with JetStream, else an embedded
  nats-server started for the session.
* ``nats_server_factory``: private, restartable nats-servers on free ports with their own store dirs
  (``srv.stop()`` / ``srv.start()`` keep the store; ``srv.kill()`` simulates a crash).
* ``nats_config`` / ``bus``: a unique namespace per test (streams ``<ns>_MT`` …) on ``nats_url``, and a
  connected :class:`catalyst_smpp.bus.Bus`; the namespace's streams are deleted afterwards.
* ``memory_bus``: a :class:`catalyst_smpp.bus.memory.MemoryBus` (unique namespace) for tests of gateway
  rules; run them with ``autojump_clock`` so its ack waits and nak delays pass at once.
* ``pg_dsn`` (session): 127.0.0.1:5432 database ``test`` when reachable, else an embedded Postgres.
* ``pg_schema`` (module): a fresh, uniquely named schema per test module, dropped afterwards.
* ``db``: a migrated :class:`catalyst_smpp.store.Database` on ``pg_schema``.

Set ``CATALYST_TEST_EMBEDDED=1`` to ignore the local services and exercise the embedded fallbacks.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from catalyst_smpp.bus import Bus
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.embedded import EmbeddedNats, EmbeddedPostgres, nats_has_jetstream
from catalyst_smpp.store import Database

__all__ = [
    "bus",
    "db",
    "free_port",
    "memory_bus",
    "nats_config",
    "nats_server_factory",
    "nats_url",
    "pg_dsn",
    "pg_schema",
    "state_tmp",
    "unique_name",
]

LOCAL_NATS = ("127.0.0.1", 4222)
LOCAL_PG = "host=127.0.0.1 port=5432 dbname=test user=postgres connect_timeout=2"


def _force_embedded() -> bool:
    return os.environ.get("CATALYST_TEST_EMBEDDED", "") not in ("", "0")


def private_tempdir(prefix: str) -> Path:
    """A temporary directory outside pytest's basetemp.  As root, the embedded Postgres runs as another user;
    a pytest session starting meanwhile (another checkout, a helper) resets /tmp/pytest-of-<user> to 0700 and
    would cut that user off from a data directory below it."""
    import tempfile

    return Path(tempfile.mkdtemp(prefix="catalyst-test-"))


@pytest.fixture
def state_tmp() -> Iterator[Path]:
    """Like ``tmp_path``, for tests that start an embedded Postgres; removed afterwards."""
    import shutil

    d = private_tempdir("catalyst-test-")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def unique_name(prefix: str = "t") -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


def _ephemeral_low() -> int:
    try:
        return int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):  # not Linux: the IANA range starts here
        return 49152


def free_port(count: int = 1) -> int:
    """The first of ``count`` consecutive TCP ports free on 127.0.0.1, chosen at random *below* the kernel's
    ephemeral range.  A test that kills a process and starts it again on the same port (a gateway, a worker's
    metrics port) must find the port still free: a port from the ephemeral range (what binding port 0 gives)
    can meanwhile become the local port of any outgoing connection on the machine, the more likely the more
    tests run at once.  Below that range only an explicit bind takes a port."""
    import random
    import socket

    top = _ephemeral_low() - count
    rng = random.SystemRandom()
    for _ in range(200):
        base = rng.randrange(10000, top)
        socks: list[socket.socket] = []
        try:
            for port in range(base, base + count):
                s = socket.socket()
                socks.append(s)
                s.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for s in socks:
                s.close()
        return base
    raise AssertionError(f"no {count} consecutive free ports below {top + count}")


# --------------------------------------------------------------------------- NATS


@pytest.fixture(scope="session")
def nats_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _force_embedded() and nats_has_jetstream(*LOCAL_NATS, timeout=1.0):
        yield f"nats://{LOCAL_NATS[0]}:{LOCAL_NATS[1]}"
        return
    srv = EmbeddedNats(tmp_path_factory.mktemp("nats-session"))
    srv.start()
    try:
        yield srv.url
    finally:
        srv.stop()


class NatsServerFactory:
    def __init__(self, base: Path) -> None:
        self._base = base
        self._servers: list[EmbeddedNats] = []

    def __call__(self, *, sync_always: bool = False) -> EmbeddedNats:
        srv = EmbeddedNats(self._base / f"nats{len(self._servers)}", sync_always=sync_always)
        srv.start()
        self._servers.append(srv)
        return srv

    def close(self) -> None:
        for s in self._servers:
            s.stop()


@pytest.fixture
def nats_server_factory(tmp_path: Path) -> Iterator[Callable[..., EmbeddedNats]]:
    f = NatsServerFactory(tmp_path)
    try:
        yield f
    finally:
        f.close()


def delete_namespace_streams(url: str, cfg: NatsConfig) -> None:
    """Delete the streams and KV bucket of ``cfg.namespace`` (sync; for fixture teardown outside trio)."""
    import asyncio

    import nats as nats_py
    import nats.js.errors

    from catalyst_smpp.bus import Kind, Names

    names = Names(cfg.namespace)
    streams = [names.stream(k) for k in Kind] + [f"KV_{names.bucket(cfg.kv.bucket)}"]

    async def cleanup() -> None:
        nc = await nats_py.connect(url, connect_timeout=2, max_reconnect_attempts=0)
        try:
            js = nc.jetstream()
            for n in streams:
                try:
                    await js.delete_stream(n)
                except nats.js.errors.NotFoundError:
                    pass
        finally:
            await nc.close()

    asyncio.run(cleanup())


@pytest.fixture
def nats_config(nats_url: str) -> Iterator[NatsConfig]:
    """Defaults with a unique namespace, so tests never see each other's streams on a shared server.

    The namespace's streams are deleted after the test (also those made by extra ``Bus.connect`` calls).
    """
    cfg = NatsConfig(namespace=unique_name("t"))
    yield cfg
    delete_namespace_streams(nats_url, cfg)


@pytest.fixture
async def bus(nats_url: str, nats_config: NatsConfig) -> AsyncIterator[Bus]:
    async with Bus.connect(nats_url, nats_config, name="test") as b:
        yield b


@pytest.fixture
async def memory_bus() -> AsyncIterator[MemoryBus]:
    b = MemoryBus(NatsConfig(namespace=unique_name("m")))
    try:
        yield b
    finally:
        b.close()


# --------------------------------------------------------------------------- Postgres


def _local_pg_ok() -> bool:
    try:
        with psycopg.connect(LOCAL_PG) as c:
            c.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


@pytest.fixture(scope="session")
def pg_dsn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not _force_embedded() and _local_pg_ok():
        yield LOCAL_PG
        return
    import shutil

    base = private_tempdir("catalyst-pg-session-")
    pg = EmbeddedPostgres(base / "data")
    pg.start()
    try:
        yield pg.dsn
    finally:
        pg.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture(scope="module")
def pg_schema(pg_dsn: str) -> Iterator[str]:
    schema = unique_name("test_")
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    try:
        yield schema
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture
async def db(pg_dsn: str, pg_schema: str) -> AsyncIterator[Database]:
    async with Database.open(pg_dsn, schema=pg_schema, migrate=True, pool_size=4) as d:
        yield d
