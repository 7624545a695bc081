"""PostgreSQL for tests: a throwaway database per test on the local server.

Every machine of this project (developers' and CI's) has PostgreSQL 15 on
127.0.0.1:5432 (trust authentication, role root). Elsewhere the PostgreSQL
tests skip with one line saying how to run them; in CI (`CI=true`) they fail
instead, so a CI run never passes without them.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cache
from typing import Any

import psycopg
import pytest

SERVER = os.environ.get("CDS_TEST_POSTGRES", "postgresql://root@127.0.0.1:5432")
HOWTO = (
    "PostgreSQL not reachable on 127.0.0.1:5432: start it, or run in CI (CI=true)"
    " where it always runs"
)


def in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def admin(database: str = "postgres") -> psycopg.Connection[Any]:
    return psycopg.connect(f"{SERVER}/{database}", autocommit=True, connect_timeout=3)


@cache
def _unreachable() -> str:
    """Why the server cannot be used ("" when it can)."""
    try:
        with admin() as connection:
            connection.execute("SELECT 1")
    except psycopg.Error as error:
        return str(error).strip().splitlines()[0]
    return ""


def require() -> None:
    """Skip (or, in CI, fail) the calling test unless PostgreSQL answers."""
    reason = _unreachable()
    if not reason:
        return
    if in_ci():
        pytest.fail(f"CI=true but PostgreSQL is unusable ({reason}): {HOWTO}")
    pytest.skip(HOWTO)


def url(database: str) -> str:
    return f"{SERVER}/{database}"


@contextmanager
def scratch_database() -> Iterator[str]:
    """A new empty database (`cds_test_<random>`), dropped afterwards; yields its URL."""
    require()
    name = f"cds_test_{secrets.token_hex(6)}"
    with admin() as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url(name)
    finally:
        with admin() as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def query(database_url: str, sql: str, params: Any = None) -> list[tuple[Any, ...]]:
    """Rows of one statement, on a connection of its own."""
    with psycopg.connect(database_url, autocommit=True, connect_timeout=3) as connection:
        cursor = connection.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def database_name(database_url: str) -> str:
    return database_url.rsplit("/", 1)[1]


def terminate_backends(database_url: str) -> int:
    """pg_terminate_backend every other connection to the database; how many."""
    rows = query(
        url("postgres"),
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = %s AND pid <> pg_backend_pid()",
        (database_name(database_url),),
    )
    return len(rows)


def allow_connections(database_url: str, allowed: bool) -> None:
    """Make the database refuse (or accept again) new connections, as a server
    going down would, without touching other databases."""
    name = database_name(database_url)
    query(url("postgres"), f'ALTER DATABASE "{name}" WITH ALLOW_CONNECTIONS {str(allowed).lower()}')
