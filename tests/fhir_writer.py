"""A FHIR writer for the tests: facts -> a Bundle as an EHR would send it.

The reader's inverse, written independently of it (from fhir.md, not from the
reader's code), so a round trip through both checks one against the other. It
builds the example bundles (`make_fhir_examples.py`) and the bundles of the
property test, and its small builders (`patient`, `observation`, ...) are what
the rule-by-rule tests assemble their bundles from.
"""

from __future__ import annotations

import copy
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Literal

import kb
from fhir_in.questionnaire import DEFAULT_BASE, canonical, questions

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
ICD10CM = "http://hl7.org/fhir/sid/icd-10-cm"
UCUM = "http://unitsofmeasure.org"
BODY_POSITION = "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
SERVER = "https://ehr.example.org/fhir"
# The as-of instant of the example bundles (and the default of the tests).
AS_OF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)

SPECIFIC = {
    ("hr", "supine"): "68999-2",
    ("hr", "standing"): "69001-6",
    ("sbp", "supine"): "8461-6",
    ("sbp", "standing"): "8460-8",
    ("dbp", "supine"): "8455-8",
    ("dbp", "standing"): "8454-1",
}
GENERIC = {"hr": "8867-4", "sbp": "8480-6", "dbp": "8462-4"}
POSTURE = {"supine": "40199007", "standing": "10904000"}
UNIT = {"hr": ("beats/minute", "/min"), "sbp": ("mmHg", "mm[Hg]"), "dbp": ("mmHg", "mm[Hg]")}
FIELD = {
    (m, p): f"{p}_{m}_{'bpm' if m == 'hr' else 'mmhg'}"
    for m in ("hr", "sbp", "dbp")
    for p in ("supine", "standing")
}
# One code per codable red flag (the first row of fhir.md's table, either system).
FLAG_CODES = {
    "horner_syndrome": {"snomed": "271730003", "icd10cm": "G90.2"},
    "pregnancy_or_postpartum": {"snomed": "77386006", "icd10cm": "Z33.1"},
    "immunosuppression": {"snomed": "370388006", "icd10cm": "D84.9"},
    "cancer_history": {"snomed": "363346000", "icd10cm": "C50.911"},
    "papilledema": {"icd10cm": "H47.10"},
}
SYSTEMS = {"snomed": SNOMED, "icd10cm": ICD10CM}


def stamp(when: datetime) -> str:
    return when.isoformat().replace("+00:00", "Z")


# ---- builders -------------------------------------------------------------------------------


def coding(system: str, code: str, display: str | None = None) -> dict[str, Any]:
    out = {"system": system, "code": code}
    if display:
        out["display"] = display
    return out


def concept(*codings: dict[str, Any], text: str | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"coding": list(codings)}
    if text:
        out["text"] = text
    return out


def patient(
    id: str | None = "p1",
    birth_date: str | None = "1987-01-15",
    gender: str | None = "female",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Patient",
        "meta": {"lastUpdated": "2025-05-30T08:00:00.000+02:00"},
        "text": {"status": "generated", "div": '<div xmlns="http://www.w3.org/1999/xhtml">…</div>'},
        "identifier": [{"system": "urn:oid:1.2.36.146.595.217.0.1", "value": "12345"}],
        "name": [{"family": "Doe", "given": ["Alex"]}],
    }
    if id is not None:
        resource["id"] = id
    if birth_date is not None:
        resource["birthDate"] = birth_date
    if gender is not None:
        resource["gender"] = gender
    resource.update(extra)
    return resource


def quantity(measure: str, value: float) -> dict[str, Any]:
    unit, code = UNIT[measure]
    return {"value": value, "unit": unit, "system": UCUM, "code": code}


def position(posture: str) -> dict[str, Any]:
    return {
        "url": BODY_POSITION,
        "valueCodeableConcept": concept(coding(SNOMED, POSTURE[posture], posture)),
    }


def observation(
    code: str | dict[str, Any],
    value: float | None,
    when: datetime | str | None,
    *,
    id: str,
    measure: str = "hr",
    posture: str | None = None,
    subject: str | None = "Patient/p1",
    status: str = "final",
    period: bool = False,
    **extra: Any,
) -> dict[str, Any]:
    """One vital-sign Observation; `posture` adds the body-position extension."""
    resource: dict[str, Any] = {
        "resourceType": "Observation",
        "id": id,
        "status": status,
        "category": [
            concept(
                coding(
                    "http://terminology.hl7.org/CodeSystem/observation-category",
                    "vital-signs",
                )
            )
        ],
        "code": concept(coding(LOINC, code)) if isinstance(code, str) else code,
    }
    if subject is not None:
        resource["subject"] = {"reference": subject}
    if when is not None:
        text = stamp(when) if isinstance(when, datetime) else when
        if period:
            resource["effectivePeriod"] = {"start": text}
        else:
            resource["effectiveDateTime"] = text
    if value is not None:
        resource["valueQuantity"] = quantity(measure, value)
    if posture is not None:
        resource["extension"] = [position(posture)]
    resource.update(extra)
    return resource


