"""Price and cost plans in Postgres (migration 0008): the plans, their rows, CSV import and export.

A plan's rows are only ever written by :meth:`PlanRepo.import_csv`, which replaces all of them in one
transaction after the whole file has been checked (:func:`catalyst_smpp.billing.plans.parse_csv`: an error
names the line and the column, and nothing is imported).  The plan row is locked first, so two imports of one
plan never interleave.  Every change bumps the config version (triggers), so running gateways reload.
"""

from __future__ import annotations

import builtins
import datetime as dt
from collections.abc import Mapping
from typing import Any

import attrs
import psycopg
from psycopg import sql

from ..billing.money import Money, parse_currency
from .records import PLAN_KINDS, Plan, PlanRow
from .rows import NotFound, _rows

__all__ = ["PlanInUse", "PlanRepo"]

_PLAN_COLS = tuple(f.name for f in attrs.fields(Plan) if f.name != "rows")
_ROW_COLS = tuple(f.name for f in attrs.fields(PlanRow))
"""plan_rows' columns: :class:`PlanRow`'s fields (also the CSV's columns)."""
_ROW_ORDER = " ORDER BY prefix, effective_from"


class PlanInUse(ValueError):
    """A plan still assigned to partners or operators cannot be removed."""


def _plan(row: Mapping[str, Any], rows: tuple[PlanRow, ...] = ()) -> Plan:
    return Plan(**{k: row[k] for k in _PLAN_COLS}, rows=rows)


def _plan_row(row: Mapping[str, Any], currency: str) -> PlanRow:
    delivery = row["delivery_price"]
    return PlanRow(
        prefix=row["prefix"],
        country=row["country"],
        network=row["network"],
        mcc_mnc=row["mcc_mnc"],
        submit_price=Money(row["submit_price"], currency),
        delivery_price=None if delivery is None else Money(delivery, currency),
        effective_from=row["effective_from"].astimezone(dt.UTC),
        effective_until=None if row["effective_until"] is None else row["effective_until"].astimezone(dt.UTC),
    )


