"""Risk limits, states and their procedures, position controls and MTM limits, with rights.

States stop trading for a scope (the household, one account, or one strategy's orders) and
survive restarts (``risk_states``). Engaging one — a person's panic, or the risk watch's kill
switch and loss limits — runs one procedure:

1. insert the state ENGAGING (commit, audit, alert); the unique ``active_key`` makes a second
   engage of the same scope and kind return the first instead of doubling it;
2. for each account of the scope: cancel its open orders (strategy scope: that strategy's) and
   its active GTTs, then close every open position at market through the order path
   (``source="panic"``: the gate's action ``protect``) with a client order id derived from the
   state, so a resumed procedure never sends an exit twice;
3. mark the state ACTIVE and alert a summary. Each step is stored on the state as it happens
   (and audited); a failed step (market closed, broker error) is reported and the procedure
   goes on. A crash leaves the state ENGAGING; :meth:`RiskService.resume_engaging` finishes it.

Who may do what
---------------
================  ===========================================  ===============================
action            household scope                              account / strategy scope
================  ===========================================  ===============================
panic, disable    admin                                        account: TRADE on it or admin;
                                                               strategy: admin or anyone who
                                                               trades an account
re-enable         admin                                        account: TRADE on it or admin;
                                                               strategy (stopped on every
                                                               account): admin or a member
                                                               who trades every active
                                                               account, whoever engaged it;
                                                               a kill switch needs an admin
limits            household defaults: admin                    account: admin; a member with
                                                               TRADE only makes them stricter
================  ===========================================  ===============================
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass
from datetime import date, datetime, time
from decimal import Decimal, InvalidOperation
from types import SimpleNamespace

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import alerts, audit, risk_store
from core.alerts import Alert
from core.authz import ACTING_ROLES
from core.clock import format_ist, now_ist, to_ist
from core.config import Settings
from core.domain import Actor, Permission, Role
from core.errors import OrderClosed, TradingError, ValidationError
from core.marketdata.store import instrument as find_instrument
from core.money import as_typed, inr, paise
from core.risk_store import MtmLimitView
from core.services.base import ServiceBase
from core.services.household import HouseholdService
from core.services.orders import OrderService
from core.services.risk_gate import DeskRiskGate
from core.trading import (
    STRATEGY_RE,
    ZERO,
    GttStatus,
    OrderRequest,
    OrderStatus,
    OrderType,
    Product,
    Side,
)
from db.engine import Database
from db.locks import lock_accounts
from db.models import (
    AccountRow,
    GttRow,
    HouseholdRow,
    MemberRow,
    MtmLimitRow,
    OrderRow,
    PositionControlRow,
    RiskStateRow,
    TradeRow,
    UserRow,
)
from engines.risk_types import (
    LIMIT_FIELDS,
    PositionControl,
    RiskLimits,
    Scope,
    StateKind,
    StatePhase,
    limit_label,
    limit_problems,
)

__all__ = ["EXPLANATIONS", "LimitsView", "MtmLimitView", "PanicReport", "PanicStep",
           "RiskService", "RiskStateView", "parse_limits"]

ADMINS = frozenset({Role.ADMIN, Role.SUPER_ADMIN})
OPEN_STATUSES = (OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED)
REASON_CHARS = 300
KIND_TITLES = {
    StateKind.KILL_SWITCH: "Kill switch", StateKind.PANIC: "Panic",
    StateKind.DAILY_LOSS: "Daily loss limit", StateKind.WEEKLY_LOSS: "Weekly loss limit",
    StateKind.DISABLED: "Trading disabled",
}

#: The limits in plain words, for the Risk page's form (the default is in brackets).
EXPLANATIONS: dict[str, str] = {
    "risk_per_trade_pct": "Most of the account's capital one trade may lose if it hits its "
                          "stop; the size follows from the stop distance [1%]",
    "atr_stop_multiple": "Without a stop, assume it lies this many ATR(14) from the price "
                         "[2 × ATR]",
    "fallback_stop_pct": "Without a stop or ATR, assume it lies this % from the price [2%]",
    "high_volatility_atr_pct": "A stock whose ATR(14) is above this % of its price is marked "
                               "HIGH risk [4%]",
    "max_open_positions": "Most distinct stocks open at once; the 10th is allowed [10]",
    "max_sector_pct": "Most of the capital in one sector after the order; exactly at the "
                      "limit passes, above it the size is cut [30%]",
    "correlation_threshold": "Warn when a new stock's 60-day return correlation with an open "
                             "one is above this [0.80]",
    "correlation_reduce": "Also halve the size of such a correlated order [off]",
    "daily_loss_pct": "Loss today (realized + MTM − charges) that stops the account until the "
                      "next trading day, with an alert [2%]",
    "weekly_loss_pct": "Loss this week that stops the account until next week [5%]",
    "drawdown_reduce_pct": "Fall from the equity peak where sizes start to shrink [10%]",
    "drawdown_kill_pct": "Fall from the peak that trips the kill switch; only an admin "
                         "re-enables [15%]",
    "choppy_size_factor": "Size multiplier in a CHOPPY market (PANIC allows no new entries) "
                          "[0.5]",
    "max_orders_per_second": "Orders per second per account and exchange segment; SEBI's "
                             "threshold is 10 [10]",
    "max_order_value": "Largest order value in rupees [₹5,00,000]",
    "max_order_quantity": "Largest order in shares [5000]",
    "duplicate_window_s": "Refuse the same symbol, side and quantity again within this many "
                          "seconds [10]",
    "portfolio_mtm_stop_loss": "Day MTM loss in rupees that closes every position of the "
                               "account [none]",
    "portfolio_mtm_target": "Day MTM profit in rupees that closes every position of the "
                            "account [none]",
    "mis_square_off_at": "Time (IST) the intraday (MIS) positions are squared off, 09:15-15:19: "
                         "before the broker's own 15:20 [15:15]",
}

#: Limits where a larger value is stricter (a wider assumed stop gives a smaller size ...).
HIGHER_IS_STRICTER = frozenset({"atr_stop_multiple", "fallback_stop_pct", "duplicate_window_s",
                                "correlation_reduce"})
#: Optional amounts: none is the loosest, a smaller amount is stricter.
OPTIONAL_AMOUNTS = frozenset({"portfolio_mtm_stop_loss", "portfolio_mtm_target"})
_TRUE = frozenset({"true", "yes", "on", "1"})
_FALSE = frozenset({"false", "no", "off", "0", ""})
_HHMM = re.compile(r"^(\d{1,2}):(\d{2})$")
_COID_UNSAFE = re.compile(r"[^A-Za-z0-9_:\-]")
#: Limits in rupees: a ₹ sign, digit grouping and at most 2 decimals (paise) are accepted.
RUPEE_FIELDS = frozenset({"max_order_value", "portfolio_mtm_stop_loss", "portfolio_mtm_target"})
#: Digit grouping of a whole number: Indian (5,00,000; 1,00,00,000) or Western (500,000).
_GROUPED = re.compile(r"^(?:\d{1,2}(?:,\d{2})*,\d{3}|\d{1,3}(?:,\d{3})+)$")
_COMMA_RULE = {
    True: "a comma may only group the digits of a whole amount (5,00,000 or 500,000); write "
          "decimals with a point",
    False: "this limit takes no digit grouping, and a comma is no decimal point; write "
           "decimals with a point (0.5)",
}


# ----------------------------------------------------------------------------------------------
# Views
# ----------------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class LimitsView:
    """Limits of a scope for the form: the values, where they come from, the defaults."""

    limits: RiskLimits
    source: str  # "account" | "household" | "default"
    household_defaults: RiskLimits
    explanations: dict[str, str]
    #: the limits the account sets itself; every other one follows the household's defaults
    own: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class PanicStep:
    """One step of a state's procedure and how it went."""

    step: str  # "cancel" | "close" | "disable"
    account_id: int | None
    target: str  # "order 12 (BUY 10 INFY)", "GTT 3", "INFY MIS 20", "account 4"
    ok: bool
    detail: str


