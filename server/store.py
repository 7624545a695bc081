"""Durable session storage: the `SessionStore` interface and its SQLite implementation.

A session is its facts and a version (the number of applied batches). Its
conclusions are always derived again from the facts with whatever knowledge
base is loaded; next to the facts the store keeps only what the session last
*reported* (`StoredConclusions`: a JSON document and the knowledge-base version
that derived it), so that after a knowledge-base upgrade the server can tell a
resuming client what changed. The store knows nothing clinical: a fact is an
id, a type and its validated fields as JSON, and the reported conclusions are
one JSON document it never reads.

A snapshot belongs to one version of the session: `commit` writes it in the
same transaction as the facts, `record_conclusions` only while the session is
still at the version it names, and a snapshot left behind at an older version
(a commit that wrote none) is never returned. Database files created before
snapshots existed gain the columns on open (`ALTER TABLE`); their sessions
simply have no snapshot until they next report one.

Concurrency is optimistic and lives in the database, not in this process:
`commit` applies a batch only if the session is still at the version the
caller read (`StaleVersion` otherwise), inside one `BEGIN IMMEDIATE`
transaction. Several server processes may therefore share one database file;
each also serializes its own writers per session (see `server.sessions`).

SQLite settings, and why:

- `journal_mode=WAL`: readers never block the writer, and a commit is one
  append to the log.
- `synchronous=FULL`: a commit returns only once the log is on disk, so a
  batch acknowledged to a client survives SIGKILL and power loss.
- `secure_delete=ON` plus `wal_checkpoint(TRUNCATE)` after an erasure: deleted
  rows are overwritten with zeros, the zeroed pages are copied into the main
  file and the log (which still holds the old pages) is truncated, so erased
  facts and reported conclusions are no longer readable anywhere in the
  database files.
- `busy_timeout`: a writer in another process makes us wait, not fail.

Nothing here logs a fact, a field value or a conclusion.
"""

from __future__ import annotations

import json
import logging
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
CHECKPOINT_ATTEMPTS = 20
CHECKPOINT_RETRY_SECONDS = 0.01

