"""A strict pydantic model of only the FHIR R4 elements the reader uses.

Why not `fhir.resources`: its R4B models validate every element of every
resource, about fifteen times slower per Observation than this subset (see
`bench/fhir_parse.py`), and on the request path a 20-Observation bundle would
cost more than the evaluation. The tests keep `fhir.resources` as the oracle of
structure on their corpus.

What is checked, in the elements read and only there: JSON types (a string where
a string belongs, a number for a decimal, a boolean for a boolean: no coercion),
required elements, the primitive formats (id, date, dateTime), the codes of
required bindings the reader acts on (`Patient.gender`, `Observation.status`,
`QuestionnaireResponse.status`), and that a choice element (`value[x]`,
`effective[x]`) has at most one form. Everything else a real record carries
(narrative, `meta`, other extensions, contained resources) is accepted and
ignored.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Discriminator,
    ModelWrapValidatorHandler,
    PlainValidator,
    PrivateAttr,
    Tag,
    model_validator,
)
from pydantic_core import PydanticCustomError

READ_TYPES = ("Patient", "Observation", "Condition", "QuestionnaireResponse")

# R4 primitive formats (https://hl7.org/fhir/R4/datatypes.html).
_ID = re.compile(r"[A-Za-z0-9\-.]{1,64}")
_YEAR = r"([0-9]([0-9]([0-9][1-9]|[1-9]0)|[1-9]00)|[1-9]000)"
_DATE = re.compile(_YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01]))?)?")
_DATETIME = re.compile(
    _YEAR + r"(-(0[1-9]|1[0-2])(-(0[1-9]|[12][0-9]|3[01])"
    r"(T([01][0-9]|2[0-3]):([0-5][0-9]):([0-5][0-9]|60)(\.[0-9]+)?"
    r"(Z|[+-]((0[0-9]|1[0-3]):[0-5][0-9]|14:00)))?)?)?"
)
_INT32 = (-(2**31), 2**31 - 1)
_ANSWER_FORMS = frozenset({"valueBoolean", "valueInteger", "valueDecimal", "valueCoding"})


@dataclass(frozen=True)
class PartialDate:
    """A FHIR date or dateTime without a time of day: a year, a month or a day."""

    year: int
    month: int | None = None
    day: int | None = None

    def first_day(self) -> date:
        return date(self.year, self.month or 1, self.day or 1)


When = datetime | PartialDate  # a dateTime with a time is an aware datetime


def _partial(text: str) -> PartialDate:
    parts = [int(part) for part in text.split("-")]
    value = PartialDate(*parts)
    if value.day is not None:
        try:
            value.first_day()
        except ValueError:
            raise PydanticCustomError("fhir_date", "must be a calendar date") from None
    return value


def _check_date(text: str) -> PartialDate:
    if not _DATE.fullmatch(text):
        raise PydanticCustomError("fhir_date", "must be a FHIR date (YYYY, YYYY-MM or YYYY-MM-DD)")
    return _partial(text)


def _check_datetime(text: str) -> When:
    match = _DATETIME.fullmatch(text)
    if not match:
        raise PydanticCustomError(
            "fhir_datetime",
            "must be a FHIR dateTime (a date, or a date and time with a time zone)",
        )
    if "T" not in text:
        return _partial(text)
    day, clock = text.split("T")
    stamp = _partial(day)
    zone = clock[8:].lstrip(".0123456789")
    hours, minutes = int(clock[0:2]), int(clock[3:5])
    seconds = min(int(clock[6:8]), 59)  # a leap second counts as :59
    fraction = clock[8 : len(clock) - len(zone)].lstrip(".")
    micro = int((fraction + "000000")[:6]) if fraction else 0
    if zone == "Z":
        tz = UTC
    else:
        sign = 1 if zone[0] == "+" else -1
        tz = timezone(sign * timedelta(hours=int(zone[1:3]), minutes=int(zone[4:6])))
    try:
        return datetime(
            stamp.year, stamp.month or 1, stamp.day or 1, hours, minutes, seconds, micro, tz
        )
    except ValueError:
        raise PydanticCustomError("fhir_datetime", "must be a calendar date and time") from None


def _check_id(text: str) -> str:
    if not _ID.fullmatch(text):
        raise PydanticCustomError("fhir_id", "must be a FHIR id (1-64 letters, digits, '-' or '.')")
    return text


def _check_decimal(value: float) -> float:
    if not math.isfinite(value):
        raise PydanticCustomError("finite_number", "must be a finite number")
    return value


def _check_int32(value: int) -> int:
    if not _INT32[0] <= value <= _INT32[1]:
        raise PydanticCustomError("fhir_integer", "must be a 32-bit integer")
    return value


FhirId = Annotated[str, AfterValidator(_check_id)]


def _string(value: Any) -> str:
    if not isinstance(value, str):
        raise PydanticCustomError("string_type", "must be a JSON string")
    return value


FhirDate = Annotated[PartialDate, PlainValidator(lambda value: _check_date(_string(value)))]
FhirDateTime = Annotated[When, PlainValidator(lambda value: _check_datetime(_string(value)))]
Decimal = Annotated[float, AfterValidator(_check_decimal)]
Integer = Annotated[int, AfterValidator(_check_int32)]


# The forms of the choice elements read (R4), so a second form is found by a set
# intersection rather than by scanning keys.
_OPEN_TYPES = [
    "Base64Binary",
    "Boolean",
    "Canonical",
    "Code",
    "Date",
    "DateTime",
    "Decimal",
    "Id",
    "Instant",
    "Integer",
    "Markdown",
    "Oid",
    "PositiveInt",
    "String",
    "Time",
    "UnsignedInt",
    "Uri",
    "Url",
    "Uuid",
    "Address",
    "Age",
    "Annotation",
    "Attachment",
    "CodeableConcept",
    "Coding",
    "ContactPoint",
    "Count",
    "Distance",
    "Duration",
    "HumanName",
    "Identifier",
    "Money",
    "Period",
    "Quantity",
    "Range",
    "Ratio",
    "Reference",
    "SampledData",
    "Signature",
    "Timing",
    "ContactDetail",
    "Contributor",
    "DataRequirement",
    "Expression",
    "ParameterDefinition",
    "RelatedArtifact",
    "TriggerDefinition",
    "UsageContext",
    "Dosage",
    "Meta",
]
_OBSERVATION_VALUES = frozenset(
    "value" + t
    for t in [
        "Quantity",
        "CodeableConcept",
        "String",
        "Boolean",
        "Integer",
        "Range",
        "Ratio",
        "SampledData",
        "Time",
        "DateTime",
        "Period",
    ]
)
_EFFECTIVE = frozenset(f"effective{t}" for t in ("DateTime", "Period", "Timing", "Instant"))
_EXTENSION_VALUES = frozenset(f"value{t}" for t in _OPEN_TYPES)
_ANSWER_VALUES = frozenset(
    "value" + t
    for t in [
        "Boolean",
        "Decimal",
        "Integer",
        "Date",
        "DateTime",
        "Time",
        "String",
        "Uri",
        "Attachment",
        "Coding",
        "Quantity",
        "Reference",
    ]
)
_ANSWER_NOT_READ = _ANSWER_VALUES - _ANSWER_FORMS


def _one_choice(data: Any, forms: frozenset[str], element: str) -> None:
    """A choice element (`value[x]`) appears in at most one of its forms."""
    if isinstance(data, dict) and len(forms.intersection(data)) > 1:
        raise PydanticCustomError(
            "fhir_choice", "{element}[x] may appear in one form only", {"element": element}
        )


class Element(BaseModel):
    """Unknown elements are allowed (and dropped); known ones are strictly typed."""

    model_config = ConfigDict(strict=True, extra="ignore", frozen=True, allow_inf_nan=False)


class Coding(Element):
    system: str | None = None
    code: str | None = None


class CodeableConcept(Element):
    coding: list[Coding] | None = None


class Reference(Element):
    reference: str | None = None


class Quantity(Element):
    value: Decimal | None = None
    comparator: str | None = None
    unit: str | None = None
    system: str | None = None
    code: str | None = None


class Period(Element):
    start: FhirDateTime | None = None


class Extension(Element):
    url: str
    valueCodeableConcept: CodeableConcept | None = None

    @model_validator(mode="before")
    @classmethod
    def _choice(cls, data: Any) -> Any:
        _one_choice(data, _EXTENSION_VALUES, "value")
        return data


class Resource(Element):
    resourceType: str
    id: FhirId | None = None


class Patient(Resource):
    resourceType: Literal["Patient"]
    birthDate: FhirDate | None = None
    gender: Literal["male", "female", "other", "unknown"] | None = None


class ObservationComponent(Element):
    code: CodeableConcept
    valueQuantity: Quantity | None = None

    @model_validator(mode="before")
    @classmethod
    def _choice(cls, data: Any) -> Any:
        _one_choice(data, _OBSERVATION_VALUES, "value")
        return data


class Observation(Resource):
    resourceType: Literal["Observation"]
    status: Literal[
        "registered",
        "preliminary",
        "final",
        "amended",
        "corrected",
        "cancelled",
        "entered-in-error",
        "unknown",
    ]
    code: CodeableConcept
    subject: Reference | None = None
    effectiveDateTime: FhirDateTime | None = None
    effectivePeriod: Period | None = None
    valueQuantity: Quantity | None = None
    component: list[ObservationComponent] | None = None
    extension: list[Extension] | None = None

    @model_validator(mode="before")
    @classmethod
    def _choice(cls, data: Any) -> Any:
        _one_choice(data, _OBSERVATION_VALUES, "value")
        _one_choice(data, _EFFECTIVE, "effective")
        return data


class Condition(Resource):
    resourceType: Literal["Condition"]
    subject: Reference
    code: CodeableConcept | None = None
    clinicalStatus: CodeableConcept | None = None
    verificationStatus: CodeableConcept | None = None
    recordedDate: FhirDateTime | None = None


class Answer(Element):
    valueBoolean: bool | None = None
    valueInteger: Integer | None = None
    valueDecimal: Decimal | None = None
    valueCoding: Coding | None = None
    item: list[Item] | None = None
    # True when value[x] is a form the reader does not take (valueString, valueDate, ...).
    _other_form: bool = PrivateAttr(False)

    @model_validator(mode="wrap")
    @classmethod
    def _choice(cls, data: Any, handler: ModelWrapValidatorHandler[Answer]) -> Answer:
        _one_choice(data, _ANSWER_VALUES, "value")
        answer = handler(data)
        if isinstance(data, dict):
            answer._other_form = not _ANSWER_NOT_READ.isdisjoint(data)
        return answer

    @property
    def other_form(self) -> bool:
        return self._other_form


class Item(Element):
    linkId: str
    answer: list[Answer] | None = None
    item: list[Item] | None = None


class QuestionnaireResponse(Resource):
    resourceType: Literal["QuestionnaireResponse"]
    questionnaire: str | None = None
    status: Literal["in-progress", "completed", "amended", "entered-in-error", "stopped"]
    subject: Reference | None = None
    authored: FhirDateTime | None = None
    item: list[Item] | None = None


Answer.model_rebuild()


class OtherResource(Resource):
    """Any type the reader does not use: only its type and id are read."""


def _resource_kind(value: Any) -> str:
    kind = value.get("resourceType") if isinstance(value, dict) else None
    return kind if kind in READ_TYPES else "other"


AnyResource = Annotated[
    Annotated[Patient, Tag("Patient")]
    | Annotated[Observation, Tag("Observation")]
    | Annotated[Condition, Tag("Condition")]
    | Annotated[QuestionnaireResponse, Tag("QuestionnaireResponse")]
    | Annotated[OtherResource, Tag("other")],
    Discriminator(_resource_kind),
]


class Entry(Element):
    fullUrl: str | None = None
    resource: AnyResource | None = None


class Bundle(Element):
    resourceType: Literal["Bundle"]
    type: str
    entry: list[Entry] | None = None
