"""Building and running the gRPC server.

`create_server` is split from `serve` so tests can run the real server
in-process on port 0 (grpc's examples/python idiom).
"""

from __future__ import annotations

import asyncio
import logging
import tempfile
import time
from collections.abc import Callable, Coroutine
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_health.v1.health import aio as aio_health
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.facts import MAX_FACTS_PER_REQUEST
from server import handlers, logs, security
from server import limits as request_limits
from server.defaults import DEFAULT_MAX_SESSIONS, LOOPBACK
from server.engine import EngineWorker
from server.resilient_store import ReopeningSessionStore
from server.service import DecisionSupportService
from server.sessions import DEFAULT_TTL_SECONDS, SessionManager
from server.store import SessionStore, SqliteSessionStore, is_postgres_url
from server.watch import ChangeFeed

log = logging.getLogger(__name__)
T = TypeVar("T")

# Slots kept for health checks and watches beyond the calls' capacity.
HEALTH_SLOTS = 4 + logs.MAX_HEALTH_WATCHES
# Shutdown closes the listeners once no call has arrived for this long.
LAME_DUCK_QUIET_SECONDS = 0.25
SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionSupportService"].full_name
# HTTP/2 keepalive: session streams are long-lived and may stay silent for
# days, so both sides ping to notice a dead peer (and keep NATs open). The
# server accepts a client's pings as often as every 30 s (see client.api).
KEEPALIVE_OPTIONS = (
    ("grpc.keepalive_time_ms", 60_000),
    ("grpc.keepalive_timeout_ms", 20_000),
    ("grpc.keepalive_permit_without_calls", 1),
    ("grpc.http2.min_ping_interval_without_data_ms", 30_000),
    ("grpc.http2.max_pings_without_data", 0),
)


