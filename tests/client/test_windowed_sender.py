"""The windowed sender (transport/sender.py) on the client's binds, with our sans-IO core as the SMSC."""

from __future__ import annotations

from collections.abc import Sequence

import trio
import trio.testing

from catalyst_smpp.client import BindType, ClientSession
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import Pdu
from catalyst_smpp.transport import NotBoundError
from catalyst_smpp.transport.sender import Completion, WindowedSender
from tests.client.test_client_memory import Env, config, env, submit
from tests.transport.peer import SansIoPeer

__all__ = ["env"]  # the fixture, used by name

S = CommandStatus
Done = list[tuple[object, int | str, float | None]]


def completions() -> tuple[Done, Completion]:
    """A list the completions go to (ctx, status or the exception's type name, sent_at), and the callback."""
    done: Done = []

    def on_done(ctx: object, result: Pdu | BaseException, sent_at: float | None) -> None:
        what = type(result).__name__ if isinstance(result, BaseException) else result.command_status
        done.append((ctx, what, sent_at))

    return done, on_done


async def answer(peer: SansIoPeer, statuses: Sequence[int], seen: list[float]) -> None:
    for status in statuses:
        req = await peer.expect_request()
        seen.append(trio.current_time())
        await peer.send(req.make_response(status, message_id="m" if status == 0 else ""))


async def test_throttled_answers_are_resent_and_completed_once(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    client = await env.start(config(throttle_delay=0.5, throttle_retries=3))
    peer = await env.smsc.accept()
    seen: list[float] = []
    env.nursery.start_soon(answer, peer, [S.ESME_RTHROTTLED, S.ESME_RMSGQFUL, 0], seen)
    done, on_done = completions()
    sender: WindowedSender[ClientSession] = WindowedSender(on_done, client.throttle_retry, env.nursery)
    assert await sender.send(submit(), None, client.acquire) is None
    with trio.fail_after(10):
        while not done:
            await trio.sleep(0.1)
    await trio.sleep(5)
    assert len(seen) == 3 and client.stats.throttled_retries == 2
    assert done == [(None, 0, seen[2])]  # once, with the attempt that was answered ESME_ROK


async def test_a_resend_past_the_deadline_or_given_up_is_never_sent(
    env: Env, autojump_clock: trio.testing.MockClock
) -> None:
    client = await env.start(config(throttle_delay=0.5, throttle_retries=3))
    peer = await env.smsc.accept()
    seen: list[float] = []
    env.nursery.start_soon(answer, peer, [S.ESME_RTHROTTLED, S.ESME_RTHROTTLED], seen)
    done, on_done = completions()
    sender: WindowedSender[ClientSession] = WindowedSender(
        on_done, client.throttle_retry, env.nursery, give_up=lambda ctx: ctx == "unwanted"
    )
    deadline = trio.current_time() + 0.2  # before the 0.5 s pause ends
    await sender.send(submit(b"a"), "late", client.acquire, deadline)
    await sender.send(submit(b"b"), "unwanted", client.acquire)
    await trio.sleep(5)
    assert len(seen) == 2  # each sent once, neither again
    assert sorted(done) == [("late", "TooSlowError", None), ("unwanted", "TooSlowError", None)]


async def test_slots_round_robin_and_nothing_bound(env: Env) -> None:
    client = await env.start(config(binds=(BindType.TRANSCEIVER,) * 2, reconnect=False))
    peers = [await env.smsc.accept(), await env.smsc.accept()]
    await client.wait_bound(2)
    sessions = client.sessions()
    done, on_done = completions()
    sender: WindowedSender[ClientSession] = WindowedSender(on_done)
    first = sender.take_slot(sessions)
    assert first is sessions[0] and sender.take_slot(sessions) is sessions[1]
    for _ in range(10):  # fill the first one's window (10)
        first.send_request(submit(), lambda _r: None)
    assert [sender.take_slot(sessions) for _ in range(2)] == [sessions[1], sessions[1]]

    async def none_bound() -> ClientSession:
        raise NotBoundError("nobody")

    err = await sender.send(submit(), None, none_bound)
    assert isinstance(err, NotBoundError) and done == []  # not sent: returned, not completed
    del peers
    await client.aclose(timeout=0.1)
