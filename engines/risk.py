"""The risk gate's rules: a pre-trade decision for every order, post-trade controls per update.

Pure functions (no I/O) over the types of :mod:`engines.risk_types`. :func:`decide` never
raises for a refusal: it returns a :class:`~engines.risk_types.PreTradeDecision` with every
rule's :class:`~engines.risk_types.Check` and the reasons in rupees and percent. Only malformed
input (quantity below one, a price that is not positive ...) raises
:class:`~core.errors.ValidationError`.

Opening and closing
-------------------
Against a net position ``p`` an order of ``q`` shares closes ``min(q, |p|)`` and opens the
rest. An order that opens nothing is an exit: layers 1-5 are skipped ("reduces the position");
the hard rules still apply to it.

Pre-trade rules, in order (defaults in :class:`~engines.risk_types.RiskLimits`)
-------------------------------------------------------------------------------
==============  ==================================================================================
state           a covering ACTIVE state (kill switch, panic, loss limit, disabled) refuses every
                order, even ``protect``; an ENGAGING one passes only ``protect`` exits. Household
                and account states cover every order of the account, a strategy's only orders
                tagged with that strategy.
market_hours    market closed and not an after-market order: refused.
rate            ``orders_last_second >= max_orders_per_second`` (SEBI: 10 a second per account
                and exchange segment): refused, whatever the action.
duplicate       the same order within ``duplicate_window_s`` seconds: refused (not ``protect``,
                nor ``modify``: a change to an order that stands sends no new order).
max_value       ``quantity × price`` above ``max_order_value``: refused (not ``protect``).
max_quantity    quantity above ``max_order_quantity``: refused (not ``protect``).
1 position      risk budget = capital × ``risk_per_trade_pct`` %; stop distance = explicit stop,
  size          else ``atr_stop_multiple`` × ATR, else ``fallback_stop_pct`` % of the price; the
                opening part is cut to the largest lot multiple whose loss at the stop fits the
                budget (exactly the budget passes); none fits, or capital ≤ 0: refused.
volatility      ATR / price above ``high_volatility_atr_pct`` %: warning, level HIGH.
2 max_positions a new symbol would make more than ``max_open_positions`` open: refused (the
                10th passes with the default 10).
sector          the sector's value after the order above ``max_sector_pct`` % of capital: the
                opening part is cut to fit (exactly 30 % passes); no room: refused; sector
                unknown: warning.
correlation     an open symbol whose 60-day return correlation is above the threshold:
                warning naming it; with ``correlation_reduce`` the size is halved too.
3 daily_loss    today's P&L at or below −``daily_loss_pct`` % of the capital at the start of the
                day (capital − today's P&L, :func:`loss_limit`): refused; 80 % of the limit
                used: warning. ``weekly_loss`` the same for the week.
4 drawdown      drawdown from peak equity at or above ``drawdown_kill_pct``: refused; between
                ``drawdown_reduce_pct`` (exclusive) and the kill level the size shrinks linearly
                to zero (:func:`drawdown_factor`), level HIGH.
5 regime        PANIC: no new entries; CHOPPY: size × ``choppy_size_factor``; TRENDING and
                MEAN_REVERTING: full size; unknown: warning.
==============  ==================================================================================

Reductions compound: ``min(opening, layer-1 max, sector room) × drawdown × regime ×
correlation`` floored to the lot. A cap that leaves nothing (layer 1, sector room) refuses the
order; scaling alone never takes an order below one lot, the smallest order there is (its risk
is within layer 1's budget), and says so. The final quantity is the closing part plus that
size. Level: HIGH for high volatility, the drawdown zone or any reduction; MEDIUM for any
warning; else LOW.

Post-trade controls (:func:`evaluate`, one price update)
--------------------------------------------------------
==============  ==================================================================================
stop_loss       long: LTP ≤ stop; short: LTP ≥ stop → square off.
target          long: LTP ≥ target; short: LTP ≤ target → square off.
trailing_stop   best price since the control was set (``extreme``: the service stores the LTP
                when it is set; the average price only if none is stored; it only moves in
                the position's favour) less ``trail_points`` or ``trail_pct`` %,
                on the 0.05 tick (down for a long, up for a short); LTP through it → square off.
                A :class:`~engines.risk_types.TrailUpdate` when the extreme is set or moves.
mtm limits      a scope's (account, household, strategy) MTM at or below −stop-loss → engage a
                DAILY_LOSS state until the next trading day; at or above the target → square
                off every position in scope (``mtm_target``; a strategy: its tagged part of
                each position).
account loss    day P&L at or below −daily limit → engage DAILY_LOSS until the next trading day;
                week P&L at or below −weekly limit → WEEKLY_LOSS until the first trading day of
                next week; drawdown at or above the kill level → KILL_SWITCH (no end date).
                80 % of a limit used → warning. Nothing is engaged twice (``engaged``).
                Past the end of the trading calendar's data a weekday counts as a trading
                day (with a warning) rather than failing the whole evaluation.
eod             accounts in ``mis_due``: square off every MIS position; a position in
                ``mis_carried`` (opened on an earlier day) at any time.
==============  ==================================================================================

One square-off per (account, symbol, product), by priority stop_loss > trailing_stop > target >
mtm_target > eod; none for positions an engage of the same result closes anyway. Positions
may come twice, whole (``strategy`` None) and a strategy's tagged part: controls, account and
household limits and the EOD square-off act on the whole one. Positions without an LTP are
skipped with a warning; a control whose position is gone is ignored (the risk watch retires
a control once its position is flat or was opened again by another fill, so it never guards
the next position).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from functools import lru_cache

from core.clock import is_trading_day, to_ist
from core.errors import ConfigError, ValidationError
from core.money import as_typed, inr
from core.trading import Product, Side
from engines.risk_types import (
    RULES,
    AccountRisk,
    ActiveState,
    Check,
    Engage,
    LivePosition,
    MtmLimit,
    OrderAction,
    PositionControl,
    PostTradeInput,
    PostTradeResult,
    PreTradeDecision,
    PreTradeInput,
    Rejection,
    RiskLevel,
    RiskLimits,
    Scope,
    SquareOff,
    StateKind,
    StatePhase,
    TrailUpdate,
)
from engines.risk_types import shares as _shares
from engines.signal_types import Regime

__all__ = ["WARN_SHARE", "decide", "drawdown_factor", "evaluate", "position_size", "stop_distance"]

TICK = Decimal("0.05")
_ZERO = Decimal(0)
_ONE = Decimal(1)
_HUNDRED = Decimal(100)
#: Share of a loss limit used that earns a warning (the engine's and the desk's alerts).
WARN_SHARE = Decimal("0.8")
_CORRELATION_FACTOR = Decimal("0.5")

_LAYERS = {
    "state": "hard", "market_hours": "hard", "rate": "hard", "duplicate": "hard",
    "max_value": "hard", "max_quantity": "hard",
    "position_size": "1 position size", "volatility": "1 position size",
    "max_positions": "2 exposure", "sector": "2 exposure", "correlation": "2 exposure",
    "daily_loss": "3 loss", "weekly_loss": "3 loss",
    "drawdown": "4 drawdown",
    "regime": "5 market",
}
_LAYER_RULES = RULES[RULES.index("position_size"):]

#: Square-off rules, most urgent first: one square-off per position keeps the first.
SQUARE_OFF_PRIORITY = ("stop_loss", "trailing_stop", "target", "mtm_target", "eod")
_RANK = {rule: rank for rank, rule in enumerate(SQUARE_OFF_PRIORITY)}


# ----------------------------------------------------------------------------------------------
# Formatting
# ----------------------------------------------------------------------------------------------


def _pct(value: Decimal) -> str:
    """Return ``12.5%`` / ``30%``: a percentage without trailing zeros, two places at most."""
    text = f"{value.quantize(Decimal('0.01')):f}".rstrip("0").rstrip(".")
    return f"{text}%"


def _factor(value: Decimal) -> str:
    return f"{value.quantize(Decimal('0.01')):f}".rstrip("0").rstrip(".")




# ----------------------------------------------------------------------------------------------
# Sizing helpers (public: the order form and the page use them too)
# ----------------------------------------------------------------------------------------------


def _lots(amount: Decimal, per_share: Decimal, lot_size: int) -> int:
    """Return the largest multiple of ``lot_size`` q with q × per_share ≤ amount (exact)."""
    if amount <= 0:
        return 0
    whole = int(amount // per_share)  # Decimal integer division is exact
    return whole - whole % lot_size


def position_size(capital: Decimal, risk_pct: Decimal, entry: Decimal, stop: Decimal,
                  lot_size: int = 1) -> int:
    """Return the largest lot multiple whose loss at the stop fits the risk budget.

    Parameters
    ----------
    capital
        Account equity in rupees; zero or less sizes nothing.
    risk_pct
        Budget per trade, percent of ``capital``.
    entry, stop
        Expected fill and stop prices; their distance is the loss per share.
    lot_size
        Shares per lot (1 for cash equities).

    Returns
    -------
    int
        The largest ``q``, a multiple of ``lot_size``, with
        ``q × |entry − stop| ≤ capital × risk_pct / 100`` in exact decimal arithmetic (a loss of
        exactly the budget is allowed).
    """
    if lot_size < 1:
        raise ValidationError(f"lot size must be at least 1; got {lot_size}")
    distance = abs(entry - stop)
    if distance == 0:
        raise ValidationError(f"the stop must differ from the entry price; both are {inr(entry)}")
    return _lots(capital * risk_pct / _HUNDRED, distance, lot_size)


def stop_distance(inp: PreTradeInput, limits: RiskLimits) -> tuple[Decimal, str]:
    """Return the loss per share at the stop and where it comes from.

    The explicit ``stop_price`` when given (it must lie on the losing side: below the price for
    a BUY, above for a SELL), else ``atr × atr_stop_multiple``, else ``price ×
    fallback_stop_pct / 100``.

    Raises
    ------
    ValidationError
        When the explicit stop is on the wrong side of the price (the gate turns it into a
        ``position_size`` refusal).
    """
    if inp.stop_price is not None:
        distance = (inp.price - inp.stop_price) * inp.side.sign
        if distance <= 0:
            where = "below" if inp.side is Side.BUY else "above"
            raise ValidationError(
                f"the stop {inr(inp.stop_price)} must be {where} the price {inr(inp.price)} for "
                f"a {inp.side.value}")
        return distance, f"stop {inr(inp.stop_price)}"
    if inp.atr is not None and inp.atr > 0:
        return (inp.atr * limits.atr_stop_multiple,
                f"{_factor(limits.atr_stop_multiple)} × ATR {inr(inp.atr)}")
    return (inp.price * limits.fallback_stop_pct / _HUNDRED,
            f"{_pct(limits.fallback_stop_pct)} of the price (no stop or ATR given)")


def loss_limit(capital: Decimal, pnl: Decimal, pct: Decimal) -> tuple[Decimal, Decimal]:
    """Return (the capital a period started with, the loss that is ``pct`` % of it).

    A loss limit is a share of the capital at the start of the day (week): ``capital`` now
    minus the period's ``pnl``. It stays put while losses mount: 2 % of ₹10 lakh stops at a
    loss of ₹20,000, not at 2 % of what is left.
    """
    start = capital - pnl
    return start, start * pct / _HUNDRED


def _drawdown_pct(capital: Decimal, peak: Decimal | None) -> Decimal:
    if peak is None or peak <= 0 or capital >= peak:
        return _ZERO
    return (peak - capital) / peak * _HUNDRED


def drawdown_factor(capital: Decimal, peak: Decimal | None, limits: RiskLimits) -> Decimal:
    """Return the size multiplier for the drawdown from ``peak`` to ``capital``.

    1 up to and including ``drawdown_reduce_pct``, falling linearly to 0 at
    ``drawdown_kill_pct`` (0 beyond). No peak yet (``None``) → 1.
    """
    drawdown = _drawdown_pct(capital, peak)
    if drawdown <= limits.drawdown_reduce_pct:
        return _ONE
    if drawdown >= limits.drawdown_kill_pct:
        return _ZERO
    return ((limits.drawdown_kill_pct - drawdown)
            / (limits.drawdown_kill_pct - limits.drawdown_reduce_pct))


# ----------------------------------------------------------------------------------------------
# Pre-trade
# ----------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Tally:
    """Checks, reasons and the running size of one decision."""

    checks: list[Check] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    modifications: list[str] = field(default_factory=list)
    rejections: list[Rejection] = field(default_factory=list)
    high: bool = False
    size: Decimal = _ZERO  # running opening size (unfloored) while the layers shrink it
    shrunk_by: list[str] = field(default_factory=list)  # rules that shrank it, in order
    blocked: bool = False  # a layer already refused because its room is zero

    def add(self, rule: str, outcome: str, detail: str) -> None:
        self.checks.append(Check(rule, _LAYERS[rule], outcome, detail))

    def passed(self, rule: str, detail: str) -> None:
        self.add(rule, "pass", detail)

    def skip(self, rule: str, detail: str) -> None:
        self.add(rule, "skip", detail)

    def warn(self, rule: str, message: str) -> None:
        self.add(rule, "warn", message)
        self.warnings.append(message)

    def reduce(self, rule: str, message: str) -> None:
        self.add(rule, "reduce", message)
        self.modifications.append(message)
        self.high = True
        self.shrunk_by.append(rule)

    def reject(self, rule: str, message: str) -> None:
        self.add(rule, "reject", message)
        self.rejections.append(Rejection(rule, message))


def _check_input(inp: PreTradeInput) -> None:
    problems = []
    if inp.quantity < 1:
        problems.append(f"quantity must be at least 1; got {inp.quantity}")
    if inp.lot_size < 1:
        problems.append(f"lot size must be at least 1; got {inp.lot_size}")
    elif inp.quantity % inp.lot_size:
        problems.append(f"quantity must be a multiple of the lot size {inp.lot_size}; got "
                        f"{inp.quantity}")
    if inp.price <= 0:
        problems.append(f"price must be positive; got {as_typed(inp.price)}")
    if inp.atr is not None and inp.atr < 0:
        problems.append(f"ATR must not be negative; got {as_typed(inp.atr)}")
    if inp.orders_last_second < 0:
        problems.append(f"orders in the last second must not be negative; got "
                        f"{inp.orders_last_second}")
    if problems:
        raise ValidationError(f"Cannot check the {inp.side.value} order for {inp.symbol}: "
                              + "; ".join(problems))


def _split(inp: PreTradeInput) -> tuple[int, int]:
    """Return (closing, opening) shares of the order against the current net position."""
    position = inp.position_quantity
    if position * inp.side.sign < 0:
        closing = min(inp.quantity, abs(position))
        return closing, inp.quantity - closing
    return 0, inp.quantity


def _covers(state: ActiveState, strategy: str | None) -> bool:
    if state.phase is StatePhase.CLEARED:
        return False
    return state.scope is not Scope.STRATEGY or state.strategy == strategy


def _state_text(state: ActiveState) -> str:
    where = {Scope.HOUSEHOLD: "the household", Scope.ACCOUNT: "this account"}.get(
        state.scope, f"strategy {state.strategy}")
    kind = state.kind.value.replace("_", " ")
    return f"{kind} for {where}" + (f" ({state.reason})" if state.reason else "")


def _state_rule(inp: PreTradeInput, exit_: bool, tally: _Tally) -> None:
    covering = [s for s in inp.states if _covers(s, inp.strategy)]
    for state in covering:
        if state.phase is StatePhase.ACTIVE:
            until = ("its day or week ends or someone allowed re-enables it"
                     if state.kind in (StateKind.DAILY_LOSS, StateKind.WEEKLY_LOSS)
                     else "someone allowed re-enables it on the Risk page")
            tally.reject("state", f"trading is stopped: {_state_text(state)}; no order of any "
                                  f"kind passes until {until}")
            return
    engaging = [s for s in covering if s.phase is StatePhase.ENGAGING]
    if not engaging:
        tally.passed("state", "no kill switch, panic, loss limit or disable covers this order")
    elif inp.action is OrderAction.PROTECT and exit_:
        tally.passed("state", f"{_state_text(engaging[0])} is being engaged; this is one of its "
                              "protective exits")
    else:
        tally.reject("state", f"trading is stopping: {_state_text(engaging[0])} is being "
                              "engaged (pending orders cancelled, positions closed); only its "
                              "own exits pass")


def _hard_rules(inp: PreTradeInput, limits: RiskLimits, exit_: bool, tally: _Tally) -> None:
    _state_rule(inp, exit_, tally)
    if inp.market_open:
        tally.passed("market_hours", inp.session_detail or "market open")
    elif inp.amo:
        tally.passed("market_hours", "after-market order: queued for the next session")
    else:
        tally.reject("market_hours", "the market is closed"
                     + (f" ({inp.session_detail})" if inp.session_detail else "")
                     + "; orders go in 09:15-15:30 IST on trading days, or as AMO")
    cap = limits.max_orders_per_second
    if inp.orders_last_second >= cap:
        tally.reject("rate", f"SEBI threshold: at most {cap} orders per second per account and "
                             f"exchange segment; {inp.orders_last_second} sent in the last second")
    else:
        tally.passed("rate", f"{inp.orders_last_second} of {cap} orders in the last second")
    if inp.action is OrderAction.PROTECT:
        for rule in ("duplicate", "max_value", "max_quantity"):
            tally.skip(rule, "protective exit: must be able to close any position")
        return
    _order_limits(inp, limits, tally)


def _order_limits(inp: PreTradeInput, limits: RiskLimits, tally: _Tally) -> None:
    window = limits.duplicate_window_s
    if inp.action is OrderAction.MODIFY:
        # The rule stops the same new order sent twice (a double click, a strategy's repeat);
        # a modify sends no new order, and matching another order of the account is no repeat.
        tally.skip("duplicate", "a modify changes an order that stands; it sends no new order")
    elif inp.duplicate_age_s is not None and inp.duplicate_age_s < window:
        tally.reject("duplicate", f"the same order ({inp.side.value} {_shares(inp.quantity)} of "
                                  f"{inp.symbol}) was sent {inp.duplicate_age_s:.1f} s ago; "
                                  f"repeats within {window} s are refused as duplicates")
    else:
        tally.passed("duplicate", f"no identical order in the last {window} s")
    value = inp.price * inp.quantity
    if value > limits.max_order_value:
        tally.reject("max_value", f"order value {inr(value)} ({_shares(inp.quantity)} × "
                                  f"{inr(inp.price)}) is above the limit "
                                  f"{inr(limits.max_order_value)} per order")
    else:
        tally.passed("max_value", f"order value {inr(value)} within {inr(limits.max_order_value)}")
    if inp.quantity > limits.max_order_quantity:
        tally.reject("max_quantity", f"quantity {inp.quantity} is above the limit of "
                                     f"{_shares(limits.max_order_quantity)} per order")
    else:
        tally.passed("max_quantity", f"quantity {inp.quantity} within "
                                     f"{limits.max_order_quantity}")


def _cap_size(tally: _Tally, rule: str, cap: int, message: str) -> None:
    """Lower the running size to ``cap`` shares (a reduction) or refuse when ``cap`` is 0."""
    if cap <= 0:
        tally.reject(rule, message)
        tally.size = _ZERO
        tally.blocked = True
    elif cap < tally.size:
        tally.reduce(rule, message)
        tally.size = Decimal(cap)
    else:
        tally.passed(rule, message)


def _scale_size(tally: _Tally, rule: str, factor: Decimal, message: str, lot: int) -> None:
    """Multiply the running size by ``factor`` (< 1) and record the reduction."""
    tally.size *= factor
    left = _floor_lot(tally.size, lot)
    tally.reduce(rule, f"{message}: size × {_factor(factor)} → {_shares(left)}")


def _floor_lot(size: Decimal, lot: int) -> int:
    whole = int(size)
    return whole - whole % lot


def _layer_size(inp: PreTradeInput, limits: RiskLimits, opening: int, tally: _Tally) -> None:
    budget = inp.capital * limits.risk_per_trade_pct / _HUNDRED
    try:
        distance, source = stop_distance(inp, limits)
    except ValidationError as wrong_side:
        _cap_size(tally, "position_size", 0, str(wrong_side))
    else:
        most = _lots(budget, distance, inp.lot_size)
        figures = (f"risk per trade at most {_pct(limits.risk_per_trade_pct)} of capital "
                   f"{inr(inp.capital)} = {inr(budget)}; stop distance {inr(distance)} "
                   f"({source}) allows at most {_shares(most)}")
        if most < opening and most > 0:
            figures = f"size reduced from {opening} to {_shares(most)}: {figures}"
        elif most == 0:
            figures += f" (lot size {inp.lot_size})"
        _cap_size(tally, "position_size", most, figures)
    if inp.atr is None:
        tally.passed("volatility", "no ATR known")
        return
    market = inp.market_price if inp.market_price is not None else inp.price
    atr_pct = inp.atr / market * _HUNDRED
    text = (f"ATR {inr(inp.atr)} is {_pct(atr_pct)} of the price {inr(market)}")
    if atr_pct > limits.high_volatility_atr_pct:
        tally.warn("volatility", f"high volatility: {text}, above "
                                 f"{_pct(limits.high_volatility_atr_pct)}")
        tally.high = True
    else:
        tally.passed("volatility", f"{text}, within {_pct(limits.high_volatility_atr_pct)}")


def _layer_exposure(inp: PreTradeInput, limits: RiskLimits, closing: int,
                    tally: _Tally) -> None:
    open_symbols = {e.symbol for e in inp.exposures if e.quantity != 0}
    count = len(open_symbols) + (inp.symbol not in open_symbols)
    most = limits.max_open_positions
    if count > most:
        tally.reject("max_positions", f"at most {most} open positions; {len(open_symbols)} are "
                                      f"open and {inp.symbol} would be number {count}")
    else:
        tally.passed("max_positions", f"{count} of {most} open positions with this order")
    _sector(inp, limits, closing, tally)
    _correlation(inp, limits, open_symbols, tally)


def _sector(inp: PreTradeInput, limits: RiskLimits, closing: int, tally: _Tally) -> None:
    if inp.sector is None:
        tally.warn("sector", f"sector of {inp.symbol} unknown: the {_pct(limits.max_sector_pct)} "
                             "sector limit cannot be checked")
        return
    held = sum((e.value for e in inp.exposures if e.sector == inp.sector and e.quantity != 0),
               _ZERO)
    held = max(held - closing * inp.price, _ZERO)  # a flip's closing part leaves the sector
    cap = inp.capital * limits.max_sector_pct / _HUNDRED
    room = _lots(cap - held, inp.price, inp.lot_size)
    after = held + tally.size * inp.price
    figures = (f"{inp.sector} holds {inr(held)}; at most {_pct(limits.max_sector_pct)} of "
               f"capital {inr(inp.capital)} = {inr(cap)} in one sector")
    if after <= cap:
        tally.passed("sector", f"{figures}; {inr(after)} after this order")
    elif room > 0:
        _cap_size(tally, "sector", room, f"size reduced from {_floor_lot(tally.size, 1)} to "
                                         f"{_shares(room)}: {figures}")
    else:
        _cap_size(tally, "sector", 0, f"no room in the sector: {figures}")


def _correlation(inp: PreTradeInput, limits: RiskLimits, open_symbols: set[str],
                 tally: _Tally) -> None:
    threshold = float(limits.correlation_threshold)
    close = sorted((sym, corr) for sym, corr in inp.correlations.items()
                   if sym in open_symbols and sym != inp.symbol and corr > threshold)
    if not close:
        tally.passed("correlation", f"no open position with 60-day return correlation above "
                                    f"{_factor(limits.correlation_threshold)}")
        return
    names = ", ".join(f"{sym} ({corr:.2f})" for sym, corr in close)
    text = (f"{inp.symbol} moves with open {names}: 60-day return correlation above "
            f"{_factor(limits.correlation_threshold)}")
    if limits.correlation_reduce:
        tally.warnings.append(text)
        _scale_size(tally, "correlation", _CORRELATION_FACTOR, text, inp.lot_size)
    else:
        tally.warn("correlation", text)


def _layer_loss(inp: PreTradeInput, limits: RiskLimits, tally: _Tally) -> None:
    for rule, pnl, pct, span, period in (
            ("daily_loss", inp.day_pnl, limits.daily_loss_pct, "today", "day"),
            ("weekly_loss", inp.week_pnl, limits.weekly_loss_pct, "this week", "week")):
        start, limit = loss_limit(inp.capital, pnl, pct)
        figures = (f"loss {span} {inr(max(-pnl, _ZERO))} against the limit {inr(limit)} "
                   f"({_pct(pct)} of capital {inr(start)} at the start of the {period})")
        if pnl <= -limit:
            tally.reject(rule, f"{figures} reached: no new positions {span}")
        elif -pnl >= limit * WARN_SHARE:
            tally.warn(rule, f"{figures}: {_pct(-pnl / limit * _HUNDRED)} of it used")
        else:
            tally.passed(rule, figures)


def _layer_drawdown(inp: PreTradeInput, limits: RiskLimits, tally: _Tally) -> None:
    if inp.peak_equity is None:
        tally.passed("drawdown", "no peak equity recorded yet")
        return
    drawdown = _drawdown_pct(inp.capital, inp.peak_equity)
    figures = (f"drawdown {_pct(drawdown)} from peak equity {inr(inp.peak_equity)} to "
               f"{inr(inp.capital)}")
    zone = f"{_pct(limits.drawdown_reduce_pct)}-{_pct(limits.drawdown_kill_pct)}"
    if drawdown >= limits.drawdown_kill_pct:
        tally.reject("drawdown", f"{figures} reached the kill level "
                                 f"{_pct(limits.drawdown_kill_pct)}: no new positions")
    elif drawdown > limits.drawdown_reduce_pct:
        factor = drawdown_factor(inp.capital, inp.peak_equity, limits)
        _scale_size(tally, "drawdown", factor, f"{figures} is in the {zone} reduce zone",
                    inp.lot_size)
    else:
        tally.passed("drawdown", f"{figures}; sizes shrink from {zone}")


def _layer_regime(inp: PreTradeInput, limits: RiskLimits, tally: _Tally) -> None:
    regime = inp.regime
    if regime is None:
        tally.warn("regime", "market regime unknown: no regime restriction applied")
    elif regime is Regime.PANIC:
        tally.reject("regime", "market regime PANIC: no new entries")
    elif regime is Regime.CHOPPY and limits.choppy_size_factor < 1:
        _scale_size(tally, "regime", limits.choppy_size_factor, "market regime CHOPPY",
                    inp.lot_size)
    else:
        tally.passed("regime", f"market regime {regime.value}: full size")


def _layers(inp: PreTradeInput, limits: RiskLimits, closing: int, opening: int,
            tally: _Tally) -> int:
    """Run layers 1-5 on the opening part; return the opening shares left (lot multiple)."""
    tally.size = Decimal(opening)
    if inp.capital <= 0:
        tally.reject("position_size", f"account capital is {inr(inp.capital)}: nothing to risk")
        for rule in _LAYER_RULES[1:]:
            tally.skip(rule, "no positive capital to measure against")
        return 0
    _layer_size(inp, limits, opening, tally)
    _layer_exposure(inp, limits, closing, tally)
    _layer_loss(inp, limits, tally)
    _layer_drawdown(inp, limits, tally)
    _layer_regime(inp, limits, tally)
    size = _floor_lot(tally.size, inp.lot_size)
    if size == 0 and not tally.blocked and opening >= inp.lot_size:
        # Only the scaling rules (correlation, drawdown zone, CHOPPY) can get here: every cap
        # left at least a lot. Half of one share cannot be bought; one lot is the smallest
        # order, and layer 1 already allowed its risk.
        rules = ", ".join(dict.fromkeys(tally.shrunk_by))
        tally.modifications.append(
            f"the reductions ({rules}) leave less than one lot: kept at the smallest order, "
            f"{_shares(inp.lot_size)}")
        size = inp.lot_size
    return size


def decide(inp: PreTradeInput, limits: RiskLimits) -> PreTradeDecision:
    """Decide whether an order may go to the broker, and at what size.

    Parameters
    ----------
    inp
        The order and the account's figures (gathered by the service).
    limits
        The account's effective limits.

    Returns
    -------
    PreTradeDecision
        ``approved`` with the final ``quantity`` (the closing part plus the opening part after
        every reduction), warnings, modifications, rejections, one check per rule of
        :data:`~engines.risk_types.RULES`, and the level (see the module docstring).

    Raises
    ------
    ValidationError
        Only for malformed input (quantity below 1 or not a lot multiple, price not positive,
        negative ATR or order count); a refusal is a decision, never an exception.
    """
    _check_input(inp)
    closing, opening = _split(inp)
    tally = _Tally()
    _hard_rules(inp, limits, opening == 0, tally)
    if opening == 0:
        for rule in _LAYER_RULES:
            tally.skip(rule, f"reduces the position (closes {closing} of "
                             f"{abs(inp.position_quantity)}): sizing and exposure limits do not "
                             "apply")
        size = 0
    else:
        size = _layers(inp, limits, closing, opening, tally)
        if closing and size != opening and not tally.rejections:
            tally.modifications.append(  # the sizes above are of the opening part only
                f"closes {_shares(closing)} of the open position and opens {_shares(size)}: "
                f"{_shares(closing + size)} in all")
    approved = not tally.rejections
    if tally.high or (approved and size < opening):
        level = RiskLevel.HIGH
    else:
        level = RiskLevel.MEDIUM if tally.warnings else RiskLevel.LOW
    return PreTradeDecision(
        approved=approved, level=level, requested_quantity=inp.quantity,
        quantity=closing + size if approved else 0, warnings=tuple(tally.warnings),
        modifications=tuple(tally.modifications), rejections=tuple(tally.rejections),
        checks=tuple(tally.checks))


# ----------------------------------------------------------------------------------------------
# Post-trade
# ----------------------------------------------------------------------------------------------


def _trades(day: date) -> tuple[bool, bool]:
    """Return whether NSE trades on ``day`` and whether that is a guess (beyond the calendar)."""
    try:
        return is_trading_day(day), False
    except ConfigError:  # the calendar's data ends: a weekday is the best guess
        return day.weekday() < 5, True


@lru_cache(maxsize=64)
def _next_trading_day(day: date) -> tuple[date, bool]:
    """Return the first trading day after ``day`` and whether the calendar had to be guessed."""
    nxt, guessed = day + timedelta(days=1), False
    while True:
        trades, guess = _trades(nxt)
        guessed = guessed or guess
        if trades:
            return nxt, guessed
        nxt += timedelta(days=1)


def _next_week_start(day: date) -> tuple[date, bool]:
    """Return the first trading day of the week after ``day``'s (weeks start on Monday)."""
    return _next_trading_day(day + timedelta(days=6 - day.weekday()))


