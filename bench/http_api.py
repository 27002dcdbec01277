"""The HTTP API end to end: sends/s over keep-alive connections, a bulk of 10,000, the SMPP path beside it.

(Named ``http_api``: a ``bench/http.py`` would hide the standard library's ``http`` package from every script
in this directory.)

One command::

    .venv/bin/python bench/http_api.py             # 10 s of sends from 50 clients, a bulk of 10,000, SMPP
    .venv/bin/python bench/http_api.py --seconds 20 --clients 100 --no-smpp
    .venv/bin/python bench/http_api.py --client httpx --count 20000    # without wrk: 20,000 sends by httpx
    .venv/bin/python bench/http_api.py --json
    .venv/bin/python bench/http_api.py --baseline /work/wt-base/src --pairs 3 --no-smpp   # before/after

What runs, each in its own process: ``catalyst-smpp smsc-sim`` (answers at once, a DELIVRD receipt
right after), the gateway (``catalyst-smpp run`` with its HTTP API on), and the HTTP clients: ``wrk``
(1 thread, ``--clients`` keep-alive connections for ``--seconds``, a Lua script giving each request its own
text; light on the CPU the gateway shares) when it is installed, else httpx on trio in this process
(``--count`` sends, one keep-alive connection per client; it costs about as much CPU per request as the
gateway, so its figures are lower).  The output says which one ran.  ``--baseline DIR`` runs the gateway
from another source tree too (PYTHONPATH; the tree needs its built ``_native`` module), alternating with this
one ``--pairs`` times, and prints the medians.  Every send asks for a delivery report; a message
counts as done end to end when its ``delivered`` row is in the message log (the receipt came back from the
simulator and was mapped).  Then one ``POST /api/v4/sms/bulk`` of ``--bulk`` messages, timed to its answer.
Then, on the same gateway, ``catalyst-smpp load`` submits as many messages over SMPP (2 binds, window 256),
for the comparison.

Figures: sends/s (202 answers per second from the first request to the last answer), end to end msgs/s (to
the last ``delivered`` row), 202 latency p50/p99, gateway CPU per message over the sends, the bulk's answer
time, and the SMPP load's submit_sm/s and end-to-end msgs/s.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import httpx
import psutil
import trio
from _procs import catalyst_command, wait_for_port_file

import e2e

TO = "+447700900{:03d}"


def _create_key(dsn: str, schema: str) -> str:
    from catalyst_smpp.http.keys import create_key
    from catalyst_smpp.store import connect_sync

    with connect_sync(dsn, schema=schema, autocommit=True) as conn:
        _key, secret = create_key(conn, e2e.PARTNER, name="bench", rate=1_000_000.0)
    return secret


def _delivered(dsn: str, schema: str) -> int:
    import psycopg

    with psycopg.connect(dsn, autocommit=True) as conn:
        row = conn.execute(
            f'SELECT count(*) FROM "{schema}".message_log WHERE event = %s', ("delivered",)
        ).fetchone()
        return int(row[0]) if row else 0


async def _sends(base: str, key: str, count: int, clients: int) -> dict[str, Any]:
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    next_i = 0
    t_first = t_last = 0.0
    headers = {"X-API-Key": key}

    async def client() -> None:
        nonlocal next_i, t_first, t_last
        async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60.0) as c:
            while next_i < count:
                i = next_i
                next_i += 1
                body = {"to": TO.format(i % 1000), "from": "Catalyst", "message": f"{e2e.TEXT} {i}",
                        "delivery_report": True}  # fmt: skip
                t0 = time.perf_counter()
                t_first = t_first or t0
                r = await c.post("/api/v4/sms/send", json=body)
                t1 = time.perf_counter()
                t_last = t1
                statuses[r.status_code] = statuses.get(r.status_code, 0) + 1
                latencies.append((t1 - t0) * 1000)

    async with trio.open_nursery() as n:
        for _ in range(clients):
            n.start_soon(client)
    latencies.sort()
    return {
        "statuses": statuses,
        "seconds": t_last - t_first,
        "t_first": t_first,
        "p50_ms": statistics.median(latencies) if latencies else float("nan"),
        "p99_ms": latencies[int(len(latencies) * 0.99) - 1] if latencies else float("nan"),
    }


_WRK_LUA = """
local i = 0
local to, text = os.getenv("TO"), os.getenv("TEXT")
wrk.method = "POST"
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("KEY")
request = function()
  i = i + 1
  local body = string.format(
    '{"to":"%s%03d","from":"Catalyst","message":"%s %d","delivery_report":true}', to, i % 1000, text, i)
  return wrk.format(nil, "/api/v4/sms/send", nil, body)
