"""Fuzzing the running server: valid, near-valid and hostile facts, and raw garbage.

Facts are generated from the published JSON Schemas (`GetKnowledgeBase`'s
`fact_schemas`), so the whole vocabulary is covered and new fields are picked
up by themselves. Three families:

- valid: every field within its schema (cross-field rules may still fail);
- near-valid: a valid fact with one thing wrong — a value of the wrong type,
  NaN, ±infinity, out of range, fractional where an integer is due, a missing
  required field, an unknown field, a bad or duplicate id, another type;
- hostile: any JSON the wire can carry — unicode, deep nesting, long strings,
  many fields, thousands of facts.

The oracle is a model of the server built from its own parts, in-process:
the request limits (`server.limits`), then validation (`kb.facts`), then the
engine. Every answer must be exactly the model's — the same conclusions, or
`INVALID_ARGUMENT` with the same reason and field paths, or
`RESOURCE_EXHAUSTED` past the message size — never `UNKNOWN`, `INTERNAL` or a
deadline (every call has one); and health must stay SERVING throughout.
Raw bytes and truncated HTTP/2 frames on plain sockets must not disturb it.

Run with `--hypothesis-show-statistics` to see how many cases each test ran.
"""

from __future__ import annotations

import math
import socket
import struct
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2
from google.rpc import error_details_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_status import rpc_status
from hypothesis import HealthCheck, currently_in_test_context, given, settings
from hypothesis import event as hypothesis_event
from hypothesis import strategies as st

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from client.api import CdsClient, CdsError, Conclusion
from kb.catalogue import CATALOGUE
from kb.engine import RulesEngine
from kb.facts import FACT_TYPES, InvalidFacts, fact_schemas, validate_facts
from server.app import RunningServer, ServerConfig
from server.convert import conclusion_to_proto, facts_from_proto
from server.limits import request_violations

SCHEMAS = fact_schemas()
CONFIG = ServerConfig()  # what the shared `running_server` runs with
LIMITS = CONFIG.limits()
CODES = sorted(CATALOGUE)
FUZZ = settings(
    max_examples=120,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)


# ---------------------------------------------------------------- strategies


def _valid_value(schema: dict[str, Any]) -> st.SearchStrategy[Any]:
    """Values the schema accepts (JSON Schema, the subset pydantic publishes for facts)."""
    if "anyOf" in schema:
        options = [option for option in schema["anyOf"] if option.get("type") != "null"]
        return st.one_of(*map(_valid_value, options))
    if "enum" in schema:
        return st.sampled_from(schema["enum"])
    kind = schema.get("type")
    if kind == "boolean":
        return st.booleans()
    if kind == "integer":
        low, high = schema.get("minimum", 0), schema.get("maximum", 2**53 - 1)
        # Mostly small, sometimes the extremes.
        return st.one_of(st.integers(low, min(high, low + 500)), st.sampled_from([low, high]))
    if kind == "number":
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        return st.floats(
            min_value=low,
            max_value=schema.get("maximum"),
            exclude_min="exclusiveMinimum" in schema,
            allow_nan=False,
            allow_infinity=False,
        )
    if kind == "array":
        return st.lists(_valid_value(schema["items"]), max_size=3)
    raise AssertionError(f"schema construct not covered by the fuzzer: {schema}")


def _valid_fields(fact_type: str) -> st.SearchStrategy[dict[str, Any]]:
    schema = SCHEMAS[fact_type]
    required = set(schema.get("required", ()))
    properties = schema["properties"]
    return st.fixed_dictionaries(
        {name: _valid_value(properties[name]) for name in required},
        optional={name: _valid_value(p) for name, p in properties.items() if name not in required},
    )


