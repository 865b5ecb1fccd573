"""Risk engine benchmark: warm pre-trade decisions and post-trade evaluation of 1,000 positions.

Run: ``.venv/bin/python bench/risk.py [--decisions N] [--updates U]`` (or ``make bench``). It
reads ``data/sample/nse_daily`` directly (no database) for realistic prices, ATR(14) and the
60-day daily-return correlations of the last bars, then measures the engine only:

- ``pretrade_engine_p50_ms`` / ``pretrade_engine_p95_ms``: one :func:`engines.risk.decide`
  call, warm, over N orders of 20 accounts (capital ₹2-50 lakh, 0-9 open symbols, some in
  drawdown or near a loss limit, every market regime, explicit stops on about half, exits and
  flips among them);
- ``posttrade_1000_ms`` (median) / ``posttrade_1000_p95_ms``: one :func:`engines.risk.evaluate`
  of 1,000 positions across 20 accounts (stop-loss / target / trailing stop on 80% of them,
  MTM limits for three accounts, the household and two strategies, loss and drawdown figures
  for every account, two accounts due for the MIS square-off) per price update, over U
  updates of a random walk of the prices.

- ``pretrade_p95_ms`` (and ``_p50``/``_p95`` per database): one warm decision of the desk's
  gate, :meth:`core.services.risk_gate.DeskRiskGate.check`, on a seeded demo desk on SQLite and on a
  throwaway PostgreSQL server (daily bars of ten symbols, an account with five positions):
  the states read fresh, the recent-orders read (orders/second, duplicates), the book's
  version check, then the engine. ``pretrade_p95_ms`` is the slower database's p95.

The last line is one JSON object. Goals (issue 6): pre-trade ≤ 2 ms p95 warm, post-trade
≤ 50 ms for 1,000 positions.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import statistics
import sys
import time
from dataclasses import dataclass, replace
from datetime import datetime
from decimal import Decimal
from pathlib import Path

import numpy as np
import talib

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.clock import IST
from core.trading import Product, Side
from engines.evaluate import read_bars_dir
from engines.risk import decide, evaluate
from engines.risk_types import (
    AccountRisk,
    Exposure,
    LivePosition,
    MtmLimit,
    OrderAction,
    PositionControl,
    PostTradeInput,
    PreTradeInput,
    RiskLimits,
    Scope,
)
from engines.signal_types import Regime

SAMPLE = Path(__file__).resolve().parent.parent / "data" / "sample" / "nse_daily"
TICK = Decimal("0.05")
ACCOUNTS = 20
#: NSE industry of the sample symbols (benchmark inputs only; the desk reads instruments.sector).
SECTORS = {
    "ADANIENT": "Metals & Mining", "ADANIPORTS": "Services", "APOLLOHOSP": "Healthcare",
    "AXISBANK": "Financial Services", "BAJAJFINSV": "Financial Services",
    "BAJFINANCE": "Financial Services", "BEL": "Capital Goods", "BHARTIARTL": "Telecom",
    "DRREDDY": "Healthcare", "EICHERMOT": "Automobile", "ETERNAL": "Consumer Services",
    "GRASIM": "Construction Materials", "HCLTECH": "IT", "HDFCBANK": "Financial Services",
    "HDFCLIFE": "Financial Services", "HEROMOTOCO": "Automobile", "HINDUNILVR": "FMCG",
    "ICICIBANK": "Financial Services", "INDUSINDBK": "Financial Services", "INFY": "IT",
    "JIOFIN": "Financial Services", "JSWSTEEL": "Metals & Mining",
    "KOTAKBANK": "Financial Services", "M&M": "Automobile", "NESTLEIND": "FMCG",
    "ONGC": "Oil Gas & Fuels", "POWERGRID": "Power", "RELIANCE": "Oil Gas & Fuels",
    "SBILIFE": "Financial Services", "SBIN": "Financial Services",
    "SHRIRAMFIN": "Financial Services", "SUNPHARMA": "Healthcare", "TATACONSUM": "FMCG",
    "TATAMOTORS": "Automobile", "TATASTEEL": "Metals & Mining", "TCS": "IT", "TECHM": "IT",
    "TRENT": "Consumer Services", "ULTRACEMCO": "Construction Materials", "WIPRO": "IT",
}


@dataclass(frozen=True, slots=True)
class Quote:
    """A symbol's last close (on the tick), ATR(14) and last 60 daily returns."""

    price: Decimal
    atr: Decimal
    returns: np.ndarray


