"""The HTTP layer alone: what the API's server costs per request, and what the API's own send route adds.

One command::

    .venv/bin/python bench/http_layer.py                    # 3 rounds, 5 s each, 50 keep-alive connections
    .venv/bin/python bench/http_layer.py --src /work/wt-base/src   # another tree's server and API beside

Each server is its own process (one worker: the tree's ``serve_http``), loaded by ``wrk`` (1 thread, 50
keep-alive connections; ``httpx`` on trio when wrk is not installed: it costs far more CPU, so its figures
are lower):

* ``h11``: a fixed 202 JSON answer from a bare h11 loop on trio (no ASGI, one task per connection, one write
  per response) -- what trio and the HTTP/1.1 parsing cost by themselves, the floor under any server on them
  (a reference, not a server of ours);
* ``trivial``: a bare ASGI app giving the same answer on the tree's server -- the server's own cost;
* ``send``: the gateway's app (``api_app``: the fast send route before the FastAPI app) answering ``POST
  /api/v4/sms/send`` with a stub accept pipeline (no bus, no database, no SMPP: ``submit_api`` answers at
  once) -- the HTTP layer's cost of a send: key check, validation, compose, the answer;
* ``trivial@SRC``, ``send@SRC``: the same from another source tree (``--src``; Hypercorn before this tree's
  own server), for before/after comparisons in one run.

The servers are run in turn, round after round (noise on a shared machine hits them alike); the figures are
the medians of the rounds: requests/s and the server's CPU per request (user+system, from /proc).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import psutil
from _procs import wait_for_port_file

BODY = {"to": "+447700900123", "from": "Catalyst", "message": "Benchmark message 0123456789",
        "delivery_report": True}  # fmt: skip
PATH = "/api/v4/sms/send"

_WRK_SCRIPT = """
wrk.method = "POST"
wrk.body = os.getenv("BODY")
wrk.headers["Content-Type"] = "application/json"
wrk.headers["X-API-Key"] = os.getenv("KEY")
"""


# ------------------------------------------------------------------ the servers (child processes)


async def _trivial(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while (await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    more = True
    while more:
        more = (await receive()).get("more_body", False)
    headers = [(b"content-type", b"application/json"), (b"content-length", str(len(_TRIVIAL_BODY)).encode())]
    await send({"type": "http.response.start", "status": 202, "headers": headers})
    await send({"type": "http.response.body", "body": _TRIVIAL_BODY})


_TRIVIAL_BODY = b'{"status":"accepted","message_id":"0123456789abcdef"}'


async def _h11_connection(stream: Any) -> None:
    import h11
    import trio

    conn = h11.Connection(h11.SERVER)
    headers = [("content-type", "application/json"), ("content-length", str(len(_TRIVIAL_BODY)))]
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = await stream.receive_some(65536)
                if not data:
                    return
                conn.receive_data(data)
            elif isinstance(event, h11.EndOfMessage):
                out = conn.send(h11.Response(status_code=202, headers=headers))
                out += conn.send(h11.Data(data=_TRIVIAL_BODY)) + conn.send(h11.EndOfMessage())
                await stream.send_all(out)
                conn.start_next_cycle()
            elif isinstance(event, h11.ConnectionClosed):
                return
    except (trio.BrokenResourceError, trio.ClosedResourceError, h11.RemoteProtocolError):
        return


def _stub_app(key_text: str) -> Any:
    """The gateway's app over a stub context: one partner, one key, an accept that answers at once."""
    import attrs

    from catalyst_smpp.gateway.accept import ApiResult
    from catalyst_smpp.gateway.ids import IdGenerator
    from catalyst_smpp.http.app import create_app
    from catalyst_smpp.http.context import ApiContext
    from catalyst_smpp.http.keys import ApiKey, KeyStore, hash_secret, parse_key
    from catalyst_smpp.http.ratelimit import KeyLimiter
    from catalyst_smpp.store.records import Partner

    parsed = parse_key(key_text)
    assert parsed is not None
    prefix, secret = parsed
    import datetime as dt

    row = (ApiKey(1, "acme", "bench", prefix, None, dt.datetime.now(dt.UTC)), hash_secret(secret))

    class _Db:
        async def run(self, fn: Any, *args: Any) -> Any:
            return row  # the key's row, whatever is asked (only key lookups reach it here)

    ids = IdGenerator(1)

    @attrs.define
    class _Accept:
        async def submit_api(self, partner: Any, pdus: Any, dc0: str = "gsm7") -> list[ApiResult]:
            return [ApiResult(0, ids.next(), 1, 0, "", "", "opA") for _ in pdus]

    partner = Partner(1, "acme", "x", throttle_rate=1e9, throttle_burst=10**9)
    ctx = ApiContext(
        accept=_Accept(),  # type: ignore[arg-type]
        db=_Db(),  # type: ignore[arg-type]
        partners=lambda sid: partner,
        keys=KeyStore(_Db(), ttl=5.0),  # type: ignore[arg-type]
        limiter=KeyLimiter(1e9),
        throttle=lambda p: None,
    )
    try:
        from catalyst_smpp.http.server import api_app
    except ImportError:  # a tree from before the fast send route
        return create_app(ctx)
    return api_app(ctx)


