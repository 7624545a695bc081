"""The one place domain errors become gRPC statuses with rich details.

Every error carries a `google.rpc.ErrorInfo` (domain `cds.v1`, a machine
reason); bad input also carries a `google.rpc.BadRequest` with one field
violation per problem. Messages name fields, fact ids and correlation ids,
never fact values.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NoReturn

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from cds.v1 import decision_support_pb2 as pb
from kb.facts import REASON_LIMIT_EXCEEDED, InvalidFacts, Violation

DOMAIN = "cds.v1"
# Rich details travel in a trailer; gRPC clients refuse trailers over 16 KiB by
# default (and may warn over 8 KiB), so long violation lists are cut to fit.
DETAILS_BUDGET_BYTES = 6 * 1024
# A BatchRejected is a message (4 MiB limit), not a trailer: room for thousands.
BATCH_REJECTED_BUDGET_BYTES = 256 * 1024
REASON_ENGINE_FAILURE = "ENGINE_FAILURE"
REASON_NOT_IMPLEMENTED = "NOT_IMPLEMENTED"
REASON_UNKNOWN_CODE = "UNKNOWN_CODE"
REASON_SESSION_NOT_FOUND = "SESSION_NOT_FOUND"
REASON_VERSION_CONFLICT = "VERSION_CONFLICT"
REASON_OPEN_REQUIRED = "OPEN_REQUIRED"
REASON_UNEXPECTED_MESSAGE = "UNEXPECTED_MESSAGE"
REASON_SESSION_STREAMS_EXHAUSTED = "SESSION_STREAMS_EXHAUSTED"
REASON_SESSION_BUSY = "SESSION_BUSY"
REASON_SESSION_LIMIT = "SESSION_LIMIT"
REASON_STORE_UNAVAILABLE = "STORE_UNAVAILABLE"


def _status(
    code: int, message: str, reason: str, violations: Sequence[Violation] = ()
) -> grpc.Status:
    details = []
    if violations:
        bad_request = _bad_request(violations)
        packed = any_pb2.Any()
        packed.Pack(bad_request)
        details.append(packed)
    info = any_pb2.Any()
    info.Pack(error_details_pb2.ErrorInfo(reason=reason, domain=DOMAIN))
    details.append(info)
    return rpc_status.to_status(status_pb2.Status(code=code, message=message, details=details))


def _bad_request(
    violations: Sequence[Violation], budget: int = DETAILS_BUDGET_BYTES
) -> error_details_pb2.BadRequest:
    """The violations in order, as many as fit the budget, then a count of the rest."""
    bad_request = error_details_pb2.BadRequest()
    for index, violation in enumerate(violations):
        entry = error_details_pb2.BadRequest.FieldViolation(
            field=violation.field, description=violation.description
        )
        if bad_request.ByteSize() + entry.ByteSize() > budget:
            bad_request.field_violations.add(
                field="facts",
                description=f"{len(violations) - index} further violations not listed",
            )
            break
        bad_request.field_violations.append(entry)
    return bad_request


async def abort(context: grpc.aio.ServicerContext, status: grpc.Status) -> NoReturn:
    """End the call with `status` (typed NoReturn: abort_with_status always raises)."""
    await context.abort_with_status(status)
    raise AssertionError("abort_with_status returned")


def invalid_facts(error: InvalidFacts) -> grpc.Status:
    count = len(error.violations)
    noun = "violation" if count == 1 else "violations"
    return _status(
        code_pb2.INVALID_ARGUMENT,
        f"request rejected, nothing evaluated: {count} {noun} ({error.reason})",
        error.reason,
        error.violations,
    )


def engine_failure(correlation_id: str) -> grpc.Status:
    return _status(
        code_pb2.INTERNAL,
        f"the rules engine failed to complete this evaluation (correlation id {correlation_id})",
        REASON_ENGINE_FAILURE,
    )


def not_implemented(method: str) -> grpc.Status:
    return _status(
        code_pb2.UNIMPLEMENTED, f"{method} is not implemented yet", REASON_NOT_IMPLEMENTED
    )


def batch_rejected(reason: str, violations: Sequence[Violation]) -> pb.BatchRejected:
    """A rejected session batch: the stream stays open, so this is a message, not a status."""
    bad_request = _bad_request(violations, BATCH_REJECTED_BUDGET_BYTES)
    return pb.BatchRejected(reason=reason, violations=bad_request.field_violations)


def session_not_found() -> grpc.Status:
    # The same answer whether the id never existed, was deleted or expired.
    return _status(code_pb2.NOT_FOUND, "session not found", REASON_SESSION_NOT_FOUND)


def open_required() -> grpc.Status:
    return _status(
        code_pb2.INVALID_ARGUMENT,
        "the first message of a session stream must be 'open'",
        REASON_OPEN_REQUIRED,
    )


def open_timeout(seconds: float) -> grpc.Status:
    return _status(
        code_pb2.DEADLINE_EXCEEDED,
        f"a session stream must send 'open' within {seconds:g} s of starting",
        REASON_OPEN_REQUIRED,
    )


def unexpected_message() -> grpc.Status:
    return _status(
        code_pb2.INVALID_ARGUMENT,
        "after 'open', a session stream accepts only 'assert_facts' and 'retract_facts'",
        REASON_UNEXPECTED_MESSAGE,
    )


def too_many_streams(limit: int) -> grpc.Status:
    return _status(
        code_pb2.RESOURCE_EXHAUSTED,
        f"this server already serves {limit} session streams; retry later",
        REASON_SESSION_STREAMS_EXHAUSTED,
    )


def session_limit(limit: int) -> grpc.Status:
    # Only a new session is refused: resuming one by id never is.
    return _status(
        code_pb2.RESOURCE_EXHAUSTED,
        f"no new session: the session store already holds {limit} live sessions, the most"
        " this service allows; resume an existing session, delete one (DeleteSession), or"
        " retry once idle sessions expire",
        REASON_SESSION_LIMIT,
    )


def session_busy() -> grpc.Status:
    return _status(
        code_pb2.ABORTED,
        "other writers kept changing this session; the batch was not applied, retry it",
        REASON_SESSION_BUSY,
    )


def store_unavailable(correlation_id: str) -> grpc.Status:
    return _status(
        code_pb2.UNAVAILABLE,
        f"the session store failed (correlation id {correlation_id}); a batch in flight was not"
        " acknowledged: retry it with expected_version",
        REASON_STORE_UNAVAILABLE,
    )


def unknown_code() -> grpc.Status:
    return _status(
        code_pb2.INVALID_ARGUMENT,
        "code is not a conclusion code of this knowledge base (see GetKnowledgeBase)",
        REASON_UNKNOWN_CODE,
        [Violation("code", "not a conclusion code of this knowledge base")],
    )


# -- transport: authentication, malformed and oversized requests, unexpected failures --

REASON_UNAUTHENTICATED = "UNAUTHENTICATED"
REASON_MALFORMED_REQUEST = "MALFORMED_REQUEST"
REASON_INTERNAL = "INTERNAL"


def unauthenticated() -> grpc.Status:
    # Deliberately the same answer for a missing, malformed or unknown token.
    return _status(
        code_pb2.UNAUTHENTICATED,
        "a valid bearer token is required (metadata 'authorization: Bearer <token>')",
        REASON_UNAUTHENTICATED,
    )


REASON_SHUTTING_DOWN = "SHUTTING_DOWN"
REASON_OVERLOADED = "OVERLOADED"


def overloaded() -> grpc.Status:
    return _status(
        code_pb2.RESOURCE_EXHAUSTED,
        "this server is serving as many calls as it can; retry later",
        REASON_OVERLOADED,
    )


def shutting_down() -> grpc.Status:
    return _status(
        code_pb2.UNAVAILABLE,
        "this server is shutting down; retry (another replica, or this address later)",
        REASON_SHUTTING_DOWN,
    )


def malformed_request() -> grpc.Status:
    return _status(
        code_pb2.INVALID_ARGUMENT,
        "the request is not a well-formed message of this method (undecodable protobuf)",
        REASON_MALFORMED_REQUEST,
    )


def limit_exceeded(violations: Sequence[Violation]) -> grpc.Status:
    """A request past a configured size limit (strings, fields, lists, facts)."""
    count = len(violations)
    noun = "limit" if count == 1 else "limits"
    return _status(
        code_pb2.INVALID_ARGUMENT,
        f"request rejected, nothing evaluated: {count} {noun} exceeded (LIMIT_EXCEEDED)",
        REASON_LIMIT_EXCEEDED,
        violations,
    )


def internal_error(correlation_id: str) -> grpc.Status:
    return _status(
        code_pb2.INTERNAL,
        f"the server failed to complete this call (correlation id {correlation_id})",
        REASON_INTERNAL,
    )
