"""Issue 12's design question: which transport, and where the engine runs.

    python -m bench.transport [--seconds S]

Five servers side by side, each load taken in turn (bench.run's machinery):

- `sync bare`: bench/bare_server.py, the baseline `make bench` compares with
  (grpc.server, a thread pool, a pure-Python stand-in for the rules);
- `aio bare`: the same service on `grpc.aio.server` (one event loop);
- `aio, engine inline`: `grpc.aio.server` running this project's real path
  (proto -> facts, validation, the rules engine, conclusions -> proto) on the
  event loop thread itself, with no interceptors, limits, metrics or logs:
  the loop is the only thread that ever enters durable_rules, so no hand-off;
- `aio, engine thread`: the same, but the engine on a thread of its own (as
  the threaded server had it), each stage handed back to the loop;
- `ours, --workers 1`: the service as it ships (since issue 12: grpc.aio, the
  engine on the loop, interceptors, limits, metrics and logs).

Loads: one channel at concurrency 1 and 8 (bench.load). It answers how much
of our cost is the transport's (sync bare against aio bare), how much the
rules path's (aio bare against aio with the engine), and what is left for
the interceptors and the engine thread's hand-offs (the last two rows).
docs/architecture.md records a run and the decision it led to.

The servers under test are started as `python -m bench.transport serve
{aio-bare,aio-engine,aio-engine-thread} PORT ANSWERS`.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import pickle
import queue
import sys
import tempfile
import threading
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import grpc

from bench.bare_server import BareService
from bench.mix import patient_mix
from bench.run import (
    LOADS,
    ONE_CHANNEL,
    ROOT,
    SINGLE,
    _bare,
    _cpu_ms,
    _free_port,
    _requests,
    _Server,
    _service,
    chosen_load,
    measure,
)
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.engine import RulesEngine

ROUNDS = 5


class _AioBare(pb_grpc.DecisionSupportServiceServicer):
    """bench.bare_server's evaluation, answered from a coroutine."""

    def __init__(self, answers: dict[int, list[dict[str, Any]]]) -> None:
        self._bare = BareService(answers)

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: Any
    ) -> AsyncIterator[pb.EvaluateResponse]:
        for response in self._bare.Evaluate(request, context):
            yield response


class _AioEngine(pb_grpc.DecisionSupportServiceServicer):
    """The real rules path, run on the event loop thread (the only engine thread)."""

    def __init__(self) -> None:
        self._engine = RulesEngine()

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: Any
    ) -> AsyncIterator[pb.EvaluateResponse]:
        from kb.facts import validate_facts
        from server.convert import conclusion_response, facts_from_proto, summary_response
        from server.limits import DEFAULT_LIMITS

        facts = validate_facts(facts_from_proto(request.facts, DEFAULT_LIMITS))
        result = self._engine.evaluate(facts)
        for conclusion in result.conclusions:
            yield conclusion_response(conclusion)
        yield summary_response(result)


class _AioEngineThread(pb_grpc.DecisionSupportServiceServicer):
    """The real rules path with the engine on a thread of its own (as the
    threaded server had it), each stage handed back to the loop."""

    def __init__(self) -> None:
        self._jobs: queue.SimpleQueue[Any] = queue.SimpleQueue()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        engine = RulesEngine()
        while True:
            facts, hand_back = self._jobs.get()
            hand_back(engine.evaluate(facts, on_stage=hand_back))

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: Any
    ) -> AsyncIterator[pb.EvaluateResponse]:
        from kb.engine import EvaluationResult
        from kb.facts import validate_facts
        from server.convert import conclusion_response, facts_from_proto, summary_response
        from server.limits import DEFAULT_LIMITS

        facts = validate_facts(facts_from_proto(request.facts, DEFAULT_LIMITS))
        loop = asyncio.get_running_loop()
        answers: asyncio.Queue[Any] = asyncio.Queue()
        self._jobs.put((facts, lambda item: loop.call_soon_threadsafe(answers.put_nowait, item)))
        while True:
            item = await answers.get()
            if isinstance(item, EvaluationResult):
                yield summary_response(item)
                return
            for conclusion in item:
                yield conclusion_response(conclusion)


async def _serve(kind: str, port: int, answers_file: Path) -> None:
    server = grpc.aio.server()
    if kind == "aio-bare":
        answers = {int(i): shapes for i, shapes in json.loads(answers_file.read_text()).items()}
        servicer: pb_grpc.DecisionSupportServiceServicer = _AioBare(answers)
    elif kind == "aio-engine-thread":
        servicer = _AioEngineThread()
    else:
        servicer = _AioEngine()
    pb_grpc.add_DecisionSupportServiceServicer_to_server(servicer, server)
    server.add_insecure_port(f"127.0.0.1:{port}")
    await server.start()
    await server.wait_for_termination()


def _aio(kind: str, answers_file: Path, request: pb.EvaluateRequest) -> _Server:
    port = _free_port()
    command = [sys.executable, "-m", "bench.transport", "serve", kind, str(port)]
    return _Server([*command, str(answers_file)], port, request)


def run(seconds: float) -> dict[str, Any]:
    mix = patient_mix()
    requests, recorded = chosen_load(RulesEngine(), _requests(mix))
    (ROOT / "data").mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cds-transport-", dir=ROOT / "data") as folder:
        db = Path(folder)
        requests_file = db / "requests.pickle"
        requests_file.write_bytes(pickle.dumps([r.SerializeToString() for r in requests]))
        answers_file = db / "answers.json"
        answers_file.write_text(json.dumps(recorded))
        servers: dict[str, _Server] = {}
        try:
            servers["sync bare"] = _bare(answers_file, requests[0])
            servers["aio bare"] = _aio("aio-bare", answers_file, requests[0])
            servers["aio, engine inline"] = _aio("aio-engine", answers_file, requests[0])
            servers["aio, engine thread"] = _aio("aio-engine-thread", answers_file, requests[0])
            servers["ours, --workers 1"] = _service(1, db, requests[0])
            results: dict[str, Any] = {name: {} for name in servers}
            for load in (SINGLE, ONE_CHANNEL):
                print(f"  {load} ...", flush=True)
                measured = measure(servers, requests_file, LOADS[load], seconds, ROUNDS)
                for name, row in measured.items():
                    results[name][load] = row
            return results
        finally:
            for server in servers.values():
                server.stop()


def render(results: dict[str, Any]) -> str:
    base = results["sync bare"]
    lines = [
        "| server | load | calls/s | p50 ms | p99 ms | server CPU ms/call "
        "| calls/s / sync bare | CPU / sync bare | p99 / sync bare |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for load in (SINGLE, ONE_CHANNEL):
        for name, rows in results.items():
            row, bare = rows[load], base[load]
            lines.append(
                f"| {name} | {load} | {row['per_second']:,.0f} | {row['p50_ms']:.2f} "
                f"| {row['p99_ms']:.2f} | {_cpu_ms(row):.2f} "
                f"| {row['per_second'] / bare['per_second']:.2f} "
                f"| {_cpu_ms(row) / _cpu_ms(bare):.2f} | {row['p99_ms'] / bare['p99_ms']:.2f} |"
            )
    return "\n".join(lines) + "\n"


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["serve"]:
        kind, port, answers_file = argv[1], int(argv[2]), Path(argv[3])
        asyncio.run(_serve(kind, port, answers_file))
        return 0
    parser = argparse.ArgumentParser(prog="python -m bench.transport", description=__doc__)
    parser.add_argument("--seconds", type=float, default=5.0, help="per load and server")
    args = parser.parse_args(argv)
    print(render(run(args.seconds)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
