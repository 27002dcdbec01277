"""The table of mandatory-parameter specs that drives PDU decoding, encoding and validation.

Every field knows its wire kind, its size limit and the ``command_status`` a bad
value earns (the idea Jasmin got right).  ``LAYOUTS`` lists each command's body
fields in wire order (SMPP v3.4 chapter 4); ``codec`` walks it, and the PDU
classes in ``pdu`` declare the same fields in the same order (a test checks).

Two levels of checking use the same specs.  Decoding (``codec``) refuses what
cannot be read: sizes, NULs, a time that is neither empty nor 16 characters, an
esm_class type the direction does not define.  :func:`request_problem` refuses
values that read fine but mean nothing (``FieldSpec.problem``): priority_flag
above 3, replace_if_present_flag above 1, a schedule or validity time that is not
a real time (:func:`parse_time`).  It is what a server runs on a request it
accepts -- the gateway's partner side and ``smsc-sim`` both call it -- and not
part of decoding, so a deliver_sm or response from a lax peer is never lost to it.
"""

from __future__ import annotations

import datetime as dt
import enum
import functools
from collections.abc import Callable
from typing import Any, Final, NamedTuple

from catalyst_smpp.protocol.constants import ESM_TYPE_MASK, CommandId, CommandStatus

__all__ = [
    "LAYOUTS",
    "TLV_RULES",
    "FieldKind",
    "FieldSpec",
    "RelativeTime",
    "TimeFormatError",
    "TlvRule",
    "parse_time",
    "request_problem",
    "time_problem",
]

S = CommandStatus


class FieldKind(enum.Enum):
    INT1 = 1  # 1-octet unsigned Integer
    INT4 = 4  # 4-octet unsigned Integer
    COCTET = 10  # variable C-octet string, at most ``max_len`` octets including the NUL
    TIME = 11  # C-octet string, either empty or exactly 16 characters (absolute/relative time)
    SHORT_MESSAGE = 12  # sm_length (1 octet) + that many octets; the field holds only the octets
    DEST_ADDRESS = 13  # submit_multi: number_of_dests + the dest_address list
    UNSUCCESS_SME = 14  # submit_multi_resp: no_unsuccess + the unsuccess_sme list


class FieldSpec(NamedTuple):
    name: str
    kind: FieldKind
    max_len: int = 0  # C-octet strings: maximum octets including the NUL
    status: int = S.ESME_RSYSERR  # what a bad value earns
    check: Callable[[int], bool] | None = None  # extra test of an integer value (True = good)
    # what is wrong with a decoded value (None = nothing); run by request_problem, not by decode
    problem: Callable[[Any], str | None] | None = None


INT1: Final = FieldKind.INT1
INT4: Final = FieldKind.INT4
COCTET: Final = FieldKind.COCTET
TIME: Final = FieldKind.TIME


def _i1(name: str, status: int = S.ESME_RSYSERR, check: Callable[[int], bool] | None = None) -> FieldSpec:
    return FieldSpec(name, INT1, 1, status, check)


def _c(name: str, max_len: int, status: int) -> FieldSpec:
    return FieldSpec(name, COCTET, max_len, status)


# esm_class: the messaging-mode bits (1-0) and the GSM bits (7-6) take any value (partners
# such as Kannel send 0x03 / 0x43); the message-type bits (5-2) must be a type the spec
# defines for the direction of the command (v3.4 section 5.2.12).
_ESM_TYPES_SUBMIT: Final = frozenset({0x00, 0x08, 0x10})  # default, delivery ack, user ack
_ESM_TYPES_DELIVER: Final = frozenset({0x00, 0x04, 0x08, 0x10, 0x18, 0x20})  # + receipt, abort, intermediate


def _esm_submit(v: int) -> bool:
    return (v & ESM_TYPE_MASK) in _ESM_TYPES_SUBMIT


def _esm_deliver(v: int) -> bool:
    return (v & ESM_TYPE_MASK) in _ESM_TYPES_DELIVER


def _at_most(limit: int) -> Callable[[Any], str | None]:
    def problem(v: Any) -> str | None:
        return None if v <= limit else f"above {limit}"

    return problem


# --- times (SMPP v3.4 section 7.1.1) ---------------------------------------------------


class TimeFormatError(ValueError):
    """A schedule/validity time that is 16 characters but not a time; the message names the component."""


class RelativeTime(NamedTuple):
    """A relative time ("…R"): a period from the SMSC's current time, counted in each unit."""

    years: int
    months: int
    days: int
    hours: int
    minutes: int
    seconds: int


