"""The paper broker's books: ids, rows to domain types, charges per fill, locks, ledger sums.

Broker order ids are ``"P"`` + the ``paper_orders`` row id (``"P12"``), trade ids ``"T"`` +
the ``paper_trades`` row id. Shared by :mod:`brokers.paper.broker` (the account's side) and
:mod:`brokers.paper.exchange` (the worker's matching step).
"""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from typing import Any

from sqlalchemy import ColumnElement, Integer, Select, bindparam, case, func, select
from sqlalchemy.orm import Session

from core.clock import to_ist
from core.errors import NotFound, ValidationError
from core.money import PAISA, as_typed
from core.trading import (
    CHARGE_FIELDS,
    ZERO,
    BrokerOrder,
    Charges,
    OrderStatus,
    Product,
    Side,
    Trade,
    to_price,
)
from db.models import PaperLedgerRow, PaperOrderRow, PaperTradeRow
from engines import costs

ORDER_PREFIX = "P"
TRADE_PREFIX = "T"
OPEN_STATUSES = (OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
#: Status message of an AMO until its first open tick (it does not expire before it).
AMO_QUEUED = "After-market order: queued for the next session open"
CHARGE_QUANTUM = Decimal("0.000001")  # ChargesMixin columns keep 6 decimals
MONEY_QUANTUM = Decimal("0.0001")  # Money columns keep 4 decimals


def order_id_text(row_id: int) -> str:
    """Return the broker order id of a ``paper_orders`` row id."""
    return f"{ORDER_PREFIX}{row_id}"


def parse_order_id(broker_order_id: str) -> int | None:
    """Return the row id of a broker order id like ``"P12"``, or None if it is not one."""
    text = str(broker_order_id)
    digits = text[len(ORDER_PREFIX):]
    if not text.startswith(ORDER_PREFIX) or not digits.isdigit() or len(digits) > 18:
        return None
    return int(digits)


def order_row(session: Session, account_id: int, broker_order_id: str,
              lock: bool = True) -> PaperOrderRow:
    """Return the account's order row (locked for update); raise NotFound if there is none."""
    ident = parse_order_id(broker_order_id)
    row = None
    if ident is not None:
        query = select(PaperOrderRow).where(PaperOrderRow.id == ident,
                                            PaperOrderRow.account_id == account_id)
        row = session.scalar(query.with_for_update() if lock else query)
    if row is None:
        raise NotFound(
            f"No paper order {broker_order_id!r} in account {account_id}; paper order ids look "
            "like P12")
    return row


def to_broker_order(row: PaperOrderRow) -> BrokerOrder:
    """Return the broker's view of an order row."""
    return BrokerOrder(
        broker_order_id=order_id_text(row.id), client_order_id=row.client_order_id,
        account_id=row.account_id, symbol=row.symbol, side=row.side, quantity=row.quantity,
        order_type=row.order_type, product=row.product, validity=row.validity,
        price=row.price, trigger_price=row.trigger_price, amo=row.is_amo, status=row.status,
        filled_quantity=row.filled_quantity, average_price=row.average_price,
        status_message=row.status_message, updated_at=to_ist(row.updated_at))


def to_trade(row: PaperTradeRow) -> Trade:
    """Return the domain trade of a fill row, charges from the stored columns."""
    return Trade(
        account_id=row.account_id, symbol=row.symbol, side=row.side, product=row.product,
        quantity=row.quantity, price=row.price, executed_at=to_ist(row.executed_at),
        trade_date=row.trade_date, broker_trade_id=f"{TRADE_PREFIX}{row.id}",
        broker_order_id=order_id_text(row.paper_order_id),
        charges=Charges(*(getattr(row, name) for name in CHARGE_FIELDS)))


def segment_of(product: Product) -> costs.Segment:
    """Return the charges segment of a cash-equity product (MIS intraday, else delivery)."""
    return costs.Segment.EQUITY_INTRADAY if product is Product.MIS else (
        costs.Segment.EQUITY_DELIVERY)


def leg_charges(
    profile: str, product: Product, side: Side, price: Decimal, quantity: int, day: date,
    *, dp_applies: bool = False,
) -> Charges:
    """Return the unrounded charges of one leg as :class:`~core.trading.Charges`."""
    leg = costs.leg_charges(segment_of(product), side.value.lower(), price, quantity, day,
                            profile, dp_applies=dp_applies)
    return Charges(*(getattr(leg, name) for name in CHARGE_FIELDS))


def charge_columns(charges: Charges) -> dict[str, Decimal]:
    """Return ChargesMixin column values: each component to 6 decimals, and their sum."""
    values = {name: getattr(charges, name).quantize(CHARGE_QUANTUM) for name in CHARGE_FIELDS}
    return {**values, "charges_total": sum(values.values(), ZERO)}


def paise(amount: object, what: str) -> Decimal:
    """Return ``amount`` as a positive Decimal of whole paise; refuse junk, naming the value."""
    value = to_price(amount, what)
    if value != value.quantize(PAISA):
        raise ValidationError(f"{what} must be whole paise (at most 2 decimals); got "
                              f"{as_typed(value)}")
    return value.quantize(PAISA)


def _deposits_query(account: ColumnElement[int]) -> Select[tuple[Decimal]]:
    signed = case((PaperLedgerRow.kind == "withdrawal", -PaperLedgerRow.amount),
                  else_=PaperLedgerRow.amount)
    return select(func.coalesce(func.sum(signed), 0)).where(PaperLedgerRow.account_id == account)


def deposits(session: Session, account_id: int) -> Decimal:
    """Return the account's paid-in capital: deposits minus withdrawals, rupees."""
    return Decimal(session.scalar(_DEPOSITS, {"account": account_id}) or 0)


def _money_and_fills() -> Select[Any]:
    """Build, once, :data:`MONEY_AND_FILLS` (``account`` bound at execution)."""
    account = bindparam("account", type_=Integer)
    paid = _deposits_query(account)
    blocked = select(func.coalesce(func.sum(PaperOrderRow.blocked_funds), 0)).where(
        PaperOrderRow.account_id == account, PaperOrderRow.status.in_(OPEN_STATUSES))
    fills = select(func.count(PaperTradeRow.id)).where(PaperTradeRow.account_id == account)
    last = select(func.coalesce(func.max(PaperTradeRow.id), 0)).where(
        PaperTradeRow.account_id == account)
    return select(paid.scalar_subquery().label("paid_in"),
                  blocked.scalar_subquery().label("blocked"),
                  fills.scalar_subquery().label("fills"),
                  last.scalar_subquery().label("last_fill"))


# Built once: building a statement costs about as much CPU as sending it.
#: An account's paid-in capital, blocked funds, fill count and last fill id, in one row: the
#: count and last id tell a :class:`brokers.paper.book.FillCache` whether it has every fill.
MONEY_AND_FILLS = _money_and_fills()
_DEPOSITS = _deposits_query(bindparam("account", type_=Integer))
