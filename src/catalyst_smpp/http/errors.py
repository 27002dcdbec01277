"""The one error form of the HTTP API: ``{"error": {"code", "message", "details"}}`` with its status.

:class:`ApiError` is raised by the routes; :func:`install` adds the handlers that turn it, FastAPI's
validation errors (400 ``INVALID_REQUEST``, not FastAPI's 422) and Starlette's HTTP errors (404 for an
unknown path, 405) into that form.  :data:`ERRORS` describes each code for the OpenAPI document.
"""

from __future__ import annotations

from typing import Any, Final

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

__all__ = ["ERRORS", "ApiError", "error_body", "error_response", "install"]

ERRORS: Final[dict[int, str]] = {
    400: "Invalid request (INVALID_REQUEST, INVALID_DESTINATION, NO_ROUTE, UNPRICED, REJECTED)",
    401: "No API key, or not a valid one (UNAUTHORIZED)",
    402: "Not enough credit (INSUFFICIENT_CREDIT)",
    403: "The partner is disabled (FORBIDDEN)",
    404: "No such resource, or not the key's partner's (NOT_FOUND)",
    409: "Conflict: the Idempotency-Key was used for another request (IDEMPOTENCY_CONFLICT) or its first "
    "request still runs (IDEMPOTENCY_IN_FLIGHT, see Retry-After); the message is not waiting to be sent "
    "(NOT_CANCELLABLE); the partner's receipts go to its SMPP receiver or webhook (RECEIPTS_ELSEWHERE)",
    429: "Over the key's or the partner's rate (RATE_LIMITED); see Retry-After",
    503: "The message bus or the database is unavailable (SERVICE_UNAVAILABLE); try again",
}


class ApiError(Exception):
    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details or {}
        self.headers = headers


def error_body(code: str, message: str, details: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details or {}}}


_HTTP_CODES: Final = {401: "UNAUTHORIZED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED"}


def error_response(exc: ApiError) -> JSONResponse:
    """The answer of an :class:`ApiError` (the handler's, and the fast send route's: :mod:`.fast`)."""
    return JSONResponse(error_body(exc.code, exc.message, exc.details), exc.status, headers=exc.headers)


async def _api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc)


async def _validation(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    problems = [
        {"field": ".".join(str(p) for p in e.get("loc", ()) if p != "body"), "problem": e.get("msg", "")}
        for e in exc.errors()
    ]
    return JSONResponse(error_body("INVALID_REQUEST", "the request is not valid", {"errors": problems}), 400)


async def _http(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, HTTPException)
    code = _HTTP_CODES.get(exc.status_code, "INVALID_REQUEST" if exc.status_code < 500 else "ERROR")
    return JSONResponse(error_body(code, str(exc.detail)), exc.status_code, headers=exc.headers)


def install(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _api_error)
    app.add_exception_handler(RequestValidationError, _validation)
    app.add_exception_handler(HTTPException, _http)