# (name, first index, last allowed value) of the 2-digit components YY MM DD hh mm ss
_ABSOLUTE_PARTS: Final = (
    ("year", 0, 0, 99),
    ("month", 2, 1, 12),
    ("day", 4, 1, 31),
    ("hour", 6, 0, 23),
    ("minute", 8, 0, 59),
    ("second", 10, 0, 59),
)
# relative: every component is a count of units, any two digits (a period, not a calendar position)
_RELATIVE_PARTS: Final = tuple((name, i, 0, 99) for name, i, _low, _high in _ABSOLUTE_PARTS)
_MAX_QUARTER_HOURS: Final = 48


def parse_time(value: str) -> dt.datetime | RelativeTime | None:
    """An SMPP v3.4 time field: None when empty, the aware datetime of an absolute time, or a
    :class:`RelativeTime`; :class:`TimeFormatError` when it is not a time.

    The format is "YYMMDDhhmmsstnnp" (section 7.1.1):

    * absolute, ``p`` = '+' or '-': YY 00-99 (read as 2000-2099), MM 01-12, DD 01-31 and a day the
      month has (30 February is refused; leap years by the 2000-2099 reading), hh 00-23, mm 00-59,
      ss 00-59, ``t`` tenths of a second 0-9, ``nn`` the local time's offset from UTC in quarter hours
      00-48 ('+' ahead of UTC, '-' behind).
    * relative, ``p`` = 'R': "YYMMDDhhmmss000R", a period of YY years, MM months, DD days, hh hours,
      mm minutes and ss seconds from now (the spec's example "020610233429000R" is 2 years, 6 months,
      10 days, 23:34:29).  Each component counts units, so any two digits are a period: the spec sets
      no upper bound for a period, and partners do send "000000480000000R" for 48 hours, so refusing
      hh > 23 would break working integrations for no gain (the SMSC adds the units up).  ``tnn`` has
      no meaning for a period and the format fixes it at "000".  A period of all zeros is "now".
    """
    if not value:
        return None
    if len(value) != 16:
        raise TimeFormatError(f"{len(value)} characters, not 16")
    p = value[15]
    if p not in "+-R":
        raise TimeFormatError(f"last character {p!r} is not '+', '-' or 'R'")
    if not (value[:15].isdigit() and value[:15].isascii()):
        raise TimeFormatError("the first 15 characters are not all digits")
    relative = p == "R"
    n = [int(value[i : i + 2]) for _name, i, _lo, _hi in _ABSOLUTE_PARTS]
    for (name, _i, low, high), v in zip(_RELATIVE_PARTS if relative else _ABSOLUTE_PARTS, n, strict=True):
        if not low <= v <= high:
            raise TimeFormatError(f"{name} {v:02d} outside {low:02d}-{high:02d}")
    if relative:
        if value[12:15] != "000":
            raise TimeFormatError(f"a relative time ends in 000R, not {value[12:]}")
        return RelativeTime(*n)
    quarters = int(value[13:15])
    if quarters > _MAX_QUARTER_HOURS:
        raise TimeFormatError(f"UTC offset of {quarters} quarter hours above {_MAX_QUARTER_HOURS}")
    offset = dt.timedelta(minutes=15 * quarters)
    try:
        return dt.datetime(
            2000 + n[0],
            n[1],
            n[2],
            n[3],
            n[4],
            n[5],
            int(value[12]) * 100_000,
            dt.timezone(offset if p == "+" else -offset),
        )
    except ValueError:  # the only one left: a day the month does not have
        raise TimeFormatError(f"day {n[2]:02d} not in month {n[1]:02d} of 20{n[0]:02d}") from None


@functools.lru_cache(maxsize=1024)
def time_problem(value: str) -> str | None:
    """What is wrong with a time field (None: empty or a real time); see :func:`parse_time`.

    Remembered per value: a partner usually sends the same relative validity on every message
    (request_problem of a submit_sm carrying one: ~0.4 us with the answer remembered, ~3 us parsing)."""
    if not value:
        return None
    try:
        parse_time(value)
    except TimeFormatError as e:
        return str(e)
    return None