@dataclass(frozen=True, slots=True)
class PanicReport:
    """What engaging a state did; ``created`` is False when an existing state was returned."""

    state_id: int
    kind: StateKind
    scope: Scope
    key: str
    phase: StatePhase
    steps: tuple[PanicStep, ...]
    created: bool = True
    #: the scope as a person reads it ("the account Priya · Trading"); "" falls back to the key
    label: str = ""

    @property
    def ok(self) -> bool:
        """Return whether every step succeeded."""
        return all(step.ok for step in self.steps)

    def summary(self) -> str:
        """Return one line: ``Panic account Priya · Trading: 5 of 6 steps done; failed: ...``."""
        failed = [f"{s.step} {s.target}: {s.detail}" for s in self.steps if not s.ok]
        scope = self.label.removeprefix("the ") or f"{self.scope.value} {self.key}"
        text = (f"{KIND_TITLES[self.kind]} {scope}: "
                f"{len(self.steps) - len(failed)} of {len(self.steps)} steps done")
        return text + ("; failed: " + "; ".join(failed) if failed else "")


@dataclass(frozen=True, slots=True)
class RiskStateView:
    """A state for the Risk page, times in IST."""

    id: int
    scope: Scope
    account_id: int | None
    account_label: str | None
    strategy: str | None
    kind: StateKind
    phase: StatePhase
    reason: str
    until: date | None
    engaged_at: datetime
    engaged_by: str | None  # None: the system (risk watch)
    cleared_at: datetime | None
    cleared_by: str | None
    clear_note: str | None
    steps: tuple[PanicStep, ...]
    may_reenable: bool
    #: Who may lift it (:func:`reenable_needs`), for the page to tell those who may not.
    reenable_by: str = ""


# ----------------------------------------------------------------------------------------------
# Parsing limits from a form
# ----------------------------------------------------------------------------------------------


def _kind_of(name: str) -> str:
    default = getattr(RiskLimits(), name)
    if default is None:
        return "amount"
    if isinstance(default, bool):
        return "bool"
    if isinstance(default, int):
        return "int"
    if isinstance(default, time):
        return "time"
    return "decimal"


def _decimal(name: str, raw: object) -> Decimal:
    """Return ``raw`` as a number; commas only as digit grouping of whole rupees or shares."""
    if isinstance(raw, bool) or not isinstance(raw, (str, int, float, Decimal)):
        raise ValidationError(f"{limit_label(name)} must be a number; got {raw!r}")
    rupees = name in RUPEE_FIELDS
    text = raw.strip() if isinstance(raw, str) else str(raw)
    if rupees:
        text = text.removeprefix("₹").strip()
    if "," in text:
        # A comma only groups the digits of whole rupees or shares, never marks decimals:
        # '0,5' is not half a percent, and '1,5' is not ₹15.
        groups = rupees or _kind_of(name) == "int"
        whole, _point, fraction = text.removeprefix("-").partition(".")
        if not groups or "," in fraction or not _GROUPED.match(whole):
            raise ValidationError(f"{limit_label(name)} must be a number (e.g. 1 or 0.5); got "
                                  f"{raw!r}: {_COMMA_RULE[groups]}")
        text = text.replace(",", "")
    try:
        value = Decimal(text)
    except InvalidOperation:
        raise ValidationError(f"{limit_label(name)} must be a number (e.g. 1 or 0.5); "
                              f"got {raw!r}") from None
    if not value.is_finite():
        raise ValidationError(f"{limit_label(name)} must be a finite number; got {raw!r}")
    if rupees and value != paise(value):
        raise ValidationError(f"{limit_label(name)} must be in rupees with at most 2 decimals "
                              f"(paise); got {raw!r}")
    return value


def _parse_one(name: str, raw: object) -> object:
    kind = _kind_of(name)
    if kind == "amount":
        if raw is None or (isinstance(raw, str) and not raw.strip()):
            return None
        return _decimal(name, raw)
    if kind == "bool":
        if isinstance(raw, bool):
            return raw
        text = str(raw).strip().lower() if isinstance(raw, (str, int)) else None
        if text in _TRUE or text in _FALSE:
            return text in _TRUE
        raise ValidationError(f"{limit_label(name)} must be yes or no (true/false); "
                              f"got {raw!r}")
    if kind == "time":
        if isinstance(raw, time):
            return raw
        match = _HHMM.match(raw.strip()) if isinstance(raw, str) else None
        if match is None or int(match[1]) > 23 or int(match[2]) > 59:
            raise ValidationError(f"{limit_label(name)} must be a time HH:MM (IST); "
                                  f"got {raw!r}")
        return time(int(match[1]), int(match[2]))
    value = _decimal(name, raw)
    if kind == "int":
        if value != value.to_integral_value():
            raise ValidationError(f"{limit_label(name)} must be a whole number; got {raw!r}")
        return int(value)
    return value


def parse_limits(values: Mapping[str, object]) -> dict[str, object]:
    """Return form ``values`` parsed to the limits' types.

    Raises
    ------
    ValidationError
        For an unknown field or values of the wrong kind: every bad value at once, each naming
        the limit (its label) and the value.
    """
    parsed, problems = _parse_all(values)
    if problems:
        raise ValidationError(_limits_refusal(problems))
    return parsed


#: The latest MIS square-off time a person may set: the minute before the brokers' own
#: intraday auto square-off at 15:20 IST (MARKET_FACTS.md §4). A later time stored before this
#: rule (up to 15:29, still valid) stays until changed.
LAST_SQUARE_OFF_AT = time(15, 19)


def _square_off_problems(parsed: Mapping[str, object], current: RiskLimits) -> list[str]:
    """Refuse a new MIS square-off time after :data:`LAST_SQUARE_OFF_AT` (up to 15:29)."""
    square_off = parsed.get("mis_square_off_at")
    if (not isinstance(square_off, time) or square_off == current.mis_square_off_at
            or not LAST_SQUARE_OFF_AT < square_off <= time(15, 29)):
        return []  # unchanged, in time, or after the close (limit_problems says so)
    return [f"{limit_label('mis_square_off_at')} must be at most {LAST_SQUARE_OFF_AT:%H:%M} IST, "
            "before the brokers' own MIS auto square-off at 15:20 (Zerodha, Dhan: ₹50 + GST an "
            f"order, and no fresh MIS after it); got {square_off:%H:%M}"]


def _parse_all(values: Mapping[str, object]) -> tuple[dict[str, object], list[str]]:
    """Return the values that parse and a sentence for each that does not."""
    unknown = sorted(set(values) - set(LIMIT_FIELDS))
    if unknown:
        raise ValidationError(f"Unknown risk limit {', '.join(unknown)}; the limits are "
                              f"{', '.join(LIMIT_FIELDS)}")
    parsed: dict[str, object] = {}
    problems: list[str] = []
    for name, raw in values.items():
        try:
            parsed[name] = _parse_one(name, raw)
        except ValidationError as exc:
            problems.append(str(exc))
    return parsed, problems


def _limits_refusal(problems: list[str]) -> str:
    head = "Invalid risk limit: " if len(problems) == 1 else \
        f"Invalid risk limits ({len(problems)} problems): "
    return head + "; ".join(problems) + ". Nothing was saved."


