"""The feed-loop benchmark keeps working at a tiny size: the figures it reports, the desk asked.

Timings are not asserted (they belong in bench/, not in unit tests); the desk's size is.
"""

from __future__ import annotations

import json
from pathlib import Path

from bench.worker import figures
from tests.support.pg import PostgresServer


def test_the_worker_benchmark_reports_every_figure_for_the_desk_it_was_asked_for(
    pg_server: PostgresServer, tmp_path: Path,
) -> None:
    pg_server.create_database("bench_worker")
    lines: list[str] = []
    result = figures(f"sqlite:///{tmp_path}/bench.db", pg_server.url("bench_worker"),
                     accounts=2, positions=20, cycles=5, progress=lines.append)
    assert (result["positions"], result["accounts"], result["symbols"]) == (20, 2, 50)
    assert result["cycles"] == 5 and result["resting_orders"] == 2 and result["gtts"] == 2
    for backend in ("postgres", "sqlite"):
        for key in ("cycle_p50_ms", "cycle_p95_ms", "feed_p50_ms", "orders_p50_ms",
                    "watch_p50_ms"):
            value = result[f"{key}_{backend}"]
            assert isinstance(value, float) and value > 0, (key, backend)
        assert result[f"statements_per_cycle_p50_{backend}"] > 0
    assert isinstance(result["replay_speed_max"], float) and result["replay_speed_max"] > 0
    assert json.loads(json.dumps(result)) == result  # one JSON object, as printed
    assert any("20 positions" in line for line in lines)
