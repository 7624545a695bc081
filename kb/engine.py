"""Runs the knowledge base on durable_rules, around the engine's traps.

durable_rules 2.0.28 has sharp edges, each reproduced on this project's
machines; each countermeasure here answers one:

- The engine is not thread-safe and its C state is process-wide: every call
  into it holds `_ENGINE_LOCK`, so no two threads are ever inside it.
- Its Python layer (`durable.engine.Host`) starts two timer threads that race
  callers, and runs every action through JSON round trips of the session
  state: the ruleset is driven here through the C module's own calls
  (`durable_rules_engine`), with no Host, no timers and the state untouched.
- At most 1,024 live sids: each evaluation runs under a sid of its own whose
  state is deleted afterwards, on success, error or cancellation alike.
- `delete_state` crashes on a sid where no action ran: the first thing an
  evaluation does is fire the `$begin` rule.
- Sids and fact ids are compared by 32-bit hash: engine ids come from a fixed
  scheme (`f<n>`, `c<n>`, `s<n>`) and sids from a fixed set (`_FREE_SIDS`),
  both checked by a test for distinct hashes; the client's ids never reach
  the engine.
- A fact no rule can match is refused: the `$sink` rule accepts every fact.
- durable_rules' Python layer swallows an action's exception into the session
  state: here the dispatch loop (`_run_actions`) is ours, and an action that
  raises fails the evaluation loudly (`EngineFailure`).
- Negation is not retroactive: rules join on stage markers asserted one stage
  at a time, each after the previous one has run to quiescence (`Stage`).
- Numbers in exponent notation crash the engine's JSON parser: floats in
  (0, 1e-4) are sent as 1e-4, which keeps their order against every threshold.
"""

from __future__ import annotations

import collections
import copy
import functools
import itertools
import math
import threading
import typing
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, field
from typing import Any

import durable_rules_engine
import orjson
from durable.lang import c, m, when_all

from kb.facts import Fact
from kb.model import Conclusion, Match, Provenance, Rule, RuleGroup, Stage
from kb.rules import GROUPS
from kb.rules.patterns import CONCLUSION

STAGE_MARKER = "$stage"
BEGIN, DONE = 0, max(Stage) + 1
SMALLEST_ENGINE_FLOAT = 1e-4
# durable_rules_engine's answers to an assert (src/rulespy/rules.c): anything
# but OK means the engine did not take the facts as given.
_ASSERTED = 0


def _to_json(value: Any) -> str:
    """Compact JSON, non-ASCII kept as UTF-8, as durable_rules' own layer sends
    it (`json.dumps(..., ensure_ascii=False)`); orjson writes the same text for
    every value a validated fact can hold (tests/test_engine.py), faster."""
    return orjson.dumps(value).decode()


# durable_rules keeps process-wide C state: one thread in it at a time per process.
_ENGINE_LOCK = threading.Lock()
_RULESET_NAMES = itertools.count(1)
# Evaluations may be live together (interleaved stage by stage on one thread,
# see `RulesEngine.stages`), and durable_rules tells sids apart by a 32-bit
# hash alone: each live evaluation takes a sid from this fixed set, checked by
# a test to have distinct hashes, and gives it back once its state is deleted.
# The oldest free sid is taken first, so a sid is reused as late as possible.
MAX_LIVE_EVALUATIONS = 512  # well under the engine's 1,024 live sids
_FREE_SIDS: collections.deque[str] = collections.deque(
    str(n) for n in range(1, MAX_LIVE_EVALUATIONS + 1)
)


class EngineFailure(Exception):
    """The engine did not complete an evaluation; its answer must not be used.

    The message names what failed, never fact values.
    """


class EvaluationCancelled(Exception):
    """The caller stopped wanting the answer (cancelled call, passed deadline)."""


@dataclass(frozen=True)
class EvaluationResult:
    conclusions: tuple[Conclusion, ...]
    rules_fired: int


@dataclass
class _Firing:
    read: set[str] = field(default_factory=set)
    derived_from: set[str] = field(default_factory=set)


@dataclass
class _Evaluation:
    """The state of one evaluation, kept on the Python side."""

    sid: str
    facts_by_engine_id: dict[str, Fact]
    firings: dict[str, _Firing] = field(default_factory=dict)
    asserted_codes: set[str] = field(default_factory=set)
    markers_seen: set[int] = field(default_factory=set)


