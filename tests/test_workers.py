"""Worker processes, metrics summed across them, and overload protection."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import BatchApplied, CdsClient, Conclusion
from server.app import ServerConfig, create_server
from tests.conftest import to_proto_facts
from tests.sockets import listener_pid
from tests.test_sessions_process import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
POTS = json.loads((ROOT / "examples" / "pots-mimic.json").read_text())["facts"]


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return sorted(int(child) for child in text.split())


def _metrics(port: int) -> dict[str, float]:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    samples = {}
    for line in text.splitlines():
        if line.startswith("cds_"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], int, int]]:
    port, metrics_port = free_port(), free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "server",
            "--port",
            str(port),
            "--workers",
            "2",
            "--metrics-port",
            str(metrics_port),
            "--session-db",
            str(tmp_path / "s.db"),
            "--grace",
            "5",
        ],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
    )
    try:
        wait_until_serving(f"127.0.0.1:{port}", server)
        yield server, port, metrics_port
    finally:
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGKILL)
        server.wait(10)


def test_workers_share_the_port_and_metrics_sum_across_them(
    two_workers: tuple[subprocess.Popen[bytes], int, int],
) -> None:
    server, port, metrics_port = two_workers
    assert len(_children(server.pid)) == 3  # two workers and the metrics exporter
    calls = 24
    for _ in range(calls):  # a new connection each time: the kernel spreads them
        with CdsClient(f"127.0.0.1:{port}", timeout=10) as cds:
            assert [e.code for e in cds.evaluate(POTS) if isinstance(e, Conclusion)] == [
                "dx.cervicogenic_headache_supported",
                "mimic.pots",
            ]
    deadline = time.monotonic() + 10
    while (samples := _metrics(metrics_port)).get("cds_evaluations_total", 0) < calls:
        assert time.monotonic() < deadline, samples
        time.sleep(0.1)
    assert samples["cds_evaluations_total"] == calls
    assert samples['cds_rpcs_total{code="OK",method="Evaluate"}'] == calls
    assert samples['cds_rules_fired_total{rule_id="MIM-02"}'] == calls
    assert samples['cds_conclusions_total{code="mimic.pots"}'] == calls
    assert samples['cds_rpc_duration_seconds_count{code="OK",method="Evaluate"}'] == calls


def test_a_dead_worker_is_replaced_and_sigterm_drains(
    two_workers: tuple[subprocess.Popen[bytes], int, int],
) -> None:
    server, port, metrics_port = two_workers
    children = _children(server.pid)
    exporter = listener_pid(metrics_port, children)
    victim = next(child for child in children if child != exporter)
    os.kill(victim, signal.SIGKILL)
    deadline = time.monotonic() + 15
    while victim in _children(server.pid) or len(_children(server.pid)) < 3:
        assert time.monotonic() < deadline, "the worker was not replaced"
        time.sleep(0.1)
    for _ in range(6):
        with CdsClient(f"127.0.0.1:{port}", timeout=10) as cds:
            assert any(e.code == "mimic.pots" for e in cds.evaluate(POTS))
    server.send_signal(signal.SIGTERM)
    assert server.wait(20) == 0
    with pytest.raises(ProcessLookupError):
        os.killpg(server.pid, 0)  # no worker or exporter outlived the supervisor


def test_sessions_stay_consistent_across_workers(
    two_workers: tuple[subprocess.Popen[bytes], int, int],
) -> None:
    """Each reconnect may land on the other worker; versions and facts hold."""
    _, port, _ = two_workers
    with CdsClient(f"127.0.0.1:{port}", timeout=10) as cds, cds.session() as session:
        session_id = session.session_id
        assert isinstance(session.apply(POTS[:1]).outcome, BatchApplied)
    for index, fact in enumerate(POTS[1:], start=2):
        target = f"127.0.0.1:{port}"
        with CdsClient(target, timeout=10) as cds, cds.session(session_id) as resumed:
            assert resumed.version == index - 1
            result = resumed.apply([fact])
            assert isinstance(result.outcome, BatchApplied)
            assert result.outcome.version == index
    with CdsClient(f"127.0.0.1:{port}", timeout=10) as cds, cds.session(session_id) as resumed:
        oracle = {e.code for e in cds.evaluate(POTS) if isinstance(e, Conclusion)}
        assert set(resumed.conclusions) == oracle


def test_overload_is_refused_at_once() -> None:
    """Past max_concurrent_rpcs, RESOURCE_EXHAUSTED now, not a place in a queue.

    Two session streams that have not opened a session yet hold both slots
    (they count from acceptance, and wait without the engine)."""
    running = create_server(ServerConfig(port=0, max_concurrent_rpcs=2))
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
        stub = pb_grpc.DecisionSupportServiceStub(channel)
        release = threading.Event()

        def opening_later() -> Iterator[pb.StreamSessionRequest]:
            release.wait(10)
            yield pb.StreamSessionRequest(open=pb.OpenSession())

        busy = [stub.StreamSession(opening_later(), timeout=10) for _ in range(2)]
        time.sleep(0.3)  # both streams are accepted and waiting
        request = pb.EvaluateRequest(facts=to_proto_facts(POTS))
        started = time.monotonic()
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Evaluate(request, timeout=10))
        assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        assert time.monotonic() - started < 0.25
        release.set()
        for stream in busy:
            assert next(stream).WhichOneof("event") == "opened"
            stream.cancel()
        time.sleep(0.2)
        assert len(list(stub.Evaluate(request, timeout=10))) > 1  # capacity is back
    finally:
        running.stop(grace=1)


def test_metrics_count_statuses_in_process(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    from server.metrics import RPCS

    def count(code: str) -> float:
        return RPCS.labels("Evaluate", code)._value.get()

    before_ok, before_bad = count("OK"), count("INVALID_ARGUMENT")
    list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(POTS)), timeout=10))
    bad = pb.EvaluateRequest(facts=to_proto_facts([{"id": "p", "type": "nope", "fields": {}}]))
    with pytest.raises(grpc.RpcError):
        list(stub.Evaluate(bad, timeout=10))
    assert count("OK") == before_ok + 1
    # grpc.aio sends an abort's status as it is raised; the call is counted a
    # moment later, once the exception has left the handler.
    deadline = time.monotonic() + 5
    while count("INVALID_ARGUMENT") == before_bad and time.monotonic() < deadline:
        time.sleep(0.01)
    assert count("INVALID_ARGUMENT") == before_bad + 1
