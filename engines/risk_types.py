"""Domain types of the risk gate: limits, the pre-trade input and decision, post-trade actions.

Pure values, no I/O. :mod:`engines.risk` computes with them; :mod:`core.services.risk` fills
them from the database and acts on the results; the Risk page shows them.

Vocabulary
----------
- An order **opens** exposure when it adds to (or starts) a position in its direction; it
  **reduces** exposure when it only closes part or all of an existing position. Sizing, exposure,
  loss-limit, drawdown and regime layers apply to the opening part only; hard rules apply to all.
- A **state** stops trading for a scope (the household, one account, or one strategy's orders):
  kill switch, panic, daily or weekly loss limit, or a manual disable. It is persisted, survives
  restarts and is lifted only by a person allowed to (or, for loss limits, when its day/week ends).
  While its procedure runs (``ENGAGING``: cancel pending, close positions) only that procedure's
  own exits (action ``protect``) pass the gate; once ``ACTIVE`` no order of any kind passes.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum
from types import SimpleNamespace

from core.errors import ValidationError
from core.trading import Product, Side
from engines.signal_types import Regime


def shares(quantity: int) -> str:
    """Return ``1 share`` or ``N shares`` for messages."""
    return f"{quantity} share" if quantity == 1 else f"{quantity} shares"


class RiskLevel(StrEnum):
    """How risky an approved order is, for the user's eye (not a refusal)."""

    LOW = "LOW"
    MEDIUM = "MEDIUM"
    HIGH = "HIGH"


class Scope(StrEnum):
    """What a state or an MTM limit covers."""

    HOUSEHOLD = "household"
    ACCOUNT = "account"
    STRATEGY = "strategy"


class StateKind(StrEnum):
    """Why trading is stopped for a scope, and who may lift it.

    ============  ================================================================================
    KILL_SWITCH   drawdown beyond ``drawdown_kill_pct`` or an admin's switch; an admin re-enables
    PANIC         someone pressed panic; re-enabled by an admin (household) or a trader of the
                  account / strategy's accounts
    DAILY_LOSS    the day's loss reached ``daily_loss_pct``; lifts itself on the next trading day
    WEEKLY_LOSS   the week's loss reached ``weekly_loss_pct``; lifts itself the next week
    DISABLED      a person disabled trading by hand; re-enabled like PANIC
    ============  ================================================================================
    """

    KILL_SWITCH = "kill_switch"
    PANIC = "panic"
    DAILY_LOSS = "daily_loss"
    WEEKLY_LOSS = "weekly_loss"
    DISABLED = "disabled"


class StatePhase(StrEnum):
    """Life of a state: its procedure runs (ENGAGING), then it holds (ACTIVE), then it is lifted."""

    ENGAGING = "engaging"
    ACTIVE = "active"
    CLEARED = "cleared"


class OrderAction(StrEnum):
    """Which entry point an order comes from, as the gate sees it.

    ``protect`` is reserved for the exits of a state's own procedure and of post-trade controls
    (stop-loss, target, trailing stop, MTM limits, end-of-day square-off).
    """

    PLACE = "place"
    MODIFY = "modify"
    GTT = "gtt"
    SQUARE_OFF = "square_off"
    PROTECT = "protect"


#: Rule names used in rejections, warnings and checks (stable; tests and the page key on them).
RULES = (
    "state", "market_hours", "rate", "duplicate", "max_value", "max_quantity",  # hard rules
    "position_size", "volatility",  # layer 1
    "max_positions", "sector", "correlation",  # layer 2
    "daily_loss", "weekly_loss",  # layer 3
    "drawdown",  # layer 4
    "regime",  # layer 5
)


