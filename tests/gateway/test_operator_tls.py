"""Operator links over TLS: the connector checks the SMSC's certificate against the operator's
``tls_ca_file`` for its ``tls_server_name``, and a failed handshake is logged with its reason.  The SMSC is
the simulator serving SMPP over trio TLS with a certificate from a CA made for the test (trustme)."""

from __future__ import annotations

import logging
import ssl
from contextlib import AsyncExitStack
from pathlib import Path

import attrs
import pytest
import trio
import trustme

from catalyst_smpp.bus import Bus
from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.sim import SimConfig, open_simulator
from tests.gateway.test_connector import make_operator, mt, publish_mt, running, wait_for

SERVER_NAME = "smsc.operator.example"


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def server_context(ca: trustme.CA) -> ssl.SSLContext:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(SERVER_NAME).configure_cert(ctx)
    return ctx


@pytest.fixture
def ca_file(ca: trustme.CA, tmp_path: Path) -> str:
    path = tmp_path / "operator-ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def other_ca_file(tmp_path: Path) -> str:
    path = tmp_path / "another-ca.pem"
    trustme.CA().cert_pem.write_to_path(str(path))
    return str(path)


def _connect_failures(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if "connect failed" in r.getMessage()]


async def test_binds_with_its_ca_file_and_server_name(
    bus: Bus, server_context: ssl.SSLContext, ca_file: str
) -> None:
    async with open_simulator(SimConfig(receipts=False), ssl_context=server_context) as sim:
        # the host is an address the certificate does not name: the server name is what is checked
        op = make_operator(sim.port, tls=True, tls_ca_file=ca_file, tls_server_name=SERVER_NAME)
        async with running(bus, op) as conn:
            await wait_for(lambda: conn.is_up)
            await publish_mt(bus, [mt(op.name, "over TLS")])
            await wait_for(lambda: conn.stats.submitted == 1)
        assert [a.text for a in sim.assembled()] == ["over TLS"]


@pytest.mark.parametrize(
    ("which", "reason"),
    [
        ("wrong_ca", "certificate verify failed: unable to get local issuer certificate"),
        ("wrong_name", "certificate verify failed: Hostname mismatch"),
        ("system_cas", "certificate verify failed: unable to get local issuer certificate"),
    ],
)
async def test_failed_handshake_is_logged_with_its_reason(
    bus: Bus,
    server_context: ssl.SSLContext,
    ca_file: str,
    other_ca_file: str,
    caplog: pytest.LogCaptureFixture,
    which: str,
    reason: str,
) -> None:
    settings = {
        "wrong_ca": {"tls_ca_file": other_ca_file, "tls_server_name": SERVER_NAME},
        "wrong_name": {"tls_ca_file": ca_file, "tls_server_name": "other.operator.example"},
        "system_cas": {"tls_server_name": SERVER_NAME},
    }[which]
    caplog.set_level(logging.WARNING, logger="catalyst_smpp.client.client")
    async with open_simulator(SimConfig(receipts=False), ssl_context=server_context) as sim:
        op = make_operator(sim.port, tls=True, **settings)
        async with running(bus, op) as conn:
            await wait_for(lambda: conn.client is not None and conn.client.stats.connect_failures >= 2)
            assert not conn.is_up
        assert sim.stats.binds == 0
    lines = _connect_failures(caplog)
    assert lines and all(f"TLS handshake failed: {reason}" in line for line in lines), lines
    assert not any("BrokenResourceError" in line for line in lines)


async def _closes_at_once(stream: trio.abc.Stream) -> None:
    await stream.aclose()


@pytest.mark.parametrize(
    ("peer", "reason"),
    [
        ("untrusted", "certificate verify failed: unable to get local issuer certificate"),
        ("plain", "[SSL: WRONG_VERSION_NUMBER] wrong version number"),  # tls set for a plain SMPP port
        ("closes", "the peer closed the connection"),
    ],
)
async def test_client_reports_the_handshake_failure_cause(
    server_context: ssl.SSLContext, caplog: pytest.LogCaptureFixture, peer: str, reason: str
) -> None:
    """SmppClient itself (any TLS peer, not only operators): the cause, not BrokenResourceError()."""
    caplog.set_level(logging.WARNING, logger="catalyst_smpp.client.client")
    async with AsyncExitStack() as stack:
        if peer == "closes":
            n = await stack.enter_async_context(trio.open_nursery())
            stack.callback(n.cancel_scope.cancel)
            port = (await n.start(trio.serve_tcp, _closes_at_once, 0))[0].socket.getsockname()[1]
        else:
            tls = server_context if peer == "untrusted" else None
            port = (await stack.enter_async_context(open_simulator(SimConfig(), ssl_context=tls))).port
        cfg = ClientConfig(
            "127.0.0.1",
            port,
            "esme",
            "pw",
            ssl_context=ssl.create_default_context(),  # the system's CAs do not know the test CA
            server_hostname=SERVER_NAME,
            reconnect=False,
        )
        client = SmppClient(cfg)
        await client.run()
        assert client.stats.connect_failures == 1 and client.stats.binds == 0
    (line,) = _connect_failures(caplog)
    assert line.endswith(f"connect failed: TLS handshake failed: {reason}"), line


async def test_unusable_ca_file_is_logged_and_the_link_stays_down(
    bus: Bus, server_context: ssl.SSLContext, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = str(tmp_path / "not-there.pem")
    caplog.set_level(logging.ERROR, logger="catalyst_smpp.gateway.connector")
    async with open_simulator(SimConfig(receipts=False), ssl_context=server_context) as sim:
        op = make_operator(sim.port, tls=True, tls_ca_file=missing, tls_server_name=SERVER_NAME)
        async with running(bus, op) as conn:
            await wait_for(lambda: any("cannot be used" in r.getMessage() for r in caplog.records))
            assert conn.client is None and not conn.is_up
        assert sim.stats.binds == 0
    (line,) = [r.getMessage() for r in caplog.records if "cannot be used" in r.getMessage()]
    assert op.name in line and missing in line and "No such file" in line, line


async def test_changed_server_name_reconnects(
    bus: Bus, server_context: ssl.SSLContext, ca_file: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="catalyst_smpp.client.client")
    async with open_simulator(SimConfig(receipts=False), ssl_context=server_context) as sim:
        op = make_operator(sim.port, tls=True, tls_ca_file=ca_file)  # host 127.0.0.1: not in the certificate
        async with running(bus, op) as conn:
            await wait_for(lambda: conn.client is not None and conn.client.stats.connect_failures >= 1)
            line = _connect_failures(caplog)[0]
            assert "IP address mismatch, certificate is not valid for '127.0.0.1'" in line, line
            conn.update(attrs.evolve(op, tls_server_name=SERVER_NAME))
            await wait_for(lambda: conn.is_up)
        assert sim.stats.binds == 1
