"""The SMSC simulator on trio: :class:`SmscSimulator` (programmatic) and :func:`run_cli` (the command).

In a test::

    async with open_simulator(SimConfig(receipt_delay=DelayRange(0.05, 0.05))) as sim:
        ... connect to ("127.0.0.1", sim.port) ...
        await sim.wait_until(lambda s: s.stats.receipts_sent == 10)
        assert [m.text for m in sim.assembled()] == [...]

Every accepted submit_sm / data_sm / submit_multi is kept (``sim.messages``,
bounded by ``keep_messages``) with its octets, data_coding, UDH / SAR details and
decoded text.  Receipts go to a receiver or transceiver bind of the same
system_id; while there is none they wait (store-and-forward) and go out on the
next such bind.  A receipt whose deliver_sm goes unanswered because the
connection was lost is queued again.
"""

from __future__ import annotations

import datetime as _dt
import heapq
import itertools
import logging
import math
import signal
import sys
from collections import deque
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import attrs
import trio

from catalyst_smpp.encoding.receipts import Receipt, format_receipt, stat_for_state
from catalyst_smpp.protocol.constants import CommandStatus, EsmClass, MessageState
from catalyst_smpp.protocol.errors import LocalProtocolError, WindowFullError
from catalyst_smpp.protocol.events import (
    ConnectionClosed,
    Event,
    RequestReceived,
    ResponseReceived,
    ResponseTimeout,
    Unbound,
)
from catalyst_smpp.protocol.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    DataSm,
    DeliverSm,
    Pdu,
    SubmitMulti,
    SubmitSm,
)
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.sim.config import SimConfig
from catalyst_smpp.sim.engine import Action, ConnectionFaults, SimEngine, Verdict
from catalyst_smpp.sim.link import Link
from catalyst_smpp.sim.stats import SimStats
from catalyst_smpp.sim.store import AssembledMessage, MessageStore, StoredMessage, assemble, stored_from_pdu
from catalyst_smpp.sim.textcodec import choose_data_coding, encode_for_data_coding, split_octets

__all__ = ["SmscSimulator", "open_simulator", "run_cli"]

logger = logging.getLogger(__name__)

_SUBMITS = (SubmitSm, DataSm, SubmitMulti)
_BINDS = (BindTransmitter, BindReceiver, BindTransceiver)
_SAFE_TEXT = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789 .,:;!?'-+*/()=%&#")
_DROP_GRACE = 5.0


@attrs.define
class _Job:
    """A deliver_sm to send (a receipt or an MO) and, for receipts, the state it reports."""

    system_id: str | None
    """Receipts go to this system_id; MO (None) to any receiving bind."""
    pdu: DeliverSm
    stat: str | None


