"""Every validation rule of the fact vocabulary (spec `facts.md`), at the knowledge-base level.

The cases are data in `validation_cases.py` (shared with the gRPC tests); this module runs
them against `kb.facts.validate_facts` and checks the published JSON Schema.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable
from typing import Any

import pytest
from validation_cases import (
    CASES,
    FACT_INVALID,
    LIMIT_EXCEEDED,
    NAMED_VALID_CASES,
    PRIVACY_CASES,
    SENTINELS,
    TREATMENT_KINDS,
    VALID_CASES,
    VOCABULARY,
    Case,
    fact,
)

from kb.facts import FactIn, InvalidFacts, fact_schemas, validate_facts


def to_fact_in(facts: Iterable[dict[str, Any]]) -> list[FactIn]:
    return [FactIn(id=f["id"], type=f["type"], fields=f["fields"]) for f in facts]


def rejection(facts: list[dict[str, Any]], **kwargs: Any) -> InvalidFacts:
    with pytest.raises(InvalidFacts) as caught:
        validate_facts(to_fact_in(facts), **kwargs)
    return caught.value


# ---------------------------------------------------------------------------------------
# The table itself
# ---------------------------------------------------------------------------------------


def test_case_table_is_well_formed() -> None:
    names = [case.name for case in CASES + PRIVACY_CASES]
    assert len(names) == len(set(names)), "case names must be unique"
    assert len(VALID_CASES) == len(NAMED_VALID_CASES)
    for case in CASES + PRIVACY_CASES:
        assert case.reason in (FACT_INVALID, LIMIT_EXCEEDED), case.name
        assert case.paths, case.name
        # JSON-compatible (NaN/inf allowed: protobuf Struct carries them as doubles).
        json.dumps(case.facts)
    for facts in VALID_CASES:
        json.dumps(facts)


# ---------------------------------------------------------------------------------------
# Rejected requests: exact paths and reason
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", CASES + PRIVACY_CASES, ids=lambda case: case.name)
def test_invalid_case_is_rejected_with_exact_paths(case: Case) -> None:
    error = rejection(case.facts)
    assert error.reason == case.reason
    assert {v.field for v in error.violations} == set(case.paths)
    for violation in error.violations:
        assert isinstance(violation.description, str)
        assert violation.description.strip(), violation.field


# ---------------------------------------------------------------------------------------
# Accepted requests: every fact comes back, values as given (null = absent)
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", list(NAMED_VALID_CASES))
def test_valid_case_is_accepted(name: str) -> None:
    facts = NAMED_VALID_CASES[name]
    validated = validate_facts(to_fact_in(facts))
    assert [(f.id, f.type) for f in validated] == [(f["id"], f["type"]) for f in facts]
    for given, result in zip(facts, validated, strict=True):
        spec = VOCABULARY[given["type"]]
        for field, value in given["fields"].items():
            stored = getattr(result.value, field)
            if value is None:
                assert stored is None, f"{field}: null must count as absent"
                continue
            assert stored == value, field
            if spec[field].kind == "integer":
                assert type(stored) is int, f"{field}: an integer field must hold an int"
        for field in spec.keys() - given["fields"].keys():
            assert getattr(result.value, field, None) is None, f"{field} absent: not known"


def test_integer_given_as_double_is_stored_as_int() -> None:
    [patient] = validate_facts(to_fact_in([fact("patient", {"age_years": 40.0})]))
    assert patient.value.age_years == 40
    assert type(patient.value.age_years) is int


def test_limit_is_configurable() -> None:
    facts = [fact("imaging", None, f"i{n}") for n in range(4)]
    assert len(validate_facts(to_fact_in(facts[:3]), max_facts=3)) == 3
    error = rejection(facts, max_facts=3)
    assert error.reason == LIMIT_EXCEEDED
    assert [v.field for v in error.violations] == ["facts"]


def test_exactly_500_facts_accepted_501_rejected() -> None:
    five_hundred = NAMED_VALID_CASES["limit.exactly_500"]
    assert len(five_hundred) == 500
    assert len(validate_facts(to_fact_in(five_hundred))) == 500
    error = rejection([*five_hundred, fact("imaging", None, "one-more")])
    assert error.reason == LIMIT_EXCEEDED
    assert [v.field for v in error.violations] == ["facts"]


# ---------------------------------------------------------------------------------------
# Privacy: descriptions may name the fact id, never the offending value
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("case", PRIVACY_CASES, ids=lambda case: case.name)
def test_descriptions_never_contain_fact_values(case: Case) -> None:
    error = rejection(case.facts)
    assert error.violations
    for violation in error.violations:
        for sentinel in SENTINELS:
            assert sentinel not in violation.description, (violation.field, sentinel)


@pytest.mark.parametrize("kind", TREATMENT_KINDS)
def test_repeated_treatment_kind_description_does_not_echo_the_kind(kind: str) -> None:
    """`kind` is a fact value (health data): the violation names the path, not the value."""
    facts = [
        fact("treatment", {"kind": kind, "response": "pending"}, "t1"),
        fact("treatment", {"kind": kind, "response": "adequate"}, "t2"),
    ]
    error = rejection(facts)
    assert [v.field for v in error.violations] == ["facts[1].fields.kind"]
    assert kind not in error.violations[0].description


# ---------------------------------------------------------------------------------------
# Published JSON Schema
# ---------------------------------------------------------------------------------------


def _branches(prop: dict[str, Any]) -> list[dict[str, Any]]:
    """The non-null alternatives of a property schema (pydantic writes `anyOf` for X | None)."""
    branches = prop.get("anyOf", [prop])
    return [b for b in branches if b.get("type") != "null"]


def test_schema_published_for_every_fact_type() -> None:
    schemas = fact_schemas()
    assert set(VOCABULARY) <= set(schemas)
    for type_, fields in VOCABULARY.items():
        schema = schemas[type_]
        assert schema.get("type") == "object", type_
        assert schema.get("additionalProperties") is False, type_
        required = {name for name, spec in fields.items() if spec.required}
        assert set(schema.get("required", [])) == required, type_
        assert set(fields) <= set(schema["properties"]), type_


@pytest.mark.parametrize(
    ("type_", "field"),
    [(type_, field) for type_, fields in VOCABULARY.items() for field in fields],
)
def test_schema_property_matches_vocabulary(type_: str, field: str) -> None:
    spec = VOCABULARY[type_][field]
    [branch] = _branches(fact_schemas()[type_]["properties"][field])
    if spec.kind == "bool":
        assert branch["type"] == "boolean"
    elif spec.kind == "enum":
        assert branch["type"] == "string"
        assert set(branch["enum"]) == set(spec.values)
    elif spec.kind == "list":
        assert branch["type"] == "array"
        assert set(branch["items"]["enum"]) == set(spec.values)
    else:
        assert branch["type"] == spec.kind
        low_key = "exclusiveMinimum" if spec.exclusive_minimum else "minimum"
        assert branch[low_key] == spec.minimum
        if spec.maximum is not None:
            assert branch["maximum"] == spec.maximum
            assert not math.isinf(branch["maximum"])