def tick(value: float) -> Decimal:
    """Return ``value`` rounded to the 0.05 tick (at least one tick)."""
    return max(Decimal(round(value / 0.05)) * TICK, TICK)


def market() -> tuple[dict[str, Quote], dict[str, dict[str, float]]]:
    """Return each sample symbol's quote and the pairwise 60-day return correlations."""
    quotes = {}
    for symbol, bars in read_bars_dir(SAMPLE).items():
        tail = bars.iloc[-80:]
        atr = talib.ATR(tail["high"].to_numpy(), tail["low"].to_numpy(),
                        tail["close"].to_numpy(), timeperiod=14)[-1]
        returns = np.diff(np.log(tail["close"].to_numpy()))[-60:]
        quotes[symbol] = Quote(tick(float(tail["close"].iloc[-1])), tick(float(atr)), returns)
    names = sorted(quotes)
    matrix = np.corrcoef(np.vstack([quotes[s].returns for s in names]))
    correlations = {a: {b: float(matrix[i, j]) for j, b in enumerate(names) if b != a}
                    for i, a in enumerate(names)}
    return quotes, correlations


def _exposures(rng: random.Random, quotes: dict[str, Quote], capital: Decimal
               ) -> tuple[Exposure, ...]:
    held = rng.sample(sorted(quotes), rng.randint(0, 9))
    out = []
    for symbol in held:
        value = capital * Decimal(rng.randint(3, 12)) / 100
        quantity = max(int(value / quotes[symbol].price), 1)
        out.append(Exposure(symbol, SECTORS.get(symbol), quantity,
                            quantity * quotes[symbol].price))
    return tuple(out)


def orders(count: int, quotes: dict[str, Quote], correlations: dict[str, dict[str, float]],
           seed: int = 6) -> list[PreTradeInput]:
    """Return ``count`` realistic orders of 20 accounts (see the module docstring)."""
    rng = random.Random(seed)  # noqa: S311 - reproducible benchmark inputs, not a secret
    symbols = sorted(quotes)
    regimes = [Regime.TRENDING] * 4 + [Regime.MEAN_REVERTING] * 3 + [Regime.CHOPPY] * 2 + [
        Regime.PANIC, None]
    out = []
    for n in range(count):
        capital = Decimal(rng.randint(200_000, 5_000_000))
        symbol = rng.choice(symbols)
        quote = quotes[symbol]
        side = rng.choice((Side.BUY, Side.BUY, Side.SELL))
        quantity = max(int(capital * Decimal(rng.randint(2, 15)) / 100 / quote.price), 1)
        exposures = _exposures(rng, quotes, capital)
        position = next((e.quantity for e in exposures if e.symbol == symbol), 0)
        stop = None
        if rng.random() < 0.5:
            stop = quote.price - side.sign * tick(float(quote.atr) * rng.uniform(1.0, 2.5))
        out.append(PreTradeInput(
            action=rng.choice((OrderAction.PLACE, OrderAction.PLACE, OrderAction.GTT)),
            account_id=n % ACCOUNTS + 1, symbol=symbol, sector=SECTORS.get(symbol), side=side,
            product=rng.choice((Product.CNC, Product.MIS)), quantity=quantity, lot_size=1,
            price=quote.price, capital=capital, position_quantity=position, stop_price=stop,
            atr=quote.atr, exposures=exposures,
            correlations={e.symbol: correlations[symbol][e.symbol] for e in exposures
                          if e.symbol != symbol},
            day_pnl=capital * Decimal(rng.randint(-250, 150)) / 10_000,
            week_pnl=capital * Decimal(rng.randint(-600, 300)) / 10_000,
            peak_equity=capital * Decimal(rng.randint(100, 116)) / 100 if rng.random() < 0.7
            else None,
            regime=rng.choice(regimes), orders_last_second=rng.randint(0, 3),
            duplicate_age_s=rng.choice((None, None, None, 4.0, 30.0))))
    return out


