"""Receipts and MO from the simulator through the connector's inbound handler to the bus.

The in-memory bus under the autojump clock: these are the gateway's rules (JetStream's part is held to
the same contract in tests/bus/test_contract.py; the flow and fault tests run on real NATS)."""

from __future__ import annotations

from typing import Any

import pytest
import trio
import trio.testing

from catalyst_smpp.bus import Kind, MessageBus
from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.gateway.inbound import wants_receipt, worst_state
from catalyst_smpp.gateway.mappings import IdMapping, PartState, part_key
from catalyst_smpp.gateway.messages import DlrMessage, MoMessage
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import IdForm, IdFormat, SimConfig, open_simulator
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


@pytest.fixture
def bus(memory_bus: MemoryBus) -> MessageBus:
    """These are rules of the gateway, not of JetStream: the in-memory bus, under trio's autojump clock
    (tests/bus/test_contract.py holds it to what JetStream does)."""
    return memory_bus


HEX_UP_PADDED = IdFormat(IdForm.HEX, width=12, upper=True)
HEX = IdFormat(IdForm.HEX)
DEC = IdFormat(IdForm.DEC)
DEC_PADDED = IdFormat(IdForm.DEC, width=10)


def test_receipt_wishes_and_worst_state() -> None:
    assert not wants_receipt(0, "DELIVRD") and not wants_receipt(0, "UNDELIV")
    assert wants_receipt(1, "DELIVRD") and wants_receipt(1, "REJECTD") and wants_receipt(3, "DELIVRD")
    assert not wants_receipt(2, "DELIVRD") and wants_receipt(2, "EXPIRED")
    assert worst_state(["DELIVRD", "UNDELIV", "REJECTD"]) == "REJECTD"
    assert worst_state(["DELIVRD", "ACCEPTD"]) == "ACCEPTD"


@pytest.mark.parametrize(
    ("resp_fmt", "receipt_fmt", "submit_id_format", "receipt_id_format"),
    [
        (
            HEX_UP_PADDED,
            DEC,
            "hex",
            "dec",
        ),  # hex upper case with leading zeros in the resp, decimal in receipt
        (HEX, HEX_UP_PADDED, "hex", "hex"),
        (DEC_PADDED, DEC, "dec", "dec"),
        (HEX_UP_PADDED, None, "text", "text"),  # same string both ways: text rule (case, zeros)
    ],
)
async def test_receipts_map_to_our_id(
    bus: MessageBus,
    autojump_clock: trio.testing.MockClock,
    resp_fmt: IdFormat,
    receipt_fmt: IdFormat | None,
    submit_id_format: str,
    receipt_id_format: str,
) -> None:
    cfg = SimConfig(id_format=resp_fmt, receipt_id_format=receipt_fmt, id_start=0xA1F)
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port, submit_id_format=submit_id_format, receipt_id_format=receipt_id_format)
        msgs = [mt(op.name, f"receipt please {i}") for i in range(5)]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            raw = await collect(bus, Kind.DLR, PARTNER, 5)
            await wait_for(lambda: conn.inbound.stats.published == 5)
            assert conn.inbound.stats.unknown == 0
        dlrs = sorted((DlrMessage.from_bytes(r) for r in raw), key=lambda d: d.message_id)
        assert [d.message_id for d in dlrs] == sorted(m.message_id for m in msgs)
        assert {d.state for d in dlrs} == {"DELIVRD"} and {d.partner for d in dlrs} == {PARTNER}
        assert all(d.part == 1 and d.parts == 1 and d.operator == op.name for d in dlrs)
        assert dlrs[0].source.addr == "Catalyst" and dlrs[0].dest.addr == msgs[0].dest.addr
        assert sim.stats.receipts_sent == 5 and sim.stats.receipts_failed == 0


