"""What a load run saw: counts, throughput and latency percentiles, as text or JSON."""

from __future__ import annotations

import math
from typing import Any

import attrs

from catalyst_smpp.protocol.constants import status_name
from catalyst_smpp.util.latency import LatencyRecorder

__all__ = ["LoadReport"]


def _ms(seconds: float) -> float | None:
    return None if math.isnan(seconds) else round(seconds * 1000.0, 3)


@attrs.define
class LoadReport:
    """Counters of one run.  ``submitted`` counts submit_sm PDUs sent (one per segment)."""

    binds: int = 0
    window: int = 0
    messages: int = 0
    """Messages begun (a long message of three segments counts once here, three times in ``submitted``)."""
    submitted: int = 0
    accepted: int = 0
    rejected: dict[str, int] = attrs.field(factory=dict)
    """submit_sm_resp with a non-zero status, by status name."""
    unanswered: int = 0
    """submit_sm that got no response: the connection was lost or the response timed out."""
    receipts: dict[str, int] = attrs.field(factory=dict)
    """Receipts matched to one of our submits, by stat (DELIVRD, UNDELIV ...)."""
    receipts_unmatched: int = 0
    receipts_duplicate: int = 0
    receipts_early: int = 0
    """Receipts that arrived before the submit_sm_resp of their message (still matched)."""
    receipts_missing: int = 0
    """Receipts asked for and not received by the end of the run."""
    mo: int = 0
    """deliver_sm that were not receipts."""
    bind_failures: int = 0
    reconnects: int = 0
    elapsed: float = 0.0
    submit_resp: LatencyRecorder = attrs.field(factory=LatencyRecorder)
    submit_receipt: LatencyRecorder = attrs.field(factory=LatencyRecorder)

    def reject(self, status: int) -> None:
        name = status_name(status)
        self.rejected[name] = self.rejected.get(name, 0) + 1

    def receipt(self, stat: str) -> None:
        self.receipts[stat] = self.receipts.get(stat, 0) + 1

    @property
    def responses(self) -> int:
        return self.accepted + sum(self.rejected.values())

    @property
    def throughput(self) -> float:
        """submit_sm answered per second of the run."""
        return self.responses / self.elapsed if self.elapsed > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        def lat(rec: LatencyRecorder) -> dict[str, Any]:
            s = rec.summary()
            return {
                "count": int(s["count"]),
                **{k: (None if math.isnan(v) else v) for k, v in s.items() if k != "count"},
            }

        return {
            "binds": self.binds,
            "window": self.window,
            "messages": self.messages,
            "submitted": self.submitted,
            "accepted": self.accepted,
            "rejected": dict(sorted(self.rejected.items())),
            "unanswered": self.unanswered,
            "receipts": dict(sorted(self.receipts.items())),
            "receipts_unmatched": self.receipts_unmatched,
            "receipts_duplicate": self.receipts_duplicate,
            "receipts_early": self.receipts_early,
            "receipts_missing": self.receipts_missing,
            "mo": self.mo,
            "bind_failures": self.bind_failures,
            "reconnects": self.reconnects,
            "elapsed": self.elapsed,
            "throughput": self.throughput,
            "latency": {"submit_resp": lat(self.submit_resp), "submit_receipt": lat(self.submit_receipt)},
        }

    def format_text(self) -> str:
        lines = [
            f"binds {self.binds} x window {self.window}, {self.elapsed:.2f} s",
            f"messages   {self.messages}",
            f"submitted  {self.submitted}",
            f"accepted   {self.accepted}",
        ]
        rejected = sum(self.rejected.values())
        detail = ", ".join(f"{k} {v}" for k, v in sorted(self.rejected.items()))
        lines.append(f"rejected   {rejected}" + (f" ({detail})" if detail else ""))
        lines.append(f"unanswered {self.unanswered}")
        if self.receipts or self.receipts_missing or self.receipts_unmatched:
            total = sum(self.receipts.values())
            detail = ", ".join(f"{k} {v}" for k, v in sorted(self.receipts.items()))
            lines.append(f"receipts   {total}" + (f" ({detail})" if detail else ""))
            extra = (
                f"missing {self.receipts_missing}, unmatched {self.receipts_unmatched}, "
                f"duplicate {self.receipts_duplicate}, before resp {self.receipts_early}"
            )
            lines.append(f"           {extra}")
        if self.mo:
            lines.append(f"mo         {self.mo}")
        if self.reconnects or self.bind_failures:
            lines.append(f"reconnects {self.reconnects}, bind failures {self.bind_failures}")
        lines.append(f"throughput {self.throughput:.1f} submit_sm/s")
        for label, rec in (("submit->resp", self.submit_resp), ("submit->receipt", self.submit_receipt)):
            if len(rec):
                s = rec.summary()
                lines.append(
                    f"{label:<16} p50 {_ms(s['p50'])} ms  p90 {_ms(s['p90'])} ms  p99 {_ms(s['p99'])} ms  "
                    f"max {_ms(s['max'])} ms  (n={int(s['count'])})"
                )
        return "\n".join(lines)
