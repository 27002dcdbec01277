"""Binds counted over every gateway process: one KV entry per partner / operator, changed by compare-and-set.

The entry ``_binds.<kind>.<name>`` of the bus's KV bucket holds, per process, how many binds it holds and
until when that count stands (JSON ``{"<node>": [count, expires_at]}``).  A bind is taken only by a write
that still finds the entry as read (:meth:`~catalyst_smpp.bus.api.KeyValue.swap`): of two processes taking
the last free bind at once, one write fails, reads again and finds no bind left.  So the total of the live
counts never exceeds the limit.  Each process rewrites its own counts every ``ttl / 3`` (and at once
after a release); a process that stops doing so (dead, or cut off from NATS) is counted no longer
``ttl`` after its last write, so its binds go back.  The times are each process's wall clock: clocks
must agree to well within ``ttl`` (NTP).  Nothing here is on a message path: only binds and unbinds
(and the refresh) touch the KV.

A process restarted with the same node id replaces its old counts with its own (the old binds are gone
with the old process).  The keys have three tokens; the operator id mappings in the same bucket have two,
so they never meet.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from typing import Final

import trio

from catalyst_smpp.bus import BusError, KeyValue, token

__all__ = ["BindLedger", "ledger_key"]

log = logging.getLogger(__name__)

_ATTEMPTS: Final = 10
"""Compare-and-set attempts per change before it gives up (each conflict means another process wrote)."""


def ledger_key(kind: str, name: str) -> str:
    return f"_binds.{token(kind)}.{token(name)}"


def _decode(data: bytes | None) -> dict[str, tuple[int, float]]:
    if not data:
        return {}
    try:
        raw = json.loads(data)
        return {str(k): (int(v[0]), float(v[1])) for k, v in raw.items()}
    except (ValueError, TypeError, KeyError, IndexError, AttributeError):
        log.warning("unreadable bind ledger entry replaced: %r", data[:100])
        return {}


class BindLedger:
    """Bind counts of this process (``node``) in the shared ledger; see the module notes."""

    def __init__(
        self,
        kv: KeyValue,
        node: str,
        *,
        ttl: float = 15.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.kv = kv
        self.node = node
        self.ttl = ttl
        self.clock = clock
        self._held: dict[tuple[str, str], int] = {}
        self._written: dict[tuple[str, str], int] = {}
        self._locks: dict[tuple[str, str], trio.Lock] = {}
        self._dirty = trio.Event()
        self.conflicts = 0

    def held(self, kind: str, name: str) -> int:
        """Binds this process holds in the ledger for ``name``."""
        return self._held.get((kind, name), 0)

    def _lock(self, key: tuple[str, str]) -> trio.Lock:
        lock = self._locks.get(key)
        if lock is None:
            lock = self._locks[key] = trio.Lock()
        return lock

    async def total(self, kind: str, name: str) -> int:
        """The binds held over all live processes (this one's as it knows them)."""
        entry = await self.kv.get_entry(ledger_key(kind, name))
        now = self.clock()
        slots = _decode(entry[0] if entry else None)
        others = sum(c for n, (c, exp) in slots.items() if n != self.node and exp > now)
        return others + self.held(kind, name)

    async def acquire(self, kind: str, name: str, limit: int, n: int = 1) -> bool:
        """Take ``n`` binds if the live total stays within ``limit``; False when it would not.

        When the ledger cannot be read or written (NATS away) the binds are taken on this process's word
        (logged; written with the next refresh): a NATS outage does not lock partners and operators out,
        at the price of the cluster-wide count during it."""
        key = (kind, name)
        async with self._lock(key):
            try:
                ok = await self._change(key, self.held(kind, name) + n, limit)
            except BusError as e:
                log.warning("bind ledger for %s %r unavailable (%s): bind counted on this node only",
                            kind, name, e)  # fmt: skip
                ok = True
                self._dirty.set()
            if ok:
                self._held[key] = self.held(kind, name) + n
            return ok

    def release(self, kind: str, name: str, n: int = 1) -> None:
        """Give back ``n`` binds (written in the background at once: never on the caller's path)."""
        key = (kind, name)
        left = max(0, self.held(kind, name) - n)
        if left:
            self._held[key] = left
        else:
            self._held.pop(key, None)
        self._dirty.set()

    async def _change(self, key: tuple[str, str], mine: int, limit: int | None) -> bool:
        """Write this process's count ``mine`` (dead processes' counts dropped) if the others' live counts
        plus it stay within ``limit`` (None: always: a refresh or a release)."""
        k = ledger_key(*key)
        for _ in range(_ATTEMPTS):
            entry = await self.kv.get_entry(k)
            revision = entry[1] if entry else 0
            now = self.clock()
            slots = _decode(entry[0] if entry else None)
            live = {n: v for n, v in slots.items() if n != self.node and v[1] > now and v[0] > 0}
            if limit is not None and sum(c for c, _ in live.values()) + mine > limit:
                return False
            if mine > 0:
                live[self.node] = (mine, round(now + self.ttl, 3))
            elif self.node not in slots:
                self._written[key] = 0
                return True  # nothing of ours to take out
            value = json.dumps(live, separators=(",", ":")).encode()
            if await self.kv.swap(k, value, revision) is not None:
                self._written[key] = mine
                return True
            self.conflicts += 1
        raise BusError(f"bind ledger {k}: {_ATTEMPTS} conflicting writes in a row")

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Write releases at once and every held count every ``ttl / 3`` (so it never lapses while held)."""
        task_status.started()
        refresh_at = trio.current_time() + self.ttl / 3
        while True:
            with trio.move_on_at(refresh_at):
                await self._dirty.wait()
            self._dirty = trio.Event()
            refresh = trio.current_time() >= refresh_at
            if refresh:
                refresh_at = trio.current_time() + self.ttl / 3
            for key in set(self._held) | set(self._written):
                mine = self.held(*key)
                if not refresh and self._written.get(key) == mine:
                    continue
                if mine == 0 and not self._written.get(key):
                    self._written.pop(key, None)
                    continue
                try:
                    async with self._lock(key):
                        await self._change(key, self.held(*key), None)
                except BusError as e:
                    log.warning("bind ledger for %s %r not written (%s); tried again in %.0fs", key[0],
                                key[1], e, self.ttl / 3)  # fmt: skip
                if not self.held(*key) and self._written.get(key) == 0:
                    self._written.pop(key, None)

    async def close(self) -> None:
        """Give every held bind back in the ledger now (drain: the binds are gone)."""
        for key in list(self._held):
            self._held.pop(key, None)
            try:
                async with self._lock(key):
                    await self._change(key, 0, None)
            except BusError as e:
                log.warning("bind ledger for %s %r not cleared (%s); it lapses after %.0fs", key[0], key[1],
                            e, self.ttl)  # fmt: skip
