"""SQLite plumbing shared by the sample apps: open, create, seed once, transact.

Each app holds exactly one connection for its lifetime (so ``:memory:`` works),
opened in autocommit mode; writes go through ``transaction``, which takes the
write lock up front (``BEGIN IMMEDIATE``) and rolls back on any exception. The
apps call sqlite synchronously from the event loop and never ``await`` inside a
transaction, so one request's transaction cannot interleave with another's.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path

from aiohttp import web

__all__ = ["DATABASE_KEY", "check_database", "database_context", "open_database", "transaction"]

DATABASE_KEY = web.AppKey("database", sqlite3.Connection)


def open_database(
    path: str, schema: str, seed: Callable[[sqlite3.Connection], None]
) -> sqlite3.Connection:
    """Open ``path``, create ``schema`` if needed and run ``seed`` on the very first start."""
    if path != ":memory:" and not path.startswith("file:"):
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
    conn.row_factory = sqlite3.Row
    conn.execute("PRAGMA foreign_keys = ON")
    if path != ":memory:":
        conn.execute("PRAGMA journal_mode = WAL")
    for statement in _statements(schema):
        conn.execute(statement)
    conn.execute("CREATE TABLE IF NOT EXISTS seed_state (seeded_at TEXT NOT NULL)")
    with transaction(conn):
        if conn.execute("SELECT COUNT(*) FROM seed_state").fetchone()[0] == 0:
            seed(conn)
            conn.execute("INSERT INTO seed_state (seeded_at) VALUES (datetime('now'))")
    return conn


def _statements(schema: str) -> list[str]:
    return [part.strip() for part in schema.split(";") if part.strip()]


@contextlib.contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def database_context(
    path: str, schema: str, seed: Callable[[sqlite3.Connection], None]
) -> Callable[[web.Application], contextlib.AbstractAsyncContextManager[None]]:
    """A ``cleanup_ctx`` entry: open the database at startup, close it at cleanup."""

    @contextlib.asynccontextmanager
    async def lifespan(app: web.Application) -> AsyncIterator[None]:
        conn = open_database(path, schema, seed)
        app[DATABASE_KEY] = conn
        try:
            yield
        finally:
            conn.close()

    return lifespan


def check_database(app: web.Application) -> None:
    """Readiness check: the connection answers a query."""
    app[DATABASE_KEY].execute("SELECT 1").fetchone()