TYPES = sorted(SCHEMAS)
SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.floats(),  # NaN and infinities included
    st.integers(-(2**63), 2**63),
    st.text(max_size=40),
    st.sampled_from(
        ["", " ", "\x00", "\u202e", "🦴", "\uff4d\uff52\uff49", "MRI", "true", "1e400"]
    ),
)
JSON = st.recursive(
    SCALARS,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=25,
)
ODD_IDS = st.one_of(
    st.just(""),
    st.text(max_size=70),
    st.sampled_from(["a b", "x" * 64, "x" * 65, "é", "id\n", "../p", "f0"]),
)


def _fact(fact_type: str, fields: dict[str, Any]) -> dict[str, Any]:
    return {"id": "", "type": fact_type, "fields": fields}


VALID_FACT = st.sampled_from(TYPES).flatmap(
    lambda t: _valid_fields(t).map(lambda fields: _fact(t, fields))
)


@st.composite
def _near_valid_fact(draw: st.DrawFn) -> dict[str, Any]:
    fact = draw(VALID_FACT)
    fields = dict(fact["fields"])
    properties = SCHEMAS[fact["type"]]["properties"]
    mutation = draw(st.sampled_from(["value", "drop", "unknown", "type", "id", "null", "special"]))
    event(f"near-valid: {mutation}")
    if mutation == "value":
        fields[draw(st.sampled_from(sorted(properties)))] = draw(JSON)
    elif mutation == "drop" and fields:
        del fields[draw(st.sampled_from(sorted(fields)))]
    elif mutation == "unknown":
        fields[draw(st.text(min_size=1, max_size=20))] = draw(SCALARS)
    elif mutation == "type":
        fact["type"] = draw(st.sampled_from(TYPES) | st.text(max_size=20))
    elif mutation == "id":
        fact["id"] = draw(ODD_IDS)
    elif mutation == "null":
        fields[draw(st.sampled_from(sorted(properties)))] = None
    else:
        special = [
            math.nan,
            math.inf,
            -math.inf,
            -0.0,
            1e-300,
            2.0**53,
            2.0**53 + 2,
            0.5,
            -1,
            1e308,
        ]
        fields[draw(st.sampled_from(sorted(properties)))] = draw(st.sampled_from(special))
    return {**fact, "fields": fields}


HOSTILE_FACT = st.fixed_dictionaries(
    {
        "id": ODD_IDS,
        "type": st.sampled_from(TYPES) | st.text(max_size=30),
        "fields": st.dictionaries(
            st.sampled_from(sorted({n for s in SCHEMAS.values() for n in s["properties"]}))
            | st.text(max_size=30),
            JSON,
            max_size=12,
        ),
    }
)


def _cardinality_key(fact: dict[str, Any]) -> tuple[str, Any]:
    """At most one fact of a singleton type, one treatment per kind (imaging: any number)."""
    if fact["type"] == "imaging":
        return (fact["type"], id(fact))
    return (fact["type"], fact["fields"].get("kind") if fact["type"] == "treatment" else None)


@st.composite
def requests(
    draw: st.DrawFn, fact: st.SearchStrategy[dict[str, Any]], valid: bool = False
) -> list[dict[str, Any]]:
    """A list of facts; ids unique unless the fact brought its own (odd) id.

    `valid` keeps the cardinality rules and unique ids, so most requests evaluate.
    """
    facts = draw(st.lists(fact, max_size=8, unique_by=_cardinality_key if valid else None))
    pool = "unique" if valid else draw(st.sampled_from(["unique", "clash"]))
    for index, item in enumerate(facts):
        if item["id"] == "":
            item["id"] = f"f{index}" if pool == "unique" else f"f{index % 3}"
    return facts


def event(name: str) -> None:
    """Count what the cases exercised (shown by --hypothesis-show-statistics)."""
    if currently_in_test_context():
        hypothesis_event(name)


def to_struct(fields: dict[str, Any]) -> struct_pb2.Struct:
    struct = struct_pb2.Struct()
    struct.update(fields)
    return struct


def to_protos(facts: list[dict[str, Any]]) -> list[pb.Fact]:
    return [pb.Fact(id=f["id"], type=f["type"], fields=to_struct(f["fields"])) for f in facts]


