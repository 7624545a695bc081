"""The generated assessment Questionnaire, the generated documentation, the example bundles."""

from __future__ import annotations

import json
from typing import Any, Literal

import make_fhir_examples
import pytest
from fhir.resources.R4B.questionnaire import Questionnaire as OracleQuestionnaire
from fhir_helpers import fields, read
from fhir_writer import group, response

import kb
from fhir_in import Reason, docs, questionnaire
from fhir_in.questionnaire import questions
from kb.facts import FACT_TYPES, TREATMENT_KINDS, FactType, Headache


def _items(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    found = {}
    for group_item in document["item"]:
        found[group_item["linkId"]] = group_item
        for child in group_item["item"]:
            found[child["linkId"]] = child
    return found


def test_every_model_field_is_a_question_except_patient() -> None:
    items = _items(questionnaire())
    expected = {
        f"{name}.{field}"
        for name, fact_type in FACT_TYPES.items()
        if name != "patient"
        for field in fact_type.model.model_fields
    }
    expected |= set(FACT_TYPES) - {"patient"}
    assert set(items) == expected


@pytest.mark.parametrize(("link_id", "item_type", "repeats"), [
    ("headache", "group", False),
    ("imaging", "group", True),
    ("treatment", "group", True),
    ("headache.side_locked", "boolean", False),
    ("headache.attack_count", "integer", False),
    ("headache.attack_duration_hours", "decimal", False),
    ("headache.onset", "choice", False),
    ("treatment.components", "choice", True),
    ("orthostatic_vitals.supine_hr_bpm", "integer", False),
])  # fmt: skip
def test_item_types(link_id: str, item_type: str, repeats: bool) -> None:
    item = _items(questionnaire())[link_id]
    assert item["type"] == item_type
    assert item.get("repeats", False) is repeats


def test_choices_list_the_enum_values_as_codes() -> None:
    items = _items(questionnaire())
    codes = [o["valueCoding"]["code"] for o in items["treatment.kind"]["answerOption"]]
    assert codes == list(TREATMENT_KINDS)
    assert items["treatment.kind"]["required"] is True
    assert "required" not in items["treatment.weeks"]


def test_bounds_are_published_as_min_and_max_value() -> None:
    item = _items(questionnaire())["orthostatic_vitals.supine_hr_bpm"]
    assert {e["url"].rsplit("/", 1)[1]: e["valueInteger"] for e in item["extension"]} == {
        "minValue": 20,
        "maxValue": 250,
    }


def test_header() -> None:
    document = questionnaire("https://cds.example.org")
    assert document["url"] == "https://cds.example.org/Questionnaire/cgh-assessment"
    assert (document["version"], document["status"]) == (kb.VERSION, "active")


def test_fhir_resources_accepts_the_questionnaire() -> None:
    OracleQuestionnaire.model_validate(questionnaire())


def test_a_new_field_is_asked_and_read_with_no_other_change(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    class Extended(Headache):
        worse_in_the_morning: bool | None = None
        nights_woken: int | None = None
        wake_pattern: Literal["early", "late"] | None = None

    extended = FactType("headache", Extended, True, FACT_TYPES["headache"].description)
    monkeypatch.setitem(FACT_TYPES, "headache", extended)
    questions.cache_clear()
    try:
        items = _items(questionnaire())
        assert items["headache.worse_in_the_morning"]["type"] == "boolean"
        assert items["headache.nights_woken"]["type"] == "integer"
        assert [
            o["valueCoding"]["code"] for o in items["headache.wake_pattern"]["answerOption"]
        ] == [
            "early",
            "late",
        ]
        answers = {"worse_in_the_morning": True, "nights_woken": 2, "wake_pattern": "late"}
        assert fields(read(response(group("headache", answers))), "headache") == answers
    finally:
        monkeypatch.undo()
        questions.cache_clear()


def test_docs_are_up_to_date() -> None:
    assert docs.main(["--check"]) == 0


def test_published_questionnaire_file_is_the_generated_one() -> None:
    assert json.loads(docs.QUESTIONNAIRE.read_text()) == questionnaire()


def test_docs_name_every_reason_and_code() -> None:
    text = docs.render()
    for reason in Reason:
        assert f"`{reason.value}`" in text
    for code in ("271730003", "`C00` to `C96` and subcodes", "H47.1", "98942", "85354-9"):
        assert code in text


def test_example_bundles_are_generated() -> None:
    assert make_fhir_examples.main(["--check"]) == 0
