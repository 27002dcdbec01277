"""Our message ids: order, uniqueness, node numbers, formats."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.gateway.ids import (
    EPOCH_MS,
    MAX_ID,
    IdGenerator,
    format_id,
    id_node,
    id_time,
    node_number,
    parse_id,
)


class FakeClock:
    def __init__(self, t: float) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def test_strictly_increasing_within_one_millisecond_and_across() -> None:
    clock = FakeClock(1_750_000_000.0)
    gen = IdGenerator(5, clock=clock)
    ids = [gen.next() for _ in range(10_000)]  # more than 4096: borrows the next milliseconds
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    assert all(id_node(i) == 5 for i in ids)
    clock.t += 1.0
    later = gen.next()
    assert later > ids[-1]
    assert id_time(later) == pytest.approx(clock.t, abs=0.001)


def test_clock_going_back_never_goes_backwards() -> None:
    clock = FakeClock(1_750_000_000.0)
    gen = IdGenerator(1, clock=clock)
    a = gen.next()
    clock.t -= 30.0  # NTP step back
    b = gen.next()
    c = gen.next()
    assert a < b < c


def test_time_ordered_across_nodes() -> None:
    clock = FakeClock(1_750_000_000.0)
    early = IdGenerator(1000, clock=clock).next()
    clock.t += 0.002
    late = IdGenerator(0, clock=clock).next()
    assert early < late  # time dominates the node number


def test_nodes_never_collide_in_the_same_millisecond() -> None:
    clock = FakeClock(1_750_000_000.0)
    gens = [IdGenerator(n, clock=clock) for n in (0, 1, 2, 1023)]
    ids = [g.next() for g in gens for _ in range(100)]
    assert len(set(ids)) == len(ids)


def test_fits_63_bits_and_rejects_bad_node() -> None:
    gen = IdGenerator(1023, clock=lambda: (EPOCH_MS + (1 << 41) - 2) / 1000)
    assert 0 < gen.next() < 1 << 63
    with pytest.raises(ValueError):
        IdGenerator(1024)
    with pytest.raises(ValueError):
        IdGenerator(-1)


def test_node_number() -> None:
    assert node_number("7") == 7
    assert node_number("gw-3") == 3
    assert node_number("host#12") == 12
    assert node_number("gw-5000") == node_number("gw-5000")  # hashed, stable
    assert 0 <= node_number("alpha") <= 1023
    assert node_number("alpha") == node_number("alpha")
    assert node_number("alpha") != node_number("beta")  # these two happen not to collide


def test_formats() -> None:
    assert format_id(255, "hex") == "ff"
    assert format_id(255, "dec") == "255"
    assert format_id(0, "hex") == "0"
    assert parse_id("FF", "hex") == 255
    assert parse_id("00ff\x00", "hex") == 255
    assert parse_id("0255", "dec") == 255
    for bad, fmt in [
        ("", "hex"),
        ("xyz", "hex"),
        ("ff", "dec"),
        ("-1", "dec"),
        ("+5", "dec"),
        ("1_0", "dec"),
        ("0x10", "hex"),
        (str(MAX_ID + 1), "dec"),
        ("12", "oct"),
    ]:
        with pytest.raises(ValueError):
            parse_id(bad, fmt)
    with pytest.raises(ValueError):
        format_id(-1, "hex")
    with pytest.raises(ValueError):
        format_id(1, "b64")


@given(st.integers(min_value=0, max_value=MAX_ID), st.sampled_from(["hex", "dec"]))
def test_round_trip(value: int, fmt: str) -> None:
    text = format_id(value, fmt)
    assert parse_id(text, fmt) == value
    if fmt == "hex":
        assert text == text.lower() and (text == "0" or not text.startswith("0"))


@given(st.integers(min_value=0, max_value=1023), st.lists(st.floats(-5, 5), max_size=50))
def test_monotonic_under_any_clock_jitter(node: int, steps: list[float]) -> None:
    clock = FakeClock(1_750_000_000.0)
    gen = IdGenerator(node, clock=clock)
    prev = gen.next()
    for s in steps:
        clock.t += s
        cur = gen.next()
        assert cur > prev and id_node(cur) == node
        prev = cur