end
done = function(summary, latency, requests)
  io.write(string.format('RESULT {"requests":%d,"non2xx":%d,"seconds":%f,"p50_ms":%f,"p99_ms":%f}\\n',
    summary.requests, summary.errors.status, summary.duration / 1e6,
    latency:percentile(50) / 1000, latency:percentile(99) / 1000))
end
"""


def _wrk_sends(base: str, key: str, seconds: float, clients: int, tmp: Path) -> dict[str, Any]:
    """Sends by wrk for ``seconds`` (wrk runs for a time, not a count), each with its own text."""
    script = tmp / "send.lua"
    script.write_text(_WRK_LUA)
    env = {**os.environ, "KEY": key, "TO": TO.split("{")[0], "TEXT": e2e.TEXT}
    t_first = time.perf_counter()
    out = subprocess.run(
        ["wrk", "-t1", f"-c{clients}", f"-d{seconds:g}s", "--timeout", "30s", "-s", str(script), base],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    result = json.loads(next(ln for ln in out.splitlines() if ln.startswith("RESULT "))[7:])
    ok, bad = result["requests"] - result["non2xx"], result["non2xx"]
    return {
        "statuses": {202: ok, **({"other": bad} if bad else {})},
        "seconds": result["seconds"],
        "t_first": t_first,
        "p50_ms": result["p50_ms"],
        "p99_ms": result["p99_ms"],
    }


async def _bulk(base: str, key: str, n: int) -> dict[str, Any]:
    body = {"from": "Catalyst", "delivery_report": False,
            "messages": [{"to": TO.format(i % 1000), "message": f"bulk {i}"} for i in range(n)]}  # fmt: skip
    async with httpx.AsyncClient(base_url=base, headers={"X-API-Key": key}, timeout=120.0) as c:
        t0 = time.perf_counter()
        r = await c.post("/api/v4/sms/bulk", json=body)
        seconds = time.perf_counter() - t0
    data = r.json() if r.headers.get("content-type", "").startswith("application/json") else {}
    return {"status": r.status_code, "seconds": seconds, "accepted": data.get("accepted"), "total": n}


def _spy(pid: int, tmp: Path) -> subprocess.Popen[Any]:
    """py-spy of the gateway (``--profile``), from now to :func:`_spy_stop`."""
    spy = subprocess.Popen(
        [str(Path(sys.executable).with_name("py-spy")), "record", "--pid", str(pid),
         "--format", "raw", "--threads", "--rate", "100", "-o", str(tmp / "spy.txt")],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    time.sleep(1.0)
    return spy


def _spy_stop(spy: subprocess.Popen[Any], tmp: Path) -> str:
    spy.send_signal(2)
    spy.wait(30)
    return str(e2e._summarise_py_spy(tmp / "spy.txt", 40))


def run(args: argparse.Namespace, gateway_src: str | None = None) -> dict[str, Any]:
    base_args = e2e.parse_args(["--count", str(args.count)])
    base_args.nats, base_args.dsn = args.nats, args.dsn
    cmd = catalyst_command()
    tag = f"{os.getpid()}{int(time.time()) % 100000}"
    namespace, schema = f"http{tag}", f"bench_http_{tag}"
    procs: list[subprocess.Popen[Any]] = []
    out: dict[str, Any] = {"count": args.count, "clients": args.clients, "client": args.client}
    with tempfile.TemporaryDirectory(prefix="bench-http-") as tmpdir:
        tmp = Path(tmpdir)
        sim = subprocess.Popen(
            [*cmd, "smsc-sim", "--host", e2e.HOST, "--port", "0", "--port-file", str(tmp / "sim.port"),
             "--window", "512", "--stats-interval", "0"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )  # fmt: skip
        procs.append(sim)
        try:
            sim_port = wait_for_port_file(tmp / "sim.port", sim)
            e2e._setup_database(args.dsn, schema, sim_port, base_args)
            key = _create_key(args.dsn, schema)
            port, mport, http_port = e2e._free_port(), e2e._free_port(), e2e._free_port()
            cfg = tmp / "gw.toml"
            e2e._write_config(
                cfg,
                base_args,
                namespace=namespace,
                schema=schema,
                port=port,
                metrics_port=mport,
                node="http-1",
                state_dir=tmp / "state",
            )
            with cfg.open("a") as f:
                f.write(f'\n[http]\nhost = "{e2e.HOST}"\nport = {http_port}\nrate = 1000000\n')
            log = open(tmp / "gw.log", "w")
            gw_cmd, env = [*cmd, "run", "--config", str(cfg)], None
            if gateway_src:  # another source tree for the gateway only (before/after comparisons)
                env = {**os.environ, "PYTHONPATH": str(Path(gateway_src).resolve())}
                gw_cmd = [sys.executable, "-c", "from catalyst_smpp.cli import main; main()", *gw_cmd[1:]]
            gw = subprocess.Popen(gw_cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
            procs.append(gw)
            e2e._wait_gateway(gw, mport)
            base = f"http://{e2e.HOST}:{http_port}"
            gw_proc = psutil.Process(gw.pid)
            spy = _spy(gw.pid, tmp) if args.profile == "sends" else None
            cpu0 = sum(gw_proc.cpu_times()[:2])
            if args.client == "wrk":
                sends = _wrk_sends(base, key, args.seconds, args.clients, tmp)
            else:
                sends = trio.run(_sends, base, key, args.count, args.clients)
            if spy is not None:
                out["profile"] = _spy_stop(spy, tmp)
            accepted = sends["statuses"].get(202, 0)
            cpu1 = sum(gw_proc.cpu_times()[:2])
            deadline = time.monotonic() + 120
            while _delivered(args.dsn, schema) < accepted and time.monotonic() < deadline:
                time.sleep(0.1)
            e2e_seconds = time.perf_counter() - sends["t_first"]
            out["http"] = {
                **{k: v for k, v in sends.items() if k != "t_first"},
                "sends_per_s": accepted / sends["seconds"] if sends["seconds"] else float("nan"),
                "e2e_msgs_per_s": _delivered(args.dsn, schema) / e2e_seconds,
                "gateway_cpu_us_per_msg": (cpu1 - cpu0) / max(accepted, 1) * 1e6,
            }
            spy = _spy(gw.pid, tmp) if args.profile == "bulk" else None
            cpu0 = sum(gw_proc.cpu_times()[:2])
            out["bulk"] = trio.run(_bulk, base, key, args.bulk) if args.bulk else None
            if out["bulk"]:
                out["bulk"]["gateway_cpu_s"] = sum(gw_proc.cpu_times()[:2]) - cpu0
            if spy is not None:
                out["profile"] = _spy_stop(spy, tmp)
            if not args.no_smpp:
                load = subprocess.run(
                    [*cmd, "load", "--host", e2e.HOST, "--port", str(port), "--system-id", e2e.PARTNER,
                     "--password", e2e.PASSWORD, "--binds", "2", "--window", "256",
                     "--count", str(args.count), "--text", e2e.TEXT, "--source", e2e.SOURCE,
                     "--dest", e2e.DEST, "--registered-delivery", "1", "--receipt-timeout", "60", "--json"],
                    capture_output=True, text=True, check=False,
                )  # fmt: skip
                report = json.loads(load.stdout) if load.returncode == 0 else {}
                out["smpp"] = {"submit_per_s": report.get("throughput"), "accepted": report.get("accepted"),
                               "receipts": report.get("receipts")}  # fmt: skip
        finally:
            for p in procs:
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(20)
                except subprocess.TimeoutExpired:
                    p.kill()
            try:
                e2e._nats_cleanup(args.nats, namespace)
                e2e._drop_schema(args.dsn, schema)
            except Exception as exc:
                print(f"warning: cleanup failed: {exc}", file=sys.stderr)
    return out


def _line(name: str, r: dict[str, Any], args: argparse.Namespace) -> str:
    h = r["http"]
    sends = f"{args.seconds:g} s of sends" if r["client"] == "wrk" else f"{args.count} sends"
    text = (f"{name}HTTP ({r['client']}): {sends} from {args.clients} keep-alive clients: "
            f"{h['sends_per_s']:.0f} sends/s, 202 p50 {h['p50_ms']:.1f} ms p99 {h['p99_ms']:.1f} ms; "
            f"end to end (receipt back) {h['e2e_msgs_per_s']:.0f} msgs/s; "
            f"gateway CPU {h['gateway_cpu_us_per_msg']:.0f} µs/msg; answers {h['statuses']}")  # fmt: skip
    if r.get("bulk"):
        b = r["bulk"]
        text += (f"\n{name}bulk of {b['total']}: HTTP {b['status']} in {b['seconds']:.2f} s, "
                 f"{b['accepted']} accepted; gateway CPU meanwhile {b['gateway_cpu_s']:.2f} s")  # fmt: skip
    if r.get("smpp"):
        s = r["smpp"]
        rate = s["submit_per_s"]
        what = f"{rate:.0f} submit_sm/s" if rate else "the load failed"
        text += (
            f"\n{name}SMPP beside it ({args.count}, 2 binds x window 256): {what}, receipts {s['receipts']}"
        )
    return text


_FIGURES = (("http", "sends_per_s"), ("http", "p50_ms"), ("http", "p99_ms"), ("http", "e2e_msgs_per_s"),
            ("http", "gateway_cpu_us_per_msg"), ("bulk", "seconds"))  # fmt: skip


def _medians(runs: list[dict[str, Any]]) -> dict[str, float]:
    return {
        f"{part}.{name}": statistics.median(r[part][name] for r in runs)
        for part, name in _FIGURES
        if all(r.get(part) for r in runs)
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--count", type=int, default=20000, help="httpx sends (and SMPP submits after them)")
    p.add_argument("--clients", type=int, default=50, help="concurrent HTTP clients, one connection each")
    p.add_argument("--bulk", type=int, default=10000, help="messages in the one bulk request (0: none)")
    p.add_argument("--no-smpp", action="store_true", help="skip the SMPP load beside it")
    p.add_argument("--seconds", type=float, default=10.0, help="with wrk: seconds of sends (not a count)")
    p.add_argument("--client", choices=["wrk", "httpx"], default=None, help="default: wrk when installed")
    p.add_argument("--gateway-src", metavar="DIR", help="run the gateway from this source tree (PYTHONPATH)")
    p.add_argument("--baseline", metavar="DIR", help="a source tree to compare with, run alternately")
    p.add_argument("--pairs", type=int, default=3, help="with --baseline: runs of each")
    p.add_argument("--nats", default=os.environ.get("CATALYST_BENCH_NATS", "nats://127.0.0.1:4222"))
    p.add_argument("--dsn", default=os.environ.get("CATALYST_BENCH_DSN", "host=127.0.0.1 dbname=test"))
    p.add_argument("--profile", choices=["sends", "bulk"], help="py-spy the gateway while they run")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    args.client = args.client or ("wrk" if shutil.which("wrk") else "httpx")
    if args.baseline:
        trees = {"this tree": args.gateway_src, "baseline": args.baseline}
        runs: dict[str, list[dict[str, Any]]] = {name: [] for name in trees}
        for _pair in range(args.pairs):
            for name, src in trees.items():
                r = run(args, src)
                r.pop("profile", None)
                runs[name].append(r)
                if not args.json:
                    print(_line(f"[{name}] ", r, args), flush=True)
        medians = {name: _medians(rs) for name, rs in runs.items()}
        if args.json:
            print(json.dumps({"client": args.client, "medians": medians, "runs": runs}, indent=2))
            return 0
        print(f"medians of {args.pairs} alternated runs (client {args.client}):")
        for key in medians["this tree"]:
            a, b = medians["this tree"][key], medians["baseline"].get(key, float("nan"))
            print(f"  {key:>32}: this tree {a:10.2f}  baseline {b:10.2f}  ({(a / b - 1) * 100:+.0f} %)")
        return 0
    r = run(args, args.gateway_src)
    if r.get("profile"):
        print(r.pop("profile"))
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    print(_line("", r, args))
    return 0


if __name__ == "__main__":
    sys.exit(main())
