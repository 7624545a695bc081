"""Scenarios: the knowledge engineer's test language (facts in, exact codes out).

Each YAML file under `kb/scenarios/` is a mapping with the key `scenarios:` (a
list) and, optionally, `fixtures:`. Each scenario has:

    name:     unique, says what it shows ("pots adolescent 40 bpm fires")
    facts:    [{id, type, fields}], exactly as a client would send them
              (`fields:` left empty means no fields; an empty list is allowed)
    expect:   codes that must be derived
    absent:   codes that must not be derived (none may also be in `expect`)
    exactly:  optional, true = `expect` is the whole set of derived codes
    provenance: optional, {code: {fact_ids: [...], derived_from: [...]}}
              (either key may be left out; it is then not checked)
    details:  optional, {code: [text, ...]}: the code is derived and its detail
              contains each text (for details that depend on the facts)
    error:    optional, true = the facts must be rejected by validation
              (then expect, absent, exactly, provenance and details must be left out)

Files are read strictly, because a scenario that is read loosely tests less than
it says: an unknown or misspelt key (`feilds:`), a key given twice, a wrong type
(`exactly: "false"`, `expect: some.code`) or a contradiction is an error naming
the file, the scenario and the place, never a silently different scenario.
Every problem in every file is reported at once, in one `ScenarioFileError`.

`fixtures:` is ignored by the loader. It exists so that a file can define YAML
anchors once and reuse them in its scenarios, e.g. a complete negative red-flag
screen:

    fixtures:
      no_red_flags: &no_red_flags {horner_syndrome: false, focal_neurological_deficit: false}
      patient: &adult {id: p, type: patient, fields: {age_years: 45, sex: male}}
    scenarios:
    - name: ...
      facts:
      - *adult                                  # the whole fact
      - id: rf
        type: red_flags
        fields: {<<: *no_red_flags, horner_syndrome: true}   # merged, then overridden

A key written next to `<<:` overrides the merged one; that is the only way a key
may appear twice.

`check` compares one scenario with an evaluation and names every difference.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Self

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import ErrorDetails, PydanticCustomError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode

from kb.facts import FactIn
from kb.model import Conclusion

SCENARIO_DIR = Path(__file__).parent

# Lives beside the scenarios but is kb/mutate.py's list of reviewed equivalent
# mutants (top-level key `equivalent:`), not a scenario file.
EQUIVALENT_MUTANTS_FILE = "equivalent_mutants.yaml"


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
    details: dict[str, tuple[str, ...]] = field(default_factory=dict)


class ScenarioFileError(ValueError):
    """Scenario files that cannot be read; one line per problem, each naming its file.

    A ValueError so that callers that already treated a bad scenario file as one
    keep working.
    """

    def __init__(self, problems: Sequence[str]) -> None:
        self.problems = tuple(problems)
        super().__init__("\n".join(self.problems))


# --- YAML -------------------------------------------------------------------------------------


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects a key given twice in one mapping.

    PyYAML keeps the last of two equal keys without a word, so a scenario with
    two `absent:` lines would silently check only the second.
    """

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Hashable, Any]:
        seen: set[Hashable] = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue  # `<<: *anchor`: explicit keys override merged ones on purpose
            key = self.construct_object(key_node, deep=True)
            if not isinstance(key, Hashable):
                continue  # the base class reports an unhashable key
            if key in seen:
                raise ConstructorError(
                    "while constructing a mapping",
                    node.start_mark,
                    f"found duplicate key {key!r}",
                    key_node.start_mark,
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def _yaml_problem(name: str, error: yaml.YAMLError) -> str:
    """One line for a YAML error (PyYAML's own message spans several)."""
    if isinstance(error, yaml.MarkedYAMLError) and error.problem_mark is not None:
        mark = error.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}"
        context = f" ({error.context})" if error.context else ""
        return f"{name}: invalid YAML at {where}: {error.problem}{context}"
    return f"{name}: invalid YAML: " + " ".join(str(error).split())


