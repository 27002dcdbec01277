"""Message events: published on ``EVENTS.<type>``, written to the Postgres message log in batches.

* :class:`EventPublisher` -- ``await store(rows)`` publishes a batch of event rows with one
  ``publish_batch`` and returns when JetStream has acknowledged them (retrying what failed, idempotently).
  The producers await it in their own batch step, BEFORE the answer or ack that makes the rows true
  (docs/dev/gateway.md, "Events are as durable as what they record"): accept before the submit_sm_resp, the
  connector before the MT ack, inbound before the deliver_sm_resp.  So a row is exactly as durable as the
  thing it records: a crash can lose an answer (the peer retries), never the row of something answered.
* :class:`EventWriter` -- consumes the shared durable ``EVENTS_all`` and writes ``db.write_log_rows``
  in batches (the rows as read, :func:`rows_from_bytes`: no ``MessageEvent`` or ``datetime`` per row; the
  repository builds one COPY text per batch); acks only after the write commits, naks (with a delay) when
  the database fails.
  ``(message_id, event)`` is the log's key, so a redelivered batch or a row published twice is harmless.

On the wire, ONE form: a JSON array of event rows, each row exactly :data:`ROW_FIELDS` in order with
``event_at`` as unix seconds (``[["123","accepted",1714564801.005,"acme",...],...]``), written with one
``json.dumps`` per message and read with one ``json.loads`` (:func:`rows_from_bytes`).  A payload that is not
an array is dropped (terminated, one error log line, ``EventWriter.stats.poison``); a row that is not an event
row is dropped alone and the others are written.

Packed: the rows of one ``store`` that share a type travel as ONE JetStream message on ``EVENTS.<type>``
(up to ``max_rows`` rows), msg_id ``"p:<sha1 of the payload>"`` -- so the message log costs one publish and
one fetch+ack per batch instead of per event.  A type with one row in a ``store`` goes as a one-row array,
msg_id ``"<message_id>:<event>"``.  Either way a re-publish within the duplicate window is a no-op.

The producers build rows with :func:`event_row` or as tuples in :data:`ROW_FIELDS` order (no
``MessageEvent`` object and no ``datetime`` per event); :func:`event_to_row` turns a ``MessageEvent`` into
one.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import time
from collections.abc import Sequence
from operator import itemgetter
from typing import Any

import attrs
import psycopg
import trio

from catalyst_smpp.billing.node import write_log_and_books
from catalyst_smpp.bus import (
    BusError,
    Kind,
    MessageBus,
    PubAck,
    PublishError,
    PublishErrorKind,
    PublishInput,
    PublishItem,
)
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.store import Database, LogRow, MessageEvent

__all__ = [
    "EVENT_TYPES",
    "ROW_FIELDS",
    "EventPublisher",
    "EventWriter",
    "Row",
    "event_row",
    "event_to_row",
    "make_event",
    "row_to_event",
    "rows_from_bytes",
]

log = logging.getLogger(__name__)

EVENT_TYPES = ("accepted", "submitted", "delivered", "failed", "rejected", "cancelled")

ROW_FIELDS = tuple(f.name for f in attrs.fields(MessageEvent))
"""A packed event row: :class:`MessageEvent`'s fields in its order (the one declaration of a log row),
``event_at`` as unix seconds (a float)."""
_ROW_TEMPLATE: dict[str, Any] = {
    f.name: None if f.default is attrs.NOTHING else f.default for f in attrs.fields(MessageEvent)
}
"""Every column of a row at its default (None for the three every row sets): what :func:`event_row` fills."""
_ROW_NAMES = frozenset(ROW_FIELDS)
_row_of = itemgetter(*ROW_FIELDS)
_NODE = ROW_FIELDS.index("node")
_NCOLS = len(ROW_FIELDS)
_UTC = dt.UTC
_fromtimestamp = dt.datetime.fromtimestamp

Row = tuple[Any, ...]
"""An event row: :data:`ROW_FIELDS` in order (``event_at`` as unix seconds)."""


def make_event(message_id: str, event: str, **fields: Any) -> MessageEvent:
    """A :class:`MessageEvent` stamped now (UTC)."""
    return MessageEvent(message_id, event, dt.datetime.now(dt.UTC), **fields)


def event_row(message_id: str, event: str, *, at: float | None = None, **fields: Any) -> Row:
    """An event row for :meth:`EventPublisher.store`: ``fields`` by :class:`MessageEvent`'s names, the
    others at their defaults, stamped now unless ``at`` (unix seconds).  An unknown name is a TypeError."""
    row = _ROW_TEMPLATE.copy()
    row.update(fields)
    if len(row) != _NCOLS:  # a name that is not a column (the common case costs no set per row)
        raise TypeError(f"no event row field {sorted(fields.keys() - _ROW_NAMES)}")
    row["message_id"] = message_id
    row["event"] = event
    row["event_at"] = time.time() if at is None else at
    out: Row = _row_of(row)
    return out


def event_to_row(ev: MessageEvent) -> Row:
    """A :class:`MessageEvent` as a row for :meth:`EventPublisher.store`."""
    at = ev.event_at
    if at.tzinfo is None:
        at = at.replace(tzinfo=_UTC)
    return attrs.astuple(attrs.evolve(ev, event_at=at.timestamp()), recurse=False)  # type: ignore[arg-type]


def _row_head(row: Any) -> tuple[str, str, float]:
    """message_id, event and event_at of a packed row; ValueError when it is not one."""
    if not isinstance(row, list | tuple) or len(row) != _NCOLS:
        raise ValueError("not an event row: not a list of the ROW_FIELDS")
    mid, event, at = row[0], row[1], row[2]
    if not isinstance(mid, str) or not isinstance(event, str) or not event:
        raise ValueError("not an event row: bad message_id/event")
    if not isinstance(at, float | int) or isinstance(at, bool):
        raise ValueError("not an event row: bad event_at")
    return mid, event, at


def row_to_event(row: Any) -> MessageEvent:
    """A packed row → :class:`MessageEvent`; ValueError for anything that is not one."""
    mid, event, at = _row_head(row)
    try:
        return MessageEvent(mid, event, _fromtimestamp(at, _UTC), *row[3:])
    except (TypeError, OverflowError, OSError) as exc:
        raise ValueError(f"not an event row: {exc}") from None


# event_at (unix seconds) surely inside datetime's range (years 1..9999); beyond these, fromtimestamp decides
_AT_MIN = -62_135_596_000.0
_AT_MAX = 253_402_300_000.0


def _log_row(row: Any) -> LogRow:
    """A packed row → the message log row it stands for (unchanged: ``event_at`` stays unix seconds);
    ValueError for what :func:`row_to_event` refuses."""
    _mid, _event, at = _row_head(row)
    if not _AT_MIN < at < _AT_MAX:  # NaN too
        try:
            _fromtimestamp(at, _UTC)
        except (OverflowError, OSError, ValueError) as exc:
            raise ValueError(f"not an event row: {exc}") from None
    seq: LogRow = row  # a list or tuple of ROW_FIELDS (_row_head checked)
    return seq


def rows_from_bytes(data: bytes) -> tuple[list[LogRow], int]:
    """The message log rows of one EVENTS message (for :meth:`Database.write_log_rows`, no
    :class:`MessageEvent` per row; ``event_at`` as unix seconds) and the number of rows that are not event
    rows -- dropped alone.  A payload that is not a JSON array counts as one."""
    try:
        rows = json.loads(data)
    except ValueError:
        return [], 1
    if type(rows) is not list:
        return [], 1
    out: list[LogRow] = []
    ap = out.append
    bad = 0
    str_ = str
    float_ = float
    at_min, at_max, ncols = _AT_MIN, _AT_MAX, _NCOLS
    for row in rows:
        # the common row, checked inline; anything else through _log_row
        if (
            type(row) is list
            and len(row) == ncols
            and type(row[0]) is str_
            and type(row[1]) is str_
            and row[1]
            and type(row[2]) is float_
            and at_min < row[2] < at_max
        ):
            ap(row)
            continue
        try:
            ap(_log_row(row))
        except ValueError:
            bad += 1
    return out, bad


@attrs.define
class PublisherStats:
    stored: int = 0
    """Rows JetStream acknowledged."""
    publishes: int = 0
    """``publish_batch`` calls (one per :meth:`EventPublisher.store`, plus retries)."""
    retries: int = 0
    """Rows published again after a failed attempt."""
    unstored: int = 0
    """Rows given up at the caller's deadline (the caller did not give the answer they stood for)."""


