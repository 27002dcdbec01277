"""Slow, obviously-correct Python references for the C text functions (tests only).

One function per C entry point, written for reading, not for speed:

* ``ref_encode``  ~ ``csmpp_text_encode``
* ``ref_decode``  ~ ``csmpp_text_decode``
* ``ref_segment`` ~ ``csmpp_seg_plan``
* ``ref_table_char`` ~ ``csmpp_gsm_table_char``

The GSM tables come from ``gsm_tables.py`` (the same transcription of 3GPP TS 23.038 the
C tables are generated from, as Python strings); the default and extension tables are
also checked against the independent ``gsm0338`` codec in the tests.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from tests.encoding.gsm_tables import LOCK, SHIFT

GSM7, GSM7_PACKED, LATIN1, ASCII, UCS2, BINARY, AUTO = 0, 1, 2, 3, 4, 5, 15
UDH8, UDH16, SAR, PAYLOAD = 0, 1, 2, 3
ESC = 0x1B
CR = 0x0D
UNASSIGNED = "\uffff"


class RefUnmappable(Exception):
    def __init__(self, position: int) -> None:
        super().__init__(position)
        self.position = position


def ref_table_char(lang: int, shift: bool, septet: int) -> int | None:
    table = SHIFT[lang] if shift else LOCK[lang]
    ch = table[septet]
    return None if ch == UNASSIGNED else ord(ch)


def _first_position(table: str, ch: str) -> int | None:
    """The lowest septet holding ch in the table, or None."""
    for septet, c in enumerate(table):
        if c == ch and c != UNASSIGNED:
            return septet
    return None


def char_codes(ch: str, enc: int, single: int = 0, locking: int = 0) -> list[int] | None:
    """The units for one character: septets, octets, or UTF-16 code units; None if unmappable."""
    cp = ord(ch)
    if enc in (GSM7, GSM7_PACKED):
        septet = _first_position(LOCK[locking], ch)
        if septet is not None:
            return [septet]
        septet = _first_position(SHIFT[single], ch)
        if septet is not None:
            return [ESC, septet]
        return None
    if enc in (LATIN1, BINARY):
        return [cp] if cp <= 0xFF else None
    if enc == ASCII:
        return [cp] if cp <= 0x7F else None
    if enc == UCS2:
        if 0xD800 <= cp <= 0xDFFF:
            return None
        if cp <= 0xFFFF:
            return [cp]
        v = cp - 0x10000
        return [0xD800 + (v >> 10), 0xDC00 + (v & 0x3FF)]
    raise ValueError(enc)


def _codes_with_replacement(
    ch: str, enc: int, single: int, locking: int, replacement: str | None
) -> list[int] | None:
    codes = char_codes(ch, enc, single, locking)
    if codes is None and replacement is not None:
        codes = char_codes(replacement, enc, single, locking)
    return codes


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB first after fill_bits zero bits; 7 spare bits at the end get <CR>."""
    if not septets:
        return b""
    bits: list[int] = [0] * fill_bits
    for s in septets:
        bits.extend((s >> i) & 1 for i in range(7))
    if len(bits) % 8 == 1:
        bits.extend((CR >> i) & 1 for i in range(7))
    while len(bits) % 8:
        bits.append(0)
    return bytes(sum(bits[i + j] << j for j in range(8)) for i in range(0, len(bits), 8))


def unpack_septets(data: bytes, fill_bits: int, count: int) -> list[int]:
    bits = [(b >> j) & 1 for b in data for j in range(8)]
    out = []
    for k in range(count):
        start = fill_bits + 7 * k
        out.append(sum(bits[start + j] << j for j in range(7)))
    return out


def units_to_bytes(units: list[int], enc: int, fill_bits: int = 0) -> bytes:
    if enc == GSM7:
        return bytes(units)
    if enc == GSM7_PACKED:
        return pack_septets(units, fill_bits)
    if enc == UCS2:
        return b"".join(u.to_bytes(2, "big") for u in units)
    return bytes(units)


def ref_encode(
    text: str, enc: int, single: int = 0, locking: int = 0, replacement: str | None = None, fill_bits: int = 0
) -> tuple[bytes, int]:
    """(encoded bytes, units); raises RefUnmappable(position)."""
    units: list[int] = []
    for i, ch in enumerate(text):
        codes = _codes_with_replacement(ch, enc, single, locking, replacement)
        if codes is None:
            raise RefUnmappable(i)
        units.extend(codes)
    return units_to_bytes(units, enc, fill_bits), len(units)


