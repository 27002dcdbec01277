"""The link to an operator's SMSC: its :class:`~catalyst_smpp.client.SmppClient`, kept bound per the settings.

Bind type (``tx_rx`` = one TX and one RX session per ``bind_count``), window, TPS, TLS (certificate checked
against ``tls_ca_file`` or the system's CAs, for ``tls_server_name`` or the host), system_type and credentials
come from the operator's record; a change of any of them (:func:`client_key`) reconnects.  A disabled operator
has no client; an unusable ``tls_ca_file`` is logged and tried again every ``_CA_FILE_RETRY`` seconds (and
at once when the setting changes).
"""

from __future__ import annotations

import logging
import ssl
from collections.abc import Callable
from typing import Any

import trio

from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.store import Operator
from catalyst_smpp.transport import Handler

__all__ = ["OperatorLink", "client_key", "tls_context"]

# the connector's logger: these lines are the connector's (operators grep their logs by it)
log = logging.getLogger("catalyst_smpp.gateway.connector")

_CA_FILE_RETRY = 30.0
"""Seconds between attempts to read an operator's unusable ``tls_ca_file`` (it may be put in place later)."""
_BINDS = {
    "transceiver": (BindType.TRANSCEIVER,),
    "transmitter": (BindType.TRANSMITTER,),
    "receiver": (BindType.RECEIVER,),
    "tx_rx": (BindType.TRANSMITTER, BindType.RECEIVER),
}


def tls_context(operator: Operator) -> ssl.SSLContext:
    """The TLS client context of an operator link: certificates checked (chain and name) against the
    operator's ``tls_ca_file`` (PEM, read now), or the system's trusted CAs when it is empty.  OSError
    (ssl.SSLError) when the file is missing or holds no usable certificate."""
    return ssl.create_default_context(cafile=operator.tls_ca_file or None)


def client_key(op: Operator) -> tuple[Any, ...]:
    """The settings the binds depend on: a change of any of them means reconnecting."""
    return (
        op.host,
        op.port,
        op.tls,
        op.tls_ca_file,
        op.tls_server_name,
        op.system_id,
        op.password,
        op.system_type,
        op.bind_type,
        op.bind_count,
        op.window,
        op.tps,
        op.enabled,
    )


class OperatorLink:
    """The operator's client, reconnected when its settings change; see the module notes."""

    def __init__(
        self,
        operator: Callable[[], Operator],
        handler: Handler,
        *,
        response_timeout: float,
        client_options: dict[str, Any],
        ssl_context: ssl.SSLContext | None,
    ) -> None:
        self.operator = operator
        self.handler = handler
        self.response_timeout = response_timeout
        self.client_options = client_options
        self.ssl_context = ssl_context
        self.client: SmppClient | None = None
        self._reconnect = trio.Event()
        #: this process's fraction of the operator's tps (gateway/limits.py); changed without rebinding
        self.tps_share = 1.0
        self._asked_before = 0  # TPS tokens asked by the clients before the current one

    @property
    def tx_bound(self) -> int:
        c = self.client
        if c is None:
            return 0
        return sum(1 for s in c.sessions() if s.can_submit and s.is_bound and not s.is_closed)

    @property
    def binds(self) -> int:
        """Open binds to the operator (any bind type)."""
        c = self.client
        if c is None:
            return 0
        return sum(1 for s in c.sessions() if s.is_bound and not s.is_closed)

    def reconnect(self) -> None:
        self._reconnect.set()

    def tps_asked(self) -> int:
        """Submits that asked for a TPS token over every client of this link: its demand."""
        c = self.client
        return self._asked_before + (c.tokens_asked if c is not None else 0)

    def set_tps_share(self, share: float) -> None:
        """Run at ``tps * share`` from now on (the current client too, without rebinding)."""
        self.tps_share = share
        c = self.client
        if c is not None:
            c.set_tps(self.operator().tps * share)

    def client_config(self, op: Operator) -> ClientConfig:
        ctx = None
        if op.tls:
            ctx = self.ssl_context if self.ssl_context is not None else tls_context(op)
        opts: dict[str, Any] = {"throttle_retries": 2, "throttle_delay": 0.05}
        opts.update(self.client_options)
        return ClientConfig(
            host=op.host,
            port=op.port,
            system_id=op.system_id,
            password=op.password,
            system_type=op.system_type,
            binds=_BINDS[op.bind_type] * op.bind_count,
            ssl_context=ctx,
            server_hostname=(op.tls_server_name or op.host) if op.tls else None,
            session=SessionConfig(
                window_size=op.window,
                response_timeout=self.response_timeout,
                enquire_link_interval=30.0,
                bind_timeout=None,
            ),
            tps=op.tps * self.tps_share,
            **opts,
        )

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        started = False
        while True:
            op = self.operator()
            self._reconnect = trio.Event()
            if not op.enabled:
                self.client = None
                if not started:
                    started = True
                    task_status.started()
                await self._reconnect.wait()
                continue
            try:
                config = self.client_config(op)
            except OSError as exc:  # ssl.SSLError too: tls_ca_file missing, unreadable, not PEM certificates
                log.error(
                    "operator %s: tls_ca_file %r cannot be used (%s); not connecting (tried again every "
                    "%.0fs, and at once when the setting changes)",
                    op.name,
                    op.tls_ca_file,
                    exc,
                    _CA_FILE_RETRY,
                )
                self.client = None
                if not started:
                    started = True
                    task_status.started()
                with trio.move_on_after(_CA_FILE_RETRY):
                    await self._reconnect.wait()
                continue
            if self.client is not None:
                self._asked_before += self.client.tokens_asked
            client = SmppClient(config, handler=self.handler)
            self.client = client
            async with trio.open_nursery() as n:
                await n.start(client.run)
                if not started:
                    started = True
                    task_status.started()
                await self._reconnect.wait()
                await client.aclose(timeout=2.0)
                n.cancel_scope.cancel()
