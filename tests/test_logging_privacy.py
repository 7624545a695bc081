"""Structured logs with a correlation id per call, and no health data in logs or statuses.

Facts carry sentinel values — valid ones (numbers only a patient would have)
and invalid ones (strings, list items, nested values, an unknown type, an
undecodable message, a string past the length limit) — through Evaluate,
Explain and sessions, and through failures (an engine that raises with the
facts in its message, a servicer bug). Everything the server logs, at DEBUG,
and every status it sends back, is searched for them.

Field paths and fact ids may appear (the spec allows them), so sentinels are
put in values only; session ids must not appear in full.
"""

from __future__ import annotations

import io
import json
import logging
import time
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from grpc_status import rpc_status

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import CdsClient, CdsError
from kb.engine import RulesEngine
from server.app import RunningServer, ServerConfig, create_server
from server.engine import EngineWorker
from server.logs import CallInfo, JsonFormatter, _CallFilter, configure_logging, correlation_id
from server.service import DecisionSupportService
from tests.conftest import to_proto_facts
from tests.patients import NEGATIVE_SCREEN

TEXT = "SENTINEL-7f3a9c"  # in strings
HOURS = 713.4567  # a valid attack duration
PERCENT = 43.21987  # a valid improvement lying down
WEEKS = 417.3141  # valid weeks of treatment
NUMBERS = ("713.4567", "43.21987", "417.3141", "98765.4321")
SENTINELS = (TEXT, *NUMBERS)

VALID = [
    {"id": "p", "type": "patient", "fields": {"age_years": 35, "sex": "female"}},
    {
        "id": "h",
        "type": "headache",
        "fields": {
            "laterality": "unilateral",
            "side_locked": True,
            "starts_in_neck": True,
            "radiates_oculo_fronto_temporal": True,
            "provoked_by_occipital_pressure": True,
            "attack_duration_hours": HOURS,
            "improvement_lying_down_pct": PERCENT,
            "improvement_lying_down_within_hours": 2,
            "onset": "gradual",
        },
    },
    {
        "id": "x",
        "type": "cervical_exam",
        "fields": {
            "rom_reduced": True,
            "myofascial_sensitivity": True,
            "suboccipital_tenderness": True,
        },
    },
    {
        "id": "t",
        "type": "treatment",
        "fields": {"kind": "physical_therapy", "weeks": WEEKS, "response": "inadequate"},
    },
    NEGATIVE_SCREEN,  # complete, so the treatment steps fire too
]
INVALID = [
    {"id": "p", "type": "patient", "fields": {"age_years": 98765.4321, "sex": TEXT}},
    {"id": "h", "type": "headache", "fields": {"onset": TEXT, "intensity": [TEXT, {"a": TEXT}]}},
    {"id": "t", "type": "treatment", "fields": {"kind": TEXT, "components": [TEXT, TEXT]}},
    {"id": "u", "type": TEXT, "fields": {"weeks": 98765.4321}},
]


