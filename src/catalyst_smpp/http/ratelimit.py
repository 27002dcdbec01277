"""Per-key request rate of the HTTP API: a token bucket per key (``util.ratelimit.TokenBucket``), burst one
second's worth; a request over it is refused 429 with ``Retry-After`` (whole seconds, at least 1).

The rate is a key's total over the cluster, not per process: each process runs the key's bucket at its
**share** of the rate (``gateway.shares``: the same heartbeats and the same split by demand as a partner's
throttle), so N nodes answering one key's requests accept about the key's rate together, not N times it.
A key unused for a minute is dropped here and its share goes back to the processes that still serve it."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Final

import trio

from catalyst_smpp.gateway.limits import IDLE_AFTER, MIN_SHARE
from catalyst_smpp.gateway.shares import LocalShares, Shares
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["API_KEY", "KeyLimiter"]

API_KEY: Final = "api_key"
"""The kind of the keys' shares (exported as ``limit_share{kind="api_key", name=<key id>}``)."""


class KeyLimiter:
    def __init__(
        self,
        default_rate: float,
        shares: Shares | None = None,
        clock: Callable[[], float] = trio.current_time,
    ) -> None:
        self.default_rate = default_rate
        self.shares = shares if shares is not None else LocalShares()
        self.clock = clock
        self._buckets: dict[int, TokenBucket] = {}
        self._rates: dict[int, float] = {}  # the key's configured (cluster-wide) rate
        self._seen: dict[int, tuple[float, float]] = {}  # key -> (bucket.asked, when it last moved)
        self._swept = clock()

    def check(self, key_id: int, rate: float | None) -> int | None:
        """None when the request may go; else the seconds to tell the client to wait (Retry-After)."""
        r = rate if rate is not None else self.default_rate
        now = self.clock()
        if now - self._swept >= IDLE_AFTER / 4:
            self._sweep(now)
        bucket = self._buckets.get(key_id)
        if bucket is None or self._rates[key_id] != r:
            if bucket is None:
                bucket = self._buckets[key_id] = TokenBucket(r, max(1.0, r))
            self._rates[key_id] = r
            b = bucket
            share = self.shares.track(
                API_KEY, str(key_id), r, lambda: b.asked, lambda s: self._apply(key_id, s)
            )
            self._apply(key_id, share)
        if bucket.try_take(now):
            return None
        return max(1, math.ceil(bucket.wait_time(now)))

    def _apply(self, key_id: int, share: float) -> None:
        bucket = self._buckets.get(key_id)
        if bucket is None:
            return
        rate = self._rates[key_id] * max(share, MIN_SHARE)
        bucket.reconfigure(rate, max(1.0, rate), self.clock())

    def _sweep(self, now: float) -> None:
        self._swept = now
        for key_id, bucket in list(self._buckets.items()):
            asked, since = self._seen.get(key_id, (-1.0, now))
            if bucket.asked != asked:
                self._seen[key_id] = (bucket.asked, now)
            elif now - since >= IDLE_AFTER:
                del self._buckets[key_id], self._rates[key_id], self._seen[key_id]
                self.shares.untrack(API_KEY, str(key_id))
