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
import functools
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

NO_RESTART = "Changes take effect on running gateways without a restart."
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


def _hex_statuses(statuses: Sequence[int]) -> str:
    return ",".join(f"0x{s:X}" for s in statuses)


def _operator_text(d: dict[str, Any]) -> dict[str, Any]:
    """``operator show`` as text: statuses in hex, as SMSC documents write them (JSON keeps integers)."""
    d = dict(d)
    d["temporary_statuses"] = _hex_statuses(d.get("temporary_statuses") or ())
    return d


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


def _stack(*decorators: Callable[[Any], Any]) -> Callable[[F], F]:
    """The decorators applied as if written one above the other (the first on top)."""

    def apply(f: F) -> F:
        for d in reversed(decorators):
            f = d(f)
        return f

    return apply


def db_options(f: F) -> F:
    return _stack(
        click.option(
            "--config",
            "-c",
            "config",
            envvar="CATALYST_SMPP_CONFIG",
            type=click.Path(dir_okay=False, path_type=Path),
            help=f"Gateway config file; its [database] is used (default {DEFAULT_CONFIG} if it exists) "
            "[env CATALYST_SMPP_CONFIG].",
        ),
        click.option(
            "--dsn",
            envvar="CATALYST_SMPP_DSN",
            help="Postgres connection string, e.g. 'host=db1 dbname=catalyst user=catalyst' "
            "(overrides --config) [env CATALYST_SMPP_DSN].",
        ),
        click.option(
            "--schema",
            envvar="CATALYST_SMPP_SCHEMA",
            help="Postgres schema of the tables (default: the config's database.schema, else public).",
        ),
    )(f)


def _json_option(help: str) -> Callable[[F], F]:
    return click.option("--json", "as_json", is_flag=True, help=help)


@contextlib.contextmanager
def _errors(what: str) -> Iterator[None]:
    """Turn store/database errors about ``what`` (e.g. "partner 'acme'") into one clear line and exit 1."""
    from catalyst_smpp.store import NotFound

    try:
        yield
    except NotFound as e:
        fail(str(e).replace("no ", "unknown ", 1) if str(e).startswith("no ") else str(e))
    except psycopg.errors.UniqueViolation:
        fail(f"{what} already exists")
    except psycopg.errors.ForeignKeyViolation as e:
        detail = (e.diag.message_detail or "").strip()
        fail(f"{what} is still referenced ({detail or e.diag.message_primary}); remove those first")
    except psycopg.errors.CheckViolation as e:
        fail(f"invalid value for {what}: {e.diag.message_primary} ({e.diag.constraint_name})")
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


