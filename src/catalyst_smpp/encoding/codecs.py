"""Text codecs of the C core (``native/csmpp_text.c``): GSM 03.38, Latin-1, ASCII, UCS-2.

* ``encode(text, encoding, ...)`` -> bytes.  GSM 7-bit unpacked (one septet per octet,
  SMPP's usual form) or packed (with ``fill_bits`` after a UDH), with the national
  language single-shift / locking-shift tables of 3GPP TS 23.038 Annex A; Latin-1;
  IA5/ASCII; UCS-2 as UTF-16BE (characters beyond the BMP become surrogate pairs);
  8-bit binary (code points 0-255).  ``errors="strict"`` raises
  :class:`UnencodableCharacterError` naming the first character that the encoding
  cannot carry and its index; ``errors="replace"`` writes ``replacement`` instead.
* ``decode(data, encoding, ...)`` -> str never fails on bad data: an invalid GSM octet,
  an unassigned table position, a lone UTF-16 surrogate or an odd UCS-2 octet becomes
  ``replacement`` (U+FFFD unless told otherwise).
* ``decode_short_message(short_message, data_coding, ...)`` decodes an inbound
  ``short_message``: it skips the UDH (esm_class UDHI), honours its national language
  IEs (0x24 / 0x25) and the fill bits of packed GSM, and maps data_coding through
  :func:`~catalyst_smpp.encoding.datacoding.parse_data_coding` with the peer's default
  alphabet.

Strings reach C as one buffer: ASCII strings as their octets (``str.isascii`` is O(1)),
others as UTF-32 in native byte order (``surrogatepass``, so a lone surrogate in a str
is reported as unencodable rather than crashing the conversion).
"""

from __future__ import annotations

import enum
import sys
import threading
from typing import Final, Literal

import attrs

from catalyst_smpp.encoding.datacoding import (
    Alphabet,
    Encoding,
    encoding_for,
    parse_data_coding,
)
from catalyst_smpp.native import NativeError, ffi, lib

__all__ = [
    "DecodedMessage",
    "Encoding",
    "Errors",
    "NationalLanguage",
    "UnencodableCharacterError",
    "decode",
    "decode_short_message",
    "encode",
    "encode_counted",
    "gsm_table",
    "text_buffer",
]

Errors = Literal["strict", "replace"]

_UTF32: Final = "utf-32-le" if sys.byteorder == "little" else "utf-32-be"
_NO_REPLACEMENT: Final[int] = lib.CSMPP_NO_REPLACEMENT
_E_UNMAPPABLE: Final[int] = lib.CSMPP_E_UNMAPPABLE


class NationalLanguage(enum.IntEnum):
    """National language identifiers of 3GPP TS 23.038 (6.2.1.2.4); DEFAULT = no national table."""

    DEFAULT = lib.CSMPP_LANG_DEFAULT
    TURKISH = lib.CSMPP_LANG_TURKISH
    SPANISH = lib.CSMPP_LANG_SPANISH
    PORTUGUESE = lib.CSMPP_LANG_PORTUGUESE
    BENGALI = lib.CSMPP_LANG_BENGALI
    GUJARATI = lib.CSMPP_LANG_GUJARATI
    HINDI = lib.CSMPP_LANG_HINDI
    KANNADA = lib.CSMPP_LANG_KANNADA
    MALAYALAM = lib.CSMPP_LANG_MALAYALAM
    ORIYA = lib.CSMPP_LANG_ORIYA
    PUNJABI = lib.CSMPP_LANG_PUNJABI
    TAMIL = lib.CSMPP_LANG_TAMIL
    TELUGU = lib.CSMPP_LANG_TELUGU
    URDU = lib.CSMPP_LANG_URDU

    @property
    def has_locking_shift(self) -> bool:
        """Whether 23.038 defines a locking-shift table for the language (Spanish has none)."""
        return self is not NationalLanguage.SPANISH


class UnencodableCharacterError(ValueError):
    """A character the target encoding cannot carry (strict mode)."""

    def __init__(self, char: str, position: int, encoding: Encoding) -> None:
        self.char = char
        self.position = position
        self.encoding = encoding
        super().__init__(f"{encoding.name} cannot encode {char!r} (U+{ord(char):04X}) at position {position}")


def text_buffer(text: str) -> tuple[bytes, int]:
    """``text`` as the C core reads it: (buffer, width) with width 1 (ASCII) or 4 (UTF-32)."""
    if text.isascii():
        return text.encode("ascii"), 1
    return text.encode(_UTF32, "surrogatepass"), 4


_new: Final = ffi.new
_buffer: Final = ffi.buffer


def c_text(text: str) -> tuple[object, int]:
    """``text`` for a ``const void *text`` argument: (ASCII bytes, 1) or (``char32_t[]``, 4).

    cffi widens a str into ``char32_t[]`` several times faster than a UTF-32 codec, and keeps
    lone surrogates as they are (so C reports them as unencodable).
    """
    if text.isascii():
        return text.encode("ascii"), 1
    return _new("char32_t[]", text), 4


