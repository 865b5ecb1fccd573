"""Shared fixtures: a migrated, demo-seeded database on SQLite and on a real PostgreSQL.

Each backend is migrated and seeded once per test session into a template; every test gets
its own copy (a file copy for SQLite, ``CREATE DATABASE ... TEMPLATE`` for PostgreSQL).
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from core.config import Settings
from core.domain import Actor, ClientInfo
from core.seed import DemoLogin, seed_demo
from core.services import Services
from db.engine import Database
from db.migrate import upgrade
from tests.support.pg import PostgresServer, require_postgres_or_skip

TEST_SECRET = "test-secret-key-" + "x" * 40
TEST_CLIENT = ClientInfo(ip="127.0.0.1", user_agent="pytest", channel="test")
BACKENDS = [pytest.param("sqlite", id="sqlite"),
            pytest.param("postgres", id="postgres", marks=pytest.mark.postgres)]


def make_settings(url: str, **overrides: object) -> Settings:
    """Return test settings: fast bcrypt, fixed secret, the given database."""
    values: dict[str, object] = {"database_url": url, "secret_key": TEST_SECRET,
                                 "bcrypt_rounds": 4}
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


@dataclass
class Template:
    """A migrated (and maybe seeded) database to copy from."""

    source: str  # SQLite file path or PostgreSQL database name
    logins: dict[str, DemoLogin]


def _build(url: str, seed: bool) -> dict[str, DemoLogin]:
    upgrade(url)
    if not seed:
        return {}
    services = Services(Database(url), make_settings(url))
    logins = {login.username: login for login in seed_demo(services)}
    services.db.dispose()
    return logins


def fresh_sqlite_desk(templates: dict[bool, Template], where: Path
                      ) -> tuple[Services, dict[str, DemoLogin]]:
    """Return services over a new copy of the seeded SQLite template in ``where``.

    For hypothesis tests, whose examples each need a desk of their own.
    """
    where.mkdir(parents=True, exist_ok=True)
    target = where / "sher.db"
    shutil.copyfile(templates[True].source, target)
    url = f"sqlite:///{target}"
    return Services(Database(url), make_settings(url)), templates[True].logins


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    """A throwaway PostgreSQL server for the whole test session."""
    bindir = require_postgres_or_skip()
    with PostgresServer(bindir) as server:
        yield server


@pytest.fixture(scope="session")
def sqlite_templates(tmp_path_factory: pytest.TempPathFactory) -> dict[bool, Template]:
    """Migrated SQLite files: {seeded: Template}."""
    root = tmp_path_factory.mktemp("sqlite-templates")
    result = {}
    for seed in (False, True):
        path = root / f"template-{'seeded' if seed else 'empty'}.db"
        result[seed] = Template(str(path), _build(f"sqlite:///{path}", seed))
    return result


@pytest.fixture(scope="session")
def pg_templates(pg_server: PostgresServer) -> dict[bool, Template]:
    """Migrated PostgreSQL template databases: {seeded: Template}."""
    result = {}
    for seed in (False, True):
        name = f"sher_template_{'seeded' if seed else 'empty'}"
        pg_server.create_database(name)
        result[seed] = Template(name, _build(pg_server.url(name), seed))
    return result


def _fresh_url(request: pytest.FixtureRequest, backend: str, seeded: bool, tmp: Path) -> str:
    if backend == "sqlite":
        template = request.getfixturevalue("sqlite_templates")[seeded]
        target = tmp / "sher.db"
        shutil.copyfile(template.source, target)
        return f"sqlite:///{target}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    template = request.getfixturevalue("pg_templates")[seeded]
    name = f"t_{uuid.uuid4().hex[:12]}"
    server.create_database(name, template=template.source)
    request.addfinalizer(lambda: server.drop_database(name))
    return server.url(name)


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    """The database backend under test: 'sqlite' or 'postgres'."""
    return str(request.param)


@pytest.fixture
def empty_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """URL of a freshly migrated, empty database."""
    return _fresh_url(request, backend, False, tmp_path)


@pytest.fixture
def demo_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """URL of a freshly migrated database holding the demo household."""
    return _fresh_url(request, backend, True, tmp_path)


@pytest.fixture
def demo_logins(request: pytest.FixtureRequest, backend: str) -> dict[str, DemoLogin]:
    """The demo logins (username -> login with its password) of ``demo_url``."""
    templates = request.getfixturevalue(
        "sqlite_templates" if backend == "sqlite" else "pg_templates"
    )
    return templates[True].logins


@pytest.fixture
def services(demo_url: str) -> Iterator[Services]:
    """Services over a fresh demo database."""
    svc = Services(Database(demo_url), make_settings(demo_url))
    yield svc
    svc.db.dispose()


@pytest.fixture
def login(services: Services, demo_logins: dict[str, DemoLogin]):
    """Return a function that logs a demo user in and returns their Actor."""

    def _login(username: str) -> Actor:
        result = services.auth.login(username, demo_logins[username].password, TEST_CLIENT)
        assert result.session_id is not None
        return services.auth.check_session(result.session_id, TEST_CLIENT)

    return _login


@pytest.fixture
def desk(sqlite_templates, tmp_path, monkeypatch):
    """A demo SQLite desk that the app under test (AppTest) reads through DATABASE_URL."""
    template = sqlite_templates[True]
    target = tmp_path / "sher.db"
    shutil.copyfile(template.source, target)
    url = f"sqlite:///{target}"
    monkeypatch.setenv("DATABASE_URL", url)
    monkeypatch.setenv("SECRET_KEY", TEST_SECRET)
    monkeypatch.setenv("BCRYPT_ROUNDS", "4")
    monkeypatch.setenv("FEED_MODE", "off")
    svc = Services(Database(url), make_settings(url))
    yield svc, template.logins
    svc.db.dispose()
