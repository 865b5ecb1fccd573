"""The daily P&L summary on the phone: one ``summary.daily`` alert per member and trading day.

The worker runs :meth:`DailySummaryService.run` every minute from :data:`EARLIEST` (after the
15:30 close) to midnight IST on NSE trading days. A member gets a summary when

- their Telegram chat is linked (``telegram_links``), their login is active, and they have not
  turned the daily summary off (``alert_preferences``);
- their summary time has passed: ``notification_settings.daily_summary_time`` (IST), or
  :data:`DEFAULT_TIME` when they have no settings row; NULL there means no summary;
- none was written for them that day (dedupe key ``summary:<user id>:<date>``).

The summary covers the accounts of their household they may view (the household service's
authorization): per account realized, unrealized (open positions), charges and net for the
day, then the total and the open positions, and the settled holdings (delivery shares) apart:
how many, their value and unrealized P&L since bought at the latest prices, which the day's
figures do not include (so an account that only holds shares does not just read "₹0.00").
The day's figures come from the day's 15:45 P&L snapshot
(:mod:`core.services.pnl_snapshots`) where it exists, else from the book at the latest prices,
computed the way the snapshot computes them; the message says which.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import date, datetime, time
from decimal import Decimal

from sqlalchemy import and_, or_, select

from core import alerts, portfolio
from core.alert_types import AlertType, Mode
from core.clock import is_trading_day, to_ist
from core.domain import Account, Actor
from core.money import inr, paise
from core.services.base import ServiceBase
from core.services.pnl_snapshots import PnlSnapshotService, account_key
from core.services.trade_book import load_trades
from core.trading import ZERO
from db.models import (
    AlertOutboxRow,
    AlertPreferenceRow,
    MemberRow,
    NotificationSettingsRow,
    PnlSnapshotRow,
    TelegramLinkRow,
    UserRow,
)

KIND = "summary.daily"
#: The first minute a summary may be written (IST): after the close and the last trades.
EARLIEST = time(15, 35)
#: A member without notification settings gets the summary at this IST time.
DEFAULT_TIME = time(16, 0)
SNAPSHOT = "15:45 snapshot"


@dataclass(frozen=True, slots=True)
class DayFigures:
    """One account's (or the total's) day in rupees, as the snapshot names them."""

    realized: Decimal
    unrealized: Decimal  # of open positions (not holdings)
    charges: Decimal
    net: Decimal
    open_positions: int

    def shown(self) -> DayFigures:
        """Return the figures as the summary shows them: each to the paisa."""
        return DayFigures(paise(self.realized), paise(self.unrealized), paise(self.charges),
                          paise(self.net), self.open_positions)

    def __add__(self, other: DayFigures) -> DayFigures:
        """Return the sum of two accounts' figures."""
        return DayFigures(self.realized + other.realized, self.unrealized + other.unrealized,
                          self.charges + other.charges, self.net + other.net,
                          self.open_positions + other.open_positions)


NOTHING = DayFigures(ZERO, ZERO, ZERO, ZERO, 0)


@dataclass(frozen=True, slots=True)
class HeldShares:
    """The settled holdings of the summary's accounts at the latest prices."""

    symbols: int  # holdings (account and symbol)
    value: Decimal  # of the priced ones
    unrealized: Decimal  # since bought, of the priced ones


@dataclass(slots=True)
class SummaryReport:
    """What one run did."""

    day: date
    written: list[str] = field(default_factory=list)  # usernames sent a summary now
    no_accounts: list[str] = field(default_factory=list)  # due, but may view no account
    skipped: str = ""  # why the run did nothing (a holiday, before 15:35), else ""

    def summary(self) -> str:
        """Return one line for the worker's log and the job's record."""
        if self.skipped:
            return f"no daily summaries: {self.skipped}"
        return (f"daily summaries of {self.day}: {len(self.written)} written"
                + (f" ({', '.join(self.written)})" if self.written else ""))


def _signed(value: Decimal) -> str:
    return ("+" if value > 0 else "") + inr(value)


def summary_text(day: date, rows: Sequence[tuple[str, DayFigures]], source: str,
                 held: HeldShares | None = None) -> tuple[str, str]:
    """Return the summary's title and body: each account, the total, holdings (phone width).

    The total's figures are the sums of the accounts' figures as shown, to the paisa
    (:func:`core.money.accounts_total`), so a reader's sum of the rows matches them.
    """
    total = sum((figures.shown() for _, figures in rows), NOTHING)
    title = f"Day P&L {day:%d %b}: {_signed(total.net)} net"
    lines = [f"{day:%a %d %b %Y} · after the close"]
    for label, figures in rows:
        lines += [f"{label}: {_signed(figures.net)}",
                  f"  realized {inr(figures.realized)}",
                  f"  unrealized {inr(figures.unrealized)}",
                  f"  charges {inr(figures.charges)}"]
    lines += [f"Total ({len(rows)} account{'s' if len(rows) != 1 else ''}): "
              f"{_signed(total.net)}",
              f"  realized {inr(total.realized)}",
              f"  unrealized {inr(total.unrealized)}",
              f"  charges {inr(total.charges)}",
              f"Open positions: {total.open_positions}"]
    if held is not None and held.symbols:
        lines += [f"Holdings: {held.symbols} (not in the above)",
                  f"  value {inr(held.value)}",
                  f"  unrealized {_signed(held.unrealized)} since bought"]
    lines.append(f"Figures: {source}")
    return title, "\n".join(lines)


