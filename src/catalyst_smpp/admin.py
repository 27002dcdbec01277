"""Administration commands: ``migrate`` and ``partner`` / ``operator`` / ``route`` / ``mo-route``.

They talk to Postgres directly through the store repositories (sync psycopg).  Every change bumps the
config version and sends ``NOTIFY catalyst_config`` (database triggers), so running gateways pick it up
within moments, without a restart.

Where the database is: ``--dsn`` (+ ``--schema``), or ``--config`` (its ``[database]``; with an empty
dsn the embedded Postgres under ``node.state_dir`` is used, started if it is not running), or the
environment variables ``CATALYST_SMPP_DSN`` / ``CATALYST_SMPP_CONFIG``, or
``/etc/catalyst-smpp/catalyst-smpp.toml`` when it exists.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import ipaddress
import json
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, NoReturn, TypeVar

import attrs
import click
import psycopg

__all__ = ["DEFAULT_CONFIG", "db_connection", "register"]

DEFAULT_CONFIG = Path("/etc/catalyst-smpp/catalyst-smpp.toml")
CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 110}

LIVE_NOTE = (
    "Changes take effect on running gateways without a restart (a database trigger sends "
    "NOTIFY catalyst_config; every node reloads its snapshot)."
)

F = TypeVar("F", bound=Callable[..., Any])


# --------------------------------------------------------------------------- errors and output


def fail(message: str, code: int = 1) -> NoReturn:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)


def _jsonable(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, ipaddress.IPv4Network | ipaddress.IPv6Network):
        return str(value)
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if attrs.has(type(value)):
        return {k: _jsonable(v) for k, v in attrs.asdict(value, recurse=False).items()}
    return value


def _record_dict(r: Any) -> dict[str, Any]:
    return dict(_jsonable(r))


def _partner_dict(p: Any) -> dict[str, Any]:
    d = _record_dict(p)
    d.pop("password_hash", None)
    return d


def _operator_dict(o: Any) -> dict[str, Any]:
    d = _record_dict(o)
    d["password"] = "(set)" if d.get("password") else ""
    return d


def _route_dict(r: Any) -> dict[str, Any]:
    return _record_dict(r)


def _mo_route_dict(r: Any) -> dict[str, Any]:
    return _record_dict(r)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, bool):
        return "yes" if v else "no"
    if isinstance(v, float):
        return f"{v:g}"
    if isinstance(v, dt.datetime):
        return v.strftime("%Y-%m-%d %H:%M:%S")
    return str(v) if str(v) != "" else "-"


def table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    """An aligned plain-text table (two spaces between columns)."""
    cells = [[_cell(c) for c in row] for row in rows]
    widths = [len(h) for h in headers]
    for row in cells:
        for i, c in enumerate(row):
            widths[i] = max(widths[i], len(c))
    lines = ["  ".join(h.ljust(widths[i]) for i, h in enumerate(headers)).rstrip()]
    for row in cells:
        lines.append("  ".join(c.ljust(widths[i]) for i, c in enumerate(row)).rstrip())
    return "\n".join(lines)


def _show(d: dict[str, Any]) -> str:
    width = max(len(k) for k in d)
    out = []
    for k, v in d.items():
        if isinstance(v, list):
            v = ", ".join(_cell(x) if not isinstance(x, dict) else _target_text(x) for x in v) or "-"
        out.append(f"{k.ljust(width)}  {_cell(v)}")
    return "\n".join(out)


def _target_text(t: dict[str, Any]) -> str:
    return f"{t['operator']}:{t['weight']}" if "operator" in t else str(t)


# --------------------------------------------------------------------------- database connection


@contextlib.contextmanager
def db_connection(
    config: Path | None, dsn: str | None, schema: str | None
) -> Iterator[psycopg.Connection[Any]]:
    """An autocommit connection with our search_path, from --dsn/--schema or a config file."""
    from catalyst_smpp.config import ConfigError, load_config
    from catalyst_smpp.store import connect_sync

    embedded = None
    timeout = 5.0
    if not dsn:
        path = config
        if path is None and DEFAULT_CONFIG.exists():
            path = DEFAULT_CONFIG
        if path is None:
            fail(
                "say where the database is: --dsn DSN (and --schema), or --config PATH "
                "(or set CATALYST_SMPP_DSN / CATALYST_SMPP_CONFIG)",
                2,
            )
        try:
            cfg = load_config(path)
        except ConfigError as e:
            fail(str(e), 2)
        timeout = cfg.database.connect_timeout
        if schema is None:
            schema = cfg.database.schema
        dsn = cfg.database.dsn
        if not dsn:
            from catalyst_smpp.embedded import EmbeddedError, EmbeddedPostgres

            embedded = EmbeddedPostgres(cfg.node.state_dir / "postgres")
            try:
                dsn = embedded.start()
            except (EmbeddedError, OSError) as e:
                fail(f"cannot start the embedded Postgres in {cfg.node.state_dir / 'postgres'}: {e}")
    try:
        try:
            conn = connect_sync(dsn, schema=schema or "", autocommit=True, connect_timeout=timeout)
        except psycopg.Error as e:
            fail(f"cannot connect to the database: {str(e).strip()}")
        with conn:
            yield conn
    finally:
        if embedded is not None:
            embedded.stop()


def db_options(f: F) -> F:
    f = click.option(
        "--schema",
        envvar="CATALYST_SMPP_SCHEMA",
        help="Postgres schema of the tables (default: the config's database.schema, else public).",
    )(f)
    f = click.option(
        "--dsn",
        envvar="CATALYST_SMPP_DSN",
        help="Postgres connection string, e.g. 'host=db1 dbname=catalyst user=catalyst' "
        "(overrides --config) [env CATALYST_SMPP_DSN].",
    )(f)
    f = click.option(
        "--config",
        "-c",
        "config",
        envvar="CATALYST_SMPP_CONFIG",
        type=click.Path(dir_okay=False, path_type=Path),
        help=f"Gateway config file; its [database] is used (default {DEFAULT_CONFIG} if it exists) "
        "[env CATALYST_SMPP_CONFIG].",
    )(f)
    return f


@contextlib.contextmanager
def _errors(kind: str, name: Any) -> Iterator[None]:
    """Turn store/database errors into one clear line and exit 1."""
    from catalyst_smpp.store import NotFound

    try:
        yield
    except NotFound as e:
        fail(str(e).replace("no ", "unknown ", 1) if str(e).startswith("no ") else str(e))
    except psycopg.errors.UniqueViolation:
        fail(f"{kind} {name!r} already exists")
    except psycopg.errors.ForeignKeyViolation as e:
        detail = (e.diag.message_detail or "").strip()
        fail(f"{kind} {name!r} is still referenced ({detail or e.diag.message_primary}); remove those first")
    except psycopg.errors.CheckViolation as e:
        fail(f"invalid value for {kind} {name!r}: {e.diag.message_primary} ({e.diag.constraint_name})")
    except psycopg.errors.UndefinedTable:
        fail("the database has no catalyst-smpp tables (in this schema); run `catalyst-smpp migrate` first")
    except psycopg.Error as e:
        fail(f"database error: {str(e).strip()}")
    except ValueError as e:
        fail(str(e))


def _emit(as_json: bool, data: Any, text: str) -> None:
    if as_json:
        click.echo(json.dumps(data, indent=2, sort_keys=False))
    else:
        click.echo(text)


def _given(**kwargs: Any) -> dict[str, Any]:
    return {k: v for k, v in kwargs.items() if v is not None}


def _comma_list(ctx: click.Context, param: click.Parameter, value: str | None) -> list[str] | None:
    if value is None:
        return None
    items = [v.strip() for v in value.split(",") if v.strip()]
    if param.name == "allowed_ips":
        for item in items:
            try:
                ipaddress.ip_network(item, strict=False)
            except ValueError:
                raise click.BadParameter(f"{item!r} is not an IP address or network") from None
    return items


def _max_len(n: int) -> Callable[[click.Context, click.Parameter, str | None], str | None]:
    def check(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
        if value is not None and len(value) > n:
            raise click.BadParameter(f"at most {n} characters (SMPP limit)")
        return value

    return check


# --------------------------------------------------------------------------- migrate


@click.command("migrate", context_settings=CONTEXT_SETTINGS)
@db_options
def migrate_cmd(config: Path | None, dsn: str | None, schema: str | None) -> None:
    """Apply pending database schema migrations and print the applied and available versions.

    Safe while gateways run and when several nodes migrate at once (an advisory lock serialises them).
    `catalyst-smpp run` also migrates at start unless database.migrate_on_start = false."""
    from catalyst_smpp.store import MigrationError, available_migrations, migrate

    with db_connection(config, dsn, schema) as conn:
        try:
            done = migrate(conn, schema=schema or "")
            rows = conn.execute(
                "SELECT version, name, applied_at FROM schema_migrations ORDER BY version"
            ).fetchall()
        except MigrationError as e:
            fail(str(e))
        except psycopg.Error as e:
            fail(f"database error: {str(e).strip()}")
    available = available_migrations()
    applied = {v: (n, at) for v, n, at in rows}
    click.echo(f"applied now: {', '.join(f'{v:04d}' for v in done) if done else 'nothing (up to date)'}")
    out = []
    for m in available:
        state = applied.get(m.version)
        out.append(
            (f"{m.version:04d}", m.name, "applied" if state else "pending", state[1] if state else None)
        )
    for v, (n, at) in applied.items():
        if v not in {m.version for m in available}:
            out.append((f"{v:04d}", n, "applied (newer than this software)", at))
    click.echo(table(["VERSION", "NAME", "STATE", "APPLIED_AT"], out))


# --------------------------------------------------------------------------- partners


@click.group("partner", context_settings=CONTEXT_SETTINGS)
def partner_group() -> None:
    """Partners: the ESMEs that bind to this gateway (system_id, password, limits).

    Changes take effect on running gateways without a restart."""


def _partner_options(f: F, *, adding: bool) -> F:
    opts = [
        click.option(
            "--allowed-ips",
            callback=_comma_list,
            metavar="NET,...",
            help="Comma-separated addresses/networks the partner may bind from; '' = any address.",
        ),
        click.option(
            "--max-binds",
            type=click.IntRange(min=1),
            help="Binds at once (all nodes each)." + (" [default: 4]" if adding else ""),
        ),
        click.option(
            "--throttle-rate",
            type=click.FloatRange(min=0, min_open=True),
            help="Submits per second (token bucket); above it ESME_RTHROTTLED."
            + (" [default: 100]" if adding else ""),
        ),
        click.option(
            "--throttle-burst",
            type=click.IntRange(min=1),
            help="Token bucket size: submits allowed in a burst." + (" [default: 100]" if adding else ""),
        ),
        click.option(
            "--window",
            type=click.IntRange(min=1),
            help="deliver_sm (receipts, MO) in flight toward the partner."
            + (" [default: 10]" if adding else ""),
        ),
        click.option(
            "--message-id-format",
            type=click.Choice(["hex", "dec"]),
            help="How our message ids are shown to this partner." + (" [default: hex]" if adding else ""),
        ),
        click.option(
            "--data-coding-0",
            type=click.Choice(["gsm7", "latin1", "ascii"]),
            help="What data_coding 0 means in this partner's submits."
            + (" [default: gsm7]" if adding else ""),
        ),
        click.option(
            "--receipt-date-digits",
            type=click.Choice(["10", "12"]),
            help="Dates in receipt text: 10 = YYMMDDhhmm, 12 = YYMMDDhhmmss."
            + (" [default: 10]" if adding else ""),
        ),
        click.option("--description", help="Free text (who, contract, contact)."),
    ]
    if adding:
        opts.append(click.option("--enabled/--disabled", default=True, show_default=True, help="May bind."))
    for o in reversed(opts):
        f = o(f)
    return f


def _partner_change_options(f: F) -> F:
    return _partner_options(f, adding=False)


def _partner_add_options(f: F) -> F:
    return _partner_options(f, adding=True)


def _partner_fields(**kw: Any) -> dict[str, Any]:
    if kw.get("receipt_date_digits") is not None:
        kw["receipt_date_digits"] = int(kw["receipt_date_digits"])
    return _given(**kw)


@partner_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.argument("system_id", callback=_max_len(15))
@click.option(
    "--password",
    prompt=True,
    hide_input=True,
    confirmation_prompt=True,
    callback=_max_len(8),
    help="Bind password (at most 8 characters; stored as a scrypt hash). Prompted for when not given.",
)
@_partner_add_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the new partner as JSON.")
def partner_add(
    system_id: str,
    password: str,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    enabled: bool,
    **fields: Any,
) -> None:
    """Add a partner SYSTEM_ID (at most 15 characters).

    Changes take effect on running gateways without a restart."""
    from catalyst_smpp.store import PartnerRepo

    with db_connection(config, dsn, schema) as conn, _errors("partner", system_id), conn.transaction():
        p = PartnerRepo(conn).add(system_id, password, enabled=enabled, **_partner_fields(**fields))
    _emit(as_json, _partner_dict(p), f"partner {p.system_id!r} added")


@partner_group.command("change", context_settings=CONTEXT_SETTINGS)
@click.argument("system_id")
@click.option(
    "--password",
    prompt="New password",
    prompt_required=False,
    hide_input=True,
    confirmation_prompt=True,
    default=None,
    callback=_max_len(8),
    help="New bind password; give --password without a value to be prompted.",
)
@_partner_change_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the partner as JSON.")
def partner_change(
    system_id: str,
    password: str | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Change settings of partner SYSTEM_ID; only the options given change.

    Changes take effect on running gateways without a restart (new limits apply to new binds and
    submits; a new password to the next bind)."""
    from catalyst_smpp.store import PartnerRepo

    with db_connection(config, dsn, schema) as conn, _errors("partner", system_id), conn.transaction():
        p = PartnerRepo(conn).change(system_id, password=password, **_partner_fields(**fields))
    _emit(as_json, _partner_dict(p), f"partner {p.system_id!r} changed")


