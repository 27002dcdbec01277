"""The API's HTTP/1.1 server (``http/h11server.py``) on its own, over raw trio sockets: keep-alive,
pipelining, bodies (Content-Length, chunked, 100-continue, too large), refused requests, timeouts, app
failures, the ASGI scope, a graceful stop, and random bytes (which must never break the server)."""

from __future__ import annotations

import json
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import attrs
import trio
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalyst_smpp.http.h11server import Limits, serve

LIMITS = Limits(max_body=1000, max_connections=8, head_timeout=2.0, keep_alive=0.5, idle_timeout=2.0)


@attrs.define
class Echo:
    """The app: answers each request with what it saw (JSON); a few paths misbehave on purpose."""

    release: trio.Event = attrs.field(factory=trio.Event)
    started: trio.Event = attrs.field(factory=trio.Event)
    scopes: list[dict[str, Any]] = attrs.field(factory=list)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scopes.append(scope)
        path = scope["path"]
        if path == "/fail-before":
            raise RuntimeError("before the answer")
        body = b""
        more = True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message["body"]
            more = message["more_body"]
        if path == "/slow":
            self.started.set()
            await self.release.wait()
        answer = json.dumps(
            {"path": path, "query": scope["query_string"].decode(), "body": body.decode("latin-1")}
        )
        headers = [(b"content-type", b"application/json")]
        if path == "/stream":  # in parts, no length: chunked
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            for part in (answer[:5], answer[5:]):
                await send({"type": "http.response.body", "body": part.encode(), "more_body": True})
            await send({"type": "http.response.body", "body": b""})
            return
        if path == "/fail-after":  # part of the answer is on its way
            await send({"type": "http.response.start", "status": 200, "headers": headers})
            await send({"type": "http.response.body", "body": b"{", "more_body": True})
            raise RuntimeError("after the start")
        await send({"type": "http.response.start", "status": 200, "headers": headers})
        await send({"type": "http.response.body", "body": answer.encode()})


@attrs.define
class Running:
    port: int
    stop: trio.Event
    app: Echo
    clients: list[trio.SocketStream] = attrs.field(factory=list)

    async def connect(self) -> trio.SocketStream:
        """A client connection, closed with the server."""
        stream = await trio.open_tcp_stream("127.0.0.1", self.port)
        self.clients.append(stream)
        return stream


@asynccontextmanager
async def running(limits: Limits = LIMITS, graceful: float = 5.0) -> AsyncIterator[Running]:
    app = Echo()
    stop = trio.Event()
    async with trio.open_nursery() as n:
        binds = await n.start(lambda task_status: serve(
            app, "127.0.0.1", 0, stop, graceful=graceful, limits=limits, task_status=task_status
        ))  # fmt: skip
        srv = Running(int(binds[0].rsplit(":", 1)[1]), stop, app)
        try:
            yield srv
        finally:
            for client in srv.clients:
                await trio.aclose_forcefully(client)
            stop.set()


@attrs.define
class Response:
    status: int
    headers: dict[bytes, bytes]
    body: bytes


class Reader:
    """Reads HTTP/1.1 responses off a raw stream (Content-Length and chunked bodies)."""

    def __init__(self, stream: trio.SocketStream) -> None:
        self.stream = stream
        self.buf = b""
        self.eof = False

    async def _fill(self) -> None:
        data = await self.stream.receive_some(65536)
        if not data:
            self.eof = True
            raise EOFError
        self.buf += data

    async def _until(self, sep: bytes) -> bytes:
        while sep not in self.buf:
            await self._fill()
        out, self.buf = self.buf.split(sep, 1)
        return out

    async def _exactly(self, n: int) -> bytes:
        while len(self.buf) < n:
            await self._fill()
        out, self.buf = self.buf[:n], self.buf[n:]
        return out

    async def response(self) -> Response:
        head = (await self._until(b"\r\n\r\n")).split(b"\r\n")
        status = int(head[0].split(b" ")[1])
        assert head[0].startswith(b"HTTP/1.1 "), head[0]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(b":") for h in head[1:])}
        if status < 200:
            return Response(status, headers, b"")
        if headers.get(b"transfer-encoding") == b"chunked":
            body = b""
            while size := int(await self._until(b"\r\n"), 16):
                body += await self._exactly(size)
                await self._exactly(2)
            await self._exactly(2)
            return Response(status, headers, body)
        return Response(status, headers, await self._exactly(int(headers.get(b"content-length", b"0"))))

    async def rest(self) -> bytes:
        """All that comes until the server closes the connection."""
        try:
            while True:
                await self._fill()
        except (EOFError, trio.BrokenResourceError):
            return self.buf

    async def closed(self) -> bool:
        """Whether the server closes the connection with nothing more said."""
        return not await self.rest()


def get(path: str, extra: str = "") -> bytes:
    return f"GET {path} HTTP/1.1\r\nHost: t\r\n{extra}\r\n".encode()


