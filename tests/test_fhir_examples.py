"""The example bundles give exactly their facts files' facts and conclusions; and a
property: any valid fact set, written as FHIR in any encoding, reads back the same."""

from __future__ import annotations

import json
import random
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from fhir.resources.R4B.bundle import Bundle as OracleBundle
from fhir_writer import AS_OF, FLAG_CODES, Style, write_bundle
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fhir_in import Status, read_bundle
from kb.engine import RulesEngine
from kb.facts import (
    FACT_TYPES,
    MAX_EXACT_INTEGER,
    Fact,
    FactIn,
    fact_schemas,
    validate_facts,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
NAMES = sorted(p.stem for p in EXAMPLES.glob("*.json"))


def canonical(facts: Sequence[Fact]) -> list[tuple[str, str]]:
    """Facts without their ids (the reader names its own), as a sorted multiset."""
    return sorted(
        (f.type, json.dumps(f.value.model_dump(exclude_none=True), sort_keys=True)) for f in facts
    )


def facts_file(name: str) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = json.loads((EXAMPLES / f"{name}.json").read_text())["facts"]
    return facts


def test_there_are_five_examples_each_with_a_bundle() -> None:
    assert len(NAMES) == 5
    assert sorted(p.name for p in (EXAMPLES / "fhir").glob("*.bundle.json")) == [
        f"{name}.bundle.json" for name in NAMES
    ]


@pytest.mark.parametrize("name", NAMES)
def test_example_bundle_gives_exactly_its_facts_and_conclusions(
    name: str, engine: RulesEngine
) -> None:
    expected = validate_facts([FactIn(**fact) for fact in facts_file(name)])
    reading = read_bundle((EXAMPLES / "fhir" / f"{name}.bundle.json").read_text(), AS_OF)
    assert canonical(reading.facts) == canonical(expected)
    codes = sorted(c.code for c in engine.evaluate(reading.facts).conclusions)
    assert codes == sorted(c.code for c in engine.evaluate(expected).conclusions)
    assert codes  # every example concludes something


@pytest.mark.parametrize("name", NAMES)
def test_example_bundle_reports_every_resource(name: str) -> None:
    document = json.loads((EXAMPLES / "fhir" / f"{name}.bundle.json").read_text())
    reading = read_bundle(document, AS_OF)
    assert len(reading.report.resources) == len(document["entry"])
    used = {r.reference for r in reading.report.resources if r.status is Status.USED}
    assert used == {ref for refs in reading.sources.values() for ref in refs}


@pytest.mark.parametrize("name", NAMES)
def test_example_bundle_in_any_entry_order(name: str) -> None:
    document = json.loads((EXAMPLES / "fhir" / f"{name}.bundle.json").read_text())
    baseline = read_bundle(document, AS_OF)
    random.Random(name).shuffle(document["entry"])
    reading = read_bundle(document, AS_OF)
    assert reading.facts == baseline.facts
    assert reading.sources == baseline.sources


# ---- the property ----------------------------------------------------------------------------


def _value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    (option,) = [o for o in schema.get("anyOf", [schema]) if o.get("type") != "null"]
    if option.get("type") == "array":
        return st.lists(_value(option["items"]), min_size=1, max_size=3)
    if "enum" in option:
        return st.sampled_from(option["enum"])
    if option["type"] == "boolean":
        return st.booleans()
    low = option.get("minimum", option.get("exclusiveMinimum", 0))
    high = option.get("maximum", 10_000)
    high = 10_000 if high == MAX_EXACT_INTEGER else high
    if option["type"] == "integer":
        return st.integers(low, high)
    return st.floats(low, high, exclude_min="exclusiveMinimum" in option, allow_nan=False)


def _fields(name: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = fact_schemas()[name]
    required = set(schema.get("required", []))
    return st.fixed_dictionaries(
        {f: _value(s) for f, s in schema["properties"].items() if f in required},
        optional={f: _value(s) for f, s in schema["properties"].items() if f not in required},
    ).filter(bool)  # an empty fact has no FHIR form (nothing to answer)


def _vitals() -> st.SearchStrategy[dict[str, Any]]:
    def posture(prefix: str) -> st.SearchStrategy[dict[str, int]]:
        return st.integers(41, 300).flatmap(
            lambda sbp: st.fixed_dictionaries(
                {
                    f"{prefix}_sbp_mmhg": st.just(sbp),
                    f"{prefix}_dbp_mmhg": st.integers(20, min(200, sbp - 1)),
                    f"{prefix}_hr_bpm": st.integers(20, 250),
                }
            )
        )

    return st.tuples(posture("supine"), posture("standing")).map(lambda t: {**t[0], **t[1]})


@st.composite
def fact_sets(draw: st.DrawFn) -> list[dict[str, Any]]:
    facts: list[dict[str, Any]] = []
    for name, fact_type in FACT_TYPES.items():
        if not fact_type.singleton or not draw(st.booleans()):
            continue
        fields = draw(_vitals() if name == "orthostatic_vitals" else _fields(name))
        facts.append({"id": name, "type": name, "fields": fields})
    for n in range(draw(st.integers(0, 2))):
        facts.append({"id": f"i{n}", "type": "imaging", "fields": draw(_fields("imaging"))})
    kinds = draw(
        st.lists(
            st.sampled_from(FACT_TYPES["treatment"].model.model_fields["kind"].annotation.__args__),
            unique=True,
            max_size=3,
        )
    )  # type: ignore[union-attr]
    for kind in kinds:
        fields = draw(_fields("treatment"))
        fields["kind"] = kind
        if kind != "physical_therapy":
            fields.pop("components", None)
        facts.append({"id": f"t-{kind}", "type": "treatment", "fields": fields})
    return facts


@st.composite
def styles(draw: st.DrawFn) -> Style:
    return Style(
        vitals=draw(st.sampled_from(["specific", "generic", "panel", "form"])),
        urn_references=draw(st.booleans()),
        period=draw(st.booleans()),
        coded_flags=frozenset(draw(st.sets(st.sampled_from(sorted(FLAG_CODES))))),
        flag_system=draw(st.sampled_from(["snomed", "icd10cm"])),
        flags_also_in_form=draw(st.booleans()),
        versioned=draw(st.booleans()),
        birthday=draw(st.sampled_from([(1, 1), (3, 14), (6, 1)])),
        taken=draw(st.timedeltas(timedelta(0), timedelta(days=30))),
        bundle_type=draw(st.sampled_from(["collection", "searchset", "transaction"])),
    )


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(facts=fact_sets(), style=styles(), seed=st.randoms(use_true_random=False))
def test_any_valid_fact_set_round_trips_through_fhir(
    facts: list[dict[str, Any]], style: Style, seed: random.Random
) -> None:
    expected = validate_facts([FactIn(**fact) for fact in facts])
    document = write_bundle(facts, AS_OF, style)
    seed.shuffle(document["entry"])
    reading = read_bundle(json.dumps(document), AS_OF)
    assert canonical(reading.facts) == canonical(expected)


@settings(max_examples=25, deadline=None)
@given(facts=fact_sets(), style=styles())
def test_written_bundles_are_valid_for_the_oracle(
    facts: list[dict[str, Any]], style: Style
) -> None:
    OracleBundle.model_validate_json(json.dumps(write_bundle(facts, AS_OF, style)))
