"""The Alembic migrations build exactly the models' schema, the same on SQLite and PostgreSQL."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import Engine, inspect, text, types

import db.models  # noqa: F401  (registers the tables on Base.metadata)
from db.base import Base
from db.engine import make_engine
from db.migrate import alembic_config, upgrade
from tests.support.pg import PostgresServer

TABLES = {
    "households", "users", "members", "accounts", "account_grants", "auth_sessions",
    "audit_log", "audit_head", "worker_lock",
}
TRIGGERS = {"audit_log_no_update", "audit_log_no_delete"}


def _new_sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / f'fresh-{uuid.uuid4().hex[:8]}.db'}"


def _new_pg_url(request: pytest.FixtureRequest) -> str:
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"m_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    return server.url(name)


@pytest.fixture
def unmigrated_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    """URL of a brand-new database that has never been migrated."""
    return _new_sqlite_url(tmp_path) if backend == "sqlite" else _new_pg_url(request)


@pytest.fixture
def engine_for() -> Iterator[Any]:
    """Return a function making engines that are disposed after the test."""
    engines: list[Engine] = []

    def _make(url: str) -> Engine:
        engine = make_engine(url)
        engines.append(engine)
        return engine

    yield _make
    for engine in engines:
        engine.dispose()


def _schema_diff(engine: Engine) -> list[Any]:
    with engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        return list(compare_metadata(context, Base.metadata))


def _triggers(engine: Engine) -> set[str]:
    with engine.connect() as conn:
        if engine.dialect.name == "sqlite":
            query = "SELECT name FROM sqlite_master WHERE type = 'trigger'"
        else:
            query = "SELECT tgname FROM pg_trigger WHERE NOT tgisinternal"
        return {row[0] for row in conn.execute(text(query))}


def _type_family(column_type: types.TypeEngine[Any]) -> str:
    """Reduce a reflected type to a family both databases can agree on."""
    if isinstance(column_type, types.Integer):  # INTEGER, BIGINT, SMALLINT
        return "integer"
    if isinstance(column_type, types.Boolean):
        return "boolean"
    if isinstance(column_type, types.DateTime):
        return "datetime"
    if isinstance(column_type, types.Numeric):
        return f"numeric({column_type.precision},{column_type.scale})"
    if isinstance(column_type, types.Text):
        return "text"
    if isinstance(column_type, types.String):
        return f"string({column_type.length})"
    return f"other:{type(column_type).__name__}"


def _describe_schema(engine: Engine) -> dict[str, dict[str, Any]]:
    """Return every table's columns, keys, unique sets and named indexes, normalised."""
    inspector = inspect(engine)
    schema: dict[str, dict[str, Any]] = {}
    for table in sorted(inspector.get_table_names()):
        indexes = inspector.get_indexes(table)
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table)}
        uniques |= {tuple(i["column_names"]) for i in indexes if i["unique"]}
        schema[table] = {
            "columns": {
                c["name"]: (_type_family(c["type"]), "null" if c["nullable"] else "not null")
                for c in inspector.get_columns(table)
            },
            "primary_key": tuple(inspector.get_pk_constraint(table)["constrained_columns"]),
            "foreign_keys": sorted(
                (tuple(fk["constrained_columns"]), fk["referred_table"],
                 tuple(fk["referred_columns"]))
                for fk in inspector.get_foreign_keys(table)
            ),
            "unique": sorted(uniques),
            "indexes": sorted(
                (i["name"], tuple(i["column_names"]), bool(i["unique"]))
                for i in indexes
                if not i.get("duplicates_constraint") and not i["unique"]
            ),
        }
    return schema


