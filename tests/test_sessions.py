"""StreamSession and DeleteSession against real in-process servers on SQLite files.

Most tests drive the session through the client library (`CdsClient.session`);
the protocol tests use the raw stub. "Fresh Evaluate" is the oracle: after
every applied batch, the conclusions a stream holds (what it was told at
open, with every change it received applied) must equal what `Evaluate`
answers for the session's facts.
"""

from __future__ import annotations

import io
import json
import logging
import queue
import re
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status

import kb
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import (
    KEEPALIVE_OPTIONS as CLIENT_KEEPALIVE,
)
from client.api import (
    BatchApplied,
    BatchRejected,
    CdsClient,
    CdsError,
    Conclusion,
    Session,
)
from client.cli import main as cli_main
from kb.engine import RulesEngine
from kb.facts import FactIn, validate_facts
from server.app import KEEPALIVE_OPTIONS as SERVER_KEEPALIVE
from server.app import RunningServer, ServerConfig, create_server
from server.engine import EngineWorker
from server.sessions import Batch, SessionManager, parse_duration
from server.store import StaleVersion, StoredFact
from tests.conftest import StoreFactory, to_proto_facts
from tests.patients import EXAM, HEADACHE

ROOT = Path(__file__).resolve().parents[1]
TIMELINE = ROOT / "examples" / "timeline-refractory.jsonl"

PATIENT = {"id": "p", "type": "patient", "fields": {"age_years": 35}}
DX = "dx.cervicogenic_headache_supported"


def imaging(fact_id: str) -> dict[str, Any]:
    fields = {"modality": "mri", "region": "brain", "finding": "normal"}
    return {"id": fact_id, "type": "imaging", "fields": fields}


# ---------------------------------------------------------------- fixtures and helpers


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("sessions") / "sessions.db"
    running = create_server(ServerConfig(port=0, session_db=str(db)))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="module")
def cds(server: RunningServer) -> Iterator[CdsClient]:
    with CdsClient(f"127.0.0.1:{server.port}", timeout=10) as client:
        yield client


@pytest.fixture(scope="module")
def stub(server: RunningServer) -> Iterator[pb_grpc.DecisionSupportServiceStub]:
    with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        yield pb_grpc.DecisionSupportServiceStub(channel)


def evaluated(cds: CdsClient, facts: Sequence[Mapping[str, Any]]) -> dict[str, Conclusion]:
    """The oracle: a fresh, stateless Evaluate of these facts."""
    return {e.code: e for e in cds.evaluate(facts) if isinstance(e, Conclusion)}


