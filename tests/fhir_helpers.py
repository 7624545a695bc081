"""What the FHIR reader tests share: a default patient, one orthostatic test in each
encoding, and short ways to read a bundle and look at the result."""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any

import pytest
from fhir_writer import (
    AS_OF,
    GENERIC,
    SPECIFIC,
    bundle,
    observation,
    panel,
    patient,
)

from fhir_in import Reading, ResourceReport, read_bundle
from kb.facts import InvalidFacts, Violation

VITALS = {
    "supine_hr_bpm": 70,
    "standing_hr_bpm": 96,
    "supine_sbp_mmhg": 120,
    "standing_sbp_mmhg": 116,
    "supine_dbp_mmhg": 78,
    "standing_dbp_mmhg": 80,
}
FIELD = {
    (m, p): f"{p}_{m}_{'bpm' if m == 'hr' else 'mmhg'}"
    for m in ("hr", "sbp", "dbp")
    for p in ("supine", "standing")
}
ENCODINGS = ("specific", "generic", "panel")


def orthostatic_test(
    when: datetime,
    encoding: str = "specific",
    *,
    prefix: str = "",
    values: dict[str, Any] | None = None,
    subject: str = "Patient/p1",
    status: str = "final",
    standing_after: timedelta = timedelta(minutes=10),
) -> list[dict[str, Any]]:
    """One lying-to-standing test: supine at `when - standing_after`, standing at `when`."""
    values = {**VITALS, **(values or {})}
    out = []
    for posture in ("supine", "standing"):
        at = when - standing_after if posture == "supine" else when
        if encoding == "panel":
            out.append(
                observation(
                    GENERIC["hr"],
                    values[FIELD[("hr", posture)]],
                    at,
                    id=f"{prefix}hr-{posture}",
                    posture=posture,
                    subject=subject,
                    status=status,
                )
            )
            out.append(
                panel(
                    values[FIELD[("sbp", posture)]],
                    values[FIELD[("dbp", posture)]],
                    at,
                    id=f"{prefix}bp-{posture}",
                    posture=posture,
                    subject=subject,
                    status=status,
                )
            )
            continue
        for measure in ("hr", "sbp", "dbp"):
            specific = encoding == "specific"
            out.append(
                observation(
                    SPECIFIC[(measure, posture)] if specific else GENERIC[measure],
                    values[FIELD[(measure, posture)]],
                    at,
                    id=f"{prefix}{measure}-{posture}",
                    measure=measure,
                    posture=None if specific else posture,
                    subject=subject,
                    status=status,
                )
            )
    return out


def read(
    *resources: dict[str, Any],
    as_of: datetime = AS_OF,
    with_patient: bool = True,
    **options: Any,
) -> Reading:
    """Read a collection bundle of `resources` (after the default Patient unless told not)."""
    everything = ([patient()] if with_patient else []) + list(resources)
    return read_bundle(json.dumps(bundle(*everything)), as_of, **options)


def fields(reading: Reading, fact_id: str) -> dict[str, Any] | None:
    """The validated fields of one fact (None when the reading has no such fact)."""
    for fact in reading.facts:
        if fact.id == fact_id:
            return fact.value.model_dump(exclude_none=True)
    return None


def entry(reading: Reading, reference: str) -> ResourceReport:
    return reading.report.by_reference()[reference]


def reason(reading: Reading, reference: str) -> str | None:
    """The IGNORED reason of one resource, or "USED"."""
    report = entry(reading, reference)
    return report.reason.value if report.reason else report.status.value


def invalid(
    *resources: dict[str, Any], raw: Any = None, as_of: datetime = AS_OF, with_patient: bool = True
) -> tuple[str, tuple[Violation, ...]]:
    """Read and expect `InvalidFacts`; return its reason and violations."""
    with pytest.raises(InvalidFacts) as caught:
        if raw is not None:
            read_bundle(raw, as_of)
        else:
            read(*resources, as_of=as_of, with_patient=with_patient)
    return caught.value.reason, caught.value.violations


def paths(violations: Sequence[Violation]) -> list[str]:
    return [violation.field for violation in violations]
