"""The HTTP API's per-key rate held over the cluster: two processes' limiters on the shares of one bus (the
in-memory one: the rule, not NATS, is under test; tests/e2e cover the heartbeats over NATS)."""

from __future__ import annotations

import trio
import trio.testing

from catalyst_smpp.bus.memory import MemoryBus
from catalyst_smpp.http.ratelimit import KeyLimiter

from ..gateway.test_shares import node


async def _ask(limiter: KeyLimiter, per_second: float, seconds: float, key: int, rate: float) -> int:
    """Requests at ``per_second`` for ``seconds``; how many were let through."""
    ok = 0
    for _ in range(int(per_second * seconds)):
        if limiter.check(key, rate) is None:
            ok += 1
        await trio.sleep(1 / per_second)
    return ok


async def test_a_keys_rate_is_a_total_over_the_processes_serving_it(
    memory_bus: MemoryBus, autojump_clock: trio.testing.MockClock
) -> None:
    rate, seconds = 20.0, 20.0
    async with trio.open_nursery() as n:
        async with node(memory_bus, "a", n) as (a, _), node(memory_bus, "b", n) as (b, _):
            la, lb = KeyLimiter(50.0, a), KeyLimiter(50.0, b)
            got: dict[str, int] = {}

            async def run(name: str, limiter: KeyLimiter) -> None:
                got[name] = await _ask(limiter, 60.0, seconds, 7, rate)

            async with trio.open_nursery() as m:
                m.start_soon(run, "a", la)
                m.start_soon(run, "b", lb)
            n.cancel_scope.cancel()
    total = got["a"] + got["b"]
    # about the key's rate over the run (plus a burst each and the first heartbeat's worth), where two
    # processes on their own would each have let 20/s through: 800
    assert rate * seconds <= total <= rate * seconds * 1.2 + 2 * rate, got
    assert abs(got["a"] - got["b"]) <= 0.2 * total, got  # both busy: about half each


async def test_alone_a_key_gets_its_whole_rate_and_a_retry_after() -> None:
    limiter = KeyLimiter(5.0)
    answers = [limiter.check(1, None) for _ in range(8)]
    assert answers[:5] == [None] * 5  # a second's burst
    assert all(a is not None and a >= 1 for a in answers[5:])
