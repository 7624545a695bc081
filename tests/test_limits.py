"""Every request limit is configurable, and holds exactly: at the limit served, one past refused.

One server with small limits serves the module: facts per request 5, message
64 KiB, string length 35 (the longest vocabulary word,
"cervical_epidural_steroid_injection"), fields per fact 23 (a headache with
every field), list items 3 (every physical-therapy component), two session
streams.
"""

from __future__ import annotations

import queue
import subprocess
import sys
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import json_format, struct_pb2
from google.protobuf.internal import encoder
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from hypothesis import given, settings
from hypothesis import strategies as st

import server.service
import server.session_rpc
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import BatchApplied, BatchRejected, CdsClient, CdsError
from kb.facts import TREATMENT_KINDS, FactIn, Headache, validate_facts
from server.app import RunningServer, ServerConfig, create_server
from server.convert import facts_from_proto
from server.limits import LimitExceeded, Limits, fact_violations
from tests.conftest import to_proto_facts

ROOT = Path(__file__).resolve().parents[1]
LONGEST_WORD = max(TREATMENT_KINDS, key=len)
MESSAGE_BYTES = 64 * 1024
CONFIG = ServerConfig(
    port=0,
    max_facts=5,
    max_message_bytes=MESSAGE_BYTES,
    max_string_length=len(LONGEST_WORD),
    max_fields_per_fact=len(Headache.model_fields),
    max_list_items=3,
    max_session_streams=2,
)
FULL_HEADACHE = {
    "laterality": "unilateral",
    "side_locked": True,
    "starts_in_neck": True,
    "radiates_oculo_fronto_temporal": True,
    "provoked_by_neck_movement": True,
    "provoked_by_sustained_posture": False,
    "provoked_by_occipital_pressure": True,
    "provoked_by_cough_or_strain": False,
    "onset": "gradual",
    "intensity": "moderate",
    "pulsating": False,
    "pressing_tightening": False,
    "aggravated_by_routine_activity": False,
    "nausea_or_vomiting": False,
    "photophobia": False,
    "phonophobia": False,
    "attack_duration_hours": 6,
    "attack_count": 12,
    "tension_type_features_prominent": False,
    "improvement_lying_down_pct": 0,
    "improvement_lying_down_within_hours": 1,
    "autonomic_features": False,
    "medication_overuse": False,
}


def imaging(n: int) -> dict[str, Any]:
    fields = {"modality": "mri", "region": "brain", "finding": "normal"}
    return {"id": f"i{n}", "type": "imaging", "fields": fields}


def treatment(kind: str, **fields: Any) -> dict[str, Any]:
    return {
        "id": "t",
        "type": "treatment",
        "fields": {"kind": kind, "response": "pending", **fields},
    }


@pytest.fixture(scope="module")
def limited(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    db = tmp_path_factory.mktemp("limits") / "sessions.db"
    running = create_server(ServerConfig(**{**CONFIG.__dict__, "session_db": str(db)}))
    yield running
    running.stop(grace=0.5)


@pytest.fixture(scope="module")
def channel(limited: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{limited.port}") as channel:
        yield channel


@pytest.fixture(scope="module")
def stub(channel: grpc.Channel) -> pb_grpc.DecisionSupportServiceStub:
    return pb_grpc.DecisionSupportServiceStub(channel)


def evaluate(stub: pb_grpc.DecisionSupportServiceStub, facts: Sequence[dict[str, Any]]) -> Any:
    return list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(facts)), timeout=10))


def refusal(
    stub: pb_grpc.DecisionSupportServiceStub, facts: Sequence[dict[str, Any]]
) -> tuple[str, str, list[tuple[str, str]]]:
    """(code, reason, violations) of a refused Evaluate."""
    with pytest.raises(grpc.RpcError) as raised:
        evaluate(stub, facts)
    return (raised.value.code().name, *rich(raised.value))


def rich(error: grpc.RpcError) -> tuple[str, list[tuple[str, str]]]:
    status = rpc_status.from_call(error)
    assert status is not None, "no rich status"
    reason, violations = "", []
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            violations = [(v.field, v.description) for v in bad.field_violations]
    return reason, violations