def _gsm_septets_to_text(septets: list[int | None], single: int, locking: int, replacement: str) -> str:
    """None in septets marks an octet that is not a septet (> 0x7F)."""
    out = []
    i = 0
    while i < len(septets):
        s = septets[i]
        if s is None:
            out.append(replacement)
        elif s == ESC:
            if i + 1 == len(septets):
                out.append(" ")
            elif septets[i + 1] is None:
                out.append(replacement)
            else:
                t = septets[i + 1]
                assert t is not None
                i += 1
                if t == ESC:
                    out.append(" ")
                else:
                    ch = SHIFT[single][t]
                    if ch == UNASSIGNED:
                        ch = LOCK[locking][t]
                    out.append(replacement if ch == UNASSIGNED else ch)
        else:
            ch = LOCK[locking][s]
            out.append(replacement if ch == UNASSIGNED else ch)
        i += 1
    return "".join(out)


def ref_decode(
    data: bytes,
    enc: int,
    single: int = 0,
    locking: int = 0,
    fill_bits: int = 0,
    septets: int | None = None,
    replacement: str = "\ufffd",
) -> str:
    if enc == GSM7:
        return _gsm_septets_to_text([b if b < 0x80 else None for b in data], single, locking, replacement)
    if enc == GSM7_PACKED:
        whole = (len(data) * 8 - fill_bits) // 7 if len(data) * 8 >= fill_bits else 0
        count = whole if septets is None else septets
        values: list[int | None] = list(unpack_septets(data, fill_bits, count))
        if septets is None and values and fill_bits + 7 * count == 8 * len(data) and values[-1] == CR:
            values.pop()
        return _gsm_septets_to_text(values, single, locking, replacement)
    if enc in (LATIN1, BINARY):
        return data.decode("latin-1")
    if enc == ASCII:
        return "".join(chr(b) if b < 0x80 else replacement for b in data)
    if enc == UCS2:
        units = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data) - 1, 2)]
        out = []
        i = 0
        while i < len(units):
            u = units[i]
            if 0xD800 <= u <= 0xDBFF and i + 1 < len(units) and 0xDC00 <= units[i + 1] <= 0xDFFF:
                out.append(chr(0x10000 + ((u - 0xD800) << 10) + (units[i + 1] - 0xDC00)))
                i += 2
                continue
            out.append(replacement if 0xD800 <= u <= 0xDFFF else chr(u))
            i += 1
        if len(data) % 2:
            out.append(replacement)
        return "".join(out)
    raise ValueError(enc)


# --- segmentation ------------------------------------------------------------------------


@dataclass
class RefPart:
    udh: bytes
    payload: bytes
    start: int
    end: int


@dataclass
class RefPlan:
    enc: int
    single: int
    locking: int
    total_units: int
    fill_bits: int
    parts: list[RefPart] = field(default_factory=list)


class RefTooManyParts(Exception):
    pass


def _kind(enc: int) -> str:
    return "gsm" if enc in (GSM7, GSM7_PACKED) else "ucs2" if enc == UCS2 else "octet"


def udh_ies(multi: bool, method: int, ref: int, total: int, seq: int, single: int, locking: int,
            port_ie: int, dst: int, src: int) -> bytes:  # fmt: skip
    ies = b""
    if multi and method == UDH8:
        ies += bytes([0x00, 3, ref, total, seq])
    if multi and method == UDH16:
        ies += bytes([0x08, 4, ref >> 8, ref & 0xFF, total, seq])
    if single:
        ies += bytes([0x24, 1, single])
    if locking:
        ies += bytes([0x25, 1, locking])
    if port_ie == 8:
        ies += bytes([0x04, 2, dst, src])
    if port_ie == 16:
        ies += bytes([0x05, 4]) + dst.to_bytes(2, "big") + src.to_bytes(2, "big")
    return bytes([len(ies)]) + ies if ies else b""


def capacity(enc: int, udh_len: int) -> int:
    """Units that fit one message beside a UDH of udh_len octets (its length octet included)."""
    kind = _kind(enc)
    if kind == "gsm":
        return (140 * 8 - 8 * udh_len) // 7
    if kind == "octet":
        return 140 - udh_len
    return (140 - udh_len) // 2


