"""The last good configuration snapshot on disk, so a node can start while Postgres is down.

The gateway writes its snapshot here after every successful load from Postgres (start, reload) and reads it
back only when it starts and Postgres cannot be reached.  The file holds partner password *hashes*, operator
passwords and webhook secrets: it is written with mode 0600, atomically (temporary file in the same directory,
fsync, rename, fsync of the directory), so a crash never leaves a half-written snapshot behind.

    save_snapshot_file(path, snapshot)
    saved = load_snapshot_file(path)     # SavedSnapshot(snapshot, saved_at) ; FileNotFoundError, ValueError
"""

from __future__ import annotations

import datetime as dt
import ipaddress
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import attrs

from ..billing.money import Money
from .records import (
    ConfigSnapshot,
    MoRoute,
    Operator,
    Partner,
    Plan,
    PlanRow,
    Route,
    RouteTarget,
    Webhook,
)

__all__ = ["FORMAT", "SNAPSHOT_FILE", "SavedSnapshot", "load_snapshot_file", "save_snapshot_file"]

SNAPSHOT_FILE = "config-snapshot.json"
"""Its name under ``node.state_dir``."""
FORMAT = 1

_DATETIMES = ("created_at", "updated_at", "effective_from", "effective_until")
_MONEY = ("submit_price", "delivery_price")


@attrs.frozen
class SavedSnapshot:
    snapshot: ConfigSnapshot
    saved_at: dt.datetime
    """When it was written (UTC)."""

    def age(self, now: dt.datetime | None = None) -> float:
        """Seconds since it was written."""
        return ((now or dt.datetime.now(dt.UTC)) - self.saved_at).total_seconds()


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, Money):  # exact: the amount as text, never a float
        return {"amount": str(value.amount), "currency": value.currency}
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, tuple | list):
        return [_plain(v) for v in value]
    if attrs.has(type(value)):
        return {f.name: _plain(getattr(value, f.name)) for f in attrs.fields(type(value))}
    return value


def _record(cls: type[Any], data: dict[str, Any]) -> Any:
    names = {f.name for f in attrs.fields(cls)}
    fields = {k: v for k, v in data.items() if k in names}  # a key from a newer format is ignored
    for k in _DATETIMES:
        if isinstance(fields.get(k), str):
            fields[k] = dt.datetime.fromisoformat(fields[k])
    for k in _MONEY:
        if isinstance(fields.get(k), dict):
            fields[k] = Money(fields[k]["amount"], fields[k]["currency"])
    if cls is Route:
        fields["targets"] = tuple(_record(RouteTarget, t) for t in fields.get("targets", ()))
    if cls is Plan:
        fields["rows"] = tuple(_record(PlanRow, r) for r in fields.get("rows", ()))
    return cls(**fields)


def encode_snapshot(snap: ConfigSnapshot, saved_at: dt.datetime | None = None) -> bytes:
    doc = {
        "format": FORMAT,
        "saved_at": (saved_at or dt.datetime.now(dt.UTC)).isoformat(),
        "version": snap.version,
        "partners": _plain(snap.partners),
        "operators": _plain(snap.operators),
        "routes": _plain(snap.routes),
        "mo_routes": _plain(snap.mo_routes),
        "plans": _plain(snap.plans),
        "webhooks": _plain(snap.webhooks),
    }
    return json.dumps(doc, indent=1, sort_keys=True).encode()


def decode_snapshot(data: bytes) -> SavedSnapshot:
    """ValueError (with what is wrong) for anything that is not a snapshot file of a known format."""
    try:
        doc = json.loads(data)
        if not isinstance(doc, dict) or doc.get("format") != FORMAT:
            raise ValueError(
                f"unknown snapshot format {doc.get('format') if isinstance(doc, dict) else doc!r}"
            )
        snap = ConfigSnapshot(
            version=int(doc["version"]),
            partners=tuple(_record(Partner, p) for p in doc["partners"]),
            operators=tuple(_record(Operator, o) for o in doc["operators"]),
            routes=tuple(_record(Route, r) for r in doc["routes"]),
            mo_routes=tuple(_record(MoRoute, m) for m in doc.get("mo_routes", ())),
            plans=tuple(_record(Plan, p) for p in doc.get("plans", ())),
            webhooks=tuple(_record(Webhook, w) for w in doc.get("webhooks", ())),
        )
        saved_at = dt.datetime.fromisoformat(doc["saved_at"])
    except ValueError:
        raise
    except (KeyError, TypeError, AttributeError) as e:
        raise ValueError(f"not a valid snapshot file: {type(e).__name__}: {e}") from None
    return SavedSnapshot(snap, saved_at)


def save_snapshot_file(path: Path, snap: ConfigSnapshot, *, saved_at: dt.datetime | None = None) -> None:
    """Write atomically with mode 0600 (temp file + fsync + rename + directory fsync).  Blocking."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    data = encode_snapshot(snap, saved_at)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")  # per process: workers may share the directory
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)  # also when a stale temp file had other bits
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    dfd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dfd)
    finally:
        os.close(dfd)


def load_snapshot_file(path: Path) -> SavedSnapshot:
    """Read a saved snapshot: FileNotFoundError when there is none, ValueError when it is unreadable."""
    return decode_snapshot(Path(path).read_bytes())
