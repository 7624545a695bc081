"""Conclusions to protobuf: each message built from a per-rule template must be
exactly the message built field by field."""

from __future__ import annotations

import dataclasses

from cds.v1 import decision_support_pb2 as pb
from kb.catalogue import CATALOGUE
from kb.engine import RulesEngine
from kb.facts import validate_facts
from kb.model import Conclusion
from kb.scenarios import load_scenarios
from server.convert import conclusion_response, conclusion_to_proto


def _field_by_field(conclusion: Conclusion, references: tuple[str, ...] = ()) -> pb.Conclusion:
    provenance = conclusion.provenance
    return pb.Conclusion(
        code=conclusion.code,
        kind=pb.ConclusionKind.Value(f"CONCLUSION_KIND_{conclusion.kind.value}"),
        urgency=pb.Urgency.Value(f"URGENCY_{conclusion.urgency.value}"),
        title=conclusion.title,
        detail=conclusion.detail,
        provenance=pb.Provenance(
            rule_id=provenance.rule_id,
            ruleset=provenance.ruleset,
            fact_ids=provenance.fact_ids,
            derived_from=provenance.derived_from,
            citation_ids=provenance.citation_ids,
            evidence_note=provenance.evidence_note,
            certainty=provenance.certainty.value,
            source_references=references,
        ),
    )


def _conclusions(engine: RulesEngine) -> list[Conclusion]:
    found = []
    for scenario in load_scenarios():
        if scenario.facts and not scenario.error:
            found += engine.evaluate(validate_facts(list(scenario.facts))).conclusions
    return found


def test_every_scenario_conclusion_converts_as_built_field_by_field(engine: RulesEngine) -> None:
    conclusions = _conclusions(engine)
    assert {c.code for c in conclusions} == set(CATALOGUE)  # every code, at least once
    for conclusion in conclusions:
        expected = _field_by_field(conclusion)
        assert conclusion_to_proto(conclusion) == expected
        assert conclusion_response(conclusion) == pb.EvaluateResponse(conclusion=expected)
        references = ("Observation/1", "Condition/2")
        assert conclusion_to_proto(conclusion, references) == _field_by_field(
            conclusion, references
        )


def test_a_changed_rule_under_the_same_code_is_never_served_from_the_old_template(
    engine: RulesEngine,
) -> None:
    """The template is keyed by everything that comes from the rule, not the code."""
    conclusion = _conclusions(engine)[0]
    assert conclusion_to_proto(conclusion) == _field_by_field(conclusion)
    changed = dataclasses.replace(
        conclusion,
        title=conclusion.title + " (revised)",
        provenance=dataclasses.replace(conclusion.provenance, evidence_note="revised note"),
    )
    assert conclusion_to_proto(changed) == _field_by_field(changed)
    assert conclusion_to_proto(changed).title.endswith("(revised)")
