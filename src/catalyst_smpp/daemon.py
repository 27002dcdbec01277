"""``catalyst-smpp run``: the gateway daemon — config, infrastructure, gateway, signals, systemd.

Life of the process:

1. load the config (``ConfigError`` → ``file: key: problem`` on stderr, exit 2), set up logging;
2. start the metrics endpoint (``[metrics]``; it answers during start-up, ``catalyst_smpp_ready`` 0);
3. ``open_infrastructure(cfg, db_wait=DB_START_WAIT)`` (embedded nats-server / Postgres when no URLs are
   configured); Postgres down past that wait → the gateway starts from ``<state_dir>/config-snapshot.json``;
4. the SMPP listeners: bound here (:mod:`catalyst_smpp.listen`; a port in use is one CRITICAL line naming the
   listener, exit 1) or, in a worker, inherited from the supervising parent;
   ``Gateway(cfg, infra, node_id=..., metrics=..., listen_sockets=...)``, ``nursery.start(gw.run)`` →
   ``READY=1``;
5. signals: ``SIGHUP`` re-reads the config file (an invalid file is logged and the old config stays),
   applies the log level and calls ``gw.reload()`` (``RELOADING=1`` … ``READY=1``); ``SIGTERM``/``SIGINT``
   drain gracefully within ``limits.shutdown_grace`` (``STOPPING=1``) and exit 0 — before ``gw.run`` has
   started (waiting for NATS or Postgres) there is nothing to drain: the start is cancelled, and should that
   hang, the process exits after ``shutdown_grace`` anyway; a second one stops at once (exit 1); a third exits
   the process immediately.

systemd: ``sd_notify`` over ``$NOTIFY_SOCKET`` (own implementation, abstract ``@`` sockets too),
``WATCHDOG=1`` every half ``$WATCHDOG_USEC`` from the trio loop (so a stuck loop is restarted), ``STATUS=``
lines.

Workers: ``--workers N`` (or ``node.workers``) with N > 1 runs :mod:`catalyst_smpp.supervisor` instead:
a supervising parent that starts N copies of this daemon as worker processes (``run --worker K``, their
:class:`WorkerSpec` in ``$CATALYST_SMPP_WORKER``).  A worker is this same daemon with its node id, node
number, metrics port and (embedded) NATS URL / DSN taken from the spec, sd_notify going to its parent, and a
stop of its own when the parent disappears.  N = 1 is the single process described above, with no parent.
"""

from __future__ import annotations

import inspect
import logging
import os
import signal
import sys
from pathlib import Path
from typing import Any

import attrs
import click
import trio

