"""Text encoding and segmentation throughput: catalyst_smpp vs smpplib vs our slow Python reference.

    .venv/bin/python bench/encoding.py            # one run, prints one table (~15 s)
    .venv/bin/python bench/encoding.py --quick    # shorter timing windows

Workloads (texts made once from a fixed seed, so every run times the same input):

* ``gsm7 encode``: 64 texts of 1,024 characters from the GSM 03.38 default alphabet (less
  the section sign, which smpplib's table lacks) with a sprinkling of extension-table
  characters (EUR, braces, brackets ...) -> unpacked septets.
  catalyst: ``encoding.encode(text, Encoding.GSM7)``; smpplib: ``smpplib.gsm.gsm_encode``;
  reference: ``tests/encoding/reference.ref_encode``.
* ``gsm7 encode+segment``: the same texts -> the list of short messages with an 8-bit
  reference UDH (7 parts each).  catalyst: ``encoding.segment(text, ref=r)`` (automatic
  choice: GSM 7-bit, else UCS-2); smpplib: ``smpplib.gsm.make_parts(text)`` (the same
  choice); reference: ``ref_segment`` with the same candidates.
* ``catalyst +parts``: ``segment`` returns the short messages in one buffer and makes the
  ``Part`` tuples on first access of ``.parts``; this row also makes them and takes every
  part's ``short_message`` (a list of bytes, what smpplib returns).
* ``ucs2 encode+segment``: 64 texts of 300 characters mixing Latin, Cyrillic, Greek and
  emoji (a third of the characters beyond the BMP) -> UCS-2 parts.  Same three functions.

MB/s counts the input text as UTF-8 octets; msg/s counts texts (each is one message to
send, whatever number of parts it becomes).  Each cell is the best of three timing
windows.  The last column is the speed relative to smpplib.
"""

from __future__ import annotations

import argparse
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path

import smpplib.consts
import smpplib.gsm

from catalyst_smpp.encoding import Encoding, encode, segment

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from tests.encoding import reference as ref

GSM_BASIC = (
    "@£$¥èéùìòÇØøÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡"
    "ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ¿abcdefghijklmnopqrstuvwxyzäöñüà"
)
GSM_EXT = "^{}\\[~]|€"
WORDS = "the quick brown fox jumps over lazy dog hello meeting tomorrow at see you soon".split()
EMOJI = "😀😂🙂🚀🎉👍❤🔥🌍📱✨🙏🍕⚽🎵"
OTHER = "абвгдежзийклмнопрстуфхцчшщъыьэюяαβγδεζηθικλμνξοπρστυφχψω"


def gsm_text(rnd: random.Random, length: int = 1024) -> str:
    out: list[str] = []
    size = 0
    while size < length:
        r = rnd.random()
        if r < 0.80:
            piece = rnd.choice(WORDS) + " "
        elif r < 0.95:
            piece = rnd.choice(GSM_BASIC)
        else:
            piece = rnd.choice(GSM_EXT)
        out.append(piece)
        size += len(piece)
    return "".join(out)[:length]


def emoji_text(rnd: random.Random, length: int = 300) -> str:
    out = []
    for _ in range(length):
        r = rnd.random()
        out.append(
            rnd.choice(EMOJI) if r < 0.33 else rnd.choice(OTHER) if r < 0.66 else rnd.choice("abcdefgh ,.!?")
        )
    return "".join(out)


def timed(fn: Callable[[str], object], texts: list[str], window: float) -> float:
    """Texts per second: best of three windows of about ``window`` seconds each."""
    best = 0.0
    for _ in range(3):
        count = 0
        start = time.perf_counter()
        deadline = start + window
        while True:
            for t in texts:
                fn(t)
            count += len(texts)
            now = time.perf_counter()
            if now >= deadline:
                break
        best = max(best, count / (now - start))
    return best


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="shorter timing windows")
    args = parser.parse_args()
    window = 0.15 if args.quick else 0.5
    slow_window = 0.1 if args.quick else 0.3

    rnd = random.Random(20240603)
    gsm = [gsm_text(rnd) for _ in range(64)]
    emo = [emoji_text(rnd) for _ in range(64)]
    refs = iter(range(1 << 30))
    auto = (1 << ref.GSM7) | (1 << ref.UCS2)

    def with_parts(t: str) -> list[bytes]:
        return [p.short_message for p in segment(t, ref=next(refs) & 0xFF).parts]

    # every implementation must accept the workload before it is timed
    for t in gsm:
        assert segment(t, ref=1).encoding is Encoding.GSM7
        assert smpplib.gsm.make_parts(t)[1] == smpplib.consts.SMPP_ENCODING_DEFAULT
    for t in emo:
        assert segment(t, ref=1).encoding is Encoding.UCS2

    workloads: list[tuple[str, list[str], list[tuple[str, Callable[[str], object], bool]]]] = [
        (
            "gsm7 encode (1 KB)",
            gsm,
            [
                ("catalyst_smpp", lambda t: encode(t, Encoding.GSM7), False),
                ("smpplib", smpplib.gsm.gsm_encode, False),
                ("reference", lambda t: ref.ref_encode(t, ref.GSM7), True),
            ],
        ),
        (
            "gsm7 encode+segment (1 KB)",
            gsm,
            [
                ("catalyst_smpp", lambda t: segment(t, ref=next(refs) & 0xFF), False),
                ("catalyst +parts", with_parts, False),
                ("smpplib", smpplib.gsm.make_parts, False),
                ("reference", lambda t: ref.ref_segment(t, ref.AUTO, auto_encs=auto, ref=7), True),
            ],
        ),
        (
            "ucs2 encode+segment (emoji)",
            emo,
            [
                ("catalyst_smpp", lambda t: segment(t, ref=next(refs) & 0xFF), False),
                ("catalyst +parts", with_parts, False),
                ("smpplib", smpplib.gsm.make_parts, False),
                ("reference", lambda t: ref.ref_segment(t, ref.AUTO, auto_encs=auto, ref=7), True),
            ],
        ),
    ]

    header = f"{'workload':30} {'implementation':15} {'MB/s':>9} {'msg/s':>11} {'vs smpplib':>11}"
    print(header)
    print("-" * len(header))
    for name, texts, impls in workloads:
        mb = sum(len(t.encode("utf-8")) for t in texts) / len(texts) / 1e6
        rates = {label: timed(fn, texts, slow_window if slow else window) for label, fn, slow in impls}
        base = rates["smpplib"]
        for label, _fn, _slow in impls:
            r = rates[label]
            print(f"{name:30} {label:15} {r * mb:9.2f} {r:11,.0f} {r / base:10.1f}x")
    print()
    print(
        f"python {sys.version.split()[0]}; texts: {len(gsm)} x 1,024 GSM characters,"
        f" {len(emo)} x 300 mixed/emoji"
    )


if __name__ == "__main__":
    main()