def _differences(left: dict[str, Any], right: dict[str, Any], path: str = "") -> list[str]:
    """Return readable lines for every place two nested dicts disagree."""
    lines = []
    for key in sorted(set(left) | set(right)):
        where = f"{path}.{key}" if path else str(key)
        a, b = left.get(key, "<missing>"), right.get(key, "<missing>")
        if isinstance(a, dict) and isinstance(b, dict):
            lines += _differences(a, b, where)
        elif a != b:
            lines.append(f"{where}: sqlite={a!r} postgres={b!r}")
    return lines


def test_migrating_a_fresh_database_to_head_builds_exactly_the_models(
    unmigrated_url: str, engine_for: Any
) -> None:
    upgrade(unmigrated_url)
    engine = engine_for(unmigrated_url)
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert _schema_diff(engine) == []
    assert _triggers(engine) == TRIGGERS
    with engine.connect() as conn:
        head = conn.execute(text("SELECT id, last_id, last_hash FROM audit_head")).all()
    assert head == [(1, 0, "0" * 64)]


@pytest.mark.postgres
def test_sqlite_and_postgresql_get_the_same_schema_from_the_migrations(
    request: pytest.FixtureRequest, tmp_path: Path, engine_for: Any
) -> None:
    sqlite_url, pg_url = _new_sqlite_url(tmp_path), _new_pg_url(request)
    upgrade(sqlite_url)
    upgrade(pg_url)
    on_sqlite = _describe_schema(engine_for(sqlite_url))
    on_postgres = _describe_schema(engine_for(pg_url))
    assert set(on_sqlite) >= TABLES
    assert on_sqlite["users"]["unique"] == [("username",)]
    assert ("ix_audit_log_action_resource_created_at", ("action", "resource", "created_at"),
            False) in on_sqlite["audit_log"]["indexes"]
    differences = _differences(on_sqlite, on_postgres)
    assert not differences, "schemas differ:\n" + "\n".join(differences)


def test_downgrading_to_base_and_upgrading_again_rebuilds_the_schema(
    unmigrated_url: str, engine_for: Any
) -> None:
    config = alembic_config(unmigrated_url)
    command.upgrade(config, "head")
    command.downgrade(alembic_config(unmigrated_url), "base")
    engine = engine_for(unmigrated_url)
    assert set(inspect(engine).get_table_names()) <= {"alembic_version"}
    assert _triggers(engine) == set()
    if engine.dialect.name == "postgresql":
        with engine.connect() as conn:
            functions = conn.execute(
                text("SELECT proname FROM pg_proc WHERE proname = 'audit_log_append_only'")
            ).all()
        assert functions == []
    engine.dispose()

    command.upgrade(alembic_config(unmigrated_url), "head")
    assert set(inspect(engine).get_table_names()) >= TABLES
    assert _schema_diff(engine) == []
    assert _triggers(engine) == TRIGGERS


def _one_account(conn: Any, at: str) -> None:
    """Insert household 1 with member 1 (Priya) and her paper account 1, at ``at``."""
    conn.execute(text(f"INSERT INTO households (id, name, created_at, updated_at) "
                      f"VALUES (1, 'Sharma', {at}, {at})"))
    conn.execute(text(f"INSERT INTO members (id, household_id, full_name, relationship, "
                      f"verification_status, created_at, updated_at) VALUES "
                      f"(1, 1, 'Priya', 'self', 'verified', {at}, {at})"))
    conn.execute(text(f"INSERT INTO accounts (id, household_id, owner_member_id, broker, "
                      f"label, account_group, is_active, created_at, updated_at) VALUES "
                      f"(1, 1, 1, 'paper', 'Trading', 'Trading', true, {at}, {at})"))


