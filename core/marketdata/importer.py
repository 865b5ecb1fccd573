"""Read OHLCV bars from CSV: parse, validate every row, report what was dropped and why.

Pure (no database): :func:`read_bars` returns the validated bars and an :class:`ImportReport`,
or raises :class:`~core.errors.ValidationError` naming the rule, the rows and the values, so a
caller that writes only after it returns writes all of a file or nothing.

Accepted input: a header row (names case-insensitive) with a time column (``timestamp``,
``datetime`` or ``date``), ``open``, ``high``, ``low``, ``close``, ``volume`` and optionally
``symbol`` (``NSE:RELIANCE`` or ``RELIANCE``); other columns (``oi``) are ignored. Times are
ISO dates or date-times; naive ones are IST, zone-aware ones are converted to IST. Row numbers
in messages count like a spreadsheet: the header is row 1, the first bar row 2.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from core.clock import (
    IST,
    calendar_first_day,
    calendar_last_day,
    format_ist,
    is_bar_day,
    is_trading_day,
    now_ist,
)
from core.domain import STORED_INTERVALS, Interval, parse_choice
from core.errors import ConfigError, ValidationError

TIME_COLUMNS = ("timestamp", "datetime", "date")
PRICE_COLUMNS = ("open", "high", "low", "close")
VALUE_COLUMNS = (*PRICE_COLUMNS, "volume")
MAX_PRICE = 10**14  # Numeric(18, 4) holds 14 digits before the point
MAX_VOLUME = 2**63 - 1  # BigInteger
SHOW_ROWS = 5  # rows named in a message or a report
FIRST_ROW = 2  # spreadsheet number of the first data row (the header is row 1)
MAX_PRICE_DECIMALS = 4  # the store keeps Numeric(18, 4)
MIN_SPACING_STEPS = 2  # steps between bars needed before their spacing is judged
#: NSE symbols: upper-case letters, digits, '&' and '-', at most 20, with a letter (M&M, 3MINDIA).
SYMBOL_PATTERN = re.compile(r"(?=[A-Z0-9&\-]*[A-Z])[A-Z0-9][A-Z0-9&\-]{0,19}")
EXCHANGE_PREFIX = "NSE:"

REASON_DUPLICATE = "exact duplicate row"
REASON_NOT_TRADING_DAY = "not an NSE trading day"
REASON_BEFORE_PRE_OPEN = "before 09:00 (market closed)"
REASON_PRE_OPEN = "pre-open 09:00-09:15"
REASON_CLOSING = "closing session / after 15:30"

_SLOT = pd.Timedelta(minutes=5)
_PRE_OPEN = pd.Timedelta(hours=9)
_FIRST_SLOT = pd.Timedelta(hours=9, minutes=15)
_LAST_SLOT = pd.Timedelta(hours=15, minutes=25)
_IST_OFFSET = pd.Timedelta(hours=5, minutes=30)  # IST has had no daylight saving since 1945
_SLOTS_PER_SESSION = 75  # 09:15, 09:20, ... 15:25
_PRICE_QUANTUM = Decimal(1).scaleb(-MAX_PRICE_DECIMALS)
_AWARE_TIME = r"\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?\s*(?:Z|[+-]\d{2}:?\d{2})$"


@dataclass(frozen=True, slots=True)
class Dropped:
    """Rows dropped for one reason: how many and the first few row numbers."""

    count: int
    rows: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Gaps:
    """What is missing between the first and the last kept bar.

    ``missing_days``: NSE trading days without any bar. ``missing_slots``: 5-minute slots
    (09:15-15:25 IST) without a bar on days that have bars (always 0 for daily files).
    """

    missing_days: int = 0
    missing_slots: int = 0
    first_missing_days: tuple[date, ...] = ()
    first_missing_slots: tuple[datetime, ...] = ()

    def describe(self) -> str:
        """Return a one-line summary."""
        if not self.missing_days and not self.missing_slots:
            return "no gaps"
        parts = []
        if self.missing_days:
            days = ", ".join(d.isoformat() for d in self.first_missing_days)
            parts.append(f"{self.missing_days:,} trading day(s) without bars (first: {days})")
        if self.missing_slots:
            slots = ", ".join(s.strftime("%Y-%m-%d %H:%M") for s in self.first_missing_slots)
            parts.append(f"{self.missing_slots:,} missing 5-minute slot(s) (first: {slots} IST)")
        return "gaps: " + "; ".join(parts)


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one file's import read, kept, dropped (by reason) and found missing.

    ``first_bar``/``last_bar`` are IST bar starts; ``seconds`` is the wall time of parsing and
    storing, filled in by the service.
    """

    file_name: str
    symbol: str
    interval: Interval
    rows_read: int
    rows_kept: int
    dropped: Mapping[str, Dropped]
    gaps: Gaps
    first_bar: datetime | None
    last_bar: datetime | None
    seconds: float = 0.0
    #: Bars of the file already stored with other values; the import replaced them.
    replaced: int = 0
    #: The symbol was not in the instrument master: the import created the instrument.
    new_instrument: bool = False

    @property
    def rows_dropped(self) -> int:
        """Return how many rows were dropped, all reasons together."""
        return sum(d.count for d in self.dropped.values())

    def describe(self) -> list[str]:
        """Return human-readable lines: what was kept, each drop reason, the gaps."""
        span = f" ({format_ist(self.first_bar)} to {format_ist(self.last_bar)})"
        lines = [
            f"{self.file_name}: {self.symbol} {self.interval.value}, {self.rows_read:,} rows "
            f"read, {self.rows_kept:,} bars kept{span if self.first_bar else ''}"
        ]
        if self.new_instrument:
            lines.append(f"  {self.new_instrument_note()}")
        for reason, dropped in self.dropped.items():
            rows = ", ".join(str(r) for r in dropped.rows)
            more = ", ..." if dropped.count > len(dropped.rows) else ""
            lines.append(f"  dropped {dropped.count:,} row(s): {reason} (rows {rows}{more})")
        if self.replaced:
            lines.append(f"  replaced {self.replaced:,} stored bar(s) that had other values")
        lines.append(f"  {self.gaps.describe()}")
        return lines

    def new_instrument_note(self) -> str:
        """Return the note that the import created the instrument (see ``new_instrument``)."""
        return (
            f"new instrument {self.symbol} (not in the instrument master; no sector): it is "
            "now offered for trading; check the symbol is the NSE one"
        )

    def dropped_table(self) -> pd.DataFrame:
        """Return the drop reasons as a table: reason, rows dropped, first row numbers."""
        return pd.DataFrame(
            [
                {
                    "Reason": reason,
                    "Rows dropped": d.count,
                    "First rows": ", ".join(str(r) for r in d.rows),
                }
                for reason, d in self.dropped.items()
            ],
            columns=["Reason", "Rows dropped", "First rows"],
        )

    def summary(self) -> dict[str, Any]:
        """Return a JSON-safe summary for the audit trail."""
        return {
            "file": self.file_name,
            "symbol": self.symbol,
            "interval": self.interval.value,
            "rows_read": self.rows_read,
            "rows_kept": self.rows_kept,
            "replaced": self.replaced,
            "new_instrument": self.new_instrument,
            "dropped": {reason: d.count for reason, d in self.dropped.items()},
            "missing_days": self.gaps.missing_days,
            "missing_slots": self.gaps.missing_slots,
            "first_bar": self.first_bar.isoformat() if self.first_bar else None,
            "last_bar": self.last_bar.isoformat() if self.last_bar else None,
        }


