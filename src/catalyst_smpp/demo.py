"""``catalyst-smpp demo``: the whole flow on one machine with nothing installed.

Starts an embedded nats-server and Postgres in a state directory, the SMSC simulator in-process as the
operator, and a gateway with a demo partner, operator and route; then sends a few messages as the partner
(a short GSM text, GSM extension characters, a long text that the gateway segments for the operator, a UCS-2
text), waits for the receipts and prints what happened.  Exit 0 when every message reached the simulator
and every receipt came back.
"""

from __future__ import annotations

import logging
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, TextIO

import attrs
import click
import trio

from catalyst_smpp.admin import CONTEXT_SETTINGS

__all__ = ["DEMO_MESSAGES", "run_demo"]

log = logging.getLogger(__name__)

PARTNER, PASSWORD, OPERATOR = "demo", "demo", "demo-op"

DEMO_MESSAGES: tuple[tuple[str, str], ...] = (
    ("short GSM", "Hello from catalyst-smpp!"),
    ("GSM extension chars", "Price: 5€ [incl. {tax}] ~ ok^"),
    (
        "long GSM (segmented for the operator)",
        "This long message goes to the gateway whole, in message_payload; the gateway stores it on JetStream "
        "and the operator connector splits it into concatenated parts with a UDH, as the operator is "
        "configured (segmentation = udh8). The simulator joins the parts again, so the demo can compare "
        "the text the operator received with what the partner sent. Receipts come back for the message.",
    ),
    ("UCS-2", "Привет мир — ça marche ✓ 日本語のテキスト"),
)


@attrs.define
class _Sent:
    label: str
    text: str
    data_coding: int
    message_id: str = ""
    status: int = -1
    sent_at: float = 0.0
    receipt_state: str = ""
    receipt_at: float = 0.0


def _prepare_db(conn: Any, op_port: int) -> None:
    """The seeds exist after the first start; point the operator at this run's simulator, add the route."""
    from catalyst_smpp.store import OperatorRepo, RouteRepo

    OperatorRepo(conn).change(OPERATOR, host="127.0.0.1", port=op_port, enabled=True)
    if not any(t.operator == OPERATOR for r in RouteRepo(conn).list() for t in r.targets):
        RouteRepo(conn).add(None, "", [OPERATOR], description="demo: everything to the simulator")


def _config(state: Path, op_port: int) -> Any:
    from catalyst_smpp.config import (
        Config,
        LimitsConfig,
        ListenerConfig,
        MetricsConfig,
        NodeConfig,
        OperatorSeed,
        PartnerSeed,
    )
    from catalyst_smpp.embedded import free_port

    return Config(
        node=NodeConfig(id="demo", state_dir=state),
        listeners=(ListenerConfig(host="127.0.0.1", port=free_port(), reuse_port=False),),
        limits=LimitsConfig(shutdown_grace=3.0),
        metrics=MetricsConfig(port=0),
        operators=(
            OperatorSeed(
                name=OPERATOR, host="127.0.0.1", port=op_port, system_id="gateway", password="secret"
            ),
        ),
        partners=(PartnerSeed(system_id=PARTNER, password=PASSWORD, throttle_rate=50.0),),
    )


def _submit(msg: _Sent, payload: bytes, dest: str) -> Any:
    from catalyst_smpp.protocol.pdu import SubmitSm
    from catalyst_smpp.protocol.tlv import Tag, Tlv

    common: dict[str, Any] = dict(
        source_addr="CATALYST", destination_addr=dest, registered_delivery=1, data_coding=msg.data_coding
    )
    if len(payload) <= 140:
        return SubmitSm(short_message=payload, **common)
    return SubmitSm(short_message=b"", tlvs=(Tlv(int(Tag.message_payload), payload),), **common)


