"""The risk engine: a table per pre-trade layer with its boundaries, properties, post-trade."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.clock import IST
from core.errors import ValidationError
from core.trading import Product, Side
from engines.risk import decide, drawdown_factor, evaluate, position_size, stop_distance
from engines.risk_types import (
    RULES,
    AccountRisk,
    ActiveState,
    Engage,
    Exposure,
    LivePosition,
    MtmLimit,
    OrderAction,
    PositionControl,
    PostTradeInput,
    PostTradeResult,
    PreTradeDecision,
    PreTradeInput,
    RiskLevel,
    RiskLimits,
    Scope,
    StateKind,
    StatePhase,
    TrailUpdate,
)
from engines.signal_types import Regime

D = Decimal
LIMITS = RiskLimits()
# Nothing written to the tree (no .hypothesis/ example database); no flaky timing deadlines.
PROPERTY = settings(database=None, deadline=None, max_examples=300)


def order(**changes: Any) -> PreTradeInput:
    """Return a plain opening order: BUY 100 RELIANCE at ₹1,000, ATR ₹20 (stop distance ₹40),
    capital ₹10,00,000 (1% budget ₹10,000 → at most 250 shares), TRENDING market."""
    base = PreTradeInput(
        action=OrderAction.PLACE, account_id=7, symbol="RELIANCE", sector="Energy",
        side=Side.BUY, product=Product.CNC, quantity=100, lot_size=1, price=D("1000"),
        capital=D("1000000"), atr=D("20"), regime=Regime.TRENDING)
    return replace(base, **changes)


def opened(symbols: int, sector: str = "IT", value: str = "10000") -> tuple[Exposure, ...]:
    """Return ``symbols`` open long positions of ₹``value`` each in ``sector``."""
    return tuple(Exposure(f"S{i}", sector, 10, D(value)) for i in range(symbols))


def state(phase: StatePhase = StatePhase.ACTIVE, scope: Scope = Scope.ACCOUNT,
          kind: StateKind = StateKind.PANIC, strategy: str | None = None) -> ActiveState:
    return ActiveState(kind, scope, phase, "pressed by Asha", strategy)


def outcome(decision: PreTradeDecision, rule: str) -> str:
    return next(check.outcome for check in decision.checks if check.rule == rule)


def assert_row(decision: PreTradeDecision, approved: bool, quantity: int, rule: str,
               result: str, level: RiskLevel | None) -> None:
    assert decision.approved is approved, decision.reasons
    assert decision.quantity == quantity
    assert outcome(decision, rule) == result, decision.checks
    if result == "reject":
        assert rule in {r.rule for r in decision.rejections}
    if level is not None:
        assert decision.level is level, decision.reasons


ENGAGING, ACTIVE = StatePhase.ENGAGING, StatePhase.ACTIVE
SELL_EXIT = {"side": Side.SELL, "position_quantity": 100}  # closes a long of 100 exactly
PROTECT_EXIT = {**SELL_EXIT, "action": OrderAction.PROTECT}
LOW, MEDIUM, HIGH = RiskLevel.LOW, RiskLevel.MEDIUM, RiskLevel.HIGH

# ----------------------------------------------------------------------------------------------
# Hard rules
# ----------------------------------------------------------------------------------------------

HARD_RULES = [
    # (order changes, limit changes, approved, quantity, rule, outcome, level)
    ({}, {}, True, 100, "state", "pass", LOW),
    ({"states": (state(ACTIVE),)}, {}, False, 0, "state", "reject", None),
    ({"states": (state(ACTIVE, Scope.HOUSEHOLD, StateKind.KILL_SWITCH),)}, {}, False, 0,
     "state", "reject", None),
    ({"states": (state(ACTIVE),), **PROTECT_EXIT}, {}, False, 0, "state", "reject", None),
    ({"states": (state(ENGAGING),), **PROTECT_EXIT}, {}, True, 100, "state", "pass", LOW),
    ({"states": (state(ENGAGING),), **SELL_EXIT}, {}, False, 0, "state", "reject", None),
    ({"states": (state(ENGAGING),), "action": OrderAction.PROTECT}, {}, False, 0, "state",
     "reject", None),  # protect may only close, never open
    ({"states": (state(StatePhase.CLEARED),)}, {}, True, 100, "state", "pass", LOW),
    ({"states": (state(ACTIVE, Scope.STRATEGY, strategy="momo"),), "strategy": "momo"}, {},
     False, 0, "state", "reject", None),
    ({"states": (state(ACTIVE, Scope.STRATEGY, strategy="momo"),), "strategy": "swing"}, {},
     True, 100, "state", "pass", LOW),
    ({"states": (state(ACTIVE, Scope.STRATEGY, strategy="momo"),)}, {}, True, 100, "state",
     "pass", LOW),  # a hand-placed order is no strategy's
    ({"market_open": False, "session_detail": "Market opens 09:15 IST"}, {}, False, 0,
     "market_hours", "reject", None),
    ({"market_open": False, "amo": True}, {}, True, 100, "market_hours", "pass", LOW),
    ({"orders_last_second": 9}, {}, True, 100, "rate", "pass", LOW),
    ({"orders_last_second": 10}, {}, False, 0, "rate", "reject", None),
    ({"orders_last_second": 4}, {"max_orders_per_second": 5}, True, 100, "rate", "pass", LOW),
    ({"orders_last_second": 5}, {"max_orders_per_second": 5}, False, 0, "rate", "reject", None),
    ({"orders_last_second": 10, **PROTECT_EXIT}, {}, False, 0, "rate", "reject", None),
    ({"duplicate_age_s": 9.9}, {}, False, 0, "duplicate", "reject", None),
    ({"duplicate_age_s": 10.0}, {}, True, 100, "duplicate", "pass", LOW),
    ({"duplicate_age_s": 2.0, **PROTECT_EXIT}, {}, True, 100, "duplicate", "skip", LOW),
    ({"duplicate_age_s": 0.0, "action": OrderAction.MODIFY}, {}, True, 100, "duplicate", "skip",
     LOW),  # a modify sends no new order
    ({}, {"max_order_value": D("100000")}, True, 100, "max_value", "pass", LOW),  # exactly
    ({"price": D("1000.05")}, {"max_order_value": D("100000")}, False, 0, "max_value",
     "reject", None),
    ({**PROTECT_EXIT}, {"max_order_value": D("1000")}, True, 100, "max_value", "skip", LOW),
    ({}, {"max_order_quantity": 100}, True, 100, "max_quantity", "pass", LOW),
    ({"quantity": 101}, {"max_order_quantity": 100}, False, 0, "max_quantity", "reject", None),
    ({**PROTECT_EXIT}, {"max_order_quantity": 10}, True, 100, "max_quantity", "skip", LOW),
]



@pytest.mark.parametrize(("changes", "limit_changes", "text"), [
    ({"orders_last_second": 10}, {}, "SEBI threshold: at most 10 orders per second per account "
                                     "and exchange segment; 10 sent in the last second"),
    ({"states": (state(ACTIVE),)}, {}, "panic for this account (pressed by Asha)"),
    ({"states": (state(ACTIVE, Scope.STRATEGY, strategy="momo"),), "strategy": "momo"}, {},
     "panic for strategy momo"),
    ({"market_open": False, "session_detail": "No trading today (weekend)"}, {},
     "the market is closed (No trading today (weekend))"),
    ({"duplicate_age_s": 3.0}, {}, "BUY 100 shares of RELIANCE) was sent 3.0 s ago; repeats "
                                   "within 10 s"),
    ({"quantity": 120, "price": D("1000")}, {"max_order_value": D("100000")},
     "order value ₹1,20,000.00 (120 shares × ₹1,000.00) is above the limit ₹1,00,000.00"),
    ({"quantity": 101}, {"max_order_quantity": 100}, "quantity 101 is above the limit of 100"),
])
def test_a_hard_rule_refusal_states_the_rule_and_the_values(
    changes: dict[str, Any], limit_changes: dict[str, Any], text: str,
) -> None:
    decision = decide(order(**changes), replace(LIMITS, **limit_changes))
    assert not decision.approved
    assert any(text in r.message for r in decision.rejections), decision.rejections
    assert decision.summary().startswith("would be refused: ")


# ----------------------------------------------------------------------------------------------
# Layer 1: position size and volatility
# ----------------------------------------------------------------------------------------------

LAYER_1 = [
    ({"quantity": 250}, {}, True, 250, "position_size", "pass", LOW),  # loss at stop = 1% exactly
    ({"quantity": 251}, {}, True, 250, "position_size", "reduce", HIGH),  # one share over
    ({"quantity": 250, "atr": None, "stop_price": D("960")}, {}, True, 250, "position_size",
     "pass", LOW),
    ({"quantity": 251, "atr": None, "stop_price": D("960")}, {}, True, 250, "position_size",
     "reduce", HIGH),
    ({"side": Side.SELL, "quantity": 300, "stop_price": D("1050")}, {}, True, 200,
     "position_size", "reduce", HIGH),
    ({"stop_price": D("1000")}, {}, False, 0, "position_size", "reject", None),
    ({"stop_price": D("1010")}, {}, False, 0, "position_size", "reject", None),  # above a BUY
    ({"side": Side.SELL, "stop_price": D("990")}, {}, False, 0, "position_size", "reject", None),
    ({"quantity": 60, "atr": None, "capital": D("100000")}, {"max_sector_pct": D("100")}, True,
     50, "position_size", "reduce", HIGH),  # stop 2% of the price: ₹20 a share, budget ₹1,000
    ({"quantity": 60, "atr": D("0"), "capital": D("100000")}, {"max_sector_pct": D("100")},
     True, 50, "position_size", "reduce", HIGH),
    ({"quantity": 300, "lot_size": 75}, {}, True, 225, "position_size", "reduce", HIGH),
    ({"quantity": 75, "lot_size": 75, "capital": D("10000")}, {}, False, 0, "position_size",
     "reject", None),  # budget ₹100 covers 2 shares, not a lot of 75
    ({"capital": D("0")}, {}, False, 0, "position_size", "reject", None),
    ({"capital": D("-5000")}, {}, False, 0, "position_size", "reject", None),
    ({"quantity": 100}, {"risk_per_trade_pct": D("0.5")}, True, 100, "position_size", "pass",
     LOW),
    ({"quantity": 126}, {"risk_per_trade_pct": D("0.5")}, True, 125, "position_size", "reduce",
     HIGH),
    ({"atr": D("40")}, {}, True, 100, "volatility", "pass", LOW),  # exactly 4% of the price
    ({"atr": D("40.05")}, {}, True, 100, "volatility", "warn", HIGH),
    ({"atr": None}, {}, True, 100, "volatility", "pass", LOW),
    # Against the last price, not a far limit price (₹40 of ₹0.05 would read 80,000%).
    ({"atr": D("40"), "price": D("0.05"), "quantity": 1, "market_price": D("1000")}, {}, True,
     1, "volatility", "pass", LOW),
    ({"atr": D("40.05"), "price": D("2000"), "market_price": D("1000")}, {}, True, 100,
     "volatility", "warn", HIGH),
]



def test_a_size_reduction_names_the_budget_the_stop_and_the_shares() -> None:
    decision = decide(order(quantity=251), LIMITS)
    assert decision.modifications == (
        "size reduced from 251 to 250 shares: risk per trade at most 1% of capital "
        "₹10,00,000.00 = ₹10,000.00; stop distance ₹40.00 (2 × ATR ₹20.00) allows at most "
        "250 shares",)
    assert decision.summary().startswith("would be approved at 250 shares (size reduced")


@pytest.mark.parametrize(("capital", "pct", "entry", "stop", "lot", "expected"), [
    (D("100000"), D("1"), D("100"), D("95"), 1, 200),  # 200 × ₹5 = ₹1,000 exactly
    (D("100000"), D("1"), D("100"), D("105"), 1, 200),  # a short's stop above
    (D("100000"), D("1"), D("100"), D("95.05"), 1, 202),
    (D("100000"), D("1"), D("100"), D("95"), 75, 150),
    (D("100000"), D("1"), D("100"), D("50"), 25, 0),  # 20 shares < one lot
    (D("0"), D("1"), D("100"), D("95"), 1, 0),
    (D("-100"), D("1"), D("100"), D("95"), 1, 0),
    (D("1234567.89"), D("0.33"), D("2501.35"), D("2478.90"), 1, 181),
])
def test_position_size_is_the_largest_lot_multiple_whose_loss_fits_the_budget(
    capital: Decimal, pct: Decimal, entry: Decimal, stop: Decimal, lot: int, expected: int,
) -> None:
    size = position_size(capital, pct, entry, stop, lot)
    assert size == expected
    assert size * abs(entry - stop) <= capital * pct / 100 or size == 0
    if expected:
        assert (size + lot) * abs(entry - stop) > capital * pct / 100


def test_position_size_refuses_a_stop_equal_to_the_entry_and_a_lot_below_one() -> None:
    with pytest.raises(ValidationError, match=r"stop must differ from the entry price; both "
                                              r"are ₹100\.00"):
        position_size(D("100000"), D("1"), D("100"), D("100"))
    with pytest.raises(ValidationError, match="lot size must be at least 1; got 0"):
        position_size(D("100000"), D("1"), D("100"), D("95"), 0)


@pytest.mark.parametrize(("changes", "distance", "source"), [
    ({"stop_price": D("990")}, D("10"), "stop ₹990.00"),
    ({"side": Side.SELL, "stop_price": D("1012.50")}, D("12.50"), "stop ₹1,012.50"),
    ({"stop_price": D("990"), "atr": D("30")}, D("10"), "stop ₹990.00"),  # explicit stop first
    ({}, D("40"), "2 × ATR ₹20.00"),
    ({"atr": None}, D("20"), "2% of the price (no stop or ATR given)"),
])
def test_the_stop_distance_is_the_stop_else_atr_times_two_else_two_percent(
    changes: dict[str, Any], distance: Decimal, source: str,
) -> None:
    assert stop_distance(order(**changes), LIMITS) == (distance, source)


@pytest.mark.parametrize(("side", "stop", "message"), [
    (Side.BUY, D("1000.05"), "the stop ₹1,000.05 must be below the price ₹1,000.00 for a BUY"),
    (Side.SELL, D("999.95"), "the stop ₹999.95 must be above the price ₹1,000.00 for a SELL"),
])
def test_a_stop_on_the_winning_side_is_refused_with_both_prices(
    side: Side, stop: Decimal, message: str,
) -> None:
    with pytest.raises(ValidationError, match=message):
        stop_distance(order(side=side, stop_price=stop), LIMITS)
    decision = decide(order(side=side, stop_price=stop), LIMITS)
    assert decision.rejections[0].rule == "position_size"
    assert message in decision.rejections[0].message


# ----------------------------------------------------------------------------------------------
# Layer 2: exposure
# ----------------------------------------------------------------------------------------------

ENERGY_200K = (Exposure("ONGC", "Energy", 800, D("200000")),)
LAYER_2 = [
    ({"exposures": opened(8)}, {}, True, 100, "max_positions", "pass", LOW),
    ({"exposures": opened(9)}, {}, True, 100, "max_positions", "pass", LOW),  # the 10th
    ({"exposures": opened(10)}, {}, False, 0, "max_positions", "reject", None),  # the 11th
    ({"exposures": (*opened(9), Exposure("RELIANCE", "Energy", 5, D("5000")))}, {}, True, 100,
     "max_positions", "pass", LOW),  # adding to an open symbol opens no new position
    ({"exposures": (*opened(10), Exposure("TCS", "IT", 0, D("0")))}, {}, False, 0,
     "max_positions", "reject", None),
    ({"exposures": (*opened(9), Exposure("TCS", "IT", 0, D("0")))}, {}, True, 100,
     "max_positions", "pass", LOW),  # a flat symbol is not open
    ({"exposures": opened(4)}, {"max_open_positions": 4}, False, 0, "max_positions", "reject",
     None),
    ({"exposures": ENERGY_200K}, {}, True, 100, "sector", "pass", LOW),  # exactly 30%
    ({"exposures": ENERGY_200K, "quantity": 101}, {}, True, 100, "sector", "reduce", HIGH),
    ({"exposures": ENERGY_200K, "quantity": 101, "price": D("999.95")}, {}, True, 100,
     "sector", "reduce", HIGH),
    ({"exposures": (Exposure("ONGC", "Energy", 900, D("300000")),)}, {}, False, 0, "sector",
     "reject", None),
    ({"exposures": (Exposure("ONGC", "Energy", 900, D("299999")),)}, {}, False, 0, "sector",
     "reject", None),  # ₹1 of room buys no share at ₹1,000
    ({"exposures": opened(3, "Energy", "100000"), "quantity": 1}, {"max_sector_pct": D("40")},
     True, 1, "sector", "pass", LOW),
    ({"exposures": (Exposure("RELIANCE", "Energy", -300, D("300000")),), "quantity": 400,
      "position_quantity": -300}, {}, True, 400, "sector", "pass", LOW),  # closing 300 frees
    ({"sector": None}, {}, True, 100, "sector", "warn", MEDIUM),
    ({"exposures": opened(2), "correlations": {"S1": 0.85}}, {}, True, 100, "correlation",
     "warn", MEDIUM),
    ({"exposures": opened(2), "correlations": {"S1": 0.80}}, {}, True, 100, "correlation",
     "pass", LOW),  # at the threshold is not above it
    ({"exposures": opened(2), "correlations": {"HDFCBANK": 0.95}}, {}, True, 100,
     "correlation", "pass", LOW),  # not open
    ({"exposures": opened(2), "correlations": {"S1": 0.85}}, {"correlation_reduce": True}, True,
     50, "correlation", "reduce", HIGH),
    ({"exposures": opened(2), "correlations": {"S0": 0.7}},
     {"correlation_threshold": D("0.6")}, True, 100, "correlation", "warn", MEDIUM),
]



def test_exposure_messages_name_the_count_the_sector_and_the_correlated_symbol() -> None:
    eleventh = decide(order(exposures=opened(10)), LIMITS)
    assert eleventh.rejections[0].message == ("at most 10 open positions; 10 are open and "
                                              "RELIANCE would be number 11")
    full = decide(order(exposures=(Exposure("ONGC", "Energy", 900, D("300000")),)), LIMITS)
    assert full.rejections[0].message == (
        "no room in the sector: Energy holds ₹3,00,000.00; at most 30% of capital "
        "₹10,00,000.00 = ₹3,00,000.00 in one sector")
    correlated = decide(order(exposures=opened(2), correlations={"S1": 0.8612}), LIMITS)
    assert correlated.warnings == ("RELIANCE moves with open S1 (0.86): 60-day return "
                                   "correlation above 0.8",)


# ----------------------------------------------------------------------------------------------
# Layers 3-5: loss limits, drawdown, market regime
# ----------------------------------------------------------------------------------------------

def lost(field: str, pnl: str) -> dict[str, Any]:
    """Return order changes of a day's (week's) ``pnl`` from ₹10 lakh at its start."""
    return {field: D(pnl), "capital": D("1000000") + D(pnl)}


LAYERS_3_TO_5 = [
    (lost("day_pnl", "-20000"), {}, False, 0, "daily_loss", "reject", None),  # exactly 2%
    (lost("day_pnl", "-25000"), {}, False, 0, "daily_loss", "reject", None),
    (lost("day_pnl", "-19999.99"), {}, True, 100, "daily_loss", "warn", MEDIUM),  # just under
    (lost("day_pnl", "-16000"), {}, True, 100, "daily_loss", "warn", MEDIUM),  # 80% used
    (lost("day_pnl", "-15999.99"), {}, True, 100, "daily_loss", "pass", LOW),
    (lost("day_pnl", "5000"), {}, True, 100, "daily_loss", "pass", LOW),
    (lost("week_pnl", "-50000"), {}, False, 0, "weekly_loss", "reject", None),  # exactly 5%
    (lost("week_pnl", "-49999.99"), {}, True, 100, "weekly_loss", "warn", MEDIUM),
    (lost("week_pnl", "-39999.99"), {}, True, 100, "weekly_loss", "pass", LOW),
    (lost("day_pnl", "-10000"), {"daily_loss_pct": D("1")}, False, 0, "daily_loss", "reject",
     None),
    ({"peak_equity": None}, {}, True, 100, "drawdown", "pass", LOW),
    ({"peak_equity": D("900000")}, {}, True, 100, "drawdown", "pass", LOW),  # above the peak
    ({"capital": D("900000"), "peak_equity": D("1000000")}, {}, True, 100, "drawdown", "pass",
     LOW),  # exactly 10%: factor 1
    ({"capital": D("875000"), "peak_equity": D("1000000")}, {}, True, 50, "drawdown", "reduce",
     HIGH),  # 12.5%: factor 0.5
    ({"capital": D("890000"), "peak_equity": D("1000000")}, {}, True, 80, "drawdown", "reduce",
     HIGH),  # 11%: factor 0.8
    ({"capital": D("850000"), "peak_equity": D("1000000")}, {}, False, 0, "drawdown", "reject",
     None),  # exactly 15%
    ({"capital": D("800000"), "peak_equity": D("1000000")}, {}, False, 0, "drawdown", "reject",
     None),
    ({"regime": Regime.PANIC}, {}, False, 0, "regime", "reject", None),
    ({"regime": Regime.CHOPPY}, {}, True, 50, "regime", "reduce", HIGH),
    ({"regime": Regime.CHOPPY, "quantity": 101}, {}, True, 50, "regime", "reduce", HIGH),
    ({"regime": Regime.CHOPPY}, {"choppy_size_factor": D("1")}, True, 100, "regime", "pass",
     LOW),
    ({"regime": Regime.CHOPPY}, {"choppy_size_factor": D("0.25")}, True, 25, "regime",
     "reduce", HIGH),
    ({"regime": Regime.TRENDING}, {}, True, 100, "regime", "pass", LOW),
    ({"regime": Regime.MEAN_REVERTING}, {}, True, 100, "regime", "pass", LOW),
    ({"regime": None}, {}, True, 100, "regime", "warn", MEDIUM),
]


TABLES = {"hard": HARD_RULES, "layer1": LAYER_1, "layer2": LAYER_2, "layers3-5": LAYERS_3_TO_5}


@pytest.mark.parametrize(("changes", "limit_changes", "approved", "quantity", "rule", "result",
                          "level"),
                         [pytest.param(*row, id=f"{name}-{i}")
                          for name, table in TABLES.items() for i, row in enumerate(table)])
def test_each_rule_approves_reduces_or_refuses_as_its_layer_table_says(
    changes: dict[str, Any], limit_changes: dict[str, Any], approved: bool, quantity: int,
    rule: str, result: str, level: RiskLevel | None,
) -> None:
    decision = decide(order(**changes), replace(LIMITS, **limit_changes))
    assert_row(decision, approved, quantity, rule, result, level)


def test_loss_and_drawdown_messages_state_the_amounts_and_the_limits() -> None:
    daily = decide(order(**lost("day_pnl", "-20000")), LIMITS)
    assert daily.rejections[0].message == (
        "loss today ₹20,000.00 against the limit ₹20,000.00 (2% of capital ₹10,00,000.00 at the "
        "start of the day) reached: no new positions today")
    near = decide(order(**lost("day_pnl", "-19000")), LIMITS)
    assert near.warnings == ("loss today ₹19,000.00 against the limit ₹20,000.00 (2% of capital "
                             "₹10,00,000.00 at the start of the day): 95% of it used",)
    zone = decide(order(capital=D("875000"), peak_equity=D("1000000")), LIMITS)
    assert zone.modifications == (
        "drawdown 12.5% from peak equity ₹10,00,000.00 to ₹8,75,000.00 is in the 10%-15% reduce "
        "zone: size × 0.5 → 50 shares",)
    unknown = decide(order(regime=None), LIMITS)
    assert unknown.warnings == ("market regime unknown: no regime restriction applied",)


@pytest.mark.parametrize(("capital", "peak", "factor"), [
    (D("1000000"), None, D("1")),
    (D("1100000"), D("1000000"), D("1")),
    (D("950000"), D("1000000"), D("1")),
    (D("900000"), D("1000000"), D("1")),  # exactly at the reduce level
    (D("890000"), D("1000000"), D("0.8")),
    (D("875000"), D("1000000"), D("0.5")),
    (D("850000"), D("1000000"), D("0")),  # exactly at the kill level
    (D("500000"), D("1000000"), D("0")),
])
def test_the_drawdown_factor_falls_linearly_from_ten_to_fifteen_percent(
    capital: Decimal, peak: Decimal | None, factor: Decimal,
) -> None:
    assert drawdown_factor(capital, peak, LIMITS) == factor


# ----------------------------------------------------------------------------------------------
# Exits, compounding, levels, the checks list, bad input
# ----------------------------------------------------------------------------------------------

HOSTILE = {"regime": Regime.PANIC, "day_pnl": D("-50000"), "week_pnl": D("-90000"),
           "capital": D("800000"), "peak_equity": D("1000000"), "exposures": opened(10),
           "sector": None}


@pytest.mark.parametrize("changes", [
    SELL_EXIT,
    {**SELL_EXIT, "quantity": 40},
    {"side": Side.BUY, "position_quantity": -100},  # covers a short
    {**PROTECT_EXIT, "states": (state(ENGAGING, Scope.HOUSEHOLD, StateKind.KILL_SWITCH),)},
])
def test_an_exit_skips_layers_1_to_5_and_is_approved_whatever_the_market(
    changes: dict[str, Any],
) -> None:
    decision = decide(order(**{**HOSTILE, **changes}), LIMITS)
    assert decision.approved, decision.reasons
    assert decision.quantity == decision.requested_quantity
    layered = [c for c in decision.checks if c.layer != "hard"]
    assert {c.outcome for c in layered} == {"skip"}
    assert all("reduces the position" in c.detail for c in layered)
    assert decision.level is RiskLevel.LOW


def test_a_flip_passes_its_closing_part_and_sizes_only_the_opening_part() -> None:
    decision = decide(order(side=Side.BUY, quantity=130, position_quantity=-30,
                            regime=Regime.CHOPPY), LIMITS)
    assert decision.approved and decision.quantity == 30 + 50
    assert decision.modifications == (  # the note a user reads says what the order does
        "market regime CHOPPY: size × 0.5 → 50 shares",
        "closes 30 shares of the open position and opens 50 shares: 80 shares in all")
    refused = decide(order(side=Side.BUY, quantity=130, position_quantity=-30,
                           regime=Regime.PANIC), LIMITS)
    assert not refused.approved and refused.quantity == 0


def test_reductions_compound_and_are_floored_to_the_lot() -> None:
    decision = decide(order(quantity=251, capital=D("875000"), peak_equity=D("1000000"),
                            regime=Regime.CHOPPY), LIMITS)
    # layer 1: ₹8,750 / ₹40 → 218; drawdown 12.5% × 0.5 → 109; CHOPPY × 0.5 → 54.5 → 54
    assert decision.approved and decision.quantity == 54
    assert [c.rule for c in decision.checks if c.outcome == "reduce"] == [
        "position_size", "drawdown", "regime"]
    assert decision.level is RiskLevel.HIGH
    lots = decide(order(quantity=250, lot_size=50, regime=Regime.CHOPPY,
                        capital=D("890000"), peak_equity=D("1000000")), LIMITS)
    # layer 1: ₹8,900 / ₹40 → 222 → 200 (lots of 50); × 0.8 × 0.5 = 80 → 50
    assert lots.approved and lots.quantity == 50


def test_scaling_that_leaves_less_than_a_lot_keeps_the_smallest_order_naming_the_rules() -> None:
    decision = decide(order(quantity=1, regime=Regime.CHOPPY), LIMITS)
    assert decision.approved and decision.quantity == 1 and not decision.rejections
    assert decision.modifications[-1] == ("the reductions (regime) leave less than one lot: "
                                          "kept at the smallest order, 1 share")
    both = decide(order(quantity=2, regime=Regime.CHOPPY, capital=D("880000"),
                        peak_equity=D("1000000")), LIMITS)
    assert both.approved and both.quantity == 1
    assert "the reductions (drawdown, regime)" in both.modifications[-1]
    panic = decide(order(quantity=1, regime=Regime.PANIC), LIMITS)
    assert not panic.approved  # a refusing rule still refuses: only scaling keeps one lot


def test_every_rule_adds_one_check_in_the_documented_order() -> None:
    for decision in (decide(order(), LIMITS), decide(order(**SELL_EXIT), LIMITS),
                     decide(order(**PROTECT_EXIT), LIMITS), decide(order(capital=D(0)), LIMITS),
                     decide(order(**HOSTILE), LIMITS)):
        assert tuple(c.rule for c in decision.checks) == RULES


def test_a_plain_order_is_approved_low_and_every_check_passes() -> None:
    decision = decide(order(), LIMITS)
    assert (decision.approved, decision.level, decision.quantity) == (True, RiskLevel.LOW, 100)
    assert {c.outcome for c in decision.checks} == {"pass"}
    assert decision.summary() == "would be approved at 100 shares"
    assert decide(order(quantity=1), LIMITS).summary() == "would be approved at 1 share"


def test_a_refusal_lists_every_broken_rule() -> None:
    decision = decide(order(**HOSTILE), LIMITS)
    assert not decision.approved and decision.quantity == 0
    assert {r.rule for r in decision.rejections} >= {
        "max_positions", "daily_loss", "weekly_loss", "drawdown", "regime"}


@pytest.mark.parametrize(("changes", "message"), [
    ({"quantity": 0}, "quantity must be at least 1; got 0"),
    ({"price": D("0")}, "price must be positive; got ₹0$"),
    ({"price": D("-5")}, "price must be positive; got -₹5$"),
    ({"lot_size": 0}, "lot size must be at least 1; got 0"),
    ({"quantity": 70, "lot_size": 75}, "quantity must be a multiple of the lot size 75; got 70"),
    ({"atr": D("-1")}, "ATR must not be negative; got -₹1$"),
    ({"orders_last_second": -1}, "orders in the last second must not be negative; got -1"),
])
def test_malformed_input_raises_a_validation_error_naming_the_value(
    changes: dict[str, Any], message: str,
) -> None:
    with pytest.raises(ValidationError, match=message):
        decide(order(**changes), LIMITS)


# ----------------------------------------------------------------------------------------------
# Properties
# ----------------------------------------------------------------------------------------------

ticks = st.integers(min_value=1, max_value=200_000).map(lambda n: D(n) * D("0.05"))
rupees = st.integers(min_value=-10_000_000, max_value=500_000_000).map(lambda n: D(n) / 100)
percents = st.integers(min_value=1, max_value=1000).map(lambda n: D(n) / 100)  # 0.01-10
fractions = st.integers(min_value=0, max_value=100).map(lambda n: D(n) / 100)


@st.composite
def inputs(draw: st.DrawFn) -> tuple[PreTradeInput, RiskLimits]:
    """Draw an arbitrary well-formed order with arbitrary account figures and limits."""
    lot = draw(st.sampled_from([1, 1, 1, 25, 50, 75]))
    price = draw(ticks)
    side = draw(st.sampled_from(list(Side)))
    stop = draw(st.none() | st.integers(min_value=-2000, max_value=2000).map(
        lambda n, p=price: p + D(n) * D("0.05")).filter(lambda s: s > 0))
    capital = draw(rupees)
    symbols = draw(st.lists(st.sampled_from(["TCS", "INFY", "ONGC", "SBIN", "RELIANCE", "ITC"]),
                            unique=True, max_size=6))
    exposures = tuple(
        Exposure(sym, draw(st.sampled_from(["IT", "Energy", "Banks", None])),
                 draw(st.integers(-500, 500)), draw(rupees).copy_abs()) for sym in symbols)
    inp = PreTradeInput(
        action=draw(st.sampled_from(list(OrderAction))), account_id=1, symbol="RELIANCE",
        sector=draw(st.sampled_from(["Energy", "IT", None])), side=side,
        product=Product.CNC, quantity=lot * draw(st.integers(1, 400)), lot_size=lot,
        price=price, capital=capital,
        position_quantity=lot * draw(st.integers(-300, 300)), stop_price=stop,
        atr=draw(st.none() | ticks), exposures=exposures,
        correlations={sym: draw(st.floats(-1, 1)) for sym in symbols},
        day_pnl=draw(rupees) / 50, week_pnl=draw(rupees) / 20,
        peak_equity=draw(st.none() | rupees), regime=draw(st.none() | st.sampled_from(Regime)),
        orders_last_second=draw(st.integers(0, 12)),
        duplicate_age_s=draw(st.none() | st.floats(0, 30)), market_open=draw(st.booleans()),
        amo=draw(st.booleans()), strategy=draw(st.sampled_from([None, "momo", "swing"])))
    limits = replace(LIMITS, risk_per_trade_pct=draw(percents),
                     correlation_reduce=draw(st.booleans()), choppy_size_factor=draw(fractions),
                     max_open_positions=draw(st.integers(1, 10)),
                     max_sector_pct=draw(st.integers(1, 100).map(D)))
    return inp, limits


def closing_part(inp: PreTradeInput) -> int:
    if inp.position_quantity * inp.side.sign < 0:
        return min(inp.quantity, abs(inp.position_quantity))
    return 0


@PROPERTY
@given(inputs())
def test_an_approved_opening_never_risks_more_than_the_budget_at_its_stop(
    drawn: tuple[PreTradeInput, RiskLimits],
) -> None:
    inp, limits = drawn
    decision = decide(inp, limits)
    assert decision.quantity <= inp.quantity
    assert decision.quantity % inp.lot_size == 0
    assert tuple(c.rule for c in decision.checks) == RULES
    if not decision.approved:
        assert decision.quantity == 0 and decision.rejections
        return
    opening = decision.quantity - closing_part(inp)
    assert opening >= 0
    if opening:
        distance, _source = stop_distance(inp, limits)
        assert opening * distance <= inp.capital * limits.risk_per_trade_pct / 100


@PROPERTY
@given(inputs(), st.sampled_from([Scope.HOUSEHOLD, Scope.ACCOUNT, Scope.STRATEGY]),
       st.sampled_from(list(StateKind)))
def test_nothing_is_approved_while_an_active_state_covers_the_order(
    drawn: tuple[PreTradeInput, RiskLimits], scope: Scope, kind: StateKind,
) -> None:
    inp, limits = drawn
    covering = state(ACTIVE, scope, kind, inp.strategy if scope is Scope.STRATEGY else None)
    decision = decide(replace(inp, states=(covering,)), limits)
    if scope is Scope.STRATEGY and inp.strategy is None:
        return  # a strategy's state does not cover an order no strategy sent
    assert not decision.approved and decision.quantity == 0
    assert "state" in {r.rule for r in decision.rejections}


@PROPERTY
@given(inputs(), st.sampled_from([Scope.HOUSEHOLD, Scope.ACCOUNT]))
def test_only_protective_exits_pass_while_a_state_is_being_engaged(
    drawn: tuple[PreTradeInput, RiskLimits], scope: Scope,
) -> None:
    inp, limits = drawn
    decision = decide(replace(inp, states=(state(ENGAGING, scope),)), limits)
    if decision.approved:
        assert inp.action is OrderAction.PROTECT
        assert closing_part(inp) == inp.quantity  # an exit: opens nothing
        assert decision.quantity == inp.quantity


# ----------------------------------------------------------------------------------------------
# Post-trade: position controls
# ----------------------------------------------------------------------------------------------

FRIDAY = datetime(2026, 1, 23, 11, 0, tzinfo=IST)  # Monday 26 Jan is Republic Day
MIS, CNC = Product.MIS, Product.CNC


def live(quantity: int = 10, ltp: str | None = "1000", *, account: int = 1,
         symbol: str = "RELIANCE", product: Product = MIS, average: str = "1000",
         strategy: str | None = None) -> LivePosition:
    return LivePosition(account, symbol, product, quantity, D(average),
                        None if ltp is None else D(ltp), D(0), strategy)


def control(account: int = 1, symbol: str = "RELIANCE", product: Product = MIS,
            **prices: str) -> PositionControl:
    return PositionControl(control_id=account * 100 + len(symbol), account_id=account,
                           symbol=symbol, product=product,
                           **{name: D(value) for name, value in prices.items()})


def post(positions: tuple[LivePosition, ...], **changes: Any) -> PostTradeResult:
    return evaluate(PostTradeInput(now=changes.pop("now", FRIDAY), positions=positions,
                                   **changes))


CONTROLS = [
    # (quantity, ltp, control prices, rule fired or None, trail update (extreme, stop) or None)
    (10, "980", {"stop_loss": "980"}, "stop_loss", None),  # at the stop
    (10, "980.05", {"stop_loss": "980"}, None, None),
    (10, "1050", {"target": "1050"}, "target", None),
    (10, "1049.95", {"target": "1050"}, None, None),
    (10, "1010", {"trail_points": "20"}, None, ("1010", "990")),  # first extreme: LTP > average
    (10, "990", {"trail_points": "20"}, None, ("1000", "980")),  # first extreme: the average
    (10, "1010", {"trail_points": "20", "extreme": "1030"}, "trailing_stop", None),
    (10, "1010.05", {"trail_points": "20", "extreme": "1030"}, None, None),
    (10, "1040", {"trail_points": "20", "extreme": "1030"}, None, ("1040", "1020")),
    (10, "1000", {"trail_points": "7.33", "extreme": "990"}, None, ("1000", "992.65")),  # tick
    (10, "1003", {"trail_pct": "1.5"}, None, ("1003", "987.95")),  # 987.955 rounds down
    (10, "1000", {"trail_pct": "1.5", "extreme": "1050"}, "trailing_stop", None),  # 1034.25
    (10, "985", {"stop_loss": "990", "trail_points": "10", "extreme": "1000"}, "stop_loss",
     None),  # both breached: the stop-loss wins
    (10, "1060", {"target": "1050", "trail_points": "5", "extreme": "1100"}, "trailing_stop",
     None),  # trailing stop 1095 before the target
    (-10, "1020", {"stop_loss": "1020"}, "stop_loss", None),
    (-10, "1019.95", {"stop_loss": "1020"}, None, None),
    (-10, "950", {"target": "950"}, "target", None),
    (-10, "950.05", {"target": "950"}, None, None),
    (-10, "997", {"trail_pct": "1.5"}, None, ("997", "1012")),  # 1011.955 rounds up
    (-10, "1005", {"trail_points": "20"}, None, ("1000", "1020")),  # first extreme: the average
    (-10, "990", {"trail_points": "20", "extreme": "970"}, "trailing_stop", None),
    (-10, "989.95", {"trail_points": "20", "extreme": "970"}, None, None),
    (-10, "960", {"trail_points": "20", "extreme": "970"}, None, ("960", "980")),
    (-10, "1010", {"trail_points": "20", "extreme": "970"}, "trailing_stop", None),
    (-10, "1000", {"trail_points": "7.33", "extreme": "1010"}, None, ("1000", "1007.35")),
]


@pytest.mark.parametrize(("quantity", "ltp", "prices", "rule", "trail"), CONTROLS)
def test_position_controls_fire_and_trail_as_the_table_says(
    quantity: int, ltp: str, prices: dict[str, str], rule: str | None,
    trail: tuple[str, str] | None,
) -> None:
    ctl = control(**prices)
    result = post((live(quantity, ltp),), controls=(ctl,))
    assert [s.rule for s in result.square_offs] == ([rule] if rule else [])
    if rule:
        square_off = result.square_offs[0]
        assert (square_off.quantity, square_off.control_id) == (quantity, ctl.control_id)
        assert square_off.account_id == 1 and square_off.product is MIS
    expected = () if trail is None else (TrailUpdate(ctl.control_id, D(trail[0]), D(trail[1])),)
    assert result.trail_updates == expected
    assert result.engages == () and result.warnings == ()


def test_a_square_off_reason_states_the_price_and_the_level() -> None:
    result = post((live(10, "979.5"),), controls=(control(stop_loss="980"),))
    assert result.square_offs[0].reason == ("RELIANCE (long 10) last ₹979.50 is at or below its "
                                            "stop-loss ₹980.00")
    short = post((live(-5, "1062"),), controls=(control(trail_pct="2", extreme="1040"),))
    assert short.square_offs[0].reason == ("RELIANCE (short 5) last ₹1,062.00 is at or above its "
                                           "trailing stop ₹1,060.80")


@PROPERTY
@given(st.lists(st.integers(min_value=1, max_value=40_000), min_size=1, max_size=30),
       st.booleans(), st.integers(min_value=1, max_value=500))
def test_a_trailing_extreme_only_moves_in_the_positions_favour(
    path: list[int], long: bool, pct_hundredths: int,
) -> None:
    extreme: Decimal | None = None
    for tick_count in path:
        ltp = D(tick_count) * D("0.05")
        ctl = replace(control(trail_pct=str(D(pct_hundredths) / 100)), extreme=extreme)
        result = post((live(10 if long else -10, str(ltp)),), controls=(ctl,))
        for update in result.trail_updates:
            if extreme is not None:
                assert update.extreme > extreme if long else update.extreme < extreme
            assert update.stop % D("0.05") == 0
            assert update.stop <= update.extreme if long else update.stop >= update.extreme
            extreme = update.extreme


def test_a_position_without_a_last_price_is_skipped_with_a_warning() -> None:
    result = post((live(10, None),), controls=(control(stop_loss="990", trail_points="5"),))
    assert result.square_offs == () and result.trail_updates == ()
    assert result.warnings == ("RELIANCE MIS (account 1) has no last price: its stop-loss, "
                               "target and trailing stop were not checked",)


def test_a_control_whose_position_is_closed_does_nothing() -> None:
    result = post((live(10, "900", symbol="TCS"),), controls=(control(stop_loss="990"),))
    assert result == PostTradeResult()


# ----------------------------------------------------------------------------------------------
# Post-trade: MTM limits, loss limits, kill switch, end of day
# ----------------------------------------------------------------------------------------------

BOOK = (live(10, "1000", account=1), live(-5, "500", account=1, symbol="TCS", product=CNC),
        live(20, "200", account=2, symbol="ITC"),
        live(4, "1000", account=1, strategy="momo"),  # momo's part of account 1's RELIANCE
        live(8, "200", account=2, symbol="ITC", strategy="momo"))


def mtm(scope: Scope, key: str, value: str, stop: str | None = "5000",
        target: str | None = "5000", accounts: tuple[int, ...] = (1, 2)) -> MtmLimit:
    return MtmLimit(scope, key, None if stop is None else D(stop),
                    None if target is None else D(target), D(value), accounts)


MTM_TARGETS = [
    # (limit, square-offs as (account, symbol, quantity))
    (mtm(Scope.ACCOUNT, "1", "5000", accounts=(1,)), {(1, "RELIANCE", 10), (1, "TCS", -5)}),
    (mtm(Scope.ACCOUNT, "1", "5000", accounts=()), {(1, "RELIANCE", 10), (1, "TCS", -5)}),
    (mtm(Scope.ACCOUNT, "2", "7500", accounts=(2,)), {(2, "ITC", 20)}),
    (mtm(Scope.HOUSEHOLD, "3", "5000"),
     {(1, "RELIANCE", 10), (1, "TCS", -5), (2, "ITC", 20)}),
    (mtm(Scope.STRATEGY, "momo", "5000"), {(1, "RELIANCE", 4), (2, "ITC", 8)}),
    (mtm(Scope.STRATEGY, "momo", "5000", accounts=(2,)), {(2, "ITC", 8)}),
    (mtm(Scope.STRATEGY, "swing", "5000"), set()),  # no position of its own
    (mtm(Scope.HOUSEHOLD, "3", "4999.99"), set()),
    (mtm(Scope.HOUSEHOLD, "3", "9000", target=None), set()),
    (mtm(Scope.HOUSEHOLD, "3", "-4999.99"), set()),
]


@pytest.mark.parametrize(("limit", "closed"), MTM_TARGETS)
def test_an_mtm_target_squares_off_every_position_in_its_scope(
    limit: MtmLimit, closed: set[tuple[int, str, int]],
) -> None:
    result = post(BOOK, mtm_limits=(limit,))
    assert {(s.account_id, s.symbol, s.quantity) for s in result.square_offs} == closed
    assert {s.rule for s in result.square_offs} <= {"mtm_target"}
    assert result.engages == ()


@pytest.mark.parametrize(("limit", "engaged", "expected"), [
    (mtm(Scope.ACCOUNT, "1", "-5000", accounts=(1,)), frozenset(),
     Engage(StateKind.DAILY_LOSS, Scope.ACCOUNT, "1",
            "MTM -₹5,000.00 of account 1 reached its stop-loss of ₹5,000.00; trading resumes "
            "2026-01-27", (1,), date(2026, 1, 27))),
    (mtm(Scope.HOUSEHOLD, "3", "-6000"), frozenset(),
     Engage(StateKind.DAILY_LOSS, Scope.HOUSEHOLD, "3",
            "MTM -₹6,000.00 of the household reached its stop-loss of ₹5,000.00; trading resumes "
            "2026-01-27", (1, 2), date(2026, 1, 27))),
    (mtm(Scope.STRATEGY, "momo", "-5000.01"), frozenset(),
     Engage(StateKind.DAILY_LOSS, Scope.STRATEGY, "momo",
            "MTM -₹5,000.01 of strategy momo reached its stop-loss of ₹5,000.00; trading resumes "
            "2026-01-27", (1, 2), date(2026, 1, 27))),
    (mtm(Scope.STRATEGY, "momo", "-4999.99"), frozenset(), None),
    (mtm(Scope.STRATEGY, "momo", "-9000"),
     frozenset({(Scope.STRATEGY, "momo", StateKind.DAILY_LOSS)}), None),  # engaged already
    (mtm(Scope.HOUSEHOLD, "3", "-9000", stop=None), frozenset(), None),
])
def test_an_mtm_stop_loss_engages_a_daily_loss_state_for_its_scope(
    limit: MtmLimit, engaged: frozenset[tuple[Scope, str, StateKind]], expected: Engage | None,
) -> None:
    result = post(BOOK, mtm_limits=(limit,), engaged=engaged)
    assert result.engages == (() if expected is None else (expected,))
    assert result.square_offs == ()


def account(day: str = "0", week: str = "0", capital: str | None = None,
            peak: str | None = None, account_id: int = 1) -> AccountRisk:
    """Return an account's figures; capital defaults to what is left of ₹10 lakh at the start
    of the week (and so of the day too) after the losses given."""
    now = D(capital) if capital is not None else D("1000000") + min(D(day), D(week))
    return AccountRisk(account_id, now, D(day), D(week), None if peak is None else D(peak),
                       LIMITS)


ACCOUNT_LIMITS = [
    # (account figures, engaged, engages as (kind, until), warnings containing)
    (account(day="-20000"), frozenset(), [(StateKind.DAILY_LOSS, date(2026, 1, 27))], []),
    (account(day="-19999.99"), frozenset(), [], ["loss today ₹19,999.99"]),
    (account(day="-16000"), frozenset(), [], ["80% of it used"]),
    (account(day="-15999.99"), frozenset(), [], []),
    (account(week="-50000"), frozenset(), [(StateKind.WEEKLY_LOSS, date(2026, 1, 27))], []),
    (account(week="-40000"), frozenset(), [], ["loss this week ₹40,000.00"]),
    (account(day="-20000", week="-50000"), frozenset(),
     [(StateKind.DAILY_LOSS, date(2026, 1, 27)), (StateKind.WEEKLY_LOSS, date(2026, 1, 27))],
     []),
    (account(capital="850000", peak="1000000"), frozenset(), [(StateKind.KILL_SWITCH, None)],
     []),  # exactly 15% from the peak
    (account(capital="850000.01", peak="1000000"), frozenset(), [], []),
    (account(capital="-10000", peak="1000000", day="-900000"), frozenset(),
     [(StateKind.KILL_SWITCH, None)], []),  # no loss limit on capital below zero
    (account(day="-30000"), frozenset({(Scope.ACCOUNT, "1", StateKind.DAILY_LOSS)}), [], []),
    (account(day="-19000"), frozenset({(Scope.ACCOUNT, "1", StateKind.DAILY_LOSS)}), [], []),
    (account(day="-30000"), frozenset({(Scope.ACCOUNT, "2", StateKind.DAILY_LOSS)}),
     [(StateKind.DAILY_LOSS, date(2026, 1, 27))], []),  # another account's state
    (account(capital="800000", peak="1000000"),
     frozenset({(Scope.ACCOUNT, "1", StateKind.KILL_SWITCH)}), [], []),
]


@pytest.mark.parametrize(("figures", "engaged", "engages", "warnings"), ACCOUNT_LIMITS)
def test_account_loss_limits_and_the_kill_switch_engage_once(
    figures: AccountRisk, engaged: frozenset[tuple[Scope, str, StateKind]],
    engages: list[tuple[StateKind, date | None]], warnings: list[str],
) -> None:
    result = post((), accounts=(figures,), engaged=engaged)
    assert [(e.kind, e.until) for e in result.engages] == engages
    assert all((e.scope, e.key, e.account_ids) == (Scope.ACCOUNT, "1", (1,))
               for e in result.engages)
    assert len(result.warnings) == len(warnings)
    for text, warning in zip(warnings, result.warnings, strict=True):
        assert text in warning


def test_loss_limit_and_kill_switch_reasons_state_the_figures() -> None:
    result = post((), accounts=(account(day="-25000", capital="850000", peak="1000000"),))
    assert [e.reason for e in result.engages] == [
        "account 1: loss today ₹25,000.00 against the limit ₹17,500.00 (2% of capital "
        "₹8,75,000.00 at the start of the day) reached; trading resumes 2026-01-27",
        "account 1: drawdown 15% from peak equity ₹10,00,000.00 to ₹8,50,000.00 reached the kill "
        "level 15%; an admin must re-enable trading"]


@pytest.mark.parametrize(("now", "daily", "weekly"), [
    (FRIDAY, date(2026, 1, 27), date(2026, 1, 27)),  # weekend, then Republic Day
    (datetime(2026, 1, 22, 20, 0, tzinfo=UTC), date(2026, 1, 27), date(2026, 1, 27)),  # Fri IST
    (datetime(2026, 1, 22, 15, 0, tzinfo=IST), date(2026, 1, 23), date(2026, 1, 27)),
    (datetime(2026, 1, 14, 10, 0, tzinfo=IST), date(2026, 1, 16), date(2026, 1, 19)),  # 15th off
    (datetime(2026, 11, 23, 10, 0, tzinfo=IST), date(2026, 11, 25), date(2026, 11, 30)),
    (datetime(2026, 4, 2, 10, 0, tzinfo=IST), date(2026, 4, 6), date(2026, 4, 6)),  # Good Friday
    (datetime(2026, 1, 24, 10, 0, tzinfo=IST), date(2026, 1, 27), date(2026, 1, 27)),  # Saturday
])
def test_loss_limit_states_last_until_the_next_trading_day_or_week(
    now: datetime, daily: date, weekly: date,
) -> None:
    result = post((), now=now, accounts=(account(day="-20000", week="-50000"),))
    assert [e.until for e in result.engages] == [daily, weekly]



def test_beyond_the_trading_calendar_a_loss_limit_lifts_on_the_next_weekday_with_a_warning(
) -> None:
    year_end = datetime(2026, 12, 31, 10, 0, tzinfo=IST)  # the calendar's data ends today
    result = post((), now=year_end, accounts=(account(day="-20000", week="-50000"),))
    assert [e.until for e in result.engages] == [date(2027, 1, 1), date(2027, 1, 4)]
    assert result.warnings == (
        "the trading calendar has no holidays for 2027-01-01: the loss limit lifts on that "
        "weekday, holiday or not",
        "the trading calendar has no holidays for 2027-01-04: the loss limit lifts on that "
        "weekday, holiday or not")

def test_end_of_day_squares_off_only_the_due_accounts_mis_positions() -> None:
    result = post(BOOK, mis_due=frozenset({1}))
    assert [(s.account_id, s.symbol, s.product, s.quantity, s.rule)
            for s in result.square_offs] == [(1, "RELIANCE", MIS, 10, "eod")]
    assert "intraday (MIS) RELIANCE (+10)" in result.square_offs[0].reason
    both = post(BOOK, mis_due=frozenset({1, 2}))
    assert {(s.account_id, s.symbol) for s in both.square_offs} == {(1, "RELIANCE"),
                                                                   (2, "ITC")}
    assert post(BOOK).square_offs == ()


@pytest.mark.parametrize(("prices", "limits", "mis_due", "rule"), [
    ({"stop_loss": "1000"}, (mtm(Scope.ACCOUNT, "1", "6000", accounts=(1,)),), {1}, "stop_loss"),
    ({"trail_points": "10", "extreme": "1010"}, (mtm(Scope.HOUSEHOLD, "3", "6000"),), {1},
     "trailing_stop"),
    ({"target": "1000", "trail_points": "50"}, (mtm(Scope.HOUSEHOLD, "3", "6000"),), {1},
     "target"),
    ({"target": "2000"}, (mtm(Scope.HOUSEHOLD, "3", "6000"),), {1}, "mtm_target"),
    ({"target": "2000"}, (), {1}, "eod"),
])
def test_one_square_off_per_position_keeps_the_most_urgent_rule(
    prices: dict[str, str], limits: tuple[MtmLimit, ...], mis_due: set[int], rule: str,
) -> None:
    result = post(BOOK, controls=(control(**prices),), mtm_limits=limits,
                  mis_due=frozenset(mis_due))
    reliance = [s for s in result.square_offs if (s.account_id, s.symbol) == (1, "RELIANCE")]
    assert [(s.rule, s.quantity) for s in reliance] == [(rule, 10)]
    keys = [(s.account_id, s.symbol, s.product) for s in result.square_offs]
    assert len(keys) == len(set(keys))


def test_an_account_being_engaged_gets_no_square_off_of_its_own() -> None:
    result = post(BOOK, controls=(control(stop_loss="1000"),
                                  control(account=2, symbol="ITC", stop_loss="200")),
                  accounts=(account(day="-20000"),), mis_due=frozenset({1, 2}))
    assert [e.kind for e in result.engages] == [StateKind.DAILY_LOSS]
    assert [(s.account_id, s.symbol, s.rule) for s in result.square_offs] == [
        (2, "ITC", "stop_loss")]


def test_a_strategy_being_engaged_leaves_the_rest_of_its_accounts_to_their_controls() -> None:
    result = post(BOOK, controls=(control(stop_loss="1000"),),
                  mtm_limits=(mtm(Scope.STRATEGY, "momo", "-5000"),
                              mtm(Scope.HOUSEHOLD, "3", "0", stop=None, target="0")))
    assert [(e.scope, e.key) for e in result.engages] == [(Scope.STRATEGY, "momo")]
    # the whole-position exits (untagged) still go; the strategy's parts are the engage's
    assert {(s.account_id, s.symbol, s.rule, s.quantity) for s in result.square_offs} == {
        (1, "RELIANCE", "stop_loss", 10), (1, "TCS", "mtm_target", -5),
        (2, "ITC", "mtm_target", 20)}


def test_an_evaluation_time_without_a_zone_is_refused() -> None:
    with pytest.raises(ValidationError, match="must be time-zone aware"):
        post((), now=datetime(2026, 1, 23, 11, 0))  # noqa: DTZ001 - the point of the test


def test_reasons_and_warnings_name_an_account_by_its_label_when_given() -> None:
    labels = {1: "the account Priya · Trading"}
    by_mtm = evaluate(PostTradeInput(
        now=FRIDAY, positions=(live(10, None),), controls=(control(stop_loss="990"),),
        mtm_limits=(mtm(Scope.ACCOUNT, "1", "-5000", accounts=(1,)),)), labels)
    by_figures = evaluate(PostTradeInput(now=FRIDAY, positions=(), accounts=(
        account(day="-25000", capital="850000", peak="1000000"),)), labels)
    reasons = [e.reason for e in (*by_mtm.engages, *by_figures.engages)]
    assert [reason.split(" reached")[0] for reason in reasons] == [
        "MTM -₹5,000.00 of the account Priya · Trading",
        "the account Priya · Trading: loss today ₹25,000.00 against the limit ₹17,500.00 (2% of "
        "capital ₹8,75,000.00 at the start of the day)",
        "the account Priya · Trading: drawdown 15% from peak equity ₹10,00,000.00 to "
        "₹8,50,000.00"]
    assert by_mtm.warnings == ("RELIANCE MIS (the account Priya · Trading) has no last price: "
                               "its stop-loss, target and trailing stop were not checked",)


def test_one_share_is_said_in_the_singular() -> None:
    from engines.risk_types import shares

    assert (shares(1), shares(0), shares(2)) == ("1 share", "0 shares", "2 shares")
