"""Start and stop of ``catalyst-smpp run`` as real processes: a stop while start-up waits for NATS or
Postgres, a DSN that does not parse, and an SMPP port that is in use (by another gateway or any program)."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from catalyst_smpp.config import NatsConfig
from tests.services import free_port
from tests.test_daemon import (
    Notifications,
    _cli,
    _config_text,
    _env,
    _smpplib_bind,
    notify_socket,  # noqa: F401 - fixture
)

HANG_GUARD = 60.0
"""Seconds a test waits for the process before calling it hung (not a pass/fail timing)."""


class Daemon:
    """``catalyst-smpp run`` in a process, stderr to a file the test can wait on."""

    def __init__(self, cfg: Path, *args: str, env: dict[str, str] | None = None) -> None:
        self.log = cfg.with_suffix(".stderr")
        with self.log.open("wb") as err:
            self.proc = subprocess.Popen(
                [*_cli(), "run", "--config", str(cfg), *args],
                stdout=subprocess.DEVNULL,
                stderr=err,
                env=env if env is not None else _env(),
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_for_log(self, needle: str) -> None:
        deadline = time.monotonic() + HANG_GUARD
        while time.monotonic() < deadline:
            if needle in self.text():
                return
            if self.proc.poll() is not None:
                raise AssertionError(
                    f"exited {self.proc.returncode} before logging {needle!r}:\n{self.text()}"
                )
            time.sleep(0.1)
        raise AssertionError(f"no {needle!r} in the log:\n{self.text()}")

    def wait(self) -> int:
        try:
            return self.proc.wait(timeout=HANG_GUARD)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"still running after {HANG_GUARD:g}s (hung):\n{self.text()}") from None

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def daemons() -> Iterator[list[Daemon]]:
    started: list[Daemon] = []
    yield started
    for d in started:
        d.kill()


def _closed_port() -> int:
    """A port nothing listens on (connections are refused)."""
    return free_port()


def _write(tmp_path: Path, name: str, text: str) -> Path:
    cfg = tmp_path / f"{name}.toml"
    cfg.write_text(text)
    return cfg


def _text(
    tmp_path: Path, name: str, nats_url: str, nats_config: NatsConfig, dsn: str, schema: str, smpp: int
) -> str:
    return _config_text(
        state=tmp_path / f"state-{name}",
        nats_url=nats_url,
        ns=f"{nats_config.namespace}{name}",
        dsn=dsn,
        schema=schema,
        smpp=smpp,
        metrics=0,
        level="INFO",
    ).replace('format = "json"', 'format = "text"')


# --------------------------------------------------------------------------- stop during start-up


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("missing", ["postgres", "nats"])
def test_sigterm_while_start_up_waits_for_postgres_or_nats_stops_cleanly(
    tmp_path: Path,
    nats_url: str,
    nats_config: NatsConfig,
    pg_dsn: str,
    pg_schema: str,
    daemons: list[Daemon],
    missing: str,
    workers: str,
) -> None:
    """Point the config at a closed port, wait until the start-up waits for that service, SIGTERM: the process
    stops (exit 0) instead of waiting on until it is killed."""
    closed = f"127.0.0.1:{_closed_port()}"
    url = f"nats://{closed}" if missing == "nats" else nats_url
    dsn = f"postgresql://postgres@{closed}/test" if missing == "postgres" else pg_dsn
    text = _text(tmp_path, "w" + workers, url, nats_config, dsn, pg_schema, free_port())
    cfg = _write(tmp_path, "gw", text.replace("reuse_port = false\n", ""))
    d = Daemon(cfg, "--workers", workers)
    daemons.append(d)
    if missing == "nats":
        d.wait_for_log("not reachable")  # a worker (or the one process) retries NATS
    elif workers == "1":
        # past the start-up wait for Postgres: no snapshot on this new state dir, the gateway waits for it
        d.wait_for_log("Postgres is DOWN at start and there is no usable saved configuration snapshot")
    else:
        d.wait_for_log("with 2 workers")  # the parent: migrations and seeds wait for Postgres
    d.proc.send_signal(15)
    assert d.wait() == 0, d.text()
    assert "stopped" in d.text()


# --------------------------------------------------------------------------- DSN


@pytest.mark.parametrize(
    ("dsn", "problem"),
    [
        ("host=db.example port", 'missing "=" after "port"'),
        ("postgresql://gw:s3cret@[::1/smpp", "not a valid Postgres connection string"),
        ("postgresql://gw:s3cret@db:fivefourthreetwo/smpp", "port 'fivefourthreetwo' is not a number"),
    ],
)
def test_run_with_a_dsn_that_does_not_parse_exits_2_naming_the_key(
    tmp_path: Path, dsn: str, problem: str
) -> None:
    cfg = _write(tmp_path, "gw", f'[database]\ndsn = "{dsn}"\n')
    p = subprocess.run(
        [*_cli(), "run", "--config", str(cfg)], capture_output=True, text=True, env=_env(), timeout=HANG_GUARD
    )
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{cfg}: database.dsn: ") and problem in line
    assert "s3cret" not in p.stderr  # the DSN (and its password) is not repeated


# --------------------------------------------------------------------------- one port, one gateway


def _one_line_in_use(d: Daemon, port: int) -> None:
    text = d.text()
    assert "Traceback" not in text, text
    lines = [ln for ln in text.splitlines() if "address already in use" in ln]
    assert len(lines) == 1, text
    assert "CRITICAL" in lines[0] and f"listeners[0] (127.0.0.1:{port})" in lines[0]


def test_a_second_gateway_cannot_join_the_port_of_a_running_one(
    tmp_path: Path,
    nats_url: str,
    nats_config: NatsConfig,
    pg_dsn: str,
    pg_schema: str,
    daemons: list[Daemon],
    notify_socket: tuple[str, socket.socket],  # noqa: F811
) -> None:
    """Gateway A (two workers) serves a port; gateway B (another state dir and namespace), configured as older
    files were (``reuse_port = true``), one process or with workers, is refused with one line and exit 1
    instead of sharing the port (and A's partners) through SO_REUSEPORT; A serves on."""
    port = free_port()
    addr, sock = notify_socket
    a_text = _text(tmp_path, "a", nats_url, nats_config, pg_dsn, pg_schema, port)
    a = Daemon(
        _write(tmp_path, "a", a_text.replace("reuse_port = false", "reuse_port = true")),
        "--workers",
        "2",
        env=_env(NOTIFY_SOCKET=addr),
    )
    daemons.append(a)
    Notifications(sock).wait_for("READY=1", a.proc)

    b_text = _text(tmp_path, "b", nats_url, nats_config, pg_dsn, pg_schema, port)
    b_cfg = _write(tmp_path, "b", b_text.replace("reuse_port = false", "reuse_port = true"))
    for args in ((), ("--workers", "2")):
        b = Daemon(b_cfg, *args)
        daemons.append(b)
        assert b.wait() == 1, b.text()
        _one_line_in_use(b, port)

    assert a.proc.poll() is None
    _smpplib_bind(port)  # A still answers on its port
    a.proc.send_signal(15)
    assert a.wait() == 0, a.text()


@pytest.mark.parametrize("workers", ["1", "2"])
def test_a_port_in_use_by_another_program_is_one_line_naming_the_listener(
    tmp_path: Path,
    nats_url: str,
    nats_config: NatsConfig,
    pg_dsn: str,
    pg_schema: str,
    daemons: list[Daemon],
    workers: str,
) -> None:
    with socket.socket() as other:
        other.bind(("127.0.0.1", 0))
        other.listen()
        port = other.getsockname()[1]
        d = Daemon(
            _write(
                tmp_path, "gw", _text(tmp_path, "p" + workers, nats_url, nats_config, pg_dsn, pg_schema, port)
            ),
            "--workers",
            workers,
        )
        daemons.append(d)
        assert d.wait() == 1, d.text()
    _one_line_in_use(d, port)