def post(path: str, body: bytes, extra: str = "") -> bytes:
    return f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{extra}\r\n".encode() + body


async def test_keep_alive_reuses_the_connection() -> None:
    async with running() as srv:
        s = await srv.connect()
        r = Reader(s)
        for i in range(3):
            await s.send_all(post(f"/n{i}", b"x" * i))
            resp = await r.response()
            assert resp.status == 200 and json.loads(resp.body) == {
                "path": f"/n{i}",
                "query": "",
                "body": "x" * i,
            }
            assert b"date" in resp.headers and b"connection" not in resp.headers
        assert len({sc["client"] for sc in srv.app.scopes}) == 1  # one connection for all three


async def test_pipelined_requests_are_answered_in_order() -> None:
    async with running() as srv:
        s = await srv.connect()
        await s.send_all(b"".join([post("/a", b"1"), get("/b?x=1"), post("/c", b"333")]))
        r = Reader(s)
        got = [json.loads((await r.response()).body) for _ in range(3)]
        assert [(g["path"], g["query"], g["body"]) for g in got] == [
            ("/a", "", "1"),
            ("/b", "x=1", ""),
            ("/c", "", "333"),
        ]


async def test_chunked_request_body_and_chunked_answer() -> None:
    async with running() as srv:
        s = await srv.connect()
        head = b"POST /stream HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n"
        await s.send_all(head + b"5\r\nhello\r\n")
        await s.send_all(b"6\r\n world\r\n0\r\n\r\n")
        resp = await Reader(s).response()
        assert resp.status == 200 and resp.headers[b"transfer-encoding"] == b"chunked"
        assert json.loads(resp.body)["body"] == "hello world"


async def test_expect_100_continue() -> None:
    async with running() as srv:
        s = await srv.connect()
        r = Reader(s)
        await s.send_all(b"POST /e HTTP/1.1\r\nHost: t\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n")
        assert (await r.response()).status == 100  # before the client sends its body
        await s.send_all(b"body")
        resp = await r.response()
        assert resp.status == 200 and json.loads(resp.body)["body"] == "body"


async def test_oversized_body_is_413() -> None:
    async with running() as srv:
        s = await srv.connect()  # Content-Length over the limit: refused before the app runs
        await s.send_all(post("/big", b"x" * 1001))
        r = Reader(s)
        resp = await r.response()
        assert resp.status == 413 and resp.headers[b"connection"] == b"close"
        assert await r.closed()
        s = await srv.connect()  # chunked: refused when the body passes the limit
        await s.send_all(b"POST /big HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n")
        for _ in range(3):
            await s.send_all(b"190\r\n" + b"y" * 400 + b"\r\n")
        r = Reader(s)
        assert (await r.response()).status == 413
        assert await r.closed()
        assert [sc["path"] for sc in srv.app.scopes] == ["/big"]  # the first never reached the app


async def test_malformed_request_is_400_and_closed() -> None:
    async with running() as srv:
        for bad in (b"NOT HTTP AT ALL\r\n\r\n", b"GET / HTTP/1.1\r\nHost: t\r\nBad Header\r\n\r\n"):
            s = await srv.connect()
            await s.send_all(bad)
            r = Reader(s)
            resp = await r.response()
            assert resp.status == 400 and resp.headers[b"connection"] == b"close"
            assert await r.closed()
        s = await srv.connect()  # a bad chunk, found while the app reads the body
        await s.send_all(b"POST /x HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n")
        r = Reader(s)
        assert (await r.response()).status == 400
        assert await r.closed()


async def test_http_1_0_is_answered_then_closed() -> None:
    async with running() as srv:
        s = await srv.connect()
        await s.send_all(b"GET /old HTTP/1.0\r\n\r\n")
        r = Reader(s)
        resp = await r.response()
        assert resp.status == 200 and json.loads(resp.body)["path"] == "/old"
        assert srv.app.scopes[0]["http_version"] == "1.0"
        assert await r.closed()


async def test_idle_connection_is_closed() -> None:
    async with running() as srv:
        s = await srv.connect()
        r = Reader(s)
        await s.send_all(get("/once"))
        assert (await r.response()).status == 200
        with trio.fail_after(10):  # keep_alive is 0.5 s: the server closes the connection, not the test
            assert await r.closed()
        s = await srv.connect()  # a head never finished: the head timeout (2 s)
        await s.send_all(b"GET /slowloris HTTP/1.1\r\nHost: t\r\n")
        with trio.fail_after(10):
            assert await Reader(s).closed()
        assert srv.app.scopes[-1]["path"] == "/once"


