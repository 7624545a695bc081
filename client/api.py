"""A thin typed client for `cds.v1.DecisionSupportService`.

The client owns the seam between the wire and the caller: callers pass facts as
plain mappings and get frozen dataclasses back, so no caller builds or reads a
protobuf message for `Evaluate`. `GetKnowledgeBase` is returned as its message
because it is a catalogue to browse or dump, not something code branches on.

Errors, all raised from the `grpc.RpcError` that caused them:

    CdsError              any failed call; carries the status code, the server's
    |                     message and the rich details (ErrorInfo reason,
    |                     BadRequest field violations)
    +-- CdsUnavailable    UNAVAILABLE: the server is unreachable or shutting down;
                          worth a retry, unlike a rejected request

Transport security: `root_certificates` (PEM bytes; or `tls=True` for the
system's roots) makes the channel TLS; `private_key` and `certificate_chain`
add a client certificate for servers that require mutual TLS; `token` sends
`authorization: Bearer <token>` metadata with every call.

Sessions (`CdsClient.session`) follow one patient over time: each batch of
asserted and retracted facts answers with the conclusions it added, updated
and withdrew, then the new version (or a rejection that leaves the session
unchanged). A session stream is long-lived, so it carries no deadline; the
channel sends HTTP/2 keepalive pings instead. A session resumed after the
server's knowledge base was upgraded also says what the upgrade changed
(`Session.knowledge_base_changes`).

A fact that cannot be put on the wire at all (not a mapping, no id, a value
`Struct` cannot carry) raises `ValueError` before any call is made. Whether a
fact is *valid* is the server's decision: the client never second-guesses the
published vocabulary.
"""

from __future__ import annotations

import collections
import json
import queue
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any, Self

import grpc
from google.protobuf import duration_pb2, struct_pb2, timestamp_pb2
from google.rpc import error_details_pb2
from grpc_status import rpc_status

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc

__all__ = [
    "DEFAULT_TARGET",
    "DEFAULT_TIMEOUT",
    "KEEPALIVE_OPTIONS",
    "BatchApplied",
    "BatchRejected",
    "BatchResult",
    "CdsClient",
    "CdsError",
    "CdsUnavailable",
    "Conclusion",
    "ConclusionChange",
    "Session",
    "Summary",
    "change_from_proto",
    "change_type_name",
    "conclusion_from_proto",
    "error_from_rpc",
    "fact_to_proto",
    "kind_name",
    "summary_from_proto",
    "urgency_name",
]

DEFAULT_TARGET = "127.0.0.1:50051"
# Evaluations are fast (milliseconds); the deadline exists so that a stuck
# server or network never hangs a caller, not to bound real work.
DEFAULT_TIMEOUT = 10.0

# HTTP/2 keepalive for long-lived session streams: ping every minute (the server
# accepts pings every 30 s or slower), give up on a peer silent for 20 s more.
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.max_pings_without_data", 0),
)

_KIND_PREFIX = "CONCLUSION_KIND_"
_CHANGE_PREFIX = "CHANGE_TYPE_"
_URGENCY_PREFIX = "URGENCY_"


@dataclass(frozen=True)
class Conclusion:
    """One derived conclusion with its provenance, flattened for easy reading.

    `kind` and `urgency` are the enum names without their prefix
    ("MIMIC_SUSPECTED", "EMERGENT"), so they read well in logs and compare
    as plain strings.
    """

    code: str
    kind: str
    urgency: str
    title: str
    detail: str
    rule_id: str
    ruleset: str
    fact_ids: tuple[str, ...]
    derived_from: tuple[str, ...]
    citation_ids: tuple[str, ...]
    evidence_note: str
    certainty: str
    # evaluate_fhir only: the FHIR references of the resources behind it.
    source_references: tuple[str, ...] = ()


@dataclass(frozen=True)
class Summary:
    """The closing event of an evaluation; its arrival means the stream is complete."""

    conclusion_count: int
    rules_fired: int
    knowledge_base_version: str


