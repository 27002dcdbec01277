"""Delivery receipts: the de-facto receipt text and the receipt TLVs.

The text most SMSCs put in a receipt's ``short_message`` (appendix B of SMPP
v3.4, never normative, copied with variations by everyone)::

    id:IIIIIIIIII sub:SSS dlvrd:DDD submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DDDDDDD err:E text:...

Parsing policy (``parse_receipt``):

* The octets are read as text by the deliver_sm's ``data_coding`` first
  (:func:`receipt_text`): UCS-2 receipts exist.
* Lenient by design.  Keys in any case, ``submit date`` / ``submit_date`` /
  ``submitdate``, any amount of blank space, fields missing, in another order or
  unknown ones added (kept in ``Receipt.extras``), dates of 10 (YYMMDDhhmm), 12
  (YYMMDDhhmmss, else YYYYMMDDhhmm) or 14 (YYYYMMDDhhmmss) digits, stat in the
  7-letter form or spelt out, ``text:`` taking the rest of the message exactly
  as sent (colons, leading and trailing blanks and all).
* The receipt TLVs (``receipted_message_id``, ``message_state``,
  ``network_error_code``) win over the text when both are present; where they
  disagree the field name is listed in ``Receipt.conflicts``.  When the ids
  disagree the text's id is kept too (``Receipt.text_id``): some SMSCs write the
  TLV in the submit_sm_resp's form (hex) and the text in another (decimal), and
  the caller tries both (``gateway/inbound.py``).
* Anything that could not be read is listed, in words, in ``Receipt.problems``;
  the rest of the receipt is still returned.  A receipt is never dropped
  because one field was odd.
* Only a receipt with **no message id at all** (neither the TLV nor an ``id:``
  field) raises :class:`ReceiptParseError`: without an id it cannot be matched
  to anything.  A receipt without any readable state gets
  ``MessageState.UNKNOWN`` and a problem entry.
* Nothing else ever escapes: any input bytes give a ``Receipt`` or a
  ``ReceiptParseError``.

The tokenising of the text (finding the keys and their values) runs in the C
core (``native/csmpp_receipt.c``); a plain-Python reference of the same grammar
lives in the tests and the two are compared with hypothesis.

Fast path: the text most SMSCs (and this gateway) write, exactly in the form
above (one blank between fields, lower-case keys, 10/12/14-digit dates, ``text:``
optional), with a known stat, valid dates and TLVs whose state agrees with it, is read
with one regular expression (:func:`common_receipt_fields`) instead of the scan;
``parse_receipt`` returns the same ``Receipt`` either way (compared with
hypothesis in the tests) and takes the general path for anything else.

One module: the fast path, the general path and the formatter are one grammar, and the tests compare the
paths with each other; apart, a change to one would too easily miss the others.
"""

from __future__ import annotations

import datetime as _dt
import re
from collections.abc import Mapping
from typing import Final, TypeAlias, cast

import attrs

from catalyst_smpp.encoding.codecs import decode
from catalyst_smpp.encoding.datacoding import Alphabet, Encoding, parse_data_coding
from catalyst_smpp.encoding.msgid import IdRule, IdSide, id_key
from catalyst_smpp.native import NativeError, ffi, lib
from catalyst_smpp.protocol.constants import MessageState

__all__ = [
    "TAG_MESSAGE_STATE",
    "TAG_NETWORK_ERROR_CODE",
    "TAG_RECEIPTED_MESSAGE_ID",
    "Receipt",
    "ReceiptParseError",
    "TlvValues",
    "common_receipt_fields",
    "format_receipt",
    "parse_receipt",
    "receipt_in_text",
    "receipt_text",
    "receipt_tlvs",
    "scan_receipt_text",
    "stat_for_state",
    "state_for_stat",
]

TAG_RECEIPTED_MESSAGE_ID: Final = 0x001E
TAG_MESSAGE_STATE: Final = 0x0427
TAG_NETWORK_ERROR_CODE: Final = 0x0423

# Field kinds reported by the scanner (same numbers as CSMPP_RF_* in csmpp_receipt.h).
KIND_OTHER: Final = 0
KIND_ID: Final = 1
KIND_SUB: Final = 2
KIND_DLVRD: Final = 3
KIND_SUBMIT_DATE: Final = 4
KIND_DONE_DATE: Final = 5
KIND_STAT: Final = 6
KIND_ERR: Final = 7
KIND_TEXT: Final = 8

