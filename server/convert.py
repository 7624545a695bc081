"""The one seam between wire types (cds.v1 protos) and knowledge-base types."""

from __future__ import annotations

import json
from collections.abc import Iterable
from typing import Any

from google.protobuf import struct_pb2

import kb
from cds.v1 import decision_support_pb2 as pb
from kb.facts import FactIn, fact_schemas
from kb.model import Conclusion, Kind, Urgency
from kb.references import REFERENCES

_KINDS = {kind: pb.ConclusionKind.Value(f"CONCLUSION_KIND_{kind.value}") for kind in Kind}
_URGENCIES = {urgency: pb.Urgency.Value(f"URGENCY_{urgency.value}") for urgency in Urgency}


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: _value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(value, kind)


def facts_from_proto(facts: Iterable[pb.Fact]) -> list[FactIn]:
    """Struct fields as plain Python values: numbers arrive as floats, null as None."""
    return [
        FactIn(
            fact.id,
            fact.type,
            {key: _value(item) for key, item in fact.fields.fields.items()},
        )
        for fact in facts
    ]


def conclusion_to_proto(conclusion: Conclusion) -> pb.Conclusion:
    provenance = conclusion.provenance
    return pb.Conclusion(
        code=conclusion.code,
        kind=_KINDS[conclusion.kind],
        urgency=_URGENCIES[conclusion.urgency],
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
        ),
    )


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
                doi=reference.doi,
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
    )
