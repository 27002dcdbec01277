"""Operator connector: one per operator per node -- JetStream ``MT.<operator>`` → the operator's SMSC.

What it does (docs/dev/gateway.md), and where each part lives:

* the link (gateway/link.py): an :class:`~catalyst_smpp.client.SmppClient` kept bound per the operator's
  settings; incoming deliver_sm / data_sm go to :class:`~catalyst_smpp.gateway.inbound.InboundHandler`;
* pulling (here): from the shared durable consumer of ``MT.<operator>`` only as many messages as there are
  free window slots over the bound TX/TRX sessions (nothing while not bound);
* building (gateway/submits.py): each text re-encoded and re-segmented for this operator
  (:func:`build_submits`); binary or UDH/SAR messages kept exactly as the partner sent them;
* submitting (here): every part pipelined, without a task per message, through the
  :class:`~catalyst_smpp.transport.sender.WindowedSender` -- the pull loop takes a TPS token and a window
  slot (``client.acquire``) and sends; the response comes back in a callback; ``ESME_RTHROTTLED`` /
  ``ESME_RMSGQFUL`` are sent again on the bind after a pause (``SmppClient.throttle_retry``, up to the
  client's ``throttle_retries``).  A part the operator accepts is handed to the inbound side at once
  (:meth:`InboundHandler.submitted`: its receipt may beat the KV);
* outcomes (gateway/outcomes.py): when every part of a message is done it is classified (:func:`classify`:
  OK, a temporary error -- ``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``, ``ESME_RX_T_APPN``, a status in the
  operator's ``temporary_statuses``, response timeout, bind lost --, a permanent one, ...) and settled in
  batches by the table :data:`~catalyst_smpp.gateway.outcomes.ACTIONS`: all parts ``ESME_ROK`` →
  ``opids.put_many`` (ids normalised with ``submit_id_format``) **then** ack, event ``submitted``; temporary
  → nak the whole message with a growing delay; permanent → failover to the next target if there is one,
  else term + a failure receipt on ``DLR.<partner>`` (when the partner asked for one; ``err`` =
  :func:`receipt_err`) + event ``failed`` (with the full status).
* failover while down (here): while this operator has not been bound on this node for ``down_after``
  seconds, messages that have further targets are republished to ``MT.<next>`` (msg_id
  ``"<id>@<operator>"``, then ack); the others are nak'ed with ``down_retry`` delay.

Duplicates (counted in ``stats.duplicate_parts``, never hidden): a message nak'ed after some of its
parts were accepted is submitted whole again on redelivery, so those parts reach the operator twice;
a message whose ack is lost after the mapping was stored is redelivered (``stats.redelivered``) and
submitted again.  A node whose own binds are down fails messages over even when another node could
still reach the operator (the consumer is shared; it cannot know) -- keep ``down_after`` well above
reconnect times.
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Awaitable, Callable
from typing import Any, Protocol

import trio

from catalyst_smpp.bus import BusConsumer, BusError, Kind, MessageBus, Msg
from catalyst_smpp.client import ClientSession, SmppClient
from catalyst_smpp.encoding import SegmentationError, UnencodableCharacterError
from catalyst_smpp.encoding.msgid import normalise_id
from catalyst_smpp.gateway.events import EventPublisher
from catalyst_smpp.gateway.inbound import InboundHandler
from catalyst_smpp.gateway.link import OperatorLink, client_key, tls_context
from catalyst_smpp.gateway.messages import DecodeError, MtFields, mt_fields
from catalyst_smpp.gateway.outcomes import (
    TEMPORARY_STATUSES,
    ConnectorStats,
    Job,
    Outcome,
    Settlement,
    classify,
    receipt_err,
)
from catalyst_smpp.gateway.schedule import time_at
from catalyst_smpp.gateway.submits import _build_submits, build_submits, mapping_flags, operator_alphabet
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.store import Operator
from catalyst_smpp.transport import ResponseTimeoutError, SessionClosedError
from catalyst_smpp.transport.errors import NotBoundError
from catalyst_smpp.transport.sender import WindowedSender

__all__ = [
    "TEMPORARY_STATUSES",
    "ConnectorStats",
    "OperatorConnector",
    "build_submits",
    "mapping_flags",
    "operator_alphabet",
    "receipt_err",
    "tls_context",
]

log = logging.getLogger(__name__)


class _Router(Protocol):
    def route_mo(self, dest: str, source: str = "") -> str | None: ...


def _expired(job: Job, mt: MtFields) -> bool:
    """Whether ``mt``'s validity period (absolute, or relative to its acceptance) has passed; then the job's
    outcome is EXPIRED (it is not submitted).  A value that is not a time (refused at accept) is ignored."""
    try:
        until = time_at(mt.validity_period, mt.accepted_at)
    except ValueError:
        return False
    if until is None or until > time.time():
        return False
    job.outcome = Outcome.EXPIRED
    job.error = "validity period passed before it was submitted"
    return True


def _abandoned(part: tuple[Job, int]) -> bool:
    """A throttled part of a message settled meanwhile (abandoned by a drain) is not sent again."""
    return part[0].settled


class OperatorConnector:
    """One operator on this node; see the module notes and docs/dev/gateway.md."""

    def __init__(
        self,
        operator: Operator,
        bus: MessageBus,
        *,
        node: str,
        events: EventPublisher | None,
        router: Callable[[], _Router],
        metrics: Metrics | None = None,
        ids: Callable[[], str] | None = None,
        down_after: float = 30.0,
        down_retry: float = 5.0,
        retry_delays: tuple[float, ...] = (1.0, 2.0, 5.0, 10.0, 30.0, 60.0),
        response_timeout: float = 20.0,
        submit_timeout: float = 25.0,
        fetch_timeout: float = 1.0,
        client_options: dict[str, Any] | None = None,
        ssl_context: ssl.SSLContext | None = None,
    ) -> None:
        """``ids``: new message ids for MO (default: the gateway's IdGenerator for ``node``).
        ``submit_timeout`` must stay below the MT consumer's ack_wait.  ``client_options``: extra
        :class:`ClientConfig` fields (reconnect timings, throttle_retries, ...).  ``ssl_context``: used
        instead of the one :func:`tls_context` builds from the operator's ``tls_ca_file``."""
        self.operator = operator
        self.bus = bus
        self.node = node
        self.events = events
        self.router = router
        self.metrics = metrics
        if metrics is not None:  # from the start: an operator never bound reads 0 (not a missing series)
            metrics.connector_up.labels(operator.name).set(0)
        self.down_after = down_after
        self.down_retry = down_retry
        self.retry_delays = retry_delays
        self.response_timeout = response_timeout
        self.submit_timeout = submit_timeout
        self.fetch_timeout = fetch_timeout
        self.stats = ConnectorStats()
        self.inbound = InboundHandler(
            lambda: self.operator, bus, router=router, events=events, ids=ids, node=node, metrics=metrics
        )
        self.link = OperatorLink(
            lambda: self.operator,
            self.inbound.handle,
            response_timeout=response_timeout,
            client_options=dict(client_options or {}),
            ssl_context=ssl_context,
        )
        self.settlement = Settlement(
            bus, self.stats, events, node, lambda: self.operator, retry_delays, lambda: self.down_retry
        )
        # submit_sm over the client's binds (ctx: (job, part)); throttled parts wait for their resend in the
        # work nursery
        self._sender: WindowedSender[ClientSession] = WindowedSender(
            self._on_response, self._throttle_retry, give_up=_abandoned
        )
        self._ref = 0
        self._inflight_parts = 0
        self._active: dict[int, Job] = {}
        self._settle_queue: list[Job] = []
        self._settle_wake = trio.Event()
        self._settled = trio.Event()
        self._slot = trio.Event()
        self._stopping = False
        self._stopped = trio.Event()
        self._down_since: float | None = None
        self._consumer: BusConsumer | None = None
        self._cancel: trio.CancelScope | None = None
        self._work_scope: trio.CancelScope | None = None
        self._counters: dict[str, Any] = {}

    # ------------------------------------------------------------------ public

    @property
    def name(self) -> str:
        return self.operator.name

    @property
    def client(self) -> SmppClient | None:
        """The operator's client now (None while disabled or its TLS settings are unusable)."""
        return self.link.client

    @property
    def tx_bound(self) -> int:
        return self.link.tx_bound

    @property
    def is_up(self) -> bool:
        return self.link.tx_bound > 0

    @property
    def binds(self) -> int:
        """Open binds to the operator (any bind type): the ``binds{side="operator"}`` gauge."""
        return self.link.binds

    def update(self, operator: Operator) -> None:
        """Apply changed settings; a change of anything the binds depend on reconnects."""
        if operator.name != self.operator.name:
            raise ValueError("a connector serves one operator")
        old, self.operator = self.operator, operator
        if client_key(old) != client_key(operator):
            log.info("operator %s: connection settings changed, reconnecting", operator.name)
            self.link.reconnect()

    async def run(
        self, *, task_status: trio.TaskStatus[OperatorConnector] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._consumer = await self.bus.consumer(Kind.MT, self.operator.name)
        self._down_since = trio.current_time()
        try:
            async with trio.open_nursery() as n:
                self._cancel = n.cancel_scope
                await n.start(self.inbound.run)
                await n.start(self.link.run)
                n.start_soon(self._settler)
                await n.start(self._work_host)
                n.start_soon(self._pull_loop)
                task_status.started(self)
        finally:
            self._stopped.set()
            if self.metrics is not None:
                self.metrics.connector_up.labels(self.operator.name).set(0)

    async def drain(self, grace: float) -> None:
        """Stop fetching, wait up to ``grace`` for in-flight submits, nak the rest, unbind, stop."""
        self._stopping = True
        self._slot.set()
        with trio.move_on_after(grace):
            while self._active or self._settle_queue:
                await self._wait_settled()
        if self._work_scope is not None:
            self._work_scope.cancel()
        left = [j for j in self._active.values() if not j.settled]
        for j in left:
            j.settled = True  # a response that still comes is ignored: the message is nak'ed here
        self._active.clear()
        if left and self._consumer is not None:
            with trio.move_on_after(5), trio.CancelScope(shield=True):
                try:
                    await self._consumer.nak([j.msg for j in left])
                    self.stats.nacked += len(left)
                except BusError as exc:
                    log.warning("operator %s: nak on drain failed: %s", self.name, exc)
        with trio.move_on_after(max(grace, 1.0)):
            while self._settle_queue:
                await self._wait_settled()
        await self.inbound.drain(min(grace, 5.0))
        if self.link.client is not None:
            await self.link.client.aclose(timeout=min(max(grace, 0.5), 5.0))
        if self._cancel is not None:
            self._cancel.cancel()
        await self._stopped.wait()

    # ------------------------------------------------------------------ pulling

    async def _work_host(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as work:
            self._sender.nursery = work
            self._work_scope = work.cancel_scope
            task_status.started()
            await trio.sleep_forever()

    def _capacity(self) -> int:
        return self.tx_bound * self.operator.window

    async def _pull_loop(self) -> None:
        consumer = self._consumer
        assert consumer is not None  # made in run() before the pull loop starts
        was_up = False
        while not self._stopping:
            up = self.is_up and self.operator.enabled
            now = trio.current_time()
            if up != was_up:
                was_up = up
                if self.metrics is not None:
                    self.metrics.connector_up.labels(self.operator.name).set(1 if up else 0)
                log.info("operator %s: %s", self.name, "up" if up else "down")
            if not up:
                if self._down_since is None:
                    self._down_since = now
                if now - self._down_since >= self.down_after:
                    await self._failover_while_down(consumer)
                else:
                    with trio.move_on_after(0.1):
                        await self._slot.wait()
                    self._slot = trio.Event()
                continue
            self._down_since = None
            free = self._capacity() - self._inflight_parts
            if free <= 0:
                with trio.move_on_after(0.5):
                    await self._slot.wait()
                self._slot = trio.Event()
                continue
            try:
                msgs = await consumer.fetch(free, self.fetch_timeout)
            except BusError as exc:
                log.warning("operator %s: fetch failed: %s", self.name, exc)
                await trio.sleep(1.0)
                continue
            if not msgs:
                continue
            self.stats.fetched += len(msgs)
            jobs: list[Job] = []
            started = trio.current_time()  # one fetch: the same start (submit_timeout) for all of them
            for m in msgs:
                job = self._prepare(m, started)
                if job is None:
                    continue
                self._inflight_parts += len(job.pdus)
                job.pending = len(job.pdus)
                self._active[id(job)] = job
                jobs.append(job)
            if jobs:
                await self._send_jobs(jobs)

    def _prepare(self, m: Msg, started: float) -> Job | None:
        """``m`` as a job with its submit_sm PDUs; None when it stopped here (queued with its outcome)."""
        job = Job(m, started)
        if m.num_delivered > 1:
            self.stats.redelivered += 1
        try:
            job.mt = mt_fields(m.data)
        except DecodeError as exc:
            log.error("operator %s: undecodable MT message (seq %d): %s", self.name, m.stream_seq, exc)
            job.outcome = Outcome.POISON
            self._queue(job)
            return None
        if job.mt.validity_period and _expired(job, job.mt):
            self._queue(job)
            return None
        try:
            self._ref = (self._ref + 1) & 0xFFFF
            op = self.operator  # one read: the parts and their mapping flags follow the same settings
            job.pdus = _build_submits(job.mt, op, self._ref)
            job.last_only = op.receipt_parts == "last" and len(job.pdus) > 1
        except (UnencodableCharacterError, SegmentationError, ValueError) as exc:
            job.outcome = Outcome.BUILD
            job.status = int(CommandStatus.ESME_RSYSERR)
            job.error = str(exc)
            self._queue(job)
            return None
        job.results = [None] * len(job.pdus)
        return job

    async def _failover_while_down(self, consumer: BusConsumer) -> None:
        try:
            msgs = await consumer.fetch(100, min(self.fetch_timeout, 0.5))
        except BusError as exc:
            log.warning("operator %s: fetch failed: %s", self.name, exc)
            await trio.sleep(1.0)
            return
        if not msgs:
            return
        self.stats.fetched += len(msgs)
        for m in msgs:
            job = Job(m)
            try:
                job.mt = mt_fields(m.data)
            except DecodeError:
                job.outcome = Outcome.POISON
                self._queue(job)
                continue
            if not (job.mt.validity_period and _expired(job, job.mt)):
                job.outcome = Outcome.FAILOVER if len(job.mt.targets) > 1 else Outcome.WAIT
                job.error = "operator down"
            self._queue(job)
        await self._wait_settled()

    # ------------------------------------------------------------------ submitting

    async def _send_jobs(self, jobs: list[Job]) -> None:
        """Send every part of ``jobs`` in order, each as soon as the client has a TPS token and a window
        slot (no task per message); the outcome of each part arrives in :meth:`_on_response`.  Parts still
        unsent ``submit_timeout`` after the fetch fail (temporary: the message is nak'ed)."""
        k = 0  # jobs[k] is the one being sent
        i = 0  # its next part
        send = self._sender.send
        acquire = self._acquire
        with trio.CancelScope(deadline=trio.current_time() + self.submit_timeout):
            while k < len(jobs):
                job = jobs[k]
                if job.settled:  # abandoned by drain
                    k, i = k + 1, 0
                    continue
                err = await send(job.pdus[i], (job, i), acquire, job.started + self.submit_timeout)
                if err is not None:
                    if not isinstance(err, NotBoundError):
                        log.error("operator %s: sending a submit_sm failed", self.name, exc_info=err)
                    self._part_done(job, i, err)
                i += 1
                if i >= len(job.pdus):
                    k, i = k + 1, 0
        # what the deadline left unsent
        while k < len(jobs):
            job = jobs[k]
            for j in range(i, len(job.pdus)):
                self._part_done(job, j, trio.TooSlowError())
            k, i = k + 1, 0

    def _acquire(self) -> Awaitable[ClientSession]:
        """A TPS token and a window slot on the client of now (NotBoundError while there is none): read at
        every send, so a throttled part sent again after a reconnect goes on the new client."""
        client = self.link.client
        if client is None:
            raise NotBoundError("operator disabled")
        return client.acquire()

    def _throttle_retry(self, session: ClientSession, status: int, retries: int) -> float | None:
        client = self.link.client
        return None if client is None else client.throttle_retry(session, status, retries)

    def _on_response(self, part: tuple[Job, int], result: Any, sent_at: float | None) -> None:
        """A part's outcome (runs in the session's task): its final response, the exception that ended it,
        or (``sent_at`` None) the exception that kept a throttled part from being sent again."""
        job, i = part
        if sent_at is None:
            self._part_done(job, i, result)
            return
        if job.settled:
            return
        if isinstance(result, BaseException):
            if not isinstance(result, ResponseTimeoutError | SessionClosedError | NotBoundError):
                log.warning("operator %s: submit failed: %r", self.name, result)
            if self.metrics is not None:
                self._submit_counter(type(result).__name__).inc()
            self._part_done(job, i, result)
            return
        st = result.command_status
        if st == 0 and job.mt is not None:
            self._remember(job, i, result.message_id)
        m = self.metrics
        if m is not None:
            m.operator_submit_seconds.observe(trio.current_time() - sent_at)
            self._submit_counter("ok" if st == 0 else f"0x{st:08X}").inc()
        self._part_done(job, i, result)

    def _submit_counter(self, status: str) -> Any:
        c = self._counters.get(status)
        if c is None:  # .labels() per part cost more than the rest of the count
            assert self.metrics is not None  # counted only with metrics
            c = self.metrics.operator_submits_total.labels(self.operator.name, status)
            self._counters[status] = c
        return c

    def _part_done(self, job: Job, i: int, result: Any) -> None:
        self._inflight_parts -= 1
        self._slot.set()
        if job.settled:
            return
        job.results[i] = result
        job.pending -= 1
        if job.pending <= 0:
            classify(job, self.operator.temporary_statuses)  # the operator's own "try again" codes
            self._queue(job)

    def _remember(self, job: Job, i: int, operator_id: str) -> None:
        """The id mapping for an early receipt on this node (the KV gets the same when settling)."""
        mt = job.mt
        assert mt is not None
        try:
            key = normalise_id(operator_id, self.operator.submit_id_format)
        except ValueError:
            return
        mapping = job.mapping(i)
        self.inbound.submitted(key, mapping)
        if not job.keys:
            job.keys = [None] * len(job.pdus)
        job.keys[i] = (operator_id, key, mapping)

    # ------------------------------------------------------------------ settling (batched)

    def _queue(self, job: Job) -> None:
        self._settle_queue.append(job)
        self._settle_wake.set()

    async def _wait_settled(self) -> None:
        await self._settled.wait()

    async def _settler(self) -> None:
        while True:
            if not self._settle_queue:
                await self._settle_wake.wait()
                self._settle_wake = trio.Event()
                continue
            batch, self._settle_queue = self._settle_queue, []
            with trio.CancelScope(shield=True):
                try:
                    await self.settlement.settle(batch, self._consumer)
                except BusError as exc:
                    # acks lost: the messages come back after ack_wait (mapping already stored: a duplicate)
                    log.warning("operator %s: settling %d messages failed: %s", self.name, len(batch), exc)
                except Exception:
                    log.exception("operator %s: settling %d messages failed", self.name, len(batch))
            for j in batch:
                j.settled = True
                self._active.pop(id(j), None)
            ev, self._settled = self._settled, trio.Event()
            ev.set()
