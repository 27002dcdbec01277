"""The event writer's transaction with and without billing: Postgres CPU and writer CPU per message.

    .venv/bin/python bench/books_writer.py [--dsn DSN] [--messages 20000] [--batch 1500] [--rounds 3]

In a throw-away schema, the message-log rows of ``--messages`` messages (``accepted``, ``submitted``,
``delivered`` each, as the gateway's producers make them; the ``submitted`` row a batch behind its
``accepted`` one, the receipt another behind) go through ``billing.node.write_log_and_books`` in batches of
``--batch`` rows, once for a partner that is not billed and once for one charged on submit (a hold and a
capture per message, a ledger charge).  Rounds alternate the two.  Figures per message: the CPU of the
Postgres backend serving the connection (psutil on ``pg_backend_pid()``, so other load on the machine is not
counted) and of this process (building the COPY text and the entries), medians over the rounds.
"""

from __future__ import annotations

import argparse
import statistics
import time
import uuid
from typing import Any

import psutil
import psycopg

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.billing.node import write_log_and_books
from catalyst_smpp.gateway.events import event_row
from catalyst_smpp.store import connect_sync, migrate


def log_rows(partner: str, first: int, n: int, billed: bool, lease: int) -> list[tuple[Any, ...]]:
    """Rows in the order the writer sees them: per message accepted, then (a batch later) submitted and
    delivered."""
    at = time.time()
    lag = 500
    out: list[tuple[Any, ...]] = []

    def cdr(state: str | None) -> dict[str, Any]:
        if not billed:
            return {}
        return {
            "price": 4500,
            "currency": "EUR",
            "cost": 2100,
            "cost_currency": "EUR",
            "lease_id": lease,
            "charge_state": state,
        }

    common = {"partner": partner, "operator": "sim", "source_addr": "CATALYST", "dest_addr": "447700900123"}
    for i in range(n + 2 * lag):
        if i < n:
            out.append(
                event_row(str(first + i), "accepted", at=at, status=0, node="n1", **common, **cdr("held"))
            )
        j = i - lag
        if 0 <= j < n:
            out.append(
                event_row(
                    str(first + j),
                    "submitted",
                    at=at,
                    status=0,
                    node="n1",
                    operator_message_id=f"{j:x}",
                    **common,
                    **cdr("captured"),
                )
            )
        k = i - 2 * lag
        if 0 <= k < n:
            out.append(
                event_row(
                    str(first + k),
                    "delivered",
                    at=at,
                    final_state="DELIVRD",
                    node="n1",
                    operator_message_id=f"{k:x}",
                    **common,
                    **cdr(None),
                )
            )
    return out


def write(conn: psycopg.Connection[Any], rows: list[tuple[Any, ...]], batch: int) -> tuple[float, float]:
    """(backend CPU s, own CPU s) for writing ``rows`` in transactions of ``batch`` rows."""
    pid = conn.execute("SELECT pg_backend_pid()").fetchone()[0]  # type: ignore[index]
    backend = psutil.Process(pid)

    def cpu(p: psutil.Process) -> float:
        t = p.cpu_times()
        return float(t.user + t.system)

    b0, s0 = cpu(backend), time.process_time()
    for k in range(0, len(rows), batch):
        with conn.transaction():
            write_log_and_books(conn, rows[k : k + batch])
    return cpu(backend) - b0, time.process_time() - s0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--dsn", default="host=127.0.0.1 port=5432 dbname=test")
    ap.add_argument("--messages", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1500)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    schema = "bench_" + uuid.uuid4().hex[:8]
    conn = connect_sync(args.dsn, schema=schema)
    try:
        migrate(conn, schema=schema)
        pid = conn.execute(
            "INSERT INTO partners (system_id, password_hash) VALUES ('billed', 'x') RETURNING id"
        ).fetchone()[0]  # type: ignore[index]
        conn.execute("INSERT INTO partners (system_id, password_hash) VALUES ('free', 'x')")
        books.open_account(conn, pid, "EUR")
        books.topup(conn, pid, Money(10**7, "EUR"), "bench", "bench")
        lease = books.grant_lease(conn, pid, "n1", Money(10**6, "EUR"), 3600, 60)
        assert lease is not None
        conn.commit()
        res: dict[str, list[tuple[float, float]]] = {"off": [], "on": []}
        first = 0
        for _r in range(args.rounds):
            for name in ("off", "on"):
                rows = log_rows(
                    "billed" if name == "on" else "free", first, args.messages, name == "on", lease.id
                )
                first += args.messages
                pg, own = write(conn, rows, args.batch)
                res[name].append((pg / args.messages * 1e6, own / args.messages * 1e6))
                print(
                    f"  {name}: postgres {res[name][-1][0]:.1f} µs/msg, writer {res[name][-1][1]:.1f} µs/msg"
                )
        problems = books.verify(conn)
        state = books.account_state(conn, pid)
        print(
            f"\nmedians of {args.rounds} rounds, {args.messages} messages each, batches of {args.batch} rows"
        )
        med = {
            n: (statistics.median(x[0] for x in v), statistics.median(x[1] for x in v))
            for n, v in res.items()
        }
        for n, (pg, own) in med.items():
            print(f"billing {n:3s}: postgres {pg:6.1f} µs/msg  writer {own:6.1f} µs/msg")
        print(
            f"billing adds: postgres {med['on'][0] - med['off'][0]:+.1f} µs/msg, "
            f"writer {med['on'][1] - med['off'][1]:+.1f} µs/msg"
        )
        print(f"verify: {'ok' if not problems else problems[:3]}; balance {state.balance}, held {state.held}")
    finally:
        conn.rollback()
        conn.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')
        conn.commit()
        conn.close()


if __name__ == "__main__":
    main()
