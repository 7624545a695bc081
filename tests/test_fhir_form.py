"""The assessment QuestionnaireResponse, and merging it with coded data (fhir.md section 1)."""

from __future__ import annotations

import random
from datetime import timedelta
from typing import Any

import pytest
from fhir_helpers import VITALS, fields, invalid, orthostatic_test, read, reason
from fhir_writer import AS_OF, ICD10CM, SNOMED, condition, group, patient, response

import kb
from fhir_in import Resolution, canonical

CANONICAL = canonical()
HEADACHE = {"laterality": "unilateral", "side_locked": True, "attack_count": 3}
FORM = "QuestionnaireResponse/q1"


def form(*groups: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    return response(*(groups or (group("headache", HEADACHE),)), **kwargs)


# ---- which response counts ------------------------------------------------------------------


@pytest.mark.parametrize(("status", "counts"), [
    ("completed", True),
    ("amended", True),
    ("in-progress", False),
    ("stopped", False),
    ("entered-in-error", False),
])  # fmt: skip
def test_response_status(status: str, counts: bool) -> None:
    reading = read(form(status=status))
    assert (fields(reading, "headache") == HEADACHE) is counts
    assert reason(reading, FORM) == ("USED" if counts else "STATUS")


@pytest.mark.parametrize(("questionnaire", "counts"), [
    (CANONICAL, True),
    (f"{CANONICAL}|{kb.VERSION}", True),
    (f"{CANONICAL}|1.0.0", True),  # any version
    ("urn:cgh-cds/Questionnaire/other", False),
    (f"{CANONICAL}-v2", False),
    ("http://example.org/Questionnaire/cgh-assessment", False),
    (None, False),
])  # fmt: skip
def test_questionnaire_canonical(questionnaire: str | None, counts: bool) -> None:
    reading = read(form(questionnaire=questionnaire))
    assert reason(reading, FORM) == ("USED" if counts else "UNKNOWN_CODE")


def test_questionnaire_base_is_configurable() -> None:
    name = "https://cds.example.org/Questionnaire/cgh-assessment|2.0.0"
    assert reason(read(form(questionnaire=name)), FORM) == "UNKNOWN_CODE"
    reading = read(form(questionnaire=name), questionnaire_base="https://cds.example.org")
    assert reason(reading, FORM) == "USED"


@pytest.mark.parametrize(("authored", "outcome"), [
    (AS_OF, "USED"),
    (AS_OF + timedelta(seconds=1), "AFTER_AS_OF"),
    ("2025-05-30", "PARTIAL_DATE"),
    (None, "INCOMPLETE"),
])  # fmt: skip
def test_authored(authored: Any, outcome: str) -> None:
    assert reason(read(form(authored=authored)), FORM) == outcome


def test_the_latest_by_authored_counts_in_any_entry_order() -> None:
    older = form(
        group("headache", {"onset": "sudden"}), id="old", authored=AS_OF - timedelta(days=9)
    )
    newer = form(
        group("headache", {"onset": "gradual"}), id="new", authored=AS_OF - timedelta(days=1)
    )
    for order in ((older, newer), (newer, older)):
        reading = read(*order)
        assert fields(reading, "headache") == {"onset": "gradual"}
        assert reason(reading, "QuestionnaireResponse/old") == "SUPERSEDED"


def test_a_newer_response_after_as_of_does_not_supersede() -> None:
    older = form(
        group("headache", {"onset": "sudden"}), id="old", authored=AS_OF - timedelta(days=9)
    )
    future = form(
        group("headache", {"onset": "gradual"}), id="new", authored=AS_OF + timedelta(days=1)
    )
    reading = read(older, future)
    assert fields(reading, "headache") == {"onset": "sudden"}


def test_another_patients_response_is_not_read() -> None:
    reading = read(form(subject="Patient/p2"))
    assert reason(reading, FORM) == "NOT_THIS_PATIENT"
    assert fields(reading, "headache") is None


# ---- answers --------------------------------------------------------------------------------


@pytest.mark.parametrize(("link_id", "answer", "value"), [
    ("headache.side_locked", {"valueBoolean": False}, False),
    ("headache.attack_count", {"valueInteger": 12}, 12),
    ("headache.attack_count", {"valueDecimal": 12.0}, 12),  # a whole decimal for an integer
    ("headache.attack_duration_hours", {"valueDecimal": 2.5}, 2.5),
    ("headache.attack_duration_hours", {"valueInteger": 2}, 2.0),
    ("headache.onset", {"valueCoding": {"code": "sudden"}}, "sudden"),
    ("headache.onset", {"valueCoding": {"system": "urn:x", "code": "sudden"}}, "sudden"),
])  # fmt: skip
def test_each_answer_type(link_id: str, answer: dict[str, Any], value: Any) -> None:
    item = {"linkId": "headache", "item": [{"linkId": link_id, "answer": [answer]}]}
    assert fields(read(form(item)), "headache") == {link_id.split(".")[1]: value}


@pytest.mark.parametrize(("link_id", "answer"), [
    ("headache.side_locked", {"valueInteger": 1}),
    ("headache.side_locked", {"valueString": "yes"}),
    ("headache.attack_count", {"valueDecimal": 12.5}),
    ("headache.attack_count", {"valueBoolean": True}),
    ("headache.attack_count", {"valueInteger": -1}),
    ("headache.attack_duration_hours", {"valueDecimal": 0.0}),
    ("headache.onset", {"valueCoding": {"code": "thunderclap"}}),
    ("headache.onset", {"valueCoding": {"system": "urn:x"}}),
    ("headache.onset", {"valueString": "sudden"}),
    ("headache.onset", {}),
])  # fmt: skip
def test_answer_breaking_the_contract_is_fact_invalid_at_its_path(
    link_id: str, answer: dict[str, Any]
) -> None:
    item = {
        "linkId": "headache",
        "item": [
            {"linkId": "headache.laterality", "answer": [{"valueCoding": {"code": "bilateral"}}]},
            {"linkId": link_id, "answer": [answer]},
        ],
    }
    reason_, violations = invalid(form(item))
    assert reason_ == "FACT_INVALID"
    assert [v.field.split(".valueCoding")[0] for v in violations] == [
        "entry[1].resource.item[0].item[1].answer[0]"
    ]
    assert "thunderclap" not in violations[0].description
    assert "12.5" not in violations[0].description


def test_treatment_components_repeat_and_their_paths() -> None:
    treatment = group(
        "treatment",
        {
            "kind": "physical_therapy",
            "components": ["manual_therapy", "motor_control"],
            "response": "pending",
        },
    )
    reading = read(form(treatment))
    assert fields(reading, "treatment-physical_therapy") == {
        "kind": "physical_therapy",
        "components": ["manual_therapy", "motor_control"],
        "response": "pending",
    }
    treatment["item"][1]["answer"][1] = {"valueCoding": {"code": "massage"}}
    _, violations = invalid(form(treatment))
    assert [v.field for v in violations] == ["entry[1].resource.item[0].item[1].answer[1]"]


def test_components_on_another_kind_is_fact_invalid() -> None:
    treatment = group(
        "treatment",
        {"kind": "amitriptyline", "components": ["strengthening"], "response": "pending"},
    )
    _, violations = invalid(form(treatment))
    assert [v.field for v in violations] == ["entry[1].resource.item[0].item[1].answer[0]"]


def test_missing_required_answer_points_at_the_group() -> None:
    _, violations = invalid(form(group("imaging", {"modality": "mri", "region": "brain"})))
    assert [v.field for v in violations] == ["entry[1].resource.item[0]"]
    assert "imaging.finding" in violations[0].description


def test_repeating_groups_give_numbered_imaging_and_kind_named_treatments() -> None:
    reading = read(
        form(
            group("imaging", {"modality": "mri", "region": "brain", "finding": "normal"}),
            group("treatment", {"kind": "amitriptyline", "response": "adequate"}),
            group("imaging", {"modality": "xray", "region": "cervical_spine", "finding": "normal"}),
            group("treatment", {"kind": "aerobic_exercise", "weeks": 6, "response": "pending"}),
        )
    )
    assert [f.id for f in reading.facts] == [
        "patient",
        "imaging-1",
        "imaging-2",
        "treatment-amitriptyline",
        "treatment-aerobic_exercise",
    ]
    assert fields(reading, "imaging-2") == {
        "modality": "xray",
        "region": "cervical_spine",
        "finding": "normal",
    }


def test_two_treatments_of_one_kind_are_fact_invalid() -> None:
    _, violations = invalid(
        form(
            group("treatment", {"kind": "amitriptyline", "response": "adequate"}),
            group("treatment", {"kind": "amitriptyline", "response": "pending"}),
        )
    )
    assert [v.field for v in violations] == ["entry[1].resource.item[1].item[0].answer[0]"]


def test_a_second_singleton_group_is_fact_invalid() -> None:
    _, violations = invalid(
        form(group("headache", HEADACHE), group("headache", {"onset": "sudden"}))
    )
    assert [v.field for v in violations] == ["entry[1].resource.item[1]"]


def _headache(*questions: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"linkId": "headache", "item": list(questions)}]


