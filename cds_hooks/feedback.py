"""Cards issued and the clinician's feedback on them, in SQLite.

Each card is recorded when it is sent (its uuid, the service, the conclusion
code, rule id and knowledge base version) so that feedback can be checked
against it after a restart, and so the feedback says which rule a clinician
accepted or overrode. Never patient data: no patient id, no fact, no text of
the card. The file is created 0600, in WAL mode with `synchronous=FULL`.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS cards (
    uuid TEXT PRIMARY KEY,
    service TEXT NOT NULL,
    code TEXT NOT NULL,
    rule_id TEXT NOT NULL,
    knowledge_base_version TEXT NOT NULL,
    issued_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS feedback (
    id INTEGER PRIMARY KEY,
    card TEXT NOT NULL REFERENCES cards(uuid),
    outcome TEXT NOT NULL,
    override_reason TEXT,
    accepted_suggestions INTEGER NOT NULL,
    outcome_timestamp TEXT NOT NULL,
    received_at REAL NOT NULL
);
"""


class FeedbackStore:
    def __init__(self, path: str | Path) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not path.exists():
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        self.path = path
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=FULL")
        self._db.executescript(SCHEMA)
        self._lock = threading.Lock()

    def issued(self, service: str, cards: list[tuple[str, str, str, str]]) -> None:
        """Record cards as sent: (uuid, code, rule id, knowledge base version)."""
        now = time.time()
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO cards VALUES (?, ?, ?, ?, ?, ?)",
                [(uuid, service, code, rule, kb, now) for uuid, code, rule, kb in cards],
            )

    def card(self, uuid: str) -> tuple[str, str, str] | None:
        """(service, code, rule id) of a card this service sent; None if unknown."""
        with self._lock:
            row = self._db.execute(
                "SELECT service, code, rule_id FROM cards WHERE uuid = ?", (uuid,)
            ).fetchone()
        return None if row is None else (row[0], row[1], row[2])

    def record(
        self,
        card: str,
        outcome: str,
        override_reason: str | None,
        accepted_suggestions: int,
        outcome_timestamp: str,
    ) -> None:
        now = time.time()
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO feedback (card, outcome, override_reason, accepted_suggestions,"
                " outcome_timestamp, received_at) VALUES (?, ?, ?, ?, ?, ?)",
                (card, outcome, override_reason, accepted_suggestions, outcome_timestamp, now),
            )

    def close(self) -> None:
        self._db.close()
