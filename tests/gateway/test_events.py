"""Events: EventPublisher → JetStream EVENTS.<type> → EventWriter → Postgres message_log (real services)."""

from __future__ import annotations

import datetime as dt
import json

import trio

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.gateway.events import (
    ROW_FIELDS,
    EventPublisher,
    EventWriter,
    event_row,
    event_to_row,
    make_event,
    row_to_event,
    rows_from_bytes,
)
from catalyst_smpp.store import Database, MessageEvent, MessageLogRepo
from tests.gateway.test_event_durability import _delete_events_stream
from tests.services import unique_name


def test_event_row_round_trip() -> None:
    ev = MessageEvent(
        "123456789",
        "failed",
        dt.datetime(2024, 5, 1, 12, 0, 1, 5000, tzinfo=dt.UTC),
        partner="acme",
        operator="op1",
        source_addr="123",
        dest_addr="4477",
        parts=3,
        status=0x45,
        final_state="REJECTD",
        error="069",
        operator_message_id="0A1F",
        node="n1",
    )
    row = event_to_row(ev)
    assert row_to_event(row) == ev
    assert row_to_event(json.loads(json.dumps([row]))[0]) == ev  # as it travels
    # a row is exactly ROW_FIELDS: shorter or longer rows, objects and scalars are refused
    for bad in ([], list(row)[:3], list(row)[:-1], [*row, "more"], {"message_id": "1"}, "junk", None):
        try:
            row_to_event(bad)
        except ValueError:
            continue
        raise AssertionError(f"{bad!r} decoded")


async def test_stored_rows_reach_the_message_log(bus: Bus, db: Database) -> None:
    ids = [unique_name("m") for _ in range(30)]
    pub = EventPublisher(bus, node="node-a", max_rows=7)
    writer = EventWriter(bus, db, batch=11, fetch_timeout=0.2)
    rows = []
    for i, mid in enumerate(ids):
        rows.append(event_row(mid, "accepted", partner="acme", dest_addr=f"44{i}"))
        if i % 3 == 0:
            rows.append(
                event_to_row(make_event(mid, "submitted", operator="op1", operator_message_id=f"x{i}"))
            )
    assert await pub.store(rows) == []
    # stored when store returns: in the stream, 30 accepted rows in 5 messages of <= 7, 10 submitted in 2
    assert (await bus.stream_info(Kind.EVENTS)).messages == 7
    # the same rows again (a retry after a crash): the log's key keeps one of each
    assert await pub.store([*rows[:5], event_row(ids[0], "accepted", partner="acme")]) == []
    assert pub.stats.stored == 46 and pub.stats.unstored == 0 and pub.stats.publishes == 2
    async with trio.open_nursery() as n:
        await n.start(writer.run)

        def read(conn) -> dict[str, list[MessageEvent]]:  # type: ignore[no-untyped-def]
            return {m: MessageLogRepo(conn).for_message(m) for m in ids}

        with trio.fail_after(30):
            while True:
                got = await db.run(read)
                if sum(len(v) for v in got.values()) >= 40 and writer.stats.received >= 9:
                    break
                await trio.sleep(0.1)
        n.cancel_scope.cancel()
    assert [e.event for e in got[ids[3]]] == ["accepted", "submitted"]
    assert [e.event for e in got[ids[4]]] == ["accepted"]
    sub = got[ids[3]][1]
    assert sub.operator == "op1" and sub.operator_message_id == "x3" and sub.node == "node-a"
    assert got[ids[5]][0].dest_addr == "445" and got[ids[5]][0].partner == "acme"
    assert got[ids[5]][0].node == "node-a"  # an empty node is the publisher's
    assert sum(len(v) for v in got.values()) == 40
    # everything was acked: nothing left in the work queue
    c = await bus.consumer(Kind.EVENTS)
    with trio.fail_after(10):
        while (await c.info()).num_ack_pending or (await bus.stream_info(Kind.EVENTS)).messages:
            await trio.sleep(0.1)


