"""Calibrated XGBoost probabilities for the triple-barrier setups, one model per direction.

Pure code (no file or network I/O): the caller passes bars and gets an artifact (bytes on
request). What the probability means is fixed in :mod:`engines.signal_types`.

Training scheme (:func:`train`, as of a time ``as_of``)
------------------------------------------------------
Only labels *resolved* before ``as_of`` are used: the label of bar ``t`` is known at the start
of bar ``t+H`` (:func:`engines.labels.resolved_at`), so its window ``[t, t+H]`` ends before
``as_of``. That is the purge gap of ``H = spec.horizon_bars`` bars. The resolved labels are
split in time, walk-forward:

1. **trees**: labels resolved before ``cal_start = as_of - calibration_days``;
2. **calibration window**: bars ``t >= cal_start`` resolved before ``as_of``; no tree label's
   window overlaps it. Its first part (``1 - holdout_fraction``) fits both calibrators
   (isotonic and Platt) on the trees' raw scores; its last part (again purged by ``H`` bars)
   scores them, the better Brier score picks the kind, and those out-of-sample scores are the
   artifact's ``metrics``; the chosen kind is then re-fitted on the whole window.

Ranking, not market timing. The share of setups that reach target 1 swings with the market
(quarterly 0.19-0.34 on the sample data) and mean-reverts within months, so neither the trees'
market-wide moves nor a recent hit rate foretold the next months' rate: both pulled the pooled
out-of-time AUC down to 0.50. So by default (``ModelConfig.cross_sectional``) the calibrator maps
a stock's raw score *relative to the universe's mean score* to a probability, levelled at the
long-run hit rate (``level_days``, ``recent_weight``). The model then says which stocks are
likelier than usual to reach target 1, and its probabilities are calibrated on average over
market phases, not within each one (the evaluation's ECE shows it).

"The universe's mean score" is the same thing in training and at prediction: the mean raw score
of the *reference universe's* stocks on the same date (each stock's features use its own bars
up to that date only, so nothing after the date enters). In the calibration window the
reference universe is the training universe (every training row of the day). At prediction the
caller passes the reference universe: :func:`predict_frame` takes its feature rows
(``reference``), :func:`predict` takes the mean from :func:`universe_center`. The evaluation
passes the training universe (for unseen stocks: the sample stocks minus the tested ones; for
the pooled walk-forward: all of them); production should pass the desk's universe (a scan:
:func:`universe_center` once, then ``predict(..., center=...)`` per symbol). A date with no
reference bar (or no reference given) falls back to the calibrator's stored ``center``, the
universe's mean over the last ``center_bars`` bars before the calibration. The same-day
centre keeps the trees' market-wide swings between calibrations from moving the forecasts;
when it came in (b4d64b8) it measured a mean unseen-stock AUC of 0.533 against 0.523 with the
stored centre, on groups of the sample stocks that were not written down. The reproducible
measurement is ``bench/unseen.py`` (seeds 7-9, 4 groups of 10, from 2024-04-15); for this
model it gives a mean AUC of 0.523, auc_ci_low 0.488, top-decile lift +0.009, ECE 0.025 and
Brier skill +0.0007, every goal of issue 5 met in 3 of the 12 runs.

:func:`refit_calibrator` re-fits the calibrator weekly (the centre, the choice of kind, the
map) with the trees kept from the monthly fit. The calibration window always lies after the
trees' label window, so the calibrator never sees in-sample scores.
"""

from __future__ import annotations

import hashlib
import io
import json
import zipfile
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, NamedTuple

import numpy as np
import pandas as pd
import xgboost as xgb
from sklearn.isotonic import IsotonicRegression

from core.errors import ValidationError
from engines import metrics
from engines.bars import IST
from engines.features import FEATURES, MIN_BARS, check_history, compute_features
from engines.labels import resolved_at, triple_barrier
from engines.signal_types import BarrierSpec, Contribution, Direction, Prediction

FORMAT = "sher-signal-model"
FORMAT_VERSION = 1
DIRECTIONS = (Direction.LONG, Direction.SHORT)
_MANIFEST = "manifest.json"


class ModelFileError(ValidationError):
    """A model file is unreadable: truncated, garbled or of another format version.

    Operator: keep the previous active model version and retrain or re-upload this one.
    """


