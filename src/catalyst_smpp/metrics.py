"""Prometheus metrics of a gateway node, and a small HTTP exporter that runs under trio.

Every :class:`Metrics` object has its own ``CollectorRegistry`` (tests and several gateways in one
process never collide).  The attribute names are the ones pinned in ``docs/gateway.md``; the exported
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
from typing import Any

import trio
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)

__all__ = ["NAMESPACE", "Metrics", "serve_metrics"]

log = logging.getLogger(__name__)

NAMESPACE = "catalyst_smpp"

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


class Metrics:
    """The gateway's metrics on a private registry (``registry=None`` → a new one)."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        r, ns = self.registry, NAMESPACE
        # --- pinned in docs/gateway.md (used by the gateway parts)
        self.submits_total = Counter(
            "submits_total",
            "Partner submits answered, by partner and SMPP status name (ok = accepted).",
            ["partner", "status"],
            namespace=ns,
            registry=r,
        )
        self.operator_submits_total = Counter(
            "operator_submits_total",
            "submit_sm sent to operators, by operator and outcome (ok, or the status/error).",
            ["operator", "status"],
            namespace=ns,
            registry=r,
        )
        self.receipts_total = Counter(
            "receipts_total",
            "Delivery receipts received from operators and queued for partners, by final state.",
            ["partner", "state"],
            namespace=ns,
            registry=r,
        )
        self.mo_total = Counter(
            "mo_total", "MO messages routed to a partner.", ["partner"], namespace=ns, registry=r
        )
        self.deliver_total = Counter(
            "deliver_total",
            "deliver_sm (receipts and MO) sent to partners, by partner and outcome.",
            ["partner", "status"],
            namespace=ns,
            registry=r,
        )
        self.binds = Gauge(
            "binds",
            "Open SMPP binds: side=partner (binds to us, name=system_id) or operator "
            "(our binds, name=operator).",
            ["side", "name"],
            namespace=ns,
            registry=r,
        )
        self.backlog = Gauge(
            "backlog",
            "Messages waiting in JetStream: kind=mt (per operator), dlr / mo (per partner).",
            ["kind", "name"],
            namespace=ns,
            registry=r,
        )
        self.connector_up = Gauge(
            "connector_up",
            "1 while at least one bind to the operator is up on this node, else 0.",
            ["operator"],
            namespace=ns,
            registry=r,
        )
        self.accept_seconds = Histogram(
            "accept_seconds",
            "Partner submit to submit_sm_resp (includes the JetStream publish ack).",
            namespace=ns,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        self.operator_submit_seconds = Histogram(
            "operator_submit_seconds",
            "submit_sm to the operator until its submit_sm_resp.",
            namespace=ns,
            registry=r,
            buckets=_LATENCY_BUCKETS,
        )
        # --- the daemon's own
        self.info = Gauge(
            "info",
            "Always 1; labels name this node and the software version.",
            ["node", "version"],
            namespace=ns,
            registry=r,
        )
        self.start_time_seconds = Gauge(
            "start_time_seconds", "Unix time the process started.", namespace=ns, registry=r
        )
        self.ready = Gauge(
            "ready",
            "1 once listeners and connectors are up; 0 while starting or draining.",
            namespace=ns,
            registry=r,
        )
        self.config_reloads_total = Counter(
            "config_reloads_total",
            "Config reloads (SIGHUP), by result: ok, or invalid (the old config stays in force).",
            ["result"],
            namespace=ns,
            registry=r,
        )
        self.start_time_seconds.set(time.time())

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
