"""The Telegram delivery benchmark keeps working at a tiny size and reports every figure.

Timings are not asserted beyond the limits the dispatcher promises (one message a second per
chat, thirty overall) and the bench's own bookkeeping (nothing lost or doubled).
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.telegram import figures, max_in_one_second


def test_the_telegram_benchmark_delivers_every_alert_within_the_limits_and_reports_it(
        tmp_path: Path) -> None:
    lines: list[str] = []
    result = figures(f"sqlite:///{tmp_path}/bench.db", alerts_count=12, chats=3, urgent=3,
                     progress=lines.append)
    assert (result["alerts"], result["chats"], result["urgent"]) == (12, 3, 3)
    assert (result["lost"], result["doubled"], result["not_sent"]) == (0, 0, 0)
    assert result["max_per_chat_per_s"] == 1 and result["min_gap_per_chat_s"] >= 1.0
    assert 1 <= result["max_overall_per_s"] <= 30
    assert result["duration_s"] >= result["ideal_s"] == 3
    for key in ("urgent_p50_s", "urgent_p95_s", "urgent_max_s", "messages_per_s"):
        assert isinstance(result[key], float) and result[key] > 0, key
    assert result["backend"] == "sqlite"
    assert json.loads(json.dumps(result)) == result  # one JSON object, as printed
    assert any("12 alerts enqueued for 3 chats" in line for line in lines)


def test_the_busiest_second_counts_a_window_of_one_second_exactly() -> None:
    assert max_in_one_second([]) == 0
    assert max_in_one_second([0.0, 0.5, 0.99, 1.0, 1.5]) == 3
    assert max_in_one_second([0.0, 1.0, 2.0]) == 1
