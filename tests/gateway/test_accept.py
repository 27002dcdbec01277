"""Accept: smpplib (a real third-party partner client) → SmppServer + AcceptHandler → the bus.

The accept rules on the in-memory bus (real clock: smpplib runs in a thread); JetStream's part is held
to the same contract in tests/bus/test_contract.py, and the flow and fault tests run on real NATS."""

from __future__ import annotations

from typing import Any

import attrs
import pytest
import smpplib.consts
import trio

from catalyst_smpp.bus import Kind, MessageBus
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.gateway.ids import parse_id
from catalyst_smpp.gateway.messages import MtMessage
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.tlv import Tag

from .helpers import operator, partner, partner_server, route, smpplib_client, snapshot


@pytest.fixture
def bus(memory_bus: MemoryBus) -> MessageBus:
    return memory_bus


UCS2 = "Привет ✓".encode("utf-16-be")
LONG = b"A" * 153 + b"B" * 20


def _snap(**pkw: Any) -> Any:
    return snapshot(
        [partner("acme", "secret", **pkw)],
        [operator("opA"), operator("opB"), operator("opC", enabled=False)],
        [route(1, None, "44", "opA", "opB"), route(2, "acme", "33", "opB"), route(3, None, "39", "opC")],
    )


async def _fetch_all(bus: MessageBus, op: str, n: int) -> list[MtMessage]:
    c = await bus.consumer(Kind.MT, op)
    out: list[Any] = []
    with trio.fail_after(20):
        while len(out) < n:
            out += await c.fetch(100, 1.0)
    await c.ack(out)
    assert len(out) == n
    extra = await c.fetch(10, 0.2)
    assert extra == []
    return [MtMessage.from_bytes(m.data) for m in out]


def _submits(port: int, sends: list[dict[str, Any]]) -> list[tuple[int, str]]:
    c = smpplib_client(port)
    try:
        c.bind_transceiver(system_id="acme", password="secret")
        sent = [c.send_message(**kw) for kw in sends]
        by_seq = {r.sequence: r for r in (c.read_pdu() for _ in sent)}  # answers may come in any order
        resps = [by_seq[p.sequence] for p in sent]
        out = [(int(r.status), (r.message_id or b"").decode() if r.status == 0 else "") for r in resps]
        c.unbind()
    finally:
        c.disconnect()
    return out


async def test_submit_published_then_answered_with_our_id(bus: MessageBus) -> None:
    async with partner_server(bus, _snap()) as ps:
        sends = [
            dict(
                source_addr="12345",
                destination_addr="447700900001",
                short_message=b"hello",
                registered_delivery=1,
            ),
            dict(
                source_addr="12345",
                destination_addr="447700900002",
                esm_class=smpplib.consts.SMPP_GSMFEAT_UDHI,
                short_message=bytes([5, 0, 3, 0x42, 2, 1]) + LONG[:153],
            ),
            dict(
                source_addr_ton=5,
                source_addr="Brand",
                dest_addr_ton=1,
                destination_addr="33612345678",
                data_coding=8,
                short_message=UCS2,
                validity_period="000001000000000R",
            ),
            dict(
                source_addr="1",
                destination_addr="447700900003",
                message_payload=LONG,
                sar_msg_ref_num=7,
                sar_total_segments=3,
                sar_segment_seqnum=2,
            ),
        ]
        answers = await trio.to_thread.run_sync(_submits, ps.port, sends)
        assert [a[0] for a in answers] == [0, 0, 0, 0]
        ids = [parse_id(a[1], "hex") for a in answers]
        assert all(a[1] == format(i, "x") for a, i in zip(answers, ids, strict=True))
        assert len(set(ids)) == 4 and ids == sorted(ids)
        on_a = await _fetch_all(bus, "opA", 3)
        on_b = await _fetch_all(bus, "opB", 1)
    by_id = {int(m.message_id): m for m in on_a + on_b}
    assert set(by_id) == set(ids)
    m0, m1, m2, m3 = (by_id[i] for i in ids)
    assert (m0.partner, m0.source.addr, m0.dest.addr, m0.payload, m0.registered_delivery) == (
        "acme",
        "12345",
        "447700900001",
        b"hello",
        1,
    )
    assert m0.targets == ("opA", "opB") and m0.partner_dc0 == "gsm7" and (m0.part, m0.parts) == (1, 1)
    assert (
        m1.esm_class & 0x40
        and m1.payload[:6] == bytes([5, 0, 3, 0x42, 2, 1])
        and (m1.part, m1.parts) == (1, 2)
    )
    assert m2.targets == ("opB",) and m2.data_coding == 8 and m2.payload == UCS2
    assert (m2.source.ton, m2.source.addr, m2.dest.ton) == (5, "Brand", 1)
    assert m2.validity_period == "000001000000000R"
    assert m3.payload == LONG and (m3.part, m3.parts) == (2, 3)
    assert (int(Tag.sar_msg_ref_num), (7).to_bytes(2, "big")) in m3.tlvs
    assert all(int(Tag.message_payload) != t for t, _ in m3.tlvs)
    assert ps.accept.stats.accepted == 4