def post_trade_inputs(updates: int, quotes: dict[str, Quote], seed: int = 6
                      ) -> list[PostTradeInput]:
    """Return ``updates`` price updates of 1,000 positions across 20 accounts."""
    rng = random.Random(seed)  # noqa: S311 - reproducible benchmark inputs, not a secret
    symbols = sorted(quotes)
    positions: list[LivePosition] = []
    controls: list[PositionControl] = []
    for account in range(1, ACCOUNTS + 1):
        for k in range(50):  # 40 symbols × CNC/MIS: 50 distinct positions per account
            symbol, product = symbols[k % len(symbols)], (Product.MIS, Product.CNC)[k // 40]
            quote = quotes[symbol]
            sign = rng.choice((1, 1, 1, -1))
            average = quote.price + tick(float(quote.atr) * rng.uniform(-1, 1))
            strategy = rng.choice((None, None, "momentum", "breakout"))
            positions.append(LivePosition(account, symbol, product, sign * rng.randint(1, 200),
                                          average, quote.price, Decimal(0), strategy))
            if rng.random() < 0.8:
                atr = quote.atr
                controls.append(PositionControl(
                    len(controls) + 1, account, symbol, product,
                    stop_loss=average - sign * 2 * atr, target=average + sign * 3 * atr,
                    trail_points=atr * 2 if rng.random() < 0.3 else None,
                    trail_pct=Decimal("2.5") if rng.random() < 0.3 else None,
                    extreme=average if rng.random() < 0.5 else None))
    limits = RiskLimits()
    accounts = tuple(AccountRisk(a, Decimal(1_000_000 + 50_000 * a),
                                 Decimal(-1_000 * a), Decimal(-2_500 * a),
                                 Decimal(1_100_000 + 50_000 * a), limits)
                     for a in range(1, ACCOUNTS + 1))
    mtm = (MtmLimit(Scope.HOUSEHOLD, "1", Decimal(200_000), Decimal(400_000), Decimal(-12_000),
                    tuple(range(1, ACCOUNTS + 1))),
           *(MtmLimit(Scope.ACCOUNT, str(a), Decimal(30_000), Decimal(60_000),
                      Decimal(-1_000 * a), (a,)) for a in (3, 7, 11)),
           *(MtmLimit(Scope.STRATEGY, name, Decimal(50_000), Decimal(80_000), Decimal(5_000),
                      tuple(range(1, ACCOUNTS + 1))) for name in ("momentum", "breakout")))
    now = datetime(2025, 9, 30, 15, 16, tzinfo=IST)
    out = []
    prices = {s: q.price for s, q in quotes.items()}
    for _ in range(updates):
        prices = {s: tick(float(p) * (1 + rng.gauss(0, 0.004))) for s, p in prices.items()}
        moved = tuple(replace(p, ltp=prices[p.symbol]) for p in positions)
        out.append(PostTradeInput(now=now, positions=moved, controls=tuple(controls),
                                  mtm_limits=mtm, accounts=accounts,
                                  mis_due=frozenset({5, 9})))
    return out


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 4)


def engine_figures(decisions: int = 2000, updates: int = 40) -> dict[str, object]:
    """Measure the pure engine and return its figures (the keys of the module docstring)."""
    quotes, correlations = market()
    inputs = orders(decisions, quotes, correlations)
    limits = RiskLimits()
    for inp in inputs:  # warm: imports, caches, the calendar
        decide(inp, limits)
    timings: list[float] = []
    approved = 0
    for _ in range(3):
        for inp in inputs:
            began = time.perf_counter()
            decision = decide(inp, limits)
            timings.append(time.perf_counter() - began)
            approved += decision.approved
    updates_in = post_trade_inputs(updates, quotes)
    evaluate(updates_in[0])  # warm
    post: list[float] = []
    square_offs = engages = 0
    for update in updates_in:
        began = time.perf_counter()
        result = evaluate(update)
        post.append(time.perf_counter() - began)
        square_offs += len(result.square_offs)
        engages += len(result.engages)
    return {
        "pretrade_engine_p50_ms": _ms(timings, 0.50),
        "pretrade_engine_p95_ms": _ms(timings, 0.95),
        "pretrade_decisions": len(timings),
        "pretrade_approved_share": round(approved / len(timings), 3),
        "posttrade_1000_ms": round(statistics.median(post) * 1000, 3),
        "posttrade_1000_p95_ms": _ms(post, 0.95),
        "posttrade_positions": len(updates_in[0].positions),
        "posttrade_controls": len(updates_in[0].controls),
        "posttrade_accounts": ACCOUNTS,
        "posttrade_updates": len(post),
        "posttrade_square_offs_per_update": round(square_offs / len(post), 1),
        "posttrade_engages_per_update": round(engages / len(post), 1),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
    }


GATE_SYMBOLS = ("INFY", "TCS", "SBIN", "RELIANCE", "HDFCBANK", "HCLTECH", "ONGC", "ICICIBANK",
                "AXISBANK", "WIPRO")


