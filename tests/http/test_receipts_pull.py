"""The receipts pull over real HTTP into a running gateway (real NATS and Postgres, the simulator as operator
sending receipts): the receipts of sends made over HTTP by a partner with neither an SMPP receiver nor a
``dlr`` webhook are fetched exactly once across calls (``limit`` respected); the pull is 409
RECEIPTS_ELSEWHERE while the partner has a receiver bound or a webhook; ``limit`` outside 1..1000 is 400."""

from __future__ import annotations

import collections

import trio

from catalyst_smpp.bus import Kind
from catalyst_smpp.client import BindType
from catalyst_smpp.store.webhook_repo import WebhookRepo
from tests.e2e.harness import partner_client, wait_for

from .conftest import Api


async def test_receipts_of_http_sends_are_fetched_exactly_once(api: Api) -> None:
    n = 7
    async with api.client() as c:
        ids = []
        for i in range(n):
            r = await c.post(
                "/api/v4/sms/send",
                json={
                    "to": f"+4477009005{i:02d}",
                    "from": "Catalyst",
                    "message": "dlr",
                    "delivery_report": True,
                },
            )
            assert r.status_code == 202, r.text
            ids.append(r.json()["message_id"])
        got: collections.Counter[str] = collections.Counter()
        with trio.fail_after(30):
            while set(got) < set(ids):
                r = await c.get("/api/v4/sms/receipts", params={"limit": 3})
                assert r.status_code == 200, r.text
                items = r.json()["receipts"]
                assert len(items) <= 3
                for item in items:
                    assert item["status"] == "DELIVERED" and item["to"].lstrip("+").startswith("4477009005")
                    got[item["message_id"]] += 1
                await trio.sleep(0.1)
        await trio.sleep(1.0)  # a copy (a receipt not acked) would come back now or after ack_wait
        r = await c.get("/api/v4/sms/receipts")
        assert r.status_code == 200 and r.json()["receipts"] == []
    assert set(got) == set(ids) and max(got.values()) == 1, got


async def test_pull_is_refused_while_receipts_go_elsewhere(api: Api) -> None:
    async with api.client() as c:
        for limit in (0, 1001):
            r = await c.get("/api/v4/sms/receipts", params={"limit": limit})
            assert r.status_code == 400 and r.json()["error"]["code"] == "INVALID_REQUEST"
        assert (await c.get("/api/v4/sms/receipts")).status_code == 200
        # an SMPP receiver bound: the receipts go there
        client = partner_client(api.gw.ports[0], binds=(BindType.RECEIVER,))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            await client.wait_bound()
            r = await c.get("/api/v4/sms/receipts")
            assert r.status_code == 409 and r.json()["error"]["code"] == "RECEIPTS_ELSEWHERE", r.text
            await client.aclose()
            n.cancel_scope.cancel()
        await wait_for(lambda: not api.gw.receivers.receivers("acme"), 10, "the receiver gone")
        assert (await c.get("/api/v4/sms/receipts")).status_code == 200
        # a dlr webhook: the receipts go to it
        api.env.setup(
            lambda conn: WebhookRepo(conn).set("acme", "dlr", "http://127.0.0.1:9/hook", secret="s" * 32)
        )
        await wait_for(lambda: api.gw.webhooks.covers("acme", Kind.DLR), 15, "the webhook in the snapshot")
        r = await c.get("/api/v4/sms/receipts")
        assert r.status_code == 409 and r.json()["error"]["code"] == "RECEIPTS_ELSEWHERE"
