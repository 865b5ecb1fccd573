"""The append-only, hash-chained audit trail.

Each row's ``row_hash`` is SHA-256 over its fields and the previous row's hash; ids are assigned
gap-free from ``audit_head``, which also serialises concurrent writers (app and worker) on both
SQLite and PostgreSQL. ``python -m core.audit verify`` checks the chain and names the first bad row.
"""

from __future__ import annotations

import argparse
import functools
import hashlib
import json
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC
from typing import Any, cast

from sqlalchemy import (
    BigInteger,
    String,
    Table,
    Update,
    bindparam,
    insert,
    select,
    union_all,
    update,
)
from sqlalchemy.orm import Session

from core.domain import ClientInfo
from db.base import utcnow
from db.engine import Database
from db.models import AuditHeadRow, AuditRow

GENESIS_HASH = "0" * 64
_AUDIT_TABLE = cast(Table, AuditRow.__table__)
_COLUMNS = ("id", "created_at", "actor_user_id", "actor_username", "household_id", "action",
            "resource", "outcome", "details", "client", "client_ip", "prev_hash", "row_hash")
#: The columns a row's hash covers, in hashing order (every column but ``row_hash``).
_HASHED = _COLUMNS[:-1]
OK = "ok"
DENIED = "denied"
FAILED = "failed"


def canonical_details(details: Mapping[str, Any] | None) -> str:
    """Serialise details deterministically (sorted keys, no spaces)."""
    return json.dumps(details or {}, sort_keys=True, separators=(",", ":"), default=str)


def row_digest(row: AuditRow) -> str:
    """Return the hash a row must carry, from its stored fields and ``prev_hash``."""
    return _digest({column: getattr(row, column) for column in _HASHED})


def _digest(values: Mapping[str, Any]) -> str:
    """Return the hash of a row given as ``{column: value}`` (the columns of ``_HASHED``)."""
    payload = [values[column] for column in _HASHED]
    payload[1] = values["created_at"].astimezone(UTC).isoformat(timespec="microseconds")
    encoded = json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()
    return hashlib.sha256(encoded).hexdigest()


@dataclass(frozen=True, slots=True)
class AuditEvent:
    """What happened, by whom, to what."""

    action: str
    resource: str
    actor_user_id: int | None = None
    actor_username: str | None = None
    household_id: int | None = None
    outcome: str = OK
    details: Mapping[str, Any] | None = None
    client: ClientInfo | None = None


def append(session: Session, event: AuditEvent) -> int:
    """Append ``event`` inside the caller's transaction and return its id."""
    return append_many(session, [event])[0]


def append_many(session: Session, events: Sequence[AuditEvent]) -> list[int]:
    """Append ``events`` in order inside the caller's transaction; return their ids.

    One lock of the chain head for all of them: consecutive ids, each row hashing the one
    before it, exactly as if appended one by one.
    """
    if not events:
        return []
    # Core statements on the session's connection: no ORM work per statement, and nothing
    # here needs the session's pending objects flushed first (the audit has no foreign keys).
    connection = session.connection()
    head = connection.execute(_CLAIM_IDS, {"count": len(events)}).one()
    prev_hash = head.last_hash
    first_id = head.last_id - len(events) + 1
    created_at = utcnow()
    rows = []
    for offset, event in enumerate(events):
        row: dict[str, Any] = {
            "id": first_id + offset,
            "created_at": created_at,
            "actor_user_id": event.actor_user_id,
            "actor_username": event.actor_username,
            "household_id": event.household_id,
            "action": event.action,
            "resource": event.resource,
            "outcome": event.outcome,
            "details": canonical_details(event.details),
            "client": (event.client or ClientInfo(channel="system")).describe()[:400],
            "client_ip": event.client.ip[:64] if event.client and event.client.ip else None,
            "prev_hash": prev_hash,
        }
        row["row_hash"] = prev_hash = _digest(row)
        rows.append(row)
    # Core statements built once: the rows are never read back through this session.
    if session.get_bind().dialect.name == "postgresql":
        # The rows and the new tip in one statement (a data-modifying WITH): one round trip.
        params = {f"row{n}_{column}": row[column] for n, row in enumerate(rows)
                  for column in _COLUMNS}
        connection.execute(_insert_and_tip(len(rows)), {**params, "tip": prev_hash})
    else:
        connection.execute(_INSERT_ROWS, rows)
        connection.execute(_SET_TIP, {"tip": prev_hash})
    return [row["id"] for row in rows]


