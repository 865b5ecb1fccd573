"""Market-data benchmark: sample import into an empty SQLite database, and warm chart calls.

Run: ``.venv/bin/python bench/marketdata.py`` (or ``make bench``). Prints progress lines, then one
JSON object on its last line: ``import_s_sqlite`` (all of data/sample, daily + 5-minute, into a
fresh SQLite file, cold process: calendar load included), ``chart_daily_ms`` (5 years of daily
bars with every overlay, warm median) and ``chart_5min_ms`` (the whole 63-session 5-minute
sample, more than 60 days, with every overlay, warm median), plus p95s and cold figures.
Goals (issue 3): import ≤ 5 s; chart calls ≤ 150 ms warm.
"""

from __future__ import annotations

import json
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import Settings
from core.domain import ClientInfo
from core.seed import seed_demo
from core.services import Services
from core.services.charts import OVERLAY_COLUMNS, clear_bar_cache
from db.engine import Database
from db.migrate import upgrade

REPEATS = 30
ALL_OVERLAYS = frozenset(OVERLAY_COLUMNS)


def _timings_ms(call: Callable[[], object], repeats: int = REPEATS) -> list[float]:
    samples = []
    for _ in range(repeats):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return samples


def _p95(samples: list[float]) -> float:
    return sorted(samples)[max(0, int(len(samples) * 0.95) - 1)]


def main() -> dict[str, object]:
    """Run the benchmark and return its figures."""
    with tempfile.TemporaryDirectory() as tmp:
        url = f"sqlite:///{tmp}/bench.db"
        upgrade(url)
        settings = Settings(database_url=url, secret_key="bench-" + "k" * 40, bcrypt_rounds=4)
        services = Services(Database(url), settings)

        started = time.perf_counter()
        reports = services.marketdata.load_sample()
        import_s = time.perf_counter() - started
        bars = sum(r.rows_kept for r in reports)
        print(f"imported {len(reports)} files, {bars} bars in {import_s:.2f} s")

        logins = {login.username: login for login in seed_demo(services)}
        result = services.auth.login("priya", logins["priya"].password, ClientInfo(channel="bench"))
        actor = services.auth.check_session(result.session_id or "")

        def daily() -> object:
            return services.charts.chart(
                actor, "RELIANCE", "1d", date(2020, 10, 1), date(2025, 9, 30), ALL_OVERLAYS
            )

        def five_min() -> object:
            return services.charts.chart(
                actor, "RELIANCE", "5m", date(2021, 3, 17), date(2021, 6, 18), ALL_OVERLAYS
            )

        figures: dict[str, object] = {}
        for name, call in (("daily", daily), ("5min", five_min)):
            clear_bar_cache()
            cold = _timings_ms(call, repeats=1)[0]
            warm = _timings_ms(call)
            figures[f"chart_{name}_ms"] = round(statistics.median(warm), 2)
            figures[f"chart_{name}_p95_ms"] = round(_p95(warm), 2)
            figures[f"chart_{name}_cold_ms"] = round(cold, 2)
            rows = len(call().frame)  # type: ignore[attr-defined]
            figures[f"chart_{name}_rows"] = rows
            print(f"chart {name}: {rows} rows, warm median {statistics.median(warm):.1f} ms")
        services.db.dispose()
    return {
        "import_s_sqlite": round(import_s, 3),
        "import_bars": bars,
        "import_files": len(reports),
        **figures,
        "repeats": REPEATS,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
    }


if __name__ == "__main__":
    print(json.dumps(main()))
