"""Validation cases for the fact vocabulary (spec `facts.md`, version 2), as plain data.

Shared by the knowledge-base test (`test_validation.py`) and the gRPC tests, so this
module imports nothing from the project or from pytest, and every fact is a plain
JSON-compatible dict `{"id": ..., "type": ..., "fields": {...}}` as a client sends it.
Non-finite numbers are Python floats (`float("nan")`, `float("inf")`); protobuf
`Struct` carries them as doubles. No case depends on an int/float distinction that a
`Struct` (every number a double) would erase.

- `CASES`: requests that must be rejected, each with the exact set of violation paths
  (`facts[2].fields.standing_hr_bpm`, `facts[0].type`, `facts[3].id`, `facts`) and the
  `ErrorInfo` reason.
- `VALID_CASES` (named in `NAMED_VALID_CASES`): requests that must be accepted.
- `PRIVACY_CASES` / `SENTINELS`: rejected requests carrying sentinel values that must
  never appear in a violation description.
- `VOCABULARY`: the field table of `facts.md`, written out independently of `kb/`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

FACT_INVALID = "FACT_INVALID"
LIMIT_EXCEEDED = "LIMIT_EXCEEDED"
MAX_FACTS = 500

NAN = float("nan")
INF = float("inf")


@dataclass(frozen=True)
class Case:
    """A request that must be rejected with exactly `paths` and `reason`."""

    name: str
    facts: list[dict[str, Any]]
    paths: frozenset[str]
    reason: str = FACT_INVALID


@dataclass(frozen=True)
class FieldSpec:
    """One row of a `facts.md` table."""

    kind: str  # "bool" | "integer" | "number" | "enum" | "list"
    required: bool = False
    minimum: float | None = None
    maximum: float | None = None
    exclusive_minimum: bool = False
    values: tuple[str, ...] = ()


BOOL = FieldSpec("bool")


def _enum(*values: str, required: bool = False) -> FieldSpec:
    return FieldSpec("enum", required=required, values=values)


PT_COMPONENTS = ("manual_therapy", "strengthening", "motor_control")
TREATMENT_KINDS = (
    "physical_therapy",
    "aerobic_exercise",
    "greater_occipital_nerve_block",
    "facet_joint_injection",
    "cervical_epidural_steroid_injection",
    "amitriptyline",
)

VOCABULARY: dict[str, dict[str, FieldSpec]] = {
    "patient": {
        "age_years": FieldSpec("integer", required=True, minimum=0, maximum=120),
        "sex": _enum("female", "male", "other", "unknown"),
    },
    "headache": {
        "laterality": _enum("unilateral", "bilateral"),
        "side_locked": BOOL,
        "starts_in_neck": BOOL,
        "radiates_oculo_fronto_temporal": BOOL,
        "provoked_by_neck_movement": BOOL,
        "provoked_by_sustained_posture": BOOL,
        "provoked_by_occipital_pressure": BOOL,
        "provoked_by_cough_or_strain": BOOL,
        "onset": _enum("gradual", "sudden"),
        "intensity": _enum("mild", "moderate", "severe"),
        "pulsating": BOOL,
        "pressing_tightening": BOOL,
        "aggravated_by_routine_activity": BOOL,
        "nausea_or_vomiting": BOOL,
        "photophobia": BOOL,
        "phonophobia": BOOL,
        "attack_duration_hours": FieldSpec(
            "number", minimum=0, maximum=720, exclusive_minimum=True
        ),
        "attack_count": FieldSpec("integer", minimum=0),
        "tension_type_features_prominent": BOOL,
        "improvement_lying_down_pct": FieldSpec("number", minimum=0, maximum=100),
        "improvement_lying_down_within_hours": FieldSpec("number", minimum=0, maximum=72),
        "autonomic_features": BOOL,  # v2
        "medication_overuse": BOOL,  # v2
    },
    "cervical_exam": {
        "rom_reduced": BOOL,
        "myofascial_sensitivity": BOOL,
        "cervical_spine_tenderness": BOOL,
        "paraspinal_tenderness": BOOL,
        "suboccipital_tenderness": BOOL,
    },
    "orthostatic_vitals": {
        "supine_hr_bpm": FieldSpec("integer", required=True, minimum=20, maximum=250),
        "standing_hr_bpm": FieldSpec("integer", required=True, minimum=20, maximum=250),
        "supine_sbp_mmhg": FieldSpec("integer", required=True, minimum=40, maximum=300),
        "standing_sbp_mmhg": FieldSpec("integer", required=True, minimum=40, maximum=300),
        "supine_dbp_mmhg": FieldSpec("integer", required=True, minimum=20, maximum=200),
        "standing_dbp_mmhg": FieldSpec("integer", required=True, minimum=20, maximum=200),
    },
    "red_flags": {
        "horner_syndrome": BOOL,
        "focal_neurological_deficit": BOOL,
        "recent_neck_trauma": BOOL,
        "fever_or_systemic_illness": BOOL,
        "cancer_history": BOOL,
        "papilledema": BOOL,
        "progressive_worsening": BOOL,
        "pregnancy_or_postpartum": BOOL,
        "immunosuppression": BOOL,
        "new_onset_after_50": BOOL,
        "pulsatile_tinnitus": BOOL,  # v2
        "lower_cranial_nerve_palsy": BOOL,  # v2
        "transient_visual_loss_or_tia": BOOL,  # v2
        "posterior_circulation_symptoms": BOOL,  # v2
        "meningism": BOOL,  # v2
        "reduced_consciousness": BOOL,  # v2
        "painful_red_eye": BOOL,  # v2
        "new_or_changed_headache": BOOL,  # v2
        "exertional_onset": BOOL,  # v2
    },
    "imaging": {
        "modality": _enum("mri", "ct", "xray", required=True),
        "region": _enum("cervical_spine", "brain", required=True),
        "finding": _enum(
            "normal",
            "degenerative_changes",
            "structural_lesion",
            "chiari_malformation",
            required=True,
        ),
    },
    "treatment": {
        "kind": _enum(*TREATMENT_KINDS, required=True),
        "weeks": FieldSpec("number", minimum=0, maximum=520),
        "sessions": FieldSpec("integer", minimum=0),
        "components": FieldSpec("list", values=PT_COMPONENTS),
        "response": _enum("pending", "inadequate", "adequate", required=True),
    },
}

SINGLETON_TYPES = ("patient", "headache", "cervical_exam", "orthostatic_vitals", "red_flags")

# The smallest valid `fields` of each type (every required field, nothing else).
BASE_FIELDS: dict[str, dict[str, Any]] = {
    "patient": {"age_years": 45},
    "headache": {},
    "cervical_exam": {},
    "orthostatic_vitals": {
        "supine_hr_bpm": 70,
        "standing_hr_bpm": 92,
        "supine_sbp_mmhg": 124,
        "standing_sbp_mmhg": 118,
        "supine_dbp_mmhg": 80,
        "standing_dbp_mmhg": 78,
    },
    "red_flags": {},
    "imaging": {"modality": "mri", "region": "cervical_spine", "finding": "normal"},
    "treatment": {"kind": "physical_therapy", "response": "pending"},
}

_ABSENT = object()


def fact(type_: str, fields: dict[str, Any] | None = None, id_: str | None = None) -> dict:
    """A fact dict; `fields` defaults to the type's minimal valid fields."""
    return {
        "id": id_ if id_ is not None else f"{type_}-1",
        "type": type_,
        "fields": dict(BASE_FIELDS[type_]) if fields is None else fields,
    }


