"""TOML configuration → typed, frozen attrs objects.

``load_config(path)`` reads a TOML file and returns a :class:`Config`.  Every
problem raises :class:`ConfigError` naming the file, the key path
(``listeners[1].port``) and the problem: wrong type, out of range, not one of
the allowed values, or an unknown key (with a "did you mean" suggestion).

The schema is the attrs classes below: field types drive conversion, and
``metadata`` carries ranges (``min``/``max``), allowed values (``choices``) and
special kinds (``duration``: seconds or "500ms"/"30s"/"5m"/"2h"/"3d";
``size``: bytes or "64KB"/"512MB"/"1GB"; ``path``: relative to the config file).
"""

# ruff: noqa: RUF009  (attrs fields are declared through the _f() helper, not dataclass defaults)
from __future__ import annotations

import difflib
import math
import os
import re
import socket
import tomllib
import types
import typing
from collections.abc import Mapping
from pathlib import Path
from typing import Any, TypeVar

import attrs

__all__ = [
    "MAX_WORKERS",
    "BillingConfig",
    "ClusterConfig",
    "Config",
    "ConfigError",
    "DatabaseConfig",
    "HttpConfig",
    "KvConfig",
    "LimitsConfig",
    "ListenerConfig",
    "LoggingConfig",
    "MetricsConfig",
    "NatsConfig",
    "NodeConfig",
    "OperatorSeed",
    "PartnerSeed",
    "StreamConfig",
    "StreamsConfig",
    "check_workers",
    "cpu_count",
    "load_config",
    "parse_config",
    "resolve_workers",
]

MAX_WORKERS = 1024
"""One node number (0..1023) per worker process."""


class ConfigError(Exception):
    """A configuration problem: ``path`` (the file), ``key`` (``listeners[1].port``), ``problem`` (what)."""

    def __init__(self, path: str, key: str, problem: str) -> None:
        self.path = path
        self.key = key
        self.problem = problem
        where = f"{path}: {key}" if key else path
        super().__init__(f"{where}: {problem}")


def _f(
    default: Any = attrs.NOTHING,
    *,
    min: float | None = None,
    max: float | None = None,
    choices: tuple[Any, ...] | None = None,
    kind: str | None = None,
    factory: Any = None,
) -> Any:
    meta: dict[str, Any] = {}
    if min is not None:
        meta["min"] = min
    if max is not None:
        meta["max"] = max
    if choices is not None:
        meta["choices"] = choices
    if kind is not None:
        meta["kind"] = kind
    if factory is not None:
        return attrs.field(factory=factory, metadata=meta)
    return attrs.field(default=default, metadata=meta)


# --------------------------------------------------------------------------- schema


@attrs.frozen
class NodeConfig:
    id: str = _f("")
    """Node id used in logs, NATS client names and metrics; empty = the host name."""
    state_dir: Path = _f(Path("state"), kind="path")
    """Embedded nats-server and Postgres keep their data under this directory."""
    number: int = _f(-1, min=-1, max=1023)
    """Node number (message ids) of this host's first worker; worker k uses number + k.  -1 = derived from
    ``id`` (see :mod:`catalyst_smpp.gateway.ids`).  Set it on multi-host deployments: one block per host."""
    workers: int = _f(1, min=0, max=MAX_WORKERS, kind="workers")
    """Gateway worker processes sharing the listeners (bound once by the parent) under one supervising parent;
    1 = a single process (no parent); 0 or "auto" = one per CPU this process may run on."""
    connectors: bool = _f(True)
    """False: this node runs no operator connectors (partner side only: listeners, accept, delivery); the
    operators' queues are served by the other nodes sharing NATS and Postgres (split deployments)."""

    @property
    def effective_id(self) -> str:
        return self.id or socket.gethostname()


