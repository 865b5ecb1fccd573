"""Honest evaluation of the signal model: production simulated on unseen stocks, out of time.

``python -m engines.evaluate --data DIR --from DATE --out report.json`` replays production:

- the training universe is ``--train-data`` (default ``data/sample/nse_daily``) *minus* every
  symbol present in ``DIR``, so DIR's stocks are never trained on;
- from ``DATE`` to the end of DIR's data, at each scheduled re-fit (trees monthly, calibrator
  weekly: :class:`engines.model.ModelConfig`, the worker's schedule) the model is trained or
  re-calibrated on training-universe labels resolved before that time (purge gap = horizon);
- every DIR symbol-day until the next re-fit is predicted from DIR's bars up to that day
  (features never look ahead, so one pass over the whole history gives the same numbers),
  centred on the training universe's mean raw score of the same day (the reference universe:
  :mod:`engines.model`; its bars up to that day only);
- predictions are labelled with the same triple-barrier rule from later bars; those without
  the full horizon of later bars are dropped.

``--walk-forward`` instead pools the folds over ``DIR`` itself (default: the sample data): out of
time, but *not* out of symbol (the trees saw other years of the same stocks); ``meta`` says so.

The computation (:func:`simulate`, :func:`evaluate`, :func:`walk_forward`) is pure; only
:func:`main` reads CSV files and writes the report.
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import date, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np
import pandas as pd

from core.errors import ValidationError
from engines import metrics
from engines.model import (
    DEFAULT_CONFIG,
    DEFAULT_SPEC,
    ModelArtifact,
    ModelConfig,
    build_dataset,
    predict_frame,
    refit_calibrator_on,
    schedule,
    train_on,
)
from engines.signal_types import BarrierSpec

IST = ZoneInfo("Asia/Kolkata")
DEFAULT_TRAIN_DATA = Path(__file__).resolve().parents[1] / "data" / "sample" / "nse_daily"
CONFIDENCE_EDGES = (0.0, 0.3, 0.4, 0.5, 0.6, 1.0)
_CSV_COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


def _start(day: date | datetime) -> pd.Timestamp:
    stamp = pd.Timestamp(day)
    return stamp.tz_localize(IST) if stamp.tzinfo is None else stamp


def simulate(
    test_bars: Mapping[str, pd.DataFrame],
    train_bars: Mapping[str, pd.DataFrame],
    start: date | datetime,
    end: date | datetime | None = None,
    spec: BarrierSpec = DEFAULT_SPEC,
    cfg: ModelConfig = DEFAULT_CONFIG,
) -> pd.DataFrame:
    """Return every test symbol-day from ``start`` predicted as production would have.

    Parameters
    ----------
    test_bars
        Daily bars of the symbols to predict (may include history before ``start``).
    train_bars
        Daily bars of the training universe (the caller removes test symbols for an
        out-of-symbol test, or passes the same mapping for a pooled walk-forward). It is also
        the reference universe each prediction is centred on (its same-day mean raw score).
    start, end
        Predict bars in ``[start, end)``; ``end`` defaults to just after the last test bar.
        Dates are IST midnights.
    spec, cfg
        Barrier geometry and model settings (its re-fit schedule is followed).

    Returns
    -------
    pandas.DataFrame
        One row per predicted symbol-day: ``symbol``, ``t``, ``p_long``, ``p_short``,
        ``y_long``, ``y_short`` (NaN when unresolved), ``base_long``, ``base_short`` (the
        calibration window's base rates in force), ``version``.
    """
    train_data = build_dataset(train_bars, spec)
    test_data = build_dataset(test_bars, spec)
    first = _start(start).tz_convert("UTC")
    last = (_start(end).tz_convert("UTC") if end is not None
            else test_data["t"].max() + pd.Timedelta(days=1))
    if last <= first:
        raise ValidationError(
            f"nothing to evaluate: the test data ends {test_data['t'].max():%Y-%m-%d}, "
            f"not after the start {first:%Y-%m-%d}"
        )
    times = schedule(first, last, cfg)
    parts = []
    artifact: ModelArtifact | None = None
    for i, (when, kind) in enumerate(times):
        until = times[i + 1][0] if i + 1 < len(times) else last
        if kind == "model" or artifact is None:
            artifact = train_on(train_data, when, spec, cfg)
        else:
            artifact = refit_calibrator_on(artifact, train_data, when, cfg)
        rows = test_data[(test_data["t"] >= when) & (test_data["t"] < until)]
        if rows.empty:
            continue
        reference = (train_data[(train_data["t"] >= when) & (train_data["t"] < until)]
                     if cfg.cross_sectional else None)
        probs = predict_frame(artifact, rows, reference)
        parts.append(pd.DataFrame({
            "symbol": rows["symbol"].to_numpy(),
            "t": rows["t"].to_numpy(),
            "p_long": probs["p_long"].to_numpy(),
            "p_short": probs["p_short"].to_numpy(),
            "y_long": rows["y_long"].to_numpy(),
            "y_short": rows["y_short"].to_numpy(),
            "base_long": artifact.base_rate_long,
            "base_short": artifact.base_rate_short,
            "version": artifact.version,
        }))
    if not parts:
        raise ValidationError(f"no test bars between {first:%Y-%m-%d} and {last:%Y-%m-%d}")
    return pd.concat(parts, ignore_index=True)


def _scores(p: np.ndarray, y: np.ndarray, dates: np.ndarray, base_train: float,
            base_recent: np.ndarray, n_boot: int) -> dict[str, Any]:
    """Return the headline scores of one direction's forecasts."""
    constant = np.full(len(y), base_train)
    brier, baseline = metrics.brier(p, y), metrics.brier(constant, y)
    recent = metrics.brier(base_recent, y)
    low, high = metrics.block_bootstrap_auc_ci(p, y, dates, n_boot=n_boot)
    # The 10% highest forecasts by rank (ties in order of the rows, so exactly a tenth).
    top = np.argsort(-p, kind="stable")[: max(1, len(p) // 10)]
    return {
        "n_predictions": len(y),
        "base_rate": float(y.mean()),
        "base_rate_train": base_train,
        "brier": brier,
        "brier_baseline": baseline,
        "brier_skill": 1.0 - brier / baseline,
        "brier_baseline_recent": recent,
        "brier_skill_recent": 1.0 - brier / recent,
        "ece": metrics.ece(p, y),
        "ece_base_rate": metrics.ece(constant, y),
        "ece_recent_base_rate": metrics.ece(base_recent, y),
        "auc": metrics.auc(p, y),
        "auc_ci_low": low,
        "auc_ci_high": high,
        "top_decile_hit_rate": float(y[top].mean()),
        "p_mean": float(p.mean()),
        "reliability": metrics.reliability(p, y),
    }


def _group_scores(p: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"n": len(y), "p_mean": float(p.mean()), "hit_rate": float(y.mean()),
            "auc": metrics.auc(p, y)}


def _rules_frame(predictions: pd.DataFrame, test_bars: Mapping[str, pd.DataFrame]
                 ) -> pd.DataFrame | None:
    """Return predictions joined with the ensemble action and regime, or None without them."""
    try:
        from engines.regime import classify
        from engines.strategies import ensemble_frame
    except ImportError:
        return None
    parts = []
    for symbol, rows in predictions.groupby("symbol", sort=False):
        bars = test_bars[str(symbol)]
        votes = ensemble_frame(bars)
        regimes = classify(bars)
        keys = pd.DatetimeIndex(rows["t"]).tz_convert(bars.index.tz)
        part = rows.copy()
        part["ensemble_action"] = votes["action"].reindex(keys).to_numpy()
        part["regime"] = pd.Series(regimes).reindex(keys).astype(str).to_numpy()
        parts.append(part)
    return pd.concat(parts)


def _signals(frame: pd.DataFrame) -> pd.DataFrame | None:
    """Return the rows where B's decision rule emits BUY or SELL, with the hit of that side."""
    try:
        from engines.signals import SignalConfig, decide_frame
    except ImportError:
        return None
    parts = []
    for (base_long, base_short), rows in frame.groupby(["base_long", "base_short"], sort=False):
        decided = decide_frame(rows, float(base_long), float(base_short), SignalConfig())
        part = rows.assign(action=decided["action"].astype(str).to_numpy())
        parts.append(part[part["action"].isin(["BUY", "SELL"])])
    signals = pd.concat(parts)
    buy = (signals["action"] == "BUY").to_numpy()
    signals["p"] = np.where(buy, signals["p_long"], signals["p_short"])
    signals["hit"] = np.where(buy, signals["y_long"], signals["y_short"])
    return signals


def _rules_report(frame: pd.DataFrame | None) -> dict[str, Any]:
    if frame is None:
        return {"n_signals": None, "signal_hit_rate": None, "by_regime": {},
                "by_confidence": [], "rules_note": "engines.regime/strategies not available"}
    by_regime = {
        str(regime): _group_scores(rows["p_long"].to_numpy(), rows["y_long"].to_numpy())
        for regime, rows in frame.groupby("regime")
    }
    signals = _signals(frame)
    if signals is None:
        return {"n_signals": None, "signal_hit_rate": None, "by_regime": by_regime,
                "by_confidence": [], "rules_note": "engines.signals not available"}
    buckets = []
    edges = CONFIDENCE_EDGES
    for low, high in itertools.pairwise(edges):
        rows = signals[(signals["p"] >= low) & ((signals["p"] < high) | (high == 1.0))]
        if len(rows):
            buckets.append({"p_from": low, "p_to": high, "n": len(rows),
                            "p_mean": float(rows["p"].mean()),
                            "hit_rate": float(rows["hit"].mean())})
    return {
        "n_signals": len(signals),
        "n_buy": int((signals["action"] == "BUY").sum()),
        "n_sell": int((signals["action"] == "SELL").sum()),
        "signal_hit_rate": float(signals["hit"].mean()) if len(signals) else None,
        "signal_p_mean": float(signals["p"].mean()) if len(signals) else None,
        "by_regime": by_regime,
        "by_confidence": buckets,
    }


def _base_rate_before(train_bars: Mapping[str, pd.DataFrame], start: pd.Timestamp,
                      spec: BarrierSpec) -> tuple[float, float]:
    data = build_dataset(train_bars, spec)
    known = data[data["resolved"].notna() & (data["resolved"] < start.tz_convert("UTC"))]
    return float(known["y_long"].mean()), float(known["y_short"].mean())


def evaluate(
    test_bars: Mapping[str, pd.DataFrame],
    train_bars: Mapping[str, pd.DataFrame],
    start: date | datetime,
    end: date | datetime | None = None,
    spec: BarrierSpec = DEFAULT_SPEC,
    cfg: ModelConfig = DEFAULT_CONFIG,
    n_boot: int = 400,
) -> dict[str, Any]:
    """Return the evaluation report of :func:`simulate` (headline keys for the LONG model).

    Headline keys: ``n_predictions``, ``base_rate`` (test hit rate), ``base_rate_train``
    (training labels resolved before ``start``), ``brier``, ``brier_baseline`` (constant
    forecast at ``base_rate_train``), ``brier_skill``, ``ece`` (10 equal-width bins),
    ``ece_base_rate``, ``auc`` with ``auc_ci_low``/``auc_ci_high`` (5-95%, date-block
    bootstrap), ``top_decile_hit_rate`` (hit rate of the 10% highest forecasts, pooled),
    ``reliability``; ``*_recent`` keys compare with the calibration window's base rate in force
    (a stronger baseline). ``short`` holds the same for the SHORT model. ``n_signals``,
    ``signal_hit_rate``, ``by_regime`` and ``by_confidence`` come from the rule engines.
    """
    begun = time.perf_counter()
    first = _start(start)
    predictions = simulate(test_bars, train_bars, first, end, spec, cfg)
    labelled = predictions[predictions["y_long"].notna()].reset_index(drop=True)
    if len(labelled) < 20:
        raise ValidationError(
            f"only {len(labelled)} predictions have a resolved {spec.horizon_bars}-bar label; "
            f"evaluation needs at least 20 (an earlier start or more data)"
        )
    base_long, base_short = _base_rate_before(train_bars, first, spec)
    dates = labelled["t"].to_numpy()
    report = _scores(labelled["p_long"].to_numpy(), labelled["y_long"].to_numpy(), dates,
                     base_long, labelled["base_long"].to_numpy(), n_boot)
    report["short"] = _scores(labelled["p_short"].to_numpy(), labelled["y_short"].to_numpy(),
                              dates, base_short, labelled["base_short"].to_numpy(), n_boot)
    report.update(_rules_report(_rules_frame(labelled, test_bars)))
    report["meta"] = {
        "from": str(labelled["t"].min().tz_convert(IST).date()),
        "to": str(labelled["t"].max().tz_convert(IST).date()),
        "n_symbols": int(labelled["symbol"].nunique()),
        "symbols": sorted(map(str, labelled["symbol"].unique())),
        "train_symbols": sorted(train_bars),
        "n_model_fits": int(predictions["version"].nunique()),
        "generated_at": datetime.now(IST).isoformat(timespec="seconds"),
        "seconds": round(time.perf_counter() - begun, 1),
        "spec": asdict(spec),
        "config": asdict(cfg),
        "headline": "LONG model; SHORT under 'short'",
    }
    return report


def walk_forward(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    start: date | datetime,
    end: date | datetime | None = None,
    spec: BarrierSpec = DEFAULT_SPEC,
    cfg: ModelConfig = DEFAULT_CONFIG,
    n_boot: int = 400,
) -> dict[str, Any]:
    """Return the pooled walk-forward report over one universe (out of time, not of symbol).

    Same schedule and keys as :func:`evaluate`, but the trees train on the same symbols they
    predict (other, earlier dates of them); ``meta.out_of_symbol`` is False.
    """
    report = evaluate(bars_by_symbol, bars_by_symbol, start, end, spec, cfg, n_boot)
    report["meta"]["out_of_symbol"] = False
    report["meta"]["note"] = ("pooled walk-forward: folds are out of time but not out of "
                              "symbol; the trees trained on earlier dates of these stocks")
    return report


# --- the command line: the only place that reads files ---------------------------------------


def read_bars_dir(folder: Path) -> dict[str, pd.DataFrame]:
    """Return daily bars per symbol from ``folder/SYMBOL.csv`` files.

    Each file has columns ``timestamp, open, high, low, close, volume`` (``oi`` and others are
    ignored); naive timestamps are read as IST.

    Raises
    ------
    ValidationError
        When the folder is missing, holds no CSV files, or a file lacks a column or has
        unreadable rows.
    """
    if not folder.is_dir():
        raise ValidationError(f"data folder {folder} does not exist")
    files = sorted(folder.glob("*.csv"))
    if not files:
        raise ValidationError(f"data folder {folder} holds no SYMBOL.csv files")
    out = {}
    for path in files:
        frame = pd.read_csv(path)
        missing = [c for c in _CSV_COLUMNS if c not in frame.columns]
        if missing:
            raise ValidationError(
                f"{path.name} lacks columns {missing}; needs {list(_CSV_COLUMNS)}"
            )
        try:
            index = pd.DatetimeIndex(pd.to_datetime(frame["timestamp"]))
            values = frame[list(_CSV_COLUMNS[1:])].astype(np.float64)
        except (ValueError, TypeError) as e:
            raise ValidationError(f"{path.name} has unreadable rows: {e}") from e
        values.index = index.tz_localize(IST) if index.tz is None else index
        out[path.stem] = values.sort_index()
    return out


def _parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m engines.evaluate", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=DEFAULT_TRAIN_DATA,
                        help="folder of SYMBOL.csv daily bars to test on")
    parser.add_argument("--from", dest="start", type=date.fromisoformat, required=True,
                        help="first date to predict (YYYY-MM-DD)")
    parser.add_argument("--to", dest="end", type=date.fromisoformat, default=None,
                        help="predict before this date (default: to the end of the data)")
    parser.add_argument("--out", type=Path, required=True, help="report JSON to write")
    parser.add_argument("--train-data", type=Path, default=DEFAULT_TRAIN_DATA,
                        help="training universe (symbols also in --data are removed)")
    parser.add_argument("--walk-forward", action="store_true",
                        help="pooled walk-forward over --data itself (out of time only)")
    parser.add_argument("--n-boot", type=int, default=400, help="bootstrap resamples for the AUC")
    parser.add_argument("--rounds", type=int, default=None,
                        help="boosting rounds (default: ModelConfig's; fewer for quick checks)")
    return parser.parse_args(argv)


def _maybe(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run the evaluation from the command line; print a one-line summary."""
    args = _parse(argv)
    cfg = ModelConfig() if args.rounds is None else ModelConfig(n_rounds=args.rounds)
    try:
        test = read_bars_dir(args.data)
        if args.walk_forward:
            report = walk_forward(test, args.start, args.end, cfg=cfg, n_boot=args.n_boot)
        else:
            train = {s: b for s, b in read_bars_dir(args.train_data).items() if s not in test}
            if not train:
                raise ValidationError(
                    f"every training symbol in {args.train_data} is also in {args.data}; "
                    f"nothing is left to train on"
                )
            report = evaluate(test, train, args.start, args.end, cfg=cfg, n_boot=args.n_boot)
    except ValidationError as e:
        print(f"evaluate: {e}", file=sys.stderr)
        return 2
    report["meta"]["data"] = str(args.data)
    report["meta"]["train_data"] = str(args.data if args.walk_forward else args.train_data)
    args.out.write_text(json.dumps(report, indent=2, default=str))
    print(
        f"{'walk-forward' if args.walk_forward else 'unseen'} {report['meta']['from']}.."
        f"{report['meta']['to']} n={report['n_predictions']} base={report['base_rate']:.3f} "
        f"auc={report['auc']:.3f} [{report['auc_ci_low']:.3f}, {report['auc_ci_high']:.3f}] "
        f"ece={report['ece']:.3f} brier_skill={report['brier_skill']:+.4f} "
        f"top10={report['top_decile_hit_rate']:.3f} signals={report['n_signals']} "
        f"hit={_maybe(report['signal_hit_rate'])} short_auc={report['short']['auc']:.3f} "
        f"({report['meta']['seconds']} s) -> {args.out}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
