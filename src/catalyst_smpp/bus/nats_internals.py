"""Every use of nats-py's private parts, in one place, checked against the installed nats-py at import.

The bus uses nats-py's public API except where the public path costs throughput or correctness
(docs/dev/gateway-performance.md, "nats-py internals", has each one's measured gain):

* :func:`install_fast_path` replaces ``Client._process_msg`` so that messages on our own inboxes (publish
  acks, pull replies, KV direct-get replies) go straight from the parser to a plain function;
* :func:`send_raw` queues pre-built protocol lines (a whole batch of PUB/HPUB) with ``_send_command`` and
  wakes the flusher (``_flush_queue``/``_flush_pending``), as ``Client.publish`` does for one message;
* :func:`guard_pongs` replaces ``Client._process_pong`` (``_pongs``, ``_pongs_received``,
  ``_pings_outstanding``) to fix a flaw that ends the read loop (see its docstring);
* :func:`sid` reads a subscription's id (``Subscription._id``), the key of the fast path.

:func:`check` runs at import: a nats-py without one of these parts fails here with a message that names
the part and the versions checked, instead of misbehaving later (the fast path would never be called, the
pong guard would silently be off).  A version outside :data:`CHECKED` that still has every part only logs
a warning: the parts are what the bus depends on, not the version number.
"""

from __future__ import annotations

import importlib.metadata
import inspect
import logging
from collections.abc import Callable
from typing import Any

from nats.aio.client import Client
from nats.aio.subscription import Subscription

__all__ = [
    "CHECKED",
    "WireHandler",
    "check",
    "guard_pongs",
    "install_fast_path",
    "send_raw",
    "sid",
]

log = logging.getLogger(__name__)

CHECKED: tuple[str, ...] = ("2.16",)
"""nats-py minor versions whose internals were read against this module."""

WireHandler = Callable[[bytes, bytes, bytes, "bytes | None"], None]
"""``(subject, reply, payload, raw header block or None)`` of one message, straight from the parser."""

# the private parts, with what each must be (an attribute of a fresh Client, or of the class)
_CLIENT_METHODS = ("_process_msg", "_process_pong", "_send_command", "_flush_pending")
_CLIENT_ATTRS = ("_pongs", "_pongs_received", "_pings_outstanding", "_flush_queue", "stats")
_PROCESS_MSG_ARGS = ["sid", "subject", "reply", "data", "headers"]


class NatsInternalsError(ImportError):
    """The installed nats-py lacks a private part the bus uses."""


def check() -> str:
    """Check the installed nats-py for every private part used here; returns its version."""
    version = importlib.metadata.version("nats-py")
    missing: list[str] = []
    for name in _CLIENT_METHODS:
        if not callable(getattr(Client, name, None)):
            missing.append(f"Client.{name}()")
    probe = Client()
    for name in _CLIENT_ATTRS:
        if not hasattr(probe, name):
            missing.append(f"Client().{name}")
    if not missing:
        args = list(inspect.signature(Client._process_msg).parameters)[1:]
        if args != _PROCESS_MSG_ARGS:
            missing.append(f"Client._process_msg{tuple(_PROCESS_MSG_ARGS)} (has {tuple(args)})")
    try:
        probe_id = Subscription(probe, 7)._id
    except (TypeError, AttributeError):
        probe_id = None
    if probe_id != 7:
        missing.append("Subscription._id")
    if missing:
        raise NatsInternalsError(
            f"nats-py {version} lacks what catalyst_smpp.bus uses of its internals: {', '.join(missing)}. "
            f"The bus was checked with nats-py {', '.join(CHECKED)}.x; install one of those "
            "(pip install 'nats-py~=2.16.0') or adapt catalyst_smpp/bus/nats_internals.py."
        )
    if not any(version == c or version.startswith(c + ".") for c in CHECKED):
        log.warning(
            "nats-py %s: its internals the bus uses are present, but it was checked with %s.x only",
            version,
            ", ".join(CHECKED),
        )
    return version


VERSION: str = check()


def sid(sub: Subscription) -> int:
    """The subscription id nats-py passes to ``_process_msg`` for this subscription's messages."""
    return int(sub._id)


def install_fast_path(nc: Client, fast: dict[int, WireHandler]) -> None:
    """Hand messages for our own inboxes (publish acks, pull replies) straight from nats-py's parser to a
    plain function: no nats-py ``Msg``, header dict, subscription queue, task switch or callback coroutine
    per message.  The subscriptions stay ordinary nats-py subscriptions (nats-py re-subscribes them with
    the same sid after a reconnect); every other sid goes through nats-py as before.  A handler's error is
    logged, never raised into the read loop (which would end it).
    """
    orig: Any = nc._process_msg
    stats = nc.stats

    async def process_msg(sid: int, subject: bytes, reply: bytes, data: bytes, headers: bytes | None) -> None:
        h = fast.get(sid)
        if h is None:
            await orig(sid, subject, reply, data, headers)
            return
        stats["in_msgs"] += 1
        stats["in_bytes"] += len(data)
        try:
            h(subject, reply, data, headers)
        except Exception:
            log.exception("handling a message on %r", subject)

    nc._process_msg = process_msg  # type: ignore[method-assign]


async def send_raw(nc: Client, buf: bytes) -> None:
    """Queue ready protocol lines (``PUB``/``HPUB`` …) on nats-py's outbound buffer, as ``Client.publish``
    does for one message: its pending-size limit and write ordering hold, and its flusher writes them."""
    await nc._send_command(buf)
    q: Any = nc._flush_queue
    if q is not None and q.empty():
        await nc._flush_pending()


def guard_pongs(nc: Client) -> None:
    """Work around a nats-py (2.x) flaw that silently stops a connection from reading.

    ``flush(timeout)`` cancels its PONG future when the timeout expires (or when the awaiting task is
    cancelled) but leaves it queued; the PONG that arrives later is matched to it and ``set_result`` on the
    cancelled future raises ``InvalidStateError`` inside the read loop, which logs "encountered error" and
    *ends the read loop*: no more messages, publish acks or pull replies, and no reconnect until the ping
    timer notices minutes later.  Matching stays one future per PONG; a future that is already done is just
    skipped.  (:func:`check` makes sure the parts exist, so this never switches itself off.)
    """
    c: Any = nc

    async def process_pong() -> None:
        if c._pongs:
            fut = c._pongs.pop(0)
            if not fut.done():
                fut.set_result(True)
            c._pongs_received += 1
            c._pings_outstanding = 0

    c._process_pong = process_pong
