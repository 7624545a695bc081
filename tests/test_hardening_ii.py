"""Hardening II, each attack or fault reproduced against a real server process.

What a caller without a token, a full disk or a killed supervisor could do to
the server before: mint metric labels and log lines with their own strings,
hold pool threads with requests that never arrive, read the metrics from
another interface, crash workers with SIGBUS, leave an exporter serving a
dead server's numbers on a port the next server then cannot take.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from client.api import CdsClient, Conclusion
from tests.patients import EXAM, HEADACHE, NEGATIVE_SCREEN, patient
from tests.sockets import listener_pid, listening_address
from tests.test_sessions_process import free_port, wait_until_serving

ROOT = Path(__file__).resolve().parents[1]
TOKEN = "hardening-ii-token"
FACTS = [patient(45), HEADACHE, EXAM, NEGATIVE_SCREEN]


@dataclass
class Server:
    process: subprocess.Popen[bytes]
    port: int
    metrics_port: int
    log: Path

    def log_text(self) -> str:
        return self.log.read_text(errors="replace")

    def children(self) -> list[int]:
        text = Path(f"/proc/{self.process.pid}/task/{self.process.pid}/children").read_text()
        return sorted(int(child) for child in text.split())


@contextlib.contextmanager
def server(tmp_path: Path, *extra: str, wait: bool = True) -> Iterator[Server]:
    port, metrics_port = free_port(), free_port()
    log = tmp_path / f"server-{port}.log"
    token_file = tmp_path / "tokens"
    token_file.write_text(TOKEN + "\n")
    token_file.chmod(0o600)
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--port",
                str(port),
                "--workers",
                "1",
                "--session-db",
                str(tmp_path / "sessions.db"),
                "--metrics-port",
                str(metrics_port),
                "--auth-token-file",
                str(token_file),
                "--grace",
                "2",
                *extra,
            ],
            cwd=ROOT,
            stdin=subprocess.DEVNULL,
            stdout=sink,
            stderr=sink,
            start_new_session=True,
            env={k: v for k, v in os.environ.items() if k != "PROMETHEUS_MULTIPROC_DIR"},
        )
    running = Server(process, port, metrics_port, log)
    try:
        if wait:
            wait_until_serving(f"127.0.0.1:{port}", process)
        yield running
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)


def scrape(port: int) -> str:
    return urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()


def evaluate(port: int) -> list[str]:
    with CdsClient(f"127.0.0.1:{port}", timeout=10, token=TOKEN) as cds:
        return [event.code for event in cds.evaluate(FACTS) if isinstance(event, Conclusion)]


def test_unknown_methods_mint_no_metric_labels_or_log_fields(tmp_path: Path) -> None:
    """Item 2: 300 calls to random 6 KB method names grew the scrape to 35 MB."""
    marker = "ZZZZ" + secrets.token_hex(8)
    with server(tmp_path) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        for index in range(200):
            method = f"/a.B/{marker}{index}{'Z' * 2000}"
            call = ch.unary_unary(method, request_serializer=None, response_deserializer=None)
            metadata = (("authorization", f"Bearer {TOKEN}"),) if index % 2 else ()
            with pytest.raises(grpc.RpcError) as refused:
                call(b"", timeout=5, metadata=metadata)
            assert refused.value.code() in (
                grpc.StatusCode.UNAUTHENTICATED,
                grpc.StatusCode.UNIMPLEMENTED,
            )
        assert "dx.cervicogenic_headache_supported" in evaluate(running.port)
        deadline = time.monotonic() + 10
        while 'method="unknown"' not in (text := scrape(running.metrics_port)):
            assert time.monotonic() < deadline, "refused calls were not counted"
            time.sleep(0.1)
        assert marker not in text
        assert len(text) < 200_000
        log = running.log_text()
    assert marker not in log
    # 100 unauthenticated refusals: the refusal line is rate-limited, not one per call.
    assert log.count("call refused") <= 3


def test_refusal_comes_at_once_and_alike_for_every_method(tmp_path: Path) -> None:
    """Items 1 and 6: a refused call whose request never arrives held a pool thread;
    unary and streaming methods were refused differently."""
    never = threading.Event()

    def silent_requests() -> Iterator[bytes]:
        never.wait(30)  # the request message never arrives
        yield b""

    methods = [
        "/cds.v1.DecisionSupportService/GetKnowledgeBase",
        "/cds.v1.DecisionSupportService/Evaluate",
        "/cds.v1.DecisionSupportService/StreamSession",
        "/cds.v1.DecisionSupportService/DeleteSession",
        "/cds.v1.DecisionSupportService/NoSuchMethod",
    ]
    with server(tmp_path) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        answers = set()
        for method in methods:
            call = ch.stream_stream(method, request_serializer=None, response_deserializer=None)
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as refused:
                list(call(silent_requests(), timeout=10))
            assert time.monotonic() - started < 5, f"{method} waited for the request"
            answers.add((refused.value.code(), refused.value.details()))
        never.set()
    (answer,) = answers  # one answer, whatever the method
    assert answer[0] == grpc.StatusCode.UNAUTHENTICATED


def test_metrics_listen_on_loopback_unless_told_otherwise(tmp_path: Path) -> None:
    """Item 5: a server on 0.0.0.0 served its metrics on every interface."""
    with server(tmp_path, "--host", "0.0.0.0") as running:
        assert listening_address(running.metrics_port) == "127.0.0.1"
        assert "cds_evaluations_total" in scrape(running.metrics_port)


def test_the_exporter_stops_with_a_killed_supervisor(tmp_path: Path) -> None:
    """Item 5: after kill -9 of the supervisor the exporter kept the port."""
    with server(tmp_path) as running:
        children = running.children()
        exporter = listener_pid(running.metrics_port, children)
        assert exporter is not None
        os.kill(running.process.pid, signal.SIGKILL)
        running.process.wait(10)
        deadline = time.monotonic() + 10
        while any(Path(f"/proc/{child}").exists() for child in children):
            assert time.monotonic() < deadline, "a child outlived its supervisor"
            time.sleep(0.1)
        assert listening_address(running.metrics_port) is None


def test_a_metrics_port_in_use_stops_start_up_with_one_line(tmp_path: Path) -> None:
    """Item 5: the next server's exporter died of EADDRINUSE, unreported."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with server(tmp_path, "--metrics-port", str(port), wait=False) as running:
            assert running.process.wait(30) == 1
            log = running.log_text()
    assert f"metrics cannot listen on 127.0.0.1:{port}" in log
    assert "Traceback" not in log