# ---------------------------------------------------------------- the model


@dataclass(frozen=True)
class Expected:
    code: str  # OK, INVALID_ARGUMENT or RESOURCE_EXHAUSTED
    reason: str = ""
    fields: frozenset[str] = frozenset()
    conclusions: tuple[pb.Conclusion, ...] = ()


def expected(engine: RulesEngine, request: pb.EvaluateRequest | pb.ExplainRequest) -> Expected:
    if request.ByteSize() > CONFIG.max_message_bytes:
        return Expected("RESOURCE_EXHAUSTED")
    violations = request_violations(request, LIMITS)
    if violations:
        return Expected(
            "INVALID_ARGUMENT", "LIMIT_EXCEEDED", frozenset(v.field for v in violations)
        )
    try:
        facts = validate_facts(facts_from_proto(request.facts, LIMITS), LIMITS.max_facts)
    except InvalidFacts as error:
        return Expected(
            "INVALID_ARGUMENT", error.reason, frozenset(v.field for v in error.violations)
        )
    result = engine.evaluate(facts)
    return Expected("OK", conclusions=tuple(conclusion_to_proto(c) for c in result.conclusions))


def details(error: grpc.RpcError) -> tuple[str, set[str], bool]:
    """(reason, violation fields, whether the list was cut) of a rich status."""
    status = rpc_status.from_call(error)
    assert status is not None, "every error carries rich details"
    reason, fields, cut = "", set(), False
    for detail in status.details:
        if detail.Is(error_details_pb2.ErrorInfo.DESCRIPTOR):
            info = error_details_pb2.ErrorInfo()
            detail.Unpack(info)
            assert info.domain == "cds.v1"
            reason = info.reason
        elif detail.Is(error_details_pb2.BadRequest.DESCRIPTOR):
            bad = error_details_pb2.BadRequest()
            detail.Unpack(bad)
            for violation in bad.field_violations:
                if violation.description.endswith("further violations not listed"):
                    cut = True
                else:
                    fields.add(violation.field)
    return reason, fields, cut


def check_refusal(error: grpc.RpcError, model: Expected) -> None:
    code = error.code().name
    assert code == model.code, (code, error.details(), model)
    if code == "INVALID_ARGUMENT":
        reason, fields, cut = details(error)
        assert reason == model.reason
        assert fields <= model.fields if cut else fields == model.fields, (fields, model.fields)


def check_evaluate(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine, facts: list[dict[str, Any]]
) -> Expected:
    request = pb.EvaluateRequest(facts=to_protos(facts))
    model = expected(engine, request)
    event(f"evaluate: {model.code} {model.reason}".strip())
    try:
        responses = list(stub.Evaluate(request, timeout=20))
    except grpc.RpcError as error:
        check_refusal(error, model)
        return model
    assert model.code == "OK", (model, "answered, but the model refuses")
    *conclusions, summary = responses
    assert summary.WhichOneof("event") == "summary"
    assert all(r.WhichOneof("event") == "conclusion" for r in conclusions)
    assert tuple(r.conclusion for r in conclusions) == model.conclusions
    assert summary.summary.conclusion_count == len(conclusions)
    return model


def check_explain(
    stub: pb_grpc.DecisionSupportServiceStub,
    engine: RulesEngine,
    facts: list[dict[str, Any]],
    code: str,
) -> None:
    request = pb.ExplainRequest(facts=to_protos(facts), code=code)
    model = expected(engine, request)
    if (
        code not in CATALOGUE
        and model.reason != "LIMIT_EXCEEDED"
        and model.code != "RESOURCE_EXHAUSTED"
    ):
        # Limits are checked before anything else; then the code, then the facts.
        model = Expected("INVALID_ARGUMENT", "UNKNOWN_CODE", frozenset({"code"}))
    try:
        answer = stub.Explain(request, timeout=20)
    except grpc.RpcError as error:
        check_refusal(error, model)
        return
    assert model.code == "OK"
    assert answer.code == code
    assert answer.derived == (code in {c.code for c in model.conclusions})


