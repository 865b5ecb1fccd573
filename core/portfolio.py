"""Positions, holdings, P&L and funds derived from fills by FIFO lot matching.

Pure: no I/O, no database, no ``streamlit``. The paper broker, the services and the statements
(:mod:`core.statements`) derive every figure here, so all screens agree to the paisa.

Rules
-----
- Lots are matched first in, first out per (account, symbol, product): CNC is the delivery
  bucket, MIS the intraday bucket, NRML a bucket of its own. A buy first closes open short lots,
  then opens a long lot with the rest; a sell closes long lots, then opens a short lot.
- Trades are processed in ``executed_at`` order; equal times keep their input order.
- Realized P&L of a closed share is sell price − buy price. Charges are never netted into
  realized P&L; they are totalled apart (``Book.charges``).
- A long CNC lot is a holding once its settlement day (:func:`next_settlement_day`, T+1) is on or
  before ``today``. Every other open lot (unsettled CNC, CNC shorts, MIS, NRML) is a position.
- Unrealized P&L = LTP × open quantity − cost of the open lots, i.e. (LTP − average) × quantity
  without the rounding of the average. Without an LTP the lots are marked at cost: unrealized
  0, counted at cost in ``Book.market_value``, and the symbol listed in ``Book.unpriced``.

Identities (tested as properties)
---------------------------------
``cash_flow + market_value == realized_pnl + unrealized_pnl − charges``, exactly; and
``compute_funds(...).cash == deposits + realized − charges − cost of open CNC and NRML lots``.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import date, datetime, timedelta
from decimal import Decimal
from functools import cache
from operator import attrgetter

from core.clock import is_trading_day
from core.errors import ConfigError, ValidationError
from core.money import as_typed
from core.trading import ZERO, Funds, Holding, Position, Product, Side, Trade

#: (account_id, symbol, product): one FIFO queue of lots.
LotKey = tuple[int, str, Product]


def next_settlement_day(trade_date: date) -> date:
    """Return the T+1 settlement day: the first NSE trading day after ``trade_date``.

    Raises
    ------
    ValidationError
        If ``trade_date`` is a datetime or not a date.
    ConfigError
        If the trading calendar does not cover the days after ``trade_date``.
    """
    _check_day(trade_date, "Trade date")
    day = trade_date + timedelta(days=1)
    for _ in range(31):
        if is_trading_day(day):
            return day
        day += timedelta(days=1)
    raise ConfigError(f"no NSE trading day in the 31 days after {trade_date}; check the calendar")


def _check_day(day: object, what: str) -> None:
    if isinstance(day, datetime) or not isinstance(day, date):
        raise ValidationError(f"{what} must be a calendar date (the IST trading day); got {day!r}")


# ----------------------------------------------------------------------------------------------
# FIFO matching
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Lot:
    """Open shares of one fill: signed ``quantity`` (+ long, − short) at the fill ``price``."""

    account_id: int
    symbol: str
    product: Product
    quantity: int
    price: Decimal
    trade_date: date

    @property
    def cost(self) -> Decimal:
        """Return price × signed quantity in rupees (negative for a short lot)."""
        return self.price * self.quantity


@dataclass(frozen=True, slots=True)
class Close:
    """``quantity`` shares of an earlier lot (opened at ``open_price``) closed by ``trade``."""

    trade: Trade
    quantity: int
    open_price: Decimal
    open_date: date

    @property
    def buy_price(self) -> Decimal:
        """Return the buy price of the closed shares."""
        return self.open_price if self.trade.side is Side.SELL else self.trade.price

    @property
    def sell_price(self) -> Decimal:
        """Return the sell price of the closed shares."""
        return self.trade.price if self.trade.side is Side.SELL else self.open_price

    @property
    def realized(self) -> Decimal:
        """Return (sell price − buy price) × quantity in rupees."""
        return (self.sell_price - self.buy_price) * self.quantity


@dataclass(frozen=True, slots=True)
class Ledger:
    """The result of matching fills: the trades in order, the lots still open, every close."""

    trades: tuple[Trade, ...]
    lots: Mapping[LotKey, tuple[Lot, ...]]
    closes: tuple[Close, ...]


def lot_key(trade: Trade) -> LotKey:
    """Return the FIFO queue a trade belongs to: (account, symbol, product)."""
    return (trade.account_id, trade.symbol, trade.product)


def _check_trade(trade: Trade) -> None:
    name = f"Trade {trade.broker_trade_id} ({trade.side} {trade.quantity} {trade.symbol})"
    if trade.executed_at.tzinfo is None:
        raise ValidationError(f"{name} has a naive execution time {trade.executed_at}; "
                              "trades need aware times")
    if isinstance(trade.quantity, bool) or not isinstance(trade.quantity, int) \
            or trade.quantity <= 0:
        raise ValidationError(f"{name}: quantity must be a whole number above 0")
    if not isinstance(trade.price, Decimal) or not trade.price.is_finite() or trade.price <= 0:
        raise ValidationError(f"{name}: price must be a Decimal above ₹0; got {trade.price!r}")


def replay(trades: Iterable[Trade]) -> Ledger:
    """Match ``trades`` FIFO per (account, symbol, product); see the module docstring.

    Raises
    ------
    ValidationError
        On a trade with a naive time, a non-positive quantity or a non-Decimal price.
    """
    given = list(trades)
    for trade in given:
        _check_trade(trade)  # before sorting: a naive time cannot be compared with aware ones
    ordered = sorted(given, key=lambda t: t.executed_at)  # stable: ties keep input order
    queues: dict[LotKey, deque[Lot]] = defaultdict(deque)
    closes: list[Close] = []
    for trade in ordered:
        queue = queues[lot_key(trade)]
        sign = trade.side.sign
        remaining = trade.quantity
        while remaining and queue and queue[0].quantity * sign < 0:
            lot = queue[0]
            taken = min(remaining, abs(lot.quantity))
            closes.append(Close(trade, taken, lot.price, lot.trade_date))
            remaining -= taken
            if taken == abs(lot.quantity):
                queue.popleft()
            else:
                queue[0] = replace(lot, quantity=lot.quantity + sign * taken)
        if remaining:
            queue.append(Lot(trade.account_id, trade.symbol, trade.product, sign * remaining,
                             trade.price, trade.trade_date))
    lots = {key: tuple(queue) for key, queue in queues.items() if queue}
    return Ledger(tuple(ordered), lots, tuple(closes))


# ----------------------------------------------------------------------------------------------
# The book
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Book:
    """Positions, holdings and money of one account (or several, summed) on ``today``.

    Money is in rupees (₹), unrounded :class:`~decimal.Decimal`.

    Attributes
    ----------
    today : date
        The trading day the "today" figures refer to.
    account_ids : tuple[int, ...]
        Accounts whose trades the book holds.
    positions, holdings : tuple
        Rows as :func:`build_book` describes them, sorted by account, symbol (and product).
    realized_pnl, realized_today : Decimal
        Realized P&L of every close, and of closes by trades dated ``today``.
    unrealized_pnl : Decimal
        Of open positions and holdings (0 for lots without an LTP).
    charges, charges_today : Decimal
        Charges of every trade, and of trades dated ``today``.
    buy_value, sell_value : Decimal
        Σ price × quantity of every buy, and of every sell.
    mis_open_cost : Decimal
        Signed cost of open MIS lots (+ long, − short).
    mis_exposure : Decimal
        Σ |cost| of open MIS lots: what intraday margin is a fraction of.
    market_value : Decimal
        Σ open quantity × LTP, signed, positions and holdings; lots without an LTP at cost.
    unpriced : tuple[str, ...]
        Symbols with open lots but no LTP, sorted.
    """

    today: date
    account_ids: tuple[int, ...]
    positions: tuple[Position, ...]
    holdings: tuple[Holding, ...]
    realized_pnl: Decimal
    realized_today: Decimal
    unrealized_pnl: Decimal
    charges: Decimal
    charges_today: Decimal
    buy_value: Decimal
    sell_value: Decimal
    mis_open_cost: Decimal
    mis_exposure: Decimal
    market_value: Decimal
    unpriced: tuple[str, ...]

    @property
    def cash_flow(self) -> Decimal:
        """Return sell value − buy value − charges: the cash the trades moved, in rupees."""
        return self.sell_value - self.buy_value - self.charges

    @property
    def day_pnl(self) -> Decimal:
        """Return today's net P&L: realized today + positions' unrealized − charges today.

        Holdings' change since the previous close is not in it (the book has no previous
        close); their unrealized P&L since purchase is in ``unrealized_pnl``.
        """
        positions_unrealized = sum((p.unrealized_pnl for p in self.positions), ZERO)
        return self.realized_today + positions_unrealized - self.charges_today

    def mis_margin(self, leverage: int) -> Decimal:
        """Return the margin open intraday positions block: Σ |MIS qty × average| / leverage.

        Raises
        ------
        ValidationError
            If ``leverage`` is not a whole number of at least 1.
        """
        if isinstance(leverage, bool) or not isinstance(leverage, int) or leverage < 1:
            raise ValidationError(f"MIS leverage must be a whole number of at least 1; "
                                  f"got {leverage!r}")
        return self.mis_exposure / leverage


class _Marks:
    """Marks open lots to LTP, totalling market value and unrealized P&L as it goes."""

    def __init__(self, ltp: Mapping[str, Decimal]) -> None:
        self.ltp = ltp
        self.market_value = ZERO
        self.unrealized = ZERO
        self.unpriced: set[str] = set()

    def mark(self, symbol: str, quantity: int, cost: Decimal) -> tuple[Decimal | None, Decimal]:
        """Return (LTP or None, unrealized P&L) of ``quantity`` shares costing ``cost``."""
        price = self.ltp.get(symbol)
        if price is not None and not isinstance(price, Decimal):
            raise ValidationError(f"LTP of {symbol} must be a Decimal; got {price!r}")
        if price is None:
            if quantity:
                self.unpriced.add(symbol)
            self.market_value += cost
            return None, ZERO
        unrealized = price * quantity - cost
        self.market_value += price * quantity
        self.unrealized += unrealized
        return price, unrealized


def _average(quantity: int, cost: Decimal) -> Decimal:
    return cost / quantity if quantity else ZERO


def build_book(
    trades: Sequence[Trade],
    ltp: Mapping[str, Decimal],
    today: date,
    settle_day: Callable[[date], date] = next_settlement_day,
) -> Book:
    """Derive positions, holdings and P&L from fills, marked at ``ltp``.

    Trades of several accounts may be mixed: lots, positions and holdings are kept per account
    and the money figures add across them. For per-account figures build one book per account
    and add them with :func:`consolidate`.

    Position rows: one per (account, symbol, product) with open non-holding lots or with trades
    dated ``today``. ``quantity`` and ``average_price`` are of the open lots (0 when flat);
    ``realized_pnl`` is realized by that product's closing trades dated ``today`` only (a CNC
    sell today against settled holdings is realized on the CNC row); ``buy_quantity`` and
    ``sell_quantity`` are today's; ``unrealized_pnl`` is 0 when the LTP is unknown (then
    ``ltp`` is None and the symbol is in ``Book.unpriced``).

    Holding rows: one per (account, symbol) with settled long CNC lots; average is the FIFO cost
    of those lots.

    Parameters
    ----------
    trades : Sequence[Trade]
        Every fill of the accounts, all time (older lots decide today's averages).
    ltp : Mapping[str, Decimal]
        Last traded price per symbol; missing symbols are marked at cost.
    today : date
        The IST trading day "today" means.
    settle_day : Callable[[date], date]
        Settlement day of a trade date; defaults to :func:`next_settlement_day` (T+1).

    Raises
    ------
    ValidationError
        On a bad trade (see :func:`replay`), a non-date ``today`` or a non-Decimal LTP.
    ConfigError
        If the calendar does not cover a settlement day asked for.
    """
    _check_day(today, "Today")
    ledger = replay(trades)
    settles = cache(settle_day)
    marks = _Marks(ltp)

    def is_holding(lot: Lot) -> bool:
        return lot.product is Product.CNC and lot.quantity > 0 and settles(lot.trade_date) <= today

    open_lots = [lot for lots in ledger.lots.values() for lot in lots]
    holdings = _holdings([lot for lot in open_lots if is_holding(lot)], marks)
    position_lots: dict[LotKey, list[Lot]] = defaultdict(list)
    for lot in open_lots:
        if not is_holding(lot):
            position_lots[(lot.account_id, lot.symbol, lot.product)].append(lot)
    positions = _positions(ledger, position_lots, today, marks)
    mis_lots = [lot for lot in open_lots if lot.product is Product.MIS]
    todays = [t for t in ledger.trades if t.trade_date == today]
    return Book(
        today=today,
        account_ids=tuple(sorted({t.account_id for t in ledger.trades})),
        positions=positions,
        holdings=holdings,
        realized_pnl=sum((c.realized for c in ledger.closes), ZERO),
        realized_today=sum((p.realized_pnl for p in positions), ZERO),
        unrealized_pnl=marks.unrealized,
        charges=sum((t.charges.total for t in ledger.trades), ZERO),
        charges_today=sum((t.charges.total for t in todays), ZERO),
        buy_value=sum((t.value for t in ledger.trades if t.side is Side.BUY), ZERO),
        sell_value=sum((t.value for t in ledger.trades if t.side is Side.SELL), ZERO),
        mis_open_cost=sum((lot.cost for lot in mis_lots), ZERO),
        mis_exposure=sum((abs(lot.cost) for lot in mis_lots), ZERO),
        market_value=marks.market_value,
        unpriced=tuple(sorted(marks.unpriced)),
    )


def _holdings(lots: list[Lot], marks: _Marks) -> tuple[Holding, ...]:
    grouped: dict[tuple[int, str], list[Lot]] = defaultdict(list)
    for lot in lots:
        grouped[(lot.account_id, lot.symbol)].append(lot)
    rows = []
    for (account_id, symbol), group in sorted(grouped.items()):
        quantity = sum(lot.quantity for lot in group)
        cost = sum((lot.cost for lot in group), ZERO)
        price, unrealized = marks.mark(symbol, quantity, cost)
        rows.append(Holding(account_id, symbol, quantity, _average(quantity, cost), price,
                            unrealized))
    return tuple(rows)


def _positions(ledger: Ledger, lots: Mapping[LotKey, list[Lot]], today: date,
               marks: _Marks) -> tuple[Position, ...]:
    realized: dict[LotKey, Decimal] = defaultdict(Decimal)
    for close in ledger.closes:
        if close.trade.trade_date == today:
            realized[lot_key(close.trade)] += close.realized
    bought: dict[LotKey, int] = defaultdict(int)
    sold: dict[LotKey, int] = defaultdict(int)
    for trade in ledger.trades:
        if trade.trade_date == today:
            (bought if trade.side is Side.BUY else sold)[lot_key(trade)] += trade.quantity
    rows = []
    for key in sorted(set(lots) | set(bought) | set(sold)):
        account_id, symbol, product = key
        quantity = sum(lot.quantity for lot in lots.get(key, ()))
        cost = sum((lot.cost for lot in lots.get(key, ())), ZERO)
        price, unrealized = marks.mark(symbol, quantity, cost)
        rows.append(Position(account_id, symbol, product, quantity, _average(quantity, cost),
                             price, realized[key], unrealized, bought[key], sold[key]))
    return tuple(rows)


# ----------------------------------------------------------------------------------------------
# Funds
# ----------------------------------------------------------------------------------------------


def compute_funds(
    account_id: int,
    deposits: Decimal,
    book: Book,
    blocked_for_orders: Decimal,
    mis_leverage: int,
    charges_today: Decimal | None = None,
) -> Funds:
    """Return the funds of one account from its book.

    ``cash = deposits + book.cash_flow + book.mis_open_cost``, i.e. deposits + realized −
    charges − cost of open CNC (and NRML) lots: intraday positions take margin, not cash.
    ``used_margin = book.mis_margin(mis_leverage) + blocked_for_orders`` and
    ``available = cash − used_margin``.

    Parameters
    ----------
    account_id : int
        The account; ``book`` must hold no other account's trades.
    deposits : Decimal
        Paid in, net of withdrawals.
    book : Book
        The account's book (:func:`build_book`).
    blocked_for_orders : Decimal
        Margin blocked by open orders (≥ 0).
    mis_leverage : int
        Intraday leverage (5 means 20% margin).
    charges_today : Decimal | None
        Today's charges if the caller knows better; default ``book.charges_today``.

    Raises
    ------
    ValidationError
        If the book holds another account, money is not Decimal, ``blocked_for_orders`` is
        negative or the leverage is below 1.
    """
    others = [a for a in book.account_ids if a != account_id]
    if others:
        raise ValidationError(f"Funds of account {account_id} cannot come from a book holding "
                              f"accounts {list(book.account_ids)}")
    for what, amount in (("Deposits", deposits), ("Blocked margin", blocked_for_orders)):
        if not isinstance(amount, Decimal):
            raise ValidationError(f"{what} must be a Decimal amount in rupees; got {amount!r}")
    if blocked_for_orders < 0:
        raise ValidationError("Blocked margin cannot be negative; got "
                              f"{as_typed(blocked_for_orders)}")
    cash = deposits + book.cash_flow + book.mis_open_cost
    used = book.mis_margin(mis_leverage) + blocked_for_orders
    return Funds(
        account_id=account_id, deposits=deposits, cash=cash, used_margin=used,
        available=cash - used, realized_pnl=book.realized_pnl, charges_total=book.charges,
        charges_today=book.charges_today if charges_today is None else charges_today,
    )


# ----------------------------------------------------------------------------------------------
# The family: books added up, with a row per account
# ----------------------------------------------------------------------------------------------

_SUMMED = ("realized_pnl", "realized_today", "unrealized_pnl", "charges", "charges_today",
           "buy_value", "sell_value", "mis_open_cost", "mis_exposure", "market_value")


def combine_books(books: Iterable[Book]) -> Book:
    """Return one book holding every row of ``books`` with their money figures summed.

    Raises
    ------
    ValidationError
        If no book is given or the books are of different days.
    """
    books = tuple(books)
    days = sorted({b.today for b in books})
    if len(days) != 1:
        raise ValidationError("Books to add up must be of one trading day; got "
                              f"{', '.join(map(str, days)) or 'no books'}")
    # Plain loops, not generators: every order adds up each account's queues (hot path).
    account_ids: set[int] = set()
    positions: list[Position] = []
    holdings: list[Holding] = []
    unpriced: set[str] = set()
    sums = dict.fromkeys(_SUMMED, ZERO)
    for book in books:
        account_ids.update(book.account_ids)
        positions += book.positions
        holdings += book.holdings
        unpriced.update(book.unpriced)
        for name in _SUMMED:
            sums[name] += getattr(book, name)
    positions.sort(key=_position_order)
    holdings.sort(key=_holding_order)
    return Book(today=days[0], account_ids=tuple(sorted(account_ids)),
                positions=tuple(positions), holdings=tuple(holdings),
                unpriced=tuple(sorted(unpriced)), **sums)


_position_order = attrgetter("account_id", "symbol", "product")
_holding_order = attrgetter("account_id", "symbol")


@dataclass(frozen=True, slots=True)
class FamilyPosition:
    """One symbol and product (``None`` for holdings) summed over the family's accounts.

    ``average_price`` is net open cost / net quantity, the family's break-even price (0 when
    flat); ``unrealized_pnl`` is the exact sum of the accounts' rows.
    """

    symbol: str
    product: Product | None
    accounts: tuple[int, ...]
    quantity: int
    average_price: Decimal
    ltp: Decimal | None
    realized_pnl: Decimal
    unrealized_pnl: Decimal
    buy_quantity: int
    sell_quantity: int


def merge_rows(rows: Iterable[Position | Holding]) -> tuple[FamilyPosition, ...]:
    """Sum positions per (symbol, product) and holdings per symbol across accounts.

    Sorted by symbol, holdings (product ``None``) before positions.
    """
    groups: dict[tuple[str, str], list[Position | Holding]] = defaultdict(list)
    for row in rows:
        groups[(row.symbol, row.product if isinstance(row, Position) else "")].append(row)
    merged = []
    for (symbol, product), group in sorted(groups.items()):
        positions = [r for r in group if isinstance(r, Position)]
        quantity = sum(r.quantity for r in group)
        cost = sum((r.average_price * r.quantity for r in group), ZERO)
        merged.append(FamilyPosition(
            symbol=symbol, product=Product(product) if product else None,
            accounts=tuple(sorted({r.account_id for r in group})), quantity=quantity,
            average_price=_average(quantity, cost),
            ltp=next((r.ltp for r in group if r.ltp is not None), None),
            realized_pnl=sum((p.realized_pnl for p in positions), ZERO),
            unrealized_pnl=sum((r.unrealized_pnl for r in group), ZERO),
            buy_quantity=sum(p.buy_quantity for p in positions),
            sell_quantity=sum(p.sell_quantity for p in positions)))
    return tuple(merged)


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """Headline figures of one account (``account_id`` None: the family total), in rupees.

    ``day_pnl`` is :attr:`Book.day_pnl`; ``deposits`` is None when not given.
    """

    account_id: int | None
    deposits: Decimal | None
    realized_pnl: Decimal
    realized_today: Decimal
    unrealized_pnl: Decimal
    charges: Decimal
    charges_today: Decimal
    market_value: Decimal
    day_pnl: Decimal
    cash_flow: Decimal

    @property
    def net_pnl(self) -> Decimal:
        """Return realized + unrealized − charges, all time."""
        return self.realized_pnl + self.unrealized_pnl - self.charges

    @property
    def equity(self) -> Decimal | None:
        """Return deposits + cash flow + market value (cash plus what is open), or None."""
        return None if self.deposits is None else (
            self.deposits + self.cash_flow + self.market_value)


def summarise(account_id: int | None, book: Book, deposits: Decimal | None = None
              ) -> AccountSummary:
    """Return the headline figures of ``book``."""
    return AccountSummary(
        account_id=account_id, deposits=deposits, realized_pnl=book.realized_pnl,
        realized_today=book.realized_today, unrealized_pnl=book.unrealized_pnl,
        charges=book.charges, charges_today=book.charges_today, market_value=book.market_value,
        day_pnl=book.day_pnl, cash_flow=book.cash_flow)


@dataclass(frozen=True, slots=True)
class FamilySummary:
    """The whole family with drill-down per account.

    Attributes
    ----------
    accounts : tuple[AccountSummary, ...]
        One row per account, by account id.
    total : AccountSummary
        The family (``account_id`` None); deposits only when every account's are known.
    book : Book
        Every account's rows, money summed (:func:`combine_books`).
    positions, holdings : tuple[FamilyPosition, ...]
        Rows merged across accounts (:func:`merge_rows`).
    """

    accounts: tuple[AccountSummary, ...]
    total: AccountSummary
    book: Book
    positions: tuple[FamilyPosition, ...]
    holdings: tuple[FamilyPosition, ...]


def consolidate(books: Mapping[int, Book], deposits: Mapping[int, Decimal] | None = None
                ) -> FamilySummary:
    """Add up one book per account (keyed by account id) into a family summary.

    Raises
    ------
    ValidationError
        If a book holds trades of an account other than its key, no book is given, or the
        books are of different days.
    """
    for account_id, book in books.items():
        if set(book.account_ids) - {account_id}:
            raise ValidationError(f"The book given for account {account_id} holds accounts "
                                  f"{list(book.account_ids)}")
    known = deposits or {}
    rows = tuple(summarise(a, books[a], known.get(a)) for a in sorted(books))
    family = combine_books(books[a] for a in sorted(books))
    total_deposits = (sum((known[a] for a in books), ZERO)
                      if deposits is not None and all(a in known for a in books) else None)
    return FamilySummary(
        accounts=rows, total=summarise(None, family, total_deposits), book=family,
        positions=merge_rows(family.positions), holdings=merge_rows(family.holdings))
