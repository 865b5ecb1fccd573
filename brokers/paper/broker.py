"""The paper broker: one desk account trading against the market feed, with virtual money.

Orders are stored in ``paper_orders`` and filled by the worker's :class:`PaperExchange` step
against the prices the market feed writes (see :mod:`brokers.paper.market` for which clock
decides what). Fills are charged like a real contract note (:mod:`engines.costs`, profile
``paper``) and stored in ``paper_trades``; deposits and withdrawals in ``paper_ledger``.
Positions, holdings and funds are derived from the fills by :mod:`core.portfolio` (FIFO, T+1).

Broker order ids are ``"P"`` + the row id (``"P12"``); each call is one database transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import date, datetime
from decimal import Decimal
from typing import cast

from sqlalchemy import Table, insert, or_, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from brokers.base import REQUIRED_CAPABILITIES, Capability, OrderChange, PreTrade, SessionState
from brokers.paper import funds as money
from brokers.paper import records
from brokers.paper.book import FillCache
from brokers.paper.config import PaperConfig
from brokers.paper.market import FeedMarketView, MarketView
from brokers.paper.records import (
    AMO_QUEUED,
    OPEN_STATUSES,
    order_id_text,
    order_row,
    parse_order_id,
    to_broker_order,
    to_trade,
)
from core import portfolio
from core.clock import now_ist, to_ist
from core.domain import Instrument, Quote
from core.errors import InsufficientFunds, OrderRejected, ValidationError
from core.marketdata.store import instrument as find_instrument
from core.money import inr
from core.trading import (
    BrokerOrder,
    Funds,
    Holding,
    OrderRequest,
    OrderStatus,
    Position,
    Trade,
    check_price_band,
    check_request,
    check_trigger_vs_ltp,
)
from db.engine import Database
from db.locks import lock_accounts
from db.models import PaperLedgerRow, PaperOrderRow, PaperTradeRow


@dataclass(frozen=True, slots=True)
class _Prepared:
    """What :meth:`PaperBroker.pre_trade_in` read under the account's lock in ``session``."""

    session: Session
    account_id: int
    instrument: Instrument
    now: datetime
    market: SessionState
    quote: Quote | None
    state: money.AccountState


#: Price-listing cap in the "no live price" message.
_LISTED_SYMBOLS = 12
_PAPER_ORDERS = cast(Table, PaperOrderRow.__table__)
_INSERT_ORDER = insert(_PAPER_ORDERS).returning(_PAPER_ORDERS.c.id)


