"""What every gateway service process shares (the single daemon, the supervising parent, its workers).

Exit codes, the ``sd_notify(3)`` client, the watchdog interval, and the :class:`WorkerSpec` a supervising
parent hands to each worker process.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import time
from importlib import metadata

import attrs

from catalyst_smpp.config import Config

__all__ = [
    "DB_START_WAIT",
    "EXIT_CONFIG",
    "EXIT_FAILURE",
    "EXIT_OK",
    "RESTART_SECTIONS",
    "WORKER_ENV",
    "SdNotifier",
    "WorkerSpec",
    "apply_reloaded_config",
    "version",
    "watchdog_interval",
]

log = logging.getLogger("catalyst_smpp.service")

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_CONFIG = 2

DB_START_WAIT = 10.0
"""Seconds a start (one process, or the supervising parent) waits for Postgres (migrations) before it goes on
from the saved config snapshot."""

# config sections a running gateway cannot change without a restart
RESTART_SECTIONS = ("node", "nats", "database", "listeners", "metrics", "cluster")

WORKER_ENV = "CATALYST_SMPP_WORKER"
"""Environment variable carrying a worker's :class:`WorkerSpec` (JSON) from the supervising parent."""


@attrs.frozen
class WorkerSpec:
    """What the supervising parent decides for worker ``index``; applied over the worker's config file."""

    index: int
    count: int
    node_id: str
    node_number: int
    metrics_port: int
    parent_pid: int
    nats_urls: tuple[str, ...] = ()
    """Set when the parent started the embedded nats-server (else the config's ``nats.urls``)."""
    dsn: str = ""
    """Set when the parent started the embedded Postgres (else the config's ``database.dsn``)."""
    listen_fds: tuple[tuple[int, ...], ...] = ()
    """The listening sockets the parent bound, per ``listeners`` entry (inherited file descriptors; see
    :mod:`catalyst_smpp.listen`)."""

    def to_json(self) -> str:
        return json.dumps(attrs.asdict(self))

    @classmethod
    def from_json(cls, text: str) -> WorkerSpec:
        data = json.loads(text)
        data["nats_urls"] = tuple(data.get("nats_urls") or ())
        data["listen_fds"] = tuple(tuple(group) for group in data.get("listen_fds") or ())
        return cls(**data)

    def apply(self, cfg: Config) -> Config:
        node = attrs.evolve(cfg.node, id=self.node_id, number=self.node_number, workers=1)
        out = attrs.evolve(cfg, node=node, metrics=attrs.evolve(cfg.metrics, port=self.metrics_port))
        if self.nats_urls:
            out = attrs.evolve(out, nats=attrs.evolve(out.nats, urls=self.nats_urls))
        if self.dsn:
            out = attrs.evolve(out, database=attrs.evolve(out.database, dsn=self.dsn))
        return out


def version() -> str:
    try:
        return metadata.version("catalyst-smpp")
    except metadata.PackageNotFoundError:  # pragma: no cover
        return "0+unknown"


# --------------------------------------------------------------------------- systemd notify


class SdNotifier:
    """``sd_notify(3)`` without libsystemd: datagrams to ``$NOTIFY_SOCKET`` (path or ``@abstract``).

    Does nothing when the variable is unset (not started by systemd with Type=notify).
    """

    def __init__(self, address: str | None = None) -> None:
        addr = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self.address: str | None = addr or None
        self._sock: socket.socket | None = None
        self._warned = False
        if self.address:
            target = self.address
            if target.startswith("@"):
                target = "\0" + target[1:]
            self._target = target
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
            self._sock.setblocking(False)

    @property
    def enabled(self) -> bool:
        return self._sock is not None

    def notify(self, *lines: str) -> bool:
        """Send ``KEY=VALUE`` lines in one datagram; False if not sent (logged once)."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto("\n".join(lines).encode("utf-8"), self._target)
            return True
        except OSError as e:
            if not self._warned:
                self._warned = True
                log.warning("sd_notify to %s failed: %s", self.address, e)
            return False

    def ready(self, status: str = "") -> bool:
        return self.notify("READY=1", *([f"STATUS={status}"] if status else []))

    def reloading(self) -> bool:
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.notify("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def stopping(self, status: str = "") -> bool:
        return self.notify("STOPPING=1", *([f"STATUS={status}"] if status else []))

    def status(self, text: str) -> bool:
        return self.notify(f"STATUS={text}")

    def watchdog(self) -> bool:
        return self.notify("WATCHDOG=1")

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def watchdog_interval() -> float | None:
    """Half of ``$WATCHDOG_USEC`` in seconds, or None (unset, or meant for another ``$WATCHDOG_PID``)."""
    usec = os.environ.get("WATCHDOG_USEC", "")
    pid = os.environ.get("WATCHDOG_PID", "")
    if not usec:
        return None
    if pid and pid.isdigit() and int(pid) != os.getpid():
        return None
    try:
        value = int(usec)
    except ValueError:
        return None
    return value / 2e6 if value > 0 else None


def apply_reloaded_config(running: Config, new: Config, node: str) -> Config:
    """What a SIGHUP can change in a running process: warn about sections that need a restart, apply the
    logging settings, and return the running config with the reloadable sections (limits, logging) taken
    from ``new``."""
    from catalyst_smpp.logs import set_level, setup_logging

    changed = [s for s in RESTART_SECTIONS if getattr(new, s) != getattr(running, s)]
    if changed:
        log.warning(
            "config sections changed that take effect only after a restart: %s",
            ", ".join(changed),
            extra={"sections": ",".join(changed)},
        )
    if new.logging != running.logging:
        old = running.logging
        if (new.logging.format, new.logging.file) != (old.format, old.file):
            setup_logging(new.logging.level, new.logging.format, file=new.logging.file, node=node)
        else:
            set_level(new.logging.level)
        log.info(
            "logging now %s, %s",
            new.logging.level,
            new.logging.format,
            extra={"level": new.logging.level, "format": new.logging.format},
        )
    return attrs.evolve(running, limits=new.limits, logging=new.logging)
