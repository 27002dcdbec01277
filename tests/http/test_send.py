"""The send path over real HTTP into a running gateway (real NATS and Postgres, the simulator as operator):
send → the simulator has it → status DELIVERED; each error code of send and status."""

from __future__ import annotations

import trio

from catalyst_smpp.protocol.constants import CommandStatus
from tests.e2e.harness import wait_for

from .conftest import Api


async def _status_until(api: Api, mid: str, want: str, timeout: float = 20.0) -> dict[str, object]:
    async with api.client() as c:
        with trio.fail_after(timeout):
            while True:
                r = await c.get(f"/api/v4/sms/{mid}/status")
                assert r.status_code == 200, r.text
                body: dict[str, object] = r.json()
                if body["status"] == want:
                    return body
                await trio.sleep(0.2)


async def test_send_reaches_the_operator_and_is_delivered(api: Api) -> None:
    async with api.client() as c:
        r = await c.post(
            "/api/v4/sms/send",
            json={
                "to": "+447700900123",
                "from": "Catalyst",
                "message": "hello over http",
                "delivery_report": True,
                "tags": ["t1"],
            },
        )
    assert r.status_code == 202, r.text
    body = r.json()
    assert body["status"] == "accepted" and body["to"] == "+447700900123" and body["from"] == "Catalyst"
    assert body["parts"] == 1 and body["tags"] == ["t1"] and body["cost"] is None
    await wait_for(lambda: any(m.text == "hello over http" for m in api.sim.messages), 20, "the simulator")
    got = next(m for m in api.sim.messages if m.text == "hello over http")
    assert got.destination_addr == "447700900123" and got.source_addr == "Catalyst"
    st = await _status_until(api, body["message_id"], "DELIVERED")
    assert st["to"] == "+447700900123" and st["from"] == "Catalyst" and st["network_operator"] == "opA"
    assert st["delivered_at"] is not None and st["dlr_timestamp"] is not None


async def test_long_unicode_text_is_one_message_payload_the_connector_segments(api: Api) -> None:
    text = "Привет " * 30  # 210 characters: UCS-2, 420 octets → message_payload, 4 parts
    async with api.client() as c:
        r = await c.post(
            "/api/v4/sms/send", json={"to": "+447700900124", "from": "447700000001", "message": text}
        )
    assert r.status_code == 202, r.text
    assert r.json()["parts"] == 4
    await wait_for(lambda: len([m for m in api.sim.messages if m.destination_addr == "447700900124"]) >= 4,
                   20, "the parts")  # fmt: skip


