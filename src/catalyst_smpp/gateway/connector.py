"""Operator connector: one per operator per node -- JetStream ``MT.<operator>`` → the operator's SMSC.

What it does (docs/dev/gateway.md):

* keeps an :class:`~catalyst_smpp.client.SmppClient` bound per the operator's settings (bind type incl.
  ``tx_rx`` = one TX and one RX session per ``bind_count``, window, TPS, TLS (certificate checked against
  ``tls_ca_file`` or the system's CAs, for ``tls_server_name`` or the host), system_type, credentials);
  incoming deliver_sm / data_sm go to :class:`~catalyst_smpp.gateway.inbound.InboundHandler`;
* pulls from the shared durable consumer of ``MT.<operator>`` only as many messages as there are free
  window slots over the bound TX/TRX sessions (nothing while not bound);
* re-encodes and re-segments each text for this operator (:func:`build_submits`: what data_coding 0
  means there, its segmentation udh8/udh16/sar/payload, a per-connector reference counter); binary or
  UDH/SAR messages are kept exactly as the partner sent them;
* submits every part pipelined, without a task per message: the pull loop takes a TPS token and a window
  slot (``client.acquire``) and sends (``session.send_request``), the response comes back in a callback
  (``ESME_RTHROTTLED`` / ``ESME_RMSGQFUL`` are resent on the bind after a pause, as ``SmppClient.request``
  does, up to the client's ``throttle_retries``); then it settles in batches:
  all parts ``ESME_ROK`` → ``opids.put_many`` (ids normalised with ``submit_id_format``) **then** ack,
  event ``submitted``; a temporary error (``ESME_RTHROTTLED``, ``ESME_RMSGQFUL``, ``ESME_RX_T_APPN``,
  a status in the operator's ``temporary_statuses``, response timeout, bind lost) → nak the whole
  message with a growing delay; any other status is permanent → failover to the next target if there
  is one, else term + a failure receipt on ``DLR.<partner>`` (when the partner asked for one; ``err`` =
  :func:`receipt_err`) + event ``failed`` (with the full status).
* failover: while this operator has not been bound on this node for ``down_after`` seconds, messages
  that have further targets are republished to ``MT.<next>`` (msg_id ``"<id>@<operator>"``, then ack);
  the others are nak'ed with ``down_retry`` delay.

Duplicates (counted in ``stats.duplicate_parts``, never hidden): a message nak'ed after some of its
parts were accepted is submitted whole again on redelivery, so those parts reach the operator twice;
a message whose ack is lost after the mapping was stored is redelivered (``stats.redelivered``) and
submitted again.  A node whose own binds are down fails messages over even when another node could
still reach the operator (the consumer is shared; it cannot know) -- keep ``down_after`` well above
reconnect times.
"""

from __future__ import annotations

import logging
import re
import ssl
import time
from collections.abc import Callable
from typing import Any, Protocol

import attrs
import trio

from catalyst_smpp.bus import Bus, BusError, IdMapping, Kind, Msg, PublishItem
from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.encoding import (
    Alphabet,
    Encoding,
    SegmentationError,
    SegmentMethod,
    TextPolicy,
    UnencodableCharacterError,
    decode_short_message,
    encoding_for,
    parse_data_coding,
    segment,
)
from catalyst_smpp.gateway.events import EventPublisher, Row, event_row
from catalyst_smpp.gateway.inbound import PART_DECIDES, PART_UNASKED, InboundHandler, wants_receipt
from catalyst_smpp.gateway.messages import DecodeError, MtFields, MtMessage, dlr_record, mt_fields
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.tlv import Tag, Tlv
from catalyst_smpp.store import Operator, normalise_operator_id
from catalyst_smpp.transport import ResponseTimeoutError, SessionClosedError
from catalyst_smpp.transport.errors import NotBoundError

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

UDHI = 0x40
TEMPORARY_STATUSES = frozenset(
    {
        int(CommandStatus.ESME_RTHROTTLED),
        int(CommandStatus.ESME_RMSGQFUL),
        int(CommandStatus.ESME_RX_T_APPN),
    }
)
_THROTTLE_STATUSES = frozenset({int(CommandStatus.ESME_RTHROTTLED), int(CommandStatus.ESME_RMSGQFUL)})
"""Answers SmppClient.request would retry on the same bind after a pause (``throttle_retries``)."""
_SAR_TAGS = frozenset({int(Tag.sar_msg_ref_num), int(Tag.sar_total_segments), int(Tag.sar_segment_seqnum)})
_PAYLOAD_TAG = int(Tag.message_payload)
_PLAIN_GSM = re.compile(rb"[\x00-\x1a\x1c-\x7f]*")  # GSM 7-bit octets, no escape (extension table)
_ALPHABETS = {"gsm7": Alphabet.GSM7, "latin1": Alphabet.LATIN1, "ascii": Alphabet.IA5}
_METHODS = {
    "udh8": SegmentMethod.UDH8,
    "udh16": SegmentMethod.UDH16,
    "sar": SegmentMethod.SAR,
    "payload": SegmentMethod.PAYLOAD,
}


