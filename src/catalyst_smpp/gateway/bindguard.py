"""Defences of the partner listeners against bind floods and password guessing.

A failed bind must be cheap for us and slow for whoever sends it.  The pieces, used by
:class:`~catalyst_smpp.gateway.auth.PostgresAuthenticator`:

- :class:`FailureTracker` counts password checks and failed binds per key: one tracker keyed by source
  address, one by system_id.  A key's first ``free`` checks start at once; after that its checks are spaced
  out, 1 s after the last one, doubling per further check up to ``max_delay``.  A key that saw no failed
  bind for ``reset_after`` is forgotten (its episode ends).  In-flight checks count as failures until they
  pass, so a hundred binds sent at once from one address get ``free`` checks, not a hundred.
- :class:`HashGate` lets at most ``size`` password checks run at once; waiting checks of addresses without
  failures go before those of addresses with failures, so a partner's first bind after a restart does not
  queue behind a flood (its password is not remembered yet; remembered ones skip hashing altogether).
- :func:`return_scrypt_memory` makes glibc give scrypt's 16 MiB work areas back to the system when a check
  ends, instead of keeping them in the worker thread's malloc arena.

Which tracker does what (locked address vs. slowed system_id) is the authenticator's policy; see
docs/operations.md "Binds and connections".
"""

from __future__ import annotations

import ctypes
import ctypes.util
import math
from collections import OrderedDict, deque
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import attrs
import trio

__all__ = ["FailureTracker", "HashGate", "return_scrypt_memory"]

_M_MMAP_THRESHOLD = -3  # glibc mallopt parameter
_MMAP_THRESHOLD = 1024 * 1024
_memory_set = False


def return_scrypt_memory() -> bool:
    """Have every allocation of 1 MiB or more mapped on its own, so freeing it returns it to the system.

    scrypt (n=2**14, r=8) allocates 16 MiB per check.  glibc's default threshold adapts upwards after the
    first such block is freed, after which the blocks come from the per-thread arenas and stay resident:
    a flood of checks in forty worker threads left the process ~400 MB larger for good.  A fixed threshold
    turns that adaptation off; smaller allocations are unaffected.  Process-wide, done once; False where
    the C library is not glibc (nothing to do there)."""
    global _memory_set
    if _memory_set:
        return True
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mallopt.argtypes = [ctypes.c_int, ctypes.c_int]
    mallopt.restype = ctypes.c_int
    _memory_set = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD))
    return _memory_set


@attrs.define
class _Episode:
    """One key's recent history."""

    #: checks started and not known to have passed (in-flight ones count)
    attempts: int = 0
    #: checks started and not finished
    inflight: int = 0
    #: checks that failed in this episode
    failures: int = 0
    #: when the last check started
    last_start: float = -math.inf
    #: earliest start of the next check
    next_check: float = -math.inf
    #: last check or failure (the episode ends ``reset_after`` later)
    last: float = -math.inf
    #: the slow-down of this episode was reported (logged and counted) already
    reported: bool = False


