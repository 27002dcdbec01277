"""Reassembly of inbound concatenated messages (catalyst_smpp.encoding.reassembly)."""

from __future__ import annotations

import itertools

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding.reassembly import (
    Completed,
    ConcatPart,
    InformationElement,
    Reassembler,
    Scheme,
    UdhError,
    parse_udh,
    split_message,
)

A, B = "447700900001", "12345"


def udh8(ref: int, total: int, seq: int, body: bytes) -> bytes:
    return bytes((5, 0x00, 3, ref, total, seq)) + body


def udh16(ref: int, total: int, seq: int, body: bytes) -> bytes:
    return bytes((6, 0x08, 4, ref >> 8, ref & 0xFF, total, seq)) + body


def bodies(n: int, tag: bytes = b"p") -> list[bytes]:
    return [tag + b"%d-" % i + bytes([0x41 + i]) * 3 for i in range(1, n + 1)]


# --- UDH parsing ------------------------------------------------------------------


def test_parse_udh_with_several_ies() -> None:
    data = bytes((11, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x00, 3, 7, 2, 1)) + b"rest"
    ies, rest = parse_udh(data)
    assert ies == (InformationElement(0x05, b"\x0b\x84\x23\xf0"), InformationElement(0x00, b"\x07\x02\x01"))
    assert rest == b"rest"


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (bytes((5, 0, 3, 1)), "runs past the 3 octets"),
        (bytes((3, 0, 3, 1)), "element 0x00 of length 3 runs past"),
        (bytes((1, 0)), "truncated information element"),
        (bytes((3, 0, 0, 8)), "truncated information element at UDH offset 3"),
    ],
)
def test_parse_udh_malformed(data: bytes, reason: str) -> None:
    with pytest.raises(UdhError, match=reason):
        parse_udh(data)


def test_parse_udh_empty_header() -> None:
    assert parse_udh(b"\x00abc") == ((), b"abc")


@given(st.binary(max_size=40), st.booleans())
def test_split_never_raises(data: bytes, udhi: bool) -> None:
    s = split_message(data, udhi=udhi)
    if s.problem is not None and s.problem.startswith("malformed UDH"):
        assert (s.part, s.payload) == (None, data)  # delivered as it came
    elif udhi:
        _, rest = parse_udh(data)  # the UDH was readable
        assert s.payload == rest
    else:
        assert (s.part, s.payload, s.problem) == (None, data, None)


# --- split_message ----------------------------------------------------------------


def test_split_8bit_and_16bit_and_sar() -> None:
    s = split_message(udh8(0x7F, 3, 2, b"xy"), udhi=True)
    assert (s.part, s.payload, s.problem) == (ConcatPart(Scheme.UDH8, 0x7F, 3, 2), b"xy", None)
    s = split_message(udh16(0xBEEF, 4, 4, b"z"), udhi=True)
    assert s.part == ConcatPart(Scheme.UDH16, 0xBEEF, 4, 4)
    s = split_message(
        b"body",
        udhi=False,
        tlvs={"sar_msg_ref_num": 0x1234, "sar_total_segments": 2, "sar_segment_seqnum": 1},
    )
    assert (s.part, s.payload) == (ConcatPart(Scheme.SAR, 0x1234, 2, 1), b"body")
    s = split_message(b"body", udhi=False, tlvs={0x020C: 9, 0x020E: 2, 0x020F: 2})
    assert s.part == ConcatPart(Scheme.SAR, 9, 2, 2)


def test_split_keeps_other_ies() -> None:
    data = bytes((11, 0x05, 4, 0x0B, 0x84, 0x23, 0xF0, 0x00, 3, 1, 2, 1)) + b"wap"
    s = split_message(data, udhi=True)
    assert s.part == ConcatPart(Scheme.UDH8, 1, 2, 1)
    assert s.ies == (InformationElement(0x05, b"\x0b\x84\x23\xf0"),)