def applied(session: Session, facts: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> Any:
    result = session.apply(facts, **kwargs)
    assert isinstance(result.outcome, BatchApplied), result.outcome
    return result


def rejected(session: Session, facts: Sequence[Mapping[str, Any]] = (), **kwargs: Any) -> Any:
    result = session.apply(facts, **kwargs)
    assert isinstance(result.outcome, BatchRejected), result.outcome
    assert result.changes == ()
    return result.outcome


def changes(result: Any) -> list[tuple[str, str]]:
    return [(change.type, change.conclusion.code) for change in result.changes]


def rich_info(error: grpc.RpcError) -> error_details_pb2.ErrorInfo:
    status = rpc_status.from_call(error)
    assert status is not None
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "cds.v1"
            return info
    raise AssertionError("no ErrorInfo")


class RawStream:
    """A StreamSession driven message by message through the raw stub."""

    def __init__(self, stub: pb_grpc.DecisionSupportServiceStub) -> None:
        self.requests: queue.SimpleQueue[pb.StreamSessionRequest | None] = queue.SimpleQueue()
        self.call = stub.StreamSession(iter(self.requests.get, None))

    def send(self, **action: Any) -> None:
        self.requests.put(pb.StreamSessionRequest(**action))

    def next(self) -> pb.StreamSessionResponse:
        return next(self.call)

    def batch(self) -> list[pb.StreamSessionResponse]:
        events = []
        while True:
            events.append(self.next())
            if events[-1].WhichOneof("event") in ("applied", "rejected"):
                return events

    def close(self) -> None:
        self.requests.put(None)
        self.call.cancel()


# ---------------------------------------------------------------- lifecycle


def test_lifecycle_open_assert_changes_then_applied_delete(
    cds: CdsClient, stub: pb_grpc.DecisionSupportServiceStub
) -> None:
    raw = RawStream(stub)
    raw.send(open=pb.OpenSession())
    opened = raw.next().opened
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", opened.session_id)  # token_urlsafe(24): 192 bits
    assert (opened.version, list(opened.current)) == (0, [])
    assert opened.knowledge_base_version == kb.VERSION

    raw.send(assert_facts=pb.AssertFacts(facts=to_proto_facts([HEADACHE, EXAM, PATIENT])))
    events = raw.batch()
    assert [e.WhichOneof("event") for e in events] == ["change"] * (len(events) - 1) + ["applied"]
    assert {e.change.type for e in events[:-1]} == {pb.CHANGE_TYPE_ADDED}
    assert {e.change.version for e in events[:-1]} == {1}
    assert events[-1].applied == pb.BatchApplied(version=1, knowledge_base_version=kb.VERSION)
    streamed = {e.change.conclusion.code: e.change.conclusion for e in events[:-1]}
    oracle = evaluated(cds, [HEADACHE, EXAM, PATIENT])
    assert set(streamed) == set(oracle) and DX in streamed

    # Retract the exam and re-assert it under another id: added, updated, withdrawn in order.
    exam2 = {**EXAM, "id": "x2"}
    raw.send(
        assert_facts=pb.AssertFacts(
            facts=to_proto_facts(
                [exam2, {"id": "p", "type": "patient", "fields": {"age_years": 61}}]
            ),
            retract_fact_ids=["x"],
        )
    )
    events = raw.batch()
    order = [e.change.type for e in events[:-1]]
    assert order == sorted(order), "ADDED, then UPDATED, then WITHDRAWN"
    updated = [e.change.conclusion for e in events[:-1] if e.change.type == pb.CHANGE_TYPE_UPDATED]
    assert DX in [c.code for c in updated]
    assert list(next(c for c in updated if c.code == DX).provenance.fact_ids) == ["h", "x2"]
    assert events[-1].applied.version == 2
    raw.close()

    cds.delete_session(opened.session_id)
    with pytest.raises(CdsError) as raised:
        cds.session(opened.session_id)
    assert (raised.value.code, raised.value.reason) == ("NOT_FOUND", "SESSION_NOT_FOUND")


def test_session_ids_are_unique_and_unrelated_to_the_facts(cds: CdsClient) -> None:
    ids = set()
    for _ in range(20):
        with cds.session() as session:
            applied(session, [PATIENT])
            ids.add(session.session_id)
    assert len(ids) == 20
    assert all(len(session_id) >= 22 for session_id in ids)  # >= 128 bits of base64url


def test_withdrawal_on_retract(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM, PATIENT])
        assert DX in session.conclusions
        result = applied(session, retract=["x"])
        assert ("WITHDRAWN", DX) in changes(result)
        withdrawn = next(c.conclusion for c in result.changes if c.conclusion.code == DX)
        assert withdrawn.fact_ids == ("h", "x"), "a withdrawal carries the conclusion as last seen"
        assert session.conclusions == evaluated(cds, [HEADACHE, PATIENT])
        result = session.retract(["h", "p"])
        assert result.applied and session.version == 3
        assert session.conclusions == evaluated(cds, []) == {}


def test_withdrawal_on_replace(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM, PATIENT])
        weaker = {**EXAM, "fields": {"rom_reduced": False, "myofascial_sensitivity": False}}
        result = applied(session, [weaker])  # same id: replaces the exam
        assert ("WITHDRAWN", DX) in changes(result)
        assert session.conclusions == evaluated(cds, [HEADACHE, weaker, PATIENT])
        result = applied(session, [EXAM])
        assert ("ADDED", DX) in changes(result)


