"""Prometheus metrics of a gateway node, and a small HTTP exporter that runs under trio.

Every :class:`Metrics` object has its own ``CollectorRegistry`` (tests and several gateways in one
process never collide).  The attribute names are the ones pinned in ``docs/dev/gateway.md``; the exported
names carry the ``catalyst_smpp_`` prefix::

    m = Metrics()
    m.submits_total.labels(partner="acme", status="ok").inc()
    async with trio.open_nursery() as n:
        port = await n.start(serve_metrics, m, "127.0.0.1", 9464)   # GET /metrics

The exporter is a tiny HTTP/1.0 handler on ``trio.serve_tcp``: no thread, cancelled with its nursery,
and port 0 picks a free port (returned by ``nursery.start``).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from typing import Any, TypeVar

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

__all__ = ["NAMESPACE", "Metrics", "serve_metrics"]

log = logging.getLogger(__name__)

NAMESPACE = "catalyst_smpp"

_M = TypeVar("_M", Counter, Gauge, Histogram)

# Latency buckets: loopback sub-millisecond up to operator links with seconds of delay.
_LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)


# Receipt latency buckets: handsets answer in seconds; switched-off ones in hours (up to the validity period).
_RECEIPT_BUCKETS = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0, 1800.0, 3600.0, 4 * 3600.0, 86400.0)


class Metrics:
    """The gateway's metrics on a private registry (``registry=None`` → a new one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        m = self._metric
        # --- pinned in docs/dev/gateway.md (used by the gateway parts)
        self.submits_total = m(
            Counter,
            "submits_total",
            "Partner submits answered, by partner and SMPP status name (ok = accepted).",
            ["partner", "status"],
        )
        self.billing_refusals_total = m(
            Counter,
            "billing_refusals_total",
            "Partner submits refused by billing, by partner and reason "
            "(insufficient_credit, unpriced, margin, currency).",
            ["partner", "reason"],
        )
        self.credit_entries_total = m(
            Counter,
            "credit_entries_total",
            "Credit entries the books took from the message log, by kind (hold, capture, release) and by "
            "outcome (written, or duplicate / settled: already there, so ignored).",
            ["kind", "outcome"],
        )
        self.credit_available = m(
            Gauge,
            "credit_available",
            "A billed partner's available credit (balance + credit limit - held - leased, in its account's "
            "currency) as of this node's last credit lease.",
            ["partner", "currency"],
        )
        self.credit_low = m(
            Gauge,
            "credit_low",
            "1 while a billed partner's balance is below its low-balance threshold (as of this node's last "
            "credit lease), else 0.",
            ["partner"],
        )
        self.operator_submits_total = m(
            Counter,
            "operator_submits_total",
            "submit_sm sent to operators, by operator and outcome (ok, or the status/error).",
            ["operator", "status"],
        )
        self.receipts_total = m(
            Counter,
            "receipts_total",
            "Delivery receipts received from operators and queued for partners, by final state.",
            ["partner", "state"],
        )
        self.receipts_unmatched_total = m(
            Counter,
            "receipts_unmatched_total",
            "Receipts from operators that reached no partner: reason=unknown_id (no message of ours has that "
            "id: check the operator's submit_id_format / receipt_id_format) or unreadable (no id in it).",
            ["operator", "reason"],
        )
        self.mo_total = m(Counter, "mo_total", "MO messages routed to a partner.", ["partner"])
        self.mo_unrouted_total = m(
            Counter,
            "mo_unrouted_total",
            "MO messages from an operator that matched no MO route (answered ESME_RX_T_APPN: the SMSC sends "
            "them again, so adding the route lets them through).",
            ["operator"],
        )
        self.deliver_total = m(
            Counter,
            "deliver_total",
            "deliver_sm (receipts and MO) sent to partners, by partner and outcome.",
            ["partner", "status"],
        )
        self.webhook_deliveries_total = m(
            Counter,
            "webhook_deliveries_total",
            "Receipts (kind=dlr) and MO (kind=mo) POSTed to partners' webhooks, by outcome: ok, "
            "redelivered (delivered after an earlier attempt: a possible duplicate), retry (the request "
            "failed; sent again later), poison (unreadable record, dropped).",
            ["partner", "kind", "outcome"],
        )
        self.binds = m(
            Gauge,
            "binds",
            "Open SMPP binds: side=partner (binds to us, name=system_id) or operator "
            "(our binds, name=operator).",
            ["side", "name"],
        )
        self.backlog = m(
            Gauge,
            "backlog",
            "Messages waiting in JetStream: kind=mt (per operator), dlr / mo (per partner).",
            ["kind", "name"],
        )
        self.connector_up = m(
            Gauge,
            "connector_up",
            "1 while at least one bind to the operator is up on this node, else 0.",
            ["operator"],
        )
        self.limit_share = m(
            Gauge,
            "limit_share",
            "Fraction of a cluster-wide limit this node holds now: kind=partner (its throttle_rate and "
            "burst), kind=operator (its tps); 1 on a node alone.",
            ["kind", "name"],
        )
        self.limit_demand = m(
            Gauge,
            "limit_demand",
            "This node's recent demand on a shared limit (submits asked per second, throttled or not), "
            "what its share is computed from.",
            ["kind", "name"],
        )
        self.cluster_nodes = m(
            Gauge,
            "cluster_nodes",
            "Gateway processes this node hears heartbeats from (itself included) for the shared limits.",
        )
        self.accept_seconds = m(
            Histogram,
            "accept_seconds",
            "Partner submit to submit_sm_resp (includes the JetStream publish ack).",
            buckets=_LATENCY_BUCKETS,
        )
        self.operator_submit_seconds = m(
            Histogram,
            "operator_submit_seconds",
            "submit_sm to the operator until its submit_sm_resp.",
            buckets=_LATENCY_BUCKETS,
        )
        self.receipt_seconds = m(
            Histogram,
            "receipt_seconds",
            "Partner submit accepted until the operator's final receipt for it is matched and queued for the "
            "partner, by operator (the partner's own delivery is not included).",
            ["operator"],
            buckets=_RECEIPT_BUCKETS,
        )
        # --- the daemon's own
        self.info = m(
            Gauge, "info", "Always 1; labels name this node and the software version.", ["node", "version"]
        )
        self.start_time_seconds = m(Gauge, "start_time_seconds", "Unix time the process started.")
        self.ready = m(
            Gauge, "ready", "1 once listeners and connectors are up; 0 while starting or draining."
        )
        self.config_from_snapshot = m(
            Gauge,
            "config_from_snapshot",
            "1 while this node serves from its saved configuration snapshot (Postgres was down at start); "
            "0 once Postgres is back and the configuration is read from it again.",
        )
        self.config_reloads_total = m(
            Counter,
            "config_reloads_total",
            "Config reloads (SIGHUP), by result: ok, or invalid (the old config stays in force).",
            ["result"],
        )
        # --- partner binds and connections refused (the bind guard, the listeners' connection limits)
        self.bind_failures_total = m(
            Counter,
            "bind_failures_total",
            "Partner binds refused (all answered ESME_RBINDFAIL), by reason: unknown_system_id, "
            "bad_password, disabled, address_not_allowed, address_locked and system_id_slowed (both "
            "refused without a password check).",
            ["reason"],
        )
        self.bind_slowdowns_total = m(
            Counter,
            "bind_slowdowns_total",
            "Slow-down episodes started: key=address (a source address locked out) or system_id (its "
            "password checks spaced out), after limits.bind_free_failures failed binds.",
            ["key"],
        )
        self.connections_refused_total = m(
            Counter,
            "connections_refused_total",
            "Partner connections closed at accept, by reason: per_address "
            "(limits.max_connections_per_address) or total (limits.max_connections).",
            ["reason"],
        )
        # series of the documented labels exist at 0 from the start: an alert on increase()/rate() then
        # fires on the first refusal instead of missing it (a series born at 1 has no increase)
        for reason in (
            "unknown_system_id",
            "bad_password",
            "disabled",
            "address_not_allowed",
            "address_locked",
            "system_id_slowed",
        ):
            self.bind_failures_total.labels(reason=reason)
        for key in ("address", "system_id"):
            self.bind_slowdowns_total.labels(key=key)
        for reason in ("per_address", "total"):
            self.connections_refused_total.labels(reason=reason)
        self.start_time_seconds.set(time.time())
        # the standard process_* series (CPU, resident memory, open fds, ...) of this process, on this
        # registry: with --workers each worker's endpoint reports its own process
        ProcessCollector(registry=self.registry)

    def _metric(
        self, kind: type[_M], name: str, documentation: str, labels: Sequence[str] = (), **kw: Any
    ) -> _M:
        """A metric ``catalyst_smpp_<name>`` on this object's registry."""
        return kind(name, documentation, labels, namespace=NAMESPACE, registry=self.registry, **kw)

    def set_info(self, node: str, version: str) -> None:
        self.info.clear()
        self.info.labels(node=node, version=version).set(1)

    def render(self) -> bytes:
        """The text exposition format (what GET /metrics returns)."""
        return generate_latest(self.registry)


