"""Repositories on a real Postgres (fresh schema per module): partners, operators, routes, message log."""

from __future__ import annotations

import datetime as dt
import ipaddress
import random
from pathlib import Path

import attrs
import psycopg
import pytest

from catalyst_smpp.config import parse_config
from catalyst_smpp.store import (
    AuthResult,
    Database,
    MessageEvent,
    MessageLogRepo,
    NotFound,
    OperatorRepo,
    PartnerRepo,
    RouteRepo,
    RouteTarget,
    authenticate,
    repos,
    seed_from_config,
)
from tests.services import unique_name


def _sid() -> str:
    return unique_name("p")[:15]


async def test_partner_crud_and_authentication(db: Database) -> None:
    sid = _sid()
    p = await db.run(
        lambda c: PartnerRepo(c).add(
            sid,
            "s3cret",
            allowed_ips=["10.1.0.0/16", "192.0.2.7"],
            throttle_rate=50.0,
            throttle_burst=20,
            window=5,
            message_id_format="dec",
            receipt_date_digits=12,
        )
    )
    assert p.system_id == sid and p.window == 5 and p.message_id_format == "dec"
    assert p.allowed_ips == (ipaddress.ip_network("10.1.0.0/16"), ipaddress.ip_network("192.0.2.7/32"))
    assert "s3cret" not in p.password_hash and p.password_hash.startswith("scrypt$")
    assert "password_hash" not in repr(p)

    assert authenticate(p, "s3cret", "10.1.2.3") is AuthResult.OK
    assert authenticate(p, "s3cret", "::ffff:10.1.2.3") is AuthResult.OK
    assert authenticate(p, "wrong", "10.1.2.3") is AuthResult.BAD_PASSWORD
    assert authenticate(p, "s3cret", "10.2.0.1") is AuthResult.ADDRESS_NOT_ALLOWED
    assert authenticate(None, "s3cret", "10.1.2.3") is AuthResult.UNKNOWN_SYSTEM_ID

    changed = await db.run(lambda c: PartnerRepo(c).change(sid, password="n3w", allowed_ips=[], max_binds=2))
    assert changed.max_binds == 2 and changed.allowed_ips == () and changed.ip_allowed("203.0.113.1")
    assert changed.check_password("n3w") and not changed.check_password("s3cret")
    assert changed.updated_at is not None and p.updated_at is not None and changed.updated_at >= p.updated_at

    disabled = await db.run(lambda c: PartnerRepo(c).disable(sid))
    assert not disabled.enabled
    assert authenticate(disabled, "n3w", None) is AuthResult.DISABLED
    assert sid not in [x.system_id for x in await db.run(lambda c: PartnerRepo(c).list(enabled_only=True))]
    assert sid in [x.system_id for x in await db.run(lambda c: PartnerRepo(c).list())]
    assert await db.run(lambda c: PartnerRepo(c).delete(sid))
    assert await db.run(lambda c: PartnerRepo(c).get(sid)) is None


async def test_partner_constraints(db: Database) -> None:
    sid = _sid()
    await db.run(lambda c: PartnerRepo(c).add(sid, "pw"))
    with pytest.raises(psycopg.errors.UniqueViolation):
        await db.run(lambda c: PartnerRepo(c).add(sid, "pw"))
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(lambda c: PartnerRepo(c).add("x" * 16, "pw"))
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(lambda c: PartnerRepo(c).change(sid, message_id_format="base64"))
    with pytest.raises(ValueError, match="unknown partner field"):
        await db.run(lambda c: PartnerRepo(c).change(sid, windw=3))
    with pytest.raises(ValueError, match="at most 8"):
        await db.run(lambda c: PartnerRepo(c).add(_sid(), "123456789"))
    with pytest.raises(NotFound):
        await db.run(lambda c: PartnerRepo(c).change("nobody-here", max_binds=1))
    # the failed statements rolled back their transactions; the pool still works
    assert (await db.run(lambda c: PartnerRepo(c).get(sid))) is not None


async def test_operator_crud(db: Database) -> None:
    name = unique_name("op")
    o = await db.run(
        lambda c: OperatorRepo(c).add(
            name,
            "smsc.example",
            2775,
            "gw",
            password="pw",
            bind_type="tx_rx",
            bind_count=2,
            window=50,
            tps=200.0,
            segmentation="sar",
            submit_id_format="hex",
            receipt_id_format="dec",
            data_coding_0="latin1",
        )
    )
    assert (o.bind_type, o.bind_count, o.window, o.tps, o.segmentation) == ("tx_rx", 2, 50, 200.0, "sar")
    assert "pw" not in repr(o)
    o2 = await db.run(lambda c: OperatorRepo(c).change(name, tps=10.5, tls=True))
    assert o2.tps == 10.5 and o2.tls
    assert not (await db.run(lambda c: OperatorRepo(c).disable(name))).enabled
    assert name in [x.name for x in await db.run(lambda c: OperatorRepo(c).list())]
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(lambda c: OperatorRepo(c).add("bad name", "h", 1, "s"))
    with pytest.raises(psycopg.errors.CheckViolation):
        await db.run(lambda c: OperatorRepo(c).add(unique_name("op"), "h", 70000, "s"))


