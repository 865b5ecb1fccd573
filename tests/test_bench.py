"""The benchmark scripts keep working: each prints one JSON object on its last line.

Figures are not asserted here (timings belong in bench/, not in unit tests).
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def test_the_market_data_benchmark_prints_its_figures_as_json_on_the_last_line() -> None:
    done = subprocess.run([sys.executable, "bench/marketdata.py"], cwd=ROOT, capture_output=True,
                          text=True, timeout=300, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    for key in ("import_s_sqlite", "chart_daily_ms", "chart_5min_ms"):
        assert isinstance(figures[key], float) and figures[key] > 0
    assert figures["import_files"] == 45
    assert figures["chart_daily_rows"] > 1200 and figures["chart_5min_rows"] > 4000


def test_the_order_benchmark_prints_its_figures_as_json_on_the_last_line() -> None:
    done = subprocess.run([sys.executable, "bench/orders.py", "--orders", "40"], cwd=ROOT,
                          capture_output=True, text=True, timeout=600, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["orders"] == 40
    for key in ("p95_ms_sqlite", "p95_ms_postgres", "orders_per_s_postgres", "p50_ms_sqlite"):
        assert isinstance(figures[key], float) and figures[key] > 0


def test_the_order_benchmark_never_repeats_a_pair_within_the_duplicate_window() -> None:
    sys.path.insert(0, str(ROOT))
    from bench.orders import REUSE_AFTER_S, pair_quantity

    assert REUSE_AFTER_S > 10  # the risk gate's duplicate window
    used: dict[tuple[int, str, int], float] = {}
    for at, expected in ((100.0, 1), (101.0, 2), (102.0, 3), (111.5, 1), (111.6, 4)):
        quantity = pair_quantity(used, 7, "INFY", at)
        assert quantity == expected
        used[(7, "INFY", quantity)] = at
    assert pair_quantity(used, 8, "INFY", 111.6) == 1  # another account
    assert pair_quantity(used, 7, "TCS", 111.6) == 1  # another symbol


def test_the_signal_benchmark_prints_its_figures_as_json_on_the_last_line() -> None:
    done = subprocess.run([sys.executable, "bench/signals.py", "--symbols", "3", "--rounds", "10"],
                          cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n_symbols"] == 3 and figures["n_rounds"] == 10
    for key in ("train_s", "scan_s_warm", "scan_s_cold", "ms_per_symbol_warm"):
        assert isinstance(figures[key], float) and figures[key] > 0
    assert figures["n_bars"] > 3 * 1000


def test_the_risk_benchmark_prints_its_figures_as_json_on_the_last_line() -> None:
    done = subprocess.run([sys.executable, "bench/risk.py", "--decisions", "200", "--updates",
                           "5"], cwd=ROOT, capture_output=True, text=True, timeout=300, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["pretrade_decisions"] == 600 and figures["posttrade_updates"] == 5
    assert figures["posttrade_positions"] == 1000 and figures["posttrade_accounts"] == 20
    for key in ("pretrade_engine_p50_ms", "pretrade_engine_p95_ms", "posttrade_1000_ms",
                "posttrade_1000_p95_ms"):
        assert isinstance(figures[key], float) and figures[key] > 0


def test_the_unseen_stock_benchmark_cuts_disjoint_groups_and_matches_the_evaluate_cli(
        tmp_path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from bench.unseen import groups

    sample = ROOT / "data" / "sample" / "nse_daily"
    symbols = sorted(p.stem for p in sample.glob("*.csv"))[:6]
    cut = groups(symbols, 7, 3)
    assert len(cut) == 2 and sorted(cut[0] + cut[1]) == symbols  # disjoint, all covered
    assert groups(symbols, 7, 3) == cut and groups(symbols, 8, 3) != cut  # the seed decides
    assert len(groups(symbols, 7, 4)) == 1  # a remainder is left out
    universe = tmp_path / "universe"
    universe.mkdir()
    for symbol in symbols:
        (universe / f"{symbol}.csv").write_bytes((sample / f"{symbol}.csv").read_bytes())
    done = subprocess.run(
        [sys.executable, "bench/unseen.py", "--data", str(universe), "--seeds", "7",
         "--group-size", "3", "--rounds", "5", "--n-boot", "20", "--from", "2025-06-02"],
        cwd=ROOT, capture_output=True, text=True, timeout=600, check=True)
    figures = json.loads(done.stdout.strip().splitlines()[-1])
    assert figures["n_runs"] == 2 and len(figures["runs"]) == 2
    for key in ("auc", "auc_ci_low", "lift", "ece", "brier_skill"):
        assert isinstance(figures[key], float)
    for key in ("pass_auc", "pass_lift", "pass_ece", "pass_brier", "pass_all"):
        assert 0 <= figures[key] <= 2
    # the first group, evaluated by the CLI on a folder of its files, gives the same figures
    first = figures["runs"][0]
    folder = tmp_path / "group"
    folder.mkdir()
    for symbol in first["symbols"]:
        (folder / f"{symbol}.csv").write_bytes((sample / f"{symbol}.csv").read_bytes())
    subprocess.run(
        [sys.executable, "-m", "engines.evaluate", "--data", str(folder), "--train-data",
         str(universe), "--from", "2025-06-02", "--out", str(tmp_path / "r.json"), "--rounds",
         "5", "--n-boot", "20"], cwd=ROOT, capture_output=True, text=True, timeout=600,
        check=True)
    report = json.loads((tmp_path / "r.json").read_text())
    same = pytest.approx  # the same sums, in another order: equal to the last bits or so
    assert (report["auc"], report["auc_ci_low"], report["ece"], report["brier_skill"]) == same(
        (first["auc"], first["auc_ci_low"], first["ece"], first["brier_skill"]), rel=1e-9)
    assert report["top_decile_hit_rate"] - report["base_rate"] == same(first["lift"], rel=1e-9)
