"""Accounts and bind authentication for the SMPP server."""

from __future__ import annotations

import hmac
from collections.abc import Iterable
from typing import Any, Protocol

import attrs

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.transport.session import BindType

__all__ = ["Account", "Authenticator", "BindRequest", "StaticAuthenticator"]


def _opt_positive(_inst: Any, attr: Any, value: Any) -> None:
    if value is not None and not value > 0:
        raise ValueError(f"{attr.name} must be positive or None, not {value!r}")


@attrs.frozen
class Account:
    """A partner allowed to bind, and its limits."""

    system_id: str
    password: str | None = None
    #: concurrent bound sessions (any bind type); None = unlimited
    max_binds: int | None = attrs.field(default=None, validator=_opt_positive)
    #: submit_sm / data_sm / submit_multi per second over all its sessions; None = unlimited
    throttle_rate: float | None = attrs.field(default=None, validator=_opt_positive)
    #: token bucket size; None = max(1, throttle_rate)
    throttle_burst: float | None = attrs.field(default=None, validator=_opt_positive)
    #: our deliver_sm window on each of its sessions; None = the server's session window_size
    deliver_window: int | None = attrs.field(default=None, validator=_opt_positive)


@attrs.frozen
class BindRequest:
    """What an authenticator sees of a bind."""

    system_id: str
    password: str
    system_type: str
    bind_type: BindType
    pdu: Pdu
    peer: str


class Authenticator(Protocol):
    async def authenticate(self, bind: BindRequest) -> Account | int:
        """The account to bind as, or the command_status to refuse the bind with."""
        ...


class StaticAuthenticator:
    """Accounts from a fixed list: unknown system_id → ESME_RINVSYSID, wrong password → ESME_RINVPASWD."""

    def __init__(self, accounts: Iterable[Account]) -> None:
        self.accounts: dict[str, Account] = {a.system_id: a for a in accounts}

    async def authenticate(self, bind: BindRequest) -> Account | int:
        account = self.accounts.get(bind.system_id)
        if account is None:
            return int(CommandStatus.ESME_RINVSYSID)
        if account.password is not None and not hmac.compare_digest(
            account.password.encode("latin-1", "replace"), bind.password.encode("latin-1", "replace")
        ):
            return int(CommandStatus.ESME_RINVPASWD)
        return account