@dataclass(frozen=True)
class ConclusionChange:
    """A conclusion a session batch added, updated or withdrew.

    `type` is "ADDED", "UPDATED" (same code, other detail or provenance) or
    "WITHDRAWN" (then `conclusion` is the one withdrawn, as last seen).
    """

    type: str
    conclusion: Conclusion
    version: int


@dataclass(frozen=True)
class BatchApplied:
    """The batch is durably stored; `version` counts the session's applied batches."""

    version: int
    knowledge_base_version: str


@dataclass(frozen=True)
class SessionSnapshot:
    """A watched session's conclusions at `version`: the first event of a watch,
    and again whenever the watcher fell behind (the version then jumps)."""

    session_id: str
    version: int
    knowledge_base_version: str
    conclusions: tuple[Conclusion, ...]


@dataclass(frozen=True)
class BatchRejected:
    """The batch was refused whole; the session is unchanged and stays open.

    `reason` is machine-readable (FACT_INVALID, LIMIT_EXCEEDED, VERSION_CONFLICT),
    `violations` are `(field, description)` pairs with fields relative to the
    batch (`facts[2].fields.weeks`, `retract_fact_ids[0]`, `expected_version`).
    """

    reason: str
    violations: tuple[tuple[str, str], ...]


@dataclass(frozen=True)
class BatchResult:
    """Everything one batch caused: its changes, then applied or rejected."""

    changes: tuple[ConclusionChange, ...]
    outcome: BatchApplied | BatchRejected

    @property
    def applied(self) -> bool:
        return isinstance(self.outcome, BatchApplied)


class CdsError(Exception):
    """A call failed; `str()` gives one line for the status, one per violation.

    `code` is the gRPC status code name ("INVALID_ARGUMENT"), `reason` the
    machine-readable `google.rpc.ErrorInfo.reason` when the server sent one,
    `violations` the `(field, description)` pairs of a `google.rpc.BadRequest`.
    """

    def __init__(
        self,
        code: str,
        message: str,
        reason: str | None = None,
        violations: Iterable[tuple[str, str]] = (),
    ) -> None:
        self.code = code
        self.message = message
        self.reason = reason
        self.violations: tuple[tuple[str, str], ...] = tuple(violations)
        super().__init__(code, message, reason, self.violations)

    def __str__(self) -> str:
        head = f"{self.code}: {self.message}" if self.message else self.code
        if self.reason and self.reason not in self.message:
            head += f" (reason: {self.reason})"
        return "\n".join([head, *(f"  {field}: {text}" for field, text in self.violations)])


class CdsUnavailable(CdsError):
    """The server could not be reached, or is shutting down (status UNAVAILABLE)."""


def fact_to_proto(fact: Mapping[str, Any], index: int = 0) -> pb.Fact:
    """Build a `pb.Fact` from `{"id": ..., "type": ..., "fields": {...}}`.

    Only the shape is checked here; `index` names the fact in error messages the
    same way the server does (`facts[2]`). Numbers become doubles, as `Struct`
    carries every number; the server accepts 40.0 where an integer is expected.
    """
    where = f"facts[{index}]"
    if not isinstance(fact, Mapping):
        raise ValueError(f"{where}: a fact must be an object with id, type and fields")
    unknown = sorted(set(fact) - {"id", "type", "fields"})
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {', '.join(map(repr, unknown))}")
    fact_id, fact_type = fact.get("id"), fact.get("type")
    if not isinstance(fact_id, str):
        raise ValueError(f"{where}.id: must be a string")
    if not isinstance(fact_type, str):
        raise ValueError(f"{where}.type: must be a string")
    fields = fact.get("fields")
    if fields is None:
        fields = {}
    if not isinstance(fields, Mapping):
        raise ValueError(f"{where}.fields: must be an object")
    struct = struct_pb2.Struct()
    try:
        struct.update(fields)
    except (TypeError, ValueError) as error:
        # The value itself is never echoed: facts are health data.
        raise ValueError(f"{where}.fields: holds a value JSON cannot represent") from error
    return pb.Fact(id=fact_id, type=fact_type, fields=struct)


