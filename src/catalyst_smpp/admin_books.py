"""``catalyst-smpp balance``: partners' billing accounts (open, set, show, top-up, adjust, history, verify).

A module of its own rather than more of :mod:`catalyst_smpp.admin` (already some 1,200 lines of partner,
operator and route administration): the books are a separate concern with their own store module
(:mod:`catalyst_smpp.billing.books`), and only the database options, the error line and the table layout are
shared, imported from there.  Amounts are exact decimals (``billing.money.parse_amount``), never floats.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import getpass
import json
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import click
import psycopg

from catalyst_smpp.admin import CONTEXT_SETTINGS, db_connection, db_options, fail, table
from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money, parse_amount

__all__ = ["balance_group", "register"]


def _amount(ctx: click.Context, param: click.Parameter, value: str | None) -> Decimal | None:
    if value is None:
        return None
    try:
        return parse_amount(value)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


_UNSET: Any = books.UNCHANGED


def _optional_amount(ctx: click.Context, param: click.Parameter, value: str | None) -> Any:
    """--low-balance: an amount, or empty to clear it (None: not given)."""
    if value is None:
        return _UNSET
    if value.strip() == "":
        return None
    return _amount(ctx, param, value)


def _when(ctx: click.Context, param: click.Parameter, value: str | None) -> dt.datetime | None:
    if value is None:
        return None
    try:
        t = dt.datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(f"{value!r} is not an ISO 8601 date or time (2026-01-31T12:00Z)") from None
    return t if t.tzinfo is not None else t.replace(tzinfo=dt.UTC)


@contextlib.contextmanager
def _books(
    config: Path | None, dsn: str | None, schema: str | None, system_id: str | None
) -> Iterator[tuple[psycopg.Connection[Any], int]]:
    """A connection and the partner's id; store errors turned into one clear line and exit 1."""
    with db_connection(config, dsn, schema) as conn:
        try:
            partner = 0
            if system_id is not None:
                row = conn.execute("SELECT id FROM partners WHERE system_id = %s", (system_id,)).fetchone()
                if row is None:
                    fail(f"unknown partner {system_id!r}")
                partner = int(row[0])
            yield conn, partner
        except books.NoAccount:
            fail(
                f"partner {system_id!r} has no billing account (open one: catalyst-smpp balance open "
                f"{system_id} --currency EUR)"
            )
        except books.AccountExists:
            fail(f"partner {system_id!r} already has a billing account")
        except psycopg.errors.UndefinedTable:
            fail("the database has no billing tables (in this schema); run `catalyst-smpp migrate` first")
        except psycopg.Error as e:
            fail(f"database error: {str(e).strip()}")
        except ValueError as e:  # BooksError, CurrencyMismatch
            fail(str(e))


def _money(m: Money | None) -> str | None:
    return None if m is None else f"{m.amount:f}"


def _state_dict(system_id: str, s: books.AccountState) -> dict[str, Any]:
    return {
        "partner": system_id,
        "currency": s.currency,
        "mode": s.mode,
        "balance": _money(s.balance),
        "credit_limit": _money(s.effective_limit),
        "held": _money(s.held),
        "leased": _money(s.leased),
        "available": _money(s.available),
        "low_balance": _money(s.low_balance),
    }


def _entry_dict(e: books.LedgerEntry) -> dict[str, Any]:
    return {
        "id": e.id,
        "at": e.at.isoformat(),
        "kind": e.kind,
        "amount": _money(e.amount),
        "currency": e.amount.currency,
        "balance_after": _money(e.balance_after),
        "message_id": e.message_id,
        "reason": e.reason,
        "actor": e.actor,
    }


def _emit(as_json: bool, data: Any, text: str) -> None:
    click.echo(json.dumps(data, indent=2) if as_json else text)


