"""The paper exchange: the worker's step that fills, cancels and expires paper orders.

Every second the worker calls :meth:`PaperExchange.step`. In one transaction it:

1. cancels DAY (and IOC) orders of an earlier IST trading day: "Expired unfilled at the end of
   <date> (DAY order)". An AMO still queued for its first open tick never expires; on that tick
   it is released and its trading day becomes the release day;
2. if the paper market is open, matches every open order (all accounts) whose symbol has a
   quote other than the one it last saw, with :func:`brokers.paper.matching.match`: the volume
   since is the quote's day volume minus the one it saw (the whole day volume on a new day);
3. writes each fill as a ``paper_trades`` row charged with :func:`engines.costs.leg_charges`
   (the DP charge on the first delivery sell of a scrip per account per day only), and updates
   filled quantity, average price, status and blocked funds of the order.

The app (a single order via ``only=``) and the worker may step at once: on PostgreSQL each step
locks the orders it takes with ``SELECT ... FOR UPDATE SKIP LOCKED``, so an order is matched by
one of them; SQLite serialises writers anyway (the step takes the write lock first).
"""

from __future__ import annotations

from collections.abc import Callable, Collection
from contextlib import ExitStack
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, cast

from sqlalchemy import Table, bindparam, insert, select, update
from sqlalchemy.orm import Session

from brokers.base import OrderUpdate, VenueStep
from brokers.paper.config import PaperConfig
from brokers.paper.funds import release
from brokers.paper.market import MarketView
from brokers.paper.matching import MarketTick, MatchResult, RestingOrder, match
from brokers.paper.records import (
    AMO_QUEUED,
    MONEY_QUANTUM,
    OPEN_STATUSES,
    charge_columns,
    leg_charges,
    parse_order_id,
    to_broker_order,
    to_trade,
)
from core.clock import now_ist, to_ist
from core.domain import Quote
from core.trading import OrderStatus, Product, Side
from db.engine import Database
from db.locks import lock_accounts
from db.models import InstrumentRow, PaperOrderRow, PaperTradeRow


@dataclass(slots=True)
class StepReport:
    """What one step did.

    Attributes
    ----------
    at : datetime
        Wall time of the step.
    market_open : bool | None
        Whether the paper market was open (closed: only expiry ran); None when no order
        needed to know.
    examined : int
        Open orders looked at.
    matched : int
        Orders that saw a new price.
    fills : int
        Trades written.
    filled : int
        Orders that became FILLED.
    cancelled : int
        IOC orders whose unfilled rest was cancelled.
    expired : int
        DAY orders cancelled at the end of their trading day.
    updates : list[OrderUpdate]
        Each order whose status or filled quantity changed, with the fills of this step.
    """

    at: datetime
    market_open: bool | None
    examined: int = 0
    matched: int = 0
    fills: int = 0
    filled: int = 0
    cancelled: int = 0
    expired: int = 0
    updates: list[OrderUpdate] = field(default_factory=list)

    @property
    def events(self) -> int:
        """Return the order events of the step: fills, cancels and expiries."""
        return self.fills + self.cancelled + self.expired

    def venue_step(self) -> VenueStep:
        """Return the step as the registry's venue steppers report it."""
        return VenueStep(self.events, tuple(self.updates))


# Built once: the worker steps every second. The step reads and writes with Core statements;
# its rows are PaperOrderRow/PaperTradeRow objects outside the session (the ORM's unit of work
# cost more than the round trips), and what changed is written back explicitly.
_ORDERS = cast(Table, PaperOrderRow.__table__)
_TRADES = cast(Table, PaperTradeRow.__table__)
#: The open orders, locked, each with its instrument's tick size (one read for both).
_OPEN_ORDERS = (select(*_ORDERS.c, InstrumentRow.tick_size)
                .join(InstrumentRow, InstrumentRow.id == _ORDERS.c.instrument_id)
                .where(_ORDERS.c.status.in_(OPEN_STATUSES))
                .order_by(_ORDERS.c.id).with_for_update(of=_ORDERS, skip_locked=True))
#: The order columns' keys, in the select's order (the tick size comes last).
_COLUMNS = tuple(column.key for column in _ORDERS.c)
#: What a step may change on an order (expiry, matching, fills).
_STEPPED = ("status", "filled_quantity", "average_price", "blocked_funds", "status_message",
            "seen_quote_time", "seen_volume", "triggered", "rested", "trade_date", "updated_at")
#: One statement for every order a step changed (executemany; SET gets the other keys).
_WRITE_STEPPED = update(_ORDERS).where(_ORDERS.c.id == bindparam("stepped_id"))
#: The step's fills, their ids returned in the order given.
_INSERT_FILLS = insert(_TRADES).returning(_TRADES.c.id, sort_by_parameter_order=True)


