"""What the gateway puts on JetStream: MT messages, receipts and MO messages for partners.

Each record travels as one JetStream message.  Two encodings, both read by every reader:

* **binary** (what :meth:`to_bytes` writes): ``0xCA``, a version octet (``1``), a kind octet (``M`` MT,
  ``D`` DLR, ``O`` MO), the length of the fixed part, then the fixed part (little-endian integers and
  doubles, one layout per kind, ending in the length of the string block and the TLV count), the string
  block (the record's text fields in UTF-8, joined by NUL), the TLVs (tag u16, length u16, value) and the
  payload (the short message exactly as received) to the end.  See docs/dev/gateway.md for the layouts.
* **JSON** (written by nodes before the binary form; still written for a record the binary form cannot
  carry -- a NUL in a text field, an integer out of its field's range): a compact JSON header line, a
  newline, then the raw payload bytes.

These records are the contract between the accept pipeline, the operator connectors and partner delivery;
keep them backward compatible, since messages written by an older node may be read by a newer one after an
upgrade.  Binary form: a new field is appended (at the end of the fixed part, or of the string block) and
readers ignore what follows the fields they know; a reader refuses a version it does not know.  JSON form:
new fields get defaults; readers ignore unknown keys.
"""

from __future__ import annotations

import json
import struct
from typing import Any, ClassVar, TypeAlias, TypeVar

import attrs

__all__ = [
    "Address",
    "DecodeError",
    "DlrMessage",
    "MoMessage",
    "MtFields",
    "MtMessage",
    "decode_record",
    "dlr_record",
    "dlr_values",
    "mt_fields",
    "mt_record",
]

T = TypeVar("T", bound="_Record")

MAGIC = 0xCA
VERSION = 1


class DecodeError(ValueError):
    """A JetStream message that is not a record of the expected kind (poison message)."""


@attrs.frozen(slots=True)
class Address:
    ton: int = 0
    npi: int = 0
    addr: str = ""

    def to_list(self) -> list[Any]:
        return [self.ton, self.npi, self.addr]

    @classmethod
    def from_list(cls, v: Any) -> Address:
        ton, npi, addr = v
        return cls(int(ton), int(npi), str(addr))


class _Record:
    KIND: ClassVar[str]
    _ADDRESS_FIELDS: ClassVar[tuple[str, ...]] = ("source", "dest")

    def to_bytes(self) -> bytes:
        """The binary form (the JSON form when a field does not fit the binary one)."""
        try:
            return self._to_binary()
        except _NOT_BINARY:
            return self.to_json_bytes()

    def _to_binary(self) -> bytes:  # pragma: no cover - every kind has its own
        raise _NoBinary

    def to_json_bytes(self) -> bytes:
        """The JSON form (older nodes wrote only this one; every reader reads it)."""
        head: dict[str, Any] = {"k": self.KIND}
        for f in attrs.fields(type(self)):  # type: ignore[arg-type]
            if f.name == "payload":
                continue
            value = getattr(self, f.name)
            if f.name in self._ADDRESS_FIELDS:
                value = value.to_list()
            elif f.name == "tlvs":
                value = [[tag, raw.hex()] for tag, raw in value]
            head[f.name] = value
        payload: bytes = getattr(self, "payload", b"")
        return json.dumps(head, separators=(",", ":"), ensure_ascii=True).encode("ascii") + b"\n" + payload

    @classmethod
    def from_bytes(cls: type[T], data: bytes) -> T:
        if data[:1] == _MAGIC_BYTE:
            rec: T = _FROM_BINARY[cls](data)
            return rec
        return cls._from_json(data)

    @classmethod
    def _from_json(cls: type[T], data: bytes) -> T:
        nl = data.find(b"\n")
        if nl < 0:
            raise DecodeError(f"not a {cls.KIND} record: no header line")
        try:
            head = json.loads(data[:nl])
        except ValueError as exc:
            raise DecodeError(f"not a {cls.KIND} record: {exc}") from None
        if not isinstance(head, dict) or head.get("k") != cls.KIND:
            raise DecodeError(
                f"not a {cls.KIND} record (kind {head.get('k') if isinstance(head, dict) else '?'})"
            )
        kwargs: dict[str, Any] = {}
        try:
            for f in attrs.fields(cls):  # type: ignore[arg-type]
                if f.name == "payload":
                    kwargs["payload"] = bytes(data[nl + 1 :])
                    continue
                if f.name not in head:
                    continue  # older writer: the field's default applies
                value = head[f.name]
                if f.name in cls._ADDRESS_FIELDS:
                    value = Address.from_list(value)
                elif f.name == "tlvs":
                    value = tuple((int(tag), bytes.fromhex(raw)) for tag, raw in value)
                elif isinstance(value, list):
                    value = tuple(value)
                kwargs[f.name] = value
            return cls(**kwargs)
        except (TypeError, ValueError) as exc:
            raise DecodeError(f"bad {cls.KIND} record: {exc}") from None