# --------------------------------------------------------------------------- HTTP exporter

_MAX_REQUEST = 8192


def _response(status: str, body: bytes, content_type: str = "text/plain; charset=utf-8") -> bytes:
    head = (
        f"HTTP/1.0 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {len(body)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return head.encode("ascii") + body


async def _handle(stream: trio.SocketStream, metrics: Metrics) -> None:
    try:
        buf = b""
        with trio.move_on_after(10):
            while b"\r\n\r\n" not in buf and b"\n\n" not in buf and len(buf) < _MAX_REQUEST:
                chunk = await stream.receive_some(4096)
                if not chunk:
                    break
                buf += chunk
        line = buf.split(b"\n", 1)[0].decode("latin-1").strip()
        parts = line.split()
        if len(parts) < 2:
            await stream.send_all(_response("400 Bad Request", b"bad request\n"))
            return
        method, target = parts[0], parts[1].split("?", 1)[0]
        if method not in ("GET", "HEAD"):
            await stream.send_all(_response("405 Method Not Allowed", b"GET only\n"))
            return
        if target == "/metrics":
            body = metrics.render()
            reply = _response("200 OK", body, CONTENT_TYPE_LATEST)
        elif target == "/healthz":
            ok = _ready_value(metrics) >= 1
            reply = _response(
                "200 OK" if ok else "503 Service Unavailable", b"ok\n" if ok else b"not ready\n"
            )
        elif target == "/":
            reply = _response("200 OK", b"catalyst-smpp: see /metrics and /healthz\n")
        else:
            reply = _response("404 Not Found", b"not found\n")
        if method == "HEAD":
            reply = reply.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
        await stream.send_all(reply)
    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
        pass
    finally:
        await stream.aclose()


def _ready_value(metrics: Metrics) -> float:
    value: Any = metrics.registry.get_sample_value(f"{NAMESPACE}_ready")
    return float(value or 0.0)


async def serve_metrics(
    metrics: Metrics,
    host: str,
    port: int,
    *,
    task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``/metrics`` (and ``/healthz``: 200 when ready, else 503) until cancelled.

    ``task_status.started(port)`` reports the bound port (useful with port 0).
    """
    listeners = await trio.open_tcp_listeners(port, host=host or None)

    async def handler(stream: trio.SocketStream) -> None:
        await _handle(stream, metrics)

    bound = listeners[0].socket.getsockname()[1]
    log.info("metrics endpoint on http://%s:%d/metrics", host or "*", bound, extra={"port": bound})
    task_status.started(bound)
    await trio.serve_listeners(handler, listeners)
