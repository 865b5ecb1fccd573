"""Feed-loop benchmark: one worker cycle (feed → fills → MTM → post-trade controls) at scale.

Run: ``.venv/bin/python bench/worker.py [--accounts 20] [--positions 1000] [--cycles 200]``.
For SQLite (a temp file) and PostgreSQL (a throwaway server, as the tests start one) it seeds
the demo household and then, through the services (nothing is written by hand):

- the sample instrument master (50 NSE equities) and two sessions of synthetic 5-minute bars
  per symbol (a random walk from the symbol's last sample close, stored with
  :func:`core.marketdata.store.upsert_bars`, as the 5-minute import stores bars);
- ``--accounts`` paper accounts of the household admin, ₹1 crore each, whose limits allow
  the positions (``max_open_positions``) and keep the EOD MIS square-off at 15:19, the latest
  an account may set (the cycles' clock keeps out of its window: see :class:`VirtualClock`);
- ``--positions`` open positions spread evenly over the accounts (one per symbol, MIS and CNC,
  a fifth of the MIS ones short, a quarter tagged with a strategy), each opened by a MARKET
  order through ``services.orders.place`` (the risk gate decides every one) and filled by
  ``services.orders.step``;
- resting LIMIT buys 4 % below the market (one per ten positions), one GTT per account,
  stop-loss / target / trailing-stop controls on 30 % of the positions at 0.4-3 % from the
  price (``services.risk.set_control``), a household and a strategy MTM limit.

A cycle is what the worker runs each second: :meth:`FeedService.step` (the replay feed, at
``REPLAY_SPEED`` 100 and a 1-second step, writes a quote for every one of the 50 symbols
each cycle), then ``services.orders.step()`` (paper matching, fills, GTTs), then
``services.risk_watch.run()`` (MTM, controls, MTM and loss limits, drawdown, EOD). A control
that fires places its exit inside that cycle, and the next cycle fills it; both are timed.

The last line is one JSON object: ``cycle_p50_ms_*`` / ``cycle_p95_ms_*`` / ``cycle_max_ms_*``
for ``postgres`` and ``sqlite``, each phase's p50/p95 and SQL statements per cycle
(``feed_*``, ``orders_*``, ``watch_*``), exits fired, ``positions``, ``accounts``, ``symbols``
and ``replay_speed_max``: the ``REPLAY_SPEED`` (simulated seconds per wall second) the feed loop
sustains with every tick seen, computed as 100 simulated seconds per cycle (every symbol ticks
once in 100 s) × 1000 / PostgreSQL cycle p95 — the loop run back to back, not measured by
driving the feed flat out. Goal (issue 7): cycle p95 ≤ 200 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import platform
import random
import statistics
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from datetime import time as time_of_day
from decimal import Decimal
from pathlib import Path
from typing import Any

import pandas as pd
from sqlalchemy import event, func, select

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.desk import demo_desk
from core.clock import IST, MARKET_CLOSE, is_trading_day, now_ist
from core.domain import Actor, Interval
from core.marketdata import store
from core.marketdata.instruments import sample_master
from core.services import Services
from core.services.risk_watch import WatchReport
from core.trading import GttLeg, OrderRequest, OrderStatus, OrderType, Product, Side
from db.models import OrderRow
from engines.risk_types import Scope
from tests.support.pg import PostgresServer

SESSIONS = (date(2025, 9, 29), date(2025, 9, 30))  # two NSE trading days (Mon, Tue)
DAILY = Path(__file__).resolve().parent.parent / "data" / "sample" / "nse_daily"
REPLAY_SPEED = 100.0  # one 1-second step = 100 simulated s: every symbol ticks each cycle
STEP = timedelta(seconds=1)
#: From when to the close the cycles' clock starts at the first instead of now (IST).
SQUARE_OFF_GUARD = (time_of_day(14, 30), time_of_day(15, 30))
TICK = Decimal("0.05")
CAPITAL = Decimal(10_000_000)
POSITION_VALUE = 100_000  # rupees per position, about
STRATEGIES = (None, None, None, "momentum")
MAX_ORDERS_PER_SECOND = 8  # below the gate's SEBI limit of 10 per account
WARMUP_CYCLES = 3


def tick_round(value: float) -> Decimal:
    """Return ``value`` on the 0.05 tick (at least one tick)."""
    return max(Decimal(round(value / 0.05)) * TICK, TICK)


def start_prices(symbols: list[str]) -> dict[str, float]:
    """Return each symbol's last sample daily close (₹1,000 for a symbol without a file)."""
    prices = {}
    for symbol in symbols:
        path = DAILY / f"{symbol}.csv"
        close = 1000.0
        if path.exists():
            last = path.read_text(encoding="utf-8").strip().splitlines()[-1]
            close = float(last.split(",")[4])
        prices[symbol] = close
    return prices