@functools.cache
def list_field_items(model: type[Any]) -> dict[str, tuple[str, ...]]:
    """For each list-of-enum field of a fact model, its allowed values."""
    items = {}
    for name, info in model.model_fields.items():
        for option in typing.get_args(info.annotation) or (info.annotation,):
            if typing.get_origin(option) is list:
                (literal,) = typing.get_args(option)
                items[name] = typing.get_args(literal)
    return items


def _engine_number(value: float) -> float:
    if 0 < abs(value) < SMALLEST_ENGINE_FLOAT:
        return math.copysign(SMALLEST_ENGINE_FLOAT, value)
    return value


def encode_fact(
    fact: Fact, engine_id: str, sid: str = "0", *, as_sent: bool = False
) -> dict[str, Any]:
    """A validated fact as the engine sees it: its fields plus `t` (its type);
    a list of enumerated values becomes a map from each allowed value to
    whether it is present (the engine cannot test a list for what it lacks).

    `as_sent` keeps numbers as the caller sent them instead of moving tiny ones
    to the smallest the engine parses: for showing values, never for the engine."""
    items = list_field_items(type(fact.value))
    encoded: dict[str, Any] = {"sid": sid, "id": engine_id, "t": fact.type}
    # The model's fields (extra="forbid": nothing else) without BaseModel.__iter__,
    # which filters private names on every call.
    for name, value in vars(fact.value).items():
        if value is None:
            continue
        if name in items:
            encoded[name] = {item: item in value for item in items[name]}
        elif type(value) is float and not as_sent:
            encoded[name] = _engine_number(value)
        else:
            encoded[name] = value
    return encoded


def _marker(sid: str, number: int) -> dict[str, Any]:
    return {"sid": sid, "id": f"s{number}", "t": STAGE_MARKER, "n": number}


