"""The one seam between wire types (cds.v1 protos) and knowledge-base types."""

from __future__ import annotations

import functools
import json
from collections.abc import Iterable, Sequence
from typing import Any

from google.protobuf import struct_pb2

import kb
from cds.v1 import decision_support_pb2 as pb
from fhir_in import MappingReport, code_tables, questionnaire
from kb.engine import EvaluationResult
from kb.explain import ConditionResult, Explanation
from kb.facts import FactIn, fact_schemas
from kb.model import Certainty, Conclusion, Kind, Urgency
from kb.references import REFERENCES
from server.limits import LimitExceeded, Limits, fact_violations

_KINDS = {kind: pb.ConclusionKind.Value(f"CONCLUSION_KIND_{kind.value}") for kind in Kind}
_URGENCIES = {urgency: pb.Urgency.Value(f"URGENCY_{urgency.value}") for urgency in Urgency}


class _Breach(Exception):
    """A limit broken mid-walk: the walk stops at once."""


class _BoundedWalk:
    """Converts facts while checking the structural limits (server.limits):
    the checks `fact_violations` makes, without building a path per value."""

    def __init__(self, limits: Limits) -> None:
        self.longest = limits.max_string_length
        self.widest = limits.max_fields_per_fact
        self.most_items = limits.max_list_items
        self.deepest = limits.max_depth
        self.values_left = limits.values_budget()

    def facts(self, facts: Iterable[pb.Fact]) -> list[FactIn]:
        converted = []
        for fact in facts:
            if len(fact.id) > self.longest or len(fact.type) > self.longest:
                raise _Breach
            converted.append(FactIn(fact.id, fact.type, self.struct(fact.fields, 1)))
        return converted

    def struct(self, struct: struct_pb2.Struct, depth: int) -> dict[str, Any]:
        fields = struct.fields
        if len(fields) > self.widest:
            raise _Breach
        converted = {}
        for key, value in fields.items():
            if len(key) > self.longest:
                raise _Breach
            converted[key] = self.value(value, depth)
        return converted

    def value(self, value: struct_pb2.Value, depth: int) -> Any:
        self.values_left -= 1
        if self.values_left < 0:
            raise _Breach
        kind = value.WhichOneof("kind")
        if kind == "string_value":
            if len(value.string_value) > self.longest:
                raise _Breach
            return value.string_value
        if kind == "struct_value" or kind == "list_value":
            if depth >= self.deepest:
                raise _Breach
            if kind == "struct_value":
                return self.struct(value.struct_value, depth + 1)
            items = value.list_value.values
            if len(items) > self.most_items:
                raise _Breach
            return [self.value(item, depth + 1) for item in items]
        if kind in (None, "null_value"):
            return None
        return getattr(value, kind)


def facts_from_proto(facts: Sequence[pb.Fact], limits: Limits) -> list[FactIn]:
    """Struct fields as plain Python values: numbers arrive as floats, null as None.

    The same walk checks the structural limits, one walk instead of two: past
    any of them it stops and raises `LimitExceeded` naming every violation
    (found by a second walk, which builds the paths)."""
    try:
        return _BoundedWalk(limits).facts(facts)
    except _Breach:
        raise LimitExceeded(fact_violations(facts, limits)) from None


@functools.lru_cache(maxsize=4096)
def _rule_part(
    code: str,
    kind: Kind,
    urgency: Urgency,
    title: str,
    rule_id: str,
    ruleset: str,
    citation_ids: tuple[str, ...],
    evidence_note: str,
    certainty: Certainty,
) -> pb.Conclusion:
    """What a conclusion's message holds that comes from its rule alone, built
    once per rule (keyed by all of it) and only ever copied from."""
    return pb.Conclusion(
        code=code,
        kind=_KINDS[kind],
        urgency=_URGENCIES[urgency],
        title=title,
        provenance=pb.Provenance(
            rule_id=rule_id,
            ruleset=ruleset,
            citation_ids=citation_ids,
            evidence_note=evidence_note,
            certainty=certainty.value,
        ),
    )


def _fill(message: pb.Conclusion, conclusion: Conclusion, source_references: Iterable[str]) -> None:
    provenance = conclusion.provenance
    message.CopyFrom(
        _rule_part(
            conclusion.code,
            conclusion.kind,
            conclusion.urgency,
            conclusion.title,
            provenance.rule_id,
            provenance.ruleset,
            provenance.citation_ids,
            provenance.evidence_note,
            provenance.certainty,
        )
    )
    message.detail = conclusion.detail
    message.provenance.fact_ids.extend(provenance.fact_ids)
    message.provenance.derived_from.extend(provenance.derived_from)
    message.provenance.source_references.extend(source_references)


def conclusion_to_proto(
    conclusion: Conclusion, source_references: Iterable[str] = ()
) -> pb.Conclusion:
    message = pb.Conclusion()
    _fill(message, conclusion, source_references)
    return message


