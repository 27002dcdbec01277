"""The metrics the operations guide names are the ones a running gateway exports.

``catalyst-smpp run`` in a process with two simulated operators and one that is never reachable; smpplib as
the partner sends routed, unrouted and throttled submits and takes receipts and MO. Then every metric name and
label that docs/operations.md uses (its metrics table, alerts and runbook) must be on ``/metrics`` — the test
fails when the guide and the code drift apart — and the outcomes themselves are checked: every answered submit
counted under its SMPP status name, ``connector_up`` 0 for the operator never bound, our operator binds, the
receipt latency and the process metrics.
"""

from __future__ import annotations

import re
import signal
import urllib.request
from collections import defaultdict
from decimal import Decimal
from pathlib import Path
from typing import Any

import smpplib.client
import smpplib.exceptions
import trio
from prometheus_client.parser import text_string_to_metric_families

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.sim import SimConfig
from catalyst_smpp.store import PartnerRepo
from catalyst_smpp.store.plan_repo import PlanRepo

from .harness import PASSWORD, Env, GatewayProcess, SmpplibPartner, free_port, open_sim, wait_for

DOCS = Path(__file__).resolve().parents[2] / "docs" / "operations.md"
PREFIX = "catalyst_smpp_"
_HISTOGRAM_SUFFIXES = ("_bucket", "_count", "_sum")

UNMATCHED = PREFIX + "receipts_unmatched_total"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def documented_metrics(text: str) -> dict[str, set[str]]:
    """Metric name (as exported) → the label names the guide gives it.

    Read from the table of the "Metrics" section (``| `name` | labels | meaning |``), from every
    ``catalyst_smpp_<name>`` with its selector (``{side="partner",name="<p>"}``, ``{status!="ok"}``), from
    ``<table name>{label=…}`` written without the prefix, and from the standard ``process_*`` names."""
    out: dict[str, set[str]] = defaultdict(set)
    table: set[str] = set()
    section = re.search(r"^## Metrics\n(.*?)(?=^## )", text, re.M | re.S)
    for m in re.finditer(r"^\| `([a-z_]+)` \| ([^|]*) \|", section.group(1) if section else "", re.M):
        name = PREFIX + m.group(1)
        table.add(m.group(1))
        labels = re.sub(r"\(histogram\)|—", "", m.group(2))
        out[name].update(x.strip() for x in labels.split(",") if x.strip())

    def selector_labels(selector: str | None) -> set[str]:
        return set(re.findall(r"(\w+)\s*(?:=|!=|=~|!~)", selector or ""))

    for m in re.finditer(rf"{PREFIX}([a-z_]+)(\{{[^}}]*\}})?", text):
        name = PREFIX + m.group(1)
        for suffix in _HISTOGRAM_SUFFIXES:
            name = name.removesuffix(suffix)
        out[name].update(selector_labels(m.group(2)))
    for m in re.finditer(r"`([a-z_]+)(\{[^}]*\})`", text):
        if m.group(1) in table:
            out[PREFIX + m.group(1)].update(selector_labels(m.group(2)))
    for m in re.finditer(r"`(process_[a-z_]+)`", text):
        out[m.group(1)].update(())  # named: present, no labels
    return dict(out)


def scrape(port: int) -> Samples:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as r:
        body = r.read().decode()
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for fam in text_string_to_metric_families(body)
        for s in fam.samples
    }


def exported(samples: Samples) -> dict[str, set[str]]:
    """Family name → label names seen on its samples (counters without ``_total``'s twin ``_created``)."""
    out: dict[str, set[str]] = defaultdict(set)
    for name, labels in samples:
        if name.endswith("_created"):
            continue
        for suffix in _HISTOGRAM_SUFFIXES:
            if name.endswith(suffix) and any(k == "le" for k, _ in labels) == (suffix == "_bucket"):
                name = name.removesuffix(suffix)
                break
        out[name].update(k for k, _ in labels if k != "le")
    return dict(out)


def value(samples: Samples, metric: str, /, **labels: str) -> float:
    return samples.get((metric, tuple(sorted(labels.items()))), 0.0)


