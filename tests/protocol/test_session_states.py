"""Every (role, state, command, direction) combination, against a hand-written expectation.

The expectation below is transcribed by hand from SMPP v3.4 section 2.3 (who may
issue each PDU in which bind state) with the choices documented in
``catalyst_smpp.protocol.states`` (data_sm follows the bind direction; enquire_link
and generic_nack in every live state; outbind -> bind_receiver/bind_transceiver;
BINDING / UNBINDING / UNBOUND as the local views of a bind or unbind in flight).
It is deliberately written per state as flat lists, not derived from the table.

Two kinds of check:
* the table (``ALLOWED``) equals the expectation for every combination;
* the session *behaves* as the expectation says for every combination: sending
  raises or not; a received request is accepted or answered with
  ESME_RINVBNDSTS / ESME_RALYBND; a received response is matched or reported as
  unexpected -- never a crash.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable

import pytest

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import LocalProtocolError
from catalyst_smpp.protocol.events import (
    Bound,
    Event,
    ProtocolViolation,
    RequestReceived,
    ResponseReceived,
    Unbound,
    UnexpectedReason,
    UnexpectedResponse,
)
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    EnquireLink,
    Outbind,
    Pdu,
    SmeDestination,
    SubmitMulti,
    Unbind,
    UnbindResp,
    pdu_class,
    request_class,
    response_class,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import ALLOWED, Direction, Role, SessionState

S = SessionState
ESME, SMSC = Role.ESME, Role.SMSC
SEND, RECV = Direction.SEND, Direction.RECEIVE


def names(text: str) -> frozenset[str]:
    return frozenset(text.split())


# --- the hand-written expectation ---------------------------------------------------

LINK = "enquire_link enquire_link_resp generic_nack"
ESME_TX_SEND = "submit_sm submit_multi query_sm cancel_sm replace_sm data_sm"
SMSC_TX_SEND = "submit_sm_resp submit_multi_resp query_sm_resp cancel_sm_resp replace_sm_resp data_sm_resp"
SMSC_RX_SEND = "deliver_sm data_sm alert_notification"
ESME_RX_SEND = "deliver_sm_resp data_sm_resp"
UNBIND = "unbind unbind_resp"
ALL_ESME_RESPONSES = "deliver_sm_resp data_sm_resp unbind_resp enquire_link_resp generic_nack"
ALL_SMSC_RESPONSES = (
    "submit_sm_resp submit_multi_resp "
    "query_sm_resp cancel_sm_resp replace_sm_resp data_sm_resp unbind_resp enquire_link_resp generic_nack"
)

# (role, direction) -> state -> command names
EXPECTED: dict[tuple[Role, Direction], dict[SessionState, frozenset[str]]] = {
    (ESME, SEND): {
        S.OPEN: names(f"bind_transmitter bind_receiver bind_transceiver {LINK}"),
        S.OUTBOUND: names(f"bind_receiver bind_transceiver {LINK}"),
        S.BINDING: names(LINK),
        S.BOUND_TX: names(f"{ESME_TX_SEND} {UNBIND} {LINK}"),
        S.BOUND_RX: names(f"{ESME_RX_SEND} {UNBIND} {LINK}"),
        S.BOUND_TRX: names(f"{ESME_TX_SEND} {ESME_RX_SEND} {UNBIND} {LINK}"),
        S.UNBINDING: names(ALL_ESME_RESPONSES),
        S.UNBOUND: names(ALL_ESME_RESPONSES),
        S.CLOSED: frozenset(),
    },
    (ESME, RECV): {
        S.OPEN: names(f"outbind {LINK}"),
        S.OUTBOUND: names(LINK),
        S.BINDING: names(f"bind_transmitter_resp bind_receiver_resp bind_transceiver_resp {LINK}"),
        S.BOUND_TX: names(f"{SMSC_TX_SEND} {UNBIND} {LINK}"),
        S.BOUND_RX: names(f"{SMSC_RX_SEND} {UNBIND} {LINK}"),
        S.BOUND_TRX: names(f"{SMSC_TX_SEND} {SMSC_RX_SEND} {UNBIND} {LINK}"),
        S.UNBINDING: names(f"{ALL_SMSC_RESPONSES} unbind enquire_link"),
        S.UNBOUND: names(ALL_SMSC_RESPONSES),
        S.CLOSED: frozenset(),
    },
    (SMSC, SEND): {
        S.OPEN: names(f"outbind {LINK}"),
        S.OUTBOUND: names(LINK),
        S.BINDING: names(f"bind_transmitter_resp bind_receiver_resp bind_transceiver_resp {LINK}"),
        S.BOUND_TX: names(f"{SMSC_TX_SEND} {UNBIND} {LINK}"),
        S.BOUND_RX: names(f"{SMSC_RX_SEND} {UNBIND} {LINK}"),
        S.BOUND_TRX: names(f"{SMSC_TX_SEND} {SMSC_RX_SEND} {UNBIND} {LINK}"),
        S.UNBINDING: names(ALL_SMSC_RESPONSES),
        S.UNBOUND: names(ALL_SMSC_RESPONSES),
        S.CLOSED: frozenset(),
    },
    (SMSC, RECV): {
        S.OPEN: names(f"bind_transmitter bind_receiver bind_transceiver {LINK}"),
        S.OUTBOUND: names(f"bind_receiver bind_transceiver {LINK}"),
        S.BINDING: names(LINK),
        S.BOUND_TX: names(f"{ESME_TX_SEND} {UNBIND} {LINK}"),
        S.BOUND_RX: names(f"{ESME_RX_SEND} {UNBIND} {LINK}"),
        S.BOUND_TRX: names(f"{ESME_TX_SEND} {ESME_RX_SEND} {UNBIND} {LINK}"),
        S.UNBINDING: names(f"{ALL_ESME_RESPONSES} unbind enquire_link"),
        S.UNBOUND: names(ALL_ESME_RESPONSES),
        S.CLOSED: frozenset(),
    },
}

ALL_COMMANDS = sorted(CommandId, key=int)
COMBOS = list(itertools.product(Role, S, ALL_COMMANDS))


def expected(role: Role, direction: Direction, state: SessionState, cid: CommandId) -> bool:
    return cid.name in EXPECTED[(role, direction)][state]


def test_expectation_names_are_real_commands() -> None:
    known = {c.name for c in CommandId}
    for per_state in EXPECTED.values():
        for cmds in per_state.values():
            assert cmds <= known, cmds - known


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("direction", list(Direction))
def test_table_matches_expectation(role: Role, direction: Direction) -> None:
    for state in S:
        table = {CommandId(c).name for c in ALLOWED[(role, direction, state)]}
        assert table == EXPECTED[(role, direction)][state], (role, direction, state)


# --- reaching each state for real ---------------------------------------------------

T0 = 1000.0
BIND_OF = {S.BOUND_TX: BindTransmitter, S.BOUND_RX: BindReceiver, S.BOUND_TRX: BindTransceiver}
CFG = SessionConfig(window_size=5)


def sample(cid: int, seq: int = 0) -> Pdu:
    if cid == CommandId.submit_multi:
        return SubmitMulti(sequence_number=seq, dest_address=(SmeDestination(1, 1, "4479"),))
    cls = pdu_class(cid)
    assert cls is not None
    return cls(sequence_number=seq)


def feed(conn: SmppConnection, pdu: Pdu) -> list[Event]:
    conn.receive_data(encode_pdu(pdu), T0)
    return drain(conn)


def drain(conn: SmppConnection) -> list[Event]:
    out = []
    while (ev := conn.next_event()) is not None:
        out.append(ev)
    return out


def sent(conn: SmppConnection) -> list[Pdu]:
    data = conn.data_to_send()
    out, off = [], 0
    while off < len(data):
        out.append(decode_pdu(data, off))
        off += int.from_bytes(data[off : off + 4], "big")
    return out


class Impossible(Exception):
    """The requested situation cannot arise (the protocol never leads there)."""


def reach(
    role: Role, state: SessionState, *, owe: int | None = None, pending: int | None = None
) -> tuple[SmppConnection, int | None]:
    """A connection in ``state``; optionally owing a response to a peer request of type ``owe``
    or with our request of type ``pending`` in flight.  Returns it and that request's seq."""
    conn = SmppConnection(role, CFG, now=T0)
    peer_seq = 100
    seq: int | None = None

    def peer(pdu: Pdu) -> list[Event]:
        nonlocal peer_seq
        peer_seq += 1
        pdu.sequence_number = peer_seq
        return feed(conn, pdu)

    def bind(bound: SessionState) -> None:
        cls = BIND_OF[bound]
        if role is ESME:
            s = conn.send(cls(system_id="e", password="p"), T0)
            feed(conn, response_class(cls.command_id)(sequence_number=s))
        else:
            (ev,) = peer(cls(system_id="e", password="p"))
            assert isinstance(ev, RequestReceived)
            conn.send(ev.pdu.make_response(), T0)
        assert conn.state is bound
        drain(conn)

    def setup_owe_pending() -> None:
        nonlocal seq
        if owe is not None:
            evs = peer(sample(owe))
            if not (len(evs) == 1 and isinstance(evs[0], RequestReceived)) or conn.owed_responses != 1:
                raise Impossible
            seq = peer_seq
        if pending is not None:
            try:
                seq = conn.send(sample(pending), T0)
            except LocalProtocolError:
                raise Impossible from None
            if conn.in_flight != 1:
                raise Impossible
        conn.data_to_send()

    if state is S.OPEN:
        setup_owe_pending()
    elif state is S.OUTBOUND:
        if role is ESME:
            peer(Outbind(system_id="m"))
        else:
            conn.send(Outbind(system_id="m"), T0)
        setup_owe_pending()
    elif state is S.BINDING:
        kinds = (BindTransmitter.command_id, BindReceiver.command_id, BindTransceiver.command_id)
        bind_cls = BindTransceiver
        if role is ESME and pending in kinds:
            bind_cls = pdu_class(pending)  # type: ignore[assignment]
            seq = conn.send(bind_cls(), T0)
        elif role is SMSC and owe in kinds:
            bind_cls = pdu_class(owe)  # type: ignore[assignment]
            peer(bind_cls())
            seq = peer_seq
        else:
            if pending is not None:  # an enquire_link sent before the bind
                try:
                    seq = conn.send(sample(pending), T0)
                except LocalProtocolError:
                    raise Impossible from None
            if role is ESME:
                conn.send(bind_cls(), T0)
            else:
                peer(bind_cls())
            if owe is not None:
                raise Impossible
        drain(conn)
        conn.data_to_send()
    elif state in BIND_OF:
        bind(state)
        setup_owe_pending()
    elif state is S.UNBINDING:
        bind(S.BOUND_TRX)
        if pending == CommandId.unbind:
            seq = conn.send(Unbind(), T0)
            if owe is not None:
                raise Impossible
        else:
            setup_owe_pending()
            conn.send(Unbind(), T0)
    elif state is S.UNBOUND:
        bind(S.BOUND_TRX)
        if pending == CommandId.unbind:
            seq = conn.send(Unbind(), T0)  # our unbind crosses the peer's
            if owe is not None:
                raise Impossible
        else:
            setup_owe_pending()
        (ev,) = peer(Unbind())
        assert isinstance(ev, Unbound)
    elif state is S.CLOSED:
        if owe is not None or pending is not None:
            raise Impossible
        conn.close()
    drain(conn)
    conn.data_to_send()
    if conn.state is not state and (owe is not None or pending is not None):
        raise Impossible  # e.g. our unbind in flight while bound: sending it left the bound state
    assert conn.state is state
    return conn, seq


