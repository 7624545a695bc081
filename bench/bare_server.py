"""The bare grpcio baseline: our proto, a thread pool, no interceptors, no engine.

    python -m bench.bare_server --port N --answers FILE

What issue 12 compares the service with: `grpc.server` with a thread pool and
`DecisionSupportService.Evaluate`, nothing else (no interceptors, health,
reflection, limits, metrics or logging). Each call reads the request's facts
into plain Python values, runs a handful of Python conditions over them, and
builds, message by message, as many `Conclusion`s as the real service answers
for that patient, of the same size: code, titles, detail, evidence and
citations as the knowledge base words them (FILE, recorded beforehand per
patient of the benchmark mix and looked up by the patient's index in the
first fact id), fact ids taken from this request. Then the summary. What is
left is gRPC's own cost plus a small pure-Python evaluation, in one process.
"""

from __future__ import annotations

import argparse
import json
import signal
import threading
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
from google.protobuf import struct_pb2

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc

THREADS = 64  # as many calls at once as the service takes (ServerConfig.capacity)


def _value(value: struct_pb2.Value) -> Any:
    kind = value.WhichOneof("kind")
    if kind == "struct_value":
        return {key: _value(item) for key, item in value.struct_value.fields.items()}
    if kind == "list_value":
        return [_value(item) for item in value.list_value.values]
    if kind in (None, "null_value"):
        return None
    return getattr(value, kind)


def evaluate(facts: list[tuple[str, str, dict[str, Any]]]) -> dict[str, bool]:
    """A handful of conditions in plain Python, about what a small rule set reads."""
    first: dict[str, dict[str, Any]] = {}
    for _, kind, fields in facts:
        first.setdefault(kind, fields)
    patient = first.get("patient", {})
    headache = first.get("headache", {})
    vitals = first.get("orthostatic_vitals", {})
    flags = first.get("red_flags", {})
    exam = first.get("cervical_exam", {})
    hr_rise = vitals.get("standing_hr_bpm", 0) - vitals.get("supine_hr_bpm", 0)
    sbp_drop = vitals.get("supine_sbp_mmhg", 0) - vitals.get("standing_sbp_mmhg", 0)
    return {
        "red_flag": any(value is True for value in flags.values()),
        "older": (patient.get("age_years") or 0) >= 50,
        "pots": bool(vitals) and hr_rise >= 30 and sbp_drop < 20,
        "orthostatic_hypotension": bool(vitals) and sbp_drop >= 20,
        "low_pressure": (headache.get("improvement_lying_down_pct") or 0) > 50,
        "neck": bool(headache.get("starts_in_neck")) and bool(headache.get("side_locked")),
        "tender": any(value is True for value in exam.values()),
        "frequent": (headache.get("attack_count") or 0) >= 5,
        "migrainous": bool(headache.get("photophobia"))
        and bool(headache.get("nausea_or_vomiting")),
    }


class BareService(pb_grpc.DecisionSupportServiceServicer):
    def __init__(self, answers: dict[int, list[dict[str, Any]]]) -> None:
        self._answers = answers

    def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.EvaluateResponse]:
        facts = [
            (fact.id, fact.type, {key: _value(item) for key, item in fact.fields.fields.items()})
            for fact in request.facts
        ]
        evaluate(facts)  # its cost stands in for the rules'; the answer is the recorded one
        shapes = self._answers[int(facts[0][0].split(".", 1)[0][1:])]
        for shape in shapes:
            reads = shape["reads"]
            yield pb.EvaluateResponse(
                conclusion=pb.Conclusion(
                    code=shape["code"],
                    kind=shape["kind"],
                    urgency=shape["urgency"],
                    title=shape["title"],
                    detail=shape["detail"],
                    provenance=pb.Provenance(
                        rule_id=shape["rule_id"],
                        ruleset=shape["ruleset"],
                        fact_ids=sorted(fact_id for fact_id, kind, _ in facts if kind in reads),
                        derived_from=shape["derived_from"],
                        citation_ids=shape["citation_ids"],
                        evidence_note=shape["evidence_note"],
                        certainty=shape["certainty"],
                    ),
                )
            )
        yield pb.EvaluateResponse(
            summary=pb.EvaluationSummary(
                conclusion_count=len(shapes),
                rules_fired=len(shapes),
                knowledge_base_version="bench",
            )
        )


def shape_of(conclusion: Any, fact_types: dict[str, str]) -> dict[str, Any]:
    """A conclusion (kb.model.Conclusion) as the bare server rebuilds it;
    `fact_types` maps the request's fact ids to their types."""
    provenance = conclusion.provenance
    return {
        "code": conclusion.code,
        "kind": pb.ConclusionKind.Value(f"CONCLUSION_KIND_{conclusion.kind.value}"),
        "urgency": pb.Urgency.Value(f"URGENCY_{conclusion.urgency.value}"),
        "title": conclusion.title,
        "detail": conclusion.detail,
        "rule_id": provenance.rule_id,
        "ruleset": provenance.ruleset,
        "reads": sorted({fact_types[fact_id] for fact_id in provenance.fact_ids}),
        "derived_from": list(provenance.derived_from),
        "citation_ids": list(provenance.citation_ids),
        "evidence_note": provenance.evidence_note,
        "certainty": provenance.certainty.value,
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answers", required=True, help="JSON: patient index -> shapes")
    args = parser.parse_args()
    with open(args.answers) as file:
        answers = {int(index): shapes for index, shapes in json.load(file).items()}
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=THREADS))
    pb_grpc.add_DecisionSupportServiceServicer_to_server(BareService(answers), server)
    server.add_insecure_port(f"127.0.0.1:{args.port}")
    server.start()
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    stop.wait()
    server.stop(1).wait()


if __name__ == "__main__":
    main()
