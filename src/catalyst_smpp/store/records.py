"""Typed records read from and written to Postgres (frozen attrs), and small pure helpers on them."""

from __future__ import annotations

import base64
import datetime as dt
import enum
import ipaddress
import re
from collections.abc import Iterable, Sequence

import attrs

from ..billing.money import Money, parse_currency
from .passwords import VerifiedPasswords, verify_password

__all__ = [
    "AuthResult",
    "ConfigSnapshot",
    "MessageEvent",
    "MoRoute",
    "Operator",
    "Partner",
    "Plan",
    "PlanRow",
    "Route",
    "RouteTarget",
    "Webhook",
    "authenticate",
    "parse_command_status",
    "parse_command_statuses",
]

IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network

MESSAGE_ID_FORMATS = ("hex", "dec")
DATA_CODING_0 = ("gsm7", "latin1", "ascii")
RECEIPT_DATE_DIGITS = (10, 12)
BIND_TYPES = ("transceiver", "transmitter", "receiver", "tx_rx")
SEGMENTATION = ("udh8", "udh16", "sar", "payload")
ID_FORMATS = ("text", "hex", "dec")
STRATEGIES = ("failover", "weighted", "least_cost")
PLAN_KINDS = ("price", "cost")
CHARGE_ON = ("submit", "delivery")
RECEIPT_PARTS = ("all", "last")
RECEIPT_REQUESTS = ("final", "as_partner")
WEBHOOK_KINDS = ("dlr", "mo")
_HEX_STATUS = re.compile(r"0[xX][0-9a-fA-F]{1,8}")
MAX_COMMAND_STATUS = 0x7FFFFFFF
"""The largest status ``Operator.temporary_statuses`` takes (the column is a Postgres ``integer[]``)."""
MAX_STATUS_32 = 0xFFFFFFFF
"""The largest status a single-status setting takes (``Partner.insufficient_credit_status``: a bigint column
holds every 32-bit command_status)."""
ESME_RSUBMITFAIL = 0x45


def _networks(value: Sequence[object]) -> tuple[IpNetwork, ...]:
    return tuple(
        v
        if isinstance(v, ipaddress.IPv4Network | ipaddress.IPv6Network)
        else ipaddress.ip_network(str(v), strict=False)
        for v in value
    )


def parse_command_status(value: object, *, maximum: int = MAX_COMMAND_STATUS) -> int:
    """A command_status from an integer (``1025``) or hex text with its ``0x`` (``"0x401"``).

    Text must be hex with the prefix: ``"401"`` would be read as 401 = 0x191 by one person and 0x401 by
    another, so it is refused.  ValueError (with a message fit for the user) for anything else, for 0
    (ESME_ROK) and beyond ``maximum`` (default ``MAX_COMMAND_STATUS``; ``MAX_STATUS_32`` where the column
    holds any 32-bit status).
    """
    if isinstance(value, bool) or not isinstance(value, int | str):
        raise ValueError(f"{value!r} is not a command_status (an integer, or hex such as 0x401)")
    if isinstance(value, str):
        text = value.strip()
        if not _HEX_STATUS.fullmatch(text):
            raise ValueError(f"{value!r} is not a command_status in hex (write it with 0x, such as 0x401)")
        n = int(text, 16)
    else:
        n = value
    if n == 0:
        raise ValueError(f"{value!r} is ESME_ROK, not an error status")
    if not 0 < n <= maximum:
        raise ValueError(f"{value!r} is out of range (0x1 to 0x{maximum:X})")
    return n


def _status_32(value: object) -> int:
    return parse_command_status(value, maximum=MAX_STATUS_32)


def parse_command_statuses(values: object) -> tuple[int, ...]:
    """Several statuses (:func:`parse_command_status` each), sorted, without repeats.  A string is a
    comma-separated list (``"0x401,0x402"``); an empty one gives ``()``."""
    if isinstance(values, str):
        values = [v for v in values.split(",") if v.strip()]
    if not isinstance(values, Iterable):
        raise ValueError(f"{values!r} is not a list of command_statuses")
    return tuple(sorted({parse_command_status(v) for v in values}))


