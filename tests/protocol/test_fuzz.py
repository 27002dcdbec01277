"""Fuzzing of the decoder, the framer and the session state machine (both roles).

Whatever bytes arrive, the protocol core must answer with PDUs / events or with a
:class:`~catalyst_smpp.protocol.errors.ProtocolError` that carries a command_status --
never with any other exception, and never by putting bytes on the wire that our own
decoder would refuse.

Two parts:

* a seeded random loop for volume (``CATALYST_FUZZ_CASES`` cases, 100,000 by default, over ``SHARDS``
  tests): each case is a random PDU, a mutation of a valid PDU (the seeds of ``peers.seed_pdus`` and the
  valid hex vectors of ``tests/vectors/pdus.txt``: bit flips, truncation, length-field lies,
  splicing, random TLVs ...) or a splice of two; it goes through ``decode_pdu`` whole, through
  a :class:`Framer` in random chunks (one octet at a time for some), and into a long-lived
  ESME and a long-lived SMSC session (re-created, bound or not, whenever one closes), with
  the clock moving and the timers served;
* hypothesis tests over the same mutations and over raw bytes, for shrinking what the loop
  finds to a small example.

A failure of the loop names the case number and its bytes in hex, so it can be replayed.
"""

from __future__ import annotations

import os
import random
import struct
from collections.abc import Iterator

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tests.protocol.peers import mutate, random_pdu_bytes, seed_pdus, tlv_offsets
from tests.protocol.test_vectors import VECTOR_FILE, load_vectors

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.errors import FramingError, ProtocolError
from catalyst_smpp.protocol.events import Event, ProtocolViolation, RequestReceived
from catalyst_smpp.protocol.framing import Framer
from catalyst_smpp.protocol.pdu import (
    BindTransceiver,
    BindTransceiverResp,
    DeliverSm,
    Pdu,
    SubmitSm,
)
from catalyst_smpp.protocol.session import SessionConfig, SmppConnection
from catalyst_smpp.protocol.states import Role, SessionState
from catalyst_smpp.protocol.tlv import TLV_SPECS

CASES = int(os.environ.get("CATALYST_FUZZ_CASES", "100000"))
SEED = int(os.environ.get("CATALYST_FUZZ_SEED", "3405691582"))
MAX_LEN = 4096  # a small configured maximum, so that length lies also hit the upper bound

#: every status a protocol error may carry: a defined SMPP status (no "internal error" leak)
_DEFINED_STATUSES = frozenset(int(s) for s in CommandStatus)
_RSYSERR = int(CommandStatus.ESME_RSYSERR)


def _corpus() -> list[tuple[bytes, list[int]]]:
    """Valid wires to mutate, each with the offsets of its TLV headers."""
    wires = [encode_pdu(p) for p in seed_pdus()]
    wires += [data for _, _, status, data in load_vectors(VECTOR_FILE) if status == "ok"]
    return [(w, tlv_offsets(w)) for w in wires]


CORPUS = _corpus()


# =====================================================================================
# generating cases
# =====================================================================================


def _random_tlv(rng: random.Random) -> bytes:
    """One TLV: a known tag with a length its spec may or may not allow, or any tag."""
    if rng.random() < 0.7:
        tag = rng.choice(list(TLV_SPECS))
        spec = TLV_SPECS[tag]
        n = rng.choice((0, 1, 2, 3, 4, spec.min_len, spec.max_len, spec.max_len + 1, rng.randint(0, 80)))
        n = min(n, 300)
    else:
        tag = rng.randrange(1 << 16)
        n = rng.randint(0, 40)
    value = rng.choice((bytes(n), b"\xff" * n, rng.randbytes(n), (b"x" * max(n - 1, 0) + b"\x00")[:n]))
    return struct.pack(">HH", tag, n) + value


def _fix_length(b: bytearray) -> bytes:
    if len(b) >= 4:
        b[0:4] = len(b).to_bytes(4, "big")
    return bytes(b)


