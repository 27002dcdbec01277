import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.util.ratelimit import TokenBucket


def test_burst_is_admitted_then_rate_applies() -> None:
    b = TokenBucket(rate=10, burst=5)
    assert [b.try_take(0.0) for _ in range(6)] == [True] * 5 + [False]
    # 0.1 s later exactly one token has accrued
    assert b.try_take(0.1)
    assert not b.try_take(0.1)
    assert b.wait_time(0.1) == pytest.approx(0.1)


def test_tokens_never_exceed_burst_after_idle() -> None:
    b = TokenBucket(rate=100, burst=3)
    b.try_take(0.0)
    assert b.tokens(1000.0) == 3


def test_clock_going_backwards_does_not_mint_tokens() -> None:
    b = TokenBucket(rate=1, burst=1)
    assert b.try_take(10.0)
    assert not b.try_take(5.0)
    assert not b.try_take(10.5)
    assert b.try_take(11.0)


@pytest.mark.parametrize(("rate", "burst"), [(0, 1), (-1, 1), (1, 0), (float("inf"), 1), (1, float("nan"))])
def test_invalid_settings_rejected(rate: float, burst: float) -> None:
    with pytest.raises(ValueError):
        TokenBucket(rate=rate, burst=burst)


@given(
    rate=st.floats(min_value=0.5, max_value=1000),
    burst=st.integers(min_value=1, max_value=50),
    gaps=st.lists(st.floats(min_value=0, max_value=0.5), min_size=1, max_size=200),
)
def test_admitted_count_is_bounded_by_burst_plus_rate_times_time(
    rate: float, burst: int, gaps: list[float]
) -> None:
    b = TokenBucket(rate=rate, burst=burst)
    now = 0.0
    admitted = 0
    for g in gaps:
        now += g
        admitted += b.try_take(now)
    assert admitted <= burst + rate * now + 1e-6


def test_reconfigure_clamps_tokens() -> None:
    b = TokenBucket(rate=10, burst=10)
    b.reconfigure(rate=1, burst=2, now=0.0)
    assert b.tokens(0.0) == 2
    with pytest.raises(ValueError):
        b.reconfigure(rate=0, burst=2, now=0.0)
