"""Monthly invoices and usage reports, rebuilt from the ledger, the credit entries and the message log only.

* :func:`invoice` -- a partner's invoice for one calendar month (UTC).  A message belongs to the month of its
  **capture** (``credit_entries.at`` of kind ``capture``, the instant of the log row that settled it; the
  ledger ``charge`` carries the same instant).  Line items are the period's captures joined to the message-log
  row that captured them (its ``price``, ``parts``, ``operator`` and ``dest_addr``), grouped by country
  calling code, operator and unit price per part.  The invoice then checks, and lists as discrepancies rather
  than hides: line items = the ledger's charges = the captures, each capture has its log row, and
  opening + top-ups + adjustments - charges = closing.
* :func:`usage` -- per UTC day, country and operator: messages accepted, refused, submitted, delivered,
  failed, parts, amounts charged and released, cost, margin.

The country of a destination is its ITU calling code: the one of its first 1-3 digits that is a code (the
codes are prefix-free), from the ``phonenumbers`` table of calling codes.  Not the partner's price plan: a
plan can be reassigned or re-imported, and an invoice must come out the same whenever it is rebuilt.

Functions over one synchronous psycopg connection; each reads in one REPEATABLE READ transaction (when the
caller has none open), so every figure comes from the same snapshot.

One module (over 600 lines): the invoice and the usage report read the same snapshot with the same joins of
captures to log rows, and their forms (JSON, CSV, text) are those of these two reports only.
"""

from __future__ import annotations

import contextlib
import csv
import datetime as dt
import io
import re
from collections.abc import Iterable, Iterator
from decimal import Decimal
from typing import Any

import attrs
import phonenumbers
import psycopg

from .books import NoAccount
from .money import PLACES

__all__ = [
    "CSV_COLUMNS",
    "Invoice",
    "LedgerItem",
    "LineItem",
    "UnknownPartner",
    "UsageRow",
    "calling_code",
    "invoice",
    "month_period",
    "usage",
    "usage_totals",
]

Conn = psycopg.Connection[Any]
_SCALE = Decimal(10**PLACES)
_Q = Decimal(1).scaleb(-PLACES)  # an amount's places
_MONTH = re.compile(r"(\d{4})-(\d{2})")


class UnknownPartner(LookupError):
    """No partner with that system_id."""


# --------------------------------------------------------------------------- countries

_CODES: frozenset[str] = frozenset(str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE)
_BY_LENGTH = tuple(sorted(c for c in _CODES if len(c) == n) for n in (1, 2, 3))


def calling_code(dest: str) -> str:
    """The ITU country calling code a destination (E.164 digits, a leading ``+`` allowed) starts with; ""
    when none does (a national or alphanumeric address)."""
    digits = re.sub(r"\D", "", dest)
    for n in (1, 2, 3):
        if digits[:n] in _CODES:
            return digits[:n]
    return ""


def _region(code: str) -> str:
    """The main region of a calling code (``44`` → ``GB``, ``1`` → ``US``, ``800`` → ``001``); "" if none."""
    if not code:
        return ""
    region: str = phonenumbers.region_code_for_country_code(int(code))
    return "" if region == phonenumbers.UNKNOWN_REGION else region


# the same rule in SQL (for grouping millions of rows without sending them over): the codes are prefix-free,
# so at most one of the three tests matches
_COUNTRY_SQL = """CASE
    WHEN left(regexp_replace({col}, '\\D', '', 'g'), 1) = ANY(%(cc1)s) THEN left(regexp_replace({col}, '\\D', '', 'g'), 1)
    WHEN left(regexp_replace({col}, '\\D', '', 'g'), 2) = ANY(%(cc2)s) THEN left(regexp_replace({col}, '\\D', '', 'g'), 2)
    WHEN left(regexp_replace({col}, '\\D', '', 'g'), 3) = ANY(%(cc3)s) THEN left(regexp_replace({col}, '\\D', '', 'g'), 3)
    ELSE '' END"""  # noqa: E501


def _code_args() -> dict[str, Any]:
    return {"cc1": list(_BY_LENGTH[0]), "cc2": list(_BY_LENGTH[1]), "cc3": list(_BY_LENGTH[2])}


# --------------------------------------------------------------------------- records


def _dec(micros: int | Decimal) -> Decimal:
    """Micro-units as an exact amount with :data:`PLACES` places."""
    return (Decimal(micros) / _SCALE).quantize(_Q)


