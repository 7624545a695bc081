"""`python -m server`: the decision-support gRPC server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import tempfile

from kb.facts import MAX_FACTS_PER_REQUEST
from server.defaults import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_PORT,
    DEFAULT_SESSION_DB,
    DEFAULT_SESSION_TTL,
    LOOPBACK,
)

# The server itself is imported only once PROMETHEUS_MULTIPROC_DIR is settled:
# prometheus-client reads that variable once, when it is first imported.


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help="port (0 picks a free one)")
    parser.add_argument(
        "--max-facts", type=int, default=MAX_FACTS_PER_REQUEST, help="facts per request"
    )
    parser.add_argument(
        "--grace", type=float, default=DEFAULT_GRACE_SECONDS, help="shutdown grace in seconds"
    )
    parser.add_argument(
        "--session-db",
        default=f"./{DEFAULT_SESSION_DB}",
        metavar="PATH",
        help="SQLite file for sessions, created with its folder (default: %(default)s)",
    )
    parser.add_argument(
        "--session-ttl",
        default=DEFAULT_SESSION_TTL,
        metavar="DURATION",
        help="erase sessions idle this long: 90s, 15m, 12h, 30d or seconds (default: 30d)",
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=os.cpu_count() or 1,
        help="worker processes sharing the port, each with its own engine (default: CPUs)",
    )
    parser.add_argument(
        "--max-concurrent-rpcs",
        type=int,
        default=None,
        help="calls in flight per worker before RESOURCE_EXHAUSTED (default: its threads)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.metrics_port is not None and "PROMETHEUS_MULTIPROC_DIR" not in os.environ:
        metrics_dir = tempfile.TemporaryDirectory(prefix="cds-metrics-")
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = metrics_dir.name
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    from server.app import ServerConfig
    from server.sessions import parse_duration
    from server.workers import supervise

    try:
        session_ttl = parse_duration(args.session_ttl)
    except ValueError as error:
        parser.error(f"--session-ttl: {error}")

    config = ServerConfig(
        host=args.host,
        port=args.port,
        max_facts=args.max_facts,
        grace_seconds=args.grace,
        session_db=args.session_db,
        session_ttl_seconds=session_ttl,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
    )
    sys.exit(supervise(config, args.workers, args.metrics_port))


if __name__ == "__main__":
    main()
