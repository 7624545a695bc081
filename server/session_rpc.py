"""`StreamSession` and `DeleteSession` over gRPC: protocol, conversion and statuses.

The session logic lives in `server.sessions.SessionManager`; this module reads
the stream (the first message must be `open`), turns batches into
`ConclusionChange` events followed by `BatchApplied` or `BatchRejected`, and
maps failures to rich statuses. A rejected batch keeps the stream open; a
failure of the session itself (not found, store or engine failure) ends it.
`SessionOpened` carries, after a knowledge-base upgrade, what changed since the
session last reported (`knowledge_base_changes`, as `ConclusionChange`s at the
session's version); the stream's baseline is `current` all the same.

Session streams are long-lived: the server sets no deadline of its own and
relies on HTTP/2 keepalive (see `server.app`) to notice dead peers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from typing import Any, NoReturn

import grpc

import kb
from cds.v1 import decision_support_pb2 as pb
from kb.engine import EvaluationCancelled
from server import errors, logs
from server.convert import conclusion_to_proto, facts_from_proto
from server.sessions import (
    Batch,
    BatchRejection,
    Change,
    ChangeType,
    Contention,
    SessionManager,
    SessionNotFound,
    TooManySessions,
    TooManyStreams,
    tag,
)
from server.store import StoreError

log = logging.getLogger(__name__)

# How long an accepted session stream may take to send `open`.
OPEN_TIMEOUT_SECONDS = 10.0

_CHANGE_TYPES = {kind: pb.ChangeType.Value(f"CHANGE_TYPE_{kind.value}") for kind in ChangeType}


def _fail(context: grpc.ServicerContext, what: str, error: Exception) -> NoReturn:
    """End the call with the status for `error`; unexpected failures get a correlation id."""
    if isinstance(error, SessionNotFound):
        errors.abort(context, errors.session_not_found())
    if isinstance(error, TooManyStreams):
        errors.abort(context, errors.too_many_streams(error.args[0]))
    if isinstance(error, TooManySessions):
        errors.abort(context, errors.session_limit(error.args[0]))
    if isinstance(error, Contention):
        errors.abort(context, errors.session_busy())
    correlation_id = logs.report_failure(what, error)
    if isinstance(error, StoreError):
        errors.abort(context, errors.store_unavailable(correlation_id))
    errors.abort(context, errors.engine_failure(correlation_id))


def _change(change: Change, version: int) -> pb.ConclusionChange:
    return pb.ConclusionChange(
        type=_CHANGE_TYPES[change.type],
        conclusion=conclusion_to_proto(change.conclusion),
        version=version,
    )


def _batch(request: pb.StreamSessionRequest) -> Batch | None:
    action = request.WhichOneof("action")
    if action == "assert_facts":
        message = request.assert_facts
        return Batch(
            facts=tuple(facts_from_proto(message.facts)),
            retract=tuple(message.retract_fact_ids),
            expected_version=message.expected_version,
            retract_field="retract_fact_ids",
        )
    if action == "retract_facts":
        message = request.retract_facts
        return Batch(
            retract=tuple(message.fact_ids),
            expected_version=message.expected_version,
            retract_field="fact_ids",
        )
    return None


def stream_session(
    sessions: SessionManager,
    request_iterator: Iterator[pb.StreamSessionRequest],
    context: grpc.ServicerContext,
) -> Iterator[pb.StreamSessionResponse]:
    def should_stop() -> bool:
        return not context.is_active()

    try:
        sessions.accept()  # counted from now: an unopened stream holds a thread too
    except TooManyStreams as error:
        _fail(context, "session accept", error)
    opened = False
    try:
        requests = iter(request_iterator)
        # A caller that never sends `open` is cut off rather than holding a thread.
        cut_off = threading.Timer(OPEN_TIMEOUT_SECONDS, context.cancel)
        cut_off.daemon = True
        cut_off.start()
        try:
            first = next(requests, None)
        except grpc.RpcError:
            return  # the client went away (or was cut off) before opening
        finally:
            cut_off.cancel()
        if first is None or first.WhichOneof("action") != "open":
            errors.abort(context, errors.open_required())
        opened = True  # from here `open` owns the count, released or ended on failure
        try:
            snapshot = sessions.open(first.open.session_id, should_stop, accepted=True)
        except EvaluationCancelled:
            return
        except Exception as error:
            _fail(context, "session open", error)
    finally:
        if not opened:
            sessions.abandon()
    session_id = snapshot.session_id
    try:
        yield pb.StreamSessionResponse(
            opened=pb.SessionOpened(
                session_id=session_id,
                current=[conclusion_to_proto(c) for c in snapshot.conclusions],
                version=snapshot.version,
                knowledge_base_version=kb.VERSION,
                previous_knowledge_base_version=snapshot.previous_knowledge_base_version,
                knowledge_base_changes=[
                    _change(change, snapshot.version) for change in snapshot.knowledge_base_changes
                ],
            )
        )
        baseline = snapshot.conclusions  # what this stream was last told
        for request in requests:
            batch = _batch(request)
            if batch is None:
                errors.abort(context, errors.unexpected_message())
            try:
                applied = sessions.apply(session_id, batch, baseline, should_stop)
            except BatchRejection as rejection:
                log.info(
                    "session %s batch rejected: %s, %d violation(s)",
                    tag(session_id),
                    rejection.reason,
                    len(rejection.violations),
                )
                yield pb.StreamSessionResponse(
                    rejected=errors.batch_rejected(rejection.reason, rejection.violations)
                )
                continue
            except EvaluationCancelled:
                return
            except Exception as error:
                _fail(context, "session batch", error)
            # Committed durably before the first event goes out.
            for change in applied.changes:
                yield pb.StreamSessionResponse(change=_change(change, applied.version))
            yield pb.StreamSessionResponse(
                applied=pb.BatchApplied(version=applied.version, knowledge_base_version=kb.VERSION)
            )
            baseline = applied.conclusions
    except grpc.RpcError:
        return  # the client cancelled or the connection broke while we waited for it
    finally:
        sessions.release(session_id)


def delete_session(
    sessions: SessionManager, request: pb.DeleteSessionRequest, context: Any
) -> pb.DeleteSessionResponse:
    try:
        deleted = sessions.delete(request.session_id)
    except Exception as error:
        _fail(context, "session delete", error)
    if not deleted:
        errors.abort(context, errors.session_not_found())
    return pb.DeleteSessionResponse()
