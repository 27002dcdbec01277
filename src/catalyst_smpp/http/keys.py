"""API keys of the HTTP API: made (shown once), listed, revoked, and looked up per request with a short cache.

A key is ``ck_<prefix>_<secret>``: ``prefix`` (8 letters/digits) names the row and is what lists show,
``secret`` (43 letters/digits: 256 random bits) is stored only as its SHA-256 -- a random secret that long
cannot be guessed, so a slow password hash would buy nothing and cost every request.

Lookups are cached per node for ``ttl`` seconds (``[http] key_cache``): the cache holds what the row said
(partner, rate, revoked or not) and the hash, so a revoked key is refused on every node at most ``ttl``
after ``api-key revoke``.  ``last_used_at`` is written when a cached entry is read again (at most once per
``ttl`` per key, in the same transaction as that read), not per request.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import re
import secrets
import string
import time
from collections.abc import Callable
from typing import Any, Final

import attrs

from catalyst_smpp.store import Database

__all__ = [
    "ApiKey",
    "KeyStore",
    "create_key",
    "hash_secret",
    "list_keys",
    "make_key",
    "parse_key",
    "revoke_key",
]

_ALPHABET: Final = string.ascii_letters + string.digits
_PREFIX_LEN: Final = 8
_SECRET_LEN: Final = 43  # 43 * log2(62) > 256 bits
_KEY: Final = re.compile(r"ck_([A-Za-z0-9]{8})_([A-Za-z0-9]{43})")


@attrs.frozen
class ApiKey:
    """One row of ``api_keys`` with its partner's system_id (never the hash)."""

    id: int
    partner: str
    name: str
    prefix: str
    rate: float | None
    created_at: dt.datetime
    last_used_at: dt.datetime | None = None
    revoked_at: dt.datetime | None = None


def hash_secret(secret: str) -> bytes:
    return hashlib.sha256(secret.encode("ascii")).digest()


def make_key() -> tuple[str, str, bytes]:
    """A new key: (the key as the partner uses it, its prefix, the hash of its secret)."""
    prefix = "".join(secrets.choice(_ALPHABET) for _ in range(_PREFIX_LEN))
    secret = "".join(secrets.choice(_ALPHABET) for _ in range(_SECRET_LEN))
    return f"ck_{prefix}_{secret}", prefix, hash_secret(secret)


def parse_key(text: str) -> tuple[str, str] | None:
    """(prefix, secret) of a well-formed key, else None."""
    m = _KEY.fullmatch(text.strip())
    return (m.group(1), m.group(2)) if m else None


_COLS: Final = "k.id, p.system_id, k.name, k.prefix, k.rate, k.created_at, k.last_used_at, k.revoked_at"


def create_key(conn: Any, partner: str, *, name: str = "", rate: float | None = None) -> tuple[ApiKey, str]:
    """Make a key for ``partner`` (a system_id); returns its row and the key (shown once: only its hash is
    stored).  LookupError for an unknown partner."""
    row = conn.execute("SELECT id FROM partners WHERE system_id = %s", (partner,)).fetchone()
    if row is None:
        raise LookupError(f"unknown partner {partner!r}")
    if rate is not None and not rate > 0:
        raise ValueError("rate must be a positive number of requests per second")
    for _ in range(5):  # a prefix already taken (1 in 62**8 per key): draw again
        key, prefix, digest = make_key()
        taken = conn.execute("SELECT 1 FROM api_keys WHERE prefix = %s", (prefix,)).fetchone()
        if taken is None:
            break
    kid = conn.execute(
        "INSERT INTO api_keys (partner_id, name, prefix, hash, rate) VALUES (%s, %s, %s, %s, %s)"
        " RETURNING id",
        (row[0], name, prefix, digest, rate),
    ).fetchone()[0]
    found = _select(conn, "WHERE k.id = %s", (kid,))
    return found[0], key


def _select(conn: Any, where: str, params: tuple[Any, ...]) -> list[ApiKey]:
    q = f"SELECT {_COLS} FROM api_keys k JOIN partners p ON p.id = k.partner_id {where} ORDER BY k.id"
    return [ApiKey(*r) for r in conn.execute(q, params).fetchall()]


def list_keys(conn: Any, partner: str | None = None) -> list[ApiKey]:
    """Every key (revoked ones too), or ``partner``'s."""
    if partner is None:
        return _select(conn, "", ())
    return _select(conn, "WHERE p.system_id = %s", (partner,))


def revoke_key(conn: Any, key_id: int) -> ApiKey | None:
    """Revoke key ``key_id`` (again: no change); its row, None if there is no such key."""
    conn.execute("UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s", (key_id,))
    found = _select(conn, "WHERE k.id = %s", (key_id,))
    return found[0] if found else None


def _read(conn: Any, prefix: str, used: int | None) -> tuple[ApiKey, bytes] | None:
    if used is not None:
        conn.execute("UPDATE api_keys SET last_used_at = now() WHERE id = %s", (used,))
    row = conn.execute(
        f"SELECT {_COLS}, k.hash FROM api_keys k JOIN partners p ON p.id = k.partner_id WHERE k.prefix = %s",
        (prefix,),
    ).fetchone()
    if row is None:
        return None
    return ApiKey(*row[:-1]), bytes(row[-1])


class KeyStore:
    """The keys a node has read lately (module notes): :meth:`lookup` per request."""

    def __init__(
        self, db: Database, *, ttl: float = 5.0, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.db = db
        self.ttl = ttl
        self.clock = clock
        # prefix -> (the row and hash or None: no such key, read at, used since read)
        self._cache: dict[str, tuple[tuple[ApiKey, bytes] | None, float, bool]] = {}

    async def lookup(self, text: str) -> ApiKey | None:
        """The key's row when ``text`` is a key that exists and is not revoked; else None."""
        parsed = parse_key(text)
        if parsed is None:
            return None
        prefix, secret = parsed
        now = self.clock()
        hit = self._cache.get(prefix)
        if hit is None or now - hit[1] >= self.ttl:
            used = hit[0][0].id if hit is not None and hit[0] is not None and hit[2] else None
            if hit is None and len(self._cache) > 100_000:  # keys guessed at random: forget, don't grow
                self._cache.clear()
            found = await self.db.run(_read, prefix, used)
            hit = (found, now, False)
            self._cache[prefix] = hit
        found = hit[0]
        if found is None:
            return None
        key, digest = found
        if not hmac.compare_digest(digest, hash_secret(secret)):
            return None
        if key.revoked_at is not None:
            return None
        if not hit[2]:
            self._cache[prefix] = (found, hit[1], True)
        return key