def _s(d: Decimal) -> str:
    """An amount as text with at least :data:`PLACES` places (more only for a unit price that has them)."""
    exp = d.as_tuple().exponent
    return f"{d.quantize(_Q) if isinstance(exp, int) and exp > -PLACES else d:f}"


@attrs.frozen
class LineItem:
    """Captured messages of one country calling code, operator and unit price per part."""

    country: str
    operator: str
    unit_price: Decimal
    messages: int
    parts: int
    amount: Decimal

    def as_json(self) -> dict[str, Any]:
        return {
            "country": self.country,
            "region": _region(self.country),
            "operator": self.operator,
            "unit_price": _s(self.unit_price),
            "messages": self.messages,
            "parts": self.parts,
            "amount": _s(self.amount),
        }


@attrs.frozen
class LedgerItem:
    """A top-up or adjustment of the period, as the ledger has it."""

    id: int
    at: dt.datetime
    kind: str
    amount: Decimal
    reason: str
    actor: str

    def as_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "at": self.at.astimezone(dt.UTC).isoformat(),
            "kind": self.kind,
            "amount": _s(self.amount),
            "reason": self.reason,
            "actor": self.actor,
        }


CSV_COLUMNS = (
    "row",
    "country",
    "region",
    "operator",
    "unit_price",
    "messages",
    "parts",
    "amount",
    "currency",
    "detail",
)
"""The CSV form's header: ``row`` is ``line`` (a line item), ``topup`` / ``adjustment`` (a ledger entry of the
period: its amount, and ``detail`` = its id, time, actor and reason) or a total (``charges``,
``opening``, ``topups``, ``adjustments``, ``closing``; only ``amount`` and ``currency`` set, ``messages`` and
``parts`` on ``charges``)."""


@attrs.frozen
class Invoice:
    """A partner's invoice for one month.  Amounts are exact Decimals in ``currency``.

    ``opening`` / ``closing``: the balance at ``period_start`` / ``period_end`` (what the ledger's
    ``balance_after`` says once entries recorded out of time order around the instant are accounted for);
    ``charges``: the sum of the period's ledger ``charge`` entries (positive: what was charged);
    ``discrepancies``: every check that failed (empty when the invoice reconciles)."""

    partner: str
    month: str
    period_start: dt.datetime
    period_end: dt.datetime
    currency: str
    opening: Decimal
    lines: tuple[LineItem, ...]
    charges: Decimal
    charged_messages: int
    topups: tuple[LedgerItem, ...]
    adjustments: tuple[LedgerItem, ...]
    closing: Decimal
    discrepancies: tuple[str, ...]

    @property
    def lines_total(self) -> Decimal:
        return sum((li.amount for li in self.lines), Decimal(0))

    @property
    def topups_total(self) -> Decimal:
        return sum((t.amount for t in self.topups), Decimal(0))

    @property
    def adjustments_total(self) -> Decimal:
        return sum((a.amount for a in self.adjustments), Decimal(0))

    @property
    def ok(self) -> bool:
        return not self.discrepancies

    def as_json(self) -> dict[str, Any]:
        """The invoice as JSON-ready data (amounts as decimal strings, times ISO 8601 UTC)."""
        return {
            "partner": self.partner,
            "month": self.month,
            "period": {
                "start": self.period_start.isoformat(),
                "end": self.period_end.isoformat(),
                "captured_at": "credit_entries.at of each message's capture",
            },
            "currency": self.currency,
            "opening_balance": _s(self.opening),
            "lines": [li.as_json() for li in self.lines],
            "lines_total": _s(self.lines_total),
            "charges": _s(self.charges),
            "charged_messages": self.charged_messages,
            "topups": [t.as_json() for t in self.topups],
            "topups_total": _s(self.topups_total),
            "adjustments": [a.as_json() for a in self.adjustments],
            "adjustments_total": _s(self.adjustments_total),
            "closing_balance": _s(self.closing),
            "reconciles": self.ok,
            "discrepancies": list(self.discrepancies),
        }

    def as_csv(self) -> str:
        """One row per line item, then the period's top-ups and adjustments, then the totals
        (:data:`CSV_COLUMNS`)."""
        out = io.StringIO()
        w = csv.writer(out, lineterminator="\n")
        w.writerow(CSV_COLUMNS)
        cur = self.currency
        for li in self.lines:
            w.writerow(
                [
                    "line",
                    li.country,
                    _region(li.country),
                    li.operator,
                    _s(li.unit_price),
                    li.messages,
                    li.parts,
                    _s(li.amount),
                    cur,
                    "",
                ]
            )
        for e in (*self.topups, *self.adjustments):
            detail = f"#{e.id} {e.at.astimezone(dt.UTC).isoformat()} {e.actor}: {e.reason}"
            w.writerow([e.kind, "", "", "", "", "", "", _s(e.amount), cur, detail])
        parts = sum(li.parts for li in self.lines)
        totals: list[tuple[str, Decimal, Any, Any]] = [
            ("charges", self.charges, self.charged_messages, parts),
            ("opening", self.opening, "", ""),
            ("topups", self.topups_total, "", ""),
            ("adjustments", self.adjustments_total, "", ""),
            ("closing", self.closing, "", ""),
        ]
        for name, amount, messages, n in totals:
            w.writerow([name, "", "", "", "", messages, n, _s(amount), cur, ""])
        for d in self.discrepancies:
            w.writerow(["discrepancy", "", "", "", "", "", "", "", cur, d])
        return out.getvalue()

    def as_text(self) -> str:
        """A human-readable form."""
        cur = self.currency
        head = [
            f"Invoice {self.month} for {self.partner} ({cur})",
            f"period   {self.period_start.isoformat()} .. {self.period_end.isoformat()} (by capture time)",
            f"opening  {_s(self.opening)}",
            "",
        ]
        rows = [
            [li.country, _region(li.country), li.operator, li.unit_price, li.messages, li.parts, li.amount]
            for li in self.lines
        ]
        from catalyst_smpp.admin import table  # the CLI's table layout (lazy: admin imports click)

        heads = ["COUNTRY", "REGION", "OPERATOR", "UNIT", "MESSAGES", "PARTS", "AMOUNT"]
        body = table(heads, rows) if rows else "(no captured messages)"
        entries = [
            f"{e.kind.ljust(12)} {_s(e.amount)}  #{e.id} {e.at.isoformat()} {e.actor}: {e.reason}"
            for e in (*self.topups, *self.adjustments)
        ]
        tail = [
            "",
            f"charges      {_s(self.charges)} ({self.charged_messages} messages)",
            *entries,
            f"closing      {_s(self.closing)}",
            "reconciles: yes" if self.ok else "DISCREPANCIES:",
            *(f"  - {d}" for d in self.discrepancies),
        ]
        return "\n".join([*head, body, *tail]).replace("\n\n\n", "\n\n")


