"""`python -m server`: the decision-support gRPC server."""

from __future__ import annotations

import argparse
import logging

from kb.facts import MAX_FACTS_PER_REQUEST
from server.app import DEFAULT_SESSION_DB, LOOPBACK, ServerConfig, serve
from server.sessions import parse_duration


def _duration(text: str) -> float:
    try:
        return parse_duration(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m server", description=__doc__)
    parser.add_argument("--host", default=LOOPBACK, help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=50051, help="port (0 picks a free one)")
    parser.add_argument(
        "--max-facts", type=int, default=MAX_FACTS_PER_REQUEST, help="facts per request"
    )
    parser.add_argument("--grace", type=float, default=10.0, help="shutdown grace in seconds")
    parser.add_argument(
        "--session-db",
        default=f"./{DEFAULT_SESSION_DB}",
        metavar="PATH",
        help="SQLite file for sessions, created with its folder (default: %(default)s)",
    )
    parser.add_argument(
        "--session-ttl",
        type=_duration,
        default="30d",
        metavar="DURATION",
        help="erase sessions idle this long: 90s, 15m, 12h, 30d or seconds (default: 30d)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args()
    logging.basicConfig(
        level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s"
    )
    serve(
        ServerConfig(
            host=args.host,
            port=args.port,
            max_facts=args.max_facts,
            grace_seconds=args.grace,
            session_db=args.session_db,
            session_ttl_seconds=args.session_ttl,
        )
    )


if __name__ == "__main__":
    main()
