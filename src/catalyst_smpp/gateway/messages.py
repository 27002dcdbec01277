"""What the gateway puts on JetStream: MT messages, receipts and MO messages for partners.

Each record kind is declared ONCE, as an attrs class whose fields carry their wire type (:func:`u8`,
:func:`string`, :func:`address`, ...).  :class:`RecordCodec` reads that declaration and derives everything
else from it: the binary layout (one ``struct.Struct`` for the fixed part), the writer and the reader, and a
flat tuple view (:class:`RecordView`: the fields in declaration order, each address as its three values,
read as attributes) that the hot paths use instead of building the frozen record and its ``Address``
objects.  Adding a field means adding it to the class (and to the code that uses it), nothing else.

Binary form: ``0xCA``, the format version, the kind octet (``M`` MT, ``D`` DLR, ``O`` MO), then the fixed
part (little-endian: the numeric fields and the ``ton``/``npi`` of each address in declaration order, then
the number of strings in the list field, the TLV count and the length of the string block), the string
block (the text fields and each address's ``addr`` in declaration order, then the list's strings, in UTF-8
joined by NUL), the TLVs (tag u16, length u16, value) and the payload to the end.  There is one form and
one version: a reader refuses any other version (no deployment predates this form).  A text field cannot
contain NUL (SMPP's C-octet strings cannot either) and an integer must fit its field: writing such a
record raises :class:`EncodeError`.

One module (over 600 lines): the field kinds, the codec that derives every form from them and the record
declarations belong together -- a record is read next to the kinds it is declared with, and the codec is
only ever used with these records.
"""

from __future__ import annotations

import struct
from collections.abc import Callable, Sequence
from operator import attrgetter, itemgetter
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

import attrs

from catalyst_smpp.billing.charging import CHARGE_ON_DELIVERY, CHARGE_ON_SUBMIT

__all__ = [
    "CHARGE_ON_DELIVERY",
    "CHARGE_ON_SUBMIT",
    "Address",
    "DecodeError",
    "DlrFields",
    "DlrMessage",
    "EncodeError",
    "MoMessage",
    "MtFields",
    "MtMessage",
    "Record",
    "RecordCodec",
    "RecordView",
    "decode_record",
    "dlr_fields",
    "dlr_record",
    "mt_fields",
    "mt_record",
]

MAGIC = 0xCA
VERSION = 2


class DecodeError(ValueError):
    """A JetStream message that is not a record of the expected kind (poison message)."""


class EncodeError(ValueError):
    """A record the binary form cannot carry (a NUL in a text field, an integer out of its field's range)."""


@attrs.frozen(slots=True)
class Address:
    ton: int = 0
    npi: int = 0
    addr: str = ""


# --------------------------------------------------------------------------- field declarations

# wire kinds: a struct format letter (a numeric field in the fixed part), or one of these
_TEXT = "text"  # a string in the string block
_ADDRESS = "address"  # ton and npi (octets) in the fixed part, addr in the string block
_LIST = "list"  # a tuple of strings at the end of the string block, its length (an octet) in the fixed part
_TLVS = "tlvs"  # (tag, raw value) pairs after the string block, their count (u16) in the fixed part
_PAYLOAD = "payload"  # octets to the end of the record
_WIRE = "wire"
_SAME_AS = "same_as"


def _field(kind: str, default: Any = attrs.NOTHING) -> Any:
    return attrs.field(default=default, metadata={_WIRE: kind})


def u8(default: int = 0) -> Any:
    return _field("B", default)


def u16(default: int = 0) -> Any:
    return _field("H", default)


def i64(default: int = 0) -> Any:
    return _field("q", default)


def f64(default: float = 0.0) -> Any:
    return _field("d", default)


def string(default: Any = attrs.NOTHING, *, same_as: str | None = None) -> Any:
    """A text field; ``same_as``: by default the value of that (earlier) field (a record's ``display_id``
    is its ``message_id`` unless set)."""
    if same_as is not None:
        return attrs.field(
            default=attrs.Factory(lambda rec: getattr(rec, same_as), takes_self=True),
            metadata={_WIRE: _TEXT, _SAME_AS: same_as},
        )
    return _field(_TEXT, default)


def address(default: Any = attrs.NOTHING) -> Any:
    return _field(_ADDRESS, default)


def strings(default: Any = attrs.NOTHING) -> Any:
    return _field(_LIST, default)


def tlv_list() -> Any:
    return _field(_TLVS, ())