def looser_fields(new: RiskLimits, base: RiskLimits, names: tuple[str, ...] = LIMIT_FIELDS,
                  than: str = "the household's") -> dict[str, str]:
    """Return, for each of ``names`` where ``new`` is looser than ``base``, a sentence.

    ``than`` names ``base`` in the sentence ("the household's", "the account's current").
    """
    out = {}
    for name in names:
        value, reference = getattr(new, name), getattr(base, name)
        if value == reference:
            continue
        if name in OPTIONAL_AMOUNTS:
            looser = value is None or (reference is not None and value > reference)
            rule = "an amount, and a smaller one, is stricter than none"
        elif name in HIGHER_IS_STRICTER:
            looser, rule = value < reference, "higher is stricter"
        else:
            looser, rule = value > reference, "lower is stricter"
        if looser:
            out[name] = (f"{limit_label(name)} {_shown(value)} is looser than {than} "
                         f"{_shown(reference)} ({rule})")
    return out


def _shown(value: object) -> str:
    if value is None:
        return "none"
    if isinstance(value, time):
        return value.strftime("%H:%M")
    return str(value)


# ----------------------------------------------------------------------------------------------
# The service
# ----------------------------------------------------------------------------------------------


class RiskService(ServiceBase):
    """Limits, states (panic, kill switch, loss limits, disable), controls, MTM limits, alerts."""

    def __init__(self, db: Database, settings: Settings, household: HouseholdService,
                 orders: OrderService, clock: Callable[[], datetime] = now_ist) -> None:
        """Bind to ``db``; exits go through ``orders.manager`` (the one order path)."""
        super().__init__(db, settings)
        self.household = household
        self.orders = orders
        self.clock = clock

    # -- rights ---------------------------------------------------------------------------
    def _role(self, actor: Actor) -> Role:
        with self.db.transaction() as session:
            return self._fresh_role(session, actor)

    def _require_admin(self, actor: Actor, action: str, what: str) -> None:
        role = self._role(actor)
        if role not in ADMINS:
            self._deny(actor, action, f"household:{actor.household_id}",
                       f"Your role {role.value!r} may not {what}; an admin may")

    def _trade_ids(self, actor: Actor) -> set[int]:
        return {a.id for a in self.household.list_accounts(actor)
                if a.my_permission is Permission.TRADE}

    def _household_accounts(self, household_id: int) -> list[int]:
        with self.db.transaction() as session:
            return list(session.scalars(select(AccountRow.id).where(
                AccountRow.household_id == household_id, AccountRow.is_active.is_(True))
                .order_by(AccountRow.id)))

    def _account_right(self, actor: Actor, account_id: int) -> int:
        """Allow an admin of the account's household or a member with TRADE; return household."""
        account = self.household.get_account(actor, account_id)
        if self._role(actor) in ADMINS and account.household_id == actor.household_id:
            return account.household_id
        return self.household.authorize_trade(actor, account_id).household_id

    def _scope_right(self, actor: Actor, scope: Scope, account_id: int | None,
                     strategy: str | None, action: str) -> tuple[str, int | None, str | None]:
        """Check the right to stop a scope; return (engine key, account id, strategy)."""
        if scope is Scope.HOUSEHOLD:
            self._require_admin(actor, action, "stop trading for the whole household")
            return str(actor.household_id), None, None
        if scope is Scope.ACCOUNT:
            if account_id is None:
                raise ValidationError("An account panic or disable needs the account")
            self._account_right(actor, account_id)
            return str(account_id), account_id, None
        name = _strategy_name(strategy)
        role = self._role(actor)
        if role not in ADMINS and (role not in ACTING_ROLES or not self._trade_ids(actor)):
            self._deny(actor, action, f"strategy:{name}",
                       f"Your role {role.value!r} may not stop strategy {name!r}: it needs an "
                       "admin or a member who trades an account")
        return name, None, name

    # -- limits ---------------------------------------------------------------------------
    def limits(self, actor: Actor, account_id: int | None) -> LimitsView:
        """Return an account's limits (or the household defaults, account None) for the form."""
        if account_id is not None:
            household_id = self.household.get_account(actor, account_id).household_id
        else:
            self._role(actor)
            household_id = actor.household_id
        with self.db.transaction() as session:
            limits, source, own = risk_store.limits_detail(session, household_id, account_id)
            defaults = risk_store.household_limits(session, household_id)
        return LimitsView(limits, source, defaults, dict(EXPLANATIONS), own)

    def set_limits(self, actor: Actor, account_id: int | None,
                   values: Mapping[str, object]) -> RiskLimits:
        """Change some limits of an account (or the household defaults, account None).

        ``values`` maps limit names to values, strings from a form allowed. Household
        defaults: admins only. An account: an admin, or a member with TRADE on it who only
        makes it at least as strict as the household defaults. An account keeps as its own
        the limits that then differ from the household's; in the others it goes on following
        the household's defaults when an admin changes them.

        Raises
        ------
        ValidationError
            A bad value (the field, the rule and the value); nothing is written.
        PermissionDenied
            No right, or a looser value than the household's (the field and both values).
        """
        household_id, is_admin = self._limits_right(actor, account_id, "risk.limits.set")
        parsed, problems = _parse_all(values)
        denial: str | None = None
        # One transaction under the household's limits lock: two people saving at once (an
        # admin tightening one field, a member another) each merge into what the other saved,
        # and a member's "only tighter" check judges the limits the write replaces.
        with self.db.transaction() as session:
            _lock_limits(session, household_id)
            current, _source = risk_store.effective_limits(session, household_id, account_id)
            defaults = risk_store.household_limits(session, household_id)
            merged = {name: getattr(current, name) for name in LIMIT_FIELDS} | parsed
            # Every problem at once: the values that do not parse, then the ranges and
            # relations of the rest (a value that did not parse keeps its current value).
            problems += limit_problems(SimpleNamespace(**merged))
            problems += _square_off_problems(parsed, current)
            if problems:
                raise ValidationError(_limits_refusal(problems))
            new = RiskLimits(**merged)
            changed = tuple(n for n in LIMIT_FIELDS if getattr(new, n) != getattr(current, n))
            own = frozenset(n for n in LIMIT_FIELDS if getattr(new, n) != getattr(defaults, n))
            if account_id is None:  # every account keeps valid limits with its own values
                problems = _followers_problems(session, household_id, new)
                if problems:
                    raise ValidationError(_limits_refusal(problems))
            if not is_admin:
                # A member only tightens: nothing looser than the account has now (an admin
                # may have made it stricter than the household's) nor than the defaults.
                looser = looser_fields(new, defaults, changed) | {
                    name: text for name, text in looser_fields(
                        new, current, changed, "the account's current").items()
                    if getattr(current, name) != getattr(defaults, name)}
                if looser:
                    name = _scope_label(session, Scope.ACCOUNT, str(account_id))
                    denial = (f"A member may only tighten the limits of "
                              f"{name.removeprefix('the ')} (nothing looser than they are now "
                              "or than the household defaults); an admin may loosen them: "
                              + "; ".join(looser[n] for n in changed if n in looser))
            if denial is None and account_id is not None and not own:
                risk_store.delete_limits(session, household_id, account_id)  # follows all
            elif denial is None:
                risk_store.save_limits(session, household_id, account_id, new, actor.user_id,
                                       self.clock(), own)
            if denial is None:
                details: dict[str, object] = {
                    name: [_shown(getattr(current, name)), _shown(getattr(new, name))]
                    for name in changed}
                if account_id is not None:
                    details["own"] = [n for n in LIMIT_FIELDS if n in own]
                self._audit(session, actor, "risk.limits.set",
                            risk_store.limits_key(household_id, account_id), details,
                            household_id=household_id)
        if denial is not None:  # audited in its own transaction, once the lock is released
            self._deny(actor, "risk.limits.set", f"account:{account_id}", denial)
        return new

    def reset_limits(self, actor: Actor, account_id: int | None) -> RiskLimits:
        """Drop an account's own limits (back to the household's), or the household's own.

        A member (not an admin) may do it only when that loosens nothing: the household's
        limits are at least as strict as the account's now.
        """
        household_id, is_admin = self._limits_right(actor, account_id, "risk.limits.reset")
        denial: str | None = None
        with self.db.transaction() as session:  # under the lock, as set_limits
            _lock_limits(session, household_id)
            if not is_admin:
                current, _source = risk_store.effective_limits(session, household_id,
                                                               account_id)
                defaults = risk_store.household_limits(session, household_id)
                looser = looser_fields(defaults, current, than="the account's current")
                if looser:
                    name = _scope_label(session, Scope.ACCOUNT, str(account_id))
                    denial = (f"Going back to the household defaults would loosen the limits "
                              f"of {name.removeprefix('the ')}; only an admin may: "
                              + "; ".join(looser.values()))
            if denial is None and account_id is None:  # back to the built-in defaults
                problems = _followers_problems(session, household_id, RiskLimits())
                if problems:
                    raise ValidationError(_limits_refusal(problems))
            if denial is None:
                removed = risk_store.delete_limits(session, household_id, account_id)
                self._audit(session, actor, "risk.limits.reset",
                            risk_store.limits_key(household_id, account_id),
                            {"removed": removed}, household_id=household_id)
                return risk_store.effective_limits(session, household_id, account_id)[0]
        # audited in its own transaction, once the lock is released
        self._deny(actor, "risk.limits.reset", f"account:{account_id}", denial)

    def _limits_right(self, actor: Actor, account_id: int | None,
                      action: str) -> tuple[int, bool]:
        """Return (household id, is admin) if the actor may edit the scope's limits at all."""
        if account_id is None:
            self._require_admin(actor, action, "change the household's default risk limits")
            return actor.household_id, True
        household_id = self._account_right(actor, account_id)
        return household_id, self._role(actor) in ADMINS

    # -- states ---------------------------------------------------------------------------
    def states(self, actor: Actor, include_cleared: bool = False) -> list[RiskStateView]:
        """Return the household's states the actor may see (newest first)."""
        self.lift_lapsed()
        role = self._role(actor)
        viewable = {a.id for a in self.household.list_accounts(actor, include_closed=True)}
        trade_ids = self._trade_ids(actor)
        with self.db.transaction() as session:
            query = select(RiskStateRow).where(RiskStateRow.household_id == actor.household_id)
            if not include_cleared:
                query = query.where(RiskStateRow.phase != StatePhase.CLEARED)
            rows = session.scalars(query.order_by(RiskStateRow.id.desc())).all()
            return [self._view(session, row, role, actor, trade_ids, viewable) for row in rows
                    if row.scope is not Scope.ACCOUNT or row.account_id in viewable]

    def _view(self, session: Session, row: RiskStateRow, role: Role, actor: Actor | None,
              trade_ids: set[int], viewable: set[int] | None = None) -> RiskStateView:
        """Return ``row`` for ``actor``; with ``viewable``, only the steps of those accounts."""
        label = (session.scalar(select(AccountRow.label).where(AccountRow.id == row.account_id))
                 if row.account_id is not None else None)
        return RiskStateView(
            id=row.id, scope=row.scope, account_id=row.account_id, account_label=label,
            strategy=row.strategy, kind=row.kind, phase=row.phase, reason=row.reason,
            until=row.until, engaged_at=to_ist(row.engaged_at),
            engaged_by=risk_store.username_of(session, row.engaged_by_user_id),
            cleared_at=to_ist(row.cleared_at) if row.cleared_at else None,
            cleared_by=risk_store.username_of(session, row.cleared_by_user_id),
            clear_note=row.clear_note,
            steps=tuple(s for s in _steps(row)
                        if viewable is None or s.account_id is None or s.account_id in viewable),
            may_reenable=actor is not None and _may_reenable(session, row, role, actor,
                                                             trade_ids),
            reenable_by=reenable_needs(row.kind, row.scope))

    def lift_lapsed(self) -> int:
        """Clear loss-limit states whose day or week is over (audited, alerted); return how many."""
        today = to_ist(self.clock()).date()
        with self.db.transaction() as session:
            rows = risk_store.lapsed_states(session, today)
            for row in rows:
                note = (f"{KIND_TITLES[row.kind]} lifted itself: trading resumes on "
                        f"{row.until}")
                self._clear(session, row, None, note)
            return len(rows)

    def _clear(self, session: Session, row: RiskStateRow, actor: Actor | None,
               note: str, now: tuple[Decimal, Decimal] | None = None) -> None:
        """Lift ``row``; a kill switch of an account also restarts its drawdown at ``equity``."""
        row.phase, row.active_key = StatePhase.CLEARED, None
        row.cleared_at = self.clock()
        row.cleared_by_user_id = actor.user_id if actor else None
        row.clear_note = note[:REASON_CHARS]
        details: dict[str, object] = {"kind": row.kind.value, "scope": row.scope.value,
                                      "note": note}
        body = note
        if row.kind is StateKind.KILL_SWITCH and row.account_id is not None:
            equity, paid_in = now if now is not None else (None, ZERO)
            before = risk_store.reset_peak(session, row.account_id, equity, row.cleared_at,
                                           paid_in)
            details.update(peak_equity_before=before, peak_equity_now=equity)
            body += (f"; the drawdown now counts from the equity {inr(equity)} (the peak was "
                     f"{inr(before) if before is not None else 'none'})" if equity is not None
                     and equity > 0 else "; the drawdown restarts at the next positive equity")
        self._audit(session, actor, "risk.reenable", f"risk_state:{row.id}", details,
                    household_id=row.household_id)
        alerts.enqueue(session, kind=f"risk.{row.kind.value}", household_id=row.household_id,
                       account_id=row.account_id, severity="info",
                       title=f"{KIND_TITLES[row.kind]} lifted: {_scope_text(session, row)}",
                       body=body, dedupe_key=f"risk-state:{row.id}:cleared")

    def _equity_now(self, row: RiskStateRow) -> tuple[Decimal, Decimal] | None:
        """Return a kill switch's account's equity now and the money paid in it counts.

        None: not a kill switch, or no desk gate to ask.
        """
        gate = self.orders.manager.risk_gate
        if (row.kind is not StateKind.KILL_SWITCH or row.account_id is None
                or not isinstance(gate, DeskRiskGate)):
            return None
        snapshot = gate.snapshot(row.account_id)
        return paise(snapshot.capital), snapshot.paid_in  # the equity as the peak is shown

    def reenable(self, actor: Actor, state_id: int, note: str = "") -> RiskStateView:
        """Lift a state: a kill switch needs an admin; others an admin or one trading its accounts.

        Re-enabling an account's kill switch starts its drawdown afresh: the account's peak
        equity becomes its equity now (in the same transaction, audited with the old and the
        new peak), so a drawdown still beyond the kill level does not trip the switch again at
        the watch's next run; the kill switch trips again only on a new drawdown of the kill
        level from here.
        """
        role = self._role(actor)
        trade_ids = self._trade_ids(actor)
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id)
            visible = row is not None and (row.household_id == actor.household_id
                                           or role is Role.SUPER_ADMIN)
        if row is None or not visible:
            self._deny(actor, "risk.reenable", f"risk_state:{state_id}",
                       f"Risk state {state_id} is not available to you")
        if row.phase is StatePhase.CLEARED:
            raise ValidationError(f"Risk state {state_id} was already lifted at "
                                  f"{format_ist(row.cleared_at)}")
        with self.db.transaction() as session:
            allowed = _may_reenable(session, row, role, actor, trade_ids)
            scope_name = _scope_text(session, row)
        if not allowed:
            who = reenable_needs(row.kind, row.scope)
            self._deny(actor, "risk.reenable", f"risk_state:{state_id}",
                       f"Your role {role.value!r} may not re-enable {KIND_TITLES[row.kind]} of "
                       f"{scope_name}: it needs {who}")
        if row.phase is StatePhase.ENGAGING:
            raise ValidationError(
                f"Risk state {state_id} is still engaging (cancelling and closing); re-enable "
                "it once it is active")
        now = self._equity_now(row)
        with self.db.transaction() as session:
            locked = session.get(RiskStateRow, state_id, with_for_update=True)
            assert locked is not None  # noqa: S101 - read above
            if locked.phase is StatePhase.CLEARED:
                raise ValidationError(f"Risk state {state_id} was already lifted")
            self._clear(session, locked, actor,
                        note.strip() or f"re-enabled by {actor.username}", now)
            session.flush()
            return self._view(session, locked, role, actor, trade_ids)

    # -- panic and engage -----------------------------------------------------------------
    def panic(self, actor: Actor, scope: Scope, *, account_id: int | None = None,
              strategy: str | None = None) -> PanicReport:
        """Stop a scope now: cancel pending orders, close positions, then hold (PANIC)."""
        key, account, name = self._scope_right(actor, scope, account_id, strategy, "risk.panic")
        reason = f"Panic pressed by {actor.username}"
        return self._engage(actor.household_id if account is None else
                            self._household_of(account), StateKind.PANIC, scope, key, account,
                            name, reason, None, actor)

    def engage(self, kind: StateKind, scope: Scope, key: str, reason: str,
               account_ids: tuple[int, ...] = (), *, until: date | None = None,
               actor: Actor | None = None) -> PanicReport:
        """Engage a state for the system (loss limits, kill switch); idempotent.

        ``key`` is the household id, the account id or the strategy name, as text. An
        ENGAGING or ACTIVE state of the same scope and kind is resumed or returned, never
        doubled.
        """
        if scope is Scope.HOUSEHOLD:
            household_id, account, name = int(key), None, None
        elif scope is Scope.ACCOUNT:
            account, name = int(key), None
            household_id = self._household_of(account)
        else:
            name, account = _strategy_name(key), None
            if actor is not None:
                household_id = actor.household_id
            elif account_ids:
                household_id = self._household_of(account_ids[0])
            else:
                raise ValidationError(f"Strategy {key!r}: engaging needs its accounts")
        return self._engage(household_id, kind, scope, key if name is None else name, account,
                            name, reason, until, actor)

    def _household_of(self, account_id: int) -> int:
        with self.db.transaction() as session:
            household_id = session.scalar(
                select(AccountRow.household_id).where(AccountRow.id == account_id))
        if household_id is None:
            raise ValidationError(f"Account {account_id} does not exist")
        return household_id

    def _engage(self, household_id: int, kind: StateKind, scope: Scope, key: str,
                account_id: int | None, strategy: str | None, reason: str, until: date | None,
                actor: Actor | None) -> PanicReport:
        self.lift_lapsed()
        state_id, created = self._begin(household_id, kind, scope, key, account_id, strategy,
                                        reason, until, actor)
        report = self._run(state_id, actor)
        return PanicReport(report.state_id, report.kind, report.scope, report.key,
                           report.phase, report.steps, created, report.label)

    def _begin(self, household_id: int, kind: StateKind, scope: Scope, key: str,
               account_id: int | None, strategy: str | None, reason: str, until: date | None,
               actor: Actor | None) -> tuple[int, bool]:
        """Insert the state ENGAGING (audit, alert) or return the live one: (id, created).

        The unique ``active_key`` decides a race between two processes: the loser's insert
        fails, its transaction (state, audit, alert) rolls back whole, and it returns the
        winner's state.
        """
        active_key = risk_store.state_key(household_id, scope, key, kind)
        try:
            with self.db.transaction() as session:
                existing = _live_state(session, active_key)
                if existing is not None:
                    return existing, False
                row = RiskStateRow(
                    household_id=household_id, scope=scope, account_id=account_id,
                    strategy=strategy, kind=kind, phase=StatePhase.ENGAGING,
                    reason=reason[:REASON_CHARS], until=until, engaged_at=self.clock(),
                    engaged_by_user_id=actor.user_id if actor else None, report="[]",
                    active_key=active_key)
                session.add(row)
                session.flush()
                self._audit(session, actor, "risk.engage", f"risk_state:{row.id}",
                            {"kind": kind.value, "scope": scope.value, "key": key,
                             "reason": reason, "until": until}, household_id=household_id)
                alerts.enqueue(session, kind=f"risk.{kind.value}", household_id=household_id,
                               account_id=account_id, severity="critical",
                               title=f"{KIND_TITLES[kind]}: {_scope_text(session, row)}",
                               body=f"{reason}. Cancelling pending orders and closing "
                                    "positions.",
                               dedupe_key=f"risk-state:{row.id}:engaged")
                return row.id, True
        except IntegrityError:  # engaged concurrently by another process: return its state
            with self.db.transaction() as session:
                existing = _live_state(session, active_key)
            if existing is None:
                raise
            return existing, False

    def resume_engaging(self) -> list[PanicReport]:
        """Finish every state a crash left ENGAGING (the worker calls it at start)."""
        with self.db.transaction() as session:
            ids = list(session.scalars(select(RiskStateRow.id).where(
                RiskStateRow.phase == StatePhase.ENGAGING).order_by(RiskStateRow.id)))
        return [self._run(state_id, None) for state_id in ids]

    def _run(self, state_id: int, actor: Actor | None) -> PanicReport:
        """Run (or finish) a state's procedure; a state already ACTIVE is only reported."""
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id)
            assert row is not None  # noqa: S101 - callers pass ids they just read
            scope_name = _scope_text(session, row)
        if row.phase is StatePhase.ENGAGING:
            for account_id in self._procedure_accounts(row):
                for step in self._cancel_all(row, account_id, actor):
                    self._record(state_id, step, actor)
                for step in self._close_all(row, account_id, actor):
                    self._record(state_id, step, actor)
            self._record(state_id, PanicStep(
                "disable", row.account_id, scope_name, True,
                "new orders refused until " + (str(row.until) if row.until
                                               else "someone allowed re-enables")), actor)
            self._activate(state_id, actor)
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id)
            assert row is not None  # noqa: S101
            return PanicReport(row.id, row.kind, row.scope, risk_store.engine_key(row),
                               row.phase, _steps(row), False, _scope_text(session, row))

    def _procedure_accounts(self, row: RiskStateRow) -> list[int]:
        if row.scope is Scope.ACCOUNT:
            return [row.account_id] if row.account_id is not None else []
        accounts = self._household_accounts(row.household_id)
        if row.scope is Scope.STRATEGY and row.engaged_by_user_id is not None:
            engaged_by = self._actor_of(row.engaged_by_user_id)
            if engaged_by is not None and engaged_by.role not in ADMINS:
                trade_ids = self._trade_ids(engaged_by)
                accounts = [a for a in accounts if a in trade_ids]
        return accounts

    def _actor_of(self, user_id: int) -> Actor | None:
        with self.db.transaction() as session:
            user = session.get(UserRow, user_id)
            if user is None or not user.is_active:
                return None
            member_id = session.scalar(select(MemberRow.id).where(MemberRow.user_id == user_id))
            return Actor(user.id, user.username, user.display_name, user.role,
                         user.household_id, member_id)

    def _cancel_all(self, row: RiskStateRow, account_id: int,
                    actor: Actor | None) -> list[PanicStep]:
        own = f"rk{row.id}-"
        with self.db.transaction() as session:
            # An order the gate passed before this state engaged may still be recording: the
            # account lock waits for it to commit, so the read below finds it to cancel.
            lock_accounts(session, [account_id])
            query = select(OrderRow).where(OrderRow.account_id == account_id,
                                           OrderRow.status.in_(OPEN_STATUSES))
            if row.strategy is not None:
                query = query.where(OrderRow.strategy == row.strategy)
            orders = [o for o in session.scalars(query.order_by(OrderRow.id))
                      if not o.client_order_id.startswith(own)]
            gtts = [] if row.scope is Scope.STRATEGY else list(session.scalars(
                select(GttRow.id).where(GttRow.account_id == account_id,
                                        GttRow.status == GttStatus.ACTIVE).order_by(GttRow.id)))
        with self.db.transaction() as session:
            why = f"Cancelled by {KIND_TITLES[row.kind].lower()} on {_scope_text(session, row)}"
        steps = []
        for order in orders:
            target = f"order {order.id} ({order.side} {order.quantity} {order.symbol})"
            try:
                done = self.orders.manager.cancel(order.id, actor, why)
            except OrderClosed as exc:  # filled or cancelled since the read: not a failure
                steps.append(PanicStep("cancel", account_id, target, True,
                                       f"nothing to cancel: {exc}"))
                continue
            except TradingError as exc:
                steps.append(PanicStep("cancel", account_id, target, False, str(exc)))
                continue
            steps.append(PanicStep("cancel", account_id, target,
                                   done.status is OrderStatus.CANCELLED or done.status.is_final,
                                   f"{done.status.value}"))
        steps.extend(self._cancel_gtt(row, gtt_id, account_id, actor) for gtt_id in gtts)
        return steps

    def _cancel_gtt(self, state: RiskStateRow, gtt_id: int, account_id: int,
                    actor: Actor | None) -> PanicStep:
        with self.db.transaction() as session:
            row = session.get(GttRow, gtt_id, with_for_update=True)
            if row is None or row.status is not GttStatus.ACTIVE:
                status = row.status.value if row is not None else "gone"
                return PanicStep("cancel", account_id, f"GTT {gtt_id}", True, f"already {status}")
            row.status = GttStatus.CANCELLED
            row.message = f"Cancelled by {KIND_TITLES[state.kind].lower()} (risk state {state.id})"
            self._audit(session, actor, "gtt.cancel", f"gtt:{gtt_id}",
                        {"risk_state": state.id}, household_id=state.household_id)
        return PanicStep("cancel", account_id, f"GTT {gtt_id} ({row.symbol})", True, "cancelled")

    def _open_quantities(self, row: RiskStateRow,
                         account_id: int) -> list[tuple[str, Product, int]]:
        """Return (symbol, product, signed quantity) to close in the account for the state."""
        positions = {(p.symbol, p.product): p.quantity
                     for p in self.orders.broker_for(account_id).positions() if p.quantity}
        if row.strategy is None:
            return [(s, p, q) for (s, p), q in sorted(positions.items())]
        signed = func.sum(TradeRow.quantity)
        with self.db.transaction() as session:
            nets = session.execute(
                select(TradeRow.symbol, TradeRow.product, TradeRow.side, signed)
                .join(OrderRow, OrderRow.id == TradeRow.order_id)
                .where(OrderRow.strategy == row.strategy, TradeRow.account_id == account_id)
                .group_by(TradeRow.symbol, TradeRow.product, TradeRow.side)).all()
        strategy_net: dict[tuple[str, Product], int] = {}
        for symbol, product, side, quantity in nets:
            sign = 1 if side is Side.BUY else -1
            strategy_net[(symbol, product)] = strategy_net.get((symbol, product), 0) + sign * int(
                quantity)
        out = []
        for (symbol, product), net in sorted(strategy_net.items()):
            held = positions.get((symbol, product), 0)
            if net and held and (net > 0) == (held > 0):  # never close more than is open
                out.append((symbol, product, min(abs(net), abs(held)) * (1 if net > 0 else -1)))
        return out

    def _close_all(self, row: RiskStateRow, account_id: int,
                   actor: Actor | None) -> list[PanicStep]:
        steps = []
        for symbol, product, quantity in self._open_quantities(row, account_id):
            coid = _exit_id(row.id, account_id, product, symbol)
            target = f"{symbol} {product.value} {quantity:+d}"
            with self.db.transaction() as session:
                sent = session.scalar(select(OrderRow).where(OrderRow.client_order_id == coid))
                if sent is not None:
                    steps.append(PanicStep("close", account_id, target, sent.status not in (
                        OrderStatus.REJECTED, OrderStatus.CANCELLED),
                        f"exit order {sent.id} already sent ({sent.status.value})"))
                    continue
            side = Side.SELL if quantity > 0 else Side.BUY
            request = OrderRequest(account_id, symbol, side, abs(quantity), OrderType.MARKET,
                                   product, client_order_id=coid, strategy=row.strategy)
            try:
                order = self.orders.manager.submit_paced(request, placed_by=actor,
                                                         source="panic")
            except TradingError as exc:
                steps.append(PanicStep("close", account_id, target, False, str(exc)))
                continue
            ok = order.status is not OrderStatus.REJECTED
            detail = f"exit order {order.id} {side.value} {abs(quantity)} at market " + (
                order.status.value if ok else f"rejected: {order.rejection_reason}")
            steps.append(PanicStep("close", account_id, target, ok, detail))
        return steps

    def _record(self, state_id: int, step: PanicStep, actor: Actor | None) -> None:
        """Append a step to the state's report and audit it, in one transaction."""
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id, with_for_update=True)
            assert row is not None  # noqa: S101
            row.report = json.dumps([*risk_store.report_steps(row), asdict(step)])
            self._audit(session, actor, f"risk.{step.step}", f"risk_state:{state_id}",
                        asdict(step), outcome=audit.OK if step.ok else audit.FAILED,
                        household_id=row.household_id)

    def _activate(self, state_id: int, actor: Actor | None) -> None:
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id, with_for_update=True)
            assert row is not None  # noqa: S101
            if row.phase is not StatePhase.ENGAGING:
                return
            row.phase = StatePhase.ACTIVE
            steps = _steps(row)
            failed = [s for s in steps if not s.ok]
            self._audit(session, actor, "risk.active", f"risk_state:{state_id}",
                        {"steps": len(steps), "failed": len(failed)},
                        household_id=row.household_id)
            self._report_alerts(session, row, steps)

    def _report_alerts(self, session: Session, row: RiskStateRow,
                       steps: tuple[PanicStep, ...]) -> None:
        """Queue the report of a state that became active, each step only to whom may see it.

        An account state's report goes to the account's viewers. A household or strategy
        state's report is split: its own steps (the disable) to the household, and each
        account's steps (what was cancelled and closed there) to that account's viewers, so no
        member learns of orders and positions of an account they may not view.
        """
        kind, title = f"risk.{row.kind.value}", KIND_TITLES[row.kind]

        def queue(account_id: int | None, what: str, part: list[PanicStep], key: str,
                  note: str = "") -> None:
            done = sum(1 for s in part if s.ok)
            body = "\n".join(f"{'ok ' if s.ok else 'FAILED '}{s.step} {s.target}: {s.detail}"
                             for s in part)
            alerts.enqueue(session, kind=kind, household_id=row.household_id,
                           account_id=account_id, severity="critical",
                           title=f"{title} active: {what}; {done} of {len(part)} steps done",
                           body=body + note, dedupe_key=key)

        report_key = f"risk-state:{row.id}:report"
        if row.scope is Scope.ACCOUNT:
            queue(row.account_id, _scope_text(session, row), list(steps), report_key)
            return
        accounts = sorted({s.account_id for s in steps if s.account_id is not None})
        note = ("\nEach account's cancels and closes go to the members who may view it."
                if accounts else "")
        queue(None, _scope_text(session, row), [s for s in steps if s.account_id is None],
              report_key, note)
        for account_id in accounts:
            label = session.scalar(select(AccountRow.label).where(AccountRow.id == account_id))
            queue(account_id, f"{_scope_text(session, row)}, {label}",
                  [s for s in steps if s.account_id == account_id], f"{report_key}:{account_id}")

    def disable(self, actor: Actor, scope: Scope, *, account_id: int | None = None,
                strategy: str | None = None, reason: str) -> RiskStateView:
        """Stop new orders of a scope by hand (no cancel, no close); same rights as panic."""
        reason = reason.strip()
        if not reason or len(reason) > REASON_CHARS:
            raise ValidationError(f"Say why trading is disabled (1-{REASON_CHARS} characters); "
                                  f"got {len(reason)}")
        key, account, name = self._scope_right(actor, scope, account_id, strategy,
                                               "risk.disable")
        household_id = actor.household_id if account is None else self._household_of(account)
        state_id, created = self._begin(household_id, StateKind.DISABLED, scope, key, account,
                                        name, reason, None, actor)
        if created:
            with self.db.transaction() as session:
                scope_name = _scope_label(session, scope, key)
            self._record(state_id, PanicStep("disable", account, scope_name, True,
                                             f"disabled by {actor.username}: {reason}"), actor)
            self._activate(state_id, actor)
        role = self._role(actor)
        trade_ids = self._trade_ids(actor)
        with self.db.transaction() as session:
            row = session.get(RiskStateRow, state_id)
            assert row is not None  # noqa: S101
            return self._view(session, row, role, actor, trade_ids)

    # -- position controls ----------------------------------------------------------------
    def set_control(self, actor: Actor, account_id: int, symbol: str, product: Product, *,
                    stop_loss: Decimal | None = None, target: Decimal | None = None,
                    trail_points: Decimal | None = None,
                    trail_pct: Decimal | None = None) -> PositionControl:
        """Set (or replace) the stop-loss, target and trailing stop of an open position.

        A trailing stop follows the best price from the LTP at this moment (``extreme``), never
        from the position's average price, so it cannot fire the moment it is set.

        Raises
        ------
        ValidationError
            No open position, a stop or target on the wrong side of the LTP, both trailing
            kinds, off-tick or non-positive values; the message has the values.
        """
        account = self.household.authorize_trade(actor, account_id)
        symbol = symbol.strip().upper()
        broker = self.orders.broker_for(account_id)
        quantity = sum(p.quantity for p in broker.positions()
                       if p.symbol == symbol and p.product is product)
        if quantity == 0:
            raise ValidationError(f"No open {product.value} position in {symbol} on the account "
                                  f"{account.label}; controls protect open positions")
        quote = broker.quote(symbol)
        if quote is None:
            raise ValidationError(f"No live price for {symbol}; a stop needs one to check its "
                                  "side")
        with self.db.transaction() as session:
            instrument = find_instrument(session, symbol)
        tick = instrument.tick_size if instrument is not None else Decimal("0.05")
        _check_control(symbol, quantity, quote.ltp, tick, stop_loss, target, trail_points,
                       trail_pct)
        # A trail starts from the price now, not the average: on a losing position a trail
        # from the average would be crossed the moment it is set.
        trailing = trail_points is not None or trail_pct is not None
        key = risk_store.control_key(account_id, symbol, product)
        with self.db.transaction() as session:
            old = session.scalar(select(PositionControlRow).where(
                PositionControlRow.active_key == key).with_for_update())
            if old is not None:
                risk_store.deactivate_control(old)
                session.flush()
            row = PositionControlRow(
                account_id=account_id, symbol=symbol, product=product, stop_loss=stop_loss,
                target=target, trail_points=trail_points, trail_pct=trail_pct,
                extreme=quote.ltp if trailing else None,
                is_active=True, active_key=key, created_by_user_id=actor.user_id,
                created_at=self.clock())
            session.add(row)
            session.flush()
            self._audit(session, actor, "risk.control.set", f"position_control:{row.id}",
                        {"account_id": account_id, "symbol": symbol, "product": product.value,
                         "quantity": quantity, "ltp": quote.ltp, "stop_loss": stop_loss,
                         "target": target, "trail_points": trail_points,
                         "trail_pct": trail_pct, "replaces": old.id if old else None},
                        household_id=account.household_id)
            return risk_store.to_control(row)

    def clear_control(self, actor: Actor, control_id: int) -> None:
        """Remove an active position control."""
        with self.db.transaction() as session:
            account_id = session.scalar(select(PositionControlRow.account_id).where(
                PositionControlRow.id == control_id))
        if account_id is None:
            self._deny(actor, "risk.control.clear", f"position_control:{control_id}",
                       f"Position control {control_id} is not available to you")
        account = self.household.authorize_trade(actor, account_id)
        with self.db.transaction() as session:
            row = session.get(PositionControlRow, control_id, with_for_update=True)
            assert row is not None  # noqa: S101
            if not row.is_active:
                raise ValidationError(f"Position control {control_id} is no longer active")
            risk_store.deactivate_control(row)
            self._audit(session, actor, "risk.control.clear", f"position_control:{control_id}",
                        {"symbol": row.symbol}, household_id=account.household_id)

    def controls(self, actor: Actor, account_id: int | None = None) -> list[PositionControl]:
        """Return the active position controls of the accounts the actor may view."""
        ids = self.orders.viewable_ids(actor, account_id)
        with self.db.transaction() as session:
            return risk_store.active_controls(session, ids)

    # -- MTM limits -----------------------------------------------------------------------
    def set_mtm_limit(self, actor: Actor, scope: Scope, key: str, *,
                      stop_loss: Decimal | None, target: Decimal | None) -> MtmLimitView | None:
        """Set the household's or a strategy's MTM stop-loss/target (both None: remove it)."""
        if scope is Scope.HOUSEHOLD:
            self._require_admin(actor, "risk.mtm.set", "set the household's MTM limits")
            key = str(actor.household_id)
        elif scope is Scope.STRATEGY:
            key = _strategy_name(key)
            self._scope_right(actor, scope, None, key, "risk.mtm.set")
        else:
            raise ValidationError("An account's MTM limits are its portfolio_mtm_stop_loss and "
                                  "portfolio_mtm_target limits; use set_limits")
        for name, value in (("stop_loss", stop_loss), ("target", target)):
            if value is not None and (not isinstance(value, Decimal) or not value.is_finite()
                                      or value <= 0 or value != paise(value)):
                raise ValidationError(f"MTM {name} must be a positive amount in rupees with at "
                                      f"most 2 decimals (paise), or empty; got {value!r}")
        with self.db.transaction() as session:
            row = session.scalar(select(MtmLimitRow).where(
                MtmLimitRow.household_id == actor.household_id, MtmLimitRow.scope == scope,
                MtmLimitRow.key == key))
            if stop_loss is None and target is None:
                if row is not None:
                    session.delete(row)
            else:
                if row is None:
                    row = MtmLimitRow(household_id=actor.household_id, scope=scope, key=key)
                    session.add(row)
                row.stop_loss, row.target = stop_loss, target
                row.updated_by_user_id, row.updated_at = actor.user_id, self.clock()
            self._audit(session, actor, "risk.mtm.set", f"mtm:{scope.value}:{key}",
                        {"stop_loss": stop_loss, "target": target})
            session.flush()
            return next((v for v in risk_store.mtm_limit_rows(session, actor.household_id)
                         if v.scope is scope and v.key == key), None)

    def mtm_limits(self, actor: Actor) -> list[MtmLimitView]:
        """Return the household's and its strategies' MTM limits."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return risk_store.mtm_limit_rows(session, actor.household_id)

    # -- alerts ---------------------------------------------------------------------------
    def alerts(self, actor: Actor, limit: int = 50) -> list[Alert]:
        """Return the newest alerts of the actor's household and the accounts they may view."""
        ids = self.orders.viewable_ids(actor, None)
        with self.db.transaction() as session:
            return alerts.recent(session, actor.household_id, ids, limit)


