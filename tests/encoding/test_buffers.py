"""The hot path reuses per-thread C output buffers: results must never share them."""

from __future__ import annotations

import threading

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding import (
    Encoding,
    SegmentMethod,
    TextPolicy,
    UnencodableCharacterError,
    encode,
    segment,
)
from catalyst_smpp.encoding.codecs import c_text

E = Encoding


def test_results_survive_later_calls() -> None:
    first = segment("€" * 200, ref=1)
    first_parts = [(p.udh, p.payload) for p in first.parts]
    enc1 = encode("abc€", E.GSM7)
    segment("x" * 2000, ref=2)  # overwrites the scratch buffer
    encode("zzzzzzzz" * 100, E.UCS2)
    assert [(p.udh, p.payload) for p in first.parts] == first_parts
    assert first.parts[0].payload == b"\x1be" * 76  # 77 euros would be 154 septets
    assert enc1 == b"abc\x1be"
    assert all(type(p.payload) is bytes and type(p.udh) is bytes for p in first.parts)


def test_text_far_longer_than_the_first_scratch_buffer() -> None:
    text = "ab€" * 40_000  # 120,000 characters: 160,000 septets, over the initial 64 KiB
    out = encode(text, E.GSM7)
    assert out == b"ab\x1be" * 40_000
    seg = segment(text[:20_000], ref=3, policy=TextPolicy(segment_method=SegmentMethod.PAYLOAD))
    assert seg.parts[0].payload == b"ab\x1be" * 6_666 + b"ab"


def test_threads_do_not_share_buffers() -> None:
    texts = {i: f"thread {i} " + chr(0x41 + i) * (300 + 37 * i) + "€" for i in range(6)}
    expected = {i: [p.short_message for p in segment(t, ref=i).parts] for i, t in texts.items()}
    failures: list[int] = []
    start = threading.Barrier(len(texts))

    def worker(i: int) -> None:
        start.wait()
        for _ in range(300):
            if [p.short_message for p in segment(texts[i], ref=i).parts] != expected[i]:
                failures.append(i)
                return

    threads = [threading.Thread(target=worker, args=(i,)) for i in texts]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert failures == []


def test_lone_surrogates_reach_c_as_themselves() -> None:
    # the char32_t conversion must neither combine a surrogate pair nor drop a lone one
    buf, width = c_text("a\ud83d\ude00b")
    assert width == 4
    assert [ord(c) for c in buf[0:4]] == [0x61, 0xD83D, 0xDE00, 0x62]  # type: ignore[index]
    try:
        segment("ok \ud800 no", ref=0)
    except UnencodableCharacterError as exc:
        assert (exc.char, exc.position) == ("\ud800", 3)
    else:
        raise AssertionError("a lone surrogate was encoded")


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=400), min_size=2, max_size=5))
def test_interleaved_calls_match_fresh_calls(texts: list[str]) -> None:
    fresh = [[p.short_message for p in segment(t, ref=5).parts] for t in texts]
    kept = [segment(t, ref=5) for t in texts]  # all alive while the next ones run
    assert [[p.short_message for p in s.parts] for s in kept] == fresh
