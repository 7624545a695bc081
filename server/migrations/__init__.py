"""Versioned schema migrations for the session stores.

Each store has a folder of SQL files named `NNNN_what_it_does.sql`, numbered
from 0001 without gaps (`sqlite/`, `postgres/`). A database records the ones it
has in a `schema_migrations` table (version, name, when); a store brings its
database up to date when it opens it, applying the missing files in order,
each with its record, under a lock that makes processes opening one database
together apply every file exactly once (SQLite: one `BEGIN IMMEDIATE`
transaction; PostgreSQL: `pg_advisory_lock`). A file once released is never
edited: a change to the schema is a new file.

The runners are in the stores (`server.store`, `server.store_postgres`); this
module only reads the files.
"""

from __future__ import annotations

import re
import sqlite3
from dataclasses import dataclass
from functools import cache
from importlib import resources

_NAME = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str  # the file name, e.g. 0002_conclusions_snapshot.sql
    sql: str


@cache
def load(kind: str) -> tuple[Migration, ...]:
    """The migrations of `kind` ("sqlite" or "postgres"), in order.

    `ValueError` if a file is misnamed or the numbers have a gap or a repeat:
    a packaging mistake must not reach a database.
    """
    migrations = []
    for entry in resources.files(__package__).joinpath(kind).iterdir():
        if not entry.name.endswith(".sql"):
            continue
        match = _NAME.fullmatch(entry.name)
        if match is None:
            raise ValueError(f"migration file {kind}/{entry.name}: expected NNNN_name.sql")
        migrations.append(Migration(int(match[1]), entry.name, entry.read_text("utf-8")))
    migrations.sort(key=lambda migration: migration.version)
    numbers = [migration.version for migration in migrations]
    if numbers != list(range(1, len(numbers) + 1)):
        raise ValueError(f"{kind} migrations must be numbered 1..n without gaps: {numbers}")
    return tuple(migrations)


def sqlite_statements(sql: str) -> list[str]:
    """`sql` cut into single statements (sqlite3 executes one at a time, and
    `executescript` would commit the transaction the migration runs in)."""
    statements, pending = [], ""
    for line in sql.splitlines(keepends=True):
        pending += line
        if sqlite3.complete_statement(pending):
            statements.append(pending.strip())
            pending = ""
    if pending.strip() and not all(
        part.strip().startswith("--") or not part.strip() for part in pending.splitlines()
    ):
        raise ValueError("a migration ends with an incomplete statement")
    return statements
