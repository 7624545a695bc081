"""Static checks of the knowledge base, read from the engine's own definitions.

durable_rules says nothing when a rule can never match: a misspelt field
(`m.side_lockd`) is simply never true. These checks catch that and the other
silent ways a rule can go wrong, each problem naming the rule.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kb.catalogue import CATALOGUE
from kb.conditions import Pattern, alternatives, fields_read
from kb.engine import RulesEngine, list_field_items
from kb.facts import FACT_TYPES
from kb.model import Certainty, Kind, Rule
from kb.references import REFERENCES_BY_ID

CONCLUSION_FIELDS = {"code", "ckind"}


@dataclass(frozen=True)
class Problem:
    rule_id: str
    message: str

    def __str__(self) -> str:
        return f"{self.rule_id}: {self.message}"


def _known_fields(fact_type: str) -> set[str]:
    model = FACT_TYPES[fact_type].model
    known = set(model.model_fields)
    for name, items in list_field_items(model).items():
        known |= {f"{name}.{item}" for item in items}
    return known


def _pattern_problems(rule: Rule, pattern: Pattern) -> list[str]:
    if pattern.fact_type is None:
        return ["a pattern does not name its fact type"]
    read = set().union(*(fields_read(test) for test in pattern.tests)) if pattern.tests else set()
    if pattern.is_conclusion:
        problems = [f"reads unknown conclusion field '{name}'" for name in read - CONCLUSION_FIELDS]
        for test in pattern.tests:
            if "code" in test and test["code"] not in CATALOGUE:
                problems.append(f"chains on unknown code '{test['code']}'")
            if "ckind" in test and test["ckind"] not in {kind.value for kind in Kind}:
                problems.append(f"chains on unknown kind '{test['ckind']}'")
        return problems
    if pattern.fact_type not in FACT_TYPES:
        return [f"matches unknown fact type '{pattern.fact_type}'"]
    unknown = sorted(read - _known_fields(pattern.fact_type))
    return [f"reads unknown field '{name}' of {pattern.fact_type}" for name in unknown]


def _chained(patterns: Sequence[Pattern]) -> set[str]:
    """Codes (and `kind:` kinds) an alternative tests, present or absent."""
    found = set()
    for pattern in patterns:
        if pattern.is_conclusion:
            for test in pattern.tests:
                if "code" in test:
                    found.add(test["code"])
                if "ckind" in test:
                    found.add(f"kind:{test['ckind']}")
    return found


def lint(engine: RulesEngine, catalogue: Mapping[str, Any] = CATALOGUE) -> list[Problem]:
    """Every problem found, in rule order; empty when the knowledge base is sound."""
    problems: list[Problem] = []
    definition = engine.definition()
    seen_ids: set[str] = set()
    producers: dict[str, list[Rule]] = {}
    for rule in engine.rules:
        producers.setdefault(rule.code, []).append(rule)
        producers.setdefault(f"kind:{rule.kind.value}", []).append(rule)

    def report(rule: Rule, message: str) -> None:
        problems.append(Problem(rule.id, message))

    for rule in engine.rules:
        if rule.id in seen_ids:
            report(rule, "rule id is not unique")
        seen_ids.add(rule.id)
        if rule.code not in catalogue:
            report(rule, f"code '{rule.code}' is not in the published catalogue")
        elif catalogue[rule.code] != (rule.kind, rule.urgency):
            report(rule, f"kind or urgency differs from the catalogue entry for '{rule.code}'")
        if len(producers[rule.code]) > 1:
            report(rule, f"code '{rule.code}' is produced by more than one rule")
        if not rule.citations:
            report(rule, "cites no reference")
        for citation in rule.citations:
            if citation not in REFERENCES_BY_ID:
                report(rule, f"cites unknown reference '{citation}'")
        if not rule.evidence.note.strip():
            report(rule, "has no evidence note")
        if not isinstance(rule.evidence.certainty, Certainty):
            report(
                rule, "evidence certainty is not one of high, moderate, low, very_low, consensus"
            )
        parsed = alternatives(definition, rule.id)
        if not parsed:
            report(rule, "has no alternative the engine registered")
        for patterns in parsed:
            if all(pattern.negated for pattern in patterns):
                report(rule, "an alternative has no positive pattern")
            for pattern in patterns:
                for message in _pattern_problems(rule, pattern):
                    report(rule, message)
            for chained in sorted(_chained(patterns)):
                late = [p.id for p in producers.get(chained, []) if p.stage >= rule.stage]
                if late:
                    report(
                        rule,
                        f"tests '{chained}' produced in the same or a later stage by "
                        f"{', '.join(late)}: negation is not retroactive",
                    )
    produced = {rule.code for rule in engine.rules}
    for code in catalogue:
        if code not in produced:
            problems.append(Problem("catalogue", f"code '{code}' is produced by no rule"))
    return problems
