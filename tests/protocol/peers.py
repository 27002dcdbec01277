"""Shared helpers for the interop and fuzz tests: third-party peer codecs, strategies, seed PDUs.

* **Deviations.**  :class:`Deviation` is one named, spec-referenced way a peer departs from
  SMPP v3.4.  Each interop test module keeps its own table of them; a test that demonstrates a
  deviation is marked with :func:`demonstrates`, and each module checks that every entry of its
  table has such a test (so no deviation is written down without being exercised, and none is
  exercised without being written down).
* **smpplib 2.2.4.**  :func:`smpplib_encode` / :func:`smpplib_parse` wrap its ``make_pdu`` /
  ``parse_pdu`` (with ``client=None``; the sequence number has to be set on the object
  afterwards) and :func:`smpplib_str` / :func:`smpplib_int` read its attributes back (it keeps
  strings as ``bytes`` and absent fields as ``None``).
* **smpp34 1.5.0.**  :func:`to_smpp34` builds its ``SubmitSm`` / ``DeliverSm`` from one of ours.
* **Strategies.**  Spec-valid field values for any command, TLVs restricted to a set of tags.
* **Seeds.**  :func:`seed_pdus` gives a valid PDU of every command (with TLVs where the command
  has any), the starting points of the fuzzer; :func:`mutate` derives a damaged variant.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import smpp34
import smpplib.command
import smpplib.consts
import smpplib.smpp
from hypothesis import strategies as st

from catalyst_smpp.protocol.codec import encode_pdu
from catalyst_smpp.protocol.constants import CommandId
from catalyst_smpp.protocol.fields import LAYOUTS, SHORT_MESSAGE_XOR_PAYLOAD, FieldKind, FieldSpec
from catalyst_smpp.protocol.pdu import (
    PDU_CLASSES,
    DataSm,
    DeliverSm,
    DistributionListDestination,
    Pdu,
    SmeDestination,
    SubmitMulti,
    SubmitMultiResp,
    SubmitSm,
    UnsuccessSme,
)
from catalyst_smpp.protocol.tlv import TLV_SPECS, Tag, Tlv, TlvKind

# =====================================================================================
# named deviations
# =====================================================================================


@dataclass(frozen=True)
class Deviation:
    """One way a peer departs from SMPP v3.4, with the section of the spec it breaks."""

    name: str
    peer: str
    spec: str  # section of SMPP v3.4 (issue 1.2) that decides
    what: str  # what the peer does
    ours: str  # what our codec does instead (per the spec)

    def __str__(self) -> str:
        return f"{self.peer} deviation {self.name} (SMPP v3.4 {self.spec}): {self.what}"


F = TypeVar("F", bound=Callable[..., Any])


def demonstrates(*deviations: Deviation) -> Callable[[F], F]:
    """Mark a test as the one that pins ``deviations`` down (see :func:`undemonstrated`)."""

    def mark(fn: F) -> F:
        fn.__deviations__ = (*getattr(fn, "__deviations__", ()), *deviations)  # type: ignore[attr-defined]
        return fn

    return mark


def undemonstrated(table: Iterable[Deviation], namespace: dict[str, Any]) -> set[str]:
    """Names of the deviations in ``table`` that no ``test_*`` function in ``namespace`` demonstrates."""
    shown = {
        d.name
        for name, obj in namespace.items()
        if name.startswith("test_")
        for d in getattr(obj, "__deviations__", ())
    }
    return {d.name for d in table} - shown


# =====================================================================================
# smpplib 2.2.4
# =====================================================================================

#: the commands smpplib's factory knows (the rest raise smpplib.exceptions.UnknownCommandError)
SMPPLIB_COMMANDS: tuple[str, ...] = (
    "bind_transmitter",
    "bind_transmitter_resp",
    "bind_receiver",
    "bind_receiver_resp",
    "bind_transceiver",
    "bind_transceiver_resp",
    "data_sm",
    "data_sm_resp",
    "generic_nack",
    "submit_sm",
    "submit_sm_resp",
    "deliver_sm",
    "deliver_sm_resp",
    "query_sm",
    "query_sm_resp",
    "unbind",
    "unbind_resp",
    "enquire_link",
    "enquire_link_resp",
    "alert_notification",
)
SMPPLIB_UNSUPPORTED: tuple[str, ...] = tuple(c.name for c in CommandId if c.name not in SMPPLIB_COMMANDS)


def smpplib_class(command: str) -> type[Any]:
    """smpplib's class for ``command`` (without instantiating it)."""
    return type(smpplib.command.factory(command, client=None, sequence=0))


