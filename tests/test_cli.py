"""The catalyst-smpp command: --help everywhere, and the two tools end to end as real processes."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from catalyst_smpp.cli import main


def _commands(group: click.Group = main, path: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command path: [], ["load"], ["partner"], ["partner", "add"], ..."""
    out = [list(path)]
    for name in sorted(group.commands):
        cmd = group.commands[name]
        if isinstance(cmd, click.Group):
            out += _commands(cmd, (*path, name))
        else:
            out.append([*path, name])
    return out


@pytest.mark.parametrize("args", _commands(), ids=lambda a: " ".join(a) or "catalyst-smpp")
def test_every_command_has_help(args: list[str]) -> None:
    for flag in ("--help", "-h"):
        result = CliRunner().invoke(main, [*args, flag])
        assert result.exit_code == 0, result.output
        assert "Usage:" in result.output


def test_expected_commands_are_there() -> None:
    assert {"smsc-sim", "load"} <= set(main.commands)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["smsc-sim", "--receipt-mix", "DELIVRD=90,NOPE=10"], "unknown message state"),
        (["smsc-sim", "--status-mix", "ESME_RSYSERR=60,ESME_RMSGQFUL=50"], "more than 100"),
        (["smsc-sim", "--throttle-fraction", "2"], "within 0..1"),
        (["smsc-sim", "--latency", "soon"], "not a duration"),
        (["smsc-sim", "--credentials", "alice"], "SYSTEM_ID:PASSWORD"),
        (["load", "--text", "x", "--length", "5"], "not both"),
        (["load", "--id-rule", "bogus"], "unknown message id rule"),
    ],
)
def test_bad_options_are_refused_with_a_reason(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, args)
    assert result.exit_code == 2
    assert message in result.output


def _cli() -> list[str]:
    return [sys.executable, "-c", "from catalyst_smpp.cli import main; main()"]


def test_load_against_smsc_sim_as_processes(tmp_path: Path) -> None:
    port_file = tmp_path / "port"
    sim = subprocess.Popen(
        [
            *_cli(),
            "smsc-sim",
            "--port",
            "0",
            "--port-file",
            str(port_file),
            "--stats-interval",
            "0",
            "--receipt-mix",
            "DELIVRD=80,UNDELIV=20",
            "--status-mix",
            "ESME_RSYSERR=10",
            "--id-format",
            "dec",
            "--receipt-id",
            "hex",
            "--json",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 20
        while not port_file.exists() or not port_file.read_text().strip():
            assert sim.poll() is None, sim.communicate()
            assert time.monotonic() < deadline
            time.sleep(0.05)
        port = port_file.read_text().strip()
        load = subprocess.run(
            [
                *_cli(),
                "load",
                "--port",
                port,
                "--count",
                "100",
                "--binds",
                "2",
                "--window",
                "8",
                "--registered-delivery",
                "1",
                "--id-rule",
                "dec_to_hex",
                "--length",
                "200",
                "--encoding",
                "ucs2",
                "--json",
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert load.returncode == 0, load.stderr
        report = json.loads(load.stdout)
    finally:
        sim.send_signal(signal.SIGINT)
        out, err = sim.communicate(timeout=20)
    assert sim.returncode == 0, err
    summary = json.loads(out)
    # 200 UCS-2 characters: 3 segments each; the status mix spreads 10 % errors over all of them
    assert report["messages"] == 100 and report["submitted"] == 300 == summary["submit_sm"]
    assert report["rejected"] == {"ESME_RSYSERR": 30} == summary["errors"]
    assert report["accepted"] == 270 == summary["accepted"]
    assert report["receipts"] == {"DELIVRD": 216, "UNDELIV": 54} == summary["receipts_by_stat"]
    assert report["latency"]["submit_resp"]["count"] == 300
    assert report["latency"]["submit_receipt"]["p99"] is not None
    assert "listening on 127.0.0.1:" in err


def test_load_reports_refused_bind_with_exit_code(tmp_path: Path) -> None:
    # nothing listens on this port: the run fails fast with exit code 2 and a report
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    result = CliRunner().invoke(main, ["load", "--port", str(port), "--count", "5", "--json"])
    assert result.exit_code == 2
    report = json.loads(result.output)
    assert report["bind_failures"] == 1 and report["submitted"] == 0
