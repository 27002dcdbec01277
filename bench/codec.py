"""PDU codec and framing throughput: catalyst_smpp next to smpplib 2.2.4 and smpp34 1.5.0.

One command, one table::

    .venv/bin/python bench/codec.py            # ~20 s on the 2-core shared machine
    .venv/bin/python bench/codec.py --quick    # shorter timing windows
    .venv/bin/python bench/codec.py --only catalyst_smpp

Workloads (each library encodes the same field values; the decoders get the same bytes):

* **submit_sm**: 160-character GSM text (160 octets, data_coding 0), registered_delivery=1,
  international source and destination addresses, no TLVs.
* **deliver_sm receipt**: esm_class 0x04 with the usual receipt text and the receipted_message_id
  and message_state TLVs.

``encode/s`` builds the PDU object from the field values and encodes it into bytes (what an
application does for every message); encoding an already built object is printed too, as
``encode only`` (for smpp34 that is a single call into Rust).  ``decode/s`` decodes the bytes
and then reads every field (every mandatory field and the value of every TLV) as Python values: a
library that decodes lazily pays for the reads there.  ``framing`` cuts a 1 MB buffer of mixed
PDUs (submit_sm, submit_sm_resp, deliver_sm receipts, deliver_sm_resp, enquire_link) into PDUs:
ours with :class:`catalyst_smpp.protocol.framing.Framer` (one C scan of the whole buffer); smpplib
and smpp34 have no framing function of their own (both frame inside their socket clients by
reading command_length and then that many octets), so their row shows that same loop in Python
over the buffer, labelled as such.

Every cell is the best of three timing windows.  ``x smpplib`` is the ratio to smpplib's figure.
"""

from __future__ import annotations

import argparse
import gc
import struct
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, cast

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

from catalyst_smpp.protocol.codec import decode_pdu, encode_pdu
from catalyst_smpp.protocol.framing import Framer
from catalyst_smpp.protocol.pdu import (
    DeliverSm,
    DeliverSmResp,
    EnquireLink,
    SubmitSm,
    SubmitSmResp,
)
from catalyst_smpp.protocol.tlv import Tag, Tlv

TEXT_160 = ("Catalyst SMPP benchmark: the quick brown fox jumps over the lazy dog 0123456789. " * 2)[:160]
SOURCE = "447700900001"
DEST = "447700900123"
MSG_ID = "5f3a9c1e-0001"
RECEIPT_TEXT = (
    f"id:{MSG_ID} sub:001 dlvrd:001 submit date:2405011200 done date:2405011201 "
    "stat:DELIVRD err:000 text:Catalyst SMPP bench"
)

SM_FIELDS = (
    "service_type",
    "source_addr_ton",
    "source_addr_npi",
    "source_addr",
    "dest_addr_ton",
    "dest_addr_npi",
    "destination_addr",
    "esm_class",
    "protocol_id",
    "priority_flag",
    "schedule_delivery_time",
    "validity_period",
    "registered_delivery",
    "replace_if_present_flag",
    "data_coding",
    "sm_default_msg_id",
    "short_message",
)


