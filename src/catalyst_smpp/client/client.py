"""The SMPP client (ESME role) on trio: several binds per peer, reconnects, window, TPS, throttle back-off."""

from __future__ import annotations

import itertools
import logging
import math
import random
import ssl
from collections.abc import Awaitable, Callable
from typing import Any, Final

import attrs
import trio

from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import BindReceiver, BindTransceiver, BindTransmitter, Pdu
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.transport.errors import BindError, NotBoundError, SessionError
from catalyst_smpp.transport.net import TlsHandshakeError, open_stream, peer_name
from catalyst_smpp.transport.sender import WindowedSender
from catalyst_smpp.transport.session import BindType, Handler, SmppSession
from catalyst_smpp.util.backoff import Backoff

__all__ = ["ClientConfig", "ClientSession", "ClientStats", "SmppClient"]

logger = logging.getLogger(__name__)

THROTTLE_LOG_EVERY = 10.0
"""Seconds between log lines about throttle answers (ESME_RTHROTTLED / ESME_RMSGQFUL), which carry counts."""

_RETRY_STATUSES: Final = frozenset({int(CommandStatus.ESME_RTHROTTLED), int(CommandStatus.ESME_RMSGQFUL)})
_BIND_CLASSES: Final = {
    BindType.TRANSMITTER: BindTransmitter,
    BindType.RECEIVER: BindReceiver,
    BindType.TRANSCEIVER: BindTransceiver,
}


def _default_session_config() -> SessionConfig:
    return SessionConfig(window_size=10, response_timeout=30.0, enquire_link_interval=30.0, bind_timeout=None)


def _binds(value: Any) -> tuple[BindType, ...]:
    return tuple(value)


@attrs.frozen
class ClientConfig:
    host: str
    port: int
    system_id: str
    password: str
    system_type: str = ""
    #: one session per entry, e.g. (TRANSMITTER, TRANSMITTER, RECEIVER)
    binds: tuple[BindType, ...] = attrs.field(default=(BindType.TRANSCEIVER,), converter=_binds)
    address_range: str = ""
    addr_ton: int = 0
    addr_npi: int = 0
    interface_version: int = 0x34
    ssl_context: ssl.SSLContext | None = None
    server_hostname: str | None = None
    session: SessionConfig = attrs.field(factory=_default_session_config)
    #: requests per second over all binds; None = unlimited
    tps: float | None = None
    #: token bucket size; None = max(1, tps / 10)
    tps_burst: float | None = None
    connect_timeout: float = 10.0
    reconnect_initial: float = 0.5
    reconnect_max: float = 30.0
    reconnect_multiplier: float = 2.0
    reconnect_jitter: float = 0.5
    #: ESME_RTHROTTLED / ESME_RMSGQFUL: retry the same PDU this many times...
    throttle_retries: int = 5
    #: ...after this delay (doubling each time); the session takes no new requests meanwhile
    throttle_delay: float = 0.1
    #: False: each bind is tried once; run() returns when every bind has ended (tools, tests)
    reconnect: bool = True
    max_send_buffer: int = 256 * 1024
    handler_concurrency: int = 64

    def __attrs_post_init__(self) -> None:
        if not self.binds:
            raise ValueError("binds must name at least one bind")
        if self.tps is not None and not self.tps > 0:
            raise ValueError("tps must be positive or None")
        if self.throttle_retries < 0 or self.throttle_delay < 0:
            raise ValueError("throttle_retries and throttle_delay must be >= 0")


@attrs.define
class ClientStats:
    connects: int = 0
    binds: int = 0
    bind_failures: int = 0
    connect_failures: int = 0
    reconnects: int = 0
    throttled_retries: int = 0


class ClientSession(SmppSession):
    """A session of the client (adds the bind type and the throttle pause)."""

    def __init__(
        self, stream: trio.abc.Stream, conn: SmppConnection, *, bind_type: BindType, **kw: Any
    ) -> None:
        super().__init__(stream, conn, **kw)
        self.bind_type = bind_type
        self.paused_until = -math.inf


