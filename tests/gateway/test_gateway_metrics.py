"""The Gateway's operator series on real Postgres + JetStream: ``connector_up`` is there (0) from the start
for an operator that never binds, and goes away with the operator when it is disabled."""

from __future__ import annotations

from typing import Any

import trio

from catalyst_smpp.bus import Bus
from catalyst_smpp.config import Config, ListenerConfig
from catalyst_smpp.embedded import Infrastructure, free_port
from catalyst_smpp.gateway import Gateway
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.store import Database, OperatorRepo, open_config_watcher


def _up(metrics: Metrics, operator: str) -> float | None:
    value: Any = metrics.registry.get_sample_value("catalyst_smpp_connector_up", {"operator": operator})
    return None if value is None else float(value)


async def test_connector_up_is_0_for_an_operator_never_bound_and_gone_once_disabled(
    bus: Bus, db: Database, nats_url: str, pg_dsn: str
) -> None:
    await db.run(lambda conn: OperatorRepo(conn).add("opdown", "127.0.0.1", free_port(), "opdown"))
    cfg = Config(listeners=(ListenerConfig(host="127.0.0.1", port=0),))
    metrics = Metrics()
    async with open_config_watcher(db, poll_interval=0.5) as watcher:
        infra = Infrastructure(bus=bus, db=db, watcher=watcher, nats_urls=[nats_url], dsn=pg_dsn)
        gw = Gateway(cfg, infra, node_id="gw-m", metrics=metrics)
        async with trio.open_nursery() as n:
            await n.start(gw.run)
            # nothing listens at its port: never bound, and the documented alert (connector_up == 0) can fire
            assert "opdown" in gw.connectors
            assert _up(metrics, "opdown") == 0

            await db.run(lambda conn: OperatorRepo(conn).disable("opdown"))
            with trio.fail_after(30):  # a hang guard: the watcher reloads, the connector stops
                while _up(metrics, "opdown") is not None:
                    await trio.sleep(0.05)
            assert "opdown" not in gw.connectors
            await gw.drain(2.0)
            n.cancel_scope.cancel()
