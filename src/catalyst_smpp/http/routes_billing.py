"""``/api/v4/billing``: the key's partner's balance, its rate card (its price plan), its monthly invoices."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import APIRouter, Depends

from catalyst_smpp.billing import books, invoices
from catalyst_smpp.billing.money import Money
from catalyst_smpp.http.auth import authenticated, context
from catalyst_smpp.http.context import ApiContext
from catalyst_smpp.http.errors import ApiError
from catalyst_smpp.http.schemas import Balance, Invoice, RateCard
from catalyst_smpp.store.plan_repo import PlanRepo
from catalyst_smpp.store.records import Partner, Plan

__all__ = ["router"]

router = APIRouter(prefix="/api/v4/billing", tags=["billing"])

Ctx = Annotated[ApiContext, Depends(context)]
Auth = Annotated[Partner, Depends(authenticated)]


async def _read(ctx: ApiContext, fn: Any, *args: Any) -> Any:
    try:
        return await ctx.db.run(fn, *args)
    except (books.NoAccount, invoices.UnknownPartner):
        raise ApiError(404, "NOT_FOUND", "no billing account") from None
    except Exception as exc:
        raise ApiError(503, "SERVICE_UNAVAILABLE", "the books cannot be read now; try again") from exc


def _m(m: Money | None) -> str | None:
    return None if m is None else str(m.amount)


@router.get("/balance", response_model=Balance)
async def balance(partner: Auth, ctx: Ctx) -> Any:
    """The account: balance, credit limit (credit mode), what is held and leased, what is available."""
    s: books.AccountState = await _read(ctx, books.account_state, partner.id)
    return {
        "currency": s.currency,
        "mode": s.mode,
        "balance": _m(s.balance),
        "credit_limit": _m(s.credit_limit),
        "held": _m(s.held),
        "leased": _m(s.leased),
        "available": _m(s.available),
        "low_balance": _m(s.low_balance),
    }


def _plan(conn: Any, name: str) -> Plan | None:
    return PlanRepo(conn).get(name)


@router.get("/rate-cards/{rate_card_id}", response_model=RateCard)
async def rate_card(rate_card_id: str, partner: Auth, ctx: Ctx) -> Any:
    """The partner's price plan (its name is the id): the rows in effect now and those to come."""
    missing = ApiError(404, "NOT_FOUND", "no such rate card", {"id": rate_card_id})
    if partner.price_plan is None or rate_card_id != partner.price_plan:
        raise missing
    plan: Plan | None = await _read(ctx, _plan, rate_card_id)
    if plan is None:
        raise missing
    now = dt.datetime.now(dt.UTC)
    rows = [r for r in plan.rows if r.effective_until is None or r.effective_until > now]
    return {
        "id": plan.name,
        "currency": plan.currency,
        "charge_on": partner.charge_on,
        "rows": [
            {
                "prefix": r.prefix,
                "country": r.country,
                "network": r.network,
                "mcc_mnc": r.mcc_mnc,
                "submit_price": _m(r.submit_price),
                "delivery_price": _m(r.delivery_price),
                "effective_from": r.effective_from,
                "effective_until": r.effective_until,
            }
            for r in rows
        ],
    }


@router.get("/invoices/{invoice_id}", response_model=Invoice)
async def invoice(invoice_id: str, partner: Auth, ctx: Ctx) -> Any:
    """The invoice of a month (the id is the month, YYYY-MM, UTC), as ``catalyst-smpp invoice`` makes it."""
    try:
        invoices.month_period(invoice_id)
    except ValueError:
        raise ApiError(
            404, "NOT_FOUND", "no such invoice (the id is a month: YYYY-MM)", {"id": invoice_id}
        ) from None
    inv: invoices.Invoice = await _read(ctx, invoices.invoice, partner.system_id, invoice_id)
    return inv.as_json()