@attrs.frozen
class StreamConfig:
    """Limits of one JetStream stream and of the durable consumers on it."""

    max_age: float = _f(0.0, min=0, kind="duration")
    """0 = unlimited."""
    max_bytes: int = _f(-1, min=-1, kind="size")
    max_msgs_per_subject: int = _f(-1, min=-1)
    """Bound per operator (MT) or per partner (DLR, MO): the store-and-forward limit. -1 = unlimited."""
    discard: str = _f("new", choices=("new", "old"))
    """"new": a full subject rejects the publish (caller answers ESME_RMSGQFUL); "old": drops the oldest."""
    duplicate_window: float = _f(120.0, min=0, kind="duration")
    ack_wait: float = _f(30.0, min=0.001, kind="duration")
    max_deliver: int = _f(-1, min=-1)
    max_ack_pending: int = _f(20000, min=-1)
    backoff: tuple[float, ...] = _f(factory=tuple, kind="duration")
    """Redelivery delays after a missed ack (overrides ack_wait when set); the last repeats."""


def _mt_stream() -> StreamConfig:
    return StreamConfig(max_age=3 * 86400.0, max_msgs_per_subject=1_000_000)


def _partner_stream() -> StreamConfig:
    # discard "old": at a partner's bound its oldest receipts / MO go, and nobody else notices.  With "new"
    # the next one would be refused, the operator's deliver_sm answered with a temporary error, and an SMSC
    # that retries receipts in order per bind would hold back every other partner's receipts behind it.
    return StreamConfig(max_age=3 * 86400.0, max_msgs_per_subject=200_000, discard="old")


def _events_stream() -> StreamConfig:
    return StreamConfig(max_age=7 * 86400.0, discard="old")


@attrs.frozen
class StreamsConfig:
    mt: StreamConfig = _f(factory=_mt_stream)
    dlr: StreamConfig = _f(factory=_partner_stream)
    mo: StreamConfig = _f(factory=_partner_stream)
    events: StreamConfig = _f(factory=_events_stream)


@attrs.frozen
class KvConfig:
    bucket: str = _f("OPIDS")
    ttl: float = _f(3 * 86400.0, min=1, kind="duration")
    """How long an operator message id stays mappable to ours (longest receipt delay you accept)."""
    max_bytes: int = _f(-1, min=-1, kind="size")


@attrs.frozen
class NatsConfig:
    urls: tuple[str, ...] = _f(factory=tuple)
    """Empty = start an embedded nats-server under node.state_dir."""
    embedded_host: str = _f("127.0.0.1")
    embedded_port: int = _f(0, min=0, max=65535)
    """0 = a free port."""
    embedded_sync_always: bool = _f(False)
    """Embedded server only: fsync every write (survives power loss, slower)."""
    namespace: str = _f("")
    """Prefix for stream names and subjects, to run several gateways on one NATS account."""
    replicas: int = _f(1, min=1, max=5)
    connect_timeout: float = _f(2.0, min=0.1, kind="duration")
    reconnect_wait: float = _f(1.0, min=0.01, kind="duration")
    publish_timeout: float = _f(5.0, min=0.05, kind="duration")
    publish_retry: float = _f(1.0, min=0.0, kind="duration")
    request_timeout: float = _f(5.0, min=0.05, kind="duration")
    streams: StreamsConfig = _f(factory=StreamsConfig)
    kv: KvConfig = _f(factory=KvConfig)


@attrs.frozen
class DatabaseConfig:
    dsn: str = _f("")
    """Empty = start an embedded Postgres under node.state_dir."""
    schema: str = _f("")
    """Schema for our tables (search_path); empty = the server's default (public)."""
    pool_size: int = _f(4, min=1, max=64)
    connect_timeout: float = _f(5.0, min=0.1, kind="duration")
    migrate_on_start: bool = _f(True)


@attrs.frozen
class ListenerConfig:
    host: str = _f("0.0.0.0")
    port: int = _f(2775, min=1, max=65535)
    tls_cert: Path | None = _f(None, kind="path")
    tls_key: Path | None = _f(None, kind="path")
    reuse_port: bool = _f(True)
    """No longer used (accepted so older files load): the gateway never sets SO_REUSEPORT; its workers share
    the socket the supervising parent binds (catalyst_smpp.listen), and no other process can join the port."""


