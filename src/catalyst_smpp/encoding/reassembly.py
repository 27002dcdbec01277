"""Reassembly of inbound concatenated messages (sans-IO).

A long MO text reaches us as parts.  Each part says which message it belongs to
and where it goes, in one of three ways:

* a UDH (esm_class UDHI bit set) with information element 0x00: 8-bit
  reference, total, sequence number (IE data of 3 octets);
* a UDH with IE 0x08: 16-bit reference (IE data of 4 octets);
* the SAR TLVs ``sar_msg_ref_num`` (16-bit), ``sar_total_segments``,
  ``sar_segment_seqnum``.

``split_message`` reads one inbound ``short_message`` (parsing the UDH itself
with ``parse_udh``) and never raises: a malformed UDH or impossible numbering
comes back as a ``Split`` without a part and with a ``problem`` in words, so
the caller can deliver the message as it is instead of losing it.

``Reassembler`` collects parts.  Parts belong together when source address,
destination address, scheme (8-bit, 16-bit, SAR), reference and total all
agree.  Time is passed in (``now``, any monotonic clock in seconds); nothing
here reads a clock.  Incomplete sets are never dropped silently:

* ``timeout`` is an idle timeout: a set that has received no new part for
  ``timeout`` seconds is reported by ``expire(now)`` as ``Incomplete`` with
  the parts that did arrive and the sequence numbers that are missing;
* when more than ``max_pending`` sets, or more than ``max_bytes`` octets of
  part payload, are held, the least recently extended sets are evicted and
  reported the same way (reason ``"evicted"``) by the next ``expire`` call;
  ``next_deadline()`` then returns the time of the eviction, so a caller that
  sleeps until ``next_deadline()`` collects them at once.

A repeated part is ignored and counted (``stats.duplicates``; one with other
content than the first copy also in ``stats.conflicting_duplicates``).  A copy
of a part of a set that completed less than ``timeout`` ago, with the same
content, is recognised as a late duplicate and does not start a new set (a new
message that reuses the reference has other content and does).

Payloads are concatenated as octets.  That is right for 8-bit data, UCS-2 (a
surrogate pair split over two parts is whole again) and unpacked GSM 7-bit
(SMPP's usual form); decoding the result is the codec's job.
"""

from __future__ import annotations

import enum
from collections import OrderedDict
from collections.abc import Mapping
from typing import Final, TypeAlias, cast

import attrs

__all__ = [
    "TAG_SAR_MSG_REF_NUM",
    "TAG_SAR_SEGMENT_SEQNUM",
    "TAG_SAR_TOTAL_SEGMENTS",
    "Completed",
    "ConcatPart",
    "Incomplete",
    "InformationElement",
    "Reassembler",
    "ReassemblyStats",
    "Scheme",
    "Split",
    "TlvValues",
    "UdhError",
    "parse_udh",
    "split_message",
]

# TLVs by name ("receipted_message_id") or tag (0x001E), values already typed
TlvValues: TypeAlias = Mapping[str, object] | Mapping[int, object] | Mapping[str | int, object]

IEI_CONCAT_8BIT: Final = 0x00
IEI_CONCAT_16BIT: Final = 0x08
TAG_SAR_MSG_REF_NUM: Final = 0x020C
TAG_SAR_TOTAL_SEGMENTS: Final = 0x020E
TAG_SAR_SEGMENT_SEQNUM: Final = 0x020F


class Scheme(enum.Enum):
    """How a part names its message."""

    UDH8 = "udh8"  # IE 0x00, 8-bit reference
    UDH16 = "udh16"  # IE 0x08, 16-bit reference
    SAR = "sar"  # sar_* TLVs, 16-bit reference


_REF_LIMIT: Final = {Scheme.UDH8: 0xFF, Scheme.UDH16: 0xFFFF, Scheme.SAR: 0xFFFF}


