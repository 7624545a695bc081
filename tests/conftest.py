"""Shared fixtures: one engine and one real in-process server per test session."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.engine import RulesEngine
from server.app import RunningServer, ServerConfig, create_server


@pytest.fixture(scope="session")
def engine() -> RulesEngine:
    return RulesEngine()


@pytest.fixture(scope="session")
def running_server() -> Iterator[RunningServer]:
    running = create_server(ServerConfig(port=0))
    yield running
    running.stop(grace=1)


@pytest.fixture(scope="session")
def channel(running_server: RunningServer) -> Iterator[grpc.Channel]:
    with grpc.insecure_channel(f"127.0.0.1:{running_server.port}") as channel:
        yield channel


@pytest.fixture(scope="session")
def stub(channel: grpc.Channel) -> pb_grpc.DecisionSupportServiceStub:
    return pb_grpc.DecisionSupportServiceStub(channel)


def to_proto_facts(facts: Sequence[Mapping[str, Any]]) -> list[pb.Fact]:
    protos = []
    for fact in facts:
        fields = struct_pb2.Struct()
        fields.update(dict(fact.get("fields") or {}))
        protos.append(pb.Fact(id=fact["id"], type=fact["type"], fields=fields))
    return protos
