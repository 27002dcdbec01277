"""The HTTP API's server: HTTP/1.1 for an ASGI 3 app on trio, with h11 doing the protocol.

Why a server of our own.  Hypercorn on trio (the server before this one) cost 641-829 µs of CPU per trivial
request on the development machine, where a bare h11 loop on trio costs 106-162 µs (``bench/http_layer.py``,
wrk, 50 keep-alive connections): three socket writes per answer (headers, body, the empty end, each under a
lock and a shielded cancel scope), ~14 internal events, an idle-timer task started and cancelled and a task
per request.  None of it can be configured away, and no other library serves ASGI on trio (uvicorn and
granian are asyncio or their own loops; Hypercorn is the only trio one).  The API's target (3,000 sends/s on
one worker, with the SMPP path's ~250-300 µs per message) needs the HTTP layer near the h11 floor, so this
module is that floor plus the ASGI glue: h11 (trio's own project) parses and frames, we run the app.

What it does (``docs/dev/http-api.md``, "Speed"):

* **One task per connection, none per request.**  The connection's task reads a request, runs the app inline
  and reads the next one; pipelined requests are answered in order (h11 keeps what arrived early).
* **One write per answer** when the app sends ``http.response.start`` and then the whole body (Starlette's
  responses do): the head is kept until the first body message and written with it; a body given in parts
  is written part by part (chunked when the app gave no length).
* **Bodies** by Content-Length or chunked (h11 frames them); more than ``max_body`` bytes is 413 -- at once
  when Content-Length says so, else when the body passes the limit (the app is then told the client went
  away and its answer is dropped).  ``Expect: 100-continue`` is answered when the app first reads the body.
* **Timeouts** with no timer per request: each connection has a deadline (``keep-alive idle`` while waiting
  for a request, ``head`` from its first byte to the end of its head, ``idle`` while a body is read or an
  answer written, none while the app works) and one task per server closes connections past theirs.
* **At most ``max_connections``** connections: past that, new ones wait in the listen backlog.
* **Errors:** a malformed request is answered with h11's status (400, or 431 for a head too long, 501 for
  a transfer coding it does not know) and the connection closed; an app that fails before its answer
  starts gives 500 (the error logged), after it the connection is closed.
* **Graceful stop:** when ``stop`` is set the listeners close, idle connections are closed, requests in
  flight finish (their answers say ``Connection: close``) within ``graceful`` seconds, then whatever is
  left is cancelled.
* **TLS** when given an ``ssl.SSLContext`` (``trio.SSLStream``, ALPN ``http/1.1``).
* **ASGI:** the ``http`` scope of ASGI 3 (spec 2.4: ``send`` raises :class:`ClientDisconnected`, an
  ``OSError``, once the client is gone), no ``lifespan``: the API's app has no startup or shutdown hooks
  (the gateway owns every resource the app uses), so the lifespan protocol is not run.  ``receive`` after
  the body waits until the answer is sent and then says ``http.disconnect``.
"""

from __future__ import annotations

import errno
import logging
import math
import ssl
import time
from collections.abc import Awaitable, Callable, MutableMapping
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Final
from urllib.parse import unquote

import attrs
import h11
import trio

__all__ = ["MAX_BODY", "MAX_CONNECTIONS", "ClientDisconnected", "Limits", "serve", "tls_context"]

log = logging.getLogger(__name__)

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
App = Callable[[Scope, Receive, Send], Awaitable[None]]

MAX_BODY: Final = 32 * 1024 * 1024
"""A request body's limit: a bulk of 10,000 messages of ~3 KB each."""
MAX_CONNECTIONS: Final = 4096
MAX_HEAD: Final = 16 * 1024
"""A request head's limit (h11's default; Hypercorn's too): past it, 431."""
READ_SIZE: Final = 65536

_ASGI: Final = {"version": "3.0", "spec_version": "2.4"}
_DISCONNECT: Final = {"type": "http.disconnect"}
_REASONS: Final = {s.value: s.phrase.encode() for s in HTTPStatus}
_NO_BODY: Final = frozenset({204, 304})  # answers that carry no Content-Length of a body
_CAPACITY_ERRNOS: Final = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOMEM, errno.ENOBUFS})


