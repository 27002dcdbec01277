"""What billing costs end to end: ``bench/e2e.py`` with billing off and on, alternated in one run.

One command::

    .venv/bin/python bench/billing.py                          # 3 rounds of (off, on), 20,000 messages each
    .venv/bin/python bench/billing.py --rounds 5 --count 30000
    .venv/bin/python bench/billing.py --lease-seconds 0.2 1 5  # billing on at several lease sizes, alternated
    .venv/bin/python bench/billing.py --json

Each run is a whole ``bench/e2e.py`` run (load generator → gateway → simulator → receipts back, message log
and, with billing on, the books: a price plan for the load partner, a hold per message against the node's
credit lease and a capture per message written with the message log).  Billing on checks the books after the
run (every hold captured, balance = top-up - captured).  Off and on alternate so that a machine whose load
changes during the run affects both alike; the medians are compared.

Figures: end-to-end messages/s and gateway CPU per message (the gateway process's CPU over the load divided by
the receipts delivered), as ``bench/e2e.py`` measures them; Postgres CPU per message too, since the books are
written there.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import e2e  # the e2e benchmark beside this file


def _args(base: argparse.Namespace, billing: bool, lease: float) -> argparse.Namespace:
    return argparse.Namespace(**{**vars(base), "billing": billing, "lease_seconds": lease, "op_latency": "0"})


def _figures(row: dict[str, Any]) -> dict[str, float]:
    n = max(row["receipts"], 1)
    cpu = row["cpu"]
    return {
        "msgs_per_s": row["msgs_per_s"],
        "gateway_us": cpu["gateway"] / n * 1e6,
        "postgres_us": cpu.get("postgres", float("nan")) / n * 1e6,
        "resp_p50": row["resp_p50"],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--count", type=int, default=20000)
    p.add_argument(
        "--lease-seconds",
        type=float,
        nargs="+",
        default=[0.0],
        help="billing-on variants: [billing] lease_seconds for each (0: the gateway's default, 5 s)",
    )
    p.add_argument("--gateway-src", help="run the gateway from this source tree (as bench/e2e.py)")
    p.add_argument("--json", action="store_true")
    ours = p.parse_args(argv)
    # every other setting as bench/e2e.py's defaults
    base = e2e.parse_args(
        ["--count", str(ours.count)] + (["--gateway-src", ours.gateway_src] if ours.gateway_src else [])
    )
    variants: list[tuple[str, bool, float]] = [("off", False, 0.0)]
    variants += [(f"on lease {ls or 5:g}s", True, ls) for ls in ours.lease_seconds]
    results: dict[str, list[dict[str, float]]] = {name: [] for name, _b, _l in variants}
    books_ok = True
    for r in range(ours.rounds):
        for name, billing, lease in variants:
            print(f"round {r + 1}/{ours.rounds}: billing {name} ...", file=sys.stderr, flush=True)
            row = e2e.run_e2e(_args(base, billing, lease))
            if row["receipts"] < ours.count or row["rejected"]:
                print(
                    f"  incomplete run: {row['receipts']} receipts, {row['rejected']} rejected",
                    file=sys.stderr,
                )
            if billing:
                b = row.get("books") or {}
                ok = bool(b.get("balance_exact")) and b.get("captures") == b.get("holds") == row["accepted"]
                books_ok = books_ok and ok
                print(f"  books: {b} {'exact' if ok else 'NOT EXACT'}", file=sys.stderr)
            f = _figures(row)
            results[name].append(f)
            print(
                f"  {f['msgs_per_s']:.0f} msgs/s, gateway {f['gateway_us']:.0f} µs/msg, "
                f"postgres {f['postgres_us']:.0f} µs/msg, resp p50 {f['resp_p50']:.1f} ms",
                file=sys.stderr,
            )
    med = {
        name: {k: statistics.median(x[k] for x in rows) for k in rows[0]} for name, rows in results.items()
    }
    off = med["off"]
    if ours.json:
        print(json.dumps({"rounds": results, "median": med, "books_exact": books_ok}, indent=2))
        return 0 if books_ok else 1
    print(f"\nmedians of {ours.rounds} alternated rounds, {ours.count} messages each")
    print(
        f"{'billing':16s} {'msgs/s':>8s} {'vs off':>7s} {'gw µs/msg':>10s} {'vs off':>7s} {'pg µs/msg':>10s}"
    )
    for name, m in med.items():
        print(
            f"{name:16s} {m['msgs_per_s']:8.0f} {m['msgs_per_s'] / off['msgs_per_s'] - 1:+7.1%} "
            f"{m['gateway_us']:10.0f} {m['gateway_us'] / off['gateway_us'] - 1:+7.1%} "
            f"{m['postgres_us']:10.0f}"
        )
    print(f"books exact after every billed run: {'yes' if books_ok else 'NO'}")
    return 0 if books_ok else 1


if __name__ == "__main__":
    sys.exit(main())
