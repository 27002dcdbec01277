"""JetStream bus against a real nats-server: publish, consume, ack/nak/term, de-dup, limits, KV."""

from __future__ import annotations

import attrs
import pytest
import trio

from catalyst_smpp.bus import (
    Bus,
    BusError,
    ConnectionState,
    Kind,
    Msg,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishItem,
)
from catalyst_smpp.bus.core import opid_key
from catalyst_smpp.config import NatsConfig, StreamConfig


async def _drain(consumer, want: int, timeout: float = 5.0) -> list[Msg]:  # type: ignore[no-untyped-def]
    got: list[Msg] = []
    with trio.move_on_after(timeout):
        while len(got) < want:
            got += await consumer.fetch(min(256, want - len(got)), 0.5)
    return got


async def test_publish_consume_ack(bus: Bus) -> None:
    subj = bus.subject(Kind.MT, "op1")
    assert subj == f"{bus.names.namespace}.MT.op1"
    res = await bus.publish_batch(
        [(subj, f"m{i}".encode(), {"x-partner": "acme"}, f"id-{i}") for i in range(300)]
    )
    assert all(isinstance(r, PubAck) and not r.duplicate for r in res)
    assert [r.seq for r in res if isinstance(r, PubAck)] == list(range(1, 301))

    c = await bus.consumer(Kind.MT, "op1")
    msgs = await _drain(c, 300)
    assert [m.data for m in msgs] == [f"m{i}".encode() for i in range(300)]
    assert msgs[0].headers is not None and msgs[0].headers["x-partner"] == "acme"
    assert msgs[0].msg_id == "id-0" and msgs[0].num_delivered == 1 and msgs[0].timestamp > 0
    info = await c.info()
    assert info.num_ack_pending == 300
    await c.ack(msgs)
    # the server applies acks asynchronously after receiving them: wait for the ack floor to move
    with trio.fail_after(5):
        while (info := await c.info()).num_ack_pending:
            await trio.sleep(0.02)
    assert (info.num_pending, info.num_ack_pending, info.ack_floor_stream_seq) == (0, 0, 300)
    # nothing left: fetch returns [] after its timeout, it does not raise
    assert await c.fetch(10, 0.2) == []


async def test_publish_items_and_empty_batch(bus: Bus) -> None:
    assert await bus.publish_batch([]) == []
    res = await bus.publish_batch([PublishItem(bus.subject(Kind.DLR, "acme"), b"r1", msg_id="r1")])
    assert isinstance(res[0], PubAck) and res[0].stream == bus.names.stream(Kind.DLR)


async def test_dedup_by_msg_id(bus: Bus) -> None:
    subj = bus.subject(Kind.MT, "op1")
    first = await bus.publish_batch([(subj, b"a", None, "same"), (subj, b"b", None, "other")])
    again = await bus.publish_batch([(subj, b"a-retry", None, "same")])
    assert isinstance(first[0], PubAck) and not first[0].duplicate
    assert isinstance(again[0], PubAck) and again[0].duplicate and again[0].seq == first[0].seq
    assert (await bus.stream_info(Kind.MT)).messages == 2


async def test_nak_with_delay_redelivers_later(bus: Bus) -> None:
    await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, "n1")])
    c = await bus.consumer(Kind.MT, "op1")
    [m] = await _drain(c, 1)
    await c.nak([m], delay=1.0)
    assert await c.fetch(1, 0.3) == []  # not yet
    [again] = await _drain(c, 1, timeout=5)
    assert again.data == b"x" and again.num_delivered == 2
    await c.ack([again])


async def test_nak_without_delay_and_term(bus: Bus) -> None:
    subj = bus.subject(Kind.MT, "op1")
    await bus.publish_batch([(subj, b"a", None, "a"), (subj, b"b", None, "b")])
    c = await bus.consumer(Kind.MT, "op1")
    a, b = await _drain(c, 2)
    await c.term([a])
    await c.nak([b])
    [b2] = await _drain(c, 1)
    assert b2.data == b"b" and b2.num_delivered == 2
    await c.ack([b2])
    assert await c.fetch(5, 0.3) == []  # the terminated one never comes back