def payload() -> Any:
    return _field(_PAYLOAD, b"")


# --------------------------------------------------------------------------- the codec

R = TypeVar("R")
_MAGIC_BYTE = bytes([MAGIC])
_PREFIX = "<BBB"  # magic, version, kind
_TLV = struct.Struct("<HH")


class RecordView(tuple[Any, ...]):
    """A record's fields as one flat tuple (declaration order, each address as ``<name>_ton``,
    ``<name>_npi``, ``<name>_addr``), read by name: what the hot paths read per message instead of the
    frozen record and its ``Address`` objects.  Each record kind's view subclass gets one property per
    field from its :class:`RecordCodec` (``property(itemgetter(i))``: no code generated)."""

    __slots__ = ()

    if TYPE_CHECKING:

        def __getattr__(self, name: str) -> Any: ...


def _tlvs_bytes(tlvs: Sequence[tuple[int, bytes]]) -> bytes:
    pack = _TLV.pack
    return b"".join(pack(tag, len(raw)) + raw for tag, raw in tlvs)


def _read_tlvs(data: bytes, pos: int, n: int) -> tuple[tuple[tuple[int, bytes], ...], int]:
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


def _getter(
    keys: Sequence[Any], getter: Callable[..., Callable[[Any], Any]] = itemgetter
) -> Callable[[Any], tuple[Any, ...]]:
    """``itemgetter(*keys)`` (or ``attrgetter``), a tuple for any number of keys (either of one key gives the
    value itself)."""
    if len(keys) > 1:
        return getter(*keys)
    if keys:
        one = getter(keys[0])
        return lambda v: (one(v),)
    return lambda v: ()


def _packer(
    kind: str,
    st: struct.Struct,
    code: int,
    texts: Sequence[Any],
    fixed: Sequence[Any],
    listed: Any,
    tlvs: Any,
    body: Any,
) -> Callable[[Any], bytes]:
    """The writer of one record kind's octets from ``v``: a flat tuple (the keys are positions) or a dict of
    every flat field (the keys are names).  ``texts``/``fixed``: the keys of the string block's texts and of
    the fixed part's numbers; ``listed``, ``tlvs``, ``body``: the key of the list, TLV and payload field
    (None when the record has none).  A KeyError is a field missing from ``v``."""
    get_texts, get_fixed = _getter(texts), _getter(fixed)
    pack_head = st.pack
    nul = len(texts) - 1  # NULs in the joined string block (texts + the list's strings)
    if listed is None and tlvs is None and body is None:

        def pack(v: Any) -> bytes:  # the plain kinds (DLR, id mappings): texts and numbers
            try:
                joined = "\x00".join(get_texts(v))
                if joined.count("\x00") != nul:
                    raise EncodeError(f"{kind}: a NUL in a text field")
                sb = joined.encode("utf-8")
                return pack_head(MAGIC, VERSION, code, *get_fixed(v), len(sb)) + sb
            except (struct.error, UnicodeEncodeError, TypeError) as exc:
                raise EncodeError(f"{kind}: {exc}") from None

        return pack

    def pack_any(v: Any) -> bytes:
        try:
            strs = get_texts(v)
            n = nul
            counts: tuple[int, ...] = ()
            if listed is not None:
                items = v[listed]
                if items:
                    strs = (*strs, *items)
                    n += len(items)
                counts = (len(items),)
            pairs: Sequence[tuple[int, bytes]] = () if tlvs is None else v[tlvs]
            if tlvs is not None:
                counts = (*counts, len(pairs))
            joined = "\x00".join(strs)
            if joined.count("\x00") != n:
                raise EncodeError(f"{kind}: a NUL in a text field")
            sb = joined.encode("utf-8")
            head = pack_head(MAGIC, VERSION, code, *get_fixed(v), *counts, len(sb))
            rest = b"" if body is None else v[body]
            if pairs:
                return b"".join((head, sb, _tlvs_bytes(pairs), rest))
            return head + sb + rest if rest else head + sb
        except (struct.error, UnicodeEncodeError, TypeError) as exc:
            raise EncodeError(f"{kind}: {exc}") from None

    return pack_any