class PaperBroker:
    """The :class:`brokers.base.Broker` of one paper account; see the module docstring.

    Parameters
    ----------
    db : Database
        Where the paper books live.
    account_id : int
        The desk account this instance trades.
    config : PaperConfig
        Slippage, MIS leverage, participation, fee schedule.
    market : MarketView
        Open/closed and prices (:class:`~brokers.paper.market.FeedMarketView` in the app).
    clock : Callable[[], datetime]
        Wall time; its IST date is the trading day.
    """

    name = "paper"
    capabilities = REQUIRED_CAPABILITIES | {Capability.AMO, Capability.IOC, Capability.SL,
                                            Capability.SL_M, Capability.PRE_TRADE,
                                            Capability.DESK_DATABASE}

    def __init__(self, db: Database, account_id: int, config: PaperConfig, market: MarketView,
                 clock: Callable[[], datetime] = now_ist) -> None:
        """Bind to one account."""
        self.db = db
        self.account_id = account_id
        self.config = config
        self.market = market
        self.clock = clock
        self._fills = FillCache(account_id)
        #: Paper accounts on the feed share one market (see ``brokers.base``): one read of
        #: the session and prices serves them all.
        self.market_key = ("paper:feed" if isinstance(market, FeedMarketView)
                           else f"paper:market-{id(market)}")

    # -- orders ---------------------------------------------------------------------------
    def place_order(self, request: OrderRequest) -> str:
        """Accept ``request`` as an OPEN order and return its id (``"P12"``).

        The same ``client_order_id`` again returns the first order's id and writes nothing.

        Raises
        ------
        ValidationError
            Without a client order id, for another account, an unknown symbol, or a request
            breaking :func:`core.trading.check_request` or the stop-trigger rule.
        OrderRejected
            Market closed (non-AMO) or open (AMO), no live price, too few shares to sell.
        InsufficientFunds
            The order needs more than the available funds.
        """
        if request.client_order_id is None:
            raise ValidationError("A paper order needs a client order id (the idempotency key)")
        try:
            with self.db.transaction() as session:
                return self.place_in(session, request)
        except IntegrityError:  # the same client order id raced in from another process
            existing = self._existing(request.client_order_id)
            if existing is None:
                raise
            return existing

    def pre_trade_in(self, session: Session, symbol: str) -> PreTrade:
        """Lock the account in ``session``; return the pre-trade read :meth:`place_in` reuses.

        Raises
        ------
        ValidationError
            For an unknown symbol.
        """
        lock_accounts(session, [self.account_id])
        now = self.clock()
        instrument = self._instrument(session, symbol)
        market, quotes = self.market.session_and_quotes(now, [instrument.symbol], within=session)
        quote = quotes.get(instrument.symbol)
        state = self._state(session, to_ist(now).date())
        held, bought = state.delivery_quantity(instrument.symbol)
        token = _Prepared(session, self.account_id, instrument, now, market, quote, state)
        return PreTrade(market, quote, state.mis_quantity(instrument.symbol), held, bought,
                        state.funds.available, token,
                        dp_paid=instrument.symbol in state.dp_paid)

    def place_in(self, session: Session, request: OrderRequest,
                 pre: PreTrade | None = None) -> str:
        """Accept ``request`` inside the caller's transaction (see :meth:`place_order`).

        Every check runs before the order row is written, so a refusal leaves the caller's
        transaction as it was. ``pre`` is this broker's :meth:`pre_trade_in` read in the same
        session (the account is locked since): its figures are used instead of read again.
        """
        if request.client_order_id is None:
            raise ValidationError("A paper order needs a client order id (the idempotency key)")
        if request.account_id != self.account_id:
            raise ValidationError(f"This paper broker trades account {self.account_id}; the "
                                  f"order is for account {request.account_id}")
        prepared = pre.token if pre is not None else None
        if not (isinstance(prepared, _Prepared) and prepared.session is session
                and prepared.account_id == self.account_id
                and prepared.instrument.symbol == request.symbol.strip().upper()):
            lock_accounts(session, [self.account_id])
            found = self._existing(request.client_order_id, session)
            if found is not None:
                return found
            instrument = self._instrument(session, request.symbol)
            now = self.clock()
            prepared = _Prepared(session, self.account_id, instrument, now,
                                 self.market.session(now, within=session), None,
                                 self._state(session, to_ist(now).date()))
        # else: the caller's transaction writes the order book's row under this client order
        # id with this order; a repeat breaks a unique key (this book's or the order book's)
        # and rolls both back, so there is nothing to look up first.
        instrument, now, state = prepared.instrument, prepared.now, prepared.state
        request = replace(request, symbol=instrument.symbol)
        check_request(request, instrument)
        quote = self._market_checks(session, request, prepared.market, instrument.tick_size,
                                    prepared.quote)
        today = to_ist(now).date()
        money.check_sellable(session, state, request, request.quantity)
        needed = money.needed_funds(request, quote.ltp, instrument.tick_size, self.config,
                                    today, state)
        money.check_funds(request, needed, state.funds.available)
        # A Core insert built once: the row is never read back through this session.
        ident = session.connection().execute(_INSERT_ORDER, {
            "account_id": self.account_id, "client_order_id": request.client_order_id,
            "instrument_id": instrument.id, "symbol": instrument.symbol, "side": request.side,
            "quantity": request.quantity, "order_type": request.order_type,
            "product": request.product, "validity": request.validity, "price": request.price,
            "trigger_price": request.trigger_price, "is_amo": request.amo,
            "status": OrderStatus.OPEN, "blocked_funds": needed,
            "status_message": AMO_QUEUED if request.amo else None,
            "seen_quote_time": quote.quote_time, "seen_volume": quote.volume,
            "trade_date": today, "placed_at": now, "updated_at": now}).scalar_one()
        return order_id_text(ident)

    def _existing(self, client_order_id: str, session: Session | None = None) -> str | None:
        query = select(PaperOrderRow.id).where(PaperOrderRow.account_id == self.account_id,
                                               PaperOrderRow.client_order_id == client_order_id)
        if session is not None:
            ident = session.scalar(query)
        else:
            with self.db.transaction() as fresh:
                ident = fresh.scalar(query)
        return None if ident is None else order_id_text(ident)

    @staticmethod
    def _instrument(session: Session, symbol: str) -> Instrument:
        found = find_instrument(session, symbol)
        if found is None:
            raise ValidationError(
                f"Unknown symbol {symbol!r} on NSE; check the spelling or import the "
                "instrument on the Import page")
        return found

    def _market_checks(self, session: Session, request: OrderRequest, state: SessionState,
                       tick: Decimal, quote: Quote | None = None) -> Quote:
        """Refuse by market state and price; return the symbol's quote (read if not given)."""
        if not state.is_open and not request.amo:
            raise OrderRejected(
                f"Market is closed ({state.detail}); place it as an AMO to queue it for the "
                "next session open")
        if state.is_open and request.amo:
            raise OrderRejected(
                f"The market is open ({state.detail}); AMO is only for orders placed while it "
                "is closed")
        if quote is None:
            quote = self._quote_or_refuse(session, request.symbol)
        check_trigger_vs_ltp(request, quote.ltp)
        check_price_band(request, quote.prev_close, quote.ltp, tick)
        return quote

    def _quote_or_refuse(self, session: Session, symbol: str) -> Quote:
        quote = self.market.quotes([symbol], within=session).get(symbol)
        if quote is None:
            priced = sorted(self.market.quotes(within=session))
            listed = ", ".join(priced[:_LISTED_SYMBOLS]) or "none"
            more = f" and {len(priced) - _LISTED_SYMBOLS} more" if (
                len(priced) > _LISTED_SYMBOLS) else ""
            raise OrderRejected(
                f"No live price for {symbol}: the paper desk fills only against the market "
                f"feed; symbols with prices: {listed}{more}")
        return quote

    def _state(self, session: Session, today: date) -> money.AccountState:
        return money.account_state(session, self._fills, self.config, today)

    def modify_order(self, broker_order_id: str, change: OrderChange) -> None:
        """Change quantity, price or trigger of an open order; re-check rules and funds.

        Raises
        ------
        NotFound
            No such order in this account.
        OrderRejected
            The order is no longer open, or it would sell more shares than sellable.
        ValidationError
            Nothing to change, a quantity not above the filled one, or a request rule broken.
        InsufficientFunds
            The larger order needs more than the available funds.
        """
        if change.quantity is None and change.price is None and change.trigger_price is None:
            raise ValidationError("Nothing to change: give a new quantity, price or trigger")
        with self.db.transaction() as session:
            lock_accounts(session, [self.account_id])
            row = self._open_row(session, broker_order_id, "modified")
            request = OrderRequest(
                account_id=row.account_id, symbol=row.symbol, side=row.side,
                quantity=row.quantity if change.quantity is None else change.quantity,
                order_type=row.order_type, product=row.product, validity=row.validity,
                price=row.price if change.price is None else change.price,
                trigger_price=row.trigger_price if change.trigger_price is None
                else change.trigger_price, amo=row.is_amo, client_order_id=row.client_order_id)
            instrument = self._instrument(session, row.symbol)
            check_request(request, instrument)
            if request.quantity <= row.filled_quantity:
                raise ValidationError(
                    f"New quantity {request.quantity} of order {broker_order_id} must be more "
                    f"than the {row.filled_quantity} already filled")
            now = self.clock()
            quote = self._quote_or_refuse(session, row.symbol)
            if not row.triggered:
                check_trigger_vs_ltp(request, quote.ltp)
            check_price_band(request, quote.prev_close, quote.ltp, instrument.tick_size)
            rest = replace(request, quantity=request.quantity - row.filled_quantity)
            today = to_ist(now).date()
            state = self._state(session, today)
            money.check_sellable(session, state, request, rest.quantity, exclude_id=row.id)
            needed = money.needed_funds(rest, quote.ltp, instrument.tick_size, self.config,
                                        today, state)
            money.check_funds(rest, needed, state.funds.available + row.blocked_funds)
            if request.price != row.price:
                row.rested = False  # a new limit re-enters the book: marketable or resting anew
            row.quantity, row.price = request.quantity, request.price
            row.trigger_price, row.blocked_funds = request.trigger_price, needed
            row.updated_at = now

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order's unfilled rest and release its blocked funds.

        Raises
        ------
        NotFound
            No such order in this account.
        OrderRejected
            The order is no longer open (filled, cancelled or rejected).
        """
        with self.db.transaction() as session:
            lock_accounts(session, [self.account_id])
            row = self._open_row(session, broker_order_id, "cancelled")
            row.status = OrderStatus.CANCELLED
            row.blocked_funds = Decimal(0)
            row.status_message = (f"Cancelled by the user ({row.filled_quantity} of "
                                  f"{row.quantity} filled)")
            row.updated_at = self.clock()

    def _open_row(self, session: Session, broker_order_id: str, what: str) -> PaperOrderRow:
        row = order_row(session, self.account_id, broker_order_id)
        if row.status not in OPEN_STATUSES:
            raise OrderRejected(
                f"Order {broker_order_id} is {row.status}; only open orders can be {what}")
        return row

    # -- books ----------------------------------------------------------------------------
    def orders(self, broker_order_ids: list[str]) -> list[BrokerOrder]:
        """Return this account's orders among ``broker_order_ids`` (unknown ids left out)."""
        ids = [i for i in map(parse_order_id, broker_order_ids) if i is not None]
        if not ids:
            return []
        with self.db.transaction() as session:
            rows = session.scalars(select(PaperOrderRow).where(
                PaperOrderRow.account_id == self.account_id, PaperOrderRow.id.in_(ids))
                .order_by(PaperOrderRow.id)).all()
            return [to_broker_order(row) for row in rows]

    def order_book(self) -> list[BrokerOrder]:
        """Return the current trading day's orders and any older ones still open, oldest first."""
        today = to_ist(self.clock()).date()
        with self.db.transaction() as session:
            rows = session.scalars(select(PaperOrderRow).where(
                PaperOrderRow.account_id == self.account_id,
                or_(PaperOrderRow.trade_date == today, PaperOrderRow.status.in_(OPEN_STATUSES)))
                .order_by(PaperOrderRow.id)).all()
            return [to_broker_order(row) for row in rows]

    def order_trades(self, broker_order_id: str) -> list[Trade]:
        """Return the fills of one order, oldest first; NotFound for an unknown order."""
        with self.db.transaction() as session:
            row = order_row(session, self.account_id, broker_order_id, lock=False)
            fills = session.scalars(select(PaperTradeRow).where(
                PaperTradeRow.paper_order_id == row.id).order_by(PaperTradeRow.id)).all()
            return [to_trade(fill) for fill in fills]

    def trade_book(self) -> list[Trade]:
        """Return the fills of the current trading day, oldest first."""
        today = to_ist(self.clock()).date()
        with self.db.transaction() as session:
            fills = session.scalars(select(PaperTradeRow).where(
                PaperTradeRow.account_id == self.account_id, PaperTradeRow.trade_date == today)
                .order_by(PaperTradeRow.id)).all()
            return [to_trade(fill) for fill in fills]

    def _book(self) -> portfolio.Book:
        with self.db.transaction() as session:
            ltp = {symbol: q.ltp for symbol, q in self.market.quotes(within=session).items()}
            return self._fills.book(session, ltp, to_ist(self.clock()).date())

    def positions(self) -> list[Position]:
        """Return open and today's positions (intraday, and delivery not yet settled)."""
        return list(self._book().positions)

    def holdings(self) -> list[Holding]:
        """Return settled (T+1) delivery holdings."""
        return list(self._book().holdings)

    def funds(self) -> Funds:
        """Return cash, used margin (open orders + intraday positions) and available funds."""
        with self.db.transaction() as session:
            return self._state(session, to_ist(self.clock()).date()).funds

    # -- market ---------------------------------------------------------------------------
    def quote(self, symbol: str) -> Quote | None:
        """Return the latest quote of ``symbol`` or None."""
        return self.market.quotes([symbol]).get(symbol)

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Return the latest quotes of ``symbols`` that have a price."""
        return self.market.quotes(symbols)

    def session(self) -> SessionState:
        """Return whether the paper market is open now, why, and the IST trading day."""
        return self.market.session(self.clock())

    def pre_trade(self, symbol: str) -> PreTrade:
        """Return session, quote, open positions in ``symbol`` and funds in one transaction."""
        now = self.clock()
        with self.db.transaction() as session:
            state = self.market.session(now, within=session)
            quote = self.market.quotes([symbol], within=session).get(symbol)
            account = self._state(session, to_ist(now).date())
        held, bought = account.delivery_quantity(symbol)
        return PreTrade(state, quote, account.mis_quantity(symbol), held, bought,
                        account.funds.available, dp_paid=symbol in account.dp_paid)

    # -- capital (paper only) -------------------------------------------------------------
    def deposits(self) -> Decimal:
        """Return the account's paid-in capital: deposits minus withdrawals, rupees."""
        with self.db.transaction() as session:
            return records.deposits(session, self.account_id)

    def deposit(self, amount: Decimal | int | str, note: str = "",
                user_id: int | None = None) -> None:
        """Pay ``amount`` rupees into the account.

        Raises
        ------
        ValidationError
            If the amount is not a positive number of whole paise (floats are refused).
        """
        self._ledger("deposit", amount, note, user_id)

    def withdraw(self, amount: Decimal | int | str, note: str = "",
                 user_id: int | None = None) -> None:
        """Take ``amount`` rupees out of the account.

        Raises
        ------
        ValidationError
            If the amount is not a positive number of whole paise.
        InsufficientFunds
            If it is more than the available funds.
        """
        self._ledger("withdrawal", amount, note, user_id)

    def _ledger(self, kind: str, amount: object, note: str, user_id: int | None) -> None:
        value = records.paise(amount, "Deposit" if kind == "deposit" else "Withdrawal")
        with self.db.transaction() as session:
            lock_accounts(session, [self.account_id])
            if kind == "withdrawal":
                available = self._state(session, to_ist(self.clock()).date()).funds.available
                if value > available:
                    raise InsufficientFunds(
                        f"Cannot withdraw {inr(value)}: available {inr(available)}")
            session.add(PaperLedgerRow(account_id=self.account_id, kind=kind, amount=value,
                                       note=(note or "").strip()[:200] or None,
                                       created_by_user_id=user_id, created_at=self.clock()))
