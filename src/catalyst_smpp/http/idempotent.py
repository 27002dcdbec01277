"""``Idempotency-Key`` on the sends (``POST /api/v4/sms/send`` and ``/sms/bulk``): a retried request gets the
first one's answer instead of sending again, on whichever node it reaches (the keys are in Postgres).

:func:`answer_once` claims the partner's key for the request's hash -- SHA-256 of the request path and of
the body as validated, in canonical JSON (sorted keys, defaults filled in: the same request written
differently is the same request) -- then

* :class:`~.idempotency.Claimed`: runs the request; an answer (2xx: something was accepted or the request
  was answered for good) is stored with :func:`~.idempotency.complete`; an error (:class:`ApiError`: 400,
  402, 429, 503 ..., raised before anything was accepted) drops the claim (:func:`~.idempotency.forget`), so
  that a retry is processed again.  The run and the store are shielded from cancellation (a client that
  hangs up): a claim left pending would answer every retry 409 IN_FLIGHT until the key expires;
* :class:`~.idempotency.Replay`: the stored status and body, with ``Idempotent-Replayed: true``;
* :class:`~.idempotency.Conflict`: 409 ``IDEMPOTENCY_CONFLICT`` (the key was used for another request);
* :class:`~.idempotency.InFlight`: 409 ``IDEMPOTENCY_IN_FLIGHT`` with ``Retry-After`` (the first one runs).

An answer that cannot be stored (the database went away after the accept) is still given; its key stays
pending, and retries get 409 IN_FLIGHT until it expires (rather than a second send).
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any, Final

import psycopg
import trio
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError
from catalyst_smpp.http.idempotency import Claimed, Conflict, InFlight, Replay
from catalyst_smpp.store.records import Partner

__all__ = ["REPLAYED", "answer_once", "request_hash"]

log = logging.getLogger(__name__)

REPLAYED: Final = "Idempotent-Replayed"
"""The header of a replayed answer."""

_IN_FLIGHT_RETRY: Final = "1"


def request_hash(path: str, body: BaseModel) -> str:
    """The hash a key is claimed for: the path and the validated body in canonical JSON."""
    canonical = json.dumps(
        body.model_dump(mode="json", by_alias=True), sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    return hashlib.sha256(f"{path}\n{canonical}".encode()).hexdigest()


async def answer_once(
    ctx: ApiContext,
    partner: Partner,
    key: str | None,
    path: str,
    body: BaseModel,
    run: Callable[[], Awaitable[tuple[int, Any]]],
) -> JSONResponse:
    """The answer to a send with ``key`` (module notes); without a key (or without a store), ``run()``'s.
    ``run`` returns the status and the JSON body of the answer, or raises :class:`ApiError`."""
    store = ctx.idempotency
    if key is None or store is None:
        status, content = await run()
        return JSONResponse(content, status)
    sid = partner.system_id
    try:
        got = await store.claim(sid, key, request_hash(path, body))
    except (psycopg.Error, OSError) as exc:
        raise ApiError(
            503, "SERVICE_UNAVAILABLE", "the idempotency key cannot be checked now; try again"
        ) from exc
    if isinstance(got, Replay):
        return JSONResponse(got.body, got.status, headers={REPLAYED: "true"})
    if isinstance(got, Conflict):
        raise ApiError(
            409,
            "IDEMPOTENCY_CONFLICT",
            "this Idempotency-Key was used for another request",
            {"idempotency_key": key},
        )
    if isinstance(got, InFlight):
        raise ApiError(
            409,
            "IDEMPOTENCY_IN_FLIGHT",
            "the first request with this Idempotency-Key is still being processed",
            {"idempotency_key": key},
            {"Retry-After": _IN_FLIGHT_RETRY},
        )
    assert isinstance(got, Claimed)
    with trio.CancelScope(shield=True):
        try:
            status, content = await run()
        except BaseException:
            await _forget(store, sid, key)
            raise
        try:
            await store.complete(sid, key, status, content)
        except (psycopg.Error, OSError) as exc:
            log.warning("[%s] idempotency key answer not stored (retries get IN_FLIGHT): %s", sid, exc)
    return JSONResponse(content, status)


async def _forget(store: Any, partner: str, key: str) -> None:
    try:
        await store.forget(partner, key)
    except (psycopg.Error, OSError) as exc:
        log.warning("[%s] idempotency key not released (retries get IN_FLIGHT): %s", partner, exc)