def _reader(
    kind: str,
    st: struct.Struct,
    code: int,
    ntexts: int,
    list_count_at: int,
    tlv_count_at: int,
    has_payload: bool,
    pick: Callable[[Any], tuple[Any, ...]],
    view: type[RecordView] | None,
) -> Callable[[bytes], Any]:
    """The reader of one record kind's octets: its flat values (a tuple, or a ``view`` of them), or
    :class:`DecodeError` for anything that is not such a record.  ``pick`` takes the flat values out of
    the head, the texts, then the list, the TLVs and the payload (see :class:`RecordCodec`)."""
    size = st.size
    unpack = st.unpack_from
    new = tuple.__new__
    plain = list_count_at < 0 and tlv_count_at < 0 and not has_payload

    def read(data: bytes) -> Any:
        try:
            if len(data) < size:
                raise DecodeError(f"not a {kind} record: {len(data)} octets")
            head = unpack(data)
            if head[0] != MAGIC or head[1] != VERSION:
                raise DecodeError(f"{kind} record of unknown format {head[0]:#x}/{head[1]}")
            if head[2] != code:
                raise DecodeError(f"not a {kind} record (kind {head[2]!r})")
            slen = head[-1]
            pos = size + slen
            raw = data[size:pos]
            if len(raw) != slen:
                raise DecodeError(f"bad {kind} record: truncated")
            strs = raw.decode("utf-8").split("\x00")
            if plain:  # texts and numbers only (DLR, id mappings): nothing after the strings
                if len(strs) != ntexts:
                    raise DecodeError(f"bad {kind} record: {len(strs)} strings")
                if len(data) != pos:
                    raise DecodeError(f"bad {kind} record: {len(data) - pos} octets after it")
                picked = pick((*head, *strs))
            else:
                listed = head[list_count_at] if list_count_at >= 0 else 0
                if len(strs) != ntexts + listed:
                    raise DecodeError(f"bad {kind} record: {len(strs)} strings")
                tlvs: tuple[tuple[int, bytes], ...] = ()
                if tlv_count_at >= 0 and head[tlv_count_at]:
                    tlvs, pos = _read_tlvs(data, pos, head[tlv_count_at])
                rest = data[pos:]
                if not has_payload and rest:
                    raise DecodeError(f"bad {kind} record: {len(rest)} octets after it")
                picked = pick((*head, *strs[:ntexts], tuple(strs[ntexts:]), tlvs, rest))
        except (struct.error, UnicodeDecodeError, IndexError, TypeError) as exc:
            raise DecodeError(f"bad {kind} record: {exc}") from None
        return picked if view is None else new(view, picked)

    return read


