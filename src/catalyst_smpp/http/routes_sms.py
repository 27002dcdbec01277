"""``/api/v4/sms``: send, bulk, status, cancel.

Sends go through :meth:`AcceptHandler.submit_api`: the same checks, price and hold, route, id and publish
as an SMPP submit, answered once the record is in JetStream and its event row stored.  The partner's SMPP
token bucket is taken from first (one token per message): HTTP and SMPP together keep its throttle.  The
message ids are our ids in the partner's ``message_id_format``, as its SMPP binds are given them, so the
status endpoint finds SMPP messages too.

Sends take an ``Idempotency-Key`` (:mod:`.idempotent`).  A send with a ``schedule_time`` to come is a submit
with that schedule_delivery_time (SMPP's absolute form, UTC): accept stores it for the
:class:`~catalyst_smpp.gateway.schedule.Scheduler` as it does an SMPP partner's; its ``validity_period`` is
then counted from the schedule time (an absolute validity), not from the request.  ``DELETE`` cancels a
message still waiting (``Scheduler.cancel``, as cancel_sm does).
"""

from __future__ import annotations

import datetime as dt
import time
import uuid
from decimal import Decimal
from typing import Annotated, Any, Final

import attrs
import psycopg
import trio
from fastapi import APIRouter, Depends, Header
from fastapi.responses import JSONResponse

from catalyst_smpp.gateway.accept import ApiResult
from catalyst_smpp.gateway.ids import format_id, id_time, parse_id
from catalyst_smpp.gateway.schedule import smpp_utc
from catalyst_smpp.http.auth import authenticated, context
from catalyst_smpp.http.compose import ComposeError, compose, source_address
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError, error_body
from catalyst_smpp.http.idempotent import answer_once
from catalyst_smpp.http.schemas import (
    BulkRequest,
    BulkResponse,
    CancelResponse,
    SendRequest,
    SendResponse,
    StatusResponse,
)
from catalyst_smpp.protocol.constants import CommandStatus, status_name
from catalyst_smpp.protocol.pdu import SubmitSm
from catalyst_smpp.store.records import Partner

__all__ = ["api_error_for", "router", "send_answer"]

router = APIRouter(prefix="/api/v4/sms", tags=["sms"])

_RINVDSTADR: Final = int(CommandStatus.ESME_RINVDSTADR)
_UNAVAILABLE: Final = frozenset({int(CommandStatus.ESME_RMSGQFUL), int(CommandStatus.ESME_RSYSERR)})
_PENDING_WINDOW: Final = 300.0  # an id this young with no log row yet is QUEUED (the log is written late)
_LATEST: Final = dt.datetime(2100, 1, 1, tzinfo=dt.UTC)  # SMPP's two-digit years read 2000-2099


def api_error_for(r: ApiResult) -> ApiError:
    """The HTTP error of a refused submit (its SMPP status and the kind of refusal)."""
    name = status_name(r.status)
    if r.label in ("insufficient_credit", "currency"):
        return ApiError(
            402, "INSUFFICIENT_CREDIT", "not enough credit for this message", {"smpp_status": name}
        )
    if r.label == "no_route":
        return ApiError(400, "NO_ROUTE", "no route to this destination", {"smpp_status": name})
    if r.label == "unpriced":
        return ApiError(
            400, "UNPRICED", "the destination has no price in your rate card", {"smpp_status": name}
        )
    if r.status in _UNAVAILABLE:
        return ApiError(
            503, "SERVICE_UNAVAILABLE", "the message could not be stored; try again", {"smpp_status": name}
        )
    if r.status == int(CommandStatus.ESME_RTHROTTLED):
        return ApiError(429, "RATE_LIMITED", "over the partner's message rate", {"smpp_status": name})
    return ApiError(400, "REJECTED", "the message was refused", {"smpp_status": name})


def _price(micros: int) -> str:
    return str((Decimal(micros) / 1_000_000).normalize()) if micros else "0"


