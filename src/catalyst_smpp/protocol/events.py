"""What :class:`~catalyst_smpp.protocol.session.SmppConnection` tells its driver.

``conn.next_event()`` returns these, in the order things happened on the wire.
The core has already sent whatever the protocol obliges (enquire_link_resp,
unbind_resp, generic_nack, error responses); an event never asks the driver to
repeat that.  What the driver must do:

* :class:`RequestReceived` -- answer with ``conn.send(event.pdu.make_response(...), now)``,
  except for ``outbind`` (bind instead) and ``alert_notification`` (no response).
  On the SMSC side this includes the bind requests: the driver authenticates and
  sends the bind response; an OK status binds the session (:class:`Bound`).
* :class:`Bound` / :class:`BindFailed` -- the bind outcome (either role).
* :class:`ResponseReceived` / :class:`ResponseTimeout` -- the outcome of a request
  we sent (not of the core's own enquire_link).
* :class:`Unbound` -- the unbind exchange is complete: flush ``data_to_send()``
  and close the transport.
* :class:`ConnectionClosed` -- the session is over (state CLOSED): flush
  ``data_to_send()`` and close the transport; ``unanswered`` lists our requests
  that never got a response.
* :class:`UnexpectedResponse`, :class:`ProtocolViolation` -- the peer misbehaved;
  the core has handled it (answered if there was anything to answer), they are
  for logs and metrics.
"""

from __future__ import annotations

import enum

import attrs

from catalyst_smpp.protocol.errors import ProtocolError
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.protocol.states import SessionState

__all__ = [
    "BindFailed",
    "Bound",
    "CloseReason",
    "ConnectionClosed",
    "Event",
    "ProtocolViolation",
    "RequestReceived",
    "ResponseReceived",
    "ResponseTimeout",
    "Unbound",
    "UnexpectedReason",
    "UnexpectedResponse",
]


class Event:
    """Base of every session event."""

    __slots__ = ()


@attrs.frozen
class RequestReceived(Event):
    """The peer sent a request (or outbind / alert_notification) that the current state allows."""

    pdu: Pdu


@attrs.frozen
class ResponseReceived(Event):
    """A response (or a generic_nack) to ``request``, which we sent earlier."""

    pdu: Pdu
    request: Pdu


@attrs.frozen
class ResponseTimeout(Event):
    """``request`` got no response within ``response_timeout``; it is no longer in flight.

    A response arriving later is reported as :class:`UnexpectedResponse`.
    """

    request: Pdu


class UnexpectedReason(enum.Enum):
    UNKNOWN_SEQUENCE = "unknown_sequence"  # we never issued that sequence number
    NOT_IN_FLIGHT = "not_in_flight"  # issued, but already answered or timed out (duplicate / late)
    COMMAND_MISMATCH = "command_mismatch"  # in flight, but for a different command (request kept)
    NOT_ALLOWED_IN_STATE = "not_allowed_in_state"  # this response cannot arrive in our state


@attrs.frozen
class UnexpectedResponse(Event):
    """A response that answers nothing we have in flight; dropped (responses are never answered)."""

    pdu: Pdu
    reason: UnexpectedReason


@attrs.frozen
class ProtocolViolation(Event):
    """The peer sent something invalid; the core answered it with ``answered_with`` (if anything).

    ``error.status`` is the command_status used; ``pdu`` is the offending PDU when
    it could be decoded (a request in the wrong state), else ``None``.
    """

    error: ProtocolError
    answered_with: Pdu | None
    pdu: Pdu | None = None


@attrs.frozen
class Bound(Event):
    """The session is bound (``state`` is BOUND_TX / BOUND_RX / BOUND_TRX)."""

    state: SessionState
    request: Pdu
    response: Pdu


@attrs.frozen
class BindFailed(Event):
    """A bind was answered with an error status (or generic_nack); the session is OPEN again."""

    request: Pdu
    response: Pdu


@attrs.frozen
class Unbound(Event):
    """The unbind exchange is complete (state UNBOUND): flush and close the transport.

    ``by_peer`` tells who sent the unbind; ``pdu`` is the peer's unbind (by_peer)
    or its unbind_resp.
    """

    by_peer: bool
    pdu: Pdu


class CloseReason(enum.Enum):
    UNBOUND = "unbound"  # closed after a completed unbind exchange
    LOCAL = "local"  # the driver called close()
    PEER_CLOSED = "peer_closed"  # EOF from the peer
    FRAMING_ERROR = "framing_error"  # impossible command_length: stream lost sync
    ENQUIRE_LINK_TIMEOUT = "enquire_link_timeout"  # an enquire_link went unanswered: link dead
    INACTIVITY_TIMEOUT = "inactivity_timeout"  # nothing received for inactivity_timeout
    BIND_TIMEOUT = "bind_timeout"  # SMSC role: not bound within bind_timeout of opening
    RESPONSE_TIMEOUT = "response_timeout"  # our bind or unbind went unanswered


@attrs.frozen
class ConnectionClosed(Event):
    """The session is over (state CLOSED).  Emitted exactly once.

    ``unanswered`` holds every request we sent that never got its response (in
    the order sent), so the driver can retry or fail them.
    """

    reason: CloseReason
    detail: str = ""
    unanswered: tuple[Pdu, ...] = ()
