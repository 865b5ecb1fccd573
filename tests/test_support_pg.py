"""Tests for the throwaway PostgreSQL helper in ``tests/support/pg.py``."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import sqlalchemy

from tests.support import pg
from tests.support.pg import PostgresServer, require_postgres_or_skip


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    """One server shared by the tests in this module."""
    bindir = require_postgres_or_skip()
    with PostgresServer(bindir) as running:
        yield running


def _scalar(url: str, query: str) -> object:
    engine = sqlalchemy.create_engine(url)
    try:
        with engine.connect() as conn:
            return conn.execute(sqlalchemy.text(query)).scalar_one()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_server_starts_and_serves_a_database_cloned_from_a_template(
    server: PostgresServer,
) -> None:
    server.create_database("sher_template")
    engine = sqlalchemy.create_engine(server.url("sher_template"))
    with engine.begin() as conn:
        conn.execute(sqlalchemy.text("CREATE TABLE marker (note text)"))
        conn.execute(sqlalchemy.text("INSERT INTO marker VALUES ('from the template')"))
    engine.dispose()

    server.create_database("sher_clone", template="sher_template")

    version = _scalar(server.url("sher_clone"), "select version()")
    assert isinstance(version, str)
    assert version.startswith("PostgreSQL ")
    assert _scalar(server.url("sher_clone"), "select note from marker") == "from the template"


@pytest.mark.postgres
def test_cloning_a_template_disconnects_sessions_still_open_on_it(
    server: PostgresServer,
) -> None:
    server.create_database("busy_template")
    with psycopg.connect(
        host="127.0.0.1", port=server.port, user="postgres", dbname="busy_template"
    ) as lingering:
        server.create_database("busy_clone", template="busy_template")
        with pytest.raises(psycopg.OperationalError):
            lingering.execute("select 1")

    assert _scalar(server.url("busy_clone"), "select current_database()") == "busy_clone"


@pytest.mark.postgres
def test_dropping_a_database_removes_it_even_while_someone_is_connected(
    server: PostgresServer,
) -> None:
    server.create_database("doomed")
    engine = sqlalchemy.create_engine(server.url("doomed"), poolclass=sqlalchemy.NullPool)
    conn = engine.connect()
    try:
        server.drop_database("doomed")
    finally:
        conn.invalidate()
        engine.dispose()

    count = _scalar(server.url(), "select count(*) from pg_database where datname = 'doomed'")
    assert count == 0
    server.drop_database("doomed")  # dropping a missing database is harmless


@pytest.mark.postgres
def test_stop_shuts_the_server_down_and_removes_its_temporary_directory() -> None:
    server = PostgresServer(require_postgres_or_skip())
    server.start()
    root, port = server.root, server.port
    assert root is not None and root.is_dir()
    assert port is not None
    assert server.startup_seconds is not None

    server.stop()

    assert not root.exists()
    assert server.root is None and not server.running
    with pytest.raises(OSError), socket.create_connection(("127.0.0.1", port), timeout=2):
        pass
    server.stop()  # stopping twice is harmless


def test_start_names_the_missing_binary_when_postgres_is_not_installed(tmp_path: Path) -> None:
    server = PostgresServer(tmp_path)
    with pytest.raises(RuntimeError, match="initdb"):
        server.start()
    assert server.root is None


def test_missing_postgres_skips_unless_it_is_required(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(pg, "find_pg_bindir", lambda: None)
    monkeypatch.delenv(pg.REQUIRE_ENV_VAR, raising=False)
    with pytest.raises(pytest.skip.Exception, match="PostgreSQL"):
        require_postgres_or_skip()


def test_missing_postgres_fails_when_sher_require_postgres_is_set(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(pg, "find_pg_bindir", lambda: None)
    monkeypatch.setenv(pg.REQUIRE_ENV_VAR, "1")
    with pytest.raises(pytest.fail.Exception, match="SHER_REQUIRE_POSTGRES=1"):
        require_postgres_or_skip()
