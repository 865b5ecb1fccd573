"""Settings of the paper broker: slippage, intraday leverage, volume participation, fee schedule."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from brokers.paper.matching import FillConfig
from core.config import Settings


@dataclass(frozen=True, slots=True)
class PaperConfig:
    """How the paper desk fills and charges.

    Attributes
    ----------
    slippage_bps : int
        MARKET and stop-market fills pay this many basis points worse than the price (5).
    mis_leverage : int
        Intraday (MIS) orders block value / this as margin (5).
    participation_pct : int
        An order fills at most this % of the volume traded since it last matched (25).
    profile : str
        Fee schedule of :mod:`engines.costs` the fills are charged with (``"paper"``, which
        charges exactly like Zerodha).
    """

    slippage_bps: int = 5
    mis_leverage: int = 5
    participation_pct: int = 25
    profile: str = "paper"

    @classmethod
    def from_settings(cls, settings: Settings) -> PaperConfig:
        """Return the config of PAPER_SLIPPAGE_BPS, PAPER_MIS_LEVERAGE, PAPER_PARTICIPATION_PCT."""
        return cls(
            slippage_bps=settings.paper_slippage_bps,
            mis_leverage=settings.paper_mis_leverage,
            participation_pct=settings.paper_participation_pct,
        )

    def fill_config(self, tick_size: Decimal) -> FillConfig:
        """Return the matching config of an instrument with ``tick_size``."""
        return FillConfig(slippage_bps=self.slippage_bps,
                          participation_pct=self.participation_pct, tick_size=tick_size)