def test_updated_when_detail_or_provenance_changes(cds: CdsClient) -> None:
    physio = {
        "id": "t",
        "type": "treatment",
        "fields": {"kind": "physical_therapy", "weeks": 2, "response": "pending"},
    }
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM, PATIENT, physio])
        before = dict(session.conclusions)
        result = applied(session, [{**EXAM, "id": "x2"}], retract=["x"])
        assert changes(result) == [("UPDATED", DX)]
        assert result.changes[0].conclusion.fact_ids == ("h", "x2")
        assert {k: v for k, v in session.conclusions.items() if k != DX} == {
            k: v for k, v in before.items() if k != DX
        }
        result = applied(session, [PATIENT])  # the very same fact again: nothing changes
        assert result.changes == () and session.version == 3


def test_retract_and_assert_are_one_atomic_batch(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM, PATIENT])
        # A second cervical exam is valid only because the first is retracted in the same batch.
        result = applied(session, [{**EXAM, "id": "x2"}], retract=["x"])
        assert session.version == 2 and changes(result) == [("UPDATED", DX)]
        # A valid retraction with an invalid fact: nothing of the batch happens.
        bad = {"id": "p", "type": "patient", "fields": {"age_years": 400}}
        outcome = rejected(session, [bad], retract=["h"])
        assert [field for field, _ in outcome.violations] == ["facts[0].fields.age_years"]
        expected = evaluated(cds, [HEADACHE, {**EXAM, "id": "x2"}, PATIENT])
        assert session.conclusions == expected
    with cds.session(session.session_id) as again:
        assert again.version == 2 and again.conclusions == expected


# ---------------------------------------------------------------- rejections


def test_version_conflict(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [PATIENT], expected_version=0)
        applied(session, [HEADACHE], expected_version=1)
        outcome = rejected(session, [EXAM], expected_version=1)
        assert outcome.reason == "VERSION_CONFLICT"
        assert outcome.violations == (("expected_version", "the session is at version 2"),)
        assert session.version == 2 and DX not in session.conclusions
        result = applied(session, [EXAM], expected_version=2)
        assert session.version == 3 and ("ADDED", DX) in changes(result)
        assert session.retract(["x"], expected_version=7).outcome.reason == "VERSION_CONFLICT"


def test_rejected_batch_keeps_stream_open_and_session_unchanged(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM, PATIENT])
        before = dict(session.conclusions)
        outcome = rejected(
            session,
            [
                {
                    "id": "ok",
                    "type": "imaging",
                    "fields": {"modality": "ct", "region": "brain", "finding": "normal"},
                },
                {
                    "id": "bad",
                    "type": "treatment",
                    "fields": {"kind": "amitriptyline", "weeks": -1, "response": "pending"},
                },
                {"id": "p2", "type": "patient", "fields": {"age_years": 50}},
            ],
            retract=["nope", "h", "h"],
        )
        assert outcome.reason == "FACT_INVALID"
        fields = dict(outcome.violations)
        assert set(fields) == {
            "retract_fact_ids[0]",
            "retract_fact_ids[2]",
            "facts[1].fields.weeks",
            "facts[2].type",
        }
        assert fields["retract_fact_ids[0]"] == "the session holds no fact with this id"
        assert "retract_fact_ids[1]" in fields["retract_fact_ids[2]"]
        # The clash is with a stored fact: named by its id, never by a value.
        assert fields["facts[2].type"] == (
            "at most one 'patient' fact is allowed; this repeats session fact 'p'"
        )
        assert session.retract(["nope"]).outcome.violations == (
            ("fact_ids[0]", "the session holds no fact with this id"),
        )
        assert session.version == 1 and session.conclusions == before
        result = applied(session, retract=["x"])
        assert session.version == 2, "rejected batches do not count as versions"
        assert ("WITHDRAWN", DX) in changes(result)


