"""`python -m kb.check` (`make kb-check`): lint, scenarios and rule coverage.

Runs without gRPC, through the real engine. Exits 1 when a scenario file cannot
be read (one line per problem, naming file, scenario and place), lint finds a
problem, a scenario fails, or a rule is never fired or never seen not firing by
the scenarios. A scenario sees a rule not firing when the code is not derived and
the scenario says so: by listing it in `absent:`, or with `exactly: true` when
the facts came near (at least one of the rule's fact conditions was met), so an
unrelated patient does not count as a test of the rule.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TextIO

from kb.conditions import alternatives, matches
from kb.engine import RulesEngine, encode_fact
from kb.explain import Explanation, explain
from kb.facts import Fact, InvalidFacts, validate_facts
from kb.lint import lint
from kb.model import Conclusion
from kb.scenarios import SCENARIO_DIR, Scenario, ScenarioFileError, check, load_scenarios


@dataclass
class Coverage:
    fired: int = 0
    seen_not_firing: int = 0
    scenarios_fired: list[str] = field(default_factory=list)


@dataclass
class Report:
    lint: list[str]
    failures: list[str]
    coverage: dict[str, Coverage]
    scenario_count: int

    @property
    def uncovered(self) -> list[str]:
        return [
            rule_id
            for rule_id, counts in self.coverage.items()
            if counts.fired == 0 or counts.seen_not_firing == 0
        ]

    @property
    def ok(self) -> bool:
        return not self.lint and not self.failures and not self.uncovered


def _why_not(explanation: Explanation) -> list[str]:
    """The failing conditions of the alternative that came closest to holding."""
    lines = []
    for rule in explanation.rules:
        best = max(rule.alternatives, key=lambda a: sum(c.held for c in a.conditions))
        for condition in best.conditions:
            if condition.held:
                continue
            seen = "; ".join(
                f"{candidate.id}: "
                + ", ".join(
                    f"{t.description} (saw {t.observed or 'nothing'})"
                    for t in candidate.tests
                    if not t.held
                )
                for candidate in condition.candidates
            )
            lines.append(
                f"    {rule.rule.id} needs {condition.description}"
                + (f" — {seen}" if seen else " — no such fact")
            )
    return lines


def _why(conclusion: Conclusion) -> list[str]:
    provenance = conclusion.provenance
    facts = ", ".join(provenance.fact_ids) or "none"
    chained = ", ".join(provenance.derived_from) or "none"
    return [f"    {provenance.rule_id} fired on facts {facts}; chained on {chained}"]


def _failure(
    engine: RulesEngine,
    scenario: Scenario,
    facts: Sequence[Fact],
    conclusions: Sequence[Conclusion],
) -> str:
    lines = [f"FAIL {scenario.source}: {scenario.name}"]
    derived = {conclusion.code: conclusion for conclusion in conclusions}
    for problem in check(scenario, conclusions):
        lines.append(f"  {problem}")
        word, code = problem.split(" ", 1)[0], problem.split(" ")[1]
        if word == "missing" and code in {rule.code for rule in engine.rules}:
            lines += _why_not(explain(engine, facts, code))
        elif word == "missing":
            lines.append("    no rule produces this code")
        elif word == "unexpected" and code in derived:
            lines += _why(derived[code])
    lines.append("  facts: " + ", ".join(f"{fact.id} ({fact.type})" for fact in facts))
    return "\n".join(lines)


def _near_misses(engine: RulesEngine, facts: Sequence[Fact]) -> set[str]:
    """Rules (ids) with at least one positive fact condition met by these facts."""
    definition = engine.definition()
    encoded = [encode_fact(fact, f"f{index}") for index, fact in enumerate(facts)]
    near = set()
    for rule in engine.rules:
        for patterns in alternatives(definition, rule.id):
            if any(
                not pattern.negated
                and not pattern.is_conclusion
                and any(matches(pattern, fact) for fact in encoded)
                for pattern in patterns
            ):
                near.add(rule.id)
    return near


def run(engine: RulesEngine, scenarios: Sequence[Scenario]) -> Report:
    coverage = {rule.id: Coverage() for rule in engine.rules}
    rule_of = {rule.code: rule.id for rule in engine.rules}
    failures = []
    for scenario in scenarios:
        try:
            facts = validate_facts(list(scenario.facts))
        except InvalidFacts as error:
            if not scenario.error:
                paths = ", ".join(v.field for v in error.violations)
                failures.append(
                    f"FAIL {scenario.source}: {scenario.name}\n  invalid facts: {paths}"
                )
            continue
        if scenario.error:
            failures.append(f"FAIL {scenario.source}: {scenario.name}\n  facts were accepted")
            continue
        conclusions = engine.evaluate(facts).conclusions
        if check(scenario, conclusions):
            failures.append(_failure(engine, scenario, facts, conclusions))
        derived = {conclusion.code for conclusion in conclusions}
        near = _near_misses(engine, facts) if scenario.exactly else set()
        for code, rule_id in rule_of.items():
            if code in derived:
                coverage[rule_id].fired += 1
                coverage[rule_id].scenarios_fired.append(scenario.name)
            elif code in scenario.absent or (rule_id in near and code not in scenario.expect):
                coverage[rule_id].seen_not_firing += 1
    return Report([str(p) for p in lint(engine)], failures, coverage, len(scenarios))


def render(report: Report, engine: RulesEngine, out: TextIO, seconds: float) -> None:
    print(f"lint: {len(report.lint)} problem(s)", file=out)
    for problem in report.lint:
        print(f"  {problem}", file=out)
    passed = report.scenario_count - len(report.failures)
    print(f"scenarios: {passed} passed, {len(report.failures)} failed", file=out)
    for failure in report.failures:
        print(failure, file=out)
    print("coverage (scenarios firing the rule / asserting it does not fire):", file=out)
    for rule in engine.rules:
        counts = report.coverage[rule.id]
        flag = "" if counts.fired and counts.seen_not_firing else "   <-- not covered"
        print(
            f"  {rule.id:8} {rule.code:45} {counts.fired:4} / {counts.seen_not_firing:<4}{flag}",
            file=out,
        )
    verdict = "OK" if report.ok else "FAILED"
    print(f"kb-check {verdict} in {seconds:.1f} s", file=out)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m kb.check", description=__doc__)
    parser.add_argument("--scenarios", type=Path, default=SCENARIO_DIR)
    args = parser.parse_args(argv)
    started = time.perf_counter()
    try:
        scenarios = load_scenarios(args.scenarios)
    except ScenarioFileError as error:
        # The message already names file, scenario and place: a traceback would only bury it.
        for problem in error.problems:
            print(f"kb-check FAILED: {problem}", file=sys.stderr)
        return 1
    engine = RulesEngine()
    report = run(engine, scenarios)
    render(report, engine, sys.stdout, time.perf_counter() - started)
    return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