def smpplib_params(command: str) -> dict[str, Any]:
    """smpplib's ``Param`` of each field of ``command`` (mandatory and optional)."""
    return dict(smpplib_class(command).params)


def smpplib_tlv_names(command: str) -> list[str]:
    """The optional parameters smpplib lists for ``command``, in its (encoding) order."""
    obj = smpplib.command.factory(command, client=None, sequence=0)
    return [f for f in obj.params_order if obj.field_is_optional(f)]


def smpplib_encode(command: str, *, seq: int = 1, status: int = 0, **fields: Any) -> bytes:
    """smpplib's wire bytes for ``command`` with ``fields`` (spec names; TLVs by name too)."""
    pdu = smpplib.smpp.make_pdu(command, client=None, sequence=seq, status=status, **fields)
    pdu.sequence = seq  # make_pdu(client=None) ignores the sequence keyword
    data: bytes = pdu.generate()
    return data


def smpplib_parse(data: bytes, *, allow_unknown: bool = False) -> Any:
    """smpplib's parse of one PDU (its object: fields as attributes, strings as bytes)."""
    return smpplib.smpp.parse_pdu(data, client=None, sequence=0, allow_unknown_opt_params=allow_unknown)


def smpplib_str(obj: Any, name: str) -> str:
    """A C-octet string field of a parsed smpplib PDU as our ``str`` ('' when absent)."""
    v = getattr(obj, name, None)
    if v is None:
        return ""
    assert isinstance(v, bytes), (name, v)
    return v.decode("latin-1")


def smpplib_int(obj: Any, name: str) -> int:
    v = getattr(obj, name, None)
    return 0 if v is None else int(v)


# =====================================================================================
# smpp34 1.5.0
# =====================================================================================

SM_FIELDS: tuple[str, ...] = tuple(f.name for f in LAYOUTS[CommandId.submit_sm])


def to_smpp34(pdu: SubmitSm | DeliverSm) -> Any:
    """smpp34's SubmitSm / DeliverSm with the field values of ``pdu`` (its status cannot be set)."""
    cls = smpp34.SubmitSm if isinstance(pdu, SubmitSm) else smpp34.DeliverSm
    kwargs = {
        n: getattr(pdu, n) for n in SM_FIELDS if n not in ("source_addr", "destination_addr", "short_message")
    }
    return cls(
        pdu.source_addr,
        pdu.destination_addr,
        pdu.short_message,
        tlvs=[smpp34.Tlv(t.tag, t.raw) for t in pdu.tlvs],
        sequence_number=pdu.sequence_number,
        **kwargs,
    )


def smpp34_fields(obj: Any) -> dict[str, Any]:
    """The mandatory fields and TLVs of an smpp34 SubmitSm / DeliverSm, named as ours."""
    out = {n: getattr(obj, n) for n in SM_FIELDS}
    out["tlvs"] = tuple(Tlv(t.tag, bytes(t.value)) for t in obj.tlvs)
    out["sequence_number"] = obj.sequence_number
    return out


# =====================================================================================
# strategies
# =====================================================================================

u8 = st.integers(0, 255)
u32 = st.integers(0, 0xFFFFFFFF)
#: every Latin-1 character but NUL (what our C-octet strings may hold)
LATIN1 = st.characters(min_codepoint=1, max_codepoint=255)
#: printable ASCII (what the spec says C-octet strings hold, and what every peer encodes alike)
ASCII = st.characters(min_codepoint=0x20, max_codepoint=0x7E)
#: a realistic SMPP time: YYMMDDhhmmsstnnp, absolute (+/-) or relative (R)
smpp_time = st.builds(
    lambda d, t, q, p: f"{d}{t}{q:02d}{p}",
    st.from_regex(r"\A[0-9]{12}\Z", fullmatch=True),
    st.sampled_from("0123456789"),
    st.integers(0, 48),
    st.sampled_from("+-R"),
)
time_field = st.one_of(st.just(""), smpp_time)


def cstr(
    max_len: int, alphabet: st.SearchStrategy[str] = LATIN1, min_size: int = 0
) -> st.SearchStrategy[str]:
    """A C-octet string whose encoding (with its NUL) takes at most ``max_len`` octets."""
    return st.text(alphabet, min_size=min_size, max_size=max_len - 1)


