"""Sessions across a knowledge-base upgrade.

A session stored under one knowledge base and resumed under another is told,
on open, what differs from what it last reported (added, updated, withdrawn),
while `current` always comes from the knowledge base now loaded, so it never
holds a withdrawn code. The "previous" knowledge base is simulated: the stored
report is the current conclusions for the session's facts, edited (one
dropped, one with another detail, one code the current knowledge base does not
derive for these facts), filed under version 1.0.0. The tests therefore do not
depend on which rules exist.
"""

from __future__ import annotations

import dataclasses
import io
import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest

import kb
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import CdsClient, Conclusion
from client.cli import main as cli_main
from kb.engine import RulesEngine
from kb.facts import FactIn, validate_facts
from kb.model import Conclusion as KbConclusion
from server.app import RunningServer, ServerConfig, create_server
from server.engine import EngineWorker
from server.sessions import Batch, SessionManager, conclusions_from_json, conclusions_to_json
from server.store import SqliteSessionStore, StoredConclusions, StoredFact, StoredSession
from tests.conftest import StoreFactory
from tests.patients import EXAM, HEADACHE
from tests.test_sessions import PATIENT, RawStream, applied, changes, evaluated, imaging

PREVIOUS = "1.0.0"
WITHDRAWN_CODE = "step.percutaneous_intervention"
# Candidate facts for a session: the first set the loaded knowledge base derives
# two conclusions or more from is used (which rules fire is not the point here).
FACT_SETS = ([HEADACHE, EXAM, PATIENT], [HEADACHE, PATIENT], [HEADACHE], [HEADACHE, EXAM])

# The schema before reported conclusions were stored (server/store.py at 5fe3f66).
OLD_SCHEMA = """
CREATE TABLE IF NOT EXISTS sessions (
    id TEXT PRIMARY KEY,
    version INTEGER NOT NULL,
    created_at REAL NOT NULL,
    last_active REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS sessions_by_last_active ON sessions (last_active);
CREATE TABLE IF NOT EXISTS facts (
    session_id TEXT NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    fact_id TEXT NOT NULL,
    position INTEGER NOT NULL,
    type TEXT NOT NULL,
    fields TEXT NOT NULL,
    PRIMARY KEY (session_id, fact_id)
);
"""
NEW_COLUMNS = {"conclusions", "conclusions_version", "conclusions_kb_version"}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(autouse=True)
def upgraded(monkeypatch: pytest.MonkeyPatch) -> str:
    """The loaded knowledge base is a later one than PREVIOUS (2.0.0 once the upgrade lands)."""
    if kb.VERSION == PREVIOUS:
        monkeypatch.setattr(kb, "VERSION", "2.0.0")
    return kb.VERSION


@pytest.fixture(scope="module")
def facts(engine: RulesEngine) -> list[dict[str, Any]]:
    for candidate in FACT_SETS:
        if len(derive(engine, candidate)) >= 2:
            return candidate
    pytest.fail("no fact set in FACT_SETS derives two conclusions: add one that does")


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("upgrade") / "sessions.db"
    running = create_server(ServerConfig(port=0, session_db=str(db)))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def cds(server: RunningServer) -> Iterator[CdsClient]:
    with CdsClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        yield client


def db_path(server: RunningServer) -> Path:
    assert server.sessions is not None
    return Path(server.sessions.store.path)  # type: ignore[attr-defined]


def sql(path: Path, statement: str, *parameters: Any) -> list[tuple[Any, ...]]:
    """One statement on its own connection, as another process would run it."""
    db = sqlite3.connect(path, timeout=10, isolation_level=None)
    try:
        return db.execute(statement, parameters).fetchall()
    finally:
        db.close()


def derive(engine: RulesEngine, facts: Sequence[Mapping[str, Any]]) -> tuple[KbConclusion, ...]:
    """The conclusions the loaded knowledge base derives, as the server holds them."""
    valid = validate_facts([FactIn(f["id"], f["type"], dict(f["fields"])) for f in facts])
    return engine.evaluate(valid).conclusions


