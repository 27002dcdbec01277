"""The trio driver of one SMPP session: a stream, a sans-IO ``SmppConnection``, three tasks.

Shape (per session, whatever the role):

* **reader** -- ``receive_some`` → ``conn.receive_data`` → every event of that read is
  handled → everything the core queued is moved to the send buffer *once* (batched
  writes).  Before each read it waits while the send buffer is above
  ``max_send_buffer`` or too many async handler calls are queued: a peer that floods
  without reading stalls in its own TCP window instead of growing our memory.
* **writer** -- the only task that writes to the stream; it sends whatever has
  accumulated as one ``send_all``.
* **timer** -- sleeps until ``conn.get_timer()`` and calls ``conn.handle_timer``
  (enquire_link, response / inactivity / bind timeouts).  Response timeouts of
  requests come from here: no cancel scope per request.

Inbound requests go to a handler (plain function: inline in the reader; ``async``
function: a small pool of long-lived worker tasks).  Its result decides the
response, see :data:`Reply`.  Our requests wait for their response without any
per-request object beyond a dict entry: the waiting task is rescheduled directly by
the reader (or the timer, on timeout).
"""

from __future__ import annotations

import enum
import logging
import math
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any, Final, TypeAlias

import attrs
import outcome
import trio

from catalyst_smpp.protocol.codec import PduEncodeError
from catalyst_smpp.protocol.constants import CommandId, CommandStatus
from catalyst_smpp.protocol.errors import LocalProtocolError
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
    UnexpectedResponse,
)
from catalyst_smpp.protocol.pdu import Pdu, Unbind
from catalyst_smpp.protocol.session import SmppConnection
from catalyst_smpp.protocol.states import BOUND_STATES, Role, SessionState
from catalyst_smpp.transport.errors import ResponseTimeoutError, SessionClosedError

__all__ = [
    "DEFERRED",
    "BindType",
    "Deferred",
    "Handler",
    "Reply",
    "SessionStats",
    "SmppSession",
]

logger = logging.getLogger(__name__)

S = SessionState
_RSYSERR: Final = int(CommandStatus.ESME_RSYSERR)
_UNBIND: Final = int(CommandId.unbind)
_OUTBIND: Final = int(CommandId.outbind)
_ALERT: Final = int(CommandId.alert_notification)
_TX_STATES: Final = frozenset({S.BOUND_TX, S.BOUND_TRX})
_RX_STATES: Final = frozenset({S.BOUND_RX, S.BOUND_TRX})
_READ_SIZE: Final = 64 * 1024
_FLUSH_ON_CLOSE: Final = 2.0  # seconds the writer may spend flushing the last bytes of a closing session


class BindType(enum.Enum):
    """The three kinds of bind."""

    TRANSMITTER = "tx"
    RECEIVER = "rx"
    TRANSCEIVER = "trx"


class Deferred(enum.Enum):
    """Type of :data:`DEFERRED`."""

    DEFERRED = "deferred"


#: a handler's "I will answer later with ``session.respond(request, reply)``"
DEFERRED: Final = Deferred.DEFERRED

#: what a request handler returns: a response PDU, a command_status, ``None`` (ESME_ROK), or DEFERRED
Reply: TypeAlias = "Pdu | int | Deferred | None"
#: a request handler: plain (runs inline in the reader) or async (runs on the worker pool)
Handler: TypeAlias = "Callable[[SmppSession, Pdu], Reply | Awaitable[Reply]]"
#: completion callback of :meth:`SmppSession.send_request`
Callback: TypeAlias = "Callable[[Pdu | BaseException], object]"


@attrs.define
class SessionStats:
    pdus_in: int = 0  # requests handed to the handler (the core's own traffic is not counted)
    bytes_in: int = 0
    bytes_out: int = 0
    requests_sent: int = 0
    responses_received: int = 0
    timeouts: int = 0
    violations: int = 0


def _accept_all(session: SmppSession, pdu: Pdu) -> Reply:
    return None


