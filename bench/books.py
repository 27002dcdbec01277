"""The books: credit entries applied per second (set-based batches) and lease grants per second.

    .venv/bin/python bench/books.py [--dsn "host=127.0.0.1 dbname=test user=postgres"] [--batch 5000]
                                    [--batches 10] [--partners 20] [--grants 2000]

Uses the given DSN (default: 127.0.0.1:5432/test), in a throw-away schema.  Each batch carries, per message
of ``--partners`` partners, a hold and its capture (one in ten released instead), so half the entries are
holds and a batch of N entries appends about 0.45 N ledger charges.  Then ``--grants`` lease grants, one
transaction each, for one partner (the account row lock and the committed sum they pay for).
"""

from __future__ import annotations

import argparse
import datetime as dt
import time
import uuid
from typing import Any

import psycopg

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.store import connect_sync, migrate


def batches(
    partners: list[int], leases: dict[int, int], size: int, count: int
) -> list[list[books.CreditEntry]]:
    out = []
    n = 0
    now = dt.datetime.now(dt.UTC)
    for _ in range(count):
        batch: list[books.CreditEntry] = []
        while len(batch) < size:
            p = partners[n % len(partners)]
            mid = f"b{n:012x}"
            batch.append(books.CreditEntry(mid, p, "hold", 4500, "EUR", leases[p], now))
            kind = "release" if n % 10 == 0 else "capture"
            batch.append(books.CreditEntry(mid, p, kind, 4500, "EUR", leases[p], now))
            n += 1
        out.append(batch)
    return out


def run(conn: psycopg.Connection[Any], args: argparse.Namespace) -> None:
    partners = []
    for i in range(args.partners):
        row = conn.execute(
            "INSERT INTO partners (system_id, password_hash) VALUES (%s, 'x') RETURNING id", (f"bench{i}",)
        ).fetchone()
        assert row is not None
        partners.append(int(row[0]))
        books.open_account(conn, partners[-1], "EUR", "credit", credit_limit=10**9)
        books.topup(conn, partners[-1], Money(10**6, "EUR"), "bench", "bench")
    leases = {}
    for p in partners:
        lease = books.grant_lease(conn, p, "bench", Money(10**5, "EUR"), 3600, 60)
        assert lease is not None
        leases[p] = lease.id

    work = batches(partners, leases, args.batch, args.batches)
    total = 0
    t = time.perf_counter()
    for batch in work:
        stats = books.apply_credit(conn, batch)
        total += len(batch)
        assert stats.duplicates == 0 and stats.orphans == 0, stats
    el = time.perf_counter() - t
    print(
        f"apply_credit: {total:,} entries in {args.batches} batches of {args.batch:,}:"
        f" {total / el:,.0f} entries/s ({el / args.batches * 1000:.0f} ms per batch)"
    )
    t = time.perf_counter()
    stats = books.apply_credit(conn, work[0])
    el = time.perf_counter() - t
    print(
        f"apply_credit, a batch again (all duplicates):"
        f" {len(work[0]) / el:,.0f} entries/s ({stats.duplicates})"
    )

    p = partners[0]
    t = time.perf_counter()
    for _ in range(args.grants):
        lease = books.grant_lease(conn, p, "bench", Money("0.5", "EUR"), 3600, 60)
        assert lease is not None
        books.return_lease(conn, lease.id, Money("0.25", "EUR"))
    el = time.perf_counter() - t
    print(
        f"grant_lease + return_lease: {args.grants / el:,.0f} grants/s ({el / args.grants * 1e6:.0f} µs each)"
    )
    problems = books.verify(conn)
    print(f"verify: {'ok' if not problems else problems[:3]}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 dbname=test user=postgres")
    ap.add_argument("--batch", type=int, default=5000)
    ap.add_argument("--batches", type=int, default=10)
    ap.add_argument("--partners", type=int, default=20)
    ap.add_argument("--grants", type=int, default=2000)
    args = ap.parse_args()
    schema = "bench_" + uuid.uuid4().hex[:8]
    conn = connect_sync(args.dsn, schema=schema)
    try:
        migrate(conn, schema=schema)
        run(conn, args)
    finally:
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.close()


if __name__ == "__main__":
    main()
