"""Positions, holdings, funds, the family view and statements, for pages and jobs.

Figures come from the order manager's trade book (``trades``, mirrored from the brokers) run
through :mod:`core.portfolio`; prices from the market feed's quotes, falling back to the last
daily close for symbols the feed does not carry (marked as such). Funds come from the account's
broker, which is the authority on money.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from datetime import date, datetime
from decimal import ROUND_FLOOR, Decimal
from typing import Protocol, runtime_checkable

import pandas as pd
from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core import portfolio, statements
from core.clock import now_ist, to_ist
from core.config import Settings
from core.domain import Account, Actor, Interval
from core.errors import InsufficientFunds, ValidationError
from core.money import PAISA, as_typed, inr, paise, parse_rupees
from core.services import portfolio_views as views
from core.services.base import ServiceBase
from core.services.household import HouseholdService
from core.services.orders import OrderService
from core.services.trade_book import load_trades
from core.trading import ZERO, Funds, Holding, Position, Trade
from db.engine import Database
from db.models import BarRow, InstrumentRow, QuoteRow

#: How a closed account is named wherever it is listed (tables, pickers, statements).
CLOSED = " (closed)"
#: The answer to a member who may view no account (every figure needs one).
NO_ACCOUNT = "You may not view any account yet; ask a household admin"
#: How the replay feed's quote sources begin ("replay:sample 5-minute", "replay:imported …").
REPLAY_PREFIX = "replay:"
MAX_DEPOSIT = Decimal("100000000")  # ₹10 crore per transfer: a typo guard, not a rule of law


def last_prices(db: Database, symbols: Iterable[str]) -> dict[str, Decimal]:
    """Return LTPs of ``symbols``: the feed's quote, else the last stored daily close."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    with db.transaction() as session:
        return read_last_prices(session, wanted)


# Built once: the risk gate reads the prices of an account's symbols before most orders.
_LAST_QUOTES = (select(InstrumentRow.symbol, QuoteRow.ltp, QuoteRow.quote_time,
                       QuoteRow.source, QuoteRow.updated_at)
                .join(QuoteRow, QuoteRow.instrument_id == InstrumentRow.id)
                .where(InstrumentRow.symbol.in_(bindparam("symbols", expanding=True))))


def read_last_prices(session: Session | Connection, symbols: Iterable[str]
                     ) -> dict[str, Decimal]:
    """Return :func:`last_prices` read in ``session`` (an open transaction or connection)."""
    return {symbol: mark.price for symbol, mark in read_price_marks(session, symbols).items()}


def read_price_marks(session: Session | Connection, symbols: Iterable[str]
                     ) -> dict[str, views.PriceMark]:
    """Return each priced symbol's LTP with its source and time: the feed's quote (at its quote
    time; a replay quote, whose time is the replay's simulated time, marked as such, with when
    it was written), else the last stored daily close (at its bar's time). Symbols without
    either are left out."""
    wanted = sorted(set(symbols))
    if not wanted:
        return {}
    marks = {symbol: views.PriceMark(
        ltp, at, views.REPLAY if source.startswith(REPLAY_PREFIX) else views.QUOTE, written)
        for symbol, ltp, at, source, written
        in session.execute(_LAST_QUOTES, {"symbols": wanted}).all()}
    missing = [s for s in wanted if s not in marks]
    if missing:
        last = (select(BarRow.instrument_id, func.max(BarRow.ts).label("ts"))
                .where(BarRow.interval == Interval.D1.value)
                .group_by(BarRow.instrument_id).subquery())
        rows = session.execute(
            select(InstrumentRow.symbol, BarRow.close, BarRow.ts)
            .join(BarRow, BarRow.instrument_id == InstrumentRow.id)
            .join(last, (last.c.instrument_id == BarRow.instrument_id)
                  & (last.c.ts == BarRow.ts))
            .where(BarRow.interval == Interval.D1.value,
                   InstrumentRow.symbol.in_(missing))).all()
        marks.update({symbol: views.PriceMark(close, ts, views.DAILY_CLOSE)
                      for symbol, close, ts in rows})
    return marks


