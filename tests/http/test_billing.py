"""Billing over HTTP: a billed partner's send is priced (cost in the answer and the status), refused 402
once its credit is gone and 400 UNPRICED where its plan has no price; balance, rate card, invoice."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import trio

from catalyst_smpp.billing import books
from catalyst_smpp.billing.money import Money
from catalyst_smpp.store import PartnerRepo
from catalyst_smpp.store.plan_repo import PlanRepo

from .conftest import Api

HEADER = "prefix,country,network,mcc_mnc,submit_price,delivery_price,effective_from,effective_until"
PRICE = Decimal("0.0125")


def _bill(api: Api, topup: Decimal) -> None:
    def setup(conn: Any) -> None:
        plans = PlanRepo(conn)
        plans.add("retail", "price", "EUR")
        plans.import_csv(
            "retail",
            f"{HEADER}\n"
            f"4477,44,Vodafone,,{PRICE},,2020-01-01T00:00:00+00:00,\n"
            f"4478,44,Old,,0.5,,2020-01-01T00:00:00+00:00,2021-01-01T00:00:00+00:00\n",
        )
        PartnerRepo(conn).change("acme", price_plan="retail")
        pid = PartnerRepo(conn).get("acme").id
        books.open_account(conn, pid, "EUR")
        books.topup(conn, pid, Money(topup, "EUR"), "test credit", "test")

    api.env.setup(setup)


async def test_billed_sends_balance_rate_card_invoice(api: Api) -> None:
    _bill(api, PRICE * 2)
    await api.gw.reload()
    ok = {"to": "+447700900200", "from": "Catalyst", "message": "priced"}
    async with api.client() as c:
        r = await c.post("/api/v4/sms/send", json=ok)
        assert r.status_code == 202, r.text
        assert (r.json()["cost"], r.json()["currency"]) == ("0.0125", "EUR")
        assert (await c.post("/api/v4/sms/send", json=ok)).status_code == 202
        # the balance covered two: refused now (after the node's lease ran out) with 402
        with trio.fail_after(20):
            while True:
                r = await c.post("/api/v4/sms/send", json=ok)
                if r.status_code != 202:
                    break
                await trio.sleep(0.2)
        assert r.status_code == 402 and r.json()["error"]["code"] == "INSUFFICIENT_CREDIT", r.text
        r = await c.post("/api/v4/sms/send", json={**ok, "to": "+447900900200"})  # 4479: no price
        assert r.status_code == 400 and r.json()["error"]["code"] == "UNPRICED", r.text

        r = await c.get("/api/v4/billing/balance")
        assert r.status_code == 200 and r.json()["currency"] == "EUR", r.text
        b = {
            k: Decimal(v) if k not in ("currency", "mode") and v is not None else v
            for k, v in r.json().items()
        }
        assert b["balance"] <= PRICE * 2 and b["mode"] == "prepaid" and b["low_balance"] is None
        assert b["available"] == b["balance"] - b["held"] - b["leased"] < PRICE  # two messages took it all

        r = await c.get("/api/v4/billing/rate-cards/retail")
        assert r.status_code == 200, r.text
        card = r.json()
        assert card["id"] == "retail" and card["charge_on"] == "submit"
        assert [row["prefix"] for row in card["rows"]] == ["4477"]  # the expired row is not shown
        assert Decimal(card["rows"][0]["submit_price"]) == PRICE
        assert (await c.get("/api/v4/billing/rate-cards/wholesale")).status_code == 404

        month = dt.datetime.now(dt.UTC).strftime("%Y-%m")
        r = await c.get(f"/api/v4/billing/invoices/{month}")
        assert r.status_code == 200 and r.json()["month"] == month and r.json()["currency"] == "EUR", r.text
        assert (await c.get("/api/v4/billing/invoices/2026-13")).status_code == 404


async def test_unbilled_partner_has_no_account(api: Api) -> None:
    async with api.client() as c:
        r = await c.get("/api/v4/billing/balance")
        assert r.status_code == 404 and r.json()["error"]["code"] == "NOT_FOUND"
        assert (await c.get("/api/v4/billing/rate-cards/retail")).status_code == 404
        r = await c.get("/api/v4/billing/balance", headers={"X-API-Key": "nope"})
        assert r.status_code == 401
