"""The Gateway: partners in (listeners, auth, accept), operators out (connectors), receipts/MO back.

Built from a :class:`Config` and open infrastructure (bus, database, watcher); see docs/dev/gateway.md::

    gw = Gateway(cfg, infra, node_id="gw-1")
    async with trio.open_nursery() as n:
        await n.start(gw.run)      # listeners up, connectors started
        gw.ports                   # actual listener ports
        await gw.reload()          # also done automatically on watcher changes
        await gw.drain(grace)      # stop binds, flush accepts, unbind partners, stop connectors

The HTTP API (``[http] port``; catalyst_smpp.http) runs in the same nursery on the same accept handler; on
drain it stops after accept has drained.

Partner delivery runs per partner while it has a receiver/transceiver bind on this node: started from the
server's ``on_bound`` hook, stopped from ``on_closed`` when the last one goes.  Webhook deliveries
(catalyst_smpp.http.webhooks) run on every node for each enabled webhook, following the snapshot.

One module (about 750 lines): it is the node's assembly -- what starts, in which order, and what each
part is given -- and splitting the wiring would scatter that order over several files.
"""

from __future__ import annotations

import logging
import socket
import ssl
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
import trio

from catalyst_smpp.billing.books import AccountState
from catalyst_smpp.billing.charging import Charger
from catalyst_smpp.billing.credit import CreditLeases
from catalyst_smpp.billing.node import PgLeaseStore, StaleHolds
from catalyst_smpp.bus import BusError, MessageBus
from catalyst_smpp.config import Config, ListenerConfig
from catalyst_smpp.gateway.accept import AcceptHandler
from catalyst_smpp.gateway.auth import PostgresAuthenticator, account_for
from catalyst_smpp.gateway.bindledger import BindLedger
from catalyst_smpp.gateway.connector import OperatorConnector
from catalyst_smpp.gateway.delivery import PartnerDelivery
from catalyst_smpp.gateway.events import EventPublisher, EventWriter
from catalyst_smpp.gateway.ids import IdGenerator, node_number
from catalyst_smpp.gateway.limits import OPERATOR, OPERATOR_BINDS, OperatorLimits, PartnerLimits
from catalyst_smpp.gateway.order import ReceiptOrder
from catalyst_smpp.gateway.routing import Router
from catalyst_smpp.gateway.schedule import Scheduler
from catalyst_smpp.gateway.shares import ClusterShares, LocalShares, Shares
from catalyst_smpp.http.webhooks import WebhookTasks
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.server import ServerConfig, ServerSession, SmppServer
from catalyst_smpp.store import Database
from catalyst_smpp.store.records import ConfigSnapshot, Operator, Partner
from catalyst_smpp.store.snapshot_file import load_snapshot_file, save_snapshot_file
from catalyst_smpp.util.ratelimit import TokenBucket

__all__ = ["Gateway"]

log = logging.getLogger(__name__)


class _Receivers:
    """The bound receivers of a partner over every listener's server (what PartnerDelivery needs)."""

    def __init__(self, servers: list[SmppServer]) -> None:
        self.servers = servers

    def receivers(self, system_id: str) -> list[ServerSession]:
        out: list[ServerSession] = []
        for s in self.servers:
            out.extend(s.receivers(system_id))
        return out

    def bound_sessions(self, system_id: str) -> list[ServerSession]:
        out: list[ServerSession] = []
        for s in self.servers:
            out.extend(s.bound_sessions(system_id))
        return out


def _ssl_context(listener: ListenerConfig) -> ssl.SSLContext | None:
    if listener.tls_cert is None:
        return None
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(str(listener.tls_cert), str(listener.tls_key) if listener.tls_key else None)
    return ctx