def _tick_down(price: Decimal) -> Decimal:
    return (price / TICK).to_integral_value(rounding=ROUND_FLOOR) * TICK


def _tick_up(price: Decimal) -> Decimal:
    return (price / TICK).to_integral_value(rounding=ROUND_CEILING) * TICK


def _trail(control: PositionControl, position: LivePosition, ltp: Decimal,
           long: bool) -> tuple[Decimal, Decimal]:
    """Return the new extreme (only ever in the position's favour) and the trailing stop."""
    previous = control.extreme if control.extreme is not None else position.average_price
    pct = control.trail_pct if control.trail_pct is not None else _ZERO
    if long:
        extreme = ltp if ltp > previous else previous
        if control.trail_points is not None:
            return extreme, _tick_down(extreme - control.trail_points)
        return extreme, _tick_down(extreme * (_HUNDRED - pct) / _HUNDRED)
    extreme = ltp if ltp < previous else previous
    if control.trail_points is not None:
        return extreme, _tick_up(extreme + control.trail_points)
    return extreme, _tick_up(extreme * (_HUNDRED + pct) / _HUNDRED)


def _control_breach(control: PositionControl, position: LivePosition, ltp: Decimal,
                    trails: list[TrailUpdate]) -> SquareOff | None:
    """Return the most urgent square-off the control asks for (appending any trail move)."""
    long = position.quantity > 0
    sign = 1 if long else -1
    rule = ""
    if control.stop_loss is not None and (ltp - control.stop_loss) * sign <= 0:
        rule, level = "stop_loss", control.stop_loss
    if control.trail_points is not None or control.trail_pct is not None:
        extreme, stop = _trail(control, position, ltp, long)
        if control.extreme is None or extreme != control.extreme:
            trails.append(TrailUpdate(control.control_id, extreme, stop))
        if not rule and (ltp - stop) * sign <= 0:
            rule, level = "trailing_stop", stop
    if not rule and control.target is not None and (ltp - control.target) * sign >= 0:
        rule, level = "target", control.target
    if not rule:
        return None
    words = {"stop_loss": "stop-loss", "trailing_stop": "trailing stop", "target": "target"}
    side = ("at or below" if long else "at or above") if rule != "target" else (
        "at or above" if long else "at or below")
    return SquareOff(
        position.account_id, position.symbol, position.product, position.quantity, rule,
        f"{position.symbol} ({'long' if long else 'short'} {abs(position.quantity)}) last "
        f"{inr(ltp)} is {side} its {words[rule]} {inr(level)}", control.control_id)


