"""Test helper: the far end of a session, played by our own sans-IO core over a trio stream.

Its core has every timer switched off (no enquire_link, no bind timeout, a response
timeout of a day), so only the side under test acts on time.
"""

from __future__ import annotations

import trio

from catalyst_smpp.protocol.codec import encode_pdu
from catalyst_smpp.protocol.events import ConnectionClosed, Event, RequestReceived, ResponseReceived
from catalyst_smpp.protocol.pdu import (
    BindReceiver,
    BindTransceiver,
    BindTransmitter,
    Pdu,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role

QUIET = SessionConfig(
    window_size=100_000,
    response_timeout=86_400.0,
    enquire_link_interval=None,
    inactivity_timeout=None,
    bind_timeout=None,
)

_BINDS = {"tx": BindTransmitter, "rx": BindReceiver, "trx": BindTransceiver}


class SansIoPeer:
    def __init__(self, stream: trio.abc.Stream, role: Role, config: SessionConfig = QUIET) -> None:
        self.stream = stream
        self.conn = SmppConnection(role, config, now=trio.current_time())
        self.eof = False

    async def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            await self.stream.send_all(data)

    async def send(self, pdu: Pdu) -> int:
        seq = self.conn.send(pdu, trio.current_time())
        await self.flush()
        return seq

    async def send_raw(self, data: bytes) -> None:
        await self.stream.send_all(data)

    async def next_event(self) -> Event:
        """The next event of the core, reading from the stream as needed (auto-answers flushed)."""
        while True:
            ev = self.conn.next_event()
            if ev is not None:
                await self.flush()
                return ev
            if self.eof:
                raise AssertionError("stream at EOF and no more events")
            try:
                data = await self.stream.receive_some(65536)
            except (trio.BrokenResourceError, trio.ClosedResourceError):
                data = b""
            if not data:
                self.eof = True
            self.conn.receive_data(data, trio.current_time())
            await self.flush()

    async def pump(self, events: list[Event]) -> None:
        """Read (auto-answering enquire_link etc.) and collect events until cancelled or EOF."""
        while not self.eof:
            events.append(await self.next_event())

    async def expect(self, cls: type[Event]) -> Event:
        ev = await self.next_event()
        assert isinstance(ev, cls), f"expected {cls.__name__}, got {ev!r}"
        return ev

    async def expect_request(self) -> Pdu:
        ev = await self.expect(RequestReceived)
        assert isinstance(ev, RequestReceived)
        return ev.pdu

    async def expect_closed(self) -> ConnectionClosed:
        """Skip events until the connection is reported closed."""
        while True:
            ev = await self.next_event()
            if isinstance(ev, ConnectionClosed):
                return ev

    async def request(self, pdu: Pdu) -> Pdu:
        """Send a request and return its response (other events in between are an error)."""
        seq = await self.send(pdu)
        ev = await self.next_event()
        if isinstance(ev, ResponseReceived):
            assert ev.pdu.sequence_number == seq
            return ev.pdu
        # binds and unbinds come back as Bound / BindFailed / Unbound
        resp = getattr(ev, "response", None) or getattr(ev, "pdu", None)
        assert isinstance(resp, Pdu) and resp.sequence_number == seq, f"unexpected {ev!r}"
        return resp

    async def bind(self, kind: str, system_id: str, password: str) -> Pdu:
        return await self.request(_BINDS[kind](system_id=system_id, password=password))

    async def raw_request(self, pdu: Pdu, seq: int) -> None:
        """Send a request outside the core's state machine (hostile input)."""
        pdu.sequence_number = seq
        await self.stream.send_all(encode_pdu(pdu))
