"""``catalyst-smpp api-key``: the HTTP API's keys (create: the key is printed once; list; revoke).

A revoked key is refused by every gateway within ``[http] key_cache`` (default 5 s): nodes re-read a key
that often (docs/operations.md "HTTP API").
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from catalyst_smpp.admin import CONTEXT_SETTINGS, _errors, _jsonable, db_connection, db_options, fail, table

__all__ = ["api_key_group", "register"]


@click.group("api-key", context_settings=CONTEXT_SETTINGS)
def api_key_group() -> None:
    """HTTP API keys of partners (X-API-Key: ck_...).  Revocation reaches every gateway within [http]
    key_cache (5 s by default)."""


def _positive(ctx: click.Context, param: click.Parameter, value: float | None) -> float | None:
    if value is not None and not value > 0:
        raise click.BadParameter("a positive number of requests per second")
    return value


@api_key_group.command("create", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@click.option("--name", default="", help="What the key is for (shown in lists).")
@click.option("--rate", type=float, callback=_positive, help="Requests per second (default: [http] rate).")
@click.option("--json", "as_json", is_flag=True, help="Print the key and its row as JSON.")
@db_options
def create_cmd(
    partner: str,
    name: str,
    rate: float | None,
    as_json: bool,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
) -> None:
    """Make an API key for PARTNER and print it: it is shown this once (only its hash is stored)."""
    from catalyst_smpp.http.keys import create_key

    with db_connection(config, dsn, schema) as conn, _errors(f"API key of {partner!r}"):
        try:
            row, key = create_key(conn, partner, name=name, rate=rate)
        except LookupError as e:
            fail(str(e.args[0]))
    if as_json:
        click.echo(json.dumps({**_jsonable(row), "key": key}, indent=2))
        return
    click.echo(key)
    click.echo(
        f"(key {row.id}, prefix {row.prefix}, partner {row.partner}: store it now, it is not shown again)",
        err=True,
    )


@api_key_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.argument("partner", required=False)
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
@db_options
def list_cmd(
    partner: str | None, as_json: bool, config: Path | None, dsn: str | None, schema: str | None
) -> None:
    """The API keys (of PARTNER), revoked ones too.  Secrets are never shown: the prefix names a key."""
    from catalyst_smpp.http.keys import list_keys

    with db_connection(config, dsn, schema) as conn, _errors("API keys"):
        rows = list_keys(conn, partner)
    if as_json:
        click.echo(json.dumps([_jsonable(r) for r in rows], indent=2))
        return
    cells: list[list[Any]] = [
        [r.id, r.partner, r.name, r.prefix, r.rate, r.created_at, r.last_used_at, r.revoked_at] for r in rows
    ]
    click.echo(table(["id", "partner", "name", "prefix", "rate", "created", "last used", "revoked"], cells))


@api_key_group.command("revoke", context_settings=CONTEXT_SETTINGS)
@click.argument("key_id", type=int)
@db_options
def revoke_cmd(key_id: int, config: Path | None, dsn: str | None, schema: str | None) -> None:
    """Revoke API key KEY_ID (its id in `api-key list`)."""
    from catalyst_smpp.http.keys import revoke_key

    with db_connection(config, dsn, schema) as conn, _errors(f"API key {key_id}"):
        row = revoke_key(conn, key_id)
    if row is None:
        fail(f"unknown API key {key_id}")
    click.echo(
        f"API key {row.id} ({row.prefix}, partner {row.partner}) revoked; gateways refuse it within "
        "[http] key_cache (5 s by default)"
    )


def register(main: click.Group) -> None:
    """Add ``api-key`` to the ``catalyst-smpp`` group."""
    main.add_command(api_key_group)
