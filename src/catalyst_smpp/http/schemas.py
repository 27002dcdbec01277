"""The HTTP API's request and response bodies (pydantic: the one declaration of each, and its schema in the
OpenAPI document)."""

from __future__ import annotations

import datetime as dt
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "Balance",
    "BulkItem",
    "BulkMessage",
    "BulkRequest",
    "BulkResponse",
    "CancelResponse",
    "ErrorBody",
    "Health",
    "Invoice",
    "RateCard",
    "RateCardRow",
    "Receipt",
    "Receipts",
    "SendRequest",
    "SendResponse",
    "StatusResponse",
]

_STRICT = ConfigDict(extra="forbid", populate_by_name=True)


class ErrorDetail(BaseModel):
    code: str = Field(examples=["INVALID_DESTINATION"])
    message: str
    details: dict[str, Any] = Field(default_factory=dict)


class ErrorBody(BaseModel):
    """Every error: one form."""

    error: ErrorDetail


class SendRequest(BaseModel):
    model_config = _STRICT

    to: str = Field(
        min_length=1, max_length=32, description="E.164: + and the country code", examples=["+447700900123"]
    )
    from_: str = Field(
        alias="from", min_length=1, max_length=21, description="a number or an alphanumeric sender"
    )
    message: str = Field(
        min_length=1, max_length=10000, description="the text, or hex when message_type is binary"
    )
    message_type: Literal["text", "binary"] = "text"
    encoding: Literal["auto", "gsm7", "ucs2", "latin1"] = "auto"
    delivery_report: bool = False
    validity_period: int | None = Field(
        default=None,
        ge=60,
        le=30 * 86400,
        description="seconds the message may wait for delivery, from its schedule_time when it has one",
    )
    priority: int = Field(default=0, ge=0, le=3)
    tags: list[str] = Field(default_factory=list, max_length=20)
    schedule_time: dt.datetime | None = Field(
        default=None,
        description="ISO 8601 with a time zone: sent then (kept until then; DELETE cancels it), now if past",
    )


class SendResponse(BaseModel):
    status: Literal["accepted", "scheduled"] = "accepted"
    message_id: str
    to: str
    from_: str = Field(alias="from")
    timestamp: dt.datetime
    cost: str | None = Field(description="the price held for it (a decimal string), null: not billed")
    currency: str | None
    parts: int
    tags: list[str] = Field(default_factory=list)
    schedule_time: dt.datetime | None = Field(default=None, description="when a scheduled message is sent")


class CancelResponse(BaseModel):
    message_id: str
    status: Literal["cancelled"]


class BulkMessage(BaseModel):
    model_config = _STRICT

    to: str = Field(min_length=1, max_length=32)
    message: str = Field(min_length=1, max_length=10000)


class BulkRequest(BaseModel):
    model_config = _STRICT

    messages: list[BulkMessage] = Field(min_length=1, max_length=10000)
    from_: str = Field(alias="from", min_length=1, max_length=21)
    delivery_report: bool = False


class BulkItem(BaseModel):
    message_id: str | None
    to: str
    status: Literal["accepted", "rejected"]
    error: ErrorDetail | None = None


class BulkResponse(BaseModel):
    status: Literal["accepted", "partial", "rejected"]
    batch_id: str
    total_messages: int
    accepted: int
    rejected: int
    messages: list[BulkItem]


class StatusResponse(BaseModel):
    message_id: str
    status: Literal["QUEUED", "SCHEDULED", "SENT", "DELIVERED", "FAILED", "EXPIRED", "REJECTED", "CANCELLED"]
    to: str | None
    from_: str | None = Field(alias="from")
    created_at: dt.datetime | None
    delivered_at: dt.datetime | None
    network_operator: str | None
    dlr_timestamp: dt.datetime | None
    cost: str | None
    currency: str | None
    error_code: str | None


class Receipt(BaseModel):
    """A delivery receipt, as the ``dlr`` webhook posts it."""

    event_id: str = Field(description="the same for every copy of this receipt")
    message_id: str
    status: str = Field(examples=["DELIVERED"])
    smpp_state: str = Field(examples=["DELIVRD"])
    error_code: str
    network_error_code: str | None
    to: str
    from_: str = Field(alias="from")
    operator: str | None
    submitted_at: str | None
    done_at: str | None
    parts: int


class Receipts(BaseModel):
    receipts: list[Receipt]


class Balance(BaseModel):
    currency: str
    mode: str
    balance: str
    credit_limit: str
    held: str
    leased: str
    available: str
    low_balance: str | None


class RateCardRow(BaseModel):
    prefix: str
    country: str
    network: str
    mcc_mnc: str | None
    submit_price: str
    delivery_price: str | None
    effective_from: dt.datetime
    effective_until: dt.datetime | None


class RateCard(BaseModel):
    id: str
    currency: str
    charge_on: str
    rows: list[RateCardRow]


class Invoice(BaseModel):
    """The invoice as ``catalyst-smpp invoice --format json`` writes it."""

    model_config = ConfigDict(extra="allow")

    partner: str
    month: str
    currency: str


class Health(BaseModel):
    status: Literal["ok", "draining"]
    node: str