@attrs.frozen
class LimitsConfig:
    bind_timeout: float = _f(10.0, min=0.1, kind="duration")
    response_timeout: float = _f(10.0, min=0.1, kind="duration")
    enquire_link_interval: float = _f(30.0, min=1, kind="duration")
    inactivity_timeout: float = _f(120.0, min=1, kind="duration")
    max_pdu_size: int = _f(65536, min=1024, max=1048576, kind="size")
    default_window: int = _f(10, min=1, max=10000)
    shutdown_grace: float = _f(10.0, min=0, kind="duration")
    fetch_batch: int = _f(256, min=1, max=10000)
    event_batch: int = _f(5000, min=1, max=1_000_000)
    event_linger: float = _f(0.2, min=0, max=5, kind="duration")
    """After a message-log write of less than half of ``event_batch`` rows, the writer waits this long before
    it fetches again, so a low event rate is written in batches, not a COPY per few rows."""
    # --- partner connections and bind failures (docs/operations.md "Binds and connections")
    max_connections: int = _f(10000, min=0, max=1_000_000)
    """Partner connections open at once per listener (and worker); 0 = unlimited.  Restart to change."""
    max_connections_per_address: int = _f(64, min=0, max=1_000_000)
    """The same from one source address (per listener and worker); 0 = unlimited.  Restart to change."""
    bind_fail_delay: float = _f(1.0, min=0, max=60, kind="duration")
    """Every failed bind is answered no sooner than this after it arrived."""
    bind_free_failures: int = _f(3, min=1, max=1000)
    """Failed binds per source address / per system_id before the slow-down starts."""
    bind_lockout_max: float = _f(300.0, min=1, max=86400, kind="duration")
    """Longest lockout of a source address (1 s after the first failure over the free ones, doubling)."""
    bind_slowdown_max: float = _f(5.0, min=1, max=3600, kind="duration")
    """Longest spacing of password checks for one system_id, and longest a bind waits for its turn (never
    more than half of bind_timeout: a longer wait would end in the bind timeout's closed connection)."""
    bind_fail_reset: float = _f(600.0, min=1, max=86400, kind="duration")
    """Quiet time (no failed bind) after which an address's / a system_id's failures are forgotten."""
    bind_hash_threads: int = _f(2, min=1, max=64)
    """scrypt password checks running at once (16 MiB of memory each)."""


@attrs.frozen
class BillingConfig:
    """Credit leases and settlement (docs/operations.md "Plans and billing").  Whether a partner is billed is
    its price plan (set with ``partner change --price-plan``), not a setting here."""

    lease_seconds: float = _f(5.0, min=0.1, max=3600, kind="duration")
    """A lease is this long of the partner's recent rate on the node (at least ten messages)."""
    lease_ttl: float = _f(30.0, min=1, max=3600, kind="duration")
    """A lease not replaced sooner is returned after this long."""
    lapse_grace: float = _f(30.0, min=0, max=3600, kind="duration")
    """After a lease's expiry, how long the books still count all of it (a node that died: its holds
    still on their way to the message log)."""
    receipt_wait: float = _f(72 * 3600.0, min=60, max=30 * 86400, kind="duration")
    """A charge-on-delivery hold with no final receipt after this long is released."""
    outage_allowance: float = _f(60.0, min=0, max=3600, kind="duration")
    """Postgres unreachable: a node keeps holding a partner's credit against its lease on its own word for
    this long, extended once by this long of the partner's rate (0: refuse once the lease is used)."""


@attrs.frozen
class HttpConfig:
    """The HTTP API's listener (docs/operations.md "HTTP API")."""

    host: str = _f("127.0.0.1")
    port: int = _f(0, min=0, max=65535)
    """0 = no HTTP API."""
    tls_cert: Path | None = _f(None, kind="path")
    tls_key: Path | None = _f(None, kind="path")
    rate: float = _f(50.0, min=0.1, max=1_000_000)
    """Requests per second per API key when the key has no rate of its own (burst: one second's worth)."""
    key_cache: float = _f(5.0, min=0, max=300, kind="duration")
    """How long a node trusts what it read of an API key: a revoked key (or a disabled partner) is refused
    within this long on every node."""


@attrs.frozen
class MetricsConfig:
    host: str = _f("127.0.0.1")
    port: int = _f(9464, min=0, max=65535)
    """0 = no metrics endpoint."""


@attrs.frozen
class LoggingConfig:
    level: str = _f("INFO", choices=("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL"))
    format: str = _f("text", choices=("text", "json"))
    file: Path | None = _f(None, kind="path")


