"""risk limits: an account's row names the limits it sets itself; the rest follow the household

Revision ID: 0013_risk_limits_own_fields
Revises: 0012_orders_account_status
Create Date: 2026-11-22 14:00:00.000000

"""
import json
from datetime import time
from decimal import Decimal
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0013_risk_limits_own_fields'
down_revision: Union[str, Sequence[str], None] = '0012_orders_account_status'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

#: engines.risk_types.RiskLimits' defaults as of this revision (a household without a row).
DEFAULTS: dict[str, object] = {
    'risk_per_trade_pct': Decimal('1'), 'atr_stop_multiple': Decimal('2'),
    'fallback_stop_pct': Decimal('2'), 'high_volatility_atr_pct': Decimal('4'),
    'max_open_positions': 10, 'max_sector_pct': Decimal('30'),
    'correlation_threshold': Decimal('0.80'), 'correlation_reduce': False,
    'daily_loss_pct': Decimal('2'), 'weekly_loss_pct': Decimal('5'),
    'drawdown_reduce_pct': Decimal('10'), 'drawdown_kill_pct': Decimal('15'),
    'choppy_size_factor': Decimal('0.5'), 'max_orders_per_second': 10,
    'max_order_value': Decimal('500000'), 'max_order_quantity': 5000,
    'duplicate_window_s': 10, 'portfolio_mtm_stop_loss': None, 'portfolio_mtm_target': None,
    'mis_square_off_at': time(15, 15),
}
_PCT, _MONEY = sa.Numeric(10, 4), sa.Numeric(18, 4)
_TYPES = {'max_open_positions': sa.Integer(), 'max_orders_per_second': sa.Integer(),
          'max_order_quantity': sa.Integer(), 'duplicate_window_s': sa.Integer(),
          'correlation_reduce': sa.Boolean(), 'mis_square_off_at': sa.Time(),
          'max_order_value': _MONEY, 'portfolio_mtm_stop_loss': _MONEY,
          'portfolio_mtm_target': _MONEY}


def _table() -> sa.TableClause:
    return sa.table('risk_limits', sa.column('id', sa.Integer()),
                    sa.column('household_id', sa.Integer()),
                    sa.column('account_id', sa.Integer()),
                    sa.column('own_fields', sa.Text()),
                    *(sa.column(name, _TYPES.get(name, _PCT)) for name in DEFAULTS))


def _accounts(limits: sa.TableClause) -> list[tuple[sa.RowMapping, sa.RowMapping | dict]]:
    """Return each account's row with its household's row (or the defaults)."""
    rows = op.get_bind().execute(sa.select(limits)).mappings().all()
    households = {row['household_id']: row for row in rows if row['account_id'] is None}
    return [(row, households.get(row['household_id'], DEFAULTS)) for row in rows
            if row['account_id'] is not None]


def upgrade() -> None:
    """Upgrade schema: an account's existing row keeps as its own only the limits that differ
    from its household's now; in the others it follows the household from here on."""
    with op.batch_alter_table('risk_limits', schema=None) as batch_op:
        batch_op.add_column(sa.Column('own_fields', sa.Text(), nullable=True))
    limits = _table()
    for row, household in _accounts(limits):
        own = [name for name in DEFAULTS if row[name] != household[name]]
        op.get_bind().execute(limits.update().where(limits.c.id == row['id'])
                              .values(own_fields=json.dumps(own)))


def downgrade() -> None:
    """Downgrade schema: an account's row then holds every limit in force now (the
    household's where it followed them)."""
    limits = _table()
    for row, household in _accounts(limits):
        if row['own_fields'] is None:
            continue
        own = set(json.loads(row['own_fields']))
        op.get_bind().execute(limits.update().where(limits.c.id == row['id']).values(
            {name: household[name] for name in DEFAULTS if name not in own}))
    with op.batch_alter_table('risk_limits', schema=None) as batch_op:
        batch_op.drop_column('own_fields')