@dataclass(frozen=True, slots=True)
class RiskLimits:
    """Per-account limits (household defaults when an account has none of its own).

    Percentages are of the account's capital (its equity: deposits + realized P&L − charges +
    unrealized P&L) unless stated. Each default is the issue's number or a conservative choice.
    """

    risk_per_trade_pct: Decimal = Decimal("1")  # max loss at the stop, per trade
    atr_stop_multiple: Decimal = Decimal("2")  # stop distance = 2 × ATR(14) when none is given
    fallback_stop_pct: Decimal = Decimal("2")  # stop distance when neither stop nor ATR exists
    high_volatility_atr_pct: Decimal = Decimal("4")  # ATR(14)/price above this → HIGH level
    max_open_positions: int = 10  # distinct symbols with open quantity (positions and holdings)
    max_sector_pct: Decimal = Decimal("30")  # market value in one sector after the order
    correlation_threshold: Decimal = Decimal("0.80")  # 60-day daily-return correlation
    correlation_reduce: bool = False  # False: warn; True: halve the size as well
    daily_loss_pct: Decimal = Decimal("2")  # realized + MTM − charges, today
    weekly_loss_pct: Decimal = Decimal("5")  # the same since Monday
    drawdown_reduce_pct: Decimal = Decimal("10")  # from peak equity: sizes shrink linearly ...
    drawdown_kill_pct: Decimal = Decimal("15")  # ... to zero here, where the kill switch trips
    choppy_size_factor: Decimal = Decimal("0.5")  # CHOPPY regime; PANIC allows no new entries
    max_orders_per_second: int = 10  # SEBI's threshold per account and exchange segment
    max_order_value: Decimal = Decimal("500000")  # rupees per order
    max_order_quantity: int = 5000  # shares per order
    duplicate_window_s: int = 10  # same account, symbol, side and quantity within this
    portfolio_mtm_stop_loss: Decimal | None = None  # rupees of day MTM loss → close all (account)
    portfolio_mtm_target: Decimal | None = None  # rupees of day MTM profit → close all (account)
    mis_square_off_at: time = time(15, 15)  # IST; before brokers' own 15:20 square-off

    def __post_init__(self) -> None:
        problems = limit_problems(self)
        if problems:
            raise ValidationError("Invalid risk limits: " + "; ".join(problems))


#: Every RiskLimits field as a person reads it (units in brackets): the Risk page's form labels
#: and the name every refusal of a limit uses.
LIMIT_LABELS: dict[str, str] = {
    "risk_per_trade_pct": "Risk per trade [% of capital]",
    "atr_stop_multiple": "Stop distance without a stop [× ATR(14)]",
    "fallback_stop_pct": "Stop distance without ATR [% of price]",
    "high_volatility_atr_pct": "High volatility above [ATR as % of price]",
    "max_open_positions": "Open positions at most",
    "max_sector_pct": "One sector at most [% of capital]",
    "correlation_threshold": "Correlation warning above [0-1]",
    "correlation_reduce": "Halve the size of a correlated new position",
    "daily_loss_pct": "Daily loss limit [% of capital]",
    "weekly_loss_pct": "Weekly loss limit [% of capital]",
    "drawdown_reduce_pct": "Sizes shrink from a drawdown of [%]",
    "drawdown_kill_pct": "Kill switch at a drawdown of [%]",
    "choppy_size_factor": "Size factor in a CHOPPY market [×]",
    "max_orders_per_second": "Orders per second at most",
    "max_order_value": "Order value at most [₹]",
    "max_order_quantity": "Order quantity at most [shares]",
    "duplicate_window_s": "Duplicate-order window [s]",
    "portfolio_mtm_stop_loss": "Account MTM stop-loss [₹] (empty: none)",
    "portfolio_mtm_target": "Account MTM target [₹] (empty: none)",
    "mis_square_off_at": "MIS square-off at [HH:MM IST]",
}


def limit_label(name: str) -> str:
    """Return a limit's name as a person reads it, quoted: ``'Daily loss limit [% of capital]'``."""
    return f"'{LIMIT_LABELS.get(name, name)}'"


def limit_problems(limits: RiskLimits | SimpleNamespace) -> list[str]:
    """Return every broken rule of ``limits`` (empty when valid), each with the values.

    ``limits`` is a :class:`RiskLimits`, or a namespace of its fields (a form's values before
    they become one); each rule names the limit by its label (:data:`LIMIT_LABELS`).
    """
    out: list[str] = []

    def pct(name: str, low: Decimal, high: Decimal) -> None:
        value = getattr(limits, name)
        if not low <= value <= high:
            out.append(f"{limit_label(name)} must be between {low} and {high}; got {value}")

    pct("risk_per_trade_pct", Decimal("0.01"), Decimal("10"))
    pct("atr_stop_multiple", Decimal("0.1"), Decimal("10"))
    pct("fallback_stop_pct", Decimal("0.1"), Decimal("50"))
    pct("high_volatility_atr_pct", Decimal("0.1"), Decimal("50"))
    pct("max_sector_pct", Decimal("1"), Decimal("100"))
    pct("correlation_threshold", Decimal("0"), Decimal("1"))
    pct("daily_loss_pct", Decimal("0.1"), Decimal("50"))
    pct("weekly_loss_pct", Decimal("0.1"), Decimal("50"))
    pct("drawdown_reduce_pct", Decimal("0.1"), Decimal("90"))
    pct("drawdown_kill_pct", Decimal("0.1"), Decimal("95"))
    pct("choppy_size_factor", Decimal("0"), Decimal("1"))
    out.extend(_relation_problems(limits))
    out.extend(_count_problems(limits))
    return out


