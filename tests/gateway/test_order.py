"""ReceiptOrder: which receipts wait for their submit response, and for how long."""

from __future__ import annotations

import trio
import trio.testing

from catalyst_smpp.gateway.ids import IdGenerator
from catalyst_smpp.gateway.order import ReceiptOrder, Unanswered

NOW = 1_800_000_000.0


def _id(node: int, at: float) -> str:
    return IdGenerator(node, clock=lambda: at).next_str()


def test_delay_by_who_accepted_the_message() -> None:
    unanswered = Unanswered()
    order = ReceiptOrder(unanswered, 5, foreign_hold=1.0, clock=lambda: NOW)
    ours = _id(5, NOW - 0.01)
    assert order.delay(ours) is None  # this process answered it already
    unanswered.add([ours])
    assert order.delay(ours) == 0.0  # until this process answers
    unanswered.answered([ours])
    assert order.delay(ours) is None
    assert abs(order.delay(_id(6, NOW - 0.25)) - 0.75) < 0.002  # type: ignore[operator]
    assert order.delay(_id(6, NOW - 1.5)) is None  # old enough: a real operator's receipt
    assert order.delay(_id(6, NOW + 3600)) == 1.0  # the other node's clock is ahead: at most foreign_hold
    assert order.delay("not-ours") is None and order.delay("") is None
    order.foreign_hold = 0.0
    assert order.delay(_id(6, NOW)) is None


async def test_hold_ends_when_answered_or_after_max_hold(autojump_clock: trio.testing.MockClock) -> None:
    unanswered = Unanswered()
    order = ReceiptOrder(unanswered, 5, max_hold=10.0)
    mid = _id(5, NOW)
    unanswered.add([mid])
    async with trio.open_nursery() as n:
        n.start_soon(order.hold, mid, 0.0)
        await trio.sleep(2.0)
        t = trio.current_time()
        unanswered.answered([mid])
    assert trio.current_time() == t  # released at once
    unanswered.add([mid])
    t = trio.current_time()
    await order.hold(mid, 0.0)  # never answered: gives up
    assert trio.current_time() - t == 10.0
    assert order.held == 2