async def test_refusals(bus: MessageBus) -> None:
    async with partner_server(bus, _snap(message_id_format="dec")) as ps:
        sends = [
            dict(source_addr="1", destination_addr="4912345", short_message=b"no route"),
            dict(source_addr="1", destination_addr="3912345", short_message=b"only a disabled operator"),
            dict(source_addr="1", destination_addr="", short_message=b"no destination"),
            dict(source_addr="1", destination_addr="4412345", data_coding=8, short_message=b"odd"),
            dict(
                source_addr="1", destination_addr="4412345", data_coding=0x80, short_message=b"reserved dcs"
            ),
            dict(source_addr="1", destination_addr="4412345", short_message=b"ok", validity_period="garbage"),
            dict(source_addr="1", destination_addr="4412345", short_message=b"fine"),
        ]
        answers = await trio.to_thread.run_sync(_submits, ps.port, sends)
        assert [a[0] for a in answers] == [
            S.ESME_RINVDSTADR,
            S.ESME_RINVDSTADR,
            S.ESME_RINVDSTADR,
            S.ESME_RINVMSGLEN,
            S.ESME_RINVDCS,
            S.ESME_RINVEXPIRY,
            0,
        ]
        assert answers[-1][1].isdigit()  # dec format
        got = await _fetch_all(bus, "opA", 1)
        assert got[0].message_id == answers[-1][1] and got[0].payload == b"fine"
        assert ps.accept.stats.rejected == 5  # the malformed validity_period is refused by the codec already


async def test_field_values_that_mean_nothing_are_refused_with_the_fields_status(bus: MessageBus) -> None:
    """smpplib sends what reads fine on the wire but is no priority, replace flag or time."""
    from catalyst_smpp.client import ClientConfig, SmppClient
    from catalyst_smpp.protocol.pdu import ReplaceSm, SmeDestination, SubmitMulti

    base = dict(source_addr="1", destination_addr="4412345", short_message=b"x")
    cases = [
        (dict(priority_flag=4), S.ESME_RINVPRTFLG),
        (dict(replace_if_present_flag=2), S.ESME_RINVREPFLAG),
        (dict(schedule_delivery_time="261301120000000+"), S.ESME_RINVSCHED),  # month 13
        (dict(schedule_delivery_time="260101250000000+"), S.ESME_RINVSCHED),  # hour 25
        (dict(validity_period="260132120000000+"), S.ESME_RINVEXPIRY),  # day 32
        (dict(validity_period="260230120000000-"), S.ESME_RINVEXPIRY),  # 30 February
        (dict(validity_period="260101120000049+"), S.ESME_RINVEXPIRY),  # 49 quarter hours
        (dict(validity_period="000000240000010R"), S.ESME_RINVEXPIRY),  # relative with tenths
        (dict(priority_flag=3, replace_if_present_flag=1, validity_period="000002000000000R"), 0),
        (dict(schedule_delivery_time="260315093000004-"), 0),
    ]
    async with partner_server(bus, _snap()) as ps:
        answers = await trio.to_thread.run_sync(_submits, ps.port, [{**base, **kw} for kw, _ in cases])
        assert [a[0] for a in answers] == [status for _, status in cases]
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            multi = await client.request(
                SubmitMulti(
                    source_addr="1",
                    short_message=b"m",
                    priority_flag=7,
                    dest_address=(SmeDestination(1, 1, "4471"), SmeDestination(1, 1, "3373")),
                )
            )
            replace = [
                (await client.request(ReplaceSm(message_id="ff", source_addr="1", **kw))).command_status
                for kw in (
                    dict(schedule_delivery_time="261301120000000+"),
                    dict(validity_period="001300000000100R"),  # a period with tenths
                    dict(validity_period="260101120000000+"),
                )
            ]
            await client.aclose()
        assert multi.command_status == S.ESME_RINVPRTFLG
        assert replace == [S.ESME_RINVSCHED, S.ESME_RINVEXPIRY, S.ESME_RREPLACEFAIL]
        await _fetch_all(bus, "opA", 2)  # only the two good submits were stored (it checks the count)
        assert ps.accept.stats.rejected == 8 + 2  # the submit_multi counts once per destination


