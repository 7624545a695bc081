"""A cap on the number of stored sessions (issue 14, item 6).

Before, any caller with a token could create sessions without bound: each
`StreamSession` opened without an id stored one more. `--max-sessions N` caps
the live sessions in the store (all workers and replicas sharing it); past it
a new session is `RESOURCE_EXHAUSTED` / `SESSION_LIMIT`, resuming one never is.
The store-level contract (atomic count, expired sessions not counted) is in
tests/test_store_contract.py, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import json
import logging
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from client.api import CdsClient, CdsError
from server.app import ServerConfig
from server.defaults import DEFAULT_MAX_SESSIONS
from server.engine import EngineWorker
from server.sessions import SessionManager, TooManySessions
from server.store import SqliteSessionStore
from tests.patients import HEADACHE, patient
from tests.test_hardening_ii import TOKEN, server

ROOT = Path(__file__).resolve().parents[1]


def test_the_config_default_is_the_command_line_default() -> None:
    assert ServerConfig().max_sessions == DEFAULT_MAX_SESSIONS


@pytest.mark.parametrize("value", ["0", "-3", "many"])
def test_the_server_refuses_a_bad_limit(value: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", f"--max-sessions={value}"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--max-sessions" in done.stderr


@pytest.fixture(scope="module")
def worker() -> Iterator[EngineWorker]:
    engine = EngineWorker()
    engine.wait_ready(60)
    yield engine
    engine.stop()


def test_the_manager_refuses_new_sessions_only(
    worker: EngineWorker, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    now = [1000.0]
    store = SqliteSessionStore(tmp_path / "sessions.db")
    manager = SessionManager(
        store, worker, max_facts=500, ttl_seconds=100.0, max_sessions=2, clock=lambda: now[0]
    )
    try:
        first = manager.open("", lambda: False)
        second = manager.open("", lambda: False)
        with caplog.at_level(logging.INFO, logger="server.sessions"):
            for _ in range(3):
                with pytest.raises(TooManySessions):
                    manager.open("", lambda: False)
        refusals = [r for r in caplog.records if "new session refused" in r.getMessage()]
        assert len(refusals) == 1, "rate-limited: one line, not one per refusal"
        assert refusals[0].levelno == logging.WARNING
        assert "2 live sessions" in refusals[0].getMessage()
        for session_id in (first.session_id, second.session_id):
            assert session_id not in caplog.text
        assert manager.open(first.session_id, lambda: False).version == 0  # resuming: never
        for opened in (first, second, first):
            manager.release(opened.session_id)
        assert not manager._registry.streaming(), "a refused open holds no stream count"
        # Idle past the TTL but not swept yet: expired sessions do not count.
        now[0] += 150.0
        third = manager.open("", lambda: False)
        manager.release(third.session_id)
        assert manager.open(second.session_id, lambda: False)  # resumed: live again
        manager.release(second.session_id)
        with pytest.raises(TooManySessions):
            manager.open("", lambda: False)
    finally:
        manager.stop()
        store.close()


def test_the_manager_refuses_a_limit_below_one(worker: EngineWorker, tmp_path: Path) -> None:
    store = SqliteSessionStore(tmp_path / "sessions.db")
    try:
        with pytest.raises(ValueError, match="max_sessions"):
            SessionManager(store, worker, max_facts=500, max_sessions=0)
    finally:
        store.close()


def refused(target: str) -> CdsError:
    with CdsClient(target, timeout=10, token=TOKEN) as cds, pytest.raises(CdsError) as error:
        cds.session()
    return error.value


def opened(target: str, session_id: str | None = None) -> str:
    """Open (or resume) a session, apply a batch, close the stream; the session's id."""
    with CdsClient(target, timeout=10, token=TOKEN) as cds, cds.session(session_id) as session:
        assert session.apply([patient(40), HEADACHE]).applied
        return session.session_id


def test_a_real_server_caps_new_sessions(tmp_path: Path) -> None:
    """`python -m server --max-sessions 2 --workers 2`: each client connects
    anew (either worker); the third new session is refused with the reason,
    resuming is not, and DeleteSession makes room."""
    with server(tmp_path, "--max-sessions", "2", "--workers", "2") as running:
        target = f"127.0.0.1:{running.port}"
        first, second = opened(target), opened(target)
        error = refused(target)
        assert error.code == "RESOURCE_EXHAUSTED" and error.reason == "SESSION_LIMIT"
        assert "2 live sessions" in error.message
        assert opened(target, first) == first  # resuming is never refused
        assert refused(target).reason == "SESSION_LIMIT"
        with CdsClient(target, timeout=10, token=TOKEN) as cds:
            cds.delete_session(second)
        third = opened(target)
        assert refused(target).reason == "SESSION_LIMIT"
        assert opened(target, third) == third and opened(target, first) == first
        log = running.log_text()
    lines = [json.loads(line) for line in log.splitlines() if line.startswith("{")]
    warnings = [line for line in lines if "new session refused" in line["message"]]
    assert warnings and all(line["level"] == "WARNING" for line in warnings)
    for session_id in (first, second, third):
        assert session_id not in log


def test_replicas_on_postgresql_share_the_cap(tmp_path: Path, pg_url: str) -> None:
    """Two servers on one PostgreSQL database, `--max-sessions 2` each: the cap
    is on the database's sessions, not each replica's."""
    options = ("--max-sessions", "2", "--session-db", pg_url)
    with server(tmp_path, *options) as a, server(tmp_path, *options) as b:
        on_a, on_b = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        kept = opened(on_a)
        opened(on_b)
        for target in (on_a, on_b):
            assert refused(target).reason == "SESSION_LIMIT"
        assert opened(on_b, kept) == kept  # resumed on the other replica
        with CdsClient(on_b, timeout=10, token=TOKEN) as cds:
            cds.delete_session(kept)
        opened(on_a)
        assert refused(on_b).reason == "SESSION_LIMIT"
