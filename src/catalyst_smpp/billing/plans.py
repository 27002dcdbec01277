"""Price and cost plans: the CSV format, the per-plan lookup index, and the prices the gateway reads.

* :func:`parse_csv` / :func:`format_csv`: the plan CSV of docs/dev/billing.md (pure; any bad input is a
  :class:`PlanCsvError`, a ValueError naming the line and the column, and nothing else).
* :class:`PlanIndex`: a plan's rows by prefix length; :meth:`PlanIndex.lookup` is the longest prefix among the
  rows in effect at an instant, a dict probe per prefix length (no database).
* :func:`price`: what a row charges for a message of ``parts`` parts at a charging point.
* :class:`Pricing`: built from a :class:`ConfigSnapshot` (rebuilt on every reload, like the router): each
  partner's price index and each operator's cost index.
"""

from __future__ import annotations

import bisect
import csv
import datetime as dt
import io
import itertools
import math
import re
from collections.abc import Iterable, Sequence
from decimal import Decimal

import attrs

from catalyst_smpp.billing.money import Money, parse_amount
from catalyst_smpp.store.records import CHARGE_ON, ConfigSnapshot, Plan, PlanRow

__all__ = [
    "CSV_COLUMNS",
    "PlanCsvError",
    "PlanIndex",
    "Pricing",
    "decode_csv",
    "format_csv",
    "parse_csv",
    "parse_instant",
    "price",
]

CSV_COLUMNS = tuple(f.name for f in attrs.fields(PlanRow))
"""The CSV's header: :class:`PlanRow`'s fields, in its order (the one declaration of a plan row)."""
"""The header line of a plan CSV, exactly (docs/dev/billing.md)."""

_PREFIX = re.compile(r"[0-9]{1,32}")
_COUNTRY = re.compile(r"[0-9]{1,4}")
_MCC_MNC = re.compile(r"[0-9]{5,6}")
_MAX_NETWORK = 64
_MAX_AMOUNT = Decimal(10) ** 14
"""numeric(20,6) holds 14 digits before the point."""


class PlanCsvError(ValueError):
    """A plan CSV that cannot be imported: ``line`` (1 = the header) and ``column`` (None: the line as a
    whole) say where; nothing of the file is imported."""

    def __init__(self, line: int, column: str | None, problem: str) -> None:
        where = f"line {line}" + (f", column {column}" if column else "")
        super().__init__(f"{where}: {problem}")
        self.line = line
        self.column = column
        self.problem = problem


def parse_instant(text: str) -> dt.datetime:
    """An ISO 8601 instant with its UTC offset (``2027-01-01T00:00:00+01:00`` or ``...Z``), in UTC.  A time
    without an offset is refused: whose midnight would it be?"""
    try:
        at = dt.datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text!r} is not an ISO 8601 instant (2027-01-01T00:00:00+00:00)") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(f"{text!r} has no UTC offset (write it as 2027-01-01T00:00:00+00:00 or ...Z)")
    try:
        return at.astimezone(dt.UTC)
    except OverflowError:
        raise ValueError(f"{text!r} is out of range") from None


def _instant_text(at: dt.datetime) -> str:
    return at.astimezone(dt.UTC).isoformat()


def _amount_text(amount: Decimal) -> str:
    """Without trailing zeros or an exponent: 0.0045, 100, 0."""
    return format(amount.normalize(), "f")


def _price(text: str, currency: str) -> Money:
    amount = parse_amount(text)
    if amount < 0:
        raise ValueError(f"{text!r} is negative")
    if amount >= _MAX_AMOUNT:
        raise ValueError(f"{text!r} is too large (at most 14 digits before the point)")
    return Money(amount, currency)


def decode_csv(data: bytes) -> str:
    """A plan file's bytes as text: UTF-8 (a byte order mark is skipped); else a :class:`PlanCsvError`
    naming the line of the first byte that is not UTF-8."""
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PlanCsvError(line, None, f"not UTF-8 text (byte {data[e.start]:#04x})") from None


