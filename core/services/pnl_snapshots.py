"""The end-of-day P&L snapshot: one row per active account and one for the whole family.

The worker takes it after the close on NSE trading days (:meth:`PnlSnapshotService.take`); a
page reads the history (:meth:`PnlSnapshotService.history`). Figures come from
:mod:`core.portfolio` exactly as the risk gate computes them (``Book.day_pnl``,
``AccountSummary.equity``); the family row is :func:`core.portfolio.consolidate`'s total.

Idempotence is the database's: ``(trade_date, scope_key)`` is unique, and every row is
inserted with ``ON CONFLICT DO NOTHING`` (SQLite and PostgreSQL alike). A household is written
in one transaction, family row first: that row is the household's claim on the day, so when it
already exists (an earlier run, or a concurrent one that committed first) nothing else is
written and the household counts as already taken. No duplicate, no half-written household.

Trades dated after the snapshot's day are left out, so a late run books the day it names;
prices are the latest the desk has (the feed's quotes, else the last daily close), which after
the close are that day's closing prices.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

import pandas as pd
from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from core import portfolio
from core.clock import is_trading_day, now_ist, to_ist
from core.config import Settings
from core.domain import Actor
from core.errors import ValidationError
from core.services.base import ServiceBase
from core.services.household import HouseholdService
from core.services.portfolio import Fundable, PortfolioService
from core.services.trade_book import load_trades
from core.trading import ZERO, Trade
from db.engine import Database
from db.models import AccountRow, HouseholdRow, PnlSnapshotRow

#: Column names of :meth:`PnlSnapshotService.history`, in order.
HISTORY_COLUMNS = (
    "Trade date", "Account", "Realized today (₹)", "Unrealized on open positions (₹)",
    "Charges today (₹)", "Day P&L (₹)", "Equity (₹)", "Paid in (₹)", "Open positions",
    "Trades today",
)
FAMILY = "Family (all accounts)"


def account_key(account_id: int) -> str:
    """Return the snapshot scope key of one account: ``account:<id>``."""
    return f"account:{account_id}"


def household_key(household_id: int) -> str:
    """Return the snapshot scope key of a family total: ``household:<id>``."""
    return f"household:{household_id}"


@dataclass(frozen=True, slots=True)
class SnapshotReport:
    """What one :meth:`PnlSnapshotService.take` did.

    Attributes
    ----------
    day : date
        The IST trading day the snapshot is of.
    taken : bool
        False when the day is not an NSE trading day (nothing is written; ``reason`` says so).
    reason : str
        Why nothing was taken, else "".
    rows_written : int
        Rows inserted by this run (accounts and family rows).
    households_written, households_already_taken : tuple[int, ...]
        Household ids written now, and those whose snapshot of ``day`` existed already.
    """

    day: date
    taken: bool
    reason: str = ""
    rows_written: int = 0
    households_written: tuple[int, ...] = ()
    households_already_taken: tuple[int, ...] = ()

    def summary(self) -> str:
        """Return one line for the worker's log."""
        if not self.taken:
            return f"no P&L snapshot for {self.day}: {self.reason}"
        return (f"P&L snapshot of {self.day}: {self.rows_written} row(s) written for "
                f"{len(self.households_written)} household(s); "
                f"{len(self.households_already_taken)} already taken")


@dataclass(frozen=True, slots=True)
class _Figures:
    """One snapshot row's figures before it is written."""

    account_id: int | None
    realized_today: Decimal
    unrealized: Decimal
    charges_today: Decimal
    day_pnl: Decimal
    equity: Decimal | None
    deposits: Decimal | None
    open_positions: int
    trades_today: int


def _figures(summary: portfolio.AccountSummary, book: portfolio.Book,
             trades_today: int) -> _Figures:
    return _Figures(
        account_id=summary.account_id, realized_today=summary.realized_today,
        unrealized=sum((p.unrealized_pnl for p in book.positions), ZERO),
        charges_today=summary.charges_today, day_pnl=summary.day_pnl, equity=summary.equity,
        deposits=summary.deposits, open_positions=sum(1 for p in book.positions if p.quantity),
        trades_today=trades_today)


