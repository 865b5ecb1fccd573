"""NSE's dynamic price band: limit prices beyond the previous close ± 10% (flexed) are refused."""

from __future__ import annotations

from decimal import Decimal

import pytest
from sqlalchemy import func, select

from core.domain import Actor
from core.errors import ValidationError
from core.services import Services
from core.trading import (
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
    check_price_band,
    price_band,
)
from db.models import AlertOutboxRow, AuditRow, OrderRow
from tests.support.market import open_market, tick
from tests.support.orders import review_and_place_refusals

D = Decimal
TICK = D("0.05")


@pytest.mark.parametrize(("base", "ltp", "band"), [
    (D("1500"), D("1500"), (D("1350.00"), D("1650.00"))),  # ± 10%
    (D("1500"), D("1648.50"), (D("1350.00"), D("1725.00"))),  # up 9.90%: the upper side +5%
    (D("1500"), D("1648.45"), (D("1350.00"), D("1650.00"))),  # up 9.897%: not yet
    (D("1500"), D("1723.50"), (D("1350.00"), D("1800.00"))),  # up 14.90%: +5% again
    (D("1500"), D("1351.50"), (D("1275.00"), D("1650.00"))),  # down 9.90%: the lower side
    (D("1234.55"), D("1234.55"), (D("1111.10"), D("1358.00"))),  # inward onto the tick
])
def test_the_band_is_ten_percent_of_the_previous_close_flexed_by_five_as_the_price_nears_it(
        base: Decimal, ltp: Decimal, band: tuple[Decimal, Decimal]) -> None:
    assert price_band(base, ltp, TICK) == band


def _limit(price: str, order_type: OrderType = OrderType.LIMIT,
           trigger: str | None = None) -> OrderRequest:
    return OrderRequest(1, "INFY", Side.BUY, 1, order_type, Product.CNC, price=D(price),
                        trigger_price=None if trigger is None else D(trigger))


def test_a_limit_price_outside_the_band_is_refused_with_the_band_and_the_close() -> None:
    with pytest.raises(ValidationError) as refused:
        check_price_band(_limit("13200"), D("1320"), D("1320"), TICK)
    assert str(refused.value) == (
        "Price ₹13200 of INFY is outside today's price band ₹1,188.00 to ₹1,452.00 (previous "
        "close ₹1,320.00, NSE's dynamic price band); the exchange does not accept it")
    with pytest.raises(ValidationError, match="outside today's price band"):
        check_price_band(_limit("0.05"), D("1320"), D("1320"), TICK)


def test_prices_inside_the_band_stop_triggers_and_unknown_closes_pass() -> None:
    check_price_band(_limit("1452.00"), D("1320"), D("1320"), TICK)  # on the edge
    check_price_band(_limit("1188.00"), D("1320"), D("1320"), TICK)
    check_price_band(_limit("1500", OrderType.SL, trigger="1490"), D("1400"), D("1400"), TICK)
    check_price_band(_limit("99999"), None, D("1320"), TICK)  # no previous close: no band
    market = OrderRequest(1, "INFY", Side.BUY, 1, OrderType.MARKET, Product.CNC)
    check_price_band(market, D("1320"), D("1320"), TICK)


@pytest.fixture
def priya(services: Services, login) -> Actor:
    open_market(services.db, {"INFY": "1500.00"})  # the previous close is ₹1,500
    return login("priya")


def _account(services: Services, actor: Actor) -> int:
    return next(a.id for a in services.household.list_accounts(actor)
                if a.label == "Priya · Trading")


BEYOND = ("Price ₹1700 of INFY is outside today's price band ₹1,350.00 to ₹1,650.00 "
          "(previous close ₹1,500.00, NSE's dynamic price band); the exchange does not accept it")


def _written(services: Services) -> tuple[int, int, int]:
    """Return how many orders, audit rows and alerts the desk holds."""
    with services.db.transaction() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (OrderRow, AuditRow, AlertOutboxRow))  # type: ignore[return-value]


@pytest.mark.usefixtures("backend")
def test_review_and_place_refuse_a_limit_price_beyond_the_band_before_writing_anything(
        services: Services, priya: Actor) -> None:
    account = _account(services, priya)
    request = OrderRequest(account, "INFY", Side.BUY, 1, OrderType.LIMIT, Product.CNC,
                           price=D("1700.00"), client_order_id="SHER-band-1")
    before = _written(services)
    assert review_and_place_refusals(services, priya, request) == [BEYOND] * 3
    assert _written(services) == before
    assert services.portfolio.funds(priya, account).used_margin == 0

    tick(services.db, "INFY", "1649.00")  # up 9.93%: the band flexes to ₹1,725.00
    assert services.orders.estimate(priya, request).price == D("1700.00")
    accepted = services.orders.place(priya, request)
    assert accepted.status is OrderStatus.OPEN


@pytest.mark.usefixtures("backend")
def test_the_paper_exchange_still_rejects_an_order_beyond_the_band_that_reaches_it(
        services: Services, priya: Actor) -> None:
    account = _account(services, priya)
    rejected = services.orders.manager.submit(OrderRequest(  # past the desk's own check
        account, "INFY", Side.BUY, 1, OrderType.LIMIT, Product.CNC, price=D("1700.00")),
        placed_by=priya)
    assert rejected.status is OrderStatus.REJECTED
    assert rejected.rejection_reason == BEYOND
    assert services.portfolio.funds(priya, account).used_margin == 0


@pytest.mark.usefixtures("backend")
def test_modifying_an_order_to_a_price_beyond_the_band_is_refused_and_changes_nothing(
        services: Services, priya: Actor) -> None:
    account = _account(services, priya)
    order = services.orders.place(priya, OrderRequest(
        account, "INFY", Side.BUY, 1, OrderType.LIMIT, Product.CNC, price=D("1400.00")))
    with pytest.raises(ValidationError, match=r"outside today's price band ₹1,350\.00 to"):
        services.orders.modify(priya, order.id, price=D("1300.00"))
    (unchanged,) = services.orders.order_book(priya, account)
    assert (unchanged.status, unchanged.price) == (OrderStatus.OPEN, D("1400.00"))