@attrs.frozen
class OperatorSeed:
    """An operator inserted at start when absent (later changes are made with the CLI)."""

    name: str = _f()
    host: str = _f()
    port: int = _f(min=1, max=65535)
    system_id: str = _f()
    password: str = _f("")
    system_type: str = _f("")
    tls: bool = _f(False)
    bind_type: str = _f("transceiver", choices=("transceiver", "transmitter", "receiver", "tx_rx"))
    bind_count: int = _f(1, min=1, max=64)
    window: int = _f(10, min=1, max=10000)
    tps: float = _f(100.0, min=0.01)
    data_coding_0: str = _f("gsm7", choices=("gsm7", "latin1", "ascii"))
    segmentation: str = _f("udh8", choices=("udh8", "udh16", "sar", "payload"))
    submit_id_format: str = _f("text", choices=("text", "hex", "dec"))
    receipt_id_format: str = _f("text", choices=("text", "hex", "dec"))
    temporary_statuses: tuple[int, ...] = _f(factory=tuple, kind="status")
    """submit_sm_resp command_statuses this SMSC uses for "try again later" (vendor codes 0x400-0x4FF ...):
    integers or hex strings (``"0x401"``); retried with back-off instead of failing (docs/operations.md)."""
    receipt_parts: str = _f("all", choices=("all", "last"))
    """Which parts of a long message ask this SMSC for a receipt (``last``: one receipt per message)."""
    receipt_request: str = _f("final", choices=("final", "as_partner"))
    """What they ask for: a receipt in every final state, or what the partner asked."""
    tls_ca_file: Path | None = _f(None, kind="path")
    """With ``tls``: CA certificates (PEM) this SMSC's certificate must chain to; unset = the system's."""
    tls_server_name: str = _f("")
    """With ``tls``: the name its certificate must carry (and the SNI); "" = ``host``."""
    receipts_by_text: bool = _f(False)
    """This SMSC sends receipts as plain deliver_sm (esm_class 0, no receipt TLVs): recognise them by
    their text (docs/operations.md)."""
    enabled: bool = _f(True)


@attrs.frozen
class PartnerSeed:
    """A partner inserted at start when absent."""

    system_id: str = _f()
    password: str = _f()
    allowed_ips: tuple[str, ...] = _f(factory=tuple)
    max_binds: int = _f(4, min=1, max=1000)
    throttle_rate: float = _f(100.0, min=0.01)
    throttle_burst: int = _f(100, min=1)
    window: int = _f(10, min=1, max=10000)
    message_id_format: str = _f("hex", choices=("hex", "dec"))
    data_coding_0: str = _f("gsm7", choices=("gsm7", "latin1", "ascii"))
    receipt_date_digits: int = _f(10, choices=(10, 12))
    enabled: bool = _f(True)


@attrs.frozen
class ClusterConfig:
    """Limits shared by every gateway process on the same NATS (docs/operations.md, "Limits across nodes")."""

    limits: bool = _f(True)
    """Partner throttle and max_binds, operator tps and bind_count hold in total over all nodes and
    workers; false: each process applies them on its own (N processes: up to N times as much)."""
    interval: float = _f(1.0, min=0.1, max=60, kind="duration")
    """Heartbeat period: each process sends its demand per partner/operator and recomputes its shares."""
    dead_after: float = _f(3.0, min=0.3, max=600, kind="duration")
    """A process not heard from this long is gone: its shares go to the others."""
    floor: float = _f(0.05, min=0.0, max=0.5)
    """Least fraction of a limit a process holds (so an idle one can start sending at once)."""
    bind_ttl: float = _f(15.0, min=1, max=3600, kind="duration")
    """A process's bind count in the shared ledger lapses this long after its last refresh (a dead
    process's binds are counted no longer)."""


