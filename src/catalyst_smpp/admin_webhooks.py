"""``catalyst-smpp webhook``: partners' webhooks for receipts and MO (set, show, list, remove).

A module of its own, like :mod:`catalyst_smpp.admin_books`: the store module is
:mod:`catalyst_smpp.store.webhook_repo`; the database options, the error line and the table layout are
:mod:`catalyst_smpp.admin`'s.  The signing secret is printed once, when it is made (``set`` of a new webhook
without ``--secret``); ``show`` and ``list`` never print it.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import psycopg

from catalyst_smpp.admin import CONTEXT_SETTINGS, db_connection, db_options, fail, table
from catalyst_smpp.store.records import WEBHOOK_KINDS, Webhook
from catalyst_smpp.store.rows import NotFound
from catalyst_smpp.store.webhook_repo import WebhookRepo

__all__ = ["register", "webhook_group"]

_json = click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
_kind = click.option(
    "--kind", required=True, type=click.Choice(WEBHOOK_KINDS), help="dlr (receipts) or mo (MO messages)."
)


@contextlib.contextmanager
def _repo(config: Path | None, dsn: str | None, schema: str | None) -> Iterator[WebhookRepo]:
    """The repository; store errors turned into one clear line and exit 1."""
    with db_connection(config, dsn, schema) as conn:
        try:
            yield WebhookRepo(conn)
        except NotFound as e:
            fail(str(e))
        except psycopg.errors.UndefinedTable:
            fail("the database has no webhooks table (in this schema); run `catalyst-smpp migrate` first")
        except psycopg.Error as e:
            fail(f"database error: {str(e).strip()}")
        except ValueError as e:
            fail(str(e))


def _dict(h: Webhook) -> dict[str, Any]:
    return {
        "partner": h.partner,
        "kind": h.kind,
        "url": h.url,
        "enabled": h.enabled,
        "batch_size": h.batch_size,
        "created_at": h.created_at.isoformat() if h.created_at else None,
    }


def _text(d: dict[str, Any]) -> str:
    width = max(len(k) for k in d)
    return "\n".join(f"{k.ljust(width)}  {'-' if v is None else v}" for k, v in d.items())


@click.group("webhook", context_settings=CONTEXT_SETTINGS)
def webhook_group() -> None:
    """Partners' webhooks: receipts (--kind dlr) and MO messages (--kind mo) POSTed to a URL, signed.

    A partner with an enabled webhook of a kind gets that kind only by webhook (not on its SMPP binds)."""


@webhook_group.command("set", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@_kind
@click.option("--url", required=True, help="http:// or https:// URL the batches are POSTed to.")
@click.option(
    "--batch-size", type=click.IntRange(1, 1000), help="Most items per request (default 100 when new)."
)
@click.option("--secret", help="The signing secret (16-256 characters); default: a new random one when new.")
@click.option("--enable/--disable", "enabled", default=None, help="Turn delivery on or off (kept as is).")
@db_options
@_json
def webhook_set(
    partner: str,
    kind: str,
    url: str,
    batch_size: int | None,
    secret: str | None,
    enabled: bool | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """Create or change PARTNER's webhook of a kind.  A new one's signing secret is printed once."""
    with _repo(config, dsn, schema) as repo:
        hook, made = repo.set(partner, kind, url, secret=secret, batch_size=batch_size, enabled=enabled)
    d = _dict(hook)
    if made is not None:
        d["secret"] = made
    text = _text(d)
    if made is not None:
        text += "\n\nThe secret is shown only now: give it to the partner to verify X-Catalyst-Signature."
    click.echo(json.dumps(d, indent=2) if as_json else text)


@webhook_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@_kind
@db_options
@_json
def webhook_show(
    partner: str, kind: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Show PARTNER's webhook of a kind (not its secret)."""
    with _repo(config, dsn, schema) as repo:
        hook = repo.get(partner, kind)
    if hook is None:
        fail(f"partner {partner!r} has no {kind} webhook")
    d = _dict(hook)
    click.echo(json.dumps(d, indent=2) if as_json else _text(d))


@webhook_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--partner", help="Only this partner's.")
@db_options
@_json
def webhook_list(
    partner: str | None, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Every webhook (not the secrets)."""
    with _repo(config, dsn, schema) as repo:
        hooks = repo.list(partner=partner)
    rows = [(h.partner, h.kind, h.url, "yes" if h.enabled else "no", h.batch_size) for h in hooks]
    click.echo(
        json.dumps([_dict(h) for h in hooks], indent=2)
        if as_json
        else table(["PARTNER", "KIND", "URL", "ENABLED", "BATCH"], rows)
    )


@webhook_group.command("remove", context_settings=CONTEXT_SETTINGS)
@click.argument("partner")
@_kind
@db_options
@_json
def webhook_remove(
    partner: str, kind: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Remove PARTNER's webhook of a kind: that kind goes to its SMPP binds (or the pull API) again."""
    with _repo(config, dsn, schema) as repo:
        removed = repo.remove(partner, kind)
    if not removed:
        fail(f"partner {partner!r} has no {kind} webhook")
    d = {"partner": partner, "kind": kind, "removed": True}
    click.echo(json.dumps(d, indent=2) if as_json else f"partner {partner!r}: {kind} webhook removed")


def register(main: click.Group) -> None:
    """Add ``webhook`` to the ``catalyst-smpp`` group."""
    main.add_command(webhook_group)