_Key = tuple[int, str, Product]


@dataclass(slots=True)
class _Result:
    """What one evaluation collects before the square-offs are deduplicated."""

    today: date
    engaged: set[tuple[Scope, str, StateKind]]
    #: account id -> how a person reads it ("the account Priya · Trading")
    labels: Mapping[int, str] = field(default_factory=dict)
    #: each square-off with the strategy whose part of the position it closes (None: all of it)
    square_offs: list[tuple[SquareOff, str | None]] = field(default_factory=list)
    engages: list[Engage] = field(default_factory=list)
    trails: list[TrailUpdate] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)

    def until(self, kind: StateKind) -> date:
        """Return the first day a loss-limit state of ``kind`` engaged today no longer holds."""
        day, guessed = (_next_trading_day(self.today) if kind is StateKind.DAILY_LOSS
                        else _next_week_start(self.today))
        note = (f"the trading calendar has no holidays for {day.isoformat()}: the loss limit "
                "lifts on that weekday, holiday or not")
        if guessed and note not in self.warnings:
            self.warnings.append(note)
        return day

    def account(self, account_id: int) -> str:
        """Return an account as a person reads it: its label, else ``account <id>``."""
        return self.labels.get(account_id) or f"account {account_id}"

    def engage(self, kind: StateKind, scope: Scope, key: str, reason: str,
               account_ids: Iterable[int], until: date | None) -> None:
        if (scope, key, kind) in self.engaged:
            return
        self.engaged.add((scope, key, kind))
        self.engages.append(Engage(kind, scope, key, reason, tuple(account_ids), until))