@attrs.frozen
class Config:
    node: NodeConfig = _f(factory=NodeConfig)
    nats: NatsConfig = _f(factory=NatsConfig)
    database: DatabaseConfig = _f(factory=DatabaseConfig)
    listeners: tuple[ListenerConfig, ...] = _f(factory=lambda: (ListenerConfig(),))
    limits: LimitsConfig = _f(factory=LimitsConfig)
    cluster: ClusterConfig = _f(factory=ClusterConfig)
    billing: BillingConfig = _f(factory=BillingConfig)
    http: HttpConfig = _f(factory=HttpConfig)
    metrics: MetricsConfig = _f(factory=MetricsConfig)
    logging: LoggingConfig = _f(factory=LoggingConfig)
    operators: tuple[OperatorSeed, ...] = _f(factory=tuple)
    partners: tuple[PartnerSeed, ...] = _f(factory=tuple)


# --------------------------------------------------------------------------- loading


def load_config(path: str | Path) -> Config:
    """Read and validate a TOML file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(str(p), "", f"cannot read: {e.strerror or e}") from None
    return parse_config(text, source=str(p), base_dir=p.parent)


def parse_config(text: str, *, source: str = "<string>", base_dir: Path | None = None) -> Config:
    """Validate TOML text; ``base_dir`` anchors relative paths (default: the current directory)."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(source, "", f"invalid TOML: {e}") from None
    cfg = _Loader(source, base_dir or Path.cwd()).build(Config, data, "")
    _check_cross_fields(cfg, source)
    return cfg


