"""The C receipt scanner (native/csmpp_receipt.c) against a plain-Python reference of the same grammar.

The reference is written with one regular expression so that it can be read at a glance.
"""

from __future__ import annotations

import re

from hypothesis import example, given, settings
from hypothesis import strategies as st

from catalyst_smpp.encoding.receipts import KIND_ID, KIND_OTHER, KIND_TEXT, scan_receipt_text
from catalyst_smpp.native import lib

# --- the reference ---------------------------------------------------------------

SEP = b" \t\r\n,;\x00"

KEY = re.compile(
    rb"(?<![^ \t\r\n,;\x00])"  # at the start, or after a separator
    rb"(?:((?:submit|done)[ \t_]*date)[ \t]*:"  # the two keys that may contain a blank
    rb"|([A-Za-z][A-Za-z0-9_]*)[ \t]*:)",
    re.IGNORECASE,
)

KINDS = {
    b"id": 1,
    b"sub": 2,
    b"dlvrd": 3,
    b"dlvd": 3,
    b"submitdate": 4,
    b"donedate": 5,
    b"stat": 6,
    b"status": 6,
    b"err": 7,
    b"error": 7,
    b"text": 8,
    b"txt": 8,
}


def _kind(key: bytes) -> int:
    compact = key.lower().replace(b" ", b"").replace(b"\t", b"").replace(b"_", b"")
    return KINDS.get(compact, 0) if len(compact) < 16 else 0


def _trim(data: bytes, start: int, end: int, chars: bytes) -> tuple[int, int]:
    while start < end and data[start] in chars:
        start += 1
    while end > start and data[end - 1] in chars:
        end -= 1
    return start, end


def scan(data: bytes, max_fields: int = 32) -> list[tuple[int, int, int, int, int]]:
    out: list[tuple[int, int, int, int, int]] = []
    keys = list(KEY.finditer(data))
    for i, m in enumerate(keys):
        if len(out) == max_fields:
            break
        key_end = m.end(1) if m.group(1) is not None else m.end(2)
        kind = _kind(data[m.start() : key_end])
        if kind == 8:  # the rest of the input, not trimmed
            out.append((kind, m.start(), key_end, m.end(), len(data)))
            break
        nxt = keys[i + 1].start() if i + 1 < len(keys) else len(data)
        vs, ve = _trim(data, m.end(), nxt, SEP)
        out.append((kind, m.start(), key_end, vs, ve))
    return out


# --- the comparison --------------------------------------------------------------

_KEYS = [
    b"id",
    b"ID",
    b"Id",
    b"sub",
    b"dlvrd",
    b"dlvd",
    b"submit date",
    b"Submit_Date",
    b"submit   date",
    b"submitdate",
    b"submit_ date",
    b"submit\t_date",
    b"done date",
    b"DONE_DATE",
    b"donedate",
    b"done  dates",
    b"submitx",
    b"stat",
    b"STATUS",
    b"err",
    b"error",
    b"text",
    b"Text",
    b"txt",
    b"mcc",
    b"x1_y",
    b"a_very_long_vendor_key_name",
    b"9ab",
    b"date",
    b"submit",
    b"done",
]
_SEPS = [b"", b" ", b"  ", b",", b";", b"\t", b"\r\n", b"\x00", b", "]
_COLONS = [b":", b" :", b"\t:", b"", b"::"]
_VALUES = st.sampled_from(
    [
        b"",
        b"0123456789",
        b"7A3F09BC",
        b"001",
        b"2301051230",
        b"DELIVRD",
        b"Hello: world",
        b"a:b",
        b" x ",
        b"\xff\xe9",
        b"12:30",
        b"id",
        b"stat:",
    ]
)


@st.composite
def receipt_like(draw: st.DrawFn) -> bytes:
    out = b""
    for _ in range(draw(st.integers(0, 12))):
        out += draw(st.sampled_from(_SEPS)) + draw(st.sampled_from(_KEYS)) + draw(st.sampled_from(_COLONS))
        out += draw(_VALUES)
    return out + draw(st.sampled_from(_SEPS))


@settings(max_examples=500)
@given(receipt_like() | st.binary(max_size=200))
@example(b"id:1 submit_ date:2301051230 stat:DELIVRD")
@example(b"submit date x:1 done:2 done date :3")
@example(b"")
@example(b":::: ::: id")
def test_c_scanner_matches_reference(data: bytes) -> None:
    assert scan_receipt_text(data) == scan(data)


def test_known_layout() -> None:
    data = (
        b"id:AB sub:001 dlvrd:001 submit date:2301051230 done date:2301051231 stat:DELIVRD err:000 text:a: b "
    )
    fields = scan_receipt_text(data)
    assert [data[vs:ve] for _, _, _, vs, ve in fields] == [
        b"AB",
        b"001",
        b"001",
        b"2301051230",
        b"2301051231",
        b"DELIVRD",
        b"000",
        b"a: b ",  # the text as sent, its trailing blank too
    ]
    assert [data[ks:ke] for _, ks, ke, _, _ in fields][3:5] == [b"submit date", b"done date"]
    assert [k for k, *_ in fields] == [1, 2, 3, 4, 5, 6, 7, 8]


def test_at_most_32_fields() -> None:
    data = b" ".join(b"k%d:%d" % (i, i) for i in range(40))
    fields = scan_receipt_text(data)
    assert len(fields) == 32
    assert fields == scan(data)
    assert all(k == KIND_OTHER for k, *_ in fields)
    last = fields[-1]
    assert data[last[3] : last[4]] == b"31"


def test_text_ends_the_scan() -> None:
    fields = scan_receipt_text(b"text:id:1 stat:DELIVRD")
    assert [(k, vs, ve) for k, _, _, vs, ve in fields] == [(KIND_TEXT, 5, 22)]
    assert scan_receipt_text(b"a.id:1 (id:2") == []  # a key must follow a separator
    assert scan_receipt_text(b"x id:1")[0][0] == KIND_ID


def test_kind_numbers_match_the_c_header() -> None:
    from catalyst_smpp.encoding import receipts

    names = ["OTHER", "ID", "SUB", "DLVRD", "SUBMIT_DATE", "DONE_DATE", "STAT", "ERR", "TEXT"]
    assert [getattr(lib, f"CSMPP_RF_{n}") for n in names] == [getattr(receipts, f"KIND_{n}") for n in names]
