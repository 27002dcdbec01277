"""The daemon: config errors, structured logs, sd_notify, and ``catalyst-smpp run`` as a real process.

The process test runs the gateway on the local NATS (a unique namespace) and this module's Postgres schema,
with ``NOTIFY_SOCKET`` pointing at a datagram socket of the test (as systemd would).
"""

from __future__ import annotations

import io
import json
import logging
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families

from catalyst_smpp.config import NatsConfig
from catalyst_smpp.daemon import SdNotifier, watchdog_interval
from catalyst_smpp.logs import set_level, setup_logging
from tests.services import free_port


def _cli() -> list[str]:
    return [sys.executable, "-c", "from catalyst_smpp.cli import main; main()"]


def _env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "CATALYST_"))
    }
    env.update(extra)
    return env


# --------------------------------------------------------------------------- config errors


@pytest.mark.parametrize(
    ("text", "key", "problem"),
    [
        ("[listeners]\nport = 70000\n", "listeners", "expected an array, got a table"),
        ("[[listeners]]\nport = 70000\n", "listeners[0].port", "70000 is out of range (maximum 65535)"),
        ("[logging]\nlevel = 'INFOO'\n", "logging.level", "did you mean 'INFO'?"),
        ("[nats]\nreplica = 3\n", "nats.replica", "unknown key (did you mean 'replicas'?)"),
    ],
)
def test_run_with_a_bad_config_exits_2_naming_file_key_and_problem(
    tmp_path: Path, text: str, key: str, problem: str
) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(text)
    p = subprocess.run([*_cli(), "run", "--config", str(cfg)], capture_output=True, text=True, env=_env())
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{cfg}: {key}: ")
    assert problem in line


def test_run_with_a_missing_config_exits_2(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    p = subprocess.run([*_cli(), "run", "--config", str(missing)], capture_output=True, text=True, env=_env())
    assert p.returncode == 2
    assert str(missing) in p.stderr and "cannot read" in p.stderr


# --------------------------------------------------------------------------- logs


def _record(logger: logging.Logger) -> None:
    logger.warning("operator bind failed", extra={"operator": "op 1", "status": "ESME_RBINDFAIL"})


def test_text_logs_carry_timestamp_level_logger_message_and_fields() -> None:
    buf = io.StringIO()
    h = setup_logging("INFO", "text", node="n1", stream=buf)
    try:
        _record(logging.getLogger("catalyst_smpp.test"))
        logging.getLogger("catalyst_smpp.test").debug("hidden")
    finally:
        logging.getLogger().removeHandler(h)
    lines = buf.getvalue().splitlines()
    assert len(lines) == 1
    ts, level, rest = lines[0].split(" ", 2)
    assert ts.endswith("Z") and ts[4] == "-" and ts[10] == "T"
    assert level == "WARNING"
    assert rest == ('catalyst_smpp.test: operator bind failed node=n1 operator="op 1" status=ESME_RBINDFAIL')


def test_json_logs_and_level_change() -> None:
    buf = io.StringIO()
    h = setup_logging("WARNING", "json", node="n2", stream=buf)
    try:
        lg = logging.getLogger("catalyst_smpp.test")
        lg.info("not yet")
        set_level("DEBUG")
        lg.debug("now visible", extra={"partner": "acme"})
        try:
            raise ValueError("boom")
        except ValueError:
            lg.exception("failed")
    finally:
        logging.getLogger().removeHandler(h)
        set_level("WARNING")
    recs = [json.loads(line) for line in buf.getvalue().splitlines()]
    assert [r["msg"] for r in recs] == ["now visible", "failed"]
    assert recs[0]["level"] == "DEBUG" and recs[0]["logger"] == "catalyst_smpp.test"
    assert recs[0]["node"] == "n2" and recs[0]["partner"] == "acme" and recs[0]["ts"].endswith("Z")
    assert "ValueError: boom" in recs[1]["exc"]


# --------------------------------------------------------------------------- sd_notify


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, socket.socket]]:
    """An abstract-namespace datagram socket: ('@name', sock)."""
    name = f"catalyst-test-{uuid.uuid4().hex}"
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind("\0" + name)
    try:
        yield "@" + name, s
    finally:
        s.close()


