"""serve_http on its own: HTTPS with the configured certificate, and a graceful stop when ``stop`` is set."""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import httpx
import trio
import trustme

from catalyst_smpp.config import HttpConfig
from catalyst_smpp.http.app import create_app
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.server import serve_http
from tests.services import free_port


async def test_https_and_graceful_stop(tmp_path: Path) -> None:
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    cert_file, key_file = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert.cert_chain_pems[0].write_to_path(str(cert_file))
    cert.private_key_pem.write_to_path(str(key_file))
    port = free_port()
    cfg = HttpConfig(host="127.0.0.1", port=port, tls_cert=cert_file, tls_key=key_file)
    nothing: Any = None
    ctx = ApiContext(nothing, nothing, lambda s: None, nothing, nothing, lambda p: None, node="n1")
    stop = trio.Event()
    verify = ssl.create_default_context()
    ca.configure_trust(verify)
    with trio.fail_after(10):  # includes the nursery's end: the server returns once stop is set
        await _serve_once(cfg, ctx, stop, verify, port)
    async with httpx.AsyncClient(verify=verify) as c:
        try:
            await c.get(f"https://127.0.0.1:{port}/health")
        except httpx.ConnectError:
            pass
        else:
            raise AssertionError("still serving after stop")


async def _serve_once(
    cfg: HttpConfig, ctx: ApiContext, stop: trio.Event, verify: ssl.SSLContext, port: int
) -> None:
    async with trio.open_nursery() as n:
        await n.start(serve_http, create_app(ctx), cfg, stop)
        async with httpx.AsyncClient(verify=verify) as c:
            r = await c.get(f"https://127.0.0.1:{port}/health")
            assert r.status_code == 200 and r.json() == {"status": "ok", "node": "n1"}
            r = await c.get(f"https://127.0.0.1:{port}/api/v4/sms/1/status")
            assert r.status_code == 401 and r.json()["error"]["code"] == "UNAUTHORIZED"
        stop.set()
