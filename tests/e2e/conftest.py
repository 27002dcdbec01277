"""Fixtures of the end-to-end tests: ``env`` = a fresh schema + NATS namespace per test (see harness.py)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from .harness import Env, open_env


@pytest.fixture
def env(tmp_path: Path, nats_url: str, pg_dsn: str) -> Iterator[Env]:
    with open_env(tmp_path, nats_url, pg_dsn) as e:
        yield e
