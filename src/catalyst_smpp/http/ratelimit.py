"""Per-key request rate of the HTTP API: a token bucket per key (``util.ratelimit.TokenBucket``), burst one
second's worth; a request over it is refused 429 with ``Retry-After`` (whole seconds, at least 1)."""

from __future__ import annotations

import math
from collections.abc import Callable

import trio

from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["KeyLimiter"]


class KeyLimiter:
    def __init__(self, default_rate: float, clock: Callable[[], float] = trio.current_time) -> None:
        self.default_rate = default_rate
        self.clock = clock
        self._buckets: dict[int, TokenBucket] = {}

    def check(self, key_id: int, rate: float | None) -> int | None:
        """None when the request may go; else the seconds to tell the client to wait (Retry-After)."""
        r = rate if rate is not None else self.default_rate
        burst = max(1.0, r)
        now = self.clock()
        bucket = self._buckets.get(key_id)
        if bucket is None:
            bucket = self._buckets[key_id] = TokenBucket(r, burst)
        elif bucket.rate != r:
            bucket.reconfigure(r, burst, now)
        if bucket.try_take(now):
            return None
        return max(1, math.ceil(bucket.wait_time(now)))
