"""Session batch latency: from sending a batch to receiving its BatchApplied.

    .venv/bin/python bench/session_latency.py [--count N] [--db-dir DIR]

A session of 20 facts (a patient under treatment plus imaging studies) takes
`--count` batches in turn, each one replacing a treatment, swapping the vitals
under a new id (retract and assert in one batch) or adding and retracting an
imaging study, so the fact set stays at about 20 and conclusions come and go.
Every batch is validated against the whole fact set, evaluated from scratch,
committed to SQLite (WAL, synchronous=FULL: one fsync per batch) and only then
acknowledged, so the disk under `--db-dir` matters: the default is a temporary
folder under ./data, where `python -m server` keeps sessions by default.

Rows: one client over gRPC on loopback to a server subprocess; the same work
in-process without transport (`SessionManager.apply`); and the SQLite commit
alone. On a VM the commit's fsync dominates and is bimodal (a fraction of a
millisecond, or one kernel tick when the filesystem journal must commit), so
rows can differ by that tick depending on how batches fall between ticks.
"""

from __future__ import annotations

import argparse
import contextlib
import queue
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from client.api import BatchApplied, CdsClient, CdsError, SessionSnapshot  # noqa: E402
from kb.facts import FactIn  # noqa: E402
from server.engine import EngineWorker  # noqa: E402
from server.sessions import Batch, SessionManager  # noqa: E402
from server.store import SqliteSessionStore, StoredFact  # noqa: E402

PT = {"manual_therapy", "strengthening", "motor_control"}


def _vitals(fact_id: str, standing_hr: int) -> dict[str, Any]:
    fields = {
        "supine_hr_bpm": 70,
        "standing_hr_bpm": standing_hr,
        "supine_sbp_mmhg": 130,
        "standing_sbp_mmhg": 127,
        "supine_dbp_mmhg": 82,
        "standing_dbp_mmhg": 85,
    }
    return {"id": fact_id, "type": "orthostatic_vitals", "fields": fields}


def _physio(weeks: int, response: str) -> dict[str, Any]:
    fields = {"kind": "physical_therapy", "weeks": weeks, "components": sorted(PT)}
    return {"id": "physio", "type": "treatment", "fields": {**fields, "response": response}}


def _imaging(n: int) -> dict[str, Any]:
    region = "brain" if n % 2 else "cervical_spine"
    fields = {"modality": "mri" if n % 3 else "ct", "region": region, "finding": "normal"}
    return {"id": f"imaging-{n}", "type": "imaging", "fields": fields}


INITIAL: list[dict[str, Any]] = [
    {"id": "patient", "type": "patient", "fields": {"age_years": 47, "sex": "male"}},
    {
        "id": "headache",
        "type": "headache",
        "fields": {
            "laterality": "unilateral",
            "side_locked": True,
            "starts_in_neck": True,
            "radiates_oculo_fronto_temporal": True,
            "provoked_by_neck_movement": True,
            "provoked_by_occipital_pressure": True,
            "onset": "gradual",
            "intensity": "moderate",
            "improvement_lying_down_pct": 15,
            "improvement_lying_down_within_hours": 4,
        },
    },
    {
        "id": "exam",
        "type": "cervical_exam",
        "fields": {"rom_reduced": True, "cervical_spine_tenderness": True},
    },
    _vitals("vitals-0", 84),
    {
        "id": "red-flags",
        "type": "red_flags",
        "fields": {"horner_syndrome": False, "recent_neck_trauma": False, "papilledema": False},
    },
    _physio(3, "pending"),
    {
        "id": "walking",
        "type": "treatment",
        "fields": {"kind": "aerobic_exercise", "weeks": 3, "response": "pending"},
    },
    *(_imaging(n) for n in range(13)),
]


def _batch(i: int) -> tuple[list[dict[str, Any]], list[str]]:
    """The i-th batch: (facts to assert, ids to retract); the session stays at ~20 facts."""
    step = i % 4
    if step == 0:
        return [_physio(6, "inadequate")], []
    if step == 1:
        return [_physio(3, "pending")], []
    if step == 2:  # new vitals under a new id, the old ones retracted in the same batch
        return [_vitals(f"vitals-{i + 1}", 84 + i % 7)], [
            f"vitals-{i - 3}" if i > 2 else "vitals-0"
        ]
    return [_imaging(100 + i)], [f"imaging-{100 + i - 4}"] if i >= 7 else []