@pytest.mark.parametrize("role", list(Role))
@pytest.mark.parametrize("state", list(S))
def test_every_state_is_reachable(role: Role, state: SessionState) -> None:
    reach(role, state)


# --- sending ------------------------------------------------------------------------

AUTO_ANSWERED = {CommandId.enquire_link_resp, CommandId.unbind_resp}  # the core answers those itself


@pytest.mark.parametrize(("role", "state", "cid"), COMBOS, ids=lambda v: getattr(v, "name", str(v)))
def test_send(role: Role, state: SessionState, cid: CommandId) -> None:
    ok = expected(role, SEND, state, cid)
    if not cid.is_response:
        conn, _ = reach(role, state)
        if ok:
            seq = conn.send(sample(cid), T0)
            assert 1 <= seq <= 0x7FFFFFFF
            (pdu,) = sent(conn)
            assert pdu.command_id == cid and pdu.sequence_number == seq
        else:
            with pytest.raises(LocalProtocolError):
                conn.send(sample(cid), T0)
            assert conn.data_to_send() == b""
        return
    if cid == CommandId.generic_nack:  # may answer anything, owed or not
        conn, _ = reach(role, state)
        if ok:
            conn.send(sample(cid, 77), T0)
            assert [p.command_id for p in sent(conn)] == [cid]
        else:
            with pytest.raises(LocalProtocolError):
                conn.send(sample(cid, 77), T0)
        return
    # any other response needs a request we owe an answer to
    if ok and cid not in AUTO_ANSWERED:
        conn, seq = reach(role, state, owe=request_class(cid).command_id)
        assert seq is not None
        conn.send(sample(cid, seq), T0)
        assert [(p.command_id, p.sequence_number) for p in sent(conn)] == [(cid, seq)]
        assert conn.owed_responses == 0
    else:
        conn, _ = reach(role, state)
        with pytest.raises(LocalProtocolError):
            conn.send(sample(cid, 77), T0)
        assert conn.data_to_send() == b""


