"""What each nats-py internal the bus keeps (catalyst_smpp/bus/nats_internals.py) gains over the public API.

    .venv/bin/python bench/nats_internals.py [--url nats://127.0.0.1:4222] [-n 20000] [--batch 500]

One process, one connection, on the bus's asyncio side (no trio, no crossing): each path is timed with the
internal and with the public nats-py equivalent, alternated ``--rounds`` times, best of each reported:

* publish: ``send_raw`` (one buffer of HPUB lines, ``_send_command``) + acks through the fast path
  (``_process_msg``, ``Subscription._id``) vs ``Client.publish`` per message + acks through a subscription
  callback (nats-py ``Msg``, parsed headers, its queue and task);
* acks: one buffer of ``+ACK`` lines (``send_raw``) vs ``Client.publish`` per ack;
* pull: fetch through the fast path vs through a subscription callback (same pull requests).

``guard_pongs`` is a correctness fix (no public equivalent; its cost is one list check per PONG).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
import uuid
from typing import Any

from nats.aio.msg import Msg as NatsMsg

from catalyst_smpp.bus.api import MSG_ID_HEADER, PubAck, PublishError
from catalyst_smpp.bus.jetstream import _AioSide, _Puller
from catalyst_smpp.bus.names import Kind, Names
from catalyst_smpp.bus.nats_internals import WireHandler
from catalyst_smpp.config import NatsConfig


def _raw_headers(msg: NatsMsg) -> bytes | None:
    """A nats-py ``Msg``'s headers back as the header block the wire handlers read."""
    h = msg.headers
    if not h:
        return None
    status, desc = h.get("Status"), h.get("Description", "")
    first = f"NATS/1.0 {status} {desc}".rstrip() if status else "NATS/1.0"
    rest = "".join(f"{k}: {v}\r\n" for k, v in h.items() if k not in ("Status", "Description"))
    return f"{first}\r\n{rest}\r\n".encode()


def _callback(handler: WireHandler) -> Any:
    async def cb(msg: NatsMsg) -> None:
        handler(msg.subject.encode(), msg.reply.encode(), msg.data, _raw_headers(msg))

    return cb


async def public_publish(
    aio: _AioSide, items: list[tuple[str, bytes, dict[str, str]]], timeout: float
) -> int:
    """``Client.publish`` per message with a reply inbox; acks counted by a subscription callback."""
    nc = aio.nc
    assert nc is not None
    prefix = nc.new_inbox() + "."
    left = len(items)
    done = asyncio.get_running_loop().create_future()
    ok = 0

    async def on_ack(msg: NatsMsg) -> None:
        nonlocal left, ok
        resp = json.loads(msg.data)
        ok += "seq" in resp
        left -= 1
        if left == 0 and not done.done():
            done.set_result(None)

    sub = await nc.subscribe(prefix + "*", cb=on_ack)
    for i, (subject, payload, hdr) in enumerate(items):
        await nc.publish(subject, payload, reply=f"{prefix}{i}", headers=hdr)
    await asyncio.wait_for(done, timeout)
    await sub.unsubscribe()
    return ok


async def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--url", default="nats://127.0.0.1:4222")
    ap.add_argument("-n", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=500)
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    cfg = NatsConfig(namespace="bni" + uuid.uuid4().hex[:6])
    names = Names(cfg.namespace)
    aio = _AioSide(cfg, names, lambda _s: None)
    await aio.connect([args.url], "bench-internals")
    await aio.ensure_streams()
    nc = aio.nc
    assert nc is not None and aio.js is not None
    n, batch, payload = args.n, args.batch, b"x" * args.size
    best: dict[str, float] = {}

    def note(name: str, seconds: float) -> None:
        rate = n / seconds
        best[name] = max(best.get(name, 0.0), rate)

    try:
        for r in range(args.rounds):
            for internal in (True, False):
                op = f"op{r}{int(internal)}"
                subj = names.subject(Kind.MT, op)
                items = [(subj, payload, {MSG_ID_HEADER: f"{op}-{i}"}) for i in range(n)]
                t = time.perf_counter()
                for i in range(0, n, batch):
                    chunk = items[i : i + batch]
                    if internal:
                        res = await aio.publish_batch(list(chunk), 10.0)
                        assert all(isinstance(x, PubAck) for x in res), [
                            x for x in res if isinstance(x, PublishError)
                        ][:2]
                    else:
                        assert await public_publish(aio, chunk, 10.0) == len(chunk)
                note(f"publish, {'internal' if internal else 'public'}", time.perf_counter() - t)

                key = await aio.ensure_consumer(Kind.MT, op, cfg.streams.mt)
                p: _Puller = aio.pullers[key]
                if not internal:  # the same pull requests; replies through a subscription callback
                    aio.fast.pop(p.sub._id, None)
                    await p.sub.unsubscribe()
                    p.sub = await nc.subscribe(p.prefix + "*", cb=_callback(p._on_wire))
                got: list[Any] = []
                t = time.perf_counter()
                while len(got) < n:
                    got += await p.fetch(batch, 1.0)
                note(f"pull, {'internal' if internal else 'public'}", time.perf_counter() - t)

                replies = [m._reply for m in got]
                t = time.perf_counter()
                for i in range(0, n, batch):
                    if internal:
                        await aio.respond(replies[i : i + batch], b"+ACK", False)
                    else:
                        for rep in replies[i : i + batch]:
                            await nc.publish(rep, b"+ACK")
                await nc.flush()
                note(f"ack, {'internal' if internal else 'public'}", time.perf_counter() - t)
    finally:
        for kind in Kind:
            try:
                await aio.js.delete_stream(names.stream(kind))
            except Exception:
                pass
        await aio.close()
    print(
        f"nats-py internals vs public API: {n} messages of {args.size} B, batches of {batch}, "
        f"best of {args.rounds}"
    )
    for path in ("publish", "pull", "ack"):
        i, p = best[f"{path}, internal"], best[f"{path}, public"]
        print(
            f"  {path:8s} internal {i:9,.0f}/s  public {p:9,.0f}/s  "
            f"internal saves {1e6 / p - 1e6 / i:5.1f} µs/msg"
        )


if __name__ == "__main__":
    asyncio.run(main())
