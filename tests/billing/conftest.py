"""Fixtures for the books: this module's schema migrated, a connection to it, fresh partners."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from catalyst_smpp.store import connect_sync, migrate
from tests.services import unique_name


@pytest.fixture(scope="module")
def books_conn(pg_dsn: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection to this module's schema, migrated (module-scoped: hypothesis reuses it)."""
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        migrate(conn, schema=pg_schema)
        yield conn


@pytest.fixture(scope="module")
def new_partner(books_conn: psycopg.Connection[Any]) -> Callable[[], int]:
    """A new partner's id each call (no account yet)."""

    def make() -> int:
        row = books_conn.execute(
            "INSERT INTO partners (system_id, password_hash) VALUES (%s, 'x') RETURNING id",
            (unique_name("b")[:15],),
        ).fetchone()
        assert row is not None
        return int(row[0])

    return make