class RecordCodec(Generic[R]):
    """The binary form, reader and flat view of one record class, all derived from its field declarations.

    ``pack(flat)`` writes a record from its flat values (:class:`RecordView` order), ``write(**fields)``
    from keywords (declared defaults for the rest; addresses as ``(ton, npi, addr)``), ``encode(record)``
    from the record; ``view(data)`` reads the flat view, ``decode(data)`` the record.  ``names`` is the
    flat field names; ``index[name]`` a field's position in the flat tuple."""

    def __init__(self, cls: type[R], code: str, view: type[RecordView] | None = None) -> None:
        """``cls``'s codec (also its ``CODEC``, what ``to_bytes``/``from_bytes`` use); ``code``: its kind
        octet; ``view``: the flat view class to give the field properties (a new one when None)."""
        if view is None:
            view = type(f"{cls.__name__}Fields", (RecordView,), {"__slots__": ()})
        cls.CODEC = self  # type: ignore[attr-defined]
        self.cls = cls
        self.kind = cls.__name__
        self.code = ord(code)
        self._view = view
        fields = attrs.fields(cls)  # type: ignore[arg-type]
        names: list[str] = []
        defaults: dict[str, Any] = {}
        fixed_fmt = ""
        fixed_at: list[int] = []  # flat index of each numeric value of the fixed part
        texts_at: list[int] = []  # flat index of each string of the string block
        list_at = tlvs_at = payload_at = -1
        self._addresses: list[str] = []
        self._same_as: list[tuple[str, str]] = []
        for f in fields:
            kind = f.metadata.get(_WIRE)
            if kind is None:
                raise TypeError(f"{cls.__name__}.{f.name}: no wire type")
            at = len(names)
            if kind == _ADDRESS:
                names += [f"{f.name}_ton", f"{f.name}_npi", f"{f.name}_addr"]
                fixed_fmt += "BB"
                fixed_at += [at, at + 1]
                texts_at.append(at + 2)
                self._addresses.append(f.name)
                if isinstance(f.default, Address):
                    defaults.update(zip(names[at:], attrs.astuple(f.default), strict=True))
                continue
            names.append(f.name)
            if f.default is not attrs.NOTHING and not isinstance(f.default, attrs.Factory):  # type: ignore[arg-type]
                defaults[f.name] = f.default
            if kind == _TEXT:
                texts_at.append(at)
                if _SAME_AS in f.metadata:
                    self._same_as.append((f.name, f.metadata[_SAME_AS]))
            elif kind == _LIST:
                assert list_at < 0, "one list field per record"
                list_at = at
            elif kind == _TLVS:
                assert tlvs_at < 0, "one TLV field per record"
                tlvs_at = at
            elif kind == _PAYLOAD:
                assert payload_at < 0, "one payload field per record"
                payload_at = at
            else:
                struct.calcsize(kind)  # a struct format letter, or the declaration is wrong
                fixed_fmt += kind
                fixed_at.append(at)
        assert texts_at, "at least one text field (the string block)"
        counts = ("B" if list_at >= 0 else "") + ("H" if tlvs_at >= 0 else "")
        self.names: tuple[str, ...] = tuple(names)
        self._name_set = frozenset(names)
        self._address_keys = [(a, f"{a}_ton", f"{a}_npi", f"{a}_addr") for a in self._addresses]
        # a record's flat values in one C call: each address's parts by dotted name (``source.ton``)
        dotted = {f"{a}_{part}": f"{a}.{part}" for a in self._addresses for part in ("ton", "npi", "addr")}
        self._flat = _getter([dotted.get(n, n) for n in names], attrgetter)
        self._nflat = len(names)
        self._ntupled = len(names) - 2 * len(self._addresses)  # every field given, addresses as tuples
        self.index = {n: i for i, n in enumerate(names)}
        self.defaults = defaults
        self._fields = fields
        self._struct = struct.Struct(_PREFIX + fixed_fmt + counts + "I")
        self._list_count_at = 3 + len(fixed_at) if list_at >= 0 else -1
        self._tlv_count_at = 3 + len(fixed_at) + (list_at >= 0) if tlvs_at >= 0 else -1
        # writing: the same writer twice, from the flat tuple (by position) and from keywords (by name)
        extras = [i if i >= 0 else None for i in (list_at, tlvs_at, payload_at)]
        self._pack = _packer(self.kind, self._struct, self.code, texts_at, fixed_at, *extras)
        self._pack_named = _packer(
            self.kind,
            self._struct,
            self.code,
            [names[i] for i in texts_at],
            [names[i] for i in fixed_at],
            *(None if i is None else names[i] for i in extras),
        )
        # reading: the head (prefix, numeric values, counts, string block length), the strings, then the
        # list, TLVs and payload are concatenated; this picks the flat tuple out of that, in one step
        nhead = 3 + len(fixed_at) + len(counts) + 1
        where = [0] * len(names)
        for k, i in enumerate(fixed_at):
            where[i] = 3 + k
        for k, i in enumerate(texts_at):
            where[i] = nhead + k
        for k, i in enumerate((list_at, tlvs_at, payload_at)):
            if i >= 0:
                where[i] = nhead + len(texts_at) + k
        self._pick = _getter(where)
        reading = (self.kind, self._struct, self.code, len(texts_at), self._list_count_at, self._tlv_count_at)
        self._values = _reader(*reading, payload_at >= 0, self._pick, None)
        self.read_view: Callable[[bytes], Any] = _reader(*reading, payload_at >= 0, self._pick, view)
        """:meth:`view` itself (one call less: what ``mt_fields``/``dlr_fields`` are)."""
        for i, n in enumerate(names):
            setattr(view, n, property(itemgetter(i)))

    # ---- writing

    def pack(self, v: Sequence[Any]) -> bytes:
        """The record's octets from its flat values (:attr:`names` order)."""
        return self._pack(v)

    def write(self, **fields: Any) -> bytes:
        """The record's octets from keyword fields (flat names, or an address as ``(ton, npi, addr)``);
        a field not given takes its declared default.  An unknown or missing name is a TypeError."""
        n = len(fields)
        if n == self._ntupled and n != self._nflat:  # every field, addresses as tuples (most callers)
            try:
                for name, ton, npi, addr in self._address_keys:
                    a = fields.pop(name)
                    if a is not None:  # None: the declared default (as below)
                        fields[ton], fields[npi], fields[addr] = a
            except KeyError:  # not that after all: the general path sorts it out
                pass
            n = len(fields)
        if n == self._nflat:  # every field by its flat name (a missing one: something unknown given)
            try:
                return self._pack_named(fields)
            except KeyError:
                pass
        return self._pack_named(self._completed(fields))

    def _completed(self, fields: dict[str, Any]) -> dict[str, Any]:
        """``fields`` (keywords of :meth:`write`) with the addresses flat and the defaults of what is left
        out; TypeError for an unknown or a missing name."""
        for name, ton, npi, addr in self._address_keys:
            a = fields.pop(name, None)
            if a is not None:
                fields[ton], fields[npi], fields[addr] = a
        if not fields.keys() <= self._name_set:  # (a subset test in C: no set is built)
            raise TypeError(f"{self.kind}: no field {sorted(fields.keys() - self._name_set)}")
        if len(fields) != self._nflat:
            fields = {**self.defaults, **fields}
            for name, source in self._same_as:
                if name not in fields and source in fields:
                    fields[name] = fields[source]
            missing = self._name_set - fields.keys()
            if missing:
                raise TypeError(f"{self.kind}: field {sorted(missing)} missing")
        return fields

    def flat(self, rec: R) -> tuple[Any, ...]:
        """A record's flat values."""
        values: tuple[Any, ...] = self._flat(rec)
        return values

    def view_of(self, rec: R) -> Any:
        """A record's flat view."""
        return tuple.__new__(self._view, self.flat(rec))

    def encode(self, rec: R) -> bytes:
        return self._pack(self._flat(rec))

    # ---- reading

    def values(self, data: bytes) -> tuple[Any, ...]:
        """The flat values of a record's octets; :class:`DecodeError` for anything that is not one."""
        values: tuple[Any, ...] = self._values(data)
        return values

    def view(self, data: bytes) -> Any:
        """The flat view (:class:`RecordView` subclass) of a record's octets (also :attr:`read_view`)."""
        return self.read_view(data)

    def record(self, v: Sequence[Any]) -> R:
        """The record of flat values."""
        kwargs: dict[str, Any] = {}
        i = 0
        for f in self._fields:
            if f.metadata[_WIRE] == _ADDRESS:
                kwargs[f.name] = Address(v[i], v[i + 1], v[i + 2])
                i += 3
            else:
                kwargs[f.name] = v[i]
                i += 1
        return self.cls(**kwargs)

    def decode(self, data: bytes) -> R:
        return self.record(self._values(data))