def receipt_err(status: int) -> str:
    """The ``err`` of a failure receipt we write for a command_status: the status in hex, at least 3 digits
    (``00B`` = ESME_RINVDSTADR 0x0B, ``401`` = vendor status 0x401; longer only beyond 0xFFF).  The full
    status is in the ``failed`` event / message log (``status``)."""
    return f"{status:03X}"


class _Router(Protocol):
    def route_mo(self, dest: str, source: str = "") -> str | None: ...


_CA_FILE_RETRY = 30.0
"""Seconds between attempts to read an operator's unusable ``tls_ca_file`` (it may be put in place later)."""
_PARTNER_FLAGS = 0x1F
"""The partner's registered_delivery bits an id mapping keeps (SMSC receipt, SME acks, intermediate)."""
_SMSC_RECEIPT = 0x03  # registered_delivery bits 0-1: SMSC delivery receipt (0 none, 1 final, 2 failures)
_INTERMEDIATE = 0x10  # bit 4: intermediate notification


def _asked_reg(registered_delivery: int, operator: Operator) -> int:
    """registered_delivery of a part that asks this operator for a receipt.

    ``receipt_request = "final"``: a receipt in every final state (1), whatever the partner asked, so
    the message log learns the final state.  ``"as_partner"``: what the partner asked (0 none, 1 every
    final state, 2 failures only; 3, reserved in SMPP 3.4 and "success only" in 5.0, is sent as 1, the
    way :func:`~catalyst_smpp.gateway.inbound.wants_receipt` reads it).  The other bits (SME acks,
    intermediate notification) are the partner's either way.
    """
    if operator.receipt_request == "as_partner":
        wish = registered_delivery & _SMSC_RECEIPT
        return (registered_delivery & ~_SMSC_RECEIPT) | (1 if wish == 3 else wish)
    return (registered_delivery & ~_SMSC_RECEIPT) | 1


def mapping_flags(registered_delivery: int, part: int, parts: int, last_only: bool) -> int:
    """The ``flags`` of the id mapping of part ``part`` (1-based) of ``parts``: the partner's
    registered_delivery (what it gets, :func:`~catalyst_smpp.gateway.inbound.wants_receipt`), and, when
    only the last part asked the operator for a receipt (``last_only``), which part decides
    (:data:`~catalyst_smpp.gateway.inbound.PART_DECIDES` / ``PART_UNASKED``)."""
    flags = registered_delivery & _PARTNER_FLAGS
    if last_only and parts > 1:
        flags |= PART_DECIDES if part == parts else PART_UNASKED
    return flags


def tls_context(operator: Operator) -> ssl.SSLContext:
    """The TLS client context of an operator link: certificates checked (chain and name) against the
    operator's ``tls_ca_file`` (PEM, read now), or the system's trusted CAs when it is empty.  OSError
    (ssl.SSLError) when the file is missing or holds no usable certificate."""
    return ssl.create_default_context(cafile=operator.tls_ca_file or None)


def operator_alphabet(name: str) -> Alphabet:
    """``Operator.data_coding_0`` / ``Partner.data_coding_0`` → the alphabet data_coding 0 means."""
    return _ALPHABETS[name]


# --------------------------------------------------------------------------- building PDUs


def _as_sent(mt: MtFields, registered_delivery: int) -> list[SubmitSm]:
    payload = mt.payload
    tlvs = list(Tlv(t, raw) for t, raw in mt.tlvs)
    short = payload
    if len(payload) > 254 and not any(t.tag == _PAYLOAD_TAG for t in tlvs):
        tlvs.append(Tlv(_PAYLOAD_TAG, payload))
        short = b""
    return [_submit(mt, short, mt.data_coding, mt.esm_class, registered_delivery, tuple(tlvs))]


def _submit(
    mt: MtFields,
    short: bytes,
    data_coding: int,
    esm_class: int,
    registered_delivery: int,
    tlvs: tuple[Tlv, ...],
) -> SubmitSm:
    return SubmitSm(
        service_type=mt.service_type,
        source_addr_ton=mt.source_ton,
        source_addr_npi=mt.source_npi,
        source_addr=mt.source_addr,
        dest_addr_ton=mt.dest_ton,
        dest_addr_npi=mt.dest_npi,
        destination_addr=mt.dest_addr,
        esm_class=esm_class,
        protocol_id=mt.protocol_id,
        priority_flag=mt.priority_flag,
        schedule_delivery_time=mt.schedule_delivery_time,
        validity_period=mt.validity_period,
        registered_delivery=registered_delivery,
        data_coding=data_coding,
        short_message=short,
        tlvs=tlvs,
    )


