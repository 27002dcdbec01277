"""Partner password hashing: stdlib scrypt with a per-row salt, constant-time compare.

Stored form: ``scrypt$<n>$<r>$<p>$<salt b64>$<hash b64>``; the parameters travel with
the hash so they can be raised later without invalidating old rows.  One verify costs
~20 ms (n=2**14, r=8, p=1): call it from a worker thread, never on the event loop.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import threading
from collections import OrderedDict

__all__ = ["VerifiedPasswords", "hash_password", "needs_rehash", "verify_password"]

_N, _R, _P = 2**14, 8, 1
_DKLEN = 32


def _b64(b: bytes) -> str:
    return base64.b64encode(b).decode("ascii")


def hash_password(password: str, *, n: int = _N, r: int = _R, p: int = _P) -> str:
    salt = os.urandom(16)
    dk = hashlib.scrypt(
        password.encode("utf-8"), salt=salt, n=n, r=r, p=p, dklen=_DKLEN, maxmem=128 * 1024**2
    )
    return f"scrypt${n}${r}${p}${_b64(salt)}${_b64(dk)}"


def verify_password(password: str, stored: str) -> bool:
    """True when ``password`` matches ``stored``; False for any malformed hash (never raises)."""
    try:
        scheme, n, r, p, salt_b64, dk_b64 = stored.split("$")
        if scheme != "scrypt":
            return False
        salt = base64.b64decode(salt_b64, validate=True)
        expected = base64.b64decode(dk_b64, validate=True)
        dk = hashlib.scrypt(
            password.encode("utf-8"),
            salt=salt,
            n=int(n),
            r=int(r),
            p=int(p),
            dklen=len(expected),
            maxmem=128 * 1024**2,
        )
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(dk, expected)


def needs_rehash(stored: str) -> bool:
    try:
        scheme, n, r, p, *_ = stored.split("$")
        return scheme != "scrypt" or (int(n), int(r), int(p)) != (_N, _R, _P)
    except ValueError:
        return True


class VerifiedPasswords:
    """Passwords that passed :func:`verify_password` lately, so a partner's next bind skips scrypt.

    A network blip, or a partner that binds per batch, makes partners bind again and again; at ~20 ms of
    CPU per scrypt check (more on a small host) a few thousand rebinds queue for minutes.  (After a gateway
    restart the memory is empty: each partner's first binds pay scrypt once more.)  A successful check is
    remembered as an HMAC-SHA256 (key random per process) of the stored hash and the password; a bind whose
    tag is known passes in microseconds.  Only successes are remembered, so every wrong guess still pays
    scrypt; a changed password changes the stored hash (new salt), so the old tag never matches it.
    Bounded: the least recently used tags go first.  Thread-safe (binds are checked in worker threads).  A
    tag reveals no more than the bind itself does: SMPP v3.4 sends the password in clear.
    """

    def __init__(self, max_entries: int = 10_000) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be >= 1")
        self.max_entries = max_entries
        self.hits = 0
        self._key = os.urandom(32)
        self._tags: OrderedDict[bytes, None] = OrderedDict()
        self._lock = threading.Lock()

    def _tag(self, password: str, stored: str) -> bytes:
        msg = stored.encode("utf-8", "surrogatepass") + b"\x00" + password.encode("utf-8", "surrogatepass")
        return hmac.digest(self._key, msg, "sha256")

    def _hit(self, tag: bytes) -> bool:
        with self._lock:
            if tag in self._tags:
                self._tags.move_to_end(tag)
                self.hits += 1
                return True
        return False

    def known(self, password: str, stored: str) -> bool:
        """True when this password passed for this stored hash lately (microseconds, no scrypt): the bind
        guard lets such a bind through before any hashing queue or slow-down."""
        return self._hit(self._tag(password, stored))

    def verify(self, password: str, stored: str) -> bool:
        """:func:`verify_password`, from memory when this password passed for this stored hash lately."""
        tag = self._tag(password, stored)
        if self._hit(tag):
            return True
        if not verify_password(password, stored):
            return False
        with self._lock:
            self._tags[tag] = None
            if len(self._tags) > self.max_entries:
                self._tags.popitem(last=False)
        return True
