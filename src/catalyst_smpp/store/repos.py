"""Repositories: synchronous CRUD over one psycopg connection.

Used directly by the CLI (``with psycopg.connect(dsn) as conn: PartnerRepo(conn).add(...)``) and by
the gateway through :meth:`catalyst_smpp.store.Database.run`, which runs a function in a worker
thread inside a transaction.  Every change to partners/operators/routes bumps ``config_version``
and sends ``NOTIFY catalyst_config`` (database triggers), which :mod:`.watch` turns into reloads.
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import logging
import operator
import re
import types
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, NamedTuple

import attrs
import psycopg
from psycopg import sql

from .passwords import hash_password
from .plan_repo import PlanRepo
from .records import (
    MAX_STATUS_32,
    ConfigSnapshot,
    MessageEvent,
    MoRoute,
    Operator,
    Partner,
    Route,
    RouteTarget,
    parse_command_status,
    parse_command_statuses,
)
from .rows import NotFound, _rows
from .webhook_repo import WebhookRepo

__all__ = [
    "DuplicateRoute",
    "LogRow",
    "MessageLogRepo",
    "MoRouteRepo",
    "NotFound",
    "OperatorRepo",
    "PartnerRepo",
    "RouteRepo",
    "load_snapshot",
]

log = logging.getLogger(__name__)


class DuplicateRoute(ValueError):
    """An enabled route (or MO route) the router could not tell from an existing enabled one; ``existing``
    is that one's id (None when it went away before it could be named)."""

    def __init__(self, message: str, existing: int | None) -> None:
        super().__init__(message)
        self.existing = existing


class _Identity(NamedTuple):
    """What makes two enabled routes of ``table`` the same route to the router; the unique index
    ``unique_index`` (migration 0007) enforces it and ``twin`` finds the existing one (NULL and '' source
    filters alike)."""

    label: str  # in messages
    table: str
    unique_index: str
    columns: dict[str, Any]  # identity column -> its default on insert
    twin: sql.SQL  # placeholders: {id} (the route written, 0 when new) and each identity column
    text: str  # the identity, for the message


_ROUTE_IDENTITY = _Identity(
    "route",
    "routes",
    "routes_identity",
    {"partner_id": None, "dest_prefix": "", "priority": 0, "source_prefix": None, "source_regex": None},
    sql.SQL(
        "SELECT id FROM routes WHERE enabled AND id <> {id}"
        " AND coalesce(partner_id, 0) = coalesce({partner_id}::bigint, 0)"
        " AND dest_prefix = {dest_prefix} AND priority = {priority}"
        " AND coalesce(source_prefix, '') = coalesce({source_prefix}::text, '')"
        " AND coalesce(source_regex, '') = coalesce({source_regex}::text, '') ORDER BY id LIMIT 1"
    ),
    "partner, destination prefix, priority and source filter",
)
_MO_ROUTE_IDENTITY = _Identity(
    "MO route",
    "mo_routes",
    "mo_routes_identity",
    {"dest_prefix": "", "priority": 0, "source_prefix": ""},
    sql.SQL(
        "SELECT id FROM mo_routes WHERE enabled AND id <> {id} AND dest_prefix = {dest_prefix}"
        " AND priority = {priority} AND source_prefix = {source_prefix} ORDER BY id LIMIT 1"
    ),
    "destination prefix, priority and source prefix",
)


def _write_route(
    conn: psycopg.Connection[Any],
    ident: _Identity,
    q: sql.Composed,
    params: Sequence[Any],
    route_id: int | None,
    written: Mapping[str, Any],
) -> list[dict[str, Any]]:
    """Run the INSERT/UPDATE ``q`` of route ``route_id`` (None: a new one) in a savepoint; a twin of an
    enabled route (the index ``ident.unique_index``) is refused with :class:`DuplicateRoute` naming that
    route.  The twin found is the one that made the write fail: it committed first, also when two admins
    write at once."""
    try:
        with conn.transaction():
            return _rows(conn, q, params)
    except psycopg.errors.UniqueViolation as e:
        if e.diag.constraint_name != ident.unique_index:
            raise
        wanted = dict(ident.columns)
        if route_id is not None:  # a change: the row's own values, then the written ones
            q_row = sql.SQL("SELECT * FROM {} WHERE id = %s").format(sql.Identifier(ident.table))
            row = _rows(conn, q_row, (route_id,))
            wanted.update({k: row[0][k] for k in wanted} if row else {})
        wanted.update({k: v for k, v in written.items() if k in wanted})
        lookup = ident.twin.format(id=route_id or 0, **{k: sql.Literal(v) for k, v in wanted.items()})
        rows = _rows(conn, lookup)
        twin = int(rows[0]["id"]) if rows else None
        name = f"{ident.label} {twin}" if twin is not None else f"another enabled {ident.label}"
        raise DuplicateRoute(
            f"{name} has the same {ident.text} (the router could never choose a second one): "
            f"change or disable {name} first",
            twin,
        ) from None