class SmppClient:
    """ESME-role SMPP client keeping ``config.binds`` up; see docs/dev/sessions-api.md."""

    def __init__(
        self,
        config: ClientConfig,
        handler: Handler | None = None,
        *,
        rng: random.Random | None = None,
        connect: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
    ) -> None:
        """``connect`` replaces the TCP/TLS connection (tests: memory streams); ``rng`` feeds the jitter."""
        self.config = config
        self._connect = connect
        self.handler = handler
        self.rng = rng if rng is not None else random.Random()
        self.stats = ClientStats()
        self.closed = False
        self._ids = itertools.count(1)
        self._sessions: list[ClientSession] = []  # bound
        self._tx: list[ClientSession] = []  # bound TX/TRX
        self._rr = 0
        # throttle answers since the last log line about them: status -> count (logged at most every
        # THROTTLE_LOG_EVERY seconds, so an operator throttling 1,000 submits/s is not 1,000 log lines/s)
        self._throttled: dict[int, int] = {}
        self._throttle_logged = -math.inf
        self._window_lot = trio.lowlevel.ParkingLot()  # any change that may let a request go
        self._bound_lot = trio.lowlevel.ParkingLot()
        # TPS limit as a token bucket in its "virtual scheduling" form (GCRA): each request
        # reserves the next emission time, so waiters are served in order, each sleeps once
        # to an exact deadline, and no float remainder can make a waiter spin on a tiny sleep.
        self._interval = 0.0  # seconds per request; 0 = unlimited
        self._tolerance = 0.0  # (burst - 1) * interval: how far ahead of schedule a burst may run
        self._tat = -math.inf  # theoretical arrival time of the next request
        #: TPS tokens asked for so far (each request once): the demand a shared TPS is split by
        self.tokens_asked = 0
        if config.tps is not None:
            self.set_tps(config.tps, config.tps_burst)
        self._cancel: trio.CancelScope | None = None
        self._done = trio.Event()

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[SmppClient] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep every bind of ``config.binds`` up until :meth:`aclose`; ``started`` at once."""
        try:
            with trio.CancelScope() as scope:
                self._cancel = scope
                if self.closed:
                    scope.cancel()
                async with trio.open_nursery() as nursery:
                    for i, bt in enumerate(self.config.binds):
                        nursery.start_soon(self._keep_bound, i, bt)
                    task_status.started(self)
        finally:
            self.closed = True
            self._wake()
            self._done.set()

    async def aclose(self, timeout: float = 5.0) -> None:
        """Unbind every session (bounded by ``timeout``), stop reconnecting, return when stopped."""
        if self.closed and self._cancel is None:
            return
        self.closed = True
        self._wake()
        with trio.move_on_after(timeout + 1.0):
            async with trio.open_nursery() as nursery:
                for s in list(self._sessions):
                    nursery.start_soon(s.unbind, timeout)
        if self._cancel is not None:
            self._cancel.cancel()
            await self._done.wait()

    async def _keep_bound(self, index: int, bind_type: BindType) -> None:
        cfg = self.config
        backoff = Backoff(
            initial=cfg.reconnect_initial,
            maximum=cfg.reconnect_max,
            multiplier=cfg.reconnect_multiplier,
            jitter=cfg.reconnect_jitter,
            rng=self.rng,
        )
        first = True
        while not self.closed:
            if not first:
                if not cfg.reconnect:
                    return
                delay = backoff.next_delay()
                self.stats.reconnects += 1
                logger.info(
                    "%s:%d bind %d (%s): reconnecting in %.2fs",
                    cfg.host,
                    cfg.port,
                    index,
                    bind_type.value,
                    delay,
                )
                await trio.sleep(delay)
                if self.closed:
                    return
            first = False
            try:
                with trio.fail_after(cfg.connect_timeout):
                    if self._connect is not None:
                        stream = await self._connect()
                    else:
                        stream = await open_stream(
                            cfg.host,
                            cfg.port,
                            ssl_context=cfg.ssl_context,
                            server_hostname=cfg.server_hostname,
                        )
            except (OSError, trio.TooSlowError, trio.BrokenResourceError, ssl.SSLError) as exc:
                self.stats.connect_failures += 1
                # a TLS failure's message is its reason ("TLS handshake failed: certificate verify ...")
                why = str(exc) if isinstance(exc, TlsHandshakeError) else repr(exc)
                logger.warning("%s:%d bind %d: connect failed: %s", cfg.host, cfg.port, index, why)
                continue
            self.stats.connects += 1
            try:
                if await self._session_lifetime(stream, bind_type):
                    backoff.reset()
            except (SessionError, OSError, trio.BrokenResourceError) as exc:
                logger.warning("%s:%d bind %d: %r", cfg.host, cfg.port, index, exc)

    async def _session_lifetime(self, stream: trio.abc.Stream, bind_type: BindType) -> bool:
        """Bind on ``stream`` and serve until the session ends; whether the bind succeeded."""
        cfg = self.config
        conn = SmppConnection(Role.ESME, cfg.session, now=trio.current_time())
        session = ClientSession(
            stream,
            conn,
            bind_type=bind_type,
            session_id=f"cli#{next(self._ids)}",
            peer=peer_name(stream, default=f"{cfg.host}:{cfg.port}"),
            handler=self.handler,
            max_send_buffer=cfg.max_send_buffer,
            handler_concurrency=cfg.handler_concurrency,
            window_lot=self._window_lot,
            log=logger,
        )
        session.system_id = cfg.system_id
        bound = False
        failure: SessionError | None = None
        async with trio.open_nursery() as nursery:
            nursery.start_soon(session.run)
            try:
                bind = _BIND_CLASSES[bind_type](
                    system_id=cfg.system_id,
                    password=cfg.password,
                    system_type=cfg.system_type,
                    interface_version=cfg.interface_version,
                    addr_ton=cfg.addr_ton,
                    addr_npi=cfg.addr_npi,
                    address_range=cfg.address_range,
                )
                resp = await session.request(bind)
                if resp.command_status != 0:
                    self.stats.bind_failures += 1
                    raise BindError(resp.command_status, resp)
                bound = True
                self.stats.binds += 1
                self._add(session)
                await session.wait_closed()
            except SessionError as exc:  # raised outside the nursery, not as an exception group
                failure = exc
            finally:
                self._remove(session)
                session.close()
        if failure is not None:
            raise failure
        return bound

    # ------------------------------------------------------------------ requests

    @property
    def bound_count(self) -> int:
        return sum(1 for s in self._sessions if s.is_bound and not s.is_closed)

    def sessions(self) -> list[ClientSession]:
        return list(self._sessions)

    async def wait_bound(self, count: int = 1) -> None:
        """Until at least ``count`` sessions are bound (raises NotBoundError once the client is closed)."""
        while self.bound_count < count:
            if self.closed:
                raise NotBoundError("client closed")
            await self._bound_lot.park()

    async def request(self, pdu: Pdu) -> Pdu:
        """Send on a TX/TRX bind within window and TPS; the response (see docs/dev/sessions-api.md).  Throttle
        answers are sent again after a pause (:meth:`throttle_retry`), by the same
        :class:`~catalyst_smpp.transport.sender.WindowedSender` pipelined senders use."""
        return await WindowedSender.request(pdu, self._acquire_any, self.throttle_retry)

    async def _acquire_any(self) -> ClientSession:
        """:meth:`acquire` that waits through pauses (``_pick``), for :meth:`request`."""
        await self._take_token()
        return await self._pick()

    def throttle_retry(self, session: ClientSession, status: int, retries: int) -> float | None:
        """After a response with ``status`` to a request already retried ``retries`` times: if the peer
        asked us to slow down (ESME_RTHROTTLED / ESME_RMSGQFUL) and retries are left, pause ``session``,
        count and log it, and return the delay before sending the same PDU again; else None.
        The throttle policy of every :class:`~catalyst_smpp.transport.sender.WindowedSender` on this client
        (:meth:`request` and pipelined senders such as the gateway's operator connector)."""
        cfg = self.config
        if status not in _RETRY_STATUSES or retries >= cfg.throttle_retries:
            return None
        delay: float = cfg.throttle_delay * 2.0**retries
        self.stats.throttled_retries += 1
        now = trio.current_time()
        session.paused_until = max(session.paused_until, now + delay)
        throttled = self._throttled
        throttled[status] = throttled.get(status, 0) + 1
        if now - self._throttle_logged >= THROTTLE_LOG_EVERY:
            counts = ", ".join(f"{n} x 0x{st:08X}" for st, n in sorted(throttled.items()))
            first = self._throttle_logged == -math.inf
            session.log.info(
                "peer asks to slow down: %s%s; sent again after a pause (this one: retry %d in %.3fs)",
                counts,
                "" if first else f" in the last {now - self._throttle_logged:.0f}s",
                retries + 1,
                delay,
            )
            throttled.clear()
            self._throttle_logged = now
        return delay

    async def acquire(self) -> ClientSession:
        """A TPS token and a bound TX/TRX session with a free window slot (waits for both).

        For pipelined senders: call ``session.send_request(pdu, on_done)`` before the next
        checkpoint, so the slot is still free.  Raises NotBoundError once the client is closed.
        """
        if self._interval:
            await self._take_token()
        # _pick's first pass without its coroutine (no checkpoint either way when a session is free)
        if not self.closed:
            session = self._pick_now()
            if session is not None:
                return session
        return await self._pick()

    def _pick_now(self) -> ClientSession | None:
        """What ``_pick`` would return at once, or None (none free, or a pause to check: ``_pick`` then)."""
        tx = self._tx
        n = len(tx)
        start = self._rr
        for k in range(n):
            i = (start + k) % n
            s = tx[i]
            if s._sendable():
                if s.paused_until != -math.inf:
                    return None
                self._rr = (i + 1) % n
                return s
        return None

    def set_tps(self, tps: float, burst: float | None = None) -> None:
        """Change the TPS limit now, without rebinding (burst None: ``max(1, tps / 10)``); the requests
        already scheduled keep their times."""
        if not tps > 0:
            raise ValueError("tps must be positive")
        b = burst if burst is not None else max(1.0, tps / 10)
        if b < 1:
            raise ValueError("tps_burst must be at least 1")
        self._interval = 1.0 / tps
        self._tolerance = (b - 1.0) * self._interval

    async def _take_token(self) -> None:
        interval = self._interval
        if not interval:
            return
        self.tokens_asked += 1
        now = trio.current_time()
        tat = self._tat if self._tat > now else now
        allowed_at = tat - self._tolerance
        self._tat = tat + interval
        if allowed_at > now:
            await trio.sleep_until(allowed_at)

    async def _pick(self) -> ClientSession:
        while True:
            if self.closed:
                raise NotBoundError("client closed")
            tx = self._tx
            n = len(tx)
            wake_at = math.inf
            if n:
                now = -math.inf
                start = self._rr
                for k in range(n):
                    s = tx[(start + k) % n]
                    if not s._sendable():
                        continue
                    if s.paused_until > -math.inf:
                        if now == -math.inf:
                            now = trio.current_time()
                        if s.paused_until > now:
                            wake_at = min(wake_at, s.paused_until)
                            continue
                    self._rr = (start + k + 1) % n
                    return s
            with trio.move_on_at(wake_at):
                await self._window_lot.park()

    # ------------------------------------------------------------------ bookkeeping

    def _add(self, session: ClientSession) -> None:
        self._sessions.append(session)
        if session.can_submit:
            self._tx.append(session)
        self._wake()

    def _remove(self, session: ClientSession) -> None:
        if session in self._sessions:
            self._sessions.remove(session)
        if session in self._tx:
            self._tx.remove(session)
        self._wake()

    def _wake(self) -> None:
        if self._window_lot:
            self._window_lot.unpark_all()
        if self._bound_lot:
            self._bound_lot.unpark_all()
