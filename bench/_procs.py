"""Process plumbing shared by the benchmarks that start `catalyst-smpp` commands as subprocesses."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any


def catalyst_command() -> list[str]:
    """The `catalyst-smpp` entry point of this interpreter's environment."""
    script = Path(sys.executable).with_name("catalyst-smpp")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-c", "from catalyst_smpp.cli import main; main()"]


def wait_for_port_file(path: Path, proc: subprocess.Popen[Any], timeout: float = 30.0) -> int:
    """The port a server wrote into ``path`` once listening (it writes a temp file and renames it)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args!r} exited early with code {proc.returncode}")
        try:
            text = path.read_text().strip()
        except FileNotFoundError:
            text = ""
        if text:
            return int(text)
        time.sleep(0.02)
    raise RuntimeError(f"{proc.args!r} did not report its port in {timeout:.0f} s")


def stop(proc: subprocess.Popen[Any], sig: int = signal.SIGINT, timeout: float = 30.0) -> None:
    """Ask a process to stop with ``sig``; kill it if it has not exited after ``timeout``."""
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