def _q(link_id: str, *answers: dict[str, Any]) -> dict[str, Any]:
    return {"linkId": link_id, "answer": list(answers)}


YES, NO = {"valueBoolean": True}, {"valueBoolean": False}
G0 = "entry[1].resource.item[0]"


@pytest.mark.parametrize(("items", "path"), [
    ([{"linkId": "patient", "item": []}], f"{G0}.linkId"),
    ([{"linkId": "mood", "item": []}], f"{G0}.linkId"),
    (_headache(_q("headache.colour", YES)), f"{G0}.item[0].linkId"),
    (_headache(_q("cervical_exam.rom_reduced", YES)), f"{G0}.item[0].linkId"),
    (_headache(_q("headache.pulsating", YES, NO)), f"{G0}.item[0].answer[1]"),
    (_headache(_q("headache.pulsating", YES), _q("headache.pulsating", NO)), f"{G0}.item[1]"),
    ([{"linkId": "headache", "answer": [YES]}], f"{G0}.answer"),
    (_headache(_q("headache.pulsating", {**YES, "item": [{"linkId": "x"}]})),
     f"{G0}.item[0].answer[0].item"),
])  # fmt: skip
def test_form_shapes_outside_the_questionnaire(items: list[dict[str, Any]], path: str) -> None:
    reason_, violations = invalid(form(*items))
    assert reason_ == "FACT_INVALID"
    assert [v.field for v in violations] == [path]


