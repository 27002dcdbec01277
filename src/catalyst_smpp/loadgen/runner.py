"""The load generator on trio, built on :class:`catalyst_smpp.client.SmppClient`.

``await run_load(config)`` returns a :class:`LoadReport`; :func:`run_cli` wraps it
for the command (progress line, Ctrl-C).  The client keeps ``binds`` sessions up
(and binds again after a loss when ``reconnect``); one sender task takes a free
window slot from the client (``client.acquire()``) and pipelines submit_sm with
``session.send_request``, so every bind keeps up to ``window`` submit_sm
unanswered without a task per message.  A shared pacer holds the total rate when
one is given.  Submits a lost connection left unanswered are counted as
``unanswered`` and not sent again, so the counts on both sides of a fault test add
up exactly; a message none of whose parts went out is sent on another bind.
"""

from __future__ import annotations

import logging
import math
import sys
from collections.abc import Callable, Sequence
from typing import Any

import attrs
import trio

from catalyst_smpp.client import ClientConfig, ClientSession, SmppClient
from catalyst_smpp.encoding import Encoding, SegmentMethod, segment
from catalyst_smpp.encoding.receipts import ReceiptParseError, common_receipt_fields, parse_receipt
from catalyst_smpp.loadgen.config import BindMode, LoadConfig, TextEncoding
from catalyst_smpp.loadgen.report import LoadReport
from catalyst_smpp.loadgen.tracker import Tracker
from catalyst_smpp.protocol.constants import ESM_TYPE_MASK, EsmClass
from catalyst_smpp.protocol.errors import LocalProtocolError
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.transport import (
    BindType,
    NotBoundError,
    Reply,
    SessionClosedError,
    SmppSession,
)

__all__ = ["MessagePlan", "plan_message", "receipt_match", "run_cli", "run_load"]

logger = logging.getLogger(__name__)

_RECEIPT_TYPES = (int(EsmClass.TYPE_DELIVERY_RECEIPT), int(EsmClass.TYPE_INTERMEDIATE_NOTIFICATION))
_TAG_RECEIPTED_ID = int(Tag.receipted_message_id)
_ID_STRIP = " \t\r\n\x00"


def receipt_match(short_message: bytes, tlvs: Sequence[Tlv]) -> tuple[str, str] | None:
    """``(message_id, stat)`` of a receipt in the common text form, as ``parse_receipt`` reads them.

    The id is the receipted_message_id TLV's when it has one, else the text's; the stat is the text's
    word.  None when the text is not in that exact form (``common_receipt_fields``, the matcher
    ``parse_receipt``'s own fast path uses): then :func:`parse_receipt` must read it.
    """
    fields = common_receipt_fields(short_message)
    if fields is None:
        return None
    message_id = ""
    for tlv in tlvs:  # as parse_receipt's {tag: value}: the last one of the tag counts
        if tlv.tag == _TAG_RECEIPTED_ID:
            value = tlv.value
            if isinstance(value, bytes):
                value = value.decode("latin-1")
            message_id = value.strip(_ID_STRIP) if isinstance(value, str) else ""
    return (message_id or fields[0], fields[5])


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


_ENCODINGS = {
    TextEncoding.AUTO: None,  # GSM 03.38 (unpacked) when the text fits it, else UCS-2
    TextEncoding.GSM: Encoding.GSM7,
    TextEncoding.UCS2: Encoding.UCS2,
    TextEncoding.LATIN1: Encoding.LATIN1,
}