@dataclass(frozen=True, slots=True)
class ModelConfig:
    """Model, schedule and calibration settings (one instance serves the worker and evaluate).

    Defaults are small, strongly regularised trees: the edge on daily bars is weak (AUC about
    0.53-0.55), so a big model only learns noise.
    """

    max_depth: int = 2  # shallow trees: interactions of at most two features
    learning_rate: float = 0.04
    n_rounds: int = 150
    min_child_weight: float = 200.0  # a leaf needs ~1000 samples' worth of hessian
    subsample: float = 0.7
    colsample_bytree: float = 0.7
    reg_lambda: float = 20.0
    nthread: int = 2  # the desk's machine has two cores
    seed: int = 7
    #: Feature columns the trees use (a subset of :data:`engines.features.FEATURES`).
    features: tuple[str, ...] = FEATURES
    #: Re-fit the trees on this pandas frequency (month starts: monthly).
    refit_model_every: str = "MS"
    #: Re-fit the calibrator on this pandas frequency (Mondays: weekly).
    refit_calibrator_every: str = "W-MON"
    #: Calendar days of the most recent resolved labels the calibrator is fitted on.
    calibration_days: int = 182
    #: Calendar days of resolved labels whose hit rate sets the forecasts' level (see below).
    level_days: int = 3650
    #: Weight of the calibration window's own hit rate in the level; the rest is the hit rate
    #: over ``level_days``. Measured on the sample data the market's hit rate swings and
    #: mean-reverts within months (quarterly 0.19-0.34), so a recent level moved the forecasts
    #: against the next months' rate (unseen-stock AUC 0.50-0.51 with weight 0.5 or 1, 0.53
    #: with 0): the default trusts the long-run rate.
    recent_weight: float = 0.0
    #: Train the trees on top of each day's universe-wide hit rate (see ``_fit_booster``).
    #: Off by default: on the sample data it lowered the out-of-time AUC (0.50 against 0.51).
    market_offset: bool = False
    #: Rank stocks, do not time the market: calibrate each day's raw scores minus that day's
    #: mean over the universe, and at prediction subtract the reference universe's mean of the
    #: same day (see the module docstring). Measured on the sample data, the trees'
    #: market-wide swings went against the next months' hit rate and cancelled their
    #: within-day edge (unseen-stock AUC 0.51 without, 0.53 with). With False the calibrator
    #: maps raw scores: predict without a reference or ``center`` (the evaluation does so).
    cross_sectional: bool = True
    #: Bars (days) of the stored fallback centre: the universe's mean over the last
    #: ``center_bars`` bars before the calibration, used on a day without reference bars.
    center_bars: int = 5
    #: Clip centred scores to this lower/upper quantile of the calibration window before the
    #: map (0 = no clipping). Measured on the sample data, the top few percent of scores hit
    #: less often than the middle ones (forecasts above 0.4 hit 8-14%), and a Platt map
    #: extrapolates them; clipped, they get the forecast of the last well-filled score.
    clip_quantile: float = 0.05
    #: Share of the calibration window held out to choose the calibrator and score it.
    holdout_fraction: float = 0.35
    #: Calibrator kinds to choose between on the held-out part.
    calibrators: tuple[str, ...] = ("isotonic", "platt")

    def __post_init__(self) -> None:
        if not 0.0 < self.holdout_fraction < 1.0:
            raise ValueError(f"holdout_fraction must be in (0, 1); got {self.holdout_fraction}")
        if self.calibration_days < 28:
            raise ValueError(f"calibration_days must be at least 28; got {self.calibration_days}")
        unknown = set(self.calibrators) - {"isotonic", "platt"}
        if not self.calibrators or unknown:
            raise ValueError(
                f"calibrators must be 'isotonic' and/or 'platt'; got {self.calibrators}"
            )
        unknown_features = set(self.features) - set(FEATURES)
        if not self.features or unknown_features:
            raise ValueError(f"features must be a subset of FEATURES; unknown {unknown_features}")
        if not 0.0 <= self.clip_quantile < 0.5:
            raise ValueError(f"clip_quantile must be in [0, 0.5); got {self.clip_quantile}")
        if not 1 <= self.nthread <= 2:
            raise ValueError(f"nthread must be 1 or 2 on this desk; got {self.nthread}")

    def purge_bars(self, spec: BarrierSpec) -> int:
        """Return the purge gap in bars between a training label window and a test fold."""
        return spec.horizon_bars

    def xgb_params(self) -> dict[str, Any]:
        """Return the booster parameters for ``xgboost.train``."""
        return {
            "objective": "binary:logistic",
            "eval_metric": "logloss",
            "tree_method": "hist",
            "max_depth": self.max_depth,
            "eta": self.learning_rate,
            "min_child_weight": self.min_child_weight,
            "subsample": self.subsample,
            "colsample_bytree": self.colsample_bytree,
            "lambda": self.reg_lambda,
            "nthread": self.nthread,
            "seed": self.seed,
            "base_score": 0.5,  # raw scores start at log-odds 0; the calibrator sets the level
        }


#: The barrier geometry and model settings used when none are given.
DEFAULT_SPEC = BarrierSpec()
DEFAULT_CONFIG = ModelConfig()