class Captured:
    """Every log record of the process, formatted as the server formats it."""

    def __init__(self) -> None:
        self.stream = io.StringIO()
        self.handler = logging.StreamHandler(self.stream)
        self.handler.setFormatter(JsonFormatter())
        self.handler.addFilter(_CallFilter())

    @property
    def text(self) -> str:
        return self.stream.getvalue()

    def entries(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.text.splitlines() if line.strip()]

    def finished(self, at_least: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """The end-of-call lines, once there are `at_least` (or `timeout` passed):
        grpc.aio sends an abort's status as it is raised, and the line is written
        a moment later, once the exception has left the handler."""
        deadline = time.monotonic() + timeout
        while True:
            lines = [e for e in self.entries() if e["message"] == "call finished"]
            if len(lines) >= at_least or time.monotonic() > deadline:
                return lines
            time.sleep(0.01)


@pytest.fixture
def captured() -> Iterator[Captured]:
    capture = Captured()
    root = logging.getLogger()
    level = root.level
    root.addHandler(capture.handler)
    root.setLevel(logging.DEBUG)
    try:
        yield capture
    finally:
        root.removeHandler(capture.handler)
        root.setLevel(level)


def status_text(error: grpc.RpcError) -> bytes:
    """Everything a status carries: code, message and rich details, serialized."""
    status = rpc_status.from_call(error)
    message = (error.details() or "").encode()
    return message + (status.SerializeToString() if status is not None else b"")


def assert_clean(*texts: str | bytes) -> None:
    for text in texts:
        data = text.encode() if isinstance(text, str) else text
        for sentinel in SENTINELS:
            assert sentinel.encode() not in data, f"{sentinel} leaked"


def test_no_fact_value_reaches_logs_or_statuses(
    channel: grpc.Channel, stub: pb_grpc.DecisionSupportServiceStub, captured: Captured
) -> None:
    statuses: list[bytes] = []
    answers = list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(VALID)), timeout=10))
    assert answers[-1].WhichOneof("event") == "summary"
    stub.Explain(
        pb.ExplainRequest(facts=to_proto_facts(VALID), code="step.adjunct_exercise"), timeout=10
    )
    for facts in ([fact] for fact in INVALID):
        for call in (
            lambda f=facts: list(stub.Evaluate(pb.EvaluateRequest(facts=f), timeout=10)),
            lambda f=facts: stub.Explain(pb.ExplainRequest(facts=f, code="mimic.pots"), timeout=10),
        ):
            with pytest.raises(grpc.RpcError) as raised:
                call(to_proto_facts(facts))
            assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
            statuses.append(status_text(raised.value))
    # Past the string limit, and not even decodable.
    long = [{"id": "h", "type": "headache", "fields": {"onset": TEXT * 200}}]
    with pytest.raises(grpc.RpcError) as raised:
        list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(long)), timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    statuses.append(status_text(raised.value))
    raw = channel.unary_stream("/cds.v1.DecisionSupportService/Evaluate")
    garbage = b"\x0a\x20\x0a\x1e" + TEXT.encode() + b"\xff\xfe" + b"x" * 13
    with pytest.raises(grpc.RpcError) as raised:
        list(raw(garbage, timeout=10))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    statuses.append(status_text(raised.value))
    assert_clean(captured.text, *statuses)
    assert len(captured.finished(2 + 2 * len(INVALID) + 2)) >= 2 + 2 * len(INVALID) + 2


def test_sessions_log_neither_contents_nor_ids(running_server: RunningServer) -> None:
    capture = Captured()
    logging.getLogger().addHandler(capture.handler)
    level = logging.getLogger().level
    logging.getLogger().setLevel(logging.DEBUG)
    try:
        with CdsClient(f"127.0.0.1:{running_server.port}", timeout=10) as cds:
            with cds.session() as session:
                assert session.apply(VALID).applied
                rejected = session.apply(INVALID[:3], retract=[TEXT])
                assert not rejected.applied
                session_id = session.session_id
            with cds.session(session_id) as resumed:
                assert len(resumed.conclusions) > 0
            cds.delete_session(session_id)
            with pytest.raises(CdsError) as raised:
                cds.delete_session(session_id)
            assert_clean(str(raised.value), repr(rejected.outcome))
    finally:
        logging.getLogger().removeHandler(capture.handler)
        logging.getLogger().setLevel(level)
    assert_clean(capture.text)
    assert session_id not in capture.text
    assert "session" in capture.text, "the session's events were logged (by a short tag)"


class _LeakyEngine(RulesEngine):
    """Fails with the facts themselves in the exception's message."""

    def stages(self, facts: Any, *args: Any, **kwargs: Any) -> Any:
        raise RuntimeError(f"rule action failed on {facts!r}")
        yield  # a generator, as RulesEngine.stages is


