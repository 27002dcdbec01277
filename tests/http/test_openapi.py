"""The OpenAPI document the gateway serves is kept true: every route is in it, every error status a route's
code can raise is among its documented responses (in the one error form), no FastAPI 422; and schemathesis,
driven by the served document, finds no 5xx and no response that does not conform."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import httpx
import trio
from fastapi.routing import APIRoute

from catalyst_smpp.http import app as app_module
from catalyst_smpp.http import routes_billing, routes_receipts, routes_sms

from .conftest import Api

SRC = Path(app_module.__file__).parent
_RAISED = re.compile(r"ApiError\(\s*(\d{3})")


def _raised(*modules: str) -> set[str]:
    return {m for name in modules for m in _RAISED.findall((SRC / name).read_text(encoding="utf-8"))}


async def _document(api: Api) -> dict[str, Any]:
    async with httpx.AsyncClient(base_url=api.url) as c:
        r = await c.get("/api/v4/openapi.json")
    assert r.status_code == 200
    doc: dict[str, Any] = r.json()
    return doc


async def test_document_describes_every_route_and_error(api: Api) -> None:
    doc = await _document(api)
    assert doc["openapi"].startswith("3.1")
    app = app_module.create_app(None)  # type: ignore[arg-type]  # the routes only
    routes = {
        (m.lower(), r.path)
        for router in (app.router, routes_sms.router, routes_receipts.router, routes_billing.router)
        for r in router.routes
        if isinstance(r, APIRoute)
        for m in r.methods
    }
    assert len(routes) == 9
    documented = {(m, p) for p, ops in doc["paths"].items() for m in ops}
    assert routes == documented
    schemas = doc["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    # validation errors, the auth dependency's and each router's own ApiErrors
    want = {
        "sms": _raised("routes_sms.py", "idempotent.py", "auth.py") | {"400"},
        "receipts": _raised("routes_receipts.py", "auth.py") | {"400"},
        "billing": _raised("routes_billing.py", "auth.py"),
    }
    for path, ops in doc["paths"].items():
        for op in ops.values():
            responses = op["responses"]
            assert "422" not in responses, path
            group = (
                "receipts"
                if path == "/api/v4/sms/receipts"
                else "sms"
                if path.startswith("/api/v4/sms")
                else "billing"
                if "/billing/" in path
                else None
            )
            if group is None:
                continue
            assert want[group] <= set(responses), (path, want[group] - set(responses))
            for status, resp in responses.items():
                if status.startswith(("4", "5")):
                    ref = resp["content"]["application/json"]["schema"]["$ref"]
                    assert ref.endswith("/ErrorBody"), (path, status)


def _schemathesis(doc: dict[str, Any], url: str, key: str) -> list[str]:
    import schemathesis
    from hypothesis import HealthCheck, given, settings
    from schemathesis.specs.openapi.checks import positive_data_acceptance

    schema = schemathesis.openapi.from_dict(doc)
    problems: list[str] = []
    for result in schema.get_all_operations():
        op = result.ok()

        @settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @given(case=op.as_strategy())
        def run(case: Any) -> None:
            if isinstance(case.body, dict) and isinstance(case.body.get("messages"), list):
                case.body["messages"] = case.body["messages"][:50]  # a bulk of 10,000 is its own test
            # a request the schema allows may still be refused 400 (a number that is not E.164, no route to
            # it): what is checked is no 5xx and every answer as documented
            case.call_and_validate(
                base_url=url, headers={"X-API-Key": key}, excluded_checks=[positive_data_acceptance]
            )

        try:
            run()
        except Exception as e:  # collect every operation's failure, not only the first
            problems.append(f"{op.label}: {e}")
    return problems


async def test_schemathesis_against_the_served_document(api: Api) -> None:
    doc = await _document(api)
    problems = await trio.to_thread.run_sync(_schemathesis, doc, api.url, api.key)
    assert not problems, "\n\n".join(problems)
