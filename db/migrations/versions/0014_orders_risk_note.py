"""orders: the size asked and the risk gate's note when the gate cut it (for the order's alerts)

Revision ID: 0014_orders_risk_note
Revises: 0013_risk_limits_own_fields
Create Date: 2026-11-22 15:00:00.000000

"""
import json
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0014_orders_risk_note'
down_revision: Union[str, Sequence[str], None] = '0013_risk_limits_own_fields'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: the two columns, filled for existing orders from their orders.place
    audit rows (which held the note until now)."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('requested_quantity', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('risk_note', sa.String(length=300), nullable=True))
    audit = sa.table('audit_log', sa.column('action', sa.String()),
                     sa.column('resource', sa.String()), sa.column('details', sa.Text()))
    orders = sa.table('orders', sa.column('id', sa.BigInteger()),
                      sa.column('requested_quantity', sa.Integer()),
                      sa.column('risk_note', sa.String()))
    bind = op.get_bind()
    found = bind.execute(sa.select(audit.c.resource, audit.c.details).where(
        audit.c.action == 'orders.place', audit.c.resource.like('order:%'),
        audit.c.details.like('%"requested_quantity"%')))
    for resource, details in found.all():
        note = json.loads(details)
        asked = note.get('requested_quantity')
        if not isinstance(asked, int):
            continue
        bind.execute(orders.update().where(
            orders.c.id == int(resource.removeprefix('order:'))).values(
            requested_quantity=asked, risk_note=str(note.get('risk_gate') or '')[:300]))


def downgrade() -> None:
    """Downgrade schema: the audit rows keep the notes."""
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_column('risk_note')
        batch_op.drop_column('requested_quantity')
