"""``catalyst-smpp invoice`` and ``catalyst-smpp usage`` against a real Postgres (this module's schema)."""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import psycopg
import pytest
from click.testing import CliRunner, Result

from catalyst_smpp.billing import books
from catalyst_smpp.billing.node import write_log_and_books
from catalyst_smpp.cli import main
from catalyst_smpp.gateway.events import event_row
from catalyst_smpp.store import connect_sync
from tests.services import unique_name

_CLEAN_ENV = {"CATALYST_SMPP_DSN": None, "CATALYST_SMPP_CONFIG": None, "CATALYST_SMPP_SCHEMA": None}


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    def run(*args: str) -> Result:
        argv = [*args, "--dsn", pg_dsn, "--schema", pg_schema]
        return CliRunner().invoke(main, argv, env=_CLEAN_ENV, catch_exceptions=False)

    assert run("migrate").exit_code == 0
    return run


@pytest.fixture(scope="module")
def conn(cli: Any, pg_dsn: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    with connect_sync(pg_dsn, schema=pg_schema) as c:
        yield c


def ok(r: Result) -> Any:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


@pytest.fixture
def billed(cli: Any, conn: psycopg.Connection[Any]) -> tuple[str, str, dt.datetime]:
    """A partner with an account, a top-up and three captured messages this month: (name, month, when)."""
    name = unique_name("i")[:12]
    assert cli("partner", "add", name, "--password", "pw").exit_code == 0
    ok(cli("balance", "open", name, "--currency", "EUR", "--json"))
    entry = ok(cli("balance", "top-up", name, "3", "--reason", "wire 9", "--actor", "alice", "--json"))
    at = dt.datetime.fromisoformat(entry["at"]) + dt.timedelta(seconds=1)
    sent = (("447700900001", "op-a"), ("447700900002", "op-a"), ("4915112345", "op-b"))
    for i, (dest, op) in enumerate(sent):
        mid = f"{name}-{i}"
        cdr = {"price": 4500, "currency": "EUR", "cost": 3000, "cost_currency": "EUR"}
        common = {"partner": name, "operator": op, "dest_addr": dest, **cdr}
        with conn.transaction():
            write_log_and_books(
                conn,
                [
                    event_row(mid, "accepted", at=at.timestamp(), charge_state="held", **common),
                    event_row(mid, "submitted", at=at.timestamp(), charge_state="captured", **common),
                ],
            )
    return name, f"{at.year:04d}-{at.month:02d}", at


def test_invoice_json(cli: Any, billed: tuple[str, str, dt.datetime]) -> None:
    name, month, _at = billed
    d = ok(cli("invoice", name, "--month", month, "--format", "json"))
    assert (d["partner"], d["month"], d["currency"], d["reconciles"]) == (name, month, "EUR", True)
    assert (d["opening_balance"], d["charges"], d["closing_balance"]) == ("0.000000", "0.013500", "2.986500")
    assert [(li["country"], li["operator"], li["messages"], li["amount"]) for li in d["lines"]] == [
        ("44", "op-a", 2, "0.009000"),
        ("49", "op-b", 1, "0.004500"),
    ]
    assert d["topups"][0]["actor"] == "alice" and d["topups"][0]["reason"] == "wire 9"


def test_invoice_csv_to_file_and_text(cli: Any, billed: tuple[str, str, dt.datetime], tmp_path: Path) -> None:
    name, month, _at = billed
    out = tmp_path / "inv.csv"
    r = cli("invoice", name, "--month", month, "--format", "csv", "--output", str(out))
    assert r.exit_code == 0 and r.stdout == ""
    rows = list(csv.DictReader(io.StringIO(out.read_text())))
    kinds = ["line", "line", "topup", "charges", "opening", "topups", "adjustments", "closing"]
    assert [r["row"] for r in rows] == kinds
    assert Decimal(rows[3]["amount"]) == Decimal("0.0135") and rows[3]["messages"] == "3"
    text = cli("invoice", name, "--month", month)
    assert text.exit_code == 0 and "reconciles: yes" in text.stdout and "op-b" in text.stdout


def test_usage_json(cli: Any, billed: tuple[str, str, dt.datetime]) -> None:
    name, _month, at = billed
    since = (at - dt.timedelta(hours=1)).isoformat()
    until = (at + dt.timedelta(hours=1)).isoformat()
    d = ok(cli("usage", name, "--since", since, "--until", until, "--json"))
    assert d["totals"]["accepted"] == 3 and d["totals"]["submitted"] == 3
    assert (d["totals"]["charged"], d["totals"]["cost"], d["totals"]["margin"]) == (
        "0.013500",
        "0.009000",
        "0.004500",
    )
    assert {(r["country"], r["operator"]) for r in d["rows"]} == {("44", "op-a"), ("49", "op-b")}
    text = cli("usage", name, "--since", since, "--until", until)
    assert text.exit_code == 0 and "MARGIN" in text.stdout


def test_errors(cli: Any) -> None:
    r = cli("invoice", "nobody-x", "--month", "2026-01")
    assert r.exit_code == 1 and "unknown partner 'nobody-x'" in r.stderr
    r = cli("invoice", "nobody-x", "--month", "2026-13")
    assert r.exit_code == 2 and "is not a month" in r.stderr
    name = unique_name("n")[:12]
    assert cli("partner", "add", name, "--password", "pw").exit_code == 0
    r = cli("invoice", name, "--month", "2026-01", "--format", "json")
    assert r.exit_code == 1 and "no billing account" in r.stderr
    r = cli("usage", name, "--since", "2026-01-02", "--until", "2026-01-01")
    assert r.exit_code == 2


def test_invoice_that_does_not_reconcile_exits_1(
    cli: Any, conn: psycopg.Connection[Any], billed: tuple[str, str, dt.datetime]
) -> None:
    name, month, at = billed
    pid = conn.execute("SELECT id FROM partners WHERE system_id = %s", (name,)).fetchone()
    assert pid is not None
    books.apply_credit(  # a capture with no message-log row
        conn,
        [books.CreditEntry(f"{name}-x", pid[0], k, 1000, "EUR", None, at) for k in ("hold", "capture")],
    )
    r = cli("invoice", name, "--month", month, "--format", "json")
    assert r.exit_code == 1 and "does not reconcile" in r.stderr
    d = json.loads(r.stdout)
    assert d["reconciles"] is False and (d["charges"], d["lines_total"]) == ("0.014500", "0.013500")