@dataclass(frozen=True, slots=True)
class Calibrator:
    """Map from a booster's raw score (log-odds) to a calibrated probability.

    ``kind == "platt"``: ``sigmoid(a * score + b)`` with ``params = (a, b)``. ``"isotonic"``:
    piecewise-linear through ``(xs, ys)``, flat outside.
    """

    kind: str
    params: tuple[float, ...] = ()
    xs: tuple[float, ...] = ()
    ys: tuple[float, ...] = ()
    shift: float = 0.0  # log-odds added after the map: moves the level, keeps the ranking
    center: float = 0.0  # subtracted from the raw score first (the universe's latest mean)
    low: float = -1e9  # the centred score is clipped to [low, high] before the map
    high: float = 1e9

    def apply(self, score: np.ndarray, center: np.ndarray | float | None = None) -> np.ndarray:
        """Return calibrated probabilities for raw scores.

        ``center`` (one value, or one per score; NaN means "none") replaces the stored
        ``center``: the reference universe's mean raw score on each score's date.
        """
        shift_by = np.full(np.shape(score), self.center) if center is None else np.where(
            np.isnan(np.asarray(center, dtype=np.float64)), self.center, center)
        score = np.clip(np.asarray(score, dtype=np.float64) - shift_by, self.low, self.high)
        if self.kind == "platt":
            a, b = self.params
            return _sigmoid(a * score + b + self.shift)
        probs = np.interp(score, np.asarray(self.xs), np.asarray(self.ys))
        if self.shift == 0.0:
            return probs
        return _sigmoid(_logit(probs) + self.shift)

    def highest(self) -> float:
        """Return the highest probability this calibrator can give.

        The centred score is clipped to ``[low, high]`` before the map, so the map's values over
        that range (its ends and, for isotonic, its knots inside) bound every forecast.
        """
        knots = [x for x in self.xs if self.low <= x <= self.high]
        scores = np.asarray([self.low, self.high, *knots], dtype=np.float64)
        with np.errstate(over="ignore"):  # an unclipped platt map at +-1e9 saturates to 0 or 1
            return float(np.max(self.apply(scores, 0.0)))

    def to_json(self) -> dict[str, Any]:
        """Return the calibrator as plain JSON values."""
        return {"kind": self.kind, "params": list(self.params), "xs": list(self.xs),
                "ys": list(self.ys), "shift": self.shift, "center": self.center,
                "low": self.low, "high": self.high}

    def with_level(self, score: np.ndarray, rate: float) -> Calibrator:
        """Return this calibrator shifted (in log-odds) so its mean forecast on ``score`` is
        ``rate``."""
        logits = _logit(replace(self, shift=0.0).apply(score))
        shift = 0.0
        for _ in range(30):  # Newton on mean(sigmoid(logits + shift)) - rate
            probs = _sigmoid(logits + shift)
            gap = float(probs.mean()) - rate
            slope = float((probs * (1.0 - probs)).mean())
            if abs(gap) < 1e-10 or slope <= 0.0:
                break
            shift -= gap / slope
        return replace(self, shift=shift)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-x))


def _logit(p: np.ndarray) -> np.ndarray:
    clipped = np.clip(p, 1e-4, 1.0 - 1e-4)
    return np.log(clipped / (1.0 - clipped))


def fit_platt(score: np.ndarray, y: np.ndarray, iterations: int = 50) -> Calibrator:
    """Fit ``P(y=1) = sigmoid(a * score + b)`` by Newton's method (a 2-parameter logistic fit).

    A tiny ridge (1e-6) keeps the step defined when the classes separate.
    """
    x = np.column_stack([np.asarray(score, dtype=np.float64), np.ones(len(score))])
    target = np.asarray(y, dtype=np.float64)
    rate = float(np.clip(target.mean(), 1e-3, 1 - 1e-3)) if len(target) else 0.5
    w = np.array([1.0, np.log(rate / (1 - rate)) - float(np.mean(score)) if len(score) else 0.0])
    for _ in range(iterations):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - target)
        hess = (x * (p * (1 - p))[:, None]).T @ x + 1e-6 * np.eye(2)
        step = np.linalg.solve(hess, grad)
        w -= step
        if float(np.abs(step).max()) < 1e-9:
            break
    return Calibrator("platt", params=(float(w[0]), float(w[1])))


def fit_isotonic(score: np.ndarray, y: np.ndarray) -> Calibrator:
    """Fit a non-decreasing map from raw score to hit rate (pool-adjacent-violators)."""
    model = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
    model.fit(np.asarray(score, dtype=np.float64), np.asarray(y, dtype=np.float64))
    return Calibrator("isotonic", xs=tuple(map(float, model.X_thresholds_)),
                      ys=tuple(map(float, model.y_thresholds_)))


def _fit_calibrator(kind: str, score: np.ndarray, y: np.ndarray) -> Calibrator:
    return fit_platt(score, y) if kind == "platt" else fit_isotonic(score, y)