# TLVs by name ("receipted_message_id") or tag (0x001E), values already typed
TlvValues: TypeAlias = Mapping[str, object] | Mapping[int, object] | Mapping[str | int, object]

_KIND_NAMES: Final = {
    KIND_ID: "id",
    KIND_SUB: "sub",
    KIND_DLVRD: "dlvrd",
    KIND_SUBMIT_DATE: "submit date",
    KIND_DONE_DATE: "done date",
    KIND_STAT: "stat",
    KIND_ERR: "err",
    KIND_TEXT: "text",
}


class ReceiptParseError(ValueError):
    """The deliver_sm carries no message id, so it cannot be used as a receipt."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


# --- stat <-> MessageState ----------------------------------------------------------

_STAT_FOR_STATE: Final[dict[MessageState, str]] = {
    MessageState.ENROUTE: "ENROUTE",
    MessageState.DELIVERED: "DELIVRD",
    MessageState.EXPIRED: "EXPIRED",
    MessageState.DELETED: "DELETED",
    MessageState.UNDELIVERABLE: "UNDELIV",
    MessageState.ACCEPTED: "ACCEPTD",
    MessageState.UNKNOWN: "UNKNOWN",
    MessageState.REJECTED: "REJECTD",
}

# Spellings seen in the field, letters only, upper case.
_STATE_FOR_WORD: Final[dict[str, MessageState]] = {
    "ENROUTE": MessageState.ENROUTE,
    "DELIVRD": MessageState.DELIVERED,
    "DELIVERED": MessageState.DELIVERED,
    "DELIVRED": MessageState.DELIVERED,
    "EXPIRED": MessageState.EXPIRED,
    "EXPIRD": MessageState.EXPIRED,
    "DELETED": MessageState.DELETED,
    "DELETD": MessageState.DELETED,
    "UNDELIV": MessageState.UNDELIVERABLE,
    "UNDELIVERABLE": MessageState.UNDELIVERABLE,
    "UNDELIVERED": MessageState.UNDELIVERABLE,
    "UNDELIVRD": MessageState.UNDELIVERABLE,
    "FAILED": MessageState.UNDELIVERABLE,  # a common vendor word for it
    "ACCEPTD": MessageState.ACCEPTED,
    "ACCEPTED": MessageState.ACCEPTED,
    "UNKNOWN": MessageState.UNKNOWN,
    "REJECTD": MessageState.REJECTED,
    "REJECTED": MessageState.REJECTED,
}


def stat_for_state(state: MessageState) -> str:
    """The 7-letter receipt ``stat`` of a message state (``DELIVERED`` -> ``"DELIVRD"``)."""
    return _STAT_FOR_STATE[state]


def state_for_stat(stat: str) -> MessageState | None:
    """The message state a receipt ``stat`` names, or None when it names none.

    Accepts the 7-letter forms, the spelt-out words, any case, ``EN_ROUTE``, a
    number 1-8 (the ``message_state`` value) and an unambiguous truncation of at
    least five letters (``UNDEL``).
    """
    found = _STATE_FOR_WORD.get(stat)
    if found is not None:
        return found
    word = stat.strip()
    if word.isdigit():
        try:
            return MessageState(int(word))
        except ValueError:
            return None
    letters = "".join(c for c in word.upper() if "A" <= c <= "Z")
    found = _STATE_FOR_WORD.get(letters)
    if found is not None or len(letters) < 5:
        return found
    states = {s for w, s in _STATE_FOR_WORD.items() if w.startswith(letters)}
    return states.pop() if len(states) == 1 else None


# --- the receipt ----------------------------------------------------------------------


@attrs.frozen
class Receipt:
    """One delivery receipt, from the TLVs and/or the text.

    ``stat`` is the stat word as the SMSC wrote it (or the 7-letter form of the
    TLV state when there was no text); ``state`` is what it means.  Dates are
    tz-naive: receipts carry no zone.  ``network_error`` is ``(type, code)`` from
    the network_error_code TLV.  ``extras`` keeps unknown ``key:value`` fields in
    order; ``conflicts`` names the fields where TLV and text disagreed (the TLV
    value is the one kept); ``problems`` says in words what could not be read.
    ``text_id`` is the text's ``id:`` when it differs from the TLV id kept in
    ``message_id`` (None otherwise): the receipt may be found under either.
    """

    message_id: str
    state: MessageState
    stat: str = ""
    sub: int | None = None
    dlvrd: int | None = None
    submit_date: _dt.datetime | None = None
    done_date: _dt.datetime | None = None
    err: str | None = None
    text: str | None = None
    network_error: tuple[int, int] | None = None
    extras: tuple[tuple[str, str], ...] = ()
    conflicts: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    text_id: str | None = None

    @property
    def is_final(self) -> bool:
        """False only for ENROUTE (an intermediate notification)."""
        return self.state is not MessageState.ENROUTE

    @property
    def err_code(self) -> int | None:
        """``err`` as a decimal number, when it is one."""
        if self.err is not None and self.err.isdigit():
            return int(self.err)
        return None


# --- scanning ---------------------------------------------------------------------

_MAX_FIELDS: Final = 32
_FIELDS_CTYPE: Final = ffi.typeof(f"int32_t[{5 * _MAX_FIELDS}]")
_unpack: Final = ffi.unpack


def _new_fields() -> object:
    return ffi.new(_FIELDS_CTYPE)


def scan_receipt_text(data: bytes) -> list[tuple[int, int, int, int, int]]:
    """Find the ``key:value`` fields of a receipt text (in C).

    Returns ``(kind, key_start, key_end, value_start, value_end)`` byte offsets
    per field, in order, at most 32; ``kind`` is one of the ``KIND_*`` numbers.
    Values are trimmed of separators; ``text:`` takes the rest of the input.
    """
    flat = _scan_flat(data)
    return [(flat[i], flat[i + 1], flat[i + 2], flat[i + 3], flat[i + 4]) for i in range(0, len(flat), 5)]


def _scan_flat(data: bytes) -> list[int]:
    out = _new_fields()
    n = lib.csmpp_receipt_scan(data, len(data), out, _MAX_FIELDS)
    if n < 0:
        raise NativeError(n, "receipt_scan")
    return _unpack(out, 5 * n) if n else []


_DATES: dict[str, _dt.datetime | None] = {}


def _parse_date(value: str) -> _dt.datetime | None:
    """10 (YYMMDDhhmm), 12 (YYMMDDhhmmss, else YYYYMMDDhhmm) or 14 (YYYYMMDDhhmmss) digits -> datetime;
    None when not a date.

    Cached (bounded): the receipts of a busy minute all carry the same dates."""
    found = _DATES.get(value, _MISSING)
    if found is not _MISSING:
        return found  # type: ignore[return-value]
    d = _parse_date_uncached(value)
    if len(_DATES) >= 4096:
        _DATES.clear()
    _DATES[value] = d
    return d


_MISSING: Final = object()


def _parse_date_uncached(value: str) -> _dt.datetime | None:
    """12 digits are YYMMDDhhmmss (appendix B with seconds) when they read as that, else YYYYMMDDhhmm:
    for the years 2013 and later the two cannot both read (the month would be 20 or more), so only a
    YYYYMMDDhhmm date in 2000-2012 could be misread."""
    n = len(value)
    if n not in (10, 12, 14) or not value.isdigit() or not value.isascii():
        return None
    if n == 10:
        return _date_of(int(value) * 100, century=True)
    if n == 14:
        return _date_of(int(value), century=False)
    return _date_of(int(value), century=True) or _date_of(int(value) * 100, century=False)


def _date_of(number: int, *, century: bool) -> _dt.datetime | None:
    """``number`` as [YY]YYMMDDhhmmss; ``century``: the year has two digits (20YY)."""
    number, second = divmod(number, 100)
    number, minute = divmod(number, 100)
    number, hour = divmod(number, 100)
    number, day = divmod(number, 100)
    year, month = divmod(number, 100)
    try:
        return _dt.datetime(2000 + year if century else year, month, day, hour, minute, second)
    except ValueError:
        return None


def _count(value: str) -> int | None:
    return int(value) if value.isdigit() and value.isascii() else None


def _tlv(tlvs: TlvValues, name: str, tag: int) -> object:
    by_key = cast(Mapping[object, object], tlvs)
    value = by_key.get(name)
    if value is None:
        value = by_key.get(tag)
    return value


def _tlv_id(value: object) -> str | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        value = bytes(value).decode("latin-1")
    if isinstance(value, str):
        value = value.strip(" \t\r\n\x00")
        return value or None
    return None


_STATE_FOR_NUMBER: Final[dict[int, MessageState]] = {int(s): s for s in MessageState}


def _tlv_state(value: object) -> MessageState | None:
    if isinstance(value, (bytes, bytearray)) and len(value) == 1:
        value = value[0]
    if isinstance(value, int):
        return _STATE_FOR_NUMBER.get(value)  # = MessageState(value), None where that raises
    return None


def _tlv_network_error(value: object) -> tuple[int, int] | None:
    if isinstance(value, (bytes, bytearray, memoryview)):
        raw = bytes(value)
        if len(raw) == 3:
            return raw[0], (raw[1] << 8) | raw[2]
        return None
    if isinstance(value, tuple) and len(value) == 2 and all(isinstance(v, int) for v in value):
        kind, code = value
        if 0 <= kind <= 0xFF and 0 <= code <= 0xFFFF:
            return kind, code
    return None


_ID_STRIP: Final = " \t\r\n\x00"


def _receipt_tlvs(
    tlvs: TlvValues, problems: list[str]
) -> tuple[str | None, MessageState | None, tuple[int, int] | None]:
    """The receipt TLVs' id, state and network error; None where absent or unusable (then in ``problems``)."""
    raw_id = _tlv(tlvs, "receipted_message_id", TAG_RECEIPTED_MESSAGE_ID)
    raw_state = _tlv(tlvs, "message_state", TAG_MESSAGE_STATE)
    raw_nec = _tlv(tlvs, "network_error_code", TAG_NETWORK_ERROR_CODE)
    tlv_id = _tlv_id(raw_id) if raw_id is not None else None
    if raw_id is not None and tlv_id is None:
        problems.append(f"unusable receipted_message_id TLV {raw_id!r}")
    tlv_state = _tlv_state(raw_state) if raw_state is not None else None
    if raw_state is not None and tlv_state is None:
        problems.append(f"unusable message_state TLV {raw_state!r}")
    tlv_nec = _tlv_network_error(raw_nec) if raw_nec is not None else None
    if raw_nec is not None and tlv_nec is None:
        problems.append(f"unusable network_error_code TLV {raw_nec!r}")
    return tlv_id, tlv_state, tlv_nec