class UdhError(ValueError):
    """A user data header that cannot be read; ``reason`` says why."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


@attrs.frozen
class InformationElement:
    iei: int
    data: bytes


def parse_udh(data: bytes) -> tuple[tuple[InformationElement, ...], bytes]:
    """Split ``data`` (a short_message with UDHI set) into its UDH's IEs and the rest.

    Raises :class:`UdhError` when the UDH length or an IE length runs past its end.
    """
    if not data:
        raise UdhError("UDHI set but the short message is empty")
    udhl = data[0]
    end = 1 + udhl
    if end > len(data):
        raise UdhError(f"UDH length {udhl} runs past the {len(data) - 1} octets that follow it")
    ies: list[InformationElement] = []
    pos = 1
    while pos < end:
        if end - pos < 2:
            raise UdhError(f"truncated information element at UDH offset {pos}")
        iei, iedl = data[pos], data[pos + 1]
        if pos + 2 + iedl > end:
            raise UdhError(f"information element 0x{iei:02X} of length {iedl} runs past the UDH end")
        ies.append(InformationElement(iei, bytes(data[pos + 2 : pos + 2 + iedl])))
        pos += 2 + iedl
    return tuple(ies), bytes(data[end:])


def _check_ref(inst: ConcatPart, attribute: attrs.Attribute[int], value: int) -> None:
    if not 0 <= value <= _REF_LIMIT[inst.scheme]:
        raise ValueError(f"reference {value} out of range for {inst.scheme.value}")


def _check_total(inst: ConcatPart, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= 255:
        raise ValueError(f"total {value} outside 1-255")


def _check_seq(inst: ConcatPart, attribute: attrs.Attribute[int], value: int) -> None:
    if not 1 <= value <= inst.total:
        raise ValueError(f"sequence number {value} outside 1-{inst.total}")


@attrs.frozen
class ConcatPart:
    """Which message a part belongs to and where it goes (validated on construction)."""

    scheme: Scheme
    ref: int = attrs.field(validator=_check_ref)
    total: int = attrs.field(validator=_check_total)
    seq: int = attrs.field(validator=_check_seq)


@attrs.frozen
class Split:
    """What one inbound short_message carries.

    ``part`` is None for a message that is not a part (or whose numbering could
    not be read: then ``problem`` says why).  ``payload`` is the message after
    the UDH, or the whole short_message when the UDH could not be parsed.
    ``ies`` are the UDH's other information elements (port addressing ...).
    """

    part: ConcatPart | None
    payload: bytes
    ies: tuple[InformationElement, ...] = ()
    problem: str | None = None


def _tlv(tlvs: TlvValues, name: str, tag: int) -> object:
    by_key = cast(Mapping[object, object], tlvs)
    value = by_key.get(name)
    return by_key.get(tag) if value is None else value


def _make_part(scheme: Scheme, ref: int, total: int, seq: int) -> tuple[ConcatPart | None, str | None]:
    try:
        return ConcatPart(scheme, ref, total, seq), None
    except ValueError as exc:
        return None, f"{scheme.value} numbering unusable: {exc}"


def _sar_part(tlvs: TlvValues | None) -> tuple[ConcatPart | None, str | None]:
    if not tlvs:
        return None, None
    values = (
        _tlv(tlvs, "sar_msg_ref_num", TAG_SAR_MSG_REF_NUM),
        _tlv(tlvs, "sar_total_segments", TAG_SAR_TOTAL_SEGMENTS),
        _tlv(tlvs, "sar_segment_seqnum", TAG_SAR_SEGMENT_SEQNUM),
    )
    present = [v is not None for v in values]
    if not any(present):
        return None, None
    if not all(present):
        return None, "incomplete SAR TLVs (need sar_msg_ref_num, sar_total_segments and sar_segment_seqnum)"
    ref, total, seq = values
    if not (isinstance(ref, int) and isinstance(total, int) and isinstance(seq, int)):
        return None, f"SAR TLVs are not integers: {values!r}"
    return _make_part(Scheme.SAR, ref, total, seq)


def split_message(short_message: bytes, *, udhi: bool, tlvs: TlvValues | None = None) -> Split:
    """Read the concatenation details of one inbound message; never raises.

    ``udhi`` is the esm_class UDHI bit (0x40).  ``tlvs`` maps TLV names or tags
    to typed values (ints for the SAR TLVs).  A concatenation IE in the UDH wins
    over SAR TLVs.
    """
    data = bytes(short_message)
    if not udhi:
        sar, sar_problem = _sar_part(tlvs)
        return Split(sar, data, (), sar_problem)
    try:
        ies, rest = parse_udh(data)
    except UdhError as exc:
        return Split(None, data, (), f"malformed UDH: {exc.reason}")
    others: list[InformationElement] = []
    part: ConcatPart | None = None
    problem: str | None = None
    seen_concat = False
    for ie in ies:
        if ie.iei not in (IEI_CONCAT_8BIT, IEI_CONCAT_16BIT):
            others.append(ie)
            continue
        if seen_concat:
            problem = problem or f"more than one concatenation IE; IE 0x{ie.iei:02X} ignored"
            continue
        seen_concat = True
        want = 3 if ie.iei == IEI_CONCAT_8BIT else 4
        if len(ie.data) != want:
            problem = f"concatenation IE 0x{ie.iei:02X} has {len(ie.data)} octets of data ({want} expected)"
            continue
        if ie.iei == IEI_CONCAT_8BIT:
            part, problem = _make_part(Scheme.UDH8, ie.data[0], ie.data[1], ie.data[2])
        else:
            part, problem = _make_part(Scheme.UDH16, (ie.data[0] << 8) | ie.data[1], ie.data[2], ie.data[3])
    if not seen_concat:
        part, problem = _sar_part(tlvs)
    return Split(part, rest, tuple(others), problem)


# --- results -------------------------------------------------------------------------


@attrs.frozen
class Completed:
    """A whole message: all parts in order (or a message that was never split).

    ``scheme``/``ref`` are None for a message that was not a part.  ``metas``
    are the caller's per-part values (e.g. the PDUs, to acknowledge or trace),
    in part order.  ``ies`` are the non-concatenation IEs of part 1.
    ``problem`` is set when the message could not be treated as a part
    (malformed UDH ...) and is delivered as it came.
    """

    source: str
    dest: str
    scheme: Scheme | None
    ref: int | None
    total: int
    payload: bytes
    parts: tuple[bytes, ...]
    metas: tuple[object, ...] = ()
    ies: tuple[InformationElement, ...] = ()
    first_seen: float = 0.0
    last_seen: float = 0.0
    duplicates: int = 0
    problem: str | None = None


@attrs.frozen
class Incomplete:
    """A set given up on: ``reason`` is ``"timeout"`` or ``"evicted"``.

    ``received`` holds ``(seq, payload)`` of the parts that arrived, in order;
    ``missing`` the sequence numbers that never did.  ``reported_at`` is the
    ``now`` of the expiry or eviction.
    """

    source: str
    dest: str
    scheme: Scheme
    ref: int
    total: int
    received: tuple[tuple[int, bytes], ...]
    missing: tuple[int, ...]
    metas: tuple[object, ...]
    reason: str
    first_seen: float
    last_seen: float
    reported_at: float
    duplicates: int = 0


@attrs.define
class ReassemblyStats:
    completed: int = 0
    singles: int = 0  # messages that were not parts (or not usable as parts)
    malformed: int = 0  # of those, how many had a problem (bad UDH, bad numbering)
    duplicates: int = 0
    conflicting_duplicates: int = 0  # duplicates whose content differed from the first copy
    late_duplicates: int = 0  # copies of parts of an already completed set
    expired: int = 0
    evicted: int = 0


_Key = tuple[str, str, Scheme, int, int]


class _Pending:
    __slots__ = ("duplicates", "first_seen", "ies", "last_seen", "metas", "parts", "size")

    def __init__(self, now: float) -> None:
        self.parts: dict[int, bytes] = {}
        self.metas: dict[int, object] = {}
        self.ies: tuple[InformationElement, ...] = ()
        self.first_seen = now
        self.last_seen = now
        self.duplicates = 0
        self.size = 0


class Reassembler:
    """Collects the parts of concatenated messages (see the module notes)."""

    def __init__(
        self, max_pending: int = 10_000, max_bytes: int = 16 * 1024 * 1024, timeout: float = 120.0
    ) -> None:
        if max_pending < 1 or max_bytes < 1 or timeout <= 0:
            raise ValueError("max_pending and max_bytes must be >= 1 and timeout > 0")
        self.max_pending = max_pending
        self.max_bytes = max_bytes
        self.timeout = timeout
        self.stats = ReassemblyStats()
        self._pending: OrderedDict[_Key, _Pending] = OrderedDict()  # least recently extended first
        self._bytes = 0
        self._reports: list[Incomplete] = []  # evictions waiting for expire()
        self._recent: OrderedDict[_Key, tuple[float, tuple[int, ...]]] = OrderedDict()  # completed sets

    @property
    def pending(self) -> int:
        """Number of incomplete sets held."""
        return len(self._pending)

    @property
    def pending_bytes(self) -> int:
        """Octets of part payload held."""
        return self._bytes

    def add_message(
        self,
        source: str,
        dest: str,
        short_message: bytes,
        now: float,
        *,
        udhi: bool,
        tlvs: TlvValues | None = None,
        meta: object = None,
    ) -> Completed | None:
        """Read one inbound message with ``split_message`` and add it.

        A message that is not a part (or cannot be read as one) comes straight
        back as a one-part ``Completed``, with ``problem`` set if it was malformed.
        """
        split = split_message(short_message, udhi=udhi, tlvs=tlvs)
        if split.part is None:
            self.stats.singles += 1
            if split.problem is not None:
                self.stats.malformed += 1
            return Completed(
                source,
                dest,
                None,
                None,
                1,
                split.payload,
                (split.payload,),
                (meta,),
                split.ies,
                now,
                now,
                0,
                split.problem,
            )
        return self.add(source, dest, split.part, split.payload, now, meta=meta, ies=split.ies)

    def add(
        self,
        source: str,
        dest: str,
        part: ConcatPart,
        payload: bytes,
        now: float,
        *,
        meta: object = None,
        ies: tuple[InformationElement, ...] = (),
    ) -> Completed | None:
        """Add one part; returns the whole message when this part completes it."""
        if part.total == 1:
            self.stats.completed += 1
            return Completed(
                source, dest, part.scheme, part.ref, 1, payload, (payload,), (meta,), ies, now, now
            )
        key: _Key = (source, dest, part.scheme, part.ref, part.total)
        entry = self._pending.get(key)
        if entry is None:
            recent = self._recent.get(key)
            if recent is not None:
                if recent[0] > now and recent[1][part.seq - 1] == hash(payload):
                    self.stats.late_duplicates += 1
                    return None
                del self._recent[key]  # the reference is being reused by a new message
            entry = self._pending[key] = _Pending(now)
        elif part.seq in entry.parts:
            entry.duplicates += 1
            self.stats.duplicates += 1
            if entry.parts[part.seq] != payload:
                self.stats.conflicting_duplicates += 1
            return None
        entry.parts[part.seq] = payload
        entry.metas[part.seq] = meta
        if part.seq == 1:
            entry.ies = ies
        entry.last_seen = now
        entry.size += len(payload)
        self._bytes += len(payload)
        self._pending.move_to_end(key)
        if len(entry.parts) == part.total:
            del self._pending[key]
            self._bytes -= entry.size
            return self._complete(key, entry, now)
        while len(self._pending) > self.max_pending or self._bytes > self.max_bytes:
            old_key, old = self._pending.popitem(last=False)
            self._bytes -= old.size
            self.stats.evicted += 1
            self._reports.append(self._incomplete(old_key, old, "evicted", now))
        return None

    def _complete(self, key: _Key, entry: _Pending, now: float) -> Completed:
        seqs = range(1, key[4] + 1)
        parts = tuple(entry.parts[s] for s in seqs)
        self._recent[key] = (now + self.timeout, tuple(hash(p) for p in parts))
        self._recent.move_to_end(key)
        while len(self._recent) > self.max_pending:
            self._recent.popitem(last=False)
        self.stats.completed += 1
        return Completed(
            key[0],
            key[1],
            key[2],
            key[3],
            key[4],
            b"".join(parts),
            parts,
            tuple(entry.metas[s] for s in seqs),
            entry.ies,
            entry.first_seen,
            entry.last_seen,
            entry.duplicates,
        )

    @staticmethod
    def _incomplete(key: _Key, entry: _Pending, reason: str, now: float) -> Incomplete:
        received = tuple(sorted(entry.parts.items()))
        missing = tuple(s for s in range(1, key[4] + 1) if s not in entry.parts)
        return Incomplete(
            key[0],
            key[1],
            key[2],
            key[3],
            key[4],
            received,
            missing,
            tuple(entry.metas[s] for s, _ in received),
            reason,
            entry.first_seen,
            entry.last_seen,
            now,
            entry.duplicates,
        )

    def expire(self, now: float) -> list[Incomplete]:
        """Report (and forget) the sets evicted since the last call and those idle for ``timeout``."""
        out, self._reports = self._reports, []
        limit = now - self.timeout
        while self._pending:
            key, entry = next(iter(self._pending.items()))
            if entry.last_seen > limit:
                break
            del self._pending[key]
            self._bytes -= entry.size
            self.stats.expired += 1
            out.append(self._incomplete(key, entry, "timeout", now))
        while self._recent:
            key, (until, _) = next(iter(self._recent.items()))
            if until > now:
                break
            del self._recent[key]
        return out

    def next_deadline(self) -> float | None:
        """When ``expire`` next has something to report (None: nothing pending)."""
        if self._reports:
            return self._reports[0].reported_at
        if self._pending:
            return next(iter(self._pending.values())).last_seen + self.timeout
        return None
