"""PostgresAuthenticator: partners from Postgres (real database), binds from smpplib and our client."""

from __future__ import annotations

import logging
import threading
from typing import Any

import pytest
import smpplib.exceptions
import trio
import trio.testing

import catalyst_smpp.gateway.auth as gateway_auth
from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.config import LimitsConfig
from catalyst_smpp.gateway.auth import PostgresAuthenticator, peer_ip
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.pdu import BindTransceiver
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.states import Role
from catalyst_smpp.server import Account, BindRequest, ServerConfig, SmppServer
from catalyst_smpp.store import Database, PartnerRepo
from catalyst_smpp.store.passwords import VerifiedPasswords
from tests.transport.peer import SansIoPeer

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
        # every refusal says the same thing: nothing about which system_ids exist, or why
        assert results == {
            ("acme", "secret"): 0,
            ("acme", "wrong"): S.ESME_RBINDFAIL,
            ("nobody", "secret"): S.ESME_RBINDFAIL,
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


def _req(system_id: str, password: str, peer: str) -> BindRequest:
    pdu = BindTransceiver(system_id=system_id, password=password)
    return BindRequest(system_id, password, "", BindType.TRANSCEIVER, pdu, peer)


def _sample(metrics: Metrics, name: str, **labels: str) -> float:
    value = metrics.registry.get_sample_value(f"catalyst_smpp_{name}", labels)
    return float(value or 0.0)


async def test_unknown_system_id_and_wrong_password_look_alike(
    db: Database, autojump_clock: trio.testing.MockClock
) -> None:
    """Same status, same password-check work, answered at the same (virtual) time after the bind."""
    await db.run(lambda conn: PartnerRepo(conn).add("alike", "secret"))
    auth = PostgresAuthenticator((await _partners(db)).get)
    delay = LimitsConfig().bind_fail_delay
    seen = []
    for sid, peer in (("alike", "10.0.0.1:7"), ("nobody", "10.0.0.2:7")):
        checks, t0 = auth.checks, trio.current_time()
        status = await auth.authenticate(_req(sid, "wrong", peer))
        seen.append((status, auth.checks - checks, trio.current_time() - t0))
    assert seen == [(S.ESME_RBINDFAIL, 1, delay)] * 2
    assert auth.failures == {"bad_password": 1, "unknown_system_id": 1}


async def test_failed_binds_lock_the_address_out_bounded_and_logged_once(
    db: Database, autojump_clock: trio.testing.MockClock, caplog: pytest.LogCaptureFixture
) -> None:
    await db.run(lambda conn: PartnerRepo(conn).add("locked", "secret"))
    lim = LimitsConfig(
        bind_free_failures=3, bind_lockout_max=8.0, bind_slowdown_max=4.0, bind_fail_reset=60.0
    )
    metrics = Metrics()
    auth = PostgresAuthenticator((await _partners(db)).get, limits=lambda: lim, metrics=metrics)
    caplog.set_level(logging.INFO, logger="catalyst_smpp.gateway.auth")
    attacker = "10.0.0.1"
    for _ in range(3):
        assert await auth.authenticate(_req("locked", "guess", f"{attacker}:1")) == S.ESME_RBINDFAIL
    assert auth.checks == 3
    # locked: refused without a password check, whatever the system_id or password
    answers: list[Account | int] = []

    async def attempt(sid: str, password: str) -> None:
        answers.append(await auth.authenticate(_req(sid, password, f"{attacker}:2")))

    async with trio.open_nursery() as n:
        n.start_soon(attempt, "locked", "secret")
        n.start_soon(attempt, "other", "x")
    assert answers == [S.ESME_RBINDFAIL] * 2
    assert auth.checks == 3 and auth.failures["address_locked"] == 2
    # the real partner, from its own address, is not locked out: it waits for acme's next turn (<= 4 s)
    t0 = trio.current_time()
    account = await auth.authenticate(_req("locked", "secret", "10.0.0.9:1"))
    assert not isinstance(account, int) and account.system_id == "locked"
    assert trio.current_time() - t0 <= lim.bind_slowdown_max and auth.checks == 4
    # the attacker keeps trying at each turn (fresh system_ids): the lockout grows but stays bounded
    locks = []
    for i in range(8):
        await trio.sleep_until(auth.by_address.turn(attacker, trio.current_time()))
        assert await auth.authenticate(_req(f"n{i}", "x", f"{attacker}:1")) == S.ESME_RBINDFAIL
        now = trio.current_time()
        locks.append(auth.by_address.turn(attacker, now) - now)
    assert auth.checks == 12 and max(locks) <= lim.bind_lockout_max and locks[-1] == lim.bind_lockout_max
    # one warning for the whole episode, counted once; the single failures inside it are DEBUG
    episode = [r for r in caplog.records if r.levelno == logging.WARNING and attacker in r.getMessage()]
    assert len(episode) == 1
    assert _sample(metrics, "bind_slowdowns_total", key="address") == 1
    assert _sample(metrics, "bind_failures_total", reason="address_locked") == 2
    assert _sample(metrics, "bind_failures_total", reason="unknown_system_id") == 8
    # after bind_fail_reset of quiet the episode is over: the next failures are a new episode
    await trio.sleep(lim.bind_lockout_max + lim.bind_fail_reset)
    for _ in range(3):
        await auth.authenticate(_req("locked", "guess", f"{attacker}:1"))
    assert _sample(metrics, "bind_slowdowns_total", key="address") == 2


async def test_system_id_slowdown_is_bounded_and_a_known_partner_never_waits(
    db: Database, autojump_clock: trio.testing.MockClock
) -> None:
    await db.run(lambda conn: PartnerRepo(conn).add("slowed", "secret"))
    lim = LimitsConfig(bind_free_failures=2, bind_slowdown_max=4.0)
    auth = PostgresAuthenticator((await _partners(db)).get, limits=lambda: lim)
    assert not isinstance(await auth.authenticate(_req("slowed", "secret", "10.0.1.1:1")), int)
    # guesses for acme from twenty addresses at once: two are checked at once, then the checks are spaced
    # out (1 s, 2 s, ...); a guess whose turn is more than bind_slowdown_max away is refused unchecked
    statuses: list[Account | int] = []

    async def guess(i: int) -> None:
        statuses.append(await auth.authenticate(_req("slowed", f"guess{i}", f"10.0.2.{i}:1")))

    t0 = trio.current_time()
    async with trio.open_nursery() as n:
        for i in range(20):
            n.start_soon(guess, i)
        await trio.sleep(0)
        # meanwhile the partner binds again: its password passed before, so it passes at once
        account = await auth.authenticate(_req("slowed", "secret", "10.0.1.1:2"))
        assert not isinstance(account, int) and trio.current_time() == t0
    assert statuses == [S.ESME_RBINDFAIL] * 20
    assert auth.checks == 1 + 4 and auth.failures["system_id_slowed"] == 16
    # the slow-down ends on its own: a partner not remembered (e.g. after a restart) gets in within the bound
    auth.verified = VerifiedPasswords()
    now = trio.current_time()
    assert auth.by_system_id.turn("slowed", now) - now <= lim.bind_slowdown_max
    assert not isinstance(await auth.authenticate(_req("slowed", "secret", "10.0.1.1:3")), int)


async def test_a_flood_of_bad_binds_is_hashed_with_bounded_concurrency(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Real sockets from many loopback addresses: 40 wrong binds at once from one address cost
    ``bind_free_failures`` checks; unknown system_ids from 16 addresses are checked, two at a time; a
    partner already known binds meanwhile."""
    await db.run(lambda conn: PartnerRepo(conn).add("flooded", "secret"))
    running, peak = 0, 0
    lock = threading.Lock()
    real = gateway_auth.authenticate

    def observed(*args: Any) -> Any:
        nonlocal running, peak
        with lock:
            running += 1
            peak = max(peak, running)
        try:
            return real(*args)
        finally:
            with lock:
                running -= 1

    monkeypatch.setattr(gateway_auth, "authenticate", observed)
    lim = LimitsConfig(bind_hash_threads=2, bind_fail_delay=0.2)
    auth = PostgresAuthenticator((await _partners(db)).get, limits=lambda: lim)
    cfg = ServerConfig(port=0, session=SessionConfig(window_size=10, response_timeout=10, bind_timeout=10))
    server = SmppServer(cfg, auth)

    async def bind(source: str, sid: str, password: str) -> int:
        stream = await trio.open_tcp_stream("127.0.0.1", server.ports[0], local_address=source)
        try:
            return (await SansIoPeer(stream, Role.ESME).bind("trx", sid, password)).command_status
        finally:
            await trio.aclose_forcefully(stream)

    async with trio.open_nursery() as n:
        await n.start(server.serve)
        assert await bind("127.0.0.2", "flooded", "secret") == 0
        statuses: list[int] = []

        async def one(source: str, sid: str) -> None:
            statuses.append(await bind(source, sid, "wrong"))

        with trio.fail_after(60):
            async with trio.open_nursery() as flood:
                for _ in range(40):
                    flood.start_soon(one, "127.0.0.3", "flooded")
                for i in range(16):
                    flood.start_soon(one, f"127.0.1.{i + 1}", f"nobody{i}")
                await trio.sleep(0.05)
                assert await bind("127.0.0.2", "flooded", "secret") == 0
        assert statuses == [S.ESME_RBINDFAIL] * 56
        assert auth.checks == 1 + lim.bind_free_failures + 16
        assert peak <= lim.bind_hash_threads
        n.cancel_scope.cancel()
