"""Insert the operators and partners named in the config file when they are absent.

Existing rows are left alone: after the first start, changes are made with the CLI.
"""

from __future__ import annotations

import logging
from typing import Any

import attrs
import psycopg

from ..config import Config
from .repos import OperatorRepo, PartnerRepo

__all__ = ["seed_from_config"]

log = logging.getLogger(__name__)


def seed_from_config(conn: psycopg.Connection[Any], cfg: Config) -> tuple[list[str], list[str]]:
    """Returns (operators added, partners added).  Run inside a transaction."""
    ops, parts = OperatorRepo(conn), PartnerRepo(conn)
    added_ops: list[str] = []
    added_partners: list[str] = []
    for o in cfg.operators:
        if ops.get(o.name) is None:
            fields = attrs.asdict(o)
            name, host, port, system_id = (fields.pop(k) for k in ("name", "host", "port", "system_id"))
            fields["tls_ca_file"] = str(o.tls_ca_file) if o.tls_ca_file is not None else ""
            ops.add(name, host, port, system_id, **fields)
            added_ops.append(name)
    for p in cfg.partners:
        if parts.get(p.system_id) is None:
            fields = attrs.asdict(p)
            system_id, password = fields.pop("system_id"), fields.pop("password")
            fields["allowed_ips"] = list(fields["allowed_ips"])
            parts.add(system_id, password, **fields)
            added_partners.append(system_id)
    if added_ops or added_partners:
        log.info("seeded from config: operators %s, partners %s", added_ops, added_partners)
    return added_ops, added_partners