def _row(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1e3
    return f"| {name} | {len(times)} | {p50:.2f} | {p99:.2f} | {len(times) / sum(times):,.0f} |"


def _measure(count: int, apply: Callable[[int], None]) -> list[float]:
    times = []
    for i in range(count):
        start = time.perf_counter()
        apply(i)
        times.append(time.perf_counter() - start)
    return times


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_until_serving(target: str) -> None:
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become healthy")
            time.sleep(0.1)


@contextmanager
def _server(session_db: str) -> Iterator[str]:
    """A server process on `session_db` (a SQLite path or a postgresql:// URL); its target."""
    port = _free_port()
    command = [sys.executable, "-m", "server", "--port", str(port), "--log-level", "WARNING"]
    server = subprocess.Popen([*command, "--workers", "1", "--session-db", session_db], cwd=ROOT)
    try:
        _wait_until_serving(f"127.0.0.1:{port}")
        yield f"127.0.0.1:{port}"
    finally:
        server.terminate()
        server.wait(30)


def _over_grpc(count: int, session_db: str) -> list[float]:
    with (
        _server(session_db) as target,
        CdsClient(target, timeout=10) as cds,
        cds.session() as session,
    ):
        if not session.apply(INITIAL).applied:
            raise SystemExit("the initial facts were rejected")
        for i in range(min(count, 100)):  # warm-up: same batches, same sizes
            session.apply(*_batch(i))
        offset = min(count, 100)

        def apply(i: int) -> None:
            facts, retract = _batch(offset + i)
            for event in session.send(facts, retract):
                if isinstance(event, BatchApplied):
                    return
            raise SystemExit(f"batch {offset + i} was rejected")

        times = _measure(count, apply)
        current = len(session.conclusions)
        cds.delete_session(session.session_id)
    print(f"the gRPC session ended with {current} current conclusion(s)")
    return times


def _watch_latency(count: int, session_db: str) -> list[float]:
    """A writer on one server process, a watcher on another sharing the store:
    from sending a batch to the watcher's BatchApplied for it (SQLite: the
    watcher polls the shared file; PostgreSQL: LISTEN/NOTIFY)."""
    with (
        _server(session_db) as writer_target,
        _server(session_db) as watcher_target,
        CdsClient(writer_target, timeout=10) as cds,
        cds.session() as session,
        CdsClient(watcher_target, timeout=10) as other,
    ):
        if not session.apply(INITIAL).applied:
            raise SystemExit("the initial facts were rejected")
        seen: queue.SimpleQueue[tuple[float, int]] = queue.SimpleQueue()

        def follow() -> None:
            with contextlib.suppress(CdsError):  # the session is deleted at the end
                for event in other.watch(session.session_id):
                    if isinstance(event, BatchApplied | SessionSnapshot):
                        seen.put((time.perf_counter(), event.version))

        threading.Thread(target=follow, daemon=True).start()
        seen.get(timeout=30)  # subscribed: the snapshot

        def apply(i: int) -> None:
            if not session.apply(*_batch(i)).applied:
                raise SystemExit(f"batch {i} was rejected")

        times = []
        for i in range(count):
            started = time.perf_counter()
            apply(i)
            while True:
                at, version = seen.get(timeout=30)
                if version >= session.version:
                    times.append(at - started)
                    break
        cds.delete_session(session.session_id)
    return times


def _in_process(count: int, db: Path) -> list[float]:
    worker = EngineWorker()
    worker.wait_ready(60)
    store = SqliteSessionStore(db)
    manager = SessionManager(store, worker, max_facts=500)

    def as_batch(facts: list[dict[str, Any]], retract: list[str]) -> Batch:
        return Batch(tuple(FactIn(f["id"], f["type"], f["fields"]) for f in facts), tuple(retract))

    try:
        snapshot = manager.open("", lambda: False)
        baseline = manager.apply(
            snapshot.session_id, as_batch(INITIAL, []), (), lambda: False
        ).conclusions
        for i in range(min(count, 100)):
            baseline = manager.apply(
                snapshot.session_id, as_batch(*_batch(i)), baseline, lambda: False
            ).conclusions
        offset = min(count, 100)
        state = {"baseline": baseline}

        def apply(i: int) -> None:
            state["baseline"] = manager.apply(
                snapshot.session_id,
                as_batch(*_batch(offset + i)),
                state["baseline"],
                lambda: False,
            ).conclusions

        times = _measure(count, apply)
        manager.release(snapshot.session_id)
        manager.delete(snapshot.session_id)
        return times
    finally:
        store.close()
        worker.stop()


def _commit_alone(count: int, db: Path) -> list[float]:
    """The durable commit on its own: one fact replaced in a 20-fact session."""
    store = SqliteSessionStore(db)
    try:
        store.create("bench", 0.0)
        facts = [StoredFact(f["id"], f["type"], f["fields"]) for f in INITIAL]
        state = {"version": store.commit("bench", 0, [], facts, 0.0)}

        def commit(i: int) -> None:
            replaced = facts[i % len(facts)]
            state["version"] = store.commit("bench", state["version"], [], [replaced], 0.0)

        return _measure(count, commit)
    finally:
        store.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--count", type=int, default=1000, help="measured batches per row")
    parser.add_argument("--db-dir", type=Path, default=ROOT / "data", help="where the DB goes")
    args = parser.parse_args()
    created = not args.db_dir.exists()
    args.db_dir.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="bench-sessions-", dir=args.db_dir))
    try:
        rows = [
            _row(
                "batch -> BatchApplied over gRPC (loopback, 1 client)",
                _over_grpc(args.count, str(folder / "grpc.db")),
            ),
            _row(
                "SessionManager.apply in-process (validate, engine, commit)",
                _in_process(args.count, folder / "local.db"),
            ),
            _row(
                "SQLite commit alone (WAL, synchronous=FULL)",
                _commit_alone(args.count, folder / "commit.db"),
            ),
        ]
    finally:
        shutil.rmtree(folder, ignore_errors=True)
        if created:
            args.db_dir.rmdir()
    print(f"{len(INITIAL)} facts in the session; database under {args.db_dir}\n")
    print("| path | batches | p50 ms | p99 ms | per second |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
