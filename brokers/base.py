"""The ``Broker`` protocol: what the order manager and the portfolio need from any broker.

One adapter instance serves one trading account (each family member logs in to their own
broker account). Adapters translate vendor payloads to the domain types of
:mod:`core.trading` at the boundary and re-raise vendor errors as :mod:`core.errors` classes
(``TemporaryBrokerError`` for timeouts and rate limits, ``OrderRejected`` /
``InsufficientFunds`` for refusals), naming symbol, side, quantity and price.

=========================================  ========  ===========================================
Member                                     Required  Meaning
=========================================  ========  ===========================================
``name``                                   yes       Registry key, e.g. ``"paper"``.
``account_id``                             yes       The desk account this instance trades.
``capabilities``                           yes       :class:`Capability` flags it supports.
``place_order(request)``                   yes       Send an order (``client_order_id`` set);
                                                     return the broker's order id.
``modify_order(broker_order_id, change)``  yes       Change quantity / price / trigger of an
                                                     open order.
``cancel_order(broker_order_id)``          yes       Cancel the unfilled rest of an open order.
``orders(broker_order_ids)``               yes       The broker's view of those orders.
``order_book()``                           yes       Every order of the current trading day.
``order_trades(broker_order_id)``          yes       The executions of one order.
``trade_book()``                           yes       Every execution of the current trading day.
``positions()``                            yes       Net positions (intraday and unsettled).
``holdings()``                             yes       Settled delivery holdings.
``funds()``                                yes       Cash, margin used, available.
``quote(symbol)`` / ``quotes(symbols)``    yes       Latest prices.
``session()``                              yes       Whether the market is open for this
                                                     broker now, why, and the trading day.
``historical(symbol, interval, start,      optional  OHLCV candles (``HISTORICAL`` flag).
end)``
``instruments()``                          optional  The broker's instrument master
                                                     (``INSTRUMENTS`` flag).
``pre_trade_in(session, symbol)``,         optional  Lock the account and read, then place,
``place_in(session, request, pre)``                  inside the caller's database
                                                     transaction: books kept in the desk's
                                                     own database (``DESK_DATABASE``).
``market_key`` (attribute)                 optional  Adapters with the same key see one
                                                     market (session and prices): the worker
                                                     reads it once for all of them.
``pre_trade(symbol)``                      optional  Session, quote, positions and funds an
                                                     order needs, in one consistent read
                                                     (``PRE_TRADE`` flag); else the order
                                                     manager asks for each.
=========================================  ========  ===========================================

Order types and validities are capabilities too (``AMO``, ``IOC``, ``SL``, ``SL_M``,
``GTT_NATIVE``); the order manager emulates GTT for brokers without ``GTT_NATIVE`` and refuses
what a broker cannot do before anything is written. Code outside ``brokers/`` never asks which
broker it talks to, only which capabilities it has.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Protocol, runtime_checkable

import pandas as pd
from sqlalchemy.orm import Session

from core.domain import Instrument, Interval, Quote
from core.trading import (
    BrokerOrder,
    Funds,
    Holding,
    OrderRequest,
    Position,
    Trade,
)


@dataclass(frozen=True, slots=True)
class SessionState:
    """Whether a broker's market is open now, the reason users are told, and the trading day."""

    is_open: bool
    detail: str
    trading_day: date
    at: datetime


class Capability(StrEnum):
    """What a broker adapter can do; see the module docstring's table."""

    PLACE = "place"
    MODIFY = "modify"
    CANCEL = "cancel"
    ORDER_BOOK = "order_book"
    TRADE_BOOK = "trade_book"
    POSITIONS = "positions"
    HOLDINGS = "holdings"
    FUNDS = "funds"
    QUOTES = "quotes"
    HISTORICAL = "historical"
    INSTRUMENTS = "instruments"
    AMO = "amo"
    IOC = "ioc"
    SL = "sl"
    SL_M = "sl_m"
    GTT_NATIVE = "gtt_native"
    PRE_TRADE = "pre_trade"
    DESK_DATABASE = "desk_database"


#: Capabilities every adapter must have; the contract test checks them.
REQUIRED_CAPABILITIES = frozenset({
    Capability.PLACE, Capability.MODIFY, Capability.CANCEL, Capability.ORDER_BOOK,
    Capability.TRADE_BOOK, Capability.POSITIONS, Capability.HOLDINGS, Capability.FUNDS,
    Capability.QUOTES,
})


