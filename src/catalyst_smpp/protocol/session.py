"""The SMPP session state machine, sans-IO (in the manner of h11 / aioquic).

::

    conn = SmppConnection(role=Role.ESME, config=SessionConfig(), now=clock())
    seq = conn.send(BindTransceiver(system_id="acme", password="pw"), clock())
    transport.write(conn.data_to_send())
    ...
    conn.receive_data(chunk, clock())        # b"" when the peer closed
    while (event := conn.next_event()) is not None:
        ...                                  # see catalyst_smpp.protocol.events
    transport.write(conn.data_to_send())
    deadline = conn.get_timer()              # wake up then and call conn.handle_timer(clock())

The core never touches a socket, a clock or a random generator: time comes in
as ``now`` (any monotonic clock, in seconds), and :meth:`get_timer` says when the
core next needs :meth:`handle_timer`.

What the core does by itself:

* frames and decodes the stream; answers ``enquire_link``, ``unbind`` and every
  invalid PDU (wrong state -> its ``*_resp`` or ``generic_nack`` with
  ``ESME_RINVBNDSTS``, a bind while bound -> ``ESME_RALYBND``, unknown command_id ->
  ``generic_nack ESME_RINVCMDID``, a bad field -> the command's own ``*_resp``
  with the field's status, a command_length that breaks framing ->
  ``generic_nack ESME_RINVCMDLEN`` and close -- after the responses to the requests
  received before the bad octets, see :meth:`SmppConnection.sync_lost`);
* owns sequence numbers (1 ... 0x7FFFFFFF, wrapping, never one still in flight)
  and the in-flight window, and matches responses to requests;
* runs the timers: response timeout per request, enquire_link after
  ``enquire_link_interval`` without receiving anything (while bound), the link
  declared dead when an enquire_link goes unanswered, inactivity, and (SMSC role)
  the bind timeout.

The driver answers the requests it receives (:class:`RequestReceived`), on the
SMSC side including the binds (the core binds on an OK bind response), and
closes the transport on :class:`Unbound` / :class:`ConnectionClosed`.
"""

from __future__ import annotations

from collections import deque
from typing import Any, Final, TypeAlias

import attrs

from catalyst_smpp.protocol.codec import decode_pdu, decode_pdu_keeping_tlvs, encode_pdu
from catalyst_smpp.protocol.constants import (
    DEFAULT_MAX_COMMAND_LENGTH,
    MAX_SEQUENCE_NUMBER,
    RESPONSE_BIT,
    CommandId,
    CommandStatus,
)
from catalyst_smpp.protocol.errors import (
    FramingError,
    LocalProtocolError,
    ProtocolError,
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
    ResponseTimeout,
    Unbound,
    UnexpectedReason,
    UnexpectedResponse,
)
from catalyst_smpp.protocol.framing import Framer
from catalyst_smpp.protocol.pdu import (
    EnquireLink,
    EnquireLinkResp,
    GenericNack,
    Pdu,
    UnbindResp,
    response_class,
)
from catalyst_smpp.protocol.states import (
    ALLOWED,
    BIND_STATE,
    BOUND_STATES,
    Direction,
    Role,
    SessionState,
)

__all__ = ["Role", "SessionConfig", "SessionState", "SmppConnection"]

C = CommandId
S = SessionState

_GENERIC_NACK: Final = int(C.generic_nack)
_ENQUIRE_LINK: Final = int(C.enquire_link)
_UNBIND: Final = int(C.unbind)
_OUTBIND: Final = int(C.outbind)
_ALERT: Final = int(C.alert_notification)
_RINVBNDSTS: Final = int(CommandStatus.ESME_RINVBNDSTS)
_RALYBND: Final = int(CommandStatus.ESME_RALYBND)
_RINVCMDLEN: Final = int(CommandStatus.ESME_RINVCMDLEN)
_RSYSERR: Final = int(CommandStatus.ESME_RSYSERR)
# what the decoder says about TLVs only: a receipt / MO refused for one of these is taken as received
_TLV_STATUSES: Final = frozenset(
    {
        int(CommandStatus.ESME_RINVOPTPARAMVAL),
        int(CommandStatus.ESME_RINVOPTPARSTREAM),
        int(CommandStatus.ESME_RMISSINGOPTPARAM),
    }
)
_KEEP_TLVS_CMDS: Final = frozenset({int(C.deliver_sm), int(C.data_sm)})

