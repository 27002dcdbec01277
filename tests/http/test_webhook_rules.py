"""Webhook delivery rules on the in-memory bus under trio's autojump clock: the signature, the back-off
schedule (seen as the times of the requests), batch formation, the items, ack on 2xx / nak otherwise, and the
receipts pull (each receipt returned once)."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import json
from collections.abc import Mapping
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from catalyst_smpp.bus import Kind, MessageBus
from catalyst_smpp.gateway.messages import Address, DlrMessage, MoMessage
from catalyst_smpp.http.receipts import fetch_receipts, pull_refusal
from catalyst_smpp.http.webhooks import (
    BACKOFF,
    RETRY_STEP,
    WebhookDelivery,
    WebhookTasks,
    mo_item,
    receipt_item,
    retry_delay,
    signature,
    verify_signature,
)
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.store.records import ConfigSnapshot, Partner, Webhook

OUR_ID = 0x1234ABCD5678
SECRET = "whsec_" + "ab" * 32
SUBMIT, DONE = 1_790_000_000.0, 1_790_000_042.0


def _partner(fmt: str = "hex") -> Partner:
    return Partner(id=1, system_id="acme", password_hash="x", message_id_format=fmt)


def _hook(kind: str = "dlr", batch_size: int = 100) -> Webhook:
    return Webhook(
        partner="acme", kind=kind, url="http://hooks.test/in", secret=SECRET, batch_size=batch_size
    )


def _dlr(i: int, state: str = "DELIVRD") -> DlrMessage:
    return DlrMessage(
        message_id=str(OUR_ID + i),
        partner="acme",
        state=state,
        source=Address(1, 1, "12345"),
        dest=Address(1, 1, f"4477009{i:05d}"),
        error="000" if state == "DELIVRD" else "034",
        submit_date=SUBMIT,
        done_date=DONE,
        operator="opA",
        parts=2,
    )


async def _publish_dlrs(bus: MessageBus, n: int, start: int = 0) -> None:
    items = [
        (bus.subject(Kind.DLR, "acme"), _dlr(i).to_bytes(), None, f"d{i}") for i in range(start, start + n)
    ]
    assert all(r.ok for r in await bus.publish_batch(items))


async def _left(bus: MessageBus, kind: Kind = Kind.DLR) -> int:
    info = await (await bus.consumer(kind, "acme")).info()
    return info.num_pending + info.num_ack_pending


class FakeReceiver:
    """A :class:`Poster` that checks every request's signature and answers from a script of statuses
    (then 200); an entry ``None`` raises a connection error."""

    def __init__(self, script: list[int | None] | None = None) -> None:
        self.script = list(script or [])
        self.calls: list[tuple[float, list[dict[str, Any]], int | None]] = []

    async def __call__(self, url: str, body: bytes, headers: Mapping[str, str]) -> int:
        assert url == "http://hooks.test/in"
        ts = headers["X-Catalyst-Timestamp"]
        assert verify_signature(SECRET, ts, headers["X-Catalyst-Signature"], body)
        doc = json.loads(body)
        status = self.script.pop(0) if self.script else 200
        self.calls.append((trio.current_time(), doc["items"], status))
        if status is None:
            raise ConnectionRefusedError("refused")
        return status


def test_signature_is_hmac_sha256_of_timestamp_dot_body() -> None:
    body = b'{"kind":"dlr","items":[]}'
    want = hmac.new(SECRET.encode(), b"1790000000." + body, hashlib.sha256).hexdigest()
    assert signature(SECRET, 1_790_000_000, body) == "v1=" + want
    sig = signature(SECRET, 1_790_000_000, body)
    assert verify_signature(SECRET, "1790000000", sig, body, now=1_790_000_100)
    assert not verify_signature(SECRET, "1790000000", sig, body + b" ", now=1_790_000_100)  # body changed
    assert not verify_signature("other-secret-123456", "1790000000", sig, body, now=1_790_000_100)
    assert not verify_signature(SECRET, "1790000001", sig, body, now=1_790_000_100)  # timestamp changed
    assert not verify_signature(SECRET, "1790000000", sig, body, now=1_790_000_301)  # too old: a replay
    assert not verify_signature(SECRET, "soon", sig, body)


def test_retry_schedule() -> None:
    assert [retry_delay(n) for n in range(1, 9)] == [1, 10, 30, 90, 300, 300, 300, 300]
    assert BACKOFF == (1.0, 10.0, 30.0, 90.0) and RETRY_STEP == 300.0


def test_receipt_and_mo_items() -> None:
    item = receipt_item(_dlr(1, "UNDELIV").to_bytes(), _partner("hex"))
    assert item == {
        "event_id": item["event_id"],
        "message_id": format(OUR_ID + 1, "x"),
        "status": "UNDELIVERED",
        "smpp_state": "UNDELIV",
        "error_code": "034",
        "network_error_code": None,
        "to": "447700900001",
        "from": "12345",
        "operator": "opA",
        "submitted_at": "2026-09-21T14:13:20Z",
        "done_at": "2026-09-21T14:14:02Z",
        "parts": 2,
    }
    assert len(item["event_id"]) == 32
    again = receipt_item(_dlr(1, "UNDELIV").to_bytes(), _partner("dec"))
    assert again["message_id"] == str(OUR_ID + 1) and again["event_id"] == item["event_id"]  # stable id
    assert receipt_item(_dlr(2).to_bytes(), _partner())["event_id"] != item["event_id"]
    # a submit_multi destination's receipt shows the id the partner was given
    multi = DlrMessage(message_id=str(OUR_ID + 9), partner="acme", state="DELIVRD", display_id=str(OUR_ID))
    assert receipt_item(multi.to_bytes(), _partner("dec"))["message_id"] == str(OUR_ID)

    mo = MoMessage(
        message_id="77",
        partner="acme",
        source=Address(1, 1, "447700900100"),
        dest=Address(0, 0, "1234"),
        payload="Grüße €".encode("utf-16-be"),
        data_coding=8,
        operator="opA",
        received_at=SUBMIT,
    )
    m = mo_item(mo.to_bytes(), _partner("dec"))
    assert (m["from"], m["to"], m["text"], m["received_at"]) == (
        "447700900100",
        "1234",
        "Grüße €",
        "2026-09-21T14:13:20Z",
    )
    assert m["payload_hex"] is None and m["udh_hex"] is None
    latin = MoMessage(
        message_id="78", partner="acme", source=Address(), dest=Address(), payload=b"caf\xe9", data_coding=0
    )
    assert mo_item(latin.to_bytes(), _partner(), "latin1")["text"] == "café"  # the operator's data_coding 0
    binary = MoMessage(
        message_id="79", partner="acme", source=Address(), dest=Address(), payload=b"\x01\x02", data_coding=4
    )
    b = mo_item(binary.to_bytes(), _partner())
    assert (b["text"], b["payload_hex"]) == (None, "0102")


async def _run_until(bus: MessageBus, wd: WebhookDelivery, done: Any, timeout: float) -> None:
    async with trio.open_nursery() as n:
        await n.start(wd.run)
        with trio.fail_after(timeout):
            while not await done():
                await trio.sleep(0.5)
        wd.stop()


async def test_failed_requests_back_off_1_10_30_90_then_5_minutes_and_nothing_is_lost(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus
    await _publish_dlrs(bus, 3)
    rx = FakeReceiver([500, None, 503, 429, 500, 502])  # six failures, then 200
    metrics = Metrics()
    wd = WebhookDelivery(bus, _partner(), _hook(), poster=rx, metrics=metrics)

    async def done() -> bool:
        return await _left(bus) == 0

    await _run_until(bus, wd, done, 3600)
    times = [t for t, _items, _s in rx.calls]
    gaps = [round(b - a, 1) for a, b in itertools.pairwise(times)]
    assert gaps == [1.0, 10.0, 30.0, 90.0, 300.0, 300.0]
    # one batch each time (the three receipts), nothing lost; the last one delivered them
    assert [len(items) for _t, items, _s in rx.calls] == [3] * 7
    assert {i["to"] for i in rx.calls[-1][1]} == {f"4477009{i:05d}" for i in range(3)}
    c = metrics.webhook_deliveries_total
    assert c.labels("acme", "dlr", "retry")._value.get() == 18
    assert c.labels("acme", "dlr", "redelivered")._value.get() == 3  # sent before: possible duplicates
    assert c.labels("acme", "dlr", "ok")._value.get() == 0
    assert wd.failures == 0


async def test_many_waiting_go_in_batches_of_batch_size_each_once(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus
    await _publish_dlrs(bus, 250)
    rx = FakeReceiver()
    metrics = Metrics()
    wd = WebhookDelivery(bus, _partner(), _hook(batch_size=100), poster=rx, metrics=metrics)

    async def done() -> bool:
        return await _left(bus) == 0

    await _run_until(bus, wd, done, 60)
    assert [len(items) for _t, items, _s in rx.calls] == [100, 100, 50]
    tos = [i["to"] for _t, items, _s in rx.calls for i in items]
    assert sorted(tos) == sorted(f"4477009{i:05d}" for i in range(250))  # each once, none missing
    assert metrics.webhook_deliveries_total.labels("acme", "dlr", "ok")._value.get() == 250


async def test_a_new_receipt_during_an_outage_waits_for_the_pause(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """After a failure the node does not fetch again before the pause ends: a receipt that arrives meanwhile
    is not sent to a receiver known to be down; it goes with the next attempt."""
    bus = memory_bus
    await _publish_dlrs(bus, 1)
    rx = FakeReceiver([None, None])
    wd = WebhookDelivery(bus, _partner(), _hook(), poster=rx)
    async with trio.open_nursery() as n:
        await n.start(wd.run)
        await trio.sleep(0.5)
        await _publish_dlrs(bus, 1, start=1)  # during the 1 s pause
        await trio.sleep(5.0)
        assert [len(items) for _t, items, _s in rx.calls] == [1, 2]  # at 0 s, then both at 1 s
        await trio.sleep(10.0)
        assert len(rx.calls) == 3 and await _left(bus) == 0
        wd.stop()


async def test_unreadable_record_is_terminated_and_the_rest_delivered(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus
    await bus.publish_batch([(bus.subject(Kind.DLR, "acme"), b"garbage", None, "g")])
    await _publish_dlrs(bus, 2)
    rx = FakeReceiver()
    metrics = Metrics()
    wd = WebhookDelivery(bus, _partner(), _hook(), poster=rx, metrics=metrics)

    async def done() -> bool:
        return await _left(bus) == 0

    await _run_until(bus, wd, done, 60)
    assert sum(len(items) for _t, items, _s in rx.calls) == 2
    assert metrics.webhook_deliveries_total.labels("acme", "dlr", "poison")._value.get() == 1


async def test_mo_webhook_posts_mo(memory_bus: MessageBus, autojump_clock: trio.testing.MockClock) -> None:
    bus = memory_bus
    mo = MoMessage(
        message_id="5",
        partner="acme",
        source=Address(1, 1, "4477"),
        dest=Address(),
        payload=b"hi",
        data_coding=0,
    )
    assert all(
        r.ok for r in await bus.publish_batch([(bus.subject(Kind.MO, "acme"), mo.to_bytes(), None, "m")])
    )
    rx = FakeReceiver()
    wd = WebhookDelivery(bus, _partner(), _hook("mo"), poster=rx)

    async def done() -> bool:
        return await _left(bus, Kind.MO) == 0

    await _run_until(bus, wd, done, 60)
    assert [i["text"] for _t, items, _s in rx.calls for i in items] == ["hi"]


async def test_pull_returns_each_receipt_once(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    bus = memory_bus
    await _publish_dlrs(bus, 5)
    first = await fetch_receipts(bus, _partner(), 3)
    second = await fetch_receipts(bus, _partner(), 3)
    third = await fetch_receipts(bus, _partner(), 3)
    assert (len(first), len(second), third) == (3, 2, [])
    assert sorted(i["to"] for i in first + second) == [f"4477009{i:05d}" for i in range(5)]
    await trio.sleep(3600)  # long past ack_wait: nothing comes back
    assert await fetch_receipts(bus, _partner(), 10) == []
    with pytest.raises(ValueError):
        await fetch_receipts(bus, _partner(), 0)


def test_pull_rule() -> None:
    assert pull_refusal(receiver_bound=False, dlr_webhook=False) is None
    assert pull_refusal(receiver_bound=True, dlr_webhook=False)
    assert pull_refusal(receiver_bound=False, dlr_webhook=True)


async def test_tasks_follow_the_snapshot(
    memory_bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """WebhookTasks starts a delivery per enabled webhook of an enabled partner, says which kinds it covers
    (SMPP delivery skips those), and stops a delivery whose webhook is removed or disabled."""
    bus = memory_bus
    rx = FakeReceiver()
    tasks = WebhookTasks(bus, poster=lambda: rx)

    def snap(*hooks: Webhook, enabled: bool = True) -> ConfigSnapshot:
        p = Partner(id=1, system_id="acme", password_hash="x", enabled=enabled)
        return ConfigSnapshot(version=1, partners=(p,), operators=(), routes=(), webhooks=hooks)

    async with trio.open_nursery() as n:
        await n.start(tasks.run)
        tasks.sync(snap(_hook("dlr"), attrs.evolve(_hook("mo"), enabled=False)))
        assert tasks.covers("acme", Kind.DLR) and not tasks.covers("acme", Kind.MO)
        assert set(tasks.running) == {("acme", "dlr")}
        await _publish_dlrs(bus, 3)
        await trio.sleep(2)
        assert sum(len(items) for _t, items, _s in rx.calls) == 3
        first = tasks.running[("acme", "dlr")]
        tasks.sync(snap(_hook("dlr", batch_size=7)))  # a change: the same delivery, new settings
        assert tasks.running[("acme", "dlr")] is first and first.hook.batch_size == 7
        tasks.sync(snap(_hook("dlr"), enabled=False))  # a disabled partner's webhooks stop
        assert not tasks.covers("acme", Kind.DLR)
        await trio.sleep(2)
        assert first.stopped.is_set() and tasks.running == {}
        tasks.sync(snap())
        await tasks.close()
        n.cancel_scope.cancel()
