"""The plan commands and the partners'/operators' plan options (catalyst_smpp.admin_billing, admin.py)
against a real Postgres, in this module's fresh schema; names are unique per test."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalyst_smpp.billing.plans import CSV_COLUMNS
from catalyst_smpp.cli import main
from catalyst_smpp.store import PartnerRepo, connect_sync
from tests.services import unique_name

_CLEAN_ENV = {"CATALYST_SMPP_DSN": None, "CATALYST_SMPP_CONFIG": None, "CATALYST_SMPP_SCHEMA": None}
HEADER = ",".join(CSV_COLUMNS)
PRICES = f"""{HEADER}
44,44,DEFAULT,,0.03,,2027-01-01T00:00:00+00:00,
447700,44,Vodafone UK,23415,0.025,0.028,2027-01-01T00:00:00+00:00,2027-02-01T00:00:00+00:00
447700,44,Vodafone UK,23415,0.02,,2027-02-01T00:00:00+00:00,
"""


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    def run(*args: str, input: str | None = None) -> Result:
        argv = [*args, "--dsn", pg_dsn, "--schema", pg_schema]
        return CliRunner().invoke(main, argv, input=input, env=_CLEAN_ENV, catch_exceptions=False)

    assert run("migrate").exit_code == 0
    return run


def _name(prefix: str) -> str:
    return unique_name(prefix)[:12]


def _ok(r: Result) -> Result:
    assert r.exit_code == 0, r.output
    return r


def test_plan_lifecycle(cli: Any, tmp_path: Path) -> None:
    name = _name("pl")
    r = _ok(
        cli("plan", "add", name, "--kind", "price", "--currency", "eur", "--description", "retail", "--json")
    )
    assert json.loads(r.stdout)["currency"] == "EUR"
    assert "already exists" in cli("plan", "add", name, "--kind", "price", "--currency", "EUR").output

    src = tmp_path / "prices.csv"
    src.write_text(PRICES)
    r = _ok(cli("plan", "import", name, str(src), "--json"))
    assert json.loads(r.stdout) == {"plan": name, "rows": 3}

    listed = json.loads(_ok(cli("plan", "list", "--json")).stdout)
    assert next(p for p in listed if p["name"] == name)["row_count"] == 3

    shown = json.loads(_ok(cli("plan", "show", name, "--json")).stdout)
    assert [r["submit_price"] for r in shown["rows"]] == ["0.03", "0.025", "0.02"]
    then = json.loads(_ok(cli("plan", "show", name, "--at", "2027-01-15T00:00:00+01:00", "--json")).stdout)
    assert [(r["prefix"], r["submit_price"]) for r in then["rows"]] == [("44", "0.03"), ("447700", "0.025")]
    assert "no UTC offset" in cli("plan", "show", name, "--at", "2027-01-15T00:00:00").output
    text = _ok(cli("plan", "show", name)).stdout
    assert "Vodafone UK" in text and "# rows (all): 3" in text

    exported = _ok(cli("plan", "export", name)).stdout
    assert exported.splitlines()[0] == HEADER and len(exported.splitlines()) == 4
    out = tmp_path / "out.csv"
    _ok(cli("plan", "export", name, str(out)))
    assert out.read_text() == exported
    _ok(cli("plan", "import", name, str(out)))
    assert _ok(cli("plan", "export", name)).stdout == exported

    _ok(cli("plan", "remove", name))
    assert "unknown plan" in cli("plan", "show", name).output


def test_plan_quote(cli: Any) -> None:
    name = _name("pl")
    _ok(cli("plan", "add", name, "--kind", "price", "--currency", "EUR"))
    _ok(cli("plan", "import", name, "-", input=PRICES))

    def quote(*args: str) -> dict[str, Any]:
        return json.loads(_ok(cli("plan", "quote", name, *args, "--json")).stdout)  # type: ignore[no-any-return]

    q = quote("+447700900123", "--at", "2027-01-10T00:00:00Z", "--parts", "3", "--charge-on", "delivery")
    assert (q["price"], q["currency"], q["row"]["prefix"]) == ("0.084", "EUR", "447700")
    # the switch at effective_from: the new row from that instant on
    assert quote("447700900123", "--at", "2027-01-31T23:59:59Z")["price"] == "0.025"
    assert quote("447700900123", "--at", "2027-02-01T00:00:00Z")["price"] == "0.02"
    assert quote("447700900123", "--at", "2027-02-01T00:00:00Z", "--charge-on", "delivery")["price"] == "0.02"
    assert quote("441234", "--at", "2027-03-01T00:00:00Z")["row"]["network"] == "DEFAULT"
    r = cli("plan", "quote", name, "331234", "--at", "2027-03-01T00:00:00Z")
    assert r.exit_code == 3 and "no row" in r.output
    text = _ok(cli("plan", "quote", name, "447700900123", "--at", "2027-01-10T00:00:00Z")).stdout
    assert text.startswith("0.025 EUR")


def test_a_bad_import_names_line_and_column_and_imports_nothing(cli: Any) -> None:
    name = _name("pl")
    _ok(cli("plan", "add", name, "--kind", "cost", "--currency", "EUR"))
    _ok(cli("plan", "import", name, "-", input=PRICES))
    bad = PRICES + "4478,44,,,0.01,,2027-01-01T00:00:00Z,2026-01-01T00:00:00Z\n"
    r = cli("plan", "import", name, "-", input=bad)
    assert r.exit_code == 1 and "line 5, column effective_until" in r.output
    r = CliRunner().invoke(main, ["plan", "import", name, "-"], input=b"x\xff\n", env=_CLEAN_ENV)
    assert r.exit_code != 0
    assert len(json.loads(_ok(cli("plan", "show", name, "--json")).stdout)["rows"]) == 3


def test_partner_and_operator_plan_options(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    retail, costs, sid, op = _name("pr"), _name("pc"), _name("p"), _name("o")
    _ok(cli("plan", "add", retail, "--kind", "price", "--currency", "EUR"))
    _ok(cli("plan", "add", costs, "--kind", "cost", "--currency", "EUR"))
    r = _ok(
        cli("partner", "add", sid, "--password", "pw", "--price-plan", retail, "--charge-on", "delivery",
            "--insufficient-credit-status", "0x58", "--margin-guard", "--json")
    )  # fmt: skip
    d = json.loads(r.stdout)
    assert (d["price_plan"], d["charge_on"], d["insufficient_credit_status"], d["margin_guard"]) == (
        retail, "delivery", 0x58, True
    )  # fmt: skip
    shown = _ok(cli("partner", "show", sid)).stdout
    assert "0x58" in shown
    r = cli("partner", "change", sid, "--insufficient-credit-status", "88")
    assert r.exit_code == 2 and "0x" in r.output  # hex with 0x, like the other status options
    assert "is a cost plan" in cli("partner", "change", sid, "--price-plan", costs).output
    r = cli("plan", "remove", retail)
    assert r.exit_code == 1 and f"assigned to partner(s) {sid}" in r.output
    _ok(cli("partner", "change", sid, "--price-plan", "", "--no-margin-guard", "--insufficient-credit-status",
            "0xFFFFFFFF"))  # fmt: skip
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        p = PartnerRepo(conn).get(sid)
    assert p is not None and (p.price_plan, p.margin_guard, p.insufficient_credit_status) == (
        None,
        False,
        0xFFFFFFFF,
    )

    r = _ok(cli("operator", "add", op, "--host", "h", "--port", "2775", "--system-id", "s",
                "--cost-plan", costs, "--json"))  # fmt: skip
    assert json.loads(r.stdout)["cost_plan"] == costs
    assert "is a price plan" in cli("operator", "change", op, "--cost-plan", retail).output
    assert "assigned to operator(s)" in cli("plan", "remove", costs).output
    assert (
        json.loads(_ok(cli("operator", "change", op, "--cost-plan", "", "--json")).stdout)["cost_plan"]
        is None
    )
    _ok(cli("plan", "remove", costs))

    r = _ok(cli("route", "add", "--partner", sid, "--dest-prefix", "49", "--operator", op,
                "--strategy", "least_cost", "--json"))  # fmt: skip
    assert json.loads(r.stdout)["strategy"] == "least_cost"
