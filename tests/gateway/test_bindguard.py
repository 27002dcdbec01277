"""The bind guard's pieces: the per-key failure tracker, and scrypt's memory going back to the system."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import trio
import trio.testing

from catalyst_smpp.gateway.bindguard import FailureTracker, HashGate


def test_tracker_spaces_checks_after_free_ones_bounded_and_forgets_quiet_keys() -> None:
    t = FailureTracker(free=2, max_delay=4.0, reset_after=60.0, max_keys=3)
    now = 0.0
    starts = []
    for _ in range(6):  # checks booked back to back (a burst of binds): each at the key's next turn
        at = t.turn("k", now)
        t.start("k", now, at)
        starts.append(at)
    assert starts == [0.0, 0.0, 1.0, 3.0, 7.0, 11.0]  # two free, then 1 s, 2 s, 4 s, 4 s (the maximum)
    # a check that passed no longer counts against the key
    t.passed("k", now)
    assert t.turn("k", now) == 11.0 + t.delay(5) == 15.0
    # failures, reported once when they reach `free`; the next check waits from the answer
    assert [t.failed("k", now, answered=20.0) for _ in range(5)] == [False, True, False, False, False]
    assert t.turn("k", now) == 24.0 and t.slowed("k", now)
    # quiet for reset_after (after the last turn): forgotten, the next failure starts a new episode
    assert t.turn("k", 24.0 + 60.0) == 84.0 and not t.slowed("k", 84.0) and len(t) == 0
    # bounded: the oldest key goes first
    for key in "abcd":
        t.failed(key, 100.0, answered=100.0, booked=False)
    t.turn("e", 100.0)
    assert len(t) == 3 and not t.slowed("a", 100.0)


async def test_hash_gate_bounds_checks_and_serves_clean_addresses_first() -> None:
    gate = HashGate(1)
    order: list[str] = []
    release = trio.Event()

    async def check(name: str, urgent: bool) -> None:
        async with gate.slot(urgent=urgent):
            order.append(name)
            assert gate.busy <= gate.size
            if name == "first":
                await release.wait()

    async def cancellable(name: str, task_status: trio.TaskStatus[trio.CancelScope]) -> None:
        with trio.CancelScope() as scope:
            task_status.started(scope)
            await check(name, True)

    async with trio.open_nursery() as n:
        n.start_soon(check, "first", False)
        await trio.testing.wait_all_tasks_blocked()
        for name in ("guess1", "guess2"):  # addresses that failed before: the slow queue
            n.start_soon(check, name, False)
            await trio.testing.wait_all_tasks_blocked()
        gone = await n.start(cancellable, "gone")  # a waiter whose connection closed leaves its queue
        await trio.testing.wait_all_tasks_blocked()
        assert gate.waiting() == 3
        gone.cancel()
        n.start_soon(check, "partner", True)
        await trio.testing.wait_all_tasks_blocked()
        assert order == ["first"] and gate.waiting() == 3
        release.set()
    assert order == ["first", "partner", "guess1", "guess2"]
    assert gate.busy == 0 and gate.waiting() == 0
    # a larger size (reload) lets waiters in at once
    gate = HashGate(1)
    hold = trio.Event()
    inside = 0

    async def held() -> None:
        nonlocal inside
        async with gate.slot(urgent=True):
            inside += 1
            await hold.wait()

    async with trio.open_nursery() as n:
        for _ in range(3):
            n.start_soon(held)
        await trio.testing.wait_all_tasks_blocked()
        assert inside == 1
        gate.resize(3)
        await trio.testing.wait_all_tasks_blocked()
        assert inside == 3
        hold.set()


_FLOOD = textwrap.dedent(
    """
    import hashlib, sys, threading
    from catalyst_smpp.gateway.bindguard import return_scrypt_memory

    def rss_mb():
        with open("/proc/self/status") as f:
            return next(int(line.split()[1]) // 1024 for line in f if line.startswith("VmRSS"))

    if sys.argv[1] == "returned":
        assert return_scrypt_memory()
    idle = rss_mb()

    def check():
        hashlib.scrypt(b"guess", salt=bytes(16), n=2**14, r=8, p=1, dklen=32, maxmem=128 * 1024**2)

    for _ in range(2):
        threads = [threading.Thread(target=check) for _ in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    print(rss_mb() - idle)
    """
)


def _growth(mode: str) -> int:
    out = subprocess.run([sys.executable, "-c", _FLOOD, mode], check=True, capture_output=True, text=True)
    return int(out.stdout)


def test_scrypt_memory_goes_back_to_the_system_after_a_flood() -> None:
    """12 checks at once need 192 MiB; after them the process is back to its size before (glibc keeps
    ~16 MiB per arena without the fixed mmap threshold: the same flood there leaves >= 100 MB)."""
    assert _growth("returned") < 16
    assert _growth("default") >= 100