def test_an_accounts_stored_limits_keep_as_its_own_only_those_unlike_the_households(
    unmigrated_url: str, engine_for: Any
) -> None:
    command.upgrade(alembic_config(unmigrated_url), "0012_orders_account_status")
    engine = engine_for(unmigrated_url)
    columns = ("risk_per_trade_pct, atr_stop_multiple, fallback_stop_pct, "
               "high_volatility_atr_pct, max_open_positions, max_sector_pct, "
               "correlation_threshold, correlation_reduce, daily_loss_pct, weekly_loss_pct, "
               "drawdown_reduce_pct, drawdown_kill_pct, choppy_size_factor, "
               "max_orders_per_second, max_order_value, max_order_quantity, duplicate_window_s, "
               "mis_square_off_at")
    row = ("1, 2, 2, 4, {positions}, 30, 0.8, false, {daily}, 5, 10, 15, 0.5, 10, 500000, "
           "5000, 10, '15:15:00'")
    at = "'2026-11-20 10:00:00+05:30'"
    with engine.begin() as conn:
        _one_account(conn, at)
        for key, account, values in (("household:1", "NULL", row.format(positions=10,
                                                                         daily="1.5")),
                                     ("account:1", "1", row.format(positions=5, daily="1.5"))):
            conn.execute(text(f"INSERT INTO risk_limits (household_id, account_id, scope_key, "
                              f"{columns}, updated_at) VALUES (1, {account}, '{key}', "
                              f"{values}, {at})"))
    command.upgrade(alembic_config(unmigrated_url), "head")
    with engine.connect() as conn:
        own = conn.execute(text("SELECT scope_key, own_fields FROM risk_limits "
                                "ORDER BY scope_key")).all()
    assert own == [("account:1", '["max_open_positions"]'), ("household:1", None)]
    command.downgrade(alembic_config(unmigrated_url), "0012_orders_account_status")


def test_an_order_the_gate_cut_gets_its_asked_size_and_note_from_its_audit_row(
    unmigrated_url: str, engine_for: Any
) -> None:
    command.upgrade(alembic_config(unmigrated_url), "0013_risk_limits_own_fields")
    engine = engine_for(unmigrated_url)
    at = "'2026-11-20 10:00:00+05:30'"
    note = json.dumps({"quantity": 5, "requested_quantity": 10,
                       "risk_gate": "market regime CHOPPY: size × 0.5 → 5 shares"})
    with engine.begin() as conn:
        _one_account(conn, at)
        conn.execute(text(f"INSERT INTO instruments (id, symbol, exchange, segment, tick_size, "
                          f"lot_size, is_active, created_at, updated_at) VALUES "
                          f"(1, 'INFY', 'NSE', 'EQ', 0.05, 1, true, {at}, {at})"))
        for order_id, quantity in ((1, 5), (2, 3)):
            conn.execute(text(
                f"INSERT INTO orders (id, client_order_id, account_id, instrument_id, symbol, "
                f"side, quantity, order_type, product, validity, is_amo, status, "
                f"filled_quantity, broker, source, created_at, updated_at) VALUES ({order_id}, "
                f"'c{order_id}', 1, 1, 'INFY', 'BUY', {quantity}, 'MARKET', 'MIS', 'DAY', false, "
                f"'OPEN', 0, 'paper', 'web', {at}, {at})"))
        for audit_id, resource, details in ((1, "order:1", note),
                                            (2, "order:2", json.dumps({"quantity": 3}))):
            conn.execute(text(
                "INSERT INTO audit_log (id, created_at, household_id, action, resource, outcome, "
                "details, client, prev_hash, row_hash) VALUES (:id, :at, 1, 'orders.place', "
                ":resource, 'ok', :details, 'test', '0', '0')"),
                {"id": audit_id, "at": "2026-11-20 10:00:00+05:30", "resource": resource,
                 "details": details})
    command.upgrade(alembic_config(unmigrated_url), "head")
    with engine.connect() as conn:
        rows = conn.execute(text("SELECT id, requested_quantity, risk_note FROM orders "
                                 "ORDER BY id")).all()
    assert [tuple(row) for row in rows] == [
        (1, 10, "market regime CHOPPY: size × 0.5 → 5 shares"), (2, None, None)]
    command.downgrade(alembic_config(unmigrated_url), "0013_risk_limits_own_fields")
