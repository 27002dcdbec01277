"""A minimal trio driver of the sans-IO session, for the simulator and the load generator.

One :class:`Link` per TCP connection: a reader that feeds the session core and
hands its events to a synchronous callback, the core's timers run from the
reader's cancel-scope deadline, and a single writer that flushes whatever the
core has queued.  Sending never blocks: callers respect the window
(``conn.window_available``) and the writer drains the core's buffer.

The gateway's own transport (``catalyst_smpp.server`` / ``catalyst_smpp.client``)
is the long-term home of this; these tools only need the little here.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable

import trio

from catalyst_smpp.protocol.events import ConnectionClosed, Event
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role

__all__ = ["Link"]

logger = logging.getLogger(__name__)

_READ_SIZE = 256 * 1024


class Link:
    def __init__(self, stream: trio.abc.Stream, role: Role, config: SessionConfig, name: str) -> None:
        self.stream = stream
        self.name = name
        self.conn = SmppConnection(role, config, now=trio.current_time())
        self._wake = trio.Event()
        self._scope: trio.CancelScope | None = None
        self.closed = False
        self._aborted = False
        self._eof = False
        self._eof_sent = False

    # -- sending -----------------------------------------------------------------

    def send(self, pdu: Pdu) -> int:
        """Queue a PDU (see SmppConnection.send); the writer flushes it."""
        seq = self.conn.send(pdu, trio.current_time())
        self.kick()
        return seq

    def kick(self) -> None:
        """Something was queued in the core: wake the writer and re-arm the timer."""
        self._wake.set()
        if self._scope is not None:
            timer = self.conn.get_timer()
            self._scope.deadline = math.inf if timer is None else timer

    async def _writer(self) -> None:
        while True:
            await self._wake.wait()
            self._wake = trio.Event()
            data = self.conn.data_to_send()
            if data and not self._eof_sent:
                await self.stream.send_all(data)
            if self._eof and not self._eof_sent:
                # whatever was queued while the last write was under way goes out before the EOF
                while rest := self.conn.data_to_send():
                    await self.stream.send_all(rest)
                self._eof_sent = True
                if isinstance(self.stream, trio.abc.HalfCloseableStream):
                    await self.stream.send_eof()
            if self.closed:
                return

    # -- the connection ----------------------------------------------------------

    async def run(self, on_event: Callable[[Event], None]) -> None:
        """Drive the session until it closes; ``on_event`` sees every event (ConnectionClosed last)."""
        try:
            async with trio.open_nursery() as nursery:
                nursery.start_soon(self._writer)
                try:
                    await self._reader(on_event)
                finally:
                    # flush what the core still owes (unbind_resp, generic_nack) before closing
                    self.closed = True
                    self._wake.set()
                    if self._aborted:
                        nursery.cancel_scope.cancel()
                    else:
                        nursery.cancel_scope.deadline = trio.current_time() + 2.0
        except (trio.BrokenResourceError, trio.ClosedResourceError) as exc:
            logger.debug("%s: transport error %r", self.name, exc)
            self._close_core(on_event)
        finally:
            with trio.CancelScope(shield=True):
                await trio.aclose_forcefully(self.stream)

    def _close_core(self, on_event: Callable[[Event], None]) -> None:
        if not self.closed or self.conn.state.name != "CLOSED":
            self.conn.close()
            self._drain(on_event)
        self.closed = True

    def _drain(self, on_event: Callable[[Event], None]) -> bool:
        """Hand every pending event to the callback; True when the session closed."""
        conn = self.conn
        done = False
        while (event := conn.next_event()) is not None:
            on_event(event)
            if isinstance(event, ConnectionClosed):
                done = True
        return done

    async def _reader(self, on_event: Callable[[Event], None]) -> None:
        conn = self.conn
        stream = self.stream
        while True:
            timer = conn.get_timer()
            with trio.CancelScope(deadline=math.inf if timer is None else timer) as scope:
                self._scope = scope
                try:
                    data = await stream.receive_some(_READ_SIZE)
                except (trio.BrokenResourceError, trio.ClosedResourceError):
                    data = b""
                conn.receive_data(data, trio.current_time())
                done = self._drain(on_event)
                self.kick()
                if done or not data:
                    self._scope = None
                    if not done:
                        self._close_core(on_event)
                    return
                continue
            self._scope = None
            if self._aborted:
                self._close_core(on_event)
                return
            # the timer fired
            conn.handle_timer(trio.current_time())
            done = self._drain(on_event)
            self.kick()
            if done:
                return

    def half_close(self) -> None:
        """Stop sending: flush what is queued, then send EOF (TCP FIN) and discard anything queued later.

        The peer reads every response sent so far, then sees the connection end; we keep reading until it
        closes, so nothing it sent goes unread (a drop with exact accounting on both sides).
        """
        self._eof = True
        self.kick()

    def abort(self) -> None:
        """Drop the connection now (fault injection): nothing more is read, queued data is discarded."""
        self._aborted = True
        if self._scope is not None:
            self._scope.cancel()

    async def close(self) -> None:
        """Close the transport after flushing (e.g. after an unbind)."""
        self.closed = True
        self._wake.set()