def fields_with(type_: str, **overrides: Any) -> dict[str, Any]:
    """The type's minimal valid fields with overrides (`_ABSENT` removes a field)."""
    fields = dict(BASE_FIELDS[type_])
    for name, value in overrides.items():
        if value is _ABSENT:
            fields.pop(name, None)
        else:
            fields[name] = value
    return fields


def vitals_with(name: str, value: Any) -> dict[str, Any]:
    """Orthostatic fields with one value set, the partner pressure kept consistent.

    Keeps diastolic below systolic in the same posture wherever the value allows it,
    so an out-of-range case breaks exactly one rule.
    """
    fields = fields_with("orthostatic_vitals", **{name: value})
    posture = name.split("_", 1)[0]
    numeric = isinstance(value, int | float) and not isinstance(value, bool)
    if numeric and value == value and abs(value) != INF:
        if name.endswith("_sbp_mmhg") and value <= fields[f"{posture}_dbp_mmhg"]:
            fields[f"{posture}_dbp_mmhg"] = 20
        if name.endswith("_dbp_mmhg") and value >= fields[f"{posture}_sbp_mmhg"]:
            fields[f"{posture}_sbp_mmhg"] = 300
    return fields


def one_field(type_: str, name: str, value: Any) -> dict[str, Any]:
    if type_ == "orthostatic_vitals":
        return vitals_with(name, value)
    if type_ == "treatment" and name == "components":
        return fields_with(type_, kind="physical_therapy", components=value)
    return fields_with(type_, **{name: value})


def _path(index: int, name: str) -> str:
    return f"facts[{index}].fields.{name}"


def _single(name: str, type_: str, fields: dict[str, Any], *paths: str) -> Case:
    return Case(name, [fact(type_, fields)], frozenset(paths))


# --------------------------------------------------------------------------------------
# Generated from the vocabulary: wrong JSON types, non-finite numbers, ranges, enums,
# required fields, unknown fields.
# --------------------------------------------------------------------------------------

WRONG_VALUES: dict[str, list[tuple[str, Any]]] = {
    "bool": [("string_yes", "yes"), ("int_1", 1), ("int_0", 0), ("string_true", "true")],
    "integer": [
        ("bool_true", True),
        ("bool_false", False),
        ("string", "40"),
        ("fraction", 40.5),
        ("nan", NAN),
        ("inf", INF),
        ("minus_inf", -INF),
        ("list", [40]),
    ],
    "number": [
        ("string", "3"),
        ("bool_true", True),
        ("nan", NAN),
        ("inf", INF),
        ("minus_inf", -INF),
        ("object", {"value": 3}),
    ],
    "enum": [
        ("unknown_value", "not_a_value"),
        ("wrong_case", None),  # filled per field: the first value upper-cased
        ("number", 1),
        ("bool", True),
        ("list", None),  # filled per field: the first value inside a list
    ],
    "list": [("string", "manual_therapy"), ("number", 1), ("bool", True), ("object", {})],
}


