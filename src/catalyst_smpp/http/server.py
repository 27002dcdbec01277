"""``serve_http``: the HTTP API on our HTTP/1.1 server (:mod:`.h11server`) in the caller's trio nursery
(TLS when ``[http]`` has a cert).

``await nursery.start(serve_http, app, config, stop)`` returns once the socket listens (the bound addresses);
setting ``stop`` stops taking connections and lets requests in flight finish (``graceful`` seconds at most).
"""

from __future__ import annotations

import logging
from typing import Any

import trio

from catalyst_smpp.bus import Kind
from catalyst_smpp.config import HttpConfig
from catalyst_smpp.http.app import create_app
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.fast import FastSend
from catalyst_smpp.http.h11server import serve, tls_context
from catalyst_smpp.http.idempotency import IdempotencyStore
from catalyst_smpp.http.keys import KeyStore
from catalyst_smpp.http.ratelimit import KeyLimiter

__all__ = ["api_app", "api_context", "serve_http", "start_api"]

log = logging.getLogger(__name__)


def api_app(ctx: ApiContext) -> Any:
    """The ASGI app served: the FastAPI app behind the fast send route (:mod:`.fast`)."""
    return FastSend(create_app(ctx), ctx)


async def serve_http(
    app: Any,
    config: HttpConfig,
    stop: trio.Event,
    *,
    graceful: float = 10.0,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` until ``stop`` is set (module notes)."""
    ssl_context = None
    if config.tls_cert is not None:
        ssl_context = tls_context(str(config.tls_cert), str(config.tls_key) if config.tls_key else None)
    scheme = "https" if ssl_context is not None else "http"
    log.info("HTTP API on %s://%s:%d", scheme, config.host, config.port)
    await serve(
        app,
        config.host,
        config.port,
        stop,
        ssl_context=ssl_context,
        graceful=graceful,
        task_status=task_status,
    )


def api_context(gw: Any) -> ApiContext:
    """What the API uses of a running :class:`~catalyst_smpp.gateway.Gateway` ``gw``: its accept handler,
    partners, database, scheduler, the partners' SMPP token buckets, receiver binds and webhooks."""
    hc: HttpConfig = gw.cfg.http
    return ApiContext(
        accept=gw.accept,
        db=gw.db,
        partners=gw.partner,
        keys=KeyStore(gw.db, ttl=hc.key_cache),
        limiter=KeyLimiter(hc.rate, gw.shares),
        throttle=gw._partner_bucket,
        node=gw.node_id,
        draining=lambda: bool(gw._draining),
        bus=gw.bus,
        metrics=gw.metrics,
        idempotency=IdempotencyStore(gw.db),
        scheduler=gw.scheduler,
        receiver_bound=lambda sid: bool(gw.receivers.receivers(sid)),
        dlr_webhook=lambda sid: bool(gw.webhooks.covers(sid, Kind.DLR)),
    )


async def start_api(
    gw: Any,
    stop: trio.Event,
    done: trio.Event,
    *,
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """The HTTP API of a running :class:`~catalyst_smpp.gateway.Gateway` ``gw`` (:func:`api_context`);
    ``done`` is set once the server has stopped."""
    hc: HttpConfig = gw.cfg.http
    ctx = api_context(gw)
    try:
        await serve_http(
            api_app(ctx), hc, stop, graceful=gw.cfg.limits.shutdown_grace, task_status=task_status
        )
    finally:
        done.set()