def _whole_positions(positions: Iterable[LivePosition]) -> dict[_Key, LivePosition]:
    """Return one position per (account, symbol, product): the untagged (whole) one first.

    The watch may pass a strategy's part of a position next to the whole position; controls,
    account and household limits and the EOD square-off act on the whole one.
    """
    whole: dict[_Key, LivePosition] = {}
    for position in positions:
        key = (position.account_id, position.symbol, position.product)
        if position.strategy is None or key not in whole:
            whole[key] = position
    return whole


def _controls(inp: PostTradeInput, whole: dict[_Key, LivePosition], out: _Result) -> None:
    for control in inp.controls:
        position = whole.get((control.account_id, control.symbol, control.product))
        if position is None:
            continue  # the position is closed; the watch retires the control
        if position.ltp is None:
            out.warnings.append(f"{position.symbol} {position.product.value} "
                                f"({out.account(position.account_id)}) has no last price: its "
                                "stop-loss, target and trailing stop were not checked")
            continue
        square_off = _control_breach(control, position, position.ltp, out.trails)
        if square_off is not None:
            out.square_offs.append((square_off, None))


def _in_scope(limit: MtmLimit, position: LivePosition, accounts: frozenset[int]) -> bool:
    if accounts and position.account_id not in accounts:
        return False
    if limit.scope is Scope.ACCOUNT and not accounts:
        return str(position.account_id) == limit.key
    return True