#: requests that take a place in the window (session management does not)
_WINDOWED: Final = frozenset(
    {C.submit_sm, C.deliver_sm, C.data_sm, C.query_sm, C.cancel_sm, C.replace_sm, C.submit_multi}
)
#: requests without a response
_NO_RESPONSE: Final = frozenset({_OUTBIND, _ALERT})
_BIND_RESPONSES: Final = frozenset(cid | RESPONSE_BIT for cid in BIND_STATE)
_PRE_BOUND: Final = frozenset({S.OPEN, S.OUTBOUND, S.BINDING})
#: requests the core acts on itself before (or instead of) reporting them: the rest take the fast path
_SPECIAL_REQUESTS: Final = frozenset({_ENQUIRE_LINK, _UNBIND, *_NO_RESPONSE, *(int(c) for c in BIND_STATE)})
# enum members read from module globals: ``S.CLOSED`` costs ~70 ns per access in CPython 3.11
_CLOSED: Final = S.CLOSED
# events built on the hot path without the attrs-generated ``__init__`` of a frozen class (which sets
# each field through ``object.__setattr__``): same class, same fields, same value
_new: Final = object.__new__
_set_rq_pdu: Final = RequestReceived.__dict__["pdu"].__set__
_set_rs_pdu: Final = ResponseReceived.__dict__["pdu"].__set__
_set_rs_request: Final = ResponseReceived.__dict__["request"].__set__


def _positive(_inst: object, attr: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attr.name} must be positive or None, not {value!r}")


@attrs.frozen
class SessionConfig:
    """Session tunables; times in seconds (``None`` switches a timer off)."""

    #: requests of ours that may await a response at once (submit_sm, deliver_sm, data_sm, ...);
    #: bind, unbind and enquire_link are not counted.  The starting value of
    #: :attr:`SmppConnection.window_size`, which may be changed per connection (e.g. at bind)
    window_size: int = attrs.field(default=10, validator=attrs.validators.ge(1))
    #: a request unanswered this long -> ResponseTimeout (enquire_link: link dead; bind/unbind: close)
    response_timeout: float = attrs.field(default=30.0, validator=_positive)
    #: while bound, send enquire_link after this long without receiving any PDU
    enquire_link_interval: float | None = attrs.field(default=30.0, validator=_positive)
    #: close after this long without receiving any PDU (any state)
    inactivity_timeout: float | None = attrs.field(default=None, validator=_positive)
    #: SMSC role: close if not bound this long after the connection opened
    bind_timeout: float | None = attrs.field(default=30.0, validator=_positive)
    #: a command_length above this breaks framing (generic_nack ESME_RINVCMDLEN, close)
    max_command_length: int = attrs.field(
        default=DEFAULT_MAX_COMMAND_LENGTH,
        validator=[attrs.validators.ge(16), attrs.validators.le(0xFFFFFFFF)],
    )
    #: ESME role: a deliver_sm / data_sm (a receipt or an MO) whose only fault is in its TLVs (a known tag
    #: with a length its spec does not allow, a truncated TLV stream, an incomplete SAR set) is taken with
    #: its TLVs as received (``codec.decode_pdu_keeping_tlvs``) and reported as a ProtocolViolation that
    #: was not answered with an error -- instead of being refused, which loses the receipt at the SMSC
    keep_odd_tlvs: bool = True


#: a request of ours awaiting its response: (pdu, seq, deadline, windowed, internal) -- a tuple, built
#: once per request (a class with an ``__init__`` costs ~0.2 us more)
_InFlight: TypeAlias = tuple[Pdu, int, float, bool, bool]
_PDU: Final = 0
_SEQ: Final = 1
_DEADLINE: Final = 2
_WINDOWED_F: Final = 3
_INTERNAL: Final = 4


