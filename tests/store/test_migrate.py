"""Schema migrations on a real Postgres: idempotent, concurrent-safe, checksum-guarded."""

from __future__ import annotations

import threading

import psycopg
import pytest
from psycopg import sql

from catalyst_smpp.store import Migration, MigrationError, available_migrations, connect_sync, migrate
from tests.services import unique_name


@pytest.fixture
def fresh_schema(pg_dsn: str):  # type: ignore[no-untyped-def]
    schema = unique_name("mig_")
    yield schema
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def test_files_are_numbered_and_loadable() -> None:
    ms = available_migrations()
    assert ms[0].version == 1 and ms[0].name == "initial"
    assert [m.version for m in ms] == sorted({m.version for m in ms})


def test_migrate_applies_once(pg_dsn: str, fresh_schema: str) -> None:
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        assert migrate(conn, schema=fresh_schema) == [m.version for m in available_migrations()]
        assert migrate(conn, schema=fresh_schema) == []
        rows = conn.execute("SELECT version, name FROM schema_migrations").fetchall()
        assert rows == [(m.version, m.name) for m in available_migrations()]
        tables = {
            r[0]
            for r in conn.execute(
                "SELECT table_name FROM information_schema.tables WHERE table_schema = %s", (fresh_schema,)
            )
        }
        assert {
            "partners",
            "operators",
            "routes",
            "route_operators",
            "message_log",
            "config_version",
            "schema_migrations",
        } <= tables


def test_concurrent_nodes_migrate_once(pg_dsn: str, fresh_schema: str) -> None:
    results: list[list[int]] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(4)

    def node() -> None:
        try:
            with connect_sync(pg_dsn, schema=fresh_schema) as conn:
                barrier.wait()
                results.append(migrate(conn, schema=fresh_schema))
        except BaseException as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=node) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(results) == [[], [], [], [m.version for m in available_migrations()]]


def test_failed_migration_rolls_back_entirely(pg_dsn: str, fresh_schema: str) -> None:
    good = available_migrations()[:1]
    bad = Migration(2, "broken", "CREATE TABLE half_done (x int); SELECT no_such_function();")
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        with pytest.raises(psycopg.errors.UndefinedFunction):
            migrate(conn, schema=fresh_schema, migrations=[*good, bad])
        assert conn.execute("SELECT max(version) FROM schema_migrations").fetchone() == (1,)
        assert conn.execute("SELECT to_regclass('half_done')").fetchone() == (None,)
        # the lock was released: a corrected migration goes through
        fixed = Migration(2, "broken", "CREATE TABLE half_done (x int);")
        assert migrate(conn, schema=fresh_schema, migrations=[*good, fixed]) == [2]


def test_changed_applied_migration_is_an_error(pg_dsn: str, fresh_schema: str) -> None:
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        migrate(conn, schema=fresh_schema)
        edited = [Migration(1, "initial", available_migrations()[0].sql + "\n-- edited\n")]
        with pytest.raises(MigrationError, match="changed after it was applied"):
            migrate(conn, schema=fresh_schema, migrations=edited)


def test_needs_autocommit(pg_dsn: str, fresh_schema: str) -> None:
    with connect_sync(pg_dsn, schema=fresh_schema, autocommit=False) as conn, pytest.raises(MigrationError):
        migrate(conn, schema=fresh_schema)


def test_0004_gives_existing_operators_no_temporary_statuses(pg_dsn: str, fresh_schema: str) -> None:
    ms = available_migrations()
    assert [m.version for m in ms][:4] == [1, 2, 3, 4] and ms[3].name == "operator_temporary_statuses"
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        assert migrate(conn, schema=fresh_schema, migrations=ms[:3]) == [1, 2, 3]
        conn.execute("INSERT INTO operators (name, host, port, system_id) VALUES ('old', 'h', 2775, 's')")
        before = conn.execute("SELECT version FROM config_version").fetchone()
        assert migrate(conn, schema=fresh_schema) == [m.version for m in ms[3:]]
        assert conn.execute("SELECT temporary_statuses FROM operators WHERE name = 'old'").fetchone() == ([],)
        # adding the column is not a config change (no reload of every node)
        assert conn.execute("SELECT version FROM config_version").fetchone() == before
        for bad in ("'{0}'", "'{-1025}'", "'{1025,NULL}'", "'{{1025}}'", "NULL"):
            with pytest.raises(psycopg.errors.IntegrityError):
                with conn.transaction():
                    conn.execute(f"UPDATE operators SET temporary_statuses = {bad} WHERE name = 'old'")
        conn.execute("UPDATE operators SET temporary_statuses = '{1025,1279}' WHERE name = 'old'")


def test_0006_keeps_todays_receipt_requests_and_the_system_cas(pg_dsn: str, fresh_schema: str) -> None:
    ms = available_migrations()
    (m6,) = [m for m in ms if m.version == 6]
    assert m6.name == "operator_connection_settings"
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        migrate(conn, schema=fresh_schema, migrations=[m for m in ms if m.version < 6])
        conn.execute("INSERT INTO operators (name, host, port, system_id) VALUES ('old', 'h', 2775, 's')")
        before = conn.execute("SELECT version FROM config_version").fetchone()
        assert 6 in migrate(conn, schema=fresh_schema)
        row = conn.execute(
            "SELECT receipt_parts, receipt_request, tls_ca_file, tls_server_name FROM operators"
        ).fetchone()
        assert row == ("all", "final", "", "")  # every part asks for a final receipt, as before
        assert conn.execute("SELECT version FROM config_version").fetchone() == before
        for col, bad in (("receipt_parts", "first"), ("receipt_request", "never"), ("tls_ca_file", None)):
            with pytest.raises(psycopg.errors.IntegrityError):
                with conn.transaction():
                    conn.execute(f"UPDATE operators SET {col} = %s WHERE name = 'old'", (bad,))


def test_0005_leaves_existing_operators_without_receipts_by_text(pg_dsn: str, fresh_schema: str) -> None:
    ms = available_migrations()
    assert ms[4].version == 5 and ms[4].name == "operator_receipt_forms"
    with connect_sync(pg_dsn, schema=fresh_schema) as conn:
        assert migrate(conn, schema=fresh_schema, migrations=ms[:4]) == [1, 2, 3, 4]
        conn.execute("INSERT INTO operators (name, host, port, system_id) VALUES ('old', 'h', 2775, 's')")
        before = conn.execute("SELECT version FROM config_version").fetchone()
        assert migrate(conn, schema=fresh_schema) == [m.version for m in ms[4:]]
        assert conn.execute("SELECT receipts_by_text FROM operators WHERE name = 'old'").fetchone() == (
            False,
        )
        assert conn.execute("SELECT version FROM config_version").fetchone() == before
        with pytest.raises(psycopg.errors.NotNullViolation), conn.transaction():
            conn.execute("UPDATE operators SET receipts_by_text = NULL WHERE name = 'old'")
