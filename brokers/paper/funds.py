"""Money rules of the paper broker: what an order blocks, whether it fits, what may be sold.

- The expected price is the limit price (LIMIT, SL), else the LTP with slippage (SL-M: its
  trigger with slippage); :func:`core.trading.expected_price`.
- A CNC BUY blocks its full value plus estimated charges. An MIS order (either side) blocks
  value / ``mis_leverage`` for the part that opens or adds to a position, plus charges; the
  part that closes an opposite open MIS position blocks nothing. A CNC SELL blocks nothing but
  needs sellable shares: settled holdings + unsettled delivery buys − pending delivery sells.
- Blocked funds are stored on the order (``paper_orders.blocked_funds``) and released in
  proportion as it fills, in full when it is cancelled or expires.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date
from decimal import ROUND_CEILING, Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brokers.paper.book import FillCache
from brokers.paper.config import PaperConfig
from brokers.paper.records import (
    MONEY_QUANTUM,
    OPEN_STATUSES,
    leg_charges,
)
from core import portfolio
from core.errors import InsufficientFunds, OrderRejected
from core.money import inr
from core.trading import (
    ZERO,
    Funds,
    OrderRequest,
    Product,
    Side,
    expected_price,
    required_funds,
)
from db.models import PaperOrderRow


@dataclass(frozen=True, slots=True)
class AccountState:
    """An account's book (derived from its fills) and its funds, at one moment."""

    book: portfolio.Book
    funds: Funds
    #: Symbols already sold from delivery today: their DP charge is paid (once a day each).
    dp_paid: frozenset[str] = frozenset()

    def mis_quantity(self, symbol: str) -> int:
        """Return the signed open MIS quantity of ``symbol`` (+ long, − short)."""
        return sum(p.quantity for p in self.book.positions
                   if p.symbol == symbol and p.product is Product.MIS)

    def delivery_quantity(self, symbol: str) -> tuple[int, int]:
        """Return (settled holdings, unsettled net delivery buys) of ``symbol``."""
        held = sum(h.quantity for h in self.book.holdings if h.symbol == symbol)
        bought = sum(p.quantity for p in self.book.positions
                     if p.symbol == symbol and p.product is Product.CNC)
        return held, bought


def account_state(
    session: Session, fills: FillCache, config: PaperConfig, today: date
) -> AccountState:
    """Return the account's trades, book and funds on ``today`` (the book's marks may be old)."""
    paid_in, blocked, book = fills.money_and_book(session, today)
    funds = portfolio.compute_funds(fills.account_id, paid_in, book, blocked,
                                    config.mis_leverage)
    return AccountState(book, funds, fills.delivery_sold(today))


def needed_funds(
    request: OrderRequest, ltp: Decimal, tick: Decimal, config: PaperConfig, today: date,
    state: AccountState,
) -> Decimal:
    """Return what ``request`` blocks (rupees, rounded up to 4 decimals); see the module doc."""
    price = expected_price(request, ltp, config.slippage_bps, tick)
    charges = leg_charges(config.profile, request.product, request.side, price,
                          request.quantity, today,
                          dp_applies=request.symbol not in state.dp_paid)
    needed = required_funds(request, price, charges, config.mis_leverage,
                            state.mis_quantity(request.symbol))
    return needed.quantize(MONEY_QUANTUM, rounding=ROUND_CEILING)


def check_funds(request: OrderRequest, needed: Decimal, available: Decimal) -> None:
    """Refuse an order needing more than ``available``, with both figures to the paisa."""
    if needed > available:
        what = f"{request.side} {request.quantity} {request.symbol} {request.product}"
        raise InsufficientFunds(
            f"Insufficient funds for {what}: needs {inr(needed)}, available "
            f"{inr(available)}; add funds or reduce the quantity")


def pending_delivery_sells(
    session: Session, account_id: int, symbol: str, exclude_id: int | None = None
) -> int:
    """Return the unfilled shares of the account's open CNC SELL orders in ``symbol``."""
    query = select(func.coalesce(func.sum(PaperOrderRow.quantity
                                          - PaperOrderRow.filled_quantity), 0)).where(
        PaperOrderRow.account_id == account_id, PaperOrderRow.symbol == symbol,
        PaperOrderRow.side == Side.SELL, PaperOrderRow.product == Product.CNC,
        PaperOrderRow.status.in_(OPEN_STATUSES))
    if exclude_id is not None:
        query = query.where(PaperOrderRow.id != exclude_id)
    return int(session.scalar(query) or 0)


def check_sellable(
    session: Session, state: AccountState, request: OrderRequest, quantity: int,
    exclude_id: int | None = None,
) -> None:
    """Refuse a CNC SELL of ``quantity`` shares beyond what the account may sell from delivery."""
    if request.product is not Product.CNC or request.side is not Side.SELL:
        return
    held, bought = state.delivery_quantity(request.symbol)
    pending = pending_delivery_sells(session, request.account_id, request.symbol, exclude_id)
    sellable = max(held + bought - pending, 0)
    if quantity > sellable:
        raise OrderRejected(
            f"You can sell at most {sellable} {request.symbol} from delivery (holdings {held}, "
            f"bought today {bought}, pending sells {pending}); use MIS to short intraday")


def release(blocked: Decimal, remaining_before: int, remaining_after: int) -> Decimal:
    """Return the block left after a fill: in proportion to the shares still to fill."""
    if remaining_after <= 0 or remaining_before <= 0:
        return ZERO
    return (blocked * remaining_after / remaining_before).quantize(
        MONEY_QUANTUM, rounding=ROUND_CEILING)
