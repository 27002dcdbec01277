"""A bench of test hosts on this machine: network namespaces on a private bridge, one per host.

Hosts (each a network namespace ``chb-<name>`` with one veth into the bridge ``chb0``, subnet 10.213.47.0/24):

* ``n1``, ``n2``, ``n3`` (.21-.23): a nats-server each, clustered (routes on 6222), JetStream in its own store
  directory; clients on 4222, monitoring on 8222.
* ``pg`` (.5): a private Postgres (initdb'd for the bench, run as the ``postgres`` user).  Why a Postgres of
  its own rather than a relay to the system one (which listens on 127.0.0.1 only): cutting it off is then the
  same operation as for any other host (its packets dropped: connections hang as in a real partition, where a
  relay in our hands would close them or need a fault model of its own), and the bench never touches the
  shared test database.
* ``gw1``, ``gw2`` (.31, .32): ``catalyst-smpp run`` nodes (SMPP on 2775, metrics on 9100), configured
  with all three NATS urls and ``nats.replicas = 3``.
* the root namespace has .1 on the bridge: the test process lives there -- the partners (load) and the
  operator's SMSC simulator are "the outside world" to the cluster, each reaching every host over the bridge.
  ``python -m tests.hosts up`` also starts ``catalyst-smpp smsc-sim`` on a host ``smsc`` (.41) for manual
  runs.

Cutting a host off (:meth:`Bench.cut`) sets its bridge port to ``disabled``: every frame from or to it is
dropped, silently, both ways -- what a partition does (no RST, no "unreachable"; TCP retransmits until it
gives up or the cut ends).  This kernel has nf_tables but no nft/iptables binaries here, and tc has no
classifiers or netem, so the drop is at the bridge port rather than inside the namespace; the effect on the
host is the same.

One bench at a time per machine: an exclusive lock (``/run/catalyst-hosts.lock``) is held for its life (a
second test session waits for it); holding it, :func:`sweep` first removes whatever a crashed run left
(processes in our namespaces, the namespaces, the veths, the bridge, the base directory).

CLI: ``python -m tests.hosts up|down|status`` (``up`` leaves the bench running, ``down`` sweeps it).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any, TextIO

import attrs

PREFIX = "chb"
BRIDGE = f"{PREFIX}0"
NET = "10.213.47"
ROOT_ADDR = f"{NET}.1"
BASE = Path("/tmp/catalyst-hosts")
LOCK = Path("/run/catalyst-hosts.lock")
NATS_BIN = "/usr/sbin/nats-server"
HOSTS = {"pg": 5, "n1": 21, "n2": 22, "n3": 23, "gw1": 31, "gw2": 32, "smsc": 41}
NATS_NODES = ("n1", "n2", "n3")
GATEWAYS = ("gw1", "gw2")
SMPP_PORT = 2775
METRICS_PORT = 9100
PG_PORT = 5432


class BenchError(RuntimeError):
    pass


def _run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(list(args), capture_output=True, text=True)
    if check and p.returncode != 0:
        raise BenchError(f"{' '.join(args)}: exit {p.returncode}: {p.stderr.strip()}")
    return p


def ns(host: str) -> str:
    return f"{PREFIX}-{host}"


def addr(host: str) -> str:
    return f"{NET}.{HOSTS[host]}"


def nats_url(host: str) -> str:
    return f"nats://{addr(host)}:4222"


def check_prerequisites() -> None:
    """Fail (not skip) with a clear message where the bench cannot be built."""
    problems = []
    if os.geteuid() != 0:
        problems.append("the host bench needs root (network namespaces, veths, a bridge)")
    for b in ("ip", "bridge"):
        if shutil.which(b) is None:
            problems.append(f"no `{b}` binary (iproute2)")
    if not Path(NATS_BIN).exists():
        problems.append(f"no nats-server at {NATS_BIN}")
    if problems:
        raise BenchError("; ".join(problems))


# --------------------------------------------------------------------------- sweep


def _our_namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{PREFIX}-")]


def sweep() -> None:
    """Remove every trace of a bench (also of a crashed run): processes inside our namespaces (all started
    by a bench), the namespaces, veths and bridge, the base directory."""
    for name in _our_namespaces():
        pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
    deadline = time.monotonic() + 10
    for name in _our_namespaces():
        while _run("ip", "netns", "pids", name, check=False).stdout.split() and time.monotonic() < deadline:
            time.sleep(0.05)
        _run("ip", "netns", "del", name, check=False)
    links = _run("ip", "-o", "link", "show", check=False).stdout
    for line in links.splitlines():
        name = line.split(":")[1].strip().split("@")[0]
        if name == BRIDGE or name.startswith(f"{PREFIX}-"):
            _run("ip", "link", "del", name, check=False)
    shutil.rmtree(BASE, ignore_errors=True)


@contextlib.contextmanager
def bench_lock(timeout: float = 900.0) -> Iterator[None]:
    LOCK.parent.mkdir(parents=True, exist_ok=True)
    with LOCK.open("a") as f:
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise BenchError(f"another bench holds {LOCK} for more than {timeout:g}s") from None
                time.sleep(0.5)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# --------------------------------------------------------------------------- processes


@attrs.define
class Proc:
    """A process on a host (``ip netns exec``: the process itself, not a wrapper, has the pid)."""

    host: str
    args: list[str]
    log: Path
    user: str | None = None
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0

    def start(self) -> None:
        if self.running:
            return
        self.starts += 1
        cmd = ["ip", "netns", "exec", ns(self.host)]
        if self.user:
            cmd += ["runuser", "-u", self.user, "--"]
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "CATALYST_"))
        }
        with self.log.open("ab") as log:
            log.write(f"--- start {self.starts} at {time.time():.3f}\n".encode())
            log.flush()
            self.popen = subprocess.Popen(
                cmd + self.args, stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True
            )

    @property
    def running(self) -> bool:
        return self.popen is not None and self.popen.poll() is None

    def kill(self) -> None:
        """SIGKILL (a crash or power cut of this process); waits until it is gone."""
        if self.popen is not None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait(10)

    def terminate(self) -> None:
        """SIGTERM (a graceful stop), without waiting."""
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0) -> None:
        if self.popen is not None and self.popen.poll() is None:
            self.terminate()
            try:
                self.popen.wait(timeout)
            except subprocess.TimeoutExpired:
                self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"


def _wait_tcp(host: str, port: int, timeout: float, proc: Proc | None = None) -> None:
    import socket

    deadline = time.monotonic() + timeout
    while True:
        if proc is not None and proc.popen is not None and proc.popen.poll() is not None:
            raise BenchError(f"{proc.host}: {proc.args[0]} exited {proc.popen.returncode}:\n{proc.tail()}")
        try:
            socket.create_connection((host, port), timeout=0.5).close()
            return
        except OSError:
            if time.monotonic() > deadline:
                tail = proc.tail() if proc is not None else ""
                raise BenchError(f"nothing listening on {host}:{port} after {timeout:g}s\n{tail}") from None
            time.sleep(0.1)


# --------------------------------------------------------------------------- the bench


@attrs.define
class Bench:
    """The hosts and their processes.  ``sync_interval``: the JetStream ``sync_interval`` of the NATS nodes
    (None: the server's default, 2 min; ``"always"``; or a duration such as ``"1s"``)."""

    base: Path = BASE
    sync_interval: str | None = None
    nats_bin: str = NATS_BIN
    """the nats-server to run (``sync_interval`` needs 2.10 or later; /usr/sbin's is 2.9.10)"""
    with_smsc: bool = False
    nats: dict[str, Proc] = attrs.Factory(dict)
    gateways: dict[str, Proc] = attrs.Factory(dict)
    pg: Proc | None = None
    smsc: Proc | None = None
    cuts: set[str] = attrs.Factory(set)

    # -- network

    def _make_network(self) -> None:
        _run("ip", "link", "add", BRIDGE, "type", "bridge")
        _run("ip", "addr", "add", f"{ROOT_ADDR}/24", "dev", BRIDGE)
        _run("ip", "link", "set", BRIDGE, "up")
        for host in HOSTS:
            if host == "smsc" and not self.with_smsc:
                continue
            n = ns(host)
            _run("ip", "netns", "add", n)
            _run("ip", "link", "add", n, "type", "veth", "peer", "name", "eth0", "netns", n)
            _run("ip", "link", "set", n, "master", BRIDGE, "up")
            _run("ip", "-n", n, "addr", "add", f"{addr(host)}/24", "dev", "eth0")
            _run("ip", "-n", n, "link", "set", "eth0", "up")
            _run("ip", "-n", n, "link", "set", "lo", "up")

    def cut(self, host: str) -> None:
        """Drop every frame from and to ``host`` (its bridge port disabled): a partition."""
        _run("bridge", "link", "set", "dev", ns(host), "state", "0")
        self.cuts.add(host)

    def restore(self, host: str) -> None:
        _run("bridge", "link", "set", "dev", ns(host), "state", "3")
        self.cuts.discard(host)

    # -- NATS

    def _nats_config(self, host: str) -> Path:
        d = self.base / host
        d.mkdir(parents=True, exist_ok=True)
        routes = ", ".join(f'"nats-route://{addr(h)}:6222"' for h in NATS_NODES if h != host)
        sync = f"\n  sync_interval: {json.dumps(self.sync_interval)}" if self.sync_interval else ""
        cfg = d / "nats.conf"
        cfg.write_text(
            f'server_name: "{host}"\n'
            f'listen: "{addr(host)}:4222"\n'
            f'http: "{addr(host)}:8222"\n'
            f"jetstream {{\n  store_dir: {json.dumps(str(d / 'js'))}{sync}\n}}\n"
            f'cluster {{\n  name: "chb"\n  listen: "{addr(host)}:6222"\n  routes: [{routes}]\n}}\n'
        )
        return cfg

    def wait_nats_ready(self, hosts: tuple[str, ...] = NATS_NODES, timeout: float = 60.0) -> None:
        """Until each of ``hosts`` answers /healthz with JetStream ok (a meta leader elected, caught up)."""
        deadline = time.monotonic() + timeout
        for h in hosts:
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://{addr(h)}:8222/healthz?js-enabled-only=true", timeout=2
                    ) as r:
                        if r.status == 200:
                            with urllib.request.urlopen(f"http://{addr(h)}:8222/jsz", timeout=2) as r2:
                                if json.load(r2).get("meta_cluster", {}).get("leader"):
                                    break
                except OSError:
                    pass
                if time.monotonic() > deadline:
                    raise BenchError(f"NATS {h} not ready after {timeout:g}s:\n{self.nats[h].tail()}")
                time.sleep(0.2)

    def stream_leader(self, stream: str) -> str | None:
        """The server name of ``stream``'s leader, as a reachable node reports it (None: none known)."""
        for h in NATS_NODES:
            if not self.nats[h].running or h in self.cuts:
                continue
            url = f"http://{addr(h)}:8222/jsz?streams=true&accounts=true"
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    data = json.load(r)
            except OSError:
                continue
            for acc in data.get("account_details", []):
                for s in acc.get("stream_detail", []):
                    if s.get("name") == stream:
                        leader = s.get("cluster", {}).get("leader")
                        if leader:
                            return str(leader)
        return None

    # -- Postgres

    @property
    def dsn(self) -> str:
        return f"host={addr('pg')} port={PG_PORT} dbname=postgres user=postgres connect_timeout=3"

    def _start_pg(self) -> None:
        from catalyst_smpp.embedded import find_postgres_bin

        bindir = find_postgres_bin()
        user = pwd.getpwnam("postgres")
        data = self.base / "pg" / "data"
        data.mkdir(parents=True, mode=0o700)
        for p in (data.parent, data):
            os.chown(p, user.pw_uid, user.pw_gid)
        for p in [self.base, *self.base.parents]:
            p.chmod(p.stat().st_mode | 0o001)
        init = _run(
            "runuser", "-u", "postgres", "--", str(bindir / "initdb"), "-D", str(data), "-U", "postgres",
            "--auth=trust", "-E", "UTF8", "--no-locale", "--no-sync", check=False,
        )  # fmt: skip
        if init.returncode != 0:
            raise BenchError(f"initdb: {init.stderr}")
        with (data / "pg_hba.conf").open("a") as f:
            f.write(f"host all all {NET}.0/24 trust\n")
        self.pg = Proc(
            "pg",
            [
                str(bindir / "postgres"), "-D", str(data), "-c", f"listen_addresses={addr('pg')}",
                "-p", str(PG_PORT), "-c", "unix_socket_directories=", "-c", "max_connections=200",
                "-c", "fsync=off", "-c", "synchronous_commit=off", "-c", "full_page_writes=off",
            ],
            data.parent / "postgres.log",
            user="postgres",
        )  # fmt: skip
        self.pg.log.touch()
        os.chown(self.pg.log, user.pw_uid, user.pw_gid)
        self.pg.start()

    # -- gateways

    def gateway_config(
        self, host: str, *, namespace: str, schema: str, connectors: bool = True, **extra: str
    ) -> Path:
        """Write the config of the gateway on ``host`` (a test's namespace and schema); ``extra``: more TOML
        sections by name (``nats_extra`` is appended to ``[nats]``)."""
        d = self.base / host
        d.mkdir(parents=True, exist_ok=True)
        urls = ", ".join(f'"{nats_url(h)}"' for h in NATS_NODES)
        from tests.e2e.harness import ACK_WAIT

        cfg = d / "gateway.toml"
        cfg.write_text(
            f"""
[node]
id = "gw-{host[-1]}"
state_dir = "{d / "state"}"
connectors = {"true" if connectors else "false"}

[nats]
urls = [{urls}]
namespace = "{namespace}"
replicas = 3
reconnect_wait = "250ms"
{extra.get("nats_extra", "")}

[nats.streams.mt]
ack_wait = "{ACK_WAIT}s"

[nats.streams.dlr]
ack_wait = "{ACK_WAIT}s"

[nats.streams.mo]
ack_wait = "{ACK_WAIT}s"

[database]
dsn = "{self.dsn}"
schema = "{schema}"

[[listeners]]
host = "{addr(host)}"
port = {SMPP_PORT}
reuse_port = false

[limits]
shutdown_grace = "3s"

[metrics]
host = "{addr(host)}"
port = {METRICS_PORT}

[logging]
level = "INFO"
"""
        )
        self.gateways[host] = Proc(
            host,
            [sys.executable, "-c", "from catalyst_smpp.cli import main; main()", "run", "--config", str(cfg)],
            d / "gateway.log",
        )
        return cfg

    def wait_gateway(self, host: str, timeout: float = 60.0) -> None:
        _wait_tcp(addr(host), SMPP_PORT, timeout, self.gateways[host])

    def keep_logs(self, dest: Path) -> None:
        """Copy every process's log to ``dest`` (the bench's directory goes with the bench)."""
        dest.mkdir(parents=True, exist_ok=True)
        for p in [*self.gateways.values(), *self.nats.values(), self.pg, self.smsc]:
            if p is not None and p.log.exists():
                shutil.copy(p.log, dest / f"{p.host}-{p.log.name}")

    def stop_gateways(self) -> None:
        """SIGTERM to every gateway at once, then wait for each: they drain side by side."""
        for g in self.gateways.values():
            g.terminate()
        for g in self.gateways.values():
            g.stop()

    # -- life

    def up(self) -> None:
        check_prerequisites()
        sweep()
        self.base.mkdir(parents=True)
        self._make_network()
        self._start_pg()
        for h in NATS_NODES:
            self.nats[h] = Proc(
                h, [self.nats_bin, "-c", str(self._nats_config(h))], self.base / h / "nats.log"
            )
            self.nats[h].start()
        if self.with_smsc:
            self.smsc = Proc(
                "smsc",
                [sys.executable, "-c", "from catalyst_smpp.cli import main; main()", "smsc-sim",
                 "--host", addr("smsc"), "--port", str(SMPP_PORT), "--receipt-delay", "10ms-50ms"],
                self.base / "smsc.log",
            )  # fmt: skip
            self.smsc.start()
        _wait_tcp(addr("pg"), PG_PORT, 30, self.pg)
        self._wait_pg()
        self.wait_nats_ready()

    def _wait_pg(self, timeout: float = 30.0) -> None:
        import psycopg

        deadline = time.monotonic() + timeout
        while True:
            try:
                with psycopg.connect(self.dsn) as c:
                    c.execute("SELECT 1")
                return
            except psycopg.OperationalError:
                if time.monotonic() > deadline:
                    assert self.pg is not None
                    raise BenchError(f"Postgres not answering:\n{self.pg.tail()}") from None
                time.sleep(0.2)

    def down(self) -> None:
        for p in [*self.gateways.values(), self.smsc, *self.nats.values(), self.pg]:
            if p is not None:
                p.kill()
        sweep()

    def status(self, out: TextIO = sys.stdout) -> None:
        show_status(out)