class _Adapter(logging.LoggerAdapter):  # type: ignore[type-arg]
    """Prefixes every line with ``<session_id> <peer> [<system_id>]``."""

    def __init__(self, base: logging.Logger, session: SmppSession) -> None:
        super().__init__(base, {})
        self._session = session

    def process(self, msg: Any, kwargs: Any) -> tuple[Any, Any]:
        s = self._session
        return f"{s.session_id} {s.peer} [{s.system_id}] {msg}", kwargs


class SmppSession:
    """One SMPP session over a trio stream; see the module docstring and docs/dev/sessions-api.md."""

    def __init__(
        self,
        stream: trio.abc.Stream,
        conn: SmppConnection,
        *,
        session_id: str,
        peer: str,
        handler: Handler | None = None,
        max_send_buffer: int = 256 * 1024,
        handler_concurrency: int = 64,
        window_lot: trio.lowlevel.ParkingLot | None = None,
        log: logging.Logger | None = None,
    ) -> None:
        if max_send_buffer < 1 or handler_concurrency < 1:
            raise ValueError("max_send_buffer and handler_concurrency must be positive")
        self.stream: Final = stream
        self.conn: Final = conn
        self.session_id = session_id
        self.peer = peer
        self.system_id = ""
        self.handler: Handler = handler if handler is not None else _accept_all
        self.max_send_buffer = max_send_buffer
        self.handler_concurrency = handler_concurrency
        self.stats = SessionStats()
        self.log = _Adapter(log or logger, self)
        # trio.current_time() without its run-context lookup on every call (same clock, MockClock included)
        self._now: Callable[[], float] = _clock_of_current_run()
        self.close_reason: CloseReason | None = None
        self.close_detail = ""
        # send buffer (bytes the writer has not written yet, including the chunk being written)
        self._out: list[bytes] = []
        self._out_bytes = 0
        self.max_buffered_bytes = 0
        # our requests: seq -> waiting task, or completion callback, or None (abandoned)
        self._waiters: dict[int, Any] = {}
        # async handler calls waiting for a worker
        self._jobs: deque[tuple[Pdu, Awaitable[Reply]]] = deque()
        self._workers = 0
        self._idle_workers = 0
        self._job_lot = trio.lowlevel.ParkingLot()
        # wake-ups
        self._writer_lot = trio.lowlevel.ParkingLot()
        self._drain_lot = trio.lowlevel.ParkingLot()  # send buffer / job queue went down
        self._window_lot = window_lot if window_lot is not None else trio.lowlevel.ParkingLot()
        self._change_lot = trio.lowlevel.ParkingLot()  # state, in-flight or owed counts changed
        self._timer_lot = trio.lowlevel.ParkingLot()
        self._timer_at = math.inf
        self._nursery: trio.Nursery | None = None
        self._send_scope: trio.CancelScope | None = None
        self._closing = False  # no more reading; the writer flushes and stops
        self._draining = False  # graceful close in progress: do not close on our own Unbound
        self._finished = trio.Event()
        self._started = False
        self._processing = False  # inside _process_events (respond() must not re-enter it)
        self._eof = False  # shutdown_write(): later output is discarded, EOF follows what was queued
        self._eof_sent = False
        #: the peer sent unbind (and was answered)
        self.unbound_by_peer = False

    # ------------------------------------------------------------------ properties

    @property
    def state(self) -> SessionState:
        return self.conn.state

    @property
    def is_bound(self) -> bool:
        return self.conn.state in BOUND_STATES

    @property
    def is_closed(self) -> bool:
        return self.conn.state is S.CLOSED or self._closing

    @property
    def can_submit(self) -> bool:
        """Bound as TX or TRX (may carry submit_sm ESME → SMSC), and not finishing after lost sync."""
        return self.conn.state in _TX_STATES and not self._closing and self.conn.sync_lost is None

    @property
    def can_deliver(self) -> bool:
        """Bound as RX or TRX (may carry deliver_sm SMSC → ESME), and not finishing after lost sync."""
        return self.conn.state in _RX_STATES and not self._closing and self.conn.sync_lost is None

    @property
    def window_available(self) -> int:
        """Windowed requests we may send now (the core's window: :attr:`window_size`)."""
        return self.conn.window_available

    def _sendable(self) -> bool:
        """A windowed request can go now: a window slot, send-buffer room, not closing (for pickers)."""
        conn = self.conn
        if self._closing or self._out_bytes > self.max_send_buffer or conn._state is _CLOSED:
            return False
        return conn._windowed < conn.window_size and conn._lost is None

    @property
    def window_size(self) -> int:
        return self.conn.window_size

    @window_size.setter
    def window_size(self, value: int) -> None:
        """This session's window from now on, wider or narrower than ``SessionConfig.window_size`` (e.g.
        per account at bind: a partner's deliver_sm window)."""
        if value < 1:
            raise ValueError("window_size must be >= 1")
        self.conn.window_size = value
        if self._window_lot and (free := self.window_available):
            self._window_lot.unpark(count=free)

    @property
    def in_flight(self) -> int:
        return self.conn.in_flight

    @property
    def buffered_bytes(self) -> int:
        """Bytes accepted for sending and not yet written (bounded by about ``max_send_buffer``)."""
        return self._out_bytes

    @property
    def queued_jobs(self) -> int:
        """Async handler calls waiting for a worker."""
        return len(self._jobs)

    # ------------------------------------------------------------------ running

    async def run(self) -> None:
        """Drive the session until it closes; the stream is closed when this returns."""
        if self._started:
            raise RuntimeError("a session runs once")
        self._started = True
        self._now = _clock_of_current_run()
        try:
            async with trio.open_nursery() as nursery:
                self._nursery = nursery
                nursery.start_soon(self._reader)
                nursery.start_soon(self._timer)
                await self._writer()
                nursery.cancel_scope.cancel()
        finally:
            self._nursery = None
            self._closing = True
            if self.conn.state is not S.CLOSED:
                self.conn.close()
                self._process_events()
            self._fail_all(SessionClosedError(self.close_reason, self.close_detail, sent=True))
            for _pdu, aw in self._jobs:
                _discard(aw)
            self._jobs.clear()
            with trio.CancelScope(shield=True):
                with trio.move_on_after(1.0) as scope:
                    try:
                        await self.stream.aclose()
                    except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                        pass
                if scope.cancelled_caught:
                    await trio.aclose_forcefully(self.stream)
            self._wake_all()
            self._finished.set()
            self.log.info(
                "closed: %s%s",
                self.close_reason and self.close_reason.value,
                f" ({self.close_detail})" if self.close_detail else "",
            )

    async def wait_closed(self) -> None:
        await self._finished.wait()

    def close(self) -> None:
        """Abort: stop at once (pending requests fail with SessionClosedError)."""
        self._flush_out()  # a response respond() queued from a handler just before goes out as before
        if self.conn.state is not S.CLOSED:
            self.conn.close()
            self._process_events()
        self._begin_close()

    def shutdown_write(self) -> None:
        """Half-close: what is queued so far is written, then EOF (TCP FIN); anything queued later
        (responses, deliver_sm, the core's own answers) is discarded.  Reading goes on until the peer
        closes, so everything it sent is still seen (fault injection with exact counts on both sides).
        ``close()`` ends it at once."""
        if self._eof:
            return
        self._flush_out()
        self._eof = True
        if self._writer_lot:
            self._writer_lot.unpark()

    async def unbind(self, timeout: float = 5.0) -> None:
        """Graceful close: unbind (if bound), wait up to ``timeout`` for the unbind_resp, for our
        requests in flight and for the responses we still owe, then close."""
        if self.is_closed:
            await self.wait_closed()
            return
        deadline = trio.current_time() + timeout
        self._draining = True
        conn = self.conn
        if conn.state in BOUND_STATES:
            try:
                conn.send(Unbind(), trio.current_time())
                self._flush_out()
                self._rearm_timer()
            except LocalProtocolError:  # pragma: no cover - state changed under us
                pass
        with trio.move_on_at(deadline):
            while not self.is_closed and (
                conn.state in (S.UNBINDING, *BOUND_STATES) or conn.in_flight or conn.owed_responses
            ):
                await self._change_lot.park()
        self.close()
        await self.wait_closed()

    # ------------------------------------------------------------------ our requests

    async def request(self, pdu: Pdu) -> Pdu:
        """Send a request, return its response (whatever its command_status)."""
        await self._wait_sendable(pdu)
        conn = self.conn
        now = self._now()
        seq = conn.send(pdu, now)
        self.stats.requests_sent += 1
        self._flush_out()
        if now + conn.config.response_timeout < self._timer_at:
            self._timer_lot.unpark()
        task = trio.lowlevel.current_task()
        waiters = self._waiters
        waiters[seq] = task

        def abort(_raise_cancel: Any) -> trio.lowlevel.Abort:
            if waiters.get(seq) is task:
                waiters[seq] = None  # the response, when it comes, is dropped
            return trio.lowlevel.Abort.SUCCEEDED

        result: Pdu = await trio.lowlevel.wait_task_rescheduled(abort)
        return result

    def send_request(self, pdu: Pdu, on_done: Callback) -> int:
        """Send without waiting; ``on_done(response or exception)`` runs in the session's task.

        Raises :class:`trio.WouldBlock` when the window is full or the send buffer above
        its limit, :class:`SessionClosedError` when closed.
        """
        conn = self.conn
        if self._closing or conn._state is _CLOSED:
            raise SessionClosedError(self.close_reason, self.close_detail)
        if self._out_bytes > self.max_send_buffer:
            raise trio.WouldBlock
        if conn._windowed >= conn.window_size or conn._lost is not None:  # window_available, inlined
            raise trio.WouldBlock  # (lost sync: the connection only answers what it owes, then closes)
        now = self._now()
        seq = conn.send(pdu, now)
        self.stats.requests_sent += 1
        self._waiters[seq] = on_done
        # _flush_out, inlined: the core queued this one PDU
        data = conn.data_to_send()
        if data and not self._eof:
            self._out.append(data)
            n = self._out_bytes + len(data)
            self._out_bytes = n
            if n > self.max_buffered_bytes:
                self.max_buffered_bytes = n
            if self._writer_lot:
                self._writer_lot.unpark()
        if now + conn.config.response_timeout < self._timer_at:
            self._timer_lot.unpark()
        return seq

    async def wait_window(self) -> None:
        """Until a request can be sent without blocking (window slot and send-buffer room)."""
        while True:
            if self.is_closed:
                raise SessionClosedError(self.close_reason, self.close_detail)
            if self.window_available and self._out_bytes <= self.max_send_buffer:
                return
            if self._out_bytes > self.max_send_buffer:
                await self._drain_lot.park()
            else:
                await self._window_lot.park()

    async def _wait_sendable(self, pdu: Pdu) -> None:
        windowed = pdu.command_id in _WINDOWED
        while True:
            if self.is_closed:
                raise SessionClosedError(self.close_reason, self.close_detail)
            if self._out_bytes > self.max_send_buffer:
                await self._drain_lot.park()
            elif windowed and not self.window_available:
                await self._window_lot.park()
            else:
                return

    # ------------------------------------------------------------------ answering

    def respond(self, request: Pdu, reply: Reply) -> None:
        """Answer ``request`` (whose handler returned DEFERRED); a closed session ignores it.

        May also be called from inside a plain handler (then the response is queued at once,
        before anything the handler queues after it)."""
        self._answer(request, reply)
        if self._processing:
            # from a handler (or an event hook): the core queued it in order; whoever runs
            # _process_events moves the core's output to the send buffer right after it, so no
            # per-response _flush_out here
            pass
        else:
            if self.conn._events:  # a bind response may have produced Bound / BindFailed
                self._process_events()
            self._flush_out()
        if self._change_lot:
            self._change_lot.unpark_all()

    def _answer(self, request: Pdu, reply: Reply) -> None:
        if reply is DEFERRED:
            return
        conn = self.conn
        if conn._state is _CLOSED:
            return
        try:
            if reply is None:
                resp = request.make_response(0)
            elif isinstance(reply, int):
                resp = request.make_response(reply)
            else:
                resp = reply
            conn.send(resp, self._now())
        except PduEncodeError:
            self.log.exception(
                "cannot encode the response to %s; answering ESME_RSYSERR", request.command_id.name
            )
            conn.send(request.make_response(_RSYSERR), self._now())
        except LocalProtocolError as exc:
            if not _closed(self.conn):
                self.log.warning(
                    "response to %s seq=%d not sent: %s",
                    request.command_id.name,
                    request.sequence_number,
                    exc,
                )

    def _dispatch(self, pdu: Pdu) -> None:
        """An inbound request: call the handler (subclasses add checks before it)."""
        try:
            reply = self.handler(self, pdu)
        except Exception:
            self.log.exception("handler failed on %s seq=%d", pdu.command_id.name, pdu.sequence_number)
            reply = _RSYSERR
        if reply is DEFERRED:  # the gateway's handlers: answered later with respond()
            return
        if isinstance(reply, Pdu):  # the usual reply of a plain handler: _answer's path, without its checks
            conn = self.conn
            if conn._state is not _CLOSED:
                try:
                    conn.send(reply, self._now())
                    return
                except (PduEncodeError, LocalProtocolError):
                    pass
                self._answer(pdu, reply)  # nothing was queued: _answer sends again, handles and logs it
        elif reply is None or isinstance(reply, int):
            self._answer(pdu, reply)
        else:
            self._queue_job(pdu, reply)

    def _queue_job(self, pdu: Pdu, aw: Awaitable[Reply]) -> None:
        self._jobs.append((pdu, aw))
        if self._idle_workers:
            self._job_lot.unpark()
        elif self._workers < self.handler_concurrency and self._nursery is not None:
            self._workers += 1
            self._nursery.start_soon(self._worker)

    async def _worker(self) -> None:
        jobs = self._jobs
        while True:
            while not jobs:
                self._idle_workers += 1
                try:
                    await self._job_lot.park()
                finally:
                    self._idle_workers -= 1
            pdu, aw = jobs.popleft()
            try:
                reply = await aw
            except Exception:
                self.log.exception("handler failed on %s seq=%d", pdu.command_id.name, pdu.sequence_number)
                reply = _RSYSERR
            self._answer(pdu, reply)
            self._process_events()  # a bind response may have produced Bound / BindFailed
            self._flush_out()
            if self._drain_lot:
                self._drain_lot.unpark_all()
            if self._change_lot:
                self._change_lot.unpark_all()

    # ------------------------------------------------------------------ hooks for subclasses

    def _on_request(self, pdu: Pdu) -> None:
        cid = pdu.command_id
        if cid == _OUTBIND or cid == _ALERT:
            self.log.info("ignoring %s", CommandId(cid).name)
            return
        self.stats.pdus_in += 1
        self._dispatch(pdu)

    def _on_bound(self, event: Bound) -> None:
        self.log.info("bound as %s", event.state.name)

    def _on_bind_failed(self, event: BindFailed) -> None:
        self.log.info("bind failed: status 0x%08X", event.response.command_status)

    def _on_violation(self, event: ProtocolViolation) -> None:
        """A request the core refused on its own (``event.answered_with``): for subclasses (the server counts
        refused submits)."""

    def _on_closed(self, event: ConnectionClosed) -> None:
        """The core closed (called once, before waiters fail)."""

    # ------------------------------------------------------------------ event processing

    def _process_events(self) -> None:
        conn = self.conn
        waiters = self._waiters
        stats = self.stats
        self._processing = True
        try:
            while (ev := conn.next_event()) is not None:
                t = type(ev)
                if t is ResponseReceived:
                    stats.responses_received += 1
                    pdu = ev.pdu  # type: ignore[attr-defined]
                    waiter = waiters.pop(pdu.sequence_number, None)
                    if waiter is None:
                        continue
                    if type(waiter) is _Task:
                        trio.lowlevel.reschedule(waiter, outcome.Value(pdu))
                        continue
                    # a send_request callback: called with the PDU itself (no Outcome per response)
                    try:
                        waiter(pdu)
                    except Exception:
                        self.log.exception("request callback failed")
                elif t is RequestReceived:
                    self._on_request(ev.pdu)  # type: ignore[attr-defined]
                else:
                    self._other_event(ev)
        finally:
            self._processing = False

    def _other_event(self, ev: Event) -> None:
        waiters = self._waiters
        if isinstance(ev, ResponseTimeout):
            self.stats.timeouts += 1
            req = ev.request
            self.log.warning("no response to %s seq=%d", req.command_id.name, req.sequence_number)
            self._complete(waiters.pop(req.sequence_number, None), outcome.Error(ResponseTimeoutError(req)))
        elif isinstance(ev, Bound):
            if self.conn.role is Role.ESME:
                self._complete(waiters.pop(ev.response.sequence_number, None), outcome.Value(ev.response))
            self._on_bound(ev)
        elif isinstance(ev, BindFailed):
            if self.conn.role is Role.ESME:
                self._complete(waiters.pop(ev.response.sequence_number, None), outcome.Value(ev.response))
            self._on_bind_failed(ev)
        elif isinstance(ev, Unbound):
            if not ev.by_peer:
                self._complete(waiters.pop(ev.pdu.sequence_number, None), outcome.Value(ev.pdu))
            self.log.info("unbound (%s)", "by peer" if ev.by_peer else "by us")
            if ev.by_peer:
                self.unbound_by_peer = True
            if ev.by_peer or not self._draining:
                self.conn.close()
        elif isinstance(ev, ConnectionClosed):
            self.close_reason = ev.reason
            self.close_detail = ev.detail
            if ev.reason not in (CloseReason.UNBOUND, CloseReason.LOCAL, CloseReason.PEER_CLOSED):
                self.log.warning("closing: %s %s", ev.reason.value, ev.detail)
            else:
                self.log.debug("closing: %s %s", ev.reason.value, ev.detail)
            self._on_closed(ev)
            self._fail_all(SessionClosedError(ev.reason, ev.detail, sent=True))
            self._begin_close()
        elif isinstance(ev, ProtocolViolation):
            self.stats.violations += 1
            ans = ev.answered_with
            if ans is not None:
                note = f" (answered {ans.command_id.name} 0x{ans.command_status:08X})"
            elif ev.pdu is not None:  # SessionConfig.keep_odd_tlvs: handled, not refused
                pdu = ev.pdu
                note = f" ({pdu.command_id.name} seq={pdu.sequence_number} taken with its TLVs as received)"
            else:
                note = ""
            self.log.warning("peer violation: %s%s", ev.error, note)
            self._on_violation(ev)
        elif isinstance(ev, UnexpectedResponse):
            self.log.info(
                "unexpected %s seq=%d: %s", ev.pdu.command_id.name, ev.pdu.sequence_number, ev.reason.value
            )

    def _complete(self, waiter: Any, result: outcome.Outcome[Pdu]) -> None:
        if waiter is None:
            return
        if isinstance(waiter, trio.lowlevel.Task):
            trio.lowlevel.reschedule(waiter, result)
            return
        try:
            waiter(result.error if isinstance(result, outcome.Error) else result.unwrap())
        except Exception:
            self.log.exception("request callback failed")

    def _fail_all(self, exc: BaseException) -> None:
        waiters = self._waiters
        if not waiters:
            return
        items = list(waiters.values())
        waiters.clear()
        for w in items:
            self._complete(w, outcome.Error(exc))

    def _begin_close(self) -> None:
        if not self._closing:
            self._closing = True
            scope = self._send_scope
            if scope is not None:  # a write in progress may wait on a peer that never reads
                scope.deadline = min(scope.deadline, trio.current_time() + _FLUSH_ON_CLOSE)
            self._wake_all()

    def _wake_all(self) -> None:
        for lot in (self._writer_lot, self._drain_lot, self._window_lot, self._change_lot, self._timer_lot):
            if lot:
                lot.unpark_all()

    # ------------------------------------------------------------------ I/O tasks

    def _flush_out(self) -> None:
        data = self.conn.data_to_send()
        if data and not self._eof:
            self._out.append(data)
            n = self._out_bytes + len(data)
            self._out_bytes = n
            if n > self.max_buffered_bytes:
                self.max_buffered_bytes = n
            if self._writer_lot:
                self._writer_lot.unpark()

    async def _reader(self) -> None:
        conn = self.conn
        stream = self.stream
        limit = self.max_send_buffer
        stats = self.stats
        while not self._closing:
            # back-pressure: do not read (and so do not produce responses) while the peer
            # is not reading what we already owe it, or the handlers are behind
            while (
                self._out_bytes > limit or len(self._jobs) > self.handler_concurrency
            ) and not self._closing:
                await self._drain_lot.park()
            if self._closing:
                return
            try:
                data = await stream.receive_some(_READ_SIZE)
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                if not self._closing:
                    self.log.info("read failed: %r", exc)
                data = b""
            if self._closing:
                return
            stats.bytes_in += len(data)
            conn.receive_data(data, self._now())
            self._process_events()
            self._flush_out()
            self._rearm_timer()
            if self._window_lot and (free := self.window_available):
                self._window_lot.unpark(count=free)
            if self._change_lot:
                self._change_lot.unpark_all()
            if not data:
                self._begin_close()
                return

    async def _writer(self) -> None:
        stream = self.stream
        while True:
            if not self._out:
                if self._eof and not self._eof_sent:
                    self._eof_sent = True
                    if isinstance(stream, trio.abc.HalfCloseableStream):
                        try:
                            await stream.send_eof()
                        except (trio.BrokenResourceError, trio.ClosedResourceError, OSError):
                            pass
                    continue
                if self._closing:
                    return
                await self._writer_lot.park()
                continue
            chunks = self._out
            self._out = []
            data = chunks[0] if len(chunks) == 1 else b"".join(chunks)
            try:
                with trio.CancelScope() as scope:
                    if self._closing:
                        scope.deadline = trio.current_time() + _FLUSH_ON_CLOSE
                    self._send_scope = scope
                    await stream.send_all(data)
                self._send_scope = None
                if scope.cancelled_caught:  # closing, and the peer does not read: give up on the rest
                    self._out_bytes = 0
                    self._out.clear()
                    return
            except (trio.BrokenResourceError, trio.ClosedResourceError, OSError) as exc:
                self.log.info("write failed: %r", exc)
                self._out_bytes = 0
                self._out.clear()
                if self.conn.state is not S.CLOSED:
                    self.conn.receive_data(b"", trio.current_time())
                    self._process_events()
                self._begin_close()
                return
            self._out_bytes -= len(data)
            self.stats.bytes_out += len(data)
            if self._drain_lot:
                self._drain_lot.unpark_all()

    async def _timer(self) -> None:
        conn = self.conn
        while not self._closing:
            t = conn.get_timer()
            self._timer_at = t if t is not None else math.inf
            with trio.move_on_at(self._timer_at):
                await self._timer_lot.park()
            if self._closing:
                return
            now = self._now()
            if now >= self._timer_at:
                conn.handle_timer(now)
                self._process_events()
                self._flush_out()
                if self._window_lot and (free := self.window_available):
                    self._window_lot.unpark(count=free)
                if self._change_lot:
                    self._change_lot.unpark_all()

    def _rearm_timer(self) -> None:
        t = self.conn.get_timer()
        if t is not None and t < self._timer_at and self._timer_lot:
            self._timer_lot.unpark()


_WINDOWED: Final = frozenset(
    int(c)
    for c in (
        CommandId.submit_sm,
        CommandId.deliver_sm,
        CommandId.data_sm,
        CommandId.query_sm,
        CommandId.cancel_sm,
        CommandId.replace_sm,
        CommandId.submit_multi,
    )
)


_Task: Final = trio.lowlevel.Task
_CLOSED: Final = S.CLOSED  # a module global: ``S.CLOSED`` costs ~70 ns per access in CPython 3.11


def _clock_of_current_run() -> Callable[[], float]:
    try:
        return trio.lowlevel.current_clock().current_time
    except RuntimeError:  # built outside a trio run
        return trio.current_time


def _closed(conn: SmppConnection) -> bool:
    return conn.state is S.CLOSED


def _discard(aw: Awaitable[Any]) -> None:
    close = getattr(aw, "close", None)
    if close is not None:
        close()
