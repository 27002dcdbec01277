"""The light result of ``segment``: one C buffer, Part tuples made on first access of ``parts``."""

from __future__ import annotations

import pickle

from hypothesis import given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding import Encoding, Part, Segmentation, SegmentMethod, decode, segment
from catalyst_smpp.encoding.segment import _make_parts

E = Encoding
M = SegmentMethod


def test_parts_are_made_once_and_kept() -> None:
    seg = segment("€" * 200, ref=9)
    assert seg.parts is seg.parts
    assert isinstance(seg.parts, tuple) and all(isinstance(p, Part) for p in seg.parts)
    assert _make_parts(seg) == seg.parts


def test_part_fields_and_types() -> None:
    seg = segment("x" * 300, ref=9, method=M.SAR)
    p = seg.parts[1]
    assert (p.sar_msg_ref_num, p.sar_total_segments, p.sar_segment_seqnum) == (9, 2, 2)
    assert p.udh == b"" and p.udh_length == 0 and p.esm_class == 0 and p.payload == b"x" * 147
    assert (p.text_start, p.text_end, p.data_coding) == (153, 300, 0)
    seg = segment("x" * 300, ref=9)
    p = seg.parts[0]
    assert type(p.short_message) is bytes and type(p.udh) is bytes and type(p.payload) is bytes
    assert p.short_message == p.udh + p.payload and p.udh == bytes([5, 0, 3, 9, 2, 1])
    assert (p.esm_class, p.sar_msg_ref_num, p.udh_length) == (0x40, None, 6)


def test_part_and_segmentation_constructors_compatible() -> None:
    p = Part(b"\x05\x00\x03\x01\x02\x01", b"abc", 0, 0x40, None, None, None, 0, 3)
    udh = b"\x05\x00\x03\x01\x02\x01"
    assert (p.udh, p.payload, p.short_message) == (udh, b"abc", udh + b"abc")
    assert pickle.loads(pickle.dumps(p)) == p
    seg = segment("hello", ref=1)
    again = Segmentation(seg.parts, seg.encoding, seg.data_coding, seg.single_shift, seg.locking_shift,
                         seg.units, seg.method, seg.fill_bits)  # fmt: skip
    assert again == seg and hash(again) == hash(seg) and again.parts == seg.parts
    assert pickle.loads(pickle.dumps(seg)) == seg
    assert "Part(udh=b''" in repr(seg) and seg != segment("hellp", ref=1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.sampled_from(["a", "Ж", "字", "😀", "🙂", "€", " "]), max_size=400).map("".join),
    st.sampled_from([M.UDH8, M.UDH16, M.SAR]),
)
def test_ucs2_bmp_runs_and_pairs(text: str, method: M) -> None:
    # runs of BMP characters (the four-at-a-time path) mixed with surrogate pairs
    seg = segment(text, ref=3, encoding=E.UCS2, method=method)
    assert "".join(decode(p.payload, E.UCS2) for p in seg.parts) == text
    for p in seg.parts:
        assert len(p.payload) <= 134 or len(seg.parts) == 1
        assert not 0xD800 <= int.from_bytes(p.payload[-2:], "big") < 0xDC00 if p.payload else True
        assert text[p.text_start : p.text_end] == decode(p.payload, E.UCS2)
