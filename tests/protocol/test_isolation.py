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


def test_public_api_is_re_exported() -> None:
    """Every name in the package's __all__ resolves, and is the object of its home module."""
    from catalyst_smpp.protocol import codec, pdu, session

    api = catalyst_smpp.protocol
    assert len(api.__all__) == len(set(api.__all__))
    for name in api.__all__:
        assert getattr(api, name) is not None, name
    assert api.SmppConnection is session.SmppConnection
    assert api.decode_pdu is codec.decode_pdu and api.encode_pdu is codec.encode_pdu
    assert {c.__name__ for c in pdu.PDU_CLASSES.values()} <= set(api.__all__)
