"""The gateway's SMPP listening sockets: bound once per gateway, shared only by that gateway's workers.

Why not ``SO_REUSEPORT``: with it, any process of the same user that also sets it may bind the same port,
and the kernel then spreads new connections over both. Two gateways with different state directories or
databases would silently split the partners between them. So the process that owns the gateway — the single
daemon, or the supervising parent with ``--workers N`` — binds each listener here, once, without
``SO_REUSEPORT``: any second bind of that port fails with ``EADDRINUSE``, whichever program tries (enforced
by the kernel, not by a lock that only our own processes would respect). Workers inherit the parent's bound
sockets (``pass_fds``) and all accept from the one queue. Two more things this buys over one
``SO_REUSEPORT`` socket per worker: a worker that dies and restarts finds the connections queued meanwhile
still waiting (a closed ``SO_REUSEPORT`` socket resets its queue), and a new connection goes to whichever
worker's loop is free to accept it first, i.e. the least busy.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Sequence

from catalyst_smpp.config import ListenerConfig

__all__ = ["LISTEN_BACKLOG", "ListenerError", "bind_listeners", "close_listeners", "inherit_listeners"]

LISTEN_BACKLOG = 1024


class ListenerError(Exception):
    """A listener could not be bound; the message is one line naming it (``listeners[i]`` and host:port)."""


def _bind_one(index: int, lst: ListenerConfig) -> list[socket.socket]:
    where = f"listeners[{index}] ({lst.host}:{lst.port})"
    try:
        infos = socket.getaddrinfo(
            lst.host or None, lst.port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as e:
        raise ListenerError(f"cannot listen on {where}: host not resolvable: {e.strerror}") from None
    out: list[socket.socket] = []
    try:
        for family, type_, proto, _canon, addr in infos:
            sock = socket.socket(family, type_, proto)
            out.append(sock)
            # SO_REUSEADDR only lets the port be bound again while old connections are in TIME_WAIT (a
            # restart); it never lets a second listener onto a port that has one
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind(addr)
            sock.listen(LISTEN_BACKLOG)
    except OSError as e:
        close_listeners([out])
        if e.errno == errno.EADDRINUSE:
            raise ListenerError(
                f"cannot listen on {where}: address already in use (another gateway or program listens there)"
            ) from None
        raise ListenerError(f"cannot listen on {where}: {e.strerror or e}") from None
    return out


def bind_listeners(listeners: Sequence[ListenerConfig]) -> list[list[socket.socket]]:
    """Bound, listening sockets for each listener (one per address ``host`` resolves to); ListenerError if one
    cannot be bound (those bound before it are closed again)."""
    bound: list[list[socket.socket]] = []
    try:
        for i, lst in enumerate(listeners):
            bound.append(_bind_one(i, lst))
    except ListenerError:
        close_listeners(bound)
        raise
    return bound


def inherit_listeners(fds: Sequence[Sequence[int]]) -> list[list[socket.socket]]:
    """The sockets a supervising parent passed down, by file descriptor, per listener."""
    return [[socket.socket(fileno=fd) for fd in group] for group in fds]


def close_listeners(bound: Sequence[Sequence[socket.socket]]) -> None:
    for group in bound:
        for sock in group:
            sock.close()