def synthetic_bars(price: float, rng: random.Random) -> pd.DataFrame:
    """Return 75 five-minute bars per session of :data:`SESSIONS`: a random walk from ``price``."""
    rows = []
    for day in SESSIONS:
        opened = datetime.combine(day, datetime.min.time(), tzinfo=IST) + timedelta(
            hours=9, minutes=15)
        for slot in range(75):
            close = price * (1 + rng.gauss(0, 0.0015))
            high = max(price, close) * (1 + abs(rng.gauss(0, 0.0005)))
            low = min(price, close) * (1 - abs(rng.gauss(0, 0.0005)))
            rows.append((opened + timedelta(minutes=5 * slot), tick_round(price),
                         tick_round(high), tick_round(low), tick_round(close),
                         rng.randint(200_000, 2_000_000)))
            price = close
    frame = pd.DataFrame(rows, columns=["ts", "open", "high", "low", "close", "volume"])
    return frame.set_index(pd.DatetimeIndex(frame.pop("ts"), name="ts"))


class VirtualClock:
    """The worker's wall clock for the feed and the risk watch: one second a cycle.

    It starts now, except between 14:30 and 15:30 IST, when it starts at 14:30 today: the
    cycles then never reach the EOD MIS square-off (15:19 on the bench's accounts), which
    would close the positions being measured whenever the bench ran late in the session.
    """

    def __init__(self) -> None:
        now = now_ist()
        if SQUARE_OFF_GUARD[0] <= now.time() < SQUARE_OFF_GUARD[1]:
            now = now.replace(hour=14, minute=30, second=0, microsecond=0)
        self.now = now

    def step(self) -> datetime:
        """Move on one second and return the new time."""
        self.now += STEP
        return self.now


class Throttle:
    """Keep each account under the gate's orders/second limit while seeding."""

    def __init__(self) -> None:
        self._sent: dict[int, deque[float]] = {}

    def wait(self, account_id: int) -> None:
        """Sleep until ``account_id`` may send another order."""
        sent = self._sent.setdefault(account_id, deque())
        now = time.monotonic()
        while sent and now - sent[0] > 1.05:
            sent.popleft()
        if len(sent) >= MAX_ORDERS_PER_SECOND:
            time.sleep(1.05 - (now - sent[0]))
            sent.popleft()
        sent.append(time.monotonic())


@dataclass
class Desk:
    """A seeded desk ready for cycles."""

    services: Services
    actor: Actor
    clock: VirtualClock
    accounts: list[int]
    symbols: list[str]
    positions: int = 0
    controls: int = 0
    resting: int = 0
    gtts: int = 0
    notes: list[str] = field(default_factory=list)


@dataclass(frozen=True)
class Cycle:
    """One timed cycle: seconds and SQL statements per phase (feed, orders, watch)."""

    seconds: tuple[float, float, float]
    statements: tuple[int, int, int]
    report: WatchReport

    @property
    def total(self) -> float:
        """Return the cycle's seconds."""
        return sum(self.seconds)


