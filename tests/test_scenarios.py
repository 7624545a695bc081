"""Every scenario in kb/scenarios, through the real engine, in any fact order."""

from __future__ import annotations

import random

import pytest

from kb.engine import RulesEngine
from kb.facts import InvalidFacts, validate_facts
from kb.scenarios import Scenario, check, load_scenarios

SCENARIOS = load_scenarios()
SHUFFLES = 3


def _evaluate(engine: RulesEngine, scenario: Scenario, order: list[int] | None = None):
    facts = list(scenario.facts)
    if order is not None:
        facts = [facts[index] for index in order]
    return engine.evaluate(validate_facts(facts)).conclusions


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_scenario(engine: RulesEngine, scenario: Scenario) -> None:
    if scenario.error:
        with pytest.raises(InvalidFacts):
            validate_facts(list(scenario.facts))
        return
    problems = check(scenario, _evaluate(engine, scenario))
    assert not problems, f"{scenario.source}: {scenario.name}: {problems}"


@pytest.mark.parametrize(
    "scenario",
    [s for s in SCENARIOS if not s.error and len(s.facts) > 1],
    ids=[s.name for s in SCENARIOS if not s.error and len(s.facts) > 1],
)
def test_fact_order_does_not_matter(engine: RulesEngine, scenario: Scenario) -> None:
    """Same conclusions, details and provenance in any arrival order (negation traps)."""
    reference = _evaluate(engine, scenario)
    shuffler = random.Random(scenario.name)
    for _ in range(SHUFFLES):
        order = list(range(len(scenario.facts)))
        shuffler.shuffle(order)
        assert _evaluate(engine, scenario, order) == reference, order


def test_scenarios_cover_every_code_firing_and_not_firing(engine: RulesEngine) -> None:
    codes = {rule.code for rule in engine.rules}
    expected = set().union(*(s.expect for s in SCENARIOS))
    absent = set().union(*(s.absent for s in SCENARIOS))
    assert codes - expected == set(), "codes no scenario expects"
    assert codes - absent == set(), "codes no scenario shows absent"


def test_a_code_appears_at_most_once_per_evaluation(engine: RulesEngine) -> None:
    """Rules with alternatives fire once per matching combination; one conclusion each
    (the scenarios' provenance checks show the merged fact ids)."""
    for scenario in SCENARIOS:
        if scenario.error:
            continue
        result = engine.evaluate(validate_facts(list(scenario.facts)))
        found = [conclusion.code for conclusion in result.conclusions]
        assert len(found) == len(set(found)), scenario.name
        assert result.rules_fired == len(found), scenario.name