# --- receiving ----------------------------------------------------------------------


@pytest.mark.parametrize(("role", "state", "cid"), COMBOS, ids=lambda v: getattr(v, "name", str(v)))
def test_receive(role: Role, state: SessionState, cid: CommandId) -> None:
    ok = expected(role, RECV, state, cid)
    if cid.is_response:
        check_received_response(role, state, cid, ok)
    else:
        check_received_request(role, state, cid, ok)


def check_received_request(role: Role, state: SessionState, cid: CommandId, ok: bool) -> None:
    conn, _ = reach(role, state)
    events = feed(conn, sample(cid, 4242))
    answers = sent(conn)
    if state is S.CLOSED:
        assert events == [] and answers == []
        return
    if not ok:
        bind_kinds = {CommandId.bind_transmitter, CommandId.bind_receiver, CommandId.bind_transceiver}
        already = (
            role is SMSC and cid in bind_kinds and state in (S.BINDING, S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX)
        )
        status = CommandStatus.ESME_RALYBND if already else CommandStatus.ESME_RINVBNDSTS
        has_resp = cid not in (CommandId.outbind, CommandId.alert_notification)
        answer_cid = CommandId(cid | 0x80000000) if has_resp else CommandId.generic_nack
        assert [(p.command_id, p.command_status, p.sequence_number) for p in answers] == [
            (answer_cid, status, 4242)
        ]
        (ev,) = events
        assert isinstance(ev, ProtocolViolation)
        assert ev.error.status == status and ev.pdu is not None and ev.pdu.command_id == cid
        assert conn.state is state  # refused, nothing changed
        return
    if cid == CommandId.enquire_link:
        assert events == []
        assert [(p.command_id, p.command_status, p.sequence_number) for p in answers] == [
            (CommandId.enquire_link_resp, 0, 4242)
        ]
        assert conn.state is state
    elif cid == CommandId.unbind:
        assert [(p.command_id, p.command_status) for p in answers] == [(CommandId.unbind_resp, 0)]
        (ev,) = events
        assert isinstance(ev, Unbound) and ev.by_peer
        assert conn.state is S.UNBOUND
    else:
        assert answers == []  # the driver answers
        (ev,) = events
        assert isinstance(ev, RequestReceived) and ev.pdu.command_id == cid
        if cid == CommandId.outbind:
            assert conn.state is S.OUTBOUND
        elif cid.name.startswith("bind_"):
            assert conn.state is S.BINDING
        else:
            assert conn.state is state