def cpu_count() -> int:
    """CPUs this process may run on (its affinity mask: cpusets, systemd CPUAffinity=), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int) -> int:
    """``node.workers`` (or ``--workers``) as a count: 0 ("auto") → :func:`cpu_count`."""
    return workers if workers > 0 else cpu_count()


def check_workers(cfg: Config, workers: int, source: str) -> None:
    """What running ``workers`` processes from ``cfg`` needs (a resolved count); ConfigError otherwise.

    Worker k uses node number ``node.number + k`` and metrics port ``metrics.port + k``.
    """
    if workers > MAX_WORKERS:
        raise ConfigError(
            source, "node.workers", f"{workers} workers: at most {MAX_WORKERS} (one node number each)"
        )
    if workers <= 1:
        return
    base = cfg.node.number
    if base >= 0 and base + workers - 1 > 1023:
        raise ConfigError(
            source,
            "node.number",
            f"{base} + {workers} workers - 1 = {base + workers - 1} is above 1023 (worker k uses node number "
            f"node.number + k): set node.number to at most {1024 - workers} or run fewer workers",
        )
    port = cfg.metrics.port
    if port and port + workers - 1 > 65535:
        raise ConfigError(
            source,
            "metrics.port",
            f"{port} + {workers} workers - 1 is above 65535 (worker k serves metrics on metrics.port + k)",
        )


def _check_dsn(dsn: str, source: str) -> None:
    """``database.dsn`` must parse as a libpq connection string or URI (else every start would go on to wait
    for a Postgres it can never reach).  libpq's message may quote the string, so the DSN itself (it may hold
    a password) is cut out of it."""
    if not dsn:
        return
    import psycopg
    from psycopg.conninfo import conninfo_to_dict

    try:
        params = conninfo_to_dict(dsn)
    except psycopg.Error as e:
        problem = " ".join(str(e).replace(dsn, "<dsn>").split())
        raise ConfigError(
            source, "database.dsn", f"not a valid Postgres connection string: {problem}"
        ) from None
    port = str(params.get("port", ""))
    if port and not all(p.strip().isdigit() for p in port.split(",")):
        raise ConfigError(source, "database.dsn", f"port {port!r} is not a number")


def _check_cross_fields(cfg: Config, source: str) -> None:
    _check_dsn(cfg.database.dsn, source)
    if cfg.node.workers > 1:
        check_workers(cfg, cfg.node.workers, source)
    for i, lst in enumerate(cfg.listeners):
        if (lst.tls_cert is None) != (lst.tls_key is None):
            missing = "tls_key" if lst.tls_key is None else "tls_cert"
            raise ConfigError(
                source, f"listeners[{i}].{missing}", "tls_cert and tls_key must be given together"
            )
    if cfg.cluster.dead_after < 2 * cfg.cluster.interval:
        raise ConfigError(
            source,
            "cluster.dead_after",
            f"{cfg.cluster.dead_after:g}s is less than twice cluster.interval ({cfg.cluster.interval:g}s): "
            "a process would be dropped between two of its heartbeats",
        )
    if (cfg.http.tls_cert is None) != (cfg.http.tls_key is None):
        missing = "tls_key" if cfg.http.tls_key is None else "tls_cert"
        raise ConfigError(source, f"http.{missing}", "tls_cert and tls_key must be given together")
    seen: dict[tuple[str, int], int] = {}
    for i, lst in enumerate(cfg.listeners):
        k = (lst.host, lst.port)
        if k in seen:
            raise ConfigError(source, f"listeners[{i}].port", f"same host and port as listeners[{seen[k]}]")
        seen[k] = i
    for section, seeds, keyname in (
        ("operators", cfg.operators, "name"),
        ("partners", cfg.partners, "system_id"),
    ):
        names: dict[str, int] = {}
        for i, seed in enumerate(seeds):
            name = getattr(seed, keyname)
            if name in names:
                raise ConfigError(
                    source, f"{section}[{i}].{keyname}", f"duplicate of {section}[{names[name]}]"
                )
            names[name] = i
    for i, op in enumerate(cfg.operators):
        seen_status: dict[int, int] = {}
        for j, st in enumerate(op.temporary_statuses):
            if st in seen_status:
                raise ConfigError(
                    source,
                    f"operators[{i}].temporary_statuses[{j}]",
                    f"0x{st:X} is listed twice (also temporary_statuses[{seen_status[st]}])",
                )
            seen_status[st] = j
    for i, ps in enumerate(cfg.partners):
        if len(ps.system_id) > 15:
            raise ConfigError(source, f"partners[{i}].system_id", "longer than 15 characters (SMPP limit)")
        if len(ps.password) > 8:
            raise ConfigError(source, f"partners[{i}].password", "longer than 8 characters (SMPP limit)")


_DURATION_RE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)?\s*$")
_DURATION_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, None: 1.0}
_SIZE_RE = re.compile(r"^\s*(\d+)\s*(B|KB|MB|GB|TB|KiB|MiB|GiB|TiB)?\s*$", re.IGNORECASE)
_SIZE_UNITS = {
    "b": 1,
    "kb": 1000,
    "mb": 1000**2,
    "gb": 1000**3,
    "tb": 1000**4,
    "kib": 1024,
    "mib": 1024**2,
    "gib": 1024**3,
    "tib": 1024**4,
    None: 1,
}

_C = TypeVar("_C")


def _type_name(value: Any) -> str:
    return {
        bool: "a boolean",
        int: "an integer",
        float: "a number",
        str: "a string",
        list: "an array",
        dict: "a table",
    }.get(type(value), type(value).__name__)


class _Loader:
    def __init__(self, source: str, base_dir: Path) -> None:
        self.source = source
        self.base_dir = base_dir

    def err(self, key: str, problem: str) -> ConfigError:
        return ConfigError(self.source, key, problem)

    def build(self, cls: type[_C], data: Any, key: str) -> _C:
        if not isinstance(data, Mapping):
            raise self.err(key or "<root>", f"expected a table, got {_type_name(data)}")
        fields = {f.name: f for f in attrs.fields(cls)}  # type: ignore[arg-type]
        hints = typing.get_type_hints(cls)
        kwargs: dict[str, Any] = {}
        for name, value in data.items():
            sub = f"{key}.{name}" if key else name
            if name not in fields:
                close = difflib.get_close_matches(name, list(fields), n=1, cutoff=0.6)
                hint = f" (did you mean '{close[0]}'?)" if close else ""
                raise self.err(sub, f"unknown key{hint}")
            f = fields[name]
            kwargs[name] = self.convert(hints[name], value, sub, f.metadata)
        for name, f in fields.items():
            if name not in kwargs and f.default is attrs.NOTHING:
                sub = f"{key}.{name}" if key else name
                raise self.err(sub, "required key is missing")
        return cls(**kwargs)

    def convert(self, tp: Any, value: Any, key: str, meta: Mapping[str, Any]) -> Any:
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            non_none = [a for a in args if a is not type(None)]
            # TOML has no null; "" for an optional path/string means "not set"
            if value == "" and type(None) in args:
                return None
            return self.convert(non_none[0], value, key, meta)
        if origin is tuple:
            if not isinstance(value, list):
                raise self.err(key, f"expected an array, got {_type_name(value)}")
            return tuple(self.convert(args[0], v, f"{key}[{i}]", meta) for i, v in enumerate(value))
        if attrs.has(tp):
            return self.build(tp, value, key)
        kind = meta.get("kind")
        if kind == "workers":
            if isinstance(value, str) and value.strip().lower() == "auto":
                value = 0
            elif isinstance(value, bool) or not isinstance(value, int):
                raise self.err(key, f'expected an integer or "auto", got {_type_name(value)}')
        if kind == "duration":
            out: Any = self.duration(value, key)
        elif kind == "status":
            out = self.status(value, key)
        elif kind == "size":
            out = self.size(value, key)
        elif tp is bool:
            if not isinstance(value, bool):
                raise self.err(key, f"expected a boolean, got {_type_name(value)}")
            out = value
        elif tp is int:
            if isinstance(value, bool) or not isinstance(value, int):
                raise self.err(key, f"expected an integer, got {_type_name(value)}")
            out = value
        elif tp is float:
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise self.err(key, f"expected a number, got {_type_name(value)}")
            out = float(value)
            if not math.isfinite(out):
                raise self.err(key, "must be a finite number")
        elif tp is str:
            if not isinstance(value, str):
                raise self.err(key, f"expected a string, got {_type_name(value)}")
            out = value
        elif tp is Path:
            if not isinstance(value, str):
                raise self.err(key, f"expected a path string, got {_type_name(value)}")
            p = Path(value).expanduser()
            out = p if p.is_absolute() else self.base_dir / p
        else:  # pragma: no cover - schema error, not a user error
            raise TypeError(f"unsupported config type {tp!r} at {key}")
        if kind == "path" and isinstance(out, str):  # pragma: no cover
            out = Path(out)
        choices = meta.get("choices")
        if choices is not None and out not in choices:
            allowed = ", ".join(repr(c) for c in choices)
            close = difflib.get_close_matches(str(out), [str(c) for c in choices], n=1, cutoff=0.6)
            hint = f" (did you mean {close[0]!r}?)" if close and isinstance(out, str) else ""
            raise self.err(key, f"{out!r} is not one of {allowed}{hint}")
        lo, hi = meta.get("min"), meta.get("max")
        if isinstance(out, int | float) and not isinstance(out, bool):
            if lo is not None and out < lo:
                raise self.err(key, f"{value!r} is out of range (minimum {lo})")
            if hi is not None and out > hi:
                raise self.err(key, f"{value!r} is out of range (maximum {hi})")
        return out

    def duration(self, value: Any, key: str) -> float:
        if isinstance(value, bool):
            raise self.err(key, "expected a duration (seconds or e.g. '30s', '5m'), got a boolean")
        if isinstance(value, int | float):
            return float(value)
        if isinstance(value, str):
            m = _DURATION_RE.match(value)
            if m:
                return float(m.group(1)) * _DURATION_UNITS[m.group(2)]
            raise self.err(
                key, f"{value!r} is not a duration (use seconds or e.g. '500ms', '30s', '5m', '2h', '3d')"
            )
        raise self.err(key, f"expected a duration, got {_type_name(value)}")

    def status(self, value: Any, key: str) -> int:
        from catalyst_smpp.store.records import parse_command_status  # (the store imports this module)

        if isinstance(value, bool) or not isinstance(value, int | str):
            what = 'a command_status (an integer or a hex string such as "0x401")'
            raise self.err(key, f"expected {what}, got {_type_name(value)}")
        try:
            return parse_command_status(value)
        except ValueError as e:
            raise self.err(key, str(e)) from None

    def size(self, value: Any, key: str) -> int:
        if isinstance(value, bool):
            raise self.err(key, "expected a size (bytes or e.g. '512MB'), got a boolean")
        if isinstance(value, int):
            return value
        if isinstance(value, str):
            m = _SIZE_RE.match(value)
            if m:
                unit = m.group(2).lower() if m.group(2) else None
                return int(m.group(1)) * _SIZE_UNITS[unit]
            raise self.err(key, f"{value!r} is not a size (use bytes or e.g. '64KB', '512MB', '1GiB')")
        raise self.err(key, f"expected a size, got {_type_name(value)}")
