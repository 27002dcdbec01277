"""What the gateway puts on JetStream: MT messages, receipts and MO messages for partners.

Each record travels as one JetStream message: a compact JSON header line, a newline, then the raw
payload bytes (the short message exactly as received, never re-encoded on the way).  The header holds
only ASCII-safe fields, so the split at the first newline is unambiguous.

These records are the contract between the accept pipeline, the operator connectors and partner
delivery; keep them backward compatible (new fields get defaults; readers ignore unknown keys), since
messages written by an older node may be read by a newer one after an upgrade.
"""

from __future__ import annotations

import json
from typing import Any, ClassVar, TypeVar

import attrs

__all__ = ["Address", "DecodeError", "DlrMessage", "MoMessage", "MtMessage", "decode_record"]

T = TypeVar("T", bound="_Record")


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
        nl = data.find(b"\n")
        if nl < 0:
            raise DecodeError(f"not a {cls.KIND} record: no header line")
        try:
            head = json.loads(data[:nl])
        except ValueError as exc:
            raise DecodeError(f"not a {cls.KIND} record: {exc}") from None
        if not isinstance(head, dict) or head.get("k") != cls.KIND:
            raise DecodeError(f"not a {cls.KIND} record (kind {head.get('k') if isinstance(head, dict) else '?'})")
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


_KINDS: dict[bytes, type[_Record]] = {b"mt": MtMessage, b"dlr": DlrMessage, b"mo": MoMessage}


def decode_record(data: bytes) -> MtMessage | DlrMessage | MoMessage:
    """Decode a record of any kind (dispatching on the header's ``k``)."""
    nl = data.find(b"\n")
    try:
        kind = json.loads(data[:nl]).get("k", "") if nl > 0 else ""
    except (ValueError, AttributeError):
        kind = ""
    cls = _KINDS.get(str(kind).encode())
    if cls is None:
        raise DecodeError("not a gateway record")
    return cls.from_bytes(data)  # type: ignore[return-value]
