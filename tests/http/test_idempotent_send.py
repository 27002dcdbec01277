"""Idempotency-Key on the sends, over real HTTP into running gateways (real NATS and Postgres, the simulator
as operator): a retried send or bulk gets the first answer (same message ids, ``Idempotent-Replayed``) and
nothing more reaches the simulator; another body under the same key is 409 IDEMPOTENCY_CONFLICT; a key whose
first request still runs is 409 IDEMPOTENCY_IN_FLIGHT with Retry-After; a refused request leaves no key (a
retry is processed); and across two gateway nodes on the same NATS and Postgres, the key sent to node A then
node B gets A's answer from B."""

from __future__ import annotations

from typing import Any

import httpx
import trio

from catalyst_smpp.config import HttpConfig
from catalyst_smpp.http.idempotency import claim
from catalyst_smpp.http.idempotent import REPLAYED, request_hash
from catalyst_smpp.http.keys import create_key
from catalyst_smpp.http.schemas import SendRequest
from tests.e2e.harness import Env, open_gateway, open_sim, wait_for
from tests.services import free_port

from .conftest import Api, sim_config


def _sent_to(api_sim: Any, dest: str) -> int:
    return sum(1 for m in api_sim.messages if m.destination_addr == dest)


async def test_a_retried_send_is_answered_again_not_sent_again(api: Api) -> None:
    body = {"to": "+447700900301", "from": "Catalyst", "message": "once only"}
    async with api.client() as c:
        first = await c.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": "k-301"})
        assert first.status_code == 202, first.text
        assert REPLAYED not in first.headers
        # the same request written differently (key order, a default spelled out) is the same request
        again = {"message_type": "text", **dict(reversed(list(body.items())))}
        second = await c.post("/api/v4/sms/send", json=again, headers={"Idempotency-Key": "k-301"})
        assert second.status_code == 202 and second.headers[REPLAYED] == "true"
        assert second.json() == first.json()
        # the same key with another body
        other = await c.post(
            "/api/v4/sms/send", json={**body, "message": "another"}, headers={"Idempotency-Key": "k-301"}
        )
        assert other.status_code == 409 and other.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
        # without a key: a second message
        plain = await c.post("/api/v4/sms/send", json=body)
        assert plain.status_code == 202 and plain.json()["message_id"] != first.json()["message_id"]
    await wait_for(lambda: _sent_to(api.sim, "447700900301") >= 2, 20, "both messages")
    await trio.sleep(1.0)  # a third would arrive now
    assert _sent_to(api.sim, "447700900301") == 2


async def test_keys_are_per_partner(api: Api) -> None:
    api.env.add_partner("other", throttle_rate=20000.0, throttle_burst=20000)
    other_key = api.env.setup(lambda c: create_key(c, "other"))[1]
    await wait_for(lambda: api.gw.partner("other") is not None, 10, "the partner in the snapshot")
    body = {"to": "+447700900302", "from": "Catalyst", "message": "mine"}
    async with api.client() as a, api.client(other_key) as b:
        ra = await a.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": "shared"})
        rb = await b.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": "shared"})
    assert ra.status_code == 202 and rb.status_code == 202, (ra.text, rb.text)
    assert REPLAYED not in rb.headers and rb.json()["message_id"] != ra.json()["message_id"]


async def test_a_retried_bulk_is_answered_again(api: Api) -> None:
    body = {
        "from": "Catalyst",
        "messages": [{"to": "+447700900311", "message": "b1"}, {"to": "07700900312", "message": "bad"}],
    }
    async with api.client() as c:
        first = await c.post("/api/v4/sms/bulk", json=body, headers={"Idempotency-Key": "bulk-1"})
        assert first.status_code == 202 and first.json()["status"] == "partial", first.text
        second = await c.post("/api/v4/sms/bulk", json=body, headers={"Idempotency-Key": "bulk-1"})
        assert second.status_code == 202 and second.headers[REPLAYED] == "true"
        assert second.json() == first.json()
        # one key, one request: the same key on /send is another request
        send = {"to": "+447700900311", "from": "Catalyst", "message": "b1"}
        r = await c.post("/api/v4/sms/send", json=send, headers={"Idempotency-Key": "bulk-1"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "IDEMPOTENCY_CONFLICT"
    await wait_for(lambda: _sent_to(api.sim, "447700900311") >= 1, 20, "the bulk's message")
    await trio.sleep(1.0)
    assert _sent_to(api.sim, "447700900311") == 1


async def test_a_refused_send_leaves_no_key_and_in_flight_is_409(api: Api) -> None:
    refused = {"to": "+33612345678", "from": "Catalyst", "message": "no route"}
    async with api.client() as c:
        for _ in range(2):  # processed each time, not replayed
            r = await c.post("/api/v4/sms/send", json=refused, headers={"Idempotency-Key": "k-norte"})
            assert r.status_code == 400 and r.json()["error"]["code"] == "NO_ROUTE"
            assert REPLAYED not in r.headers
        rows = api.env.setup(
            lambda conn: conn.execute(
                "SELECT count(*) FROM idempotency_keys WHERE key = 'k-norte'"
            ).fetchone()
        )
        assert rows[0] == 0
        # a first request still running (its claim taken, no answer yet): a retry must wait
        body = {"to": "+447700900321", "from": "Catalyst", "message": "slow"}
        h = request_hash("/send", SendRequest.model_validate(body))
        api.env.setup(lambda conn: claim(conn, "acme", "k-slow", h))
        r = await c.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": "k-slow"})
        assert r.status_code == 409 and r.json()["error"]["code"] == "IDEMPOTENCY_IN_FLIGHT"
        assert r.headers["Retry-After"] == "1"
        r = await c.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": ""})
        assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
    assert _sent_to(api.sim, "447700900321") == 0


async def test_the_same_key_on_another_node_replays_the_first_nodes_answer(env: Env) -> None:
    async with open_sim(sim_config()) as sim:
        env.add_operator("opA", sim.port, submit_id_format="hex", receipt_id_format="hex")
        env.add_route(None, "44", ["opA"])
        env.add_partner("acme", throttle_rate=20000.0, throttle_burst=20000)
        key = env.setup(lambda c: create_key(c, "acme"))[1]
        ports = free_port(), free_port()
        https = [HttpConfig(host="127.0.0.1", port=p, rate=100000.0, key_cache=0.5) for p in ports]
        async with (
            open_gateway(env, "gw-a", node_num=1, http=https[0]) as gw_a,
            open_gateway(env, "gw-b", node_num=2, http=https[1]) as gw_b,
        ):
            assert gw_a.http_addresses and gw_b.http_addresses
            body = {"to": "+447700900331", "from": "Catalyst", "message": "two nodes"}
            answers = []
            for port in ports:
                async with httpx.AsyncClient(
                    base_url=f"http://127.0.0.1:{port}", headers={"X-API-Key": key}, timeout=30.0
                ) as c:
                    answers.append(
                        await c.post("/api/v4/sms/send", json=body, headers={"Idempotency-Key": "across"})
                    )
            a, b = answers
            assert a.status_code == 202 and REPLAYED not in a.headers, a.text
            assert b.status_code == 202 and b.headers[REPLAYED] == "true", b.text
            assert b.json() == a.json()
            await wait_for(lambda: _sent_to(sim, "447700900331") >= 1, 20, "the message")
            await trio.sleep(1.0)
            assert _sent_to(sim, "447700900331") == 1