class Record:
    """What every record kind has: its octets and reading them back (through its :class:`RecordCodec`)."""

    CODEC: ClassVar[RecordCodec[Any]]

    def to_bytes(self) -> bytes:
        """The binary form; :class:`EncodeError` for a record it cannot carry."""
        return self.CODEC.encode(self)

    @classmethod
    def from_bytes(cls: type[R], data: bytes) -> R:
        rec: R = cls.CODEC.decode(data)  # type: ignore[attr-defined]
        return rec


# --------------------------------------------------------------------------- the records


@attrs.frozen(slots=True)
class MtMessage(Record):
    """A partner's message on its way to an operator (stream MT, subject ``MT.<targets[0]>``).

    ``payload`` is the partner's short_message (or message_payload) exactly as received, with
    ``data_coding`` and ``esm_class`` as received; ``partner_dc0`` says what data_coding 0 meant for
    that partner ("gsm7", "latin1", "ascii"), so a connector can decode the text and re-encode and
    re-segment it for its own operator.  ``targets`` is the route's operators in the order still to
    try: a connector for ``targets[0]`` that fails over republishes with ``targets[1:]``.
    ``part``/``parts`` are set when the partner itself sent one part of a concatenated message.
    """

    message_id: str = string()  # our id, canonical (decimal string of the 64-bit id)
    partner: str = string()
    source: Address = address()  # noqa: RUF009 (a field declaration, not a default)
    dest: Address = address()  # noqa: RUF009 (a field declaration, not a default)
    targets: tuple[str, ...] = strings()
    payload: bytes = payload()
    data_coding: int = u8()
    esm_class: int = u8()
    protocol_id: int = u8()
    priority_flag: int = u8()
    service_type: str = string("")
    schedule_delivery_time: str = string("")
    validity_period: str = string("")
    registered_delivery: int = u8()
    partner_dc0: str = string("gsm7")
    tlvs: tuple[tuple[int, bytes], ...] = tlv_list()  # pass-through TLVs (tag, raw value)
    part: int = u16(1)
    parts: int = u16(1)
    attempt: int = u16(1)
    accepted_at: float = f64()  # unix time
    node: str = string("")
    display_id: str = string(same_as="message_id")
    """The id the partner was given for this message (its submit_sm_resp / submit_multi_resp): ``message_id``
    except for the destinations of a submit_multi after the first, which share the first one's id."""
    # billing (docs/dev/billing.md): ``charge_on`` 0 = not billed, else CHARGE_ON_SUBMIT / CHARGE_ON_DELIVERY;
    # amounts in micro-units for all parts; ``lease``: the credit lease the price is held against
    charge_on: int = u8()
    price: int = i64()
    currency: str = string("")
    cost: int = i64(-1)  # -1: the operator's cost plan has no row for the destination (or it has none)
    cost_currency: str = string("")
    lease: int = i64()