# --- the fields, once each -------------------------------------------------------
system_id = _c("system_id", 16, S.ESME_RINVSYSID)
password = _c("password", 9, S.ESME_RINVPASWD)
system_type = _c("system_type", 13, S.ESME_RINVSYSTYP)
interface_version = _i1("interface_version")
addr_ton = _i1("addr_ton", S.ESME_RINVSRCTON)
addr_npi = _i1("addr_npi", S.ESME_RINVSRCNPI)
address_range = _c("address_range", 41, S.ESME_RINVSRCADR)
service_type = _c("service_type", 6, S.ESME_RINVSERTYP)
source_addr_ton = _i1("source_addr_ton", S.ESME_RINVSRCTON)
source_addr_npi = _i1("source_addr_npi", S.ESME_RINVSRCNPI)
source_addr = _c("source_addr", 21, S.ESME_RINVSRCADR)
source_addr_65 = _c("source_addr", 65, S.ESME_RINVSRCADR)  # data_sm, alert_notification
dest_addr_ton = _i1("dest_addr_ton", S.ESME_RINVDSTTON)
dest_addr_npi = _i1("dest_addr_npi", S.ESME_RINVDSTNPI)
destination_addr = _c("destination_addr", 21, S.ESME_RINVDSTADR)
destination_addr_65 = _c("destination_addr", 65, S.ESME_RINVDSTADR)  # data_sm
esme_addr_ton = _i1("esme_addr_ton", S.ESME_RINVDSTTON)
esme_addr_npi = _i1("esme_addr_npi", S.ESME_RINVDSTNPI)
esme_addr = _c("esme_addr", 65, S.ESME_RINVDSTADR)
esm_class_submit = _i1("esm_class", S.ESME_RINVESMCLASS, _esm_submit)
esm_class_deliver = _i1("esm_class", S.ESME_RINVESMCLASS, _esm_deliver)
protocol_id = _i1("protocol_id")
# priority_flag: 0-3 in every network type v3.4 names (section 5.2.14)
priority_flag = FieldSpec("priority_flag", INT1, 1, S.ESME_RINVPRTFLG, None, _at_most(3))
schedule_delivery_time = FieldSpec("schedule_delivery_time", TIME, 17, S.ESME_RINVSCHED, None, time_problem)
validity_period = FieldSpec("validity_period", TIME, 17, S.ESME_RINVEXPIRY, None, time_problem)
registered_delivery = _i1("registered_delivery", S.ESME_RINVREGDLVFLG)
# replace_if_present_flag: 0 don't replace, 1 replace (section 5.2.18)
replace_if_present_flag = FieldSpec("replace_if_present_flag", INT1, 1, S.ESME_RINVREPFLAG, None, _at_most(1))
data_coding = _i1("data_coding", S.ESME_RINVDCS)
sm_default_msg_id = _i1("sm_default_msg_id", S.ESME_RINVDFTMSGID)
short_message = FieldSpec("short_message", FieldKind.SHORT_MESSAGE, 254, S.ESME_RINVMSGLEN)
message_id = _c("message_id", 65, S.ESME_RINVMSGID)
final_date = FieldSpec("final_date", TIME, 17, S.ESME_RINVEXPIRY)
message_state = _i1("message_state")
error_code = _i1("error_code")
dest_address = FieldSpec("dest_address", FieldKind.DEST_ADDRESS, 254, S.ESME_RINVNUMDESTS)
unsuccess_sme = FieldSpec("unsuccess_sme", FieldKind.UNSUCCESS_SME, 255, S.ESME_RINVNUMDESTS)
dl_name = _c("dl_name", 21, S.ESME_RINVDLNAME)
dest_flag_status: Final = int(S.ESME_RINVDESTFLAG)
error_status_code = FieldSpec("error_status_code", INT4)

_BIND: Final = (system_id, password, system_type, interface_version, addr_ton, addr_npi, address_range)
_SM_TAIL: Final = (
    protocol_id,
    priority_flag,
    schedule_delivery_time,
    validity_period,
    registered_delivery,
    replace_if_present_flag,
    data_coding,
    sm_default_msg_id,
    short_message,
)

C = CommandId
# keys are plain ints: dict lookups with an int against IntEnum keys are slower
LAYOUTS: Final[dict[int, tuple[FieldSpec, ...]]] = {
    C.bind_transmitter: _BIND,
    C.bind_receiver: _BIND,
    C.bind_transceiver: _BIND,
    C.bind_transmitter_resp: (system_id,),
    C.bind_receiver_resp: (system_id,),
    C.bind_transceiver_resp: (system_id,),
    C.outbind: (system_id, password),
    C.unbind: (),
    C.unbind_resp: (),
    C.generic_nack: (),
    C.enquire_link: (),
    C.enquire_link_resp: (),
    C.submit_sm: (
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
        esm_class_submit,
        *_SM_TAIL,
    ),
    C.submit_sm_resp: (message_id,),
    C.deliver_sm: (
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
        esm_class_deliver,
        *_SM_TAIL,
    ),
    C.deliver_sm_resp: (message_id,),
    C.submit_multi: (
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_address,
        esm_class_submit,
        *_SM_TAIL,
    ),
    C.submit_multi_resp: (message_id, unsuccess_sme),
    C.data_sm: (
        service_type,
        source_addr_ton,
        source_addr_npi,
        source_addr_65,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr_65,
        esm_class_deliver,
        registered_delivery,
        data_coding,
    ),
    C.data_sm_resp: (message_id,),
    C.query_sm: (message_id, source_addr_ton, source_addr_npi, source_addr),
    C.query_sm_resp: (message_id, final_date, message_state, error_code),
    C.cancel_sm: (
        service_type,
        message_id,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        dest_addr_ton,
        dest_addr_npi,
        destination_addr,
    ),
    C.cancel_sm_resp: (),
    C.replace_sm: (
        message_id,
        source_addr_ton,
        source_addr_npi,
        source_addr,
        schedule_delivery_time,
        validity_period,
        registered_delivery,
        sm_default_msg_id,
        short_message,
    ),
    C.replace_sm_resp: (),
    C.alert_notification: (
        source_addr_ton,
        source_addr_npi,
        source_addr_65,
        esme_addr_ton,
        esme_addr_npi,
        esme_addr,
    ),
}
LAYOUTS.update({int(k): LAYOUTS.pop(k) for k in list(LAYOUTS)})

