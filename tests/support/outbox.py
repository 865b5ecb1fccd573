"""Read the alert outbox in tests: the rows a producer wrote, oldest first, detached."""

from __future__ import annotations

from sqlalchemy import ColumnElement, select

from core.services import Services
from db.models import AlertOutboxRow


def alert_rows(services: Services, *where: ColumnElement[bool]) -> list[AlertOutboxRow]:
    """Return the outbox rows matching ``where`` (e.g. a kind), oldest first."""
    with services.db.transaction() as session:
        rows = list(session.scalars(select(AlertOutboxRow).where(*where)
                                    .order_by(AlertOutboxRow.id)))
        session.expunge_all()
    return rows