def test_batch_and_session_limits(cds: CdsClient) -> None:
    with cds.session() as session:
        outcome = rejected(session, [imaging(f"i{n}") for n in range(501)])
        assert (outcome.reason, [f for f, _ in outcome.violations]) == ("LIMIT_EXCEEDED", ["facts"])
        applied(session, [imaging(f"i{n}") for n in range(300)])
        outcome = rejected(session, [imaging(f"j{n}") for n in range(201)])
        assert outcome.reason == "LIMIT_EXCEEDED"
        assert outcome.violations == (("facts", "a session holds at most 500 facts"),)
        applied(session, [imaging(f"j{n}") for n in range(200)])  # exactly 500


# ---------------------------------------------------------------- protocol and errors


def test_first_message_must_be_open(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    batch = pb.StreamSessionRequest(assert_facts=pb.AssertFacts())
    for requests in ([batch], []):
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.StreamSession(iter(requests), timeout=5))
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich_info(raised.value).reason == "OPEN_REQUIRED"


def test_a_second_open_ends_the_stream(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    raw = RawStream(stub)
    raw.send(open=pb.OpenSession())
    raw.next()
    raw.send(open=pb.OpenSession())
    with pytest.raises(grpc.RpcError) as raised:
        raw.next()
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert rich_info(raised.value).reason == "UNEXPECTED_MESSAGE"


@pytest.mark.parametrize(
    "session_id",
    ["QvZ3d2x1bHlfbm90X2FfcmVhbF9zZXNzaW9uX2lk", "short", "x" * 5000, "../../etc/passwd", "a b"],
)
def test_unknown_session_is_not_found_without_detail(
    stub: pb_grpc.DecisionSupportServiceStub, cds: CdsClient, session_id: str
) -> None:
    opening = pb.StreamSessionRequest(open=pb.OpenSession(session_id=session_id))
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.StreamSession(iter([opening]), timeout=5))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    assert raised.value.details() == "session not found"
    assert rich_info(raised.value).reason == "SESSION_NOT_FOUND"
    with pytest.raises(CdsError) as deleting:
        cds.delete_session(session_id)
    assert (deleting.value.code, deleting.value.message) == ("NOT_FOUND", "session not found")


def test_deleted_session_ends_its_open_stream(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [PATIENT])
        cds.delete_session(session.session_id)
        with pytest.raises(CdsError) as raised:
            session.apply([HEADACHE])
        assert raised.value.reason == "SESSION_NOT_FOUND"


def test_logs_and_rejections_never_echo_values_or_session_ids(
    cds: CdsClient, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = "SENTINEL-7c2e"
    with caplog.at_level(logging.DEBUG), cds.session() as session:
        applied(session, [{"id": "h", "type": "headache", "fields": {"attack_count": 987654321}}])
        outcome = rejected(
            session,
            [{"id": "p", "type": "patient", "fields": {"age_years": 98765.25, "sex": sentinel}}],
        )
        cds.delete_session(session.session_id)
    texts = [caplog.text, *(d for _, d in outcome.violations)]
    for text in texts:
        for secret in (sentinel, "98765", "987654321", session.session_id):
            assert secret not in text
    assert "batch rejected" in caplog.text, "the log does say what happened"


def test_keepalive_settings_agree() -> None:
    server = dict(SERVER_KEEPALIVE)
    client = dict(CLIENT_KEEPALIVE)
    # A client pinging more often than the server allows would be sent GOAWAY.
    assert (
        client["grpc.keepalive_time_ms"] >= server["grpc.http2.min_ping_interval_without_data_ms"]
    )
    assert client["grpc.http2.max_pings_without_data"] == 0, "idle streams keep pinging"
    assert server["grpc.keepalive_permit_without_calls"] == 1


def test_stream_limit_is_resource_exhausted(tmp_path: Path) -> None:
    running = create_server(
        ServerConfig(port=0, session_db=str(tmp_path / "s.db"), max_session_streams=2)
    )
    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=5) as cds:
            with cds.session() as first, cds.session(first.session_id):
                with pytest.raises(CdsError) as raised:
                    cds.session()
                assert (raised.value.code, raised.value.reason) == (
                    "RESOURCE_EXHAUSTED",
                    "SESSION_STREAMS_EXHAUSTED",
                )
            with cds.session():  # closing streams frees their places
                pass
            # So does a cancelled (or broken) stream, once the server notices.
            streams = [cds.session(), cds.session()]
            for stream in streams:
                stream._end()
            deadline = time.monotonic() + 5
            while running.sessions._registry.streaming():
                assert time.monotonic() < deadline, "cancelled streams still counted"
                time.sleep(0.02)
            with cds.session(), cds.session():
                pass
    finally:
        running.stop(grace=1)


