"""Third-party end-to-end rig: SMPP systems measured from outside, with a load client and an SMSC simulator
that are not ours (node-smpp, bench/node/), in one run, systems alternated::

    .venv/bin/python bench/rig.py --opensmppbox /path/to/opensmppbox          # every row, 20,000 messages
    .venv/bin/python bench/rig.py --systems none catalyst --repeat 3          # alternated 3 times, medians
    .venv/bin/python bench/rig.py --rate 3000 --count 30000 --opensmppbox P    # open loop: latency at 3,000/s
    .venv/bin/python bench/rig.py --binds 2 --window 200 --json

Rows (``--systems``):

* ``none``: the client binds straight to the simulator (the rig's own ceiling);
* ``catalyst``: ``catalyst-smpp run`` (one process), with a nats-server and a Postgres started for the run;
* ``catalyst-w2``: the same with ``run --workers 2``;
* ``kannel``: bearerbox (Debian package ``kannel``) with opensmppbox in front as the partner's SMPP server
  (``--opensmppbox PATH``, built separately; the row is skipped with a message when there is none).  Several
  paths give one row each (``kannel``, ``kannel#2``, ...), e.g. two builds of opensmppbox.

Per run, everything is started fresh: the simulator, the system (for Catalyst also a private nats-server with
JetStream in a temporary directory and a private Postgres cluster made with initdb, unless ``--nats`` /
``--dsn`` name servers to use instead), then the client binds, the CPU times are read, the load runs, the CPU
times are read again when the client reports, and everything is stopped.

The client binds transceivers and submits with registered_delivery=1, closed loop (``--window`` outstanding
per bind) or open loop (``--rate``: message i is due at i/rate s and its latencies count from then).  The
simulator answers each submit_sm at once with a hex id and sends a DELIVRD receipt right after.

Figures: msgs/s end to end = receipts received / (first submit → last receipt); submit_sm/s; submit →
submit_sm_resp p50/p99 and submit → receipt p50 (ms); CPU per message of the system's processes (psutil,
over the load window: from "go" to the client's report), each listed, and the rig's own client and simulator.

Settings: the systems' defaults.  Catalyst: a generated config (listener, metrics, NATS, database; log level
INFO, its default), a partner, an operator and a catch-all route with their default settings except the
throttles (partner ``throttle_rate`` / ``throttle_burst``, operator ``tps``), whose defaults (100/s) are
contract values, raised so they do not cap the run; Kannel's SMSC has no throughput cap by default.  Kannel:
bearerbox with an smpp smsc (transceiver-mode, ``max-pending-submits`` left at its default of 10 like
Catalyst's operator window of 10), internal DLR storage (its default), no store; opensmppbox with
``use-systemid-as-smsboxid`` (so that a client without a system_type can log in); both run with ``-v 4``
as Debian's init script does, no log file.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import psutil
from _procs import catalyst_command, stop, wait_for_port_file  # bench/ is on sys.path when run as a script

from e2e import (
    HOST,
    OPERATOR,
    PARTNER,
    PASSWORD,
    _drop_schema,
    _free_port,
    _free_ports,
    _nats_cleanup,
    _wait_gateway,
    _write_config,
)

NODE_DIR = Path(__file__).resolve().parent / "node"
SYSTEMS = ("none", "catalyst", "catalyst-w2", "kannel")

# ------------------------------------------------------------------------------------------ node tools


def ensure_node_modules(cache: Path) -> dict[str, str]:
    """Installs bench/node/package.json's dependencies into ``cache`` (once per version of the file) and
    returns the environment that lets the scripts find them."""
    cache.mkdir(parents=True, exist_ok=True)
    wanted = (NODE_DIR / "package.json").read_text()
    lock = NODE_DIR / "package-lock.json"
    stamp = cache / "package.json"
    if not (cache / "node_modules" / "smpp").exists() or not stamp.exists() or stamp.read_text() != wanted:
        stamp.write_text(wanted)
        npm = ["npm", "install", "--no-audit", "--no-fund"]
        if lock.exists():
            shutil.copy(lock, cache / "package-lock.json")
            npm = ["npm", "ci", "--no-audit", "--no-fund"]
        print(f"rig: installing node-smpp into {cache} ...", file=sys.stderr, flush=True)
        subprocess.run(npm, cwd=cache, check=True, stdout=subprocess.DEVNULL)
    return {**os.environ, "NODE_PATH": str(cache / "node_modules")}


# ------------------------------------------------------------------------------------------ processes


class Procs:
    """The processes of one run, stopped in reverse order of start."""

    def __init__(self) -> None:
        self.items: list[tuple[subprocess.Popen[Any], int]] = []

    def start(self, cmd: list[str], *, sig: int = 2, **kw: Any) -> subprocess.Popen[Any]:
        proc = subprocess.Popen(cmd, **kw)
        self.items.append((proc, sig))
        return proc

    def stop_all(self) -> None:
        for proc, sig in reversed(self.items):
            stop(proc, sig, timeout=15)


def _tree(pids: Sequence[int]) -> list[int]:
    out: list[int] = []
    for pid in pids:
        try:
            p = psutil.Process(pid)
            out.append(pid)
            out.extend(c.pid for c in p.children(recursive=True))
        except psutil.Error:
            pass
    return out


def _cpu_times(roles: dict[str, list[int]]) -> dict[str, dict[int, float]]:
    """CPU seconds (user + system) per process of each role's process trees."""
    out: dict[str, dict[int, float]] = {}
    for role, roots in roles.items():
        out[role] = {}
        for pid in _tree(roots):
            try:
                t = psutil.Process(pid).cpu_times()
                out[role][pid] = float(t.user + t.system)
            except psutil.Error:
                pass
    return out


