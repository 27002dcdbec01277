"""Timers as data: get_timer() says when, handle_timer(now) acts; no clock inside the core."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId
from catalyst_smpp.protocol.events import (
    CloseReason,
    ConnectionClosed,
    Event,
    ResponseReceived,
    ResponseTimeout,
    UnexpectedReason,
    UnexpectedResponse,
)
from catalyst_smpp.protocol.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    EnquireLink,
    EnquireLinkResp,
    Pdu,
    SubmitSm,
    SubmitSmResp,
    Unbind,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role, SessionState

S = SessionState
T0 = 100.0
QUIET = dict(enquire_link_interval=None, inactivity_timeout=None, bind_timeout=None)


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


def bound_esme(**cfg: float | None) -> SmppConnection:
    conn = SmppConnection(Role.ESME, SessionConfig(**cfg), now=T0)  # type: ignore[arg-type]
    seq = conn.send(BindTransceiver(), T0)
    conn.receive_data(encode_pdu(BindTransceiverResp(sequence_number=seq)), T0)
    drain(conn)
    conn.data_to_send()
    return conn


def submit() -> SubmitSm:
    return SubmitSm(source_addr="1", destination_addr="2", short_message=b"x")


def test_no_timer_when_everything_is_off() -> None:
    conn = bound_esme(**QUIET)
    assert conn.get_timer() is None
    conn.handle_timer(1e9)
    assert drain(conn) == [] and conn.data_to_send() == b""


def test_timers_start_at_first_call_without_now() -> None:
    conn = SmppConnection(Role.SMSC, SessionConfig(bind_timeout=5))
    assert conn.get_timer() is None
    conn.receive_data(b"\x00", 50.0)
    assert conn.get_timer() == 55.0


# --- response timeout ---------------------------------------------------------------


def test_response_timeout_frees_the_window_and_reports() -> None:
    conn = bound_esme(response_timeout=10, window_size=2, **QUIET)
    s1 = conn.send(submit(), T0 + 1)
    s2 = conn.send(submit(), T0 + 2)
    assert conn.get_timer() == T0 + 11
    conn.handle_timer(T0 + 10.999)
    assert drain(conn) == []
    conn.handle_timer(T0 + 11)
    (ev,) = drain(conn)
    assert isinstance(ev, ResponseTimeout) and ev.request.sequence_number == s1
    assert conn.window_available == 1
    assert conn.get_timer() == T0 + 12
    # the late response is reported, not matched
    conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=s1)), T0 + 11.5)
    (late,) = drain(conn)
    assert isinstance(late, UnexpectedResponse) and late.reason is UnexpectedReason.NOT_IN_FLIGHT
    # an answered request never times out
    conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=s2)), T0 + 11.6)
    assert isinstance(drain(conn)[0], ResponseReceived)
    assert conn.get_timer() is None
    conn.handle_timer(T0 + 100)
    assert drain(conn) == [] and conn.state is S.BOUND_TRX


def test_many_timeouts_at_once_in_send_order() -> None:
    conn = bound_esme(response_timeout=5, window_size=10, **QUIET)
    seqs = [conn.send(submit(), T0 + i * 0.1) for i in range(6)]
    conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=seqs[2])), T0 + 1)
    drain(conn)
    conn.handle_timer(T0 + 60)
    timed_out = [e.request.sequence_number for e in drain(conn) if isinstance(e, ResponseTimeout)]
    assert timed_out == [s for s in seqs if s != seqs[2]]
    assert conn.window_available == 10


def test_bind_unanswered_closes() -> None:
    conn = SmppConnection(Role.ESME, SessionConfig(response_timeout=3, **QUIET), now=T0)  # type: ignore[arg-type]
    conn.send(BindTransceiver(), T0)
    assert conn.get_timer() == T0 + 3
    conn.handle_timer(T0 + 3)
    timeout, closed = drain(conn)
    assert isinstance(timeout, ResponseTimeout)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.RESPONSE_TIMEOUT
    assert conn.state is S.CLOSED and conn.get_timer() is None


def test_unbind_unanswered_closes() -> None:
    conn = bound_esme(response_timeout=4, **QUIET)
    conn.send(Unbind(), T0 + 1)
    conn.handle_timer(T0 + 5)
    events = drain(conn)
    assert isinstance(events[-1], ConnectionClosed) and events[-1].reason is CloseReason.RESPONSE_TIMEOUT


# --- enquire_link -------------------------------------------------------------------


def test_enquire_link_sent_when_idle_and_link_declared_dead() -> None:
    conn = bound_esme(
        enquire_link_interval=30, response_timeout=10, inactivity_timeout=None, bind_timeout=None
    )
    assert conn.get_timer() == T0 + 30
    conn.handle_timer(T0 + 29)
    assert conn.data_to_send() == b""
    conn.handle_timer(T0 + 30)
    (el,) = wire(conn.data_to_send())
    assert isinstance(el, EnquireLink)
    assert drain(conn) == []  # the core's own enquire_link is not the driver's business
    assert conn.get_timer() == T0 + 40  # now waiting for its response
    conn.handle_timer(T0 + 35)
    assert conn.data_to_send() == b""  # not a second one while the first is in flight
    conn.handle_timer(T0 + 40)
    (closed,) = drain(conn)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.ENQUIRE_LINK_TIMEOUT
    assert closed.unanswered == ()  # the core's enquire_link is not reported as the driver's
    assert conn.state is S.CLOSED


def test_enquire_link_answered_keeps_link_and_reschedules() -> None:
    conn = bound_esme(
        enquire_link_interval=30, response_timeout=10, inactivity_timeout=None, bind_timeout=None
    )
    conn.handle_timer(T0 + 30)
    (el,) = wire(conn.data_to_send())
    conn.receive_data(encode_pdu(EnquireLinkResp(sequence_number=el.sequence_number)), T0 + 31)
    assert drain(conn) == []
    assert conn.in_flight == 0
    assert conn.get_timer() == T0 + 61


def test_traffic_postpones_enquire_link() -> None:
    conn = bound_esme(
        enquire_link_interval=30, response_timeout=10, inactivity_timeout=None, bind_timeout=None
    )
    conn.receive_data(encode_pdu(DeliverSm(sequence_number=3)), T0 + 20)
    drain(conn)
    assert conn.get_timer() == T0 + 50
    conn.handle_timer(T0 + 30)
    assert conn.data_to_send() == b""


def test_no_enquire_link_before_bound() -> None:
    conn = SmppConnection(Role.ESME, SessionConfig(enquire_link_interval=1, bind_timeout=None), now=T0)
    assert conn.get_timer() is None
    conn.handle_timer(T0 + 100)
    assert conn.data_to_send() == b""


def test_drivers_own_enquire_link_gets_its_response_event() -> None:
    conn = bound_esme(**QUIET)
    seq = conn.send(EnquireLink(), T0)
    conn.receive_data(encode_pdu(EnquireLinkResp(sequence_number=seq)), T0)
    (ev,) = drain(conn)
    assert isinstance(ev, ResponseReceived)


# --- inactivity and bind timeouts ---------------------------------------------------


def test_inactivity_timeout_closes() -> None:
    conn = bound_esme(inactivity_timeout=60, enquire_link_interval=None, bind_timeout=None)
    assert conn.get_timer() == T0 + 60
    conn.receive_data(encode_pdu(DeliverSm(sequence_number=3)), T0 + 50)
    drain(conn)
    conn.handle_timer(T0 + 60)
    assert drain(conn) == []
    assert conn.get_timer() == T0 + 110
    conn.handle_timer(T0 + 110)
    (closed,) = drain(conn)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.INACTIVITY_TIMEOUT


def test_partial_pdu_is_not_activity() -> None:
    conn = bound_esme(inactivity_timeout=60, enquire_link_interval=None, bind_timeout=None)
    conn.receive_data(encode_pdu(DeliverSm(sequence_number=3))[:5], T0 + 50)
    assert conn.get_timer() == T0 + 60


def test_smsc_bind_timeout() -> None:
    conn = SmppConnection(Role.SMSC, SessionConfig(bind_timeout=20, enquire_link_interval=None), now=T0)
    assert conn.get_timer() == T0 + 20
    conn.handle_timer(T0 + 20)
    (closed,) = drain(conn)
    assert isinstance(closed, ConnectionClosed) and closed.reason is CloseReason.BIND_TIMEOUT


def test_smsc_bind_timeout_stops_once_bound() -> None:
    conn = SmppConnection(Role.SMSC, SessionConfig(bind_timeout=20, enquire_link_interval=None), now=T0)
    conn.receive_data(encode_pdu(BindTransceiver(sequence_number=1)), T0 + 1)
    (req,) = drain(conn)
    conn.send(req.pdu.make_response(), T0 + 2)  # type: ignore[attr-defined]
    drain(conn)
    assert conn.get_timer() is None
    conn.handle_timer(T0 + 1000)
    assert drain(conn) == [] and conn.state is S.BOUND_TRX


def test_esme_has_no_bind_timeout() -> None:
    conn = SmppConnection(Role.ESME, SessionConfig(bind_timeout=20, enquire_link_interval=None), now=T0)
    assert conn.get_timer() is None


def test_config_validation() -> None:
    with pytest.raises(ValueError):
        SessionConfig(window_size=0)
    with pytest.raises(ValueError):
        SessionConfig(response_timeout=0)
    with pytest.raises(ValueError):
        SessionConfig(enquire_link_interval=-1)
    with pytest.raises(ValueError):
        SessionConfig(max_command_length=15)


@settings(max_examples=100, deadline=None)
@given(
    steps=st.lists(
        st.tuples(st.sampled_from(["send", "answer", "tick", "peer_el"]), st.floats(0, 20)), max_size=40
    )
)
def test_timer_contract(steps: list[tuple[str, float]]) -> None:
    """Whatever happens: handle_timer before get_timer() does nothing; at get_timer() something is due."""
    conn = bound_esme(
        response_timeout=7,
        enquire_link_interval=11,
        inactivity_timeout=None,
        bind_timeout=None,
        window_size=5,
    )
    now = T0
    seqs: list[int] = []
    for action, dt in steps:
        if conn.state is S.CLOSED:
            break
        now += dt
        deadline = conn.get_timer()
        if deadline is not None and deadline <= now:
            now = deadline  # a driver wakes at the deadline
        if action == "send" and conn.window_available:
            seqs.append(conn.send(submit(), now))
        elif action == "answer" and seqs:
            conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=seqs.pop(0))), now)
        elif action == "peer_el":
            conn.receive_data(encode_pdu(EnquireLink(sequence_number=9)), now)
        elif action == "tick":
            deadline = conn.get_timer()
            if deadline is not None:
                before = (conn.in_flight, conn.state, len(conn.data_to_send()))
                conn.handle_timer(deadline - 0.001)
                assert (conn.in_flight, conn.state) == before[:2]
                conn.handle_timer(deadline)
                changed = drain(conn) or conn.data_to_send() or conn.in_flight != before[0]
                assert changed
        drain(conn)
        conn.data_to_send()
    t = conn.get_timer()
    assert t is None or t >= T0


def test_responses_never_counted_as_enquire() -> None:
    conn = bound_esme(**QUIET)
    seq = conn.send(submit(), T0)
    conn.receive_data(encode_pdu(SubmitSmResp(sequence_number=seq)), T0)
    assert [type(e) for e in drain(conn)] == [ResponseReceived]
    assert conn.in_flight == 0
    assert CommandId.enquire_link not in [p.command_id for p in wire(conn.data_to_send())]