def timeit(fn: Callable[[int], None], n: int, window: float) -> float:
    """Operations per second of ``fn(n)`` (which runs the operation n times), best of three."""
    fn(max(1, n // 20))  # warm up (caches, struct formats)
    best = float("inf")
    loops = n
    # size the loop to about ``window`` seconds
    t0 = time.perf_counter()
    fn(loops)
    dt = time.perf_counter() - t0
    if dt < window:
        loops = max(loops, int(loops * window / max(dt, 1e-6)))
    gc.disable()
    try:
        for _ in range(3):
            t0 = time.perf_counter()
            fn(loops)
            best = min(best, time.perf_counter() - t0)
    finally:
        gc.enable()
    return loops / best


# =====================================================================================
# catalyst_smpp
# =====================================================================================


def ours_submit() -> SubmitSm:
    return SubmitSm(
        sequence_number=1,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=SOURCE,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=DEST,
        registered_delivery=1,
        short_message=TEXT_160.encode("ascii"),
    )


def ours_receipt() -> DeliverSm:
    return DeliverSm(
        sequence_number=2,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=DEST,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=SOURCE,
        esm_class=0x04,
        short_message=RECEIPT_TEXT.encode("ascii"),
        tlvs=(Tlv.make(Tag.receipted_message_id, MSG_ID), Tlv.make(Tag.message_state, 2)),
    )


def ours_encode(pdu: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        enc = encode_pdu
        for _ in range(n):
            enc(pdu)

    return run


def ours_build_encode(build: Callable[[], Any]) -> Callable[[int], None]:
    def run(n: int) -> None:
        enc = encode_pdu
        for _ in range(n):
            enc(build())

    return run


def ours_decode(wire: bytes) -> Callable[[int], None]:
    def run(n: int) -> None:
        # the wire is a submit_sm (cast once per run, outside the loop)
        dec = cast("Callable[[bytes], SubmitSm]", decode_pdu)
        for _ in range(n):
            p = dec(wire)
            # every field, as the application would read it (attribute reads of a slotted class)
            _ = (
                p.sequence_number,
                p.command_status,
                p.service_type,
                p.source_addr_ton,
                p.source_addr_npi,
                p.source_addr,
                p.dest_addr_ton,
                p.dest_addr_npi,
                p.destination_addr,
                p.esm_class,
                p.protocol_id,
                p.priority_flag,
                p.schedule_delivery_time,
                p.validity_period,
                p.registered_delivery,
                p.replace_if_present_flag,
                p.data_coding,
                p.sm_default_msg_id,
                p.short_message,
            )
            for t in p.tlvs:
                _ = t.tag, t.value

    return run


def ours_framing(buf: bytes) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            Framer(2 * len(buf)).feed(buf)

    return run


# =====================================================================================
# smpplib 2.2.4
# =====================================================================================


def smpplib_build(command: str, **fields: Any) -> Any:
    import smpplib.smpp

    pdu = smpplib.smpp.make_pdu(command, client=None, **fields)
    pdu.sequence = fields.get("sequence", 1)
    return pdu


def smpplib_submit() -> Any:
    return smpplib_build(
        "submit_sm",
        sequence=1,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=SOURCE,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=DEST,
        registered_delivery=1,
        short_message=TEXT_160.encode("ascii"),
    )


def smpplib_receipt() -> Any:
    return smpplib_build(
        "deliver_sm",
        sequence=2,
        source_addr_ton=1,
        source_addr_npi=1,
        source_addr=DEST,
        dest_addr_ton=1,
        dest_addr_npi=1,
        destination_addr=SOURCE,
        esm_class=0x04,
        short_message=RECEIPT_TEXT.encode("ascii"),
        receipted_message_id=MSG_ID,
        message_state=2,
    )


def smpplib_encode(pdu: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        gen = pdu.generate
        for _ in range(n):
            gen()

    return run


def smpplib_build_encode(build: Callable[[], Any]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            build().generate()

    return run


def smpplib_decode(wire: bytes, tlv_names: tuple[str, ...]) -> Callable[[int], None]:
    import smpplib.smpp

    names = ("sequence", "status", *SM_FIELDS, *tlv_names)

    def run(n: int) -> None:
        parse = smpplib.smpp.parse_pdu
        for _ in range(n):
            p = parse(wire, client=None, sequence=0)
            for name in names:
                getattr(p, name)

    return run


# =====================================================================================
# smpp34 1.5.0
# =====================================================================================


def smpp34_submit() -> Any:
    import smpp34

    return smpp34.SubmitSm(
        SOURCE,
        DEST,
        TEXT_160.encode("ascii"),
        source_addr_ton=1,
        source_addr_npi=1,
        dest_addr_ton=1,
        dest_addr_npi=1,
        registered_delivery=1,
        sequence_number=1,
    )


def smpp34_receipt() -> Any:
    import smpp34

    return smpp34.DeliverSm(
        DEST,
        SOURCE,
        RECEIPT_TEXT.encode("ascii"),
        source_addr_ton=1,
        source_addr_npi=1,
        dest_addr_ton=1,
        dest_addr_npi=1,
        esm_class=0x04,
        tlvs=[
            smpp34.Tlv(Tag.receipted_message_id, MSG_ID.encode() + b"\x00"),
            smpp34.Tlv(Tag.message_state, b"\x02"),
        ],
        sequence_number=2,
    )


def smpp34_encode(pdu: Any) -> Callable[[int], None]:
    def run(n: int) -> None:
        enc = pdu.encode
        for _ in range(n):
            enc()

    return run


def smpp34_build_encode(build: Callable[[], Any]) -> Callable[[int], None]:
    def run(n: int) -> None:
        for _ in range(n):
            build().encode()

    return run


def smpp34_decode(wire: bytes) -> Callable[[int], None]:
    import smpp34

    def run(n: int) -> None:
        # the wire is a submit_sm (cast once per run, outside the loop)
        dec = cast("Callable[[bytes], smpp34.SubmitSm]", smpp34.decode)
        for _ in range(n):
            p = dec(wire)
            _ = (
                p.sequence_number,
                p.service_type,
                p.source_addr_ton,
                p.source_addr_npi,
                p.source_addr,
                p.dest_addr_ton,
                p.dest_addr_npi,
                p.destination_addr,
                p.esm_class,
                p.protocol_id,
                p.priority_flag,
                p.schedule_delivery_time,
                p.validity_period,
                p.registered_delivery,
                p.replace_if_present_flag,
                p.data_coding,
                p.sm_default_msg_id,
                p.short_message,
            )
            for t in p.tlvs:
                _ = t.tag, t.value

    return run


def python_framing(buf: bytes) -> Callable[[int], None]:
    """The read-length-then-body loop both third-party clients run, over a buffer."""

    def run(n: int) -> None:
        unpack = struct.unpack_from
        total = len(buf)
        for _ in range(n):
            pos = 0
            out = []
            while total - pos >= 16:
                (length,) = unpack(">I", buf, pos)
                if total - pos < length:
                    break
                out.append(buf[pos : pos + length])
                pos += length

    return run


# =====================================================================================
# the run
# =====================================================================================


def mixed_buffer(size: int = 1 << 20) -> tuple[bytes, int]:
    """About ``size`` octets of whole PDUs in a realistic mix, and how many PDUs it holds."""
    kinds = [
        encode_pdu(ours_submit()),
        encode_pdu(SubmitSmResp(sequence_number=1, message_id=MSG_ID)),
        encode_pdu(ours_receipt()),
        encode_pdu(DeliverSmResp(sequence_number=2)),
        encode_pdu(EnquireLink(sequence_number=3)),
    ]
    parts: list[bytes] = []
    total = count = 0
    while total < size:
        w = kinds[count % len(kinds)]
        parts.append(w)
        total += len(w)
        count += 1
    return b"".join(parts), count


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="shorter timing windows (noisier)")
    ap.add_argument("--only", choices=("catalyst_smpp", "smpplib", "smpp34"), action="append")
    args = ap.parse_args(argv)
    window = 0.1 if args.quick else 0.3
    libs = args.only or ["catalyst_smpp", "smpplib", "smpp34"]

    submit_wire = encode_pdu(ours_submit())
    receipt_wire = encode_pdu(ours_receipt())
    buf, count = mixed_buffer()
    # the three encoders must agree on the bytes (else the comparison is meaningless)

    assert smpp34_submit().encode() == submit_wire
    assert smpp34_receipt().encode() == receipt_wire
    assert smpplib_submit().generate() == submit_wire

    rows: list[tuple[str, str, str, float]] = []  # (workload, lib, unit, ops/s)
    n = 2000
    for lib in libs:
        if lib == "catalyst_smpp":
            work = [
                ("submit_sm encode", ours_build_encode(ours_submit), n, 1),
                ("submit_sm encode only", ours_encode(ours_submit()), n, 1),
                ("submit_sm decode+fields", ours_decode(submit_wire), n, 1),
                ("receipt encode", ours_build_encode(ours_receipt), n, 1),
                ("receipt encode only", ours_encode(ours_receipt()), n, 1),
                ("receipt decode+fields", ours_decode(receipt_wire), n, 1),
                ("framing 1 MB mixed", ours_framing(buf), 2, count),
            ]
        elif lib == "smpplib":
            work = [
                ("submit_sm encode", smpplib_build_encode(smpplib_submit), n // 10, 1),
                ("submit_sm encode only", smpplib_encode(smpplib_submit()), n // 10, 1),
                ("submit_sm decode+fields", smpplib_decode(submit_wire, ()), n // 10, 1),
                ("receipt encode", smpplib_build_encode(smpplib_receipt), n // 10, 1),
                ("receipt encode only", smpplib_encode(smpplib_receipt()), n // 10, 1),
                (
                    "receipt decode+fields",
                    smpplib_decode(receipt_wire, ("receipted_message_id", "message_state")),
                    n // 10,
                    1,
                ),
                ("framing 1 MB mixed (py loop)", python_framing(buf), 1, count),
            ]
        else:
            work = [
                ("submit_sm encode", smpp34_build_encode(smpp34_submit), n, 1),
                ("submit_sm encode only", smpp34_encode(smpp34_submit()), n, 1),
                ("submit_sm decode+fields", smpp34_decode(submit_wire), n, 1),
                ("receipt encode", smpp34_build_encode(smpp34_receipt), n, 1),
                ("receipt encode only", smpp34_encode(smpp34_receipt()), n, 1),
                ("receipt decode+fields", smpp34_decode(receipt_wire), n, 1),
                ("framing 1 MB mixed (py loop)", python_framing(buf), 1, count),
            ]
        for name, fn, loops, per_call in work:
            rows.append((name, lib, "PDUs/s", timeit(fn, loops, window) * per_call))

    base = {name.split(" (")[0]: v for name, lib, _, v in rows if lib == "smpplib"}
    print(f"{'workload':30} {'library':14} {'ops/s':>14} {'x smpplib':>10}")
    print("-" * 71)
    order = [
        "submit_sm encode",
        "submit_sm encode only",
        "submit_sm decode+fields",
        "receipt encode",
        "receipt encode only",
        "receipt decode+fields",
        "framing",
    ]
    for key in order:
        for name, lib, _, v in rows:
            if name == key or (key == "framing" and name.startswith(key)):
                b = base.get(name.split(" (")[0])
                ratio = f"{v / b:9.1f}x" if b else f"{'-':>10}"
                print(f"{name:30} {lib:14} {v:14,.0f} {ratio}")
    print(f"\nframing buffer: {len(buf):,} octets, {count:,} PDUs; python {sys.version.split()[0]}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
