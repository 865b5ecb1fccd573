"""orders: index (account_id, status), for the risk gate's read of an account's open orders

Revision ID: 0012_orders_account_status
Revises: 0011_peak_paid_in
Create Date: 2026-11-22 12:00:00.000000

"""
from typing import Sequence, Union

from alembic import op


# revision identifiers, used by Alembic.
revision: str = '0012_orders_account_status'
down_revision: Union[str, Sequence[str], None] = '0011_peak_paid_in'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    """Upgrade schema: the gate reads an account's open orders before every order."""
    op.create_index('ix_orders_account_id_status', 'orders', ['account_id', 'status'])


def downgrade() -> None:
    """Downgrade schema."""
    op.drop_index('ix_orders_account_id_status', table_name='orders')
