"""Fixtures of the end-to-end tests: ``env`` = a fresh schema + NATS namespace per test (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from catalyst_smpp.store import connect_sync, migrate
from tests.services import delete_namespace_streams, unique_name

from .harness import Env, e2e_nats_config


@pytest.fixture
def env(tmp_path: Path, nats_url: str, pg_dsn: str) -> Iterator[Env]:
    schema = unique_name("e2e_")
    with psycopg.connect(pg_dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    with connect_sync(pg_dsn, schema=schema) as conn:
        migrate(conn, schema=schema)
    e = Env(
        tmp=tmp_path, nats_url=nats_url, nats=e2e_nats_config(unique_name("e")), dsn=pg_dsn, schema=schema
    )
    try:
        yield e
    finally:
        delete_namespace_streams(nats_url, e.nats)
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
