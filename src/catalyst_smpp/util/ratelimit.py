"""Token-bucket rate limiting, driven by the caller's clock.

A token bucket admits bursts up to ``burst`` and a sustained ``rate`` per
second.  Unlike a minimum gap between messages, it does not reject a windowed
partner's normal burst (field lesson 11).  Time always comes in as an argument,
so the same object works under trio's real or autojump clock and in tests.
"""

from __future__ import annotations

import math

import attrs


@attrs.define
class TokenBucket:
    rate: float = attrs.field()
    burst: float = attrs.field()
    _tokens: float = attrs.field(init=False)
    _stamp: float | None = attrs.field(init=False, default=None)
    #: tokens asked of :meth:`try_take` so far, granted or not: the demand a shared limit is split by
    asked: float = attrs.field(init=False, default=0.0)

    @rate.validator
    def _check_rate(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not (value > 0 and math.isfinite(value)):
            raise ValueError(f"rate must be a positive number, got {value!r}")

    @burst.validator
    def _check_burst(self, attribute: attrs.Attribute[float], value: float) -> None:
        if not (value >= 1 and math.isfinite(value)):
            raise ValueError(f"burst must be at least 1, got {value!r}")

    def __attrs_post_init__(self) -> None:
        self._tokens = float(self.burst)

    def _refill(self, now: float) -> None:
        if self._stamp is None:
            self._stamp = now
            return
        elapsed = now - self._stamp
        if elapsed > 0:
            self._tokens = min(self.burst, self._tokens + elapsed * self.rate)
            self._stamp = now

    def try_take(self, now: float, n: float = 1.0) -> bool:
        """Take ``n`` tokens if they are there; return whether they were."""
        self.asked += n
        self._refill(now)
        if self._tokens >= n:
            self._tokens -= n
            return True
        return False

    def wait_time(self, now: float, n: float = 1.0) -> float:
        """Seconds from ``now`` until ``n`` tokens will be available (0 if they are)."""
        self._refill(now)
        missing = n - self._tokens
        return 0.0 if missing <= 0 else missing / self.rate

    def tokens(self, now: float) -> float:
        self._refill(now)
        return self._tokens

    def reconfigure(self, rate: float, burst: float, now: float) -> None:
        """Change rate and burst in place (on reload), keeping what has accrued up to the new burst."""
        self._refill(now)
        self._check_rate(attrs.fields(TokenBucket).rate, rate)
        self._check_burst(attrs.fields(TokenBucket).burst, burst)
        self.rate = rate
        self.burst = burst
        self._tokens = min(self._tokens, float(burst))
