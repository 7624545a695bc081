"""`patient` from Patient and `red_flags` from Conditions (fhir.md section 1)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
from fhir_helpers import fields, invalid, read, reason
from fhir_writer import AS_OF, ICD10CM, SNOMED, bundle, condition, patient, stamp

from fhir_in import read_bundle
from fhir_in.codes import TABLES, CodeTableError, code_tables, load

# ---- Patient --------------------------------------------------------------------------------


def read_patient(**kwargs: Any) -> Any:
    return read(patient(**kwargs), with_patient=False)


@pytest.mark.parametrize(("birth", "age"), [
    ("1987-06-01", 38),  # the birthday on the as-of date counts
    ("1987-06-02", 37),  # the day after: not yet
    ("1987-05-31", 38),
    ("2025-06-01", 0),
])  # fmt: skip
def test_age_in_whole_years_at_the_as_of_date(birth: str, age: int) -> None:
    assert fields(read_patient(birth_date=birth), "patient") == {"age_years": age, "sex": "female"}


def test_age_uses_the_as_of_date_in_its_own_zone() -> None:
    # 2025-06-01T01:00 in +05:00 is still 31 May in UTC; the date is the caller's.
    as_of = datetime(2025, 6, 1, 1, 0, tzinfo=timezone(timedelta(hours=5)))
    reading = read(patient(birth_date="1987-06-01"), with_patient=False, as_of=as_of)
    assert fields(reading, "patient") == {"age_years": 38, "sex": "female"}


def test_born_on_29_february_turns_older_on_1_march_in_a_common_year() -> None:
    before = datetime(2023, 2, 28, 12, tzinfo=UTC)
    after = datetime(2023, 3, 1, 12, tzinfo=UTC)
    p = patient(birth_date="2000-02-29")
    assert fields(read(p, with_patient=False, as_of=before), "patient") == {
        "age_years": 22,
        "sex": "female",
    }
    assert fields(read(p, with_patient=False, as_of=after), "patient") == {
        "age_years": 23,
        "sex": "female",
    }


@pytest.mark.parametrize("birth", ["1974", "1974-05"])
def test_partial_birth_date_gives_no_patient_fact(birth: str) -> None:
    reading = read_patient(birth_date=birth)
    assert fields(reading, "patient") is None
    assert reason(reading, "Patient/p1") == "PARTIAL_DATE"


def test_no_birth_date_gives_no_patient_fact() -> None:
    reading = read_patient(birth_date=None)
    assert fields(reading, "patient") is None
    assert reason(reading, "Patient/p1") == "INCOMPLETE"


@pytest.mark.parametrize("gender", ["male", "female", "other", "unknown"])
def test_gender_is_sex(gender: str) -> None:
    assert fields(read_patient(gender=gender), "patient") == {"age_years": 38, "sex": gender}


def test_no_gender_gives_age_only() -> None:
    assert fields(read_patient(gender=None), "patient") == {"age_years": 38}


def test_age_over_120_is_fact_invalid_at_the_birth_date() -> None:
    reason_, violations = invalid(patient(birth_date="1900-01-01"), with_patient=False)
    assert reason_ == "FACT_INVALID"
    assert [v.field for v in violations] == ["entry[0].resource.birthDate"]
    assert "1900" not in violations[0].description


def test_birth_date_after_as_of_is_fact_invalid() -> None:
    reason_, violations = invalid(patient(birth_date="2026-01-01"), with_patient=False)
    assert (reason_, [v.field for v in violations]) == (
        "FACT_INVALID",
        ["entry[0].resource.birthDate"],
    )


def test_naive_as_of_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone"):
        read_bundle(bundle(patient()), datetime(2025, 6, 1))


# ---- subject matching -----------------------------------------------------------------------


HORNER = ("271730003", SNOMED)
URN = "urn:uuid:0f3a8c2e-1111-4a4a-9b9b-000000000001"
OTHER_URN = "urn:uuid:0f3a8c2e-1111-4a4a-9b9b-000000000002"


@pytest.mark.parametrize(("subject", "full_url", "counts"), [
    ("Patient/p1", None, True),
    ("Patient/p1/_history/3", None, True),
    (URN, URN, True),
    (URN + "/_history/1", URN, True),
    ("https://ehr.example.org/fhir/Patient/p1", None, True),  # the default fullUrl
    ("https://other.example.org/fhir/Patient/p1", None, False),
    ("Patient/p2", None, False),
    (OTHER_URN, URN, False),
])  # fmt: skip
def test_subject_must_be_the_bundles_patient(
    subject: str, full_url: str | None, counts: bool
) -> None:
    p = patient()
    if full_url is not None:
        p["_fullUrl"] = full_url
    reading = read(p, condition(*HORNER, id="c1", subject=subject), with_patient=False)
    assert reason(reading, "Condition/c1") == ("USED" if counts else "NOT_THIS_PATIENT")
    assert (fields(reading, "red_flags") == {"horner_syndrome": True}) is counts


def test_without_a_patient_nothing_is_attributed() -> None:
    reading = read(condition(*HORNER, id="c1"), with_patient=False)
    assert reason(reading, "Condition/c1") == "NOT_THIS_PATIENT"
    assert reading.facts == ()


# ---- Conditions: status rules ---------------------------------------------------------------


@pytest.mark.parametrize(("verification", "counts"), [
    (None, True),
    ("confirmed", True),
    ("provisional", True),
    ("differential", True),
    ("unconfirmed", False),
    ("refuted", False),
    ("entered-in-error", False),
])  # fmt: skip
def test_verification_status(verification: str | None, counts: bool) -> None:
    reading = read(condition(*HORNER, id="c1", verification=verification))
    assert reason(reading, "Condition/c1") == ("USED" if counts else "STATUS")
    assert (fields(reading, "red_flags") is not None) is counts


@pytest.mark.parametrize(("clinical", "counts"), [
    ("active", True),
    ("recurrence", True),
    ("relapse", True),
    ("inactive", False),
    ("remission", False),
    ("resolved", False),
    (None, False),
])  # fmt: skip
def test_clinical_status(clinical: str | None, counts: bool) -> None:
    reading = read(condition(*HORNER, id="c1", clinical=clinical))
    assert reason(reading, "Condition/c1") == ("USED" if counts else "STATUS")


@pytest.mark.parametrize("clinical", ["active", "inactive", "remission", "resolved", None])
def test_cancer_history_counts_in_any_clinical_status(clinical: str | None) -> None:
    reading = read(condition("Z85.3", ICD10CM, id="c1", clinical=clinical))
    assert fields(reading, "red_flags") == {"cancer_history": True}


def test_cancer_history_still_needs_a_counting_verification_status() -> None:
    reading = read(
        condition("Z85.3", ICD10CM, id="c1", clinical="resolved", verification="refuted")
    )
    assert reason(reading, "Condition/c1") == "STATUS"


def test_status_coding_without_system_counts() -> None:
    resource = condition(*HORNER, id="c1")
    resource["clinicalStatus"] = {"coding": [{"code": "active"}]}
    assert reason(read(resource), "Condition/c1") == "USED"


def test_status_coding_of_another_system_does_not_count() -> None:
    resource = condition(*HORNER, id="c1")
    resource["clinicalStatus"] = {"coding": [{"system": "urn:local", "code": "active"}]}
    assert reason(read(resource), "Condition/c1") == "STATUS"


@pytest.mark.parametrize(("recorded", "counts"), [
    (stamp(AS_OF), True),
    (stamp(AS_OF + timedelta(seconds=1)), False),
    ("2025-06-01", True),
    ("2025-06-02", False),
])  # fmt: skip
def test_condition_recorded_after_as_of_is_ignored(recorded: str, counts: bool) -> None:
    reading = read(condition(*HORNER, id="c1", recordedDate=recorded))
    assert reason(reading, "Condition/c1") == ("USED" if counts else "AFTER_AS_OF")


def test_unknown_code_is_ignored() -> None:
    reading = read(condition("J45.909", ICD10CM, id="c1"))
    assert reason(reading, "Condition/c1") == "UNKNOWN_CODE"
    assert fields(reading, "red_flags") is None


def test_condition_without_code_is_unknown() -> None:
    resource = condition(*HORNER, id="c1")
    del resource["code"]
    assert reason(read(resource), "Condition/c1") == "UNKNOWN_CODE"


def test_a_code_of_the_table_in_another_system_is_unknown() -> None:
    assert reason(read(condition("271730003", ICD10CM, id="c1")), "Condition/c1") == "UNKNOWN_CODE"


# ---- the code table, row by row -------------------------------------------------------------


def _table_rows() -> list[tuple[str, str, str]]:
    """(field, system, an example code) for every row, subcodes and range ends included."""
    rows = []
    for field, entries in code_tables()["red_flags"].items():
        for entry in entries:
            if "code" in entry:
                rows.append((field, entry["system"], entry["code"]))
                if entry["subcodes"]:
                    rows.append((field, entry["system"], entry["code"] + "1"))
                    if "." not in entry["code"]:
                        rows.append((field, entry["system"], entry["code"] + ".9"))
            else:
                for category in (entry["from"], entry["to"]):
                    rows.append((field, entry["system"], category))
                    rows.append((field, entry["system"], category + ".9"))
    return rows


@pytest.mark.parametrize(("field", "system", "code"), _table_rows())
def test_every_code_table_row_sets_its_field(field: str, system: str, code: str) -> None:
    assert fields(read(condition(code, system, id="c1")), "red_flags") == {field: True}


@pytest.mark.parametrize(("code", "field"), [
    ("C50.911", "cancer_history"),
    ("C50911", "cancer_history"),  # without the dot
    ("c71.9", "cancer_history"),  # lower case
    ("C7A.00", "cancer_history"),  # an alphanumeric category inside the range
    ("Z85.038", "cancer_history"),
    ("H47.11", "papilledema"),
    ("H47.10", "papilledema"),
    ("G90.2", "horner_syndrome"),
])  # fmt: skip
def test_icd10_subcodes_and_ranges(code: str, field: str) -> None:
    assert fields(read(condition(code, ICD10CM, id="c1")), "red_flags") == {field: True}


@pytest.mark.parametrize("code", [
    "C97",  # just past the range
    "D00.0",  # in situ, not in C00-C96
    "B99",
    "Z86.0",  # next to Z85
    "H47.2",  # next to H47.1
    "H47",  # the parent of H47.1
    "G90.20",  # G90.2 has no subcodes in the table
    "Z33.2",
    "C",
])  # fmt: skip
def test_icd10_codes_outside_the_table(code: str) -> None:
    assert reason(read(condition(code, ICD10CM, id="c1")), "Condition/c1") == "UNKNOWN_CODE"


def test_condition_true_is_the_only_value_set() -> None:
    reading = read(condition(*HORNER, id="c1"), condition("Z85", ICD10CM, id="c2"))
    assert fields(reading, "red_flags") == {"horner_syndrome": True, "cancer_history": True}
    assert reading.sources["red_flags"] == ("Condition/c1", "Condition/c2")


def test_order_codes_are_data() -> None:
    assert TABLES.order_kinds_for("http://www.ama-assn.org/go/cpt", "98941") == {
        "cervical_manipulation"
    }
    assert TABLES.order_kinds_for("http://www.ama-assn.org/go/cpt", "98943") == set()
    published = code_tables()
    assert [row["code"] for row in published["orders"]["cervical_manipulation"]] == [
        "98940",
        "98941",
        "98942",
    ]
    published["orders"].clear()  # a copy: the tables are not changed
    assert code_tables()["orders"]


EXACT = "systems: {s: {url: u, compare: exact}}\norders: {}\n"
ICD = "systems: {s: {url: u, compare: icd10}}\norders: {}\n"


@pytest.mark.parametrize("text", [
    "systems: {}\nred_flags: {}\norders: {}\nextra: 1\n",
    EXACT + "red_flags: {no_such_flag: []}",
    EXACT + "red_flags: {papilledema: [{system: t, code: x}]}",
    EXACT + "red_flags: {papilledema: [{system: s, code: x, subcodes: true}]}",
    ICD + "red_flags: {papilledema: [{system: s, from: C96, to: C00}]}",
    ICD + "red_flags: {papilledema: [{system: s, code: 'not icd'}]}",
    ICD + "red_flags: {papilledema: [{system: s, from: C00}]}",
    ICD + "red_flags: {papilledema: [{system: s, code: H47, from: C00, to: C01}]}",
    "[unclosed",
])  # fmt: skip
def test_a_broken_code_table_is_refused_at_load(text: str) -> None:
    with pytest.raises(CodeTableError):
        load(text)
