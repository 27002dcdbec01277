"""The ``catalyst-smpp`` command.

A click group; every sub-command lives here as a thin layer that turns options into
a settings object and hands it to the module that does the work.  Later commands
(``run``, ``migrate``, partner / operator / route administration) are added to the
same group.
"""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click

from catalyst_smpp.admin import CONTEXT_SETTINGS
from catalyst_smpp.encoding.msgid import parse_id_rule
from catalyst_smpp.loadgen.config import BindMode, LoadConfig, TextEncoding, make_text
from catalyst_smpp.logs import verbosity_level
from catalyst_smpp.sim.config import (
    DelayRange,
    SimConfig,
    parse_credentials,
    parse_delay,
    parse_state,
    parse_status,
)
from catalyst_smpp.sim.ids import IdForm, IdFormat
from catalyst_smpp.sim.mix import parse_mix

__all__ = ["main"]

# the tools show every option's default (-v and empty-string defaults opt out)
TOOL_SETTINGS = {**CONTEXT_SETTINGS, "show_default": True}


def _setup_logging(verbose: int) -> None:
    logging.basicConfig(
        level=verbosity_level(verbose),
        stream=sys.stderr,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )


@click.group(context_settings=CONTEXT_SETTINGS)
@click.version_option(package_name="catalyst-smpp")
def main() -> None:
    """Catalyst SMPP: an SMPP v3.4 gateway, and the tools around it."""


# ------------------------------------------------------------------------------------------
# option parsers shared by the commands


