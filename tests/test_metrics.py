"""Metrics: the pinned names on a private registry, scraped over HTTP from the trio exporter."""

from __future__ import annotations

import trio
from prometheus_client.parser import text_string_to_metric_families

from catalyst_smpp.metrics import Metrics, serve_metrics


async def _get(port: int, path: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    stream = await trio.open_tcp_stream("127.0.0.1", port)
    async with stream:
        await stream.send_all(f"{method} {path} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
        data = b""
        while chunk := await stream.receive_some(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split()[1])
    headers = {k.lower(): v.strip() for k, v in (line.split(":", 1) for line in lines[1:])}
    return status, headers, body


def _samples(body: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    out = {}
    for fam in text_string_to_metric_families(body.decode()):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


async def test_pinned_metrics_are_scraped_with_their_labels() -> None:
    m = Metrics()
    m.submits_total.labels(partner="acme", status="ok").inc(3)
    m.submits_total.labels(partner="acme", status="ESME_RTHROTTLED").inc()
    m.operator_submits_total.labels(operator="op1", status="ok").inc(2)
    m.receipts_total.labels(partner="acme", state="DELIVRD").inc(2)
    m.mo_total.labels(partner="acme").inc()
    m.deliver_total.labels(partner="acme", status="ok").inc(4)
    m.binds.labels(side="partner", name="acme").set(2)
    m.backlog.labels(kind="mt", name="op1").set(17)
    m.connector_up.labels(operator="op1").set(1)
    m.accept_seconds.observe(0.003)
    m.operator_submit_seconds.observe(0.02)
    m.set_info("node-a", "1.2.3")

    async with trio.open_nursery() as n:
        port = await n.start(serve_metrics, m, "127.0.0.1", 0)
        status, headers, body = await _get(port, "/metrics")
        n.cancel_scope.cancel()

    assert status == 200
    assert headers["content-type"].startswith("text/plain")
    s = _samples(body)
    p = "catalyst_smpp_"
    assert s[(p + "submits_total", (("partner", "acme"), ("status", "ok")))] == 3
    assert s[(p + "submits_total", (("partner", "acme"), ("status", "ESME_RTHROTTLED")))] == 1
    assert s[(p + "operator_submits_total", (("operator", "op1"), ("status", "ok")))] == 2
    assert s[(p + "receipts_total", (("partner", "acme"), ("state", "DELIVRD")))] == 2
    assert s[(p + "mo_total", (("partner", "acme"),))] == 1
    assert s[(p + "deliver_total", (("partner", "acme"), ("status", "ok")))] == 4
    assert s[(p + "binds", (("name", "acme"), ("side", "partner")))] == 2
    assert s[(p + "backlog", (("kind", "mt"), ("name", "op1")))] == 17
    assert s[(p + "connector_up", (("operator", "op1"),))] == 1
    assert s[(p + "accept_seconds_count", ())] == 1
    assert s[(p + "accept_seconds_bucket", (("le", "0.005"),))] == 1
    assert s[(p + "accept_seconds_bucket", (("le", "0.0025"),))] == 0
    assert s[(p + "operator_submit_seconds_sum", ())] == 0.02
    assert s[(p + "info", (("node", "node-a"), ("version", "1.2.3")))] == 1
    assert s[(p + "ready", ())] == 0


async def test_each_metrics_object_has_its_own_registry() -> None:
    a, b = Metrics(), Metrics()
    a.mo_total.labels(partner="x").inc()
    assert a.registry.get_sample_value("catalyst_smpp_mo_total", {"partner": "x"}) == 1
    assert b.registry.get_sample_value("catalyst_smpp_mo_total", {"partner": "x"}) is None


async def test_healthz_follows_ready_and_unknown_paths_are_404() -> None:
    m = Metrics()
    async with trio.open_nursery() as n:
        port = await n.start(serve_metrics, m, "127.0.0.1", 0)
        status, _, body = await _get(port, "/healthz")
        assert (status, body) == (503, b"not ready\n")
        m.ready.set(1)
        status, _, body = await _get(port, "/healthz")
        assert (status, body) == (200, b"ok\n")
        status, _, _ = await _get(port, "/nope")
        assert status == 404
        status, _, _ = await _get(port, "/metrics", method="POST")
        assert status == 405
        status, headers, body = await _get(port, "/metrics", method="HEAD")
        assert status == 200 and body == b"" and int(headers["content-length"]) > 0
        n.cancel_scope.cancel()