def build_submits(mt: MtMessage, operator: Operator, ref: int) -> list[SubmitSm]:
    """The submit_sm PDUs for one MT message at ``operator`` (see the module notes).

    Text is decoded with what data_coding 0 meant for the partner and re-encoded in the same alphabet
    (GSM 7-bit, Latin-1, ASCII, UCS-2) for what it means at the operator; GSM text for an operator
    whose data_coding 0 is not GSM gets the cheapest encoding that operator can take (Latin-1 / ASCII
    as its default, else UCS-2).  ``ref`` is the concatenation reference (taken modulo 256 for udh8).
    The receipt each part asks for follows the operator's ``receipt_request`` (:func:`_asked_reg`) on
    every part, or with ``receipt_parts = "last"`` on the last part only, the others asking for none
    (no SMSC receipt, no intermediate notification); the partner's own wish is kept in the KV mapping's
    flags (:func:`mapping_flags`).  Raises ``UnencodableCharacterError`` / ``SegmentationError`` for
    text the operator cannot take (a permanent failure).
    """
    return _build_submits(MtFields.of(mt), operator, ref)


def _build_submits(mt: MtFields, operator: Operator, ref: int) -> list[SubmitSm]:
    """:func:`build_submits` of a record read as :class:`MtFields` (the connector's own path)."""
    reg = _asked_reg(mt.registered_delivery, operator)
    udhi = bool(mt.esm_class & UDHI)
    has_sar = any(t in _SAR_TAGS for t, _ in mt.tlvs)
    payload = mt.payload
    if (
        mt.data_coding == 0
        and not udhi
        and 0 < len(payload) <= 160
        and mt.partner_dc0 == "gsm7"
        and operator.data_coding_0 == "gsm7"
        and _PLAIN_GSM.fullmatch(payload) is not None
        and not any(t == _PAYLOAD_TAG or t in _SAR_TAGS for t, _ in mt.tlvs)
    ):
        # fast path: one GSM 7-bit part, same meaning of data_coding 0 on both sides -- the partner's
        # octets are already what the operator needs (what decoding and re-encoding would give)
        return [_submit(mt, payload, 0, mt.esm_class, reg, tuple(Tlv(t, raw) for t, raw in mt.tlvs))]
    payload = mt.payload
    payload_tlv = next((raw for t, raw in mt.tlvs if t == _PAYLOAD_TAG), None)
    if payload_tlv is not None and not payload:
        payload = payload_tlv
    partner_alpha = _ALPHABETS.get(mt.partner_dc0, Alphabet.GSM7)
    try:
        dc = parse_data_coding(mt.data_coding, partner_alpha)
    except ValueError:
        return _as_sent(mt, reg)
    if udhi or has_sar or not dc.is_text:
        return _as_sent(mt, reg)
    enc = encoding_for(dc.alphabet)
    if enc is None or enc is Encoding.BINARY:
        return _as_sent(mt, reg)
    decoded = decode_short_message(payload, mt.data_coding, default_alphabet=partner_alpha)
    if decoded.text is None:
        return _as_sent(mt, reg)
    text = decoded.text
    op_alpha = operator_alphabet(operator.data_coding_0)
    method = _METHODS[operator.segmentation]
    policy = TextPolicy(default_alphabet=op_alpha, segment_method=method)
    ref = ref % 256 if method is SegmentMethod.UDH8 else ref % 65536
    seg = None
    if not (enc.is_gsm and op_alpha is not Alphabet.GSM7):
        try:
            seg = segment(text, ref=ref, policy=policy, encoding=enc)
        except UnencodableCharacterError:
            seg = None
    if seg is None:
        seg = segment(text, ref=ref, policy=policy)
    # the dc's message class etc. are kept when the octet is in the general group and the coding matches
    keep_tlvs = tuple(Tlv(t, raw) for t, raw in mt.tlvs if t != _PAYLOAD_TAG and t not in _SAR_TAGS)
    esm = mt.esm_class & ~UDHI
    last = len(seg.parts) - 1
    unasked = mt.registered_delivery & ~(_SMSC_RECEIPT | _INTERMEDIATE)
    last_only = operator.receipt_parts == "last"
    out: list[SubmitSm] = []
    for k, part in enumerate(seg.parts):
        tlvs = keep_tlvs
        if seg.use_message_payload:
            tlvs = (*tlvs, Tlv(_PAYLOAD_TAG, part.short_message))
            short = b""
        else:
            short = part.short_message
            if part.sar_msg_ref_num is not None:
                tlvs = (
                    *tlvs,
                    Tlv.make(Tag.sar_msg_ref_num, part.sar_msg_ref_num),
                    Tlv.make(Tag.sar_total_segments, part.sar_total_segments or 0),
                    Tlv.make(Tag.sar_segment_seqnum, part.sar_segment_seqnum or 0),
                )
        part_reg = unasked if last_only and k < last else reg
        out.append(_submit(mt, short, part.data_coding, esm | part.esm_class, part_reg, tlvs))
    return out