def _field(line: int, column: str, text: str, currency: str, row: dict[str, object]) -> None:
    """Parse ``text`` of ``column`` into ``row`` (PlanCsvError naming line and column)."""
    try:
        if column == "prefix":
            if not _PREFIX.fullmatch(text):
                raise ValueError(f"{text!r} is not a destination prefix (1 to 32 digits, no '+')")
            row[column] = text
        elif column == "country":
            if not _COUNTRY.fullmatch(text):
                raise ValueError(f"{text!r} is not a country calling code (1 to 4 digits)")
            row[column] = text
        elif column == "network":
            if len(text) > _MAX_NETWORK:
                raise ValueError(f"at most {_MAX_NETWORK} characters")
            row[column] = text
        elif column == "mcc_mnc":
            if text and not _MCC_MNC.fullmatch(text):
                raise ValueError(f"{text!r} is not an MCC+MNC (5 or 6 digits, or empty)")
            row[column] = text or None
        elif column == "submit_price":
            row[column] = _price(text, currency)
        elif column == "delivery_price":
            row[column] = _price(text, currency) if text else None
        elif column == "effective_from":
            row[column] = parse_instant(text)
        else:
            row[column] = parse_instant(text) if text else None
    except ValueError as e:
        raise PlanCsvError(line, column, str(e)) from None