class Scratch:
    """Per-thread output buffers for the C calls, reused between calls (no allocation per call).

    ``out`` (``uint8_t[size]``) with ``out_bytes``, an ``ffi.buffer`` over it whose slices are
    bytes; ``parts`` (5 int32 per part, 255 parts) and ``info`` (8 int32).
    """

    __slots__ = ("info", "out", "out_bytes", "parts", "size")

    def __init__(self, size: int) -> None:
        self.size = max(size, 1 << 16)
        self.out = _new("uint8_t[]", self.size)
        self.out_bytes = _buffer(self.out)
        self.parts = _new("int32_t[]", 5 * lib.CSMPP_SEG_MAX_PARTS)
        self.info = _new("int32_t[]", lib.CSMPP_SEG_INFO_LEN)


_tls: Final = threading.local()


def scratch(size: int) -> Scratch:
    """This thread's scratch buffers, with at least ``size`` octets of output room."""
    s: Scratch | None = _tls.__dict__.get("s")
    if s is None or s.size < size:
        s = _tls.s = Scratch(size)
    return s


def replacement_code(errors: Errors, replacement: str) -> int:
    if errors == "strict":
        return _NO_REPLACEMENT
    if errors != "replace":
        raise ValueError(f"errors must be 'strict' or 'replace', not {errors!r}")
    if len(replacement) != 1:
        raise ValueError("replacement must be one character")
    return ord(replacement)


def _check_langs(encoding: Encoding, single: NationalLanguage, locking: NationalLanguage) -> None:
    if (single or locking) and not encoding.is_gsm:
        raise ValueError("national language tables apply to GSM 7-bit only")
    if not NationalLanguage(locking).has_locking_shift:
        raise ValueError(f"{NationalLanguage(locking).name} has no locking-shift table")


def encode_counted(
    text: str,
    encoding: Encoding = Encoding.GSM7,
    *,
    errors: Errors = "strict",
    replacement: str = "?",
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    fill_bits: int = 0,
) -> tuple[bytes, int]:
    """Like :func:`encode`, and also the units written (septets, octets or UTF-16 units)."""
    _check_langs(encoding, single_shift, locking_shift)
    repl = replacement_code(errors, replacement)
    buf, width = c_text(text)
    n = len(text)
    sc = scratch(_encode_max_len(n, encoding))
    info = sc.info
    rc: int = _text_encode(
        buf, n, width, encoding, single_shift, locking_shift, repl, fill_bits, sc.out, sc.size, info
    )
    if rc < 0:
        if rc == _E_UNMAPPABLE:
            pos = int(info[1])
            raise UnencodableCharacterError(text[pos], pos, Encoding(encoding))
        if repl != _NO_REPLACEMENT and rc == lib.CSMPP_E_ARG:
            raise ValueError(
                f"replacement {replacement!r} is itself not encodable in {Encoding(encoding).name}"
            )
        raise NativeError(rc, "text_encode")
    return sc.out_bytes[:rc], int(info[0])


_text_encode: Final = lib.csmpp_text_encode
_encode_max_len: Final = lib.csmpp_text_encode_max_len


def encode(
    text: str,
    encoding: Encoding = Encoding.GSM7,
    *,
    errors: Errors = "strict",
    replacement: str = "?",
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    fill_bits: int = 0,
) -> bytes:
    """Encode ``text``; see the module doc.  ``fill_bits`` (0-6) only for GSM7_PACKED."""
    return encode_counted(
        text,
        encoding,
        errors=errors,
        replacement=replacement,
        single_shift=single_shift,
        locking_shift=locking_shift,
        fill_bits=fill_bits,
    )[0]


def decode(
    data: bytes | bytearray | memoryview,
    encoding: Encoding = Encoding.GSM7,
    *,
    single_shift: NationalLanguage = NationalLanguage.DEFAULT,
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT,
    fill_bits: int = 0,
    septets: int | None = None,
    replacement: str = "\ufffd",
) -> str:
    """Decode ``data``; never fails on bad data (see the module doc).

    GSM7_PACKED: ``fill_bits`` (0-6) are skipped first; ``septets`` is the septet count
    when known, else every whole septet is taken and a <CR> that fills the 7 spare bits of
    the last octet is dropped as padding (23.038 6.1.2.3.1; a text whose last character is
    a real <CR> on an octet boundary needs ``septets``).
    """
    _check_langs(encoding, single_shift, locking_shift)
    if len(replacement) != 1:
        raise ValueError("replacement must be one character")
    n = len(data)
    cap = lib.csmpp_text_decode_max_len(n, encoding)
    out = bytearray(4 * cap)
    rc: int = lib.csmpp_text_decode(
        ffi.from_buffer(data), n, encoding, single_shift, locking_shift, fill_bits,
        -1 if septets is None else septets, ord(replacement),
        ffi.cast("uint32_t *", ffi.from_buffer(out)), cap,
    )  # fmt: skip
    if rc < 0:
        raise NativeError(rc, "text_decode")
    return str(memoryview(out)[: 4 * rc], _UTF32)


