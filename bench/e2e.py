"""End to end: ``catalyst-smpp load`` → gateway (``catalyst-smpp run``) → ``catalyst-smpp smsc-sim`` and back.

One command, every part in its own process, durable JetStream (file storage, work-queue streams)::

    .venv/bin/python bench/e2e.py                          # 20,000 messages, receipts asked for and awaited
    .venv/bin/python bench/e2e.py --count 50000 --binds 4 --window 256
    .venv/bin/python bench/e2e.py --gateways 2             # two gateway processes on one port (SO_REUSEPORT)
    .venv/bin/python bench/e2e.py --workers 2              # one gateway, `run --workers 2`: two workers
    .venv/bin/python bench/e2e.py --profile                # + py-spy of the gateway(s) while the load runs
    .venv/bin/python bench/e2e.py --nats nats://h:4222 --dsn "host=h dbname=x"   # other servers
    .venv/bin/python bench/e2e.py --op-latency 0 10ms 50ms  # operator answers after 0/10/50 ms: a row each
    .venv/bin/python bench/e2e.py --json
    .venv/bin/python bench/e2e.py --binds 1 --partner-window 50 --rate 2000 --duration 300   # sustained

Sustained (``--rate`` with ``--duration``): the load generator submits at that rate for that long, and the
run reports the submit rate, the receipt rate over the same span and the receipt backlog (receipts owed:
accepted minus received) at each quarter of it and at its end.  A partner that gets its receipts at its
submit rate has a flat backlog (a few round trips' worth); one whose receipts fall behind has a growing one.

What runs: the simulator answers every submit_sm at once with a hex id and sends a DELIVRD receipt right
after the response; the gateway (partner ``loadgen``, operator ``sim``, one route) accepts, publishes to
``MT.sim``, the connector submits to the simulator, stores the id mapping in the KV, the receipt comes back,
is mapped through the KV and published to ``DLR.loadgen``, and partner delivery sends it to the load
generator as a deliver_sm.  The message log (EVENTS → Postgres) runs too.

Figures: *messages/s end to end* = messages whose receipt reached the load generator / time from the first
submit to the last receipt; *submit_sm/s* = responses / time from the first submit to the last response;
latencies as the load generator measures them.  The time of the last receipt comes from the load
generator's progress lines (every 0.5 s, interpolated).  CPU seconds per process are taken with psutil
while the load runs (nats-server: the whole server, so other users of a shared server count too).

Defaults: NATS ``nats://127.0.0.1:4222`` with a fresh namespace per run (its streams are deleted after),
Postgres ``host=127.0.0.1 dbname=test`` with a fresh schema per run (dropped after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import re
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import psutil
from _procs import catalyst_command, stop, wait_for_port_file  # bench/ is on sys.path when run as a script

HOST = "127.0.0.1"
TEXT = "Benchmark message 0123456789"
DEST = "447700900123"
SOURCE = "CATALYST"
PARTNER, PASSWORD = "loadgen", "secret"
OPERATOR = "sim"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


def _free_ports(n: int) -> int:
    """A base port followed by n - 1 free ones (``run --workers n`` serves metrics on base + k)."""
    for _ in range(100):
        base = _free_port()
        try:
            for k in range(1, n):
                with socket.socket() as s:
                    s.bind((HOST, base + k))
        except OSError:
            continue
        if base + n - 1 <= 65535:
            return base
    raise RuntimeError(f"no {n} consecutive free ports")


def _worker_pids(pid: int) -> list[int]:
    """The worker processes of a ``run --workers N`` parent (none for a single process)."""
    out = []
    for child in psutil.Process(pid).children():
        try:
            if "--worker" in child.cmdline():
                out.append(child.pid)
        except psutil.Error:
            pass
    return out


def _cpu(pid: int) -> float:
    try:
        t = psutil.Process(pid).cpu_times()
        return float(t.user + t.system)
    except psutil.Error:
        return math.nan


def _nats_server_pid(url: str) -> int | None:
    m = re.match(r"^(?:nats://)?([^:/]+)(?::(\d+))?", url)
    if not m or m.group(1) not in ("127.0.0.1", "localhost"):
        return None
    port = int(m.group(2) or 4222)
    try:
        for c in psutil.net_connections("tcp"):
            if c.status == psutil.CONN_LISTEN and c.laddr and c.laddr.port == port and c.pid:
                return int(c.pid)
    except psutil.Error:
        pass
    for p in psutil.process_iter(["name", "cmdline"]):  # fall back: the only nats-server here
        if p.info["name"] == "nats-server":
            return int(p.pid)
    return None


def _postgres_pids(dsn: str) -> list[int]:
    """Our schema's backends are not told apart from others: all of the server's processes."""
    out = []
    for p in psutil.process_iter(["name"]):
        if p.info["name"] in ("postgres", "postmaster"):
            out.append(int(p.pid))
    return out


# ------------------------------------------------------------------------------------------ setup / cleanup


def _setup_database(dsn: str, schema: str, sim_port: int, args: argparse.Namespace) -> None:
    from catalyst_smpp.store import OperatorRepo, PartnerRepo, RouteRepo, connect_sync, migrate

    with connect_sync(dsn, schema=schema, autocommit=True) as conn:
        migrate(conn, schema=schema)
        PartnerRepo(conn).add(
            PARTNER,
            PASSWORD,
            max_binds=1000,
            throttle_rate=1_000_000.0,
            throttle_burst=1_000_000,
            window=args.partner_window,
            message_id_format="hex",
        )
        OperatorRepo(conn).add(
            OPERATOR,
            HOST,
            sim_port,
            "gw",
            password="pw",
            bind_type="transceiver",
            bind_count=args.op_binds,
            window=args.op_window,
            tps=1_000_000.0,
            submit_id_format="hex",
            receipt_id_format="hex",
        )
        RouteRepo(conn).add(None, "", [OPERATOR])
        if args.billing:
            _setup_billing(conn)


BILLING_TOPUP = "1000000"
BILLING_PRICE = "0.0125"


def _setup_billing(conn: Any) -> None:
    """``--billing``: the load partner billed (charged on submit) on a price plan for 44 (the load
    generator's destinations), with an account topped up far beyond what a run uses."""
    from catalyst_smpp.billing import books
    from catalyst_smpp.billing.money import Money
    from catalyst_smpp.store import PartnerRepo
    from catalyst_smpp.store.plan_repo import PlanRepo

    plans = PlanRepo(conn)
    plans.add("bench", "price", "EUR")
    plans.import_csv(
        "bench",
        "prefix,country,network,mcc_mnc,submit_price,delivery_price,effective_from,effective_until\n"
        f"44,44,DEFAULT,,{BILLING_PRICE},,2020-01-01T00:00:00+00:00,\n",
    )
    PartnerRepo(conn).change(PARTNER, price_plan="bench")
    pid = PartnerRepo(conn).get(PARTNER).id
    books.open_account(conn, pid, "EUR")
    books.topup(conn, pid, Money(BILLING_TOPUP, "EUR"), "bench", "bench")


def _books_check(dsn: str, schema: str) -> dict[str, Any]:
    """``--billing``: what the books say after the run (captures, open holds, balance = top-up - captured)."""
    from decimal import Decimal

    from catalyst_smpp.billing import books
    from catalyst_smpp.store import PartnerRepo, connect_sync

    with connect_sync(dsn, schema=schema) as conn:
        pid = PartnerRepo(conn).get(PARTNER).id
        state = books.account_state(conn, pid)
        captured = conn.execute(
            "SELECT count(*), coalesce(sum(amount), 0) FROM credit_entries"
            " WHERE partner_id = %s AND kind = 'capture'",
            (pid,),
        ).fetchone()
        holds = conn.execute(
            "SELECT count(*) FROM credit_entries WHERE partner_id = %s AND kind = 'hold'", (pid,)
        ).fetchone()
        assert captured is not None and holds is not None
        leases = conn.execute("SELECT count(*) FROM credit_leases WHERE partner_id = %s", (pid,)).fetchone()
        exact = state.balance.amount == Decimal(BILLING_TOPUP) - Decimal(captured[1]) and not books.verify(
            conn
        )
        return {
            "captures": captured[0],
            "holds": holds[0],
            "leases": leases[0] if leases else 0,
            "balance_exact": exact,
        }


def _drop_schema(dsn: str, schema: str) -> None:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def _nats_cleanup(url: str, namespace: str) -> dict[str, int]:
    """Delete the run's streams (and KV bucket); returns what was left in each stream."""

    async def go() -> dict[str, int]:
        import nats

        nc = await nats.connect(url)
        left: dict[str, int] = {}
        try:
            js = nc.jetstream()
            for info in await js.streams_info():
                name = info.config.name
                assert name is not None  # a stream always has a name
                if name.startswith(namespace + "_") or name.startswith(f"KV_{namespace}_"):
                    left[name] = int(info.state.messages)
                    await js.delete_stream(name)
        finally:
            await nc.close()
        return left

    return asyncio.run(go())


def _write_config(
    path: Path,
    args: argparse.Namespace,
    *,
    namespace: str,
    schema: str,
    port: int,
    metrics_port: int,
    node: str,
    state_dir: Path,
    node_number: int | None = None,
) -> None:
    number = f"number = {node_number}\n" if node_number is not None else ""
    billing = f"\n[billing]\nlease_seconds = {args.lease_seconds}\n" if args.lease_seconds else ""
    path.write_text(
        f"""
[node]
id = "{node}"
state_dir = "{state_dir}"
{number}
[nats]
urls = ["{args.nats}"]
namespace = "{namespace}"

[database]
dsn = "{args.dsn}"
schema = "{schema}"

[[listeners]]
host = "{HOST}"
port = {port}
reuse_port = true

[limits]
shutdown_grace = "5s"
{billing}
[metrics]
host = "{HOST}"
port = {metrics_port}

[logging]
level = "{args.log_level}"
"""
    )


def _metric_value(port: int, name: str) -> float | None:
    try:
        body = urllib.request.urlopen(f"http://{HOST}:{port}/metrics", timeout=2).read().decode()
    except OSError:
        return None
    for line in body.splitlines():
        if not line.startswith("#") and name in line:
            try:
                return float(line.rsplit(" ", 1)[1])
            except ValueError:
                return None
    return None


def _wait_gateway(proc: subprocess.Popen[Any], metrics_port: int, timeout: float = 60.0) -> None:
    """Until its connector to the simulator is bound (metrics ``connector_up{operator="sim"} 1``)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"gateway exited early with code {proc.returncode}")
        if _metric_value(metrics_port, f'connector_up{{operator="{OPERATOR}"}}') == 1.0:
            return
        time.sleep(0.1)
    raise RuntimeError("the gateway's connector did not come up in time")


# ------------------------------------------------------------------------------------------ the load


_PROGRESS = re.compile(
    r"\[\s*([\d.]+)s\] submitted (\d+) accepted (\d+) rejected (\d+) unanswered (\d+) receipts (\d+)"
)


class _ProgressReader(threading.Thread):
    """Reads the load generator's progress lines (\\r separated) from its stderr, stamped on arrival."""

    def __init__(self, stream: Any) -> None:
        super().__init__(daemon=True)
        self.stream = stream
        self.samples: list[tuple[float, int, int, int]] = []  # (monotonic, submitted, responses, receipts)
        self.other: list[str] = []
        self.eof = math.nan

    def run(self) -> None:
        buf = ""
        while True:
            chunk = self.stream.read(1)
            if not chunk:
                break
            if chunk in "\r\n":
                self._line(buf)
                buf = ""
            else:
                buf += chunk
        self._line(buf)
        self.eof = time.monotonic()

    def _line(self, line: str) -> None:
        m = _PROGRESS.search(line)
        if m:
            _t, sub, acc, rej, _un, rec = m.groups()
            self.samples.append((time.monotonic(), int(sub), int(acc) + int(rej), int(rec)))
        elif line.strip():
            self.other.append(line)


def _first_submit(samples: list[tuple[float, int, int, int]]) -> float:
    """When submitting began: extrapolated back from the first two samples that show submits."""
    busy = [s for s in samples if s[1] > 0]
    if not busy:
        return math.nan
    before = [s for s in samples if s[1] == 0]
    if len(busy) < 2:
        return before[-1][0] if before else busy[0][0]
    (t1, n1, *_), (t2, n2, *_) = busy[0], busy[1]
    rate = (n2 - n1) / (t2 - t1) if t2 > t1 and n2 > n1 else 0.0
    t0 = t1 - n1 / rate if rate > 0 else t1
    if before:
        t0 = max(t0, before[-1][0])
    return t0


def _reached(samples: list[tuple[float, int, int, int]], idx: int, target: int, fallback: float) -> float:
    """Interpolated time at which column ``idx`` reached ``target`` (``fallback`` when no sample shows it)."""
    prev: tuple[float, int, int, int] | None = None
    for s in samples:
        if s[idx] >= target:
            if prev is None or s[idx] == prev[idx]:
                return s[0]
            return prev[0] + (s[0] - prev[0]) * (target - prev[idx]) / (s[idx] - prev[idx])
        prev = s
    return fallback


def run_e2e(args: argparse.Namespace) -> dict[str, Any]:
    cmd = catalyst_command()
    tag = f"{os.getpid()}{int(time.time()) % 100000}"
    namespace = f"e2e{tag}"
    schema = f"bench_e2e_{tag}"
    procs: list[subprocess.Popen[Any]] = []
    spies: list[tuple[subprocess.Popen[Any], Path]] = []
    left: dict[str, int] = {}
    with tempfile.TemporaryDirectory(prefix="bench-e2e-") as tmpdir:
        tmp = Path(tmpdir)
        sim = subprocess.Popen(
            [
                *cmd,
                "smsc-sim",
                "--host",
                HOST,
                "--port",
                "0",
                "--port-file",
                str(tmp / "sim.port"),
                "--window",
                str(args.sim_window),
                "--latency",
                args.op_latency,
                "--stats-interval",
                "0",
                "--json",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
        )
        procs.append(sim)
        gateways: list[subprocess.Popen[Any]] = []
        try:
            sim_port = wait_for_port_file(tmp / "sim.port", sim)
            _setup_database(args.dsn, schema, sim_port, args)
            port = _free_port()
            metrics_ports = []
            for i in range(args.gateways):
                mport = _free_ports(args.workers)
                metrics_ports.append(mport)
                cfg = tmp / f"gw{i + 1}.toml"
                _write_config(
                    cfg,
                    args,
                    namespace=namespace,
                    schema=schema,
                    port=port,
                    metrics_port=mport,
                    node=f"e2e-{i + 1}",
                    state_dir=tmp / f"state{i + 1}",
                    # with workers, each gateway's block of node numbers: i * workers .. + workers - 1
                    node_number=i * args.workers if args.workers > 1 else None,
                )
                log = open(tmp / f"gw{i + 1}.log", "w")
                gw_cmd = [*cmd, "run", "--config", str(cfg)]
                if args.workers != 1:
                    gw_cmd += ["--workers", str(args.workers)]
                if args.switch_interval:
                    gw_cmd = [
                        sys.executable,
                        "-c",
                        "import sys; sys.setswitchinterval(float(sys.argv.pop(1))); "
                        "from catalyst_smpp.cli import main; main()",
                        str(args.switch_interval),
                        "run",
                        "--config",
                        str(cfg),
                        *gw_cmd[gw_cmd.index("run") + 3 :],
                    ]
                env = None
                if args.gateway_src:  # another source tree for the gateway only (before/after comparisons)
                    env = {**os.environ, "PYTHONPATH": str(Path(args.gateway_src).resolve())}
                    if gw_cmd[0] != sys.executable:
                        gw_cmd = [
                            sys.executable,
                            "-c",
                            "from catalyst_smpp.cli import main; main()",
                            *gw_cmd[1:],
                        ]
                if args.gateway_wrap:  # e.g. valgrind: the gateway's command after the wrapper's
                    gw_cmd = [*shlex.split(args.gateway_wrap), *gw_cmd]
                gw = subprocess.Popen(gw_cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
                gateways.append(gw)
                procs.append(gw)
            for gw, mport in zip(gateways, metrics_ports, strict=True):
                for k in range(args.workers):  # worker k of a gateway serves metrics on its base port + k
                    _wait_gateway(gw, mport + k, timeout=900.0 if args.gateway_wrap else 60.0)
            # the processes doing the work: each gateway, or with --workers its workers (and their parent)
            gateway_pids = [pid for g in gateways for pid in (g.pid, *_worker_pids(g.pid))]
            busy_pids = [pid for g in gateways for pid in (_worker_pids(g.pid) or [g.pid])]
            if args.profile:
                spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
                for i, gw_pid in enumerate(busy_pids):
                    out = tmp / f"gateway{i + 1}.txt"
                    sp = subprocess.Popen(
                        [
                            spy,
                            "record",
                            "--pid",
                            str(gw_pid),
                            "--format",
                            "raw",
                            "--threads",
                            "--rate",
                            str(args.profile_rate),
                            "-o",
                            str(out),
                        ],
                        stdout=subprocess.DEVNULL,
                        stderr=subprocess.DEVNULL,
                    )
                    spies.append((sp, out))
                time.sleep(1.0)
            nats_pid = _nats_server_pid(args.nats)
            pg_pids = _postgres_pids(args.dsn)
            watched = {
                "sim": [sim.pid],
                "gateway": gateway_pids,
                "nats-server": [nats_pid] if nats_pid else [],
                "postgres": pg_pids,
            }
            load_cmd = [
                *cmd,
                "load",
                "--host",
                HOST,
                "--port",
                str(port),
                "--system-id",
                PARTNER,
                "--password",
                PASSWORD,
                "--binds",
                str(args.binds),
                "--window",
                str(args.window),
                *(
                    ["--rate", str(args.rate), "--duration", str(args.duration)]
                    if args.duration
                    else ["--count", str(args.count), *(["--rate", str(args.rate)] if args.rate else [])]
                ),
                "--text",
                TEXT,
                "--source",
                SOURCE,
                "--dest",
                DEST,
                "--registered-delivery",
                "1",
                "--receipt-timeout",
                str(args.receipt_timeout),
                "--progress",
                "--json",
            ]
            before = {k: [_cpu(p) for p in v] for k, v in watched.items()}
            wall0 = time.monotonic()
            load = subprocess.Popen(load_cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
            procs.append(load)
            reader = _ProgressReader(load.stderr)
            reader.start()
            load_cpu = 0.0
            try:
                proc = psutil.Process(load.pid)
                while load.poll() is None:
                    try:
                        t = proc.cpu_times()
                        load_cpu = t.user + t.system
                    except psutil.Error:
                        pass
                    time.sleep(0.05)
            except psutil.Error:
                pass
            load_out = load.stdout.read() if load.stdout is not None else ""
            load.wait()
            wall = time.monotonic() - wall0
            after = {k: [_cpu(p) for p in v] for k, v in watched.items()}
            reader.join(5)
            cpu = {k: sum(a - b for a, b in zip(after[k], before[k], strict=True)) for k in watched}
            cpu["load"] = load_cpu
            for sp, _out in spies:
                stop(sp, signal.SIGINT)
            if load.returncode != 0:
                raise RuntimeError(f"load failed ({load.returncode}): {' | '.join(reader.other[-5:])}")
            report = json.loads(load_out)
            # after the load: the message log catches up (EVENTS → Postgres) — measured, not on the path
            backlog_t0 = time.monotonic()
            events = _wait_events(args, schema, report["accepted"] * 3, timeout=args.events_timeout)
            events_lag = time.monotonic() - backlog_t0
            gw_cpu_total = sum(_cpu(pid) - b for pid, b in zip(gateway_pids, before["gateway"], strict=True))
            profile_text = ""
            if args.profile:
                profile_text = "\n".join(_summarise_py_spy(out_file, args.top) for _sp, out_file in spies)
        finally:
            for sp, _out in spies:
                stop(sp, signal.SIGINT)
            for gw in gateways:
                stop(gw, signal.SIGTERM)
            sim_out = ""
            if sim.poll() is None:
                sim.send_signal(signal.SIGINT)
                try:
                    sim_out, _ = sim.communicate(timeout=20)
                except subprocess.TimeoutExpired:
                    sim.kill()
            for p in procs:
                if p.poll() is None:
                    p.kill()
            if args.keep_logs:
                Path(args.keep_logs).mkdir(parents=True, exist_ok=True)
                for f in [*tmp.glob("gw*.log"), *tmp.glob("gateway*.txt")]:
                    shutil.copy(f, Path(args.keep_logs) / f.name)
            errors: list[str] = []
            for f in sorted(tmp.glob("gw*.log")):
                lines = [
                    ln
                    for ln in f.read_text(errors="replace").splitlines()
                    if "Traceback" in ln or " ERROR " in ln
                ]
                errors.extend(f"{f.name}: {ln}" for ln in lines[:5])
            try:
                left = _nats_cleanup(args.nats, namespace)
            except Exception as exc:
                print(f"warning: NATS cleanup failed: {exc}", file=sys.stderr)
            books_after: dict[str, Any] | None = None
            if args.billing:  # after the gateways drained (their leases returned), before the schema goes
                try:
                    books_after = _books_check(args.dsn, schema)
                except Exception as exc:
                    print(f"warning: reading the books failed: {exc}", file=sys.stderr)
            try:
                _drop_schema(args.dsn, schema)
            except Exception as exc:
                print(f"warning: dropping schema {schema} failed: {exc}", file=sys.stderr)

    sim_summary: dict[str, Any] = {}
    if sim_out.strip():
        try:
            sim_summary = json.loads(sim_out.strip().splitlines()[-1])
        except ValueError:
            pass
    samples = reader.samples
    receipts = sum(report["receipts"].values())
    t_first = _first_submit(samples)
    t_last_receipt = _reached(samples, 3, receipts, reader.eof) if receipts else math.nan
    e2e_window = t_last_receipt - t_first
    lat = report["latency"]
    sustained = _sustained(samples, args.duration) if args.duration else None
    return {
        "sustained": sustained,
        "gateways": args.gateways,
        "workers": args.workers,
        "gateway_processes": len(gateway_pids),
        "binds": args.binds,
        "window": args.window,
        "partner_window": args.partner_window,
        "count": args.count,
        "accepted": report["accepted"],
        "rejected": sum(report["rejected"].values()),
        "unanswered": report["unanswered"],
        "receipts": receipts,
        "receipts_missing": report["receipts_missing"],
        "receipts_duplicate": report["receipts_duplicate"],
        "submit_per_s": report["throughput"],
        "e2e_seconds": e2e_window,
        "msgs_per_s": receipts / e2e_window if e2e_window > 0 else math.nan,
        "receipts_per_s": receipts / e2e_window if e2e_window > 0 else math.nan,
        "resp_p50": lat["submit_resp"]["p50"],
        "resp_p99": lat["submit_resp"]["p99"],
        "receipt_p50": lat["submit_receipt"]["p50"],
        "receipt_p99": lat["submit_receipt"]["p99"],
        "wall": wall,
        "cpu": cpu,
        "gateway_cpu_incl_log_catchup": gw_cpu_total,
        "events_logged": events,
        "events_catchup_s": events_lag,
        "left_in_streams": left,
        "sim": sim_summary,
        "gateway_errors": errors,
        "billing": args.billing,
        "books": books_after,
        "profile": profile_text,
    }


def _sustained(samples: list[tuple[float, int, int, int]], duration: float) -> dict[str, Any]:
    """Rates and receipt backlog over the submit span of a ``--duration`` run (from the progress lines).

    The span runs from the first submit to ``duration`` later; the backlog at a moment is the responses
    (accepted or rejected submit_sm) minus the receipts received by then, interpolated between samples."""
    t0 = _first_submit(samples)
    t_end = t0 + duration

    def at(t: float, idx: int) -> float:
        prev = None
        for s in samples:
            if s[0] >= t:
                if prev is None or s[0] == prev[0]:
                    return float(s[idx])
                return prev[idx] + (s[idx] - prev[idx]) * (t - prev[0]) / (s[0] - prev[0])
            prev = s
        return float(samples[-1][idx]) if samples else math.nan

    quarters = [t0 + duration * q / 4 for q in (1, 2, 3, 4)]
    backlog = [at(t, 2) - at(t, 3) for t in quarters]
    span = [s for s in samples if t0 <= s[0] <= t_end]
    return {
        "duration": duration,
        "submit_per_s": at(t_end, 2) / duration,
        "receipts_per_s": at(t_end, 3) / duration,
        # the second half alone: the steady state, without the first round trips
        "receipts_per_s_2nd_half": (at(t_end, 3) - at(t0 + duration / 2, 3)) / (duration / 2),
        "submit_per_s_2nd_half": (at(t_end, 2) - at(t0 + duration / 2, 2)) / (duration / 2),
        "backlog_quarters": backlog,
        "backlog_end": backlog[-1],
        "backlog_max": max((s[2] - s[3] for s in span), default=math.nan),
    }


def _wait_events(args: argparse.Namespace, schema: str, expected: int, timeout: float) -> int:
    """Rows in the message log; waits up to ``timeout`` for ``expected`` (accepted+submitted+delivered)."""
    import psycopg

    deadline = time.monotonic() + timeout
    n = 0
    with psycopg.connect(args.dsn, autocommit=True) as conn:
        while True:
            try:
                n = int(conn.execute(f'SELECT count(*) FROM "{schema}".message_log').fetchone()[0])  # type: ignore[index]
            except psycopg.Error:
                return -1
            if n >= expected or time.monotonic() >= deadline:
                return n
            time.sleep(0.25)


# ------------------------------------------------------------------------------------------ profile summary


def _summarise_py_spy(raw_file: Path, top: int) -> str:
    """py-spy collapsed stacks (``--threads``): share per thread, top own-time frames, top gateway frames."""
    if not raw_file.exists():
        return f"(no profile written to {raw_file.name})"
    threads: dict[str, int] = {}
    leaves: dict[str, int] = {}
    inclusive: dict[str, int] = {}
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        k = int(n)
        total += k
        frames = stack.split(";")
        thread = re.sub(r"\(tid.*|0x[0-9a-f]+", "", frames[0]).strip() if frames else "?"
        threads[thread] = threads.get(thread, 0) + k
        leaf = frames[-1]
        leaves[leaf] = leaves.get(leaf, 0) + k
        seen = set()
        for f in frames[1:]:
            if "catalyst_smpp" in f or "nats" in f or "trio" in f.split("(")[0]:
                name = f.split(" (")[0] + " (" + f.split(" (")[-1].split("/")[-1]
                if name not in seen:
                    seen.add(name)
                    inclusive[name] = inclusive.get(name, 0) + k
    lines = [f"--- {raw_file.stem}: {total} samples ---", "threads:"]
    for t, k in sorted(threads.items(), key=lambda kv: -kv[1]):
        lines.append(f"  {100.0 * k / max(total, 1):5.1f}%  {t}")
    lines.append(f"top {top} frames by own samples:")
    for leaf, k in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100.0 * k / max(total, 1):5.1f}%  {leaf}")
    lines.append(f"top {top} frames by inclusive samples (ours, trio, nats):")
    for name, k in sorted(inclusive.items(), key=lambda kv: -kv[1])[:top]:
        lines.append(f"  {100.0 * k / max(total, 1):5.1f}%  {name}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ report


def _ms(v: float | None) -> str:
    return "-" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v * 1000:.1f}"


def print_table(rows: list[dict[str, Any]]) -> None:
    header = (
        f"{'op rtt':>6} {'gw':>2} {'wk':>2} {'binds':>5} {'win':>4} {'messages':>8} {'receipts':>8} "
        f"{'msgs/s e2e':>10} "
        f"{'rcpt/s':>7} "
        f"{'submit/s':>8} {'resp p50':>8} {'p99':>7} {'rcpt p50':>8} {'p99':>7}"
    )
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r.get('op_latency', '0'):>6} {r['gateways']:>2} {r['workers']:>2} {r['binds']:>5} "
            f"{r['window']:>4} {r['accepted']:>8} "
            f"{r['receipts']:>8} "
            f"{r['msgs_per_s']:>10.0f} {r['receipts_per_s']:>7.0f} {r['submit_per_s']:>8.0f} "
            f"{_ms(r['resp_p50']):>8} {_ms(r['resp_p99']):>7} "
            f"{_ms(r['receipt_p50']):>8} {_ms(r['receipt_p99']):>7}"
        )
    print("(latencies in ms; msgs/s e2e = receipts delivered / first submit → last receipt)")
    for r in rows:
        if len(rows) > 1:
            print(f"\n[operator round trip {r.get('op_latency', '0')}]", end="")
        secs = r["e2e_seconds"]
        cpu = r["cpu"]
        parts = "  ".join(
            f"{k} {cpu[k]:.1f}s ({100 * cpu[k] / secs:.0f}%)"
            for k in ("load", "gateway", "sim", "nats-server", "postgres")
            if k in cpu and not math.isnan(cpu[k])
        )
        print(
            f"\nCPU over the load ({secs:.1f} s first submit → last receipt; "
            f"{r['wall']:.1f} s with start-up): {parts}"
        )
        per_msg = cpu["gateway"] / max(r["receipts"], 1) * 1e6
        print(
            f"gateway CPU per message: {per_msg:.0f} µs; gateway CPU incl. message-log catch-up: "
            f"{r['gateway_cpu_incl_log_catchup']:.1f}s; message-log rows {r['events_logged']} "
            f"(caught up {r['events_catchup_s']:.1f}s after the load)"
        )
        if r.get("books") is not None:
            b = r["books"]
            print(
                f"books: {b['captures']} captured of {b['holds']} held, {b['leases']} credit lease(s); "
                f"balance = top-up - captured: {'yes' if b['balance_exact'] else 'NO'}"
            )
        missing = r["receipts_missing"]
        print(
            f"rejected {r['rejected']}, unanswered {r['unanswered']}, receipts missing {missing}, "
            f"duplicate {r['receipts_duplicate']}; left in streams: {r['left_in_streams'] or 'nothing'}"
        )
        st = r.get("sustained")
        if st:
            q = " / ".join(f"{b:.0f}" for b in st["backlog_quarters"])
            print(
                f"sustained {st['duration']:.0f} s, 1 partner x {r['binds']} bind(s), partner window "
                f"{r['partner_window']}: submit {st['submit_per_s']:.0f}/s, "
                f"receipts {st['receipts_per_s']:.0f}/s "
                f"(second half: submit {st['submit_per_s_2nd_half']:.0f}/s, receipts "
                f"{st['receipts_per_s_2nd_half']:.0f}/s); receipt backlog at each quarter {q}, "
                f"at the end {st['backlog_end']:.0f} (max {st['backlog_max']:.0f})"
            )
        for e in r["gateway_errors"]:
            print(f"gateway log: {e}")
        if r["profile"]:
            print()
            print(r["profile"])


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """The command line (also what bench/billing.py builds its runs from)."""
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20000, help="messages (default 20000)")
    p.add_argument("--binds", type=int, default=2, help="load generator binds (default 2)")
    p.add_argument("--window", type=int, default=256, help="load generator window per bind (default 256)")
    p.add_argument("--gateways", type=int, default=1, help="gateway processes sharing the port (default 1)")
    p.add_argument(
        "--workers",
        type=int,
        default=1,
        help="worker processes per gateway: `run --workers N`, one supervising parent (default 1: no parent)",
    )
    p.add_argument(
        "--rate",
        type=float,
        default=0.0,
        help="submit_sm per second over all binds (default: as fast as possible)",
    )
    p.add_argument(
        "--duration",
        type=float,
        default=0.0,
        help="submit for this many seconds at --rate (instead of --count): the sustained figures",
    )
    p.add_argument("--op-binds", type=int, default=2, help="operator binds per gateway (default 2)")
    p.add_argument("--op-window", type=int, default=256, help="operator window per bind (default 256)")
    p.add_argument("--partner-window", type=int, default=512, help="deliver_sm window toward the partner")
    p.add_argument("--sim-window", type=int, default=512, help="simulator's deliver_sm window per bind")
    p.add_argument(
        "--op-latency",
        nargs="+",
        default=["0"],
        metavar="DELAY",
        help="the simulator answers each submit_sm after this delay (an operator's round trip: 10ms, 50ms, "
        "5-50ms); several values: one run and one row each (default 0)",
    )
    p.add_argument("--nats", default=os.environ.get("CATALYST_BENCH_NATS", "nats://127.0.0.1:4222"))
    p.add_argument("--dsn", default=os.environ.get("CATALYST_BENCH_DSN", "host=127.0.0.1 dbname=test"))
    p.add_argument("--receipt-timeout", type=float, default=60.0)
    p.add_argument(
        "--events-timeout",
        type=float,
        default=30.0,
        help="seconds to wait after the load for the message log to catch up (default 30)",
    )
    p.add_argument("--profile", action="store_true", help="py-spy the gateway(s) while the load runs")
    p.add_argument("--profile-rate", type=int, default=100, help="py-spy samples per second (default 100)")
    p.add_argument("--top", type=int, default=30)
    p.add_argument("--log-level", default="WARNING")
    p.add_argument(
        "--gateway-src",
        metavar="DIR",
        help="run the gateway from this source tree (PYTHONPATH), e.g. an older copy of src/",
    )
    p.add_argument(
        "--gateway-wrap",
        metavar="CMD",
        help="run the gateway under this command (e.g. valgrind, as bench/instructions.py does); the wait "
        "for it to come up is then 15 minutes",
    )
    p.add_argument(
        "--switch-interval",
        type=float,
        default=0.0,
        help="sys.setswitchinterval for the gateway process(es) (default: Python's, 5 ms; with --workers: "
        "the parent only)",
    )
    p.add_argument("--keep-logs", metavar="DIR", help="copy the gateway logs (and raw py-spy profiles) here")
    p.add_argument(
        "--billing",
        action="store_true",
        help="bill the load partner (a price plan, an account, a hold and a capture per message); the books "
        "are checked after the run",
    )
    p.add_argument(
        "--lease-seconds",
        type=float,
        default=0.0,
        help="[billing] lease_seconds for the gateway(s) (default: the gateway's own, 5 s)",
    )
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if args.duration and not args.rate:
        p.error("--duration needs --rate")
    return args


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"e2e: {args.count} messages, load {args.binds} bind(s) x window {args.window}, "
        f"{args.gateways} gateway(s) x {args.workers} worker(s), "
        f"operator {args.op_binds} bind(s) x window {args.op_window}, receipts on ...",
        file=sys.stderr,
        flush=True,
    )
    rows = []
    for latency in args.op_latency:
        run_args = argparse.Namespace(**{**vars(args), "op_latency": latency})
        row = run_e2e(run_args)
        row["op_latency"] = latency
        rows.append(row)
    if args.json:
        print(json.dumps(rows[0] if len(rows) == 1 else rows, indent=2, default=str))
    else:
        print_table(rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