@contextlib.contextmanager
def small_tmpfs(tmp_path: Path, size: str) -> Iterator[Path]:
    mount = tmp_path / "metrics"
    mount.mkdir()
    result = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if result.returncode != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root): run as root to test this")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(folder: Path) -> None:
    """Write until the file system is full."""
    with contextlib.suppress(OSError), (folder / "filler").open("wb", buffering=0) as filler:
        while True:
            filler.write(b"\0" * 4096)


def test_a_full_metrics_disk_stops_metrics_not_evaluate(tmp_path: Path) -> None:
    """Item 3: on a full disk each new metrics page was a SIGBUS that killed the
    worker, and every replacement after it, on its first call."""
    with (
        small_tmpfs(tmp_path, "1m") as folder,
        server(tmp_path, "--metrics-dir", str(folder)) as running,
    ):
        exporter = listener_pid(running.metrics_port, running.children())
        (first,) = (child for child in running.children() if child != exporter)
        fill(folder)
        os.kill(first, signal.SIGKILL)  # its replacement must create its files on a full disk
        deadline = time.monotonic() + 15
        while (workers := [c for c in running.children() if c not in (exporter, first)]) == []:
            assert time.monotonic() < deadline, "the worker was not replaced"
            time.sleep(0.1)
        (replacement,) = workers
        wait_until_serving(f"127.0.0.1:{running.port}", running.process)
        for _ in range(40):
            assert "dx.cervicogenic_headache_supported" in evaluate(running.port)
        with CdsClient(f"127.0.0.1:{running.port}", timeout=10, token=TOKEN) as cds:
            cds.knowledge_base()  # another method: another label series
        assert replacement in running.children(), "the replacement worker died"
        log = running.log_text()
    assert f"worker {replacement} exited" not in log
    assert log.count("metrics recording stopped") == 1


def test_a_full_metrics_disk_at_start_up_is_one_line(tmp_path: Path) -> None:
    """Item 3: started on a full disk, the supervisor died of SIGBUS with an empty log."""
    with small_tmpfs(tmp_path, "256k") as folder:
        fill(folder)
        with server(tmp_path, "--metrics-dir", str(folder), wait=False) as running:
            assert running.process.wait(30) == 1
            log = running.log_text()
    assert f"metrics folder {folder}" in log
    assert "Traceback" not in log


