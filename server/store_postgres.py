"""`SessionStore` on PostgreSQL, shared by any number of server replicas.

`--session-db postgresql://user@host:5432/dbname` (any libpq URL; `postgres://`
too) puts sessions in that database instead of a SQLite file. The semantics are
`SqliteSessionStore`'s (see `server.store`); what differs is how they are had:

- Durability: every connection sets `synchronous_commit = on`, whatever the
  server's or the database's default, so a commit returns (and a batch is
  acknowledged) only once it is flushed to the WAL on disk, and on the
  synchronous standbys if the server has any.
- Versions: `commit` is `UPDATE sessions SET version = base + 1 ... WHERE id = ?
  AND version = base` first, in the batch's transaction. The row lock it takes
  orders concurrent writers of one session; a writer that waited re-checks the
  condition on the committed row and updates nothing, so exactly one of the
  writers on a version wins; the others get `StaleVersion` (`SessionMissing`
  if the session was erased meanwhile), and their transactions roll back.
- Change signal: a commit sends `NOTIFY cds_sessions, '<session id>:<version>'`
  in its transaction (delivered on commit only, never on rollback); an erasure
  (delete or sweep) sends `'<session id>:-1'`. The payload is the id and the
  version, nothing else: a listener reads the rest from the store
  (`version_of`, `load`). The id is a bearer secret: only roles that can
  connect to this database can LISTEN.
- Session limit: `create` with `max_sessions` first takes
  `pg_advisory_xact_lock(CREATE_LOCK)`, then counts the live sessions and
  inserts in that transaction; the lock is held until the commit, so the next
  creator's count (a new snapshot under READ COMMITTED) sees this insert.
  Creations are serialized across replicas (each waits for the one before it
  to commit); the count is atomic and never overshoots. Only creations take
  the lock: deletions and sweeps can only lower the count, and an erasure not
  yet visible to a creator's count makes it refuse, never overshoot.
- Expiry: `sweep` runs in a transaction that first takes
  `pg_try_advisory_xact_lock(SWEEP_LOCK)`; a replica that does not get it
  sweeps nothing this time (another is sweeping). Its DELETE re-checks
  `last_active` on each row it deletes, so a session opened meanwhile on any
  replica stays.
- Erasure: DELETE leaves dead row versions in the table's pages until VACUUM.
  After an erasure the store runs `VACUUM facts, sessions` (coalesced: one
  VACUUM that started after this erasure's commit is enough) before `delete`
  returns, so erased facts and reports are no longer reachable and their space
  is free to be overwritten; see SECURITY.md for what stays (bytes in free
  space until overwritten, WAL, archives, backups). A VACUUM that fails is
  retried at the next sweep.
- Schema: versioned files in server/migrations/postgres, applied at start-up
  on a dedicated connection holding `pg_advisory_lock(MIGRATION_LOCK)`, each
  with its `schema_migrations` record in one transaction: replicas starting
  together migrate once. The database itself must exist (the store never
  creates one).
- Failures: a server that cannot be reached, or a connection dropped during an
  operation, raises `StoreUnavailable` (the service answers UNAVAILABLE,
  Evaluate is unaffected); other database errors raise `StoreError`, with the
  SQLSTATE and PostgreSQL's primary message only (its DETAIL line can quote
  values). Nothing is retried after a statement was sent: a batch cut before
  its acknowledgement may have committed, and the client's retry with
  `expected_version` finds out. Recovery needs no restart: psycopg_pool
  replaces broken connections; while the server is unreachable calls fail at
  once, and every `retry_seconds` one call tries a fresh connection; when it
  connects, the store opens a new pool (the old one may be waiting out a long
  reconnection back-off) and carries on. A store that could not migrate at
  start-up (server down) migrates on the first call that reaches it.

Nothing here logs a fact, a field value, a conclusion, a session id or the
URL's password.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from contextlib import contextmanager, suppress
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import conninfo as libpq
from psycopg_pool import ConnectionPool, PoolClosed, PoolTimeout

from server import migrations
from server.store import (
    ImportOutcome,
    SessionLimitReached,
    SessionMissing,
    SessionRecord,
    StaleVersion,
    StoredConclusions,
    StoredFact,
    StoredSession,
    StoreError,
    StoreUnavailable,
    import_outcome,
)

log = logging.getLogger(__name__)

NOTIFY_CHANNEL = "cds_sessions"
ERASED = -1  # the version a notification carries for an erased session
# Advisory lock keys (one keyspace per database): arbitrary, fixed, and unlikely
# to be used by anything else sharing the database.
MIGRATION_LOCK = 0x0CD5_0001
SWEEP_LOCK = 0x0CD5_0002
CREATE_LOCK = 0x0CD5_0003

# How often the listening connection looks up from waiting (to notice `stop`).
LISTEN_POLL_SECONDS = 1.0
DEFAULT_POOL_SIZE = 8
DEFAULT_TIMEOUT_SECONDS = 5.0
DEFAULT_RETRY_SECONDS = 2.0
APPLICATION_NAME = "cds-sessions"

_SESSION_COLUMNS = "version, conclusions, conclusions_version, conclusions_kb_version"
# One statement, so one snapshot: the session row and its facts as of one commit.
_READ = f"""
SELECT s.{_SESSION_COLUMNS.replace(", ", ", s.")}, s.created_at, s.last_active,
       f.ids, f.types, f.fields
