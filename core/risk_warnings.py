"""Warnings before a loss limit breaches: 80 % of a limit used (pure; the watch writes them).

The risk watch stops trading when a loss limit is reached (:func:`engines.risk.evaluate`
engages DAILY_LOSS / WEEKLY_LOSS); a person wants to hear it coming. :func:`near_limits` names
every scope whose loss has used :data:`WARN_SHARE` of a limit but not all of it:

==============  ========================================================  =====================
kind            figure against the limit                                   scope
==============  ========================================================  =====================
daily_loss      the account's loss today vs ``daily_loss_pct`` of the      account
                capital at the start of the day (``loss_limit``)
weekly_loss     its loss since Monday vs ``weekly_loss_pct`` of the        account
                capital at the start of the week
mtm_loss        the scope's MTM today vs its MTM stop-loss (rupees)        account, household,
                                                                          strategy
==============  ========================================================  =====================

A scope whose limit already stopped it (a live state) is not warned. The watch writes each
warning as a ``risk.warning.<kind>`` alert, at most one per scope and kind per IST day (the
dedupe key of :func:`warning_alert` names the day).
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from core.alerts import DEDUPE_CHARS
from core.money import inr
from engines.risk import WARN_SHARE, loss_limit
from engines.risk_types import MtmLimit, RiskLimits, Scope, StateKind

_HUNDRED = Decimal(100)


@dataclass(frozen=True, slots=True)
class AccountLoss:
    """An account's capital and loss figures as the watch marked them (rupees)."""

    account_id: int
    capital: Decimal
    day_pnl: Decimal
    week_pnl: Decimal
    limits: RiskLimits


@dataclass(frozen=True, slots=True)
class LimitWarning:
    """A scope near one of its loss limits."""

    kind: str  # "daily_loss" | "weekly_loss" | "mtm_loss"
    scope: Scope
    key: str  # account id, household id or strategy name, as text
    account_id: int | None  # the account, for an account's warning
    loss: Decimal  # positive: the loss so far
    limit: Decimal  # positive: the loss that stops trading
    detail: str  # how the limit is set, e.g. "2% of capital ₹10,00,000.00"

    @property
    def used_pct(self) -> Decimal:
        """Return the share of the limit used, in percent (one decimal)."""
        return (self.loss / self.limit * _HUNDRED).quantize(Decimal("0.1"))


def _near(loss: Decimal, limit: Decimal) -> bool:
    return limit > 0 and limit * WARN_SHARE <= loss < limit


def near_limits(accounts: Iterable[AccountLoss], mtm_limits: Iterable[MtmLimit],
                engaged: frozenset[tuple[Scope, str, StateKind]]) -> list[LimitWarning]:
    """Return every scope whose loss used 80 % of a limit or more, but less than all of it.

    ``engaged`` holds (scope, key, kind) of the live states: a scope already stopped by that
    limit's state gets no warning.
    """
    out: list[LimitWarning] = []
    for account in accounts:
        key = str(account.account_id)
        if account.capital <= 0:
            continue  # the engine checks no loss limit without capital either
        for kind, state, pnl, pct, period in (
                ("daily_loss", StateKind.DAILY_LOSS, account.day_pnl,
                 account.limits.daily_loss_pct, "day"),
                ("weekly_loss", StateKind.WEEKLY_LOSS, account.week_pnl,
                 account.limits.weekly_loss_pct, "week")):
            start, limit = loss_limit(account.capital, pnl, pct)
            if _near(-pnl, limit) and (Scope.ACCOUNT, key, state) not in engaged:
                out.append(LimitWarning(kind, Scope.ACCOUNT, key, account.account_id, -pnl,
                                        limit, f"{pct.normalize():f}% of capital "
                                               f"{inr(start)} at the start of the {period}"))
    for mtm in mtm_limits:
        if mtm.stop_loss is None or (mtm.scope, mtm.key, StateKind.DAILY_LOSS) in engaged:
            continue
        if _near(-mtm.mtm, mtm.stop_loss):
            account_id = int(mtm.key) if mtm.scope is Scope.ACCOUNT else None
            out.append(LimitWarning("mtm_loss", mtm.scope, mtm.key, account_id, -mtm.mtm,
                                    mtm.stop_loss, "MTM stop-loss"))
    return out


@dataclass(frozen=True, slots=True)
class WarningAlert:
    """A warning as the outbox row it becomes."""

    kind: str
    account_id: int | None
    title: str
    body: str
    dedupe_key: str


_WHAT = {"daily_loss": ("Day loss", "today", "trading stops for the day"),
         "weekly_loss": ("Week loss", "this week", "trading stops for the rest of the week"),
         "mtm_loss": ("MTM loss", "today", "trading stops for the day")}


def _scope_name(warning: LimitWarning) -> str:
    if warning.scope is Scope.HOUSEHOLD:
        return "the family"
    if warning.scope is Scope.STRATEGY:
        return f"strategy {warning.key}"
    return "this account"


def warning_alert(household_id: int, warning: LimitWarning, day: date) -> WarningAlert:
    """Return the alert of ``warning`` on IST ``day`` (one per scope, kind and day)."""
    label, span, stop = _WHAT[warning.kind]
    whose = "" if warning.scope is Scope.ACCOUNT else f" ({_scope_name(warning)})"
    title = f"{label} at {warning.used_pct}% of its limit{whose}"
    body = (f"Loss {span}: {inr(warning.loss)} of the {inr(warning.limit)} limit "
            f"({warning.detail}) for {_scope_name(warning)}.\n"
            f"At {inr(warning.limit)} {stop}: open orders are cancelled and positions closed.")
    key = (f"risk-warning:{household_id}:{warning.scope.value}:{warning.key}:"
           f"{warning.kind}:{day.isoformat()}")
    if len(key) > DEDUPE_CHARS:  # a long strategy name: name it by its hash
        digest = hashlib.sha256(warning.key.encode()).hexdigest()[:16]
        key = (f"risk-warning:{household_id}:{warning.scope.value}:{digest}:"
               f"{warning.kind}:{day.isoformat()}")
    return WarningAlert(f"risk.warning.{warning.kind}", warning.account_id, title, body, key)


def account_losses(figures: Mapping[int, tuple[Decimal, Decimal, Decimal]],
                   limits: Mapping[int, RiskLimits]) -> list[AccountLoss]:
    """Return each account's (capital, day P&L, week P&L) with its limits."""
    return [AccountLoss(a, capital, day, week, limits[a])
            for a, (capital, day, week) in figures.items()]
