"""The order manager's trade book (``trades``) read back as domain trades, for services."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date

from sqlalchemy import select

from core.statements import check_range
from core.trading import CHARGE_FIELDS, Charges, Trade
from db.engine import Database
from db.models import TradeRow


def to_trade(row: TradeRow) -> Trade:
    """Return the domain trade of a trade-book row."""
    return Trade(
        account_id=row.account_id, symbol=row.symbol, side=row.side, product=row.product,
        quantity=row.quantity, price=row.price, executed_at=row.executed_at,
        trade_date=row.trade_date, broker_trade_id=row.broker_trade_id,
        broker_order_id=row.broker_order_id,
        charges=Charges(*(getattr(row, name) for name in CHARGE_FIELDS)), order_id=row.order_id)


def load_trades(db: Database, account_ids: Sequence[int], start: date | None = None,
                end: date | None = None) -> list[Trade]:
    """Return the trades of ``account_ids`` (trade dates in [start, end]), oldest first.

    Either bound may be None (open). With both, the range follows the statements' rule
    (:func:`core.statements.check_range`): a reversed or over-long range is refused, so the
    Orders page's trade book and the statement CSVs answer the same range alike.

    Raises
    ------
    ValidationError
        If ``start`` is after ``end`` or the range is longer than a statement may be.
    """
    if start is not None and end is not None:
        check_range(start, end)
    if not account_ids:
        return []
    with db.transaction() as session:
        query = select(TradeRow).where(TradeRow.account_id.in_(list(account_ids)))
        if start is not None:
            query = query.where(TradeRow.trade_date >= start)
        if end is not None:
            query = query.where(TradeRow.trade_date <= end)
        rows = session.scalars(query.order_by(TradeRow.executed_at, TradeRow.id)).all()
        return [to_trade(row) for row in rows]
