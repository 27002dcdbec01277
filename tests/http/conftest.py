"""Fixtures of the HTTP API tests: a gateway in this process (e2e harness: real NATS and Postgres) with its
HTTP API on a free port, the simulator as operator ``opA`` (route 44), partner ``acme`` and an API key."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import attrs
import httpx
import pytest

from catalyst_smpp.config import HttpConfig
from catalyst_smpp.gateway import Gateway
from catalyst_smpp.http.keys import create_key
from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig
from tests.e2e.harness import Env, RecordingSim, open_env, open_gateway, open_sim
from tests.services import free_port


@pytest.fixture
def env(tmp_path: Path, nats_url: str, pg_dsn: str) -> Iterator[Env]:
    with open_env(tmp_path, nats_url, pg_dsn) as e:
        yield e


@attrs.define
class Api:
    env: Env
    gw: Gateway
    sim: RecordingSim
    url: str
    key: str

    def client(self, key: str | None = None, **kw: Any) -> httpx.AsyncClient:
        headers = {"X-API-Key": key if key is not None else self.key}
        return httpx.AsyncClient(base_url=self.url, headers=headers, timeout=30.0, **kw)

    def new_key(self, partner: str = "acme", **kw: Any) -> str:
        key: str = self.env.setup(lambda c: create_key(c, partner, **kw))[1]
        return key


def sim_config() -> SimConfig:
    return SimConfig(
        receipt_delay=DelayRange(0.01, 0.05), id_format=IdFormat(IdForm.HEX, width=10, upper=True)
    )


@pytest.fixture
async def api(env: Env) -> AsyncIterator[Api]:
    async with open_sim(sim_config()) as sim:
        env.add_operator("opA", sim.port, submit_id_format="hex", receipt_id_format="hex")
        env.add_route(None, "44", ["opA"])
        env.add_partner("acme", throttle_rate=20000.0, throttle_burst=20000)
        port = free_port()
        http = HttpConfig(host="127.0.0.1", port=port, rate=100000.0, key_cache=0.5)
        async with open_gateway(env, http=http) as gw:
            key = env.setup(lambda c: create_key(c, "acme"))[1]
            yield Api(env, gw, sim, f"http://127.0.0.1:{port}", key)
