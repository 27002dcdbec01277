"""Versioned schema migrations: ``store/migrations/NNNN_name.sql``.

Each file is applied in its own transaction and recorded in ``schema_migrations``
(version, name, sha256).  Several gateway nodes start together, so the whole run holds
a session advisory lock (per schema): the second node waits, then finds nothing to do.
An applied file whose text changed is an error (``MigrationError``) — add a new file instead.
"""

from __future__ import annotations

import hashlib
import importlib.resources
import logging
import re
from typing import Any

import attrs
import psycopg
from psycopg import sql

__all__ = ["Migration", "MigrationError", "available_migrations", "migrate"]

log = logging.getLogger(__name__)

_NAME = re.compile(r"^(\d{4})_([a-z0-9_]+)\.sql$")


class MigrationError(RuntimeError):
    pass


@attrs.frozen
class Migration:
    version: int
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode("utf-8")).hexdigest()


def available_migrations() -> list[Migration]:
    root = importlib.resources.files("catalyst_smpp.store") / "migrations"
    out: list[Migration] = []
    for entry in root.iterdir():
        m = _NAME.match(entry.name)
        if not m:
            continue
        out.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    out.sort(key=lambda m: m.version)
    versions = [m.version for m in out]
    if len(set(versions)) != len(versions):
        raise MigrationError(f"duplicate migration numbers in {versions}")
    return out


def _lock_key(schema: str) -> str:
    return f"catalyst_smpp.migrate:{schema}"


def migrate(
    conn: psycopg.Connection[Any], *, schema: str = "", migrations: list[Migration] | None = None
) -> list[int]:
    """Apply pending migrations; returns the versions applied now.  ``conn`` must be in autocommit mode.

    ``schema``: create it if missing and migrate inside it (the connection's search_path must name it,
    as :class:`catalyst_smpp.store.Database` arranges); empty = the connection's current schema.
    """
    if not conn.autocommit:
        raise MigrationError("migrate() needs an autocommit connection (it manages its own transactions)")
    todo = available_migrations() if migrations is None else migrations
    conn.execute("SELECT pg_advisory_lock(hashtext(%s))", (_lock_key(schema),))
    try:
        if schema:
            conn.execute(sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(sql.Identifier(schema)))
        row = conn.execute("SELECT current_schema()").fetchone()
        if row is None or row[0] is None:
            raise MigrationError("no current schema: the search_path names no existing schema")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, checksum text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        applied = {
            v: c for v, c in conn.execute("SELECT version, checksum FROM schema_migrations").fetchall()
        }
        done: list[int] = []
        for m in todo:
            if m.version in applied:
                if applied[m.version] != m.checksum:
                    raise MigrationError(
                        f"migration {m.version:04d}_{m.name} was changed after it was applied"
                        " (checksum differs);"
                        " add a new migration instead"
                    )
                continue
            with conn.transaction():
                conn.execute(m.sql.encode())  # no params: several statements in one go are allowed
                conn.execute(
                    "INSERT INTO schema_migrations (version, name, checksum) VALUES (%s, %s, %s)",
                    (m.version, m.name, m.checksum),
                )
            log.info("applied migration %04d_%s in schema %s", m.version, m.name, row[0])
            done.append(m.version)
        return done
    finally:
        conn.execute("SELECT pg_advisory_unlock(hashtext(%s))", (_lock_key(schema),))