async def test_unacked_messages_are_redelivered_after_ack_wait(
    nats_url: str, nats_config: NatsConfig
) -> None:
    cfg = attrs.evolve(nats_config, streams=attrs.evolve(nats_config.streams, mt=StreamConfig(ack_wait=0.5)))
    async with Bus.connect(nats_url, cfg) as bus:
        try:
            await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, "w1")])
            c = await bus.consumer(Kind.MT, "op1")
            [m] = await _drain(c, 1)
            await c.in_progress([m], flush=True)
            [m2] = await _drain(c, 1, timeout=5)  # no ack: back after ack_wait
            assert m2.stream_seq == m.stream_seq and m2.consumer_seq > m.consumer_seq
            assert (m.num_delivered, m2.num_delivered) == (1, 2)
            await c.ack([m2])
        finally:
            await bus.delete_consumer(Kind.MT, "op1")


async def test_durable_consumer_is_shared_between_nodes(
    nats_url: str, nats_config: NatsConfig, bus: Bus
) -> None:
    subj = bus.subject(Kind.MT, "shared")
    await bus.publish_batch([(subj, str(i).encode(), None, f"s{i}") for i in range(200)])
    async with Bus.connect(nats_url, nats_config, name="node2") as bus2:
        c1 = await bus.consumer(Kind.MT, "shared")
        c2 = await bus2.consumer(Kind.MT, "shared")
        seen: list[bytes] = []

        async def work(c, n) -> None:  # type: ignore[no-untyped-def]
            with trio.move_on_after(5):
                while len(seen) < 200:
                    ms = await c.fetch(n, 0.3)
                    seen.extend(m.data for m in ms)
                    await c.ack(ms)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(work, c1, 7)
            nursery.start_soon(work, c2, 11)
    assert sorted(seen, key=int) == [str(i).encode() for i in range(200)]  # each exactly once


async def test_partner_queues_are_isolated(bus: Bus) -> None:
    await bus.publish_batch(
        [
            (bus.subject(Kind.DLR, "p1"), b"d1", None, "d1"),
            (bus.subject(Kind.DLR, "p2"), b"d2", None, "d2"),
            (bus.subject(Kind.MO, "p1"), b"mo1", None, "mo1"),
        ]
    )
    dlr1 = await bus.consumer(Kind.DLR, "p1")
    dlr2 = await bus.consumer(Kind.DLR, "p2")
    mo1 = await bus.consumer(Kind.MO, "p1")
    assert [m.data for m in await _drain(dlr1, 1)] == [b"d1"]
    assert [m.data for m in await _drain(dlr2, 1)] == [b"d2"]
    assert [m.data for m in await _drain(mo1, 1)] == [b"mo1"]
    assert await dlr1.fetch(5, 0.2) == []


async def test_names_with_odd_characters_are_escaped(bus: Bus) -> None:
    subj = bus.subject(Kind.DLR, "acme.sms *>")
    assert subj.endswith(".DLR.acme=2Esms=20=2A=3E")
    [ack] = await bus.publish_batch([(subj, b"x", None, None)])
    assert isinstance(ack, PubAck)
    c = await bus.consumer(Kind.DLR, "acme.sms *>")
    assert [m.data for m in await _drain(c, 1)] == [b"x"]


async def test_events_consumer_sees_all_event_subjects(bus: Bus) -> None:
    await bus.publish_batch(
        [
            (bus.subject(Kind.EVENTS, "final"), b"e1", None, "e1"),
            (bus.subject(Kind.EVENTS, "credit"), b"e2", None, "e2"),
        ]
    )
    c = await bus.consumer(Kind.EVENTS)
    assert sorted(m.data for m in await _drain(c, 2)) == [b"e1", b"e2"]


