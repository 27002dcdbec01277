"""The SMPP server's authenticator backed by the Postgres partners (through the current config snapshot)."""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Callable
from typing import Final

import trio

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.server.auth import Account, BindRequest
from catalyst_smpp.store.passwords import VerifiedPasswords
from catalyst_smpp.store.records import AuthResult, Partner, authenticate

__all__ = ["PostgresAuthenticator", "account_for", "peer_ip"]

log = logging.getLogger(__name__)

_STATUS: Final[dict[AuthResult, int]] = {
    AuthResult.UNKNOWN_SYSTEM_ID: int(CommandStatus.ESME_RINVSYSID),
    AuthResult.BAD_PASSWORD: int(CommandStatus.ESME_RINVPASWD),
    AuthResult.DISABLED: int(CommandStatus.ESME_RBINDFAIL),
    AuthResult.ADDRESS_NOT_ALLOWED: int(CommandStatus.ESME_RBINDFAIL),
}
_RBINDFAIL: Final = int(CommandStatus.ESME_RBINDFAIL)


def peer_ip(peer: str) -> str | None:
    """The IP address of a session's ``host:port`` / ``[v6]:port`` peer name; None when it is not one."""
    host = peer
    if peer.startswith("["):
        end = peer.find("]")
        host = peer[1:end] if end > 0 else ""
    elif peer.count(":") == 1:
        host = peer.rsplit(":", 1)[0]
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return None


def account_for(partner: Partner) -> Account:
    """The server account (limits) of a partner."""
    return Account(
        system_id=partner.system_id,
        password=None,
        max_binds=partner.max_binds if partner.max_binds > 0 else None,
        throttle_rate=partner.throttle_rate if partner.throttle_rate > 0 else None,
        throttle_burst=float(partner.throttle_burst) if partner.throttle_burst > 0 else None,
        deliver_window=partner.window if partner.window > 0 else None,
    )


class PostgresAuthenticator:
    """Checks binds against the partner records of the current snapshot.

    ``partners(system_id)`` returns the partner of the current snapshot (or None); the scrypt check runs in a
    worker thread.  Unknown system_id → ``ESME_RINVSYSID``, wrong password → ``ESME_RINVPASWD``, disabled
    partner or an address outside ``allowed_ips`` → ``ESME_RBINDFAIL``.  ``bound_counter(system_id)``, when
    given, counts the partner's binds already held (e.g. over all nodes); at ``max_binds`` the bind is refused
    with ``ESME_RBINDFAIL`` (the server also enforces ``max_binds`` per node).  Passwords that passed are
    remembered (:class:`VerifiedPasswords`), so the rebinds after a network blip do not queue behind one
    scrypt check each.
    """

    def __init__(
        self,
        partners: Callable[[str], Partner | None],
        *,
        bound_counter: Callable[[str], int] | None = None,
    ) -> None:
        self.partners = partners
        self.bound_counter = bound_counter
        self.refused = 0
        self.verified = VerifiedPasswords()

    async def authenticate(self, bind: BindRequest) -> Account | int:
        partner = self.partners(bind.system_id)
        ip = peer_ip(bind.peer)
        if partner is not None and partner.allowed_ips and ip is None:
            # an address we cannot read (memory stream, unix socket) never passes an IP restriction
            check_ip: str | None = "0.0.0.0"
            unreadable = True
        else:
            check_ip = ip
            unreadable = False
        result = await trio.to_thread.run_sync(authenticate, partner, bind.password, check_ip, self.verified)
        if result is AuthResult.OK and unreadable:
            result = AuthResult.ADDRESS_NOT_ALLOWED
        if result is not AuthResult.OK:
            self.refused += 1
            log.info("bind of %r from %s refused: %s", bind.system_id, bind.peer, result.value)
            return _STATUS[result]
        assert partner is not None
        if self.bound_counter is not None and partner.max_binds > 0:
            if self.bound_counter(partner.system_id) >= partner.max_binds:
                self.refused += 1
                log.info("bind of %r refused: max_binds %d reached", partner.system_id, partner.max_binds)
                return _RBINDFAIL
        return account_for(partner)