@pytest.fixture(autouse=True)
def server_stays_healthy(running_server: RunningServer) -> Iterator[None]:
    yield
    with grpc.insecure_channel(f"127.0.0.1:{running_server.port}") as channel:
        health = health_pb2_grpc.HealthStub(channel)
        answer = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert answer.status == health_pb2.HealthCheckResponse.SERVING
        stub = pb_grpc.DecisionSupportServiceStub(channel)
        facts = to_protos([{"id": "p", "type": "patient", "fields": {"age_years": 40}}])
        answers = list(stub.Evaluate(pb.EvaluateRequest(facts=facts), timeout=10))
        assert answers[-1].WhichOneof("event") == "summary"


# ---------------------------------------------------------------- Evaluate and Explain


@FUZZ
@given(facts=requests(VALID_FACT, valid=True))
def test_valid_facts_get_the_engines_answer(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine, facts: list[dict[str, Any]]
) -> None:
    check_evaluate(stub, engine, facts)


@FUZZ
@given(facts=requests(st.one_of(VALID_FACT, _near_valid_fact())))
def test_near_valid_facts_are_answered_or_rejected_exactly(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine, facts: list[dict[str, Any]]
) -> None:
    check_evaluate(stub, engine, facts)


@FUZZ
@given(facts=requests(st.one_of(HOSTILE_FACT, _near_valid_fact())))
def test_hostile_facts_are_rejected_exactly(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine, facts: list[dict[str, Any]]
) -> None:
    check_evaluate(stub, engine, facts)


@settings(FUZZ, max_examples=60)
@given(
    facts=requests(st.one_of(VALID_FACT, _near_valid_fact(), HOSTILE_FACT)),
    code=st.sampled_from(CODES) | st.text(max_size=40),
)
def test_explain_agrees_with_evaluate(
    stub: pb_grpc.DecisionSupportServiceStub,
    engine: RulesEngine,
    facts: list[dict[str, Any]],
    code: str,
) -> None:
    check_explain(stub, engine, facts, code)


@settings(FUZZ, max_examples=25)
@given(
    count=st.one_of(st.integers(0, 40), st.integers(490, 510), st.integers(511, 3000)),
    duplicates=st.booleans(),
    huge=st.sampled_from([0, 1, 5000]),
)
def test_thousands_of_facts(
    stub: pb_grpc.DecisionSupportServiceStub,
    engine: RulesEngine,
    count: int,
    duplicates: bool,
    huge: int,
) -> None:
    fields = {"modality": "ct", "region": "brain", "finding": "normal"}
    facts = [
        {"id": f"i{n % 7 if duplicates else n}", "type": "imaging", "fields": fields}
        for n in range(count)
    ]
    if huge and facts:
        facts[-1] = {**facts[-1], "fields": {**fields, "finding": "x" * huge}}
    check_evaluate(stub, engine, facts)


def test_deeply_nested_and_oversized_values(
    stub: pb_grpc.DecisionSupportServiceStub, engine: RulesEngine
) -> None:
    """The extremes hypothesis rarely reaches on its own."""

    def nested(depth: int) -> Any:
        return "leaf" if depth == 0 else {"k": [nested(depth - 1)]}

    cases = [
        [{"id": "h", "type": "headache", "fields": {"onset": nested(15)}}],  # protobuf's limit
        [{"id": "h", "type": "headache", "fields": {"onset": "x" * 1_000_000}}],
        [{"id": "h", "type": "headache", "fields": {f"k{n}": n for n in range(5_000)}}],
        [{"id": "t", "type": "treatment", "fields": {"components": [None] * 100_000}}],
        [{"id": "p", "type": "patient", "fields": {"age_years": 1.0}} for _ in range(1)] * 2,
        [{"id": "h", "type": "headache", "fields": {"onset": "y" * (5 * 1024 * 1024)}}],
    ]
    for facts in cases:
        check_evaluate(stub, engine, facts)


