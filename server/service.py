"""The servicer: maps the knowledge base to `cds.v1.DecisionSupportService`.

Validation and conversion run on the gRPC pool thread; rules run on the engine
thread (`EngineWorker`). Nothing here decides anything clinical.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.catalogue import CATALOGUE
from kb.engine import EvaluationCancelled
from kb.facts import MAX_FACTS_PER_REQUEST, Fact, InvalidFacts, validate_facts
from server import errors, logs
from server.convert import explanation_to_proto, facts_from_proto, knowledge_base_to_proto
from server.engine import EngineWorker
from server.session_rpc import delete_session, stream_session
from server.sessions import SessionManager

log = logging.getLogger(__name__)


def _engine_failed(context: grpc.ServicerContext, method: str, error: Exception) -> NoReturn:
    """Fail this call only, with a correlation id shared by the log and the status."""
    errors.abort(context, errors.engine_failure(logs.report_failure(method, error)))


def _rejected(context: grpc.ServicerContext, method: str, error: InvalidFacts) -> NoReturn:
    log.info("%s rejected: %s, %d violation(s)", method, error.reason, len(error.violations))
    errors.abort(context, errors.invalid_facts(error))


def _validated(
    context: grpc.ServicerContext, method: str, facts: Any, max_facts: int
) -> list[Fact]:
    try:
        return validate_facts(facts_from_proto(facts), max_facts)
    except InvalidFacts as error:
        _rejected(context, method, error)


class DecisionSupportService(pb_grpc.DecisionSupportServiceServicer):
    def __init__(
        self,
        worker: EngineWorker,
        max_facts: int = MAX_FACTS_PER_REQUEST,
        sessions: SessionManager | None = None,
    ) -> None:
        self._worker = worker
        self._sessions = sessions
        self._max_facts = max_facts
        self._knowledge_base = knowledge_base_to_proto()

    def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.EvaluateResponse]:
        try:
            yield from self._worker.evaluate_request(
                request, self._max_facts, lambda: not context.is_active()
            )
        except InvalidFacts as error:  # raised before the first message: nothing was sent
            _rejected(context, "evaluate", error)
        except EvaluationCancelled:
            log.info("evaluate stopped: call cancelled or deadline passed")
        except Exception as error:
            _engine_failed(context, "evaluate", error)

    def Explain(
        self, request: pb.ExplainRequest, context: grpc.ServicerContext
    ) -> pb.ExplainResponse:
        if request.code not in CATALOGUE:
            errors.abort(context, errors.unknown_code())
        facts = _validated(context, "explain", request.facts, self._max_facts)
        try:
            explanation = self._worker.explain(facts, request.code)
        except Exception as error:
            _engine_failed(context, "explain", error)
        return explanation_to_proto(explanation)

    def GetKnowledgeBase(
        self, request: pb.GetKnowledgeBaseRequest, context: grpc.ServicerContext
    ) -> pb.GetKnowledgeBaseResponse:
        return self._knowledge_base

    def StreamSession(
        self, request_iterator: Iterator[pb.StreamSessionRequest], context: grpc.ServicerContext
    ) -> Iterator[pb.StreamSessionResponse]:
        if self._sessions is None:
            errors.abort(context, errors.not_implemented("StreamSession"))
        return stream_session(self._sessions, request_iterator, context)

    def DeleteSession(
        self, request: pb.DeleteSessionRequest, context: Any
    ) -> pb.DeleteSessionResponse:
        if self._sessions is None:
            errors.abort(context, errors.not_implemented("DeleteSession"))
        return delete_session(self._sessions, request, context)
