"""What the gateway keeps in the TTL'd id bucket (``bus.opids``): values it encodes and decodes itself
(the bus stores octets), declared like the stream records (:mod:`catalyst_smpp.gateway.messages`).

* :class:`IdMapping` under ``(operator, normalised operator message id)``: which message of ours an
  operator's id is, written by the connector before it acks the MT message, read by inbound for receipts.
* :class:`PartState` under :func:`part_key` (``PARTS_KEY``, ``"<message_id>-<part>"``): the final state
  of one part of a long message whose parts each asked for a receipt, until every part is final.
  ``=`` never occurs in an operator name, so these keys cannot meet a mapping's.
"""

from __future__ import annotations

import attrs

from catalyst_smpp.gateway.messages import (
    Record,
    RecordCodec,
    i64,
    string,
    u8,
    u16,
)

__all__ = ["ID_MAPPING", "PARTS_KEY", "PART_STATE", "IdMapping", "PartState", "part_key"]

PARTS_KEY = "=parts"


@attrs.frozen(slots=True)
class IdMapping(Record):
    """What an operator message id maps to: our message, its partner, the partner's ``registered_delivery``
    with the connector's part bits (``flags``), which part of how many, and ``display_id`` (the id the
    partner was given: ``message_id`` except for the destinations of a submit_multi after the first)."""

    message_id: str = string()
    partner: str = string()
    flags: int = u8()
    part: int = u16(1)
    parts: int = u16(1)
    display_id: str = string(same_as="message_id")
    # billing: the MT record's, so that a receipt settles the hold (docs/dev/billing.md)
    charge_on: int = u8()
    price: int = i64()
    currency: str = string("")
    cost: int = i64(-1)
    cost_currency: str = string("")
    lease: int = i64()


@attrs.frozen(slots=True)
class PartState(Record):
    """The final state (DELIVRD, UNDELIV, ...) one part of a long message reached."""

    state: str = string()


ID_MAPPING: RecordCodec[IdMapping] = RecordCodec(IdMapping, "I")
PART_STATE: RecordCodec[PartState] = RecordCodec(PartState, "P")


def part_key(message_id: str, part: int) -> tuple[str, str]:
    """The KV key (operator, id) of a part's :class:`PartState`."""
    return (PARTS_KEY, f"{message_id}-{part}")
