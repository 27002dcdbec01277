"""The SMPP server's authenticator backed by the Postgres partners (through the current config snapshot)."""

from __future__ import annotations

import ipaddress
import logging
from collections import Counter
from collections.abc import Callable
from typing import Final

import trio

from catalyst_smpp.config import LimitsConfig
from catalyst_smpp.gateway.bindguard import FailureTracker, HashGate, return_scrypt_memory
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.server.auth import Account, BindRequest
from catalyst_smpp.store.passwords import VerifiedPasswords
from catalyst_smpp.store.records import AuthResult, Partner, authenticate

__all__ = ["PostgresAuthenticator", "account_for", "peer_ip"]

log = logging.getLogger(__name__)

_RBINDFAIL: Final = int(CommandStatus.ESME_RBINDFAIL)
_OK: Final = AuthResult.OK.value
#: refused without a password check: the source address is locked out / the system_id's turn is too far off
_ADDRESS_LOCKED: Final = "address_locked"
_SYSTEM_ID_SLOWED: Final = "system_id_slowed"


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
    """Checks binds against the partner records of the current snapshot, and keeps failed binds cheap.

    ``partners(system_id)`` returns the partner of the current snapshot (or None).  Every refusal is
    ``ESME_RBINDFAIL``, whatever the reason (unknown system_id, wrong password, disabled, address outside
    ``allowed_ips``, locked out), and is answered no sooner than ``limits.bind_fail_delay`` after the bind
    arrived, so neither the status nor the timing tells which system_ids exist.  The order of the checks:

    1. the source address against the partner's ``allowed_ips``: no hashing for an address that may not
       bind (counted against the address only, so outsiders cannot slow a fenced partner down);
    2. a password that passed lately (:class:`VerifiedPasswords`) passes in microseconds, ahead of every
       queue and slow-down: a partner already known is never held up by a flood;
    3. a source address in slow-down is refused without a check; a system_id in slow-down waits for its
       turn (at most ``limits.bind_slowdown_max`` and half of ``limits.bind_timeout``, sleeping, no thread
       held) or is refused without a check;
    4. scrypt (the same work for an unknown system_id) in a worker thread, at most
       ``limits.bind_hash_threads`` at once.

    ``limits()`` is read at each bind (a config reload applies at once).  ``bound_counter(system_id)``,
    when given, counts the partner's binds already held (e.g. over all nodes); at ``max_binds`` the bind is
    refused with ``ESME_RBINDFAIL`` (the server also enforces ``max_binds`` per node).
    """

    def __init__(
        self,
        partners: Callable[[str], Partner | None],
        *,
        bound_counter: Callable[[str], int] | None = None,
        limits: Callable[[], LimitsConfig] = LimitsConfig,
        metrics: Metrics | None = None,
    ) -> None:
        self.partners = partners
        self.bound_counter = bound_counter
        self.limits = limits
        self.metrics = metrics
        self.refused = 0
        #: refused binds by reason (AuthResult values, ``address_locked``, ``system_id_slowed``)
        self.failures: Counter[str] = Counter()
        #: password checks made (scrypt, or the same work for an unknown system_id)
        self.checks = 0
        self.verified = VerifiedPasswords()
        lim = limits()
        self.by_address = FailureTracker(
            free=lim.bind_free_failures, max_delay=lim.bind_lockout_max, reset_after=lim.bind_fail_reset
        )
        self.by_system_id = FailureTracker(
            free=lim.bind_free_failures, max_delay=lim.bind_slowdown_max, reset_after=lim.bind_fail_reset
        )
        #: password checks at once; addresses without failures first
        self.hash_gate = HashGate(lim.bind_hash_threads)
        self._hash_threads: trio.CapacityLimiter | None = None
        return_scrypt_memory()

    def _settings(self) -> LimitsConfig:
        """The current limits, applied to the trackers and the hashing limiter."""
        lim = self.limits()
        for tracker, max_delay in (
            (self.by_address, lim.bind_lockout_max),
            (self.by_system_id, lim.bind_slowdown_max),
        ):
            tracker.free = lim.bind_free_failures
            tracker.max_delay = max_delay
            tracker.reset_after = lim.bind_fail_reset
        if self.hash_gate.size != lim.bind_hash_threads:
            self.hash_gate.resize(lim.bind_hash_threads)
        return lim

    def _threads(self) -> trio.CapacityLimiter:
        """Worker threads of the checks: as many as the gate lets through (not trio's shared default of 40,
        which the gate would otherwise wait on behind unrelated work)."""
        if self._hash_threads is None:  # created in trio (the authenticator may be built outside it)
            self._hash_threads = trio.CapacityLimiter(64)
        return self._hash_threads

    async def authenticate(self, bind: BindRequest) -> Account | int:
        arrived = trio.current_time()
        lim = self._settings()
        partner = self.partners(bind.system_id)
        ip = peer_ip(bind.peer)
        address = ip if ip is not None else bind.peer
        reason = await self._check(partner, bind, ip, address, arrived + lim.bind_fail_delay, lim)
        if reason != _OK:
            self._refused(bind, address, reason)
            # the same answer at the same time for every reason; the wait holds no thread
            await trio.sleep_until(arrived + lim.bind_fail_delay)
            return _RBINDFAIL
        assert partner is not None
        if self.bound_counter is not None and partner.max_binds > 0:
            if self.bound_counter(partner.system_id) >= partner.max_binds:
                self.refused += 1
                log.info("bind of %r refused: max_binds %d reached", partner.system_id, partner.max_binds)
                return _RBINDFAIL
        return account_for(partner)

    async def _check(
        self,
        partner: Partner | None,
        bind: BindRequest,
        ip: str | None,
        address: str,
        answer_at: float,
        lim: LimitsConfig,
    ) -> str:
        """``ok`` or why the bind is refused (the order is the class docstring's); a refusal is answered at
        ``answer_at`` (or when the check ends, if later)."""
        now = trio.current_time()
        if partner is not None and partner.allowed_ips and (ip is None or not partner.ip_allowed(ip)):
            # an address we cannot read (memory stream, unix socket) never passes an IP restriction
            self._failed(self.by_address, "address", address, now, answer_at, booked=False)
            return AuthResult.ADDRESS_NOT_ALLOWED.value
        if partner is not None and self.verified.known(bind.password, partner.password_hash):
            return _OK if partner.enabled else AuthResult.DISABLED.value
        if self.by_address.turn(address, now) > now:
            return _ADDRESS_LOCKED
        at = self.by_system_id.turn(bind.system_id, now)
        if at - now > min(lim.bind_slowdown_max, lim.bind_timeout / 2):
            return _SYSTEM_ID_SLOWED
        self.by_address.start(address, now, now)
        self.by_system_id.start(bind.system_id, now, at)
        result: AuthResult | None = None
        try:
            if at > now:
                await trio.sleep_until(at)
            if partner is not None and self.verified.known(bind.password, partner.password_hash):
                # another bind of this partner passed while this one waited its turn
                result = AuthResult.OK if partner.enabled else AuthResult.DISABLED
            else:
                async with self.hash_gate.slot(urgent=not self.by_address.failures(address, now)):
                    self.checks += 1
                    result = await trio.to_thread.run_sync(
                        authenticate, partner, bind.password, ip, self.verified, limiter=self._threads()
                    )
        finally:
            done = trio.current_time()
            if result is None or result in (AuthResult.OK, AuthResult.DISABLED):
                # passed, or never checked (the bind's connection went away while it waited)
                self.by_address.passed(address, done)
                self.by_system_id.passed(bind.system_id, done)
            else:
                answered = max(done, answer_at)
                self._failed(self.by_address, "address", address, done, answered)
                self._failed(self.by_system_id, "system_id", bind.system_id, done, answered)
        return result.value

    def _failed(
        self,
        tracker: FailureTracker,
        kind: str,
        key: str,
        now: float,
        answered: float,
        *,
        booked: bool = True,
    ) -> None:
        if tracker.failed(key, now, answered, booked=booked):
            log.warning(
                "%d failed binds for %s %s: its password checks are now spaced out (1s, doubling up "
                "to %.0fs%s); further failures of this episode are logged at DEBUG",
                tracker.free,
                kind,
                key if kind == "address" else repr(key),
                tracker.max_delay,
                ", binds in between are refused unchecked" if kind == "address" else "",
                extra={"kind": kind, "key": key},
            )
            if self.metrics is not None:
                self.metrics.bind_slowdowns_total.labels(key=kind).inc()

    def _refused(self, bind: BindRequest, address: str, reason: str) -> None:
        self.refused += 1
        self.failures[reason] += 1
        if self.metrics is not None:
            self.metrics.bind_failures_total.labels(reason=reason).inc()
        now = trio.current_time()
        quiet = self.by_address.slowed(address, now) or self.by_system_id.slowed(bind.system_id, now)
        log.log(
            logging.DEBUG if quiet else logging.INFO,
            "bind of %r from %s refused: %s",
            bind.system_id,
            bind.peer,
            reason,
        )
