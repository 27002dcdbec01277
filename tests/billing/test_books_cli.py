"""``catalyst-smpp balance`` against a real Postgres (this module's schema)."""

from __future__ import annotations

import getpass
import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalyst_smpp.cli import main
from tests.services import unique_name

_CLEAN_ENV = {"CATALYST_SMPP_DSN": None, "CATALYST_SMPP_CONFIG": None, "CATALYST_SMPP_SCHEMA": None}


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    def run(*args: str) -> Result:
        argv = [*args, "--dsn", pg_dsn, "--schema", pg_schema]
        return CliRunner().invoke(main, argv, env=_CLEAN_ENV, catch_exceptions=False)

    assert run("migrate").exit_code == 0
    return run


@pytest.fixture
def partner(cli: Any) -> str:
    name = unique_name("c")[:12]
    assert cli("partner", "add", name, "--password", "pw").exit_code == 0
    return name


def ok(r: Result) -> Any:
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_open_top_up_adjust_show_history(cli: Any, partner: str) -> None:
    d = ok(cli("balance", "open", partner, "--currency", "eur", "--low-balance", "2", "--json"))
    assert d == {
        "partner": partner,
        "currency": "EUR",
        "mode": "prepaid",
        "balance": "0.000000",
        "credit_limit": "0.000000",
        "held": "0.000000",
        "leased": "0.000000",
        "available": "0.000000",
        "low_balance": "2.000000",
    }
    d = ok(cli("balance", "top-up", partner, "12.5", "--reason", "wire 7", "--json"))
    assert (d["kind"], d["amount"], d["balance_after"], d["actor"]) == (
        "topup",
        "12.500000",
        "12.500000",
        getpass.getuser(),
    )
    d = ok(cli("balance", "adjust", partner, "-0.0045", "--reason", "goodwill", "--actor", "alice", "--json"))
    assert (d["amount"], d["balance_after"], d["actor"], d["reason"]) == (
        "-0.004500",
        "12.495500",
        "alice",
        "goodwill",
    )
    d = ok(
        cli(
            "balance",
            "set",
            partner,
            "--mode",
            "credit",
            "--credit-limit",
            "100",
            "--low-balance",
            "",
            "--json",
        )
    )
    assert (d["mode"], d["credit_limit"], d["available"], d["low_balance"]) == (
        "credit",
        "100.000000",
        "112.495500",
        None,
    )
    d = ok(cli("balance", "show", partner, "--json"))
    assert d["balance"] == "12.495500"
    text = cli("balance", "show", partner).stdout
    assert "available     112.495500" in text
    rows = ok(cli("balance", "history", partner, "--json"))
    assert [(r["kind"], r["amount"]) for r in rows] == [("topup", "12.500000"), ("adjustment", "-0.004500")]
    assert len(ok(cli("balance", "history", partner, "--limit", "1", "--json"))) == 1
    assert ok(cli("balance", "history", partner, "--since", "2999-01-01", "--json")) == []
    assert "goodwill" in cli("balance", "history", partner).stdout
    assert ok(cli("balance", "verify", "--json")) == {"ok": True, "problems": []}


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["balance", "show", "nobody-here"], 1, "unknown partner 'nobody-here'"),
        (["balance", "show", "{p}"], 1, "has no billing account"),
        (["balance", "top-up", "{p}", "5", "--reason", "x"], 1, "has no billing account"),
        (["balance", "top-up", "{p}", "0.1234567", "--reason", "x"], 2, "more than 6 decimal places"),
        (["balance", "top-up", "{p}", "5"], 2, "--reason"),
        (["balance", "open", "{p}", "--currency", "EURO"], 1, "not a currency code"),
        (["balance", "open", "{p}", "--currency", "EUR", "--credit-limit", "-1"], 1, "must not be negative"),
        (["balance", "history", "{p}", "--since", "yesterday"], 2, "ISO 8601"),
    ],
)
def test_errors(cli: Any, partner: str, args: list[str], code: int, message: str) -> None:
    r = cli(*[a.replace("{p}", partner) for a in args])
    assert r.exit_code == code, r.output
    assert message in r.stderr


def test_refusals_of_an_open_account(cli: Any, partner: str) -> None:
    ok(cli("balance", "open", partner, "--currency", "EUR", "--json"))
    for args, message in [
        (["balance", "open", partner, "--currency", "EUR"], "already has a billing account"),
        (["balance", "adjust", partner, "0", "--reason", "x"], "adjustment of zero"),
        (["balance", "top-up", partner, "-3", "--reason", "x"], "must be positive"),
        (["balance", "top-up", partner, "3", "--reason", " "], "a reason is required"),
    ]:
        r = cli(*args)
        assert r.exit_code == 1 and message in r.stderr, r.output
    assert ok(cli("balance", "show", partner, "--json"))["balance"] == "0.000000"