# --------------------------------------------------------------------------- queries


def month_period(month: str) -> tuple[dt.datetime, dt.datetime]:
    """``YYYY-MM`` → its first instant and the next month's first instant (UTC); ValueError otherwise."""
    m = _MONTH.fullmatch(month.strip())
    if m is None or not 1 <= int(m.group(2)) <= 12 or int(m.group(1)) < 1:
        raise ValueError(f"{month!r} is not a month (YYYY-MM, e.g. 2026-01)")
    year, mon = int(m.group(1)), int(m.group(2))
    start = dt.datetime(year, mon, 1, tzinfo=dt.UTC)
    end = dt.datetime(year + (mon == 12), mon % 12 + 1, 1, tzinfo=dt.UTC)
    return start, end


@contextlib.contextmanager
def _snapshot(conn: Conn) -> Iterator[None]:
    """One consistent view for every figure (inside a caller's transaction: its view)."""
    outside = conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
    with conn.transaction():
        if outside:
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ")
        yield


def _account(conn: Conn, system_id: str) -> tuple[int, str]:
    row = conn.execute("SELECT id FROM partners WHERE system_id = %s", (system_id,)).fetchone()
    if row is None:
        raise UnknownPartner(f"unknown partner {system_id!r}")
    pid = int(row[0])
    acc = conn.execute("SELECT currency FROM billing_accounts WHERE partner_id = %s", (pid,)).fetchone()
    if acc is None:
        raise NoAccount(f"partner {system_id!r} has no billing account")
    return pid, str(acc[0])


