"""A session store that survives a session database it cannot use, and recovers.

A corrupt database file, one locked by another process for longer than the
busy timeout, a file or folder the server cannot write, a file deleted or
replaced while the server runs: `SqliteSessionStore` raises `StoreError` (for
the file itself, `StoreUnusable`). If that stopped the server, a supervisor
would restart it into the same failure again and again, and `Evaluate` —
which needs no database — would be down too. `ReopeningSessionStore` instead
logs one clear error naming the file and the reason, keeps the server up, and
answers each session call with `StoreError` (the service's `UNAVAILABLE`,
reason STORE_UNAVAILABLE) until the database is usable: it tries again at
most every `retry_seconds`, on demand. No restart is needed once the file is
usable again (permissions fixed, the file restored).

- At start-up the file may be created (0600) if it does not exist. Once a
  database has been open, a missing file is never replaced by an empty one:
  the operator restores it, or restarts the server to start empty.
- A store that raised `StoreUnusable` (the file turned read-only, was deleted
  or replaced, went corrupt) is closed and opened again from the path. The
  call that hit it fails: a batch is never acknowledged into a file that is no
  longer at the path.

Errors name the file and the reason (SQLite's own message, or the owner and
mode of a file this process cannot write), never session contents.
"""

from __future__ import annotations

import logging
import math
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path
from typing import TypeVar

