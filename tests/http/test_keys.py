"""API keys: the ``api-key`` CLI (create prints the key once, list, revoke) against real Postgres, and the
node's key cache (a revoked key refused once the cache entry is older than ``key_cache``; last_used_at)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from click.testing import CliRunner, Result

from catalyst_smpp.cli import main
from catalyst_smpp.http.keys import KeyStore, hash_secret, make_key, parse_key
from catalyst_smpp.store import Database, PartnerRepo, connect_sync
from tests.services import unique_name

_CLEAN_ENV = {"CATALYST_SMPP_DSN": None, "CATALYST_SMPP_CONFIG": None, "CATALYST_SMPP_SCHEMA": None}


@pytest.fixture(scope="module")
def cli(pg_dsn: str, pg_schema: str) -> Any:
    def run(*args: str) -> Result:
        argv = [*args, "--dsn", pg_dsn, "--schema", pg_schema]
        return CliRunner().invoke(main, argv, env=_CLEAN_ENV, catch_exceptions=False)

    assert run("migrate").exit_code == 0
    return run


def test_key_format() -> None:
    key, prefix, digest = make_key()
    assert parse_key(key) == (prefix, key.split("_")[2]) and digest == hash_secret(key.split("_")[2])
    assert len(key) == 3 + 8 + 1 + 43
    assert make_key()[0] != key
    for bad in ("", "ck_short_x", key + "x", key.replace("ck_", "cx_"), key[:-1] + "-"):
        assert parse_key(bad) is None


def test_api_key_cli(cli: Any, pg_dsn: str, pg_schema: str) -> None:
    partner = unique_name("ak")[:12]
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        PartnerRepo(conn).add(partner, "secret")
    r = cli("api-key", "create", partner, "--name", "web shop", "--rate", "20")
    assert r.exit_code == 0, r.output
    key = r.stdout.strip()
    assert parse_key(key) is not None and "not shown again" in r.stderr
    r = cli("api-key", "create", partner, "--json")
    second = json.loads(r.stdout)
    assert second["partner"] == partner and second["key"].startswith(f"ck_{second['prefix']}_")
    listed = json.loads(cli("api-key", "list", partner, "--json").stdout)
    assert [(k["name"], k["rate"], k["revoked_at"]) for k in listed] == [
        ("web shop", 20.0, None),
        ("", None, None),
    ]
    assert all("hash" not in k and "key" not in k for k in listed)
    assert key.split("_")[1] in cli("api-key", "list", partner).stdout
    assert key not in cli("api-key", "list").stdout
    r = cli("api-key", "revoke", str(listed[0]["id"]))
    assert r.exit_code == 0 and "revoked" in r.stdout
    listed = json.loads(cli("api-key", "list", partner, "--json").stdout)
    assert listed[0]["revoked_at"] is not None and listed[1]["revoked_at"] is None
    assert cli("api-key", "revoke", "999999999").exit_code == 1
    r = cli("api-key", "create", "nobody-" + partner)
    assert r.exit_code == 1 and "unknown partner" in r.stderr
    assert cli("api-key", "create", partner, "--rate", "0").exit_code == 2


async def test_key_cache_and_revocation(db: Database) -> None:
    from catalyst_smpp.http.keys import create_key, revoke_key

    await db.run(lambda c: PartnerRepo(c).add("kc", "secret"))
    row, key = await db.run(lambda c: create_key(c, "kc"))
    now = [0.0]
    store = KeyStore(db, ttl=5.0, clock=lambda: now[0])
    found = await store.lookup(key)
    assert found is not None and found.partner == "kc"
    assert await store.lookup(key[:-1] + ("a" if key[-1] != "a" else "b")) is None  # wrong secret
    await db.run(revoke_key, row.id)
    now[0] = 4.9
    assert await store.lookup(key) is not None  # still cached
    now[0] = 5.0
    assert await store.lookup(key) is None  # re-read: revoked
    used = await db.run(
        lambda c: c.execute("SELECT last_used_at FROM api_keys WHERE id = %s", (row.id,)).fetchone()
    )
    assert used[0] is not None  # written when the entry used since its read was read again
