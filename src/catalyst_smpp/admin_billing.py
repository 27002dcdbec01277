"""Administration of price and cost plans: ``catalyst-smpp plan add|change|list|show|import|export|quote|
remove``.

A module of its own because admin.py is already over 1,200 lines; it uses admin.py's machinery (database
options, error reporting, ``--json`` output, tables) and is registered on the same ``catalyst-smpp`` group by
:func:`catalyst_smpp.admin.register`.  The partners' and operators' plan settings (``--price-plan``,
``--charge-on``, ``--insufficient-credit-status``, ``--margin-guard``, ``--cost-plan``) are options of
``partner`` / ``operator`` add and change, in admin.py with the other settings of those records.
"""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Any

import click

from catalyst_smpp.admin import (
    CONTEXT_SETTINGS,
    LIVE_NOTE,
    _Db,
    _emit,
    _json_option,
    _Kind,
    _show,
    _with_db,
    fail,
    table,
)

__all__ = ["plan_group"]

PLAN = _Kind("plan", "PlanRepo", key_arg="name", key_attr="name")


def _instant(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    from catalyst_smpp.billing.plans import parse_instant

    try:
        return parse_instant(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _amount(money: Any) -> str | None:
    return None if money is None else format(money.amount.normalize(), "f")


def _row_dict(r: Any) -> dict[str, Any]:
    return {
        "prefix": r.prefix,
        "country": r.country,
        "network": r.network,
        "mcc_mnc": r.mcc_mnc,
        "submit_price": _amount(r.submit_price),
        "delivery_price": _amount(r.delivery_price),
        "effective_from": r.effective_from.isoformat(),
        "effective_until": None if r.effective_until is None else r.effective_until.isoformat(),
    }


def _plan_dict(p: Any, *, rows: bool = True) -> dict[str, Any]:
    d: dict[str, Any] = {
        "id": p.id,
        "name": p.name,
        "kind": p.kind,
        "currency": p.currency,
        "description": p.description,
        "created_at": p.created_at.isoformat() if p.created_at else None,
        "updated_at": p.updated_at.isoformat() if p.updated_at else None,
    }
    if rows:
        d["rows"] = [_row_dict(r) for r in p.rows]
    return d


_ROW_HEADERS = ("PREFIX", "COUNTRY", "NETWORK", "MCC_MNC", "SUBMIT", "DELIVERY", "FROM", "UNTIL")


def _row_cells(r: Any) -> tuple[Any, ...]:
    until = r.effective_until.isoformat() if r.effective_until else "open"
    return (
        r.prefix,
        r.country,
        r.network,
        r.mcc_mnc,
        _amount(r.submit_price),
        _amount(r.delivery_price),
        r.effective_from.isoformat(),
        until,
    )


@click.group("plan", context_settings=CONTEXT_SETTINGS)
def plan_group() -> None:
    """Price plans (what partners pay) and cost plans (what operators charge us).

    A plan has a kind (price or cost), a currency and rows: destination prefix, per-part submit and delivery
    prices, and the instants each row applies from and until.  The longest prefix in effect at a message's
    accept time wins.  Rows are loaded with `plan import` from CSV whose header is

    prefix,country,network,mcc_mnc,submit_price,delivery_price,effective_from,effective_until

    Changes take effect on running gateways without a restart."""


@plan_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--kind",
    type=click.Choice(["price", "cost"]),
    required=True,
    help="price: partners pay by it; cost: what an operator charges us.",
)
@click.option(
    "--currency", required=True, help="ISO 4217 code of its prices (EUR); a price plan's is its partners'."
)
@click.option("--description", default="", help="Free text.")
@_with_db
@_json_option("Print the new plan as JSON.")
def plan_add(db: _Db, as_json: bool, name: str, kind: str, currency: str, description: str) -> None:
    """Add plan NAME (letters, digits, '_', '.', '-'); it has no rows until `plan import`."""
    with db.repo(PLAN, name, write=True) as repo:
        p = repo.add(name, kind, currency, description=description)
    _emit(as_json, _plan_dict(p), f"plan {name!r} added ({p.kind}, {p.currency})")


@plan_group.command("change", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option("--description", help="Free text.")
@click.option("--currency", help="New currency; only while the plan has no rows.")
@_with_db
@_json_option("Print the plan as JSON.")
def plan_change(db: _Db, as_json: bool, name: str, description: str | None, currency: str | None) -> None:
    """Change the description (or, while it has no rows, the currency) of plan NAME.  Its kind never
    changes: add another plan and assign that."""
    with db.repo(PLAN, name, write=True) as repo:
        p = repo.change(name, description=description, currency=currency)
    _emit(as_json, _plan_dict(p, rows=False), f"plan {name!r} changed")


@plan_group.command("list", context_settings=CONTEXT_SETTINGS)
@_with_db
@_json_option("JSON instead of a table.")
def plan_list(db: _Db, as_json: bool) -> None:
    """List plans with how many rows each has and who uses it."""
    with db.repo(PLAN, "*") as repo:
        plans = repo.list()
        counts = repo.row_counts()
        users = {p.name: repo.users(p.name) for p in plans}
    data = []
    for p in plans:
        d = _plan_dict(p, rows=False)
        d["row_count"] = counts.get(p.name, 0)
        d["partners"], d["operators"] = users[p.name]
        data.append(d)
    rows = [
        (
            d["name"],
            d["kind"],
            d["currency"],
            d["row_count"],
            ",".join(d["partners"] + d["operators"]),
            d["description"],
        )
        for d in data
    ]
    _emit(as_json, data, table(("NAME", "KIND", "CURRENCY", "ROWS", "USED_BY", "DESCRIPTION"), rows))


@plan_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option(
    "--at",
    callback=_instant,
    metavar="ISO",
    help="Only the rows in effect at this instant "
    "(ISO 8601 with offset, e.g. 2027-01-01T00:00:00+00:00).  Default: every row.",
)
@_with_db
@_json_option("JSON instead of text.")
def plan_show(db: _Db, as_json: bool, name: str, at: dt.datetime | None) -> None:
    """Show plan NAME and its rows (all, or those in effect --at an instant)."""
    with db.repo(PLAN, name) as repo:
        p = repo.get(name, at=at)
    if p is None:
        fail(f"unknown plan {name!r}")
    head = _plan_dict(p, rows=False)
    scope = f"in effect at {at.isoformat()}" if at else "all"
    text = (
        _show(head)
        + f"\n\n# rows ({scope}): {len(p.rows)}\n"
        + table(_ROW_HEADERS, [_row_cells(r) for r in p.rows])
    )
    _emit(as_json, _plan_dict(p), text)


_IMPORT_HELP = (
    "Replace all rows of plan NAME by those of the CSV FILE ('-': standard input), in one transaction.\n\n"
    "The file is checked whole first; an error names its line and column and nothing is imported.  Rows of "
    "one prefix must not be in effect at the same instant."
)


@plan_group.command("import", context_settings=CONTEXT_SETTINGS, help=f"{_IMPORT_HELP}\n\n{LIVE_NOTE}")
@click.argument("name")
@click.argument("file", type=click.File("rb"))
@_with_db
@_json_option("Print the result as JSON.")
def plan_import(db: _Db, as_json: bool, name: str, file: Any) -> None:
    from catalyst_smpp.billing.plans import decode_csv

    data = file.read()
    with db.repo(PLAN, name, write=True) as repo:
        n = repo.import_csv(name, decode_csv(data))
    _emit(
        as_json, {"plan": name, "rows": n}, f"plan {name!r}: {n} rows imported (the previous rows replaced)"
    )


@plan_group.command("export", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.argument("file", default="-", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path))
@click.option("--at", callback=_instant, metavar="ISO", help="Only the rows in effect at this instant.")
@_with_db
def plan_export(db: _Db, name: str, file: Path, at: dt.datetime | None) -> None:
    """Write the rows of plan NAME as CSV to FILE (default '-': standard output); `plan import` reads it."""
    with db.repo(PLAN, name) as repo:
        text = repo.export_csv(name, at=at)
    if str(file) == "-":
        sys.stdout.write(text)
    else:
        file.write_text(text, encoding="utf-8")
        click.echo(f"plan {name!r}: {len(text.splitlines()) - 1} rows written to {file}", err=True)


@plan_group.command("quote", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.argument("digits")
@click.option("--at", callback=_instant, metavar="ISO", help="The message's instant (default: now).")
@click.option("--parts", type=click.IntRange(min=1), default=1, show_default=True, help="Message parts.")
@click.option(
    "--charge-on",
    type=click.Choice(["submit", "delivery"]),
    default="submit",
    show_default=True,
    help="Charging point: submit_price, or delivery_price (else submit_price).",
)
@_with_db
@_json_option("JSON instead of text.")
def plan_quote(
    db: _Db, as_json: bool, name: str, digits: str, at: dt.datetime | None, parts: int, charge_on: str
) -> None:
    """What plan NAME charges for a message to DIGITS (E.164 without '+'): the row of the longest prefix in
    effect at the instant, and its price for the parts.  Exit status 3 when no row applies."""
    from catalyst_smpp.billing.plans import PlanIndex, price

    digits = digits.lstrip("+")
    if not digits.isdigit():
        raise click.BadParameter("digits only (E.164 without '+')", param_hint="DIGITS")
    when = at or dt.datetime.now(dt.UTC)
    with db.repo(PLAN, name) as repo:
        p = repo.get(name, at=when)
    if p is None:
        fail(f"unknown plan {name!r}")
    row = PlanIndex.of(p).lookup(digits, when.timestamp())
    if row is None:
        _emit(
            as_json,
            {"plan": name, "digits": digits, "at": when.isoformat(), "row": None, "price": None},
            f"plan {name!r} has no row for {digits} at {when.isoformat()} (unpriced)",
        )
        sys.exit(3)
    total = price(row, charge_on, parts)
    data = {
        "plan": name,
        "digits": digits,
        "at": when.isoformat(),
        "parts": parts,
        "charge_on": charge_on,
        "row": _row_dict(row),
        "price": _amount(total),
        "currency": total.currency,
    }
    label = f"{row.network or '-'}{f' ({row.mcc_mnc})' if row.mcc_mnc else ''}"
    _emit(
        as_json,
        data,
        f"{_amount(total)} {total.currency}  ({parts} part(s), charged on {charge_on}; "
        f"prefix {row.prefix} {label}, from {row.effective_from.isoformat()})",
    )


_REMOVE_HELP = "Remove plan NAME and its rows; refused while a partner or operator has it."


@plan_group.command("remove", context_settings=CONTEXT_SETTINGS, help=f"{_REMOVE_HELP}\n\n{LIVE_NOTE}")
@click.argument("name")
@_with_db
def plan_remove(db: _Db, name: str) -> None:
    with db.repo(PLAN, name, write=True) as repo:
        repo.remove(name)
    click.echo(f"plan {name!r} removed")


def register(main: click.Group) -> None:
    """Add ``plan`` to the ``catalyst-smpp`` group."""
    main.add_command(plan_group)