def _balance_at(conn: Conn, pid: int, at: dt.datetime) -> tuple[Decimal, Decimal]:
    """The balance at the instant ``at``: (from ``balance_after``, from the sum of amounts).

    From balance_after: that of the last entry (by id, the order balance_after runs in) timed before ``at``,
    less the entries recorded before it but timed at or after ``at`` (a capture written late, after entries
    of a later instant: the event writer's batches of several nodes interleave around midnight).  In a ledger
    recorded in time order that correction is zero.  The two figures differ only when the balance_after
    chain is broken (``balance verify`` says where)."""
    row = conn.execute(
        "SELECT id, balance_after FROM ledger WHERE partner_id = %s AND at < %s ORDER BY id DESC LIMIT 1",
        (pid, at),
    ).fetchone()
    total = conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM ledger WHERE partner_id = %s AND at < %s", (pid, at)
    ).fetchone()
    assert total is not None
    if row is None:
        return Decimal(0), Decimal(total[0])
    late = conn.execute(
        "SELECT coalesce(sum(amount), 0) FROM ledger WHERE partner_id = %s AND id < %s AND at >= %s",
        (pid, row[0], at),
    ).fetchone()
    assert late is not None
    return Decimal(row[1]) - Decimal(late[0]), Decimal(total[0])


# the period's captures and the message-log row that captured each
_CAPTURED = """
WITH c AS (
    SELECT message_id, amount FROM credit_entries
    WHERE partner_id = %(pid)s AND kind = 'capture' AND at >= %(start)s AND at < %(end)s
)
SELECT {country} AS country, m.operator, m.currency, m.price, m.parts, count(*), sum(c.amount)
FROM c LEFT JOIN LATERAL (
    SELECT dest_addr, operator, currency, price, parts FROM message_log l
    WHERE l.message_id = c.message_id AND l.charge_state = 'captured'
    ORDER BY l.event_at, l.event LIMIT 1
) m ON true
GROUP BY 1, 2, 3, 4, 5
""".format(country=_COUNTRY_SQL.format(col="m.dest_addr"))

# captures and ledger charges of the period that do not pair up (same message, same amount)
_UNPAIRED = """
WITH c AS (
    SELECT message_id, amount FROM credit_entries
    WHERE partner_id = %(pid)s AND kind = 'capture' AND at >= %(start)s AND at < %(end)s
), g AS (
    SELECT message_id, -amount AS amount FROM ledger
    WHERE partner_id = %(pid)s AND kind = 'charge' AND at >= %(start)s AND at < %(end)s
)
SELECT coalesce(c.message_id, g.message_id), c.amount, g.amount
FROM c FULL JOIN g ON g.message_id = c.message_id
WHERE c.amount IS DISTINCT FROM g.amount
ORDER BY 1 LIMIT 20
"""

_PERIOD = """
SELECT id, at, kind, amount, coalesce(reason, ''), coalesce(actor, '') FROM ledger
WHERE partner_id = %(pid)s AND kind <> 'charge' AND at >= %(start)s AND at < %(end)s ORDER BY at, id
"""
_CHARGES = """
SELECT count(*), coalesce(-sum(amount), 0) FROM ledger
WHERE partner_id = %(pid)s AND kind = 'charge' AND at >= %(start)s AND at < %(end)s
"""