@dataclass(slots=True)
class _Batch:
    """State shared by the orders of one step."""

    now: datetime
    today: date
    ticks: dict[int, Decimal]  # instrument id -> tick size
    dp_charged: set[tuple[int, str]]  # (account, symbol) with a delivery sell today
    trades: list[PaperTradeRow] = field(default_factory=list)
    trade_values: list[dict[str, Any]] = field(default_factory=list)  # trades' columns


class PaperExchange:
    """Matches paper orders of every account against the market; see the module docstring."""

    def __init__(self, db: Database, config: PaperConfig, market: MarketView,
                 clock: Callable[[], datetime] = now_ist) -> None:
        """Bind to the paper books in ``db`` and the ``market`` prices."""
        self.db = db
        self.config = config
        self.market = market
        self.clock = clock

    def step(self, now: datetime | None = None, *,
             only: Collection[str] | None = None,
             within: Session | None = None) -> StepReport:
        """Expire, match and fill open orders at ``now`` (default: the clock); report counts.

        Parameters
        ----------
        now : datetime | None
            Wall time of the step (aware).
        only : Collection[str] | None
            Broker order ids (``"P12"``) to step; None steps every open order.
        within : Session | None
            The caller's transaction to step in (the order manager mirrors the updates in it
            too); None steps in a transaction of its own.
        """
        now = now or self.clock()
        report = StepReport(at=now, market_open=None)
        with ExitStack() as stack:
            session = within if within is not None else stack.enter_context(
                self.db.transaction())
            rows, ticks = self._open_orders(session, only)
            report.examined = len(rows)
            batch = _Batch(now, to_ist(now).date(), ticks, set())
            before = {row.id: (row.status, row.filled_quantity) for row in rows}
            pending: list[PaperOrderRow] = []
            changed: list[PaperOrderRow] = []  # to write back: expired, then matched
            for row in rows:
                (changed if self._expire(row, batch.today, now) else pending).append(row)
            report.expired = len(changed)
            if pending:
                changed += self._step_pending(session, pending, batch, report)
            self._write(session, changed, batch)
            report.updates = self._updates(rows, before, batch.trades)
        return report

    @staticmethod
    def _write(session: Session, changed: list[PaperOrderRow], batch: _Batch) -> None:
        """Write the step's changed orders and its fills (whose ids the updates carry)."""
        connection = session.connection()
        if changed:
            connection.execute(_WRITE_STEPPED, [
                {"stepped_id": row.id, **{name: getattr(row, name) for name in _STEPPED}}
                for row in changed])
        if batch.trades:
            ids = connection.execute(_INSERT_FILLS, batch.trade_values).scalars().all()
            for trade, ident in zip(batch.trades, ids, strict=True):
                trade.id = ident

    def _step_pending(self, session: Session, pending: list[PaperOrderRow], batch: _Batch,
                      report: StepReport) -> list[PaperOrderRow]:
        """Match the unexpired open orders whose symbol has a new price; return them.

        Their fills are in ``batch``, to be written with them.
        """
        market, quotes = self.market.session_and_quotes(
            batch.now, {row.symbol for row in pending}, within=session)
        report.market_open = market.is_open
        if not market.is_open:
            quotes = {}
        live = [row for row in pending if row.symbol in quotes
                and quotes[row.symbol].quote_time != row.seen_quote_time]
        if live:
            self._prepare(session, batch, live)
        for row in live:
            self._match(row, quotes[row.symbol], batch, report)
        report.fills = len(batch.trades)
        return live

    @staticmethod
    def _updates(rows: list[PaperOrderRow], before: dict[int, tuple[OrderStatus, int]],
                 trades: list[PaperTradeRow]) -> list[OrderUpdate]:
        """Return the orders whose status or filled quantity changed, each with its new fills."""
        fills: dict[int, list[PaperTradeRow]] = {}
        for trade in trades:
            fills.setdefault(trade.paper_order_id, []).append(trade)
        return [OrderUpdate(to_broker_order(row),
                            tuple(to_trade(t) for t in fills.get(row.id, ())))
                for row in rows if before[row.id] != (row.status, row.filled_quantity)]

    @staticmethod
    def _open_orders(session: Session, only: Collection[str] | None
                     ) -> tuple[list[PaperOrderRow], dict[int, Decimal]]:
        """Return the open orders to step, locked (an idle step takes no write lock).

        The second value maps their instrument ids to tick sizes.
        """
        query = _OPEN_ORDERS
        if only is not None:
            ids = [i for i in map(parse_order_id, only) if i is not None]
            query = query.where(_ORDERS.c.id.in_(ids))
        found = session.connection().execute(query).all()
        if found and session.get_bind().dialect.name == "sqlite":
            lock_accounts(session)  # SQLite: take the write lock, then read again under it
            found = session.connection().execute(query).all()
        rows = [PaperOrderRow(**{name: value for name, value in zip(_COLUMNS, row, strict=False)})
                for row in found]
        return rows, {row.instrument_id: row.tick_size for row in found}

    @staticmethod
    def _expire(row: PaperOrderRow, today: date, now: datetime) -> bool:
        if row.trade_date >= today or (row.is_amo and row.status_message == AMO_QUEUED):
            return False
        row.status = OrderStatus.CANCELLED
        row.blocked_funds = Decimal(0)
        row.status_message = (f"Expired unfilled at the end of {row.trade_date.isoformat()} "
                              f"({row.validity} order)")
        row.updated_at = now
        return True

    @staticmethod
    def _prepare(session: Session, batch: _Batch, rows: list[PaperOrderRow]) -> None:
        """Load today's delivery sells of the accounts in play (tick sizes came with the rows)."""
        sellers = {row.account_id for row in rows
                   if row.side is Side.SELL and row.product is Product.CNC}
        if sellers:
            batch.dp_charged = set(session.execute(
                select(PaperTradeRow.account_id, PaperTradeRow.symbol).distinct().where(
                    PaperTradeRow.account_id.in_(sellers), PaperTradeRow.trade_date == batch.today,
                    PaperTradeRow.side == Side.SELL, PaperTradeRow.product == Product.CNC)).all())

    def _match(self, row: PaperOrderRow, quote: Quote, batch: _Batch, report: StepReport) -> None:
        seen = row.seen_quote_time
        same_day = seen is not None and to_ist(seen).date() == to_ist(quote.quote_time).date()
        volume = quote.volume - row.seen_volume if (
            same_day and quote.volume >= row.seen_volume) else quote.volume
        resting = RestingOrder(
            side=row.side, order_type=row.order_type, quantity=row.quantity,
            filled_quantity=row.filled_quantity, price=row.price,
            trigger_price=row.trigger_price, validity=row.validity, amo=row.is_amo,
            triggered=row.triggered, rested=row.rested)
        result = match(resting, MarketTick(quote.ltp, volume, True),
                       self.config.fill_config(batch.ticks[row.instrument_id]))
        report.matched += 1
        row.seen_quote_time, row.seen_volume = quote.quote_time, quote.volume
        row.triggered, row.rested = result.triggered, result.rested
        row.updated_at = batch.now
        if row.is_amo and row.status_message == AMO_QUEUED:
            row.status_message = None  # released at the session open: a DAY order of today
            row.trade_date = batch.today
        if result.fill_quantity:
            self._fill(row, result, batch)
            report.filled += row.status is OrderStatus.FILLED
        if result.cancel_rest and row.status is not OrderStatus.FILLED:
            row.status = OrderStatus.CANCELLED
            row.blocked_funds = Decimal(0)
            row.status_message = result.message
            report.cancelled += 1

    def _fill(self, row: PaperOrderRow, result: MatchResult, batch: _Batch) -> None:
        assert result.fill_price is not None  # noqa: S101 - a fill has a price
        quantity, price = result.fill_quantity, result.fill_price
        delivery_sell = row.product is Product.CNC and row.side is Side.SELL
        key = (row.account_id, row.symbol)
        charges = leg_charges(self.config.profile, row.product, row.side, price, quantity,
                              batch.today, dp_applies=delivery_sell and key not in batch.dp_charged)
        if delivery_sell:
            batch.dp_charged.add(key)
        values = {"paper_order_id": row.id, "account_id": row.account_id, "symbol": row.symbol,
                  "side": row.side, "product": row.product, "quantity": quantity,
                  "price": price, "executed_at": batch.now, "trade_date": batch.today,
                  **charge_columns(charges)}
        batch.trade_values.append(values)
        batch.trades.append(PaperTradeRow(**values))
        before = row.quantity - row.filled_quantity
        filled = row.filled_quantity + quantity
        value = (row.average_price or Decimal(0)) * row.filled_quantity + price * quantity
        row.average_price = (value / filled).quantize(MONEY_QUANTUM, rounding=ROUND_HALF_UP)
        row.filled_quantity = filled
        row.blocked_funds = release(row.blocked_funds, before, row.quantity - filled)
        row.status = (OrderStatus.FILLED if filled == row.quantity
                      else OrderStatus.PARTIALLY_FILLED)