class PlanRepo:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    # ------------------------------------------------------------------ plans

    def add(self, name: str, kind: str, currency: str, *, description: str = "") -> Plan:
        if kind not in PLAN_KINDS:
            raise ValueError(f"plan kind {kind!r}: one of {', '.join(PLAN_KINDS)}")
        rows = _rows(
            self.conn,
            "INSERT INTO plans (name, kind, currency, description) VALUES (%s, %s, %s, %s) RETURNING *",
            (name, kind, parse_currency(currency), description),
        )
        return _plan(rows[0])

    def _get_row(self, name: str, *, lock: bool = False) -> dict[str, Any]:
        q = "SELECT * FROM plans WHERE name = %s" + (" FOR UPDATE" if lock else "")
        rows = _rows(self.conn, q, (name,))
        if not rows:
            raise NotFound(f"no plan {name!r}")
        return rows[0]

    def get(self, name: str, *, at: dt.datetime | None = None, rows: bool = True) -> Plan | None:
        """The plan with all its rows, or only those in effect at ``at``; ``rows=False``: without rows."""
        found = _rows(self.conn, "SELECT * FROM plans WHERE name = %s", (name,))
        if not found:
            return None
        plan = found[0]
        if not rows:
            return _plan(plan)
        return _plan(plan, self._plan_rows(plan["id"], plan["currency"], at))

    def _plan_rows(self, plan_id: int, currency: str, at: dt.datetime | None) -> tuple[PlanRow, ...]:
        q = f"SELECT {', '.join(_ROW_COLS)} FROM plan_rows WHERE plan_id = %s"
        params: list[Any] = [plan_id]
        if at is not None:
            q += " AND effective_from <= %s AND (effective_until IS NULL OR effective_until > %s)"
            params += [at, at]
        return tuple(_plan_row(r, currency) for r in _rows(self.conn, q + _ROW_ORDER, params))

    def list(self) -> list[Plan]:
        """All plans by name, without their rows (:meth:`row_counts` has how many each has)."""
        return [_plan(r) for r in _rows(self.conn, "SELECT * FROM plans ORDER BY name")]

    def row_counts(self) -> dict[str, int]:
        q = (
            "SELECT p.name, count(r.id) AS n FROM plans p LEFT JOIN plan_rows r ON r.plan_id = p.id"
            " GROUP BY p.name"
        )
        return {r["name"]: int(r["n"]) for r in _rows(self.conn, q)}

    def users(self, name: str) -> tuple[builtins.list[str], builtins.list[str]]:
        """The partners (system_ids) and operators (names) the plan is assigned to."""
        plan = self._get_row(name)
        partners = _rows(
            self.conn, "SELECT system_id FROM partners WHERE price_plan_id = %s ORDER BY 1", (plan["id"],)
        )
        operators = _rows(
            self.conn, "SELECT name FROM operators WHERE cost_plan_id = %s ORDER BY 1", (plan["id"],)
        )
        return [r["system_id"] for r in partners], [r["name"] for r in operators]

    def change(self, name: str, *, description: str | None = None, currency: str | None = None) -> Plan:
        """Change the description, or the currency of a plan with no rows yet (its prices are in its
        currency: import them again after a change).  The kind never changes (a partner's price plan would
        turn into a cost plan under it): add another plan."""
        plan = self._get_row(name, lock=True)
        values: dict[str, Any] = {}
        if description is not None:
            values["description"] = description
        if currency is not None and parse_currency(currency) != plan["currency"]:
            if _rows(self.conn, "SELECT 1 FROM plan_rows WHERE plan_id = %s LIMIT 1", (plan["id"],)):
                raise ValueError(
                    f"plan {name!r} has rows priced in {plan['currency']}: its currency cannot change "
                    "(add a plan in the new currency and assign it)"
                )
            values["currency"] = parse_currency(currency)
        if not values:
            return _plan(plan)
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
        q = sql.SQL("UPDATE plans SET {}, updated_at = now() WHERE id = %s RETURNING *").format(sets)
        return _plan(_rows(self.conn, q, [*values.values(), plan["id"]])[0])

    def remove(self, name: str) -> None:
        """Remove a plan and its rows; refused (:class:`PlanInUse`) while a partner or operator has it."""
        self._get_row(name, lock=True)
        partners, operators = self.users(name)
        if partners or operators:
            whose = [f"partner(s) {', '.join(partners)}"] if partners else []
            whose += [f"operator(s) {', '.join(operators)}"] if operators else []
            raise PlanInUse(f"plan {name!r} is assigned to {' and '.join(whose)}: assign another plan first")
        _rows(self.conn, "DELETE FROM plans WHERE name = %s", (name,))

    # ------------------------------------------------------------------ rows

    def import_csv(self, name: str, text: str) -> int:
        """Replace all rows of plan ``name`` by those of a plan CSV (docs/dev/billing.md); returns how many.
        The file is checked whole first (:class:`catalyst_smpp.billing.plans.PlanCsvError` naming line and
        column); the replacement is one savepoint, so a refusal leaves the old rows in place."""
        from ..billing.plans import parse_csv

        plan = self._get_row(name, lock=True)
        rows = parse_csv(text, plan["currency"])
        with self.conn.transaction():
            self.conn.execute("DELETE FROM plan_rows WHERE plan_id = %s", (plan["id"],))
            cols = ", ".join(("plan_id", *_ROW_COLS))
            with self.conn.cursor() as cur, cur.copy(f"COPY plan_rows ({cols}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(
                        (
                            plan["id"],
                            r.prefix,
                            r.country,
                            r.network,
                            r.mcc_mnc,
                            r.submit_price.amount,
                            None if r.delivery_price is None else r.delivery_price.amount,
                            r.effective_from,
                            r.effective_until,
                        )
                    )
            self.conn.execute("UPDATE plans SET updated_at = now() WHERE id = %s", (plan["id"],))
        return len(rows)

    def export_csv(self, name: str, *, at: dt.datetime | None = None) -> str:
        """The plan's rows (all, or those in effect at ``at``) as a plan CSV that :meth:`import_csv` takes."""
        from ..billing.plans import format_csv

        plan = self._get_row(name)
        return format_csv(self._plan_rows(plan["id"], plan["currency"], at))

    # ------------------------------------------------------------------ snapshot

    def snapshot_plans(self) -> builtins.list[Plan]:
        """Every plan with its rows in effect now or later (``effective_until`` open or after now): what a
        gateway prices with until its next reload.  Rows only leave the set as time passes, so a snapshot
        never misses a row that starts later."""
        plans = {r["id"]: r for r in _rows(self.conn, "SELECT * FROM plans ORDER BY name")}
        by_plan: dict[int, builtins.list[PlanRow]] = {pid: [] for pid in plans}
        q = (
            f"SELECT plan_id, {', '.join(_ROW_COLS)} FROM plan_rows"
            " WHERE effective_until IS NULL OR effective_until > now()" + _ROW_ORDER
        )
        for r in _rows(self.conn, q):
            by_plan[r["plan_id"]].append(_plan_row(r, plans[r["plan_id"]]["currency"]))
        return [_plan(p, tuple(by_plan[pid])) for pid, p in plans.items()]
