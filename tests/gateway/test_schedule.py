"""The scheduler's parts on a real Postgres and the in-memory bus: time fields, release in batches by two
schedulers at once (each message published once), the sweep that stores a lost ``cancelled`` row, purge."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import trio
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.bus import Kind
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.gateway.events import EventPublisher
from catalyst_smpp.gateway.messages import MT, mt_record
from catalyst_smpp.gateway.schedule import Entry, Scheduler, smpp_utc, time_at, when
from catalyst_smpp.store import Database

BASE = dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.UTC).timestamp()


def test_time_at() -> None:
    assert time_at("", BASE) is None
    # months by the calendar, the day clamped to the month's last (2024 is a leap year)
    assert time_at("000100000000000R", BASE) == dt.datetime(2024, 2, 29, 12, 0, tzinfo=dt.UTC).timestamp()
    assert time_at("010000000000000R", BASE) == dt.datetime(2025, 1, 31, 12, 0, tzinfo=dt.UTC).timestamp()
    # hours above 23 are a period of that many hours
    assert time_at("000000480000000R", BASE) == BASE + 48 * 3600
    # absolute with an offset: 04 quarter hours ahead of UTC
    assert time_at("240131130000004+", BASE) == dt.datetime(2024, 1, 31, 12, 0, tzinfo=dt.UTC).timestamp()


@given(st.floats(min_value=946684800.0, max_value=4102444799.0))
def test_smpp_utc_round_trips_to_the_tenth(t: float) -> None:
    back = time_at(smpp_utc(t), 0.0)
    assert back is not None
    assert -1e-6 <= t - back < 0.1 + 1e-6  # fromtimestamp rounds to the microsecond


def test_when() -> None:
    assert when("", "000001000000000R", BASE) == (None, "", "000001000000000R")
    past = smpp_utc(BASE - 10)
    assert when(past, "000000000100000R", BASE) == (None, past, "000000000100000R")
    due, sched, validity = when("000000000010000R", "000000010000000R", BASE)
    # scheduled: the schedule is done here, the validity becomes the instant it named from the acceptance
    assert due == (BASE + 10, BASE + 3600) and sched == "" and validity == smpp_utc(BASE + 3600)
    assert when("000000000010000R", "", BASE) == ((BASE + 10, None), "", "")


def _entry(bus: MemoryBus, i: int, due: float, expires: float | None = None) -> Entry:
    mid = str(10_000 + i)
    record = mt_record(
        message_id=mid,
        partner="acme",
        source=(1, 1, "123"),
        dest=(1, 1, f"4477009{i:05d}"),
        targets=("opA",),
        payload=f"m{i}".encode(),
        data_coding=0,
        esm_class=0,
        registered_delivery=1,
        accepted_at=BASE,
    )
    return Entry(
        mid, "acme", mid, "123", f"4477009{i:05d}", "", due, expires, bus.subject(Kind.MT, "opA"), record
    )


async def _drain(bus: MemoryBus, kind: Kind, name: str | None = None) -> list[Any]:
    c = await bus.consumer(kind, name)
    out: list[Any] = []
    while msgs := await c.fetch(1000, 0.05):
        out.extend(msgs)
        await c.ack(msgs)
    return out


async def test_two_schedulers_release_each_due_message_once(db: Database, memory_bus: MemoryBus) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    a = Scheduler(db, memory_bus, events=None, partners=lambda _p: None, batch=7)
    b = Scheduler(db, memory_bus, events=None, partners=lambda _p: None, batch=7)
    await db.run(lambda c: c.execute("DELETE FROM scheduled_messages"))
    assert await a.store([_entry(memory_bus, i, now - 1 if i < 50 else now + 3600) for i in range(60)])
    async with trio.open_nursery() as n:
        n.start_soon(a.tick)
        n.start_soon(b.tick)
    got = await _drain(memory_bus, Kind.MT, "opA")
    ids = sorted(MT.decode(m.data).message_id for m in got)
    assert ids == sorted(str(10_000 + i) for i in range(50))  # each due one once, nothing early
    assert a.stats.released + b.stats.released == 50
    states = dict(
        await db.run(
            lambda c: c.execute("SELECT state, count(*) FROM scheduled_messages GROUP BY 1").fetchall()
        )
    )
    assert states == {"sent": 50, "waiting": 10}


async def test_a_cancel_that_died_before_its_row_is_logged_by_the_sweep(
    db: Database, memory_bus: MemoryBus
) -> None:
    now = dt.datetime.now(dt.UTC).timestamp()
    s = Scheduler(
        db,
        memory_bus,
        events=EventPublisher(memory_bus, node="n"),
        partners=lambda _p: None,
        relog_after=30.0,
    )
    await db.run(lambda c: c.execute("DELETE FROM scheduled_messages"))
    assert await s.store([_entry(memory_bus, 1, now + 3600), _entry(memory_bus, 2, now + 3600)])
    # entry 1: cancelled, its row never stored (the node died), 40 s ago
    await db.run(
        lambda c: c.execute(
            "UPDATE scheduled_messages SET state = 'cancelled', logged = false,"
            " updated_at = now() - interval '40 seconds' WHERE message_id = '10001'"
        )
    )
    assert await s.tick() == 0
    rows = [r for m in await _drain(memory_bus, Kind.EVENTS) for r in json.loads(m.data)]
    assert [(r[0], r[1]) for r in rows] == [("10001", "cancelled")]
    logged = await db.run(
        lambda c: c.execute("SELECT logged FROM scheduled_messages WHERE message_id = '10001'").fetchone()
    )
    assert logged == (True,)
    # the normal path: cancelled and logged at once; a second cancel finds nothing
    assert await s.cancel("acme", "10002")
    assert not await s.cancel("acme", "10002")
    assert not await s.cancel("other", "10002")
    rows = [r for m in await _drain(memory_bus, Kind.EVENTS) for r in json.loads(m.data)]
    assert [(r[0], r[1]) for r in rows] == [("10002", "cancelled")]
