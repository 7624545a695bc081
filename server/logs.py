"""Structured logs: one JSON object per line, and a correlation id per call.

Every RPC gets a correlation id (128 random bits, hex) when it starts. Each
log line written while serving the call carries it, and an
error status that asks the caller to report a failure (`INTERNAL`) quotes the
same id, so an operator can find the call's lines from a caller's report.

`with_call_context` does four things around every handler:

- admits the call through the server's `CallGate`: past its capacity a call
  is answered `RESOURCE_EXHAUSTED` at once; once shutdown has begun (lame
  duck), `UNAVAILABLE`, while the listeners stay open and the calls admitted
  before finish, so no caller is left to gRPC core's `CANCELLED` (which
  clients do not retry). Health checks pass ungated and health watches have a
  small gate of their own, so no load and no caller can starve the probes;

- sets the call's correlation id and method in a `contextvars.ContextVar`:
  grpc.aio serves each call in a task, and so a context, of its own, so
  nothing leaks into another call (work a call hands to a thread takes a copy
  of its context with it, see `server.session_rpc`);
- writes one line when the call ends: method, status code, duration
  (DEBUG when OK, INFO otherwise), and counts and times the call in the
  Prometheus metrics (`server.metrics.record_rpc`);
- turns an exception that escaped the handler without a status into
  `INTERNAL` with the correlation id, logging its type and stack frames —
  never its message. Left to gRPC, such an exception would be logged with its
  message (which may quote a fact value) and answered `UNKNOWN`.

Privacy and bounds: this module logs method names, status codes, durations
and ids, nothing a caller sent. A method is named only when it is one this
server serves (`KNOWN_METHODS`); any other `:path` is logged and counted as
`unknown`, so a caller cannot mint metric label series or log fields. Refused
(`UNAUTHENTICATED`) calls get no end-of-call line of their own: the refusal is
logged by `server.security`, at most once per interval (`RateLimitedLog`).
`JsonFormatter` renders an exception as its type and stack frames, never its
message, whoever logs it.
"""

from __future__ import annotations

import asyncio
import enum
import inspect
import json
import logging
import os
import sys
import threading
import time
import traceback
import uuid
from collections.abc import AsyncIterator, Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

import grpc
from grpc_health.v1 import health_pb2
from grpc_reflection.v1alpha import reflection_pb2

from cds.v1 import decision_support_pb2 as pb
from server import errors
from server.metrics import record_rpc

log = logging.getLogger(__name__)

LOG_FORMATS = ("json", "text")
UNKNOWN_METHOD = "unknown"
# Every method this server serves, as gRPC names them ("/package.Service/Method").
KNOWN_METHODS: frozenset[str] = frozenset(
    f"/{service.full_name}/{method.name}"
    for descriptor in (pb.DESCRIPTOR, health_pb2.DESCRIPTOR, reflection_pb2.DESCRIPTOR)
    for service in descriptor.services_by_name.values()
    for method in service.methods
)


def method_name(path: str) -> str:
    """The call's `:path` if this server serves it, else `unknown`: never a caller's string."""
    return path if path in KNOWN_METHODS else UNKNOWN_METHOD


class RateLimitedLog:
    """Logs an event at most once per `interval` seconds, with how many were held back.

    For events any caller can cause at will (a refused call): one line per
    interval bounds the log however fast they come.
    """

    def __init__(self, logger: logging.Logger, message: str, interval: float = 10.0) -> None:
        self._logger = logger
        self._message = message
        self._interval = interval
        self._lock = threading.Lock()
        self._next = 0.0
        self._held = 0

    def event(self) -> None:
        now = time.monotonic()
        with self._lock:
            if now < self._next:
                self._held += 1
                return
            held, self._held, self._next = self._held, 0, now + self._interval
        suffix = f" ({held} more since the last report)" if held else ""
        self._logger.warning("%s%s", self._message, suffix)


class Admission(enum.Enum):
    ADMITTED = "admitted"
    SHUTTING_DOWN = "shutting down"
    FULL = "full"