async def test_operator_temporary_statuses(db: Database) -> None:
    name = unique_name("op")
    o = await db.run(lambda c: OperatorRepo(c).add(name, "h", 2775, "s"))
    assert o.temporary_statuses == ()
    # ints or "0x" strings; stored sorted without repeats
    o = await db.run(lambda c: OperatorRepo(c).change(name, temporary_statuses=["0x4ff", 0x401, "0x401"]))
    assert o.temporary_statuses == (0x401, 0x4FF)
    assert (await db.run(lambda c: OperatorRepo(c).get(name))).temporary_statuses == (0x401, 0x4FF)
    snap = await db.snapshot()
    assert next(x for x in snap.operators if x.name == name).temporary_statuses == (0x401, 0x4FF)
    # other changes keep it; an empty list clears it
    o = await db.run(lambda c: OperatorRepo(c).change(name, tps=5.0))
    assert o.temporary_statuses == (0x401, 0x4FF)
    o = await db.run(lambda c: OperatorRepo(c).change(name, temporary_statuses=[]))
    assert o.temporary_statuses == ()
    n2 = unique_name("op")
    o2 = await db.run(lambda c: OperatorRepo(c).add(n2, "h", 1, "s", temporary_statuses=(0x58, 0x4C0)))
    assert o2.temporary_statuses == (0x58, 0x4C0)
    for bad in (["401"], [0], ["0x"], [2**31], [True]):
        with pytest.raises(ValueError):
            await db.run(lambda c, bad=bad: OperatorRepo(c).change(n2, temporary_statuses=bad))
    assert (await db.run(lambda c: OperatorRepo(c).get(n2))).temporary_statuses == (0x58, 0x4C0)


async def test_seed_from_config_takes_temporary_statuses(db: Database) -> None:
    name = unique_name("op")
    cfg = parse_config(
        f'[[operators]]\nname = "{name}"\nhost = "h"\nport = 2775\nsystem_id = "s"\n'
        'temporary_statuses = [0x4C1, "0x401"]\n'
    )
    assert await db.run(lambda c: seed_from_config(c, cfg)) == ([name], [])
    o = await db.run(lambda c: OperatorRepo(c).get(name))
    assert o is not None and o.temporary_statuses == (0x401, 0x4C1)
    # later changes are made with the CLI: a second seed leaves the row alone
    await db.run(lambda c: OperatorRepo(c).change(name, temporary_statuses=[]))
    assert await db.run(lambda c: seed_from_config(c, cfg)) == ([], [])
    assert (await db.run(lambda c: OperatorRepo(c).get(name))).temporary_statuses == ()


async def test_operator_receipt_and_tls_settings(db: Database, tmp_path: Path) -> None:
    name = unique_name("op")
    o = await db.run(lambda c: OperatorRepo(c).add(name, "h", 2775, "s"))
    assert (o.receipt_parts, o.receipt_request, o.tls_ca_file, o.tls_server_name) == ("all", "final", "", "")
    o = await db.run(
        lambda c: OperatorRepo(c).change(
            name, receipt_parts="last", receipt_request="as_partner", tls_ca_file="/etc/ca.pem",
            tls_server_name="smsc.example",
        )
    )  # fmt: skip
    assert (o.receipt_parts, o.receipt_request, o.tls_ca_file, o.tls_server_name) == (
        "last", "as_partner", "/etc/ca.pem", "smsc.example",
    )  # fmt: skip
    snap = await db.snapshot()
    assert next(x for x in snap.operators if x.name == name) == o
    # seeded from the config file: a relative CA file is anchored at the file's directory
    n2 = unique_name("op")
    cfg = parse_config(
        f'[[operators]]\nname = "{n2}"\nhost = "h"\nport = 2775\nsystem_id = "s"\ntls = true\n'
        'tls_ca_file = "ca/operator.pem"\ntls_server_name = "smsc.example"\nreceipt_parts = "last"\n',
        base_dir=tmp_path,
    )
    assert await db.run(lambda c: seed_from_config(c, cfg)) == ([n2], [])
    o2 = await db.run(lambda c: OperatorRepo(c).get(n2))
    assert o2 is not None and o2.tls_ca_file == str(tmp_path / "ca" / "operator.pem")
    assert (o2.tls_server_name, o2.receipt_parts, o2.receipt_request) == ("smsc.example", "last", "final")