# --------------------------------------------------------------------------- the connector


@attrs.define
class ConnectorStats:
    fetched: int = 0
    submitted: int = 0
    """MT messages fully accepted by the operator (mapping stored, acked)."""
    parts_submitted: int = 0
    nacked: int = 0
    termed: int = 0
    failed: int = 0
    failure_receipts: int = 0
    failed_over: int = 0
    poison: int = 0
    redelivered: int = 0
    """Messages JetStream delivered more than once (an earlier attempt may have reached the operator)."""
    duplicate_parts: int = 0
    """Parts accepted by the operator in an attempt that was then retried (they will be sent again)."""
    kv_errors: int = 0
    kv_retries: int = 0
    ack_retries: int = 0
    """Retries of storing id mappings (NATS unavailable); each one that succeeds saves a re-submission."""


class _Job:
    """One fetched MT message on its way (a plain class: one is made per message)."""

    __slots__ = ("error", "keys", "last_only", "msg", "mt", "outcome", "pdus", "pending", "results",
                 "settled", "started", "status")  # fmt: skip

    def __init__(self, msg: Msg, started: float = 0.0) -> None:
        self.msg = msg
        self.mt: MtFields | None = None
        self.pdus: list[SubmitSm] = []
        self.results: list[Any] = []
        self.outcome = ""  # ok | temp | perm | failover | poison | build
        self.status: int | None = None
        self.error = ""
        self.started = started
        self.settled = False
        self.pending = 0  # parts sent (or about to be) whose outcome is not known yet
        self.keys: list[Any] = []  # per part: (operator id, normalised key, IdMapping) from _remember
        self.last_only = False  # only the last of several parts asked for a receipt (receipt_parts "last")

    def flags(self, i: int) -> int:
        """The id mapping flags of part ``i`` (0-based)."""
        assert self.mt is not None
        return mapping_flags(self.mt.registered_delivery, i + 1, len(self.pdus), self.last_only)