@attrs.frozen
class Limits:
    """The server's limits and timeouts (seconds)."""

    max_body: int = MAX_BODY
    max_connections: int = MAX_CONNECTIONS
    head_timeout: float = 10.0
    """From a request's first byte (a connection's start, with its TLS handshake) to the end of its head."""
    keep_alive: float = 30.0
    """How long a connection may wait for its next request."""
    idle_timeout: float = 30.0
    """How long reading a body or writing an answer may go without progress."""


class ClientDisconnected(OSError):
    """``send`` once the client is gone (or its request was refused by the server: 400, 413)."""


def tls_context(cert: str, key: str | None) -> ssl.SSLContext:
    """A server context for ``cert`` (PEM; the key in ``key`` or in the same file), HTTP/1.1 by ALPN."""
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(cert, key)
    ctx.set_alpn_protocols(["http/1.1"])
    return ctx


async def serve(
    app: App,
    host: str,
    port: int,
    stop: trio.Event,
    *,
    ssl_context: ssl.SSLContext | None = None,
    graceful: float = 10.0,
    limits: Limits = Limits(),
    task_status: trio.TaskStatus[list[str]] = trio.TASK_STATUS_IGNORED,
) -> None:
    """Serve ``app`` on ``host:port`` until ``stop`` is set and the requests in flight are done (module
    notes); ``task_status.started`` gets the bound addresses (``http://127.0.0.1:8080``)."""
    listeners = await trio.open_tcp_listeners(port, host=host)
    server = _Server(app, limits, ssl_context)
    binds = [_address(server.scheme, listener.socket.getsockname()) for listener in listeners]
    async with trio.open_nursery() as nursery:
        nursery.start_soon(server.sweep)
        nursery.start_soon(server.accept_all, listeners, nursery)
        task_status.started(binds)
        await stop.wait()
        server.begin_closing()
        with trio.move_on_after(graceful):
            await server.empty.wait()
        nursery.cancel_scope.cancel()


def _address(scheme: str, sockname: Any) -> str:
    host, port = sockname[0], sockname[1]
    return f"{scheme}://[{host}]:{port}" if ":" in host else f"{scheme}://{host}:{port}"


class _Server:
    def __init__(self, app: App, limits: Limits, ssl_context: ssl.SSLContext | None) -> None:
        self.app = app
        self.limits = limits
        self.ssl_context = ssl_context
        self.scheme = "https" if ssl_context is not None else "http"
        self.connections: set[_Connection] = set()
        self.slots = trio.Semaphore(limits.max_connections)
        self.accepting = trio.CancelScope()
        self.closing = False
        self.empty = trio.Event()
        self._date_at = -1
        self._date = b""

    def date(self) -> bytes:
        """The ``Date`` header's value, made once a second."""
        now = int(time.time())
        if now != self._date_at:
            self._date_at, self._date = now, formatdate(now, usegmt=True).encode()
        return self._date

    async def accept_all(self, listeners: list[trio.SocketListener], nursery: trio.Nursery) -> None:
        with self.accepting:
            try:
                async with trio.open_nursery() as accepts:
                    for listener in listeners:
                        accepts.start_soon(self._accept, listener, nursery)
            finally:
                for listener in listeners:
                    listener.socket.close()

    async def _accept(self, listener: trio.SocketListener, nursery: trio.Nursery) -> None:
        while True:
            await self.slots.acquire()
            try:
                stream = await listener.accept()
            except OSError as e:
                self.slots.release()
                if e.errno not in _CAPACITY_ERRNOS:
                    raise
                log.error("HTTP API: cannot accept a connection (%s), trying again in 100 ms", e)
                await trio.sleep(0.1)
                continue
            except BaseException:
                self.slots.release()
                raise
            nursery.start_soon(self._handle, stream)

    async def _handle(self, sock: trio.SocketStream) -> None:
        stream: trio.abc.Stream = sock
        if self.ssl_context is not None:
            stream = trio.SSLStream(sock, self.ssl_context, server_side=True, https_compatible=True)
        conn = _Connection(self, stream, sock)
        self.connections.add(conn)
        try:
            with conn.cancel_scope:
                await conn.run()
        except Exception:  # a fault of ours: this connection ends, the server goes on
            log.exception("HTTP API: connection from %s failed", conn.client)
        finally:
            self.connections.discard(conn)
            self.slots.release()
            conn.finished()
            await trio.aclose_forcefully(stream)
            if self.closing and not self.connections:
                self.empty.set()

    async def sweep(self) -> None:
        """Close the connections past their deadline (module notes: no timer per request)."""
        lim = self.limits
        tick = min(1.0, lim.head_timeout / 4, lim.keep_alive / 4, lim.idle_timeout / 4)
        while True:
            await trio.sleep(tick)
            now = trio.current_time()
            for conn in self.connections:
                if conn.deadline < now:
                    conn.cancel_scope.cancel()

    def begin_closing(self) -> None:
        self.accepting.cancel()
        self.closing = True
        for conn in self.connections:
            if conn.idle:
                conn.cancel_scope.cancel()
        if not self.connections:
            self.empty.set()