def _scope_name(scope: Scope, key: str, out: _Result) -> str:
    if scope is Scope.ACCOUNT:
        return out.account(int(key))
    return "the household" if scope is Scope.HOUSEHOLD else f"strategy {key}"


def _mtm_limits(inp: PostTradeInput, whole: dict[_Key, LivePosition], out: _Result) -> None:
    for limit in inp.mtm_limits:
        name = _scope_name(limit.scope, limit.key, out)
        if limit.stop_loss is not None and limit.mtm <= -limit.stop_loss:
            until = out.until(StateKind.DAILY_LOSS)
            out.engage(StateKind.DAILY_LOSS, limit.scope, limit.key,
                       f"MTM {inr(limit.mtm)} of {name} reached its stop-loss of "
                       f"{inr(limit.stop_loss)}; trading resumes {until.isoformat()}",
                       limit.account_ids, until)
        elif limit.target is not None and limit.mtm >= limit.target:
            accounts = frozenset(limit.account_ids)
            reason = (f"MTM {inr(limit.mtm)} of {name} reached its target of "
                      f"{inr(limit.target)}: booking the profit")
            if limit.scope is Scope.STRATEGY:
                scoped = [p for p in inp.positions if p.strategy == limit.key]
            else:
                scoped = list(whole.values())
            out.square_offs.extend(
                (SquareOff(p.account_id, p.symbol, p.product, p.quantity, "mtm_target", reason),
                 p.strategy) for p in scoped if _in_scope(limit, p, accounts))