@attrs.frozen(slots=True)
class DlrMessage(Record):
    """A delivery receipt for a partner (stream DLR, subject ``DLR.<partner>``).

    ``state`` is the final state name (DELIVRD, UNDELIV, EXPIRED, REJECTD, …); ``error`` the
    3-digit error text of the receipt; dates are unix times.  ``source``/``dest`` are the original MT's
    addresses (the receipt goes from dest to source).
    """

    message_id: str = string()
    partner: str = string()
    state: str = string()
    source: Address = address(Address())  # noqa: RUF009 (a field declaration, not a default)
    dest: Address = address(Address())  # noqa: RUF009 (a field declaration, not a default)
    error: str = string("000")
    submit_date: float = f64()
    done_date: float = f64()
    operator: str = string("")
    operator_message_id: str = string("")
    network_error_code: str = string("")  # raw TLV value in hex, when the operator sent one
    text: str = string("")  # first characters of the original message, when known
    part: int = u16(1)
    parts: int = u16(1)
    display_id: str = string(same_as="message_id")
    """The id the partner was given (what its receipt shows): the MT's ``display_id``.  ``message_id`` stays
    our own id of the message (the record's JetStream msg_id and the message log use it)."""


@attrs.frozen(slots=True)
class MoMessage(Record):
    """A mobile-originated message for a partner (stream MO, subject ``MO.<partner>``)."""

    message_id: str = string()
    partner: str = string()
    source: Address = address()  # noqa: RUF009 (a field declaration, not a default)
    dest: Address = address()  # noqa: RUF009 (a field declaration, not a default)
    payload: bytes = payload()
    data_coding: int = u8()
    esm_class: int = u8()
    protocol_id: int = u8()
    tlvs: tuple[tuple[int, bytes], ...] = tlv_list()
    operator: str = string("")
    received_at: float = f64()


class MtFields(RecordView):
    """An MT record read flat (:data:`MT`'s names: ``message_id``, ``source_ton``, ...): what an operator
    connector reads per message; ``MT.record(view)`` gives the :class:`MtMessage`."""

    __slots__ = ()


class DlrFields(RecordView):
    """A DLR record read flat (:data:`DLR`'s names): what partner delivery reads per receipt."""

    __slots__ = ()


MT: RecordCodec[MtMessage] = RecordCodec(MtMessage, "M", MtFields)
DLR: RecordCodec[DlrMessage] = RecordCodec(DlrMessage, "D", DlrFields)
MO: RecordCodec[MoMessage] = RecordCodec(MoMessage, "O")

mt_record: Callable[..., bytes] = MT.write
"""An MT record's octets from keyword fields (accept, once per message: no record or Address objects)."""
dlr_record: Callable[..., bytes] = DLR.write
"""A DLR record's octets from keyword fields (the connector's and inbound's receipts)."""


mt_fields: Callable[[bytes], MtFields] = MT.read_view
"""An MT record's octets as :class:`MtFields`; :class:`DecodeError` for anything else."""
dlr_fields: Callable[[bytes], DlrFields] = DLR.read_view
"""A DLR record's octets as :class:`DlrFields`; :class:`DecodeError` for anything else."""


_BY_CODE: dict[int, RecordCodec[Any]] = {c.code: c for c in (MT, DLR, MO)}


def decode_record(data: bytes) -> MtMessage | DlrMessage | MoMessage:
    """Decode a record of any kind (dispatching on its kind octet)."""
    codec = _BY_CODE.get(data[2]) if len(data) > 2 and data[0] == MAGIC else None
    if codec is None:
        raise DecodeError("not a gateway record")
    rec: MtMessage | DlrMessage | MoMessage = codec.decode(data)
    return rec