def test_failures_are_internal_with_a_correlation_id_and_no_values(
    captured: Captured, monkeypatch: pytest.MonkeyPatch
) -> None:
    # A bug in the servicer itself, caught by the call context (server.logs; the
    # servicer's methods are bound when the server is built: patch before).
    def broken(self: Any, request: Any, context: Any) -> Any:
        raise ValueError(f"cannot handle {TEXT}")

    monkeypatch.setattr(DecisionSupportService, "GetKnowledgeBase", broken)
    running = create_server(ServerConfig(port=0), worker=EngineWorker(_LeakyEngine))
    try:
        with grpc.insecure_channel(f"127.0.0.1:{running.port}") as channel:
            stub = pb_grpc.DecisionSupportServiceStub(channel)
            with pytest.raises(grpc.RpcError) as raised:
                list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(VALID)), timeout=10))
            assert raised.value.code() == grpc.StatusCode.INTERNAL
            engine_status = status_text(raised.value)
            engine_id = raised.value.details().rsplit(" ", 1)[-1].rstrip(")")
            with pytest.raises(grpc.RpcError) as raised:
                stub.GetKnowledgeBase(pb.GetKnowledgeBaseRequest(), timeout=10)
            assert raised.value.code() == grpc.StatusCode.INTERNAL  # not UNKNOWN
            bug_status = status_text(raised.value)
            bug_id = raised.value.details().rsplit(" ", 1)[-1].rstrip(")")
            # The server is still serving other calls.
            with pytest.raises(grpc.RpcError) as raised:
                stub.DeleteSession(pb.DeleteSessionRequest(session_id="n" * 32), timeout=10)
            assert raised.value.code() == grpc.StatusCode.NOT_FOUND
    finally:
        running.stop(grace=0.5)
    assert_clean(captured.text, engine_status, bug_status)
    entries = captured.entries()
    for cid, method in ((engine_id, "Evaluate"), (bug_id, "GetKnowledgeBase")):
        assert len(cid) == 32
        mine = [e for e in entries if e.get("correlation_id") == cid]
        assert {e["level"] for e in mine} >= {"ERROR"}, "the failure is logged under the call's id"
        assert all(e["method"].endswith(method) for e in mine)
        assert any(e["message"] == "call finished" and e["code"] == "INTERNAL" for e in mine)
        assert any(cid in e["message"] for e in mine if e["level"] == "ERROR")


def test_every_call_has_its_own_correlation_id(
    stub: pb_grpc.DecisionSupportServiceStub, captured: Captured
) -> None:
    for _ in range(3):
        with pytest.raises(grpc.RpcError):
            list(stub.Evaluate(pb.EvaluateRequest(facts=to_proto_facts(INVALID[:1])), timeout=10))
    finished = [e for e in captured.finished(3) if e["logger"].startswith("server.")]
    entries = [e for e in captured.entries() if e["logger"].startswith("server.")]
    rejected = [e for e in entries if "rejected" in e["message"]]
    assert len(rejected) == len(finished) == 3
    ids = [e["correlation_id"] for e in rejected]
    assert len(set(ids)) == 3
    assert ids == [e["correlation_id"] for e in finished], "one id per call, on each of its lines"
    assert all(e["code"] == "INVALID_ARGUMENT" and e["duration_ms"] >= 0 for e in finished)
    assert all(
        e["method"] == "/cds.v1.DecisionSupportService/Evaluate" for e in rejected + finished
    )


def test_json_formatter_never_renders_an_exception_message() -> None:
    stream = io.StringIO()
    logger = logging.getLogger("tests.privacy.formatter")
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    configure_logging("INFO", "json", stream)
    try:
        try:
            raise ValueError(f"value {TEXT}")
        except ValueError:
            logger.exception("something failed")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    (entry,) = [json.loads(line) for line in stream.getvalue().splitlines()]
    assert entry["error"] == "ValueError" and "test_json_formatter" in entry["stack"]
    assert entry["message"] == "something failed" and "correlation_id" not in entry
    assert_clean(stream.getvalue())


def test_correlation_id_outside_a_call_is_fresh() -> None:
    first, second = correlation_id(), correlation_id()
    assert first != second and len(first) == 32
    assert isinstance(CallInfo(first, "/x"), CallInfo)
