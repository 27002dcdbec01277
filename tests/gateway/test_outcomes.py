"""The connector's outcomes: how a message's submit results are classified, and the action table."""

from __future__ import annotations

from catalyst_smpp.bus import Msg
from catalyst_smpp.gateway.messages import Address, MtMessage, mt_fields
from catalyst_smpp.gateway.outcomes import ACTIONS, Job, Outcome, Settle, classify
from catalyst_smpp.protocol.constants import CommandStatus
from catalyst_smpp.protocol.pdu import SubmitSm, SubmitSmResp
from catalyst_smpp.transport import ResponseTimeoutError, SessionClosedError

VENDOR_TEMPORARY = 0x401


def job(results: list[object], targets: tuple[str, ...] = ("opA",)) -> Job:
    record = MtMessage(
        message_id="1",
        partner="acme",
        source=Address(5, 0, "Catalyst"),
        dest=Address(1, 1, "447700900123"),
        targets=targets,
        payload=b"hi",
    )
    j = Job(Msg("MT.opA", record.to_bytes(), None, 1, 1, 1, 0, 0.0, ""))
    j.mt = mt_fields(j.msg.data)
    j.results = results
    return j


def resp(status: int) -> SubmitSmResp:
    return SubmitSmResp(command_status=status, message_id="x" if status == 0 else "")


def outcome(results: list[object], targets: tuple[str, ...] = ("opA",)) -> tuple[Outcome, int | None]:
    j = job(results, targets)
    classify(j, (VENDOR_TEMPORARY,))
    return j.outcome, j.status


def test_every_part_accepted_is_ok() -> None:
    assert outcome([resp(0), resp(0)]) == (Outcome.OK, None)


def test_temporary_answers_timeouts_lost_binds_and_unsent_parts_are_temp() -> None:
    assert outcome([resp(0), resp(CommandStatus.ESME_RTHROTTLED)]) == (
        Outcome.TEMP,
        CommandStatus.ESME_RTHROTTLED,
    )
    assert outcome([resp(CommandStatus.ESME_RX_T_APPN)]) == (Outcome.TEMP, CommandStatus.ESME_RX_T_APPN)
    assert outcome([resp(VENDOR_TEMPORARY)]) == (Outcome.TEMP, VENDOR_TEMPORARY)  # the operator's own code
    assert outcome([ResponseTimeoutError(SubmitSm(destination_addr="1"))])[0] is Outcome.TEMP
    assert outcome([resp(0), SessionClosedError(None, "bind lost")])[0] is Outcome.TEMP
    j = job([resp(0), None])  # a part that never went (drain): temporary, with a reason
    classify(j, ())
    assert (j.outcome, j.error) == (Outcome.TEMP, "cancelled")


def test_a_permanent_answer_wins_and_fails_over_when_there_is_a_next_target() -> None:
    bad = CommandStatus.ESME_RINVDSTADR
    assert outcome([resp(CommandStatus.ESME_RTHROTTLED), resp(bad)]) == (Outcome.PERM, bad)
    assert outcome([resp(bad)], ("opA", "opB")) == (Outcome.FAILOVER, bad)
    # a status only another operator calls temporary is permanent here
    j = job([resp(VENDOR_TEMPORARY)])
    classify(j, ())
    assert (j.outcome, j.error) == (Outcome.PERM, "operator answered 0x00000401")


def test_the_action_table_covers_every_outcome() -> None:
    settle = {o: ACTIONS[o].settle for o in Outcome}
    assert settle == {
        Outcome.OK: Settle.ACK,
        Outcome.FAILOVER: Settle.ACK,
        Outcome.TEMP: Settle.NAK,
        Outcome.WAIT: Settle.NAK,
        Outcome.PERM: Settle.TERM,
        Outcome.BUILD: Settle.TERM,
        Outcome.EXPIRED: Settle.TERM,
        Outcome.POISON: Settle.TERM,
    }
    # only accepted messages store mappings; failure receipts carry the state the failed row has
    assert [o for o in Outcome if ACTIONS[o].store_mappings] == [Outcome.OK]
    assert (ACTIONS[Outcome.PERM].final_state, ACTIONS[Outcome.BUILD].final_state) == ("REJECTD", "UNDELIV")
    assert (ACTIONS[Outcome.EXPIRED].final_state, ACTIONS[Outcome.EXPIRED].event) == ("EXPIRED", "failed")
    assert ACTIONS[Outcome.WAIT].down_delay and not ACTIONS[Outcome.TEMP].down_delay