class _NoBinary(Exception):
    """This record cannot be written in the binary form (the JSON form is written instead)."""


# what writing the binary form raises for a record it cannot carry (the JSON form is written instead)
_NOT_BINARY = (struct.error, UnicodeEncodeError, TypeError, _NoBinary)


def _own_id(rec: Any) -> str:
    """The default ``display_id``: the record's own ``message_id``."""
    return str(rec.message_id)


@attrs.frozen(slots=True)
class MtMessage(_Record):
    """A partner's message on its way to an operator (stream MT, subject ``MT.<targets[0]>``).

    ``payload`` is the partner's short_message (or message_payload) exactly as received, with
    ``data_coding`` and ``esm_class`` as received; ``partner_dc0`` says what data_coding 0 meant for
    that partner ("gsm7", "latin1", "ascii"), so a connector can decode the text and re-encode and
    re-segment it for its own operator.  ``targets`` is the route's operators in the order still to
    try: a connector for ``targets[0]`` that fails over republishes with ``targets[1:]``.
    ``part``/``parts`` are set when the partner itself sent one part of a concatenated message.
    """

    KIND: ClassVar[str] = "mt"

    message_id: str  # our id, canonical (decimal string of the 64-bit id)
    partner: str
    source: Address
    dest: Address
    targets: tuple[str, ...]
    payload: bytes = b""
    data_coding: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    priority_flag: int = 0
    service_type: str = ""
    schedule_delivery_time: str = ""
    validity_period: str = ""
    registered_delivery: int = 0
    partner_dc0: str = "gsm7"
    tlvs: tuple[tuple[int, bytes], ...] = ()  # pass-through TLVs (tag, raw value)
    part: int = 1
    parts: int = 1
    attempt: int = 1
    accepted_at: float = 0.0  # unix time
    node: str = ""
    display_id: str = attrs.field(default=attrs.Factory(_own_id, takes_self=True))
    """The id the partner was given for this message (its submit_sm_resp / submit_multi_resp): ``message_id``
    except for the destinations of a submit_multi after the first, which share the first one's id."""

    def to_bytes(self) -> bytes:
        s, d = self.source, self.dest
        return mt_record(
            self.message_id,
            self.partner,
            (s.ton, s.npi, s.addr),
            (d.ton, d.npi, d.addr),
            self.targets,
            self.payload,
            self.data_coding,
            self.esm_class,
            self.protocol_id,
            self.priority_flag,
            self.service_type,
            self.schedule_delivery_time,
            self.validity_period,
            self.registered_delivery,
            self.partner_dc0,
            self.tlvs,
            self.part,
            self.parts,
            self.attempt,
            self.accepted_at,
            self.node,
            self.display_id,
        )


