"""The assembled Gateway on real Postgres + JetStream: bind, submit, receipt back, reload, drain."""

from __future__ import annotations

import time
from typing import Any

import trio

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.config import Config, LimitsConfig, ListenerConfig
from catalyst_smpp.embedded import Infrastructure
from catalyst_smpp.gateway import DlrMessage, Gateway, MtMessage
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.store import Database, OperatorRepo, PartnerRepo, RouteRepo, open_config_watcher
from tests.transport.peer import SansIoPeer

from .helpers import smpplib_client


def _partner_session(port: int, submitted: list[str], want_deliveries: int) -> list[Any]:
    c = smpplib_client(port)
    got: list[Any] = []
    c.set_message_received_handler(lambda pdu: got.append(pdu))
    try:
        c.bind_transceiver(system_id="acme", password="secret")
        c.send_message(
            source_addr="12345",
            destination_addr="447700900001",
            short_message=b"via gateway",
            registered_delivery=1,
        )
        resp = c.read_pdu()
        assert resp.status == 0
        submitted.append(resp.message_id.decode())
        c._socket.settimeout(0.5)
        end = time.monotonic() + 30
        while len(got) < want_deliveries and time.monotonic() < end:
            try:
                c.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                continue
        c.unbind()
    finally:
        c.disconnect()
    return got


async def test_gateway_end_to_end_partner_side(bus: Bus, db: Database, nats_url: str, pg_dsn: str) -> None:
    def setup(conn: Any) -> None:
        PartnerRepo(conn).add("acme", "secret", message_id_format="hex")
        OperatorRepo(conn).add("opA", "127.0.0.1", 1, "opA")
        RouteRepo(conn).add(None, "44", ["opA"])

    await db.run(setup)
    cfg = Config(listeners=(ListenerConfig(host="127.0.0.1", port=0, reuse_port=False),))
    async with open_config_watcher(db, poll_interval=1.0) as watcher:
        infra = Infrastructure(bus=bus, db=db, watcher=watcher, nats_urls=[nats_url], dsn=pg_dsn)
        gw = Gateway(cfg, infra, node_id="gw-1", connectors=False)
        async with trio.open_nursery() as n:
            await n.start(gw.run)
            assert len(gw.ports) == 1 and gw.ports[0] > 0
            submitted: list[str] = []
            result: list[Any] = []

            async def partner() -> None:
                result.extend(await trio.to_thread.run_sync(_partner_session, gw.ports[0], submitted, 1))

            n.start_soon(partner)
            mt_consumer = await bus.consumer(Kind.MT, "opA")
            with trio.fail_after(20):
                msgs: list[Any] = []
                while not msgs:
                    msgs = await mt_consumer.fetch(10, 1.0)
            await mt_consumer.ack(msgs)
            mt = MtMessage.from_bytes(msgs[0].data)
            assert (mt.partner, mt.payload, mt.targets, mt.registered_delivery) == (
                "acme",
                b"via gateway",
                ("opA",),
                1,
            )
            with trio.fail_after(20):  # the partner thread records the submit_sm_resp id after reading it
                while not submitted:
                    await trio.sleep(0.05)
            assert submitted == [format(int(mt.message_id), "x")]
            # the partner is bound (TRX): a receipt is delivered through the bind hook's PartnerDelivery
            dlr = DlrMessage(
                message_id=mt.message_id,
                partner="acme",
                state="DELIVRD",
                source=mt.source,
                dest=mt.dest,
                operator="opA",
            )
            res = await bus.publish_batch([(bus.subject(Kind.DLR, "acme"), dlr.to_bytes(), None, "dlr:x")])
            assert res[0].ok
            with trio.fail_after(30):
                while not result:
                    await trio.sleep(0.05)
            assert result[0].receipted_message_id.decode() == submitted[0]
            assert result[0].esm_class == 0x04
            with trio.fail_after(10):  # the partner unbound: its delivery stops
                while gw.deliveries:
                    await trio.sleep(0.05)

            # a reload from the watcher: a new route applies without a restart; a disabled partner is unbound
            def change(conn: Any) -> None:
                RouteRepo(conn).add(None, "33", ["opA"])

            await db.run(change)
            with trio.fail_after(20):
                while gw.router is None or gw.router.route("acme", "1", "3312") != ["opA"]:
                    await trio.sleep(0.05)
            client_conn = smpplib_client(gw.ports[0])
            await trio.to_thread.run_sync(
                lambda: client_conn.bind_receiver(system_id="acme", password="secret")
            )
            with trio.fail_after(10):
                while "acme" not in gw.deliveries:
                    await trio.sleep(0.05)
            await db.run(lambda conn: PartnerRepo(conn).disable("acme"))
            with trio.fail_after(20):
                while gw.receivers.bound_sessions("acme") or gw.deliveries:
                    await trio.sleep(0.05)
            await trio.to_thread.run_sync(client_conn.disconnect)
            await gw.drain(2.0)
        assert gw.accept is not None and gw.accept.stats.accepted == 1


