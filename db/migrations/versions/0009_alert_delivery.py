"""alert_outbox delivery: recipient user, urgency, attempts, next attempt, last error, channel

Revision ID: 0009_alert_delivery
Revises: 0007_job_runs
Create Date: 2026-11-21 14:55:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0009_alert_delivery'
down_revision: Union[str, Sequence[str], None] = '0007_job_runs'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema."""
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('user_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('urgent', sa.Boolean(), server_default=sa.false(), nullable=False))
        batch_op.add_column(sa.Column('attempts', sa.Integer(), server_default='0', nullable=False))
        batch_op.add_column(sa.Column('next_attempt_at', sa.DateTime(timezone=True), nullable=True))
        batch_op.add_column(sa.Column('last_error', sa.String(length=300), nullable=True))
        batch_op.add_column(sa.Column('channel', sa.String(length=20), nullable=True))
        batch_op.create_index('ix_alert_outbox_due', ['next_attempt_at'], unique=False, postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.create_index(batch_op.f('ix_alert_outbox_user_id'), ['user_id'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_alert_outbox_user_id_users'), 'users', ['user_id'], ['id'])
    # Rows written before delivery existed: pending ones are due from their creation, and the
    # old "delivered" status is now "sent".
    op.execute("UPDATE alert_outbox SET next_attempt_at = created_at WHERE status = 'pending'")
    op.execute("UPDATE alert_outbox SET status = 'sent' WHERE status = 'delivered'")


def downgrade() -> None:
    """Downgrade schema."""
    op.execute("UPDATE alert_outbox SET status = 'delivered' WHERE status = 'sent'")
    with op.batch_alter_table('alert_outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_alert_outbox_user_id_users'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_alert_outbox_user_id'))
        batch_op.drop_index('ix_alert_outbox_due', postgresql_where=sa.text("status = 'pending'"), sqlite_where=sa.text("status = 'pending'"))
        batch_op.drop_column('channel')
        batch_op.drop_column('last_error')
        batch_op.drop_column('next_attempt_at')
        batch_op.drop_column('attempts')
        batch_op.drop_column('urgent')
        batch_op.drop_column('user_id')
