"""``create_app(ctx)``: the HTTP API's FastAPI application (routes, the one error form, ``/health``, the
OpenAPI 3.1 document at ``/api/v4/openapi.json``).

The document is kept true: each route lists the error statuses it can answer (all in the one error form),
and FastAPI's 422 validation answer, which the API never gives (validation errors are 400), is taken out.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from catalyst_smpp import __version__
from catalyst_smpp.http import errors, routes_billing, routes_receipts, routes_sms
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.schemas import ErrorBody, Health

__all__ = ["OPENAPI_URL", "create_app"]

OPENAPI_URL: Final = "/api/v4/openapi.json"

_SMS_ERRORS: Final = (400, 401, 402, 403, 404, 409, 429, 503)
_RECEIPTS_ERRORS: Final = (400, 401, 403, 409, 429, 503)
_BILLING_ERRORS: Final = (401, 403, 404, 429, 503)


def _responses(statuses: tuple[int, ...]) -> dict[int | str, dict[str, Any]]:
    return {s: {"model": ErrorBody, "description": errors.ERRORS[s]} for s in statuses}


def create_app(ctx: ApiContext) -> FastAPI:
    app = FastAPI(
        title="Catalyst SMPP HTTP API",
        version=__version__,
        openapi_url=OPENAPI_URL,
        docs_url="/api/v4/docs",
        redoc_url=None,
    )
    app.state.ctx = ctx
    errors.install(app)
    app.include_router(routes_sms.router, responses=_responses(_SMS_ERRORS))
    app.include_router(routes_receipts.router, responses=_responses(_RECEIPTS_ERRORS))
    app.include_router(routes_billing.router, responses=_responses(_BILLING_ERRORS))

    @app.get("/health", response_model=Health, tags=["health"])
    async def health() -> Any:
        """Whether this node takes messages: ``draining`` once it is stopping."""
        return {"status": "draining" if ctx.draining() else "ok", "node": ctx.node}

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            doc = get_openapi(title=app.title, version=app.version, routes=app.routes)
            for path in doc.get("paths", {}).values():
                for op in path.values():
                    op.get("responses", {}).pop("422", None)
            schemas = doc.get("components", {}).get("schemas", {})
            schemas.pop("HTTPValidationError", None)
            schemas.pop("ValidationError", None)
            app.openapi_schema = doc
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
    return app