def _check_fields(fields: Mapping[str, Any], allowed: Mapping[str, str], what: str) -> None:
    bad = sorted(set(fields) - set(allowed))
    if bad:
        raise ValueError(f"unknown {what} field(s) {', '.join(bad)}; allowed: {', '.join(sorted(allowed))}")


# field name in records -> column
_PARTNER_COLS = {
    "allowed_ips": "allowed_ips",
    "max_binds": "max_binds",
    "throttle_rate": "throttle_rate",
    "throttle_burst": "throttle_burst",
    "window": "window_size",
    "message_id_format": "message_id_format",
    "data_coding_0": "data_coding_0",
    "receipt_date_digits": "receipt_date_digits",
    "price_plan": "price_plan_id",
    "charge_on": "charge_on",
    "insufficient_credit_status": "insufficient_credit_status",
    "margin_guard": "margin_guard",
    "enabled": "enabled",
    "description": "description",
}
# the plan's name next to the row (price_plan_id / cost_plan_id are ids; records carry names)
_PARTNER_SELECT = "SELECT *, (SELECT name FROM plans WHERE id = price_plan_id) AS price_plan FROM partners"
_PARTNER_RETURNING = " RETURNING *, (SELECT name FROM plans WHERE id = partners.price_plan_id) AS price_plan"
_OPERATOR_SELECT = "SELECT *, (SELECT name FROM plans WHERE id = cost_plan_id) AS cost_plan FROM operators"
_OPERATOR_RETURNING = " RETURNING *, (SELECT name FROM plans WHERE id = operators.cost_plan_id) AS cost_plan"


def _plan_id(conn: psycopg.Connection[Any], name: str | None, kind: str, whose: str) -> int | None:
    """The id of plan ``name`` of ``kind`` ('price' for partners, 'cost' for operators); None/"" = none."""
    if not name:
        return None
    rows = _rows(conn, "SELECT id, kind FROM plans WHERE name = %s", (name,))
    if not rows:
        raise NotFound(f"no plan {name!r}")
    if rows[0]["kind"] != kind:
        raise ValueError(f"plan {name!r} is a {rows[0]['kind']} plan; {whose} needs a {kind} plan")
    return int(rows[0]["id"])


