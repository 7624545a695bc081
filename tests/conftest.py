"""Shared fixtures: one engine and one real in-process server per test session."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping, Sequence
from pathlib import Path
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


# ---------------------------------------------------------------- session stores


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test (skipped where there is no
    server, failed in CI): see tests/postgres.py."""
    from tests import postgres

    with postgres.scratch_database() as url:
        yield url


StoreFactory = Callable[[], Any]


@pytest.fixture(params=["sqlite", "postgres"])
def store_factory(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Opens stores on one new database, SQLite file or PostgreSQL, as often as
    called (each call a store of its own, as another process would have); all
    are closed afterwards. `factory.kind` is "sqlite" or "postgres", and
    `factory.location` the file or URL."""
    stores: list[Any] = []

    def factory() -> Any:
        if request.param == "sqlite":
            from server.store import SqliteSessionStore

            store: Any = SqliteSessionStore(location)
        else:
            from server.store_postgres import PostgresSessionStore

            store = PostgresSessionStore(location, timeout=3.0, retry_seconds=0.2)
        stores.append(store)
        return store

    factory.kind = request.param  # type: ignore[attr-defined]
    if request.param == "sqlite":
        location = str(tmp_path / "sessions.db")
        factory.location = location  # type: ignore[attr-defined]
        yield factory
    else:
        from tests import postgres

        with postgres.scratch_database() as location:
            factory.location = location  # type: ignore[attr-defined]
            try:
                yield factory
            finally:
                for store in stores:
                    store.close()
                stores.clear()
    for store in stores:
        store.close()