def make_case(rng: random.Random) -> bytes:
    """One fuzz input: usually one PDU's worth of bytes, sometimes several or a fragment."""
    r = rng.random()
    wire, offs = rng.choice(CORPUS)
    if r < 0.55:
        out = mutate(rng, wire, offs)
    elif r < 0.65:
        out = random_pdu_bytes(rng)
    elif r < 0.75:  # random TLVs after the mandatory part (and maybe a mutation on top)
        out = _fix_length(bytearray(wire) + b"".join(_random_tlv(rng) for _ in range(rng.randint(1, 4))))
        if rng.random() < 0.3:
            out = mutate(rng, out, tlv_offsets_safe(out))
    elif r < 0.85:  # splice: the front of one PDU and the back of another
        other, _ = rng.choice(CORPUS)
        b = bytearray(wire[: rng.randint(0, len(wire))] + other[rng.randint(0, len(other)) :])
        out = _fix_length(b) if rng.random() < 0.7 else bytes(b)
    elif r < 0.93:  # several PDUs back to back, one of them damaged
        parts = [rng.choice(CORPUS)[0] for _ in range(rng.randint(2, 5))]
        k = rng.randrange(len(parts))
        parts[k] = mutate(rng, parts[k])
        out = b"".join(parts)
    else:  # a valid PDU untouched (keeps the sessions busy with real traffic)
        out = wire
    if len(out) >= 16 and rng.random() < 0.3:
        # a small sequence number, so that responses meet requests the sessions have in flight
        b = bytearray(out)
        b[12:16] = rng.randint(0, 12).to_bytes(4, "big")
        out = bytes(b)
    return out


def tlv_offsets_safe(wire: bytes) -> list[int]:
    try:
        return tlv_offsets(wire)
    except ProtocolError:
        return []


def chunks(rng: random.Random, data: bytes) -> Iterator[bytes]:
    """``data`` cut at random points; one octet at a time for about one case in eight."""
    if rng.random() < 0.125:
        for i in range(len(data)):
            yield data[i : i + 1]
        return
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 3, 7, 16, 17, rng.randint(1, 64), len(data)))
        yield data[i : i + n]
        i += n


# =====================================================================================
# the checks
# =====================================================================================


def check_error(exc: ProtocolError) -> None:
    assert isinstance(exc.status, int)
    assert exc.status in _DEFINED_STATUSES, hex(exc.status)
    assert exc.status != 0


def check_decode(data: bytes) -> Pdu | None:
    """decode_pdu gives a PDU that re-encodes to itself, or a ProtocolError with a status."""
    try:
        pdu = decode_pdu(data)
    except ProtocolError as exc:
        check_error(exc)
        return None
    # whatever we accept we can put back on the wire, and read again as the same PDU
    again = encode_pdu(pdu)
    assert decode_pdu(again) == pdu
    return pdu


def check_framing(rng: random.Random, data: bytes) -> None:
    """Chunked framing finds the same PDUs as framing the whole input at once."""
    whole = Framer(MAX_LEN)
    try:
        buf, offs = whole.feed(data)
        expected = [bytes(buf[o : o + int.from_bytes(buf[o : o + 4], "big")]) for o in offs]
        expected_error = whole.error
    except FramingError as exc:
        check_error(exc)
        expected, expected_error = [], exc
    framer = Framer(MAX_LEN)
    got: list[bytes] = []
    error: FramingError | None = None
    for piece in chunks(rng, data):
        try:
            buf, offs = framer.feed(piece)
        except FramingError as exc:
            error = exc
            break
        got += [bytes(buf[o : o + int.from_bytes(buf[o : o + 4], "big")]) for o in offs]
    if error is None:
        error = framer.error
    assert got == expected
    assert (error is None) == (expected_error is None)
    if error is not None:
        check_error(error)
    else:
        assert framer.buffered == len(data) - sum(map(len, got))
    for pdu_bytes in got:
        assert 16 <= len(pdu_bytes) <= MAX_LEN
        check_decode(pdu_bytes)