def field_values(
    cid: int,
    *,
    alphabet: st.SearchStrategy[str] = LATIN1,
    caps: dict[str, int] | None = None,
    min_sizes: dict[str, int] | None = None,
) -> st.SearchStrategy[dict[str, Any]]:
    """Spec-valid mandatory field values of ``cid`` (``caps``: tighter max octets incl. NUL)."""
    caps = caps or {}
    min_sizes = min_sizes or {}
    parts: dict[str, st.SearchStrategy[Any]] = {}
    for f in LAYOUTS[cid]:
        parts[f.name] = _field_strategy(f, alphabet, caps.get(f.name), min_sizes.get(f.name, 0))
    return st.fixed_dictionaries(parts)


def _field_strategy(f: FieldSpec, alphabet: st.SearchStrategy[str], cap: int | None, min_size: int) -> Any:
    kind = f.kind
    if kind is FieldKind.INT1:
        return u8.filter(f.check) if f.check is not None else u8
    if kind is FieldKind.INT4:
        return u32
    if kind is FieldKind.COCTET:
        return cstr(min(f.max_len, cap or f.max_len), alphabet, min_size)
    if kind is FieldKind.TIME:
        return time_field
    if kind is FieldKind.SHORT_MESSAGE:
        return st.binary(max_size=254)
    if kind is FieldKind.DEST_ADDRESS:
        dest = st.one_of(
            st.builds(SmeDestination, u8, u8, cstr(21, alphabet)),
            st.builds(DistributionListDestination, cstr(21, alphabet)),
        )
        return st.lists(dest, min_size=1, max_size=5).map(tuple)
    return st.lists(st.builds(UnsuccessSme, u8, u8, cstr(21, alphabet), u32), max_size=5).map(tuple)


_SAR: tuple[int, ...] = (Tag.sar_msg_ref_num, Tag.sar_total_segments, Tag.sar_segment_seqnum)


def tlv_value(
    tag: int, *, alphabet: st.SearchStrategy[str] = LATIN1, non_empty: bool = False
) -> st.SearchStrategy[Tlv]:
    """A spec-valid TLV with ``tag`` (C-octet strings NUL-terminated, as the spec writes them).

    A tag we do not know (a vendor tag) gets an arbitrary octet string: that is all the spec
    says about it, and it must cross byte for byte.
    """
    spec = TLV_SPECS.get(tag)
    if spec is None:
        return st.binary(min_size=1 if non_empty else 0, max_size=40).map(lambda b: Tlv(tag, b))
    if spec.kind is TlvKind.INT:
        size = spec.sizes[0]
        return st.integers(0, (1 << (8 * size)) - 1).map(lambda v: Tlv.make(tag, v))
    lo = max(spec.min_len, 1 if non_empty else 0)
    if spec.kind is TlvKind.COCTET:
        lo = max(lo - 1, 1 if non_empty else 0)
        return st.text(alphabet, min_size=lo, max_size=min(spec.max_len, 70) - 1).map(
            lambda s: Tlv.make(tag, s)
        )
    return st.binary(min_size=lo, max_size=max(lo, min(spec.max_len, 70))).map(lambda b: Tlv.make(tag, b))


@st.composite
def tlv_sets(
    draw: st.DrawFn,
    tags: Sequence[int],
    *,
    alphabet: st.SearchStrategy[str] = LATIN1,
    non_empty: bool = False,
    max_size: int = 6,
) -> tuple[Tlv, ...]:
    """Up to ``max_size`` TLVs with distinct tags from ``tags`` (the SAR three always together)."""
    plain = [t for t in tags if t not in _SAR]
    chosen = draw(st.lists(st.sampled_from(plain), unique=True, max_size=max_size)) if plain else []
    out = [draw(tlv_value(t, alphabet=alphabet, non_empty=non_empty)) for t in chosen]
    if all(t in tags for t in _SAR) and draw(st.booleans()):
        total = draw(st.integers(1, 255))
        out[len(out) // 2 : len(out) // 2] = [
            Tlv.make(Tag.sar_msg_ref_num, draw(st.integers(0, 0xFFFF))),
            Tlv.make(Tag.sar_total_segments, total),
            Tlv.make(Tag.sar_segment_seqnum, draw(st.integers(1, total))),
        ]
    return tuple(out)


