"""From a CDS Hooks request to a Bundle, and from conclusions to cards.

Pure: no HTTP, no gRPC. `bundle_from_prefetch` joins the prefetch values the
EHR sent into one FHIR Bundle for `EvaluateFhir`; `cards` turns the streamed
conclusions into CDS Hooks 2.0 cards, in the order they were streamed.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from client.api import Conclusion
from fhir_in import DEFAULT_BASE, code_tables

PATIENT_VIEW = "cgh-patient-view"
ORDER_SELECT = "cgh-order-select"
MANIPULATION_CONTRAINDICATED = "caution.manipulation_contraindicated"
INDICATORS = {"ROUTINE": "info", "URGENT": "warning", "EMERGENT": "critical"}
SUMMARY_LIMIT = 140  # characters, CDS Hooks' limit on a card's summary
SOURCE_LABEL = "Cervicogenic headache decision support"
# Facts that say the chart is about a headache or a neck: without either,
# patient-view answers no cards (a chart opened for another reason).
TOPIC_FACTS = frozenset({"headache", "cervical_exam"})
OVERRIDE_REASONS = (
    ("contraindication-assessed", "Contraindication assessed; manipulation judged safe"),
    ("no-manipulation-planned", "The order does not include cervical manipulation"),
    ("patient-informed-consent", "Risks discussed; patient gives informed consent"),
)


class BadHookRequest(ValueError):
    """The body is not a usable hook request (answered 400 with an OperationOutcome)."""


class MissingPrefetch(KeyError):
    """A prefetch key the service needs is absent (412): this version does not
    query the FHIR server itself. A key present as null means "found nothing"."""


@dataclass(frozen=True)
class Service:
    id: str
    hook: str
    title: str
    description: str

    def prefetch(self, base: str = DEFAULT_BASE) -> dict[str, str]:
        patient = "{{context.patientId}}"
        return {
            "patient": f"Patient/{patient}",
            "vitals": f"Observation?patient={patient}&category=vital-signs&_sort=-date&_count=100",
            "conditions": f"Condition?patient={patient}",
            "assessment": (
                f"QuestionnaireResponse?subject={patient}"
                f"&questionnaire={base}/Questionnaire/cgh-assessment&_sort=-authored&_count=1"
            ),
        }


SERVICES = {
    service.id: service
    for service in (
        Service(
            PATIENT_VIEW,
            "patient-view",
            "Cervicogenic headache: diagnosis, mimics and next steps",
            "When a chart with headache or neck findings opens: whether cervicogenic headache "
            "is supported, which mimics and red flags to act on first, the next treatment step "
            "and its cautions, and what information is still missing.",
        ),
        Service(
            ORDER_SELECT,
            "order-select",
            "Cervical manipulation safety",
            "When a cervical manipulation order is drafted while manipulation is "
            "contraindicated (dissection signs, thunderclap onset, recent neck trauma): a "
            "critical card that suggests removing the order.",
        ),
    )
}


def discovery(base: str = DEFAULT_BASE) -> dict[str, Any]:
    return {
        "services": [
            {
                "id": service.id,
                "hook": service.hook,
                "title": service.title,
                "description": service.description,
                "prefetch": service.prefetch(base),
            }
            for service in SERVICES.values()
        ]
    }


def _entries(value: Any, key: str) -> list[dict[str, Any]]:
    """A prefetch value as Bundle entries: a resource, or a (searchset) Bundle's
    entries with their `fullUrl` (references may point at it)."""
    if value is None:
        return []  # the EHR found nothing
    if not isinstance(value, dict) or not isinstance(value.get("resourceType"), str):
        raise BadHookRequest(f"{key} is not a FHIR resource")
    if value["resourceType"] != "Bundle":
        return [{"resource": value}]
    entries = value.get("entry") or []
    if not isinstance(entries, list):
        raise BadHookRequest(f"{key}.entry is not a list")
    found = []
    for index, entry in enumerate(entries):
        resource = entry.get("resource") if isinstance(entry, dict) else None
        if not isinstance(resource, dict):
            raise BadHookRequest(f"{key}.entry[{index}] has no resource")
        kept: dict[str, Any] = {"resource": resource}
        if isinstance(entry.get("fullUrl"), str):
            kept["fullUrl"] = entry["fullUrl"]
        found.append(kept)
    return found


def bundle_from_prefetch(
    prefetch: Mapping[str, Any], keys: Iterable[str], patient_id: str
) -> dict[str, Any]:
    """One collection Bundle of every prefetched resource.

    Raises `MissingPrefetch` for an absent key, `BadHookRequest` for a value
    that is not FHIR or a Patient that is not `patient_id`.
    """
    entries: list[dict[str, Any]] = []
    for key in keys:
        if key not in prefetch:
            raise MissingPrefetch(key)
        entries += _entries(prefetch[key], f"prefetch.{key}")
    for entry in entries:
        resource = entry["resource"]
        if resource.get("resourceType") == "Patient" and resource.get("id") != patient_id:
            raise BadHookRequest("context.patientId does not match the prefetched Patient")
    return {"resourceType": "Bundle", "type": "collection", "entry": entries}


PREFETCH_TYPES = {
    "patient": "Patient",
    "vitals": "Observation",
    "conditions": "Condition",
    "assessment": "QuestionnaireResponse",
}


def prefetch_from_bundle(bundle: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """A patient's records as an EHR prefetches them for these services (the
    inverse of `bundle_from_prefetch`): the Patient's id and one searchset
    Bundle per prefetch key, entries kept with their fullUrls. For demos,
    benchmarks, tests and integrators trying the service with a bundle."""
    entries = bundle["entry"]
    patient = next(e["resource"] for e in entries if e["resource"]["resourceType"] == "Patient")
    return patient["id"], {
        key: {
            "resourceType": "Bundle",
            "type": "searchset",
            "entry": [e for e in entries if e["resource"]["resourceType"] == kind],
        }
        for key, kind in PREFETCH_TYPES.items()
    }


def manipulation_orders(draft_orders: Any) -> list[str]:
    """References of the draft ServiceRequests that order cervical manipulation
    (by the order codes of the code tables)."""
    if draft_orders is None:
        return []
    codes = {
        (row["system"], row["code"]) for row in code_tables()["orders"]["cervical_manipulation"]
    }
    found = []
    for entry in _entries(draft_orders, "context.draftOrders"):
        resource = entry["resource"]
        if resource.get("resourceType") != "ServiceRequest":
            continue
        codings = (resource.get("code") or {}).get("coding") or []
        if any((c.get("system"), c.get("code")) in codes for c in codings if isinstance(c, dict)):
            found.append(f"ServiceRequest/{resource.get('id')}")
    return found


def _detail(conclusion: Conclusion, references: Mapping[str, Any]) -> str:
    lines = [
        conclusion.detail,
        "",
        f"**Evidence** ({conclusion.certainty}): {conclusion.evidence_note}",
    ]
    if conclusion.citation_ids:
        lines += ["", "**References**", ""]
        for citation in conclusion.citation_ids:
            reference = references.get(citation)
            text = reference.citation if reference is not None else citation
            url = (reference.url or "") if reference is not None else ""
            lines.append(f"- {text}" + (f" <{url}>" if url else ""))
    return "\n".join(lines)


def card(
    conclusion: Conclusion, references: Mapping[str, Any], base: str = DEFAULT_BASE
) -> dict[str, Any]:
    """One card for one conclusion. `references`: citation id -> the knowledge
    base's Reference (its citation text and URL)."""
    first = references.get(conclusion.citation_ids[0]) if conclusion.citation_ids else None
    source: dict[str, Any] = {
        "label": SOURCE_LABEL,
        "topic": {
            "system": f"{base}/CodeSystem/cgh-conclusions",
            "code": conclusion.code,
            "display": conclusion.title,
        },
    }
    if first is not None and first.url:
        source["url"] = first.url
    title = conclusion.title
    return {
        "uuid": str(uuid.uuid4()),
        "summary": title if len(title) < SUMMARY_LIMIT else title[: SUMMARY_LIMIT - 2] + "…",
        "indicator": INDICATORS.get(conclusion.urgency, "info"),
        "detail": _detail(conclusion, references),
        "source": source,
    }


