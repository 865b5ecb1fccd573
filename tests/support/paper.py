"""A paper desk for broker tests: real database, hand-set market, a clock that moves on command."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Any

from sqlalchemy import func, select

from brokers.paper import PaperBroker, PaperConfig, PaperExchange, StaticMarketView, StepReport
from core.clock import IST
from core.marketdata.instruments import sample_master
from core.marketdata.store import upsert_instruments
from core.trading import BrokerOrder, OrderRequest, OrderType, Product, Side
from db.engine import Database
from db.models import AccountRow, PaperOrderRow, PaperTradeRow

#: A Wednesday 10:00 IST; the next trading day is Thursday 2026-03-05.
T0 = datetime(2026, 3, 4, 10, 0, tzinfo=IST)
CAPITAL = Decimal("1000000")
PRICES = {"INFY": "1500", "TCS": "3500"}
#: An extra instrument with a lot size, to test lot multiples.
LOT_ROW = {"symbol": "LOTX", "exchange": "NSE", "segment": "EQ", "tick_size": Decimal("0.05"),
           "lot_size": 25}


class Clock:
    """Wall time that moves only when told."""

    def __init__(self, at: datetime = T0) -> None:
        self.at = at

    def __call__(self) -> datetime:
        return self.at

    def advance(self, **delta: float) -> datetime:
        self.at += timedelta(**delta)
        return self.at

    def next_day(self, days: int = 1) -> datetime:
        """Move to 10:00 IST ``days`` calendar days later."""
        self.at = (self.at + timedelta(days=days)).replace(hour=10, minute=0, second=0)
        return self.at


@dataclass
class PaperDesk:
    """One paper account with its broker, the exchange that fills it, and the market."""

    db: Database
    market: StaticMarketView
    clock: Clock
    broker: PaperBroker
    exchange: PaperExchange
    account_id: int
    other_account_id: int

    def price(self, symbol: str, price: str, traded: int = 1_000_000) -> StepReport:
        """Print a new price one second later and run the exchange step."""
        self.market.set_price(symbol, price, self.clock.advance(seconds=1), traded)
        return self.exchange.step()

    def request(self, symbol: str = "INFY", side: Side = Side.BUY, quantity: int = 10,
                client_order_id: str | None = None, **fields: Any) -> OrderRequest:
        self._seq = getattr(self, "_seq", 0) + 1
        return OrderRequest(account_id=self.account_id, symbol=symbol, side=side,
                            quantity=quantity, client_order_id=client_order_id
                            or f"t-{self._seq}", **fields)

    def place(self, symbol: str = "INFY", side: Side = Side.BUY, quantity: int = 10,
              **fields: Any) -> str:
        return self.broker.place_order(self.request(symbol, side, quantity, **fields))

    def buy_and_fill(self, symbol: str, quantity: int, price: str,
                     product: Product = Product.CNC) -> str:
        order_id = self.place(symbol, Side.BUY, quantity, product=product,
                              order_type=OrderType.MARKET)
        self.price(symbol, price)
        return order_id

    def order(self, broker_order_id: str) -> BrokerOrder:
        (found,) = self.broker.orders([broker_order_id])
        return found

    def blocked(self, broker_order_id: str) -> Decimal:
        with self.db.transaction() as session:
            row = session.get(PaperOrderRow, int(broker_order_id[1:]))
            assert row is not None
            return row.blocked_funds

    def counts(self) -> tuple[int, int]:
        """Return (paper orders, paper trades) rows of every account."""
        with self.db.transaction() as session:
            return (session.scalar(select(func.count()).select_from(PaperOrderRow)) or 0,
                    session.scalar(select(func.count()).select_from(PaperTradeRow)) or 0)


def paper_desk(url: str, config: PaperConfig | None = None) -> PaperDesk:
    """Return a paper desk on the demo database ``url``: instruments, prices, ₹10 lakh paid in."""
    db = Database(url)
    with db.transaction() as session:
        upsert_instruments(session, sample_master())
        upsert_instruments(session, [LOT_ROW])
        account_id, other = session.scalars(
            select(AccountRow.id).order_by(AccountRow.id).limit(2)).all()
    clock = Clock()
    market = StaticMarketView()
    for symbol, price in PRICES.items():
        market.set_price(symbol, price, clock())
    config = config or PaperConfig()
    broker = PaperBroker(db, account_id, config, market, clock)
    paid_in = broker.deposits()  # the demo seed may have paid capital in already
    if paid_in < CAPITAL:
        broker.deposit(CAPITAL - paid_in, "test capital")
    elif paid_in > CAPITAL:
        broker.withdraw(paid_in - CAPITAL, "test capital")
    return PaperDesk(db, market, clock, broker, PaperExchange(db, config, market, clock),
                     account_id, other)
