"""`make bench`: one run, one machine, every figure beside its same-run baseline.

    python -m bench.run [--seconds S] [--memory-evaluations N] [--quick]

Writes bench/results.json and bench/results.md:

1. The engine in-process, one thread, over a seeded mix of 2,400 distinct
   patients covering every conclusion code; then the full service path in
   process (proto -> validation -> engine -> proto), split by stage.
2. Over gRPC on loopback, load from separate processes, at concurrency 1, 8 and
   32: the no-engine baseline (bench/baseline_server.py: canned answers of the
   same number and size, one process), the service with --workers 1 and with
   --workers 2. Ratios are to the baseline at the same concurrency.
3. Sessions: batch -> BatchApplied over gRPC for a session of about 20 facts.
4. Memory: each worker's RSS before and after N evaluations.

The machine has 2 cores shared by the servers and the load generators, and it
is shared with others: absolute numbers drift, ratios within a run hold.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import pickle
import platform
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.mix import patient_mix
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.engine import RulesEngine
from kb.facts import validate_facts
from server.convert import conclusion_to_proto, facts_from_proto

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench"
CONCURRENCY = (1, 8, 32)


def _stats(times: Sequence[float], seconds: float | None = None) -> dict[str, float]:
    ordered = sorted(times)
    return {
        "count": len(ordered),
        "per_second": len(ordered) / (seconds if seconds is not None else sum(ordered)),
        "p50_ms": statistics.median(ordered) * 1e3,
        "p99_ms": ordered[int(0.99 * (len(ordered) - 1))] * 1e3,
    }


def _requests(mix: list[list[dict[str, Any]]]) -> list[pb.EvaluateRequest]:
    from google.protobuf import struct_pb2

    requests = []
    for patient in mix:
        facts = []
        for fact in patient:
            fields = struct_pb2.Struct()
            fields.update(fact["fields"])
            facts.append(pb.Fact(id=fact["id"], type=fact["type"], fields=fields))
        requests.append(pb.EvaluateRequest(facts=facts))
    return requests


def in_process(requests: list[pb.EvaluateRequest]) -> tuple[dict[str, Any], list[list[bytes]]]:
    """Engine alone, then the service path by stage; also records canned answers."""
    engine = RulesEngine()
    validated = [validate_facts(facts_from_proto(r.facts)) for r in requests]
    for facts in validated[:300]:  # warm-up
        engine.evaluate(facts)
    engine_times = []
    for facts in validated:
        started = time.perf_counter()
        engine.evaluate(facts)
        engine_times.append(time.perf_counter() - started)
    stages: dict[str, list[float]] = {
        "convert in": [],
        "validate": [],
        "engine": [],
        "convert out": [],
    }
    path_times = []
    canned = []
    for request in requests:
        t0 = time.perf_counter()
        raw = facts_from_proto(request.facts)
        t1 = time.perf_counter()
        facts = validate_facts(raw)
        t2 = time.perf_counter()
        result = engine.evaluate(facts)
        t3 = time.perf_counter()
        responses = [
            pb.EvaluateResponse(conclusion=conclusion_to_proto(c)) for c in result.conclusions
        ]
        t4 = time.perf_counter()
        for name, (start, end) in zip(
            stages, ((t0, t1), (t1, t2), (t2, t3), (t3, t4)), strict=True
        ):
            stages[name].append(end - start)
        path_times.append(t4 - t0)
        summary = pb.EvaluationSummary(
            conclusion_count=len(result.conclusions),
            rules_fired=result.rules_fired,
            knowledge_base_version="bench",
        )
        canned.append(
            [r.SerializeToString() for r in [*responses, pb.EvaluateResponse(summary=summary)]]
        )
    engine_stats = _stats(engine_times)
    rows = {"engine": engine_stats, "service path": _stats(path_times)}
    for name, times in stages.items():
        rows[f"  {name}"] = {"mean_us": statistics.fmean(times) * 1e6}
    return rows, canned


# --------------------------------------------------------------------------- load over gRPC


def _load_process(
    target: str, requests: list[bytes], callers: int, seconds: float, offset: int, out: Any
) -> None:
    """One load-generating process: `callers` concurrent callers (asyncio, the
    cheapest client grpcio offers), each one call at a time on its own
    connection, as separate clients would be — so connections spread across
    the server's worker processes."""
    asyncio.run(_load(target, requests, callers, seconds, offset, out))


async def _load(
    target: str, requests: list[bytes], callers: int, seconds: float, offset: int, out: Any
) -> None:
    decoded = [pb.EvaluateRequest.FromString(r) for r in requests]
    start_at = time.monotonic() + 0.5
    stop_at = start_at + seconds
    errors = [0]

    async def caller(number: int) -> list[float]:
        times = []
        options = [("grpc.use_local_subchannel_pool", 1)]
        async with grpc.aio.insecure_channel(target, options=options) as channel:
            stub = pb_grpc.DecisionSupportServiceStub(channel)
            index = offset + number * 7919
            while (now := time.monotonic()) < stop_at:
                request = decoded[index % len(decoded)]
                index += 1
                started = time.perf_counter()
                try:
                    async for _ in stub.Evaluate(request, timeout=30):
                        pass
                except grpc.RpcError:
                    errors[0] += 1
                    continue
                if now >= start_at:
                    times.append(time.perf_counter() - started)
        return times

    results = await asyncio.gather(*(caller(n) for n in range(callers)))
    out.put(([t for r in results for t in r], errors[0]))


