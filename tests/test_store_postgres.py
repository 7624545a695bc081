"""The PostgreSQL session store: what SQLite cannot show (issue 11).

PostgreSQL 15 on 127.0.0.1:5432 (trust authentication, role root); each test
makes and drops its own database (`cds_test_<random>`). Without a server these
tests skip with one line saying how to run them; in CI (`CI=true`) they fail.
The store contract both stores share is in tests/test_store_contract.py.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import psycopg
import pytest

from client.api import BatchApplied, BatchRejected, CdsClient, Conclusion
from server.store import (
    SessionMissing,
    StaleVersion,
    StoredConclusions,
    StoredFact,
    StoreError,
    StoreUnavailable,
)
from server.store_postgres import (
    APPLICATION_NAME,
    MIGRATION_LOCK,
    NOTIFY_CHANNEL,
    SWEEP_LOCK,
    PostgresSessionStore,
    redacted,
)
from tests import postgres
from tests.test_sessions_process import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
POTS = json.loads((ROOT / "examples" / "pots-mimic.json").read_text())["facts"]
REPORT = StoredConclusions("1.0.0", '["SENTINEL-REPORT-6d1f"]')


def fact(fact_id: str, n: Any = 1) -> StoredFact:
    return StoredFact(fact_id, "imaging", {"n": n})


@pytest.fixture
def stores(pg_url: str) -> Iterator[list[PostgresSessionStore]]:
    """Stores opened with `store(...)` in a test are closed after it."""
    opened: list[PostgresSessionStore] = []
    yield opened
    for store in opened:
        store.close()


def open_store(
    opened: list[PostgresSessionStore], url: str, **options: Any
) -> PostgresSessionStore:
    options = {"timeout": 2.0, "retry_seconds": 0.2, **options}
    store = PostgresSessionStore(url, **options)
    opened.append(store)
    return store


# ---------------------------------------------------------------- durability and URLs


def test_synchronous_commit_is_on_whatever_the_database_says(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    name = postgres.database_name(pg_url)
    postgres.query(
        postgres.url("postgres"), f'ALTER DATABASE "{name}" SET synchronous_commit = off'
    )
    assert postgres.query(pg_url, "SHOW synchronous_commit") == [("off",)]
    store = open_store(stores, pg_url)
    with store._connection() as connection:
        assert connection.execute("SHOW synchronous_commit").fetchone() == ("on",)
        assert connection.execute("SHOW application_name").fetchone() == (APPLICATION_NAME,)


def test_urls_are_logged_without_their_password() -> None:
    assert redacted("postgresql://cds:s3cret@db.example:5432/cds?sslmode=require") == (
        "postgresql://cds:***@db.example:5432/cds?sslmode=require"
    )
    assert redacted("postgres://db/cds?user=cds&password=s3cret&x=1") == (
        "postgres://db/cds?user=cds&password=***&x=1"
    )
    assert redacted("postgresql://root@127.0.0.1:5432/db") == "postgresql://root@127.0.0.1:5432/db"
    with pytest.raises(ValueError) as raised:
        PostgresSessionStore("postgresql://u:s3cret@[bad")
    assert "s3cret" not in str(raised.value)


# ---------------------------------------------------------------- writers


WRITER = """
import json, pathlib, sys, time
from server.store import StaleVersion, StoredFact
from server.store_postgres import PostgresSessionStore
url, name, folder, target = sys.argv[1], sys.argv[2], pathlib.Path(sys.argv[3]), int(sys.argv[4])
store = PostgresSessionStore(url)
store.version_of("s")  # connected before the start
(folder / name).touch()
while not (folder / "go").exists():  # both writers start together, however slow their start-up
    time.sleep(0.001)
wins, stale = [], 0
while True:
    version = store.version_of("s")
    if version >= target:
        break
    try:
        item = StoredFact(f"{name}{version}", "imaging", {})
        wins.append(store.commit("s", version, [], [item], 1.0))
    except StaleVersion:
        stale += 1