def _queue_full(port: int) -> list[int]:
    c = smpplib_client(port)
    try:
        c.bind_transmitter(system_id="acme", password="secret")
        statuses = []
        for i in range(4):
            c.send_message(source_addr="1", destination_addr="4412345", short_message=b"m%d" % i)
            statuses.append(int(c.read_pdu().status))
        c.unbind()
    finally:
        c.disconnect()
    return statuses


async def test_queue_full_answers_msgqful() -> None:
    base = NatsConfig()
    mt = attrs.evolve(base.streams.mt, max_msgs_per_subject=2, discard="new")
    bus = MemoryBus(attrs.evolve(base, streams=attrs.evolve(base.streams, mt=mt)))
    async with partner_server(bus, _snap()) as ps:
        statuses = await trio.to_thread.run_sync(_queue_full, ps.port)
        assert statuses == [0, 0, S.ESME_RMSGQFUL, S.ESME_RMSGQFUL]
        info = await bus.stream_info(Kind.MT)
        assert info.messages == 2
        assert ps.accept.stats.failed == 2


def _smpplib_query(port: int) -> int:
    c = smpplib_client(port)
    try:
        c.bind_transceiver(system_id="acme", password="secret")
        c.send_pdu(smpplib.smpp.make_pdu("query_sm", client=c, message_id="ff", source_addr="1"))
        status = int(c.read_pdu().status)
        c.unbind()
    finally:
        c.disconnect()
    return status


async def test_query_cancel_replace_answered(bus: MessageBus) -> None:
    from catalyst_smpp.client import ClientConfig, SmppClient
    from catalyst_smpp.protocol.pdu import CancelSm, QuerySm, ReplaceSm

    async with partner_server(bus, _snap()) as ps:
        assert await trio.to_thread.run_sync(_smpplib_query, ps.port) == S.ESME_RQUERYFAIL
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            out = [
                (await client.request(pdu)).command_status
                for pdu in (
                    QuerySm(message_id="ff", source_addr="1"),
                    QuerySm(message_id="not-hex!"),
                    CancelSm(message_id="ff", source_addr="1", destination_addr="44"),
                    ReplaceSm(message_id="ff", source_addr="1", short_message=b"x"),
                )
            ]
            await client.aclose()
    assert out == [S.ESME_RQUERYFAIL, S.ESME_RINVMSGID, S.ESME_RCANCELFAIL, S.ESME_RREPLACEFAIL]


async def test_submit_multi_and_data_sm_with_our_client(bus: MessageBus) -> None:
    from catalyst_smpp.client import ClientConfig, SmppClient
    from catalyst_smpp.protocol.pdu import DataSm, SmeDestination, SubmitMulti
    from catalyst_smpp.protocol.tlv import Tlv

    async with partner_server(bus, _snap()) as ps:
        client = SmppClient(ClientConfig(host="127.0.0.1", port=ps.port, system_id="acme", password="secret"))
        async with trio.open_nursery() as n:
            await n.start(client.run)
            r = await client.request(
                SubmitMulti(
                    source_addr="1",
                    short_message=b"multi",
                    dest_address=(
                        SmeDestination(1, 1, "4471"),
                        SmeDestination(1, 1, "4972"),
                        SmeDestination(1, 1, "3373"),
                    ),
                )
            )
            assert r.command_status == 0
            assert [(u.destination_addr, u.error_status_code) for u in r.unsuccess_sme] == [
                ("4972", S.ESME_RINVDSTADR)
            ]
            d = await client.request(
                DataSm(
                    source_addr="1",
                    destination_addr="4474",
                    tlvs=(Tlv.make(Tag.message_payload, b"data sm"),),
                )
            )
            assert d.command_status == 0
            await client.aclose()
        on_a = await _fetch_all(bus, "opA", 2)
        on_b = await _fetch_all(bus, "opB", 1)
    assert {m.dest.addr: m.payload for m in on_a} == {"4471": b"multi", "4474": b"data sm"}
    assert on_b[0].dest.addr == "3373"
    first = parse_id(r.message_id, "hex")
    assert str(first) == next(m.message_id for m in on_a if m.dest.addr == "4471")
    # each destination its own id, all shown to the partner as the one id of the response
    multi = [m for m in [*on_a, *on_b] if m.payload == b"multi"]
    assert len({m.message_id for m in multi}) == 2 and {m.display_id for m in multi} == {str(first)}
    data_sm = next(m for m in on_a if m.dest.addr == "4474")
    assert data_sm.display_id == data_sm.message_id