def mt_record(
    message_id: str,
    partner: str,
    source: tuple[int, int, str],
    dest: tuple[int, int, str],
    targets: tuple[str, ...],
    payload: bytes,
    data_coding: int,
    esm_class: int,
    protocol_id: int,
    priority_flag: int,
    service_type: str,
    schedule_delivery_time: str,
    validity_period: str,
    registered_delivery: int,
    partner_dc0: str,
    tlvs: tuple[tuple[int, bytes], ...],
    part: int,
    parts: int,
    attempt: int,
    accepted_at: float,
    node: str,
    display_id: str,
) -> bytes:
    """The octets of an MT record (what ``MtMessage.to_bytes()`` writes) from its fields, addresses as
    ``(ton, npi, addr)``, arguments in :class:`MtMessage`'s field order: the binary form, or the JSON form
    when a field does not fit it.  The accept side calls it once per message without building the record
    and its two ``Address`` objects."""
    try:
        s_ton, s_npi, s_addr = source
        d_ton, d_npi, d_addr = dest
        # display_id only when it is not message_id (the number of strings tells a reader whether it is there)
        extra = (display_id,) if display_id != message_id else ()
        strs = "\x00".join(
            (
                message_id,
                partner,
                s_addr,
                d_addr,
                service_type,
                schedule_delivery_time,
                validity_period,
                partner_dc0,
                node,
                *targets,
                *extra,
            )
        )
        if strs.count("\x00") != 8 + len(targets) + len(extra):
            raise _NoBinary
        sb = strs.encode("utf-8")
        head = _MT.pack(
            MAGIC,
            VERSION,
            77,
            _MT_FIXED,
            s_ton,
            s_npi,
            d_ton,
            d_npi,
            data_coding,
            esm_class,
            protocol_id,
            priority_flag,
            registered_delivery,
            len(targets),
            part,
            parts,
            attempt,
            accepted_at,
            len(sb),
            len(tlvs),
        )
        if tlvs:
            return b"".join((head, sb, _pack_tlvs(tlvs), payload))
        return head + sb + payload
    except _NOT_BINARY:
        return MtMessage(
            message_id,
            partner,
            Address(*source),
            Address(*dest),
            targets,
            payload,
            data_coding,
            esm_class,
            protocol_id,
            priority_flag,
            service_type,
            schedule_delivery_time,
            validity_period,
            registered_delivery,
            partner_dc0,
            tlvs,
            part,
            parts,
            attempt,
            accepted_at,
            node,
            display_id,
        ).to_json_bytes()


class MtFields:
    """An MT record's fields as plain attributes, each address as its three values (``source_ton``, ...):
    what an operator connector reads per message, without the frozen :class:`MtMessage` and its two
    :class:`Address` objects.  :func:`mt_fields` reads both forms; :meth:`to_message` gives the record."""

    __slots__ = (
        "accepted_at",
        "attempt",
        "data_coding",
        "dest_addr",
        "dest_npi",
        "dest_ton",
        "display_id",
        "esm_class",
        "message_id",
        "node",
        "part",
        "partner",
        "partner_dc0",
        "parts",
        "payload",
        "priority_flag",
        "protocol_id",
        "registered_delivery",
        "schedule_delivery_time",
        "service_type",
        "source_addr",
        "source_npi",
        "source_ton",
        "targets",
        "tlvs",
        "validity_period",
    )

    def __init__(
        self,
        message_id: str,
        partner: str,
        source_ton: int,
        source_npi: int,
        source_addr: str,
        dest_ton: int,
        dest_npi: int,
        dest_addr: str,
        targets: tuple[str, ...],
        payload: bytes,
        data_coding: int,
        esm_class: int,
        protocol_id: int,
        priority_flag: int,
        service_type: str,
        schedule_delivery_time: str,
        validity_period: str,
        registered_delivery: int,
        partner_dc0: str,
        tlvs: tuple[tuple[int, bytes], ...],
        part: int,
        parts: int,
        attempt: int,
        accepted_at: float,
        node: str,
        display_id: str,
    ) -> None:
        self.message_id = message_id
        self.partner = partner
        self.source_ton = source_ton
        self.source_npi = source_npi
        self.source_addr = source_addr
        self.dest_ton = dest_ton
        self.dest_npi = dest_npi
        self.dest_addr = dest_addr
        self.targets = targets
        self.payload = payload
        self.data_coding = data_coding
        self.esm_class = esm_class
        self.protocol_id = protocol_id
        self.priority_flag = priority_flag
        self.service_type = service_type
        self.schedule_delivery_time = schedule_delivery_time
        self.validity_period = validity_period
        self.registered_delivery = registered_delivery
        self.partner_dc0 = partner_dc0
        self.tlvs = tlvs
        self.part = part
        self.parts = parts
        self.attempt = attempt
        self.accepted_at = accepted_at
        self.node = node
        self.display_id = display_id

    @classmethod
    def of(cls, mt: MtMessage) -> MtFields:
        s, d = mt.source, mt.dest
        return cls(
            mt.message_id,
            mt.partner,
            s.ton,
            s.npi,
            s.addr,
            d.ton,
            d.npi,
            d.addr,
            mt.targets,
            mt.payload,
            mt.data_coding,
            mt.esm_class,
            mt.protocol_id,
            mt.priority_flag,
            mt.service_type,
            mt.schedule_delivery_time,
            mt.validity_period,
            mt.registered_delivery,
            mt.partner_dc0,
            mt.tlvs,
            mt.part,
            mt.parts,
            mt.attempt,
            mt.accepted_at,
            mt.node,
            mt.display_id,
        )

    def to_message(self) -> MtMessage:
        return MtMessage(
            self.message_id,
            self.partner,
            Address(self.source_ton, self.source_npi, self.source_addr),
            Address(self.dest_ton, self.dest_npi, self.dest_addr),
            self.targets,
            self.payload,
            self.data_coding,
            self.esm_class,
            self.protocol_id,
            self.priority_flag,
            self.service_type,
            self.schedule_delivery_time,
            self.validity_period,
            self.registered_delivery,
            self.partner_dc0,
            self.tlvs,
            self.part,
            self.parts,
            self.attempt,
            self.accepted_at,
            self.node,
            self.display_id,
        )


