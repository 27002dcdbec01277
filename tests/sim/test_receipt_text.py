"""The simulator's receipt text and message ids, against the plain formatting they stand for."""

from __future__ import annotations

import datetime as dt

from catalyst_smpp.encoding.receipts import Receipt, format_receipt, parse_receipt, stat_for_state
from catalyst_smpp.protocol.constants import MessageState
from catalyst_smpp.sim.ids import IdForm, IdFormat, IdGenerator
from catalyst_smpp.sim.server import _ReceiptText


def _plain(receipt_id: str, state: MessageState, snippet: str, now: dt.datetime) -> bytes:
    delivered = state is MessageState.DELIVERED
    return format_receipt(
        Receipt(
            message_id=receipt_id,
            state=state,
            stat=stat_for_state(state),
            sub=1,
            dlvrd=1 if delivered else 0,
            submit_date=now,
            done_date=now,
            err="000" if delivered else "001",
            text=snippet,
        )
    )


def test_receipt_text_is_format_receipt() -> None:
    maker = _ReceiptText()
    for state in MessageState:
        for receipt_id in ("1", "00ff", "4294967296", "A" * 64):
            for snippet in ("", "Hello world", "?" * 20, "caf?"):
                before = dt.datetime.now().replace(microsecond=0)
                made = maker.make(receipt_id, state, snippet)
                after = dt.datetime.now().replace(microsecond=0)
                assert made in (_plain(receipt_id, state, snippet, t) for t in (before, after))
                parsed = parse_receipt(made)
                assert (parsed.message_id, parsed.state, parsed.stat) == (
                    receipt_id,
                    state,
                    stat_for_state(state),
                )


def test_id_spellings_match_the_plain_formatting() -> None:
    for form in IdForm:
        for width in (0, 1, 6, 64):
            for upper in (False, True):
                fmt = IdFormat(form, width, upper)
                for n in (0, 9, 10, 255, 65535, 10**30):
                    text = str(n) if form is IdForm.DEC else format(n, "X" if upper else "x")
                    assert fmt.format(n) == (text.zfill(width) if width else text)


def test_generator_ids_pair() -> None:
    same = IdGenerator(IdFormat(IdForm.HEX))
    assert same.ids(255) == ("ff", "ff") == (same.resp_id(255), same.receipt_id(255))
    other = IdGenerator(IdFormat(IdForm.HEX, upper=True), IdFormat(IdForm.DEC, width=6))
    assert other.ids(255) == ("FF", "000255") == (other.resp_id(255), other.receipt_id(255))
