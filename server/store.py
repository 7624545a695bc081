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
(a commit that wrote none) is never returned. Sessions stored before
snapshots existed simply have none until they next report one.

The schema is versioned (`server.migrations`): opening a file applies the
migrations it lacks (server/migrations/sqlite), recorded in its
`schema_migrations` table, in one write transaction. A file made before
migrations existed has no such table; its version is read off its tables (the
first release's: 1; with the conclusions columns: 2), recorded, and the rest
applied, so every older file keeps working.

`version_of` reads only the version (for a watcher). `session_ids`, `export`
and `import_session` copy whole sessions between stores (`server.sessions_copy`).

Concurrency is optimistic and lives in the database, not in this process:
`commit` applies a batch only if the session is still at the version the
caller read (`StaleVersion` otherwise), inside one `BEGIN IMMEDIATE`
transaction. Several server processes may therefore share one database file;
each also serializes its own writers per session (see `server.sessions`).
The session limit is checked the same way: `create` with `max_sessions` counts
the live sessions and inserts in one `BEGIN IMMEDIATE` transaction, so
processes creating sessions at once never overshoot it.

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

The file under the store:

- It is created only when the store is opened with `create=True` (first
  start-up) and did not exist: mode 0600, in a folder made 0700. SQLite gives
  the `-wal` and `-shm` files it makes the database file's mode. Connections
  open the file with `mode=rw`, so SQLite never creates a database itself: a
  file gone while the server runs is never silently replaced by an empty one.
- Every connection proves it can write (a write rolled back) when it is
  opened: SQLite opens a file it cannot write read-only, without an error.
- Each operation first checks that the database, `-wal` and `-shm` files at the
  path are still the ones the store opened (device and inode), and a write
  checks again after its commit: a batch committed into a file deleted or
  replaced under the store is never reported as committed (`StoreUnusable`).
- Errors that mean the file is unusable as it is (read-only, deleted or
  replaced, unreadable, corrupt) raise `StoreUnusable`: the owner drops the
  store and opens the file again once it is usable
  (`server.resilient_store`).

Nothing here logs a fact, a field value or a conclusion.
"""

from __future__ import annotations

import json
import logging
import math
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, Protocol

from server import migrations

log = logging.getLogger(__name__)

BUSY_TIMEOUT_MS = 10_000
# The suffixes of the files a WAL database is made of.
_FILES = ("", "-wal", "-shm")
# SQLite primary result codes that mean the file itself is unusable as it is.
_UNUSABLE_CODES = frozenset(
    (
        sqlite3.SQLITE_READONLY,
        sqlite3.SQLITE_IOERR,
        sqlite3.SQLITE_CORRUPT,
        sqlite3.SQLITE_CANTOPEN,
        sqlite3.SQLITE_NOTADB,
    )
)
GONE = "the database file was deleted or replaced while the server was using it"
CHECKPOINT_ATTEMPTS = 20
CHECKPOINT_RETRY_SECONDS = 0.01

# The schema lives in versioned files (server/migrations/sqlite), applied by
# `SqliteSessionStore._migrate`. A file made before those existed has no
# `schema_migrations` table: its schema version is read off its tables.
_LEGACY_SNAPSHOT_COLUMNS = ("conclusions", "conclusions_version", "conclusions_kb_version")
_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at REAL NOT NULL
)
"""
URL_SCHEMES = ("postgresql://", "postgres://")


def is_postgres_url(location: str | os.PathLike[str]) -> bool:
    """Whether `--session-db` names a PostgreSQL database rather than a SQLite file."""
    return str(location).startswith(URL_SCHEMES)


class StoreError(Exception):
    """The store could not complete an operation (I/O, lock timeout, closed store)."""


class StoreUnusable(StoreError):
    """The database file cannot be used as it is: not writable, deleted or replaced
    while in use, unreadable or corrupt. The store that raised it stays broken;
    open the file again (a new store) once it is usable."""

    def __init__(self, path: str | os.PathLike[str], reason: str) -> None:
        super().__init__(f"session database {path}: {reason}")
        self.path = str(path)
        self.reason = reason


class StoreUnavailable(StoreError):
    """The database server cannot be reached, or dropped the connection during the
    operation (PostgreSQL). Nothing is acknowledged; the store keeps trying to
    reconnect on its own, so later calls succeed once the server is back."""


class SessionMissing(StoreError):
    """The session does not exist (never created, deleted or expired)."""


class StaleVersion(StoreError):
    """The session moved on since it was read: another writer committed first."""


class SessionLimitReached(StoreError):
    """`create` refused a new session: the store already holds `limit` live sessions."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"the store already holds {limit} live sessions, the most allowed")
        self.limit = limit


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


@dataclass(frozen=True)
class SessionRecord:
    """A whole session as stored, for copying it between stores (`server.sessions_copy`).

    `conclusions` is the snapshot of `version` (None when there is none).
    """

    id: str
    version: int
    created_at: float
    last_active: float
    facts: tuple[StoredFact, ...]
    conclusions: StoredConclusions | None


class ImportOutcome(StrEnum):
    """What `import_session` did with a record."""

    COPIED = "copied"  # the target had no such session
    REPLACED = "replaced"  # the target had it at a lower version
    UNCHANGED = "unchanged"  # the target had it at this version, with the same facts
    NEWER_AT_TARGET = "newer at target"  # left alone: the target moved on
    CONFLICT = "conflict"  # same version, other facts or report: left alone


def import_outcome(current: SessionRecord | None, record: SessionRecord) -> ImportOutcome:
    """What importing `record` over `current` (the target's copy) should do.

    The version decides: a higher one wins, an equal one with the same facts
    and report is the same session, an equal one with others has diverged.
    Timestamps do not count (opening a session moves `last_active`).
    """
    if current is None:
        return ImportOutcome.COPIED
    if current.version > record.version:
        return ImportOutcome.NEWER_AT_TARGET
    if current.version < record.version:
        return ImportOutcome.REPLACED
    same = (current.facts, current.conclusions) == (record.facts, record.conclusions)
    return ImportOutcome.UNCHANGED if same else ImportOutcome.CONFLICT


class SessionStore(Protocol):
    """What the session service needs from a database.

    Fact order: `commit` keeps an updated fact in its place and appends new
    ones in the order given; `load` returns facts in that order. Every method
    is safe to call from any thread, and from several processes on one database.
    """

    def create(
        self,
        session_id: str,
        now: float,
        conclusions: StoredConclusions | None = None,
        *,
        max_sessions: int | None = None,
        idle_before: float = -math.inf,
    ) -> None:
        """Create an empty session at version 0, with what it reports at version 0.

        With `max_sessions`, raise `SessionLimitReached` (nothing written) if the
        store already holds that many live sessions: those last active at or
        after `idle_before` (older ones are expired, waiting for `sweep`). The
        count and the insert are one atomic step for every store sharing the
        database, so concurrent creators never overshoot the limit.
        """

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

    def version_of(self, session_id: str) -> int | None:
        """The session's version now, None if it does not exist; one cheap read.

        Does not mark the session active: a watcher polls or checks with it
        without keeping the session from expiring.
        """

    def touch(self, session_ids: Collection[str], now: float) -> None:
        """Mark sessions active (those with an open stream)."""

    def delete(self, session_id: str) -> bool:
        """Erase the session, its facts and its conclusions for good; False if it did not exist."""

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        """Erase sessions last active before `idle_before`, except `keep`; return how many."""

    def close(self) -> None:
        """Release connections; later calls raise `StoreError`."""


_EFFECTIVE_IDS = os.access in os.supports_effective_ids


def _gone(suffix: str) -> str:
    return GONE if not suffix else f"its {suffix} file was deleted or replaced while in use"


def _why(path: Path) -> str:
    """Why this process may not write `path`: who it runs as, the file's owner and mode."""
    try:
        status = path.stat()
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except OSError as error:
        return error.strerror or type(error).__name__
    if read_only:
        return "it is on a read-only file system"
    why = (
        f"the server runs as uid {os.geteuid()}, the file is owned by uid {status.st_uid}"
        f" with mode {status.st_mode & 0o777:04o}"
    )
    if os.geteuid() == 0:
        why += " (root: an immutable or append-only attribute?)"
    return why


def _fsync_folder(folder: Path) -> None:
    """Make a new file's directory entry durable."""
    fd = os.open(folder, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


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

    `create`: make the file (0600) if it does not exist. Otherwise a missing
    file is `StoreUnusable`: pass False once a database has been in use, so
    that a file deleted under the server is not replaced by an empty one.
    """

    def __init__(self, path: str | os.PathLike[str], *, create: bool = True) -> None:
        if is_postgres_url(path):
            # Never a file named after a URL (`server.store_postgres` serves those).
            raise StoreError("the session database is a PostgreSQL URL, not a SQLite file")
        self.path = Path(path)
        self._file = self.path.absolute()
        # mode=rw: SQLite opens the file, never creates it (see `_prepare_file`).
        self._uri = f"{self._file.as_uri()}?mode=rw"
        self._idle: queue.SimpleQueue[sqlite3.Connection] = queue.SimpleQueue()
        self._lock = threading.Lock()  # guards _closed against connections coming back
        self._closed = False
        self._checkpoint_pending = False
        # (st_dev, st_ino) of the files this store opened, by suffix.
        self._identity: dict[str, tuple[int, int]] = {}
        self._prepare_file(create)
        self._check_writable()
        self._identity[""] = self._stat("")
        try:
            self._migrate()
            # One connection stays open from here on, so SQLite keeps these files.
            for suffix in _FILES[1:]:
                with suppress(StoreUnusable):  # not made yet: nothing to compare with
                    self._identity[suffix] = self._stat(suffix)
        except BaseException:
            self.close()
            raise
        mode = self._file.stat().st_mode & 0o777
        if mode & 0o077:
            log.warning(
                "session database %s can be read by other users (mode %04o); it holds"
                " health data: chmod 600 it and its -wal and -shm files",
                self._file,
                mode,
            )

    def _migrate(self) -> None:
        """Bring the file's schema up to date (server/migrations/sqlite).

        The pending migrations and their `schema_migrations` records are applied
        in one write transaction, and the version is read again inside it, so
        processes opening a file together apply each migration exactly once,
        and a failure leaves the file as it was. A file made before migrations
        existed is recognised by its tables (see `_schema_version`).
        """
        known = migrations.load("sqlite")
        with self._connection() as db:
            recorded = self._recorded(db)
        if recorded and recorded[-1] >= len(known):
            self._warn_if_newer(recorded[-1], len(known))
            return
        with self._write() as db:
            current = self._schema_version(db)
            recorded = self._recorded(db)
            db.execute(_MIGRATIONS_TABLE)
            now = time.time()
            # A file older than the migrations: record what it already has.
            for migration in known[len(recorded) : current]:
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now),
                )
            pending = known[current:]
            for migration in pending:
                for statement in migrations.sqlite_statements(migration.sql):
                    db.execute(statement)
                db.execute(
                    "INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)",
                    (migration.version, migration.name, now),
                )
        if current > len(recorded):
            log.info(
                "session database %s: recognised schema version %d (made before migrations)",
                self.path,
                current,
            )
        if pending:
            log.info(
                "session database %s: schema version %d -> %d (%s)",
                self.path,
                current,
                len(known),
                ", ".join(migration.name for migration in pending),
            )

    def _warn_if_newer(self, current: int, known: int) -> None:
        if current > known:
            log.warning(
                "session database %s has schema version %d; this release knows %d:"
                " using it as it is",
                self.path,
                current,
                known,
            )

    @staticmethod
    def _recorded(db: sqlite3.Connection) -> list[int]:
        """The versions `schema_migrations` records; [] when there is no such table."""
        if not SqliteSessionStore._has_table(db, "schema_migrations"):
            return []
        rows = db.execute("SELECT version FROM schema_migrations ORDER BY version").fetchall()
        return [int(version) for (version,) in rows]

    @staticmethod
    def _has_table(db: sqlite3.Connection, name: str) -> bool:
        row = db.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (name,)
        ).fetchone()
        return row is not None

    @staticmethod
    def _schema_version(db: sqlite3.Connection) -> int:
        """The schema version of the file: the highest recorded migration or, in a
        file made before `schema_migrations` existed, what its tables show (no
        tables: 0; the first release's: 1; with the conclusions columns: 2)."""
        recorded = SqliteSessionStore._recorded(db)
        if recorded:
            return recorded[-1]
        if not SqliteSessionStore._has_table(db, "sessions"):
            return 0
        columns = {row[1] for row in db.execute("PRAGMA table_info(sessions)").fetchall()}
        present = [name for name in _LEGACY_SNAPSHOT_COLUMNS if name in columns]
        if not present:
            return 1
        if len(present) == len(_LEGACY_SNAPSHOT_COLUMNS):
            return 2
        raise StoreError(
            "the session database has an unrecognised schema (some of the conclusions"
            " columns, no schema_migrations table)"
        )

    def _prepare_file(self, create: bool) -> None:
        """Create the folder and the file readable by this user only (health data).

        Without `create`, a missing file is an error, never a new empty database.
        """
        if not create:
            if not self._file.exists():
                raise StoreUnusable(
                    self._file,
                    "the file does not exist (deleted or moved while the server ran?):"
                    " restore it, or restart the server to start an empty database",
                )
            return
        folder = self._file.parent
        if not folder.exists():
            folder.mkdir(parents=True, mode=0o700, exist_ok=True)  # workers race here
        try:
            # O_EXCL: never opens (and closes) a file SQLite may hold locks on.
            fd = os.open(self._file, os.O_CREAT | os.O_EXCL | os.O_WRONLY | os.O_CLOEXEC, 0o600)
        except FileExistsError:
            return
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        _fsync_folder(folder)
        log.info("session database %s created", self._file)

    def _check_writable(self) -> None:
        """Refuse a file this process cannot write (SQLite would open it read-only).

        `os.access`, not `open`: closing a descriptor of a file drops this
        process's POSIX locks on it, SQLite's included.
        """
        for suffix in _FILES:
            name = Path(f"{self._file}{suffix}")
            if name.exists() and not os.access(name, os.W_OK, effective_ids=_EFFECTIVE_IDS):
                raise StoreUnusable(self._file, f"{name} is not writable: {_why(name)}")
        folder = self._file.parent
        makes_files = not all(Path(f"{self._file}{suffix}").exists() for suffix in _FILES[1:])
        if makes_files and not os.access(folder, os.W_OK | os.X_OK, effective_ids=_EFFECTIVE_IDS):
            raise StoreUnusable(
                self._file,
                f"its folder {folder} is not writable (SQLite makes its -wal and -shm"
                f" files there): {_why(folder)}",
            )

    def _stat(self, suffix: str) -> tuple[int, int]:
        """(st_dev, st_ino) of the file at the path; `StoreUnusable` if there is none."""
        try:
            status = os.stat(f"{self._file}{suffix}")
        except FileNotFoundError:
            raise StoreUnusable(self._file, _gone(suffix)) from None
        except OSError as error:
            reason = f"cannot stat {suffix or 'it'}: {error.strerror}"
            raise StoreUnusable(self._file, reason) from None
        return status.st_dev, status.st_ino

    @property
    def identities(self) -> dict[str, tuple[int, int]]:
        """(st_dev, st_ino) of the files this store opened, by suffix ("", "-wal", "-shm")."""
        return dict(self._identity)

    def _check_files(self) -> None:
        """The files at the path are still the ones this store opened."""
        for suffix, identity in self._identity.items():
            if self._stat(suffix) != identity:
                raise StoreUnusable(self._file, _gone(suffix))

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(
            self._uri,
            uri=True,
            isolation_level=None,
            check_same_thread=False,
            timeout=BUSY_TIMEOUT_MS / 1e3,
        )
        try:
            mode = self._wal(db)
            if str(mode).lower() != "wal":
                raise StoreError(f"the session database cannot use WAL mode (got {mode})")
            for pragma in (
                "PRAGMA synchronous=FULL",
                "PRAGMA secure_delete=ON",
                "PRAGMA foreign_keys=ON",
                f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}",
            ):
                db.execute(pragma)
            self._probe_write(db)
            if self._stat("") != self._identity[""]:  # replaced between its stat and this open
                raise StoreUnusable(self._file, GONE)
        except BaseException:
            db.close()
            raise
        return db

    def _probe_write(self, db: sqlite3.Connection) -> None:
        """Write and roll back: SQLite opens a file it cannot write read-only, silently."""
        (version,) = db.execute("PRAGMA user_version").fetchone()
        db.execute("BEGIN IMMEDIATE")
        try:
            db.execute(f"PRAGMA user_version = {int(version)}")
        except sqlite3.Error as error:
            if error.sqlite_errorcode & 0xFF == sqlite3.SQLITE_READONLY:
                raise StoreUnusable(
                    self._file, f"SQLite opened it read-only ({error}): {_why(self._file)}"
                ) from error
            raise
        finally:
            if db.in_transaction:
                db.execute("ROLLBACK")

    def _failure(self, error: sqlite3.Error, doing: str) -> StoreError:
        """`StoreUnusable` when the error is about the file itself, else `StoreError`."""
        # sqlite3 messages name SQL and files, never bound parameters.
        if getattr(error, "sqlite_errorcode", 0) & 0xFF in _UNUSABLE_CODES:
            return StoreUnusable(self._file, f"{doing}: {error}")
        return StoreError(f"{doing}: {error}")

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
        self._check_files()
        try:
            db = self._idle.get_nowait()
        except queue.Empty:
            try:
                db = self._connect()
            except sqlite3.Error as error:
                raise self._failure(error, "cannot open the session database") from error
        try:
            yield db
        except sqlite3.Error as error:
            if db.in_transaction:
                db.rollback()
            raise self._failure(error, "session database error") from error
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
        """One write transaction, taken up front so it cannot deadlock on upgrade.

        Checked after the commit too: a commit that went into a file deleted or
        replaced meanwhile is not on disk at the path, so it raises instead of
        returning (the caller must not acknowledge it).
        """
        with self._connection() as db:
            db.execute("BEGIN IMMEDIATE")
            yield db
            db.execute("COMMIT")
            self._check_files()

    def create(
        self,
        session_id: str,
        now: float,
        conclusions: StoredConclusions | None = None,
        *,
        max_sessions: int | None = None,
        idle_before: float = -math.inf,
    ) -> None:
        document, kb_version, at = _columns(conclusions, 0)
        with self._write() as db:
            if max_sessions is not None:
                # Counted inside the write transaction (BEGIN IMMEDIATE): no other
                # connection, in any process, can insert between count and insert.
                (live,) = db.execute(
                    "SELECT count(*) FROM sessions WHERE last_active >= ?", (idle_before,)
                ).fetchone()
                if live >= max_sessions:
                    raise SessionLimitReached(max_sessions)
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

    def version_of(self, session_id: str) -> int | None:
        with self._connection() as db:
            row = db.execute("SELECT version FROM sessions WHERE id = ?", (session_id,)).fetchone()
        return None if row is None else int(row[0])

    # -- copying between stores (server.sessions_copy) -------------------------

    def session_ids(self) -> list[str]:
        """Every session's id, sorted."""
        with self._connection() as db:
            return [row[0] for row in db.execute("SELECT id FROM sessions ORDER BY id").fetchall()]

    def export(self, session_id: str) -> SessionRecord | None:
        """The whole session, read in one snapshot; None if it does not exist."""
        with self._connection() as db:
            db.execute("BEGIN")
            try:
                return self._record(db, session_id)
            finally:
                db.execute("COMMIT")

    def _record(self, db: sqlite3.Connection, session_id: str) -> SessionRecord | None:
        row = db.execute(
            "SELECT created_at, last_active FROM sessions WHERE id = ?", (session_id,)
        ).fetchone()
        state = self._read(db, session_id)
        if row is None or state is None:
            return None
        created_at, last_active = row
        return SessionRecord(
            session_id,
            state.version,
            float(created_at),
            float(last_active),
            state.facts,
            state.conclusions,
        )

    def import_session(self, record: SessionRecord) -> ImportOutcome:
        """Store `record` unless this store has the session at its version or later
        (see `import_outcome`); in one write transaction."""
        with self._write() as db:
            outcome = import_outcome(self._record(db, record.id), record)
            if outcome not in (ImportOutcome.COPIED, ImportOutcome.REPLACED):
                return outcome
            document, kb_version, at = _columns(record.conclusions, record.version)
            db.execute("DELETE FROM facts WHERE session_id = ?", (record.id,))
            db.execute(
                "INSERT INTO sessions (id, version, created_at, last_active,"
                " conclusions, conclusions_version, conclusions_kb_version)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)"
                " ON CONFLICT (id) DO UPDATE SET version = excluded.version,"
                " created_at = excluded.created_at, last_active = excluded.last_active,"
                " conclusions = excluded.conclusions,"
                " conclusions_version = excluded.conclusions_version,"
                " conclusions_kb_version = excluded.conclusions_kb_version",
                (
                    record.id,
                    record.version,
                    record.created_at,
                    record.last_active,
                    document,
                    at,
                    kb_version,
                ),
            )
            db.executemany(
                "INSERT INTO facts (session_id, fact_id, position, type, fields)"
                " VALUES (?, ?, ?, ?, ?)",
                [
                    (record.id, fact.id, position, fact.type, _dumps(fact.fields))
                    for position, fact in enumerate(record.facts)
                ],
            )
        return outcome

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
