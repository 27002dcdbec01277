"""The protocol core stays sans-IO: importing it pulls in no event loop, bus or database library."""

from __future__ import annotations

import json
import pkgutil
import subprocess
import sys

import catalyst_smpp.protocol

FORBIDDEN = ("trio", "nats", "asyncio", "psycopg", "psycopg_pool", "trio_asyncio", "socket", "selectors")


def test_protocol_imports_no_io_libraries() -> None:
    submodules = sorted(
        f"catalyst_smpp.protocol.{m.name}" for m in pkgutil.iter_modules(catalyst_smpp.protocol.__path__)
    )
    assert {"catalyst_smpp.protocol.session", "catalyst_smpp.protocol.framing"} <= set(submodules)
    code = (
        "import importlib, json, sys\n"
        f"mods = {submodules!r}\n"
        "importlib.import_module('catalyst_smpp.protocol')\n"
        "for m in mods: importlib.import_module(m)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-I", "-c", code], capture_output=True, text=True, check=True)
    loaded = set(json.loads(out.stdout))
    bad = sorted(m for m in loaded if m.split(".")[0] in FORBIDDEN)
    assert bad == [], bad
