"""Prometheus metrics, summed correctly across worker processes.

With `--metrics-port`, the parent sets `PROMETHEUS_MULTIPROC_DIR` before any
worker starts (prometheus-client reads it when this module is imported), each
worker writes its samples to files there, and the parent's exporter sums them
(prometheus-client's multiprocess mode). Without it, the metrics live in the
process's default registry (tests, embedding).

Labels are bounded vocabularies — method names, status codes, rule ids,
conclusion codes — never fact values or session ids.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
from prometheus_client import Counter, Gauge, Histogram

from kb.engine import EvaluationResult

RPCS = Counter("cds_rpcs_total", "RPCs finished, by method and status code.", ["method", "code"])
RPC_SECONDS = Histogram(
    "cds_rpc_duration_seconds",
    "RPC duration, to the last message, by method and status code.",
    ["method", "code"],
    buckets=(0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 10, 60),
)
EVALUATIONS = Counter("cds_evaluations_total", "Evaluations completed by the rules engine.")
RULES_FIRED = Counter("cds_rules_fired_total", "Rule firings, by rule id.", ["rule_id"])
CONCLUSIONS = Counter("cds_conclusions_total", "Conclusions derived, by code.", ["code"])
OPEN_SESSIONS = Gauge(
    "cds_open_session_streams",
    "Session streams open now.",
    multiprocess_mode="livesum",
)


def record_evaluation(result: EvaluationResult) -> None:
    EVALUATIONS.inc()
    for conclusion in result.conclusions:
        CONCLUSIONS.labels(conclusion.code).inc()
        RULES_FIRED.labels(conclusion.provenance.rule_id).inc()


def _code(context: grpc.ServicerContext, error: BaseException | None) -> str:
    if isinstance(error, GeneratorExit):  # the client went away mid-stream
        return grpc.StatusCode.CANCELLED.name
    code = context.code()
    if code is None:
        code = grpc.StatusCode.OK if error is None else grpc.StatusCode.UNKNOWN
    return code.name


def _observe(method: str, started: float, context: Any, error: BaseException | None) -> None:
    code = _code(context, error)
    RPCS.labels(method, code).inc()
    RPC_SECONDS.labels(method, code).observe(time.perf_counter() - started)


class MetricsInterceptor(grpc.ServerInterceptor):
    """Counts and times every RPC, streaming ones to their last message."""

    def intercept_service(
        self, continuation: Callable[[Any], Any], handler_call_details: Any
    ) -> Any:
        handler = continuation(handler_call_details)
        if handler is None:
            return None
        method = handler_call_details.method.rsplit("/", 1)[-1]
        if handler.unary_unary:
            return handler._replace(unary_unary=_unary(method, handler.unary_unary))
        if handler.unary_stream:
            return handler._replace(unary_stream=_streaming(method, handler.unary_stream))
        if handler.stream_unary:
            return handler._replace(stream_unary=_unary(method, handler.stream_unary))
        return handler._replace(stream_stream=_streaming(method, handler.stream_stream))


def _unary(method: str, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def wrapped(request: Any, context: Any) -> Any:
        started = time.perf_counter()
        error = None
        try:
            return behaviour(request, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _observe(method, started, context, error)

    return wrapped


def _streaming(method: str, behaviour: Callable[[Any, Any], Any]) -> Callable[[Any, Any], Any]:
    def wrapped(request: Any, context: Any) -> Iterator[Any]:
        started = time.perf_counter()
        error = None
        try:
            yield from behaviour(request, context)
        except BaseException as raised:
            error = raised
            raise
        finally:
            _observe(method, started, context, error)

    return wrapped