def test_sd_notifier_path_and_abstract_sockets(
    tmp_path: Path, notify_socket: tuple[str, socket.socket]
) -> None:
    path = Path("/tmp") / f"cs-{uuid.uuid4().hex[:8]}.sock"  # short: AF_UNIX paths are limited to 108 bytes
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.bind(str(path))
    try:
        n = SdNotifier(str(path))
        assert n.ready("ready: SMPP on 2775")
        assert s.recv(4096) == b"READY=1\nSTATUS=ready: SMPP on 2775"
        n.close()
    finally:
        s.close()
        path.unlink()

    addr, sock = notify_socket
    n = SdNotifier(addr)
    assert n.reloading() and n.watchdog() and n.stopping()
    reload_msg = sock.recv(4096).decode().split("\n")
    assert reload_msg[0] == "RELOADING=1" and reload_msg[1].startswith("MONOTONIC_USEC=")
    assert sock.recv(4096) == b"WATCHDOG=1"
    assert sock.recv(4096) == b"STOPPING=1"
    n.close()

    assert SdNotifier("").enabled is False and SdNotifier("").ready() is False


def test_watchdog_interval_is_half_of_watchdog_usec(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    assert watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid() + 1))
    assert watchdog_interval() is None
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert watchdog_interval() == 15.0


# --------------------------------------------------------------------------- the daemon as a process


class Notifications:
    """The daemon's sd_notify datagrams, read by a thread as they arrive.  A socket left unread while the test
    waits for something else fills up (``net.unix.max_dgram_qlen``, 10 by default: 5 s of ``WATCHDOG=1`` at
    ``WATCHDOG_USEC=1000000``), and the daemon's next notification is then dropped (EAGAIN)."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.seen: list[str] = []
        self._arrived: queue.Queue[str] = queue.Queue()
        sock.settimeout(0.2)
        threading.Thread(target=self._read, name="sd-notify-reader", daemon=True).start()

    def _read(self) -> None:
        while True:
            try:
                msg = self.sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:  # the fixture closed the socket: the test is over
                return
            self._arrived.put(msg.decode())

    def wait_for(self, line: str, proc: subprocess.Popen[bytes], timeout: float = 120.0) -> list[str]:
        """Read datagrams until one has the line ``line``; returns those read (timeout: a hang guard)."""
        return self.wait_until(lambda ln: ln == line, proc, timeout, what=line)

    def wait_until(
        self,
        match: Callable[[str], bool],
        proc: subprocess.Popen[bytes],
        timeout: float = 120.0,
        what: str = "a matching line",
    ) -> list[str]:
        """Read datagrams until one has a line ``match`` accepts; returns those read."""
        line = what
        got: list[str] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise AssertionError(f"daemon exited with {proc.returncode} while waiting for {line}")
            try:
                msg = self._arrived.get(timeout=0.5)
            except queue.Empty:
                continue
            self.seen.append(msg)
            got.append(msg)
            if any(match(ln) for ln in msg.split("\n")):
                return got
        raise AssertionError(f"no {line} from the daemon; got {got}")


def _scrape(port: int) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    out = {}
    for fam in text_string_to_metric_families(body):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _config_text(
    *, state: Path, nats_url: str, ns: str, dsn: str, schema: str, smpp: int, metrics: int, level: str
) -> str:
    return f"""
[node]
id = "t-node"
state_dir = "{state}"

[nats]
urls = ["{nats_url}"]
namespace = "{ns}"

[database]
dsn = "{dsn}"
schema = "{schema}"

[[listeners]]
host = "127.0.0.1"
port = {smpp}
reuse_port = false

[limits]
shutdown_grace = "3s"

[metrics]
host = "127.0.0.1"
port = {metrics}

[logging]
level = "{level}"
format = "json"