def _wrong_value(spec: FieldSpec, label: str, value: Any) -> Any:
    if spec.kind == "enum" and label == "wrong_case":
        return spec.values[0].upper()
    if spec.kind == "enum" and label == "list":
        return [spec.values[0]]
    return value


def _generated_cases() -> list[Case]:
    cases: list[Case] = []
    for type_, fields in VOCABULARY.items():
        cases.append(
            _single(
                f"{type_}.unknown_field",
                type_,
                fields_with(type_, not_in_vocabulary=True),
                _path(0, "not_in_vocabulary"),
            )
        )
        for name, spec in fields.items():
            for label, raw in WRONG_VALUES[spec.kind]:
                value = _wrong_value(spec, label, raw)
                cases.append(
                    _single(
                        f"{type_}.{name}.wrong_type.{label}",
                        type_,
                        one_field(type_, name, value),
                        _path(0, name),
                    )
                )
            if spec.kind in ("integer", "number"):
                step = 1 if spec.kind == "integer" else 0.1
                low = spec.minimum if spec.exclusive_minimum else spec.minimum - step
                cases.append(
                    _single(
                        f"{type_}.{name}.below_minimum",
                        type_,
                        one_field(type_, name, low),
                        _path(0, name),
                    )
                )
                if spec.maximum is not None:
                    cases.append(
                        _single(
                            f"{type_}.{name}.above_maximum",
                            type_,
                            one_field(type_, name, spec.maximum + step),
                            _path(0, name),
                        )
                    )
                cases.append(
                    _single(
                        f"{type_}.{name}.far_out_of_range",
                        type_,
                        one_field(type_, name, -1e300),
                        _path(0, name),
                    )
                )
            if spec.required:
                cases.append(
                    _single(
                        f"{type_}.{name}.required.missing",
                        type_,
                        fields_with(type_, **{name: _ABSENT}),
                        _path(0, name),
                    )
                )
                cases.append(
                    _single(
                        f"{type_}.{name}.required.null",
                        type_,
                        fields_with(type_, **{name: None}),
                        _path(0, name),
                    )
                )
    return cases


def _generated_valid() -> dict[str, list[dict[str, Any]]]:
    valid: dict[str, list[dict[str, Any]]] = {}
    for type_, fields in VOCABULARY.items():
        valid[f"{type_}.minimal"] = [fact(type_)]
        for name, spec in fields.items():
            if not spec.required:
                valid[f"{type_}.{name}.null_is_absent"] = [
                    fact(type_, fields_with(type_, **{name: None}))
                ]
            if spec.kind == "bool":
                for value in (True, False):
                    valid[f"{type_}.{name}.{str(value).lower()}"] = [
                        fact(type_, fields_with(type_, **{name: value}))
                    ]
            if spec.kind == "enum":
                for value in spec.values:
                    valid[f"{type_}.{name}.{value}"] = [fact(type_, one_field(type_, name, value))]
            if spec.kind in ("integer", "number"):
                low = spec.minimum + 0.001 if spec.exclusive_minimum else spec.minimum
                bounds = [("at_minimum", low)]
                if spec.maximum is not None:
                    bounds.append(("at_maximum", spec.maximum))
                if spec.kind == "integer":
                    bounds += [
                        (f"{label}_as_double", float(value)) for label, value in list(bounds)
                    ]
                for label, value in bounds:
                    valid[f"{type_}.{name}.{label}"] = [fact(type_, one_field(type_, name, value))]
    return valid


# --------------------------------------------------------------------------------------
# Hand-written cases
# --------------------------------------------------------------------------------------


def _tx(kind: str, id_: str, response: str = "pending", **extra: Any) -> dict[str, Any]:
    return fact("treatment", {"kind": kind, "response": response, **extra}, id_)


def _imaging_series(count: int, start: int = 0) -> list[dict[str, Any]]:
    return [fact("imaging", None, f"img-{start + i}") for i in range(count)]


