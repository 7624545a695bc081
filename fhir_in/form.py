"""Facts from the assessment QuestionnaireResponse, and the bridge back from kb's
validation paths to paths in the bundle.

A draft is a fact before validation that remembers where each field came from,
so a violation `kb.facts.validate_facts` reports on `facts[3].fields.weeks`
can be told to the client as `entry[2].resource.item[5].item[1].answer[0]`:
the client wrote a bundle, not a fact list.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from fhir_in.questionnaire import Question, groups, questions
from fhir_in.structure import Answer, Item, QuestionnaireResponse
from kb.facts import FACT_TYPES, TREATMENT_KINDS, Fact, FactIn, InvalidFacts, Violation
from kb.facts import validate_facts as _validate


@dataclass
class Draft:
    """A fact to be, with the bundle path of each field (and of each list element)."""

    fact_id: str
    fact_type: str
    path: str  # where the fact as a whole comes from (a group item, a resource)
    fields: dict[str, Any] = field(default_factory=dict)
    field_paths: dict[str, str] = field(default_factory=dict)
    element_paths: dict[str, list[str]] = field(default_factory=dict)
    sources: set[str] = field(default_factory=set)

    def fact_in(self) -> FactIn:
        return FactIn(self.fact_id, self.fact_type, dict(self.fields))


_KB_PATH = re.compile(r"facts\[(\d+)\](?:\.fields\.(\w+)(?:\[(\d+)\])?)?")


def _bundle_path(drafts: Sequence[Draft], kb_path: str) -> tuple[str, str]:
    """(bundle path, description prefix) for a kb violation path."""
    match = _KB_PATH.match(kb_path)
    if match is None:  # not about one fact (a limit): keep it
        return kb_path, ""
    draft = drafts[int(match.group(1))]
    name, element = match.group(2), match.group(3)
    if name is None:
        return draft.path, ""
    if element is not None and name in draft.element_paths:
        elements = draft.element_paths[name]
        if int(element) < len(elements):
            return elements[int(element)], ""
    if name in draft.field_paths:
        return draft.field_paths[name], ""
    # A field with no answer (a required one missing): the group, naming the question.
    return draft.path, f"{draft.fact_type}.{name}: "


def validate(drafts: Sequence[Draft]) -> tuple[list[Fact], list[Violation]]:
    """kb validation of the drafts, its violations moved onto bundle paths."""
    try:
        return _validate([draft.fact_in() for draft in drafts]), []
    except InvalidFacts as error:
        violations = []
        for violation in error.violations:
            path, prefix = _bundle_path(drafts, violation.field)
            description = _KB_PATH.sub(
                lambda m: drafts[int(m.group(1))].path, prefix + violation.description
            )
            violations.append(Violation(path, description))
        return [], violations


# What each question type accepts (an integer field takes a whole valueDecimal; a
# decimal field takes a valueInteger too: both lossless).
_ACCEPTS = {
    "boolean": ("valueBoolean",),
    "integer": ("valueInteger", "valueDecimal"),
    "decimal": ("valueDecimal", "valueInteger"),
    "choice": ("valueCoding",),
}


def _answer_value(question: Question, answer: Answer, path: str) -> tuple[Any, Violation | None]:
    accepted = _ACCEPTS[question.item_type]
    given = [
        form
        for form in ("valueBoolean", "valueInteger", "valueDecimal", "valueCoding")
        if getattr(answer, form) is not None
    ]
    if answer.other_form or not given or given[0] not in accepted:
        return None, Violation(path, f"{question.link_id} is answered with {' or '.join(accepted)}")
    if answer.item:
        return None, Violation(f"{path}.item", "the assessment has no items nested in answers")
    if given[0] == "valueCoding":
        assert answer.valueCoding is not None
        if answer.valueCoding.code is None:
            return None, Violation(f"{path}.valueCoding", "the answer's coding has no code")
        return answer.valueCoding.code, None
    return getattr(answer, given[0]), None


def _group(group: Item, group_path: str, draft: Draft, violations: list[Violation]) -> None:
    """Fill `draft` from one group's questions."""
    index = questions()
    if group.answer:
        violations.append(Violation(f"{group_path}.answer", "a group has no answers"))
    seen: dict[str, int] = {}
    for k, item in enumerate(group.item or ()):
        path = f"{group_path}.item[{k}]"
        question = index.get(item.linkId)
        if question is None or question.fact_type != draft.fact_type:
            violations.append(
                Violation(f"{path}.linkId", f"not a question of the {draft.fact_type} group")
            )
            continue
        if item.linkId in seen:
            violations.append(
                Violation(
                    path, f"{item.linkId} is answered twice (first in item[{seen[item.linkId]}])"
                )
            )
            continue
        seen[item.linkId] = k
        if item.item:
            violations.append(Violation(f"{path}.item", "a question has no nested items"))
        answers = item.answer or []
        if not answers:
            continue  # unanswered: not known
        if len(answers) > 1 and not question.repeats:
            violations.append(Violation(f"{path}.answer[1]", f"{item.linkId} takes one answer"))
            continue
        values, paths, problems = [], [], []
        for a, answer in enumerate(answers):
            answer_path = f"{path}.answer[{a}]"
            value, problem = _answer_value(question, answer, answer_path)
            if problem is not None:
                problems.append(problem)
            values.append(value)
            paths.append(answer_path)
        if problems:  # reported once, here, not again by kb
            violations.extend(problems)
            continue
        if question.repeats:
            draft.fields[question.field] = values
            draft.element_paths[question.field] = paths
        else:
            draft.fields[question.field] = values[0]
        draft.field_paths[question.field] = paths[0]


