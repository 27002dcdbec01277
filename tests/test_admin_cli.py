"""The administration commands (migrate, partner, operator, route, mo-route) against a real Postgres.

Every test works in this module's fresh schema (``pg_schema``); partner/operator names are unique per test.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
from click.testing import CliRunner, Result

from catalyst_smpp.cli import main
from catalyst_smpp.store import Database, OperatorRepo, PartnerRepo, connect_sync, open_config_watcher
from tests.services import unique_name

# never pick up a DSN/config from the environment of whoever runs the tests
_CLEAN_ENV = {
    "CATALYST_SMPP_DSN": None,
    "CATALYST_SMPP_CONFIG": None,
    "CATALYST_SMPP_SCHEMA": None,
}


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    """cli("partner", "add", ...) → click Result, with --dsn/--schema of this module's schema."""

    def run(*args: str, input: str | None = None, db: bool = True) -> Result:
        argv = list(args) + (["--dsn", pg_dsn, "--schema", pg_schema] if db else [])
        return CliRunner().invoke(main, argv, input=input, env=_CLEAN_ENV, catch_exceptions=False)

    r = run("migrate")
    assert r.exit_code == 0, r.output
    return run


def _name(prefix: str) -> str:
    return unique_name(prefix)[:12]


def test_migrate_reports_applied_and_available_versions(cli: Any) -> None:
    r = cli("migrate")
    assert r.exit_code == 0, r.output
    assert "applied now: nothing (up to date)" in r.stdout
    assert "0001" in r.stdout and "initial" in r.stdout
    assert "pending" not in r.stdout