from catalyst_smpp.config import Config, ConfigError, load_config
from catalyst_smpp.listen import ListenerError, bind_listeners, close_listeners, inherit_listeners
from catalyst_smpp.service import (  # the daemon re-exports these names
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
from catalyst_smpp.util import gcpolicy

__all__ = ["EXIT_CONFIG", "WORKER_ENV", "Daemon", "SdNotifier", "WorkerSpec", "main_run", "register"]

log = logging.getLogger("catalyst_smpp.daemon")

# --------------------------------------------------------------------------- the daemon


def _gateway_class() -> Any:
    from catalyst_smpp.gateway.gateway import Gateway  # lazily: `migrate`/admin commands need not import it

    return Gateway


def _with_node_id(cfg: Config, node_id: str | None, worker: WorkerSpec | None = None) -> Config:
    if worker is not None:
        return worker.apply(cfg)
    if node_id:
        return attrs.evolve(cfg, node=attrs.evolve(cfg.node, id=node_id))
    return cfg


class Daemon:
    """One gateway node: owns the config, logging, metrics endpoint, infrastructure and the Gateway."""

    def __init__(
        self, config_path: Path, cfg: Config, *, node_id: str | None = None, worker: WorkerSpec | None = None
    ) -> None:
        from catalyst_smpp.metrics import Metrics

        self.config_path = config_path
        self.node_id_override = node_id
        self.worker = worker
        self.cfg = _with_node_id(cfg, node_id, worker)
        self.node = self.cfg.node.effective_id
        self.metrics = Metrics()
        self.metrics.set_info(self.node, version())
        self.notifier = SdNotifier()
        self.gateway: Any = None
        self.metrics_port: int | None = None
        self.exit_code = EXIT_OK
        self._stop_requested = trio.Event()
        self._gateway_up = False  # gw.run has started (listeners up): a stop from here on drains
        self._signals = 0
        self._main_scope: trio.CancelScope | None = None
        self._reload_lock = trio.Lock()

    # ---------------------------------------------------------------- entry

    async def run(self) -> int:
        try:
            # installed before anything starts, so an early SIGTERM is a graceful stop, not a kill
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT, signal.SIGHUP) as signals:
                async with trio.open_nursery() as outer:
                    outer.start_soon(self._signal_loop, signals, outer)
                    if self.cfg.metrics.port:
                        from catalyst_smpp.metrics import serve_metrics

                        self.metrics_port = await outer.start(
                            serve_metrics, self.metrics, self.cfg.metrics.host, self.cfg.metrics.port
                        )
                    wd = watchdog_interval()
                    if wd is not None and self.notifier.enabled:
                        outer.start_soon(self._watchdog, wd)
                    if self.worker is not None:
                        outer.start_soon(self._watch_parent, self.worker.parent_pid)
                    with trio.CancelScope() as self._main_scope:
                        await self._serve()
                    outer.cancel_scope.cancel()
        finally:
            self.metrics.ready.set(0)
            self.notifier.close()
        log.info("stopped", extra={"exit_code": self.exit_code})
        return self.exit_code

    async def _serve(self) -> None:
        from catalyst_smpp.embedded import open_infrastructure

        self.notifier.status("starting: NATS and Postgres")
        log.info(
            "starting catalyst-smpp %s",
            version(),
            extra={"config": str(self.config_path), "state_dir": str(self.cfg.node.state_dir)},
        )
        # Postgres that does not answer within DB_START_WAIT is not fatal: the gateway starts from its saved
        # config snapshot (<state_dir>/config-snapshot.json), or waits for Postgres if it has none
        async with open_infrastructure(self.cfg, db_wait=DB_START_WAIT) as infra:
            log.info(
                "infrastructure up",
                extra={
                    "nats": ",".join(infra.nats_urls),
                    "embedded_nats": infra.embedded_nats is not None,
                    "embedded_postgres": infra.embedded_postgres is not None,
                    "postgres_up": getattr(infra, "db_ready", True),
                },
            )
            self.notifier.status("starting: gateway")
            gateway_cls = _gateway_class()
            extra: dict[str, Any] = {}
            if self.cfg.node.number >= 0:  # else the Gateway derives it from the node id, as it always did
                extra["node_num"] = self.cfg.node.number
            if self.worker is not None:  # operator binds and TPS are shared out among the host's workers
                extra["worker"] = (self.worker.index, self.worker.count)
            from catalyst_smpp.store.snapshot_file import SNAPSHOT_FILE

            extra["snapshot_file"] = self.cfg.node.state_dir / SNAPSHOT_FILE
            try:
                sockets = self._listen_sockets()
            except ListenerError as e:  # one line naming the listener; no traceback
                log.critical("%s", e)
                self.notifier.status(f"failed: {e}")
                self.exit_code = EXIT_FAILURE
                return
            try:
                gw = gateway_cls(
                    self.cfg, infra, node_id=self.node, metrics=self.metrics, listen_sockets=sockets, **extra
                )
                self.gateway = gw
                async with trio.open_nursery() as n:
                    await self._serve_gateway(gw, infra, n)
            finally:
                close_listeners(
                    sockets
                )  # the servers have closed theirs; these are left after a failed start

    def _listen_sockets(self) -> list[list[Any]]:
        """The SMPP listening sockets: inherited from the supervising parent, or bound here (one process)."""
        if self.worker is not None and self.worker.listen_fds:
            return inherit_listeners(self.worker.listen_fds)
        return bind_listeners(self.cfg.listeners)

    async def _serve_gateway(self, gw: Any, infra: Any, n: trio.Nursery) -> None:
        """Start the gateway in ``n``, report ready, wait for the stop and drain."""
        await n.start(gw.run)
        self._gateway_up = True
        sampler = _Sampler(gw, infra.bus, self.metrics)
        with trio.move_on_after(5):
            await sampler.sample()  # so the first scrape after READY=1 has the gauges
        n.start_soon(sampler.run)
        gcpolicy.settle()  # start-up's objects out of the collector's way before the traffic
        ports = list(getattr(gw, "ports", []) or [])
        self.metrics.ready.set(1)
        status = f"ready: SMPP on {', '.join(map(str, ports)) or '-'}"
        if self.metrics_port:
            status += f"; metrics on {self.metrics_port}"
        if getattr(gw, "db_pending", False):
            status += "; Postgres DOWN: configuration from the saved snapshot"
        self.notifier.ready(status)
        log.info("ready", extra={"smpp_ports": ",".join(map(str, ports)), "metrics": self.metrics_port})
        await self._stop_requested.wait()
        await self._drain(gw)
        n.cancel_scope.cancel()

    async def _drain(self, gw: Any) -> None:
        grace = self.cfg.limits.shutdown_grace
        self.metrics.ready.set(0)
        self.notifier.stopping(f"draining (up to {grace:g}s)")
        log.info("draining", extra={"grace": grace})
        started = trio.current_time()
        # the gateway bounds its own wait by grace; the extra seconds only guard against a hung drain
        with trio.move_on_after(grace + 2.0) as scope:
            await gw.drain(grace)
        if scope.cancelled_caught:
            log.warning(
                "drain did not finish within the grace period; stopping anyway", extra={"grace": grace}
            )
        else:
            log.info("drained", extra={"seconds": round(trio.current_time() - started, 3)})

    # ---------------------------------------------------------------- signals

    async def _signal_loop(self, signals: Any, nursery: trio.Nursery) -> None:
        async for signum in signals:
            if signum == signal.SIGHUP:
                if self._signals == 0:
                    nursery.start_soon(self.reload)  # in a task: a stop signal is never held up
                continue
            self._signals += 1
            name = signal.Signals(signum).name
            if self._signals == 1:
                log.info("%s: graceful stop", name, extra={"signal": name})
                if not self._gateway_up:
                    nursery.start_soon(self._exit_after, self.cfg.limits.shutdown_grace)
                self._graceful_stop()
            elif self._signals == 2:
                log.warning("%s again: stopping now without draining", name, extra={"signal": name})
                self.exit_code = EXIT_FAILURE
                self.notifier.stopping("stopping now")
                if self._main_scope is not None:
                    self._main_scope.cancel()
            else:
                log.error("%s a third time: exiting immediately", name, extra={"signal": name})
                logging.shutdown()
                os._exit(EXIT_FAILURE)

    def _graceful_stop(self) -> None:
        self._stop_requested.set()
        if not self._gateway_up and self._main_scope is not None:
            # still starting (waiting for NATS or Postgres, or the gateway for its first configuration):
            # nothing to drain, stop now
            self._main_scope.cancel()

    async def _exit_after(self, grace: float) -> None:
        """A stop during start-up cancels it; should tearing down what had started (a libpq connect in a
        thread, an embedded server) still hang, the process exits anyway once ``shutdown_grace`` is over."""
        await trio.sleep(grace)
        log.error("start-up did not stop within shutdown_grace (%gs); exiting", grace, extra={"grace": grace})
        logging.shutdown()
        os._exit(EXIT_FAILURE)

    async def _watch_parent(self, parent_pid: int) -> None:
        """A worker whose supervising parent is gone (killed) drains and exits instead of running alone."""
        while os.getppid() == parent_pid:
            await trio.sleep(1.0)
        if self._signals == 0:
            log.error(
                "the supervising parent (pid %d) is gone; stopping", parent_pid, extra={"parent": parent_pid}
            )
            self._signals = 1
            self._graceful_stop()

    async def reload(self) -> bool:
        """Re-read the config file; apply the log level and reload the gateway.  False if invalid."""

        async with self._reload_lock:
            self.notifier.reloading()
            self.notifier.status("reloading")
            ok = True
            try:
                try:
                    new = _with_node_id(
                        await trio.to_thread.run_sync(load_config, self.config_path),
                        self.node_id_override,
                        self.worker,
                    )
                except ConfigError as e:
                    ok = False
                    self.metrics.config_reloads_total.labels(result="invalid").inc()
                    log.error(
                        "config reload refused, keeping the running config: %s",
                        e,
                        extra={"file": e.path, "key": e.key, "problem": e.problem},
                    )
                    return False
                self.cfg = apply_reloaded_config(self.cfg, new, self.node)
                if self.gateway is not None:
                    await _call_reload(self.gateway, self.cfg)
                self.metrics.config_reloads_total.labels(result="ok").inc()
                log.info("config reloaded", extra={"config": str(self.config_path)})
                return True
            except Exception:
                ok = False
                self.metrics.config_reloads_total.labels(result="error").inc()
                log.exception("reload failed; still running")
                return False
            finally:
                state = "ready" if ok else "ready (last reload failed, see the log)"
                self.notifier.ready(state)

    async def _watchdog(self, interval: float) -> None:
        while True:
            self.notifier.watchdog()
            await trio.sleep(interval)