def _simple(group: click.Group, kind: str, repo_name: str, verb: str, doc: str) -> None:
    """disable / enable / delete for partners and operators (key = name)."""

    @group.command(verb, context_settings=CONTEXT_SETTINGS, help=doc + "\n\n" + LIVE_NOTE)
    @click.argument("name")
    @db_options
    def cmd(name: str, config: Path | None, dsn: str | None, schema: str | None) -> None:
        import catalyst_smpp.store as store

        repo_cls = getattr(store, repo_name)
        with db_connection(config, dsn, schema) as conn, _errors(kind, name), conn.transaction():
            result = getattr(repo_cls(conn), verb)(name)
            if verb == "delete" and not result:
                fail(f"unknown {kind} {name!r}")
        click.echo(f"{kind} {name!r} {verb}d")


_simple(
    partner_group,
    "partner",
    "PartnerRepo",
    "disable",
    "Disable partner NAME: new binds are refused; open binds are closed by running gateways.",
)
_simple(partner_group, "partner", "PartnerRepo", "enable", "Enable partner NAME again.")
_simple(
    partner_group,
    "partner",
    "PartnerRepo",
    "delete",
    "Delete partner NAME and its routes (messages already queued for it stay in JetStream "
    "until they expire).",
)


@partner_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--enabled-only", is_flag=True, help="Only enabled partners.")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def partner_list(
    enabled_only: bool, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """List partners (passwords are never shown)."""
    from catalyst_smpp.store import PartnerRepo

    with db_connection(config, dsn, schema) as conn, _errors("partner", "*"):
        ps = PartnerRepo(conn).list(enabled_only=enabled_only)
    rows = [
        (
            p.system_id,
            p.enabled,
            p.max_binds,
            f"{p.throttle_rate:g}/{p.throttle_burst}",
            p.window,
            p.message_id_format,
            p.data_coding_0,
            ",".join(map(str, p.allowed_ips)) or "any",
            p.description,
        )
        for p in ps
    ]
    _emit(
        as_json,
        [_partner_dict(p) for p in ps],
        table(
            [
                "SYSTEM_ID",
                "ENABLED",
                "MAX_BINDS",
                "RATE/BURST",
                "WINDOW",
                "IDS",
                "DC0",
                "ALLOWED_IPS",
                "DESCRIPTION",
            ],
            rows,
        ),
    )


