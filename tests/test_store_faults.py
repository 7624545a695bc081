"""The session database changing under a running server (issue 14, item 4).

With a real `python -m server` process:

- (a) a database file the service user cannot write: start-up logs one error
  naming the file and the reason, Evaluate serves, session calls answer
  UNAVAILABLE; once the file is writable again, sessions work without a
  restart.
- (b) the database files deleted while the server runs: the next batch on an
  open session and a new session answer UNAVAILABLE (never BatchApplied into
  a deleted file), no empty database appears in its place, the error names
  the file and the reason; once the file is restored, sessions work again
  without a restart. Every file the store creates is 0600.

And the same rules on the store itself, in this process.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import signal
import sqlite3
import stat
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest

from client.api import BatchApplied, CdsClient, CdsError, Session
from server.app import ServerConfig, create_server
from server.resilient_store import ReopeningSessionStore
from server.store import SqliteSessionStore, StoredFact, StoreError, StoreUnusable
from tests.patients import EXAM, HEADACHE, patient
from tests.test_sessions_process import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
BASE = [patient(44), HEADACHE, EXAM]
SUFFIXES = ("", "-wal", "-shm")
# ReopeningSessionStore tries again at most every 5 s: wait a little longer.
RECOVERY_SECONDS = 20.0

T = TypeVar("T")


def imaging(n: int) -> dict[str, Any]:
    fields = {"modality": "ct", "region": "brain", "finding": "normal"}
    return {"id": f"i{n}", "type": "imaging", "fields": fields}


def unavailable(error: CdsError) -> bool:
    return (error.code, error.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")


def modes(db: Path) -> dict[str, int]:
    return {
        suffix: stat.S_IMODE(Path(f"{db}{suffix}").stat().st_mode)
        for suffix in SUFFIXES
        if Path(f"{db}{suffix}").exists()
    }


def eventually(attempt: Callable[[], T], seconds: float = RECOVERY_SECONDS) -> T:
    """`attempt()` once it stops answering UNAVAILABLE / STORE_UNAVAILABLE."""
    deadline = time.monotonic() + seconds
    while True:
        try:
            return attempt()
        except CdsError as error:
            if not unavailable(error) or time.monotonic() > deadline:
                raise
        time.sleep(0.5)


@contextmanager
def server_process(db: Path, log: Path, user: list[str] | None = None) -> Iterator[Any]:
    """`python -m server --workers 1 --session-db db`, optionally as another user
    (`user`: a command prefix); yields (process, target); stops it with SIGTERM."""
    port = free_port()
    command = [sys.executable, "-m", "server", "--port", str(port), "--workers", "1"]
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [*(user or []), *command, "--session-db", str(db)],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,  # its own process group: the supervisor and its worker
        )
    try:
        wait_until_serving(f"127.0.0.1:{port}", process)
        yield process, f"127.0.0.1:{port}"
        assert process.poll() is None, "still running: no crash, no restart"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


def log_lines(log: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]


def errors_naming(log: Path, *words: str) -> list[str]:
    return [
        line["message"]
        for line in log_lines(log)
        if line["level"] == "ERROR" and all(word in line["message"] for word in words)
    ]


def stored_version(db: Path, session_id: str) -> int | None:
    store = SqliteSessionStore(db, create=False)
    try:
        stored = store.load(session_id)
        return None if stored is None else stored.version
    finally:
        store.close()


# ---------------------------------------------------------------- (a) a file it cannot write


def _unprivileged() -> tuple[list[str], int, int] | None:
    """A command prefix that runs the server as a user who cannot write root's files,
    with that user's uid and gid; [] when we are not root (permission bits apply)."""
    if os.geteuid() != 0:
        return [], os.getuid(), os.getgid()
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        return None
    nobody = pwd.getpwnam("nobody")
    prefix = [setpriv, f"--reuid={nobody.pw_uid}", f"--regid={nobody.pw_gid}", "--clear-groups"]
    probe = subprocess.run([*prefix, sys.executable, "-c", "import server.app"], cwd=ROOT)
    return (prefix, nobody.pw_uid, nobody.pw_gid) if probe.returncode == 0 else None


