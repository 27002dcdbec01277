"""The Gateway's series on real Postgres + JetStream: ``connector_up`` is there (0) from the start for an
operator that never binds, and goes away with the operator when it is disabled; submits refused before
accept are counted."""

from __future__ import annotations

from typing import Any

import trio

from catalyst_smpp.bus import Bus
from catalyst_smpp.config import Config, ListenerConfig
from catalyst_smpp.embedded import Infrastructure, free_port
from catalyst_smpp.gateway import Gateway
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.store import Database, OperatorRepo, PartnerRepo, open_config_watcher
from tests.transport.peer import SansIoPeer


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


async def test_submits_the_session_refuses_on_its_own_are_counted_for_the_partner(
    bus: Bus, db: Database, nats_url: str, pg_dsn: str
) -> None:
    """A submit on a receiver bind is answered ESME_RINVBNDSTS by the protocol core, a submit over the
    throttle ESME_RTHROTTLED by the session: neither reaches accept, both are in submits_total."""
    await db.run(lambda conn: PartnerRepo(conn).add("quiet", "secret", throttle_rate=0.01, throttle_burst=1))
    cfg = Config(listeners=(ListenerConfig(host="127.0.0.1", port=0),))
    metrics = Metrics()

    def submits(status: str) -> float:
        labels = {"partner": "quiet", "status": status}
        return float(metrics.registry.get_sample_value("catalyst_smpp_submits_total", labels) or 0.0)

    infra = Infrastructure(bus=bus, db=db, watcher=None, nats_urls=[nats_url], dsn=pg_dsn)
    gw = Gateway(cfg, infra, node_id="gw-refused", connectors=False, metrics=metrics)
    async with trio.open_nursery() as n:
        await n.start(gw.run)
        rx = SansIoPeer(await trio.open_tcp_stream("127.0.0.1", gw.ports[0]), Role.ESME)
        assert (await rx.bind("rx", "quiet", "secret")).command_status == 0
        await rx.raw_request(SubmitSm(destination_addr="447700900001", short_message=b"x"), seq=7)
        with trio.fail_after(10):
            answer = await rx.next_event()
        assert getattr(answer, "pdu", answer).command_status == CommandStatus.ESME_RINVBNDSTS
        tx = SansIoPeer(await trio.open_tcp_stream("127.0.0.1", gw.ports[0]), Role.ESME)
        assert (await tx.bind("tx", "quiet", "secret")).command_status == 0
        statuses = [
            (await tx.request(SubmitSm(destination_addr="447700900001", short_message=b"x"))).command_status
            for _ in range(2)
        ]
        assert statuses[1] == CommandStatus.ESME_RTHROTTLED  # the burst of 1 is spent by the first
        assert submits("ESME_RINVBNDSTS") == 1
        assert submits("ESME_RTHROTTLED") == 1
        await rx.stream.aclose()
        await tx.stream.aclose()
        await gw.drain(2.0)
        n.cancel_scope.cancel()
