"""A real server in-process on port 0: streaming, rich errors, health, reflection."""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from grpc_status import rpc_status

import kb
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.engine import RulesEngine
from kb.facts import validate_facts
from kb.model import Stage
from kb.scenarios import Scenario, load_scenarios
from server.app import SERVICE_NAME, RunningServer, ServerConfig, create_server
from server.convert import conclusion_to_proto
from server.engine import EngineWorker
from tests.conftest import to_proto_facts
from tests.patients import EXAM, HEADACHE, NEGATIVE_SCREEN, patient
from tests.validation_cases import CASES, Case

SCENARIOS = [s for s in load_scenarios() if not s.error]
# Diagnosis supported, no red-flag screen yet: info.red_flag_screen, no steps.
UNSCREENED = [HEADACHE, EXAM, patient(35)]
# With a complete negative screen the treatment steps fire too.
PATIENT = [*UNSCREENED, NEGATIVE_SCREEN]


def request(facts: list[dict[str, Any]]) -> pb.EvaluateRequest:
    return pb.EvaluateRequest(facts=to_proto_facts(facts))


def rich(error: grpc.RpcError) -> tuple[Any, list[tuple[str, str]], error_details_pb2.ErrorInfo]:
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status details"
    violations: list[tuple[str, str]] = []
    info = None
    for detail in status.details:
        if detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad_request = error_details_pb2.BadRequest()
            detail.Unpack(bad_request)
            violations += [(v.field, v.description) for v in bad_request.field_violations]
        elif detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
    assert info is not None, "every error carries an ErrorInfo"
    assert info.domain == "cds.v1"
    return status, violations, info


def test_health_is_serving(channel: grpc.Channel) -> None:
    health = health_pb2_grpc.HealthStub(channel)
    for service in ("", SERVICE_NAME):
        answer = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING


def test_reflection_lists_the_service(channel: grpc.Channel) -> None:
    stub = reflection_pb2_grpc.ServerReflectionStub(channel)
    ask = reflection_pb2.ServerReflectionRequest(list_services="")
    (answer,) = list(stub.ServerReflectionInfo(iter([ask]), timeout=5))
    names = {service.name for service in answer.list_services_response.service}
    assert {SERVICE_NAME, "grpc.health.v1.Health"} <= names


def test_evaluate_streams_conclusions_then_one_summary(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    responses = list(stub.Evaluate(request(PATIENT), timeout=10))
    events = [response.WhichOneof("event") for response in responses]
    assert events == ["conclusion"] * (len(events) - 1) + ["summary"]
    summary = responses[-1].summary
    assert summary.conclusion_count == len(events) - 1
    assert summary.knowledge_base_version == kb.VERSION
    assert summary.rules_fired == summary.conclusion_count
    codes = {r.conclusion.code for r in responses[:-1]}
    assert {"step.physical_therapy", "step.adjunct_exercise"} <= codes, "the screen is complete"
    assert "info.red_flag_screen" not in codes
    dx = responses[0].conclusion
    assert dx.code == "dx.cervicogenic_headache_supported"
    assert dx.kind == pb.CONCLUSION_KIND_DIAGNOSIS_SUPPORTED
    assert list(dx.provenance.fact_ids) == ["h", "x"]
    assert list(dx.provenance.citation_ids) == ["CHISG1998", "ICHD3"]
    assert dx.provenance.ruleset == "diagnosis"


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[s.name for s in SCENARIOS])
def test_grpc_answers_equal_the_engine(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine, scenario: Scenario
) -> None:
    """Numbers cross the wire as doubles; nothing may change on the way."""
    facts = [{"id": f.id, "type": f.type, "fields": dict(f.fields)} for f in scenario.facts]
    streamed = [r.conclusion for r in stub.Evaluate(request(facts), timeout=10)][:-1]
    local = engine.evaluate(validate_facts(list(scenario.facts))).conclusions
    assert streamed == [conclusion_to_proto(c) for c in local]