def _handwritten_cases() -> list[Case]:
    c: list[Case] = []

    def add(name: str, facts: list[dict[str, Any]], *paths: str, reason: str = FACT_INVALID):
        c.append(Case(name, facts, frozenset(paths), reason))

    # Unknown fact types.
    for label, type_ in [
        ("vitals", "vitals"),
        ("capitalised", "Patient"),
        ("empty", ""),
        ("trailing_space", "imaging "),
        ("plural", "treatments"),
    ]:
        add(
            f"unknown_type.{label}",
            [fact("patient"), {**fact("imaging"), "type": type_}],
            "facts[1].type",
        )

    # Unknown fields: wrong case, a field of another type, several at once.
    add(
        "unknown_field.wrong_case_of_required",
        [fact("patient", {"Age_years": 40})],
        _path(0, "Age_years"),
        _path(0, "age_years"),
    )
    add("unknown_field.from_other_type", [fact("headache", {"sex": "male"})], _path(0, "sex"))
    add(
        "unknown_field.several",
        [fact("cervical_exam", {"rom_reduced": True, "rom": True, "tenderness": False})],
        _path(0, "rom"),
        _path(0, "tenderness"),
    )
    add(
        "unknown_field.kind_on_imaging",
        [fact("imaging", fields_with("imaging", kind="physical_therapy"))],
        _path(0, "kind"),
    )

    # Brief's named wrong-type examples (also generated per field above).
    add("bool_given_yes", [fact("headache", {"pulsating": "yes"})], _path(0, "pulsating"))
    add("bool_given_1", [fact("red_flags", {"papilledema": 1})], _path(0, "papilledema"))
    add("bool_given_1.0", [fact("red_flags", {"papilledema": 1.0})], _path(0, "papilledema"))
    add("bool_given_empty_list", [fact("red_flags", {"papilledema": []})], _path(0, "papilledema"))
    add("integer_given_true", [fact("patient", {"age_years": True})], _path(0, "age_years"))
    add("integer_given_40.5", [fact("patient", {"age_years": 40.5})], _path(0, "age_years"))
    add(
        "integer_given_tiny_fraction",
        [fact("patient", {"age_years": 40.000001})],
        _path(0, "age_years"),
    )
    add(
        "number_given_string_3",
        [fact("treatment", fields_with("treatment", weeks="3"))],
        _path(0, "weeks"),
    )
    add("enum_given_unknown", [fact("patient", {"age_years": 40, "sex": "f"})], _path(0, "sex"))
    add("enum_given_empty_string", [fact("headache", {"onset": ""})], _path(0, "onset"))

    # Components: list shape and items.
    pt = "physical_therapy"
    add(
        "components.given_string",
        [_tx(pt, "t1", components="manual_therapy")],
        _path(0, "components"),
    )
    add(
        "components.unknown_item",
        [_tx(pt, "t1", components=["manual_therapy", "massage"])],
        "facts[0].fields.components[1]",
    )
    add(
        "components.several_bad_items",
        [_tx(pt, "t1", components=["massage", "strengthening", True, "Motor_control"])],
        "facts[0].fields.components[0]",
        "facts[0].fields.components[2]",
        "facts[0].fields.components[3]",
    )
    add("components.null_item", [_tx(pt, "t1", components=[None])], "facts[0].fields.components[0]")
    add(
        "components.nested_list",
        [_tx(pt, "t1", components=[["strengthening"]])],
        "facts[0].fields.components[0]",
    )

    # Components on a kind other than physical_therapy (also when empty: a given value).
    for kind in TREATMENT_KINDS[1:]:
        add(
            f"components.on_{kind}",
            [fact("patient"), _tx(kind, "t1", components=["manual_therapy"])],
            _path(1, "components"),
        )
    add(
        "components.empty_on_aerobic_exercise",
        [_tx("aerobic_exercise", "t1", components=[])],
        _path(0, "components"),
    )

    # Required fields: all missing at once, all null at once.
    add("patient.empty_fields", [fact("patient", {})], _path(0, "age_years"))
    vitals = VOCABULARY["orthostatic_vitals"]
    add(
        "orthostatic_vitals.empty_fields",
        [fact("orthostatic_vitals", {})],
        *(_path(0, name) for name in vitals),
    )
    add(
        "orthostatic_vitals.all_null",
        [fact("orthostatic_vitals", dict.fromkeys(vitals))],
        *(_path(0, name) for name in vitals),
    )
    add(
        "imaging.empty_fields",
        [fact("imaging", {})],
        _path(0, "modality"),
        _path(0, "region"),
        _path(0, "finding"),
    )
    add("treatment.empty_fields", [fact("treatment", {})], _path(0, "kind"), _path(0, "response"))
    add(
        "treatment.only_optional_fields",
        [fact("treatment", {"weeks": 4, "sessions": 2})],
        _path(0, "kind"),
        _path(0, "response"),
    )

    # Diastolic not below systolic (same posture); the path is the diastolic field.
    for posture in ("supine", "standing"):
        sbp = BASE_FIELDS["orthostatic_vitals"][f"{posture}_sbp_mmhg"]
        for label, dbp in (("equal", sbp), ("greater", sbp + 1), ("much_greater", 200)):
            add(
                f"orthostatic_vitals.{posture}_dbp_{label}_to_sbp",
                [
                    fact(
                        "orthostatic_vitals",
                        fields_with("orthostatic_vitals", **{f"{posture}_dbp_mmhg": dbp}),
                    )
                ],
                _path(0, f"{posture}_dbp_mmhg"),
            )
    add(
        "orthostatic_vitals.both_dbp_not_below_sbp",
        [
            fact("patient"),
            fact(
                "orthostatic_vitals",
                fields_with(
                    "orthostatic_vitals",
                    supine_sbp_mmhg=110,
                    supine_dbp_mmhg=110,
                    standing_sbp_mmhg=100,
                    standing_dbp_mmhg=150,
                ),
            ),
        ],
        _path(1, "supine_dbp_mmhg"),
        _path(1, "standing_dbp_mmhg"),
    )
    add(
        "orthostatic_vitals.dbp_equal_sbp_at_40",
        [
            fact(
                "orthostatic_vitals",
                vitals_with("standing_sbp_mmhg", 40) | {"standing_dbp_mmhg": 40},
            )
        ],
        _path(0, "standing_dbp_mmhg"),
    )

    # Brief's named bounds, spelled out (also generated per field above).
    for type_, name, value in [
        ("patient", "age_years", -1),
        ("patient", "age_years", 121),
        ("orthostatic_vitals", "standing_hr_bpm", 19),
        ("orthostatic_vitals", "standing_hr_bpm", 251),
        ("orthostatic_vitals", "supine_sbp_mmhg", 39),
        ("orthostatic_vitals", "supine_sbp_mmhg", 301),
        ("orthostatic_vitals", "standing_dbp_mmhg", 19),
        ("orthostatic_vitals", "standing_dbp_mmhg", 201),
        ("headache", "attack_duration_hours", 0),
        ("headache", "attack_duration_hours", -0.0),
        ("headache", "attack_duration_hours", -5.0),
        ("headache", "attack_duration_hours", 720.1),
        ("headache", "attack_duration_hours", 720.000001),
        ("headache", "improvement_lying_down_pct", -0.1),
        ("headache", "improvement_lying_down_pct", 100.1),
        ("headache", "improvement_lying_down_within_hours", -0.1),
        ("headache", "improvement_lying_down_within_hours", 72.1),
        ("treatment", "weeks", -0.1),
        ("treatment", "weeks", 520.1),
        ("treatment", "sessions", -1),
        ("headache", "attack_count", -1),
        ("headache", "attack_count", 2.5),  # integer with a fractional part
        ("treatment", "sessions", 1.5),
    ]:
        add(
            f"out_of_range.{name}={value!r}",
            [fact("patient", None, "p"), fact(type_, one_field(type_, name, value), "x")]
            if type_ != "patient"
            else [fact("headache", {}, "h"), fact(type_, one_field(type_, name, value), "x")],
            _path(1, name),
        )

    # NaN and infinities on number fields of each type's kind.
    for name, value in [
        ("attack_duration_hours", NAN),
        ("attack_duration_hours", INF),
        ("improvement_lying_down_pct", NAN),
        ("improvement_lying_down_within_hours", INF),
        ("attack_count", NAN),
    ]:
        add(
            f"non_finite.headache.{name}={value!r}",
            [fact("headache", {name: value})],
            _path(0, name),
        )
    add("non_finite.weeks=-inf", [_tx(pt, "t1", weeks=-INF)], _path(0, "weeks"))
    add("non_finite.age=nan", [fact("patient", {"age_years": NAN})], _path(0, "age_years"))

    # Singletons: a second fact of the type is reported at its `type`.
    for type_ in SINGLETON_TYPES:
        add(
            f"singleton.{type_}.twice",
            [fact(type_, None, "a"), fact(type_, None, "b")],
            "facts[1].type",
        )
    add(
        "singleton.patient.three_times_with_others_between",
        [
            fact("patient", None, "a"),
            fact("imaging", None, "i"),
            fact("patient", {"age_years": 30}, "b"),
            fact("headache", {}, "h"),
            fact("patient", {"age_years": 31}, "c"),
        ],
        "facts[2].type",
        "facts[4].type",
    )
    add(
        "singleton.two_types_twice",
        [
            fact("headache", {}, "h1"),
            fact("red_flags", {}, "r1"),
            fact("red_flags", {"papilledema": False}, "r2"),
            fact("headache", {"onset": "sudden"}, "h2"),
        ],
        "facts[2].type",
        "facts[3].type",
    )

    # Treatments: at most one per kind; a second is reported at its `fields.kind`.
    for kind in TREATMENT_KINDS:
        add(
            f"treatment_kind.{kind}.twice",
            [_tx(kind, "t1"), _tx(kind, "t2", response="adequate")],
            _path(1, "kind"),
        )
    add(
        "treatment_kind.repeated_after_other_kinds",
        [
            _tx(pt, "t1", components=["strengthening"]),
            _tx("amitriptyline", "t2", weeks=6),
            _tx("aerobic_exercise", "t3"),
            _tx(pt, "t4", weeks=2),
            _tx("amitriptyline", "t5"),
        ],
        _path(3, "kind"),
        _path(4, "kind"),
    )

    # Duplicate ids: reported at the `id` of every repeat.
    add(
        "duplicate_id.two_types",
        [fact("patient", None, "same"), fact("headache", {}, "same")],
        "facts[1].id",
    )
    add(
        "duplicate_id.three_times",
        [fact("imaging", None, "x"), fact("imaging", None, "x"), fact("imaging", None, "x")],
        "facts[1].id",
        "facts[2].id",
    )
    add(
        "duplicate_id.identical_facts",
        [fact("imaging", None, "img"), fact("imaging", None, "img")],
        "facts[1].id",
    )
    add(
        "duplicate_id.also_unknown_type",
        [fact("patient", None, "p"), {"id": "p", "type": "vitals", "fields": {}}],
        "facts[1].id",
        "facts[1].type",
    )
    add(
        "duplicate_id.and_singleton",
        [fact("patient", None, "p"), fact("patient", None, "p")],
        "facts[1].id",
        "facts[1].type",
    )

    # Bad ids.
    for label, bad in [
        ("empty", ""),
        ("65_chars", "a" * 65),
        ("space", "a b"),
        ("leading_space", " a"),
        ("slash", "a/b"),
        ("non_ascii_letter", "café"),
        ("non_ascii_digit", "id-\u0661"),
        ("fullwidth", "\uff41"),
        ("at_sign", "a@b"),
        ("tab", "a\tb"),
        ("trailing_newline", "abc\n"),
        ("64_chars_plus_newline", "a" * 64 + "\n"),
        ("leading_newline", "\nabc"),
        ("nul", "a\x00"),
    ]:
        add(
            f"bad_id.{label}",
            [fact("patient", None, "ok"), fact("headache", {}, bad)],
            "facts[1].id",
        )

    # Several violations in one fact and across facts: all are reported.
    add(
        "several.in_one_fact",
        [fact("patient", {"age_years": 121, "sex": "x", "height_cm": 180})],
        _path(0, "age_years"),
        _path(0, "sex"),
        _path(0, "height_cm"),
    )
    add(
        "several.across_facts",
        [
            fact("patient", {"age_years": 50}, "p1"),
            fact("headache", {"onset": "sudden", "pulsating": "yes"}, "h1"),
            fact("imaging", None, "p1"),
            {"id": "v1", "type": "vitals", "fields": {"hr": 80}},
            fact(
                "orthostatic_vitals", fields_with("orthostatic_vitals", supine_dbp_mmhg=124), "o1"
            ),
            _tx("amitriptyline", "t1", components=[]),
            _tx("amitriptyline", "t2"),
            fact("patient", {"age_years": 30}, "p2"),
            fact("imaging", fields_with("imaging", finding=_ABSENT), "bad id"),
            fact("red_flags", {"horner_syndrome": 1, "papilledema": "true", "extra": True}, "r1"),
        ],
        "facts[1].fields.pulsating",
        "facts[2].id",
        "facts[3].type",
        "facts[4].fields.supine_dbp_mmhg",
        "facts[5].fields.components",
        "facts[6].fields.kind",
        "facts[7].type",
        "facts[8].id",
        "facts[8].fields.finding",
        "facts[9].fields.horner_syndrome",
        "facts[9].fields.papilledema",
        "facts[9].fields.extra",
    )

    # A repeated singleton / treatment kind is a violation of its own, whatever else is
    # wrong with either fact ("two facts of a singleton type" names no other condition).
    add(
        "several.singleton_repeat_of_invalid_fact",
        [fact("patient", {"age_years": -1}, "p1"), fact("patient", None, "p2")],
        _path(0, "age_years"),
        "facts[1].type",
    )
    add(
        "several.dbp_not_below_sbp_with_other_field_invalid",
        [
            fact(
                "orthostatic_vitals",
                fields_with("orthostatic_vitals", standing_hr_bpm=251, supine_dbp_mmhg=124),
            )
        ],
        _path(0, "standing_hr_bpm"),
        _path(0, "supine_dbp_mmhg"),
    )
    add(
        "several.treatment_kind_repeat_with_invalid_field",
        [_tx("amitriptyline", "t1"), _tx("amitriptyline", "t2", weeks=-1)],
        _path(1, "weeks"),
        _path(1, "kind"),
    )

    # Limits.
    add(
        "limit.501_facts",
        [fact("patient", None, "p"), *_imaging_series(MAX_FACTS)],
        "facts",
        reason=LIMIT_EXCEEDED,
    )
    add("limit.1000_facts", _imaging_series(1000), "facts", reason=LIMIT_EXCEEDED)
    add(
        "limit.500_facts_one_invalid",
        [
            fact("patient", None, "p"),
            *_imaging_series(498),
            fact("imaging", fields_with("imaging", modality="pet"), "img-last"),
        ],
        "facts[499].fields.modality",
    )
    return c