def check_received_response(role: Role, state: SessionState, cid: CommandId, ok: bool) -> None:
    # 1. a response nobody asked for: reported, never answered, state unchanged
    conn, _ = reach(role, state)
    events = feed(conn, sample(cid, 0x7FFF0000))
    assert sent(conn) == []
    if state is S.CLOSED:
        assert events == []
        return
    (ev,) = events
    assert isinstance(ev, UnexpectedResponse)
    assert ev.reason is (UnexpectedReason.UNKNOWN_SEQUENCE if ok else UnexpectedReason.NOT_ALLOWED_IN_STATE)
    assert conn.state is state
    # 2. the same response to a request of ours in flight, where the protocol can get there
    if not ok:
        return
    requests = [request_class(cid).command_id] if cid != CommandId.generic_nack else [CommandId.enquire_link]
    for req in requests:
        try:
            conn, seq = reach(role, state, pending=req)
        except Impossible:
            continue
        assert seq is not None
        before = conn.in_flight
        events = feed(conn, sample(cid, seq))
        assert conn.in_flight == before - 1
        MATCHED.add((role, state, cid))
        if req == CommandId.unbind:
            assert conn.state is S.UNBOUND
        elif cid.name.startswith("bind_"):
            (ev,) = events
            assert isinstance(ev, Bound)
        else:
            (ev,) = events
            assert isinstance(ev, ResponseReceived) and ev.request.sequence_number == seq