class _Session:
    """One connection of the simulator."""

    def __init__(self, sim: SmscSimulator, link: Link, peer: str) -> None:
        self.sim = sim
        self.link = link
        self.peer = peer
        self.system_id = ""
        self.can_receive = False
        self.bound = False
        self.faults = ConnectionFaults()
        self.dropping = False
        self.outbox: deque[_Job] = deque()
        self.in_flight: dict[int, _Job] = {}
        self.nursery: trio.Nursery | None = None
        self.gone = False
        self.delayed = 0
        """Responses held back by injected latency and not yet sent."""

    @property
    def name(self) -> str:
        return f"{self.system_id or '-'}@{self.peer}"

    # -- events ----------------------------------------------------------------------

    def on_event(self, event: Event) -> None:
        if isinstance(event, RequestReceived):
            self.on_request(event.pdu)
        elif isinstance(event, ResponseReceived):
            self.on_response(event.request, event.pdu.command_status)
        elif isinstance(event, ResponseTimeout):
            self.on_response(event.request, None)
        elif isinstance(event, Unbound):
            self.sim.stats.unbinds += 1
            self.link.half_close()
        elif isinstance(event, ConnectionClosed):
            self.sim._closed(self)
            logger.info("%s: connection closed (%s %s)", self.name, event.reason.value, event.detail)

    def on_request(self, pdu: Pdu) -> None:
        sim = self.sim
        stats = sim.stats
        if isinstance(pdu, SubmitSm):
            stats.submit_sm += 1
            self.on_submit(pdu)
        elif isinstance(pdu, DataSm):
            stats.data_sm += 1
            self.on_submit(pdu)
        elif isinstance(pdu, SubmitMulti):
            stats.submit_multi += 1
            self.on_submit(pdu)
        elif isinstance(pdu, _BINDS):
            self.on_bind(pdu)
        elif pdu.command_id in (0x0000000B, 0x00000102):  # outbind, alert_notification: no response
            stats.other += 1
        else:
            stats.other += 1
            status = int(CommandStatus.ESME_RINVCMDID)
            stats.count_invalid(status)
            self.link.send(pdu.make_response(status))

    def on_bind(self, pdu: BindTransmitter | BindReceiver | BindTransceiver) -> None:
        sim = self.sim
        status = sim.engine.check_bind(pdu.system_id, pdu.password)
        self.link.send(pdu.make_response(status, system_id=sim.config.system_id))
        if status:
            logger.info("%s: bind of %r refused (0x%X)", self.peer, pdu.system_id, status)
            return
        self.system_id = pdu.system_id
        self.bound = True
        self.can_receive = not isinstance(pdu, BindTransmitter)
        logger.info("%s: bound (%s)", self.name, type(pdu).__name__)
        if self.can_receive:
            sim._receiver_bound(self)

    def on_submit(self, pdu: SubmitSm | DataSm | SubmitMulti) -> None:
        sim = self.sim
        if self.dropping:
            sim.stats.unanswered += 1
            return
        now = trio.current_time()
        verdict = sim.engine.on_submit(self.faults, now, pdu.registered_delivery)
        if verdict.action is Action.DROP:
            sim.engine.record(verdict)
            self.drop()
            return
        if verdict.action is Action.REJECT:
            resp = pdu.make_response(verdict.status)
        else:
            resp = pdu.make_response(0, message_id=verdict.message_id)
        if verdict.delay <= 0:
            self.link.send(resp)
            self.sent(pdu, verdict, now)
        elif self.nursery is not None:
            self.delayed += 1
            self.nursery.start_soon(self._respond_later, pdu, resp, verdict, now)

    def sent(self, pdu: SubmitSm | DataSm | SubmitMulti, verdict: Verdict, now: float) -> None:
        """The response is on its way: count it, keep the message and plan its receipt."""
        self.sim.engine.record(verdict)
        if verdict.action is Action.ACCEPT:
            # after the response, so a receipt due at once follows it on the wire
            self.sim._accepted(self, pdu, verdict, now)

    async def _respond_later(
        self, pdu: SubmitSm | DataSm | SubmitMulti, resp: Pdu, verdict: Verdict, received_at: float
    ) -> None:
        await trio.sleep(verdict.delay)
        if self.gone:
            return  # counted as unanswered when the connection closed
        self.delayed -= 1
        if self.dropping or self.link.closed:
            self.sim.stats.unanswered += 1
            return
        try:
            self.link.send(resp)
        except LocalProtocolError:
            self.sim.stats.unanswered += 1
            return
        self.sent(pdu, verdict, received_at)

    def drop(self) -> None:
        """Fault injection: answer nothing more and end the connection (see Link.half_close)."""
        if self.dropping:
            return
        logger.info("%s: dropping the connection (fault injection)", self.name)
        self.dropping = True
        self.sim.stats.drops += 1
        self.link.half_close()
        if self.nursery is not None:
            self.nursery.start_soon(self._abort_later)

    async def _abort_later(self) -> None:
        await trio.sleep(_DROP_GRACE)
        self.link.abort()

    # -- deliver_sm out --------------------------------------------------------------

    def push(self, job: _Job) -> None:
        self.outbox.append(job)
        self.pump()

    def pump(self) -> None:
        conn = self.link.conn
        while self.outbox and not self.dropping and not self.link.closed and conn.window_available > 0:
            job = self.outbox.popleft()
            try:
                seq = self.link.send(job.pdu)
            except (LocalProtocolError, WindowFullError):
                self.outbox.appendleft(job)
                return
            self.in_flight[seq] = job

    def on_response(self, request: Pdu, status: int | None) -> None:
        job = self.in_flight.pop(request.sequence_number, None)
        if job is None:
            return
        stats = self.sim.stats
        if job.stat is not None:
            if status == 0:
                stats.count_receipt(job.stat)
            else:
                stats.receipts_failed += 1
        elif status == 0:
            stats.mo_sent += 1
        else:
            stats.mo_failed += 1
        self.pump()

    def take_undelivered(self) -> list[_Job]:
        jobs = [*self.in_flight.values(), *self.outbox]
        self.in_flight.clear()
        self.outbox.clear()
        return jobs