def _partner_values(conn: psycopg.Connection[Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    values: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "allowed_ips":
            v = _ips(v)
        elif k == "price_plan":
            v = _plan_id(conn, v, "price", "a partner")
        elif k == "insufficient_credit_status":
            v = parse_command_status(v, maximum=MAX_STATUS_32)
        values[_PARTNER_COLS[k]] = v
    return values


def _partner(row: Mapping[str, Any]) -> Partner:
    return Partner(
        id=row["id"],
        system_id=row["system_id"],
        password_hash=row["password_hash"],
        allowed_ips=tuple(row["allowed_ips"] or ()),
        max_binds=row["max_binds"],
        throttle_rate=row["throttle_rate"],
        throttle_burst=row["throttle_burst"],
        window=row["window_size"],
        message_id_format=row["message_id_format"],
        data_coding_0=row["data_coding_0"],
        receipt_date_digits=row["receipt_date_digits"],
        price_plan=row.get("price_plan"),
        charge_on=row["charge_on"],
        insufficient_credit_status=row["insufficient_credit_status"],
        margin_guard=row["margin_guard"],
        enabled=row["enabled"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


def _ips(
    value: Iterable[str | ipaddress.IPv4Network | ipaddress.IPv6Network],
) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    return [v if not isinstance(v, str) else ipaddress.ip_network(v, strict=False) for v in value]


class PartnerRepo:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def add(self, system_id: str, password: str, **fields: Any) -> Partner:
        _check_fields(fields, _PARTNER_COLS, "partner")
        if len(password) > 8:
            raise ValueError("SMPP passwords are at most 8 characters")
        values: dict[str, Any] = {"system_id": system_id, "password_hash": hash_password(password)}
        values.update(_partner_values(self.conn, fields))
        cols = list(values)
        q = sql.SQL("INSERT INTO partners ({}) VALUES ({})" + _PARTNER_RETURNING).format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))
        )
        return _partner(_rows(self.conn, q, [values[c] for c in cols])[0])

    def get(self, system_id: str) -> Partner | None:
        rows = _rows(self.conn, _PARTNER_SELECT + " WHERE system_id = %s", (system_id,))
        return _partner(rows[0]) if rows else None

    def list(self, *, enabled_only: bool = False) -> list[Partner]:
        where = " WHERE enabled" if enabled_only else ""
        return [_partner(r) for r in _rows(self.conn, f"{_PARTNER_SELECT}{where} ORDER BY system_id")]

    def change(self, system_id: str, *, password: str | None = None, **fields: Any) -> Partner:
        """Change settings (and/or the password) of an existing partner."""
        _check_fields(fields, _PARTNER_COLS, "partner")
        values = _partner_values(self.conn, fields)
        if password is not None:
            if len(password) > 8:
                raise ValueError("SMPP passwords are at most 8 characters")
            values["password_hash"] = hash_password(password)
        if not values:
            p = self.get(system_id)
            if p is None:
                raise NotFound(f"no partner {system_id!r}")
            return p
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
        q = sql.SQL(
            "UPDATE partners SET {}, updated_at = now() WHERE system_id = %s" + _PARTNER_RETURNING
        ).format(sets)
        rows = _rows(self.conn, q, [*values.values(), system_id])
        if not rows:
            raise NotFound(f"no partner {system_id!r}")
        return _partner(rows[0])

    def disable(self, system_id: str) -> Partner:
        return self.change(system_id, enabled=False)

    def enable(self, system_id: str) -> Partner:
        return self.change(system_id, enabled=True)

    def delete(self, system_id: str) -> bool:
        return bool(_rows(self.conn, "DELETE FROM partners WHERE system_id = %s RETURNING id", (system_id,)))


_OPERATOR_COLS = {
    "host": "host",
    "port": "port",
    "tls": "tls",
    "system_id": "system_id",
    "password": "password",
    "system_type": "system_type",
    "bind_type": "bind_type",
    "bind_count": "bind_count",
    "window": "window_size",
    "tps": "tps",
    "data_coding_0": "data_coding_0",
    "segmentation": "segmentation",
    "submit_id_format": "submit_id_format",
    "receipt_id_format": "receipt_id_format",
    "temporary_statuses": "temporary_statuses",
    "receipt_parts": "receipt_parts",
    "receipt_request": "receipt_request",
    "tls_ca_file": "tls_ca_file",
    "tls_server_name": "tls_server_name",
    "receipts_by_text": "receipts_by_text",
    "cost_plan": "cost_plan_id",
    "enabled": "enabled",
    "description": "description",
}


def _operator_values(conn: psycopg.Connection[Any], fields: Mapping[str, Any]) -> dict[str, Any]:
    """Record fields → column values (``temporary_statuses``: ints or "0x401" strings → a sorted int list;
    ``cost_plan``: a cost plan's name → its id)."""
    values: dict[str, Any] = {}
    for k, v in fields.items():
        if k == "temporary_statuses":
            v = list(parse_command_statuses(v))
        elif k == "cost_plan":
            v = _plan_id(conn, v, "cost", "an operator")
        values[_OPERATOR_COLS[k]] = v
    return values


def _operator(row: Mapping[str, Any]) -> Operator:
    return Operator(
        id=row["id"],
        name=row["name"],
        host=row["host"],
        port=row["port"],
        system_id=row["system_id"],
        password=row["password"],
        system_type=row["system_type"],
        tls=row["tls"],
        bind_type=row["bind_type"],
        bind_count=row["bind_count"],
        window=row["window_size"],
        tps=row["tps"],
        data_coding_0=row["data_coding_0"],
        segmentation=row["segmentation"],
        submit_id_format=row["submit_id_format"],
        receipt_id_format=row["receipt_id_format"],
        temporary_statuses=tuple(row["temporary_statuses"] or ()),
        receipt_parts=row["receipt_parts"],
        receipt_request=row["receipt_request"],
        tls_ca_file=row["tls_ca_file"],
        tls_server_name=row["tls_server_name"],
        receipts_by_text=row["receipts_by_text"],
        cost_plan=row.get("cost_plan"),
        enabled=row["enabled"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class OperatorRepo:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def add(self, name: str, host: str, port: int, system_id: str, **fields: Any) -> Operator:
        _check_fields(fields, _OPERATOR_COLS, "operator")
        values: dict[str, Any] = {"name": name, "host": host, "port": port, "system_id": system_id}
        values.update(_operator_values(self.conn, fields))
        cols = list(values)
        q = sql.SQL("INSERT INTO operators ({}) VALUES ({})" + _OPERATOR_RETURNING).format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))
        )
        return _operator(_rows(self.conn, q, [values[c] for c in cols])[0])

    def get(self, name: str) -> Operator | None:
        rows = _rows(self.conn, _OPERATOR_SELECT + " WHERE name = %s", (name,))
        return _operator(rows[0]) if rows else None

    def list(self, *, enabled_only: bool = False) -> list[Operator]:
        where = " WHERE enabled" if enabled_only else ""
        return [_operator(r) for r in _rows(self.conn, f"{_OPERATOR_SELECT}{where} ORDER BY name")]

    def change(self, name: str, **fields: Any) -> Operator:
        _check_fields(fields, _OPERATOR_COLS, "operator")
        if not fields:
            o = self.get(name)
            if o is None:
                raise NotFound(f"no operator {name!r}")
            return o
        values = _operator_values(self.conn, fields)
        sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
        q = sql.SQL(
            "UPDATE operators SET {}, updated_at = now() WHERE name = %s" + _OPERATOR_RETURNING
        ).format(sets)
        rows = _rows(self.conn, q, [*values.values(), name])
        if not rows:
            raise NotFound(f"no operator {name!r}")
        return _operator(rows[0])

    def disable(self, name: str) -> Operator:
        return self.change(name, enabled=False)

    def enable(self, name: str) -> Operator:
        return self.change(name, enabled=True)

    def delete(self, name: str) -> bool:
        """Fails (psycopg.errors.ForeignKeyViolation) while a route still uses the operator."""
        return bool(_rows(self.conn, "DELETE FROM operators WHERE name = %s RETURNING id", (name,)))


