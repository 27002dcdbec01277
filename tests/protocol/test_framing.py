"""The incremental framer: any chunking of a PDU stream yields the same PDUs, in linear work."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.protocol import framing
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.errors import FramingError
from catalyst_smpp.protocol.framing import Framer


def raw_pdu(body: bytes = b"", *, cid: int = 0x00000004, seq: int = 1, length: int | None = None) -> bytes:
    """A frame as the framer sees it: only command_length matters to it."""
    n = 16 + len(body) if length is None else length
    return struct.pack(">IIII", n, cid, 0, seq) + body


def frames_of(framer: Framer, chunks: list[bytes]) -> list[bytes]:
    out: list[bytes] = []
    for chunk in chunks:
        buf, offsets = framer.feed(chunk)
        for off in offsets:
            length = int.from_bytes(buf[off : off + 4], "big")
            out.append(bytes(buf[off : off + length]))
    return out


def chunk(stream: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({c % (len(stream) + 1) for c in cuts})
    pieces, prev = [], 0
    for p in [*points, len(stream)]:
        pieces.append(stream[prev:p])
        prev = p
    return pieces


pdu_bodies = st.lists(st.binary(min_size=0, max_size=300), min_size=1, max_size=40)


@settings(max_examples=300, deadline=None)
@given(bodies=pdu_bodies, cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=60))
def test_any_chunking_gives_the_same_pdus(bodies: list[bytes], cuts: list[int]) -> None:
    pdus = [raw_pdu(b, seq=i + 1) for i, b in enumerate(bodies)]
    stream = b"".join(pdus)
    framer = Framer()
    assert frames_of(framer, chunk(stream, cuts)) == pdus
    assert framer.buffered == 0
    assert framer.need == 16
    assert framer.error is None


@settings(max_examples=50, deadline=None)
@given(bodies=pdu_bodies)
def test_one_byte_at_a_time(bodies: list[bytes]) -> None:
    pdus = [raw_pdu(b, seq=i + 1) for i, b in enumerate(bodies)]
    stream = b"".join(pdus)
    assert frames_of(Framer(), [stream[i : i + 1] for i in range(len(stream))]) == pdus


@settings(max_examples=100, deadline=None)
@given(
    bodies=pdu_bodies,
    cuts=st.lists(st.integers(min_value=0, max_value=20_000), max_size=30),
    kind=st.sampled_from(["bytearray", "memoryview"]),
)
def test_other_buffer_types(bodies: list[bytes], cuts: list[int], kind: str) -> None:
    pdus = [raw_pdu(b) for b in bodies]
    pieces = chunk(b"".join(pdus), cuts)
    conv = bytearray if kind == "bytearray" else memoryview
    assert frames_of(Framer(), [conv(p) for p in pieces]) == pdus  # type: ignore[misc]


def test_returned_buffer_is_bytes_with_offsets() -> None:
    a, b = raw_pdu(b"abc"), raw_pdu(b"")
    buf, offsets = Framer().feed(a + b + a[:5])
    assert type(buf) is bytes
    assert offsets == [0, len(a)]


def test_header_only_pdus() -> None:
    pdus = [raw_pdu(seq=i) for i in range(1, 1001)]
    framer = Framer()
    assert frames_of(framer, [b"".join(pdus)]) == pdus
    # and split exactly at, before and after each header boundary
    stream = b"".join(pdus[:10])
    for size in (1, 15, 16, 17, 31, 32, 33):
        assert frames_of(Framer(), [stream[i : i + size] for i in range(0, len(stream), size)]) == pdus[:10]


def test_more_pdus_in_one_chunk_than_one_scan_returns() -> None:
    pdus = [raw_pdu(bytes([i % 256]) * (i % 7), seq=i + 1) for i in range(3 * framing._SLOTS + 5)]
    assert frames_of(Framer(), [b"".join(pdus)]) == pdus


def test_max_command_length_boundary() -> None:
    framer = Framer(max_command_length=100)
    at_max = raw_pdu(bytes(84))
    assert len(at_max) == 100
    assert frames_of(framer, [at_max]) == [at_max]
    with pytest.raises(FramingError) as info:
        framer.feed(raw_pdu(length=101))
    assert info.value.status == CommandStatus.ESME_RINVCMDLEN
    assert info.value.command_length == 101


def test_default_max_is_64k() -> None:
    big = raw_pdu(bytes(65536 - 16))
    assert frames_of(Framer(), [big[:1000], big[1000:]]) == [big]
    with pytest.raises(FramingError):
        Framer().feed(raw_pdu(length=65537))


@pytest.mark.parametrize("length", [0, 1, 15])
def test_command_length_below_header(length: int) -> None:
    framer = Framer()
    with pytest.raises(FramingError) as info:
        framer.feed(raw_pdu(seq=42, length=length))
    assert info.value.command_length == length
    assert info.value.sequence_number == 42
    assert framer.error is info.value
    with pytest.raises(FramingError):  # stays broken
        framer.feed(raw_pdu())


def test_bad_length_behind_good_pdus_is_reported_after_them() -> None:
    good = [raw_pdu(b"x"), raw_pdu(b"yy")]
    bad = raw_pdu(seq=9, length=3)
    framer = Framer()
    _, offsets = framer.feed(b"".join(good) + bad)
    assert len(offsets) == 2  # the good ones first
    assert framer.error is not None
    assert framer.error.command_length == 3
    assert framer.error.sequence_number == 9
    with pytest.raises(FramingError):
        framer.feed(b"")


def test_bad_length_arriving_in_pieces() -> None:
    framer = Framer(max_command_length=1000)
    bad = raw_pdu(length=5000)
    for i in range(15):
        assert framer.feed(bad[i : i + 1])[1] == []
    with pytest.raises(FramingError):
        framer.feed(bad[15:16])


def test_header_of_bad_length_incomplete_is_not_an_error_yet() -> None:
    framer = Framer()
    good = raw_pdu(b"ok")
    _, offsets = framer.feed(good + raw_pdu(length=2)[:10])
    assert len(offsets) == 1
    assert framer.error is None  # only ten octets of the next header: cannot judge yet
    with pytest.raises(FramingError):
        framer.feed(bytes(6))


def test_max_command_length_validated() -> None:
    with pytest.raises(ValueError):
        Framer(max_command_length=15)
    with pytest.raises(ValueError):
        Framer(max_command_length=2**32)


def test_work_is_linear_one_byte_at_a_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Scans happen only when enough bytes for the next PDU are buffered: at most two per PDU."""
    calls = 0
    real = framing._scan_c

    def counting(*args: object) -> int:
        nonlocal calls
        calls += 1
        return int(real(*args))

    monkeypatch.setattr(framing, "_scan_c", counting)
    pdus = [raw_pdu(bytes(200), seq=i) for i in range(50)]
    stream = b"".join(pdus)
    framer = Framer()
    assert frames_of(framer, [stream[i : i + 1] for i in range(len(stream))]) == pdus
    assert calls <= 2 * len(pdus)


def test_buffer_does_not_grow_with_the_stream() -> None:
    framer = Framer()
    pdu = raw_pdu(bytes(100))
    stream = pdu * 500
    for i in range(0, len(stream), 7):
        framer.feed(stream[i : i + 7])
        assert framer.buffered < len(pdu) + 7
