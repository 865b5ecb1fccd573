"""Broker name -> adapter factory: the one place that knows which class serves which broker.

Every factory takes the same keyword arguments (``db``, ``settings``, ``account_id``,
``market``, ``clock``) and returns a :class:`brokers.base.Broker`; code outside ``brokers/``
calls :func:`build_broker` with the account's broker and never names an adapter class.
Simulated venues (the paper exchange) are stepped by the worker through
:func:`venue_steppers`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from types import MappingProxyType

from sqlalchemy.orm import Session

from brokers.base import Broker, Capability, VenueStep
from brokers.paper import FeedMarketView, MarketView, PaperBroker, PaperConfig, PaperExchange
from core.clock import now_ist
from core.config import Settings
from core.domain import Broker as BrokerName
from core.errors import ValidationError
from db.engine import Database


def _paper(*, db: Database, settings: Settings, account_id: int,
           market: MarketView | None = None,
           clock: Callable[[], datetime] | None = None) -> PaperBroker:
    """Return the paper broker of ``account_id``, on the market feed unless given a market."""
    return PaperBroker(db, account_id, PaperConfig.from_settings(settings),
                       market if market is not None else FeedMarketView(db, settings),
                       clock or now_ist)


#: Broker -> factory (keyword arguments as :func:`build_broker`).
BROKER_FACTORIES: Mapping[BrokerName, Callable[..., Broker]] = MappingProxyType({
    BrokerName.PAPER: _paper,
})
#: Broker -> the adapter class its factory builds (whose ``capabilities`` every adapter has).
BROKER_CLASSES: Mapping[BrokerName, type[Broker]] = MappingProxyType({
    BrokerName.PAPER: PaperBroker,
})


def only_desk_book_brokers() -> bool:
    """Return whether every known broker keeps its books in the desk's database.

    Then no order can be open at a broker outside it (``Capability.DESK_DATABASE``), and the
    worker's step need not ask for any between its safety-net syncs.
    """
    return all(Capability.DESK_DATABASE in BROKER_CLASSES[name].capabilities
               for name in BROKER_FACTORIES)


def build_broker(broker: BrokerName | str, *, db: Database, settings: Settings,
                 account_id: int, market: MarketView | None = None,
                 clock: Callable[[], datetime] | None = None) -> Broker:
    """Return the adapter of ``broker`` for one account.

    Parameters
    ----------
    broker : core.domain.Broker | str
        Which broker, e.g. ``"paper"``.
    db, settings : Database, Settings
        The desk's database and settings.
    account_id : int
        The desk account the adapter trades.
    market : MarketView, optional
        The market of adapters that simulate one (paper: default the market feed); live
        adapters ignore it.
    clock : Callable[[], datetime], optional
        Wall time (default: IST now).

    Raises
    ------
    ValidationError
        For a broker with no adapter; the message names the known ones.
    """
    by_name = {name.value: make for name, make in BROKER_FACTORIES.items()}
    factory = by_name.get(str(broker).strip().lower())
    if factory is None:
        known = ", ".join(sorted(name.value for name in BROKER_FACTORIES))
        raise ValidationError(f"Unknown broker {str(broker)!r}; known brokers: {known}")
    return factory(db=db, settings=settings, account_id=account_id, market=market, clock=clock)


def venue_steppers(db: Database, settings: Settings,
                   clock: Callable[[], datetime] | None = None
                   ) -> list[Callable[[datetime, Session], VenueStep]]:
    """Return the step functions of the simulated venues the worker runs every second.

    Each takes the wall time and the transaction to step in (the order manager mirrors the
    step's updates in the same one), and returns how many order events (fills, cancels,
    expiries) it made and the orders they changed, with their new fills. Today: the paper
    exchange on the market feed.
    """
    exchange = PaperExchange(db, PaperConfig.from_settings(settings),
                             FeedMarketView(db, settings), clock or now_ist)
    return [lambda now, session: exchange.step(now, within=session).venue_step()]
