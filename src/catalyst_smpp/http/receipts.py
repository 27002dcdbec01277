"""Receipts pulled over HTTP: the partner's receipts not fetched yet, each returned once.

For a partner with **neither** an SMPP receiver (receiver or transceiver bind) **nor** an enabled ``dlr``
webhook: those take the receipts from the same durable consumer (``DLR_<partner>``), so a pull beside them
would get an arbitrary share.  The HTTP route checks the rule (:func:`pull_refusal`) and answers 409 when it
does not hold; :func:`fetch_receipts` itself only reads.

A receipt is acked in JetStream before :func:`fetch_receipts` returns it ("fetched"): the next call never
returns it again.  If the HTTP answer carrying it is lost, so is the receipt for the partner (the price of
a pull without a second acknowledgement step); receipts the call could not ack are not returned and come
back to the next call after the stream's ``ack_wait``.  Items are the webhook's
(:func:`catalyst_smpp.http.webhooks.receipt_item`).
"""

from __future__ import annotations

import logging
from typing import Any, Final

from catalyst_smpp.bus import BusError, Kind, MessageBus, Msg
from catalyst_smpp.gateway.messages import DecodeError
from catalyst_smpp.http.webhooks import receipt_item
from catalyst_smpp.store.records import Partner

__all__ = ["MAX_LIMIT", "fetch_receipts", "pull_refusal"]

log = logging.getLogger(__name__)

MAX_LIMIT: Final = 1000
"""The most receipts one call returns."""


def pull_refusal(*, receiver_bound: bool, dlr_webhook: bool) -> str | None:
    """Why a partner may not pull receipts now (None: it may)."""
    if dlr_webhook:
        return "the partner's receipts go to its webhook"
    if receiver_bound:
        return "the partner has an SMPP receiver bound: its receipts go there"
    return None


async def fetch_receipts(
    bus: MessageBus, partner: Partner, limit: int, *, timeout: float = 0.2
) -> list[dict[str, Any]]:
    """Up to ``limit`` (1..:data:`MAX_LIMIT`) receipts of ``partner`` not fetched yet, oldest first, each
    acked before it is returned; waits at most ``timeout`` seconds when none is waiting.  Raises
    :class:`BusError` when the bus cannot be read or the batch cannot be acked (nothing returned then)."""
    if not 1 <= limit <= MAX_LIMIT:
        raise ValueError(f"limit must be 1 to {MAX_LIMIT}")
    consumer = await bus.consumer(Kind.DLR, partner.system_id)
    msgs = await consumer.fetch(limit, timeout)
    items: list[dict[str, Any]] = []
    good: list[Msg] = []
    poison: list[Msg] = []
    for m in msgs:
        try:
            items.append(receipt_item(m.data, partner))
            good.append(m)
        except (DecodeError, ValueError) as e:
            log.error(
                "[%s] receipt seq %d is not a record (%s); terminated", partner.system_id, m.stream_seq, e
            )
            poison.append(m)
    if poison:
        try:
            await consumer.term(poison)
        except BusError as e:
            log.warning("[%s] term failed: %s", partner.system_id, e)
    if good:
        try:
            await consumer.ack(good)
        except BusError:
            # not acked: they come back after ack_wait (to this call or the next); returning them now
            # could show them twice
            await _nak_quietly(consumer, good)
            raise
    return items


async def _nak_quietly(consumer: Any, msgs: list[Msg]) -> None:
    try:
        await consumer.nak(msgs)
    except BusError:
        pass
