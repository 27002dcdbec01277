"""``catalyst-smpp run --workers N``: one supervising parent, N gateway worker processes.

One gateway process is bound to one core by the GIL; on a multi-core host N workers share the SMPP listeners
(the parent binds each port once and the workers inherit the socket: :mod:`catalyst_smpp.listen`), the NATS
durable consumers and Postgres.

The parent (this module) runs no gateway code.  It

1. resolves N (``--workers``, else ``node.workers``; 0/"auto" = the CPUs it may run on) and checks the node
   number block and metrics ports (:func:`catalyst_smpp.config.check_workers`: exit 2 with
   ``file: key: problem`` otherwise);
2. starts the embedded nats-server / Postgres *once* when the config names no URL / DSN (the workers get the
   URL / DSN through their :class:`~catalyst_smpp.daemon.WorkerSpec`), and migrates and seeds the database
   once, so N workers do not race to insert the seeds. It retries the migrations for ``DB_START_WAIT`` like a
   single process, then starts the workers anyway (each starts from its saved configuration snapshot or waits
   for Postgres); a stop meanwhile ends the start. Then it binds the SMPP listeners (a port in use: one
   CRITICAL line naming the listener, exit 1);
3. starts worker k (0..N-1) as ``run --config PATH --worker k`` (the listening sockets passed down, their
   descriptors in ``WorkerSpec.listen_fds``) in its own process group (a Ctrl-C reaches the parent only), with
   node id ``<node>/w<k>`` (logs, NATS client name, ``catalyst_smpp_info``), node number ``base + k``
   (:func:`catalyst_smpp.gateway.ids.worker_base`) and metrics port ``metrics.port + k``;
4. gives each worker its own ``NOTIFY_SOCKET`` (an abstract datagram socket of the parent) and
   ``WATCHDOG_USEC``, so a worker is the ordinary daemon speaking sd_notify to its parent; the parent sends
   systemd ``READY=1`` once every worker has, ``STATUS=`` lines, ``RELOADING=1``/``READY=1`` around a reload
   and ``WATCHDOG=1`` only while every worker process is alive and has pinged within its watchdog time (a
   worker that stops pinging is killed and restarted);
5. forwards ``SIGHUP`` (reload) to the ready workers, and ``SIGTERM``/``SIGINT`` as ``SIGTERM`` (drain); a
   second stop signal is forwarded again (the workers stop at once; exit 1), a third kills them (exit 1);
6. restarts a worker that exits unexpectedly, after 1, 2, 5, 10, then 30 s (back to 1 s once a worker ran
   for a minute), logged at ERROR; a worker that fails before the service was first ready fails the start
   (exit 1, or 2 for an invalid config), as a single process would;
7. exits when all workers have drained (0), then stops the embedded servers it started.

A worker whose parent disappears (SIGKILL) notices within a second and drains itself.

One module (over 600 lines): start-up, restarts, sd_notify relaying, signals and reload all read and change
the same per-worker state (:class:`_Slot`) under one trio loop; split, each part would reach into the others.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import attrs
import trio

from catalyst_smpp.config import Config, ConfigError, load_config
from catalyst_smpp.listen import ListenerError, bind_listeners, close_listeners
from catalyst_smpp.service import (
    DB_START_WAIT,
    EXIT_CONFIG,
    EXIT_FAILURE,
    EXIT_OK,
    WORKER_ENV,
    SdNotifier,
    WorkerSpec,
    apply_reloaded_config,
    version,
    watchdog_interval,
)

__all__ = ["RESTART_DELAYS", "Supervisor", "main_supervise"]

log = logging.getLogger("catalyst_smpp.supervisor")

RESTART_DELAYS = (1.0, 2.0, 5.0, 10.0, 30.0)
"""Back-off before restarting a worker that died: the n-th consecutive failure waits the n-th (the last
repeats)."""
STABLE_AFTER = 60.0
"""A worker that ran this long before dying restarts after the first delay again."""
WORKER_WATCHDOG = 30.0
"""Seconds a worker may go without a watchdog ping (without systemd's watchdog; with it, at least 10 s)."""

_STRIP_ENV = ("NOTIFY_SOCKET", "WATCHDOG_PID", "WATCHDOG_USEC", "LISTEN_FDS", "LISTEN_PID", "LISTEN_FDNAMES")


def _describe_exit(rc: int | None) -> str:
    if rc is None:
        return "still running"
    if rc < 0:
        try:
            return f"killed by {signal.Signals(-rc).name}"
        except ValueError:
            return f"killed by signal {-rc}"
    return f"exit status {rc}"


@attrs.define(eq=False)
class _Slot:
    """Worker k: its identity (fixed) and its current process (replaced on restart)."""

    index: int
    spec: WorkerSpec
    sock: Any  # trio.socket.SocketType: the worker's NOTIFY_SOCKET
    address: str  # "@..." as given in the worker's NOTIFY_SOCKET
    proc: trio.Process | None = None
    started_at: float = 0.0
    last_ping: float = 0.0
    ready: bool = False
    ever_ready: bool = False
    status: str = ""
    reload_pending: bool = False
    reload_failed: bool = False
    stale_config: bool = False  # was starting during a reload: may have read the file before it changed
    restarts: int = 0
    failures_in_row: int = 0
    last_exit: str = ""

    @property
    def name(self) -> str:
        return f"w{self.index}"

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def alive(self) -> bool:
        return self.proc is not None and self.proc.returncode is None


class Supervisor:
    """The parent of ``workers`` gateway worker processes (see the module notes)."""

    def __init__(self, config_path: Path, cfg: Config, workers: int, *, node_id: str | None = None) -> None:
        from catalyst_smpp.gateway.ids import worker_base

        self.config_path = config_path
        self.cfg = cfg
        self.workers = workers
        self.node = node_id or cfg.node.effective_id
        self.base_number = worker_base(self.node, cfg.node.number, workers)
        self.notifier = SdNotifier()
        wd = watchdog_interval()
        self.watchdog = wd  # half of systemd's WATCHDOG_USEC, or None
        self.worker_timeout = max(2 * wd, 10.0) if wd is not None else WORKER_WATCHDOG
        self.exit_code = EXIT_OK
        self.slots: list[_Slot] = []
        self._nats_urls: tuple[str, ...] = ()
        self._dsn = ""
        self._embedded: list[Any] = []
        self._sockets: list[list[socket.socket]] = []  # bound here once, inherited by every worker
        self._start_scope: trio.CancelScope | None = None  # while starting NATS/Postgres: a stop cancels it
        self._stopping = False
        self._stop_event = trio.Event()
        self._ready_once = False
        self._startup_failed: int | None = None
        self._signals = 0
        self._wake = trio.Event()
        self._reload_lock = trio.Lock()
        self._reloading = False
        self._last_reload_failed = False
        self._held_watchdog = False

    # ---------------------------------------------------------------- entry

    async def run(self) -> int:
        try:
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async with trio.open_nursery() as outer:
                    outer.start_soon(self._signal_loop, signals, outer)
                    try:
                        await self._serve()
                    finally:
                        with trio.CancelScope(shield=True):
                            await self._stop_infrastructure()
                    outer.cancel_scope.cancel()
        finally:
            close_listeners(self._sockets)
            for slot in self.slots:
                slot.sock.close()
            self.notifier.close()
        code = self._startup_failed if self._startup_failed is not None else self.exit_code
        log.info("stopped", extra={"exit_code": code})
        return code

    async def _serve(self) -> None:
        self.notifier.status("starting: NATS and Postgres")
        log.info(
            "starting catalyst-smpp %s with %d workers (node numbers %d..%d)",
            version(),
            self.workers,
            self.base_number,
            self.base_number + self.workers - 1,
            extra={"config": str(self.config_path), "workers": self.workers, "parent_pid": os.getpid()},
        )
        if self.cfg.node.number < 0:
            log.info(
                "node numbers derived from the node id %r; on several hosts set node.number so that their "
                "blocks of %d do not overlap (see docs/operations.md)",
                self.node,
                self.workers,
            )
        with trio.CancelScope() as self._start_scope:
            await self._start_infrastructure()
        self._start_scope = None
        if self._stopping:
            return
        try:
            self._sockets = bind_listeners(self.cfg.listeners)
        except ListenerError as e:  # one line naming the listener; no traceback
            log.critical("%s", e)
            self.notifier.status(f"failed: {e}")
            self._startup_failed = EXIT_FAILURE
            return
        self._make_slots()
        self.notifier.status(f"starting: {self.workers} workers")
        async with trio.open_nursery() as n:
            for slot in self.slots:
                n.start_soon(self._listen, slot)
            for slot in self.slots:
                n.start_soon(self._keep_running, slot)
            if self.watchdog is not None and self.notifier.enabled:
                n.start_soon(self._watchdog_loop, self.watchdog)
            n.start_soon(self._hang_check)
            while not self._stopping and not all(s.ready for s in self.slots):
                await self._changed()
            if not self._stopping:
                self._ready_once = True
                status = self._status_text()
                self.notifier.ready(status)
                log.info(
                    "ready: %d workers",
                    self.workers,
                    extra={"pids": ",".join(str(s.pid) for s in self.slots), "status": status},
                )
            await self._stop_event.wait()
            await self._drain()
            n.cancel_scope.cancel()

    # ---------------------------------------------------------------- infrastructure

    async def _start_infrastructure(self) -> None:
        from catalyst_smpp.embedded import EmbeddedNats, EmbeddedPostgres, try_db_setup
        from catalyst_smpp.store import Database, seed_from_config

        cfg = self.cfg
        state = cfg.node.state_dir
        if not cfg.nats.urls:
            srv = EmbeddedNats(
                state / "nats",
                host=cfg.nats.embedded_host,
                port=cfg.nats.embedded_port,
                sync_always=cfg.nats.embedded_sync_always,
            )
            await trio.to_thread.run_sync(srv.start)
            self._embedded.append(srv)
            self._nats_urls = (srv.url,)
        if not cfg.database.dsn:
            pg = EmbeddedPostgres(state / "postgres")
            await trio.to_thread.run_sync(pg.start)
            self._embedded.append(pg)
            self._dsn = pg.dsn
        # migrate and seed once here: N workers starting together would race to insert the same seeds.
        # Postgres not answering within DB_START_WAIT is not fatal, as for one process: the workers start
        # from their saved configuration snapshot (or wait for Postgres) and migrate once it answers
        async with Database.open(
            self._dsn or cfg.database.dsn,
            schema=cfg.database.schema,
            pool_size=1,
            connect_timeout=cfg.database.connect_timeout,
            application_name=f"catalyst-smpp {self.node} supervisor"[:63],
        ) as db:

            async def setup() -> None:
                if cfg.database.migrate_on_start:
                    await db.migrate()
                if cfg.operators or cfg.partners:
                    await db.run(seed_from_config, cfg)

            await try_db_setup(setup, DB_START_WAIT)
        log.info(
            "infrastructure checked",
            extra={
                "nats": ",".join(self._nats_urls or cfg.nats.urls),
                "embedded_nats": bool(self._nats_urls),
                "embedded_postgres": bool(self._dsn),
            },
        )

    async def _stop_infrastructure(self) -> None:
        for srv in reversed(self._embedded):  # only what this process started is stopped (owned)
            try:
                await trio.to_thread.run_sync(srv.stop)
            except Exception as e:
                log.error("stopping the embedded %s failed: %s", type(srv).__name__, e)
        self._embedded.clear()

    # ---------------------------------------------------------------- workers

    def _make_slots(self) -> None:
        from catalyst_smpp.gateway.ids import worker_node_number

        token = uuid.uuid4().hex[:12]
        for k in range(self.workers):
            spec = WorkerSpec(
                index=k,
                count=self.workers,
                node_id=f"{self.node}/w{k}",
                node_number=worker_node_number(self.base_number, k),
                metrics_port=self.cfg.metrics.port + k if self.cfg.metrics.port else 0,
                parent_pid=os.getpid(),
                nats_urls=self._nats_urls,
                dsn=self._dsn,
                listen_fds=tuple(tuple(sock.fileno() for sock in group) for group in self._sockets),
            )
            name = f"catalyst-smpp-{os.getpid()}-{token}-w{k}"
            raw = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            raw.bind("\0" + name)  # abstract: nothing on disk, gone with the process
            sock = trio.socket.from_stdlib_socket(raw)
            self.slots.append(_Slot(index=k, spec=spec, sock=sock, address="@" + name))

    def _worker_env(self, slot: _Slot) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in _STRIP_ENV}
        env["NOTIFY_SOCKET"] = slot.address
        env["WATCHDOG_USEC"] = str(int(self.worker_timeout * 1_000_000))
        env[WORKER_ENV] = slot.spec.to_json()
        return env

    async def _spawn(self, slot: _Slot) -> None:
        cmd = [
            sys.executable,
            "-m",
            "catalyst_smpp.cli",
            "run",
            "--config",
            str(self.config_path),
            "--worker",
            str(slot.index),
        ]
        slot.ready = False
        slot.stale_config = False  # a new process reads the file as it is now
        slot.proc = await trio.lowlevel.open_process(
            cmd,
            env=self._worker_env(slot),
            stdin=subprocess.DEVNULL,
            process_group=0,
            pass_fds=[fd for group in slot.spec.listen_fds for fd in group],  # same numbers in the worker
        )
        slot.started_at = slot.last_ping = trio.current_time()
        log.info(
            "worker %s started (pid %d)",
            slot.name,
            slot.proc.pid,
            extra={
                "worker": slot.spec.node_id,
                "pid": slot.proc.pid,
                "node_number": slot.spec.node_number,
                "metrics_port": slot.spec.metrics_port,
            },
        )
        if self._stopping:  # a stop came while it was being spawned
            slot.proc.send_signal(signal.SIGTERM)

    async def _keep_running(self, slot: _Slot) -> None:
        """Run worker ``slot``; restart it when it dies unexpectedly, until the stop."""
        while not self._stopping:
            await self._spawn(slot)
            assert slot.proc is not None
            rc = await slot.proc.wait()
            pid, ran = slot.proc.pid, trio.current_time() - slot.started_at
            slot.ready = False
            slot.last_exit = _describe_exit(rc)
            slot.reload_pending = False
            if self._stopping:
                slot.proc = None
                if rc not in (0, -signal.SIGTERM, -signal.SIGINT) and self._signals <= 1:
                    log.error("worker %s (pid %d) stopped with %s", slot.name, pid, slot.last_exit)
                    self.exit_code = EXIT_FAILURE
                else:
                    log.info("worker %s (pid %d) stopped (%s)", slot.name, pid, slot.last_exit)
                self._kick()
                return
            if not self._ready_once:
                slot.proc = None
                log.critical(
                    "worker %s (pid %d) failed during start-up (%s); stopping the others",
                    slot.name,
                    pid,
                    slot.last_exit,
                    extra={"worker": slot.spec.node_id, "pid": pid, "exit": slot.last_exit},
                )
                self._startup_failed = EXIT_CONFIG if rc == EXIT_CONFIG else EXIT_FAILURE
                self.notifier.status(f"failed: worker {slot.name} {slot.last_exit} during start-up")
                self._request_stop()
                return
            if ran >= STABLE_AFTER:
                slot.failures_in_row = 0
            delay = RESTART_DELAYS[min(slot.failures_in_row, len(RESTART_DELAYS) - 1)]
            slot.failures_in_row += 1
            slot.restarts += 1
            slot.proc = None
            log.error(
                "WORKER DIED: %s (pid %d) %s after %.1fs; restarting it in %gs (restart %d of this worker)",
                slot.name,
                pid,
                slot.last_exit,
                ran,
                delay,
                slot.restarts,
                extra={"worker": slot.spec.node_id, "pid": pid, "exit": slot.last_exit, "delay": delay},
            )
            self.notifier.status(self._status_text())
            self._kick()
            with trio.move_on_after(delay):
                await self._stop_event.wait()

    async def _listen(self, slot: _Slot) -> None:
        """sd_notify datagrams of worker ``slot``."""
        while True:
            data = await slot.sock.recv(65536)
            fields: dict[str, str] = {}
            for line in data.decode("utf-8", "replace").split("\n"):
                key, sep, value = line.partition("=")
                if sep:
                    fields[key] = value
            now = trio.current_time()
            if fields.get("WATCHDOG") == "1":
                slot.last_ping = now
            if "STATUS" in fields:
                slot.status = fields["STATUS"]
            if fields.get("READY") == "1" and slot.alive:
                slot.last_ping = now
                again = slot.ever_ready and not slot.ready
                slot.ready = slot.ever_ready = True
                if slot.reload_pending:
                    slot.reload_pending = False
                    slot.reload_failed = "failed" in slot.status
                if again and self._ready_once and not self._stopping:
                    log.warning(
                        "worker %s (pid %s) ready again after a restart",
                        slot.name,
                        slot.pid,
                        extra={"worker": slot.spec.node_id, "pid": slot.pid, "restarts": slot.restarts},
                    )
                    if not self._reloading:
                        self.notifier.status(self._status_text())
            if fields.get("READY") == "1" and slot.stale_config and slot.alive and not self._stopping:
                # it was starting when a SIGHUP came: it may have read the file before the change
                slot.stale_config = False
                log.info("worker %s was starting during a reload: reloading it now", slot.name)
                assert slot.proc is not None
                slot.proc.send_signal(signal.SIGHUP)
            if fields.get("STOPPING") == "1":
                slot.ready = False
            self._kick()

    async def _hang_check(self) -> None:
        """Kill a worker that stopped pinging (its loop is stuck); _keep_running restarts it."""
        while True:
            await trio.sleep(1.0)
            if self._stopping:
                continue
            now = trio.current_time()
            for slot in self.slots:
                silent = now - slot.last_ping
                if slot.alive and silent > self.worker_timeout:
                    assert slot.proc is not None
                    log.error(
                        "worker %s (pid %d) sent no watchdog ping for %.0fs: hung; killing it",
                        slot.name,
                        slot.proc.pid,
                        silent,
                        extra={"worker": slot.spec.node_id, "pid": slot.proc.pid},
                    )
                    slot.proc.send_signal(signal.SIGKILL)
                    slot.last_ping = now  # once

    def _all_alive(self) -> bool:
        now = trio.current_time()
        return all(s.alive and now - s.last_ping <= self.worker_timeout for s in self.slots)

    async def _watchdog_loop(self, interval: float) -> None:
        while True:
            if self._all_alive():
                self.notifier.watchdog()
                if self._held_watchdog:
                    self._held_watchdog = False
                    log.info("all workers alive again: watchdog pings resumed")
            elif not self._held_watchdog:
                self._held_watchdog = True
                down = [s.name for s in self.slots if not s.alive]
                log.warning(
                    "holding the systemd watchdog while worker(s) %s are down or silent",
                    ",".join(down) or "?",
                )
            await trio.sleep(interval)

    # ---------------------------------------------------------------- state

    def _kick(self) -> None:
        self._wake.set()
        self._wake = trio.Event()

    async def _changed(self) -> None:
        await self._wake.wait()

    def _status_text(self) -> str:
        ports = ", ".join(str(lst.port) for lst in self.cfg.listeners) or "-"
        ready = sum(1 for s in self.slots if s.ready)
        restarts = sum(s.restarts for s in self.slots)
        if ready == self.workers:
            text = f"ready: {self.workers} workers, SMPP on {ports}"
        else:
            down = ", ".join(
                f"{s.name} {'restarting after ' + s.last_exit if not s.alive else 'starting'}"
                for s in self.slots
                if not s.ready
            )
            text = f"degraded: {ready}/{self.workers} workers ready ({down}); SMPP on {ports}"
        if self.cfg.metrics.port:
            text += f"; metrics on {self.cfg.metrics.port}-{self.cfg.metrics.port + self.workers - 1}"
        if restarts:
            text += f"; {restarts} worker restart(s)"
        if self._last_reload_failed:
            text += " (last reload failed, see the log)"
        return text

    # ---------------------------------------------------------------- signals, stop, reload

    def _request_stop(self) -> None:
        self._stopping = True
        self._stop_event.set()
        self._kick()

    def _signal_workers(self, sig: int) -> None:
        for slot in self.slots:
            if slot.alive:
                assert slot.proc is not None
                try:
                    slot.proc.send_signal(sig)
                except ProcessLookupError:  # pragma: no cover - exited meanwhile
                    pass

    async def _signal_loop(self, signals: Any, nursery: trio.Nursery) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                if not self._stopping:
                    nursery.start_soon(self.reload)
                continue
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals == 1:
                log.info("%s: graceful stop of the workers", name, extra={"signal": name})
                self._request_stop()
                if self._start_scope is not None:  # still starting NATS/Postgres: no worker to drain
                    self._start_scope.cancel()
                    nursery.start_soon(self._exit_after, self.cfg.limits.shutdown_grace)
            elif self._signals == 2:
                log.warning("%s again: the workers stop now without draining", name, extra={"signal": name})
                self.exit_code = EXIT_FAILURE
                self.notifier.stopping("stopping now")
                self._signal_workers(signal.SIGTERM)  # their second: stop at once
            else:
                log.error("%s a third time: killing the workers and exiting", name, extra={"signal": name})
                self._signal_workers(signal.SIGKILL)
                logging.shutdown()
                os._exit(EXIT_FAILURE)

    async def _exit_after(self, grace: float) -> None:
        """Like the daemon's: a start-up that does not stop within ``shutdown_grace`` (a thread starting an
        embedded server, a libpq connect) is left behind by exiting (an embedded server it had started keeps
        running; the next start finds it by its pid file)."""
        await trio.sleep(grace)
        log.error("start-up did not stop within shutdown_grace (%gs); exiting", grace, extra={"grace": grace})
        logging.shutdown()
        os._exit(EXIT_FAILURE)

    async def _drain(self) -> None:
        grace = self.cfg.limits.shutdown_grace
        self.notifier.stopping(f"draining {self.workers} workers (up to {grace:g}s)")
        log.info("draining the workers", extra={"grace": grace})
        self._signal_workers(signal.SIGTERM)
        # new connections are refused now rather than queued on a socket no worker accepts from any more
        close_listeners(self._sockets)
        started = trio.current_time()
        # each worker bounds its drain by grace; the margin covers its shutdown after that
        with trio.move_on_after(grace + 15.0) as scope:
            while any(s.proc is not None for s in self.slots):
                await self._changed()
        if scope.cancelled_caught:
            left = [s for s in self.slots if s.alive]
            log.error(
                "worker(s) %s did not stop within %gs; killing them",
                ",".join(f"{s.name} (pid {s.pid})" for s in left),
                grace + 15.0,
            )
            self._signal_workers(signal.SIGKILL)
            self.exit_code = EXIT_FAILURE
            with trio.move_on_after(10):
                while any(s.proc is not None for s in self.slots):
                    await self._changed()
        else:
            log.info("all workers stopped", extra={"seconds": round(trio.current_time() - started, 3)})

    async def reload(self) -> bool:
        """SIGHUP: check the file here (the parent's log level), forward SIGHUP to the ready workers (each
        re-reads the file itself) and report READY=1 when they all have."""

        async with self._reload_lock:
            self._reloading = True
            self.notifier.reloading()
            self.notifier.status("reloading")
            ok = True
            try:
                try:
                    new = await trio.to_thread.run_sync(load_config, self.config_path)
                except ConfigError as e:
                    ok = False
                    log.error(
                        "config reload refused, keeping the running config: %s",
                        e,
                        extra={"file": e.path, "key": e.key, "problem": e.problem},
                    )
                else:
                    self.cfg = apply_reloaded_config(self.cfg, new, self.node)
                # the workers re-read the file themselves (an invalid file: each refuses it and says so)
                targets = [s for s in self.slots if s.alive and s.ready]
                for s in self.slots:  # starting now: reloaded once it is ready (in _listen)
                    if s.alive and not s.ready:
                        s.stale_config = True
                for slot in targets:
                    slot.reload_pending, slot.reload_failed = True, False
                    assert slot.proc is not None
                    slot.proc.send_signal(signal.SIGHUP)
                with trio.move_on_after(60) as scope:
                    while any(s.reload_pending for s in targets):
                        await self._changed()
                if scope.cancelled_caught:
                    log.error(
                        "worker(s) %s did not finish reloading within 60s",
                        ",".join(s.name for s in targets if s.reload_pending),
                    )
                    ok = False
                if any(s.reload_failed for s in targets):
                    ok = False
                if ok:
                    log.info(
                        "config reloaded by %d workers", len(targets), extra={"config": str(self.config_path)}
                    )
                return ok
            except Exception:
                ok = False
                log.exception("reload failed; still running")
                return False
            finally:
                self._reloading = False
                self._last_reload_failed = not ok
                self.notifier.ready(self._status_text())


def main_supervise(config_path: Path, cfg: Config, workers: int, *, node_id: str | None = None) -> int:
    """``run`` with more than one worker: returns the parent's exit code."""
    from catalyst_smpp.logs import setup_logging

    node = node_id or cfg.node.effective_id
    try:
        setup_logging(cfg.logging.level, cfg.logging.format, file=cfg.logging.file, node=node)
    except OSError as e:
        print(f"{config_path}: logging.file: cannot open: {e}", file=sys.stderr)
        return EXIT_CONFIG
    try:
        sup = Supervisor(config_path, cfg, workers, node_id=node_id)
    except ValueError as e:  # the node number block (check_workers has caught the config cases)
        print(f"{config_path}: node.number: {e}", file=sys.stderr)
        return EXIT_CONFIG
    t0 = time.monotonic()
    try:
        return trio.run(sup.run)
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the signal receiver was installed
        return EXIT_FAILURE
    except Exception as e:
        log.critical("supervisor failed after %.1fs: %s", time.monotonic() - t0, e, exc_info=True)
        sup.notifier.notify(f"STATUS=failed: {e}", "ERRNO=1")
        return EXIT_FAILURE
