"""Session states, roles, and the table of which commands each state allows.

``ALLOWED[(role, direction, state)]`` is the set of command ids a connection
playing ``role`` may send (Direction.SEND) or accept (Direction.RECEIVE) while
in ``state``.  It is built from a per-sender list that mirrors the spec.

Sources: SMPP v3.4 section 2.3 (the "required state" of every PDU and who may
issue it) and section 4; the v5.0 refinements the v3.4 text left open, which
peers rely on in practice, are taken where v3.4 is silent or ambiguous:

* ``data_sm`` goes ESME -> SMSC in BOUND_TX/BOUND_TRX and SMSC -> ESME in
  BOUND_RX/BOUND_TRX (the direction follows the bind, as for submit_sm/deliver_sm).
* ``enquire_link`` and ``generic_nack`` are allowed in every state in which the
  connection is open, bound or not (v5.0 allows enquire_link in OPEN/OUTBOUND).
* After an ``outbind`` (OUTBOUND) the ESME binds with ``bind_receiver`` or
  ``bind_transceiver``.

Two states exist only because the session is asynchronous: BINDING (a bind
request is in flight: the ESME sent it, the SMSC received it and has not
answered yet) and UNBINDING (we sent unbind and wait for unbind_resp).

Responses are listed in every state in which one may still arrive: the states
in which its request is allowed, plus the ones the session can move to while
the request is in flight (BINDING for bind responses; UNBINDING and UNBOUND for
everything sent while bound).  The session additionally matches every response
against a request in flight (by sequence number), so the table is the coarse
gate and the match the fine one.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Final

from catalyst_smpp.protocol.constants import CommandId

__all__ = [
    "ALLOWED",
    "BIND_STATE",
    "BOUND_STATES",
    "LIVE_STATES",
    "Direction",
    "Role",
    "SessionState",
    "is_allowed",
]


class Role(enum.Enum):
    """Which end of SMPP this connection plays (independent of who opened the TCP connection)."""

    ESME = "esme"
    SMSC = "smsc"

    @property
    def peer(self) -> Role:
        return Role.SMSC if self is Role.ESME else Role.ESME


class SessionState(enum.Enum):
    OPEN = "open"  # connected, not bound
    OUTBOUND = "outbound"  # outbind sent (SMSC) / received (ESME); the ESME binds next
    BINDING = "binding"  # a bind request is in flight
    BOUND_TX = "bound_tx"
    BOUND_RX = "bound_rx"
    BOUND_TRX = "bound_trx"
    UNBINDING = "unbinding"  # we sent unbind, unbind_resp not yet received
    UNBOUND = "unbound"  # unbind exchange done: flush and close the transport
    CLOSED = "closed"

    @property
    def is_bound(self) -> bool:
        return self in BOUND_STATES


S = SessionState
C = CommandId

BOUND_STATES: Final = frozenset({S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX})
LIVE_STATES: Final = frozenset(S) - {S.CLOSED}

#: the state a successful bind of each kind leads to
BIND_STATE: Final[Mapping[int, SessionState]] = {
    C.bind_transmitter: S.BOUND_TX,
    C.bind_receiver: S.BOUND_RX,
    C.bind_transceiver: S.BOUND_TRX,
}

_TX: Final = (S.BOUND_TX, S.BOUND_TRX)
_RX: Final = (S.BOUND_RX, S.BOUND_TRX)
_BOUND: Final = (S.BOUND_TX, S.BOUND_RX, S.BOUND_TRX)
_NOT_BOUND: Final = (S.OPEN, S.OUTBOUND, S.BINDING)
_E, _M = Role.ESME, Role.SMSC

# The spec part: (sender, command, states in which that sender may issue it), for the states
# both ends agree on (OPEN, OUTBOUND, BINDING, BOUND_*).  Responses are allowed in the states
# in which their request may still be unanswered.
_RULES: Final[tuple[tuple[Role, CommandId, tuple[SessionState, ...]], ...]] = (
    # session management (4.1); a bind answered with an error status returns to OPEN
    (_E, C.bind_transmitter, (S.OPEN,)),
    (_E, C.bind_receiver, (S.OPEN, S.OUTBOUND)),
    (_E, C.bind_transceiver, (S.OPEN, S.OUTBOUND)),
    (_M, C.bind_transmitter_resp, (S.BINDING,)),
    (_M, C.bind_receiver_resp, (S.BINDING,)),
    (_M, C.bind_transceiver_resp, (S.BINDING,)),
    (_M, C.outbind, (S.OPEN,)),
    (_E, C.unbind, _BOUND),
    (_M, C.unbind, _BOUND),
    (_E, C.unbind_resp, _BOUND),
    (_M, C.unbind_resp, _BOUND),
    (_E, C.enquire_link, (*_NOT_BOUND, *_BOUND)),
    (_M, C.enquire_link, (*_NOT_BOUND, *_BOUND)),
    (_E, C.enquire_link_resp, (*_NOT_BOUND, *_BOUND)),
    (_M, C.enquire_link_resp, (*_NOT_BOUND, *_BOUND)),
    (_E, C.generic_nack, (*_NOT_BOUND, *_BOUND)),
    (_M, C.generic_nack, (*_NOT_BOUND, *_BOUND)),
    # message submission (4.4, 4.5), ESME -> SMSC
    (_E, C.submit_sm, _TX),
    (_M, C.submit_sm_resp, _TX),
    (_E, C.submit_multi, _TX),
    (_M, C.submit_multi_resp, _TX),
    (_E, C.query_sm, _TX),
    (_M, C.query_sm_resp, _TX),
    (_E, C.cancel_sm, _TX),
    (_M, C.cancel_sm_resp, _TX),
    (_E, C.replace_sm, _TX),
    (_M, C.replace_sm_resp, _TX),
    # message delivery (4.6), SMSC -> ESME
    (_M, C.deliver_sm, _RX),
    (_E, C.deliver_sm_resp, _RX),
    (_M, C.alert_notification, _RX),
    # data_sm (4.7): the direction follows the bind
    (_E, C.data_sm, _TX),
    (_M, C.data_sm_resp, _TX),
    (_M, C.data_sm, _RX),
    (_E, C.data_sm_resp, _RX),
)


class Direction(enum.Enum):
    SEND = "send"
    RECEIVE = "receive"


def _late_responses_from(sender: Role) -> set[int]:
    """Responses ``sender`` may owe once the unbind began: all but the bind responses."""
    binds = {cid | 0x80000000 for cid in BIND_STATE}
    return {int(cid) for r, cid, _ in _RULES if r is sender and cid & 0x80000000 and cid not in binds}


def _build() -> dict[tuple[Role, Direction, SessionState], frozenset[int]]:
    table: dict[tuple[Role, Direction, SessionState], set[int]] = {
        (r, d, s): set() for r in Role for d in Direction for s in S
    }
    for sender, cid, states in _RULES:
        for st in states:
            table[(sender, Direction.SEND, st)].add(cid)
            table[(sender.peer, Direction.RECEIVE, st)].add(cid)
    # The two states only one end is in.  UNBINDING: we sent unbind; we send nothing new,
    # answer what is still owed, and accept late responses, a crossing unbind and
    # enquire_link from a peer that has not seen our unbind yet.  UNBOUND: the exchange is
    # over; only late responses either way.  (No bind can be in flight in either state.)
    for role in Role:
        ours, theirs = _late_responses_from(role), _late_responses_from(role.peer)
        table[(role, Direction.SEND, S.UNBINDING)] |= ours
        table[(role, Direction.RECEIVE, S.UNBINDING)] |= theirs | {C.unbind, C.enquire_link}
        table[(role, Direction.SEND, S.UNBOUND)] |= ours
        table[(role, Direction.RECEIVE, S.UNBOUND)] |= theirs
    return {k: frozenset(v) for k, v in table.items()}


#: (our role, direction, our session state) -> the command ids allowed.  CLOSED allows nothing.
ALLOWED: Final[Mapping[tuple[Role, Direction, SessionState], frozenset[int]]] = _build()


def is_allowed(role: Role, direction: Direction, state: SessionState, command_id: int) -> bool:
    """Whether a connection playing ``role`` may send / accept ``command_id`` in ``state``."""
    return command_id in ALLOWED[(role, direction, state)]