class EventPublisher:
    """Makes event rows durable *now*: ``await store(rows)`` returns once JetStream has acknowledged them (see
    the module notes).  No buffer and no task of its own: a producer awaits it in its batch step, before
    the answer or ack that makes its rows true, so a crash can never lose a row of something already
    answered."""

    def __init__(
        self,
        bus: MessageBus,
        *,
        node: str,
        max_rows: int = 500,
        retry_delay: float = 0.05,
        max_retry_delay: float = 2.0,
    ) -> None:
        """The rows of one event type in a :meth:`store` travel as one JetStream message (up to ``max_rows``
        rows each; see the module notes)."""
        if max_rows < 1:
            raise ValueError("max_rows must be >= 1")
        self.bus = bus
        self.node = node
        self.max_rows = max_rows
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.stats = PublisherStats()
        self._subjects: dict[str, str] = {}
        self._last_log = -1e9

    def _subject(self, event: str) -> str:
        s = self._subjects.get(event)
        if s is None:
            s = self._subjects[event] = self.bus.subject(Kind.EVENTS, event)
        return s

    async def store(self, rows: Sequence[Row], *, until: float | None = None) -> list[int]:
        """Publish ``rows`` (:func:`event_row` tuples, :data:`ROW_FIELDS` order; an empty ``node`` is this
        publisher's) with ONE ``publish_batch`` and wait for JetStream's acks.  What failed is published
        again -- the same payloads, so the same msg_ids: a retry is stored once (duplicate window) and the
        log's key absorbs the rest -- with a growing pause, until everything is stored or the trio time
        ``until`` would pass (``None``: no limit; cancel the caller to stop).

        Returns the indices (into ``rows``) of the rows NOT stored: empty when all are.
        """
        if not rows:
            return []
        items, owners = self._items(self._with_node(rows))
        return await self._settle(items, owners, None, until)

    async def store_after(
        self,
        first: Sequence[PublishInput],
        rows: Sequence[Row],
        *,
        timeout: float | None = None,
        until: float | None = None,
        bus: MessageBus | None = None,
    ) -> tuple[list[PubAck | PublishError], list[int] | None]:
        """Publish ``first`` (the records ``rows`` stand for) and, if EVERY one of them is stored, the rows
        right after it on the bus side (:meth:`MessageBus.publish_pair`): one call instead of two in a row.
        ``(first's results, the indices of the rows not stored -- as :meth:`store` with ``until``)``, or
        ``(first's results, None)`` when an item of ``first`` failed: the rows were not published, the
        caller stores those still true with :meth:`store`.  ``bus``: the caller's, if it has its own (the
        records go where it would publish them)."""
        items, owners = self._items(self._with_node(rows)) if rows else ([], [])
        self.stats.publishes += 1
        # BusError (bus closed): raised, as publish_batch does
        r1, r2 = await (bus or self.bus).publish_pair(first, items, timeout)
        if r2 is None:
            return r1, None
        return r1, await self._settle(items, owners, r2, until)

    def _with_node(self, rows: Sequence[Row]) -> Sequence[Row]:
        """The rows, an empty ``node`` made this publisher's."""
        node = self.node
        if not node:
            return rows
        return [r if r[_NODE] else (*r[:_NODE], node, *r[_NODE + 1 :]) for r in rows]

    async def _settle(
        self, items: list[PublishItem], owners: list[list[int]], first: list[Any] | None, until: float | None
    ) -> list[int]:
        """Publish ``items`` (``first``: the results of a publish already made) until stored or ``until``;
        the indices of the rows not stored (see :meth:`store`)."""
        delay = self.retry_delay
        failing_since: float | None = None
        results: list[Any] | None = first
        while True:
            if results is None:
                self.stats.publishes += 1
                try:
                    got: list[Any] = await self.bus.publish_batch(items)  # a PublishError where not ok
                except BusError as exc:  # bus closed
                    got = [PublishError(PublishErrorKind.CONNECTION, str(exc))] * len(items)
                results = got
            left = [k for k, r in enumerate(results) if not r.ok]
            self.stats.stored += sum(len(owners[k]) for k, r in enumerate(results) if r.ok)
            if not left:
                if failing_since is not None:
                    log.warning("event rows stored again after %.1fs", trio.current_time() - failing_since)
                return []
            now = trio.current_time()
            n_left = sum(len(owners[k]) for k in left)
            if failing_since is None:
                failing_since = now
            if now - self._last_log >= 5.0:
                self._last_log = now
                r = results[left[0]]
                log.warning("%d event row(s) not stored in EVENTS (%s %s); retrying", n_left, r.kind.value,
                            r.description)  # fmt: skip
            if until is not None and now + delay >= until:
                self.stats.unstored += n_left
                return sorted(i for k in left for i in owners[k])
            self.stats.retries += n_left
            items = [items[k] for k in left]
            owners = [owners[k] for k in left]
            results = None
            await trio.sleep(delay)
            delay = min(delay * 2, self.max_retry_delay)

    def _items(self, rows: Sequence[Row]) -> tuple[list[PublishItem], list[list[int]]]:
        """The JetStream messages for ``rows`` and, for each, the indices of the rows it carries."""
        by_type: dict[str, list[int]] = {}
        for i, row in enumerate(rows):
            g = by_type.get(row[1])
            if g is None:
                by_type[row[1]] = [i]
            else:
                g.append(i)
        items: list[PublishItem] = []
        owners: list[list[int]] = []
        step = self.max_rows
        for idx in by_type.values():
            for k in range(0, len(idx), step):
                part = idx[k : k + step]
                owners.append(part)
                if len(part) == 1:
                    items.append(self._single(rows[part[0]]))
                    continue
                payload = json.dumps([rows[i] for i in part], separators=(",", ":"), ensure_ascii=True)
                data = payload.encode("ascii")
                subject = self._subject(rows[part[0]][1])
                items.append(PublishItem(subject, data, None, "p:" + hashlib.sha1(data).hexdigest()))
        return items, owners

    def _single(self, row: Row) -> PublishItem:
        """One row alone: the same array form, msg_id ``"<message_id>:<event>"``."""
        data = json.dumps([row], separators=(",", ":"), ensure_ascii=True).encode("ascii")
        return PublishItem(self._subject(row[1]), data, None, f"{row[0]}:{row[1]}")


