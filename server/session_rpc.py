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

import asyncio
import contextlib
import contextvars
import functools
import logging
import threading
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Executor
from typing import NoReturn, TypeVar

import grpc

import kb
from cds.v1 import decision_support_pb2 as pb
from kb.engine import EvaluationCancelled
from server import errors, logs
from server.convert import conclusion_to_proto, facts_from_proto
from server.limits import LimitExceeded, Limits
from server.sessions import (
    Batch,
    BatchRejection,
    Change,
    ChangeType,
    Contention,
    Observed,
    SessionManager,
    SessionNotFound,
    TooManySessions,
    TooManyStreams,
    diff,
    tag,
)
from server.store import StoreError
from server.watch import ChangeFeed

log = logging.getLogger(__name__)
T = TypeVar("T")

# How long an accepted session stream may take to send `open`.
OPEN_TIMEOUT_SECONDS = 10.0

_CHANGE_TYPES = {kind: pb.ChangeType.Value(f"CHANGE_TYPE_{kind.value}") for kind in ChangeType}


async def _fail(context: grpc.aio.ServicerContext, what: str, error: Exception) -> NoReturn:
    """End the call with the status for `error`; unexpected failures get a correlation id."""
    if isinstance(error, SessionNotFound):
        await errors.abort(context, errors.session_not_found())
    if isinstance(error, TooManyStreams):
        await errors.abort(context, errors.too_many_streams(error.args[0]))
    if isinstance(error, TooManySessions):
        await errors.abort(context, errors.session_limit(error.args[0]))
    if isinstance(error, Contention):
        await errors.abort(context, errors.session_busy())
    correlation_id = logs.report_failure(what, error)
    if isinstance(error, StoreError):
        await errors.abort(context, errors.store_unavailable(correlation_id))
    await errors.abort(context, errors.engine_failure(correlation_id))


async def _blocking(pool: Executor, function: Callable[[], T]) -> T:
    """`function()` on a `pool` thread, with this call's context (its log
    correlation id). If the call is cancelled meanwhile, the work is still
    waited for, so nothing after it (releasing the session) overtakes it."""
    context = contextvars.copy_context()
    future = asyncio.get_running_loop().run_in_executor(pool, context.run, function)
    try:
        return await asyncio.shield(future)
    except asyncio.CancelledError:
        with contextlib.suppress(BaseException):
            await future
        raise


def _change(change: Change, version: int) -> pb.ConclusionChange:
    return pb.ConclusionChange(
        type=_CHANGE_TYPES[change.type],
        conclusion=conclusion_to_proto(change.conclusion),
        version=version,
    )


