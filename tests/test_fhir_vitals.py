"""orthostatic_vitals from Observations (fhir.md section 1): each rule used / ignored."""

from __future__ import annotations

from datetime import timedelta

import pytest
from fhir_helpers import ENCODINGS, VITALS, fields, orthostatic_test, read, reason
from fhir_writer import AS_OF, GENERIC, LOINC, SNOMED, SPECIFIC, coding, concept, observation

from fhir_in.report import Status

RECENT = AS_OF - timedelta(days=2)
STANDING_HR = "Observation/hr-standing"


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_encoding_gives_the_test(encoding: str) -> None:
    reading = read(*orthostatic_test(RECENT, encoding))
    assert fields(reading, "orthostatic_vitals") == VITALS
    assert all(
        r.status is Status.USED
        for r in reading.report.resources
        if r.resource_type == "Observation"
    )


@pytest.mark.parametrize("encoding", ENCODINGS)
def test_each_encoding_without_one_value_gives_no_test(encoding: str) -> None:
    resources = orthostatic_test(RECENT, encoding)
    if encoding == "panel":
        resources[3]["component"].pop()  # the standing diastolic
        dropped = None
    else:
        dropped = resources.pop()  # the standing diastolic
    reading = read(*resources)
    assert fields(reading, "orthostatic_vitals") is None
    assert reason(reading, STANDING_HR) == "INCOMPLETE"
    assert dropped is None or dropped["id"] == "dbp-standing"


def test_generic_code_without_body_position_is_unknown() -> None:
    resources = orthostatic_test(RECENT, "generic")
    del resources[3]["extension"]  # standing heart rate
    reading = read(*resources)
    assert reason(reading, STANDING_HR) == "UNKNOWN_CODE"
    assert fields(reading, "orthostatic_vitals") is None


def test_body_position_sitting_is_unknown() -> None:
    resources = orthostatic_test(RECENT, "generic")
    resources[3]["extension"][0]["valueCodeableConcept"] = concept(coding(SNOMED, "33586001"))
    assert reason(read(*resources), STANDING_HR) == "UNKNOWN_CODE"


def test_position_code_contradicted_by_extension_is_unknown() -> None:
    resources = orthostatic_test(RECENT, "specific")
    resources[3]["extension"] = [
        {
            "url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
            "valueCodeableConcept": concept(coding(SNOMED, "40199007")),  # supine
        }
    ]
    assert reason(read(*resources), STANDING_HR) == "UNKNOWN_CODE"


def test_panel_with_position_specific_components_needs_no_extension() -> None:
    resources = orthostatic_test(RECENT, "panel")
    for resource, posture in ((resources[1], "supine"), (resources[3], "standing")):
        del resource["extension"]
        resource["component"][0]["code"] = concept(coding(LOINC, SPECIFIC[("sbp", posture)]))
        resource["component"][1]["code"] = concept(coding(LOINC, SPECIFIC[("dbp", posture)]))
    assert fields(read(*resources), "orthostatic_vitals") == VITALS


def test_panel_without_posture_is_unknown() -> None:
    resources = orthostatic_test(RECENT, "panel")
    del resources[3]["extension"]
    reading = read(*resources)
    assert reason(reading, "Observation/bp-standing") == "UNKNOWN_CODE"
    assert fields(reading, "orthostatic_vitals") is None


@pytest.mark.parametrize(("status", "used"), [
    ("final", True),
    ("amended", True),
    ("corrected", True),
    ("preliminary", False),
    ("registered", False),
    ("cancelled", False),
    ("entered-in-error", False),
    ("unknown", False),
])  # fmt: skip
def test_observation_status(status: str, used: bool) -> None:
    resources = orthostatic_test(RECENT)
    resources[3]["status"] = status
    reading = read(*resources)
    assert (fields(reading, "orthostatic_vitals") is not None) is used
    assert reason(reading, STANDING_HR) == ("USED" if used else "STATUS")


def test_effective_period_start_is_the_time() -> None:
    resources = orthostatic_test(RECENT)
    for resource in resources:
        resource["effectivePeriod"] = {"start": resource.pop("effectiveDateTime")}
    assert fields(read(*resources), "orthostatic_vitals") == VITALS