def _relation_problems(limits: RiskLimits | SimpleNamespace) -> list[str]:
    out: list[str] = []
    weekly, daily = limits.weekly_loss_pct, limits.daily_loss_pct
    if weekly < daily:
        out.append(f"{limit_label('weekly_loss_pct')} ({weekly}) must be at least "
                   f"{limit_label('daily_loss_pct')} ({daily})")
    kill, reduce = limits.drawdown_kill_pct, limits.drawdown_reduce_pct
    if kill <= reduce:
        out.append(f"{limit_label('drawdown_kill_pct')} ({kill}) must be above "
                   f"{limit_label('drawdown_reduce_pct')} ({reduce})")
    for name in ("portfolio_mtm_stop_loss", "portfolio_mtm_target"):
        value = getattr(limits, name)
        if value is not None and value <= 0:
            out.append(f"{limit_label(name)} must be a positive amount in rupees (or empty); "
                       f"got {value}")
    square_off = limits.mis_square_off_at
    if not time(9, 15) <= square_off <= time(15, 29):
        out.append(f"{limit_label('mis_square_off_at')} must be within market hours 09:15-15:29 "
                   f"IST; got {square_off:%H:%M}")
    return out


def _count_problems(limits: RiskLimits | SimpleNamespace) -> list[str]:
    out: list[str] = []

    def count(name: str, low: int, high: int | None, why: str = "") -> None:
        value = getattr(limits, name)
        if value < low or (high is not None and value > high):
            rule = f"between {low} and {high}" if high is not None else f"at least {low}"
            out.append(f"{limit_label(name)} must be {rule}{why}; got {value}")

    count("max_open_positions", 1, 500)
    count("max_orders_per_second", 1, 10, " (SEBI's threshold for unregistered algos)")
    value = limits.max_order_value
    if value <= 0:
        out.append(f"{limit_label('max_order_value')} must be positive; got {value}")
    count("max_order_quantity", 1, None)
    count("duplicate_window_s", 0, 3600)
    return out


LIMIT_FIELDS = tuple(f.name for f in fields(RiskLimits))


# ----------------------------------------------------------------------------------------------
# Pre-trade
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ActiveState:
    """A state covering the account an order is for (its household, it, or its strategy)."""

    kind: StateKind
    scope: Scope
    phase: StatePhase
    reason: str
    strategy: str | None = None  # for Scope.STRATEGY: covers only orders of this strategy


@dataclass(frozen=True, slots=True)
class Exposure:
    """One open symbol of the account (positions and holdings summed), at market value."""

    symbol: str
    sector: str | None
    quantity: int  # signed: positive long, negative short
    value: Decimal  # |quantity| × LTP (or cost when unpriced), rupees


@dataclass(frozen=True, slots=True)
class PreTradeInput:
    """Everything the pre-trade decision needs; the service gathers it (warm caches)."""

    action: OrderAction
    account_id: int
    symbol: str
    sector: str | None
    side: Side
    product: Product
    quantity: int  # requested
    lot_size: int
    price: Decimal  # expected fill price
    capital: Decimal  # account equity now
    position_quantity: int = 0  # signed net open quantity of the symbol (all products)
    stop_price: Decimal | None = None  # explicit stop (a signal's, an SL order's trigger)
    atr: Decimal | None = None  # ATR(14) of daily bars
    #: The last traded price; volatility is ATR against it (a far limit price says nothing of
    #: the stock's volatility). None: the expected fill price stands in.
    market_price: Decimal | None = None
    exposures: tuple[Exposure, ...] = ()  # the account's open symbols (before this order)
    correlations: dict[str, float] = field(default_factory=dict)  # symbol → 60-day corr.
    day_pnl: Decimal = Decimal(0)  # realized + MTM − charges today
    week_pnl: Decimal = Decimal(0)  # the same since the week's first trading day
    peak_equity: Decimal | None = None  # highest equity seen; None: no history yet
    regime: Regime | None = None  # market regime today; None: unknown (no restriction)
    orders_last_second: int = 0  # accepted in the trailing second, account + segment
    duplicate_age_s: float | None = None  # seconds since an identical order; None: none
    market_open: bool = True
    amo: bool = False
    session_detail: str = ""
    strategy: str | None = None  # the strategy tag of the order, if a strategy sent it
    states: tuple[ActiveState, ...] = ()


@dataclass(frozen=True, slots=True)
class Rejection:
    """A refusal: the rule and a message that states it with the values."""

    rule: str
    message: str


@dataclass(frozen=True, slots=True)
class Check:
    """One rule's outcome, for the Risk page and the order form ("what the gate looked at")."""

    rule: str
    layer: str  # "hard", "1 position size", "2 exposure", "3 loss", "4 drawdown", "5 market"
    outcome: str  # "pass" | "warn" | "reduce" | "reject" | "skip"
    detail: str


