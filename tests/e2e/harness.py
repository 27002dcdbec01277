"""End-to-end harness: partner → gateway → SMSC simulator → receipts back, on real NATS and Postgres.

* :class:`Env` (fixture ``env`` in ``conftest.py``): a fresh Postgres schema (migrated) and a unique NATS
  namespace per test; ``add_partner`` / ``add_operator`` / ``add_route`` write the records the gateway reads.
  :func:`open_env` makes one on any DSN (a test's own embedded Postgres that it stops and starts);
  :func:`message_log` / :func:`wait_message_log` read the gateway's message log.
* :func:`open_gateway`: a :class:`Gateway` in this process with its own bus connection, database pool and
  config watcher (two of them = two nodes sharing NATS and Postgres).
* :class:`GatewayProcess`: ``catalyst-smpp run --config`` in a subprocess (SIGKILL and restart).
* :func:`open_sim`: the simulator, recording which state each operator id's receipt reported.
* :func:`submit_load`: our :class:`SmppClient` as the partner, submitting unique texts until each one is
  acknowledged (a submit whose outcome is unknown — connection lost, no response — is sent again and counted
  in ``uncertain``: such a text may reach the simulator twice, unavoidably).
* :func:`check_delivered`: the exact count (every acknowledged text is at the simulator; duplicates counted).
* :func:`smpplib_session`: smpplib (a third-party client, blocking: run it in a thread) bound to a gateway.
"""

from __future__ import annotations

import collections
import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import attrs
import psycopg
import smpplib.client
import trio
from psycopg import sql

from catalyst_smpp.bus import Bus, ConsumerState, Kind
from catalyst_smpp.client import BindType, ClientConfig, SmppClient
from catalyst_smpp.config import Config, DatabaseConfig, HttpConfig, ListenerConfig, NatsConfig
from catalyst_smpp.embedded import Infrastructure
from catalyst_smpp.encoding.receipts import stat_for_state
from catalyst_smpp.gateway import Gateway
from catalyst_smpp.metrics import Metrics
from catalyst_smpp.protocol.constants import CommandStatus, MessageState
from catalyst_smpp.protocol.pdu import DeliverSm, Pdu, SubmitSm
from catalyst_smpp.protocol.session import SessionConfig
from catalyst_smpp.protocol.tlv import Tag
from catalyst_smpp.sim import SimConfig, SmscSimulator
from catalyst_smpp.store import (
    Database,
    MoRouteRepo,
    OperatorRepo,
    PartnerRepo,
    RouteRepo,
    connect_sync,
    migrate,
    open_config_watcher,
)
from catalyst_smpp.transport import SessionError
from catalyst_smpp.transport.errors import NotBoundError
from tests.services import free_port

PASSWORD = "secret"

#: connector settings that keep fault tests short (defaults are tuned for production: 30 s down_after, …)
FAST_CONNECTOR = {
    "down_after": 3.0,
    "down_retry": 0.5,
    "retry_delays": (0.2, 0.5, 1.0, 2.0),
    "response_timeout": 3.0,
    "submit_timeout": 4.0,
    "client_options": {"reconnect_initial": 0.2, "reconnect_max": 1.0, "reconnect_jitter": 0.1},
}
#: redelivery after a node died holding messages: seconds, not the production 30 s
ACK_WAIT = 6.0


def e2e_nats_config(namespace: str) -> NatsConfig:
    cfg = NatsConfig(namespace=namespace, reconnect_wait=0.25)
    s = cfg.streams
    return attrs.evolve(
        cfg,
        streams=attrs.evolve(
            s,
            mt=attrs.evolve(s.mt, ack_wait=ACK_WAIT),
            dlr=attrs.evolve(s.dlr, ack_wait=ACK_WAIT),
            mo=attrs.evolve(s.mo, ack_wait=ACK_WAIT),
        ),
    )


RECEIPT_STATES = {int(s): stat_for_state(s) for s in MessageState}


# --------------------------------------------------------------------------- records