async def test_full_subject_fails_per_message(nats_url: str, nats_config: NatsConfig) -> None:
    cfg = attrs.evolve(
        nats_config,
        streams=attrs.evolve(nats_config.streams, dlr=StreamConfig(max_msgs_per_subject=5, discard="new")),
    )
    async with Bus.connect(nats_url, cfg) as bus:
        res = await bus.publish_batch(
            [(bus.subject(Kind.DLR, "slow"), b"x", None, f"f{i}") for i in range(8)]
            + [(bus.subject(Kind.DLR, "other"), b"y", None, "o1")]
        )
        oks = [r for r in res if isinstance(r, PubAck)]
        errs = [r for r in res if isinstance(r, PublishError)]
        assert len(oks) == 6 and len(errs) == 3  # 5 for "slow" + 1 for "other": the bound is per partner
        assert all(e.kind is PublishErrorKind.STORE_FULL and e.temporary for e in errs)
        assert isinstance(res[-1], PubAck)


async def test_partner_streams_drop_the_oldest_at_the_bound(nats_url: str, nats_config: NatsConfig) -> None:
    # the default for DLR/MO (discard "old"): a partner at its bound loses its oldest receipts; every publish
    # succeeds, so the operator's deliver_sm are answered ESME_ROK and other partners never wait behind it
    assert nats_config.streams.dlr.discard == "old" and nats_config.streams.mo.discard == "old"
    small = attrs.evolve(nats_config.streams.dlr, max_msgs_per_subject=5)
    cfg = attrs.evolve(nats_config, streams=attrs.evolve(nats_config.streams, dlr=small))
    async with Bus.connect(nats_url, cfg) as bus:
        res = await bus.publish_batch(
            [(bus.subject(Kind.DLR, "slow"), b"%d" % i, None, f"s{i}") for i in range(8)]
            + [(bus.subject(Kind.DLR, "other"), b"y", None, "o1")]
        )
        assert all(isinstance(r, PubAck) for r in res)
        slow = await bus.consumer(Kind.DLR, "slow")
        assert sorted(m.data for m in await _drain(slow, 5)) == [b"3", b"4", b"5", b"6", b"7"]
        other = await bus.consumer(Kind.DLR, "other")
        assert [m.data for m in await _drain(other, 1)] == [b"y"]


async def test_subject_without_stream_is_a_per_message_error(bus: Bus) -> None:
    res = await bus.publish_batch(
        [
            (bus.subject(Kind.MT, "op1"), b"ok", None, "ok1"),
            ("nowhere." + bus.names.namespace, b"x", None, None),
        ]
    )
    assert isinstance(res[0], PubAck)
    assert isinstance(res[1], PublishError) and res[1].kind is PublishErrorKind.NO_STREAM
    assert not res[1].temporary


async def test_streams_are_created_idempotently(nats_url: str, nats_config: NatsConfig, bus: Bus) -> None:
    await bus.ensure()
    await bus.ensure()
    changed = attrs.evolve(
        nats_config, streams=attrs.evolve(nats_config.streams, mo=StreamConfig(max_msgs_per_subject=3))
    )
    async with Bus.connect(nats_url, changed) as bus2:  # another node with new limits updates the stream
        res = await bus2.publish_batch([(bus2.subject(Kind.MO, "p"), b"x", None, f"i{i}") for i in range(4)])
        assert [r.ok for r in res] == [True, True, True, False]
    assert bus.state is ConnectionState.CONNECTED


async def test_kv_put_get_delete_batched(bus: Bus) -> None:
    items = [("op1", f"{i:x}", f"our{i} acme {i % 3}".encode()) for i in range(100)]
    res = await bus.opids.put_many(items)
    assert all(r.ok for r in res)
    got = await bus.opids.get_many(
        [("op1", f"{i:x}") for i in range(100)] + [("op1", "missing"), ("op2", "0")]
    )
    assert got[:100] == [m for _, _, m in items]
    assert got[100:] == [None, None]
    # odd characters in operator ids are escaped into valid keys
    await bus.opids.put_many([("op 1", "id/with spaces", b"x\x00p")])
    assert await bus.opids.get_many([("op 1", "id/with spaces")]) == [b"x\x00p"]
    await bus.opids.delete_many([("op1", "0"), ("op1", "1")])
    assert await bus.opids.get_many([("op1", "0"), ("op1", "1"), ("op1", "2")]) == [None, None, items[2][2]]


