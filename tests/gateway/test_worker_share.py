"""Operator limits shared out among the worker processes of one host (``run --workers N``)."""

from __future__ import annotations

import types

import pytest

from catalyst_smpp.config import Config
from catalyst_smpp.gateway.gateway import Gateway
from tests.gateway.helpers import operator

# _worker_share reads no infrastructure; the Gateway only keeps these references until run()
_NO_INFRA = types.SimpleNamespace(bus=None, db=None)


def share(index: int, count: int, **op_fields: object) -> tuple[int, float] | None:
    gw = Gateway(Config(), _NO_INFRA, node_id="n", worker=(index, count))
    got = gw._worker_share(operator("op", **op_fields))
    return None if got is None else (got.bind_count, got.tps)


def test_single_process_keeps_the_operator_as_configured() -> None:
    assert share(0, 1, bind_count=3, tps=90.0) == (3, 90.0)


@pytest.mark.parametrize("binds,workers", [(1, 2), (2, 2), (3, 2), (5, 3), (2, 4), (8, 8), (1, 7)])
def test_binds_and_tps_never_exceed_the_operator_limits(binds: int, workers: int) -> None:
    shares = [share(k, workers, bind_count=binds, tps=120.0) for k in range(workers)]
    serving = [s for s in shares if s is not None]
    assert sum(b for b, _ in serving) == binds
    assert all(b >= 1 for b, _ in serving)
    assert len(serving) == min(binds, workers)
    assert sum(t for _, t in serving) == pytest.approx(120.0)


def test_unlimited_tps_stays_unlimited() -> None:
    assert share(1, 2, bind_count=2, tps=0.0) == (1, 0.0)
