"""The SMPP server (SMSC role) on trio: listeners, one session per connection, binds, limits, shutdown."""

from __future__ import annotations

import itertools
import logging
import socket
import ssl
from collections.abc import Callable
from typing import Any, Final, Protocol

import attrs
import trio

from catalyst_smpp.protocol.constants import CommandId, CommandStatus, MessageState
from catalyst_smpp.protocol.events import Bound, ConnectionClosed, ProtocolViolation
from catalyst_smpp.protocol.pdu import Pdu, QuerySm
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.server.auth import Account, Authenticator, BindRequest, _opt_positive
from catalyst_smpp.transport.errors import NotBoundError
from catalyst_smpp.transport.net import peer_host, peer_name, set_nodelay
from catalyst_smpp.transport.session import BindType, Handler, Reply, SmppSession
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["BindClaims", "ServerConfig", "ServerSession", "SmppServer", "accept_all_handler"]

logger = logging.getLogger(__name__)

_BIND_TYPES: Final[dict[int, BindType]] = {
    int(CommandId.bind_transmitter): BindType.TRANSMITTER,
    int(CommandId.bind_receiver): BindType.RECEIVER,
    int(CommandId.bind_transceiver): BindType.TRANSCEIVER,
}
_THROTTLED_COMMANDS: Final = frozenset(
    {int(CommandId.submit_sm), int(CommandId.data_sm), int(CommandId.submit_multi)}
)
#: the responses of those commands: one the core sent on its own is a submit refused before the handler
_SUBMIT_RESPONSES: Final = frozenset(
    {int(CommandId.submit_sm_resp), int(CommandId.data_sm_resp), int(CommandId.submit_multi_resp)}
)
_RTHROTTLED: Final = int(CommandStatus.ESME_RTHROTTLED)
_RBINDFAIL: Final = int(CommandStatus.ESME_RBINDFAIL)
_RSYSERR: Final = int(CommandStatus.ESME_RSYSERR)


def _default_session_config() -> SessionConfig:
    return SessionConfig(
        window_size=10,
        response_timeout=30.0,
        enquire_link_interval=30.0,
        inactivity_timeout=None,
        bind_timeout=30.0,
    )


@attrs.frozen
class ServerConfig:
    host: str = "127.0.0.1"
    #: 0 picks a free port (see :attr:`SmppServer.ports`)
    port: int = 2775
    #: TLS (trio.SSLStream) when set
    ssl_context: ssl.SSLContext | None = None
    session: SessionConfig = attrs.field(factory=_default_session_config)
    #: per session: above this many unsent bytes the session stops reading (back-pressure)
    max_send_buffer: int = 256 * 1024
    #: per session: worker tasks for async handlers (and the bind authenticator)
    handler_concurrency: int = 64
    #: graceful shutdown: how long to wait for unbind_resp and in-flight responses
    shutdown_timeout: float = 5.0
    #: SO_REUSEPORT on the listener (several worker processes on one port)
    reuse_port: bool = False
    #: system_id we put in bind responses
    system_id: str = "catalyst"
    backlog: int = 1024
    #: connections open at once (all listeners of this server); more are closed at accept.  None = no limit
    max_connections: int | None = attrs.field(default=None, validator=_opt_positive)
    #: connections open at once from one source IP address; more are closed at accept.  None = no limit
    max_connections_per_address: int | None = attrs.field(default=None, validator=_opt_positive)
    #: listening sockets bound already (by the daemon, or inherited from a supervising parent): served
    #: instead of binding host:port (see catalyst_smpp.listen); the server closes them when it stops
    sockets: tuple[socket.socket, ...] = ()


#: a refused connection is logged at most once per this many seconds per reason (with the count since)
_REFUSAL_LOG_INTERVAL: Final = 10.0


