"""Engines and sessions for SQLite and PostgreSQL, and a unit-of-work helper."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, create_engine, event, exc
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

SQLITE_BUSY_TIMEOUT_MS = 15_000
#: A pooled PostgreSQL connection idle longer than this is pinged before use (seconds).
PING_AFTER_IDLE_S = 10.0


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    """Enforce foreign keys, let app and worker share the file (WAL), wait on locks."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _create_private_file(path: Path) -> None:
    """Create the SQLite file owner-only (it holds password hashes); its -wal/-shm follow it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))


def make_engine(url: str) -> Engine:
    """Create an engine for ``url``; SQLite files get their directory created."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            _create_private_file(Path(parsed.database))
        engine = create_engine(url, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    engine = create_engine(url, pool_size=5, max_overflow=5)
    event.listen(engine, "checkin", _note_checkin)
    event.listen(engine, "checkout", _ping_if_idle)
    return engine


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    """Ping a connection that sat idle in the pool; a dead one is replaced, not handed out.

    SQLAlchemy's ``pool_pre_ping`` pings on every checkout: one extra round trip per
    transaction, a quarter of a short transaction's time. A connection in use seconds ago is
    alive; one idle for longer than :data:`PING_AFTER_IDLE_S` (a database restart, a dropped
    network path) is pinged, and raising ``DisconnectionError`` makes the pool discard it and
    connect afresh. A connection that dies within that window fails its statement, and the
    unit of work rolls back as for any other database error.
    """
    idle_since = record.info.get("checked_in")
    if idle_since is None or time.monotonic() - idle_since < PING_AFTER_IDLE_S:
        return
    try:
        cursor = dbapi_connection.cursor()
        try:
            cursor.execute("SELECT 1")
        finally:
            cursor.close()
        dbapi_connection.rollback()
    except Exception as error:
        raise exc.DisconnectionError(f"stale pooled connection: {error}") from error


class Database:
    """An engine plus a session factory; services open one unit of work per call."""

    def __init__(self, url: str) -> None:
        """Connect lazily to ``url``."""
        self.url = url
        self.engine = make_engine(url)
        self._sessions = sessionmaker(self.engine, expire_on_commit=False)

    @property
    def dialect(self) -> str:
        """Return 'sqlite' or 'postgresql'."""
        return self.engine.dialect.name

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """Yield a session in one transaction: commit on success, roll back on any error."""
        with self._sessions() as session, session.begin():
            yield session

    @contextmanager
    def reading(self) -> Iterator[Session]:
        """Yield a session for reads only, on a connection in autocommit.

        Each statement sees every change committed before it, as in a transaction at READ
        COMMITTED, without the BEGIN and COMMIT round trips: for hot paths that only read.
        Nothing written through it is rolled back on an error.
        """
        with self.engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn, \
                Session(bind=conn) as session:
            yield session

    def dispose(self) -> None:
        """Close pooled connections."""
        self.engine.dispose()
