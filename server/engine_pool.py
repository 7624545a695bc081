"""Engine processes: one gRPC process's evaluations spread over every core.

durable_rules holds the GIL while it works and must never see two threads, so
in one process the rules run on one core at a time, and whatever else the
process does (gRPC, validation, protobuf) waits for them. With `--workers N`
(N >= 2) the serving process hands each evaluation to one of N engine
processes, so a single busy connection reaches every core; the serving process
keeps only the transport, the interceptors and the sessions (docs/architecture.md
has the numbers that decided it).

An `Evaluate` request crosses as its serialized bytes and comes back as
serialized `EvaluateResponse`s, one message per stage: the engine process does
the conversion, the validation and the evaluation, which is most of a call's
CPU. Sessions and `Explain` send validated facts (pickled) and get conclusions
back. Each engine process takes one job at a time, from whichever call thread
checked it out; a call that is cancelled or passes its deadline is noticed
between stages (a shared cell holds the id of the job to stop). An engine
process that dies fails only the call it was running (`EngineFailure`); another
one is started in its place.
"""

from __future__ import annotations

import logging
import multiprocessing
import queue
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from cds.v1 import decision_support_pb2 as pb
from kb.engine import EngineFailure, EvaluationCancelled, EvaluationResult, RulesEngine
from kb.explain import Explanation, explain
from kb.facts import Fact, InvalidFacts, Violation, validate_facts
from kb.model import Conclusion
from server.convert import conclusion_response, facts_from_proto, summary_response
from server.logs import JsonFormatter, configure_logging
from server.metrics import record_evaluation

log = logging.getLogger(__name__)

# Spawned, not forked: the serving process has gRPC threads, which must not be forked.
_CONTEXT = multiprocessing.get_context("spawn")
# How often a waiting call checks whether its caller is still there.
POLL_SECONDS = 0.05
# An engine process that does not finish a cancelled job this soon is replaced.
DRAIN_SECONDS = 5.0
START_TIMEOUT_SECONDS = 60.0


def _engine_main(
    connection: Connection, cancelled: Any, logging_as: tuple[int, str] | None
) -> None:
    """The engine process: load the rules, then answer jobs until the pipe closes."""
    if logging_as is not None:
        configure_logging(*logging_as)
    try:
        engine = RulesEngine()
    except BaseException as error:  # the parent reports it and fails every call
        connection.send(("failed", f"{type(error).__name__}"))
        return
    connection.send(("ready",))
    while True:
        try:
            job_id, kind, payload = connection.recv()
        except (EOFError, OSError):  # the serving process is gone
            return
        try:
            connection.send(_run(engine, connection, cancelled, job_id, kind, payload))
        except InvalidFacts as error:
            connection.send(("invalid", error.reason, error.violations))
        except EvaluationCancelled:
            connection.send(("cancelled",))
        except Exception as error:  # reported by the serving process, with a correlation id
            # Only our own failures' messages cross: another's may quote a fact value.
            said = str(error) if isinstance(error, EngineFailure) else ""
            connection.send(("error", type(error).__name__, said))


def _run(
    engine: RulesEngine,
    connection: Connection,
    cancelled: Any,
    job_id: int,
    kind: str,
    payload: Any,
) -> tuple[Any, ...]:
    def should_stop() -> bool:
        return bool(cancelled.value == job_id)

    if kind == "request":
        request_bytes, max_facts = payload
        request = pb.EvaluateRequest.FromString(request_bytes)
        facts = validate_facts(facts_from_proto(request.facts), max_facts)

        def send_stage(stage: list[Conclusion]) -> None:
            messages = [conclusion_response(c).SerializeToString() for c in stage]
            connection.send(("messages", messages))

        result = engine.evaluate(facts, send_stage, should_stop=should_stop)
        record_evaluation(result)
        return ("done", summary_response(result).SerializeToString())
    if kind == "evaluate":
        result = engine.evaluate(
            payload, lambda stage: connection.send(("stage", stage)), should_stop=should_stop
        )
        record_evaluation(result)
        return ("done", result)
    facts, code = payload
    return ("done", explain(engine, facts, code))


@dataclass
class _EngineProcess:
    """The serving process's end of one engine process."""

    process: Any
    connection: Connection
    cancelled: Any
    jobs: int = 0
    broken: bool = field(default=False)

    def alive(self) -> bool:
        return not self.broken and self.process.is_alive()


def _logging_as() -> tuple[int, str] | None:
    """This process's log set-up, for an engine process to copy (spawned, it has none)."""
    root = logging.getLogger()
    if not root.handlers:
        return None
    json_lines = any(isinstance(handler.formatter, JsonFormatter) for handler in root.handlers)
    return root.getEffectiveLevel(), "json" if json_lines else "text"


def _start_engine() -> _EngineProcess:
    ours, theirs = _CONTEXT.Pipe()
    cancelled = _CONTEXT.RawValue("q", 0)
    process = _CONTEXT.Process(
        target=_engine_main,
        args=(theirs, cancelled, _logging_as()),
        name="rules-engine",
        daemon=True,
    )
    process.start()
    theirs.close()
    return _EngineProcess(process, ours, cancelled)