def served(responses: Any) -> bool:
    return bool(responses) and responses[-1].WhichOneof("event") == "summary"


# ---------------------------------------------------------------- facts per request


def test_facts_per_request(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    assert served(evaluate(stub, [imaging(n) for n in range(5)]))
    code, reason, violations = refusal(stub, [imaging(n) for n in range(6)])
    assert (code, reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
    assert violations == [("facts", "at most 5 facts per request")]


def test_a_flood_of_facts_is_refused_before_conversion(
    stub: pb_grpc.DecisionSupportServiceStub, monkeypatch: pytest.MonkeyPatch
) -> None:
    """12,000 empty facts fit in 64 KiB; converting them all would cost the CPU."""
    converted: list[int] = []
    real = server.service.facts_from_proto

    def spy(facts: Any, limits: Any) -> Any:
        converted.append(len(facts))
        return real(facts, limits)

    monkeypatch.setattr(server.service, "facts_from_proto", spy)
    flood = pb.EvaluateRequest(facts=[pb.Fact(id="a")] * 12_000)
    assert flood.ByteSize() < MESSAGE_BYTES
    for call in (
        lambda: list(stub.Evaluate(flood, timeout=10)),
        lambda: stub.Explain(pb.ExplainRequest(facts=flood.facts, code="mimic.pots"), timeout=10),
    ):
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich(raised.value)[0] == "LIMIT_EXCEEDED"
    assert converted == []
    assert served(evaluate(stub, [imaging(1)]))
    assert converted == [1], "the spy sees what the service converts"


def test_a_session_batch_over_the_limit_is_cut_before_conversion(
    limited: RunningServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    converted: list[int] = []
    real = server.session_rpc.facts_from_proto

    def spy(facts: Any, limits: Any) -> Any:
        converted.append(len(facts))
        return real(facts, limits)

    monkeypatch.setattr(server.session_rpc, "facts_from_proto", spy)
    with CdsClient(f"127.0.0.1:{limited.port}", timeout=10) as cds, cds.session() as session:
        flood = [{"id": f"f{n}", "type": "imaging"} for n in range(2_000)]
        outcome = session.apply(flood).outcome
        assert isinstance(outcome, BatchRejected)
        assert outcome.reason == "LIMIT_EXCEEDED"
        assert outcome.violations == (("facts", "at most 5 facts per batch"),)
        assert converted == [6]
        assert isinstance(session.apply([imaging(n) for n in range(5)]).outcome, BatchApplied)
        cds.delete_session(session.session_id)


# ---------------------------------------------------------------- message size


def _padded(request: pb.EvaluateRequest, size: int) -> bytes:
    """`request` serialized, padded to exactly `size` bytes with an unknown field."""
    base = request.SerializeToString()
    for length in range(size - len(base), 0, -1):
        pad = bytes([(15 << 3) | 2]) + encoder._VarintBytes(length) + b"\0" * length
        if len(base) + len(pad) == size:
            return base + pad
    raise AssertionError("cannot pad to that size")


def test_message_size(channel: grpc.Channel) -> None:
    raw = channel.unary_stream(
        "/cds.v1.DecisionSupportService/Evaluate",
        request_serializer=lambda data: data,
        response_deserializer=pb.EvaluateResponse.FromString,
    )
    request = pb.EvaluateRequest(facts=to_proto_facts([imaging(1)]))
    assert served(list(raw(_padded(request, MESSAGE_BYTES), timeout=10)))
    with pytest.raises(grpc.RpcError) as raised:
        list(raw(_padded(request, MESSAGE_BYTES + 1), timeout=10))
    assert raised.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_default_message_size_is_4_mib() -> None:
    assert ServerConfig().max_message_bytes == 4 * 1024 * 1024


# ---------------------------------------------------------------- fields, strings, lists


def test_fields_per_fact(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    headache = {"id": "h", "type": "headache", "fields": FULL_HEADACHE}
    assert set(FULL_HEADACHE) == set(Headache.model_fields)  # every field of the vocabulary
    assert len(FULL_HEADACHE) == CONFIG.max_fields_per_fact
    validate_facts([FactIn("h", "headache", FULL_HEADACHE)])  # every one of them valid
    assert served(evaluate(stub, [headache]))
    over = {**headache, "fields": {**FULL_HEADACHE, "extra": True}}
    code, reason, violations = refusal(stub, [imaging(1), over])
    assert (code, reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
    assert violations == [("facts[1].fields", "more than 23 fields")]


def test_string_length(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    assert len(LONGEST_WORD) == CONFIG.max_string_length
    assert served(evaluate(stub, [treatment(LONGEST_WORD)]))
    past = LONGEST_WORD + "s"
    cases = [
        (treatment(past), "facts[0].fields.kind", "longer than 35 characters"),
        ({**treatment(LONGEST_WORD), "id": "t" * 36}, "facts[0].id", "longer than 35 characters"),
        ({"id": "x", "type": "y" * 36}, "facts[0].type", "longer than 35 characters"),
        (
            {"id": "p", "type": "patient", "fields": {"k" * 36: 1}},
            "facts[0].fields",
            "a field name is longer than 35 characters",
        ),
        (
            treatment("physical_therapy", components=["m" * 36]),
            "facts[0].fields.components[0]",
            "longer than 35 characters",
        ),
    ]
    for fact, path, description in cases:
        code, reason, violations = refusal(stub, [fact])
        assert (code, reason, violations) == (
            "INVALID_ARGUMENT",
            "LIMIT_EXCEEDED",
            [(path, description)],
        ), fact


def test_list_items(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    every = ["manual_therapy", "strengthening", "motor_control"]
    assert served(evaluate(stub, [treatment("physical_therapy", components=every)]))
    code, reason, violations = refusal(
        stub, [treatment("physical_therapy", components=[*every, "strengthening"])]
    )
    assert (code, reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
    assert violations == [("facts[0].fields.components", "more than 3 items")]


def test_nesting_depth(stub: pb_grpc.DecisionSupportServiceStub) -> None:
    """No field takes an object; anything nested past 4 levels is refused unread."""

    def nested(depth: int) -> Any:
        return True if depth == 0 else [nested(depth - 1)]

    code, reason, _ = refusal(stub, [{"id": "p", "type": "patient", "fields": {"sex": nested(3)}}])
    assert (code, reason) == ("INVALID_ARGUMENT", "FACT_INVALID"), "deep, but within the limit"
    code, reason, violations = refusal(
        stub, [{"id": "p", "type": "patient", "fields": {"sex": nested(4)}}]
    )
    assert (code, reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
    assert violations == [("facts[0].fields.sex[0][0][0]", "nested deeper than 4 levels")]


def test_values_per_request_are_bounded_together() -> None:
    from server.limits import request_violations

    limits = Limits(max_facts=2, max_fields_per_fact=3)
    fields = struct_pb2.Struct()
    fields.update({"a": 1, "b": 2, "c": 3})
    at_limit = pb.EvaluateRequest(facts=[pb.Fact(id="x", type="t", fields=fields)] * 2)
    assert request_violations(at_limit, limits) == []
    fields.update({"c": [1]})  # one value more: the list and its item
    past = pb.EvaluateRequest(facts=[pb.Fact(id="x", type="t", fields=fields)] * 2)
    assert [v.field for v in request_violations(past, limits)] == ["facts"]


def test_limits_must_be_positive() -> None:
    for name in ("max_facts", "max_string_length", "max_fields_per_fact", "max_list_items"):
        with pytest.raises(ValueError, match=name):
            Limits(**{name: 0})


def test_command_line_refuses_a_zero_limit() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "server", "--port", "0", "--max-string-length", "0"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert done.returncode == 2 and "max_string_length must be at least 1" in done.stderr


# ---------------------------------------------------------------- sessions


def test_a_session_batch_past_a_limit_ends_the_stream_and_changes_nothing(
    limited: RunningServer, stub: pb_grpc.DecisionSupportServiceStub
) -> None:
    with CdsClient(f"127.0.0.1:{limited.port}", timeout=10) as cds:
        with cds.session() as session:
            assert session.apply([imaging(1)]).applied
            session_id = session.session_id
            with pytest.raises(CdsError) as raised:
                session.apply([treatment(LONGEST_WORD + "s")])
            assert (raised.value.code, raised.value.reason) == (
                "INVALID_ARGUMENT",
                "LIMIT_EXCEEDED",
            )
            assert raised.value.violations == (
                ("facts[0].fields.kind", "longer than 35 characters"),
            )
        with cds.session(session_id) as resumed:
            assert resumed.version == 1
            assert resumed.apply([treatment(LONGEST_WORD)]).applied  # at the limit
        cds.delete_session(session_id)


def test_open_session_streams_per_worker(limited: RunningServer) -> None:
    with CdsClient(f"127.0.0.1:{limited.port}", timeout=10) as cds:
        with cds.session() as first, cds.session():
            with pytest.raises(CdsError) as raised:
                cds.session()
            assert (raised.value.code, raised.value.reason) == (
                "RESOURCE_EXHAUSTED",
                "SESSION_STREAMS_EXHAUSTED",
            )
            session_id = first.session_id
        cds.delete_session(session_id)


def test_undecodable_requests_are_invalid_argument(channel: grpc.Channel) -> None:
    """gRPC itself would answer INTERNAL ("Exception deserializing request!")."""
    raw_evaluate = channel.unary_stream(
        "/cds.v1.DecisionSupportService/Evaluate",
        request_serializer=lambda data: data,
        response_deserializer=pb.EvaluateResponse.FromString,
    )
    raw_session = channel.stream_stream(
        "/cds.v1.DecisionSupportService/StreamSession",
        request_serializer=lambda data: data,
        response_deserializer=pb.StreamSessionResponse.FromString,
    )
    bad_utf8 = b"\x0a\x06\x0a\x04\xff\xfe\xfd\xfc"  # facts[0].id: not UTF-8
    opening = pb.StreamSessionRequest(open=pb.OpenSession()).SerializeToString()
    requests: queue.SimpleQueue[bytes | None] = queue.SimpleQueue()
    for message in (opening, b"\xff\xff\xff", None):
        requests.put(message)
    calls = [
        lambda: list(raw_evaluate(b"\xff\xff\xff\xff", timeout=5)),
        lambda: list(raw_evaluate(bad_utf8, timeout=5)),
        lambda: list(raw_session(iter(requests.get, None), timeout=5)),
    ]
    for call in calls:
        with pytest.raises(grpc.RpcError) as raised:
            call()
        assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert rich(raised.value)[0] == "MALFORMED_REQUEST"


# The fast check that admits the common request must agree with the walk that
# names violations: whatever the walk would report, the fast check must doubt.
_SMALL = Limits(
    max_facts=3, max_string_length=4, max_fields_per_fact=3, max_list_items=3, max_depth=3
)
_json_values = st.recursive(
    st.none() | st.booleans() | st.floats(allow_nan=False) | st.text(max_size=6),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=6), children, max_size=4)
    ),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.text(max_size=6),
            st.text(max_size=6),
            st.dictionaries(st.text(max_size=6), _json_values, max_size=4),
        ),
        max_size=4,
    )
)
def test_the_converting_walk_agrees_with_the_violation_walk(facts: list) -> None:
    """One walk converts and checks (server.convert): it refuses exactly what
    the path-naming walk finds, with the same violations, and converts the
    rest as protobuf's own JSON mapping does."""
    request = pb.EvaluateRequest(
        facts=[
            pb.Fact(id=fact_id, type=fact_type, fields=_struct(fields))
            for fact_id, fact_type, fields in facts
        ]
    )
    violations = fact_violations(request.facts, _SMALL)
    try:
        converted = facts_from_proto(request.facts, _SMALL)
    except LimitExceeded as error:
        assert violations
        assert error.violations == tuple(violations)
    else:
        assert violations == []
        assert converted == [
            FactIn(fact.id, fact.type, json_format.MessageToDict(fact.fields))
            for fact in request.facts
        ]


def _struct(fields: dict) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct
