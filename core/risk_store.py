"""Repository functions of the risk gate: limits, states, position controls, MTM limits, peaks.

Each function works inside the caller's session and maps rows to the domain types of
:mod:`engines.risk_types` (or the small records below); none commits. Services own the
transactions, rights and audit.

Keys
----
- limits: ``scope_key`` "household:7" (the household's defaults) or "account:12";
- states: ``active_key`` "household:7:panic", "account:12:kill_switch" or
  "strategy:7:momentum:daily_loss" (strategy names are per household), NULL once cleared;
- position controls: ``active_key`` "12:RELIANCE:MIS", NULL once triggered or cleared.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import bindparam, delete, func, or_, select
from sqlalchemy.engine import Connection
from sqlalchemy.orm import Session

from core.clock import now_ist, to_ist
from core.trading import Product
from db.models import (
    EquityPeakRow,
    MtmLimitRow,
    PositionControlRow,
    RiskLimitsRow,
    RiskStateRow,
    TradeRow,
    UserRow,
)
from engines.risk_types import (
    LIMIT_FIELDS,
    ActiveState,
    PositionControl,
    RiskLimits,
    Scope,
    StateKind,
    StatePhase,
    TrailUpdate,
)

#: States a loss limit lifts by itself once its ``until`` day has come.
SELF_LIFTING = frozenset({StateKind.DAILY_LOSS, StateKind.WEEKLY_LOSS})
LIVE_PHASES = (StatePhase.ENGAGING, StatePhase.ACTIVE)


# ----------------------------------------------------------------------------------------------
# Limits
# ----------------------------------------------------------------------------------------------


def account_name(label: str) -> str:
    """Return an account as risk texts name it: ``the account Priya · Trading``."""
    return f"the account {label}"


def limits_key(household_id: int, account_id: int | None) -> str:
    """Return the ``scope_key`` of a household's defaults (account None) or of an account."""
    return f"household:{household_id}" if account_id is None else f"account:{account_id}"


def _values(row: RiskLimitsRow) -> dict[str, Any]:
    values = {name: getattr(row, name) for name in LIMIT_FIELDS}
    for name, value in values.items():
        if isinstance(value, Decimal):  # Numeric(10, 4) reads back as 1.0000: keep it tidy
            values[name] = _tidy(value)
    return values


def _to_limits(row: RiskLimitsRow) -> RiskLimits:
    return RiskLimits(**_values(row))


def own_fields(row: RiskLimitsRow) -> frozenset[str]:
    """Return the limits an account's row sets itself (a household's row: every limit).

    ``own_fields`` NULL is a row written before accounts followed the household per limit:
    every limit is its own.
    """
    if row.account_id is None or row.own_fields is None:
        return frozenset(LIMIT_FIELDS)
    return frozenset(json.loads(row.own_fields)) & frozenset(LIMIT_FIELDS)


def compose(household: RiskLimits, own: Mapping[str, object]) -> RiskLimits:
    """Return an account's limits: its ``own`` values, the household's in every other limit.

    Raises
    ------
    ValidationError
        When the two together break a rule (a weekly loss limit below the daily one ...).
    """
    values = {name: getattr(household, name) for name in LIMIT_FIELDS}
    return RiskLimits(**(values | dict(own)))


def _account_view(row: RiskLimitsRow, household: RiskLimits) -> tuple[RiskLimits, frozenset[str]]:
    own = own_fields(row)
    values = _values(row)
    return compose(household, {name: values[name] for name in own}), own


def _tidy(value: Decimal) -> Decimal:
    """Return ``value`` without trailing zeros and never in exponent form (10, not 1E+1)."""
    return value.quantize(Decimal(1)) if value == value.to_integral() else value.normalize()


def household_limits(session: Session, household_id: int) -> RiskLimits:
    """Return the household's default limits (:class:`RiskLimits` defaults without a row)."""
    row = session.scalar(select(RiskLimitsRow).where(
        RiskLimitsRow.scope_key == limits_key(household_id, None)))
    return _to_limits(row) if row is not None else RiskLimits()


# Built once (keys bound at execution): the risk gate reads limits on every order.
_LIMITS_OF_KEYS = select(RiskLimitsRow).where(
    RiskLimitsRow.scope_key.in_(bindparam("keys", expanding=True)))


