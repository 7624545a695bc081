"""The client's own seams, without the real server.

Covers facts -> proto conversion, rich status -> CdsError, FILE.json loading,
and (with a scripted in-process servicer) that every call carries a deadline,
that events stream in order and that the CLI's exit codes hold. End-to-end
tests against the real server live elsewhere.
"""

from __future__ import annotations

import io
import json
import socket
from collections.abc import Iterator
from concurrent import futures
from pathlib import Path
from typing import Any

import grpc
import pytest
from google.protobuf import any_pb2, json_format
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

import client
from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client import cli
from client.api import (
    CdsClient,
    CdsError,
    CdsUnavailable,
    Conclusion,
    Summary,
    conclusion_from_proto,
    error_from_rpc,
    fact_to_proto,
)

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"
DETAILS_KEY = "grpc-status-details-bin"


# ---------------------------------------------------------------- public surface


def test_public_surface_is_small() -> None:
    assert sorted(client.__all__) == [
        "CdsClient",
        "CdsError",
        "CdsUnavailable",
        "Conclusion",
        "Summary",
    ]


# ---------------------------------------------------------------- facts -> proto


def test_fact_to_proto_carries_id_type_and_fields() -> None:
    fact = fact_to_proto(
        {
            "id": "vitals",
            "type": "orthostatic_vitals",
            "fields": {"supine_hr_bpm": 62, "flag": True, "parts": ["a", "b"], "gone": None},
        }
    )
    assert fact.id == "vitals"
    assert fact.type == "orthostatic_vitals"
    fields = json_format.MessageToDict(fact.fields)
    # Struct carries every number as a double; the server accepts 62.0 as 62.
    assert fields == {"supine_hr_bpm": 62.0, "flag": True, "parts": ["a", "b"], "gone": None}
    assert fact.fields.fields["flag"].WhichOneof("kind") == "bool_value"


@pytest.mark.parametrize("fields", [None, {}])
def test_fact_to_proto_without_fields_sends_an_empty_struct(fields: Any) -> None:
    raw: dict[str, Any] = {"id": "p", "type": "patient"}
    if fields is not None:
        raw["fields"] = fields
    assert len(fact_to_proto(raw).fields.fields) == 0


@pytest.mark.parametrize(
    ("raw", "where"),
    [
        (["not", "a", "mapping"], "facts[3]"),
        ({"type": "patient"}, "facts[3].id"),
        ({"id": "p", "type": 7}, "facts[3].type"),
        ({"id": "p", "type": "patient", "fields": [1, 2]}, "facts[3].fields"),
        ({"id": "p", "type": "patient", "field": {}}, "facts[3]: unknown key"),
        ({"id": "p", "type": "patient", "fields": {"x": b"secret-bytes"}}, "facts[3].fields"),
        ({"id": "p", "type": "patient", "fields": {"x": {1: "a"}}}, "facts[3].fields"),
    ],
)
def test_fact_to_proto_rejects_what_cannot_go_on_the_wire(raw: Any, where: str) -> None:
    with pytest.raises(ValueError, match=r"^" + where.replace("[", r"\[").replace("]", r"\]")):
        fact_to_proto(raw, index=3)


def test_fact_to_proto_error_never_echoes_the_value() -> None:
    with pytest.raises(ValueError) as caught:
        fact_to_proto({"id": "p", "type": "patient", "fields": {"x": b"secret-bytes"}})
    assert "secret" not in str(caught.value)


def test_evaluate_rejects_a_bad_fact_before_any_call() -> None:
    # Nothing listens on the port: a ValueError (not CdsUnavailable) proves no call was made.
    with (
        CdsClient(f"127.0.0.1:{_closed_port()}") as cds,
        pytest.raises(ValueError, match=r"facts\[1\]\.id"),
    ):
        cds.evaluate([{"id": "a", "type": "patient"}, {"type": "patient"}])


def test_client_refuses_a_call_without_deadline() -> None:
    with pytest.raises(ValueError, match="deadline"):
        CdsClient(timeout=0)


# ---------------------------------------------------------------- proto -> dataclasses