@attrs.define
class Env:
    tmp: Path
    nats_url: str
    nats: NatsConfig
    dsn: str
    schema: str

    def setup(self, fn: Callable[[Any], Any]) -> Any:
        with connect_sync(self.dsn, schema=self.schema) as conn:
            return fn(conn)

    def add_partner(self, system_id: str = "acme", **fields: Any) -> None:
        fields.setdefault("throttle_rate", 5000.0)
        fields.setdefault("throttle_burst", 5000)
        fields.setdefault("window", 50)
        self.setup(lambda c: PartnerRepo(c).add(system_id, PASSWORD, **fields))

    def add_operator(self, name: str, port: int, **fields: Any) -> None:
        fields.setdefault("password", "pw")
        fields.setdefault("tps", 5000.0)
        fields.setdefault("window", 50)
        self.setup(lambda c: OperatorRepo(c).add(name, "127.0.0.1", port, name, **fields))

    def add_route(self, partner: str | None, prefix: str, operators: list[Any], **fields: Any) -> None:
        self.setup(lambda c: RouteRepo(c).add(partner, prefix, operators, **fields))

    def add_mo_route(self, dest_prefix: str, partner: str, **fields: Any) -> None:
        self.setup(lambda c: MoRouteRepo(c).add(dest_prefix, partner, **fields))

    def config(
        self,
        *,
        nats_url: str | None = None,
        port: int = 0,
        node_id: str = "gw",
        http: HttpConfig | None = None,
    ) -> Config:
        return Config(
            listeners=(ListenerConfig(host="127.0.0.1", port=port, reuse_port=False),),
            nats=attrs.evolve(self.nats, urls=(nats_url or self.nats_url,)),
            database=DatabaseConfig(dsn=self.dsn, schema=self.schema),
            http=http or HttpConfig(),
        )


@contextlib.contextmanager
def open_env(tmp: Path, nats_url: str, dsn: str) -> Iterator[Env]:
    """An :class:`Env` on ``dsn``: a fresh, migrated schema (dropped afterwards, if the server is up then) and
    a unique NATS namespace on ``nats_url`` (its streams deleted afterwards).  The ``env`` fixture uses the
    shared Postgres; a test that stops its database gives the DSN of its own embedded one."""
    from tests.services import delete_namespace_streams, unique_name

    schema = unique_name("e2e_")
    with psycopg.connect(dsn, autocommit=True) as c:
        c.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
    with connect_sync(dsn, schema=schema) as conn:
        migrate(conn, schema=schema)
    e = Env(tmp=tmp, nats_url=nats_url, nats=e2e_nats_config(unique_name("e")), dsn=dsn, schema=schema)
    try:
        yield e
    finally:
        delete_namespace_streams(nats_url, e.nats)
        with contextlib.suppress(psycopg.OperationalError), psycopg.connect(dsn, autocommit=True) as c:
            c.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


def message_log(env: Env) -> dict[str, collections.Counter[str]]:
    """The message log of ``env``: event → Counter of message ids (blocking; a count > 1 is a duplicate)."""

    def read(conn: Any) -> dict[str, collections.Counter[str]]:
        out: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
        for mid, event in conn.execute("SELECT message_id, event FROM message_log"):
            out[event][mid] += 1
        return out

    out: dict[str, collections.Counter[str]] = env.setup(read)
    return out


async def wait_message_log(
    env: Env, want: dict[str, set[str]], timeout: float
) -> dict[str, collections.Counter[str]]:
    """Until the message log has a row of each event for each of its message ids (decimal, as logged);
    returns the log then.  Reads while the database is down count as "not yet"."""
    log_: dict[str, collections.Counter[str]] = {}

    def missing() -> dict[str, int]:
        return {
            ev: len(ids - set(log_.get(ev, ()))) for ev, ids in want.items() if ids - set(log_.get(ev, ()))
        }

    deadline = trio.current_time() + timeout
    while True:
        try:
            log_ = await trio.to_thread.run_sync(message_log, env)
        except psycopg.OperationalError:
            log_ = {}
        if not missing():
            return log_
        if trio.current_time() > deadline:
            raise AssertionError(
                f"timed out after {timeout:g}s waiting for the message log: missing {missing()}"
            )
        await trio.sleep(0.25)


