"""Structurally invalid FHIR: `FHIR_INVALID` with JSON paths, and fhir.resources as the oracle.

The reader parses a strict subset of R4 (`fhir_in.structure`) for speed. On this
corpus, fhir.resources (R4B models) must agree: every bundle the subset accepts
it accepts, and every bundle the subset rejects it rejects, except the cases
listed with `oracle_accepts`: there the subset is stricter on purpose, each for
the reason given (fhir.resources coerces JSON types and does not enforce
required bindings; two Patients is a rule of fhir.md, not of R4; and so on).
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle as OracleBundle
from fhir_helpers import orthostatic_test
from fhir_writer import (
    AS_OF,
    ICD10CM,
    SNOMED,
    bundle,
    condition,
    group,
    observation,
    patient,
    response,
)
from pydantic import ValidationError

from fhir_in import read_bundle
from kb.facts import InvalidFacts

EXAMPLES = sorted((Path(__file__).resolve().parents[1] / "examples" / "fhir").glob("*.json"))
RECENT = AS_OF - timedelta(days=1)


def oracle_accepts(document: str) -> bool:
    try:
        OracleBundle.model_validate_json(document)
    except (ValidationError, ValueError):
        return False
    return True


def _obs(**changes: Any) -> dict[str, Any]:
    resource = observation("8867-4", 72, RECENT, id="o1", posture="supine")
    for key, value in changes.items():
        if value is None:
            resource.pop(key, None)
        else:
            resource[key] = value
    return resource


def _with(resource: dict[str, Any]) -> str:
    return json.dumps(bundle(patient(), resource))


def _edit(document: dict[str, Any], path: list[Any], value: Any) -> str:
    document = copy.deepcopy(document)
    target = document
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return json.dumps(document)


FORM = response(group("headache", {"onset": "gradual", "attack_count": 2}))
FORM_BUNDLE = bundle(patient(), FORM)
ANSWER = ["entry", 1, "resource", "item", 0, "item", 1, "answer", 0]


@dataclass(frozen=True)
class Case:
    name: str
    document: str
    paths: tuple[str, ...]
    oracle_accepts: str | None = None  # why the subset is stricter, when it is


CASES = [
    Case("not JSON", "{not json", ("$",)),
    Case("truncated JSON", '{"resourceType": "Bundle", "type": "coll', ("$",)),
    Case("an array", "[]", ("$",)),
    Case("not a Bundle", json.dumps(patient()), ("resourceType", "type")),
    Case("no Bundle.type", json.dumps({"resourceType": "Bundle"}), ("type",)),
    Case(
        "entry is not an array",
        '{"resourceType": "Bundle", "type": "collection", "entry": {}}',
        ("entry",),
    ),
    Case(
        "two Patients",
        json.dumps(bundle(patient(), patient(id="p2"))),
        ("entry[1].resource",),
        oracle_accepts="one Patient per bundle is fhir.md's rule, not R4's",
    ),
    Case(
        "no resourceType",
        json.dumps(
            {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"id": "x"}}]}
        ),
        ("entry[0].resource.resourceType",),
        oracle_accepts="fhir.resources 8.3.0 accepts an entry resource without resourceType",
    ),
    Case("id with a space", _with(_obs(id="o 1")), ("entry[1].resource.id",)),
    Case(
        "birthDate not a date",
        json.dumps(bundle(patient(birth_date="1987-02-30"))),
        ("entry[0].resource.birthDate",),
    ),
    Case(
        "birthDate a number",
        json.dumps(bundle(patient(birthDate=1987))),
        ("entry[0].resource.birthDate",),
    ),
    Case(
        "gender outside its required binding",
        json.dumps(bundle(patient(gender="M"))),
        ("entry[0].resource.gender",),
        oracle_accepts="fhir.resources does not enforce required bindings",
    ),
    Case(
        "value a string",
        _with(_obs(valueQuantity={"value": "72", "unit": "/min"})),
        ("entry[1].resource.valueQuantity.value",),
        oracle_accepts="fhir.resources coerces a JSON string to a decimal",
    ),
    Case(
        "value a boolean",
        _with(_obs(valueQuantity={"value": True})),
        ("entry[1].resource.valueQuantity.value",),
    ),
    Case(
        "value NaN",
        _with(_obs()).replace('"value": 72', '"value": NaN'),
        ("entry[1].resource.valueQuantity.value",),
    ),
    Case("value and valueString", _with(_obs(valueString="72")), ("entry[1].resource",)),
    Case(
        "effective in two forms",
        _with(_obs(effectivePeriod={"start": "2025-05-31T10:00:00Z"})),
        ("entry[1].resource",),
    ),
    Case(
        "effectiveDateTime not a dateTime",
        _with(_obs(effectiveDateTime="yesterday")),
        ("entry[1].resource.effectiveDateTime",),
    ),
    Case(
        "time without zone",
        _with(_obs(effectiveDateTime="2025-05-31T10:00:00")),
        ("entry[1].resource.effectiveDateTime",),
    ),
    Case(
        "period start a number",
        _with(_obs(effectiveDateTime=None, effectivePeriod={"start": 5})),
        ("entry[1].resource.effectivePeriod.start",),
        oracle_accepts="fhir.resources reads a JSON number as a Unix time",
    ),
    Case("no status", _with(_obs(status=None)), ("entry[1].resource.status",)),
    Case(
        "status outside its required binding",
        _with(_obs(status="done")),
        ("entry[1].resource.status",),
        oracle_accepts="fhir.resources does not enforce required bindings",
    ),
    Case("no code", _with(_obs(code=None)), ("entry[1].resource.code",)),
    Case(
        "coding not an array",
        _with(_obs(code={"coding": {"code": "8867-4"}})),
        ("entry[1].resource.code.coding",),
    ),
    Case(
        "code a number",
        _with(_obs(code={"coding": [{"system": "http://loinc.org", "code": 8867}]})),
        ("entry[1].resource.code.coding[0].code",),
    ),
    Case(
        "extension without url",
        _with(_obs(extension=[{"valueString": "x"}])),
        ("entry[1].resource.extension[0].url",),
    ),
    Case(
        "component without code",
        _with(_obs(component=[{"valueQuantity": {"value": 1}}])),
        ("entry[1].resource.component[0].code",),
    ),
    Case(
        "subject not an object", _with(_obs(subject="Patient/p1")), ("entry[1].resource.subject",)
    ),
    Case(
        "Condition without subject",
        _with({k: v for k, v in condition("271730003", SNOMED, id="c1").items() if k != "subject"}),
        ("entry[1].resource.subject",),
    ),
    Case(
        "reference a number",
        _with(condition("271730003", SNOMED, id="c1", subject=5)),
        ("entry[1].resource.subject.reference",),
    ),
    Case(
        "recordedDate not a date",
        _with(condition("G90.2", ICD10CM, id="c1", recordedDate="now")),
        ("entry[1].resource.recordedDate",),
    ),
    Case(
        "response status outside its binding",
        _edit(FORM_BUNDLE, ["entry", 1, "resource", "status"], "done"),
        ("entry[1].resource.status",),
        oracle_accepts="fhir.resources does not enforce required bindings",
    ),
    Case(
        "authored not a dateTime",
        _edit(FORM_BUNDLE, ["entry", 1, "resource", "authored"], "2025-13-01"),
        ("entry[1].resource.authored",),
    ),
    Case(
        "item without linkId",
        _edit(FORM_BUNDLE, ["entry", 1, "resource", "item", 0], {"item": []}),
        ("entry[1].resource.item[0].linkId",),
    ),
    Case(
        "valueInteger a string",
        _edit(FORM_BUNDLE, ANSWER, {"valueInteger": "2"}),
        ("entry[1].resource.item[0].item[1].answer[0].valueInteger",),
        oracle_accepts="fhir.resources coerces a JSON string to an integer",
    ),
    Case(
        "valueInteger 2.0",
        _edit(FORM_BUNDLE, ANSWER, {"valueInteger": 2.0}),
        ("entry[1].resource.item[0].item[1].answer[0].valueInteger",),
        oracle_accepts="fhir.resources takes 2.0 for an integer; R4 integers have no fraction",
    ),
    Case(
        "valueInteger beyond 32 bits",
        _edit(FORM_BUNDLE, ANSWER, {"valueInteger": 2**31}),
        ("entry[1].resource.item[0].item[1].answer[0].valueInteger",),
    ),
    Case(
        "valueBoolean a string",
        _edit(FORM_BUNDLE, ANSWER, {"valueBoolean": "true"}),
        ("entry[1].resource.item[0].item[1].answer[0].valueBoolean",),
        oracle_accepts="fhir.resources coerces the string 'true' to a boolean",
    ),
    Case(
        "valueBoolean a number",
        _edit(FORM_BUNDLE, ANSWER, {"valueBoolean": 1}),
        ("entry[1].resource.item[0].item[1].answer[0].valueBoolean",),
        oracle_accepts="fhir.resources coerces 1 to a boolean",
    ),
    Case(
        "answer in two forms",
        _edit(FORM_BUNDLE, ANSWER, {"valueInteger": 2, "valueDecimal": 2.0}),
        ("entry[1].resource.item[0].item[1].answer[0]",),
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_structural_error_is_fhir_invalid_with_its_path(case: Case) -> None:
    with pytest.raises(InvalidFacts) as caught:
        read_bundle(case.document, AS_OF)
    assert caught.value.reason == "FHIR_INVALID"
    assert tuple(v.field for v in caught.value.violations) == case.paths


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_oracle_agrees_or_the_difference_is_noted(case: Case) -> None:
    assert oracle_accepts(case.document) is (case.oracle_accepts is not None)


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_descriptions_carry_no_values(case: Case) -> None:
    with pytest.raises(InvalidFacts) as caught:
        read_bundle(case.document, AS_OF)
    for violation in caught.value.violations:
        for value in ("1987-02-30", "yesterday", "done", "o 1", "8867", "2025-13-01"):
            assert value not in violation.description


def test_mapping_input_gives_the_same_paths() -> None:
    document = json.loads(_with(_obs(valueQuantity={"value": "72"})))
    with pytest.raises(InvalidFacts) as caught:
        read_bundle(document, AS_OF)
    assert [v.field for v in caught.value.violations] == ["entry[1].resource.valueQuantity.value"]


def test_every_violation_is_reported() -> None:
    document = json.dumps(
        bundle(patient(gender="M"), _obs(status="done", effectiveDateTime="yesterday"))
    )
    with pytest.raises(InvalidFacts) as caught:
        read_bundle(document, AS_OF)
    assert sorted(v.field for v in caught.value.violations) == [
        "entry[0].resource.gender",
        "entry[1].resource.effectiveDateTime",
        "entry[1].resource.status",
    ]


def test_elements_not_read_are_not_checked() -> None:
    """A wrong type where the reader never looks is accepted (the oracle, which checks
    everything, rejects it): the subset checks only what it uses."""
    resource = _obs(issued=12, category="vital-signs")
    document = _with(resource)
    assert read_bundle(document, AS_OF).report.resources[1].reference == "Observation/o1"
    assert not oracle_accepts(document)


# ---- the valid corpus: both accept --------------------------------------------------------


def _valid_corpus() -> dict[str, str]:
    corpus = {path.name: path.read_text() for path in EXAMPLES}
    for encoding in ("specific", "generic", "panel"):
        corpus[f"test {encoding}"] = json.dumps(
            bundle(patient(), *orthostatic_test(RECENT, encoding))
        )
    rich = patient()
    rich["contained"] = [{"resourceType": "Organization", "id": "org", "name": "Clinic"}]
    rich["managingOrganization"] = {"reference": "#org"}
    rich["extension"] = [
        {
            "url": "http://hl7.org/fhir/us/core/StructureDefinition/us-core-birthsex",
            "valueCode": "F",
        }
    ]
    corpus["real-record extras"] = json.dumps(
        bundle(
            rich,
            _obs(
                effectiveDateTime="2025-05-31T10:00:00.123456789+02:00",
                issued="2025-05-31T10:00:00Z",
            ),
            condition("Z85.3", ICD10CM, id="c1", clinical="resolved", recordedDate="2020"),
            response(group("cervical_exam", {"rom_reduced": True})),
            {
                "resourceType": "Encounter",
                "id": "e1",
                "status": "finished",
                "class": {
                    "system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                    "code": "AMB",
                },
            },
            kind="searchset",
        )
    )
    document = bundle(patient(), _obs(), kind="transaction")
    for entry_ in document["entry"]:
        entry_["request"] = {"method": "PUT", "url": f"{entry_['resource']['resourceType']}/x"}
    corpus["transaction"] = json.dumps(document)
    corpus["no Patient"] = json.dumps(bundle(_obs()))
    corpus["empty"] = json.dumps({"resourceType": "Bundle", "type": "collection"})
    return corpus


VALID = _valid_corpus()


@pytest.mark.parametrize("name", list(VALID))
def test_valid_corpus_is_accepted_by_both(name: str) -> None:
    read_bundle(VALID[name], AS_OF)
    assert oracle_accepts(VALID[name])