def cards(
    service_id: str,
    conclusions: Sequence[Conclusion],
    facts_read: Iterable[str],
    references: Mapping[str, Any],
    draft_orders: Any = None,
    base: str = DEFAULT_BASE,
) -> list[dict[str, Any]]:
    """The cards for one hook call, in the order the conclusions streamed.

    patient-view: one card per conclusion, none at all when the record gave
    neither a headache nor a neck examination (the noise rule). order-select:
    for each draft cervical manipulation order while manipulation is
    contraindicated, the caution's card, critical, suggesting the order's
    deletion; nothing else (the chart's other cards belong to patient-view).
    """
    if service_id == PATIENT_VIEW:
        if not TOPIC_FACTS & set(facts_read):
            return []
        return [card(conclusion, references, base) for conclusion in conclusions]
    caution = next((c for c in conclusions if c.code == MANIPULATION_CONTRAINDICATED), None)
    if caution is None:
        return []
    found = []
    for order in manipulation_orders(draft_orders):
        alert = card(caution, references, base)
        alert["indicator"] = "critical"
        alert["suggestions"] = [
            {
                "label": "Remove the cervical manipulation order",
                "uuid": str(uuid.uuid4()),
                "isRecommended": True,
                "actions": [
                    {
                        "type": "delete",
                        "description": "Remove the draft cervical manipulation order",
                        "resource": order,
                        "resourceId": [order],
                    }
                ],
            }
        ]
        alert["selectionBehavior"] = "at-most-one"
        alert["overrideReasons"] = [
            {"code": code, "system": f"{base}/CodeSystem/cgh-override-reasons", "display": text}
            for code, text in OVERRIDE_REASONS
        ]
        found.append(alert)
    return found
