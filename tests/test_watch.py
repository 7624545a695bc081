"""WatchSession: a read-only subscriber sees every batch any writer commits.

The watcher's view must always equal the writer's: after each `BatchApplied`
at version v, the snapshot plus every change received is exactly the set of
conclusions the session holds at v. Across processes: two server processes
sharing one SQLite file (a watcher polls), and two replicas sharing one
PostgreSQL database (LISTEN/NOTIFY).
"""

from __future__ import annotations

import json
import queue
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from client.api import (
    BatchApplied,
    CdsClient,
    CdsError,
    ConclusionChange,
    SessionSnapshot,
)
from server.app import RunningServer, ServerConfig, create_server
from server.store import SqliteSessionStore
from tests.patients import EXAM, HEADACHE, NEGATIVE_SCREEN, patient
from tests.test_hardening_ii import TOKEN, server

ROOT = Path(__file__).resolve().parents[1]
WAIT = 10.0  # seconds an expected event may take, at most


class Watcher:
    """Follows a session on a thread of its own; events and the ending error
    arrive on a queue. Applies every change to `view`, as a pipeline would."""

    def __init__(self, target: str, session_id: str, token: str | None = None) -> None:
        self.events: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self.view: dict[str, str] = {}  # code -> detail
        self.version = -1
        self._client = CdsClient(target, timeout=WAIT, token=token)
        self._watch = self._client.watch(session_id)
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        try:
            for event in self._watch:
                self.events.put(event)
        except CdsError as error:
            self.events.put(error)
        except Exception as error:  # the test fails on it, with its type
            self.events.put(error)

    def next(self) -> Any:
        event = self.events.get(timeout=WAIT)
        if isinstance(event, SessionSnapshot):
            self.view = {c.code: c.detail for c in event.conclusions}
            self.version = event.version
        elif isinstance(event, ConclusionChange):
            if event.type == "WITHDRAWN":
                del self.view[event.conclusion.code]
            else:
                self.view[event.conclusion.code] = event.conclusion.detail
        elif isinstance(event, BatchApplied):
            self.version = event.version
        return event

    def until_applied(self) -> tuple[list[ConclusionChange], BatchApplied]:
        changes = []
        while not isinstance(event := self.next(), BatchApplied):
            assert isinstance(event, ConclusionChange), event
            changes.append(event)
        return changes, event

    def close(self) -> None:
        self._client.close()  # cancels the call the thread is reading
        self._thread.join(WAIT)


@pytest.fixture
def running(tmp_path: Path) -> Iterator[RunningServer]:
    running = create_server(ServerConfig(port=0, session_db=str(tmp_path / "s.db")))
    yield running
    running.stop(grace=0)


def target(running: RunningServer) -> str:
    return f"127.0.0.1:{running.port}"


def current(cds: CdsClient, session_id: str) -> dict[str, str]:
    """The session's conclusions as a writer re-opening it sees them."""
    with cds.session(session_id) as session:
        return {code: c.detail for code, c in session.conclusions.items()}


def test_a_watcher_sees_each_batch_exactly_as_the_writer_does(running: RunningServer) -> None:
    with CdsClient(target(running), timeout=WAIT) as cds, cds.session() as writer:
        watcher = Watcher(target(running), writer.session_id)
        try:
            snapshot = watcher.next()
            assert isinstance(snapshot, SessionSnapshot)
            assert (snapshot.session_id, snapshot.version) == (writer.session_id, 0)
            assert watcher.view == {code: c.detail for code, c in writer.conclusions.items()}
            types = set()
            batches = [
                ([patient(40), HEADACHE], []),
                ([EXAM, NEGATIVE_SCREEN], []),
                ([], [HEADACHE["id"]]),  # withdrawals
                ([HEADACHE], []),
            ]
            for number, (facts, retract) in enumerate(batches, start=1):
                result = writer.apply(facts, retract)
                assert result.applied
                changes, applied = watcher.until_applied()
                assert applied.version == number
                assert [(c.type, c.conclusion.code, c.version) for c in changes] == [
                    (c.type, c.conclusion.code, c.version) for c in result.changes
                ], "the watcher gets the writer's own changes, in the same order"
                assert watcher.view == {code: c.detail for code, c in writer.conclusions.items()}
                types |= {c.type for c in changes}
            assert {"ADDED", "WITHDRAWN"} <= types
        finally:
            watcher.close()


