"""The daemon's gauge sampler survives NATS being away (it keeps the last values and says so once)."""

from __future__ import annotations

import logging
from types import SimpleNamespace
from typing import Any

import pytest

from catalyst_smpp.bus import BusError
from catalyst_smpp.daemon import _Sampler
from catalyst_smpp.metrics import Metrics


class _AwayBus:
    async def consumer(self, kind: Any, name: str) -> Any:
        raise BusError("TimeoutError: nats: timeout")


async def test_backlog_sampling_failure_is_logged_once_and_not_raised(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # its first warning once carried extra={"name": ...}, a LogRecord attribute: the KeyError ended the node
    gw = SimpleNamespace(
        snapshot=SimpleNamespace(partners=[], operators=[SimpleNamespace(name="opA", enabled=True)]),
        connectors={},
    )
    sampler = _Sampler(gw, _AwayBus(), Metrics())
    with caplog.at_level(logging.WARNING, logger="catalyst_smpp.daemon"):
        await sampler.sample()
        await sampler.sample()
    said = [r for r in caplog.records if "backlog sampling failed" in r.getMessage()]
    assert len(said) == 1 and "nats: timeout" in said[0].getMessage()