[[partners]]
system_id = "dmnpartner"
password = "pw123"
"""


def _smpplib_bind(port: int) -> None:
    import smpplib.client

    client = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    client.connect()
    try:
        resp = client.bind_transceiver(system_id="dmnpartner", password="pw123")
        assert resp.status == 0
        client.unbind()
    finally:
        client.disconnect()


def test_run_as_a_process_notify_metrics_reload_and_graceful_stop(
    tmp_path: Path,
    nats_url: str,
    nats_config: NatsConfig,
    pg_dsn: str,
    pg_schema: str,
    notify_socket: tuple[str, socket.socket],
) -> None:
    smpp_port, metrics_port = free_port(), free_port()
    make: Callable[[str], str] = lambda level: _config_text(  # noqa: E731
        state=tmp_path / "state",
        nats_url=nats_url,
        ns=nats_config.namespace,
        dsn=pg_dsn,
        schema=pg_schema,
        smpp=smpp_port,
        metrics=metrics_port,
        level=level,
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text(make("INFO"))
    addr, sock = notify_socket
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as err:
        proc = subprocess.Popen(
            [*_cli(), "run", "--config", str(cfg)],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_env(NOTIFY_SOCKET=addr, WATCHDOG_USEC="1000000"),
        )
    notes = Notifications(sock)
    try:
        got = notes.wait_for("READY=1", proc)
        assert any(m.startswith("STATUS=starting") for m in got)
        ready = next(m for m in got if "READY=1" in m.split("\n"))
        assert f"SMPP on {smpp_port}" in ready and f"metrics on {metrics_port}" in ready
        assert _worker_pids(proc.pid) == {}  # one worker (the default): a single process, no parent

        m = _scrape(metrics_port)
        assert m[("catalyst_smpp_ready", ())] == 1
        # sampled before READY=1: nothing bound yet, nothing queued for the seeded partner
        assert m[("catalyst_smpp_binds", (("name", "dmnpartner"), ("side", "partner")))] == 0
        assert m[("catalyst_smpp_backlog", (("kind", "dlr"), ("name", "dmnpartner")))] == 0
        assert m[("catalyst_smpp_backlog", (("kind", "mo"), ("name", "dmnpartner")))] == 0
        assert m[("catalyst_smpp_info", (("node", "t-node"), ("version", m_version(m))))] == 1

        _smpplib_bind(smpp_port)

        # SIGHUP with a valid, changed file: RELOADING=1 then READY=1, still serving
        cfg.write_text(make("DEBUG"))
        proc.send_signal(signal.SIGHUP)
        notes.wait_for("RELOADING=1", proc)
        notes.wait_for("READY=1", proc)
        assert _scrape(metrics_port)[("catalyst_smpp_config_reloads_total", (("result", "ok"),))] == 1

        # SIGHUP with a broken file: refused, logged, the old config stays and the gateway keeps serving
        cfg.write_text("[[listeners]]\nport = 'x'\n")
        proc.send_signal(signal.SIGHUP)
        notes.wait_for("RELOADING=1", proc)
        notes.wait_for("READY=1", proc)
        m = _scrape(metrics_port)
        assert m[("catalyst_smpp_config_reloads_total", (("result", "invalid"),))] == 1
        assert m[("catalyst_smpp_ready", ())] == 1
        _smpplib_bind(smpp_port)

        assert "WATCHDOG=1" in notes.seen  # every 0.5 s with WATCHDOG_USEC=1 s

        proc.send_signal(signal.SIGTERM)
        notes.wait_for("STOPPING=1", proc)
        assert proc.wait(timeout=60) == 0  # hang guard; the drain grace is 3 s
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    assert records, log_path.read_text()
    assert all({"ts", "level", "logger", "msg"} <= r.keys() for r in records)
    msgs = [r["msg"] for r in records]
    assert "ready" in msgs and "drained" in msgs and "stopped" in msgs
    refused = next(r for r in records if r["msg"].startswith("config reload refused"))
    assert (
        refused["level"] == "ERROR" and refused["key"] == "listeners[0].port" and refused["file"] == str(cfg)
    )
    assert any(r["level"] == "DEBUG" for r in records)  # the reload applied the new level
    assert all(r.get("node") == "t-node" for r in records)
    with pytest.raises(urllib.error.URLError):
        urllib.request.urlopen(f"http://127.0.0.1:{metrics_port}/metrics", timeout=5)


# --------------------------------------------------------------------------- workers


def _worker_pids(parent: int) -> dict[int, int]:
    """{worker index: pid} of the supervising parent's worker processes."""
    import psutil

    out = {}
    for child in psutil.Process(parent).children():
        try:
            cmd = child.cmdline()
        except psutil.Error:
            continue
        if "--worker" in cmd:
            out[int(cmd[cmd.index("--worker") + 1])] = child.pid
    return out


