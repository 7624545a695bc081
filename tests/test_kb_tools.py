"""Lint, mutation testing, generated docs: the knowledge engineer's tools."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest
from durable.lang import c

import kb
from kb import docs, mutate
from kb.engine import RulesEngine
from kb.facts import FACT_TYPES, MAX_FACTS_PER_REQUEST, validate_facts
from kb.lint import lint
from kb.model import Kind, RuleGroup, Stage, Urgency
from kb.rules import cautions
from kb.rules.patterns import absent, concluded, fact
from kb.scenarios import load_scenarios

CASES = [(s, validate_facts(list(s.facts))) for s in load_scenarios() if not s.error]


def _with(*rules: object) -> RulesEngine:
    """The real knowledge base plus `rules` in an extra group."""
    return RulesEngine((*kb.GROUPS, RuleGroup("extra", "test", tuple(rules))))  # type: ignore[arg-type]


def test_the_knowledge_base_lints_clean(engine: RulesEngine) -> None:
    assert lint(engine) == []


def test_lint_catches_chaining_within_one_stage() -> None:
    """durable_rules' negation is not retroactive: same-stage chaining is a bug."""
    rule = replace(
        cautions.MANIPULATION_CONTRAINDICATED,
        id="CAU-98",
        stage=Stage.FINDINGS,
    )
    problems = [str(p) for p in lint(_with(rule))]
    assert any(
        p.startswith("CAU-98: tests 'mimic.cervical_artery_dissection' produced in the same")
        for p in problems
    ), problems


def test_lint_catches_a_rule_that_only_tests_absences() -> None:
    rule = replace(
        cautions.IMAGING_NOT_DIAGNOSTIC,
        id="CAU-97",
        when=((absent(fact("imaging")),),),
    )
    assert "CAU-97: an alternative has no positive pattern" in [str(p) for p in lint(_with(rule))]


def test_lint_catches_duplicates_and_catalogue_mismatches() -> None:
    duplicate = replace(cautions.IMAGING_NOT_DIAGNOSTIC, urgency=Urgency.URGENT)
    problems = [str(p) for p in lint(_with(duplicate))]
    assert "CAU-02: rule id is not unique" in problems
    assert (
        "CAU-02: kind or urgency differs from the catalogue entry for "
        "'caution.imaging_not_diagnostic'" in problems
    )
    assert (
        "CAU-02: code 'caution.imaging_not_diagnostic' is produced by more than one rule"
        in problems
    )


def test_lint_catches_chaining_on_an_unknown_code() -> None:
    rule = replace(
        cautions.MANIPULATION_CONTRAINDICATED,
        id="CAU-96",
        code="caution.manipulation_contraindicated",
        when=((c.x << concluded("mimic.dissection"),),),
    )
    problems = [str(p) for p in lint(_with(rule))]
    assert "CAU-96: chains on unknown code 'mimic.dissection'" in problems


def test_mutants_cover_thresholds_comparisons_connectives_and_drops(engine: RulesEngine) -> None:
    changes = {m.change for m in mutate.mutants(engine.definition()) if m.rule == "MIM-01#0"}
    threshold = "supine_sbp_mmhg >= standing_sbp_mmhg + 20"
    assert f"{threshold}: 20 -> 19" in changes
    assert f"{threshold}: 20 -> 21" in changes
    assert f"$gte -> $gt in: {threshold}" in changes
    assert "drop pattern 'vitals'" in changes
    assert any(change.startswith("$or -> $and in:") for change in changes)
    assert any(change.startswith(f"drop '{threshold}' from") for change in changes)


def test_a_threshold_mutant_is_caught_and_the_real_rules_pass(engine: RulesEngine) -> None:
    assert mutate._killed(engine, CASES) is None
    (lowered,) = [
        m
        for m in mutate.mutants(engine.definition())
        if m.rule == "MIM-02#1" and m.change.endswith(": 30 -> 29")
    ]
    mutant = RulesEngine(transform=lambda d: mutate.mutate(d, lowered))
    try:
        assert mutate._killed(mutant, CASES) is not None
    finally:
        mutant.close()


def test_mutation_never_touches_the_stage_marker_or_type(engine: RulesEngine) -> None:
    for mutant in mutate.mutants(engine.definition()):
        assert "stage_marker" not in mutant.change
        assert not mutant.change.startswith("drop 't = ")


def test_generated_reference_is_current_and_complete(engine: RulesEngine) -> None:
    text = docs.render(engine)
    assert docs.DOCUMENT.read_text() == text, "run make docs"
    for rule in engine.rules:
        assert f"### `{rule.code}` — {rule.title}" in text
        assert rule.fires_when in text
        assert rule.evidence.note in text
        # The words a clinician reads: every detail, every variant of a computed one.
        if isinstance(rule.detail, str):
            assert f"- **Detail:** {rule.detail}" in text
        else:
            for part in rule.detail.parts:
                assert f"  - *{part.when}:* {part.text}" in text
    vocabulary = docs.render_vocabulary()
    assert docs.VOCABULARY.read_text() == vocabulary, "run make docs"
    for name, fact_type in FACT_TYPES.items():
        many = "one per request" if fact_type.singleton else "any number"
        assert f"## `{name}` ({many})" in vocabulary
        for field in fact_type.model.model_fields:
            assert f"| `{field}` |" in vocabulary, (name, field)
    assert f"at most {MAX_FACTS_PER_REQUEST} facts" in vocabulary
    for certainty in docs.CERTAINTY_LEGEND:
        assert f"- **{certainty.value}**: " in text
    assert "doi:10.1007/s10286-011-0119-5" in text


def test_docs_check_fails_on_a_stale_file(tmp_path: Path) -> None:
    stale = tmp_path / "knowledge-base.md"
    stale.write_text(docs.DOCUMENT.read_text().replace("ROUTINE", "ROUTINELY", 1))
    assert docs.main(["--check", "--output", str(stale)]) == 1
    assert docs.main(["--output", str(stale)]) == 0
    assert docs.main(["--check", "--output", str(stale)]) == 0


@pytest.mark.parametrize("kind", list(Kind))
def test_every_kind_has_a_section(engine: RulesEngine, kind: Kind) -> None:
    assert f"## {docs.KIND_HEADINGS[kind]}" in docs.render(engine)