def test_the_guide_is_read_for_names_and_labels() -> None:
    """The parser itself, on lines written the way the guide writes them."""
    text = (
        "## Config\n| `node` | id | not a metric |\n## Metrics\n"
        "| `binds` | side, name | open binds |\n"
        "| `accept_seconds` | — (histogram) | latency |\n"
        "| `operator_submits_total` | operator | to operators |\n"
        '`rate(catalyst_smpp_submits_total{status!="ok"}[5m])`, `operator_submits_total{operator="<op>"}`, '
        '`catalyst_smpp_accept_seconds_bucket`, `process_open_fds`, `unrelated{x="1"}`, `binds{kind="x"}`\n'
        "## Logs\n"
    )
    assert documented_metrics(text) == {
        "catalyst_smpp_binds": {"side", "name", "kind"},
        "catalyst_smpp_accept_seconds": set(),
        "catalyst_smpp_submits_total": {"status"},
        "catalyst_smpp_operator_submits_total": {"operator"},
        "process_open_fds": set(),
    }


def _traffic(p: SmpplibPartner) -> list[int]:
    """Routed (opA, opB), unrouted and, over the partner's throttle, throttled submits; then the receipts and
    MO that come back.  Returns the submit_sm_resp statuses."""
    statuses = []
    for dest in ("447700900001", "337700900001", "999000", *("447700900002",) * 4):
        statuses.append(
            p.request(
                "submit_sm",
                source_addr="TEST",
                destination_addr=dest,
                short_message=b"metrics",
                registered_delivery=1,
            ).status
        )
    # opA's receipts (one per message it accepted) and its 3 MO
    accepted_by_a = sum(1 for d, s in zip((1, 0, 0, 1, 1, 1, 1), statuses, strict=True) if d and s == 0)
    p.read_until(lambda: len(p.received) >= accepted_by_a + 3, 45.0)
    return statuses


def _billed_partner(env: Env) -> None:
    """Partner ``billed``: a price plan for 44 only and credit for one message, below its low-balance mark."""

    def setup(conn: Any) -> None:
        PlanRepo(conn).add("retail", "price", "EUR")
        PlanRepo(conn).import_csv(
            "retail",
            "prefix,country,network,mcc_mnc,submit_price,delivery_price,effective_from,effective_until\n"
            "44,44,DEFAULT,,0.05,,2020-01-01T00:00:00+00:00,\n",
        )
        PartnerRepo(conn).add("billed", PASSWORD, price_plan="retail")
        pid = PartnerRepo(conn).get("billed").id
        books.open_account(conn, pid, "EUR", low_balance=Decimal(1))
        books.topup(conn, pid, Money("0.05", "EUR"), "metrics test", "test")

    env.setup(setup)


def _billed_traffic(p: SmpplibPartner) -> list[int]:
    """One message paid for, one over the balance (insufficient credit), one unpriced (33: no row)."""
    return [
        p.request(
            "submit_sm",
            source_addr="TEST",
            destination_addr=dest,
            short_message=b"billed",
            registered_delivery=1,
        ).status
        for dest in ("447700900001", "447700900001", "337700900001")
    ]