def fact_to_proto(fact: FactIn) -> pb.Fact:
    fields = struct_pb2.Struct()
    fields.update(fact.fields)
    return pb.Fact(id=fact.id, type=fact.type, fields=fields)


def report_to_proto(report: MappingReport) -> pb.MappingReport:
    """The mapping report: references, statuses and reasons, never a value."""
    return pb.MappingReport(
        resources=[
            pb.ResourceReport(
                entry=resource.entry,
                reference=resource.reference,
                resource_type=resource.resource_type,
                status=resource.status.value,
                fact_ids=resource.fact_ids,
                reason=resource.reason.value if resource.reason is not None else "",
            )
            for resource in report.resources
        ],
        conflicts=[
            pb.MappingConflict(
                resolution=conflict.resolution.value,
                fact_id=conflict.fact_id,
                field=conflict.field or "",
                kept=conflict.kept,
                overridden=conflict.overridden,
            )
            for conflict in report.conflicts
        ],
    )


def conclusion_response(conclusion: Conclusion) -> pb.EvaluateResponse:
    response = pb.EvaluateResponse()
    _fill(response.conclusion, conclusion, ())  # built in place: no copy into the response
    return response


def summary_to_proto(result: EvaluationResult) -> pb.EvaluationSummary:
    return pb.EvaluationSummary(
        conclusion_count=len(result.conclusions),
        rules_fired=result.rules_fired,
        knowledge_base_version=kb.VERSION,
    )


def summary_response(result: EvaluationResult) -> pb.EvaluateResponse:
    """`Evaluate`'s last message."""
    return pb.EvaluateResponse(summary=summary_to_proto(result))


def knowledge_base_to_proto() -> pb.GetKnowledgeBaseResponse:
    """Everything a client needs to know what is accepted and what can come back."""
    return pb.GetKnowledgeBaseResponse(
        version=kb.VERSION,
        rulesets=[
            pb.Ruleset(
                name=group.name,
                description=group.source,
                rules=[
                    pb.Rule(
                        id=rule.id,
                        description=rule.fires_when,
                        conclusion_codes=[rule.code],
                        citation_ids=rule.citations,
                        evidence_note=rule.evidence.note,
                        certainty=rule.evidence.certainty.value,
                    )
                    for rule in group.rules
                ],
            )
            for group in kb.GROUPS
        ],
        fact_schemas={
            name: json.dumps(schema, sort_keys=True) for name, schema in fact_schemas().items()
        },
        references=[
            pb.Reference(
                id=reference.id,
                citation=reference.citation,
                doi=reference.doi or "",
                url=reference.url or "",
                supports=reference.supports,
                certainty=reference.certainty.value,
            )
            for reference in REFERENCES
        ],
        conclusions=[
            pb.ConclusionDefinition(
                code=rule.code,
                kind=_KINDS[rule.kind],
                urgency=_URGENCIES[rule.urgency],
                title=rule.title,
                fires_when=rule.fires_when,
            )
            for group in kb.GROUPS
            for rule in group.rules
        ],
        questionnaire_json=json.dumps(questionnaire(), sort_keys=True),
        fhir_code_tables_json=json.dumps(code_tables(), sort_keys=True),
    )


_CONDITION_KINDS = {
    (False, False): pb.CONDITION_KIND_FACT,
    (False, True): pb.CONDITION_KIND_NO_FACT,
    (True, False): pb.CONDITION_KIND_CONCLUSION,
    (True, True): pb.CONDITION_KIND_NO_CONCLUSION,
}


def _condition_to_proto(condition: ConditionResult) -> pb.ConditionExplanation:
    pattern = condition.pattern
    candidates = []
    for candidate in condition.candidates:
        tests = []
        for test in candidate.tests:
            observed = struct_pb2.Struct()
            observed.update(test.observed)
            tests.append(
                pb.TestExplanation(description=test.description, held=test.held, observed=observed)
            )
        candidates.append(
            pb.CandidateExplanation(id=candidate.id, matched=candidate.matched, tests=tests)
        )
    return pb.ConditionExplanation(
        kind=_CONDITION_KINDS[(pattern.is_conclusion, pattern.negated)],
        fact_type=pattern.fact_type or "",
        description=condition.description,
        held=condition.held,
        candidates=candidates,
    )


def explanation_to_proto(explanation: Explanation) -> pb.ExplainResponse:
    return pb.ExplainResponse(
        code=explanation.code,
        derived=explanation.derived,
        conclusion=(
            conclusion_to_proto(explanation.conclusion) if explanation.conclusion else None
        ),
        rules=[
            pb.RuleExplanation(
                rule_id=rule.rule.id,
                ruleset=rule.ruleset,
                fired=rule.fired,
                alternatives=[
                    pb.AlternativeExplanation(
                        held=alternative.held,
                        conditions=[_condition_to_proto(c) for c in alternative.conditions],
                    )
                    for alternative in rule.alternatives
                ],
            )
            for rule in explanation.rules
        ],
        chain=[explanation_to_proto(link) for link in explanation.chain],
        knowledge_base_version=kb.VERSION,
    )
