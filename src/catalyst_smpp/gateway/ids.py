"""Our message ids: 64-bit integers, time-ordered, unique across nodes and restarts.

Layout (63 bits used, so the value is also a positive signed 64-bit integer)::

    | 41 bits: milliseconds since 2024-01-01 UTC | 10 bits: node number | 12 bits: sequence |

* 41 bits of milliseconds last ~69 years from the epoch (until 2093).
* 10 bits of node number: 1024 nodes (processes).  Each gateway process needs its own number; two processes
  with the same number can produce the same id in the same millisecond.
* 12 bits of sequence: 4096 ids per millisecond per node (4 million/s).  When a millisecond's sequence is
  used up the generator borrows the next millisecond (ids run slightly ahead of the clock under extreme load).

Never backwards within a process: when the clock steps back the generator keeps counting from the last
millisecond it used, so ids stay strictly increasing.  Across a restart uniqueness relies on the clock not
having stepped back further than the downtime (an NTP step of minutes during a restart faster than that step
could repeat ids of the previous run for the same node).

Node numbers: :func:`node_number` derives one from the config's ``node.id``.  An id that is a plain
number (``"7"``) or ends in ``#<number>`` / ``-<number>`` with a number below 1024 (``"gw-3"``,
``"host#12"``) uses that number; any other id is hashed (CRC-32 mod 1024).  Hashing can collide: with k nodes
the chance that two of them share a number is about k²/2048 (10 nodes ≈ 4 %), so multi-node deployments
should give numbered ids or an explicit number (:class:`IdGenerator` takes any int 0..1023).

Worker processes (``catalyst-smpp run --workers N``, config ``node.workers``): each host owns a *block*
of N consecutive numbers starting at its base, and worker k uses ``base + k`` (:func:`worker_node_number`).
The base is ``node.number`` when set (then ``base + N - 1 <= 1023`` is checked at start: a clear config
error otherwise); unset (-1), it is :func:`node_number` of ``node.id``, moved down so the block fits
(``min(n, 1024 - N)``, :func:`worker_base`).  Two hosts never collide when their blocks do not overlap: give
host h the base ``h * B`` with B at least the largest worker count of any host (e.g. B = 32: 32 hosts of up
to 32 workers, or B = 64: 16 hosts of up to 64).  A single process (N = 1) keeps the numbering above.

Formats: canonical is decimal (KV, records, log); toward a partner ``hex`` (lower case, no leading zeros) or
``dec``, per the partner's ``message_id_format``.
"""

from __future__ import annotations

import re
import time
import zlib
from collections.abc import Callable
from typing import Final

__all__ = [
    "EPOCH_MS",
    "MAX_NODE",
    "IdGenerator",
    "format_id",
    "id_node",
    "id_time",
    "node_number",
    "parse_id",
    "worker_base",
    "worker_node_number",
]

EPOCH_MS: Final = 1_704_067_200_000  # 2024-01-01T00:00:00Z
TIME_BITS: Final = 41
NODE_BITS: Final = 10
SEQ_BITS: Final = 12
MAX_NODE: Final = (1 << NODE_BITS) - 1
MAX_SEQ: Final = (1 << SEQ_BITS) - 1
MAX_TIME: Final = (1 << TIME_BITS) - 1
MAX_ID: Final = (1 << 64) - 1

_NUMBERED = re.compile(r"^(?:.*[#-])?(\d{1,4})$")
_HEX_CHARS: Final = frozenset("0123456789abcdefABCDEF")
_DEC_CHARS: Final = frozenset("0123456789")


def node_number(node_id: str) -> int:
    """A node number 0..1023 for a config ``node.id`` (see the module notes for the collision risk)."""
    m = _NUMBERED.match(node_id.strip())
    if m is not None:
        n = int(m.group(1))
        if n <= MAX_NODE:
            return n
    return zlib.crc32(node_id.encode("utf-8")) & MAX_NODE


def worker_base(node_id: str, number: int, workers: int) -> int:
    """First node number of a host running ``workers`` workers: ``number`` (config ``node.number``) when it is
    0..1023, else :func:`node_number` of ``node_id`` moved down so that the block fits below 1024."""
    if not 1 <= workers <= MAX_NODE + 1:
        raise ValueError(f"{workers} workers: 1..{MAX_NODE + 1}")
    if number >= 0:
        if number + workers - 1 > MAX_NODE:
            raise ValueError(f"node number {number} + {workers} workers - 1 is above {MAX_NODE}")
        return number
    return min(node_number(node_id), MAX_NODE + 1 - workers)


def worker_node_number(base: int, index: int) -> int:
    """Node number of worker ``index`` (0-based) of a host whose block starts at ``base``."""
    n = base + index
    if not 0 <= n <= MAX_NODE:
        raise ValueError(f"node number {base} + {index} outside 0..{MAX_NODE}")
    return n


class IdGenerator:
    """Strictly increasing 64-bit ids for one node (not thread-safe: one per trio loop)."""

    __slots__ = ("_clock", "_last_ms", "_node_bits", "_seq", "node")

    def __init__(self, node_number: int, *, clock: Callable[[], float] = time.time) -> None:
        if not 0 <= node_number <= MAX_NODE:
            raise ValueError(f"node number {node_number} outside 0..{MAX_NODE}")
        self.node = node_number
        self._node_bits = node_number << SEQ_BITS
        self._clock = clock
        self._last_ms = -1
        self._seq = 0

    def next(self) -> int:
        ms = int(self._clock() * 1000) - EPOCH_MS
        if ms > self._last_ms:
            self._last_ms = ms
            self._seq = 0
        else:  # same millisecond, or the clock went back: keep counting from where we were
            self._seq += 1
            if self._seq > MAX_SEQ:
                self._last_ms += 1
                self._seq = 0
        if not 0 <= self._last_ms <= MAX_TIME:
            raise OverflowError("clock outside the id epoch range (2024..2093)")
        return (self._last_ms << (NODE_BITS + SEQ_BITS)) | self._node_bits | self._seq

    def next_str(self) -> str:
        """The next id in canonical (decimal) form."""
        return str(self.next())


def id_time(value: int) -> float:
    """The unix time (seconds) an id was made at (to the millisecond)."""
    return ((value >> (NODE_BITS + SEQ_BITS)) + EPOCH_MS) / 1000.0


def id_node(value: int) -> int:
    return (value >> SEQ_BITS) & MAX_NODE


def format_id(value: int, fmt: str) -> str:
    """``hex``: lower-case hex without leading zeros; ``dec``: decimal."""
    if not 0 <= value <= MAX_ID:
        raise ValueError(f"message id {value} is not a 64-bit unsigned integer")
    if fmt == "hex":
        return format(value, "x")
    if fmt == "dec":
        return str(value)
    raise ValueError(f"unknown message id format {fmt!r}")


def parse_id(text: str, fmt: str) -> int:
    """An id as a partner writes it (``hex`` any case, or ``dec``; leading zeros and NULs/blanks around it
    tolerated); ValueError for anything else."""
    s = text.strip(" \t\r\n\x00")
    if fmt == "hex":
        allowed = _HEX_CHARS
        base = 16
    elif fmt == "dec":
        allowed = _DEC_CHARS
        base = 10
    else:
        raise ValueError(f"unknown message id format {fmt!r}")
    if not s or len(s) > 40 or not all(c in allowed for c in s):
        raise ValueError(f"{text!r} is not a {fmt} message id")
    value = int(s, base)
    if value > MAX_ID:
        raise ValueError(f"{text!r} does not fit 64 bits")
    return value