# --- The schema -------------------------------------------------------------------------------

_STRICT = ConfigDict(extra="forbid", strict=True)


def _none_is_empty(value: Any) -> Any:
    """`fields:` with nothing after it is YAML null: a fact with no fields."""
    return {} if value is None else value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must not be empty")
    return value


class _FactModel(BaseModel):
    model_config = _STRICT

    id: str
    type: str
    fields: Annotated[dict[str, Any], BeforeValidator(_none_is_empty)] = Field(default_factory=dict)


class _ProvenanceModel(BaseModel):
    model_config = _STRICT

    # Unset means "not checked", so model_dump(exclude_unset=True) keeps only what was given.
    fact_ids: list[str] = Field(default_factory=list)
    derived_from: list[str] = Field(default_factory=list)


class _ScenarioModel(BaseModel):
    model_config = _STRICT

    name: Annotated[str, AfterValidator(_not_blank)]
    facts: list[_FactModel]
    expect: list[str] = Field(default_factory=list)
    absent: list[str] = Field(default_factory=list)
    exactly: bool = False
    provenance: dict[str, _ProvenanceModel] = Field(default_factory=dict)
    error: bool = False
    details: dict[str, list[str]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _consistent(self) -> Self:
        """Reject scenarios that can never pass or whose checks would never run."""
        if self.error:
            # run() stops at the rejected facts: any expectation would go unchecked.
            given = [
                key
                for key in ("expect", "absent", "exactly", "provenance", "details")
                if getattr(self, key)
            ]
            if given:
                raise PydanticCustomError(
                    "error_with_expectations",
                    "error: true only checks that the facts are rejected, so {keys} must be "
                    "left out",
                    {"keys": ", ".join(given)},
                )
        both = sorted(set(self.expect) & set(self.absent))
        if both:
            raise PydanticCustomError(
                "expect_and_absent",
                "{codes} in both expect and absent",
                {"codes": ", ".join(both)},
            )
        return self

    def scenario(self, source: str) -> Scenario:
        return Scenario(
            name=self.name,
            source=source,
            facts=tuple(FactIn(fact.id, fact.type, fact.fields) for fact in self.facts),
            expect=frozenset(self.expect),
            absent=frozenset(self.absent),
            exactly=self.exactly,
            provenance={
                code: {
                    key: tuple(values)
                    for key, values in expected.model_dump(exclude_unset=True).items()
                }
                for code, expected in self.provenance.items()
            },
            error=self.error,
            details={code: tuple(texts) for code, texts in self.details.items()},
        )


class _FileModel(BaseModel):
    model_config = _STRICT

    scenarios: list[Any]  # each checked on its own, so a problem can name its scenario
    fixtures: dict[Any, Any] = Field(default_factory=dict)  # anchors only; never read


# --- Error messages ---------------------------------------------------------------------------


def _keys_at(location: tuple[int | str, ...], top: type[BaseModel]) -> list[str]:
    """The keys allowed in the mapping at `location`, for an 'unknown key' message."""
    if top is _FileModel:
        return list(_FileModel.model_fields)
    if not location:
        return list(_ScenarioModel.model_fields)
    if len(location) == 2 and location[0] == "facts":
        return list(_FactModel.model_fields)
    if len(location) == 2 and location[0] == "provenance":
        return list(_ProvenanceModel.model_fields)
    return []


def _path(location: Sequence[int | str]) -> str:
    """`facts[2].fields`, `provenance['step.physical_therapy'].fact_ids`."""
    text = ""
    for part in location:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part == "[key]":  # pydantic's marker for a mapping key (not its value)
            text += " key"
        elif part.isidentifier():
            text += f".{part}" if text else part
        else:
            text += f"[{part!r}]"
    return text


def _got(value: Any) -> str:
    shown = repr(value)
    if len(shown) > 60:
        shown = shown[:57] + "..."
    return f"got {type(value).__name__} {shown}"


# Errors raised by this module's validators: their message already says it all.
_OWN_ERRORS = frozenset({"blank", "error_with_expectations", "expect_and_absent"})


def _problem(error: ErrorDetails, top: type[BaseModel]) -> tuple[str, str]:
    """(where, why) for one pydantic error, in the vocabulary of the YAML file."""
    location = tuple(error["loc"])
    kind = error["type"]
    if kind == "extra_forbidden":
        parent, key = location[:-1], location[-1]
        allowed = ", ".join(_keys_at(parent, top))
        return _path(parent), f"unknown key {key!r} (allowed: {allowed})"
    if kind == "missing":
        return _path(location[:-1]), f"missing key {location[-1]!r}"
    if kind in ("model_type", "dict_type"):
        return _path(location), f"must be a mapping ({_got(error['input'])})"
    if kind == "list_type":
        return _path(location), f"must be a list ({_got(error['input'])})"
    if kind in _OWN_ERRORS:
        return _path(location), error["msg"]
    return _path(location), f"{error['msg']} ({_got(error['input'])})"


def _join(prefix: str, where: str, why: str, *, sep: str = " ") -> str:
    """`treatment.yaml: scenario 'x' facts[2]: why`; no place when the problem has none."""
    return f"{prefix}{sep}{where}: {why}" if where else f"{prefix}: {why}"


# --- Loading ----------------------------------------------------------------------------------


def _read_file(path: Path) -> tuple[list[Scenario], list[str]]:
    """The scenarios in one file, or the problems that stop them being read."""
    name = path.name
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_StrictLoader)
    except yaml.YAMLError as error:
        return [], [_yaml_problem(name, error)]
    except UnicodeDecodeError as error:
        return [], [f"{name}: not UTF-8 text ({error.reason} at byte {error.start})"]
    if not isinstance(document, dict):
        what = "empty" if document is None else f"a {type(document).__name__}"
        return [], [f"{name}: must be a mapping with the key 'scenarios', not {what}"]
    try:
        raw_scenarios = _FileModel.model_validate(document).scenarios
    except ValidationError as error:
        return [], [_join(name, *_problem(e, _FileModel), sep=": ") for e in error.errors()]
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for index, raw in enumerate(raw_scenarios):
        label = f"scenarios[{index}]"
        if isinstance(raw, dict):
            readable = raw.get("name")
            if isinstance(readable, str) and readable.strip():
                label = f"scenario {readable!r}"
        else:
            problems.append(f"{name}: {label}: must be a mapping ({_got(raw)})")
            continue
        try:
            scenarios.append(_ScenarioModel.model_validate(raw).scenario(name))
        except ValidationError as error:
            problems += [
                _join(f"{name}: {label}", *_problem(e, _ScenarioModel)) for e in error.errors()
            ]
    return scenarios, problems


def load_scenarios(directory: Path = SCENARIO_DIR) -> list[Scenario]:
    """Every scenario in `directory`'s YAML files, in file then list order.

    Raises ScenarioFileError listing every problem in every file, so one run of
    the check shows all there is to fix.
    """
    scenarios: list[Scenario] = []
    problems: list[str] = []
    for path in sorted(directory.glob("*.yaml")):
        if path.name == EQUIVALENT_MUTANTS_FILE:
            continue
        found, wrong = _read_file(path)
        scenarios += found
        problems += wrong
    first: dict[str, Scenario] = {}
    for scenario in scenarios:
        earlier = first.setdefault(scenario.name, scenario)
        if earlier is not scenario:
            problems.append(
                f"{scenario.source}: scenario {scenario.name!r}: duplicate name "
                f"(also in {earlier.source})"
            )
    if problems:
        raise ScenarioFileError(problems)
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
    for code, texts in scenario.details.items():
        conclusion = derived.get(code)
        if conclusion is None:
            problems.append(f"detail of {code}: not derived")
            continue
        problems += [
            f"detail of {code} does not say {text!r}: {conclusion.detail!r}"
            for text in texts
            if text not in conclusion.detail
        ]
    return problems
