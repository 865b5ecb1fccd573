"""What the Telegram bot answers: one method per command, over the same services as the pages.

Every method takes the linked member's :class:`~core.domain.Actor` and asks the existing
services with it, so the bot sees exactly what the member's role allows on the app and every
right is checked again by the service (a hidden command or button is only a courtesy). Each
returns Telegram HTML ready to send (:mod:`core.telegram_format`): tables no wider than a phone,
rupees with Indian grouping, times in IST. Errors are the services' own
(:class:`~core.errors.ValidationError`, :class:`~core.errors.PermissionDenied`), whose messages
the bot shows as they are.

The calls block (database, brokers); the bot runs them in a worker thread.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import TYPE_CHECKING

from core import telegram_format as tf
from core.alert_types import AlertType, probability_text
from core.clock import MarketStatus, now_ist, to_ist
from core.domain import Actor, Role
from core.errors import PermissionDenied, TradingError, ValidationError
from core.money import paise
from core.services.base import ServiceBase
from core.services.portfolio import NO_ACCOUNT
from core.services.risk import KIND_TITLES, PanicReport, RiskStateView
from core.services.risk_gate import week_start
from core.services.signal_views import edge_statement, figures_lines
from core.trading import Order, OrderStatus
from engines.risk_types import Scope, StateKind

if TYPE_CHECKING:
    from core.services import Services

ADMINS = frozenset({Role.ADMIN, Role.SUPER_ADMIN})
#: Rows a table shows before "… and N more".
TABLE_ROWS = 15
#: Signals /signals lists.
TOP_SIGNALS = 5
#: The most characters of a member's typed word an error message repeats (cut with "…").
ECHO_CHARS = 40
#: Journal rows /signals reads to find the newest bar's signals.
JOURNAL_ROWS = 500
OPEN = frozenset({OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED})
STEP_MARK = {True: "ok", False: "FAILED"}

HOW_TO_LINK = ("To link this chat: open SHER, go to Alerts → Connect Telegram, and send "
               "<code>/start CODE</code> here with the code the page shows (it works for 10 "
               "minutes, once).")
REFUSAL = ("This chat is not linked to a member of a SHER household, so I cannot answer it. "
           + HOW_TO_LINK)
#: The answer to a chat whose member's SHER login is disabled (no data; /unlink still works).
DISABLED = ("Your SHER login is disabled; ask a household admin to enable it. Until then I "
            "answer nothing here; send /unlink to stop this chat's messages.")
COMMANDS: tuple[tuple[str, str], ...] = (
    ("pnl", "today's and this week's P&L"),
    ("positions", "open and today's positions"),
    ("orders", "open and today's orders"),
    ("signals", "top current signals"),
    ("strategies", "strategies and their stops"),
    ("status", "worker, feed, market, limits"),
    ("panic", "stop trading (asks to confirm)"),
    ("settings", "your alert settings"),
    ("unlink", "stop alerts to this chat"),
    ("help", "this list"),
)


@dataclass(frozen=True, slots=True)
class PanicPlan:
    """What a confirmed /panic will ask the risk service to stop.

    Attributes
    ----------
    scope : Scope
        ``HOUSEHOLD`` for an admin, ``ACCOUNT`` for a member (each account they trade).
    account_ids, labels : tuple[int, ...], tuple[str, ...]
        The accounts of an ``ACCOUNT`` plan, with their labels (empty for the household).
    """

    scope: Scope
    account_ids: tuple[int, ...] = ()
    labels: tuple[str, ...] = ()

    def describe(self) -> str:
        """Return what pressing Confirm does, in plain words (HTML)."""
        if self.scope is Scope.HOUSEHOLD:
            what = "the <b>whole household</b> (every account)"
        else:
            what = "your account(s): " + ", ".join(tf.bold(label) for label in self.labels)
        return (f"Panic stops trading for {what}: it cancels pending orders and GTTs, closes "
                "every open position at market, and refuses new orders until someone allowed "
                "re-enables trading.")


class TelegramReplies(ServiceBase):
    """The bot's read side and its panic: one method per command, each returning HTML."""

    def __init__(self, services: Services, clock: Callable[[], datetime] = now_ist) -> None:
        """Answer over ``services`` (the facade the pages use)."""
        super().__init__(services.db, services.settings)
        self.services = services
        self.clock = clock

    # -- helpers ------------------------------------------------------------------------------
    def _role(self, actor: Actor) -> Role:
        with self.db.transaction() as session:
            return self._fresh_role(session, actor)

    def _labels(self, actor: Actor) -> dict[int, str]:
        return self.services.orders.household_labels(actor)

    def _today(self) -> date:
        return to_ist(self.clock()).date()

    # -- linking and help ---------------------------------------------------------------------
    def welcome(self, actor: Actor) -> str:
        """Return the reply to a successful ``/start CODE``: who is linked, what comes next."""
        return self._linked(actor, "Telegram linked", "This chat now belongs to", "")

    def already_linked(self, actor: Actor) -> str:
        """Return the reply to ``/start`` (no code) in a chat linked to ``actor``: since when."""
        since = self.services.telegram.link_status(actor).linked_at
        return self._linked(actor, "Telegram already linked", "This chat is already linked to",
                            f"; since {tf.ist_since(since, self.clock())}")

    def _linked(self, actor: Actor, title: str, lead: str, since: str) -> str:
        """Return a linked chat's note: ``lead`` the member (role, ``since``), then the help."""
        return tf.message(
            title,
            f"{tf.esc(lead)} {tf.bold(actor.display_name)} ({tf.esc(actor.username)}, "
            f"{tf.esc(actor.role.value.replace('_', ' '))}{tf.esc(since)}). "
            "Alerts you may see arrive here; change them with /settings.",
            self.help_lines(actor))

    def help(self, actor: Actor) -> str:
        """Return the command list for the member's role."""
        return tf.message(f"SHER for {actor.display_name}", self.help_lines(actor),
                          tf.italic("Times are IST. Amounts are in rupees."))

    def help_lines(self, actor: Actor) -> str:
        """Return one line per command (``/panic`` only for roles that may act)."""
        role = self._role(actor)
        shown = [(name, text) for name, text in COMMANDS
                 if name != "panic" or role is not Role.VIEWER]
        return "\n".join(f"/{name} — {tf.esc(text)}" for name, text in shown)

    # -- money --------------------------------------------------------------------------------
    def pnl(self, actor: Actor) -> str:
        """Return today's and this week's P&L per viewable account and their total.

        Both columns of a row come from one read of the account's book (the risk gate's, as
        the loss limits count them): today is :attr:`core.portfolio.Book.day_pnl` as the
        Portfolio page shows it; the week is since Monday (realized and charges since Monday,
        plus open positions' unrealized P&L). Rows are rounded to the paisa and the total is
        the sum of the rounded rows, so a reader's sum matches it.

        Raises
        ------
        ValidationError
            If the member may view no account.
        """
        labels = self._labels(actor)
        ids = self.services.orders.viewable_ids(actor, None)
        if not ids:
            raise ValidationError(NO_ACCOUNT)
        rows, days, weeks = [], [], []
        for account_id in sorted(ids):
            snapshot = self.services.risk_gate.snapshot(account_id)
            day, week = paise(snapshot.day_pnl), paise(snapshot.week_pnl)
            days.append(day)
            weeks.append(week)
            rows.append([labels.get(account_id, str(account_id)),
                         tf.rupees(day, signed=True, symbol=False),
                         tf.rupees(week, signed=True, symbol=False)])
        rows.append(["Total", tf.rupees(sum(days, Decimal(0)), signed=True, symbol=False),
                     tf.rupees(sum(weeks, Decimal(0)), signed=True, symbol=False)])
        monday = week_start(self._today())
        return tf.message(
            f"P&L · {tf.ist_stamp(self.clock())}",
            tf.table(["Account", "Today ₹", "Week ₹"], rows),
            tf.italic(f"Today: realized + open positions' MTM − charges. Week: since Monday "
                      f"{monday:%d %b}, as the weekly loss limit counts it. Total: the sum of "
                      "the rows."))

    def positions(self, actor: Actor) -> str:
        """Return open and today's positions of every viewable account.

        Grouped under their account's label, as /orders groups orders; each row names the
        product (an account may hold a symbol both intraday and for delivery).
        """
        labels = self._labels(actor)
        positions = self.services.portfolio.positions(actor)
        if not positions:
            return tf.message("Positions", "No positions: nothing open and nothing traded today.")
        by_account: dict[int, list[list[str]]] = {}
        for p in positions[:TABLE_ROWS]:
            by_account.setdefault(p.account_id, []).append([
                f"{p.symbol} {p.product.value}", f"{p.quantity:+d}",
                tf.rupees(p.ltp, symbol=False), tf.rupees(p.mtm, signed=True, symbol=False)])
        tables = [tf.bold(labels.get(account_id, f"account {account_id}")) + "\n"
                  + tf.table(["Symbol", "Qty", "LTP ₹", "MTM ₹"], rows)
                  for account_id, rows in by_account.items()]
        return tf.message(
            f"Positions · {tf.ist_clock(self.clock())}", *tables,
            tf.italic("MTM: realized + unrealized P&L before charges, as the Portfolio page "
                      "shows it (a flat row, qty +0: the day's realized P&L). /pnl nets the "
                      "charges."),
            tf.more_line(min(len(positions), TABLE_ROWS), len(positions), "Portfolio in the app"))

    def orders(self, actor: Actor) -> str:
        """Return open orders (any day) first, then today's others, each newest first.

        Orders are grouped under their account's label (accounts in the order they first
        appear; open first within each), each row naming the order id a rejection line uses.
        """
        today = self._today()
        book = self.services.orders.order_book(actor)
        open_orders = [o for o in book if o.status in OPEN]
        shown: list[Order] = open_orders + [o for o in book if o.status not in OPEN
                                            and to_ist(o.created_at).date() == today]
        if not shown:
            return tf.message("Orders", "No open orders and none placed today.")
        labels = self._labels(actor)
        by_account: dict[int, list[Order]] = {}
        for order in shown[:TABLE_ROWS]:
            by_account.setdefault(order.account_id, []).append(order)
        tables = [tf.bold(labels.get(account_id, f"account {account_id}")) + "\n" + tf.table(
            ["Order", "Filled", "Price ₹", "Status"],
            [[f"#{o.id} {o.side.value[0]} {o.symbol}", f"{o.filled_quantity}/{o.quantity}",
              _price(o), _status(o.status)] for o in orders])
            for account_id, orders in by_account.items()]
        reasons = [f"#{o.id} {o.symbol}: {o.rejection_reason}" for o in shown[:TABLE_ROWS]
                   if o.status is OrderStatus.REJECTED and o.rejection_reason]
        return tf.message(
            f"Orders · {len(open_orders)} open · {tf.ist_clock(self.clock())}", *tables,
            "\n".join(tf.esc(r) for r in reasons) or None,
            tf.more_line(min(len(shown), TABLE_ROWS), len(shown), "Orders in the app"))

    # -- signals and strategies -----------------------------------------------------------------
    def signals(self, actor: Actor) -> str:
        """Return the newest bar's top BUY/SELL signals by probability, with the model's caveat.

        The caveat is the Signals page's: the model's measured held-out figures (with their
        date and data) and how small its edge is; or why no model is in use.
        """
        state = self.services.models.state(actor)
        frame = self.services.signals.journal_frame(actor, JOURNAL_ROWS)
        caveat = (tf.italic(figures_lines(state.in_use)[0] + ". " + edge_statement(state.in_use))
                  if state.in_use is not None
                  else tf.esc(state.problem or "No signal model is in use."))
        if frame.empty:
            return tf.message("Signals", "The journal holds no signal yet: the desk journals "
                              "signals when a member generates or scans them.", caveat)
        newest = frame["bar"].max()
        acting = frame[(frame["bar"] == newest) & (frame["action"] != "HOLD")]
        acting = acting.drop_duplicates("symbol").sort_values(
            ["probability", "symbol"], ascending=[False, True])
        if acting.empty:
            return tf.message(f"Signals · bar of {newest}",
                              "No BUY or SELL signal on the newest bar: every journaled "
                              "symbol is HOLD.", caveat)
        top = acting.head(TOP_SIGNALS)
        rows = [[r["symbol"], r["action"], f"{r['probability']:.2f}",
                 tf.rupees(Decimal(str(r["entry [₹]"])), symbol=False)]
                for r in top.to_dict("records")]
        return tf.message(
            f"Signals · bar of {newest}",
            tf.table(["Symbol", "Act", "Prob", "Entry ₹"], rows),
            tf.esc("Prob: calibrated chance that target 1 comes before the stop-loss."),
            caveat, tf.more_line(len(rows), len(acting), "Signals in the app"))

    def strategies(self, actor: Actor) -> str:
        """Say plainly that no strategy engine exists yet; list strategy stops and MTM limits."""
        states = [s for s in self.services.risk.states(actor) if s.scope is Scope.STRATEGY]
        limits = [m for m in self.services.risk.mtm_limits(actor) if m.scope is Scope.STRATEGY]
        lines = [f"{tf.bold(s.strategy or '?')}: {tf.esc(KIND_TITLES[s.kind])} "
                 f"({tf.esc(s.phase.value.lower())}) since "
                 f"{tf.ist_since(s.engaged_at, self.clock())}"
                 for s in states]
        lines += [f"{tf.bold(m.key)}: MTM stop {tf.rupees(m.stop_loss)}, target "
                  f"{tf.rupees(m.target)}" for m in limits]
        return tf.message(
            "Strategies",
            "SHER has no strategy engine yet: no strategy runs on its own. Orders may carry a "
            "strategy tag, and a tag can be stopped (panic) or given MTM limits.",
            "\n".join(lines) if lines else "No strategy is stopped and none has MTM limits.")

    # -- status -------------------------------------------------------------------------------
    def status(self, actor: Actor) -> str:
        """Return the worker, the feed, the market, the member's risk states and limits.

        The market is the one the member's accounts trade in (:meth:`_market_lines`).
        """
        svc = self.services
        worker = svc.worker.status()
        labels = self._labels(actor)
        desk = tf.key_values([
            ("Worker", worker.describe()),
            ("Feed", svc.feed.summary()),
            *self._market_lines(actor, labels),
        ])
        states = svc.risk.states(actor)
        stopped = "\n".join(_state_line(s) for s in states) or "No risk state stops trading."
        usage_rows = []
        for account_id, label in sorted(labels.items()):
            try:
                usage = svc.risk_gate.usage(actor, account_id)
            except TradingError:  # a closed account, or one whose limits cannot be read
                continue
            usage_rows.append([label, tf.rupees(usage.day_pnl, signed=True, symbol=False),
                               tf.rupees(-usage.daily_limit, symbol=False)])
        limits = (tf.table(["Account", "Today ₹", "Stop at ₹"], usage_rows)
                  if usage_rows else None)
        return tf.message(f"Status · {tf.ist_stamp(self.clock())}", desk,
                          tf.bold("Risk states") + "\n" + stopped,
                          (tf.bold("Daily loss limits") + "\n" + limits) if limits else None)

    def _market_lines(self, actor: Actor, labels: dict[int, str]) -> list[tuple[str, str]]:
        """Return the market as the member's accounts trade it, and the NSE calendar if it differs.

        "Market" is what each account's broker says (as the Trade page shows it: the paper
        desk is open while its market feed runs); accounts that agree share one line. The NSE
        calendar's state follows when it disagrees about open or closed; with no account to
        ask, it is the market line.
        """
        calendar = self.services.market.market_clock(self.clock())
        exchange = f"{calendar.status.value} — {calendar.detail}"
        sessions: dict[tuple[bool, str, date], list[str]] = {}
        for account_id, label in sorted(labels.items()):
            try:
                state = self.services.orders.market_session(actor, account_id)
            except TradingError:  # a broker that cannot say now: the calendar still does
                continue
            sessions.setdefault((state.is_open, state.detail, state.trading_day),
                                []).append(label)
        if not sessions:
            return [("Market", exchange)]
        lines = []
        for (is_open, detail, day), names in sessions.items():
            key = "Market" if len(sessions) == 1 else f"Market ({', '.join(names)})"
            lines.append((key, f"{'open' if is_open else 'closed'} · {detail} · trading day "
                               f"{day:%d %b %Y}"))
        if any(is_open != (calendar.status is MarketStatus.OPEN) for is_open, _, _ in sessions):
            lines.append(("NSE calendar", exchange))
        return lines

    # -- panic --------------------------------------------------------------------------------
    def panic_plan(self, actor: Actor) -> PanicPlan:
        """Return what /panic would stop for the member, before asking them to confirm.

        An admin stops the household; anyone else each account they may trade (the risk
        service's rule). The service checks the right again when the panic runs.

        Raises
        ------
        PermissionDenied
            If the member is no admin and trades no account (audited).
        """
        role = self._role(actor)
        if role in ADMINS:
            return PanicPlan(Scope.HOUSEHOLD)
        accounts = self.services.orders.tradable_accounts(actor)
        if not accounts:
            self._deny(actor, "risk.panic", f"household:{actor.household_id}",
                       f"Your role {role.value!r} may not press panic: it needs an admin, or "
                       "a member with the trade right on an account, and you trade none")
        return PanicPlan(Scope.ACCOUNT, tuple(a.id for a in accounts),
                         tuple(a.label for a in accounts))

    def panic_in_force(self, actor: Actor, plan: PanicPlan) -> str | None:
        """Return the answer to /panic when a panic already stops what ``plan`` would, else None.

        A household panic covers every plan; an account plan is covered when every one of its
        accounts already has a panic of its own.
        """
        panics = [s for s in self.services.risk.states(actor) if s.kind is StateKind.PANIC]
        household = next((s for s in panics if s.scope is Scope.HOUSEHOLD), None)
        if household is not None:
            what = "A household panic"
        elif plan.scope is Scope.ACCOUNT and plan.account_ids and set(plan.account_ids) <= {
                s.account_id for s in panics if s.scope is Scope.ACCOUNT}:
            what = "A panic on " + ", ".join(plan.labels)
        else:
            return None
        first = household or next(s for s in panics if s.account_id in plan.account_ids)
        by = f" by {first.engaged_by}" if first.engaged_by else ""
        return tf.message(
            "Panic already active",
            tf.esc(f"{what} is already {first.phase.value.lower()} (since "
                   f"{tf.ist_since(first.engaged_at, self.clock())}{by}): trading is stopped "
                   "and there is "
                   "nothing more for /panic to do. The Risk page in the app shows its steps and "
                   "re-enables trading."))

    def run_panic(self, actor: Actor, plan: PanicPlan) -> str:
        """Run a confirmed panic through the risk service; return each step's result.

        Raises
        ------
        PermissionDenied
            If the service refuses every part of the plan (e.g. the role changed since).
        """
        risk = self.services.risk
        if plan.scope is Scope.HOUSEHOLD:
            reports = [risk.panic(actor, Scope.HOUSEHOLD)]
            refused: list[str] = []
        else:
            reports, refused = [], []
            for account_id, label in zip(plan.account_ids, plan.labels, strict=True):
                try:
                    reports.append(risk.panic(actor, Scope.ACCOUNT, account_id=account_id))
                except (PermissionDenied, ValidationError) as exc:
                    refused.append(f"{label}: {exc}")
            if not reports:
                raise PermissionDenied("; ".join(refused))
        labels = self._labels(actor)
        blocks = [_report_text(report, labels) for report in reports]
        blocks += [tf.esc("Refused — " + text) for text in refused]
        done = all(r.ok for r in reports) and not refused
        title = "Panic done" if done else "Panic done, with failures"
        return tf.message(f"{title} · {tf.ist_clock(self.clock())}", *blocks)

    # -- alert settings -----------------------------------------------------------------------
    def settings_text(self, actor: Actor) -> str:
        """Return the member's alert settings: each type's mode, DND, summary, threshold."""
        prefs = self.services.telegram.notification_prefs(actor)
        rows = [[t.label, prefs.mode(t).value] for t in AlertType]
        dnd = ("off" if prefs.dnd_start is None or prefs.dnd_end is None
               else f"{prefs.dnd_start:%H:%M}–{prefs.dnd_end:%H:%M} IST")
        summary = ("off" if prefs.daily_summary_time is None
                   else f"{prefs.daily_summary_time:%H:%M} IST")
        return tf.message(
            "Alert settings",
            tf.table(["Alert", "Mode"], rows, align="ll"),
            tf.key_values([("Do not disturb", dnd), ("Daily summary", summary),
                           ("Signals from probability",
                            probability_text(prefs.signal_min_probability))]),
            "Change one: <code>/settings TYPE on|silent|off</code>, e.g. "
            "<code>/settings signal off</code>. Types: "
            + ", ".join(tf.code(t.value) for t in AlertType) + ".")

    def change_setting(self, actor: Actor, alert_type: str, mode: str) -> str:
        """Set one alert type's mode (on, silent, off) and return the settings."""
        kind, how = (tf.cut(word.strip().lower(), ECHO_CHARS) for word in (alert_type, mode))
        self.services.telegram.update_prefs(actor, modes={kind: how})  # cut: refused, short
        return self.settings_text(actor)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _price(order: Order) -> str:
    value = order.average_price if order.filled_quantity else order.price
    return tf.rupees(value, symbol=False) if value is not None else "MKT"


