"""Triple-barrier labels: did price reach target 1 before the stop within the horizon?

Pure functions (no I/O). For bar ``t`` the entry is ``close[t]`` and the barriers come from the
ATR on bar ``t`` (:func:`engines.features.atr`, period ``spec.atr_period``):

- LONG: target ``entry + k·ATR`` (reached when a later bar's high is at or above it), stop
  ``entry - m·ATR`` (reached when a later bar's low is at or below it);
- SHORT: the mirror image (target below on the low, stop above on the high).

Bars ``t+1 .. t+H`` (``H = spec.horizon_bars``) are checked in order. The label is 1.0 when the
target is reached first, 0.0 when the stop is reached first or neither is reached within ``H``
bars. When one bar reaches both, the stop counts first (a daily bar does not say which came
first, so the conservative reading is taken). The label is NaN when fewer than ``H`` later bars
exist or the ATR is not yet defined; such a label is *unresolved*: it becomes known only at the
close of bar ``t+H`` (:func:`resolved_at`).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from engines.features import atr
from engines.signal_types import BarrierSpec, Direction


def _first_true(hits: np.ndarray) -> np.ndarray:
    """Return the index of the first True in each row, or the row length when there is none."""
    width = hits.shape[1]
    return np.where(hits.any(axis=1), hits.argmax(axis=1), width)


def triple_barrier(bars: pd.DataFrame, spec: BarrierSpec, direction: Direction) -> pd.Series:
    """Return the triple-barrier label of every bar for a LONG or SHORT setup.

    Parameters
    ----------
    bars
        Daily bars of one symbol (tz-aware DatetimeIndex oldest first; float ``high, low,
        close``).
    spec
        Barrier geometry: ATR period, target ``k``, stop ``m``, horizon ``H`` bars.
    direction
        ``Direction.LONG`` or ``Direction.SHORT``.

    Returns
    -------
    pandas.Series
        1.0 (target first), 0.0 (stop first, or neither within ``H`` bars), NaN (unresolved:
        fewer than ``H`` later bars, or no ATR yet). Indexed like ``bars``.
    """
    if direction not in (Direction.LONG, Direction.SHORT):
        raise ValueError(f"labels exist for LONG or SHORT setups; got {direction}")
    n, horizon = len(bars), spec.horizon_bars
    out = np.full(n, np.nan)
    if n > horizon:
        close = bars["close"].to_numpy(dtype=np.float64)
        high = bars["high"].to_numpy(dtype=np.float64)
        low = bars["low"].to_numpy(dtype=np.float64)
        rng = atr(bars, spec.atr_period).to_numpy()
        entries = n - horizon  # bars with H later bars
        entry, width = close[:entries], rng[:entries]
        # Row t of the window views holds bars t+1 .. t+H.
        later_high = sliding_window_view(high[1:], horizon)[:entries]
        later_low = sliding_window_view(low[1:], horizon)[:entries]
        if direction is Direction.LONG:
            target_hit = later_high >= (entry + spec.k_target * width)[:, None]
            stop_hit = later_low <= (entry - spec.m_stop * width)[:, None]
        else:
            target_hit = later_low <= (entry - spec.k_target * width)[:, None]
            stop_hit = later_high >= (entry + spec.m_stop * width)[:, None]
        first_target, first_stop = _first_true(target_hit), _first_true(stop_hit)
        # Ties (both in one bar) go to the stop: target must come strictly first.
        labels = (first_target < first_stop).astype(np.float64)
        labels[~np.isfinite(width)] = np.nan
        out[:entries] = labels
    return pd.Series(out, index=bars.index, name=f"label_{direction.value.lower()}")


def resolved_at(index: pd.DatetimeIndex, spec: BarrierSpec) -> pd.Series:
    """Return, for each bar ``t``, the start of bar ``t+H`` when its label becomes known.

    NaT for the last ``H`` bars (their labels are unresolved). A label with
    ``resolved_at < as_of`` is safe to train on at ``as_of``: its whole window ``[t, t+H]`` lies
    before ``as_of``.
    """
    horizon = spec.horizon_bars
    values = pd.Series(pd.NaT, index=index, dtype=index.dtype)
    if len(index) > horizon:
        values.iloc[: len(index) - horizon] = index[horizon:]
    return values