def kind_name(value: int) -> str:
    """The kind without its prefix, e.g. MIMIC_SUSPECTED.

    A value newer than these stubs becomes KIND_<n> rather than failing the stream.
    """
    try:
        return pb.ConclusionKind.Name(value).removeprefix(_KIND_PREFIX)
    except ValueError:
        return f"KIND_{value}"


def urgency_name(value: int) -> str:
    """The urgency without its prefix, e.g. EMERGENT; an unknown value becomes URGENCY_<n>."""
    try:
        return pb.Urgency.Name(value).removeprefix(_URGENCY_PREFIX)
    except ValueError:
        return f"URGENCY_{value}"


def conclusion_from_proto(message: pb.Conclusion) -> Conclusion:
    """Flatten a wire `Conclusion` and its `Provenance` into the dataclass."""
    provenance = message.provenance
    return Conclusion(
        code=message.code,
        kind=kind_name(message.kind),
        urgency=urgency_name(message.urgency),
        title=message.title,
        detail=message.detail,
        rule_id=provenance.rule_id,
        ruleset=provenance.ruleset,
        fact_ids=tuple(provenance.fact_ids),
        derived_from=tuple(provenance.derived_from),
        citation_ids=tuple(provenance.citation_ids),
        evidence_note=provenance.evidence_note,
        certainty=provenance.certainty,
        source_references=tuple(provenance.source_references),
    )


def summary_from_proto(message: pb.EvaluationSummary) -> Summary:
    return Summary(
        conclusion_count=message.conclusion_count,
        rules_fired=message.rules_fired,
        knowledge_base_version=message.knowledge_base_version,
    )


def error_from_rpc(error: grpc.RpcError) -> CdsError:
    """Convert a failed call into a `CdsError`, reading the rich status if any.

    A status that cannot be read (no trailing metadata, details inconsistent with
    the call's own status) still yields a `CdsError` from the plain code and
    message: a malformed detail must not hide the error it decorates.
    """
    code_attr = getattr(error, "code", None)
    status_code = code_attr() if callable(code_attr) else None
    code = status_code.name if isinstance(status_code, grpc.StatusCode) else "UNKNOWN"
    details_attr = getattr(error, "details", None)
    message = (details_attr() if callable(details_attr) else None) or ""

    reason: str | None = None
    violations: list[tuple[str, str]] = []
    try:
        status = rpc_status.from_call(error)
    except (AttributeError, TypeError, ValueError):
        status = None
    for detail in status.details if status is not None else ():
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations.extend((v.field, v.description) for v in bad_request.field_violations)
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason or None

    cls = CdsUnavailable if status_code is grpc.StatusCode.UNAVAILABLE else CdsError
    return cls(code, message, reason, violations)