def invoice(conn: Conn, partner_system_id: str, month: str) -> Invoice:
    """The invoice of ``partner_system_id`` for ``month`` (``YYYY-MM``, UTC).  UnknownPartner / NoAccount
    when there is no such partner or it has no account; ValueError for a malformed month."""
    start, end = month_period(month)
    problems: list[str] = []
    with _snapshot(conn):
        pid, currency = _account(conn, partner_system_id)
        args = {"pid": pid, "start": start, "end": end, **_code_args()}
        opening, opening_sum = _balance_at(conn, pid, start)
        closing, closing_sum = _balance_at(conn, pid, end)
        for name, chain, total in (("opening", opening, opening_sum), ("closing", closing, closing_sum)):
            if chain != total:
                problems.append(
                    f"{name} balance: the ledger's balance_after says {_s(chain)}, the sum of its entries "
                    f"{_s(total)} (run `catalyst-smpp balance verify`)"
                )
        groups = conn.execute(_CAPTURED, args).fetchall()
        unpaired = conn.execute(_UNPAIRED, args).fetchall()
        entries = conn.execute(_PERIOD, args).fetchall()
        crow = conn.execute(_CHARGES, args).fetchone()
        assert crow is not None
    charged_messages, charges = int(crow[0]), Decimal(crow[1])

    folded: dict[tuple[str, str, Decimal], list[Any]] = {}
    captures_total = Decimal(0)
    captures_n = 0
    for country, operator, cur, price, parts, n, amount in groups:
        captures_total += Decimal(amount)
        captures_n += n
        if price is None:
            problems.append(
                f"{n} capture(s) of {_s(Decimal(amount))} have no captured message-log row"
                " (not in the line items)"
            )
            continue
        if cur != currency:
            problems.append(f"{n} captured message-log row(s) priced in {cur}, the account is in {currency}")
            continue
        parts = max(int(parts), 1)
        key = (country, operator, _dec(price) / parts)
        acc = folded.setdefault(key, [0, 0, 0])
        acc[0] += n
        acc[1] += n * parts
        acc[2] += n * int(price)
    lines = tuple(
        LineItem(country, operator, unit, msgs, parts, _dec(micros))
        for (country, operator, unit), (msgs, parts, micros) in sorted(folded.items())
    )
    items = [LedgerItem(i, at, k, Decimal(a), r, who) for i, at, k, a, r, who in entries]
    topups = tuple(e for e in items if e.kind == "topup")
    adjustments = tuple(e for e in items if e.kind == "adjustment")
    inv = Invoice(
        partner_system_id,
        f"{start.year:04d}-{start.month:02d}",
        start,
        end,
        currency,
        opening,
        lines,
        charges,
        charged_messages,
        topups,
        adjustments,
        closing,
        (),
    )
    if inv.lines_total != charges:
        problems.append(f"line items total {_s(inv.lines_total)}, the ledger's charges {_s(charges)}")
    if captures_total != charges or captures_n != charged_messages:
        problems.append(
            f"captures: {captures_n} totalling {_s(captures_total)}; ledger charges: {charged_messages} "
            f"totalling {_s(charges)}"
        )
    for mid, cap, charge in unpaired:
        problems.append(
            f"message {mid}: capture {'-' if cap is None else _s(Decimal(cap))}, "
            f"ledger charge {'-' if charge is None else _s(Decimal(charge))}"
        )
    expected = opening + inv.topups_total + inv.adjustments_total - charges
    if expected != closing:
        problems.append(
            f"opening + top-ups + adjustments - charges = {_s(expected)},"
            f" the closing balance is {_s(closing)}"
        )
    return attrs.evolve(inv, discrepancies=tuple(problems))


# --------------------------------------------------------------------------- usage


@attrs.frozen
class UsageRow:
    """One UTC day, country calling code and operator of a partner's traffic.  Each figure is counted at the
    instant of its own event: ``accepted`` / ``refused`` / ``submitted`` / ``failed`` at their log rows
    (``failed``: a permanent failure row or a final receipt other than DELIVRD), ``delivered`` at a DELIVRD
    receipt, ``charged`` / ``released`` at the capture / release credit entry (an invoice's figures).
    ``parts``: of the accepted messages.  ``cost``: what the operators' cost plans give for the submitted
    messages, in the partner's currency; ``cost_other``: costs in any other currency (not converted).
    ``margin`` = charged - cost."""

    day: dt.date
    country: str
    operator: str
    accepted: int = 0
    refused: int = 0
    submitted: int = 0
    delivered: int = 0
    failed: int = 0
    parts: int = 0
    charged: Decimal = Decimal(0)
    released: Decimal = Decimal(0)
    cost: Decimal = Decimal(0)
    cost_other: tuple[tuple[str, Decimal], ...] = ()

    @property
    def margin(self) -> Decimal:
        return self.charged - self.cost

    def as_json(self) -> dict[str, Any]:
        return {
            "day": self.day.isoformat(),
            "country": self.country,
            "region": _region(self.country),
            "operator": self.operator,
            "accepted": self.accepted,
            "refused": self.refused,
            "submitted": self.submitted,
            "delivered": self.delivered,
            "failed": self.failed,
            "parts": self.parts,
            "charged": _s(self.charged),
            "released": _s(self.released),
            "cost": _s(self.cost),
            "cost_other": {c: _s(a) for c, a in self.cost_other},
            "margin": _s(self.margin),
        }


# (day, country, operator, figure, count, parts, amount in micro-units or numeric, currency) of the log rows
_LOG_FACTS = """
SELECT (event_at AT TIME ZONE 'UTC')::date, {country}, operator,
       CASE WHEN event = 'accepted' THEN 'accepted'
            WHEN event = 'rejected' THEN 'refused'
            WHEN event = 'submitted' THEN 'submitted'
            WHEN event = 'delivered' AND final_state = 'DELIVRD' THEN 'delivered'
            ELSE 'failed' END,
       count(*), coalesce(sum(parts), 0),
       coalesce(sum(cost) FILTER (WHERE event = 'submitted'), 0), coalesce(cost_currency, '')
FROM message_log
WHERE partner = %(partner)s AND event_at >= %(since)s AND event_at < %(until)s
  AND (event <> 'delivered' OR final_state = 'DELIVRD' OR final_state = ANY(%(failed)s))
GROUP BY 1, 2, 3, 4, 8
""".format(country=_COUNTRY_SQL.format(col="dest_addr"))

