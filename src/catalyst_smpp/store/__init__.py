"""Postgres: schema migrations, typed records, repositories, batched message log, change watcher.

psycopg 3 is used synchronously, in worker threads (``Database.run``); see docs/dev/infra-api.md.
"""

from .db import Database, connect_sync
from .migrate import Migration, MigrationError, available_migrations, migrate
from .passwords import VerifiedPasswords, hash_password, needs_rehash, verify_password
from .plan_repo import PlanInUse, PlanRepo
from .records import (
    AuthResult,
    ConfigSnapshot,
    MessageEvent,
    MoRoute,
    Operator,
    Partner,
    Plan,
    PlanRow,
    Route,
    RouteTarget,
    authenticate,
    parse_command_status,
    parse_command_statuses,
)
from .repos import (
    DuplicateRoute,
    LogRow,
    MessageLogRepo,
    MoRouteRepo,
    NotFound,
    OperatorRepo,
    PartnerRepo,
    RouteRepo,
    config_version,
    load_snapshot,
)
from .seed import seed_from_config
from .snapshot_file import SNAPSHOT_FILE, SavedSnapshot, load_snapshot_file, save_snapshot_file
from .watch import CHANNEL, ConfigWatcher, open_config_watcher

__all__ = [
    "CHANNEL",
    "SNAPSHOT_FILE",
    "AuthResult",
    "ConfigSnapshot",
    "ConfigWatcher",
    "Database",
    "DuplicateRoute",
    "LogRow",
    "MessageEvent",
    "MessageLogRepo",
    "Migration",
    "MigrationError",
    "MoRoute",
    "MoRouteRepo",
    "NotFound",
    "Operator",
    "OperatorRepo",
    "Partner",
    "PartnerRepo",
    "Plan",
    "PlanInUse",
    "PlanRepo",
    "PlanRow",
    "Route",
    "RouteRepo",
    "RouteTarget",
    "SavedSnapshot",
    "VerifiedPasswords",
    "authenticate",
    "available_migrations",
    "config_version",
    "connect_sync",
    "hash_password",
    "load_snapshot",
    "load_snapshot_file",
    "migrate",
    "needs_rehash",
    "open_config_watcher",
    "parse_command_status",
    "parse_command_statuses",
    "save_snapshot_file",
    "seed_from_config",
    "verify_password",
]