def test_deleting_the_session_ends_its_watchers_with_not_found(running: RunningServer) -> None:
    with CdsClient(target(running), timeout=WAIT) as cds:
        with cds.session() as writer:
            session_id = writer.session_id
        watchers = [Watcher(target(running), session_id) for _ in range(2)]
        try:
            for watcher in watchers:
                assert isinstance(watcher.next(), SessionSnapshot)
            cds.delete_session(session_id)
            for watcher in watchers:
                ended = watcher.events.get(timeout=WAIT)
                assert isinstance(ended, CdsError) and ended.code == "NOT_FOUND"
                assert ended.reason == "SESSION_NOT_FOUND"
        finally:
            for watcher in watchers:
                watcher.close()


@pytest.mark.parametrize("session_id", ["", "no-such-session", "x" * 32])
def test_an_unknown_session_is_not_found(running: RunningServer, session_id: str) -> None:
    with CdsClient(target(running), timeout=WAIT) as cds, pytest.raises(CdsError) as error:
        next(cds.watch(session_id))
    assert error.value.code == "NOT_FOUND" and error.value.reason == "SESSION_NOT_FOUND"


def test_a_watcher_that_fell_behind_gets_a_fresh_snapshot(
    running: RunningServer, tmp_path: Path
) -> None:
    """Two batches committed while the watcher cannot read (its process's loop
    is busy; another process writes the file): it gets one snapshot at the
    newer version, never the older batch's changes alone."""
    with CdsClient(target(running), timeout=WAIT) as cds, cds.session() as writer:
        session_id = writer.session_id
    watcher = Watcher(target(running), session_id)
    other = SqliteSessionStore(tmp_path / "s.db")  # as another worker process would
    try:
        assert watcher.next().version == 0
        loop_free = threading.Event()
        running.worker.loop.call_soon_threadsafe(loop_free.wait, WAIT)  # hold the loop
        try:
            for version, fact in ((0, patient(40)), (1, HEADACHE)):
                stored = {"id": fact["id"], "type": fact["type"], "fields": fact["fields"]}
                other.commit(session_id, version, [], [_stored(stored)], now=time.time())
        finally:
            loop_free.set()
        snapshot = watcher.next()
        assert isinstance(snapshot, SessionSnapshot) and snapshot.version == 2
        with CdsClient(target(running), timeout=WAIT) as cds:
            assert watcher.view == current(cds, session_id)
    finally:
        other.close()
        watcher.close()


def _stored(fact: dict[str, Any]) -> Any:
    from server.store import StoredFact

    return StoredFact(fact["id"], fact["type"], fact["fields"])


def test_watching_keeps_no_session_from_expiring(tmp_path: Path) -> None:
    running = create_server(
        ServerConfig(port=0, session_db=str(tmp_path / "s.db"), session_ttl_seconds=1.0)
    )
    try:
        with CdsClient(target(running), timeout=WAIT) as cds:
            with cds.session() as writer:
                session_id = writer.session_id
            watcher = Watcher(target(running), session_id)
            try:
                assert isinstance(watcher.next(), SessionSnapshot)
                # Idle past the TTL although watched: the sweeper erases it.
                ended = watcher.events.get(timeout=WAIT)
                assert isinstance(ended, CdsError) and ended.code == "NOT_FOUND"
                assert running.sessions is not None
                assert running.sessions.store.load(session_id) is None
            finally:
                watcher.close()
    finally:
        running.stop(grace=0)


def test_watchers_count_against_the_stream_limit(tmp_path: Path) -> None:
    running = create_server(
        ServerConfig(port=0, session_db=str(tmp_path / "s.db"), max_session_streams=2)
    )
    try:
        with CdsClient(target(running), timeout=WAIT) as cds:
            with cds.session() as writer:
                session_id = writer.session_id
            watchers = [Watcher(target(running), session_id) for _ in range(2)]
            for watcher in watchers:
                assert isinstance(watcher.next(), SessionSnapshot)
            with pytest.raises(CdsError) as full:
                cds.session(session_id)
            assert full.value.code == "RESOURCE_EXHAUSTED"
            for watcher in watchers:
                watcher.close()
            deadline = time.monotonic() + WAIT
            while True:  # the server notices the cancelled watches
                try:
                    cds.session(session_id).close()
                    break
                except CdsError:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
    finally:
        running.stop(grace=0)