# captures and releases of the period, each with the log row that settled it (else any row of the message)
_CREDIT_FACTS = """
SELECT (c.at AT TIME ZONE 'UTC')::date, {country}, coalesce(m.operator, ''), c.kind, count(*), sum(c.amount)
FROM credit_entries c LEFT JOIN LATERAL (
    SELECT dest_addr, operator FROM message_log l WHERE l.message_id = c.message_id
    ORDER BY (l.charge_state = CASE c.kind WHEN 'capture' THEN 'captured' ELSE 'released' END)
             DESC NULLS LAST, (l.event = 'accepted') DESC, l.event_at LIMIT 1
) m ON true
WHERE c.partner_id = %(pid)s AND c.kind <> 'hold' AND c.at >= %(since)s AND c.at < %(until)s
GROUP BY 1, 2, 3, 4
""".format(country=_COUNTRY_SQL.format(col="m.dest_addr"))

_FAILED_STATES = ["UNDELIV", "REJECTD", "EXPIRED", "DELETED", "UNKNOWN"]


def usage(conn: Conn, partner: str, since: dt.datetime, until: dt.datetime) -> list[UsageRow]:
    """``partner``'s traffic with ``since <= instant < until``, one row per UTC day, country and operator
    (sorted).  A partner with no billing account gets its counts with zero amounts."""
    if since.tzinfo is None or until.tzinfo is None:
        raise ValueError("since and until must be aware datetimes")
    with _snapshot(conn):
        row = conn.execute("SELECT id FROM partners WHERE system_id = %s", (partner,)).fetchone()
        if row is None:
            raise UnknownPartner(f"unknown partner {partner!r}")
        pid = int(row[0])
        acc = conn.execute("SELECT currency FROM billing_accounts WHERE partner_id = %s", (pid,)).fetchone()
        currency = None if acc is None else str(acc[0])
        args = {
            "partner": partner,
            "pid": pid,
            "since": since,
            "until": until,
            "failed": _FAILED_STATES,
            **_code_args(),
        }
        log_facts = conn.execute(_LOG_FACTS, args).fetchall()
        credit_facts = conn.execute(_CREDIT_FACTS, args).fetchall()
    acc_rows: dict[tuple[dt.date, str, str], dict[str, Any]] = {}

    def slot(day: dt.date, country: str, operator: str) -> dict[str, Any]:
        return acc_rows.setdefault((day, country, operator), {"other": {}})

    for day, country, operator, figure, n, parts, cost, cost_cur in log_facts:
        s = slot(day, country, operator)
        s[figure] = s.get(figure, 0) + n
        if figure == "accepted":
            s["parts"] = s.get("parts", 0) + parts
        if cost:
            if cost_cur == currency:
                s["cost"] = s.get("cost", 0) + int(cost)
            else:
                s["other"][cost_cur] = s["other"].get(cost_cur, 0) + int(cost)
    for day, country, operator, kind, _n, amount in credit_facts:
        s = slot(day, country, operator)
        name = "charged" if kind == "capture" else "released"
        s[name] = s.get(name, Decimal(0)) + Decimal(amount)
    out = []
    for (day, country, operator), s in sorted(acc_rows.items()):
        out.append(
            UsageRow(
                day,
                country,
                operator,
                accepted=s.get("accepted", 0),
                refused=s.get("refused", 0),
                submitted=s.get("submitted", 0),
                delivered=s.get("delivered", 0),
                failed=s.get("failed", 0),
                parts=s.get("parts", 0),
                charged=s.get("charged", Decimal(0)),
                released=s.get("released", Decimal(0)),
                cost=_dec(s.get("cost", 0)),
                cost_other=tuple(sorted((c, _dec(a)) for c, a in s["other"].items())),
            )
        )
    return out


def usage_totals(rows: Iterable[UsageRow]) -> dict[str, Any]:
    """The sums of a usage report's rows (amounts as decimal strings)."""
    rows = list(rows)
    ints = ("accepted", "refused", "submitted", "delivered", "failed", "parts")
    decs = ("charged", "released", "cost", "margin")
    out: dict[str, Any] = {k: sum(getattr(r, k) for r in rows) for k in ints}
    out.update({k: _s(sum((getattr(r, k) for r in rows), Decimal(0))) for k in decs})
    return out
