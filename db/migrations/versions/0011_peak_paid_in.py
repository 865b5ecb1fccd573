"""equity peaks: the paid-in capital each peak counted (deposits and withdrawals shift it)

Revision ID: 0011_peak_paid_in
Revises: 0010_telegram
Create Date: 2026-11-22 11:00:00.000000

"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0011_peak_paid_in'
down_revision: Union[str, Sequence[str], None] = '0010_telegram'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: each stored peak counted the paper ledger up to when it was recorded."""
    with op.batch_alter_table('equity_peaks', schema=None) as batch_op:
        batch_op.add_column(sa.Column('paid_in', sa.Numeric(precision=18, scale=4),
                                      server_default='0', nullable=False))
    op.execute(
        "UPDATE equity_peaks SET paid_in = COALESCE((SELECT SUM(CASE WHEN l.kind = 'withdrawal' "
        "THEN -l.amount ELSE l.amount END) FROM paper_ledger l WHERE l.account_id = "
        "equity_peaks.account_id AND l.created_at <= equity_peaks.peak_at), 0)")


def downgrade() -> None:
    """Downgrade schema."""
    with op.batch_alter_table('equity_peaks', schema=None) as batch_op:
        batch_op.drop_column('paid_in')
