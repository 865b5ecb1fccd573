"""Signal benchmark: training on all sample daily data, and a warm scan of every sample symbol.

Run: ``.venv/bin/python bench/signals.py [--symbols N] [--rounds R]`` (or ``make bench``). It
reads ``data/sample/nse_daily`` directly (no database), then:

- ``train_s``: :func:`engines.model.train` on every symbol's daily bars as of the day after the
  last bar (purged labels, trees plus the calibrator chosen and scored on the held-out recent
  window), with the production :class:`~engines.model.ModelConfig` (2 threads) unless
  ``--rounds`` shrinks it;
- ``scan_s_cold`` / ``scan_s_warm``: the universe's same-day model score
  (:func:`core.services.signals.universe_centers`), then
  :func:`core.services.signals.compute_signal` for every symbol (features, ensemble, regime,
  model inference with contributions, levels, the Signal object), as the desk's scan does —
  the first pass, then the best of three warm passes with the model already loaded.

- with ``--walk-forward-from DATE``: ``walk_forward_s``, the pooled walk-forward of
  ``engines.evaluate`` over the same data from DATE (every scheduled monthly model and weekly
  calibrator re-fit, out of time but not out of symbol) with its AUC, ECE and Brier skill.

The last line is one JSON object: ``train_s``, ``scan_s_warm``, ``scan_s_cold``, ``n_symbols``,
``n_bars``, ``ms_per_symbol_warm`` and the model's held-out figures. Goals (issue 5): scan warm
≤ 1 s, walk-forward training on all sample data ≤ 2 minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from dataclasses import replace
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.services.signal_registry import training_time
from core.services.signals import compute_signal, universe_centers
from engines.evaluate import read_bars_dir, walk_forward
from engines.model import ModelConfig, load_artifact, train

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "nse_daily"


def main() -> int:
    """Measure and print the figures; return the exit code."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--symbols", type=int, default=0, help="first N symbols only (0 = all)")
    args.add_argument("--rounds", type=int, default=0, help="boosting rounds (0 = production)")
    args.add_argument("--walk-forward-from", metavar="DATE", default=None,
                      help="also time the pooled walk-forward (engines.evaluate) from DATE")
    opts = args.parse_args()
    bars = read_bars_dir(SAMPLE)
    if opts.symbols:
        bars = dict(sorted(bars.items())[: opts.symbols])
    cfg = ModelConfig() if not opts.rounds else replace(ModelConfig(), n_rounds=opts.rounds)

    began = time.perf_counter()
    artifact = train(bars, training_time(bars), cfg=cfg, version="bench")
    train_s = time.perf_counter() - began
    artifact = load_artifact(artifact.to_bytes())  # scan with a model loaded as the app does

    def scan() -> float:
        start = time.perf_counter()
        centers = universe_centers(artifact, bars, list(bars.values()))  # as the desk's scan
        signals = [compute_signal(symbol, frame, artifact, center=centers[frame.index[-1]])
                   for symbol, frame in bars.items()]
        assert len(signals) == len(bars)
        return time.perf_counter() - start

    cold = scan()
    warm = min(scan() for _ in range(3))
    figures = {
        "train_s": round(train_s, 2),
        "scan_s_cold": round(cold, 3),
        "scan_s_warm": round(warm, 3),
        "ms_per_symbol_warm": round(1000 * warm / len(bars), 2),
        "n_symbols": len(bars),
        "n_bars": sum(len(frame) for frame in bars.values()),
        "n_rounds": cfg.n_rounds,
        "nthread": cfg.nthread,
        "heldout_auc_long": artifact.metrics.get("auc"),
        "heldout_ece_long": artifact.metrics.get("ece"),
        "base_rate_long": artifact.base_rate_long,
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }
    if opts.walk_forward_from:
        began = time.perf_counter()
        report = walk_forward(bars, date.fromisoformat(opts.walk_forward_from), cfg=cfg,
                              n_boot=100)
        figures.update({
            "walk_forward_s": round(time.perf_counter() - began, 1),
            "walk_forward_fits": report["meta"]["n_model_fits"],
            "walk_forward_from": report["meta"]["from"], "walk_forward_to": report["meta"]["to"],
            "walk_forward_auc": report["auc"], "walk_forward_ece": report["ece"],
            "walk_forward_brier_skill": report["brier_skill"],
            "walk_forward_base_rate": report["base_rate"],
        })
    print(f"train {train_s:.1f} s on {len(bars)} symbols; scan warm {warm:.3f} s "
          f"(cold {cold:.3f} s)")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
