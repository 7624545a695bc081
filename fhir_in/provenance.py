"""Which FHIR resources each conclusion rests on (`Provenance.source_references`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from kb.model import Conclusion


def source_references(
    conclusions: Sequence[Conclusion],
    sources: Mapping[str, Sequence[str]],
    known: Mapping[str, Sequence[str]] | None = None,
) -> dict[str, tuple[str, ...]]:
    """Per conclusion code, the references of the resources behind it, sorted:
    those behind the facts it read (`sources`: fact id -> references, from
    `Reading.sources`) and, transitively, those behind the conclusions it
    chained on, so a treatment step names the records its diagnosis rests on.

    `known` holds what earlier stages' conclusions rest on; the answer holds
    those and `conclusions`'. A conclusion may chain on another of the same
    stage, so this repeats until nothing grows (references only ever add).
    """
    found: dict[str, set[str]] = {code: set(refs) for code, refs in (known or {}).items()}
    grew = True
    while grew:
        grew = False
        for conclusion in conclusions:
            refs = found.setdefault(conclusion.code, set())
            before = len(refs)
            for fact_id in conclusion.provenance.fact_ids:
                refs.update(sources.get(fact_id, ()))
            for code in conclusion.provenance.derived_from:
                refs.update(found.get(code, ()))
            grew |= len(refs) != before
    return {code: tuple(sorted(refs)) for code, refs in found.items()}
