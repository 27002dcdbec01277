"""The typed Python face of the C core.

This module is the only importer of the compiled ``catalyst_smpp._native``
extension.  It turns the C functions' negative return codes into exceptions
and hands out plain Python values.  Other modules call the functions here,
never ``_native`` itself.
"""

from __future__ import annotations

import threading
from typing import Any, Final

from catalyst_smpp._native import ffi, lib  # the one import of the C core

__all__ = ["NativeError", "ffi", "frame_scan", "lib", "raise_for_code"]

E_LEN_SHORT: Final = lib.CSMPP_E_LEN_SHORT
E_LEN_LONG: Final = lib.CSMPP_E_LEN_LONG
E_OUTPUT: Final = lib.CSMPP_E_OUTPUT
E_INPUT: Final = lib.CSMPP_E_INPUT
E_UNMAPPABLE: Final = lib.CSMPP_E_UNMAPPABLE
E_ARG: Final = lib.CSMPP_E_ARG

_MESSAGES: Final = {
    E_LEN_SHORT: "command_length below the 16-octet header",
    E_LEN_LONG: "command_length above the configured maximum",
    E_OUTPUT: "output buffer too small",
    E_INPUT: "malformed input",
    E_UNMAPPABLE: "character not representable in the target encoding",
    E_ARG: "argument out of range",
}


class NativeError(ValueError):
    """A C core function returned a negative error code."""

    def __init__(self, code: int, where: str) -> None:
        self.code = code
        self.where = where
        super().__init__(f"{where}: {_MESSAGES.get(code, 'error')} ({code})")


def raise_for_code(code: int, where: str) -> None:
    if code < 0:
        raise NativeError(code, where)


# --- framing -----------------------------------------------------------------

_SCAN_SLOTS: Final = 4096
_new = ffi.new
# frame_scan's output slots and counters, allocated once per thread and reused (allocating
# 16 KB of slots per call cost more than scanning a typical read); per thread because cffi
# releases the GIL during the C call
_scan_local = threading.local()


def _scan_buffers() -> tuple[Any, Any, Any]:
    bufs = (_new("uint32_t[]", _SCAN_SLOTS), _new("size_t *"), _new("size_t *"))
    _scan_local.bufs = bufs
    return bufs


def frame_scan(
    buf: bytes | bytearray | memoryview, max_len: int, start: int = 0
) -> tuple[list[int], int, int]:
    """Find every complete PDU in ``buf[start:]``.

    Returns ``(offsets, consumed, need)``: the absolute start offset of each
    complete PDU, the absolute offset just past the last of them, and how many
    bytes from ``consumed`` must be buffered before another PDU can complete.
    Raises :class:`NativeError` (code ``E_LEN_SHORT`` / ``E_LEN_LONG``) when the
    first PDU at ``start`` has an impossible command_length.
    """
    total = len(buf)
    src = ffi.from_buffer(buf)
    try:
        dst, consumed, need = _scan_local.bufs
    except AttributeError:
        dst, consumed, need = _scan_buffers()
    out: list[int] = []
    pos = start
    while True:
        n = lib.csmpp_frame_scan(src + pos, total - pos, max_len, dst, _SCAN_SLOTS, consumed, need)
        if n < 0:
            if out:  # cannot happen (C reports a bad length only at its start) but keep what we have
                break
            raise NativeError(n, "frame_scan")
        if n:
            chunk: list[int] = ffi.unpack(dst, n)
            if pos:
                chunk = [o + pos for o in chunk]
            out.extend(chunk)
        pos += consumed[0]
        if n < _SCAN_SLOTS:
            break
    return out, pos, int(need[0])