class SmppConnection:
    """One SMPP session, either role; see the module docstring."""

    def __init__(self, role: Role, config: SessionConfig | None = None, *, now: float | None = None) -> None:
        """``now`` is when the connection opened (it starts the bind and inactivity timers).

        Without it the timers start at the first call that passes ``now``.
        """
        self.role: Final = role
        self.config: Final = config if config is not None else SessionConfig()
        self._framer = Framer(self.config.max_command_length)
        self._events: deque[Event] = deque()
        self._out: list[bytes] = []
        self._send_table = {st: ALLOWED[(role, Direction.SEND, st)] for st in S}
        self._recv_table = {st: ALLOWED[(role, Direction.RECEIVE, st)] for st in S}
        # the rows of the current state (hashing an Enum costs ~0.5 us: look them up on change only)
        self._state = S.OPEN
        self._send_ok = self._send_table[S.OPEN]
        self._recv_ok = self._recv_table[S.OPEN]
        self._bound = False
        self._pre_bound = True
        # our requests
        self._seq = 0
        self._seq_wrapped = False
        self._inflight: dict[int, _InFlight] = {}
        self._deadlines: deque[_InFlight] = deque()  # send order == deadline order
        self._windowed = 0
        #: our windowed requests that may be in flight at once; settable at any time, wider or narrower
        #: (a window narrowed below what is in flight lets nothing through until enough are answered)
        self.window_size = self.config.window_size
        self._enquiries = 0  # enquire_links in flight
        # the peer's requests that the driver still has to answer: seq -> response command_id
        self._owed: dict[int, int] = {}
        self._owed_more: dict[int, list[int]] = {}  # the peer reused a sequence number still owed
        self._bind_request: Pdu | None = None
        # the stream lost sync while requests received before the bad octets were still owed: nothing more
        # is read or sent but their responses, then generic_nack and close (see sync_lost)
        self._lost: FramingError | None = None
        self._lost_deadline = 0.0
        self._opened_at: float | None = None
        self._last_rx = 0.0
        if now is not None:
            self._start(now)

    # ------------------------------------------------------------------ introspection

    @property
    def state(self) -> SessionState:
        return self._state

    @property
    def window_available(self) -> int:
        """How many more windowed requests :meth:`send` accepts now (none after lost sync)."""
        n = self.window_size - self._windowed
        return n if n > 0 and self._lost is None else 0

    @property
    def in_flight(self) -> int:
        """Our requests awaiting a response (windowed or not, the core's enquire_link included)."""
        return len(self._inflight)

    @property
    def sync_lost(self) -> FramingError | None:
        """The framing error behind which the connection is finishing, else ``None``.

        Octets that cannot be framed end the connection (``generic_nack ESME_RINVCMDLEN``, then
        :class:`ConnectionClosed` ``FRAMING_ERROR``).  When requests received before them (the same read or
        earlier) are still owed, their responses go first: until the last one is sent (or
        ``response_timeout`` has passed) the connection reads nothing more and sends nothing but responses;
        then the generic_nack and the close follow.  A valid submit_sm followed by garbage is answered --
        a message the driver accepted is never left without its response."""
        return self._lost

    @property
    def owed_responses(self) -> int:
        """The peer's requests that the driver has not answered yet."""
        return len(self._owed) + sum(len(v) for v in self._owed_more.values())

    @property
    def bind_request(self) -> Pdu | None:
        """The bind in flight (state BINDING), else ``None``."""
        return self._bind_request

    # ------------------------------------------------------------------ the sans-IO API

    def receive_data(self, data: bytes | bytearray | memoryview, now: float) -> None:
        """Feed bytes from the transport; ``b""`` means the peer closed its side."""
        if self._state is _CLOSED:
            return
        if self._opened_at is None:
            self._start(now)
        if self._lost is not None and data:
            return  # past the bad octets: nothing more can be framed
        if not data:
            held = self._framer.buffered
            detail = f"{held} octets of an incomplete PDU discarded" if held else ""
            self._close(CloseReason.UNBOUND if self._state is S.UNBOUND else CloseReason.PEER_CLOSED, detail)
            return
        try:
            buf, offsets = self._framer.feed(data)
        except FramingError as exc:
            self._sync_lost(exc, now)
            return
        if offsets:
            self._last_rx = now
            for off in offsets:
                # decode and dispatch inline (one call less per PDU)
                try:
                    pdu = decode_pdu(buf, off)
                except Exception as exc:
                    self._decode_failed(exc, buf, off)
                    continue
                if pdu.command_id & RESPONSE_BIT:
                    self._receive_response(pdu)
                else:
                    self._receive_request(pdu)
        if self._framer.error is not None:
            self._sync_lost(self._framer.error, now)

    def next_event(self) -> Event | None:
        """The next event, or ``None`` when there is none (feed more data or wait for the timer)."""
        return self._events.popleft() if self._events else None

    def send(self, pdu: Pdu, now: float) -> int:
        """Queue ``pdu``; return its sequence_number.

        A request gets the next free sequence number (written into ``pdu``); a
        response must answer a request we received and still owe (generic_nack
        may also answer anything).  Raises :class:`LocalProtocolError` if the
        command is not allowed in this state for our role, or the connection is
        closed; :class:`WindowFullError` if the window is full;
        ``codec.PduEncodeError`` if a field cannot be encoded (nothing is queued
        then).
        """
        state = self._state
        if state is _CLOSED:
            raise LocalProtocolError("the connection is closed")
        if self._opened_at is None:
            self._start(now)
        cid = pdu.command_id
        if cid not in self._send_ok:
            raise LocalProtocolError(f"{self.role.name} cannot send {C(cid).name} in state {state.name}")
        if cid & RESPONSE_BIT:
            return self._send_response(pdu)
        return self._send_request(pdu, now, False)

    def data_to_send(self) -> bytes:
        """Everything queued for the peer since the last call (possibly ``b""``)."""
        out = self._out
        if not out:
            return b""
        data = out[0] if len(out) == 1 else b"".join(out)
        out.clear()
        return data

    def get_timer(self) -> float | None:
        """When :meth:`handle_timer` must next be called (absolute, the caller's clock), or ``None``."""
        if self._state is _CLOSED or self._opened_at is None:
            return None
        if self._lost is not None:
            return self._lost_deadline
        cfg = self.config
        t = self._first_deadline()
        if cfg.inactivity_timeout is not None:
            t = _earliest(t, self._last_rx + cfg.inactivity_timeout)
        if cfg.bind_timeout is not None and self.role is Role.SMSC and self._pre_bound:
            t = _earliest(t, self._opened_at + cfg.bind_timeout)
        if cfg.enquire_link_interval is not None and self._bound and not self._enquiries:
            t = _earliest(t, self._last_rx + cfg.enquire_link_interval)
        return t

    def handle_timer(self, now: float) -> None:
        """Act on every deadline that is due at ``now`` (calling it early is harmless)."""
        if self._state is _CLOSED:
            return
        if self._opened_at is None:
            self._start(now)
            return
        if self._lost is not None:
            if now >= self._lost_deadline:
                n = self.owed_responses
                self._lost_sync(
                    self._lost, f" ({n} response(s) still owed after {self.config.response_timeout}s)"
                )
            return
        cfg = self.config
        while True:
            first = self._first_deadline_entry()
            if first is None or first[_DEADLINE] > now:
                break
            self._retire(first)
            req = first[_PDU]
            if not first[_INTERNAL]:
                self._events.append(ResponseTimeout(req))
            rcid = req.command_id
            if rcid == _ENQUIRE_LINK:
                self._close(
                    CloseReason.ENQUIRE_LINK_TIMEOUT,
                    f"no enquire_link_resp within {cfg.response_timeout}s: the link is dead",
                )
                return
            if rcid in BIND_STATE or rcid == _UNBIND:
                self._close(CloseReason.RESPONSE_TIMEOUT, f"no response to {C(rcid).name}")
                return
        if cfg.inactivity_timeout is not None and now >= self._last_rx + cfg.inactivity_timeout:
            self._close(CloseReason.INACTIVITY_TIMEOUT, f"nothing received for {cfg.inactivity_timeout}s")
            return
        if (
            cfg.bind_timeout is not None
            and self.role is Role.SMSC
            and self._pre_bound
            and now >= self._opened_at + cfg.bind_timeout
        ):
            self._close(CloseReason.BIND_TIMEOUT, f"not bound within {cfg.bind_timeout}s")
            return
        if (
            cfg.enquire_link_interval is not None
            and self._bound
            and not self._enquiries
            and now >= self._last_rx + cfg.enquire_link_interval
        ):
            self._send_request(EnquireLink(), now, True)

    def close(self) -> None:
        """The driver closed (or is closing) the transport: state CLOSED, :class:`ConnectionClosed`."""
        self._close(CloseReason.UNBOUND if self._state is S.UNBOUND else CloseReason.LOCAL, "")

    # ------------------------------------------------------------------ sending

    def _send_request(self, pdu: Pdu, now: float, internal: bool) -> int:
        cid = pdu.command_id
        inflight = self._inflight
        if cid in _WINDOWED:  # the per-message path: submit_sm, deliver_sm, ...
            if self._windowed >= self.window_size:
                raise WindowFullError(f"window of {self.window_size} requests is full")
            seq = self._seq + 1
            if seq > MAX_SEQUENCE_NUMBER or seq in inflight:
                seq = self._next_seq()
            else:
                self._seq = seq
            pdu.sequence_number = seq
            self._out.append(encode_pdu(pdu))  # raises before anything else changes
            entry = (pdu, seq, now + self.config.response_timeout, True, internal)
            inflight[seq] = entry
            self._deadlines.append(entry)
            self._windowed += 1
            return seq
        seq = self._next_seq()
        pdu.sequence_number = seq
        self._out.append(encode_pdu(pdu))  # raises before anything else changes
        if cid not in _NO_RESPONSE:
            entry = (pdu, seq, now + self.config.response_timeout, False, internal)
            inflight[seq] = entry
            self._deadlines.append(entry)
            if cid == _ENQUIRE_LINK:
                self._enquiries += 1
        if cid in BIND_STATE:
            self._enter(S.BINDING)
            self._bind_request = pdu
        elif cid == _UNBIND:
            self._enter(S.UNBINDING)
        elif cid == _OUTBIND:
            self._enter(S.OUTBOUND)
        return seq

    def _send_response(self, pdu: Pdu) -> int:
        cid = pdu.command_id
        seq = pdu.sequence_number
        owed = self._owed.get(seq)
        if cid == _GENERIC_NACK:
            self._out.append(encode_pdu(pdu))
            if owed is not None:
                self._settle_owed(seq, owed)
                if owed in _BIND_RESPONSES:
                    self._bind_answered(pdu)
                if self._lost is not None and not self._owed:
                    self._lost_sync(self._lost)
            return seq
        if owed is None or (owed != cid and cid not in self._owed_more.get(seq, ())):
            raise LocalProtocolError(f"no {C(cid).name} is owed for sequence_number {seq}")
        self._out.append(encode_pdu(pdu))
        if self._owed_more:
            self._settle_owed(seq, cid)
        else:  # _settle_owed without a reused sequence number
            del self._owed[seq]
        if cid in _BIND_RESPONSES:
            self._bind_answered(pdu)
        if self._lost is not None and not self._owed:  # the last response owed before the bad octets
            self._lost_sync(self._lost)
        return seq

    def _bind_answered(self, response: Pdu) -> None:
        """SMSC role: we answered the bind in flight."""
        request = self._bind_request
        assert request is not None  # a bind response is only owed while BINDING
        self._bind_request = None
        if response.command_id != _GENERIC_NACK and response.command_status == 0:
            self._enter(BIND_STATE[request.command_id])
            self._events.append(Bound(self._state, request, response))
        else:
            self._enter(S.OPEN)
            self._events.append(BindFailed(request, response))

    def _next_seq(self) -> int:
        seq = self._seq
        inflight = self._inflight
        while True:
            if seq >= MAX_SEQUENCE_NUMBER:
                seq = 1
                self._seq_wrapped = True
            else:
                seq += 1
            if seq not in inflight:
                break
        self._seq = seq
        return seq

    def _emit(self, pdu: Pdu) -> None:
        self._out.append(encode_pdu(pdu))

    def _answer_error(self, cid: int, seq: int, status: int) -> Pdu:
        """Answer a request the core refuses: its own *_resp, or generic_nack if it has none."""
        try:
            cls = response_class(cid)
        except KeyError:
            cls = GenericNack
        answer = cls(sequence_number=seq, command_status=status)
        self._emit(answer)
        return answer

    # ------------------------------------------------------------------ receiving

    def _decode_failed(self, exc: Exception, buf: bytes, off: int) -> None:
        """``decode_pdu(buf, off)`` raised ``exc`` (the PDU itself was framed)."""
        if isinstance(exc, UnknownCommandError):
            nack = GenericNack(sequence_number=exc.sequence_number or 0, command_status=exc.status)
            self._emit(nack)
            self._events.append(ProtocolViolation(exc, nack))
        elif isinstance(exc, ProtocolError):  # PduDecodeError (FramingError cannot happen on a framed PDU)
            self._undecodable(exc, buf, off)
        else:  # a decoder bug must not take the session down
            err = ProtocolError(_RSYSERR, f"decoder failed: {exc!r}")
            err.__cause__ = exc
            self._undecodable(err, buf, off)

    def _undecodable(self, exc: ProtocolError, buf: bytes, off: int) -> None:
        cid = exc.command_id
        seq = exc.sequence_number
        if cid is None or seq is None:
            cid = int.from_bytes(buf[off + 4 : off + 8], "big")
            seq = int.from_bytes(buf[off + 12 : off + 16], "big")
        if cid & RESPONSE_BIT:
            # a response we cannot read: nothing to answer; the request stays in flight and
            # times out (its outcome is unknown)
            self._events.append(ProtocolViolation(exc, None))
            return
        status = exc.status
        refusal = self._refusal_status(cid)
        if (
            refusal is None
            and cid in _KEEP_TLVS_CMDS
            and status in _TLV_STATUSES
            and self.role is Role.ESME
            and self.config.keep_odd_tlvs
        ):
            try:
                pdu = decode_pdu_keeping_tlvs(buf, off)
            except ProtocolError:
                pass
            else:
                self._events.append(ProtocolViolation(exc, None, pdu))  # logged; taken as received
                self._receive_request(pdu)
                return
        if refusal is not None:  # the state error comes first
            status = refusal
            state_error = StateError(
                status, f"{_name(cid)} not allowed in {self._state.name}", command_id=cid, sequence_number=seq
            )
            state_error.__cause__ = exc  # the body was bad as well
            exc = state_error
        answer = self._answer_error(cid, seq, status)
        self._events.append(ProtocolViolation(exc, answer))

    def _refusal_status(self, cid: int) -> int | None:
        """``None`` if the peer may send ``cid`` now, else the status to refuse it with."""
        state = self._state
        if cid in self._recv_ok:
            return None
        if cid in BIND_STATE and self.role is Role.SMSC and (state is S.BINDING or state in BOUND_STATES):
            return _RALYBND
        return _RINVBNDSTS

    def _receive_request(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        if cid in self._recv_ok and cid not in _SPECIAL_REQUESTS:  # submit_sm, deliver_sm, ...
            seq = pdu.sequence_number
            owed = self._owed
            if seq in owed:
                self._owed_more.setdefault(seq, []).append(cid | RESPONSE_BIT)
            else:
                owed[seq] = cid | RESPONSE_BIT
            ev = _new(RequestReceived)
            _set_rq_pdu(ev, pdu)
            self._events.append(ev)
            return
        seq = pdu.sequence_number
        events = self._events
        if cid not in self._recv_ok:
            status = self._refusal_status(cid)
            assert status is not None
            answer = self._answer_error(cid, seq, status)
            err = StateError(
                status,
                f"{C(cid).name} not allowed in {self._state.name}",
                command_id=cid,
                sequence_number=seq,
            )
            events.append(ProtocolViolation(err, answer, pdu))
            return
        if cid == _ENQUIRE_LINK:
            self._emit(EnquireLinkResp(sequence_number=seq))
            return
        if cid == _UNBIND:
            self._emit(UnbindResp(sequence_number=seq))
            self._enter(S.UNBOUND)
            events.append(Unbound(True, pdu))
            return
        if cid in _NO_RESPONSE:
            if cid == _OUTBIND:
                self._enter(S.OUTBOUND)
            events.append(RequestReceived(pdu))
            return
        if cid in BIND_STATE:
            self._enter(S.BINDING)
            self._bind_request = pdu
        rcid = cid | RESPONSE_BIT
        if seq in self._owed:
            self._owed_more.setdefault(seq, []).append(rcid)
        else:
            self._owed[seq] = rcid
        events.append(RequestReceived(pdu))

    def _receive_response(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        events = self._events
        if cid not in self._recv_ok:
            events.append(UnexpectedResponse(pdu, UnexpectedReason.NOT_ALLOWED_IN_STATE))
            return
        seq = pdu.sequence_number
        entry = self._inflight.get(seq)
        if entry is None:
            reason = (
                UnexpectedReason.NOT_IN_FLIGHT if self._issued(seq) else UnexpectedReason.UNKNOWN_SEQUENCE
            )
            events.append(UnexpectedResponse(pdu, reason))
            return
        request = entry[_PDU]
        rcid = request.command_id
        if cid != rcid | RESPONSE_BIT and cid != _GENERIC_NACK:
            events.append(UnexpectedResponse(pdu, UnexpectedReason.COMMAND_MISMATCH))
            return
        if entry[_WINDOWED_F]:  # the per-message path: _retire inlined, a ResponseReceived
            del self._inflight[seq]
            self._windowed -= 1
            d = self._deadlines
            if d and d[0] is entry:
                d.popleft()
            if not entry[_INTERNAL]:
                ev = _new(ResponseReceived)
                _set_rs_pdu(ev, pdu)
                _set_rs_request(ev, request)
                events.append(ev)
            return
        self._retire(entry)
        if rcid in BIND_STATE:
            self._bind_request = None
            if cid == _GENERIC_NACK or pdu.command_status != 0:
                self._enter(S.OPEN)
                events.append(BindFailed(request, pdu))
            else:
                self._enter(BIND_STATE[rcid])
                events.append(Bound(self._state, request, pdu))
        elif rcid == _UNBIND:
            if self._state is S.UNBINDING:  # else a crossing unbind already got us to UNBOUND
                self._enter(S.UNBOUND)
                events.append(Unbound(False, pdu))
        elif not entry[_INTERNAL]:
            events.append(ResponseReceived(pdu, request))

    # ------------------------------------------------------------------ bookkeeping

    def _enter(self, state: SessionState) -> None:
        self._state = state
        self._send_ok = self._send_table[state]
        if self._lost is not None:  # finishing after lost sync: responses only, whatever the state
            self._send_ok = frozenset(c for c in self._send_ok if c & RESPONSE_BIT)
        self._recv_ok = self._recv_table[state]
        self._bound = state in BOUND_STATES
        self._pre_bound = state in _PRE_BOUND

    def _start(self, now: float) -> None:
        self._opened_at = now
        self._last_rx = now

    def _issued(self, seq: int) -> bool:
        return 1 <= seq <= MAX_SEQUENCE_NUMBER and (self._seq_wrapped or seq <= self._seq)

    def _retire(self, entry: _InFlight) -> None:
        del self._inflight[entry[_SEQ]]
        if entry[_WINDOWED_F]:
            self._windowed -= 1
        elif entry[_PDU].command_id == _ENQUIRE_LINK:
            self._enquiries -= 1
        d = self._deadlines
        if d and d[0] is entry:
            d.popleft()

    def _first_deadline_entry(self) -> _InFlight | None:
        d = self._deadlines
        inflight = self._inflight
        while d:
            e = d[0]
            if inflight.get(e[_SEQ]) is e:
                return e
            d.popleft()  # answered already: dropped lazily
        return None

    def _first_deadline(self) -> float | None:
        e = self._first_deadline_entry()
        return None if e is None else e[_DEADLINE]

    def _settle_owed(self, seq: int, cid: int) -> None:
        more = self._owed_more.get(seq) if self._owed_more else None
        if more is None:
            del self._owed[seq]
            return
        if self._owed[seq] == cid or cid == _GENERIC_NACK:
            self._owed[seq] = more.pop(0)
        else:
            more.remove(cid)
        if not more:
            del self._owed_more[seq]

    def _sync_lost(self, exc: FramingError, now: float) -> None:
        """The stream cannot be framed any more: close now, or answer what is owed first (sync_lost)."""
        if not self._owed:
            self._lost_sync(exc)
            return
        self._lost = exc
        self._lost_deadline = now + self.config.response_timeout
        self._enter(self._state)  # only responses may be sent from now on

    def _lost_sync(self, exc: FramingError, note: str = "") -> None:
        nack = GenericNack(sequence_number=exc.sequence_number or 0, command_status=_RINVCMDLEN)
        self._emit(nack)
        self._events.append(ProtocolViolation(exc, nack))
        self._close(CloseReason.FRAMING_ERROR, str(exc) + note)

    def _close(self, reason: CloseReason, detail: str) -> None:
        if self._state is _CLOSED:
            return
        unanswered = tuple(e[_PDU] for e in self._inflight.values() if not e[_INTERNAL])
        self._inflight.clear()
        self._deadlines.clear()
        self._windowed = 0
        self._enquiries = 0
        self._owed.clear()
        self._owed_more.clear()
        self._bind_request = None
        self._enter(S.CLOSED)
        self._events.append(ConnectionClosed(reason, detail, unanswered))


def _earliest(a: float | None, b: float) -> float:
    return b if a is None or b < a else a


def _name(cid: int) -> str:
    try:
        return C(cid).name
    except ValueError:
        return f"0x{cid:08X}"
