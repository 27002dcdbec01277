"""Shared pytest configuration.

# --- infrastructure fixtures (helper: bus/store layer) ---
# Real NATS and Postgres fixtures live in tests/services.py (nats_url, nats_server_factory, nats_config,
# bus, pg_dsn, pg_schema, db). Other shared hooks/fixtures may be added below.
"""

pytest_plugins = ["tests.services"]
