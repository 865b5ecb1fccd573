"""The audit trail is append-only in the database and its hash chain exposes tampering."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from core.audit import canonical_details, verify
from core.config import PROJECT_ROOT
from core.services import AuditFilter, Services
from core.services.audit_log import readable_details
from db.models import AuditHeadRow, AuditRow

APPEND_ONLY = "audit_log is append-only"


def _rows(services: Services) -> list[tuple[object, ...]]:
    with services.db.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(text("SELECT * FROM audit_log ORDER BY id"))]


def _drop_triggers(services: Services) -> None:
    """What an attacker with DDL rights does first."""
    suffix = " ON audit_log" if services.db.dialect == "postgresql" else ""
    with services.db.engine.begin() as conn:
        for verb in ("update", "delete"):
            conn.execute(text(f"DROP TRIGGER audit_log_no_{verb}{suffix}"))


def _raw(services: Services, sql: str, **params: object) -> None:
    with services.db.engine.begin() as conn:
        conn.execute(text(sql), params)


def _last_id(services: Services) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.max(AuditRow.id))) or 0)


def _cli_verify(url: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": url}
    return subprocess.run(
        [sys.executable, "-m", "core.audit", "verify"],
        cwd=PROJECT_ROOT, env=env, capture_output=True, text=True, timeout=120, check=False,
    )


def test_the_demo_audit_chain_verifies_and_counts_every_row(services: Services) -> None:
    result = verify(services.db)
    with services.db.transaction() as session:
        count = session.scalar(select(func.count()).select_from(AuditRow))
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        head_last_id = head.last_id
    assert result.ok, result.describe()
    assert count and count > 10
    assert result.rows_checked == count == head_last_id
    assert result.first_bad_id is None
    assert result.describe() == f"audit chain OK: {count} rows verified"


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE audit_log SET details = 'forged' WHERE id = 2",
        "UPDATE audit_log SET outcome = 'ok'",
        "DELETE FROM audit_log WHERE id = 2",
        "DELETE FROM audit_log",
    ],
)
def test_the_database_refuses_to_update_or_delete_audit_rows(
    services: Services, statement: str
) -> None:
    before = _rows(services)
    with pytest.raises(DBAPIError, match=APPEND_ONLY):
        _raw(services, statement)
    assert _rows(services) == before
    assert verify(services.db).ok


def test_editing_a_row_behind_the_triggers_back_is_caught_at_exactly_that_row(
    services: Services,
) -> None:
    _drop_triggers(services)
    _raw(services, "UPDATE audit_log SET details = :d WHERE id = 3", d='{"name":"Forged"}')
    result = verify(services.db)
    assert not result.ok
    assert result.first_bad_id == 3
    assert result.rows_checked == 2
    assert "edited" in result.reason
    assert result.describe().startswith("audit chain BROKEN at row 3:")


def test_deleting_a_middle_row_behind_the_triggers_back_names_the_gap(
    services: Services,
) -> None:
    _drop_triggers(services)
    _raw(services, "DELETE FROM audit_log WHERE id = 4")
    result = verify(services.db)
    assert not result.ok
    assert result.first_bad_id == 5
    assert result.rows_checked == 3
    assert "expected row 4 next but found row 5" in result.reason
    assert "deleted" in result.reason


def test_deleting_the_last_row_is_reported_as_rows_missing_at_the_end(
    services: Services,
) -> None:
    last = _last_id(services)
    _drop_triggers(services)
    _raw(services, "DELETE FROM audit_log WHERE id = :id", id=last)
    result = verify(services.db)
    assert not result.ok
    assert result.rows_checked == last - 1
    assert result.first_bad_id == last
    assert "missing" in result.reason
    assert "end of the chain" in result.reason


def test_the_verify_cli_exits_0_on_a_good_chain_and_1_naming_the_bad_row(
    services: Services, demo_url: str
) -> None:
    good = _cli_verify(demo_url)
    assert good.returncode == 0, good.stderr
    assert "audit chain OK" in good.stdout

    _drop_triggers(services)
    _raw(services, "UPDATE audit_log SET resource = 'household:999' WHERE id = 2")
    bad = _cli_verify(demo_url)
    assert bad.returncode == 1, bad.stderr
    assert "audit chain BROKEN at row 2" in bad.stdout
    assert "edited" in bad.stdout


def test_every_audit_row_carries_a_timezone_aware_created_at(services: Services) -> None:
    with services.db.transaction() as session:
        stamps = session.scalars(select(AuditRow.created_at)).all()
    assert stamps
    for stamp in stamps:
        assert stamp.tzinfo is not None
        assert stamp.utcoffset() is not None


def test_indian_script_text_reads_as_typed_in_the_log_and_its_csv_and_the_chain_still_verifies(
    services: Services, login
) -> None:
    rahul = login("rahul")
    sunita = services.household.add_member(rahul, "सुनीता शर्मा", "parent")
    services.household.create_account(rahul, sunita.id, "सुनीता · पेंशन", "Long-term")
    with services.db.transaction() as session:  # what is stored and hashed is unchanged
        stored = session.scalar(select(AuditRow.details).where(AuditRow.action == "members.add"))
    assert stored == canonical_details({"name": "सुनीता शर्मा", "relationship": "parent"})
    assert "\\u0938\\u0941" in stored
    entries = services.audit.entries(rahul, AuditFilter(action_prefix="members.add"))
    assert list(entries["details"]) == ['{"name":"सुनीता शर्मा","relationship":"parent"}']
    accounts = services.audit.entries(rahul, AuditFilter(action_prefix="accounts.create"))
    assert "सुनीता · पेंशन" in accounts["details"].iloc[0]
    assert "\\u" not in accounts.to_csv(index=False)
    stored_mixed = '{"a":1.5,"b":[1,null],"c":"\\u0905"}'
    assert readable_details(stored_mixed) == '{"a":1.5,"b":[1,null],"c":"अ"}'
    assert readable_details("not json") == "not json"
    assert verify(services.db).ok
