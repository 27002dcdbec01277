"""Errors raised by the trio session driver to the code that uses a session."""

from __future__ import annotations

from catalyst_smpp.protocol.constants import status_name
from catalyst_smpp.protocol.events import CloseReason
from catalyst_smpp.protocol.pdu import Pdu

__all__ = ["BindError", "NotBoundError", "ResponseTimeoutError", "SessionClosedError", "SessionError"]


class SessionError(Exception):
    """Base of the errors of :mod:`catalyst_smpp.transport`, the server and the client."""


class SessionClosedError(SessionError):
    """The session is closed (or closed while the request was in flight: its outcome is unknown)."""

    def __init__(self, reason: CloseReason | None, detail: str = "", *, sent: bool = False) -> None:
        self.reason = reason
        self.detail = detail
        #: whether the request had been handed to the core (and so may have reached the peer)
        self.sent = sent
        what = reason.value if reason is not None else "closed"
        super().__init__(f"session closed ({what}{': ' + detail if detail else ''})")


class ResponseTimeoutError(SessionError):
    """``request`` got no response within the session's response_timeout."""

    def __init__(self, request: Pdu) -> None:
        self.request = request
        super().__init__(f"no response to {request.command_id.name} seq={request.sequence_number}")


class BindError(SessionError):
    """The peer refused our bind with ``status`` (``response`` is its bind response or generic_nack)."""

    def __init__(self, status: int, response: Pdu | None = None) -> None:
        self.status = status
        self.response = response
        super().__init__(f"bind refused: {status_name(status)}")


class NotBoundError(SessionError):
    """No bound session can carry the request (none bound, or the client/server is closed)."""
