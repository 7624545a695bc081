"""Why, and why not: a conclusion code explained from the rules' own definitions.

For one set of facts and one code: evaluate the facts, then read every rule that
can produce the code from the engine's exported definition and check each of its
conditions against the facts and the conclusions derived before it — which held
(pertinent positives), which did not (pertinent negatives), with the values seen.
Conclusions the rule chains on are explained in turn.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from kb.conditions import Pattern, alternatives, describe, describe_pattern, holds, observed
from kb.engine import RulesEngine, encode_fact
from kb.facts import Fact
from kb.model import Conclusion, Rule
from kb.rules.patterns import CONCLUSION


@dataclass(frozen=True)
class TestResult:
    description: str
    held: bool
    observed: dict[str, Any]


@dataclass(frozen=True)
class Candidate:
    """A fact (or derived conclusion) a condition considered: its id (the client's
    fact id, or the conclusion code) and how each test of the pattern went."""

    id: str
    matched: bool
    tests: tuple[TestResult, ...]


@dataclass(frozen=True)
class ConditionResult:
    pattern: Pattern
    description: str
    held: bool
    candidates: tuple[Candidate, ...]


@dataclass(frozen=True)
class AlternativeResult:
    held: bool
    conditions: tuple[ConditionResult, ...]


@dataclass(frozen=True)
class RuleResult:
    rule: Rule
    ruleset: str
    fired: bool
    alternatives: tuple[AlternativeResult, ...]


@dataclass(frozen=True)
class Explanation:
    code: str
    conclusion: Conclusion | None
    rules: tuple[RuleResult, ...]
    chain: tuple[Explanation, ...]

    @property
    def derived(self) -> bool:
        return self.conclusion is not None


class UnknownCode(ValueError):
    """The code is not produced by any rule of the knowledge base."""


# (id, the fact as the engine sees it, the fact with the values the caller sent)
_Candidate = tuple[str, dict[str, Any], dict[str, Any]]


def _condition(pattern: Pattern, candidates: Sequence[_Candidate]) -> ConditionResult:
    results = []
    for candidate_id, fact, sent in candidates:
        if pattern.fact_type is not None and fact["t"] != pattern.fact_type:
            continue
        # Held or not as the engine sees the fact; the values shown as the caller sent them.
        tests = tuple(
            TestResult(describe(test), holds(test, fact), observed(test, sent))
            for test in pattern.tests
        )
        matched = all(test.held for test in tests)
        if matched or not pattern.is_conclusion:  # other conclusions are not candidates
            results.append(Candidate(candidate_id, matched, tests))
    found = any(candidate.matched for candidate in results)
    return ConditionResult(
        pattern, describe_pattern(pattern), found != pattern.negated, tuple(results)
    )


def explain(engine: RulesEngine, facts: Sequence[Fact], code: str) -> Explanation:
    """Explain `code` for validated `facts` (raises `UnknownCode`)."""
    if code not in {rule.code for rule in engine.rules}:
        raise UnknownCode(code)
    result = engine.evaluate(facts)
    derived = {conclusion.code: conclusion for conclusion in result.conclusions}
    client = [
        (fact.id, encode_fact(fact, f"f{index}"), encode_fact(fact, f"f{index}", as_sent=True))
        for index, fact in enumerate(facts)
    ]
    kinds = {rule.code: rule.kind.value for rule in engine.rules}
    conclusions = []
    for derived_code in derived:
        encoded = {"t": CONCLUSION, "code": derived_code, "ckind": kinds[derived_code]}
        conclusions.append((derived_code, encoded, encoded))
    return _explain(engine, engine.definition(), code, derived, client + conclusions, set())


def _explain(
    engine: RulesEngine,
    definition: dict[str, Any],
    code: str,
    derived: dict[str, Conclusion],
    candidates: list[_Candidate],
    explained: set[str],
) -> Explanation:
    explained.add(code)
    rules = []
    chained: list[str] = []
    for rule in engine.rules:
        if rule.code != code:
            continue
        # A rule sees only conclusions of earlier stages, never its own code.
        visible = [candidate for candidate in candidates if candidate[1].get("code") != code]
        results = []
        for patterns in alternatives(definition, rule.id):
            conditions = tuple(_condition(pattern, visible) for pattern in patterns)
            results.append(AlternativeResult(all(c.held for c in conditions), conditions))
            for condition in conditions:
                for test in condition.pattern.tests if condition.pattern.is_conclusion else ():
                    chained += [test["code"]] if "code" in test else []
                    chained += [
                        candidate.id for candidate in condition.candidates if candidate.matched
                    ]
        rules.append(
            RuleResult(rule, engine.group_of[rule.id], any(r.held for r in results), tuple(results))
        )
    chain = []
    for chained_code in dict.fromkeys(chained):
        if chained_code not in explained:
            chain.append(_explain(engine, definition, chained_code, derived, candidates, explained))
    return Explanation(code, derived.get(code), tuple(rules), tuple(chain))