def _layout(text: str, enc: int, single: int, locking: int, replacement: str | None, method: int,
            port_ie: int) -> tuple[list[tuple[int, int]], int, int]:  # fmt: skip
    """([(start, end)], total units, udh length of each part); RefUnmappable."""
    sizes = []
    for i, ch in enumerate(text):
        codes = _codes_with_replacement(ch, enc, single, locking, replacement)
        if codes is None:
            raise RefUnmappable(i)
        sizes.append(len(codes))
    total = sum(sizes)
    # a probe UDH with dummy values gives the real lengths
    udh1 = len(udh_ies(False, method, 0, 0, 0, single, locking, port_ie, 0, 0))
    udhn = len(udh_ies(True, method, 0, 0, 0, single, locking, port_ie, 0, 0))
    if method == PAYLOAD or total <= capacity(enc, udh1):
        return [(0, len(text))], total, udh1
    # SAR: the SMSC puts an 8-bit-reference concatenation IE on the air interface
    cap = capacity(
        enc, udhn if method != SAR else len(udh_ies(True, UDH8, 0, 0, 0, single, locking, port_ie, 0, 0))
    )
    bounds = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if used + size > cap:
            bounds.append((start, i))
            start, used = i, 0
        used += size
    bounds.append((start, len(text)))
    return bounds, total, udhn


def _candidates(auto_encs: int, auto_langs: int) -> list[tuple[int, int, int]]:
    out = []
    if auto_encs & ((1 << GSM7) | (1 << GSM7_PACKED)):
        g = GSM7_PACKED if auto_encs & (1 << GSM7_PACKED) else GSM7
        out.append((g, 0, 0))
        for lang in range(1, 14):
            if auto_langs & (1 << lang):
                out.append((g, lang, 0))
                if lang in LOCK:
                    out.append((g, 0, lang))
                    out.append((g, lang, lang))
    for enc in (ASCII, LATIN1, UCS2):
        if auto_encs & (1 << enc):
            out.append((enc, 0, 0))
    return out


def _unit_bits(enc: int) -> int:
    return {"gsm": 7, "octet": 8, "ucs2": 16}[_kind(enc)]


def ref_segment(
    text: str,
    enc: int,
    single: int = 0,
    locking: int = 0,
    auto_encs: int = 0,
    auto_langs: int = 0,
    method: int = UDH8,
    ref: int = 0,
    port_ie: int = 0,
    dst: int = 0,
    src: int = 0,
    replacement: str | None = None,
) -> RefPlan:
    """The plan csmpp_seg_plan should make.  RefUnmappable / RefTooManyParts."""
    if enc == AUTO:
        cands = _candidates(auto_encs, auto_langs)
        best = None
        best_cost = None
        first_error = None
        for i, (c_enc, c_single, c_locking) in enumerate(cands):
            try:
                bounds, total, udh_n = _layout(text, c_enc, c_single, c_locking, None, method, port_ie)
            except RefUnmappable as exc:
                if i == 0:
                    first_error = exc
                continue
            cost = (len(bounds), total * _unit_bits(c_enc) + len(bounds) * 8 * udh_n)
            if best_cost is None or cost < best_cost:
                best, best_cost = (c_enc, c_single, c_locking), cost
        if best is None:
            if replacement is None:
                assert first_error is not None
                raise first_error
            best = cands[0]
        else:
            replacement = None
        enc, single, locking = best
    bounds, total, udh_len = _layout(text, enc, single, locking, replacement, method, port_ie)
    if len(bounds) > 255:
        raise RefTooManyParts(len(bounds))
    fill = (7 - (8 * udh_len) % 7) % 7 if enc == GSM7_PACKED and udh_len else 0
    plan = RefPlan(enc, single, locking, total, fill)
    multi = len(bounds) > 1
    for seq, (start, end) in enumerate(bounds, 1):
        udh = udh_ies(multi, method, ref, len(bounds), seq, single, locking, port_ie, dst, src)
        payload, _ = ref_encode(text[start:end], enc, single, locking, replacement, fill)
        plan.parts.append(RefPart(udh, payload, start, end))
    return plan
