"""Instructions per message: the gateway's CPU cost measured by counting, not timing.

One command::

    .venv/bin/python bench/instructions.py                       # this tree
    .venv/bin/python bench/instructions.py --against 1ecb3a6     # and an older commit, in the same run
    .venv/bin/python bench/instructions.py --against /tmp/old/src --counts 1000 4000 --json

Why: on a shared two-core machine the gateway's CPU time per message (``bench/e2e.py``) moves by up to 2x
from run to run with what the other tenants do, so a 5 % difference cannot be told apart from noise.  The
number of instructions the gateway executes is nearly independent of that.  Each tree's gateway runs under
``valgrind --tool=callgrind`` (about 50x slower, so few messages) in ``bench/e2e.py`` (1 partner bind,
window 50, receipts on, everything else as there), twice, with two message counts; the difference of the
two totals over the difference of the counts is the cost of one message end to end (accept, relay,
receipt, delivery, message log), without start-up and shutdown.  Timing-dependent work (batch sizes, idle
wake-ups) still differs a little between runs: run it twice to see the spread.

``--against`` takes a git revision (exported with ``git archive``; its C core is built with pip in an
isolated build environment, or copied from this tree when ``native/`` is the same) or a source directory
(its ``src/``, with the C core already built).  Needs valgrind (Debian's ``valgrind`` package).
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
E2E = Path(__file__).resolve().parent / "e2e.py"


def _export(rev: str, into: Path) -> Path:
    """``rev`` of this repository as a source tree with its C core built; its ``src`` directory."""
    tree = into / rev.replace("/", "_")
    tree.mkdir(parents=True)
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev], check=True, capture_output=True).stdout
    subprocess.run(["tar", "-x", "-C", str(tree)], input=archive, check=True)
    same_native = (
        subprocess.run(["git", "-C", str(ROOT), "diff", "--quiet", rev, "--", "native/"]).returncode == 0
    )
    dest = tree / "src" / "catalyst_smpp"
    built = sorted((ROOT / "src" / "catalyst_smpp").glob("_native*.so"))
    if same_native and built:
        shutil.copy2(built[0], dest / built[0].name)
        return tree / "src"
    wheels = into / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", str(wheels), str(tree)],
        check=True,
        capture_output=True,
    )
    (wheel,) = wheels.glob("*.whl")
    with zipfile.ZipFile(wheel) as z:
        for name in z.namelist():
            if name.startswith("catalyst_smpp/_native"):
                (dest / Path(name).name).write_bytes(z.read(name))
    wheel.unlink()
    return tree / "src"


def _instructions(src: Path | None, count: int, work: Path) -> tuple[int, dict[str, object]]:
    """Instructions the gateway executed in one ``bench/e2e.py`` run of ``count`` messages."""
    out = work / f"cg.{count}.{abs(hash(str(src)))}"
    wrap = f"valgrind --tool=callgrind --dump-instr=no --callgrind-out-file={out}.%p"
    cmd = [sys.executable, str(E2E), "--count", str(count), "--binds", "1", "--window", "50"]
    cmd += ["--gateway-wrap", wrap, "--events-timeout", "300", "--json"]
    if src is not None:
        cmd += ["--gateway-src", str(src)]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        raise SystemExit(f"bench/e2e.py failed ({res.returncode}):\n{res.stderr[-3000:]}")
    report = json.loads(res.stdout[res.stdout.index("{") :])
    files = list(work.glob(out.name + ".*"))
    if len(files) != 1:
        raise SystemExit(f"expected one callgrind output for the gateway, found {files}")
    total = 0
    for line in files[0].read_text(errors="replace").splitlines():
        if line.startswith("totals:") or line.startswith("summary:"):
            total = int(line.split()[1])
    files[0].unlink()
    if report.get("receipts_missing") or report.get("rejected") or report.get("unanswered"):
        raise SystemExit(f"the run lost messages: {report}")
    # one id mapping per message submitted to the simulator: more means JetStream redelivered MT messages
    # (the gateway was slower than its ack wait) and the count includes that work; a handful is noise,
    # more than 1 % spoils the figure
    mapped = sum(v for k, v in report.get("left_in_streams", {}).items() if k.endswith("_OPIDS"))
    if mapped > count * 1.01:
        raise SystemExit(
            f"{mapped} operator id mappings for {count} messages: redeliveries; run it on a quieter machine"
        )
    return total, report


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--against", action="append", default=[], metavar="REV|DIR", help="another tree")
    p.add_argument("--counts", type=int, nargs=2, default=(600, 1800), metavar=("N1", "N2"))
    p.add_argument("--json", action="store_true")
    args = p.parse_args()
    if shutil.which("valgrind") is None:
        raise SystemExit("valgrind is not installed (apt-get install valgrind)")
    n1, n2 = args.counts
    if n2 <= n1:
        raise SystemExit("--counts: the second count must be larger")
    rows = []
    with tempfile.TemporaryDirectory(prefix="instr-") as tmp:
        work = Path(tmp)
        trees: list[tuple[str, Path | None]] = [("this tree", None)]
        for a in args.against:
            d = Path(a)
            trees.append((a, d if d.is_dir() else _export(a, work / "trees")))
        for name, src in trees:
            # byte-compiled first: the first run would otherwise compile what the second finds cached
            d = src if src is not None else ROOT / "src"
            subprocess.run([sys.executable, "-m", "compileall", "-q", str(d)], check=True)
            i1, _ = _instructions(src, n1, work)
            i2, _ = _instructions(src, n2, work)
            per = (i2 - i1) / (n2 - n1)
            rows.append(
                {"tree": name, "count1": n1, "instr1": i1, "count2": n2, "instr2": i2, "per_msg": per}
            )
            if not args.json:
                print(f"{name}: {i1:,} instructions at {n1} messages, {i2:,} at {n2}", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    base = rows[0]["per_msg"]
    print(f"{'tree':<24} {'instructions/message':>22} {'vs this tree':>13}")
    for r in rows:
        per = float(r["per_msg"])  # type: ignore[arg-type]
        print(f"{r['tree']:<24} {per:>22,.0f} {per / float(base) - 1:>+12.1%}")  # type: ignore[arg-type]


if __name__ == "__main__":
    main()
