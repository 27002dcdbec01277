"""The value check of requests (fields.request_problem) and the SMPP time parser behind it."""

from __future__ import annotations

import calendar
import datetime as dt

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.fields import RelativeTime, TimeFormatError, parse_time, request_problem
from catalyst_smpp.protocol.pdu import DataSm, DeliverSm, ReplaceSm, SmeDestination, SubmitMulti, SubmitSm

# (component, index in "YYMMDDhhmmsstnnp", width, lowest and highest good value) of an absolute time
ABSOLUTE = [
    ("year", 0, 2, 0, 99),
    ("month", 2, 2, 1, 12),
    ("day", 4, 2, 1, 31),
    ("hour", 6, 2, 0, 23),
    ("minute", 8, 2, 0, 59),
    ("second", 10, 2, 0, 59),
    ("tenths", 12, 1, 0, 9),
    ("quarter hours", 13, 2, 0, 48),
]
# a relative time is a period: each component any two digits (48 hours is "000000480000000R")
RELATIVE = [(name, 0, 99) for name in ("year", "month", "day", "hour", "minute", "second")]


@st.composite
def absolute_times(draw: st.DrawFn) -> tuple[str, dt.datetime]:
    """A real absolute time as the wire has it, and the instant it means."""
    year = draw(st.integers(0, 99))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, calendar.monthrange(2000 + year, month)[1]))
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(st.integers(0, 59))
    tenths, quarters, sign = draw(st.integers(0, 9)), draw(st.integers(0, 48)), draw(st.sampled_from("+-"))
    text = f"{year:02d}{month:02d}{day:02d}{hour:02d}{minute:02d}{second:02d}{tenths}{quarters:02d}{sign}"
    offset = dt.timedelta(minutes=15 * quarters) * (1 if sign == "+" else -1)
    when = dt.datetime(2000 + year, month, day, hour, minute, second, tenths * 100_000, dt.timezone(offset))
    return text, when


relative_parts = st.tuples(*(st.integers(lo, hi) for _name, lo, hi in RELATIVE))


def _relative(parts: tuple[int, ...]) -> str:
    return "".join(f"{v:02d}" for v in parts) + "000R"


@given(absolute_times())
def test_every_real_absolute_time_is_accepted_as_the_instant_it_names(case: tuple[str, dt.datetime]) -> None:
    text, when = case
    assert parse_time(text) == when
    assert request_problem(SubmitSm(1, schedule_delivery_time=text, validity_period=text)) is None


@given(relative_parts)
def test_every_relative_time_within_the_ranges_is_accepted(parts: tuple[int, ...]) -> None:
    assert parse_time(_relative(parts)) == RelativeTime(*parts)
    assert request_problem(ReplaceSm(1, schedule_delivery_time=_relative(parts))) is None


@given(absolute_times(), st.sampled_from(ABSOLUTE), st.data())
def test_an_out_of_range_absolute_component_is_refused_with_the_fields_status(
    case: tuple[str, dt.datetime], part: tuple[str, int, int, int, int], data: st.DataObject
) -> None:
    _name, i, width, low, high = part
    above = data.draw(st.integers(high + 1, 10**width - 1)) if high < 10**width - 1 else None
    below = low - 1 if low > 0 else None
    bad_values = [v for v in (above, below) if v is not None] or [None]
    for v in bad_values:
        # a non-digit stands in for a component that has no numeric out-of-range value (year, tenths)
        digits = f"{v:0{width}d}" if v is not None else "x" * width
        text = case[0][:i] + digits + case[0][i + width :]
        with pytest.raises(TimeFormatError):
            parse_time(text)
        assert request_problem(SubmitSm(1, schedule_delivery_time=text))[0] == S.ESME_RINVSCHED  # type: ignore[index]
        assert request_problem(SubmitSm(1, validity_period=text))[0] == S.ESME_RINVEXPIRY  # type: ignore[index]


@given(relative_parts, st.integers(0, 5), st.sampled_from([" 1", "1 ", "-1", "+1", "x9", "\u0661\u0662"]))
def test_a_relative_component_that_is_not_two_digits_is_refused(
    parts: tuple[int, ...], which: int, junk: str
) -> None:
    text = _relative(parts)
    text = text[: 2 * which] + junk + text[2 * which + 2 :]
    with pytest.raises(TimeFormatError):
        parse_time(text)
    assert request_problem(ReplaceSm(1, validity_period=text)) == (
        S.ESME_RINVEXPIRY,
        f"validity_period {text!r}: {_problem(text)}",
    )


