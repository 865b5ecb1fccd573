"""Order-path benchmark: paper orders through validation, risk hook, persistence and fill.

Run: ``.venv/bin/python bench/orders.py [--orders N]`` (or ``make bench``). For SQLite (a temp
file) and PostgreSQL (a throwaway server, as the tests start one) it seeds the demo household,
opens the paper market, then sends N MARKET orders (default 10,000) one at a time through
``services.orders.place`` (authorization, validation, funds and sellable checks, risk gate,
PENDING row + audit, paper broker acceptance, OPEN + audit) and fills each with the worker's
``services.orders.step`` (paper matching with charges, order-manager sync of trades and status,
audit, GTT scan) after a new price is written the way the feed writes it (that write is not
timed). The orders are intraday (MIS) BUY/SELL pairs over five symbols on the three demo
accounts the household admin may trade plus 21 more paper accounts of his, so that no account
passes the risk gate's SEBI limit of 10 orders per second; a pair takes the smallest quantity
its account and symbol have not used for 11 s, so that no order repeats within the gate's
10-second duplicate window however fast the desk runs. Every order passes the desk's real risk
gate (:class:`core.services.risk_gate.DeskRiskGate`).

Latency per order = place + step. The last line is one JSON object with ``p50_ms_*``,
``p95_ms_*``, ``p99_ms_*``, ``orders_per_s_*`` for ``sqlite`` and ``postgres``, and per database
the median of each half (``place_p50_ms_*``, ``step_p50_ms_*``), this process's CPU time per
order (``cpu_ms_per_order_*``; the rest of the latency is waiting, mostly on the database) and
the SQL statements per order (``statements_per_order_*``, COMMITs not counted). Goal (issue
4): p95 ≤ 10 ms on PostgreSQL.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
import tempfile
import time
from decimal import Decimal
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sqlalchemy import event

from bench.desk import demo_desk
from core.trading import OrderRequest, OrderStatus, OrderType, Product, Side
from tests.support.market import open_market, tick
from tests.support.pg import PostgresServer

SYMBOLS = {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00", "RELIANCE": "1300.00",
           "HDFCBANK": "1600.00"}
ACCOUNTS = ("Rahul · Long-term", "Rahul · Intraday", "Kamla · Pension")
EXTRA_ACCOUNTS = 21  # more paper accounts, so each stays under 10 orders/s
#: A pair's quantity is not used again on its account and symbol for this long (seconds): the
#: risk gate refuses the same order within 10 s as a duplicate.
REUSE_AFTER_S = 11.0


def pair_quantity(used: dict[tuple[int, str, int], float], account: int, symbol: str,
                  now: float) -> int:
    """Return the smallest quantity ``account`` has not sent in ``symbol`` for REUSE_AFTER_S."""
    quantity = 1
    while now - used.get((account, symbol, quantity), float("-inf")) < REUSE_AFTER_S:
        quantity += 1
    return quantity


def _percentile(samples: list[float], pct: float) -> float:
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def run(url: str, orders: int) -> dict[str, float]:
    """Send ``orders`` orders through the full path on ``url``; return latency figures."""
    services, actor = demo_desk(url)
    accounts = [a.id for a in services.household.list_accounts(actor) if a.label in ACCOUNTS]
    assert actor.member_id is not None
    for n in range(EXTRA_ACCOUNTS):
        extra = services.household.create_account(actor, actor.member_id, f"Bench {n + 1}",
                                                  "Trading").id
        services.portfolio.add_funds(actor, extra, Decimal(1_000_000), "bench capital")
        accounts.append(extra)
    open_market(services.db, SYMBOLS)
    symbols = list(SYMBOLS)
    samples: list[float] = []
    placed: list[float] = []
    stepped: list[float] = []
    cpu = 0.0
    counting = [False]  # statements are counted in the timed calls only (not the price write)
    statements = [0]

    def count(*_args: object) -> None:
        statements[0] += counting[0]

    event.listen(services.db.engine, "before_cursor_execute", count)
    unfilled = 0
    used: dict[tuple[int, str, int], float] = {}
    quantity = 0
    started_all = time.perf_counter()
    for n in range(orders):
        pair, leg = divmod(n, 2)
        account = accounts[pair % len(accounts)]
        symbol = symbols[(pair // len(accounts)) % len(symbols)]
        if leg == 0:
            quantity = pair_quantity(used, account, symbol, time.monotonic())
        request = OrderRequest(account, symbol, Side.BUY if leg == 0 else Side.SELL, quantity,
                               OrderType.MARKET, Product.MIS)
        counting[0], cpu_started = True, time.process_time()
        started = time.perf_counter()
        order = services.orders.place(actor, request)
        placed_ms = (time.perf_counter() - started) * 1000
        counting[0], cpu = False, cpu + time.process_time() - cpu_started
        tick(services.db, symbol, Decimal(SYMBOLS[symbol]) + Decimal(n % 7) / 20,
             volume_add=10_000)
        counting[0], cpu_started = True, time.process_time()
        started = time.perf_counter()
        services.orders.step()
        step_ms = (time.perf_counter() - started) * 1000
        counting[0], cpu = False, cpu + time.process_time() - cpu_started
        used[(account, symbol, quantity)] = time.monotonic()  # each leg restarts the window
        placed.append(placed_ms)
        stepped.append(step_ms)
        samples.append(placed_ms + step_ms)
        if n == 0 or (n + 1) % 1000 == 0:
            print(f"{url.split(':')[0]}: {n + 1} orders, last {samples[-1]:.1f} ms", flush=True)
        unfilled += order.status is not OrderStatus.OPEN
    wall = time.perf_counter() - started_all
    statuses = {o.status for o in services.orders.order_book(actor)}
    services.db.dispose()
    if unfilled or statuses != {OrderStatus.FILLED}:
        raise SystemExit(f"bench orders did not all fill: {statuses}, {unfilled} not accepted")
    return {"p50_ms": round(statistics.median(samples), 3),
            "p95_ms": round(_percentile(samples, 95), 3),
            "p99_ms": round(_percentile(samples, 99), 3),
            "max_ms": round(max(samples), 3),
            "orders_per_s": round(len(samples) / (sum(samples) / 1000), 1),
            "wall_s": round(wall, 2),
            "place_p50_ms": round(statistics.median(placed), 3),
            "step_p50_ms": round(statistics.median(stepped), 3),
            "cpu_ms_per_order": round(cpu / len(samples) * 1000, 3),
            "statements_per_order": round(statements[0] / len(samples), 2)}


def main(orders: int) -> dict[str, object]:
    """Run on SQLite and PostgreSQL and return the figures."""
    figures: dict[str, object] = {"orders": orders}
    with tempfile.TemporaryDirectory() as tmp:
        for key, value in run(f"sqlite:///{tmp}/bench.db", orders).items():
            figures[f"{key}_sqlite"] = value
    with PostgresServer() as server:
        server.create_database("bench")
        for key, value in run(server.url("bench"), orders).items():
            figures[f"{key}_postgres"] = value
    figures["python"] = platform.python_version()
    figures["machine"] = f"{platform.machine()} {platform.system()}"
    return figures


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--orders", type=int, default=10_000, help="orders per database")
    print(json.dumps(main(parser.parse_args().orders)))
