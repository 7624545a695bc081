"""FHIR R4 in: read a patient's Bundle into the knowledge base's facts.

Pure and transport-free (no gRPC): `read_bundle` takes FHIR JSON and an as-of
instant and returns validated `kb` facts, the FHIR references behind each, and
a mapping report of what was used and what was skipped. It depends on `kb`
(the fact models); `kb` never depends on it. The contract is docs/fhir.md.
"""

from fhir_in.codes import code_tables
from fhir_in.provenance import source_references
from fhir_in.questionnaire import DEFAULT_BASE, canonical, questionnaire
from fhir_in.reader import DEFAULT_VITALS_WINDOW, parse_bundle, read_bundle
from fhir_in.report import (
    REASON_FHIR_INVALID,
    Conflict,
    MappingReport,
    Reading,
    Reason,
    Resolution,
    ResourceReport,
    Status,
)

__all__ = [
    "DEFAULT_BASE",
    "DEFAULT_VITALS_WINDOW",
    "REASON_FHIR_INVALID",
    "Conflict",
    "MappingReport",
    "Reading",
    "Reason",
    "Resolution",
    "ResourceReport",
    "Status",
    "canonical",
    "code_tables",
    "parse_bundle",
    "questionnaire",
    "read_bundle",
    "source_references",
]