def _status(status: OrderStatus) -> str:
    return {OrderStatus.PARTIALLY_FILLED: "PART", OrderStatus.CANCELLED: "CANCEL",
            OrderStatus.REJECTED: "REJECT"}.get(status, status.value)


def _state_line(state: RiskStateView) -> str:
    scope = {Scope.HOUSEHOLD: "household", Scope.ACCOUNT: state.account_label or "account",
             Scope.STRATEGY: f"strategy {state.strategy}"}[state.scope]
    until = f", until {state.until:%d %b}" if state.until else ""
    return (f"{tf.bold(KIND_TITLES[state.kind])} · {tf.esc(scope)} · "
            f"{tf.esc(state.phase.value.lower())}{tf.esc(until)}")


def _report_text(report: PanicReport, labels: dict[int, str]) -> str:
    if report.scope is Scope.ACCOUNT and report.key.isdigit():
        scope = labels.get(int(report.key), f"account {report.key}")
    else:
        scope = "whole household" if report.scope is Scope.HOUSEHOLD else report.key
    head = f"{KIND_TITLES[report.kind]} · {scope}"
    if not report.created:
        head += " (already engaged: its steps so far)"
    lines = [tf.bold(head)]
    for step in report.steps:
        where = labels.get(step.account_id, "") if step.account_id is not None else ""
        text = f"{STEP_MARK[step.ok]} · {step.step} {step.target}"
        lines.append(tf.esc(text + (f" ({where})" if where and step.step != "disable" else "")))
        if not step.ok or step.step == "disable":
            lines.append("   " + tf.esc(step.detail))
    return "\n".join(lines)


__all__ = ["COMMANDS", "DISABLED", "HOW_TO_LINK", "REFUSAL", "PanicPlan", "TelegramReplies"]
