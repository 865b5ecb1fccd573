"""Every order path calls the risk gate; while a state holds, nothing reaches the broker.

The broker of the account under test is wrapped in a counter of the calls that send or change
an order (``place_order``, ``place_in``, ``modify_order``). Each entry point that can produce an
order is then driven while a kill switch, panic, loss limit or disable is ACTIVE: the counter
must stay at zero. A structural test fails when a new public method appears on the services
that place orders without being listed here, or when code outside the order manager calls a
broker's order methods directly.
"""

from __future__ import annotations

import contextlib
import inspect
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from core import risk_store
from core.domain import Actor
from core.errors import RiskRejected, TradingError
from core.orders import OrderManager
from core.services import Services
from core.services.exit_retry import ExitRetry, RejectedExit
from core.services.orders import OrderService
from core.services.risk import RiskService
from core.services.risk_gate import DeskRiskGate
from core.services.risk_watch import RiskWatch
from core.trading import GttLeg, OrderRequest, OrderStatus, OrderType, Product, Side
from db.models import OrderRow, RiskStateRow
from engines.risk_types import Scope, StateKind, StatePhase
from tests.conftest import TEST_CLIENT, fresh_sqlite_desk
from tests.support.market import open_market, tick

ROOT = Path(__file__).resolve().parents[1]
SENDS = ("place_order", "place_in", "modify_order")