@dataclass(frozen=True, eq=False)
class ParsedBars:
    """Validated bars ready for ``store.upsert_bars`` and the report of how they were read.

    ``bars``: IST DatetimeIndex ``ts`` (bar start, ascending, unique), Decimal ``open``,
    ``high``, ``low``, ``close`` exactly as written, int64 ``volume``.
    """

    bars: pd.DataFrame
    report: ImportReport


@dataclass
class _Rows:
    """The file being read: raw text cells and the parsed columns, positionally aligned."""

    file_name: str
    raw: pd.DataFrame
    time_column: str
    ts: pd.Series = field(default_factory=lambda: pd.Series(dtype="datetime64[ns]"))  # IST wall
    values: dict[str, pd.Series] = field(default_factory=dict)

    def refuse(self, rule: str, mask: pd.Series | np.ndarray, detail: Callable[[int], str]) -> None:
        """Raise ValidationError naming ``rule`` and the first rows where ``mask`` holds."""
        positions = np.flatnonzero(np.asarray(mask, dtype=bool))
        if positions.size == 0:
            return
        shown = "; ".join(f"row {p + FIRST_ROW}: {detail(int(p))}" for p in positions[:SHOW_ROWS])
        more = f"; and {positions.size - SHOW_ROWS} more" if positions.size > SHOW_ROWS else ""
        raise ValidationError(
            f"{self.file_name}: {rule}. Broken on {positions.size} row(s): {shown}{more}. "
            "Nothing was imported."
        )

    def cells(self, position: int, columns: Sequence[str]) -> str:
        """Return the cells of one row as written, e.g. ``high '10' low '12'``."""
        return " ".join(f"{c} {self.raw.at[position, c]!r}" for c in columns)