@dataclass(frozen=True)
class ModelArtifact:
    """A trained model: one booster and one calibrator per direction, with its metadata.

    ``train_from``/``train_to`` bound the trees' label windows (first bar, last resolution);
    ``calibration_from``/``calibration_to`` likewise for the calibrator. ``metrics`` are
    out-of-sample scores on the held-out end of the calibration window (see the module
    docstring): ``auc``, ``brier``, ``ece``, ``base_rate``, ``n`` for LONG, and the same keys
    prefixed ``short_`` for SHORT.
    """

    version: str
    trained_at: datetime
    train_from: datetime
    train_to: datetime
    features: tuple[str, ...]
    spec: BarrierSpec
    calibrator_kind: str  # LONG's kind (the headline); SHORT's is in calibrators
    calibrated_at: datetime
    calibration_from: datetime
    calibration_to: datetime
    metrics: dict[str, float]
    base_rate_long: float
    base_rate_short: float
    calibrators: Mapping[str, Calibrator] = field(repr=False)
    boosters: Mapping[str, xgb.Booster] = field(repr=False, compare=False)

    def raw_scores(self, features: pd.DataFrame, direction: Direction) -> np.ndarray:
        """Return the booster's raw scores (log-odds) for feature rows."""
        matrix = xgb.DMatrix(features[list(self.features)].to_numpy(dtype=np.float32),
                             feature_names=list(self.features), nthread=2)
        return np.asarray(self.boosters[direction.value].predict(matrix, output_margin=True))

    def to_bytes(self) -> bytes:
        """Return the artifact as a zip: a JSON manifest and each booster in UBJSON."""
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "version": self.version,
            "trained_at": self.trained_at.isoformat(),
            "train_from": self.train_from.isoformat(),
            "train_to": self.train_to.isoformat(),
            "features": list(self.features),
            "spec": {"atr_period": self.spec.atr_period, "k_target": self.spec.k_target,
                     "m_stop": self.spec.m_stop, "horizon_bars": self.spec.horizon_bars,
                     "target_multiples": list(self.spec.target_multiples)},
            "calibrator_kind": self.calibrator_kind,
            "calibrated_at": self.calibrated_at.isoformat(),
            "calibration_from": self.calibration_from.isoformat(),
            "calibration_to": self.calibration_to.isoformat(),
            "metrics": self.metrics,
            "base_rate_long": self.base_rate_long,
            "base_rate_short": self.base_rate_short,
            "calibrators": {k: c.to_json() for k, c in self.calibrators.items()},
        }
        buffer = io.BytesIO()
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            archive.writestr(_MANIFEST, json.dumps(manifest, sort_keys=True))
            for name, booster in sorted(self.boosters.items()):
                archive.writestr(f"{name}.ubj", bytes(booster.save_raw("ubj")))
        return buffer.getvalue()


def load_artifact(data: bytes) -> ModelArtifact:
    """Return the artifact stored in ``data`` (bytes from :meth:`ModelArtifact.to_bytes`).

    Raises
    ------
    ModelFileError
        When the bytes are not a zip, lack a part, carry another format or format version, or
        hold a booster XGBoost cannot read. The message says which.
    """
    try:
        with zipfile.ZipFile(io.BytesIO(data)) as archive:
            manifest = json.loads(archive.read(_MANIFEST))
            if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                raise ModelFileError(
                    f"model file is not a SHER signal model (format {FORMAT!r} expected)"
                )
            if manifest.get("format_version") != FORMAT_VERSION:
                raise ModelFileError(
                    f"model file has format version {manifest.get('format_version')!r}; this "
                    f"desk reads version {FORMAT_VERSION}: retrain the model"
                )
            raw = {d.value: archive.read(f"{d.value}.ubj") for d in DIRECTIONS}
        boosters = {}
        for name, blob in raw.items():
            booster = xgb.Booster(params={"nthread": 2})
            booster.load_model(bytearray(blob))
            boosters[name] = booster
        return _from_manifest(manifest, boosters)
    except ModelFileError:
        raise
    except (zipfile.BadZipFile, KeyError, ValueError, TypeError, EOFError,
            xgb.core.XGBoostError) as e:
        raise ModelFileError(
            f"model file ({len(data)} bytes) is corrupt or truncated: {type(e).__name__}: {e}"
        ) from e


def _from_manifest(m: dict[str, Any], boosters: dict[str, xgb.Booster]) -> ModelArtifact:
    stamp = datetime.fromisoformat
    spec_json = m["spec"]
    calibrators = {k: Calibrator(v["kind"], tuple(v["params"]), tuple(v["xs"]), tuple(v["ys"]),
                                 float(v["shift"]), float(v["center"]), float(v["low"]),
                                 float(v["high"]))
                   for k, v in m["calibrators"].items()}
    if set(calibrators) != {d.value for d in DIRECTIONS}:
        raise ModelFileError(f"model file has calibrators {sorted(calibrators)}; needs LONG, SHORT")
    return ModelArtifact(
        version=str(m["version"]),
        trained_at=stamp(m["trained_at"]),
        train_from=stamp(m["train_from"]),
        train_to=stamp(m["train_to"]),
        features=tuple(m["features"]),
        spec=BarrierSpec(
            atr_period=int(spec_json["atr_period"]), k_target=float(spec_json["k_target"]),
            m_stop=float(spec_json["m_stop"]), horizon_bars=int(spec_json["horizon_bars"]),
            target_multiples=tuple(spec_json["target_multiples"]),
        ),
        calibrator_kind=str(m["calibrator_kind"]),
        calibrated_at=stamp(m["calibrated_at"]),
        calibration_from=stamp(m["calibration_from"]),
        calibration_to=stamp(m["calibration_to"]),
        metrics={str(k): float(v) for k, v in m["metrics"].items()},
        base_rate_long=float(m["base_rate_long"]),
        base_rate_short=float(m["base_rate_short"]),
        calibrators=calibrators,
        boosters=boosters,
    )


# --- the labelled data set -------------------------------------------------------------------


