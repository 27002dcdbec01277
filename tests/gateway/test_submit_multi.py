"""submit_multi: one id of ours per destination, one id shown to the partner (``display_id``) -- in the KV
mapping (compatible with older readers), in the receipts, in the message log and query_sm."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import attrs
import trio

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.gateway.events import ROW_FIELDS, event_row, make_event, row_to_event, rows_from_bytes
from catalyst_smpp.gateway.ids import IdGenerator, format_id
from catalyst_smpp.gateway.mappings import IdMapping
from catalyst_smpp.gateway.messages import DlrMessage
from catalyst_smpp.gateway.query import LogRow, QueryHandler, _by_query, answer_query
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.constants import MessageState as MS
from catalyst_smpp.protocol.pdu import SmeDestination, SubmitMulti
from catalyst_smpp.sim import SimConfig, open_simulator
from catalyst_smpp.store import Database, MessageLogRepo

from .helpers import operator, partner, partner_server, route, snapshot
from .test_connector import PARTNER, collect, make_operator, mt, publish_mt, running, wait_for

# --------------------------------------------------------------------------- the KV value


def test_id_mapping_keeps_display_id() -> None:
    plain = IdMapping("7212345678901234567", "acme", 3, 1, 2)
    assert plain.display_id == plain.message_id
    assert IdMapping.from_bytes(plain.to_bytes()) == plain
    for shown in ("7212345678901234500", "1", "not-decimal"):
        for flags in (0, 1, 2, 3, 0x1F, 0xFF):
            m = IdMapping("7212345678901234567", "acme", flags, 2, 3, shown)
            assert IdMapping.from_bytes(m.to_bytes()) == m


# --------------------------------------------------------------------------- accept


def _snap() -> Any:
    return snapshot(
        [partner("acme", "secret", message_id_format="dec")],
        [operator("opA"), operator("opB")],
        [route(1, None, "44", "opA"), route(2, None, "33", "opB")],
    )


async def test_submit_multi_shares_one_id_across_its_destinations(bus: Bus) -> None:
    from catalyst_smpp.client import ClientConfig, SmppClient

    rows: list[Any] = []
    async with partner_server(bus, _snap()) as ps:
        ps.accept.events = _Rows(rows)
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            r = await client.request(
                SubmitMulti(
                    source_addr="1",
                    short_message=b"to three",
                    dest_address=(
                        SmeDestination(1, 1, "4901"),  # no route: refused before an id is made
                        SmeDestination(1, 1, "4471"),
                        SmeDestination(1, 1, "3372"),
                        SmeDestination(1, 1, "4473"),
                    ),
                )
            )
            single = await client.request(
                SubmitMulti(
                    source_addr="1", short_message=b"one", dest_address=(SmeDestination(1, 1, "4474"),)
                )
            )
            await client.aclose()
        from .test_accept import _fetch_all

        on_a = await _fetch_all(bus, "opA", 3)
        on_b = await _fetch_all(bus, "opB", 1)
    assert r.command_status == 0 and [u.destination_addr for u in r.unsuccess_sme] == ["4901"]
    multi = {m.dest.addr: m for m in [*on_a, *on_b] if m.dest.addr != "4474"}
    assert sorted(multi) == ["3372", "4471", "4473"]
    # one id of ours each (JetStream msg_id, KV, log), one id shown: the first destination's, in the response
    assert len({m.message_id for m in multi.values()}) == 3
    assert {m.display_id for m in multi.values()} == {multi["4471"].message_id} == {r.message_id}
    one = next(m for m in on_a if m.dest.addr == "4474")
    assert one.display_id == one.message_id == single.message_id
    # the accepted rows of a submit_multi carry the shown id (the first's too), so the log finds them all
    accepted = {row[0]: row for row in rows if row[1] == "accepted"}
    assert {accepted[m.message_id][13] for m in multi.values()} == {r.message_id}
    assert accepted[one.message_id][13] == one.message_id  # a submit_multi of one destination too


@attrs.define
class _Rows:
    rows: list[Any]

    async def store(self, rows: Any, *, until: float | None = None) -> list[int]:
        self.rows.extend(rows)
        return []

    async def store_after(self, first: Any, rows: Any, *, timeout: Any = None, bus: Any) -> Any:
        """As EventPublisher.store_after: the rows only if every record of ``first`` is stored."""
        results = await bus.publish_batch(first, timeout)
        if not all(r.ok for r in results):
            return results, None
        self.rows.extend(rows)
        return results, []


# --------------------------------------------------------------------------- connector, receipts


async def test_each_destination_receipt_shows_the_submit_multi_id(bus: Bus) -> None:
    async with open_simulator(SimConfig()) as sim:
        op = make_operator(sim.port, submit_id_format="hex", receipt_id_format="hex")
        first = mt(op.name, "multi", dest="447700900001")
        msgs = [first] + [
            attrs.evolve(mt(op.name, "multi", dest=f"44770090000{k}"), display_id=first.message_id)
            for k in (2, 3)
        ]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            raw = await collect(bus, Kind.DLR, PARTNER, 3)
            await wait_for(lambda: conn.inbound.stats.published == 3)
            # the KV mappings carry it too (a receipt on another node or after a restart shows it as well)
            assert sim.stats.receipts_sent == 3
        dlrs = [DlrMessage.from_bytes(d) for d in raw]
    # three receipts (their msg_ids, "dlr:<our id>:...", differ: none de-duplicated), one id shown
    assert sorted(d.message_id for d in dlrs) == sorted(m.message_id for m in msgs)
    assert {d.display_id for d in dlrs} == {first.message_id}
    assert sorted(d.dest.addr for d in dlrs) == ["447700900001", "447700900002", "447700900003"]


async def test_failure_receipt_of_the_connector_shows_it(bus: Bus) -> None:
    status = int(S.ESME_RINVDSTADR)
    async with open_simulator(SimConfig(receipts=False, status_mix=((status, 100.0),))) as sim:
        op = make_operator(sim.port)
        m = attrs.evolve(mt(op.name, "refused"), display_id="12345")
        async with running(bus, op):
            await publish_mt(bus, [m])
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
    d = DlrMessage.from_bytes(raw[0])
    assert (d.message_id, d.display_id, d.state) == (m.message_id, "12345", "REJECTD")


# --------------------------------------------------------------------------- event rows


def test_event_rows_carry_display_id() -> None:
    assert "display_id" in ROW_FIELDS
    row = event_row("10", "accepted", partner="acme", at=1714564801.5, display_id="9")
    assert row_to_event(row).display_id == "9"
    plain = event_row("11", "accepted", partner="acme", at=1714564801.5)
    rows, bad = rows_from_bytes(json.dumps([row, plain]).encode())
    assert bad == 0 and [row_to_event(r).display_id for r in rows] == ["9", None]


# --------------------------------------------------------------------------- query_sm


def _row(mid: str, event: str, state: str | None = None, *, display: str | None = None, **kw: Any) -> LogRow:
    at = kw.pop("at", dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC))
    return LogRow(mid, event, at, kw.pop("partner", "acme"), state, kw.pop("error", None), None, display)


def test_query_answer_over_the_destinations() -> None:
    our = IdGenerator(3).next()
    now = time.time()
    x, b, c = str(our), str(our + 1), str(our + 2)
    t1 = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    t2 = dt.datetime(2025, 1, 2, 3, 9, 0, tzinfo=dt.UTC)

    def ask(rows: list[LogRow]) -> Any:
        return answer_query(rows, "acme", our, now)

    acc = [_row(x, "accepted", display=x), _row(b, "accepted", display=x), _row(c, "accepted", display=x)]
    # nothing final yet → ENROUTE; one destination still pending → ENROUTE (most pending), no final_date
    assert ask(acc).message_state == MS.ENROUTE
    some = [*acc, _row(x, "delivered", "UNDELIV", error="034", at=t1), _row(b, "delivered", "DELIVRD")]
    a = ask(some)
    assert (a.status, a.message_state, a.final_date) == (0, MS.ENROUTE, "")
    # all final → the worst state, its error code, the latest final date
    done = [*some, _row(c, "delivered", "DELIVRD", at=t2)]
    a = ask(done)
    assert (a.message_state, a.error_code, a.final_date) == (MS.UNDELIVERABLE, 34, "250102030900000+")
    allgood = [*acc, *(_row(m, "delivered", "DELIVRD", at=t1) for m in (x, b, c))]
    assert ask(allgood).message_state == MS.DELIVERED
    failed = [*allgood[:-1], _row(c, "failed", "REJECTD", at=t1)]
    assert ask(failed).message_state == MS.REJECTED
    # the first destination never stored: the others answer
    assert ask([r for r in done if r.message_id != x]).message_state == MS.DELIVERED
    # another partner's rows among them: refused
    assert ask([*done, _row(c, "delivered", "DELIVRD", partner="beta")]).status == S.ESME_RQUERYFAIL


def test_rows_are_grouped_under_the_queried_id() -> None:
    x, b, y = "100", "101", "200"
    rows = [
        _row(x, "accepted", display=x),
        _row(x, "delivered", "DELIVRD"),
        _row(b, "accepted", display=x),
        _row(b, "delivered", "UNDELIV"),  # an older connector node: no display_id on this row
        _row(y, "accepted"),
    ]
    got = _by_query(rows, {x, y})
    assert sorted((r.message_id, r.event) for r in got[x]) == [
        (x, "accepted"), (x, "delivered"), (b, "accepted"), (b, "delivered")]  # fmt: skip
    assert [r.message_id for r in got[y]] == [y]
    # asking for a destination's own id (which the partner never saw) gives that destination only
    assert {r.message_id for r in _by_query(rows, {b})[b]} == {b}


async def test_query_reads_every_destination_from_the_log(db: Database) -> None:
    gen = IdGenerator(7)
    x, b, c, lone = (str(gen.next()) for _ in range(4))
    t = dt.datetime(2025, 1, 2, 3, 4, 5, tzinfo=dt.UTC)
    await db.write_events(
        [
            make_event(x, "accepted", partner="acme", dest_addr="4471", display_id=x),
            make_event(b, "accepted", partner="acme", dest_addr="4472", display_id=x),
            make_event(c, "accepted", partner="acme", dest_addr="4473", display_id=x),
            make_event(lone, "accepted", partner="acme"),
            attrs.evolve(make_event(x, "delivered", partner="acme", final_state="DELIVRD"), event_at=t),
            make_event(b, "delivered", partner="acme", final_state="EXPIRED", error="7", display_id=x),
            make_event(c, "delivered", partner="acme", final_state="DELIVRD"),
        ]
    )
    logged = await db.run(lambda conn: MessageLogRepo(conn).for_message(b))
    assert {e.display_id for e in logged} == {x}
    qh = QueryHandler(db, lambda s: partner("acme", "secret", message_id_format="dec"))
    rows_x, rows_lone = await _both(qh, x, lone)
    assert sorted({r.message_id for r in rows_x}) == sorted([x, b, c]) and len(rows_x) == 6
    assert [r.message_id for r in rows_lone] == [lone]
    a = answer_query(rows_x, "acme", int(x), time.time())
    assert (a.status, a.message_state, a.error_code) == (0, MS.EXPIRED, 7)
    # through the handler: the response names the submit_multi id
    resp = await qh._answer(qh.partners("acme"), _QuerySm(x), int(x))
    assert resp.message_id == format_id(int(x), "dec") and resp.message_state == MS.EXPIRED


async def _both(qh: QueryHandler, a: str, b: str) -> tuple[list[LogRow], list[LogRow]]:
    got: dict[str, list[LogRow]] = {}

    async def one(mid: str) -> None:
        got[mid] = await qh.rows(mid)

    async with trio.open_nursery() as n:
        n.start_soon(one, a)
        n.start_soon(one, b)
    return got[a], got[b]


def _QuerySm(mid: str) -> Any:
    from catalyst_smpp.protocol.pdu import QuerySm

    return QuerySm(message_id=mid)
