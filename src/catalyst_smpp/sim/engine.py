"""The simulator's decisions, without I/O: what to answer to a bind or a submit, and which receipt follows.

The trio side (:mod:`catalyst_smpp.sim.server`) asks this engine and carries the
answers out.  Time comes in as ``now``; randomness from the generator built from
the configured seed.
"""

from __future__ import annotations

import enum
import random

import attrs

from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.sim.config import DelayRange, SimConfig
from catalyst_smpp.sim.ids import IdGenerator
from catalyst_smpp.sim.mix import Mix, percent_mix
from catalyst_smpp.sim.stats import SimStats
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["Action", "ConnectionFaults", "SimEngine", "Verdict", "receipt_wanted"]


class Action(enum.Enum):
    ACCEPT = "accept"
    REJECT = "reject"
    DROP = "drop"


@attrs.frozen
class Verdict:
    action: Action
    status: int = 0
    message_id: str = ""
    delay: float = 0.0
    """Seconds to hold the response back (injected latency)."""
    state: MessageState | None = None
    """The final state this message will reach (its receipt's state), for accepted messages."""
    receipt_due_in: float | None = None
    """Seconds after the response at which a receipt is due; None when no receipt is to be sent."""
    receipt_id: str = ""


@attrs.define
class ConnectionFaults:
    """Per-connection fault state: how many submits it has received."""

    submits: int = 0


def receipt_wanted(registered_delivery: int, state: MessageState) -> bool:
    """registered_delivery bits 1-0: 1 always, 2 on failure only, 3 on success only (SMPP 5.0's meaning)."""
    mode = registered_delivery & 0x03
    if mode == 1:
        return True
    if mode == 2:
        return state is not MessageState.DELIVERED
    if mode == 3:
        return state is MessageState.DELIVERED
    return False


@attrs.define
class SimEngine:
    config: SimConfig
    stats: SimStats = attrs.field(factory=SimStats)
    rng: random.Random = attrs.field(init=False)
    ids: IdGenerator = attrs.field(init=False)
    _throttle_mix: Mix[bool] | None = attrs.field(init=False, default=None)
    _status_mix: Mix[int] | None = attrs.field(init=False, default=None)
    _state_mix: Mix[MessageState] = attrs.field(init=False)
    _bucket: TokenBucket | None = attrs.field(init=False, default=None)

    def __attrs_post_init__(self) -> None:
        cfg = self.config
        self.rng = random.Random(cfg.seed)
        draw = self.rng if cfg.seed is not None else None
        self.ids = IdGenerator(cfg.id_format, cfg.receipt_id_format, cfg.id_start)
        if cfg.throttle_fraction > 0:
            self._throttle_mix = Mix.of(
                [(True, cfg.throttle_fraction), (False, 1.0 - cfg.throttle_fraction)], draw
            )
        if cfg.status_mix:
            self._status_mix = percent_mix(list(cfg.status_mix), 0, draw)
        self._state_mix = Mix.of(list(cfg.receipt_mix), draw)
        if cfg.throttle_rate is not None:
            burst = cfg.throttle_burst if cfg.throttle_burst is not None else max(1.0, cfg.throttle_rate)
            self._bucket = TokenBucket(cfg.throttle_rate, burst)

    # -- binds -------------------------------------------------------------------

    def check_bind(self, system_id: str, password: str) -> int:
        creds = self.config.credentials
        if creds is None:
            status = 0
        elif system_id not in creds:
            status = CommandStatus.ESME_RINVSYSID
        elif creds[system_id] != password:
            status = CommandStatus.ESME_RINVPASWD
        else:
            status = 0
        if status:
            self.stats.bind_failures += 1
        else:
            self.stats.binds += 1
        return int(status)

    # -- submits -----------------------------------------------------------------

    def delay(self, rng_range: DelayRange) -> float:
        if rng_range.low == rng_range.high:
            return rng_range.low
        return self.rng.uniform(rng_range.low, rng_range.high)

    def on_submit(self, faults: ConnectionFaults, now: float, registered_delivery: int = 0) -> Verdict:
        """Decide the fate of one submit_sm / data_sm / submit_multi (:meth:`record` counts it later)."""
        cfg = self.config
        faults.submits += 1
        if cfg.drop_after is not None and faults.submits >= cfg.drop_after:
            return Verdict(Action.DROP)
        if cfg.drop_probability and self.rng.random() < cfg.drop_probability:
            return Verdict(Action.DROP)
        delay = self.delay(cfg.latency)
        throttled = self._throttle_mix.pick() if self._throttle_mix is not None else False
        if not throttled and self._bucket is not None:
            throttled = not self._bucket.try_take(now)
        if throttled:
            return Verdict(Action.REJECT, int(CommandStatus.ESME_RTHROTTLED), delay=delay)
        status = self._status_mix.pick() if self._status_mix is not None else 0
        if status:
            return Verdict(Action.REJECT, status, delay=delay)
        number = self.ids.next_number()
        state = self._state_mix.pick()
        due: float | None = None
        if cfg.receipts and receipt_wanted(registered_delivery, state):
            due = self.delay(cfg.receipt_delay)
        resp_id, receipt_id = self.ids.ids(number)
        return Verdict(Action.ACCEPT, 0, resp_id, delay, state, due, receipt_id)

    def record(self, verdict: Verdict) -> None:
        """Count a verdict once its response has actually been sent (a dropped connection may withhold it)."""
        stats = self.stats
        if verdict.action is Action.ACCEPT:
            stats.accepted += 1
        elif verdict.action is Action.REJECT:
            if verdict.status == CommandStatus.ESME_RTHROTTLED:
                stats.throttled += 1
            else:
                stats.count_error(verdict.status)
        else:
            stats.unanswered += 1

    def mo_interval(self) -> float | None:
        rate = self.config.mo_rate
        return 1.0 / rate if rate > 0 else None