def _wait(
    what: str, ready: Callable[[], bool], procs: Sequence[subprocess.Popen[Any]], timeout: float
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for p in procs:
            if p.poll() is not None:
                raise RuntimeError(f"{what}: {p.args[0]} exited early with code {p.returncode}")
        if ready():
            return
        time.sleep(0.1)
    raise RuntimeError(f"{what}: not ready after {timeout:.0f} s")


def _http_ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2):
            return True
    except OSError:
        return False


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex((HOST, port)) == 0


# ------------------------------------------------------------------------------------------ Catalyst


def _start_nats(procs: Procs, tmp: Path) -> tuple[str, int]:
    exe = shutil.which("nats-server")
    if not exe:
        raise RuntimeError("no nats-server on PATH (or give --nats URL)")
    port = _free_port()
    p = procs.start(
        [exe, "-a", HOST, "-p", str(port), "-js", "-sd", str(tmp / "nats")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    _wait("nats-server", lambda: _listening(port), [p], 30)
    return f"nats://{HOST}:{port}", p.pid


def _pg_bindir() -> Path:
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True).stdout
        if (Path(out.strip()) / "initdb").exists():
            return Path(out.strip())
    except (OSError, subprocess.CalledProcessError):
        pass
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"))
    if not found:
        raise RuntimeError("no initdb found (or give --dsn DSN)")
    return found[-1].parent


def _start_postgres(procs: Procs, tmp: Path) -> tuple[str, int]:
    """A private cluster with initdb's defaults, as user postgres when we are root (Postgres refuses root)."""
    bindir = _pg_bindir()
    data = tmp / "pg"
    data.mkdir()
    user: str | None = "postgres" if os.geteuid() == 0 else None
    if user:
        os.chmod(tmp, 0o755)
        shutil.chown(data, user)
    subprocess.run(
        [str(bindir / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres", "-E", "UTF8"],
        user=user,
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    port = _free_port()
    p = procs.start(
        [str(bindir / "postgres"), "-D", str(data), "-p", str(port), "-k", str(data), "-h", HOST],
        user=user,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    dsn = f"host={HOST} port={port} user=postgres dbname=postgres"
    _wait("postgres", lambda: _pg_ready(dsn), [p], 60)
    return dsn, p.pid


def _pg_ready(dsn: str) -> bool:
    import psycopg

    try:
        with psycopg.connect(dsn, connect_timeout=2):
            return True
    except psycopg.Error:
        return False


def _setup_catalyst_db(dsn: str, schema: str, sim_port: int, args: argparse.Namespace) -> None:
    from catalyst_smpp.store import OperatorRepo, PartnerRepo, RouteRepo, connect_sync, migrate

    partner: dict[str, Any] = {"window": args.partner_window} if args.partner_window else {}
    operator: dict[str, Any] = {"window": args.smsc_window} if args.smsc_window else {}
    with connect_sync(dsn, schema=schema, autocommit=True) as conn:
        migrate(conn, schema=schema)
        # defaults except the throttles (contract values; 100/s by default) and enough binds for --binds
        PartnerRepo(conn).add(
            PARTNER,
            PASSWORD,
            throttle_rate=1_000_000.0,
            throttle_burst=1_000_000,
            max_binds=max(4, args.binds),
            **partner,
        )
        OperatorRepo(conn).add(OPERATOR, HOST, sim_port, "gw", password="pw", tps=1_000_000.0, **operator)
        RouteRepo(conn).add(None, "", [OPERATOR])


def start_catalyst(
    procs: Procs, tmp: Path, sim_port: int, args: argparse.Namespace, workers: int
) -> tuple[int, dict[str, list[int]], Callable[[], None]]:
    tag = f"{os.getpid()}{int(time.time() * 1000) % 10_000_000}"
    nats_url, nats_pid = (args.nats, None) if args.nats else _start_nats(procs, tmp)
    dsn, pg_pid = (args.dsn, None) if args.dsn else _start_postgres(procs, tmp)
    namespace, schema = f"rig{tag}", f"bench_rig_{tag}"
    _setup_catalyst_db(dsn, schema, sim_port, args)
    port, mport = _free_port(), _free_ports(workers)
    cfg = tmp / "gw.toml"
    cfg_args = argparse.Namespace(nats=nats_url, dsn=dsn, lease_seconds=0, log_level="INFO")
    _write_config(
        cfg,
        cfg_args,
        namespace=namespace,
        schema=schema,
        port=port,
        metrics_port=mport,
        node="rig-1",
        state_dir=tmp / "state",
        node_number=0 if workers > 1 else None,
    )
    cmd = [*catalyst_command(), "run", "--config", str(cfg)]
    if workers > 1:
        cmd += ["--workers", str(workers)]
    log = open(tmp / "gw.log", "w")
    gw = procs.start(cmd, sig=15, stdout=log, stderr=subprocess.STDOUT)
    # with the operator's default single bind only worker 0 binds to it (the binds are dealt out);
    # every worker serves metrics on the base port + k once it runs
    _wait_gateway(gw, mport)
    for k in range(1, workers):
        _wait(f"worker {k}", lambda k=k: _http_ok(f"http://{HOST}:{mport + k}/metrics"), [gw], 60)
    roles = {"gateway": [gw.pid]}
    roles["nats-server"] = [nats_pid] if nats_pid else []
    roles["postgres"] = [pg_pid] if pg_pid else _shared_postgres_pids()

    def cleanup() -> None:
        if args.nats:
            _nats_cleanup(args.nats, namespace)
        if args.dsn:
            _drop_schema(args.dsn, schema)

    return port, roles, cleanup


def _shared_postgres_pids() -> list[int]:
    return [p.pid for p in psutil.process_iter(["name"]) if p.info["name"] in ("postgres", "postmaster")]


# ------------------------------------------------------------------------------------------ Kannel


def _kannel_status(admin_port: int) -> str:
    try:
        url = f"http://{HOST}:{admin_port}/status.txt?password=rig"
        return str(urllib.request.urlopen(url, timeout=2).read().decode(errors="replace"))
    except OSError:
        return ""


def start_kannel(
    procs: Procs, tmp: Path, sim_port: int, args: argparse.Namespace, opensmppbox: str
) -> tuple[int, dict[str, list[int]], Callable[[], None]]:
    admin, box, port = _free_port(), _free_port(), _free_port()
    (tmp / "kannel.conf").write_text(
        f"""group = core
admin-port = {admin}
admin-password = rig
admin-allow-ip = "{HOST}"
smsbox-port = {box}
box-allow-ip = "{HOST}"

group = smsbox
bearerbox-host = {HOST}

group = smsc
smsc = smpp
smsc-id = sim
host = {HOST}
port = {sim_port}
transceiver-mode = true
smsc-username = gw
smsc-password = pw
system-type = rig
{f"max-pending-submits = {args.smsc_window}" if args.smsc_window else ""}
"""
    )
    (tmp / "logins.txt").write_text(f"{PARTNER} {PASSWORD} rig {HOST}\n")
    (tmp / "opensmppbox.conf").write_text(
        f"""group = core
admin-port = {admin}
smsbox-port = {box}

group = opensmppbox
opensmppbox-id = rig
opensmppbox-port = {port}
bearerbox-host = {HOST}
bearerbox-port = {box}
our-system-id = kannel
route-to-smsc = sim
use-systemid-as-smsboxid = true
smpp-logins = "{tmp / "logins.txt"}"
"""
    )
    bb_log = open(tmp / "bearerbox.log", "w")
    bb = procs.start(
        [args.bearerbox, "-v", "4", str(tmp / "kannel.conf")], sig=15, stdout=bb_log, stderr=subprocess.STDOUT
    )
    _wait("bearerbox", lambda: "sim[sim]" in (s := _kannel_status(admin)) and "(online" in s, [bb], 30)
    osb_log = open(tmp / "opensmppbox.log", "w")
    osb = procs.start(
        [opensmppbox, "-v", "4", str(tmp / "opensmppbox.conf")],
        sig=15,
        cwd=tmp,
        stdout=osb_log,
        stderr=subprocess.STDOUT,
    )
    _wait("opensmppbox", lambda: _listen_port(osb.pid) == port, [bb, osb], 30)
    return port, {"bearerbox": [bb.pid], "opensmppbox": [osb.pid]}, lambda: None


def _listen_port(pid: int) -> int | None:
    try:
        for c in psutil.Process(pid).net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr:
                return int(c.laddr.port)
    except psutil.Error:
        pass
    return None


# ------------------------------------------------------------------------------------------ one run


def run_one(
    system: str, args: argparse.Namespace, env: dict[str, str], opensmppbox: str = ""
) -> dict[str, Any]:
    procs = Procs()
    cleanup: Callable[[], None] = lambda: None  # noqa: E731
    with tempfile.TemporaryDirectory(prefix="bench-rig-") as tmpdir:
        tmp = Path(tmpdir)
        try:
            sim = procs.start(
                [
                    "node",
                    str(NODE_DIR / "smsc.js"),
                    "--host",
                    HOST,
                    "--port",
                    "0",
                    "--port-file",
                    str(tmp / "sim.port"),
                ],
                env=env,
                stdout=subprocess.PIPE,
                text=True,
            )
            sim_port = wait_for_port_file(tmp / "sim.port", sim)
            roles: dict[str, list[int]] = {}
            if system == "none":
                port = sim_port
            elif system in ("catalyst", "catalyst-w2"):
                port, roles, cleanup = start_catalyst(
                    procs, tmp, sim_port, args, 2 if system == "catalyst-w2" else 1
                )
            else:
                port, roles, cleanup = start_kannel(procs, tmp, sim_port, args, opensmppbox)
            client = procs.start(
                [
                    "node",
                    str(NODE_DIR / "client.js"),
                    *("--host", HOST, "--port", str(port), "--system-id", PARTNER, "--password", PASSWORD),
                    *("--binds", str(args.binds), "--window", str(args.window), "--count", str(args.count)),
                    *("--rate", str(args.rate), "--time-limit", str(args.time_limit)),
                    *("--idle-timeout", str(args.idle_timeout)),
                ],
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert client.stdin is not None and client.stdout is not None
            bound = client.stdout.readline()
            if not bound.strip():
                raise RuntimeError(f"{system}: the client did not bind (exit code {client.wait()})")
            watched = {**roles, "client": [client.pid], "simulator": [sim.pid]}
            before = _cpu_times(watched)
            t0 = time.monotonic()
            client.stdin.write("go\n")
            client.stdin.flush()
            line = client.stdout.readline()
            after = _cpu_times(watched)
            wall = time.monotonic() - t0
            if not line.strip():
                raise RuntimeError(f"{system}: the client reported nothing (exit code {client.wait()})")
            result = json.loads(line)
            client.wait(15)
        finally:
            procs.stop_all()
            try:
                cleanup()
            except Exception as exc:  # a failed cleanup must not hide the figures
                print(f"rig: cleanup after {system} failed: {exc}", file=sys.stderr)
            logs = {f.name: f.read_text(errors="replace")[-2000:] for f in tmp.glob("*.log")}
    cpu = {
        role: sum(after[role].get(pid, 0.0) - before[role].get(pid, 0.0) for pid in after[role])
        for role in watched
    }
    receipts = max(int(result["receipts"]), 1)
    system_roles = [r for r in roles]
    return {
        "system": system,
        "opensmppbox": opensmppbox or None,
        **result,
        "wall_s": wall,
        "cpu_s": cpu,
        "cpu_us_per_msg": {r: 1e6 * cpu[r] / receipts for r in watched},
        "system_cpu_us_per_msg": 1e6 * sum(cpu[r] for r in system_roles) / receipts,
        "system_roles": system_roles,
        "logs": {k: v for k, v in logs.items() if "PANIC" in v or "ERROR" in v or "Traceback" in v},
    }


# ------------------------------------------------------------------------------------------ report


def _f(v: Any, fmt: str = ".0f") -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else format(v, fmt)


def _median(rows: list[dict[str, Any]], key: str) -> float | None:
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


def print_table(rows: list[dict[str, Any]], labels: list[str]) -> None:
    header = (
        f"{'system':<12} {'runs':>4} {'msgs/s e2e':>10} {'submit/s':>8} {'resp p50':>8} {'p99':>7} "
        f"{'rcpt p50':>8} {'sys µs/msg':>10}  per process µs/msg (rig: client, simulator)"
    )
    print(header)
    print("-" * (len(header) + 30))
    for label in labels:
        runs = [r for r in rows if r["label"] == label]
        if not runs:
            continue
        roles = list(runs[0]["cpu_us_per_msg"])
        per = "  ".join(
            f"{role} {statistics.median(r['cpu_us_per_msg'][role] for r in runs):.0f}"
            for role in roles
            if role not in ("client", "simulator")
        )
        rig = "/".join(
            f"{statistics.median(r['cpu_us_per_msg'][role] for r in runs):.0f}"
            for role in ("client", "simulator")
        )
        print(
            f"{label:<12} {len(runs):>4} {_f(_median(runs, 'msgs_per_s')):>10} "
            f"{_f(_median(runs, 'submit_per_s')):>8} "
            f"{_f(_median(runs, 'resp_p50_ms'), '.1f'):>8} {_f(_median(runs, 'resp_p99_ms'), '.1f'):>7} "
            f"{_f(_median(runs, 'receipt_p50_ms'), '.1f'):>8} "
            f"{_f(_median(runs, 'system_cpu_us_per_msg')):>10}  "
            f"{per + '  ' if per else ''}(rig {rig})"
        )
    print(
        "(medians over the runs; latencies in ms; µs/msg = CPU µs per message received back, psutil, "
        "over the load)"
    )
    for r in rows:
        notes = []
        if r["receipts_missing"] or r["rejected"] or r["receipts_unknown"] or r["receipts_duplicate"]:
            notes.append(
                f"rejected {r['rejected']} {r['errors'] or ''} receipts missing {r['receipts_missing']}, "
                f"unknown {r['receipts_unknown']}, duplicate {r['receipts_duplicate']}"
            )
        if r["time_limited"]:
            notes.append(f"time limit: {r['submitted']} submitted")
        for name, text in r["logs"].items():
            notes.append(f"{name}: {text.strip().splitlines()[-1][:200]}")
        if notes:
            print(f"{r['label']} run {r['run']}: " + "; ".join(notes))


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--systems", nargs="+", choices=SYSTEMS, default=list(SYSTEMS), help="rows (default: all)")
    p.add_argument("--count", type=int, default=20000, help="messages per run (default 20000)")
    p.add_argument("--binds", type=int, default=1, help="client binds (default 1)")
    p.add_argument("--window", type=int, default=100, help="outstanding submit_sm per bind (default 100)")
    p.add_argument(
        "--rate", type=float, default=0.0, help="open loop at this many submit_sm/s (default: closed)"
    )
    p.add_argument("--repeat", type=int, default=1, help="runs of every row, alternated (default 1)")
    p.add_argument(
        "--time-limit",
        type=float,
        default=120.0,
        help="stop submitting after this many seconds of a run (default 120; a slow system then sends fewer)",
    )
    p.add_argument("--idle-timeout", type=float, default=30.0, help="give up when nothing came for this long")
    p.add_argument("--bearerbox", default=shutil.which("bearerbox") or "/usr/sbin/bearerbox")
    p.add_argument(
        "--opensmppbox",
        nargs="+",
        default=[os.environ["CATALYST_RIG_OPENSMPPBOX"]]
        if os.environ.get("CATALYST_RIG_OPENSMPPBOX")
        else [],
        metavar="PATH",
        help="opensmppbox binary (several: a kannel row each); default $CATALYST_RIG_OPENSMPPBOX",
    )
    p.add_argument(
        "--smsc-window",
        type=int,
        default=0,
        help="NOT a default: submit_sm outstanding toward the simulator (Catalyst's operator window, "
        "Kannel's max-pending-submits; both 10 by default), to see what the default costs",
    )
    p.add_argument(
        "--partner-window",
        type=int,
        default=0,
        help="NOT a default: Catalyst's deliver_sm window toward the partner (10 by default; opensmppbox "
        "has none)",
    )
    p.add_argument("--nats", default="", help="use this NATS server instead of a private one")
    p.add_argument("--dsn", default="", help="use this Postgres instead of a private cluster")
    p.add_argument(
        "--node-cache",
        default=os.environ.get(
            "CATALYST_RIG_NODE_CACHE", str(Path.home() / ".cache" / "catalyst-bench" / "node")
        ),
        help="where node-smpp is installed (outside the repository)",
    )
    p.add_argument("--json", action="store_true")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    plan: list[tuple[str, str, str]] = []  # (label, system, opensmppbox)
    for system in args.systems:
        if system != "kannel":
            plan.append((system, system, ""))
            continue
        if not Path(args.bearerbox).exists():
            print(
                f"rig: skipping kannel: no bearerbox at {args.bearerbox} (apt-get install kannel)",
                file=sys.stderr,
            )
            continue
        paths = [p for p in args.opensmppbox if Path(p).exists()]
        for missing in set(args.opensmppbox) - set(paths):
            print(f"rig: no opensmppbox at {missing}", file=sys.stderr)
        if not paths:
            print("rig: skipping kannel: no opensmppbox binary (--opensmppbox PATH)", file=sys.stderr)
        for i, path in enumerate(paths):
            plan.append(("kannel" if i == 0 else f"kannel#{i + 1}", "kannel", path))
    if not plan:
        print("rig: nothing to run", file=sys.stderr)
        return 1
    env = ensure_node_modules(Path(args.node_cache))
    mode = f"open loop at {args.rate:.0f}/s" if args.rate else "closed loop"
    if args.smsc_window or args.partner_window:
        mode += (
            f"; NOT the defaults: smsc window {args.smsc_window or 'default'}, "
            f"partner window {args.partner_window or 'default'}"
        )
    print(
        f"rig: {args.count} messages, {args.binds} bind(s) x window {args.window}, {mode}, "
        f"{args.repeat} round(s) of {', '.join(lbl for lbl, _, _ in plan)}",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    failures: list[str] = []
    for run in range(1, args.repeat + 1):
        for label, system, osb in plan:
            try:
                row = run_one(system, args, env, osb)
            except Exception as exc:  # one failed run is reported, the others still run
                print(f"  [{run}] {label}: FAILED: {exc}", file=sys.stderr, flush=True)
                failures.append(f"{label} run {run}: {exc}")
                continue
            row.update(label=label, run=run)
            print(
                f"  [{run}] {label}: {_f(row['msgs_per_s'])} msgs/s, "
                f"resp p50 {_f(row['resp_p50_ms'], '.1f')} ms, {_f(row['system_cpu_us_per_msg'])} µs/msg",
                file=sys.stderr,
                flush=True,
            )
            rows.append(row)
    for failure in failures:
        print(f"rig: FAILED {failure}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        print_table(rows, [lbl for lbl, _, _ in plan])
        for label, _, osb in plan:
            if osb:
                print(f"{label}: opensmppbox {osb}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
