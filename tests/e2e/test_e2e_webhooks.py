"""Receipts to a partner's webhook end to end: a real gateway (NATS + Postgres), the SMSC simulator sending
receipts, the partner submitting over SMPP on a transceiver, and a real HTTP receiver (``http.server`` in a
thread) that checks every request's signature.

While the receiver is up every receipt arrives exactly once and none goes to the SMPP bind (a partner with a
dlr webhook gets its receipts only by webhook).  Then the receiver goes away (its port closed: connection
refused) while more messages are sent, and comes back on the same port: every receipt arrives, duplicates
are at most what the gateway counted as redelivered, and the receipts that waited came in batches.
"""

from __future__ import annotations

import collections
import http.server
import json
import threading
from typing import Any

import trio

from catalyst_smpp.client import BindType
from catalyst_smpp.http.webhooks import verify_signature
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.sim import SimConfig
from catalyst_smpp.store.webhook_repo import WebhookRepo

from .harness import (
    Env,
    Receipts,
    free_port,
    open_gateway,
    open_sim,
    partner_client,
    submit_load,
    texts,
    wait_for,
)

SECRET = "whsec_e2e_" + "5" * 40


class Receiver:
    """An HTTP server on a fixed port that records each signed request's items; :meth:`stop` closes the
    port (the gateway sees connection refused), :meth:`start` opens it again."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.requests: list[list[dict[str, Any]]] = []
        self.bad_signatures = 0
        self.lock = threading.Lock()
        self.server: http.server.ThreadingHTTPServer | None = None
        self.thread: threading.Thread | None = None

    def start(self) -> None:
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                ok = verify_signature(
                    SECRET, self.headers["X-Catalyst-Timestamp"], self.headers["X-Catalyst-Signature"], body
                )
                with receiver.lock:
                    if ok:
                        doc = json.loads(body)
                        assert doc["kind"] == "dlr"
                        receiver.requests.append(doc["items"])
                    else:
                        receiver.bad_signatures += 1
                self.send_response(204 if ok else 401)
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        assert self.server is not None and self.thread is not None
        self.server.shutdown()
        self.server.server_close()
        self.thread.join()
        self.server = None

    def ids(self) -> collections.Counter[str]:
        with self.lock:
            return collections.Counter(i["message_id"] for items in self.requests for i in items)


def _sim() -> SimConfig:
    return SimConfig(receipt_mix=((MessageState.DELIVERED, 0.8), (MessageState.UNDELIVERABLE, 0.2)))


async def test_receipts_to_a_webhook_once_each_and_all_after_an_outage(env: Env) -> None:
    port = free_port()
    rx = Receiver(port)
    rx.start()
    metrics = Metrics()
    smpp_receipts = Receipts()
    try:
        async with open_sim(_sim()) as sim:
            env.add_partner("acme")
            env.add_operator("opA", sim.port)
            env.add_route(None, "44", ["opA"])
            env.setup(
                lambda c: WebhookRepo(c).set("acme", "dlr", f"http://127.0.0.1:{port}/hook", secret=SECRET)
            )
            async with open_gateway(env, "gw-a", metrics=metrics) as gw:
                client = partner_client(
                    gw.ports[0], handler=smpp_receipts.handler, binds=(BindType.TRANSCEIVER,)
                )
                async with trio.open_nursery() as n:
                    await n.start(client.run)
                    await client.wait_bound()

                    # --- receiver up: each receipt once
                    first = await submit_load(client, texts("up", 60))
                    ids1 = set(first.acked.values())
                    await wait_for(lambda: ids1 <= set(rx.ids()), 60, "every receipt at the webhook")
                    await trio.sleep(1.0)  # a copy would come now
                    got = rx.ids()
                    assert {i: c for i, c in got.items() if c > 1} == {}, "a receipt came twice while up"
                    assert set(got) == ids1

                    # --- receiver down while more receipts come, then back
                    await trio.to_thread.run_sync(rx.stop)
                    second = await submit_load(client, texts("down", 150))
                    ids2 = set(second.acked.values())
                    retry = metrics.webhook_deliveries_total.labels("acme", "dlr", "retry")
                    await wait_for(lambda: retry._value.get() > 0, 30, "a failed request")
                    await trio.sleep(2.0)
                    await trio.to_thread.run_sync(rx.start)
                    await wait_for(lambda: ids2 <= set(rx.ids()), 90, "every receipt after the outage")
                    await trio.sleep(1.0)
                    await client.aclose()
                    n.cancel_scope.cancel()
    finally:
        if rx.server is not None:
            rx.stop()
    got = rx.ids()
    assert set(got) == ids1 | ids2  # all of them, nothing else
    c = metrics.webhook_deliveries_total
    redelivered = c.labels("acme", "dlr", "redelivered")._value.get()
    duplicates = sum(n - 1 for n in got.values())
    largest = max(map(len, rx.requests))
    print(
        f"{len(rx.requests)} requests, largest {largest} items, {duplicates} duplicate(s),",
        f"{redelivered:g} redelivered",
    )
    assert duplicates <= redelivered, (duplicates, redelivered)
    assert c.labels("acme", "dlr", "ok")._value.get() + redelivered == sum(got.values())
    assert rx.bad_signatures == 0
    assert max(len(items) for items in rx.requests) > 1, "receipts that waited came in batches"
    assert smpp_receipts.items == [], "receipts went to the SMPP bind too"
    item = rx.requests[0][0]
    assert item["status"] in ("DELIVERED", "UNDELIVERED") and item["smpp_state"] in ("DELIVRD", "UNDELIV")
    assert item["operator"] == "opA" and item["to"] == "447700900001" and item["parts"] == 1
