"""query_sm from the message log: smpplib / our client as the partner → SmppServer + AcceptHandler → real
JetStream (accept, events) and real Postgres (message log)."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import smpplib.smpp
import trio
import trio.testing

from catalyst_smpp.bus import Bus
from catalyst_smpp.gateway.events import EventPublisher, EventWriter, make_event
from catalyst_smpp.gateway.ids import IdGenerator, format_id, parse_id
from catalyst_smpp.gateway.query import LogRow, QueryHandler, answer_query, smpp_absolute_time
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.constants import MessageState as MS
from catalyst_smpp.store import Database, MessageLogRepo

from .helpers import operator, partner, partner_server, route, smpplib_client, snapshot


def _snap() -> Any:
    return snapshot(
        [partner("acme", "secret"), partner("beta", "pw", message_id_format="dec")],
        [operator("opA")],
        [route(1, None, "44", "opA")],
    )


def _submit(port: int) -> str:
    c = smpplib_client(port)
    try:
        c.bind_transceiver(system_id="acme", password="secret")
        c.send_message(source_addr="SENDER", destination_addr="447700900001", short_message=b"hello")
        r = c.read_pdu()
        assert r.status == 0
        c.unbind()
    finally:
        c.disconnect()
    return r.message_id.decode()


def _queries(port: int, system_id: str, password: str, ids: list[str]) -> list[tuple[int, Any]]:
    """query_sm each id with smpplib: (status, (message_id, final_date, message_state, error_code) | None)."""
    c = smpplib_client(port)
    out: list[tuple[int, Any]] = []
    try:
        c.bind_transceiver(system_id=system_id, password=password)
        for mid in ids:
            c.send_pdu(smpplib.smpp.make_pdu("query_sm", client=c, message_id=mid, source_addr="SENDER"))
            r = c.read_pdu()
            if r.status == 0:
                fd = r.final_date
                out.append(
                    (0, (r.message_id.decode(), fd.decode() if fd else "", r.message_state, r.error_code))
                )
            else:
                out.append((int(r.status), None))
        c.unbind()
    finally:
        c.disconnect()
    return out


async def _wait_logged(db: Database, message_id: str, event: str) -> None:
    with trio.fail_after(30):
        while True:
            rows = await db.run(lambda conn: MessageLogRepo(conn).for_message(message_id))
            if any(r.event == event for r in rows):
                return
            await trio.sleep(0.1)


async def test_query_enroute_delivered_and_privacy(bus: Bus, db: Database) -> None:
    events = EventPublisher(bus, node="test")
    writer = EventWriter(bus, db, fetch_timeout=0.2)
    async with trio.open_nursery() as n:
        await n.start(writer.run)
        async with partner_server(bus, _snap(), events=events) as ps:
            ps.accept.queries = QueryHandler(db, ps.partners.get)
            hex_id = await trio.to_thread.run_sync(_submit, ps.port)
            our_id = parse_id(hex_id, "hex")

            # at once: maybe not logged yet, young → ENROUTE either way
            [(st, resp)] = await trio.to_thread.run_sync(_queries, ps.port, "acme", "secret", [hex_id])
            assert st == 0 and resp == (hex_id, "", MS.ENROUTE, 0)

            # logged (accepted row) → ENROUTE from the log
            await _wait_logged(db, str(our_id), "accepted")
            [(st, resp)] = await trio.to_thread.run_sync(
                _queries, ps.port, "acme", "secret", [hex_id.upper()]
            )
            assert st == 0 and resp == (hex_id, "", MS.ENROUTE, 0)

            # the final receipt is logged → DELIVERED with its time as final_date
            done = dt.datetime(2025, 3, 4, 5, 6, 7, 890_000, tzinfo=dt.UTC)
            await db.write_events(
                [
                    make_event(str(our_id), "submitted", partner="acme", operator="opA"),
                    attrs_evolve(
                        make_event(str(our_id), "delivered", partner="acme", operator="opA",
                                   final_state="DELIVRD", error="000", operator_message_id="x1"),
                        event_at=done,
                    ),
                ]
            )  # fmt: skip
            got = await trio.to_thread.run_sync(
                _queries, ps.port, "acme", "secret", [hex_id, "not hex!", format_id(our_id + 1, "hex")]
            )
            assert got[0] == (0, (hex_id, "250304050607800+", MS.DELIVERED, 0))
            assert got[1] == (S.ESME_RINVMSGID, None)
            # an id of ours that is young and not (yet) in the log: ENROUTE (documented; reveals nothing)
            assert got[2] == (0, (format_id(our_id + 1, "hex"), "", MS.ENROUTE, 0))

            # another partner asking for acme's message (in its own, decimal, format): RQUERYFAIL
            other = await trio.to_thread.run_sync(
                _queries, ps.port, "beta", "pw", [str(our_id), hex_id + "z"]
            )
            assert other == [(S.ESME_RQUERYFAIL, None), (S.ESME_RINVMSGID, None)]
            assert ps.accept.queries.stats.errors == 0
        n.cancel_scope.cancel()


def attrs_evolve(ev: Any, **kw: Any) -> Any:
    import attrs

    return attrs.evolve(ev, **kw)


async def test_query_final_states_old_ids_and_batching(bus: Bus, db: Database) -> None:
    from catalyst_smpp.client import ClientConfig, SmppClient
    from catalyst_smpp.protocol.pdu import QuerySm

    now = time.time()
    old = IdGenerator(5, clock=lambda: now - 3600)
    young = IdGenerator(6)
    failed_id, undeliv_id, unlogged_old, expired_id = (old.next() for _ in range(4))
    beta_id = young.next()
    t = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    await db.write_events(
        [
            make_event(str(failed_id), "accepted", partner="acme"),
            make_event(str(failed_id), "failed", partner="acme", operator="opA", status=0x45,
                       final_state="REJECTD", error="operator answered 0x00000045"),
            make_event(str(undeliv_id), "accepted", partner="acme"),
            attrs_evolve(make_event(str(undeliv_id), "delivered", partner="acme", final_state="UNDELIV",
                                    error="034"), event_at=t),
            make_event(str(expired_id), "accepted", partner="acme"),
            make_event(str(expired_id), "delivered", partner="acme", final_state="EXPIRED", error="999"),
            make_event(str(beta_id), "accepted", partner="beta"),
        ]
    )  # fmt: skip
    async with partner_server(bus, _snap()) as ps:
        qh = ps.accept.queries = QueryHandler(db, ps.partners.get)
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        ids = [failed_id, undeliv_id, unlogged_old, expired_id, beta_id]
        async with trio.open_nursery() as n:
            await n.start(client.run)
            resps: dict[int, Any] = {}

            async def ask(i: int) -> None:
                resps[i] = await client.request(QuerySm(message_id=format_id(i, "hex")))

            async with trio.open_nursery() as q:  # concurrently
                for i in ids:
                    q.start_soon(ask, i)
            await client.aclose()
            n.cancel_scope.cancel()
    r = resps[failed_id]
    assert (r.command_status, r.message_state, r.error_code) == (0, MS.REJECTED, 0) and r.final_date
    r = resps[undeliv_id]
    assert (r.command_status, r.message_state, r.final_date, r.error_code) == (
        0, MS.UNDELIVERABLE, "250102030405000+", 34)  # fmt: skip
    r = resps[expired_id]
    assert (r.command_status, r.message_state, r.error_code) == (0, MS.EXPIRED, 0)  # err 999 > 1 octet
    assert resps[unlogged_old].command_status == S.ESME_RQUERYFAIL  # an hour old and not in the log
    assert resps[beta_id].command_status == S.ESME_RQUERYFAIL  # beta's message
    assert qh.stats.queries == 5 and 1 <= qh.stats.batches <= 5 and qh.stats.errors == 0


def test_answer_query_rules() -> None:
    now = time.time()
    gen = IdGenerator(1, clock=lambda: now)
    mid = gen.next()

    def row(event: str, partner: str = "acme", **kw: Any) -> LogRow:
        return LogRow(str(mid), event, dt.datetime.fromtimestamp(now, dt.UTC), partner, **kw)

    assert answer_query([], "acme", mid, now).message_state == MS.ENROUTE
    assert answer_query([], "acme", mid, now + 301).status == S.ESME_RQUERYFAIL
    assert answer_query([], "acme", mid, now - 61).status == S.ESME_RQUERYFAIL  # from the future
    acc = [row("accepted"), row("submitted")]
    assert answer_query(acc, "acme", mid, now + 3600).message_state == MS.ENROUTE
    assert answer_query(acc, "acme", mid, now + 4 * 86400).message_state == MS.UNKNOWN
    assert answer_query(acc, "beta", mid, now).status == S.ESME_RQUERYFAIL
    for stat, state in [("DELIVRD", MS.DELIVERED), ("ACCEPTD", MS.ACCEPTED), ("DELETED", MS.DELETED),
                        ("REJECTD", MS.REJECTED), ("weird", MS.UNKNOWN), (None, MS.UNKNOWN)]:  # fmt: skip
        a = answer_query([*acc, row("delivered", final_state=stat, error="7")], "acme", mid, now)
        assert (a.status, a.message_state, a.error_code) == (0, state, 7)
    a = answer_query([*acc, row("failed", status=8)], "acme", mid, now)
    assert (a.message_state, a.error_code) == (MS.UNDELIVERABLE, 0)
    assert (
        smpp_absolute_time(dt.datetime(2024, 12, 31, 23, 59, 58, 999_999, tzinfo=dt.UTC))
        == "241231235958900+"
    )


class _GatedDb:
    """A stand-in for Database.run that holds the first read until released (to see coalescing)."""

    def __init__(self, rows: list[LogRow]) -> None:
        self.rows = rows
        self.calls: list[list[str]] = []
        self.release = trio.Event()

    async def run(self, fn: Any, ids: list[str], timeout_ms: int) -> list[LogRow]:
        self.calls.append(sorted(ids))
        if len(self.calls) == 1:
            await self.release.wait()
        return [r for r in self.rows if r.message_id in ids]


async def test_concurrent_queries_share_one_read() -> None:
    now = time.time()
    at = dt.datetime.fromtimestamp(now, dt.UTC)
    db = _GatedDb([LogRow("1", "accepted", at, "acme"), LogRow("2", "accepted", at, "beta")])
    qh = QueryHandler(db, lambda s: None)
    got: dict[str, Any] = {}

    async def ask(mid: str) -> None:
        got[mid] = await qh.rows(mid)

    async with trio.open_nursery() as n:
        n.start_soon(ask, "0")
        await trio.testing.wait_all_tasks_blocked()
        for mid in ("1", "2", "3"):
            n.start_soon(ask, mid)
        await trio.testing.wait_all_tasks_blocked()
        db.release.set()
    assert db.calls == [["0"], ["1", "2", "3"]]  # the three waiting ones in one read
    assert got["0"] == [] and got["3"] == [] and [r.partner for r in got["1"] + got["2"]] == ["acme", "beta"]


async def test_leader_cancelled_hands_over() -> None:
    db = _GatedDb([])
    qh = QueryHandler(db, lambda s: None)
    got: list[Any] = []
    scope = trio.CancelScope()

    async def leader() -> None:
        with scope:
            await qh.rows("9")
        got.append("cancelled" if scope.cancelled_caught else "done")

    async def ask(mid: str) -> None:
        got.append(await qh.rows(mid))

    async with trio.open_nursery() as n:
        n.start_soon(leader)
        await trio.testing.wait_all_tasks_blocked()
        n.start_soon(ask, "10")
        await trio.testing.wait_all_tasks_blocked()
        scope.cancel()  # the leader goes in the middle of its read: "10" must still get an answer
    assert db.calls == [["9"], ["10", "9"]] and got == ["cancelled", []]


def test_a_cancelled_scheduled_message_reads_deleted() -> None:
    now = time.time()
    mid = IdGenerator(1, clock=lambda: now).next()
    at = dt.datetime.fromtimestamp(now + 5, dt.UTC)
    rows = [
        LogRow(str(mid), "accepted", dt.datetime.fromtimestamp(now, dt.UTC), "acme"),
        LogRow(str(mid), "cancelled", at, "acme", final_state="DELETED"),
    ]
    a = answer_query(rows, "acme", mid, now + 10)
    assert (a.status, a.message_state, a.final_date) == (0, MS.DELETED, smpp_absolute_time(at))
    assert answer_query(rows[:1], "acme", mid, now + 10).message_state == MS.ENROUTE  # still waiting