def test_a_watcher_never_delays_a_writer(running: RunningServer) -> None:
    """A watcher that does not read at all (its messages pile up in flow
    control) leaves batches as fast as without it."""
    with (
        CdsClient(target(running), timeout=WAIT) as cds,
        cds.session() as writer,
        CdsClient(target(running), timeout=WAIT) as other,
    ):
        stalled = other.watch(writer.session_id)
        next(stalled)  # subscribed; never read again
        started = time.monotonic()
        for n in range(200):
            fact = {"id": "p", "type": "patient", "fields": {"age_years": 20 + n % 50}}
            assert writer.apply([fact]).applied
        assert time.monotonic() - started < 30
        stalled.close()


def _watch_lines(target: str, session_id: str, *extra: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "client", "--target", target, *extra, "watch", session_id, "--json"],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _line(process: subprocess.Popen[str]) -> dict[str, Any]:
    assert process.stdout is not None
    result: queue.SimpleQueue[str] = queue.SimpleQueue()
    threading.Thread(target=lambda: result.put(process.stdout.readline()), daemon=True).start()
    line = result.get(timeout=WAIT)
    assert line, "the watch ended early"
    record: dict[str, Any] = json.loads(line)
    return record


def test_cli_watch_prints_json_lines_and_exits_2_when_deleted(running: RunningServer) -> None:
    with (
        CdsClient(target(running), timeout=WAIT) as cds,
        cds.session() as writer,
        _watch_lines(target(running), writer.session_id) as process,
    ):
        try:
            first = _line(process)
            assert first["event"] == "snapshot" and first["version"] == 0
            writer.apply([patient(40), HEADACHE])
            events = [_line(process)]
            while events[-1]["event"] != "applied":
                events.append(_line(process))
            assert events[-1] == {
                "event": "applied",
                "version": 1,
                "knowledge_base_version": first["knowledge_base_version"],
            }
            assert {e["code"] for e in events[:-1]} == set(writer.conclusions)
            cds.delete_session(writer.session_id)
            assert process.wait(WAIT) == 2
            assert process.stderr is not None and "NOT_FOUND" in process.stderr.read()
        except BaseException:
            process.kill()
            raise


def _replicas_see_each_other(tmp_path: Path, *options: str) -> None:
    """Two server processes on one store: a watcher on B sees A's batches as
    A's writer does; a delete on B ends the watcher on A."""
    with server(tmp_path, *options) as a, server(tmp_path, *options) as b:
        on_a, on_b = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
        with CdsClient(on_a, timeout=WAIT, token=TOKEN) as cds, cds.session() as writer:
            session_id = writer.session_id
            on_b_watcher = Watcher(on_b, session_id, token=TOKEN)
            on_a_watcher = Watcher(on_a, session_id, token=TOKEN)
            try:
                for watcher in (on_a_watcher, on_b_watcher):
                    assert isinstance(watcher.next(), SessionSnapshot)
                for facts in ([patient(40), HEADACHE], [EXAM, NEGATIVE_SCREEN]):
                    result = writer.apply(facts)
                    for watcher in (on_b_watcher, on_a_watcher):
                        changes, applied = watcher.until_applied()
                        assert applied.version == writer.version
                        assert [c.conclusion.code for c in changes] == [
                            c.conclusion.code for c in result.changes
                        ]
                        assert watcher.view == {
                            code: c.detail for code, c in writer.conclusions.items()
                        }
            finally:
                on_b_watcher.close()
        with CdsClient(on_b, timeout=WAIT, token=TOKEN) as cds:
            cds.delete_session(session_id)
        ended = on_a_watcher.events.get(timeout=WAIT)
        on_a_watcher.close()
        assert isinstance(ended, CdsError) and ended.code == "NOT_FOUND"


def test_two_processes_on_one_sqlite_file_see_each_others_batches(tmp_path: Path) -> None:
    _replicas_see_each_other(tmp_path)


def test_replicas_on_postgresql_see_each_others_batches(tmp_path: Path, pg_url: str) -> None:
    _replicas_see_each_other(tmp_path, "--session-db", pg_url)