@dataclass(frozen=True, slots=True)
class PreTradeDecision:
    """The gate's answer. ``quantity`` is the final size (0 when refused)."""

    approved: bool
    level: RiskLevel
    requested_quantity: int
    quantity: int
    warnings: tuple[str, ...] = ()
    modifications: tuple[str, ...] = ()
    rejections: tuple[Rejection, ...] = ()
    checks: tuple[Check, ...] = ()

    @property
    def reasons(self) -> tuple[str, ...]:
        """Return rejections' messages, then modifications and warnings."""
        return (tuple(r.message for r in self.rejections) + self.modifications + self.warnings)

    def summary(self) -> str:
        """Return one line for a form: ``would be approved at 37 shares; warnings: ...``."""
        if not self.approved:
            return "would be refused: " + "; ".join(r.message for r in self.rejections)
        text = f"would be approved at {shares(self.quantity)}"
        if self.modifications:
            text += " (" + "; ".join(self.modifications) + ")"
        if self.warnings:
            text += "; warnings: " + "; ".join(self.warnings)
        return text


# ----------------------------------------------------------------------------------------------
# Post-trade
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PositionControl:
    """Stop-loss, target and trailing stop of one position (prices in rupees).

    A trailing stop follows the best price seen since the control was set (``extreme``: the
    highest for a long, the lowest for a short) by ``trail_points`` rupees or ``trail_pct`` %.
    """

    control_id: int
    account_id: int
    symbol: str
    product: Product
    stop_loss: Decimal | None = None
    target: Decimal | None = None
    trail_points: Decimal | None = None
    trail_pct: Decimal | None = None
    extreme: Decimal | None = None


@dataclass(frozen=True, slots=True)
class LivePosition:
    """An open position as the post-trade controls see it on a price update."""

    account_id: int
    symbol: str
    product: Product
    quantity: int  # signed, non-zero
    average_price: Decimal
    ltp: Decimal | None
    mtm: Decimal  # realized + unrealized today, rupees
    strategy: str | None = None


@dataclass(frozen=True, slots=True)
class MtmLimit:
    """An MTM stop-loss/target for a scope (account, household or strategy), in rupees."""

    scope: Scope
    key: str  # account id, household id or strategy name, as text
    stop_loss: Decimal | None  # positive amount of loss
    target: Decimal | None  # positive amount of profit
    mtm: Decimal  # the scope's current MTM (realized + unrealized − charges today)
    account_ids: tuple[int, ...] = ()  # accounts the scope covers (for the actions)


@dataclass(frozen=True, slots=True)
class AccountRisk:
    """An account's loss and drawdown figures for the risk watch."""

    account_id: int
    capital: Decimal  # equity now
    day_pnl: Decimal
    week_pnl: Decimal
    peak_equity: Decimal | None
    limits: RiskLimits


@dataclass(frozen=True, slots=True)
class PostTradeInput:
    """One price update's worth of state for :func:`engines.risk.evaluate`."""

    now: datetime  # tz-aware
    positions: tuple[LivePosition, ...]
    controls: tuple[PositionControl, ...] = ()
    mtm_limits: tuple[MtmLimit, ...] = ()
    accounts: tuple[AccountRisk, ...] = ()
    #: (scope, key, kind) of states already engaged or active: no second engage action.
    engaged: frozenset[tuple[Scope, str, StateKind]] = frozenset()
    #: accounts whose MIS positions are due for the end-of-day square-off now.
    mis_due: frozenset[int] = frozenset()
    #: (account, symbol) of MIS positions opened on an earlier IST day and still open: an
    #: intraday position is never carried overnight, so these are squared off now.
    mis_carried: frozenset[tuple[int, str]] = frozenset()


@dataclass(frozen=True, slots=True)
class SquareOff:
    """Close ``quantity`` (signed: the position's open quantity) of a position at market."""

    account_id: int
    symbol: str
    product: Product
    quantity: int
    rule: str  # "stop_loss" | "target" | "trailing_stop" | "mtm_stop_loss" | ... | "eod"
    reason: str
    control_id: int | None = None


@dataclass(frozen=True, slots=True)
class Engage:
    """Engage a state: cancel pending orders and close positions of the scope, then hold."""

    kind: StateKind
    scope: Scope
    key: str
    reason: str
    account_ids: tuple[int, ...]
    until: date | None = None  # loss limits: the first day trading may resume


@dataclass(frozen=True, slots=True)
class TrailUpdate:
    """A trailing stop moved: the new best price and the stop it implies."""

    control_id: int
    extreme: Decimal
    stop: Decimal


@dataclass(frozen=True, slots=True)
class PostTradeResult:
    """What one evaluation asks for; the service executes it through the order path."""

    square_offs: tuple[SquareOff, ...] = ()
    engages: tuple[Engage, ...] = ()
    trail_updates: tuple[TrailUpdate, ...] = ()
    warnings: tuple[str, ...] = ()