def read_bars_file(
    path: Path | str,
    symbol: str | None = None,
    interval: Interval | str | None = None,
    known_symbols: frozenset[str] = frozenset(),
) -> ParsedBars:
    """Read and validate the CSV at ``path``; see :func:`read_bars`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ValidationError(f"{path}: cannot read the file ({exc.strerror})") from exc
    return read_bars(data, path.name, symbol=symbol, interval=interval, known_symbols=known_symbols)


def read_bars(
    data: bytes | str,
    file_name: str,
    symbol: str | None = None,
    interval: Interval | str | None = None,
    known_symbols: frozenset[str] = frozenset(),
) -> ParsedBars:
    """Parse and validate one CSV of one symbol's bars.

    Parameters
    ----------
    data
        The file's content (UTF-8, a byte-order mark is allowed).
    file_name
        Shown in messages; its stem (before any ``_``) names the symbol when neither
        ``symbol`` nor a symbol column does.
    symbol
        The declared NSE symbol; a symbol column that disagrees refuses the file, and so does a
        file named after another of ``known_symbols`` (``RELIANCE.csv`` declared as TCS).
    interval
        ``"5m"`` or ``"1d"``; inferred when None (all times at midnight: daily, else 5-minute).

    Returns
    -------
    ParsedBars
        The kept bars and the report. Rows outside the session (pre-open, closing session,
        non-trading days) and exact duplicates are dropped and reported, never raised.

    Raises
    ------
    ValidationError
        Empty file, missing column, unparseable time or number, a bar that starts after now
        (IST), non-positive price, negative
        or fractional volume, high < low, open/close outside [low, high], one timestamp with
        different values, a symbol other than the declared one, no bar left.
    """
    rows = _Rows(file_name, _read_frame(data, file_name), "")
    rows.time_column = _check_columns(rows)
    resolved_symbol = _resolve_symbol(rows, symbol, known_symbols)
    rows.ts = _parse_times(rows)
    _refuse_future(rows)
    _refuse_outside_calendar(rows)
    _parse_values(rows)
    _check_values(rows)
    resolved_interval = _resolve_interval(rows, interval)
    reasons = _drop_reasons(rows, resolved_interval)
    kept = reasons == ""
    if not kept.any():
        counts = ", ".join(f"{r}: {n}" for r, n in pd.Series(reasons).value_counts().items())
        raise ValidationError(
            f"{file_name}: no bar left to import; all {len(reasons)} row(s) were dropped "
            f"({counts}). Check the interval ({resolved_interval.value}) and the times. "
            "Nothing was imported."
        )
    _check_spacing(rows, kept, resolved_interval)
    bars = _kept_bars(rows, kept)
    report = ImportReport(
        file_name=file_name,
        symbol=resolved_symbol,
        interval=resolved_interval,
        rows_read=len(rows.raw),
        rows_kept=len(bars),
        dropped=_dropped(reasons),
        gaps=_gaps(pd.DatetimeIndex(rows.ts.array[kept]).sort_values(), resolved_interval),
        first_bar=bars.index[0].to_pydatetime(),
        last_bar=bars.index[-1].to_pydatetime(),
    )
    return ParsedBars(bars=bars, report=report)


# -- reading and columns -----------------------------------------------------------------------
def _read_frame(data: bytes | str, file_name: str) -> pd.DataFrame:
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8-sig")
        except UnicodeDecodeError as exc:
            raise ValidationError(
                f"{file_name}: not a UTF-8 text CSV (byte {exc.start} is {data[exc.start]:#x}). "
                "Nothing was imported."
            ) from exc
    else:
        text = data
    if not text.strip():
        raise ValidationError(f"{file_name}: the file is empty. Nothing was imported.")
    try:
        frame = pd.read_csv(io.StringIO(text), dtype=str, keep_default_na=False)
    except (pd.errors.ParserError, pd.errors.EmptyDataError) as exc:
        raise ValidationError(
            f"{file_name}: not a readable CSV ({exc}). Nothing was imported."
        ) from exc
    if frame.empty:
        raise ValidationError(
            f"{file_name}: the file has a header but no rows of bars. Nothing was imported."
        )
    return frame.reset_index(drop=True)


def _check_columns(rows: _Rows) -> str:
    names = [str(c).strip().lower() for c in rows.raw.columns]
    repeated = sorted({n for n in names if names.count(n) > 1})
    if repeated:
        raise ValidationError(
            f"{rows.file_name}: each column may appear once; repeated: {', '.join(repeated)}. "
            "Nothing was imported."
        )
    rows.raw.columns = pd.Index(names)
    time_column = next((c for c in TIME_COLUMNS if c in names), None)
    missing = [c for c in VALUE_COLUMNS if c not in names]
    if time_column is None or missing:
        need = ([] if time_column else ["a time column (timestamp, datetime or date)"]) + missing
        raise ValidationError(
            f"{rows.file_name}: missing column(s): {', '.join(need)}. Found: "
            f"{', '.join(names)}. Nothing was imported."
        )
    for column in (time_column, *VALUE_COLUMNS):
        rows.raw[column] = rows.raw[column].str.strip()
    return time_column


def normalise_symbol(text: str, what: str) -> str:
    """Return an NSE symbol in upper case without ``NSE:``, or raise ValidationError."""
    symbol = text.strip().upper().removeprefix(EXCHANGE_PREFIX)
    if not SYMBOL_PATTERN.fullmatch(symbol):
        raise ValidationError(
            f"{what} {text!r} is not an NSE symbol (letters, digits, '&' or '-', at most 20, "
            "at least one letter)"
        )
    return symbol


def _resolve_symbol(rows: _Rows, declared: str | None, known: frozenset[str]) -> str:
    wanted = normalise_symbol(declared, "Symbol") if declared and declared.strip() else None
    if "symbol" in rows.raw.columns:
        column = rows.raw["symbol"].str.strip().str.upper().str.removeprefix(EXCHANGE_PREFIX)
        if wanted is not None:
            rows.refuse(
                f"the file must hold bars of the declared symbol {wanted} only",
                column != wanted,
                lambda p: f"symbol {rows.raw.at[p, 'symbol']!r}",
            )
            return wanted
        first = column.iloc[0]
        rows.refuse(
            f"one symbol per file; the first row names {first}",
            column != first,
            lambda p: f"symbol {rows.raw.at[p, 'symbol']!r}",
        )
        return normalise_symbol(first, f"{rows.file_name}: symbol column value")
    stem = Path(rows.file_name).stem.split("_")[0]
    if wanted is not None:
        named = stem.strip().upper()
        if named in known and named != wanted:
            raise ValidationError(
                f"{rows.file_name}: the file is named after {named} but {wanted} was declared; "
                f"rename the file or clear the declared symbol (it would overwrite {wanted}'s "
                "bars). Nothing was imported."
            )
        return wanted
    try:
        return normalise_symbol(
            stem, f"{rows.file_name}: no symbol declared or in a column; the file name"
        )
    except ValidationError as exc:
        raise ValidationError(f"{exc}. Declare the symbol. Nothing was imported.") from None


# -- parsing -----------------------------------------------------------------------------------
def _parse_times(rows: _Rows) -> pd.Series:
    """Return the times as naive IST wall-clock times (zone arithmetic is slow in pandas)."""
    text = rows.raw[rows.time_column]
    aware = text.str.contains(_AWARE_TIME, regex=True)
    if aware.any() and not aware.all():
        rows.refuse(
            "times must be all naive (IST) or all with a zone offset, not mixed; the first row "
            f"is {'zone-aware' if aware.iloc[0] else 'naive'}",
            aware != aware.iloc[0],
            lambda p: f"{rows.time_column} {text.iloc[p]!r}",
        )
    if aware.all():
        utc = pd.to_datetime(text, format="ISO8601", utc=True, errors="coerce")
        parsed = utc.dt.tz_localize(None) + _IST_OFFSET
    else:
        parsed = pd.to_datetime(text, format="ISO8601", errors="coerce")
    rows.refuse(
        f"{rows.time_column} must be an ISO date or date-time like 2021-03-17 09:15:00",
        parsed.isna(),
        lambda p: f"{rows.time_column} {text.iloc[p]!r}",
    )
    return parsed


def _refuse_future(rows: _Rows) -> None:
    """Refuse bars that start after now (IST): no market data exists for them yet."""
    now = now_ist()
    rows.refuse(
        f"bars may not start in the future (now is {format_ist(now)})",
        rows.ts > pd.Timestamp(now.replace(tzinfo=None)),
        lambda p: f"{rows.time_column} {rows.raw.at[p, rows.time_column]!r}",
    )


def _refuse_outside_calendar(rows: _Rows) -> None:
    """Refuse dates the trading calendar does not know: their trading days are unknowable."""
    days = rows.ts.dt.normalize()
    unknown = set()
    for day in days.unique():
        try:
            _trading(pd.Timestamp(day).date())
        except ConfigError:
            unknown.add(day)
    if unknown:
        rows.refuse(
            f"every bar must fall within the trading calendar, which covers "
            f"{calendar_first_day()} to {calendar_last_day()} (for a later year, enter NSE's "
            "official holiday list in HOLIDAYS_BEYOND_CALENDAR in core/clock.py)",
            days.isin(unknown),
            lambda p: f"{rows.time_column} {rows.raw.at[p, rows.time_column]!r}",
        )


def _parse_values(rows: _Rows) -> None:
    for column in VALUE_COLUMNS:
        numbers = pd.to_numeric(rows.raw[column], errors="coerce").astype("float64")
        rows.refuse(
            f"{column} must be a number",
            ~np.isfinite(numbers.to_numpy()),
            lambda p, c=column: rows.cells(p, [c]),  # type: ignore[misc]
        )
        rows.values[column] = numbers


def _check_values(rows: _Rows) -> None:
    v = rows.values
    rows.refuse(
        "prices must be positive (> 0)",
        (v["open"] <= 0) | (v["high"] <= 0) | (v["low"] <= 0) | (v["close"] <= 0),
        lambda p: rows.cells(p, PRICE_COLUMNS),
    )
    rows.refuse(
        f"prices must be below {MAX_PRICE:,} (the stored precision)",
        (v["open"] >= MAX_PRICE)
        | (v["high"] >= MAX_PRICE)
        | (v["low"] >= MAX_PRICE)
        | (v["close"] >= MAX_PRICE),
        lambda p: rows.cells(p, PRICE_COLUMNS),
    )
    rows.refuse(
        "volume must not be negative",
        v["volume"] < 0,
        lambda p: rows.cells(p, ["volume"]),
    )
    rows.refuse(
        f"volume must be at most {MAX_VOLUME:,}",
        v["volume"] > MAX_VOLUME,
        lambda p: rows.cells(p, ["volume"]),
    )
    rows.refuse(
        "volume must be a whole number of shares",
        v["volume"] % 1 != 0,
        lambda p: rows.cells(p, ["volume"]),
    )
    rows.refuse(
        "high must be ≥ low",
        v["high"] < v["low"],
        lambda p: rows.cells(p, ["high", "low"]),
    )
    outside = (
        (v["open"] < v["low"])
        | (v["open"] > v["high"])
        | (v["close"] < v["low"])
        | (v["close"] > v["high"])
    )
    rows.refuse(
        "open and close must lie within [low, high]",
        outside,
        lambda p: rows.cells(p, PRICE_COLUMNS),
    )


def _resolve_interval(rows: _Rows, declared: Interval | str | None) -> Interval:
    offset = rows.ts - rows.ts.dt.normalize()
    at_midnight = offset == pd.Timedelta(0)
    if declared is None or (isinstance(declared, str) and declared.strip() in ("", "auto")):
        interval = Interval.D1 if at_midnight.all() else Interval.M5
    else:
        interval = parse_choice(Interval, str(declared).strip(), "interval")
        if interval not in STORED_INTERVALS:
            stored = ", ".join(i.value for i in STORED_INTERVALS)
            raise ValidationError(
                f"{rows.file_name}: interval {interval.value} is not stored (only {stored}); "
                "weekly bars are resampled from daily ones. Nothing was imported."
            )
    show = lambda p: f"{rows.time_column} {rows.raw.at[p, rows.time_column]!r}"  # noqa: E731
    if interval is Interval.M5 and at_midnight.any():
        daily = bool(at_midnight.sum() * 2 >= len(at_midnight))
        most = "dates at midnight (daily bars)" if daily else "times of day (5-minute bars)"
        rows.refuse(
            "a file holds daily bars (dates at midnight) or 5-minute bars (times of day), not "
            f"both; most rows are {most}, these are not",
            at_midnight != daily,
            show,
        )
    if interval is Interval.D1:
        rows.refuse("daily bars must be stamped at midnight IST", ~at_midnight, show)
    else:
        rows.refuse(
            "5-minute bars must start on a 5-minute mark (09:15, 09:20, ...)",
            offset % _SLOT != pd.Timedelta(0),
            show,
        )
    return interval


# -- dropping, duplicates, output --------------------------------------------------------------
@lru_cache(maxsize=8192)
def _trading(day: date) -> bool:
    return is_trading_day(day)


@lru_cache(maxsize=8192)
def _bar_day(day: date) -> bool:
    return is_bar_day(day)


def _drop_reasons(rows: _Rows, interval: Interval) -> np.ndarray:
    """Return, per row, why it is dropped ('' when kept); refuse conflicting duplicates."""
    day = rows.ts.dt.normalize()
    unique_days, which = np.unique(day.to_numpy(), return_inverse=True)
    trading = np.array([_trading(pd.Timestamp(d).date()) for d in unique_days])[which]
    if interval is Interval.D1:  # daily bars also exist for Muhurat / special sessions
        bar_day = np.array([_bar_day(pd.Timestamp(d).date()) for d in unique_days])[which]
        reasons = np.where(bar_day, "", REASON_NOT_TRADING_DAY).astype(object)
    else:
        offset = (rows.ts - day).to_numpy()
        reasons = np.select(
            [
                ~trading,
                offset < _PRE_OPEN.to_timedelta64(),
                offset < _FIRST_SLOT.to_timedelta64(),
                offset > _LAST_SLOT.to_timedelta64(),
            ],
            [REASON_NOT_TRADING_DAY, REASON_BEFORE_PRE_OPEN, REASON_PRE_OPEN, REASON_CLOSING],
            default="",
        ).astype(object)
    keyed = pd.DataFrame({"ts": rows.ts, **rows.values})
    exact = keyed.duplicated(keep="first").to_numpy()
    reasons[exact & (reasons == "")] = REASON_DUPLICATE
    distinct = keyed.loc[~exact, "ts"]
    clash = np.zeros(len(keyed), dtype=bool)
    clash[distinct.index[distinct.duplicated(keep=False)]] = True
    rows.refuse(
        "one bar per time: the same time appears with different values",
        clash,
        lambda p: f"{rows.raw.at[p, rows.time_column]!r} " + rows.cells(p, VALUE_COLUMNS),
    )
    return reasons


def _check_spacing(rows: _Rows, kept: np.ndarray, interval: Interval) -> None:
    """Refuse a file whose kept bars are not spaced like ``interval`` most of the time.

    Real files miss a bar now and then and daily ones skip holidays, so the rule is about the
    typical step, judged once a file has :data:`MIN_SPACING_STEPS` steps: in a 5-minute file
    the 5-minute step within a session must be the most common one (15-minute bars on 5-minute
    marks are refused); in a daily file at least half of the steps between trading days must go
    to the next trading day (weekly or monthly bars are refused; special sessions are not judged).
    """
    positions = np.flatnonzero(kept)
    wall = rows.ts.to_numpy()[positions]
    order = np.argsort(wall, kind="stable")
    positions, times = positions[order], pd.DatetimeIndex(wall[order])
    if interval is Interval.M5:
        _check_intraday_spacing(rows.file_name, positions, times)
    else:
        _check_daily_spacing(rows.file_name, positions, times)


def _pair(positions: np.ndarray, step: int) -> str:
    first, second = (int(positions[step + k]) + FIRST_ROW for k in (0, 1))
    return f"rows {first}-{second}" if second == first + 1 else f"rows {first} and {second}"


def _check_intraday_spacing(file_name: str, positions: np.ndarray, times: pd.DatetimeIndex) -> None:
    days = times.normalize()
    in_session = np.flatnonzero(days[1:] == days[:-1])
    if in_session.size < MIN_SPACING_STEPS:
        return
    steps = pd.Series((times[1:] - times[:-1])[in_session])
    counts = steps.value_counts()
    fives = int(counts.get(_SLOT, 0))
    if fives >= counts.iloc[0]:
        return
    common = counts.index[0]
    step = int(in_session[np.flatnonzero(steps == common)[0]])
    minutes = int(common / pd.Timedelta(minutes=1))
    raise ValidationError(
        f"{file_name}: bars of a 5-minute file must be 5 minutes apart within a session; "
        f"most steps are {minutes} minutes ({int(counts.iloc[0]):,} of {len(steps):,}; "
        f"5 minutes: {fives:,}): {_pair(positions, step)} are {minutes} minutes apart "
        f"({times[step]:%Y-%m-%d %H:%M} → {times[step + 1]:%H:%M}). Only 5-minute and daily "
        "bars are stored. Nothing was imported."
    )


def _check_daily_spacing(file_name: str, positions: np.ndarray, times: pd.DatetimeIndex) -> None:
    if len(times) <= MIN_SPACING_STEPS:
        return
    days = times.normalize().to_numpy().astype("datetime64[D]")
    trading = np.array(
        _trading_days(times[0].date(), times[-1].date()), dtype="datetime64[D]"
    )
    skipped = np.searchsorted(trading, days[1:], "left") - np.searchsorted(
        trading, days[:-1], "right"
    )
    regular = np.isin(days, trading)  # steps from or to a special session are not judged
    judged = regular[1:] & regular[:-1]
    skipping = np.flatnonzero(judged & (skipped > 0))
    if judged.sum() < MIN_SPACING_STEPS or skipping.size * 2 <= judged.sum():
        return
    step = int(skipping[0])
    raise ValidationError(
        f"{file_name}: bars of a daily file must be on consecutive trading days most of the "
        f"time; {skipping.size:,} of {int(judged.sum()):,} steps skip trading days: "
        f"{_pair(positions, step)} go from {times[step]:%Y-%m-%d} to "
        f"{times[step + 1]:%Y-%m-%d}, skipping {int(skipped[step])} trading day(s). This looks "
        "like weekly or monthly bars; import daily bars (weekly ones are resampled from them). "
        "Nothing was imported."
    )


def _too_fine(price: Decimal) -> bool:
    exponent = price.as_tuple().exponent
    return (
        isinstance(exponent, int)
        and exponent < -MAX_PRICE_DECIMALS
        and price != price.quantize(_PRICE_QUANTUM)
    )


def _kept_bars(rows: _Rows, kept: np.ndarray) -> pd.DataFrame:
    """Return the kept rows as bars with Decimal prices exactly as written, oldest first."""
    prices = {c: [Decimal(x) for x in rows.raw[c]] for c in PRICE_COLUMNS}
    too_fine = np.zeros(len(rows.raw), dtype=bool)
    for column in PRICE_COLUMNS:
        suspects = np.flatnonzero(rows.raw[column].str.contains(r"\.\d{5,}|[eE]", regex=True))
        too_fine[suspects] |= np.array([_too_fine(prices[column][p]) for p in suspects], bool)
    rows.refuse(
        f"prices may have at most {MAX_PRICE_DECIMALS} decimal places (the store keeps "
        f"{MAX_PRICE_DECIMALS})",
        too_fine,
        lambda p: rows.cells(p, PRICE_COLUMNS),
    )
    columns: dict[str, Any] = {c: np.asarray(prices[c], dtype=object)[kept] for c in PRICE_COLUMNS}
    columns["volume"] = rows.values["volume"].to_numpy()[kept].astype("int64")
    bars = pd.DataFrame(columns, index=_aware(pd.DatetimeIndex(rows.ts.array[kept], name="ts")))
    return bars.sort_index()


def _aware(wall: pd.DatetimeIndex) -> pd.DatetimeIndex:
    """Return IST wall-clock times as tz-aware IST times."""
    return (wall - _IST_OFFSET).tz_localize("UTC").tz_convert(IST)


def _dropped(reasons: np.ndarray) -> dict[str, Dropped]:
    """Return reason -> Dropped, reasons in order of first appearance."""
    result: dict[str, Dropped] = {}
    dropped = pd.Series(reasons)[reasons != ""]
    for reason, group in dropped.groupby(dropped, sort=False):
        rows = tuple(int(p) + FIRST_ROW for p in group.index[:SHOW_ROWS])
        result[str(reason)] = Dropped(count=len(group), rows=rows)
    return result


def _trading_days(first: date, last: date) -> list[date]:
    return [d.date() for d in pd.date_range(first, last, freq="D") if _trading(d.date())]


def _gaps(index: pd.DatetimeIndex, interval: Interval) -> Gaps:
    """Return the trading days (and 5-minute slots) missing between the first and last bar.

    ``index``: the kept bars' IST wall-clock times, ascending.
    """
    days = index.normalize().unique()
    present = {d.date() for d in days}
    expected_days = _trading_days(index[0].date(), index[-1].date())
    missing_days = [d for d in expected_days if d not in present]
    if interval is Interval.D1:
        return Gaps(len(missing_days), 0, tuple(missing_days[:SHOW_ROWS]), ())
    offsets = np.arange(_SLOTS_PER_SESSION, dtype="int64") * _SLOT.value + _FIRST_SLOT.value
    starts = np.add.outer(days.asi8, offsets).ravel()
    slots = pd.DatetimeIndex(starts.astype("datetime64[ns]"))
    slots = slots[(slots >= index[0]) & (slots <= index[-1])]
    missing = slots.difference(index)
    return Gaps(
        missing_days=len(missing_days),
        missing_slots=len(missing),
        first_missing_days=tuple(missing_days[:SHOW_ROWS]),
        first_missing_slots=tuple(t.to_pydatetime() for t in _aware(missing[:SHOW_ROWS])),
    )
