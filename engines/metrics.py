"""Scores for probability forecasts of a binary outcome: Brier, ECE, AUC, reliability.

Pure functions (no I/O) over arrays of forecasts ``p`` in [0, 1] and outcomes ``y`` in {0, 1}.
Bins are equal-width on [0, 1] (bin ``i`` holds ``i/bins <= p < (i+1)/bins``; ``p = 1`` goes to
the last bin). The AUC's confidence interval resamples whole blocks of consecutive dates, because
the labels of one day (and of nearby days: their barrier windows overlap) move together.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TypeAlias

import numpy as np
import pandas as pd
from scipy.stats import rankdata

ArrayLike: TypeAlias = np.ndarray | pd.Series | Sequence[float]


def _pair(p: ArrayLike, y: ArrayLike) -> tuple[np.ndarray, np.ndarray]:
    probs = np.asarray(p, dtype=np.float64)
    outcomes = np.asarray(y, dtype=np.float64)
    if probs.shape != outcomes.shape or probs.ndim != 1:
        raise ValueError(
            f"forecasts and outcomes must be 1-D of one length; got {probs.shape} and "
            f"{outcomes.shape}"
        )
    return probs, outcomes


def brier(p: ArrayLike, y: ArrayLike) -> float:
    """Return the Brier score: the mean squared gap of forecast and outcome (lower is better)."""
    probs, outcomes = _pair(p, y)
    if len(probs) == 0:
        return float("nan")
    return float(np.mean((probs - outcomes) ** 2))


def _bin_of(probs: np.ndarray, bins: int) -> np.ndarray:
    if bins < 1:
        raise ValueError(f"bins must be at least 1; got {bins}")
    return np.minimum((probs * bins).astype(np.int64), bins - 1).clip(0)


def reliability(p: ArrayLike, y: ArrayLike, bins: int = 10) -> list[dict[str, float]]:
    """Return the reliability table: per non-empty equal-width bin, mean forecast and hit rate.

    Returns
    -------
    list of dict
        One ``{"p_mean", "hit_rate", "n"}`` per bin that holds forecasts, lowest bin first. A
        calibrated forecaster has ``hit_rate`` close to ``p_mean`` in every well-filled bin.
    """
    probs, outcomes = _pair(p, y)
    which = _bin_of(probs, bins)
    counts = np.bincount(which, minlength=bins)
    sum_p = np.bincount(which, weights=probs, minlength=bins)
    sum_y = np.bincount(which, weights=outcomes, minlength=bins)
    return [
        {"p_mean": float(sum_p[i] / counts[i]), "hit_rate": float(sum_y[i] / counts[i]),
         "n": int(counts[i])}
        for i in range(bins)
        if counts[i] > 0
    ]


def ece(p: ArrayLike, y: ArrayLike, bins: int = 10) -> float:
    """Return the expected calibration error over ``bins`` equal-width bins.

    ``sum over bins of (n_bin / n) * |mean forecast - hit rate|``; 0 for a perfectly calibrated
    forecaster, NaN for no forecasts.
    """
    probs, _ = _pair(p, y)
    if len(probs) == 0:
        return float("nan")
    table = reliability(p, y, bins)
    return float(sum(row["n"] * abs(row["p_mean"] - row["hit_rate"]) for row in table)
                 / len(probs))


def auc(p: ArrayLike, y: ArrayLike) -> float:
    """Return the ROC AUC: the chance a random hit gets a higher forecast than a random miss.

    Ties count half (Mann-Whitney U with average ranks). NaN when only one class is present.
    """
    probs, outcomes = _pair(p, y)
    positive = outcomes == 1.0
    n_pos = int(positive.sum())
    n_neg = len(outcomes) - n_pos
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    ranks = rankdata(probs)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def block_bootstrap_auc_ci(
    p: ArrayLike,
    y: ArrayLike,
    dates: ArrayLike | pd.DatetimeIndex,
    block_days: int = 20,
    n_boot: int = 400,
    quantiles: tuple[float, float] = (0.05, 0.95),
    seed: int = 0,
) -> tuple[float, float]:
    """Return a bootstrap interval for the AUC that resamples blocks of consecutive dates.

    Parameters
    ----------
    p, y
        Forecasts and outcomes.
    dates
        The date of each forecast (any sortable values). All forecasts of one date stay
        together, and so do ``block_days`` consecutive distinct dates (a moving-block bootstrap),
        since same-day and nearby-day labels are correlated.
    block_days
        Distinct dates per block (about one month of trading days by default).
    n_boot
        Bootstrap resamples.
    quantiles
        The interval's lower and upper quantiles (5%-95% by default).
    seed
        Seed of the resampling, so the interval is reproducible.

    Returns
    -------
    tuple of float
        ``(low, high)``; NaNs when no resample has both classes.
    """
    probs, outcomes = _pair(p, y)
    keys = np.asarray(dates)
    if len(keys) != len(probs):
        raise ValueError(f"need one date per forecast; got {len(keys)} for {len(probs)}")
    if block_days < 1 or n_boot < 1:
        raise ValueError(f"block_days and n_boot must be positive; got {block_days}, {n_boot}")
    order = np.argsort(keys, kind="stable")
    _, starts, counts = np.unique(keys[order], return_index=True, return_counts=True)
    n_dates = len(starts)
    if n_dates == 0:
        return float("nan"), float("nan")
    block = min(block_days, n_dates)
    n_blocks = -(-n_dates // block)
    rng = np.random.default_rng(seed)
    scores = []
    for _ in range(n_boot):
        first = rng.integers(0, n_dates - block + 1, size=n_blocks)
        picked = (first[:, None] + np.arange(block)[None, :]).ravel()
        lengths = counts[picked]
        # Row positions (in date order) of every picked date, concatenated.
        offsets = np.repeat(starts[picked] - np.cumsum(np.r_[0, lengths[:-1]]), lengths)
        rows = order[np.arange(lengths.sum()) + offsets]
        score = auc(probs[rows], outcomes[rows])
        if not np.isnan(score):
            scores.append(score)
    if not scores:
        return float("nan"), float("nan")
    low, high = np.quantile(scores, quantiles)
    return float(low), float(high)
