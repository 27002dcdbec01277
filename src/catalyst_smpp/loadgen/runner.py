"""The load generator on trio: binds, windows, pacing, receipts and the final report.

``await run_load(config)`` returns a :class:`LoadReport`; :func:`run_cli` wraps it
for the command (progress line, Ctrl-C).  Every bind keeps up to ``window``
submit_sm unanswered; a shared pacer holds the total rate when one is given.  A
lost connection is bound again (``reconnect``); the submits it left unanswered are
counted as ``unanswered`` and not sent again, so the counts on both sides of a
fault test add up exactly.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable

import attrs
import trio

from catalyst_smpp.encoding.receipts import ReceiptParseError, parse_receipt
from catalyst_smpp.loadgen.config import BindMode, LoadConfig, TextEncoding
from catalyst_smpp.loadgen.report import LoadReport
from catalyst_smpp.loadgen.tracker import Tracker
from catalyst_smpp.protocol.constants import ESM_TYPE_MASK, EsmClass
from catalyst_smpp.protocol.errors import LocalProtocolError
from catalyst_smpp.protocol.events import (
    BindFailed,
    Bound,
    ConnectionClosed,
    Event,
    RequestReceived,
    ResponseReceived,
    ResponseTimeout,
)
from catalyst_smpp.protocol.pdu import BindTransceiver, BindTransmitter, DeliverSm, Pdu, SubmitSm, Unbind
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.sim.link import Link
from catalyst_smpp.sim.textcodec import DataCoding, choose_data_coding, encode_for_data_coding, split_octets

__all__ = ["MessagePlan", "plan_message", "run_cli", "run_load"]

logger = logging.getLogger(__name__)

_RECEIPT_TYPES = (int(EsmClass.TYPE_DELIVERY_RECEIPT), int(EsmClass.TYPE_INTERMEDIATE_NOTIFICATION))


@attrs.frozen
class MessagePlan:
    """How one text goes out: its data_coding and the user data of each submit_sm (before the UDH)."""

    data_coding: int
    parts: tuple[bytes, ...]
    payload: bool
    """True: one submit_sm carrying the whole text in message_payload."""

    @property
    def segments(self) -> int:
        return 1 if self.payload else len(self.parts)


def plan_message(text: str, encoding: TextEncoding, use_payload: bool = False) -> MessagePlan:
    dc = {
        TextEncoding.AUTO: None,
        TextEncoding.GSM: int(DataCoding.DEFAULT),
        TextEncoding.UCS2: int(DataCoding.UCS2),
        TextEncoding.LATIN1: int(DataCoding.LATIN1),
    }[encoding]
    if dc is None:
        dc = choose_data_coding(text)
    octets = encode_for_data_coding(text, dc)
    if use_payload:
        return MessagePlan(dc, (octets,), True)
    return MessagePlan(dc, tuple(split_octets(octets, dc)), False)


class _Pacer:
    """Spaces sends to a total rate; never lets a stall turn into a catch-up burst of more than a second."""

    def __init__(self, rate: float | None) -> None:
        self.interval = 1.0 / rate if rate else 0.0
        self.next_at = -math.inf

    async def wait(self) -> None:
        if not self.interval:
            return
        now = trio.current_time()
        self.next_at = max(self.next_at + self.interval, now - 1.0)
        if self.next_at > now:
            await trio.sleep_until(self.next_at)


class _Run:
    def __init__(self, config: LoadConfig) -> None:
        self.config = config
        self.report = LoadReport(binds=config.binds, window=config.window)
        self.tracker = Tracker(self.report, config.id_rule)
        self.plan = plan_message(config.text, config.encoding, config.use_payload)
        self.pacer = _Pacer(config.rate)
        self.limit = config.message_limit
        self.deadline = math.inf
        self.next_index = 0
        self.returned: list[int] = []
        self.in_flight = 0
        self.composing = 0
        """Messages taken by a bind whose parts are not all sent yet."""
        self.started_at: float | None = None
        self.last_response_at: float | None = None
        self.changed = trio.Event()
        self.finish = trio.Event()
        self.sending_over = False
        self.dest_base = int(config.dest_addr) if config.dest_addr.isdigit() else None
        self.session_config = SessionConfig(
            window_size=config.window,
            response_timeout=config.response_timeout,
            enquire_link_interval=30.0,
        )

    def touch(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def take_message(self) -> int | None:
        if self.returned:
            return self.returned.pop()
        if self.sending_over:
            return None
        if (self.limit is not None and self.next_index >= self.limit) or trio.current_time() >= self.deadline:
            self.sending_over = True
            self.touch()
            return None
        index = self.next_index
        self.next_index += 1
        self.report.messages += 1
        return index

    def build(self, index: int) -> list[SubmitSm]:
        cfg = self.config
        plan = self.plan
        dest = cfg.dest_addr
        if cfg.dest_count > 1 and self.dest_base is not None:
            dest = str(self.dest_base + index % cfg.dest_count).zfill(len(cfg.dest_addr))

        def submit(short_message: bytes = b"", esm_class: int = 0, tlvs: tuple[Tlv, ...] = ()) -> SubmitSm:
            return SubmitSm(
                source_addr_ton=cfg.source_ton,
                source_addr_npi=cfg.source_npi,
                source_addr=cfg.source_addr,
                dest_addr_ton=cfg.dest_ton,
                dest_addr_npi=cfg.dest_npi,
                destination_addr=dest,
                esm_class=esm_class,
                registered_delivery=cfg.registered_delivery,
                data_coding=plan.data_coding,
                short_message=short_message,
                tlvs=tlvs,
            )

        if plan.payload:
            return [submit(tlvs=(Tlv(int(Tag.message_payload), plan.parts[0]),))]
        if len(plan.parts) == 1:
            return [submit(plan.parts[0])]
        ref = index & 0xFF
        total = len(plan.parts)
        udhi = int(EsmClass.UDHI)
        return [
            submit(bytes((5, 0, 3, ref, total, seq)) + part, udhi)
            for seq, part in enumerate(plan.parts, start=1)
        ]

    def give_back(self, index: int) -> None:
        """A message none of whose parts went out (its connection was lost first): another bind sends it."""
        self.returned.append(index)

    @property
    def more_work(self) -> bool:
        return bool(self.returned) or not self.sending_over


class _Bind:
    """One bind of the run: connects, binds, sends within its window, answers deliver_sm, reconnects."""

    def __init__(self, run: _Run, index: int) -> None:
        self.run = run
        self.index = index
        self.link: Link | None = None
        self.pending: dict[int, tuple[float, bool]] = {}
        self.slot = trio.Event()
        self.bound = trio.Event()
        self.bind_ok = False
        self.ever_bound = False

    @property
    def name(self) -> str:
        return f"bind{self.index}"

    def on_event(self, event: Event) -> None:
        run = self.run
        if isinstance(event, ResponseReceived):
            entry = self.pending.pop(event.request.sequence_number, None)
            if entry is not None:
                sent_at, wants = entry
                now = trio.current_time()
                pdu = event.pdu
                run.tracker.response(sent_at, now, pdu.command_status, getattr(pdu, "message_id", ""), wants)
                run.in_flight -= 1
                run.last_response_at = now
                self.slot.set()
                if run.in_flight == 0:
                    run.touch()
        elif isinstance(event, RequestReceived):
            self.on_request(event.pdu)
        elif isinstance(event, ResponseTimeout):
            if self.pending.pop(event.request.sequence_number, None) is not None:
                run.tracker.unanswered()
                run.in_flight -= 1
                self.slot.set()
                run.touch()
        elif isinstance(event, Bound):
            self.bind_ok = True
            self.ever_bound = True
            self.bound.set()
        elif isinstance(event, BindFailed):
            logger.warning("%s: bind refused with status 0x%X", self.name, event.response.command_status)
            run.report.bind_failures += 1
            self.bound.set()
        elif isinstance(event, ConnectionClosed):
            self.connection_lost()
            self.bound.set()

    def connection_lost(self) -> None:
        run = self.run
        if self.pending:
            run.tracker.unanswered(len(self.pending))
            run.in_flight -= len(self.pending)
            self.pending.clear()
            run.touch()
        self.slot.set()

    def on_request(self, pdu: Pdu) -> None:
        assert self.link is not None
        if isinstance(pdu, DeliverSm):
            now = trio.current_time()
            if (pdu.esm_class & ESM_TYPE_MASK) in _RECEIPT_TYPES:
                tlvs: dict[str | int, object] = {t.tag: t.value for t in pdu.tlvs}
                try:
                    receipt = parse_receipt(pdu.short_message, tlvs)
                except ReceiptParseError as exc:
                    logger.warning("%s: unreadable receipt: %s", self.name, exc)
                    self.run.report.receipts_unmatched += 1
                else:
                    self.run.tracker.receipt(receipt, now)
                    self.run.touch()
            else:
                self.run.report.mo += 1
            self.link.send(pdu.make_response(0))
        else:
            try:
                self.link.send(pdu.make_response(0x03))  # ESME_RINVCMDID: not something a load tool handles
            except LocalProtocolError:
                pass

    async def run_forever(self) -> None:
        run = self.run
        cfg = run.config
        while True:
            try:
                await self.connection()
            except OSError as exc:
                logger.warning("%s: cannot connect to %s:%d: %s", self.name, cfg.host, cfg.port, exc)
                run.report.bind_failures += 1
                if not self.ever_bound:
                    return
            if not self.bind_ok and not self.ever_bound:
                return  # the first bind failed: credentials or config, not worth retrying
            needed = run.more_work or (
                cfg.wants_receipts and run.tracker.receipts_outstanding and not run.finish.is_set()
            )
            if not cfg.reconnect or not needed:
                return
            await trio.sleep(cfg.reconnect_delay)
            run.report.reconnects += 1
            logger.info("%s: reconnecting", self.name)

    async def connection(self) -> None:
        run = self.run
        cfg = run.config
        with trio.fail_after(cfg.bind_timeout):
            stream = await trio.open_tcp_stream(cfg.host, cfg.port)
        link = Link(stream, Role.ESME, run.session_config, self.name)
        self.link = link
        self.bound = trio.Event()
        self.bind_ok = False
        bind_cls = BindTransceiver if cfg.bind_mode is BindMode.TRX else BindTransmitter
        async with trio.open_nursery() as nursery:
            nursery.start_soon(link.run, self.on_event)
            link.send(bind_cls(system_id=cfg.system_id, password=cfg.password, system_type=cfg.system_type))
            with trio.move_on_after(cfg.bind_timeout):
                await self.bound.wait()
            if not self.bind_ok:
                link.abort()
                return
            await self.send_loop(link)
            # all sent: wait for the responses, then for the run to finish (receipts), then unbind
            while self.pending and not link.closed:
                await self.slot.wait()
                self.slot = trio.Event()
            if link.closed:
                return
            closed = trio.Event()
            nursery.start_soon(self._watch_close, link, closed)
            with trio.move_on_at(math.inf):
                async with trio.open_nursery() as waiters:

                    async def stop_waiting_on(event: trio.Event) -> None:
                        await event.wait()
                        waiters.cancel_scope.cancel()

                    waiters.start_soon(stop_waiting_on, run.finish)
                    waiters.start_soon(stop_waiting_on, closed)
            if link.closed:
                return
            try:
                link.send(Unbind())
            except LocalProtocolError:
                return
            with trio.move_on_after(5.0):
                await closed.wait()
            link.abort()

    async def _watch_close(self, link: Link, closed: trio.Event) -> None:
        while not link.closed:
            await self.slot.wait()
            self.slot = trio.Event()
        closed.set()

    async def send_loop(self, link: Link) -> None:
        run = self.run
        wants = run.config.wants_receipts
        while not link.closed:
            index = run.take_message()
            if index is None:
                return
            run.composing += 1
            try:
                if not await self.send_message(link, index, wants):
                    return
            finally:
                run.composing -= 1
                if run.composing == 0:
                    run.touch()

    async def send_message(self, link: Link, index: int, wants: bool) -> bool:
        """Send every part of one message; False when the connection was lost on the way."""
        run = self.run
        conn = link.conn
        await run.pacer.wait()
        for part, pdu in enumerate(run.build(index)):
            while conn.window_available <= 0 and not link.closed:
                await self.slot.wait()
                self.slot = trio.Event()
            if link.closed:
                if part == 0:
                    run.give_back(index)
                return False
            now = trio.current_time()
            if run.started_at is None:
                run.started_at = now
            try:
                seq = link.send(pdu)
            except LocalProtocolError:
                if part == 0:
                    run.give_back(index)
                return False
            self.pending[seq] = (now, wants)
            run.in_flight += 1
            run.tracker.submitted()
        return True


async def run_load(
    config: LoadConfig, progress: Callable[[LoadReport, float], None] | None = None
) -> LoadReport:
    """Run the load described by ``config``; ``progress(report, elapsed)`` is called periodically."""
    run = _Run(config)
    began = trio.current_time()
    if config.duration is not None:
        run.deadline = began + config.duration
    binds = [_Bind(run, i) for i in range(config.binds)]

    async def coordinator(cancel: trio.CancelScope) -> None:
        while not (run.sending_over and run.in_flight == 0 and run.composing == 0 and not run.returned):
            await run.changed.wait()
        if config.wants_receipts:
            with trio.move_on_after(config.receipt_timeout):
                while run.tracker.receipts_outstanding:
                    await run.changed.wait()
        run.finish.set()

    async def ticker() -> None:
        assert progress is not None
        while True:
            await trio.sleep(config.progress_interval)
            progress(run.report, trio.current_time() - began)

    async with trio.open_nursery() as outer:
        outer.start_soon(coordinator, outer.cancel_scope)
        if progress is not None:
            outer.start_soon(ticker)
        async with trio.open_nursery() as workers:
            for b in binds:
                workers.start_soon(b.run_forever)
        outer.cancel_scope.cancel()

    run.tracker.finish()
    end = run.last_response_at if run.last_response_at is not None else trio.current_time()
    run.report.elapsed = max(0.0, end - (run.started_at if run.started_at is not None else began))
    return run.report


def _progress_line(report: LoadReport, elapsed: float) -> None:
    rejected = sum(report.rejected.values())
    receipts = sum(report.receipts.values())
    rate = report.responses / elapsed if elapsed > 0 else 0.0
    sys.stderr.write(
        f"\r[{elapsed:7.1f}s] submitted {report.submitted} accepted {report.accepted} rejected {rejected} "
        f"unanswered {report.unanswered} receipts {receipts} | {rate:,.0f}/s   "
    )
    sys.stderr.flush()


def run_cli(config: LoadConfig, *, progress: bool = False) -> LoadReport:
    """Run a load from the command line (Ctrl-C stops it and still reports)."""
    holder: list[LoadReport] = []

    async def main() -> None:
        holder.append(await run_load(config, _progress_line if progress else None))

    try:
        trio.run(main)
    except KeyboardInterrupt:
        if not holder:
            sys.stderr.write("\ninterrupted\n")
            holder.append(LoadReport(binds=config.binds, window=config.window))
    if progress:
        sys.stderr.write("\n")
    return holder[0]
