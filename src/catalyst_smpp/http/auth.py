"""The API key of a request (``X-API-Key: ck_...`` or ``Authorization: Bearer ck_...``) → its partner.

401 without a key or with one that is not valid (unknown, wrong secret, revoked), 403 when the key's partner
is disabled (or removed) in the gateway's current configuration, 429 over the key's request rate, 503 when
the key cannot be read (database down and the key not in the node's cache).
"""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from fastapi.security.utils import get_authorization_scheme_param

from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError
from catalyst_smpp.store.records import Partner

__all__ = ["authenticated", "context", "key_text", "partner_of"]

_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="ck_<prefix>_<secret>")
_bearer = HTTPBearer(auto_error=False, description="the API key as a bearer token")


async def context(request: Request) -> ApiContext:
    """The gateway's services, as a dependency.  ``async`` on purpose: FastAPI runs a plain ``def``
    dependency in a worker thread, which cost ~1.5 ms of CPU per request (thread hand-offs and their
    contention), measured with bench/http_api.py."""
    ctx: ApiContext = request.app.state.ctx
    return ctx


def key_text(x_api_key: str | None, authorization: str | None) -> str | None:
    """The key a request carries: its ``X-API-Key``, else the credentials of ``Authorization: Bearer``."""
    if x_api_key:
        return x_api_key
    scheme, credentials = get_authorization_scheme_param(authorization)
    if authorization and scheme and credentials and scheme.lower() == "bearer":
        return credentials
    return None


async def authenticated(
    request: Request,
    header: Annotated[str | None, Depends(_header)],
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> Partner:
    ctx: ApiContext = request.app.state.ctx
    return await partner_of(ctx, header or (bearer.credentials if bearer is not None else None))


async def partner_of(ctx: ApiContext, text: str | None) -> Partner:
    """The partner of the key ``text`` (module notes: the 401, 403, 429 and 503 it raises)."""
    if not text:
        raise ApiError(
            401,
            "UNAUTHORIZED",
            "an API key is required (X-API-Key or Authorization: Bearer)",
            headers={"WWW-Authenticate": "Bearer"},
        )
    try:
        key = await ctx.keys.lookup(text)
    except Exception as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "API keys cannot be checked now; try again") from exc
    if key is None:
        raise ApiError(
            401, "UNAUTHORIZED", "the API key is not valid", headers={"WWW-Authenticate": "Bearer"}
        )
    partner = ctx.partners(key.partner)
    if partner is None or not partner.enabled:
        raise ApiError(403, "FORBIDDEN", "the partner of this API key is disabled")
    wait = ctx.limiter.check(key.id, key.rate)
    if wait is not None:
        raise ApiError(
            429,
            "RATE_LIMITED",
            "over the API key's request rate",
            {"retry_after": wait},
            {"Retry-After": str(wait)},
        )
    return partner
