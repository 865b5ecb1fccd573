"""Market feeds: the :class:`MarketFeed` interface and the :class:`ReplayFeed` over stored bars."""

from core.feeds.base import FeedMode, FeedProgress, FeedRunState, MarketFeed
from core.feeds.replay import REPLAY_SOURCE, ReplayFeed

__all__ = [
    "REPLAY_SOURCE",
    "FeedMode",
    "FeedProgress",
    "FeedRunState",
    "MarketFeed",
    "ReplayFeed",
]