class EnginePool:
    """N engine processes behind the `EngineWorker` interface, any thread may call."""

    def __init__(self, processes: int) -> None:
        if processes < 1:
            raise ValueError("an engine pool needs at least one process")
        self._size = processes
        self._idle: queue.SimpleQueue[_EngineProcess] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._stopped = False
        self._ready = threading.Event()
        self._load_error: str | None = None
        self._starting = threading.Thread(target=self._start_all, name="engine-pool", daemon=True)
        self._starting.start()

    def _start_all(self) -> None:
        engines = [_start_engine() for _ in range(self._size)]
        for engine in engines:
            failure = self._await_ready(engine)
            if failure is not None:
                self._load_error = failure
                break
        for engine in engines:
            self._idle.put(engine)
        self._ready.set()

    def _await_ready(self, engine: _EngineProcess) -> str | None:
        """None once `engine` has loaded the knowledge base, else why it did not."""
        if not engine.connection.poll(START_TIMEOUT_SECONDS):
            engine.broken = True
            return "engine process did not start in time"
        try:
            message = engine.connection.recv()
        except (EOFError, OSError):
            engine.broken = True
            return "engine process exited while starting"
        if message[0] != "ready":
            engine.broken = True
            return f"engine process failed to load the knowledge base ({message[1]})"
        return None

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until every engine process has loaded the knowledge base."""
        if not self._ready.wait(timeout):
            raise TimeoutError("knowledge base did not load in time")
        if self._load_error is not None:
            raise RuntimeError(f"knowledge base failed to load: {self._load_error}")

    @contextmanager
    def _checkout(self) -> Iterator[_EngineProcess]:
        """The next free engine process, in arrival order; replaced if it died."""
        if self._stopped or not self._ready.is_set() or self._load_error is not None:
            self.wait_ready(0)  # raises while loading or after a failed load
            if self._stopped:
                raise EngineFailure("rules engine is not running")
        while True:
            try:
                engine = self._idle.get(timeout=POLL_SECONDS)
                break
            except queue.Empty:
                if self._stopped:
                    raise EngineFailure("rules engine is not running") from None
        try:
            if not engine.alive():
                engine = self._replace(engine)
            yield engine
        finally:
            if not engine.alive() and not self._stopped:
                engine = self._replace(engine)
            self._idle.put(engine)

    def _replace(self, engine: _EngineProcess) -> _EngineProcess:
        """A fresh engine process for one that died (its call already failed)."""
        log.warning(
            "engine process %s exited (%s); starting another",
            engine.process.pid,
            engine.process.exitcode,
        )
        engine.connection.close()
        engine.process.join(1.0)
        fresh = _start_engine()
        failure = self._await_ready(fresh)
        if failure is not None:
            log.error("replacement engine process: %s", failure)
        return fresh

    def _job(self, kind: str, payload: Any, should_stop: Any = None) -> Iterator[tuple[Any, ...]]:
        """Send one job and yield every message it answers, the final one last."""
        with self._checkout() as engine:
            engine.jobs += 1
            job_id = engine.jobs
            finished = False
            try:
                engine.connection.send((job_id, kind, payload))
                while True:
                    message = self._receive(engine, job_id, should_stop)
                    if message[0] not in ("messages", "stage"):
                        finished = True
                        yield message
                        return
                    yield message
            except (EOFError, OSError, BrokenPipeError) as error:
                engine.broken = True
                finished = True
                raise EngineFailure("engine process exited during an evaluation") from error
            finally:
                if not finished:  # the caller left early: stop the job, drain its answers
                    self._drain(engine, job_id)

    def _receive(self, engine: _EngineProcess, job_id: int, should_stop: Any) -> tuple[Any, ...]:
        while not engine.connection.poll(POLL_SECONDS):
            if not engine.process.is_alive():
                raise EOFError("engine process exited")
            if should_stop is not None and engine.cancelled.value != job_id and should_stop():
                engine.cancelled.value = job_id
        return engine.connection.recv()

    def _drain(self, engine: _EngineProcess, job_id: int) -> None:
        engine.cancelled.value = job_id
        try:
            while engine.connection.poll(DRAIN_SECONDS):
                if engine.connection.recv()[0] not in ("messages", "stage"):
                    return
        except (EOFError, OSError):
            pass
        engine.broken = True  # no final answer in time: never reuse its pipe
        engine.process.kill()

    @staticmethod
    def _raise(message: tuple[Any, ...]) -> None:
        if message[0] == "invalid":
            raise InvalidFacts(message[1], [Violation(v.field, v.description) for v in message[2]])
        if message[0] == "cancelled":
            raise EvaluationCancelled()
        if message[0] == "error":
            raise EngineFailure(f"engine process: {message[1]}: {message[2]}")

    def evaluate_request(
        self, request: pb.EvaluateRequest, max_facts: int, should_stop: Any
    ) -> Iterator[pb.EvaluateResponse]:
        """`Evaluate`'s answers: raises `InvalidFacts` before the first message."""
        payload = (request.SerializeToString(), max_facts)
        for message in self._job("request", payload, should_stop):
            self._raise(message)
            if message[0] == "messages":
                yield from (pb.EvaluateResponse.FromString(data) for data in message[1])
            else:
                yield pb.EvaluateResponse.FromString(message[1])

    def evaluate(
        self, facts: Sequence[Fact], should_stop: Any
    ) -> Iterator[Conclusion | EvaluationResult]:
        """Each conclusion as its stage completes, then the `EvaluationResult`."""
        for message in self._job("evaluate", list(facts), should_stop):
            self._raise(message)
            if message[0] == "stage":
                yield from message[1]
            else:
                yield message[1]

    def explain(self, facts: Sequence[Fact], code: str) -> Explanation:
        for message in self._job("explain", (list(facts), code)):
            self._raise(message)
            explanation: Explanation = message[1]
            return explanation
        raise EngineFailure("engine process sent no explanation")

    def stop(self, timeout: float | None = None) -> None:
        """Let running jobs finish, then end every engine process."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
        self._starting.join(timeout)
        for _ in range(self._size):
            try:
                engine = self._idle.get(timeout=timeout)
            except queue.Empty:
                break
            engine.connection.close()  # the engine process sees EOF and exits
            engine.process.join(timeout)
            if engine.process.is_alive():
                engine.process.kill()