class RulesEngine:
    """The knowledge base compiled into one durable_rules ruleset.

    Rule `R` with alternatives becomes durable rules `R#0`, `R#1`, ...; every one
    joins on its stage's marker. `evaluate` and `stages` are safe to call from
    any thread: every call into durable_rules takes the process-wide engine
    lock, and each evaluation has a sid of its own, so evaluations may
    interleave between stages.
    """

    def __init__(
        self,
        groups: Sequence[RuleGroup] = GROUPS,
        transform: Callable[[dict[str, Any]], dict[str, Any]] | None = None,
    ) -> None:
        """`transform` may rewrite the compiled definition before it is
        registered (mutation testing does); the rules' actions stay."""
        self.rules: tuple[Rule, ...] = tuple(rule for group in groups for rule in group.rules)
        self.group_of = {rule.id: group.name for group in groups for rule in group.rules}
        self._stages = sorted({rule.stage for rule in self.rules})
        # Each stage's rules, in catalogue order (the order conclusions stream in).
        self._rules_of = {
            stage: [r for r in self.rules if r.stage == stage] for stage in self._stages
        }
        self._current: _Evaluation | None = None
        self._actions: dict[str, Callable[[dict[str, Any]], None]] = {}
        definition = self._definition()
        if transform is not None:
            definition = transform(definition)
        # The engine's copy, read back as data by the knowledge tools (kb.conditions).
        self._registered = copy.deepcopy(definition)
        with _ENGINE_LOCK:
            self._handle: int = durable_rules_engine.create_ruleset(
                f"cgh_{next(_RULESET_NAMES)}", _to_json(definition)
            )

    def close(self) -> None:
        """Free the engine's compiled ruleset (tools that build many engines)."""
        with _ENGINE_LOCK:
            durable_rules_engine.delete_ruleset(self._handle)

    def definition(self) -> dict[str, Any]:
        """The rules as the engine registered them (durable_rules' own format):
        `{"RULE-ID#n": {"all": [{alias: pattern}, ...]}}`, a copy."""
        return copy.deepcopy(self._registered)

    def _definition(self) -> dict[str, Any]:
        """The durable rules, and (in `_actions`) what each one's firing does."""
        definition = {
            "$begin": when_all(c.marker << (m.t == STAGE_MARKER) & (m.n == BEGIN)),
            "$done": when_all(c.marker << (m.t == STAGE_MARKER) & (m.n == DONE)),
            "$sink": when_all(c.anything << +m.t, c.never << (m.t == "$never")),
        }
        self._actions = {"$begin": self._mark_stage, "$done": self._mark_stage}
        for rule in self.rules:
            for index, alternative in enumerate(rule.when):
                name = f"{rule.id}#{index}"
                stage = c.stage_marker << (m.t == STAGE_MARKER) & (m.n == int(rule.stage))
                definition[name] = when_all(stage, *alternative)
                self._actions[name] = self._fire_action(rule)
        return {name: rule.define() for name, rule in definition.items()}

    def _mark_stage(self, matched: dict[str, Any]) -> None:
        self._evaluation().markers_seen.add(matched["marker"]["n"])

    def _fire_action(self, rule: Rule) -> Callable[[dict[str, Any]], None]:
        return functools.partial(self._fire, rule)

    def _evaluation(self) -> _Evaluation:
        if self._current is None:
            raise EngineFailure("an action ran outside an evaluation")
        return self._current

    def _fire(self, rule: Rule, matched: dict[str, Any]) -> None:
        """Record a firing (`matched`: the facts it joined, by alias) and, the
        first time, assert the conclusion for chaining."""
        evaluation = self._evaluation()
        firing = evaluation.firings.setdefault(rule.code, _Firing())
        for fact in matched.values():
            if fact["t"] == CONCLUSION:
                firing.derived_from.add(fact["code"])
            elif fact["t"] != STAGE_MARKER:
                firing.read.add(fact["id"])
        if rule.code not in evaluation.asserted_codes:
            evaluation.asserted_codes.add(rule.code)
            self._chain(
                {
                    "sid": evaluation.sid,
                    "id": f"c{len(evaluation.asserted_codes)}",
                    "t": CONCLUSION,
                    "code": rule.code,
                    "ckind": rule.kind.value,
                }
            )

    def _chain(self, conclusion: dict[str, Any]) -> None:
        """Assert a conclusion from inside an action: the rules it completes are
        queued and run by the same dispatch loop (`_run_actions`)."""
        answer, _ = durable_rules_engine.assert_fact(self._handle, _to_json(conclusion))
        if answer != _ASSERTED:
            raise EngineFailure(f"engine answered {answer} to a conclusion")

    def _assert(self, evaluation: _Evaluation, what: str, facts: list[dict[str, Any]]) -> None:
        """Assert into `evaluation`'s sid and run every action that follows, to
        quiescence; the actions record into `evaluation` (`_current`), all of
        it under the engine lock."""
        with _ENGINE_LOCK:
            self._current = evaluation
            try:
                answer, state = durable_rules_engine.assert_facts(self._handle, _to_json(facts))
                if answer != _ASSERTED:
                    raise EngineFailure(f"engine answered {answer}")
                self._run_actions(state)
            except EngineFailure as failure:  # its message never holds fact values
                raise EngineFailure(f"{what} failed: {failure}") from None
            except BaseException as error:
                # The exception's own message may contain fact values: name only its type.
                raise EngineFailure(f"{what} failed: {type(error).__name__}") from None
            finally:
                self._current = None

    def _run_actions(self, state: int) -> None:
        """durable_rules' dispatch loop without its Python layer: take the next
        activation of the sid's state, run its action, complete it, until none
        is left. The session state is never read or written (no rule uses it).
        An action that raises abandons the activation and the error propagates:
        the evaluation fails, and `stages` deletes the sid's state."""
        started = durable_rules_engine.start_action_for_state(self._handle, state)
        activation = None if started is None else started[1]
        while activation is not None:
            ((rule_name, matched),) = orjson.loads(activation).items()
            try:
                self._actions[rule_name](matched)
            except BaseException:
                durable_rules_engine.abandon_action(self._handle, state)
                raise
            activation = durable_rules_engine.complete_and_start_action(self._handle, state)

    def _close_stage(self, evaluation: _Evaluation, stage: Stage) -> list[Conclusion]:
        facts = list(evaluation.facts_by_engine_id.values())
        conclusions = []
        for rule in self._rules_of[stage]:
            firing = evaluation.firings.get(rule.code)
            if firing is None:
                continue
            read = [evaluation.facts_by_engine_id[engine_id] for engine_id in firing.read]
            conclusions.append(
                Conclusion(
                    code=rule.code,
                    kind=rule.kind,
                    urgency=rule.urgency,
                    title=rule.title,
                    detail=rule.describe(
                        Match(read=read, facts=facts, derived_from=tuple(firing.derived_from))
                    ),
                    provenance=Provenance(
                        rule_id=rule.id,
                        ruleset=self.group_of[rule.id],
                        fact_ids=tuple(sorted({fact.id for fact in read})),
                        derived_from=tuple(sorted(firing.derived_from)),
                        citation_ids=rule.citations,
                        evidence_note=rule.evidence.note,
                        certainty=rule.evidence.certainty,
                    ),
                )
            )
        return conclusions

    def evaluate(
        self,
        facts: Sequence[Fact],
        on_stage: Callable[[list[Conclusion]], None] | None = None,
        should_stop: Callable[[], bool] | None = None,
    ) -> EvaluationResult:
        """Derive every conclusion from validated facts.

        `on_stage` receives each stage's conclusions (when there are any) as
        soon as the stage has run to quiescence: their provenance is then
        complete. `should_stop` is polled between stages; when it answers true
        the evaluation ends with `EvaluationCancelled`.
        """
        stages = self.stages(facts, should_stop)
        while True:
            try:
                derived = next(stages)
            except StopIteration as finished:
                result: EvaluationResult = finished.value
                return result
            if derived and on_stage is not None:
                on_stage(derived)

    def stages(
        self, facts: Sequence[Fact], should_stop: Callable[[], bool] | None = None
    ) -> Generator[list[Conclusion], None, EvaluationResult]:
        """The evaluation stage by stage: yields each stage's conclusions (maybe
        none) once the stage has run to quiescence, and returns the result.

        The engine lock is held only while the engine runs, never across a
        yield, so evaluations driven on one thread may interleave at stage
        boundaries (each has its own sid). Closing the generator early ends
        the evaluation and deletes its engine state; `should_stop` is polled
        before each stage.
        """
        if should_stop is not None and should_stop():
            raise EvaluationCancelled()
        with _ENGINE_LOCK:
            if not _FREE_SIDS:
                raise EngineFailure(f"more than {MAX_LIVE_EVALUATIONS} evaluations at once")
            sid = _FREE_SIDS.popleft()
        evaluation = _Evaluation(sid, {f"f{i}": fact for i, fact in enumerate(facts)})
        try:
            return (yield from self._run(evaluation, should_stop))
        finally:
            with _ENGINE_LOCK:
                try:
                    durable_rules_engine.delete_state(self._handle, sid)
                finally:
                    _FREE_SIDS.append(sid)

    def _markers(self, sid: str, stage: Stage) -> list[dict[str, Any]]:
        """What starts `stage`: its marker and, after the last stage's (no rule
        reads what the last stage derives), the done marker, whose rule firing
        shows the engine ran the evaluation to its end."""
        if stage is self._stages[-1]:
            return [_marker(sid, stage), _marker(sid, DONE)]
        return [_marker(sid, stage)]

    def _run(
        self, evaluation: _Evaluation, should_stop: Callable[[], bool] | None
    ) -> Generator[list[Conclusion], None, EvaluationResult]:
        sid = evaluation.sid
        # One call into the engine for the begin marker, every fact and the first
        # stage's marker, in that order: a batch is asserted message by message,
        # so the first stage's rules join only once every fact is there (fewer
        # calls is most of what an evaluation costs).
        first = self._stages[0]
        self._assert(
            evaluation,
            "the facts",
            [
                _marker(sid, BEGIN),
                *(
                    encode_fact(fact, engine_id, sid)
                    for engine_id, fact in evaluation.facts_by_engine_id.items()
                ),
                *self._markers(sid, first),
            ],
        )
        if BEGIN not in evaluation.markers_seen:
            raise EngineFailure("begin rule did not fire")
        conclusions: list[Conclusion] = []
        for stage in self._stages:
            if stage is not first:
                if should_stop is not None and should_stop():
                    raise EvaluationCancelled()
                self._assert(evaluation, f"stage {stage.name}", self._markers(sid, stage))
            if stage is self._stages[-1] and DONE not in evaluation.markers_seen:
                raise EngineFailure("done rule did not fire")
            derived = self._close_stage(evaluation, stage)
            conclusions += derived
            yield derived
        return EvaluationResult(tuple(conclusions), rules_fired=len(evaluation.firings))