@st.composite
def our_pdus(
    draw: st.DrawFn,
    cid: int,
    *,
    tags: Sequence[int] = (),
    alphabet: st.SearchStrategy[str] = LATIN1,
    caps: dict[str, int] | None = None,
    min_sizes: dict[str, int] | None = None,
    status: st.SearchStrategy[int] | None = None,
    non_empty_tlvs: bool = False,
) -> Pdu:
    """One of our PDUs of ``cid`` with spec-valid fields and TLVs drawn from ``tags``."""
    values = draw(field_values(cid, alphabet=alphabet, caps=caps, min_sizes=min_sizes))
    if cid in SHORT_MESSAGE_XOR_PAYLOAD and values.get("short_message"):
        tags = [t for t in tags if t != Tag.message_payload]
    tlvs = draw(tlv_sets(tags, alphabet=alphabet, non_empty=non_empty_tlvs)) if tags else ()
    if status is None:
        status = st.one_of(st.just(0), u32) if cid & 0x80000000 else st.just(0)
    cls: Any = PDU_CLASSES[cid]
    pdu: Pdu = cls(
        sequence_number=draw(st.integers(1, 0x7FFFFFFF)), command_status=draw(status), tlvs=tlvs, **values
    )
    return pdu


# =====================================================================================
# seeds and mutations (the fuzzer's corpus)
# =====================================================================================

_TEXT_160 = ("Catalyst SMPP fuzz seed " * 7)[:160].encode("ascii")


def seed_pdus() -> list[Pdu]:
    """A valid PDU of every command, most with TLVs (known, SAR, unknown vendor, odd lengths)."""
    out: list[Pdu] = []
    rng = random.Random(20240501)
    vendor = Tlv(0x1401, b"\x01\x02\x03")
    for cid, cls in sorted(PDU_CLASSES.items()):
        base: Any = cls(sequence_number=rng.randint(1, 0x7FFFFFFF))
        for f in LAYOUTS[cid]:
            if f.kind is FieldKind.INT1:
                setattr(base, f.name, 4 if f.name == "esm_class" and cid in (5, 0x103) else 1)
            elif f.kind is FieldKind.COCTET:
                setattr(base, f.name, ("x" * (f.max_len - 1))[: min(f.max_len - 1, 12)])
            elif f.kind is FieldKind.TIME:
                setattr(base, f.name, "240501120000000+")
            elif f.kind is FieldKind.SHORT_MESSAGE:
                setattr(base, f.name, _TEXT_160)
            elif f.kind is FieldKind.INT4:
                setattr(base, f.name, 0x0000000B)
        if isinstance(base, SubmitMulti):
            base.dest_address = (SmeDestination(1, 1, "4479000001"), DistributionListDestination("friends"))
        if isinstance(base, SubmitMultiResp):
            base.unsuccess_sme = (UnsuccessSme(1, 1, "4479000002", 0x0B),)
        out.append(base)
        if cid in (CommandId.submit_sm, CommandId.deliver_sm, CommandId.data_sm):
            with_tlvs: Any = cls(**{a: getattr(base, a) for a in _attr_names(cls)})
            with_tlvs.tlvs = (
                Tlv.make(Tag.sar_msg_ref_num, 0x1234),
                Tlv.make(Tag.sar_total_segments, 3),
                Tlv.make(Tag.sar_segment_seqnum, 2),
                Tlv.make(Tag.receipted_message_id, "0A1B2C3D"),
                Tlv.make(Tag.message_state, 2),
                Tlv.make(Tag.network_error_code, b"\x03\x00\x01"),
                Tlv.make(Tag.alert_on_message_delivery, b""),
                vendor,
            )
            out.append(with_tlvs)
            if cid != CommandId.data_sm:
                payload: Any = cls(**{a: getattr(base, a) for a in _attr_names(cls)})
                payload.short_message = b""
                payload.tlvs = (Tlv.make(Tag.message_payload, _TEXT_160 * 3),)
                out.append(payload)
        elif cid & 0x80000000 and cid != CommandId.generic_nack:
            err: Any = cls(sequence_number=base.sequence_number, command_status=0x0B)
            out.append(err)
        else:
            tagged: Any = cls(**{a: getattr(base, a) for a in _attr_names(cls)})
            tagged.tlvs = (vendor, Tlv.make(Tag.sc_interface_version, 0x34))
            out.append(tagged)
    return out


def _attr_names(cls: type[Any]) -> list[str]:
    import attrs

    return [a.name for a in attrs.fields(cls)]


def seed_wires() -> list[bytes]:
    return [encode_pdu(p) for p in seed_pdus()]


