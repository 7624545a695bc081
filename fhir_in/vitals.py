"""Orthostatic vital signs from Observations: the codes, the units, and the pairing
of single readings into one lying-to-standing test.

EHRs encode the same reading three ways (a position-specific LOINC code, a
generic code plus the body-position extension, a blood-pressure panel with
components); all three become one `VitalReading`, so the pairing rule is written
once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP
from decimal import Decimal as _Decimal

from fhir_in.structure import CodeableConcept, Coding, Extension, Observation, Quantity

LOINC = "http://loinc.org"
SNOMED = "http://snomed.info/sct"
UCUM = "http://unitsofmeasure.org"
BODY_POSITION = "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition"
BP_PANEL = "85354-9"
PAIRING = timedelta(minutes=60)
DEFAULT_VITALS_WINDOW = timedelta(days=30)

MEASURES = ("hr", "sbp", "dbp")
POSTURES = ("supine", "standing")
# LOINC code -> (measure, posture); posture None = generic code, posture from the extension.
VITAL_CODES: dict[str, tuple[str, str | None]] = {
    "68999-2": ("hr", "supine"),
    "69001-6": ("hr", "standing"),
    "8867-4": ("hr", None),
    "8461-6": ("sbp", "supine"),
    "8460-8": ("sbp", "standing"),
    "8480-6": ("sbp", None),
    "8455-8": ("dbp", "supine"),
    "8454-1": ("dbp", "standing"),
    "8462-4": ("dbp", None),
}
POSTURE_CODES = {"40199007": "supine", "10904000": "standing"}
# UCUM codes accepted per measure, and (when a Quantity has no code) unit spellings.
UNIT_CODES = {"hr": ("/min", "{beats}/min"), "sbp": ("mm[Hg]",), "dbp": ("mm[Hg]",)}
UNIT_TEXTS = {
    "hr": ("/min", "{beats}/min", "beats/min", "beats/minute", "bpm"),
    "sbp": ("mm[Hg]", "mmHg", "mm Hg"),
    "dbp": ("mm[Hg]", "mmHg", "mm Hg"),
}
# Beyond this a decimal is far outside every range; passed on unrounded, rejected by kb.
_ROUNDABLE = 1e15


def field_name(measure: str, posture: str) -> str:
    """The orthostatic_vitals field of one slot: `supine_hr_bpm`, `standing_dbp_mmhg`."""
    return f"{posture}_{measure}_{'bpm' if measure == 'hr' else 'mmhg'}"


SLOTS = tuple((measure, posture) for posture in POSTURES for measure in MEASURES)


@dataclass(frozen=True)
class VitalReading:
    """One value of one slot at one instant, with where it came from."""

    slot: tuple[str, str]  # (measure, posture)
    at: datetime
    value: int | float
    path: str  # JSON path of the value in the bundle
    reference: str


def _loinc(concept: CodeableConcept | None) -> list[str]:
    return [c.code for c in (concept.coding if concept and concept.coding else []) if _is(c, LOINC)]


def _is(coding: Coding, system: str) -> bool:
    return coding.system == system and coding.code is not None


def is_panel(observation: Observation) -> bool:
    return BP_PANEL in _loinc(observation.code)


def body_position(extensions: Sequence[Extension] | None) -> str | None:
    """The posture of the body-position extension; None when absent, unknown or contradictory."""
    found = set()
    for extension in extensions or ():
        if extension.url != BODY_POSITION:
            continue
        concept = extension.valueCodeableConcept
        codings = concept.coding if concept and concept.coding else []
        postures = {POSTURE_CODES.get(c.code or "") for c in codings if _is(c, SNOMED)}
        found |= postures or {None}
    if len(found) != 1:
        return None
    return found.pop()


def slot_of(concept: CodeableConcept | None, posture: str | None) -> tuple[str, str] | None:
    """The (measure, posture) a code names, with `posture` from the extension for a
    generic code. None when the code is not a vital sign read, the posture is
    unknown, or the codings or posture disagree."""
    specific, generic = set(), set()
    for code in _loinc(concept):
        if code in VITAL_CODES:
            measure, coded_posture = VITAL_CODES[code]
            (specific if coded_posture else generic).add((measure, coded_posture))
    if specific:
        if len(specific) != 1:
            return None
        measure, coded = specific.pop()
        assert coded is not None
        # An extension that says otherwise makes the posture uncertain.
        return (measure, coded) if posture in (None, coded) else None
    if len(generic) != 1 or posture is None:
        return None
    return generic.pop()[0], posture


def unit_ok(measure: str, quantity: Quantity) -> bool:
    if quantity.code is not None:
        return quantity.system in (None, UCUM) and quantity.code in UNIT_CODES[measure]
    return quantity.unit in UNIT_TEXTS[measure]


def exact_value(quantity: Quantity | None) -> float | None:
    """The quantity's value when it is an exact measurement (no `<`, `>` comparator)."""
    if quantity is None or quantity.value is None or quantity.comparator is not None:
        return None
    return quantity.value


def rounded(value: float) -> int | float:
    """Half up to an integer (72.5 -> 73): the vitals fields are integers."""
    if abs(value) >= _ROUNDABLE:
        return value
    return int(_Decimal(repr(value)).quantize(_Decimal(1), rounding=ROUND_HALF_UP))


def is_vital_code(concept: CodeableConcept | None) -> bool:
    return any(code in VITAL_CODES or code == BP_PANEL for code in _loinc(concept))


@dataclass(frozen=True)
class Test:
    """The six readings of one complete lying-to-standing test."""

    readings: dict[tuple[str, str], VitalReading]

    @property
    def at(self) -> datetime:
        return max(reading.at for reading in self.readings.values())


def latest_test(readings: Iterable[VitalReading]) -> Test | None:
    """The most recent complete test: six slots filled by readings within 60 minutes of
    the latest of them. Within a test each slot takes its latest reading (ties broken
    by reference, so entry order never matters)."""
    ordered = sorted(readings, key=lambda r: (r.at, r.reference, r.path), reverse=True)
    for anchor in ordered:
        chosen: dict[tuple[str, str], VitalReading] = {}
        for reading in ordered:
            if reading.at > anchor.at:
                continue
            if anchor.at - reading.at > PAIRING:
                break
            chosen.setdefault(reading.slot, reading)
        if len(chosen) == len(SLOTS):
            return Test(chosen)
    return None