class FailureTracker:
    """Per-key spacing of password checks after repeated failures; bounded (``max_keys``, oldest first).

    ``turn(key, now)`` is when the key's next check may start; ``start(key, at)`` books a check at that
    time; ``passed`` / ``failed`` give its outcome.  The settings are plain attributes, so a config reload
    can change them in place."""

    def __init__(self, *, free: int, max_delay: float, reset_after: float, max_keys: int = 20_000) -> None:
        self.free = free
        self.max_delay = max_delay
        self.reset_after = reset_after
        self.max_keys = max_keys
        self._keys: OrderedDict[str, _Episode] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def delay(self, attempts: int) -> float:
        """Spacing after ``attempts`` checks: none for the first ``free``, then 1 s doubling to max_delay."""
        if attempts < self.free:
            return 0.0
        return min(self.max_delay, 2.0 ** min(attempts - self.free, 62))

    def _get(self, key: str, now: float) -> _Episode | None:
        self._expire(now)
        ep = self._keys.get(key)
        if ep is not None and self._quiet(ep, now):
            del self._keys[key]
            return None
        return ep

    def _quiet(self, ep: _Episode, now: float) -> bool:
        return ep.inflight <= 0 and now - ep.last >= self.reset_after and ep.next_check <= now

    def _expire(self, now: float) -> None:
        while self._keys:
            key, ep = next(iter(self._keys.items()))
            if len(self._keys) > self.max_keys or self._quiet(ep, now):
                del self._keys[key]
            else:
                break

    def _touch(self, key: str, now: float) -> _Episode:
        ep = self._get(key, now)
        if ep is None:
            ep = self._keys[key] = _Episode()
        self._keys.move_to_end(key)
        ep.last = now
        return ep

    def turn(self, key: str, now: float) -> float:
        """When the key's next check may start (``now`` when it may start at once)."""
        ep = self._get(key, now)
        return now if ep is None else max(now, ep.next_check)

    def failures(self, key: str, now: float) -> int:
        """Failed binds of the key in its current episode."""
        ep = self._get(key, now)
        return 0 if ep is None else ep.failures

    def slowed(self, key: str, now: float) -> bool:
        """The key is in a reported slow-down episode (its single failures are not logged one by one)."""
        ep = self._get(key, now)
        return ep is not None and ep.reported

    def start(self, key: str, now: float, at: float) -> None:
        """Book a check starting at ``at`` (>= ``turn(key, now)``); the next one waits the key's delay."""
        ep = self._touch(key, now)
        ep.attempts += 1
        ep.inflight += 1
        ep.last_start = at
        ep.next_check = at + self.delay(ep.attempts)

    def passed(self, key: str, now: float) -> None:
        """A booked check passed (or was not made): it no longer counts against the key."""
        ep = self._get(key, now)
        if ep is not None and ep.attempts > 0:
            ep.attempts -= 1
            ep.inflight = max(0, ep.inflight - 1)
            ep.next_check = ep.last_start + self.delay(ep.attempts)

    def failed(self, key: str, now: float, answered: float, *, booked: bool = True) -> bool:
        """A failed bind for the key, answered at ``answered``.  ``booked``: its check was booked with
        :meth:`start` (an address outside ``allowed_ips`` is refused unchecked, unbooked).  The key's next
        check waits its delay counted from the answer, so a client that waits for each answer before
        trying again meets the slow-down too.

        True once per episode: when the failures reach ``free``, i.e. when the slow-down starts (the
        caller logs and counts it)."""
        ep = self._touch(key, now)
        ep.failures += 1
        if booked:
            ep.inflight = max(0, ep.inflight - 1)
        ep.next_check = max(ep.next_check, answered + self.delay(ep.attempts))
        if ep.failures >= self.free and not ep.reported:
            ep.reported = True
            return True
        return False


class HashGate:
    """At most ``size`` password checks at once, two queues: ``urgent`` waiters are served first.

    A plain FIFO limiter makes a partner's bind wait behind every guess queued before it; with two queues it
    waits only for the checks running and the urgent ones before it.  Starving the other queue is intended:
    it holds addresses that failed already, and their lockouts bound how much they can queue."""

    def __init__(self, size: int) -> None:
        self.size = size
        self.busy = 0
        self._queues: tuple[deque[trio.Event], deque[trio.Event]] = (deque(), deque())

    def waiting(self) -> int:
        return len(self._queues[0]) + len(self._queues[1])

    def resize(self, size: int) -> None:
        """A new size (config reload): more room lets waiters in at once; less takes effect as checks end."""
        self.size = size
        while self.busy < self.size and self.waiting():
            self.busy += 1
            self._next().set()

    def _next(self) -> trio.Event:
        return (self._queues[0] or self._queues[1]).popleft()

    def _release(self) -> None:
        if self.busy <= self.size and self.waiting():
            self._next().set()  # the slot passes straight to the next waiter
        else:
            self.busy -= 1

    @asynccontextmanager
    async def slot(self, *, urgent: bool) -> AsyncIterator[None]:
        if self.busy < self.size and not self.waiting():
            self.busy += 1
            await trio.lowlevel.checkpoint()
        else:
            turn = trio.Event()
            queue = self._queues[0 if urgent else 1]
            queue.append(turn)
            try:
                await turn.wait()
            except BaseException:
                if turn.is_set():  # the slot was handed over just as we were cancelled: pass it on
                    self._release()
                else:
                    queue.remove(turn)
                raise
        try:
            yield
        finally:
            self._release()
