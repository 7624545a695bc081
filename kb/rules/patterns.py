"""Shared durable_rules patterns: the vocabulary rule modules are written in.

Every function returns a fresh expression: durable_rules stores an alias
(`c.h << expr`) on the expression object itself, so one object must never be
shared between two rules.

How facts look inside the engine (see `kb.engine`): a client fact is its
validated fields plus `t` (its type); a list of enumerated values such as
`components` becomes a map from each allowed value to whether it is present;
a derived conclusion is `{t: "conclusion", code, ckind}`.
"""

from __future__ import annotations

from typing import Any

from durable.lang import m, none

from kb.model import Kind

CONCLUSION = "conclusion"
DIAGNOSIS = "dx.cervicogenic_headache_supported"


def fact(fact_type: str) -> Any:
    """A client fact of this type."""
    return m.t == fact_type


def field(name: str) -> Any:
    return getattr(m, name)


def is_true(name: str) -> Any:
    """The field is given as true (absent is not true)."""
    return field(name) == True  # noqa: E712 - builds a durable_rules pattern


def is_false(name: str) -> Any:
    """The field is given as false (absent is not false)."""
    return field(name) == False  # noqa: E712 - builds a durable_rules pattern


def is_missing(name: str) -> Any:
    """The field is not given (absent or sent as null)."""
    return -field(name)


def any_true(*names: str) -> Any:
    expression = is_true(names[0])
    for name in names[1:]:
        expression = expression | is_true(name)
    return expression


def any_missing(*names: str) -> Any:
    expression = is_missing(names[0])
    for name in names[1:]:
        expression = expression | is_missing(name)
    return expression


def treatment(kind: str) -> Any:
    return fact("treatment") & (m.kind == kind)


def concluded(code: str) -> Any:
    """A conclusion derived earlier in this evaluation (chaining)."""
    return (m.t == CONCLUSION) & (m.code == code)


def absent(expression: Any) -> Any:
    """No fact matches `expression` (checked when the rule's stage begins)."""
    return none(expression)


def no_mimic() -> Any:
    """No `mimic.*` conclusion was derived. Equality on the kind, not a regex:
    the engine's `matches` does not honour `\\.` escapes."""
    return none((m.t == CONCLUSION) & (m.ckind == Kind.MIMIC_SUSPECTED.value))
