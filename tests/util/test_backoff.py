import random

import pytest
from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.util.backoff import Backoff


def test_grows_exponentially_to_the_cap_without_jitter() -> None:
    b = Backoff(initial=1, maximum=10, multiplier=2, jitter=0)
    assert [b.next_delay() for _ in range(6)] == [1, 2, 4, 8, 10, 10]
    b.reset()
    assert b.next_delay() == 1


@given(seed=st.integers(), attempts=st.integers(min_value=1, max_value=200))
def test_jittered_delays_stay_within_bounds(seed: int, attempts: int) -> None:
    b = Backoff(initial=0.1, maximum=5, multiplier=3, jitter=0.5, rng=random.Random(seed))
    for i in range(attempts):
        top = b.ceiling(i)
        d = b.next_delay()
        assert top * 0.5 <= d <= top <= 5


def test_jitter_spreads_delays() -> None:
    b = Backoff(initial=1, maximum=1, jitter=1.0, rng=random.Random(7))
    delays = {round(b.next_delay(), 6) for _ in range(20)}
    assert len(delays) > 10


@pytest.mark.parametrize(
    "kwargs", [{"initial": 0}, {"initial": 5, "maximum": 1}, {"multiplier": 0.5}, {"jitter": 2}]
)
def test_bad_settings(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        Backoff(**kwargs)  # type: ignore[arg-type]