def build_dataset(bars_by_symbol: Mapping[str, pd.DataFrame], spec: BarrierSpec) -> pd.DataFrame:
    """Return every symbol-bar with full features: features, labels and resolution times.

    Columns: :data:`FEATURES`, ``symbol``, ``t`` (bar start), ``resolved`` (start of bar
    ``t+H``, NaT if unresolved), ``y_long``, ``y_short`` (NaN if unresolved). Bars before a
    symbol's :data:`MIN_BARS`-th are left out: no prediction is ever made on them.
    """
    parts = []
    for symbol, bars in bars_by_symbol.items():
        if len(bars) < MIN_BARS:
            continue
        frame = compute_features(bars)
        utc = pd.DatetimeIndex(bars.index).tz_convert("UTC")
        frame["symbol"] = symbol
        frame["t"] = utc.array
        frame["resolved"] = resolved_at(utc, spec).array
        frame["y_long"] = triple_barrier(bars, spec, Direction.LONG).to_numpy()
        frame["y_short"] = triple_barrier(bars, spec, Direction.SHORT).to_numpy()
        parts.append(frame.iloc[MIN_BARS - 1:])
    if not parts:
        sizes = {symbol: len(bars) for symbol, bars in bars_by_symbol.items()}
        longest = max(sizes, key=lambda symbol: sizes[symbol], default="no symbol")
        raise ValidationError(
            f"no symbol has the {MIN_BARS} daily bars training needs; the longest history is "
            f"{longest} with {sizes.get(longest, 0)}"
        )
    return pd.concat(parts, ignore_index=True)


def _utc(stamp: datetime) -> pd.Timestamp:
    value = pd.Timestamp(stamp)
    if value.tzinfo is None:
        raise ValueError(f"as_of must be tz-aware; got {stamp!r}")
    return value.tz_convert("UTC")


def _ist(stamp: pd.Timestamp) -> datetime:
    """Return a timestamp as an IST datetime (the desk shows times in IST)."""
    return pd.Timestamp(stamp).tz_convert(IST).to_pydatetime()


def _resolved_before(data: pd.DataFrame, as_of: pd.Timestamp) -> pd.Series:
    return data["resolved"].notna() & (data["resolved"] < as_of)


def _market_offset(rows: pd.DataFrame, target: str, prior_weight: float = 5.0) -> np.ndarray:
    """Return each row's log-odds of its day's hit rate across the training universe.

    Shrunk towards the overall rate by ``prior_weight`` pseudo-rows, so a day with few symbols
    does not get an offset of 0 or 1.
    """
    y = rows[target].to_numpy(dtype=np.float64)
    overall = float(y.mean())
    grouped = rows.groupby("t")[target]
    day_sum = grouped.transform("sum").to_numpy(dtype=np.float64)
    day_n = grouped.transform("size").to_numpy(dtype=np.float64)
    rate = (day_sum + prior_weight * overall) / (day_n + prior_weight)
    return _logit(rate)


def _fit_booster(rows: pd.DataFrame, target: str, cfg: ModelConfig) -> xgb.Booster:
    """Fit one direction's trees.

    With ``cfg.market_offset`` each row starts from its day's universe-wide hit rate (a
    ``base_margin``), so the trees learn which stocks beat the day's rate (a cross-sectional
    edge) rather than guessing the market's mood, which mean-reverts and which they cannot know
    at prediction time. Prediction then starts from 0 and the calibrator sets the level.
    """
    names = list(cfg.features)
    matrix = xgb.DMatrix(rows[names].to_numpy(dtype=np.float32),
                         label=rows[target].to_numpy(), feature_names=names,
                         nthread=cfg.nthread)
    if cfg.market_offset:
        matrix.set_base_margin(_market_offset(rows, target))
    return xgb.train(cfg.xgb_params(), matrix, num_boost_round=cfg.n_rounds)


def _score(booster: xgb.Booster, rows: pd.DataFrame) -> np.ndarray:
    names = list(booster.feature_names or ())
    matrix = xgb.DMatrix(rows[names].to_numpy(dtype=np.float32), feature_names=names,
                         nthread=2)
    return np.asarray(booster.predict(matrix, output_margin=True))


@dataclass(frozen=True, slots=True)
class _Calibration:
    calibrators: dict[str, Calibrator]
    metrics: dict[str, float]
    base_rates: dict[str, float]
    start: pd.Timestamp
    end: pd.Timestamp

    def fields(self, when: pd.Timestamp) -> dict[str, Any]:
        """Return the artifact fields this calibration sets, calibrated at ``when``."""
        return {
            "calibrator_kind": self.calibrators[Direction.LONG.value].kind,
            "calibrated_at": _ist(when),
            "calibration_from": _ist(self.start),
            "calibration_to": _ist(self.end),
            "metrics": self.metrics,
            "base_rate_long": self.base_rates[Direction.LONG.value],
            "base_rate_short": self.base_rates[Direction.SHORT.value],
            "calibrators": self.calibrators,
        }


class Folds(NamedTuple):
    """Row masks of the walk-forward split at one ``as_of`` (see the module docstring).

    ``trees``: labels resolved before ``calibration_start``; ``calibration``: bars from
    ``calibration_start`` resolved before ``as_of``; ``fit`` and ``holdout`` split it at
    ``holdout_start`` (``fit`` resolved before it, ``holdout`` starting at it). Each later
    fold starts after every label window of the earlier ones has ended (the purge gap).
    """

    trees: pd.Series
    calibration: pd.Series
    fit: pd.Series
    holdout: pd.Series
    calibration_start: pd.Timestamp
    holdout_start: pd.Timestamp


