"""``catalyst-smpp webhook`` against a real Postgres (this module's fresh schema), and the webhooks in the
configuration snapshot (loaded with the partners, bumping the config version, saved to and read from the
snapshot file)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalyst_smpp.cli import main
from catalyst_smpp.store import PartnerRepo, config_version, connect_sync, load_snapshot
from catalyst_smpp.store.snapshot_file import load_snapshot_file, save_snapshot_file
from tests.services import unique_name

_CLEAN_ENV = {"CATALYST_SMPP_DSN": None, "CATALYST_SMPP_CONFIG": None, "CATALYST_SMPP_SCHEMA": None}


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    def run(*args: str) -> Result:
        argv = [*args, "--dsn", pg_dsn, "--schema", pg_schema]
        return CliRunner().invoke(main, argv, env=_CLEAN_ENV, catch_exceptions=False)

    assert run("migrate").exit_code == 0
    return run


def _ok(r: Result) -> Result:
    assert r.exit_code == 0, r.output
    return r


def _partner(pg_dsn: str, pg_schema: str) -> str:
    name = unique_name("wh")[:12]
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        PartnerRepo(conn).add(name, "secret")
    return name


def test_webhook_lifecycle(cli: Any, pg_dsn: str, pg_schema: str, tmp_path: Path) -> None:
    p = _partner(pg_dsn, pg_schema)
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        before = config_version(conn)
    made = json.loads(
        _ok(cli("webhook", "set", p, "--kind", "dlr", "--url", "https://x.test/dlr", "--json")).stdout
    )
    assert made["secret"].startswith("whsec_") and len(made["secret"]) == 6 + 64
    assert (made["batch_size"], made["enabled"]) == (100, True)
    # a change keeps the secret (not printed again) unless one is given
    changed = json.loads(
        _ok(
            cli(
                "webhook",
                "set",
                p,
                "--kind",
                "dlr",
                "--url",
                "https://x.test/v2",
                "--batch-size",
                "7",
                "--json",
            )
        ).stdout
    )
    assert "secret" not in changed and (changed["url"], changed["batch_size"]) == ("https://x.test/v2", 7)
    _ok(cli("webhook", "set", p, "--kind", "mo", "--url", "http://x.test/mo", "--secret", "s" * 20))
    shown = _ok(cli("webhook", "show", p, "--kind", "dlr")).stdout
    assert "https://x.test/v2" in shown and made["secret"] not in shown
    listed = json.loads(_ok(cli("webhook", "list", "--partner", p, "--json")).stdout)
    assert [(h["kind"], h["url"]) for h in listed] == [
        ("dlr", "https://x.test/v2"),
        ("mo", "http://x.test/mo"),
    ]
    assert made["secret"] not in _ok(cli("webhook", "list")).stdout

    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        assert config_version(conn) > before  # running gateways reload
        snap = load_snapshot(conn)
    hooks = {(h.partner, h.kind): h for h in snap.webhooks}
    assert hooks[(p, "dlr")].secret == made["secret"] and hooks[(p, "mo")].secret == "s" * 20
    save_snapshot_file(tmp_path / "snap.json", snap)
    assert load_snapshot_file(tmp_path / "snap.json").snapshot.webhooks == snap.webhooks

    _ok(cli("webhook", "set", p, "--kind", "mo", "--url", "http://x.test/mo", "--disable"))
    assert json.loads(_ok(cli("webhook", "show", p, "--kind", "mo", "--json")).stdout)["enabled"] is False
    _ok(cli("webhook", "remove", p, "--kind", "mo"))
    r = cli("webhook", "show", p, "--kind", "mo")
    assert r.exit_code == 1 and "no mo webhook" in r.output
    assert cli("webhook", "remove", p, "--kind", "mo").exit_code == 1


def test_webhook_refusals(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    p = _partner(pg_dsn, pg_schema)
    r = cli("webhook", "set", "nobody-here", "--kind", "dlr", "--url", "https://x.test/")
    assert r.exit_code == 1 and "no partner" in r.output
    r = cli("webhook", "set", p, "--kind", "dlr", "--url", "ftp://x.test/")
    assert r.exit_code == 1 and "not an http" in r.output
    r = cli("webhook", "set", p, "--kind", "dlr", "--url", "https://x.test/", "--secret", "short")
    assert r.exit_code == 1 and "16 to 256" in r.output
    assert cli("webhook", "set", p, "--kind", "sms", "--url", "https://x.test/").exit_code == 2
    assert (
        cli("webhook", "set", p, "--kind", "dlr", "--url", "https://x.test/", "--batch-size", "0").exit_code
        == 2
    )