class _Delay(click.ParamType[DelayRange]):
    name = "DELAY"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> DelayRange:
        if isinstance(value, DelayRange):
            return value
        try:
            return parse_delay(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


DELAY = _Delay()


_UNSET: Any = object()


def _parsed(
    parse: Callable[[Any], Any], *, empty: Any = _UNSET
) -> Callable[[click.Context, click.Parameter, Any], Any]:
    """An option callback: ``parse(value)``, its ValueError a bad-parameter error; an empty value gives
    ``empty`` when that is given."""

    def callback(ctx: click.Context, param: click.Parameter, value: Any) -> Any:
        if not value and empty is not _UNSET:
            return empty
        try:
            return parse(value)
        except ValueError as exc:
            raise click.BadParameter(str(exc)) from None

    return callback


def _mix_of(parse_item: Callable[[str], Any]) -> Callable[[str], tuple[tuple[Any, float], ...]]:
    return lambda value: tuple(parse_mix(value, parse_item))


@contextlib.contextmanager
def _usage_errors() -> Iterator[None]:
    """A ValueError (e.g. from a settings object that checks its fields) as a usage error, exit 2."""
    try:
        yield
    except ValueError as exc:
        raise click.UsageError(str(exc)) from None


def _json_option(what: str) -> Callable[[Any], Any]:
    return click.option("--json", "as_json", is_flag=True, help=f"Print the final {what} as JSON on stdout.")


_verbose_option = click.option(
    "-v", "--verbose", count=True, show_default=False, help="More log output (-v info, -vv debug)."
)


def _fraction(ctx: click.Context, param: click.Parameter, value: float) -> float:
    if not 0.0 <= value <= 1.0:
        raise click.BadParameter("must be within 0..1 (e.g. 0.05 for 5 %)")
    return value


# ------------------------------------------------------------------------------------------
# smsc-sim


@main.command("smsc-sim", context_settings=TOOL_SETTINGS)
@click.option("--host", default="127.0.0.1", help="Address to listen on.")
@click.option(
    "--port",
    type=click.IntRange(0, 65535),
    default=2775,
    help="TCP port (0: any free port; see --port-file).",
)
@click.option(
    "--port-file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the listening port to this file once ready (for scripts).",
)
@click.option("--system-id", default="CATALYSTSIM", help="The SMSC's system_id in bind responses.")
@click.option(
    "--credentials",
    "credentials",
    multiple=True,
    callback=_parsed(parse_credentials, empty=None),
    metavar="SYSTEM_ID:PASSWORD",
    help="Accept only these binds (repeatable). Default: any system_id and password.",
)
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=64,
    help="deliver_sm (receipts, MO) in flight per bind.",
)
@click.option(
    "--id-format",
    type=click.Choice(["hex", "dec"]),
    default="hex",
    help="How message ids are written in submit_sm_resp.",
)
@click.option(
    "--id-width",
    type=click.IntRange(0, 64),
    default=0,
    help="Pad message ids with leading zeros to this many digits.",
)
@click.option("--id-upper", is_flag=True, help="Hex message ids in upper case.")
@click.option("--id-start", type=click.IntRange(0), default=1, help="First message id number.")
@click.option(
    "--receipt-id",
    "receipt_id",
    type=click.Choice(["same", "hex", "dec"]),
    default="same",
    help="How receipts spell the message id: the very submit_sm_resp string, or the "
    "same number in hex or decimal (as operators do).",
)
@click.option(
    "--receipt-id-width",
    type=click.IntRange(0, 64),
    default=0,
    help="Leading-zero width of the receipt's id (with --receipt-id hex/dec).",
)
@click.option("--receipt-id-upper", is_flag=True, help="Upper-case hex in the receipt's id.")
@click.option(
    "--latency",
    type=DELAY,
    default="0",
    help="Delay before each response: fixed (20ms) or a uniform range (5-50ms).",
)
@click.option(
    "--throttle-fraction",
    type=float,
    default=0.0,
    callback=_fraction,
    help="Fraction of submits answered ESME_RTHROTTLED.",
)
@click.option(
    "--throttle-rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Answer ESME_RTHROTTLED to submits above this rate (per second, over all binds).",
)
@click.option(
    "--throttle-burst",
    type=click.FloatRange(min=1),
    help="Burst allowed above --throttle-rate (default: one second's worth).",
)
@click.option(
    "--status-mix",
    callback=_parsed(_mix_of(parse_status), empty=()),
    metavar="STATUS=PCT,...",
    help="Answer this percentage of submits with these error statuses, e.g. "
    "ESME_RSYSERR=2,ESME_RMSGQFUL=1,0x45=1.",
)
@click.option(
    "--receipts/--no-receipts",
    default=True,
    help="Send delivery receipts when registered_delivery asks for them.",
)
@click.option(
    "--receipt-delay",
    type=DELAY,
    default="0",
    help="Delay from submit_sm_resp to the receipt: fixed or a range (100ms-2s).",
)
@click.option(
    "--receipt-mix",
    callback=_parsed(_mix_of(parse_state)),
    default="DELIVRD=100",
    metavar="STAT=WEIGHT,...",
    help="Final states of receipts, e.g. DELIVRD=90,UNDELIV=5,EXPIRED=5.",
)
@click.option(
    "--receipt-format",
    type=click.Choice(["both", "text", "tlv"]),
    default="both",
    help="Receipt as text in short_message, as TLVs (receipted_message_id, message_state), or both.",
)
@click.option(
    "--drop-after",
    type=click.IntRange(min=1),
    help="Drop each connection when it receives its Nth submit (that one is not answered).",
)
@click.option(
    "--drop-probability",
    type=float,
    default=0.0,
    callback=_fraction,
    help="Chance that a submit drops its connection instead of being answered.",
)
@click.option(
    "--mo-rate",
    type=click.FloatRange(min=0),
    default=0.0,
    help="MO deliver_sm per second to receiver/transceiver binds.",
)
@click.option("--mo-count", type=click.IntRange(min=0), help="Stop sending MO after this many.")
@click.option(
    "--mo-text", default="Hello from the SMSC simulator", help="Text of MO messages ({n}: the MO's number)."
)
@click.option("--mo-source", default="447700900001", help="source_addr of MO messages.")
@click.option("--mo-dest", default="12345", help="destination_addr of MO messages.")
@click.option(
    "--seed",
    type=int,
    help="Draw every mix and delay at random from this seed (default: mixes are "
    "spread evenly and exactly; delays random).",
)
@click.option(
    "--keep",
    "keep_messages",
    type=click.IntRange(min=0),
    default=0,
    help="Keep the last N messages for --dump (0: none).",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0),
    default=5.0,
    help="Seconds between stats lines on stderr (0: none).",
)
@click.option(
    "--duration",
    type=click.FloatRange(min=0, min_open=True),
    help="Stop after this many seconds (default: run until interrupted).",
)
@_json_option("summary")
@_verbose_option
def smsc_sim(
    *,
    port_file: Path | None,
    duration: float | None,
    id_format: str,
    id_width: int,
    id_upper: bool,
    receipt_id: str,
    receipt_id_width: int,
    receipt_id_upper: bool,
    receipt_format: str,
    as_json: bool,
    verbose: int,
    **settings: Any,
) -> None:
    """An SMSC simulator: accepts binds, answers submit_sm / data_sm / submit_multi with message ids,
    sends delivery receipts and MO messages, and injects latency, throttling, error statuses and dropped
    connections on request.  Prints a stats line every --stats-interval and a summary at the end
    (Ctrl-C or --duration)."""
    from catalyst_smpp.sim.server import run_cli

    _setup_logging(verbose)
    with _usage_errors():
        config = SimConfig(
            id_format=IdFormat(IdForm(id_format), id_width, id_upper),
            receipt_id_format=None
            if receipt_id == "same"
            else IdFormat(IdForm(receipt_id), receipt_id_width, receipt_id_upper),
            receipt_text=receipt_format in ("both", "text"),
            receipt_tlvs=receipt_format in ("both", "tlv"),
            **settings,  # the other options are SimConfig's fields by name
        )
    summary = run_cli(config, port_file=port_file, duration=duration)
    click.echo(json.dumps(summary, indent=2, sort_keys=True) if as_json else _format_sim_summary(summary))


