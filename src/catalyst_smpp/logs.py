"""Structured logging for the daemon: one line per record, text or JSON, to stderr (journald) or a file.

Every line carries the timestamp (UTC, ISO 8601 with milliseconds), level, logger name, message, the node
id and any key fields the caller passed with ``extra={...}``::

    log.warning("operator bind failed", extra={"operator": "op1", "status": "ESME_RBINDFAIL"})

text:  2024-05-01T10:00:00.123Z WARNING catalyst_smpp.gateway.connector: operator bind failed
       node=n1 operator=op1 status=ESME_RBINDFAIL            (one line)
json:  {"ts": "2024-05-01T10:00:00.123Z", "level": "WARNING", "logger": "...", "msg": "...",
        "node": "n1", "operator": "op1", "status": "ESME_RBINDFAIL"}        (one line)

``setup_logging(cfg.logging, node=...)`` installs the handler on the root logger (replacing an earlier one
of ours); ``set_level("DEBUG")`` changes the level at run time (SIGHUP after editing the config).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import sys
from pathlib import Path
from typing import IO, Any

__all__ = ["JsonFormatter", "TextFormatter", "set_level", "setup_logging", "verbosity_level"]

# attributes every LogRecord has; anything else came in through extra={...}
_STANDARD = frozenset(
    vars(logging.LogRecord("x", logging.INFO, "x", 0, "x", None, None)).keys()
    | {"message", "asctime", "taskName"}
)

_HANDLER_MARK = "_catalyst_smpp_handler"


def _timestamp(record: logging.LogRecord) -> str:
    t = dt.datetime.fromtimestamp(record.created, tz=dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{int(record.msecs):03d}Z"


def _fields(record: logging.LogRecord, static: dict[str, Any]) -> dict[str, Any]:
    out = dict(static)
    for k, v in vars(record).items():
        if k not in _STANDARD and not k.startswith("_"):
            out[k] = v
    return out


def _text_value(v: Any) -> str:
    s = str(v)
    if s == "" or any(c in s for c in ' "=\n\t'):
        return json.dumps(s, ensure_ascii=False)
    return s


class _Formatter(logging.Formatter):
    """What both formats share: the static fields (e.g. the node id) and the extra fields of a record,
    and its exception and stack text."""

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def fields(self, record: logging.LogRecord) -> dict[str, Any]:
        return _fields(record, self.static)

    def traces(self, record: logging.LogRecord) -> dict[str, str]:
        """``exc`` and ``stack``, when the record has them."""
        out = {}
        if record.exc_info:
            out["exc"] = self.formatException(record.exc_info)
        if record.stack_info:
            out["stack"] = self.formatStack(record.stack_info)
        return out


class TextFormatter(_Formatter):
    """``<ts> <LEVEL> <logger>: <message> key=value ...`` (values quoted when they contain spaces)."""

    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage()
        line = f"{_timestamp(record)} {record.levelname} {record.name}: {msg}"
        fields = self.fields(record)
        if fields:
            line += " " + " ".join(f"{k}={_text_value(v)}" for k, v in fields.items())
        for text in self.traces(record).values():
            line += "\n" + text
        return line


class JsonFormatter(_Formatter):
    """One JSON object per line: ts, level, logger, msg, the static fields, extra fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "ts": _timestamp(record),
            "level": record.levelname,
            "logger": record.name,
            "msg": record.getMessage(),
        }
        for k, v in self.fields(record).items():
            out.setdefault(k, v)
        out.update(self.traces(record))
        return json.dumps(out, ensure_ascii=False, default=str)


def setup_logging(
    level: str = "INFO",
    fmt: str = "text",
    *,
    file: Path | None = None,
    node: str = "",
    stream: IO[str] | None = None,
) -> logging.Handler:
    """Install our handler on the root logger (replacing a previous one of ours) and set the level."""
    root = logging.getLogger()
    for h in list(root.handlers):
        if getattr(h, _HANDLER_MARK, False):
            root.removeHandler(h)
            h.close()
    handler: logging.Handler
    if file is not None:
        file.parent.mkdir(parents=True, exist_ok=True)
        handler = logging.FileHandler(file, encoding="utf-8")
    else:
        handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    static = {"node": node} if node else {}
    handler.setFormatter(JsonFormatter(static) if fmt == "json" else TextFormatter(static))
    setattr(handler, _HANDLER_MARK, True)
    root.addHandler(handler)
    set_level(level)
    return handler


def set_level(level: str) -> None:
    """Change the root level (``DEBUG`` … ``CRITICAL``); noisy libraries stay at WARNING unless DEBUG."""
    lvl = logging.getLevelName(level.upper())
    if not isinstance(lvl, int):
        raise ValueError(f"unknown log level {level!r}")
    logging.getLogger().setLevel(lvl)
    quiet = lvl if lvl <= logging.DEBUG else max(lvl, logging.WARNING)
    for name in ("nats", "asyncio", "psycopg"):
        logging.getLogger(name).setLevel(quiet)


def verbosity_level(verbose: int) -> str:
    """The level for a command's -v count: WARNING without, INFO with -v, DEBUG with -vv or more."""
    return "WARNING" if verbose <= 0 else "INFO" if verbose == 1 else "DEBUG"