MATCHED: set[tuple[Role, SessionState, CommandId]] = set()


def _all_response_combos() -> Iterable[tuple[Role, SessionState, CommandId]]:
    for role, state, cid in COMBOS:
        if cid.is_response and expected(role, RECV, state, cid):
            yield role, state, cid


def test_matched_responses_cover_every_reachable_case() -> None:
    """Run last in this module: every allowed response that can be in flight was matched once."""
    for role, state, cid in _all_response_combos():
        if (role, state, cid) not in MATCHED:
            check_received_response(role, state, cid, True)
    unmatched = {(r.name, s.name, c.name) for r, s, c in _all_response_combos()} - {
        (r.name, s.name, c.name) for r, s, c in MATCHED
    }
    # the one thing that cannot be in flight: our unbind while still bound (sending it leaves
    # the bound state); unbind_resp is listed for BOUND_* because the spec lists it there
    assert unmatched == {
        (r.name, s, "unbind_resp") for r in Role for s in ("BOUND_TX", "BOUND_RX", "BOUND_TRX")
    }


def test_bind_resp_of_the_wrong_kind_is_unexpected() -> None:
    conn, seq = reach(ESME, S.BINDING, pending=CommandId.bind_transmitter)
    assert seq is not None
    (ev,) = feed(conn, sample(CommandId.bind_receiver_resp, seq))
    assert isinstance(ev, UnexpectedResponse) and ev.reason is UnexpectedReason.COMMAND_MISMATCH
    assert conn.state is S.BINDING and conn.in_flight == 1


def test_unbind_resp_after_crossing_unbinds() -> None:
    conn, seq = reach(ESME, S.UNBOUND, pending=CommandId.unbind)
    assert seq is not None
    assert feed(conn, UnbindResp(sequence_number=seq)) == []  # retired silently, already UNBOUND
    assert conn.in_flight == 0 and conn.state is S.UNBOUND


def test_enquire_link_in_open_state_is_answered() -> None:
    conn, _ = reach(SMSC, S.OPEN)
    feed(conn, EnquireLink(sequence_number=9))
    assert [(p.command_id, p.sequence_number, p.command_status) for p in sent(conn)] == [
        (CommandId.enquire_link_resp, 9, 0)
    ]


def test_all_pdu_classes_are_covered() -> None:
    assert {int(c) for c in ALL_COMMANDS} == set(PDU_CLASSES)
