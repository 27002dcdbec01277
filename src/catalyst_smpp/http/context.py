"""What the HTTP API's endpoints use from the gateway (one object, given to :func:`~.app.create_app`)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import attrs

from catalyst_smpp.gateway.accept import AcceptHandler
from catalyst_smpp.gateway.schedule import Scheduler
from catalyst_smpp.http.idempotency import IdempotencyStore
from catalyst_smpp.http.keys import KeyStore
from catalyst_smpp.http.ratelimit import KeyLimiter
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import Partner
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["ApiContext"]


@attrs.define
class ApiContext:
    accept: AcceptHandler
    """The accept pipeline: ``submit_api`` (the same checks, price and hold, route and publish as SMPP)."""
    db: Database
    partners: Callable[[str], Partner | None]
    """The partner of a system_id in the gateway's current configuration snapshot."""
    keys: KeyStore
    limiter: KeyLimiter
    throttle: Callable[[Partner], TokenBucket | None]
    """The partner's submit token bucket, the one its SMPP binds take from (None: not throttled)."""
    node: str = ""
    draining: Callable[[], bool] = lambda: False
    """True once the gateway drains: /health says so (a load balancer stops sending)."""
    bus: Any = None
    metrics: Any = None
    idempotency: IdempotencyStore | None = None
    """The Idempotency-Key store (None: keys are not honoured; the gateway always has one)."""
    scheduler: Scheduler | None = None
    """Scheduled sends and their cancel (None: a future ``schedule_time`` and DELETE are 503)."""
    receiver_bound: Callable[[str], bool] = lambda system_id: False
    """Whether the partner has an SMPP receiver (or transceiver) bound on this node."""
    dlr_webhook: Callable[[str], bool] = lambda system_id: False
    """Whether the partner's receipts go to its webhook."""