async def test_every_metric_the_operations_guide_names_is_exported(env: Env, tmp_path: Path) -> None:
    documented = documented_metrics(DOCS.read_text())
    assert len(documented) >= 20 and "catalyst_smpp_submits_total" in documented  # the guide was read
    async with (
        open_sim(SimConfig(mo_rate=20.0, mo_count=3, mo_dest="12345")) as sim_a,
        # opB: receipts without an id anywhere (unreadable) and MO nobody routes
        open_sim(
            SimConfig(receipt_text=False, receipt_tlvs=False, mo_rate=20.0, mo_count=2, mo_dest="55501")
        ) as sim_b,
    ):
        env.add_partner("acme", throttle_rate=0.2, throttle_burst=4)
        env.add_operator("opA", sim_a.port)
        env.add_operator("opB", sim_b.port)
        env.add_operator("opdown", free_port())  # nothing listens there: never bound
        env.add_route(None, "44", ["opA"])
        env.add_route(None, "33", ["opB"])
        env.add_mo_route("123", "acme")
        _billed_partner(env)
        gw = GatewayProcess(env, tmp_path / "gw")
        gw.start()
        try:
            await gw.wait_listening()
            await wait_for(
                lambda: sim_a.stats.binds > 0 and sim_b.stats.binds > 0, 30, "both operators bound"
            )
            with trio.fail_after(90):
                statuses = await trio.to_thread.run_sync(SmpplibPartner(gw.port, "acme").run, _traffic)
                billed = await trio.to_thread.run_sync(SmpplibPartner(gw.port, "billed").run, _billed_traffic)
            assert billed == [0, 0x45, 0x0B], billed

            def wrong_password() -> None:
                c = smpplib.client.Client("127.0.0.1", gw.port, timeout=15, allow_unknown_opt_params=True)
                c.connect()
                try:
                    c.bind_transceiver(system_id="acme", password="wrong")
                except smpplib.exceptions.PDUError:
                    pass
                finally:
                    c.disconnect()

            await trio.to_thread.run_sync(wrong_password)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)  # config_reloads_total{result="ok"}

            # the sampler sets binds{side="operator"} every 15 s; the reload and opB's receipt come meanwhile
            # (a hang guard: without them by then, the assertions below say what is missing)
            with trio.move_on_after(60):
                while True:
                    samples = scrape(gw.metrics_port)
                    if (
                        value(samples, "catalyst_smpp_binds", side="operator", name="opA") > 0
                        and value(samples, "catalyst_smpp_config_reloads_total", result="ok") == 1
                        and value(samples, UNMATCHED, operator="opB", reason="unreadable") > 0
                        and value(
                            samples, "catalyst_smpp_credit_entries_total", kind="capture", outcome="written"
                        )
                        == 1
                    ):
                        break
                    await trio.sleep(0.5)
        finally:
            await gw.stop_async()

    have = exported(samples)
    missing = sorted(name for name in documented if name not in have)
    assert not missing, f"named in docs/operations.md but not exported: {missing}"
    unlabelled = sorted(
        f"{name}{{{label}}}" for name, labels in documented.items() for label in labels - have[name]
    )
    assert not unlabelled, f"labels docs/operations.md gives that no exported sample carries: {unlabelled}"

    # every answered submit counted, under its SMPP status name; the throttled ones too
    throttled = statuses.count(0x58)
    assert throttled >= 1 and statuses[2] == 0x0B, statuses
    assert (
        value(samples, "catalyst_smpp_submits_total", partner="acme", status="ESME_RTHROTTLED") == throttled
    )
    assert value(samples, "catalyst_smpp_submits_total", partner="acme", status="ESME_RINVDSTADR") == 1
    assert value(samples, "catalyst_smpp_submits_total", partner="acme", status="ok") == statuses.count(0)
    # the operator never bound reads 0 (the documented alert can fire), the bound ones 1
    assert value(samples, "catalyst_smpp_connector_up", operator="opdown") == 0
    assert value(samples, "catalyst_smpp_connector_up", operator="opA") == 1
    assert value(samples, "catalyst_smpp_binds", side="operator", name="opA") >= 1
    assert ("catalyst_smpp_binds", (("name", "opdown"), ("side", "operator"))) in samples
    assert value(samples, "catalyst_smpp_binds", side="operator", name="opdown") == 0
    assert value(samples, "catalyst_smpp_config_reloads_total", result="ok") == 1
    assert value(samples, UNMATCHED, operator="opB", reason="unreadable") >= 1
    # opA's receipts (acme's and billed's): each one observed in the receipt latency
    receipts = sum(v for (name, labels), v in samples.items() if name == "catalyst_smpp_receipts_total")
    assert receipts >= 1
    assert value(samples, "catalyst_smpp_receipt_seconds_count", operator="opA") == receipts
    assert value(samples, "process_resident_memory_bytes") > 0
    # billing: one refused for credit, one unpriced; one held and captured; below its low-balance mark
    refusals = "catalyst_smpp_billing_refusals_total"
    assert value(samples, refusals, partner="billed", reason="insufficient_credit") == 1
    assert value(samples, refusals, partner="billed", reason="unpriced") == 1
    assert value(samples, "catalyst_smpp_credit_low", partner="billed") == 1