def _show_state(as_json: bool, system_id: str, s: books.AccountState) -> None:
    d = _state_dict(system_id, s)
    width = max(len(k) for k in d)
    _emit(as_json, d, "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in d.items()))


_json = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
_actor = click.option(
    "--actor", default=None, help="Who makes the change, recorded in the ledger (default: the OS user)."
)
_reason = click.option("--reason", required=True, help="Why (recorded in the ledger; required).")
_mode = click.option(
    "--mode", type=click.Choice(books.MODES), help="prepaid, or credit (up to --credit-limit)."
)
_limit = click.option(
    "--credit-limit", callback=_amount, help="How far below zero a credit-mode balance may go."
)
_low = click.option(
    "--low-balance",
    callback=_optional_amount,
    help="Report when the balance falls below this amount ('' clears it).",
)


@click.group("balance", context_settings=CONTEXT_SETTINGS)
def balance_group() -> None:
    """Partners' billing accounts: balance, credit, top-ups, adjustments and the ledger.

    A partner's account has one currency; its balance is the sum of its ledger (top-ups, adjustments, and
    one charge per captured message).  Available credit = balance + credit limit (credit mode) - held -
    leased (credit gateway nodes have drawn but not yet used)."""


@balance_group.command("open", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@click.option("--currency", required=True, help="ISO 4217 code of the account (fixed once opened).")
@_mode
@_limit
@_low
@db_options
@_json
def balance_open(
    partner: str,
    currency: str,
    mode: str | None,
    credit_limit: Decimal | None,
    low_balance: Any,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """Open PARTNER's billing account (balance 0; top it up with `balance top-up`)."""
    with _books(config, dsn, schema, partner) as (conn, pid):
        state = books.open_account(
            conn,
            pid,
            currency,
            mode or "prepaid",  # type: ignore[arg-type]
            credit_limit or Decimal(0),
            None if low_balance is _UNSET else low_balance,
        )
    _show_state(as_json, partner, state)


@balance_group.command("set", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@_mode
@_limit
@_low
@db_options
@_json
def balance_set(
    partner: str,
    mode: str | None,
    credit_limit: Decimal | None,
    low_balance: Any,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """Change PARTNER's account mode, credit limit or low-balance threshold."""
    with _books(config, dsn, schema, partner) as (conn, pid):
        state = books.set_account(
            conn,
            pid,
            mode=mode,  # type: ignore[arg-type]
            credit_limit=credit_limit,
            low_balance=low_balance,
        )
    _show_state(as_json, partner, state)


@balance_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@db_options
@_json
def balance_show(
    partner: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Show PARTNER's balance, held and leased credit, what is available, and the limit."""
    with _books(config, dsn, schema, partner) as (conn, pid):
        state = books.account_state(conn, pid)
    _show_state(as_json, partner, state)


# a negative AMOUNT ("-2.50") is an argument, not an unknown option
_AMOUNT_SETTINGS = {**CONTEXT_SETTINGS, "ignore_unknown_options": True}


def _ledger_change(
    kind: str,
    partner: str,
    amount: Decimal,
    reason: str,
    actor: str | None,
    db: tuple[Path | None, str | None, str | None],
    as_json: bool,
) -> None:
    who = actor if actor is not None else getpass.getuser()
    with _books(*db, partner) as (conn, pid):
        currency = books.account_state(conn, pid).currency
        change = books.topup if kind == "topup" else books.adjust
        entry = change(conn, pid, Money(amount, currency), reason, who)
    _emit(
        as_json,
        {"partner": partner, **_entry_dict(entry)},
        f"partner {partner!r}: {entry.kind} {entry.amount}, balance {entry.balance_after}",
    )


@balance_group.command("top-up", context_settings=_AMOUNT_SETTINGS)
@click.argument("partner")
@click.argument("amount", callback=_amount)
@_reason
@_actor
@db_options
@_json
def balance_topup(
    partner: str,
    amount: Decimal,
    reason: str,
    actor: str | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """Add AMOUNT (positive, in the account's currency) to PARTNER's balance."""
    _ledger_change("topup", partner, amount, reason, actor, (config, dsn, schema), as_json)


@balance_group.command("adjust", context_settings=_AMOUNT_SETTINGS)
@click.argument("partner")
@click.argument("amount", callback=_amount)
@_reason
@_actor
@db_options
@_json
def balance_adjust(
    partner: str,
    amount: Decimal,
    reason: str,
    actor: str | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """Correct PARTNER's balance by AMOUNT (+ or -, e.g. -2.50)."""
    _ledger_change("adjustment", partner, amount, reason, actor, (config, dsn, schema), as_json)


@balance_group.command("history", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@click.option("--since", callback=_when, help="Entries at or after this ISO 8601 time (UTC unless given).")
@click.option("--until", callback=_when, help="Entries before this ISO 8601 time.")
@click.option("--limit", type=click.IntRange(min=1), default=50, show_default=True, help="The newest N.")
@db_options
@_json
def balance_history(
    partner: str,
    since: dt.datetime | None,
    until: dt.datetime | None,
    limit: int,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """PARTNER's ledger: top-ups, adjustments and charges, oldest first."""
    with _books(config, dsn, schema, partner) as (conn, pid):
        books.account_state(conn, pid)  # NoAccount rather than an empty list
        entries = books.history(conn, pid, since, until, limit)
    rows = [
        (e.id, e.at, e.kind, e.amount.amount, e.balance_after.amount, e.message_id or e.reason, e.actor)
        for e in entries
    ]
    _emit(
        as_json,
        [_entry_dict(e) for e in entries],
        table(["ID", "AT", "KIND", "AMOUNT", "BALANCE", "MESSAGE/REASON", "ACTOR"], rows),
    )


@balance_group.command("verify", context_settings=CONTEXT_SETTINGS)
@db_options
@_json
def balance_verify(config: Path | None, dsn: str | None, schema: str | None, as_json: bool) -> None:
    """Check every account: balance = sum of its ledger, each balance_after the running sum, and the held
    and settled credit its entries record.  Exit 1 when anything is off."""
    with _books(config, dsn, schema, None) as (conn, _):
        found = books.verify(conn)
        names = dict(conn.execute("SELECT id, system_id FROM partners").fetchall())
    problems = [
        {
            "partner": names.get(d.partner, str(d.partner)),
            "problem": d.what,
            "expected": f"{d.expected:f}",
            "found": f"{d.found:f}",
            "ledger_id": d.ledger_id,
        }
        for d in found
    ]
    text = (
        table(["PARTNER", "PROBLEM", "EXPECTED", "FOUND", "LEDGER_ID"], [list(p.values()) for p in problems])
        if problems
        else "the books balance: every account is the sum of its ledger"
    )
    _emit(as_json, {"ok": not problems, "problems": problems}, text)
    if problems:
        raise SystemExit(1)


def register(main: click.Group) -> None:
    """Add ``balance`` to the ``catalyst-smpp`` group."""
    main.add_command(balance_group)
