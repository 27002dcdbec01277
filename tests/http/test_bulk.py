"""Bulk sends: 10,000 messages in one request through one pass of the batcher (timed, printed), and a
mixed batch answers each message on its own in request order."""

from __future__ import annotations

import json
import time

from catalyst_smpp.http.schemas import BulkResponse
from tests.e2e.harness import wait_for

from .conftest import Api


async def test_bulk_of_10000(api: Api) -> None:
    msgs = [{"to": f"+4477009{i:05d}", "message": f"bulk {i}"} for i in range(10_000)]
    async with api.client() as c:
        t0 = time.perf_counter()
        r = await c.post("/api/v4/sms/bulk", json={"from": "Catalyst", "messages": msgs})
        took = time.perf_counter() - t0
    print(f"\nbulk of 10,000: answered in {took:.2f} s")
    assert r.status_code == 202, r.text[:500]
    body = r.json()
    assert (body["status"], body["total_messages"], body["accepted"], body["rejected"]) == (
        "accepted",
        10_000,
        10_000,
        0,
    )
    ids = [m["message_id"] for m in body["messages"]]
    assert len(set(ids)) == 10_000 and [m["to"] for m in body["messages"]] == [m["to"] for m in msgs]
    await wait_for(lambda: len(api.sim.messages) >= 10_000, 120, "10,000 at the simulator")
    assert sorted(m.destination_addr for m in api.sim.messages) == sorted(m["to"][1:] for m in msgs)


async def test_bulk_mixed(api: Api) -> None:
    msgs = [
        {"to": "+447700900001", "message": "ok"},
        {"to": "12", "message": "bad number"},
        {"to": "+33612345678", "message": "no route"},
        {"to": "+447700900002", "message": "ok too"},
    ]
    async with api.client() as c:
        r = await c.post(
            "/api/v4/sms/bulk", json={"from": "447700000009", "messages": msgs, "delivery_report": True}
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert (body["status"], body["accepted"], body["rejected"]) == ("partial", 2, 2)
        got = [(m["status"], m["error"]["code"] if m.get("error") else None) for m in body["messages"]]
        assert got == [("accepted", None), ("rejected", "INVALID_DESTINATION"), ("rejected", "NO_ROUTE"),
                       ("accepted", None)]  # fmt: skip
        assert body["messages"][1]["message_id"] is None
        # the answer is built as a dict: it is what the response model would have dumped, key for key
        dumped = BulkResponse.model_validate(body).model_dump(mode="json")
        assert r.content == json.dumps(dumped, ensure_ascii=False, separators=(",", ":")).encode()
        r = await c.post("/api/v4/sms/bulk", json={"from": "Catalyst", "messages": []})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await c.post("/api/v4/sms/bulk", json={"from": "far too long a sender", "messages": msgs[:1]})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