@attrs.frozen(slots=True)
class DlrMessage(_Record):
    """A delivery receipt for a partner (stream DLR, subject ``DLR.<partner>``).

    ``state`` is the final state name (DELIVRD, UNDELIV, EXPIRED, REJECTD, …); ``error`` the
    3-digit error text of the receipt; dates are unix times.  ``payload`` is unused (empty) and
    ``source``/``dest`` are the original MT's addresses (the receipt goes from dest to source).
    """

    KIND: ClassVar[str] = "dlr"

    message_id: str
    partner: str
    state: str
    source: Address = Address()
    dest: Address = Address()
    error: str = "000"
    submit_date: float = 0.0
    done_date: float = 0.0
    operator: str = ""
    operator_message_id: str = ""
    network_error_code: str = ""  # raw TLV value in hex, when the operator sent one
    text: str = ""  # first characters of the original message, when known
    part: int = 1
    parts: int = 1
    payload: bytes = b""
    display_id: str = attrs.field(default=attrs.Factory(_own_id, takes_self=True))
    """The id the partner was given (what its receipt shows): the MT's ``display_id``.  ``message_id`` stays
    our own id of the message (the record's JetStream msg_id and the message log use it)."""

    def to_bytes(self) -> bytes:
        s, d = self.source, self.dest
        return dlr_record(
            self.message_id, self.partner, self.state, (s.ton, s.npi, s.addr), (d.ton, d.npi, d.addr),
            self.error, self.submit_date, self.done_date, self.operator, self.operator_message_id,
            self.network_error_code, self.text, self.part, self.parts, self.display_id, self.payload,
        )  # fmt: skip


def dlr_record(
    message_id: str, partner: str, state: str, source: tuple[int, int, str], dest: tuple[int, int, str],
    error: str, submit_date: float, done_date: float, operator: str, operator_message_id: str,
    network_error_code: str, text: str, part: int, parts: int, display_id: str, payload: bytes = b"",
) -> bytes:  # fmt: skip
    """The octets of a DLR record (what ``DlrMessage.to_bytes()`` writes) from its fields, addresses as
    ``(ton, npi, addr)``: the binary form, or the JSON form when a field does not fit it.  The inbound side
    calls it once per receipt without building the record and its two ``Address`` objects."""
    try:
        s_ton, s_npi, s_addr = source
        d_ton, d_npi, d_addr = dest
        extra = (display_id,) if display_id != message_id else ()
        strs = "\x00".join(
            (message_id, partner, state, s_addr, d_addr, error, operator, operator_message_id,
             network_error_code, text, *extra)
        )  # fmt: skip
        if strs.count("\x00") != 9 + len(extra):
            raise _NoBinary
        sb = strs.encode("utf-8")
        head = _DLR.pack(
            MAGIC, VERSION, 68, _DLR_FIXED, s_ton, s_npi, d_ton, d_npi, part, parts, submit_date, done_date,
            len(sb), 0,
        )  # fmt: skip
        return head + sb + payload if payload else head + sb
    except _NOT_BINARY:
        return DlrMessage(
            message_id, partner, state, Address(*source), Address(*dest), error, submit_date, done_date,
            operator, operator_message_id, network_error_code, text, part, parts, payload, display_id,
        ).to_json_bytes()  # fmt: skip


