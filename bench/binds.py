"""Bind floods: the server's memory and a good partner's bind latency while wrong-password binds pour in.

One command, everything on loopback::

    .venv/bin/python bench/binds.py                      # this tree, then main's src (git archive) to compare
    .venv/bin/python bench/binds.py --baseline none      # this tree only
    .venv/bin/python bench/binds.py --baseline /tmp/old/src --seconds 10 --concurrency 100 --json

The server is a subprocess (hidden sub-command ``_server``): an ``SmppServer`` with the gateway's
``PostgresAuthenticator`` over in-memory partner records (scrypt hashes as in Postgres; no database needed),
default settings, no connection limits.  The bench then

1. binds partner ``acme`` once (its password is now remembered, as for a partner bound before the attack)
   and measures the server's idle RSS;
2. keeps ``--concurrency`` wrong-password binds for ``acme`` in flight from 127.0.0.2 for ``--seconds``
   (each attacker connects, binds, reads the answer, closes, again; in a process of its own, hidden
   sub-command ``_attack``), sampling the server's RSS every 10 ms;
3. meanwhile binds ``acme`` with the right password from 127.0.0.1 every 100 ms (connect to bind_resp:
   "good bind"), and every 500 ms a partner whose password was not checked yet (``cold<i>``: it has to be
   hashed: "first bind");
4. measures RSS 3 s after the flood.

The baseline runs the same against another source tree (by default ``git archive main src``, with this
tree's compiled C core copied in), e.g. the code before the bind guard.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import trio
from _procs import stop, wait_for_port_file  # bench/ is on sys.path when run as a script

ROOT = Path(__file__).resolve().parent.parent
HOST = "127.0.0.1"
GOOD_SOURCE = "127.0.0.1"
BAD_SOURCE = "127.0.0.2"
COLD_PARTNERS = 64


# ------------------------------------------------------------------------------------------ the server


async def _serve(port_file: Path) -> None:
    from catalyst_smpp.gateway.auth import PostgresAuthenticator
    from catalyst_smpp.server import ServerConfig, SmppServer
    from catalyst_smpp.store.passwords import hash_password
    from catalyst_smpp.store.records import Partner

    partners: dict[str, Partner] = {}
    auth = PostgresAuthenticator(partners.get)  # first: it sets how scrypt's memory is returned
    names = ["acme"] + [f"cold{i}" for i in range(COLD_PARTNERS)]
    partners |= {  # a hash (salt) each, as in Postgres: no partner's check is remembered for another
        sid: Partner(id=i + 1, system_id=sid, password_hash=hash_password("secret"))
        for i, sid in enumerate(names)
    }
    server = SmppServer(ServerConfig(host=HOST, port=0), auth)
    async with trio.open_nursery() as n:
        await n.start(server.serve)
        tmp = port_file.with_suffix(".tmp")
        tmp.write_text(str(server.ports[0]))
        tmp.rename(port_file)
        with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
            async for _ in signals:
                break
        n.cancel_scope.cancel()


# ------------------------------------------------------------------------------------------ the client


def _bind_pdu(system_id: str, password: str) -> bytes:
    """bind_transceiver, sequence 1, written by hand so the client side is the same for both trees."""
    body = system_id.encode() + b"\0" + password.encode() + b"\0" + b"\0" + bytes([0x34, 0, 0]) + b"\0"
    return struct.pack(">IIII", 16 + len(body), 0x00000009, 0, 1) + body


async def _bind(port: int, source: str, system_id: str, password: str) -> int:
    """Connect from ``source``, bind, return the bind_resp command_status (-1: closed without an answer)."""
    stream = await trio.open_tcp_stream(HOST, port, local_address=source)
    try:
        await stream.send_all(_bind_pdu(system_id, password))
        data = b""
        while len(data) < 16 or len(data) < struct.unpack_from(">I", data)[0]:
            chunk = await stream.receive_some(4096)
            if not chunk:
                return -1
            data += chunk
        return int(struct.unpack_from(">I", data, 8)[0])
    except (trio.BrokenResourceError, OSError):
        return -1
    finally:
        await trio.aclose_forcefully(stream)


async def _attack(port: int, seconds: float, concurrency: int) -> None:
    """``concurrency`` wrong-password binds in flight for ``seconds``; prints the answers' statuses (JSON)."""
    bad: dict[int, int] = {}
    deadline = trio.current_time() + seconds

    async def attacker() -> None:
        while trio.current_time() < deadline:
            status = await _bind(port, BAD_SOURCE, "acme", "wrong")
            bad[status] = bad.get(status, 0) + 1

    async with trio.open_nursery() as n:
        for _ in range(concurrency):
            n.start_soon(attacker)
    print(json.dumps(bad))


def _rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