# --------------------------------------------------------------------------------------
# Valid requests
# --------------------------------------------------------------------------------------

FULL_REQUEST: list[dict[str, Any]] = [
    fact("patient", {"age_years": 52, "sex": "female"}, "patient"),
    fact(
        "headache",
        {
            "laterality": "unilateral",
            "side_locked": True,
            "starts_in_neck": True,
            "radiates_oculo_fronto_temporal": True,
            "provoked_by_neck_movement": True,
            "provoked_by_sustained_posture": False,
            "provoked_by_occipital_pressure": True,
            "provoked_by_cough_or_strain": False,
            "onset": "gradual",
            "intensity": "moderate",
            "pulsating": False,
            "pressing_tightening": True,
            "aggravated_by_routine_activity": False,
            "nausea_or_vomiting": False,
            "photophobia": False,
            "phonophobia": False,
            "attack_duration_hours": 12.5,
            "attack_count": 40,
            "tension_type_features_prominent": False,
            "improvement_lying_down_pct": 10.0,
            "improvement_lying_down_within_hours": 2.5,
            "autonomic_features": False,
            "medication_overuse": False,
        },
        "hx.1",
    ),
    fact(
        "cervical_exam",
        {
            "rom_reduced": True,
            "myofascial_sensitivity": True,
            "cervical_spine_tenderness": False,
            "paraspinal_tenderness": True,
            "suboccipital_tenderness": True,
        },
        "exam:2024-05-01",
    ),
    fact("orthostatic_vitals", None, "vitals_1"),
    fact(
        "red_flags",
        {
            "horner_syndrome": False,
            "focal_neurological_deficit": False,
            "recent_neck_trauma": False,
            "fever_or_systemic_illness": False,
            "cancer_history": False,
            "papilledema": False,
            "progressive_worsening": False,
            "pregnancy_or_postpartum": False,
            "immunosuppression": False,
            "new_onset_after_50": True,
            "pulsatile_tinnitus": False,
            "lower_cranial_nerve_palsy": False,
            "transient_visual_loss_or_tia": False,
            "posterior_circulation_symptoms": False,
            "meningism": False,
            "reduced_consciousness": False,
            "painful_red_eye": False,
            "new_or_changed_headache": True,
            "exertional_onset": False,
        },
        "RF-1",
    ),
    fact("imaging", {"modality": "mri", "region": "cervical_spine", "finding": "normal"}, "img1"),
    fact("imaging", {"modality": "ct", "region": "brain", "finding": "normal"}, "img2"),
    _tx(
        "physical_therapy",
        "tx-pt",
        "inadequate",
        weeks=8,
        sessions=12.0,
        components=list(PT_COMPONENTS),
    ),
    _tx("aerobic_exercise", "tx-ae", weeks=4.5),
    _tx("greater_occipital_nerve_block", "tx-gonb", sessions=2),
    _tx("facet_joint_injection", "tx-fji", sessions=0),
    _tx("cervical_epidural_steroid_injection", "tx-cesi"),
    _tx("amitriptyline", "tx-ami", weeks=0),
]