class SmscSimulator:
    """The simulator; start it with ``await nursery.start(sim.serve)`` or :func:`open_simulator`."""

    def __init__(
        self, config: SimConfig | None = None, on_stats: Callable[[SimStats], None] | None = None
    ) -> None:
        self.config = config if config is not None else SimConfig()
        self.engine = SimEngine(self.config)
        self.stats = self.engine.stats
        self.messages = MessageStore(self.config.keep_messages)
        self.port = 0
        self._on_stats = on_stats
        self._sessions: set[_Session] = set()
        self._receivers: dict[str, list[_Session]] = {}
        self._rr = itertools.count()
        self._pending: dict[str, deque[_Job]] = {}
        self._heap: list[tuple[float, int, _Job]] = []
        self._heap_seq = itertools.count()
        self._heap_wake = trio.Event()
        self._changed = trio.Event()
        self._session_config = SessionConfig(
            window_size=self.config.window,
            response_timeout=10.0,
            enquire_link_interval=None,
            bind_timeout=30.0,
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
        return sum(1 for s in self._sessions if s.bound and not s.link.closed)

    @property
    def receipts_scheduled(self) -> int:
        """Receipts not yet due."""
        return len(self._heap)

    def summary(self) -> dict[str, Any]:
        out = self.stats.as_dict()
        out["receipts_pending"] = sum(len(q) for q in self._pending.values())
        out["receipts_scheduled"] = len(self._heap)
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
        listeners = await trio.open_tcp_listeners(self.config.port, host=self.config.host)
        self.port = listeners[0].socket.getsockname()[1]
        logger.info("smsc-sim listening on %s:%d (%s)", self.config.host, self.port, self.config.describe())
        async with trio.open_nursery() as nursery:
            nursery.start_soon(self._receipt_scheduler)
            if self.config.mo_rate > 0:
                nursery.start_soon(self._mo_generator)
            if self.config.stats_interval > 0 and self._on_stats is not None:
                nursery.start_soon(self._stats_reporter)
            nursery.start_soon(self._watch_changes)
            await nursery.start(trio.serve_listeners, self._handle, listeners)
            task_status.started(self.port)

    async def _watch_changes(self) -> None:
        # wake wait_until() callers a few times a second even when no counter-changing event happened
        while True:
            await trio.sleep(0.02)
            self._touch()

    async def _handle(self, stream: trio.SocketStream) -> None:
        try:
            host, port = stream.socket.getpeername()[:2]
            peer = f"{host}:{port}"
        except OSError:
            peer = "?"
        self.stats.connections += 1
        link = Link(stream, Role.SMSC, self._session_config, f"sim<{peer}>")
        session = _Session(self, link, peer)
        self._sessions.add(session)
        try:
            async with trio.open_nursery() as nursery:
                session.nursery = nursery
                await link.run(session.on_event)
                nursery.cancel_scope.cancel()
        finally:
            if not link.closed or session in self._sessions:
                self._closed(session)

    def _closed(self, session: _Session) -> None:
        if session not in self._sessions:
            return
        self._sessions.discard(session)
        self.stats.disconnects += 1
        # responses still held back by injected latency will never be sent
        self.stats.unanswered += session.delayed
        session.delayed = 0
        session.gone = True
        if session.can_receive:
            receivers = self._receivers.get(session.system_id, [])
            if session in receivers:
                receivers.remove(session)
        for job in session.take_undelivered():
            self._dispatch(job)
        self._touch()

    def _receiver_bound(self, session: _Session) -> None:
        self._receivers.setdefault(session.system_id, []).append(session)
        pending = self._pending.pop(session.system_id, None)
        if pending:
            self.stats.receipts_pending -= len(pending)
            for job in pending:
                session.push(job)

    # -- accepted messages and their receipts ------------------------------------------

    def _accepted(
        self, session: _Session, pdu: SubmitSm | DataSm | SubmitMulti, verdict: Verdict, now: float
    ) -> None:
        keep = self.config.keep_messages != 0
        stored = (
            stored_from_pdu(pdu, session.system_id, verdict.message_id, verdict.receipt_id, now)
            if keep
            else None
        )
        if stored is not None:
            self.messages.add(stored)
        if verdict.receipt_due_in is None or verdict.state is None:
            return
        job = _Job(session.system_id, self._receipt_pdu(pdu, verdict, stored), stat_for_state(verdict.state))
        due = trio.current_time() + verdict.receipt_due_in
        if verdict.receipt_due_in <= 0:
            # due at once: queue behind the response, which the session sends first
            self._dispatch(job)
        else:
            heapq.heappush(self._heap, (due, next(self._heap_seq), job))
            if self._heap[0][2] is job:
                self._heap_wake.set()

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
        now = _dt.datetime.now().replace(microsecond=0)
        delivered = state is MessageState.DELIVERED
        tlvs: tuple[Tlv, ...] = ()
        short = b""
        if cfg.receipt_text:
            receipt = Receipt(
                message_id=verdict.receipt_id,
                state=state,
                stat=stat_for_state(state),
                sub=1,
                dlvrd=1 if delivered else 0,
                submit_date=now,
                done_date=now,
                err="000" if delivered else "001",
                text=snippet,
            )
            short = format_receipt(receipt)
        if cfg.receipt_tlvs:
            tlvs = (
                Tlv.make(Tag.receipted_message_id, verdict.receipt_id),
                Tlv.make(Tag.message_state, int(state)),
            )
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
            esm_class=int(EsmClass.TYPE_DELIVERY_RECEIPT),
            data_coding=0,
            short_message=short,
            tlvs=tlvs,
        )

    def _dispatch(self, job: _Job) -> None:
        """Hand a deliver_sm to a receiving session (round-robin), or park it until one binds."""
        if job.system_id is None:
            candidates = [s for s in self._sessions if s.can_receive and not s.dropping and not s.link.closed]
        else:
            candidates = [
                s for s in self._receivers.get(job.system_id, ()) if not s.dropping and not s.link.closed
            ]
        if not candidates:
            if job.system_id is None:
                return  # an MO with nobody to take it is simply not sent
            self._pending.setdefault(job.system_id, deque()).append(job)
            self.stats.receipts_pending += 1
            return
        session = candidates[next(self._rr) % len(candidates)]
        session.push(job)

    async def _receipt_scheduler(self) -> None:
        heap = self._heap
        while True:
            if not heap:
                await self._heap_wake.wait()
            else:
                with trio.move_on_at(heap[0][0]):
                    await self._heap_wake.wait()
            self._heap_wake = trio.Event()
            now = trio.current_time()
            while heap and heap[0][0] <= now:
                _, _, job = heapq.heappop(heap)
                self._dispatch(job)

    async def _mo_generator(self) -> None:
        cfg = self.config
        interval = 1.0 / cfg.mo_rate
        data_coding = choose_data_coding(cfg.mo_text)
        octets = encode_for_data_coding(cfg.mo_text, data_coding)
        fits = len(split_octets(octets, data_coding)) == 1
        sent = 0
        next_at = trio.current_time()
        while cfg.mo_count is None or sent < cfg.mo_count:
            next_at += interval
            await trio.sleep_until(next_at)
            pdu = DeliverSm(
                source_addr_ton=1,
                source_addr_npi=1,
                source_addr=cfg.mo_source,
                dest_addr_ton=0,
                dest_addr_npi=0,
                destination_addr=cfg.mo_dest,
                data_coding=data_coding,
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
async def open_simulator(config: SimConfig | None = None) -> AsyncIterator[SmscSimulator]:
    """Run a simulator for the duration of the block (on a free port unless the config says otherwise)."""
    sim = SmscSimulator(config)
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