def _digits(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    if value is not None and value != "" and not value.isdigit():
        raise click.BadParameter("digits only (e.g. 4477)")
    return value


# --------------------------------------------------------------------------- the shared command machinery


@attrs.frozen
class _Kind:
    """One kind of record the commands administer, and how they speak of it."""

    label: str  # in messages: "partner", "MO route"
    repo_name: str  # its repository class in catalyst_smpp.store
    key_arg: str  # the argument that names one (change, show) ...
    key_attr: str  # ... and the record attribute that does
    key_type: Any = str
    to_dict: Callable[[Any], dict[str, Any]] = _record_dict  # --json and show (secrets left out)
    fields: Callable[..., dict[str, Any]] = _given  # option values -> repository keyword arguments
    any_field: str | None = None  # show: this field, when empty, reads "any"
    to_text: Callable[[dict[str, Any]], dict[str, Any]] | None = None  # show as text (default: to_dict's)

    def named(self, key: Any) -> str:
        return f"{self.label} {key!r}"

    def repo(self, conn: psycopg.Connection[Any]) -> Any:
        import catalyst_smpp.store as store

        repo_cls = getattr(store, self.repo_name, None)
        if repo_cls is None:
            fail(f"this build has no {self.label} store yet (catalyst_smpp.store.{self.repo_name})")
        return repo_cls(conn)

    def argument(self, name: str | None = None) -> Callable[[F], F]:
        return click.argument(name or self.key_arg, type=self.key_type)

    def emit(self, as_json: bool, record: Any, verb: str, detail: str = "") -> None:
        """The record as JSON, or "<kind> <key> <verb><detail>"."""
        _emit(as_json, self.to_dict(record), f"{self.named(getattr(record, self.key_attr))} {verb}{detail}")


@attrs.frozen
class _Db:
    """Where the database is (--config / --dsn / --schema)."""

    config: Path | None
    dsn: str | None
    schema: str | None

    def connect(self) -> contextlib.AbstractContextManager[psycopg.Connection[Any]]:
        return db_connection(self.config, self.dsn, self.schema)

    @contextlib.contextmanager
    def repo(self, kind: _Kind, key: Any, *, write: bool = False) -> Iterator[Any]:
        """The kind's repository, its errors about ``key`` reported; ``write``: in one transaction."""
        with self.connect() as conn, _errors(kind.named(key)):
            with conn.transaction() if write else contextlib.nullcontext():
                yield kind.repo(conn)


def _with_db(f: Callable[..., None]) -> Callable[..., None]:
    """``db_options``, handed to the command as one ``db`` argument."""

    @functools.wraps(f)
    def command(*, config: Path | None, dsn: str | None, schema: str | None, **kw: Any) -> None:
        f(db=_Db(config, dsn, schema), **kw)

    return db_options(command)


@attrs.frozen
class _Setting:
    """An option of a kind's add and change commands: add shows its default, change leaves it unset."""

    decls: tuple[str, ...]
    kwargs: dict[str, Any]
    help: str
    add_help: str = ""
    change_help: str = ""

    def option(self, adding: bool) -> Callable[[F], F]:
        help = self.help + (self.add_help if adding else self.change_help)
        return click.option(*self.decls, help=help, **self.kwargs)


def _setting(
    *decls: str,
    help: str,
    shown_default: str | None = None,
    add_help: str = "",
    change_help: str = "",
    **kwargs: Any,
) -> _Setting:
    """``shown_default``: the default the add command applies, for its help (the option has none)."""
    if shown_default is not None:
        add_help = f" [default: {shown_default}]"
    return _Setting(decls, kwargs, help, add_help, change_help)


@attrs.frozen
class _Settings:
    """A kind's settings options: add has them with --enabled/--disabled, change with ``change_only`` first
    (what add takes as arguments or required options)."""

    options: tuple[_Setting, ...]
    enabled_help: str
    change_only: tuple[Callable[[Any], Any], ...] = ()

    def add(self, f: F) -> F:
        enabled = click.option(
            "--enabled/--disabled", default=True, show_default=True, help=self.enabled_help
        )
        return _stack(*(s.option(True) for s in self.options), enabled)(f)

    def change(self, f: F) -> F:
        return _stack(*self.change_only, *(s.option(False) for s in self.options))(f)


_DESCRIPTION = _setting("--description", help="Free text.")
_PRIORITY = _setting(
    "--priority", type=int, help="Higher wins among routes with the same prefix length.", shown_default="0"
)


def _change_command(group: click.Group, kind: _Kind, options: Callable[[Any], Any], doc: str) -> None:
    @group.command("change", context_settings=CONTEXT_SETTINGS, help=doc)
    @kind.argument()
    @options
    @_with_db
    @_json_option(f"Print the {kind.label} as JSON.")
    def change(db: _Db, as_json: bool, **fields: Any) -> None:
        key = fields.pop(kind.key_arg)
        with db.repo(kind, key, write=True) as repo:
            record = repo.change(key, **kind.fields(**fields))
        kind.emit(as_json, record, "changed")


def _key_commands(group: click.Group, kind: _Kind, key_arg: str, docs: dict[str, str]) -> None:
    """disable / enable / delete KEY (``docs`` by verb)."""
    for verb, doc in docs.items():
        _key_command(group, kind, key_arg, verb, doc)


def _key_command(group: click.Group, kind: _Kind, key_arg: str, verb: str, doc: str) -> None:
    @group.command(verb, context_settings=CONTEXT_SETTINGS, help=f"{doc}\n\n{LIVE_NOTE}")
    @kind.argument(key_arg)
    @_with_db
    def cmd(db: _Db, **kw: Any) -> None:
        key = kw[key_arg]
        with db.repo(kind, key, write=True) as repo:
            result = getattr(repo, verb)(key)
            if verb == "delete" and not result:
                fail(f"unknown {kind.named(key)}")
        click.echo(f"{kind.named(key)} {verb}d")


def _list_command(
    group: click.Group,
    kind: _Kind,
    doc: str,
    headers: Sequence[str],
    row: Callable[[Any], Sequence[Any]],
    *,
    partner_help: str | None = None,
    order: Callable[[], tuple[Callable[[list[Any]], list[Any]], str]] | None = None,
) -> None:
    """``order``: gives the function that puts the records in the order that matters and what that order
    is, said above the table (called when listing: the routes' order comes from the router's module)."""
    filters = [click.option("--partner", help=partner_help)] if partner_help else []

    @group.command("list", context_settings=CONTEXT_SETTINGS, help=doc)
    @_stack(*filters, click.option("--enabled-only", is_flag=True, help=f"Only enabled {kind.label}s."))
    @_with_db
    @_json_option("JSON instead of a table.")
    def list_(db: _Db, as_json: bool, **filters: Any) -> None:
        with db.repo(kind, "*") as repo:
            records = repo.list(**filters)
        text = ""
        if order is not None:
            sort, meaning = order()
            records = sort(records)
            text = f"# in the order they are tried: {meaning}\n"
        _emit(as_json, [kind.to_dict(r) for r in records], text + table(headers, [row(r) for r in records]))


def _show_command(group: click.Group, kind: _Kind, doc: str) -> None:
    @group.command("show", context_settings=CONTEXT_SETTINGS, help=doc)
    @kind.argument()
    @_with_db
    @_json_option("JSON instead of text.")
    def show(db: _Db, as_json: bool, **kw: Any) -> None:
        key = kw[kind.key_arg]
        with db.repo(kind, key) as repo:
            record = repo.get(key)
        if record is None:
            fail(f"unknown {kind.named(key)}")
        data = kind.to_dict(record)
        text = kind.to_text(data) if kind.to_text is not None else dict(data)
        if kind.any_field:
            text[kind.any_field] = text[kind.any_field] or "any"
        _emit(as_json, data, _show(text))


# --------------------------------------------------------------------------- migrate


@click.command("migrate", context_settings=CONTEXT_SETTINGS)
@_with_db
def migrate_cmd(db: _Db) -> None:
    """Apply pending database schema migrations and print the applied and available versions.

    Safe while gateways run and when several nodes migrate at once (an advisory lock serialises them).
    `catalyst-smpp run` also migrates at start unless database.migrate_on_start = false."""
    from catalyst_smpp.store import MigrationError, available_migrations, migrate

    with db.connect() as conn:
        try:
            done = migrate(conn, schema=db.schema or "")
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


def _partner_fields(**kw: Any) -> dict[str, Any]:
    if kw.get("receipt_date_digits") is not None:
        kw["receipt_date_digits"] = int(kw["receipt_date_digits"])
    out = _given(**kw)
    if kw.get("price_plan") == "":
        out["price_plan"] = None  # unset: the partner is no longer billed
    return out


def _status(ctx: click.Context, param: click.Parameter, value: str | None) -> int | None:
    """--insufficient-credit-status 0x45 → 69 (hex with 0x, as --temporary-statuses; 0x1..0xFFFFFFFF)."""
    if value is None:
        return None
    from catalyst_smpp.store.records import MAX_STATUS_32, parse_command_status

    try:
        return parse_command_status(value, maximum=MAX_STATUS_32)
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _partner_text(d: dict[str, Any]) -> dict[str, Any]:
    """``partner show`` as text: the status in hex, as SMPP documents write it (JSON keeps the integer)."""
    d = dict(d)
    d["insufficient_credit_status"] = f"0x{d['insufficient_credit_status']:X}"
    d["price_plan"] = d.get("price_plan") or "none (not billed)"
    return d


PARTNER = _Kind(
    "partner",
    "PartnerRepo",
    key_arg="system_id",
    key_attr="system_id",
    to_dict=_partner_dict,
    fields=_partner_fields,
    any_field="allowed_ips",
    to_text=_partner_text,
)

_PARTNER_SETTINGS = _Settings(
    (
        _setting(
            "--allowed-ips",
            callback=_comma_list,
            metavar="NET,...",
            help="Comma-separated addresses/networks the partner may bind from; '' = any address.",
        ),
        _setting(
            "--max-binds",
            type=click.IntRange(min=1),
            help="Binds at once (all nodes each).",
            shown_default="4",
        ),
        _setting(
            "--throttle-rate",
            type=click.FloatRange(min=0, min_open=True),
            help="Submits per second (token bucket); above it ESME_RTHROTTLED.",
            shown_default="100",
        ),
        _setting(
            "--throttle-burst",
            type=click.IntRange(min=1),
            help="Token bucket size: submits allowed in a burst.",
            shown_default="100",
        ),
        _setting(
            "--window",
            type=click.IntRange(min=1),
            help="deliver_sm (receipts, MO) in flight toward the partner.",
            shown_default="10",
        ),
        _setting(
            "--message-id-format",
            type=click.Choice(["hex", "dec"]),
            help="How our message ids are shown to this partner.",
            shown_default="hex",
        ),
        _setting(
            "--data-coding-0",
            type=click.Choice(["gsm7", "latin1", "ascii"]),
            help="What data_coding 0 means in this partner's submits.",
            shown_default="gsm7",
        ),
        _setting(
            "--receipt-date-digits",
            type=click.Choice(["10", "12"]),
            help="Dates in receipt text: 10 = YYMMDDhhmm, 12 = YYMMDDhhmmss.",
            shown_default="10",
        ),
        _setting(
            "--price-plan",
            metavar="NAME",
            help="Price plan (kind price) the partner pays by; without one it is not billed.",
            shown_default="none",
            change_help=" '' = none (no longer billed).",
        ),
        _setting(
            "--charge-on",
            type=click.Choice(["submit", "delivery"]),
            help="Charging point: submit = when the operator accepts the message (submit_price), delivery = "
            "on a DELIVRD receipt (delivery_price, else submit_price).",
            shown_default="submit",
        ),
        _setting(
            "--insufficient-credit-status",
            callback=_status,
            metavar="0xNN",
            help="command_status of a submit refused for lack of credit (hex with 0x).",
            shown_default="0x45 ESME_RSUBMITFAIL",
        ),
        _setting(
            "--margin-guard/--no-margin-guard",
            default=None,
            help="Refuse a message whose cost exceeds its price (same currency only).",
            shown_default="no",
        ),
        _setting("--description", help="Free text (who, contract, contact)."),
    ),
    enabled_help="May bind.",
)


@click.group("partner", context_settings=CONTEXT_SETTINGS)
def partner_group() -> None:
    """Partners: the ESMEs that bind to this gateway (system_id, password, limits).

    Changes take effect on running gateways without a restart."""


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
@_PARTNER_SETTINGS.add
@_with_db
@_json_option("Print the new partner as JSON.")
def partner_add(db: _Db, as_json: bool, system_id: str, password: str, **fields: Any) -> None:
    """Add a partner SYSTEM_ID (at most 15 characters).

    Changes take effect on running gateways without a restart."""
    with db.repo(PARTNER, system_id, write=True) as repo:
        p = repo.add(system_id, password, **_partner_fields(**fields))
    PARTNER.emit(as_json, p, "added")


_change_command(
    partner_group,
    PARTNER,
    _stack(
        click.option(
            "--password",
            prompt="New password",
            prompt_required=False,
            hide_input=True,
            confirmation_prompt=True,
            default=None,
            callback=_max_len(8),
            help="New bind password; give --password without a value to be prompted.",
        ),
        _PARTNER_SETTINGS.change,
    ),
    "Change settings of partner SYSTEM_ID; only the options given change.\n\n"
    "Changes take effect on running gateways without a restart (new limits apply to new binds and "
    "submits; a new password to the next bind).",
)
_key_commands(
    partner_group,
    PARTNER,
    "name",
    {
        "disable": "Disable partner NAME: new binds are refused; open binds are closed by running gateways.",
        "enable": "Enable partner NAME again.",
        "delete": "Delete partner NAME and its routes (messages already queued for it stay in JetStream "
        "until they expire).",
    },
)


def _partner_row(p: Any) -> tuple[Any, ...]:
    return (
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


_list_command(
    partner_group,
    PARTNER,
    "List partners (passwords are never shown).",
    (
        "SYSTEM_ID",
        "ENABLED",
        "MAX_BINDS",
        "RATE/BURST",
        "WINDOW",
        "IDS",
        "DC0",
        "ALLOWED_IPS",
        "DESCRIPTION",
    ),
    _partner_row,
)
_show_command(partner_group, PARTNER, "Show one partner (the password is never shown).")


# --------------------------------------------------------------------------- operators


def _operator_fields(**kw: Any) -> dict[str, Any]:
    out = _given(**kw)
    if kw.get("cost_plan") == "":
        out["cost_plan"] = None  # unset
    return out


OPERATOR = _Kind(
    "operator",
    "OperatorRepo",
    key_arg="name",
    key_attr="name",
    to_dict=_operator_dict,
    to_text=_operator_text,
    fields=_operator_fields,
)


def _operator_address(required: bool) -> tuple[Callable[[Any], Any], ...]:
    """--host, --port and --system-id: required by add, optional in change."""
    return (
        click.option("--host", required=required, help="SMSC host name or address."),
        click.option("--port", type=click.IntRange(1, 65535), required=required, help="SMSC port."),
        click.option("--system-id", required=required, callback=_max_len(15), help="system_id we bind with."),
    )


_ID_FORMAT = click.Choice(["text", "hex", "dec"])


def _statuses(ctx: click.Context, param: click.Parameter, value: str | None) -> list[int] | None:
    """--temporary-statuses 0x401,0x402 → [1025, 1026]; "" → [] (none)."""
    if value is None:
        return None
    from catalyst_smpp.store import parse_command_statuses

    try:
        return list(parse_command_statuses(value))
    except ValueError as e:
        raise click.BadParameter(str(e)) from None


def _absolute_path(ctx: click.Context, param: click.Parameter, value: str | None) -> str | None:
    """A file the gateway nodes read: absolute (they do not run in the admin's directory); "" = unset."""
    if value is not None and value != "" and not value.startswith("/"):
        raise click.BadParameter(f"{value!r}: give an absolute path (gateway nodes read it)")
    return value


_OPERATOR_SETTINGS = _Settings(
    (
        _setting(
            "--password",
            callback=_max_len(8),
            help="Password we bind with (stored in clear: needed to bind).",
        ),
        _setting(
            "--system-type", callback=_max_len(12), help="system_type of our binds.", shown_default="''"
        ),
        _setting("--tls/--no-tls", default=None, help="TLS to the SMSC.", shown_default="no"),
        _setting(
            "--tls-ca-file",
            callback=_absolute_path,
            metavar="PATH",
            help="With --tls: PEM file of the CAs the SMSC's certificate must chain to, an absolute path "
            "on every gateway node.",
            shown_default="the system's CAs",
            change_help=" '' = the system's CAs.",
        ),
        _setting(
            "--tls-server-name",
            help="With --tls: the name the SMSC's certificate must carry (also sent as SNI).",
            shown_default="the host",
            change_help=" '' = the host.",
        ),
        _setting(
            "--bind-type",
            type=click.Choice(["transceiver", "transmitter", "receiver", "tx_rx"]),
            help="How we bind; tx_rx = one transmitter + one receiver bind.",
            shown_default="transceiver",
        ),
        _setting("--bind-count", type=click.IntRange(min=1), help="Binds per node.", shown_default="1"),
        _setting(
            "--window", type=click.IntRange(min=1), help="submit_sm in flight per bind.", shown_default="10"
        ),
        _setting(
            "--tps",
            type=click.FloatRange(min=0, min_open=True),
            help="Submits per second to this operator, per node.",
            shown_default="100",
        ),
        _setting(
            "--data-coding-0",
            type=click.Choice(["gsm7", "latin1", "ascii"]),
            help="What data_coding 0 means at this SMSC.",
            shown_default="gsm7",
        ),
        _setting(
            "--segmentation",
            type=click.Choice(["udh8", "udh16", "sar", "payload"]),
            help="How long messages are split for this SMSC.",
            shown_default="udh8",
        ),
        _setting(
            "--submit-id-format",
            type=_ID_FORMAT,
            help="Message ids in its submit_sm_resp (for matching receipts).",
            shown_default="text",
        ),
        _setting(
            "--receipt-id-format",
            type=_ID_FORMAT,
            help="Message ids in its receipts (the receipted_message_id TLV and the text's id:): hex/dec ids "
            "are compared as numbers.  A receipt whose TLV and text ids differ is also tried with the TLV id "
            "read by --submit-id-format.",
            shown_default="text",
        ),
        _setting(
            "--receipts-by-text/--no-receipts-by-text",
            default=None,
            help="This SMSC sends receipts as plain deliver_sm (esm_class 0, no receipt TLVs): take a text "
            "that reads as a receipt for one instead of for an MO.",
            shown_default="no",
        ),
        _setting(
            "--temporary-statuses",
            callback=_statuses,
            metavar="0xNNN,...",
            help="submit_sm_resp statuses this SMSC means as 'try again later' (its vendor codes, in hex "
            "with 0x, comma-separated): retried with back-off instead of failing.",
            shown_default="none",
            change_help=" Replaces the list; '' clears it.",
        ),
        _setting(
            "--receipt-parts",
            type=click.Choice(["all", "last"]),
            help="Which parts of a long message ask the SMSC for a receipt; last = one receipt per message "
            "(failures of the other parts are not seen). Partners get one receipt per message either way.",
            shown_default="all",
        ),
        _setting(
            "--receipt-request",
            type=click.Choice(["final", "as_partner"]),
            help="What those parts ask for: final = a receipt in every final state (the message log learns "
            "each final state); as_partner = what the partner asked (none, failures only, every final "
            "state).",
            shown_default="final",
        ),
        _setting(
            "--cost-plan",
            metavar="NAME",
            help="Cost plan (kind cost): what this operator charges us, for least-cost routes and the margin "
            "guard.",
            shown_default="none",
            change_help=" '' = none.",
        ),
        _DESCRIPTION,
    ),
    enabled_help="Connect to it.",
    change_only=_operator_address(required=False),
)


@click.group("operator", context_settings=CONTEXT_SETTINGS)
def operator_group() -> None:
    """Operators: the SMSCs this gateway binds to (address, credentials, bind, window, TPS, encodings).

    Changes take effect on running gateways without a restart (connectors rebind when needed)."""


@operator_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.argument("name")
@_stack(*_operator_address(required=True))
@_OPERATOR_SETTINGS.add
@_with_db
@_json_option("Print the new operator as JSON.")
def operator_add(
    db: _Db, as_json: bool, name: str, host: str, port: int, system_id: str, **fields: Any
) -> None:
    """Add operator NAME (letters, digits, '_', '.', '-'; used in stream subjects).

    Changes take effect on running gateways without a restart."""
    with db.repo(OPERATOR, name, write=True) as repo:
        o = repo.add(name, host, port, system_id, **_operator_fields(**fields))
    OPERATOR.emit(as_json, o, "added")


_change_command(
    operator_group,
    OPERATOR,
    _OPERATOR_SETTINGS.change,
    f"Change settings of operator NAME; only the options given change.\n\n{NO_RESTART}",
)
_key_commands(
    operator_group,
    OPERATOR,
    "name",
    {
        "disable": "Disable operator NAME: connectors unbind; its queue keeps accumulating "
        "(routes fail over).",
        "enable": "Enable operator NAME again.",
        "delete": "Delete operator NAME (refused while a route still uses it).",
    },
)


def _operator_row(o: Any) -> tuple[Any, ...]:
    return (
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
        _hex_statuses(o.temporary_statuses),
        o.description,
    )


_list_command(
    operator_group,
    OPERATOR,
    "List operators (passwords are never shown).",
    (
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
        "TEMPORARY",
        "DESCRIPTION",
    ),
    _operator_row,
)
_show_command(operator_group, OPERATOR, "Show one operator (the password is never shown).")


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


def _any_partner(partner: str | None) -> str | None:
    """The partner of a route: None (every partner) for '', 'any' or not given."""
    return None if partner in (None, "", "any") else partner


def _route_fields(
    partner: str | None = None, source_prefix: str | None = None, source_regex: str | None = None, **kw: Any
) -> dict[str, Any]:
    out = _given(**kw)
    if partner is not None:
        out["partner"] = _any_partner(partner)
    if source_prefix is not None:
        out["source_prefix"] = source_prefix or None
    if source_regex is not None:
        out["source_regex"] = source_regex or None
    return out


def _route_text(r: Any) -> str:
    return ", ".join(
        f"{t.operator}:{t.weight}" if r.strategy == "weighted" else t.operator for t in r.targets
    )


ROUTE = _Kind(
    "route",
    "RouteRepo",
    key_arg="route_id",
    key_attr="id",
    key_type=int,
    fields=_route_fields,
    any_field="partner",
)

_ROUTE_SETTINGS = _Settings(
    (
        _setting(
            "--partner",
            help="Partner system_id the route applies to; 'any' (or omitted when adding) = every partner.",
        ),
        _setting(
            "--dest-prefix",
            callback=_digits,
            help="Destination number prefix (digits); '' = every destination.",
        ),
        _setting(
            "--operator",
            "operators",
            multiple=True,
            callback=_targets,
            metavar="NAME[:WEIGHT]",
            help="Target operator (repeatable or comma-separated): failover order, or NAME:WEIGHT for "
            "--strategy weighted.",
            add_help=" Required.",
            change_help=" Replaces all targets.",
        ),
        _setting(
            "--source-prefix",
            callback=_digits,
            help="Only sources starting with these digits; '' = no filter.",
        ),
        _setting("--source-regex", help="Only sources matching this Python regex; '' = no filter."),
        _PRIORITY,
        _setting(
            "--strategy",
            type=click.Choice(["failover", "weighted", "least_cost"]),
            help="failover: operators in order; weighted: share by weight; least_cost: the cheapest by the "
            "operators' cost plans for the destination first (ties and unknown costs in the order given).",
            shown_default="failover",
        ),
        _DESCRIPTION,
    ),
    enabled_help="In use.",
)


@click.group("route", context_settings=CONTEXT_SETTINGS)
def route_group() -> None:
    """MT routes: which operator(s) get a partner's message, by destination prefix and source filter.

    Longest destination prefix wins, then priority; failover tries the operators in order, weighted
    shares by weight.  An enabled route with the partner, destination prefix, priority and source filter of
    another enabled one is refused, naming it.  Changes take effect on running gateways without a restart."""


@route_group.command("add", context_settings=CONTEXT_SETTINGS)
@_ROUTE_SETTINGS.add
@_with_db
@_json_option("Print the new route as JSON.")
def route_add(
    db: _Db,
    as_json: bool,
    partner: str | None,
    dest_prefix: str | None,
    operators: list[Any] | None,
    **fields: Any,
) -> None:
    """Add an MT route; prints its id (used by change/disable/enable/delete).

    Changes take effect on running gateways without a restart."""
    if not operators:
        raise click.UsageError("give at least one --operator")
    with db.repo(ROUTE, dest_prefix or "", write=True) as repo:
        r = repo.add(_any_partner(partner), dest_prefix or "", operators, **_route_fields(**fields))
    ROUTE.emit(
        as_json,
        r,
        "added",
        f": {r.partner or 'any partner'} {r.dest_prefix or '*'} -> {_route_text(r)} ({r.strategy})",
    )


_change_command(
    route_group,
    ROUTE,
    _ROUTE_SETTINGS.change,
    f"Change route ROUTE_ID; only the options given change.\n\n{NO_RESTART}",
)
_key_commands(
    route_group,
    ROUTE,
    "route_id",
    {verb: f"{verb.capitalize()} route ROUTE_ID." for verb in ("disable", "enable", "delete")},
)


def _route_row(r: Any) -> tuple[Any, ...]:
    return (
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


def _route_order() -> tuple[Callable[[list[Any]], list[Any]], str]:
    from catalyst_smpp.gateway.routing import ROUTE_ORDER, route_order

    return route_order, ROUTE_ORDER


def _mo_route_order() -> tuple[Callable[[list[Any]], list[Any]], str]:
    from catalyst_smpp.gateway.routing import MO_ROUTE_ORDER, mo_route_order

    return mo_route_order, MO_ROUTE_ORDER


_list_command(
    route_group,
    ROUTE,
    "List MT routes in the order the router tries them (the first line says what the order is: longest "
    "destination prefix first, then priority, ...; disabled routes are shown where they would be).",
    ("ID", "ENABLED", "PARTNER", "DEST", "SOURCE", "PRIO", "STRATEGY", "OPERATORS", "DESCRIPTION"),
    _route_row,
    partner_help="Only routes that apply to this partner (its own and the 'any' routes).",
    order=_route_order,
)
_show_command(route_group, ROUTE, "Show one MT route.")


# --------------------------------------------------------------------------- MO routes


MO_ROUTE = _Kind("MO route", "MoRouteRepo", key_arg="route_id", key_attr="id", key_type=int)

_MO_PARTNER_HELP = "Partner system_id that receives the MO."

_MO_ROUTE_SETTINGS = _Settings(
    (
        _setting(
            "--source-prefix",
            callback=_digits,
            help="Only sources starting with these digits; '' = any source.",
        ),
        _PRIORITY,
        _DESCRIPTION,
    ),
    enabled_help="In use.",
    change_only=(
        click.option("--dest-prefix", callback=_digits, help="Destination prefix (digits); '' = any."),
        click.option("--partner", help=_MO_PARTNER_HELP),
    ),
)


@click.group("mo-route", context_settings=CONTEXT_SETTINGS)
def mo_route_group() -> None:
    """MO routes: which partner gets a mobile-originated message, by its destination (short code or
    long number) and optionally its source.

    Longest destination prefix wins, then priority.  An enabled MO route with the destination prefix,
    priority and source prefix of another enabled one is refused, naming it.  Changes take effect on running
    gateways without a restart."""


@mo_route_group.command("add", context_settings=CONTEXT_SETTINGS)
@click.option(
    "--dest-prefix",
    callback=_digits,
    default="",
    help="Destination prefix (digits: a short code or number prefix); '' = any destination.",
)
@click.option("--partner", required=True, help=_MO_PARTNER_HELP)
@_MO_ROUTE_SETTINGS.add
@_with_db
@_json_option("Print the new MO route as JSON.")
def mo_route_add(db: _Db, as_json: bool, dest_prefix: str, partner: str, **fields: Any) -> None:
    """Add an MO route; prints its id.

    Changes take effect on running gateways without a restart."""
    with db.repo(MO_ROUTE, dest_prefix, write=True) as repo:
        r = repo.add(dest_prefix, partner, **_given(**fields))
    MO_ROUTE.emit(as_json, r, "added", f": {r.dest_prefix or '*'} -> {r.partner}")


_change_command(
    mo_route_group,
    MO_ROUTE,
    _MO_ROUTE_SETTINGS.change,
    f"Change MO route ROUTE_ID; only the options given change.\n\n{NO_RESTART}",
)
_key_commands(
    mo_route_group,
    MO_ROUTE,
    "route_id",
    {verb: f"{verb.capitalize()} MO route ROUTE_ID." for verb in ("disable", "enable", "delete")},
)
_list_command(
    mo_route_group,
    MO_ROUTE,
    "List MO routes in the order the router tries them (the first line says what the order is: longest "
    "destination prefix first, then priority, then the longer source prefix, then the older).",
    ("ID", "ENABLED", "DEST", "SOURCE", "PRIO", "PARTNER", "DESCRIPTION"),
    lambda r: (
        r.id,
        r.enabled,
        r.dest_prefix or "*",
        r.source_prefix or "*",
        r.priority,
        r.partner,
        r.description,
    ),
    partner_help="Only the MO routes of this partner.",
    order=_mo_route_order,
)
_show_command(mo_route_group, MO_ROUTE, "Show one MO route.")


# --------------------------------------------------------------------------- registration


def register(main: click.Group) -> None:
    """Add migrate, partner, operator, route and mo-route to the ``catalyst-smpp`` group."""
    for cmd in (migrate_cmd, partner_group, operator_group, route_group, mo_route_group):
        main.add_command(cmd)