def load(target: str, requests: list[bytes], concurrency: int, seconds: float) -> dict[str, Any]:
    """Throughput and latency at `concurrency`, from up to two spawned processes."""
    context = multiprocessing.get_context("spawn")
    processes = 1 if concurrency == 1 else 2
    queue = context.Queue()
    procs = [
        context.Process(
            target=_load_process,
            args=(target, requests, concurrency // processes, seconds, n * 1000, queue),
        )
        for n in range(processes)
    ]
    for proc in procs:
        proc.start()
    times: list[float] = []
    errors = 0
    for _ in procs:
        got, failed = queue.get(timeout=seconds + 120)
        times += got
        errors += failed
    for proc in procs:
        proc.join()
    stats = _stats(times, seconds)
    stats["errors"] = errors
    return stats


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(target: str, request: pb.EvaluateRequest) -> None:
    deadline = time.monotonic() + 60
    with grpc.insecure_channel(target) as channel:
        stub = pb_grpc.DecisionSupportServiceStub(channel)
        while True:
            try:
                list(stub.Evaluate(request, timeout=2))
                return
            except grpc.RpcError:
                if time.monotonic() > deadline:
                    raise SystemExit(f"{target} did not come up") from None
                time.sleep(0.1)


class _Server:
    def __init__(self, command: list[str], port: int, request: pb.EvaluateRequest) -> None:
        self.target = f"127.0.0.1:{port}"
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_ready(self.target, request)

    def workers(self) -> list[int]:
        pid = self.process.pid
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        return [int(child) for child in children] or [pid]

    def stop(self) -> None:
        self.process.send_signal(signal.SIGTERM)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _service(workers: int, db: Path, request: pb.EvaluateRequest) -> _Server:
    port = _free_port()
    command = [
        sys.executable,
        "-m",
        "server",
        "--port",
        str(port),
        "--workers",
        str(workers),
        "--session-db",
        str(db / f"w{workers}.db"),
        "--log-level",
        "WARNING",
    ]
    return _Server(command, port, request)


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def over_grpc(
    requests: list[pb.EvaluateRequest], canned: list[list[bytes]], seconds: float, db: Path
) -> dict[str, Any]:
    serialized = [r.SerializeToString() for r in requests]
    results: dict[str, Any] = {}
    canned_file = db / "canned.pickle"
    canned_file.write_bytes(pickle.dumps(canned))
    port = _free_port()
    baseline = _Server(
        [
            sys.executable,
            "-m",
            "bench.baseline_server",
            "--port",
            str(port),
            "--canned",
            str(canned_file),
        ],
        port,
        requests[0],
    )
    try:
        results["baseline"] = {
            c: load(baseline.target, serialized, c, seconds) for c in CONCURRENCY
        }
    finally:
        baseline.stop()
    for workers in (1, 2):
        server = _service(workers, db, requests[0])
        try:
            results[f"workers {workers}"] = {
                c: load(server.target, serialized, c, seconds) for c in CONCURRENCY
            }
        finally:
            server.stop()
    return results


def memory(requests: list[pb.EvaluateRequest], evaluations: int, db: Path) -> dict[str, Any]:
    """Each worker's RSS before and after `evaluations` calls (--workers 2)."""
    serialized = [r.SerializeToString() for r in requests]
    server = _service(2, db, requests[0])
    try:
        pids = [pid for pid in server.workers() if pid != server.process.pid]
        before = {pid: _rss_mb(pid) for pid in pids}
        done = 0
        started = time.perf_counter()
        while done < evaluations:  # bounded by count: ~8 concurrent callers
            chunk = load(server.target, serialized, 8, 5.0)
            done += chunk["count"]
        after = {pid: _rss_mb(pid) for pid in pids}
        return {
            "evaluations": done,
            "seconds": time.perf_counter() - started,
            "workers": [
                {
                    "pid": pid,
                    "rss_before_mb": before[pid],
                    "rss_after_mb": after[pid],
                    "growth_mb": after[pid] - before[pid],
                }
                for pid in pids
            ],
        }
    finally:
        server.stop()


def sessions(count: int, db: Path) -> dict[str, Any]:
    from bench.session_latency import _over_grpc

    return _stats(_over_grpc(count, db / "sessions.db"))


# --------------------------------------------------------------------------- report


def _targets(results: dict[str, Any]) -> list[tuple[str, bool, str]]:
    grpc_rows = results["grpc"]
    default = f"workers {min(os.cpu_count() or 1, 2)}"
    base8 = grpc_rows["baseline"][8]["per_second"]
    service8 = grpc_rows[default][8]
    scaling = grpc_rows["workers 2"][8]["per_second"] / grpc_rows["workers 1"][8]["per_second"]
    growth = max(w["growth_mb"] for w in results["memory"]["workers"])
    return [
        (
            "c=8, default workers >= no-engine baseline throughput",
            service8["per_second"] >= base8,
            f"{service8['per_second'] / base8:.2f}x",
        ),
        ("--workers 2 >= 1.6 x --workers 1 (c=8)", scaling >= 1.6, f"{scaling:.2f}x"),
        ("p99 at c=8 < 15 ms", service8["p99_ms"] < 15, f"{service8['p99_ms']:.1f} ms"),
        ("worker RSS growth < 20 MB", growth < 20, f"{growth:+.1f} MB"),
    ]


def render(results: dict[str, Any]) -> str:
    lines = [
        "# Benchmark results",
        "",
        f"One run of `make bench` on {results['machine']}, {results['date']}. "
        f"{results['patients']} distinct patients (seeded), every conclusion code covered. "
        "Ratios compare figures measured in this same run.",
        "",
        "## In process, one thread",
        "",
        "| path | per second | p50 ms | p99 ms | ratio to engine |",
        "|---|---|---|---|---|",
    ]
    engine = results["in_process"]["engine"]
    for name, row in results["in_process"].items():
        if "per_second" in row:
            lines.append(
                f"| {name} | {row['per_second']:,.0f} | {row['p50_ms']:.3f} | {row['p99_ms']:.3f} "
                f"| {row['per_second'] / engine['per_second']:.2f} |"
            )
        else:
            lines.append(f"| {name} (mean) | | {row['mean_us'] / 1e3:.3f} | | |")
    lines += [
        "",
        "## Over gRPC on loopback (load from separate processes)",
        "",
        "| server | concurrency | calls/s | p50 ms | p99 ms | errors | ratio to baseline |",
        "|---|---|---|---|---|---|---|",
    ]
    for server, rows in results["grpc"].items():
        for concurrency, row in rows.items():
            base = results["grpc"]["baseline"][concurrency]["per_second"]
            lines.append(
                f"| {server} | {concurrency} | {row['per_second']:,.0f} | {row['p50_ms']:.2f} | "
                f"{row['p99_ms']:.2f} | {row['errors']} | {row['per_second'] / base:.2f} |"
            )
    session = results["sessions"]
    evaluate1 = results["grpc"]["workers 1"][1]
    lines += [
        "",
        "## Sessions (20 facts, batch -> BatchApplied, one client)",
        "",
        "| p50 ms | p99 ms | ratio of p50 to Evaluate p50 (workers 1, c=1) |",
        "|---|---|---|",
        f"| {session['p50_ms']:.2f} | {session['p99_ms']:.2f} | "
        f"{session['p50_ms'] / evaluate1['p50_ms']:.2f} |",
        "",
        f"## Memory ({results['memory']['evaluations']:,} evaluations, --workers 2)",
        "",
        "| worker | RSS before MB | RSS after MB | growth MB | growth ratio |",
        "|---|---|---|---|---|",
    ]
    for worker in results["memory"]["workers"]:
        lines.append(
            f"| {worker['pid']} | {worker['rss_before_mb']:.1f} | {worker['rss_after_mb']:.1f} | "
            f"{worker['growth_mb']:+.1f} | {worker['rss_after_mb'] / worker['rss_before_mb']:.3f} |"
        )
    lines += ["", "## Targets", "", "| target | met | measured |", "|---|---|---|"]
    for name, met, measured in _targets(results):
        lines.append(f"| {name} | {'yes' if met else 'no'} | {measured} |")
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.run", description=__doc__)
    parser.add_argument("--seconds", type=float, default=6.0, help="per gRPC measurement")
    parser.add_argument("--memory-evaluations", type=int, default=100_000)
    parser.add_argument("--session-batches", type=int, default=500)
    parser.add_argument("--output", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    mix = patient_mix()
    requests = _requests(mix)
    results: dict[str, Any] = {
        "machine": (
            f"{platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"
        ),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "patients": len(mix),
    }
    print(f"in-process over {len(mix)} patients ...", flush=True)
    results["in_process"], canned = in_process(requests)
    (ROOT / "data").mkdir(exist_ok=True)  # the disk `python -m server` keeps sessions on
    with tempfile.TemporaryDirectory(prefix="cds-bench-", dir=ROOT / "data") as folder:
        db = Path(folder)
        print("over gRPC ...", flush=True)
        results["grpc"] = over_grpc(requests, canned, args.seconds, db)
        print("sessions ...", flush=True)
        results["sessions"] = sessions(args.session_batches, db)
        print(f"memory over {args.memory_evaluations:,} evaluations ...", flush=True)
        results["memory"] = memory(requests, args.memory_evaluations, db)
    results["seconds"] = time.perf_counter() - started
    args.output.mkdir(parents=True, exist_ok=True)
    (args.output / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
    markdown = render(results)
    (args.output / "results.md").write_text(markdown)
    print(markdown)
    print(f"bench finished in {results['seconds']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
