"""Session throughput: our load generator against our SMSC simulator, next to smpp34's own pair.

One command runs everything on loopback, each side in its own process::

    .venv/bin/python bench/sessions.py                 # 1 bind x window 64, 4 binds x window 64
    .venv/bin/python bench/sessions.py --count 50000   # more messages per run
    .venv/bin/python bench/sessions.py --profile       # also profile our pair and print where time goes

Ours is ``catalyst-smpp load`` against ``catalyst-smpp smsc-sim``.  The smpp34 pair is driven by this
file (hidden sub-commands ``_smpp34-server`` / ``_smpp34-client``): its ``Client(window_size=...)`` is
not enforced, so the window is kept by running ``window`` submitters per bind; binds are transceivers
(its server answers an RX bind's deliver_sm_resp with generic_nack).  No receipts are requested on
either side: this measures submit_sm -> submit_sm_resp.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import io
import json
import math
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from _procs import catalyst_command, stop, wait_for_port_file  # bench/ is on sys.path when run as a script

from catalyst_smpp.util.latency import LatencyRecorder

HOST = "127.0.0.1"
TEXT = "Benchmark message 0123456789"
DEST = "447700900123"
SOURCE = "CATALYST"


# ------------------------------------------------------------------------------------------
# helpers shared by both pairs


# ------------------------------------------------------------------------------------------
# the smpp34 pair (asyncio; the package is imported only inside these sub-commands)


async def _smpp34_server(port_file: Path) -> None:
    import smpp34

    with socket.socket() as probe:  # smpp34's Server does not report the port it bound, so pick one first
        probe.bind((HOST, 0))
        port = probe.getsockname()[1]
    server = smpp34.Server(HOST, port, system_id="smpp34sim")
    await server.start()
    tmp = port_file.with_suffix(".tmp")
    tmp.write_text(str(port))
    tmp.replace(port_file)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    counter = 0

    async def serve() -> None:
        nonlocal counter
        while True:
            event = await server.next()
            if isinstance(event, smpp34.SubmitSmEvent):
                counter += 1
                event.accept(format(counter, "x"))

    task = asyncio.create_task(serve())
    await stop.wait()
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task
    await server.stop()
    print(json.dumps({"submit_sm": counter}), flush=True)


async def _smpp34_client(port: int, binds: int, window: int, count: int) -> dict[str, Any]:
    import smpp34

    per_bind = [count // binds + (1 if i < count % binds else 0) for i in range(binds)]
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    clients = [
        smpp34.Client(HOST, port, f"bench{i}", "secret", bind_type="TRX", window_size=window)
        for i in range(binds)
    ]
    sessions = [await client.connect() for client in clients]
    payload = TEXT.encode("ascii")

    async def submitter(session: Any, quota: list[int]) -> None:
        perf = time.perf_counter
        while quota[0] > 0:
            quota[0] -= 1
            t0 = perf()
            resp = await session.submit_sm(DEST, payload, source_addr=SOURCE)
            latencies.append(perf() - t0)
            statuses[resp.command_status] = statuses.get(resp.command_status, 0) + 1

    started = time.perf_counter()
    tasks: list[Coroutine[Any, Any, None]] = []
    for session, n in zip(sessions, per_bind, strict=True):
        quota = [n]
        tasks.extend(submitter(session, quota) for _ in range(window))
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - started
    for session in sessions:
        with contextlib.suppress(Exception):
            await session.unbind()
    for client in clients:
        with contextlib.suppress(Exception):
            await client.stop()
    recorder = LatencyRecorder()
    recorder.extend(latencies)
    return {
        "submitted": len(latencies),
        "accepted": statuses.get(0, 0),
        "elapsed": elapsed,
        "throughput": len(latencies) / elapsed if elapsed > 0 else 0.0,
        "p50": recorder.percentile(50),
        "p99": recorder.percentile(99),
    }


def _asyncio_loop_name() -> str:
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def _asyncio_run(coro: Any) -> Any:
    """asyncio.run, on uvloop when it is installed (smpp34's authors measure with it)."""
    if _asyncio_loop_name() == "uvloop":
        import uvloop

        return uvloop.run(coro)
    return asyncio.run(coro)


def _exit_now(code: int = 0) -> None:
    # smpp34's runtime threads can abort the interpreter at finalisation; everything is flushed by now.
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def run_smpp34_pair(binds: int, window: int, count: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="bench-smpp34-") as tmp:
        port_file = Path(tmp) / "port"
        server = subprocess.Popen(
            [sys.executable, __file__, "_smpp34-server", "--port-file", str(port_file)],
            stdout=subprocess.PIPE,
        )
        try:
            port = wait_for_port_file(port_file, server)
            out = subprocess.run(
                [
                    sys.executable,
                    __file__,
                    "_smpp34-client",
                    "--port",
                    str(port),
                    "--binds",
                    str(binds),
                    "--window",
                    str(window),
                    "--count",
                    str(count),
                ],
                check=True,
                capture_output=True,
                text=True,
                timeout=600,
            ).stdout
        finally:
            stop(server)
        return dict(json.loads(out.strip().splitlines()[-1]))


# ------------------------------------------------------------------------------------------
# our pair: catalyst-smpp smsc-sim + catalyst-smpp load


def _profiled(command: list[str], prof_file: Path) -> list[str]:
    """The same command under cProfile (the console script is a Python file, so run it as one)."""
    if command[0] == sys.executable:
        return [sys.executable, "-m", "cProfile", "-o", str(prof_file), *command[1:]]
    return [sys.executable, "-m", "cProfile", "-o", str(prof_file), *command]


def _py_spy(command: list[str], out_file: Path) -> list[str]:
    return [
        "py-spy",
        "record",
        "--format",
        "raw",
        "-o",
        str(out_file),
        "--",
        sys.executable,
        *(command if command[0] != sys.executable else command[1:]),
    ]


def run_our_pair(
    binds: int, window: int, count: int, profile: str | None = None, profile_dir: Path | None = None
) -> dict[str, Any]:
    cmd = catalyst_command()
    with tempfile.TemporaryDirectory(prefix="bench-catalyst-") as tmp:
        port_file = Path(tmp) / "port"
        sim_cmd = [
            *cmd,
            "smsc-sim",
            "--host",
            HOST,
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--stats-interval",
            "0",
            "--json",
        ]
        wrap: Callable[[list[str], str], list[str]] = {
            None: lambda c, _name: c,
            "cprofile": lambda c, name: _profiled(c, profile_dir / f"{name}.prof"),  # type: ignore[operator]
            "py-spy": lambda c, name: _py_spy(c, profile_dir / f"{name}.txt"),  # type: ignore[operator]
        }[profile]
        sim = subprocess.Popen(wrap(sim_cmd, "smsc-sim"), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
        try:
            port = wait_for_port_file(port_file, sim)
            load_cmd = [
                *cmd,
                "load",
                "--host",
                HOST,
                "--port",
                str(port),
                "--binds",
                str(binds),
                "--window",
                str(window),
                "--count",
                str(count),
                "--text",
                TEXT,
                "--source",
                SOURCE,
                "--dest",
                DEST,
                "--json",
            ]
            out = subprocess.run(
                wrap(load_cmd, "load"), check=True, capture_output=True, text=True, timeout=600
            ).stdout
        finally:
            stop(sim)
    report = json.loads(out)
    latency = report["latency"]["submit_resp"]
    return {
        "loop": "trio",
        "submitted": report["submitted"],
        "accepted": report["accepted"],
        "elapsed": report["elapsed"],
        "throughput": report["throughput"],
        "p50": latency["p50"],
        "p99": latency["p99"],
    }


# ------------------------------------------------------------------------------------------
# report


def _print_profile(prof_file: Path, top: int) -> None:
    stream = io.StringIO()
    stats = pstats.Stats(str(prof_file), stream=stream)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    print(f"\n--- {prof_file.stem}: top {top} functions by own time ---")
    body = stream.getvalue()
    # drop pstats' preamble up to the column header
    start = body.find("   ncalls")
    print(body[start:] if start >= 0 else body)
    stream = io.StringIO()
    stats = pstats.Stats(str(prof_file), stream=stream)
    stats.strip_dirs().sort_stats("cumulative").print_stats(top)
    print(f"--- {prof_file.stem}: top {top} by cumulative time ---")
    body = stream.getvalue()
    start = body.find("   ncalls")
    print(body[start:] if start >= 0 else body)


def _fmt_ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1000:.2f}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command")
    srv = sub.add_parser("_smpp34-server", help=argparse.SUPPRESS)
    srv.add_argument("--port-file", type=Path, required=True)
    cli = sub.add_parser("_smpp34-client", help=argparse.SUPPRESS)
    cli.add_argument("--port", type=int, required=True)
    cli.add_argument("--binds", type=int, required=True)
    cli.add_argument("--window", type=int, required=True)
    cli.add_argument("--count", type=int, required=True)
    parser.add_argument("--count", type=int, default=20000, help="submit_sm per run (default 20000)")
    parser.add_argument("--window", type=int, default=64, help="window per bind (default 64)")
    parser.add_argument(
        "--binds", type=int, nargs="+", default=[1, 4], help="bind counts to run (default 1 4)"
    )
    parser.add_argument("--only", choices=["catalyst", "smpp34"], help="run one pair only")
    parser.add_argument(
        "--profile",
        nargs="?",
        const="cprofile",
        choices=["cprofile", "py-spy"],
        help="also run our pair (first bind count) under a profiler and print where time goes",
    )
    parser.add_argument("--top", type=int, default=25, help="functions to list per profile (default 25)")
    parser.add_argument("--json", action="store_true", help="print the results as JSON instead of a table")
    args = parser.parse_args(argv)

    if args.command == "_smpp34-server":
        _asyncio_run(_smpp34_server(args.port_file))
        _exit_now()
    if args.command == "_smpp34-client":
        result = _asyncio_run(_smpp34_client(args.port, args.binds, args.window, args.count))
        result["loop"] = _asyncio_loop_name()
        print(json.dumps(result), flush=True)
        _exit_now()

    rows: list[dict[str, Any]] = []
    for binds in args.binds:
        for name, runner in (("catalyst", run_our_pair), ("smpp34", run_smpp34_pair)):
            if args.only and name != args.only:
                continue
            print(
                f"running {name}: {binds} bind(s) x window {args.window}, {args.count} submit_sm ...",
                file=sys.stderr,
                flush=True,
            )
            result = runner(binds, args.window, args.count)
            rows.append({"pair": name, "binds": binds, "window": args.window, **result})

    if args.json:
        print(json.dumps(rows, indent=2))
    else:
        header = (
            f"{'pair':<10} {'loop':<8} {'binds':>5} {'window':>6} {'submit_sm':>9} {'ok':>9} "
            f"{'submit_sm/s':>11} "
            f"{'p50 ms':>8} {'p99 ms':>8}"
        )
        print(header)
        print("-" * len(header))
        for row in rows:
            print(
                f"{row['pair']:<10} {row.get('loop', '?'):<8} {row['binds']:>5} {row['window']:>6} "
                f"{row['submitted']:>9} "
                f"{row['accepted']:>9} {row['throughput']:>11.0f} {_fmt_ms(row['p50']):>8} "
                f"{_fmt_ms(row['p99']):>8}"
            )

    if args.profile:
        binds = args.binds[0]
        with tempfile.TemporaryDirectory(prefix="bench-profile-") as tmp:
            profile_dir = Path(tmp)
            if args.profile == "py-spy" and shutil.which("py-spy") is None:
                print("py-spy is not installed; using cProfile", file=sys.stderr)
                args.profile = "cprofile"
            print(
                f"\nprofiling catalyst pair ({args.profile}): {binds} bind(s) x window {args.window}",
                file=sys.stderr,
                flush=True,
            )
            result = run_our_pair(
                binds, args.window, args.count, profile=args.profile, profile_dir=profile_dir
            )
            print(f"\nunder the profiler: {result['throughput']:.0f} submit_sm/s")
            for name in ("load", "smsc-sim"):
                if args.profile == "cprofile":
                    _print_profile(profile_dir / f"{name}.prof", args.top)
                else:
                    _print_py_spy(profile_dir / f"{name}.txt", args.top)
    return 0


def _print_py_spy(raw_file: Path, top: int) -> None:
    """Summarise py-spy's collapsed stacks: own samples per leaf frame."""
    leaves: dict[str, int] = {}
    total = 0
    for line in raw_file.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        samples = int(n)
        total += samples
        leaf = stack.split(";")[-1]
        leaves[leaf] = leaves.get(leaf, 0) + samples
    print(f"\n--- {raw_file.stem}: top {top} leaf frames of {total} samples ---")
    for leaf, samples in sorted(leaves.items(), key=lambda kv: -kv[1])[:top]:
        print(f"{100.0 * samples / max(total, 1):6.1f}%  {leaf}")


if __name__ == "__main__":
    sys.exit(main())
