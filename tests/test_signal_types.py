"""The barrier geometry every signal engine shares refuses nonsense with the rule and values."""

from __future__ import annotations

import pytest

from core.errors import ValidationError
from engines.signal_types import BarrierSpec


def test_the_default_setup_is_two_atr_target_one_atr_stop_over_ten_bars() -> None:
    spec = BarrierSpec()
    assert (spec.k_target, spec.m_stop, spec.horizon_bars, spec.atr_period) == (2.0, 1.0, 10, 14)
    assert spec.risk_reward == 2.0


@pytest.mark.parametrize(("changes", "message"), [
    ({"atr_period": 1}, "ATR period must be at least 2; got 1"),
    ({"k_target": 0.0}, "must be positive; got k=0.0, m=1.0"),
    ({"m_stop": -1.0}, "must be positive; got k=2.0, m=-1.0"),
    ({"horizon_bars": 0}, "horizon must be at least 1 bar; got 0"),
    ({"target_multiples": (1.0, 2.0)}, r"three increasing numbers .* got \(1.0, 2.0\)"),
    ({"target_multiples": (1.5, 2.0, 3.0)}, "starting at 1.0"),
    ({"target_multiples": (1.0, 3.0, 2.0)}, "increasing"),
])
def test_a_bad_barrier_spec_is_refused_naming_the_rule_and_the_value(
    changes: dict[str, object], message: str,
) -> None:
    with pytest.raises(ValidationError, match=message):
        BarrierSpec(**changes)  # type: ignore[arg-type]
