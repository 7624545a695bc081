"""Versioned schema migrations (server/migrations), SQLite side; the PostgreSQL
runner's lock is tested in tests/test_store_postgres.py."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from server import migrations
from server.store import SqliteSessionStore, StoreError
from tests.test_sessions_upgrade import NEW_COLUMNS, OLD_SCHEMA

# What server/store.py created before migrations existed (CREATE IF NOT EXISTS
# plus the conclusions columns): schema version 2 without a record of it.
PRE_MIGRATIONS_SCHEMA = OLD_SCHEMA.replace(
    "    last_active REAL NOT NULL\n",
    "    last_active REAL NOT NULL,\n    conclusions TEXT,\n"
    "    conclusions_version INTEGER,\n    conclusions_kb_version TEXT\n",
)


def recorded(path: Path) -> list[tuple[int, str]]:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT version, name FROM schema_migrations ORDER BY version").fetchall()
    finally:
        db.close()


def columns(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {row[1] for row in db.execute("PRAGMA table_info(sessions)")}
    finally:
        db.close()


def make(path: Path, schema: str) -> None:
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(schema)
    db.execute("INSERT INTO sessions (id, version, created_at, last_active) VALUES ('s', 3, 1, 1)")
    db.close()


ALL = [(1, "0001_initial.sql"), (2, "0002_conclusions_snapshot.sql")]


def test_the_migration_files_are_numbered_and_complete() -> None:
    for kind in ("sqlite", "postgres"):
        known = migrations.load(kind)
        assert [m.version for m in known] == list(range(1, len(known) + 1))
    assert [(m.version, m.name) for m in migrations.load("sqlite")] == ALL
    statements = migrations.sqlite_statements(migrations.load("sqlite")[1].sql)
    assert len(statements) == 3 and all(s.rstrip().endswith(";") for s in statements)


def test_a_new_file_gets_every_migration(tmp_path: Path) -> None:
    SqliteSessionStore(tmp_path / "s.db").close()
    assert recorded(tmp_path / "s.db") == ALL
    assert columns(tmp_path / "s.db") >= NEW_COLUMNS


@pytest.mark.parametrize(
    ("schema", "recognised"), [(OLD_SCHEMA, 1), (PRE_MIGRATIONS_SCHEMA, 2)], ids=["v1", "v2"]
)
def test_files_made_before_migrations_are_recognised(
    tmp_path: Path, schema: str, recognised: int, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "old.db"
    make(path, schema)
    with caplog.at_level(logging.INFO, logger="server.store"):
        store = SqliteSessionStore(path)
    try:
        loaded = store.load("s")
        assert loaded is not None and loaded.version == 3, "its sessions are kept"
    finally:
        store.close()
    assert recorded(path) == ALL
    assert columns(path) >= NEW_COLUMNS
    assert f"recognised schema version {recognised}" in caplog.text
    assert ("schema version 1 -> 2" in caplog.text) == (recognised == 1)
    caplog.clear()
    SqliteSessionStore(path).close()  # up to date: nothing to do, nothing logged
    assert "schema version" not in caplog.text


def test_an_unrecognisable_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "odd.db"
    make(path, OLD_SCHEMA)
    db = sqlite3.connect(path)
    db.execute("ALTER TABLE sessions ADD COLUMN conclusions TEXT")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="unrecognised schema"):
        SqliteSessionStore(path)
    assert "schema_migrations" not in {
        row[0] for row in sqlite3.connect(path).execute("SELECT name FROM sqlite_master")
    }


def test_a_newer_schema_is_used_with_a_warning(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "s.db"
    SqliteSessionStore(path).close()
    db = sqlite3.connect(path)
    db.execute("INSERT INTO schema_migrations VALUES (3, '0003_from_the_future.sql', 0)")
    db.commit()
    db.close()
    with caplog.at_level(logging.WARNING, logger="server.store"):
        store = SqliteSessionStore(path)
    try:
        store.create("s", now=1.0)
    finally:
        store.close()
    assert "has schema version 3; this release knows 2" in caplog.text


def test_processes_opening_an_old_file_together_record_each_migration_once(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    make(path, OLD_SCHEMA)
    barrier = threading.Barrier(6)
    stores: list[SqliteSessionStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            stores.append(SqliteSessionStore(path))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for store in stores:
        store.close()
    assert failures == []
    assert recorded(path) == ALL
