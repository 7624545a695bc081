"""Building and running the gRPC server.

`create_server` is split from `serve` so tests can run the real server
in-process on port 0 (grpc's examples/python idiom).
"""

from __future__ import annotations

import logging
import signal
import threading
from concurrent import futures
from dataclasses import dataclass

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from cds.v1 import decision_support_pb2 as pb
from cds.v1 import decision_support_pb2_grpc as pb_grpc
from kb.facts import MAX_FACTS_PER_REQUEST
from server.engine import EngineWorker
from server.service import DecisionSupportService

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["DecisionSupportService"].full_name
LOOPBACK = "127.0.0.1"


@dataclass(frozen=True)
class ServerConfig:
    host: str = LOOPBACK
    port: int = 50051
    max_facts: int = MAX_FACTS_PER_REQUEST
    threads: int = 64
    grace_seconds: float = 10.0


@dataclass
class RunningServer:
    server: grpc.Server
    port: int
    health: health.HealthServicer
    worker: EngineWorker

    def stop(self, grace: float | None = None) -> None:
        """Report NOT_SERVING, refuse new calls, let in-flight calls finish."""
        self.health.enter_graceful_shutdown()
        self.server.stop(grace).wait()
        self.worker.stop()


def create_server(
    config: ServerConfig = ServerConfig(), worker: EngineWorker | None = None
) -> RunningServer:
    """Start serving on `config.host:config.port` (0 picks a free port).

    Health reports SERVING only once the knowledge base has loaded.
    """
    worker = worker or EngineWorker()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=config.threads))
    health_servicer = health.HealthServicer()
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.NOT_SERVING)
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    pb_grpc.add_DecisionSupportServiceServicer_to_server(
        DecisionSupportService(worker, max_facts=config.max_facts), server
    )
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME), server
    )
    port = server.add_insecure_port(f"{config.host}:{config.port}")
    server.start()
    worker.wait_ready(timeout=60)
    for name in ("", SERVICE_NAME):
        health_servicer.set(name, health_pb2.HealthCheckResponse.SERVING)
    return RunningServer(server, port, health_servicer, worker)


def serve(config: ServerConfig) -> None:
    """Run until SIGTERM or SIGINT, then shut down gracefully."""
    running = create_server(config)
    log.info("serving %s on %s:%d", SERVICE_NAME, config.host, running.port)
    stop = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop.set())
    stop.wait()
    log.info("shutting down (grace %.1f s)", config.grace_seconds)
    running.stop(config.grace_seconds)
