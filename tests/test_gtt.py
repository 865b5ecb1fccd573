"""GTT rules as tables: price path -> which leg fires (single and OCO), and refused GTTs."""

from __future__ import annotations

from decimal import Decimal

import pytest

from core.domain import Instrument
from core.errors import RiskRejected, ValidationError
from core.gtt import check_gtt, check_order_limits, fired_leg
from core.trading import GttKind, GttLeg, Side
from engines.risk_types import RiskLimits

INFY = Instrument(id=1, symbol="INFY", exchange="NSE", segment="EQ", name=None,
                  tick_size=Decimal("0.05"), lot_size=1, sector=None, isin=None)


def leg(trigger: str, side: Side = Side.SELL, quantity: int = 10, price: str | None = None
        ) -> GttLeg:
    return GttLeg(Decimal(trigger), side, quantity, Decimal(price or trigger))


def first_fire(legs: list[GttLeg], reference: str, path: list[str]) -> tuple[int, int] | None:
    """Return (step, leg index) of the first price in ``path`` that fires a leg, or None."""
    for step, price in enumerate(path):
        index = fired_leg(legs, Decimal(reference), Decimal(price))
        if index is not None:
            return step, index
    return None


SINGLE_PATHS = [
    # trigger above the price at creation: fires when the LTP rises to or through it
    pytest.param("1550", "1500", ["1510", "1549.95", "1550"], (2, 0), id="rises-to-trigger"),
    pytest.param("1550", "1500", ["1520", "1600"], (1, 0), id="gaps-through-trigger"),
    pytest.param("1550", "1500", ["1490", "1549.95", "1400"], None, id="never-reaches"),
    # trigger below: fires when the LTP falls to or through it
    pytest.param("1450", "1500", ["1480", "1450.05", "1449"], (2, 0), id="falls-through"),
    pytest.param("1450", "1500", ["1600", "1700"], None, id="moves-away"),
]


@pytest.mark.parametrize(("trigger", "reference", "path", "expected"), SINGLE_PATHS)
def test_a_single_gtt_fires_on_the_first_price_at_or_through_its_trigger(
    trigger: str, reference: str, path: list[str], expected: tuple[int, int] | None,
) -> None:
    assert first_fire([leg(trigger)], reference, path) == expected


OCO_PATHS = [
    pytest.param(["1480", "1420", "1399"], (2, 0), id="stop-loss-leg-fires"),
    pytest.param(["1550", "1600.00"], (1, 1), id="target-leg-fires"),
    pytest.param(["1401", "1599.95", "1500"], None, id="stays-between"),
    pytest.param(["1700"], (0, 1), id="gap-up-through-target"),
    pytest.param(["1300"], (0, 0), id="gap-down-through-stop"),
]


@pytest.mark.parametrize(("path", "expected"), OCO_PATHS)
def test_an_oco_gtt_fires_whichever_leg_the_price_crosses_first(
    path: list[str], expected: tuple[int, int] | None,
) -> None:
    legs = [leg("1400"), leg("1600")]
    assert check_gtt(legs, INFY, Decimal("1500")) is GttKind.OCO
    assert first_fire(legs, "1500", path) == expected


BAD_GTTS = [
    pytest.param([], "one leg (single) or two (OCO); got 0", id="no-legs"),
    pytest.param([leg("1400"), leg("1500.05"), leg("1600")], "got 3", id="three-legs"),
    pytest.param([leg("1400", quantity=0)], "quantity must be above 0", id="zero-quantity"),
    pytest.param([leg("1400.02")], "not on the tick size ₹0.05", id="trigger-off-tick"),
    pytest.param([leg("1400", price="1399.99")], "limit price ₹1399.99 of INFY is not on the tick",
                 id="price-off-tick"),
    pytest.param([leg("1500")], "equals the last price", id="trigger-at-ltp"),
    pytest.param([leg("1600"), leg("1400")], "stop ₹1600 < LTP ₹1,500.00 < target ₹1400",
                 id="oco-legs-swapped"),
    pytest.param([leg("1400", Side.SELL), leg("1600", Side.BUY)], "same side",
                 id="oco-mixed-sides"),
]


@pytest.mark.parametrize(("legs", "message"), BAD_GTTS)
def test_a_gtt_that_breaks_a_rule_is_refused_with_the_values(
    legs: list[GttLeg], message: str,
) -> None:
    with pytest.raises(ValidationError) as refused:
        check_gtt(legs, INFY, Decimal("1500"))
    assert message in str(refused.value)


LIMITS = RiskLimits(max_order_value=Decimal("500000"), max_order_quantity=5000)


@pytest.mark.parametrize(("legs", "message"), [
    pytest.param([leg("1200", Side.BUY, 100_000)], "leg 1 (BUY 100000 INFY at ₹1,200.00): order "
                 "value ₹12,00,00,000.00 is above the limit ₹5,00,000.00 per order and quantity "
                 "100000 is above the limit of 5000 shares per order", id="both-limits"),
    pytest.param([leg("1400", quantity=300), leg("1600", quantity=400, price="1599")],
                 "leg 2 (SELL 400 INFY at ₹1,599.00): order value ₹6,39,600.00 is above the "
                 "limit ₹5,00,000.00 per order. Lower", id="oco-target-leg-value"),
])
def test_a_gtt_leg_above_the_per_order_limits_is_refused_with_the_values(
    legs: list[GttLeg], message: str,
) -> None:
    with pytest.raises(RiskRejected) as refused:
        check_order_limits(legs, "INFY", LIMITS)
    assert message in str(refused.value)


def test_a_gtt_leg_exactly_at_the_per_order_limits_passes() -> None:
    check_order_limits([leg("100", Side.BUY, 5000)], "INFY", LIMITS)  # ₹5,00,000, 5,000 shares
