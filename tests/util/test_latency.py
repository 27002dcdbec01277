import math

from hypothesis import given
from hypothesis import strategies as st

from catalyst_smpp.util.latency import LatencyRecorder


def test_nearest_rank_percentiles() -> None:
    r = LatencyRecorder()
    for v in range(1, 101):
        r.add(v / 1000)
    s = r.summary()
    assert s["count"] == 100
    assert s["p50"] == 0.050
    assert s["p90"] == 0.090
    assert s["p99"] == 0.099
    assert s["max"] == 0.100


def test_empty_is_nan() -> None:
    assert math.isnan(LatencyRecorder().percentile(50))


@given(
    st.lists(st.floats(min_value=0, max_value=10), min_size=1, max_size=300),
    st.floats(min_value=0, max_value=100),
)
def test_percentile_is_a_sample_and_ordered(values: list[float], p: float) -> None:
    r = LatencyRecorder()
    r.extend(values)
    v = r.percentile(p)
    assert v in values
    assert sum(x <= v for x in values) >= p / 100 * len(values) - 1e-9