@contextlib.asynccontextmanager
async def open_gateway(
    env: Env,
    node_id: str = "gw-a",
    *,
    nats_url: str | None = None,
    connectors: bool = True,
    connector_options: dict[str, Any] | None = None,
    node_num: int | None = None,
    before_run: Callable[[], Awaitable[Any]] | None = None,
    metrics: Metrics | None = None,
    http: HttpConfig | None = None,
) -> AsyncIterator[Gateway]:
    """A gateway node in this process (own bus connection, pool and watcher), drained on exit.

    ``before_run``: awaited once the infrastructure is open, just before the Gateway starts (e.g. to stop
    NATS: the Gateway then starts with a bus that is reconnecting); ``http``: the HTTP API's settings."""
    url = nats_url or env.nats_url
    cfg = env.config(nats_url=url, node_id=node_id, http=http)
    opts = dict(FAST_CONNECTOR if connector_options is None else connector_options)
    async with (
        Bus.connect(url, env.nats, name=f"e2e {node_id}") as bus,
        Database.open(env.dsn, schema=env.schema, migrate=True, pool_size=2) as db,
        open_config_watcher(db, poll_interval=1.0) as watcher,
    ):
        infra = Infrastructure(bus=bus, db=db, watcher=watcher, nats_urls=[url], dsn=env.dsn)
        gw = Gateway(
            cfg,
            infra,
            node_id=node_id,
            node_num=node_num,
            connectors=connectors,
            connector_options=opts,
            metrics=metrics,
        )
        if before_run is not None:
            await before_run()
        async with trio.open_nursery() as n:
            await n.start(gw.run)
            try:
                yield gw
            finally:
                with trio.move_on_after(10):
                    await gw.drain(2.0)
                n.cancel_scope.cancel()


