"""docs/configuration.md documents every key of the configuration schema, with the schema's default.

The keys come from the schema itself (the attrs classes of :mod:`catalyst_smpp.config`, walked through their
type hints), not from reading config.py's text, so a key added there fails here until the reference has a row
for it; a row for a key the schema no longer has fails too.  Each documented default is read back through
``parse_config`` (as the gateway would read it from a file) and compared with the schema's default.
"""

from __future__ import annotations

import re
import tomllib
import typing
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from catalyst_smpp.config import Config, parse_config

DOC = Path(__file__).resolve().parents[1] / "docs" / "configuration.md"

_ROW = re.compile(r"^\| `([a-z0-9_.<>\[\]]+)` \| (.*?) \| (.*?) \| (reload|restart|seed|—) \| (.+) \|$")


@attrs.frozen
class Key:
    path: str  # "nats.streams.mt.max_age", "listeners[].port"
    owner: type  # the attrs class holding the field
    default: Any  # attrs.NOTHING when the key is required


def _field_default(f: attrs.Attribute[Any]) -> Any:
    d: Any = f.default
    return d.factory() if isinstance(d, attrs.Factory) else d  # type: ignore[arg-type]  # (a class at run time)


def schema_keys(cls: type = Config, inst: Any = None, prefix: str = "") -> Iterator[Key]:
    """Every leaf key of the schema with its default (read off ``inst``, the parent's default, where there is
    one: the stream defaults differ per stream)."""
    hints = typing.get_type_hints(cls)
    if inst is None and cls is Config:
        inst = Config()
    for f in attrs.fields(cls):
        tp = hints[f.name]
        default = getattr(inst, f.name) if inst is not None else _field_default(f)
        path = prefix + f.name
        args = typing.get_args(tp)
        if attrs.has(tp):
            yield from schema_keys(tp, default, path + ".")
        elif typing.get_origin(tp) is tuple and args and attrs.has(args[0]):
            yield from schema_keys(args[0], None, path + "[].")
        else:
            yield Key(path, cls, default)


def documented_rows() -> dict[str, str]:
    """Key pattern → its default cell, for every table row of the reference."""
    rows: dict[str, str] = {}
    for line in DOC.read_text(encoding="utf-8").splitlines():
        m = _ROW.match(line)
        if m:
            assert m.group(1) not in rows, f"{m.group(1)} documented twice"
            rows[m.group(1)] = m.group(3)
    return rows


def _matches(pattern: str, path: str) -> dict[str, str] | None:
    """``nats.streams.<stream>.max_age`` matches ``nats.streams.mt.max_age`` as {"stream": "mt"}."""
    rx = re.escape(pattern).replace(re.escape("<stream>"), "(?P<stream>[a-z_]+)")
    m = re.fullmatch(rx, path)
    return m.groupdict() if m else None


def _default_for(cell: str, bindings: dict[str, str]) -> str | None:
    """The TOML text of the documented default: one value for all, or ``mt `..`, dlr `..``` per stream."""
    if cell == "required":
        return None
    per: dict[str, str] = dict(re.findall(r"([a-z_]+) `([^`]*)`", cell))
    if per:
        return per[bindings["stream"]]
    m = re.fullmatch(r"`([^`]*)`", cell)
    assert m, f"default cell {cell!r} is neither `value`, per-stream values nor 'required'"
    return str(m.group(1))


def _read_back(key: Key, toml_value: str) -> Any:
    """What the gateway makes of ``key = toml_value`` in a file (relative paths anchored at ``.``)."""
    section, _, name = key.path.rpartition(".")
    if section.endswith("[]"):
        table = section[:-2]
        filler = [
            f"{f.name} = {_filler(f)}"
            for f in attrs.fields(key.owner)
            if f.default is attrs.NOTHING and f.name != name
        ]
        text = "\n".join([f"[[{table}]]", *filler, f"{name} = {toml_value}"])
        cfg = parse_config(text, base_dir=Path("."))
        return getattr(getattr(cfg, table)[0], name)
    text = f"[{section}]\n{name} = {toml_value}" if section else f"{name} = {toml_value}"
    obj: Any = parse_config(text, base_dir=Path("."))
    for part in key.path.split("."):
        obj = getattr(obj, part)
    return obj


def _filler(f: attrs.Attribute[Any]) -> str:
    """A valid value for a required seed key (the other keys of the table under test)."""
    return "1" if f.type in (int, "int") else '"x"'


def test_every_schema_key_is_documented_and_every_documented_key_exists() -> None:
    rows = documented_rows()
    keys = [k.path for k in schema_keys()]
    undocumented = [k for k in keys if not any(_matches(p, k) is not None for p in rows)]
    assert not undocumented, f"keys missing from docs/configuration.md: {undocumented}"
    stale = [p for p in rows if not any(_matches(p, k) is not None for k in keys)]
    assert not stale, f"docs/configuration.md documents keys config.py does not have: {stale}"


@pytest.mark.parametrize("key", list(schema_keys()), ids=lambda k: k.path)
def test_documented_default_is_the_schema_default(key: Key) -> None:
    rows = documented_rows()
    (pattern, bindings), *more = [(p, b) for p in rows if (b := _matches(p, key.path)) is not None]
    assert not more, f"{key.path} matches several rows"
    toml_value = _default_for(rows[pattern], bindings)
    if toml_value is None:
        assert key.default is attrs.NOTHING, f"{key.path} is documented as required but has a default"
        return
    assert key.default is not attrs.NOTHING, f"{key.path} is required but documented with a default"
    tomllib.loads(f"v = {toml_value}")  # the cell is a TOML value as written in the file
    assert _read_back(key, toml_value) == key.default
