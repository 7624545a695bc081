"""The shapes of knowledge: rules with their metadata, and the conclusions they produce.

A `Rule` is one conclusion code's rule: its durable_rules patterns (`when`) and
everything the API publishes about it (kind, urgency, title, detail, citations,
evidence). Metadata is data next to the patterns it describes, so adding a rule
is one edit in one module of `kb/rules/`.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from enum import IntEnum, StrEnum
from typing import Any

from kb.facts import Fact


class Kind(StrEnum):
    DIAGNOSIS_SUPPORTED = "DIAGNOSIS_SUPPORTED"
    MIMIC_SUSPECTED = "MIMIC_SUSPECTED"
    NEXT_TREATMENT_STEP = "NEXT_TREATMENT_STEP"
    CAUTION = "CAUTION"
    INFORMATION_NEEDED = "INFORMATION_NEEDED"


class Urgency(StrEnum):
    ROUTINE = "ROUTINE"
    URGENT = "URGENT"
    EMERGENT = "EMERGENT"


class Certainty(StrEnum):
    HIGH = "high"
    MODERATE = "moderate"
    LOW = "low"
    VERY_LOW = "very_low"
    CONSENSUS = "consensus"


class Stage(IntEnum):
    """When a rule may fire inside one evaluation.

    durable_rules checks `none(...)` only when a rule's positive patterns join,
    and never withdraws an activation when the forbidden fact arrives later. So
    every rule joins on a stage marker the engine asserts once the previous
    stage has run to quiescence: a rule that tests the absence (or presence) of
    a conclusion must sit in a later stage than every rule producing it.
    """

    FINDINGS = 1  # reads client facts only
    DERIVED = 2  # reads conclusions of FINDINGS
    TREATMENT = 3  # reads conclusions of FINDINGS and DERIVED


@dataclass(frozen=True)
class Evidence:
    """One evidence note and one certainty for a rule: the weakest link."""

    note: str
    certainty: Certainty


@dataclass(frozen=True)
class Match:
    """What a rule saw when it fired (merged over all its firings in one evaluation).

    `read` holds the client facts its patterns matched and `derived_from` the
    codes it chained on; `facts` is every fact of the evaluation, for details
    that mention what is missing.
    """

    read: Sequence[Fact]
    facts: Sequence[Fact]
    derived_from: Sequence[str] = ()

    def read_of(self, fact_type: str) -> list[Any]:
        return [fact.value for fact in self.read if fact.type == fact_type]

    def all_of(self, fact_type: str) -> list[Any]:
        """Every fact of this type in the evaluation, read by the rule or not."""
        return [fact.value for fact in self.facts if fact.type == fact_type]

    def any_fact(self, fact_type: str, **fields: Any) -> bool:
        return any(
            fact.type == fact_type
            and all(getattr(fact.value, name) == value for name, value in fields.items())
            for fact in self.facts
        )


@dataclass(frozen=True)
class DetailPart:
    """One sentence of a computed detail and the condition under which it is said.

    `text` may hold `{placeholders}` that the detail's `values` fill from the
    facts; `when` says the condition in words for the reviewable reference
    (`docs/knowledge-base.md`), `applies` decides it (None: always said).
    """

    text: str
    when: str = "always"
    applies: Callable[[Match], bool] | None = None


@dataclass(frozen=True)
class ComputedDetail:
    """A detail that depends on the facts, written as every part it can contain,
    so a clinician can review each variant without running the engine."""

    parts: tuple[DetailPart, ...]
    values: Callable[[Match], dict[str, str]] | None = None
    placeholders: tuple[tuple[str, str], ...] = ()  # (name, what it holds), for the docs

    def applied(self, match: Match) -> list[DetailPart]:
        return [part for part in self.parts if part.applies is None or part.applies(match)]

    def render(self, match: Match) -> str:
        values = self.values(match) if self.values is not None else {}
        return " ".join(part.text.format(**values) for part in self.applied(match))


Detail = str | ComputedDetail


@dataclass(frozen=True)
class Rule:
    """One conclusion code and the rule that derives it.

    `when` lists alternatives; each is a conjunction of durable_rules patterns
    (`c.alias << m.field == value`, `none(...)`). The rule fires when any
    alternative matches; all firings in one evaluation merge into one
    conclusion. Thresholds belong in named constants of the rule's module.
    """

    id: str
    code: str
    kind: Kind
    title: str
    detail: Detail
    fires_when: str
    citations: tuple[str, ...]
    evidence: Evidence
    stage: Stage
    when: tuple[tuple[Any, ...], ...]
    urgency: Urgency = Urgency.ROUTINE

    def describe(self, match: Match) -> str:
        return self.detail if isinstance(self.detail, str) else self.detail.render(match)


@dataclass(frozen=True)
class RuleGroup:
    """A recommendation group: one module of `kb/rules/`, one provenance `ruleset`."""

    name: str
    source: str
    rules: tuple[Rule, ...] = field(default_factory=tuple)


@dataclass(frozen=True)
class Provenance:
    rule_id: str
    ruleset: str
    fact_ids: tuple[str, ...]
    derived_from: tuple[str, ...]
    citation_ids: tuple[str, ...]
    evidence_note: str
    certainty: Certainty


@dataclass(frozen=True)
class Conclusion:
    code: str
    kind: Kind
    urgency: Urgency
    title: str
    detail: str
    provenance: Provenance