def test_unanswered_questions_and_empty_groups_are_not_known() -> None:
    item = {"linkId": "headache", "item": [{"linkId": "headache.pulsating"}]}
    reading = read(form(item, {"linkId": "cervical_exam", "item": []}))
    assert fields(reading, "headache") is None
    assert fields(reading, "cervical_exam") is None


# ---- merging --------------------------------------------------------------------------------


def test_observation_test_wins_over_the_forms_vitals() -> None:
    form_vitals = {**VITALS, "standing_hr_bpm": 140}
    reading = read(
        form(group("headache", HEADACHE), group("orthostatic_vitals", form_vitals)),
        *orthostatic_test(AS_OF - timedelta(days=1)),
    )
    assert fields(reading, "orthostatic_vitals") == VITALS
    (conflict,) = reading.report.conflicts
    assert conflict.resolution is Resolution.OBSERVATIONS_OVER_FORM
    assert conflict.overridden == (FORM,)
    assert len(conflict.kept) == 6
    assert "orthostatic_vitals" not in reading.report.by_reference()[FORM].fact_ids


def test_forms_vitals_count_without_a_recent_test() -> None:
    form_vitals = {**VITALS, "standing_hr_bpm": 140}
    reading = read(
        form(group("orthostatic_vitals", form_vitals)),
        *orthostatic_test(AS_OF - timedelta(days=40)),
    )
    assert fields(reading, "orthostatic_vitals") == form_vitals
    assert reading.report.conflicts == ()
    assert reading.sources["orthostatic_vitals"] == (FORM,)


def test_a_form_with_only_overridden_vitals_is_superseded() -> None:
    reading = read(
        form(group("orthostatic_vitals", VITALS)), *orthostatic_test(AS_OF - timedelta(days=1))
    )
    assert reason(reading, FORM) == "SUPERSEDED"


