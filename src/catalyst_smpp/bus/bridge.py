"""A private asyncio event loop on its own thread, callable from trio.

nats-py is asyncio-only.  Rather than trio-asyncio (every loop tick ~8x dearer,
measured), nats-py runs on a dedicated asyncio thread and trio crosses to it once
per *batch* (see docs/dev/infra-api.md for the figures).

``await bridge.call(coro_fn, *args)`` schedules ``coro_fn(*args)`` on the asyncio
loop and suspends the trio task (no worker thread is held) until it finishes.  If
the trio task is cancelled, the asyncio task is cancelled too and the trio side
waits for it to wind down, so nothing outlives the caller unnoticed.
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


class AsyncioThread:
    """Owns one asyncio loop running in a daemon thread."""

    def __init__(self, name: str = "catalyst-nats") -> None:
        self._name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._started = threading.Event()

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

    async def call(self, fn: Callable[..., Awaitable[T]], *args: Any) -> T:
        """Run ``fn(*args)`` on the asyncio loop and await its result from trio (one crossing).

        Leaner than :meth:`submit` (no concurrent future, no chained callbacks): one ``call_soon_threadsafe``
        starts the task, its done callback wakes trio with one ``run_sync_soon``.
        """
        loop = self.loop
        token = trio.lowlevel.current_trio_token()
        done = trio.Event()
        box: list[asyncio.Task[T]] = []

        def wake(_: object) -> None:
            try:
                token.run_sync_soon(done.set)
            except trio.RunFinishedError:  # pragma: no cover - trio already gone
                pass

        async def runner() -> T:
            return await fn(*args)

        def start() -> None:
            task = loop.create_task(runner())
            box.append(task)
            task.add_done_callback(wake)

        def cancel() -> None:  # runs after start (call_soon_threadsafe keeps the order)
            if box:
                box[0].cancel()

        loop.call_soon_threadsafe(start)
        try:
            await done.wait()
        except BaseException:
            # cancelled on the trio side: cancel the asyncio task and wait for it to settle
            loop.call_soon_threadsafe(cancel)
            with trio.CancelScope(shield=True):
                await done.wait()
            raise
        task = box[0]
        if task.cancelled():  # cancelled on the asyncio side (loop shutting down), as a concurrent future
            raise concurrent.futures.CancelledError
        return task.result()