def tlv_offsets(wire: bytes) -> list[int]:
    """Offsets of the TLV headers of a valid encoding of ours (decoded again to find them)."""
    from catalyst_smpp.protocol.codec import decode_pdu

    pdu = decode_pdu(wire)
    total = sum(4 + len(t.raw) for t in pdu.tlvs)
    offs = []
    p = len(wire) - total
    for t in pdu.tlvs:
        offs.append(p)
        p += 4 + len(t.raw)
    return offs


def mutate(rng: random.Random, wire: bytes, tlv_offs: Sequence[int] = ()) -> bytes:
    """A damaged variant of one PDU's bytes: 1-4 of the mutations below, applied in turn."""
    b = bytearray(wire)
    for _ in range(rng.randint(1, 4)):
        op = rng.randrange(12)
        n = len(b)
        if op == 0 and n:  # flip bits
            i = rng.randrange(n)
            b[i] ^= 1 << rng.randrange(8)
        elif op == 1 and n:  # overwrite an octet with an interesting value
            b[rng.randrange(n)] = rng.choice((0, 1, 0x7F, 0x80, 0xFE, 0xFF, rng.randrange(256)))
        elif op == 2 and n > 16:  # truncate the body, keep command_length consistent
            del b[rng.randrange(16, n) :]
            b[0:4] = len(b).to_bytes(4, "big")
        elif op == 3:  # truncate anywhere, command_length left as it was
            del b[rng.randrange(0, n + 1) :]
        elif op == 4:  # extend with junk, command_length updated
            b += rng.randbytes(rng.randint(1, 40))
            b[0:4] = len(b).to_bytes(4, "big")
        elif op == 5 and n >= 4:  # command_length to an interesting lie
            lie = rng.choice((0, 1, 15, 16, 17, n - 1, n + 1, 0xFFFFFFFF, 0x80000000, rng.randrange(1 << 32)))
            b[0:4] = (lie & 0xFFFFFFFF).to_bytes(4, "big")
        elif op == 6 and tlv_offs:  # a TLV length to a lie
            p = rng.choice(tlv_offs)
            if p + 4 <= n:
                b[p + 2 : p + 4] = rng.choice((0, 1, 2, 3, 0xFFFF, rng.randrange(1 << 16))).to_bytes(2, "big")
        elif op == 7 and tlv_offs:  # a TLV tag to another known tag or a random one
            p = rng.choice(tlv_offs)
            if p + 2 <= n:
                tag = rng.choice((*TLV_SPECS, rng.randrange(1 << 16)))
                b[p : p + 2] = int(tag).to_bytes(2, "big")
        elif op == 8 and n > 16:  # remove a NUL (strings run into each other)
            nuls = [i for i in range(16, n) if b[i] == 0]
            if nuls:
                del b[rng.choice(nuls)]
                b[0:4] = len(b).to_bytes(4, "big")
        elif op == 9 and n > 16:  # insert octets inside the body
            i = rng.randrange(16, n + 1)
            b[i:i] = rng.choice((b"\x00", b"\xff", rng.randbytes(rng.randint(1, 8))))
            b[0:4] = len(b).to_bytes(4, "big")
        elif op == 10 and n >= 8:  # command_id to another command (the body now misfits)
            cid = rng.choice((*PDU_CLASSES, rng.randrange(1 << 32), 0x80000000 | rng.randrange(0x200)))
            b[4:8] = int(cid).to_bytes(4, "big")
        elif op == 11 and n > 17:  # sm_length / count octets: any byte to 0 / 255 / +-1
            i = rng.randrange(16, n)
            b[i] = rng.choice((0, 255, (b[i] + 1) & 0xFF, (b[i] - 1) & 0xFF))
    return bytes(b)


def random_pdu_bytes(rng: random.Random) -> bytes:
    """A header with a plausible command_id and a random body (mostly consistent length)."""
    cid = rng.choice((*PDU_CLASSES, rng.randrange(1 << 32)))
    body = rng.randbytes(rng.choice((0, 1, 2, 5, rng.randint(0, 64), rng.randint(0, 400))))
    length = 16 + len(body) if rng.random() < 0.9 else rng.randrange(1 << 32)
    return (
        struct.pack(">IIII", length, cid, rng.choice((0, rng.randrange(1 << 32))), rng.randrange(1 << 32))
        + body
    )


# data_sm's addresses may be 64 characters (v3.4 section 4.7.1)
DATA_SM_ADDRESS_MAX = 65
assert dict((f.name, f.max_len) for f in LAYOUTS[DataSm.command_id])["source_addr"] == DATA_SM_ADDRESS_MAX
