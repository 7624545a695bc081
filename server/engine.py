"""The engine wrapper: one thread owns the process's rules engine.

durable_rules must never see two threads at once (it is not thread-safe and
keeps process-wide C state), while gRPC serves each call on a pool thread. So
calls hand their facts to the engine thread and read back a per-call queue:
conclusions arrive as each stage completes, which lets `Evaluate` stream them
while the engine is still working. More cores mean more processes, not threads.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from cds.v1 import decision_support_pb2 as pb
from kb.engine import EngineFailure, EvaluationCancelled, EvaluationResult, RulesEngine
from kb.explain import Explanation, explain
from kb.facts import Fact, validate_facts
from kb.model import Conclusion
from server.convert import conclusion_response, facts_from_proto, summary_response
from server.metrics import record_evaluation

log = logging.getLogger(__name__)

_STOP = object()
T = TypeVar("T")


@dataclass(frozen=True)
class _Failed:
    error: BaseException


@dataclass(frozen=True)
class _Job:
    facts: Sequence[Fact]
    should_stop: Callable[[], bool]
    results: queue.SimpleQueue[list[Conclusion] | EvaluationResult | BaseException]


@dataclass(frozen=True)
class _Call:
    """Any other work that needs the engine (e.g. Explain), run on its thread."""

    function: Callable[[RulesEngine], Any]
    results: queue.SimpleQueue[Any]


class EngineWorker:
    """Runs evaluations one at a time on a dedicated thread, in arrival order."""

    def __init__(self, engine_factory: Callable[[], RulesEngine] = RulesEngine) -> None:
        self._jobs: queue.SimpleQueue[_Job | _Call | object] = queue.SimpleQueue()
        self._ready = threading.Event()
        self._load_error: BaseException | None = None
        # No job may be queued behind _STOP or after a failed load: its caller
        # would wait forever (and, in-process, keep the interpreter from exiting).
        self._accepting = threading.Lock()
        self._stopped = False
        self._thread = threading.Thread(
            target=self._serve, args=(engine_factory,), name="rules-engine", daemon=True
        )
        self._thread.start()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the knowledge base is loaded; raise if loading failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError("knowledge base did not load in time")
        if self._load_error is not None:
            raise RuntimeError("knowledge base failed to load") from self._load_error

    def _serve(self, engine_factory: Callable[[], RulesEngine]) -> None:
        try:
            engine = engine_factory()
        except BaseException as error:
            with self._accepting:
                self._load_error = error
            self._ready.set()
            self._fail_queued()
            return
        self._ready.set()
        while (job := self._jobs.get()) is not _STOP:
            if isinstance(job, _Call):
                try:
                    job.results.put(job.function(engine))
                except BaseException as error:
                    job.results.put(_Failed(error))
                continue
            assert isinstance(job, _Job)
            if job.should_stop():
                job.results.put(EvaluationCancelled())
                continue
            try:
                result = engine.evaluate(job.facts, job.results.put, should_stop=job.should_stop)
                record_evaluation(result)
                job.results.put(result)
            except BaseException as error:
                job.results.put(error)

    def _fail_queued(self) -> None:
        """Answer every job queued while the knowledge base failed to load."""
        while True:
            try:
                job = self._jobs.get_nowait()
            except queue.Empty:
                return
            failure = EngineFailure("rules engine is not running")
            if isinstance(job, _Job):
                job.results.put(failure)
            elif isinstance(job, _Call):
                job.results.put(_Failed(failure))

    def _submit(self, job: _Job | _Call) -> None:
        with self._accepting:
            if self._stopped or self._load_error is not None or not self._thread.is_alive():
                raise EngineFailure("rules engine is not running")
            self._jobs.put(job)

    def evaluate(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool]
    ) -> Iterator[Conclusion | EvaluationResult]:
        """Yield each conclusion as it is derived, then the `EvaluationResult`.

        Raises `EngineFailure` or `EvaluationCancelled` from the engine thread.
        """
        results: queue.SimpleQueue[list[Conclusion] | EvaluationResult | BaseException] = (
            queue.SimpleQueue()
        )
        self._submit(_Job(facts, should_stop, results))
        while True:
            item = results.get()  # a stage's conclusions, then the result
            if isinstance(item, BaseException):
                raise item
            if isinstance(item, EvaluationResult):
                yield item
                return
            yield from item

    def evaluate_request(
        self, request: pb.EvaluateRequest, max_facts: int, should_stop: Callable[[], bool]
    ) -> Iterator[pb.EvaluateResponse]:
        """Validated on the caller's thread, evaluated on the engine thread."""
        facts = validate_facts(facts_from_proto(request.facts), max_facts)
        for item in self.evaluate(facts, should_stop):
            if isinstance(item, EvaluationResult):
                yield summary_response(item)
            else:
                yield conclusion_response(item)

    def explain(self, facts: Sequence[Fact], code: str) -> Explanation:
        return self._call(lambda engine: explain(engine, facts, code))

    def _call(self, function: Callable[[RulesEngine], T]) -> T:
        """Run `function(engine)` on the engine thread and return its result."""
        results: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._submit(_Call(function, results))
        result = results.get()
        if isinstance(result, _Failed):
            raise result.error
        return result

    def stop(self, timeout: float | None = None) -> None:
        """Finish queued evaluations, then end the engine thread; later ones fail at once."""
        with self._accepting:
            if not self._stopped:
                self._stopped = True
                self._jobs.put(_STOP)
        self._thread.join(timeout)
