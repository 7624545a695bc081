"""The servicer: maps the knowledge base to `cds.v1.DecisionSupportService`.

Every call runs on the engine loop (`server.engine`), the rules inline;
session work that blocks on the store runs on threads. Nothing here decides
anything clinical.
"""

from __future__ import annotations

import contextlib
import json
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from datetime import UTC, datetime, timedelta
from typing import Any, NoReturn

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from fhir_in import DEFAULT_VITALS_WINDOW, Reading, read_bundle, source_references
from kb.catalogue import CATALOGUE
from kb.engine import EvaluationCancelled, EvaluationResult
from kb.facts import (
    REASON_FACT_INVALID,
    REASON_LIMIT_EXCEEDED,
    Fact,
    FactIn,
    InvalidFacts,
    Violation,
    validate_facts,
)
from kb.model import Conclusion
from server import errors, logs
from server.convert import (
    conclusion_response,
    conclusion_to_proto,
    explanation_to_proto,
    fact_to_proto,
    facts_from_proto,
    knowledge_base_to_proto,
    report_to_proto,
    summary_response,
    summary_to_proto,
)
from server.engine import EngineWorker
from server.limits import MAX_BUNDLE_ENTRIES, LimitExceeded, Limits
from server.session_rpc import delete_session, stream_session, watch_session
from server.sessions import SessionManager
from server.watch import ChangeFeed

log = logging.getLogger(__name__)


async def _engine_failed(
    context: grpc.aio.ServicerContext, method: str, error: Exception
) -> NoReturn:
    """Fail this call only, with a correlation id shared by the log and the status."""
    await errors.abort(context, errors.engine_failure(logs.report_failure(method, error)))


async def _converted(context: grpc.aio.ServicerContext, facts: Any, limits: Limits) -> list[FactIn]:
    """The request's facts as plain values, converted within the structural
    limits, or the call ends INVALID_ARGUMENT: LIMIT_EXCEEDED with paths (as
    the first check a request's facts get, before any other)."""
    try:
        return facts_from_proto(facts, limits)
    except LimitExceeded as error:
        await errors.abort(context, errors.limit_exceeded(error.violations))


async def _validated(
    context: grpc.aio.ServicerContext, method: str, raw: list[FactIn], max_facts: int
) -> list[Fact]:
    try:
        return validate_facts(raw, max_facts)
    except InvalidFacts as error:
        await _rejected(context, method, error)


async def _rejected(
    context: grpc.aio.ServicerContext, method: str, error: InvalidFacts
) -> NoReturn:
    """End the call INVALID_ARGUMENT with the violations; the log gets counts only."""
    log.info("%s rejected: %s, %d violation(s)", method, error.reason, len(error.violations))
    await errors.abort(context, errors.invalid_facts(error))


async def _read_fhir(
    context: grpc.aio.ServicerContext,
    method: str,
    request: pb.EvaluateFhirRequest | pb.TranslateFhirRequest | pb.ExplainRequest,
) -> Reading:
    """The bundle's facts at the request's as-of instant (now when unset), or
    the call ends INVALID_ARGUMENT: FHIR_INVALID (structure), FACT_INVALID (an
    answer outside the fact contract) or LIMIT_EXCEEDED, with paths."""
    as_of = request.as_of.ToDatetime(tzinfo=UTC) if request.HasField("as_of") else None
    try:
        bundle = _bounded(request.bundle_json)
        window = DEFAULT_VITALS_WINDOW
        if isinstance(request, pb.EvaluateFhirRequest | pb.TranslateFhirRequest) and (
            request.HasField("vitals_window")
        ):
            window = request.vitals_window.ToTimedelta()
            if window < timedelta(0):
                raise InvalidFacts(
                    REASON_FACT_INVALID, [Violation("vitals_window", "must not be negative")]
                )
        return read_bundle(bundle, as_of or datetime.now(UTC), vitals_window=window)
    except InvalidFacts as error:
        await _rejected(context, method, error)