def _bind_and_submit(port: int, n: int) -> None:
    """``n`` smpplib partners bound at the same time (separate connections: SO_REUSEPORT spreads them over the
    workers), each submitting one message (no route: ESME_RINVDSTADR, counted by the worker that answered)."""
    import smpplib.client

    clients = []
    try:
        for _ in range(n):
            c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
            c.connect()
            clients.append(c)
            assert c.bind_transceiver(system_id="dmnmulti", password="pw123").status == 0
        for c in clients:
            c.send_message(source_addr="TEST", destination_addr="999123", short_message=b"hello")
            resp = c.read_pdu()
            assert resp.command == "submit_sm_resp" and resp.status != 0  # answered, no route
        for c in clients:
            c.unbind()
    finally:
        for c in clients:
            c.disconnect()


def _submits(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> float:
    return sum(
        v
        for (name, labels), v in samples.items()
        if name == "catalyst_smpp_submits_total" and dict(labels).get("partner") == "dmnmulti"
    )


def _wait(predicate: Callable[[], bool], what: str, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if predicate():
                return
        except (OSError, KeyError):
            pass
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def test_run_with_two_workers_notify_share_the_port_restart_reload_and_stop(
    tmp_path: Path,
    nats_url: str,
    nats_config: NatsConfig,
    pg_dsn: str,
    pg_schema: str,
    notify_socket: tuple[str, socket.socket],
) -> None:
    """``run --workers 2``: one parent (sd_notify, signals, restarts) and two workers on one SMPP port."""
    smpp_port, metrics_base = free_port(), free_port(2)
    text = _config_text(
        state=tmp_path / "state",
        nats_url=nats_url,
        ns=nats_config.namespace,
        dsn=pg_dsn,
        schema=pg_schema,
        smpp=smpp_port,
        metrics=metrics_base,
        level="INFO",
    )
    # its own partner (seeds are inserted only when absent, and this module shares one schema);
    # max_binds is per node (per worker): 12 binds over 2 workers may land unevenly
    text = (
        text.replace('id = "t-node"', 'id = "t-multi"\nnumber = 40')
        .replace("reuse_port = false", "reuse_port = true")
        .replace('system_id = "dmnpartner"', 'system_id = "dmnmulti"')
        .replace('password = "pw123"', 'password = "pw123"\nmax_binds = 32')
    )
    cfg = tmp_path / "gw.toml"
    cfg.write_text(text)
    addr, sock = notify_socket
    log_path = tmp_path / "stderr.log"
    with log_path.open("wb") as err:
        proc = subprocess.Popen(
            [*_cli(), "run", "--config", str(cfg), "--workers", "2"],
            stdout=subprocess.DEVNULL,
            stderr=err,
            env=_env(NOTIFY_SOCKET=addr, WATCHDOG_USEC="1000000"),
        )
    notes = Notifications(sock)
    try:
        got = notes.wait_for("READY=1", proc)
        ready = next(m for m in got if "READY=1" in m.split("\n"))
        assert f"ready: 2 workers, SMPP on {smpp_port}" in ready
        assert f"metrics on {metrics_base}-{metrics_base + 1}" in ready
        pids = _worker_pids(proc.pid)
        assert sorted(pids) == [0, 1] and proc.pid not in pids.values()
        for k in (0, 1):  # each worker: its own metrics port and node id, ready when the parent said READY
            m = _scrape(metrics_base + k)
            assert m[("catalyst_smpp_ready", ())] == 1
            assert m[("catalyst_smpp_info", (("node", f"t-multi/w{k}"), ("version", m_version(m))))] == 1
            assert m[("process_resident_memory_bytes", ())] > 0  # the worker's own process metrics

        # both workers answer on the one SMPP port
        _bind_and_submit(smpp_port, 12)
        per_worker = [_submits(_scrape(metrics_base + k)) for k in (0, 1)]
        assert sum(per_worker) == 12 and all(n > 0 for n in per_worker), per_worker

        # a worker that dies is restarted (same index, node id and metrics port; a new pid)
        os.kill(pids[1], signal.SIGKILL)
        _wait(lambda: _worker_pids(proc.pid).get(1) not in (None, pids[1]), "worker 1 restarted")
        _wait(lambda: _scrape(metrics_base + 1)[("catalyst_smpp_ready", ())] == 1, "worker 1 ready again")
        # and the parent has taken its READY (it forwards SIGHUP to the workers it knows are ready)
        notes.wait_until(lambda ln: ln.startswith("STATUS=ready: 2 workers"), proc, what="all workers ready")
        assert _worker_pids(proc.pid)[0] == pids[0]
        # the parent pings the watchdog while every worker is alive (read until one comes: seen only
        # holds what earlier waits happened to read)
        if "WATCHDOG=1" not in notes.seen:
            notes.wait_for("WATCHDOG=1", proc)
        _bind_and_submit(smpp_port, 4)

        # SIGHUP goes to both workers; the parent says READY=1 when both have reloaded
        proc.send_signal(signal.SIGHUP)
        notes.wait_for("RELOADING=1", proc)
        notes.wait_for("READY=1", proc)
        for k in (0, 1):
            reloads = _scrape(metrics_base + k)[("catalyst_smpp_config_reloads_total", (("result", "ok"),))]
            assert reloads == 1

        proc.send_signal(signal.SIGTERM)
        notes.wait_for("STOPPING=1", proc)
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in _worker_pids(proc.pid).values() if proc.poll() is None else ():
            os.kill(pid, signal.SIGKILL)

    records = [json.loads(line) for line in log_path.read_text().splitlines() if line.startswith("{")]
    nodes = {r.get("node") for r in records}
    assert nodes == {"t-multi", "t-multi/w0", "t-multi/w1"}, nodes
    parent = [r for r in records if r.get("node") == "t-multi"]
    died = next(r for r in parent if r["msg"].startswith("WORKER DIED: w1"))
    assert died["level"] == "ERROR" and died["exit"] == "killed by SIGKILL" and died["pid"] == pids[1]
    started = {
        r["worker"]: r["node_number"]
        for r in parent
        if r["msg"].startswith("worker w") and "started" in r["msg"]
    }
    assert started == {"t-multi/w0": 40, "t-multi/w1": 41}
    assert parent[-1]["msg"] == "stopped" and parent[-1]["exit_code"] == 0
    for k in (0, 1):
        worker = [r["msg"] for r in records if r.get("node") == f"t-multi/w{k}"]
        assert "drained" in worker and "stopped" in worker
    for k in (0, 1):
        with pytest.raises(urllib.error.URLError):
            urllib.request.urlopen(f"http://127.0.0.1:{metrics_base + k}/metrics", timeout=5)


def test_run_workers_whose_node_numbers_do_not_fit_exits_2(tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text("[node]\nnumber = 1022\n")
    p = subprocess.run(
        [*_cli(), "run", "--config", str(cfg), "--workers", "3"], capture_output=True, text=True, env=_env()
    )
    assert p.returncode == 2, p.stderr
    line = p.stderr.strip().splitlines()[-1]
    assert line.startswith(f"{cfg}: node.number: 1022 + 3 workers - 1 = 1024 is above 1023")
    p = subprocess.run(
        [*_cli(), "run", "--config", str(cfg), "--workers", "x"], capture_output=True, text=True, env=_env()
    )
    assert p.returncode == 2 and "'x': a number of processes or 'auto'" in p.stderr


def m_version(samples: dict[tuple[str, tuple[tuple[str, str], ...]], float]) -> str:
    for (name, labels), _ in samples.items():
        if name == "catalyst_smpp_info":
            return dict(labels)["version"]
    raise AssertionError("no catalyst_smpp_info")


# --------------------------------------------------------------------------- systemd unit

UNIT = Path(__file__).resolve().parents[1] / "systemd" / "catalyst-smpp.service"


def _unit_keys() -> dict[str, dict[str, list[str]]]:
    sections: dict[str, dict[str, list[str]]] = {}
    current = ""
    for raw in UNIT.read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("[") and line.endswith("]"):
            current = line[1:-1]
            sections.setdefault(current, {})
            continue
        key, _, value = line.partition("=")
        sections[current].setdefault(key.strip(), []).append(value.strip())
    return sections


def _seconds(value: str) -> float:
    units = {"ms": 0.001, "s": 1, "min": 60, "m": 60}
    for u, f in units.items():
        if value.endswith(u) and value[: -len(u)].isdigit():
            return int(value[: -len(u)]) * f
    return float(value)


def test_systemd_unit_has_what_operations_rely_on() -> None:
    from catalyst_smpp.config import LimitsConfig

    svc = _unit_keys()["Service"]
    one = {k: v[-1] for k, v in svc.items()}
    assert one["Type"] == "notify"
    assert one["ExecStart"].split()[:3] == ["/usr/bin/env", "catalyst-smpp", "run"]
    assert "--config" in one["ExecStart"]
    assert one["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert one["KillSignal"] == "SIGTERM"
    assert _seconds(one["TimeoutStopSec"]) > LimitsConfig().shutdown_grace + 5
    assert _seconds(one["WatchdogSec"]) > 0
    assert one["Restart"] == "on-failure" and one["RestartPreventExitStatus"] == "2"
    assert (one["User"], one["Group"]) == ("catalyst", "catalyst")
    assert one["StateDirectory"] == "catalyst-smpp" and one["LogsDirectory"] == "catalyst-smpp"
    for key, value in [("NoNewPrivileges", "yes"), ("ProtectSystem", "strict"), ("ProtectHome", "yes"),
                       ("PrivateTmp", "yes")]:  # fmt: skip
        assert one[key] == value, key
    assert int(one["LimitNOFILE"]) >= 65536
    assert _unit_keys()["Install"]["WantedBy"] == ["multi-user.target"]


def test_systemd_unit_verifies() -> None:
    """``systemd-analyze verify`` when the machine has it; else the unit must at least be well-formed."""
    import shutil

    tool = shutil.which("systemd-analyze")
    if tool is not None:
        p = subprocess.run([tool, "verify", str(UNIT)], capture_output=True, text=True)
        assert p.returncode == 0, p.stderr
        assert "catalyst-smpp.service" not in p.stderr, p.stderr  # no warnings about our unit
    else:
        sections = _unit_keys()
        assert set(sections) == {"Unit", "Service", "Install"}
        assert all(all(len(v) == 1 for k, v in s.items() if k != "After") for s in sections.values())


# --------------------------------------------------------------------------- demo


@pytest.fixture
def demo_state(state_tmp: Path) -> Path:
    """The demo's state dir, outside pytest's basetemp (see ``tests.services.private_tempdir``)."""
    return state_tmp / "state"


def test_demo_runs_end_to_end_and_again_on_the_same_state_dir(demo_state: Path) -> None:
    """Embedded NATS and Postgres, the simulator as operator, our client as partner; a second run reuses the
    state directory (the seeded operator is pointed at the new simulator)."""
    state = demo_state
    for _ in range(2):
        p = subprocess.run(
            [*_cli(), "demo", "--state-dir", str(state), "--timeout", "60"],
            capture_output=True,
            text=True,
            env=_env(),
            timeout=280,
        )
        assert p.returncode == 0, p.stdout + p.stderr
        assert p.stdout.count("[ok]") == 4 and "[FAIL]" not in p.stdout
        assert "operator received: the same text in 3 part(s), data_coding 0" in p.stdout  # segmented
        assert "data_coding 8" in p.stdout  # UCS-2 kept
        assert p.stdout.count("receipt: DELIVRD") == 4
        assert "all messages delivered and all receipts back" in p.stdout
    assert (state / "nats").is_dir() and (state / "postgres").is_dir()