async def test_store_retries_until_events_is_back_or_the_deadline(
    bus: Bus, nats_url: str, nats_config: NatsConfig
) -> None:
    pub = EventPublisher(bus, node="n", retry_delay=0.02, max_retry_delay=0.1)
    rows = [event_row(str(i), "accepted") for i in range(3)] + [event_row("0", "submitted")]
    await trio.to_thread.run_sync(_delete_events_stream, nats_url, nats_config)
    # a deadline: what is not stored by then comes back as indices (the caller must not answer for them)
    assert await pub.store(rows, until=trio.current_time() + 0.3) == [0, 1, 2, 3]
    assert pub.stats.unstored == 4 and pub.stats.stored == 0 and pub.stats.retries > 0
    # no deadline: retried until EVENTS is back
    done: list[list[int]] = []
    async with trio.open_nursery() as n:

        async def store() -> None:
            done.append(await pub.store(rows))

        n.start_soon(store)
        retries = pub.stats.retries
        with trio.fail_after(20):
            while pub.stats.retries < retries + 8:
                await trio.sleep(0.02)
        assert done == []
        await bus.ensure()
    assert done == [[]] and pub.stats.stored == 4
    assert (await bus.stream_info(Kind.EVENTS)).messages == 2  # one message per type


async def test_writer_terms_what_is_not_an_array_of_rows(bus: Bus, db: Database) -> None:
    # one form only: garbage and lone JSON objects (the shape of no event row) are terminated and
    # counted; the writer goes on to the rows published through EventPublisher.store
    mid = unique_name("m")
    other = unique_name("m")
    # a lone object with every field, event_at as ISO 8601 (the shape of no row; nodes once sent it)
    fields = dict(zip(ROW_FIELDS, event_row(other, "accepted"), strict=True))
    obj = json.dumps({**fields, "event_at": "2024-05-01T12:00:01+00:00"}).encode()
    subject = bus.subject(Kind.EVENTS, "accepted")
    res = await bus.publish_batch([(subject, b"garbage", None, None), (subject, obj, None, None)])
    assert all(r.ok for r in res)
    assert await EventPublisher(bus, node="n").store([event_row(mid, "accepted")]) == []
    writer = EventWriter(bus, db, fetch_timeout=0.2)
    async with trio.open_nursery() as n:
        await n.start(writer.run)
        with trio.fail_after(20):
            while writer.stats.written < 1:
                await trio.sleep(0.05)
        n.cancel_scope.cancel()
    assert writer.stats.poison == 2
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(mid))
    assert [r.event for r in rows] == ["accepted"]
    assert await db.run(lambda c: MessageLogRepo(c).for_message(other)) == []
    c = await bus.consumer(Kind.EVENTS)
    with trio.fail_after(10):  # the dropped ones are terminated, not left to come back
        while (await c.info()).num_ack_pending or (await bus.stream_info(Kind.EVENTS)).messages:
            await trio.sleep(0.1)


def test_rows_from_bytes_reads_rows_and_drops_the_rest_alone() -> None:
    # the writer hands rows (no MessageEvent per row) to the log; what it keeps is exactly what
    # row_to_event reads, and each row it refuses is dropped alone
    full = list(event_row("1", "delivered", partner="acme", operator="op1", source_addr="4477",
                          dest_addr="Cat", parts=2, status=5, final_state="UNDELIV", error="0\t3\\4",
                          operator_message_id="0A", node="n1", at=1714564801.005,
                          display_id="d1"))  # fmt: skip
    int_at = [*full[:2], 1714564801, *full[3:]]
    bad = [full[:13], full[:3], [*full, "a future field"], ["bad"], [1, *full[1:]], ["3", "", *full[2:]],
           ["4", "accepted", True, *full[3:]], ["5", "accepted", float("nan"), *full[3:]],
           ["6", "accepted", 1e300, *full[3:]], ["7", "accepted", "2024-05-01", *full[3:]],
           {"message_id": "8"}, "junk", None]  # fmt: skip
    rows, n_bad = rows_from_bytes(json.dumps([full, *bad, int_at]).encode())
    assert n_bad == len(bad)
    assert [list(r) for r in rows] == [full, int_at]
    assert [row_to_event(r) for r in rows] == [row_to_event(full), row_to_event(int_at)]
    assert rows_from_bytes(b"[]") == ([], 0)
    # not an array of rows: the whole payload counts as one dropped
    obj = json.dumps(dict(zip(ROW_FIELDS, full, strict=True))).encode()
    for payload in (b"[not json", b"", b'{"an": "object"}', obj, obj + b"\n" + obj, b"3"):
        assert rows_from_bytes(payload) == ([], 1), payload
