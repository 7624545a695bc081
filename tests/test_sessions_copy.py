"""`python -m server.sessions_copy`: moving sessions from a SQLite file to PostgreSQL."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path
from typing import Any

from server.sessions_copy import main
from server.store import SqliteSessionStore, StoredConclusions, StoredFact
from server.store_postgres import PostgresSessionStore
from tests import postgres

ROOT = Path(__file__).resolve().parents[1]
REPORT = StoredConclusions("1.0.0", '[{"code": "x"}]')


def fact(fact_id: str, n: Any = 1) -> StoredFact:
    return StoredFact(fact_id, "imaging", {"n": n, "nested": {"list": [1, "two"]}})


def dump(url: str) -> list[Any]:
    """Everything in the target's tables, for 'nothing changed' comparisons."""
    return [
        postgres.query(url, "SELECT * FROM sessions ORDER BY id"),
        postgres.query(url, "SELECT * FROM facts ORDER BY session_id, position"),
    ]


def copy(source: Path | str, target: str) -> tuple[int, str]:
    out = io.StringIO()
    status = main(["--from", str(source), "--to", target], stdout=out)
    return status, out.getvalue()


def test_copy_is_complete_and_idempotent(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "sessions.db"
    source = SqliteSessionStore(db)
    try:
        source.create("with-report", now=10.0, conclusions=REPORT)
        source.commit("with-report", 0, [], [fact("a"), fact("b"), fact("c")], 11.0, REPORT)
        source.commit("with-report", 1, ["a"], [fact("b", 2), fact("a", 3)], 12.0, REPORT)
        source.create("empty", now=13.0)
        source.create("no-report", now=14.0)
        source.commit("no-report", 0, [], [fact("z")], now=15.0)
        expected = {session_id: source.export(session_id) for session_id in source.session_ids()}
    finally:
        source.close()

    status, out = copy(db, pg_url)
    assert status == 0, out
    assert "3 session(s)" in out and "3 copied" in out
    target = PostgresSessionStore(pg_url)
    try:
        assert {session_id: target.export(session_id) for session_id in expected} == expected
        loaded = target.load("with-report")
        assert loaded is not None and [f.id for f in loaded.facts] == ["b", "c", "a"]
        assert loaded.version == 2 and loaded.conclusions == REPORT
        before = dump(pg_url)

        status, out = copy(db, pg_url)  # again: nothing changes
        assert status == 0 and "3 unchanged" in out, out
        assert dump(pg_url) == before

        # The target moves on (a replica wrote there); the source moves on too.
        assert target.commit("with-report", 2, [], [fact("d")], now=20.0) == 3
        source = SqliteSessionStore(db)
        try:
            assert source.commit("no-report", 1, [], [fact("y")], now=21.0) == 2
            assert source.commit("with-report", 2, [], [fact("e")], now=21.0) == 3  # diverged
        finally:
            source.close()
        status, out = copy(db, pg_url)
        assert status == 1, "a diverged session is reported"
        assert "1 replaced" in out and "1 unchanged" in out and "1 conflict" in out, out
        assert target.version_of("no-report") == 2
        kept = target.load("with-report")
        assert kept is not None and kept.facts[-1].id == "d", "the target's session stands"
    finally:
        target.close()
    assert "secret" not in out


def test_command_line_and_bad_arguments(tmp_path: Path, pg_url: str) -> None:
    db = tmp_path / "s.db"
    store = SqliteSessionStore(db)
    store.create("s", now=1.0)
    store.close()
    run = subprocess.run(
        [sys.executable, "-m", "server.sessions_copy", "--from", str(db), "--to", pg_url],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 0, run.stderr
    assert "1 session(s)" in run.stdout and "1 copied" in run.stdout
    # Back from PostgreSQL into a new file works the same way.
    status, out = copy(pg_url, str(tmp_path / "back.db"))
    assert status == 0 and "1 copied" in out
    status, _ = copy(tmp_path / "missing.db", pg_url)
    assert status == 2 and not (tmp_path / "missing.db").exists()
