"""submit_multi and data_sm end to end: every destination reaches the simulator as sent, and a receipt comes
back for each of our message ids with the state the simulator reported.

* submit_multi (our client; smpplib has none): the gateway gives each destination its own id internally, but
  the partner sees one: the submit_multi_resp's, which every destination's receipt carries (text id and
  receipted_message_id); each receipt names its destination in source_addr, which is how a partner tells the
  destinations apart.  A destination without a route is listed in ``unsuccess_sme``.
* data_sm (smpplib): text in ``message_payload``; a long one is segmented for the operator, and the partner
  gets one receipt for it (the worst state of its parts).
"""

from __future__ import annotations

from typing import Any

import trio

from catalyst_smpp.encoding.receipts import parse_receipt
from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, SmeDestination, SubmitMulti
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import DelayRange, SimConfig

from .harness import (
    Env,
    Receipts,
    RecordingSim,
    SmpplibPartner,
    open_gateway,
    open_sim,
    partner_client,
    wait_for,
)

NOWHERE = "3361234567"  # no route


def _sim() -> SimConfig:
    return SimConfig(
        receipt_delay=DelayRange(0.01, 0.05),
        receipt_mix=((MessageState.DELIVERED, 60.0), (MessageState.UNDELIVERABLE, 40.0)),
    )


def _setup(env: Env, sim: RecordingSim, partner_fmt: str = "hex") -> None:
    env.add_partner("acme", message_id_format=partner_fmt)
    env.add_operator("opA", sim.port)
    env.add_route(None, "44", ["opA"])


async def test_submit_multi_each_destination_with_its_receipt(env: Env) -> None:
    k, per = 20, 3  # 20 submit_multi, each to 3 routed destinations and one without a route
    receipts = Receipts()
    seen: list[tuple[str, str, str]] = []  # every receipt: (receipted_message_id, text id, source_addr)

    def handler(session: Any, pdu: Pdu) -> Any:
        if isinstance(pdu, DeliverSm) and pdu.esm_class & 0x04:
            rid = pdu.get_tlv(Tag.receipted_message_id)
            rid_text = (rid.decode() if isinstance(rid, bytes) else str(rid)).rstrip("\0")
            seen.append((rid_text, parse_receipt(pdu.short_message, {}).message_id, pdu.source_addr))
        return receipts.handler(session, pdu)

    async with open_sim(_sim()) as sim:
        _setup(env, sim)
        async with open_gateway(env, "gw-a") as gw:
            client = partner_client(gw.ports[0], handler=handler)
            async with trio.open_nursery() as nursery:
                await nursery.start(client.run)
                await client.wait_bound()
                resps: dict[int, Any] = {}
                with trio.fail_after(60):
                    for i in range(k):
                        dests = [f"4477009{i:02d}{j:03d}" for j in range(per)]
                        pdu = SubmitMulti(
                            source_addr="12345",
                            source_addr_ton=1,
                            source_addr_npi=1,
                            dest_address=tuple(
                                SmeDestination(1, 1, d) for d in [*dests[:1], NOWHERE, *dests[1:]]
                            ),
                            registered_delivery=1,
                            short_message=f"multi {i:03d}".encode(),
                        )
                        resps[i] = await client.request(pdu)
                await wait_for(lambda: len(receipts.items) >= k * per, 60, "a receipt for each destination")
                await trio.sleep(0.5)  # a copy would arrive now
                await client.aclose()
    # each destination at the simulator once, with the text sent
    by_dest = {m.destination_addr: m for m in sim.messages}
    assert len(sim.messages) == k * per == len(by_dest)
    for i in range(k):
        resp = resps[i]
        assert resp.command_status == 0
        assert [(u.destination_addr, u.error_status_code) for u in resp.unsuccess_sme] == [
            (NOWHERE, int(CommandStatus.ESME_RINVDSTADR))
        ]
        for j in range(per):
            assert by_dest[f"4477009{i:02d}{j:03d}"].text == f"multi {i:03d}"
    # one receipt per destination (none lost to JetStream de-duplication: our ids differ per destination),
    # each carrying the one id of its submit_multi_resp -- in the TLV and the text -- told apart by
    # source_addr
    assert len(seen) == len(receipts.items) == k * per
    assert all(rid == text_id for rid, text_id, _ in seen)
    assert len({(rid, src) for rid, _, src in seen}) == k * per
    ids = {resps[i].message_id: i for i in range(k)}
    assert len(ids) == k
    by_id: dict[str, set[str]] = {}
    for rid, _, src in seen:
        by_id.setdefault(rid, set()).add(src)
    assert by_id == {resps[i].message_id: {f"4477009{i:02d}{j:03d}" for j in range(per)} for i in range(k)}
    # the state of each receipt is the one the simulator gave that destination's message
    got = {src: stat for (_, _, src), (_, stat) in zip(seen, receipts.items, strict=True)}
    want = {d: sim.receipt_stats[m.message_id] for d, m in by_dest.items()}
    assert got == want
    assert set(got.values()) == {"DELIVRD", "UNDELIV"}


LONG = "datasm " + " ".join(f"w{i:03d}" for i in range(48))  # 246 GSM characters: 2 parts at the operator


async def test_data_sm_from_smpplib_reaches_the_simulator_with_its_receipt(env: Env) -> None:
    texts = [f"datasm {i:02d}" for i in range(10)] + [LONG]  # letters, digits, space: same octets in GSM
    async with open_sim(_sim()) as sim:
        _setup(env, sim, partner_fmt="dec")
        async with open_gateway(env, "gw-a") as gw:

            def session(p: SmpplibPartner) -> dict[str, str]:
                ids: dict[str, str] = {}
                for text in texts:
                    resp = p.request(
                        "data_sm",
                        source_addr_ton=1,
                        source_addr_npi=1,
                        source_addr="12345",
                        dest_addr_ton=1,
                        dest_addr_npi=1,
                        destination_addr="447700900001",
                        registered_delivery=1,
                        message_payload=text.encode(),
                    )
                    assert resp.status == 0, (text, resp.status)
                    ids[text] = resp.message_id.decode()
                p.read_until(lambda: len(p.received) >= len(texts), 45.0)
                return ids

            partner = SmpplibPartner(gw.ports[0], "acme")
            with trio.fail_after(60):
                ids = await trio.to_thread.run_sync(partner.run, session)
    # as sent, once each (the long one in two parts)
    whole = {a.text or "": a for a in sim.assembled()}
    assert sorted(whole) == sorted(texts) and all(a.complete for a in whole.values())
    assert len(whole[LONG].parts) == 2 and len(sim.messages) == len(texts) + 1
    # one receipt per data_sm, our id (decimal for this partner), the simulator's state (worst part)
    assert len(set(ids.values())) == len(texts) and all(v.isdigit() for v in ids.values())
    got = {r.receipted_message_id.decode(): r.message_state for r in partner.received if r.esm_class & 0x04}
    assert len(partner.received) == len(texts) and set(got) == set(ids.values())
    for text, our_id in ids.items():
        stats = [sim.receipt_stats[i] for i in whole[text].message_ids]
        want = MessageState.DELIVERED if all(s == "DELIVRD" for s in stats) else MessageState.UNDELIVERABLE
        assert got[our_id] == int(want), (text, stats, got[our_id])
