"""MO routes (migration 0002) on a real Postgres: CRUD, ordering, snapshot, change notification, cascade."""

from __future__ import annotations

import psycopg
import pytest
import trio

from catalyst_smpp.gateway.routing import mo_route_order
from catalyst_smpp.store import (
    Database,
    MoRoute,
    MoRouteRepo,
    NotFound,
    PartnerRepo,
    config_version,
    open_config_watcher,
)
from tests.services import unique_name


def _sid() -> str:
    return unique_name("p")[:15]


async def test_mo_route_crud(db: Database) -> None:
    a, b = _sid(), _sid()
    await db.run(lambda c: (PartnerRepo(c).add(a, "pw"), PartnerRepo(c).add(b, "pw")))
    r = await db.run(lambda c: MoRouteRepo(c).add("12345", a, priority=5, description="short code"))
    assert isinstance(r, MoRoute)
    assert (r.dest_prefix, r.partner, r.source_prefix, r.priority, r.enabled, r.description) == (
        "12345",
        a,
        "",
        5,
        True,
        "short code",
    )
    assert r.created_at is not None
    got = await db.run(lambda c: MoRouteRepo(c).get(r.id))
    assert got == r
    ch = await db.run(lambda c: MoRouteRepo(c).change(r.id, partner=b, source_prefix="44", priority=1))
    assert (ch.partner, ch.source_prefix, ch.priority, ch.dest_prefix) == (b, "44", 1, "12345")
    assert (await db.run(lambda c: MoRouteRepo(c).disable(r.id))).enabled is False
    assert await db.run(lambda c: MoRouteRepo(c).list(partner=b, enabled_only=True)) == []
    assert (await db.run(lambda c: MoRouteRepo(c).enable(r.id))).enabled is True
    assert [x.id for x in await db.run(lambda c: MoRouteRepo(c).list(partner=b, enabled_only=True))] == [r.id]
    assert await db.run(lambda c: MoRouteRepo(c).delete(r.id)) is True
    assert await db.run(lambda c: MoRouteRepo(c).delete(r.id)) is False
    assert await db.run(lambda c: MoRouteRepo(c).get(r.id)) is None


async def test_mo_route_errors(db: Database) -> None:
    a = _sid()
    await db.run(lambda c: PartnerRepo(c).add(a, "pw"))
    with pytest.raises(NotFound):
        await db.run(lambda c: MoRouteRepo(c).add("1", "no-such-partner"))
    with pytest.raises(ValueError, match="allowed"):
        await db.run(lambda c: MoRouteRepo(c).add("1", a, weight=3))
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(lambda c: MoRouteRepo(c).add("12a", a))
    with pytest.raises(NotFound):
        await db.run(lambda c: MoRouteRepo(c).change(10**9, priority=1))
    with pytest.raises(NotFound):
        await db.run(lambda c: MoRouteRepo(c).change(10**9))


async def test_order_snapshot_and_cascade(db: Database) -> None:
    a, b = _sid(), _sid()
    await db.run(lambda c: (PartnerRepo(c).add(a, "pw"), PartnerRepo(c).add(b, "pw")))
    ids = await db.run(
        lambda c: [
            MoRouteRepo(c).add("77", a, priority=9).id,
            MoRouteRepo(c).add("7788", b).id,
            MoRouteRepo(c).add("7788", a, priority=3).id,
            MoRouteRepo(c).add("", b).id,
        ]
    )
    mine = [r for r in await db.run(lambda c: MoRouteRepo(c).list()) if r.id in ids]
    assert [r.id for r in mine] == ids  # by id
    # the router's order: longest prefix first, then priority
    assert [r.id for r in mo_route_order(mine)] == [ids[2], ids[1], ids[0], ids[3]]
    listed = [r.id for r in mine]
    snap = await db.snapshot()
    assert [r.id for r in snap.mo_routes if r.id in ids] == listed
    assert {r.partner for r in snap.mo_routes if r.id in ids} == {a, b}
    # deleting a partner removes its MO routes
    await db.run(lambda c: PartnerRepo(c).delete(a))
    left = [r.id for r in await db.run(lambda c: MoRouteRepo(c).list()) if r.id in ids]
    assert left == [ids[1], ids[3]]


async def test_changes_bump_the_version_and_notify(db: Database) -> None:
    a = _sid()
    await db.run(lambda c: PartnerRepo(c).add(a, "pw"))
    async with open_config_watcher(db, poll_interval=60) as w:
        v0 = w.version
        r = await db.run(lambda c: MoRouteRepo(c).add("555", a))
        with trio.fail_after(5):
            v1 = await w.wait_for_change(v0)
        assert v1 == v0 + 1 == await db.run(config_version)
        await db.run(lambda c: MoRouteRepo(c).disable(r.id))
        with trio.fail_after(5):
            assert await w.wait_for_change(v1) == v1 + 1
