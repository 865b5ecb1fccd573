"""An account's paper fills held in memory, topped up from the database as they arrive.

Every order placement asks for positions, holdings and funds, and an account can hold
thousands of fills: re-reading them all per call would cost more than the rest of the order
path. :class:`FillCache` keeps the fills in memory and tops them up with the rows added since
(fills are never updated or deleted); its book is a :class:`core.queue_book.AccountBook`,
rebuilt only in the FIFO queues that changed.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from datetime import date
from decimal import Decimal
from typing import Any, cast

from sqlalchemy import Integer, Table, and_, bindparam, func, select
from sqlalchemy.orm import Session

from brokers.paper.records import MONEY_AND_FILLS, to_trade
from core import portfolio
from core.queue_book import AccountBook
from db.models import PaperTradeRow

# Built once (statement building costs about as much CPU as a round trip).
_ACCOUNT = PaperTradeRow.account_id == bindparam("account", type_=Integer)
_VERSION = select(func.count(), func.max(PaperTradeRow.id)).where(_ACCOUNT)
# Plain rows (the fill table's columns, named as PaperTradeRow's attributes), not ORM objects.
_TRADES = cast(Table, PaperTradeRow.__table__)
_AFTER = PaperTradeRow.id > bindparam("after", type_=Integer)
_FILLS_AFTER = select(*_TRADES.c).where(_ACCOUNT, _AFTER).order_by(PaperTradeRow.id)
#: The account's money and fill count beside each fill newer than ``after`` (one row of NULL
#: fill columns when there is none): an order's money read and fill top-up in one round trip.
_MONEY = MONEY_AND_FILLS.subquery()
_MONEY_AND_NEW_FILLS = (
    select(_MONEY.c.paid_in, _MONEY.c.blocked, _MONEY.c.fills, _MONEY.c.last_fill, *_TRADES.c)
    .select_from(_MONEY.outerjoin(_TRADES, and_(_ACCOUNT, _AFTER)))
    .order_by(PaperTradeRow.id))


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

    def money_and_book(self, session: Session, today: date
                       ) -> tuple[Decimal, Decimal, portfolio.Book]:
        """Return the account's paid-in capital, blocked funds and book, in one round trip.

        The book is :meth:`book` with ``ltp`` None. It reads on the session's connection,
        without flushing the session's pending objects first: flush before calling it with
        unflushed ledger, order or fill rows.
        """
        with self._lock:
            rows = session.connection().execute(_MONEY_AND_NEW_FILLS, {
                "account": self.account_id, "after": self._last_id}).all()
            paid_in, blocked, count, last = rows[0][:4]
            self._absorb(session, [row for row in rows if row.id is not None], int(count),
                         int(last or 0))
            return Decimal(paid_in or 0), Decimal(blocked or 0), self._fills.book(None, today)

    def delivery_sold(self, day: date) -> frozenset[str]:
        """Return the symbols this account sold from delivery on ``day``, as last read."""
        with self._lock:
            return self._fills.delivery_sold(day)

    def _refresh(self, session: Session) -> None:
        """Read the fills added since the last read (all of them if the count disagrees)."""
        count, last = session.execute(_VERSION, {"account": self.account_id}).one()
        if count == self._fills.count and (last or 0) == self._last_id:
            return
        # On the session's connection: fills are written only by the exchange step, which
        # flushes them itself, so there is nothing pending to flush first.
        rows = list(session.connection().execute(_FILLS_AFTER, {
            "account": self.account_id, "after": self._last_id}))
        self._absorb(session, rows, count, last or 0)

    def _absorb(self, session: Session, rows: list[Any], count: int, last: int) -> None:
        """Add ``rows``, the fills after the last read; read all again if they do not add up.

        ``count`` and ``last`` are the account's fill count and last fill id, read with them.
        """
        if count == self._fills.count and last == self._last_id:
            return
        if self._fills.count + len(rows) != count:
            # a fill with a lower id committed after a higher one was read: start again
            self._fills, self._last_id = AccountBook(), 0
            rows = list(session.connection().execute(_FILLS_AFTER, {
                "account": self.account_id, "after": 0}))
        for row in rows:
            self._fills.add(to_trade(cast(PaperTradeRow, row)))
            self._last_id = max(self._last_id, row.id)
