"""Domain types shared by services, pages, jobs and the bot: frozen, typed, no ORM rows."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from enum import StrEnum
from typing import TypeVar

from core.errors import ValidationError

E = TypeVar("E", bound=StrEnum)


def parse_choice(enum_cls: type[E], value: str, what: str) -> E:
    """Return ``enum_cls(value)`` or raise ValidationError naming the value and the choices."""
    try:
        return enum_cls(value)
    except ValueError:
        allowed = ", ".join(m.value for m in enum_cls)
        raise ValidationError(f"Unknown {what} {value!r}; choose one of {allowed}") from None


class Role(StrEnum):
    """What a user may do; see ``core.authz`` for the full rules."""

    SUPER_ADMIN = "super_admin"
    ADMIN = "admin"
    TRADER = "trader"
    FAMILY_MEMBER = "family_member"
    VIEWER = "viewer"


class Relationship(StrEnum):
    """A member's relationship to the household's head (SEBI's 'family')."""

    SELF = "self"
    SPOUSE = "spouse"
    PARENT = "parent"
    CHILD = "child"


class VerificationStatus(StrEnum):
    """Whether the household admin has verified a member's identity and relationship."""

    UNVERIFIED = "unverified"
    VERIFIED = "verified"
    REJECTED = "rejected"


class Permission(StrEnum):
    """What a grant allows on an account; ``trade`` includes ``view``."""

    VIEW = "view"
    TRADE = "trade"


class Broker(StrEnum):
    """Brokers an account can be opened with."""

    PAPER = "paper"


@dataclass(frozen=True, slots=True)
class ClientInfo:
    """Where a request came from, for the audit trail."""

    ip: str | None = None
    user_agent: str | None = None
    channel: str = "web"

    def describe(self) -> str:
        """Return a one-line description for tables."""
        return " · ".join(part for part in (self.channel, self.ip, self.user_agent) if part)


SYSTEM_CLIENT = ClientInfo(channel="system")


@dataclass(frozen=True, slots=True)
class Actor:
    """The logged-in user acting through a validated server-side session."""

    user_id: int
    username: str
    display_name: str
    role: Role
    household_id: int
    member_id: int | None
    session_id: str | None = None
    client: ClientInfo = SYSTEM_CLIENT


@dataclass(frozen=True, slots=True)
class User:
    """A login of the desk."""

    id: int
    household_id: int
    username: str
    display_name: str
    email: str | None
    role: Role
    is_active: bool
    totp_enabled: bool
    created_at: datetime
    member_id: int | None


@dataclass(frozen=True, slots=True)
class Member:
    """A person of the household, who may or may not have a login."""

    id: int
    household_id: int
    full_name: str
    relationship: Relationship
    user_id: int | None
    username: str | None
    consent_given_at: datetime | None
    consent_given_by: str | None
    verification_status: VerificationStatus
    verified_at: datetime | None


@dataclass(frozen=True, slots=True)
class Account:
    """A trading account owned by one member, as the acting user may see it."""

    id: int
    household_id: int
    owner_member_id: int
    owner_name: str
    owner_relationship: Relationship
    broker: Broker
    label: str
    group: str
    is_active: bool
    created_at: datetime
    my_permission: Permission | None = None
    can_manage: bool = False

    @property
    def scope(self) -> str:
        """Return 'self' for the head's own accounts and 'family' for everyone else's."""
        return "self" if self.owner_relationship is Relationship.SELF else "family"


@dataclass(frozen=True, slots=True)
class Grant:
    """A per-account permission given to another member."""

    id: int
    account_id: int
    account_label: str
    member_id: int
    member_name: str
    permission: Permission
    granted_by: str
    granted_at: datetime


@dataclass(frozen=True, slots=True)
class Household:
    """A family sharing one desk."""

    id: int
    name: str
    created_at: datetime


@dataclass(frozen=True, slots=True)
class SessionInfo:
    """A server-side login session as shown on the Profile page (no token)."""

    id_prefix: str
    username: str
    created_at: datetime
    last_seen_at: datetime
    expires_at: datetime
    ended_at: datetime | None
    end_reason: str | None
    client: str


@dataclass(frozen=True, slots=True)
class WorkerStatus:
    """The worker's last heartbeat, as the sidebar shows it."""

    holder: str | None
    started_at: datetime | None
    last_beat_at: datetime | None
    seconds_since_beat: float | None
    is_up: bool

    def describe(self) -> str:
        """Return the sidebar's one-line summary."""
        if self.last_beat_at is None or self.seconds_since_beat is None:
            return "worker not running (no heartbeat recorded)"
        age = f"{self.seconds_since_beat:.0f} s ago"
        return f"worker up, last beat {age}" if self.is_up else f"worker down: last beat {age}"


class Interval(StrEnum):
    """Bar intervals: stored ones (5m, 1d) and the weekly one resampled on read."""

    M5 = "5m"
    D1 = "1d"
    W1 = "1w"


STORED_INTERVALS = (Interval.M5, Interval.D1)


@dataclass(frozen=True, slots=True)
class Instrument:
    """An instrument of the master: NSE cash equities for now."""

    id: int
    symbol: str
    exchange: str
    segment: str
    name: str | None
    tick_size: Decimal
    lot_size: int
    sector: str | None
    isin: str | None


@dataclass(frozen=True, slots=True)
class Quote:
    """The latest price of an instrument and its day so far."""

    symbol: str
    ltp: Decimal
    prev_close: Decimal | None
    day_open: Decimal
    day_high: Decimal
    day_low: Decimal
    volume: int
    quote_time: datetime
    source: str

    @property
    def change(self) -> Decimal | None:
        """Return the change from the previous close in rupees."""
        return None if self.prev_close is None else self.ltp - self.prev_close

    @property
    def change_pct(self) -> Decimal | None:
        """Return the change from the previous close in percent."""
        if self.prev_close is None or self.prev_close == 0:
            return None
        return (self.ltp - self.prev_close) / self.prev_close * 100


@dataclass(frozen=True, slots=True)
class Tick:
    """One price update from a feed: last traded price and the day's cumulative volume."""

    symbol: str
    ts: datetime
    ltp: Decimal
    day_volume: int


@dataclass(frozen=True, slots=True)
class FeedState:
    """The market feed as the app shows it: source, simulated time, lag, stalls."""

    name: str
    source: str
    mode: str
    state: str
    session_date: date | None
    simulated_at: datetime | None
    last_tick_at: datetime | None
    speed: Decimal | None
    ticks: int
    message: str | None
    updated_at: datetime

    def lag_seconds(self, now: datetime) -> float | None:
        """Return seconds since the feed last wrote a tick (wall clock), or None if never."""
        return None if self.last_tick_at is None else (now - self.last_tick_at).total_seconds()

    def is_stalled(self, now: datetime, stall_seconds: float) -> bool:
        """Return whether a live feed has written nothing for ``stall_seconds``.

        A running feed is judged by its last tick; a feed waiting for the market ("closed") by
        its last status write, which the worker makes every step, so a dead worker is caught in
        either state. Stopped, finished and errored feeds are not "stalled" (they say why).
        """
        if self.state == "running":
            beat = self.last_tick_at or self.updated_at
        elif self.state == "closed":
            beat = self.updated_at
        else:
            return False
        return (now - beat).total_seconds() > stall_seconds
