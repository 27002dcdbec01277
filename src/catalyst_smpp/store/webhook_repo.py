"""Partners' webhooks in Postgres (migration 0014): one per partner and kind ("dlr" receipts, "mo" messages).

A webhook's secret signs every request (catalyst_smpp.http.webhooks); :func:`new_secret` makes one (256 random
bits) when none is given.  The secret is stored as is: the gateway needs it to sign.  Every change bumps the
config version (trigger), so running gateways start, change or stop the delivery.
"""

from __future__ import annotations

import builtins
import secrets
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlsplit

import attrs
import psycopg

from .records import WEBHOOK_KINDS, Webhook
from .rows import NotFound, _rows

__all__ = ["WebhookRepo", "check_url", "new_secret"]

_SELECT = (
    "SELECT w.*, p.system_id AS partner_system_id FROM webhooks w JOIN partners p ON p.id = w.partner_id"
)
MIN_SECRET = 16


def new_secret() -> str:
    """A signing secret: ``whsec_`` and 64 hex digits (256 random bits)."""
    return "whsec_" + secrets.token_hex(32)


def check_url(url: str) -> str:
    """The URL if it is an absolute http(s) URL with a host; ValueError (fit for the user) otherwise."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname or any(c.isspace() for c in url):
        raise ValueError(f"{url!r} is not an http:// or https:// URL with a host")
    if len(url) > 2048:
        raise ValueError("the URL is longer than 2048 characters")
    return url


def _webhook(row: Mapping[str, Any]) -> Webhook:
    """A row of the webhooks query (the partner as ``partner_system_id``) as its record."""
    return Webhook(
        **{f.name: row["partner_system_id" if f.name == "partner" else f.name] for f in attrs.fields(Webhook)}
    )


class WebhookRepo:
    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self.conn = conn

    def _partner_id(self, partner: str) -> int:
        rows = _rows(self.conn, "SELECT id FROM partners WHERE system_id = %s", (partner,))
        if not rows:
            raise NotFound(f"no partner {partner!r}")
        return int(rows[0]["id"])

    @staticmethod
    def _kind(kind: str) -> str:
        if kind not in WEBHOOK_KINDS:
            raise ValueError(f"webhook kind must be one of {', '.join(WEBHOOK_KINDS)}, not {kind!r}")
        return kind

    def set(
        self,
        partner: str,
        kind: str,
        url: str,
        *,
        secret: str | None = None,
        batch_size: int | None = None,
        enabled: bool | None = None,
    ) -> tuple[Webhook, str | None]:
        """Create or change PARTNER's webhook of ``kind``.  Returns it and the secret when one was made here
        (a new webhook without ``secret``); a changed webhook keeps its secret unless one is given."""
        self._kind(kind)
        check_url(url)
        if secret is not None and not MIN_SECRET <= len(secret) <= 256:
            raise ValueError(f"a webhook secret has {MIN_SECRET} to 256 characters")
        if batch_size is not None and not 1 <= batch_size <= 1000:
            raise ValueError("batch size must be 1 to 1000")
        pid = self._partner_id(partner)
        existing = self.get(partner, kind)
        made = None
        if existing is None and secret is None:
            secret = made = new_secret()
        if existing is None:
            _rows(
                self.conn,
                "INSERT INTO webhooks (partner_id, kind, url, secret, enabled, batch_size)"
                " VALUES (%s, %s, %s, %s, %s, %s) RETURNING partner_id",
                (pid, kind, url, secret, True if enabled is None else enabled, batch_size or 100),
            )
        else:
            _rows(
                self.conn,
                "UPDATE webhooks SET url = %s, secret = %s, enabled = %s, batch_size = %s"
                " WHERE partner_id = %s AND kind = %s RETURNING partner_id",
                (
                    url,
                    existing.secret if secret is None else secret,
                    existing.enabled if enabled is None else enabled,
                    existing.batch_size if batch_size is None else batch_size,
                    pid,
                    kind,
                ),
            )
        hook = self.get(partner, kind)
        assert hook is not None
        return hook, made

    def get(self, partner: str, kind: str) -> Webhook | None:
        rows = _rows(
            self.conn, _SELECT + " WHERE p.system_id = %s AND w.kind = %s", (partner, self._kind(kind))
        )
        return _webhook(rows[0]) if rows else None

    def list(self, *, partner: str | None = None) -> builtins.list[Webhook]:
        where, params = "", []
        if partner is not None:
            where, params = " WHERE p.system_id = %s", [partner]
        return [
            _webhook(r) for r in _rows(self.conn, _SELECT + where + " ORDER BY p.system_id, w.kind", params)
        ]

    def remove(self, partner: str, kind: str) -> bool:
        pid = self._partner_id(partner)
        return bool(
            _rows(
                self.conn,
                "DELETE FROM webhooks WHERE partner_id = %s AND kind = %s RETURNING partner_id",
                (pid, self._kind(kind)),
            )
        )
