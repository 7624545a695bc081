"""Request limits and malformed messages, checked before a request reaches the service.

`guarded` wraps every method's handler:

- Its request deserializer never raises. gRPC answers a message that does not
  decode (corrupt bytes, invalid UTF-8 in a string, nesting past protobuf's
  depth limit) with `INTERNAL` "Exception deserializing request!" and logs a
  traceback; the guard answers `INVALID_ARGUMENT` with reason
  `MALFORMED_REQUEST` instead (the caller's fault, not the server's).
- Before the service sees a request carrying facts, it checks their count:
  converting a 4 MiB message of a million empty facts into Python objects
  costs seconds of CPU under the GIL, so `Evaluate` and `Explain` are refused
  on the count alone, and a session batch with too many facts is cut to
  `max_facts + 1` facts before the service reads it — which still gets the
  batch its usual `BatchRejected` (LIMIT_EXCEEDED), as that rejection depends
  on the count alone.

The structural limits on the facts' values (`Limits` below) are checked in
the walk that converts them (`server.convert.facts_from_proto`), which stops
at the first breach, so nothing past a limit is ever converted in full. A
request past one is rejected whole with `INVALID_ARGUMENT`, reason
`LIMIT_EXCEEDED`, and a `BadRequest` naming each field path (never the
value; `fact_violations` finds them). On a session stream this ends the
stream (the session is unchanged; re-open it to continue).

Message size itself is gRPC's `grpc.max_receive_message_length` (see
`server.app`): past it, gRPC answers `RESOURCE_EXHAUSTED` before any of this.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import struct_pb2

from cds.v1 import decision_support_pb2 as pb
from kb.facts import MAX_FACTS_PER_REQUEST, Violation
from server import errors
from server.logs import HANDLER_KINDS

DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_STRING_LENGTH = 1024
DEFAULT_MAX_FIELDS_PER_FACT = 64
DEFAULT_MAX_LIST_ITEMS = 64
# The vocabulary's deepest value is a list of strings in a field
# (`fields.components[0]`): anything nested deeper can never be valid.
DEFAULT_MAX_DEPTH = 4
# A walk stops after this many violations: enough to show what is wrong.
MAX_VIOLATIONS = 50


# Entries of one FHIR Bundle (EvaluateFhir, TranslateFhir): a patient's record
# for this decision (vitals, conditions, one assessment) is tens of entries.
MAX_BUNDLE_ENTRIES = 1000


@dataclass(frozen=True)
class Limits:
    """Structural limits on the facts of a request or batch. Strings count
    characters (fact ids, types, field names, string values); `max_depth` counts nested
    values below a fact's fields; `max_values` bounds the values of all facts
    of one request or batch together (default: max_facts x max_fields_per_fact).
    """

    max_facts: int = MAX_FACTS_PER_REQUEST
    max_string_length: int = DEFAULT_MAX_STRING_LENGTH
    max_fields_per_fact: int = DEFAULT_MAX_FIELDS_PER_FACT
    max_list_items: int = DEFAULT_MAX_LIST_ITEMS
    max_depth: int = DEFAULT_MAX_DEPTH
    max_values: int | None = None

    def __post_init__(self) -> None:
        for name in (
            "max_facts",
            "max_string_length",
            "max_fields_per_fact",
            "max_list_items",
            "max_depth",
        ):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be at least 1")
        if self.max_values is not None and self.max_values < 1:
            raise ValueError("max_values must be at least 1")

    def values_budget(self) -> int:
        if self.max_values is not None:
            return self.max_values
        return self.max_facts * self.max_fields_per_fact


DEFAULT_LIMITS = Limits()


class _Walk:
    """Collects limit violations over the facts of one request."""

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.violations: list[Violation] = []
        self.values = 0

    @property
    def done(self) -> bool:
        return len(self.violations) >= MAX_VIOLATIONS or self.values > self.limits.values_budget()

    def string(self, path: str, text: str, what: str = "") -> None:
        limit = self.limits.max_string_length
        if len(text) > limit:
            self.violations.append(Violation(path, f"{what}longer than {limit} characters"))

    def facts(self, facts: Sequence[pb.Fact], prefix: str = "facts") -> None:
        for index, fact in enumerate(facts):
            if self.done:
                break
            path = f"{prefix}[{index}]"
            self.string(f"{path}.id", fact.id)
            self.string(f"{path}.type", fact.type)
            self.struct(f"{path}.fields", fact.fields, depth=1)
        if self.values > self.limits.values_budget():
            self.violations.append(
                Violation(
                    prefix,
                    f"more than {self.limits.values_budget()} field values in all facts together",
                )
            )

    def struct(self, path: str, struct: struct_pb2.Struct, depth: int) -> None:
        fields = struct.fields
        limit = self.limits.max_fields_per_fact
        if len(fields) > limit:
            self.violations.append(Violation(path, f"more than {limit} fields"))
            return
        for key, value in fields.items():
            if self.done:
                return
            if len(key) > self.limits.max_string_length:
                # The name itself is not repeated: it may be anything.
                self.string(path, key, "a field name is ")
                continue
            self.value(f"{path}.{key}", value, depth)

    def value(self, path: str, value: struct_pb2.Value, depth: int) -> None:
        self.values += 1
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            self.string(path, value.string_value)
            return
        if kind not in ("struct_value", "list_value"):
            return
        if depth >= self.limits.max_depth:
            self.violations.append(
                Violation(path, f"nested deeper than {self.limits.max_depth} levels")
            )
            return
        if kind == "struct_value":
            self.struct(path, value.struct_value, depth + 1)
            return
        items = value.list_value.values
        limit = self.limits.max_list_items
        if len(items) > limit:
            self.violations.append(Violation(path, f"more than {limit} items"))
            return
        for index, item in enumerate(items):
            if self.done:
                return
            self.value(f"{path}[{index}]", item, depth + 1)


def fact_violations(facts: Sequence[pb.Fact], limits: Limits) -> list[Violation]:
    """The limits the values of `facts` break (paths relative to them)."""
    walk = _Walk(limits)
    walk.facts(facts)
    return walk.violations


def request_violations(request: Any, limits: Limits) -> list[Violation]:
    """The limits a decoded request breaks: its fact count, else its facts'
    values (paths as the service names them)."""
    if isinstance(request, pb.EvaluateRequest | pb.ExplainRequest):
        if len(request.facts) > limits.max_facts:
            return [Violation("facts", f"at most {limits.max_facts} facts per request")]
        return fact_violations(request.facts, limits)
    if (
        isinstance(request, pb.StreamSessionRequest)
        and request.WhichOneof("action") == "assert_facts"
    ):
        # Paths relative to the batch, as BatchRejected's.
        return fact_violations(request.assert_facts.facts, limits)
    # Other strings (session ids, retracted ids, codes) are only looked up, never
    # stored or converted: an unknown one gets its usual answer whatever its length.
    return []


class LimitExceeded(Exception):
    """Facts past a structural limit; `violations` name each one by its path."""

    def __init__(self, violations: Sequence[Violation]) -> None:
        self.violations = tuple(violations)
        super().__init__(f"{len(self.violations)} limit violation(s)")


def _cut_batch(request: Any, max_facts: int) -> Any:
    """A session batch over the fact limit, cut to `max_facts + 1` facts.

    The service rejects any batch over the limit on its count alone, so the
    answer is unchanged; only the cost of converting the rest is saved.
    """
    if (
        isinstance(request, pb.StreamSessionRequest)
        and request.WhichOneof("action") == "assert_facts"
        and len(request.assert_facts.facts) > max_facts + 1
    ):
        del request.assert_facts.facts[max_facts + 1 :]
    return request


@dataclass(frozen=True)
class _Undecodable:
    """Stands in for a request message that did not decode."""


_UNDECODABLE = _Undecodable()


def _safe(deserializer: Callable[[bytes], Any]) -> Callable[[bytes], Any]:
    def deserialize(data: bytes) -> Any:
        try:
            return deserializer(data)
        except Exception:  # DecodeError and anything else a parser may raise
            return _UNDECODABLE

    return deserialize


async def _admitted(request: Any, context: grpc.aio.ServicerContext, limits: Limits) -> Any:
    """The request to hand to the service, or abort the call. The facts'
    values are checked where they are converted (`server.convert`), in the
    same walk; here only what needs no walk: the count."""
    if request is _UNDECODABLE:
        await errors.abort(context, errors.malformed_request())
    if isinstance(request, pb.EvaluateRequest | pb.ExplainRequest):
        if len(request.facts) > limits.max_facts:
            await errors.abort(context, errors.limit_exceeded(request_violations(request, limits)))
        return request
    return _cut_batch(request, limits.max_facts)


async def _each_admitted(
    requests: AsyncIterator[Any], context: grpc.aio.ServicerContext, limits: Limits
) -> AsyncIterator[Any]:
    async for request in requests:
        yield await _admitted(request, context, limits)


def guarded(handler: grpc.RpcMethodHandler, limits: Limits) -> grpc.RpcMethodHandler:
    """`handler` with the guard: a deserializer that never raises, and every
    request's fact count checked against `limits` before the service sees it
    (their values are checked as they are converted). Applied once per method
    when the server is built (`server.handlers`)."""
    if handler.request_deserializer is None:
        return handler
    kind = next(k for k in HANDLER_KINDS if getattr(handler, k) is not None)
    behavior = getattr(handler, kind)
    if kind.startswith("unary"):

        async def admit(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await _admitted(request, context, limits)
    else:

        async def admit(requests: Any, context: grpc.aio.ServicerContext) -> Any:
            return _each_admitted(requests, context, limits)

    if inspect.isasyncgenfunction(behavior):

        async def streaming(request: Any, context: grpc.aio.ServicerContext) -> Any:
            async for response in behavior(await admit(request, context), context):
                yield response

        wrapped: Callable[..., Any] = streaming
    else:

        async def answering(request: Any, context: grpc.aio.ServicerContext) -> Any:
            return await behavior(await admit(request, context), context)

        wrapped = answering
    return handler._replace(
        request_deserializer=_safe(handler.request_deserializer), **{kind: wrapped}
    )
