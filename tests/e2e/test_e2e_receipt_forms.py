"""Receipts in the forms SMSCs send, end to end: the SMSC simulator sends each form → the operator
connector's inbound handler → ``DLR.<partner>`` → deliver_sm to the partner (our SMPP client).  Exact counts:
one receipt per message, under the id the partner was given, none taken for an MO, none unmatched.

Forms: the receipted_message_id TLV in the submit_sm_resp's hex with the text's ``id:`` in decimal (the
operator set to hex / dec, as its documentation says for receipts); UCS-2 receipts (data_coding 8); receipts
with esm_class 0 and no receipt TLVs (operator set to ``receipts_by_text``).
"""

from __future__ import annotations

from typing import Any

import pytest

from catalyst_smpp.sim import DelayRange, IdForm, IdFormat, SimConfig

from .harness import Env, Receipts, check_delivered, open_gateway, open_sim, partner_round, texts


@pytest.mark.parametrize(
    ("sim_kw", "op_kw"),
    [
        pytest.param(
            {
                "id_format": IdFormat(IdForm.HEX, width=10, upper=True),
                "receipt_id_format": IdFormat(IdForm.DEC),
                "receipt_tlv_resp_id": True,
                "id_start": 0x1000,
            },
            {"submit_id_format": "hex", "receipt_id_format": "dec"},
            id="tlv-id-hex-text-id-decimal",
        ),
        pytest.param({"receipt_data_coding": 8, "receipt_tlvs": False}, {}, id="ucs2"),
        pytest.param(
            {"receipt_esm_class": 0, "receipt_tlvs": False}, {"receipts_by_text": True}, id="no-receipt-bit"
        ),
    ],
)
async def test_receipts_in_the_forms_smscs_send_reach_the_partner(
    env: Env, sim_kw: dict[str, Any], op_kw: dict[str, Any]
) -> None:
    n = 30
    all_texts = texts("form", n)
    receipts = Receipts()
    async with open_sim(SimConfig(receipt_delay=DelayRange(0.01, 0.05), **sim_kw)) as sim:
        env.add_partner("acme")
        env.add_operator("opA", sim.port, **op_kw)
        env.add_route(None, "44", ["opA"])
        async with open_gateway(env, "gw-a") as gw:
            load = await partner_round(gw.ports[0], receipts, all_texts, lambda: [sim], linger=0.5)
            stats = gw.connectors["opA"][0].inbound.stats
        count = check_delivered(all_texts, load, sim)
    assert count.acked == n and count.missing == [] and count.duplicates == 0 and count.unexpected == 0
    assert receipts.by_id() == {our: ["DELIVRD"] for our in load.acked.values()}
    assert receipts.other == 0
    assert (stats.receipts, stats.published) == (n, n)
    assert (stats.unknown, stats.bad_receipts, stats.mo, stats.mo_unrouted) == (0, 0, 0, 0)