def test_receipt_keys_try_both_ids_the_reading_two_agree_on_first() -> None:
    from catalyst_smpp.encoding.receipts import parse_receipt
    from catalyst_smpp.gateway.inbound import receipt_keys

    op = make_operator(1, submit_id_format="hex", receipt_id_format="dec")
    agreeing = parse_receipt(b"id:1715004 stat:DELIVRD", {"receipted_message_id": "1A2B3C"})
    assert agreeing.text_id == "1715004"
    # TLV read as dec: no number ("1a2b3c"); text as dec: 1715004; TLV as hex: 1715004; text as hex
    assert receipt_keys(agreeing, op) == ("1715004", "1a2b3c", str(0x1715004))
    # a TLV hex id of digits only reads as a (wrong) decimal number too: the agreeing reading still goes first
    digits = parse_receipt(b"id:4660 stat:DELIVRD", {"receipted_message_id": "1234"})
    assert receipt_keys(digits, op) == ("4660", "1234", str(0x4660))
    same = parse_receipt(b"id:4660 stat:DELIVRD", {"receipted_message_id": "4660"})
    assert same.text_id is None and receipt_keys(same, op) == ("4660",)


@pytest.mark.parametrize(
    ("sim_kw", "op_kw"),
    [
        pytest.param(
            {
                "id_format": HEX_UP_PADDED,
                "receipt_id_format": DEC,
                "receipt_tlv_resp_id": True,
                "id_start": 0xA1F,
            },
            {"submit_id_format": "hex", "receipt_id_format": "dec"},
            id="tlv-id-hex-as-in-the-resp-text-id-decimal",
        ),
        pytest.param(
            {"id_format": HEX, "receipt_id_format": DEC, "receipt_tlv_resp_id": True, "id_start": 0x1230},
            {"submit_id_format": "hex", "receipt_id_format": "dec"},
            id="tlv-id-hex-of-digits-only-text-id-decimal",
        ),
        pytest.param({"receipt_data_coding": 8}, {}, id="ucs2"),
        pytest.param({"receipt_data_coding": 8, "receipt_tlvs": False}, {}, id="ucs2-text-only"),
        pytest.param(
            {"receipt_esm_class": 0, "receipt_tlvs": False}, {"receipts_by_text": True}, id="no-receipt-bit"
        ),
    ],
)
async def test_receipt_forms_smscs_send(
    bus: MessageBus, autojump_clock: trio.testing.MockClock, sim_kw: dict[str, Any], op_kw: dict[str, Any]
) -> None:
    """Receipts in the forms SMSCs send reach the partner, their ``text:`` as written (trailing blanks too):
    the TLV id in the submit_sm_resp's hex with the text id in decimal (operator: hex / dec), UCS-2
    receipts, and receipts without the receipt bit or TLVs (operator set to ``receipts_by_text``)."""
    async with open_simulator(SimConfig(**sim_kw)) as sim:
        op = make_operator(sim.port, **op_kw)
        msgs = [mt(op.name, f"form {i}   ") for i in range(5)]
        async with running(bus, op) as conn:
            await publish_mt(bus, msgs)
            raw = await collect(bus, Kind.DLR, PARTNER, 5)
            await wait_for(lambda: conn.inbound.stats.published == 5)
            stats = conn.inbound.stats
            assert (stats.unknown, stats.bad_receipts, stats.mo_unrouted) == (0, 0, 0)
        assert sim.stats.receipts_sent == 5
    dlrs = sorted((DlrMessage.from_bytes(r) for r in raw), key=lambda d: d.message_id)
    assert [d.message_id for d in dlrs] == sorted(m.message_id for m in msgs)
    assert {d.state for d in dlrs} == {"DELIVRD"}
    assert sorted(d.text for d in dlrs) == [f"form {i}   " for i in range(5)]


