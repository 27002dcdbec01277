"""The SMSC simulator on trio: :class:`SmscSimulator` (programmatic) and :func:`run_cli` (the command).

In a test::

    async with open_simulator(SimConfig(receipt_delay=DelayRange(0.05, 0.05))) as sim:
        ... connect to ("127.0.0.1", sim.port) ...
        await sim.wait_until(lambda s: s.stats.receipts_sent == 10)
        assert [m.text for m in sim.assembled()] == [...]

Every accepted submit_sm / data_sm / submit_multi is kept (``sim.messages``,
bounded by ``keep_messages``) with its octets, data_coding, UDH / SAR details and
decoded text.  Requests are first put through the protocol core's field check
(:func:`~catalyst_smpp.protocol.fields.request_problem`, the one the gateway runs):
priority_flag above 3, replace_if_present_flag above 1 or a schedule/validity that is
not a real time earn the field's status; a well-formed replace_sm gets
``ESME_RREPLACEFAIL``.  Receipts go to a receiver or transceiver bind of the same
system_id; while there is none they wait (store-and-forward) and go out on the
next such bind.  A receipt whose deliver_sm goes unanswered because the
connection was lost is queued again; one answered with a temporary error
(``ESME_RX_T_APPN``, ``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``) is sent again a second later.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import logging
import math
import signal
import ssl
import sys
import time
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any

import attrs
import trio

from catalyst_smpp.encoding import SegmentMethod, segment
from catalyst_smpp.encoding.receipts import Receipt, format_receipt, stat_for_state
from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.protocol.errors import LocalProtocolError
from catalyst_smpp.protocol.fields import request_problem
from catalyst_smpp.protocol.pdu import DataSm, DeliverSm, Pdu, ReplaceSm, SubmitMulti, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.server import Account, BindRequest, ServerConfig, ServerSession, SmppServer
from catalyst_smpp.sim.config import SimConfig
from catalyst_smpp.sim.engine import Action, ConnectionFaults, SimEngine, Verdict
from catalyst_smpp.sim.stats import SimStats
from catalyst_smpp.sim.store import AssembledMessage, MessageStore, StoredMessage, assemble, stored_from_pdu
from catalyst_smpp.transport import DEFERRED, Reply, SessionClosedError, SessionError, SmppSession

__all__ = ["SmscSimulator", "open_simulator", "run_cli"]

logger = logging.getLogger(__name__)

_SUBMITS = (SubmitSm, DataSm, SubmitMulti)
_SAFE_TEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'-+*/()=%&#")
_DROP_GRACE = 5.0
#: deliver_sm answered with one of these is sent again after _RETRY_DELAY (as SMSCs do), not counted failed
_RETRY_DELIVER = frozenset(
    {int(CommandStatus.ESME_RX_T_APPN), int(CommandStatus.ESME_RTHROTTLED), int(CommandStatus.ESME_RMSGQFUL)}
)
_RETRY_DELAY = 1.0
_TAG_RECEIPTED_ID = int(Tag.receipted_message_id)
_TAG_MESSAGE_STATE = int(Tag.message_state)


class _ReceiptText:
    """The receipt text of :func:`format_receipt`, with the dates of now, for many receipts a second.

    Per second and state the whole text is formatted once without id and text (``id: sub:001 ...
    text:``); each receipt splices its id and text snippet in.  The same octets as one
    ``format_receipt`` per receipt, at a fraction of the cost (no ``Receipt``, ``datetime`` or
    ``strftime`` per receipt).
    """

    def __init__(self) -> None:
        self._second = -1
        self._middles: dict[MessageState, bytes] = {}
        """state -> the text after ``id:<id>`` and before the snippet, for the current second."""

    def make(self, receipt_id: str, state: MessageState, snippet: str) -> bytes:
        second = int(time.time())
        if second != self._second:
            self._second = second
            self._middles.clear()
        middle = self._middles.get(state)
        if middle is None:
            middle = self._middles[state] = self._middle(state)
        head = b"id:" + receipt_id.encode("latin-1", errors="replace")
        if snippet:
            return head + middle + snippet.encode("latin-1", errors="replace")
        return head + middle

    @staticmethod
    def _middle(state: MessageState) -> bytes:
        now = _dt.datetime.now().replace(microsecond=0)
        delivered = state is MessageState.DELIVERED
        text = format_receipt(
            Receipt(
                message_id="",
                state=state,
                stat=stat_for_state(state),
                sub=1,
                dlvrd=1 if delivered else 0,
                submit_date=now,
                done_date=now,
                err="000" if delivered else "001",
                text="",
            )
        )
        assert text.startswith(b"id:")
        return text[3:]


@attrs.define
class _Job:
    """A deliver_sm to send (a receipt or an MO) and, for receipts, the state it reports."""

    system_id: str | None
    """Receipts go to this system_id; MO (None) to any receiving bind."""
    pdu: DeliverSm
    stat: str | None


class _Conn:
    """The simulator's state for one connection (a :class:`ServerSession` of its server)."""

    def __init__(self, sim: SmscSimulator, session: ServerSession) -> None:
        self.sim = sim
        self.session = session
        self.faults = ConnectionFaults()
        self.dropping = False
        self.outbox: deque[_Job] = deque()
        self.gone = False
        self.delayed = 0
        """Responses held back by injected latency and not yet sent."""

    @property
    def usable(self) -> bool:
        return not self.dropping and not self.gone and not self.session.is_closed

    # -- requests --------------------------------------------------------------------

    def on_request(self, pdu: Pdu) -> Reply:
        stats = self.sim.stats
        if isinstance(pdu, SubmitSm):
            stats.submit_sm += 1
        elif isinstance(pdu, DataSm):
            stats.data_sm += 1
        elif isinstance(pdu, SubmitMulti):
            stats.submit_multi += 1
        else:
            stats.other += 1
        # the protocol core's value check, the same one the gateway runs on its partners' requests
        problem = request_problem(pdu)
        if problem is not None:
            status = problem[0]
        elif isinstance(pdu, _SUBMITS):
            return self.on_submit(pdu)
        elif isinstance(pdu, ReplaceSm):
            # the simulator does not replace stored messages: a well-formed replace_sm gets "replace failed"
            status = int(CommandStatus.ESME_RREPLACEFAIL)
        else:
            status = int(CommandStatus.ESME_RINVCMDID)
        stats.count_invalid(status)
        return status

    def on_submit(self, pdu: SubmitSm | DataSm | SubmitMulti) -> Reply:
        sim = self.sim
        if self.dropping:
            sim.stats.unanswered += 1
            return DEFERRED  # never answered
        now = trio.current_time()
        verdict = sim.engine.on_submit(self.faults, now, pdu.registered_delivery)
        if verdict.action is Action.DROP:
            sim.engine.record(verdict)
            self.drop()
            return DEFERRED
        if verdict.action is Action.REJECT:
            resp = pdu.make_response(verdict.status)
        else:
            resp = pdu.make_response(0, message_id=verdict.message_id)
        if verdict.delay <= 0:
            # answered now, so a receipt due at once follows the response on the wire
            self.session.respond(pdu, resp)
            self.sent(pdu, verdict, now)
        else:
            self.delayed += 1
            sim._later(verdict.delay, self._respond_later, pdu, resp, verdict, now)
        return DEFERRED

    def sent(self, pdu: SubmitSm | DataSm | SubmitMulti, verdict: Verdict, now: float) -> None:
        """The response is on its way: count it, keep the message and plan its receipt."""
        self.sim.engine.record(verdict)
        if verdict.action is Action.ACCEPT:
            self.sim._accepted(self, pdu, verdict, now)

    def _respond_later(
        self, pdu: SubmitSm | DataSm | SubmitMulti, resp: Pdu, verdict: Verdict, received_at: float
    ) -> None:
        if self.gone:
            return  # counted as unanswered when the connection closed
        self.delayed -= 1
        if not self.usable:
            self.sim.stats.unanswered += 1
            return
        self.session.respond(pdu, resp)
        self.sent(pdu, verdict, received_at)

    def drop(self) -> None:
        """Fault injection: answer nothing more and end the connection.

        What was answered so far is written, then EOF (``shutdown_write``); we keep reading until the
        peer closes, so every submit it sent is still counted (as unanswered), and abort after a grace."""
        if self.dropping:
            return
        self.session.log.info("dropping the connection (fault injection)")
        self.dropping = True
        self.sim.stats.drops += 1
        self.session.shutdown_write()
        self.sim._later(_DROP_GRACE, self.session.close)

    # -- deliver_sm out --------------------------------------------------------------

    def push(self, job: _Job) -> None:
        self.outbox.append(job)
        self.pump()

    def pump(self) -> None:
        session = self.session
        while self.outbox and self.usable and session.window_available > 0:
            job = self.outbox.popleft()
            try:
                session.send_request(job.pdu, partial(self.on_response, job))
            except (trio.WouldBlock, SessionError, LocalProtocolError):
                self.outbox.appendleft(job)
                return

    def on_response(self, job: _Job, result: Pdu | BaseException) -> None:
        stats = self.sim.stats
        if isinstance(result, SessionClosedError):
            self.sim._dispatch(job)  # the connection went away first: another bind (or later) takes it
            return
        status = result.command_status if isinstance(result, Pdu) else None
        if status in _RETRY_DELIVER:
            # a temporary refusal (the ESME could not take it now): an SMSC tries again later
            stats.deliver_retries += 1
            self.sim._later(_RETRY_DELAY, self.sim._dispatch, job)
            self.pump()
            return
        if job.stat is not None:
            if status == 0:
                stats.count_receipt(job.stat)
            else:
                stats.receipts_failed += 1
            self.sim._receipt_answered(job.pdu, status)
        elif status == 0:
            stats.mo_sent += 1
        else:
            stats.mo_failed += 1
        self.pump()