async def test_app_failures() -> None:
    async with running() as srv:
        s = await srv.connect()
        r = Reader(s)
        await s.send_all(get("/fail-before"))
        assert (await r.response()).status == 500
        await s.send_all(get("/after-500"))  # the connection carries on after a 500
        assert json.loads((await r.response()).body)["path"] == "/after-500"
        await s.send_all(get("/fail-after"))
        cut = await r.rest()  # the answer had started: all the server can do is close
        assert cut.startswith(b"HTTP/1.1 200 ") and cut.endswith(b"\r\n\r\n1\r\n{\r\n")


async def test_scope() -> None:
    async with running() as srv:
        s = await srv.connect()
        await s.send_all(get("/a%20b/c?q=%20&r", "X-Thing: One\r\n"))
        assert (await Reader(s).response()).status == 200
        sc = srv.app.scopes[0]
        assert sc["type"] == "http" and sc["asgi"]["version"] == "3.0" and sc["http_version"] == "1.1"
        assert (sc["method"], sc["scheme"], sc["root_path"]) == ("GET", "http", "")
        assert (sc["path"], sc["raw_path"], sc["query_string"]) == ("/a b/c", b"/a%20b/c", b"q=%20&r")
        assert (b"x-thing", b"One") in sc["headers"] and (b"host", b"t") in sc["headers"]
        assert sc["server"] == ("127.0.0.1", srv.port) and sc["client"][0] == "127.0.0.1"


async def test_graceful_stop_finishes_the_request_in_flight() -> None:
    async with running() as srv:
        busy, idle = await srv.connect(), await srv.connect()
        await idle.send_all(get("/first"))
        idle_reader = Reader(idle)
        assert (await idle_reader.response()).status == 200
        await busy.send_all(get("/slow"))
        await srv.app.started.wait()
        srv.stop.set()
        with trio.fail_after(10):
            assert await idle_reader.closed()  # idle: closed at once
        try:
            await srv.connect()
        except OSError:
            pass
        else:
            raise AssertionError("a new connection was accepted after stop")
        srv.app.release.set()
        r = Reader(busy)
        resp = await r.response()
        assert resp.status == 200 and resp.headers[b"connection"] == b"close"
        assert await r.closed()


async def test_graceful_stop_cancels_after_the_grace() -> None:
    with trio.fail_after(10):
        async with running(graceful=0.2) as srv:
            s = await srv.connect()
            await s.send_all(get("/slow"))
            await srv.app.started.wait()
            srv.stop.set()
            assert await Reader(s).closed()  # never released: cut at the end of the grace


async def test_connections_are_bounded() -> None:
    async with running(Limits(max_connections=2, keep_alive=30.0)) as srv:
        a, b = await srv.connect(), await srv.connect()
        for s in (a, b):
            await s.send_all(get("/held"))
            assert (await Reader(s).response()).status == 200
        c = await srv.connect()  # the kernel completes the handshake; the server does not take it yet
        await c.send_all(get("/third"))
        with trio.move_on_after(0.3):
            await Reader(c).response()
            raise AssertionError("a third connection was served while two were open")
        await a.aclose()
        resp = await Reader(c).response()
        assert json.loads(resp.body)["path"] == "/third"


# ------------------------------------------------------------------ random bytes


VALID = post("/v", b"abc")


def _mutations() -> st.SearchStrategy[bytes]:
    """Random bytes, and valid requests with random bytes put in, cut out or written over."""

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = bytearray(VALID * draw(st.integers(1, 3)))
        for _ in range(draw(st.integers(1, 4))):
            at = draw(st.integers(0, len(data)))
            junk = draw(st.binary(min_size=0, max_size=20))
            cut = draw(st.integers(0, 10))
            data[at : at + cut] = junk
        return bytes(data)

    return st.one_of(st.binary(max_size=400), mutated())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(chunks=st.lists(_mutations(), min_size=1, max_size=3))
def test_random_bytes_never_break_the_server(chunks: list[bytes]) -> None:
    """Each connection is answered (an HTTP/1.1 status line each time) or closed, nothing is logged as a fault
    of ours, and the server answers a valid request afterwards."""
    faults: list[logging.LogRecord] = []

    class Catch(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            faults.append(record)

    handler = Catch(logging.ERROR)
    logger = logging.getLogger("catalyst_smpp.http.h11server")
    logger.addHandler(handler)

    async def main() -> None:
        with trio.fail_after(30):
            async with running() as srv:
                for data in chunks:
                    s = await srv.connect()
                    try:
                        await s.send_all(data)
                        await s.send_eof()
                    except trio.BrokenResourceError:
                        pass  # refused and closed already
                    r = Reader(s)
                    try:
                        while True:
                            assert (await r.response()).status in {100, 200, 400, 413, 431, 500, 501, 505}
                    except (EOFError, trio.BrokenResourceError):
                        pass
                    await s.aclose()
                s = await srv.connect()
                await s.send_all(VALID)
                assert (await Reader(s).response()).status == 200

    try:
        trio.run(main)
    finally:
        logger.removeHandler(handler)
    assert not faults, [f.getMessage() for f in faults]