async def test_receipts_without_the_receipt_bit_are_mo_unless_the_operator_says(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """``receipts_by_text`` is off by default: such a deliver_sm is an MO (here without a route)."""
    async with open_simulator(SimConfig(receipt_esm_class=0, receipt_tlvs=False)) as sim:
        op = make_operator(sim.port)
        assert op.receipts_by_text is False
        async with running(bus, op) as conn:
            await publish_mt(bus, [mt(op.name, "a receipt that looks like an MO")])
            await wait_for(lambda: conn.inbound.stats.mo_unrouted >= 1)
            assert conn.inbound.stats.receipts == 0
    assert (await bus.stream_info(Kind.DLR)).messages == 0


async def test_multipart_message_gets_one_receipt(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = SimConfig(receipt_mix=((MessageState.DELIVERED, 100.0),))
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port, submit_id_format="hex", receipt_id_format="hex")
        m = mt(op.name, LONG)
        async with running(bus, op) as conn:
            await publish_mt(bus, [m])
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
            await wait_for(lambda: sim.stats.receipts_sent == 2)
            await wait_for(lambda: conn.inbound.stats.receipts == 2)
            await trio.sleep(0)  # let the second receipt's batch finish
        d = DlrMessage.from_bytes(raw[0])
        assert (d.message_id, d.state, d.part, d.parts) == (m.message_id, "DELIVRD", 2, 2)
        assert (await bus.stream_info(Kind.DLR)).messages == 0  # exactly one receipt for the two parts
        states = await bus.opids.get_many([part_key(m.message_id, 1), part_key(m.message_id, 2)])
        assert [PartState.from_bytes(s).state if s else None for s in states] == ["DELIVRD", "DELIVRD"]


async def test_multipart_first_failure_is_reported_once(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    cfg = SimConfig(receipt_mix=((MessageState.UNDELIVERABLE, 100.0),))
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port)
        m = mt(op.name, LONG)
        async with running(bus, op) as conn:
            await publish_mt(bus, [m])
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
            await wait_for(lambda: conn.inbound.stats.receipts == 2 and sim.stats.receipts_sent == 2)
        d = DlrMessage.from_bytes(raw[0])
        assert (d.message_id, d.state, d.parts) == (m.message_id, "UNDELIV", 2)
        assert (await bus.stream_info(Kind.DLR)).messages == 0


async def test_receipt_before_the_mapping_is_retried(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """The receipt's id is unknown at first; the mapping is stored a moment later (as after a slow KV put)."""
    # drive the handler directly: a fake session that records the answers (the handler is transport-agnostic)
    from catalyst_smpp.gateway.inbound import InboundHandler
    from catalyst_smpp.protocol.pdu import DeliverSm
    from catalyst_smpp.protocol.tlv import Tag, Tlv

    op = make_operator(1, receipt_id_format="hex")
    answers: list[tuple[int, int]] = []

    class Session:
        def respond(self, pdu: DeliverSm, status: int) -> None:
            answers.append((pdu.sequence_number, status))

    h = InboundHandler(
        lambda: op, bus, router=lambda: StubRouter(), ids=lambda: "1", lookup_delays=(0.2, 0.3, 0.5)
    )
    receipt = DeliverSm(
        sequence_number=7,
        source_addr="447700900123",
        destination_addr="Catalyst",
        esm_class=0x04,
        short_message=b"id:00ABC sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 "
        b"stat:DELIVRD err:000",
        tlvs=(Tlv.make(Tag.receipted_message_id, "00ABC"), Tlv.make(Tag.message_state, 2)),
    )
    never = DeliverSm(sequence_number=8, esm_class=0x04, short_message=b"id:FFFF stat:DELIVRD")
    async with trio.open_nursery() as n:
        await n.start(h.run)
        assert h.handle(Session(), receipt) is not None and h.handle(Session(), never) is not None
        await trio.sleep(0.1)
        assert answers == []  # held while the id is unknown
        res = await bus.opids.put_many([(op.name, str(0xABC), IdMapping("42", PARTNER, 1, 1, 1).to_bytes())])
        assert res[0].ok
        raw = await collect(bus, Kind.DLR, PARTNER, 1)
        await wait_for(lambda: len(answers) == 2, 10)
        n.cancel_scope.cancel()
    d = DlrMessage.from_bytes(raw[0])
    assert (d.message_id, d.state, d.operator_message_id) == ("42", "DELIVRD", "00ABC")
    assert sorted(answers) == [(7, 0), (8, 0)]
    assert h.stats.unknown == 1 and h.stats.lookup_retries >= 4


async def test_mo_goes_to_the_routed_partner(bus: MessageBus, autojump_clock: trio.testing.MockClock) -> None:
    cfg = SimConfig(receipts=False, mo_rate=50, mo_count=3, mo_dest="12345", mo_text="Hi from the phone")
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port)
        router = StubRouter({"123": "shortcodes", "1": "other"})
        async with running(bus, op, router=router) as conn:
            raw = await collect(bus, Kind.MO, "shortcodes", 3)
            await wait_for(lambda: sim.stats.mo_sent == 3)
            assert conn.inbound.stats.mo == 3
        mos = [MoMessage.from_bytes(r) for r in raw]
        assert {m.partner for m in mos} == {"shortcodes"} and len({m.message_id for m in mos}) == 3
        assert all(m.payload == b"Hi from the phone" and m.dest.addr == "12345" for m in mos)
        assert all(m.source.addr == "447700900001" and m.operator == op.name for m in mos)


async def test_mo_without_route_is_kept_by_the_smsc_until_a_route_exists(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """No route yet is a temporary condition: the MO is answered ESME_RX_T_APPN, so the SMSC keeps it and
    sends it again, and once a route exists it reaches the partner (ESME_RX_P_APPN made the SMSC drop it)."""
    from catalyst_smpp.metrics import Metrics

    metrics = Metrics()
    cfg = SimConfig(receipts=False, mo_rate=50, mo_count=2, mo_dest="999", mo_text="late {n}")
    router = StubRouter({"123": "shortcodes"})
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port)
        async with running(bus, op, router=router, metrics=metrics) as conn:
            stats = conn.inbound.stats
            # each MO refused for now and sent again by the SMSC at least once
            await wait_for(lambda: stats.mo_unrouted >= 4 and sim.stats.deliver_retries >= 4)
            assert stats.mo == 0 and sim.stats.mo_failed == 0 and sim.stats.mo_sent == 0
            assert (await bus.stream_info(Kind.MO)).messages == 0
            unrouted = metrics.registry.get_sample_value(
                "catalyst_smpp_mo_unrouted_total", {"operator": op.name}
            )
            assert unrouted is not None and unrouted >= 4
            router.mo["9"] = "latecomer"  # a route added later takes them
            raw = await collect(bus, Kind.MO, "latecomer", 2)
            await wait_for(lambda: sim.stats.mo_sent == 2)
        assert sim.stats.mo_failed == 0
    assert sorted(MoMessage.from_bytes(r).payload for r in raw) == [b"late 1", b"late 2"]


async def test_unrouted_mo_log_is_bounded(bus: MessageBus, autojump_clock: Any, caplog: Any) -> None:
    """One log line per ``unrouted_log_every`` seconds per operator, with the count, however many MO."""
    from catalyst_smpp.gateway.inbound import InboundHandler
    from catalyst_smpp.protocol.constants import CommandStatus
    from catalyst_smpp.protocol.pdu import DeliverSm

    op = make_operator(1)
    answers: list[int] = []

    class Session:
        def respond(self, pdu: DeliverSm, status: int) -> None:
            answers.append(status)

    h = InboundHandler(lambda: op, bus, router=lambda: StubRouter(), ids=lambda: "1", unrouted_log_every=10.0)
    caplog.set_level("WARNING", logger="catalyst_smpp.gateway.inbound")
    async with trio.open_nursery() as n:
        await n.start(h.run)
        sent = 0
        for round_, count in enumerate((1, 30, 2)):
            if round_:
                await trio.sleep(6.0)  # rounds 2 and 3: 6 s and 12 s after the first line
            for _ in range(count):
                sent += 1
                h.handle(
                    Session(), DeliverSm(sequence_number=sent, source_addr="4477", destination_addr="555")
                )
            await wait_for(lambda total=sent: len(answers) == total)
        n.cancel_scope.cancel()
    assert answers == [int(CommandStatus.ESME_RX_T_APPN)] * 33
    lines = [r.getMessage() for r in caplog.records if "without a route" in r.getMessage()]
    assert len(lines) == 2, lines
    assert lines[0].startswith(f"operator {op.name}: 1 MO without a route (the last from 4477 to 555)")
    # the 30 of round 2 and the first of round 3 (which wrote the line); the second waits for the next line
    assert lines[1].startswith(f"operator {op.name}: 31 MO without a route")
    assert lines[1].endswith("answered ESME_RX_T_APPN, the SMSC sends them again")
    assert h.stats.mo_unrouted == 33 and h.stats.mo == 0


@pytest.mark.parametrize(
    ("odd", "why"),
    [
        ((Tag.message_state, b"\x00\x02"), "message_state of 2 octets (the spec: 1)"),
        ((Tag.network_error_code, b"030022\x00"), "network_error_code as a C-string (as smpplib writes it)"),
        ((Tag.sar_msg_ref_num, b"\x00\x01"), "an incomplete SAR set (ESME_RMISSINGOPTPARAM)"),
    ],
)
async def test_receipt_with_odd_tlvs_is_not_lost(
    bus: MessageBus, autojump_clock: trio.testing.MockClock, odd: tuple[int, bytes], why: str
) -> None:
    """field-lessons 6: a receipt whose TLVs break the spec is still mapped and published, and the SMSC gets
    ESME_ROK.  Without SessionConfig.keep_odd_tlvs the strict decoder answered ESME_RINVOPTPARAMVAL /
    ESME_RMISSINGOPTPARAM and the SMSC dropped the receipt: the partner never got it."""
    from catalyst_smpp.protocol.constants import CommandId
    from catalyst_smpp.protocol.pdu import DeliverSm, Pdu
    from catalyst_smpp.protocol.session import SessionConfig
    from catalyst_smpp.protocol.tlv import Tlv
    from catalyst_smpp.server import ServerConfig, SmppServer
    from catalyst_smpp.server.auth import Account, StaticAuthenticator
    from catalyst_smpp.transport.session import SmppSession

    sessions: list[SmppSession] = []

    def smsc(session: SmppSession, pdu: Pdu) -> Any:  # the operator's SMSC (our server): a fixed id
        if pdu.command_id == CommandId.submit_sm:
            sessions.append(session)
            return pdu.make_response(0, message_id="0A1F")
        return None

    server = SmppServer(
        ServerConfig(port=0, session=SessionConfig(bind_timeout=10, enquire_link_interval=30)),
        StaticAuthenticator([Account("gw", "pw")]),
        smsc,
    )
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        op = make_operator(server.ports[0], submit_id_format="hex", receipt_id_format="hex")
        m = mt(op.name, "odd receipt please")
        async with running(bus, op) as conn:
            await publish_mt(bus, [m])
            await wait_for(lambda: bool(sessions) and conn.stats.submitted == 1)
            receipt = DeliverSm(
                source_addr="447700900123",
                destination_addr="Catalyst",
                esm_class=0x04,
                short_message=b"id:0A1F sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 "
                b"stat:DELIVRD err:000",
                # our encoder leaves TLV semantics to the decoder: it writes the odd TLV as given
                tlvs=(Tlv.make(Tag.receipted_message_id, "0A1F"), Tlv(*odd)),
            )
            resp = await sessions[0].request(receipt)
            assert resp.command_status == 0, why
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
        n.cancel_scope.cancel()
    d = DlrMessage.from_bytes(raw[0])
    assert (d.message_id, d.state, d.operator_message_id) == (m.message_id, "DELIVRD", "0A1F"), why


@pytest.mark.parametrize(
    ("sim_kw", "op_kw", "reason"),
    [
        # the resp says hex "A1F", the receipt decimal "2591", the operator is set up as "text" both ways
        (
            {"id_format": HEX_UP_PADDED, "receipt_id_format": DEC, "id_start": 0xA1F},
            {"submit_id_format": "text", "receipt_id_format": "text"},
            "unknown_id",
        ),
        ({"receipt_text": False, "receipt_tlvs": False}, {}, "unreadable"),  # no id anywhere in the receipt
    ],
)
async def test_unmatched_receipts_are_counted_per_operator(
    bus: MessageBus,
    autojump_clock: trio.testing.MockClock,
    sim_kw: dict[str, Any],
    op_kw: dict[str, Any],
    reason: str,
) -> None:
    """field-lessons 1: receipts that never match are what a NOC must see without reading logs --
    ``receipts_unmatched_total{operator, reason}`` (before, only a log line and an in-process stat)."""
    from catalyst_smpp.metrics import Metrics

    metrics = Metrics()
    async with open_simulator(SimConfig(**sim_kw)) as sim:
        op = make_operator(sim.port, **op_kw)
        async with running(bus, op, metrics=metrics) as conn:
            await publish_mt(bus, [mt(op.name, f"lost receipt {i}") for i in range(2)])
            await wait_for(lambda: conn.inbound.stats.unknown + conn.inbound.stats.bad_receipts == 2)
        assert sim.stats.receipts_sent == 2
    value = metrics.registry.get_sample_value(
        "catalyst_smpp_receipts_unmatched_total", {"operator": op.name, "reason": reason}
    )
    assert value == 2
    assert (await bus.stream_info(Kind.DLR)).messages == 0


async def test_partner_split_message_kannel_style_gets_one_receipt(
    bus: MessageBus, autojump_clock: trio.testing.MockClock
) -> None:
    """Kannel 1.4.5 as a partner: a long message the partner split itself (UDH, esm_class
    0x43 with the store-and-forward mode bits) asks for a receipt on part 1 only and expects one receipt per
    message, for part 1's id.  Every part still reaches the operator as sent (mode bits kept, not refused)."""
    from catalyst_smpp.encoding import Encoding, encode

    udh = [bytes([0x05, 0x00, 0x03, 0x7A, 0x02, k]) for k in (1, 2)]
    texts = [encode(LONG[:150], Encoding.GSM7), encode(LONG[150:], Encoding.GSM7)]
    cfg = SimConfig(receipt_mix=((MessageState.DELIVERED, 100.0),), keep_messages=10)
    async with open_simulator(cfg) as sim:
        op = make_operator(sim.port)
        parts = [mt(op.name, raw=udh[k] + texts[k], esm=0x43, reg=1 if k == 0 else 0) for k in range(2)]
        async with running(bus, op) as conn:
            await publish_mt(bus, parts)
            raw = await collect(bus, Kind.DLR, PARTNER, 1)
            # submitted: counted once the rows are stored, which may be after the receipts came back
            await wait_for(
                lambda: (
                    conn.inbound.stats.receipts == 2
                    and conn.inbound.stats.not_wanted == 1
                    and conn.stats.submitted == 2
                )
            )
            assert conn.stats.failed == 0
        assert sorted((m.esm_class, m.short_message[:6]) for m in sim.messages) == [(0x43, h) for h in udh]
    d = DlrMessage.from_bytes(raw[0])
    assert (d.message_id, d.state) == (parts[0].message_id, "DELIVRD")
    assert (await bus.stream_info(Kind.DLR)).messages == 0  # part 2 asked for none: one receipt in all