# ----------------------------------------------------------------------------------------------
# Helpers
# ----------------------------------------------------------------------------------------------


def _live_state(session: Session, active_key: str) -> int | None:
    return session.scalar(select(RiskStateRow.id).where(RiskStateRow.active_key == active_key))


def _strategy_name(strategy: str | None) -> str:
    name = (strategy or "").strip()
    if not STRATEGY_RE.match(name):
        raise ValidationError("Strategy name must be 1-40 letters, digits, '-', '_' or '.'; "
                              f"got {strategy!r}")
    return name


def _exit_id(state_id: int, account_id: int, product: Product, symbol: str) -> str:
    """Return the client order id of a state's exit: the same on every run of the procedure."""
    return _COID_UNSAFE.sub("_", f"rk{state_id}-{account_id}-{product.value}-{symbol}")[:40]


def _steps(row: RiskStateRow) -> tuple[PanicStep, ...]:
    return tuple(PanicStep(str(s["step"]), _int_or_none(s.get("account_id")), str(s["target"]),
                           bool(s["ok"]), str(s["detail"]))
                 for s in risk_store.report_steps(row))


def _int_or_none(value: object) -> int | None:
    return int(value) if isinstance(value, (int, str)) else None


def _scope_label(session: Session, scope: Scope, key: str) -> str:
    """Return a state's scope as a person reads it: the account's label, never its id."""
    if scope is Scope.ACCOUNT:
        label = session.scalar(select(AccountRow.label).where(AccountRow.id == int(key)))
        return risk_store.account_name(label) if label is not None else f"account {key}"
    return {Scope.HOUSEHOLD: "the whole household", Scope.STRATEGY: f"strategy {key}"}[scope]


