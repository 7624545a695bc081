"""Parse cost of a vital-sign Observation: the reader's strict subset against fhir.resources.

Run with `.venv/bin/python -m bench.fhir_parse` (`--observations N`, `--repeat R`).
Prints microseconds per Observation for both parsers, from JSON text (what the
service receives) and from a parsed dict, plus one whole `read_bundle`. The
reader keeps the subset on the request path because of these numbers; the
tests keep fhir.resources (R4B, the closest maintained set to R4) as the oracle
of structure.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from fhir.resources.R4B.bundle import Bundle as OracleBundle

from fhir_in import read_bundle
from fhir_in.structure import Bundle as SubsetBundle

AS_OF = datetime(2025, 6, 1, 12, 0, tzinfo=UTC)


def vital_sign(index: int) -> dict[str, Any]:
    """A heart-rate Observation as EHR exports carry it: meta, narrative, category, extension."""
    when = AS_OF - timedelta(days=1, minutes=index)
    return {
        "resourceType": "Observation",
        "id": f"hr-{index}",
        "meta": {
            "versionId": "1",
            "lastUpdated": "2025-05-31T08:00:00.000+00:00",
            "profile": ["http://hl7.org/fhir/StructureDefinition/vitalsigns"],
        },
        "text": {
            "status": "generated",
            "div": '<div xmlns="http://www.w3.org/1999/xhtml">Heart rate 72 /min</div>',
        },
        "status": "final",
        "category": [
            {
                "coding": [
                    {
                        "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                        "code": "vital-signs",
                        "display": "Vital Signs",
                    }
                ]
            }
        ],
        "code": {
            "coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}],
            "text": "Heart rate",
        },
        "subject": {"reference": "Patient/p1"},
        "effectiveDateTime": when.isoformat(),
        "issued": "2025-05-31T08:00:00.000+00:00",
        "valueQuantity": {
            "value": 72,
            "unit": "beats/minute",
            "system": "http://unitsofmeasure.org",
            "code": "/min",
        },
        "extension": [
            {
                "url": "http://hl7.org/fhir/StructureDefinition/observation-bodyPosition",
                "valueCodeableConcept": {
                    "coding": [{"system": "http://snomed.info/sct", "code": "40199007"}]
                },
            }
        ],
    }


def bundle(observations: int) -> dict[str, Any]:
    entries = [{"resource": {"resourceType": "Patient", "id": "p1", "birthDate": "1980-01-01"}}]
    entries += [{"resource": vital_sign(i)} for i in range(observations)]
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


def per_call_us(call: Callable[[], object], repeat: int) -> float:
    """Median microseconds of one call (after a warm-up call)."""
    call()
    samples = []
    for _ in range(repeat):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples) * 1e6


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fhir_parse", description=__doc__)
    parser.add_argument("--observations", type=int, default=20)
    parser.add_argument("--repeat", type=int, default=200)
    args = parser.parse_args(argv)
    data = bundle(args.observations)
    text = json.dumps(data)
    n = args.observations
    rows = [
        (
            "subset, JSON text",
            per_call_us(lambda: SubsetBundle.model_validate_json(text), args.repeat),
        ),
        ("subset, dict", per_call_us(lambda: SubsetBundle.model_validate(data), args.repeat)),
        (
            "fhir.resources R4B, JSON text",
            per_call_us(lambda: OracleBundle.model_validate_json(text), max(args.repeat // 10, 5)),
        ),
        (
            "fhir.resources R4B, dict",
            per_call_us(lambda: OracleBundle.model_validate(data), max(args.repeat // 10, 5)),
        ),
    ]
    print(f"Bundle of 1 Patient + {n} vital-sign Observations (median of runs)")
    print(f"{'parser':<32} {'µs per Observation':>20}")
    for name, total in rows:
        print(f"{name:<32} {total / n:>20.1f}")
    whole = per_call_us(lambda: read_bundle(text, AS_OF), args.repeat)
    print(f"read_bundle, whole bundle: {whole:.0f} µs ({whole / n:.1f} µs per Observation)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