@partner_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("system_id")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def partner_show(
    system_id: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Show one partner (the password is never shown)."""
    from catalyst_smpp.store import PartnerRepo

    with db_connection(config, dsn, schema) as conn, _errors("partner", system_id):
        p = PartnerRepo(conn).get(system_id)
    if p is None:
        fail(f"unknown partner {system_id!r}")
    d = _partner_dict(p)
    d["allowed_ips"] = d["allowed_ips"] or "any"
    _emit(as_json, _partner_dict(p), _show(d))


# --------------------------------------------------------------------------- operators


@click.group("operator", context_settings=CONTEXT_SETTINGS)
def operator_group() -> None:
    """Operators: the SMSCs this gateway binds to (address, credentials, bind, window, TPS, encodings).

    Changes take effect on running gateways without a restart (connectors rebind when needed)."""


def _operator_options(f: F, *, adding: bool) -> F:
    def d(value: str) -> str:
        return f" [default: {value}]" if adding else ""

    opts: list[Callable[[F], F]] = []
    if not adding:
        opts += [
            click.option("--host", help="SMSC host name or address."),
            click.option("--port", type=click.IntRange(1, 65535), help="SMSC port."),
            click.option("--system-id", callback=_max_len(15), help="system_id we bind with."),
        ]
    opts += [
        click.option(
            "--password",
            callback=_max_len(8),
            help="Password we bind with (stored in clear: needed to bind).",
        ),
        click.option("--system-type", callback=_max_len(12), help="system_type of our binds." + d("''")),
        click.option("--tls/--no-tls", default=None, help="TLS to the SMSC." + d("no")),
        click.option(
            "--bind-type",
            type=click.Choice(["transceiver", "transmitter", "receiver", "tx_rx"]),
            help="How we bind; tx_rx = one transmitter + one receiver bind." + d("transceiver"),
        ),
        click.option("--bind-count", type=click.IntRange(min=1), help="Binds per node." + d("1")),
        click.option("--window", type=click.IntRange(min=1), help="submit_sm in flight per bind." + d("10")),
        click.option(
            "--tps",
            type=click.FloatRange(min=0, min_open=True),
            help="Submits per second to this operator, per node." + d("100"),
        ),
        click.option(
            "--data-coding-0",
            type=click.Choice(["gsm7", "latin1", "ascii"]),
            help="What data_coding 0 means at this SMSC." + d("gsm7"),
        ),
        click.option(
            "--segmentation",
            type=click.Choice(["udh8", "udh16", "sar", "payload"]),
            help="How long messages are split for this SMSC." + d("udh8"),
        ),
        click.option(
            "--submit-id-format",
            type=click.Choice(["text", "hex", "dec"]),
            help="Message ids in its submit_sm_resp (for matching receipts)." + d("text"),
        ),
        click.option(
            "--receipt-id-format",
            type=click.Choice(["text", "hex", "dec"]),
            help="Message ids in its receipts: hex/dec ids are compared as numbers." + d("text"),
        ),
        click.option("--description", help="Free text."),
    ]
    if adding:
        opts.append(
            click.option("--enabled/--disabled", default=True, show_default=True, help="Connect to it.")
        )
    for o in reversed(opts):
        f = o(f)
    return f


def _operator_change_options(f: F) -> F:
    return _operator_options(f, adding=False)


def _operator_add_options(f: F) -> F:
    return _operator_options(f, adding=True)


@operator_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@click.option("--host", required=True, help="SMSC host name or address.")
@click.option("--port", type=click.IntRange(1, 65535), required=True, help="SMSC port.")
@click.option("--system-id", required=True, callback=_max_len(15), help="system_id we bind with.")
@_operator_add_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the new operator as JSON.")
def operator_add(
    name: str,
    host: str,
    port: int,
    system_id: str,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Add operator NAME (letters, digits, '_', '.', '-'; used in stream subjects).

    Changes take effect on running gateways without a restart."""
    from catalyst_smpp.store import OperatorRepo

    with db_connection(config, dsn, schema) as conn, _errors("operator", name), conn.transaction():
        o = OperatorRepo(conn).add(name, host, port, system_id, **_given(**fields))
    _emit(as_json, _operator_dict(o), f"operator {o.name!r} added")


@operator_group.command("change", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@_operator_change_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the operator as JSON.")
def operator_change(
    name: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool, **fields: Any
) -> None:
    """Change settings of operator NAME; only the options given change.

    Changes take effect on running gateways without a restart."""
    from catalyst_smpp.store import OperatorRepo

    with db_connection(config, dsn, schema) as conn, _errors("operator", name), conn.transaction():
        o = OperatorRepo(conn).change(name, **_given(**fields))
    _emit(as_json, _operator_dict(o), f"operator {o.name!r} changed")


_simple(
    operator_group,
    "operator",
    "OperatorRepo",
    "disable",
    "Disable operator NAME: connectors unbind; its queue keeps accumulating (routes fail over).",
)
_simple(operator_group, "operator", "OperatorRepo", "enable", "Enable operator NAME again.")
_simple(
    operator_group,
    "operator",
    "OperatorRepo",
    "delete",
    "Delete operator NAME (refused while a route still uses it).",
)


@operator_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--enabled-only", is_flag=True, help="Only enabled operators.")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def operator_list(
    enabled_only: bool, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """List operators (passwords are never shown)."""
    from catalyst_smpp.store import OperatorRepo

    with db_connection(config, dsn, schema) as conn, _errors("operator", "*"):
        os_ = OperatorRepo(conn).list(enabled_only=enabled_only)
    rows = [
        (
            o.name,
            o.enabled,
            f"{o.host}:{o.port}",
            "yes" if o.tls else "no",
            o.system_id,
            f"{o.bind_type}x{o.bind_count}",
            o.window,
            o.tps,
            o.data_coding_0,
            o.segmentation,
            f"{o.submit_id_format}/{o.receipt_id_format}",
            o.description,
        )
        for o in os_
    ]
    _emit(
        as_json,
        [_operator_dict(o) for o in os_],
        table(
            [
                "NAME",
                "ENABLED",
                "ADDRESS",
                "TLS",
                "SYSTEM_ID",
                "BINDS",
                "WINDOW",
                "TPS",
                "DC0",
                "SEGMENTS",
                "IDS",
                "DESCRIPTION",
            ],
            rows,
        ),
    )


@operator_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def operator_show(name: str, config: Path | None, dsn: str | None, schema: str | None, as_json: bool) -> None:
    """Show one operator (the password is never shown)."""
    from catalyst_smpp.store import OperatorRepo

    with db_connection(config, dsn, schema) as conn, _errors("operator", name):
        o = OperatorRepo(conn).get(name)
    if o is None:
        fail(f"unknown operator {name!r}")
    _emit(as_json, _operator_dict(o), _show(_operator_dict(o)))


# --------------------------------------------------------------------------- routes


def _targets(ctx: click.Context, param: click.Parameter, value: tuple[str, ...]) -> list[Any] | None:
    if not value:
        return None
    out: list[Any] = []
    for item in value:
        for part in item.split(","):
            part = part.strip()
            if not part:
                continue
            name, sep, weight = part.partition(":")
            if sep:
                try:
                    w = int(weight)
                except ValueError:
                    raise click.BadParameter(f"{part!r}: the weight after ':' must be an integer") from None
                if w < 0:
                    raise click.BadParameter(f"{part!r}: the weight must be >= 0")
                out.append((name, w))
            else:
                out.append(name)
    return out


def _digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value != "" and not value.isdigit():
        raise click.BadParameter("digits only (e.g. 4477)")
    return value


@click.group("route", context_settings=CONTEXT_SETTINGS)
def route_group() -> None:
    """MT routes: which operator(s) get a partner's message, by destination prefix and source filter.

    Longest destination prefix wins, then priority; failover tries the operators in order, weighted
    shares by weight.  Changes take effect on running gateways without a restart."""


def _route_options(f: F, *, adding: bool) -> F:
    opts = [
        click.option(
            "--partner",
            help="Partner system_id the route applies to; 'any' (or omitted when adding) = every partner.",
        ),
        click.option(
            "--dest-prefix",
            callback=_digits,
            help="Destination number prefix (digits); '' = every destination.",
        ),
        click.option(
            "--operator",
            "operators",
            multiple=True,
            callback=_targets,
            metavar="NAME[:WEIGHT]",
            help="Target operator (repeatable or comma-separated): failover order, or NAME:WEIGHT for "
            "--strategy weighted." + (" Required." if adding else " Replaces all targets."),
        ),
        click.option(
            "--source-prefix",
            callback=_digits,
            help="Only sources starting with these digits; '' = no filter.",
        ),
        click.option("--source-regex", help="Only sources matching this Python regex; '' = no filter."),
        click.option(
            "--priority",
            type=int,
            help="Higher wins among routes with the same prefix length."
            + (" [default: 0]" if adding else ""),
        ),
        click.option(
            "--strategy",
            type=click.Choice(["failover", "weighted"]),
            help="failover: operators in order; weighted: share by weight."
            + (" [default: failover]" if adding else ""),
        ),
        click.option("--description", help="Free text."),
    ]
    if adding:
        opts.append(click.option("--enabled/--disabled", default=True, show_default=True, help="In use."))
    for o in reversed(opts):
        f = o(f)
    return f


def _route_change_options(f: F) -> F:
    return _route_options(f, adding=False)


def _route_add_options(f: F) -> F:
    return _route_options(f, adding=True)


def _route_fields(source_prefix: str | None, source_regex: str | None, **kw: Any) -> dict[str, Any]:
    out = _given(**kw)
    if source_prefix is not None:
        out["source_prefix"] = source_prefix or None
    if source_regex is not None:
        out["source_regex"] = source_regex or None
    return out


def _route_text(r: Any) -> str:
    return ", ".join(
        f"{t.operator}:{t.weight}" if r.strategy == "weighted" else t.operator for t in r.targets
    )


@route_group.command("add", context_settings=CONTEXT_SETTINGS)
@_route_add_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the new route as JSON.")
def route_add(
    partner: str | None,
    dest_prefix: str | None,
    operators: list[Any] | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Add an MT route; prints its id (used by change/disable/enable/delete).

    Changes take effect on running gateways without a restart."""
    from catalyst_smpp.store import RouteRepo

    if not operators:
        raise click.UsageError("give at least one --operator")
    p = None if partner in (None, "", "any") else partner
    with db_connection(config, dsn, schema) as conn, _errors("route", dest_prefix or ""), conn.transaction():
        r = RouteRepo(conn).add(p, dest_prefix or "", operators, **_route_fields(**fields))
    _emit(
        as_json,
        _route_dict(r),
        f"route {r.id} added: {r.partner or 'any partner'} "
        f"{r.dest_prefix or '*'} -> {_route_text(r)} ({r.strategy})",
    )


@route_group.command("change", context_settings=CONTEXT_SETTINGS)
@click.argument("route_id", type=int)
@_route_change_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the route as JSON.")
def route_change(
    route_id: int,
    partner: str | None,
    operators: list[Any] | None,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Change route ROUTE_ID; only the options given change.

    Changes take effect on running gateways without a restart."""
    from catalyst_smpp.store import RouteRepo

    kw: dict[str, Any] = {}
    if partner is not None:
        kw["partner"] = None if partner in ("", "any") else partner
    with db_connection(config, dsn, schema) as conn, _errors("route", route_id), conn.transaction():
        r = RouteRepo(conn).change(route_id, operators=operators, **kw, **_route_fields(**fields))
    _emit(as_json, _route_dict(r), f"route {r.id} changed")


def _by_id(group: click.Group, kind: str, repo_name: str, verb: str, doc: str) -> None:
    @group.command(verb, context_settings=CONTEXT_SETTINGS, help=doc + "\n\n" + LIVE_NOTE)
    @click.argument("route_id", type=int)
    @db_options
    def cmd(route_id: int, config: Path | None, dsn: str | None, schema: str | None) -> None:
        import catalyst_smpp.store as store

        repo_cls = getattr(store, repo_name)
        with db_connection(config, dsn, schema) as conn, _errors(kind, route_id), conn.transaction():
            result = getattr(repo_cls(conn), verb)(route_id)
            if verb == "delete" and not result:
                fail(f"unknown {kind} {route_id}")
        click.echo(f"{kind} {route_id} {verb}d")


_by_id(route_group, "route", "RouteRepo", "disable", "Disable route ROUTE_ID.")
_by_id(route_group, "route", "RouteRepo", "enable", "Enable route ROUTE_ID.")
_by_id(route_group, "route", "RouteRepo", "delete", "Delete route ROUTE_ID.")


@route_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--partner", help="Only routes that apply to this partner (its own and the 'any' routes).")
@click.option("--enabled-only", is_flag=True, help="Only enabled routes.")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def route_list(
    partner: str | None,
    enabled_only: bool,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """List MT routes in evaluation order (priority, then longest prefix)."""
    from catalyst_smpp.store import RouteRepo

    with db_connection(config, dsn, schema) as conn, _errors("route", "*"):
        rs = RouteRepo(conn).list(partner=partner, enabled_only=enabled_only)
    rows = [
        (
            r.id,
            r.enabled,
            r.partner or "any",
            r.dest_prefix or "*",
            r.source_prefix or (f"/{r.source_regex}/" if r.source_regex else "*"),
            r.priority,
            r.strategy,
            _route_text(r),
            r.description,
        )
        for r in rs
    ]
    _emit(
        as_json,
        [_route_dict(r) for r in rs],
        table(
            ["ID", "ENABLED", "PARTNER", "DEST", "SOURCE", "PRIO", "STRATEGY", "OPERATORS", "DESCRIPTION"],
            rows,
        ),
    )


@route_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("route_id", type=int)
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def route_show(
    route_id: int, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Show one MT route."""
    from catalyst_smpp.store import RouteRepo

    with db_connection(config, dsn, schema) as conn, _errors("route", route_id):
        r = RouteRepo(conn).get(route_id)
    if r is None:
        fail(f"unknown route {route_id}")
    d = _route_dict(r)
    d["partner"] = r.partner or "any"
    _emit(as_json, _route_dict(r), _show(d))


# --------------------------------------------------------------------------- MO routes


def _mo_repo(conn: psycopg.Connection[Any]) -> Any:
    try:
        from catalyst_smpp.store import MoRouteRepo
    except ImportError:
        fail("this build has no MO route store yet (catalyst_smpp.store.MoRouteRepo)")
    return MoRouteRepo(conn)


@click.group("mo-route", context_settings=CONTEXT_SETTINGS)
def mo_route_group() -> None:
    """MO routes: which partner gets a mobile-originated message, by its destination (short code or
    long number) and optionally its source.

    Longest destination prefix wins, then priority.  Changes take effect on running gateways without
    a restart."""


def _mo_options(f: F, *, adding: bool) -> F:
    opts = [
        click.option(
            "--source-prefix",
            callback=_digits,
            help="Only sources starting with these digits; '' = any source.",
        ),
        click.option(
            "--priority",
            type=int,
            help="Higher wins among routes with the same prefix length."
            + (" [default: 0]" if adding else ""),
        ),
        click.option("--description", help="Free text."),
    ]
    if adding:
        opts.append(click.option("--enabled/--disabled", default=True, show_default=True, help="In use."))
    else:
        opts = [
            click.option("--dest-prefix", callback=_digits, help="Destination prefix (digits); '' = any."),
            click.option("--partner", help="Partner system_id that receives the MO."),
            *opts,
        ]
    for o in reversed(opts):
        f = o(f)
    return f


def _mo_change_options(f: F) -> F:
    return _mo_options(f, adding=False)


def _mo_add_options(f: F) -> F:
    return _mo_options(f, adding=True)


@mo_route_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--dest-prefix",
    callback=_digits,
    default="",
    help="Destination prefix (digits: a short code or number prefix); '' = any destination.",
)
@click.option("--partner", required=True, help="Partner system_id that receives the MO.")
@_mo_add_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the new MO route as JSON.")
def mo_route_add(
    dest_prefix: str,
    partner: str,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
    **fields: Any,
) -> None:
    """Add an MO route; prints its id.

    Changes take effect on running gateways without a restart."""
    with db_connection(config, dsn, schema) as conn, _errors("MO route", dest_prefix), conn.transaction():
        r = _mo_repo(conn).add(dest_prefix, partner, **_given(**fields))
    _emit(as_json, _mo_route_dict(r), f"MO route {r.id} added: {r.dest_prefix or '*'} -> {r.partner}")


@mo_route_group.command("change", context_settings=CONTEXT_SETTINGS)
@click.argument("route_id", type=int)
@_mo_change_options
@db_options
@click.option("--json", "as_json", is_flag=True, help="Print the MO route as JSON.")
def mo_route_change(
    route_id: int, config: Path | None, dsn: str | None, schema: str | None, as_json: bool, **fields: Any
) -> None:
    """Change MO route ROUTE_ID; only the options given change.

    Changes take effect on running gateways without a restart."""
    with db_connection(config, dsn, schema) as conn, _errors("MO route", route_id), conn.transaction():
        r = _mo_repo(conn).change(route_id, **_given(**fields))
    _emit(as_json, _mo_route_dict(r), f"MO route {r.id} changed")


def _mo_by_id(verb: str, doc: str) -> None:
    @mo_route_group.command(verb, context_settings=CONTEXT_SETTINGS, help=doc + "\n\n" + LIVE_NOTE)
    @click.argument("route_id", type=int)
    @db_options
    def cmd(route_id: int, config: Path | None, dsn: str | None, schema: str | None) -> None:
        with db_connection(config, dsn, schema) as conn, _errors("MO route", route_id), conn.transaction():
            result = getattr(_mo_repo(conn), verb)(route_id)
            if verb == "delete" and not result:
                fail(f"unknown MO route {route_id}")
        click.echo(f"MO route {route_id} {verb}d")


_mo_by_id("disable", "Disable MO route ROUTE_ID.")
_mo_by_id("enable", "Enable MO route ROUTE_ID.")
_mo_by_id("delete", "Delete MO route ROUTE_ID.")


@mo_route_group.command("list", context_settings=CONTEXT_SETTINGS)
@click.option("--partner", help="Only the MO routes of this partner.")
@click.option("--enabled-only", is_flag=True, help="Only enabled MO routes.")
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of a table.")
def mo_route_list(
    partner: str | None,
    enabled_only: bool,
    config: Path | None,
    dsn: str | None,
    schema: str | None,
    as_json: bool,
) -> None:
    """List MO routes in matching order (longest destination prefix, then priority)."""
    with db_connection(config, dsn, schema) as conn, _errors("MO route", "*"):
        rs = _mo_repo(conn).list(partner=partner, enabled_only=enabled_only)
    rows = [
        (r.id, r.enabled, r.dest_prefix or "*", r.source_prefix or "*", r.priority, r.partner, r.description)
        for r in rs
    ]
    _emit(
        as_json,
        [_mo_route_dict(r) for r in rs],
        table(["ID", "ENABLED", "DEST", "SOURCE", "PRIO", "PARTNER", "DESCRIPTION"], rows),
    )


@mo_route_group.command("show", context_settings=CONTEXT_SETTINGS)
@click.argument("route_id", type=int)
@db_options
@click.option("--json", "as_json", is_flag=True, help="JSON instead of text.")
def mo_route_show(
    route_id: int, config: Path | None, dsn: str | None, schema: str | None, as_json: bool
) -> None:
    """Show one MO route."""
    with db_connection(config, dsn, schema) as conn, _errors("MO route", route_id):
        r = _mo_repo(conn).get(route_id)
    if r is None:
        fail(f"unknown MO route {route_id}")
    _emit(as_json, _mo_route_dict(r), _show(_mo_route_dict(r)))


# --------------------------------------------------------------------------- registration


def register(main: click.Group) -> None:
    """Add migrate, partner, operator, route and mo-route to the ``catalyst-smpp`` group."""
    for cmd in (migrate_cmd, partner_group, operator_group, route_group, mo_route_group):
        main.add_command(cmd)
