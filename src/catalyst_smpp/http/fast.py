"""The send route without FastAPI's per-request machinery: ``POST /api/v4/sms/send`` answered by a plain ASGI
handler in front of the FastAPI app, for the requests that need nothing else.

FastAPI's dependency injection, request validation and middleware stack cost ~700 µs of CPU per send (of
~1,250 µs in all with a stub accept: ``bench/http_layer.py``), more than the SMPP path of the message.  This
handler does the same work with the same pieces -- ``SendRequest`` (the route's own model), the key check
(:func:`.auth.partner_of`), ``routes_sms.send_answer``, the answer as a ``JSONResponse`` -- called
directly.

Anything out of the ordinary goes to the FastAPI app, which then answers exactly as before (the request body
read here is handed on): another method or path, an ``Idempotency-Key``, a content type other than JSON, a
body that is not valid JSON or not a valid ``SendRequest``.  So the route's errors for a bad request are
FastAPI's (400 ``INVALID_REQUEST`` with its ``errors``), and only requests that pass validation are answered
here; their :class:`~.errors.ApiError` answers (401, 403, 429, 400 for a bad number, 402, 503 ...) are built
by :func:`.errors.error_response`, the app's own handler.  The OpenAPI document is still the app's (the
route stays declared there).
"""

from __future__ import annotations

import json
import logging
from typing import Any, Final

from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.responses import PlainTextResponse

from catalyst_smpp.http.auth import key_text, partner_of
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError, error_response
from catalyst_smpp.http.routes_sms import send_answer
from catalyst_smpp.http.schemas import SendRequest

__all__ = ["SEND_PATH", "FastSend"]

log = logging.getLogger(__name__)

SEND_PATH: Final = "/api/v4/sms/send"

Scope = dict[str, Any]
Message = dict[str, Any]


class FastSend:
    """The ASGI app the server runs: sends that need nothing else here, every other request to ``app``."""

    def __init__(self, app: Any, ctx: ApiContext) -> None:
        self.app = app
        self.ctx = ctx

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != SEND_PATH or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        x_api_key = authorization = None
        for name, value in scope["headers"]:
            if name == b"x-api-key":
                x_api_key = x_api_key if x_api_key is not None else value.decode("latin-1")
            elif name == b"authorization":
                authorization = authorization if authorization is not None else value.decode("latin-1")
            elif name == b"idempotency-key":
                await self.app(scope, receive, send)
                return
            elif name == b"content-type" and value.partition(b";")[0].strip().lower() != b"application/json":
                await self.app(scope, receive, send)
                return
        chunks: list[bytes] = []
        more = True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunks.append(message.get("body", b""))
            more = message.get("more_body", False)
        raw = b"".join(chunks)
        try:
            body = SendRequest.model_validate(json.loads(raw))
        except (ValueError, ValidationError):  # FastAPI's answer (400 INVALID_REQUEST with its details)
            await self.app(scope, _replay(raw, receive), send)
            return
        await self._send(scope, receive, send, body, key_text(x_api_key, authorization))

    async def _send(self, scope: Scope, receive: Any, send: Any, body: SendRequest, key: str | None) -> None:
        ctx = self.ctx
        try:
            try:
                partner = await partner_of(ctx, key)
                status, content = await send_answer(body, partner, ctx)
            except ApiError as e:
                response: Any = error_response(e)
            else:
                response = JSONResponse(content, status)
        except Exception:  # as FastAPI's ServerErrorMiddleware: a 500, and the error to the server's log
            await PlainTextResponse("Internal Server Error", 500)(scope, receive, send)
            raise
        await response(scope, receive, send)


def _replay(raw: bytes, receive: Any) -> Any:
    """``receive`` for the app after this handler read the body: the body once, then the client's messages."""
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": raw, "more_body": False}
        message: Message = await receive()
        return message

    return replay