def test_conclusion_from_proto_flattens_provenance_and_shortens_enums() -> None:
    message = pb.Conclusion(
        code="caution.manipulation_contraindicated",
        kind=pb.CONCLUSION_KIND_CAUTION,
        urgency=pb.URGENCY_EMERGENT,
        title="No cervical manipulation",
        detail="Dissection suspected.",
        provenance=pb.Provenance(
            rule_id="CAU-01",
            ruleset="cautions",
            fact_ids=["headache", "red-flags"],
            derived_from=["mimic.cervical_artery_dissection"],
            citation_ids=["BILLER2014"],
            evidence_note="consensus",
            certainty="consensus",
        ),
    )
    assert conclusion_from_proto(message) == Conclusion(
        code="caution.manipulation_contraindicated",
        kind="CAUTION",
        urgency="EMERGENT",
        title="No cervical manipulation",
        detail="Dissection suspected.",
        rule_id="CAU-01",
        ruleset="cautions",
        fact_ids=("headache", "red-flags"),
        derived_from=("mimic.cervical_artery_dissection",),
        citation_ids=("BILLER2014",),
        evidence_note="consensus",
        certainty="consensus",
    )


def test_enum_value_newer_than_the_stubs_stays_readable() -> None:
    conclusion = conclusion_from_proto(pb.Conclusion(code="x", kind=42, urgency=9))
    assert (conclusion.kind, conclusion.urgency) == ("KIND_42", "URGENCY_9")