def effective_limits(session: Session, household_id: int,
                     account_id: int | None) -> tuple[RiskLimits, str]:
    """Return the limits that apply to an account and where they come from.

    The source is "account" (it sets some limits itself; the others follow the household's),
    "household" (the household's defaults) or "default" (neither exists: the documented
    :class:`RiskLimits` defaults). See :func:`limits_detail` for which limits are its own.
    """
    limits, source, _own = limits_detail(session, household_id, account_id)
    return limits, source


def limits_detail(session: Session, household_id: int,
                  account_id: int | None) -> tuple[RiskLimits, str, frozenset[str]]:
    """Return :func:`effective_limits` and the names of the limits the account sets itself.

    An account's row holds its own limits only (``own_fields``); every other limit follows
    the household's defaults as they are now, whenever an admin changes them.
    """
    keys = [limits_key(household_id, None)]
    if account_id is not None:
        keys.append(limits_key(household_id, account_id))
    rows = {row.scope_key: row for row in session.scalars(_LIMITS_OF_KEYS, {"keys": keys})}
    household = _to_limits(rows[keys[0]]) if keys[0] in rows else RiskLimits()
    source = "household" if keys[0] in rows else "default"
    if account_id is not None and keys[1] in rows:
        limits, own = _account_view(rows[keys[1]], household)
        if own:
            return limits, "account", own
    return household, source, frozenset()


def account_limits(session: Session, household_id: int,
                   account_ids: Iterable[int]) -> dict[int, RiskLimits]:
    """Return the limits that apply to each account, in one read (see :func:`effective_limits`)."""
    ids = list(account_ids)
    keys = [limits_key(household_id, None), *(limits_key(household_id, a) for a in ids)]
    rows = {row.scope_key: row for row in session.scalars(
        select(RiskLimitsRow).where(RiskLimitsRow.scope_key.in_(keys)))}
    household = rows.get(keys[0])
    fallback = _to_limits(household) if household is not None else RiskLimits()
    own = {a: rows.get(limits_key(household_id, a)) for a in ids}
    return {a: _account_view(row, fallback)[0] if row is not None else fallback
            for a, row in own.items()}


def account_overrides(session: Session,
                      household_id: int) -> dict[int, dict[str, object]]:
    """Return each account of the household with limits of its own: those limits' values."""
    rows = session.scalars(select(RiskLimitsRow).where(
        RiskLimitsRow.household_id == household_id, RiskLimitsRow.account_id.is_not(None)))
    out: dict[int, dict[str, object]] = {}
    for row in rows:
        own, values = own_fields(row), _values(row)
        if own and row.account_id is not None:
            out[row.account_id] = {name: values[name] for name in own}
    return out


def save_limits(session: Session, household_id: int, account_id: int | None,
                limits: RiskLimits, user_id: int | None, at: datetime,
                own: Iterable[str] | None = None) -> None:
    """Store ``limits`` for the household's defaults (account None) or one account.

    For an account, ``own`` names the limits it sets itself (None: every one); the others
    follow the household's (their columns keep the values in force when saved, unread).
    """
    key = limits_key(household_id, account_id)
    row = session.scalar(select(RiskLimitsRow).where(RiskLimitsRow.scope_key == key))
    if row is None:
        row = RiskLimitsRow(household_id=household_id, account_id=account_id, scope_key=key)
        session.add(row)
    for name in LIMIT_FIELDS:
        setattr(row, name, getattr(limits, name))
    row.own_fields = None if account_id is None or own is None else json.dumps(
        [name for name in LIMIT_FIELDS if name in set(own)])
    row.updated_by_user_id, row.updated_at = user_id, at
    session.flush()


def delete_limits(session: Session, household_id: int, account_id: int | None) -> bool:
    """Remove a scope's own limits (it falls back to the next level); return whether any."""
    result = session.execute(delete(RiskLimitsRow).where(
        RiskLimitsRow.scope_key == limits_key(household_id, account_id)))
    return bool(getattr(result, "rowcount", 0))


# ----------------------------------------------------------------------------------------------
# States
# ----------------------------------------------------------------------------------------------


def state_key(household_id: int, scope: Scope, key: str, kind: StateKind) -> str:
    """Return the ``active_key`` of a state: one scope and kind engaged once at a time.

    ``key`` is the account id (ACCOUNT), the strategy name (STRATEGY) or ignored (HOUSEHOLD).
    """
    if scope is Scope.HOUSEHOLD:
        return f"household:{household_id}:{kind.value}"
    if scope is Scope.ACCOUNT:
        return f"account:{int(key)}:{kind.value}"
    return f"strategy:{household_id}:{key}:{kind.value}"


