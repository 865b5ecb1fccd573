"""Display-ready tables and sentences of the signal service (no I/O, no Streamlit).

Every number shown here is computed from the rows or the registered metrics passed in; missing
figures are said to be missing, never filled in.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from itertools import pairwise
from typing import Any

import pandas as pd

from core.clock import format_ist
from core.money import inr
from core.services.signal_registry import ACTION_RULE, ModelVersion, calibrator_label
from db.models import SignalRow
from engines.metrics import reliability
from engines.outcomes import HITS, Outcome
from engines.signal_types import Action, Direction, Evidence, Signal

HIT_VALUES = frozenset(o.value for o in HITS)
CONFIDENCE_BUCKETS = (0.0, 0.4, 0.6, 0.8, 1.0000001)
SCAN_COLUMNS = ["symbol", "action", "direction", "probability of", "probability", "edge",
                "confidence",
                "entry [₹]", "stop-loss [₹]", "target 1 [₹]", "target 2 [₹]", "target 3 [₹]",
                "risk:reward", "regime", "agreement", "evidence", "model_version", "bar",
                "trace_id"]


def evidence_dict(evidence: Evidence) -> dict[str, Any]:
    """Return one piece of evidence as a JSON-ready dict (the journal's format)."""
    return asdict(evidence)


def evidence_frame(signal: Signal) -> pd.DataFrame:
    """Return a signal's evidence as a table: source, name, detail, value."""
    return pd.DataFrame([evidence_dict(e) for e in signal.evidence],
                        columns=["source", "name", "detail", "value"])


def probability_of(entry: Decimal, stop_loss: Decimal) -> str:
    """Return the direction a signal's probability is of: "LONG" or "SHORT".

    A BUY's or SELL's probability is of its direction; a HOLD's of the direction it leans to,
    whose levels it shows: a stop-loss below the entry is a LONG's, above it a SHORT's.
    """
    return Direction.LONG.value if stop_loss < entry else Direction.SHORT.value


def _price(value: Decimal) -> float:
    return float(value)


#: How far the desk's last price may be from a signal's entry before the page warns.
DESK_GAP = Decimal("0.10")


def desk_price_warning(signal: Signal, desk_ltp: Decimal | None) -> str | None:
    """Return a warning when the desk trades far from the signal's entry, else None.

    A signal's entry is the close of its daily bar; the paper desk trades the feed's prices,
    which may be of other days (the demo replays sample sessions). Beyond ``DESK_GAP`` the
    signal's stop-loss and targets mean nothing at the desk's price.
    """
    if desk_ltp is None or signal.entry <= 0:
        return None
    gap = abs(desk_ltp - signal.entry) / signal.entry
    if gap <= DESK_GAP:
        return None
    return (f"The paper desk's last price of {signal.symbol} is {inr(desk_ltp)}, {gap:.0%} away "
            f"from this signal's entry {inr(signal.entry)} (the close of the daily bar of "
            f"{format_ist(signal.as_of)[:10]}): the desk's prices are of another day, so this "
            "signal's stop-loss and targets do not apply to an order placed there now.")


def scan_frame(signals: Sequence[Signal], edges: Sequence[float]) -> pd.DataFrame:
    """Return the scan's ranked table: BUY/SELL first by edge, then HOLDs.

    The edge is the probability above the direction's expected hit rate now (the model's
    ``base_rate_long``/``base_rate_short``, the long-run hit rate it is levelled to).

    A HOLD's edge is empty (NaN): it takes no direction. "probability of" names the direction
    the probability is of (for a HOLD, the one it leans to).
    """
    records = [{
        "symbol": s.symbol, "action": s.action.value, "direction": s.direction.value,
        "probability of": probability_of(s.entry, s.stop_loss),
        "probability": round(s.probability, 3), "edge": round(e, 3),
        "confidence": round(s.confidence, 2), "entry [₹]": _price(s.entry),
        "stop-loss [₹]": _price(s.stop_loss), "target 1 [₹]": _price(s.targets[0]),
        "target 2 [₹]": _price(s.targets[1]), "target 3 [₹]": _price(s.targets[2]),
        "risk:reward": round(s.risk_reward, 2), "regime": s.regime.value,
        "agreement": f"{s.agreement}/{s.voters}", "evidence": len(s.evidence),
        "model_version": s.model_version, "bar": format_ist(s.as_of)[:10],
        "trace_id": s.trace_id,
    } for s, e in zip(signals, edges, strict=True)]
    frame = pd.DataFrame(records, columns=SCAN_COLUMNS)
    if frame.empty:
        return frame
    frame["_acts"] = frame["action"] != Action.HOLD.value
    frame = frame.sort_values(["_acts", "edge", "symbol"], ascending=[False, False, True],
                              na_position="last")
    return frame.drop(columns="_acts").reset_index(drop=True)


#: How many bar-less instruments the scan's note names before it says "and N more".
NO_BARS_NAMED = 5


def no_bars_note(symbols: Sequence[str], named: int = NO_BARS_NAMED) -> str | None:
    """Return "9 instrument(s) have no daily bars yet: A, B, C, D, E and 4 more." (None if none)."""
    if not symbols:
        return None
    shown = ", ".join(symbols[:named])
    more = len(symbols) - named
    return (f"{len(symbols)} instrument(s) have no daily bars yet: {shown}"
            + (f" and {more} more" if more > 0 else "") + ".")


#: The outcome shown for a HOLD: it takes no trade, so later bars have nothing to decide.
NO_TRADE = "no trade"


def _outcome(row: SignalRow) -> str:
    return NO_TRADE if row.direction == Direction.FLAT else row.outcome


def journal_frame(rows: Sequence[SignalRow]) -> pd.DataFrame:
    """Return journal rows as a table, newest first as given (a HOLD's outcome: "no trade";
    "probability of" names the direction its probability is of)."""
    return pd.DataFrame([{
        "generated": format_ist(r.generated_at), "symbol": r.symbol,
        "bar": format_ist(r.bar_time)[:10], "action": r.action.value,
        "direction": r.direction.value,
        "probability of": probability_of(r.entry, r.stop_loss),
        "probability": float(r.probability),
        "entry [₹]": float(r.entry), "stop-loss [₹]": float(r.stop_loss),
        "target 1 [₹]": float(r.target1), "regime": r.regime.value, "outcome": _outcome(r),
        "outcome_at": format_ist(r.outcome_at)[:10] if r.outcome_at else "",
        "outcome price [₹]": float(r.outcome_price) if r.outcome_price is not None else None,
        "model_version": r.model_version, "by": r.generated_by, "trace_id": r.trace_id,
    } for r in rows], columns=["generated", "symbol", "bar", "action", "direction",
                               "probability of", "probability", "entry [₹]", "stop-loss [₹]",
                               "target 1 [₹]",
                               "regime", "outcome", "outcome_at", "outcome price [₹]",
                               "model_version", "by", "trace_id"])


def journal_heading(frame: pd.DataFrame) -> str | None:
    """Return "The newest 500 of 1,080 journaled signals" when the journal table is cut, else
    None (``frame`` from ``SignalService.journal_frame``, its ``attrs["total"]`` set)."""
    total = int(frame.attrs.get("total", len(frame)))
    if total <= len(frame):
        return None
    return (f"The newest {len(frame):,} of {total:,} journaled signals (the table and its CSV "
            "hold these only).")


def journal_file_stem(frame: pd.DataFrame) -> str:
    """Return the journal CSV's file name stem; a cut table says so: ``newest_500_of_1080``."""
    total = int(frame.attrs.get("total", len(frame)))
    return ("signal_journal" if total <= len(frame)
            else f"signal_journal_newest_{len(frame)}_of_{total}")


@dataclass(frozen=True, slots=True)
class Performance:
    """Past performance computed from resolved journal rows (LONG/SHORT signals only)."""

    journaled: int
    resolved: int
    hit_rate: float | None
    mean_probability: float | None
    by_confidence: pd.DataFrame
    by_regime: pd.DataFrame
    reliability: list[dict[str, float]]
    note: str
    holds: int = 0  # HOLD (FLAT) rows: journaled, but no trade to mark


def _grouped(frame: pd.DataFrame, key: str) -> pd.DataFrame:
    grouped = frame.groupby(key, observed=True).agg(
        signals=("hit", "size"), hits=("hit", "sum"), hit_rate=("hit", "mean"),
        mean_probability=("probability", "mean"))
    grouped["hits"] = grouped["hits"].astype(int)
    return grouped.round({"hit_rate": 3, "mean_probability": 3}).reset_index()


def performance(rows: Sequence[Any]) -> Performance:
    """Return hit rates by confidence bucket and regime and the reliability table.

    ``rows`` carry action, direction, probability, confidence, regime and outcome. Only
    LONG/SHORT rows whose outcome is decided count; a hit is target 1, 2 or 3 before the stop.
    HOLDs (FLAT) take no trade: they count as journaled but never as decided or undecided.
    """
    frame = pd.DataFrame(rows, columns=["action", "direction", "probability", "confidence",
                                        "regime", "outcome"])
    journaled = len(frame)
    frame = frame[frame["direction"] != Direction.FLAT]
    holds, directional = journaled - len(frame), len(frame)
    held = (f" {holds:,} HOLD signal(s) are journaled but have no trade to mark."
            if holds else "")
    frame = frame[frame["outcome"] != Outcome.OPEN.value].copy()
    if frame.empty:
        if journaled == 0:
            note = "The journal holds no signal yet."
        elif directional == 0:
            note = "The journal holds no BUY/SELL signal yet." + held
        else:
            note = (f"The journal holds {directional:,} BUY/SELL signal(s), none decided yet: "
                    "an outcome is known once later daily bars reach a target or the stop, or "
                    "the horizon passes." + held)
        empty = pd.DataFrame(columns=["signals", "hits", "hit_rate", "mean_probability"])
        return Performance(journaled, 0, None, None, empty, empty, [], note, holds)
    frame["probability"] = frame["probability"].astype(float)
    frame["confidence"] = frame["confidence"].astype(float)
    frame["hit"] = frame["outcome"].isin(HIT_VALUES).astype(int)
    frame["regime"] = frame["regime"].map(str)
    labels = [f"{lo:.1f}–{min(hi, 1.0):.1f}" for lo, hi in pairwise(CONFIDENCE_BUCKETS)]
    frame["confidence_bucket"] = pd.cut(frame["confidence"], CONFIDENCE_BUCKETS, right=False,
                                        labels=labels)
    table = reliability(frame["probability"].to_numpy(), frame["hit"].to_numpy())
    resolved = len(frame)
    note = (f"From {resolved} decided LONG/SHORT signal(s) of {directional} journaled; hit = "
            "target 1 (or further) before the stop within the horizon.")
    if resolved < 100:
        note += f" Only {resolved} decided: these rates are still mostly noise."
    return Performance(journaled, resolved, float(frame["hit"].mean()),
                       float(frame["probability"].mean()),
                       _grouped(frame, "confidence_bucket"), _grouped(frame, "regime"), table,
                       note + held, holds)


def _figure(metrics: dict[str, Any], key: str, fmt: str = "{:.2f}") -> str | None:
    value = metrics.get(key)
    if not isinstance(value, int | float) or math.isnan(value):
        return None
    return fmt.format(value)


def _scores(metrics: dict[str, Any], prefix: str = "") -> list[str]:
    parts = []
    auc = _figure(metrics, f"{prefix}auc")
    if auc is not None:
        low = _figure(metrics, f"{prefix}auc_ci_low")
        high = _figure(metrics, f"{prefix}auc_ci_high")
        parts.append(f"AUC {auc}" + (f" (90% CI {low}–{high})" if low and high else ""))
    for key, label, fmt in (("ece", "ECE", "{:.3f}"), ("brier", "Brier", "{:.4f}"),
                            ("brier_skill", "Brier skill", "{:+.4f}"),
                            ("base_rate", "held-out hit rate", "{:.2f}"),
                            ("top_decile_hit_rate", "top-decile hit rate", "{:.2f}")):
        shown = _figure(metrics, f"{prefix}{key}", fmt)
        if shown is not None:
            parts.append(f"{label} {shown}")
    count = _figure(metrics, f"{prefix}n", "{:,.0f}")
    if count is None:
        count = _figure(metrics, f"{prefix}n_predictions", "{:,.0f}")
    if count is not None:
        parts.append(f"n {count}")
    return parts


def figures_lines(version: ModelVersion) -> list[str]:
    """Return the measured figures of a model version, each with its date and data.

    The first line is the version's own held-out check (long setups; e.g. ``Long setups: AUC
    0.54, ECE 0.021, Brier 0.1901, held-out hit rate 0.27, n 4,812 — held out
    2025-06-12..2025-09-16 on daily bars of the desk's instruments (40 symbols), out of time on
    the training symbols (not out of symbol); measured 2026-11-21``), the second the same for
    short setups; then the expected hit rate now (:func:`expected_line`, the rate the
    probabilities are levelled to and edges are measured against, not the held-out hit rate);
    last the attached ``engines.evaluate`` report, if an operator attached one. Missing figures
    are left out, never filled in.
    """
    report = version.report
    measured = format_ist(version.created_at)[:10]
    where = (f"held out {report.get('holdout_from', '?')}..{report.get('holdout_to', '?')} on "
             f"{report.get('data', version.data_source or 'unknown data')}, "
             f"{report.get('validation', 'validation of unknown kind')}; measured {measured}")
    lines = []
    for label, prefix in (("Long setups", ""), ("Short setups", "short_")):
        parts = _scores(version.metrics, prefix)
        if parts:
            lines.append(f"{label}: {', '.join(parts)} — {where}")
    if not lines:
        lines.append(f"No held-out figures are registered for model {version.version}.")
    expected = expected_line(version)
    if expected is not None:
        lines.append(expected)
    evaluation = report.get("evaluation")
    if isinstance(evaluation, dict):
        meta = evaluation.get("meta", evaluation)
        parts = _scores(evaluation)
        lines.append(
            f"Evaluation (python -m engines.evaluate): {', '.join(parts) or 'no figures'} — "
            f"{meta.get('n_symbols', '?')} symbols, {meta.get('from', '?')}..{meta.get('to', '?')}"
            f", measured {str(meta.get('generated_at', '?'))[:10]}"
            + ("; out of time but not out of symbol" if meta.get("out_of_symbol") is False
               else ""))
    return lines


def expected_line(version: ModelVersion) -> str | None:
    """Return the expected hit rate now of each side, the level edges are measured against.

    ``engines.model._level`` levels the probabilities at the hit rate of the setups resolved
    in the ``level_days`` before calibration (blended with the calibration window's own rate
    by ``recent_weight``, 0 by default): the model's ``base_rate_long``/``base_rate_short``,
    registered in the version's report. None when the report lacks them.
    """
    rates = [_figure(version.report, f"base_rate_{side}") for side in ("long", "short")]
    if rates[0] is None or rates[1] is None:
        return None
    return (f"Expected hit rate now: long {rates[0]}, short {rates[1]} — the long-run hit rate "
            "of resolved setups that the probabilities are levelled to (not the held-out hit "
            "rate above); a signal's edge is its probability minus this, and a BUY or SELL "
            f"needs an edge of at least {ACTION_RULE.min_edge:+.2f}.")


def _ci(figures: dict[str, Any]) -> tuple[float, float] | None:
    low, high = figures.get("auc_ci_low"), figures.get("auc_ci_high")
    if not isinstance(low, int | float) or not isinstance(high, int | float):
        return None
    if math.isnan(low) or math.isnan(high):
        return None
    return float(low), float(high)


def _evaluation_edge(evaluation: dict[str, Any]) -> str | None:
    """Return the edge statement from an attached ``engines.evaluate`` report, if it has an AUC."""
    auc = evaluation.get("auc")
    if not isinstance(auc, int | float) or math.isnan(auc):
        return None
    meta = evaluation.get("meta", evaluation)
    unseen = meta.get("out_of_symbol") is not False
    where = ("the evaluation on unseen stocks" if unseen else
             "the evaluation (out of time, but on the training stocks)")
    ci = _ci(evaluation)
    shown = f"an AUC of {auc:.2f}" + (f" (90% CI {ci[0]:.2f}–{ci[1]:.2f})" if ci else "")
    if (ci is not None and ci[0] <= 0.5 <= ci[1]) or auc <= 0.5:
        return (f"No measurable edge: {where} (python -m engines.evaluate) gives {shown}, and "
                "an AUC of 0.50 is a coin" + (", which its interval includes" if ci else "")
                + ". Treat the probabilities as no better than the expected hit rate.")
    return (f"The edge is small: {where} (python -m engines.evaluate) gives {shown}: of a "
            "random pair of one setup that reached its target and one that did not, the model "
            f"ranks the winner higher {auc:.0%} of the time (50% is a coin). A probability is "
            "worth acting on only by how far it sits above the expected hit rate now (the "
            "long-run hit rate the probabilities are levelled to), and most days no symbol is "
            "far above it.")


def edge_statement(version: ModelVersion) -> str:
    """Return the plain-words statement of how small the model's edge is, from its figures.

    An attached evaluation (``engines.evaluate``, on unseen stocks) decides it: no measurable
    edge when its AUC's interval includes 0.50. Without one, the version's own AUC is used and
    said to be from held-out days of the training stocks.
    """
    evaluation = version.report.get("evaluation")
    if isinstance(evaluation, dict):
        stated = _evaluation_edge(evaluation)
        if stated is not None:
            return stated
    auc = version.metrics.get("auc")
    if auc is None or math.isnan(auc):
        return "The model's ranking skill was not measured; treat its probabilities with care."
    return (f"The edge is small: an AUC of {auc:.2f} (long setups, on held-out days of the "
            "training stocks, not on unseen stocks) means that of a random pair of one setup "
            f"that reached its target and one that did not, the model ranks the winner higher "
            f"{auc:.0%} of the time (50% is a coin). A probability is worth acting on only "
            "by how far it sits above the expected hit rate now (the long-run hit rate the "
            "probabilities are levelled to), and most days no symbol is far above it.")


def versions_frame(versions: Sequence[ModelVersion]) -> pd.DataFrame:
    """Return the registry as a table, newest first."""
    return pd.DataFrame([{
        "version": v.version, "status": v.status.value, "created": format_ist(v.created_at),
        "by": v.created_by, "trees": f"{v.train_from}..{v.train_to}" if v.train_from else "",
        "calibrated": (f"{v.calibration_from}..{v.calibration_to} ({calibrator_label(v)})"
                       if v.calibration_from else ""),
        "auc": v.metrics.get("auc"), "ece": v.metrics.get("ece"),
        "held-out hit rate": v.metrics.get("base_rate"), "symbols": v.n_symbols,
        "sha256": (v.sha256 or "")[:12], "activated": format_ist(v.activated_at),
        "note": v.message or "",
    } for v in versions], columns=["version", "status", "created", "by", "trees", "calibrated",
                                   "auc", "ece", "held-out hit rate", "symbols", "sha256",
                                   "activated", "note"])
