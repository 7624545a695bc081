"""The `SessionStore` contract, against both stores (SQLite file, PostgreSQL).

Each test runs once per store (`store_factory`, tests/conftest.py); the
PostgreSQL runs skip where no server answers on 127.0.0.1:5432, and fail in CI.
Several stores from one factory share one database, as processes or replicas do.
More of the contract, parametrised the same way: tests/test_sessions.py
(conditional commits and fact order; managers sharing a database) and
tests/test_sessions_upgrade.py (the conclusions snapshot).
"""

from __future__ import annotations

import sqlite3
import threading
from collections import Counter
from concurrent import futures
from pathlib import Path
from typing import Any

import pytest

from server.store import (
    SessionLimitReached,
    SessionMissing,
    StaleVersion,
    StoredConclusions,
    StoredFact,
    StoredSession,
    StoreError,
)
from tests.conftest import StoreFactory

REPORT = StoredConclusions("1.0.0", '[{"code": "x"}]')


def fact(fact_id: str, n: Any = 1) -> StoredFact:
    return StoredFact(fact_id, "imaging", {"n": n})


def rows(factory: StoreFactory, statement: str, params: tuple[Any, ...] = ()) -> list[Any]:
    """A query on the factory's database, behind the stores' backs (`?` placeholders)."""
    if factory.kind == "sqlite":  # type: ignore[attr-defined]
        db = sqlite3.connect(Path(factory.location))  # type: ignore[attr-defined]
        try:
            return db.execute(statement, params).fetchall()
        finally:
            db.close()
    from tests import postgres

    return postgres.query(factory.location, statement.replace("?", "%s"), params)  # type: ignore[attr-defined]


def test_lifecycle(store_factory: StoreFactory) -> None:
    store = store_factory()
    assert store.load("s") is None and store.open("s", now=1.0) is None
    assert store.version_of("s") is None
    store.create("s", now=1.0, conclusions=REPORT)
    with pytest.raises(StoreError):
        store.create("s", now=1.0)  # ids are unique
    assert store.load("s") == StoredSession("s", 0, (), REPORT)
    assert store.version_of("s") == 0
    assert store.commit("s", 0, [], [fact("a"), fact("b")], now=2.0, conclusions=REPORT) == 1
    assert store.version_of("s") == 1
    opened = store.open("s", now=3.0)
    assert opened == StoredSession("s", 1, (fact("a"), fact("b")), REPORT)
    assert store.delete("s") is True
    assert store.delete("s") is False
    assert store.load("s") is None and store.open("s", now=4.0) is None
    assert store.version_of("s") is None
    with pytest.raises(SessionMissing):
        store.commit("s", 1, [], [fact("c")], now=5.0)
    assert not store.record_conclusions("s", 1, REPORT)
    store.close()
    with pytest.raises(StoreError):
        store.load("s")


def test_versions_and_conditional_batches(store_factory: StoreFactory) -> None:
    store = store_factory()
    store.create("s", now=1.0)
    assert store.commit("s", 0, [], [fact("a", 1)], now=2.0) == 1
    for stale in (0, 2, 7):
        with pytest.raises(StaleVersion):
            store.commit("s", stale, ["a"], [fact("z")], now=3.0)
    loaded = store.load("s")
    assert loaded is not None and loaded.facts == (fact("a", 1),), "a stale batch changes nothing"
    # Retract and re-assert in one batch: the fact moves last; a replaced one stays.
    assert store.commit("s", 1, [], [fact("b"), fact("c")], now=3.0) == 2
    assert store.commit("s", 2, ["a"], [fact("a", 2), fact("b", 9)], now=4.0) == 3
    loaded = store.load("s")
    assert loaded is not None
    assert loaded.facts == (fact("b", 9), fact("c"), fact("a", 2))
    # An empty batch is a version too.
    assert store.commit("s", 3, [], [], now=5.0) == 4
    assert store.version_of("s") == 4


def test_writers_on_two_stores_one_winner_per_version(store_factory: StoreFactory) -> None:
    """Stores of their own (two processes, two replicas: two connection pools),
    four writers each, all committing on the version they read: each version
    has exactly one winner, and every winner's fact is stored."""
    stores = [store_factory(), store_factory()]
    stores[0].create("s", now=1.0)
    writers, rounds = 8, 12
    barrier = threading.Barrier(writers)
    wins: Counter[int] = Counter()
    lock = threading.Lock()

    def write(index: int) -> None:
        store = stores[index % 2]
        barrier.wait()
        for n in range(rounds):
            version = store.version_of("s")
            try:
                new = store.commit("s", version, [], [fact(f"w{index}-{n}")], now=2.0)
            except StaleVersion:
                continue
            assert new == version + 1
            with lock:
                wins[new] += 1

    with futures.ThreadPoolExecutor(max_workers=writers) as pool:
        list(pool.map(write, range(writers)))
    final = stores[1].load("s")
    assert final is not None
    assert set(wins.values()) == {1}, "exactly one winner per version"
    assert sorted(wins) == list(range(1, final.version + 1))
    assert len(final.facts) == final.version


