"""The fact vocabulary (version 2: fields added, none renamed) and its validation.

One strict pydantic model per fact type. The models are the contract: their JSON
Schema is what `GetKnowledgeBase` publishes, and `validate_facts` is the only way
a fact reaches the engine. Validation is all-or-nothing: every violation in a
request is reported, with the path of the field in the request, and nothing is
evaluated when there is one.

Descriptions never contain the offending value (facts are health data); they may
name the fact id and the vocabulary (types, fields, allowed values).
"""

from __future__ import annotations

import math
import re
import typing
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError
from pydantic_core import PydanticCustomError

# The largest integer a protobuf double (how `Struct` carries every number)
# represents exactly; also keeps values far inside the engine's 64-bit limit.
MAX_EXACT_INTEGER = 2**53 - 1
MAX_FACTS_PER_REQUEST = 500
FACT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")  # used with fullmatch

REASON_FACT_INVALID = "FACT_INVALID"
REASON_LIMIT_EXCEEDED = "LIMIT_EXCEEDED"


def _finite(value: Any) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return value


def _finite_number(value: Any) -> float | None:
    """`value` if it is a usable number (not a bool, NaN or infinity), else None."""
    if isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value):
        return value
    return None


def _exact_integer(value: Any) -> Any:
    """Accept 40.0 as 40 (Struct carries doubles), reject 40.5, NaN and bools."""
    value = _finite(value)
    if isinstance(value, float):
        if not value.is_integer():
            raise PydanticCustomError("integer", "must be an integer (no fractional part)")
        return int(value)
    return value


def _integer(ge: int, le: int = MAX_EXACT_INTEGER) -> Any:
    return Annotated[int, Field(strict=True, ge=ge, le=le), BeforeValidator(_exact_integer)]


def _number(**bounds: float) -> Any:
    return Annotated[float, Field(strict=True, **bounds), BeforeValidator(_finite)]


Bool = Annotated[bool, Field(strict=True)]