async def test_kv_direct_gets_agree_with_nats_py(bus: Bus) -> None:
    # kv_get reads through JetStream direct gets in one buffer (our inbox, fast path); nats-py's
    # KeyValue.get per key must see the same values, missing keys and deleted keys
    aio = bus._aio
    assert aio.kv_direct  # our bucket allows direct gets: the batched path is taken
    await bus.opids.put_many([("opd", f"k{i}", f"m{i}".encode()) for i in range(50)])
    await bus.opids.delete_many([("opd", "k3"), ("opd", "k7")])
    keys = [opid_key("opd", f"k{i}") for i in range(50)] + [opid_key("opd", "never")]
    direct = await bus._call(aio.kv_get, keys, 5.0)
    each = await bus._call(aio._kv_get_each, keys, 5.0)
    assert direct == each
    assert direct[3] is None and direct[7] is None and direct[-1] is None
    assert sum(v is not None for v in direct) == 48
    assert await bus._call(aio.kv_get, [], 5.0) == []


async def test_kv_entries_expire_after_ttl(nats_url: str, nats_config: NatsConfig) -> None:
    cfg = attrs.evolve(nats_config, kv=attrs.evolve(nats_config.kv, ttl=1.0))
    async with Bus.connect(nats_url, cfg) as bus:
        await bus.opids.put_many([("op1", "abc", b"m1")])
        assert await bus.opids.get_many([("op1", "abc")]) == [b"m1"]
        with trio.fail_after(10):
            while (await bus.opids.get_many([("op1", "abc")]))[0] is not None:
                await trio.sleep(0.2)


async def test_after_close_publish_fails_per_message_and_the_rest_raises(
    nats_url: str, nats_config: NatsConfig
) -> None:
    async with Bus.connect(nats_url, nats_config) as bus:
        c = await bus.consumer(Kind.MT, "op1")
    assert bus.state is ConnectionState.CLOSED
    [r] = await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, None)])
    assert isinstance(r, PublishError) and r.kind is PublishErrorKind.CONNECTION
    with pytest.raises(BusError):
        await c.fetch(1, 0.1)


async def test_backoff_is_applied_to_redeliveries(nats_url: str, nats_config: NatsConfig) -> None:
    cfg = attrs.evolve(
        nats_config,
        streams=attrs.evolve(nats_config.streams, mt=StreamConfig(backoff=(0.3, 0.3, 5.0), max_deliver=3)),
    )
    async with Bus.connect(nats_url, cfg) as bus:
        await bus.publish_batch([(bus.subject(Kind.MT, "op1"), b"x", None, "b1")])
        c = await bus.consumer(Kind.MT, "op1")
        seqs: list[int] = []
        with trio.fail_after(10):
            while len(seqs) < 3:  # first delivery + 2 redeliveries (max_deliver=3), 0.3 s apart
                seqs += [m.consumer_seq for m in await c.fetch(1, 1.0)]
        assert seqs == [1, 2, 3]
        assert await c.fetch(1, 0.8) == []  # max_deliver reached


async def test_deleted_consumer_is_recreated_by_fetch(bus: Bus) -> None:
    subj = bus.subject(Kind.MO, "p1")
    c = await bus.consumer(Kind.MO, "p1")
    assert await bus.delete_consumer(Kind.MO, "p1")
    assert await c.fetch(5, 0.3) == []  # notices, recreates the durable, returns empty
    await bus.publish_batch([(subj, b"after", None, "after")])
    assert [m.data for m in await _drain(c, 1)] == [b"after"]
    assert (await c.info()).num_ack_pending == 1


