"""The extension points of docs/adding-a-rule.md, exercised in a copy of kb/.

Each test copies the knowledge base to a temporary folder, edits it the way the
guide says (and, for the lint tests, the way people get it wrong), and runs the
real tools there in a subprocess: `python -m kb.check`, `python -m kb.docs`, and
Explain.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "adding-a-rule.md"

THROWAWAY_RULE = """
THROWAWAY_SESSIONS = 3

THROWAWAY = Rule(
    id="CAU-99",
    code="caution.throwaway_many_pending_blocks",
    kind=Kind.CAUTION,
    title="Many blocks, response still pending",
    detail="Throwaway rule of the extension-point test.",
    fires_when=f"At least {THROWAWAY_SESSIONS} occipital blocks with a pending response.",
    citations=CITATIONS,
    evidence=Evidence("Throwaway.", Certainty.LOW),
    stage=Stage.FINDINGS,
    when=(
        (
            c.occipital_block
            << treatment(OCCIPITAL_BLOCK)
            & (m.FIELD >= THROWAWAY_SESSIONS)
            & (m.response == "pending"),
        ),
    ),
)

"""

SCENARIOS = """
scenarios:
  - name: throwaway three pending blocks fires
    facts:
      - id: gon
        type: treatment
        fields: {kind: greater_occipital_nerve_block, sessions: 3, response: pending}
    expect: [caution.throwaway_many_pending_blocks, caution.repeated_occipital_blocks]
  - name: throwaway two pending blocks does not fire
    facts:
      - id: gon
        type: treatment
        fields: {kind: greater_occipital_nerve_block, sessions: 2, response: pending}
    absent: [caution.throwaway_many_pending_blocks]
"""


def _copy_with_rule(
    tmp_path: Path,
    *,
    field: str = "sessions",
    citations: str = '("NAJA2006", "VADOD2023")',
    code: str = "caution.throwaway_many_pending_blocks",
    catalogue: bool = True,
) -> Path:
    """A copy of kb/ with the throwaway rule added at every extension point."""
    shutil.copytree(ROOT / "kb", tmp_path / "kb", ignore=shutil.ignore_patterns("__pycache__"))
    cautions = tmp_path / "kb" / "rules" / "cautions.py"
    source = cautions.read_text()
    rule = THROWAWAY_RULE.replace("FIELD", field).replace("CITATIONS", citations)
    source = source.replace(
        "GROUP = RuleGroup(",
        rule.replace("caution.throwaway_many_pending_blocks", code) + "GROUP = RuleGroup(",
    )
    source = source.replace(
        "        PEDIATRIC_OCCIPITAL_PAIN,\n    ),",
        "        PEDIATRIC_OCCIPITAL_PAIN,\n        THROWAWAY,\n    ),",
    )
    assert "THROWAWAY,\n" in source, "the cautions GROUP tuple changed shape"
    cautions.write_text(source)
    if catalogue:
        catalogue_file = tmp_path / "kb" / "catalogue.py"
        text = catalogue_file.read_text()
        text = text.replace(
            "CATALOGUE: dict[str, tuple[Kind, Urgency]] = {\n",
            "CATALOGUE: dict[str, tuple[Kind, Urgency]] = {\n"
            '    "caution.throwaway_many_pending_blocks": (Kind.CAUTION, Urgency.ROUTINE),\n',
        )
        catalogue_file.write_text(text)
    (tmp_path / "kb" / "scenarios" / "throwaway.yaml").write_text(SCENARIOS)
    return tmp_path


def _run(folder: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args],
        cwd=folder,
        env={"PYTHONPATH": str(folder), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_guide_names_every_extension_point() -> None:
    guide = GUIDE.read_text()
    for place in (
        "kb/facts.py",
        "kb/catalogue.py",
        "kb/rules/",
        "kb/references.py",
        "kb/scenarios/",
        "make kb-check",
        "make kb-mutate",
        "make docs",
        "kb.VERSION",
        "caution.repeated_occipital_blocks",
    ):
        assert place in guide, place


def test_a_new_rule_is_linted_covered_explained_and_documented(tmp_path: Path) -> None:
    folder = _copy_with_rule(tmp_path)
    check = _run(folder, "-m", "kb.check")
    assert check.returncode == 0, check.stdout + check.stderr
    assert "lint: 0 problem(s)" in check.stdout
    coverage = next(line for line in check.stdout.splitlines() if "CAU-99" in line)
    assert coverage.split()[-3:] == ["1", "/", "1"], coverage

    explained = _run(
        folder,
        "-c",
        textwrap.dedent(
            """
            from kb.engine import RulesEngine
            from kb.explain import explain
            from kb.facts import FactIn, validate_facts
            facts = validate_facts([FactIn("gon", "treatment", {
                "kind": "greater_occipital_nerve_block", "sessions": 2, "response": "pending"})])
            answer = explain(RulesEngine(), facts, "caution.throwaway_many_pending_blocks")
            (rule,) = answer.rules
            (alternative,) = rule.alternatives
            (condition,) = alternative.conditions
            failed = [t for t in condition.candidates[0].tests if not t.held]
            print(rule.rule.id, answer.derived, [(t.description, t.observed) for t in failed])
            """
        ),
    )
    assert explained.returncode == 0, explained.stderr
    assert explained.stdout.strip() == ("CAU-99 False [('sessions >= 3', {'sessions': 2})]")

    documented = _run(folder, "-m", "kb.docs", "--output", str(folder / "kb.md"))
    assert documented.returncode == 0, documented.stderr
    reference = (folder / "kb.md").read_text()
    assert (
        "### `caution.throwaway_many_pending_blocks` — Many blocks, response still pending"
        in reference
    )
    assert (
        "a treatment fact with kind = greater_occipital_nerve_block and sessions >= 3" in reference
    )


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"field": "sesions"}, "CAU-99: reads unknown field 'sesions' of treatment"),
        ({"citations": '("NAJA2006", "NAJA2007")'}, "CAU-99: cites unknown reference 'NAJA2007'"),
        ({"citations": "()"}, "CAU-99: cites no reference"),
        (
            {"code": "caution.throwaway_unlisted", "catalogue": False},
            "CAU-99: code 'caution.throwaway_unlisted' is not in the published catalogue",
        ),
    ],
    ids=["typo-field", "unknown-citation", "no-citation", "unknown-code"],
)
def test_kb_check_fails_naming_the_rule(tmp_path: Path, change: dict, message: str) -> None:
    folder = _copy_with_rule(tmp_path, **change)
    check = _run(folder, "-m", "kb.check")
    assert check.returncode == 1
    assert message in check.stdout, check.stdout


def test_kb_check_fails_when_a_rule_is_never_seen_not_firing(tmp_path: Path) -> None:
    folder = _copy_with_rule(tmp_path)
    scenarios = folder / "kb" / "scenarios" / "throwaway.yaml"
    scenarios.write_text(SCENARIOS.split("  - name: throwaway two")[0])
    check = _run(folder, "-m", "kb.check")
    assert check.returncode == 1
    line = next(line for line in check.stdout.splitlines() if "CAU-99" in line)
    assert line.endswith("<-- not covered"), line
