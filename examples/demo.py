"""End-to-end demo: start a server, evaluate every example patient, evaluate one
as the FHIR bundle an EHR would send, replay every example session timeline,
send each as a CDS Hooks call through `python -m cds_hooks`, stop the servers.

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

import json
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import IO, Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from cds_hooks.cards import prefetch_from_bundle
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


def hook_request(bundle: dict[str, Any], hook: str, **context: Any) -> dict[str, Any]:
    """A CDS Hooks request as an EHR sends it: the bundle's resources as the four
    prefetch searches (`cds_hooks.cards.prefetch_from_bundle`)."""
    patient_id, prefetch = prefetch_from_bundle(bundle)
    return {
        "hook": hook,
        "hookInstance": str(uuid.uuid4()),
        "context": {"userId": "Practitioner/demo", "patientId": patient_id, **context},
        "prefetch": prefetch,
    }


def post(url: str, body: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=10) as answer:
        result: dict[str, Any] = json.load(answer)
        return result


def show_cards(cards: list[dict[str, Any]]) -> None:
    if not cards:
        print("  (no cards)")
    for card in cards:
        print(f"  [{card['indicator'].upper():8}] {card['summary']}")
        for suggestion in card.get("suggestions", []):
            print(f"             suggestion: {suggestion['label']}")


def hooks_demo(target: str, folder: str) -> list[str]:
    """Start `python -m cds_hooks` against the server, send each example bundle
    as a patient-view call and one order-select with a manipulation order while
    manipulation is contraindicated; print the cards as an EHR would show them."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    hooks = subprocess.Popen(
        [sys.executable, "-m", "cds_hooks", "--port", str(port), "--target", target,
         "--allow-unauthenticated", "--feedback-db", f"{folder}/feedback.db",
         # The example records date from 2025-06-01: let their vitals count today.
         "--vitals-window", "3650d",
         "--log-level", "ERROR"],
        cwd=REPO,
        stdin=subprocess.DEVNULL,
    )  # fmt: skip
    failed = []
    try:
        deadline = time.monotonic() + STARTUP_SECONDS
        while True:
            try:
                with urllib.request.urlopen(f"{url}/healthz", timeout=1):
                    break
            except OSError:
                if hooks.poll() is not None or time.monotonic() > deadline:
                    return ["the CDS Hooks service did not start"]
                time.sleep(0.2)
        for path in sorted((EXAMPLES / "fhir").glob("*.bundle.json")):
            print(f"patient-view, {path.name} (as of now):", flush=True)
            bundle = json.loads(path.read_text())
            show_cards(
                post(f"{url}/cds-services/cgh-patient-view", hook_request(bundle, "patient-view"))[
                    "cards"
                ]
            )
        bundle = json.loads(FHIR_EXAMPLE.read_text())
        order = {
            "resourceType": "ServiceRequest",
            "id": "draft-manipulation",
            "status": "draft",
            "intent": "order",
            "subject": {"reference": "Patient/p1"},
            "code": {"coding": [{"system": "http://www.ama-assn.org/go/cpt", "code": "98940"}]},
        }
        drafts = {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": order}]}
        body = hook_request(bundle, "order-select", draftOrders=drafts,
                            selections=["ServiceRequest/draft-manipulation"])  # fmt: skip
        print(f"order-select, {FHIR_EXAMPLE.name} + a draft chiropractic manipulation order:")
        cards = post(f"{url}/cds-services/cgh-order-select", body)["cards"]
        show_cards(cards)
        if not cards:
            failed.append("order-select gave no card for a contraindicated manipulation")
    except (OSError, ValueError, KeyError) as error:
        failed.append(f"CDS Hooks: {type(error).__name__}: {error}")
    finally:
        hooks.terminate()
        hooks.wait(SHUTDOWN_GRACE_SECONDS)
    print(flush=True)
    return failed


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
            print(f"{rule}\nCDS Hooks (python -m cds_hooks)\n{rule}", flush=True)
            failed += hooks_demo(target, sessions)
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
        f"CDS Hooks cards shown, {len(timelines)} timeline(s) replayed"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