async def _demo(state: Path, out: TextIO, timeout: float) -> int:
    from catalyst_smpp.client import ClientConfig, SmppClient
    from catalyst_smpp.embedded import open_infrastructure
    from catalyst_smpp.encoding import SegmentMethod, segment
    from catalyst_smpp.encoding.receipts import ReceiptParseError, parse_receipt
    from catalyst_smpp.gateway.gateway import Gateway
    from catalyst_smpp.metrics import Metrics
    from catalyst_smpp.protocol.constants import ESM_TYPE_MASK, EsmClass
    from catalyst_smpp.protocol.pdu import DeliverSm
    from catalyst_smpp.sim.config import SimConfig
    from catalyst_smpp.sim.server import open_simulator

    def say(line: str = "") -> None:
        print(line, file=out, flush=True)

    t0 = time.monotonic()
    sent: list[_Sent] = []
    by_id: dict[str, _Sent] = {}
    all_receipts = trio.Event()
    unmatched: list[str] = []
    # A receipt can be handled before the task that sent the message has read its submit_sm_resp: the
    # client's reader hands the response to that task and goes on to the deliver_sm that followed it in
    # the same read.  Such a receipt waits here for its message id.
    early: dict[str, Any] = {}

    def settle(m: _Sent, r: Any) -> None:
        m.receipt_state = r.stat or r.state.name
        m.receipt_at = time.monotonic()
        if len(sent) == len(DEMO_MESSAGES) and all(x.receipt_state for x in sent):
            all_receipts.set()

    def on_deliver(session: Any, pdu: Any) -> Any:
        if not isinstance(pdu, DeliverSm):
            return 0x03  # ESME_RINVCMDID
        receipt_type = pdu.esm_class & ESM_TYPE_MASK
        if receipt_type not in (
            int(EsmClass.TYPE_DELIVERY_RECEIPT),
            int(EsmClass.TYPE_INTERMEDIATE_NOTIFICATION),
        ):
            return None  # an MO: not part of the demo
        try:
            r = parse_receipt(pdu.short_message, {t.tag: t.value for t in pdu.tlvs})
        except ReceiptParseError as e:
            unmatched.append(f"unreadable receipt: {e}")
            return None
        m = by_id.get(r.message_id.lower())
        if m is None:
            early[r.message_id.lower()] = r
        elif r.is_final:
            settle(m, r)
        return None

    say(f"state directory: {state}")
    # operator ids must not repeat across runs on one state dir: the id mapping (KV, 3 days) would still
    # hold the previous run's message for a reused id
    async with open_simulator(
        SimConfig(keep_messages=1000, system_id="DEMOSMSC", id_start=int(time.time() * 1000))
    ) as sim:
        say(f"operator: SMSC simulator on 127.0.0.1:{sim.port}")
        cfg = _config(state, sim.port)
        say("starting embedded NATS (JetStream) and Postgres ...")
        async with open_infrastructure(cfg) as infra:
            say(f"  NATS {infra.nats_urls[0]}, Postgres {infra.dsn}  ({time.monotonic() - t0:.1f}s)")
            await infra.db.run(_prepare_db, sim.port)
            gw = Gateway(cfg, infra, node_id="demo", metrics=Metrics())
            async with trio.open_nursery() as n:
                await n.start(gw.run)
                await gw.reload()  # the operator's address changed after the snapshot was taken
                port = gw.ports[0]
                say(
                    f"gateway: partners bind to 127.0.0.1:{port} "
                    f"(system_id {PARTNER!r}, password {PASSWORD!r})"
                )
                with trio.move_on_after(timeout) as bound:
                    await sim.wait_until(lambda s: s.bound_sessions >= 1, timeout=timeout + 1)
                if bound.cancelled_caught:
                    say("FAILED: the gateway's operator connector did not bind to the simulator")
                    return 1
                say(f"operator connector bound to the simulator  ({time.monotonic() - t0:.1f}s)")

                client = SmppClient(
                    ClientConfig(host="127.0.0.1", port=port, system_id=PARTNER, password=PASSWORD),
                    on_deliver,
                )
                await n.start(client.run)
                with trio.fail_after(timeout):
                    await client.wait_bound()
                say("partner bound (transceiver); sending:")
                for i, (label, text) in enumerate(DEMO_MESSAGES):
                    seg = segment(text, method=SegmentMethod.PAYLOAD)
                    m = _Sent(label, text, seg.data_coding)
                    sent.append(m)
                    m.sent_at = time.monotonic()
                    resp = await client.request(_submit(m, seg.parts[0].payload, f"44770090{i:04d}"))
                    m.status = resp.command_status
                    m.message_id = getattr(resp, "message_id", "") or ""
                    if m.status == 0:
                        by_id[m.message_id.lower()] = m
                        r = early.pop(m.message_id.lower(), None)
                        if r is not None and r.is_final:
                            settle(m, r)
                    else:
                        m.receipt_state = "-"  # nothing to wait for
                    say(
                        f"  {label:<40} -> submit_sm_resp status 0x{m.status:08X}, "
                        f"our message id {m.message_id!r}"
                    )
                with trio.move_on_after(timeout):
                    await all_receipts.wait()
                with trio.move_on_after(2):
                    await sim.wait_until(lambda s: len(s.assembled()) >= len(sent), timeout=3)
                assembled = sim.assembled()
                await client.aclose()
                await gw.drain(cfg.limits.shutdown_grace)
                n.cancel_scope.cancel()

    ok = True
    say("")
    say("result:")
    for m in sent:
        at_op = [a for a in assembled if a.text == m.text]
        parts = len(at_op[0].parts) if at_op else 0
        receipt = m.receipt_state or "none yet"
        took = f"{(m.receipt_at - m.sent_at) * 1000:.0f} ms" if m.receipt_at else "-"
        good = m.status == 0 and bool(at_op) and bool(m.receipt_state) and m.receipt_state != "-"
        ok &= good
        say(f"  [{'ok' if good else 'FAIL'}] {m.label}")
        say(f"        sent {len(m.text)} chars, data_coding {m.data_coding}; our id {m.message_id or '-'}")
        say(
            f"        operator received: {'the same text' if at_op else 'NOT the same text'}"
            + (f" in {parts} part(s), data_coding {at_op[0].data_coding}" if at_op else "")
        )
        say(f"        receipt: {receipt} after {took}")
    unmatched += [r.message_id for r in early.values()]
    if unmatched:
        say(f"  receipts that matched no message: {unmatched}")
    say("")
    say(
        ("all messages delivered and all receipts back" if ok else "some messages or receipts are missing")
        + f" ({time.monotonic() - t0:.1f}s)"
    )
    return 0 if ok else 1


