"""NATS server restarts and crashes: acknowledged publishes survive, consumers resume, state is reported."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import trio

from catalyst_smpp.bus import Bus, ConnectionState, Consumer, Kind, Msg, PubAck, PublishError
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.embedded import EmbeddedNats

CFG = NatsConfig(namespace="r", publish_timeout=1.0, reconnect_wait=0.05, request_timeout=2.0)


@pytest.mark.parametrize("how", ["stop", "kill"])
async def test_restart_mid_publish_keeps_every_acked_message(
    nats_server_factory: Callable[..., EmbeddedNats], how: str
) -> None:
    srv = nats_server_factory()
    n, batch = 4000, 100
    ids = [f"m{i}" for i in range(n)]
    acked: set[str] = set()
    failed: list[str] = []
    async with Bus.connect(srv.url, CFG) as bus:
        subj = bus.subject(Kind.MT, "op1")
        states: list[ConnectionState] = []

        async def watch_states() -> None:
            while True:
                states.append(await bus.wait_state_change())

        async def restart() -> None:
            while len(acked) < 500:  # let some publishes land first, then pull the plug mid-stream
                await trio.sleep(0.002)
            await trio.to_thread.run_sync(srv.kill if how == "kill" else srv.stop)
            await trio.sleep(1.0)
            await trio.to_thread.run_sync(srv.start)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(watch_states)
            nursery.start_soon(restart)
            for i in range(0, n, batch):
                chunk = ids[i : i + batch]
                res = await bus.publish_batch([(subj, mid.encode(), None, mid) for mid in chunk])
                for mid, r in zip(chunk, res, strict=True):
                    (acked.add if isinstance(r, PubAck) else failed.append)(mid)
                await trio.sleep(0.06)  # pace: the run spans the outage and goes on after it
            with trio.fail_after(15):
                await bus.wait_connected()
            nursery.cancel_scope.cancel()

        assert ConnectionState.RECONNECTING in states and states[-1] is ConnectionState.CONNECTED
        assert bus.reconnects >= 1
        assert failed, "the outage should have failed some publishes"
        assert len(acked) + len(failed) == n

        # every publish that was acknowledged before/around the crash is stored
        before = await bus.stream_info(Kind.MT)
        c = await bus.consumer(Kind.MT, "op1")
        first = await _fetch_all(c)
        stored_first = {m.msg_id for m in first}
        assert acked <= stored_first and before.messages == len(first) == len(stored_first)
        # failed ones may or may not have been stored (ack lost); a retry with the same msg id settles it
        res = await bus.publish_batch([(subj, mid.encode(), None, mid) for mid in failed], timeout=10)
        assert all(isinstance(r, PubAck) for r in res), [r for r in res if isinstance(r, PublishError)][:3]
        dup = sum(1 for r in res if isinstance(r, PubAck) and r.duplicate)
        print(
            f"[{how}] acked={len(acked)} failed={len(failed)} stored-before-retry={len(stored_first)} "
            f"stored-but-unacked={len(stored_first - acked)} duplicates-on-retry={dup}"
        )
        # exactly those stored-but-unacked are recognised as duplicates
        assert dup == len(stored_first - acked)
        assert (await bus.stream_info(Kind.MT)).messages == n  # stored exactly once each (none acked yet)
        rest = await _fetch_all(c)
        assert stored_first | {m.msg_id for m in rest} == set(ids)
        assert not (stored_first & {m.msg_id for m in rest})
        await c.ack(first + rest)
        with trio.fail_after(10):  # work queue: acked messages leave the stream
            while (await bus.stream_info(Kind.MT)).messages:
                await trio.sleep(0.05)


async def _fetch_all(c: Consumer) -> list[Msg]:
    got: list[Msg] = []
    while ms := await c.fetch(500, 0.5):
        got += ms
    return got


async def test_consumer_resumes_after_restart(nats_server_factory: Callable[..., EmbeddedNats]) -> None:
    srv = nats_server_factory()
    async with Bus.connect(srv.url, CFG) as bus:
        subj = bus.subject(Kind.DLR, "acme")
        await bus.publish_batch([(subj, b"%d" % i, None, f"a{i}") for i in range(100)])
        c = await bus.consumer(Kind.DLR, "acme")
        first: list[Msg] = []
        while len(first) < 50:
            first += await c.fetch(50 - len(first), 1.0)
        await c.ack(first)
        with trio.fail_after(5):  # acks applied before we pull the plug
            while (await c.info()).num_ack_pending:
                await trio.sleep(0.02)

        await trio.to_thread.run_sync(srv.stop)
        with trio.fail_after(5):
            while bus.state is ConnectionState.CONNECTED:
                await bus.wait_state_change()
        assert await c.fetch(10, 0.3) == []  # while down: empty, no exception
        await trio.to_thread.run_sync(srv.start)
        with trio.fail_after(15):
            await bus.wait_connected()
        res = await bus.publish_batch([(subj, b"%d" % i, None, f"a{i}") for i in range(100, 150)], timeout=5)
        assert all(r.ok for r in res)
        rest: list[Msg] = []
        with trio.fail_after(15):
            while len(rest) < 100:
                ms = await c.fetch(100, 0.5)
                rest += ms
                await c.ack(ms)
        assert sorted(int(m.data) for m in rest) == list(range(50, 150))  # nothing acked came back
        assert await c.fetch(10, 0.3) == []


async def test_kv_mappings_survive_restart(nats_server_factory: Callable[..., EmbeddedNats]) -> None:
    srv = nats_server_factory()
    async with Bus.connect(srv.url, CFG) as bus:
        await bus.opids.put_many([("op1", str(i), f"m{i}".encode()) for i in range(50)])
        await trio.to_thread.run_sync(srv.stop)
        await trio.to_thread.run_sync(srv.start)
        with trio.fail_after(15):
            await bus.wait_connected()
        got = await bus.opids.get_many([("op1", str(i)) for i in range(50)])
        assert got == [f"m{i}".encode() for i in range(50)]


async def test_initial_connect_waits_for_the_server(nats_server_factory: Callable[..., EmbeddedNats]) -> None:
    srv = nats_server_factory()
    url = srv.url
    await trio.to_thread.run_sync(srv.stop)

    async def start_later() -> None:
        await trio.sleep(0.5)
        await trio.to_thread.run_sync(srv.start)

    async with trio.open_nursery() as nursery:
        nursery.start_soon(start_later)
        with trio.fail_after(15):
            async with Bus.connect(url, CFG) as bus:
                assert bus.connected
                [r] = await bus.publish_batch([(bus.subject(Kind.MO, "p"), b"x", None, "x")])
                assert r.ok


async def test_stream_creation_is_asked_again_while_jetstream_is_not_ready(
    nats_url: str, nats_config: NatsConfig, caplog: pytest.LogCaptureFixture
) -> None:
    """A cluster electing its leaders answers stream creation with timeouts or 503 (two nodes starting at once
    on a fresh cluster made a node exit): ensure asks again until JetStream answers, and says so."""
    import nats.errors
    import nats.js.errors

    async with Bus.connect(nats_url, nats_config, name="test", ensure=False) as bus:
        real = bus._aio.ensure_streams
        failures = [nats.errors.TimeoutError(), nats.js.errors.ServiceUnavailableError(code=503)]
        calls = 0

        async def flaky() -> None:
            nonlocal calls
            calls += 1
            if failures:
                raise failures.pop(0)
            await real()

        bus._aio.ensure_streams = flaky  # type: ignore[method-assign]
        with trio.fail_after(15):
            await bus.ensure()
        assert calls == 3
        assert "JetStream did not create the streams yet" in caplog.text
        [r] = await bus.publish_batch([(bus.subject(Kind.MT, "op"), b"x", None, "x1")])
        assert r.ok  # the streams exist after all


async def test_stream_creation_fails_at_once_on_an_error_that_asking_again_cannot_mend(
    nats_url: str, nats_config: NatsConfig
) -> None:
    import nats.js.errors

    from catalyst_smpp.bus import BusError

    async with Bus.connect(nats_url, nats_config, name="test", ensure=False) as bus:

        async def refused() -> None:
            raise nats.js.errors.BadRequestError(code=400, err_code=10052, description="bad config")

        bus._aio.ensure_streams = refused  # type: ignore[method-assign]
        with trio.fail_after(5), pytest.raises(BusError, match="bad config"):
            await bus.ensure()
