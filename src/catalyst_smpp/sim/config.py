"""Settings of the SMSC simulator, and the small parsers the command line uses for them."""

from __future__ import annotations

import math
import re

import attrs

from catalyst_smpp.encoding.receipts import stat_for_state, state_for_stat
from catalyst_smpp.protocol.constants import CommandStatus, EsmClass, MessageState
from catalyst_smpp.sim.ids import IdFormat

__all__ = [
    "DelayRange",
    "SimConfig",
    "parse_credentials",
    "parse_delay",
    "parse_state",
    "parse_status",
]

_DURATION = re.compile(r"^\s*([0-9]*\.?[0-9]+)\s*(ms|s|us)?\s*$")


def _seconds(text: str, default_unit: str) -> float:
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration (e.g. 250ms, 1.5s)")
    value = float(m.group(1))
    unit = m.group(2) or default_unit
    return value / {"s": 1.0, "ms": 1000.0, "us": 1_000_000.0}[unit]


@attrs.frozen
class DelayRange:
    """A delay drawn uniformly from [low, high] seconds (fixed when they are equal)."""

    low: float = 0.0
    high: float = 0.0

    def __attrs_post_init__(self) -> None:
        if not (0 <= self.low <= self.high and math.isfinite(self.high)):
            raise ValueError(f"bad delay range {self.low}..{self.high}")

    @property
    def is_zero(self) -> bool:
        return self.high == 0

    def __str__(self) -> str:
        if self.low == self.high:
            return f"{self.low * 1000:g}ms"
        return f"{self.low * 1000:g}-{self.high * 1000:g}ms"


def parse_delay(text: str, default_unit: str = "ms") -> DelayRange:
    """``"20"``/``"20ms"``/``"0.5s"`` (fixed) or ``"5-50ms"``/``"1s-3s"`` (uniform range).

    Bare numbers are milliseconds.
    """
    low_text, sep, high_text = text.partition("-")
    if not sep:
        value = _seconds(text, default_unit)
        return DelayRange(value, value)
    unit_match = re.search(r"(ms|s|us)\s*$", high_text)
    unit = unit_match.group(1) if unit_match else default_unit
    return DelayRange(_seconds(low_text, unit), _seconds(high_text, unit))


def parse_status(text: str) -> int:
    """A command_status by name (``ESME_RTHROTTLED``, ``RTHROTTLED``, ``THROTTLED``) or number (``0x58``)."""
    t = text.strip()
    try:
        return int(t, 0)
    except ValueError:
        pass
    upper = t.upper()
    for candidate in (upper, "ESME_" + upper, "ESME_R" + upper):
        if candidate in CommandStatus.__members__:
            return int(CommandStatus[candidate])
    raise ValueError(f"unknown command_status {text!r}")


def parse_state(text: str) -> MessageState:
    """A final message state by receipt stat (``DELIVRD``, ``UNDELIV``) or state name (``DELIVERED``)."""
    state = state_for_stat(text)
    if state is None:
        try:
            state = MessageState[text.strip().upper()]
        except KeyError:
            raise ValueError(f"unknown message state {text!r}") from None
    return state