def test_no_time_is_incomplete() -> None:
    resources = orthostatic_test(RECENT)
    del resources[3]["effectiveDateTime"]
    assert reason(read(*resources), STANDING_HR) == "INCOMPLETE"


def test_date_without_time_is_partial() -> None:
    resources = orthostatic_test(RECENT)
    resources[3]["effectiveDateTime"] = RECENT.date().isoformat()
    reading = read(*resources)
    assert reason(reading, STANDING_HR) == "PARTIAL_DATE"
    assert fields(reading, "orthostatic_vitals") is None


def test_value_is_rounded_half_up() -> None:
    resources = orthostatic_test(RECENT)
    resources[0]["valueQuantity"]["value"] = 72.5
    resources[3]["valueQuantity"]["value"] = 95.49
    got = fields(read(*resources), "orthostatic_vitals")
    assert got is not None
    assert (got["supine_hr_bpm"], got["standing_hr_bpm"]) == (73, 95)


def test_no_value_or_comparator_is_incomplete() -> None:
    resources = orthostatic_test(RECENT)
    del resources[3]["valueQuantity"]
    resources[4]["valueQuantity"]["comparator"] = ">"
    reading = read(*resources)
    assert reason(reading, STANDING_HR) == "INCOMPLETE"
    assert reason(reading, "Observation/sbp-standing") == "INCOMPLETE"


@pytest.mark.parametrize(("unit", "used"), [
    ({"unit": "beats/minute", "system": "http://unitsofmeasure.org", "code": "/min"}, True),
    ({"system": "http://unitsofmeasure.org", "code": "{beats}/min"}, True),
    ({"unit": "bpm"}, True),
    ({"unit": "/s", "system": "http://unitsofmeasure.org", "code": "/s"}, False),
    ({"unit": "mmHg", "system": "http://unitsofmeasure.org", "code": "mm[Hg]"}, False),
    ({"unit": "beats"}, False),
    ({}, False),
])  # fmt: skip
def test_heart_rate_unit(unit: dict[str, str], used: bool) -> None:
    resources = orthostatic_test(RECENT)
    resources[3]["valueQuantity"] = {"value": 96, **unit}
    assert reason(read(*resources), STANDING_HR) == ("USED" if used else "UNKNOWN_CODE")


def test_pressure_unit_kpa_is_unknown() -> None:
    resources = orthostatic_test(RECENT)
    resources[4]["valueQuantity"] = {
        "value": 15,
        "system": "http://unitsofmeasure.org",
        "code": "kPa",
    }
    assert reason(read(*resources), "Observation/sbp-standing") == "UNKNOWN_CODE"


def test_other_vital_sign_is_unknown_code() -> None:
    temperature = observation("8310-5", None, RECENT, id="t", valueQuantity={"value": 37})
    assert reason(read(*orthostatic_test(RECENT), temperature), "Observation/t") == "UNKNOWN_CODE"


@pytest.mark.parametrize(("minutes", "complete"), [(60, True), (61, False)])
def test_pairing_within_60_minutes_of_the_latest(minutes: int, complete: bool) -> None:
    resources = orthostatic_test(RECENT, standing_after=timedelta(minutes=minutes))
    reading = read(*resources)
    assert (fields(reading, "orthostatic_vitals") == VITALS) is complete
    assert reason(reading, "Observation/hr-supine") == ("USED" if complete else "INCOMPLETE")


def test_latest_complete_test_wins_and_older_is_superseded() -> None:
    newer = orthostatic_test(RECENT, prefix="new-", values={"standing_hr_bpm": 120})
    older = orthostatic_test(RECENT - timedelta(days=3), prefix="old-")
    reading = read(*older, *newer)
    assert fields(reading, "orthostatic_vitals") == {**VITALS, "standing_hr_bpm": 120}
    assert reason(reading, "Observation/old-hr-standing") == "SUPERSEDED"
    assert reason(reading, "Observation/new-hr-standing") == "USED"


def test_incomplete_newer_readings_leave_the_complete_test() -> None:
    lone = observation(SPECIFIC[("hr", "supine")], 65, RECENT + timedelta(hours=5), id="lone")
    reading = read(*orthostatic_test(RECENT), lone)
    assert fields(reading, "orthostatic_vitals") == VITALS
    assert reason(reading, "Observation/lone") == "INCOMPLETE"


