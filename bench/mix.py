"""A fixed, seeded mix of distinct patients that covers every conclusion code.

Starts from the scenario patients (kb/scenarios) and adds seeded variants —
other ages, vitals, attack patterns, weeks of treatment, a fact left out — that
pass validation, until the mix holds `size` distinct fact sets. Every fact id
is prefixed with the patient's index in the mix (`p17.h`), so a server that
only sees the request (the no-engine baseline) can tell which patient it is.
"""

from __future__ import annotations

import copy
import json
import random
from typing import Any

from kb.facts import FactIn, InvalidFacts, validate_facts
from kb.scenarios import load_scenarios

Patient = list[dict[str, Any]]

SEED = 20261126


def _vary(facts: Patient, chooser: random.Random) -> Patient:
    varied = copy.deepcopy(facts)
    for fact in varied:
        fields = fact["fields"]
        kind = fact["type"]
        if kind == "patient" and chooser.random() < 0.5:
            fields["age_years"] = chooser.randint(8, 80)
        elif kind == "orthostatic_vitals":
            supine_hr = chooser.randint(50, 90)
            supine_sbp = chooser.randint(100, 150)
            fields.update(
                supine_hr_bpm=supine_hr,
                standing_hr_bpm=supine_hr + chooser.randint(0, 50),
                supine_sbp_mmhg=supine_sbp,
                standing_sbp_mmhg=supine_sbp - chooser.randint(-5, 25),
                supine_dbp_mmhg=chooser.randint(60, 90),
                standing_dbp_mmhg=chooser.randint(55, 95),
            )
        elif kind == "headache" and chooser.random() < 0.5:
            fields["attack_count"] = chooser.randint(0, 12)
            fields["attack_duration_hours"] = round(chooser.uniform(0.5, 80), 1)
            fields["improvement_lying_down_pct"] = chooser.choice([10, 40, 51, 90])
        elif kind == "treatment" and "weeks" in fields:
            fields["weeks"] = chooser.choice([0, 2, 5.5, 6, 8, 12])
    if len(varied) > 2 and chooser.random() < 0.3:
        varied.pop(chooser.randrange(len(varied)))
    return varied


def _prefixed(index: int, facts: Patient) -> Patient:
    return [{**fact, "id": f"p{index}.{fact['id']}"} for fact in facts]


def patient_mix(size: int = 2400, seed: int = SEED) -> list[Patient]:
    chooser = random.Random(seed)
    bases = [
        [{"id": f.id, "type": f.type, "fields": dict(f.fields)} for f in scenario.facts]
        for scenario in load_scenarios()
        if not scenario.error and scenario.facts
    ]
    seen: set[str] = set()
    mix: list[Patient] = []
    candidates = iter(bases)
    while len(mix) < size:
        facts = next(candidates, None)
        if facts is None:
            facts = _vary(chooser.choice(bases), chooser)
        key = json.dumps(facts, sort_keys=True)
        if key in seen:
            continue
        try:
            validate_facts([FactIn(f["id"], f["type"], f["fields"]) for f in facts])
        except InvalidFacts:  # a variant that broke the vocabulary (e.g. dbp >= sbp)
            continue
        seen.add(key)
        mix.append(facts)
    return [_prefixed(index, facts) for index, facts in enumerate(mix)]


def load_mix(codes_by_patient: list[list[str]], size: int = 400, seed: int = SEED) -> list[int]:
    """Indexes into `patient_mix()` of `size` patients for load over gRPC (issue
    12's "400 mixed patients, about 3 conclusions each"): for every conclusion
    code the patient who has it with the most conclusions, then a seeded
    sample of the patients with at least two conclusions, in seeded order.
    `codes_by_patient[i]` is what the engine concludes for patient i."""
    chooser = random.Random(seed)
    chosen: dict[int, None] = {}
    for code in sorted({code for codes in codes_by_patient for code in codes}):
        having = [i for i, codes in enumerate(codes_by_patient) if code in codes]
        chosen[max(having, key=lambda i: (len(codes_by_patient[i]), -i))] = None
    rest = [i for i, codes in enumerate(codes_by_patient) if len(codes) >= 2 and i not in chosen]
    chosen.update(dict.fromkeys(chooser.sample(rest, size - len(chosen))))
    indexes = list(chosen)
    chooser.shuffle(indexes)
    return indexes
