"""Apply Alembic migrations from code (app start, tests, ``make run``)."""

from __future__ import annotations

import sys

from alembic import command
from alembic.config import Config

from core.config import PROJECT_ROOT, get_settings


def alembic_config(url: str) -> Config:
    """Return an Alembic config for the project's migrations against ``url``."""
    config = Config(toml_file=str(PROJECT_ROOT / "pyproject.toml"))
    config.attributes["database_url"] = url
    return config


def upgrade(url: str | None = None, revision: str = "head") -> None:
    """Upgrade the database at ``url`` (default DATABASE_URL) to ``revision``."""
    command.upgrade(alembic_config(url or get_settings().database_url), revision)


if __name__ == "__main__":
    upgrade(revision=sys.argv[1] if len(sys.argv) > 1 else "head")