def purged_folds(
    data: pd.DataFrame,
    as_of: datetime,
    cfg: ModelConfig = DEFAULT_CONFIG,
    not_before: datetime | None = None,
) -> Folds:
    """Return the purged walk-forward folds of a data set (:func:`build_dataset`) at ``as_of``.

    ``not_before`` moves the calibration window's start later (a calibrator re-fit passes the
    end of the trees' label window, so the trees never scored their own training labels).
    """
    cutoff = _utc(as_of)
    start = cutoff - pd.Timedelta(days=cfg.calibration_days)
    if not_before is not None:
        start = max(start, _utc(not_before))
    resolved = data["resolved"]
    known = resolved.notna() & (resolved < cutoff)
    trees = resolved.notna() & (resolved < start)
    calibration = known & (data["t"] >= start)
    split = start + (cutoff - start) * (1.0 - cfg.holdout_fraction)
    fit = calibration & (resolved < split)
    holdout = calibration & (data["t"] >= split)
    return Folds(trees, calibration, fit, holdout, start, split)


def _centred(booster: xgb.Booster, rows: pd.DataFrame, cfg: ModelConfig) -> np.ndarray:
    """Return raw scores, minus each day's mean over the rows when ``cfg.cross_sectional``."""
    raw = _score(booster, rows)
    if not cfg.cross_sectional:
        return raw
    day_mean = pd.Series(raw).groupby(rows["t"].to_numpy()).transform("mean").to_numpy()
    return raw - day_mean


def _level(data: pd.DataFrame, target: str, window: pd.DataFrame, as_of: pd.Timestamp,
           cfg: ModelConfig) -> float:
    """Return the hit rate the forecasts are levelled to at ``as_of`` (see ``ModelConfig``)."""
    known = data[_resolved_before(data, as_of)
                 & (data["t"] >= as_of - pd.Timedelta(days=cfg.level_days))]
    long_rate = float(known[target].mean())
    recent = float(window[target].mean())
    return cfg.recent_weight * recent + (1.0 - cfg.recent_weight) * long_rate


def _fit_levelled(kind: str, score: np.ndarray, y: np.ndarray, rate: float,
                  cfg: ModelConfig) -> Calibrator:
    """Fit a calibrator of ``kind`` on clipped scores, levelled at ``rate``."""
    low, high = -1e9, 1e9
    if cfg.clip_quantile > 0.0:
        low, high = (float(q) for q in np.quantile(score, [cfg.clip_quantile,
                                                           1.0 - cfg.clip_quantile]))
    clipped = np.clip(score, low, high)
    fitted = replace(_fit_calibrator(kind, clipped, y), low=low, high=high)
    return fitted.with_level(clipped, rate)


def _calibrate(
    boosters: Mapping[str, xgb.Booster],
    data: pd.DataFrame,
    folds: Folds,
    as_of: pd.Timestamp,
    spec: BarrierSpec,
    cfg: ModelConfig,
) -> _Calibration:
    """Choose, score and fit each direction's calibrator on the recent resolved window."""
    start, split = folds.calibration_start, folds.holdout_start
    window = data[folds.calibration]
    if window.empty:
        raise ValidationError(
            f"no labels resolved between {start:%Y-%m-%d} and {as_of:%Y-%m-%d} to calibrate on; "
            f"calibration needs bars whose {spec.horizon_bars}-bar horizon ended before as_of"
        )
    fit_part, hold_part = data[folds.fit], data[folds.holdout]
    before = data[(data["t"] < as_of) & (data["t"] >= window["t"].min())]
    recent_days = np.sort(before["t"].unique())[-cfg.center_bars:]
    latest = before[before["t"].isin(recent_days)]
    result: dict[str, Calibrator] = {}
    scores: dict[str, float] = {}
    rates: dict[str, float] = {}
    for direction in DIRECTIONS:
        booster = boosters[direction.value]
        name, target = direction.value, f"y_{direction.value.lower()}"
        prefix = "" if direction is Direction.LONG else "short_"
        kind = cfg.calibrators[0]
        if len(fit_part) >= 50 and len(hold_part) >= 50:
            fit_score = _centred(booster, fit_part, cfg)
            hold_score = _centred(booster, hold_part, cfg)
            hold_y = hold_part[target].to_numpy()
            rate = _level(data, target, fit_part, split, cfg)
            best = np.inf
            for candidate in cfg.calibrators:
                fitted = _fit_levelled(candidate, fit_score, fit_part[target].to_numpy(), rate,
                                       cfg)
                probs = fitted.apply(hold_score)
                loss = metrics.brier(probs, hold_y)
                if loss < best:
                    best, kind, chosen = loss, candidate, probs
            scores.update({
                f"{prefix}auc": metrics.auc(hold_score, hold_y),
                f"{prefix}brier": best,
                f"{prefix}ece": metrics.ece(chosen, hold_y),
                f"{prefix}base_rate": float(hold_y.mean()),
                f"{prefix}n": float(len(hold_y)),
            })
        rates[name] = _level(data, target, window, as_of, cfg)
        fitted = _fit_levelled(kind, _centred(booster, window, cfg), window[target].to_numpy(),
                               rates[name], cfg)
        center = float(_score(booster, latest).mean()) if cfg.cross_sectional else 0.0
        result[name] = replace(fitted, center=center)
    return _Calibration(result, scores, rates, start, window["resolved"].max())