def panel(
    systolic: float,
    diastolic: float,
    when: datetime,
    *,
    id: str,
    posture: str | None,
    subject: str = "Patient/p1",
    specific: bool = False,
    status: str = "final",
) -> dict[str, Any]:
    """An 85354-9 blood-pressure panel; posture on the panel (or in the component codes)."""
    codes = (
        (SPECIFIC[("sbp", posture or "")], SPECIFIC[("dbp", posture or "")])
        if specific
        else (GENERIC["sbp"], GENERIC["dbp"])
    )
    resource = observation(
        concept(coding(LOINC, "85354-9", "Blood pressure panel")),
        None,
        when,
        id=id,
        posture=None if specific else posture,
        subject=subject,
        status=status,
    )
    resource["component"] = [
        {"code": concept(coding(LOINC, codes[0])), "valueQuantity": quantity("sbp", systolic)},
        {"code": concept(coding(LOINC, codes[1])), "valueQuantity": quantity("dbp", diastolic)},
    ]
    return resource


def condition(
    code: str,
    system: str = SNOMED,
    *,
    id: str,
    subject: str = "Patient/p1",
    clinical: str | None = "active",
    verification: str | None = "confirmed",
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {
        "resourceType": "Condition",
        "id": id,
        "category": [
            concept(
                coding(
                    "http://terminology.hl7.org/CodeSystem/condition-category",
                    "problem-list-item",
                )
            )
        ],
        "code": concept(coding(system, code)),
        "subject": {"reference": subject},
    }
    if clinical is not None:
        resource["clinicalStatus"] = concept(coding(CLINICAL, clinical))
    if verification is not None:
        resource["verificationStatus"] = concept(coding(VERIFICATION, verification))
    resource.update(extra)
    return resource


def answer(link_id: str, value: Any) -> list[dict[str, Any]]:
    """The answers to one question, typed as the Questionnaire says."""
    question = questions()[link_id]
    values = value if question.repeats else [value]
    out = []
    for item in values:
        if question.item_type == "boolean":
            out.append({"valueBoolean": item})
        elif question.item_type == "integer":
            out.append({"valueInteger": item})
        elif question.item_type == "decimal":
            out.append({"valueDecimal": float(item)})
        else:
            out.append({"valueCoding": {"code": item}})
    return out


def group(fact_type: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "linkId": fact_type,
        "item": [
            {"linkId": f"{fact_type}.{name}", "answer": answer(f"{fact_type}.{name}", value)}
            for name, value in fields.items()
        ],
    }


def response(
    *groups: dict[str, Any],
    id: str = "q1",
    authored: datetime | str | None = AS_OF - timedelta(hours=1),
    subject: str | None = "Patient/p1",
    status: str = "completed",
    questionnaire: str | None = canonical(DEFAULT_BASE) + "|" + kb.VERSION,
    **extra: Any,
) -> dict[str, Any]:
    resource: dict[str, Any] = {"resourceType": "QuestionnaireResponse", "id": id, "status": status}
    if questionnaire is not None:
        resource["questionnaire"] = questionnaire
    if subject is not None:
        resource["subject"] = {"reference": subject}
    if authored is not None:
        resource["authored"] = stamp(authored) if isinstance(authored, datetime) else authored
    resource["item"] = list(groups)
    resource.update(extra)
    return resource


def bundle(*resources: dict[str, Any], kind: str = "collection", **extra: Any) -> dict[str, Any]:
    """A Bundle of `resources`; each gets a fullUrl on the EHR's server unless it has one."""
    entries = []
    for resource in resources:
        resource = copy.deepcopy(resource)
        full_url = resource.pop("_fullUrl", None)
        if full_url is None and "id" in resource:
            full_url = f"{SERVER}/{resource['resourceType']}/{resource['id']}"
        entry: dict[str, Any] = {"resource": resource}
        if full_url is not None:
            entry = {"fullUrl": full_url, **entry}
        entries.append(entry)
    return {"resourceType": "Bundle", "type": kind, **extra, "entry": entries}


# ---- facts -> bundle ------------------------------------------------------------------------

VitalsStyle = Literal["specific", "generic", "panel", "form"]


@dataclass(frozen=True)
class Style:
    """How the EHR encodes what it sends."""

    vitals: VitalsStyle = "specific"
    urn_references: bool = False  # transaction style: urn:uuid fullUrls, references by them
    period: bool = False  # effectivePeriod.start instead of effectiveDateTime
    coded_flags: frozenset[str] = frozenset()  # true red flags sent as Conditions
    flag_system: str = "snomed"
    flags_also_in_form: bool = False  # the form repeats a coded flag as true
    versioned: bool = True  # questionnaire canonical with |version
    birthday: tuple[int, int] = (1, 1)  # month, day (on or before the as-of date)
    taken: timedelta = timedelta(days=2)  # how long before as-of the vitals were taken
    bundle_type: str = "collection"
    extra: tuple[dict[str, Any], ...] = field(default=())  # resources added as they are


def _uuid(name: str) -> str:
    return f"urn:uuid:{uuid.uuid5(uuid.NAMESPACE_URL, name)}"


def birth_date(age: int, as_of: datetime, birthday: tuple[int, int] = (1, 1)) -> str:
    """A birthDate that makes `age` whole years at the as-of date."""
    month, day = birthday
    assert (month, day) <= (as_of.month, as_of.day)
    return date(as_of.year - age, month, day).isoformat()


def write_bundle(
    facts: Sequence[Mapping[str, Any]],
    as_of: datetime = AS_OF,
    style: Style = Style(),
    base: str = DEFAULT_BASE,
) -> dict[str, Any]:
    """Facts (as in examples/*.json) -> a FHIR R4 Bundle read back to the same facts at as_of."""
    by_type: dict[str, list[Mapping[str, Any]]] = {}
    for fact in facts:
        by_type.setdefault(fact["type"], []).append(fact["fields"])
    patient_fields = by_type.get("patient", [{}])[0]
    subject = _uuid("Patient/p1") if style.urn_references else "Patient/p1"

    def place(resource: dict[str, Any]) -> dict[str, Any]:
        if style.urn_references:
            resource["_fullUrl"] = _uuid(f"{resource['resourceType']}/{resource['id']}")
        return resource

    resources = [
        place(
            patient(
                birth_date=(
                    birth_date(patient_fields["age_years"], as_of, style.birthday)
                    if "age_years" in patient_fields
                    else None
                ),
                gender=patient_fields.get("sex"),
            )
        )
    ]
    vitals = by_type.get("orthostatic_vitals", [])
    if vitals and style.vitals != "form":
        resources += [place(r) for r in _vital_signs(vitals[0], as_of, style, subject)]
    red_flags = dict(by_type.get("red_flags", [{}])[0])
    for name in sorted(style.coded_flags):
        if red_flags.get(name) is True:
            code = FLAG_CODES[name].get(style.flag_system) or FLAG_CODES[name]["icd10cm"]
            system = SYSTEMS[
                style.flag_system if style.flag_system in FLAG_CODES[name] else "icd10cm"
            ]
            resources.append(
                place(condition(code, system, id=f"c-{name.replace('_', '-')}", subject=subject))
            )
            if not style.flags_also_in_form:
                del red_flags[name]
    groups = []
    for fact_type, items in by_type.items():
        if fact_type == "patient" or (fact_type == "orthostatic_vitals" and style.vitals != "form"):
            continue
        for fields in items:
            fields = red_flags if fact_type == "red_flags" else fields
            if fields:
                groups.append(group(fact_type, fields))
    if groups:
        name = canonical(base) + (f"|{kb.VERSION}" if style.versioned else "")
        resources.append(
            place(
                response(
                    *groups,
                    id="assessment",
                    authored=as_of - timedelta(hours=3),
                    subject=subject,
                    questionnaire=name,
                )
            )
        )
    resources += [copy.deepcopy(r) for r in style.extra]
    return bundle(*resources, kind=style.bundle_type, timestamp=stamp(as_of))


def _vital_signs(
    fields: Mapping[str, Any], as_of: datetime, style: Style, subject: str
) -> list[dict[str, Any]]:
    """The six readings of one lying-to-standing test: supine, then standing 10 minutes later."""
    times = {"supine": as_of - style.taken - timedelta(minutes=10), "standing": as_of - style.taken}
    out = []
    for posture in ("supine", "standing"):
        when = times[posture]
        if style.vitals == "panel":
            out.append(
                observation(
                    GENERIC["hr"],
                    fields[FIELD[("hr", posture)]],
                    when,
                    id=f"hr-{posture}",
                    posture=posture,
                    subject=subject,
                    period=style.period,
                )
            )
            out.append(
                panel(
                    fields[FIELD[("sbp", posture)]],
                    fields[FIELD[("dbp", posture)]],
                    when,
                    id=f"bp-{posture}",
                    posture=posture,
                    subject=subject,
                )
            )
            continue
        for measure in ("hr", "sbp", "dbp"):
            specific = style.vitals == "specific"
            out.append(
                observation(
                    SPECIFIC[(measure, posture)] if specific else GENERIC[measure],
                    fields[FIELD[(measure, posture)]],
                    when,
                    id=f"{measure}-{posture}",
                    measure=measure,
                    posture=None if specific else posture,
                    subject=subject,
                    period=style.period,
                )
            )
    return out