def previous_report(current: Sequence[KbConclusion]) -> tuple[list[KbConclusion], str, str]:
    """`current` as an earlier knowledge base might have reported it.

    The first conclusion is missing (so the upgrade adds it), the second has
    another detail (updated) and a code the loaded knowledge base does not
    derive is there (withdrawn). Returns it, the added code and the updated code.
    """
    assert len(current) >= 2, "the test facts must derive two conclusions or more"
    assert WITHDRAWN_CODE not in {c.code for c in current}
    added, updated, *rest = current
    withdrawn = dataclasses.replace(
        updated,
        code=WITHDRAWN_CODE,
        title="Percutaneous intervention",
        detail="Consider a percutaneous intervention (knowledge base 1.0.0).",
    )
    edited = dataclasses.replace(updated, detail=updated.detail + " (worded otherwise in 1.0.0)")
    return [edited, *rest, withdrawn], added.code, updated.code


def file_report(
    server: RunningServer, session_id: str, report: Sequence[KbConclusion], kb_version: str
) -> None:
    """Store `report` as what the session last reported, under `kb_version`."""
    assert server.sessions is not None
    store = server.sessions.store
    state = store.load(session_id)
    assert state is not None
    document = conclusions_to_json(report)
    assert store.record_conclusions(
        session_id, state.version, StoredConclusions(kb_version, document)
    )


def stored(server: RunningServer, session_id: str) -> StoredSession:
    assert server.sessions is not None
    state = server.sessions.store.load(session_id)
    assert state is not None
    return state


def stored_under_previous(
    server: RunningServer, cds: CdsClient, engine: RulesEngine, facts: Sequence[Mapping[str, Any]]
) -> tuple[str, str, str]:
    """A session on `facts` whose last report came from knowledge base PREVIOUS.

    Returns its id, the code the upgrade adds and the code it updates.
    """
    with cds.session() as session:
        applied(session, facts)
    report, added, updated = previous_report(derive(engine, facts))
    file_report(server, session.session_id, report, PREVIOUS)
    return session.session_id, added, updated


# ---------------------------------------------------------------- upgrade on open


