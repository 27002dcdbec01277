"""Behaviour of the sans-IO session: binding, sequence numbers, window, matching, auto answers, errors."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import (
    FramingError,
    LocalProtocolError,
    PduDecodeError,
    StateError,
    UnknownCommandError,
    WindowFullError,
)
from catalyst_smpp.protocol.events import (
    BindFailed,
    Bound,
    CloseReason,
    ConnectionClosed,
    Event,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    Unbound,
    UnexpectedReason,
    UnexpectedResponse,
)
from catalyst_smpp.protocol.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransceiverResp,
    BindTransmitter,
    BindTransmitterResp,
    DataSm,
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Outbind,
    Pdu,
    QuerySm,
    SubmitSm,
    SubmitSmResp,
    Unbind,
    UnbindResp,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role, SessionState

S = SessionState
T0 = 500.0


def drain(conn: SmppConnection) -> list[Event]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def wire(data: bytes) -> list[Pdu]:
    out, off = [], 0
    while off < len(data):
        out.append(decode_pdu(data, off))
        off += int.from_bytes(data[off : off + 4], "big")
    return out


def feed(conn: SmppConnection, *pdus: Pdu, now: float = T0) -> list[Event]:
    conn.receive_data(b"".join(encode_pdu(p) for p in pdus), now)
    return drain(conn)


def submit(n: int = 0) -> SubmitSm:
    return SubmitSm(source_addr="12345", destination_addr="447900000001", short_message=b"msg %d" % n)


def bound_esme(config: SessionConfig | None = None, bind: type[Pdu] = BindTransceiver) -> SmppConnection:
    conn = SmppConnection(Role.ESME, config or SessionConfig(), now=T0)
    seq = conn.send(bind(system_id="acme", password="pw"), T0)
    resp_cls = {BindTransceiver: BindTransceiverResp, BindTransmitter: BindTransmitterResp}.get(bind)
    resp = resp_cls(sequence_number=seq) if resp_cls else bind(sequence_number=seq).make_response()
    feed(conn, resp)
    conn.data_to_send()
    return conn


def bound_smsc(config: SessionConfig | None = None, bind: type[Pdu] = BindTransceiver) -> SmppConnection:
    conn = SmppConnection(Role.SMSC, config or SessionConfig(), now=T0)
    (ev,) = feed(conn, bind(sequence_number=1, system_id="acme", password="pw"))
    assert isinstance(ev, RequestReceived)
    conn.send(ev.pdu.make_response(system_id="gw"), T0)
    drain(conn)
    conn.data_to_send()
    return conn


class Pair:
    """An ESME and an SMSC core wired back to back (with optional chunking of the bytes)."""

    def __init__(self, esme_cfg: SessionConfig | None = None, smsc_cfg: SessionConfig | None = None) -> None:
        self.esme = SmppConnection(Role.ESME, esme_cfg, now=T0)
        self.smsc = SmppConnection(Role.SMSC, smsc_cfg, now=T0)

    def pump(self, now: float = T0) -> tuple[list[Event], list[Event]]:
        e_events: list[Event] = []
        m_events: list[Event] = []
        for _ in range(10):
            a, b = self.esme.data_to_send(), self.smsc.data_to_send()
            if not a and not b:
                break
            if a:
                self.smsc.receive_data(a, now)
            if b:
                self.esme.receive_data(b, now)
            e_events += drain(self.esme)
            m_events += drain(self.smsc)
        return e_events, m_events


# --- binding ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("bind", "state"),
    [(BindTransmitter, S.BOUND_TX), (BindReceiver, S.BOUND_RX), (BindTransceiver, S.BOUND_TRX)],
)
def test_bind_both_sides(bind: type[Pdu], state: SessionState) -> None:
    p = Pair()
    p.esme.send(bind(system_id="acme", password="pw"), T0)
    assert p.esme.state is S.BINDING
    _, m_events = p.pump()
    (req,) = m_events
    assert isinstance(req, RequestReceived) and p.smsc.state is S.BINDING
    assert p.smsc.bind_request is req.pdu
    p.smsc.send(req.pdu.make_response(system_id="gw"), T0)
    (m_bound,) = drain(p.smsc)
    assert isinstance(m_bound, Bound) and m_bound.state is state
    e_events, _ = p.pump()
    (e_bound,) = e_events
    assert isinstance(e_bound, Bound) and e_bound.state is state
    assert e_bound.response.system_id == "gw"  # type: ignore[attr-defined]
    assert p.esme.state is state and p.smsc.state is state


def test_bind_failure_keeps_session_open_and_allows_retry() -> None:
    p = Pair()
    p.esme.send(BindTransceiver(system_id="acme", password="bad"), T0)
    _, (req,) = p.pump()
    assert isinstance(req, RequestReceived)
    p.smsc.send(req.pdu.make_response(CommandStatus.ESME_RINVPASWD), T0)
    (m_failed,) = drain(p.smsc)
    assert isinstance(m_failed, BindFailed)
    (e_failed,), _ = p.pump()
    assert isinstance(e_failed, BindFailed)
    assert e_failed.response.command_status == CommandStatus.ESME_RINVPASWD
    assert p.esme.state is S.OPEN and p.smsc.state is S.OPEN
    # open, not bound: submit_sm is refused both ways
    with pytest.raises(LocalProtocolError):
        p.esme.send(submit(), T0)
    # a second attempt works
    p.esme.send(BindTransceiver(system_id="acme", password="pw"), T0)
    _, (req,) = p.pump()
    p.smsc.send(req.pdu.make_response(), T0)  # type: ignore[attr-defined]
    p.pump()
    assert p.esme.state is S.BOUND_TRX and p.smsc.state is S.BOUND_TRX


def test_bind_answered_with_generic_nack_fails_the_bind() -> None:
    conn = SmppConnection(Role.ESME, now=T0)
    seq = conn.send(BindTransmitter(), T0)
    (ev,) = feed(conn, GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDID))
    assert isinstance(ev, BindFailed) and conn.state is S.OPEN


def test_smsc_refusing_bind_with_generic_nack() -> None:
    conn = SmppConnection(Role.SMSC, now=T0)
    feed(conn, BindTransmitter(sequence_number=3))
    conn.send(GenericNack(sequence_number=3, command_status=CommandStatus.ESME_RSYSERR), T0)
    (ev,) = drain(conn)
    assert isinstance(ev, BindFailed) and conn.state is S.OPEN and conn.owed_responses == 0


def test_bind_while_bound_is_refused_with_ralybnd() -> None:
    conn = bound_smsc()
    (ev,) = feed(conn, BindTransmitter(sequence_number=8))
    assert isinstance(ev, ProtocolViolation) and isinstance(ev.error, StateError)
    (ans,) = wire(conn.data_to_send())
    assert isinstance(ans, BindTransmitterResp)
    assert (ans.sequence_number, ans.command_status) == (8, CommandStatus.ESME_RALYBND)
    assert conn.state is S.BOUND_TRX


def test_pdu_in_same_segment_as_bind_resp() -> None:
    """Field lesson: a deliver_sm right behind the bind_resp, in one TCP segment."""
    conn = SmppConnection(Role.ESME, now=T0)
    seq = conn.send(BindReceiver(), T0)
    events = feed(conn, BindReceiver(sequence_number=seq).make_response(), DeliverSm(sequence_number=1))
    assert [type(e) for e in events] == [Bound, RequestReceived]


def test_outbind_then_bind_receiver() -> None:
    p = Pair()
    p.smsc.send(Outbind(system_id="gw", password="pw"), T0)
    assert p.smsc.state is S.OUTBOUND
    (ev,), _ = p.pump()
    assert isinstance(ev, RequestReceived) and isinstance(ev.pdu, Outbind)
    assert p.esme.state is S.OUTBOUND
    assert p.esme.data_to_send() == b""  # outbind has no response
    with pytest.raises(LocalProtocolError):
        p.esme.send(BindTransmitter(), T0)  # after outbind: receiver or transceiver only
    p.esme.send(BindReceiver(system_id="acme"), T0)
    _, (req,) = p.pump()
    p.smsc.send(req.pdu.make_response(), T0)  # type: ignore[attr-defined]
    p.pump()
    assert p.esme.state is S.BOUND_RX and p.smsc.state is S.BOUND_RX


# --- sequence numbers ---------------------------------------------------------------


def test_sequence_numbers_start_at_one_and_increase() -> None:
    conn = bound_esme(SessionConfig(window_size=100))
    seqs = [conn.send(submit(i), T0) for i in range(5)]
    assert seqs == [2, 3, 4, 5, 6]  # 1 went to the bind
    assert [p.sequence_number for p in wire(conn.data_to_send())] == seqs


def test_sequence_wraps_to_one_never_zero_and_skips_in_flight() -> None:
    conn = bound_esme(SessionConfig(window_size=10))
    conn._seq = 0x7FFFFFFD  # white box: jump to just before the end of the range
    assert conn.send(submit(), T0) == 0x7FFFFFFE
    assert conn.send(submit(), T0) == 0x7FFFFFFF
    assert conn.send(submit(), T0) == 1  # wraps; the bind (seq 1) is answered, so 1 is free
    assert conn.send(submit(), T0) == 2
    # answer nothing; jump round once more: the four still in flight are skipped
    conn._seq = 0x7FFFFFFC
    got = [conn.send(submit(), T0) for _ in range(4)]
    assert got == [0x7FFFFFFD, 3, 4, 5]
    assert 0 not in got


@settings(max_examples=50, deadline=None)
@given(start=st.integers(min_value=0, max_value=0x7FFFFFFF), n=st.integers(min_value=1, max_value=30))
def test_sequence_numbers_always_valid_and_unique_in_flight(start: int, n: int) -> None:
    conn = bound_esme(SessionConfig(window_size=30))
    conn._seq = start
    seqs = [conn.send(submit(), T0) for _ in range(n)]
    assert all(1 <= s <= 0x7FFFFFFF for s in seqs)
    assert len(set(seqs)) == n


def test_responses_keep_the_request_sequence_number() -> None:
    conn = bound_smsc()
    (ev,) = feed(conn, SubmitSm(sequence_number=12345, source_addr="1", destination_addr="2"))
    assert isinstance(ev, RequestReceived)
    assert conn.send(ev.pdu.make_response(message_id="abc"), T0) == 12345
    (resp,) = wire(conn.data_to_send())
    assert resp.sequence_number == 12345


# --- window -------------------------------------------------------------------------


def test_window_full_and_freed_by_responses() -> None:
    conn = bound_esme(SessionConfig(window_size=3))
    assert conn.window_available == 3
    seqs = [conn.send(submit(i), T0) for i in range(3)]
    assert conn.window_available == 0
    with pytest.raises(WindowFullError):
        conn.send(submit(), T0)
    conn.send(EnquireLink(), T0)  # session management does not count
    conn.data_to_send()
    (ev,) = feed(conn, SubmitSmResp(sequence_number=seqs[1], message_id="m1"))
    assert isinstance(ev, ResponseReceived) and ev.request.sequence_number == seqs[1]
    assert conn.window_available == 1
    conn.send(submit(), T0)
    assert conn.window_available == 0


def test_window_full_leaves_nothing_queued() -> None:
    conn = bound_esme(SessionConfig(window_size=1))
    conn.send(submit(), T0)
    conn.data_to_send()
    with pytest.raises(WindowFullError):
        conn.send(submit(), T0)
    assert conn.data_to_send() == b"" and conn.in_flight == 1


def test_generic_nack_answers_a_request() -> None:
    conn = bound_esme()
    seq = conn.send(submit(), T0)
    (ev,) = feed(conn, GenericNack(sequence_number=seq, command_status=CommandStatus.ESME_RINVCMDLEN))
    assert isinstance(ev, ResponseReceived) and isinstance(ev.pdu, GenericNack)
    assert conn.window_available == conn.config.window_size


# --- unexpected responses -----------------------------------------------------------


def test_duplicate_response_is_reported_not_fatal() -> None:
    conn = bound_esme()
    seq = conn.send(submit(), T0)
    conn.data_to_send()
    resp = SubmitSmResp(sequence_number=seq, message_id="x")
    (first,) = feed(conn, resp)
    assert isinstance(first, ResponseReceived)
    (dup,) = feed(conn, resp)
    assert isinstance(dup, UnexpectedResponse) and dup.reason is UnexpectedReason.NOT_IN_FLIGHT
    assert conn.state is S.BOUND_TRX and conn.data_to_send() == b""


def test_unknown_sequence_response() -> None:
    conn = bound_esme()
    (ev,) = feed(conn, SubmitSmResp(sequence_number=999, message_id="x"))
    assert isinstance(ev, UnexpectedResponse) and ev.reason is UnexpectedReason.UNKNOWN_SEQUENCE
    (ev,) = feed(conn, SubmitSmResp(sequence_number=0, message_id="x"))
    assert isinstance(ev, UnexpectedResponse) and ev.reason is UnexpectedReason.UNKNOWN_SEQUENCE
    assert conn.data_to_send() == b""


def test_response_of_the_wrong_command_keeps_the_request() -> None:
    conn = bound_esme()
    seq = conn.send(QuerySm(message_id="1"), T0)
    (ev,) = feed(conn, SubmitSmResp(sequence_number=seq))
    assert isinstance(ev, UnexpectedResponse) and ev.reason is UnexpectedReason.COMMAND_MISMATCH
    assert conn.in_flight == 1


def test_sending_an_unowed_response_is_our_error() -> None:
    conn = bound_smsc()
    with pytest.raises(LocalProtocolError):
        conn.send(SubmitSmResp(sequence_number=5), T0)
    (ev,) = feed(conn, SubmitSm(sequence_number=5, source_addr="1", destination_addr="2"))
    assert isinstance(ev, RequestReceived)
    with pytest.raises(LocalProtocolError):
        conn.send(DeliverSmResp(sequence_number=5), T0)  # wrong command for that request
    conn.send(SubmitSmResp(sequence_number=5), T0)
    with pytest.raises(LocalProtocolError):
        conn.send(SubmitSmResp(sequence_number=5), T0)  # answered once already


def test_peer_reusing_an_owed_sequence_number() -> None:
    conn = bound_smsc()
    a = SubmitSm(sequence_number=7, source_addr="1", destination_addr="2")
    b = DataSm(sequence_number=7, source_addr="1", destination_addr="2")
    assert len(feed(conn, a, b)) == 2
    assert conn.owed_responses == 2
    conn.send(b.make_response(), T0)
    conn.send(a.make_response(), T0)
    assert conn.owed_responses == 0


# --- automatic answers --------------------------------------------------------------


def test_enquire_link_answered_automatically() -> None:
    conn = bound_smsc()
    assert feed(conn, EnquireLink(sequence_number=77)) == []
    (resp,) = wire(conn.data_to_send())
    assert isinstance(resp, EnquireLinkResp) and resp.sequence_number == 77 and resp.command_status == 0


def test_unknown_command_id_gets_generic_nack() -> None:
    conn = bound_smsc()
    raw = struct.pack(">IIII", 20, 0x00000077, 0, 31) + b"abcd"
    conn.receive_data(raw, T0)
    (ev,) = drain(conn)
    assert isinstance(ev, ProtocolViolation) and isinstance(ev.error, UnknownCommandError)
    (nack,) = wire(conn.data_to_send())
    assert isinstance(nack, GenericNack)
    assert (nack.sequence_number, nack.command_status) == (31, CommandStatus.ESME_RINVCMDID)
    assert conn.state is S.BOUND_TRX


def _bad_submit_sm(seq: int) -> bytes:
    # source_addr without a NUL within its 21 octets
    body = b"\x00" + b"\x01\x01" + b"9" * 40 + b"\x00"
    return struct.pack(">IIII", 16 + len(body), 4, 0, seq) + body


def test_bad_field_answered_with_its_own_resp_and_status() -> None:
    raw = _bad_submit_sm(44)
    with pytest.raises(PduDecodeError) as info:
        decode_pdu(raw)
    status = info.value.status
    assert status != 0
    conn = bound_smsc()
    conn.receive_data(raw, T0)
    (ev,) = drain(conn)
    assert isinstance(ev, ProtocolViolation) and isinstance(ev.error, PduDecodeError)
    (resp,) = wire(conn.data_to_send())
    assert isinstance(resp, SubmitSmResp)
    assert (resp.sequence_number, resp.command_status) == (44, status)
    assert isinstance(ev.answered_with, SubmitSmResp)
    assert conn.state is S.BOUND_TRX and conn.owed_responses == 0


def test_bad_request_in_wrong_state_gets_the_state_error_first() -> None:
    conn = bound_smsc(bind=BindReceiver)
    conn.receive_data(_bad_submit_sm(45), T0)
    (ev,) = drain(conn)
    assert isinstance(ev.error, StateError)  # type: ignore[attr-defined]
    (resp,) = wire(conn.data_to_send())
    assert (resp.command_id, resp.command_status) == (CommandId.submit_sm_resp, CommandStatus.ESME_RINVBNDSTS)


def test_undecodable_response_is_reported_and_not_answered() -> None:
    conn = bound_esme()
    seq = conn.send(submit(), T0)
    conn.data_to_send()
    body = b"x" * 70  # message_id without a NUL within 65 octets
    conn.receive_data(struct.pack(">IIII", 16 + len(body), 0x80000004, 0, seq) + body, T0)
    (ev,) = drain(conn)
    assert isinstance(ev, ProtocolViolation) and ev.answered_with is None
    assert conn.data_to_send() == b"" and conn.in_flight == 1  # it will time out


def test_framing_error_nacks_and_closes() -> None:
    conn = bound_esme()
    seq = conn.send(submit(), T0)
    conn.data_to_send()
    conn.receive_data(struct.pack(">IIII", 8, 4, 0, 66), T0)
    events = drain(conn)
    assert [type(e) for e in events] == [ProtocolViolation, ConnectionClosed]
    assert isinstance(events[0].error, FramingError)  # type: ignore[attr-defined]
    closed = events[1]
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.FRAMING_ERROR
    assert [p.sequence_number for p in closed.unanswered] == [seq]
    (nack,) = wire(conn.data_to_send())
    assert isinstance(nack, GenericNack)
    assert (nack.command_status, nack.sequence_number) == (CommandStatus.ESME_RINVCMDLEN, 66)
    assert conn.state is S.CLOSED
    conn.receive_data(encode_pdu(DeliverSm(sequence_number=5)), T0)  # ignored after close
    assert drain(conn) == [] and conn.data_to_send() == b""
    with pytest.raises(LocalProtocolError):
        conn.send(EnquireLink(), T0)


def test_request_before_the_bad_octets_is_answered_before_the_nack() -> None:
    # a valid request and octets that cannot be framed in one read: its response goes out first, then the
    # generic_nack and the close (the peer is not left without the answer to a request we took)
    conn = bound_smsc()
    good = encode_pdu(SubmitSm(sequence_number=5, destination_addr="1", short_message=b"hi"))
    conn.receive_data(good + struct.pack(">IIII", 8, 4, 0, 66), T0)
    (ev,) = drain(conn)
    assert isinstance(ev, RequestReceived) and ev.pdu.sequence_number == 5
    assert isinstance(conn.sync_lost, FramingError) and conn.state is S.BOUND_TRX
    assert conn.data_to_send() == b""  # no nack yet
    assert conn.window_available == 0
    with pytest.raises(LocalProtocolError):  # nothing but responses
        conn.send(DeliverSm(), T0)
    conn.receive_data(encode_pdu(EnquireLink(sequence_number=9)), T0)  # nothing more is read
    assert drain(conn) == [] and conn.data_to_send() == b""
    assert conn.get_timer() == T0 + conn.config.response_timeout
    conn.send(ev.pdu.make_response(message_id="abc"), T0 + 1)
    events = drain(conn)
    assert [type(e) for e in events] == [ProtocolViolation, ConnectionClosed]
    assert events[1].reason is CloseReason.FRAMING_ERROR  # type: ignore[attr-defined]
    resp, nack = wire(conn.data_to_send())
    assert (resp.command_id, resp.sequence_number, resp.message_id) == (  # type: ignore[attr-defined]
        CommandId.submit_sm_resp,
        5,
        "abc",
    )
    assert (nack.command_id, nack.command_status, nack.sequence_number) == (
        CommandId.generic_nack,
        CommandStatus.ESME_RINVCMDLEN,
        66,
    )


def test_unanswered_request_before_the_bad_octets_closes_at_the_response_timeout() -> None:
    conn = bound_smsc(SessionConfig(response_timeout=7.0))
    good = encode_pdu(SubmitSm(sequence_number=5, destination_addr="1"))
    conn.receive_data(good + b"\x00\x00\x00\x01garbage!" + bytes(8), T0)
    drain(conn)
    conn.handle_timer(T0 + 6.9)
    assert drain(conn) == [] and conn.state is S.BOUND_TRX
    conn.handle_timer(T0 + 7.0)
    events = drain(conn)
    assert [type(e) for e in events] == [ProtocolViolation, ConnectionClosed]
    assert "1 response(s) still owed after 7.0s" in events[1].detail  # type: ignore[attr-defined]
    (nack,) = wire(conn.data_to_send())
    assert isinstance(nack, GenericNack) and nack.command_status == CommandStatus.ESME_RINVCMDLEN


def test_command_length_over_the_configured_maximum() -> None:
    conn = bound_smsc(SessionConfig(max_command_length=1000))
    conn.receive_data(struct.pack(">IIII", 1001, 4, 0, 3), T0)
    events = drain(conn)
    assert isinstance(events[-1], ConnectionClosed) and events[-1].reason is CloseReason.FRAMING_ERROR


# --- unbind -------------------------------------------------------------------------


def test_unbind_from_esme() -> None:
    p = Pair()
    p.esme.send(BindTransceiver(), T0)
    _, (req,) = p.pump()
    p.smsc.send(req.pdu.make_response(), T0)  # type: ignore[attr-defined]
    p.pump()
    p.esme.send(Unbind(), T0)
    assert p.esme.state is S.UNBINDING
    e_events, m_events = p.pump()
    assert [type(e) for e in m_events] == [Unbound] and m_events[0].by_peer  # type: ignore[attr-defined]
    assert [type(e) for e in e_events] == [Unbound] and not e_events[0].by_peer  # type: ignore[attr-defined]
    assert p.esme.state is S.UNBOUND and p.smsc.state is S.UNBOUND
    p.esme.close()
    (closed,) = drain(p.esme)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.UNBOUND
    p.smsc.receive_data(b"", T0)
    (closed,) = drain(p.smsc)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.UNBOUND


def test_unbind_from_smsc() -> None:
    conn = bound_esme()
    (ev,) = feed(conn, Unbind(sequence_number=900))
    assert isinstance(ev, Unbound) and ev.by_peer
    (resp,) = wire(conn.data_to_send())
    assert isinstance(resp, UnbindResp) and resp.sequence_number == 900 and resp.command_status == 0
    assert conn.state is S.UNBOUND
    with pytest.raises(LocalProtocolError):
        conn.send(submit(), T0)


def test_late_response_after_unbind_is_still_matched() -> None:
    conn = bound_esme()
    seq = conn.send(submit(), T0)
    conn.send(Unbind(), T0)
    (ev,) = feed(conn, SubmitSmResp(sequence_number=seq, message_id="late"))
    assert isinstance(ev, ResponseReceived)


def test_request_crossing_our_unbind_is_refused() -> None:
    conn = bound_esme()
    conn.send(Unbind(), T0)
    conn.data_to_send()
    (ev,) = feed(conn, DeliverSm(sequence_number=4))
    assert isinstance(ev, ProtocolViolation)
    (resp,) = wire(conn.data_to_send())
    assert (resp.command_id, resp.command_status) == (
        CommandId.deliver_sm_resp,
        CommandStatus.ESME_RINVBNDSTS,
    )


def test_owed_response_can_still_be_sent_after_peer_unbinds() -> None:
    conn = bound_smsc()
    feed(
        conn, SubmitSm(sequence_number=10, source_addr="1", destination_addr="2"), Unbind(sequence_number=11)
    )
    assert conn.state is S.UNBOUND
    conn.send(SubmitSmResp(sequence_number=10, message_id="m"), T0)
    assert [p.command_id for p in wire(conn.data_to_send())] == [
        CommandId.unbind_resp,
        CommandId.submit_sm_resp,
    ]


# --- EOF ----------------------------------------------------------------------------


def test_peer_close_reports_unanswered_requests_and_partial_pdu() -> None:
    conn = bound_esme()
    s1 = conn.send(submit(1), T0)
    s2 = conn.send(submit(2), T0)
    conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=s1))[:10], T0)
    conn.receive_data(b"", T0)
    (closed,) = drain(conn)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.PEER_CLOSED
    assert [p.sequence_number for p in closed.unanswered] == [s1, s2]
    assert "10 octets" in closed.detail
    conn.close()  # idempotent: one ConnectionClosed only
    assert drain(conn) == []


# --- robustness ---------------------------------------------------------------------

pdu_header = st.tuples(
    st.sampled_from([int(c) for c in CommandId] + [0x77, 0x80000077, 0x0B | 0x80000000, 0x103]),
    st.integers(0, 0xFFFFFFFF),
    st.integers(0, 0x7FFFFFFF),
)


@settings(max_examples=300, deadline=None)
@given(
    frames=st.lists(st.tuples(pdu_header, st.binary(max_size=120)), max_size=12),
    role=st.sampled_from(list(Role)),
    bound=st.booleans(),
    cut=st.integers(1, 64),
)
def test_session_survives_every_framed_pdu(
    frames: list[tuple[tuple[int, int, int], bytes]], role: Role, bound: bool, cut: int
) -> None:
    conn = (bound_esme() if role is Role.ESME else bound_smsc()) if bound else SmppConnection(role, now=T0)
    stream = b"".join(
        struct.pack(">IIII", 16 + len(body), cid, status, seq) + body for (cid, status, seq), body in frames
    )
    for i in range(0, len(stream), cut):
        conn.receive_data(stream[i : i + cut], T0)
    events = drain(conn)
    assert conn.state is not S.CLOSED
    assert not any(isinstance(e, ConnectionClosed) for e in events)
    # the decoder never failed internally (that would be answered ESME_RSYSERR)
    assert not any(
        isinstance(e, ProtocolViolation) and e.error.status == CommandStatus.ESME_RSYSERR for e in events
    )
    wire(conn.data_to_send())  # everything the core queued is valid SMPP


@settings(max_examples=100, deadline=None)
@given(
    n=st.integers(1, 40),
    cuts=st.lists(st.integers(1, 300), min_size=1, max_size=10),
    window=st.integers(1, 8),
)
def test_pair_exchange_with_random_chunking(n: int, cuts: list[int], window: int) -> None:
    """ESME submits n messages through a window; the SMSC answers each; nothing is lost."""
    esme = SmppConnection(Role.ESME, SessionConfig(window_size=window), now=T0)
    smsc = SmppConnection(Role.SMSC, now=T0)
    esme.send(BindTransceiver(system_id="a"), T0)
    answered: list[int] = []
    to_send = n
    k = 0

    def move(src: SmppConnection, dst: SmppConnection) -> None:
        nonlocal k
        data = src.data_to_send()
        i = 0
        while i < len(data):
            size = cuts[k % len(cuts)]
            k += 1
            dst.receive_data(data[i : i + size], T0)
            i += size

    for _ in range(10 * n + 20):
        while to_send and esme.state is S.BOUND_TRX and esme.window_available:
            esme.send(submit(to_send), T0)
            to_send -= 1
        move(esme, smsc)
        for ev in drain(smsc):
            assert isinstance(ev, RequestReceived | Bound), ev
            if isinstance(ev, RequestReceived):
                if isinstance(ev.pdu, SubmitSm):
                    smsc.send(ev.pdu.make_response(message_id=f"id{ev.pdu.sequence_number}"), T0)
                else:
                    smsc.send(ev.pdu.make_response(), T0)
        move(smsc, esme)
        for ev in drain(esme):
            assert isinstance(ev, ResponseReceived | Bound), ev
            if isinstance(ev, ResponseReceived):
                answered.append(ev.request.sequence_number)
        if len(answered) == n:
            break
    assert len(answered) == n and len(set(answered)) == n
    assert esme.in_flight == 0 and smsc.owed_responses == 0


def test_hot_path_events_are_ordinary_frozen_events() -> None:
    """RequestReceived / ResponseReceived are built without their attrs __init__ on the per-PDU path;
    they must be the same values (eq, repr) and stay frozen."""
    import attrs

    esme, smsc = bound_esme(), bound_smsc()
    seq = esme.send(submit(1), T0)
    (req_ev,) = feed(smsc, *wire(esme.data_to_send()))
    assert type(req_ev) is RequestReceived and req_ev.pdu.sequence_number == seq
    assert req_ev == RequestReceived(req_ev.pdu)
    assert repr(req_ev) == repr(RequestReceived(req_ev.pdu))
    smsc.send(req_ev.pdu.make_response(message_id="m1"), T0)
    (resp_ev,) = feed(esme, *wire(smsc.data_to_send()))
    assert type(resp_ev) is ResponseReceived
    assert resp_ev == ResponseReceived(resp_ev.pdu, resp_ev.request)
    assert resp_ev.request.sequence_number == seq and resp_ev.pdu.message_id == "m1"  # type: ignore[attr-defined]
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        resp_ev.pdu = req_ev.pdu  # type: ignore[misc]
    assert esme.window_available == esme.config.window_size and esme.in_flight == 0
    assert smsc.owed_responses == 0
