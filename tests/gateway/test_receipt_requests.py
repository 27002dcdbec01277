"""Which parts of a long message ask the operator for a receipt, and for what (``Operator.receipt_parts`` /
``receipt_request``), while the partner still gets exactly one receipt per message: the connector and its
inbound handler against the SMSC simulator, on real JetStream."""

from __future__ import annotations

import attrs
import pytest
import trio

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.gateway.connector import build_submits, mapping_flags
from catalyst_smpp.gateway.inbound import PART_DECIDES, PART_UNASKED, InboundHandler
from catalyst_smpp.gateway.mappings import IdMapping, part_key
from catalyst_smpp.gateway.messages import DlrMessage
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.protocol.pdu import DeliverSm
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.sim import SimConfig, open_simulator
from tests.gateway.test_connector import (
    LONG,
    PARTNER,
    StubRouter,
    collect,
    make_operator,
    mt,
    publish_mt,
    running,
    wait_for,
)

THREE_PARTS = "Long messages are split in parts, each part asks for a receipt or not. " * 5  # 355 septets


def test_parts_ask_per_the_operator_settings() -> None:
    op = make_operator(1)
    three = mt(op.name, THREE_PARTS, reg=0x11)  # final receipt + intermediate notification
    assert [p.registered_delivery for p in build_submits(three, op, 1)] == [0x11, 0x11, 0x11]
    last = make_operator(1, receipt_parts="last")
    # the parts before the last ask for nothing: no receipt, no intermediate notification
    assert [p.registered_delivery for p in build_submits(three, last, 1)] == [0x00, 0x00, 0x11]
    # a message of one part asks as before, whatever receipt_parts says
    assert [p.registered_delivery for p in build_submits(mt(op.name, "hi", reg=0), last, 1)] == [1]
    assert [p.registered_delivery for p in build_submits(mt(op.name, "hi", reg=0), op, 1)] == [1]
    partner = make_operator(1, receipt_request="as_partner")
    for reg, asked in ((0, 0), (1, 1), (2, 2), (3, 1), (0x12, 0x12)):
        assert [p.registered_delivery for p in build_submits(mt(op.name, LONG, reg=reg), partner, 1)] == [
            asked,
            asked,
        ]
    both = make_operator(1, receipt_parts="last", receipt_request="as_partner")
    assert [p.registered_delivery for p in build_submits(mt(op.name, LONG, reg=2), both, 1)] == [0, 2]
    # the KV mapping keeps the partner's wish and says which part decides
    assert [mapping_flags(0xE2, p, 3, True) for p in (1, 2, 3)] == [
        0x02 | PART_UNASKED,
        0x02 | PART_UNASKED,
        0x02 | PART_DECIDES,  # the partner's reserved bits 5-7 are not kept: they would read as these
    ]
    assert mapping_flags(1, 1, 1, True) == 1 and mapping_flags(1, 2, 3, False) == 1


MIXED = [*(f"short {i}" for i in range(4)), LONG, LONG + "!", THREE_PARTS]
"""A mixed load: four messages of one part, two of two parts, one of three (11 parts)."""


@pytest.mark.parametrize(("receipt_parts", "asked"), [("all", 11), ("last", 7)])
@pytest.mark.parametrize(
    ("sim_state", "state"), [(MessageState.DELIVERED, "DELIVRD"), (MessageState.UNDELIVERABLE, "UNDELIV")]
)
async def test_one_receipt_per_message_whichever_parts_ask(
    bus: Bus, receipt_parts: str, asked: int, sim_state: MessageState, state: str
) -> None:
    async with open_simulator(SimConfig(receipt_mix=((sim_state, 100.0),))) as sim:
        op = make_operator(sim.port, receipt_parts=receipt_parts)
        msgs = [mt(op.name, text) for text in MIXED]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            raw = await collect(bus, Kind.DLR, PARTNER, len(msgs))
            await wait_for(lambda: conn.inbound.stats.receipts == sim.stats.receipts_sent == asked)
            await trio.sleep(0.2)  # a second receipt for a message would be published by now
            assert (await bus.stream_info(Kind.DLR)).messages == 0  # nothing beyond the one per message
        assert sim.stats.accepted == 11
        dlrs = {d.message_id: d for d in map(DlrMessage.from_bytes, raw)}
        assert sorted(dlrs) == sorted(m.message_id for m in msgs)
        assert {d.state for d in dlrs.values()} == {state}
        by_text = {a.text: a for a in sim.assembled()}
        parts = {m.message_id: len(by_text[text].parts) for m, text in zip(msgs, MIXED, strict=True)}
        assert sorted(parts.values()) == [1, 1, 1, 1, 2, 2, 3]
        for mid, d in dlrs.items():
            assert d.parts == parts[mid]
            # a failure is reported with the part that failed (every part fails here: the first to be
            # processed); otherwise, and always when only the last part asked, with the last part
            if receipt_parts == "last" or state == "DELIVRD":
                assert d.part == parts[mid]
        if receipt_parts == "last":
            # the SMSC was asked on the last part only, and no part state was kept or waited for
            asked_parts = [[p.registered_delivery for p in by_text[text].parts] for text in MIXED[4:]]
            assert asked_parts == [[0, 1], [0, 1], [0, 0, 1]]
            multi = [m.message_id for m in msgs[4:]]
            kept = await bus.opids.get_many([part_key(mid, p) for mid in multi for p in (1, 2, 3)])
            assert kept == [None] * 9
        assert conn.inbound.stats.unknown == 0 and conn.inbound.stats.unasked == 0