SAMPLE_INTERVAL = 15.0


class _Sampler:
    """Gauges the gateway parts do not keep themselves: partner and operator binds on this node and the
    JetStream backlog (stored + unacknowledged) per operator (``mt``) and per partner (``dlr``, ``mo``),
    every 15 s."""

    def __init__(self, gw: Any, bus: Any, metrics: Any) -> None:
        self.gw = gw
        self.bus = bus
        self.metrics = metrics
        self._consumers: dict[tuple[Any, str], Any] = {}
        self._seen: set[tuple[str, str]] = set()
        self._seen_binds: set[str] = set()
        self._warned = False

    async def run(self) -> None:
        while True:
            await trio.sleep(SAMPLE_INTERVAL)
            await self.sample()

    async def sample(self) -> None:
        from catalyst_smpp.bus import Kind

        snap = getattr(self.gw, "snapshot", None)
        if snap is None:
            return
        receivers = getattr(self.gw, "receivers", None)
        binds: set[str] = set()
        if receivers is not None:
            for p in snap.partners:
                self.metrics.binds.labels(side="partner", name=p.system_id).set(
                    len(receivers.bound_sessions(p.system_id))
                )
                binds.add(p.system_id)
        for gone in self._seen_binds - binds:
            _remove(self.metrics.binds, "partner", gone)
        self._seen_binds = binds
        # our binds to each operator this node connects to (a removed operator's series goes with its
        # connector)
        for name, (conn, _scope) in list(getattr(self.gw, "connectors", {}).items()):
            self.metrics.binds.labels(side="operator", name=name).set(conn.binds)
        wanted = [(Kind.MT, "mt", o.name) for o in snap.operators if o.enabled]
        wanted += [
            (k, label, p.system_id)
            for p in snap.partners
            for k, label in ((Kind.DLR, "dlr"), (Kind.MO, "mo"))
        ]
        seen: set[tuple[str, str]] = set()
        for kind, label, name in wanted:
            try:
                c = self._consumers.get((kind, name))
                if c is None:
                    c = self._consumers[(kind, name)] = await self.bus.consumer(kind, name)
                info = await c.info()
            except Exception as e:  # NATS away: keep the last values, say it once
                if not self._warned:
                    self._warned = True
                    log.warning("backlog sampling failed: %s", e, extra={"kind": label, "consumer": name})
                return
            self.metrics.backlog.labels(kind=label, name=name).set(info.num_pending + info.num_ack_pending)
            seen.add((label, name))
        self._warned = False
        for label, name in self._seen - seen:
            _remove(self.metrics.backlog, label, name)
        self._seen = seen


