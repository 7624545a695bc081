"""Scenario files are read strictly: a misspelt key or a wrong type is an error, not a
silently weaker scenario (kb/scenarios/__init__.py)."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from kb import check as kb_check
from kb.facts import FactIn
from kb.scenarios import EQUIVALENT_MUTANTS_FILE, ScenarioFileError, load_scenarios

ROOT = Path(__file__).resolve().parent.parent

VALID = """
scenarios:
- name: valid scenario
  facts:
  - {id: p, type: patient, fields: {age_years: 45, sex: male}}
  - id: rf
    type: red_flags
    fields:
  expect: [dx.a, dx.b]
  absent: [dx.c]
  exactly: true
  provenance:
    dx.a: {fact_ids: [p], derived_from: [dx.b]}
    dx.b: {fact_ids: [rf]}
- name: rejected facts
  facts: []
  error: true
"""


def _write(directory: Path, text: str, name: str = "cases.yaml") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    (directory / name).write_text(textwrap.dedent(text))
    return directory


def _problems(directory: Path) -> list[str]:
    with pytest.raises(ScenarioFileError) as caught:
        load_scenarios(directory)
    assert str(caught.value) == "\n".join(caught.value.problems)
    return list(caught.value.problems)


def _one_scenario(body: str) -> str:
    """A file with one scenario named 'broken' whose other keys are `body`."""
    return "scenarios:\n- name: broken\n" + textwrap.indent(textwrap.dedent(body), "  ")


def test_a_valid_file_loads_with_the_exact_values(tmp_path: Path) -> None:
    first, second = load_scenarios(_write(tmp_path, VALID))
    assert first.name == "valid scenario"
    assert first.source == "cases.yaml"
    assert first.facts == (
        FactIn("p", "patient", {"age_years": 45, "sex": "male"}),
        FactIn("rf", "red_flags", {}),  # `fields:` with nothing after it
    )
    assert first.expect == frozenset({"dx.a", "dx.b"})
    assert first.absent == frozenset({"dx.c"})
    assert first.exactly is True
    assert first.error is False
    # A provenance key left out is not checked, so it must not appear as "empty".
    assert first.provenance == {
        "dx.a": {"fact_ids": ("p",), "derived_from": ("dx.b",)},
        "dx.b": {"fact_ids": ("rf",)},
    }
    assert (second.name, second.facts, second.error) == ("rejected facts", (), True)
    assert (second.expect, second.absent, second.exactly) == (frozenset(), frozenset(), False)
    assert second.provenance == {}


def test_a_misspelt_fact_key_names_file_scenario_and_key(tmp_path: Path) -> None:
    text = _one_scenario(
        """
        facts:
        - {id: p, type: patient, fields: {age_years: 45}}
        - {id: h, type: headache, feilds: {laterality: unilateral}}
        """
    )
    assert _problems(_write(tmp_path, text)) == [
        "cases.yaml: scenario 'broken' facts[1]: unknown key 'feilds' (allowed: id, type, fields)"
    ]


@pytest.mark.parametrize(
    ("value", "got"), [('"false"', "str 'false'"), ("1", "int 1"), ("yes please", "str")]
)
def test_exactly_must_be_a_real_boolean(tmp_path: Path, value: str, got: str) -> None:
    text = _one_scenario(f"facts: []\nexactly: {value}\n")
    [problem] = _problems(_write(tmp_path, text))
    assert problem.startswith("cases.yaml: scenario 'broken' exactly: ")
    assert "valid boolean" in problem
    assert f"(got {got}" in problem


def test_error_must_be_a_real_boolean(tmp_path: Path) -> None:
    [problem] = _problems(_write(tmp_path, _one_scenario("facts: []\nerror: 'true'\n")))
    assert problem.startswith("cases.yaml: scenario 'broken' error: ")


def test_an_unknown_scenario_key_is_rejected(tmp_path: Path) -> None:
    text = _one_scenario("facts: []\nexpected: [dx.a]\n")
    [problem] = _problems(_write(tmp_path, text))
    assert problem.startswith("cases.yaml: scenario 'broken': unknown key 'expected' (allowed: ")


def test_an_unknown_provenance_key_is_rejected(tmp_path: Path) -> None:
    text = _one_scenario(
        """
        facts: []
        expect: [step.physical_therapy]
        provenance:
          step.physical_therapy: {fact_id: [p]}
        """
    )
    assert _problems(_write(tmp_path, text)) == [
        "cases.yaml: scenario 'broken' provenance['step.physical_therapy']: "
        "unknown key 'fact_id' (allowed: fact_ids, derived_from)"
    ]


@pytest.mark.parametrize("key", ["expect", "absent"])
def test_a_code_instead_of_a_list_of_codes_is_rejected(tmp_path: Path, key: str) -> None:
    """`expect: dx.a` would otherwise be iterated as the codes 'd', 'x', '.', 'a'."""
    text = _one_scenario(f"facts: []\n{key}: dx.cervicogenic_headache_supported\n")
    assert _problems(_write(tmp_path, text)) == [
        f"cases.yaml: scenario 'broken' {key}: must be a list "
        "(got str 'dx.cervicogenic_headache_supported')"
    ]


def test_a_fact_id_must_be_a_string(tmp_path: Path) -> None:
    text = _one_scenario("facts:\n- {id: 7, type: patient}\n")
    [problem] = _problems(_write(tmp_path, text))
    assert problem.startswith("cases.yaml: scenario 'broken' facts[0].id: ")
    assert "(got int 7)" in problem


def test_an_unreadable_name_is_replaced_by_the_index(tmp_path: Path) -> None:
    text = """
    scenarios:
    - name: fine
      facts: []
    - facts: []
    - name: ''
      facts: []
    """
    assert _problems(_write(tmp_path, text)) == [
        "cases.yaml: scenarios[1]: missing key 'name'",
        "cases.yaml: scenarios[2] name: must not be empty",
    ]


def test_every_problem_in_every_file_is_reported(tmp_path: Path) -> None:
    _write(tmp_path, _one_scenario("facts: []\nexactly: 'no'\n"), "a.yaml")
    _write(tmp_path, "scenarios:\n- name: other\n  facts: [{id: p}]\n", "b.yaml")
    problems = _problems(tmp_path)
    assert [problem.split(":", 1)[0] for problem in problems] == ["a.yaml", "b.yaml"]
    assert problems[1] == "b.yaml: scenario 'other' facts[0]: missing key 'type'"


def test_anchors_in_fixtures_are_reused(tmp_path: Path) -> None:
    text = """
    fixtures:
      screen: &screen {horner_syndrome: false, focal_neurological_deficit: false}
      adult: &adult {id: p, type: patient, fields: {age_years: 45, sex: male}}
    scenarios:
    - name: anchored
      facts:
      - *adult
      - id: rf
        type: red_flags
        fields:
          <<: *screen
          horner_syndrome: true
    """
    [scenario] = load_scenarios(_write(tmp_path, text))
    assert scenario.facts == (
        FactIn("p", "patient", {"age_years": 45, "sex": "male"}),
        FactIn("rf", "red_flags", {"horner_syndrome": True, "focal_neurological_deficit": False}),
    )


def test_a_key_given_twice_is_rejected(tmp_path: Path) -> None:
    """PyYAML would keep only the second `absent:`; the first would test nothing."""
    text = _one_scenario("facts: []\nabsent: [dx.a]\nabsent: [dx.b]\n")
    [problem] = _problems(_write(tmp_path, text))
    assert problem.startswith("cases.yaml: invalid YAML at line 5, column 3: ")
    assert "found duplicate key 'absent'" in problem


def test_a_yaml_syntax_error_names_the_file(tmp_path: Path) -> None:
    [problem] = _problems(_write(tmp_path, "scenarios: [\n  - {name: x\n"))
    assert problem.startswith("cases.yaml: invalid YAML at line ")
    assert "\n" not in problem


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", "cases.yaml: must be a mapping with the key 'scenarios', not empty"),
        ("- name: x\n", "cases.yaml: must be a mapping with the key 'scenarios', not a list"),
        ("scenario: []\n", "cases.yaml: unknown key 'scenario' (allowed: scenarios, fixtures)"),
        ("scenarios: x\n", "cases.yaml: scenarios: must be a list (got str 'x')"),
        ("scenarios: [x]\n", "cases.yaml: scenarios[0]: must be a mapping (got str 'x')"),
    ],
)
def test_the_file_must_hold_a_list_of_scenarios(tmp_path: Path, text: str, expected: str) -> None:
    problems = _problems(_write(tmp_path, text))
    assert expected in problems


def test_duplicate_names_are_rejected(tmp_path: Path) -> None:
    _write(tmp_path, "scenarios:\n- {name: same, facts: []}\n", "a.yaml")
    _write(tmp_path, "scenarios:\n- {name: same, facts: []}\n", "b.yaml")
    assert _problems(tmp_path) == ["b.yaml: scenario 'same': duplicate name (also in a.yaml)"]


@pytest.mark.parametrize(
    ("body", "keys"),
    [
        ("expect: [dx.a]", "expect"),
        ("absent: [dx.a]", "absent"),
        ("exactly: true", "exactly"),
        ("provenance: {dx.a: {fact_ids: [p]}}", "provenance"),
    ],
)
def test_error_scenarios_cannot_expect_conclusions(tmp_path: Path, body: str, keys: str) -> None:
    """kb.check stops at rejected facts, so these expectations would never be checked."""
    text = _one_scenario(f"facts: []\nerror: true\n{body}\n")
    assert _problems(_write(tmp_path, text)) == [
        f"cases.yaml: scenario 'broken': error: true only checks that the facts are "
        f"rejected, so {keys} must be left out"
    ]


def test_a_code_in_both_expect_and_absent_is_rejected(tmp_path: Path) -> None:
    text = _one_scenario("facts: []\nexpect: [dx.a, dx.b]\nabsent: [dx.b, dx.c]\n")
    assert _problems(_write(tmp_path, text)) == [
        "cases.yaml: scenario 'broken': dx.b in both expect and absent"
    ]


def test_the_equivalent_mutants_file_is_not_read_as_scenarios(tmp_path: Path) -> None:
    """It lives in kb/scenarios/ but belongs to kb/mutate.py (top-level key `equivalent:`)."""
    _write(tmp_path, "equivalent: []\n", EQUIVALENT_MUTANTS_FILE)
    _write(tmp_path, "scenarios: []\n")
    assert load_scenarios(tmp_path) == []
    _write(tmp_path, "equivalent: []\n", "other.yaml")
    assert sorted(_problems(tmp_path)) == [
        "other.yaml: missing key 'scenarios'",
        "other.yaml: unknown key 'equivalent' (allowed: scenarios, fixtures)",
    ]


BROKEN = _one_scenario("facts:\n- {id: p, type: patient, feilds: {age_years: 45}}\n")
BROKEN_LINE = (
    "kb-check FAILED: cases.yaml: scenario 'broken' facts[0]: unknown key 'feilds' "
    "(allowed: id, type, fields)"
)


def test_kb_check_reports_a_broken_file_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert kb_check.main(["--scenarios", str(_write(tmp_path, BROKEN))]) == 1
    captured = capsys.readouterr()
    assert captured.err == BROKEN_LINE + "\n"
    assert captured.out == ""


def test_python_m_kb_check_exits_non_zero_without_a_traceback(tmp_path: Path) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "kb.check", "--scenarios", str(_write(tmp_path, BROKEN))],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 1
    assert result.stderr == BROKEN_LINE + "\n"
    assert "Traceback" not in result.stdout


def test_the_knowledge_base_scenario_files_load() -> None:
    assert load_scenarios()