async def test_gateway_applies_connection_limits_and_counts_refused_binds(
    bus: Bus, db: Database, nats_url: str, pg_dsn: str
) -> None:
    """The `[limits]` connection and bind keys reach the listeners and the authenticator; refusals are in
    the metrics (a real gateway, real sockets)."""
    await db.run(lambda conn: PartnerRepo(conn).add("limited", "secret"))
    cfg = Config(
        listeners=(ListenerConfig(host="127.0.0.1", port=0, reuse_port=False),),
        limits=LimitsConfig(max_connections_per_address=1, bind_fail_delay=0.1),
    )
    metrics = Metrics()
    infra = Infrastructure(bus=bus, db=db, watcher=None, nats_urls=[nats_url], dsn=pg_dsn)
    gw = Gateway(cfg, infra, node_id="gw-limits", connectors=False, metrics=metrics)
    async with trio.open_nursery() as n:
        await n.start(gw.run)
        port = gw.ports[0]
        first = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.4")
        peer = SansIoPeer(first, Role.ESME)
        assert (await peer.bind("trx", "limited", "wrong")).command_status == CommandStatus.ESME_RBINDFAIL
        second = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.4")
        with trio.fail_after(5):
            assert await second.receive_some(100) == b""  # closed at accept, nothing read or written
        other = await trio.open_tcp_stream("127.0.0.1", port, local_address="127.0.0.5")
        assert (await SansIoPeer(other, Role.ESME).bind("trx", "limited", "secret")).command_status == 0

        def sample(name: str, **labels: str) -> float:
            return float(metrics.registry.get_sample_value(f"catalyst_smpp_{name}", labels) or 0.0)

        assert sample("connections_refused_total", reason="per_address") == 1
        assert sample("bind_failures_total", reason="bad_password") == 1
        for s in (first, second, other):
            await trio.aclose_forcefully(s)
        await gw.drain(2.0)


async def test_partner_window_is_its_binds_window_and_follows_changes(
    bus: Bus, db: Database, nats_url: str, pg_dsn: str
) -> None:
    # limits.default_window is 10; the partner's window (50, then 80) is what its bind gets, no cap
    await db.run(lambda conn: PartnerRepo(conn).add("wide", "secret", window=50))
    cfg = Config(listeners=(ListenerConfig(host="127.0.0.1", port=0, reuse_port=False),))
    assert cfg.limits.default_window == 10
    async with open_config_watcher(db, poll_interval=1.0) as watcher:
        infra = Infrastructure(bus=bus, db=db, watcher=watcher, nats_urls=[nats_url], dsn=pg_dsn)
        gw = Gateway(cfg, infra, node_id="gw-1", connectors=False)
        async with trio.open_nursery() as n:
            await n.start(gw.run)
            client = smpplib_client(gw.ports[0])
            await trio.to_thread.run_sync(lambda: client.bind_receiver(system_id="wide", password="secret"))
            (session,) = gw.receivers.bound_sessions("wide")
            assert session.window_size == 50 and session.window_available == 50
            await db.run(lambda conn: PartnerRepo(conn).change("wide", window=80))
            with trio.fail_after(20):  # the reload applies it to the bind held
                while session.window_size != 80:
                    await trio.sleep(0.05)
            await trio.to_thread.run_sync(client.disconnect)
            await gw.drain(2.0)
