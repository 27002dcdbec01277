"""Plans on a real Postgres (migration 0008): PlanRepo, CSV import/export, the partners' and operators'
plan settings, the database's own checks, the snapshot (rows in effect now or later) and the snapshot file."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from catalyst_smpp.billing.money import Money
from catalyst_smpp.billing.plans import CSV_COLUMNS, PlanCsvError
from catalyst_smpp.store import (
    NotFound,
    OperatorRepo,
    PartnerRepo,
    PlanInUse,
    PlanRepo,
    RouteRepo,
    config_version,
    connect_sync,
    load_snapshot,
    load_snapshot_file,
    migrate,
    save_snapshot_file,
)
from tests.services import unique_name

HEADER = ",".join(CSV_COLUMNS)


@pytest.fixture
def conn(pg_dsn: str, pg_schema: str) -> Iterator[psycopg.Connection[Any]]:
    with connect_sync(pg_dsn, schema=pg_schema, autocommit=True) as c:
        migrate(c, schema=pg_schema)
        yield c


def _name(prefix: str) -> str:
    return unique_name(prefix)[:15]


def _csv(*lines: str) -> str:
    return "\n".join((HEADER, *lines)) + "\n"


def _now_iso(days: float = 0) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(days=days)).replace(microsecond=0).isoformat()


def test_plan_add_get_list_change(conn: psycopg.Connection[Any]) -> None:
    repo = PlanRepo(conn)
    name = _name("pl")
    p = repo.add(name, "price", "eur", description="retail")
    assert (p.name, p.kind, p.currency, p.description, p.rows) == (name, "price", "EUR", "retail", ())
    assert name in [x.name for x in repo.list()]
    assert repo.row_counts()[name] == 0
    with pytest.raises(psycopg.errors.UniqueViolation):
        repo.add(name, "cost", "EUR")
    with pytest.raises(ValueError, match="kind"):
        repo.add(_name("pl"), "retail", "EUR")
    with pytest.raises(ValueError, match="currency"):
        repo.add(_name("pl"), "price", "EURO")
    assert repo.change(name, description="new", currency="GBP").currency == "GBP"
    repo.import_csv(name, _csv("44,44,DEFAULT,,0.03,,2027-01-01T00:00:00Z,"))
    with pytest.raises(ValueError, match="priced in GBP"):
        repo.change(name, currency="EUR")
    with pytest.raises(NotFound):
        repo.change(_name("missing"), description="x")


def test_import_replaces_all_rows_and_export_reads_back(conn: psycopg.Connection[Any]) -> None:
    repo = PlanRepo(conn)
    name = _name("pl")
    repo.add(name, "cost", "EUR")
    first = _csv(
        "44,44,DEFAULT,,0.03,,2027-01-01T00:00:00+00:00,",
        "447700,44,Vodafone UK,23415,0.025,0.028,2027-01-01T00:00:00+00:00,2027-02-01T00:00:00+00:00",
        "447700,44,Vodafone UK,23415,0.02,,2027-02-01T01:00:00+01:00,",
    )
    assert repo.import_csv(name, first) == 3
    plan = repo.get(name)
    assert plan is not None and len(plan.rows) == 3
    assert plan.rows[1].submit_price == Money("0.025", "EUR") and plan.rows[1].mcc_mnc == "23415"
    exported = repo.export_csv(name)
    assert exported.splitlines()[0] == HEADER
    assert (
        "447700,44,Vodafone UK,23415,0.025,0.028,2027-01-01T00:00:00+00:00,2027-02-01T00:00:00+00:00"
        in exported
    )
    # exporting and importing again changes nothing
    assert repo.import_csv(name, exported) == 3
    assert repo.get(name).rows == plan.rows  # type: ignore[union-attr]

    at = dt.datetime(2027, 1, 15, tzinfo=dt.UTC)
    current = repo.get(name, at=at)
    assert current is not None and [(r.prefix, str(r.submit_price)) for r in current.rows] == [
        ("44", "0.030000 EUR"),
        ("447700", "0.025000 EUR"),
    ]

    assert repo.import_csv(name, _csv("33,33,DEFAULT,,0.01,,2027-01-01T00:00:00Z,")) == 1
    assert [r.prefix for r in repo.get(name).rows] == ["33"]  # type: ignore[union-attr]


def test_a_bad_file_imports_nothing(conn: psycopg.Connection[Any]) -> None:
    repo = PlanRepo(conn)
    name = _name("pl")
    repo.add(name, "price", "EUR")
    repo.import_csv(name, _csv("44,44,DEFAULT,,0.03,,2027-01-01T00:00:00Z,"))
    before = repo.get(name)
    with pytest.raises(PlanCsvError) as e:
        repo.import_csv(
            name, _csv("33,33,DEFAULT,,0.01,,2027-01-01T00:00:00Z,", "34,34,,,cheap,,2027-01-01T00:00:00Z,")
        )
    assert (e.value.line, e.value.column) == (3, "submit_price")
    assert repo.get(name) == before
    with pytest.raises(NotFound):
        repo.import_csv(_name("missing"), _csv())


def test_the_database_refuses_overlapping_rows_itself(conn: psycopg.Connection[Any]) -> None:
    """The import checks first; the trigger stops any other writer."""
    repo = PlanRepo(conn)
    name = _name("pl")
    plan = repo.add(name, "price", "EUR")
    insert = (
        "INSERT INTO plan_rows (plan_id, prefix, country, submit_price, effective_from, effective_until)"
        " VALUES (%s, '4477', '44', 0.01, %s, %s)"
    )
    conn.execute(insert, (plan.id, "2027-01-01Z", "2027-02-01Z"))
    conn.execute(insert, (plan.id, "2027-02-01Z", None))  # adjacent: fine
    with pytest.raises(psycopg.errors.ExclusionViolation):
        conn.execute(insert, (plan.id, "2027-01-15Z", "2027-01-20Z"))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(insert, (plan.id, "2028-01-01Z", "2027-01-01Z"))


def test_partner_and_operator_plan_settings(conn: psycopg.Connection[Any]) -> None:
    plans = PlanRepo(conn)
    retail, costs = _name("pr"), _name("pc")
    plans.add(retail, "price", "EUR")
    plans.add(costs, "cost", "EUR")
    sid = _name("p")
    p = PartnerRepo(conn).add(sid, "pw", price_plan=retail, charge_on="delivery", margin_guard=True)
    assert (p.price_plan, p.charge_on, p.insufficient_credit_status, p.margin_guard) == (
        retail,
        "delivery",
        0x45,
        True,
    )
    p = PartnerRepo(conn).change(sid, insufficient_credit_status="0xFFFFFFFF")
    assert p.insufficient_credit_status == 0xFFFFFFFF and p.price_plan == retail
    assert PartnerRepo(conn).get(sid).price_plan == retail  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="out of range"):
        PartnerRepo(conn).change(sid, insufficient_credit_status=0x100000000)
    with pytest.raises(ValueError, match="ESME_ROK"):
        PartnerRepo(conn).change(sid, insufficient_credit_status=0)
    with pytest.raises(ValueError, match="is a cost plan"):
        PartnerRepo(conn).change(sid, price_plan=costs)
    with pytest.raises(NotFound):
        PartnerRepo(conn).change(sid, price_plan=_name("missing"))

    op = _name("o")
    o = OperatorRepo(conn).add(op, "127.0.0.1", 2775, "sys", cost_plan=costs)
    assert o.cost_plan == costs and OperatorRepo(conn).get(op).cost_plan == costs  # type: ignore[union-attr]
    assert next(x for x in OperatorRepo(conn).list() if x.name == op).cost_plan == costs
    with pytest.raises(ValueError, match="is a price plan"):
        OperatorRepo(conn).change(op, cost_plan=retail)

    with pytest.raises(PlanInUse, match=f"partner\\(s\\) {sid}"):
        plans.remove(retail)
    with pytest.raises(PlanInUse, match=f"operator\\(s\\) {op}"):
        plans.remove(costs)
    assert PartnerRepo(conn).change(sid, price_plan="").price_plan is None
    plans.remove(retail)
    assert plans.get(retail) is None

    # the database checks the kind too (any writer), and refuses to change an assigned plan's kind
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("UPDATE plans SET kind = 'price' WHERE name = %s", (costs,))
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute(
            "UPDATE partners SET price_plan_id = (SELECT id FROM plans WHERE name = %s) WHERE system_id = %s",
            (costs, sid),
        )


def test_route_strategy_least_cost(conn: psycopg.Connection[Any]) -> None:
    ops = [_name("o"), _name("o")]
    for o in ops:
        OperatorRepo(conn).add(o, "127.0.0.1", 2775, "sys")
    r = RouteRepo(conn).add(None, "4" + str(abs(hash(ops[0])) % 10**6), ops, strategy="least_cost")
    assert r.strategy == "least_cost"
    with pytest.raises(psycopg.errors.CheckViolation):
        RouteRepo(conn).change(r.id, strategy="cheapest")


def test_plan_changes_bump_the_config_version(conn: psycopg.Connection[Any]) -> None:
    repo = PlanRepo(conn)
    name = _name("pl")
    v0 = config_version(conn)
    repo.add(name, "price", "EUR")
    v1 = config_version(conn)
    assert v1 > v0
    with conn.transaction():
        repo.import_csv(name, _csv("44,44,DEFAULT,,0.03,,2027-01-01T00:00:00Z,"))
    assert config_version(conn) > v1


def test_snapshot_has_rows_in_effect_now_or_later(conn: psycopg.Connection[Any], tmp_path: Path) -> None:
    repo = PlanRepo(conn)
    name = _name("pl")
    repo.add(name, "price", "EUR")
    repo.import_csv(
        name,
        _csv(
            f"4477,44,,,0.01,,{_now_iso(-30)},{_now_iso(-1)}",  # over
            f"4477,44,,,0.02,,{_now_iso(-1)},{_now_iso(1)}",  # now
            f"4477,44,,,0.03,,{_now_iso(1)},",  # later
            f"44,44,DEFAULT,,0.05,0.06,{_now_iso(-1)},",
        ),
    )
    sid = _name("p")
    PartnerRepo(conn).add(sid, "pw", price_plan=name)
    with conn.transaction():
        snap = load_snapshot(conn)
    plan = next(p for p in snap.plans if p.name == name)
    assert sorted(str(r.submit_price.amount) for r in plan.rows) == ["0.020000", "0.030000", "0.050000"]
    assert next(p for p in snap.partners if p.system_id == sid).price_plan == name

    path = tmp_path / "snap.json"
    save_snapshot_file(path, snap)
    assert load_snapshot_file(path).snapshot == snap