def cycle(desk: Desk, counter: list[int] | None = None) -> Cycle:
    """Run one worker cycle: the feed step, the orders step, the risk watch.

    ``counter`` is a :func:`statement_counter`'s (statements are counted per phase with it).
    """
    services = desk.services
    counter = counter if counter is not None else [0]
    marks = [(time.perf_counter(), counter[0])]
    services.feed.step(desk.clock.step())
    marks.append((time.perf_counter(), counter[0]))
    services.orders.step()
    marks.append((time.perf_counter(), counter[0]))
    report = services.risk_watch.run(desk.clock.now)
    marks.append((time.perf_counter(), counter[0]))
    if report.failures:
        raise SystemExit(f"risk watch failed: {report.failures[:3]}")
    (t0, n0), (t1, n1), (t2, n2), (t3, n3) = marks
    return Cycle((t1 - t0, t2 - t1, t3 - t2), (n1 - n0, n2 - n1, n3 - n2), report)


def _fill(desk: Desk, wanted: int, what: str) -> None:
    """Step the loop until ``wanted`` orders are filled (the feed supplies new ticks)."""
    for _ in range(10):
        cycle(desk)
        with desk.services.db.transaction() as session:
            open_count = session.scalar(select(func.count()).select_from(OrderRow).where(
                OrderRow.status.in_([OrderStatus.OPEN, OrderStatus.PENDING,
                                     OrderStatus.PARTIALLY_FILLED]),
                OrderRow.order_type == OrderType.MARKET))
        if not open_count:
            return
    raise SystemExit(f"{what}: {open_count} of {wanted} MARKET orders did not fill")


