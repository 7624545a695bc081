"""Lifecycle: graceful shutdown under load, and faults that must not take the service down.

- SIGTERM to `python -m server` (two workers) under Evaluate and session load:
  health turns NOT_SERVING, new calls get UNAVAILABLE, every call either
  completes or is refused (nothing half-answered), every acknowledged batch is
  in the database afterwards, and the process exits 0 within the grace.
- In-process, with an engine slowed down: an evaluation and a session batch in
  flight when shutdown starts finish, while new calls are refused at once.
- A knowledge base that fails to load fails startup, releasing the port.
- A corrupt or locked session database: a clear error, Evaluate unaffected,
  session calls UNAVAILABLE (retryable) until the database is usable again.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

import server.store
from client.api import BatchApplied, CdsClient, CdsError, Conclusion, Summary
from kb.engine import RulesEngine
from kb.model import Stage
from server.app import RunningServer, ServerConfig, create_server
from server.engine import EngineWorker
from server.resilient_store import ReopeningSessionStore
from server.store import SqliteSessionStore
from tests.patients import EXAM, HEADACHE
from tests.test_sessions_process import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
PATIENT = [HEADACHE, EXAM, {"id": "p", "type": "patient", "fields": {"age_years": 35}}]
SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


def imaging(n: int) -> dict[str, Any]:
    fields = {"modality": "ct", "region": "brain", "finding": "normal"}
    return {"id": f"i{n}", "type": "imaging", "fields": fields}


def complete(events: list[Any]) -> bool:
    """A whole answer: conclusions, then exactly one summary that counts them."""
    *conclusions, summary = events
    return (
        isinstance(summary, Summary)
        and all(isinstance(c, Conclusion) for c in conclusions)
        and summary.conclusion_count == len(conclusions)
    )


# ---------------------------------------------------------------- SIGTERM under load


@dataclass
class SessionLoad:
    """One stream applying batches until the server goes; what it was told."""

    session_id: str = ""
    facts: dict[str, dict[str, Any]] = field(default_factory=dict)  # as of `acknowledged`
    acknowledged: int = 0
    pending: tuple[list[dict[str, Any]], list[str]] | None = None
    error: str = ""


def _session_load(target: str, load: SessionLoad, stop: threading.Event) -> None:
    try:
        with CdsClient(target, timeout=10) as cds, cds.session() as session:
            load.session_id = session.session_id
            n = 0
            while not stop.is_set():
                facts = [imaging(n)] if n else list(PATIENT)
                retract = [f"i{n - 3}"] if n >= 4 else []
                load.pending = (facts, retract)
                result = session.apply(facts, retract)
                assert isinstance(result.outcome, BatchApplied), result.outcome
                for fact_id in retract:
                    del load.facts[fact_id]
                load.facts.update({fact["id"]: fact for fact in facts})
                load.acknowledged, load.pending = result.outcome.version, None
                n += 1
    except CdsError as error:
        load.error = error.code


def _evaluate_load(target: str, outcomes: list[tuple[float, str]], stop: threading.Event) -> None:
    """Evaluate in a loop; each outcome with the time its call started."""
    facts = [*PATIENT, *(imaging(n) for n in range(40))]
    while not stop.is_set():
        # A new channel now and then: some calls start after the server stops listening.
        with CdsClient(target, timeout=10) as cds:
            for _ in range(5):
                started = time.monotonic()
                try:
                    answer = "complete" if complete(list(cds.evaluate(facts))) else "partial"
                except CdsError as error:
                    answer = error.code
                outcomes.append((started, answer))
                if answer != "complete":
                    time.sleep(0.02)
                    break


IN_TRANSIT_SECONDS = 0.25


def test_sigterm_under_load_drains_loses_nothing_and_exits_0(tmp_path: Path) -> None:
    db, port, grace = tmp_path / "sessions.db", free_port(), 3.0
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port), "--session-db", str(db),
             "--workers", "2", "--grace", str(grace)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file,
            start_new_session=True,
        )  # fmt: skip
    stop = threading.Event()
    outcomes: list[list[tuple[float, str]]] = [[] for _ in range(4)]
    sessions = [SessionLoad() for _ in range(3)]
    try:
        wait_until_serving(target, process)
        channel = grpc.insecure_channel(target)
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == SERVING
        threads = [
            *(threading.Thread(target=_evaluate_load, args=(target, o, stop)) for o in outcomes),
            *(threading.Thread(target=_session_load, args=(target, s, stop)) for s in sessions),
        ]
        for thread in threads:
            thread.start()
        loaded, deadline = time.monotonic(), time.monotonic() + 20
        while (
            min(s.acknowledged for s in sessions) < 3
            or min(map(len, outcomes)) < 3
            or time.monotonic() - loaded < 4 * IN_TRANSIT_SECONDS  # calls well before the signal
        ):
            assert time.monotonic() < deadline, (sessions, [o[-3:] for o in outcomes])
            time.sleep(0.05)
        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        assert next(watch).status == NOT_SERVING, "health turns NOT_SERVING first"
        returncode = process.wait(timeout=grace + 15)
        took = time.monotonic() - signalled
        time.sleep(0.3)  # calls after the exit: refused, as UNAVAILABLE
        stop.set()
        for thread in threads:
            thread.join(timeout=15)
        channel.close()
    finally:
        stop.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    stderr = log.read_text()
    assert returncode == 0, stderr[-2000:]
    assert took < grace + 5
    calls = [outcome for per_thread in outcomes for outcome in per_thread]
    # A call the client started just before SIGTERM may still be in transit (or
    # queued behind the worker's loop) when the gate closes: it is refused
    # UNAVAILABLE, cleanly, like any later one. Calls started earlier than that
    # were in flight at SIGTERM: every one of them finished.
    in_transit = signalled - IN_TRANSIT_SECONDS
    before = collections.Counter(answer for started, answer in calls if started < in_transit)
    racing = collections.Counter(
        answer for started, answer in calls if in_transit <= started < signalled
    )
    after = collections.Counter(answer for started, answer in calls if started >= signalled)
    assert set(before) == {"complete"}, before  # in flight at SIGTERM: all finished
    assert set(racing) <= {"complete", "UNAVAILABLE"}, racing
    # Started later: refused as UNAVAILABLE (retry elsewhere) or, in the instant a worker
    # stops listening, CANCELLED by gRPC core (see SECURITY.md); never half-answered.
    assert set(after) <= {"complete", "UNAVAILABLE", "CANCELLED"}, after
    assert after["UNAVAILABLE"] > 0
    for load in sessions:
        assert load.error == "UNAVAILABLE", load.error
    for line in stderr.splitlines():
        json.loads(line)  # structured to the last line
    # Restarted on the same file: every acknowledged batch is there.
    store = SqliteSessionStore(db)
    try:
        for load in sessions:
            stored = store.load(load.session_id)
            assert stored is not None
            facts = dict(load.facts)
            if stored.version == load.acknowledged + 1:  # committed, not acknowledged
                assert load.pending is not None
                for fact_id in load.pending[1]:
                    del facts[fact_id]
                facts.update({fact["id"]: fact for fact in load.pending[0]})
            else:
                assert stored.version == load.acknowledged
            assert {f.id: (f.type, dict(f.fields)) for f in stored.facts} == {
                k: (f["type"], f["fields"]) for k, f in facts.items()
            }
    finally:
        store.close()


# ---------------------------------------------------------------- in flight during the grace


class _SlowEngine(RulesEngine):
    delay = 0.25

    def _close_stage(self, evaluation: Any, stage: Stage) -> Any:
        time.sleep(self.delay)
        return super()._close_stage(evaluation, stage)


@pytest.fixture
def slow_server(tmp_path: Path) -> Iterator[RunningServer]:
    running = create_server(
        ServerConfig(port=0, session_db=str(tmp_path / "s.db")), worker=EngineWorker(_SlowEngine)
    )
    yield running
    running.stop(grace=0)


def _stop_when(started: threading.Event, running: RunningServer, grace: float) -> threading.Thread:
    def stop() -> None:
        started.wait(10)
        running.stop(grace)

    thread = threading.Thread(target=stop)
    thread.start()
    return thread


def test_in_flight_evaluation_finishes_while_new_calls_are_refused(
    slow_server: RunningServer,
) -> None:
    target = f"127.0.0.1:{slow_server.port}"
    with CdsClient(target, timeout=20) as cds, grpc.insecure_channel(target) as channel:
        watch = health_pb2_grpc.HealthStub(channel).Watch(health_pb2.HealthCheckRequest())
        assert next(watch).status == SERVING
        events = cds.evaluate(PATIENT)
        first = next(events)  # the engine is now in its first stage of several
        started = threading.Event()
        stopping = _stop_when(started, slow_server, grace=10)
        began = time.monotonic()
        started.set()
        assert next(watch).status == NOT_SERVING
        watch.cancel()  # a Watch is in flight too: it would hold the stop for the grace
        with CdsClient(target, timeout=5) as late, pytest.raises(CdsError) as refused:
            list(late.evaluate(PATIENT))
        assert refused.value.code == "UNAVAILABLE"
        assert time.monotonic() - began < 1.5, "refused at once, not after the grace"
        assert complete([first, *events])
        stopping.join(15)
        assert time.monotonic() - began < 5, "stop returns once in-flight calls are done"


def test_in_flight_session_batch_is_acknowledged_and_kept(slow_server: RunningServer) -> None:
    target = f"127.0.0.1:{slow_server.port}"
    with CdsClient(target, timeout=20) as cds:
        session = cds.session()
        events = session.send(PATIENT)
        started = threading.Event()
        stopping = _stop_when(started, slow_server, grace=2)
        time.sleep(0.1)  # the batch is being evaluated (about a second, slowed down)
        began = time.monotonic()
        started.set()
        outcome = [event for event in events if not isinstance(event, Conclusion)][-1]
        assert isinstance(outcome, BatchApplied) and outcome.version == 1
        stopping.join(15)  # the open stream holds the stop until the grace ends ...
        assert 2 <= time.monotonic() - began < 5
        with pytest.raises(CdsError) as ended:  # ... and is then told to go elsewhere
            session.apply([imaging(1)])
        assert ended.value.code == "UNAVAILABLE"
    assert slow_server.sessions is not None
    reopened = SqliteSessionStore(Path(slow_server.sessions.store.path))  # type: ignore[attr-defined]
    try:
        state = reopened.load(session.session_id)
        assert state is not None and state.version == 1
        assert [f.id for f in state.facts] == ["h", "x", "p"]
    finally:
        reopened.close()


# ---------------------------------------------------------------- startup faults


class _BrokenKnowledgeBase(RulesEngine):
    def __init__(self) -> None:
        raise ValueError("ruleset failed to register")


def test_a_knowledge_base_that_fails_to_load_fails_startup_and_frees_the_port() -> None:
    port = free_port()
    began = time.monotonic()
    with pytest.raises(RuntimeError, match="knowledge base failed to load") as raised:
        create_server(ServerConfig(port=port), worker=EngineWorker(_BrokenKnowledgeBase))
    assert isinstance(raised.value.__cause__, ValueError)
    assert time.monotonic() - began < 10
    running = create_server(ServerConfig(port=port))  # the port was released
    running.stop(grace=0)


def test_calls_waiting_on_a_knowledge_base_that_fails_are_answered() -> None:
    """A call queued while the knowledge base loads must not wait forever when it fails."""
    gate = threading.Event()

    class Failing(RulesEngine):
        def __init__(self) -> None:
            gate.wait(10)
            raise ValueError("no")

    worker = EngineWorker(Failing)
    answered: list[BaseException] = []

    def call() -> None:
        try:
            list(worker.evaluate([], should_stop=lambda: False))
        except BaseException as error:
            answered.append(error)

    caller = threading.Thread(target=call)
    caller.start()
    time.sleep(0.1)  # queued behind the load
    gate.set()
    caller.join(5)
    assert not caller.is_alive(), "the caller was never answered"
    assert type(answered[0]).__name__ == "EngineFailure"
    worker.stop(1)


def test_calls_after_the_engine_stopped_fail_at_once() -> None:
    worker = EngineWorker()
    worker.wait_ready(60)
    worker.stop(10)
    for attempt in (
        lambda: list(worker.evaluate([], should_stop=lambda: False)),
        lambda: worker.explain([], "dx.cervicogenic_headache"),
    ):
        with pytest.raises(Exception, match="not running"):
            attempt()


def test_command_line_exits_non_zero_when_the_knowledge_base_fails(tmp_path: Path) -> None:
    program = (
        "import sys, kb.engine\n"
        "def broken(self, *a, **k):\n"
        "    raise ValueError('ruleset failed to register')\n"
        "kb.engine.RulesEngine.__init__ = broken\n"
        "from server.__main__ import main\n"
        f"sys.argv = ['server', '--port', '{free_port()}', '--workers', '1',"
        f" '--session-db', r'{tmp_path / 's.db'}']\n"
        "main()\n"
    )
    log = tmp_path / "server.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-c", program],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr_file,
            start_new_session=True,
        )
    try:
        returncode = process.wait(timeout=8)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise AssertionError("still running 8 s after its knowledge base failed") from None
    stderr = log.read_text()
    assert returncode != 0
    assert "knowledge base failed to load" in stderr


# ---------------------------------------------------------------- session database faults


def test_a_corrupt_session_database_leaves_evaluate_up(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    db.write_bytes(b"this is not a database" * 1000)
    port = free_port()
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port), "--workers", "1",
             "--session-db", str(db)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file,
            start_new_session=True,
        )  # fmt: skip
    try:
        wait_until_serving(target, process)
        with CdsClient(target, timeout=10) as cds:
            assert complete(list(cds.evaluate(PATIENT)))
            for _ in range(3):
                with pytest.raises(CdsError) as raised:
                    cds.session()
                assert (raised.value.code, raised.value.reason) == (
                    "UNAVAILABLE",
                    "STORE_UNAVAILABLE",
                )
            assert complete(list(cds.evaluate(PATIENT)))
        assert process.poll() is None, "still running: no crash, no restart"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=20) == 0
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    lines = [json.loads(line) for line in log.read_text().splitlines()]
    errors = [line for line in lines if line["level"] == "ERROR"]
    assert any(
        str(db) in line["message"] and "not a database" in line["message"] for line in errors
    ), errors
    assert not any("restarting" in line["message"] or "exited" in line["message"] for line in lines)


def test_session_database_recovers_once_usable(tmp_path: Path) -> None:
    db = tmp_path / "sessions.db"
    db.write_bytes(b"garbage" * 100)
    store = ReopeningSessionStore(db, retry_seconds=0)
    running = create_server(ServerConfig(port=0), store=store)
    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10) as cds:
            with pytest.raises(CdsError) as raised:
                cds.session()
            assert raised.value.code == "UNAVAILABLE"
            assert "correlation id" in raised.value.message
            db.unlink()  # an operator moves the bad file away
            with cds.session() as session:
                assert session.apply(PATIENT).applied
    finally:
        running.stop(grace=0)
        store.close()


def test_a_locked_session_database_is_unavailable_then_recovers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(server.store, "BUSY_TIMEOUT_MS", 200)
    db = tmp_path / "sessions.db"
    holder = sqlite3.connect(db, isolation_level=None)  # rollback journal: locks readers out
    holder.execute("CREATE TABLE other (x)")
    holder.execute("BEGIN EXCLUSIVE")
    holder.execute("INSERT INTO other VALUES (1)")
    store = ReopeningSessionStore(db, retry_seconds=0)
    assert not store.available
    running = create_server(ServerConfig(port=0), store=store)
    try:
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10) as cds:
            assert complete(list(cds.evaluate(PATIENT)))
            with pytest.raises(CdsError) as raised:
                cds.session()
            assert (raised.value.code, raised.value.reason) == ("UNAVAILABLE", "STORE_UNAVAILABLE")
            holder.execute("COMMIT")
            holder.close()
            with cds.session() as session:
                assert session.apply(PATIENT).applied
    finally:
        running.stop(grace=0)
        store.close()


def _evaluate_on(cds: CdsClient, answers: list[str], stop: threading.Event) -> None:
    """Evaluate in a loop on a shared client (one channel) until the first call that
    does not complete: that answer is what this caller acts on (retry, fail over)."""
    facts = [*PATIENT, *(imaging(n) for n in range(10))]
    while not stop.is_set():
        try:
            answers.append("complete" if complete(list(cds.evaluate(facts))) else "partial")
        except CdsError as error:
            answers.append(error.code)
        if answers[-1] != "complete":
            return


def test_sigterm_never_cancels_a_call_on_one_busy_channel(tmp_path: Path) -> None:
    """Issue 12: 16 threads calling Evaluate on one channel plus 4 session writers,
    SIGTERM after 3 s: 7 of the 16 callers got CANCELLED, which clients do not
    retry. Every call must complete or be refused UNAVAILABLE (lame duck)."""
    db, port, grace = tmp_path / "sessions.db", free_port(), 5.0
    target = f"127.0.0.1:{port}"
    log = tmp_path / "server.log"
    with log.open("wb") as stderr_file:
        process = subprocess.Popen(
            [sys.executable, "-m", "server", "--port", str(port), "--session-db", str(db),
             "--grace", str(grace)],
            cwd=ROOT, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=stderr_file,
            start_new_session=True,
        )  # fmt: skip
    stop = threading.Event()
    answers: list[list[str]] = [[] for _ in range(16)]
    sessions = [SessionLoad() for _ in range(4)]
    try:
        wait_until_serving(target, process)
        with CdsClient(target, timeout=10) as shared:
            threads = [
                *(threading.Thread(target=_evaluate_on, args=(shared, a, stop)) for a in answers),
                *(threading.Thread(target=_session_load, args=(target, s, stop)) for s in sessions),
            ]
            for thread in threads:
                thread.start()
            time.sleep(3)
            process.send_signal(signal.SIGTERM)
            returncode = process.wait(timeout=grace + 15)
            time.sleep(0.3)
            stop.set()
            for thread in threads:
                thread.join(timeout=15)
    finally:
        stop.set()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    assert returncode == 0, log.read_text()[-2000:]
    assert all(per_thread[:-1] == ["complete"] * (len(per_thread) - 1) for per_thread in answers)
    last = collections.Counter(per_thread[-1] for per_thread in answers)
    assert last == {"UNAVAILABLE": 16}, last  # was: 7 of the 16 callers CANCELLED
    assert {load.error for load in sessions} == {"UNAVAILABLE"}, [s.error for s in sessions]