async def test_bound_counts_only_unconsumed_messages(nats_url: str, nats_config: NatsConfig) -> None:
    cfg = attrs.evolve(
        nats_config, streams=attrs.evolve(nats_config.streams, dlr=StreamConfig(max_msgs_per_subject=5))
    )
    async with Bus.connect(nats_url, cfg) as bus:
        subj = bus.subject(Kind.DLR, "p")
        assert all(r.ok for r in await bus.publish_batch([(subj, b"x", None, f"a{i}") for i in range(5)]))
        assert not (await bus.publish_batch([(subj, b"x", None, "a5")]))[0].ok  # full while undelivered
        c = await bus.consumer(Kind.DLR, "p")
        await c.ack(await _drain(c, 5))
        with trio.fail_after(5):  # acked receipts leave the queue (work-queue retention)...
            while (await bus.stream_info(Kind.DLR)).messages:
                await trio.sleep(0.02)
        # ...so the partner's queue accepts again
        assert all(r.ok for r in await bus.publish_batch([(subj, b"x", None, f"b{i}") for i in range(5)]))


async def test_late_message_is_kept_for_next_fetch_or_nakd_when_stale(
    nats_url: str, nats_config: NatsConfig
) -> None:
    cfg = attrs.evolve(nats_config, streams=attrs.evolve(nats_config.streams, mt=StreamConfig(ack_wait=1.0)))
    async with Bus.connect(nats_url, cfg) as bus:
        subj = bus.subject(Kind.MT, "op1")
        c = await bus.consumer(Kind.MT, "op1")

        async def late(tag: bytes) -> None:
            # a fetch gives up (cancelled) while its long-poll pull request is still open on the server;
            # a message published then is delivered to our inbox after nobody waits for it
            with trio.move_on_after(0.2):
                await c.fetch(1, 3.0)
            await bus.publish_batch([(subj, tag, None, tag.decode())])
            await trio.sleep(0.1)

        await late(b"fresh")
        [m] = await c.fetch(1, 1.0)  # handed out from the buffer, first delivery
        assert (m.data, m.num_delivered) == (b"fresh", 1)
        await c.ack([m])

        await late(b"stale")
        await trio.sleep(0.6)  # older than ack_wait / 2: not handed out, nak'ed instead
        got: list[Msg] = []
        with trio.fail_after(5):
            while not got:
                got = await c.fetch(1, 1.0)
        assert (got[0].data, got[0].num_delivered) == (b"stale", 2)
        await c.ack(got)


async def test_connection_keeps_reading_after_a_flush_timed_out(bus: Bus) -> None:
    """A flush that times out leaves nats-py's PONG future cancelled; the late PONG must not stop the
    connection from reading (with nats-py 2.16 unguarded, the publish below never gets its ack)."""
    import nats.errors

    async def flush_that_times_out() -> int:
        nc = bus._aio.nc
        assert nc is not None
        timeouts = 0
        for _ in range(5):
            try:
                await nc.flush(timeout=1e-9)  # type: ignore[arg-type]
            except nats.errors.TimeoutError:
                timeouts += 1
        if not timeouts:
            # on an idle machine the PONG can beat every 1 ns timeout: leave what a timed-out flush leaves,
            # a cancelled PONG future still queued, directly
            import asyncio

            for _ in range(5):
                fut = asyncio.get_running_loop().create_future()
                await nc._send_ping(fut)
                fut.cancel()
                timeouts += 1
        return timeouts

    timeouts = await bus._call(flush_that_times_out)
    assert timeouts >= 1  # the scenario happened: some PONG futures were cancelled before their PONG
    await trio.sleep(0.2)  # the late PONGs arrive
    res = await bus.publish_batch([(bus.subject(Kind.MT, "pong"), b"x", None, None)], timeout=3.0)
    assert isinstance(res[0], PubAck), res[0]


async def test_publish_batch_fails_bad_items_alone_and_acks_the_rest(bus: Bus) -> None:
    """The batch is written as one buffer of PUB/HPUB lines: an item nats-py would refuse (bad subject,
    payload over max_payload, bad header key) fails on its own and the others in the batch are stored."""
    subj = bus.subject(Kind.MT, "mixed")
    big = b"x" * (2 * 1024 * 1024)  # over nats-server's default max_payload (1 MiB)
    res = await bus.publish_batch(
        [
            (subj, b"a", None, "a"),
            (subj + " x", b"b", None, None),
            (subj, big, None, None),
            (subj, b"c", {"bad key": "v"}, None),
            (subj, b"d", {"x-h": " multi\r\nline "}, "d"),
        ]
    )
    assert isinstance(res[0], PubAck) and isinstance(res[4], PubAck), res
    assert [type(r) for r in res[1:4]] == [PublishError] * 3, res
    c = await bus.consumer(Kind.MT, "mixed")
    msgs = await _drain(c, 2)
    assert [m.data for m in msgs] == [b"a", b"d"]
    assert msgs[1].headers == {"Nats-Msg-Id": "d", "x-h": "multi  line"}
    assert msgs[0].msg_id == "a" and msgs[0].stream_seq == res[0].seq  # type: ignore[union-attr]
    await c.ack(msgs)