def test_migrate_into_a_new_schema_applies_everything(pg_dsn: str) -> None:
    schema = unique_name("test_mig_")
    try:
        r = CliRunner().invoke(main, ["migrate", "--dsn", pg_dsn, "--schema", schema], env=_CLEAN_ENV)
        assert r.exit_code == 0, r.output
        assert "applied now: 0001, 0002" in r.stdout
    finally:
        with connect_sync(pg_dsn) as c:
            c.execute(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE')


def test_partner_lifecycle(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    name = _name("p")
    r = cli(
        "partner", "add", name, "--password", "s3cret", "--allowed-ips", "10.1.0.0/16, 192.0.2.7",
        "--max-binds", "2", "--throttle-rate", "50", "--throttle-burst", "20", "--window", "7",
        "--message-id-format", "dec", "--data-coding-0", "latin1", "--receipt-date-digits", "12",
        "--description", "Acme Ltd",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert f"partner '{name}' added" in r.stdout

    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        p = PartnerRepo(conn).get(name)
    assert p is not None
    assert p.check_password("s3cret") and not p.check_password("wrong")
    assert [str(n) for n in p.allowed_ips] == ["10.1.0.0/16", "192.0.2.7/32"]
    assert (p.max_binds, p.throttle_rate, p.throttle_burst, p.window) == (2, 50.0, 20, 7)
    assert (p.message_id_format, p.data_coding_0, p.receipt_date_digits) == ("dec", "latin1", 12)
    assert p.description == "Acme Ltd" and p.enabled

    r = cli("partner", "list")
    assert r.exit_code == 0, r.output
    lines = r.stdout.splitlines()
    header = lines[0]
    assert header.split()[:3] == ["SYSTEM_ID", "ENABLED", "MAX_BINDS"]
    row = next(line for line in lines if line.startswith(name + " "))
    # aligned: every column starts where its header starts
    assert row.index("yes") == header.index("ENABLED")
    assert row.index("50/20") == header.index("RATE/BURST")
    for text in (r.stdout, cli("partner", "show", name).stdout, cli("partner", "list", "--json").stdout):
        assert "s3cret" not in text and p.password_hash not in text and "scrypt" not in text

    data = json.loads(cli("partner", "show", name, "--json").stdout)
    assert data["system_id"] == name and data["window"] == 7 and "password_hash" not in data

    r = cli("partner", "change", name, "--window", "9", "--password", "n3w", "--allowed-ips", "")
    assert r.exit_code == 0, r.output
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        p = PartnerRepo(conn).get(name)
    assert p is not None and p.window == 9 and p.allowed_ips == () and p.check_password("n3w")
    assert p.max_binds == 2  # untouched

    assert cli("partner", "disable", name).exit_code == 0
    listed = json.loads(cli("partner", "list", "--json").stdout)
    assert [x["enabled"] for x in listed if x["system_id"] == name] == [False]
    enabled_only = json.loads(cli("partner", "list", "--enabled-only", "--json").stdout)
    assert name not in [x["system_id"] for x in enabled_only]
    assert cli("partner", "enable", name).exit_code == 0

    r = cli("partner", "delete", name)
    assert r.exit_code == 0 and f"partner '{name}' deleted" in r.stdout
    r = cli("partner", "show", name)
    assert r.exit_code == 1 and f"unknown partner '{name}'" in r.stderr


def test_partner_add_prompts_for_the_password_without_echo(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    name = _name("p")
    r = cli("partner", "add", name, input="pw1234\npw1234\n")
    assert r.exit_code == 0, r.output
    assert "Password" in r.output and "pw1234" not in r.output
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        p = PartnerRepo(conn).get(name)
    assert p is not None and p.check_password("pw1234")


def test_partner_change_password_prompt_when_given_without_value(
    cli: Any, pg_dsn: str, pg_schema: str
) -> None:
    name = _name("p")
    assert cli("partner", "add", name, "--password", "old").exit_code == 0
    r = cli("partner", "change", name, "--password", input="fresh\nfresh\n")
    assert r.exit_code == 0, r.output
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        p = PartnerRepo(conn).get(name)
    assert p is not None and p.check_password("fresh")


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["partner", "change", "nobody-here", "--window", "3"], 1, "unknown partner 'nobody-here'"),
        (["partner", "disable", "nobody-here"], 1, "unknown partner 'nobody-here'"),
        (["partner", "delete", "nobody-here"], 1, "unknown partner 'nobody-here'"),
        (["operator", "show", "nobody-here"], 1, "unknown operator 'nobody-here'"),
        (["route", "change", "999999", "--priority", "1"], 1, "unknown route 999999"),
        (["route", "add", "--partner", "nobody-here", "--operator", "x"], 1, "unknown partner 'nobody-here'"),
        (["partner", "add", "x", "--password", "123456789"], 2, "at most 8 characters"),
        (["partner", "add", "a-very-long-system-id", "--password", "x"], 2, "at most 15 characters"),
        (["partner", "add", "x", "--password", "x", "--allowed-ips", "10.0.0.300"], 2, "not an IP"),
        (["route", "add", "--dest-prefix", "44x", "--operator", "a"], 2, "digits only"),
        (["route", "add", "--dest-prefix", "44"], 2, "at least one --operator"),
    ],
)
def test_errors_are_clear(cli: Any, args: list[str], code: int, message: str) -> None:
    r = cli(*args)
    assert r.exit_code == code, r.output
    assert message in r.output


def test_duplicate_partner_is_refused_by_name(cli: Any) -> None:
    name = _name("p")
    assert cli("partner", "add", name, "--password", "x").exit_code == 0
    r = cli("partner", "add", name, "--password", "y")
    assert r.exit_code == 1
    assert f"partner '{name}' already exists" in r.stderr


def test_operator_route_and_mo_route_lifecycle(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    op1, op2, partner = _name("o"), _name("o"), _name("p")
    r = cli(
        "operator", "add", op1, "--host", "smsc1.example.net", "--port", "2775", "--system-id", "gw",
        "--password", "opsecret", "--bind-type", "tx_rx", "--bind-count", "2", "--window", "20",
        "--tps", "250",
        "--data-coding-0", "latin1", "--segmentation", "sar", "--submit-id-format", "hex",
        "--receipt-id-format", "dec", "--tls", "--description", "primary",
    )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert cli("operator", "add", op2, "--host", "h2", "--port", "2776", "--system-id", "gw").exit_code == 0
    assert cli("partner", "add", partner, "--password", "x").exit_code == 0
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        o = OperatorRepo(conn).get(op1)
    assert o is not None
    assert (o.bind_type, o.bind_count, o.window, o.tps, o.tls) == ("tx_rx", 2, 20, 250.0, True)
    assert (o.data_coding_0, o.segmentation, o.submit_id_format, o.receipt_id_format) == (
        "latin1",
        "sar",
        "hex",
        "dec",
    )
    for text in (cli("operator", "list").stdout, cli("operator", "show", op1).stdout):
        assert "opsecret" not in text
    assert json.loads(cli("operator", "show", op1, "--json").stdout)["password"] == "(set)"

    r = cli("operator", "change", op1, "--tps", "300", "--no-tls")
    assert r.exit_code == 0, r.output
    shown = json.loads(cli("operator", "show", op1, "--json").stdout)
    assert shown["tps"] == 300.0 and shown["tls"] is False and shown["window"] == 20

    r = cli("route", "add", "--partner", partner, "--dest-prefix", "4477", "--operator", f"{op1},{op2}",
            "--source-prefix", "44", "--priority", "5", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    route = json.loads(r.stdout)
    assert route["partner"] == partner and [t["operator"] for t in route["targets"]] == [op1, op2]
    rid = str(route["id"])

    r = cli("route", "change", rid, "--operator", f"{op2}:3", "--operator", f"{op1}:1",
            "--strategy", "weighted", "--partner", "any", "--source-prefix", "")  # fmt: skip
    assert r.exit_code == 0, r.output
    changed = json.loads(cli("route", "show", rid, "--json").stdout)
    assert changed["partner"] is None and changed["strategy"] == "weighted"
    assert changed["source_prefix"] is None and changed["priority"] == 5
    assert [(t["operator"], t["weight"]) for t in changed["targets"]] == [(op2, 3), (op1, 1)]
    listed = cli("route", "list")
    row = next(line for line in listed.stdout.splitlines() if line.split()[0] == rid)
    assert f"{op2}:3, {op1}:1" in row and " any " in row

    # an operator in use cannot be deleted
    r = cli("operator", "delete", op1)
    assert r.exit_code == 1 and f"operator '{op1}'" in r.stderr and "referenced" in r.stderr

    r = cli("mo-route", "add", "--dest-prefix", "12345", "--partner", partner, "--priority", "2", "--json")
    assert r.exit_code == 0, r.output
    mo = json.loads(r.stdout)
    assert (mo["dest_prefix"], mo["partner"], mo["priority"]) == ("12345", partner, 2)
    mid = str(mo["id"])
    assert cli("mo-route", "change", mid, "--source-prefix", "447").exit_code == 0
    assert cli("mo-route", "disable", mid).exit_code == 0
    mos = json.loads(cli("mo-route", "list", "--partner", partner, "--json").stdout)
    assert [(m["id"], m["source_prefix"], m["enabled"]) for m in mos] == [(int(mid), "447", False)]
    assert cli("mo-route", "delete", mid).exit_code == 0
    assert cli("mo-route", "show", mid).exit_code == 1

    assert cli("route", "delete", rid).exit_code == 0
    assert cli("operator", "delete", op1).exit_code == 0
    assert cli("operator", "show", op1).exit_code == 1


def test_operator_temporary_statuses(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    name = _name("o")
    r = cli("operator", "add", name, "--host", "h", "--port", "2775", "--system-id", "gw",
            "--temporary-statuses", "0x4C1, 0x401,0x401", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["temporary_statuses"] == [0x401, 0x4C1]  # JSON: integers, sorted, once
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        o = OperatorRepo(conn).get(name)
    assert o is not None and o.temporary_statuses == (0x401, 0x4C1)
    # text output: hex, as the SMSC's documents write them
    shown = cli("operator", "show", name).stdout
    assert any(ln.split() == ["temporary_statuses", "0x401,0x4C1"] for ln in shown.splitlines()), shown
    listed = cli("operator", "list").stdout.splitlines()
    assert "TEMPORARY" in listed[0]
    assert "0x401,0x4C1" in next(ln for ln in listed if ln.split()[0] == name)
    # change replaces the list; other changes keep it; '' clears it
    assert cli("operator", "change", name, "--temporary-statuses", "0x58,0x4FF").exit_code == 0
    assert cli("operator", "change", name, "--window", "5").exit_code == 0
    shown_json = json.loads(cli("operator", "show", name, "--json").stdout)
    assert shown_json["temporary_statuses"] == [0x58, 0x4FF] and shown_json["window"] == 5
    assert cli("operator", "change", name, "--temporary-statuses", "").exit_code == 0
    assert json.loads(cli("operator", "show", name, "--json").stdout)["temporary_statuses"] == []
    shown = cli("operator", "show", name).stdout
    assert any(ln.split() == ["temporary_statuses", "-"] for ln in shown.splitlines()), shown
    # refused clearly (usage error, nothing changed)
    for bad, problem in (
        ("401", "'401' is not a command_status in hex (write it with 0x, such as 0x401)"),
        ("0x0", "'0x0' is ESME_ROK"),
        ("0x401,nope", "'nope' is not a command_status in hex"),
    ):
        r = cli("operator", "change", name, "--temporary-statuses", bad)
        assert r.exit_code == 2 and problem in r.output, r.output
    assert json.loads(cli("operator", "show", name, "--json").stdout)["temporary_statuses"] == []
    assert cli("operator", "delete", name).exit_code == 0


def test_operator_receipt_and_tls_settings(cli: Any) -> None:
    name = _name("o")
    r = cli("operator", "add", name, "--host", "10.0.0.1", "--port", "2775", "--system-id", "gw", "--tls",
            "--tls-ca-file", "/etc/catalyst-smpp/op-ca.pem", "--tls-server-name", "smsc.example",
            "--receipt-parts", "last", "--json")  # fmt: skip
    assert r.exit_code == 0, r.output
    got = json.loads(r.stdout)
    assert (got["tls_ca_file"], got["tls_server_name"]) == ("/etc/catalyst-smpp/op-ca.pem", "smsc.example")
    assert (got["receipt_parts"], got["receipt_request"]) == ("last", "final")
    shown = cli("operator", "show", name).stdout.splitlines()
    assert ["receipt_parts", "last"] in [ln.split() for ln in shown]
    assert (
        cli("operator", "change", name, "--receipt-request", "as_partner", "--tls-ca-file", "").exit_code == 0
    )
    got = json.loads(cli("operator", "show", name, "--json").stdout)
    assert (got["receipt_request"], got["tls_ca_file"], got["receipt_parts"]) == ("as_partner", "", "last")
    r = cli("operator", "change", name, "--tls-ca-file", "op-ca.pem")  # the gateway's directory is not ours
    assert r.exit_code == 2 and "give an absolute path" in r.output, r.output
    r = cli("operator", "change", name, "--receipt-parts", "first")
    assert r.exit_code == 2 and "'first' is not one of 'all', 'last'" in r.output, r.output
    assert cli("operator", "delete", name).exit_code == 0


def test_operator_receipts_by_text(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    name = _name("o")
    r = cli("operator", "add", name, "--host", "h", "--port", "2775", "--system-id", "gw", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["receipts_by_text"] is False  # off by default
    assert cli("operator", "change", name, "--receipts-by-text").exit_code == 0
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        o = OperatorRepo(conn).get(name)
    assert o is not None and o.receipts_by_text is True
    shown = cli("operator", "show", name).stdout
    assert any(ln.split() == ["receipts_by_text", "yes"] for ln in shown.splitlines()), shown
    assert cli("operator", "change", name, "--window", "5").exit_code == 0  # other changes keep it
    assert json.loads(cli("operator", "show", name, "--json").stdout)["receipts_by_text"] is True
    assert cli("operator", "change", name, "--no-receipts-by-text").exit_code == 0
    assert json.loads(cli("operator", "show", name, "--json").stdout)["receipts_by_text"] is False
    assert "--receipts-by-text" in cli("operator", "add", "--help").stdout
    assert cli("operator", "delete", name).exit_code == 0


def test_config_file_names_the_database(cli: Any, pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    cfg = tmp_path / "gw.toml"
    cfg.write_text(f'[database]\ndsn = "{pg_dsn}"\nschema = "{pg_schema}"\n')
    name = _name("p")
    r = cli("partner", "add", name, "--password", "x", "--config", str(cfg), db=False)
    assert r.exit_code == 0, r.output
    r = cli("partner", "list", "--config", str(cfg), db=False)
    assert r.exit_code == 0 and name in r.stdout


def test_bad_config_file_exits_2_naming_file_key_and_problem(cli: Any, tmp_path: Path) -> None:
    cfg = tmp_path / "bad.toml"
    cfg.write_text('[database]\npool_size = "lots"\n')
    r = cli("partner", "list", "--config", str(cfg), db=False)
    assert r.exit_code == 2
    assert f"{cfg}: database.pool_size: expected an integer, got a string" in r.stderr


def test_no_database_given_is_a_usage_error(cli: Any) -> None:
    r = cli("partner", "list", db=False)
    assert r.exit_code == 2
    assert "--dsn" in r.stderr and "--config" in r.stderr


async def test_a_cli_change_reaches_a_running_watcher(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    """What running gateways rely on: the change made by the CLI wakes the config watcher."""
    name = _name("p")
    async with (
        Database.open(pg_dsn, schema=pg_schema, pool_size=1, migrate=False) as db,
        open_config_watcher(db, poll_interval=3600) as watcher,
    ):
        seen = watcher.version
        r = await trio.to_thread.run_sync(lambda: cli("partner", "add", name, "--password", "x"))
        assert r.exit_code == 0, r.output
        with trio.fail_after(60):  # a hang guard only; the notification normally arrives at once
            new = await watcher.wait_for_change(seen)
        assert new > seen
        snap = await db.snapshot()
        assert name in [p.system_id for p in snap.partners]


def test_identical_routes_are_refused_and_list_shows_the_routers_order(cli: Any) -> None:
    op, partner = _name("o"), _name("p")
    assert cli("operator", "add", op, "--host", "h", "--port", "2775", "--system-id", "gw").exit_code == 0
    assert cli("partner", "add", partner, "--password", "x").exit_code == 0

    def add(*args: str) -> int:
        r = cli("route", "add", "--partner", partner, "--operator", op, *args, "--json")
        assert r.exit_code == 0, r.output
        return int(json.loads(r.stdout)["id"])

    high_short = add("--dest-prefix", "44", "--priority", "9")
    low_long = add("--dest-prefix", "447", "--source-prefix", "12")
    plain_long = add("--dest-prefix", "447")

    r = cli(
        "route",
        "add",
        "--partner",
        partner,
        "--dest-prefix",
        "447",
        "--source-prefix",
        "12",
        "--operator",
        op,
    )
    assert r.exit_code == 1 and r.stdout == ""
    assert r.stderr.splitlines() == [
        f"error: route {low_long} has the same partner, destination prefix, priority and source filter (the "
        f"router could never choose a second one): change or disable route {low_long} first"
    ]
    # a change into a twin is refused too and changes nothing
    r = cli("route", "change", str(plain_long), "--source-prefix", "12")
    assert r.exit_code == 1 and f"route {low_long} has the same" in r.stderr
    assert json.loads(cli("route", "show", str(plain_long), "--json").stdout)["source_prefix"] is None

    # list: longest prefix wins over priority, a source filter over none -- as the router tries them
    listed = cli("route", "list", "--partner", partner)
    assert listed.exit_code == 0, listed.output
    lines = listed.stdout.splitlines()
    assert lines[0].startswith("# in the order they are tried: longest destination prefix first, then higher")
    ids = [int(line.split()[0]) for line in lines[2:]]
    mine = [i for i in ids if i in (high_short, low_long, plain_long)]
    assert mine == [low_long, plain_long, high_short]
    as_json = json.loads(cli("route", "list", "--partner", partner, "--json").stdout)
    assert [r["id"] for r in as_json if r["id"] in mine] == mine

    mo_a = json.loads(cli("mo-route", "add", "--dest-prefix", "5", "--partner", partner, "--priority", "3",
                          "--json").stdout)["id"]  # fmt: skip
    mo_b = json.loads(cli("mo-route", "add", "--dest-prefix", "55", "--partner", partner, "--json").stdout)[
        "id"
    ]
    r = cli("mo-route", "add", "--dest-prefix", "55", "--partner", partner)
    assert r.exit_code == 1 and r.stderr.startswith(f"error: MO route {mo_b} has the same destination prefix")
    mo_listed = cli("mo-route", "list", "--partner", partner).stdout.splitlines()
    assert mo_listed[0].startswith("# in the order they are tried: longest destination prefix first")
    assert [int(line.split()[0]) for line in mo_listed[2:]] == [mo_b, mo_a]
