"""FHIR R4 Bundle + as-of instant -> validated kb facts + mapping report (fhir.md section 1).

Pure: no I/O, no clock (as-of is a parameter), no gRPC. The result does not
depend on entry order: every choice between resources (the latest test, the
latest form) breaks ties by reference, never by position.

Two kinds of failure, kept apart on purpose. A bundle that is not valid FHIR in
what the reader uses is a client bug: `InvalidFacts` with reason `FHIR_INVALID`
and JSON paths. Data that is valid but clinically unusable (stale, cancelled,
entered in error, uncoded, partially dated, about someone else) is skipped and
reported, never an error, because a real chart is full of it. An answer or a
measurement that breaks the fact contract is `FACT_INVALID`, with its path in
the bundle, like any bad fact.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from fhir_in import vitals
from fhir_in.codes import TABLES
from fhir_in.form import Draft, form_drafts, validate
from fhir_in.questionnaire import DEFAULT_BASE, canonical
from fhir_in.report import (
    REASON_FHIR_INVALID,
    Conflict,
    MappingReport,
    Reading,
    Reason,
    Resolution,
    ResourceReport,
    Status,
)
from fhir_in.structure import (
    Bundle,
    CodeableConcept,
    Condition,
    Entry,
    Observation,
    OtherResource,
    PartialDate,
    Patient,
    QuestionnaireResponse,
    Reference,
    When,
)
from kb.facts import FACT_TYPES, REASON_FACT_INVALID, InvalidFacts, Violation

DEFAULT_VITALS_WINDOW = vitals.DEFAULT_VITALS_WINDOW
MAX_VIOLATIONS = 100
READINGS_STATUSES = frozenset({"final", "amended", "corrected"})
FORM_STATUSES = frozenset({"completed", "amended"})
CLINICAL_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION_SYSTEM = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
COUNTING_CLINICAL = frozenset({"active", "recurrence", "relapse"})
COUNTING_VERIFICATION = frozenset({"confirmed", "provisional", "differential"})
# A red flag that is a history: it counts in any clinical status.
HISTORY_FLAGS = frozenset({"cancer_history"})
_HISTORY_SUFFIX = re.compile(r"/_history/[^/]+$")
_UNION_TAGS = frozenset({"Patient", "Observation", "Condition", "QuestionnaireResponse", "other"})


# ---- parsing --------------------------------------------------------------------------------


def _path(loc: Iterable[str | int]) -> str:
    path = ""
    previous: str | int | None = None
    for part in loc:
        if previous == "resource" and part in _UNION_TAGS:
            previous = part
            continue  # the discriminated union's tag is not in the document
        path += f"[{part}]" if isinstance(part, int) else (f".{part}" if path else str(part))
        previous = part
    return path or "$"


_DESCRIPTIONS = {
    "missing": "required element is missing",
    "string_type": "must be a JSON string",
    "float_type": "must be a JSON number",
    "int_type": "must be a JSON integer",
    "int_from_float": "must be a JSON integer",
    "bool_type": "must be a JSON boolean",
    "list_type": "must be a JSON array",
    "model_type": "must be a JSON object",
    "model_attributes_type": "must be a JSON object",
    "dict_type": "must be a JSON object",
    "finite_number": "must be a finite number",
    "json_invalid": "is not valid JSON",
    "json_type": "must be JSON text",
}


def _describe(error: Any) -> str:
    """A pydantic error as a description without the input value."""
    kind = error["type"]
    if kind in _DESCRIPTIONS:
        return _DESCRIPTIONS[kind]
    if kind == "literal_error":
        return f"must be one of {error['ctx']['expected']}"
    message: str = error["msg"]
    return "must" + message.removeprefix("Input should") if message.startswith("Input") else message


def parse_bundle(bundle_json: str | bytes | Mapping[str, Any]) -> Bundle:
    """Check the structure of what the reader uses; raise `InvalidFacts(FHIR_INVALID)`."""
    try:
        if isinstance(bundle_json, str | bytes | bytearray):
            return Bundle.model_validate_json(bundle_json)
        if isinstance(bundle_json, Mapping):
            return Bundle.model_validate(dict(bundle_json))
    except ValidationError as error:
        errors = error.errors(include_url=False, include_input=False)
        violations = [Violation(_path(e["loc"]), _describe(e)) for e in errors[:MAX_VIOLATIONS]]
        if len(errors) > MAX_VIOLATIONS:
            violations.append(Violation("$", f"more than {MAX_VIOLATIONS} violations"))
        raise InvalidFacts(REASON_FHIR_INVALID, violations) from None
    raise TypeError("bundle_json must be JSON text or a mapping")


# ---- the reading ----------------------------------------------------------------------------


@dataclass
class _Outcome:
    reference: str
    resource_type: str
    fact_ids: set[str] = field(default_factory=set)
    reason: Reason | None = None

    def report(self, entry: int) -> ResourceReport:
        if self.fact_ids:
            return ResourceReport(
                entry, self.reference, self.resource_type, Status.USED, tuple(sorted(self.fact_ids))
            )
        return ResourceReport(
            entry,
            self.reference,
            self.resource_type,
            Status.IGNORED,
            reason=self.reason or Reason.INCOMPLETE,
        )


def _reference(index: int, entry: Entry) -> str:
    assert entry.resource is not None
    kind = entry.resource.resourceType
    if entry.resource.id is not None:
        return f"{kind}/{entry.resource.id}"
    return entry.fullUrl or f"{kind}/entry[{index}]"


def _strip_history(reference: str) -> str:
    return _HISTORY_SUFFIX.sub("", reference)


def _codes(concept: CodeableConcept | None, system: str) -> set[str]:
    """Codes of `concept` in `system` (a coding without a system counts too: status codes
    are often sent bare)."""
    if concept is None or not concept.coding:
        return set()
    return {c.code for c in concept.coding if c.code and c.system in (system, None)}


def _after(when: When, as_of: datetime) -> bool:
    if isinstance(when, PartialDate):
        return when.first_day() > as_of.date()
    return when > as_of


def _age(birth: PartialDate, as_of: datetime) -> int:
    """Whole years at the as-of date (the birthday itself counts; 29 February turns a
    year older on 1 March in common years)."""
    today = as_of.date()
    assert birth.month is not None and birth.day is not None
    return today.year - birth.year - ((today.month, today.day) < (birth.month, birth.day))


class _Reader:
    def __init__(
        self, bundle: Bundle, as_of: datetime, window: timedelta, questionnaire: str
    ) -> None:
        self.as_of = as_of
        self.window = window
        self.questionnaire = questionnaire
        self.entries = [
            (i, entry) for i, entry in enumerate(bundle.entry or ()) if entry.resource is not None
        ]
        self.outcomes: dict[int, _Outcome] = {
            i: _Outcome(_reference(i, entry), entry.resource.resourceType)  # type: ignore[union-attr]
            for i, entry in self.entries
        }
        self.patient_refs: set[str] = set()
        self.conflicts: list[Conflict] = []

    def ignore(self, index: int, reason: Reason) -> None:
        self.outcomes[index].reason = reason

    def about_patient(self, subject: Reference | None) -> bool:
        if subject is None or subject.reference is None:
            return False
        return _strip_history(subject.reference) in self.patient_refs

    # -- Patient

    def patient(self) -> Draft | None:
        found = [(i, e) for i, e in self.entries if isinstance(e.resource, Patient)]
        if len(found) > 1:
            first = found[0][0]
            raise InvalidFacts(
                REASON_FHIR_INVALID,
                [
                    Violation(
                        f"entry[{i}].resource",
                        f"a bundle carries one Patient; this is another besides entry[{first}]",
                    )
                    for i, _ in found[1:]
                ],
            )
        if not found:
            return None
        index, entry = found[0]
        patient = entry.resource
        assert isinstance(patient, Patient)
        if patient.id is not None:
            self.patient_refs.add(f"Patient/{patient.id}")
        if entry.fullUrl is not None:
            self.patient_refs.add(_strip_history(entry.fullUrl))
        base = f"entry[{index}].resource"
        birth = patient.birthDate
        if birth is None:
            self.ignore(index, Reason.INCOMPLETE)
            return None
        if birth.day is None:
            self.ignore(index, Reason.PARTIAL_DATE)
            return None
        reference = self.outcomes[index].reference
        draft = Draft("patient", "patient", base, sources={reference})
        draft.fields["age_years"] = _age(birth, self.as_of)
        draft.field_paths["age_years"] = f"{base}.birthDate"
        if patient.gender is not None:
            draft.fields["sex"] = patient.gender
            draft.field_paths["sex"] = f"{base}.gender"
        self.outcomes[index].fact_ids.add("patient")
        return draft

    # -- Observations

    def _readings(self, index: int, observation: Observation) -> list[vitals.VitalReading]:
        """The vital readings one Observation gives; records why when it gives none."""
        base = f"entry[{index}].resource"
        reference = self.outcomes[index].reference
        if not self.about_patient(observation.subject):
            self.ignore(index, Reason.NOT_THIS_PATIENT)
            return []
        if observation.status not in READINGS_STATUSES:
            self.ignore(index, Reason.STATUS)
            return []
        posture = vitals.body_position(observation.extension)
        if vitals.is_panel(observation):
            parts = [
                (f"{base}.component[{c}]", component.code, component.valueQuantity)
                for c, component in enumerate(observation.component or ())
            ]
        else:
            parts = [(base, observation.code, observation.valueQuantity)]
        coded = [
            (path, slot, quantity)
            for path, concept, quantity in parts
            if (slot := vitals.slot_of(concept, posture)) is not None
        ]
        if not coded:
            self.ignore(index, Reason.UNKNOWN_CODE)
            return []
        period = observation.effectivePeriod
        when = observation.effectiveDateTime or (period.start if period else None)
        if when is None:
            self.ignore(index, Reason.INCOMPLETE)
            return []
        if isinstance(when, PartialDate):
            self.ignore(index, Reason.PARTIAL_DATE)
            return []
        if when > self.as_of:
            self.ignore(index, Reason.AFTER_AS_OF)
            return []
        readings, reason = [], Reason.INCOMPLETE
        for path, slot, quantity in coded:
            value = vitals.exact_value(quantity)
            if value is None or quantity is None:
                continue
            if not vitals.unit_ok(slot[0], quantity):
                reason = Reason.UNKNOWN_CODE
                continue
            readings.append(
                vitals.VitalReading(
                    slot, when, vitals.rounded(value), f"{path}.valueQuantity.value", reference
                )
            )
        if not readings:
            self.ignore(index, reason)
        return readings

    def observations(self) -> Draft | None:
        readings: list[vitals.VitalReading] = []
        by_reading: dict[int, int] = {}
        for index, entry in self.entries:
            if isinstance(entry.resource, Observation):
                for reading in self._readings(index, entry.resource):
                    by_reading[id(reading)] = index
                    readings.append(reading)
        test = vitals.latest_test(readings)
        if test is not None and test.at < self.as_of - self.window:
            test = None  # stale: every reading is at least as old, reported below
        used = {id(r) for r in test.readings.values()} if test else set()
        oldest_kept = self.as_of - self.window
        for reading in readings:
            index = by_reading[id(reading)]
            if id(reading) in used:
                self.outcomes[index].fact_ids.add("orthostatic_vitals")
            elif reading.at < oldest_kept:
                self.ignore(index, Reason.STALE)
            elif test is not None and reading.at <= test.at:
                self.ignore(index, Reason.SUPERSEDED)
            else:
                self.ignore(index, Reason.INCOMPLETE)
        if test is None:
            return None
        first = min(test.readings.values(), key=lambda r: r.path)
        draft = Draft("orthostatic_vitals", "orthostatic_vitals", first.path.split(".value")[0])
        for (measure, posture), reading in test.readings.items():
            name = vitals.field_name(measure, posture)
            draft.fields[name] = reading.value
            draft.field_paths[name] = reading.path
            draft.sources.add(reading.reference)
        draft.fields = {
            vitals.field_name(m, p): draft.fields[vitals.field_name(m, p)] for m, p in vitals.SLOTS
        }
        return draft

    # -- Conditions

    def _flags(self, index: int, condition: Condition) -> set[str]:
        if not self.about_patient(condition.subject):
            self.ignore(index, Reason.NOT_THIS_PATIENT)
            return set()
        if condition.verificationStatus is not None and not (
            _codes(condition.verificationStatus, VERIFICATION_SYSTEM) & COUNTING_VERIFICATION
        ):
            self.ignore(index, Reason.STATUS)
            return set()
        fields: set[str] = set()
        for coding in condition.code.coding or () if condition.code else ():
            fields |= TABLES.red_flags_for(coding.system, coding.code)
        if not fields:
            self.ignore(index, Reason.UNKNOWN_CODE)
            return set()
        active = bool(_codes(condition.clinicalStatus, CLINICAL_SYSTEM) & COUNTING_CLINICAL)
        fields = {f for f in fields if active or f in HISTORY_FLAGS}
        if not fields:
            self.ignore(index, Reason.STATUS)
            return set()
        if condition.recordedDate is not None and _after(condition.recordedDate, self.as_of):
            self.ignore(index, Reason.AFTER_AS_OF)
            return set()
        return fields

    def conditions(self) -> dict[str, set[int]]:
        """Red-flag field -> the entries of the Conditions that set it."""
        flags: dict[str, set[int]] = {}
        for index, entry in self.entries:
            if isinstance(entry.resource, Condition):
                for name in self._flags(index, entry.resource):
                    flags.setdefault(name, set()).add(index)
        return flags

    # -- the assessment form

    def _counts(self, index: int, response: QuestionnaireResponse) -> datetime | None:
        if not self.about_patient(response.subject):
            self.ignore(index, Reason.NOT_THIS_PATIENT)
            return None
        name = response.questionnaire
        if name is None or (
            name != self.questionnaire and name.split("|")[0] != self.questionnaire
        ):
            self.ignore(index, Reason.UNKNOWN_CODE)
            return None
        if response.status not in FORM_STATUSES:
            self.ignore(index, Reason.STATUS)
            return None
        authored = response.authored
        if authored is None:
            self.ignore(index, Reason.INCOMPLETE)
            return None
        if isinstance(authored, PartialDate):
            self.ignore(index, Reason.PARTIAL_DATE)
            return None
        if authored > self.as_of:
            self.ignore(index, Reason.AFTER_AS_OF)
            return None
        return authored

    def form(self) -> tuple[int | None, list[Draft], list[Violation]]:
        counting = []
        for index, entry in self.entries:
            if isinstance(entry.resource, QuestionnaireResponse):
                authored = self._counts(index, entry.resource)
                if authored is not None:
                    counting.append((authored, self.outcomes[index].reference, index))
        if not counting:
            return None, [], []
        counting.sort(reverse=True)
        chosen = counting[0][2]
        for _, _, index in counting[1:]:
            self.ignore(index, Reason.SUPERSEDED)
        response = dict(self.entries)[chosen].resource
        assert isinstance(response, QuestionnaireResponse)
        drafts, violations = form_drafts(response, chosen, self.outcomes[chosen].reference)
        return chosen, drafts, violations

    # -- everything together

    def read(self) -> Reading:
        patient = self.patient()
        for index, entry in self.entries:
            if isinstance(entry.resource, OtherResource):
                self.ignore(index, Reason.UNSUPPORTED_TYPE)
        tested = self.observations()
        flagged = self.conditions()
        form_entry, form, form_violations = self.form()
        # Every answer of the counting form must keep the contract, even one that coded
        # data overrides: a bad answer is a client bug either way.
        _, form_kb_violations = validate(form)
        merged = self._merge(patient, tested, flagged, form_entry, form)
        facts, merged_violations = validate(merged)
        violations = list(dict.fromkeys(form_violations + form_kb_violations + merged_violations))
        if violations:
            raise InvalidFacts(REASON_FACT_INVALID, violations)
        if form_entry is not None:
            outcome = self.outcomes[form_entry]
            outcome.fact_ids |= {d.fact_id for d in merged if outcome.reference in d.sources}
            # A form whose every answer coded data replaced fed nothing: superseded.
            outcome.reason = Reason.SUPERSEDED if self.conflicts else Reason.INCOMPLETE
        report = MappingReport(
            tuple(outcome.report(i) for i, outcome in self.outcomes.items()),
            tuple(self.conflicts),
        )
        return Reading(
            tuple(facts),
            tuple(d.fact_in() for d in merged),
            report,
            {d.fact_id: tuple(sorted(d.sources)) for d in merged},
        )

    def _merge(
        self,
        patient: Draft | None,
        tested: Draft | None,
        flagged: dict[str, set[int]],
        form_entry: int | None,
        form: list[Draft],
    ) -> list[Draft]:
        by_type: dict[str, list[Draft]] = {}
        for draft in form:
            by_type.setdefault(draft.fact_type, []).append(draft)
        form_reference = self.outcomes[form_entry].reference if form_entry is not None else ""
        if patient is not None:
            by_type["patient"] = [patient]
        if tested is not None:
            if by_type.get("orthostatic_vitals"):
                self.conflicts.append(
                    Conflict(
                        Resolution.OBSERVATIONS_OVER_FORM,
                        "orthostatic_vitals",
                        None,
                        tuple(sorted(tested.sources)),
                        (form_reference,),
                    )
                )
            by_type["orthostatic_vitals"] = [tested]
        if flagged:
            first = min(min(indexes) for indexes in flagged.values())
            drafts = by_type.setdefault(
                "red_flags", [Draft("red_flags", "red_flags", f"entry[{first}].resource")]
            )
            red_flags = drafts[0]
            for name in sorted(flagged):
                references = tuple(sorted(self.outcomes[i].reference for i in flagged[name]))
                for index in flagged[name]:
                    self.outcomes[index].fact_ids.add("red_flags")
                if red_flags.fields.get(name) is False:
                    self.conflicts.append(
                        Conflict(
                            Resolution.CONDITION_OVER_FORM,
                            "red_flags",
                            name,
                            references,
                            (form_reference,),
                        )
                    )
                red_flags.fields[name] = True
                red_flags.field_paths[name] = f"entry[{min(flagged[name])}].resource.code"
                red_flags.sources.update(references)
        return [draft for name in FACT_TYPES for draft in by_type.get(name, [])]


def read_bundle(
    bundle_json: str | bytes | Mapping[str, Any],
    as_of: datetime,
    *,
    vitals_window: timedelta = DEFAULT_VITALS_WINDOW,
    questionnaire_base: str = DEFAULT_BASE,
) -> Reading:
    """Read one FHIR R4 Bundle into facts as they stood at `as_of` (fhir.md section 1).

    `as_of` must be timezone-aware: it is compared with FHIR instants, which all
    carry a zone. Raises `InvalidFacts` with reason `FHIR_INVALID` (structure) or
    `FACT_INVALID` (an answer or a measurement outside the fact contract), every
    violation with its JSON path in the bundle.
    """
    if as_of.tzinfo is None or as_of.utcoffset() is None:
        raise ValueError("as_of must be timezone-aware")
    if vitals_window < timedelta(0):
        raise ValueError("vitals_window must not be negative")
    bundle = parse_bundle(bundle_json)
    return _Reader(bundle, as_of, vitals_window, canonical(questionnaire_base)).read()
