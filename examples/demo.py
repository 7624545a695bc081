"""End-to-end demo: start a server, evaluate every example patient, evaluate one
as the FHIR bundle an EHR would send, replay every example session timeline,
stop the server.

Run with `.venv/bin/python examples/demo.py` (what `make demo` runs). It uses
the real stack, a server subprocess on a free loopback port and the CLI, so a
demo that passes shows the whole path works, not a mock of it. The server's
log goes to a temporary file and is shown only when something fails, so the
output reads as the clinical report it is.

Patients are `examples/*.json` (one `evaluate` each); `FHIR_EXAMPLE` is
evaluated from `examples/fhir/` as of the instant its bundle was written for
(`evaluate-fhir`: what was read, then the conclusions and their records);
timelines are
`examples/timeline-*.jsonl` (one `session` each, replayed in a fresh session
that is deleted afterwards; the server keeps sessions in a temporary folder).

Exit status: 0 when the server came up, every example evaluated and every
timeline replayed, 1 otherwise.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import IO

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from client import cli

EXAMPLES = Path(__file__).resolve().parent
REPO = EXAMPLES.parent
SERVICE = "cds.v1.DecisionSupportService"
STARTUP_SECONDS = 30.0
SHUTDOWN_GRACE_SECONDS = 15.0
FHIR_EXAMPLE = EXAMPLES / "fhir" / "dissection-red-flag.bundle.json"
FHIR_AS_OF = "2025-06-01T12:00:00Z"  # the instant the example bundles describe


def free_port() -> int:
    """A port free right now; the server binds it a moment later (a race we accept)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_until_serving(target: str, server: subprocess.Popen[bytes], seconds: float) -> None:
    """Poll the standard health service: the server says SERVING once the KB is loaded."""
    deadline = time.monotonic() + seconds
    request = health_pb2.HealthCheckRequest(service=SERVICE)
    with grpc.insecure_channel(target) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        while True:
            if server.poll() is not None:
                raise RuntimeError(f"the server exited during start-up ({server.returncode})")
            try:
                status = health.Check(request, timeout=1.0).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    return
            except grpc.RpcError:
                pass  # not listening yet
            if time.monotonic() > deadline:
                raise RuntimeError(f"the server was not SERVING within {seconds:g} s")
            time.sleep(0.2)


def stop(server: subprocess.Popen[bytes]) -> int:
    """SIGTERM lets in-flight calls finish; a server that ignores it is killed.

    Returns the server's exit status: a clean shutdown is part of what the demo shows.
    """
    if server.poll() is None:
        server.terminate()
        try:
            server.wait(timeout=SHUTDOWN_GRACE_SECONDS)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
    return server.returncode


def show_log(log: IO[bytes]) -> None:
    log.seek(0)
    text = log.read().decode(errors="replace").strip()
    if text:
        print("---- server log ----", file=sys.stderr)
        print(text, file=sys.stderr)


def main() -> int:
    examples = sorted(EXAMPLES.glob("*.json"))
    timelines = sorted(EXAMPLES.glob("timeline-*.jsonl"))
    if not examples:
        print(f"no examples in {EXAMPLES}", file=sys.stderr)
        return 1
    port = free_port()
    target = f"127.0.0.1:{port}"
    with tempfile.TemporaryFile() as log, tempfile.TemporaryDirectory() as sessions:
        server = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "server",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--session-db",
                str(Path(sessions) / "sessions.db"),
            ],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        failed: list[str] = []
        try:
            wait_until_serving(target, server, STARTUP_SECONDS)
            print(f"server SERVING on {target}\n", flush=True)
            for path in examples:
                rule = "=" * 100
                print(f"{rule}\n{path.name}\n{rule}", flush=True)
                status = cli.main(["--target", target, "evaluate", str(path)])
                print(flush=True)
                if status != cli.EXIT_OK:
                    failed.append(f"{path.name} (exit {status})")
            rule = "=" * 100
            print(f"{rule}\n{FHIR_EXAMPLE.name} (FHIR, as of {FHIR_AS_OF})\n{rule}", flush=True)
            fhir = ["evaluate-fhir", str(FHIR_EXAMPLE), "--as-of", FHIR_AS_OF]
            status = cli.main(["--target", target, *fhir])
            print(flush=True)
            if status != cli.EXIT_OK:
                failed.append(f"{FHIR_EXAMPLE.name} (exit {status})")
            for path in timelines:
                rule = "=" * 100
                print(f"{rule}\n{path.name} (session)\n{rule}", flush=True)
                status = cli.main(["--target", target, "session", str(path), "--delete"])
                print(flush=True)
                if status != cli.EXIT_OK:
                    failed.append(f"{path.name} (exit {status})")
        except (RuntimeError, KeyboardInterrupt) as error:
            failed.append(str(error) or type(error).__name__)
        finally:
            server_status = stop(server)
            if server_status != 0:
                failed.append(f"the server exited with status {server_status}")
        if failed:
            show_log(log)
            print("demo FAILED: " + "; ".join(failed), file=sys.stderr)
            return 1
    print(
        f"demo OK: {len(examples)} examples evaluated, 1 FHIR bundle evaluated, "
        f"{len(timelines)} timeline(s) replayed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
