"""Small helpers around trio streams: peer names, TCP options, TLS wrapping."""

from __future__ import annotations

import re
import socket
import ssl

import trio

__all__ = ["TlsHandshakeError", "open_stream", "peer_host", "peer_name", "set_nodelay"]


class TlsHandshakeError(OSError):
    """The TLS handshake of :func:`open_stream` failed; the message says why, e.g. ``TLS handshake failed:
    certificate verify failed: unable to get local issuer certificate`` (the ``ssl.SSLError`` is the
    ``__cause__``).  trio itself reports every failed handshake as a bare ``BrokenResourceError()``."""


_SSL_SOURCE = re.compile(r" \(_ssl\.c:\d+\)$")  # where in CPython's ssl module: no use to the reader


def _handshake_failure(exc: BaseException) -> str:
    """Why a handshake failed, from the exception trio raised (the ssl error is its cause)."""
    cause = exc.__cause__ if isinstance(exc, trio.BrokenResourceError) else exc
    if isinstance(cause, ssl.SSLCertVerificationError):
        return f"certificate verify failed: {cause.verify_message}"
    if cause is None or isinstance(
        cause, ssl.SSLEOFError | ssl.SSLZeroReturnError | trio.BrokenResourceError
    ):
        return "the peer closed the connection"
    if isinstance(cause, OSError):  # ssl.SSLError: "[SSL: WRONG_VERSION_NUMBER] wrong version number"
        return _SSL_SOURCE.sub("", cause.strerror or str(cause))
    return repr(cause)


def _socket_of(stream: trio.abc.Stream) -> trio.socket.SocketType | None:
    inner: object = stream
    for _ in range(4):
        sock = getattr(inner, "socket", None)
        if sock is not None:
            return sock  # type: ignore[no-any-return]
        inner = getattr(inner, "transport_stream", None)
        if inner is None:
            return None
    return None


def peer_name(stream: trio.abc.Stream, default: str = "?") -> str:
    """``host:port`` of the remote end of a socket stream (through TLS), else ``default``."""
    sock = _socket_of(stream)
    if sock is None:
        return default
    try:
        addr = sock.getpeername()
    except OSError:
        return default
    if isinstance(addr, tuple) and len(addr) >= 2:
        host = addr[0]
        return f"[{host}]:{addr[1]}" if ":" in host else f"{host}:{addr[1]}"
    return str(addr) or default


def peer_host(stream: trio.abc.Stream) -> str | None:
    """The remote IP address of a socket stream (through TLS, before any handshake), else None."""
    sock = _socket_of(stream)
    if sock is None:
        return None
    try:
        addr = sock.getpeername()
    except OSError:
        return None
    return addr[0] if isinstance(addr, tuple) and addr else None


def set_nodelay(stream: trio.abc.Stream) -> None:
    """Make sure Nagle is off (trio's SocketStream already does this for TCP; harmless to repeat)."""
    sock = _socket_of(stream)
    if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        except OSError:
            pass


async def open_stream(
    host: str,
    port: int,
    *,
    ssl_context: ssl.SSLContext | None = None,
    server_hostname: str | None = None,
) -> trio.abc.Stream:
    """TCP (or TLS over TCP) connection with TCP_NODELAY; the TLS handshake is done here (a failed one
    raises :class:`TlsHandshakeError` with the reason)."""
    tcp = await trio.open_tcp_stream(host, port)
    set_nodelay(tcp)
    if ssl_context is None:
        return tcp
    tls = trio.SSLStream(tcp, ssl_context, server_hostname=server_hostname or host)
    try:
        await tls.do_handshake()
    except (trio.BrokenResourceError, ssl.SSLError) as exc:
        await trio.aclose_forcefully(tcp)
        raise TlsHandshakeError(f"TLS handshake failed: {_handshake_failure(exc)}") from exc
    except BaseException:
        await trio.aclose_forcefully(tcp)
        raise
    return tls