def _gate_run(url: str, checks: int) -> list[float]:
    """Time ``checks`` warm gate decisions on the desk at ``url``; return seconds each."""
    import tempfile

    from bench.desk import demo_desk
    from core.orders import RiskContext
    from core.trading import OrderRequest, OrderType, Product, Side
    from engines.risk_types import OrderAction
    from tests.support.market import open_market
    from tests.support.market import tick as write_tick

    services, actor = demo_desk(url)
    daily = Path(__file__).resolve().parent.parent / "data" / "sample" / "nse_daily"
    with tempfile.TemporaryDirectory() as tmp:
        for symbol in GATE_SYMBOLS:  # real daily bars: ATR, correlations, the regime
            rows = (daily / f"{symbol}.csv").read_text().splitlines()
            part = Path(tmp) / f"{symbol}.csv"
            part.write_text("\n".join([rows[0], *rows[-300:]]) + "\n")
            services.marketdata.import_file(part, symbol=symbol, interval="1d")
    prices = {s: f"{1000 + 50 * i}.00" for i, s in enumerate(GATE_SYMBOLS)}
    open_market(services.db, prices)
    account = next(a.id for a in services.household.list_accounts(actor)
                   if a.label == "Rahul · Intraday")
    for symbol in GATE_SYMBOLS[:5]:  # an account with open positions
        services.orders.place(actor, OrderRequest(account, symbol, Side.BUY, 5,
                                                  OrderType.MARKET, Product.MIS))
        write_tick(services.db, symbol, prices[symbol])
    services.orders.step()
    gate, manager = services.risk_gate, services.orders.manager
    rng = random.Random(7)  # noqa: S311 - sampling orders, not secrets
    contexts = []
    for _ in range(50):
        symbol = rng.choice(GATE_SYMBOLS)
        request, instrument = manager.normalise(OrderRequest(
            account, symbol, rng.choice([Side.BUY, Side.SELL]), rng.randint(1, 40),
            OrderType.MARKET, Product.MIS))
        estimate = manager.estimate(request, instrument)
        contexts.append((request, RiskContext(OrderAction.PLACE, account, actor.user_id,
                                              estimate.ltp or Decimal(1), estimate,
                                              instrument)))
    for request, context in contexts:  # warm: figures, regime, the book
        gate.check(request, context)
    timings = []
    for n in range(checks):
        request, context = contexts[n % len(contexts)]
        began = time.perf_counter()
        gate.check(request, context)
        timings.append(time.perf_counter() - began)
    services.db.dispose()
    return timings


def gate_figures(checks: int = 1000) -> dict[str, object]:
    """Measure the desk's gate (states, recent orders, book, market figures) on both DBs."""
    import tempfile

    from tests.support.pg import PostgresServer

    figures: dict[str, object] = {"pretrade_checks": checks}
    with tempfile.TemporaryDirectory() as tmp:
        sqlite = _gate_run(f"sqlite:///{tmp}/bench.db", checks)
    with PostgresServer() as server:
        server.create_database("bench")
        postgres = _gate_run(server.url("bench"), checks)
    figures["pretrade_p50_ms_sqlite"] = _ms(sqlite, 0.50)
    figures["pretrade_p95_ms_sqlite"] = _ms(sqlite, 0.95)
    figures["pretrade_p50_ms_postgres"] = _ms(postgres, 0.50)
    figures["pretrade_p95_ms_postgres"] = _ms(postgres, 0.95)
    figures["pretrade_p95_ms"] = max(figures["pretrade_p95_ms_sqlite"],  # type: ignore[type-var]
                                     figures["pretrade_p95_ms_postgres"])
    return figures


def main() -> int:
    """Measure and print the figures; return the exit code."""
    args = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    args.add_argument("--decisions", type=int, default=2000, help="pre-trade orders (x3 runs)")
    args.add_argument("--updates", type=int, default=40, help="post-trade price updates")
    args.add_argument("--checks", type=int, default=1000,
                      help="gate decisions through the desk per database (0: engine only)")
    opts = args.parse_args()
    figures = engine_figures(opts.decisions, opts.updates)
    if opts.checks:
        figures.update(gate_figures(opts.checks))
        print(f"pre-trade through the desk's gate p95 {figures['pretrade_p95_ms']} ms")
    print(f"pre-trade decide p95 {figures['pretrade_engine_p95_ms']} ms "
          f"(p50 {figures['pretrade_engine_p50_ms']} ms); post-trade 1,000 positions "
          f"{figures['posttrade_1000_ms']} ms median, {figures['posttrade_1000_p95_ms']} ms p95")
    print(json.dumps(figures))
    return 0


if __name__ == "__main__":
    sys.exit(main())