class DailySummaryService(ServiceBase):
    """Writes each linked member's daily P&L summary once their time has passed."""

    def __init__(self, snapshots: PnlSnapshotService) -> None:
        """Read the day's figures through ``snapshots`` (its database, household, prices, clock)."""
        super().__init__(snapshots.db, snapshots.settings)
        self.household = snapshots.household
        self.portfolio = snapshots.portfolio
        self.clock = snapshots.clock

    def run(self, now: datetime | None = None) -> SummaryReport:
        """Write the summaries due at ``now`` (default: the clock); return what was done."""
        now = to_ist(now or self.clock())
        day = now.date()
        if not is_trading_day(day):
            return SummaryReport(day, skipped=f"{day.isoformat()} is not an NSE trading day")
        if now.time() < EARLIEST:
            return SummaryReport(day, skipped=f"summaries start at {EARLIEST:%H:%M} IST")
        report = SummaryReport(day)
        for actor in self._due(day, now.time()):
            accounts = [a for a in self.household.list_accounts(actor)
                        if a.household_id == actor.household_id]
            if not accounts:
                report.no_accounts.append(actor.username)
                continue
            rows, source = self._figures(accounts, day, now)
            title, body = summary_text(day, rows, source,
                                       self._held([a.id for a in accounts], day))
            with self.db.transaction() as session:
                if alerts.enqueue(session, kind=KIND, household_id=actor.household_id,
                                  account_id=None, user_id=actor.user_id, severity="info",
                                  title=title, body=body,
                                  dedupe_key=f"summary:{actor.user_id}:{day.isoformat()}",
                                  at=now):
                    report.written.append(actor.username)
        return report

    def _due(self, day: date, at: time) -> list[Actor]:
        """Return the linked, active members whose summary time has passed and who have none."""
        with self.db.transaction() as session:
            rows = session.execute(
                select(UserRow.id, UserRow.username, UserRow.display_name, UserRow.role,
                       UserRow.household_id, MemberRow.id, NotificationSettingsRow.user_id,
                       NotificationSettingsRow.daily_summary_time)
                .join(TelegramLinkRow, TelegramLinkRow.user_id == UserRow.id)
                .outerjoin(MemberRow, MemberRow.user_id == UserRow.id)
                .outerjoin(NotificationSettingsRow,
                           NotificationSettingsRow.user_id == UserRow.id)
                .outerjoin(AlertPreferenceRow, and_(
                    AlertPreferenceRow.user_id == UserRow.id,
                    AlertPreferenceRow.alert_type == AlertType.DAILY_SUMMARY.value))
                .where(UserRow.is_active.is_(True),
                       or_(AlertPreferenceRow.mode.is_(None),
                           AlertPreferenceRow.mode != Mode.OFF.value))
                .order_by(UserRow.id)).all()
            due: dict[str, Actor] = {}
            for ident, username, name, role, household_id, member_id, has_settings, chosen \
                    in rows:
                when = DEFAULT_TIME if has_settings is None else chosen
                if when is not None and when <= at:
                    due[f"summary:{ident}:{day.isoformat()}"] = Actor(
                        ident, username, name, role, household_id, member_id)
            sent = set(session.scalars(select(AlertOutboxRow.dedupe_key).where(
                AlertOutboxRow.dedupe_key.in_(list(due))))) if due else set()
        return [actor for key, actor in due.items() if key not in sent]

    def _figures(self, accounts: Sequence[Account], day: date, now: datetime
                 ) -> tuple[list[tuple[str, DayFigures]], str]:
        """Return (label, figures) per account and where the figures came from."""
        with self.db.transaction() as session:
            rows = session.scalars(select(PnlSnapshotRow).where(
                PnlSnapshotRow.trade_date == day,
                PnlSnapshotRow.scope_key.in_([account_key(a.id) for a in accounts]))).all()
            stored = {row.account_id or 0: DayFigures(row.realized_today, row.unrealized,
                                                      row.charges_today, row.day_pnl,
                                                      row.open_positions) for row in rows}
        missing = [a.id for a in accounts if a.id not in stored]
        live = self._live(missing, day) if missing else {}
        figures = {**stored, **live}
        source = (SNAPSHOT if not live else
                  f"latest prices at {now:%H:%M} IST" if not stored else
                  f"{SNAPSHOT}; latest prices for {len(live)} account(s)")
        return [(a.label, figures[a.id]) for a in accounts], source

    def _held(self, account_ids: Sequence[int], day: date) -> HeldShares:
        """Return the accounts' settled holdings at the latest prices."""
        trades = {a: load_trades(self.db, [a], None, day) for a in account_ids}
        prices = self.portfolio.prices(sorted({t.symbol for ts in trades.values() for t in ts}))
        holdings = [h for own in trades.values()
                    for h in portfolio.build_book(own, prices, day).holdings if h.quantity]
        priced = [h for h in holdings if h.value is not None]
        return HeldShares(len(holdings), sum((h.value or ZERO for h in priced), ZERO),
                          sum((h.unrealized_pnl for h in priced), ZERO))

    def _live(self, account_ids: Sequence[int], day: date) -> dict[int, DayFigures]:
        """Return the accounts' figures from their books at the latest prices (no snapshot)."""
        trades = {a: load_trades(self.db, [a], None, day) for a in account_ids}
        prices = self.portfolio.prices(sorted({t.symbol for ts in trades.values() for t in ts}))
        out: dict[int, DayFigures] = {}
        for account_id, own in trades.items():
            book = portfolio.build_book(own, prices, day)
            unrealized = sum((p.unrealized_pnl for p in book.positions), ZERO)
            out[account_id] = DayFigures(book.realized_today, unrealized, book.charges_today,
                                         book.day_pnl,
                                         sum(1 for p in book.positions if p.quantity))
        return out