def test_resume_under_a_new_knowledge_base_reports_what_changed(
    server: RunningServer,
    cds: CdsClient,
    engine: RulesEngine,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    session_id, added, updated = stored_under_previous(server, cds, engine, facts)
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        raw = RawStream(pb_grpc.DecisionSupportServiceStub(channel))
        raw.send(open=pb.OpenSession(session_id=session_id))
        opened = raw.next().opened
        raw.close()

    assert (opened.version, opened.knowledge_base_version) == (1, upgraded)
    assert opened.previous_knowledge_base_version == PREVIOUS
    assert WITHDRAWN_CODE not in {c.code for c in opened.current}, "never a withdrawn code"
    assert {c.code: c.detail for c in opened.current} == {
        code: c.detail for code, c in evaluated(cds, facts).items()
    }
    kinds = [(pb.ChangeType.Name(c.type), c.conclusion.code) for c in opened.knowledge_base_changes]
    assert kinds == [
        ("CHANGE_TYPE_ADDED", added),
        ("CHANGE_TYPE_UPDATED", updated),
        ("CHANGE_TYPE_WITHDRAWN", WITHDRAWN_CODE),
    ]
    assert {c.version for c in opened.knowledge_base_changes} == {1}
    by_code = {c.conclusion.code: c.conclusion for c in opened.knowledge_base_changes}
    current = {c.code: c for c in opened.current}
    assert by_code[added] == current[added]
    assert by_code[updated] == current[updated], "an update carries the conclusion now"
    assert "1.0.0" in by_code[WITHDRAWN_CODE].detail, "a withdrawal carries it as last reported"

    # The refreshed report is stored under the new version; the version still counts batches.
    state = stored(server, session_id)
    assert state.version == 1
    assert state.conclusions is not None
    assert state.conclusions.knowledge_base_version == upgraded
    assert {c.code for c in conclusions_from_json(state.conclusions.document)} == set(current)

    with cds.session(session_id) as again:
        assert again.version == 1
        assert again.knowledge_base_version == upgraded
        assert (again.previous_knowledge_base_version, again.knowledge_base_changes) == ("", [])
        assert again.conclusions == evaluated(cds, facts)


def test_client_session_exposes_the_upgrade(
    server: RunningServer,
    cds: CdsClient,
    engine: RulesEngine,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    session_id, added, updated = stored_under_previous(server, cds, engine, facts)
    with cds.session(session_id) as session:
        assert session.previous_knowledge_base_version == PREVIOUS
        assert session.knowledge_base_version == upgraded
        assert [(c.type, c.conclusion.code, c.version) for c in session.knowledge_base_changes] == [
            ("ADDED", added, 1),
            ("UPDATED", updated, 1),
            ("WITHDRAWN", WITHDRAWN_CODE, 1),
        ]
        assert all(isinstance(c.conclusion, Conclusion) for c in session.knowledge_base_changes)
        # The view is `current`, which the changes are already part of.
        assert WITHDRAWN_CODE not in session.conclusions
        assert session.conclusions == evaluated(cds, facts)


def test_same_knowledge_base_reports_no_changes(
    server: RunningServer,
    cds: CdsClient,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    with cds.session() as session:
        applied(session, facts)
    state = stored(server, session.session_id)
    assert state.conclusions is not None and state.conclusions.knowledge_base_version == upgraded
    with cds.session(session.session_id) as resumed:
        assert (resumed.previous_knowledge_base_version, resumed.knowledge_base_changes) == ("", [])
        assert resumed.version == 1 and resumed.conclusions == evaluated(cds, facts)


def test_a_batch_after_an_upgraded_open_reports_changes_from_current_only(
    server: RunningServer,
    cds: CdsClient,
    engine: RulesEngine,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    session_id, _, _ = stored_under_previous(server, cds, engine, facts)
    with cds.session(session_id) as session:
        assert len(session.knowledge_base_changes) == 3
        before = dict(session.conclusions)
        last = facts[-1]["id"]
        result = applied(session, [imaging("i1")], retract=[last])
        after = evaluated(cds, [*(f for f in facts if f["id"] != last), imaging("i1")])
        expected = {
            *(("ADDED", code) for code in after.keys() - before.keys()),
            *(
                ("UPDATED", code)
                for code in after.keys() & before.keys()
                if after[code] != before[code]
            ),
            *(("WITHDRAWN", code) for code in before.keys() - after.keys()),
        }
        assert set(changes(result)) == expected
        assert len(changes(result)) == len(expected)
        assert ("WITHDRAWN", WITHDRAWN_CODE) not in changes(result), "told once, at open"
        assert session.conclusions == after and session.version == 2
    state = stored(server, session_id)
    assert state.conclusions is not None and state.conclusions.knowledge_base_version == upgraded
    with cds.session(session_id) as resumed:
        assert resumed.knowledge_base_changes == [] and resumed.conclusions == after


# ---------------------------------------------------------------- sessions without a report


def test_a_session_stored_before_reports_were_kept_opens_without_changes(
    server: RunningServer,
    cds: CdsClient,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    with cds.session() as session:
        applied(session, facts)
    oracle = evaluated(cds, facts)
    assert oracle, "the facts must derive something, or 'no report' and 'empty' look alike"
    sql(
        db_path(server),
        "UPDATE sessions SET conclusions = NULL, conclusions_version = NULL,"
        " conclusions_kb_version = NULL WHERE id = ?",
        session.session_id,
    )
    assert stored(server, session.session_id).conclusions is None
    with cds.session(session.session_id) as resumed:
        assert resumed.knowledge_base_version == upgraded
        assert (resumed.previous_knowledge_base_version, resumed.knowledge_base_changes) == ("", [])
        assert resumed.version == 1 and resumed.conclusions == oracle
    state = stored(server, session.session_id)
    assert state.version == 1, "storing the report is not a batch"
    assert state.conclusions is not None, "it has a report from now on"
    assert state.conclusions.knowledge_base_version == upgraded


def test_an_unreadable_report_opens_without_changes(
    server: RunningServer,
    cds: CdsClient,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    with cds.session() as session:
        applied(session, facts)
    document = json.dumps([{"code": WITHDRAWN_CODE, "kind": "NO_SUCH_KIND"}])
    sql(
        db_path(server),
        "UPDATE sessions SET conclusions = ?, conclusions_kb_version = ? WHERE id = ?",
        document,
        PREVIOUS,
        session.session_id,
    )
    with cds.session(session.session_id) as resumed:
        assert (resumed.previous_knowledge_base_version, resumed.knowledge_base_changes) == ("", [])
        assert resumed.conclusions == evaluated(cds, facts)
    state = stored(server, session.session_id)
    assert state.conclusions is not None and state.conclusions.knowledge_base_version == upgraded


def test_old_database_file_gains_the_columns_and_its_sessions_open(
    tmp_path: Path,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.executescript(OLD_SCHEMA)
        session_id = "old-session-0123456789abcdef"
        now = time.time()  # recent, or the server's first sweep would expire it
        db.execute(
            "INSERT INTO sessions (id, version, created_at, last_active) VALUES (?, 3, ?, ?)",
            (session_id, now, now),
        )
        for position, fact in enumerate(facts):
            db.execute(
                "INSERT INTO facts (session_id, fact_id, position, type, fields)"
                " VALUES (?, ?, ?, ?, ?)",
                (session_id, fact["id"], position, fact["type"], json.dumps(fact["fields"])),
            )
    finally:
        db.close()
    assert not NEW_COLUMNS & {row[1] for row in sql(path, "PRAGMA table_info(sessions)")}

    running = create_server(ServerConfig(port=0, session_db=str(path)))
    try:
        columns = {row[1] for row in sql(path, "PRAGMA table_info(sessions)")}
        assert columns >= NEW_COLUMNS
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10) as cds:
            with cds.session(session_id) as resumed:
                assert resumed.version == 3 and resumed.knowledge_base_version == upgraded
                assert resumed.previous_knowledge_base_version == ""
                assert resumed.knowledge_base_changes == []
                assert resumed.conclusions == evaluated(cds, facts)
                applied(resumed, [imaging("i1")])
                assert resumed.version == 4
            with cds.session(session_id) as again:
                assert again.version == 4 and again.knowledge_base_changes == []
                assert again.conclusions == evaluated(cds, [*facts, imaging("i1")])
            with cds.session() as new:  # a session created in the migrated file
                applied(new, facts)
        state = running.sessions.store.load(session_id)  # type: ignore[union-attr]
        assert state is not None and state.conclusions is not None
    finally:
        running.stop(grace=1)
    reopened = SqliteSessionStore(path)  # the columns exist now: nothing to add
    try:
        assert {row[1] for row in sql(path, "PRAGMA table_info(sessions)")} == columns
    finally:
        reopened.close()


def test_processes_opening_an_old_file_together_add_each_column_once(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    db = sqlite3.connect(path, isolation_level=None)
    db.executescript(OLD_SCHEMA)
    db.close()
    barrier = threading.Barrier(6)
    stores: list[SqliteSessionStore] = []
    failures: list[BaseException] = []

    def open_store() -> None:
        barrier.wait()
        try:
            stores.append(SqliteSessionStore(path))
        except BaseException as error:
            failures.append(error)

    threads = [threading.Thread(target=open_store) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    try:
        assert failures == []
        names = [row[1] for row in sql(path, "PRAGMA table_info(sessions)")]
        assert sorted(n for n in names if n in NEW_COLUMNS) == sorted(NEW_COLUMNS)
    finally:
        for store in stores:
            store.close()


# ---------------------------------------------------------------- the store


def raw_sql(factory: StoreFactory, statement: str) -> None:
    """One statement on the factory's database, behind the stores' backs."""
    if factory.kind == "sqlite":  # type: ignore[attr-defined]
        sql(Path(factory.location), statement)  # type: ignore[attr-defined]
    else:
        from tests import postgres

        postgres.query(factory.location, statement)  # type: ignore[attr-defined]


def test_store_keeps_the_report_of_the_current_version_only(store_factory: StoreFactory) -> None:
    store = store_factory()
    first, second = StoredConclusions("1.0.0", '["first"]'), StoredConclusions("2.0.0", '["2nd"]')
    try:
        store.create("s1", now=1.0, conclusions=first)
        assert store.load("s1") == StoredSession("s1", 0, (), first)
        fact = StoredFact("a", "imaging", {"n": 1})
        assert store.commit("s1", 0, [], [fact], now=2.0, conclusions=second) == 1
        loaded = store.load("s1")
        assert loaded is not None and loaded.conclusions == second
        # Conditional on the version, and never a batch of its own.
        assert not store.record_conclusions("s1", 0, first)
        assert not store.record_conclusions("nope", 1, first)
        assert store.record_conclusions("s1", 1, first)
        assert store.load("s1") == StoredSession("s1", 1, (fact,), first)
        opened = store.open("s1", now=3.0)
        assert opened is not None and opened.conclusions == first
        # A commit without a report leaves the session without one.
        assert store.commit("s1", 1, ["a"], [], now=4.0) == 2
        loaded = store.load("s1")
        assert loaded is not None and loaded.conclusions is None
        # A report left behind by a writer that did not store one is not the session's.
        assert store.commit("s1", 2, [], [], now=5.0, conclusions=second) == 3
        raw_sql(store_factory, "UPDATE sessions SET version = version + 1 WHERE id = 's1'")
        loaded = store.load("s1")
        assert loaded is not None and (loaded.version, loaded.conclusions) == (4, None)
    finally:
        store.close()


def test_conclusions_round_trip_through_json(
    engine: RulesEngine, facts: list[dict[str, Any]]
) -> None:
    current = derive(engine, facts)
    assert current
    assert conclusions_from_json(conclusions_to_json(current)) == current
    for bad in ("", "{}", "[1]", '[{"code": "x"}]'):
        with pytest.raises(ValueError):
            conclusions_from_json(bad)


class _RacingStore:
    """Another writer commits a batch right after this process reads the session."""

    racing = False

    def __init__(self, store: Any) -> None:
        self._store = store

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    def open(self, session_id: str, now: float) -> StoredSession | None:
        state = self._store.open(session_id, now)
        if self.racing and state is not None:
            self.racing = False
            report = StoredConclusions("9.9.9-other-writer", "[]")
            self._store.commit(session_id, state.version, [], [], now, report)
        return state


def test_refreshed_report_is_not_stored_over_a_newer_version(
    store_factory: StoreFactory,
    engine: RulesEngine,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    worker = EngineWorker()
    worker.wait_ready(60)
    store = _RacingStore(store_factory())
    manager = SessionManager(store, worker, max_facts=500)  # type: ignore[arg-type]
    try:
        created = manager.open("", lambda: False)
        manager.release(created.session_id)
        session_id = created.session_id
        batch = Batch(facts=tuple(FactIn(f["id"], f["type"], dict(f["fields"])) for f in facts))
        manager.apply(session_id, batch, (), lambda: False)
        report, _, _ = previous_report(derive(engine, facts))
        assert store.record_conclusions(
            session_id, 1, StoredConclusions(PREVIOUS, conclusions_to_json(report))
        )
        store.racing = True
        snapshot = manager.open(session_id, lambda: False)
        manager.release(session_id)
        assert snapshot.version == 1 and snapshot.previous_knowledge_base_version == PREVIOUS
        assert len(snapshot.knowledge_base_changes) == 3
        state = store.load(session_id)
        assert state is not None and state.version == 2
        assert state.conclusions == StoredConclusions("9.9.9-other-writer", "[]"), (
            "the other writer's report stands"
        )
    finally:
        store.close()
        worker.stop()


# ---------------------------------------------------------------- erasure


def test_delete_session_erases_the_reported_conclusions(
    server: RunningServer,
    cds: CdsClient,
    engine: RulesEngine,
    facts: list[dict[str, Any]],
) -> None:
    files = [Path(f"{db_path(server)}{suffix}") for suffix in ("", "-wal", "-shm")]
    fact_id, detail = "sentinel-fact-77e1", "SENTINEL-DETAIL-4b9a"

    def readable() -> set[str]:
        found = set()
        for f in files:
            if f.exists():
                data = f.read_bytes()
                found |= {s for s in (fact_id, detail) if s.encode() in data}
        return found

    with cds.session() as keep:
        applied(keep, facts)
    marked = [{**facts[0], "id": fact_id}, *facts[1:]]
    with cds.session() as session:
        applied(session, marked)
    current = derive(engine, marked)
    assert current
    report = [dataclasses.replace(c, detail=f"{c.detail} {detail}") for c in current]
    file_report(server, session.session_id, report, PREVIOUS)
    state = stored(server, session.session_id)
    assert state.conclusions is not None and detail in state.conclusions.document
    assert readable() == {fact_id, detail}, "both are stored before the deletion"
    cds.delete_session(session.session_id)
    assert readable() == set(), "erased from the database file and its write-ahead log"
    with cds.session(keep.session_id) as other:
        assert other.version == 1 and other.conclusions == evaluated(cds, facts)


# ---------------------------------------------------------------- command line


def test_cli_prints_the_upgrade(
    server: RunningServer,
    cds: CdsClient,
    engine: RulesEngine,
    tmp_path: Path,
    upgraded: str,
    facts: list[dict[str, Any]],
) -> None:
    timeline = tmp_path / "t.jsonl"
    timeline.write_text(json.dumps({"description": "again", "assert": [PATIENT]}) + "\n")
    target = f"127.0.0.1:{server.port}"

    session_id, added, updated = stored_under_previous(server, cds, engine, facts)
    out = io.StringIO()
    args = ["--target", target, "session", str(timeline), f"--session-id={session_id}"]
    assert cli_main([*args, "--no-delay"], stdout=out) == 0
    lines = out.getvalue().splitlines()
    head = lines.index(f"knowledge base upgraded from {PREVIOUS} to {upgraded}: 3 change(s)")
    assert lines[head - 1].startswith(f"session {session_id} at version 1")
    printed = [line.split() for line in lines[head + 1 : head + 7 : 2]]  # a title follows each
    assert [(words[0], words[1], words[-1]) for words in printed] == [
        ("+", "ADDED", added),
        ("~", "UPDATED", updated),
        ("-", "WITHDRAWN", WITHDRAWN_CODE),
    ]

    out = io.StringIO()
    assert cli_main([*args, "--no-delay"], stdout=out) == 0
    assert "upgraded" not in out.getvalue(), "reported once"

    session_id, added, updated = stored_under_previous(server, cds, engine, facts)
    out = io.StringIO()
    args = ["--target", target, "session", str(timeline), f"--session-id={session_id}", "--json"]
    assert cli_main(args, stdout=out) == 0
    opened = json.loads(out.getvalue().splitlines()[0])
    assert opened["event"] == "opened"
    assert opened["previous_knowledge_base_version"] == PREVIOUS
    assert opened["knowledge_base_version"] == upgraded
    assert [(c["type"], c["code"], c["version"]) for c in opened["knowledge_base_changes"]] == [
        ("ADDED", added, 1),
        ("UPDATED", updated, 1),
        ("WITHDRAWN", WITHDRAWN_CODE, 1),
    ]