def parse_csv(text: str, currency: str) -> list[PlanRow]:
    """The rows of a plan CSV (prices in ``currency``, the plan's).  The header must be exactly
    :data:`CSV_COLUMNS`; blank lines are skipped; values are stripped of surrounding spaces.

    Checked per row: the formats, ``effective_until`` after ``effective_from``, the prefix starting with the
    country code (a ``DEFAULT`` row's prefix is the code itself).  Checked across rows: no two rows with one
    prefix in effect at the same instant (the lookup could not choose).  Any failure: a
    :class:`PlanCsvError`."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    rows: list[PlanRow] = []
    lines: list[int] = []
    try:
        header = None
        for record in reader:
            line = reader.line_num
            if not record or (len(record) == 1 and not record[0].strip()):
                continue
            values = [v.strip() for v in record]
            if header is None:
                header = values
                if tuple(values) != CSV_COLUMNS:
                    raise PlanCsvError(line, None, f"the header must be exactly {','.join(CSV_COLUMNS)}")
                continue
            if len(values) != len(CSV_COLUMNS):
                col = CSV_COLUMNS[min(len(values), len(CSV_COLUMNS) - 1)]
                raise PlanCsvError(line, col, f"{len(values)} values, the header has {len(CSV_COLUMNS)}")
            fields: dict[str, object] = {}
            for column, value in zip(CSV_COLUMNS, values, strict=True):
                _field(line, column, value, currency, fields)
            row = PlanRow(**fields)  # type: ignore[arg-type]
            _check_row(line, row)
            rows.append(row)
            lines.append(line)
    except csv.Error as e:
        raise PlanCsvError(reader.line_num, None, f"not CSV: {e}") from None
    if header is None:
        raise PlanCsvError(1, None, f"empty: the header line {','.join(CSV_COLUMNS)} is missing")
    _check_overlaps(rows, lines)
    return rows


def _check_row(line: int, row: PlanRow) -> None:
    if row.effective_until is not None and row.effective_until <= row.effective_from:
        raise PlanCsvError(line, "effective_until", "must be after effective_from")
    if not row.prefix.startswith(row.country):
        raise PlanCsvError(
            line, "prefix", f"{row.prefix!r} does not start with its country code {row.country}"
        )
    if row.network == "DEFAULT" and row.prefix != row.country:
        raise PlanCsvError(line, "prefix", f"a DEFAULT row's prefix is its country code {row.country}")


def _check_overlaps(rows: Sequence[PlanRow], lines: Sequence[int]) -> None:
    """No two rows of one prefix whose windows share an instant; the later line is named."""
    by_prefix: dict[str, list[tuple[dt.datetime, int, PlanRow]]] = {}
    for row, line in zip(rows, lines, strict=True):
        by_prefix.setdefault(row.prefix, []).append((row.effective_from, line, row))
    for group in by_prefix.values():
        group.sort(key=lambda t: (t[0], t[1]))
        for (_, line_a, a), (_, line_b, b) in itertools.pairwise(group):
            if a.effective_until is None or a.effective_until > b.effective_from:
                later = max(line_a, line_b)
                raise PlanCsvError(
                    later,
                    "effective_from",
                    f"prefix {b.prefix} is already priced at that instant by line {min(line_a, line_b)}",
                )


def format_csv(rows: Iterable[PlanRow]) -> str:
    """The plan CSV of ``rows`` (header first; prices without trailing zeros; instants in UTC with offset;
    empty for no ``mcc_mnc`` / ``delivery_price`` / ``effective_until``).  :func:`parse_csv` reads it back
    to the same rows."""
    out = io.StringIO(newline="")
    w = csv.writer(out, lineterminator="\n")
    w.writerow(CSV_COLUMNS)
    for r in rows:
        w.writerow(
            (
                r.prefix,
                r.country,
                r.network,
                r.mcc_mnc or "",
                _amount_text(r.submit_price.amount),
                "" if r.delivery_price is None else _amount_text(r.delivery_price.amount),
                _instant_text(r.effective_from),
                "" if r.effective_until is None else _instant_text(r.effective_until),
            )
        )
    return out.getvalue()


def price(row: PlanRow, charge_on: str, parts: int) -> Money:
    """What ``row`` charges for a message of ``parts`` parts: ``delivery_price`` (else ``submit_price``) per
    part when the charging point is ``delivery``, ``submit_price`` per part when it is ``submit``."""
    if charge_on not in CHARGE_ON:
        raise ValueError(f"charge_on {charge_on!r}: one of {', '.join(CHARGE_ON)}")
    if parts < 1:
        raise ValueError(f"{parts} parts: a message has at least one")
    unit = (
        row.delivery_price if charge_on == "delivery" and row.delivery_price is not None else row.submit_price
    )
    return unit.times(parts)


@attrs.frozen
class _Windows:
    """The rows of one prefix, by ``effective_from`` (their windows do not overlap)."""

    starts: list[float]
    ends: list[float]
    rows: list[PlanRow]

    def at(self, at: float) -> PlanRow | None:
        i = bisect.bisect_right(self.starts, at) - 1
        if i >= 0 and at < self.ends[i]:
            return self.rows[i]
        return None


class PlanIndex:
    """A plan's rows by prefix length, then prefix (built once per snapshot; lookups touch no database).

    Rows of one prefix must not overlap in time (the import and the database refuse it); if they did, only
    the one that started last before the instant would be considered."""

    def __init__(self, rows: Iterable[PlanRow], currency: str | None = None) -> None:
        self.currency = currency
        grouped: dict[str, list[PlanRow]] = {}
        for r in rows:
            grouped.setdefault(r.prefix, []).append(r)
        by_len: dict[int, dict[str, _Windows]] = {}
        for prefix, group in grouped.items():
            group.sort(key=lambda r: r.effective_from)
            starts = [r.effective_from.timestamp() for r in group]
            ends = [math.inf if r.effective_until is None else r.effective_until.timestamp() for r in group]
            by_len.setdefault(len(prefix), {})[prefix] = _Windows(starts, ends, group)
        self._by_len = by_len
        self._lengths = sorted(by_len, reverse=True)
        # per row: (submit, delivery) price per part in micro-units: the accept path uses no Money per message
        self._unit_micros: dict[int, tuple[int, int]] = {}
        for group in grouped.values():
            for r in group:
                sub = r.submit_price.micros()
                dlv = r.delivery_price.micros() if r.delivery_price is not None else sub
                self._unit_micros[id(r)] = (sub, dlv)

    def micros(self, digits: str, at: float, charge_on: str, parts: int) -> int | None:
        """:func:`price` of the row :meth:`lookup` finds, in micro-units (the accept path's form), or None."""
        row = self.lookup(digits, at)
        if row is None:
            return None
        sub, dlv = self._unit_micros[id(row)]
        return (dlv if charge_on == "delivery" else sub) * parts

    @classmethod
    def of(cls, plan: Plan) -> PlanIndex:
        return cls(plan.rows, plan.currency)

    def lookup(self, digits: str, at: float) -> PlanRow | None:
        """The row of the longest prefix of ``digits`` among the rows in effect at ``at`` (unix seconds;
        ``effective_from <= at < effective_until``), or None."""
        n = len(digits)
        for length in self._lengths:
            if length > n:
                continue
            windows = self._by_len[length].get(digits[:length])
            if windows is not None:
                row = windows.at(at)
                if row is not None:
                    return row
        return None


class Pricing:
    """Prices and costs from one :class:`ConfigSnapshot` (immutable; build a new one on reload).

    A partner with no price plan is not billed (:meth:`billed` False, :meth:`price_for` None); one whose plan
    has no row for a destination gets None too (the caller refuses it as unpriced).  Costs are the cost
    plan's ``submit_price`` per part (the operator charges for what it accepts)."""

    def __init__(self, snapshot: ConfigSnapshot) -> None:
        # getattr: like the router, take a snapshot-like object without plans (no one billed)
        indexes = {p.name: PlanIndex.of(p) for p in getattr(snapshot, "plans", ())}
        self.plans = indexes
        self._prices: dict[str, tuple[PlanIndex, str]] = {}
        for partner in snapshot.partners:
            if partner.price_plan is not None and partner.price_plan in indexes:
                self._prices[partner.system_id] = (indexes[partner.price_plan], partner.charge_on)
        self._costs: dict[str, PlanIndex] = {
            o.name: indexes[o.cost_plan]
            for o in snapshot.operators
            if o.cost_plan is not None and o.cost_plan in indexes
        }

    def billed(self, partner: str) -> bool:
        return partner in self._prices

    def price_currency(self, partner: str) -> str | None:
        entry = self._prices.get(partner)
        return entry[0].currency if entry is not None else None

    def price_for(self, partner: str, digits: str, at: float, parts: int = 1) -> Money | None:
        """What ``partner`` pays for a message of ``parts`` parts to ``digits`` accepted at ``at``, at its
        charging point; None when it is not billed or its plan has no row for that destination then."""
        entry = self._prices.get(partner)
        if entry is None:
            return None
        index, charge_on = entry
        row = index.lookup(digits, at)
        return price(row, charge_on, parts) if row is not None else None

    def price_micros(self, partner: str, digits: str, at: float, parts: int = 1) -> tuple[int, str] | None:
        """:meth:`price_for` as (micro-units, currency): what accept uses per message."""
        entry = self._prices.get(partner)
        if entry is None:
            return None
        index, charge_on = entry
        m = index.micros(digits, at, charge_on, parts)
        return None if m is None or index.currency is None else (m, index.currency)

    def cost_micros(self, operator: str, digits: str, at: float, parts: int = 1) -> tuple[int, str] | None:
        """:meth:`cost_for` as (micro-units, currency)."""
        index = self._costs.get(operator)
        if index is None:
            return None
        m = index.micros(digits, at, "submit", parts)
        return None if m is None or index.currency is None else (m, index.currency)

    def cost_for(self, operator: str, digits: str, at: float, parts: int = 1) -> Money | None:
        """What ``operator`` charges us for ``parts`` parts to ``digits`` at ``at``; None when unknown."""
        index = self._costs.get(operator)
        if index is None:
            return None
        row = index.lookup(digits, at)
        return price(row, "submit", parts) if row is not None else None
