"""Prometheus metrics, summed correctly across worker processes.

With `--metrics-port`, the parent sets `PROMETHEUS_MULTIPROC_DIR` before any
worker starts (prometheus-client reads it when this module is imported), each
worker writes its samples to files there, and the parent's exporter sums them
(prometheus-client's multiprocess mode). Without it, the metrics live in the
process's default registry (tests, embedding).

Labels are bounded vocabularies — method names this server serves, status
codes, rule ids, conclusion codes — never fact values, session ids or anything
else a caller chose.

A full disk must not take the service down. The multiprocess files are
memory-mapped, and prometheus-client grows them by truncating: on a full file
system the next write into the new pages is a SIGBUS that kills the worker.
`PreallocatedMmapedDict` reserves the space first (`posix_fallocate`), so a
full disk is an `OSError` at the moment a file grows; recording then stops with
one log line and every call goes on being served.
"""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable

from prometheus_client import Counter, Gauge, Histogram, mmap_dict, values

from kb.engine import EvaluationResult

log = logging.getLogger(__name__)


class PreallocatedMmapedDict(mmap_dict.MmapedDict):
    """prometheus-client's mmapped dict, with its file's space reserved before use."""

    def __init__(self, filename: str, read_mode: bool = False) -> None:
        if not read_mode:
            with open(filename, "a+b") as file:
                if os.fstat(file.fileno()).st_size == 0:
                    os.posix_fallocate(file.fileno(), 0, mmap_dict._INITIAL_MMAP_SIZE)
        super().__init__(filename, read_mode)

    def _init_value(self, key: str) -> None:
        encoded_length = len(key.encode("utf-8"))
        padded = encoded_length + (8 - (encoded_length + 4) % 8)
        needed = self._used + 4 + padded + 16  # as the base class packs an entry
        capacity = self._capacity
        while needed > capacity:
            capacity *= 2
        if capacity != self._capacity:
            os.posix_fallocate(self._f.fileno(), 0, capacity)
        super()._init_value(key)


if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    values.MmapedDict = PreallocatedMmapedDict  # type: ignore[misc]

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

_stopped = threading.Event()


def _record(write: Callable[[], None]) -> None:
    """Record a sample unless recording has stopped; stop (once, logged) when the
    metrics files cannot grow. Serving never depends on metrics."""
    if _stopped.is_set():
        return
    try:
        write()
    except OSError as error:
        if not _stopped.is_set():
            _stopped.set()
            log.error(
                "metrics recording stopped in this process: cannot write the metrics files (%s)",
                os.strerror(error.errno) if error.errno else type(error).__name__,
            )


# A labelled series, looked up once: `labels()` takes a lock and builds a key
# on every call. The caches are bounded as the label vocabularies are.
@functools.cache
def _conclusion_series(code: str, rule_id: str) -> tuple[Counter, Counter]:
    return CONCLUSIONS.labels(code), RULES_FIRED.labels(rule_id)


@functools.cache
def _rpc_series(method: str, code: str) -> tuple[Counter, Histogram]:
    return RPCS.labels(method, code), RPC_SECONDS.labels(method, code)


def record_evaluation(result: EvaluationResult) -> None:
    def write() -> None:
        EVALUATIONS.inc()
        for conclusion in result.conclusions:
            conclusions, rules_fired = _conclusion_series(
                conclusion.code, conclusion.provenance.rule_id
            )
            conclusions.inc()
            rules_fired.inc()

    _record(write)


def record_rpc(method: str, code: str, seconds: float) -> None:
    """One finished RPC; called by the call context (server.logs), which
    already knows every call's end, status and duration."""

    def write() -> None:
        calls, durations = _rpc_series(method, code)
        calls.inc()
        durations.observe(seconds)

    _record(write)


def session_streams_changed(delta: int) -> None:
    _record(lambda: OPEN_SESSIONS.inc(delta))