def plan_message(text: str, encoding: TextEncoding, use_payload: bool = False) -> MessagePlan:
    """Encode and split ``text`` once (catalyst_smpp.encoding); each message adds its own UDH reference."""
    method = SegmentMethod.PAYLOAD if use_payload else SegmentMethod.UDH8
    seg = segment(text, encoding=_ENCODINGS[encoding], method=method)
    return MessagePlan(seg.data_coding, tuple(p.payload for p in seg.parts), use_payload)


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
        self.stopped = False
        """The client is gone for good (no reconnect): nothing more can be sent."""
        self._fields: dict[str, Any] = {
            "source_addr_ton": config.source_ton,
            "source_addr_npi": config.source_npi,
            "source_addr": config.source_addr,
            "dest_addr_ton": config.dest_ton,
            "dest_addr_npi": config.dest_npi,
            "registered_delivery": config.registered_delivery,
            "data_coding": self.plan.data_coding,
        }
        self._payload_tlvs = (Tlv(int(Tag.message_payload), self.plan.parts[0]),) if self.plan.payload else ()

    def touch(self) -> None:
        self.changed.set()
        self.changed = trio.Event()

    def take_message(self) -> int | None:
        if self.returned:
            return self.returned.pop()
        if self.sending_over:
            return None
        if (self.limit is not None and self.next_index >= self.limit) or (
            self.deadline != math.inf and trio.current_time() >= self.deadline
        ):
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
        fields = self._fields  # the fields every submit_sm of the run shares, gathered once
        if plan.payload:
            return [SubmitSm(**fields, destination_addr=dest, tlvs=self._payload_tlvs)]
        if len(plan.parts) == 1:
            return [SubmitSm(**fields, destination_addr=dest, short_message=plan.parts[0])]
        ref = index & 0xFF
        total = len(plan.parts)
        udhi = int(EsmClass.UDHI)
        return [
            SubmitSm(
                **fields,
                destination_addr=dest,
                esm_class=udhi,
                short_message=bytes((5, 0, 3, ref, total, seq)) + part,
            )
            for seq, part in enumerate(plan.parts, start=1)
        ]

    def give_back(self, index: int) -> None:
        """A message none of whose parts went out (its connection was lost first): another bind sends it."""
        self.returned.append(index)

    @property
    def more_work(self) -> bool:
        return bool(self.returned) or not self.sending_over

    @property
    def all_answered(self) -> bool:
        return (
            self.in_flight == 0
            and self.composing == 0
            and (self.stopped or (self.sending_over and not self.returned))
        )

    # -- the client's side -----------------------------------------------------------

    def client_config(self) -> ClientConfig:
        cfg = self.config
        bind = BindType.TRANSCEIVER if cfg.bind_mode is BindMode.TRX else BindType.TRANSMITTER
        return ClientConfig(
            cfg.host,
            cfg.port,
            cfg.system_id,
            cfg.password,
            system_type=cfg.system_type,
            binds=(bind,) * cfg.binds,
            session=SessionConfig(
                window_size=cfg.window,
                response_timeout=cfg.response_timeout,
                enquire_link_interval=30.0,
                bind_timeout=None,
            ),
            connect_timeout=cfg.bind_timeout,
            reconnect=cfg.reconnect,
            reconnect_initial=cfg.reconnect_delay,
            reconnect_max=max(cfg.reconnect_delay, 5.0),
            reconnect_jitter=0.0,
        )

    def on_deliver(self, session: SmppSession, pdu: Pdu) -> Reply:
        """deliver_sm from the SMSC: a receipt (matched by the tracker) or an MO; anything else refused."""
        if not isinstance(pdu, DeliverSm):
            return 0x03  # ESME_RINVCMDID: not something a load tool handles
        if (pdu.esm_class & ESM_TYPE_MASK) in _RECEIPT_TYPES:
            tracker = self.tracker
            found = receipt_match(pdu.short_message, pdu.tlvs)
            if found is not None:
                tracker.receipt_of(found[0], found[1], trio.current_time())
            else:
                tlvs: dict[str | int, object] = {t.tag: t.value for t in pdu.tlvs}
                try:
                    receipt = parse_receipt(pdu.short_message, tlvs)
                except ReceiptParseError as exc:
                    session.log.warning("unreadable receipt: %s", exc)
                    self.report.receipts_unmatched += 1
                    return None
                tracker.receipt(receipt, trio.current_time())
            if not tracker.receipts_outstanding:  # only the end of the run waits on receipts
                self.touch()
        else:
            self.report.mo += 1
        return None

    def _done_callback(self, sent_at: float, wants: bool) -> Callable[[Pdu | BaseException], None]:
        def done(result: Pdu | BaseException) -> None:
            self.in_flight -= 1
            if isinstance(result, BaseException):
                self.tracker.unanswered()
                self.touch()
                return
            now = trio.current_time()
            self.tracker.response(
                sent_at, now, result.command_status, getattr(result, "message_id", ""), wants
            )
            self.last_response_at = now
            if self.in_flight == 0:
                self.touch()

        return done

    async def sender(self, client: SmppClient) -> None:
        """Take messages and send their parts within the client's windows until none is left."""
        wants = self.config.wants_receipts
        try:
            while True:
                index = self.take_message()
                if index is None:
                    return
                if self.pacer.interval:
                    await self.pacer.wait()
                self.composing += 1
                try:
                    await self.send_message(client, index, wants)
                finally:
                    self.composing -= 1
                    if self.composing == 0 and self.in_flight == 0:  # only then can the run be over
                        self.touch()
        except NotBoundError:  # the client stopped (no reconnect, or bind refused)
            self.stopped = True
            self.touch()

    async def send_message(self, client: SmppClient, index: int, wants: bool) -> None:
        """Every part of one message on one session; the rest is lost if that session goes away."""
        pdus = self.build(index)
        session: ClientSession | None = None
        for part, pdu in enumerate(pdus):
            while True:
                try:
                    if session is None:
                        session = await client.acquire()
                    else:
                        await session.wait_window()
                    now = trio.current_time()
                    session.send_request(pdu, self._done_callback(now, wants))
                except trio.WouldBlock:
                    if part == 0:
                        session = None
                    continue
                except (SessionClosedError, LocalProtocolError):
                    if part == 0:  # nothing of it went out: another bind takes it
                        session = None
                        continue
                    return
                except NotBoundError:
                    if part == 0:
                        self.give_back(index)
                    raise
                break
            if self.started_at is None:
                self.started_at = now
            self.in_flight += 1
            self.tracker.submitted()