def accept_all_handler() -> Handler:
    """A handler that accepts everything: message ids are increasing hex numbers."""
    counter = itertools.count(1)

    def handle(session: SmppSession, pdu: Pdu) -> Reply:
        cid = pdu.command_id
        if cid == CommandId.submit_sm or cid == CommandId.data_sm or cid == CommandId.submit_multi:
            return pdu.make_response(0, message_id=f"{next(counter):x}")
        if isinstance(pdu, QuerySm):  # the class of every query_sm (command_id is a ClassVar)
            return pdu.make_response(
                0,
                message_id=pdu.message_id,
                message_state=int(MessageState.ENROUTE),
            )
        return None

    return handle


class BindClaims(Protocol):
    """Binds counted beyond this server (e.g. over every gateway process): ``acquire`` before a bind is
    answered ESME_ROK (False refuses it), ``release`` exactly once for each acquire that returned True."""

    async def acquire(self, account: Account) -> bool: ...

    def release(self, account: Account) -> None: ...


class ServerSession(SmppSession):
    """A session of the server: adds the bind (authenticator, bind limits) and the throttle."""

    def __init__(self, server: SmppServer, stream: trio.abc.Stream, conn: SmppConnection, **kw: Any) -> None:
        super().__init__(stream, conn, **kw)
        self.server = server
        self.account: Account | None = None
        self.bind_type: BindType | None = None
        self._bucket: TokenBucket | None = None
        self._reserved = False  # holds one of the account's max_binds
        self._claimed = False  # holds one of the server's bind_claims

    def _on_request(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        bt = _BIND_TYPES.get(cid)
        if bt is not None:
            self._queue_job(pdu, self._authenticate(pdu, bt))
            return
        if cid in _THROTTLED_COMMANDS:
            bucket = self._bucket
            if bucket is not None and not bucket.try_take(trio.current_time()):
                self.server.stats_throttled += 1
                self._answer(pdu, _RTHROTTLED)
                if self.server.on_submit_refused is not None:
                    self.server.on_submit_refused(self, _RTHROTTLED)
                return
        # SmppSession._on_request without its outbind / alert_notification branch: an SMSC never receives them
        # (the core refuses them in every state), so every request here goes to the handler
        self.stats.pdus_in += 1
        self._dispatch(pdu)

    def _on_violation(self, event: ProtocolViolation) -> None:
        answer = event.answered_with
        if (
            answer is not None
            and answer.command_id in _SUBMIT_RESPONSES
            and self.server.on_submit_refused is not None
        ):
            self.server.on_submit_refused(self, answer.command_status)

    async def _authenticate(self, pdu: Pdu, bind_type: BindType) -> Reply:
        server = self.server
        system_id: str = pdu.system_id  # type: ignore[attr-defined]
        bind = BindRequest(
            system_id=system_id,
            password=pdu.password,  # type: ignore[attr-defined]
            system_type=pdu.system_type,  # type: ignore[attr-defined]
            bind_type=bind_type,
            pdu=pdu,
            peer=self.peer,
        )
        try:
            result = await server.authenticator.authenticate(bind)
        except Exception:
            self.log.exception("authenticator failed for system_id %r", system_id)
            result = _RSYSERR
        if isinstance(result, int):
            # DEBUG: the authenticator logs why (and keeps a flood of refusals from flooding the log)
            self.log.debug("bind %s as %r refused: 0x%08X", bind_type.value, system_id, result)
            return pdu.make_response(result, system_id=server.config.system_id)
        account = result
        if self.is_closed:
            return None  # nobody to answer; nothing reserved
        if server.closing:
            return pdu.make_response(_RBINDFAIL, system_id=server.config.system_id)
        if not server._reserve_bind(account):
            self.log.info(
                "bind %s as %r refused: max_binds %s reached", bind_type.value, system_id, account.max_binds
            )
            return pdu.make_response(_RBINDFAIL, system_id=server.config.system_id)
        self._reserved = True
        self.account = account
        if server.bind_claims is not None:
            claimed = await server.bind_claims.acquire(account)
            if claimed and self._reserved:
                self._claimed = True
            elif claimed:  # the session closed meanwhile (and released its reservation)
                server.bind_claims.release(account)
            if not self._claimed:
                if self._reserved:
                    self._release()
                    self.account = None
                if self.is_closed:
                    return None
                self.log.info(
                    "bind %s as %r refused: max_binds %s reached over all nodes",
                    bind_type.value,
                    system_id,
                    account.max_binds,
                )
                return pdu.make_response(_RBINDFAIL, system_id=server.config.system_id)
        self.bind_type = bind_type
        self.system_id = account.system_id
        self._bucket = server.bucket_for(account)
        if account.deliver_window is not None:
            self.window_size = account.deliver_window
        return pdu.make_response(0, system_id=server.config.system_id)

    def _on_bind_failed(self, event: Any) -> None:
        super()._on_bind_failed(event)
        self._release()
        self.account = None
        self.bind_type = None
        self._bucket = None

    def _on_bound(self, event: Bound) -> None:
        super()._on_bound(event)
        self.server._register_bound(self)

    def _on_closed(self, event: ConnectionClosed) -> None:
        self._release()
        self.server._unregister_bound(self)

    def _release(self) -> None:
        if self._reserved:
            self._reserved = False
            assert self.account is not None
            self.server._release_bind(self.account)
            if self._claimed:
                self._claimed = False
                assert self.server.bind_claims is not None
                self.server.bind_claims.release(self.account)


class SmppServer:
    """SMSC-role SMPP server; see docs/dev/sessions-api.md."""

    def __init__(
        self,
        config: ServerConfig,
        authenticator: Authenticator,
        handler: Handler | None = None,
        *,
        on_bound: Callable[[ServerSession], object] | None = None,
        on_closed: Callable[[ServerSession], object] | None = None,
        on_refused: Callable[[str], object] | None = None,
        on_submit_refused: Callable[[ServerSession, int], object] | None = None,
        bucket_for: Callable[[Account], TokenBucket | None] | None = None,
        bind_claims: BindClaims | None = None,
    ) -> None:
        self.config = config
        #: the submit throttle of an account's sessions; None = one token bucket per system_id in this
        #: server at the account's throttle_rate (the gateway shares one per node over every listener)
        self.bucket_for = bucket_for if bucket_for is not None else self._bucket_for
        #: binds counted beyond this server, checked after its own max_binds (None: this server only)
        self.bind_claims = bind_claims
        #: called with the status of each submit (submit_sm, submit_multi, data_sm) refused before it reaches
        #: the handler: by the session's throttle (ESME_RTHROTTLED) or by the protocol core (a submit in the
        #: wrong bind state, ESME_RINVBNDSTS; a field the codec refuses, its status): the gateway counts them
        #: among the partner's submits
        self.on_submit_refused = on_submit_refused
        self.authenticator = authenticator
        self.handler: Handler = handler if handler is not None else accept_all_handler()
        self.on_bound = on_bound
        self.on_closed = on_closed
        #: called with the reason (``per_address`` / ``total``) of each connection refused at accept
        self.on_refused = on_refused
        #: connections refused at accept, by reason
        self.stats_refused: dict[str, int] = {}
        self._open = 0
        self._per_address: dict[str, int] = {}
        self._refusal_log: dict[str, tuple[float, int]] = {}  # reason → (last logged at, refused since)
        self.ports: list[int] = []
        self.closing = False
        self.stats_throttled = 0
        self._ids = itertools.count(1)
        self._sessions: set[ServerSession] = set()
        self._bound: dict[str, list[ServerSession]] = {}
        self._bind_counts: dict[str, int] = {}
        self._buckets: dict[str, TokenBucket] = {}
        self._accept_scope: trio.CancelScope | None = None
        self._stopped = trio.Event()
        self._shutdown_started = False

    # ------------------------------------------------------------------ serving

    async def _open_listeners(self) -> list[trio.SocketListener]:
        cfg = self.config
        if cfg.sockets:
            return [trio.SocketListener(trio.socket.from_stdlib_socket(s)) for s in cfg.sockets]
        if not cfg.reuse_port:
            return await trio.open_tcp_listeners(cfg.port, host=cfg.host, backlog=cfg.backlog)
        infos = await trio.socket.getaddrinfo(
            cfg.host, cfg.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
        listeners = []
        for family, type_, proto, _canon, addr in infos:
            sock = trio.socket.socket(family, type_, proto)
            try:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
                await sock.bind(addr)
                sock.listen(cfg.backlog)
            except BaseException:
                sock.close()
                raise
            listeners.append(trio.SocketListener(sock))
        return listeners

    async def serve(self, *, task_status: trio.TaskStatus[SmppServer] = trio.TASK_STATUS_IGNORED) -> None:
        """Listen and serve until :meth:`shutdown` completes (or the caller cancels)."""
        raw = await self._open_listeners()
        self.ports = [lst.socket.getsockname()[1] for lst in raw]
        listeners: list[trio.abc.Listener[Any]] = list(raw)
        if self.config.ssl_context is not None:
            listeners = [
                trio.SSLListener(lst, self.config.ssl_context, https_compatible=False) for lst in raw
            ]
        logger.info(
            "listening on %s port(s) %s%s",
            self.config.host,
            self.ports,
            " (TLS)" if self.config.ssl_context is not None else "",
        )
        async with trio.open_nursery() as sessions:
            with trio.CancelScope() as accept_scope:
                self._accept_scope = accept_scope
                if self.closing:
                    accept_scope.cancel()
                task_status.started(self)
                await trio.serve_listeners(self.serve_stream, listeners, handler_nursery=sessions)
            for lst in listeners:  # serve_listeners closes them when cancelled; be sure
                with trio.CancelScope(shield=True):
                    await trio.aclose_forcefully(lst)
            await self._stopped.wait()
            sessions.cancel_scope.cancel()

    async def serve_stream(self, stream: trio.abc.Stream, peer: str | None = None) -> None:
        """Serve one connection until it closes (the stream is closed on return)."""
        if self.closing:
            await trio.aclose_forcefully(stream)
            return
        address = peer_host(stream)
        refused = self._admit(address)
        if refused is not None:
            # before the session exists: no PDU is read, nothing allocated beyond the accepted socket
            self._refused(refused, address)
            await trio.aclose_forcefully(stream)
            return
        try:
            await self._serve_admitted(stream, peer)
        finally:
            self._leave(address)

    async def _serve_admitted(self, stream: trio.abc.Stream, peer: str | None) -> None:
        sid = f"srv#{next(self._ids)}"
        name = peer if peer is not None else peer_name(stream, default="memory")
        set_nodelay(stream)
        cfg = self.config
        conn = SmppConnection(Role.SMSC, cfg.session, now=trio.current_time())
        session = ServerSession(
            self,
            stream,
            conn,
            session_id=sid,
            peer=name,
            handler=self.handler,
            max_send_buffer=cfg.max_send_buffer,
            handler_concurrency=cfg.handler_concurrency,
            log=logger,
        )
        self._sessions.add(session)
        session.log.info("connected")
        try:
            await session.run()
        finally:
            self._sessions.discard(session)
            self._unregister_bound(session)
            if self.on_closed is not None:
                try:
                    self.on_closed(session)
                except Exception:
                    session.log.exception("on_closed callback failed")

    async def shutdown(self, timeout: float | None = None) -> None:
        """Stop accepting, unbind every session, wait (bounded) for in-flight responses, close."""
        self.closing = True
        if self._shutdown_started:
            await self._stopped.wait()
            return
        self._shutdown_started = True
        if self._accept_scope is not None:
            self._accept_scope.cancel()
        t = self.config.shutdown_timeout if timeout is None else timeout
        logger.info("shutting down: %d session(s)", len(self._sessions))
        try:
            async with trio.open_nursery() as nursery:
                for s in list(self._sessions):
                    nursery.start_soon(s.unbind, t)
        finally:
            for s in list(self._sessions):
                s.close()
            self._stopped.set()

    # ------------------------------------------------------------------ connection limits

    def _admit(self, address: str | None) -> str | None:
        """Count a new connection in; the reason to refuse it instead (``total`` / ``per_address``)."""
        cfg = self.config
        if cfg.max_connections is not None and self._open >= cfg.max_connections:
            return "total"
        if address is not None and cfg.max_connections_per_address is not None:
            if self._per_address.get(address, 0) >= cfg.max_connections_per_address:
                return "per_address"
        self._open += 1
        if address is not None:
            self._per_address[address] = self._per_address.get(address, 0) + 1
        return None

    def _leave(self, address: str | None) -> None:
        self._open -= 1
        if address is not None:
            n = self._per_address.get(address, 0) - 1
            if n > 0:
                self._per_address[address] = n
            else:
                self._per_address.pop(address, None)

    def _refused(self, reason: str, address: str | None) -> None:
        self.stats_refused[reason] = self.stats_refused.get(reason, 0) + 1
        if self.on_refused is not None:
            try:
                self.on_refused(reason)
            except Exception:
                logger.exception("on_refused callback failed")
        now = trio.current_time()
        last, since = self._refusal_log.get(reason, (-_REFUSAL_LOG_INTERVAL, 0))
        since += 1
        if now - last < _REFUSAL_LOG_INTERVAL:
            self._refusal_log[reason] = (last, since)
            return
        self._refusal_log[reason] = (now, 0)
        cfg = self.config
        if reason == "total":
            what = f"max_connections {cfg.max_connections} open"
        else:
            what = f"max_connections_per_address {cfg.max_connections_per_address} open from {address}"
        logger.warning(
            "connection from %s refused at accept: %s (%d refused for this reason since the last such line)",
            address or "?",
            what,
            since,
            extra={"reason": reason, "address": address},
        )

    # ------------------------------------------------------------------ bound sessions

    def sessions(self) -> list[ServerSession]:
        return list(self._sessions)

    def bound_sessions(self, system_id: str) -> list[ServerSession]:
        return [s for s in self._bound.get(system_id, ()) if s.is_bound and not s.is_closed]

    def receivers(self, system_id: str) -> list[ServerSession]:
        return [s for s in self._bound.get(system_id, ()) if s.can_deliver]

    async def deliver(self, system_id: str, pdu: Pdu) -> Pdu:
        """deliver_sm / data_sm to a bound RX/TRX session of ``system_id`` (the most free window).

        Returns the response."""
        candidates = self.receivers(system_id)
        if not candidates:
            raise NotBoundError(f"{system_id!r} has no receiver bind")
        best = max(candidates, key=lambda s: s.window_available)
        return await best.request(pdu)

    # ------------------------------------------------------------------ bookkeeping (ServerSession)

    def _reserve_bind(self, account: Account) -> bool:
        n = self._bind_counts.get(account.system_id, 0)
        if account.max_binds is not None and n >= account.max_binds:
            return False
        self._bind_counts[account.system_id] = n + 1
        return True

    def _release_bind(self, account: Account) -> None:
        n = self._bind_counts.get(account.system_id, 0) - 1
        if n > 0:
            self._bind_counts[account.system_id] = n
        else:
            self._bind_counts.pop(account.system_id, None)

    def _bucket_for(self, account: Account) -> TokenBucket | None:
        if account.throttle_rate is None:
            return None
        burst = (
            account.throttle_burst if account.throttle_burst is not None else max(1.0, account.throttle_rate)
        )
        bucket = self._buckets.get(account.system_id)
        if bucket is None:
            bucket = TokenBucket(account.throttle_rate, burst)
            self._buckets[account.system_id] = bucket
        elif bucket.rate != account.throttle_rate or bucket.burst != burst:
            bucket.reconfigure(account.throttle_rate, burst, trio.current_time())
        return bucket

    def _register_bound(self, session: ServerSession) -> None:
        self._bound.setdefault(session.system_id, []).append(session)
        if self.on_bound is not None:
            try:
                self.on_bound(session)
            except Exception:
                session.log.exception("on_bound callback failed")

    def _unregister_bound(self, session: ServerSession) -> None:
        lst = self._bound.get(session.system_id)
        if lst and session in lst:
            lst.remove(session)
            if not lst:
                del self._bound[session.system_id]
