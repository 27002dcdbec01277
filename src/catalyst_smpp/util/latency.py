"""Latency samples and percentiles for reports (load generator, benchmarks)."""

from __future__ import annotations

import math
from array import array

import attrs


@attrs.define
class LatencyRecorder:
    """Keeps every sample (8 bytes each) so percentiles are exact, not bucketed."""

    _samples: array[float] = attrs.field(factory=lambda: array("d"))
    _sorted: bool = attrs.field(default=True)

    def add(self, seconds: float) -> None:
        self._samples.append(seconds)
        self._sorted = False

    def extend(self, values: array[float] | list[float]) -> None:
        self._samples.extend(values)
        self._sorted = False

    def __len__(self) -> int:
        return len(self._samples)

    def _sort(self) -> None:
        if not self._sorted:
            self._samples = array("d", sorted(self._samples))
            self._sorted = True

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile (p in 0..100); NaN when there are no samples."""
        if not 0 <= p <= 100:
            raise ValueError("percentile must be within [0, 100]")
        n = len(self._samples)
        if n == 0:
            return math.nan
        self._sort()
        rank = max(1, math.ceil(p / 100.0 * n))
        return self._samples[rank - 1]

    def summary(self) -> dict[str, float]:
        """count, p50, p90, p99, max and mean, in seconds."""
        n = len(self._samples)
        if n == 0:
            return {
                "count": 0,
                "p50": math.nan,
                "p90": math.nan,
                "p99": math.nan,
                "max": math.nan,
                "mean": math.nan,
            }
        self._sort()
        return {
            "count": n,
            "p50": self.percentile(50),
            "p90": self.percentile(90),
            "p99": self.percentile(99),
            "max": self._samples[-1],
            "mean": math.fsum(self._samples) / n,
        }