class _Sampler:
    """RSS of a process every 10 ms in a thread (peak over a window)."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mb(self.pid))
            time.sleep(0.01)

    def __enter__(self) -> _Sampler:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


async def _flood(port: int, pid: int, seconds: float, concurrency: int) -> dict[str, Any]:
    assert await _bind(port, GOOD_SOURCE, "acme", "secret") == 0  # acme's password is remembered now
    await trio.sleep(1.5)
    idle = min(_rss_mb(pid) for _ in range(5))
    good: list[float] = []
    cold: list[float] = []
    deadline = trio.current_time() + seconds

    async def prober(system_ids: list[str], every: float, out: list[float]) -> None:
        await trio.sleep(0.2)  # let the flood build up
        for sid in system_ids:
            if trio.current_time() >= deadline:
                break
            t0 = time.perf_counter()
            with trio.move_on_after(60):
                status = await _bind(port, GOOD_SOURCE, sid, "secret")
                if status == 0:
                    out.append((time.perf_counter() - t0) * 1000)
            await trio.sleep(every)

    # the attackers run in their own process, so their bursts do not delay this process's measurements
    attack = await trio.lowlevel.open_process(
        [sys.executable, str(Path(__file__).resolve()), "_attack", str(port), str(seconds), str(concurrency)],
        stdout=subprocess.PIPE,
    )
    with _Sampler(pid) as sampler:
        async with trio.open_nursery() as n:
            n.start_soon(prober, ["acme"] * 10_000, 0.1, good)
            n.start_soon(prober, [f"cold{i}" for i in range(COLD_PARTNERS)], 0.5, cold)
            assert attack.stdout is not None
            out = b""
            async for chunk in attack.stdout:
                out += chunk
            await attack.wait()
        flood_end = trio.current_time()
    bad = {int(k): v for k, v in json.loads(out).items()}
    await trio.sleep(3.0)
    after = _rss_mb(pid)
    return {
        "idle_mb": round(idle, 1),
        "peak_mb": round(sampler.peak, 1),
        "after_mb": round(after, 1),
        "flood_s": round(flood_end - deadline + seconds, 1),
        "bad_binds": sum(bad.values()),
        "bad_statuses": {f"0x{k:02X}" if k >= 0 else "closed": v for k, v in sorted(bad.items())},
        "good_n": len(good),
        "good_p50_ms": round(_pct(good, 0.5), 1),
        "good_p90_ms": round(_pct(good, 0.9), 1),
        "good_max_ms": round(max(good, default=float("nan")), 1),
        "first_n": len(cold),
        "first_p50_ms": round(_pct(cold, 0.5), 1),
        "first_max_ms": round(max(cold, default=float("nan")), 1),
    }


def _run_tree(label: str, src: Path | None, seconds: float, concurrency: int) -> dict[str, Any]:
    env = dict(os.environ)
    if src is not None:
        env["PYTHONPATH"] = str(src) + os.pathsep + env.get("PYTHONPATH", "")
    with tempfile.TemporaryDirectory() as tmp:
        port_file = Path(tmp) / "port"
        proc = subprocess.Popen(
            [sys.executable, str(Path(__file__).resolve()), "_server", str(port_file)],
            env=env,
            stderr=subprocess.DEVNULL,
        )
        try:
            port = wait_for_port_file(port_file, proc)
            result = trio.run(_flood, port, proc.pid, seconds, concurrency)
        finally:
            stop(proc)
    return {"tree": label, **result}


def _baseline_src(spec: str, tmp: Path) -> Path:
    """A directory holding ``catalyst_smpp`` of another tree: a path, or a git revision (``git archive``)."""
    if Path(spec).is_dir():
        return Path(spec)
    archive = subprocess.run(
        ["git", "-C", str(ROOT), "archive", spec, "src"], check=True, capture_output=True
    ).stdout
    subprocess.run(["tar", "-x", "-C", str(tmp)], input=archive, check=True)
    src = tmp / "src"
    for so in (ROOT / "src" / "catalyst_smpp").glob("_native*.so"):  # the compiled C core is not in git
        shutil.copy2(so, src / "catalyst_smpp" / so.name)
    return src


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "_server":
        trio.run(_serve, Path(sys.argv[2]))
        return
    if len(sys.argv) == 5 and sys.argv[1] == "_attack":
        trio.run(_attack, int(sys.argv[2]), float(sys.argv[3]), int(sys.argv[4]))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=5.0, help="flood duration (default 5)")
    ap.add_argument("--concurrency", type=int, default=100, help="wrong-password binds in flight (100)")
    ap.add_argument(
        "--baseline", default="main", help="git revision or src directory to compare with; 'none' to skip"
    )
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    rows = [_run_tree("this tree", ROOT / "src", args.seconds, args.concurrency)]
    if args.baseline != "none":
        with tempfile.TemporaryDirectory() as tmp:
            src = _baseline_src(args.baseline, Path(tmp))
            rows.append(_run_tree(f"baseline {args.baseline}", src, args.seconds, args.concurrency))
    if args.json:
        print(json.dumps(rows, indent=2))
        return
    print(
        f"{args.concurrency} wrong-password binds in flight for {args.seconds:.0f} s from {BAD_SOURCE}; "
        f"good binds (password remembered) every 100 ms and first binds (hashed) every 500 ms from "
        f"{GOOD_SOURCE}"
    )
    head = (
        f"{'tree':<16} {'idle MB':>8} {'peak MB':>8} {'after MB':>9} {'bad binds':>10} "
        f"{'good p50/max ms (n)':>22} {'first p50/max ms (n)':>22}"
    )
    print(head)
    print("-" * len(head))
    for r in rows:
        good = f"{r['good_p50_ms']}/{r['good_max_ms']} ({r['good_n']})"
        first = f"{r['first_p50_ms']}/{r['first_max_ms']} ({r['first_n']})"
        print(
            f"{r['tree']:<16} {r['idle_mb']:>8} {r['peak_mb']:>8} {r['after_mb']:>9} {r['bad_binds']:>10} "
            f"{good:>22} {first:>22}"
        )
        print(
            f"{'':<16} good p90 {r['good_p90_ms']} ms; bad bind answers: {r['bad_statuses']}; "
            f"flood lasted {r['flood_s']} s"
        )


if __name__ == "__main__":
    main()