@pytest.mark.parametrize(
    ("data", "udhi", "tlvs", "problem"),
    [
        (bytes((9, 0, 3, 1)), True, None, "malformed UDH"),
        (udh8(1, 0, 1, b"x"), True, None, "total 0"),
        (udh8(1, 3, 0, b"x"), True, None, "sequence number 0 outside 1-3"),
        (udh8(1, 3, 4, b"x"), True, None, "sequence number 4"),
        (bytes((4, 0, 2, 1, 2)) + b"x", True, None, "2 octets of data (3 expected)"),
        (bytes((5, 8, 3, 1, 2, 1)) + b"x", True, None, "0x08 has 3 octets of data (4 expected)"),
        (b"x", False, {"sar_msg_ref_num": 1, "sar_total_segments": 2}, "incomplete SAR"),
        (
            b"x",
            False,
            {"sar_msg_ref_num": b"\x01", "sar_total_segments": 2, "sar_segment_seqnum": 1},
            "not integers",
        ),
        (
            b"x",
            False,
            {"sar_msg_ref_num": 70000, "sar_total_segments": 2, "sar_segment_seqnum": 1},
            "reference",
        ),
    ],
)
def test_split_malformed_reports(
    data: bytes, udhi: bool, tlvs: dict[str | int, object] | None, problem: str
) -> None:
    s = split_message(data, udhi=udhi, tlvs=tlvs)
    assert s.part is None
    assert s.problem is not None and problem in s.problem


def test_split_two_concat_ies_uses_the_first() -> None:
    data = bytes((11, 0, 3, 5, 2, 1, 8, 4, 0, 6, 2, 1)) + b"x"
    s = split_message(data, udhi=True)
    assert s.part == ConcatPart(Scheme.UDH8, 5, 2, 1)
    assert s.problem is not None and "more than one" in s.problem


def test_split_plain_message() -> None:
    assert split_message(b"hello", udhi=False) == split_message(b"hello", udhi=False, tlvs={})
    assert split_message(b"hello", udhi=False).part is None
    assert split_message(b"hello", udhi=False).problem is None


def test_concat_part_validates() -> None:
    with pytest.raises(ValueError, match="reference 256"):
        ConcatPart(Scheme.UDH8, 256, 2, 1)
    with pytest.raises(ValueError, match="total 256"):
        ConcatPart(Scheme.SAR, 1, 256, 1)


# --- reassembly -------------------------------------------------------------------


@pytest.mark.parametrize("n", [2, 3, 4, 5])
def test_every_order_of_small_sets(n: int) -> None:
    parts = bodies(n)
    for order in itertools.permutations(range(1, n + 1)):
        r = Reassembler(timeout=60)
        results = [
            r.add_message(A, B, udh8(42, n, seq, parts[seq - 1]), float(i), udhi=True, meta=seq)
            for i, seq in enumerate(order)
        ]
        assert results[:-1] == [None] * (n - 1)
        done = results[-1]
        assert isinstance(done, Completed)
        assert done.payload == b"".join(parts)
        assert done.parts == tuple(parts)
        assert done.metas == tuple(range(1, n + 1))
        assert (done.source, done.dest, done.scheme, done.ref, done.total) == (A, B, Scheme.UDH8, 42, n)
        assert (done.first_seen, done.last_seen) == (0.0, float(n - 1))
        assert r.pending == 0 and r.pending_bytes == 0 and r.next_deadline() is None


def test_duplicates_ignored_and_counted() -> None:
    r = Reassembler()
    p = bodies(3)
    assert r.add_message(A, B, udh8(1, 3, 2, p[1]), 0, udhi=True) is None
    assert r.add_message(A, B, udh8(1, 3, 2, p[1]), 1, udhi=True) is None
    assert r.add_message(A, B, udh8(1, 3, 2, b"other"), 2, udhi=True) is None  # keeps the first copy
    assert r.add_message(A, B, udh8(1, 3, 1, p[0]), 3, udhi=True) is None
    done = r.add_message(A, B, udh8(1, 3, 3, p[2]), 4, udhi=True)
    assert done is not None and done.payload == b"".join(p) and done.duplicates == 2
    assert (r.stats.duplicates, r.stats.conflicting_duplicates, r.stats.completed) == (2, 1, 1)
    # a late copy of a part of the completed set does not start a new set
    assert r.add_message(A, B, udh8(1, 3, 3, p[2]), 5, udhi=True) is None
    assert r.pending == 0 and r.stats.late_duplicates == 1
    # ... but a new message reusing the reference (other content) does
    assert r.add_message(A, B, udh8(1, 3, 3, b"new three"), 6, udhi=True) is None
    assert r.pending == 1