_ROUTE_SELECT = """
SELECT r.*, p.system_id AS partner_system_id,
       coalesce(array_agg(o.name ORDER BY ro.position) FILTER (WHERE o.id IS NOT NULL), '{}') AS t_names,
       coalesce(array_agg(ro.position ORDER BY ro.position) FILTER (WHERE o.id IS NOT NULL), '{}') AS t_pos,
       coalesce(array_agg(ro.weight ORDER BY ro.position) FILTER (WHERE o.id IS NOT NULL), '{}') AS t_weights
FROM routes r
LEFT JOIN partners p ON p.id = r.partner_id
LEFT JOIN route_operators ro ON ro.route_id = r.id
LEFT JOIN operators o ON o.id = ro.operator_id
"""
# by id: the order the router evaluates routes in is catalyst_smpp.gateway.routing.route_order_key's
_ROUTE_GROUP = " GROUP BY r.id, p.system_id ORDER BY r.id"

TargetSpec = str | tuple[str, int] | RouteTarget


def _route(row: Mapping[str, Any]) -> Route:
    targets = tuple(
        RouteTarget(n, p, w) for n, p, w in zip(row["t_names"], row["t_pos"], row["t_weights"], strict=True)
    )
    return Route(
        id=row["id"],
        partner=row["partner_system_id"],
        dest_prefix=row["dest_prefix"],
        source_prefix=row["source_prefix"],
        source_regex=row["source_regex"],
        priority=row["priority"],
        strategy=row["strategy"],
        enabled=row["enabled"],
        description=row["description"],
        targets=targets,
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


_ROUTE_COLS = (
    "dest_prefix",
    "source_prefix",
    "source_regex",
    "priority",
    "strategy",
    "enabled",
    "description",
)


class RouteRepo:
    """MT routes.  An enabled route with the partner scope, dest_prefix, priority and source filter of another
    enabled one is refused (:class:`DuplicateRoute`, naming it): the router could never choose the later one.
    ``list()`` is by id; :func:`catalyst_smpp.gateway.routing.route_order_key` gives the router's order."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _partner_id(self, partner: str | None) -> int | None:
        if partner is None:
            return None
        rows = _rows(self.conn, "SELECT id FROM partners WHERE system_id = %s", (partner,))
        if not rows:
            raise NotFound(f"no partner {partner!r}")
        return int(rows[0]["id"])

    def _set_targets(self, route_id: int, targets: Sequence[TargetSpec]) -> None:
        if not targets:
            raise ValueError("a route needs at least one operator")
        specs: list[tuple[str, int]] = []
        for t in targets:
            if isinstance(t, RouteTarget):
                specs.append((t.operator, t.weight))
            elif isinstance(t, tuple):
                specs.append((t[0], int(t[1])))
            else:
                specs.append((t, 1))
        names = [n for n, _ in specs]
        if len(set(names)) != len(names):
            raise ValueError("an operator appears twice in the route")
        ids = {
            r["name"]: r["id"]
            for r in _rows(self.conn, "SELECT id, name FROM operators WHERE name = ANY(%s)", (names,))
        }
        missing = [n for n in names if n not in ids]
        if missing:
            raise NotFound(f"no operator(s) {', '.join(missing)}")
        self.conn.execute("DELETE FROM route_operators WHERE route_id = %s", (route_id,))
        with self.conn.cursor() as cur:
            cur.executemany(
                "INSERT INTO route_operators (route_id, operator_id, position, weight)"
                " VALUES (%s, %s, %s, %s)",
                [(route_id, ids[n], i, w) for i, (n, w) in enumerate(specs)],
            )

    @staticmethod
    def _validate(fields: Mapping[str, Any]) -> None:
        rx = fields.get("source_regex")
        if rx is not None:
            try:
                re.compile(rx)
            except re.error as e:
                raise ValueError(f"source_regex does not compile: {e}") from None

    def add(
        self, partner: str | None, dest_prefix: str, operators: Sequence[TargetSpec], **fields: Any
    ) -> Route:
        """``operators``: names in failover order, or ``(name, weight)`` pairs for strategy='weighted'."""
        _check_fields(fields, dict.fromkeys(_ROUTE_COLS[1:], ""), "route")
        self._validate(fields)
        values: dict[str, Any] = {
            "partner_id": self._partner_id(partner),
            "dest_prefix": dest_prefix,
            **fields,
        }
        cols = list(values)
        q = sql.SQL("INSERT INTO routes ({}) VALUES ({}) RETURNING id").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))
        )
        rid = int(
            _write_route(self.conn, _ROUTE_IDENTITY, q, [values[c] for c in cols], None, values)[0]["id"]
        )
        self._set_targets(rid, operators)
        r = self.get(rid)
        assert r is not None
        return r

    def get(self, route_id: int) -> Route | None:
        rows = _rows(self.conn, _ROUTE_SELECT + " WHERE r.id = %s" + _ROUTE_GROUP, (route_id,))
        return _route(rows[0]) if rows else None

    def list(self, *, partner: str | None = None, enabled_only: bool = False) -> list[Route]:
        conds, params = [], []
        if partner is not None:
            conds.append("(p.system_id = %s OR r.partner_id IS NULL)")
            params.append(partner)
        if enabled_only:
            conds.append("r.enabled")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        return [_route(r) for r in _rows(self.conn, _ROUTE_SELECT + where + _ROUTE_GROUP, params)]

    def change(
        self,
        route_id: int,
        *,
        operators: Sequence[TargetSpec] | None = None,
        partner: str | types.EllipsisType | None = ...,
        **fields: Any,
    ) -> Route:
        _check_fields(fields, dict.fromkeys(_ROUTE_COLS, ""), "route")
        self._validate(fields)
        values = dict(fields)
        if partner is not ...:
            values["partner_id"] = self._partner_id(partner)
        if values:
            sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
            q = sql.SQL("UPDATE routes SET {}, updated_at = now() WHERE id = %s RETURNING id").format(sets)
            if not _write_route(
                self.conn, _ROUTE_IDENTITY, q, [*values.values(), route_id], route_id, values
            ):
                raise NotFound(f"no route {route_id}")
        elif self.get(route_id) is None:
            raise NotFound(f"no route {route_id}")
        if operators is not None:
            self._set_targets(route_id, operators)
        r = self.get(route_id)
        assert r is not None
        return r

    def disable(self, route_id: int) -> Route:
        return self.change(route_id, enabled=False)

    def enable(self, route_id: int) -> Route:
        return self.change(route_id, enabled=True)

    def delete(self, route_id: int) -> bool:
        return bool(_rows(self.conn, "DELETE FROM routes WHERE id = %s RETURNING id", (route_id,)))


_MO_ROUTE_COLS = ("dest_prefix", "source_prefix", "priority", "enabled", "description")
_MO_ROUTE_SELECT = (
    "SELECT m.*, p.system_id AS partner_system_id FROM mo_routes m JOIN partners p ON p.id = m.partner_id"
)
# by id: the order the router evaluates MO routes in is catalyst_smpp.gateway.routing.mo_route_order_key's
_MO_ROUTE_ORDER = " ORDER BY m.id"


def _mo_route(row: Mapping[str, Any]) -> MoRoute:
    return MoRoute(
        id=row["id"],
        dest_prefix=row["dest_prefix"],
        partner=row["partner_system_id"],
        source_prefix=row["source_prefix"],
        priority=row["priority"],
        enabled=row["enabled"],
        description=row["description"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
    )


class MoRouteRepo:
    """MO routes (destination prefix → partner).  An enabled MO route with the dest_prefix, priority and
    source_prefix of another enabled one is refused (:class:`DuplicateRoute`, naming it).  ``list()`` is by
    id; :func:`catalyst_smpp.gateway.routing.mo_route_order_key` gives the router's order."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _partner_id(self, partner: str) -> int:
        rows = _rows(self.conn, "SELECT id FROM partners WHERE system_id = %s", (partner,))
        if not rows:
            raise NotFound(f"no partner {partner!r}")
        return int(rows[0]["id"])

    def add(self, dest_prefix: str, partner: str, **fields: Any) -> MoRoute:
        _check_fields(fields, dict.fromkeys(_MO_ROUTE_COLS[1:], ""), "MO route")
        pid = self._partner_id(partner)
        values: dict[str, Any] = {"dest_prefix": dest_prefix, "partner_id": pid, **fields}
        cols = list(values)
        q = sql.SQL("INSERT INTO mo_routes ({}) VALUES ({}) RETURNING id").format(
            sql.SQL(", ").join(map(sql.Identifier, cols)), sql.SQL(", ").join(sql.Placeholder() * len(cols))
        )
        rid = int(
            _write_route(self.conn, _MO_ROUTE_IDENTITY, q, [values[c] for c in cols], None, values)[0]["id"]
        )
        r = self.get(rid)
        assert r is not None
        return r

    def get(self, route_id: int) -> MoRoute | None:
        rows = _rows(self.conn, _MO_ROUTE_SELECT + " WHERE m.id = %s", (route_id,))
        return _mo_route(rows[0]) if rows else None

    def list(self, *, partner: str | None = None, enabled_only: bool = False) -> list[MoRoute]:
        conds, params = [], []
        if partner is not None:
            conds.append("p.system_id = %s")
            params.append(partner)
        if enabled_only:
            conds.append("m.enabled")
        where = (" WHERE " + " AND ".join(conds)) if conds else ""
        return [_mo_route(r) for r in _rows(self.conn, _MO_ROUTE_SELECT + where + _MO_ROUTE_ORDER, params)]

    def change(self, route_id: int, *, partner: str | None = None, **fields: Any) -> MoRoute:
        _check_fields(fields, dict.fromkeys(_MO_ROUTE_COLS, ""), "MO route")
        values = dict(fields)
        if partner is not None:
            values["partner_id"] = self._partner_id(partner)
        if values:
            sets = sql.SQL(", ").join(sql.SQL("{} = %s").format(sql.Identifier(c)) for c in values)
            q = sql.SQL("UPDATE mo_routes SET {}, updated_at = now() WHERE id = %s RETURNING id").format(sets)
            params = [*values.values(), route_id]
            if not _write_route(self.conn, _MO_ROUTE_IDENTITY, q, params, route_id, values):
                raise NotFound(f"no MO route {route_id}")
        r = self.get(route_id)
        if r is None:
            raise NotFound(f"no MO route {route_id}")
        return r

    def disable(self, route_id: int) -> MoRoute:
        return self.change(route_id, enabled=False)

    def enable(self, route_id: int) -> MoRoute:
        return self.change(route_id, enabled=True)

    def delete(self, route_id: int) -> bool:
        return bool(_rows(self.conn, "DELETE FROM mo_routes WHERE id = %s RETURNING id", (route_id,)))


def config_version(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("SELECT version FROM config_version").fetchone()
    return int(row[0]) if row else 0


def load_snapshot(conn: psycopg.Connection[Any]) -> ConfigSnapshot:
    """Partners, operators, routes, plans and the change counter, consistent with each other.

    Run inside a REPEATABLE READ transaction (``Database.snapshot()`` does) for a consistent view.
    """
    return ConfigSnapshot(
        version=config_version(conn),
        partners=tuple(PartnerRepo(conn).list()),
        operators=tuple(OperatorRepo(conn).list()),
        routes=tuple(RouteRepo(conn).list()),
        mo_routes=tuple(MoRouteRepo(conn).list()),
        plans=tuple(PlanRepo(conn).snapshot_plans()),
        webhooks=tuple(WebhookRepo(conn).list()),
    )


_LOG_COLS = tuple(f.name for f in attrs.fields(MessageEvent))
"""The message log's columns: :class:`MessageEvent`'s fields, in its order (the one declaration of a row)."""
_AT = _LOG_COLS.index("event_at")


# what Postgres refuses in a row: NUL in text (DataError), a lone surrogate (UnicodeEncodeError while the
# COPY text is encoded), a number out of its column's range (DataError), a NULL in a NOT NULL column
# (NotNullViolation: a row with e.g. partner None), a value that has no COPY text (_Unformattable)
class _Unformattable(ValueError):
    """A log row that cannot be turned into COPY text (wrong length, an event_at that is no time)."""


_UNSTORABLE = (psycopg.DataError, UnicodeEncodeError, psycopg.errors.NotNullViolation, _Unformattable)

LogRow = Sequence[Any]
"""A message log row: the columns of :data:`_LOG_COLS` in that order (the order of
:class:`MessageEvent`'s fields); ``event_at`` as unix seconds (float or int) or a datetime."""

_NCOLS = len(_LOG_COLS)
_NULL = "\\N"
_count_none = operator.methodcaller("count", None)
_EPOCH_NAIVE = dt.datetime(1970, 1, 1)
_SECOND_TEXT: dict[int, str] = {}
"""Unix second → ``"YYYY-MM-DD HH:MM:SS"`` (UTC): a batch's rows share a few seconds."""


def _second_text(sec: int) -> str:
    text = _SECOND_TEXT.get(sec)
    if text is None:
        if len(_SECOND_TEXT) >= 4096:
            _SECOND_TEXT.clear()
        text = _SECOND_TEXT[sec] = (_EPOCH_NAIVE + dt.timedelta(seconds=sec)).isoformat(" ")
    return text


def _timestamp_text(at: Any) -> str:
    """``event_at`` as timestamptz input: unix seconds are rounded to the microsecond exactly as
    ``datetime.fromtimestamp`` does (half to even); a datetime goes as psycopg would send it."""
    if type(at) is float or type(at) is int:
        sec = int(at)
        us = round((at - sec) * 1e6)
        if us >= 1_000_000:
            sec += 1
            us -= 1_000_000
        elif us < 0:
            sec -= 1
            us += 1_000_000
        return f"{_second_text(sec)}.{us:06d}+00"
    if isinstance(at, dt.datetime):
        return at.isoformat()
    raise TypeError(f"event_at {at!r} is no time")


def copy_timestamp(at: Any) -> str:
    """A time (unix seconds or a datetime) as COPY text for a timestamptz column, exactly as the message
    log writes its ``event_at`` (so other tables written from the same rows agree with it)."""
    return _timestamp_text(at)


def _copy_text_fast(rows: Sequence[LogRow]) -> str | None:
    """COPY text for ``rows`` when every row is plain (text columns str, nullable ones str or None, no
    backslash/tab/newline/CR in any value), else None.  One ``join`` per row (a None in a NOT NULL column
    fails it as Postgres would), checked once per batch: the separators counted must be the ones written,
    and the only backslashes the ``\\N`` of the Nones."""
    out: list[str] = []
    ap = out.append
    ts = _timestamp_text
    seconds = _SECOND_TEXT
    join = "\t".join
    null = _NULL
    at_i = _AT
    try:
        for r in rows:
            at = r[at_i]
            if type(at) is float:  # the common case inline: a second already formatted
                sec = int(at)
                us = round((at - sec) * 1e6)
                base = seconds.get(sec)
                t = f"{base}.{us:06d}+00" if base is not None and 0 <= us < 1_000_000 else ts(at)
            else:
                t = ts(at)
            values = [null if v is None else v for v in r]
            values[at_i] = t
            ap(join(map(str, values)))
        nulls = sum(map(_count_none, rows))
    except (TypeError, ValueError, OverflowError):
        return None
    n = len(out)
    out.append("")
    data = "\n".join(out)
    if (
        data.count("\t") != (_NCOLS - 1) * n
        or data.count("\n") != n
        or "\r" in data
        or data.count("\\") != nulls
    ):
        return None
    return data


def _copy_field(v: Any) -> str:
    if v is None:
        return "\\N"
    s = v if type(v) is str else str(v)
    if "\\" in s or "\t" in s or "\n" in s or "\r" in s:
        s = s.replace("\\", "\\\\").replace("\t", "\\t").replace("\n", "\\n").replace("\r", "\\r")
    return s


def _copy_line(r: LogRow) -> str:
    if len(r) != _NCOLS:
        raise _Unformattable(f"a log row has {_NCOLS} values, not {len(r)}")
    try:
        at = _timestamp_text(r[2])
    except (TypeError, ValueError, OverflowError) as exc:
        raise _Unformattable(f"event_at: {exc}") from None
    fields = [_copy_field(v) for v in r]
    fields[2] = at
    return "\t".join(fields) + "\n"


def copy_text(rows: Sequence[LogRow]) -> str:
    """The COPY (text format) data of ``rows`` (:data:`LogRow`) for :data:`_LOG_COLS`: values escaped
    (backslash, tab, newline, carriage return), None as ``\\N``, other values as their ``str``.  Raises
    a ValueError for a row that has no COPY text."""
    data = _copy_text_fast(rows)
    if data is None:
        data = "".join([_copy_line(r) for r in rows])
    return data


def _storable_row(r: LogRow) -> LogRow:
    """``r`` with every text value Postgres can store (NUL → U+FFFD, a lone surrogate → "?")."""
    return tuple([_clean_text(v) for v in r])


def _clean_text(v: Any) -> Any:
    if isinstance(v, str):
        return v.encode("utf-8", "replace").decode("utf-8").replace("\x00", "\ufffd")
    return v


def _row_key(r: LogRow) -> tuple[Any, Any]:
    return (r[0] if len(r) > 0 else None, r[1] if len(r) > 1 else None)


def _event_row(e: MessageEvent) -> LogRow:
    return attrs.astuple(e, recurse=False)


class MessageLogRepo:
    """Message/CDR log, written in batches with COPY; idempotent on (message_id, event)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def write(self, events: Iterable[MessageEvent]) -> int:
        """Insert a batch of events; see :meth:`write_rows`."""
        return self.write_rows([_event_row(e) for e in events])

    def write_rows(self, rows: Iterable[LogRow]) -> int:
        """Insert a batch of rows (:data:`LogRow`: the :class:`MessageEvent` fields in order, ``event_at``
        as unix seconds or a datetime); rows whose (message_id, event) already exist are skipped.  Returns
        rows inserted.

        Fast path: the batch's COPY text built at once (:func:`copy_text`), COPY straight into message_log
        inside a savepoint.  If any row is a duplicate (a replay after a crash), the savepoint is rolled
        back and the batch goes through a temporary table with INSERT ... ON CONFLICT DO NOTHING.  Must run
        inside a transaction.

        A row Postgres cannot store (a NUL or a lone surrogate in a text field, e.g. an operator's
        receipt ``err:`` with a NUL in it) must not stall the log: the writer would retry the batch
        for ever.  So the batch is written again with such characters replaced (NUL by U+FFFD, a lone
        surrogate by "?"), and if it still fails, row by row, dropping (and logging) only the rows that
        cannot be stored.
        """
        batch = rows if isinstance(rows, list) else list(rows)
        if not batch:
            return 0
        try:
            return self._write(batch)
        except _UNSTORABLE as exc:
            log.warning("message log batch of %d rows refused (%s); writing it with text cleaned", len(batch),
                        exc)  # fmt: skip
        batch = [_storable_row(r) for r in batch]
        try:
            return self._write(batch)
        except _UNSTORABLE:
            pass
        n = 0
        for r in batch:
            try:
                n += self._write([r])
            except _UNSTORABLE as exc:
                log.error("message log: event %s/%s cannot be stored, dropped: %s", *_row_key(r), exc)
        return n

    def _write(self, rows: list[LogRow]) -> int:
        data = copy_text(rows)
        try:
            with self.conn.transaction():  # savepoint
                self._copy("message_log", data)
            return len(rows)
        except psycopg.errors.UniqueViolation:
            pass
        cols = ", ".join(_LOG_COLS)
        with self.conn.transaction():  # savepoint: a refused row leaves the caller's transaction usable
            self.conn.execute(
                "CREATE TEMP TABLE IF NOT EXISTS _message_log_in (LIKE message_log INCLUDING DEFAULTS) "
                "ON COMMIT DELETE ROWS"
            )
            self._copy("_message_log_in", data)
            with self.conn.cursor() as cur:
                # ON CONFLICT DO NOTHING also skips duplicates within the batch itself
                cur.execute(
                    f"INSERT INTO message_log ({cols}) SELECT {cols} FROM _message_log_in "
                    "ON CONFLICT (message_id, event) DO NOTHING"
                )
                n = cur.rowcount
                cur.execute("TRUNCATE _message_log_in")
        return n

    def _copy(self, table: str, data: str) -> None:
        with self.conn.cursor() as cur, cur.copy(f"COPY {table} ({', '.join(_LOG_COLS)}) FROM STDIN") as copy:
            copy.write(data)

    def for_message(self, message_id: str) -> list[MessageEvent]:
        rows = _rows(
            self.conn,
            f"SELECT {', '.join(_LOG_COLS)} FROM message_log WHERE message_id = %s ORDER BY event_at, event",
            (message_id,),
        )
        return [MessageEvent(**r) for r in rows]

    def count(self, *, since: dt.datetime | None = None) -> int:
        if since is None:
            row = self.conn.execute("SELECT count(*) FROM message_log").fetchone()
        else:
            row = self.conn.execute(
                "SELECT count(*) FROM message_log WHERE event_at >= %s", (since,)
            ).fetchone()
        return int(row[0]) if row else 0
