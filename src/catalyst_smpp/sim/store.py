"""The messages the simulator accepted, kept for exact comparison in tests.

Each accepted submit_sm / data_sm / submit_multi becomes a :class:`StoredMessage`
with the raw octets as received, the concatenation information (UDH or SAR TLVs),
and the text decoded by its data_coding.  :func:`assemble` joins the parts of
concatenated messages back into whole texts.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Iterator

import attrs

from catalyst_smpp.encoding import decode_short_message
from catalyst_smpp.encoding.reassembly import ConcatPart, Split, split_message
from catalyst_smpp.protocol.constants import EsmClass
from catalyst_smpp.protocol.pdu import DataSm, SmeDestination, SubmitMulti, SubmitSm
from catalyst_smpp.protocol.tlv import Tag, Tlv

__all__ = ["AssembledMessage", "MessageStore", "StoredMessage", "assemble", "decode_text", "stored_from_pdu"]

_SAR_TAGS = (Tag.sar_msg_ref_num, Tag.sar_total_segments, Tag.sar_segment_seqnum)


def decode_text(data_coding: int, body: bytes) -> str | None:
    """The text of ``body`` (after any UDH) under ``data_coding``, or None for binary data.

    data_coding 0 is GSM 03.38, one septet per octet (what SMPP carries); invalid octets decode
    to U+FFFD instead of failing."""
    return decode_short_message(bytes(body), data_coding).text


@attrs.frozen
class StoredMessage:
    message_id: str
    """The id as given in the response."""
    command: str
    """"submit_sm", "data_sm" or "submit_multi"."""
    system_id: str
    source_addr: str
    destinations: tuple[str, ...]
    esm_class: int
    data_coding: int
    registered_delivery: int
    short_message: bytes
    tlvs: tuple[Tlv, ...]
    received_at: float
    receipt_id: str = ""
    """The id as the receipt spells it."""

    @property
    def destination_addr(self) -> str:
        return self.destinations[0] if self.destinations else ""

    @property
    def payload(self) -> bytes:
        """message_payload when present, else short_message (UDH included)."""
        for tlv in self.tlvs:
            if tlv.tag == Tag.message_payload:
                return tlv.raw
        return self.short_message

    @property
    def split(self) -> Split:
        """The UDH / SAR reading of this PDU (see :func:`catalyst_smpp.encoding.reassembly.split_message`)."""
        tlvs = {t.tag: t.value for t in self.tlvs if t.tag in _SAR_TAGS}
        return split_message(self.payload, udhi=bool(self.esm_class & EsmClass.UDHI), tlvs=tlvs)

    @property
    def body(self) -> bytes:
        """The user data without the UDH."""
        return self.split.payload

    @property
    def concat(self) -> ConcatPart | None:
        return self.split.part

    @property
    def text(self) -> str | None:
        """The text of this PDU alone (None when binary or not decodable)."""
        return decode_text(self.data_coding, self.body)


@attrs.frozen
class AssembledMessage:
    """A whole message: one PDU, or every part of a concatenated one in order."""

    parts: tuple[StoredMessage, ...]

    @property
    def complete(self) -> bool:
        info = self.parts[0].concat
        return info is None or len(self.parts) == info.total

    @property
    def text(self) -> str | None:
        texts = [p.text for p in self.parts]
        if any(t is None for t in texts):
            return None
        return "".join(t for t in texts if t is not None)

    @property
    def data_coding(self) -> int:
        return self.parts[0].data_coding

    @property
    def source_addr(self) -> str:
        return self.parts[0].source_addr

    @property
    def destination_addr(self) -> str:
        return self.parts[0].destination_addr

    @property
    def message_ids(self) -> tuple[str, ...]:
        return tuple(p.message_id for p in self.parts)


def assemble(messages: Iterable[StoredMessage]) -> list[AssembledMessage]:
    """Group concatenated parts (by system_id, source, destination and reference) in arrival order."""
    out: list[AssembledMessage | list[StoredMessage]] = []
    open_groups: dict[tuple[str, str, str, str, int, int], list[StoredMessage]] = {}
    for msg in messages:
        info = msg.concat
        if info is None:
            out.append(AssembledMessage((msg,)))
            continue
        key = (msg.system_id, msg.source_addr, msg.destination_addr, info.scheme.value, info.ref, info.total)
        group = open_groups.get(key)
        if group is None or any(p.concat and p.concat.seq == info.seq for p in group):
            group = []
            open_groups[key] = group
            out.append(group)
        group.append(msg)
    result: list[AssembledMessage] = []
    for item in out:
        if isinstance(item, AssembledMessage):
            result.append(item)
        else:
            parts = sorted(item, key=lambda m: m.concat.seq if m.concat else 0)
            result.append(AssembledMessage(tuple(parts)))
    return result


def stored_from_pdu(
    pdu: SubmitSm | DataSm | SubmitMulti, system_id: str, message_id: str, receipt_id: str, now: float
) -> StoredMessage:
    if isinstance(pdu, SubmitMulti):
        dests = tuple(
            d.destination_addr if isinstance(d, SmeDestination) else d.dl_name for d in pdu.dest_address
        )
        command, short = "submit_multi", pdu.short_message
    elif isinstance(pdu, DataSm):
        dests, command, short = (pdu.destination_addr,), "data_sm", b""
    else:
        dests, command, short = (pdu.destination_addr,), "submit_sm", pdu.short_message
    return StoredMessage(
        message_id=message_id,
        command=command,
        system_id=system_id,
        source_addr=pdu.source_addr,
        destinations=dests,
        esm_class=pdu.esm_class,
        data_coding=pdu.data_coding,
        registered_delivery=pdu.registered_delivery,
        short_message=short,
        tlvs=pdu.tlvs,
        received_at=now,
        receipt_id=receipt_id,
    )


@attrs.define
class MessageStore:
    """Accepted messages in arrival order, at most ``limit`` (None: no limit, 0: none kept)."""

    limit: int | None = None
    _items: deque[StoredMessage] = attrs.field(init=False)

    def __attrs_post_init__(self) -> None:
        self._items = deque(maxlen=self.limit)

    def add(self, message: StoredMessage) -> None:
        if self.limit != 0:
            self._items.append(message)

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[StoredMessage]:
        return iter(list(self._items))

    def clear(self) -> None:
        self._items.clear()
