"""Cut a TCP byte stream into SMPP PDUs (sans-IO).

:class:`Framer` accepts the stream in chunks of any size and returns, for each
chunk, every PDU that became complete, as one ``bytes`` buffer plus the start
offsets of the PDUs in it (``codec.decode_pdu(buf, offset)`` decodes one without
slicing: measured ~0.4 us per PDU cheaper than handing out sliced ``bytes``).  The
C scanner ``csmpp_frame_scan`` (the one behind :func:`catalyst_smpp.native.frame_scan`)
finds all of them in one call; the framer calls it through ``native.lib`` with output
slots of its own (256 offsets per call), which saves the per-call wrapper work of
``native.frame_scan`` on small reads.

Work is linear in the stream length:

* The framer remembers how many bytes the next PDU needs (16 for a header, then
  its command_length) and does not scan until that many are buffered, so a PDU
  arriving one byte at a time is scanned at most twice.
* A chunk that arrives with nothing buffered is scanned in place (no copy); only
  its incomplete tail is kept.  Otherwise the chunk is appended to the buffer,
  the buffer is copied once into ``bytes`` for the scan and the decoders, and the
  scanned prefix is dropped from the front (O(1) in CPython's bytearray).

A command_length below 16 or above the maximum means the stream lost sync:
:class:`~catalyst_smpp.protocol.errors.FramingError`.  Good PDUs before the bad
header are returned first; the error is raised by the next :meth:`Framer.feed`
and is available as :attr:`Framer.error` at once.  After an error the framer
stays broken (there is no way to resynchronise an SMPP stream).
"""

from __future__ import annotations

from typing import Final

from catalyst_smpp.native import E_LEN_SHORT, ffi, lib
from catalyst_smpp.protocol.constants import DEFAULT_MAX_COMMAND_LENGTH, HEADER_LENGTH
from catalyst_smpp.protocol.errors import FramingError

__all__ = ["Framer"]

Buffer = bytes | bytearray | memoryview

_NO_OFFSETS: Final[list[int]] = []
# Offsets returned per C call; more PDUs in one chunk just take another call.  The
# slots belong to the Framer (allocated once, reused for every feed).
_SLOTS: Final = 256
_scan_c: Final = lib.csmpp_frame_scan
_from_buffer: Final = ffi.from_buffer
_unpack: Final = ffi.unpack


class Framer:
    """Incremental SMPP framer; see the module docstring."""

    __slots__ = ("_buf", "_consumed_p", "_error", "_max", "_need", "_need_p", "_slots")

    def __init__(self, max_command_length: int = DEFAULT_MAX_COMMAND_LENGTH) -> None:
        if not HEADER_LENGTH <= max_command_length <= 0xFFFFFFFF:
            raise ValueError(f"max_command_length {max_command_length} outside [16, 2**32-1]")
        self._max = max_command_length
        self._buf = bytearray()
        self._need = HEADER_LENGTH  # bytes that must be buffered before the next scan can find a PDU
        self._error: FramingError | None = None
        self._slots = ffi.new("uint32_t[]", _SLOTS)
        self._consumed_p = ffi.new("size_t *")
        self._need_p = ffi.new("size_t *")

    @property
    def max_command_length(self) -> int:
        return self._max

    @property
    def buffered(self) -> int:
        """Bytes held that do not yet form a complete PDU."""
        return len(self._buf)

    @property
    def need(self) -> int:
        """Total bytes that must be buffered before another PDU can complete."""
        return self._need

    @property
    def error(self) -> FramingError | None:
        """The framing error found behind the PDUs last returned, if any."""
        return self._error

    def feed(self, data: Buffer) -> tuple[bytes, list[int]]:
        """Add ``data``; return ``(buffer, offsets)`` of every PDU completed by it.

        The returned list may be empty (then ``buffer`` is meaningless).  Each
        PDU's length is its command_length (the first four octets at its offset).
        Raises :class:`FramingError` if the stream is, or has become, unframeable.
        """
        if self._error is not None:
            raise self._error
        buf = self._buf
        if buf:
            buf += data
            if len(buf) < self._need:
                return b"", _NO_OFFSETS
            src = bytes(buf)
        else:
            n = len(data)
            if n < HEADER_LENGTH:
                if n:
                    buf += data
                return b"", _NO_OFFSETS
            src = data if type(data) is bytes else bytes(data)
        offsets, consumed, need = self._scan(src)
        tail = len(src) - consumed
        if buf:
            del buf[:consumed]  # front deletion just moves the start pointer
        elif tail:
            buf += memoryview(src)[consumed:]
        self._need = need
        if tail >= need:
            # frame_scan stops before a bad command_length that follows good PDUs
            length = int.from_bytes(src[consumed : consumed + 4], "big")
            self._error = self._lost_sync(src, consumed, length < HEADER_LENGTH)
        return src, offsets

    def _scan(self, src: bytes) -> tuple[list[int], int, int]:
        """Every complete PDU in ``src``: (offsets, bytes they cover, bytes the next one needs)."""
        total = len(src)
        base = _from_buffer(src)
        slots = self._slots
        consumed_p = self._consumed_p
        need_p = self._need_p
        out: list[int] = []
        pos = 0
        while True:
            n = _scan_c(base + pos, total - pos, self._max, slots, _SLOTS, consumed_p, need_p)
            if n < 0:
                if not out:
                    self._error = self._lost_sync(src, pos, n == E_LEN_SHORT)
                    raise self._error
                break  # a bad length after good PDUs: feed() reports it behind them
            if n:
                found: list[int] = _unpack(slots, n)
                if pos:
                    found = [o + pos for o in found]
                if out:
                    out.extend(found)
                else:
                    out = found
            pos += consumed_p[0]
            if n < _SLOTS:
                break
        return out, pos, int(need_p[0])

    def _lost_sync(self, src: bytes | bytearray | memoryview, at: int, short: bool) -> FramingError:
        length = int.from_bytes(bytes(src[at : at + 4]), "big")
        seq = int.from_bytes(bytes(src[at + 12 : at + 16]), "big")
        if short:
            msg = f"command_length {length} below the {HEADER_LENGTH}-octet header"
        else:
            msg = f"command_length {length} above the maximum {self._max}"
        err = FramingError(msg, command_length=length)
        err.sequence_number = seq
        return err
