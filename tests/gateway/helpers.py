"""Shared pieces of the gateway tests: records, a partner server on real JetStream, smpplib in a thread."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import smpplib.client
import trio

from catalyst_smpp.gateway.accept import AcceptHandler
from catalyst_smpp.gateway.auth import PostgresAuthenticator
from catalyst_smpp.gateway.ids import IdGenerator
from catalyst_smpp.gateway.routing import Router
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.server import ServerConfig, SmppServer
from catalyst_smpp.store.passwords import hash_password
from catalyst_smpp.store.records import ConfigSnapshot, Operator, Partner, Route, RouteTarget

_HASHES: dict[str, str] = {}


def partner(system_id: str = "acme", password: str = "secret", **kw: Any) -> Partner:
    h = _HASHES.get(password)
    if h is None:
        h = _HASHES[password] = hash_password(password)
    return Partner(id=abs(hash(system_id)) % 100000, system_id=system_id, password_hash=h, **kw)


def operator(name: str, **kw: Any) -> Operator:
    return Operator(id=abs(hash(name)) % 100000, name=name, host="127.0.0.1", port=1, system_id=name, **kw)


def route(rid: int, partner_id: str | None, prefix: str, *ops: str, **kw: Any) -> Route:
    return Route(
        id=rid,
        partner=partner_id,
        dest_prefix=prefix,
        targets=tuple(RouteTarget(o, i, 1) for i, o in enumerate(ops)),
        **kw,
    )


def snapshot(partners: list[Partner], operators: list[Operator], routes: list[Route]) -> ConfigSnapshot:
    return ConfigSnapshot(
        version=1, partners=tuple(partners), operators=tuple(operators), routes=tuple(routes)
    )


class PartnerServer:
    """SmppServer + PostgresAuthenticator + AcceptHandler on a bus, from an in-memory snapshot."""

    def __init__(
        self,
        bus: Any,
        snap: ConfigSnapshot,
        *,
        events: Any = None,
        accept_kw: dict[str, Any] | None = None,
        **server_kw: Any,
    ) -> None:
        """``accept_kw``: more AcceptHandler arguments (``charger``, ``clock``)."""
        accept_kw = accept_kw or {}
        self.snap = snap
        self.router = Router(snap)
        self.partners = {p.system_id: p for p in snap.partners}
        self.accept = AcceptHandler(
            bus,
            lambda: self.router,
            self.partners.get,
            IdGenerator(3),
            events=events,
            node="test",
            **accept_kw,
        )
        cfg = ServerConfig(
            port=0,
            session=SessionConfig(
                window_size=10, response_timeout=10, bind_timeout=10, enquire_link_interval=30
            ),
        )
        self.server = SmppServer(
            cfg, PostgresAuthenticator(self.partners.get), self.accept.handle, **server_kw
        )

    @property
    def port(self) -> int:
        return self.server.ports[0]


@contextlib.asynccontextmanager
async def partner_server(bus: Any, snap: ConfigSnapshot, **kw: Any) -> AsyncIterator[PartnerServer]:
    ps = PartnerServer(bus, snap, **kw)
    async with trio.open_nursery() as n:
        await n.start(ps.accept.run)
        await n.start(ps.server.serve)
        yield ps
        await ps.server.shutdown(1.0)
        n.cancel_scope.cancel()


def smpplib_client(port: int, timeout: float = 10) -> smpplib.client.Client:
    c = smpplib.client.Client("127.0.0.1", port, timeout=timeout, allow_unknown_opt_params=True)
    c.connect()
    return c


def receive_deliveries(
    port: int,
    system_id: str,
    password: str,
    count: int,
    *,
    deadline: float = 30.0,
    bind: str = "receiver",
    on_bound: Callable[[], None] | None = None,
    status_for: Callable[[Any, int], int] | None = None,
) -> list[Any]:
    """Bind with smpplib; collect ``count`` deliver_sm (answered ESME_ROK unless ``status_for`` says so)."""
    c = smpplib_client(port)
    got: list[Any] = []

    def on_message(pdu: Any) -> int:
        got.append(pdu)
        return status_for(pdu, len(got)) if status_for is not None else 0

    c.set_message_received_handler(on_message)
    try:
        getattr(c, f"bind_{bind}")(system_id=system_id, password=password)
        if on_bound is not None:
            on_bound()
        end = time.monotonic() + deadline
        c._socket.settimeout(0.5)
        while len(got) < count and time.monotonic() < end:
            try:
                c.read_once(auto_send_enquire_link=False)
            except TimeoutError:
                continue
        with contextlib.suppress(Exception):
            c.unbind()
    finally:
        c.disconnect()
    return got