def test_missing_part_reported_after_timeout() -> None:
    r = Reassembler(timeout=30)
    p = bodies(4)
    for t, seq in ((0.0, 1), (5.0, 4), (10.0, 2)):
        assert r.add_message(A, B, udh8(9, 4, seq, p[seq - 1]), t, udhi=True, meta=f"pdu{seq}") is None
    assert r.next_deadline() == 40.0  # idle timeout: counted from the last new part
    assert r.expire(39.9) == []
    [gone] = r.expire(40.0)
    assert gone.reason == "timeout"
    assert gone.missing == (3,)
    assert gone.received == ((1, p[0]), (2, p[1]), (4, p[3]))
    assert gone.metas == ("pdu1", "pdu2", "pdu4")
    assert (gone.first_seen, gone.last_seen, gone.reported_at) == (0.0, 10.0, 40.0)
    assert r.pending == 0 and r.pending_bytes == 0 and r.stats.expired == 1
    assert r.next_deadline() is None and r.expire(100) == []


def test_interleaved_with_unrelated_traffic() -> None:
    r = Reassembler()
    p, q, s = bodies(3, b"p"), bodies(2, b"q"), bodies(2, b"s")
    feed = [
        (A, B, udh8(7, 3, 1, p[0])),
        (A, "999", udh8(7, 3, 1, b"other dest")),  # same ref, other destination
        ("777", B, udh8(7, 2, 2, q[1])),  # same ref, other source and total
        (A, B, udh8(7, 2, 1, b"other total")),  # same ref, other total
        (A, B, b"a plain MO"),
        (A, B, udh16(7, 3, 1, b"16-bit ref 7")),  # same number, other scheme
        (A, B, udh8(7, 3, 3, p[2])),
        ("777", B, udh8(7, 2, 1, q[0])),
        (A, B, udh8(8, 2, 2, s[1])),
        (A, B, udh8(7, 3, 2, p[1])),
        (A, B, udh8(8, 2, 1, s[0])),
    ]
    done = [
        c
        for i, (src, dst, data) in enumerate(feed)
        if (c := r.add_message(src, dst, data, float(i), udhi=data[:2] in (b"\x05\x00", b"\x06\x08")))
        is not None
    ]
    assert [c.payload for c in done] == [b"a plain MO", b"".join(q), b"".join(p), b"".join(s)]
    assert done[0].scheme is None and done[0].total == 1
    assert r.pending == 3  # other dest, other total, 16-bit ref 7
    assert r.stats.singles == 1 and r.stats.completed == 3


def test_bounds_by_count_evict_oldest_with_report() -> None:
    r = Reassembler(max_pending=2, timeout=100)
    for i, ref in enumerate((1, 2, 3)):
        assert r.add_message(A, B, udh8(ref, 2, 1, b"x%d" % ref), float(i), udhi=True) is None
    assert r.pending == 2
    assert r.next_deadline() == 2.0  # the eviction report is due at once
    [evicted] = r.expire(2.0)
    assert (evicted.ref, evicted.reason, evicted.missing, evicted.received) == (
        1,
        "evicted",
        (2,),
        ((1, b"x1"),),
    )
    assert r.stats.evicted == 1
    assert r.next_deadline() == 101.0
    done = r.add_message(A, B, udh8(2, 2, 2, b"y"), 3.0, udhi=True)
    assert done is not None and done.payload == b"x2y"


def test_bounds_by_bytes() -> None:
    r = Reassembler(max_bytes=10, timeout=100)
    assert r.add_message(A, B, udh8(1, 2, 1, b"123456"), 0, udhi=True) is None
    assert r.add_message(A, B, udh8(2, 2, 1, b"abcd"), 1, udhi=True) is None
    assert r.pending_bytes == 10
    assert r.add_message(A, B, udh8(3, 2, 1, b"Z"), 2, udhi=True) is None
    assert [e.ref for e in r.expire(2)] == [1]
    assert r.pending_bytes == 5
    # one part bigger than the whole budget: reported, not kept
    assert r.add_message(A, B, udh8(4, 2, 1, b"x" * 11), 3, udhi=True) is None
    reports = r.expire(3)
    assert [e.ref for e in reports] == [2, 3, 4]
    assert r.pending == 0 and r.pending_bytes == 0


def test_16bit_reference() -> None:
    r = Reassembler()
    assert r.add_message(A, B, udh16(0xABCD, 2, 2, b"world"), 0, udhi=True) is None
    assert r.add_message(A, B, udh16(0xABCE, 2, 1, b"unrelated"), 0, udhi=True) is None
    done = r.add_message(A, B, udh16(0xABCD, 2, 1, b"hello "), 1, udhi=True)
    assert done is not None and (done.scheme, done.ref, done.payload) == (
        Scheme.UDH16,
        0xABCD,
        b"hello world",
    )