@pytest.mark.parametrize("receipt_parts", ["all", "last"])
async def test_as_partner_asks_only_what_the_partner_asked(bus: Bus, receipt_parts: str) -> None:
    async with open_simulator(SimConfig()) as sim:  # every message delivered
        op = make_operator(sim.port, receipt_parts=receipt_parts, receipt_request="as_partner")
        none = [mt(op.name, "no receipt", reg=0), mt(op.name, LONG, reg=0)]
        failures = [mt(op.name, "failures only", reg=2), mt(op.name, LONG, reg=2)]
        final = [mt(op.name, "every final state", reg=1), mt(op.name, LONG, reg=1)]
        async with running(bus, op) as conn:
            await publish_mt(bus, none + failures + final)
            raw = await collect(bus, Kind.DLR, PARTNER, 2)
            await wait_for(lambda: conn.stats.submitted == 6)
            # receipts only for the partner that wants delivered ones: 1 + 2 parts, or 1 + 1 (last part only)
            asked = 3 if receipt_parts == "all" else 2
            await wait_for(lambda: conn.inbound.stats.receipts == sim.stats.receipts_sent == asked)
            await trio.sleep(0.2)
            assert (await bus.stream_info(Kind.DLR)).messages == 0
        assert sim.stats.receipts_sent == asked
        assert sorted(DlrMessage.from_bytes(r).message_id for r in raw) == sorted(m.message_id for m in final)
        by_text = {(a.text, a.parts[-1].registered_delivery) for a in sim.assembled()}
        assert ("no receipt", 0) in by_text and ("failures only", 2) in by_text and (LONG, 2) in by_text


async def test_as_partner_failures_only_gets_the_failure(bus: Bus) -> None:
    cfg = SimConfig(receipt_mix=((MessageState.UNDELIVERABLE, 100.0),))
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port, receipt_parts="last", receipt_request="as_partner")
        quiet, failures = mt(op.name, LONG, reg=0), mt(op.name, LONG, reg=2)
        async with running(bus, op) as conn:
            await publish_mt(bus, [quiet, failures])
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
            # the simulator counts a receipt once it is answered, a moment after inbound counts it
            await wait_for(lambda: conn.inbound.stats.receipts == sim.stats.receipts_sent == 1)
        d = DlrMessage.from_bytes(raw[0])
        assert (d.message_id, d.state, d.part, d.parts) == (failures.message_id, "UNDELIV", 2, 2)
        assert sim.stats.receipts_sent == 1  # nothing asked for the quiet partner's message


async def test_receipt_for_a_part_that_asked_none_is_dropped(bus: Bus) -> None:
    """Some SMSCs send receipts whatever registered_delivery says: with only the last part asked, part 1's
    (a failure, here) must neither reach the partner as a second receipt nor hold up the last part's."""
    op = make_operator(1, receipt_id_format="dec")
    answers: list[tuple[int, int]] = []

    class Session:
        def respond(self, pdu: DeliverSm, status: int) -> None:
            answers.append((pdu.sequence_number, status))

    mid = "777001"
    mappings = [
        (op.name, str(900 + p), IdMapping(mid, PARTNER, mapping_flags(1, p, 2, True), p, 2).to_bytes())
        for p in (1, 2)
    ]
    assert all(r.ok for r in await bus.opids.put_many(mappings))

    def receipt(seq: int, op_id: int, stat: str, state: int) -> DeliverSm:
        text = f"id:{op_id} sub:001 dlvrd:000 submit date:2405011200 done date:2405011201 stat:{stat} err:000"
        return DeliverSm(
            sequence_number=seq,
            esm_class=0x04,
            short_message=text.encode(),
            tlvs=(Tlv.make(Tag.receipted_message_id, str(op_id)), Tlv.make(Tag.message_state, state)),
        )

    h = InboundHandler(lambda: op, bus, router=lambda: StubRouter(), ids=lambda: "1")
    async with trio.open_nursery() as n:
        await n.start(h.run)
        h.handle(Session(), receipt(1, 901, "UNDELIV", 5))
        await wait_for(lambda: len(answers) == 1, 10)
        h.handle(Session(), receipt(2, 902, "DELIVRD", 2))
        raw = await collect(bus, Kind.DLR, PARTNER, 1)
        await wait_for(lambda: len(answers) == 2, 10)
        n.cancel_scope.cancel()
    d = DlrMessage.from_bytes(raw[0])
    assert (d.message_id, d.state, d.part, d.parts) == (mid, "DELIVRD", 2, 2)
    assert (await bus.stream_info(Kind.DLR)).messages == 0
    assert sorted(answers) == [(1, 0), (2, 0)]
    assert h.stats.unasked == 1 and h.stats.published == 1
    assert await bus.opids.get_many([part_key(mid, 1), part_key(mid, 2)]) == [None, None]


async def test_receipt_settings_apply_without_rebinding(bus: Bus) -> None:
    async with open_simulator(SimConfig(receipts=False)) as sim:
        op = make_operator(sim.port)
        async with running(bus, op) as conn:
            await wait_for(lambda: conn.is_up)
            client = conn.client
            conn.update(attrs.evolve(op, receipt_parts="last", receipt_request="as_partner"))
            await publish_mt(bus, [mt(op.name, LONG, reg=2)])
            await wait_for(lambda: conn.stats.submitted == 1)
            assert conn.client is client and sim.stats.binds == 1
        (a,) = sim.assembled()
        assert [p.registered_delivery for p in a.parts] == [0, 2]