def test_a_repeat_within_the_test_takes_the_latest_of_its_kind() -> None:
    repeat = observation(
        SPECIFIC[("hr", "standing")], 99, RECENT - timedelta(minutes=2), id="first-standing-hr"
    )
    reading = read(*orthostatic_test(RECENT), repeat)
    assert fields(reading, "orthostatic_vitals") == VITALS
    assert reason(reading, "Observation/first-standing-hr") == "SUPERSEDED"


@pytest.mark.parametrize(("age", "used"), [
    (timedelta(days=30), True),
    (timedelta(days=30, seconds=1), False),
])  # fmt: skip
def test_window_edge(age: timedelta, used: bool) -> None:
    reading = read(*orthostatic_test(AS_OF - age))
    assert (fields(reading, "orthostatic_vitals") is not None) is used
    assert reason(reading, STANDING_HR) == ("USED" if used else "STALE")


def test_window_is_configurable() -> None:
    resources = orthostatic_test(AS_OF - timedelta(days=40))
    assert fields(read(*resources), "orthostatic_vitals") is None
    assert fields(read(*resources, vitals_window=timedelta(days=45)), "orthostatic_vitals")


def test_test_straddling_the_window_edge_is_judged_by_its_latest_reading() -> None:
    resources = orthostatic_test(AS_OF - timedelta(days=30), standing_after=timedelta(minutes=30))
    reading = read(*resources)
    assert fields(reading, "orthostatic_vitals") == VITALS
    assert reason(reading, "Observation/hr-supine") == "USED"


@pytest.mark.parametrize(("offset", "used"), [
    (timedelta(0), True),
    (timedelta(seconds=1), False),
])  # fmt: skip
def test_reading_after_as_of(offset: timedelta, used: bool) -> None:
    resources = orthostatic_test(AS_OF - timedelta(minutes=10))
    resources[3]["effectiveDateTime"] = (AS_OF + offset).isoformat()
    reading = read(*resources)
    assert reason(reading, STANDING_HR) == ("USED" if used else "AFTER_AS_OF")


def test_reading_after_as_of_does_not_replace_the_earlier_test() -> None:
    later = orthostatic_test(
        AS_OF + timedelta(hours=1), prefix="later-", values={"standing_hr_bpm": 150}
    )
    reading = read(*orthostatic_test(RECENT), *later)
    assert fields(reading, "orthostatic_vitals") == VITALS
    assert reason(reading, "Observation/later-hr-standing") == "AFTER_AS_OF"


def test_another_patients_readings_are_not_this_patients() -> None:
    reading = read(*orthostatic_test(RECENT, subject="Patient/p2"))
    assert fields(reading, "orthostatic_vitals") is None
    assert reason(reading, STANDING_HR) == "NOT_THIS_PATIENT"


def test_observation_without_subject_is_not_this_patients() -> None:
    resources = orthostatic_test(RECENT)
    del resources[3]["subject"]
    assert reason(read(*resources), STANDING_HR) == "NOT_THIS_PATIENT"


def test_tie_at_one_instant_is_broken_by_reference_not_entry_order() -> None:
    twin = observation(SPECIFIC[("hr", "standing")], 111, RECENT, id="zz-standing-hr")
    resources = orthostatic_test(RECENT)
    forward = fields(read(*resources, twin), "orthostatic_vitals")
    backward = fields(read(twin, *reversed(resources)), "orthostatic_vitals")
    assert forward == backward
    assert forward is not None and forward["standing_hr_bpm"] == 111


def test_sources_name_the_six_observations() -> None:
    reading = read(*orthostatic_test(RECENT))
    assert reading.sources["orthostatic_vitals"] == tuple(
        sorted(f"Observation/{m}-{p}" for m in ("hr", "sbp", "dbp") for p in ("supine", "standing"))
    )


def test_generic_code_is_read_from_any_coding() -> None:
    resources = orthostatic_test(RECENT, "generic")
    resources[3]["code"] = concept(coding("urn:local", "HR"), coding(LOINC, GENERIC["hr"]))
    assert reason(read(*resources), STANDING_HR) == "USED"
