"""Counters of what the simulator saw and did."""

from __future__ import annotations

from typing import Any

import attrs

from catalyst_smpp.protocol.constants import status_name

__all__ = ["SimStats"]


@attrs.define
class SimStats:
    connections: int = 0
    """TCP connections accepted."""
    binds: int = 0
    bind_failures: int = 0
    unbinds: int = 0
    disconnects: int = 0
    """Connections that ended, for any reason."""
    drops: int = 0
    """Connections the simulator dropped on purpose (fault injection)."""
    submit_sm: int = 0
    data_sm: int = 0
    submit_multi: int = 0
    accepted: int = 0
    throttled: int = 0
    errors: dict[str, int] = attrs.field(factory=dict)
    """Error statuses answered on purpose (status mix), by name; ESME_RTHROTTLED is in ``throttled``."""
    invalid: dict[str, int] = attrs.field(factory=dict)
    """Requests answered with an error because they were malformed or not allowed, by status name."""
    unanswered: int = 0
    """Submits read but never answered because the connection was dropped."""
    receipts_sent: int = 0
    receipts_by_stat: dict[str, int] = attrs.field(factory=dict)
    receipts_pending: int = 0
    """Receipts due but waiting for the ESME to bind a receiver or transceiver."""
    receipts_failed: int = 0
    """deliver_sm receipts answered with a permanent error status or never answered."""
    deliver_retries: int = 0
    """deliver_sm (receipts, MO) answered with a temporary error (ESME_RX_T_APPN, ESME_RTHROTTLED,
    ESME_RMSGQFUL) and sent again a second later."""
    mo_sent: int = 0
    mo_failed: int = 0
    enquire_link: int = 0
    other: int = 0

    @property
    def submits(self) -> int:
        return self.submit_sm + self.data_sm + self.submit_multi

    def count_error(self, status: int) -> None:
        name = status_name(status)
        self.errors[name] = self.errors.get(name, 0) + 1

    def count_invalid(self, status: int) -> None:
        name = status_name(status)
        self.invalid[name] = self.invalid.get(name, 0) + 1

    def count_receipt(self, stat: str) -> None:
        self.receipts_sent += 1
        self.receipts_by_stat[stat] = self.receipts_by_stat.get(stat, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        out = attrs.asdict(self)
        out["submits"] = self.submits
        for key in ("errors", "invalid", "receipts_by_stat"):
            out[key] = dict(sorted(out[key].items()))
        return out

    def line(self) -> str:
        """One compact line for the periodic log."""
        errors = sum(self.errors.values())
        return (
            f"binds {self.binds} submits {self.submits} ok {self.accepted} throttled {self.throttled} "
            f"errors {errors} dropped {self.drops} receipts {self.receipts_sent} "
            f"(pending {self.receipts_pending}) mo {self.mo_sent}"
        )
