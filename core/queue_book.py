"""An account's fills in memory, by FIFO queue, with the book rebuilt only where it changed.

Every order placement needs the account's positions, funds and P&L, and an account can hold
thousands of fills: replaying every FIFO lot per call would cost more than the rest of the
order path. The book is kept per FIFO queue, (symbol, product), in a :class:`QueueBook`: the
fills up to the last time the queue was flat are closed history, whose book is extended once
per newly closed run; only the fills since are replayed by :func:`core.portfolio.build_book`,
and only when they, the LTP or the trading day changed. :class:`AccountBook` adds the queues up
to the same figures as one book over every fill (tested against
:func:`core.portfolio.build_book`). The paper broker (:mod:`brokers.paper.book`) and the risk
gate (:mod:`core.services.risk_gate`) keep one per account.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal

from core import portfolio
from core.trading import Position, Product, Side, Trade


def _merge_rows(old: Position | None, new: Position | None,
                ltp: Decimal | None) -> Position | None:
    """Return one queue's position row from the closed history's row and the open part's."""
    if old is None or new is None:
        return new or (old and replace(old, ltp=ltp))
    return replace(new, realized_pnl=old.realized_pnl + new.realized_pnl,
                   buy_quantity=old.buy_quantity + new.buy_quantity,
                   sell_quantity=old.sell_quantity + new.sell_quantity)


def _join(closed: portfolio.Book, tail: portfolio.Book, ltp: Decimal | None) -> portfolio.Book:
    """Return the book of one queue's closed history followed by the fills since."""
    row = _merge_rows(closed.positions[0] if closed.positions else None,
                      tail.positions[0] if tail.positions else None, ltp)
    summed = portfolio.combine_books([closed, tail])
    return replace(summed, positions=() if row is None else (row,))


class QueueBook:
    """The fills of one FIFO queue (one account, symbol and product) and their book."""

    def __init__(self) -> None:
        """Start with no fills."""
        self.trades: list[Trade] = []
        self._clear()

    def _clear(self) -> None:
        self.trades = []
        self._net = 0
        self._flat_at = 0  # trades[:flat_at] net to zero: closed history
        self._closed: tuple[int, date, portfolio.Book] | None = None
        self._tail: tuple[tuple[int, date, Decimal | None], portfolio.Book] | None = None
        self._whole: tuple[tuple[int, date, Decimal | None], portfolio.Book] | None = None

    def add(self, trade: Trade) -> None:
        """Add a fill; one executed before the latest refiles the queue in time order."""
        if self.trades and trade.executed_at < self.trades[-1].executed_at:
            trades = sorted([*self.trades, trade], key=lambda t: t.executed_at)  # stable
            self._clear()
            for each in trades:
                self.add(each)
            return
        self.trades.append(trade)
        self._net += trade.side.sign * trade.quantity
        if self._net == 0:
            self._flat_at = len(self.trades)

    def book(self, ltp: Decimal | None, today: date) -> portfolio.Book:
        """Return the queue's book on ``today`` marked at ``ltp`` (None: unpriced)."""
        key = (len(self.trades), today, ltp)
        if self._whole is not None and self._whole[0] == key:  # nothing changed since
            return self._whole[1]
        closed = self._closed_book(today)
        if self._tail is None or self._tail[0] != key:
            marks = {} if ltp is None else {self.trades[0].symbol: ltp}
            self._tail = (key, portfolio.build_book(self.trades[self._flat_at:], marks, today))
        whole = self._tail[1] if closed is None else _join(closed, self._tail[1], ltp)
        self._whole = (key, whole)
        return whole

    @property
    def last_ltp(self) -> Decimal | None:
        """Return the LTP the queue was last marked at (None if never)."""
        return None if self._tail is None else self._tail[0][2]

    def _closed_book(self, today: date) -> portfolio.Book | None:
        """Return the book of the closed history, extended by the runs closed since."""
        if self._flat_at == 0:
            return None
        done = self._closed
        if done is None or done[1] != today or done[0] > self._flat_at:
            book = portfolio.build_book(self.trades[:self._flat_at], {}, today)
        elif done[0] < self._flat_at:
            run = portfolio.build_book(self.trades[done[0]:self._flat_at], {}, today)
            book = _join(done[2], run, None)
        else:
            return done[2]
        self._closed = (self._flat_at, today, book)
        return book


class AccountBook:
    """Every fill of one account, by FIFO queue, and the account's book added up from them."""

    def __init__(self) -> None:
        """Start with no fills."""
        self.count = 0
        self._queues: dict[tuple[str, str], QueueBook] = {}
        #: Symbols sold from delivery (CNC), by trade date: the DP charge is once a day each.
        self._delivery_sells: dict[date, set[str]] = {}
        self._summed: tuple[tuple[portfolio.Book, ...], portfolio.Book] | None = None

    def add(self, trade: Trade) -> None:
        """Add one fill to its queue."""
        self._queues.setdefault((trade.symbol, trade.product), QueueBook()).add(trade)
        self.count += 1
        if trade.product is Product.CNC and trade.side is Side.SELL:
            self._delivery_sells.setdefault(trade.trade_date, set()).add(trade.symbol)

    def delivery_sold(self, day: date) -> frozenset[str]:
        """Return the symbols sold from delivery on ``day`` (their DP charge is paid)."""
        return frozenset(self._delivery_sells.get(day, ()))

    def book(self, ltp: Mapping[str, Decimal] | None, today: date) -> portfolio.Book:
        """Return the book on ``today`` marked at ``ltp`` (None: at each queue's last marks).

        Equal to :func:`core.portfolio.build_book` over every fill added.
        """
        books = [queue.book(queue.last_ltp if ltp is None else ltp.get(symbol), today)
                 for (symbol, _product), queue in self._queues.items()]
        if not books:
            return portfolio.build_book([], {}, today)
        # Each queue returns the very same book while it is unchanged (held here, so no id
        # is reused): the sum is redone only when one of them is new.
        summed = self._summed
        if summed is None or len(summed[0]) != len(books) or any(
                old is not new for old, new in zip(summed[0], books, strict=True)):
            summed = self._summed = (tuple(books), portfolio.combine_books(books))
        return summed[1]