from server.store import (
    SessionLimitReached,
    SessionMissing,
    SqliteSessionStore,
    StaleVersion,
    StoredConclusions,
    StoredFact,
    StoredSession,
    StoreError,
    StoreUnusable,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 5.0

T = TypeVar("T")


class ReopeningSessionStore:
    """`SessionStore` over a `SqliteSessionStore` opened now or, failing that, later;
    opened again when the file under it becomes unusable."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        opener: Callable[..., SqliteSessionStore] = SqliteSessionStore,
        clock: Callable[[], float] = time.monotonic,
        create: bool = True,
    ) -> None:
        """`opener(path, create=...)` opens the database (`SqliteSessionStore`).

        `create=False`: never create the file, not even at first (a worker
        process, whose supervisor created it before the workers started: a
        worker started later must not put an empty database in place of one
        deleted while the server ran)."""
        self.path = Path(path)
        self._retry_seconds = retry_seconds
        self._opener = opener
        self._clock = clock
        self._lock = threading.Lock()
        self._store: SqliteSessionStore | None = None
        self._failure = ""
        self._next_attempt = 0.0
        self._closed = False
        # Until a database has been open, a missing file may be created.
        self._may_create = create
        self._last_error: tuple[str, float] = ("", 0.0)  # logged at most every retry
        # Stores lost to their database file being deleted or replaced, kept open
        # (so their -wal and -shm inodes stay allocated) until another file opens:
        # see `_check_leftovers`.
        self._lost_stores: list[SqliteSessionStore] = []
        with self._lock:
            self._open()

    @property
    def available(self) -> bool:
        return self._store is not None

    def _open(self) -> SqliteSessionStore | None:
        """One attempt to open the database (the lock is held)."""
        try:
            self._check_leftovers()
            store = self._opener(self.path, create=self._may_create)
        except (StoreError, sqlite3.Error, OSError) as error:
            self._failure = _reason(error)
            self._next_attempt = self._clock() + self._retry_seconds
            log.error(
                "session database %s is unusable (%s): session calls answer UNAVAILABLE"
                " until it opens (next attempt on demand, after %.0f s); Evaluate is unaffected",
                self.path,
                self._failure,
                self._retry_seconds,
            )
            return None
        if self._failure:
            log.info("session database %s opened", self.path)
        self._store, self._failure, self._may_create = store, "", False
        # SQLite neither checkpoints into nor deletes files at a path whose
        # database file moved: closing these cannot harm the file open now.
        lost, self._lost_stores = self._lost_stores, []
        for old in lost:
            old.close()
        return store

    def _check_leftovers(self) -> None:
        """Refuse a file put in place of a lost one while the lost one's -wal or -shm
        is still at the path: SQLite would read that log's pages into the new file.

        The lost stores are still open, so an inode number here is theirs, not a
        new file's that reused it.
        """
        for lost in self._lost_stores:
            if _identity(self.path) == lost.identities.get(""):
                continue  # its own database file is back: the log is that file's
            for suffix, identity in lost.identities.items():
                if suffix and _identity(Path(f"{self.path}{suffix}")) == identity:
                    raise StoreUnusable(
                        self.path,
                        f"{self.path}{suffix} belongs to the database file that was deleted or"
                        " replaced, not to the one at the path now: move it away with that file"
                        " (it may hold that file's last commits)",
                    )

    def _get(self) -> SqliteSessionStore:
        store = self._store
        if store is not None:
            return store
        with self._lock:
            if self._closed:
                raise StoreError("the session store is closed")
            if self._store is not None:
                return self._store
            if self._clock() >= self._next_attempt and self._open() is not None:
                assert self._store is not None
                return self._store
            raise StoreError(f"session database {self.path} is unusable: {self._failure}")

    def _lost(self, store: SqliteSessionStore, error: StoreUnusable) -> None:
        """The file under `store` became unusable: close it, reopen on demand."""
        with self._lock:
            if self._store is not store:
                return  # another call saw it first
            self._store, self._failure = None, error.reason
            self._next_attempt = self._clock()  # a replaced file may be usable at once
            moved = _identity(self.path) != store.identities.get("")
            if moved:
                self._lost_stores.append(store)  # closed once another file opens
            log.error(
                "session database %s became unusable (%s): session calls answer UNAVAILABLE"
                " until it is usable again (checked on demand, at most every %.0f s);"
                " Evaluate is unaffected",
                self.path,
                error.reason,
                self._retry_seconds,
            )
        if not moved:
            store.close()

    def _call(self, operation: Callable[[SqliteSessionStore], T]) -> T:
        store = self._get()
        try:
            return operation(store)
        except (SessionMissing, StaleVersion, SessionLimitReached):
            raise  # answers about sessions, not failures of the database
        except StoreUnusable as error:
            self._lost(store, error)
            raise
        except StoreError as error:
            self._report(error)
            raise

    def _report(self, error: StoreError) -> None:
        """Log a failed operation's reason with the file, at most every retry period."""
        reason, now = str(error), self._clock()
        last_reason, last_time = self._last_error
        if reason == last_reason and now - last_time < self._retry_seconds:
            return
        self._last_error = (reason, now)
        log.error("session database %s: %s", self.path, reason)

    def create(
        self,
        session_id: str,
        now: float,
        conclusions: StoredConclusions | None = None,
        *,
        max_sessions: int | None = None,
        idle_before: float = -math.inf,
    ) -> None:
        self._call(
            lambda store: store.create(
                session_id,
                now,
                conclusions,
                max_sessions=max_sessions,
                idle_before=idle_before,
            )
        )

    def open(self, session_id: str, now: float) -> StoredSession | None:
        return self._call(lambda store: store.open(session_id, now))

    def load(self, session_id: str) -> StoredSession | None:
        return self._call(lambda store: store.load(session_id))

    def commit(
        self,
        session_id: str,
        base_version: int,
        retract: Sequence[str],
        upsert: Sequence[StoredFact],
        now: float,
        conclusions: StoredConclusions | None = None,
    ) -> int:
        return self._call(
            lambda store: store.commit(session_id, base_version, retract, upsert, now, conclusions)
        )

    def record_conclusions(
        self, session_id: str, version: int, conclusions: StoredConclusions
    ) -> bool:
        return self._call(lambda store: store.record_conclusions(session_id, version, conclusions))

    def version_of(self, session_id: str) -> int | None:
        return self._call(lambda store: store.version_of(session_id))

    def touch(self, session_ids: Collection[str], now: float) -> None:
        if session_ids:
            self._call(lambda store: store.touch(session_ids, now))

    def delete(self, session_id: str) -> bool:
        return self._call(lambda store: store.delete(session_id))

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        return self._call(lambda store: store.sweep(idle_before, keep))

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
            lost, self._lost_stores = self._lost_stores, []
        for old in [*lost, *([store] if store is not None else [])]:
            old.close()


def _identity(path: Path) -> tuple[int, int] | None:
    """(st_dev, st_ino) of the file at `path`; None if there is none."""
    try:
        status = os.stat(path)
    except OSError:
        return None
    return status.st_dev, status.st_ino


def _reason(error: BaseException) -> str:
    """Why the database did not open, without repeating the path where the error names it."""
    if isinstance(error, StoreUnusable):
        return error.reason
    if isinstance(error, OSError) and error.strerror:
        return error.strerror if error.filename is None else f"{error.filename}: {error.strerror}"
    return str(error)
