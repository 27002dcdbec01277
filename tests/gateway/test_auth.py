"""PostgresAuthenticator: partners from Postgres (real database), binds from smpplib and our client."""

from __future__ import annotations

from typing import Any

import smpplib.exceptions
import trio

from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.gateway.auth import PostgresAuthenticator, peer_ip
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.pdu import BindTransceiver
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.server import BindRequest, ServerConfig, SmppServer
from catalyst_smpp.store import Database, PartnerRepo

from .helpers import smpplib_client


def _bind(port: int, system_id: str, password: str) -> int:
    c = smpplib_client(port)
    try:
        try:
            c.bind_transceiver(system_id=system_id, password=password)
        except smpplib.exceptions.PDUError as e:
            return int(e.args[1])
        c.unbind()
        return 0
    finally:
        c.disconnect()


async def _partners(db: Database) -> dict[str, Any]:
    snap = await db.snapshot()
    return {p.system_id: p for p in snap.partners}


async def test_binds_checked_against_postgres(db: Database) -> None:
    def setup(conn: Any) -> None:
        repo = PartnerRepo(conn)
        repo.add("acme", "secret", max_binds=1, throttle_rate=50, throttle_burst=20, window=7)
        repo.add("off", "secret", enabled=False)
        repo.add("fenced", "secret", allowed_ips=["10.0.0.0/8"])
        repo.add("local", "secret", allowed_ips=["127.0.0.0/8"])

    await db.run(setup)
    partners = await _partners(db)
    auth = PostgresAuthenticator(partners.get)
    cfg = ServerConfig(port=0, session=SessionConfig(window_size=10, response_timeout=10, bind_timeout=10))
    server = SmppServer(cfg, auth)
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        port = server.ports[0]
        results = {}
        for sid, pw in [
            ("acme", "secret"),
            ("acme", "wrong"),
            ("nobody", "secret"),
            ("off", "secret"),
            ("fenced", "secret"),
            ("local", "secret"),
        ]:
            results[(sid, pw)] = await trio.to_thread.run_sync(_bind, port, sid, pw)
        assert results == {
            ("acme", "secret"): 0,
            ("acme", "wrong"): S.ESME_RINVPASWD,
            ("nobody", "secret"): S.ESME_RINVSYSID,
            ("off", "secret"): S.ESME_RBINDFAIL,
            ("fenced", "secret"): S.ESME_RBINDFAIL,
            ("local", "secret"): 0,
        }
        # the account carries the partner's limits: max_binds=1 → a second concurrent bind fails
        client = SmppClient(
            ClientConfig(
                host="127.0.0.1",
                port=port,
                system_id="acme",
                password="secret",
                binds=(BindType.TRANSCEIVER,),
            )
        )
        await n.start(client.run)
        with trio.fail_after(10):
            while not server.bound_sessions("acme"):
                await trio.sleep(0.01)
        (session,) = server.bound_sessions("acme")
        assert session.account is not None
        assert (
            session.account.max_binds,
            session.account.throttle_rate,
            session.account.throttle_burst,
            session.account.deliver_window,
        ) == (1, 50.0, 20.0, 7)
        assert session.window_size == 7
        assert await trio.to_thread.run_sync(_bind, port, "acme", "secret") == S.ESME_RBINDFAIL
        # acme's second and third binds skipped scrypt (its password passed already); wrong ones never do
        assert auth.verified.hits == 2
        await client.aclose()
        await server.shutdown(1.0)
        n.cancel_scope.cancel()


async def test_bound_counter_and_unreadable_peer(db: Database) -> None:
    def setup(conn: Any) -> None:
        PartnerRepo(conn).add("cnt", "pw", max_binds=2)
        PartnerRepo(conn).add("fence2", "pw", allowed_ips=["0.0.0.0/0"])

    await db.run(setup)
    partners = await _partners(db)
    held = {"cnt": 2}
    auth = PostgresAuthenticator(partners.get, bound_counter=lambda s: held.get(s, 0))

    def req(sid: str, peer: str) -> BindRequest:
        pdu = BindTransceiver(system_id=sid, password="pw")
        return BindRequest(sid, "pw", "", BindType.TRANSCEIVER, pdu, peer)

    assert await auth.authenticate(req("cnt", "127.0.0.1:5000")) == S.ESME_RBINDFAIL
    held["cnt"] = 1
    account = await auth.authenticate(req("cnt", "127.0.0.1:5000"))
    assert not isinstance(account, int) and account.system_id == "cnt"
    # a memory stream has no IP: never passes an IP restriction
    assert await auth.authenticate(req("fence2", "memory")) == S.ESME_RBINDFAIL
    assert (
        peer_ip("[::1]:2775") == "::1" and peer_ip("10.1.2.3:1") == "10.1.2.3" and peer_ip("memory") is None
    )