_VITALS_AT_BOUNDS = {
    "supine_hr_bpm": 20,
    "standing_hr_bpm": 250,
    "supine_sbp_mmhg": 40,
    "supine_dbp_mmhg": 20,
    "standing_sbp_mmhg": 300,
    "standing_dbp_mmhg": 200,
}


def _handwritten_valid() -> dict[str, list[dict[str, Any]]]:
    pt = "physical_therapy"
    return {
        "empty_request": [],
        "full_request": FULL_REQUEST,
        "integer_as_double.age_40.0": [fact("patient", {"age_years": 40.0})],
        "integer_as_double.vitals": [
            fact(
                "orthostatic_vitals",
                {k: float(v) for k, v in BASE_FIELDS["orthostatic_vitals"].items()},
            )
        ],
        "integer_as_double.attack_count_large": [fact("headache", {"attack_count": 1e6})],
        "integer_minus_zero.age": [fact("patient", {"age_years": -0.0})],
        "number_given_int.weeks": [_tx(pt, "t1", weeks=4)],
        "number_minus_zero.weeks": [_tx(pt, "t1", weeks=-0.0)],
        "null_optional.sex": [fact("patient", {"age_years": 40, "sex": None})],
        "null_optional.every_headache_field": [
            fact("headache", dict.fromkeys(VOCABULARY["headache"]))
        ],
        "null_optional.components_on_other_kind": [
            _tx("amitriptyline", "t1", components=None, weeks=None, sessions=None)
        ],
        "components.empty_list": [_tx(pt, "t1", components=[])],
        "components.duplicate_entries": [
            _tx(pt, "t1", components=["strengthening", "strengthening", "motor_control"])
        ],
        **{f"components.only_{c}": [_tx(pt, "t1", components=[c])] for c in PT_COMPONENTS},
        "diastolic_just_below_systolic": [
            fact(
                "orthostatic_vitals",
                fields_with(
                    "orthostatic_vitals",
                    supine_sbp_mmhg=120,
                    supine_dbp_mmhg=119,
                    standing_sbp_mmhg=41,
                    standing_dbp_mmhg=40,
                ),
            )
        ],
        "vitals_at_bounds": [fact("orthostatic_vitals", dict(_VITALS_AT_BOUNDS))],
        "vitals_at_bounds_other_posture": [
            fact(
                "orthostatic_vitals",
                {
                    "supine_hr_bpm": 250,
                    "standing_hr_bpm": 20,
                    "supine_sbp_mmhg": 300,
                    "supine_dbp_mmhg": 200,
                    "standing_sbp_mmhg": 40,
                    "standing_dbp_mmhg": 20,
                },
            )
        ],
        "age_0": [fact("patient", {"age_years": 0})],
        "age_120": [fact("patient", {"age_years": 120})],
        "attack_duration_hours_720": [fact("headache", {"attack_duration_hours": 720})],
        "attack_duration_hours_720.0": [fact("headache", {"attack_duration_hours": 720.0})],
        "attack_duration_hours_tiny": [fact("headache", {"attack_duration_hours": 1e-9})],
        "improvement_bounds_low": [
            fact(
                "headache",
                {"improvement_lying_down_pct": 0, "improvement_lying_down_within_hours": 0},
            )
        ],
        "improvement_bounds_high": [
            fact(
                "headache",
                {"improvement_lying_down_pct": 100.0, "improvement_lying_down_within_hours": 72.0},
            )
        ],
        "weeks_0": [_tx(pt, "t1", weeks=0)],
        "weeks_520": [_tx(pt, "t1", weeks=520)],
        "sessions_and_count_0": [
            _tx("facet_joint_injection", "t1", sessions=0),
            fact("headache", {"attack_count": 0}, "h"),
        ],
        "sessions_large": [_tx("greater_occipital_nerve_block", "t1", sessions=10_000)],
        "imaging.many_identical": _imaging_series(5),
        "treatment.every_kind_once": [_tx(k, f"t{i}") for i, k in enumerate(TREATMENT_KINDS)],
        "ids.64_chars": [fact("patient", None, "a" * 64)],
        "ids.1_char": [fact("patient", None, "a")],
        "ids.every_allowed_character": [
            fact("patient", None, "AZaz09._-:"),
            fact("headache", {}, ":-_."),
        ],
        "ids.case_sensitive": [fact("imaging", None, "img"), fact("imaging", None, "IMG")],
        "limit.exactly_500": [fact("patient", None, "p"), *_imaging_series(MAX_FACTS - 1)],
    }