# ---------------------------------------------------------------- resume


def test_resume_after_reconnect(cds: CdsClient) -> None:
    with cds.session() as session:
        applied(session, [HEADACHE, EXAM])
        applied(session, [PATIENT])
        known = dict(session.conclusions)
    with cds.session(session.session_id) as resumed:
        assert resumed.session_id == session.session_id
        assert resumed.version == 2 and resumed.conclusions == known
        applied(resumed, retract=["x"])
        assert resumed.version == 3
        assert resumed.conclusions == evaluated(cds, [HEADACHE, PATIENT])


def test_resume_after_restart_on_the_same_file(tmp_path: Path) -> None:
    db = str(tmp_path / "sessions.db")
    first = create_server(ServerConfig(port=0, session_db=db))
    try:
        with CdsClient(f"127.0.0.1:{first.port}", timeout=10) as cds, cds.session() as session:
            applied(session, [HEADACHE, EXAM, PATIENT])
            applied(session, [{**EXAM, "id": "x2"}], retract=["x"])
            known = dict(session.conclusions)
    finally:
        first.stop(grace=1)
    second = create_server(ServerConfig(port=0, session_db=db))
    try:
        with (
            CdsClient(f"127.0.0.1:{second.port}", timeout=10) as cds,
            cds.session(session.session_id) as resumed,
        ):
            assert resumed.version == 2 and resumed.conclusions == known
            assert known == evaluated(cds, [HEADACHE, {**EXAM, "id": "x2"}, PATIENT])
    finally:
        second.stop(grace=1)


# ---------------------------------------------------------------- concurrency


def test_many_concurrent_sessions(cds: CdsClient) -> None:
    steps = [[PATIENT], [HEADACHE], [EXAM], [], [imaging("i1")]]

    def follow(patient: int) -> tuple[int, dict[str, Conclusion], list[dict[str, Any]]]:
        age = {"id": "p", "type": "patient", "fields": {"age_years": 20 + patient}}
        facts: dict[str, dict[str, Any]] = {}
        with cds.session() as session:
            for step, batch in enumerate(steps):
                batch = [age if fact is PATIENT else fact for fact in batch]
                retract = ["x"] if step == 3 and patient % 2 else []
                applied(session, batch, retract=retract, expected_version=step)
                for fact_id in retract:
                    del facts[fact_id]
                facts.update({fact["id"]: fact for fact in batch})
            return session.version, dict(session.conclusions), list(facts.values())

    with futures.ThreadPoolExecutor(max_workers=24) as pool:
        results = list(pool.map(follow, range(24)))
    for version, conclusions, facts in results:
        assert version == len(steps)
        assert conclusions == evaluated(cds, facts)