def _throttle(ctx: ApiContext, partner: Partner, n: int) -> None:
    """Take ``n`` tokens of the partner's SMPP bucket, or refuse with 429 (nothing taken)."""
    bucket = ctx.throttle(partner)
    if bucket is None:
        return
    now = trio.current_time()
    if n > bucket.burst:
        raise ApiError(
            429,
            "RATE_LIMITED",
            f"more messages at once than the partner's burst ({bucket.burst:g})",
            {"retry_after": None},
            {"Retry-After": "60"},
        )
    if not bucket.try_take(now, n):
        wait = max(1, int(bucket.wait_time(now, n) + 0.999))
        raise ApiError(
            429,
            "RATE_LIMITED",
            "over the partner's message rate",
            {"retry_after": wait},
            {"Retry-After": str(wait)},
        )


Ctx = Annotated[ApiContext, Depends(context)]
Auth = Annotated[Partner, Depends(authenticated)]
IdemKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        min_length=1,
        max_length=255,
        description="the same key (24 h, per partner) and body again: the first answer, not a second send",
    ),
]


def _schedule(body: SendRequest, ctx: ApiContext) -> float | None:
    """The instant a send is scheduled for (unix seconds), None: now (no schedule_time, or a past one)."""
    at = body.schedule_time
    if at is None:
        return None
    if at.tzinfo is None:
        raise ApiError(400, "INVALID_REQUEST", "schedule_time needs a time zone", {"field": "schedule_time"})
    if at >= _LATEST:
        raise ApiError(
            400, "INVALID_REQUEST", "schedule_time must be before the year 2100", {"field": "schedule_time"}
        )
    if at <= dt.datetime.now(dt.UTC):
        return None
    if ctx.scheduler is None:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "scheduled sends are not available on this node")
    return at.timestamp()


