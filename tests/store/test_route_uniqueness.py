"""Routes and MO routes the router cannot tell apart are refused (migration 0007): the error names it."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from catalyst_smpp.store import (
    Database,
    DuplicateRoute,
    MoRouteRepo,
    OperatorRepo,
    PartnerRepo,
    RouteRepo,
    available_migrations,
    connect_sync,
    migrate,
)
from tests.services import unique_name


def _sid() -> str:
    return unique_name("p")[:15]


async def _setup(db: Database) -> tuple[str, str, str]:
    a, b, op = _sid(), _sid(), unique_name("op")

    def setup(conn: psycopg.Connection[Any]) -> None:
        PartnerRepo(conn).add(a, "pw")
        PartnerRepo(conn).add(b, "pw")
        OperatorRepo(conn).add(op, "h", 2775, "s")

    await db.run(setup)
    return a, b, op


async def test_an_identical_route_is_refused_on_add_change_and_enable(db: Database) -> None:
    a, b, op = await _setup(db)
    first = await db.run(lambda c: RouteRepo(c).add(a, "4477", [op], priority=2, source_prefix="44"))

    with pytest.raises(
        DuplicateRoute, match=rf"^route {first.id} has the same partner, destination prefix"
    ) as e:
        await db.run(lambda c: RouteRepo(c).add(a, "4477", [op], priority=2, source_prefix="44"))
    assert e.value.existing == first.id
    # any field of the identity differing makes another route
    other = await db.run(
        lambda c: [
            RouteRepo(c).add(b, "4477", [op], priority=2, source_prefix="44").id,  # another partner
            RouteRepo(c).add(None, "4477", [op], priority=2, source_prefix="44").id,  # any partner
            RouteRepo(c).add(a, "447", [op], priority=2, source_prefix="44").id,
            RouteRepo(c).add(a, "4477", [op], priority=3, source_prefix="44").id,
            RouteRepo(c).add(a, "4477", [op], priority=2, source_regex="44").id,  # a regex is another filter
            RouteRepo(c).add(a, "4477", [op], priority=2).id,  # no filter
        ]
    )
    # no filter: NULL and '' are the same to the router
    with pytest.raises(DuplicateRoute, match=rf"^route {other[-1]} "):
        await db.run(lambda c: RouteRepo(c).add(a, "4477", [op], priority=2, source_prefix=""))
    # a change that makes a twin, also of the partner scope
    with pytest.raises(DuplicateRoute, match=rf"^route {first.id} "):
        await db.run(lambda c: RouteRepo(c).change(other[3], priority=2))
    with pytest.raises(DuplicateRoute, match=rf"^route {first.id} "):
        await db.run(lambda c: RouteRepo(c).change(other[0], partner=a))
    assert (await db.run(lambda c: RouteRepo(c).get(other[3]))).priority == 3  # nothing changed
    # a disabled twin is allowed (not evaluated); enabling it while the other is enabled is not
    spare = await db.run(
        lambda c: RouteRepo(c).add(a, "4477", [op], priority=2, source_prefix="44", enabled=False)
    )
    with pytest.raises(
        DuplicateRoute, match=rf"^route {first.id} .*change or disable route {first.id} first$"
    ):
        await db.run(lambda c: RouteRepo(c).enable(spare.id))
    await db.run(lambda c: (RouteRepo(c).disable(first.id), RouteRepo(c).enable(spare.id)))
    # changing a route without touching its identity is fine
    assert (await db.run(lambda c: RouteRepo(c).change(spare.id, description="now in use"))).enabled


async def test_an_identical_mo_route_is_refused(db: Database) -> None:
    a, b, _op = await _setup(db)
    first = await db.run(lambda c: MoRouteRepo(c).add("12345", a, priority=1))
    # the partner is where the MO goes, not part of what the router tells routes apart by
    with pytest.raises(DuplicateRoute, match=rf"^MO route {first.id} has the same destination prefix") as e:
        await db.run(lambda c: MoRouteRepo(c).add("12345", b, priority=1))
    assert e.value.existing == first.id
    second = await db.run(lambda c: MoRouteRepo(c).add("12345", b, priority=1, source_prefix="44"))
    with pytest.raises(DuplicateRoute, match=rf"^MO route {first.id} "):
        await db.run(lambda c: MoRouteRepo(c).change(second.id, source_prefix=""))
    spare = await db.run(lambda c: MoRouteRepo(c).add("12345", b, priority=1, enabled=False))
    with pytest.raises(DuplicateRoute, match=rf"^MO route {first.id} "):
        await db.run(lambda c: MoRouteRepo(c).enable(spare.id))


def test_two_admins_adding_the_same_route_at_once(pg_dsn: str, pg_schema: str) -> None:
    """The second insert waits on the unique index for the first transaction, then is refused naming it."""
    a, op = _sid(), unique_name("op")
    with connect_sync(pg_dsn, schema=pg_schema) as conn:
        migrate(conn, schema=pg_schema)
        PartnerRepo(conn).add(a, "pw")
        OperatorRepo(conn).add(op, "h", 2775, "s")
    errors: list[BaseException] = []
    with connect_sync(pg_dsn, schema=pg_schema) as first, connect_sync(pg_dsn, schema=pg_schema) as second:
        second_pid = second.info.backend_pid

        def add_second() -> None:
            try:
                with second.transaction():
                    RouteRepo(second).add(a, "99", [op])
            except BaseException as e:
                errors.append(e)

        with first.transaction():
            mine = RouteRepo(first).add(a, "99", [op])
            t = threading.Thread(target=add_second)
            t.start()
            # the second insert is blocked on the index until this transaction ends (without the index it
            # is not: it ends and is let in)
            while (
                t.is_alive()
                and not first.execute(
                    "SELECT 1 FROM pg_stat_activity WHERE pid = %s AND wait_event_type = 'Lock'",
                    (second_pid,),
                ).fetchone()
            ):
                t.join(0.01)
        t.join()
    assert len(errors) == 1 and isinstance(errors[0], DuplicateRoute)
    assert errors[0].existing == mine.id


def test_0007_disables_the_later_twins_that_were_never_used(pg_dsn: str) -> None:
    schema = unique_name("mig7_")
    ms = available_migrations()
    before = [m for m in ms if m.version < 7]
    try:
        with connect_sync(pg_dsn, schema=schema) as conn:
            migrate(conn, schema=schema, migrations=before)
            pid = conn.execute(
                "INSERT INTO partners (system_id, password_hash) VALUES ('p', 'x') RETURNING id"
            )
            partner_id = pid.fetchone()[0]  # type: ignore[index]
            ids = [
                conn.execute(
                    "INSERT INTO routes (partner_id, dest_prefix, priority, source_prefix, enabled,"
                    " description) VALUES (%s, %s, %s, %s, %s, %s) RETURNING id",
                    row,
                ).fetchone()[0]  # type: ignore[index]
                for row in [
                    (None, "44", 0, None, True, "kept"),
                    (None, "44", 0, "", True, "twin"),  # '' is no filter, like NULL
                    (None, "44", 0, None, False, "already off"),
                    (partner_id, "44", 0, None, True, "other scope"),
                    (None, "44", 0, None, True, ""),
                ]
            ]
            mo = [
                conn.execute(
                    "INSERT INTO mo_routes (dest_prefix, partner_id) VALUES ('123', %s) RETURNING id",
                    (partner_id,),
                ).fetchone()[0]  # type: ignore[index]
                for _ in range(2)
            ]
            assert migrate(conn, schema=schema) == [m.version for m in ms if m.version >= 7]
            got = conn.execute("SELECT id, enabled, description FROM routes ORDER BY id").fetchall()
            assert got == [
                (ids[0], True, "kept"),
                (ids[1], False, f"twin [disabled by migration 0007: same as route {ids[0]}]"),
                (ids[2], False, "already off"),
                (ids[3], True, "other scope"),
                (ids[4], False, f"[disabled by migration 0007: same as route {ids[0]}]"),
            ]
            assert conn.execute("SELECT id, enabled, description FROM mo_routes ORDER BY id").fetchall() == [
                (mo[0], True, ""),
                (mo[1], False, f"[disabled by migration 0007: same as MO route {mo[0]}]"),
            ]
            with pytest.raises(psycopg.errors.UniqueViolation):
                conn.execute("UPDATE routes SET enabled = true WHERE id = %s", (ids[1],))
    finally:
        with psycopg.connect(pg_dsn, autocommit=True) as c:
            c.execute(
                psycopg.sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(psycopg.sql.Identifier(schema))
            )