@attrs.frozen(slots=True)
class MoMessage(_Record):
    """A mobile-originated message for a partner (stream MO, subject ``MO.<partner>``)."""

    KIND: ClassVar[str] = "mo"

    message_id: str
    partner: str
    source: Address
    dest: Address
    payload: bytes = b""
    data_coding: int = 0
    esm_class: int = 0
    protocol_id: int = 0
    tlvs: tuple[tuple[int, bytes], ...] = ()
    operator: str = ""
    received_at: float = 0.0

    def _to_binary(self) -> bytes:
        s, d = self.source, self.dest
        strs = "\x00".join((self.message_id, self.partner, s.addr, d.addr, self.operator))
        if strs.count("\x00") != 4:
            raise _NoBinary
        sb = strs.encode("utf-8")
        tlvs = self.tlvs
        head = _MO.pack(
            MAGIC, VERSION, 79, _MO_FIXED, s.ton, s.npi, d.ton, d.npi, self.data_coding, self.esm_class,
            self.protocol_id, self.received_at, len(sb), len(tlvs),
        )  # fmt: skip
        return b"".join((head, sb, _pack_tlvs(tlvs), self.payload))


# --------------------------------------------------------------------------- the binary form

_MAGIC_BYTE = bytes([MAGIC])
# magic, version, kind, length of the fixed part (what follows the 4 octets up to the string block)
_PREFIX = "<BBBB"
# MT: source ton/npi, dest ton/npi, data_coding, esm_class, protocol_id, priority_flag, registered_delivery,
#     number of targets, part, parts, attempt, accepted_at, string block length, TLV count
_MT = struct.Struct(_PREFIX + "BBBBBBBBBBHHHdIH")
# DLR: source ton/npi, dest ton/npi, part, parts, submit_date, done_date, string block length, TLV count
_DLR = struct.Struct(_PREFIX + "BBBBHHddIH")
# MO: source ton/npi, dest ton/npi, data_coding, esm_class, protocol_id, received_at, string block length,
#     TLV count
_MO = struct.Struct(_PREFIX + "BBBBBBBdIH")
_MT_FIXED = _MT.size - 4
_DLR_FIXED = _DLR.size - 4
_MO_FIXED = _MO.size - 4
_TLV = struct.Struct("<HH")
_KIND_CODES = {77: "mt", 68: "dlr", 79: "mo"}


def _pack_tlvs(tlvs: tuple[tuple[int, bytes], ...]) -> bytes:
    pack = _TLV.pack
    return b"".join(pack(tag, len(raw)) + raw for tag, raw in tlvs)