def parse_credentials(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["alice:secret", "bob:pw"]`` -> ``{"alice": "secret", "bob": "pw"}``."""
    out: dict[str, str] = {}
    for item in items:
        system_id, sep, password = item.partition(":")
        if not sep or not system_id:
            raise ValueError(f"{item!r}: expected SYSTEM_ID:PASSWORD")
        out[system_id] = password
    return out


def _state_weights(value: tuple[tuple[MessageState, float], ...]) -> tuple[tuple[MessageState, float], ...]:
    return tuple((MessageState(s), float(w)) for s, w in value)


@attrs.frozen(kw_only=True)
class SimConfig:
    """Everything the simulator can be told.  Times in seconds, fractions within 0..1, percentages 0..100."""

    host: str = "127.0.0.1"
    port: int = 0
    system_id: str = "CATALYSTSIM"
    """The SMSC's own system_id, returned in bind responses."""
    credentials: dict[str, str] | None = None
    """Accepted ``system_id -> password``; None accepts any."""

    window: int = 64
    """deliver_sm (receipts, MO) the simulator keeps in flight per bind."""

    # message ids
    id_format: IdFormat = attrs.field(factory=IdFormat)
    receipt_id_format: IdFormat | None = None
    """How the receipt spells the id; None: exactly as in the submit_sm_resp."""
    id_start: int = 1

    # responses
    latency: DelayRange = attrs.field(factory=DelayRange)
    throttle_fraction: float = 0.0
    throttle_rate: float | None = None
    """submit_sm per second (over all binds) above which ESME_RTHROTTLED is answered."""
    throttle_burst: float | None = None
    status_mix: tuple[tuple[int, float], ...] = ()
    """(command_status, percent of submits); the rest is accepted."""

    # receipts
    receipts: bool = True
    receipt_delay: DelayRange = attrs.field(factory=DelayRange)
    receipt_mix: tuple[tuple[MessageState, float], ...] = attrs.field(
        default=((MessageState.DELIVERED, 100.0),), converter=_state_weights
    )
    receipt_copies: int = attrs.field(default=1, validator=attrs.validators.in_(range(1, 11)))
    """Each receipt is sent this many times (some SMSCs repeat receipts; the gateway must not count them
    twice)."""
    receipt_text: bool = True
    receipt_tlvs: bool = True
    receipt_data_coding: int = 0
    """0: the receipt text in ASCII; 8: in UCS-2 (as some SMSCs send it)."""
    receipt_esm_class: int = int(EsmClass.TYPE_DELIVERY_RECEIPT)
    """0 sends receipts as plain deliver_sm, as some SMSCs do (with ``receipt_tlvs=False`` only the text
    says it is a receipt)."""
    receipt_tlv_resp_id: bool = False
    """The receipted_message_id TLV carries the id as the submit_sm_resp spelt it (``id_format``), the text
    as ``receipt_id_format`` spells it: a legacy SMSC form (hex TLV, decimal text)."""

    # connection faults
    drop_after: int | None = None
    """Drop each connection after it has received this many PDUs (that PDU is not answered)."""
    drop_probability: float = 0.0
    """Chance that any received PDU drops its connection instead of being answered."""

    # mobile-originated messages
    mo_rate: float = 0.0
    """MO deliver_sm per second, spread over the receiver/transceiver binds."""
    mo_count: int | None = None
    mo_text: str = "Hello from the SMSC simulator"
    """``{n}`` in it is replaced by the MO's number (1, 2, ...)."""
    mo_source: str = "447700900001"
    mo_dest: str = "12345"

    seed: int | None = None
    """None: mixes spread deterministically, delays drawn from an unseeded generator.  A number: all draws
    are random from a generator seeded with it (reproducible)."""
    keep_messages: int | None = None
    """Stored messages to keep for inspection (oldest dropped first); None keeps all, 0 none."""
    stats_interval: float = 0.0
    """Seconds between stats log lines (0: none)."""

    def __attrs_post_init__(self) -> None:
        for name in ("throttle_fraction", "drop_probability"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"{name} must be within 0..1, got {value}")
        if self.throttle_rate is not None and not self.throttle_rate > 0:
            raise ValueError("throttle_rate must be > 0")
        if self.drop_after is not None and self.drop_after < 1:
            raise ValueError("drop_after must be >= 1")
        if sum(p for _, p in self.status_mix) > 100.0 + 1e-9:
            raise ValueError("status_mix percentages add up to more than 100")
        if any(s == 0 for s, _ in self.status_mix):
            raise ValueError("status_mix lists error statuses; ESME_ROK is the remainder")
        if not self.receipt_mix or sum(w for _, w in self.receipt_mix) <= 0:
            raise ValueError("receipt_mix needs a positive weight")
        if self.window < 1:
            raise ValueError("window must be >= 1")
        if self.mo_rate < 0:
            raise ValueError("mo_rate must be >= 0")
        if self.receipt_data_coding not in (0, 8):
            raise ValueError("receipt_data_coding must be 0 (ASCII) or 8 (UCS-2)")

    def describe(self) -> str:
        """One line of the settings that matter, for the log."""
        parts = [f"ids {self.id_format.form.value}"]
        if self.receipt_id_format is not None:
            parts.append(f"receipt ids {self.receipt_id_format.form.value}")
        if not self.latency.is_zero:
            parts.append(f"latency {self.latency}")
        if self.throttle_fraction:
            parts.append(f"throttle {self.throttle_fraction:.1%}")
        if self.throttle_rate:
            parts.append(f"throttle above {self.throttle_rate:g}/s")
        if self.status_mix:
            parts.append("errors " + ",".join(f"0x{s:X}={p:g}%" for s, p in self.status_mix))
        if self.receipts:
            mix = ",".join(f"{stat_for_state(s)}={w:g}" for s, w in self.receipt_mix)
            parts.append(f"receipts {mix} after {self.receipt_delay}")
        if self.drop_after:
            parts.append(f"drop after {self.drop_after} PDUs")
        if self.drop_probability:
            parts.append(f"drop p={self.drop_probability:g}")
        if self.mo_rate:
            parts.append(f"MO {self.mo_rate:g}/s")
        return "; ".join(parts)
