"""``GET /api/v4/sms/receipts``: the partner's delivery receipts not fetched yet, each returned once
(:func:`~catalyst_smpp.http.receipts.fetch_receipts`).

Only for a partner whose receipts go nowhere else: 409 ``RECEIPTS_ELSEWHERE`` (``pull_refusal``) while it has
an SMPP receiver bound (on this node: binds are not shared between nodes) or an enabled ``dlr`` webhook.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query

from catalyst_smpp.bus import BusError
from catalyst_smpp.http.auth import authenticated, context
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError
from catalyst_smpp.http.receipts import MAX_LIMIT, fetch_receipts, pull_refusal
from catalyst_smpp.http.schemas import Receipts
from catalyst_smpp.store.records import Partner

__all__ = ["router"]

router = APIRouter(prefix="/api/v4/sms", tags=["receipts"])


@router.get("/receipts", response_model=Receipts, response_model_by_alias=True)
async def receipts(
    partner: Annotated[Partner, Depends(authenticated)],
    ctx: Annotated[ApiContext, Depends(context)],
    limit: Annotated[int, Query(ge=1, le=MAX_LIMIT, description="the most receipts returned")] = 100,
) -> Any:
    """Up to ``limit`` receipts not fetched yet, oldest first; a receipt returned is never returned again."""
    sid = partner.system_id
    why = pull_refusal(receiver_bound=ctx.receiver_bound(sid), dlr_webhook=ctx.dlr_webhook(sid))
    if why is not None:
        raise ApiError(409, "RECEIPTS_ELSEWHERE", why)
    if ctx.bus is None:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "receipts cannot be read on this node")
    try:
        items = await fetch_receipts(ctx.bus, partner, limit)
    except BusError as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "receipts cannot be read now; try again") from exc
    return {"receipts": items}