def _unpack_tlvs(data: bytes, pos: int, n: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
    out = []
    unpack = _TLV.unpack_from
    for _ in range(n):
        tag, ln = unpack(data, pos)
        pos += 4
        raw = data[pos : pos + ln]
        if len(raw) != ln:
            raise DecodeError("truncated TLV")
        out.append((tag, raw))
        pos += ln
    return tuple(out), pos


def _head(data: bytes, st: struct.Struct, code: int, kind: str) -> tuple[Any, ...]:
    if len(data) < st.size:
        raise DecodeError(f"not a {kind} record: {len(data)} octets")
    head = st.unpack_from(data)
    if head[1] != VERSION:
        raise DecodeError(f"{kind} record of unknown version {head[1]}")
    if head[2] != code:
        raise DecodeError(f"not a {kind} record (kind {_KIND_CODES.get(head[2], head[2])!r})")
    if head[3] < st.size - 4:
        raise DecodeError(f"bad {kind} record: fixed part of {head[3]} octets")
    return head


def _strings(data: bytes, pos: int, n: int, kind: str) -> list[str]:
    raw = data[pos : pos + n]
    if len(raw) != n:
        raise DecodeError(f"bad {kind} record: truncated")
    try:
        return raw.decode("utf-8").split("\x00")
    except UnicodeDecodeError as exc:
        raise DecodeError(f"bad {kind} record: {exc}") from None


def _mt_values(data: bytes) -> tuple[Any, ...]:
    """The fields of a binary MT record in :class:`MtFields`' order."""
    (
        _m,
        _v,
        _k,
        fixed,
        s_ton,
        s_npi,
        d_ton,
        d_npi,
        dc,
        esm,
        pid,
        prio,
        reg,
        ntargets,
        part,
        parts,
        attempt,
        accepted_at,
        slen,
        ntlv,
    ) = _head(data, _MT, 77, "mt")
    pos = 4 + fixed
    strs = _strings(data, pos, slen, "mt")
    if len(strs) < 9 + ntargets:
        raise DecodeError("bad mt record: missing fields")
    pos += slen
    tlvs: tuple[tuple[int, bytes], ...] = ()
    if ntlv:
        tlvs, pos = _unpack_tlvs(data, pos, ntlv)
    # after the targets: display_id when it is not message_id (records of older nodes: never)
    display = strs[9 + ntargets] if len(strs) > 9 + ntargets and strs[9 + ntargets] else strs[0]
    return (
        strs[0],
        strs[1],
        s_ton,
        s_npi,
        strs[2],
        d_ton,
        d_npi,
        strs[3],
        tuple(strs[9 : 9 + ntargets]),
        data[pos:],
        dc,
        esm,
        pid,
        prio,
        strs[4],
        strs[5],
        strs[6],
        reg,
        strs[7],
        tlvs,
        part,
        parts,
        attempt,
        accepted_at,
        strs[8],
        display,
    )


def _mt_from_binary(data: bytes) -> MtMessage:
    (
        mid,
        partner,
        s_ton,
        s_npi,
        s_addr,
        d_ton,
        d_npi,
        d_addr,
        targets,
        payload,
        dc,
        esm,
        pid,
        prio,
        service_type,
        schedule,
        validity,
        reg,
        dc0,
        tlvs,
        part,
        parts,
        attempt,
        accepted_at,
        node,
        display,
    ) = _mt_values(data)
    return MtMessage(
        mid,
        partner,
        Address(s_ton, s_npi, s_addr),
        Address(d_ton, d_npi, d_addr),
        targets,
        payload,
        dc,
        esm,
        pid,
        prio,
        service_type,
        schedule,
        validity,
        reg,
        dc0,
        tlvs,
        part,
        parts,
        attempt,
        accepted_at,
        node,
        display,
    )


DlrValues: TypeAlias = tuple[
    str, str, str, int, int, str, int, int, str, str, float, float, str, str, str, str, int, int, bytes, str
]
"""A DLR record's fields in :class:`DlrMessage`'s order, each address as its three values: message_id,
partner, state, source ton, npi, addr, dest ton, npi, addr, error, submit_date, done_date, operator,
operator_message_id, network_error_code, text, part, parts, payload, display_id."""


def _dlr_values(data: bytes) -> DlrValues:
    (_m, _v, _k, fixed, s_ton, s_npi, d_ton, d_npi, part, parts, submit_date, done_date, slen,
     ntlv) = _head(data, _DLR, 68, "dlr")  # fmt: skip
    pos = 4 + fixed
    strs = _strings(data, pos, slen, "dlr")
    if len(strs) < 10:
        raise DecodeError("bad dlr record: missing fields")
    pos += slen
    if ntlv:
        _, pos = _unpack_tlvs(data, pos, ntlv)  # a DLR has none today
    display = strs[10] if len(strs) > 10 and strs[10] else strs[0]  # display_id when not message_id
    return (
        strs[0], strs[1], strs[2], s_ton, s_npi, strs[3], d_ton, d_npi, strs[4], strs[5], submit_date,
        done_date, strs[6], strs[7], strs[8], strs[9], part, parts, data[pos:], display,
    )  # fmt: skip


def _dlr_from_binary(data: bytes) -> DlrMessage:
    (mid, partner, state, s_ton, s_npi, s_addr, d_ton, d_npi, d_addr, error, submit_date, done_date, operator,
     op_mid, nec, text, part, parts, payload, display) = _dlr_values(data)  # fmt: skip
    return DlrMessage(
        mid, partner, state, Address(s_ton, s_npi, s_addr), Address(d_ton, d_npi, d_addr), error, submit_date,
        done_date, operator, op_mid, nec, text, part, parts, payload, display,
    )  # fmt: skip


def _mo_from_binary(data: bytes) -> MoMessage:
    (_m, _v, _k, fixed, s_ton, s_npi, d_ton, d_npi, dc, esm, pid, received_at, slen,
     ntlv) = _head(data, _MO, 79, "mo")  # fmt: skip
    pos = 4 + fixed
    strs = _strings(data, pos, slen, "mo")
    if len(strs) < 5:
        raise DecodeError("bad mo record: missing fields")
    pos += slen
    tlvs: tuple[tuple[int, bytes], ...] = ()
    if ntlv:
        tlvs, pos = _unpack_tlvs(data, pos, ntlv)
    return MoMessage(
        strs[0], strs[1], Address(s_ton, s_npi, strs[2]), Address(d_ton, d_npi, strs[3]), data[pos:], dc, esm,
        pid, tlvs, strs[4], received_at,
    )  # fmt: skip


def _guarded(fn: Any) -> Any:
    def decode(data: bytes) -> Any:
        try:
            return fn(data)
        except (struct.error, IndexError, TypeError) as exc:
            raise DecodeError(f"bad record: {exc}") from None

    return decode


_FROM_BINARY: dict[type[_Record], Any] = {
    MtMessage: _guarded(_mt_from_binary),
    DlrMessage: _guarded(_dlr_from_binary),
    MoMessage: _guarded(_mo_from_binary),
}
_guarded_dlr_values = _guarded(_dlr_values)
_guarded_mt_values = _guarded(_mt_values)


def mt_fields(data: bytes) -> MtFields:
    """An MT record of either form as :class:`MtFields` (the binary form without building an
    :class:`MtMessage`); a :class:`DecodeError` for what ``MtMessage.from_bytes`` refuses."""
    if data[:1] == _MAGIC_BYTE:
        return MtFields(*_guarded_mt_values(data))
    return MtFields.of(MtMessage._from_json(data))


def dlr_values(data: bytes) -> DlrValues | None:
    """The fields of a DLR record in the binary form (see :data:`DlrValues`) without building the
    :class:`DlrMessage` and its addresses (partner delivery, once per receipt); None for the JSON form
    (read it with ``DlrMessage.from_bytes``).  A damaged binary record is a :class:`DecodeError`, as there."""
    if data[:1] != _MAGIC_BYTE:
        return None
    values: DlrValues = _guarded_dlr_values(data)
    return values


_KINDS: dict[bytes, type[_Record]] = {b"mt": MtMessage, b"dlr": DlrMessage, b"mo": MoMessage}


def decode_record(data: bytes) -> MtMessage | DlrMessage | MoMessage:
    """Decode a record of any kind, either form (dispatching on the kind octet or the header's ``k``)."""
    if data[:1] == _MAGIC_BYTE:
        kind = _KIND_CODES.get(data[2]) if len(data) > 2 else None
    else:
        nl = data.find(b"\n")
        try:
            kind = json.loads(data[:nl]).get("k", "") if nl > 0 else ""
        except (ValueError, AttributeError):
            kind = ""
    cls = _KINDS.get(str(kind).encode())
    if cls is None:
        raise DecodeError("not a gateway record")
    return cls.from_bytes(data)  # type: ignore[return-value]
