"""`python -m server.sessions_copy --from SOURCE --to TARGET`: copy every session.

For a site that outgrows one machine: copy the sessions of a SQLite file into
a PostgreSQL database (or back, or between two of either kind; SOURCE and
TARGET are each a path or a `postgresql://` URL), then point every replica's
`--session-db` at the target.

Each session is copied whole (facts in order, version, created and last-active
times, and the conclusions it last reported at that version), in one
transaction at the target. The version decides, per session:

- not at the target: copied;
- at the target at a lower version: replaced by the source's;
- at the same version with the same facts and report: left alone (so running
  the copy twice changes nothing);
- at a higher version at the target (it moved on there): left alone;
- at the same version with other facts or report (the two diverged): left
  alone and counted as a conflict; the exit status is then 1.

Sessions are never deleted at the target, and sessions idle past the TTL are
copied as they are (the target's sweep erases them). Stop the servers writing
to the source first, or copy again after the switch: a session written at the
source in between is replaced at the target only if it is at a higher version
there. The source's schema is brought up to date like a server would on start,
and nothing else in it changes. Prints counts, never session ids (bearer
secrets) or contents; a URL is printed without its password.
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from typing import Protocol, TextIO

from server.store import (
    ImportOutcome,
    SessionRecord,
    SqliteSessionStore,
    StoreError,
    is_postgres_url,
)


class CopyableStore(Protocol):
    def session_ids(self) -> list[str]: ...

    def export(self, session_id: str) -> SessionRecord | None: ...

    def import_session(self, record: SessionRecord) -> ImportOutcome: ...

    def close(self) -> None: ...


def open_store(location: str, *, create: bool) -> CopyableStore:
    """The store at a path (SQLite; created only if `create`) or a PostgreSQL URL."""
    if is_postgres_url(location):
        from server.store_postgres import PostgresSessionStore

        store = PostgresSessionStore(location, pool_size=2)
        store.version_of("")  # fail now, with the reason, if it cannot be used
        return store
    return SqliteSessionStore(location, create=create)


def copy_sessions(source: CopyableStore, target: CopyableStore) -> Counter[ImportOutcome]:
    """Copy every session of `source` into `target`; how many of each outcome."""
    outcomes: Counter[ImportOutcome] = Counter()
    for session_id in source.session_ids():
        record = source.export(session_id)
        if record is None:
            continue  # deleted or expired since it was listed
        outcomes[target.import_session(record)] += 1
    return outcomes


def _display(location: str) -> str:
    if is_postgres_url(location):
        from server.store_postgres import redacted

        return redacted(location)
    return location


def main(argv: Sequence[str] | None = None, stdout: TextIO = sys.stdout) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m server.sessions_copy",
        description=__doc__.split("\n\n")[0] if __doc__ else None,
    )
    parser.add_argument(
        "--from", dest="source", required=True, metavar="PATH|URL", help="copy from"
    )
    parser.add_argument(
        "--to",
        dest="target",
        required=True,
        metavar="PATH|URL",
        help="copy to (a SQLite file is created if missing; a PostgreSQL database must exist)",
    )
    args = parser.parse_args(argv)
    if is_postgres_url(args.source) == is_postgres_url(args.target) and (
        args.source == args.target
    ):
        parser.error("--from and --to are the same database")
    stores: list[CopyableStore] = []
    try:
        stores.append(open_store(args.source, create=False))
        stores.append(open_store(args.target, create=True))
        outcomes = copy_sessions(*stores)
    except (StoreError, ValueError) as error:
        print(f"sessions_copy: {error}", file=sys.stderr)
        return 2
    finally:
        for store in stores:
            store.close()
    counts = ", ".join(f"{outcomes[outcome]} {outcome.value}" for outcome in ImportOutcome)
    print(
        f"{sum(outcomes.values())} session(s) from {_display(args.source)}"
        f" to {_display(args.target)}: {counts}",
        file=stdout,
    )
    if outcomes[ImportOutcome.CONFLICT]:
        print(
            "sessions_copy: some sessions are at the same version with other facts in"
            " both databases (they diverged): those were left as they are at the target",
            file=sys.stderr,
        )
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