def _scope_text(session: Session, row: RiskStateRow) -> str:
    return _scope_label(session, row.scope, risk_store.engine_key(row))


def _covered_accounts(session: Session, row: RiskStateRow) -> set[int]:
    """Return the accounts whose orders ``row`` stops: a strategy's, every active account."""
    if row.scope is Scope.ACCOUNT:
        return {row.account_id} if row.account_id is not None else set()
    return set(session.scalars(select(AccountRow.id).where(
        AccountRow.household_id == row.household_id, AccountRow.is_active.is_(True))))


def reenable_needs(kind: StateKind, scope: Scope) -> str:
    """Return who may lift a state of ``kind`` on ``scope`` (see :func:`_may_reenable`)."""
    if kind is StateKind.KILL_SWITCH or scope is Scope.HOUSEHOLD:
        return "an admin"
    if scope is Scope.ACCOUNT:
        return "an admin or a member who trades the account"
    return ("an admin or a member who trades every account of the household (the strategy is "
            "stopped on all of them)")


def _may_reenable(session: Session, row: RiskStateRow, role: Role, actor: Actor,
                  trade_ids: set[int]) -> bool:
    """Return whether ``actor`` may lift ``row``: an admin, or one who trades all it covers.

    A strategy's state stops that strategy on every account of the household, whoever engaged
    it: lifting it lets the strategy trade them all again, so it takes an admin or a member who
    trades every one of them (not one account's trader).
    """
    if row.phase is StatePhase.CLEARED:
        return False
    if row.household_id != actor.household_id and role is not Role.SUPER_ADMIN:
        return False
    if role in ADMINS:
        return True
    if (row.kind is StateKind.KILL_SWITCH or row.scope is Scope.HOUSEHOLD
            or role not in ACTING_ROLES):
        return False
    covered = _covered_accounts(session, row)
    return bool(covered) and covered <= trade_ids