class CallGate:
    """Admits calls: at most `capacity` at once, and none once shutdown began.

    It also tells shutdown when the calls it admitted have finished and callers
    have stopped arriving. Session streams count against the capacity but are
    not waited for: they are long-lived and end when the grace period does.
    Health checks never pass through a gate (`with_call_context`), so a
    server full of calls, or shutting down, still answers its probes.
    """

    def __init__(self, capacity: int | None = None, closes: bool = True) -> None:
        self._changed = threading.Condition()
        self._capacity = capacity
        self._closes = closes
        self._open = True
        self._admitted = 0
        self._in_flight = 0  # admitted calls shutdown waits for
        self._last_arrival = 0.0

    def admit(self, waited_for: bool) -> Admission:
        with self._changed:
            self._last_arrival = time.monotonic()
            if not self._open:
                return Admission.SHUTTING_DOWN
            if self._capacity is not None and self._admitted >= self._capacity:
                return Admission.FULL
            self._admitted += 1
            self._in_flight += waited_for
            return Admission.ADMITTED

    def finished(self, waited_for: bool) -> None:
        with self._changed:
            self._admitted -= 1
            self._in_flight -= waited_for
            self._changed.notify_all()

    def close(self) -> None:
        with self._changed:
            self._open = not self._closes

    def wait_quiet(self, quiet: float, timeout: float | None) -> bool:
        """Wait until every admitted call (session streams aside) has finished and
        no call has arrived for `quiet` seconds (callers told UNAVAILABLE have
        gone elsewhere): a call arriving as the listeners close is left to gRPC
        core, which answers CANCELLED. False when `timeout` passed first."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while True:
                now = time.monotonic()
                calm = now - self._last_arrival
                if self._in_flight == 0 and calm >= quiet:
                    return True
                if deadline is not None and now >= deadline:
                    return False
                wait = quiet - calm if self._in_flight == 0 else quiet
                if deadline is not None:
                    wait = min(wait, deadline - now)
                self._changed.wait(max(wait, 0.001))


@dataclass(frozen=True)
class Gates:
    """The server's gates: calls, and health watches (capped, never closed, so
    probes see NOT_SERVING during shutdown; health checks are not gated)."""

    calls: CallGate
    health_watches: CallGate = field(
        default_factory=lambda: CallGate(MAX_HEALTH_WATCHES, closes=False)
    )


MAX_HEALTH_WATCHES = 4  # per process: a watcher needs one; anyone may open them
HEALTH_CHECK = "/grpc.health.v1.Health/Check"
HEALTH_WATCH = "/grpc.health.v1.Health/Watch"
# Long-lived calls shutdown does not wait for (they end with the grace period).
_NOT_WAITED_FOR = frozenset(
    {
        "/cds.v1.DecisionSupportService/StreamSession",
        "/cds.v1.DecisionSupportService/WatchSession",
        HEALTH_WATCH,
    }
)


@dataclass(frozen=True)
class CallInfo:
    correlation_id: str
    method: str
    gate: CallGate | None = None  # the gate that admitted the call, told when it ends
    waited_for: bool = False


_CALL: ContextVar[CallInfo | None] = ContextVar("cds_call", default=None)


def new_correlation_id() -> str:
    return uuid.uuid4().hex


def current_call() -> CallInfo | None:
    """The call being served on this thread, if any."""
    return _CALL.get()


def correlation_id() -> str:
    """The current call's correlation id; a fresh one outside a call."""
    call = _CALL.get()
    return call.correlation_id if call is not None else new_correlation_id()


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, pid, message, call fields.

    Extra structured fields come from `extra={"fields": {...}}`. An exception
    (`exc_info`) is rendered as `error` (its type) and `stack` (its frames),
    never its message.
    """

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, tz=UTC).isoformat(
                timespec="milliseconds"
            ),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process or os.getpid(),
            "message": record.getMessage(),
        }
        call = getattr(record, "call", None) or _CALL.get()
        if isinstance(call, CallInfo):
            entry["correlation_id"] = call.correlation_id
            entry["method"] = call.method
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            for key, value in fields.items():
                entry.setdefault(str(key), value)
        if record.exc_info and record.exc_info[0] is not None:
            kind, _, tb = record.exc_info
            entry["error"] = kind.__name__
            entry["stack"] = "".join(traceback.format_tb(tb))
        return json.dumps(entry, default=str)


class _CallFilter(logging.Filter):
    """Stamps the current call on each record when it is created, on its own thread."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "call"):
            record.call = _CALL.get()
        return True


def configure_logging(
    level: str | int = "INFO", fmt: str = "json", stream: TextIO | None = None
) -> logging.Handler:
    """Send every log record to `stream` (stderr) as JSON lines (or plain text)."""
    if fmt not in LOG_FORMATS:
        raise ValueError(f"log format must be one of {', '.join(LOG_FORMATS)}")
    handler = logging.StreamHandler(stream if stream is not None else sys.stderr)
    handler.addFilter(_CallFilter())
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(name)s [%(call)s] %(message)s")
        )
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper() if isinstance(level, str) else level)
    return handler


def report_failure(what: str, error: BaseException) -> str:
    """Log an unexpected failure of the current call and return its correlation id,
    for the status that asks the caller to report it. The log gets the error's
    type and stack, never its message: messages may carry fact values."""
    call_id = correlation_id()
    log.error(
        "%s failed: %s (correlation id %s)\n%s",
        what,
        type(error).__name__,
        call_id,
        "".join(traceback.format_tb(error.__traceback__)),
    )
    return call_id