class _Connection:
    """One client connection: its h11 state, and the request being answered (reset per request)."""

    def __init__(self, server: _Server, stream: trio.abc.Stream, sock: trio.SocketStream) -> None:
        self.server = server
        self.app = server.app
        self.limits = server.limits
        self.stream = stream
        self.sock = sock
        self.h11 = h11.Connection(h11.SERVER, max_incomplete_event_size=MAX_HEAD)
        self.cancel_scope = trio.CancelScope()
        self.deadline = trio.current_time() + server.limits.head_timeout
        self.idle = False
        self.client = _peer(sock.socket.getpeername())
        self.server_address = _peer(sock.socket.getsockname())
        self.gone = False
        # the request under way
        self.head_request = False
        self.body_done = False
        self.body_size = 0
        self.refused = 0  # 400 or 413 once the request was refused while the app ran
        self.status = 0
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_written = False
        self.complete = False
        self.answered: trio.Event | None = None

    async def run(self) -> None:
        h = self.h11
        lim = self.limits
        first = True  # the first head's timeout runs from the connection's start (and its TLS handshake)
        while True:
            if self.server.closing:
                return
            try:
                event = h.next_event()
                if event is h11.NEED_DATA:
                    self.idle = True  # closed at once by a graceful stop
                    if not first:
                        self.deadline = trio.current_time() + lim.keep_alive
                    data = await self._recv()
                    self.idle = False
                    self.deadline = trio.current_time() + lim.head_timeout
                    h.receive_data(data)
                    event = h.next_event()
                    while event is h11.NEED_DATA:
                        h.receive_data(await self._recv())
                        event = h.next_event()
            except h11.RemoteProtocolError as e:
                await self._refuse(e.error_status_hint)
                return
            first = False
            if type(event) is not h11.Request:  # ConnectionClosed: the client hung up between requests
                return
            self.deadline = math.inf
            if not await self._request(event) or not self._next_cycle_ready():
                return
            if not await self._drain():
                return
            try:
                h.start_next_cycle()
            except h11.LocalProtocolError:  # not both done (HTTP/1.0 ...): the connection ends here
                return

    async def _request(self, event: h11.Request) -> bool:
        """Run the app on ``event``; whether the connection may carry on."""
        self.head_request = event.method == b"HEAD"
        self.body_done = self.head_written = self.complete = False
        self.body_size = self.refused = self.status = 0
        self.answered = None
        headers = list(event.headers)
        for name, value in headers:
            if name == b"content-length" and int(value) > self.limits.max_body:
                await self._refuse(413)
                return False
        target = event.target
        raw_path, _, query = target.partition(b"?")
        if not raw_path.startswith(b"/") and raw_path != b"*":  # absolute form: http://host/path
            parts = raw_path.split(b"/", 3)
            raw_path = b"/" + (parts[3] if len(parts) > 3 else b"")
        try:
            path = raw_path.decode("ascii")
        except UnicodeDecodeError:
            await self._refuse(400)
            return False
        if "%" in path:
            path = unquote(path)
        scope = {
            "type": "http",
            "asgi": _ASGI,
            "http_version": "1.1" if event.http_version == b"1.1" else "1.0",
            "method": event.method.decode("ascii"),
            "scheme": self.server.scheme,
            "path": path,
            "raw_path": raw_path,
            "query_string": query,
            "root_path": "",
            "headers": headers,
            "client": self.client,
            "server": self.server_address,
        }
        try:
            await self.app(scope, self.receive, self.send)
        except Exception:
            if not (self.gone or self.refused):
                log.exception("HTTP API: %s %s failed", scope["method"], path)
            if self.refused and not self.head_written:
                await self._refuse(self.refused)
                return False
            if self.head_written or self.gone:
                return False
            await self._answer_error(500)
            return True
        if self.complete:
            return not self.refused
        if self.refused and not self.head_written:
            await self._refuse(self.refused)
        elif not self.head_written and not self.gone:
            log.error("HTTP API: %s %s ended without an answer", scope["method"], path)
            await self._answer_error(500)
            return True
        return False

    # ------------------------------------------------------------------ the app's receive and send

    async def receive(self) -> Message:
        if self.body_done or self.gone or self.refused:
            if not (self.complete or self.gone or self.refused):
                if self.answered is None:
                    self.answered = trio.Event()
                await self.answered.wait()
            return _DISCONNECT
        h = self.h11
        chunks: list[bytes] = []
        try:
            while True:
                event = h.next_event()
                tp = type(event)
                if tp is h11.Data:
                    data = event.data  # type: ignore[union-attr]
                    self.body_size += len(data)
                    if self.body_size > self.limits.max_body:
                        self.refused = 413
                        return _DISCONNECT
                    chunks.append(data)
                elif tp is h11.EndOfMessage:
                    self.body_done = True
                    return {"type": "http.request", "body": b"".join(chunks), "more_body": False}
                elif event is h11.NEED_DATA:
                    if chunks:
                        return {"type": "http.request", "body": b"".join(chunks), "more_body": True}
                    if h.they_are_waiting_for_100_continue:
                        await self._write(h.send(h11.InformationalResponse(status_code=100, headers=[])))
                    self.deadline = trio.current_time() + self.limits.idle_timeout
                    data = await self._recv()
                    self.deadline = math.inf
                    if not data:
                        self.gone = True
                        return _DISCONNECT
                    h.receive_data(data)
                else:  # ConnectionClosed or PAUSED: nothing more of this request
                    self.gone = True
                    return _DISCONNECT
        except h11.RemoteProtocolError:  # a bad chunk: the request is refused once the app is done
            self.refused = 400
            return _DISCONNECT
        except ClientDisconnected:
            return _DISCONNECT

    async def send(self, message: Message) -> None:
        if self.gone or self.refused:
            raise ClientDisconnected("the client is gone")
        kind = message["type"]
        if kind == "http.response.start":
            if self.status:
                raise RuntimeError("http.response.start sent twice")
            self.status = message["status"]
            self.headers = list(message.get("headers", ()))
            return
        if kind != "http.response.body":
            raise RuntimeError(f"unexpected ASGI message {kind!r}")
        if not self.status:
            raise RuntimeError("http.response.body before http.response.start")
        if self.complete:
            raise RuntimeError("http.response.body after the end of the answer")
        h = self.h11
        body = message.get("body", b"")
        more = message.get("more_body", False)
        out = b""
        if not self.head_written:
            headers = self.headers
            if (
                not more
                and self.status not in _NO_BODY
                and not any(name.lower() == b"content-length" for name, _ in headers)
            ):
                headers.append((b"content-length", str(len(body)).encode()))
            headers.append((b"date", self.server.date()))
            if self.server.closing:
                headers.append((b"connection", b"close"))
            self.head_written = True
            out = h.send(h11.Response(status_code=self.status, headers=headers, reason=_reason(self.status)))
        if body and not self.head_request:
            out += h.send(h11.Data(data=body))
        if not more:
            out += h.send(h11.EndOfMessage())
            self.complete = True
        if out:
            await self._write(out)
        if self.complete and self.answered is not None:
            self.answered.set()

    # ------------------------------------------------------------------ the socket

    async def _recv(self) -> bytes:
        try:
            data = await self.stream.receive_some(READ_SIZE)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            return b""
        return data if type(data) is bytes else bytes(data)

    async def _write(self, data: bytes) -> None:
        self.deadline = trio.current_time() + self.limits.idle_timeout
        try:
            await self.stream.send_all(data)
        except (trio.BrokenResourceError, trio.ClosedResourceError) as e:
            self.gone = True
            raise ClientDisconnected("the client is gone") from e
        finally:
            self.deadline = math.inf

    def _next_cycle_ready(self) -> bool:
        h = self.h11
        return h.our_state is h11.DONE and not self.gone and not self.server.closing

    async def _drain(self) -> bool:
        """Read what the app left of the request's body, so the connection can carry the next one; whether it
        can.  Not when the client waits for a 100 Continue it was never sent: it may never send the body."""
        h = self.h11
        if h.their_state is h11.DONE:
            return True
        if h.they_are_waiting_for_100_continue:
            return False
        try:
            while True:
                event = h.next_event()
                if type(event) is h11.Data:
                    self.body_size += len(event.data)
                    if self.body_size > self.limits.max_body:
                        return False
                elif type(event) is h11.EndOfMessage:
                    return True
                elif event is h11.NEED_DATA:
                    self.deadline = trio.current_time() + self.limits.idle_timeout
                    data = await self._recv()
                    self.deadline = math.inf
                    if not data:
                        return False
                    h.receive_data(data)
                else:
                    return False
        except h11.RemoteProtocolError:
            return False

    async def _answer_error(self, status: int, close: bool = False) -> None:
        """A plain-text answer of the server's own (500 after the app failed; 400, 413 ... with ``close``)."""
        h = self.h11
        if h.our_state is not h11.IDLE and h.our_state is not h11.SEND_RESPONSE:
            return
        body = _reason(status)
        headers = [
            (b"content-type", b"text/plain; charset=utf-8"),
            (b"content-length", str(len(body)).encode()),
            (b"date", self.server.date()),
        ]
        if close or self.server.closing:
            headers.append((b"connection", b"close"))
        try:
            out = h.send(h11.Response(status_code=status, headers=headers, reason=body))
            if not self.head_request:
                out += h.send(h11.Data(data=body))
            out += h.send(h11.EndOfMessage())
            self.head_written = self.complete = True
            await self._write(out)
        except (h11.LocalProtocolError, ClientDisconnected):
            self.gone = True

    async def _refuse(self, status: int) -> None:
        """Answer ``status`` and close, after the client had a moment to read it: its unread request bytes
        would otherwise make our close a reset, which may destroy the answer before the client reads it."""
        await self._answer_error(status, close=True)
        if self.gone or not isinstance(self.stream, trio.SocketStream):
            return
        self.deadline = math.inf
        with trio.move_on_after(1.0):
            try:
                await self.stream.send_eof()
                received = 0
                while received < 1024 * 1024:
                    data = await self.stream.receive_some(READ_SIZE)
                    if not data:
                        break
                    received += len(data)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                pass

    def finished(self) -> None:
        self.gone = True
        if self.answered is not None:
            self.answered.set()


def _peer(address: Any) -> tuple[str, int] | None:
    if isinstance(address, tuple) and len(address) >= 2:
        return (str(address[0]), int(address[1]))
    return None


def _reason(status: int) -> bytes:
    return _REASONS.get(status, b"")