async def run_load(
    config: LoadConfig, progress: Callable[[LoadReport, float], None] | None = None
) -> LoadReport:
    """Run the load described by ``config``; ``progress(report, elapsed)`` is called periodically."""
    run = _Run(config)
    began = trio.current_time()
    if config.duration is not None:
        run.deadline = began + config.duration
    client = SmppClient(run.client_config(), run.on_deliver)

    async def watch_binds() -> bool:
        """Until every bind is up; a refused (or impossible) first bind ends the run: not worth retrying."""
        stats = client.stats
        while client.bound_count < config.binds:
            if stats.binds == 0 and (stats.bind_failures or stats.connect_failures or client.closed):
                run.report.bind_failures += max(1, stats.bind_failures + stats.connect_failures)
                return False
            await trio.sleep(0.01)
        return True

    async def ticker() -> None:
        assert progress is not None
        while True:
            await trio.sleep(config.progress_interval)
            progress(run.report, trio.current_time() - began)

    async with trio.open_nursery() as outer:
        outer.start_soon(client.run)
        if progress is not None:
            outer.start_soon(ticker)
        if await watch_binds():
            outer.start_soon(run.sender, client)
            while not run.all_answered:
                await run.changed.wait()
            if config.wants_receipts and not run.stopped:
                with trio.move_on_after(config.receipt_timeout):
                    while run.tracker.receipts_outstanding:
                        await run.changed.wait()
        run.finish.set()
        await client.aclose()
        outer.cancel_scope.cancel()

    run.report.reconnects = client.stats.reconnects
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