def engine_key(row: RiskStateRow) -> str:
    """Return the key the risk engine uses for a state's scope (household/account id, name)."""
    if row.scope is Scope.HOUSEHOLD:
        return str(row.household_id)
    if row.scope is Scope.ACCOUNT:
        return str(row.account_id)
    return row.strategy or ""


def is_lapsed(row: RiskStateRow, today: date) -> bool:
    """Return whether a loss-limit state's day/week is over (``until`` has come)."""
    return _lapsed(row.kind, row.until, today)


def _lapsed(kind: StateKind, until: date | None, today: date) -> bool:
    return kind in SELF_LIFTING and until is not None and until <= today


#: The covering states as plain columns: read before every order, so one light statement.
_COVERING = select(
    RiskStateRow.kind, RiskStateRow.scope, RiskStateRow.phase, RiskStateRow.reason,
    RiskStateRow.strategy, RiskStateRow.until,
).where(
    RiskStateRow.household_id == bindparam("household"),
    RiskStateRow.phase.in_(LIVE_PHASES),
    or_(RiskStateRow.scope.in_([Scope.HOUSEHOLD, Scope.STRATEGY]),
        RiskStateRow.account_id == bindparam("account")),
).order_by(RiskStateRow.id)


def _today(today: date | None) -> date:
    return today if today is not None else now_ist().date()


def live_states(session: Session, household_id: int | None = None) -> list[RiskStateRow]:
    """Return ENGAGING and ACTIVE state rows (of one household, or all), oldest first."""
    query = select(RiskStateRow).where(RiskStateRow.phase.in_(LIVE_PHASES))
    if household_id is not None:
        query = query.where(RiskStateRow.household_id == household_id)
    return list(session.scalars(query.order_by(RiskStateRow.id)))


def covering_states(session: Session | Connection, household_id: int, account_id: int,
                    today: date | None = None) -> tuple[ActiveState, ...]:
    """Return the states that stop orders of an account (the gate's ``states`` input).

    ENGAGING and ACTIVE states of the household, of the account and of every strategy of the
    household (the engine applies a strategy's state only to that strategy's orders). Loss
    limits whose ``until`` is ``today`` (IST, default now) or earlier no longer cover.
    ``session`` may be a plain connection (the gate reads it on one before every order).
    """
    day = _today(today)
    rows = session.execute(_COVERING, {"household": household_id, "account": account_id})
    return tuple(
        ActiveState(kind=row.kind, scope=row.scope, phase=row.phase, reason=row.reason,
                    strategy=row.strategy if row.scope is Scope.STRATEGY else None)
        for row in rows if not _lapsed(row.kind, row.until, day))


def engaged_keys(session: Session, household_id: int | None = None,
                 today: date | None = None) -> frozenset[tuple[Scope, str, StateKind]]:
    """Return (scope, engine key, kind) of every live state, for the post-trade evaluation."""
    day = _today(today)
    return frozenset((row.scope, engine_key(row), row.kind)
                     for row in live_states(session, household_id) if not is_lapsed(row, day))


def lapsed_states(session: Session, today: date) -> list[RiskStateRow]:
    """Return live loss-limit states whose day/week is over (to be cleared by the service)."""
    return [row for row in live_states(session) if is_lapsed(row, today)]


def report_steps(row: RiskStateRow) -> list[dict[str, object]]:
    """Return the procedure steps stored on a state (JSON list of dicts)."""
    steps = json.loads(row.report or "[]")
    return steps if isinstance(steps, list) else []


def username_of(session: Session, user_id: int | None) -> str | None:
    """Return a user's username (None for no user: the system)."""
    if user_id is None:
        return None
    return session.scalar(select(UserRow.username).where(UserRow.id == user_id))


# ----------------------------------------------------------------------------------------------
# Position controls
# ----------------------------------------------------------------------------------------------


def control_key(account_id: int, symbol: str, product: Product) -> str:
    """Return the ``active_key`` of a position's control."""
    return f"{account_id}:{symbol}:{product.value}"


def to_control(row: Any) -> PositionControl:
    """Return the domain control of a ``PositionControlRow`` or a row of its columns."""
    return PositionControl(
        control_id=row.id, account_id=row.account_id, symbol=row.symbol, product=row.product,
        stop_loss=row.stop_loss, target=row.target, trail_points=row.trail_points,
        trail_pct=row.trail_pct, extreme=row.extreme)