@attrs.define
class WriterStats:
    written: int = 0
    """Rows inserted (duplicates of (message_id, event) are not counted)."""
    received: int = 0
    poison: int = 0
    db_errors: int = 0


class EventWriter:
    """``EVENTS_all`` → the message log and the books (one transaction per batch) → ack (nak on database
    errors)."""

    def __init__(
        self,
        bus: MessageBus,
        db: Database,
        *,
        batch: int = 2000,
        fetch_timeout: float = 1.0,
        retry_delay: float = 1.0,
        max_retry_delay: float = 5.0,  # a retry is one connection attempt: the log catches up soon after
        linger: float = 0.0,
        metrics: Metrics | None = None,
    ) -> None:
        """``linger``: after writing fewer than ``batch / 2`` rows, wait this long before the next fetch, so
        that a low event rate is written in batches (each write is a fetch, a transaction of several round
        trips and an ack: at 100 messages/s without it, a write per ~5 rows)."""
        self.bus = bus
        self.db = db
        self.metrics = metrics
        self.batch = batch
        self.fetch_timeout = fetch_timeout
        self.retry_delay = retry_delay
        self.max_retry_delay = max_retry_delay
        self.linger = linger
        self.stats = WriterStats()

    async def _write(self, rows: list[LogRow]) -> int:
        """The rows and their credit entries (billing.node.write_log_and_books), in one transaction."""
        n, stats = await self.db.run(write_log_and_books, rows)
        if stats.conflicts or stats.orphans or stats.unbooked:
            log.info(
                "books: %d settlement(s) of already settled messages, %d without a hold, %d not booked "
                "(no account or another currency)",
                stats.conflicts,
                stats.orphans,
                stats.unbooked,
            )
        m = self.metrics
        if m is not None and (stats.holds or stats.captures or stats.releases or stats.duplicates):
            try:
                c = m.credit_entries_total
                for kind, k in (
                    ("hold", stats.holds),
                    ("capture", stats.captures),
                    ("release", stats.releases),
                ):
                    if k:
                        c.labels(kind=kind, outcome="written").inc(k)
                if stats.duplicates:
                    c.labels(kind="any", outcome="duplicate").inc(stats.duplicates)
                if stats.conflicts:
                    c.labels(kind="settlement", outcome="settled").inc(stats.conflicts)
            except Exception:
                log.debug("metrics update failed", exc_info=True)
        for partner in stats.low_balance:
            log.warning("partner id %s: balance fell below its low-balance threshold", partner)
        return n

    async def run(self, *, task_status: trio.TaskStatus[EventWriter] = trio.TASK_STATUS_IGNORED) -> None:
        delay = self.retry_delay
        while True:  # NATS unreachable as the node starts: the events wait in the stream, the writer retries
            try:
                consumer = await self.bus.consumer(Kind.EVENTS)
                break
            except BusError as exc:
                log.warning("events consumer unavailable (NATS: %s); message log writer retrying in %.1fs",
                            exc, delay)  # fmt: skip
                await trio.sleep(delay)
                delay = min(delay * 2, self.max_retry_delay)
        task_status.started(self)
        delay = self.retry_delay
        failing_since: float | None = None  # Postgres unreachable since (logged once it is back)
        failures = 0
        per_msg = 1.0  # events per message lately (packed ones carry many): a write stays near `batch` rows
        small = False  # the last write was of fewer than batch / 2 rows: linger before the next fetch
        while True:
            if small and self.linger > 0:
                await trio.sleep(self.linger)
            small = False
            try:
                msgs = await consumer.fetch(max(1, int(self.batch / per_msg)), self.fetch_timeout)
            except BusError as exc:
                log.warning("events fetch failed: %s", exc)
                await trio.sleep(delay)
                continue
            if not msgs:
                continue
            self.stats.received += len(msgs)
            events: list[LogRow] = []
            good, poison = [], []
            for m in msgs:
                rows, bad = rows_from_bytes(m.data)
                if bad:
                    self.stats.poison += bad
                    log.error("dropping %d undecodable event(s) (seq %d)", bad, m.stream_seq)
                if rows:
                    events.extend(rows)
                    good.append(m)
                else:
                    poison.append(m)
            per_msg = max(1.0, len(events) / len(msgs))
            small = len(events) < self.batch / 2
            try:
                if poison:
                    await consumer.term(poison)
                if events:
                    try:
                        n = await self._write(events)
                    except (psycopg.Error, OSError) as exc:
                        self.stats.db_errors += 1
                        if failing_since is None:
                            failing_since, failures = trio.current_time(), 0
                        failures += 1
                        log.warning(
                            "message log write of %d events failed (Postgres: %s); the events wait in the "
                            "EVENTS stream, retry in %.1fs (%d failed attempt(s) so far)",
                            len(events),
                            " ".join(str(exc).split()),
                            delay,
                            failures,
                        )
                        await consumer.nak(good, delay=delay)
                        await trio.sleep(delay)
                        delay = min(delay * 2, self.max_retry_delay)
                        continue
                    self.stats.written += n
                    await consumer.ack(good, wait=False)  # a lost ack: the rows come back, skipped by the key
                    delay = self.retry_delay
                    if failing_since is not None:
                        log.warning(
                            "message log writes to Postgres resumed after %.1fs (%d failed attempt(s)); "
                            "catching up with the waiting events",
                            trio.current_time() - failing_since,
                            failures,
                        )
                        failing_since = None
            except BusError as exc:
                # the ack is lost: the events come back after ack_wait and are skipped as duplicates
                log.warning("events ack failed: %s", exc)