def _account_limits(account: AccountRisk, out: _Result) -> None:
    limits, key = account.limits, str(account.account_id)
    name = out.account(account.account_id)
    if account.capital > 0:
        for kind, pnl, pct, span, period in (
                (StateKind.DAILY_LOSS, account.day_pnl, limits.daily_loss_pct, "today", "day"),
                (StateKind.WEEKLY_LOSS, account.week_pnl, limits.weekly_loss_pct, "this week",
                 "week")):
            start, limit = loss_limit(account.capital, pnl, pct)
            figures = (f"{name}: loss {span} {inr(-pnl)} against the limit {inr(limit)} "
                       f"({_pct(pct)} of capital {inr(start)} at the start of the {period})")
            if pnl <= -limit:
                until = out.until(kind)
                out.engage(kind, Scope.ACCOUNT, key, f"{figures} reached; trading resumes "
                           f"{until.isoformat()}", (account.account_id,), until)
            elif -pnl >= limit * WARN_SHARE and (Scope.ACCOUNT, key, kind) not in out.engaged:
                out.warnings.append(f"{figures}: {_pct(-pnl / limit * _HUNDRED)} of it used")
    drawdown = _drawdown_pct(account.capital, account.peak_equity)
    if account.peak_equity is not None and drawdown >= limits.drawdown_kill_pct:
        out.engage(StateKind.KILL_SWITCH, Scope.ACCOUNT, key,
                   f"{name}: drawdown {_pct(drawdown)} from peak equity "
                   f"{inr(account.peak_equity)} to {inr(account.capital)} reached the kill level "
                   f"{_pct(limits.drawdown_kill_pct)}; an admin must re-enable trading",
                   (account.account_id,), None)


