"""The protocol error tree.

Every error the protocol core raises about peer input carries the
``command_status`` to answer with, so the session can always reply instead of
crashing:

* :class:`FramingError` -- the byte stream lost sync (impossible command_length);
  answer ``generic_nack`` and close.
* :class:`UnknownCommandError` -- a well-framed PDU with a command_id we do not
  know; answer ``generic_nack`` ``ESME_RINVCMDID``, session stays up.
* :class:`PduDecodeError` -- a known command whose body is invalid; answer the
  command's own ``*_resp`` with the status of the bad field, session stays up.
* :class:`StateError` -- a command not allowed in the current bind state.
"""

from __future__ import annotations

from catalyst_smpp.protocol.constants import CommandStatus, status_name


class SmppError(Exception):
    """Base of every error raised by catalyst_smpp's protocol layer."""


class ProtocolError(SmppError):
    """Peer input that violates SMPP; ``status`` is the command_status to answer with."""

    def __init__(
        self,
        status: int,
        message: str = "",
        *,
        command_id: int | None = None,
        sequence_number: int | None = None,
        field: str | None = None,
    ) -> None:
        self.status = status
        self.command_id = command_id
        self.sequence_number = sequence_number
        self.field = field
        text = message or status_name(status)
        super().__init__(f"{status_name(status)}: {text}" if message else text)


class FramingError(ProtocolError):
    """The stream cannot be framed any more (bad command_length): nack and close."""

    def __init__(self, message: str, *, command_length: int | None = None) -> None:
        super().__init__(CommandStatus.ESME_RINVCMDLEN, message)
        self.command_length = command_length


class UnknownCommandError(ProtocolError):
    """A framed PDU whose command_id is not an SMPP command: generic_nack ESME_RINVCMDID."""

    def __init__(self, command_id: int, sequence_number: int) -> None:
        super().__init__(
            CommandStatus.ESME_RINVCMDID,
            f"unknown command_id 0x{command_id:08X}",
            command_id=command_id,
            sequence_number=sequence_number,
        )


class PduDecodeError(ProtocolError):
    """A known command whose body is invalid: answer its own *_resp with ``status``."""


class StateError(ProtocolError):
    """A command that the session's bind state does not allow."""


class LocalProtocolError(SmppError):
    """Our own side tried to do something the protocol forbids (a bug in the caller)."""


class WindowFullError(LocalProtocolError):
    """A request was sent while the in-flight window was full."""
