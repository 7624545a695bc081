"""`python -m server`: the decision-support gRPC server."""

from __future__ import annotations

import argparse
import atexit
import contextlib
import os
import shutil
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from kb.facts import MAX_FACTS_PER_REQUEST
from server.defaults import (
    DEFAULT_GRACE_SECONDS,
    DEFAULT_MAX_SESSIONS,
    DEFAULT_PORT,
    DEFAULT_SESSION_DB,
    DEFAULT_SESSION_TTL,
    LOOPBACK,
)

if TYPE_CHECKING:
    from server.app import ServerConfig

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
        metavar="PATH|URL",
        help="SQLite file for sessions, created with its folder, or a postgresql:// URL"
        " of an existing database shared by replicas (default: %(default)s)",
    )
    parser.add_argument(
        "--session-ttl",
        default=DEFAULT_SESSION_TTL,
        metavar="DURATION",
        help="erase sessions idle this long: 90s, 15m, 12h, 30d or seconds (default: 30d)",
    )
    parser.add_argument(
        "--max-sessions",
        type=int,
        default=DEFAULT_MAX_SESSIONS,
        metavar="N",
        help="live sessions the session database may hold, all workers and replicas"
        " together; past it a new session is RESOURCE_EXHAUSTED, resuming one never is"
        " (default: %(default)s, far above a deployment's sessions within the TTL, yet a"
        " bound on what one token can make the database hold)",
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
        help="calls in flight per worker before RESOURCE_EXHAUSTED (default: 64)",
    )
    parser.add_argument(
        "--metrics-port", type=int, default=None, help="serve Prometheus metrics on this port"
    )
    parser.add_argument(
        "--metrics-host",
        default=LOOPBACK,
        help="address the metrics endpoint binds (default: loopback; see SECURITY.md)",
    )
    parser.add_argument(
        "--metrics-dir",
        metavar="PATH",
        help="folder for the workers' metrics files (default: a private temporary folder)",
    )
    _add_hardening_arguments(parser)
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    if args.workers < 1:
        parser.error("--workers must be at least 1")
    if args.max_sessions < 1:
        parser.error("--max-sessions must be at least 1")
    if args.metrics_port is not None:
        folder = _metrics_dir(args.metrics_dir)
        reason = _no_room(folder)
        if reason is not None:
            # Before logging is configured: one plain line, like any start-up refusal.
            print(f"metrics folder {folder}: {reason}", file=sys.stderr)
            sys.exit(1)
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    from server.logs import configure_logging

    configure_logging(args.log_level, args.log_format)
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
        max_sessions=args.max_sessions,
        max_concurrent_rpcs=args.max_concurrent_rpcs,
        **_hardening_config(args),
    )
    _check_hardening(parser, config)
    sys.exit(supervise(config, args.workers, args.metrics_port, args.metrics_host))


_METRICS_PREFIX = "cds-metrics-"


def _metrics_dir(path: str | None) -> str:
    """The workers' metrics folder, emptied of another run's files (they would be
    summed in). The default is a private temporary folder named after this
    process, removed at exit; folders of supervisors that were killed outright
    are removed at the next start."""
    if path is not None:
        os.makedirs(path, mode=0o700, exist_ok=True)
        for name in os.listdir(path):
            if name.endswith(".db"):
                os.remove(os.path.join(path, name))
        return path
    for name in os.listdir(tempfile.gettempdir()):
        owner = name.removeprefix(_METRICS_PREFIX).split("-", 1)[0]
        if name.startswith(_METRICS_PREFIX) and owner.isdigit() and not _alive(int(owner)):
            shutil.rmtree(os.path.join(tempfile.gettempdir(), name), ignore_errors=True)
    folder = tempfile.mkdtemp(prefix=f"{_METRICS_PREFIX}{os.getpid()}-")
    atexit.register(shutil.rmtree, folder, True)
    return folder


# Room for the supervisor's and a few workers' first metrics files (64 KiB each).
_METRICS_ROOM_BYTES = 1 << 20


def _no_room(folder: str) -> str | None:
    """Why the metrics files cannot be created in `folder`, or None when they can."""
    probe = os.path.join(folder, ".space-probe")
    try:
        with open(probe, "wb") as file:
            os.posix_fallocate(file.fileno(), 0, _METRICS_ROOM_BYTES)
    except OSError as error:
        return error.strerror or type(error).__name__
    finally:
        with contextlib.suppress(OSError):
            os.remove(probe)
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _add_hardening_arguments(parser: argparse.ArgumentParser) -> None:
    """TLS, tokens, request limits and log format (see SECURITY.md)."""
    security = parser.add_argument_group("transport security (see SECURITY.md)")
    security.add_argument("--tls-cert", metavar="PEM", help="server certificate chain: serve TLS")
    security.add_argument("--tls-key", metavar="PEM", help="the certificate's private key")
    security.add_argument(
        "--tls-client-ca", metavar="PEM", help="require client certificates signed by these CAs"
    )
    security.add_argument(
        "--auth-token-file",
        metavar="FILE",
        help="require 'authorization: Bearer <token>' (one token per line) on all but health",
    )
    limits = parser.add_argument_group("request limits")
    limits.add_argument(
        "--max-message-bytes",
        type=int,
        help="largest request message; beyond: RESOURCE_EXHAUSTED (default: 4 MiB)",
    )
    limits.add_argument(
        "--max-string-length", type=int, help="characters per string in a fact (default: 1024)"
    )
    limits.add_argument("--max-fields-per-fact", type=int, help="fields per fact (default: 64)")
    limits.add_argument("--max-list-items", type=int, help="items per list value (default: 64)")
    limits.add_argument(
        "--max-session-streams",
        type=int,
        help="open session streams per worker (default: 48, three quarters of its calls)",
    )
    parser.add_argument(
        "--log-format", choices=("json", "text"), default="json", help="log lines (default: json)"
    )


def _hardening_config(args: argparse.Namespace) -> dict[str, Any]:
    """The ServerConfig fields given on the command line (the others keep their defaults)."""
    names = (
        "tls_cert",
        "tls_key",
        "tls_client_ca",
        "auth_token_file",
        "max_message_bytes",
        "max_string_length",
        "max_fields_per_fact",
        "max_list_items",
        "max_session_streams",
    )
    return {name: getattr(args, name) for name in names if getattr(args, name) is not None}


def _check_hardening(parser: argparse.ArgumentParser, config: ServerConfig) -> None:
    """Refuse unusable settings before any worker starts (exit status 2, one line)."""
    from server import security

    try:
        config.limits()
        security.check(config)
    except ValueError as error:  # ConfigurationError included
        parser.error(str(error))
    for name in ("max_message_bytes", "max_session_streams"):
        value = getattr(config, name)
        if value is not None and value < 1:
            parser.error(f"--{name.replace('_', '-')} must be at least 1")


if __name__ == "__main__":
    main()
