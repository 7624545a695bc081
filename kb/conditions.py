"""Reading rules as data: the durable_rules definitions the engine registered.

durable_rules exports every rule as JSON-like data (`Ruleset.get_definition`).
Explain, lint, coverage and mutation testing all read that export — never a
second, hand-written copy of the conditions that could drift from what the
engine runs. This module parses it into patterns and tests, renders them in
plain words, lists the fields they read, and evaluates them against facts with
the engine's semantics (a test on an absent field does not hold).

A test in this module's sense is one conjunct of a pattern, e.g.
`{"$gte": {"weeks": 6}}` or `{"$or": [...]}`; the `t` discriminator that names
the fact type is not a test.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from kb.rules.patterns import CONCLUSION

STAGE_ALIAS = "stage_marker"
COMPARISONS = {"$gt": ">", "$gte": ">=", "$lt": "<", "$lte": "<=", "$neq": "!="}
ARITHMETIC = {"$add": "+", "$sub": "-", "$mul": "*", "$div": "/"}
_ABSENT = object()


@dataclass(frozen=True)
class Pattern:
    """One pattern of a rule alternative: a fact (or conclusion) that must, or
    must not (`negated`), exist and pass every test."""

    alias: str
    negated: bool
    fact_type: str | None  # None: any fact (only engine scaffolding does that)
    tests: tuple[Any, ...]

    @property
    def is_conclusion(self) -> bool:
        return self.fact_type == CONCLUSION


def _conjuncts(expression: Mapping[str, Any]) -> list[Any]:
    if set(expression) == {"$and"}:
        return list(expression["$and"])
    return [expression]


def parse_alternative(definition: Mapping[str, Any]) -> list[Pattern]:
    """The patterns of one durable rule (`{"all": [{alias: expression}, ...]}`),
    without the stage marker every rule joins on."""
    patterns = []
    for entry in definition["all"]:
        ((alias, expression),) = entry.items()
        if alias == STAGE_ALIAS:
            continue
        negated = alias.endswith("$not")
        fact_type = None
        tests = []
        for test in _conjuncts(expression):
            if isinstance(test, dict) and set(test) == {"t"} and isinstance(test["t"], str):
                fact_type = test["t"]
            else:
                tests.append(test)
        patterns.append(Pattern(alias.removesuffix("$not"), negated, fact_type, tuple(tests)))
    return patterns


def _field(fact: Mapping[str, Any], name: str) -> Any:
    value: Any = fact
    for part in name.split("."):
        if not isinstance(value, Mapping) or part not in value:
            return _ABSENT
        value = value[part]
    return value


def _operand(operand: Any, fact: Mapping[str, Any]) -> Any:
    """A right-hand side: a literal, a field of the same fact, or arithmetic."""
    if isinstance(operand, Mapping):
        if set(operand) == {"$m"}:
            return _field(fact, operand["$m"])
        ((operator, sides),) = operand.items()
        left, right = _operand(sides["$l"], fact), _operand(sides["$r"], fact)
        if left is _ABSENT or right is _ABSENT:
            return _ABSENT
        return {
            "$add": lambda: left + right,
            "$sub": lambda: left - right,
            "$mul": lambda: left * right,
            "$div": lambda: left / right,
        }[operator]()
    return operand


def _same_kind(left: Any, right: Any) -> bool:
    """The engine compares booleans only with booleans, numbers with numbers."""
    if isinstance(left, bool) or isinstance(right, bool):
        return isinstance(left, bool) and isinstance(right, bool)
    if isinstance(left, int | float) or isinstance(right, int | float):
        return isinstance(left, int | float) and isinstance(right, int | float)
    return type(left) is type(right)


def holds(test: Any, fact: Mapping[str, Any]) -> bool:
    """Whether one test holds for one (engine-encoded) fact."""
    ((operator, argument),) = test.items()
    if operator == "$and":
        return all(holds(item, fact) for item in argument)
    if operator == "$or":
        return any(holds(item, fact) for item in argument)
    if operator in ("$ex", "$nex"):
        ((name, _),) = argument.items()
        present = _field(fact, name) is not _ABSENT
        return present if operator == "$ex" else not present
    if operator in COMPARISONS:
        ((name, operand),) = argument.items()
        left, right = _field(fact, name), _operand(operand, fact)
        if left is _ABSENT or right is _ABSENT or not _same_kind(left, right):
            return False
        return {
            "$gt": left > right,
            "$gte": left >= right,
            "$lt": left < right,
            "$lte": left <= right,
            "$neq": left != right,
        }[operator]
    value = _field(fact, operator)
    return value is not _ABSENT and _same_kind(value, argument) and value == argument


def matches(pattern: Pattern, fact: Mapping[str, Any]) -> bool:
    if pattern.fact_type is not None and fact.get("t") != pattern.fact_type:
        return False
    return all(holds(test, fact) for test in pattern.tests)


def _render_operand(operand: Any) -> str:
    if isinstance(operand, Mapping):
        if set(operand) == {"$m"}:
            return str(operand["$m"])
        ((operator, sides),) = operand.items()
        left, right = _render_operand(sides["$l"]), _render_operand(sides["$r"])
        return f"{left} {ARITHMETIC[operator]} {right}"
    if isinstance(operand, bool):
        return "true" if operand else "false"
    return str(operand)


def describe(test: Any) -> str:
    """A test in plain words: `weeks >= 6`, `side_locked = true`, `weeks is absent`."""
    ((operator, argument),) = test.items()
    if operator in ("$and", "$or"):
        word = " and " if operator == "$and" else " or "
        parts = [describe(item) for item in argument]
        return word.join(
            f"({part})" if (" and " in part or " or " in part) else part for part in parts
        )
    if operator in ("$ex", "$nex"):
        ((name, _),) = argument.items()
        return f"{name} is {'given' if operator == '$ex' else 'absent'}"
    if operator in COMPARISONS:
        ((name, operand),) = argument.items()
        return f"{name} {COMPARISONS[operator]} {_render_operand(operand)}"
    return f"{operator} = {_render_operand(argument)}"


def describe_pattern(pattern: Pattern) -> str:
    """E.g. `a headache fact with laterality = unilateral and side_locked = true`."""
    if pattern.is_conclusion:
        names = [
            test["code"] if "code" in test else f"of kind {test.get('ckind', '?')}"
            for test in pattern.tests
        ]
        return f"{'no ' if pattern.negated else ''}conclusion {' '.join(names)} derived"
    article = "an" if (pattern.fact_type or "")[:1] in "aeiou" else "a"
    subject = f"{article} {pattern.fact_type} fact" if pattern.fact_type else "a fact"
    if pattern.negated:
        subject = f"no {pattern.fact_type} fact" if pattern.fact_type else "no fact"
    if not pattern.tests:
        return subject
    parts = [describe(test) for test in pattern.tests]
    return f"{subject} with " + " and ".join(f"({p})" if " or " in p else p for p in parts)


def fields_read(test: Any) -> set[str]:
    """Every field name a test reads (dotted for nested ones)."""
    ((operator, argument),) = test.items()
    if operator in ("$and", "$or"):
        return set().union(*(fields_read(item) for item in argument))
    if operator in ("$ex", "$nex") or operator in COMPARISONS:
        ((name, operand),) = argument.items()
        return {name} | _operand_fields(operand)
    return {operator}


def _operand_fields(operand: Any) -> set[str]:
    if isinstance(operand, Mapping):
        if set(operand) == {"$m"}:
            return {operand["$m"]}
        ((_, sides),) = operand.items()
        return _operand_fields(sides["$l"]) | _operand_fields(sides["$r"])
    return set()


def observed(test: Any, fact: Mapping[str, Any]) -> dict[str, Any]:
    """The values of the fields a test read in one fact (absent fields left out)."""
    values = {}
    for name in sorted(fields_read(test)):
        value = _field(fact, name)
        if value is not _ABSENT:
            values[name] = value
    return values


def alternatives(definition: Mapping[str, Any], rule_id: str) -> list[Sequence[Pattern]]:
    """The parsed alternatives of `rule_id` (durable rules `rule_id#0`, `#1`, ...)."""
    found = []
    index = 0
    while f"{rule_id}#{index}" in definition:
        found.append(parse_alternative(definition[f"{rule_id}#{index}"]))
        index += 1
    return found
