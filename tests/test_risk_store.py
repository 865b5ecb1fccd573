"""Risk persistence on SQLite and PostgreSQL: the alert outbox and the repository functions."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time
from decimal import Decimal

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from core import alerts, risk_store
from core.clock import IST
from core.errors import ValidationError
from core.services import Services
from core.trading import Product
from db.models import AccountRow, AlertOutboxRow, MtmLimitRow, PositionControlRow, RiskStateRow
from engines.risk_types import (
    ActiveState,
    RiskLimits,
    Scope,
    StateKind,
    StatePhase,
    TrailUpdate,
)

pytestmark = pytest.mark.usefixtures("backend")
AT = datetime(2026, 11, 20, 10, 0, tzinfo=IST)

#: The money paid in that each equity below counts: the same in every call, so no deposit or
#: withdrawal moves a peak here (tests/test_drawdown_flows.py tests those).
PAID_IN: defaultdict[int, Decimal] = defaultdict(Decimal)


@pytest.fixture
def ids(services: Services) -> tuple[int, int, int]:
    """(household id, first account id, second account id) of the demo desk."""
    with services.db.transaction() as session:
        rows = session.execute(select(AccountRow.household_id, AccountRow.id)
                               .order_by(AccountRow.id)).all()
    return rows[0][0], rows[0][1], rows[1][1]


def _alert(session, household_id: int, key: str, account_id: int | None = None) -> bool:
    return alerts.enqueue(session, kind="risk.test", household_id=household_id,
                          account_id=account_id, severity="warning", title="Test alert",
                          body="body", dedupe_key=key)


def _alert_count(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(AlertOutboxRow)) or 0


def test_an_alert_enqueued_twice_is_written_once_and_the_caller_s_transaction_survives(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, account, _ = ids
    with services.db.transaction() as session:
        assert _alert(session, household, "k1", account) is True
    with services.db.transaction() as session:
        session.add(MtmLimitRow(household_id=household, scope=Scope.STRATEGY, key="momo",
                                stop_loss=Decimal("500"), target=None, updated_at=AT))
        session.flush()
        assert _alert(session, household, "k1") is False  # duplicate: no error, no row
        assert _alert(session, household, "k2") is True
    with services.db.transaction() as session:
        keys = sorted(session.scalars(select(AlertOutboxRow.dedupe_key)))
        assert keys == ["k1", "k2"]
        assert session.scalar(select(func.count()).select_from(MtmLimitRow)) == 1


def test_a_duplicate_another_writer_commits_meanwhile_is_skipped_without_breaking_ours(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, _, _ = ids
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(AlertOutboxRow)) == 0
        with services.db.transaction() as other:  # a second connection (the worker, say)
            _alert(other, household, "race")
        session.add(MtmLimitRow(household_id=household, scope=Scope.HOUSEHOLD,
                                key=str(household), stop_loss=None, target=Decimal("900"),
                                updated_at=AT))
        session.flush()
        assert _alert(session, household, "race") is False
    assert _alert_count(services) == 1
    with services.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(MtmLimitRow)) == 1


@pytest.mark.parametrize(("changes", "message"), [
    ({"severity": "loud"}, "Alert severity must be one of info, warning, critical"),
    ({"kind": ""}, "Alert kind must be 1-40 characters"),
    ({"dedupe_key": "x" * 121}, "Alert dedupe key must be 1-120 characters; got 121"),
])
def test_an_alert_with_a_bad_field_is_refused_with_the_rule(
    services: Services, ids: tuple[int, int, int], changes: dict[str, str], message: str,
) -> None:
    values = {"kind": "risk.test", "household_id": ids[0], "account_id": None,
              "severity": "info", "title": "t", "body": "b", "dedupe_key": "k"} | changes
    with pytest.raises(ValidationError, match=message), services.db.transaction() as session:
        alerts.enqueue(session, **values)  # type: ignore[arg-type]
    assert _alert_count(services) == 0


def test_recent_alerts_are_newest_first_in_ist_and_limited_to_the_given_accounts(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, first, second = ids
    with services.db.transaction() as session:
        _alert(session, household, "whole-household")
        _alert(session, household, "first", first)
        _alert(session, household, "second", second)
    with services.db.transaction() as session:
        shown = alerts.recent(session, household, [first], limit=10)
        everything = alerts.recent(session, household, None, limit=2)
    assert sorted(a.account_id or 0 for a in shown) == [0, first]
    assert all(a.created_at.tzinfo == IST and a.status == "pending" for a in shown)
    assert len(everything) == 2 and everything[0].id > everything[1].id


def test_limits_fall_back_from_the_account_to_the_household_to_the_defaults(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, account, other = ids
    with services.db.transaction() as session:
        assert risk_store.effective_limits(session, household, account) == (RiskLimits(),
                                                                           "default")
        risk_store.save_limits(session, household, None,
                               RiskLimits(daily_loss_pct=Decimal("1.5")), None, AT)
        risk_store.save_limits(session, household, account,
                               RiskLimits(max_open_positions=4, correlation_reduce=True,
                                          portfolio_mtm_stop_loss=Decimal("2500.50"),
                                          mis_square_off_at=time(15, 0)), None, AT)
    with services.db.transaction() as session:
        own, source = risk_store.effective_limits(session, household, account)
        inherited = risk_store.effective_limits(session, household, other)
        assert risk_store.household_limits(session, household).daily_loss_pct == Decimal("1.5")
        assert risk_store.delete_limits(session, household, account) is True
        assert risk_store.delete_limits(session, household, account) is False
    assert source == "account"
    assert own == RiskLimits(max_open_positions=4, correlation_reduce=True,
                             portfolio_mtm_stop_loss=Decimal("2500.50"),
                             mis_square_off_at=time(15, 0))
    assert str(own.max_order_value) == "500000" and str(own.risk_per_trade_pct) == "1"
    assert inherited == (RiskLimits(daily_loss_pct=Decimal("1.5")), "household")


def _state(session, household: int, scope: Scope, kind: StateKind, *,
           account_id: int | None = None, strategy: str | None = None,
           until: date | None = None, phase: StatePhase = StatePhase.ACTIVE) -> RiskStateRow:
    key = {Scope.HOUSEHOLD: str(household), Scope.ACCOUNT: str(account_id),
           Scope.STRATEGY: strategy or ""}[scope]
    row = RiskStateRow(household_id=household, scope=scope, account_id=account_id,
                       strategy=strategy, kind=kind, phase=phase, reason=f"test {kind}",
                       until=until, engaged_at=AT, report="[]",
                       active_key=risk_store.state_key(household, scope, key, kind))
    session.add(row)
    session.flush()
    return row


def test_covering_states_are_the_household_s_the_account_s_and_every_strategy_s(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, account, other = ids
    with services.db.transaction() as session:
        _state(session, household, Scope.ACCOUNT, StateKind.PANIC, account_id=account)
        _state(session, household, Scope.ACCOUNT, StateKind.DISABLED, account_id=other)
        _state(session, household, Scope.STRATEGY, StateKind.PANIC, strategy="momo",
               phase=StatePhase.ENGAGING)
        cleared = _state(session, household, Scope.HOUSEHOLD, StateKind.KILL_SWITCH)
        cleared.phase, cleared.active_key = StatePhase.CLEARED, None
    with services.db.transaction() as session:
        covering = risk_store.covering_states(session, household, account)
        keys = risk_store.engaged_keys(session, household)
    assert covering == (
        ActiveState(StateKind.PANIC, Scope.ACCOUNT, StatePhase.ACTIVE, "test panic"),
        ActiveState(StateKind.PANIC, Scope.STRATEGY, StatePhase.ENGAGING, "test panic",
                    strategy="momo"),
    )
    assert keys == frozenset({(Scope.ACCOUNT, str(account), StateKind.PANIC),
                              (Scope.ACCOUNT, str(other), StateKind.DISABLED),
                              (Scope.STRATEGY, "momo", StateKind.PANIC)})


def test_a_loss_limit_covers_until_its_day_comes_and_then_counts_as_lapsed(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, account, _ = ids
    until = date(2026, 11, 23)
    with services.db.transaction() as session:
        _state(session, household, Scope.ACCOUNT, StateKind.DAILY_LOSS, account_id=account,
               until=until)
    with services.db.transaction() as session:
        the_day_before = risk_store.covering_states(session, household, account,
                                                    date(2026, 11, 22))
        on_the_day = risk_store.covering_states(session, household, account, until)
        lapsed = risk_store.lapsed_states(session, until)
        assert risk_store.engaged_keys(session, today=until) == frozenset()
    assert [s.kind for s in the_day_before] == [StateKind.DAILY_LOSS]
    assert on_the_day == ()
    assert [row.kind for row in lapsed] == [StateKind.DAILY_LOSS]


def test_the_database_refuses_a_second_live_state_of_the_same_scope_and_kind(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, account, _ = ids
    with services.db.transaction() as session:
        _state(session, household, Scope.ACCOUNT, StateKind.PANIC, account_id=account)
    with pytest.raises(IntegrityError), services.db.transaction() as session:
        _state(session, household, Scope.ACCOUNT, StateKind.PANIC, account_id=account)
    with services.db.transaction() as session:
        _state(session, household, Scope.ACCOUNT, StateKind.DISABLED, account_id=account)
        assert session.scalar(select(func.count()).select_from(RiskStateRow)) == 2


def test_trailing_stops_move_and_a_triggered_control_frees_its_position_key(
    services: Services, ids: tuple[int, int, int],
) -> None:
    _, account, other = ids
    key = risk_store.control_key(account, "INFY", Product.MIS)
    with services.db.transaction() as session:
        row = PositionControlRow(account_id=account, symbol="INFY", product=Product.MIS,
                                 trail_pct=Decimal("2"), is_active=True, active_key=key,
                                 created_at=AT)
        session.add(row)
        session.add(PositionControlRow(account_id=other, symbol="TCS", product=Product.CNC,
                                       stop_loss=Decimal("2900"), is_active=True,
                                       active_key=risk_store.control_key(other, "TCS",
                                                                         Product.CNC),
                                       created_at=AT))
        session.flush()
        control_id = row.id
    with services.db.transaction() as session:
        moved = risk_store.apply_trails(session, [
            TrailUpdate(control_id, Decimal("1520.00"), Decimal("1489.60"))])
        assert [c.extreme for c in risk_store.active_controls(session, [account])] == [
            Decimal("1520.00")]
        assert risk_store.mark_triggered(session, control_id, "trailing_stop", AT, 77) is True
        assert risk_store.mark_triggered(session, control_id, "trailing_stop", AT, 78) is False
    with services.db.transaction() as session:
        done = session.get(PositionControlRow, control_id)
        assert done is not None
        assert (done.is_active, done.active_key, done.triggered_rule,
                done.triggered_order_id) == (False, None, "trailing_stop", 77)
        assert [c.symbol for c in risk_store.active_controls(session)] == ["TCS"]
        session.add(PositionControlRow(account_id=account, symbol="INFY", product=Product.MIS,
                                       stop_loss=Decimal("1400"), is_active=True,
                                       active_key=key, created_at=AT))
    assert moved == 1


def test_equity_peaks_only_ever_rise(services: Services, ids: tuple[int, int, int]) -> None:
    _, account, other = ids
    later = datetime(2026, 11, 20, 6, 0, tzinfo=UTC)
    with services.db.transaction() as session:
        assert risk_store.peak_equity(session, account) is None
        assert risk_store.raise_peaks(session, {account: Decimal("1000000")}, AT,
                                      PAID_IN) == [account]
    with services.db.transaction() as session:
        raised = risk_store.raise_peaks(
            session, {account: Decimal("990000"), other: Decimal("5")}, later, PAID_IN)
        assert raised == [other]
        assert risk_store.raise_peaks(session, {account: Decimal("1000000.01")}, later,
                                      PAID_IN) == [account]
    with services.db.transaction() as session:
        assert risk_store.peak_equity(session, account) == Decimal("1000000.01")


def test_mtm_limits_read_back_with_who_changed_them(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, _, _ = ids
    with services.db.transaction() as session:
        session.add(MtmLimitRow(household_id=household, scope=Scope.STRATEGY, key="momo",
                                stop_loss=Decimal("500"), target=Decimal("1500"),
                                updated_at=AT))
    with services.db.transaction() as session:
        (view,) = risk_store.mtm_limit_rows(session, household)
        assert risk_store.mtm_limit_rows(session, household + 1000) == []
    assert (view.scope, view.key, view.stop_loss, view.target, view.updated_by) == (
        Scope.STRATEGY, "momo", Decimal("500"), Decimal("1500"), None)
    assert view.updated_at == AT


def test_an_alert_rolls_back_with_its_cause_even_as_the_transaction_s_first_write(
    services: Services, ids: tuple[int, int, int],
) -> None:
    household, _, _ = ids
    with pytest.raises(RuntimeError), services.db.transaction() as session:
        assert _alert(session, household, "first-write") is True
        raise RuntimeError("the change that caused the alert fails")
    assert _alert_count(services) == 0


def test_retiring_controls_frees_their_keys_and_spares_those_set_after_the_cutoff(
    services: Services, ids: tuple[int, int, int],
) -> None:
    _, account, _ = ids
    with services.db.transaction() as session:
        rows = [PositionControlRow(account_id=account, symbol=symbol, product=Product.MIS,
                                   stop_loss=Decimal("100"), is_active=True,
                                   active_key=risk_store.control_key(account, symbol,
                                                                     Product.MIS),
                                   created_at=at)
                for symbol, at in (("INFY", AT), ("TCS", AT.replace(hour=11)))]
        session.add_all(rows)
        session.flush()
        infy, tcs = rows[0].id, rows[1].id
    with services.db.transaction() as session:
        assert risk_store.control_times(session, [infy, tcs]) == {
            infy: AT, tcs: AT.replace(hour=11)}
        retired = risk_store.retire_controls(session, [infy, tcs],
                                             created_before=AT.replace(minute=30))
        assert [row.id for row in retired] == [infy]
    with services.db.transaction() as session:
        assert [c.symbol for c in risk_store.active_controls(session, [account])] == ["TCS"]
        assert [row.id for row in risk_store.retire_controls(session, [infy, tcs])] == [tcs]
        assert risk_store.retire_controls(session, [infy, tcs]) == []  # retired once
        assert risk_store.active_controls(session, [account]) == []


def test_resetting_a_peak_starts_the_drawdown_from_the_equity_given(
    services: Services, ids: tuple[int, int, int],
) -> None:
    _, account, other = ids
    with services.db.transaction() as session:
        risk_store.raise_peaks(session, {account: Decimal("1000000"), other: Decimal("500")}, AT,
                               PAID_IN)
    with services.db.transaction() as session:
        assert risk_store.reset_peak(session, account, Decimal("998644.80"), AT,
                                     PAID_IN[account]) == Decimal("1000000")
        assert risk_store.reset_peak(session, other, Decimal("-5"), AT,
                                     PAID_IN[other]) == Decimal("500")
    with services.db.transaction() as session:
        assert risk_store.peak_equities(session, [account, other]) == {
            account: Decimal("998644.80")}  # a negative equity leaves no peak
        assert risk_store.reset_peak(session, other, Decimal("250"), AT, PAID_IN[other]) is None
        assert risk_store.peak_equity(session, other) == Decimal("250")
