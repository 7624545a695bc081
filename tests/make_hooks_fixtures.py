"""Generate tests/hooks_fixtures/<name>.json: CDS Hooks requests and their cards.

In the style of the CDC opioid CDS fixtures: each file is one hook request as
an EHR sends it (prefetch written by the tests' FHIR writer, records dated
`WRITTEN`) and the cards it must get back (`expectedCards`: conclusion code
and indicator, in order). The expectations are data reviewed by a person,
not computed by this script: `CASES` holds them. `--check` fails when a
committed file differs from what this script writes (the tests run it).

The records never age out of the test: tests/test_cds_hooks.py runs the hook
service with a `--vitals-window` of a century, and the patients' ages keep
clear of every age threshold for decades.
"""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fhir_writer import Style, write_bundle
from patients import EXAM, HEADACHE, NEGATIVE_SCREEN, patient

from cds_hooks.cards import prefetch_from_bundle

OUTPUT = Path(__file__).resolve().parent / "hooks_fixtures"
WRITTEN = datetime(2026, 1, 15, 9, 0, tzinfo=UTC)
CPT = "http://www.ama-assn.org/go/cpt"

DIAGNOSED = [patient(45), HEADACHE, EXAM, NEGATIVE_SCREEN]
TRAUMA_FLAGS = {
    **NEGATIVE_SCREEN,
    "fields": {**NEGATIVE_SCREEN["fields"], "recent_neck_trauma": True},
}
TRAUMA = [patient(45), HEADACHE, EXAM, TRAUMA_FLAGS]


def vitals(rise: int) -> dict[str, Any]:
    fields = {
        "supine_hr_bpm": 70,
        "standing_hr_bpm": 70 + rise,
        "supine_sbp_mmhg": 120,
        "standing_sbp_mmhg": 118,
        "supine_dbp_mmhg": 80,
        "standing_dbp_mmhg": 82,
    }
    return {"id": "vitals", "type": "orthostatic_vitals", "fields": fields}


def physio(weeks: float) -> dict[str, Any]:
    fields = {"kind": "physical_therapy", "weeks": weeks, "response": "inadequate"}
    return {"id": "pt", "type": "treatment", "fields": fields}


MANIPULATION_ORDER = {
    "resourceType": "Bundle",
    "type": "collection",
    "entry": [
        {
            "resource": {
                "resourceType": "ServiceRequest",
                "id": "draft-cmt",
                "status": "draft",
                "intent": "order",
                "subject": {"reference": "Patient/p1"},
                "code": {"coding": [{"system": CPT, "code": "98940"}]},
            }
        }
    ],
}

# name: (description, hook, facts, extra context, expected cards as (code, indicator))
CASES: dict[str, tuple[str, str, list[dict[str, Any]], dict[str, Any], list[tuple[str, str]]]] = {
    "diagnosed-screen-negative": (
        "Cervicogenic headache, complete negative screen, no vitals yet: first steps.",
        "patient-view",
        DIAGNOSED,
        {},
        [
            ("dx.cervicogenic_headache_supported", "info"),
            ("info.orthostatic_vitals", "info"),
            ("info.positional_response", "info"),
            ("step.physical_therapy", "info"),
            ("step.adjunct_exercise", "info"),
        ],
    ),
    "orthostatic-rise-29": (
        "Standing heart-rate rise of 29 bpm: below the POTS threshold.",
        "patient-view",
        [*DIAGNOSED, vitals(29)],
        {},
        [
            ("dx.cervicogenic_headache_supported", "info"),
            ("info.positional_response", "info"),
            ("step.physical_therapy", "info"),
            ("step.adjunct_exercise", "info"),
        ],
    ),
    "orthostatic-rise-30": (
        "Standing heart-rate rise of 30 bpm: POTS suspected.",
        "patient-view",
        [*DIAGNOSED, vitals(30)],
        {},
        [
            ("dx.cervicogenic_headache_supported", "info"),
            ("mimic.pots", "info"),
            ("info.positional_response", "info"),
        ],
    ),
    "physical-therapy-5.9-weeks": (
        "5.9 weeks of inadequate physical therapy: not yet the next step.",
        "patient-view",
        [*DIAGNOSED, vitals(10), physio(5.9)],
        {},
        [
            ("dx.cervicogenic_headache_supported", "info"),
            ("info.positional_response", "info"),
            ("step.adjunct_exercise", "info"),
            ("step.continue_physical_therapy", "info"),
        ],
    ),
    "physical-therapy-6-weeks": (
        "6 weeks of inadequate physical therapy: the next step.",
        "patient-view",
        [*DIAGNOSED, vitals(10), physio(6)],
        {},
        [
            ("dx.cervicogenic_headache_supported", "info"),
            ("info.positional_response", "info"),
            ("step.adjunct_exercise", "info"),
            ("step.greater_occipital_nerve_block", "info"),
        ],
    ),
    "no-headache-no-neck": (
        "A chart opened for pregnancy care: no cards, even with a coded red flag.",
        "patient-view",
        [
            patient(30),
            {
                **NEGATIVE_SCREEN,
                "fields": {**NEGATIVE_SCREEN["fields"], "pregnancy_or_postpartum": True},
            },
        ],
        {},
        [],
    ),
    "order-manipulation-after-neck-trauma": (
        "A chiropractic manipulation order drafted after recent neck trauma.",
        "order-select",
        TRAUMA,
        {"draftOrders": MANIPULATION_ORDER, "selections": ["ServiceRequest/draft-cmt"]},
        [("caution.manipulation_contraindicated", "critical")],
    ),
}


def fixture(name: str) -> dict[str, Any]:
    description, hook, facts, context, cards = CASES[name]
    patient_id, prefetch = prefetch_from_bundle(write_bundle(facts, WRITTEN, Style()))
    return {
        "description": description,
        "service": f"cgh-{hook}",
        "request": {
            "hook": hook,
            "hookInstance": f"fixture-{name}",
            "context": {"userId": "Practitioner/1", "patientId": patient_id, **context},
            "prefetch": prefetch,
        },
        "expectedCards": [{"code": code, "indicator": indicator} for code, indicator in cards],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--check", action="store_true")
    args = parser.parse_args(argv)
    stale = []
    for name in CASES:
        path = OUTPUT / f"{name}.json"
        text = json.dumps(fixture(name), indent=2) + "\n"
        if args.check:
            if not path.exists() or path.read_text() != text:
                stale.append(path.name)
        else:
            OUTPUT.mkdir(exist_ok=True)
            path.write_text(text)
    if stale:
        print(f"stale: {', '.join(stale)}; run tests/make_hooks_fixtures.py", file=sys.stderr)
    return 1 if stale else 0


if __name__ == "__main__":
    sys.exit(main())