store.close()
print(json.dumps({"wins": wins, "stale": stale}))
"""


def test_two_processes_commit_on_one_session_one_winner_per_version(
    pg_url: str, stores: list[PostgresSessionStore], tmp_path: Path
) -> None:
    store = open_store(stores, pg_url)
    store.create("s", now=1.0)
    target = 150
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, pg_url, name, str(tmp_path), str(target)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        for name in ("a", "b")
    ]
    deadline = time.monotonic() + 60
    while not all((tmp_path / name).exists() for name in ("a", "b")):
        assert time.monotonic() < deadline and all(p.poll() is None for p in processes)
        time.sleep(0.01)
    (tmp_path / "go").touch()
    results = [json.loads(process.communicate(timeout=60)[0]) for process in processes]
    assert all(process.returncode == 0 for process in processes)
    wins = Counter(version for result in results for version in result["wins"])
    assert sorted(wins) == list(range(1, target + 1)) and set(wins.values()) == {1}
    assert sum(result["stale"] for result in results) > 0, "they did race"
    stored = store.load("s")
    assert stored is not None and stored.version == target and len(stored.facts) == target


# ---------------------------------------------------------------- sweep


def test_one_replica_sweeps_at_a_time(pg_url: str, stores: list[PostgresSessionStore]) -> None:
    store = open_store(stores, pg_url)
    store.create("idle", now=1.0)
    with psycopg.connect(pg_url) as other_replica:  # a transaction: holds the lock
        other_replica.execute("SELECT pg_advisory_xact_lock(%s)", (SWEEP_LOCK,))
        assert store.sweep(idle_before=10.0) == 0, "another replica is sweeping"
        assert store.version_of("idle") == 0
    assert store.sweep(idle_before=10.0) == 1
    assert store.version_of("idle") is None


def test_sweeps_on_two_replicas_at_once_erase_each_session_once(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    replicas = [open_store(stores, pg_url), open_store(stores, pg_url)]
    for n in range(50):
        replicas[0].create(f"idle{n}", now=1.0)
    replicas[0].create("active", now=20.0)
    barrier = threading.Barrier(2)

    def sweep(store: PostgresSessionStore) -> int:
        barrier.wait()
        return store.sweep(idle_before=10.0)

    with futures.ThreadPoolExecutor(max_workers=2) as pool:
        counts = list(pool.map(sweep, replicas))
    assert sum(counts) == 50
    assert postgres.query(pg_url, "SELECT id FROM sessions") == [("active",)]


# ---------------------------------------------------------------- erasure


def _vacuums(url: str) -> dict[str, tuple[int, int]]:
    rows = postgres.query(
        url,
        "SELECT relname, vacuum_count, n_dead_tup FROM pg_stat_user_tables"
        " WHERE relname IN ('facts', 'sessions')",
    )
    return {name: (int(count), int(dead)) for name, count, dead in rows}


def test_delete_erases_and_vacuums(pg_url: str, stores: list[PostgresSessionStore]) -> None:
    store = open_store(stores, pg_url)
    for session_id in ("gone", "kept"):
        store.create(session_id, now=1.0, conclusions=REPORT)
        store.commit(
            session_id, 0, [], [fact("sentinel-fact", "SENTINEL-VALUE-91827")], 2.0, REPORT
        )
    before = _vacuums(pg_url)
    assert store.delete("gone")
    assert postgres.query(pg_url, "SELECT id FROM sessions") == [("kept",)]
    assert postgres.query(pg_url, "SELECT session_id FROM facts") == [("kept",)]
    after = _vacuums(pg_url)
    for table in ("facts", "sessions"):
        assert after[table][0] > before.get(table, (0, 0))[0], f"{table} was vacuumed"
        assert after[table][1] == 0, f"no dead row versions left in {table}"
    # A sweep vacuums too.
    store.commit("kept", 1, [], [], now=3.0)
    before = _vacuums(pg_url)
    assert store.sweep(idle_before=10.0) == 1
    after = _vacuums(pg_url)
    assert all(after[table][0] > before[table][0] for table in ("facts", "sessions"))
    assert postgres.query(pg_url, "SELECT count(*) FROM facts") == [(0,)]


def test_concurrent_deletes_share_vacuums(pg_url: str, stores: list[PostgresSessionStore]) -> None:
    store = open_store(stores, pg_url)
    for n in range(12):
        store.create(f"s{n}", now=1.0)
    before = _vacuums(pg_url)["facts"][0]
    with futures.ThreadPoolExecutor(max_workers=12) as pool:
        with store._vacuum_lock:  # a VACUUM in progress while all 12 commit
            deletes = [pool.submit(store.delete, f"s{n}") for n in range(12)]
            deadline = time.monotonic() + 10
            while postgres.query(pg_url, "SELECT count(*) FROM sessions") != [(0,)]:
                assert time.monotonic() < deadline
                time.sleep(0.05)
        assert all(delete.result(timeout=10) for delete in deletes)
    assert _vacuums(pg_url)["facts"][0] - before == 1, "one VACUUM covered all 12"


# ---------------------------------------------------------------- change signal


@contextmanager
def listening(url: str) -> Iterator[psycopg.Connection[Any]]:
    with psycopg.connect(url, autocommit=True) as connection:
        connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
        yield connection


def received(connection: psycopg.Connection[Any], seconds: float = 0.5) -> list[str]:
    return [
        notify.payload
        for notify in connection.notifies(timeout=seconds)
        if notify.channel == NOTIFY_CHANNEL
    ]


def test_commits_notify_id_and_version_and_rollbacks_do_not(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    store = open_store(stores, pg_url)
    store.create("s", now=1.0)
    store.create("idle", now=1.0)
    with listening(pg_url) as listener:
        assert store.commit("s", 0, [], [fact("a")], now=20.0, conclusions=REPORT) == 1
        assert received(listener) == ["s:1"]
        with pytest.raises(StaleVersion):
            store.commit("s", 0, [], [fact("b")], now=20.0)  # rolled back
        with pytest.raises(SessionMissing):
            store.commit("nope", 0, [], [fact("b")], now=20.0)
        assert not store.record_conclusions("s", 0, REPORT)
        assert received(listener) == [], "nothing is signalled for what did not commit"
        assert store.record_conclusions("s", 1, REPORT)  # not a new version
        store.touch(["s"], now=30.0)
        assert received(listener) == []
        assert store.commit("s", 1, ["a"], [], now=30.0) == 2
        assert store.delete("s")
        assert store.sweep(idle_before=10.0) == 1
        assert received(listener) == ["s:2", "s:-1", "idle:-1"]
    assert store.version_of("s") is None


# ---------------------------------------------------------------- migrations


def test_migrations_wait_for_the_advisory_lock(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    opened: list[PostgresSessionStore] = []
    with psycopg.connect(pg_url, autocommit=True) as other_replica:
        other_replica.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        starting = threading.Thread(target=lambda: opened.append(open_store(stores, pg_url)))
        starting.start()
        starting.join(1.5)
        assert starting.is_alive(), "the store waits while another replica migrates"
        assert postgres.query(pg_url, "SELECT to_regclass('sessions')") == [(None,)]
        other_replica.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        starting.join(10)
    assert not starting.is_alive() and opened[0]._schema_ready
    opened[0].create("s", now=1.0)


def test_replicas_starting_together_migrate_once(
    pg_url: str, stores: list[PostgresSessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    barrier = threading.Barrier(6)

    def start(_: int) -> PostgresSessionStore:
        barrier.wait()
        return open_store(stores, pg_url)

    with (
        caplog.at_level(logging.INFO, logger="server.store_postgres"),
        futures.ThreadPoolExecutor(max_workers=6) as pool,
    ):
        started = list(pool.map(start, range(6)))
    assert all(store._schema_ready for store in started), "every one found the schema ready"
    assert not [r for r in caplog.records if r.levelno >= logging.WARNING], caplog.text
    assert sum("schema migrated" in r.getMessage() for r in caplog.records) == 1
    assert postgres.query(pg_url, "SELECT version, name FROM schema_migrations") == [
        (1, "0001_initial.sql")
    ]
    started[0].create("s", now=1.0)
    assert started[5].version_of("s") == 0


# ---------------------------------------------------------------- connection failures


def test_killed_idle_connections_cost_nothing(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    store = open_store(stores, pg_url)
    store.create("s", now=1.0)
    assert postgres.terminate_backends(pg_url) >= 1
    assert store.commit("s", 0, [], [fact("a")], now=2.0) == 1  # a checked, fresh connection


def test_connection_killed_mid_batch_is_unavailable_and_commits_nothing(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    store = open_store(stores, pg_url)
    store.create("s", now=1.0)
    outcome: list[BaseException | int] = []

    def commit() -> None:
        try:
            outcome.append(store.commit("s", 0, [], [fact("a")], now=2.0))
        except BaseException as error:
            outcome.append(error)

    with psycopg.connect(pg_url) as blocker:
        blocker.execute("SELECT 1 FROM sessions WHERE id = 's' FOR UPDATE")
        writer = threading.Thread(target=commit)
        writer.start()
        deadline = time.monotonic() + 10
        while not (
            waiting := postgres.query(
                pg_url,
                "SELECT pid FROM pg_stat_activity WHERE application_name = %s"
                " AND wait_event_type = 'Lock'",
                (APPLICATION_NAME,),
            )
        ):
            assert time.monotonic() < deadline, "the batch never waited for the row"
            time.sleep(0.05)
        postgres.query(pg_url, "SELECT pg_terminate_backend(%s)", (waiting[0][0],))
        writer.join(10)
    assert len(outcome) == 1 and isinstance(outcome[0], StoreUnavailable), outcome
    assert store.version_of("s") == 0, "nothing of the batch was committed"
    assert store.commit("s", 0, [], [fact("a")], now=3.0) == 1


def test_server_unreachable_then_back_recovers_without_a_new_store(
    pg_url: str, stores: list[PostgresSessionStore]
) -> None:
    store = open_store(stores, pg_url, timeout=2.0, retry_seconds=0.5)
    store.create("s", now=1.0)
    store.commit("s", 0, [], [fact("a")], now=2.0)
    postgres.allow_connections(pg_url, False)
    try:
        postgres.terminate_backends(pg_url)
        started = time.monotonic()
        with pytest.raises(StoreUnavailable):
            store.commit("s", 1, [], [fact("b")], now=3.0)
        assert time.monotonic() - started < 10, "within the connection timeout"
        started = time.monotonic()
        for call in (lambda: store.load("s"), lambda: store.create("t", now=3.0)):
            with pytest.raises(StoreUnavailable):
                call()
        assert time.monotonic() - started < 1.0, "while it is down, calls fail at once"
    finally:
        postgres.allow_connections(pg_url, True)
    deadline = time.monotonic() + 15
    while True:
        try:
            version = store.commit("s", 1, [], [fact("b")], now=4.0)
            break
        except StoreUnavailable:
            assert time.monotonic() < deadline, "the store did not recover"
            time.sleep(0.2)
    assert version == 2
    loaded = store.load("s")
    assert loaded is not None and [f.id for f in loaded.facts] == ["a", "b"]


def test_a_database_missing_at_start_up_is_migrated_once_it_exists(
    stores: list[PostgresSessionStore], caplog: pytest.LogCaptureFixture
) -> None:
    name = f"cds_test_late_{os.getpid()}_{time.monotonic_ns() % 10**6}"
    url = postgres.url(name)
    with caplog.at_level(logging.ERROR, logger="server.store_postgres"):
        store = open_store(stores, url, retry_seconds=0.2)
    assert f"cannot reach the session database {url}" in caplog.text
    with pytest.raises(StoreError):
        store.load("s")
    postgres.query(postgres.url("postgres"), f'CREATE DATABASE "{name}"')
    try:
        time.sleep(0.3)
        store.create("s", now=1.0)
        assert store.version_of("s") == 0
        assert postgres.query(url, "SELECT version FROM schema_migrations") == [(1,)]
    finally:
        store.close()
        postgres.query(postgres.url("postgres"), f'DROP DATABASE "{name}" WITH (FORCE)')


# ---------------------------------------------------------------- real servers


@contextmanager
def server_process(url: str, workers: int = 2) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    port = free_port()
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--port",
            str(port),
            "--workers",
            str(workers),
            "--session-db",
            url,
            "--grace",
            "5",
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )
    try:
        wait_until_serving(f"127.0.0.1:{port}", process)
        yield process, f"127.0.0.1:{port}"
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def test_server_with_two_workers_on_postgres(pg_url: str) -> None:
    """`python -m server --workers 2 --session-db postgresql://...`: each reconnect
    may land on either worker; versions and facts hold, nothing on disk here."""
    with server_process(pg_url) as (_, target):
        with CdsClient(target, timeout=10) as cds, cds.session() as session:
            session_id = session.session_id
            assert isinstance(session.apply(POTS[:1]).outcome, BatchApplied)
        for index, item in enumerate(POTS[1:], start=2):
            with CdsClient(target, timeout=10) as cds, cds.session(session_id) as resumed:
                assert resumed.version == index - 1
                result = resumed.apply([item])
                assert isinstance(result.outcome, BatchApplied)
                assert result.outcome.version == index
        with CdsClient(target, timeout=10) as cds, cds.session(session_id) as resumed:
            oracle = {e.code for e in cds.evaluate(POTS) if isinstance(e, Conclusion)}
            assert set(resumed.conclusions) == oracle
    assert postgres.query(pg_url, "SELECT version FROM sessions WHERE id = %s", (session_id,)) == [
        (len(POTS),)
    ]
    assert not Path(ROOT, "postgresql:").exists(), "no SQLite file named after the URL"


def test_two_replicas_share_sessions(pg_url: str) -> None:
    """Two servers on one database: resume on the other, one winner per version
    for conditional batches sent to both at once, and a replica killed right
    after BatchApplied loses nothing."""
    with (
        server_process(pg_url, 1) as (a, target_a),
        server_process(pg_url, 1) as (_, target_b),
        CdsClient(target_a, timeout=10) as cds_a,
        CdsClient(target_b, timeout=10) as cds_b,
    ):
        with cds_a.session() as on_a:
            assert on_a.apply(POTS[:1]).applied
        with cds_b.session(on_a.session_id) as on_b:
            assert on_b.version == 1
            assert on_b.apply(POTS[1:2]).applied and on_b.version == 2
        for version in range(2, 6):
            with cds_a.session(on_a.session_id) as x, cds_b.session(on_a.session_id) as y:
                barrier = threading.Barrier(2)

                def send(session: Any, n: int, v: int = version, barrier: Any = barrier) -> Any:
                    fields = {"modality": "ct", "region": "brain", "finding": "normal"}
                    barrier.wait()
                    item = {"id": f"i{v}-{n}", "type": "imaging", "fields": fields}
                    return session.apply([item], expected_version=v).outcome

                with futures.ThreadPoolExecutor(max_workers=2) as pool:
                    outcomes = list(pool.map(send, (x, y), (0, 1)))
            kinds = sorted(type(outcome).__name__ for outcome in outcomes)
            assert kinds == ["BatchApplied", "BatchRejected"], outcomes
            rejected = next(o for o in outcomes if isinstance(o, BatchRejected))
            assert rejected.reason == "VERSION_CONFLICT"
        with cds_a.session(on_a.session_id) as last:
            result = last.apply(POTS[2:3])
            assert isinstance(result.outcome, BatchApplied) and result.outcome.version == 7
            os.killpg(a.pid, signal.SIGKILL)  # right after BatchApplied
        with cds_b.session(on_a.session_id) as survivor:
            assert survivor.version == 7, "everything acknowledged on A is there on B"
    stored = postgres.query(
        pg_url, "SELECT count(*) FROM facts WHERE session_id = %s", (on_a.session_id,)
    )
    assert stored == [(3 + 4,)]