def test_two_streams_on_one_session(cds: CdsClient) -> None:
    with cds.session() as a:
        applied(a, [HEADACHE, PATIENT])
        with cds.session(a.session_id) as b:
            assert b.version == 1 and b.conclusions == a.conclusions
            applied(a, [EXAM])  # version 2: B was not told
            assert DX in a.conclusions and DX not in b.conclusions
            result = applied(b, [imaging("i1")])
            # B hears everything since *its* last view, A's exam included, at version 3.
            assert b.version == 3 and ("ADDED", DX) in changes(result)
            assert b.conclusions == evaluated(cds, [HEADACHE, PATIENT, EXAM, imaging("i1")])
            # A still believes version 2: a conditional batch from it is refused.
            assert rejected(a, retract=["x"], expected_version=2).reason == "VERSION_CONFLICT"
            result = applied(a, retract=["i1"])
            assert a.version == 4
            assert a.conclusions == evaluated(cds, [HEADACHE, PATIENT, EXAM])


def test_two_streams_writing_at_once_stay_consistent(cds: CdsClient) -> None:
    rounds = 15
    with cds.session() as a, cds.session(a.session_id) as b:
        barrier = threading.Barrier(2)

        def write(session: Session, prefix: str) -> list[int]:
            barrier.wait()
            versions = []
            for n in range(rounds):
                result = applied(session, [imaging(f"{prefix}{n}")])
                versions.append(result.outcome.version)
            return versions

        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            va, vb = pool.map(write, (a, b), ("a", "b"))
        assert va == sorted(va) and vb == sorted(vb)
        assert sorted(va + vb) == list(range(1, 2 * rounds + 1)), "every batch, one version each"
        last = a if va[-1] > vb[-1] else b
        facts = [imaging(f"{p}{n}") for p in "ab" for n in range(rounds)]
        assert last.conclusions == evaluated(cds, facts)
    with cds.session(a.session_id) as reopened:
        assert reopened.version == 2 * rounds


def test_processes_sharing_a_database_never_lose_a_batch(store_factory: StoreFactory) -> None:
    """Two managers with their own stores and locks stand for two server processes
    (or two replicas sharing a PostgreSQL database)."""
    worker = EngineWorker()
    worker.wait_ready(60)
    stores = [store_factory(), store_factory()]
    managers = [SessionManager(store, worker, max_facts=500) for store in stores]
    try:
        snapshot = managers[0].open("", lambda: False)
        managers[0].release(snapshot.session_id)

        def write(index: int) -> list[int]:
            manager = managers[index]
            versions = []
            for n in range(20):
                fact = FactIn(f"m{index}-{n}", "imaging", imaging("")["fields"])
                result = manager.apply(snapshot.session_id, Batch(facts=(fact,)), (), lambda: False)
                versions.append(result.version)
            return versions

        with futures.ThreadPoolExecutor(max_workers=2) as pool:
            first, second = pool.map(write, (0, 1))
        assert sorted(first + second) == list(range(1, 41))
        stored = stores[1].load(snapshot.session_id)
        assert stored is not None and stored.version == 40 and len(stored.facts) == 40
    finally:
        worker.stop()


# ---------------------------------------------------------------- store


def test_store_commit_is_conditional_and_keeps_fact_order(store_factory: StoreFactory) -> None:
    store = store_factory()
    try:
        store.create("s1", now=1.0)
        a, b, c = (StoredFact(i, "imaging", {"n": i}) for i in "abc")
        assert store.commit("s1", 0, [], [a, b, c], now=2.0) == 1
        with pytest.raises(StaleVersion):
            store.commit("s1", 0, [], [a], now=3.0)
        # Replace b in place, retract a and re-assert it: it moves last.
        assert store.commit("s1", 1, ["a"], [StoredFact("b", "imaging", {"n": "B"}), a], 4.0) == 2
        loaded = store.load("s1")
        assert loaded is not None and loaded.version == 2
        assert [(f.id, f.fields["n"]) for f in loaded.facts] == [("b", "B"), ("c", "c"), ("a", "a")]
        with store._connection() as db:
            if store_factory.kind == "sqlite":  # type: ignore[attr-defined]
                assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
                assert db.execute("PRAGMA synchronous").fetchone()[0] == 2  # FULL
                assert db.execute("PRAGMA secure_delete").fetchone()[0] == 1
            else:  # acknowledged only once flushed (see test_store_postgres too)
                assert db.execute("SHOW synchronous_commit").fetchone()[0] == "on"
        if store_factory.kind == "sqlite":  # type: ignore[attr-defined]
            db_file = Path(store_factory.location)  # type: ignore[attr-defined]
            assert db_file.stat().st_mode & 0o077 == 0, "readable by its owner only"
    finally:
        store.close()