@attrs.frozen
class Partner:
    id: int
    system_id: str
    password_hash: str = attrs.field(repr=False)
    allowed_ips: tuple[IpNetwork, ...] = attrs.field(converter=_networks, default=())
    """Empty: any address."""
    max_binds: int = 4
    throttle_rate: float = 100.0
    throttle_burst: int = 100
    window: int = 10
    message_id_format: str = attrs.field(default="hex", validator=attrs.validators.in_(MESSAGE_ID_FORMATS))
    data_coding_0: str = attrs.field(default="gsm7", validator=attrs.validators.in_(DATA_CODING_0))
    """What data_coding 0 means for this partner's submits."""
    receipt_date_digits: int = attrs.field(default=10, validator=attrs.validators.in_(RECEIPT_DATE_DIGITS))
    """10: YYMMDDhhmm (SMPP 3.4 appendix B), 12: YYMMDDhhmmss in receipt text."""
    price_plan: str | None = None
    """The name of the partner's price plan (migration 0008); None: the partner is not billed."""
    charge_on: str = attrs.field(default="submit", validator=attrs.validators.in_(CHARGE_ON))
    """The charging point: ``submit`` (the operator accepted the message; ``submit_price``) or ``delivery``
    (a DELIVRD receipt; ``delivery_price``)."""
    insufficient_credit_status: int = attrs.field(default=ESME_RSUBMITFAIL, converter=_status_32)
    """The command_status a submit is refused with when its price cannot be held (0x1..0xFFFFFFFF)."""
    margin_guard: bool = False
    """Refuse a message whose cost exceeds its price (same currency only)."""
    enabled: bool = True
    description: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None

    def ip_allowed(self, address: str | ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
        if not self.allowed_ips:
            return True
        ip = ipaddress.ip_address(address) if isinstance(address, str) else address
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
        return any(ip in net for net in self.allowed_ips)

    def check_password(self, password: str) -> bool:
        """Constant-time scrypt check (~20 ms: call from a worker thread)."""
        return verify_password(password, self.password_hash)


class AuthResult(enum.Enum):
    """Why a bind passed or not.  The partner is told ESME_RBINDFAIL for every failure (nothing about which
    system_ids exist or why); the reason is for our log and metrics."""

    OK = "ok"
    UNKNOWN_SYSTEM_ID = "unknown_system_id"
    BAD_PASSWORD = "bad_password"
    DISABLED = "disabled"
    ADDRESS_NOT_ALLOWED = "address_not_allowed"


def authenticate(
    partner: Partner | None, password: str, peer_ip: str | None, verified: VerifiedPasswords | None = None
) -> AuthResult:
    """Check a bind against a partner record (from a snapshot or the repository).  Blocking (scrypt, unless
    ``verified`` remembers this password for this partner's stored hash).

    The source address is checked first, before any hashing: an address outside ``allowed_ips`` costs us
    no scrypt and learns nothing about the password.  An unknown system_id pays the same scrypt as a wrong
    password, so the two cannot be told apart by timing.  ``DISABLED`` comes after the password check for
    the same reason (only someone holding the password learns that the partner is disabled)."""
    if partner is not None and peer_ip is not None and not partner.ip_allowed(peer_ip):
        return AuthResult.ADDRESS_NOT_ALLOWED
    if partner is None:
        # spend the same time as a real check so system_ids cannot be probed by timing
        verify_password(password, _DUMMY_HASH)
        return AuthResult.UNKNOWN_SYSTEM_ID
    if verified is not None:
        ok = verified.verify(password, partner.password_hash)
    else:
        ok = partner.check_password(password)
    if not ok:
        return AuthResult.BAD_PASSWORD
    if not partner.enabled:
        return AuthResult.DISABLED
    return AuthResult.OK


_DUMMY_HASH = (
    "scrypt$16384$8$1$" + base64.b64encode(bytes(16)).decode() + "$" + base64.b64encode(bytes(32)).decode()
)


@attrs.frozen
class Operator:
    id: int
    name: str
    host: str
    port: int
    system_id: str
    password: str = attrs.field(default="", repr=False)
    system_type: str = ""
    tls: bool = False
    bind_type: str = attrs.field(default="transceiver", validator=attrs.validators.in_(BIND_TYPES))
    bind_count: int = 1
    window: int = 10
    tps: float = 100.0
    data_coding_0: str = attrs.field(default="gsm7", validator=attrs.validators.in_(DATA_CODING_0))
    segmentation: str = attrs.field(default="udh8", validator=attrs.validators.in_(SEGMENTATION))
    submit_id_format: str = attrs.field(default="text", validator=attrs.validators.in_(ID_FORMATS))
    """How this operator writes message ids in submit_sm_resp."""
    receipt_id_format: str = attrs.field(default="text", validator=attrs.validators.in_(ID_FORMATS))
    """How it writes them in receipts (receipted_message_id TLV or the id: field of the text).  When a
    receipt's TLV id and text id differ, the gateway tries both, each also under ``submit_id_format``
    (some SMSCs copy the submit_sm_resp id into the TLV): ``gateway.inbound.receipt_keys``."""
    temporary_statuses: tuple[int, ...] = attrs.field(default=(), converter=parse_command_statuses)
    """command_statuses this SMSC answers submit_sm with for "try again later" besides the standard
    ESME_RTHROTTLED / ESME_RMSGQFUL / ESME_RX_T_APPN (typically vendor codes 0x400-0x4FF): the message is
    retried with a growing delay, no failover, no failure receipt (migration 0004).  Sorted, no repeats."""
    receipt_parts: str = attrs.field(default="all", validator=attrs.validators.in_(RECEIPT_PARTS))
    """Which parts of a message the gateway split ask this SMSC for a receipt: ``all``, or only the ``last``
    (one receipt per message instead of one per part; failures of the other parts are not seen).  The
    partner gets one receipt per message either way (migration 0006, docs/operations.md)."""
    receipt_request: str = attrs.field(default="final", validator=attrs.validators.in_(RECEIPT_REQUESTS))
    """What those parts ask for: ``final`` = a receipt in every final state whatever the partner asked (the
    message log learns every final state), ``as_partner`` = the partner's own registered_delivery (none,
    failures only, every final state)."""
    tls_ca_file: str = ""
    """With ``tls``: PEM file of the CA certificates this SMSC's certificate must chain to, on every
    gateway node ("" = the system's trusted CAs)."""
    tls_server_name: str = ""
    """With ``tls``: the name the SMSC's certificate must carry, also sent as SNI ("" = ``host``)."""
    receipts_by_text: bool = False
    """This SMSC sends receipts without the receipt bit in esm_class and without receipt TLVs: a deliver_sm
    whose text reads as a receipt is taken for one, not for an MO (migration 0005).  Off by default."""
    cost_plan: str | None = None
    """The name of the operator's cost plan (what it charges us; migration 0008), for least-cost routing
    and the margin guard; None: its cost is unknown."""
    enabled: bool = True
    description: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@attrs.frozen
class RouteTarget:
    operator: str
    position: int = 0
    weight: int = 1


@attrs.frozen
class Route:
    id: int
    partner: str | None
    """system_id, or None for any partner."""
    dest_prefix: str = ""
    source_prefix: str | None = None
    source_regex: str | None = None
    priority: int = 0
    strategy: str = attrs.field(default="failover", validator=attrs.validators.in_(STRATEGIES))
    enabled: bool = True
    description: str = ""
    targets: tuple[RouteTarget, ...] = ()
    """Operators in order (position); weights matter for strategy 'weighted'; for 'least_cost' the order
    breaks ties between equal costs."""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@attrs.frozen
class MoRoute:
    """Where a mobile-originated message goes: destination prefix (and source prefix) → a partner.

    Longest ``dest_prefix`` wins, then the higher ``priority``; ``source_prefix`` "" matches any source.
    """

    id: int
    dest_prefix: str
    partner: str
    """The partner's system_id."""
    source_prefix: str = ""
    priority: int = 0
    enabled: bool = True
    description: str = ""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@attrs.frozen
class MessageEvent:
    """One row of the message log; (message_id, event) is unique, so replays are harmless."""

    message_id: str
    event: str
    event_at: dt.datetime
    partner: str = ""
    operator: str = ""
    source_addr: str = ""
    dest_addr: str = ""
    parts: int = 1
    status: int | None = None
    final_state: str | None = None
    error: str | None = None
    operator_message_id: str | None = None
    node: str = ""
    display_id: str | None = None
    """The id the partner was given when it is not ``message_id`` (submit_multi: the ``accepted`` row of every
    destination, the first one's too, and the other rows of the destinations after the first; migration
    0003)."""
    # The CDR columns of a billed message (None for a partner that is not billed; docs/dev/billing.md).
    # Amounts in micro-units (exact integers; the ``cdrs`` view shows them as decimals).
    price: int | None = None
    """What the partner pays for all parts, in ``currency``."""
    currency: str | None = None
    cost: int | None = None
    """What the operator charges us for all parts, in ``cost_currency`` (None when its plan has no row)."""
    cost_currency: str | None = None
    lease_id: int | None = None
    """The credit lease the price was held against."""
    charge_state: str | None = None
    """What this row does to the hold: ``held``, ``captured`` or ``released`` (the event writer turns it
    into the message's credit entries)."""


@attrs.frozen
class PlanRow:
    """One row of a plan: per-part prices for destinations starting with ``prefix`` from ``effective_from``
    (inclusive) until ``effective_until`` (exclusive; None: open).  Prices are in the plan's currency."""

    prefix: str
    country: str
    network: str
    """``DEFAULT`` for a country's default row (its prefix is the country code), else a network name or ""."""
    mcc_mnc: str | None
    submit_price: Money
    """Per part when the charging point is the operator's acceptance (and always for costs)."""
    delivery_price: Money | None
    """Per part when the charging point is a DELIVRD receipt; None: ``submit_price``."""
    effective_from: dt.datetime
    effective_until: dt.datetime | None = None


@attrs.frozen
class Plan:
    """A price plan (what partners pay) or a cost plan (what operators charge us), in one currency."""

    id: int
    name: str
    kind: str = attrs.field(validator=attrs.validators.in_(PLAN_KINDS))
    currency: str = attrs.field(converter=parse_currency)
    description: str = ""
    rows: tuple[PlanRow, ...] = ()
    """In a snapshot: the rows in effect at load time or later; from the repository: as asked."""
    created_at: dt.datetime | None = None
    updated_at: dt.datetime | None = None


@attrs.frozen
class Webhook:
    """Where a partner's receipts (``kind`` "dlr") or MO messages ("mo") are POSTed (migration 0014; the
    delivery: catalyst_smpp.http.webhooks).  ``secret`` signs each request (HMAC-SHA256)."""

    partner: str
    """The partner's system_id."""
    kind: str = attrs.field(validator=attrs.validators.in_(WEBHOOK_KINDS))
    url: str
    secret: str = attrs.field(repr=False)
    enabled: bool = True
    batch_size: int = 100
    """Most items in one request."""
    created_at: dt.datetime | None = None


@attrs.frozen
class ConfigSnapshot:
    """Everything a gateway node routes with, read in one transaction, tagged with the change counter."""

    version: int
    partners: tuple[Partner, ...]
    operators: tuple[Operator, ...]
    routes: tuple[Route, ...]
    mo_routes: tuple[MoRoute, ...] = ()
    """MO routes (migration 0002), ordered by longest dest_prefix, then priority."""
    plans: tuple[Plan, ...] = ()
    """Price and cost plans (migration 0008) with their rows in effect at load time or later."""
    webhooks: tuple[Webhook, ...] = ()
    """Partners' webhooks (migration 0014), enabled or not."""
