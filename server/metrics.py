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


def record_rpc(method: str, code: str, seconds: float) -> None:
    """One finished RPC; called by the call-context interceptor (server.logs),
    which already knows every call's end, status and duration."""
    RPCS.labels(method, code).inc()
    RPC_SECONDS.labels(method, code).observe(seconds)