# --- the common text form (fast path) ---------------------------------------------------

# A value the scanner would read as one run: no separator (blank, comma, semicolon, NUL) in it, so no key
# can start inside it either (a key needs a separator before it).
_RUN: Final = r"[^ \t\r\n,;\x00]"
_DATE_DIGITS: Final = r"([0-9]{10}(?:[0-9]{2}){0,2})"
_COMMON: Final = re.compile(
    rf"id:({_RUN}+) sub:([0-9]+) dlvrd:([0-9]+) submit date:{_DATE_DIGITS} done date:{_DATE_DIGITS}"
    rf" stat:({_RUN}+) err:({_RUN}*)(?: text:(.*))?",
    re.DOTALL,
)
_common_match: Final = _COMMON.fullmatch

CommonFields: TypeAlias = tuple[str, str, str, str, str, str, str, str | None]


def common_receipt_fields(short_message: bytes) -> CommonFields | None:
    """The fields of a receipt text in exactly the common form, or None for any other text.

    ``id:I sub:S dlvrd:D submit date:YYMMDDhhmm[ss] done date:YYMMDDhhmm[ss] stat:W err:E[ text:T]``
    with single blanks, lower-case keys, no separator inside a value (I, W, E) and digits for S, D
    and the dates (10, 12 or 14).  Returns ``(id, sub, dlvrd, submit_date, done_date, stat, err,
    text)`` as strings -- the values :func:`parse_receipt`'s scan finds in such a text (``text`` as
    it appears, before trimming; None without ``text:``) -- without running the scan.
    """
    m = _common_match(bytes(short_message).rstrip(b"\x00").decode("latin-1"))
    return None if m is None else m.groups()  # type: ignore[return-value]


