"""Exponential back-off with jitter for reconnects and retries.

The random source is passed in (a ``random.Random``), so tests are
deterministic and nothing reads a global generator.
"""

from __future__ import annotations

import random

import attrs


@attrs.define
class Backoff:
    initial: float = 0.5
    maximum: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    """Fraction of each delay that is randomised: the delay is drawn from [d*(1-jitter), d]."""
    rng: random.Random = attrs.field(factory=random.Random)
    _attempt: int = attrs.field(init=False, default=0)

    def __attrs_post_init__(self) -> None:
        if self.initial <= 0 or self.maximum < self.initial:
            raise ValueError("need 0 < initial <= maximum")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be within [0, 1]")

    @property
    def attempt(self) -> int:
        return self._attempt

    def ceiling(self, attempt: int) -> float:
        """The delay before randomisation for the given attempt (0-based)."""
        # cap the exponent so huge attempt counts do not overflow a float
        exp = min(attempt, 64)
        return min(self.maximum, self.initial * self.multiplier**exp)

    def next_delay(self) -> float:
        top = self.ceiling(self._attempt)
        self._attempt += 1
        if self.jitter == 0:
            return top
        return self.rng.uniform(top * (1.0 - self.jitter), top)

    def reset(self) -> None:
        self._attempt = 0
