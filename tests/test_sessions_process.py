"""Durability with a real server process: SIGKILL right after BatchApplied loses nothing."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client.api import BatchApplied, CdsClient, Conclusion
from server.app import ServerConfig, create_server
from tests.patients import EXAM, HEADACHE, patient

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(target: str, server: subprocess.Popen[bytes], seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            assert server.poll() is None, "the server exited during start-up"
            try:
                answer = health.Check(health_pb2.HealthCheckRequest(), timeout=1)
                if answer.status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass
            assert time.monotonic() < deadline, "the server did not start"
            time.sleep(0.05)


def imaging(n: int) -> dict[str, Any]:
    fields = {"modality": "ct", "region": "brain", "finding": "normal"}
    return {"id": f"i{n}", "type": "imaging", "fields": fields}


BASE = [patient(44), HEADACHE, EXAM]


def test_sigkill_right_after_batch_applied_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "data" / "sessions.db"  # the folder does not exist yet: the server makes it
    port = free_port()
    target = f"127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--session-db", str(db)],
        cwd=ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: the supervisor and its workers
    )
    facts = list(BASE)
    try:
        wait_until_serving(target, server)
        with CdsClient(target, timeout=10) as cds:
            session = cds.session()
            session.apply(BASE)
            for n in range(20):
                result = session.apply([imaging(n)], ["i" + str(n - 1)] if n % 3 else [])
                assert isinstance(result.outcome, BatchApplied)
                if n % 3:
                    facts = [f for f in facts if f["id"] != f"i{n - 1}"]
                facts.append(imaging(n))
            # The last batch: kill the server the moment its acknowledgement arrives.
            for event in session.send(retract=["x"]):
                if isinstance(event, BatchApplied):
                    os.killpg(server.pid, signal.SIGKILL)  # every worker, not just one
                    acknowledged = event.version
            facts = [f for f in facts if f["id"] != "x"]
            known = dict(session.conclusions)
            session.close()  # the server is gone: this only releases the stream
    finally:
        if server.poll() is None:
            server.kill()
        server.wait(timeout=10)
    assert server.returncode == -signal.SIGKILL
    assert acknowledged == 22

    restarted = create_server(ServerConfig(port=0, session_db=str(db)))
    try:
        with CdsClient(f"127.0.0.1:{restarted.port}", timeout=10) as cds:
            with cds.session(session.session_id) as resumed:
                assert resumed.version == acknowledged
                assert resumed.conclusions == known
            oracle = {e.code: e for e in cds.evaluate(facts) if isinstance(e, Conclusion)}
            assert known == oracle
            stored = restarted.sessions.store.load(session.session_id)
            assert stored is not None
            assert [f.id for f in stored.facts] == [f["id"] for f in facts]
    finally:
        restarted.stop(grace=1)


@pytest.mark.parametrize("flag", ["--session-ttl=0", "--session-ttl=3w"])
def test_server_refuses_a_bad_ttl(flag: str) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", flag],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "--session-ttl" in done.stderr
