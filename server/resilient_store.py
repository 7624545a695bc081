"""A session store that survives a session database it cannot open.

A corrupt database file, one locked by another process for longer than the
busy timeout, a folder without write permission: `SqliteSessionStore` raises
`StoreError` when it is opened. If that stopped the server, a supervisor would
restart it into the same failure again and again, and `Evaluate` — which
needs no database — would be down too. `ReopeningSessionStore` instead logs
one clear error, keeps the server up, and answers each session call with
`StoreError` (the service's `UNAVAILABLE`, reason STORE_UNAVAILABLE) until the
database opens: it tries again at most every `retry_seconds`, on demand.

Errors name the file and SQLite's own message, never session contents.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Sequence
from pathlib import Path

from server.store import (
    SqliteSessionStore,
    StoredConclusions,
    StoredFact,
    StoredSession,
    StoreError,
)

log = logging.getLogger(__name__)

DEFAULT_RETRY_SECONDS = 5.0


class ReopeningSessionStore:
    """`SessionStore` over a `SqliteSessionStore` opened now or, failing that, later."""

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        retry_seconds: float = DEFAULT_RETRY_SECONDS,
        opener: Callable[[Path], SqliteSessionStore] = SqliteSessionStore,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.path = Path(path)
        self._retry_seconds = retry_seconds
        self._opener = opener
        self._clock = clock
        self._lock = threading.Lock()
        self._store: SqliteSessionStore | None = None
        self._failure = ""
        self._next_attempt = 0.0
        self._closed = False
        with self._lock:
            self._open()

    @property
    def available(self) -> bool:
        return self._store is not None

    def _open(self) -> SqliteSessionStore | None:
        """One attempt to open the database (the lock is held)."""
        try:
            store = self._opener(self.path)
        except (StoreError, sqlite3.Error, OSError) as error:
            reason = error.strerror if isinstance(error, OSError) and error.strerror else error
            self._failure = f"{reason}"
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
        self._store, self._failure = store, ""
        return store

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

    def create(
        self, session_id: str, now: float, conclusions: StoredConclusions | None = None
    ) -> None:
        self._get().create(session_id, now, conclusions)

    def open(self, session_id: str, now: float) -> StoredSession | None:
        return self._get().open(session_id, now)

    def load(self, session_id: str) -> StoredSession | None:
        return self._get().load(session_id)

    def commit(
        self,
        session_id: str,
        base_version: int,
        retract: Sequence[str],
        upsert: Sequence[StoredFact],
        now: float,
        conclusions: StoredConclusions | None = None,
    ) -> int:
        return self._get().commit(session_id, base_version, retract, upsert, now, conclusions)

    def record_conclusions(
        self, session_id: str, version: int, conclusions: StoredConclusions
    ) -> bool:
        return self._get().record_conclusions(session_id, version, conclusions)

    def touch(self, session_ids: Collection[str], now: float) -> None:
        if session_ids:
            self._get().touch(session_ids, now)

    def delete(self, session_id: str) -> bool:
        return self._get().delete(session_id)

    def sweep(self, idle_before: float, keep: Collection[str] = ()) -> int:
        return self._get().sweep(idle_before, keep)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            store, self._store = self._store, None
        if store is not None:
            store.close()