def _problem(text: str) -> str:
    try:
        parse_time(text)
    except TimeFormatError as e:
        return str(e)
    raise AssertionError(f"{text!r} parsed")


@given(relative_parts, st.from_regex(r"\A[0-9]{3}\Z").filter(lambda s: s != "000"))
def test_a_relative_time_has_no_tenths_or_utc_offset(parts: tuple[int, ...], tnn: str) -> None:
    text = _relative(parts)[:12] + tnn + "R"
    assert "ends in 000R" in _problem(text)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("260230120000000+", "day 30 not in month 02 of 2026"),
        ("250229000000000+", "day 29 not in month 02 of 2025"),
        ("260431000000000-", "day 31 not in month 04 of 2026"),
        ("261301000000000+", "month 13 outside 01-12"),
        ("260132000000000+", "day 32 outside 01-31"),
        ("260101250000000+", "hour 25 outside 00-23"),
        ("260101006000000+", "minute 60 outside 00-59"),
        ("260101000060000+", "second 60 outside 00-59"),
        ("260101000000049+", "UTC offset of 49 quarter hours above 48"),
        ("26010100000000x+", "the first 15 characters are not all digits"),
        ("26010100000000²+", "the first 15 characters are not all digits"),
        ("260101000000000Z", "last character 'Z' is not '+', '-' or 'R'"),
        ("000000000000100R", "a relative time ends in 000R, not 100R"),
        ("2601010000000+", "14 characters, not 16"),
    ],
)
def test_named_bad_times(text: str, why: str) -> None:
    assert _problem(text) == why


def test_a_relative_period_counts_units_beyond_the_calendar_bounds() -> None:
    # what partners send for "48 hours" and "90 days": periods, not calendar positions
    assert parse_time("000000480000000R") == RelativeTime(0, 0, 0, 48, 0, 0)
    assert parse_time("000090000000000R") == RelativeTime(0, 0, 90, 0, 0, 0)
    assert request_problem(SubmitSm(1, validity_period="000000480000000R")) is None


def test_leap_day_and_the_empty_time() -> None:
    assert parse_time("240229235959948-") == dt.datetime(
        2024, 2, 29, 23, 59, 59, 900_000, dt.timezone(-dt.timedelta(hours=12))
    )
    assert parse_time("") is None


@pytest.mark.parametrize("priority", range(256))
def test_priority_flag_above_3_is_refused(priority: int) -> None:
    for pdu in (SubmitSm(1, priority_flag=priority), SubmitMulti(1, priority_flag=priority)):
        got = request_problem(pdu)
        assert got == (None if priority <= 3 else (S.ESME_RINVPRTFLG, f"priority_flag {priority}: above 3"))


@pytest.mark.parametrize("flag", range(256))
def test_replace_if_present_flag_above_1_is_refused(flag: int) -> None:
    got = request_problem(SubmitSm(1, replace_if_present_flag=flag))
    assert got == (None if flag <= 1 else (S.ESME_RINVREPFLAG, f"replace_if_present_flag {flag}: above 1"))


def test_the_first_bad_field_in_wire_order_decides_and_commands_without_the_fields_pass() -> None:
    bad = SubmitMulti(
        1,
        dest_address=(SmeDestination(1, 1, "44"),),
        priority_flag=9,
        schedule_delivery_time="261301000000000+",
        replace_if_present_flag=7,
    )
    assert request_problem(bad)[0] == S.ESME_RINVPRTFLG  # type: ignore[index]
    assert request_problem(ReplaceSm(1, schedule_delivery_time="x" * 16, validity_period="y" * 16))[0] == (  # type: ignore[index]
        S.ESME_RINVSCHED
    )
    assert request_problem(DataSm(1)) is None
    # the check is the same table for deliver_sm, which shares submit_sm's tail
    assert request_problem(DeliverSm(1, priority_flag=4))[0] == S.ESME_RINVPRTFLG  # type: ignore[index]