def active_controls(session: Session,
                    account_ids: Iterable[int] | None = None) -> list[PositionControl]:
    """Return the active position controls (of some accounts, or all), oldest first."""
    query = select(
        PositionControlRow.id, PositionControlRow.account_id, PositionControlRow.symbol,
        PositionControlRow.product, PositionControlRow.stop_loss, PositionControlRow.target,
        PositionControlRow.trail_points, PositionControlRow.trail_pct, PositionControlRow.extreme,
    ).where(PositionControlRow.is_active.is_(True))
    if account_ids is not None:
        query = query.where(PositionControlRow.account_id.in_(list(account_ids)))
    return [to_control(row) for row in session.execute(query.order_by(PositionControlRow.id))]


def apply_trails(session: Session, updates: Iterable[TrailUpdate]) -> int:
    """Store trailing stops' new best prices; return how many active controls moved."""
    wanted = {update.control_id: update for update in updates}
    if not wanted:
        return 0
    rows = {row.id: row for row in session.scalars(
        select(PositionControlRow).where(PositionControlRow.id.in_(list(wanted))))}
    moved = 0
    for update in wanted.values():
        row = rows.get(update.control_id)
        if row is not None and row.is_active and row.extreme != update.extreme:
            row.extreme = update.extreme
            moved += 1
    session.flush()
    return moved


def deactivate_control(row: PositionControlRow) -> None:
    """Retire a control (its position key is free for a new one)."""
    row.is_active, row.active_key = False, None


def retire_controls(session: Session, control_ids: Iterable[int],
                    created_before: datetime | None = None) -> list[PositionControlRow]:
    """Retire the still-active controls of ``control_ids`` (their position closed).

    With ``created_before`` only those set at or before that time are retired. Return the rows
    retired, locked, for the caller's audit.
    """
    ids = list(control_ids)
    if not ids:
        return []
    rows = session.scalars(select(PositionControlRow).where(
        PositionControlRow.id.in_(ids), PositionControlRow.is_active.is_(True))
        .order_by(PositionControlRow.id).with_for_update())
    retired = [row for row in rows
               if created_before is None or to_ist(row.created_at) <= created_before]
    for row in retired:
        deactivate_control(row)
    session.flush()
    return retired


def control_times(session: Session, control_ids: Iterable[int]) -> dict[int, datetime]:
    """Return when each of ``control_ids`` was set (IST)."""
    return {ident: to_ist(at) for ident, at in session.execute(
        select(PositionControlRow.id, PositionControlRow.created_at)
        .where(PositionControlRow.id.in_(list(control_ids))))}


def mark_triggered(session: Session, control_id: int, rule: str, at: datetime,
                   order_id: int | None) -> bool:
    """Retire a control that fired (rule, time, exit order); False if it was not active."""
    row = session.get(PositionControlRow, control_id, with_for_update=True)
    if row is None or not row.is_active:
        return False
    deactivate_control(row)
    row.triggered_at, row.triggered_rule, row.triggered_order_id = at, rule[:20], order_id
    session.flush()
    return True


# ----------------------------------------------------------------------------------------------
# MTM limits and equity peaks
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class MtmLimitView:
    """An MTM stop-loss/target of the household or of one strategy, as stored (rupees)."""

    id: int
    household_id: int
    scope: Scope
    key: str  # household id or strategy name
    stop_loss: Decimal | None
    target: Decimal | None
    updated_by: str | None
    updated_at: datetime  # IST


def mtm_limit_rows(session: Session, household_id: int | None = None) -> list[MtmLimitView]:
    """Return the MTM limits (of one household, or all), by household, scope and key."""
    query = select(MtmLimitRow, UserRow.username).outerjoin(
        UserRow, UserRow.id == MtmLimitRow.updated_by_user_id)
    if household_id is not None:
        query = query.where(MtmLimitRow.household_id == household_id)
    rows = session.execute(query.order_by(MtmLimitRow.household_id, MtmLimitRow.scope,
                                          MtmLimitRow.key)).all()
    return [MtmLimitView(row.id, row.household_id, row.scope, row.key, row.stop_loss,
                         row.target, username, to_ist(row.updated_at))
            for row, username in rows]


@dataclass(frozen=True, slots=True)
class Peak:
    """An account's recorded equity peak and the money paid in (net) that it counted."""

    equity: Decimal
    paid_in: Decimal = Decimal(0)

    def at(self, paid_in: Decimal) -> Decimal:
        """Return the peak with the money moved in or out since it was recorded.

        A deposit or withdrawal is not a trading gain or loss: ``paid_in`` is the money paid
        in now (the figure the equity it is compared with counts), and the peak moves by its
        difference from what the peak counted.
        """
        return self.equity + paid_in - self.paid_in


