"""What a reading returns: the facts, where each came from, and the mapping report.

The report says, for every resource in the bundle, whether it fed facts or why
it was skipped, and which conflicts between sources were resolved. It never
holds a value (no codes, dates or measurements): it may be logged and shown to
integrators, and it names resources by reference only.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum

from kb.facts import Fact, FactIn

REASON_FHIR_INVALID = "FHIR_INVALID"


class Status(StrEnum):
    USED = "USED"
    IGNORED = "IGNORED"


class Reason(StrEnum):
    """Why a resource was skipped. Clinically unusable data is skipped, never an error."""

    STALE = "STALE"
    STATUS = "STATUS"
    UNKNOWN_CODE = "UNKNOWN_CODE"
    PARTIAL_DATE = "PARTIAL_DATE"
    NOT_THIS_PATIENT = "NOT_THIS_PATIENT"
    UNSUPPORTED_TYPE = "UNSUPPORTED_TYPE"
    SUPERSEDED = "SUPERSEDED"
    AFTER_AS_OF = "AFTER_AS_OF"
    INCOMPLETE = "INCOMPLETE"


# What each reason means, for the documentation (docs/fhir.md is generated from it).
REASON_MEANINGS: dict[Reason, str] = {
    Reason.STALE: "an orthostatic test older than the vitals window (its latest reading is "
    "more than the window before as-of), or a vital-sign reading that old",
    Reason.STATUS: "a status the reader does not count: an Observation not `final`, `amended` "
    "or `corrected`; a Condition `refuted` or `entered-in-error`, or not `active`, "
    "`recurrence` or `relapse` (except a cancer history); a QuestionnaireResponse not "
    "`completed` or `amended`",
    Reason.UNKNOWN_CODE: "no code the reader knows: an Observation that is not one of the "
    "orthostatic vital signs (or whose posture or unit is missing, unknown or contradictory), "
    "a Condition with no code in the code table, a QuestionnaireResponse for another "
    "Questionnaire",
    Reason.PARTIAL_DATE: "a date too coarse to use: a Patient `birthDate` without a day, an "
    "Observation time or a QuestionnaireResponse `authored` without a time of day",
    Reason.NOT_THIS_PATIENT: "the resource's subject is not the bundle's Patient (or it has "
    "none, or the bundle has no Patient)",
    Reason.UNSUPPORTED_TYPE: "a resource type the reader does not use",
    Reason.SUPERSEDED: "a newer resource of the same kind counts instead: an older "
    "QuestionnaireResponse, a vital-sign reading older than (or repeated within) the test used",
    Reason.AFTER_AS_OF: "recorded after the as-of instant (an Observation's time, a "
    "QuestionnaireResponse's `authored`, a Condition's `recordedDate`)",
    Reason.INCOMPLETE: "a required part is missing: a Patient without `birthDate`, an "
    "Observation without a time or an exact value, a vital-sign reading with no complete "
    "test around it, a QuestionnaireResponse without `authored`",
}


class Resolution(StrEnum):
    """How a conflict between coded data and the form was resolved."""

    # A recent Observation test replaced the form's orthostatic_vitals answers.
    OBSERVATIONS_OVER_FORM = "OBSERVATIONS_OVER_FORM"
    # A Condition set a red flag the form answered false; the red flag is kept.
    CONDITION_OVER_FORM = "CONDITION_OVER_FORM"


RESOLUTION_MEANINGS: dict[Resolution, str] = {
    Resolution.OBSERVATIONS_OVER_FORM: "the form answered the orthostatic_vitals group and a "
    "complete Observation test inside the window exists: the Observations' test is used, "
    "the form's answers are not",
    Resolution.CONDITION_OVER_FORM: "the form answered a red flag false and a counting "
    "Condition codes it: the red flag is true",
}


@dataclass(frozen=True)
class ResourceReport:
    """One bundle entry's fate. `reason` is set exactly when `status` is IGNORED."""

    entry: int  # the index in Bundle.entry
    reference: str  # `Type/id`, else the entry's fullUrl, else `Type/entry[n]`
    resource_type: str
    status: Status
    fact_ids: tuple[str, ...] = ()
    reason: Reason | None = None


@dataclass(frozen=True)
class Conflict:
    """Two sources spoke about one field (or group) and one of them won."""

    resolution: Resolution
    fact_id: str
    field: str | None  # the red-flag field; None for the whole vitals group
    kept: tuple[str, ...]  # references of the winning resources
    overridden: tuple[str, ...]  # references of the losing resources


@dataclass(frozen=True)
class MappingReport:
    resources: tuple[ResourceReport, ...]
    conflicts: tuple[Conflict, ...]

    def by_reference(self) -> dict[str, ResourceReport]:
        return {resource.reference: resource for resource in self.resources}


@dataclass(frozen=True)
class Reading:
    """The facts read from one bundle at one as-of instant.

    `facts` passed `kb.facts.validate_facts` as one set; `inputs` are the same
    facts before validation (what a TranslateFhir answer carries); `sources`
    names, per fact id, the references of the resources behind it, sorted.
    """

    facts: tuple[Fact, ...]
    inputs: tuple[FactIn, ...]
    report: MappingReport
    sources: dict[str, tuple[str, ...]] = field(default_factory=dict)