class CountingBroker:
    """Wraps a broker and counts the calls that send or change an order."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: Counter[str] = Counter()

    def __getattr__(self, name: str) -> Any:
        attr = getattr(self.inner, name)
        if name not in SENDS:
            return attr

        def counted(*args: Any, **kwargs: Any) -> Any:
            self.calls[name] += 1
            return attr(*args, **kwargs)

        return counted


@dataclass
class Desk:
    """A demo desk with a position, a resting order, a GTT and a stop-loss control."""

    services: Services
    actor: Actor
    admin: Actor
    account: int
    resting_id: int
    broker: CountingBroker


def _login(services: Services, logins: dict[str, Any], username: str) -> Actor:
    result = services.auth.login(username, logins[username].password, TEST_CLIENT)
    assert result.session_id is not None
    return services.auth.check_session(result.session_id, TEST_CLIENT)


def _account(services: Services, actor: Actor, label: str) -> int:
    return next(a.id for a in services.household.list_accounts(actor) if a.label == label)


def _prepare(services: Services, logins: dict[str, Any]) -> Desk:
    open_market(services.db, {"INFY": "1500.00", "TCS": "3000.00", "SBIN": "800.00"})
    priya = _login(services, logins, "priya")
    rahul = _login(services, logins, "rahul")
    account = _account(services, priya, "Priya · Trading")
    services.orders.place(priya, OrderRequest(account, "SBIN", Side.BUY, 20, OrderType.MARKET,
                                              Product.MIS))
    tick(services.db, "SBIN", "800.00")
    services.orders.step()
    resting = services.orders.place(priya, OrderRequest(
        account, "INFY", Side.BUY, 5, OrderType.LIMIT, Product.CNC, price=Decimal("1400.00")))
    services.orders.create_gtt(priya, account, "TCS", Product.CNC, [
        GttLeg(Decimal("2990.00"), Side.BUY, 2, Decimal("2995.00"))])
    services.risk.set_control(priya, account, "SBIN", Product.MIS, stop_loss=Decimal("790.00"))
    counting = CountingBroker(services.orders.broker_for(account))
    services.orders._brokers[account] = counting  # the wrapper is the fake
    return Desk(services, priya, rahul, account, resting.id, counting)


def _engage(desk: Desk, kind: StateKind, scope: Scope) -> None:
    """Run the real procedure (cancel, close, hold); its own exits do not count."""
    key = str(desk.account) if scope is Scope.ACCOUNT else str(desk.actor.household_id)
    desk.services.risk.engage(kind, scope, key, f"test: {kind.value}", (desk.account,))
    desk.broker.calls.clear()


def _hold(desk: Desk, kind: StateKind, scope: Scope) -> None:
    """Record a state as ACTIVE while orders and positions are still open.

    That is where a procedure whose cancel/close steps failed (market closed, broker down)
    leaves an account: the resting order, the GTT, the position and its stop are all there,
    so every entry point has something to try.
    """
    household = desk.actor.household_id
    key = str(desk.account) if scope is Scope.ACCOUNT else str(household)
    with desk.services.db.transaction() as session:
        session.add(RiskStateRow(
            household_id=household, scope=scope,
            account_id=desk.account if scope is Scope.ACCOUNT else None, kind=kind,
            phase=StatePhase.ACTIVE, reason=f"test: {kind.value} held",
            active_key=risk_store.state_key(household, scope, key, kind)))


def _place(desk: Desk) -> object:
    return desk.services.orders.place(desk.actor, OrderRequest(
        desk.account, "TCS", Side.BUY, 1, OrderType.MARKET, Product.MIS))


def _place_for_strategy(desk: Desk) -> object:
    return desk.services.orders.place(desk.actor, OrderRequest(
        desk.account, "TCS", Side.BUY, 1, OrderType.MARKET, Product.MIS, strategy="momo"))


def _modify(desk: Desk) -> object:
    return desk.services.orders.modify(desk.actor, desk.resting_id, quantity=6)


def _square_off(desk: Desk) -> object:
    return desk.services.orders.square_off_intraday(desk.actor, desk.account)


def _gtt_trigger(desk: Desk) -> object:
    tick(desk.services.db, "TCS", "2985.00")
    return desk.services.orders.step()


def _watch_stop_loss(desk: Desk) -> object:
    tick(desk.services.db, "SBIN", "780.00")
    return desk.services.risk_watch.run()


def _exit_retry(desk: Desk) -> object:
    """A risk-watch exit the broker rejected, sent again (core.services.exit_retry)."""
    retry = desk.services.risk_watch.exit_retry
    retry.retry_seconds = 0.0
    rejected = RejectedExit(
        order_id=_order_count(desk.services)[1], client_id="rw-entry-point-test",
        account_id=desk.account, symbol="SBIN", side=Side.SELL, quantity=20,
        product=Product.MIS, strategy=None, source="risk", reason="RMS (test)")
    return retry.run(desk.actor.household_id, [rejected])


def _panic_again(desk: Desk) -> object:
    return desk.services.risk.panic(desk.admin, Scope.ACCOUNT, account_id=desk.account)


def _protect_exit(desk: Desk) -> object:
    return desk.services.orders.manager.submit(
        OrderRequest(desk.account, "SBIN", Side.SELL, 20, OrderType.MARKET, Product.MIS),
        placed_by=None, source="panic")


#: Every way an order can come into being. A new one must be added here (see the last test).
ENTRY_POINTS: dict[str, Callable[[Desk], object]] = {
    "OrderService.place": _place,
    "OrderService.place (a strategy's order)": _place_for_strategy,
    "OrderService.modify": _modify,
    "OrderService.square_off_intraday": _square_off,
    "OrderService.step (GTT trigger)": _gtt_trigger,
    "RiskWatch.run (stop-loss exit)": _watch_stop_loss,
    "ExitRetry.run (a rejected exit sent again)": _exit_retry,
    "RiskService.panic (its exits)": _panic_again,
    "OrderManager.submit (protect exit)": _protect_exit,
}

STATES = [(StateKind.KILL_SWITCH, Scope.ACCOUNT), (StateKind.PANIC, Scope.ACCOUNT),
          (StateKind.DAILY_LOSS, Scope.ACCOUNT), (StateKind.WEEKLY_LOSS, Scope.ACCOUNT),
          (StateKind.DISABLED, Scope.ACCOUNT), (StateKind.KILL_SWITCH, Scope.HOUSEHOLD),
          (StateKind.PANIC, Scope.HOUSEHOLD)]


def _drive(desk: Desk, name: str) -> None:
    before = _order_count(desk.services)
    try:
        ENTRY_POINTS[name](desk)
    except RiskRejected:
        pass
    except TradingError as exc:  # e.g. nothing left to modify after a real procedure
        assert "Risk gate" in str(exc) or "only open orders" in str(exc), exc
    sent = sum(desk.broker.calls[call] for call in SENDS)
    assert sent == 0, f"{name} reached the broker {sent} time(s) while the state held"
    with desk.services.db.transaction() as session:
        fresh = session.scalars(select(OrderRow).where(OrderRow.id > before[1])).all()
    assert all(row.status is OrderStatus.REJECTED or row.broker_order_id is None
               for row in fresh), [(r.id, r.status) for r in fresh]


def _order_count(services: Services) -> tuple[int, int]:
    with services.db.transaction() as session:
        return (session.scalar(select(func.count()).select_from(OrderRow)) or 0,
                session.scalar(select(func.max(OrderRow.id))) or 0)


@pytest.mark.usefixtures("backend")
@pytest.mark.parametrize("entry", list(ENTRY_POINTS))
def test_an_active_kill_switch_stops_every_entry_point_before_the_broker(
    services: Services, demo_logins: dict[str, Any], entry: str,
) -> None:
    desk = _prepare(services, demo_logins)
    _hold(desk, StateKind.KILL_SWITCH, Scope.ACCOUNT)
    _drive(desk, entry)


@pytest.mark.usefixtures("backend")
def test_after_the_real_kill_switch_procedure_no_entry_point_reaches_the_broker(
    services: Services, demo_logins: dict[str, Any],
) -> None:
    desk = _prepare(services, demo_logins)
    _engage(desk, StateKind.KILL_SWITCH, Scope.ACCOUNT)
    for entry in ENTRY_POINTS:
        _drive(desk, entry)


def test_without_a_state_every_entry_point_reaches_the_broker(
    sqlite_templates: Any, tmp_path: Path,
) -> None:
    """The counter is not vacuous: the same entry points do send when nothing stops them."""
    reached = []
    for name in ENTRY_POINTS:
        if name.startswith(("RiskService.panic", "OrderManager.submit (protect")):
            continue  # these only send exits while a procedure runs
        services, logins = fresh_sqlite_desk(sqlite_templates, tmp_path / name.replace(" ", "_"))
        try:
            desk = _prepare(services, logins)
            with contextlib.suppress(TradingError):
                ENTRY_POINTS[name](desk)
            if sum(desk.broker.calls[n] for n in SENDS):
                reached.append(name)
        finally:
            services.db.dispose()
    assert sorted(reached) == sorted(n for n in ENTRY_POINTS if not n.startswith(
        ("RiskService.panic", "OrderManager.submit (protect")))


@settings(max_examples=12, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(state=st.sampled_from(STATES), entries=st.lists(
    st.sampled_from(list(ENTRY_POINTS)), min_size=1, max_size=4))
def test_no_order_of_any_kind_reaches_the_broker_while_a_state_is_active(
    sqlite_templates: Any, tmp_path_factory: pytest.TempPathFactory,
    state: tuple[StateKind, Scope], entries: list[str],
) -> None:
    services, logins = fresh_sqlite_desk(sqlite_templates, tmp_path_factory.mktemp("state"))
    try:
        desk = _prepare(services, logins)
        _hold(desk, *state)
        for entry in entries:
            _drive(desk, entry)
    finally:
        services.db.dispose()


# ----------------------------------------------------------------------------------------------
# Structure: nothing new bypasses the gate unnoticed
# ----------------------------------------------------------------------------------------------

#: Public methods that never create or change an order at the broker (reads, settings, cancels).
NOT_ORDER_PATHS = {
    OrderService: {"broker_for", "tradable_accounts", "symbols", "search_symbols",
                   "market_session", "viewable_ids", "order_book", "order_book_frame",
                   "trade_book_frame", "household_labels", "estimate", "priced", "cancel",
                   "create_gtt", "review_gtt",
                   "cancel_gtt", "gtts", "gtt_frame", "fire_gtts"},
}
#: Public methods that can create orders, each driven above under an active state.
ORDER_PATHS = {
    OrderService: {"place", "modify", "square_off_intraday", "step"},
    OrderManager: {"submit", "modify"},
    RiskWatch: {"run"},
    ExitRetry: {"run"},
}


def test_every_public_method_that_can_send_an_order_is_listed_and_gated() -> None:
    for cls, names in NOT_ORDER_PATHS.items():
        public = {n for n, _ in inspect.getmembers(cls, inspect.isfunction)
                  if not n.startswith("_")}
        unlisted = public - names - ORDER_PATHS.get(cls, set())
        assert not unlisted, (
            f"{cls.__name__} has new public methods {sorted(unlisted)}: list each in "
            "ENTRY_POINTS (and ORDER_PATHS) if it can send an order, else in NOT_ORDER_PATHS")
    def source(method: str) -> str:
        return inspect.getsource(getattr(OrderManager, method))

    assert "self._gate(" in source("modify"), "OrderManager.modify no longer calls the gate"
    assert "self._gate(" in source("_checked"), "OrderManager._checked no longer calls the gate"
    # submit audits a refusal around _submit, whose two ways (the desk's one transaction, or
    # persist-then-send) both check first
    assert "self._submit(" in source("submit")
    assert "self._checked(" in source("_submit")
    assert "self._submit_in_one_transaction(" in source("_submit")
    assert "self._checked(" in source("_submit_in_one_transaction")
    assert source("_submit").count("self._persist(") == 1
    assert source("_submit").index("self._checked(") < source("_submit").index("self._persist(")
    assert {"submit"} <= {n for n in dir(OrderManager) if not n.startswith("_")}


def test_only_the_order_manager_calls_a_brokers_order_methods() -> None:
    pattern = re.compile(r"\.(place_order|place_in|modify_order)\(")
    offenders = []
    for path in [*ROOT.glob("core/**/*.py"), *ROOT.glob("jobs/**/*.py"),
                 *ROOT.glob("pages/**/*.py"), ROOT / "app.py"]:
        if path.relative_to(ROOT).as_posix() == "core/orders.py":
            continue
        for number, line in enumerate(path.read_text().splitlines(), 1):
            if pattern.search(line):
                offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert not offenders, "order methods called outside core/orders.py:\n" + "\n".join(offenders)


def test_the_desk_is_wired_to_the_real_gate(services: Services) -> None:
    assert isinstance(services.orders.manager.risk_gate, DeskRiskGate)
    assert services.orders.manager.risk_gate is services.risk_gate
    assert isinstance(services.risk, RiskService)
