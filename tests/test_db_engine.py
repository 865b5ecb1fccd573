"""The PostgreSQL pool pings only connections that sat idle, and replaces dead ones."""

from __future__ import annotations

import psycopg
import pytest
from sqlalchemy import event, text

from db import engine as engine_module
from db.engine import Database
from tests.support.pg import PostgresServer


def _statements(db: Database) -> list[str]:
    seen: list[str] = []
    event.listen(db.engine, "before_cursor_execute",
                 lambda _c, _cur, statement, *_a: seen.append(statement))
    return seen


def _backend_pid(db: Database) -> int:
    with db.transaction() as session:
        return int(session.execute(text("SELECT pg_backend_pid()")).scalar_one())


@pytest.mark.postgres
def test_a_connection_used_moments_ago_is_handed_out_without_a_ping(
    pg_server: PostgresServer,
) -> None:
    pg_server.create_database("ping_busy")
    db = Database(pg_server.url("ping_busy"))
    try:
        first = _backend_pid(db)
        seen = _statements(db)
        assert _backend_pid(db) == first
        assert seen == ["SELECT pg_backend_pid()"]  # no ping round trip before it
    finally:
        db.dispose()


@pytest.mark.postgres
def test_an_idle_connection_killed_by_the_server_is_replaced_before_use(
    pg_server: PostgresServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    pg_server.create_database("ping_idle")
    db = Database(pg_server.url("ping_idle"))
    try:
        victim = _backend_pid(db)
        with psycopg.connect(host="127.0.0.1", port=pg_server.port, user="postgres",
                             dbname="ping_idle", autocommit=True) as admin:
            admin.execute("SELECT pg_terminate_backend(%s)", (victim,))
        monkeypatch.setattr(engine_module, "PING_AFTER_IDLE_S", 0.0)  # "idle long enough"
        assert _backend_pid(db) != victim  # the dead connection was pinged and discarded
    finally:
        db.dispose()