def test_a_database_the_server_cannot_write_is_an_error_then_recovers(tmp_path: Path) -> None:
    unprivileged = _unprivileged()
    if unprivileged is None:
        pytest.skip("cannot run the server as an unprivileged user (no setpriv, or it fails)")
    user, uid, gid = unprivileged
    # The service user's folder; tmp_path's parents are root's alone.
    folder = Path(tempfile.mkdtemp(prefix="cds-store-faults-"))
    try:
        os.chown(folder, uid, gid)
        db = folder / "sessions.db"
        # A database with one session, then owned by someone else and read-only
        # to the service user (say, restored from a backup by root).
        writer = create_server(ServerConfig(port=0, session_db=str(db)))
        try:
            with CdsClient(f"127.0.0.1:{writer.port}", timeout=10) as cds, cds.session() as kept:
                assert kept.apply(BASE).applied
        finally:
            writer.stop(grace=1)
        for suffix in SUFFIXES[1:]:
            Path(f"{db}{suffix}").unlink(missing_ok=True)  # left by nothing but a crash
        if os.geteuid() == 0:
            os.chmod(db, 0o644)  # root's, readable by the service user, not writable
        else:
            os.chmod(db, 0o444)
        log = tmp_path / "server.log"
        with server_process(db, log, user) as (_, target), CdsClient(target, timeout=10) as cds:
            assert list(cds.evaluate(BASE)), "Evaluate needs no database"
            for attempt in (lambda: cds.session(), lambda: cds.session(kept.session_id)):
                with pytest.raises(CdsError) as raised:
                    attempt()
                assert unavailable(raised.value), raised.value
            assert errors_naming(log, str(db), "not writable"), log.read_text()

            # The operator fixes the ownership: sessions work, no restart.
            os.chown(db, uid, gid)
            os.chmod(db, 0o600)
            resumed: Session = eventually(lambda: cds.session(kept.session_id))
            with resumed:
                assert resumed.version == 1
                applied = resumed.apply([imaging(1)]).outcome
                assert isinstance(applied, BatchApplied) and applied.version == 2
            with cds.session() as fresh:
                assert fresh.apply(BASE).applied
            assert modes(db) == dict.fromkeys(SUFFIXES, 0o600)
        assert any(line["message"] == f"session database {db} opened" for line in log_lines(log)), (
            log.read_text()
        )
        assert stored_version(db, kept.session_id) == 2
        assert stored_version(db, fresh.session_id) == 1
    finally:
        shutil.rmtree(folder, ignore_errors=True)


# ---------------------------------------------------------------- (b) files deleted while running


def test_database_files_deleted_while_running_lose_no_acknowledged_batch(tmp_path: Path) -> None:
    db = tmp_path / "data" / "sessions.db"  # the folder does not exist yet: the server makes it
    backup = tmp_path / "backup.db"
    log = tmp_path / "server.log"
    with server_process(db, log) as (process, target), CdsClient(target, timeout=10) as cds:
        session = cds.session()
        assert session.apply(BASE).applied
        assert modes(db) == dict.fromkeys(SUFFIXES, 0o600), "created 0600, -wal and -shm too"
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
        with sqlite3.connect(db) as source, sqlite3.connect(backup) as copy:
            source.backup(copy)  # the operator's backup, at version 1
        source.close()
        copy.close()
        os.chmod(backup, 0o600)

        for suffix in SUFFIXES:  # rm sessions.db sessions.db-wal sessions.db-shm
            Path(f"{db}{suffix}").unlink()

        with pytest.raises(CdsError) as raised:
            session.apply([imaging(1)])  # today: BatchApplied v2, into the deleted file
        assert unavailable(raised.value), raised.value
        with pytest.raises(CdsError) as raised:
            cds.session()  # today: a new session in a fresh, empty file
        assert unavailable(raised.value), raised.value
        assert not any(Path(f"{db}{suffix}").exists() for suffix in SUFFIXES), (
            "no empty database in place of the deleted one"
        )
        assert errors_naming(log, str(db), "deleted or replaced"), log.read_text()

        # A worker started now (the supervisor replaces one that died) must not
        # create an empty database either: only the supervisor does, at start.
        (worker,) = children(process.pid)
        os.kill(worker, signal.SIGKILL)
        deadline = time.monotonic() + 15
        while [pid for pid in children(process.pid) if pid != worker] == []:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.1)
        wait_until_serving(target, process)
        with pytest.raises(CdsError) as raised:
            cds.session()
        assert unavailable(raised.value), raised.value
        assert not any(Path(f"{db}{suffix}").exists() for suffix in SUFFIXES), (
            "a replacement worker created an empty database"
        )

        # The operator restores the backup: sessions work again, no restart.
        os.replace(backup, db)
        resumed: Session = eventually(lambda: cds.session(session.session_id))
        with resumed:
            assert resumed.version == 1, "as of the backup: version 2 was never acknowledged"
            applied = resumed.apply([imaging(1)]).outcome
            assert isinstance(applied, BatchApplied) and applied.version == 2
        with cds.session() as fresh:
            assert fresh.apply(BASE).applied
        assert modes(db) == dict.fromkeys(SUFFIXES, 0o600)
    assert stored_version(db, session.session_id) == 2
    assert stored_version(db, fresh.session_id) == 1
    assert not any(session.session_id in line for line in log.read_text().splitlines())


# ---------------------------------------------------------------- the store, in this process


def _session(store: SqliteSessionStore | ReopeningSessionStore, session_id: str = "s") -> None:
    store.create(session_id, now=1.0)
    assert store.commit(session_id, 0, [], [StoredFact("a", "imaging", {"n": 1})], now=2.0) == 1


