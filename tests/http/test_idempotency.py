"""The Idempotency-Key store on a real Postgres: claim / replay / conflict / in flight, forget, the 24 h TTL,
and two connections racing for one key (exactly one claims it)."""

from __future__ import annotations

import threading
from typing import Any

import psycopg

from catalyst_smpp.http.idempotency import (
    Claimed,
    Conflict,
    InFlight,
    Replay,
    claim,
    complete,
    forget,
    purge,
)
from catalyst_smpp.store import Database
from tests.services import unique_name


def _conn(db: Database) -> psycopg.Connection[Any]:
    return db.connect_sync(autocommit=True)


async def test_claim_replay_conflict_inflight(db: Database) -> None:
    key = unique_name("k")
    with _conn(db) as c:
        assert claim(c, "acme", key, "h1") == Claimed()
        assert claim(c, "acme", key, "h1") == InFlight()  # the first one still runs
        assert claim(c, "acme", key, "h2") == Conflict()  # another body under the same key
        assert claim(c, "other", key, "h2") == Claimed()  # keys are per partner
        complete(c, "acme", key, 202, {"messages": [{"id": "1f"}]})
        assert claim(c, "acme", key, "h1") == Replay(202, {"messages": [{"id": "1f"}]})
        assert claim(c, "acme", key, "h2") == Conflict()
        forget(c, "acme", key)  # a done key is not forgotten: only a pending claim is
        assert claim(c, "acme", key, "h1") == Replay(202, {"messages": [{"id": "1f"}]})


async def test_forget_allows_a_retry(db: Database) -> None:
    key = unique_name("k")
    with _conn(db) as c:
        assert claim(c, "acme", key, "h1") == Claimed()
        forget(c, "acme", key)
        assert claim(c, "acme", key, "h1") == Claimed()


async def test_keys_older_than_the_ttl_are_never_replayed_and_purged(db: Database) -> None:
    old, fresh = unique_name("k"), unique_name("k")
    with _conn(db) as c:
        for k in (old, fresh):
            assert claim(c, "acme", k, "h1") == Claimed()
            complete(c, "acme", k, 200, {"ok": k})
        c.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = %s", (old,)
        )
        # an expired key is taken over by the next request, whatever its body
        assert claim(c, "acme", old, "h2") == Claimed()
        c.execute(
            "UPDATE idempotency_keys SET created_at = now() - interval '25 hours' WHERE key = %s", (old,)
        )
        assert purge(c) >= 1
        assert c.execute("SELECT count(*) FROM idempotency_keys WHERE key = %s", (old,)).fetchone() == (0,)
        assert claim(c, "acme", fresh, "h1") == Replay(200, {"ok": fresh})


async def test_two_connections_racing_for_a_key_exactly_one_claims_it(db: Database) -> None:
    for _round in range(20):
        key = unique_name("race")
        results: list[Any] = []
        barrier = threading.Barrier(2)
        conns = [db.connect_sync(autocommit=False) for _ in range(2)]

        def run(
            c: psycopg.Connection[Any], key: str = key, barrier: Any = barrier, results: list[Any] = results
        ) -> None:
            barrier.wait()
            with c.transaction():
                results.append(claim(c, "acme", key, "h1"))

        threads = [threading.Thread(target=run, args=(c,)) for c in conns]
        for t in threads:
            t.start()
        for t in threads:
            t.join(10)
        for c in conns:
            c.close()
        assert sorted(type(r).__name__ for r in results) == ["Claimed", "InFlight"], results


async def test_a_second_claim_waits_for_the_first_transaction(db: Database) -> None:
    """The first claim's transaction not committed yet: the second waits on the key, then sees it (not a
    second Claimed, not an error)."""
    key = unique_name("k")
    first, second = db.connect_sync(autocommit=False), db.connect_sync(autocommit=False)
    try:
        with first.transaction():
            assert claim(first, "acme", key, "h1") == Claimed()
            out: list[Any] = []
            t = threading.Thread(target=lambda: out.append(claim(second, "acme", key, "h1")))
            t.start()
            t.join(0.5)
            assert t.is_alive()  # blocked on the uncommitted row
            complete(first, "acme", key, 201, [1, 2])
        t.join(10)
        second.commit()
        assert out == [Replay(201, [1, 2])]
    finally:
        first.close()
        second.close()
