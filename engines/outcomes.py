"""Outcome marking: how a journaled signal turned out, from the bars after its bar.

Pure function (no I/O). The rule is the triple-barrier rule of :mod:`engines.labels`, applied to
the signal's own rounded prices and extended to three targets:

- only the first ``horizon_bars`` later bars count; each is checked in order on its high and
  low (LONG: a target is reached when the high is at or above it, the stop when the low is at
  or below it; SHORT: the mirror image);
- when one bar reaches the stop and a target, the stop counts first (a daily bar does not say
  which came first, so the conservative reading is taken);
- the outcome is the furthest target reached *before* the stop (``TARGET1`` .. ``TARGET3``), or
  ``STOP`` when the stop came first, or ``EXPIRED`` when ``horizon_bars`` bars passed with
  neither, or ``OPEN`` while fewer bars exist and nothing was reached.

A hit is ``TARGET1``, ``TARGET2`` or ``TARGET3``; so "hit" means exactly what a signal's
probability is about (target 1 before the stop within the horizon). While the horizon runs, a
``TARGET1`` or ``TARGET2`` can still be upgraded by later bars (never downgraded): re-mark a
signal until ``horizon_bars`` later bars exist or the outcome is ``TARGET3``, ``STOP`` or
``EXPIRED``.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from enum import StrEnum

import numpy as np
import pandas as pd

from core.errors import ValidationError
from engines.signal_types import Direction
from engines.signals import to_tick


class Outcome(StrEnum):
    """How a signal turned out (see the module docstring)."""

    OPEN = "OPEN"
    TARGET1 = "TARGET1"
    TARGET2 = "TARGET2"
    TARGET3 = "TARGET3"
    STOP = "STOP"
    EXPIRED = "EXPIRED"


#: Outcomes that count as a hit (target 1 reached before the stop).
HITS = frozenset({Outcome.TARGET1, Outcome.TARGET2, Outcome.TARGET3})
#: Outcomes later bars cannot change.
FINAL = frozenset({Outcome.TARGET3, Outcome.STOP, Outcome.EXPIRED})
_TARGETS = (Outcome.TARGET1, Outcome.TARGET2, Outcome.TARGET3)


def _check(
    direction: Direction, prices: tuple[Decimal, ...], columns: pd.Index, horizon: int
) -> int:
    """Validate a signal's ``(stop, entry, *targets)`` and bars; return +1 LONG, -1 SHORT."""
    stop, entry, *targets = prices
    direction = Direction(direction)
    if direction is Direction.FLAT:
        raise ValidationError("only a LONG or SHORT signal has an outcome; got FLAT")
    if horizon < 1:
        raise ValidationError(f"the horizon must be at least 1 bar; got {horizon}")
    sign = 1 if direction is Direction.LONG else -1
    ordered = [sign * p for p in prices]
    if len(targets) != 3 or not (ordered[0] < ordered[1] < ordered[2] <= ordered[3] <= ordered[4]):
        where = "stop < entry < T1 <= T2 <= T3" if sign == 1 else "stop > entry > T1 >= T2 >= T3"
        raise ValidationError(
            f"a {direction.value} signal needs {where}; got stop {stop}, entry {entry}, "
            f"targets {[str(t) for t in targets]}"
        )
    missing = [c for c in ("high", "low", "close") if c not in columns]
    if missing:
        raise ValidationError(f"later bars lack columns {missing}; marking needs high, low, close")
    return sign


def mark(
    direction: Direction,
    entry: Decimal,
    stop: Decimal,
    targets: tuple[Decimal, Decimal, Decimal],
    later_bars: pd.DataFrame,
    horizon_bars: int,
) -> tuple[Outcome, datetime | None, Decimal | None]:
    """Return a signal's outcome, when it was decided, and at what price.

    Parameters
    ----------
    direction
        The signal's direction, LONG or SHORT.
    entry, stop, targets
        The signal's entry, stop-loss and three targets.
    later_bars
        Bars *after* the signal's bar, oldest first (tz-aware index; float ``high, low,
        close``); any number, only the first ``horizon_bars`` count.
    horizon_bars
        The signal's horizon in bars.

    Returns
    -------
    tuple
        ``(outcome, at, price)``: for a target, the start of the bar that first reached the
        furthest target and that target's price; for ``STOP`` the bar and the stop price (the
        barrier, not a fill: a gap can fill worse); for ``EXPIRED`` the last horizon bar and
        its close on the 0.05 tick; for ``OPEN`` ``(OPEN, None, None)``.
    """
    sign = _check(direction, (stop, entry, *targets), later_bars.columns, horizon_bars)
    window = later_bars.iloc[:horizon_bars]
    high = window["high"].to_numpy(dtype=np.float64)
    low = window["low"].to_numpy(dtype=np.float64)
    # Signed prices: multiplying by the sign turns a SHORT into a LONG (targets above, stop
    # below), so one comparison serves both. LONG uses the high for targets and the low for
    # the stop; SHORT the low for targets and the high for the stop.
    favour = sign * (high if sign == 1 else low)
    against = sign * (low if sign == 1 else high)
    stop_hits = np.flatnonzero(against <= sign * float(stop))
    first_stop = int(stop_hits[0]) if len(stop_hits) else len(window)
    before = favour[:first_stop]  # bars strictly before the stop's bar
    reached = [np.flatnonzero(before >= sign * float(t)) for t in targets]
    best = max((i for i, hits in enumerate(reached) if len(hits)), default=-1)
    index = window.index
    if best >= 0:
        return _TARGETS[best], _time(index, int(reached[best][0])), targets[best]
    if first_stop < len(window):
        return Outcome.STOP, _time(index, first_stop), stop
    if len(window) >= horizon_bars:
        close = float(window["close"].iloc[-1])
        return Outcome.EXPIRED, _time(index, len(window) - 1), to_tick(Decimal(repr(close)))
    return Outcome.OPEN, None, None


def _time(index: pd.Index, position: int) -> datetime:
    return pd.Timestamp(index[position]).to_pydatetime()