def test_a_commit_into_a_deleted_file_raises_and_creates_nothing(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteSessionStore(db)
    try:
        _session(store)
        for suffix in SUFFIXES:
            Path(f"{db}{suffix}").unlink()
        with pytest.raises(StoreUnusable, match="deleted or replaced") as raised:
            store.commit("s", 1, [], [StoredFact("b", "imaging", {"n": 2})], now=3.0)
        assert raised.value.path == str(db)
        with pytest.raises(StoreUnusable):
            store.create("t", now=3.0)
        assert not any(Path(f"{db}{suffix}").exists() for suffix in SUFFIXES)
    finally:
        store.close()
    with pytest.raises(StoreUnusable, match="does not exist"):
        SqliteSessionStore(db, create=False)
    assert not db.exists()


def test_a_deleted_write_ahead_log_is_noticed(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = SqliteSessionStore(db)
    try:
        _session(store)
        Path(f"{db}-wal").unlink()
        with pytest.raises(StoreUnusable, match="-wal"):
            store.load("s")
    finally:
        store.close()


def test_a_replaced_file_is_reopened_once_the_old_log_is_gone(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = ReopeningSessionStore(db, retry_seconds=0)
    try:
        _session(store, "old")
        replacement = SqliteSessionStore(tmp_path / "new.db")
        _session(replacement, "new")
        replacement.close()
        os.replace(tmp_path / "new.db", db)  # `mv backup.db sessions.db`, the old -wal stays
        with pytest.raises(StoreUnusable, match="deleted or replaced"):
            store.commit("old", 1, [], [], now=3.0)
        assert not store.available
        # The old file's log must not be read into the new file.
        with pytest.raises(StoreError, match="-wal belongs to the database file that was"):
            store.load("new")
        for suffix in SUFFIXES[1:]:
            os.replace(f"{db}{suffix}", tmp_path / f"old{suffix}")
        _session(store, "other")  # reopened from the path: the replacement
        assert store.load("old") is None
        loaded = store.load("new")
        assert loaded is not None and loaded.version == 1
        assert store.available
        assert all(Path(f"{db}{suffix}").exists() for suffix in SUFFIXES), (
            "closing the connections to the replaced file deleted none of the new one's"
        )
    finally:
        store.close()
    assert stored_version(db, "other") == 1
    assert stored_version(db, "new") == 1


def test_a_file_moved_away_and_back_is_reopened(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = ReopeningSessionStore(db, retry_seconds=0)
    try:
        _session(store)
        os.replace(db, tmp_path / "elsewhere.db")
        with pytest.raises(StoreUnusable, match="deleted or replaced"):
            store.load("s")
        with pytest.raises(StoreError, match="-wal belongs to the database file that was"):
            store.load("s")  # the file is gone, its log is still here: it goes with the file
        os.replace(tmp_path / "elsewhere.db", db)
        assert store.commit("s", 1, [], [], now=3.0) == 2
    finally:
        store.close()
    assert stored_version(db, "s") == 2


def test_a_reopening_store_never_recreates_a_database_once_open(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    store = ReopeningSessionStore(db, retry_seconds=0)
    try:
        _session(store)
        for suffix in SUFFIXES:
            Path(f"{db}{suffix}").unlink()
        for _ in range(3):
            with pytest.raises(StoreError):
                store.create("t", now=3.0)
        assert not db.exists()
    finally:
        store.close()


def test_files_are_created_0600_whatever_the_umask(tmp_path: Path) -> None:
    db = tmp_path / "new" / "s.db"
    previous = os.umask(0)
    try:
        store = SqliteSessionStore(db)
    finally:
        os.umask(previous)
    try:
        _session(store)
        assert modes(db) == dict.fromkeys(SUFFIXES, 0o600)
        assert stat.S_IMODE(db.parent.stat().st_mode) == 0o700
    finally:
        store.close()


@contextmanager
def read_only(path: Path) -> Iterator[None]:
    """`path` unwritable to this process: mode 0400, or for root (whom modes do not
    stop) the immutable attribute."""
    if os.geteuid() != 0:
        os.chmod(path, 0o400)
        yield
        return
    chattr = shutil.which("chattr")
    if chattr is None or subprocess.run([chattr, "+i", str(path)]).returncode != 0:
        pytest.skip("running as root without chattr +i: cannot make a file unwritable to root")
    try:
        yield
    finally:
        subprocess.run([chattr, "-i", str(path)], check=True)


def test_an_unwritable_file_is_refused_when_opened_then_opens(tmp_path: Path) -> None:
    db = tmp_path / "s.db"
    SqliteSessionStore(db).close()
    with read_only(db):
        with pytest.raises(StoreUnusable, match=r"s\.db is not writable"):
            SqliteSessionStore(db)
        store = ReopeningSessionStore(db, retry_seconds=0)
        assert not store.available
        with pytest.raises(StoreError, match="not writable"):
            store.create("s", now=1.0)
    try:
        _session(store)  # writable again: opened on demand
    finally:
        store.close()