@dataclass(frozen=True)
class ServerConfig:
    host: str = LOOPBACK
    port: int = 50051
    max_facts: int = MAX_FACTS_PER_REQUEST
    # Calls in flight at once by default: each is a coroutine on the engine
    # loop, not a thread, but bounded all the same (memory, fairness).
    capacity: int = 64
    grace_seconds: float = 10.0
    # Sessions: None keeps them in a private temporary database removed on stop
    # (tests, embedding); `python -m server` passes DEFAULT_SESSION_DB.
    session_db: str | None = None
    # False in worker processes: the supervisor created the database before them.
    create_session_db: bool = True
    session_ttl_seconds: float = DEFAULT_TTL_SECONDS
    sweep_interval_seconds: float | None = None  # None: a tenth of the TTL, 1 s to 1 h
    # Live sessions in the store, all workers and replicas sharing it together,
    # past which opening a new one is RESOURCE_EXHAUSTED (SESSION_LIMIT); resuming
    # is never refused.
    max_sessions: int = DEFAULT_MAX_SESSIONS
    # Open session streams (each may wait on the session store from a thread of
    # its own); keep some capacity for other calls.
    max_session_streams: int | None = None  # None: three quarters of `capacity`
    # Calls in flight (session streams included) before RESOURCE_EXHAUSTED.
    max_concurrent_rpcs: int | None = None  # None: `capacity`
    # Several worker processes share one port (`server.workers`).
    reuse_port: bool = False
    # Transport security (`server.security`): TLS, mutual TLS, bearer tokens.
    tls_cert: str | None = None
    tls_key: str | None = None
    tls_client_ca: str | None = None
    auth_token_file: str | None = None
    # Request limits (`server.limits`); past max_message_bytes: RESOURCE_EXHAUSTED.
    max_message_bytes: int = request_limits.DEFAULT_MAX_MESSAGE_BYTES
    max_string_length: int = request_limits.DEFAULT_MAX_STRING_LENGTH
    max_fields_per_fact: int = request_limits.DEFAULT_MAX_FIELDS_PER_FACT
    max_list_items: int = request_limits.DEFAULT_MAX_LIST_ITEMS

    def limits(self) -> request_limits.Limits:
        return request_limits.Limits(
            max_facts=self.max_facts,
            max_string_length=self.max_string_length,
            max_fields_per_fact=self.max_fields_per_fact,
            max_list_items=self.max_list_items,
        )

    def concurrent_rpcs(self) -> int:
        return self.max_concurrent_rpcs if self.max_concurrent_rpcs is not None else self.capacity

    def session_streams(self) -> int:
        if self.max_session_streams is not None:
            return self.max_session_streams
        return max(1, self.capacity * 3 // 4)

    def sweep_interval(self) -> float:
        if self.sweep_interval_seconds is not None:
            return self.sweep_interval_seconds
        return min(max(self.session_ttl_seconds / 10, 1.0), 3600.0)


@dataclass
class RunningServer:
    server: grpc.aio.Server
    port: int
    health: aio_health.HealthServicer
    worker: EngineWorker
    sessions: SessionManager | None = None
    cleanups: list[Callable[[], None]] = field(default_factory=list)
    gates: logs.Gates = field(default_factory=lambda: logs.Gates(logs.CallGate()))

    def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        """Run `coroutine` on the server's event loop; from any other thread."""
        return asyncio.run_coroutine_threadsafe(coroutine, self.worker.loop).result()

    def stop(self, grace: float | None = None) -> None:
        """Lame duck, then stop: report NOT_SERVING and answer every new call
        UNAVAILABLE ourselves while the listeners stay open; let the calls
        already admitted finish; only then close the listeners.

        Closing the listeners with calls still being set up would leave them to
        gRPC core, which answers CANCELLED, and clients do not retry that. Open
        session streams are not waited for: they are cancelled when the grace
        period ends (their clients re-open the session elsewhere).
        """
        self.gates.calls.close()
        self._on_loop(self.health.enter_graceful_shutdown())
        remaining = grace  # None: abort every call now, as grpc.aio.Server.stop(None) does
        if grace is not None:
            started = time.monotonic()
            self.gates.calls.wait_quiet(LAME_DUCK_QUIET_SECONDS, grace)
            remaining = max(grace - (time.monotonic() - started), LAME_DUCK_QUIET_SECONDS)
        self._on_loop(self.server.stop(remaining))
        if self.sessions is not None:
            self.sessions.stop()
        for cleanup in reversed(self.cleanups):
            cleanup()
        self.worker.stop()


def _session_store(config: ServerConfig, cleanups: list[Callable[[], None]]) -> SessionStore:
    if config.session_db is not None and is_postgres_url(config.session_db):
        # Imported here so SQLite-only installs never load psycopg. Unreachable at
        # start-up: session calls answer UNAVAILABLE until the database is back.
        from server.store_postgres import PostgresSessionStore

        store: SessionStore = PostgresSessionStore(config.session_db)
    elif config.session_db is not None:
        # A database that cannot be opened fails session calls, not the server.
        store = ReopeningSessionStore(config.session_db, create=config.create_session_db)
    else:
        folder = tempfile.TemporaryDirectory(prefix="cds-sessions-")
        cleanups.append(folder.cleanup)
        store = SqliteSessionStore(f"{folder.name}/sessions.db")
    cleanups.append(store.close)
    return store


def create_server(
    config: ServerConfig = ServerConfig(),
    worker: EngineWorker | None = None,
    store: SessionStore | None = None,
) -> RunningServer:
    """Start serving on `config.host:config.port` (0 picks a free port).

    The server runs on the engine loop (`server.engine`). Health reports
    SERVING only once the knowledge base has loaded. A `store` passed in
    belongs to the caller and is not closed by `stop`.
    """
    security.check(config)  # unreadable TLS or token files fail before anything starts
    worker = worker or EngineWorker()
    cleanups: list[Callable[[], None]] = []
    store = store or _session_store(config, cleanups)
    gates = logs.Gates(logs.CallGate(config.concurrent_rpcs()))
    sessions = SessionManager(
        store,
        worker,
        max_facts=config.max_facts,
        ttl_seconds=config.session_ttl_seconds,
        max_streams=config.session_streams(),
        max_sessions=config.max_sessions,
    )
    # Session work blocks on the store: it runs here, never on the loop.
    blocking = futures.ThreadPoolExecutor(
        max_workers=config.session_streams(), thread_name_prefix="session-store"
    )
    cleanups.append(lambda: blocking.shutdown(wait=False, cancel_futures=True))
    feed = ChangeFeed(worker.loop, store)
    cleanups.append(feed.stop)
    sessions.changed = feed.publish
    service = DecisionSupportService(
        worker, config.limits(), sessions=sessions, blocking=blocking, feed=feed
    )
    try:
        server, port, health_servicer = asyncio.run_coroutine_threadsafe(
            _start(config, gates, service), worker.loop
        ).result()
    except BaseException:
        for cleanup in reversed(cleanups):
            cleanup()
        raise
    running = RunningServer(server, port, health_servicer, worker, sessions, cleanups, gates)
    try:
        worker.wait_ready(timeout=60)
    except BaseException:  # the knowledge base failed to load: release the port, then fail
        running._on_loop(server.stop(None))
        for cleanup in reversed(cleanups):
            cleanup()
        raise
    sessions.start_sweeper(config.sweep_interval())
    for name in ("", SERVICE_NAME):
        running._on_loop(health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING))
    return running


async def _start(
    config: ServerConfig, gates: logs.Gates, service: DecisionSupportService
) -> tuple[grpc.aio.Server, int, aio_health.HealthServicer]:
    """Build and start the server on the running (engine) loop."""
    wrap = handlers.call_wrapper(config.limits(), gates)
    server = grpc.aio.server(
        interceptors=security.build_interceptors(config, wrap),
        options=[
            *KEEPALIVE_OPTIONS,
            ("grpc.so_reuseport", int(config.reuse_port)),
            ("grpc.max_receive_message_length", config.max_message_bytes),
        ],
        # The gates refuse first (health exempt); this only bounds gRPC's own queue.
        maximum_concurrent_rpcs=config.concurrent_rpcs() + HEALTH_SLOTS,
    )
    health_servicer = aio_health.HealthServicer()
    for name in ("", SERVICE_NAME):
        await health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    registrar = handlers.Registrar(server, wrap)  # every handler wrapped once, here
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, registrar)
    pb_grpc.add_DecisionSupportServiceServicer_to_server(service, registrar)
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(
        reflection.aio.ReflectionServicer(
            (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME)
        ),
        registrar,
    )
    port = security.bind(server, config, f"{config.host}:{config.port}")
    await server.start()
    return server, port, health_servicer