def _check_control(symbol: str, quantity: int, ltp: Decimal, tick: Decimal,
                   stop_loss: Decimal | None, target: Decimal | None,
                   trail_points: Decimal | None, trail_pct: Decimal | None) -> None:
    """Refuse a control that could never work for this position, with the values."""
    given = {"stop_loss": stop_loss, "target": target, "trail_points": trail_points,
             "trail_pct": trail_pct}
    if all(v is None for v in given.values()):
        raise ValidationError("Give a stop-loss, a target or a trailing stop")
    for name, value in given.items():
        if value is not None and (not isinstance(value, Decimal) or not value.is_finite()
                                  or value <= 0):
            raise ValidationError(f"{name} must be a positive number; got {value!r}")
    if trail_points is not None and trail_pct is not None:
        raise ValidationError(f"Trail by points or by percent, not both; got trail_points "
                              f"{trail_points} and trail_pct {trail_pct}")
    if trail_pct is not None and trail_pct >= 100:
        raise ValidationError(f"trail_pct must be below 100; got {trail_pct}")
    for name in ("stop_loss", "target", "trail_points"):
        value = given[name]
        if value is not None and value % tick:
            raise ValidationError(f"{name} {as_typed(value)} of {symbol} is not on the tick size "
                                  f"{inr(tick)}")
    long = quantity > 0
    side = "long" if long else "short"
    if stop_loss is not None and (stop_loss >= ltp if long else stop_loss <= ltp):
        raise ValidationError(
            f"A {side} position's stop-loss must be {'below' if long else 'above'} the LTP: "
            f"stop {inr(stop_loss)}, LTP {inr(ltp)} ({symbol})")
    if target is not None and (target <= ltp if long else target >= ltp):
        raise ValidationError(
            f"A {side} position's target must be {'above' if long else 'below'} the LTP: "
            f"target {inr(target)}, LTP {inr(ltp)} ({symbol})")
    if trail_points is not None and long and trail_points >= ltp:
        raise ValidationError(f"trail_points {trail_points} must be below the LTP {inr(ltp)} "
                              f"({symbol})")


