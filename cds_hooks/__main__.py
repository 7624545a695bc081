"""`python -m cds_hooks`: serve the CDS Hooks service with uvicorn.

Flags (the contract): --host (127.0.0.1), --port (8080), --target (the gRPC
service, 127.0.0.1:50051), --public-url (what the EHR calls; the JWT audience
base; default http://HOST:PORT), --trusted-issuers FILE, --allow-unauthenticated,
--feedback-db (data/feedback.db), --vitals-window (30d). Without
--trusted-issuers the service refuses to start unless --allow-unauthenticated
is given, and then it warns.
"""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import timedelta

import uvicorn

from cds_hooks.app import HooksConfig, create_app
from cds_hooks.auth import Verifier, load_issuers
from server.logs import configure_logging
from server.sessions import parse_duration

log = logging.getLogger("cds_hooks")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cds_hooks", description=__doc__)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8080)
    parser.add_argument("--target", default="127.0.0.1:50051", help="the gRPC service")
    parser.add_argument("--public-url", help="the URL the EHR calls (default http://HOST:PORT)")
    parser.add_argument("--trusted-issuers", metavar="FILE", help="issuers and their JWKS (JSON)")
    parser.add_argument(
        "--allow-unauthenticated", action="store_true", help="accept calls without a JWT"
    )
    parser.add_argument("--feedback-db", default="data/feedback.db")
    parser.add_argument(
        "--vitals-window",
        default="30d",
        help="how old an orthostatic test may be to count: 12h, 30d, or seconds (default: 30d)",
    )
    parser.add_argument("--log-level", default="INFO")
    args = parser.parse_args(argv)
    try:
        vitals_window = timedelta(seconds=parse_duration(args.vitals_window))
    except ValueError as error:
        parser.error(f"--vitals-window: {error}")
    if not args.trusted_issuers and not args.allow_unauthenticated:
        parser.error("give --trusted-issuers FILE, or --allow-unauthenticated to accept any caller")
    configure_logging(args.log_level, "json")
    verifier = None
    if args.trusted_issuers:
        try:
            verifier = Verifier(load_issuers(args.trusted_issuers))
        except ValueError as error:
            parser.error(str(error))
    else:
        log.warning("authentication is off (--allow-unauthenticated): any caller is served")
    public_url = args.public_url or f"http://{args.host}:{args.port}"
    config = HooksConfig(
        target=args.target,
        public_url=public_url,
        feedback_db=args.feedback_db,
        vitals_window=vitals_window,
    )
    app = create_app(config, verifier)
    uvicorn.run(app, host=args.host, port=args.port, log_level="warning", access_log=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
