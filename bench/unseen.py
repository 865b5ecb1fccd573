"""Unseen-stock evaluation of the signal model: issue 5's goals, measured on held-out sample stocks.

Run: ``.venv/bin/python bench/unseen.py [--seeds 7 8 9] [--group-size 10]``. The outside check
of issue 5 runs ``python -m engines.evaluate --data DIR --from 2024-04-15`` on stocks the model
never trained on. This script measures the same thing on our own data, reproducibly: the symbols
of ``data/sample/nse_daily``, sorted by name, are permuted with
``numpy.random.default_rng(seed).permutation`` and cut into groups of ``--group-size``; each group
is evaluated exactly as the CLI evaluates a ``--data`` folder holding its files
(:func:`engines.evaluate.evaluate`, trained on the other sample stocks, monthly trees and weekly
calibrator, purged, from ``--from``). A group's figures equal the CLI's on a folder of the same
files.

Per run it prints one line; the last line is one JSON object: ``n_runs``, the means of ``auc``,
``auc_ci_low``, ``lift`` (``top_decile_hit_rate - base_rate``), ``ece``, ``brier_skill``; for each
goal of issue 5 how many runs meet it (``pass_auc``: auc ≥ 0.53 and auc_ci_low > 0.50;
``pass_lift``: lift ≥ 0.03; ``pass_ece``: ece ≤ 0.05; ``pass_brier``: brier_skill ≥ −0.005)
and ``pass_all``; ``seconds``; and ``runs``, every run's figures. The groups are small samples
of ten stocks over about 17 months: a run's AUC interval is about ±0.03 wide, so read the
means and the pass counts, not one run.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Mapping, Sequence
from datetime import date
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engines.evaluate import evaluate, read_bars_dir
from engines.model import ModelConfig

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "nse_daily"
#: Issue 5's goals on unseen stocks: figure -> test.
GOALS = {
    "pass_auc": lambda run: run["auc"] >= 0.53 and run["auc_ci_low"] > 0.50,
    "pass_lift": lambda run: run["lift"] >= 0.03,
    "pass_ece": lambda run: run["ece"] <= 0.05,
    "pass_brier": lambda run: run["brier_skill"] >= -0.005,
}
MEANS = ("auc", "auc_ci_low", "lift", "ece", "brier_skill")


def groups(symbols: Sequence[str], seed: int, size: int) -> list[list[str]]:
    """Return the seed's disjoint groups of ``size`` symbols (a remainder is left out)."""
    order = [str(s) for s in np.random.default_rng(seed).permutation(sorted(symbols))]
    return [order[at:at + size] for at in range(0, len(order) - size + 1, size)]


def run_group(bars: Mapping[str, pd.DataFrame], tested: Sequence[str], start: date,
              cfg: ModelConfig, n_boot: int) -> dict[str, Any]:
    """Evaluate ``tested`` as unseen stocks, trained on every other symbol of ``bars``."""
    test = {s: bars[s] for s in tested}
    train = {s: frame for s, frame in bars.items() if s not in test}
    report = evaluate(test, train, start, cfg=cfg, n_boot=n_boot)
    run = {"symbols": sorted(tested), "n": report["n_predictions"],
           "base_rate": report["base_rate"], "auc": report["auc"],
           "auc_ci_low": report["auc_ci_low"], "auc_ci_high": report["auc_ci_high"],
           "lift": report["top_decile_hit_rate"] - report["base_rate"], "ece": report["ece"],
           "brier_skill": report["brier_skill"], "seconds": report["meta"]["seconds"]}
    run.update({goal: test_(run) for goal, test_ in GOALS.items()})
    run["pass_all"] = all(run[goal] for goal in GOALS)
    return run


def summary(runs: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """Return the means and pass counts of ``runs``."""
    figures: dict[str, Any] = {"n_runs": len(runs)}
    for key in MEANS:
        figures[key] = round(statistics.mean(run[key] for run in runs), 4)
    for goal in (*GOALS, "pass_all"):
        figures[goal] = sum(bool(run[goal]) for run in runs)
    return figures


def main(argv: Sequence[str] | None = None) -> int:
    """Evaluate every group of every seed; print one line per run and the JSON figures."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=SAMPLE, help="folder of daily CSV files")
    parser.add_argument("--seeds", type=int, nargs="+", default=[7, 8, 9])
    parser.add_argument("--group-size", type=int, default=10)
    parser.add_argument("--from", dest="start", type=date.fromisoformat,
                        default=date(2024, 4, 15))
    parser.add_argument("--n-boot", type=int, default=400, help="bootstrap resamples (AUC CI)")
    parser.add_argument("--rounds", type=int, default=None, help="boosting rounds (tests only)")
    opts = parser.parse_args(argv)
    cfg = ModelConfig() if opts.rounds is None else ModelConfig(n_rounds=opts.rounds)
    bars = read_bars_dir(opts.data)
    began = time.perf_counter()
    runs = []
    for seed in opts.seeds:
        for number, tested in enumerate(groups(list(bars), seed, opts.group_size)):
            run = {"seed": seed, "group": number,
                   **run_group(bars, tested, opts.start, cfg, opts.n_boot)}
            runs.append(run)
            print(f"seed {seed} group {number}: auc={run['auc']:.3f} "
                  f"[{run['auc_ci_low']:.3f}, {run['auc_ci_high']:.3f}] "
                  f"lift={run['lift']:+.3f} ece={run['ece']:.3f} "
                  f"brier_skill={run['brier_skill']:+.4f} all goals: {run['pass_all']} "
                  f"({run['seconds']} s)", flush=True)
    figures = {**summary(runs), "from": opts.start.isoformat(), "seeds": opts.seeds,
               "group_size": opts.group_size, "seconds": round(time.perf_counter() - began, 1),
               "runs": runs}
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
