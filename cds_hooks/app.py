"""The CDS Hooks 2.0 service: an ASGI application (Starlette) in front of gRPC.

It is a backend of the gRPC service like any other: each hook call becomes
one `EvaluateFhir` through the project's client, with a deadline inside the
CDS Hooks budget (a missed one is 503), so it scales and restarts apart from
the rules. Endpoints:

- `GET /cds-services`: discovery (two services and their prefetch templates);
- `POST /cds-services/{id}`: a hook call, answered with cards;
- `POST /cds-services/{id}/feedback`: the clinician accepted or overrode a card;
- `GET /healthz`: 200 only while the gRPC service reports SERVING;
- `GET /metrics`: Prometheus (calls and latency by service and status, cards
  by code and indicator, feedback by code and outcome).

Errors: 400 with an OperationOutcome (a body that is not a hook request, a
`context.patientId` that is not the Patient's, FHIR the reader refuses: paths,
never values), 401 with no body, 404 for an unknown service or card, 412 for
an absent prefetch key (`null` is "found nothing", not an error), 503 when
the gRPC service is unreachable or late. Tokens and patient ids are never
logged.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import anyio
import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from cds_hooks.auth import Unauthorized, Verifier
from cds_hooks.cards import (
    SERVICES,
    BadHookRequest,
    MissingPrefetch,
    Service,
    bundle_from_prefetch,
    cards,
    discovery,
)
from cds_hooks.feedback import FeedbackStore, FeedbackUnavailable
from client.api import CdsClient, CdsError, Conclusion, Summary
from fhir_in import DEFAULT_BASE, DEFAULT_VITALS_WINDOW

log = logging.getLogger(__name__)

# CDS Hooks asks for an answer in about 500 ms; the gRPC call gets most of it.
DEADLINE_SECONDS = 0.45
OUTCOMES = ("accepted", "overridden")


@dataclass(frozen=True)
class HooksConfig:
    target: str = "127.0.0.1:50051"
    public_url: str = "http://127.0.0.1:8080"
    feedback_db: str = "data/feedback.db"
    base: str = DEFAULT_BASE
    deadline_seconds: float = DEADLINE_SECONDS
    vitals_window: timedelta = DEFAULT_VITALS_WINDOW


def operation_outcome(status: int, message: str, paths: tuple[str, ...] = ()) -> JSONResponse:
    issue: dict[str, Any] = {"severity": "error", "code": "invalid", "diagnostics": message}
    if paths:
        issue["expression"] = list(paths)
    return JSONResponse({"resourceType": "OperationOutcome", "issue": [issue]}, status)


class _Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.calls = Counter(
            "cds_hooks_calls", "Hook calls", ["service", "status"], registry=self.registry
        )
        self.seconds = Histogram(
            "cds_hooks_call_seconds", "Hook call latency", ["service"], registry=self.registry
        )
        self.cards = Counter(
            "cds_hooks_cards", "Cards sent", ["code", "indicator"], registry=self.registry
        )
        self.feedback = Counter(
            "cds_hooks_feedback", "Card feedback", ["code", "outcome"], registry=self.registry
        )


def create_app(
    config: HooksConfig,
    verifier: Verifier | None,
    client: CdsClient | None = None,
) -> Starlette:
    """`verifier` None: calls are not authenticated (`--allow-unauthenticated`)."""
    cds = client or CdsClient(config.target, timeout=config.deadline_seconds)
    store = FeedbackStore(config.feedback_db)
    metrics = _Metrics()
    knowledge: dict[str, Any] = {}

    def references() -> dict[str, Any]:
        if not knowledge:
            answer = cds.knowledge_base(timeout=5)
            knowledge["version"] = answer.version
            knowledge["references"] = {r.id: r for r in answer.references}
        return knowledge

    def refused(request: Request, what: str, *audiences: str) -> Response | None:
        """401 (empty, the reason code logged) unless the JWT is good for `audiences`."""
        if verifier is None:
            return None
        try:
            verifier.verify(request.headers.get("authorization"), audiences)
        except Unauthorized as refusal:
            log.info("%s refused: %s", what, refusal.args[0])
            return Response(status_code=401)
        return None

    def service_url(service_id: str) -> str:
        return f"{config.public_url.rstrip('/')}/cds-services/{service_id}"

    async def list_services(request: Request) -> JSONResponse:
        return JSONResponse(discovery(config.base))

    async def call(request: Request) -> Response:
        service = SERVICES.get(request.path_params["service_id"])
        if service is None:
            return JSONResponse({"error": "no such service"}, 404)
        started = time.perf_counter()
        response = await _call(request, service)
        metrics.calls.labels(service.id, str(response.status_code)).inc()
        metrics.seconds.labels(service.id).observe(time.perf_counter() - started)
        return response

    async def _call(request: Request, service: Service) -> Response:
        refusal = refused(request, "hook call", service_url(service.id))
        if refusal is not None:
            return refusal
        try:
            context, prefetch = _hook_request(await _json(request), service.hook)
            bundle = bundle_from_prefetch(
                prefetch, service.prefetch(config.base), context["patientId"]
            )
        except MissingPrefetch as missing:
            return operation_outcome(412, f"prefetch key {missing.args[0]!r} is absent")
        except BadHookRequest as error:
            return operation_outcome(400, str(error))
        try:
            events = await anyio.to_thread.run_sync(lambda: _evaluate(cds, bundle, config))
            known = knowledge or await anyio.to_thread.run_sync(references)
        except CdsError as error:
            if error.code == "INVALID_ARGUMENT":
                paths = tuple(field for field, _ in error.violations)
                return operation_outcome(
                    400, f"the prefetched FHIR was refused ({error.reason})", paths
                )
            log.warning("hook call: the decision service answered %s", error.code)
            return operation_outcome(503, "the decision service is unavailable or late")
        report, conclusions = events
        facts_read = {fact_id for r in report.resources for fact_id in r.fact_ids}
        answer = cards(
            service.id,
            conclusions,
            facts_read,
            known["references"],
            context.get("draftOrders"),
            config.base,
        )
        by_code = {c.code: c for c in conclusions}
        issued = []
        for item in answer:
            conclusion = by_code[item["source"]["topic"]["code"]]
            issued.append((item["uuid"], conclusion.code, conclusion.rule_id, known["version"]))
            metrics.cards.labels(conclusion.code, item["indicator"]).inc()
        if issued:
            try:
                await anyio.to_thread.run_sync(lambda: store.issued(service.id, issued))
            except FeedbackUnavailable as error:
                # The cards are right; only their feedback could not be taken later.
                log.error("feedback database: cards not recorded (%s)", error.args[0])
        return JSONResponse({"cards": answer})

    async def feedback(request: Request) -> Response:
        service = SERVICES.get(request.path_params["service_id"])
        if service is None:
            return JSONResponse({"error": "no such service"}, 404)
        url = service_url(service.id)
        refusal = refused(request, "feedback", url, f"{url}/feedback")
        if refusal is not None:
            return refusal
        try:
            items = _feedback_items(await _json(request))
        except BadHookRequest as error:
            return operation_outcome(400, str(error))
        try:
            return await _store_feedback(service.id, items)
        except FeedbackUnavailable as error:
            log.error("feedback database: %s", error.args[0])
            return operation_outcome(503, "feedback cannot be stored now")

    async def _store_feedback(service_id: str, items: list[dict[str, Any]]) -> Response:
        known = []
        for item in items:
            card = await anyio.to_thread.run_sync(lambda uuid=item["card"]: store.card(uuid))
            if card is None or card[0] != service_id:
                return JSONResponse({"error": "unknown card"}, 404)
            known.append((item, card))
        for item, (_, code, _) in known:
            reason = (item.get("overrideReason") or {}).get("reason") or {}
            await anyio.to_thread.run_sync(
                lambda item=item, reason=reason: store.record(
                    item["card"],
                    item["outcome"],
                    reason.get("code") if isinstance(reason, dict) else None,
                    len(item.get("acceptedSuggestions") or []),
                    item["outcomeTimestamp"],
                )
            )
            metrics.feedback.labels(code, item["outcome"]).inc()
        return JSONResponse({})

    async def healthz(request: Request) -> Response:
        serving = await anyio.to_thread.run_sync(lambda: _serving(config.target))
        return JSONResponse(
            {"status": "SERVING" if serving else "NOT_SERVING"}, 200 if serving else 503
        )

    async def scrape(request: Request) -> Response:
        return Response(generate_latest(metrics.registry), media_type=CONTENT_TYPE_LATEST)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        yield
        store.close()

    app = Starlette(
        routes=[
            Route("/cds-services", list_services, methods=["GET"]),
            Route("/cds-services/{service_id}", call, methods=["POST"]),
            Route("/cds-services/{service_id}/feedback", feedback, methods=["POST"]),
            Route("/healthz", healthz, methods=["GET"]),
            Route("/metrics", scrape, methods=["GET"]),
        ],
        middleware=[
            Middleware(
                CORSMiddleware,
                allow_origins=["*"],
                allow_methods=["GET", "POST", "OPTIONS"],
                allow_headers=["Authorization", "Content-Type"],
            )
        ],
        lifespan=lifespan,
    )
    return app


async def _json(request: Request) -> Any:
    try:
        return await request.json()
    except ValueError:
        raise BadHookRequest("the body is not JSON") from None


def _hook_request(body: Any, hook: str) -> tuple[dict[str, Any], dict[str, Any]]:
    """The context and prefetch of a valid hook request for `hook`."""
    if not isinstance(body, dict):
        raise BadHookRequest("the body is not a JSON object")
    if body.get("hook") != hook:
        raise BadHookRequest(f"hook must be {hook!r}")
    if not isinstance(body.get("hookInstance"), str) or not body["hookInstance"]:
        raise BadHookRequest("hookInstance is required")
    context = body.get("context")
    if not isinstance(context, dict) or not isinstance(context.get("patientId"), str):
        raise BadHookRequest("context.patientId is required")
    prefetch = body.get("prefetch", {})
    if not isinstance(prefetch, dict):
        raise BadHookRequest("prefetch must be an object")
    return context, prefetch


def _feedback_items(body: Any) -> list[dict[str, Any]]:
    items = body.get("feedback") if isinstance(body, dict) else None
    if not isinstance(items, list) or not items:
        raise BadHookRequest("feedback must be a non-empty list")
    for index, item in enumerate(items):
        where = f"feedback[{index}]"
        if not isinstance(item, dict) or not isinstance(item.get("card"), str):
            raise BadHookRequest(f"{where}.card is required")
        if item.get("outcome") not in OUTCOMES:
            raise BadHookRequest(f"{where}.outcome must be accepted or overridden")
        if not isinstance(item.get("outcomeTimestamp"), str):
            raise BadHookRequest(f"{where}.outcomeTimestamp is required")
    return items


def _evaluate(
    cds: CdsClient, bundle: dict[str, Any], config: HooksConfig
) -> tuple[Any, list[Conclusion]]:
    report, conclusions = None, []
    events = cds.evaluate_fhir(
        bundle,
        datetime.now(UTC),
        vitals_window=config.vitals_window,
        timeout=config.deadline_seconds,
    )
    for event in events:
        if isinstance(event, Conclusion):
            conclusions.append(event)
        elif not isinstance(event, Summary):
            report = event
    return report, conclusions


def _serving(target: str) -> bool:
    with grpc.insecure_channel(target) as channel:
        try:
            answer = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="cds.v1.DecisionSupportService"), timeout=1
            )
        except grpc.RpcError:
            return False
    return bool(answer.status == health_pb2.HealthCheckResponse.SERVING)