class SessionDriver:
    """A long-lived session of one role, fed fuzz input; it answers what it is asked to."""

    def __init__(self, role: Role, rng: random.Random) -> None:
        self.role = role
        self.rng = rng
        self.now = 1000.0
        self.conn = self._fresh()
        self.sessions = 1

    def _fresh(self) -> SmppConnection:
        cfg = SessionConfig(
            window_size=self.rng.choice((1, 4, 10)),
            response_timeout=5.0,
            enquire_link_interval=3.0,
            inactivity_timeout=self.rng.choice((None, 20.0)),
            bind_timeout=10.0,
            max_command_length=MAX_LEN,
        )
        conn = SmppConnection(self.role, cfg, now=self.now)
        if self.rng.random() < 0.75:  # most sessions start bound (transceiver: everything allowed)
            if self.role is Role.ESME:
                seq = conn.send(BindTransceiver(system_id="fuzz", password="pw"), self.now)
                conn.receive_data(
                    encode_pdu(BindTransceiverResp(sequence_number=seq, system_id="gw")), self.now
                )
            else:
                conn.receive_data(encode_pdu(BindTransceiver(sequence_number=1, system_id="fuzz")), self.now)
                ev = conn.next_event()
                assert isinstance(ev, RequestReceived)
                conn.send(ev.pdu.make_response(system_id="gw"), self.now)
            self._drain(conn)
            assert conn.state is SessionState.BOUND_TRX
        return conn

    def feed(self, data: bytes) -> None:
        conn = self.conn
        if conn.state is SessionState.CLOSED:
            self.conn = conn = self._fresh()
            self.sessions += 1
        rng = self.rng
        self.now += rng.choice((0.0, 0.01, 0.5, 2.0, 7.0)) if rng.random() < 0.2 else 0.0
        timer = conn.get_timer()
        if timer is not None and timer <= self.now:
            conn.handle_timer(self.now)
        # our own traffic, so that the peer's (fuzzed) responses have something to match
        if conn.state is SessionState.BOUND_TRX and conn.window_available and rng.random() < 0.3:
            if self.role is Role.ESME:
                conn.send(SubmitSm(source_addr="1", destination_addr="2", short_message=b"hi"), self.now)
            else:
                conn.send(DeliverSm(source_addr="2", destination_addr="1", short_message=b"mo"), self.now)
        for piece in chunks(rng, data):
            conn.receive_data(piece, self.now)
            self._drain(conn)
        if rng.random() < 0.01:
            conn.receive_data(b"", self.now)  # the peer hangs up
            self._drain(conn)

    def _drain(self, conn: SmppConnection) -> None:
        while (ev := conn.next_event()) is not None:
            check_event(ev)
            # a request followed in the same read by a PDU that broke framing: nothing to answer
            if isinstance(ev, RequestReceived) and conn.state is not SessionState.CLOSED:
                self._answer(conn, ev.pdu)
        check_output(conn.data_to_send())

    def _answer(self, conn: SmppConnection, pdu: Pdu) -> None:
        try:
            resp = pdu.make_response(command_status=self.rng.choice((0, 0, 0, 0x58)))
        except Exception:  # outbind and alert_notification have no response
            return
        conn.send(resp, self.now)


def check_event(ev: Event) -> None:
    assert isinstance(ev, Event)
    if isinstance(ev, ProtocolViolation):
        check_error(ev.error)
        # the session turns an unexpected decoder exception into ESME_RSYSERR; that is a bug here
        cause = ev.error.__cause__
        assert cause is None or isinstance(cause, ProtocolError), repr(cause)
        assert ev.error.status != _RSYSERR


def check_output(data: bytes) -> None:
    """What the session puts on the wire frames and decodes cleanly: it is always valid SMPP."""
    off = 0
    while off < len(data):
        length = int.from_bytes(data[off : off + 4], "big")
        assert 16 <= length <= len(data) - off
        decode_pdu(data, off)
        off += length


def run_case(rng: random.Random, data: bytes, esme: SessionDriver, smsc: SessionDriver) -> None:
    check_decode(data)
    check_framing(rng, data)
    esme.feed(data)
    smsc.feed(data)


# =====================================================================================
# the tests
# =====================================================================================


SHARDS = 4
"""The loop runs as this many tests of ``CASES // SHARDS`` cases each (own random stream and own long-lived
sessions), so that parallel test workers share it out."""


@pytest.mark.parametrize("shard", range(SHARDS))
def test_fuzz_loop(shard: int) -> None:
    seed = SEED + 10 * shard
    rng = random.Random(seed)
    esme = SessionDriver(Role.ESME, random.Random(seed + 1))
    smsc = SessionDriver(Role.SMSC, random.Random(seed + 2))
    decoded = refused = 0
    cases = CASES // SHARDS
    for i in range(cases):
        data = make_case(rng)
        try:
            pdu = None
            try:
                pdu = decode_pdu(data)
            except ProtocolError:
                pass
            if pdu is None:
                refused += 1
            else:
                decoded += 1
            run_case(rng, data, esme, smsc)
        except BaseException as exc:
            raise AssertionError(f"fuzz case {i} (seed {seed}): {data.hex()}") from exc
    # the mix reaches both outcomes in quantity, and the sessions are re-created as they close
    assert decoded > cases // 10
    assert refused > cases // 10
    assert esme.sessions > 1 and smsc.sessions > 1