# The fields with a value check, per command, in wire order (built once from LAYOUTS).
_PROBLEM_FIELDS: Final[dict[int, tuple[FieldSpec, ...]]] = {
    cid: checked for cid, layout in LAYOUTS.items() if (checked := tuple(f for f in layout if f.problem))
}


def request_problem(pdu: Any) -> tuple[int, str] | None:
    """The status and reason of the first field of ``pdu`` whose value means nothing, or None.

    One check for every server side that accepts requests (the gateway's partner side, ``smsc-sim``):
    submit_sm, submit_multi and replace_sm carry the checked fields (priority_flag,
    replace_if_present_flag, schedule_delivery_time, validity_period, as their commands have them);
    data_sm has none of them, so it always passes.  Statuses: ``ESME_RINVPRTFLG``,
    ``ESME_RINVREPFLAG``, ``ESME_RINVSCHED``, ``ESME_RINVEXPIRY`` (each field's ``status``)."""
    fields = _PROBLEM_FIELDS.get(pdu.command_id)
    if fields is None:
        return None
    for f in fields:
        v = getattr(pdu, f.name)
        if v:  # 0 and "" are always good
            why = f.problem(v)  # type: ignore[misc]  # _PROBLEM_FIELDS holds only specs with one
            if why is not None:
                return int(f.status), f"{f.name} {v!r}: {why}"
    return None


# Fields of the repeated structures of submit_multi / submit_multi_resp.
SME_DEST: Final = (dest_addr_ton, dest_addr_npi, destination_addr)
UNSUCCESS_SME: Final = (dest_addr_ton, dest_addr_npi, destination_addr, error_status_code)


# --- rules across TLVs: the "required TLV" hook ---------------------------------------
# A rule is (trigger tags, function).  The function gets {tag: raw value} of the first
# occurrence of each tag and returns 0 or the status to answer with; it runs when one of
# its trigger tags is present, or always when the triggers are None (use that for a TLV a
# command must carry: return ESME_RMISSINGOPTPARAM when it is absent).  v3.4 makes no TLV
# unconditionally mandatory; what it does require is that the SAR parameters come as a set
# (section 5.3.2.22-24).
TlvRule = tuple[frozenset[int] | None, Callable[[dict[int, bytes]], int]]

_SAR = (0x020C, 0x020E, 0x020F)  # sar_msg_ref_num, sar_total_segments, sar_segment_seqnum


def _sar_rule(tlvs: dict[int, bytes]) -> int:
    present = [t in tlvs for t in _SAR]
    if not any(present):
        return 0
    if not all(present):
        return int(S.ESME_RMISSINGOPTPARAM)
    total = tlvs[0x020E][0]
    seq = tlvs[0x020F][0]
    if total == 0 or seq == 0 or seq > total:
        return int(S.ESME_RINVOPTPARAMVAL)
    return 0


_MESSAGE_PAYLOAD: Final = 0x0424

_SAR_RULE: Final[TlvRule] = (frozenset(_SAR), _sar_rule)

TLV_RULES: Final[dict[int, tuple[TlvRule, ...]]] = {
    int(C.submit_sm): (_SAR_RULE,),
    int(C.deliver_sm): (_SAR_RULE,),
    int(C.submit_multi): (_SAR_RULE,),
    int(C.data_sm): (_SAR_RULE,),
}

# Commands whose user data may be in short_message or in message_payload, never both
# (v3.4 section 5.3.2.32): both present earns ESME_RINVOPTPARAMVAL.
SHORT_MESSAGE_XOR_PAYLOAD: Final = frozenset({int(C.submit_sm), int(C.deliver_sm), int(C.submit_multi)})