def _format_sim_summary(summary: dict[str, Any]) -> str:
    lines = ["smsc-sim summary:"]
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k} {v}" for k, v in value.items()) or "-"
        lines.append(f"  {key:<18} {value}")
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------
# load


@main.command("load", context_settings=TOOL_SETTINGS)
@click.option("--host", default="127.0.0.1", help="SMSC (or gateway) address.")
@click.option("--port", type=click.IntRange(1, 65535), default=2775, help="SMSC port.")
@click.option("--system-id", default="loadgen")
@click.option("--password", default="secret")
@click.option("--system-type", default="", show_default=False, help="system_type of the binds.")
@click.option(
    "--bind-mode",
    type=click.Choice(["trx", "tx"]),
    default="trx",
    help="Transceiver binds (receipts and MO come back) or transmitter binds.",
)
@click.option("--binds", type=click.IntRange(min=1), default=1, help="Parallel binds.")
@click.option(
    "--window",
    type=click.IntRange(min=1),
    default=10,
    help="Unanswered submit_sm allowed per bind.",
)
@click.option(
    "--rate",
    type=click.FloatRange(min=0, min_open=True),
    help="Target messages per second over all binds (default: as fast as possible).",
)
@click.option(
    "--count", type=click.IntRange(min=0), help="Messages to send (default 1000 unless --duration)."
)
@click.option("--duration", type=click.FloatRange(min=0, min_open=True), help="Send for this many seconds.")
@click.option("--text", help="Message text (default: a short greeting, or --length characters).")
@click.option(
    "--length",
    type=click.IntRange(min=1),
    help="Generate a text of this many characters (over 160 GSM / 70 UCS-2 needs segmentation).",
)
@click.option(
    "--encoding",
    type=click.Choice([e.value for e in TextEncoding]),
    default="auto",
    help="Text encoding: auto picks GSM 03.38 when the text fits it, else UCS-2.",
)
@click.option(
    "--payload",
    "use_payload",
    is_flag=True,
    help="Send long texts whole in message_payload instead of concatenated segments.",
)
@click.option("--source", "source_addr", default="CATALYST", help="source_addr.")
@click.option("--dest", "dest_addr", default="447700900000", help="destination_addr.")
@click.option(
    "--dest-count",
    type=click.IntRange(min=1),
    default=1,
    help="Use this many consecutive destination numbers in turn.",
)
@click.option(
    "--registered-delivery",
    type=click.IntRange(0, 255),
    default=0,
    help="registered_delivery of each submit_sm (1: receipt always, 2: on failure).",
)
@click.option(
    "--id-rule",
    default="as_is",
    help="How receipt ids match submit_sm_resp ids: as_is, case_insensitive, strip_leading_zeros, "
    "hex, dec, hex_to_dec, dec_to_hex, numeric.",
)
@click.option(
    "--response-timeout",
    type=click.FloatRange(min=0, min_open=True),
    default=30.0,
    help="Seconds to wait for a submit_sm_resp.",
)
@click.option(
    "--receipt-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    help="Seconds to wait for outstanding receipts after the last response.",
)
@click.option(
    "--reconnect/--no-reconnect",
    default=True,
    help="Bind again when a connection is lost.",
)
@click.option(
    "--progress/--no-progress",
    default=None,
    help="Live progress line on stderr (default: only when stderr is a terminal).",
)
@_json_option("report")
@_verbose_option
def load(
    *,
    bind_mode: str,
    text: str | None,
    length: int | None,
    encoding: str,
    id_rule: str,
    progress: bool | None,
    as_json: bool,
    verbose: int,
    **settings: Any,
) -> None:
    """A load generator: N binds with a window each send submit_sm at a target rate (or as fast as
    possible) for a count or a duration, and report accepted / rejected by status, receipts by final
    state, throughput and latency percentiles (submit -> response, submit -> receipt)."""
    from catalyst_smpp.loadgen.runner import run_cli

    _setup_logging(verbose)
    if text is not None and length is not None:
        raise click.UsageError("give --text or --length, not both")
    enc = TextEncoding(encoding)
    with _usage_errors():
        config = LoadConfig(
            bind_mode=BindMode(bind_mode),
            text=make_text(length, enc) if length is not None else (text or "Hello from catalyst-smpp load"),
            encoding=enc,
            id_rule=parse_id_rule(id_rule),
            **settings,  # the other options are LoadConfig's fields by name
        )
    show_progress = sys.stderr.isatty() if progress is None else progress
    report = run_cli(config, progress=show_progress)
    click.echo(json.dumps(report.to_dict(), indent=2) if as_json else report.format_text())
    if report.bind_failures and not report.submitted:
        sys.exit(2)


# ------------------------------------------------------------------------------------------
# daemon and operations: run, demo, migrate, partner, operator, route, mo-route, plan, balance, invoice,
# usage, webhook (defined in catalyst_smpp.daemon / .admin / .admin_billing / .admin_books / .admin_invoices
# / .admin_webhooks; heavy imports happen inside the commands)

from catalyst_smpp import admin as _admin  # noqa: E402
from catalyst_smpp import admin_billing as _admin_billing  # noqa: E402
from catalyst_smpp import admin_books as _admin_books  # noqa: E402
from catalyst_smpp import admin_invoices as _admin_invoices  # noqa: E402
from catalyst_smpp import admin_keys as _admin_keys  # noqa: E402
from catalyst_smpp import admin_webhooks as _admin_webhooks  # noqa: E402
from catalyst_smpp import daemon as _daemon  # noqa: E402
from catalyst_smpp import demo as _demo  # noqa: E402

_admin.register(main)
_admin_billing.register(main)
_admin_books.register(main)
_admin_invoices.register(main)
_admin_keys.register(main)
_admin_webhooks.register(main)
_daemon.register(main)
_demo.register(main)


if __name__ == "__main__":  # pragma: no cover
    main()
