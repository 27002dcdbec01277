"""Weighted mixes of outcomes, given on the command line as ``NAME=WEIGHT,NAME=WEIGHT``.

A :class:`Mix` hands out outcomes in proportion to their weights.  By default it
spreads them deterministically (smooth weighted round-robin, as nginx balances
upstreams): with integer weights every run of ``sum(weights)`` picks contains each
outcome exactly ``weight`` times, evenly interleaved, so tests and operators can
predict exact counts.  Given a ``random.Random`` it draws independently instead.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Iterable, Sequence
from typing import Generic, TypeVar

import attrs

T = TypeVar("T")
K = TypeVar("K")

__all__ = ["Mix", "MixError", "parse_mix", "percent_mix"]


class MixError(ValueError):
    """A mix specification that cannot be used."""


@attrs.define
class Mix(Generic[T]):
    entries: tuple[tuple[T, float], ...]
    rng: random.Random | None = None
    _current: list[float] = attrs.field(init=False, factory=list)
    _total: float = attrs.field(init=False, default=0.0)
    _cumulative: list[float] = attrs.field(init=False, factory=list)

    def __attrs_post_init__(self) -> None:
        if not self.entries:
            raise MixError("a mix needs at least one entry")
        for value, weight in self.entries:
            if not weight >= 0:
                raise MixError(f"weight of {value!r} must be >= 0, got {weight!r}")
        self._total = sum(w for _, w in self.entries)
        if self._total <= 0:
            raise MixError("the weights of a mix must not all be zero")
        self._current = [0.0] * len(self.entries)
        acc = 0.0
        for _, w in self.entries:
            acc += w
            self._cumulative.append(acc)

    @classmethod
    def of(cls, weights: Iterable[tuple[T, float]], rng: random.Random | None = None) -> Mix[T]:
        return cls(tuple((v, float(w)) for v, w in weights), rng)

    @property
    def total(self) -> float:
        return self._total

    def share(self, value: T) -> float:
        """The fraction of picks that give ``value``."""
        return sum(w for v, w in self.entries if v == value) / self._total

    def pick(self) -> T:
        if len(self.entries) == 1:
            return self.entries[0][0]
        if self.rng is not None:
            x = self.rng.random() * self._total
            for (value, _), edge in zip(self.entries, self._cumulative, strict=True):
                if x < edge:
                    return value
            return self.entries[-1][0]
        best = 0
        current = self._current
        for i, (_, weight) in enumerate(self.entries):
            current[i] += weight
            if current[i] > current[best]:
                best = i
        current[best] -= self._total
        return self.entries[best][0]


def parse_mix(text: str, parse_key: Callable[[str], K]) -> list[tuple[K, float]]:
    """Read ``"A=90,B=5,C=5"`` into ``[(A, 90.0), ...]``, the keys read by ``parse_key``.

    Raises :class:`MixError` with a readable message on bad input.  Keys must be unique.
    """
    out: list[tuple[K, float]] = []
    seen: list[K] = []
    for item in text.split(","):
        item = item.strip()
        if not item:
            continue
        name, sep, weight_text = item.partition("=")
        if not sep:
            raise MixError(f"{item!r}: expected NAME=WEIGHT")
        try:
            key = parse_key(name.strip())
        except ValueError as exc:
            raise MixError(f"{name.strip()!r}: {exc}") from None
        try:
            weight = float(weight_text)
        except ValueError:
            raise MixError(f"{item!r}: weight {weight_text!r} is not a number") from None
        if not weight >= 0 or weight == float("inf"):
            raise MixError(f"{item!r}: weight must be a finite number >= 0")
        if key in seen:
            raise MixError(f"{name.strip()!r} given twice")
        seen.append(key)
        out.append((key, weight))
    if not out:
        raise MixError("empty mix")
    return out


def percent_mix(entries: Sequence[tuple[K, float]], rest: K, rng: random.Random | None = None) -> Mix[K]:
    """A mix where ``entries`` are percentages and ``rest`` takes what is left of 100."""
    used = sum(w for _, w in entries)
    if used > 100.0 + 1e-9:
        raise MixError(f"percentages add up to {used:g}, more than 100")
    weights = [*entries]
    if used < 100.0:
        weights.append((rest, 100.0 - used))
    return Mix.of(weights, rng)
