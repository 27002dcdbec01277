"""A receipt never overtakes the submit response that gave the partner its message id.

The accept batcher answers a submit only after the publish of its whole batch is acknowledged; meanwhile the
message is already in ``MT.<operator>``, and with a fast operator its receipt can be mapped, published to
``DLR.<partner>`` and fetched by partner delivery before the batch is answered.  Many partners drop a receipt
for an id they have not been given yet.  Two parts keep the order:

* :class:`Unanswered` (one per process, owned by the :class:`~catalyst_smpp.gateway.accept.AcceptHandler`):
  the ids of the messages whose publish is in flight or whose response has not been handed to the partner's
  session yet.  An id is added before its record is published and removed once the response is queued on the
  session (in its send buffer, which the session's writer sends in order) -- or the request got another
  answer, or the session was gone.
* :class:`ReceiptOrder` (used by :class:`~catalyst_smpp.gateway.delivery.PartnerDelivery`) decides, per
  receipt, how long to hold it before its deliver_sm is sent:

  - a message accepted by this process (the node number in our id is this process's): until its id is no
    longer :class:`Unanswered` -- exact: the response is queued before the receipt, so on the same
    connection it is written first, and on another connection of the same process it was queued earlier;
  - a message accepted by another process (``--workers N`` or another node: the partner is bound to several
    of them and the receipt is fetched here): that process's state cannot be seen, so the receipt is held
    until ``foreign_hold`` seconds after the id was made (ids carry their creation time), at most
    ``foreign_hold`` from now (clock skew).  A receipt older than that goes at once -- every receipt of a
    real operator.  Best effort: a process that takes longer than ``foreign_hold`` to answer a published
    message can still be overtaken.

A wait for an unanswered id of this process ends after ``max_hold`` seconds with a warning (an answer that
never comes must not stop the partner's receipts).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable
from typing import Final

import trio

from catalyst_smpp.gateway.ids import id_node, id_time

__all__ = ["ReceiptOrder", "Unanswered"]

log = logging.getLogger(__name__)

#: default hold of a receipt whose message another process accepted (seconds after the id was made)
FOREIGN_HOLD: Final = 1.0
#: default longest wait for a response of this process
MAX_HOLD: Final = 10.0


class Unanswered:
    """Our message ids (canonical decimal) published or being published and not yet answered here."""

    def __init__(self) -> None:
        self._ids: set[str] = set()
        self._lot = trio.lowlevel.ParkingLot()

    def __contains__(self, message_id: object) -> bool:
        return message_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def add(self, ids: Iterable[str]) -> None:
        """Before publishing: these ids' responses are still to come."""
        self._ids.update(ids)

    def answered(self, ids: Iterable[str]) -> None:
        """Their responses are queued on the partner's session (or they were answered otherwise)."""
        self._ids.difference_update(ids)
        if self._lot:  # unpark of an empty lot is not free
            self._lot.unpark_all()

    async def wait(self, message_id: str) -> None:
        """Until ``message_id`` has been answered (cancel to give up)."""
        while message_id in self._ids:
            await self._lot.park()


class ReceiptOrder:
    """How long partner delivery holds a receipt so that it follows its submit response (see the module)."""

    def __init__(
        self,
        unanswered: Unanswered,
        node_number: int,
        *,
        foreign_hold: float = FOREIGN_HOLD,
        max_hold: float = MAX_HOLD,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.unanswered = unanswered
        self.node_number = node_number
        self.foreign_hold = foreign_hold
        self.max_hold = max_hold
        self.clock = clock
        self.held = 0
        """Receipts that had to wait (either kind)."""

    def delay(self, message_id: str) -> float | None:
        """None: send now; else hold: ``0.0`` until this process answers, > 0: that many seconds."""
        if message_id in self.unanswered:
            return 0.0
        if not self.foreign_hold or not message_id.isdigit():
            return None
        try:
            value = int(message_id)
            if id_node(value) == self.node_number:
                return None  # ours, answered already
            wait = id_time(value) + self.foreign_hold - self.clock()
        except (ValueError, OverflowError):
            return None
        if wait <= 0:
            return None
        return min(wait, self.foreign_hold)

    async def hold(self, message_id: str, delay: float) -> None:
        """Wait as :meth:`delay` said (call it only when that was not None)."""
        self.held += 1
        if delay > 0:
            await trio.sleep(delay)
            return
        with trio.move_on_after(self.max_hold) as scope:
            await self.unanswered.wait(message_id)
        if scope.cancelled_caught:
            log.warning(
                "receipt of message %s held %.0fs for its submit response, still not sent; sending it",
                message_id,
                self.max_hold,
            )