class OperatorConnector:
    """One operator on this node; see the module notes and docs/dev/gateway.md."""

    def __init__(
        self,
        operator: Operator,
        bus: Bus,
        *,
        node: str,
        events: EventPublisher | None,
        router: Callable[[], _Router],
        metrics: Any = None,
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
        self.client_options = dict(client_options or {})
        self.ssl_context = ssl_context
        self.stats = ConnectorStats()
        self.inbound = InboundHandler(
            lambda: self.operator, bus, router=router, events=events, ids=ids, node=node, metrics=metrics
        )
        self.client: SmppClient | None = None
        self._ref = 0
        self._inflight_parts = 0
        self._active: dict[int, _Job] = {}
        self._settle_queue: list[_Job] = []
        self._settle_wake = trio.Event()
        self._settled = trio.Event()
        self._slot = trio.Event()
        self._reconnect = trio.Event()
        self._stopping = False
        self._stopped = trio.Event()
        self._down_since: float | None = None
        self._consumer: Any = None
        self._cancel: trio.CancelScope | None = None
        self._work_scope: trio.CancelScope | None = None
        self._counters: dict[str, Any] = {}

    # ------------------------------------------------------------------ public

    @property
    def name(self) -> str:
        return self.operator.name

    @property
    def tx_bound(self) -> int:
        c = self.client
        if c is None:
            return 0
        return sum(1 for s in c.sessions() if s.can_submit and s.is_bound and not s.is_closed)

    @property
    def is_up(self) -> bool:
        return self.tx_bound > 0

    @property
    def binds(self) -> int:
        """Open binds to the operator (any bind type): the ``binds{side="operator"}`` gauge."""
        c = self.client
        if c is None:
            return 0
        return sum(1 for s in c.sessions() if s.is_bound and not s.is_closed)

    def update(self, operator: Operator) -> None:
        """Apply changed settings; a change of anything the binds depend on reconnects."""
        if operator.name != self.operator.name:
            raise ValueError("a connector serves one operator")
        old, self.operator = self.operator, operator
        if self._client_key(old) != self._client_key(operator):
            log.info("operator %s: connection settings changed, reconnecting", operator.name)
            self._reconnect.set()

    async def run(
        self, *, task_status: trio.TaskStatus[OperatorConnector] = trio.TASK_STATUS_IGNORED
    ) -> None:
        self._consumer = await self.bus.consumer(Kind.MT, self.operator.name)
        self._down_since = trio.current_time()
        try:
            async with trio.open_nursery() as n:
                self._cancel = n.cancel_scope
                await n.start(self.inbound.run)
                await n.start(self._client_loop)
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
        if self.client is not None:
            await self.client.aclose(timeout=min(max(grace, 0.5), 5.0))
        if self._cancel is not None:
            self._cancel.cancel()
        await self._stopped.wait()

    # ------------------------------------------------------------------ client

    @staticmethod
    def _client_key(op: Operator) -> tuple[Any, ...]:
        return (
            op.host,
            op.port,
            op.tls,
            op.tls_ca_file,
            op.tls_server_name,
            op.system_id,
            op.password,
            op.system_type,
            op.bind_type,
            op.bind_count,
            op.window,
            op.tps,
            op.enabled,
        )

    def _client_config(self, op: Operator) -> ClientConfig:
        per = {
            "transceiver": (BindType.TRANSCEIVER,),
            "transmitter": (BindType.TRANSMITTER,),
            "receiver": (BindType.RECEIVER,),
            "tx_rx": (BindType.TRANSMITTER, BindType.RECEIVER),
        }[op.bind_type]
        ctx = None
        if op.tls:
            ctx = self.ssl_context if self.ssl_context is not None else tls_context(op)
        opts: dict[str, Any] = {"throttle_retries": 2, "throttle_delay": 0.05}
        opts.update(self.client_options)
        return ClientConfig(
            host=op.host,
            port=op.port,
            system_id=op.system_id,
            password=op.password,
            system_type=op.system_type,
            binds=per * op.bind_count,
            ssl_context=ctx,
            server_hostname=(op.tls_server_name or op.host) if op.tls else None,
            session=SessionConfig(
                window_size=op.window,
                response_timeout=self.response_timeout,
                enquire_link_interval=30.0,
                bind_timeout=None,
            ),
            tps=op.tps,
            **opts,
        )

    async def _client_loop(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            op = self.operator
            self._reconnect = trio.Event()
            if not op.enabled:
                self.client = None
                if not started:
                    started = True
                    task_status.started()
                await self._reconnect.wait()
                continue
            try:
                config = self._client_config(op)
            except OSError as exc:  # ssl.SSLError too: tls_ca_file missing, unreadable, not PEM certificates
                log.error(
                    "operator %s: tls_ca_file %r cannot be used (%s); not connecting (tried again every "
                    "%.0fs, and at once when the setting changes)",
                    op.name,
                    op.tls_ca_file,
                    exc,
                    _CA_FILE_RETRY,
                )
                self.client = None
                if not started:
                    started = True
                    task_status.started()
                with trio.move_on_after(_CA_FILE_RETRY):
                    await self._reconnect.wait()
                continue
            client = SmppClient(config, handler=self.inbound.handle)
            self.client = client
            async with trio.open_nursery() as n:
                await n.start(client.run)
                if not started:
                    started = True
                    task_status.started()
                await self._reconnect.wait()
                await client.aclose(timeout=2.0)
                n.cancel_scope.cancel()

    # ------------------------------------------------------------------ pulling

    async def _work_host(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        async with trio.open_nursery() as work:
            self._work = work
            self._work_scope = work.cancel_scope
            task_status.started()
            await trio.sleep_forever()

    def _capacity(self) -> int:
        return self.tx_bound * self.operator.window

    async def _pull_loop(self) -> None:
        consumer = self._consumer
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
            jobs: list[_Job] = []
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

    def _prepare(self, m: Msg, started: float) -> _Job | None:
        job = _Job(m, started)
        if m.num_delivered > 1:
            self.stats.redelivered += 1
        try:
            job.mt = mt_fields(m.data)
        except DecodeError as exc:
            log.error("operator %s: undecodable MT message (seq %d): %s", self.name, m.stream_seq, exc)
            job.outcome = "poison"
            self._queue(job)
            return None
        try:
            self._ref = (self._ref + 1) & 0xFFFF
            op = self.operator  # one read: the parts and their mapping flags follow the same settings
            job.pdus = _build_submits(job.mt, op, self._ref)
            job.last_only = op.receipt_parts == "last" and len(job.pdus) > 1
        except (UnencodableCharacterError, SegmentationError, ValueError) as exc:
            job.outcome = "build"
            job.status = int(CommandStatus.ESME_RSYSERR)
            job.error = str(exc)
            self._queue(job)
            return None
        job.results = [None] * len(job.pdus)
        return job

    async def _failover_while_down(self, consumer: Any) -> None:
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
            job = _Job(m)
            try:
                job.mt = mt_fields(m.data)
            except DecodeError:
                job.outcome = "poison"
                self._queue(job)
                continue
            job.outcome = "failover" if len(job.mt.targets) > 1 else "wait"
            job.error = "operator down"
            self._queue(job)
        await self._wait_settled()

    # ------------------------------------------------------------------ submitting

    async def _send_jobs(self, jobs: list[_Job]) -> None:
        """Send every part of ``jobs`` in order, each as soon as the client has a TPS token and a window
        slot (``client.acquire`` + ``session.send_request``: no task per message); the outcome of each
        part arrives in :meth:`_on_response`.  Parts still unsent ``submit_timeout`` after the fetch fail
        (temporary: the message is nak'ed)."""
        k = 0  # jobs[k] is the one being sent
        i = 0  # its next part
        with trio.CancelScope(deadline=trio.current_time() + self.submit_timeout):
            while k < len(jobs):
                job = jobs[k]
                if job.settled:  # abandoned by drain
                    k, i = k + 1, 0
                    continue
                err = await self._send_part(job, i, job.pdus[i], 0)
                if err is not None:
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

    async def _send_part(self, job: _Job, i: int, pdu: SubmitSm, retries: int) -> BaseException | None:
        """Send part ``i`` (waits for a token and a window slot); an exception when it could not be sent."""
        while True:
            client = self.client
            if client is None:
                return NotBoundError("operator disabled")
            try:
                session = await client.acquire()
            except NotBoundError as exc:
                return exc
            try:
                session.send_request(pdu, self._callback(job, i, pdu, session, retries))
            except (trio.WouldBlock, SessionClosedError):
                continue  # the slot went meanwhile, or the session closed before sending: another one
            except Exception as exc:  # not sendable (a temporary failure: the message is nak'ed)
                log.exception("operator %s: sending a submit_sm failed", self.name)
                return exc
            return None

    def _callback(
        self, job: _Job, i: int, pdu: SubmitSm, session: Any, retries: int
    ) -> Callable[[Any], None]:
        t0 = trio.current_time() if self.metrics is not None else 0.0

        def on_done(result: Any) -> None:
            self._on_response(job, i, pdu, session, retries, t0, result)

        return on_done

    def _on_response(
        self, job: _Job, i: int, pdu: SubmitSm, session: Any, retries: int, t0: float, result: Any
    ) -> None:
        """A part's outcome (runs in the session's task): the response, or the exception that ended it."""
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
        client = self.client
        if st in _THROTTLE_STATUSES and client is not None:
            # as SmppClient.request does: pause this session, send the same PDU again after a delay
            delay = client.throttle_retry(session, st, retries)
            if delay is not None:
                self._work.start_soon(self._resend, job, i, pdu, retries + 1, delay)
                return
        if st == 0 and job.mt is not None:
            self._remember(job, i, result.message_id)
        m = self.metrics
        if m is not None:
            m.operator_submit_seconds.observe(trio.current_time() - t0)
            self._submit_counter("ok" if st == 0 else f"0x{st:08X}").inc()
        self._part_done(job, i, result)

    def _submit_counter(self, status: str) -> Any:
        c = self._counters.get(status)
        if c is None:  # .labels() per part cost more than the rest of the count
            c = self.metrics.operator_submits_total.labels(self.operator.name, status)
            self._counters[status] = c
        return c

    async def _resend(self, job: _Job, i: int, pdu: SubmitSm, retries: int, delay: float) -> None:
        """A throttled part, again after ``delay`` (within ``submit_timeout`` of the fetch)."""
        err: BaseException | None = trio.TooSlowError()
        try:
            with trio.move_on_at(job.started + self.submit_timeout):
                await trio.sleep(delay)
                if job.settled:
                    return
                err = await self._send_part(job, i, pdu, retries)
        finally:
            if err is not None:
                self._part_done(job, i, err)

    def _part_done(self, job: _Job, i: int, result: Any) -> None:
        self._inflight_parts -= 1
        self._slot.set()
        if job.settled:
            return
        job.results[i] = result
        job.pending -= 1
        if job.pending <= 0:
            self._classify(job)
            self._queue(job)

    def _remember(self, job: _Job, i: int, operator_id: str) -> None:
        """The id mapping for an early receipt on this node (the KV gets the same in :meth:`_settle`)."""
        mt = job.mt
        assert mt is not None
        try:
            key = normalise_operator_id(operator_id, self.operator.submit_id_format)
        except ValueError:
            return
        mapping = IdMapping(mt.message_id, mt.partner, job.flags(i), i + 1, len(job.pdus), mt.display_id)
        self.inbound.recent.put(key, mapping)
        if not job.keys:
            job.keys = [None] * len(job.pdus)
        job.keys[i] = (operator_id, key, mapping)

    def _classify(self, job: _Job) -> None:
        perm = temp = None
        vendor_temp = self.operator.temporary_statuses  # the operator's own "try again" codes (lesson 6c)
        for r in job.results:
            if r is None or isinstance(r, BaseException):
                temp = temp or (r if r is not None else "cancelled")
            elif r.command_status == 0:
                continue
            elif r.command_status in TEMPORARY_STATUSES or r.command_status in vendor_temp:
                temp = temp or r
            elif perm is None:
                perm = r
        if perm is not None:
            job.status = perm.command_status
            job.error = f"operator answered 0x{perm.command_status:08X}"
            assert job.mt is not None
            job.outcome = "failover" if len(job.mt.targets) > 1 else "perm"
        elif temp is not None:
            job.outcome = "temp"
            if isinstance(temp, BaseException):
                job.error = repr(temp)
            elif isinstance(temp, str):
                job.error = temp
            else:
                job.status = temp.command_status
                job.error = f"operator answered 0x{temp.command_status:08X}"
        else:
            job.outcome = "ok"

    # ------------------------------------------------------------------ settling (batched)

    def _queue(self, job: _Job) -> None:
        self._settle_queue.append(job)
        self._settle_wake.set()

    async def _wait_settled(self) -> None:
        await self._settled.wait()

    def _retry_delay(self, m: Msg) -> float:
        d = self.retry_delays
        return d[min(max(m.num_delivered, 1) - 1, len(d) - 1)] if d else 1.0

    async def _settler(self) -> None:
        while True:
            if not self._settle_queue:
                await self._settle_wake.wait()
                self._settle_wake = trio.Event()
                continue
            batch, self._settle_queue = self._settle_queue, []
            with trio.CancelScope(shield=True):
                try:
                    await self._settle(batch)
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

    async def _settle(self, batch: list[_Job]) -> None:
        c = self._consumer
        op = self.operator
        ack: list[Msg] = []
        term: list[Msg] = []
        naks: dict[float, list[Msg]] = {}
        publish: list[tuple[PublishItem, _Job]] = []
        # settled with an event row (submitted / failed): acked or termed only once the row is stored
        logged: list[tuple[Row, _Job]] = []
        # the id mappings, the event rows and the acks are retried (through a NATS reconnect) until shortly
        # before JetStream would redeliver the messages anyway (ack_wait after the fetch)
        deadline = min(j.started for j in batch) + 0.8 * self.bus.cfg.streams.mt.ack_wait

        def nak(j: _Job, delay: float) -> None:
            naks.setdefault(delay, []).append(j.msg)

        # 1. mappings of fully accepted messages, stored before the ack
        ok = [j for j in batch if j.outcome == "ok"]
        if ok:
            items: list[tuple[str, str, IdMapping]] = []
            owners: list[_Job] = []
            for j in ok:
                assert j.mt is not None
                n = len(j.results)
                keys = j.keys
                for i, r in enumerate(j.results):
                    known = keys[i] if keys else None
                    if known is not None and known[0] == r.message_id:  # normalised in _remember already
                        items.append((op.name, known[1], known[2]))
                    else:
                        oid = normalise_operator_id(r.message_id, op.submit_id_format)
                        items.append(
                            (
                                op.name,
                                oid,
                                IdMapping(
                                    j.mt.message_id,
                                    j.mt.partner,
                                    j.flags(i),
                                    i + 1,
                                    n,
                                    j.mt.display_id,
                                ),
                            )
                        )
                    owners.append(j)
            failed_jobs: set[int] = set()
            results: list[Any] = []
            # The operator has accepted these: giving one back to the queue means submitting it again (a
            # duplicate at the handset).  So keep trying to store the mapping -- through a NATS reconnect --
            # until shortly before JetStream would redeliver the message anyway (ack_wait after the fetch).
            delay = 0.1
            while True:
                try:
                    results = await self.bus.opids.put_many(items)
                except BusError as exc:
                    results = [exc] * len(items)
                bad = [k for k, r in enumerate(results) if not getattr(r, "ok", False)]
                if not bad or trio.current_time() + delay >= deadline:
                    break
                self.stats.kv_retries += 1
                await trio.sleep(delay)
                delay = min(delay * 2, 2.0)
                items = [items[k] for k in bad]
                owners = [owners[k] for k in bad]
            failed_jobs = {id(owners[k]) for k, r in enumerate(results) if not getattr(r, "ok", False)}
            now = time.time()
            for j in ok:
                if id(j) in failed_jobs:
                    self.stats.kv_errors += 1
                    self.stats.duplicate_parts += len(j.results)
                    log.warning(
                        "operator %s: id mapping of %s not stored; retrying the message",
                        self.name,
                        j.mt.message_id if j.mt else "?",
                    )
                    nak(j, self._retry_delay(j.msg))
                    continue
                mt = j.mt
                assert mt is not None
                rs = j.results
                logged.append(
                    ((mt.message_id, "submitted", now, mt.partner, op.name, mt.source_addr, mt.dest_addr,
                      len(rs), 0, None, None, rs[0].message_id if len(rs) == 1 else ",".join(
                          r.message_id for r in rs), self.node,
                      mt.display_id if mt.display_id != mt.message_id else None), j)
                )  # fmt: skip

        for j in batch:
            mt = j.mt
            if j.outcome == "ok":
                continue
            if j.outcome == "poison":
                self.stats.poison += 1
                term.append(j.msg)
            elif j.outcome == "temp":
                self.stats.duplicate_parts += sum(
                    1
                    for r in j.results
                    if r is not None and not isinstance(r, BaseException) and r.command_status == 0
                )
                nak(j, self._retry_delay(j.msg))
            elif j.outcome == "wait":
                nak(j, self.down_retry)
            elif j.outcome == "failover":
                assert mt is not None
                nxt = attrs.evolve(mt.to_message(), targets=mt.targets[1:], attempt=mt.attempt + 1)
                publish.append(
                    (
                        PublishItem(
                            self.bus.subject(Kind.MT, nxt.targets[0]),
                            nxt.to_bytes(),
                            None,
                            f"{mt.message_id}@{op.name}",
                        ),
                        j,
                    )
                )
            elif j.outcome in ("perm", "build"):
                assert mt is not None
                state = "REJECTD" if j.outcome == "perm" else "UNDELIV"
                if wants_receipt(mt.registered_delivery, state):
                    parts = max(1, len(j.pdus))
                    # the octets of DlrMessage(...).to_bytes() (dlr_record: no record/Address objects)
                    dlr = dlr_record(
                        mt.message_id, mt.partner, state, (mt.source_ton, mt.source_npi, mt.source_addr),
                        (mt.dest_ton, mt.dest_npi, mt.dest_addr), receipt_err(j.status or 0), mt.accepted_at,
                        time.time(), op.name, "", "", "", 1, parts, mt.display_id,
                    )  # fmt: skip
                    publish.append(
                        (
                            PublishItem(
                                self.bus.subject(Kind.DLR, mt.partner),
                                dlr,
                                None,
                                f"dlr:{mt.message_id}:{parts}:{state}",
                            ),
                            j,
                        )
                    )
                else:
                    logged.append((self._failed(j, state), j))

        if publish:
            res: list[Any]
            try:
                res = list(await self.bus.publish_batch([p for p, _ in publish]))
            except BusError as exc:
                res = [exc] * len(publish)
            for (item, j), r in zip(publish, res, strict=True):
                if not getattr(r, "ok", False):
                    log.warning("operator %s: publish to %s failed: %s", self.name, item.subject, r)
                    nak(j, self._retry_delay(j.msg))
                elif j.outcome == "failover":
                    self.stats.failed_over += 1
                    log.info(
                        "operator %s: message %s failed over to %s (%s)",
                        self.name,
                        j.mt.message_id if j.mt else "?",
                        item.subject,
                        j.error,
                    )
                    ack.append(j.msg)
                else:
                    self.stats.failure_receipts += 1
                    logged.append((self._failed(j, "REJECTD" if j.outcome == "perm" else "UNDELIV"), j))

        # 2. their event rows, stored (one packed publish) before the ack or term that makes them final: a
        # message acked without its row would never come back to be logged.  Rows not stored by the
        # deadline: the message is nak'ed and submitted again (a copy at the operator, counted) -- the row
        # is written then.
        if logged:
            lost: set[int] = set()
            if self.events is not None:
                lost = set(await self.events.store([row for row, _ in logged], until=deadline))
            for k, (_row, j) in enumerate(logged):
                if k in lost:
                    self.stats.duplicate_parts += len(j.results) if j.outcome == "ok" else 0
                    nak(j, self._retry_delay(j.msg))
                elif j.outcome == "ok":
                    ack.append(j.msg)
                    self.stats.submitted += 1
                    self.stats.parts_submitted += len(j.results)
                else:
                    term.append(j.msg)
                    self.stats.failed += 1

        if ack:
            # an ack lost to a NATS outage means a redelivery and so a second submit: retry it through the
            # reconnect (the consumer's pending state survives a server restart) until ack_wait is near
            delay = 0.1
            while True:
                try:
                    await c.ack(ack)
                    break
                except BusError:
                    if trio.current_time() + delay >= deadline:
                        raise
                    self.stats.ack_retries += 1
                    await trio.sleep(delay)
                    delay = min(delay * 2, 2.0)
        if term:
            self.stats.termed += len(term)
            await c.term(term)
        for delay, msgs in naks.items():
            self.stats.nacked += len(msgs)
            await c.nak(msgs, delay=delay)

    def _failed(self, j: _Job, state: str) -> Row:
        """Log a permanent failure; its ``failed`` row."""
        mt = j.mt
        assert mt is not None
        log.info("operator %s: message %s failed permanently: %s", self.name, mt.message_id, j.error)
        return event_row(
            mt.message_id,
            "failed",
            partner=mt.partner,
            operator=self.operator.name,
            source_addr=mt.source_addr,
            dest_addr=mt.dest_addr,
            parts=max(1, len(j.pdus)),
            status=j.status,
            final_state=state,
            error=j.error[:200],
            node=self.node,
            display_id=mt.display_id if mt.display_id != mt.message_id else None,
        )