async def test_operator_receipts_by_text(db: Database) -> None:
    name = unique_name("op")
    o = await db.run(lambda c: OperatorRepo(c).add(name, "h", 2775, "s"))
    assert o.receipts_by_text is False
    o = await db.run(lambda c: OperatorRepo(c).change(name, receipts_by_text=True))
    assert o.receipts_by_text is True
    o = await db.run(lambda c: OperatorRepo(c).change(name, tps=5.0))  # other changes keep it
    assert o.receipts_by_text is True
    snap = await db.snapshot()
    assert next(x for x in snap.operators if x.name == name).receipts_by_text is True
    cfg = parse_config(
        f'[[operators]]\nname = "{unique_name("op")}"\nhost = "h"\nport = 2775\nsystem_id = "s"\n'
        "receipts_by_text = true\n"
    )
    (seeded,), _ = await db.run(lambda c: seed_from_config(c, cfg))
    o = await db.run(lambda c: OperatorRepo(c).get(seeded))
    assert o is not None and o.receipts_by_text is True


async def test_routes_with_ordered_and_weighted_operators(db: Database) -> None:
    sid = _sid()
    a, b, c_ = (unique_name("op") for _ in range(3))

    def setup(conn: psycopg.Connection) -> None:
        PartnerRepo(conn).add(sid, "pw")
        for n in (a, b, c_):
            OperatorRepo(conn).add(n, "h", 2775, "s")

    await db.run(setup)
    r1 = await db.run(lambda c: RouteRepo(c).add(sid, "4477", [b, a], priority=5, source_prefix="INFO"))
    assert r1.partner == sid and r1.strategy == "failover"
    assert r1.targets == (RouteTarget(b, 0, 1), RouteTarget(a, 1, 1))
    r2 = await db.run(lambda c: RouteRepo(c).add(None, "44", [(a, 70), (c_, 30)], strategy="weighted"))
    assert r2.partner is None and [(t.operator, t.weight) for t in r2.targets] == [(a, 70), (c_, 30)]

    mine = await db.run(lambda c: RouteRepo(c).list(partner=sid))
    assert [r.id for r in mine][:2] == [r1.id, r2.id]  # by id

    r1b = await db.run(
        lambda c: RouteRepo(c).change(r1.id, operators=[a], source_prefix=None, source_regex=r"^\d+$")
    )
    assert r1b.targets == (RouteTarget(a, 0, 1),) and r1b.source_regex == r"^\d+$"
    with pytest.raises(ValueError, match="does not compile"):
        await db.run(lambda c: RouteRepo(c).change(r1.id, source_regex="("))
    with pytest.raises(NotFound, match="no operator"):
        await db.run(lambda c: RouteRepo(c).add(sid, "1", ["nope-op"]))
    with pytest.raises(ValueError, match="twice"):
        await db.run(lambda c: RouteRepo(c).add(sid, "1", [a, a]))
    with pytest.raises(psycopg.errors.ForeignKeyViolation):  # operator still routed to
        await db.run(lambda c: OperatorRepo(c).delete(a))
    assert not (await db.run(lambda c: RouteRepo(c).disable(r2.id))).enabled
    assert await db.run(lambda c: RouteRepo(c).delete(r2.id))
    # deleting a partner removes its routes
    await db.run(lambda c: PartnerRepo(c).delete(sid))
    assert await db.run(lambda c: RouteRepo(c).get(r1.id)) is None


async def test_snapshot_reads_everything_with_version(db: Database) -> None:
    before = await db.snapshot()
    await db.run(lambda c: OperatorRepo(c).add(unique_name("op"), "h", 1, "s"))
    after = await db.snapshot()
    assert after.version > before.version
    assert len(after.operators) == len(before.operators) + 1