def form_drafts(
    response: QuestionnaireResponse, entry: int, reference: str
) -> tuple[list[Draft], list[Violation]]:
    """The facts the form gives, in form order, and the form's own violations
    (unknown items, wrong answer types, repeated groups); kb's contract is checked
    afterwards on the drafts."""
    violations: list[Violation] = []
    drafts: list[Draft] = []
    base = f"entry[{entry}].resource"
    known = set(groups())
    first_group: dict[str, int] = {}
    kinds: dict[str, str] = {}
    counts: dict[str, int] = {}
    for g, item in enumerate(response.item or ()):
        group_path = f"{base}.item[{g}]"
        if item.linkId not in known:
            violations.append(
                Violation(f"{group_path}.linkId", "not a group of the assessment Questionnaire")
            )
            continue
        fact_type = item.linkId
        singleton = FACT_TYPES[fact_type].singleton
        if singleton and fact_type in first_group:
            violations.append(
                Violation(
                    group_path,
                    f"at most one '{fact_type}' group is allowed; this repeats "
                    f"item[{first_group[fact_type]}]",
                )
            )
            continue
        first_group.setdefault(fact_type, g)
        counts[fact_type] = counts.get(fact_type, 0) + 1
        draft = Draft(fact_type, fact_type, group_path, sources={reference})
        _group(item, group_path, draft, violations)
        if not draft.fields:
            continue  # an empty group: nothing known
        if fact_type == "imaging":
            draft.fact_id = f"imaging-{sum(d.fact_type == 'imaging' for d in drafts) + 1}"
        elif fact_type == "treatment":
            kind = draft.fields.get("kind")
            if isinstance(kind, str) and kind in TREATMENT_KINDS:
                if kind in kinds:
                    violations.append(
                        Violation(
                            draft.field_paths["kind"],
                            "at most one treatment of each kind is allowed; this repeats "
                            f"{kinds[kind]}",
                        )
                    )
                    continue
                kinds[kind] = group_path
                draft.fact_id = f"treatment-{kind}"
            else:  # invalid or missing kind: kb names the problem
                draft.fact_id = f"treatment-{counts[fact_type]}"
        drafts.append(draft)
    return drafts, violations
