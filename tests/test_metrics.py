"""Forecast scores on tiny examples checked by hand, and the date-block bootstrap."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engines.metrics import auc, block_bootstrap_auc_ci, brier, ece, reliability

P = [0.1, 0.4, 0.35, 0.8]
Y = [0, 0, 1, 1]


def test_brier_is_the_mean_squared_gap() -> None:
    # (0.01 + 0.16 + 0.4225 + 0.04) / 4
    assert brier(P, Y) == pytest.approx(0.158125)


def test_auc_counts_pairs_ranked_right_and_ties_as_half() -> None:
    # Positive-negative pairs: (0.35, 0.1) right, (0.35, 0.4) wrong, (0.8, *) right: 3 of 4.
    assert auc(P, Y) == pytest.approx(0.75)
    assert auc([0.5, 0.5, 0.5], [0, 1, 1]) == pytest.approx(0.5)
    assert auc([0.2, 0.9], [0, 1]) == 1.0


def test_auc_of_a_single_class_is_undefined() -> None:
    assert math.isnan(auc([0.2, 0.3], [1, 1]))


def test_reliability_and_ece_by_hand() -> None:
    p = [0.05, 0.15, 0.12, 0.95, 1.0]
    y = [0, 1, 0, 1, 1]
    table = reliability(p, y, bins=10)
    assert table == [
        {"p_mean": pytest.approx(0.05), "hit_rate": 0.0, "n": 1},
        {"p_mean": pytest.approx(0.135), "hit_rate": 0.5, "n": 2},
        {"p_mean": pytest.approx(0.975), "hit_rate": 1.0, "n": 2},  # p = 1 joins the last bin
    ]
    # (1 * 0.05 + 2 * 0.365 + 2 * 0.025) / 5
    assert ece(p, y) == pytest.approx(0.166)


def test_ece_of_a_forecaster_that_is_right_on_average_in_each_bin_is_zero() -> None:
    assert ece([0.25, 0.25, 0.25, 0.25, 0.75, 0.75, 0.75, 0.75],
               [1, 0, 0, 0, 1, 1, 1, 0]) == pytest.approx(0.0)


def test_mismatched_lengths_are_refused() -> None:
    with pytest.raises(ValueError, match="one length"):
        brier([0.1, 0.2], [1])


def test_block_bootstrap_interval_brackets_the_auc_and_is_reproducible() -> None:
    rng = np.random.default_rng(1)
    days = np.repeat(np.arange(250), 12)
    y = rng.integers(0, 2, len(days))
    p = np.clip(0.3 + 0.1 * y + rng.normal(0, 0.2, len(days)), 0, 1)
    low, high = block_bootstrap_auc_ci(p, y, days, n_boot=200)
    assert low < auc(p, y) < high
    assert 0.01 < high - low < 0.15
    assert (low, high) == block_bootstrap_auc_ci(p, y, days, n_boot=200)


def test_block_bootstrap_is_wider_when_same_day_labels_move_together() -> None:
    rng = np.random.default_rng(2)
    days = np.repeat(np.arange(200), 20)
    day_effect = rng.normal(0, 1.0, 200)[days]  # every row of a day shares the shock
    y = (day_effect + rng.normal(0, 1.0, len(days)) > 0.5).astype(int)
    p = 1 / (1 + np.exp(-(1.0 * day_effect + rng.normal(0, 1.0, len(days)))))
    low_rows, high_rows = block_bootstrap_auc_ci(p, y, np.arange(len(days)), block_days=1,
                                                 n_boot=200)
    low_days, high_days = block_bootstrap_auc_ci(p, y, days, n_boot=200)
    assert high_days - low_days > 1.5 * (high_rows - low_rows)