# `conclusions*`: what the session last reported (see `StoredConclusions`), all
# NULL for none. Files made before these columns existed get them from _COLUMNS.
_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_active REAL NOT NULL,
    conclusions TEXT,
    conclusions_version INTEGER,
    conclusions_kb_version TEXT
);
CREATE INDEX IF NOT EXISTS sessions_by_last_active ON sessions (last_active);
CREATE TABLE IF NOT EXISTS facts (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    fact_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    type TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (session_id, fact_id)
);
"""
# Columns added after the first release: (table, column, declaration), in order.
_COLUMNS = (
    ("sessions", "conclusions", "TEXT"),
    ("sessions", "conclusions_version", "INTEGER"),
    ("sessions", "conclusions_kb_version", "TEXT"),
)


class StoreError(Exception):
    """The store could not complete an operation (I/O, lock timeout, closed store)."""


class SessionMissing(StoreError):
    """The session does not exist (never created, deleted or expired)."""


class StaleVersion(StoreError):
    """The session moved on since it was read: another writer committed first."""


@dataclass(frozen=True)
class StoredFact:
    """A validated fact as stored: `fields` is plain JSON (no nulls)."""

    id: str
    type: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class StoredConclusions:
    """The conclusions a session last reported, and the knowledge base that derived them.

    `document` is JSON the store keeps as it is given and never interprets
    (`server.sessions` writes and reads it). It is health data, erased with
    the session.
    """

    knowledge_base_version: str
    document: str


@dataclass(frozen=True)
class StoredSession:
    """A session as read in one consistent snapshot; facts in session order.

    `conclusions` is what the session last reported at `version`; None when
    it has reported nothing at this version (a session stored before the store
    kept snapshots, or last committed without one).
    """

    id: str
    version: int
    facts: tuple[StoredFact, ...]
    conclusions: StoredConclusions | None = None


class SessionStore(Protocol):
    """What the session service needs from a database.

    Fact order: `commit` keeps an updated fact in its place and appends new
    ones in the order given; `load` returns facts in that order. Every method
    is safe to call from any thread, and from several processes on one database.
    """

    def create(
        self, session_id: str, now: float, conclusions: StoredConclusions | None = None
    ) -> None:
        """Create an empty session at version 0, with what it reports at version 0."""

    def open(self, session_id: str, now: float) -> StoredSession | None:
        """Mark the session active at `now` and return it; None if it does not exist."""

    def load(self, session_id: str) -> StoredSession | None:
        """The session as it is now; None if it does not exist."""

    def commit(
        self,
        session_id: str,
        base_version: int,
        retract: Sequence[str],
        upsert: Sequence[StoredFact],
        now: float,
        conclusions: StoredConclusions | None = None,
    ) -> int:
        """Apply one batch atomically and durably; return the new version.

        Deletes `retract`, then inserts or replaces `upsert`, and stores
        `conclusions` as what the session reports at the new version (None:
        nothing). Raises `StaleVersion` unless the session is still at
        `base_version`, `SessionMissing` if it no longer exists.
        """

    def record_conclusions(
        self, session_id: str, version: int, conclusions: StoredConclusions
    ) -> bool:
        """Store what the session reports at `version`, if it is still at `version`.

        Does not change the version (it counts batches). False, and nothing
        written, when the session moved on or no longer exists: whoever moved
        it stored its own snapshot.
        """

    def touch(self, session_ids: Collection[str], now: float) -> None:
        """Mark sessions active (those with an open stream)."""

    def delete(self, session_id: str) -> bool:
        """Erase the session, its facts and its conclusions for good; False if it did not exist."""

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        """Erase sessions last active before `idle_before`, except `keep`; return how many."""

    def close(self) -> None:
        """Release connections; later calls raise `StoreError`."""


def _dumps(fields: Mapping[str, Any]) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _columns(
    conclusions: StoredConclusions | None, version: int
) -> tuple[str | None, str | None, int | None]:
    """The `conclusions*` column values for a snapshot reported at `version`."""
    if conclusions is None:
        return None, None, None
    return conclusions.document, conclusions.knowledge_base_version, version


class SqliteSessionStore:
    """`SessionStore` on one SQLite file, with a small pool of connections.

    A connection is used by one thread at a time (taken from the pool for one
    operation, then returned), so the store is safe under gRPC's thread pool.
    """

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _closed against connections coming back
        self._closed = False
        self._checkpoint_pending = False
        self._prepare_file()
        with self._connection() as db:
            db.executescript(_SCHEMA)
        self._migrate()

    def _migrate(self) -> None:
        """Add the columns a database file made by an older release lacks.

        Checked again inside one write transaction, so processes opening an
        old file together add each column exactly once.
        """
        with self._connection() as db:
            if not self._missing_columns(db):
                return
        with self._write() as db:
            missing = self._missing_columns(db)
            for table, column, declaration in missing:
                db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {declaration}")
        if missing:
            log.info("session database %s: added %d column(s)", self.path, len(missing))

    @staticmethod
    def _missing_columns(db: sqlite3.Connection) -> list[tuple[str, str, str]]:
        present: dict[str, set[str]] = {}
        for table, _, _ in _COLUMNS:
            if table not in present:
                rows = db.execute(f"PRAGMA table_info({table})").fetchall()
                present[table] = {row[1] for row in rows}
        return [entry for entry in _COLUMNS if entry[1] not in present[entry[0]]]

    def _prepare_file(self) -> None:
        """Create the folder and the file readable by this user only (health data)."""
        folder = self.path.parent
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)  # workers race here
        if not self.path.exists():
            os.close(os.open(self.path, os.O_CREAT | os.O_WRONLY, 0o600))

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self.path, isolation_level=None, check_same_thread=False, timeout=BUSY_TIMEOUT_MS / 1e3
        )
        try:
            mode = self._wal(db)
        except BaseException:
            db.close()
            raise
        if str(mode).lower() != "wal":
            db.close()
            raise StoreError(f"the session database cannot use WAL mode (got {mode})")
        for pragma in (
            "PRAGMA synchronous=FULL",
            "PRAGMA secure_delete=ON",
            "PRAGMA foreign_keys=ON",
            f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
        ):
            db.execute(pragma)
        return db

    @staticmethod
    def _wal(db: sqlite3.Connection) -> str:
        """`PRAGMA journal_mode=WAL`, retried while another process holds the file.

        Switching a new file to WAL does not wait on `busy_timeout`: processes
        opening one database together (workers starting) would otherwise fail.
        """
        deadline = time.monotonic() + BUSY_TIMEOUT_MS / 1e3
        while True:
            try:
                return str(db.execute("PRAGMA journal_mode=WAL").fetchone()[0])
            except sqlite3.OperationalError as error:
                if "locked" not in str(error) or time.monotonic() > deadline:
                    raise
                time.sleep(CHECKPOINT_RETRY_SECONDS)

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        if self._closed:
            raise StoreError("the session store is closed")
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            try:
                db = self._connect()
            except sqlite3.Error as error:
                raise StoreError(f"cannot open the session database: {error}") from error
        try:
            yield db
        except sqlite3.Error as error:
            if db.in_transaction:
                db.rollback()
            # sqlite3 messages name SQL and files, never bound parameters.
            raise StoreError(f"session database error: {error}") from error
        except BaseException:
            if db.in_transaction:
                db.rollback()
            raise
        finally:
            with self._lock:
                if self._closed:
                    db.close()
                else:
                    self._idle.put(db)

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken up front so it cannot deadlock on upgrade."""
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")

    def create(
        self, session_id: str, now: float, conclusions: StoredConclusions | None = None
    ) -> None:
        document, kb_version, at = _columns(conclusions, 0)
        with self._write() as db:
            db.execute(
                "INSERT INTO sessions (id, version, created_at, last_active,"
                " conclusions, conclusions_version, conclusions_kb_version)"
                " VALUES (?, 0, ?, ?, ?, ?, ?)",
                (session_id, now, now, document, at, kb_version),
            )

    def open(self, session_id: str, now: float) -> StoredSession | None:
        with self._write() as db:
            touched = db.execute(
                "UPDATE sessions SET last_active = max(last_active, ?) WHERE id = ?",
                (now, session_id),
            ).rowcount
            return self._read(db, session_id) if touched else None

    def load(self, session_id: str) -> StoredSession | None:
        with self._connection() as db:
            db.execute("BEGIN")  # one snapshot for the version and the facts
            try:
                return self._read(db, session_id)
            finally:
                db.execute("COMMIT")

    @staticmethod
    def _read(db: sqlite3.Connection, session_id: str) -> StoredSession | None:
        row = db.execute(
            "SELECT version, conclusions, conclusions_version, conclusions_kb_version"
            " FROM sessions WHERE id = ?",
            (session_id,),
        ).fetchone()
        if row is None:
            return None
        version, document, at, kb_version = row
        conclusions = None
        if document is not None and kb_version is not None and at == version:
            conclusions = StoredConclusions(kb_version, document)
        facts = tuple(
            StoredFact(fact_id, fact_type, json.loads(fields))
            for fact_id, fact_type, fields in db.execute(
                "SELECT fact_id, type, fields FROM facts WHERE session_id = ? ORDER BY position",
                (session_id,),
            ).fetchall()
        )
        return StoredSession(session_id, int(version), facts, conclusions)

    def commit(
        self,
        session_id: str,
        base_version: int,
        retract: Sequence[str],
        upsert: Sequence[StoredFact],
        now: float,
        conclusions: StoredConclusions | None = None,
    ) -> int:
        version = base_version + 1
        document, kb_version, at = _columns(conclusions, version)
        with self._write() as db:
            row = db.execute("SELECT version FROM sessions WHERE id = ?", (session_id,)).fetchone()
            if row is None:
                raise SessionMissing()
            if int(row[0]) != base_version:
                raise StaleVersion()
            db.executemany(
                "DELETE FROM facts WHERE session_id = ? AND fact_id = ?",
                [(session_id, fact_id) for fact_id in retract],
            )
            (last,) = db.execute(
                "SELECT coalesce(max(position), -1) FROM facts WHERE session_id = ?",
                (session_id,),
            ).fetchone()
            db.executemany(
                "INSERT INTO facts (session_id, fact_id, position, type, fields)"
                " VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT (session_id, fact_id)"
                " DO UPDATE SET type = excluded.type, fields = excluded.fields",
                [
                    (session_id, fact.id, last + 1 + index, fact.type, _dumps(fact.fields))
                    for index, fact in enumerate(upsert)
                ],
            )
            db.execute(
                "UPDATE sessions SET version = ?, last_active = max(last_active, ?),"
                " conclusions = ?, conclusions_version = ?, conclusions_kb_version = ?"
                " WHERE id = ?",
                (version, now, document, at, kb_version, session_id),
            )
        return version

    def record_conclusions(
        self, session_id: str, version: int, conclusions: StoredConclusions
    ) -> bool:
        document, kb_version, at = _columns(conclusions, version)
        with self._write() as db:
            written = db.execute(
                "UPDATE sessions SET conclusions = ?, conclusions_version = ?,"
                " conclusions_kb_version = ? WHERE id = ? AND version = ?",
                (document, at, kb_version, session_id, version),
            ).rowcount
        return bool(written)

    def touch(self, session_ids: Collection[str], now: float) -> None:
        if not session_ids:
            return
        with self._write() as db:
            db.executemany(
                "UPDATE sessions SET last_active = max(last_active, ?) WHERE id = ?",
                [(now, session_id) for session_id in session_ids],
            )

    def delete(self, session_id: str) -> bool:
        with self._write() as db:
            deleted = self._erase(db, [session_id])
        if deleted:
            self._checkpoint()
        return bool(deleted)

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        with self._write() as db:
            idle = [
                session_id
                for (session_id,) in db.execute(
                    "SELECT id FROM sessions WHERE last_active < ?", (idle_before,)
                ).fetchall()
                if session_id not in keep
            ]
            deleted = self._erase(db, idle)
        if deleted or self._checkpoint_pending:
            self._checkpoint()
        return deleted

    @staticmethod
    def _erase(db: sqlite3.Connection, session_ids: Sequence[str]) -> int:
        rows = [(session_id,) for session_id in session_ids]
        db.executemany("DELETE FROM facts WHERE session_id = ?", rows)
        # The session row holds the reported conclusions: they go with it.
        deleted = 0
        for row in rows:
            deleted += db.execute("DELETE FROM sessions WHERE id = ?", row).rowcount
        return deleted

    def _checkpoint(self) -> None:
        """Copy the zeroed pages into the main file and empty the log.

        A reader in another connection can hold the log back for a moment:
        retry briefly, then leave it to the next erasure (and say so).
        """
        with self._connection() as db:
            for _ in range(CHECKPOINT_ATTEMPTS):
                busy, _, _ = db.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
                if not busy:
                    self._checkpoint_pending = False
                    return
                time.sleep(CHECKPOINT_RETRY_SECONDS)
        self._checkpoint_pending = True
        log.warning("WAL checkpoint after an erasure was blocked; the next sweep retries it")

    def close(self) -> None:
        """Close idle connections now; one in use closes when its operation ends."""
        with self._lock:
            self._closed = True
        while True:
            try:
                self._idle.get_nowait().close()
            except queue.Empty:
                return