def test_temporary_metrics_folders_of_killed_supervisors_are_removed(tmp_path: Path) -> None:
    """Item 6: the cds-metrics-* folders of killed supervisors were left behind."""
    dead = subprocess.Popen(["true"])
    dead.wait()
    temp = Path(tempfile.gettempdir())
    orphan = temp / f"cds-metrics-{dead.pid}-orphan"
    alive = temp / f"cds-metrics-{os.getpid()}-alive"
    orphan.mkdir()
    alive.mkdir()
    try:
        with server(tmp_path):
            assert not orphan.exists()
            assert alive.exists()
    finally:
        for folder in (orphan, alive):
            if folder.exists():
                folder.rmdir()


def test_pem_shaped_garbage_is_one_line_and_exit_2(tmp_path: Path) -> None:
    """Item 6: invalid PEM files gave a 27-line traceback and exit 1."""
    garbage = tmp_path / "bad.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    result = subprocess.run(
        [sys.executable, "-m", "server", "--tls-cert", str(garbage), "--tls-key", str(garbage)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    assert "not a valid certificate chain and matching private key" in result.stderr


def test_anyone_without_a_token_cannot_starve_health_or_callers(tmp_path: Path) -> None:
    """Item 1: 64 open health watches (health needs no token) took every thread
    and concurrency slot: health checks and authenticated calls then got
    RESOURCE_EXHAUSTED, and an orchestrator would restart a healthy server."""
    from grpc_health.v1 import health_pb2, health_pb2_grpc

    with server(tmp_path) as running, grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
        watches = [
            health_pb2_grpc.HealthStub(ch).Watch(health_pb2.HealthCheckRequest(), timeout=30)
            for _ in range(64)
        ]
        never = threading.Event()

        def silent_requests() -> Iterator[bytes]:
            never.wait(30)
            yield b""

        unread = ch.stream_stream(
            "/cds.v1.DecisionSupportService/GetKnowledgeBase",
            request_serializer=None,
            response_deserializer=None,
        )
        half_open = [unread(silent_requests(), timeout=30) for _ in range(70)]
        time.sleep(1.5)
        probe = grpc.insecure_channel(
            f"127.0.0.1:{running.port}", options=[("grpc.use_local_subchannel_pool", 1)]
        )
        with probe:
            answer = health_pb2_grpc.HealthStub(probe).Check(
                health_pb2.HealthCheckRequest(), timeout=3
            )
            assert answer.status == health_pb2.HealthCheckResponse.SERVING
        assert "dx.cervicogenic_headache_supported" in evaluate(running.port)
        never.set()
        refused = 0
        for watch in watches:
            try:
                next(watch)
            except grpc.RpcError as error:
                assert error.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                refused += 1
            finally:
                watch.cancel()
        assert refused >= 64 - 8, "the watches have a small cap of their own"
        for call in half_open:
            call.cancel()


def test_session_streams_count_from_acceptance_and_silent_ones_are_cut_off(
    tmp_path: Path,
) -> None:
    """Item 1: with a token, a StreamSession that never sent `open` held a thread
    without counting against the stream limit, for as long as it liked."""
    from cds.v1 import decision_support_pb2 as pb
    from cds.v1 import decision_support_pb2_grpc as pb_grpc

    with server(tmp_path, "--max-session-streams", "2") as running:
        metadata = (("authorization", f"Bearer {TOKEN}"),)
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as ch:
            stub = pb_grpc.DecisionSupportServiceStub(ch)
            never = threading.Event()

            def silence() -> Iterator[pb.StreamSessionRequest]:
                never.wait(60)
                yield pb.StreamSessionRequest()

            silent = [stub.StreamSession(silence(), metadata=metadata) for _ in range(2)]
            time.sleep(1.0)
            opening = stub.StreamSession(
                iter([pb.StreamSessionRequest(open=pb.OpenSession())]), metadata=metadata
            )
            with pytest.raises(grpc.RpcError) as full:
                next(opening)
            assert full.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
            started = time.monotonic()
            for call in silent:  # cut off by the server after its open timeout
                with pytest.raises(grpc.RpcError):
                    next(call)
            assert time.monotonic() - started < 15
            never.set()
        target = f"127.0.0.1:{running.port}"
        with CdsClient(target, timeout=10, token=TOKEN) as cds, cds.session() as session:
            assert session.version == 0  # the slots are free again