async def wait_for(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll ``predicate`` until true; ``timeout`` is only a hang guard (fails the test with ``what``)."""
    try:
        with trio.fail_after(timeout):
            while not predicate():
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(f"timed out after {timeout:g}s waiting for: {what}") from None


# --------------------------------------------------------------------------- the simulator


class RecordingSim(SmscSimulator):
    """The simulator, also remembering the receipt state it decided for each operator id and which receipts
    the gateway acknowledged (deliver_sm_resp ESME_ROK: the gateway took them over, durably)."""

    def __init__(self, config: SimConfig | None = None) -> None:
        super().__init__(config)
        self.receipt_stats: dict[str, str] = {}
        self._by_receipt_id: dict[str, str] = {}
        self.receipts_acked: list[str] = []
        """operator message ids (as in the submit_sm_resp) whose receipt the gateway acknowledged"""

    def _accepted(self, conn: Any, pdu: Any, verdict: Any, now: float) -> None:
        super()._accepted(conn, pdu, verdict, now)
        if verdict.state is not None and verdict.receipt_due_in is not None:
            self.receipt_stats[verdict.message_id] = stat_for_state(verdict.state)
            self._by_receipt_id[verdict.receipt_id] = verdict.message_id

    def _receipt_answered(self, pdu: DeliverSm, status: int | None) -> None:
        rid = pdu.get_tlv(Tag.receipted_message_id)
        rid_text = (rid.decode() if isinstance(rid, bytes) else str(rid)).rstrip("\0")
        if status == 0 and rid_text in self._by_receipt_id:
            self.receipts_acked.append(self._by_receipt_id[rid_text])


@contextlib.asynccontextmanager
async def open_sim(config: SimConfig | None = None) -> AsyncIterator[RecordingSim]:
    sim = RecordingSim(config)
    async with trio.open_nursery() as n:
        await n.start(sim.serve)
        try:
            yield sim
        finally:
            n.cancel_scope.cancel()


class SimSlot:
    """A simulator that can be stopped (the SMSC goes away) while the test goes on."""

    def __init__(self) -> None:
        self.scope: trio.CancelScope | None = None
        self.sim: RecordingSim | None = None

    async def start(self, nursery: trio.Nursery, config: SimConfig) -> RecordingSim:
        self.sim = RecordingSim(config)
        await nursery.start(self._run, self.sim)
        return self.sim

    async def _run(self, sim: RecordingSim, *, task_status: Any = trio.TASK_STATUS_IGNORED) -> None:
        with trio.CancelScope() as self.scope:
            await sim.serve(task_status=task_status)

    def stop(self) -> None:
        """The SMSC goes away at once: every connection closed now (a cancelled server would still
        finish its sessions gracefully for a moment), the listener with it."""
        assert self.scope is not None and self.sim is not None
        for session in self.sim.server.sessions():
            session.close()
        self.scope.cancel()


def sim_texts(*sims: SmscSimulator) -> collections.Counter[str]:
    """How many times each (single-part) text reached the simulators."""
    return collections.Counter(m.text or "" for s in sims for m in s.messages)


# --------------------------------------------------------------------------- the partner (our client)


@attrs.define
class Receipts:
    """deliver_sm receipts a partner got: (receipted id, stat) in arrival order; ``sources``: receipted id →
    the receipt's source_addr (the original destination); ``other``: anything else it got."""

    items: list[tuple[str, str]] = attrs.Factory(list)
    sources: dict[str, str] = attrs.Factory(dict)
    other: int = 0

    def handler(self, session: Any, pdu: Pdu) -> Any:
        if isinstance(pdu, DeliverSm) and pdu.esm_class & 0x04:
            rid = pdu.get_tlv(Tag.receipted_message_id)
            state = pdu.get_tlv(Tag.message_state)
            rid_text = (rid.decode() if isinstance(rid, bytes) else str(rid)).rstrip("\0")
            self.items.append(
                (rid_text, RECEIPT_STATES.get(state, str(state)) if isinstance(state, int) else str(state))
            )
            self.sources[rid_text] = pdu.source_addr
        else:
            self.other += 1
        return None

    def by_id(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = collections.defaultdict(list)
        for rid, stat in self.items:
            out[rid].append(stat)
        return out


@attrs.define
class LoadResult:
    acked: dict[str, str] = attrs.Factory(dict)
    """text → our message id as shown to the partner"""
    uncertain: set[str] = attrs.Factory(set)
    """texts with an attempt of unknown outcome (sent, then the connection went or no response came)"""
    refused: collections.Counter[int] = attrs.Factory(collections.Counter)
    """command_status of refused attempts (retried)"""
    attempts: int = 0
    latencies: list[float] = attrs.Factory(list)
    """seconds from each acknowledged attempt's request to its ESME_ROK"""


def partner_client(
    port: int | Callable[[], int],
    system_id: str = "acme",
    *,
    handler: Any = None,
    binds: tuple[BindType, ...] = (BindType.TRANSCEIVER,),
    connect: Callable[[], Awaitable[trio.abc.Stream]] | None = None,
    response_timeout: float = 15.0,
) -> SmppClient:
    """``connect``: how to reach the gateway (default: 127.0.0.1 at ``port``), e.g. trying several nodes."""

    async def connect_local() -> trio.abc.Stream:
        p = port() if callable(port) else port
        return await trio.open_tcp_stream("127.0.0.1", p)

    return SmppClient(
        ClientConfig(
            host="127.0.0.1",
            port=0,
            system_id=system_id,
            password=PASSWORD,
            binds=binds,
            session=SessionConfig(
                window_size=10,
                response_timeout=response_timeout,
                enquire_link_interval=5.0,
                bind_timeout=None,
            ),
            reconnect_initial=0.2,
            reconnect_max=1.0,
            reconnect_jitter=0.1,
            throttle_retries=0,
        ),
        handler,
        connect=connect or connect_local,
    )


async def submit_load(
    client: SmppClient,
    texts: Iterable[str],
    dest: str | Callable[[int], str] = "447700900001",
    *,
    concurrency: int = 10,
    registered_delivery: int = 1,
    result: LoadResult | None = None,
    on_ack: Callable[[int], None] | None = None,
    rate: float | None = None,
) -> LoadResult:
    """Submit every text (retrying until acknowledged); ``on_ack(n)`` after each acknowledgement; ``rate``:
    at most that many submit attempts per second (over all workers), so a load lasts long enough for a fault
    in its middle."""
    res = result if result is not None else LoadResult()
    next_slot = trio.current_time()

    async def pace() -> None:
        nonlocal next_slot
        if rate:
            now = trio.current_time()
            slot, next_slot = max(now, next_slot), max(now, next_slot) + 1.0 / rate
            await trio.sleep_until(slot)

    todo = list(enumerate(texts))
    send, recv = trio.open_memory_channel[tuple[int, str]](len(todo))
    for item in todo:
        send.send_nowait(item)
    send.close()

    async def worker() -> None:
        async for i, text in recv:
            addr = dest(i) if callable(dest) else dest
            while True:
                await pace()
                res.attempts += 1
                pdu = SubmitSm(
                    source_addr="12345",
                    source_addr_ton=1,
                    source_addr_npi=1,
                    dest_addr_ton=1,
                    dest_addr_npi=1,
                    destination_addr=addr,
                    registered_delivery=registered_delivery,
                    short_message=text.encode("ascii"),
                )
                sent_at = trio.current_time()
                try:
                    resp = await client.request(pdu)
                except SessionError as e:
                    if getattr(e, "sent", not isinstance(e, NotBoundError)):
                        res.uncertain.add(text)
                    await trio.sleep(0.1)
                    continue
                if resp.command_status == 0:
                    res.latencies.append(trio.current_time() - sent_at)
                    res.acked[text] = str(getattr(resp, "message_id", ""))
                    if on_ack is not None:
                        on_ack(len(res.acked))
                    break
                res.refused[resp.command_status] += 1
                await trio.sleep(0.1)

    async with trio.open_nursery() as n:
        for _ in range(concurrency):
            n.start_soon(worker)
    return res


def texts(tag: str, n: int) -> list[str]:
    return [f"{tag} {i:05d}" for i in range(n)]


@attrs.define
class Count:
    """The exact count at the end of a test (printed, so a run shows the numbers)."""

    submitted: int
    acked: int
    delivered: int
    """acknowledged texts found at the simulator"""
    missing: list[str]
    duplicates: int
    """extra copies at the simulator (sum over texts of count - 1)"""
    unexpected: int
    """texts at the simulator nobody acknowledged"""

    def __str__(self) -> str:
        return (
            f"submitted {self.submitted} acked {self.acked} delivered {self.delivered} "
            f"missing {len(self.missing)} duplicates {self.duplicates} unexpected {self.unexpected}"
        )


def check_delivered(all_texts: list[str], load: LoadResult, *sims: SmscSimulator) -> Count:
    at_sim = sim_texts(*sims)
    missing = [t for t in load.acked if at_sim[t] == 0]
    dups = sum(c - 1 for c in at_sim.values() if c > 1)
    wanted = set(all_texts)
    unexpected = sum(c for t, c in at_sim.items() if t not in wanted)
    count = Count(len(all_texts), len(load.acked), len(load.acked) - len(missing), missing, dups, unexpected)
    print(f"COUNT: {count}; uncertain submits {len(load.uncertain)}; refused {dict(load.refused)}")
    return count


async def wait_delivered(
    load: LoadResult, sims: Callable[[], Sequence[SmscSimulator]], timeout: float
) -> None:
    def done() -> bool:
        at = sim_texts(*sims())
        return all(at[t] for t in load.acked)

    await wait_for(done, timeout, "every acknowledged message at the simulator")


async def partner_round(
    port: int,
    receipts: Receipts,
    all_texts: list[str],
    sims: Callable[[], Sequence[SmscSimulator]],
    *,
    bind_timeout: float = 30.0,
    load_timeout: float = 60.0,
    delivered_timeout: float = 60.0,
    receipts_timeout: float = 60.0,
    linger: float = 0.0,
) -> LoadResult:
    """A partner binds (TRX) to ``port``, submits every text, waits until the simulators have every
    acknowledged one and every receipt is back, waits ``linger`` seconds more (a duplicate would arrive
    then), and unbinds."""
    client = partner_client(port, handler=receipts.handler)
    async with trio.open_nursery() as nursery:
        await nursery.start(client.run)
        with trio.fail_after(bind_timeout):
            await client.wait_bound()
        with trio.fail_after(load_timeout):
            load = await submit_load(client, all_texts)
        await wait_delivered(load, sims, delivered_timeout)
        await wait_receipts(load, receipts, receipts_timeout)
        if linger:
            await trio.sleep(linger)
        await client.aclose()
    return load


async def wait_settled(gw: Gateway, kind: Kind, name: str, timeout: float) -> ConsumerState:
    """Until the durable consumer of ``kind``/``name`` has nothing pending and nothing unacknowledged.

    ``Kind.MT``: every submit_sm_resp read and its id mapping stored (a message being at the simulator is not
    enough: its response may still be on the wire, and an SMSC going away now makes the gateway send it
    again).  ``Kind.DLR``/``Kind.MO``: every deliver_sm_resp of the partner taken into account."""
    consumer = await gw.bus.consumer(kind, name)
    info: ConsumerState | None = None
    try:
        with trio.fail_after(timeout):
            while True:
                info = await consumer.info()
                assert info is not None
                if info.num_pending == 0 and info.num_ack_pending == 0:
                    return info
                await trio.sleep(0.05)
    except trio.TooSlowError:
        raise AssertionError(
            f"timed out after {timeout:g}s: {kind.name}.{name} not settled: {info}"
        ) from None


async def wait_receipts(load: LoadResult, receipts: Receipts, timeout: float) -> None:
    def missing() -> set[str]:
        return set(load.acked.values()) - {r for r, _ in receipts.items}

    try:
        await wait_for(lambda: not missing(), timeout, "a receipt for every acknowledged message")
    except AssertionError as e:
        raise AssertionError(f"{e}: {len(missing())} of {len(load.acked)} without a receipt") from None


# --------------------------------------------------------------------------- smpplib as the partner


class SmpplibPartner:
    """smpplib (a third-party client) as the partner.  Blocking: ``await trio.to_thread.run_sync(partner.run,
    fn)`` connects, binds, calls ``fn(partner)``, unbinds and disconnects, all in a worker thread.

    Every deliver_sm it gets is answered ESME_ROK (by smpplib) and kept in ``received``."""

    def __init__(self, port: int, system_id: str = "acme", bind: str = "transceiver") -> None:
        self.client = smpplib.client.Client("127.0.0.1", port, timeout=15, allow_unknown_opt_params=True)
        self.system_id = system_id
        self.bind = bind
        self.received: list[Any] = []
        self.client.set_message_received_handler(lambda pdu: self.received.append(pdu))

    def run(self, fn: Callable[[SmpplibPartner], Any]) -> Any:
        self.client.connect()
        try:
            getattr(self.client, f"bind_{self.bind}")(system_id=self.system_id, password=PASSWORD)
            out = fn(self)
            self.client.unbind()
            return out
        finally:
            self.client.disconnect()

    def request(self, command: str, **fields: Any) -> Any:
        """Send ``command`` (an smpplib PDU name: ``submit_sm``, ``data_sm``) and return its response,
        handling deliver_sm / enquire_link that arrive meanwhile."""
        import smpplib.smpp

        c = self.client
        pdu = smpplib.smpp.make_pdu(command, client=c, **fields)
        c.send_pdu(pdu)
        while True:
            p = c.read_pdu()
            if p.command == f"{command}_resp" and p.sequence == pdu.sequence:
                return p
            if p.command == "deliver_sm":
                c._message_received(p)
            elif p.command == "enquire_link":
                c._enquire_link_received(p)

    def read_until(self, done: Callable[[], bool], timeout: float, then: float = 1.0) -> None:
        """Read PDUs until ``done()`` (or ``timeout`` s), then ``then`` s more (a copy would arrive then)."""
        c = self.client
        c._socket.settimeout(0.2)
        try:
            for limit, check in ((timeout, True), (then, False)):
                end = time.monotonic() + limit
                while time.monotonic() < end and not (check and done()):
                    with contextlib.suppress(TimeoutError):
                        c.read_once(auto_send_enquire_link=False)
        finally:
            c._socket.settimeout(15)


# --------------------------------------------------------------------------- the daemon in a subprocess


class GatewayProcess:
    """``catalyst-smpp run --config FILE`` as a child process (log in ``<dir>/gw-N.log``)."""

    def __init__(
        self,
        env: Env,
        directory: Path,
        *,
        node_id: str = "gw-proc",
        port: int | None = None,
        connectors: bool = True,
    ) -> None:
        """``connectors=False``: ``[node] connectors = false`` (partner side only, no operator connector)."""
        directory.mkdir(parents=True, exist_ok=True)
        self.env = env
        self.dir = directory
        self.port = port or free_port()
        self.metrics_port = free_port()
        self.node_id = node_id
        self.proc: subprocess.Popen[bytes] | None = None
        self.runs = 0
        self.config_path = directory / "gateway.toml"
        self.config_path.write_text(f"""
[node]
id = "{node_id}"
state_dir = "{directory / "state"}"
connectors = {"true" if connectors else "false"}

[nats]
urls = ["{env.nats_url}"]
namespace = "{env.nats.namespace}"
reconnect_wait = "250ms"

[nats.streams.mt]
ack_wait = "{ACK_WAIT}s"

[nats.streams.dlr]
ack_wait = "{ACK_WAIT}s"

[nats.streams.mo]
ack_wait = "{ACK_WAIT}s"

[database]
dsn = "{env.dsn}"
schema = "{env.schema}"

[[listeners]]
host = "127.0.0.1"
port = {self.port}
reuse_port = false

[limits]
shutdown_grace = "3s"

[metrics]
host = "127.0.0.1"
port = {self.metrics_port}

[logging]
level = "INFO"
""")

    @property
    def log_path(self) -> Path:
        return self.dir / f"gw-{self.runs}.log"

    def start(self) -> None:
        self.runs += 1
        env = {
            k: v
            for k, v in os.environ.items()
            if not k.startswith(("NOTIFY_SOCKET", "WATCHDOG_", "CATALYST_"))
        }
        with self.log_path.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-c",
                    "from catalyst_smpp.cli import main; main()",
                    "run",
                    "--config",
                    str(self.config_path),
                ],
                stdout=subprocess.DEVNULL,
                stderr=log,
                env=env,
            )

    async def wait_listening(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise AssertionError(f"gateway exited with {self.proc.returncode}:\n{self.tail()}")
            try:
                s = await trio.open_tcp_stream("127.0.0.1", self.port)
                await s.aclose()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise AssertionError(f"gateway not listening after {timeout}s:\n{self.tail()}") from None
                await trio.sleep(0.1)

    def kill(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)

    async def stop_async(self) -> None:
        """:meth:`stop` in a worker thread: this process's trio loop (the simulator, the partners) keeps
        running meanwhile, so the gateway's drain ends when its peers answer instead of by its grace
        (``shutdown_grace``, 3 s, which a blocked loop always ran out)."""
        await trio.to_thread.run_sync(self.stop)

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no log)"

    def metric(self, name: str) -> float | None:
        """One unlabelled sample from the gateway's /metrics (None when absent)."""
        import urllib.request

        from prometheus_client.parser import text_string_to_metric_families

        url = f"http://127.0.0.1:{self.metrics_port}/metrics"
        with urllib.request.urlopen(url, timeout=10) as r:
            body = r.read().decode()
        for fam in text_string_to_metric_families(body):
            for s in fam.samples:
                if s.name == name and not s.labels:
                    return float(s.value)
        return None


__all__ = [
    "FAST_CONNECTOR",
    "PASSWORD",
    "CommandStatus",
    "Count",
    "Env",
    "GatewayProcess",
    "LoadResult",
    "Receipts",
    "RecordingSim",
    "SimSlot",
    "SmpplibPartner",
    "check_delivered",
    "message_log",
    "open_env",
    "open_gateway",
    "open_sim",
    "partner_client",
    "sim_texts",
    "submit_load",
    "texts",
    "wait_delivered",
    "wait_for",
    "wait_message_log",
    "wait_receipts",
    "wait_settled",
]
