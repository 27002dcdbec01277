"""Scheduled sends over real HTTP into a running gateway (real NATS and Postgres, the simulator as operator):
a send with a future ``schedule_time`` is 202 ``scheduled`` and kept by the scheduler (status SCHEDULED);
cancelled before it is due it never reaches the simulator (status CANCELLED, a second cancel 409); left alone
it arrives when due and is DELIVERED (a cancel then is 409 NOT_CANCELLABLE); its validity is counted from
its schedule time; an unknown id or another partner's is 404."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import trio

from catalyst_smpp.gateway.ids import parse_id
from catalyst_smpp.http.keys import create_key
from tests.e2e.harness import wait_for

from .conftest import Api


def _at(seconds: float) -> str:
    return (dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)).isoformat()


def _sent_to(api: Api, dest: str) -> int:
    return sum(1 for m in api.sim.messages if m.destination_addr == dest)


async def _status(c: Any, mid: str) -> str:
    r = await c.get(f"/api/v4/sms/{mid}/status")
    assert r.status_code == 200, r.text
    state: str = r.json()["status"]
    return state


async def _status_until(c: Any, mid: str, want: str, timeout: float = 20.0) -> None:
    with trio.fail_after(timeout):
        while await _status(c, mid) != want:
            await trio.sleep(0.2)


async def test_scheduled_then_cancelled_before_due_is_never_sent(api: Api) -> None:
    body = {"to": "+447700900401", "from": "Catalyst", "message": "later", "schedule_time": _at(4)}
    async with api.client() as c:
        r = await c.post("/api/v4/sms/send", json=body)
        assert r.status_code == 202, r.text
        sent = r.json()
        assert sent["status"] == "scheduled" and sent["schedule_time"] is not None
        mid = sent["message_id"]
        assert await _status(c, mid) == "SCHEDULED"
        r = await c.delete(f"/api/v4/sms/{mid}")
        assert r.status_code == 200 and r.json() == {"message_id": mid, "status": "cancelled"}, r.text
        assert await _status(c, mid) == "CANCELLED"
        r = await c.delete(f"/api/v4/sms/{mid}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "NOT_CANCELLABLE"
        assert r.json()["error"]["details"]["status"] == "CANCELLED"
        await trio.sleep(6.0)  # past its due time, and the scheduler's ticks
        assert _sent_to(api, "447700900401") == 0
        assert await _status(c, mid) == "CANCELLED"


async def test_scheduled_send_arrives_when_due_and_cannot_be_cancelled_after(api: Api) -> None:
    due = time.time() + 3.0
    body = {
        "to": "+447700900402",
        "from": "Catalyst",
        "message": "on time",
        "delivery_report": True,
        "validity_period": 600,
        "schedule_time": dt.datetime.fromtimestamp(due, dt.UTC).isoformat(),
    }
    async with api.client() as c:
        r = await c.post("/api/v4/sms/send", json=body)
        assert r.status_code == 202 and r.json()["status"] == "scheduled", r.text
        mid = r.json()["message_id"]
        our = str(parse_id(mid, api.gw.partner("acme").message_id_format))  # type: ignore[union-attr]
        row = api.env.setup(
            lambda conn: conn.execute(
                "SELECT due_at, expires_at FROM scheduled_messages WHERE message_id = %s", (our,)
            ).fetchone()
        )
        assert abs(row[0].timestamp() - due) < 0.2
        assert abs(row[1].timestamp() - (due + 600)) < 0.2  # validity from the schedule time
        assert _sent_to(api, "447700900402") == 0
        await wait_for(lambda: _sent_to(api, "447700900402") == 1, 20, "the message when due")
        arrived = time.time()
        assert arrived >= due - 0.2
        await _status_until(c, mid, "DELIVERED")
        r = await c.delete(f"/api/v4/sms/{mid}")
        assert r.status_code == 409 and r.json()["error"]["code"] == "NOT_CANCELLABLE", r.text
        assert r.json()["error"]["details"]["status"] == "DELIVERED"
    assert _sent_to(api, "447700900402") == 1


async def test_past_schedule_time_sends_now_and_cancel_of_unknown_or_others_is_404(api: Api) -> None:
    async with api.client() as c:
        r = await c.post(
            "/api/v4/sms/send",
            json={"to": "+447700900403", "from": "Catalyst", "message": "now", "schedule_time": _at(-60)},
        )
        assert r.status_code == 202 and r.json()["status"] == "accepted", r.text
        assert r.json()["schedule_time"] is None
        await wait_for(lambda: _sent_to(api, "447700900403") == 1, 20, "the message")
        r = await c.post(
            "/api/v4/sms/send",
            json={
                "to": "+447700900404",
                "from": "Catalyst",
                "message": "x",
                "schedule_time": "2030-01-01T00:00",
            },
        )
        assert r.status_code == 400 and r.json()["error"]["details"] == {"field": "schedule_time"}
        r = await c.post(
            "/api/v4/sms/send",
            json={"to": "+447700900405", "from": "Catalyst", "message": "mine", "schedule_time": _at(3600)},
        )
        mine = r.json()["message_id"]
        r = await c.delete("/api/v4/sms/not-an-id")
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
    api.env.add_partner("other", throttle_rate=20000.0, throttle_burst=20000)
    other_key = api.env.setup(lambda conn: create_key(conn, "other"))[1]
    await wait_for(lambda: api.gw.partner("other") is not None, 10, "the partner in the snapshot")
    async with api.client(other_key) as o:
        r = await o.delete(f"/api/v4/sms/{mine}")
        assert r.status_code == 404, r.text
        r = await o.get(f"/api/v4/sms/{mine}/status")
        assert r.status_code == 404, r.text
    async with api.client() as c:
        assert await _status(c, mine) == "SCHEDULED"  # still waiting: the other partner cancelled nothing
        assert (await c.delete(f"/api/v4/sms/{mine}")).status_code == 200