# ---------------------------------------------------------------- sessions


@pytest.fixture(scope="module")
def cds(running_server: RunningServer) -> Iterator[CdsClient]:
    with CdsClient(f"127.0.0.1:{running_server.port}", timeout=20) as client:
        yield client


BATCH = st.tuples(
    requests(st.one_of(VALID_FACT, VALID_FACT, _near_valid_fact(), HOSTILE_FACT)).map(
        lambda facts: facts[:4]
    ),
    st.lists(st.sampled_from(["f0", "f1", "f2", "f3", "nope", ""]), max_size=3),
)


@settings(FUZZ, max_examples=30)
@given(batches=st.lists(BATCH, min_size=1, max_size=4))
def test_session_batches_never_corrupt_a_session(
    cds: CdsClient, batches: list[tuple[list[dict[str, Any]], list[str]]]
) -> None:
    """Each batch is applied or rejected whole (or, past a limit, ends the stream);
    whatever was acknowledged is exactly what a re-opened session holds."""
    model: dict[str, dict[str, Any]] = {}
    applied = 0
    with cds.session() as session:
        session_id = session.session_id
        for facts, retract in batches:
            try:
                result = session.apply(facts, retract)
            except CdsError as error:
                assert (error.code, error.reason) == ("INVALID_ARGUMENT", "LIMIT_EXCEEDED")
                event("session: stream ended past a limit")
                break
            event(f"session: {'applied' if result.applied else 'rejected'}")
            if result.applied:
                applied += 1
                for fact_id in retract:
                    del model[fact_id]
                for fact in facts:
                    model[fact["id"]] = fact
            assert session.version == applied
    with cds.session(session_id) as resumed:
        assert resumed.version == applied
        oracle = {e.code: e for e in cds.evaluate(model.values()) if isinstance(e, Conclusion)}
        assert resumed.conclusions == oracle
    cds.delete_session(session_id)


# ---------------------------------------------------------------- raw bytes on the port

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"


def frame(kind: int, flags: int, stream: int, payload: bytes, length: int | None = None) -> bytes:
    size = len(payload) if length is None else length
    return struct.pack(">I", size)[1:] + bytes([kind, flags]) + struct.pack(">I", stream) + payload


def _literal(name: str, value: str) -> bytes:
    """An HPACK literal header field without indexing, new name (no Huffman)."""
    assert len(name) < 127 and len(value) < 127
    return b"\x00" + bytes([len(name)]) + name.encode() + bytes([len(value)]) + value.encode()