def account_label(account: Account) -> str:
    """Return the account's label, with :data:`CLOSED` after it when it is closed."""
    return account.label + ("" if account.is_active else CLOSED)


def check_transfer(amount: Decimal, what: str) -> None:
    """Refuse a transfer of ``amount`` (``what``: "Deposit" or "Withdrawal") that breaks a rule.

    The amount must be a Decimal above ₹0 of whole paise and at most :data:`MAX_DEPOSIT`.

    Raises
    ------
    ValidationError
        Naming the rule and the amount (as typed, or as the limit is shown when above it).
    """
    if not isinstance(amount, Decimal) or not amount.is_finite() or amount <= 0:
        raise ValidationError(f"Amount must be above ₹0; got {as_typed(amount)}")
    if amount != paise(amount):
        raise ValidationError(f"{what} must be whole paise (at most 2 decimals); got "
                              f"{as_typed(amount)}")
    if amount > MAX_DEPOSIT:  # whole paise: inr shows it exactly, grouped like the limit
        raise ValidationError(f"Amount {inr(amount)} is above the {inr(MAX_DEPOSIT)} a "
                              "single transfer may move")


@runtime_checkable
class Fundable(Protocol):
    """A broker whose money the desk itself keeps (the paper broker)."""

    def deposit(self, amount: Decimal, note: str, user_id: int | None) -> None:
        """Pay ``amount`` rupees into the account."""
        ...

    def deposits(self) -> Decimal:
        """Return money paid in, net of withdrawals."""
        ...

    def withdraw(self, amount: Decimal, note: str, user_id: int | None) -> None:
        """Take ``amount`` rupees out of the account (at most its available funds)."""
        ...

    def funds(self) -> Funds:
        """Return the account's funds now."""
        ...