def _code_name(context: grpc.aio.ServicerContext, default: str) -> str:
    code = context.code()
    if isinstance(code, grpc.StatusCode):
        return code.name
    if isinstance(code, int):  # grpc.aio reports the raw status number
        return next((c.name for c in grpc.StatusCode if c.value[0] == code), default)
    return default


def _finished(call: CallInfo, code: str, started: float) -> None:
    if call.gate is not None:
        call.gate.finished(call.waited_for)
    seconds = time.perf_counter() - started
    record_rpc(call.method.rsplit("/", 1)[-1], code, seconds)
    if code == "UNAUTHENTICATED":
        return  # server.security logs refusals, rate-limited
    log.log(
        logging.DEBUG if code == "OK" else logging.INFO,
        "call finished",
        extra={"fields": {"code": code, "duration_ms": round(seconds * 1000, 3)}},
    )


async def _failed(
    call: CallInfo, context: grpc.aio.ServicerContext, error: BaseException, started: float
) -> None:
    """An exception left the handler: a deliberate status or a cancellation stands
    (the caller re-raises it); anything else is answered INTERNAL."""
    if isinstance(error, asyncio.CancelledError) or context.cancelled():
        _finished(call, "CANCELLED", started)  # the caller is gone: no one to answer
        return
    code = _code_name(context, "")
    if code:  # the handler aborted: its status stands
        _finished(call, code, started)
        return
    report_failure("the call", error)
    _finished(call, "INTERNAL", started)
    await context.abort_with_status(errors.internal_error(call.correlation_id))


async def _admit(method: str, gates: Gates | None, context: grpc.aio.ServicerContext) -> CallInfo:
    """The call's context, once a gate admitted it: a call arriving once shutdown
    began is refused UNAVAILABLE, one past the capacity RESOURCE_EXHAUSTED."""
    if gates is None or method == HEALTH_CHECK:
        return CallInfo(new_correlation_id(), method)
    gate = gates.health_watches if method == HEALTH_WATCH else gates.calls
    waited_for = method not in _NOT_WAITED_FOR
    admission = gate.admit(waited_for)
    if admission is not Admission.ADMITTED:
        refusal = (
            errors.shutting_down() if admission is Admission.SHUTTING_DOWN else errors.overloaded()
        )
        record_rpc(method.rsplit("/", 1)[-1], refusal.code.name, 0.0)
        await context.abort_with_status(refusal)
    return CallInfo(new_correlation_id(), method, gate, waited_for)


def _wrap_coroutine(behavior: Callable[..., Any], method: str, gates: Gates | None) -> Any:
    """A handler that returns its answer (unary response, or writes its own)."""

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> Any:
        call = await _admit(method, gates, context)
        started = time.perf_counter()
        token = _CALL.set(call)
        try:
            response = await behavior(request, context)
        except BaseException as error:
            await _failed(call, context, error, started)
            raise
        else:
            _finished(call, _code_name(context, "OK"), started)
            return response
        finally:
            _CALL.reset(token)

    return handle


def _wrap_generator(behavior: Callable[..., Any], method: str, gates: Gates | None) -> Any:
    """A handler that streams its answers (an async generator)."""

    async def handle(request: Any, context: grpc.aio.ServicerContext) -> AsyncIterator[Any]:
        call = await _admit(method, gates, context)
        started = time.perf_counter()
        # Not reset: each call is served in a task (and context) of its own, and
        # an abandoned generator is closed later from another context.
        _CALL.set(call)
        try:
            async for response in behavior(request, context):
                yield response
        except GeneratorExit:  # gRPC stopped reading: the call ended or was cancelled
            _finished(call, _code_name(context, "CANCELLED"), started)
            raise
        except BaseException as error:
            await _failed(call, context, error, started)
            raise
        else:
            _finished(call, _code_name(context, "OK"), started)

    return handle


def _wrap(behavior: Callable[..., Any], method: str, gates: Gates | None) -> Any:
    if inspect.isasyncgenfunction(behavior):
        return _wrap_generator(behavior, method, gates)
    return _wrap_coroutine(behavior, method, gates)


HANDLER_KINDS = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def with_call_context(
    handler: grpc.RpcMethodHandler, path: str, gates: Gates | None = None
) -> grpc.RpcMethodHandler:
    """`handler` with admission, correlation id, end-of-call log line, metrics
    and a last-resort INTERNAL around its behavior. Applied once per method
    when the server is built (`server.handlers`), not on every call."""
    method = method_name(path)
    for kind in HANDLER_KINDS:
        behavior = getattr(handler, kind)
        if behavior is not None:
            return handler._replace(**{kind: _wrap(behavior, method, gates)})
    return handler
