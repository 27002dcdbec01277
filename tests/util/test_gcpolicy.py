"""The gateway's collector settings, in a process of their own (they are global to the interpreter)."""

from __future__ import annotations

import json
import subprocess
import sys

_PROBE = """
import gc, json
from catalyst_smpp.util import gcpolicy
before = gc.get_threshold()
keep = [[i] for i in range(1000)]  # start-up's objects
gcpolicy.settle()
print(json.dumps({"before": before, "after": gc.get_threshold(), "frozen": gc.get_freeze_count(),
                  "tracked_after": len(gc.get_objects())}))
"""


def test_settle_freezes_start_up_and_raises_the_young_threshold() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True)
    r = json.loads(out.stdout)
    assert r["before"][0] == 700  # the interpreter's default, which the policy replaces
    assert r["after"][0] == 25_000
    assert r["after"][1:] == r["before"][1:]
    # what start-up built (the 1,000 lists included) is frozen: no later collection walks it
    assert r["frozen"] >= 1000
    assert r["tracked_after"] < 100