def test_touch_and_sweep(store_factory: StoreFactory) -> None:
    store, other = store_factory(), store_factory()
    for session_id in ("idle", "streaming", "touched", "opened", "recent"):
        store.create(session_id, now=10.0)
    store.commit("idle", 0, [], [fact("a")], now=10.0)
    store.commit("recent", 0, [], [], now=30.0)  # a commit marks it active
    other.touch(["touched", "nope"], now=30.0)
    assert other.open("opened", now=30.0) is not None
    store.touch(["idle"], now=5.0)  # never moves last_active back
    assert store.sweep(idle_before=20.0, keep={"streaming"}) == 1
    assert {s for s in ("idle", "streaming", "touched", "opened", "recent") if store.load(s)} == {
        "streaming",
        "touched",
        "opened",
        "recent",
    }
    assert rows(store_factory, "SELECT count(*) FROM facts WHERE session_id = 'idle'") == [(0,)]
    assert other.sweep(idle_before=40.0) == 4
    assert other.sweep(idle_before=40.0) == 0


def test_delete_erases_facts_and_report(store_factory: StoreFactory) -> None:
    store = store_factory()
    secret = StoredConclusions("1.0.0", '["SENTINEL-REPORT"]')
    for session_id in ("gone", "kept"):
        store.create(session_id, now=1.0, conclusions=secret)
        store.commit(session_id, 0, [], [fact("f", "SENTINEL-FACT")], now=2.0, conclusions=secret)
    assert store.delete("gone")
    assert rows(store_factory, "SELECT id FROM sessions") == [("kept",)]
    assert rows(store_factory, "SELECT session_id FROM facts") == [("kept",)]
    kept = store.load("kept")
    assert (
        kept is not None
        and kept.conclusions == secret
        and kept.facts == (fact("f", "SENTINEL-FACT"),)
    )


def test_resume_after_restart(store_factory: StoreFactory) -> None:
    first = store_factory()
    first.create("s", now=1.0)
    first.commit("s", 0, [], [fact("a"), fact("b")], now=2.0, conclusions=REPORT)
    first.close()
    again = store_factory()  # a restarted server: the schema is there, nothing migrates
    assert again.open("s", now=3.0) == StoredSession("s", 1, (fact("a"), fact("b")), REPORT)
    assert again.commit("s", 1, ["a"], [], now=4.0) == 2
    assert rows(store_factory, "SELECT version, name FROM schema_migrations ORDER BY version")[-1][
        0
    ] == (2 if store_factory.kind == "sqlite" else 1)  # type: ignore[attr-defined]


def test_create_refuses_past_the_session_limit(store_factory: StoreFactory) -> None:
    """Issue 14, item 6: `max_sessions` caps the live sessions; a refused create
    writes nothing; expired sessions (last active before `idle_before`, not swept
    yet) do not count; resuming is never capped; an erasure makes room."""
    store = store_factory()
    store.create("old", now=10.0)  # idle since 10: expired at 100 - 50
    store.create("a", now=60.0, max_sessions=2, idle_before=10.0)
    store.create("b", now=100.0, max_sessions=2, idle_before=50.0)  # "old" does not count
    with pytest.raises(SessionLimitReached) as refused:
        store.create("c", now=100.0, conclusions=REPORT, max_sessions=2, idle_before=50.0)
    assert refused.value.limit == 2 and "2" in str(refused.value)
    assert store.load("c") is None and store.version_of("c") is None
    assert rows(store_factory, "SELECT id FROM sessions ORDER BY id") == [("a",), ("b",), ("old",)]
    # Without a limit nothing is counted (the store's own default).
    store.create("unlimited", now=100.0)
    assert store.delete("unlimited")
    # Resuming, even an expired session, is never refused; it is then live again.
    assert store.open("old", now=100.0) is not None
    assert store.commit("a", 0, [], [fact("x")], now=100.0) == 1
    with pytest.raises(SessionLimitReached):
        store.create("c", now=100.0, max_sessions=3, idle_before=50.0)
    # Time passing expires sessions; deleting one makes room at once.
    store.create("c", now=200.0, max_sessions=2, idle_before=150.0)
    with pytest.raises(SessionLimitReached):
        store.create("d", now=200.0, max_sessions=1, idle_before=150.0)
    assert store.delete("c")
    store.create("d", now=200.0, max_sessions=1, idle_before=150.0)
    other = store_factory()  # another process or replica counts the same sessions
    with pytest.raises(SessionLimitReached):
        other.create("e", now=200.0, max_sessions=1, idle_before=150.0)
    assert other.sweep(idle_before=150.0) == 3  # "old", "a", "b"
    other.create("e", now=200.0, max_sessions=2, idle_before=-1.0)  # all count: "d", "e"
    assert {s for s in "abcde" if store.load(s)} == {"d", "e"}


def test_the_session_limit_holds_for_stores_creating_at_once(store_factory: StoreFactory) -> None:
    """Two stores (two processes, or two replicas: connection pools of their
    own), eight creators each, all released at once: exactly `limit` sessions
    are created, never more (the count and the insert are one atomic step)."""
    stores = [store_factory(), store_factory()]
    stores[0].create("existing", now=1.0)
    limit, creators, attempts = 7, 16, 3
    barrier = threading.Barrier(creators)

    def create(index: int) -> list[str]:
        store = stores[index % 2]
        created = []
        barrier.wait()
        for n in range(attempts):
            session_id = f"s{index}-{n}"
            try:
                store.create(session_id, now=2.0, max_sessions=limit, idle_before=0.0)
            except SessionLimitReached:
                continue
            created.append(session_id)
        return created

    with futures.ThreadPoolExecutor(max_workers=creators) as pool:
        created = [session_id for ids in pool.map(create, range(creators)) for session_id in ids]
    assert len(created) == limit - 1, "one of the limit is the existing session"
    stored = {session_id for (session_id,) in rows(store_factory, "SELECT id FROM sessions")}
    assert stored == {"existing", *created}
