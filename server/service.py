"""The servicer: maps the knowledge base to `cds.v1.DecisionSupportService`.

Every call runs on the engine loop (`server.engine`), the rules inline;
session work that blocks on the store runs on threads. Nothing here decides
anything clinical.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import Any, NoReturn

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.catalogue import CATALOGUE
from kb.engine import EvaluationCancelled, EvaluationResult
from kb.facts import MAX_FACTS_PER_REQUEST, Fact, InvalidFacts, validate_facts
from server import errors, logs
from server.convert import (
    conclusion_response,
    explanation_to_proto,
    facts_from_proto,
    knowledge_base_to_proto,
    summary_response,
)
from server.engine import EngineWorker
from server.session_rpc import delete_session, stream_session, watch_session
from server.sessions import SessionManager
from server.watch import ChangeFeed

log = logging.getLogger(__name__)


async def _engine_failed(
    context: grpc.aio.ServicerContext, method: str, error: Exception
) -> NoReturn:
    """Fail this call only, with a correlation id shared by the log and the status."""
    await errors.abort(context, errors.engine_failure(logs.report_failure(method, error)))


async def _validated(
    context: grpc.aio.ServicerContext, method: str, facts: Any, max_facts: int
) -> list[Fact]:
    try:
        return validate_facts(facts_from_proto(facts), max_facts)
    except InvalidFacts as error:
        log.info("%s rejected: %s, %d violation(s)", method, error.reason, len(error.violations))
        status = errors.invalid_facts(error)
    await errors.abort(context, status)


class DecisionSupportService(pb_grpc.DecisionSupportServiceServicer):
    """Runs on the engine loop (`server.engine`): the rules run inline, the
    session store's blocking work on `blocking` threads."""

    def __init__(
        self,
        worker: EngineWorker,
        max_facts: int = MAX_FACTS_PER_REQUEST,
        sessions: SessionManager | None = None,
        blocking: Executor | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self._worker = worker
        self._sessions = sessions
        self._blocking = blocking
        self._feed = feed
        self._max_facts = max_facts
        self._knowledge_base = knowledge_base_to_proto()

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvaluateResponse]:
        facts = await _validated(context, "evaluate", request.facts, self._max_facts)
        stages = self._worker.stages_now(facts, _caller_gone(context))
        with contextlib.closing(stages):  # an early end deletes the engine's state
            while True:
                try:
                    derived = next(stages)  # one stage, inline on the loop
                except StopIteration as finished:
                    result: EvaluationResult = finished.value
                    break
                except EvaluationCancelled:
                    log.info("evaluate stopped: call cancelled or deadline passed")
                    return
                except Exception as error:
                    await _engine_failed(context, "evaluate", error)
                for conclusion in derived:  # while they go out, the loop serves others
                    yield conclusion_response(conclusion)
        yield summary_response(result)

    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        if request.code not in CATALOGUE:
            await errors.abort(context, errors.unknown_code())
        facts = await _validated(context, "explain", request.facts, self._max_facts)
        try:
            explanation = self._worker.explain_now(facts, request.code)
        except Exception as error:
            await _engine_failed(context, "explain", error)
        return explanation_to_proto(explanation)

    async def GetKnowledgeBase(
        self, request: pb.GetKnowledgeBaseRequest, context: grpc.aio.ServicerContext
    ) -> pb.GetKnowledgeBaseResponse:
        return self._knowledge_base

    async def StreamSession(
        self,
        request_iterator: AsyncIterator[pb.StreamSessionRequest],
        context: grpc.aio.ServicerContext,
    ) -> AsyncIterator[pb.StreamSessionResponse]:
        if self._sessions is None or self._blocking is None:
            await errors.abort(context, errors.not_implemented("StreamSession"))
        async for response in stream_session(
            self._sessions, self._blocking, request_iterator, context
        ):
            yield response

    async def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: grpc.aio.ServicerContext
    ) -> pb.DeleteSessionResponse:
        if self._sessions is None or self._blocking is None:
            await errors.abort(context, errors.not_implemented("DeleteSession"))
        return await delete_session(self._sessions, self._blocking, request, context)

    async def WatchSession(
        self, request: pb.WatchSessionRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.WatchSessionResponse]:
        if self._sessions is None or self._blocking is None or self._feed is None:
            await errors.abort(context, errors.not_implemented("WatchSession"))
        async for response in watch_session(
            self._sessions, self._feed, self._blocking, request, context
        ):
            yield response


def _caller_gone(context: grpc.aio.ServicerContext) -> Callable[[], bool]:
    """Polled before each stage: the call was cancelled or its deadline passed."""

    def gone() -> bool:
        remaining = context.time_remaining()
        return context.cancelled() or (remaining is not None and remaining <= 0)

    return gone