# ---------------------------------------------------------------- rich status -> CdsError


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a failed call raises: an RpcError that is also the Call, with trailers."""

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        trailing: tuple[tuple[str, bytes], ...] | None = (),
    ) -> None:
        self._code, self._details, self._trailing = code, details, trailing

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def trailing_metadata(self) -> Any:
        return self._trailing

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float | None:
        return None

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Any) -> bool:
        return False


def _rich_status(code: int, message: str, reason: str, violations: list[tuple[str, str]]) -> Any:
    bad_request = error_details_pb2.BadRequest(
        field_violations=[
            error_details_pb2.BadRequest.FieldViolation(field=f, description=d)
            for f, d in violations
        ]
    )
    info = error_details_pb2.ErrorInfo(reason=reason, domain="cds.v1")
    details = []
    for detail in (bad_request, info):
        packed = any_pb2.Any()
        packed.Pack(detail)
        details.append(packed)
    return status_pb2.Status(code=code, message=message, details=details)


def test_error_from_rpc_unpacks_bad_request_and_error_info() -> None:
    status = _rich_status(
        code_pb2.INVALID_ARGUMENT,
        "request rejected",
        "FACT_INVALID",
        [
            ("facts[2].fields.standing_hr_bpm", "required field is missing"),
            ("facts[0].type", "unknown fact type"),
        ],
    )
    error = error_from_rpc(
        FakeRpcError(
            grpc.StatusCode.INVALID_ARGUMENT,
            "request rejected",
            ((DETAILS_KEY, status.SerializeToString()),),
        )
    )
    assert type(error) is CdsError
    assert error.code == "INVALID_ARGUMENT"
    assert error.message == "request rejected"
    assert error.reason == "FACT_INVALID"
    assert error.violations == (
        ("facts[2].fields.standing_hr_bpm", "required field is missing"),
        ("facts[0].type", "unknown fact type"),
    )
    assert str(error).splitlines() == [
        "INVALID_ARGUMENT: request rejected (reason: FACT_INVALID)",
        "  facts[2].fields.standing_hr_bpm: required field is missing",
        "  facts[0].type: unknown fact type",
    ]


def test_error_without_rich_details_keeps_code_and_message() -> None:
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, "too big", None))
    assert (error.code, error.message, error.reason, error.violations) == (
        "RESOURCE_EXHAUSTED",
        "too big",
        None,
        (),
    )
    assert str(error) == "RESOURCE_EXHAUSTED: too big"


def test_inconsistent_rich_status_does_not_hide_the_error() -> None:
    # grpc_status refuses details whose code differs from the call's own.
    status = _rich_status(code_pb2.NOT_FOUND, "other", "SESSION_NOT_FOUND", [])
    error = error_from_rpc(
        FakeRpcError(
            grpc.StatusCode.INTERNAL, "engine failed", ((DETAILS_KEY, status.SerializeToString()),)
        )
    )
    assert (error.code, error.message, error.reason) == ("INTERNAL", "engine failed", None)


def test_unavailable_becomes_cds_unavailable() -> None:
    error = error_from_rpc(FakeRpcError(grpc.StatusCode.UNAVAILABLE, "connection refused"))
    assert isinstance(error, CdsUnavailable)
    assert isinstance(error, CdsError)


# ---------------------------------------------------------------- FILE.json loading


def _write(tmp_path: Path, content: str | bytes) -> Path:
    path = tmp_path / "patient.json"
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ('{"facts": [', "invalid JSON at line 1"),
        ("[]", 'expected an object with a "facts" list'),
        ("{}", 'expected "facts" to be a list'),
        ('{"facts": {"id": "p"}}', 'expected "facts" to be a list'),
        ('{"facts": [42]}', r"facts\[0\] must be an object"),
        ('{"description": 5, "facts": []}', '"description" must be a string'),
        (b"\xff\xfe{}", "not UTF-8"),
    ],
)
def test_load_facts_file_names_the_problem(
    tmp_path: Path, content: str | bytes, message: str
) -> None:
    path = _write(tmp_path, content)
    with pytest.raises(cli.InputFileError, match=message) as caught:
        cli.load_facts_file(path)
    assert str(caught.value).startswith(str(path))


def test_load_facts_file_missing_file(tmp_path: Path) -> None:
    with pytest.raises(cli.InputFileError, match="cannot read"):
        cli.load_facts_file(tmp_path / "absent.json")


def test_load_facts_file_reads_description_and_facts(tmp_path: Path) -> None:
    path = _write(
        tmp_path, '{"description": "a patient", "facts": [{"id": "p", "type": "patient"}]}'
    )
    loaded = cli.load_facts_file(path)
    assert loaded.description == "a patient"
    assert loaded.facts == [{"id": "p", "type": "patient"}]


def test_cli_bad_file_exits_1_without_calling_the_server(tmp_path: Path) -> None:
    path = _write(tmp_path, '{"facts": [{"id": 1, "type": "patient"}]}')
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{_closed_port()}"
    status = cli.main(["--target", target, "evaluate", str(path)], stdout=out, stderr=err)
    assert status == cli.EXIT_BAD_INPUT
    assert out.getvalue() == ""
    assert "facts[0].id: must be a string" in err.getvalue()


def test_cli_unreachable_server_exits_3_with_one_line() -> None:
    out, err = io.StringIO(), io.StringIO()
    target = f"127.0.0.1:{_closed_port()}"
    status = cli.main(["--target", target, "--timeout", "5", "kb"], stdout=out, stderr=err)
    assert status == cli.EXIT_UNREACHABLE
    assert err.getvalue().startswith(f"error: cannot reach the service at {target}")
    assert err.getvalue().count("\n") == 1


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.json")), ids=lambda p: p.name)
def test_examples_are_well_formed(path: Path) -> None:
    loaded = cli.load_facts_file(path)
    assert loaded.description
    ids = [fact["id"] for fact in loaded.facts]
    assert len(ids) == len(set(ids))
    for index, fact in enumerate(loaded.facts):
        fact_to_proto(fact, index)


# ---------------------------------------------------------------- scripted servicer


def _conclusion(code: str, kind: int, urgency: int) -> pb.EvaluateResponse:
    return pb.EvaluateResponse(
        conclusion=pb.Conclusion(
            code=code,
            kind=kind,
            urgency=urgency,
            title=code,
            detail="detail",
            provenance=pb.Provenance(rule_id="R-1", ruleset="set", fact_ids=["h"]),
        )
    )


class ScriptedServicer(pb_grpc.DecisionSupportServiceServicer):
    """Answers from a script and records the deadline each call arrived with."""

    def __init__(self) -> None:
        self.time_remaining: list[float | None] = []

    def Evaluate(
        self, request: pb.EvaluateRequest, context: grpc.ServicerContext
    ) -> Iterator[pb.EvaluateResponse]:
        self.time_remaining.append(context.time_remaining())
        if any(fact.type == "reject" for fact in request.facts):
            status = _rich_status(
                code_pb2.INVALID_ARGUMENT,
                "request rejected",
                "FACT_INVALID",
                [("facts[0].type", "unknown fact type")],
            )
            context.abort_with_status(rpc_status.to_status(status))
        yield _conclusion(
            "mimic.cervical_artery_dissection",
            pb.CONCLUSION_KIND_MIMIC_SUSPECTED,
            pb.URGENCY_EMERGENT,
        )
        yield _conclusion(
            "caution.manipulation_contraindicated", pb.CONCLUSION_KIND_CAUTION, pb.URGENCY_EMERGENT
        )
        yield pb.EvaluateResponse(
            summary=pb.EvaluationSummary(
                conclusion_count=2, rules_fired=2, knowledge_base_version="test"
            )
        )

    def GetKnowledgeBase(
        self, request: pb.GetKnowledgeBaseRequest, context: grpc.ServicerContext
    ) -> pb.GetKnowledgeBaseResponse:
        self.time_remaining.append(context.time_remaining())
        return pb.GetKnowledgeBaseResponse(
            version="test", rulesets=[pb.Ruleset(name="mimics", rules=[pb.Rule(id="MIM-05")])]
        )


@pytest.fixture(scope="module")
def scripted() -> Iterator[tuple[str, ScriptedServicer]]:
    servicer = ScriptedServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    pb_grpc.add_DecisionSupportServiceServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(grace=None).wait()


def test_every_call_carries_the_deadline(scripted: tuple[str, ScriptedServicer]) -> None:
    target, servicer = scripted
    servicer.time_remaining.clear()
    with CdsClient(target, timeout=7.0) as cds:
        list(cds.evaluate([{"id": "h", "type": "headache"}]))
        cds.knowledge_base(timeout=3.0)
    evaluate_left, kb_left = servicer.time_remaining
    # Without a deadline the server would see None or an effectively infinite time;
    # the slack covers gRPC rounding the deadline up on the wire.
    assert evaluate_left is not None and 0 < evaluate_left <= 7.5
    assert kb_left is not None and 0 < kb_left <= 3.5


def test_evaluate_yields_conclusions_then_summary(scripted: tuple[str, ScriptedServicer]) -> None:
    target, _ = scripted
    with CdsClient(target) as cds:
        events = list(cds.evaluate([{"id": "h", "type": "headache", "fields": {}}]))
    assert [type(e) for e in events] == [Conclusion, Conclusion, Summary]
    assert events[0].code == "mimic.cervical_artery_dissection"  # type: ignore[union-attr]
    assert events[0].urgency == "EMERGENT"  # type: ignore[union-attr]
    assert events[-1] == Summary(2, 2, "test")


def test_evaluate_raises_cds_error_from_the_rich_status(
    scripted: tuple[str, ScriptedServicer],
) -> None:
    target, _ = scripted
    with CdsClient(target) as cds, pytest.raises(CdsError) as caught:
        list(cds.evaluate([{"id": "x", "type": "reject"}]))
    assert caught.value.reason == "FACT_INVALID"
    assert caught.value.violations == (("facts[0].type", "unknown fact type"),)


def test_cli_json_lines(scripted: tuple[str, ScriptedServicer], tmp_path: Path) -> None:
    target, _ = scripted
    path = _write(tmp_path, '{"facts": [{"id": "h", "type": "headache"}]}')
    out = io.StringIO()
    assert cli.main(["--target", target, "evaluate", str(path), "--json"], stdout=out) == 0
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    assert [line["event"] for line in lines] == ["conclusion", "conclusion", "summary"]
    assert lines[0]["fact_ids"] == ["h"]
    assert lines[-1]["knowledge_base_version"] == "test"


def test_cli_human_output(scripted: tuple[str, ScriptedServicer], tmp_path: Path) -> None:
    target, _ = scripted
    path = _write(
        tmp_path, '{"description": "A patient", "facts": [{"id": "h", "type": "headache"}]}'
    )
    out = io.StringIO()
    assert cli.main(["--target", target, "evaluate", str(path)], stdout=out) == 0
    text = out.getvalue()
    assert text.startswith("A patient\n")
    assert "[MIMIC SUSPECTED] EMERGENT  mimic.cervical_artery_dissection" in text
    assert "why: rule R-1 (set); facts read: h" in text
    assert "\033[" not in text  # not a terminal, no --color
    assert "By kind:" in text


def test_cli_color_only_on_request(scripted: tuple[str, ScriptedServicer], tmp_path: Path) -> None:
    target, _ = scripted
    path = _write(tmp_path, '{"facts": [{"id": "h", "type": "headache"}]}')
    out = io.StringIO()
    assert cli.main(["--target", target, "evaluate", str(path), "--color"], stdout=out) == 0
    assert "\033[1;31mEMERGENT\033[0m" in out.getvalue()


def test_cli_rejection_exits_2(scripted: tuple[str, ScriptedServicer], tmp_path: Path) -> None:
    target, _ = scripted
    path = _write(tmp_path, '{"facts": [{"id": "x", "type": "reject"}]}')
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(["--target", target, "evaluate", str(path)], stdout=out, stderr=err)
    assert status == cli.EXIT_REJECTED
    assert "  facts[0].type: unknown fact type" in err.getvalue()


def test_cli_kb_json_is_the_full_response(scripted: tuple[str, ScriptedServicer]) -> None:
    target, _ = scripted
    out = io.StringIO()
    assert cli.main(["--target", target, "kb", "--json"], stdout=out) == 0
    assert json.loads(out.getvalue()) == {
        "version": "test",
        "rulesets": [{"name": "mimics", "rules": [{"id": "MIM-05"}]}],
    }


# ---------------------------------------------------------------- helpers


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, read, released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