def _batch(request: pb.StreamSessionRequest, limits: Limits) -> Batch | None:
    """The request's batch (its facts converted within `limits`: else
    `LimitExceeded`), or None for a message that carries none."""
    action = request.WhichOneof("action")
    if action == "assert_facts":
        message = request.assert_facts
        return Batch(
            facts=tuple(facts_from_proto(message.facts, limits)),
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


async def stream_session(
    sessions: SessionManager,
    pool: Executor,
    request_iterator: AsyncIterator[pb.StreamSessionRequest],
    context: grpc.aio.ServicerContext,
    limits: Limits,
) -> AsyncIterator[pb.StreamSessionResponse]:
    ended = threading.Event()  # polled by the engine between stages, from any thread
    context.add_done_callback(lambda _: ended.set())
    should_stop = ended.is_set
    try:
        sessions.accept()  # counted from now: an unopened stream holds a slot too
    except TooManyStreams as error:
        await _fail(context, "session accept", error)
    opened = False
    try:
        requests = aiter(request_iterator)
        try:  # a caller that never sends `open` is cut off rather than holding a slot
            first = await asyncio.wait_for(anext(requests, None), OPEN_TIMEOUT_SECONDS)
        except TimeoutError:
            await errors.abort(context, errors.open_timeout(OPEN_TIMEOUT_SECONDS))
        if first is None or first.WhichOneof("action") != "open":
            await errors.abort(context, errors.open_required())
        opened = True  # from here `open` owns the count, released or ended on failure
        session_id = first.open.session_id
        try:
            snapshot = await _blocking(
                pool, functools.partial(sessions.open, session_id, should_stop, accepted=True)
            )
        except EvaluationCancelled:
            return
        except Exception as error:
            await _fail(context, "session open", error)
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
        async for request in requests:
            try:
                batch = _batch(request, limits)
            except LimitExceeded as error:  # ends the stream; the session is unchanged
                await errors.abort(context, errors.limit_exceeded(error.violations))
            if batch is None:
                await errors.abort(context, errors.unexpected_message())
            try:
                applied = await _blocking(
                    pool,
                    functools.partial(sessions.apply, session_id, batch, baseline, should_stop),
                )
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
                await _fail(context, "session batch", error)
            # Committed durably before the first event goes out.
            for change in applied.changes:
                yield pb.StreamSessionResponse(change=_change(change, applied.version))
            yield pb.StreamSessionResponse(
                applied=pb.BatchApplied(version=applied.version, knowledge_base_version=kb.VERSION)
            )
            baseline = applied.conclusions
    finally:
        sessions.release(session_id)


async def delete_session(
    sessions: SessionManager,
    pool: Executor,
    request: pb.DeleteSessionRequest,
    context: grpc.aio.ServicerContext,
) -> pb.DeleteSessionResponse:
    try:
        deleted = await _blocking(pool, functools.partial(sessions.delete, request.session_id))
    except Exception as error:
        await _fail(context, "session delete", error)
    if not deleted:
        await errors.abort(context, errors.session_not_found())
    return pb.DeleteSessionResponse()


def _snapshot(observed: Observed) -> pb.WatchSessionResponse:
    return pb.WatchSessionResponse(
        snapshot=pb.SessionOpened(
            session_id=observed.session_id,
            current=[conclusion_to_proto(c) for c in observed.conclusions],
            version=observed.version,
            knowledge_base_version=kb.VERSION,
        )
    )


async def watch_session(
    sessions: SessionManager,
    feed: ChangeFeed,
    pool: Executor,
    request: pb.WatchSessionRequest,
    context: grpc.aio.ServicerContext,
) -> AsyncIterator[pb.WatchSessionResponse]:
    """The session's conclusions now, then each batch any writer commits: its
    changes closed by `applied`, or a fresh snapshot if more than one batch
    was committed since this watcher last read (it fell behind)."""
    session_id = request.session_id
    try:
        sessions.accept()  # a watcher counts against the stream limit
    except TooManyStreams as error:
        await _fail(context, "session watch", error)
    try:
        with feed.subscribe(session_id) as changed:
            try:
                seen = await _blocking(pool, functools.partial(sessions.observe, session_id))
            except Exception as error:
                await _fail(context, "session watch", error)
            if seen is None:
                await errors.abort(context, errors.session_not_found())
            yield _snapshot(seen)
            while True:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(changed.wait(), feed.poll_seconds)
                changed.clear()
                try:
                    version = await _blocking(
                        pool, functools.partial(sessions.version_of, session_id)
                    )
                    if version == seen.version:
                        continue
                    latest = await _blocking(pool, functools.partial(sessions.observe, session_id))
                except Exception as error:
                    await _fail(context, "session watch", error)
                if latest is None:
                    await errors.abort(context, errors.session_not_found())
                if latest.version != seen.version + 1:
                    yield _snapshot(latest)
                else:
                    for change in diff(seen.conclusions, latest.conclusions):
                        yield pb.WatchSessionResponse(change=_change(change, latest.version))
                    yield pb.WatchSessionResponse(
                        applied=pb.BatchApplied(
                            version=latest.version, knowledge_base_version=kb.VERSION
                        )
                    )
                seen = latest
    finally:
        sessions.abandon()
