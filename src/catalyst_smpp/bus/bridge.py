"""A private asyncio event loop on its own thread, callable from trio.

nats-py is asyncio-only.  Rather than trio-asyncio (every loop tick ~8x dearer,
measured), nats-py runs on a dedicated asyncio thread and trio crosses to it once
per *batch* (see docs/dev/infra-api.md for the figures).

``await bridge.call(coro_fn, *args)`` schedules ``coro_fn(*args)`` on the asyncio
loop and suspends the trio task (no worker thread is held) until it finishes.  If
the trio task is cancelled, the asyncio task is cancelled too and the trio side
waits for it to wind down, so nothing outlives the caller unnoticed.

Wake-ups are coalesced in both directions.  ``call_soon_threadsafe`` writes a byte to asyncio's self-pipe
and ``TrioToken.run_sync_soon`` one to trio's wakeup socket on EVERY call, and each byte is a wake-up of the
other loop (at a low message rate, a loop iteration of its own: ~100-250 µs of CPU on a small VM).  So each
direction has a queue (:class:`_Mailbox`) drained by one scheduled callback: a call that finds the queue
empty schedules the drain, the others only append.  Crossings that start or finish together (several trio
tasks, a batch of JetStream acks read at once) then cost one wake-up, in the order they were posted.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import trio

log = logging.getLogger(__name__)

T = TypeVar("T")

__all__ = ["AsyncioThread"]


class _Mailbox:
    """Callbacks for another thread's loop, run in order by ONE drain callback per burst: ``schedule(drain)``
    (``call_soon_threadsafe`` or ``run_sync_soon``) is called only when the queue goes from empty to
    non-empty."""

    __slots__ = ("_lock", "_queue", "_schedule", "_scheduled")

    def __init__(self, schedule: Callable[[Callable[[], None]], object]) -> None:
        self._lock = threading.Lock()
        self._queue: list[Callable[[], None]] = []
        self._scheduled = False
        self._schedule = schedule

    def post(self, cb: Callable[[], None]) -> None:
        """Queue ``cb``; wake the other loop only if no drain is pending.  Raises what ``schedule`` raises
        (the other loop is gone), with ``cb`` dropped."""
        with self._lock:
            self._queue.append(cb)
            if self._scheduled:
                return
            self._scheduled = True
        try:
            self._schedule(self._drain)
        except BaseException:
            with self._lock:
                self._queue.clear()
                self._scheduled = False
            raise

    def _drain(self) -> None:
        while True:
            with self._lock:
                batch = self._queue
                if not batch:
                    self._scheduled = False
                    return
                self._queue = []
            for cb in batch:
                try:
                    cb()
                except Exception:  # pragma: no cover - the callbacks here do not raise
                    log.exception("bridge callback failed")


class AsyncioThread:
    """Owns one asyncio loop running in a daemon thread."""

    def __init__(self, name: str = "catalyst-nats") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._to_aio: _Mailbox | None = None
        self._to_trio: dict[trio.lowlevel.TrioToken, _Mailbox] = {}
        """One mailbox per trio run that calls (a Bus lives in one; tests may start several runs)."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise RuntimeError("asyncio thread not started")
        return self._loop

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._main, name=self._name, daemon=True)
        self._thread.start()
        self._started.wait()

    def _main(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        self._to_aio = _Mailbox(loop.call_soon_threadsafe)
        asyncio.set_event_loop(loop)
        loop.call_soon(self._started.set)
        try:
            loop.run_forever()
        finally:
            try:
                pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
                for t in pending:
                    t.cancel()
                if pending:
                    loop.run_until_complete(asyncio.gather(*pending, return_exceptions=True))
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

    def stop(self) -> None:
        """Stop the loop and join the thread (blocking; call via trio.to_thread or at teardown)."""
        if self._thread is None or self._loop is None:
            return
        if self._loop.is_running():
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._thread = None

    def submit(self, fn: Callable[..., Awaitable[T]], *args: Any) -> concurrent.futures.Future[T]:
        """Schedule ``fn(*args)`` on the loop from any thread; returns a concurrent future."""

        async def runner() -> T:
            return await fn(*args)

        return asyncio.run_coroutine_threadsafe(runner(), self.loop)

    def _trio_mailbox(self) -> _Mailbox:
        token = trio.lowlevel.current_trio_token()
        box = self._to_trio.get(token)
        if box is None:
            box = self._to_trio[token] = _Mailbox(token.run_sync_soon)
        return box

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the asyncio loop and await its result from trio (one crossing).

        Leaner than :meth:`submit` (no concurrent future, no chained callbacks): the task is started through
        the asyncio mailbox, its done callback wakes trio through the trio mailbox (each a wake-up only when
        its queue was empty).
        """
        loop = self.loop
        to_aio = self._to_aio
        assert to_aio is not None
        to_trio = self._trio_mailbox()
        done = trio.Event()
        box: list[asyncio.Task[T]] = []

        def wake(_: object) -> None:
            try:
                to_trio.post(done.set)
            except trio.RunFinishedError:  # pragma: no cover - trio already gone
                pass

        async def runner() -> T:
            return await fn(*args)

        def start() -> None:
            task = loop.create_task(runner())
            box.append(task)
            task.add_done_callback(wake)

        def cancel() -> None:  # runs after start (the mailbox keeps the order)
            if box:
                box[0].cancel()

        to_aio.post(start)
        try:
            await done.wait()
        except BaseException:
            # cancelled on the trio side: cancel the asyncio task and wait for it to settle
            to_aio.post(cancel)
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        task = box[0]
        if task.cancelled():  # cancelled on the asyncio side (loop shutting down), as a concurrent future
            raise concurrent.futures.CancelledError
        return task.result()

    def post(self, fn: Callable[..., Awaitable[object]], *args: Any, what: str = "") -> None:
        """Start ``fn(*args)`` on the asyncio loop and do not wait for it (no wake-up of trio when it ends):
        for work whose completion nobody awaits.  An error is logged (``what`` names the work)."""
        loop = self.loop
        to_aio = self._to_aio
        assert to_aio is not None

        def done(task: asyncio.Task[object]) -> None:
            if not task.cancelled() and task.exception() is not None:
                exc = task.exception()
                log.warning("%s failed: %s: %s", what or getattr(fn, "__qualname__", "bus work"),
                            type(exc).__name__, exc)  # fmt: skip

        async def runner() -> object:
            return await fn(*args)

        def start() -> None:
            loop.create_task(runner()).add_done_callback(done)

        to_aio.post(start)