def gsm_table(language: NationalLanguage, *, shift: bool) -> tuple[str | None, ...]:
    """The 128 characters of a GSM table (None = unassigned, and always at 0x1B).

    ``shift=False``: the locking-shift table (DEFAULT: the default alphabet);
    ``shift=True``: the single-shift table (DEFAULT: the default extension table).
    """
    out: list[str | None] = []
    for septet in range(128):
        cp: int = lib.csmpp_gsm_table_char(language, 1 if shift else 0, septet)
        if cp < -1:
            raise NativeError(cp, "gsm_table_char")
        out.append(None if cp == -1 else chr(cp))
    return tuple(out)


# --- inbound messages -------------------------------------------------------------------

_OTHER_CODECS: Final = {Alphabet.CYRILLIC: "iso8859_5", Alphabet.LATIN_HEBREW: "iso8859_8"}


@attrs.frozen(slots=True)
class DecodedMessage:
    text: str | None
    """The text, or None for 8-bit data and alphabets this gateway cannot read."""
    udh: bytes
    """The UDH as received (UDHL octet included), or b"" without one."""
    payload: bytes
    """The octets after the UDH."""
    alphabet: Alphabet
    single_shift: NationalLanguage = NationalLanguage.DEFAULT
    locking_shift: NationalLanguage = NationalLanguage.DEFAULT
    problems: tuple[str, ...] = ()


def _national_ies(udh: bytes) -> tuple[NationalLanguage, NationalLanguage, list[str]]:
    single = locking = NationalLanguage.DEFAULT
    problems: list[str] = []
    i, end = 1, len(udh)
    while i + 2 <= end:
        iei, iel = udh[i], udh[i + 1]
        value = udh[i + 2 : i + 2 + iel]
        if len(value) < iel:
            problems.append("UDH information element overruns the UDH")
            break
        if iei in (0x24, 0x25) and iel == 1:
            try:
                lang = NationalLanguage(value[0])
            except ValueError:
                problems.append(f"unknown national language {value[0]} in IE 0x{iei:02X}")
            else:
                if iei == 0x24:
                    single = lang
                elif lang.has_locking_shift:
                    locking = lang
                else:
                    problems.append(f"no locking-shift table for {lang.name}")
        i += 2 + iel
    return single, locking, problems


def decode_short_message(
    short_message: bytes,
    data_coding: int,
    *,
    udhi: bool = False,
    default_alphabet: Alphabet = Alphabet.GSM7,
    gsm_packed: bool = False,
    replacement: str = "\ufffd",
) -> DecodedMessage:
    """Decode an inbound ``short_message`` (or message_payload); never raises on bad data.

    ``udhi``: the esm_class UDHI bit (0x40).  ``default_alphabet``: what data_coding 0
    means for this peer.  ``gsm_packed``: the peer sends GSM 7-bit packed.
    """
    dc = parse_data_coding(data_coding, default_alphabet)
    problems: list[str] = []
    udh, payload = b"", short_message
    if udhi:
        if short_message and 1 + short_message[0] <= len(short_message):
            udh, payload = short_message[: 1 + short_message[0]], short_message[1 + short_message[0] :]
        else:
            problems.append("UDHI set but the UDH length overruns the message; decoded without a UDH")
    single, locking, ie_problems = (
        _national_ies(udh) if udh else (NationalLanguage.DEFAULT, NationalLanguage.DEFAULT, [])
    )
    problems.extend(ie_problems)
    if dc.compressed:
        problems.append("compressed text (23.042) is not supported")
        return DecodedMessage(None, udh, payload, dc.alphabet, problems=tuple(problems))
    if dc.alphabet in _OTHER_CODECS:
        text = payload.decode(_OTHER_CODECS[dc.alphabet], "replace")
        return DecodedMessage(text, udh, payload, dc.alphabet, problems=tuple(problems))
    enc = encoding_for(dc.alphabet, gsm_packed=gsm_packed)
    if enc is None or enc is Encoding.BINARY:
        return DecodedMessage(None, udh, payload, dc.alphabet, problems=tuple(problems))
    if not enc.is_gsm:
        single = locking = NationalLanguage.DEFAULT
    fill = 0
    if enc is Encoding.GSM7_PACKED and udh:
        fill = (7 - (8 * len(udh)) % 7) % 7
    text = decode(
        payload, enc, single_shift=single, locking_shift=locking, fill_bits=fill, replacement=replacement
    )
    return DecodedMessage(text, udh, payload, dc.alphabet, single, locking, tuple(problems))
