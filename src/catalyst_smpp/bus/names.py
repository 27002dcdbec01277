"""Stream, subject, consumer and KV names.

Partner system_ids and operator names become subject tokens and durable names.
Characters outside ``[A-Za-z0-9_-]`` are escaped as ``=XX`` (hex of each UTF-8
byte), so any name maps to a valid, unique token: ``acme.sms`` → ``acme=2Esms``.
"""

from __future__ import annotations

import enum
import re

import attrs

__all__ = ["Kind", "Names", "token"]

_SAFE = re.compile(r"^[A-Za-z0-9_-]+$")
_NS = re.compile(r"^[A-Za-z0-9_-]*$")


def token(name: str) -> str:
    """Escape a name into a NATS subject token / durable name / KV key part."""
    if not name:
        raise ValueError("empty name")
    if _SAFE.match(name):
        return name
    out = []
    for ch in name:
        if ch.isascii() and (ch.isalnum() or ch in "_-"):
            out.append(ch)
        else:
            out.extend(f"={b:02X}" for b in ch.encode("utf-8"))
    return "".join(out)


class Kind(enum.Enum):
    MT = "MT"
    """Messages to operators: subject MT.<operator>."""
    DLR = "DLR"
    """Receipts to partners: subject DLR.<partner>."""
    MO = "MO"
    """Mobile-originated messages to partners: subject MO.<partner>."""
    EVENTS = "EVENTS"
    """Final states and other events for accounting: subject EVENTS.<type>."""


@attrs.frozen
class Names:
    """All names derived from an optional namespace (several gateways on one NATS account)."""

    namespace: str = ""

    def __attrs_post_init__(self) -> None:
        if not _NS.match(self.namespace):
            raise ValueError(f"namespace must match [A-Za-z0-9_-]*, got {self.namespace!r}")

    def stream(self, kind: Kind) -> str:
        return f"{self.namespace}_{kind.value}" if self.namespace else kind.value

    def _prefix(self, kind: Kind) -> str:
        return f"{self.namespace}.{kind.value}" if self.namespace else kind.value

    def subject(self, kind: Kind, name: str) -> str:
        """``MT.<operator>``, ``DLR.<partner>``, ``MO.<partner>``, ``EVENTS.<type>`` (names escaped)."""
        return f"{self._prefix(kind)}.{token(name)}"

    def wildcard(self, kind: Kind) -> str:
        return f"{self._prefix(kind)}.*"

    def durable(self, kind: Kind, name: str | None) -> str:
        """Durable consumer name shared by all nodes: ``MT_<operator>``, ``DLR_<partner>``, ``EVENTS_all``."""
        return f"{kind.value}_{token(name) if name else 'all'}"

    def beacon(self, topic: str) -> str:
        """Core NATS subject of a beacon topic (no stream listens there): ``BEACON.<topic>``."""
        return f"{self.namespace}.BEACON.{token(topic)}" if self.namespace else f"BEACON.{token(topic)}"

    def bucket(self, bucket: str) -> str:
        return f"{self.namespace}_{bucket}" if self.namespace else bucket