def run_demo(state_dir: Path | None = None, *, out: TextIO | None = None, timeout: float = 60.0) -> int:
    """Run the demo; returns the exit code.  A temporary state directory is removed afterwards."""
    out = out if out is not None else sys.stdout
    temp = state_dir is None
    state = Path(tempfile.mkdtemp(prefix="catalyst-demo-")) if state_dir is None else state_dir
    state.mkdir(parents=True, exist_ok=True)
    try:
        return trio.run(_demo, state.resolve(), out, timeout)
    finally:
        if temp:
            shutil.rmtree(state, ignore_errors=True)


def register(main: click.Group) -> None:

    @main.command("demo", context_settings=CONTEXT_SETTINGS)
    @click.option(
        "--state-dir",
        type=click.Path(file_okay=False, path_type=Path),
        help="Keep the embedded NATS and Postgres data here (default: a temporary directory, removed after).",
    )
    @click.option(
        "--timeout",
        type=click.FloatRange(min=1),
        default=60.0,
        show_default=True,
        help="Seconds to wait for binds and for the receipts.",
    )
    @click.option("-v", "--verbose", count=True, help="Log output on stderr (-v info, -vv debug).")
    def demo_cmd(state_dir: Path | None, timeout: float, verbose: int) -> None:
        """Try the gateway with nothing installed: embedded NATS and Postgres, the SMSC simulator as the
        operator, a demo partner, operator and route; sends a few messages (short, long, UCS-2) as the
        partner and prints what the operator received and which receipts came back.  Exit 0 when all
        receipts arrived."""
        from catalyst_smpp.logs import setup_logging, verbosity_level

        setup_logging(verbosity_level(verbose), "text")
        sys.exit(run_demo(state_dir, timeout=timeout))