_REPLAYABLE: Final[dict[int | str, dict[str, Any]]] = {
    202: {
        "headers": {
            "Idempotent-Replayed": {
                "description": "true: the stored answer of the first request with this Idempotency-Key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
    }
}


@router.post(
    "/send", status_code=202, response_model=SendResponse, response_model_by_alias=True, responses=_REPLAYABLE
)
async def send(body: SendRequest, partner: Auth, ctx: Ctx, idempotency_key: IdemKey = None) -> JSONResponse:
    """Send one message.  202 once it is stored (published, or kept for its ``schedule_time``)."""
    return await answer_once(
        ctx, partner, idempotency_key, "/send", body, lambda: send_answer(body, partner, ctx)
    )


async def send_answer(body: SendRequest, partner: Partner, ctx: ApiContext) -> tuple[int, Any]:
    """The status and JSON body of a send's answer (202), or the :class:`ApiError` it is refused with."""
    due = _schedule(body, ctx)
    try:
        pdu, parts = compose(
            body.to,
            body.from_,
            body.message,
            message_type=body.message_type,
            encoding=body.encoding,
            delivery_report=body.delivery_report,
            validity_period=body.validity_period,
            priority=body.priority,
        )
    except ComposeError as e:
        raise ApiError(400, e.code, str(e), dict(e.details)) from None
    if due is not None:
        # as an SMPP partner's scheduled submit: absolute times, the validity counted from the schedule
        until = smpp_utc(due + body.validity_period) if body.validity_period else ""
        pdu = attrs.evolve(pdu, schedule_delivery_time=smpp_utc(due), validity_period=until)
    _throttle(ctx, partner, 1)
    (r,) = await ctx.accept.submit_api(partner, [pdu])
    if r.status != 0 or r.message_id is None:
        raise api_error_for(r)
    answer = {
        "status": "scheduled" if r.scheduled_at is not None else "accepted",
        "message_id": format_id(r.message_id, partner.message_id_format),
        "to": body.to,
        "from": body.from_,
        "timestamp": dt.datetime.fromtimestamp(id_time(r.message_id), dt.UTC),
        "cost": _price(r.price) if r.currency else None,
        "currency": r.currency or None,
        "parts": parts,
        "tags": body.tags,
        "schedule_time": _utc(r.scheduled_at),
    }
    return 202, SendResponse.model_validate(answer).model_dump(mode="json", by_alias=True)


def _utc(at: float | None) -> dt.datetime | None:
    return None if at is None else dt.datetime.fromtimestamp(at, dt.UTC)


@router.post("/bulk", status_code=202, response_model=BulkResponse, responses=_REPLAYABLE)
async def bulk(body: BulkRequest, partner: Auth, ctx: Ctx, idempotency_key: IdemKey = None) -> JSONResponse:
    """Send up to 10,000 messages: each is accepted or refused on its own (``messages`` in request order)."""
    return await answer_once(ctx, partner, idempotency_key, "/bulk", body, lambda: _bulk(body, partner, ctx))


async def _bulk(body: BulkRequest, partner: Partner, ctx: ApiContext) -> tuple[int, Any]:
    try:
        source_address(body.from_)  # the one sender of every message: refused once, for the whole request
    except ComposeError as e:
        raise ApiError(400, e.code, str(e), dict(e.details)) from None
    items: list[dict[str, Any]] = []
    pdus: list[SubmitSm] = []
    slots: list[int] = []
    for i, m in enumerate(body.messages):
        try:
            pdu, _parts = compose(m.to, body.from_, m.message, delivery_report=body.delivery_report)
        except ComposeError as e:
            items.append(_refused(m.to, e.code, str(e), dict(e.details)))
            continue
        items.append({})
        pdus.append(pdu)
        slots.append(i)
    _throttle(ctx, partner, len(pdus))
    results = await ctx.accept.submit_api(partner, pdus) if pdus else []
    fmt = partner.message_id_format
    for i, r in zip(slots, results, strict=True):
        to = body.messages[i].to
        if r.status == 0 and r.message_id is not None:
            items[i] = {
                "message_id": format_id(r.message_id, fmt),
                "to": to,
                "status": "accepted",
                "error": None,
            }
        else:
            err = api_error_for(r)
            items[i] = _refused(to, err.code, err.message, err.details)
    accepted = sum(1 for it in items if it["status"] == "accepted")
    total = len(items)
    answer = {
        "status": "accepted" if accepted == total else "rejected" if accepted == 0 else "partial",
        "batch_id": uuid.uuid4().hex,
        "total_messages": total,
        "accepted": accepted,
        "rejected": total - accepted,
        "messages": items,
    }
    # built as BulkResponse dumps it (its fields in order, JSON types): validating 10,000 items into the
    # model and dumping them again cost ~75 ms of a bulk (tests/http/test_bulk.py checks the two agree)
    return 202, answer


def _refused(to: str, code: str, message: str, details: dict[str, Any]) -> dict[str, Any]:
    return {
        "message_id": None,
        "to": to,
        "status": "rejected",
        "error": error_body(code, message, details)["error"],
    }


# ------------------------------------------------------------------ status

_LOG: Final = (
    "SELECT message_id, event, event_at, partner, operator, source_addr, dest_addr, final_state, error,"
    " price, currency FROM message_log WHERE message_id = %(id)s OR display_id = %(id)s ORDER BY event_at"
)
_SCHEDULED: Final = (
    "SELECT partner, state FROM scheduled_messages WHERE message_id = %(id)s OR display_id = %(id)s LIMIT 1"
)
_FINAL: Final = {"DELIVRD": "DELIVERED", "EXPIRED": "EXPIRED", "REJECTD": "REJECTED"}

Scheduled = tuple[str, str] | None
"""A message's row in scheduled_messages: its partner and state (None: never scheduled, or purged)."""


def _read_log(conn: Any, message_id: str) -> tuple[list[tuple[Any, ...]], Scheduled]:
    rows = list(conn.execute(_LOG, {"id": message_id}).fetchall())
    sched = conn.execute(_SCHEDULED, {"id": message_id}).fetchone()
    return rows, (sched[0], sched[1]) if sched is not None else None


def _status(rows: list[tuple[Any, ...]], sched: Scheduled) -> tuple[str, tuple[Any, ...] | None]:
    """The API status of a message from its rows and its scheduled row, and the final row (delivered, failed,
    cancelled) if any."""
    by_event = {r[1]: r for r in rows}
    final = by_event.get("delivered") or by_event.get("failed")
    if final is not None:
        state = final[7] or ""
        return _FINAL.get(state, "FAILED"), final
    if "cancelled" in by_event:
        return "CANCELLED", by_event["cancelled"]
    if "submitted" in by_event:
        return "SENT", None
    if sched is not None and sched[1] in ("waiting", "cancelled"):
        return ("SCHEDULED" if sched[1] == "waiting" else "CANCELLED"), None
    return "QUEUED", None


async def _lookup(ctx: ApiContext, message_id: str, partner: Partner) -> tuple[int, list[Any], Scheduled]:
    """Our id of the partner's ``message_id``, its log rows and its scheduled row; 404 when it is not a
    message of this partner (as far as the log and the scheduled messages tell: none may be written yet)."""
    missing = ApiError(404, "NOT_FOUND", "no such message", {"message_id": message_id})
    try:
        our_id = parse_id(message_id, partner.message_id_format)
    except ValueError:
        raise missing from None
    try:
        rows, sched = await ctx.db.run(_read_log, str(our_id))
    except Exception as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "the message log cannot be read now; try again") from exc
    if any(r[3] != partner.system_id for r in rows) or (sched is not None and sched[0] != partner.system_id):
        raise missing
    return our_id, rows, sched


@router.get("/{message_id}/status", response_model=StatusResponse, response_model_by_alias=True)
async def status(message_id: str, partner: Auth, ctx: Ctx) -> Any:
    """A message's state from the message log (and the scheduled messages): this partner's messages only
    (sent over HTTP or SMPP)."""
    our_id, rows, sched = await _lookup(ctx, message_id, partner)
    made = dt.datetime.fromtimestamp(id_time(our_id), dt.UTC)
    if not rows and sched is None:
        if -60.0 <= time.time() - id_time(our_id) <= _PENDING_WINDOW:
            # not logged yet (the log is written in batches); as query_sm, says nothing of whose it is
            return _answer(message_id, "QUEUED", made, None, None, [])
        raise ApiError(404, "NOT_FOUND", "no such message", {"message_id": message_id})
    state, final = _status(rows, sched)
    return _answer(message_id, state, made, final, rows[0] if rows else None, rows)


@router.delete("/{message_id}", response_model=CancelResponse)
async def cancel(message_id: str, partner: Auth, ctx: Ctx) -> Any:
    """Cancel a scheduled message still waiting for its ``schedule_time`` (its held price is released).
    409 ``NOT_CANCELLABLE`` for a message of this partner no longer waiting (sent, expired, cancelled) or
    never scheduled."""
    try:
        our_id = parse_id(message_id, partner.message_id_format)
    except ValueError:
        raise ApiError(404, "NOT_FOUND", "no such message", {"message_id": message_id}) from None
    if ctx.scheduler is None:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "scheduled sends are not available on this node")
    try:
        done = await ctx.scheduler.cancel(partner.system_id, str(our_id))
    except (psycopg.Error, OSError) as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "the message cannot be cancelled now; try again") from exc
    if done:
        return {"message_id": message_id, "status": "cancelled"}
    _id, rows, sched = await _lookup(ctx, message_id, partner)
    if not rows and sched is None:
        raise ApiError(404, "NOT_FOUND", "no such message", {"message_id": message_id})
    state, _final = _status(rows, sched)
    raise ApiError(
        409,
        "NOT_CANCELLABLE",
        "only a scheduled message still waiting can be cancelled",
        {"message_id": message_id, "status": state},
    )


def _answer(
    message_id: str,
    state: str,
    made: dt.datetime,
    final: tuple[Any, ...] | None,
    first: tuple[Any, ...] | None,
    rows: list[tuple[Any, ...]],
) -> dict[str, Any]:
    operator = next((r[4] for r in reversed(rows) if r[4]), None)
    priced = next((r for r in rows if r[10]), None)
    return {
        "message_id": message_id,
        "status": state,
        "to": ("+" + first[6] if first[6] and first[6].isdigit() else first[6]) if first else None,
        "from": first[5] if first else None,
        "created_at": first[2] if first else made,
        "delivered_at": final[2] if final is not None and state == "DELIVERED" else None,
        "network_operator": operator,
        "dlr_timestamp": final[2] if final is not None and final[1] == "delivered" else None,
        "cost": _price(priced[9] or 0) if priced is not None else None,
        "currency": priced[10] if priced is not None else None,
        "error_code": (final[8] or None) if final is not None and state != "DELIVERED" else None,
    }