class _Authenticator:
    """Binds are checked by the engine (credentials, counters)."""

    def __init__(self, engine: SimEngine) -> None:
        self.engine = engine

    async def authenticate(self, bind: BindRequest) -> Account | int:
        status = self.engine.check_bind(bind.system_id, bind.password)
        if status:
            logger.info("%s: bind of %r refused (0x%X)", bind.peer, bind.system_id, status)
            return status
        return Account(bind.system_id)


class _SimServer(SmppServer):
    def __init__(self, sim: SmscSimulator, config: ServerConfig) -> None:
        super().__init__(
            config, _Authenticator(sim.engine), sim._handle, on_bound=sim._on_bound, on_closed=sim._on_closed
        )
        self.sim = sim

    async def serve_stream(self, stream: trio.abc.Stream, peer: str | None = None) -> None:
        self.sim.stats.connections += 1
        await super().serve_stream(stream, peer)


class SmscSimulator:
    """The simulator; start it with ``await nursery.start(sim.serve)`` or :func:`open_simulator`.

    Built on :class:`catalyst_smpp.server.SmppServer`: its handler answers submits (at once, or later
    through ``DEFERRED`` + ``session.respond`` for injected latency, or never for a drop), and receipts
    and MO messages go out with ``session.send_request`` within each session's window.
    """

    def __init__(
        self,
        config: SimConfig | None = None,
        on_stats: Callable[[SimStats], None] | None = None,
        *,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ssl_context``: serve SMPP over TLS with this server context (tests of operator TLS links)."""
        self.config = config if config is not None else SimConfig()
        self.engine = SimEngine(self.config)
        self.stats = self.engine.stats
        self.messages = MessageStore(self.config.keep_messages)
        self.port = 0
        self._on_stats = on_stats
        self._conns: dict[ServerSession, _Conn] = {}
        self._receivers: dict[str, list[_Conn]] = {}
        self._rr = itertools.count()
        self._pending: dict[str, deque[_Job]] = {}
        self._pending_mo: deque[_Job] = deque()
        """MO generated while no receiver/transceiver was bound: sent when one binds (an SMSC stores them)."""
        self._heap: list[tuple[float, int, _Job]] = []
        self._timers: list[tuple[float, int, Callable[..., object], tuple[Any, ...]]] = []
        self._heap_seq = itertools.count()
        self._heap_wake = trio.Event()
        self._changed = trio.Event()
        self._receipt_text = _ReceiptText()
        self._state_tlvs = {state: Tlv.make(_TAG_MESSAGE_STATE, int(state)) for state in MessageState}
        self.server = _SimServer(
            self,
            ServerConfig(
                host=self.config.host,
                port=self.config.port,
                system_id=self.config.system_id,
                session=SessionConfig(
                    window_size=self.config.window,
                    response_timeout=10.0,
                    enquire_link_interval=None,
                    bind_timeout=30.0,
                ),
                shutdown_timeout=1.0,
                ssl_context=ssl_context,
            ),
        )

    # -- queries for tests -------------------------------------------------------------

    @property
    def address(self) -> tuple[str, int]:
        return self.config.host, self.port

    def assembled(self) -> list[AssembledMessage]:
        """The kept messages with concatenated parts joined, in arrival order."""
        return assemble(self.messages)

    @property
    def bound_sessions(self) -> int:
        return sum(1 for s in self.server.sessions() if s.is_bound and not s.is_closed)

    @property
    def receipts_scheduled(self) -> int:
        """Receipts not yet due."""
        return len(self._heap)

    def summary(self) -> dict[str, Any]:
        out = self.stats.as_dict()
        out["receipts_pending"] = sum(len(q) for q in self._pending.values())
        out["receipts_scheduled"] = len(self._heap)
        out["mo_pending"] = len(self._pending_mo)
        return out

    async def wait_until(self, predicate: Callable[[SmscSimulator], bool], timeout: float = 10.0) -> None:
        """Wait until ``predicate(self)`` holds (checked whenever the simulator's counters change)."""
        with trio.fail_after(timeout):
            while not predicate(self):
                await self._changed.wait()

    def _touch(self) -> None:
        self._changed.set()
        self._changed = trio.Event()

    # -- serving -----------------------------------------------------------------------

    async def serve(self, *, task_status: trio.TaskStatus[int] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as nursery:
            await nursery.start(self.server.serve)
            self.port = self.server.ports[0]
            logger.info(
                "smsc-sim listening on %s:%d (%s)", self.config.host, self.port, self.config.describe()
            )
            nursery.start_soon(self._scheduler)
            if self.config.mo_rate > 0:
                nursery.start_soon(self._mo_generator)
            if self.config.stats_interval > 0 and self._on_stats is not None:
                nursery.start_soon(self._stats_reporter)
            nursery.start_soon(self._watch_changes)
            task_status.started(self.port)

    async def _watch_changes(self) -> None:
        # wake wait_until() callers a few times a second even when no counter-changing event happened
        while True:
            await trio.sleep(0.02)
            self._touch()

    def _conn(self, session: ServerSession) -> _Conn:
        conn = self._conns.get(session)
        if conn is None:
            conn = self._conns[session] = _Conn(self, session)
        return conn

    def _handle(self, session: SmppSession, pdu: Pdu) -> Reply:
        return self._conn(session).on_request(pdu)  # type: ignore[arg-type]

    def _on_bound(self, session: ServerSession) -> None:
        conn = self._conn(session)
        if session.can_deliver:
            self._receivers.setdefault(session.system_id, []).append(conn)
            pending = self._pending.pop(session.system_id, None)
            if pending:
                self.stats.receipts_pending -= len(pending)
                for job in pending:
                    conn.push(job)
            while self._pending_mo:
                conn.push(self._pending_mo.popleft())

    def _on_closed(self, session: ServerSession) -> None:
        self.stats.disconnects += 1
        if session.unbound_by_peer:
            self.stats.unbinds += 1
        conn = self._conns.pop(session, None)
        if conn is not None:
            # responses still held back by injected latency will never be sent
            self.stats.unanswered += conn.delayed
            conn.delayed = 0
            conn.gone = True
            receivers = self._receivers.get(session.system_id, [])
            if conn in receivers:
                receivers.remove(conn)
            jobs = list(conn.outbox)
            conn.outbox.clear()
            for job in jobs:
                self._dispatch(job)
        self._touch()

    # -- accepted messages and their receipts ------------------------------------------

    def _accepted(
        self, conn: _Conn, pdu: SubmitSm | DataSm | SubmitMulti, verdict: Verdict, now: float
    ) -> None:
        keep = self.config.keep_messages != 0
        system_id = conn.session.system_id
        stored = (
            stored_from_pdu(pdu, system_id, verdict.message_id, verdict.receipt_id, now) if keep else None
        )
        if stored is not None:
            self.messages.add(stored)
        if verdict.receipt_due_in is None or verdict.state is None:
            return
        for _copy in range(self.config.receipt_copies):
            job = _Job(system_id, self._receipt_pdu(pdu, verdict, stored), stat_for_state(verdict.state))
            if verdict.receipt_due_in <= 0:
                # due at once: queued behind the response, which the session sent first
                self._dispatch(job)
            else:
                self._push_heap(trio.current_time() + verdict.receipt_due_in, job)

    def _receipt_pdu(
        self, pdu: SubmitSm | DataSm | SubmitMulti, verdict: Verdict, stored: StoredMessage | None
    ) -> DeliverSm:
        cfg = self.config
        assert verdict.state is not None
        state = verdict.state
        snippet = ""
        if cfg.receipt_text and stored is not None:
            text = stored.text or ""
            snippet = "".join(c if c in _SAFE_TEXT else "?" for c in text[:20])
        tlvs: tuple[Tlv, ...] = ()
        short = b""
        if cfg.receipt_text:
            short = self._receipt_text.make(verdict.receipt_id, state, snippet)
            if cfg.receipt_data_coding == 8:
                short = short.decode("latin-1").encode("utf-16-be")
        if cfg.receipt_tlvs:
            tlv_id = verdict.message_id if cfg.receipt_tlv_resp_id else verdict.receipt_id
            tlvs = (Tlv.make(_TAG_RECEIPTED_ID, tlv_id), self._state_tlvs[state])
        dest = (
            pdu.destination_addr
            if not isinstance(pdu, SubmitMulti)
            else (getattr(pdu.dest_address[0], "destination_addr", "") if pdu.dest_address else "")
        )
        return DeliverSm(
            source_addr_ton=getattr(pdu, "dest_addr_ton", 1),
            source_addr_npi=getattr(pdu, "dest_addr_npi", 1),
            source_addr=dest,
            dest_addr_ton=pdu.source_addr_ton,
            dest_addr_npi=pdu.source_addr_npi,
            destination_addr=pdu.source_addr,
            esm_class=cfg.receipt_esm_class,
            data_coding=cfg.receipt_data_coding,
            short_message=short,
            tlvs=tlvs,
        )

    def _dispatch(self, job: _Job) -> None:
        """Hand a deliver_sm to a receiving session (round-robin), or park it until one binds."""
        if job.system_id is None:
            candidates = [c for c in self._conns.values() if c.session.can_deliver and c.usable]
        else:
            candidates = [c for c in self._receivers.get(job.system_id, ()) if c.usable]
        if not candidates:
            if job.system_id is None:
                self._pending_mo.append(job)  # an MO waits for a receiver, like a receipt
                return
            self._pending.setdefault(job.system_id, deque()).append(job)
            self.stats.receipts_pending += 1
            return
        candidates[next(self._rr) % len(candidates)].push(job)

    def _receipt_answered(self, pdu: DeliverSm, status: int | None) -> None:
        """A receipt got its final answer (``status``; None: no response).  A hook for tests."""

    # -- time: receipts due later, delayed responses, drop grace -------------------------

    def _push_heap(self, due: float, job: _Job) -> None:
        heapq.heappush(self._heap, (due, next(self._heap_seq), job))
        if self._heap[0][2] is job:
            self._heap_wake.set()

    def _later(self, delay: float, fn: Callable[..., object], *args: Any) -> None:
        """Call ``fn(*args)`` after ``delay`` seconds from the scheduler task (no task per call)."""
        entry = (trio.current_time() + delay, next(self._heap_seq), fn, args)
        heapq.heappush(self._timers, entry)
        if self._timers[0] is entry:
            self._heap_wake.set()

    async def _scheduler(self) -> None:
        heap = self._heap
        timers = self._timers
        while True:
            due = min(heap[0][0] if heap else math.inf, timers[0][0] if timers else math.inf)
            with trio.move_on_at(due):
                await self._heap_wake.wait()
            self._heap_wake = trio.Event()
            now = trio.current_time()
            while timers and timers[0][0] <= now:
                _, _, fn, args = heapq.heappop(timers)
                try:
                    fn(*args)
                except Exception:
                    logger.exception("simulator timer failed")
            while heap and heap[0][0] <= now:
                _, _, job = heapq.heappop(heap)
                self._dispatch(job)

    async def _mo_generator(self) -> None:
        cfg = self.config
        interval = 1.0 / cfg.mo_rate
        numbered = "{n}" in cfg.mo_text
        fits = len(segment(cfg.mo_text).parts) == 1
        whole = segment(cfg.mo_text, method=SegmentMethod.PAYLOAD)
        octets = whole.parts[0].payload
        sent = 0
        next_at = trio.current_time()
        while cfg.mo_count is None or sent < cfg.mo_count:
            next_at += interval
            await trio.sleep_until(next_at)
            if numbered:  # "{n}" in the text: the MO's number (1, 2, ...), so each one can be told apart
                text = cfg.mo_text.replace("{n}", str(sent + 1))
                fits = len(segment(text).parts) == 1
                whole = segment(text, method=SegmentMethod.PAYLOAD)
                octets = whole.parts[0].payload
            pdu = DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=cfg.mo_source,
                dest_addr_ton=0,
                dest_addr_npi=0,
                destination_addr=cfg.mo_dest,
                data_coding=whole.data_coding,
                short_message=octets if fits else b"",
                tlvs=() if fits else (Tlv(int(Tag.message_payload), octets),),
            )
            self._dispatch(_Job(None, pdu, None))
            sent += 1

    async def _stats_reporter(self) -> None:
        assert self._on_stats is not None
        while True:
            await trio.sleep(self.config.stats_interval)
            self._on_stats(self.stats)


@asynccontextmanager
async def open_simulator(
    config: SimConfig | None = None, *, ssl_context: ssl.SSLContext | None = None
) -> AsyncIterator[SmscSimulator]:
    """Run a simulator for the duration of the block (on a free port unless the config says otherwise;
    over TLS with ``ssl_context``)."""
    sim = SmscSimulator(config, ssl_context=ssl_context)
    async with trio.open_nursery() as nursery:
        await nursery.start(sim.serve)
        try:
            yield sim
        finally:
            nursery.cancel_scope.cancel()


def run_cli(
    config: SimConfig, *, port_file: Path | None = None, duration: float | None = None
) -> dict[str, Any]:
    """Run until Ctrl-C / SIGTERM / ``duration``; return the summary (the command prints it)."""

    def print_stats(stats: SimStats) -> None:
        print(f"smsc-sim: {stats.line()}", file=sys.stderr, flush=True)

    sim = SmscSimulator(config, on_stats=print_stats)

    async def main() -> None:
        async with trio.open_nursery() as nursery:
            port = await nursery.start(sim.serve)
            print(
                f"smsc-sim listening on {config.host}:{port} ({config.describe()})",
                file=sys.stderr,
                flush=True,
            )
            if port_file is not None:
                tmp = port_file.with_name(port_file.name + ".tmp")
                tmp.write_text(f"{port}\n")
                tmp.replace(port_file)
            with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
                with trio.move_on_after(duration if duration is not None else math.inf):
                    async for _ in signals:
                        break
            nursery.cancel_scope.cancel()

    try:
        trio.run(main)
    except KeyboardInterrupt:
        pass
    summary = sim.summary()
    if config.keep_messages:
        summary["messages"] = [
            {
                "message_id": m.message_id,
                "system_id": m.system_id,
                "source_addr": m.source_addr,
                "destinations": list(m.destinations),
                "data_coding": m.data_coding,
                "text": m.text,
                "parts": (f"{m.concat.seq}/{m.concat.total}" if m.concat else None),
            }
            for m in sim.messages
        ]
    return summary