CASES: list[Case] = _generated_cases() + _handwritten_cases()
NAMED_VALID_CASES: dict[str, list[dict[str, Any]]] = {
    **_generated_valid(),
    **_handwritten_valid(),
}
VALID_CASES: list[list[dict[str, Any]]] = list(NAMED_VALID_CASES.values())


# --------------------------------------------------------------------------------------
# Privacy: descriptions may name the fact id, never a fact value.
# --------------------------------------------------------------------------------------

SENTINEL = "SENTINEL-7f3a"
SENTINELS = (SENTINEL, "987654", "173", "161")

PRIVACY_CASES: list[Case] = [
    Case(
        "privacy.enum_values",
        [
            fact("patient", {"age_years": 987654.5, "sex": SENTINEL}, "p"),
            fact(
                "headache", {"laterality": SENTINEL, "onset": SENTINEL, "intensity": SENTINEL}, "h"
            ),
            fact("imaging", {"modality": SENTINEL, "region": SENTINEL, "finding": SENTINEL}, "i"),
            fact("treatment", {"kind": SENTINEL, "response": SENTINEL}, "t"),
        ],
        frozenset(
            {
                _path(0, "age_years"),
                _path(0, "sex"),
                _path(1, "laterality"),
                _path(1, "onset"),
                _path(1, "intensity"),
                _path(2, "modality"),
                _path(2, "region"),
                _path(2, "finding"),
                _path(3, "kind"),
                _path(3, "response"),
            }
        ),
    ),
    Case(
        "privacy.wrong_types",
        [
            fact(
                "headache",
                {
                    "pulsating": SENTINEL,
                    "attack_duration_hours": SENTINEL,
                    "attack_count": SENTINEL,
                    "improvement_lying_down_pct": 987654.5,
                    "improvement_lying_down_within_hours": 987654,
                },
                "h",
            ),
            _tx(
                "physical_therapy",
                "t",
                weeks=987654.5,
                sessions=987654.5,
                components=[SENTINEL, "strengthening"],
            ),
            _tx("amitriptyline", "t2", components=SENTINEL),
            fact("cervical_exam", {SENTINEL: SENTINEL}, "c"),
        ],
        frozenset(
            {
                _path(0, "pulsating"),
                _path(0, "attack_duration_hours"),
                _path(0, "attack_count"),
                _path(0, "improvement_lying_down_pct"),
                _path(0, "improvement_lying_down_within_hours"),
                _path(1, "weeks"),
                _path(1, "sessions"),
                "facts[1].fields.components[0]",
                _path(2, "components"),
                _path(3, SENTINEL),
            }
        ),
    ),
    Case(
        "privacy.out_of_range",
        [
            fact("patient", {"age_years": 987654}, "p"),
            fact(
                "orthostatic_vitals",
                {
                    "supine_hr_bpm": 987654,
                    "standing_hr_bpm": 161,
                    "supine_sbp_mmhg": 173,
                    "supine_dbp_mmhg": 161,
                    "standing_sbp_mmhg": 173,
                    "standing_dbp_mmhg": 161,
                },
                "o",
            ),
        ],
        frozenset({_path(0, "age_years"), _path(1, "supine_hr_bpm")}),
    ),
    Case(
        "privacy.cross_field_only",
        [
            fact(
                "orthostatic_vitals",
                {
                    "supine_hr_bpm": 161,
                    "standing_hr_bpm": 173,
                    "supine_sbp_mmhg": 173,
                    "supine_dbp_mmhg": 173,
                    "standing_sbp_mmhg": 161,
                    "standing_dbp_mmhg": 173,
                },
                "o",
            ),
        ],
        frozenset({_path(0, "supine_dbp_mmhg"), _path(0, "standing_dbp_mmhg")}),
    ),
    Case(
        "privacy.unknown_type",
        [{"id": "x", "type": SENTINEL, "fields": {"a": SENTINEL}}],
        frozenset({"facts[0].type"}),
    ),
]