class _FactModel(BaseModel):
    model_config = ConfigDict(
        extra="forbid", strict=True, allow_inf_nan=False, frozen=True, validate_default=False
    )

    @classmethod
    def field_violations(cls, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        """Rules across fields of one fact, as (field name, description) pairs.

        Checked on the raw fields that are valid on their own, so they are
        reported alongside any other violation of the same fact.
        """
        return []


class Patient(_FactModel):
    age_years: _integer(ge=0, le=120)
    sex: Literal["female", "male", "other", "unknown"] | None = None


class Headache(_FactModel):
    laterality: Literal["unilateral", "bilateral"] | None = None
    side_locked: Bool | None = Field(None, description="always on the same side, never shifts")
    starts_in_neck: Bool | None = Field(
        None, description="pain begins in the neck / occipital region"
    )
    radiates_oculo_fronto_temporal: Bool | None = Field(
        None, description="spreads to the eye, forehead or temple on that side"
    )
    provoked_by_neck_movement: Bool | None = None
    provoked_by_sustained_posture: Bool | None = Field(
        None, description="posture alone does not satisfy the movement criterion"
    )
    provoked_by_occipital_pressure: Bool | None = Field(
        None, description="external pressure over the upper neck / occiput"
    )
    provoked_by_cough_or_strain: Bool | None = Field(None, description="Valsalva-type provocation")
    onset: Literal["gradual", "sudden"] | None = Field(
        None, description="sudden = thunderclap, peak within a minute"
    )
    intensity: Literal["mild", "moderate", "severe"] | None = None
    pulsating: Bool | None = None
    pressing_tightening: Bool | None = None
    aggravated_by_routine_activity: Bool | None = Field(
        None, description="e.g. walking, climbing stairs"
    )
    nausea_or_vomiting: Bool | None = None
    photophobia: Bool | None = None
    phonophobia: Bool | None = None
    attack_duration_hours: _number(gt=0, le=720) | None = Field(
        None, description="typical untreated attack"
    )
    attack_count: _integer(ge=0) | None = Field(None, description="attacks of this kind so far")
    tension_type_features_prominent: Bool | None = Field(
        None,
        description="clinician's judgement that tension-type features coexist and are prominent",
    )
    improvement_lying_down_pct: _number(ge=0, le=100) | None = Field(
        None, description="how much the headache improves after lying flat"
    )
    improvement_lying_down_within_hours: _number(ge=0, le=72) | None = Field(
        None, description="how soon that improvement comes"
    )
    autonomic_features: Bool | None = Field(
        None,
        description=(
            "ipsilateral cranial autonomic features during the pain: lacrimation, conjunctival "
            "injection, rhinorrhoea or nasal congestion, eyelid oedema, ptosis or miosis"
        ),
    )
    medication_overuse: Bool | None = Field(
        None,
        description=(
            "acute headache medication on 10 or more (triptans, opioids, combinations) or 15 or "
            "more (simple analgesics) days a month for more than 3 months"
        ),
    )


class CervicalExam(_FactModel):
    rom_reduced: Bool | None = None
    myofascial_sensitivity: Bool | None = None
    cervical_spine_tenderness: Bool | None = None
    paraspinal_tenderness: Bool | None = None
    suboccipital_tenderness: Bool | None = None


class OrthostaticVitals(_FactModel):
    """The lying-to-standing test. Integers keep the threshold arithmetic exact."""

    supine_hr_bpm: _integer(ge=20, le=250)
    standing_hr_bpm: _integer(ge=20, le=250)
    supine_sbp_mmhg: _integer(ge=40, le=300)
    standing_sbp_mmhg: _integer(ge=40, le=300)
    supine_dbp_mmhg: _integer(ge=20, le=200)
    standing_dbp_mmhg: _integer(ge=20, le=200)

    @classmethod
    def field_violations(cls, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        violations = []
        for posture in ("supine", "standing"):
            dbp = _finite_number(fields.get(f"{posture}_dbp_mmhg"))
            sbp = _finite_number(fields.get(f"{posture}_sbp_mmhg"))
            if dbp is not None and sbp is not None and dbp >= sbp:
                violations.append(
                    (f"{posture}_dbp_mmhg", f"{posture} diastolic must be below {posture} systolic")
                )
        return violations


class RedFlags(_FactModel):
    """The red-flag screen. It is complete when every field is given, true or false:
    an absent field is an unasked question, not a negative answer."""

    horner_syndrome: Bool | None = None
    focal_neurological_deficit: Bool | None = None
    recent_neck_trauma: Bool | None = Field(
        None, description="including recent cervical manipulation"
    )
    fever_or_systemic_illness: Bool | None = None
    cancer_history: Bool | None = None
    papilledema: Bool | None = None
    progressive_worsening: Bool | None = None
    pregnancy_or_postpartum: Bool | None = None
    immunosuppression: Bool | None = None
    new_onset_after_50: Bool | None = Field(
        None,
        description=(
            "the headache first began after age 50 (the giant-cell arteritis age threshold; "
            'SNNOOP10\'s "older age" is 65)'
        ),
    )
    pulsatile_tinnitus: Bool | None = None
    lower_cranial_nerve_palsy: Bool | None = Field(
        None, description="e.g. dysphagia, tongue deviation, hoarseness from a IX-XII palsy"
    )
    transient_visual_loss_or_tia: Bool | None = Field(
        None,
        description="amaurosis fugax or a transient ischaemic attack, even if resolved",
    )
    posterior_circulation_symptoms: Bool | None = Field(
        None, description="vertigo, diplopia, dysarthria, dysphagia, ataxia or drop attacks"
    )
    meningism: Bool | None = Field(
        None,
        description=(
            "neck stiffness on flexion with fever or photophobia, Kernig or Brudzinski sign"
        ),
    )
    reduced_consciousness: Bool | None = None
    painful_red_eye: Bool | None = Field(
        None, description="a painful red eye (acute angle-closure glaucoma must be excluded)"
    )
    new_or_changed_headache: Bool | None = Field(
        None,
        description=(
            "headache that began within the last 3 months, or a clear change of a long-standing "
            "pattern"
        ),
    )
    exertional_onset: Bool | None = Field(
        None, description="brought on by exercise or sexual activity"
    )


class Imaging(_FactModel):
    modality: Literal["mri", "ct", "xray"]
    region: Literal["cervical_spine", "brain"]
    finding: Literal["normal", "degenerative_changes", "structural_lesion", "chiari_malformation"]


PhysicalTherapyComponent = Literal["manual_therapy", "strengthening", "motor_control"]
TreatmentKind = Literal[
    "physical_therapy",
    "aerobic_exercise",
    "greater_occipital_nerve_block",
    "facet_joint_injection",
    "cervical_epidural_steroid_injection",
    "amitriptyline",
]
TREATMENT_KINDS: tuple[str, ...] = typing.get_args(TreatmentKind)


class Treatment(_FactModel):
    kind: TreatmentKind
    weeks: _number(ge=0, le=520) | None = Field(None, description="time on this treatment so far")
    sessions: _integer(ge=0) | None = Field(None, description="injections / blocks given")
    components: list[PhysicalTherapyComponent] | None = Field(
        None, description="physical therapy only; rejected on other kinds"
    )
    response: Literal["pending", "inadequate", "adequate"]

    @classmethod
    def field_violations(cls, fields: Mapping[str, Any]) -> list[tuple[str, str]]:
        kind = fields.get("kind")
        if "components" in fields and kind in TREATMENT_KINDS and kind != "physical_therapy":
            return [("components", "components are allowed on physical_therapy only")]
        return []


@dataclass(frozen=True)
class FactType:
    name: str
    model: type[_FactModel]
    singleton: bool
    description: str


FACT_TYPES: dict[str, FactType] = {
    t.name: t
    for t in (
        FactType("patient", Patient, True, "The patient (at most one)."),
        FactType("headache", Headache, True, "The presenting headache (at most one)."),
        FactType("cervical_exam", CervicalExam, True, "Cervical examination (at most one)."),
        FactType(
            "orthostatic_vitals",
            OrthostaticVitals,
            True,
            "The lying-to-standing test (at most one).",
        ),
        FactType(
            "red_flags",
            RedFlags,
            True,
            "Red-flag screen (at most one); complete when every field is given, true or false.",
        ),
        FactType("imaging", Imaging, False, "An imaging study (zero or more)."),
        FactType("treatment", Treatment, False, "A treatment tried (zero or more; one per kind)."),
    )
}


@dataclass(frozen=True)
class FactIn:
    """A fact as a client sent it, before validation."""

    id: str
    type: str
    fields: Mapping[str, Any]


@dataclass(frozen=True)
class Fact:
    """A validated fact: `value` is an instance of its type's model."""

    id: str
    type: str
    value: _FactModel


@dataclass(frozen=True)
class Violation:
    """One broken rule: `field` is the path in the request, e.g. `facts[2].fields.weeks`."""

    field: str
    description: str


class InvalidFacts(Exception):
    """Raised when a request breaks the fact contract; nothing of it is evaluated."""

    def __init__(self, reason: str, violations: Sequence[Violation]) -> None:
        self.reason = reason
        self.violations = tuple(violations)
        super().__init__(f"{reason}: {len(self.violations)} violation(s)")


def fact_schemas() -> dict[str, dict[str, Any]]:
    """The JSON Schema of every fact type's `fields`, as published by the API."""
    schemas = {}
    for name, fact_type in FACT_TYPES.items():
        schema = fact_type.model.model_json_schema()
        schema["title"] = name
        schema["description"] = fact_type.description
        schemas[name] = schema
    return schemas


def _describe(error: Any) -> str:
    """A pydantic error as a description that never contains the input value."""
    kind = error["type"]
    if kind == "missing":
        return "required field is missing"
    if kind == "extra_forbidden":
        return "unknown field"
    message: str = error["msg"]
    return (
        "must" + message.removeprefix("Input should")
        if message.startswith("Input should")
        else message
    )


def _path(prefix: str, loc: Sequence[str | int]) -> str:
    path = prefix
    for part in loc:
        path += f"[{part}]" if isinstance(part, int) else f".{part}"
    return path


def _validate_one(index: int, raw: FactIn) -> tuple[Fact | None, list[Violation]]:
    prefix = f"facts[{index}]"
    violations = []
    if not isinstance(raw.id, str) or not FACT_ID_PATTERN.fullmatch(raw.id):
        violations.append(
            Violation(
                f"{prefix}.id", "must be 1-64 characters of letters, digits, '.', '_', '-', ':'"
            )
        )
    fact_type = FACT_TYPES.get(raw.type)
    if fact_type is None:
        allowed = ", ".join(FACT_TYPES)
        violations.append(
            Violation(f"{prefix}.type", f"unknown fact type; expected one of: {allowed}")
        )
        return None, violations
    model = fact_type.model
    # null means absent for known fields; an unknown field is an error even when null.
    fields = {
        key: value
        for key, value in raw.fields.items()
        if value is not None or key not in model.model_fields
    }
    try:
        value = model.model_validate(fields)
    except ValidationError as error:
        errors = error.errors()
        invalid = {e["loc"][0] for e in errors if e["loc"]}
        valid_fields = {key: item for key, item in fields.items() if key not in invalid}
        violations.extend(
            Violation(_path(f"{prefix}.fields", e["loc"]), _describe(e)) for e in errors
        )
        violations.extend(_cross_field(prefix, model, valid_fields))
        return None, violations
    violations.extend(_cross_field(prefix, model, fields))
    return (None if violations else Fact(raw.id, raw.type, value)), violations


def _cross_field(
    prefix: str, model: type[_FactModel], fields: Mapping[str, Any]
) -> list[Violation]:
    return [
        Violation(f"{prefix}.fields.{field}", description)
        for field, description in model.field_violations(fields)
    ]


def _duplicate_id_violations(raw_facts: Sequence[FactIn]) -> list[Violation]:
    violations = []
    first: dict[str, int] = {}
    for index, raw in enumerate(raw_facts):
        if raw.id in first:
            violations.append(
                Violation(
                    f"facts[{index}].id",
                    f"duplicate fact id '{raw.id}' (first used by facts[{first[raw.id]}])",
                )
            )
        elif isinstance(raw.id, str) and FACT_ID_PATTERN.fullmatch(raw.id):
            first[raw.id] = index
    return violations


def _cardinality_violations(raw_facts: Sequence[FactIn]) -> list[Violation]:
    """A second fact of a singleton type, a second treatment of one kind.

    Judged on type and kind alone, so a repeat is reported even when one of the
    facts has other errors. The kind is not named: it is a field value.
    """
    violations = []
    first: dict[tuple[str, str], int] = {}
    for index, raw in enumerate(raw_facts):
        fact_type = FACT_TYPES.get(raw.type)
        kind = raw.fields.get("kind")
        if fact_type is not None and fact_type.singleton:
            key, path = (raw.type, ""), "type"
            rule = f"at most one '{raw.type}' fact is allowed"
        elif raw.type == "treatment" and kind in TREATMENT_KINDS:
            key, path = (raw.type, kind), "fields.kind"
            rule = "at most one treatment of each kind is allowed"
        else:
            continue
        if key in first:
            violations.append(
                Violation(f"facts[{index}].{path}", f"{rule}; this repeats facts[{first[key]}]")
            )
        else:
            first[key] = index
    return violations


def validate_facts(
    raw_facts: Sequence[FactIn], max_facts: int = MAX_FACTS_PER_REQUEST
) -> list[Fact]:
    """Validate a whole request; raise `InvalidFacts` listing every violation."""
    if len(raw_facts) > max_facts:
        raise InvalidFacts(
            REASON_LIMIT_EXCEEDED,
            [Violation("facts", f"at most {max_facts} facts per request")],
        )
    violations: list[Violation] = []
    valid: list[Fact] = []
    for index, raw in enumerate(raw_facts):
        fact, fact_violations = _validate_one(index, raw)
        violations.extend(fact_violations)
        if fact is not None:
            valid.append(fact)
    violations.extend(_duplicate_id_violations(raw_facts))
    violations.extend(_cardinality_violations(raw_facts))
    if violations:
        raise InvalidFacts(REASON_FACT_INVALID, violations)
    return valid
