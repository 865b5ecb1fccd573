"""An account's fills held in memory, and its book rebuilt only where something changed.

Every order placement asks for positions, holdings and funds, and an account can hold
thousands of fills: re-reading them and replaying every FIFO lot per call would cost more
than the rest of the order path. :class:`FillCache` keeps the fills in memory and tops them
up with the rows added since (fills are never updated or deleted). The book is kept per FIFO
queue, (symbol, product), in a :class:`QueueBook`: the fills up to the last time the queue was
flat are closed history, whose book is extended once per newly closed run; only the fills
since are replayed by :func:`core.portfolio.build_book`, and only when they, the LTP or the
trading day changed. The parts are added up to the same figures as one book over every fill
(tested against :func:`core.portfolio.build_book`).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import replace
from datetime import date
from decimal import Decimal

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from brokers.paper.records import to_trade
from core import portfolio
from core.trading import Position, Trade
from db.models import PaperTradeRow


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
        closed = self._closed_book(today)
        key = (len(self.trades), today, ltp)
        if self._tail is None or self._tail[0] != key:
            marks = {} if ltp is None else {self.trades[0].symbol: ltp}
            self._tail = (key, portfolio.build_book(self.trades[self._flat_at:], marks, today))
        if closed is None:
            return self._tail[1]
        return _join(closed, self._tail[1], ltp)

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

    def add(self, trade: Trade) -> None:
        """Add one fill to its queue."""
        self._queues.setdefault((trade.symbol, trade.product), QueueBook()).add(trade)
        self.count += 1

    def book(self, ltp: Mapping[str, Decimal] | None, today: date) -> portfolio.Book:
        """Return the book on ``today`` marked at ``ltp`` (None: at each queue's last marks).

        Equal to :func:`core.portfolio.build_book` over every fill added.
        """
        books = [queue.book(queue.last_ltp if ltp is None else ltp.get(symbol), today)
                 for (symbol, _product), queue in self._queues.items()]
        if not books:
            return portfolio.build_book([], {}, today)
        return portfolio.combine_books(books)


class FillCache:
    """The fills and per-queue books of one account, safe to share between threads."""

    def __init__(self, account_id: int) -> None:
        """Start empty; the first read loads every fill of ``account_id``."""
        self.account_id = account_id
        self._lock = threading.Lock()
        self._last_id = 0
        self._fills = AccountBook()

    def book(self, session: Session, ltp: Mapping[str, Decimal] | None,
             today: date) -> portfolio.Book:
        """Return the book on ``today`` of every fill, marked at ``ltp``.

        With ``ltp`` None the marks do not matter to the caller (funds depend on costs, not
        prices): each queue keeps the prices it was last marked at.
        """
        with self._lock:
            self._refresh(session)
            return self._fills.book(ltp, today)

    def _refresh(self, session: Session) -> None:
        """Read the fills added since the last read (all of them if the count disagrees)."""
        account = PaperTradeRow.account_id == self.account_id
        count, last = session.execute(
            select(func.count(), func.max(PaperTradeRow.id)).where(account)).one()
        if count == self._fills.count and (last or 0) == self._last_id:
            return
        query = select(PaperTradeRow).where(account).order_by(PaperTradeRow.id)
        rows = session.scalars(query.where(PaperTradeRow.id > self._last_id)).all()
        if self._fills.count + len(rows) != count:
            # a fill with a lower id committed after a higher one was read: start again
            self._fills, self._last_id = AccountBook(), 0
            rows = session.scalars(query).all()
        for row in rows:
            self._fills.add(to_trade(row))
            self._last_id = max(self._last_id, row.id)
