import datetime

from google.protobuf import duration_pb2 as _duration_pb2
from google.protobuf import struct_pb2 as _struct_pb2
from google.protobuf import timestamp_pb2 as _timestamp_pb2
from google.rpc import error_details_pb2 as _error_details_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class ConclusionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONCLUSION_KIND_UNSPECIFIED: _ClassVar[ConclusionKind]
    CONCLUSION_KIND_DIAGNOSIS_SUPPORTED: _ClassVar[ConclusionKind]
    CONCLUSION_KIND_MIMIC_SUSPECTED: _ClassVar[ConclusionKind]
    CONCLUSION_KIND_NEXT_TREATMENT_STEP: _ClassVar[ConclusionKind]
    CONCLUSION_KIND_CAUTION: _ClassVar[ConclusionKind]
    CONCLUSION_KIND_INFORMATION_NEEDED: _ClassVar[ConclusionKind]

class Urgency(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    URGENCY_UNSPECIFIED: _ClassVar[Urgency]
    URGENCY_ROUTINE: _ClassVar[Urgency]
    URGENCY_URGENT: _ClassVar[Urgency]
    URGENCY_EMERGENT: _ClassVar[Urgency]

class ChangeType(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CHANGE_TYPE_UNSPECIFIED: _ClassVar[ChangeType]
    CHANGE_TYPE_ADDED: _ClassVar[ChangeType]
    CHANGE_TYPE_UPDATED: _ClassVar[ChangeType]
    CHANGE_TYPE_WITHDRAWN: _ClassVar[ChangeType]

class ConditionKind(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    CONDITION_KIND_UNSPECIFIED: _ClassVar[ConditionKind]
    CONDITION_KIND_FACT: _ClassVar[ConditionKind]
    CONDITION_KIND_NO_FACT: _ClassVar[ConditionKind]
    CONDITION_KIND_CONCLUSION: _ClassVar[ConditionKind]
    CONDITION_KIND_NO_CONCLUSION: _ClassVar[ConditionKind]
CONCLUSION_KIND_UNSPECIFIED: ConclusionKind
CONCLUSION_KIND_DIAGNOSIS_SUPPORTED: ConclusionKind
CONCLUSION_KIND_MIMIC_SUSPECTED: ConclusionKind
CONCLUSION_KIND_NEXT_TREATMENT_STEP: ConclusionKind
CONCLUSION_KIND_CAUTION: ConclusionKind
CONCLUSION_KIND_INFORMATION_NEEDED: ConclusionKind
URGENCY_UNSPECIFIED: Urgency
URGENCY_ROUTINE: Urgency
URGENCY_URGENT: Urgency
URGENCY_EMERGENT: Urgency
CHANGE_TYPE_UNSPECIFIED: ChangeType
CHANGE_TYPE_ADDED: ChangeType
CHANGE_TYPE_UPDATED: ChangeType
CHANGE_TYPE_WITHDRAWN: ChangeType
CONDITION_KIND_UNSPECIFIED: ConditionKind
CONDITION_KIND_FACT: ConditionKind
CONDITION_KIND_NO_FACT: ConditionKind
CONDITION_KIND_CONCLUSION: ConditionKind
CONDITION_KIND_NO_CONCLUSION: ConditionKind

class Fact(_message.Message):
    __slots__ = ("id", "type", "fields")
    ID_FIELD_NUMBER: _ClassVar[int]
    TYPE_FIELD_NUMBER: _ClassVar[int]
    FIELDS_FIELD_NUMBER: _ClassVar[int]
    id: str
    type: str
    fields: _struct_pb2.Struct
    def __init__(self, id: _Optional[str] = ..., type: _Optional[str] = ..., fields: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluateRequest(_message.Message):
    __slots__ = ("facts",)
    FACTS_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ...) -> None: ...

class EvaluateResponse(_message.Message):
    __slots__ = ("conclusion", "summary")
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    conclusion: Conclusion
    summary: EvaluationSummary
    def __init__(self, conclusion: _Optional[_Union[Conclusion, _Mapping]] = ..., summary: _Optional[_Union[EvaluationSummary, _Mapping]] = ...) -> None: ...

class EvaluationSummary(_message.Message):
    __slots__ = ("conclusion_count", "rules_fired", "knowledge_base_version")
    CONCLUSION_COUNT_FIELD_NUMBER: _ClassVar[int]
    RULES_FIRED_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    conclusion_count: int
    rules_fired: int
    knowledge_base_version: str
    def __init__(self, conclusion_count: _Optional[int] = ..., rules_fired: _Optional[int] = ..., knowledge_base_version: _Optional[str] = ...) -> None: ...

class Conclusion(_message.Message):
    __slots__ = ("code", "kind", "urgency", "title", "detail", "provenance")
    CODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    DETAIL_FIELD_NUMBER: _ClassVar[int]
    PROVENANCE_FIELD_NUMBER: _ClassVar[int]
    code: str
    kind: ConclusionKind
    urgency: Urgency
    title: str
    detail: str
    provenance: Provenance
    def __init__(self, code: _Optional[str] = ..., kind: _Optional[_Union[ConclusionKind, str]] = ..., urgency: _Optional[_Union[Urgency, str]] = ..., title: _Optional[str] = ..., detail: _Optional[str] = ..., provenance: _Optional[_Union[Provenance, _Mapping]] = ...) -> None: ...

class Provenance(_message.Message):
    __slots__ = ("rule_id", "ruleset", "fact_ids", "derived_from", "citation_ids", "evidence_note", "certainty", "source_references")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    FACT_IDS_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FROM_FIELD_NUMBER: _ClassVar[int]
    CITATION_IDS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_NOTE_FIELD_NUMBER: _ClassVar[int]
    CERTAINTY_FIELD_NUMBER: _ClassVar[int]
    SOURCE_REFERENCES_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    ruleset: str
    fact_ids: _containers.RepeatedScalarFieldContainer[str]
    derived_from: _containers.RepeatedScalarFieldContainer[str]
    citation_ids: _containers.RepeatedScalarFieldContainer[str]
    evidence_note: str
    certainty: str
    source_references: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, rule_id: _Optional[str] = ..., ruleset: _Optional[str] = ..., fact_ids: _Optional[_Iterable[str]] = ..., derived_from: _Optional[_Iterable[str]] = ..., citation_ids: _Optional[_Iterable[str]] = ..., evidence_note: _Optional[str] = ..., certainty: _Optional[str] = ..., source_references: _Optional[_Iterable[str]] = ...) -> None: ...

class StreamSessionRequest(_message.Message):
    __slots__ = ("open", "assert_facts", "retract_facts")
    OPEN_FIELD_NUMBER: _ClassVar[int]
    ASSERT_FACTS_FIELD_NUMBER: _ClassVar[int]
    RETRACT_FACTS_FIELD_NUMBER: _ClassVar[int]
    open: OpenSession
    assert_facts: AssertFacts
    retract_facts: RetractFacts
    def __init__(self, open: _Optional[_Union[OpenSession, _Mapping]] = ..., assert_facts: _Optional[_Union[AssertFacts, _Mapping]] = ..., retract_facts: _Optional[_Union[RetractFacts, _Mapping]] = ...) -> None: ...

class OpenSession(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class AssertFacts(_message.Message):
    __slots__ = ("facts", "retract_fact_ids", "expected_version")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    RETRACT_FACT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    retract_fact_ids: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., retract_fact_ids: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class RetractFacts(_message.Message):
    __slots__ = ("fact_ids", "expected_version")
    FACT_IDS_FIELD_NUMBER: _ClassVar[int]
    EXPECTED_VERSION_FIELD_NUMBER: _ClassVar[int]
    fact_ids: _containers.RepeatedScalarFieldContainer[str]
    expected_version: int
    def __init__(self, fact_ids: _Optional[_Iterable[str]] = ..., expected_version: _Optional[int] = ...) -> None: ...

class StreamSessionResponse(_message.Message):
    __slots__ = ("opened", "change", "applied", "rejected")
    OPENED_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    REJECTED_FIELD_NUMBER: _ClassVar[int]
    opened: SessionOpened
    change: ConclusionChange
    applied: BatchApplied
    rejected: BatchRejected
    def __init__(self, opened: _Optional[_Union[SessionOpened, _Mapping]] = ..., change: _Optional[_Union[ConclusionChange, _Mapping]] = ..., applied: _Optional[_Union[BatchApplied, _Mapping]] = ..., rejected: _Optional[_Union[BatchRejected, _Mapping]] = ...) -> None: ...

class SessionOpened(_message.Message):
    __slots__ = ("session_id", "current", "version", "knowledge_base_version", "previous_knowledge_base_version", "knowledge_base_changes")
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    CURRENT_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    PREVIOUS_KNOWLEDGE_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_CHANGES_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    current: _containers.RepeatedCompositeFieldContainer[Conclusion]
    version: int
    knowledge_base_version: str
    previous_knowledge_base_version: str
    knowledge_base_changes: _containers.RepeatedCompositeFieldContainer[ConclusionChange]
    def __init__(self, session_id: _Optional[str] = ..., current: _Optional[_Iterable[_Union[Conclusion, _Mapping]]] = ..., version: _Optional[int] = ..., knowledge_base_version: _Optional[str] = ..., previous_knowledge_base_version: _Optional[str] = ..., knowledge_base_changes: _Optional[_Iterable[_Union[ConclusionChange, _Mapping]]] = ...) -> None: ...

class ConclusionChange(_message.Message):
    __slots__ = ("type", "conclusion", "version")
    TYPE_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    VERSION_FIELD_NUMBER: _ClassVar[int]
    type: ChangeType
    conclusion: Conclusion
    version: int
    def __init__(self, type: _Optional[_Union[ChangeType, str]] = ..., conclusion: _Optional[_Union[Conclusion, _Mapping]] = ..., version: _Optional[int] = ...) -> None: ...

class BatchApplied(_message.Message):
    __slots__ = ("version", "knowledge_base_version")
    VERSION_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    version: int
    knowledge_base_version: str
    def __init__(self, version: _Optional[int] = ..., knowledge_base_version: _Optional[str] = ...) -> None: ...

class BatchRejected(_message.Message):
    __slots__ = ("reason", "violations")
    REASON_FIELD_NUMBER: _ClassVar[int]
    VIOLATIONS_FIELD_NUMBER: _ClassVar[int]
    reason: str
    violations: _containers.RepeatedCompositeFieldContainer[_error_details_pb2.BadRequest.FieldViolation]
    def __init__(self, reason: _Optional[str] = ..., violations: _Optional[_Iterable[_Union[_error_details_pb2.BadRequest.FieldViolation, _Mapping]]] = ...) -> None: ...

class GetKnowledgeBaseRequest(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class GetKnowledgeBaseResponse(_message.Message):
    __slots__ = ("version", "rulesets", "fact_schemas", "references", "conclusions", "questionnaire_json", "fhir_code_tables_json")
    class FactSchemasEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: str
        value: str
        def __init__(self, key: _Optional[str] = ..., value: _Optional[str] = ...) -> None: ...
    VERSION_FIELD_NUMBER: _ClassVar[int]
    RULESETS_FIELD_NUMBER: _ClassVar[int]
    FACT_SCHEMAS_FIELD_NUMBER: _ClassVar[int]
    REFERENCES_FIELD_NUMBER: _ClassVar[int]
    CONCLUSIONS_FIELD_NUMBER: _ClassVar[int]
    QUESTIONNAIRE_JSON_FIELD_NUMBER: _ClassVar[int]
    FHIR_CODE_TABLES_JSON_FIELD_NUMBER: _ClassVar[int]
    version: str
    rulesets: _containers.RepeatedCompositeFieldContainer[Ruleset]
    fact_schemas: _containers.ScalarMap[str, str]
    references: _containers.RepeatedCompositeFieldContainer[Reference]
    conclusions: _containers.RepeatedCompositeFieldContainer[ConclusionDefinition]
    questionnaire_json: str
    fhir_code_tables_json: str
    def __init__(self, version: _Optional[str] = ..., rulesets: _Optional[_Iterable[_Union[Ruleset, _Mapping]]] = ..., fact_schemas: _Optional[_Mapping[str, str]] = ..., references: _Optional[_Iterable[_Union[Reference, _Mapping]]] = ..., conclusions: _Optional[_Iterable[_Union[ConclusionDefinition, _Mapping]]] = ..., questionnaire_json: _Optional[str] = ..., fhir_code_tables_json: _Optional[str] = ...) -> None: ...

class Ruleset(_message.Message):
    __slots__ = ("name", "description", "rules")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    name: str
    description: str
    rules: _containers.RepeatedCompositeFieldContainer[Rule]
    def __init__(self, name: _Optional[str] = ..., description: _Optional[str] = ..., rules: _Optional[_Iterable[_Union[Rule, _Mapping]]] = ...) -> None: ...

class Rule(_message.Message):
    __slots__ = ("id", "description", "conclusion_codes", "citation_ids", "evidence_note", "certainty")
    ID_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_CODES_FIELD_NUMBER: _ClassVar[int]
    CITATION_IDS_FIELD_NUMBER: _ClassVar[int]
    EVIDENCE_NOTE_FIELD_NUMBER: _ClassVar[int]
    CERTAINTY_FIELD_NUMBER: _ClassVar[int]
    id: str
    description: str
    conclusion_codes: _containers.RepeatedScalarFieldContainer[str]
    citation_ids: _containers.RepeatedScalarFieldContainer[str]
    evidence_note: str
    certainty: str
    def __init__(self, id: _Optional[str] = ..., description: _Optional[str] = ..., conclusion_codes: _Optional[_Iterable[str]] = ..., citation_ids: _Optional[_Iterable[str]] = ..., evidence_note: _Optional[str] = ..., certainty: _Optional[str] = ...) -> None: ...

class ConclusionDefinition(_message.Message):
    __slots__ = ("code", "kind", "urgency", "title", "fires_when")
    CODE_FIELD_NUMBER: _ClassVar[int]
    KIND_FIELD_NUMBER: _ClassVar[int]
    URGENCY_FIELD_NUMBER: _ClassVar[int]
    TITLE_FIELD_NUMBER: _ClassVar[int]
    FIRES_WHEN_FIELD_NUMBER: _ClassVar[int]
    code: str
    kind: ConclusionKind
    urgency: Urgency
    title: str
    fires_when: str
    def __init__(self, code: _Optional[str] = ..., kind: _Optional[_Union[ConclusionKind, str]] = ..., urgency: _Optional[_Union[Urgency, str]] = ..., title: _Optional[str] = ..., fires_when: _Optional[str] = ...) -> None: ...

class Reference(_message.Message):
    __slots__ = ("id", "citation", "doi", "supports", "certainty", "url")
    ID_FIELD_NUMBER: _ClassVar[int]
    CITATION_FIELD_NUMBER: _ClassVar[int]
    DOI_FIELD_NUMBER: _ClassVar[int]
    SUPPORTS_FIELD_NUMBER: _ClassVar[int]
    CERTAINTY_FIELD_NUMBER: _ClassVar[int]
    URL_FIELD_NUMBER: _ClassVar[int]
    id: str
    citation: str
    doi: str
    supports: str
    certainty: str
    url: str
    def __init__(self, id: _Optional[str] = ..., citation: _Optional[str] = ..., doi: _Optional[str] = ..., supports: _Optional[str] = ..., certainty: _Optional[str] = ..., url: _Optional[str] = ...) -> None: ...

class DeleteSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class WatchSessionRequest(_message.Message):
    __slots__ = ("session_id",)
    SESSION_ID_FIELD_NUMBER: _ClassVar[int]
    session_id: str
    def __init__(self, session_id: _Optional[str] = ...) -> None: ...

class WatchSessionResponse(_message.Message):
    __slots__ = ("snapshot", "change", "applied")
    SNAPSHOT_FIELD_NUMBER: _ClassVar[int]
    CHANGE_FIELD_NUMBER: _ClassVar[int]
    APPLIED_FIELD_NUMBER: _ClassVar[int]
    snapshot: SessionOpened
    change: ConclusionChange
    applied: BatchApplied
    def __init__(self, snapshot: _Optional[_Union[SessionOpened, _Mapping]] = ..., change: _Optional[_Union[ConclusionChange, _Mapping]] = ..., applied: _Optional[_Union[BatchApplied, _Mapping]] = ...) -> None: ...

class DeleteSessionResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...

class ExplainRequest(_message.Message):
    __slots__ = ("facts", "code", "bundle_json", "as_of")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    CODE_FIELD_NUMBER: _ClassVar[int]
    BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    code: str
    bundle_json: str
    as_of: _timestamp_pb2.Timestamp
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., code: _Optional[str] = ..., bundle_json: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ...) -> None: ...

class ExplainResponse(_message.Message):
    __slots__ = ("code", "derived", "conclusion", "rules", "chain", "knowledge_base_version")
    CODE_FIELD_NUMBER: _ClassVar[int]
    DERIVED_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    RULES_FIELD_NUMBER: _ClassVar[int]
    CHAIN_FIELD_NUMBER: _ClassVar[int]
    KNOWLEDGE_BASE_VERSION_FIELD_NUMBER: _ClassVar[int]
    code: str
    derived: bool
    conclusion: Conclusion
    rules: _containers.RepeatedCompositeFieldContainer[RuleExplanation]
    chain: _containers.RepeatedCompositeFieldContainer[ExplainResponse]
    knowledge_base_version: str
    def __init__(self, code: _Optional[str] = ..., derived: _Optional[bool] = ..., conclusion: _Optional[_Union[Conclusion, _Mapping]] = ..., rules: _Optional[_Iterable[_Union[RuleExplanation, _Mapping]]] = ..., chain: _Optional[_Iterable[_Union[ExplainResponse, _Mapping]]] = ..., knowledge_base_version: _Optional[str] = ...) -> None: ...

class RuleExplanation(_message.Message):
    __slots__ = ("rule_id", "ruleset", "fired", "alternatives")
    RULE_ID_FIELD_NUMBER: _ClassVar[int]
    RULESET_FIELD_NUMBER: _ClassVar[int]
    FIRED_FIELD_NUMBER: _ClassVar[int]
    ALTERNATIVES_FIELD_NUMBER: _ClassVar[int]
    rule_id: str
    ruleset: str
    fired: bool
    alternatives: _containers.RepeatedCompositeFieldContainer[AlternativeExplanation]
    def __init__(self, rule_id: _Optional[str] = ..., ruleset: _Optional[str] = ..., fired: _Optional[bool] = ..., alternatives: _Optional[_Iterable[_Union[AlternativeExplanation, _Mapping]]] = ...) -> None: ...

class AlternativeExplanation(_message.Message):
    __slots__ = ("held", "conditions")
    HELD_FIELD_NUMBER: _ClassVar[int]
    CONDITIONS_FIELD_NUMBER: _ClassVar[int]
    held: bool
    conditions: _containers.RepeatedCompositeFieldContainer[ConditionExplanation]
    def __init__(self, held: _Optional[bool] = ..., conditions: _Optional[_Iterable[_Union[ConditionExplanation, _Mapping]]] = ...) -> None: ...

class ConditionExplanation(_message.Message):
    __slots__ = ("kind", "fact_type", "description", "held", "candidates")
    KIND_FIELD_NUMBER: _ClassVar[int]
    FACT_TYPE_FIELD_NUMBER: _ClassVar[int]
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    CANDIDATES_FIELD_NUMBER: _ClassVar[int]
    kind: ConditionKind
    fact_type: str
    description: str
    held: bool
    candidates: _containers.RepeatedCompositeFieldContainer[CandidateExplanation]
    def __init__(self, kind: _Optional[_Union[ConditionKind, str]] = ..., fact_type: _Optional[str] = ..., description: _Optional[str] = ..., held: _Optional[bool] = ..., candidates: _Optional[_Iterable[_Union[CandidateExplanation, _Mapping]]] = ...) -> None: ...

class CandidateExplanation(_message.Message):
    __slots__ = ("id", "matched", "tests")
    ID_FIELD_NUMBER: _ClassVar[int]
    MATCHED_FIELD_NUMBER: _ClassVar[int]
    TESTS_FIELD_NUMBER: _ClassVar[int]
    id: str
    matched: bool
    tests: _containers.RepeatedCompositeFieldContainer[TestExplanation]
    def __init__(self, id: _Optional[str] = ..., matched: _Optional[bool] = ..., tests: _Optional[_Iterable[_Union[TestExplanation, _Mapping]]] = ...) -> None: ...

class TestExplanation(_message.Message):
    __slots__ = ("description", "held", "observed")
    DESCRIPTION_FIELD_NUMBER: _ClassVar[int]
    HELD_FIELD_NUMBER: _ClassVar[int]
    OBSERVED_FIELD_NUMBER: _ClassVar[int]
    description: str
    held: bool
    observed: _struct_pb2.Struct
    def __init__(self, description: _Optional[str] = ..., held: _Optional[bool] = ..., observed: _Optional[_Union[_struct_pb2.Struct, _Mapping]] = ...) -> None: ...

class EvaluateFhirRequest(_message.Message):
    __slots__ = ("bundle_json", "as_of", "vitals_window")
    BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    VITALS_WINDOW_FIELD_NUMBER: _ClassVar[int]
    bundle_json: str
    as_of: _timestamp_pb2.Timestamp
    vitals_window: _duration_pb2.Duration
    def __init__(self, bundle_json: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., vitals_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class EvaluateFhirResponse(_message.Message):
    __slots__ = ("report", "conclusion", "summary")
    REPORT_FIELD_NUMBER: _ClassVar[int]
    CONCLUSION_FIELD_NUMBER: _ClassVar[int]
    SUMMARY_FIELD_NUMBER: _ClassVar[int]
    report: MappingReport
    conclusion: Conclusion
    summary: EvaluationSummary
    def __init__(self, report: _Optional[_Union[MappingReport, _Mapping]] = ..., conclusion: _Optional[_Union[Conclusion, _Mapping]] = ..., summary: _Optional[_Union[EvaluationSummary, _Mapping]] = ...) -> None: ...

class TranslateFhirRequest(_message.Message):
    __slots__ = ("bundle_json", "as_of", "vitals_window")
    BUNDLE_JSON_FIELD_NUMBER: _ClassVar[int]
    AS_OF_FIELD_NUMBER: _ClassVar[int]
    VITALS_WINDOW_FIELD_NUMBER: _ClassVar[int]
    bundle_json: str
    as_of: _timestamp_pb2.Timestamp
    vitals_window: _duration_pb2.Duration
    def __init__(self, bundle_json: _Optional[str] = ..., as_of: _Optional[_Union[datetime.datetime, _timestamp_pb2.Timestamp, _Mapping]] = ..., vitals_window: _Optional[_Union[datetime.timedelta, _duration_pb2.Duration, _Mapping]] = ...) -> None: ...

class TranslateFhirResponse(_message.Message):
    __slots__ = ("facts", "report")
    FACTS_FIELD_NUMBER: _ClassVar[int]
    REPORT_FIELD_NUMBER: _ClassVar[int]
    facts: _containers.RepeatedCompositeFieldContainer[Fact]
    report: MappingReport
    def __init__(self, facts: _Optional[_Iterable[_Union[Fact, _Mapping]]] = ..., report: _Optional[_Union[MappingReport, _Mapping]] = ...) -> None: ...

class MappingReport(_message.Message):
    __slots__ = ("resources", "conflicts")
    RESOURCES_FIELD_NUMBER: _ClassVar[int]
    CONFLICTS_FIELD_NUMBER: _ClassVar[int]
    resources: _containers.RepeatedCompositeFieldContainer[ResourceReport]
    conflicts: _containers.RepeatedCompositeFieldContainer[MappingConflict]
    def __init__(self, resources: _Optional[_Iterable[_Union[ResourceReport, _Mapping]]] = ..., conflicts: _Optional[_Iterable[_Union[MappingConflict, _Mapping]]] = ...) -> None: ...

class ResourceReport(_message.Message):
    __slots__ = ("entry", "reference", "resource_type", "status", "fact_ids", "reason")
    ENTRY_FIELD_NUMBER: _ClassVar[int]
    REFERENCE_FIELD_NUMBER: _ClassVar[int]
    RESOURCE_TYPE_FIELD_NUMBER: _ClassVar[int]
    STATUS_FIELD_NUMBER: _ClassVar[int]
    FACT_IDS_FIELD_NUMBER: _ClassVar[int]
    REASON_FIELD_NUMBER: _ClassVar[int]
    entry: int
    reference: str
    resource_type: str
    status: str
    fact_ids: _containers.RepeatedScalarFieldContainer[str]
    reason: str
    def __init__(self, entry: _Optional[int] = ..., reference: _Optional[str] = ..., resource_type: _Optional[str] = ..., status: _Optional[str] = ..., fact_ids: _Optional[_Iterable[str]] = ..., reason: _Optional[str] = ...) -> None: ...

class MappingConflict(_message.Message):
    __slots__ = ("resolution", "fact_id", "field", "kept", "overridden")
    RESOLUTION_FIELD_NUMBER: _ClassVar[int]
    FACT_ID_FIELD_NUMBER: _ClassVar[int]
    FIELD_FIELD_NUMBER: _ClassVar[int]
    KEPT_FIELD_NUMBER: _ClassVar[int]
    OVERRIDDEN_FIELD_NUMBER: _ClassVar[int]
    resolution: str
    fact_id: str
    field: str
    kept: _containers.RepeatedScalarFieldContainer[str]
    overridden: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, resolution: _Optional[str] = ..., fact_id: _Optional[str] = ..., field: _Optional[str] = ..., kept: _Optional[_Iterable[str]] = ..., overridden: _Optional[_Iterable[str]] = ...) -> None: ...
