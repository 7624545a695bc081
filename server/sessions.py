"""Long-lived patient sessions: batches of facts in, changes of conclusions out.

Facts are the source of truth. A batch is checked against the session's
stored facts (retracted ids must exist; the whole resulting fact set must
satisfy the vocabulary, cardinality rules included), every conclusion is
derived again from the resulting facts on the engine thread, the batch is
committed durably, and only then is the difference reported: conclusions
added, updated (same code, other detail or provenance), withdrawn. No
durable_rules state outlives one evaluation, so a session costs the engine
nothing between batches, and conclusions after a restart come from the
knowledge base then loaded.

Knowledge-base upgrades. With every committed batch (and at creation) the
store also keeps what the session reported: its conclusions and the
knowledge-base version that derived them. `open` always derives the
conclusions again with the loaded knowledge base, so a withdrawn code is never
served; when the stored snapshot came from another knowledge-base version, it
also reports the differences from that snapshot to the current conclusions
(`diff`, as for a batch: identity is the code) and stores the refreshed
snapshot, conditionally on the session's version and without changing it (the
version counts batches). A session stored before snapshots existed reports no
differences the first time; it has one from then on.

Concurrency. Within a process, batches on one session run one at a time (a
lock per session id). Across processes the store's version check decides: a
batch computed on a version that moved on is recomputed on the new one, or
rejected with VERSION_CONFLICT when the client made it conditional.

Two streams on one session. Each stream reports changes relative to what *it*
was last told (its baseline: the conclusions in `SessionOpened`, then after
each of its own `BatchApplied`). So if stream A applied a batch since stream
B last heard, B's next batch reports everything that changed since B's
baseline, A's effects included, and B's `BatchApplied.version` jumps by more
than one. A client that applies every change it receives therefore always
holds exactly the conclusions of the version it was last acknowledged. A
stream is never pushed another writer's changes unasked: re-open to see them.

Session limit. With `max_sessions`, opening a *new* session fails with
`TooManySessions` once the store holds that many live sessions (last active
within the TTL: expired ones awaiting the sweeper do not count). The store
counts and inserts atomically (`SessionStore.create`), so the limit holds
across worker processes and replicas sharing the database. Resuming a session
by id is never refused, and deleting one (or its expiry) makes room at once.

Privacy: nothing here logs a fact, a field value, a conclusion or a full
session id (ids are bearer secrets; logs carry a short hash of them).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import re
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import kb
from kb.engine import EngineFailure, EvaluationResult
from kb.facts import (
    REASON_FACT_INVALID,
    REASON_LIMIT_EXCEEDED,
    Fact,
    FactIn,
    InvalidFacts,
    Violation,
    validate_facts,
)
from kb.model import Certainty, Conclusion, Kind, Provenance, Urgency
from server.engine import EngineWorker
from server.errors import REASON_VERSION_CONFLICT
from server.logs import RateLimitedLog
from server.metrics import session_streams_changed
from server.store import (
    SessionLimitReached,
    SessionMissing,
    SessionStore,
    StaleVersion,
    StoredConclusions,
    StoredFact,
    StoredSession,
    StoreError,
)

log = logging.getLogger(__name__)

SESSION_ID_BYTES = 24  # secrets.token_urlsafe: 192 random bits, 32 characters
SESSION_ID_PATTERN = re.compile(r"[A-Za-z0-9_-]{22,128}")  # used with fullmatch
DEFAULT_TTL_SECONDS = 30 * 24 * 3600.0
MAX_COMMIT_ATTEMPTS = 12
# After losing a race to another process, wait a random while (doubling, capped)
# so two writers do not keep colliding in lockstep.
RETRY_BASE_SECONDS = 0.001
RETRY_CAP_SECONDS = 0.05
_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd]?)")
_UNIT_SECONDS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}
_FACT_INDEX = re.compile(r"facts\[(\d+)\]")


def parse_duration(text: str) -> float:
    """Seconds from "90s", "15m", "12h", "30d" or a plain number of seconds."""
    match = _DURATION.fullmatch(text.strip().lower())
    if match is None:
        raise ValueError("expected a duration such as 90s, 15m, 12h, 30d or seconds")
    seconds = float(match[1]) * _UNIT_SECONDS[match[2]]
    if not seconds > 0:
        raise ValueError("the duration must be positive")
    return seconds


def tag(session_id: str) -> str:
    """A short, stable, non-reversible label for logs: session ids are secrets."""
    return hashlib.sha256(session_id.encode()).hexdigest()[:10]


class SessionNotFound(Exception):
    """No such session (never existed, deleted or expired: deliberately not said which)."""


class TooManyStreams(Exception):
    """This process already serves as many session streams as it allows."""


class TooManySessions(Exception):
    """A new session was refused: the store holds `max_sessions` live sessions."""


class Contention(Exception):
    """Other writers kept committing first; the batch was not applied (retry it)."""


class BatchRejection(Exception):
    """A bad batch: nothing of it was applied. Descriptions never hold fact values."""

    def __init__(self, reason: str, violations: Sequence[Violation]) -> None:
        self.reason = reason
        self.violations = tuple(violations)
        super().__init__(f"{reason}: {len(self.violations)} violation(s)")


class ChangeType(StrEnum):
    ADDED = "ADDED"
    UPDATED = "UPDATED"
    WITHDRAWN = "WITHDRAWN"


@dataclass(frozen=True)
class Change:
    type: ChangeType
    conclusion: Conclusion  # for WITHDRAWN: the conclusion as the stream last saw it


@dataclass(frozen=True)
class Batch:
    """One batch as received: retract first, then assert, all or nothing.

    `retract_field` is the name of the id list in the request message
    (`retract_fact_ids` in AssertFacts, `fact_ids` in RetractFacts), for paths.
    """

    facts: tuple[FactIn, ...] = ()
    retract: tuple[str, ...] = ()
    expected_version: int = 0
    retract_field: str = "retract_fact_ids"


@dataclass(frozen=True)
class Snapshot:
    """A session at open: its conclusions derived now, at `version`.

    `previous_knowledge_base_version` is set when the session last reported
    under another knowledge base; `knowledge_base_changes` are then the
    differences from that report to `conclusions`.
    """

    session_id: str
    version: int
    conclusions: tuple[Conclusion, ...]
    previous_knowledge_base_version: str = ""
    knowledge_base_changes: tuple[Change, ...] = ()


@dataclass(frozen=True)
class Observed:
    """A session as a watcher sees it: its version and conclusions now."""

    session_id: str
    version: int
    conclusions: tuple[Conclusion, ...]


@dataclass(frozen=True)
class Applied:
    version: int
    conclusions: tuple[Conclusion, ...]
    changes: tuple[Change, ...]


def diff(before: Sequence[Conclusion], after: Sequence[Conclusion]) -> list[Change]:
    """Added, then updated (in the new order), then withdrawn (in the old order)."""
    old = {conclusion.code: conclusion for conclusion in before}
    new = {conclusion.code: conclusion for conclusion in after}
    added = [Change(ChangeType.ADDED, c) for c in after if c.code not in old]
    updated = [Change(ChangeType.UPDATED, c) for c in after if c.code in old and old[c.code] != c]
    withdrawn = [Change(ChangeType.WITHDRAWN, c) for c in before if c.code not in new]
    return [*added, *updated, *withdrawn]


def conclusions_to_json(conclusions: Sequence[Conclusion]) -> str:
    """The conclusions as the JSON document the store keeps (see `conclusions_from_json`)."""
    return json.dumps(
        [
            {
                "code": c.code,
                "kind": c.kind.value,
                "urgency": c.urgency.value,
                "title": c.title,
                "detail": c.detail,
                "provenance": {
                    "rule_id": c.provenance.rule_id,
                    "ruleset": c.provenance.ruleset,
                    "fact_ids": list(c.provenance.fact_ids),
                    "derived_from": list(c.provenance.derived_from),
                    "citation_ids": list(c.provenance.citation_ids),
                    "evidence_note": c.provenance.evidence_note,
                    "certainty": c.provenance.certainty.value,
                },
            }
            for c in conclusions
        ],
        separators=(",", ":"),
        ensure_ascii=False,
    )


def conclusions_from_json(document: str) -> tuple[Conclusion, ...]:
    """Rebuild conclusions from `conclusions_to_json`; `ValueError` if they cannot be.

    A kind, urgency or certainty the loaded model no longer has makes the
    document unreadable as a whole. The message never quotes the document.
    """

    def text(value: Any) -> str:
        if not isinstance(value, str):
            raise TypeError("expected a string")
        return value

    def texts(value: Any) -> tuple[str, ...]:
        if not isinstance(value, list):
            raise TypeError("expected a list")
        return tuple(map(text, value))

    try:
        items = json.loads(document)
        if not isinstance(items, list):
            raise TypeError("expected a list")
        conclusions = []
        for item in items:
            provenance = item["provenance"]
            conclusions.append(
                Conclusion(
                    code=text(item["code"]),
                    kind=Kind(text(item["kind"])),
                    urgency=Urgency(text(item["urgency"])),
                    title=text(item["title"]),
                    detail=text(item["detail"]),
                    provenance=Provenance(
                        rule_id=text(provenance["rule_id"]),
                        ruleset=text(provenance["ruleset"]),
                        fact_ids=texts(provenance["fact_ids"]),
                        derived_from=texts(provenance["derived_from"]),
                        citation_ids=texts(provenance["citation_ids"]),
                        evidence_note=text(provenance["evidence_note"]),
                        certainty=Certainty(text(provenance["certainty"])),
                    ),
                )
            )
    except (KeyError, TypeError, ValueError) as error:
        raise ValueError(f"unreadable stored conclusions ({type(error).__name__})") from None
    return tuple(conclusions)


def _reported(conclusions: Sequence[Conclusion]) -> StoredConclusions:
    """What the session reports now, to store: derived with the loaded knowledge base."""
    return StoredConclusions(kb.VERSION, conclusions_to_json(conclusions))


def _stored(fact: Fact) -> StoredFact:
    return StoredFact(fact.id, fact.type, fact.value.model_dump(mode="json", exclude_none=True))


def _fact_in(fact: StoredFact) -> FactIn:
    return FactIn(fact.id, fact.type, dict(fact.fields))


class _Registry:
    """Per-process bookkeeping: a lock per session id, which sessions are
    streaming, and streams accepted that have not opened a session yet (they
    count against the limit too: each holds a call slot)."""

    def __init__(self, max_streams: int) -> None:
        self._mutex = threading.Lock()
        self._locks: dict[str, tuple[threading.Lock, int]] = {}
        self._streams: Counter[str] = Counter()
        self._unopened = 0
        self._max_streams = max_streams

    @contextmanager
    def lock(self, session_id: str) -> Iterator[None]:
        with self._mutex:
            lock, users = self._locks.get(session_id, (threading.Lock(), 0))
            self._locks[session_id] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._mutex:
                lock, users = self._locks[session_id]
                if users == 1:
                    del self._locks[session_id]
                else:
                    self._locks[session_id] = (lock, users - 1)

    def accept_stream(self) -> None:
        """Count a stream from the moment it is accepted, before it opens a session."""
        with self._mutex:
            if self._streams.total() + self._unopened >= self._max_streams:
                raise TooManyStreams(self._max_streams)
            self._unopened += 1
        session_streams_changed(+1)

    def unaccept_stream(self) -> None:
        """An accepted stream ended before opening a session."""
        with self._mutex:
            self._unopened -= 1
        session_streams_changed(-1)

    def add_stream(self, session_id: str, accepted: bool) -> None:
        """A stream opened `session_id`: one counted since it was accepted, or a
        new one (counted now, within the limit)."""
        with self._mutex:
            if accepted:
                self._unopened -= 1
            elif self._streams.total() + self._unopened >= self._max_streams:
                raise TooManyStreams(self._max_streams)
            self._streams[session_id] += 1
        if not accepted:
            session_streams_changed(+1)

    def remove_stream(self, session_id: str) -> None:
        with self._mutex:
            self._streams[session_id] -= 1
            if self._streams[session_id] <= 0:
                del self._streams[session_id]
        session_streams_changed(-1)

    def streaming(self) -> frozenset[str]:
        with self._mutex:
            return frozenset(self._streams)


class SessionManager:
    """Sessions over a `SessionStore`, evaluated on the process's `EngineWorker`.

    Transport-free: the servicer maps requests to `open`, `apply`, `release`
    and `delete`, and exceptions to statuses.
    """

    def __init__(
        self,
        store: SessionStore,
        worker: EngineWorker,
        *,
        max_facts: int,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_streams: int = 48,
        max_sessions: int | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """`max_sessions`: live sessions in the store (all processes sharing it)
        past which a new one is refused; None: no limit."""
        if max_sessions is not None and max_sessions < 1:
            raise ValueError("max_sessions must be at least 1")
        self.store = store
        self.ttl_seconds = ttl_seconds
        self.max_sessions = max_sessions
        # Any caller can cause a refusal at will: one line per interval bounds
        # the log. It names the limit only, never a session or a fact.
        self._refusals = RateLimitedLog(
            log,
            f"new session refused: the session store holds {max_sessions} live sessions"
            " (--max-sessions); resuming sessions is unaffected",
        )
        self._worker = worker
        # Told the id of each session this process committed to or erased
        # (None: any may have changed), for watchers (`server.watch.ChangeFeed`).
        self.changed: Callable[[str | None], None] = lambda session_id: None
        self._max_facts = max_facts
        self._clock = clock
        self._registry = _Registry(max_streams)
        self._stopping = threading.Event()
        self._sweeper: threading.Thread | None = None

    # -- streams ---------------------------------------------------------------

    def accept(self) -> None:
        """A stream arrived: count it now (raises `TooManyStreams`). It must
        then either `open` a session, or end with `abandon`."""
        self._registry.accept_stream()

    def abandon(self) -> None:
        """An accepted stream ended without a session open."""
        self._registry.unaccept_stream()

    def open(
        self, session_id: str, should_stop: Callable[[], bool], *, accepted: bool = False
    ) -> Snapshot:
        """Create a session (empty id) or resume one, counting it as streaming
        (`accepted`: the stream was counted by `accept` already).

        Creating raises `TooManySessions` when the store holds `max_sessions`
        live sessions; resuming never does.

        A successful `open` must be paired with one `release`; a failed one
        ends the stream's count, as `abandon` does.
        """
        created = not session_id
        if created:
            session_id = secrets.token_urlsafe(SESSION_ID_BYTES)
        elif not SESSION_ID_PATTERN.fullmatch(session_id):
            if accepted:
                self.abandon()
            raise SessionNotFound()  # no lookup, and no hint that the format was wrong
        self._registry.add_stream(session_id, accepted)
        try:
            now = self._clock()
            if created:
                conclusions = self._derive([], should_stop)
                try:
                    self.store.create(
                        session_id,
                        now,
                        _reported(conclusions),
                        max_sessions=self.max_sessions,
                        idle_before=now - self.ttl_seconds,  # as `sweep` reckons idle
                    )
                except SessionLimitReached:
                    self._refusals.event()
                    raise TooManySessions(self.max_sessions) from None
                log.info("session %s created", tag(session_id))
                return Snapshot(session_id, 0, conclusions)
            state = self.store.open(session_id, now)
            if state is None:
                raise SessionNotFound()
            conclusions = self._derive(self._validated(state), should_stop)
            previous, changes = self._reconcile(state, conclusions)
        except BaseException:
            self._registry.remove_stream(session_id)
            raise
        return Snapshot(session_id, state.version, conclusions, previous, changes)

    def _reconcile(
        self, state: StoredSession, conclusions: tuple[Conclusion, ...]
    ) -> tuple[str, tuple[Change, ...]]:
        """The knowledge base the session last reported under, if another, and what changed.

        Stores `conclusions` as the session's report whenever the stored one is
        missing or from another knowledge base. A failure to store it is not a
        failure to open: the differences are then reported again next time.
        """
        reported = state.conclusions
        if reported is not None and reported.knowledge_base_version == kb.VERSION:
            return "", ()
        previous, changes = "", ()
        if reported is not None:
            try:
                before = conclusions_from_json(reported.document)
            except ValueError as error:
                log.warning("session %s: %s; reporting no changes", tag(state.id), error)
            else:
                previous, changes = (
                    reported.knowledge_base_version,
                    tuple(diff(before, conclusions)),
                )
        try:
            stored = self.store.record_conclusions(state.id, state.version, _reported(conclusions))
        except StoreError as error:
            log.warning(
                "session %s: refreshed conclusions not stored (%s)",
                tag(state.id),
                type(error).__name__,
            )
        else:
            if previous and stored:
                log.info(
                    "session %s: knowledge base %s -> %s, %d change(s)",
                    tag(state.id),
                    previous,
                    kb.VERSION,
                    len(changes),
                )
        return previous, changes

    def release(self, session_id: str) -> None:
        """The stream that opened `session_id` has ended."""
        self._registry.remove_stream(session_id)

    def apply(
        self,
        session_id: str,
        batch: Batch,
        baseline: Sequence[Conclusion],
        should_stop: Callable[[], bool],
    ) -> Applied:
        """Apply one batch; return the new version and the changes from `baseline`.

        Raises `BatchRejection` (nothing applied), `SessionNotFound`,
        `Contention`, `EngineFailure` or `EvaluationCancelled` (nothing applied).
        """
        with self._registry.lock(session_id):
            for attempt in range(MAX_COMMIT_ATTEMPTS):
                state = self.store.load(session_id)
                if state is None:
                    raise SessionNotFound()
                if batch.expected_version and batch.expected_version != state.version:
                    raise BatchRejection(
                        REASON_VERSION_CONFLICT,
                        [
                            Violation(
                                "expected_version", f"the session is at version {state.version}"
                            )
                        ],
                    )
                facts, upsert = self._plan(state, batch)
                conclusions = self._derive(facts, should_stop)
                try:
                    version = self.store.commit(
                        session_id,
                        state.version,
                        batch.retract,
                        upsert,
                        self._clock(),
                        _reported(conclusions),
                    )
                except StaleVersion:
                    # Another process committed first: recompute on its version.
                    ceiling = min(RETRY_CAP_SECONDS, RETRY_BASE_SECONDS * 2**attempt)
                    time.sleep(random.uniform(0, ceiling))
                    continue
                except SessionMissing:
                    raise SessionNotFound() from None
                self.changed(session_id)
                return Applied(version, conclusions, tuple(diff(baseline, conclusions)))
        raise Contention()

    def delete(self, session_id: str) -> bool:
        """Erase a session now; False if there is no such session."""
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            return False
        with self._registry.lock(session_id):
            deleted = self.store.delete(session_id)
        if deleted:
            log.info("session %s deleted", tag(session_id))
            self.changed(session_id)
        return deleted

    def observe(self, session_id: str) -> Observed | None:
        """The session's version and conclusions now, for a watcher; None if
        there is no such session.

        Read only: it never marks the session active (a watcher never keeps a
        session from expiring) and never takes the session's lock (it never
        delays a writer). The conclusions are those stored with the version
        when they come from the knowledge base now loaded, else derived again.
        """
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            return None
        state = self.store.load(session_id)
        if state is None:
            return None
        reported = state.conclusions
        if reported is not None and reported.knowledge_base_version == kb.VERSION:
            try:
                return Observed(session_id, state.version, conclusions_from_json(reported.document))
            except ValueError as error:
                log.warning("session %s: %s; deriving them again", tag(session_id), error)
        conclusions = self._derive(self._validated(state), lambda: False)
        return Observed(session_id, state.version, conclusions)

    def version_of(self, session_id: str) -> int | None:
        """The session's version now; None if there is no such session."""
        if not SESSION_ID_PATTERN.fullmatch(session_id):
            return None
        return self.store.version_of(session_id)

    # -- batches ---------------------------------------------------------------

    def _plan(self, state: StoredSession, batch: Batch) -> tuple[list[Fact], list[StoredFact]]:
        """Check a batch against the session; the facts after it, in order, and the upserts."""
        limit = self._max_facts
        if len(batch.facts) > limit:
            raise BatchRejection(
                REASON_LIMIT_EXCEEDED, [Violation("facts", f"at most {limit} facts per batch")]
            )
        if len(batch.retract) > limit:
            raise BatchRejection(
                REASON_LIMIT_EXCEEDED,
                [Violation(batch.retract_field, f"at most {limit} fact ids per batch")],
            )
        violations: list[Violation] = []
        remaining = {fact.id: fact for fact in state.facts}
        first_seen: dict[str, int] = {}
        for index, fact_id in enumerate(batch.retract):
            path = f"{batch.retract_field}[{index}]"
            if fact_id in first_seen:
                first = f"{batch.retract_field}[{first_seen[fact_id]}]"
                violations.append(Violation(path, f"fact id listed twice (first at {first})"))
                continue
            first_seen[fact_id] = index
            if remaining.pop(fact_id, None) is None:
                violations.append(Violation(path, "the session holds no fact with this id"))

        asserted = {fact.id for fact in batch.facts}
        kept = [fact for fact_id, fact in remaining.items() if fact_id not in asserted]
        if len(kept) + len(asserted) > limit:
            raise BatchRejection(
                REASON_LIMIT_EXCEEDED,
                [Violation("facts", f"a session holds at most {limit} facts")],
            )
        # Stored facts first, so a cardinality clash is reported on the batch's fact.
        try:
            combined = [*map(_fact_in, kept), *batch.facts]
            valid = validate_facts(combined, max_facts=len(combined))
        except InvalidFacts as error:
            violations.extend(
                self._batch_relative(violation, kept) for violation in error.violations
            )
            valid = []
        if violations:
            raise BatchRejection(REASON_FACT_INVALID, violations)

        by_id = {fact.id: fact for fact in valid}
        order = dict.fromkeys(remaining)  # an existing id keeps its place, a new one goes last
        order.update(dict.fromkeys(fact.id for fact in batch.facts))
        upsert = [_stored(by_id[fact.id]) for fact in batch.facts]
        return [by_id[fact_id] for fact_id in order], upsert

    @staticmethod
    def _batch_relative(violation: Violation, kept: Sequence[StoredFact]) -> Violation:
        """Paths of the combined check (stored facts, then the batch) as paths in the batch."""

        def index(match: re.Match[str]) -> str:
            position = int(match[1])
            if position >= len(kept):
                return f"facts[{position - len(kept)}]"
            return f"session fact '{kept[position].id}'"

        field = violation.field
        match = _FACT_INDEX.match(field)
        if match is not None and int(match[1]) < len(kept):
            # A stored fact the loaded knowledge base no longer accepts: name it by id.
            field = f"session.facts[{kept[int(match[1])].id}]" + field[match.end() :]
        else:
            field = _FACT_INDEX.sub(index, field, count=1)
        return Violation(field, _FACT_INDEX.sub(index, violation.description))

    def _validated(self, state: StoredSession) -> list[Fact]:
        try:
            return validate_facts(
                [_fact_in(fact) for fact in state.facts], max_facts=max(len(state.facts), 1)
            )
        except InvalidFacts:
            raise EngineFailure("stored session facts no longer validate") from None

    def _derive(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool]
    ) -> tuple[Conclusion, ...]:
        for item in self._worker.evaluate(facts, should_stop=should_stop):
            if isinstance(item, EvaluationResult):
                return item.conclusions
        raise EngineFailure("evaluation ended without a result")

    # -- expiry ----------------------------------------------------------------

    def sweep(self) -> int:
        """Erase sessions idle longer than the TTL; a session with an open stream is not idle.

        Open streams are marked active first, so another process sharing the
        database does not expire them either.
        """
        now = self._clock()
        streaming = self._registry.streaming()
        self.store.touch(streaming, now)
        swept = self.store.sweep(now - self.ttl_seconds, keep=streaming)
        if swept:
            log.info("swept %d idle session(s)", swept)
            self.changed(None)
        return swept

    def start_sweeper(self, interval_seconds: float) -> None:
        """Sweep now and then every `interval_seconds` on a background thread."""
        if self._sweeper is not None:
            raise RuntimeError("the sweeper is already running")
        self._sweeper = threading.Thread(
            target=self._sweep_forever,
            args=(interval_seconds,),
            name="session-sweeper",
            daemon=True,
        )
        self._sweeper.start()

    def _sweep_forever(self, interval_seconds: float) -> None:
        while not self._stopping.is_set():
            try:
                self.sweep()
            except Exception as error:
                log.error("session sweep failed: %s", type(error).__name__)
            self._stopping.wait(interval_seconds)

    def stop(self, timeout: float | None = 10.0) -> None:
        """Stop the sweeper (the store stays open: its owner closes it)."""
        self._stopping.set()
        if self._sweeper is not None:
            self._sweeper.join(timeout)
