"""Matching responses and receipts to the submits of a load run, and counting them.

I/O-free: the runner tells the tracker what it sent and what came back, with the
time of each event; the tracker fills the :class:`LoadReport`.  Receipts are
matched through :func:`catalyst_smpp.encoding.msgid.id_key`, so an SMSC that spells
the receipt's id differently from the response's (hex vs decimal, zeros, case)
still matches under the right rule; a receipt that arrives before the response of
its message is parked and matched when the response comes.
"""

from __future__ import annotations

import attrs

from catalyst_smpp.encoding.msgid import IdRule, IdSide, id_key
from catalyst_smpp.encoding.receipts import Receipt
from catalyst_smpp.loadgen.report import LoadReport

__all__ = ["Tracker"]


@attrs.define
class Tracker:
    report: LoadReport
    id_rule: IdRule = IdRule.AS_IS
    _awaiting_receipt: dict[str, float] = attrs.field(init=False, factory=dict)
    """id key -> submit time, for accepted submits that asked for a receipt."""
    _early: dict[str, tuple[str, float]] = attrs.field(init=False, factory=dict)
    """id key -> (receipt stat, arrival time) for receipts whose response has not come yet."""
    _matched: set[str] = attrs.field(init=False, factory=set)

    def submitted(self) -> None:
        self.report.submitted += 1

    def response(self, sent_at: float, now: float, status: int, message_id: str, wants_receipt: bool) -> None:
        report = self.report
        report.submit_resp.add(now - sent_at)
        if status != 0:
            report.reject(status)
            return
        report.accepted += 1
        if not wants_receipt:
            return
        key = id_key(message_id, self.id_rule, IdSide.SUBMIT_RESP)
        early = self._early.pop(key, None)
        if early is not None:
            stat, arrived = early
            report.receipts_early += 1
            self._complete(key, stat, sent_at, arrived)
        else:
            self._awaiting_receipt[key] = sent_at

    def unanswered(self, n: int = 1) -> None:
        self.report.unanswered += n

    def receipt(self, receipt: Receipt, now: float) -> None:
        self.receipt_of(receipt.message_id, receipt.stat or receipt.state.name, now)

    def receipt_of(self, message_id: str, stat: str, now: float) -> None:
        """A receipt for ``message_id`` reporting ``stat`` (what :meth:`receipt` counts it under)."""
        key = id_key(message_id, self.id_rule, IdSide.RECEIPT)
        sent_at = self._awaiting_receipt.pop(key, None)
        if sent_at is not None:
            self._complete(key, stat, sent_at, now)
        elif key in self._matched or key in self._early:
            self.report.receipts_duplicate += 1
        else:
            self._early[key] = (stat, now)

    def _complete(self, key: str, stat: str, sent_at: float, arrived: float) -> None:
        self._matched.add(key)
        receipts = self.report.receipts
        receipts[stat] = receipts.get(stat, 0) + 1
        self.report.submit_receipt.add(arrived - sent_at if arrived > sent_at else 0.0)

    @property
    def receipts_outstanding(self) -> int:
        return len(self._awaiting_receipt)

    def finish(self) -> None:
        """At the end of the run: receipts never matched, receipts never received."""
        self.report.receipts_unmatched += len(self._early)
        self._early.clear()
        self.report.receipts_missing += len(self._awaiting_receipt)
        self._awaiting_receipt.clear()
