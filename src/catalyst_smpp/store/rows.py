"""What every repository shares: the not-found error and reading rows as dicts (a module of its own so that
the repositories of :mod:`.repos` and :mod:`.plan_repo` both build on it without importing each other)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import psycopg
from psycopg import sql
from psycopg.rows import dict_row

__all__ = ["NotFound"]


class NotFound(LookupError):
    """No such partner, operator, route, plan, ..."""


def _rows(
    conn: psycopg.Connection[Any], query: str | sql.Composed, params: Sequence[Any] | Mapping[str, Any] = ()
) -> list[dict[str, Any]]:
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(query, params)
        return cur.fetchall() if cur.description else []
