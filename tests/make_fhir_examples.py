"""Generate examples/fhir/<name>.bundle.json from examples/<name>.json.

Run `.venv/bin/python tests/make_fhir_examples.py` to write them, `--check` to
fail when a committed bundle differs from what this script writes (the tests
run the check). Each bundle is built the way an EHR sends a chart: a Patient
whose birthDate gives the facts' age at the examples' as-of instant (`AS_OF`
in fhir_writer, also the Bundle's `timestamp`), vital-sign Observations in a
different encoding per example, Conditions where a red flag is coded, one
assessment QuestionnaireResponse for the rest, and beside them the resources
a real chart carries that must not change the answer (stale, superseded,
entered-in-error, refuted, after as-of, another patient's, unsupported types).
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

from fhir_writer import (
    AS_OF,
    GENERIC,
    ICD10CM,
    SNOMED,
    SPECIFIC,
    UCUM,
    Style,
    condition,
    group,
    observation,
    response,
    write_bundle,
)

EXAMPLES = Path(__file__).resolve().parents[1] / "examples"
OUTPUT = EXAMPLES / "fhir"

ALLERGY = {
    "resourceType": "AllergyIntolerance",
    "id": "a1",
    "patient": {"reference": "Patient/p1"},
    "code": {"text": "Penicillin"},
}

STYLES: dict[str, Style] = {
    # Position-specific LOINC codes; an older test outside the window; a temperature.
    "diagnosis-physical-therapy": Style(
        vitals="specific",
        extra=(
            observation(
                SPECIFIC[("hr", "supine")], 90, AS_OF - timedelta(days=45), id="old-hr-supine"
            ),
            observation(
                "8310-5",
                None,
                AS_OF - timedelta(days=2),
                id="temperature",
                valueQuantity={"value": 37.0, "unit": "Cel", "system": UCUM, "code": "Cel"},
            ),
            ALLERGY,
        ),
    ),
    # Transaction style (urn:uuid references); Horner coded as SNOMED CT; a refuted
    # cancer history; no vital signs.
    "dissection-red-flag": Style(
        urn_references=True,
        bundle_type="transaction",
        coded_flags=frozenset({"horner_syndrome"}),
        flag_system="snomed",
        extra=(condition("Z85.3", ICD10CM, id="cancer-refuted", verification="refuted"),),
    ),
    # Generic codes + body position; an entered-in-error reading; an older form.
    "pots-mimic": Style(
        vitals="generic",
        versioned=False,
        extra=(
            observation(
                GENERIC["hr"],
                140,
                AS_OF - timedelta(days=2, minutes=5),
                id="hr-typo",
                posture="standing",
                status="entered-in-error",
            ),
            response(
                group("headache", {"onset": "sudden"}),
                id="older-assessment",
                authored=AS_OF - timedelta(days=90),
            ),
            condition("J45.909", ICD10CM, id="asthma"),
        ),
    ),
    # Blood-pressure panels; a form still in progress; a reading after as-of.
    "refractory-after-nerve-block": Style(
        vitals="panel",
        extra=(
            response(
                group("headache", {"intensity": "severe"}),
                id="draft-assessment",
                status="in-progress",
                authored=AS_OF - timedelta(hours=1),
            ),
            observation(
                GENERIC["hr"], 120, AS_OF + timedelta(hours=2), id="hr-later", posture="standing"
            ),
            condition("363346000", SNOMED, id="cancer-error", verification="entered-in-error"),
        ),
    ),
    # effectivePeriod.start; another patient's reading; the Horner code of another patient.
    "teen-cough-occipital": Style(
        vitals="specific",
        period=True,
        birthday=(3, 14),
        extra=(
            observation(
                SPECIFIC[("hr", "standing")],
                150,
                AS_OF - timedelta(days=1),
                id="sibling-hr",
                subject="Patient/p2",
            ),
            condition("271730003", SNOMED, id="sibling-horner", subject="Patient/p2"),
        ),
    ),
}


def render(name: str) -> str:
    facts = json.loads((EXAMPLES / f"{name}.json").read_text())["facts"]
    bundle: dict[str, Any] = write_bundle(facts, AS_OF, STYLES[name])
    return json.dumps(bundle, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for name in STYLES:
        path = OUTPUT / f"{name}.bundle.json"
        text = render(name)
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path)
            continue
        OUTPUT.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        print(f"wrote {path}")
    for path in stale:
        print(f"{path} is stale: run tests/make_fhir_examples.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