def _parse_common(text: str, tlvs: TlvValues | None, id_rule: IdRule) -> Receipt | None:
    """``parse_receipt`` of a text in the common form whose stat, dates and TLVs read without a problem
    or conflict; None for anything else (the general path then reads it and says what was wrong)."""
    m = _common_match(text)
    if m is None:
        return None
    text_id, sub, dlvrd, submit, done, stat, err, rest = m.groups()
    state = state_for_stat(stat)
    if state is None:
        return None
    submit_date = _parse_date(submit)
    done_date = _parse_date(done)
    if submit_date is None or done_date is None:
        return None
    message_id = text_id
    tlv_nec = None
    other_id = None
    conflicts: tuple[str, ...] = ()
    problems: tuple[str, ...] = ()
    if tlvs:
        tlv_problems: list[str] = []
        tlv_id, tlv_state, tlv_nec = _receipt_tlvs(tlvs, tlv_problems)
        if tlv_problems or (tlv_state is not None and tlv_state is not state):
            return None
        if tlv_id is not None:
            if tlv_id != text_id and _ids_differ(text_id, tlv_id, id_rule):
                other_id = text_id
                conflicts = ("message_id",)
                problems = (_id_problem(text_id, tlv_id),)
            message_id = tlv_id
    return Receipt(
        message_id, state, stat, int(sub), int(dlvrd), submit_date, done_date, err, rest, tlv_nec,
        (), conflicts, problems, other_id,
    )  # fmt: skip