def test_wire_message_metadata_and_headers() -> None:
    from catalyst_smpp.bus.api import _parse_headers
    from catalyst_smpp.bus.jetstream import _encode_headers, _js_msg

    v1 = b"$JS.ACK.ns_MT.d1.2.17.9.1700000000123456789.4"
    m = _js_msg(b"ns.MT.op", v1, b"x", b"NATS/1.0\r\nA: b\r\n\r\n")
    assert (m.subject, m.stream_seq, m.consumer_seq) == ("ns.MT.op", 17, 9)
    assert (m.num_delivered, m.num_pending) == (2, 4)
    assert m.timestamp == pytest.approx(1700000000.123456789) and m.headers == {"A": "b"} and m.msg_id is None
    v2 = b"$JS.ACK.dom.acc.ns_MT.d1.1.5.6.1700000000000000000.0.tok"
    m = _js_msg(b"s", v2, b"", None)
    assert (m.stream_seq, m.consumer_seq, m.num_delivered, m.num_pending, m.headers) == (5, 6, 1, 0, None)
    status = {"Status": "404", "Description": "No Messages"}
    assert _parse_headers(b"NATS/1.0 404 No Messages\r\n\r\n") == status
    assert _encode_headers({"Nats-Msg-Id": "i", " ": "skipped"}) == b"NATS/1.0\r\nNats-Msg-Id: i\r\n\r\n"
    import nats.errors

    with pytest.raises(nats.errors.NotJSMessageError):
        _js_msg(b"s", b"not.a.js.reply", b"", None)


async def _silent_then_stored(nats_url: str, cfg: NatsConfig, store_after: float) -> tuple[list, float]:  # type: ignore[type-arg]
    """Publish one message while nothing stores its subject (a plain subscriber keeps the server from
    answering "no responders", as a stream leader that has just died says nothing); the streams are made
    ``store_after`` seconds later.  What the publish returned, and when."""
    async with Bus.connect(nats_url, cfg, name="test", ensure=False) as bus:
        subject = bus.subject(Kind.MO, "p")
        assert bus._aio.nc is not None
        await bus._call(bus._aio.nc.subscribe, subject)

        async def store_later() -> None:
            await trio.sleep(store_after)
            await bus._call(bus._aio.ensure_streams)

        async with trio.open_nursery() as n:
            n.start_soon(store_later)
            t0 = trio.current_time()
            res = await bus.publish_batch([(subject, b"x", None, "only-once")], timeout=3.0)
            took = trio.current_time() - t0
        stored = await bus.stream_info(Kind.MO)
        assert stored.messages == (1 if res[0].ok else 0)
        return res, took


async def test_an_unacked_publish_is_sent_again_and_stored_once(
    nats_url: str, nats_config: NatsConfig
) -> None:
    cfg = attrs.evolve(nats_config, publish_retry=0.5)
    [r], took = await _silent_then_stored(nats_url, cfg, store_after=0.2)
    assert isinstance(r, PubAck) and r.seq == 1, r
    assert 0.4 < took < 2.0, took  # the first resend (after 0.5 s) reached the stream, not the deadline


async def test_without_publish_retry_an_unacked_publish_waits_out_its_timeout(
    nats_url: str, nats_config: NatsConfig
) -> None:
    cfg = attrs.evolve(nats_config, publish_retry=0.0)
    [r], took = await _silent_then_stored(nats_url, cfg, store_after=0.2)
    assert isinstance(r, PublishError) and r.kind is PublishErrorKind.TIMEOUT, r
    assert took >= 2.9, took