async def test_send_errors(api: Api) -> None:
    ok = {"to": "+447700900125", "from": "Catalyst", "message": "x"}
    async with api.client() as c:
        r = await c.post("/api/v4/sms/send", json={**ok, "to": "07700900125"})
        assert r.status_code == 400
        assert r.json()["error"] == {
            "code": "INVALID_DESTINATION",
            "message": r.json()["error"]["message"],
            "details": {"provided": "07700900125", "required_format": "E.164"},
        }
        r = await c.post("/api/v4/sms/send", json={"to": "+447700900125", "message": "x"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        assert r.json()["error"]["details"]["errors"][0]["field"] == "from"
        r = await c.post("/api/v4/sms/send", json={**ok, "priority": 7})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await c.post("/api/v4/sms/send", json={**ok, "to": "+33612345678"})  # valid, no route to 33
        assert r.status_code == 400 and r.json()["error"]["code"] == "NO_ROUTE", r.text
        r = await c.post("/api/v4/sms/send", json={**ok, "schedule_time": "2999-01-01T00:00:00Z"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"  # past SMPP's 2099
        assert r.json()["error"]["details"] == {"field": "schedule_time"}
        r = await c.post("/api/v4/sms/send", json={**ok, "schedule_time": "2020-01-01T00:00:00Z"})
        assert r.status_code == 202  # a time passed: now
        r = await c.post("/api/v4/sms/send", json={**ok, "encoding": "gsm7", "message": "日本"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await c.post("/api/v4/sms/send", json={**ok, "message_type": "binary", "message": "zz"})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        r = await c.get("/api/v4/nothing")
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"


async def test_auth_errors(api: Api) -> None:
    ok = {"to": "+447700900126", "from": "Catalyst", "message": "x"}
    async with api.client(key="") as c:
        r = await c.post("/api/v4/sms/send", json=ok)
        assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        wrong = api.key[:-1] + ("B" if api.key.endswith("A") else "A")  # a key whose secret differs
        r = await c.post("/api/v4/sms/send", json=ok, headers={"X-API-Key": wrong})
        assert r.status_code == 401
        r = await c.post("/api/v4/sms/send", json=ok, headers={"Authorization": f"Bearer {api.key}"})
        assert r.status_code == 202, r.text
    # revoked: refused within key_cache (0.5 s here)
    kid = api.env.setup(lambda c: c.execute("SELECT id FROM api_keys").fetchone()[0])
    api.env.setup(lambda c: c.execute("UPDATE api_keys SET revoked_at = now() WHERE id = %s", (kid,)))
    async with api.client() as c:
        await trio.sleep(0.6)
        r = await c.post("/api/v4/sms/send", json=ok)
        assert r.status_code == 401
    # a disabled partner: 403 once the gateway has reloaded its configuration
    key = api.new_key()
    api.env.setup(lambda c: c.execute("UPDATE partners SET enabled = false WHERE system_id = 'acme'"))
    await api.gw.reload()
    async with api.client(key) as c:
        r = await c.post("/api/v4/sms/send", json=ok)
        assert r.status_code == 403 and r.json()["error"]["code"] == "FORBIDDEN"


async def test_key_rate_and_partner_throttle_are_429(api: Api) -> None:
    ok = {"to": "+447700900127", "from": "Catalyst", "message": "x"}
    slow = api.new_key(rate=1.0)
    async with api.client(slow) as c:
        assert (await c.post("/api/v4/sms/send", json=ok)).status_code == 202
        r = await c.post("/api/v4/sms/send", json=ok)
        assert r.status_code == 429 and r.json()["error"]["code"] == "RATE_LIMITED"
        assert int(r.headers["Retry-After"]) >= 1
    # the partner's SMPP throttle, shared with its binds: burst 2
    api.env.setup(lambda c: c.execute("UPDATE partners SET throttle_rate = 0.5, throttle_burst = 2"))
    await api.gw.reload()
    async with api.client() as c:
        codes = [(await c.post("/api/v4/sms/send", json=ok)).status_code for _ in range(3)]
        assert codes == [202, 202, 429]
        r = await c.post(
            "/api/v4/sms/bulk", json={"from": "Catalyst", "messages": [{"to": ok["to"], "message": "x"}] * 3}
        )
        assert r.status_code == 429


async def test_status_only_for_the_partners_own_messages(api: Api) -> None:
    api.env.add_partner("beta")
    await api.gw.reload()
    other = api.new_key("beta")
    async with api.client() as c:
        r = await c.post(
            "/api/v4/sms/send", json={"to": "+447700900128", "from": "Catalyst", "message": "mine"}
        )
        mid = r.json()["message_id"]
    await _status_until(api, mid, "DELIVERED")
    async with api.client(other) as c:
        r = await c.get(f"/api/v4/sms/{mid}/status")
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        assert (await c.get("/api/v4/sms/not-an-id/status")).status_code == 404
        assert (await c.get("/api/v4/sms/00000001/status")).status_code == 404  # an old id nobody has


async def test_draining_gateway_answers_503(api: Api) -> None:
    assert api.gw.accept is not None
    await api.gw.accept.drain()  # accept refuses (ESME_RMSGQFUL) as when NATS cannot store
    async with api.client() as c:
        r = await c.post("/api/v4/sms/send", json={"to": "+447700900129", "from": "Catalyst", "message": "x"})
    assert r.status_code == 503 and r.json()["error"]["code"] == "SERVICE_UNAVAILABLE"
    assert r.json()["error"]["details"]["smpp_status"] == CommandStatus.ESME_RMSGQFUL.name
    api.gw.accept.reopen()
