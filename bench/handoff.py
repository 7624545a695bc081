"""What handing one evaluation to another thread or process costs, without the work.

    python -m bench.handoff [--count N]

Issue 12 weighs where the engine should run relative to the gRPC threads. This
measures only the hand-off, one caller, one evaluation at a time, over the
load mix's real payloads (a request's facts in, its answer out); the
"engine" side answers a precomputed result at once:

- thread: today's EngineWorker pattern, a job on a queue.SimpleQueue to a
  thread and the answer back on a per-call SimpleQueue;
- pipe, proto bytes: the serialized EvaluateRequest to a forked process over a
  multiprocessing Connection, the serialized responses back (no pickle);
- pipe, pickled facts: validated `Fact`s pickled to the process, the
  `EvaluationResult` (conclusion dataclasses) pickled back;
- pipe, pickled raw facts: `FactIn`s (before validation) out, the result back.

Rows: round-trip latency, and CPU per round trip in the caller's process and
in the other one (user + system, from getrusage; the thread row has only one).
"""

from __future__ import annotations

import argparse
import multiprocessing
import pickle
import queue
import resource
import statistics
import threading
import time
from collections.abc import Callable
from typing import Any

from bench.mix import load_mix, patient_mix
from kb.engine import RulesEngine
from kb.facts import FactIn, validate_facts
from server.convert import conclusion_response, facts_from_proto
from server.limits import DEFAULT_LIMITS


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _payloads() -> list[dict[str, Any]]:
    from bench.run import _requests

    mix = patient_mix()
    requests = _requests(mix)
    engine = RulesEngine()
    answers = [
        engine.evaluate(validate_facts(facts_from_proto(r.facts, DEFAULT_LIMITS))) for r in requests
    ]
    indexes = load_mix([[c.code for c in answer.conclusions] for answer in answers])
    payloads = []
    for i in indexes:
        raw = facts_from_proto(requests[i].facts, DEFAULT_LIMITS)
        answer = answers[i]
        responses = [conclusion_response(c).SerializeToString() for c in answer.conclusions]
        payloads.append(
            {
                "request_bytes": requests[i].SerializeToString(),
                "answer_bytes": b"".join(len(r).to_bytes(4, "little") + r for r in responses),
                "raw": raw,
                "facts": validate_facts(raw),
                "result": answer,
            }
        )
    return payloads


def _child(connection: Any, answers: list[Any], mode: str) -> None:
    started = _cpu()
    index = 0
    while True:
        if mode == "bytes":
            data = connection.recv_bytes()
            if not data:
                break
            connection.send_bytes(answers[index % len(answers)])
        else:
            message = connection.recv()
            if message is None:
                break
            connection.send(answers[index % len(answers)])
        index += 1
    connection.send(_cpu() - started)


def _over_pipe(payloads: list[dict[str, Any]], mode: str, count: int) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    ours, theirs = context.Pipe()
    if mode == "bytes":
        answers = [p["answer_bytes"] for p in payloads]
        requests = [p["request_bytes"] for p in payloads]
    else:
        answers = [p["result"] for p in payloads]
        requests = [p[mode] for p in payloads]
    process = context.Process(target=_child, args=(theirs, answers, mode))
    process.start()
    send: Callable[[Any], None] = ours.send_bytes if mode == "bytes" else ours.send
    receive: Callable[[], Any] = ours.recv_bytes if mode == "bytes" else ours.recv
    for i in range(200):  # warm-up
        send(requests[i % len(requests)])
        receive()
    times = []
    cpu = _cpu()
    for i in range(count):
        started = time.perf_counter()
        send(requests[i % len(requests)])
        receive()
        times.append(time.perf_counter() - started)
    caller_cpu = _cpu() - cpu
    send(b"" if mode == "bytes" else None)
    other_cpu = ours.recv()
    process.join()
    return _row(times, caller_cpu / count, other_cpu / (count + 200))


def _over_thread(payloads: list[dict[str, Any]], count: int) -> dict[str, float]:
    jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
    answers = [p["result"] for p in payloads]

    def engine_thread() -> None:
        index = 0
        while (job := jobs.get()) is not None:
            job[1].put(answers[index % len(answers)])
            index += 1

    thread = threading.Thread(target=engine_thread)
    thread.start()
    facts = [p["facts"] for p in payloads]
    times = []
    for i in range(200 + count):
        if i == 200:
            cpu = _cpu()
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        started = time.perf_counter()
        jobs.put((facts[i % len(facts)], results))
        results.get()
        if i >= 200:
            times.append(time.perf_counter() - started)
    process_cpu = _cpu() - cpu
    jobs.put(None)
    thread.join()
    return _row(times, process_cpu / count, None)


def _row(times: list[float], caller: float, other: float | None) -> dict[str, float]:
    ordered = sorted(times)
    row = {
        "p50_us": statistics.median(ordered) * 1e6,
        "p99_us": ordered[int(0.99 * (len(ordered) - 1))] * 1e6,
        "caller_cpu_us": caller * 1e6,
    }
    if other is not None:
        row["other_cpu_us"] = other * 1e6
    return row


def _sizes(payloads: list[dict[str, Any]]) -> dict[str, float]:
    return {
        "request proto bytes": statistics.fmean(len(p["request_bytes"]) for p in payloads),
        "answer proto bytes": statistics.fmean(len(p["answer_bytes"]) for p in payloads),
        "pickled facts bytes": statistics.fmean(len(pickle.dumps(p["facts"])) for p in payloads),
        "pickled raw facts bytes": statistics.fmean(len(pickle.dumps(p["raw"])) for p in payloads),
        "pickled result bytes": statistics.fmean(len(pickle.dumps(p["result"])) for p in payloads),
    }


def handoff(count: int = 5000) -> dict[str, Any]:
    payloads = _payloads()
    assert all(isinstance(f, FactIn) for f in payloads[0]["raw"])
    return {
        "sizes": _sizes(payloads),
        "thread (SimpleQueue, today)": _over_thread(payloads, count),
        "pipe, proto bytes": _over_pipe(payloads, "bytes", count),
        "pipe, pickled validated facts -> result": _over_pipe(payloads, "facts", count),
        "pipe, pickled raw facts -> result": _over_pipe(payloads, "raw", count),
    }


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.handoff", description=__doc__)
    parser.add_argument("--count", type=int, default=5000)
    args = parser.parse_args()
    results = handoff(args.count)
    for name, value in results.pop("sizes").items():
        print(f"{name}: {value:,.0f}")
    print("\n| hand-off | p50 µs | p99 µs | caller CPU µs | other process CPU µs |")
    print("|---|---|---|---|---|")
    for name, row in results.items():
        other = f"{row['other_cpu_us']:.0f}" if "other_cpu_us" in row else "-"
        print(
            f"| {name} | {row['p50_us']:.0f} | {row['p99_us']:.0f} | "
            f"{row['caller_cpu_us']:.0f} | {other} |"
        )


if __name__ == "__main__":
    main()