def seed(url: str, accounts: int, positions: int, symbols: int,
         progress: Callable[[str], None] = print) -> Desk:
    """Build the desk of the module docstring on ``url`` (setup; nothing is timed)."""
    base, actor = demo_desk(url)
    settings = base.settings.model_copy(update={
        "replay_speed": REPLAY_SPEED, "replay_start": SESSIONS[0], "feed_mode": "replay"})
    services = Services(base.db, settings)
    rng = random.Random(7)  # noqa: S311 - reproducible benchmark inputs, not a secret
    master = sample_master()[:symbols]
    names = [row["symbol"] for row in master]
    prices = start_prices(names)
    with services.db.transaction() as session:
        ids = store.upsert_instruments(session, master)
        for symbol in names:
            store.upsert_bars(session, ids[symbol], Interval.M5,
                              synthetic_bars(prices[symbol], rng))
    assert actor.member_id is not None
    desk = Desk(services, actor, VirtualClock(), [], names)
    per_account = -(-positions // accounts)
    for n in range(accounts):
        account = services.household.create_account(actor, actor.member_id, f"Bench {n + 1}",
                                                     "Trading").id
        services.portfolio.add_funds(actor, account, CAPITAL, "bench capital")
        services.risk.set_limits(actor, account, {
            "max_open_positions": max(10, per_account + 5), "mis_square_off_at": "15:19"})
        desk.accounts.append(account)
    services.feed.step(desk.clock.now)  # the replay's baseline
    services.feed.step(desk.clock.step())  # 09:15: every symbol's first tick
    quotes = services.feed.quotes()
    progress(f"{url.split(':')[0]}: {len(names)} symbols priced; placing {positions} orders")
    throttle = Throttle()
    held: list[tuple[int, str, Product, int]] = []
    for k in range(positions):
        account = desk.accounts[k % accounts]
        slot = k // accounts  # the account's n-th position: each (symbol, product) once
        symbol = names[slot % len(names)]
        product = (Product.MIS, Product.CNC)[(slot + slot // len(names)) % 2]
        side = Side.SELL if product is Product.MIS and rng.random() < 0.2 else Side.BUY
        quantity = max(int(POSITION_VALUE / float(quotes[symbol].ltp)), 1) + slot // len(names)
        throttle.wait(account)
        order = services.orders.place(actor, OrderRequest(
            account, symbol, side, quantity, OrderType.MARKET, product,
            strategy=rng.choice(STRATEGIES)), source="bench")
        if order.status is OrderStatus.REJECTED:
            raise SystemExit(f"seed order rejected: {order.rejection_reason}")
        held.append((account, symbol, product, quantity if side is Side.BUY else -quantity))
        if (k + 1) % 250 == 0:
            progress(f"  {k + 1} orders placed")
    _fill(desk, positions, "opening positions")
    desk.positions = cycle(desk).report.positions
    if desk.positions != positions:
        raise SystemExit(f"the watch sees {desk.positions} open positions, not {positions}")
    quotes = services.feed.quotes()
    for k in range(positions // 10):  # resting LIMIT buys, 4 % below the market
        account, symbol, product, _ = held[(k * 7) % len(held)]
        throttle.wait(account)
        price = tick_round(float(quotes[symbol].ltp) * 0.96)
        services.orders.place(actor, OrderRequest(account, symbol, Side.BUY, 1 + k % 5,
                                                  OrderType.LIMIT, product, price=price),
                              source="bench")
        desk.resting += 1
    for account in desk.accounts:  # a target GTT 10 % above on each account's first holding
        _, symbol, product, quantity = next(h for h in held if h[0] == account and h[3] > 0)
        ltp = float(quotes[symbol].ltp)
        services.orders.create_gtt(actor, account, symbol, product, [GttLeg(
            tick_round(ltp * 1.10), Side.SELL, quantity, tick_round(ltp * 1.10))])
        desk.gtts += 1
    for account, symbol, product, quantity in held:
        if rng.random() >= 0.3:
            continue
        ltp = float(quotes[symbol].ltp)
        sign = 1 if quantity > 0 else -1
        kind = rng.random()
        stop = tick_round(ltp * (1 - sign * rng.uniform(0.004, 0.03)))
        target = tick_round(ltp * (1 + sign * rng.uniform(0.004, 0.03)))
        if kind < 0.6:
            services.risk.set_control(actor, account, symbol, product, stop_loss=stop,
                                      target=target)
        else:
            services.risk.set_control(actor, account, symbol, product,
                                      trail_pct=Decimal(str(round(rng.uniform(0.5, 2.5), 1))))
        desk.controls += 1
    services.risk.set_mtm_limit(actor, Scope.HOUSEHOLD, "", stop_loss=Decimal(5_000_000),
                                target=Decimal(10_000_000))
    services.risk.set_mtm_limit(actor, Scope.STRATEGY, "momentum", stop_loss=Decimal(2_000_000),
                                target=Decimal(4_000_000))
    progress(f"  {desk.positions} positions, {desk.resting} resting orders, {desk.gtts} GTTs, "
             f"{desk.controls} controls")
    return desk


@contextmanager
def statement_counter(desk: Desk) -> Iterator[list[int]]:
    """Count the SQL statements sent while the block runs (``counter[0]``)."""
    counter = [0]
    engine = desk.services.db.engine

    def count(*_args: Any) -> None:
        counter[0] += 1

    event.listen(engine, "before_cursor_execute", count)
    try:
        yield counter
    finally:
        event.remove(engine, "before_cursor_execute", count)


def _ms(samples: list[float], q: float) -> float:
    ordered = sorted(samples)
    return round(ordered[min(int(q * len(ordered)), len(ordered) - 1)] * 1000, 2)


def measure(desk: Desk, cycles: int, label: str,
            progress: Callable[[str], None] = print) -> dict[str, float | int]:
    """Run warm-up and ``cycles`` timed cycles; return the figures (keys without a suffix)."""
    for _ in range(WARMUP_CYCLES):
        cycle(desk)
    done: list[Cycle] = []
    with statement_counter(desk) as counter:
        for n in range(cycles):
            done.append(cycle(desk, counter))
            if (n + 1) % 50 == 0:
                totals = [c.total for c in done]
                progress(f"{label}: {n + 1} cycles, p50 {statistics.median(totals) * 1000:.0f} "
                         f"ms, last {totals[-1] * 1000:.0f} ms, exits so far "
                         f"{sum(len(c.report.square_offs) for c in done)}")
    exiting = [c.total for c in done if c.report.square_offs]
    figures: dict[str, float | int] = {
        "cycle_p50_ms": _ms([c.total for c in done], 0.50),
        "cycle_p95_ms": _ms([c.total for c in done], 0.95),
        "cycle_max_ms": _ms([c.total for c in done], 1.0),
        "statements_per_cycle_p50": int(statistics.median(sum(c.statements) for c in done)),
        "exits": sum(len(c.report.square_offs) for c in done),
        "exit_cycles": len(exiting),
        "exit_cycle_p50_ms": _ms(exiting, 0.50) if exiting else 0.0,
    }
    for k, phase in enumerate(("feed", "orders", "watch")):
        figures[f"{phase}_p50_ms"] = _ms([c.seconds[k] for c in done], 0.50)
        figures[f"{phase}_p95_ms"] = _ms([c.seconds[k] for c in done], 0.95)
        figures[f"{phase}_statements_p50"] = int(statistics.median(
            c.statements[k] for c in done))
    return figures


def run(url: str, accounts: int, positions: int, cycles: int, symbols: int,
        progress: Callable[[str], None] = print) -> tuple[dict[str, float | int], Desk]:
    """Seed ``url`` and measure ``cycles`` cycles; return the figures and the desk."""
    desk = seed(url, accounts, positions, symbols, progress)
    try:
        return measure(desk, cycles, url.split(":")[0], progress), desk
    finally:
        desk.services.db.dispose()


def figures(sqlite_url: str, postgres_url: str, *, accounts: int = 20, positions: int = 1000,
            cycles: int = 200, symbols: int = 50,
            progress: Callable[[str], None] = print) -> dict[str, object]:
    """Measure on both databases; return the JSON figures of the module docstring."""
    out: dict[str, object] = {}
    desk = None
    for name, url in (("sqlite", sqlite_url), ("postgres", postgres_url)):
        measured, desk = run(url, accounts, positions, cycles, symbols, progress)
        out.update({f"{key}_{name}": value for key, value in measured.items()})
    assert desk is not None
    p95 = out["cycle_p95_ms_postgres"]
    assert isinstance(p95, float)
    out.update({
        "positions": desk.positions, "accounts": len(desk.accounts),
        "symbols": len(desk.symbols), "resting_orders": desk.resting, "gtts": desk.gtts,
        "controls": desk.controls, "cycles": cycles,
        "replay_speed_max": round(REPLAY_SPEED * 1000 / p95, 1) if p95 else None,
        "replay_speed_basis": "computed: 100 simulated s per cycle x 1000 / cycle_p95_ms_postgres",
        "replay_ticks_per_s_max": round(len(desk.symbols) * 1000 / p95, 1) if p95 else None,
        "python": platform.python_version(),
        "machine": f"{platform.machine()} {platform.system()}",
    })
    return out


def _eod_warning() -> str | None:
    now = now_ist()
    if is_trading_day(now.date()) and time_of_day(15, 0) <= now.time() < MARKET_CLOSE:
        return ("note: cycles run at 15:29-15:30 IST on a trading day square off every MIS "
                "position (the EOD rule)")
    return None


def main() -> int:
    """Measure on SQLite and a throwaway PostgreSQL; print progress, then the JSON line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=20)
    parser.add_argument("--positions", type=int, default=1000)
    parser.add_argument("--cycles", type=int, default=200)
    parser.add_argument("--symbols", type=int, default=50)
    opts = parser.parse_args()
    warning = _eod_warning()
    if warning:
        print(warning)
    with tempfile.TemporaryDirectory() as tmp, PostgresServer() as server:
        server.create_database("bench")
        result = figures(f"sqlite:///{tmp}/bench.db", server.url("bench"),
                         accounts=opts.accounts, positions=opts.positions, cycles=opts.cycles,
                         symbols=opts.symbols)
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