class PortfolioService(ServiceBase):
    """Read-side of trading: books per account and for the family, funds and statements."""

    def __init__(self, db: Database, settings: Settings, household: HouseholdService,
                 orders: OrderService, clock: Callable[[], datetime] = now_ist) -> None:
        """Bind to ``db``; ``orders`` supplies brokers and account visibility."""
        super().__init__(db, settings)
        self.household = household
        self.orders = orders
        self.clock = clock

    # -- which accounts ---------------------------------------------------------------------
    def accounts(self, actor: Actor) -> list[Account]:
        """Return every account the actor may view, closed ones included: "whole family".

        A closed account's history is money really made or lost, so the family's funds, P&L
        and statements count it, and its own statements stay available; it is named with
        :data:`CLOSED` (:meth:`labels`). The same accounts as ``OrderService.viewable_ids``
        gives for the whole family, which every book and statement here reads.
        """
        return self.household.list_accounts(actor, include_closed=True)

    def labels(self, actor: Actor) -> dict[int, str]:
        """Return account id -> label of :meth:`accounts`, closed ones marked "(closed)"."""
        return {a.id: account_label(a) for a in self.accounts(actor)}

    # -- prices and books -----------------------------------------------------------------
    def prices(self, symbols: Sequence[str]) -> dict[str, Decimal]:
        """Return LTPs: the feed's quote, else the last stored daily close."""
        return last_prices(self.db, symbols)

    def price_marks(self, symbols: Iterable[str]) -> dict[str, views.PriceMark]:
        """Return each priced symbol's LTP with where it comes from and when."""
        with self.db.transaction() as session:
            return read_price_marks(session, symbols)

    def today(self) -> date:
        """Return the IST calendar day of now."""
        return to_ist(self.clock()).date()

    def book(self, account_id: int) -> portfolio.Book:
        """Return one account's book (no authorization: callers check it)."""
        trades = load_trades(self.db, [account_id])
        return portfolio.build_book(trades, self.prices([t.symbol for t in trades]),
                                    self.today())

    def books(self, actor: Actor, account_id: int | None) -> dict[int, portfolio.Book]:
        """Return the books of the accounts the actor may view (or of one, if allowed)."""
        return {ident: self.book(ident) for ident in self.orders.viewable_ids(actor, account_id)}

    # -- positions and holdings ---------------------------------------------------------------
    def positions(self, actor: Actor, account_id: int | None = None) -> list[Position]:
        """Return open and today's positions of one or every viewable account."""
        return [p for b in self.books(actor, account_id).values() for p in b.positions]

    def holdings(self, actor: Actor, account_id: int | None = None) -> list[Holding]:
        """Return settled holdings of one or every viewable account."""
        return [h for b in self.books(actor, account_id).values() for h in b.holdings]

    def positions_frame(self, actor: Actor, account_id: int | None = None) -> pd.DataFrame:
        """Return positions as a table (net qty, average, LTP, unrealized, realized, MTM, and
        where each price comes from and when)."""
        positions = self.positions(actor, account_id)
        return views.positions_frame(positions, self.labels(actor),
                                     self.price_marks(p.symbol for p in positions), self.today())

    def holdings_frame(self, actor: Actor, account_id: int | None = None) -> pd.DataFrame:
        """Return holdings as a table (with where each price comes from and when)."""
        holdings = self.holdings(actor, account_id)
        return views.holdings_frame(holdings, self.labels(actor),
                                    self.price_marks(h.symbol for h in holdings), self.today())

    def unpriced(self, actor: Actor, account_id: int | None = None) -> list[str]:
        """Return the symbols with open quantity but no price at all (counted at cost)."""
        return sorted({s for b in self.books(actor, account_id).values() for s in b.unpriced})

    # -- money ----------------------------------------------------------------------------
    def funds(self, actor: Actor, account_id: int) -> Funds:
        """Return one viewable account's funds, as its broker reports them."""
        self.household.get_account(actor, account_id)
        return self.orders.broker_for(account_id).funds()

    def funds_frame(self, actor: Actor) -> pd.DataFrame:
        """Return funds of every viewable account (closed ones too) and the family total."""
        rows = [(account_label(a), a.owner_name, self.orders.broker_for(a.id).funds())
                for a in self.accounts(actor)]
        return views.funds_frame(rows)

    def family(self, actor: Actor) -> portfolio.FamilySummary:
        """Return every viewable account's headline figures and the family total."""
        books = self.books(actor, None)
        if not books:
            raise ValidationError(NO_ACCOUNT)
        deposits = {}
        for ident in books:
            broker = self.orders.broker_for(ident)
            if isinstance(broker, Fundable):
                deposits[ident] = broker.deposits()
        return portfolio.consolidate(books, deposits)

    def family_frame(self, actor: Actor) -> pd.DataFrame:
        """Return the family table: one row per viewable account and a total row."""
        return views.family_frame(self.family(actor), self.labels(actor))

    def _paper_broker(self, actor: Actor, account_id: int, verb: str) -> tuple[Account, Fundable]:
        account = self.household.authorize_manage(actor, account_id)
        broker = self.orders.broker_for(account_id)
        if not isinstance(broker, Fundable):
            raise ValidationError(f"Account {account.label!r} is at a real broker; {verb} "
                                  "there, not on the desk")
        return account, broker

    def add_funds(self, actor: Actor, account_id: int, amount: Decimal | str,
                  note: str) -> Funds:
        """Pay money into a paper account the actor may manage.

        ``amount`` may be the text a person typed (``"1,00,000"``, ``"₹2500.50"``); it is
        judged as typed (:func:`core.money.parse_rupees`, then :func:`check_transfer`), so
        ``"-5000"`` or ``"abc"`` is refused, never read as another amount.
        """
        account, broker = self._paper_broker(actor, account_id, "add funds")
        amount = parse_rupees(amount)
        check_transfer(amount, "Deposit")
        broker.deposit(amount, note.strip()[:200], actor.user_id)
        return self._transferred(actor, account, broker, "funds.deposit", amount, note)

    def withdraw_funds(self, actor: Actor, account_id: int, amount: Decimal | str,
                       note: str) -> Funds:
        """Take money out of a paper account the actor may manage (who may add may withdraw).

        At most what is withdrawable now: the available funds, i.e. cash less the used margin
        that open orders and open intraday positions block. Amounts follow the deposit rules
        (:func:`check_transfer`); typed text is parsed as :meth:`add_funds` does.

        Raises
        ------
        ValidationError
            On a bad amount, or an account at a real broker.
        InsufficientFunds
            Above the withdrawable amount, naming it, the cash and the used margin.
        """
        account, broker = self._paper_broker(actor, account_id, "withdraw funds")
        amount = parse_rupees(amount)
        check_transfer(amount, "Withdrawal")
        funds = broker.funds()
        # Blocked funds carry 4 decimals: what may go is the available funds down to the paisa.
        withdrawable = max(funds.available, ZERO).quantize(PAISA, rounding=ROUND_FLOOR)
        if amount > withdrawable:  # the broker checks again under the account's lock
            raise InsufficientFunds(
                f"Cannot withdraw {inr(amount)} from {account.label}: withdrawable now is "
                f"{inr(withdrawable)}, the cash {inr(funds.cash)} less the used margin "
                f"{inr(funds.used_margin)} that open orders and open intraday positions block")
        broker.withdraw(amount, note.strip()[:200], actor.user_id)
        return self._transferred(actor, account, broker, "funds.withdraw", amount, note)

    def _transferred(self, actor: Actor, account: Account, broker: Fundable, action: str,
                     amount: Decimal, note: str) -> Funds:
        """Audit a deposit or withdrawal just made; return the account's funds after it."""
        with self.db.transaction() as session:
            self._audit(session, actor, action, f"account:{account.id}",
                        {"amount": str(amount), "note": note.strip()[:200]},
                        household_id=account.household_id)
        return broker.funds()

    # -- statements ---------------------------------------------------------------------------
    @staticmethod
    def period_bounds(kind: str, anchor: date) -> tuple[date, date]:
        """Return the first and last day of the ``kind`` ("day" or "month") around ``anchor``."""
        return statements.period_bounds(kind, anchor)

    def _statement_trades(self, actor: Actor, account_id: int | None,
                          end: date | None = None) -> list[Trade]:
        return load_trades(self.db, self.orders.viewable_ids(actor, account_id), None, end)

    def trade_book_csv(self, actor: Actor, account_id: int | None, start: date,
                       end: date) -> bytes:
        """Return the trade book of [start, end] as CSV."""
        statements.check_range(start, end)
        trades = load_trades(self.db, self.orders.viewable_ids(actor, account_id), start, end)
        frame = statements.trade_book_frame(trades, self.labels(actor))
        return frame.to_csv(index=False).encode()

    def pnl_statement_csv(self, actor: Actor, account_id: int | None, start: date,
                          end: date) -> bytes:
        """Return the realized P&L statement of [start, end] (FIFO over all history) as CSV."""
        statements.check_range(start, end)
        trades = self._statement_trades(actor, account_id, end)
        frame = statements.pnl_statement(trades, start, end)
        return frame.to_csv(index=False).encode()

    def charges_statement_csv(self, actor: Actor, account_id: int | None, start: date,
                              end: date) -> bytes:
        """Return the contract-note style charges of [start, end] per trade date as CSV."""
        statements.check_range(start, end)
        trades = load_trades(self.db, self.orders.viewable_ids(actor, account_id), start, end)
        frame = statements.charges_statement(trades, start, end)
        return frame.to_csv(index=False).encode()