@dataclass(frozen=True, slots=True)
class PreTrade:
    """What the pre-trade checks of one order in one symbol need, read at one moment.

    ``open_mis`` is the signed open intraday quantity of the symbol (+ long, − short);
    ``held`` the settled delivery holdings and ``bought`` the unsettled net delivery buys.
    """

    session: SessionState
    quote: Quote | None
    open_mis: int
    held: int
    bought: int
    available: Decimal
    #: A desk-database broker's own record of this read (``pre_trade_in``), which its
    #: ``place_in`` in the same transaction reuses instead of reading everything again.
    token: object | None = None
    #: Whether the account already sold the symbol from delivery today: the depository (DP)
    #: charge is once per scrip per day, so another delivery sell today pays none. False
    #: (the DP charge is counted) when the broker does not say.
    dp_paid: bool = False


@dataclass(frozen=True, slots=True)
class OrderUpdate:
    """A broker order's new state and the executions that came with the change.

    Pushed to the order manager by a simulated venue's step (and, later, by live brokers'
    order postbacks), so the book is mirrored without polling the broker for it.
    """

    order: BrokerOrder
    trades: tuple[Trade, ...] = ()


@dataclass(frozen=True, slots=True)
class VenueStep:
    """What one step of a simulated venue did: its order events and the orders they changed."""

    events: int
    updates: tuple[OrderUpdate, ...] = ()


@dataclass(frozen=True, slots=True)
class OrderChange:
    """A modification of an open order; ``None`` keeps the current value."""

    quantity: int | None = None
    price: Decimal | None = None
    trigger_price: Decimal | None = None


@runtime_checkable
class Broker(Protocol):
    """One broker account; see the module docstring for required and optional members."""

    name: str
    account_id: int
    capabilities: frozenset[Capability]

    def place_order(self, request: OrderRequest) -> str:
        """Send ``request`` (its ``client_order_id`` set) and return the broker's order id."""
        ...

    def modify_order(self, broker_order_id: str, change: OrderChange) -> None:
        """Change an open order; raise OrderRejected if it is no longer open."""
        ...

    def cancel_order(self, broker_order_id: str) -> None:
        """Cancel an open order's unfilled rest; raise OrderRejected if it is not open."""
        ...

    def orders(self, broker_order_ids: list[str]) -> list[BrokerOrder]:
        """Return the broker's view of the given orders (unknown ids are left out)."""
        ...

    def order_book(self) -> list[BrokerOrder]:
        """Return every order of the current trading day."""
        ...

    def order_trades(self, broker_order_id: str) -> list[Trade]:
        """Return the executions of one order, oldest first."""
        ...

    def trade_book(self) -> list[Trade]:
        """Return every execution of the current trading day, oldest first."""
        ...

    def positions(self) -> list[Position]:
        """Return net positions (intraday, and delivery not yet settled)."""
        ...

    def holdings(self) -> list[Holding]:
        """Return settled delivery holdings."""
        ...

    def funds(self) -> Funds:
        """Return cash, used margin and available funds."""
        ...

    def quote(self, symbol: str) -> Quote | None:
        """Return the latest quote of ``symbol`` or None if there is no price."""
        ...

    def quotes(self, symbols: list[str]) -> dict[str, Quote]:
        """Return the latest quotes of ``symbols`` that have a price."""
        ...

    def session(self) -> SessionState:
        """Return whether the market is open for orders now (else only AMO), and the day."""
        ...


class HistoricalData(Protocol):
    """Optional: candles (``Capability.HISTORICAL``)."""

    def historical(
        self, symbol: str, interval: Interval, start: datetime, end: datetime
    ) -> pd.DataFrame:
        """Return OHLCV candles indexed by aware bar start."""
        ...


class InstrumentMaster(Protocol):
    """Optional: the broker's instrument list (``Capability.INSTRUMENTS``)."""

    def instruments(self) -> list[Instrument]:
        """Return the tradable instruments."""
        ...


class PreTradeReader(Protocol):
    """Optional: one consistent pre-trade read of a symbol (``Capability.PRE_TRADE``)."""

    def pre_trade(self, symbol: str) -> PreTrade:
        """Return session, quote, open positions in ``symbol`` and available funds."""
        ...


class DeskDatabaseBroker(Protocol):
    """Optional: a broker whose books live in the desk's database (``Capability.DESK_DATABASE``).

    The order manager then records the order, has it accepted and records the acceptance in
    one database transaction: nothing can be accepted without being recorded, or recorded
    without its outcome.
    """

    def pre_trade_in(self, session: Session, symbol: str) -> PreTrade:
        """Lock the account in ``session`` and return its pre-trade read of ``symbol``.

        The order manager reads, checks, gates and writes an order in this one transaction,
        under the account's lock: nothing another order of the account does can slip in
        between the checks and the write.
        """
        ...

    def place_in(self, session: Session, request: OrderRequest,
                 pre: PreTrade | None = None) -> str:
        """Accept ``request`` within ``session`` (raising before writing if refused).

        ``pre`` is this broker's :meth:`pre_trade_in` read in the same session, if the caller
        made one: its figures are reused instead of read again.
        """
        ...