def _ids_differ(text_id: str, tlv_id: str, id_rule: IdRule) -> bool:
    return id_key(text_id, id_rule, IdSide.RECEIPT) != id_key(tlv_id, id_rule, IdSide.RECEIPT)


def _id_problem(text_id: str, tlv_id: str) -> str:
    return f"text id {text_id!r} differs from receipted_message_id {tlv_id!r}"


def receipt_text(short_message: bytes, data_coding: int = 0) -> str:
    """The text of a receipt's octets, read by the deliver_sm's ``data_coding``; NULs at the end dropped.

    UCS-2 (0x08, and the UCS-2 codings of the general and message-waiting groups) is decoded as UTF-16BE
    (a leading byte-order mark dropped); Cyrillic (0x06) and Latin/Hebrew (0x07) by their ISO 8859
    tables.  Everything else -- 0x00 whatever the SMSC's default alphabet, IA5, Latin-1, 8-bit, the GSM
    7-bit classes -- is read octet for octet as Latin-1: SMSCs write receipts in ASCII there, and reading
    them as GSM 03.38 would turn the ``_`` of ``submit_date`` into ``§``.
    """
    return _octets_and_text(short_message, data_coding)[1]


_ISO_8859: Final = {Alphabet.CYRILLIC: "iso8859_5", Alphabet.LATIN_HEBREW: "iso8859_8"}


def _octets_and_text(short_message: bytes, data_coding: int) -> tuple[bytes, str]:
    """(octets for the C scan, the text): one octet per character, the text's character where Latin-1
    has it and ``?`` where it has not, so the scan's offsets are offsets into the text."""
    data = bytes(short_message)
    if 0 < data_coding <= 0xFF:  # (0, nearly every receipt, skips the look-up)
        alphabet = parse_data_coding(data_coding).alphabet
        text = None
        if alphabet is Alphabet.UCS2:
            text = decode(data, Encoding.UCS2).removeprefix("\ufeff").rstrip("\x00")
        elif alphabet in _ISO_8859:
            text = data.decode(_ISO_8859[alphabet], "replace").rstrip("\x00")
        if text is not None:
            return text.encode("latin-1", "replace"), text
    data = data.rstrip(b"\x00")
    return data, data.decode("latin-1")


