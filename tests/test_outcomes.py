"""Outcome marking on crafted price paths, long and mirrored short, and against the labels."""

from __future__ import annotations

from decimal import Decimal

import numpy as np
import pandas as pd
import pytest

from core.errors import ValidationError
from engines.bars import IST
from engines.features import atr as average_true_range
from engines.labels import triple_barrier
from engines.outcomes import FINAL, HITS, Outcome, mark
from engines.signal_types import BarrierSpec, Direction
from tests.test_strategies import sample_bars

H = 5
ENTRY, STOP = Decimal("100"), Decimal("98")
TARGETS = (Decimal("104"), Decimal("106"), Decimal("108"))
CALM = (101.0, 99.0, 100.0)  # (high, low, close): touches nothing

# Long paths as (high, low, close) bars after the signal's bar; the expected outcome and the
# (0-based) bar that decided it. Each runs again mirrored as a SHORT around the entry.
PATHS = [
    ("target 1", [CALM, (104.5, 100, 104)], Outcome.TARGET1, 1),
    ("target 1 touched exactly", [(104, 100, 103)], Outcome.TARGET1, 0),
    ("target 3", [CALM, (105, 101, 104), (107, 103, 106), (108.2, 105, 108)], Outcome.TARGET3, 3),
    ("targets 1 and 2 in one bar", [(106.5, 100, 106), CALM], Outcome.TARGET2, 0),
    ("target 2 then the stop", [(106, 101, 105), (105, 97, 97.5)], Outcome.TARGET2, 0),
    ("stop first", [(100.5, 97.9, 98.5), (110, 99, 109)], Outcome.STOP, 0),
    ("stop touched exactly", [CALM, (100, 98, 99)], Outcome.STOP, 1),
    ("stop and target in one bar", [(104.5, 97.5, 101)], Outcome.STOP, 0),
    ("target 1, then stop and target 3 in one bar", [(104, 100, 103), (109, 97, 99)],
     Outcome.TARGET1, 0),
    ("expired", [CALM] * H, Outcome.EXPIRED, H - 1),
    ("a target after the horizon", [*[CALM] * H, (110, 100, 109)], Outcome.EXPIRED, H - 1),
    ("open", [CALM, CALM], Outcome.OPEN, None),
    ("no bars yet", [], Outcome.OPEN, None),
    ("target 1 while the horizon runs", [(104.2, 100, 104)], Outcome.TARGET1, 0),
]


def _bars(rows: list[tuple[float, float, float]]) -> pd.DataFrame:
    index = pd.date_range("2025-01-01", periods=len(rows), freq="B", tz=IST, name="ts")
    frame = pd.DataFrame(rows, columns=["high", "low", "close"], index=index, dtype=float)
    frame.insert(0, "open", frame["close"])
    frame["volume"] = 1e6
    return frame


def _mirror(rows: list[tuple[float, float, float]]) -> list[tuple[float, float, float]]:
    """Reflect prices around the entry (p -> 200 - p): a long path becomes a short one."""
    return [(200 - low, 200 - high, 200 - close) for high, low, close in rows]


def _flip(price: Decimal) -> Decimal:
    return 2 * ENTRY - price


@pytest.mark.parametrize("direction", [Direction.LONG, Direction.SHORT])
@pytest.mark.parametrize(("rows", "expected", "at"), [p[1:] for p in PATHS],
                         ids=[p[0] for p in PATHS])
def test_a_price_path_is_marked_by_the_furthest_target_before_the_stop(
    direction: Direction,
    rows: list[tuple[float, float, float]],
    expected: Outcome,
    at: int | None,
) -> None:
    stop, targets = STOP, TARGETS
    if direction is Direction.SHORT:
        rows, stop = _mirror(rows), _flip(STOP)
        targets = (_flip(TARGETS[0]), _flip(TARGETS[1]), _flip(TARGETS[2]))
    bars = _bars(rows)
    outcome, when, price = mark(direction, ENTRY, stop, targets, bars, H)
    assert outcome is expected
    if at is None:
        assert (when, price) == (None, None)
        return
    assert when == bars.index[at].to_pydatetime() and when.tzinfo is not None
    if outcome in HITS:
        assert price == targets[int(outcome.value[-1]) - 1]
    elif outcome is Outcome.STOP:
        assert price == stop
    else:
        assert price == Decimal(repr(rows[at][2]))


def test_hits_are_the_three_targets_and_final_outcomes_cannot_change() -> None:
    assert {Outcome.TARGET1, Outcome.TARGET2, Outcome.TARGET3} == HITS
    assert {Outcome.TARGET3, Outcome.STOP, Outcome.EXPIRED} == FINAL


def test_an_early_target_is_upgraded_never_downgraded_as_bars_arrive() -> None:
    rows = [(104.5, 100, 104), CALM, (106.5, 102, 106), (105, 97, 97.5), (109, 100, 108)]
    seen = [mark(Direction.LONG, ENTRY, STOP, TARGETS, _bars(rows[:n]), H)[0] for n in range(6)]
    assert seen == [Outcome.OPEN, Outcome.TARGET1, Outcome.TARGET1, Outcome.TARGET2,
                    Outcome.TARGET2, Outcome.TARGET2]


def test_a_hit_agrees_with_the_triple_barrier_label_on_a_sample_file() -> None:
    bars = sample_bars("HDFCBANK")
    spec = BarrierSpec()
    width = average_true_range(bars, spec.atr_period).to_numpy()
    close = bars["close"].to_numpy()
    for direction, sign in ((Direction.LONG, 1), (Direction.SHORT, -1)):
        labels = triple_barrier(bars, spec, direction).to_numpy()
        checked = 0
        for t in range(spec.atr_period, len(bars) - spec.horizon_bars, 3):
            # Decimal(float) is exact, so mark compares the very barriers the labels use.
            stop = Decimal(close[t] - sign * spec.m_stop * width[t])
            t1, t2, t3 = (
                Decimal(close[t] + sign * spec.k_target * width[t] * m)
                for m in spec.target_multiples
            )
            outcome, _, _ = mark(direction, Decimal(close[t]), stop, (t1, t2, t3),
                                 bars.iloc[t + 1 :], spec.horizon_bars)
            assert (outcome in HITS) == (labels[t] == 1.0), f"{direction} bar {t}"
            assert outcome is not Outcome.OPEN
            checked += 1
        assert checked > 300 and np.nanmean(labels) > 0.1


@pytest.mark.parametrize(
    ("direction", "stop", "targets", "horizon", "words"),
    [
        (Direction.FLAT, STOP, TARGETS, H, "only a LONG or SHORT signal"),
        (Direction.LONG, STOP, TARGETS, 0, "at least 1 bar; got 0"),
        (Direction.LONG, Decimal("101"), TARGETS, H, "stop < entry < T1 <= T2 <= T3"),
        (Direction.SHORT, STOP, TARGETS, H, "stop > entry > T1 >= T2 >= T3"),
    ],
)
def test_inconsistent_signals_are_refused_with_the_values(
    direction: Direction,
    stop: Decimal,
    targets: tuple[Decimal, Decimal, Decimal],
    horizon: int,
    words: str,
) -> None:
    with pytest.raises(ValidationError, match=words.replace("<", ".").replace(">", ".")):
        mark(direction, ENTRY, stop, targets, _bars([CALM]), horizon)