def test_delete_session_erases_facts_from_the_database_file(
    server: RunningServer, cds: CdsClient
) -> None:
    store = server.sessions.store
    files = [Path(f"{store.path}{suffix}") for suffix in ("", "-wal", "-shm")]
    value, fact_id = b"918273645546372", b"sentinel-fact-5d1c"

    def readable() -> bool:
        return any(
            value in f.read_bytes() or fact_id in f.read_bytes() for f in files if f.exists()
        )

    with cds.session() as keep:
        applied(keep, [PATIENT, HEADACHE])
    with cds.session() as session:
        fields = {"attack_count": int(value), "laterality": "bilateral"}
        applied(session, [{"id": fact_id.decode(), "type": "headache", "fields": fields}, PATIENT])
        applied(session, [EXAM])
    assert readable(), "the sentinel is stored before the deletion"
    cds.delete_session(session.session_id)
    assert not readable(), "erased from the database file and its write-ahead log"
    with cds.session(keep.session_id) as other:
        assert other.version == 1, "other sessions are untouched"
    with pytest.raises(CdsError):
        cds.delete_session(session.session_id)


# ---------------------------------------------------------------- expiry


def test_parse_duration() -> None:
    assert parse_duration("30d") == 30 * 86400
    assert parse_duration("12h") == 43200
    assert parse_duration("90s") == parse_duration("90") == 90
    assert parse_duration("1.5m") == 90
    for bad in ("", "0", "-5s", "3w", "d", "nan"):
        with pytest.raises(ValueError):
            parse_duration(bad)


def test_idle_sessions_are_swept_but_not_open_ones(tmp_path: Path) -> None:
    ttl = 0.4
    running = create_server(
        ServerConfig(
            port=0,
            session_db=str(tmp_path / "s.db"),
            session_ttl_seconds=ttl,
            sweep_interval_seconds=0.05,
        )
    )

    def gone(cds: CdsClient, session_id: str, within: float) -> bool:
        """Polls the store (opening the session would mark it active), then asks over gRPC."""
        deadline = time.monotonic() + within
        while running.sessions.store.load(session_id) is not None:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
        with pytest.raises(CdsError) as raised:
            cds.session(session_id)
        return raised.value.reason == "SESSION_NOT_FOUND"

    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=5) as cds:
            with cds.session() as idle:
                applied(idle, [PATIENT])
            with cds.session() as busy:
                applied(busy, [PATIENT])
                assert gone(cds, idle.session_id, within=5 * ttl + 2)
                time.sleep(ttl)  # `busy` is now idle by its timestamps, but its stream is open
                applied(busy, [HEADACHE])
                assert busy.version == 2
            assert gone(cds, busy.session_id, within=5 * ttl + 2), "closed streams expire too"
    finally:
        running.stop(grace=1)


# ---------------------------------------------------------------- command line


def test_cli_replays_the_example_timeline(server: RunningServer, cds: CdsClient) -> None:
    out = io.StringIO()
    target = f"127.0.0.1:{server.port}"
    status = cli_main(
        ["--target", target, "session", str(TIMELINE), "--json", "--no-delay"], stdout=out
    )
    assert status == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    assert events[0]["event"] == "opened" and events[0]["version"] == 0
    view: dict[str, str] = {}
    facts: dict[str, dict[str, Any]] = {}
    timeline = [json.loads(line) for line in TIMELINE.read_text().splitlines() if line.strip()]
    batches = iter(timeline)
    for event in events[1:]:
        if event["event"] == "change":
            if event["type"] == "WITHDRAWN":
                del view[event["code"]]
            else:
                view[event["code"]] = event["detail"]
        elif event["event"] == "applied":
            step = next(batches)
            for fact_id in step.get("retract", []):
                del facts[fact_id]
            facts.update({fact["id"]: fact for fact in step.get("assert", [])})
            oracle = evaluated(cds, list(facts.values()))
            assert view == {code: c.detail for code, c in oracle.items()}, event["version"]
    assert events[-1] == {"event": "applied", "version": 5, "knowledge_base_version": kb.VERSION}
    assert set(view) == {DX, "caution.imaging_not_diagnostic", "step.specialist_referral"}
    with cds.session(events[0]["session_id"]) as resumed:
        assert resumed.version == 5


