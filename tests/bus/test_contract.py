"""The bus contract the gateway relies on, run against a real nats-server AND the in-memory bus.

Each test runs twice: ``[nats]`` on :class:`catalyst_smpp.bus.Bus` (real JetStream, real clock) and
``[memory]`` on :class:`catalyst_smpp.bus.memory.MemoryBus` under trio's autojump clock.  A behaviour
the in-memory bus gets wrong fails its ``[memory]`` case next to a passing ``[nats]`` one.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from typing import Any

import attrs
import pytest
import trio
import trio.testing

from catalyst_smpp.bus import (
    Bus,
    BusConsumer,
    BusError,
    Kind,
    MessageBus,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishItem,
)
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.config import NatsConfig, StreamConfig

OpenBus = Callable[..., contextlib.AbstractAsyncContextManager[MessageBus]]


@pytest.fixture(params=["nats", "memory"])
def impl(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def clock(impl: str) -> trio.testing.MockClock | None:
    """The autojump clock for the in-memory bus (timers pass at once); real time for NATS."""
    return trio.testing.MockClock(autojump_threshold=0) if impl == "memory" else None


@pytest.fixture
def open_bus(impl: str, request: pytest.FixtureRequest) -> OpenBus:
    """``open_bus(mt=StreamConfig(...), kv_ttl=...)``: a connected bus of this implementation."""
    base = request.getfixturevalue("nats_config") if impl == "nats" else NatsConfig(namespace="mem")
    url = request.getfixturevalue("nats_url") if impl == "nats" else ""

    @contextlib.asynccontextmanager
    async def opener(kv_ttl: float | None = None, **streams: StreamConfig) -> AsyncIterator[MessageBus]:
        cfg = attrs.evolve(base, streams=attrs.evolve(base.streams, **streams))
        if kv_ttl is not None:
            cfg = attrs.evolve(cfg, kv=attrs.evolve(cfg.kv, ttl=kv_ttl))
        if impl == "nats":
            async with Bus.connect(url, cfg, name="contract") as b:
                yield b
        else:
            mb = MemoryBus(cfg)
            try:
                yield mb
            finally:
                mb.close()

    return opener


async def _drain(c: BusConsumer, want: int, timeout: float = 5.0) -> list[Msg]:
    got: list[Msg] = []
    with trio.move_on_after(timeout):
        while len(got) < want:
            got += await c.fetch(want - len(got), 0.5)
    return got


async def _until(pred: Callable[[], Any], what: str) -> None:
    """Wait for ``pred()`` (NATS applies acks asynchronously after receiving them)."""
    with trio.fail_after(5):
        while not await pred():
            await trio.sleep(0.02)


async def test_publish_with_msg_id_then_fetch_in_batches_and_ack(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        subj = bus.subject(Kind.MT, "op1")
        res = await bus.publish_batch(
            [PublishItem(subj, b"m%d" % i, {"x-partner": "acme"}, f"id-{i}") for i in range(25)]
        )
        assert [r.seq for r in res if isinstance(r, PubAck) and not r.duplicate] == list(range(1, 26))
        c = await bus.consumer(Kind.MT, "op1")
        batches = [await c.fetch(10, 1.0) for _ in range(3)]
        assert [len(b) for b in batches] == [10, 10, 5]
        msgs = [m for b in batches for m in b]
        assert [m.data for m in msgs] == [b"m%d" % i for i in range(25)]
        assert [m.stream_seq for m in msgs] == list(range(1, 26))
        m0 = msgs[0]
        assert (m0.subject, m0.msg_id, m0.num_delivered) == (subj, "id-0", 1)
        assert m0.headers is not None and m0.headers["x-partner"] == "acme"
        assert (await c.info()).num_ack_pending == 25
        await c.ack(msgs)

        async def acked() -> bool:
            return (await c.info()).num_ack_pending == 0 and (await bus.stream_info(Kind.MT)).messages == 0

        await _until(acked, "acks applied")  # work queue: acked messages leave the stream
        assert await c.fetch(10, 0.2) == []


async def test_msg_id_is_stored_once_within_the_duplicate_window(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        subj = bus.subject(Kind.MT, "op1")
        first = await bus.publish_batch([(subj, b"a", None, "same"), (subj, b"b", None, "other")])
        again = await bus.publish_batch([(subj, b"a-retry", None, "same"), (subj, b"c", None, None)])
        assert isinstance(first[0], PubAck) and not first[0].duplicate
        assert isinstance(again[0], PubAck) and again[0].duplicate and again[0].seq == first[0].seq
        assert isinstance(again[1], PubAck) and not again[1].duplicate
        assert (await bus.stream_info(Kind.MT)).messages == 3
        c = await bus.consumer(Kind.MT, "op1")
        assert [m.data for m in await _drain(c, 3)] == [b"a", b"b", b"c"]


async def test_nak_with_delay_later_nak_without_at_once_term_never(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        subj = bus.subject(Kind.MT, "op1")
        await bus.publish_batch([(subj, b"a", None, "a"), (subj, b"b", None, "b"), (subj, b"c", None, "c")])
        c = await bus.consumer(Kind.MT, "op1")
        a, b, cc = await _drain(c, 3)
        await c.nak([a], delay=1.5)
        await c.nak([b])
        await c.term([cc])
        [b2] = await _drain(c, 1)
        assert (b2.data, b2.num_delivered) == (b"b", 2)
        assert await c.fetch(5, 0.3) == []  # a: not yet; c: never
        [a2] = await _drain(c, 1)
        assert (a2.data, a2.num_delivered) == (b"a", 2)
        await c.ack([a2, b2])
        assert await c.fetch(5, 0.5) == []


async def test_unacked_is_redelivered_after_ack_wait_in_progress_restarts_it(
    open_bus: OpenBus, clock: Any
) -> None:
    async with open_bus(mt=StreamConfig(ack_wait=1.0)) as bus:
        await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, "w1")])
        c = await bus.consumer(Kind.MT, "op1")
        [m] = await _drain(c, 1)
        await trio.sleep(0.6)
        await c.in_progress([m], flush=True)
        assert await c.fetch(1, 0.6) == []  # 1.2 s after delivery, 0.6 s after in_progress: still ours
        [m2] = await _drain(c, 1)  # never acked: back after ack_wait
        assert m2.stream_seq == m.stream_seq and m2.consumer_seq > m.consumer_seq
        assert (m.num_delivered, m2.num_delivered) == (1, 2)
        await c.ack([m2])
        await bus.delete_consumer(Kind.MT, "op1")


async def test_max_deliver_and_backoff(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus(mt=StreamConfig(backoff=(0.3, 0.6, 5.0), max_deliver=3)) as bus:
        await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, "b1")])
        c = await bus.consumer(Kind.MT, "op1")
        got: list[Msg] = []
        with trio.fail_after(10):
            while len(got) < 3:  # first delivery + 2 redeliveries, after 0.3 then 0.6 s
                got += await c.fetch(1, 1.0)
        assert [m.num_delivered for m in got] == [1, 2, 3]
        assert await c.fetch(1, 1.5) == []  # max_deliver reached: never again
        assert (await bus.stream_info(Kind.MT)).messages == 1  # ... yet still stored
        await bus.delete_consumer(Kind.MT, "op1")


async def test_work_queue_one_durable_per_subject_shared_by_its_users(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        await bus.publish_batch(
            [(bus.subject(Kind.DLR, "p1"), b"%d" % i, None, f"p1-{i}") for i in range(40)]
            + [(bus.subject(Kind.DLR, "p2"), b"other", None, "p2")]
        )
        c1, c2 = await bus.consumer(Kind.DLR, "p1"), await bus.consumer(Kind.DLR, "p1")
        seen: list[bytes] = []

        async def work(c: BusConsumer, n: int) -> None:
            with trio.move_on_after(5):
                while len(seen) < 40:
                    ms = await c.fetch(n, 0.3)
                    seen.extend(m.data for m in ms)
                    await c.ack(ms)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work, c1, 7)
            nursery.start_soon(work, c2, 11)
        assert sorted(seen) == sorted(b"%d" % i for i in range(40))  # each once, to one of the two
        p2 = await bus.consumer(Kind.DLR, "p2")
        assert [m.data for m in await _drain(p2, 1)] == [b"other"]

        async def only_p2_left() -> bool:
            return (await bus.stream_info(Kind.DLR)).messages == 1

        await _until(only_p2_left, "acks applied")


async def test_events_durable_sees_every_event_subject(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        await bus.publish_batch(
            [(bus.subject(Kind.EVENTS, e), e.encode(), None, None) for e in ("accepted", "delivered")]
        )
        c = await bus.consumer(Kind.EVENTS)
        assert [m.data for m in await _drain(c, 2)] == [b"accepted", b"delivered"]


async def test_subject_bound_refuses_or_drops_the_oldest(open_bus: OpenBus, clock: Any) -> None:
    new, old = (
        StreamConfig(max_msgs_per_subject=3, discard="new"),
        StreamConfig(max_msgs_per_subject=3, discard="old"),
    )
    async with open_bus(mt=new, dlr=old) as bus:
        mt = [(bus.subject(Kind.MT, "op"), b"%d" % i, None, f"m{i}") for i in range(5)]
        dlr = [(bus.subject(Kind.DLR, "p"), b"%d" % i, None, f"d{i}") for i in range(5)]
        res = await bus.publish_batch(mt + dlr + [(bus.subject(Kind.MT, "op2"), b"y", None, "y")])
        assert [r.ok for r in res[:5]] == [True, True, True, False, False]
        assert all(isinstance(r, PublishError) and r.kind is PublishErrorKind.STORE_FULL for r in res[3:5])
        assert all(r.ok for r in res[5:])  # discard old: every publish succeeds; other subjects unaffected
        c = await bus.consumer(Kind.DLR, "p")
        assert [m.data for m in await _drain(c, 3)] == [b"2", b"3", b"4"]


async def test_subject_without_stream_fails_alone(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        res = await bus.publish_batch(
            [
                (bus.subject(Kind.MT, "op1"), b"ok", None, "ok1"),
                (f"nowhere.{bus.names.namespace}", b"x", None, None),
            ]
        )
        assert isinstance(res[0], PubAck)
        assert isinstance(res[1], PublishError) and res[1].kind is PublishErrorKind.NO_STREAM


async def test_deleted_consumer_is_recreated_by_fetch(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        c = await bus.consumer(Kind.MO, "p1")
        assert await bus.delete_consumer(Kind.MO, "p1")
        assert await c.fetch(5, 0.3) == []
        await bus.publish_batch([(bus.subject(Kind.MO, "p1"), b"after", None, "after")])
        assert [m.data for m in await _drain(c, 1)] == [b"after"]


async def test_kv_get_put_delete_raw_bytes(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        kv = bus.kv
        res = await kv.put_many([(f"op1.k{i}", bytes([i, 0, 255])) for i in range(20)] + [("op1.empty", b"")])
        assert all(r.ok for r in res)
        got = await kv.get_many([f"op1.k{i}" for i in range(20)] + ["op1.empty", "op1.missing"])
        assert got == [bytes([i, 0, 255]) for i in range(20)] + [b"", None]
        await kv.delete_many(["op1.k3", "op1.k7", "op1.never"])
        assert await kv.get_many(["op1.k3", "op1.k7", "op1.k8"]) == [None, None, bytes([8, 0, 255])]
        assert (await kv.put_many([("op1.k3", b"again")]))[0].ok
        assert await kv.get_many(["op1.k3"]) == [b"again"]
        assert await kv.get_many([]) == []
        with pytest.raises(BusError):
            await kv.get_many(["bad key"])


async def test_kv_value_expires_ttl_after_its_last_put(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus(kv_ttl=2.0) as bus:
        kv = bus.kv
        await kv.put_many([("op.a", b"1"), ("op.b", b"1")])
        await trio.sleep(1.2)
        await kv.put_many([("op.b", b"2")])  # b lives 2 s from now
        await trio.sleep(1.2)
        with trio.fail_after(5):  # a: 2.4 s after its put (the server expires on its own timer)
            while (await kv.get_many(["op.a"]))[0] is not None:
                await trio.sleep(0.1)
        assert await kv.get_many(["op.b"]) == [b"2"]
        with trio.fail_after(5):
            while (await kv.get_many(["op.b"]))[0] is not None:
                await trio.sleep(0.1)


async def test_kv_swap_is_compare_and_set(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus:
        kv = bus.kv
        assert await kv.get_entry("_t.cas") is None
        r1 = await kv.swap("_t.cas", b"one", 0)  # create-only
        assert r1 is not None
        assert await kv.swap("_t.cas", b"again", 0) is None  # it exists now
        assert await kv.get_entry("_t.cas") == (b"one", r1)
        r2 = await kv.swap("_t.cas", b"two", r1)
        assert r2 is not None and r2 > r1
        assert await kv.swap("_t.cas", b"stale", r1) is None  # another write came first
        assert await kv.get_entry("_t.cas") == (b"two", r2)
        assert await kv.get_many(["_t.cas"]) == [b"two"]  # the same value the batch read sees
        await kv.delete_many(["_t.cas"])
        assert await kv.get_entry("_t.cas") is None
        assert await kv.swap("_t.cas", b"three", 0) is not None  # a deleted key can be created again


async def test_kv_entry_expires_and_can_be_created_again(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus(kv_ttl=1.0) as bus:
        kv = bus.kv
        assert await kv.swap("_t.ttl", b"v", 0) is not None
        with trio.fail_after(5):
            while await kv.get_entry("_t.ttl") is not None:
                await trio.sleep(0.1)
        assert await kv.swap("_t.ttl", b"w", 0) is not None


async def test_beacons_reach_every_listener_of_the_topic(open_bus: OpenBus, clock: Any) -> None:
    async with open_bus() as bus, bus.beacons("t1") as a, bus.beacons("t1") as b, bus.beacons("t2") as other:
        await bus.beacon("t1", b"hello")
        with trio.fail_after(5):
            assert await a.receive() == b"hello"
            assert await b.receive() == b"hello"
        await bus.beacon("t2", b"x")
        with trio.fail_after(5):
            assert await other.receive() == b"x"
        with trio.move_on_after(0.3):  # t2's beacon went to t2's listener only
            got = await a.receive()
            raise AssertionError(f"unexpected beacon {got!r}")
    async with open_bus() as bus:
        await bus.beacon("t1", b"nobody listens")  # not an error
