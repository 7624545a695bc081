"""Evaluation latency, in-process and over gRPC, over the scenario patients.

    .venv/bin/python bench/latency.py [--count N]

In-process: `RulesEngine.evaluate` on validated facts (the engine alone), and
the service path without transport (proto -> validation -> engine -> proto).
Over gRPC: one client calling a server subprocess on loopback, one call at a
time. Absolute numbers drift on a shared machine: compare within one run.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import grpc
from google.protobuf import struct_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from cds.v1 import decision_support_pb2 as pb  # noqa: E402
from cds.v1 import decision_support_pb2_grpc as pb_grpc  # noqa: E402
from kb.engine import RulesEngine  # noqa: E402
from kb.facts import validate_facts  # noqa: E402
from kb.scenarios import load_scenarios  # noqa: E402
from server.convert import conclusion_to_proto, facts_from_proto  # noqa: E402


def _requests() -> list[pb.EvaluateRequest]:
    requests = []
    for scenario in load_scenarios():
        if scenario.error:
            continue
        facts = []
        for fact in scenario.facts:
            fields = struct_pb2.Struct()
            fields.update(dict(fact.fields))
            facts.append(pb.Fact(id=fact.id, type=fact.type, fields=fields))
        requests.append(pb.EvaluateRequest(facts=facts))
    return requests


def _measure(count: int, call: Callable[[int], object]) -> list[float]:
    for index in range(min(count, 200)):  # warm-up
        call(index)
    times = []
    for index in range(count):
        start = time.perf_counter()
        call(index)
        times.append(time.perf_counter() - start)
    return times


def _row(name: str, times: list[float]) -> str:
    ordered = sorted(times)
    p50 = statistics.median(ordered) * 1e3
    p99 = ordered[int(0.99 * (len(ordered) - 1))] * 1e3
    return f"| {name} | {len(times)} | {p50:.3f} | {p99:.3f} | {len(times) / sum(times):,.0f} |"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=5000)
    count = parser.parse_args().count
    requests = _requests()
    facts = [validate_facts(facts_from_proto(r.facts)) for r in requests]
    engine = RulesEngine()

    def service_path(i: int) -> object:
        request = requests[i % len(requests)]
        result = engine.evaluate(validate_facts(facts_from_proto(request.facts)))
        return [conclusion_to_proto(c) for c in result.conclusions]

    rows = [
        _row(
            "engine, in-process", _measure(count, lambda i: engine.evaluate(facts[i % len(facts)]))
        ),
        _row("service path, in-process", _measure(count, service_path)),
    ]
    port = _free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "server", "--port", str(port), "--log-level", "WARNING"], cwd=ROOT
    )
    try:
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        health = health_pb2_grpc.HealthStub(channel)
        deadline = time.monotonic() + 60
        while True:
            try:
                status = health.Check(health_pb2.HealthCheckRequest(), timeout=1).status
                if status == health_pb2.HealthCheckResponse.SERVING:
                    break
            except grpc.RpcError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("server did not become healthy")
            time.sleep(0.1)
        stub = pb_grpc.DecisionSupportServiceStub(channel)
        rows.append(
            _row(
                "Evaluate over gRPC (loopback, 1 client)",
                _measure(
                    count, lambda i: list(stub.Evaluate(requests[i % len(requests)], timeout=10))
                ),
            )
        )
    finally:
        server.terminate()
        server.wait(30)
    print(f"{len(requests)} distinct patients (the scenarios), {count} calls each row\n")
    print("| path | calls | p50 ms | p99 ms | per second |")
    print("|---|---|---|---|---|")
    print("\n".join(rows))


if __name__ == "__main__":
    main()
