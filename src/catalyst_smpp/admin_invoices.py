"""``catalyst-smpp invoice`` and ``catalyst-smpp usage``: a partner's monthly invoice and usage report.

A module of its own (admin_books.py keeps the account commands): both are read-only reports over
:mod:`catalyst_smpp.billing.invoices`.  An invoice that does not reconcile is still printed, with its
discrepancies, and the command exits 1 so that a script notices.
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import click
import psycopg

from catalyst_smpp.admin import CONTEXT_SETTINGS, db_connection, db_options, fail, table
from catalyst_smpp.billing import books, invoices

__all__ = ["invoice_cmd", "register", "usage_cmd"]


def _when(ctx: click.Context, param: click.Parameter, value: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (2026-01-31T12:00Z)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


def _month(ctx: click.Context, param: click.Parameter, value: str) -> str:
    try:
        invoices.month_period(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None
    return value.strip()


def _report(config: Path | None, dsn: str | None, schema: str | None, build: Any) -> Any:
    with db_connection(config, dsn, schema) as conn:
        try:
            return build(conn)
        except invoices.UnknownPartner as e:
            fail(str(e))
        except books.NoAccount as e:
            fail(f"{e} (open one: catalyst-smpp balance open PARTNER --currency EUR)")
        except psycopg.errors.UndefinedTable:
            fail("the database has no billing tables (in this schema); run `catalyst-smpp migrate` first")
        except psycopg.Error as e:
            fail(f"database error: {str(e).strip()}")


@click.command("invoice", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@click.option("--month", required=True, callback=_month, help="The month, YYYY-MM (UTC).")
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["text", "json", "csv"]),
    default="text",
    show_default=True,
    help="text, json, or csv (one line item per row, then the ledger entries and the totals).",
)
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, writable=True, path_type=Path),
    help="Write to this file instead of stdout.",
)
@db_options
def invoice_cmd(
    partner: str,
    month: str,
    fmt: str,
    output: Path | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
) -> None:
    """PARTNER's invoice for --month: line items per country, operator and unit price (messages captured in
    the month), top-ups, adjustments, opening and closing balance.  Exit 1 when it does not reconcile (the
    discrepancies are listed in the output)."""
    inv: invoices.Invoice = _report(config, dsn, schema, lambda c: invoices.invoice(c, partner, month))
    if fmt == "json":
        text = json.dumps(inv.as_json(), indent=2) + "\n"
    elif fmt == "csv":
        text = inv.as_csv()
    else:
        text = inv.as_text() + "\n"
    if output is None:
        click.echo(text, nl=False)
    else:
        output.write_text(text, encoding="utf-8")
    if not inv.ok:
        click.echo(f"error: the invoice does not reconcile: {'; '.join(inv.discrepancies)}", err=True)
        raise SystemExit(1)


@click.command("usage", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@click.option("--since", required=True, callback=_when, help="From this ISO 8601 time (UTC unless given).")
@click.option("--until", required=True, callback=_when, help="Before this ISO 8601 time.")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def usage_cmd(
    partner: str,
    since: dt.datetime,
    until: dt.datetime,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """PARTNER's traffic per UTC day, country calling code and operator: accepted, refused, submitted,
    delivered, failed, parts, charged, released, cost and margin."""
    if until <= since:
        raise click.BadParameter("--until must be after --since", param_hint="--until")
    rows: list[invoices.UsageRow] = _report(
        config, dsn, schema, lambda c: invoices.usage(c, partner, since, until)
    )
    if as_json:
        data = {
            "partner": partner,
            "since": since.isoformat(),
            "until": until.isoformat(),
            "rows": [r.as_json() for r in rows],
            "totals": invoices.usage_totals(rows),
        }
        click.echo(json.dumps(data, indent=2))
        return
    heads = ["DAY", "CC", "OPERATOR", "ACCEPTED", "REFUSED", "SUBMITTED", "DELIVERED", "FAILED", "PARTS"]
    heads += ["CHARGED", "RELEASED", "COST", "MARGIN"]
    counts = [(r.day, r.country, r.operator or "-", r.accepted, r.refused, r.submitted) for r in rows]
    rest = [
        (r.delivered, r.failed, r.parts, f"{r.charged:f}", f"{r.released:f}", f"{r.cost:f}", f"{r.margin:f}")
        for r in rows
    ]
    click.echo(table(heads, [a + b for a, b in zip(counts, rest, strict=True)]))


def register(main: click.Group) -> None:
    """Add ``invoice`` and ``usage`` to the ``catalyst-smpp`` group."""
    main.add_command(invoice_cmd)
    main.add_command(usage_cmd)