def serve(mode: str, port_file: Path, key: str) -> None:
    import trio

    def write_port(port: int) -> None:
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(port))
        tmp.rename(port_file)

    if mode == "h11":

        async def h11_main() -> None:
            listeners = await trio.open_tcp_listeners(0, host="127.0.0.1")
            write_port(listeners[0].socket.getsockname()[1])
            await trio.serve_listeners(_h11_connection, listeners)

        trio.run(h11_main)
        return
    from catalyst_smpp.config import HttpConfig
    from catalyst_smpp.http.server import serve_http  # the tree's own server (--src: another tree's)

    app = _trivial if mode == "trivial" else _stub_app(key)

    async def main() -> None:
        async with trio.open_nursery() as n:
            binds = await n.start(serve_http, app, HttpConfig(host="127.0.0.1", port=0), trio.Event())
            write_port(int(binds[0].rsplit(":", 1)[1]))

    trio.run(main)


# ------------------------------------------------------------------ the load


def _wrk(url: str, key: str, seconds: float, connections: int, script: Path) -> int:
    env = {**os.environ, "KEY": key, "BODY": json.dumps(BODY)}
    out = subprocess.run(
        ["wrk", "-t1", f"-c{connections}", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True, text=True, check=True, env=env,
    ).stdout  # fmt: skip
    if "Non-2xx" in out:
        raise RuntimeError(f"answers other than 2xx: {out}")
    for line in out.splitlines():
        if "requests in" in line:
            return int(line.split()[0])
    raise RuntimeError(f"wrk said: {out}")


def _httpx(url: str, key: str, seconds: float, connections: int) -> int:
    import httpx
    import trio

    done = 0

    async def main() -> None:
        async def client() -> None:
            nonlocal done
            async with httpx.AsyncClient(headers={"X-API-Key": key}, timeout=30.0) as c:
                while trio.current_time() < end:
                    r = await c.post(url, json=BODY)
                    done += r.status_code == 202

        end = trio.current_time() + seconds
        async with trio.open_nursery() as n:
            for _ in range(connections):
                n.start_soon(client)

    trio.run(main)
    return done


def load(url: str, key: str, seconds: float, connections: int, client: str, script: Path) -> int:
    if client == "wrk":
        return _wrk(url, key, seconds, connections, script)
    return _httpx(url, key, seconds, connections)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--seconds", type=float, default=5.0)
    p.add_argument("--connections", type=int, default=50)
    p.add_argument("--src", help="another source tree's src/ (its send beside this one's)")
    p.add_argument("--client", choices=["wrk", "httpx"], default=None, help="default: wrk when installed")
    p.add_argument("--json", action="store_true")
    p.add_argument("--serve", help=argparse.SUPPRESS)
    p.add_argument("--port-file", help=argparse.SUPPRESS)
    p.add_argument("--key", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.serve:
        serve(args.serve, Path(args.port_file), args.key)
        return 0
    from catalyst_smpp.http.keys import make_key

    key = make_key()[0]
    client = args.client or ("wrk" if shutil.which("wrk") else "httpx")
    here = str(Path(__file__).resolve().parents[1] / "src")
    servers = [("h11", "h11", here), ("trivial", "trivial", here), ("send", "send", here)]
    if args.src:
        other = str(Path(args.src).resolve())
        servers += [(f"trivial@{args.src}", "trivial", other), (f"send@{args.src}", "send", other)]
    figures: dict[str, list[tuple[float, float]]] = {name: [] for name, _m, _s in servers}
    with tempfile.TemporaryDirectory(prefix="bench-http-layer-") as tmpdir:
        script = Path(tmpdir) / "post.lua"
        script.write_text(_WRK_SCRIPT)
        for _round in range(args.rounds):
            for i, (name, mode, src) in enumerate(servers):
                port_file = Path(tmpdir) / f"{i}-{_round}.port"
                env = {**os.environ, "PYTHONPATH": src}
                proc = subprocess.Popen(
                    [sys.executable, __file__, "--serve", mode, "--port-file", str(port_file), "--key", key],
                    env=env, stderr=subprocess.DEVNULL,
                )  # fmt: skip
                try:
                    port = wait_for_port_file(port_file, proc)
                    url = f"http://127.0.0.1:{port}" + (PATH if mode == "send" else "/")
                    load(url, key, 1.0, args.connections, client, script)  # warm up (the key cache too)
                    ps = psutil.Process(proc.pid)
                    cpu0 = sum(ps.cpu_times()[:2])
                    t0 = time.perf_counter()
                    n = load(url, key, args.seconds, args.connections, client, script)
                    seconds = time.perf_counter() - t0
                    cpu = sum(ps.cpu_times()[:2]) - cpu0
                    figures[name].append((n / seconds, cpu / max(n, 1) * 1e6))
                finally:
                    proc.terminate()
                    proc.wait(10)
    out = {
        name: {
            "requests_per_s": statistics.median(r for r, _c in runs),
            "cpu_us_per_request": statistics.median(c for _r, c in runs),
            "rounds": [[round(r), round(c)] for r, c in runs],
        }
        for name, runs in figures.items()
    }
    if args.json:
        print(json.dumps({"client": client, **out}, indent=2))
        return 0
    print(f"client: {client}, {args.connections} keep-alive connections, "
          f"{args.rounds} rounds of {args.seconds:g} s")  # fmt: skip
    for name, f in out.items():
        print(f"  {name:>12}: {f['requests_per_s']:6.0f} req/s, "
              f"server CPU {f['cpu_us_per_request']:5.0f} µs/request  (rounds: {f['rounds']})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