def test_overridden_vitals_must_still_keep_the_contract() -> None:
    bad = {**VITALS, "standing_dbp_mmhg": 150}  # not below the standing systolic
    _, violations = invalid(
        form(group("orthostatic_vitals", bad)), *orthostatic_test(AS_OF - timedelta(days=1))
    )
    assert [v.field for v in violations] == ["entry[1].resource.item[0].item[5].answer[0]"]


def test_observation_outside_the_contract_is_fact_invalid_at_its_value() -> None:
    resources = orthostatic_test(AS_OF - timedelta(days=1), values={"standing_hr_bpm": 300})
    _, violations = invalid(*resources)
    assert [v.field for v in violations] == ["entry[4].resource.valueQuantity.value"]
    assert "300" not in violations[0].description


def test_condition_true_wins_over_the_forms_false() -> None:
    screen = {"horner_syndrome": False, "cancer_history": False, "meningism": False}
    reading = read(
        form(group("red_flags", screen)),
        condition("271730003", SNOMED, id="horner"),
        condition("Z85.3", ICD10CM, id="cancer", clinical="resolved"),
    )
    assert fields(reading, "red_flags") == {
        "horner_syndrome": True,
        "cancer_history": True,
        "meningism": False,
    }
    conflicts = {(c.resolution, c.field, c.kept, c.overridden) for c in reading.report.conflicts}
    assert conflicts == {
        (Resolution.CONDITION_OVER_FORM, "horner_syndrome", ("Condition/horner",), (FORM,)),
        (Resolution.CONDITION_OVER_FORM, "cancer_history", ("Condition/cancer",), (FORM,)),
    }
    assert reading.sources["red_flags"] == ("Condition/cancer", "Condition/horner", FORM)


def test_condition_agreeing_with_the_form_is_no_conflict() -> None:
    reading = read(
        form(group("red_flags", {"horner_syndrome": True})),
        condition("271730003", SNOMED, id="horner"),
    )
    assert fields(reading, "red_flags") == {"horner_syndrome": True}
    assert reading.report.conflicts == ()
    assert reason(reading, "Condition/horner") == "USED"


def test_a_form_false_stands_without_a_counting_condition() -> None:
    reading = read(
        form(group("red_flags", {"horner_syndrome": False})),
        condition("271730003", SNOMED, id="horner", clinical="resolved"),
    )
    assert fields(reading, "red_flags") == {"horner_syndrome": False}
    assert reading.report.conflicts == ()


def test_entry_order_does_not_matter() -> None:
    resources = [
        form(group("headache", HEADACHE), group("red_flags", {"horner_syndrome": False})),
        form(group("headache", {"onset": "sudden"}), id="old", authored=AS_OF - timedelta(days=3)),
        *orthostatic_test(AS_OF - timedelta(days=1)),
        *orthostatic_test(AS_OF - timedelta(days=5), prefix="old-"),
        condition("271730003", SNOMED, id="horner"),
        condition("J45.909", ICD10CM, id="asthma"),
        {"resourceType": "Encounter", "id": "e1", "status": "finished"},
    ]
    baseline = read(*resources)
    rng = random.Random(9)
    for _ in range(5):
        shuffled = [patient(), *resources]
        rng.shuffle(shuffled)
        reading = read(*shuffled, with_patient=False)
        assert reading.facts == baseline.facts
        assert reading.sources == baseline.sources
        assert set(reading.report.conflicts) == set(baseline.report.conflicts)
        by_reference = {
            r.reference: (r.status, r.fact_ids, r.reason) for r in reading.report.resources
        }
        assert by_reference == {
            r.reference: (r.status, r.fact_ids, r.reason) for r in baseline.report.resources
        }


def test_unsupported_types_are_reported() -> None:
    reading = read({"resourceType": "MedicationStatement", "id": "m1", "status": "active"})
    assert reason(reading, "MedicationStatement/m1") == "UNSUPPORTED_TYPE"


def test_report_has_every_resource_and_no_values() -> None:
    reading = read(
        form(group("headache", {"onset": "sudden"})),
        *orthostatic_test(AS_OF - timedelta(days=1), values={"standing_hr_bpm": 137}),
    )
    assert len(reading.report.resources) == 8
    text = repr(reading.report)
    for value in ("sudden", "137", "1987"):
        assert value not in text
