"""The engine's thread, which is also the server's event loop.

durable_rules must never see two threads at once (it is not thread-safe and
keeps process-wide C state). So one thread per process enters it: an asyncio
event loop thread (`engine_loop`), on which the gRPC server (`grpc.aio`) runs
too. A call served on the loop drives its evaluation there, stage by stage
(`stages_now`): no hand-off to another thread, no second thread fighting the
loop for the GIL, and between stages the loop serves other calls.
Work on other threads (the session store's, which blocks on a database) hands
its evaluations to the loop (`evaluate`) and waits for the answer.
docs/architecture.md has the numbers that decided it. More cores mean more
processes, not threads.
"""

from __future__ import annotations

import asyncio
import os
import queue
import threading
from collections.abc import Callable, Generator, Iterator, Sequence
from typing import Any, TypeVar

from kb.engine import EngineFailure, EvaluationResult, RulesEngine
from kb.explain import Explanation, explain
from kb.facts import Fact
from kb.model import Conclusion
from server.metrics import record_evaluation

T = TypeVar("T")

_loop: asyncio.AbstractEventLoop | None = None
_loop_thread: threading.Thread | None = None
_loop_started = threading.Lock()


def engine_loop() -> asyncio.AbstractEventLoop:
    """This process's engine loop, started on first use (so after any fork)."""
    global _loop, _loop_thread
    with _loop_started:
        if _loop is None:
            loop = asyncio.new_event_loop()
            thread = threading.Thread(target=loop.run_forever, name="rules-engine", daemon=True)
            thread.start()
            _loop, _loop_thread = loop, thread
        return _loop


def _forget_loop_after_fork() -> None:
    """A forked child has the parent's loop object but not its thread."""
    global _loop, _loop_thread, _loop_started
    _loop, _loop_thread, _loop_started = None, None, threading.Lock()


os.register_at_fork(after_in_child=_forget_loop_after_fork)


def on_engine_thread() -> bool:
    return threading.current_thread() is _loop_thread


class EngineWorker:
    """One rules engine, loaded and run on the engine loop's thread only."""

    def __init__(self, engine_factory: Callable[[], RulesEngine] = RulesEngine) -> None:
        self.loop = engine_loop()
        self._ready = threading.Event()
        self._engine: RulesEngine | None = None
        self._load_error: BaseException | None = None
        self._stopped = False
        self.loop.call_soon_threadsafe(self._load, engine_factory)

    def _load(self, engine_factory: Callable[[], RulesEngine]) -> None:
        try:
            self._engine = engine_factory()
        except BaseException as error:
            self._load_error = error
        self._ready.set()

    def wait_ready(self, timeout: float | None = None) -> None:
        """Block until the knowledge base is loaded; raise if loading failed."""
        if not self._ready.wait(timeout):
            raise TimeoutError("knowledge base did not load in time")
        if self._load_error is not None:
            raise RuntimeError("knowledge base failed to load") from self._load_error

    def _running(self) -> RulesEngine:
        if self._stopped or self._engine is None:
            raise EngineFailure("rules engine is not running")
        return self._engine

    def stages_now(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool] | None = None
    ) -> Generator[list[Conclusion], None, EvaluationResult]:
        """The evaluation stage by stage (`RulesEngine.stages`), driven on the
        engine loop's thread only: between stages the loop serves other calls,
        and may run other evaluations' stages."""
        if not on_engine_thread():
            raise RuntimeError("stages_now called off the engine thread")
        result = yield from self._running().stages(facts, should_stop)
        record_evaluation(result)
        return result

    def evaluate_now(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool] | None = None
    ) -> EvaluationResult:
        """The whole evaluation at once; on the engine loop's thread only."""
        if not on_engine_thread():
            raise RuntimeError("evaluate_now called off the engine thread")
        result = self._running().evaluate(facts, should_stop=should_stop)
        record_evaluation(result)
        return result

    def explain_now(self, facts: Sequence[Fact], code: str) -> Explanation:
        """Explain at once; on the engine loop's thread only."""
        if not on_engine_thread():
            raise RuntimeError("explain_now called off the engine thread")
        return explain(self._running(), facts, code)

    def evaluate(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool]
    ) -> Iterator[Conclusion | EvaluationResult]:
        """From any thread: each conclusion, then the `EvaluationResult`.

        Raises `EngineFailure` or `EvaluationCancelled` as the engine did.
        """
        result = self._call(lambda: self.evaluate_now(facts, should_stop))
        yield from result.conclusions
        yield result

    def explain(self, facts: Sequence[Fact], code: str) -> Explanation:
        """From any thread."""
        return self._call(lambda: self.explain_now(facts, code))

    def _call(self, function: Callable[[], T]) -> T:
        """`function()` on the engine thread: at once if this is it, else handed
        to the loop (after the knowledge base has loaded) and waited for."""
        if on_engine_thread():
            return function()
        if self._stopped or self._load_error is not None:
            raise EngineFailure("rules engine is not running")
        answer: queue.SimpleQueue[tuple[bool, Any]] = queue.SimpleQueue()

        def run() -> None:
            try:
                answer.put((True, function()))
            except BaseException as error:
                answer.put((False, error))

        self.loop.call_soon_threadsafe(run)
        succeeded, value = answer.get()
        if not succeeded:
            raise value
        return value  # type: ignore[no-any-return]

    def stop(self, timeout: float | None = None) -> None:
        """Later calls fail at once with `EngineFailure` (the loop lives on: other
        servers of this process may share it)."""
        self._stopped = True