def test_corpus_is_valid() -> None:
    """The mutations start from PDUs that decode and re-encode exactly."""
    assert len(CORPUS) > 60
    for wire, _ in CORPUS:
        assert encode_pdu(decode_pdu(wire)) == wire


FUZZ_SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ_SETTINGS
@given(seed=st.integers(0, 2**32 - 1), index=st.integers(0, len(CORPUS) - 1))
def test_mutated_pdu(seed: int, index: int) -> None:
    rng = random.Random(seed)
    wire, offs = CORPUS[index]
    data = mutate(rng, wire, offs)
    check_decode(data)
    check_framing(rng, data)


@FUZZ_SETTINGS
@given(
    header=st.tuples(
        st.integers(0, 600),
        st.sampled_from(sorted({int.from_bytes(w[4:8], "big") for w, _ in CORPUS} | {0x10, 0x8000000B})),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
    ),
    body=st.binary(max_size=300),
    fix_length=st.booleans(),
)
def test_random_body(header: tuple[int, int, int, int], body: bytes, fix_length: bool) -> None:
    length, cid, status, seq = header
    data = struct.pack(">IIII", 16 + len(body) if fix_length else length, cid, status, seq) + body
    rng = random.Random(len(body))
    check_decode(data)
    check_framing(rng, data)


@FUZZ_SETTINGS
@given(data=st.binary(max_size=200), seed=st.integers(0, 2**16))
def test_raw_bytes_through_both_sessions(data: bytes, seed: int) -> None:
    rng = random.Random(seed)
    for role in (Role.ESME, Role.SMSC):
        SessionDriver(role, rng).feed(data)


@pytest.mark.parametrize("role", [Role.ESME, Role.SMSC])
def test_every_corpus_pdu_one_octet_at_a_time(role: Role) -> None:
    """The whole corpus, back to back, one octet at a time, into one session of each role."""
    rng = random.Random(7)
    stream = b"".join(w for w, _ in CORPUS)
    framer = Framer(MAX_LEN)
    found = 0
    for i in range(len(stream)):
        _, offs = framer.feed(stream[i : i + 1])
        found += len(offs)
    assert found == len(CORPUS)
    assert framer.buffered == 0
    driver = SessionDriver(role, rng)
    conn = driver.conn
    for i in range(len(stream)):
        conn.receive_data(stream[i : i + 1], driver.now)
        driver._drain(conn)
    assert conn.state is not SessionState.CLOSED


_SM_SEEDS = [w for w, _ in CORPUS if w[4:8] in (b"\x00\x00\x00\x04", b"\x00\x00\x00\x05")]
_TLV_TAGS = sorted({*TLV_SPECS, 0x0000, 0x1401, 0xFFFF})


@FUZZ_SETTINGS
@given(
    index=st.integers(0, len(_SM_SEEDS) - 1),
    tlvs=st.lists(
        st.tuples(st.sampled_from(_TLV_TAGS), st.binary(max_size=70), st.integers(-2, 2)), max_size=6
    ),
    stub=st.binary(max_size=3),
)
def test_native_sm_decoder_agrees_with_the_reference(
    index: int, tlvs: list[tuple[int, bytes, int]], stub: bytes
) -> None:
    """The C scanner's TLV walk (submit_sm / deliver_sm) and the table-driven decoder agree:
    the same PDU, or the same status and field, for any TLVs (lengths off by up to 2, stubs)."""
    from catalyst_smpp.protocol import decode

    wire = _SM_SEEDS[index]
    base = decode_pdu(wire)
    body_end = len(wire) - sum(4 + len(t.raw) for t in base.tlvs)
    tail = b"".join(struct.pack(">HH", tag, max(0, len(v) + d) & 0xFFFF) + v for tag, v, d in tlvs) + stub
    data = _fix_length(bytearray(wire[:body_end] + tail))
    length, cid, status, seq = struct.unpack_from(">IIII", data)
    try:
        ref: Pdu | ProtocolError = decode._decode_general(data, 0, length, cid, status, seq)
    except ProtocolError as exc:
        ref = exc
    try:
        got: Pdu | ProtocolError = decode_pdu(data)
    except ProtocolError as exc:
        got = exc
    if isinstance(ref, ProtocolError):
        assert isinstance(got, ProtocolError)
        assert (got.status, got.field) == (ref.status, ref.field)
    else:
        assert got == ref
