"""The one place domain errors become gRPC statuses with rich details.

Every error carries a `google.rpc.ErrorInfo` (domain `cds.v1`, a machine
reason); bad input also carries a `google.rpc.BadRequest` with one field
violation per problem. Messages name fields, fact ids and correlation ids,
never fact values.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from kb.facts import InvalidFacts, Violation

DOMAIN = "cds.v1"
# Rich details travel in a trailer; gRPC clients refuse trailers over 16 KiB by
# default (and may warn over 8 KiB), so long violation lists are cut to fit.
DETAILS_BUDGET_BYTES = 6 * 1024
REASON_ENGINE_FAILURE = "ENGINE_FAILURE"
REASON_NOT_IMPLEMENTED = "NOT_IMPLEMENTED"


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


def _bad_request(violations: Sequence[Violation]) -> error_details_pb2.BadRequest:
    """The violations in order, as many as fit the budget, then a count of the rest."""
    bad_request = error_details_pb2.BadRequest()
    for index, violation in enumerate(violations):
        entry = error_details_pb2.BadRequest.FieldViolation(
            field=violation.field, description=violation.description
        )
        if bad_request.ByteSize() + entry.ByteSize() > DETAILS_BUDGET_BYTES:
            bad_request.field_violations.add(
                field="facts",
                description=f"{len(violations) - index} further violations not listed",
            )
            break
        bad_request.field_violations.append(entry)
    return bad_request


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