def test_sar() -> None:
    r = Reassembler()
    sar = {"sar_msg_ref_num": 0x0102, "sar_total_segments": 3}
    out = [
        r.add_message(A, B, body, 0, udhi=False, tlvs={**sar, "sar_segment_seqnum": seq})
        for seq, body in ((3, b"c"), (1, b"a"), (2, b"b"))
    ]
    assert out[:2] == [None, None]
    assert out[2] is not None and (out[2].scheme, out[2].ref, out[2].payload) == (Scheme.SAR, 0x0102, b"abc")


def test_ucs2_surrogate_pair_across_parts() -> None:
    text = "ab\U0001f600cd"
    raw = text.encode("utf-16-be")  # a, b, hi surrogate | lo surrogate, c, d
    r = Reassembler()
    assert r.add_message(A, B, udh8(5, 2, 2, raw[6:]), 0, udhi=True) is None
    done = r.add_message(A, B, udh8(5, 2, 1, raw[:6]), 0, udhi=True)
    assert done is not None and done.payload.decode("utf-16-be") == text


def test_malformed_udh_delivered_as_is_with_problem() -> None:
    r = Reassembler()
    bad = bytes((9, 0, 3, 1)) + b"x"
    done = r.add_message(A, B, bad, 0, udhi=True, meta="m")
    assert done is not None
    assert (done.payload, done.total, done.scheme, done.metas) == (bad, 1, None, ("m",))
    assert done.problem is not None and "malformed UDH" in done.problem
    assert r.stats.malformed == 1 and r.pending == 0


def test_single_part_set_completes_at_once() -> None:
    r = Reassembler()
    done = r.add_message(A, B, udh8(3, 1, 1, b"only"), 0, udhi=True)
    assert done is not None and (done.payload, done.scheme, done.ref) == (b"only", Scheme.UDH8, 3)


def test_other_ies_of_first_part_kept() -> None:
    r = Reassembler()
    port = bytes((0x05, 4, 0x0B, 0x84, 0x23, 0xF0))
    assert r.add_message(A, B, bytes((11,)) + port + bytes((0, 3, 1, 2, 2)) + b"2", 0, udhi=True) is None
    done = r.add_message(A, B, bytes((11,)) + port + bytes((0, 3, 1, 2, 1)) + b"1", 0, udhi=True)
    assert done is not None and done.ies == (InformationElement(5, port[2:]),) and done.payload == b"12"


def test_bad_arguments() -> None:
    with pytest.raises(ValueError):
        Reassembler(max_pending=0)
    with pytest.raises(ValueError):
        Reassembler(timeout=0)


# --- property: interleaved sets with duplicates ------------------------------------


@st.composite
def traffic(draw: st.DrawFn) -> tuple[list[tuple[int, int, int, bytes]], dict[int, bytes]]:
    sets = draw(st.integers(1, 6))
    feed: list[tuple[int, int, int, bytes]] = []
    whole: dict[int, bytes] = {}
    for ref in range(sets):
        total = draw(st.integers(1, 5))
        parts = [bytes([ref]) + draw(st.binary(max_size=6)) for _ in range(total)]
        whole[ref] = b"".join(parts)
        for seq in range(1, total + 1):
            # duplicates (a 1-of-1 part is a plain message: not de-duplicated)
            for _ in range(draw(st.integers(1, 3)) if total > 1 else 1):
                feed.append((ref, total, seq, parts[seq - 1]))
    return draw(st.permutations(feed)), whole


@settings(max_examples=200)
@given(traffic())
def test_each_set_completes_exactly_once(
    t: tuple[list[tuple[int, int, int, bytes]], dict[int, bytes]],
) -> None:
    feed, whole = t
    r = Reassembler(timeout=1000)
    got: dict[int, bytes] = {}
    for i, (ref, total, seq, body) in enumerate(feed):
        done = r.add_message(A, B, udh16(ref, total, seq, body), float(i), udhi=True)
        if done is not None:
            assert done.ref not in got
            got[done.ref if done.ref is not None else -1] = done.payload
    assert got == whole
    assert r.pending == 0 and r.pending_bytes == 0
    assert r.expire(10_000) == []