GRPC_HEADERS = b"".join(
    _literal(name, value)
    for name, value in (
        (":method", "POST"),
        (":scheme", "http"),
        (":path", "/cds.v1.DecisionSupportService/Evaluate"),
        (":authority", "localhost"),
        ("content-type", "application/grpc"),
        ("te", "trailers"),
    )
)
SETTINGS, HEADERS, DATA, PING, GOAWAY, WINDOW, RST = 4, 1, 0, 6, 7, 8, 3
END_STREAM, END_HEADERS = 0x1, 0x4
ABUSE = {
    "garbage": b"\xff" * 64,
    "half-preface": PREFACE[:10],
    "preface-only": PREFACE,
    "truncated-settings": PREFACE + frame(SETTINGS, 0, 0, b"\x00\x03", length=6),
    "huge-frame": PREFACE + frame(SETTINGS, 0, 0, b"", length=2**24 - 1) + b"\x00" * 100,
    "settings-odd-length": PREFACE + frame(SETTINGS, 0, 0, b"\x00\x01\x00"),
    "garbage-hpack": PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, 5, 1, b"\xff" * 40),
    "data-without-headers": PREFACE + frame(SETTINGS, 0, 0, b"") + frame(DATA, 1, 1, b"\0" * 9),
    "zero-window-update": PREFACE + frame(SETTINGS, 0, 0, b"") + frame(WINDOW, 0, 0, b"\0" * 4),
    "rst-on-stream-0": PREFACE + frame(SETTINGS, 0, 0, b"") + frame(RST, 0, 0, b"\0" * 4),
    "ping-bad-length": PREFACE + frame(SETTINGS, 0, 0, b"") + frame(PING, 0, 0, b"\0" * 3),
    "goaway-truncated": PREFACE + frame(GOAWAY, 0, 0, b"\0" * 3, length=8),
    "grpc-truncated-message": PREFACE
    + frame(SETTINGS, 0, 0, b"")
    + frame(HEADERS, END_HEADERS, 1, GRPC_HEADERS)
    + frame(DATA, END_STREAM, 1, b"\x00\x00\x00\x03\xe8" + b"\x0a" * 10),  # says 1,000 bytes
    "grpc-headers-then-hang-up": PREFACE
    + frame(SETTINGS, 0, 0, b"")
    + frame(HEADERS, END_HEADERS, 1, GRPC_HEADERS)
    + frame(DATA, 0, 1, b"\x00\x00\x00\x00\x05\x0a\x03"),
    "grpc-compressed-flag-lie": PREFACE
    + frame(SETTINGS, 0, 0, b"")
    + frame(HEADERS, END_HEADERS, 1, GRPC_HEADERS)
    + frame(DATA, END_STREAM, 1, b"\x01\x00\x00\x00\x03abc"),
    "many-streams-reset": PREFACE
    + frame(SETTINGS, 0, 0, b"")
    + b"".join(
        frame(HEADERS, END_HEADERS, n, GRPC_HEADERS) + frame(RST, 0, n, b"\0\0\0\x08")
        for n in range(1, 400, 2)
    ),
}


def _send(port: int, data: bytes, linger: float = 0.2) -> None:
    with socket.create_connection(("127.0.0.1", port), timeout=2) as sock:
        try:
            sock.sendall(data)
        except OSError:
            return  # the server closed first: fine
        end = time.monotonic() + linger
        sock.settimeout(linger)
        while time.monotonic() < end:
            try:
                if not sock.recv(65536):
                    return
            except OSError:
                return


@pytest.mark.parametrize("name", sorted(ABUSE))
def test_malformed_http2_does_not_disturb_the_server(
    running_server: RunningServer, name: str
) -> None:
    _send(running_server.port, ABUSE[name])


@settings(FUZZ, max_examples=60)
@given(data=st.binary(max_size=3000), preface=st.booleans())
def test_random_bytes_do_not_disturb_the_server(
    running_server: RunningServer, data: bytes, preface: bool
) -> None:
    _send(running_server.port, (PREFACE if preface else b"") + data, linger=0.05)


def test_idle_and_half_open_connections_do_not_block_others(
    running_server: RunningServer, stub: pb_grpc.DecisionSupportServiceStub
) -> None:
    sockets = []
    try:
        for n in range(60):
            sock = socket.create_connection(("127.0.0.1", running_server.port), timeout=2)
            sock.sendall(PREFACE[: n % len(PREFACE)])  # some say nothing, some half a preface
            sockets.append(sock)
        facts = to_protos([{"id": "p", "type": "patient", "fields": {"age_years": 40}}])
        answers = list(stub.Evaluate(pb.EvaluateRequest(facts=facts), timeout=5))
        assert answers[-1].WhichOneof("event") == "summary"
    finally:
        for sock in sockets:
            sock.close()


def test_the_vocabulary_is_fully_covered_by_the_strategies() -> None:
    """A new fact type or field construct fails here, not silently unfuzzed."""
    assert set(TYPES) == set(FACT_TYPES)
    for fact_type in TYPES:
        _valid_fields(fact_type)  # built eagerly: an unknown schema construct raises
