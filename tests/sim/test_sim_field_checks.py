"""smsc-sim refuses field values that mean nothing with the same statuses as the gateway (one check)."""

from __future__ import annotations

from typing import Any

import smpplib.client
import trio

from catalyst_smpp.client import ClientConfig, SmppClient
from catalyst_smpp.protocol.constants import CommandStatus as S
from catalyst_smpp.protocol.pdu import ReplaceSm, SmeDestination, SubmitMulti
from catalyst_smpp.sim.config import SimConfig
from catalyst_smpp.sim.server import open_simulator

CASES: list[tuple[dict[str, Any], int]] = [
    (dict(priority_flag=4), S.ESME_RINVPRTFLG),
    (dict(replace_if_present_flag=3), S.ESME_RINVREPFLAG),
    (dict(schedule_delivery_time="261232120000000+"), S.ESME_RINVSCHED),  # day 32
    (dict(schedule_delivery_time="26010112000000x+"), S.ESME_RINVSCHED),  # tenths not a digit
    (dict(validity_period="261301120000000+"), S.ESME_RINVEXPIRY),  # month 13
    (dict(validity_period="00006000000000R0"), S.ESME_RINVEXPIRY),  # not a time: R is not last
    (dict(priority_flag=1, validity_period="000001000000000R", schedule_delivery_time="260101120000008+"), 0),
]


def _smpplib_submits(port: int) -> list[int]:
    c = smpplib.client.Client("127.0.0.1", port, timeout=10, allow_unknown_opt_params=True)
    c.connect()
    try:
        c.bind_transmitter(system_id="esme", password="pw")
        out = []
        for kw, _ in CASES:
            c.send_message(source_addr="1", destination_addr="447700900001", short_message=b"x", **kw)
            out.append(int(c.read_pdu().status))
        c.unbind()
    finally:
        c.disconnect()
    return out


async def test_bad_priority_replace_flag_and_times_are_refused() -> None:
    async with open_simulator(SimConfig()) as sim:
        statuses = await trio.to_thread.run_sync(_smpplib_submits, sim.port)
        client = SmppClient(ClientConfig("127.0.0.1", sim.port, "t", "p"))
        async with trio.open_nursery() as nursery:
            await nursery.start(client.run)
            with trio.fail_after(5):
                await client.wait_bound()
                multi = await client.request(
                    SubmitMulti(
                        source_addr="1",
                        short_message=b"m",
                        validity_period="260101240000000+",  # hour 24
                        dest_address=(SmeDestination(1, 1, "447700900001"),),
                    )
                )
                replace = [
                    (await client.request(ReplaceSm(message_id="1", source_addr="1", **kw))).command_status
                    for kw in (
                        dict(schedule_delivery_time="260229000000000+"),  # 2026 is no leap year
                        dict(validity_period="000000000000001R"),
                        dict(schedule_delivery_time="240229000000000+"),
                    )
                ]
            await client.aclose()
    assert statuses == [status for _, status in CASES]
    assert multi.command_status == S.ESME_RINVEXPIRY
    assert replace == [S.ESME_RINVSCHED, S.ESME_RINVEXPIRY, S.ESME_RREPLACEFAIL]
    assert sim.stats.accepted == 1 and len(sim.messages) == 1
    assert sim.stats.invalid == {
        "ESME_RINVPRTFLG": 1,
        "ESME_RINVREPFLAG": 1,
        "ESME_RINVSCHED": 3,
        "ESME_RINVEXPIRY": 4,
        "ESME_RREPLACEFAIL": 1,
    }
    assert (sim.stats.submit_sm, sim.stats.submit_multi, sim.stats.other) == (len(CASES), 1, 3)
