"""Worker processes: one rules engine per core, all serving one port.

durable_rules runs on one thread, so one process uses one core. The parent
reserves the port, forks N workers *before any gRPC object exists* (grpc's
fork-safety rule, see grpc/examples/python/multiprocessing), and each worker
builds its own server (with `grpc.so_reuseport`), engine and session-store
connections; the kernel spreads connections across them. The parent only
supervises: it replaces a worker that dies, forwards SIGTERM/SIGINT, and waits
for the workers to drain. Sessions stay correct across workers because their
truth is in the database (versioned commits), not in a process.

With `--metrics-port`, a separate exporter process serves the sum of all
workers' metrics (prometheus-client multiprocess mode) on `--metrics-host`
(loopback by default: the counters say what was concluded, see SECURITY.md).
It must be listening before any worker starts, or the server does not start;
like the workers, it stops when the supervisor is gone, so a killed server
leaves no process holding the port or serving stale numbers.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import signal
import socket
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from typing import Any

from prometheus_client import CollectorRegistry, multiprocess, start_http_server

from server.app import ServerConfig, create_server
from server.defaults import LOOPBACK
from server.store import SqliteSessionStore, StoreError, is_postgres_url

log = logging.getLogger(__name__)

RESTART_BACKOFF_SECONDS = 1.0
PARENT_POLL_SECONDS = 0.5
_CONTEXT = multiprocessing.get_context("fork")


@contextlib.contextmanager
def reserve_port(host: str, port: int) -> Iterator[int]:
    """Hold `host:port` (0: a free one) with SO_REUSEPORT so workers can share it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    if sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT) == 0:
        raise RuntimeError("SO_REUSEPORT is not available: run with --workers 1")
    try:
        sock.bind((host, port))
        yield sock.getsockname()[1]
    finally:
        sock.close()


def _worker_main(config: ServerConfig, port: int, served: Any) -> None:
    """A worker: its own server, engine and store (all created after the fork);
    sets `served` once serving; stops gracefully on SIGTERM."""
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent forwards SIGINT as SIGTERM
    parent = os.getppid()
    threading.Thread(target=_watch_parent, args=(parent, stop), daemon=True).start()
    running = create_server(replace(config, port=port, reuse_port=True))
    served.set()
    log.info("worker %d serving on %s:%d", os.getpid(), config.host, running.port)
    stop.wait()
    running.stop(config.grace_seconds)


def _watch_parent(parent: int, stop: threading.Event) -> None:
    """Stop when the supervisor is gone (killed outright): no orphan workers."""
    while not stop.wait(PARENT_POLL_SECONDS):
        if os.getppid() != parent:
            log.error("supervisor %d is gone; worker %d stopping", parent, os.getpid())
            stop.set()


def _exporter_main(port: int, host: str, served: Any) -> None:
    """Serve the sum of every worker's metrics (multiprocess mode) until the
    supervisor stops it or is gone."""
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # not the supervisor's inherited handler
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    stop = threading.Event()
    threading.Thread(target=_watch_parent, args=(os.getppid(), stop), daemon=True).start()
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    try:
        start_http_server(port, addr=host, registry=registry)
    except OSError as error:
        log.error("metrics cannot listen on %s:%d: %s", host, port, error.strerror)
        sys.exit(1)
    served.set()
    stop.wait()


def _start_exporter(host: str, port: int) -> BaseProcess | None:
    """The exporter, once it listens; None (logged) when it cannot."""
    served = _CONTEXT.Event()
    exporter = _start(_exporter_main, port, host, served)
    while not served.wait(0.1):
        if exporter.exitcode is not None:
            return None
    return exporter


def supervise(
    config: ServerConfig,
    workers: int,
    metrics_port: int | None = None,
    metrics_host: str = LOOPBACK,
) -> int:
    """Run `workers` worker processes until SIGTERM or SIGINT; returns the exit status."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    exporter = None
    if metrics_port is not None:
        exporter = _start_exporter(metrics_host, metrics_port)
        if exporter is None:
            return 1
    try:
        return _run_workers(config, workers, stopping)
    finally:
        if exporter is not None:
            exporter.terminate()
            exporter.join()


def _run_workers(config: ServerConfig, workers: int, stopping: threading.Event) -> int:
    """Keep `workers` workers serving until `stopping`; then drain them."""
    if config.session_db is not None and not is_postgres_url(config.session_db):
        _create_session_db(config.session_db)
        config = replace(config, create_session_db=False)
    with reserve_port(config.host, config.port) as port:

        def spawn() -> tuple[BaseProcess, Any]:
            served = _CONTEXT.Event()
            return _start(_worker_main, config, port, served), served

        children = [spawn() for _ in range(workers)]
        log.info(
            "serving on %s:%d with %d worker process(es): %s",
            config.host,
            port,
            workers,
            " ".join(str(child.pid) for child, _ in children),
        )
        failed_to_start = False
        while not stopping.is_set():
            wait([child.sentinel for child, _ in children], timeout=0.5)
            for index, (child, served) in enumerate(children):
                if child.exitcode is None or stopping.is_set():
                    continue
                _mark_dead(child.pid)
                if not served.is_set():
                    # It never served (knowledge base, port or database): another
                    # would fail the same way. Give up instead of a crash loop.
                    log.error("worker %d failed to start (%s); stopping", child.pid, child.exitcode)
                    failed_to_start = True
                    stopping.set()
                    break
                log.error("worker %d exited (%s); starting another", child.pid, child.exitcode)
                time.sleep(RESTART_BACKOFF_SECONDS)
                children[index] = spawn()
        log.info("stopping %d worker(s), grace %.1f s", len(children), config.grace_seconds)
        for child, _ in children:
            if child.exitcode is None and child.pid is not None:
                os.kill(child.pid, signal.SIGTERM)
        failed = failed_to_start
        for child, _ in children:
            child.join(config.grace_seconds + 10)
            if child.exitcode is None:
                child.kill()
                child.join()
            failed += child.exitcode != 0
            _mark_dead(child.pid)
    return 1 if failed else 0


def _create_session_db(path: str) -> None:
    """Create the session database, if missing, before any worker exists, so no
    worker (a replacement started later included) ever creates one: an empty
    database in place of one deleted while serving would hide the loss. A failure
    here is left to the workers, which report it and keep Evaluate serving."""
    with contextlib.suppress(StoreError, sqlite3.Error, OSError):
        SqliteSessionStore(path).close()


def _start(target: Callable[..., None], *args: object) -> BaseProcess:
    process = _CONTEXT.Process(target=target, args=args, daemon=False)
    process.start()
    return process


def _mark_dead(pid: int | None) -> None:
    """Let a dead worker's live gauges go (multiprocess mode only)."""
    if pid is not None and os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        multiprocess.mark_process_dead(pid)