async def test_message_log_batches_are_idempotent(db: Database) -> None:
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    mid = unique_name("m")
    evs = [
        MessageEvent(
            f"{mid}-{i}",
            "accepted",
            t0 + dt.timedelta(seconds=i),
            partner="acme",
            operator="op1",
            source_addr="INFO",
            dest_addr=f"4477{i:07d}",
            parts=1 + i % 3,
        )
        for i in range(1000)
    ]
    assert await db.write_events(evs) == 1000
    assert await db.write_events(evs[:10]) == 0  # a replay inserts nothing
    final = MessageEvent(
        f"{mid}-0",
        "delivered",
        t0 + dt.timedelta(minutes=1),
        partner="acme",
        operator="op1",
        status=0,
        final_state="DELIVRD",
        operator_message_id="0A1F",
        node="n1",
        error=None,
    )
    # duplicates inside one batch are collapsed too
    assert await db.write_events([final, final, evs[0]]) == 1
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-0"))
    assert [r.event for r in rows] == ["accepted", "delivered"]
    assert rows[1].final_state == "DELIVRD" and rows[1].operator_message_id == "0A1F"
    assert rows[0] == evs[0]
    assert await db.write_events([]) == 0


async def test_message_log_rows_postgres_refuses_do_not_stall_the_batch(db: Database) -> None:
    # An operator's receipt can carry a NUL inside `err:`; Postgres refuses NUL in text (and psycopg a
    # lone surrogate).  Such a batch must still be written (text cleaned), or the EVENTS writer would
    # retry it for ever.
    t0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    mid = unique_name("poison")
    good = [MessageEvent(f"{mid}-{i}", "accepted", t0, partner="acme") for i in range(5)]
    nul = MessageEvent(f"{mid}-0", "delivered", t0, error="0\x001", operator_message_id="ab\x00cd")
    surrogate = MessageEvent(f"{mid}-1", "delivered", t0, partner="acme", source_addr="x\udc80y")
    assert await db.write_events([*good, nul, surrogate]) == 7
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-0"))
    assert [(r.event, r.error, r.operator_message_id) for r in rows] == [
        ("accepted", None, None),
        ("delivered", "0\ufffd1", "ab\ufffdcd"),
    ]
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-1"))
    assert rows[1].source_addr == "x?y"
    # the same batch again (a redelivery after a lost ack) goes through the duplicate path: nothing new
    assert await db.write_events([*good, nul, surrogate]) == 0
    # a row no cleaning can fix (parts out of int range) is dropped alone; the rest of its batch is stored
    huge = MessageEvent(f"{mid}-9", "accepted", t0, partner="acme", parts=2**40)
    fine = MessageEvent(f"{mid}-8", "accepted", t0, partner="acme")
    assert await db.write_events([huge, fine]) == 1
    assert await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-9")) == []
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-8"))
    assert [r.event for r in rows] == ["accepted"]


def _log_row(mid: str, event: str, at: object, **fields: object) -> tuple[object, ...]:
    ev = MessageEvent(mid, event, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), **fields)  # type: ignore[arg-type]
    return (mid, event, at, *(getattr(ev, f) for f in _LOG_FIELDS[3:]))


_LOG_FIELDS = tuple(f.name for f in attrs.fields(MessageEvent))


async def test_message_log_rows_round_trip_exactly_through_the_bulk_copy(db: Database) -> None:
    # rows are written as one COPY text per batch: every value that needs escaping must come back as it was
    mid = unique_name("bulk")
    texts = [
        "a\tb",
        "back\\slash",
        "new\nline",
        "cr\r\nlf",
        "\\N",
        "\\",
        "\\\\N\t",
        "None",
        "",
        "é€😀",
        "x\\ty",
    ]
    rows = [
        _log_row(
            f"{mid}-{i}",
            "delivered",
            1767225600.000001 + i * 1.5,
            partner=t,
            operator=t,
            source_addr=t,
            dest_addr=t,
            parts=i + 1,
            status=i,
            final_state=t,
            error=t,
            operator_message_id=t,
            node=t,
            display_id=t,
        )
        for i, t in enumerate(texts)
    ]
    nulls = _log_row(f"{mid}-n", "accepted", 1767225600, partner="p")  # Nones and defaults, int seconds
    when = dt.datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=dt.timezone(dt.timedelta(hours=2)))
    aware = _log_row(f"{mid}-d", "accepted", when, error="e")
    plain = _log_row(f"{mid}-p", "accepted", 1767225600.5, partner="acme", error="ok")
    assert await db.write_log_rows([plain]) == 1  # a plain batch: the one-f-string-per-row path
    assert await db.write_log_rows([*rows, nulls, aware]) == len(rows) + 2
    for i, t in enumerate(texts):
        (got,) = await db.run(lambda c, i=i: MessageLogRepo(c).for_message(f"{mid}-{i}"))  # type: ignore[misc]
        at = dt.datetime.fromtimestamp(1767225600.000001 + i * 1.5, dt.UTC)
        assert got == MessageEvent(f"{mid}-{i}", "delivered", at, t, t, t, t, i + 1, i, t, t, t, t, t), t
    (got,) = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-n"))
    assert got == MessageEvent(f"{mid}-n", "accepted", dt.datetime(2026, 1, 1, tzinfo=dt.UTC), partner="p")
    (got,) = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-d"))
    assert got.event_at == when and got.error == "e"
    (got,) = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-p"))
    assert got.event_at == dt.datetime(2026, 1, 1, 0, 0, 0, 500000, tzinfo=dt.UTC) and got.error == "ok"
    # a replay of both batches (the duplicate path reuses the same COPY text): nothing new
    assert await db.write_log_rows([*rows, nulls, aware, plain]) == 0


