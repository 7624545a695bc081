"""The assessment Questionnaire, generated from the fact models.

Most of what the rules read has no standard code in EHR data, so the service
publishes its own form. It is built from `kb.facts.FACT_TYPES` (through the same
JSON Schema the API publishes), never written by hand: a field added to a fact
model appears in the form, and in the reader's index of questions, with no
other change.

`patient` has no group: age and sex come from the `Patient` resource, and a
second source for them would only create conflicts to resolve.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import kb
from kb.facts import FACT_TYPES, MAX_EXACT_INTEGER, fact_schemas

DEFAULT_BASE = "urn:cgh-cds"
QUESTIONNAIRE_ID = "cgh-assessment"
# Fact types that come from other resources, not from the form.
NOT_IN_FORM = frozenset({"patient"})
REPEATING_GROUPS = frozenset(name for name, t in FACT_TYPES.items() if not t.singleton)
_MIN_VALUE = "http://hl7.org/fhir/StructureDefinition/minValue"
_MAX_VALUE = "http://hl7.org/fhir/StructureDefinition/maxValue"


def canonical(base: str = DEFAULT_BASE) -> str:
    """The Questionnaire's canonical URL (without version)."""
    return f"{base}/Questionnaire/{QUESTIONNAIRE_ID}"


@dataclass(frozen=True)
class Question:
    """One question of the form: which fact field it fills and how it is answered."""

    link_id: str
    fact_type: str
    field: str
    item_type: str  # boolean, integer, decimal, choice
    repeats: bool
    required: bool
    options: tuple[str, ...]  # the codes of a choice


def _question(fact_type: str, field: str, schema: dict[str, Any], required: bool) -> Question:
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    (option,) = options
    repeats = option.get("type") == "array"
    if repeats:
        option = option["items"]
    if "enum" in option:
        item_type, codes = "choice", tuple(option["enum"])
    else:
        item_type = {"boolean": "boolean", "integer": "integer", "number": "decimal"}[
            option["type"]
        ]
        codes = ()
    return Question(f"{fact_type}.{field}", fact_type, field, item_type, repeats, required, codes)


@cache
def questions() -> dict[str, Question]:
    """Every question by linkId (`type.field`), in form order."""
    index = {}
    for fact_type, schema in fact_schemas().items():
        if fact_type in NOT_IN_FORM:
            continue
        required = set(schema.get("required", []))
        for field, field_schema in schema["properties"].items():
            question = _question(fact_type, field, field_schema, field in required)
            index[question.link_id] = question
    return index


def groups() -> list[str]:
    """The group linkIds (fact types), in form order."""
    return [name for name in FACT_TYPES if name not in NOT_IN_FORM]


def _bounds(schema: dict[str, Any], item_type: str) -> list[dict[str, Any]]:
    """Inclusive bounds as the standard min/maxValue extensions (form renderers check them)."""
    options = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    option = options[0]
    value_key = "valueInteger" if item_type == "integer" else "valueDecimal"
    extensions = []
    for key, url in (("minimum", _MIN_VALUE), ("maximum", _MAX_VALUE)):
        if key in option and option[key] != MAX_EXACT_INTEGER:
            extensions.append({"url": url, value_key: option[key]})
    return extensions


def _text(field: str, schema: dict[str, Any]) -> str:
    words = field.replace("_", " ")
    description = schema.get("description")
    return f"{words} ({description})" if description else words


def questionnaire(base: str = DEFAULT_BASE) -> dict[str, Any]:
    """The assessment Questionnaire (FHIR R4 JSON) for `base`."""
    schemas = fact_schemas()
    index = questions()
    items = []
    for group in groups():
        children = []
        for field, field_schema in schemas[group]["properties"].items():
            question = index[f"{group}.{field}"]
            child: dict[str, Any] = {
                "linkId": question.link_id,
                "text": _text(field, field_schema),
                "type": question.item_type,
            }
            if question.required:
                child["required"] = True
            if question.repeats:
                child["repeats"] = True
            if question.options:
                child["answerOption"] = [
                    {"valueCoding": {"code": code, "display": code.replace("_", " ")}}
                    for code in question.options
                ]
            if question.item_type in ("integer", "decimal"):
                bounds = _bounds(field_schema, question.item_type)
                if bounds:
                    child["extension"] = bounds
            children.append(child)
        group_item: dict[str, Any] = {
            "linkId": group,
            "text": FACT_TYPES[group].description,
            "type": "group",
            "item": children,
        }
        if group in REPEATING_GROUPS:
            group_item["repeats"] = True
        items.append(group_item)
    return {
        "resourceType": "Questionnaire",
        "id": QUESTIONNAIRE_ID,
        "url": canonical(base),
        "version": kb.VERSION,
        "name": "CghAssessment",
        "title": "Cervicogenic headache assessment",
        "status": "active",
        "subjectType": ["Patient"],
        "description": (
            "What the cervicogenic-headache decision support reads that EHR data does not code: "
            "one group per fact type, one question per field (linkId `type.field`). Generated "
            "from the knowledge base's fact models."
        ),
        "item": items,
    }