def _closed_by_engages(engages: list[Engage], account_id: int, strategy: str | None) -> bool:
    """Return whether an engage of this result closes the position (part) anyway."""
    for engage in engages:
        if account_id in engage.account_ids and (
                engage.scope is not Scope.STRATEGY or strategy == engage.key):
            return True
    return False


def _dedupe(square_offs: list[tuple[SquareOff, str | None]],
            engages: list[Engage]) -> tuple[SquareOff, ...]:
    best: dict[_Key, SquareOff] = {}
    for square_off, strategy in square_offs:
        if engages and _closed_by_engages(engages, square_off.account_id, strategy):
            continue
        key = (square_off.account_id, square_off.symbol, square_off.product)
        held = best.get(key)
        if held is None or _RANK[square_off.rule] < _RANK[held.rule]:
            best[key] = square_off
    return tuple(best.values())


def evaluate(inp: PostTradeInput, labels: Mapping[int, str] | None = None) -> PostTradeResult:
    """Evaluate the post-trade controls on one price update.

    Parameters
    ----------
    inp
        Open positions with their LTP and MTM (a strategy's part of a position may come
        tagged next to the whole one), the active position controls, MTM limits, account
        loss figures, states already engaged and the accounts due for the MIS square-off.
    labels
        How a person reads each account ("the account Priya · Trading"), for the reasons and
        warnings; an account without one is named ``account <id>``.

    Returns
    -------
    PostTradeResult
        Square-offs (one per position, the most urgent rule), states to engage, trailing-stop
        moves and warnings; the service carries them out through the order path.
    """
    if inp.now.tzinfo is None:
        raise ValidationError(f"the evaluation time must be time-zone aware; got {inp.now}")
    out = _Result(to_ist(inp.now).date(), set(inp.engaged), labels or {})
    whole = _whole_positions(inp.positions)
    _controls(inp, whole, out)
    _mtm_limits(inp, whole, out)
    for account in inp.accounts:
        _account_limits(account, out)
    for p in whole.values():
        if p.product is not Product.MIS:
            continue
        if (p.account_id, p.symbol) in inp.mis_carried:
            out.square_offs.append((SquareOff(
                p.account_id, p.symbol, p.product, p.quantity, "eod",
                f"intraday (MIS) {p.symbol} ({p.quantity:+d}) was opened on an earlier day and "
                "is never carried overnight: squared off now"), None))
        elif p.account_id in inp.mis_due:
            out.square_offs.append((SquareOff(
                p.account_id, p.symbol, p.product, p.quantity, "eod",
                f"end of day: intraday (MIS) {p.symbol} ({p.quantity:+d}) is squared off "
                "before the broker's own square-off"), None))
    return PostTradeResult(square_offs=_dedupe(out.square_offs, out.engages),
                           engages=tuple(out.engages), trail_updates=tuple(out.trails),
                           warnings=tuple(out.warnings))
