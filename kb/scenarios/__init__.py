"""Scenarios: the knowledge engineer's test language (facts in, exact codes out).

Each YAML file under `kb/scenarios/` holds a list under `scenarios:`; each
scenario has:

    name:     unique, says what it shows ("pots adolescent 40 bpm fires")
    facts:    [{id, type, fields}], exactly as a client would send them
    expect:   codes that must be derived
    absent:   codes that must not be derived
    exactly:  optional, true = `expect` is the whole set of derived codes
    provenance: optional, {code: {fact_ids: [...], derived_from: [...]}}
    error:    optional, true = the facts must be rejected by validation
              (then expect/absent must be empty)

`check` compares one scenario with an evaluation and names every difference.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from kb.facts import FactIn
from kb.model import Conclusion

SCENARIO_DIR = Path(__file__).parent


@dataclass(frozen=True)
class Scenario:
    name: str
    source: str
    facts: tuple[FactIn, ...]
    expect: frozenset[str]
    absent: frozenset[str]
    exactly: bool = False
    provenance: dict[str, dict[str, tuple[str, ...]]] = field(default_factory=dict)
    error: bool = False


def _scenario(source: str, raw: dict[str, Any]) -> Scenario:
    known = {"name", "facts", "expect", "absent", "exactly", "provenance", "error"}
    unknown = set(raw) - known
    if unknown:
        raise ValueError(f"{source}: scenario {raw.get('name')!r} has unknown keys {unknown}")
    return Scenario(
        name=raw["name"],
        source=source,
        facts=tuple(
            FactIn(fact["id"], fact["type"], fact.get("fields") or {}) for fact in raw["facts"]
        ),
        expect=frozenset(raw.get("expect") or ()),
        absent=frozenset(raw.get("absent") or ()),
        exactly=bool(raw.get("exactly", False)),
        provenance={
            code: {key: tuple(values) for key, values in expected.items()}
            for code, expected in (raw.get("provenance") or {}).items()
        },
        error=bool(raw.get("error", False)),
    )


def load_scenarios(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    scenarios = []
    for path in sorted(directory.glob("*.yaml")):
        document = yaml.safe_load(path.read_text()) or {}
        scenarios.extend(_scenario(path.name, raw) for raw in document.get("scenarios", []))
    names = [scenario.name for scenario in scenarios]
    duplicates = {name for name in names if names.count(name) > 1}
    if duplicates:
        raise ValueError(f"duplicate scenario names: {sorted(duplicates)}")
    return scenarios


def check(scenario: Scenario, conclusions: Sequence[Conclusion]) -> list[str]:
    """Every way `conclusions` differ from what the scenario expects."""
    derived = {conclusion.code: conclusion for conclusion in conclusions}
    problems = [f"missing {code}" for code in sorted(scenario.expect - derived.keys())]
    problems += [f"unexpected {code}" for code in sorted(scenario.absent & derived.keys())]
    if scenario.exactly:
        extra = derived.keys() - scenario.expect - scenario.absent
        problems += [f"unexpected {code} (exactly)" for code in sorted(extra)]
    for code, expected in scenario.provenance.items():
        conclusion = derived.get(code)
        if conclusion is None:
            problems.append(f"provenance of {code}: not derived")
            continue
        for key, values in expected.items():
            actual = getattr(conclusion.provenance, key)
            if tuple(actual) != tuple(values):
                problems.append(
                    f"provenance of {code}: {key} is {list(actual)}, not {list(values)}"
                )
    return problems