def show_status(out: TextIO = sys.stdout) -> None:
    names = _our_namespaces()
    if not names:
        print("no bench", file=out)
        return
    for name in sorted(names):
        pids = _run("ip", "netns", "pids", name, check=False).stdout.split()
        cmds = []
        for pid in pids:
            with contextlib.suppress(OSError):
                cmds.append(
                    Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")[0].decode().rsplit("/", 1)[-1]
                )
        host = name.removeprefix(f"{PREFIX}-")
        state = _run("bridge", "link", "show", "dev", name, check=False).stdout
        cut = " CUT" if "state disabled" in state else ""
        print(f"{host:5} {addr(host):14}{cut} {' '.join(cmds) or '-'}", file=out)


@contextlib.contextmanager
def open_bench(**kw: Any) -> Iterator[Bench]:
    """The bench for a block (a module's tests): built after a sweep, swept afterwards, under the lock."""
    check_prerequisites()
    with bench_lock():
        b = Bench(**kw)
        try:
            b.up()
            yield b
        finally:
            b.down()


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m tests.hosts", description=__doc__.split("\n")[0])
    ap.add_argument("command", choices=["up", "down", "status"])
    ap.add_argument("--sync-interval", help="JetStream sync_interval of the NATS nodes (default: server's)")
    ap.add_argument("--nats-bin", default=NATS_BIN, help=f"nats-server binary (default {NATS_BIN})")
    a = ap.parse_args(argv)
    if a.command == "down":
        check_prerequisites()
        sweep()
        print("bench removed")
    elif a.command == "status":
        show_status()
    else:
        b = Bench(sync_interval=a.sync_interval, nats_bin=a.nats_bin, with_smsc=True)
        b.up()
        print(f"bench up in {BASE}: Postgres {b.dsn}; NATS {', '.join(nats_url(h) for h in NATS_NODES)}")
        print(
            f"SMSC simulator on {addr('smsc')}:{SMPP_PORT}; gateways: gw1/gw2 at {addr('gw1')}/{addr('gw2')}"
        )
        print("(gateways are started by the tests: Bench.gateway_config + Proc.start; `down` removes all)")
        show_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