def peak_equity(session: Session, account_id: int) -> Decimal | None:
    """Return the highest equity recorded for an account (None: none yet), as recorded."""
    return session.scalar(
        select(EquityPeakRow.peak_equity).where(EquityPeakRow.account_id == account_id))


def peak_of(session: Session, account_id: int) -> Peak | None:
    """Return an account's recorded peak and the paid-in it counted (None: none yet)."""
    row = session.execute(select(EquityPeakRow.peak_equity, EquityPeakRow.paid_in)
                          .where(EquityPeakRow.account_id == account_id)).first()
    return Peak(row[0], row[1]) if row is not None else None


def peak_equities(session: Session, account_ids: Iterable[int]) -> dict[int, Decimal]:
    """Return the recorded equity peak of each account that has one, in one read."""
    return {a: peak.equity for a, peak in peaks(session, account_ids).items()}


def peaks(session: Session, account_ids: Iterable[int]) -> dict[int, Peak]:
    """Return the recorded peak (and the paid-in it counted) of each account with one."""
    return {account_id: Peak(equity, paid_in) for account_id, equity, paid_in in session.execute(
        select(EquityPeakRow.account_id, EquityPeakRow.peak_equity, EquityPeakRow.paid_in)
        .where(EquityPeakRow.account_id.in_(list(account_ids)))).all()}


def fill_versions(session: Session, account_ids: Iterable[int]) -> dict[int, tuple[int, int]]:
    """Return (fill count, last fill id) of each account, (0, 0) without fills, in one read.

    The gate's snapshots carry the same pair as their version: a different pair means the
    account has new (or removed) fills and its book must be rebuilt.
    """
    ids = list(account_ids)
    found = {account_id: (int(count), int(last)) for account_id, count, last in session.execute(
        select(TradeRow.account_id, func.count(TradeRow.id), func.max(TradeRow.id))
        .where(TradeRow.account_id.in_(ids)).group_by(TradeRow.account_id))}
    return {a: found.get(a, (0, 0)) for a in ids}


def raise_peaks(session: Session, equities: Mapping[int, Decimal], at: datetime,
                paid_in: Mapping[int, Decimal]) -> list[int]:
    """Record each account's equity where it beats its stored peak; return those raised.

    ``paid_in`` is the money paid in (net) that each equity counts (the risk gate's snapshot
    of the same book reads it from the broker): an equity beats the peak when its gain over
    that beats the peak's over what it counted, so a deposit is no new peak and a withdrawal
    no fall from one.
    """
    if not equities:
        return []
    stored = {row.account_id: row for row in session.scalars(
        select(EquityPeakRow).where(EquityPeakRow.account_id.in_(list(equities))))}
    raised = []
    for account_id, equity in sorted(equities.items()):
        row = stored.get(account_id)
        paid = paid_in[account_id]
        if row is None:
            session.add(EquityPeakRow(account_id=account_id, peak_equity=equity, peak_at=at,
                                      paid_in=paid))
        elif equity - paid > row.peak_equity - row.paid_in:
            row.peak_equity, row.peak_at, row.paid_in = equity, at, paid
        else:
            continue
        raised.append(account_id)
    session.flush()
    return raised


def reset_peak(session: Session, account_id: int, equity: Decimal | None,
               at: datetime, paid_in: Decimal) -> Decimal | None:
    """Start an account's drawdown afresh from ``equity``; return the peak it replaces.

    A positive ``equity`` becomes the peak, counting ``paid_in``, the money paid in now (as the
    book that gave ``equity`` counts it); None or not positive removes it (the watch records
    the next positive equity as the peak). The peak returned is moved by the money paid in or
    out since it was recorded.
    """
    row = session.get(EquityPeakRow, account_id, with_for_update=True)
    paid = paid_in
    before = Peak(row.peak_equity, row.paid_in).at(paid) if row is not None else None
    if equity is not None and equity > 0:
        if row is None:
            session.add(EquityPeakRow(account_id=account_id, peak_equity=equity, peak_at=at,
                                      paid_in=paid))
        else:
            row.peak_equity, row.peak_at, row.paid_in = equity, at, paid
    elif row is not None:
        session.delete(row)
    session.flush()
    return before

