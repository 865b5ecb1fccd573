"""The paper broker: virtual money, real prices from the market feed, real charges.

=====================  ================================================================
Module                 What it holds
=====================  ================================================================
``matching``           Pure matching of one resting order against one tick.
``market``             The market view: open/closed and quotes (feed or static).
``config``             :class:`PaperConfig` (slippage, MIS leverage, participation).
``records``            Ids, rows to domain types, charges per fill, locks, ledger sums.
``book``               :class:`FillCache`: fills in memory, the book rebuilt per queue.
``funds``              What an order blocks, funds and sellable-shares checks.
``broker``             :class:`PaperBroker`, the :class:`brokers.base.Broker` of an account.
``exchange``           :class:`PaperExchange`, the worker's matching step (all accounts).
=====================  ================================================================
"""

from brokers.paper.broker import PaperBroker
from brokers.paper.config import PaperConfig
from brokers.paper.exchange import PaperExchange, StepReport
from brokers.paper.market import FeedMarketView, MarketView, StaticMarketView

__all__ = [
    "FeedMarketView",
    "MarketView",
    "PaperBroker",
    "PaperConfig",
    "PaperExchange",
    "StaticMarketView",
    "StepReport",
]