def parse_receipt(
    short_message: bytes,
    tlvs: TlvValues | None = None,
    *,
    id_rule: IdRule = IdRule.AS_IS,
    data_coding: int = 0,
) -> Receipt:
    """Read a receipt from a deliver_sm/data_sm ``short_message`` and its TLVs (see the module notes).

    ``tlvs`` maps TLV names (``"receipted_message_id"``) or tags (``0x001E``) to
    already-typed values: ``str`` id, ``int`` state, 3-octet ``bytes``
    network_error_code (type octet + 2-octet code).  ``id_rule`` decides when
    the TLV id and the text id count as the same (default: identical strings).
    ``data_coding`` is the deliver_sm's (:func:`receipt_text`).
    Raises :class:`ReceiptParseError` only when no message id can be found.
    """
    data, text = _octets_and_text(short_message, data_coding)
    receipt = _parse_common(text, tlvs, id_rule)
    if receipt is not None:
        return receipt
    return _parse_scanned(data, text, tlvs, id_rule)


def _parse_scanned(data: bytes, text: str, tlvs: TlvValues | None, id_rule: IdRule) -> Receipt:
    """The general path of :func:`parse_receipt`: the C scan, then every field checked."""
    problems: list[str] = []
    fields: dict[int, str] = {}
    extras: list[tuple[str, str]] = []

    flat = _scan_flat(data)
    for i in range(0, len(flat), 5):
        kind = flat[i]
        value = text[flat[i + 3] : flat[i + 4]]
        if kind == KIND_OTHER:
            extras.append((text[flat[i + 1] : flat[i + 2]], value))
        elif kind in fields:
            problems.append(f"repeated field {_KIND_NAMES[kind]!r} ignored")
        else:
            fields[kind] = value

    # --- the TLVs ---
    tlv_id = tlv_state = tlv_nec = None
    if tlvs:
        tlv_id, tlv_state, tlv_nec = _receipt_tlvs(tlvs, problems)

    conflicts: list[str] = []

    # --- message id ---
    text_id = fields.get(KIND_ID)
    if text_id is not None:
        text_id = text_id.strip(_ID_STRIP)
        if not text_id:
            problems.append("empty id field")
            text_id = None
    other_id = None
    if tlv_id is not None:
        message_id = tlv_id
        if text_id is not None and _ids_differ(text_id, tlv_id, id_rule):
            other_id = text_id
            conflicts.append("message_id")
            problems.append(_id_problem(text_id, tlv_id))
    elif text_id is not None:
        message_id = text_id
    else:
        reason = "no message id: neither a receipted_message_id TLV nor an 'id:' field"
        if not fields and not extras:
            reason += " (the text has no key:value fields)"
        raise ReceiptParseError(reason)

    # --- state ---
    stat = fields.get(KIND_STAT)
    text_state = None
    if stat is not None:
        text_state = state_for_stat(stat)
        if text_state is None:
            problems.append(f"unrecognised stat {stat!r}")
    if tlv_state is not None:
        state = tlv_state
        if text_state is not None and text_state is not tlv_state:
            conflicts.append("state")
            problems.append(f"stat {stat!r} differs from message_state {tlv_state.name}")
    elif text_state is not None:
        state = text_state
    else:
        state = MessageState.UNKNOWN
        if stat is None:
            problems.append("no state: neither a message_state TLV nor a 'stat:' field")
    if stat is None:
        stat = _STAT_FOR_STATE[tlv_state] if tlv_state is not None else ""

    # --- the rest ---
    sub = dlvrd = None
    dates: list[_dt.datetime | None] = [None, None]
    for kind, label in ((KIND_SUB, "sub"), (KIND_DLVRD, "dlvrd")):
        raw = fields.get(kind)
        if raw is None:
            continue
        number = _count(raw)
        if number is None:
            problems.append(f"{label} {raw!r} is not a number")
        elif kind == KIND_SUB:
            sub = number
        else:
            dlvrd = number
    for slot, kind in enumerate((KIND_SUBMIT_DATE, KIND_DONE_DATE)):
        raw = fields.get(kind)
        if raw is None:
            continue
        dates[slot] = _parse_date(raw)
        if dates[slot] is None:
            problems.append(f"{_KIND_NAMES[kind]} {raw!r} is not a YYMMDDhhmm[ss] date")

    return Receipt(
        message_id=message_id,
        state=state,
        stat=stat,
        sub=sub,
        dlvrd=dlvrd,
        submit_date=dates[0],
        done_date=dates[1],
        err=fields.get(KIND_ERR),
        text=fields.get(KIND_TEXT),
        network_error=tlv_nec,
        extras=tuple(extras),
        conflicts=tuple(conflicts),
        problems=tuple(problems),
        text_id=other_id,
    )


