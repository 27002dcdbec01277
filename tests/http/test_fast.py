"""The fast send route (``http.fast.FastSend``) answers as the FastAPI app does, and hands the app every
request it does not take (with the body it already read)."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from catalyst_smpp.http.app import create_app
from catalyst_smpp.http.auth import key_text
from catalyst_smpp.http.fast import SEND_PATH, FastSend
from catalyst_smpp.http.server import api_context

from .conftest import Api

GOOD = {"to": "+447700900123", "from": "Catalyst", "message": "fast or not"}
_VARYING = ("message_id", "timestamp")  # each accepted send has its own


class _Recording:
    """The FastAPI app, recording the requests it was handed."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.seen: list[str] = []

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            self.seen.append(f"{scope['method']} {scope['path']}")
        await self.app(scope, receive, send)


def _clients(api: Api) -> tuple[httpx.AsyncClient, httpx.AsyncClient, _Recording]:
    ctx = api_context(api.gw)
    inner = _Recording(create_app(ctx))
    fast = httpx.AsyncClient(transport=httpx.ASGITransport(app=FastSend(inner, ctx)), base_url="http://t")
    plain = httpx.AsyncClient(transport=httpx.ASGITransport(app=create_app(ctx)), base_url="http://t")
    return fast, plain, inner


def _answer(r: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    body = r.json() if r.headers.get("content-type") == "application/json" else r.text
    if isinstance(body, dict):
        body = {k: v for k, v in body.items() if k not in _VARYING}
    headers = {h: r.headers.get(h) for h in ("content-type", "www-authenticate", "retry-after")}
    return r.status_code, body, headers


async def test_fast_route_answers_as_the_app(api: Api) -> None:
    """Accepted sends and each refusal of the send route: the same status, body and headers either way."""
    other = api.new_key()
    cases: list[tuple[dict[str, str], Any]] = [
        ({"X-API-Key": api.key}, GOOD),
        ({"Authorization": f"Bearer {api.key}"}, GOOD),
        ({"Authorization": f"bearer {other}"}, {**GOOD, "tags": ["a"], "priority": 2}),
        ({"X-API-Key": "", "Authorization": f"Bearer {api.key}"}, GOOD),
        ({}, GOOD),
        ({"Authorization": f"Basic {api.key}"}, GOOD),
        ({"X-API-Key": "ck_nope"}, GOOD),
        ({"X-API-Key": api.key}, {**GOOD, "to": "+44"}),  # INVALID_DESTINATION
        ({"X-API-Key": api.key}, {**GOOD, "to": "+12125550123"}),  # NO_ROUTE
        ({"X-API-Key": api.key}, {**GOOD, "from": "Too long a sender name for SMS"}),
        ({"X-API-Key": api.key}, {**GOOD, "schedule_time": "2099-01-01T00:00:00"}),  # no time zone
        ({"X-API-Key": api.key}, {"to": "+447700900123"}),
        ({"X-API-Key": api.key}, {**GOOD, "extra": 1}),
        ({"X-API-Key": api.key}, [GOOD]),
    ]
    fast, plain, inner = _clients(api)
    async with fast, plain:
        for headers, body in cases:
            got = await fast.post(SEND_PATH, json=body, headers=headers)
            want = await plain.post(SEND_PATH, json=body, headers=headers)
            assert _answer(got) == _answer(want), (headers, body)
    assert inner.seen == [f"POST {SEND_PATH}"] * 4  # the four not valid as a SendRequest


async def test_fast_route_takes_the_plain_sends_and_hands_on_the_rest(api: Api) -> None:
    fast, plain, inner = _clients(api)
    key = {"X-API-Key": api.key}
    async with fast, plain:
        r = await fast.post(SEND_PATH, json=GOOD, headers=key)
        assert r.status_code == 202 and inner.seen == []  # answered without the app
        r = await fast.post(SEND_PATH, json={**GOOD, "to": "+44"}, headers=key)
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_DESTINATION"
        assert inner.seen == []  # a valid request refused by the send itself: still here
        r = await fast.post(
            SEND_PATH, content=b'{"to": ', headers={**key, "Content-Type": "application/json"}
        )
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await fast.post(SEND_PATH, json={"to": "+447700900123"}, headers=key)
        assert r.status_code == 400 and r.json()["error"]["details"]["errors"]
        r = await fast.post(SEND_PATH, content=b"to=1", headers={**key, "Content-Type": "text/plain"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await fast.post(SEND_PATH, json=GOOD, headers={**key, "Idempotency-Key": "fast-1"})
        assert r.status_code == 202
        again = await fast.post(SEND_PATH, json=GOOD, headers={**key, "Idempotency-Key": "fast-1"})
        assert again.headers.get("Idempotent-Replayed") == "true" and again.json() == r.json()
        r = await fast.get("/health")
        assert r.status_code == 200
    assert inner.seen == [f"POST {SEND_PATH}"] * 5 + ["GET /health"]


@pytest.mark.parametrize(
    ("x_api_key", "authorization", "want"),
    [
        ("k1", "Bearer k2", "k1"),
        (None, "Bearer k2", "k2"),
        ("", "Bearer k2", "k2"),
        (None, "bEaReR  k2 ", "k2"),
        (None, "Basic k2", None),
        (None, "Bearer", None),
        (None, "Bearer ", None),
        (None, None, None),
        ("", None, None),
    ],
)
def test_key_text_reads_the_headers_as_the_security_schemes(
    x_api_key: str | None, authorization: str | None, want: str | None
) -> None:
    assert key_text(x_api_key, authorization) == want