class PnlSnapshotService(ServiceBase):
    """Takes and reads the end-of-day P&L snapshots (see the module docstring)."""

    def __init__(self, db: Database, settings: Settings, household: HouseholdService,
                 portfolio_service: PortfolioService,
                 clock: Callable[[], datetime] = now_ist) -> None:
        """Bind to ``db``; ``portfolio_service`` supplies prices and the accounts' brokers."""
        super().__init__(db, settings)
        self.household = household
        self.portfolio = portfolio_service
        self.clock = clock

    # -- taking ---------------------------------------------------------------------------------
    def take(self, day: date | None = None) -> SnapshotReport:
        """Write the snapshot of ``day`` (default: today in IST) for every household.

        One row per active account and one family row per household, each household in one
        transaction. A day already taken writes nothing new.

        Raises
        ------
        ValidationError
            If ``day`` is not a calendar date.
        ConfigError
            If the trading calendar does not cover ``day``.
        """
        day = to_ist(self.clock()).date() if day is None else day
        if isinstance(day, datetime) or not isinstance(day, date):
            raise ValidationError(f"Snapshot day must be a calendar date; got {day!r}")
        if not is_trading_day(day):
            return SnapshotReport(day, taken=False,
                                  reason=f"{day:%A %d %b %Y} is not an NSE trading day")
        with self.db.transaction() as session:
            households = list(session.scalars(select(HouseholdRow.id).order_by(HouseholdRow.id)))
        written: list[int] = []
        skipped: list[int] = []
        rows = 0
        for household_id in households:
            count = self._take_household(household_id, day)
            if count is None:
                skipped.append(household_id)
            else:
                written.append(household_id)
                rows += count
        return SnapshotReport(day, taken=True, rows_written=rows,
                              households_written=tuple(written),
                              households_already_taken=tuple(skipped))

    def _take_household(self, household_id: int, day: date) -> int | None:
        """Write one household's rows; return how many, or None if the day was taken."""
        with self.db.transaction() as session:
            if self._exists(session, day, household_key(household_id)):
                return None
            account_ids = list(session.scalars(
                select(AccountRow.id).where(AccountRow.household_id == household_id,
                                            AccountRow.is_active.is_(True))
                .order_by(AccountRow.id)))
        accounts, family = self._household_figures(account_ids, day)
        with self.db.transaction() as session:
            if not self._insert(session, day, household_id, household_key(household_id),
                                family):
                return None  # taken meanwhile: write nothing (the transaction holds no write)
            for account_id, row in accounts.items():
                self._insert(session, day, household_id, account_key(account_id), row)
        return len(accounts) + 1

    def _household_figures(self, account_ids: Sequence[int], day: date
                           ) -> tuple[dict[int, _Figures], _Figures]:
        """Return the figures per account id and the family total's."""
        trades = {a: load_trades(self.db, [a], None, day) for a in account_ids}
        prices = self.portfolio.prices(sorted({t.symbol for ts in trades.values() for t in ts}))
        books = {a: portfolio.build_book(trades[a], prices, day) for a in account_ids}
        deposits = {}
        for account_id in account_ids:
            broker = self.portfolio.orders.broker_for(account_id)
            if isinstance(broker, Fundable):
                deposits[account_id] = broker.deposits()
        counts = {a: _count_on(trades[a], day) for a in account_ids}
        if not books:  # a household without active accounts: a family row of zeros
            empty = portfolio.build_book([], {}, day)
            return {}, _figures(portfolio.summarise(None, empty), empty, 0)
        family = portfolio.consolidate(books, deposits)
        rows = {a: _figures(summary, books[a], counts[a])
                for a, summary in zip(sorted(books), family.accounts, strict=True)}
        return rows, _figures(family.total, family.book, sum(counts.values()))

    @staticmethod
    def _exists(session: Session, day: date, scope_key: str) -> bool:
        return session.scalar(select(PnlSnapshotRow.id).where(
            PnlSnapshotRow.trade_date == day, PnlSnapshotRow.scope_key == scope_key)) is not None

    @staticmethod
    def _insert(session: Session, day: date, household_id: int, scope_key: str,
                row: _Figures) -> bool:
        """Insert one row unless its (day, scope) exists; return whether it was inserted."""
        dialect = session.get_bind().dialect.name
        insert: Any = pg_insert if dialect == "postgresql" else sqlite_insert
        statement = insert(PnlSnapshotRow).values(
            trade_date=day, household_id=household_id, account_id=row.account_id,
            scope_key=scope_key, realized_today=row.realized_today, unrealized=row.unrealized,
            charges_today=row.charges_today, day_pnl=row.day_pnl, equity=row.equity,
            deposits=row.deposits, open_positions=row.open_positions,
            trades_today=row.trades_today,
        ).on_conflict_do_nothing(index_elements=["trade_date", "scope_key"])
        return session.scalar(statement.returning(PnlSnapshotRow.id)) is not None

    # -- reading --------------------------------------------------------------------------------
    def history(self, actor: Actor, account_id: int | None, start: date,
                end: date) -> pd.DataFrame:
        """Return the snapshots of [start, end], oldest first, one row per day.

        ``account_id`` None means the family rows of the actor's household; the actor must be
        able to view every account those totals were taken over (else the total would reveal
        accounts they may not see).

        Raises
        ------
        ValidationError
            If ``start`` is after ``end`` or either is not a date.
        PermissionDenied
            If the actor may not view the account (or an account of the family totals).
        """
        for what, value in (("Start", start), ("End", end)):
            if isinstance(value, datetime) or not isinstance(value, date):
                raise ValidationError(f"{what} must be a calendar date; got {value!r}")
        if start > end:
            raise ValidationError(f"Start {start} is after end {end}; the range must run from "
                                  "an earlier day to a later one")
        if account_id is not None:
            label = self.household.get_account(actor, account_id).label
            where = PnlSnapshotRow.scope_key == account_key(account_id)
        else:
            label = FAMILY
            where = PnlSnapshotRow.scope_key == household_key(actor.household_id)
        in_range = (PnlSnapshotRow.trade_date >= start, PnlSnapshotRow.trade_date <= end)
        with self.db.transaction() as session:
            rows = list(session.scalars(select(PnlSnapshotRow).where(where, *in_range)
                                        .order_by(PnlSnapshotRow.trade_date)))
            if account_id is None:
                covered = set(session.scalars(select(PnlSnapshotRow.account_id).where(
                    PnlSnapshotRow.household_id == actor.household_id,
                    PnlSnapshotRow.account_id.is_not(None), *in_range).distinct()))
        if account_id is None:
            self._require_family_view(actor, covered)
        return pd.DataFrame(
            [(r.trade_date, label, r.realized_today, r.unrealized, r.charges_today, r.day_pnl,
              r.equity, r.deposits, r.open_positions, r.trades_today) for r in rows],
            columns=list(HISTORY_COLUMNS))

    def _require_family_view(self, actor: Actor, covered: set[int | None]) -> None:
        visible = {a.id for a in self.household.list_accounts(actor, include_closed=True)}
        hidden = sorted(a for a in covered if a is not None and a not in visible)
        if hidden:
            self._deny(actor, "pnl_snapshots.family", f"household:{actor.household_id}",
                       f"The family P&L adds up accounts you may not view ({len(hidden)} of "
                       "them); ask a household admin for view access, or read your accounts' "
                       "own snapshots")


def _count_on(trades: Sequence[Trade], day: date) -> int:
    return sum(1 for t in trades if t.trade_date == day)


__all__ = ["FAMILY", "HISTORY_COLUMNS", "PnlSnapshotService", "SnapshotReport", "account_key",
           "household_key"]