def _version(as_of: pd.Timestamp, boosters: Mapping[str, xgb.Booster]) -> str:
    digest = hashlib.sha256()
    for name in sorted(boosters):
        digest.update(bytes(boosters[name].save_raw("ubj")))
    return f"xgb-{as_of:%Y%m%d}-{digest.hexdigest()[:8]}"


def train_on(
    data: pd.DataFrame,
    as_of: datetime,
    spec: BarrierSpec = DEFAULT_SPEC,
    cfg: ModelConfig = DEFAULT_CONFIG,
    version: str | None = None,
) -> ModelArtifact:
    """Return a model trained on a prepared data set (:func:`build_dataset`); see :func:`train`."""
    cutoff = _utc(as_of)
    folds = purged_folds(data, cutoff, cfg)
    trees = data[folds.trees]
    if len(trees) < 500:
        raise ValidationError(
            f"only {len(trees)} labels resolved before {folds.calibration_start:%Y-%m-%d} to "
            f"train trees on; training needs at least 500 (more history, or a shorter "
            f"calibration window)"
        )
    boosters = {d.value: _fit_booster(trees, f"y_{d.value.lower()}", cfg) for d in DIRECTIONS}
    train_to = trees["resolved"].max()
    calibration = _calibrate(boosters, data, folds, cutoff, spec, cfg)
    return ModelArtifact(
        version=version or _version(cutoff, boosters),
        trained_at=_ist(cutoff),
        train_from=_ist(trees["t"].min()),
        train_to=_ist(train_to),
        features=cfg.features,
        spec=spec,
        boosters=boosters,
        **calibration.fields(cutoff),
    )


def train(
    bars_by_symbol: Mapping[str, pd.DataFrame],
    as_of: datetime,
    spec: BarrierSpec = DEFAULT_SPEC,
    cfg: ModelConfig = DEFAULT_CONFIG,
    version: str | None = None,
) -> ModelArtifact:
    """Train LONG and SHORT boosters and their calibrators on labels resolved before ``as_of``.

    Parameters
    ----------
    bars_by_symbol
        Daily bars per symbol (tz-aware index, oldest first). Bars after ``as_of`` may be
        present; labels are filtered by resolution time, and features never look ahead.
    as_of
        Tz-aware time of training. Only labels whose ``H``-bar window ended before it are used.
    spec, cfg
        Barrier geometry and model settings.
    version
        Version string; default ``xgb-YYYYMMDD-<hash of the trees>``.

    Raises
    ------
    ValidationError
        When too few resolved labels exist (the message gives the counts and dates).
    """
    return train_on(build_dataset(bars_by_symbol, spec), as_of, spec, cfg, version)


def refit_calibrator_on(
    artifact: ModelArtifact, data: pd.DataFrame, as_of: datetime, cfg: ModelConfig = DEFAULT_CONFIG
) -> ModelArtifact:
    """Return ``artifact`` with calibrators re-fitted on a prepared data set; see
    :func:`refit_calibrator`."""
    cutoff = _utc(as_of)
    not_before = pd.Timestamp(artifact.train_to).tz_convert("UTC") + pd.Timedelta(seconds=1)
    folds = purged_folds(data, cutoff, cfg, not_before.to_pydatetime())
    calibration = _calibrate(artifact.boosters, data, folds, cutoff, artifact.spec, cfg)
    return replace(artifact, **calibration.fields(cutoff))


def refit_calibrator(
    artifact: ModelArtifact,
    bars_by_symbol: Mapping[str, pd.DataFrame],
    as_of: datetime,
    cfg: ModelConfig = DEFAULT_CONFIG,
) -> ModelArtifact:
    """Return ``artifact`` with the same trees and calibrators re-fitted on the recent window.

    The window is the last ``cfg.calibration_days`` of labels resolved before ``as_of``, never
    earlier than the end of the trees' label window (so the scores are out of sample). The
    calibrator kind is chosen again, and ``metrics``, base rates and ``calibrated_at`` renewed.
    """
    return refit_calibrator_on(artifact, build_dataset(bars_by_symbol, artifact.spec), as_of, cfg)


# --- prediction ------------------------------------------------------------------------------


def _day_centers(artifact: ModelArtifact, features: pd.DataFrame, reference: pd.DataFrame,
                 direction: Direction) -> np.ndarray:
    """Return, for each row, the reference rows' mean raw score on the row's date (NaN: none)."""
    dates = features["t"].to_numpy()
    rows = reference[reference["t"].isin(np.unique(dates))]
    if rows.empty:
        return np.full(len(features), np.nan)
    means = pd.Series(artifact.raw_scores(rows, direction)).groupby(rows["t"].to_numpy()).mean()
    return means.reindex(dates).to_numpy(dtype=np.float64)