def _bounded(bundle_json: str) -> str | dict[str, Any]:
    """The bundle, parsed once when it is JSON, refused past `MAX_BUNDLE_ENTRIES`
    before anything else is read (invalid JSON is left to the reader's error)."""
    try:
        bundle = json.loads(bundle_json)
    except ValueError:
        return bundle_json
    entries = bundle.get("entry") if isinstance(bundle, dict) else None
    if isinstance(entries, list) and len(entries) > MAX_BUNDLE_ENTRIES:
        raise InvalidFacts(
            REASON_LIMIT_EXCEEDED,
            [Violation("entry", f"{len(entries)} entries; at most {MAX_BUNDLE_ENTRIES}")],
        )
    return bundle if isinstance(bundle, dict) else bundle_json


class DecisionSupportService(pb_grpc.DecisionSupportServiceServicer):
    """Runs on the engine loop (`server.engine`): the rules run inline, the
    session store's blocking work on `blocking` threads."""

    def __init__(
        self,
        worker: EngineWorker,
        limits: Limits,
        sessions: SessionManager | None = None,
        blocking: Executor | None = None,
        feed: ChangeFeed | None = None,
    ) -> None:
        self._worker = worker
        self._sessions = sessions
        self._blocking = blocking
        self._feed = feed
        self._limits = limits
        self._knowledge_base = knowledge_base_to_proto()

    async def _evaluated(
        self, facts: list[Fact], context: grpc.aio.ServicerContext, method: str
    ) -> AsyncIterator[list[Conclusion] | EvaluationResult]:
        """Each stage's conclusions, then the result; nothing more if the call
        went away (cancelled, or past its deadline) before the end."""
        stages = self._worker.stages_now(facts, _caller_gone(context))
        with contextlib.closing(stages):  # an early end deletes the engine's state
            while True:
                try:
                    derived = next(stages)  # one stage, inline on the loop
                except StopIteration as finished:
                    yield finished.value
                    return
                except EvaluationCancelled:
                    log.info("%s stopped: call cancelled or deadline passed", method)
                    return
                except Exception as error:
                    await _engine_failed(context, method, error)
                yield derived  # while its conclusions go out, the loop serves others

    async def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvaluateResponse]:
        raw = await _converted(context, request.facts, self._limits)
        facts = await _validated(context, "evaluate", raw, self._limits.max_facts)
        async for item in self._evaluated(facts, context, "evaluate"):
            if isinstance(item, EvaluationResult):
                yield summary_response(item)
            else:
                for conclusion in item:
                    yield conclusion_response(conclusion)

    async def EvaluateFhir(
        self, request: pb.EvaluateFhirRequest, context: grpc.aio.ServicerContext
    ) -> AsyncIterator[pb.EvaluateFhirResponse]:
        reading = await _read_fhir(context, "evaluate_fhir", request)
        yield pb.EvaluateFhirResponse(report=report_to_proto(reading.report))
        references: dict[str, tuple[str, ...]] = {}
        async for item in self._evaluated(list(reading.facts), context, "evaluate_fhir"):
            if isinstance(item, EvaluationResult):
                yield pb.EvaluateFhirResponse(summary=summary_to_proto(item))
            else:
                references = source_references(item, reading.sources, references)
                for conclusion in item:
                    yield pb.EvaluateFhirResponse(
                        conclusion=conclusion_to_proto(conclusion, references[conclusion.code])
                    )

    async def TranslateFhir(
        self, request: pb.TranslateFhirRequest, context: grpc.aio.ServicerContext
    ) -> pb.TranslateFhirResponse:
        reading = await _read_fhir(context, "translate_fhir", request)
        return pb.TranslateFhirResponse(
            facts=[fact_to_proto(fact) for fact in reading.inputs],
            report=report_to_proto(reading.report),
        )

    async def Explain(
        self, request: pb.ExplainRequest, context: grpc.aio.ServicerContext
    ) -> pb.ExplainResponse:
        raw = await _converted(context, request.facts, self._limits)
        if request.code not in CATALOGUE:
            await errors.abort(context, errors.unknown_code())
        if not request.bundle_json:
            facts = await _validated(context, "explain", raw, self._limits.max_facts)
        elif request.facts:
            both = Violation("bundle_json", "give facts or a FHIR bundle, not both")
            await _rejected(context, "explain", InvalidFacts(REASON_FACT_INVALID, [both]))
        else:
            facts = list((await _read_fhir(context, "explain", request)).facts)
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
            self._sessions, self._blocking, request_iterator, context, self._limits
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