def _remove(gauge: Any, *labels: str) -> None:
    try:
        gauge.remove(*labels)
    except KeyError:
        pass


async def _call_reload(gw: Any, cfg: Config) -> None:
    """``gw.reload()``; passes the new config if the Gateway's reload accepts one."""
    try:
        params = inspect.signature(gw.reload).parameters
    except (TypeError, ValueError):  # pragma: no cover
        params = {}  # type: ignore[assignment]
    if "cfg" in params:
        await gw.reload(cfg=cfg)
    elif "config" in params:
        await gw.reload(config=cfg)
    else:
        await gw.reload()


def main_run(
    config_path: Path, node_id: str | None = None, workers: int | None = None, worker: int | None = None
) -> int:
    """The ``run`` command: returns the process exit code.

    ``workers``: the ``--workers`` option (None = ``node.workers``; 0 = one per CPU); more than one runs the
    supervising parent.  ``worker``: the internal ``--worker K`` of a process that parent started.
    """
    from catalyst_smpp.config import check_workers, resolve_workers
    from catalyst_smpp.logs import setup_logging

    try:
        cfg = load_config(config_path)
    except ConfigError as e:
        print(str(e), file=sys.stderr)
        return EXIT_CONFIG
    spec: WorkerSpec | None = None
    if worker is not None:
        raw = os.environ.get(WORKER_ENV, "")
        try:
            spec = WorkerSpec.from_json(raw)
        except (ValueError, TypeError, KeyError):
            print(
                f"--worker is internal: run by the supervising parent (no valid ${WORKER_ENV})",
                file=sys.stderr,
            )
            return EXIT_CONFIG
        if spec.index != worker:
            print(f"--worker {worker} does not match ${WORKER_ENV} (worker {spec.index})", file=sys.stderr)
            return EXIT_CONFIG
    else:
        count = resolve_workers(cfg.node.workers if workers is None else workers)
        if count > 1:
            try:
                check_workers(cfg, count, str(config_path))
            except ConfigError as e:
                print(str(e), file=sys.stderr)
                return EXIT_CONFIG
            from catalyst_smpp.supervisor import main_supervise

            return main_supervise(config_path, cfg, count, node_id=node_id)
    node = spec.node_id if spec is not None else (node_id or cfg.node.effective_id)
    try:
        setup_logging(cfg.logging.level, cfg.logging.format, file=cfg.logging.file, node=node)
    except OSError as e:
        print(f"{config_path}: logging.file: cannot open: {e}", file=sys.stderr)
        return EXIT_CONFIG
    daemon = Daemon(config_path, cfg, node_id=node_id, worker=spec)
    try:
        return trio.run(daemon.run)
    except KeyboardInterrupt:  # pragma: no cover - SIGINT before the signal receiver was installed
        return EXIT_FAILURE
    except Exception as e:
        log.critical("gateway failed: %s", e, exc_info=True)
        daemon.notifier.notify(f"STATUS=failed: {e}", "ERRNO=1")
        return EXIT_FAILURE