class Gateway:
    def __init__(
        self,
        cfg: Config,
        infra: Any,
        *,
        node_id: str,
        metrics: Metrics | None = None,
        node_num: int | None = None,
        connectors: bool = True,
        connector_options: dict[str, Any] | None = None,
        worker: tuple[int, int] = (0, 1),
        snapshot_file: Path | None = None,
        listen_sockets: Sequence[Sequence[socket.socket]] | None = None,
        webhook_options: dict[str, Any] | None = None,
    ) -> None:
        self.cfg = cfg
        # bound sockets per cfg.listeners entry (catalyst_smpp.listen: the daemon or the supervising parent
        # binds them); None = each server binds its host:port itself (tests, embedding)
        self.listen_sockets = listen_sockets
        # the last good config snapshot on disk (the daemon: <state_dir>/config-snapshot.json): written after
        # every load from Postgres, read when the node starts while Postgres is down (infra.db_ready False)
        self.snapshot_file = snapshot_file
        self.db_pending = False
        """True while running on the saved snapshot, until Postgres is back (migrated, snapshot reloaded)."""
        self.worker = worker  # (index, count) of this process among the host's workers (run --workers N)
        # extra OperatorConnector keywords (down_after, retry_delays, client_options, ...): tests, tuning
        self.connector_options = dict(connector_options or {})
        self.infra = infra
        self.bus: MessageBus = infra.bus
        self.db: Database = infra.db
        self.node_id = node_id
        self.metrics = metrics
        # False (argument or [node] connectors = false): partner side only (tests, split deployments)
        self.start_connectors = connectors and getattr(cfg.node, "connectors", True)
        self.ids = IdGenerator(node_num if node_num is not None else node_number(node_id))
        self.snapshot: ConfigSnapshot | None = None
        self.router: Router | None = None
        self._partners: dict[str, Partner] = {}
        self.servers: list[SmppServer] = []
        self.receivers = _Receivers(self.servers)
        self.accept: AcceptHandler | None = None
        self.scheduler: Scheduler | None = None
        #: receipts wait for their submit responses (gateway/order.py); made with the AcceptHandler
        self.receipt_order: ReceiptOrder | None = None
        self.events: EventPublisher | None = None
        self.writer: EventWriter | None = None
        self.credit: CreditLeases | None = None
        self._credit_low: dict[str, bool] = {}
        self.deliveries: dict[str, PartnerDelivery] = {}
        #: receipts / MO to partners' webhooks (extra WebhookDelivery keywords: tests, tuning)
        self.webhooks = WebhookTasks(self.bus, metrics=metrics, options=webhook_options)
        self.connectors: dict[str, tuple[Any, trio.CancelScope]] = {}
        # cluster-wide limits ([cluster] limits; gateway/limits.py): shares of rates, binds in the ledger
        self.shares: Shares = LocalShares(node_id)
        self.ledger: BindLedger | None = None
        self.partner_limits = PartnerLimits(self.shares)
        self.operator_limits: OperatorLimits | None = None
        self._closing: dict[str, set[Any]] = {}  # operator -> its connectors being stopped
        self._nursery: trio.Nursery | None = None
        self._delivery_nursery: trio.Nursery | None = None
        self._reload_lock = trio.Lock()
        self._draining = False
        self._done = trio.Event()
        self._http_stop = trio.Event()
        self._http_done: trio.Event | None = None
        self.http_addresses: list[str] = []
        """Where the HTTP API listens (empty: ``[http] port`` 0)."""

    # ------------------------------------------------------------------ lookups

    @property
    def ports(self) -> list[int]:
        return [p for s in self.servers for p in s.ports]

    def partner(self, system_id: str) -> Partner | None:
        return self._partners.get(system_id)

    def _account_state(self, partner: str, state: AccountState) -> None:
        """A billed partner's account as a credit lease found it (in a worker thread: the metrics are
        thread-safe); a balance below the threshold is logged once per crossing."""
        low = state.low_balance is not None and state.balance < state.low_balance
        was = self._credit_low.get(partner, False)
        self._credit_low[partner] = low
        if low and not was:
            log.warning(
                "[%s] balance %s below its low-balance threshold %s",
                partner,
                state.balance,
                state.low_balance,
            )
        if self.metrics is not None:
            self.metrics.credit_available.labels(partner, state.currency).set(float(state.available.amount))
            self.metrics.credit_low.labels(partner).set(1 if low else 0)

    def _partner_id(self, system_id: str) -> int | None:
        p = self._partners.get(system_id)
        return p.id if p is not None else None

    def _router(self) -> Router:
        assert self.router is not None
        return self.router

    def _apply_snapshot(self, snap: ConfigSnapshot) -> None:
        self.snapshot = snap
        self.router = Router(snap)
        self._partners = {p.system_id: p for p in snap.partners}

    # ------------------------------------------------------------------ running

    async def run(self, *, task_status: trio.TaskStatus[Gateway] = trio.TASK_STATUS_IGNORED) -> None:
        cfg = self.cfg
        snapshot = await self._initial_snapshot()
        self._apply_snapshot(snapshot)
        async with trio.open_nursery() as n:
            self._nursery = n
            await self._start_limits(n)
            # no task: accept, connectors and inbound store their rows themselves, before answering
            self.events = EventPublisher(self.bus, node=self.node_id)
            self.writer = EventWriter(
                self.bus,
                self.db,
                batch=cfg.limits.event_batch,
                linger=cfg.limits.event_linger,
                metrics=self.metrics,
            )
            n.start_soon(self.writer.run)
            # billing: credit leases held by this node; stale charge-on-delivery holds released (any node)
            bc = cfg.billing
            self.credit = CreditLeases(
                PgLeaseStore(
                    self.db,
                    self._partner_id,
                    ttl=bc.lease_ttl,
                    lapse_grace=bc.lapse_grace,
                    on_state=self._account_state,
                ),
                self.node_id,
                lease_seconds=bc.lease_seconds,
                lease_ttl=bc.lease_ttl,
                outage_allowance=bc.outage_allowance,
            )
            await n.start(self.credit.run)
            await n.start(StaleHolds(self.db, lambda: self.snapshot, bc.receipt_wait).run)
            # scheduled sends (every node releases what is due; cancel_sm/replace_sm of waiting ones)
            self.scheduler = Scheduler(
                self.db, self.bus, events=self.events, partners=self.partner, node=self.node_id
            )
            n.start_soon(self.scheduler.run)
            self.accept = AcceptHandler(
                self.bus,
                self._router,
                self.partner,
                self.ids,
                events=self.events,
                node=self.node_id,
                metrics=self.metrics,
                db=self.db,
                charger=Charger(lambda: self._router().pricing, self.credit),
                scheduler=self.scheduler,
            )
            self.receipt_order = ReceiptOrder(self.accept.unanswered, self.ids.node)
            await n.start(self.accept.run)
            self._delivery_nursery = await n.start(_nursery_holder)
            self.webhooks.order = self.receipt_order
            await n.start(self.webhooks.run)
            self.webhooks.sync(snapshot)
            auth = PostgresAuthenticator(self.partner, limits=lambda: self.cfg.limits, metrics=self.metrics)
            lim = cfg.limits
            session = SessionConfig(
                # until bound: at bind a session takes its partner's `window` as its deliver_sm window,
                # wider or narrower than this (server.ServerSession, Account.deliver_window)
                window_size=lim.default_window,
                response_timeout=lim.response_timeout,
                enquire_link_interval=lim.enquire_link_interval,
                inactivity_timeout=lim.inactivity_timeout,
                bind_timeout=lim.bind_timeout,
            )
            for i, listener in enumerate(cfg.listeners):
                server = SmppServer(
                    ServerConfig(
                        host=listener.host,
                        port=listener.port,
                        ssl_context=_ssl_context(listener),
                        session=session,
                        # never SO_REUSEPORT: another gateway could then join the port (catalyst_smpp.listen)
                        sockets=tuple(self.listen_sockets[i]) if self.listen_sockets is not None else (),
                        shutdown_timeout=lim.shutdown_grace,
                        max_connections=lim.max_connections or None,
                        max_connections_per_address=lim.max_connections_per_address or None,
                    ),
                    auth,
                    self.accept.handle,
                    on_bound=self._on_bound,
                    on_closed=self._on_closed,
                    on_refused=self._on_refused,
                    on_submit_refused=self._on_submit_refused,
                    bucket_for=self.partner_limits.bucket_for,
                    bind_claims=self.partner_limits,
                )
                await n.start(server.serve)
                self.servers.append(server)
            if cfg.http.port:
                await self._start_http(n)
            if self.operator_limits is not None:
                await self.operator_limits.deal(self._serving())
                n.start_soon(self._operator_binds_loop)
            self._sync_connectors()
            if getattr(self.infra, "watcher", None) is not None:
                n.start_soon(self._watch)
            if self.db_pending:
                n.start_soon(self._recover_db)
            log.info(
                "gateway %s up: ports %s, %d partner(s), %d operator(s), %d route(s)",
                self.node_id,
                self.ports,
                len(self.snapshot.partners) if self.snapshot else 0,
                len(self.connectors),
                len(self.snapshot.routes) if self.snapshot else 0,
            )
            task_status.started(self)
            await self._done.wait()
            n.cancel_scope.cancel()

    # ------------------------------------------------------------------ snapshot on disk; Postgres down

    async def _start_http(self, n: trio.Nursery) -> None:
        """The HTTP API (``[http]``) in the gateway's nursery (catalyst_smpp.http.server.start_api), and the
        purge of its expired Idempotency-Key rows."""
        from catalyst_smpp.http.idempotency import purge_loop
        from catalyst_smpp.http.server import start_api

        self._http_done = trio.Event()
        self.http_addresses = await n.start(start_api, self, self._http_stop, self._http_done)
        n.start_soon(purge_loop, self.db)  # Idempotency-Key rows older than their 24 h

    def _partner_bucket(self, partner: Partner) -> TokenBucket | None:
        """The partner's submit token bucket on this process, shared with its SMPP binds on every listener
        (at this process's share of its throttle_rate)."""
        return self.partner_limits.bucket_for(account_for(partner))

    # ------------------------------------------------------------------ limits across nodes

    @property
    def cluster_limits(self) -> bool:
        cluster = getattr(self.cfg, "cluster", None)
        return bool(cluster is not None and cluster.limits)

    async def _start_limits(self, n: trio.Nursery) -> None:
        """With ``[cluster] limits``: the shares' heartbeat and the bind ledger (gateway/limits.py)."""
        if not self.cluster_limits:
            return
        cc = self.cfg.cluster
        shares = ClusterShares(
            self.bus,
            self.node_id,
            interval=cc.interval,
            dead_after=cc.dead_after,
            floor=cc.floor,
            metrics=self.metrics,
            unexported=frozenset({OPERATOR_BINDS}),
        )
        self.shares = shares
        self.ledger = BindLedger(self.bus.kv, self.node_id, ttl=cc.bind_ttl)
        self.partner_limits = PartnerLimits(shares, self.ledger)
        self.operator_limits = OperatorLimits(
            shares, self.ledger, running=self._running, stopping=lambda name: self._closing.get(name, ())
        )
        await n.start(shares.run)
        await n.start(self.ledger.run)

    def _serving(self) -> dict[str, Operator]:
        """The operators this process may run connectors for."""
        assert self.snapshot is not None
        return {op.name: op for op in self.snapshot.operators if op.enabled and self.start_connectors}

    def _running(self, name: str) -> Any:
        have = self.connectors.get(name)
        return have[0] if have is not None else None

    async def _operator_binds_loop(self) -> None:
        """Every heartbeat interval: idle partner buckets dropped, operator binds dealt out again."""
        assert self.operator_limits is not None
        interval = self.cfg.cluster.interval
        while not self._draining:
            await trio.sleep(interval)
            self.partner_limits.sweep()
            try:
                changed = await self.operator_limits.deal(self._serving())
            except Exception:
                log.exception("dealing out operator binds failed; trying again")
                continue
            if changed and not self._draining:
                self._sync_connectors()

    async def _save_snapshot(self, snap: ConfigSnapshot) -> None:
        if self.snapshot_file is None:
            return
        try:
            await trio.to_thread.run_sync(save_snapshot_file, self.snapshot_file, snap)
        except OSError as e:
            log.warning("could not save the configuration snapshot to %s: %s", self.snapshot_file, e)

    async def _initial_snapshot(self) -> ConfigSnapshot:
        if getattr(self.infra, "db_ready", True):  # Postgres up: as always
            snap: ConfigSnapshot = await self.db.snapshot()
            await self._save_snapshot(snap)
            return snap
        saved = None
        if self.snapshot_file is not None:
            try:
                saved = await trio.to_thread.run_sync(load_snapshot_file, self.snapshot_file)
            except FileNotFoundError:
                pass
            except (OSError, ValueError) as e:
                log.error("cannot use the saved configuration snapshot %s: %s", self.snapshot_file, e)
        if saved is not None:
            snap = saved.snapshot
            age = saved.age()
            log.warning(
                "Postgres is DOWN at start: serving from the configuration snapshot saved %s ago (%s, "
                "version %d: %d partner(s), %d operator(s), %d route(s)) in %s; config changes and message "
                "log writes wait until Postgres is back (retrying in the background)",
                _duration(age),
                saved.saved_at.isoformat(timespec="seconds"),
                snap.version,
                len(snap.partners),
                len(snap.operators),
                len(snap.routes),
                self.snapshot_file,
            )
            self.db_pending = True
            if self.metrics is not None:
                self.metrics.config_from_snapshot.set(1)
            return snap
        # nothing saved: nothing to serve with; wait for Postgres
        log.warning(
            "Postgres is DOWN at start and there is no usable saved configuration snapshot (%s): partners "
            "cannot be served until Postgres is reachable; retrying",
            self.snapshot_file or "none configured",
        )
        delay, waited, reminded = 1.0, 0.0, 0.0
        while True:
            try:
                await self._db_setup()
                snap = await self.db.snapshot()
            except (psycopg.Error, OSError) as e:
                if waited - reminded >= 30.0:
                    reminded = waited
                    log.warning("Postgres still not reachable after %.0fs (%s)", waited, _one_line(e))
                await trio.sleep(delay)
                waited += delay
                delay = min(delay * 2, 10.0)
                continue
            log.warning(
                "Postgres reachable after %.0fs: configuration version %d loaded", waited, snap.version
            )
            await self._save_snapshot(snap)
            return snap

    async def _db_setup(self) -> None:
        setup = getattr(self.infra, "db_setup", None)
        if setup is not None:
            await setup()  # migrations and seeds skipped at start; idempotent
            self.infra.db_setup = None

    async def _recover_db(self) -> None:
        """Running on the saved snapshot: once Postgres answers, migrate and reload the real snapshot."""
        delay, waited, reminded = 1.0, 0.0, 0.0
        while True:
            await trio.sleep(delay)
            waited += delay
            try:
                await self._db_setup()
                await self.reload()
            except (psycopg.Error, OSError) as e:
                if waited - reminded >= 60.0:
                    reminded = waited
                    log.warning(
                        "Postgres still down after %.0fs; still serving from the saved configuration "
                        "snapshot (%s)", waited, _one_line(e)
                    )  # fmt: skip
                delay = min(delay * 2, 10.0)
                continue
            self.db_pending = False
            if self.metrics is not None:
                self.metrics.config_from_snapshot.set(0)
            assert self.snapshot is not None
            log.warning(
                "Postgres is back after %.0fs: configuration version %d loaded from the database "
                "(no longer running on the saved snapshot)",
                waited,
                self.snapshot.version,
            )
            return

    async def _watch(self) -> None:
        watcher = self.infra.watcher
        seen = watcher.version
        while True:
            seen = await watcher.wait_for_change(seen)
            while self.db_pending:  # _recover_db migrates first, then reloads; reload again after it
                await trio.sleep(0.5)
            try:
                await self.reload()
            except Exception:
                log.exception("reloading the configuration failed; keeping the previous one")

    # ------------------------------------------------------------------ binds → partner delivery

    def _on_refused(self, reason: str) -> None:
        if self.metrics is not None:
            self.metrics.connections_refused_total.labels(reason=reason).inc()

    def _on_bound(self, session: ServerSession) -> None:
        if not session.can_deliver or self._draining:
            return
        sid = session.system_id
        pd = self.deliveries.get(sid)
        if pd is not None and not pd._stopping:
            pd.receiver_bound()  # more window: its pullers look again at once
            return
        partner = self.partner(sid)
        if partner is None or self._delivery_nursery is None:
            return
        pd = PartnerDelivery(
            self.receivers,
            self.bus,
            partner,
            events=self.events,
            metrics=self.metrics,
            max_batch=self.cfg.limits.fetch_batch,
            order=self.receipt_order,
            wants=lambda kind: not self.webhooks.covers(sid, kind),
        )
        self.deliveries[sid] = pd
        self._delivery_nursery.start_soon(self._run_delivery, pd)

    async def _run_delivery(self, pd: PartnerDelivery) -> None:
        try:
            await pd.run()
        except Exception:
            log.exception("[%s] partner delivery failed", pd.system_id)
        finally:
            if self.deliveries.get(pd.system_id) is pd:
                del self.deliveries[pd.system_id]

    def _on_submit_refused(self, session: ServerSession, status: int) -> None:
        """A submit refused before the accept handler (the server's throttle, or the protocol core: wrong bind
        state, a field the codec refuses) is counted with the partner's other answered submits all the same
        (a connection not bound yet has no partner: nothing to count it under)."""
        if self.accept is not None and session.system_id:
            self.accept.count_refused(session.system_id, status)

    def _on_closed(self, session: ServerSession) -> None:
        sid = session.system_id
        pd = self.deliveries.get(sid)
        if pd is not None and not self.receivers.receivers(sid):
            pd.stop()

    # ------------------------------------------------------------------ operators

    def _sync_connectors(self) -> None:
        assert self.snapshot is not None and self._nursery is not None
        wanted = {}
        for op in self.snapshot.operators:
            if op.enabled and self.start_connectors:
                mine = self._cluster_share(op) if self.cluster_limits else self._worker_share(op)
                if mine is not None:
                    wanted[op.name] = mine
        for name in list(self.connectors):
            if name not in wanted:
                conn, scope = self.connectors.pop(name)
                self.shares.untrack(OPERATOR, name)
                self._nursery.start_soon(self._stop_connector, name, conn, scope)
        for name, op in wanted.items():
            have = self.connectors.get(name)
            if have is not None:
                try:
                    have[0].update(op)
                except Exception:
                    log.exception("updating connector %s failed", name)
                continue
            conn = OperatorConnector(
                op,
                self.bus,
                node=self.node_id,
                events=self.events,
                router=self._router,
                metrics=self.metrics,
                ids=self.ids.next_str,
                **self.connector_options,
            )
            scope = trio.CancelScope()
            self.connectors[name] = (conn, scope)
            if self.operator_limits is not None:
                self.operator_limits.track(self._serving())  # its TPS share (before its client is made)
            self._nursery.start_soon(self._serve_connector, op, conn, scope)

    def _cluster_share(self, op: Operator) -> Operator | None:
        """With ``[cluster] limits``: the binds this process holds in the ledger for the operator (None:
        none, so no connector here); its TPS share is applied to the connector's link, not here."""
        binds = self.operator_limits.binds(op.name) if self.operator_limits is not None else 0
        return attrs.evolve(op, bind_count=binds) if binds > 0 else None

    def _worker_share(self, op: Operator) -> Operator | None:
        """This worker's part of an operator's limits when ``worker=(index, count)`` splits a host's gateway
        into processes: the binds are dealt out (a worker with none does not serve the operator; the shared
        JetStream consumer lets the others carry its queue) and the TPS is divided by the workers that bind,
        so the operator never sees more than its configured binds and TPS from this host."""
        index, count = self.worker
        if count <= 1:
            return op
        binds = op.bind_count // count + (1 if index < op.bind_count % count else 0)
        if binds == 0:
            return None
        serving = min(count, op.bind_count)
        return attrs.evolve(op, bind_count=binds, tps=op.tps / serving if op.tps else op.tps)

    async def _run_connector(self, op: Operator, conn: Any, scope: trio.CancelScope) -> None:
        # A connector that fails (e.g. NATS unreachable while it sets up its consumer) is restarted with
        # back-off for as long as the operator is configured; only drain/removal cancels it.
        delay = 1.0
        with scope:
            while True:
                started = trio.current_time()
                try:
                    await conn.run()
                    return
                except BusError as e:  # NATS unreachable (as the node starts, or a restart): say so, no trace
                    if trio.current_time() - started > 60.0:
                        delay = 1.0  # it ran for a while: this is a new failure, not the same one again
                    log.warning("connector %s stopped: NATS unavailable (%s); restarting in %.0f s", op.name,
                                e, delay)  # fmt: skip
                except Exception:
                    if trio.current_time() - started > 60.0:
                        delay = 1.0
                    log.exception("connector %s failed; restarting in %.0f s", op.name, delay)
                await trio.sleep(delay)
                delay = min(delay * 2, 30.0)

    async def _serve_connector(self, op: Operator, conn: Any, scope: trio.CancelScope) -> None:
        """:meth:`_run_connector`; once it has stopped for good (the operator removed or disabled, not a
        drain), its ``connector_up`` and operator ``binds`` series go too: left behind they would read 0, and
        fire the connector_up alert, forever."""
        try:
            await self._run_connector(op, conn, scope)
        finally:
            if self.metrics is not None and op.name not in self.connectors:
                for gauge, labels in (
                    (self.metrics.connector_up, (op.name,)),
                    (self.metrics.binds, ("operator", op.name)),
                ):
                    try:
                        gauge.remove(*labels)
                    except KeyError:
                        pass

    async def _stop_connector(
        self, name: str, conn: Any, scope: trio.CancelScope, grace: float = 5.0
    ) -> None:
        closing = self._closing.setdefault(name, set())
        closing.add(conn)  # its binds still count (cluster limits) until it has stopped
        try:
            with trio.move_on_after(grace):
                await conn.drain(grace)
        except Exception:
            log.exception("draining connector %s failed", name)
        finally:
            scope.cancel()
            closing.discard(conn)
            if not closing and self._closing.get(name) is closing:
                del self._closing[name]

    # ------------------------------------------------------------------ reload / drain

    async def reload(self, cfg: Config | None = None) -> None:
        """Re-read the snapshot: new routes, partner changes (disabled/removed → unbound), connectors."""
        async with self._reload_lock:
            if cfg is not None:
                self.cfg = cfg
            snap = await self.db.snapshot()
            await self._save_snapshot(snap)
            old = self._partners
            self._apply_snapshot(snap)
            if not self._draining:
                self.webhooks.sync(snap)  # before the deliveries look again at what they may fetch
            for sid in set(old) | {
                s.system_id for srv in self.servers for s in srv.sessions() if s.system_id
            }:
                p = self._partners.get(sid)
                if p is None or not p.enabled:
                    sessions = self.receivers.bound_sessions(sid)
                    if sessions:
                        log.info(
                            "partner %r %s: unbinding %d session(s)",
                            sid,
                            "removed" if p is None else "disabled",
                            len(sessions),
                        )
                    for s in sessions:
                        assert self._nursery is not None
                        self._nursery.start_soon(s.unbind, 5.0)
                    pd = self.deliveries.get(sid)
                    if pd is not None:
                        pd.stop()
                else:
                    for s in self.receivers.bound_sessions(sid):
                        s.window_size = p.window  # a changed window applies to the binds held, too
                    pd = self.deliveries.get(sid)
                    if pd is not None:
                        pd.update(p)
                        pd.receiver_bound()  # a wider window: look again at once
            self.partner_limits.forget(lambda sid: sid in self._partners)
            if self._nursery is not None and not self._draining:
                if self.operator_limits is not None:
                    self.operator_limits.track(self._serving())
                self._sync_connectors()
            log.info("configuration version %d loaded", snap.version)

    async def drain(self, grace: float) -> None:
        """Stop taking binds, flush the accept batcher, unbind partners, stop connectors: within ``grace``."""
        self._draining = True
        deadline = trio.current_time() + grace
        for s in self.servers:
            s.closing = True  # refuse new binds (ESME_RBINDFAIL) from now on
            if s._accept_scope is not None:
                s._accept_scope.cancel()  # and stop accepting connections
        with trio.move_on_at(deadline):
            if self.accept is not None:
                await self.accept.drain()
            if self.credit is not None:  # nothing more is held here: the unused credit goes back
                await self.credit.close()
        # the HTTP API after accept: requests meanwhile were answered 503 (accept refuses while draining)
        self._http_stop.set()
        if self._http_done is not None:
            with trio.move_on_at(deadline):
                await self._http_done.wait()
        remaining = max(0.1, deadline - trio.current_time())
        async with trio.open_nursery() as n:
            for s in self.servers:
                n.start_soon(s.shutdown, remaining)
        for pd in list(self.deliveries.values()):
            pd.stop()
        with trio.move_on_at(deadline + 0.5):  # a request under way finishes and its batch is settled
            await self.webhooks.close()
        remaining = max(0.1, deadline - trio.current_time())
        with trio.move_on_at(deadline + 0.5):
            async with trio.open_nursery() as n:
                for name, (conn, scope) in list(self.connectors.items()):
                    n.start_soon(self._stop_connector, name, conn, scope, remaining)
        self.connectors.clear()
        if self.ledger is not None:  # the partners' and operators' binds here are closed: give them back
            with trio.move_on_after(1.0):
                await self.ledger.close()
        if isinstance(self.shares, ClusterShares):
            self.shares.stop()  # our last beacon: the others take our shares at once
        self._done.set()


def _duration(seconds: float) -> str:
    seconds = max(0.0, seconds)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}min"
    if seconds < 172800:
        return f"{seconds / 3600:.1f}h"
    return f"{seconds / 86400:.1f}d"


def _one_line(e: BaseException) -> str:
    return " ".join(str(e).split()) or type(e).__name__


async def _nursery_holder(*, task_status: trio.TaskStatus[trio.Nursery] = trio.TASK_STATUS_IGNORED) -> None:
    async with trio.open_nursery() as n:
        task_status.started(n)
        await trio.sleep_forever()