def _followers_problems(session: Session, household_id: int,
                        household: RiskLimits) -> list[str]:
    """Return why ``household`` defaults would break an account's limits with its own values.

    An account follows the household in the limits it does not set itself, so new defaults
    must still make valid limits with each account's own (a weekly loss limit at least the
    account's own daily one ...).
    """
    out = []
    for account_id, own in sorted(risk_store.account_overrides(session, household_id).items()):
        try:
            risk_store.compose(household, own)
        except ValidationError as exc:
            name = _scope_label(session, Scope.ACCOUNT, str(account_id))
            rules = str(exc).removeprefix("Invalid risk limits: ")
            out.append(f"with the own limits of {name} ({', '.join(_shown_own(own))}): "
                       f"{rules}; change or reset that account's limits first")
    return out


def _shown_own(own: Mapping[str, object]) -> list[str]:
    return [f"{limit_label(name)} {_shown(own[name])}" for name in LIMIT_FIELDS if name in own]


def _lock_limits(session: Session, household_id: int) -> None:
    """Take the household's limits lock until the transaction ends (PostgreSQL: its row).

    SQLite takes its database write lock instead (:func:`db.locks.lock_accounts` with no
    account), so a read-check-write of limits never interleaves with another.
    """
    if session.get_bind().dialect.name == "sqlite":
        lock_accounts(session)
        return
    session.execute(select(HouseholdRow.id).where(HouseholdRow.id == household_id)
                    .with_for_update())