async def test_message_log_rows_postgres_refuses_do_not_stall_the_bulk_path(db: Database) -> None:
    # the same protection as for events on the rows path, with rows that need escaping in the same batch
    mid = unique_name("bulkpoison")
    at = 1767225600.25
    good = [_log_row(f"{mid}-{i}", "accepted", at, partner="acme", error="tab\there\\") for i in range(4)]
    nul = _log_row(f"{mid}-0", "delivered", at, error="0\x001", operator_message_id="ab\x00cd")
    surrogate = _log_row(f"{mid}-1", "delivered", at, source_addr="x\udc80y\n")
    assert await db.write_log_rows([*good, nul, surrogate]) == 6
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-0"))
    assert [(r.event, r.error, r.operator_message_id) for r in rows] == [
        ("accepted", "tab\there\\", None),
        ("delivered", "0\ufffd1", "ab\ufffdcd"),
    ]
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-1"))
    assert rows[1].source_addr == "x?y\n"
    assert await db.write_log_rows([*good, nul, surrogate]) == 0
    # rows no cleaning can fix are dropped alone: a number out of range, a NULL in a NOT NULL column,
    # an event_at that is no time, a row of the wrong length
    unfixable = [
        _log_row(f"{mid}-9", "accepted", at, parts=2**40),
        (f"{mid}-10", "accepted", at, None, "", "", "", 1, None, None, None, None, "", None),
        _log_row(f"{mid}-11", "accepted", "yesterday"),
        _log_row(f"{mid}-12", "accepted", float("inf")),
        (f"{mid}-13", "accepted", at),
    ]
    fine = _log_row(f"{mid}-8", "accepted", at, partner="a\\b")
    assert await db.write_log_rows([*unfixable, fine]) == 1
    for i in range(9, 14):
        assert await db.run(lambda c, i=i: MessageLogRepo(c).for_message(f"{mid}-{i}")) == []  # type: ignore[misc]
    rows = await db.run(lambda c: MessageLogRepo(c).for_message(f"{mid}-8"))
    assert [(r.event, r.partner) for r in rows] == [("accepted", "a\\b")]


def test_copy_text_fast_and_escaped_forms_agree() -> None:
    # the one-f-string-per-row text and the value-by-value escaped text are the same for plain rows; the
    # microseconds are rounded as datetime.fromtimestamp rounds them (half to even, negative seconds too)
    rng = random.Random(7)
    ats = [rng.uniform(-2e9, 4e9) for _ in range(3000)]
    ats += [round(rng.uniform(1.7e9, 1.8e9), rng.randint(0, 7)) for _ in range(3000)]
    ats += [0.0, -0.5, -1e-7, 1.9999995, 1767225599.9999996, -62135596800.0, 253402300799.0]
    rows = [
        _log_row(str(i), "accepted", at, partner="acme", status=0, error=None) for i, at in enumerate(ats)
    ]
    fast = repos._copy_text_fast(rows)
    assert fast is not None
    careful = "".join(repos._copy_line(r) for r in rows)
    assert fast == careful == repos.copy_text(rows)
    for line, at in zip(fast.splitlines(), ats, strict=True):
        want = dt.datetime.fromtimestamp(at, dt.UTC)
        assert line.split("\t")[2] == want.replace(tzinfo=None).isoformat(" ", "microseconds") + "+00", at
    # anything not plain takes the escaped path
    for odd in ("a\tb", "a\\b", "a\nb", "a\rb"):
        assert repos._copy_text_fast([_log_row("1", "accepted", 1.0, error=odd)]) is None
    # a None in a NOT NULL column is written as NULL by both forms (Postgres refuses the row: see above)
    for odd_row in (_log_row("1", "accepted", 1.0, partner=None), _log_row("1", "accepted", 1.0, parts=None)):
        assert repos._copy_text_fast([odd_row]) == repos._copy_line(odd_row)
    assert repos.copy_text([_log_row("1", "accepted", 1.0, error="a\tb\\c\nd\re")]).split("\t")[10] == (
        "a\\tb\\\\c\\nd\\re"
    )