def test_invalid_facts_are_rejected_with_paths_and_reason(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    bad = [
        {"id": "p1", "type": "patient", "fields": {"age_years": 40.5}},
        {"id": "p1", "type": "vitals", "fields": {}},
    ]
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(request(bad), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations, info = rich(raised.value)
    assert info.reason == "FACT_INVALID"
    assert {field for field, _ in violations} == {
        "facts[0].fields.age_years",
        "facts[1].type",
        "facts[1].id",
    }


def test_too_many_facts_is_limit_exceeded(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    facts = [
        {
            "id": f"i{n}",
            "type": "imaging",
            "fields": {"modality": "ct", "region": "brain", "finding": "normal"},
        }
        for n in range(501)
    ]
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(request(facts), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations, info = rich(raised.value)
    assert info.reason == "LIMIT_EXCEEDED"
    assert [field for field, _ in violations] == ["facts"]
    assert len(list(stub.Evaluate(request(facts[:500]), timeout=10))) == 1


def test_oversized_message_is_resource_exhausted(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    huge = [{"id": "h", "type": "headache", "fields": {"notes": "x" * (5 * 1024 * 1024)}}]
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(request(huge), timeout=10))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_concurrent_calls_equal_their_sequential_answers(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    patients = [
        request([{"id": f.id, "type": f.type, "fields": dict(f.fields)} for f in s.facts])
        for s in SCENARIOS
    ]

    def answer(index: int) -> list[pb.EvaluateResponse]:
        return list(stub.Evaluate(patients[index % len(patients)], timeout=30))

    sequential = [answer(index) for index in range(len(patients))]
    calls = list(range(4 * max(32, len(patients))))
    with futures.ThreadPoolExecutor(max_workers=32) as pool:
        concurrent = list(pool.map(answer, calls))
    for index, responses in zip(calls, concurrent, strict=True):
        assert responses == sequential[index % len(patients)], index


class _SlowEngine(RulesEngine):
    """Sleeps before publishing each stage and records how far it got."""

    delay = 0.3

    def __init__(self) -> None:
        super().__init__()
        self.stages_closed: list[Stage] = []
        self.cancelled = threading.Event()

    def _close_stage(self, evaluation: Any, stage: Stage) -> Any:
        time.sleep(self.delay)
        self.stages_closed.append(stage)
        return super()._close_stage(evaluation, stage)

    def stages(self, *args: Any, **kwargs: Any) -> Any:
        try:
            return (yield from super().stages(*args, **kwargs))
        except BaseException:  # stopped, or closed before its end
            self.cancelled.set()
            raise


@pytest.fixture
def slow_server() -> Iterator[tuple[RunningServer, _SlowEngine]]:
    engines: list[_SlowEngine] = []

    def factory() -> _SlowEngine:
        engines.append(_SlowEngine())
        return engines[0]

    running = create_server(ServerConfig(port=0), worker=EngineWorker(factory))
    yield running, engines[0]
    running.stop(grace=1)


def _slow_stub(running: RunningServer) -> pb_grpc.DecisionSupportServiceStub:
    channel = grpc.insecure_channel(f"127.0.0.1:{running.port}")
    return pb_grpc.DecisionSupportServiceStub(channel)


def test_conclusions_stream_before_the_engine_finishes(
    slow_server: tuple[RunningServer, _SlowEngine],
) -> None:
    running, engine = slow_server
    stream = _slow_stub(running).Evaluate(request(PATIENT), timeout=10)
    first = next(stream)
    assert first.conclusion.code == "dx.cervicogenic_headache_supported"
    assert engine.stages_closed == [Stage.FINDINGS], "later stages are still running"
    assert list(stream)[-1].WhichOneof("event") == "summary"


def test_deadline_stops_the_engine(slow_server: tuple[RunningServer, _SlowEngine]) -> None:
    running, engine = slow_server
    with pytest.raises(grpc.RpcError) as raised:
        list(_slow_stub(running).Evaluate(request(PATIENT), timeout=0.45))
    assert raised.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    assert engine.cancelled.wait(5), "the engine gave up"
    assert len(engine.stages_closed) < len(Stage)


def test_cancel_stops_the_engine(slow_server: tuple[RunningServer, _SlowEngine]) -> None:
    running, engine = slow_server
    stream = _slow_stub(running).Evaluate(request(PATIENT), timeout=10)
    next(stream)
    stream.cancel()
    assert engine.cancelled.wait(5), "the engine gave up"
    assert len(engine.stages_closed) < len(Stage)


class _BrokenEngine(RulesEngine):
    """Fails the evaluations whose facts include a red-flag screen (so the healthy
    request below is one without a screen: it still derives conclusions)."""

    def _fire(self, rule: Any, matched: Any) -> None:
        if any(fact.type == "red_flags" for fact in self._current.facts_by_engine_id.values()):
            raise RuntimeError("rule action failed")
        super()._fire(rule, matched)


def test_engine_failure_is_internal_and_the_server_keeps_serving(
    caplog: pytest.LogCaptureFixture,
) -> None:
    running = create_server(ServerConfig(port=0), worker=EngineWorker(_BrokenEngine))
    try:
        stub = _slow_stub(running)
        flags = {"id": "r", "type": "red_flags", "fields": {"cancer_history": True}}
        with caplog.at_level(logging.INFO), pytest.raises(grpc.RpcError) as raised:
            list(stub.Evaluate(request([*UNSCREENED, flags]), timeout=10))
        assert raised.value.code() == grpc.StatusCode.INTERNAL
        status, _, info = rich(raised.value)
        assert info.reason == "ENGINE_FAILURE"
        correlation = status.message.rsplit(" ", 1)[-1].rstrip(")")
        assert correlation in caplog.text
        healthy = list(stub.Evaluate(request(UNSCREENED), timeout=10))
        assert healthy[-1].summary.conclusion_count == len(healthy) - 1 > 0
    finally:
        running.stop(grace=1)


def test_logs_and_errors_never_echo_fact_values(
    stub: pb_grpc.DecisionSupportServiceStub, caplog: pytest.LogCaptureFixture
) -> None:
    sentinel = "SENTINEL-4b1d"
    valid = [*PATIENT[:2], {"id": "p", "type": "patient", "fields": {"age_years": 97}}]
    invalid = [
        {"id": "p", "type": "patient", "fields": {"age_years": 98765.25, "sex": sentinel}},
        {"id": "h", "type": "headache", "fields": {"onset": sentinel, sentinel: True}},
    ]
    with caplog.at_level(logging.DEBUG):
        list(stub.Evaluate(request(valid), timeout=10))
        with pytest.raises(grpc.RpcError) as raised:
            list(stub.Evaluate(request(invalid), timeout=10))
    status, violations, _ = rich(raised.value)
    texts = [caplog.text, status.message, *(d for _, d in violations)]
    for text in texts:
        assert sentinel not in text
        assert "98765" not in text


def _representable(case: Case) -> bool:
    """Cases whose facts protobuf can carry (a Struct holds JSON values only)."""
    try:
        to_proto_facts(case.facts)
    except (TypeError, ValueError):
        return False
    return True


WIRE_CASES = [case for case in CASES if _representable(case)]


def test_almost_every_validation_case_crosses_the_wire() -> None:
    assert len(WIRE_CASES) >= len(CASES) - 5


@pytest.mark.parametrize("case", WIRE_CASES, ids=[case.name for case in WIRE_CASES])
def test_validation_case_over_grpc(stub: pb_grpc.DecisionSupportServiceStub, case: Case) -> None:
    """Each rule of facts.md: INVALID_ARGUMENT, exact field paths, ErrorInfo reason."""
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(request(case.facts), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    _, violations, info = rich(raised.value)
    assert info.reason == case.reason
    assert {field for field, _ in violations} == set(case.paths)


def test_long_violation_lists_are_cut_to_fit_the_trailer(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    """2,000 violations would exceed the client's 16 KiB trailer limit (RESOURCE_EXHAUSTED)."""
    bad = {"modality": "pet", "region": "hand", "finding": "odd", "extra": 1}
    facts = [{"id": f"i{n}", "type": "imaging", "fields": bad} for n in range(500)]
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(request(facts), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    status, violations, info = rich(raised.value)
    assert info.reason == "FACT_INVALID"
    assert "2000 violations" in status.message
    assert violations[0] == ("facts[0].fields.modality", violations[0][1])
    listed = len(violations) - 1
    assert 10 < listed < 2000
    assert violations[-1] == ("facts", f"{2000 - listed} further violations not listed")


def test_knowledge_base_publishes_rules_schemas_and_references(
    stub: pb_grpc.DecisionSupportServiceStub,
) -> None:
    answer = stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(), timeout=5)
    assert answer.version == kb.VERSION
    assert [ruleset.name for ruleset in answer.rulesets] == [g.name for g in kb.GROUPS]
    rules = [rule for ruleset in answer.rulesets for rule in ruleset.rules]
    assert len(rules) == len(answer.conclusions) == 30
    assert all(rule.citation_ids and rule.evidence_note and rule.certainty for rule in rules)
    schemas = {name: json.loads(text) for name, text in answer.fact_schemas.items()}
    assert set(schemas) == {
        "patient",
        "headache",
        "cervical_exam",
        "orthostatic_vitals",
        "red_flags",
        "imaging",
        "treatment",
    }
    assert schemas["patient"]["required"] == ["age_years"]
    assert schemas["patient"]["additionalProperties"] is False
    cited = {c for rule in rules for c in rule.citation_ids}
    assert cited <= {reference.id for reference in answer.references}
    # Every source has a DOI, except the FDA's safety communication, which has a URL.
    for reference in answer.references:
        assert reference.doi.startswith("10.") or (
            reference.id == "FDA2014" and reference.url.startswith("https://")
        ), reference.id
    assert "FDA2014" in {reference.id for reference in answer.references}


def test_handlers_are_wrapped_once_per_method_not_per_call(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The call context and the guard are built when the server is (server.handlers),
    and every method of every service gets them: the calls below are counted in
    the metrics, health and reflection included."""
    from server import handlers, logs
    from server.metrics import RPCS

    wrapped: list[str] = []
    real = logs.with_call_context

    def counting(handler: Any, path: str, gates: Any = None) -> Any:
        wrapped.append(path)
        return real(handler, path, gates)

    monkeypatch.setattr(handlers.logs, "with_call_context", counting)
    running = create_server(ServerConfig(port=0))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.DecisionSupportServiceStub(channel)
            health = health_pb2_grpc.HealthStub(channel)
            evaluate = RPCS.labels("Evaluate", "OK")
            check = RPCS.labels("Check", "OK")
            before = (evaluate._value.get(), check._value.get())
            for _ in range(3):
                assert list(stub.Evaluate(request([HEADACHE, EXAM]), timeout=10))
                health.Check(health_pb2.HealthCheckRequest(), timeout=10)
            assert (evaluate._value.get(), check._value.get()) == (before[0] + 3, before[1] + 3)
    finally:
        running.stop(grace=1)
    assert wrapped.count("/cds.v1.DecisionSupportService/Evaluate") == 1
    assert wrapped.count("/grpc.health.v1.Health/Check") == 1
