"""The HTTP API's ``Idempotency-Key`` store (table ``idempotency_keys``, migration 0013).

A request with a key first takes it (:func:`claim`, in its own transaction, so that another node sees the
claim at once), then runs, then records the answer it got (:func:`complete`) -- or drops the claim
(:func:`forget`) when it failed before anything was accepted, so that a retry runs again.  What a claim finds:

========================================== ==========================================================
the key of this partner                     claim
========================================== ==========================================================
absent, or older than the TTL (24 h)        :class:`Claimed` (an old row is taken over: never replayed)
done, same request hash                     :class:`Replay` (status and body of the first answer)
done or pending, another request hash       :class:`Conflict` (409: a key is for one request)
pending, same request hash                  :class:`InFlight` (409: the first one is still running)
========================================== ==========================================================

Two nodes claiming the same key at once: the primary key makes the second ``INSERT … ON CONFLICT`` wait for
the first one's transaction, then see its row -- exactly one gets :class:`Claimed`.  The TTL is measured by
the database's clock (one clock for every node).  Rows older than the TTL are deleted by :func:`purge` (the
HTTP side runs :func:`purge_loop`), and are never replayed meanwhile.
"""

from __future__ import annotations

import logging
from typing import Any, Final

import attrs
import psycopg
import trio
from psycopg.types.json import Jsonb

from catalyst_smpp.store import Database

__all__ = [
    "TTL",
    "Claim",
    "Claimed",
    "Conflict",
    "IdempotencyStore",
    "InFlight",
    "Replay",
    "claim",
    "complete",
    "forget",
    "purge",
    "purge_loop",
]

log = logging.getLogger(__name__)

TTL: Final = 24 * 3600.0
"""Seconds a key is remembered (and its answer replayed)."""


@attrs.frozen
class Claimed:
    """The key is this request's: run it, then :func:`complete` or :func:`forget`."""


@attrs.frozen
class Replay:
    """The key's request was answered: give the same answer again."""

    status: int
    body: Any


@attrs.frozen
class Conflict:
    """The key was used for another request (another body)."""


@attrs.frozen
class InFlight:
    """The key's first request (the same body) is still running."""


Claim = Claimed | Replay | Conflict | InFlight

_CLAIM: Final = """
INSERT INTO idempotency_keys AS k (partner, key, request_hash) VALUES (%(p)s, %(k)s, %(h)s)
ON CONFLICT (partner, key) DO UPDATE
    SET request_hash = EXCLUDED.request_hash, state = 'pending', http_status = NULL, response = NULL,
        created_at = now()
    WHERE k.created_at < now() - make_interval(secs => %(ttl)s)
RETURNING 1
"""
_READ: Final = (
    "SELECT request_hash, state, http_status, response FROM idempotency_keys WHERE partner = %s AND key = %s"
)


def claim(
    conn: psycopg.Connection[Any], partner: str, key: str, request_hash: str, *, ttl: float = TTL
) -> Claim:
    """Claim ``partner``'s ``key`` for a request whose body hashes to ``request_hash`` (see the module notes).
    Commit right after (the caller's transaction, or an autocommit connection): the claim is what other nodes
    must see."""
    params = {"p": partner, "k": key, "h": request_hash, "ttl": ttl}
    if conn.execute(_CLAIM, params).fetchone() is not None:
        return Claimed()
    row = conn.execute(_READ, (partner, key)).fetchone()
    if row is None:  # forgotten between the two statements (the first request failed): take it
        if conn.execute(_CLAIM, params).fetchone() is not None:
            return Claimed()
        row = conn.execute(_READ, (partner, key)).fetchone()
        if row is None:
            return InFlight()
    stored_hash, state, status, body = row
    if stored_hash != request_hash:
        return Conflict()
    if state != "done":
        return InFlight()
    return Replay(int(status), body)


def complete(conn: psycopg.Connection[Any], partner: str, key: str, status: int, body: Any) -> None:
    """Record the answer of the request holding ``key`` (replayed to retries until the TTL)."""
    conn.execute(
        "UPDATE idempotency_keys SET state = 'done', http_status = %s, response = %s"
        " WHERE partner = %s AND key = %s",
        (status, Jsonb(body), partner, key),
    )


def forget(conn: psycopg.Connection[Any], partner: str, key: str) -> None:
    """Drop a pending claim (the request failed before anything was accepted): a retry runs again."""
    conn.execute(
        "DELETE FROM idempotency_keys WHERE partner = %s AND key = %s AND state = 'pending'", (partner, key)
    )


def purge(conn: psycopg.Connection[Any], *, ttl: float = TTL) -> int:
    """Delete the keys older than ``ttl``; how many."""
    cur = conn.execute(
        "DELETE FROM idempotency_keys WHERE created_at < now() - make_interval(secs => %s)", (ttl,)
    )
    return cur.rowcount


async def purge_loop(db: Database, *, every: float = 3600.0, ttl: float = TTL) -> None:
    """Run :func:`purge` every ``every`` seconds (any number of nodes may: it is idempotent)."""
    while True:
        try:
            n = await db.run(lambda c: purge(c, ttl=ttl))
            if n:
                log.info("idempotency keys: %d older than %.0fs purged", n, ttl)
        except (psycopg.Error, OSError) as exc:
            log.warning("idempotency keys: purge failed: %s", exc)
        await trio.sleep(every)


class IdempotencyStore:
    """The functions above over the gateway's database, for the HTTP routes (each call its own transaction:
    a claim is seen by every node as soon as it returns)."""

    def __init__(self, db: Database, *, ttl: float = TTL) -> None:
        self.db = db
        self.ttl = ttl

    async def claim(self, partner: str, key: str, request_hash: str) -> Claim:
        result: Claim = await self.db.run(lambda c: claim(c, partner, key, request_hash, ttl=self.ttl))
        return result

    async def complete(self, partner: str, key: str, status: int, body: Any) -> None:
        await self.db.run(lambda c: complete(c, partner, key, status, body))

    async def forget(self, partner: str, key: str) -> None:
        await self.db.run(lambda c: forget(c, partner, key))