_RECEIPT_ONLY_KINDS: Final = frozenset({KIND_SUB, KIND_DLVRD, KIND_SUBMIT_DATE, KIND_DONE_DATE})


def receipt_in_text(
    short_message: bytes, *, data_coding: int = 0, id_rule: IdRule = IdRule.AS_IS
) -> Receipt | None:
    """The receipt in a deliver_sm that does not say it is one (esm_class 0, no receipt TLVs), or None.

    Some SMSCs send receipts that way.  The text counts as a receipt when it has a non-empty ``id:``, a
    ``stat:`` naming a message state and at least one of ``sub:``, ``dlvrd:``, ``submit date:``,
    ``done date:`` -- fields a person's message hardly has all of.  Only for operators set to expect it:
    an MO that happens to read like that would be taken for a receipt.
    """
    data, text = _octets_and_text(short_message, data_coding)
    flat = _scan_flat(data)
    fields: dict[int, str] = {}
    for i in range(0, len(flat), 5):
        fields.setdefault(flat[i], text[flat[i + 3] : flat[i + 4]])
    if (
        not fields.get(KIND_ID, "").strip(_ID_STRIP)
        or state_for_stat(fields.get(KIND_STAT, "")) is None
        or _RECEIPT_ONLY_KINDS.isdisjoint(fields)
    ):
        return None
    return _parse_common(text, None, id_rule) or _parse_scanned(data, text, None, id_rule)


# --- formatting ---------------------------------------------------------------------


def _format_date(value: _dt.datetime | None, digits: int) -> str:
    if value is None:
        return "0" * digits
    if not 2000 <= value.year <= 2099:
        raise ValueError(f"receipt dates carry a two-digit year; {value.year} is outside 2000-2099")
    out = value.strftime("%y%m%d%H%M")
    return out + value.strftime("%S") if digits == 12 else out


def _three(value: int) -> str:
    return f"{min(max(value, 0), 999):03d}"


def format_receipt(receipt: Receipt, date_digits: int = 10, *, text_len: int = 20) -> bytes:
    """The common receipt text for a partner.

    ``id:<id> sub:001 dlvrd:001 submit date:YYMMDDhhmm done date:YYMMDDhhmm stat:DELIVRD err:000 text:<20>``

    ``date_digits`` is 10 (YYMMDDhhmm) or 12 (with seconds).  ``sub``/``dlvrd``
    are written with three digits (clamped to 0-999); when unknown, sub is 1
    and dlvrd is 1 for DELIVERED else 0.  ``stat`` is always the 7-letter form
    of ``receipt.state``.  ``err`` is written as given (zero-padded to three
    digits when numeric, ``000`` when absent).  A missing date is written as
    zeros.  ``text`` is cut to ``text_len`` characters.  Characters outside
    Latin-1 become ``?``.
    """
    if date_digits not in (10, 12):
        raise ValueError("date_digits must be 10 or 12")
    sub = receipt.sub if receipt.sub is not None else 1
    dlvrd = receipt.dlvrd
    if dlvrd is None:
        dlvrd = 1 if receipt.state is MessageState.DELIVERED else 0
    err = receipt.err if receipt.err else "000"
    if err.isdigit() and len(err) < 3:
        err = err.zfill(3)
    text = (receipt.text or "")[: max(text_len, 0)]
    line = (
        f"id:{receipt.message_id} sub:{_three(sub)} dlvrd:{_three(dlvrd)}"
        f" submit date:{_format_date(receipt.submit_date, date_digits)}"
        f" done date:{_format_date(receipt.done_date, date_digits)}"
        f" stat:{_STAT_FOR_STATE[receipt.state]} err:{err} text:{text}"
    )
    return line.encode("latin-1", errors="replace")


def receipt_tlvs(receipt: Receipt) -> dict[str, object]:
    """The receipt TLVs of a receipt, typed as ``parse_receipt`` takes them."""
    out: dict[str, object] = {
        "receipted_message_id": receipt.message_id,
        "message_state": int(receipt.state),
    }
    if receipt.network_error is not None:
        kind, code = receipt.network_error
        out["network_error_code"] = bytes((kind, code >> 8, code & 0xFF))
    return out