_HEAD_TABLE = cast(Table, AuditHeadRow.__table__)
#: Take ``count`` ids from the head (locking it until commit); return the last id and the tip.
_CLAIM_IDS = (update(_HEAD_TABLE).where(_HEAD_TABLE.c.id == 1)
              .values(last_id=_HEAD_TABLE.c.last_id + bindparam("count", type_=BigInteger))
              .returning(_HEAD_TABLE.c.last_id, _HEAD_TABLE.c.last_hash))
_INSERT_ROWS = insert(_AUDIT_TABLE)
_SET_TIP = (update(_HEAD_TABLE).where(_HEAD_TABLE.c.id == 1)
            .values(last_hash=bindparam("tip", type_=String)))


@functools.cache
def _insert_and_tip(count: int) -> Update:
    """Return the PostgreSQL statement writing ``count`` rows and the new tip (built once).

    The rows come from a ``SELECT ... UNION ALL SELECT ...`` of bound parameters, not a
    multi-row ``VALUES``: SQLAlchemy cannot cache a multi-row ``VALUES`` statement and would
    compile it again on every append. Each row carries its own id, so their order is free.
    """
    rows = [select(*[bindparam(f"row{n}_{column}", type_=_AUDIT_TABLE.c[column].type)
                     for column in _COLUMNS]) for n in range(count)]
    source = rows[0] if count == 1 else union_all(*rows)
    written = insert(_AUDIT_TABLE).from_select(list(_COLUMNS), source).cte("new_audit_rows")
    return _SET_TIP.add_cte(written)


def append_now(db: Database, event: AuditEvent) -> int:
    """Append ``event`` in its own transaction (for refusals whose own transaction rolls back)."""
    with db.transaction() as session:
        return append(session, event)


@dataclass(frozen=True, slots=True)
class VerifyResult:
    """Outcome of a chain check."""

    ok: bool
    rows_checked: int
    first_bad_id: int | None = None
    reason: str = ""

    def describe(self) -> str:
        """Return the line the CLI prints."""
        if self.ok:
            return f"audit chain OK: {self.rows_checked} rows verified"
        return f"audit chain BROKEN at row {self.first_bad_id}: {self.reason}"


def verify(db: Database, batch: int = 2000) -> VerifyResult:
    """Recompute the chain from the first row and report the first row that does not fit."""
    expected_prev, expected_id, checked = GENESIS_HASH, 1, 0
    with db.transaction() as session:
        head = session.get(AuditHeadRow, 1)
        last_seen = 0
        while True:
            rows = session.scalars(
                select(AuditRow).where(AuditRow.id > last_seen).order_by(AuditRow.id).limit(batch)
            ).all()
            if not rows:
                break
            for row in rows:
                problem = _check_row(row, expected_id, expected_prev)
                if problem:
                    return VerifyResult(False, checked, row.id, problem)
                expected_prev, expected_id, checked = row.row_hash, row.id + 1, checked + 1
            last_seen = rows[-1].id
            session.expunge_all()
        if head is None or head.last_id != checked or head.last_hash != expected_prev:
            missing = checked + 1
            return VerifyResult(False, checked, missing, "rows at the end of the chain are missing")
    return VerifyResult(True, checked)


def _check_row(row: AuditRow, expected_id: int, expected_prev: str) -> str:
    if row.id != expected_id:
        return f"expected row {expected_id} next but found row {row.id} (rows deleted)"
    if row.prev_hash != expected_prev:
        return "prev_hash does not match the previous row's hash (row replaced or reordered)"
    if row_digest(row) != row.row_hash:
        return "row contents do not match its hash (row edited)"
    return ""


def main(argv: list[str] | None = None) -> int:
    """CLI: ``python -m core.audit verify``; exit 0 when the chain holds, 1 when broken."""
    parser = argparse.ArgumentParser(prog="python -m core.audit", description=__doc__)
    parser.add_argument("command", choices=["verify"])
    parser.add_argument("--database-url", default=None, help="default: DATABASE_URL")
    args = parser.parse_args(argv)
    from core.config import get_settings

    db = Database(args.database_url or get_settings().database_url)
    result = verify(db)
    print(result.describe())
    db.dispose()
    return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
