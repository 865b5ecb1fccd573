"""Appending to the audit chain: a batch keeps consecutive ids and an intact hash chain."""

from __future__ import annotations

from sqlalchemy import select

from core import audit
from core.audit import AuditEvent, append, append_many, row_digest, verify
from core.domain import ClientInfo
from core.services import Services
from db.models import AuditHeadRow, AuditRow


def _events(count: int) -> list[AuditEvent]:
    clients = [ClientInfo(ip="10.0.0.7", user_agent="pytest", channel="web"), None]
    return [AuditEvent(action=f"test.batch{n}", resource=f"order:{n}", actor_user_id=n or None,
                       actor_username="rahul" if n % 2 else None, household_id=1,
                       outcome=audit.OK if n % 2 else audit.DENIED,
                       details={"n": n, "note": "ünïcode ₹"}, client=clients[n % 2])
            for n in range(count)]


def test_a_batch_of_three_then_one_event_take_consecutive_ids_and_the_chain_verifies(
        services: Services) -> None:
    with services.db.transaction() as session:
        before = session.get(AuditHeadRow, 1)
        assert before is not None
        first = before.last_id + 1
        ids = append_many(session, _events(3))
        ids.append(append(session, _events(1)[0]))
    assert ids == [first, first + 1, first + 2, first + 3]
    with services.db.transaction() as session:
        rows = list(session.scalars(select(AuditRow).where(AuditRow.id >= first)
                                    .order_by(AuditRow.id)))
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        assert (head.last_id, head.last_hash) == (first + 3, rows[-1].row_hash)
    assert [row.action for row in rows] == ["test.batch0", "test.batch1", "test.batch2",
                                            "test.batch0"]
    assert rows[0].client == "web · 10.0.0.7 · pytest" and rows[0].client_ip == "10.0.0.7"
    assert rows[1].client == "system" and rows[1].client_ip is None
    assert all(row.row_hash == row_digest(row) for row in rows)
    assert [row.prev_hash for row in rows[1:]] == [row.row_hash for row in rows[:-1]]
    result = verify(services.db)
    assert result.ok, result.describe()


def test_a_batch_rolled_back_with_its_transaction_leaves_no_rows_and_the_head_as_it_was(
        services: Services) -> None:
    with services.db.transaction() as session:
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        before = (head.last_id, head.last_hash)
    try:
        with services.db.transaction() as session:
            append_many(session, _events(2))
            raise RuntimeError("the caller's change failed")
    except RuntimeError:
        pass
    with services.db.transaction() as session:
        head = session.get(AuditHeadRow, 1)
        assert head is not None
        assert (head.last_id, head.last_hash) == before
        assert session.scalar(select(AuditRow.id).where(AuditRow.id > before[0])) is None
    assert verify(services.db).ok