FROM sessions s
CROSS JOIN LATERAL (
    SELECT array_agg(fact_id ORDER BY position) AS ids,
           array_agg(type ORDER BY position) AS types,
           array_agg(fields ORDER BY position) AS fields
    FROM facts WHERE session_id = s.id
) f
WHERE s.id = %s
"""
_MIGRATIONS_TABLE = """
CREATE TABLE IF NOT EXISTS schema_migrations (
    version INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at TIMESTAMPTZ NOT NULL DEFAULT now()
)
"""


def redacted(url: str) -> str:
    """`url` without its password (in the user part or as a `password=` parameter)."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparsable URL>"
    netloc = re.sub(r"^([^@/]*?):[^@/]*@", r"\1:***@", parts.netloc)
    query = re.sub(r"(^|&)(password=)[^&]*", r"\1\2***", parts.query)
    return urlunsplit((parts.scheme, netloc, parts.path, query, parts.fragment))


def _dumps(fields: Any) -> str:
    return json.dumps(fields, sort_keys=True, separators=(",", ":"), allow_nan=False)


def _columns(
    conclusions: StoredConclusions | None, version: int
) -> tuple[str | None, str | None, int | None]:
    if conclusions is None:
        return None, None, None
    return conclusions.document, conclusions.knowledge_base_version, version


def _reason(error: BaseException) -> str:
    """A failure's reason without values: SQLSTATE and primary message, or the
    connection error (host, port, role, database; never the password)."""
    if isinstance(error, psycopg.Error) and error.diag.message_primary:
        return f"{error.diag.sqlstate or '?'} {error.diag.message_primary}"
    text = str(error).strip().splitlines()
    return text[0] if text else type(error).__name__


def _connection_lost(error: psycopg.Error, connection: psycopg.Connection[Any] | None) -> bool:
    """The server is unreachable or dropped the connection (vs. an SQL error)."""
    if connection is not None and connection.broken:
        return True
    sqlstate = error.sqlstate or ""
    # 08: connection exception; 57P01-57P03: admin shutdown, crash shutdown, cannot connect now.
    return isinstance(error, psycopg.OperationalError) and (
        not sqlstate or sqlstate.startswith("08") or sqlstate in ("57P01", "57P02", "57P03")
    )