def test_cli_timeline_exit_codes(server: RunningServer, tmp_path: Path) -> None:
    target = f"127.0.0.1:{server.port}"
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"assert": [], "when": 1}\n')
    err = io.StringIO()
    assert cli_main(["--target", target, "session", str(bad)], stderr=err) == 1
    assert "bad.jsonl:1" in err.getvalue() and "'when'" in err.getvalue()

    conflict = tmp_path / "conflict.jsonl"
    conflict.write_text(json.dumps({"assert": [PATIENT], "expected_version": 4}) + "\n")
    out, err = io.StringIO(), io.StringIO()
    assert cli_main(["--target", target, "session", str(conflict)], stdout=out, stderr=err) == 2
    assert "VERSION_CONFLICT" in err.getvalue() and "expected_version" in err.getvalue()

    out = io.StringIO()
    ok = tmp_path / "ok.jsonl"
    ok.write_text(
        json.dumps({"description": "visit", "assert": [HEADACHE, EXAM], "delay": 0.01}) + "\n"
    )
    assert cli_main(["--target", target, "session", str(ok), "--delete"], stdout=out) == 0
    text = out.getvalue()
    assert f"+ ADDED     [DIAGNOSIS SUPPORTED] ROUTINE  {DX}" in text
    assert "version 1" in text and "session deleted" in text


def test_validated_json_is_what_is_stored(server: RunningServer, cds: CdsClient) -> None:
    """Integers sent as doubles are stored as integers; nulls (absent) are not stored."""
    with cds.session() as session:
        applied(
            session, [{"id": "p", "type": "patient", "fields": {"age_years": 40.0, "sex": None}}]
        )
    stored = server.sessions.store.load(session.session_id)
    assert stored is not None
    assert [(f.id, dict(f.fields)) for f in stored.facts] == [("p", {"age_years": 40})]
    assert validate_facts([FactIn("p", "patient", dict(stored.facts[0].fields))])


class _RedFlagsBreakEngine(RulesEngine):
    """Fails every evaluation whose facts include a red-flag screen."""

    def _fire(self, rule: Any, matched: Any) -> None:
        if any(f.type == "red_flags" for f in self._current.facts_by_engine_id.values()):
            raise RuntimeError("rule action failed")
        super()._fire(rule, matched)


def test_engine_failure_ends_the_stream_and_commits_nothing(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    running = create_server(
        ServerConfig(port=0, session_db=str(tmp_path / "s.db")),
        worker=EngineWorker(_RedFlagsBreakEngine),
    )
    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10) as cds:
            with cds.session() as session:
                applied(session, [HEADACHE, EXAM, PATIENT])
                flags = {"id": "r", "type": "red_flags", "fields": {"cancer_history": True}}
                with caplog.at_level(logging.ERROR), pytest.raises(CdsError) as raised:
                    session.apply([flags])
            assert (raised.value.code, raised.value.reason) == ("INTERNAL", "ENGINE_FAILURE")
            correlation = raised.value.message.split("correlation id ")[1].rstrip(")")
            assert correlation in caplog.text
            with cds.session(session.session_id) as resumed:
                assert resumed.version == 1, "a batch the engine could not evaluate is not stored"
                assert resumed.conclusions == evaluated(cds, [HEADACHE, EXAM, PATIENT])
    finally:
        running.stop(grace=1)
