"""JetStream through the trio bus: publish/s and fetch+ack/s, batched vs one crossing per message.

    .venv/bin/python bench/bus.py [--url nats://127.0.0.1:4222] [-n 20000] [--batch 500] [--size 200]

Uses the given NATS (default: 127.0.0.1:4222 if it answers with JetStream, else an embedded nats-server in
a temporary directory).  Also runs plain nats-py on asyncio (no trio, no bridge) as the ceiling.
Streams are created under a throw-away namespace and deleted afterwards.
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
import uuid
from pathlib import Path

import nats
import trio
from nats.js import api

from catalyst_smpp.bus import Bus, Kind
from catalyst_smpp.config import NatsConfig
from catalyst_smpp.embedded import EmbeddedNats, nats_has_jetstream


async def bench_bus(url: str, n: int, batch: int, size: int) -> dict[str, float]:
    cfg = NatsConfig(namespace="bench" + uuid.uuid4().hex[:6])
    out: dict[str, float] = {}
    async with Bus.connect(url, cfg, name="bench") as bus:
        subj = bus.subject(Kind.MT, "op")
        payload = b"x" * size
        items = [(subj, payload, None, f"m{i}") for i in range(n)]
        t = time.perf_counter()
        for i in range(0, n, batch):
            res = await bus.publish_batch(items[i : i + batch])
            assert all(r.ok for r in res), res[:3]
        out[f"publish/s (batch {batch})"] = n / (time.perf_counter() - t)

        c = await bus.consumer(Kind.MT, "op")
        t = time.perf_counter()
        got = 0
        while got < n:
            ms = await c.fetch(batch, 2.0)
            if not ms:
                raise RuntimeError(f"fetch stalled at {got}")
            await c.ack(ms)
            got += len(ms)
        out[f"fetch+ack/s (batch {batch})"] = n / (time.perf_counter() - t)

        m = min(n, 3000)
        single = [(bus.subject(Kind.MT, "op1"), payload, None, f"s{i}") for i in range(m)]
        t = time.perf_counter()
        for it in single:
            await bus.publish_batch([it])
        out["publish/s (one crossing per message)"] = m / (time.perf_counter() - t)
        c1 = await bus.consumer(Kind.MT, "op1")
        t = time.perf_counter()
        for _ in range(m):
            ms = await c1.fetch(1, 2.0)
            await c1.ack(ms, flush=False)
        out["fetch+ack/s (one crossing per message)"] = m / (time.perf_counter() - t)
        for name in ("op", "op1"):
            await bus.delete_consumer(Kind.MT, name)
    await asyncio_cleanup(url, cfg)
    return out


async def asyncio_cleanup(url: str, cfg: NatsConfig) -> None:
    from catalyst_smpp.bus.bridge import AsyncioThread

    async def _del() -> None:
        nc = await nats.connect(url)
        js = nc.jetstream()
        for k in Kind:
            await js.delete_stream(f"{cfg.namespace}_{k.value}")
        await js.delete_stream(f"KV_{cfg.namespace}_{cfg.kv.bucket}")
        await nc.close()

    t = AsyncioThread("cleanup")
    t.start()
    await t.call(_del)
    await trio.to_thread.run_sync(t.stop)


async def native(url: str, n: int, batch: int, size: int) -> dict[str, float]:
    nc = await nats.connect(url)
    js = nc.jetstream()
    name = "BENCHNATIVE" + uuid.uuid4().hex[:6]
    await js.add_stream(name=name, subjects=[name + ".>"], storage=api.StorageType.FILE)
    payload = b"x" * size
    out: dict[str, float] = {}
    t = time.perf_counter()
    for i in range(0, n, batch):
        futs = [
            await js.publish_async(name + ".op", payload, headers={"Nats-Msg-Id": f"m{j}"})
            for j in range(i, min(n, i + batch))
        ]
        await asyncio.gather(*futs)
    out[f"publish/s (batch {batch})"] = n / (time.perf_counter() - t)
    sub = await js.pull_subscribe(name + ".op", durable="d", stream=name)
    t = time.perf_counter()
    got = 0
    while got < n:
        ms = await sub.fetch(batch, timeout=2.0)
        for m in ms:
            await m.ack()
        await nc.flush()
        got += len(ms)
    out[f"fetch+ack/s (batch {batch})"] = n / (time.perf_counter() - t)
    await js.delete_stream(name)
    await nc.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=200, help="payload bytes")
    a = ap.parse_args()
    srv = None
    url = a.url
    tmp = None
    if not url:
        if nats_has_jetstream("127.0.0.1", 4222):
            url = "nats://127.0.0.1:4222"
        else:
            tmp = tempfile.TemporaryDirectory()
            srv = EmbeddedNats(Path(tmp.name) / "nats")
            url = srv.start()
    try:
        print(f"NATS {url}, {a.n} messages of {a.size} bytes")
        ours = trio.run(bench_bus, url, a.n, a.batch, a.size)
        base = asyncio.run(native(url, a.n, a.batch, a.size))
        print(f"{'':42} {'trio bus':>12} {'nats-py asyncio':>16}")
        for k, v in ours.items():
            b = base.get(k)
            print(f"{k:42} {v:12,.0f} {b:16,.0f}" if b else f"{k:42} {v:12,.0f} {'':>16}")
    finally:
        if srv is not None:
            srv.stop()
        if tmp is not None:
            tmp.cleanup()


if __name__ == "__main__":
    main()