class PostgresSessionStore:
    """`SessionStore` on a PostgreSQL database, through a psycopg_pool pool.

    `pool_size`: connections at most (one is kept open). `timeout`: how long a
    call waits for a connection, and how long connecting may take, before
    `StoreUnavailable`. `retry_seconds`: while the server is unreachable, calls
    fail at once and one tries again this often.
    """

    def __init__(
        self,
        url: str,
        *,
        pool_size: int = DEFAULT_POOL_SIZE,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
    ) -> None:
        self.url = redacted(url)
        try:
            params = libpq.conninfo_to_dict(url)
        except psycopg.Error:
            # Not the error's text: it may quote the URL, password included.
            raise ValueError(
                f"the session database URL {self.url} is not a valid libpq URL"
            ) from None
        params.setdefault("application_name", APPLICATION_NAME)
        params.setdefault("connect_timeout", str(max(1, round(timeout))))
        self._conninfo = libpq.make_conninfo("", **params)
        self._pool_size = pool_size
        self._timeout = timeout
        self._retry_seconds = retry_seconds
        self._lock = threading.Lock()  # guards the state below
        self._closed = False
        self._schema_ready = False
        self._unreachable = False  # the server could not be reached: fail at once
        self._failure = ""  # why the last attempt failed
        self._next_attempt = 0.0
        self._last_logged = ("", 0.0)
        # Erasures committed, and the newest one a finished VACUUM covers.
        self._erasures = 0
        self._vacuumed = 0
        self._vacuum_lock = threading.Lock()
        self._pool = self._new_pool()
        with suppress(StoreError):  # logged; session calls answer UNAVAILABLE until it works
            self._attempt(first=True)

    # -- connections -----------------------------------------------------------

    def _new_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        pool: ConnectionPool[psycopg.Connection[Any]] = ConnectionPool(
            self._conninfo,
            min_size=1,
            max_size=self._pool_size,
            kwargs={"autocommit": True},
            configure=self._configure,
            check=ConnectionPool.check_connection,
            timeout=self._timeout,
            name=APPLICATION_NAME,
            open=False,
        )
        pool.open(wait=False)  # connects in the background; a server down is not fatal
        return pool

    @staticmethod
    def _configure(connection: psycopg.Connection[Any]) -> None:
        # A batch is acknowledged only once its commit is flushed, whatever the
        # server's, the database's or the role's default says.
        connection.execute("SET synchronous_commit TO on")

    def _connect(self) -> psycopg.Connection[Any]:
        """A connection of its own, outside the pool (migrations, probes)."""
        connection = psycopg.connect(self._conninfo, autocommit=True)
        self._configure(connection)
        return connection

    def _attempt(self, first: bool = False) -> None:
        """Reach the server outside the pool: migrate if not done yet, else probe.
        On success, a fresh pool replaces one that may be stuck in back-off.
        The lock is held, except at construction."""
        connection = None
        try:
            connection = self._connect()
            with connection:
                if not self._schema_ready:
                    self._migrate(connection)
                    self._schema_ready = True
        except psycopg.Error as error:
            self._next_attempt = time.monotonic() + self._retry_seconds
            # Any failure to connect (refused, unknown database, not accepting
            # connections now) means unreachable; after that, by its kind.
            lost = connection is None or _connection_lost(error, connection)
            self._unreachable, self._failure = lost, _reason(error)
            self._log_failure(lost)
            raise (StoreUnavailable if lost else StoreError)(
                f"session database {self.url}: {self._failure}"
            ) from None
        if self._unreachable and not first:
            # The pool may be waiting out a long reconnection back-off: start afresh.
            log.info("session database %s reachable: new connection pool", self.url)
            old, self._pool = self._pool, self._new_pool()
            threading.Thread(target=old.close, args=(0,), daemon=True).start()
        self._unreachable, self._failure = False, ""

    def _log_failure(self, lost: bool) -> None:
        """One error line per reason and minute: the URL (no password) and why."""
        reason, now = self._failure, time.monotonic()
        last_reason, last_time = self._last_logged
        if reason == last_reason and now - last_time < 60:
            return
        self._last_logged = (reason, now)
        doing = "cannot reach" if lost else "cannot prepare"
        log.error(
            "%s the session database %s (%s): session calls answer UNAVAILABLE until it"
            " works (tried again on demand, at most every %.0f s); Evaluate is unaffected",
            doing,
            self.url,
            reason,
            self._retry_seconds,
        )

    def _ready_pool(self) -> ConnectionPool[psycopg.Connection[Any]]:
        """The pool to use now; `StoreUnavailable` at once while the server is known
        to be unreachable (one call every `retry_seconds` tries it again)."""
        with self._lock:
            if self._closed:
                raise StoreError("the session store is closed")
            if self._unreachable or not self._schema_ready:
                if time.monotonic() < self._next_attempt:
                    raise (StoreUnavailable if self._unreachable else StoreError)(
                        f"session database {self.url}: {self._failure}"
                    )
                self._attempt()
            return self._pool

    @contextmanager
    def _connection(self) -> Iterator[psycopg.Connection[Any]]:
        pool = self._ready_pool()
        try:
            connection = pool.getconn()
        except PoolTimeout:
            # The pool has no connection to give: find out whether the server is
            # down (fail at once from now on) or the pool is stuck in back-off.
            with self._lock:
                if self._pool is pool:
                    self._unreachable, self._next_attempt = True, 0.0
            pool = self._ready_pool()
            try:
                connection = pool.getconn()
            except (PoolTimeout, PoolClosed) as error:
                raise StoreUnavailable(f"session database {self.url}: {error}") from None
        except PoolClosed:
            raise StoreError("the session store is closed") from None
        try:
            yield connection
        except psycopg.Error as error:
            lost = _connection_lost(error, connection)
            raise (StoreUnavailable if lost else StoreError)(
                f"session database {self.url}: {_reason(error)}"
            ) from None
        finally:
            pool.putconn(connection)  # a broken one is discarded and replaced

    # -- schema ----------------------------------------------------------------

    def _migrate(self, connection: psycopg.Connection[Any]) -> None:
        """Apply the missing migrations under the migration lock (see the module doc)."""
        known = migrations.load("postgres")
        connection.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
        try:
            connection.execute(_MIGRATIONS_TABLE)
            rows = connection.execute("SELECT version FROM schema_migrations").fetchall()
            applied = {int(version) for (version,) in rows}
            pending = [migration for migration in known if migration.version not in applied]
            for migration in pending:
                with connection.transaction():
                    connection.execute(migration.sql)
                    connection.execute(
                        "INSERT INTO schema_migrations (version, name) VALUES (%s, %s)",
                        (migration.version, migration.name),
                    )
        finally:
            if not connection.broken:
                connection.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))
        if pending:
            log.info(
                "session database %s: schema migrated (%s)",
                self.url,
                ", ".join(migration.name for migration in pending),
            )
        newest = max(applied, default=0)
        if newest > len(known):
            log.warning(
                "session database %s has schema version %d; this release knows %d:"
                " using it as it is",
                self.url,
                newest,
                len(known),
            )

    # -- the change feed -------------------------------------------------------

    def listen(self, on_change: Callable[[str | None], None], stop: threading.Event) -> None:
        """Until `stop`: `on_change(session_id)` for each commit or erasure any
        replica announces, and `on_change(None)` when any session may have
        changed unannounced (a sweep, or notifications missed while the
        listening connection was down: it reconnects every `retry_seconds`).

        Blocking: run it on a thread of its own (one per process). Only session
        ids and versions travel on the channel; nothing is logged but failures.
        """
        while not stop.is_set():
            try:
                with psycopg.connect(self._conninfo, autocommit=True) as connection:
                    connection.execute(f"LISTEN {NOTIFY_CHANNEL}")
                    on_change(None)  # whatever happened while nobody listened
                    while not stop.is_set():
                        for note in connection.notifies(timeout=LISTEN_POLL_SECONDS):
                            session_id, _, _ = note.payload.rpartition(":")
                            on_change(session_id or None)
            except psycopg.Error as error:
                log.warning(
                    "session database %s: change notifications lost (%s); retrying",
                    self.url,
                    _reason(error),
                )
                stop.wait(self._retry_seconds)

    # -- the SessionStore interface --------------------------------------------

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
        with self._connection() as connection, connection.transaction():
            if max_sessions is not None:
                # Held to the commit: creators on every replica count one at a time.
                connection.execute("SELECT pg_advisory_xact_lock(%s)", (CREATE_LOCK,))
                (live,) = connection.execute(
                    "SELECT count(*) FROM sessions WHERE last_active >= %s", (idle_before,)
                ).fetchone() or (0,)
                if live >= max_sessions:
                    raise SessionLimitReached(max_sessions)
            connection.execute(
                "INSERT INTO sessions (id, version, created_at, last_active,"
                " conclusions, conclusions_version, conclusions_kb_version)"
                " VALUES (%s, 0, %s, %s, %s, %s, %s)",
                (session_id, now, now, document, at, kb_version),
            )

    def open(self, session_id: str, now: float) -> StoredSession | None:
        with self._connection() as connection, connection.transaction():
            # The row lock first: no batch can change the facts read next.
            touched = connection.execute(
                "UPDATE sessions SET last_active = greatest(last_active, %s) WHERE id = %s",
                (now, session_id),
            ).rowcount
            if not touched:
                return None
            row = connection.execute(_READ, (session_id,)).fetchone()
        return None if row is None else self._session(session_id, row)

    def load(self, session_id: str) -> StoredSession | None:
        with self._connection() as connection:
            row = connection.execute(_READ, (session_id,)).fetchone()
        return None if row is None else self._session(session_id, row)

    @staticmethod
    def _session(session_id: str, row: Sequence[Any]) -> StoredSession:
        version, document, at, kb_version, _, _, ids, types, fields = row
        conclusions = None
        if document is not None and kb_version is not None and at == version:
            conclusions = StoredConclusions(kb_version, document)
        facts = tuple(
            StoredFact(fact_id, fact_type, json.loads(text))
            for fact_id, fact_type, text in zip(ids or (), types or (), fields or (), strict=True)
        )
        return StoredSession(session_id, int(version), facts, conclusions)

    def version_of(self, session_id: str) -> int | None:
        with self._connection() as connection:
            row = connection.execute(
                "SELECT version FROM sessions WHERE id = %s", (session_id,)
            ).fetchone()
        return None if row is None else int(row[0])

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
        with self._connection() as connection, connection.transaction():
            won = connection.execute(
                "UPDATE sessions SET version = %s, last_active = greatest(last_active, %s),"
                " conclusions = %s, conclusions_version = %s, conclusions_kb_version = %s"
                " WHERE id = %s AND version = %s",
                (version, now, document, at, kb_version, session_id, base_version),
            ).rowcount
            if not won:
                exists = connection.execute(
                    "SELECT 1 FROM sessions WHERE id = %s", (session_id,)
                ).fetchone()
                raise StaleVersion() if exists else SessionMissing()
            if retract:
                connection.execute(
                    "DELETE FROM facts WHERE session_id = %s AND fact_id = ANY(%s)",
                    (session_id, list(retract)),
                )
            if upsert:
                (last,) = connection.execute(
                    "SELECT coalesce(max(position), -1) FROM facts WHERE session_id = %s",
                    (session_id,),
                ).fetchone() or (-1,)
                with connection.cursor() as cursor:
                    cursor.executemany(
                        "INSERT INTO facts (session_id, fact_id, position, type, fields)"
                        " VALUES (%s, %s, %s, %s, %s)"
                        " ON CONFLICT (session_id, fact_id)"
                        " DO UPDATE SET type = excluded.type, fields = excluded.fields",
                        [
                            (session_id, fact.id, last + 1 + index, fact.type, _dumps(fact.fields))
                            for index, fact in enumerate(upsert)
                        ],
                    )
            self._notify(connection, session_id, version)
        return version

    @staticmethod
    def _notify(connection: psycopg.Connection[Any], session_id: str, version: int) -> None:
        """Queue the change signal; PostgreSQL delivers it when the transaction commits."""
        connection.execute("SELECT pg_notify(%s, %s)", (NOTIFY_CHANNEL, f"{session_id}:{version}"))

    def record_conclusions(
        self, session_id: str, version: int, conclusions: StoredConclusions
    ) -> bool:
        document, kb_version, at = _columns(conclusions, version)
        with self._connection() as connection:
            written = connection.execute(
                "UPDATE sessions SET conclusions = %s, conclusions_version = %s,"
                " conclusions_kb_version = %s WHERE id = %s AND version = %s",
                (document, at, kb_version, session_id, version),
            ).rowcount
        return bool(written)

    def touch(self, session_ids: Collection[str], now: float) -> None:
        if not session_ids:
            return
        with self._connection() as connection:
            connection.execute(
                "UPDATE sessions SET last_active = greatest(last_active, %s) WHERE id = ANY(%s)",
                (now, sorted(session_ids)),
            )

    def delete(self, session_id: str) -> bool:
        with self._connection() as connection, connection.transaction():
            # The session row first: a batch in flight on it finishes, then its
            # facts go too (ON DELETE CASCADE sees them committed).
            deleted = connection.execute(
                "DELETE FROM sessions WHERE id = %s", (session_id,)
            ).rowcount
            if deleted:
                self._notify(connection, session_id, ERASED)
        if deleted:
            self._vacuum(self._erased())
        return bool(deleted)

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        with self._connection() as connection, connection.transaction():
            (ours,) = connection.execute(
                "SELECT pg_try_advisory_xact_lock(%s)", (SWEEP_LOCK,)
            ).fetchone() or (False,)
            if not ours:
                return 0  # another replica is sweeping now
            # The condition is checked again on each row as it is deleted: a
            # session opened meanwhile (its row updated) is not idle any more.
            erased = [
                session_id
                for (session_id,) in connection.execute(
                    "DELETE FROM sessions WHERE last_active < %s AND NOT (id = ANY(%s))"
                    " RETURNING id",
                    (idle_before, sorted(keep)),
                ).fetchall()
            ]
            if erased:
                connection.execute(
                    "SELECT pg_notify(%s, erased || %s) FROM unnest(%s::text[]) AS erased",
                    (NOTIFY_CHANNEL, f":{ERASED}", erased),
                )
        if erased:
            self._vacuum(self._erased())
        elif self._vacuumed < self._erasures:
            self._vacuum(self._erasures)  # one that failed before
        return len(erased)

    def _erased(self) -> int:
        """Count an erasure that has committed; its number."""
        with self._lock:
            self._erasures += 1
            return self._erasures

    def _vacuum(self, erasure: int) -> None:
        """VACUUM the tables once a VACUUM that started after `erasure` committed
        has finished: concurrent erasures in this process share one."""
        with self._vacuum_lock:
            if self._vacuumed >= erasure:
                return
            with self._lock:
                covers = self._erasures
            try:
                with self._connection() as connection:
                    connection.execute("VACUUM facts, sessions")
            except StoreError as error:
                log.warning("VACUUM after an erasure failed (%s); the next sweep retries it", error)
                return
            self._vacuumed = covers

    # -- copying between stores (server.sessions_copy) -------------------------

    def session_ids(self) -> list[str]:
        with self._connection() as connection:
            rows = connection.execute("SELECT id FROM sessions ORDER BY id").fetchall()
        return [session_id for (session_id,) in rows]

    def export(self, session_id: str) -> SessionRecord | None:
        with self._connection() as connection:
            row = connection.execute(_READ, (session_id,)).fetchone()
        return None if row is None else self._record(session_id, row)

    def _record(self, session_id: str, row: Sequence[Any]) -> SessionRecord:
        session = self._session(session_id, row)
        return SessionRecord(
            session_id,
            session.version,
            float(row[4]),
            float(row[5]),
            session.facts,
            session.conclusions,
        )

    def import_session(self, record: SessionRecord) -> ImportOutcome:
        """Store `record` unless this database has the session at its version or
        later (see `server.store.import_outcome`); notifies like a commit."""
        document, kb_version, at = _columns(record.conclusions, record.version)
        with self._connection() as connection, connection.transaction():
            connection.execute(
                "INSERT INTO sessions (id, version, created_at, last_active)"
                " VALUES (%s, -1, %s, %s) ON CONFLICT (id) DO NOTHING",
                (record.id, record.created_at, record.last_active),
            )
            # Locked from here to the commit: no batch can slip in between.
            connection.execute("SELECT 1 FROM sessions WHERE id = %s FOR UPDATE", (record.id,))
            row = connection.execute(_READ, (record.id,)).fetchone()
            if row is None:
                raise StoreError("the session was erased at the target while being copied")
            current = None if row[0] == -1 else self._record(record.id, row)
            outcome = import_outcome(current, record)
            if outcome not in (ImportOutcome.COPIED, ImportOutcome.REPLACED):
                return outcome
            connection.execute("DELETE FROM facts WHERE session_id = %s", (record.id,))
            connection.execute(
                "UPDATE sessions SET version = %s, created_at = %s, last_active = %s,"
                " conclusions = %s, conclusions_version = %s, conclusions_kb_version = %s"
                " WHERE id = %s",
                (
                    record.version,
                    record.created_at,
                    record.last_active,
                    document,
                    at,
                    kb_version,
                    record.id,
                ),
            )
            with connection.cursor() as cursor:
                cursor.executemany(
                    "INSERT INTO facts (session_id, fact_id, position, type, fields)"
                    " VALUES (%s, %s, %s, %s, %s)",
                    [
                        (record.id, fact.id, position, fact.type, _dumps(fact.fields))
                        for position, fact in enumerate(record.facts)
                    ],
                )
            self._notify(connection, record.id, record.version)
        return outcome

    def close(self) -> None:
        """Close the pool; later calls raise `StoreError`."""
        with self._lock:
            self._closed = True
            pool = self._pool
        with suppress(Exception):
            pool.close()
