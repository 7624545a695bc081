"""Cards issued and the clinician's feedback on them: SQLite, or PostgreSQL.

Each card is recorded when it is sent (its uuid, the service, the conclusion
code, rule id and knowledge base version) so that feedback can be checked
against it after a restart, and so the feedback says which rule a clinician
accepted or overrode. Never patient data: no patient id, no fact, no text of
the card, no free-text comment.

`--feedback-db` is a path (SQLite: created 0600, WAL, `synchronous=FULL`) or
a `postgresql://` URL of an existing database (the tables are created if
missing; several hook services may share it). A lost PostgreSQL connection
is opened again on the next call.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from server.store import is_postgres_url


def _database_errors() -> tuple[type[Exception], ...]:
    import psycopg

    return (sqlite3.Error, psycopg.Error)


CARDS = """CREATE TABLE IF NOT EXISTS cards (
    uuid TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    code TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    knowledge_base_version TEXT NOT NULL,
    issued_at DOUBLE PRECISION NOT NULL
)"""
FEEDBACK = """CREATE TABLE IF NOT EXISTS feedback (
    id {id},
    card TEXT NOT NULL REFERENCES cards(uuid),
    outcome TEXT NOT NULL,
    override_reason TEXT,
    accepted_suggestions INTEGER NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    received_at DOUBLE PRECISION NOT NULL
)"""
SQLITE_ID = "INTEGER PRIMARY KEY"
POSTGRES_ID = "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY"


class FeedbackUnavailable(Exception):
    """The feedback database failed (its type only: messages may quote SQL)."""


class FeedbackStore:
    def __init__(self, location: str | Path) -> None:
        self.location = str(location)
        self._postgres = is_postgres_url(self.location)
        self._lock = threading.Lock()
        self._db: Any = None
        with self._lock:
            self._connect()

    def _connect(self) -> None:
        if self._postgres:
            import psycopg

            self._db = psycopg.connect(self.location, autocommit=True, connect_timeout=5)
            self._db.execute(CARDS)
            self._db.execute(FEEDBACK.format(id=POSTGRES_ID))
            return
        path = Path(self.location)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.execute(CARDS)
        self._db.execute(FEEDBACK.format(id=SQLITE_ID))

    @contextmanager
    def _transaction(self) -> Iterator[Any]:
        """A cursor inside one transaction, on a live connection; a database
        failure is `FeedbackUnavailable`."""
        with self._lock:
            try:
                if self._postgres:
                    if self._db is None or self._db.closed or self._db.broken:
                        self._connect()
                    with self._db.transaction():
                        yield self._db.cursor()
                    return
                self._db.execute("BEGIN IMMEDIATE")
                try:
                    yield self._db.cursor()
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except _database_errors() as error:
                raise FeedbackUnavailable(type(error).__name__) from None

    def _sql(self, statement: str) -> str:
        return statement.replace("?", "%s") if self._postgres else statement

    def issued(self, service: str, cards: Sequence[tuple[str, str, str, str]]) -> None:
        """Record cards as sent: (uuid, code, rule id, knowledge base version)."""
        now = time.time()
        rows = [(uuid, service, code, rule, kb, now) for uuid, code, rule, kb in cards]
        with self._transaction() as cursor:
            cursor.executemany(self._sql("INSERT INTO cards VALUES (?, ?, ?, ?, ?, ?)"), rows)

    def card(self, uuid: str) -> tuple[str, str, str] | None:
        """(service, code, rule id) of a card this service sent; None if unknown."""
        with self._transaction() as cursor:
            cursor.execute(
                self._sql("SELECT service, code, rule_id FROM cards WHERE uuid = ?"), (uuid,)
            )
            row = cursor.fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def record(
        self,
        card: str,
        outcome: str,
        override_reason: str | None,
        accepted_suggestions: int,
        outcome_timestamp: str,
    ) -> None:
        row = (card, outcome, override_reason, accepted_suggestions, outcome_timestamp, time.time())
        with self._transaction() as cursor:
            cursor.execute(
                self._sql(
                    "INSERT INTO feedback (card, outcome, override_reason, accepted_suggestions,"
                    " outcome_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?)"
                ),
                row,
            )

    def close(self) -> None:
        with self._lock:
            if self._db is not None:
                self._db.close()
