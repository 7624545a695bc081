"""The code tables: which Condition codes set which red flag, which order codes are
cervical manipulation.

They are data (`codes.yaml` beside this module) so a site can add the codes its
EHR uses without touching the reader: without a terminology server SNOMED CT
descendants cannot be expanded, so the table is a starter set, not a value set.
The file is validated when this module is imported, so a broken table stops the
service at start-up instead of silently missing a red flag.
"""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from kb.facts import RedFlags

CODES_FILE = "codes.yaml"
# An ICD-10 code without its dot: a letter, two characters, up to four more.
_ICD10 = re.compile(r"[A-Z][0-9][0-9A-Z][0-9A-Z]{0,4}")
_CATEGORY = re.compile(r"[A-Z][0-9][0-9A-Z]")


class CodeTableError(Exception):
    """`codes.yaml` does not follow its schema; raised at import."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class _System(_Strict):
    url: str = Field(min_length=1)
    compare: Literal["exact", "icd10"]


class _Entry(_Strict):
    system: str
    code: str | None = Field(None, min_length=1)
    from_: str | None = Field(None, alias="from")
    to: str | None = None
    subcodes: bool = False

    @model_validator(mode="after")
    def _one_shape(self) -> _Entry:
        is_range = self.from_ is not None or self.to is not None
        if is_range == (self.code is not None):
            raise ValueError("an entry has either `code` or `from` and `to`")
        if is_range and (self.from_ is None or self.to is None):
            raise ValueError("a range needs both `from` and `to`")
        return self


class _File(_Strict):
    systems: dict[str, _System]
    red_flags: dict[str, list[_Entry]]
    orders: dict[str, list[_Entry]]


def normalise_icd10(code: str) -> str:
    """ICD-10 codes compare without case or dot: `c50.911` is `C50911`."""
    return code.replace(".", "").upper()


@dataclass(frozen=True)
class CodeRule:
    """One row of a table, with the system's URL resolved."""

    system: str  # the URL
    compare: str  # "exact" or "icd10"
    code: str | None
    first: str | None  # range bounds (ICD-10 categories, normalised)
    last: str | None
    subcodes: bool

    def matches(self, code: str) -> bool:
        if self.compare == "exact":
            return code == self.code
        normal = normalise_icd10(code)
        if not _ICD10.fullmatch(normal):
            return False
        if self.code is not None:
            mine = normalise_icd10(self.code)
            return normal == mine or (self.subcodes and normal.startswith(mine))
        assert self.first is not None and self.last is not None
        category = normal[:3]
        if not self.first <= category <= self.last:
            return False
        return self.subcodes or len(normal) == 3


@dataclass(frozen=True)
class CodeTables:
    red_flags: dict[str, tuple[CodeRule, ...]]
    orders: dict[str, tuple[CodeRule, ...]]
    published: dict[str, Any]

    def red_flags_for(self, system: str | None, code: str | None) -> set[str]:
        """The red-flag fields one coding sets (usually none or one)."""
        if system is None or code is None:
            return set()
        return {
            field
            for field, rules in self.red_flags.items()
            if any(rule.system == system and rule.matches(code) for rule in rules)
        }

    def order_kinds_for(self, system: str | None, code: str | None) -> set[str]:
        if system is None or code is None:
            return set()
        return {
            kind
            for kind, rules in self.orders.items()
            if any(rule.system == system and rule.matches(code) for rule in rules)
        }


def _rule(where: str, entry: _Entry, systems: dict[str, _System]) -> CodeRule:
    system = systems.get(entry.system)
    if system is None:
        raise CodeTableError(f"{where}: unknown system (declare it under `systems`)")
    if system.compare == "exact":
        if entry.code is None or entry.subcodes:
            raise CodeTableError(f"{where}: ranges and subcodes need an icd10 system")
        return CodeRule(system.url, "exact", entry.code, None, None, False)
    if entry.code is not None:
        if not _ICD10.fullmatch(normalise_icd10(entry.code)):
            raise CodeTableError(f"{where}: not an ICD-10 code")
        return CodeRule(system.url, "icd10", entry.code, None, None, entry.subcodes)
    first, last = normalise_icd10(entry.from_ or ""), normalise_icd10(entry.to or "")
    if not (_CATEGORY.fullmatch(first) and _CATEGORY.fullmatch(last) and first <= last):
        raise CodeTableError(f"{where}: a range runs between two ICD-10 categories, low to high")
    return CodeRule(system.url, "icd10", None, first, last, entry.subcodes)


def _published(data: _File) -> dict[str, Any]:
    """The tables as published: system URLs in place of the short names."""

    def rows(entries: list[_Entry]) -> list[dict[str, Any]]:
        out = []
        for entry in entries:
            row: dict[str, Any] = {"system": data.systems[entry.system].url}
            if entry.code is not None:
                row["code"] = entry.code
            else:
                row["from"], row["to"] = entry.from_, entry.to
            row["subcodes"] = entry.subcodes
            out.append(row)
        return out

    return {
        "red_flags": {field: rows(entries) for field, entries in data.red_flags.items()},
        "orders": {kind: rows(entries) for kind, entries in data.orders.items()},
    }


def load(text: str) -> CodeTables:
    """Parse and check a code-table file; raise `CodeTableError` naming the row."""
    try:
        data = _File.model_validate(yaml.safe_load(text))
    except (yaml.YAMLError, ValidationError) as error:
        raise CodeTableError(f"{CODES_FILE} does not follow its schema: {error}") from error
    unknown = set(data.red_flags) - set(RedFlags.model_fields)
    if unknown:
        raise CodeTableError(f"red_flags names fields red_flags does not have: {sorted(unknown)}")
    red_flags = {
        field: tuple(
            _rule(f"red_flags.{field}[{i}]", entry, data.systems) for i, entry in enumerate(rows)
        )
        for field, rows in data.red_flags.items()
    }
    orders = {
        kind: tuple(
            _rule(f"orders.{kind}[{i}]", entry, data.systems) for i, entry in enumerate(rows)
        )
        for kind, rows in data.orders.items()
    }
    return CodeTables(red_flags, orders, _published(data))


TABLES: CodeTables = load(resources.files(__package__).joinpath(CODES_FILE).read_text())


def code_tables() -> dict[str, Any]:
    """The code tables for publishing (`GetKnowledgeBase`, docs): a fresh copy each call."""
    return copy.deepcopy(TABLES.published)