def predict_frame(artifact: ModelArtifact, features: pd.DataFrame,
                  reference: pd.DataFrame | None = None) -> pd.DataFrame:
    """Return calibrated ``p_long`` and ``p_short`` for every row of a feature frame.

    Rows with missing features get the model's answer for missing values (XGBoost's default
    branch); callers predict only on rows past :data:`engines.features.MIN_BARS`.

    Parameters
    ----------
    artifact
        The model.
    features
        Feature rows (:data:`engines.features.FEATURES`); with ``reference``, also a ``t``
        column (the bar's start, as in :func:`build_dataset`).
    reference
        Feature rows of the reference universe (columns as ``features``, with ``t``). Each row
        is centred on the mean raw score of the reference rows of its date (see the module
        docstring); a date without reference rows uses the calibrator's stored centre.
    """
    out = pd.DataFrame(index=features.index)
    for direction in DIRECTIONS:
        score = artifact.raw_scores(features, direction)
        center = (None if reference is None
                  else _day_centers(artifact, features, reference, direction))
        out[f"p_{direction.value.lower()}"] = artifact.calibrators[direction.value].apply(
            score, center)
    return out


def universe_center(artifact: ModelArtifact, bars_by_symbol: Mapping[str, pd.DataFrame],
                    when: datetime) -> dict[str, float]:
    """Return the reference universe's mean raw score per direction on the bar starting ``when``.

    Each symbol with a bar starting at ``when`` and :data:`engines.features.MIN_BARS` bars up
    to it counts; its features use its bars up to ``when`` only, so bars after ``when`` (of any
    symbol) change nothing. Pass the result to :func:`predict` as ``center``. A direction maps
    to NaN when no symbol counts (``predict`` then uses the calibrator's stored centre).
    """
    stamp = pd.Timestamp(when)
    rows = []
    for bars in bars_by_symbol.values():
        upto = bars[bars.index <= stamp]
        if len(upto) >= MIN_BARS and upto.index[-1] == stamp:
            rows.append(compute_features(upto).iloc[[-1]])
    if not rows:
        return {d.value: float("nan") for d in DIRECTIONS}
    frame = pd.concat(rows)
    return {d.value: float(artifact.raw_scores(frame, d).mean()) for d in DIRECTIONS}


def _contributions(
    artifact: ModelArtifact, row: pd.DataFrame, direction: Direction, top: int
) -> tuple[Contribution, ...]:
    matrix = xgb.DMatrix(row[list(artifact.features)].to_numpy(dtype=np.float32),
                         feature_names=list(artifact.features), nthread=2)
    pushes = np.asarray(artifact.boosters[direction.value].predict(matrix, pred_contribs=True))[0]
    values = row.iloc[0]
    items = [Contribution(name, float(values[name]), float(pushes[i]))
             for i, name in enumerate(artifact.features)]
    items.sort(key=lambda c: abs(c.push), reverse=True)
    return tuple(items[:top])


def predict(
    artifact: ModelArtifact,
    bars: pd.DataFrame,
    top: int = 8,
    symbol: str = "this symbol",
    center: Mapping[str, float] | None = None,
) -> Prediction:
    """Return the calibrated probabilities for the last bar of ``bars``, with contributions.

    ``center`` is the reference universe's mean raw score per direction on that bar's date
    (:func:`universe_center`); without it (or NaN) the calibrator's stored centre is used.

    Raises
    ------
    ValidationError
        When ``bars`` holds fewer than :data:`engines.features.MIN_BARS` bars (the message
        names ``symbol``, the count and the bars needed).
    """
    check_history(bars, symbol)
    row = compute_features(bars).iloc[[-1]]
    probs = {
        d: float(artifact.calibrators[d.value].apply(
            artifact.raw_scores(row, d), None if center is None else center[d.value])[0])
        for d in DIRECTIONS
    }
    return Prediction(
        p_long=probs[Direction.LONG],
        p_short=probs[Direction.SHORT],
        base_rate_long=artifact.base_rate_long,
        base_rate_short=artifact.base_rate_short,
        model_version=artifact.version,
        contributions_long=_contributions(artifact, row, Direction.LONG, top),
        contributions_short=_contributions(artifact, row, Direction.SHORT, top),
    )


def schedule(start: datetime, end: datetime, cfg: ModelConfig = DEFAULT_CONFIG
             ) -> list[tuple[pd.Timestamp, str]]:
    """Return the re-fit times in ``[start, end)``: ``(time, "model" | "calibrator")``.

    ``start`` itself is always a model re-fit (production starts with a trained model); a time
    on both schedules is a model re-fit (which calibrates too).
    """
    first, last = pd.Timestamp(start), pd.Timestamp(end)
    models = set(pd.date_range(first, last, freq=cfg.refit_model_every, inclusive="left"))
    models.add(first)
    calibs = set(pd.date_range(first, last, freq=cfg.refit_calibrator_every, inclusive="left"))
    times = sorted(models | calibs)
    return [(t, "model" if t in models else "calibrator") for t in times if t < last]


__all__ = [
    "DEFAULT_CONFIG",
    "DEFAULT_SPEC",
    "FORMAT_VERSION",
    "Folds",
    "ModelArtifact",
    "ModelConfig",
    "ModelFileError",
    "build_dataset",
    "load_artifact",
    "predict",
    "predict_frame",
    "purged_folds",
    "refit_calibrator",
    "refit_calibrator_on",
    "schedule",
    "train",
    "train_on",
    "universe_center",
]