class CdsClient:
    """A connection to the decision-support service.

    Use it as a context manager so the channel is closed. A channel passed in
    belongs to the caller and is left open; the client closes only a channel it
    created. Every call carries a deadline: `timeout` seconds unless the call
    says otherwise.
    """

    def __init__(
        self,
        target: str = DEFAULT_TARGET,
        timeout: float = DEFAULT_TIMEOUT,
        channel: grpc.Channel | None = None,
        *,
        tls: bool = False,
        root_certificates: bytes | None = None,
        private_key: bytes | None = None,
        certificate_chain: bytes | None = None,
        token: str | None = None,
    ) -> None:
        if timeout <= 0:
            raise ValueError("timeout must be positive: every call needs a deadline")
        if (private_key is None) != (certificate_chain is None):
            raise ValueError("private_key and certificate_chain go together")
        self.target = target
        self.timeout = timeout
        self._owns_channel = channel is None
        if channel is None:
            if tls or root_certificates is not None or private_key is not None:
                credentials = grpc.ssl_channel_credentials(
                    root_certificates, private_key, certificate_chain
                )
                channel = grpc.secure_channel(target, credentials, options=KEEPALIVE_OPTIONS)
            else:
                channel = grpc.insecure_channel(target, options=KEEPALIVE_OPTIONS)
        if token is not None:
            channel = grpc.intercept_channel(channel, _BearerToken(token))
        self._channel = channel
        self._stub = pb_grpc.DecisionSupportServiceStub(self._channel)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        if self._owns_channel:
            self._channel.close()

    def evaluate(
        self, facts: Iterable[Mapping[str, Any]], *, timeout: float | None = None
    ) -> Iterator[Conclusion | Summary]:
        """Evaluate one complete set of facts; yield each event as it arrives.

        Conclusions come first, then exactly one `Summary`. The facts are
        converted now, so a malformed fact raises `ValueError` here rather than
        on the first `next()`; the call itself starts when iteration does.
        Abandoning the iterator cancels the call.
        """
        request = pb.EvaluateRequest(
            facts=[fact_to_proto(fact, index) for index, fact in enumerate(facts)]
        )
        return self._stream_evaluation(request, self._deadline(timeout))

    def explain(
        self, facts: Iterable[Mapping[str, Any]], code: str, *, timeout: float | None = None
    ) -> pb.ExplainResponse:
        """Why (or why not) `code` for these facts: each rule that can produce it,
        each condition with the values it saw, and the conclusions it chains on.

        Returned as its message: a tree to print or walk, not a flat result.
        """
        request = pb.ExplainRequest(
            facts=[fact_to_proto(fact, index) for index, fact in enumerate(facts)], code=code
        )
        try:
            return self._stub.Explain(request, timeout=self._deadline(timeout))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def explain_fhir(
        self,
        bundle: str | Mapping[str, Any],
        code: str,
        as_of: datetime | None = None,
        *,
        timeout: float | None = None,
    ) -> pb.ExplainResponse:
        """`explain` for the facts read from a FHIR Bundle, as `evaluate_fhir` reads it."""
        request = pb.ExplainRequest(code=code, **_fhir_request(bundle, as_of))
        try:
            return self._stub.Explain(request, timeout=self._deadline(timeout))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def knowledge_base(self, *, timeout: float | None = None) -> pb.GetKnowledgeBaseResponse:
        """The knowledge base: version, rulesets and rules, codes, fact schemas, references."""
        try:
            return self._stub.GetKnowledgeBase(
                pb.GetKnowledgeBaseRequest(), timeout=self._deadline(timeout)
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def session(self, session_id: str | None = None) -> Session:
        """Open a new session (no id) or resume one; raises `CdsError` NOT_FOUND for an unknown id.

        Use the session as a context manager so its stream is closed. The
        stream has no deadline: it lives as long as the session is open.
        """
        return Session(self._stub, session_id or "")

    def delete_session(self, session_id: str, *, timeout: float | None = None) -> None:
        """Erase a session and all its facts now; `CdsError` NOT_FOUND if there is none."""
        try:
            self._stub.DeleteSession(
                pb.DeleteSessionRequest(session_id=session_id), timeout=self._deadline(timeout)
            )
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def evaluate_fhir(
        self,
        bundle: str | Mapping[str, Any],
        as_of: datetime | None = None,
        *,
        vitals_window: timedelta | None = None,
        timeout: float | None = None,
    ) -> Iterator[pb.MappingReport | Conclusion | Summary]:
        """Evaluate a FHIR R4 Bundle as it stood at `as_of` (timezone-aware;
        None: now; `vitals_window`: how old an orthostatic test may be, None:
        30 days): the mapping report first (which resource fed which fact,
        which were ignored and why), then each `Conclusion` with its
        `source_references`, then one `Summary`."""
        request = pb.EvaluateFhirRequest(**_fhir_request(bundle, as_of, vitals_window))
        call = self._stub.EvaluateFhir(request, timeout=self._deadline(timeout))
        yield from _streamed(
            call,
            {
                "report": lambda report: report,
                "conclusion": conclusion_from_proto,
                "summary": summary_from_proto,
            },
        )

    def translate_fhir(
        self,
        bundle: str | Mapping[str, Any],
        as_of: datetime | None = None,
        *,
        vitals_window: timedelta | None = None,
        timeout: float | None = None,
    ) -> pb.TranslateFhirResponse:
        """What the service reads from a FHIR Bundle, without evaluating: its
        facts (as `evaluate` takes them) and the mapping report."""
        request = pb.TranslateFhirRequest(**_fhir_request(bundle, as_of, vitals_window))
        try:
            return self._stub.TranslateFhir(request, timeout=self._deadline(timeout))
        except grpc.RpcError as error:
            raise error_from_rpc(error) from error

    def watch(self, session_id: str) -> Iterator[SessionSnapshot | ConclusionChange | BatchApplied]:
        """Follow a session without writing to it: a `SessionSnapshot`, then for
        each batch any writer commits its `ConclusionChange`s and a
        `BatchApplied`; a fresh `SessionSnapshot` when batches were skipped
        (the watcher fell behind). Runs until the caller stops iterating (which
        cancels the call) or the session is deleted or expires (`CdsError`
        NOT_FOUND). No deadline: a watch is long-lived. Watching never keeps a
        session from expiring.
        """
        call = self._stub.WatchSession(pb.WatchSessionRequest(session_id=session_id))
        yield from _streamed(
            call,
            {
                "snapshot": lambda snapshot: SessionSnapshot(
                    snapshot.session_id,
                    snapshot.version,
                    snapshot.knowledge_base_version,
                    tuple(map(conclusion_from_proto, snapshot.current)),
                ),
                "change": change_from_proto,
                "applied": lambda applied: BatchApplied(
                    applied.version, applied.knowledge_base_version
                ),
            },
        )

    def _deadline(self, timeout: float | None) -> float:
        if timeout is None:
            return self.timeout
        if timeout <= 0:
            raise ValueError("timeout must be positive: every call needs a deadline")
        return timeout

    def _stream_evaluation(
        self, request: pb.EvaluateRequest, timeout: float
    ) -> Iterator[Conclusion | Summary]:
        call = self._stub.Evaluate(request, timeout=timeout)
        yield from _streamed(
            call, {"conclusion": conclusion_from_proto, "summary": summary_from_proto}
        )


def _streamed(call: Any, decoders: Mapping[str, Callable[[Any], Any]]) -> Iterator[Any]:
    """A server stream's events, each decoded by the decoder of its `event`
    field; an event this client does not know yet (a newer server) is skipped.
    Errors become `CdsError`s; stopping early cancels the call."""
    try:
        for response in call:
            event = response.WhichOneof("event")
            if event in decoders:
                yield decoders[event](getattr(response, event))
    except grpc.RpcError as error:
        raise error_from_rpc(error) from error
    finally:
        call.cancel()  # frees the stream when the caller stops early; a no-op once finished


class _CallDetails(
    collections.namedtuple(
        "_CallDetails",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class _BearerToken(
    grpc.UnaryUnaryClientInterceptor,
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
):
    """Adds `authorization: Bearer <token>` to every call's metadata."""

    def __init__(self, token: str) -> None:
        token = token.strip()
        if not token or not token.isascii() or not token.isprintable() or " " in token:
            raise ValueError("a token must be printable ASCII without spaces")
        self._entry = ("authorization", f"Bearer {token}")

    def _details(self, details: grpc.ClientCallDetails) -> grpc.ClientCallDetails:
        metadata = [*(details.metadata or ()), self._entry]
        return _CallDetails(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def _call(self, continuation: Callable[..., Any], details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    intercept_unary_unary = _call
    intercept_unary_stream = _call
    intercept_stream_unary = _call
    intercept_stream_stream = _call


def change_type_name(value: int) -> str:
    """ADDED, UPDATED or WITHDRAWN; an unknown value becomes CHANGE_<n>."""
    try:
        return pb.ChangeType.Name(value).removeprefix(_CHANGE_PREFIX)
    except ValueError:
        return f"CHANGE_{value}"


def change_from_proto(message: pb.ConclusionChange) -> ConclusionChange:
    return ConclusionChange(
        type=change_type_name(message.type),
        conclusion=conclusion_from_proto(message.conclusion),
        version=message.version,
    )


_END = None


def _fhir_request(
    bundle: str | Mapping[str, Any],
    as_of: datetime | None,
    vitals_window: timedelta | None = None,
) -> dict[str, Any]:
    if as_of is not None and as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    fields: dict[str, Any] = {
        "bundle_json": bundle if isinstance(bundle, str) else json.dumps(bundle)
    }
    if as_of is not None:
        stamp = timestamp_pb2.Timestamp()
        stamp.FromDatetime(as_of)
        fields["as_of"] = stamp
    if vitals_window is not None:
        window = duration_pb2.Duration()
        window.FromTimedelta(vitals_window)
        fields["vitals_window"] = window
    return fields


class Session:
    """One open `StreamSession`: send batches, read what each one changed.

    `conclusions` is this client's view (code -> Conclusion): the conclusions
    at open, with every change received applied to it, so after each
    `BatchApplied` it equals the session's conclusions at `version`. Changes
    made by another writer reach this view with this stream's next batch (the
    server reports everything since this stream last heard) or on re-opening.

    After a knowledge-base upgrade, `previous_knowledge_base_version` names the
    version the session last reported under and `knowledge_base_changes` what
    differs from that report (added, updated, withdrawn). They are already part
    of `conclusions`, which come from the knowledge base now loaded; they are
    for a caller that kept the earlier conclusions. Both are empty when the
    knowledge base is unchanged (or the session predates such reports).

    One batch at a time: `send` finishes reading the previous batch's events
    before sending. Not thread-safe.
    """

    def __init__(self, stub: pb_grpc.DecisionSupportServiceStub, session_id: str) -> None:
        self._requests: queue.SimpleQueue[pb.StreamSessionRequest | None] = queue.SimpleQueue()
        self._requests.put(pb.StreamSessionRequest(open=pb.OpenSession(session_id=session_id)))
        self._call = stub.StreamSession(self._request_stream())  # no deadline: long-lived
        self._pending: Iterator[ConclusionChange | BatchApplied | BatchRejected] | None = None
        self._closed = False
        try:
            first = next(self._call)
        except grpc.RpcError as error:
            self._end()
            raise error_from_rpc(error) from error
        except StopIteration:
            self._end()
            raise CdsError("UNKNOWN", "the session stream ended before it opened") from None
        if first.WhichOneof("event") != "opened":
            self._end()
            raise CdsError("UNKNOWN", "the session stream did not start with SessionOpened")
        opened = first.opened
        self.session_id: str = opened.session_id
        self.version: int = opened.version
        self.knowledge_base_version: str = opened.knowledge_base_version
        self.previous_knowledge_base_version: str = opened.previous_knowledge_base_version
        self.knowledge_base_changes: list[ConclusionChange] = [
            change_from_proto(change) for change in opened.knowledge_base_changes
        ]
        self.conclusions: dict[str, Conclusion] = {
            c.code: c for c in map(conclusion_from_proto, opened.current)
        }

    def _request_stream(self) -> Iterator[pb.StreamSessionRequest]:
        while (request := self._requests.get()) is not _END:
            yield request

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    def send(
        self,
        facts: Iterable[Mapping[str, Any]] = (),
        retract: Iterable[str] = (),
        *,
        expected_version: int = 0,
    ) -> Iterator[ConclusionChange | BatchApplied | BatchRejected]:
        """Send one batch (retract, then assert, atomically); yield its events as they arrive.

        Each `ConclusionChange`, then one `BatchApplied` or `BatchRejected`.
        `expected_version` > 0 applies the batch only if the session is still
        at that version (otherwise `BatchRejected` with reason VERSION_CONFLICT).
        Facts are checked for shape now (`ValueError`), before anything is sent.
        """
        if self._closed:
            raise ValueError("the session is closed")
        batch = pb.AssertFacts(
            facts=[fact_to_proto(fact, index) for index, fact in enumerate(facts)],
            retract_fact_ids=list(retract),
            expected_version=expected_version,
        )
        self._drain()
        self._requests.put(pb.StreamSessionRequest(assert_facts=batch))
        self._pending = self._events()
        return self._pending

    def apply(
        self,
        facts: Iterable[Mapping[str, Any]] = (),
        retract: Iterable[str] = (),
        *,
        expected_version: int = 0,
    ) -> BatchResult:
        """`send` and wait for the outcome."""
        changes: list[ConclusionChange] = []
        for event in self.send(facts, retract, expected_version=expected_version):
            if isinstance(event, ConclusionChange):
                changes.append(event)
            else:
                return BatchResult(tuple(changes), event)
        raise AssertionError("a batch always ends with applied or rejected")

    def retract(self, fact_ids: Iterable[str], *, expected_version: int = 0) -> BatchResult:
        """Retract facts by id (a `RetractFacts` batch) and wait for the outcome."""
        if self._closed:
            raise ValueError("the session is closed")
        self._drain()
        request = pb.RetractFacts(fact_ids=list(fact_ids), expected_version=expected_version)
        self._requests.put(pb.StreamSessionRequest(retract_facts=request))
        changes: list[ConclusionChange] = []
        for event in self._events():
            if isinstance(event, ConclusionChange):
                changes.append(event)
            else:
                return BatchResult(tuple(changes), event)
        raise AssertionError("a batch always ends with applied or rejected")

    def _drain(self) -> None:
        if self._pending is not None:
            for _ in self._pending:
                pass
            self._pending = None

    def _events(self) -> Iterator[ConclusionChange | BatchApplied | BatchRejected]:
        try:
            for response in self._call:
                event = response.WhichOneof("event")
                if event == "change":
                    change = change_from_proto(response.change)
                    if change.type == "WITHDRAWN":
                        self.conclusions.pop(change.conclusion.code, None)
                    else:
                        self.conclusions[change.conclusion.code] = change.conclusion
                    yield change
                elif event == "applied":
                    self.version = response.applied.version
                    self.knowledge_base_version = response.applied.knowledge_base_version
                    yield BatchApplied(self.version, self.knowledge_base_version)
                    return
                elif event == "rejected":
                    rejected = response.rejected
                    yield BatchRejected(
                        rejected.reason,
                        tuple((v.field, v.description) for v in rejected.violations),
                    )
                    return
                # An event this client does not know yet (a newer server) is skipped.
        except grpc.RpcError as error:
            self._end()
            raise error_from_rpc(error) from error
        self._end()
        raise CdsError("UNKNOWN", "the session stream ended in the middle of a batch")

    def _end(self) -> None:
        """Stop the stream at once and release the thread feeding it requests."""
        if not self._closed:
            self._closed = True
            self._requests.put(_END)
        self._call.cancel()

    def close(self) -> None:
        """End the stream (the session itself stays stored: resume it by id)."""
        if self._closed:
            return
        self._closed = True
        self._requests.put(_END)  # half-close: the server ends the stream once it has read all
        try:
            for _ in self._call:
                pass
        except grpc.RpcError:
            pass
