"""Shared pytest configuration.

# --- infrastructure fixtures (helper: bus/store layer) ---
# Real NATS and Postgres fixtures live in tests/services.py (nats_url, nats_server_factory, nats_config,
# bus, pg_dsn, pg_schema, db). Other shared hooks/fixtures may be added below.
"""

from __future__ import annotations

import os
import sys

import pytest

pytest_plugins = ["tests.services"]

# Bytecode caches on, whatever PYTHONDONTWRITEBYTECODE says (container images often set it): without them
# each xdist worker rewrites and compiles every test module again (~8 s of CPU a worker, most of the
# collection), and each subprocess a test starts (``catalyst-smpp run``, the simulator, load) compiles
# catalyst_smpp anew (~0.25 s each).  Set here, before any test module is imported; the subprocesses
# inherit the environment.
sys.dont_write_bytecode = False
os.environ.pop("PYTHONDONTWRITEBYTECODE", None)


@pytest.hookimpl(trylast=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Under ``--dist loadgroup`` a test marked ``xdist_group`` must carry its group in its id: that is how
    pytest-xdist keeps a group on one worker.  The host-bench tests rely on it (one bench of namespaces,
    used by one worker at a time); a pytest/pytest-xdist pair where the mark no longer takes effect would
    spread them over workers that then queue for the bench, so stop here instead of running slowly."""
    if not getattr(config.option, "loadgroup", False):
        return
    for item in items:
        if item.get_closest_marker("xdist_group") is not None and "@" not in item.nodeid:
            raise pytest.UsageError(
                f"{item.nodeid}: its xdist_group mark did not take effect under --dist loadgroup "
                f"(pytest {pytest.__version__}); use the versions pyproject.toml allows"
            )