# --------------------------------------------------------------------------- CLI


def register(main: click.Group) -> None:
    ctx = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

    @main.command("run", context_settings=ctx)
    @click.option(
        "--config",
        "-c",
        "config",
        envvar="CATALYST_SMPP_CONFIG",
        type=click.Path(dir_okay=False, path_type=Path),
        default="/etc/catalyst-smpp/catalyst-smpp.toml",
        show_default=True,
        help="TOML config file (see config/catalyst-smpp.toml) [env CATALYST_SMPP_CONFIG].",
    )
    @click.option("--node-id", help="Node id for logs, metrics and NATS names (overrides node.id).")
    @click.option(
        "--workers",
        "-w",
        "workers",
        callback=_workers_option,
        metavar="N|auto",
        help="Gateway worker processes sharing the listeners (overrides node.workers; default 1 = one "
        "process, no supervisor; auto or 0 = one per CPU).",
    )
    @click.option("--worker", "worker", type=int, hidden=True)  # internal: a worker the parent started
    def run_cmd(config: Path, node_id: str | None, workers: int | None, worker: int | None) -> None:
        """Run the gateway daemon in the foreground (systemd: Type=notify).

        \b
        Signals:  SIGHUP   re-read the config file (log level, limits; partners, operators and
                           routes are re-read from Postgres); an invalid file is logged, the old
                           config stays in force
                  SIGTERM  graceful drain within limits.shutdown_grace, then exit 0
                  SIGINT   same (Ctrl-C); a second SIGTERM/SIGINT stops at once (exit 1)
        With --workers N (N > 1) a supervising parent starts N worker processes, forwards these
        signals to them, restarts one that dies, and owns sd_notify; worker k is <node>/w<k>,
        node number node.number + k, metrics on metrics.port + k.
        Exit codes: 0 stopped cleanly, 1 failed, 2 invalid config (message: file: key: problem)."""
        sys.exit(main_run(config, node_id, workers, worker))


def _workers_option(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    if value is None:
        return None
    text = value.strip().lower()
    if text == "auto":
        return 0
    try:
        n = int(text)
    except ValueError:
        raise click.BadParameter(f"{value!r}: a number of processes or 'auto'") from None
    if n < 0:
        raise click.BadParameter(f"{value!r}: 0 (auto) or more")
    return n
