"""The desk's tables. Alembic owns the schema; these models are its single source."""

from __future__ import annotations

from datetime import date, datetime, time
from decimal import Decimal
from enum import StrEnum

from sqlalchemy import (
    BigInteger,
    ForeignKey,
    Index,
    Integer,
    Numeric,
    String,
    Text,
    UniqueConstraint,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column, relationship

from core.domain import Broker, Permission, Relationship, Role, VerificationStatus
from core.trading import (
    GttKind,
    GttStatus,
    OrderStatus,
    OrderType,
    Product,
    Side,
    Validity,
)
from db.base import Base, TimestampMixin, str_enum, utcnow
from engines.risk_types import Scope, StateKind, StatePhase
from engines.signal_types import Action, Direction, Regime

BigId = BigInteger().with_variant(Integer, "sqlite")


class HouseholdRow(Base, TimestampMixin):
    """A family sharing one desk."""

    __tablename__ = "households"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(120))


class UserRow(Base, TimestampMixin):
    """A login; passwords as bcrypt hashes, TOTP secrets encrypted (AES-256-GCM)."""

    __tablename__ = "users"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    username: Mapped[str] = mapped_column(String(32), unique=True)
    display_name: Mapped[str] = mapped_column(String(120))
    email: Mapped[str | None] = mapped_column(String(254))
    password_hash: Mapped[str] = mapped_column(String(100))
    role: Mapped[Role] = mapped_column(str_enum(Role, "role"))
    is_active: Mapped[bool] = mapped_column(default=True)
    password_changed_at: Mapped[datetime] = mapped_column(default=utcnow)
    totp_secret_enc: Mapped[str | None] = mapped_column(String(200))
    totp_enabled_at: Mapped[datetime | None]
    totp_last_step: Mapped[int | None] = mapped_column(BigInteger)

    household: Mapped[HouseholdRow] = relationship(lazy="raise")


class MemberRow(Base, TimestampMixin):
    """A person of the household; consent and verification recorded with time and actor."""

    __tablename__ = "members"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    full_name: Mapped[str] = mapped_column(String(120))
    relationship: Mapped[Relationship] = mapped_column(str_enum(Relationship, "relationship"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), unique=True)
    consent_given_at: Mapped[datetime | None]
    consent_given_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    consent_note: Mapped[str | None] = mapped_column(String(500))
    verification_status: Mapped[VerificationStatus] = mapped_column(
        str_enum(VerificationStatus, "verification_status"),
        default=VerificationStatus.UNVERIFIED,
    )
    verified_at: Mapped[datetime | None]
    verified_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))


class AccountRow(Base, TimestampMixin):
    """A trading account owned by one member."""

    __tablename__ = "accounts"
    __table_args__ = (UniqueConstraint("household_id", "label"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    owner_member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    broker: Mapped[Broker] = mapped_column(str_enum(Broker, "broker"))
    label: Mapped[str] = mapped_column(String(60))
    account_group: Mapped[str] = mapped_column(String(40))
    is_active: Mapped[bool] = mapped_column(default=True)


class AccountGrantRow(Base):
    """An explicit view/trade permission on one account for another member."""

    __tablename__ = "account_grants"
    __table_args__ = (UniqueConstraint("account_id", "member_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    member_id: Mapped[int] = mapped_column(ForeignKey("members.id"), index=True)
    permission: Mapped[Permission] = mapped_column(str_enum(Permission, "permission"))
    granted_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class SessionRow(Base):
    """A server-side login session; the browser holds only its token (hashed here)."""

    __tablename__ = "auth_sessions"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    last_seen_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    cookie_fingerprint: Mapped[str | None] = mapped_column(String(64), index=True)
    ended_at: Mapped[datetime | None]
    end_reason: Mapped[str | None] = mapped_column(String(40))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    user_agent: Mapped[str | None] = mapped_column(String(300))


class AuditRow(Base):
    """One append-only audit entry; ``row_hash`` covers the fields and ``prev_hash``."""

    __tablename__ = "audit_log"
    __table_args__ = (
        Index("ix_audit_log_action_resource_created_at", "action", "resource", "created_at"),
        Index("ix_audit_log_household_id_created_at", "household_id", "created_at"),
        Index("ix_audit_log_action_client_ip_created_at", "action", "client_ip", "created_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime]
    actor_user_id: Mapped[int | None]
    actor_username: Mapped[str | None] = mapped_column(String(32))
    household_id: Mapped[int | None]
    action: Mapped[str] = mapped_column(String(60))
    resource: Mapped[str] = mapped_column(String(120))
    outcome: Mapped[str] = mapped_column(String(12))
    details: Mapped[str] = mapped_column(Text)
    client: Mapped[str] = mapped_column(String(400))
    client_ip: Mapped[str | None] = mapped_column(String(64))
    prev_hash: Mapped[str] = mapped_column(String(64))
    row_hash: Mapped[str] = mapped_column(String(64))


class AuditHeadRow(Base):
    """The single row that serialises audit appends and remembers the chain's tip."""

    __tablename__ = "audit_head"

    id: Mapped[int] = mapped_column(primary_key=True)
    last_id: Mapped[int] = mapped_column(BigInteger, default=0)
    last_hash: Mapped[str] = mapped_column(String(64))


class WorkerLockRow(Base):
    """The worker lease and heartbeat: one worker per database."""

    __tablename__ = "worker_lock"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    holder: Mapped[str | None] = mapped_column(String(200))
    started_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]


class InstrumentRow(Base, TimestampMixin):
    """A tradable instrument (the instrument master)."""

    __tablename__ = "instruments"
    __table_args__ = (UniqueConstraint("exchange", "symbol"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    symbol: Mapped[str] = mapped_column(String(32))
    exchange: Mapped[str] = mapped_column(String(8))
    segment: Mapped[str] = mapped_column(String(16))
    name: Mapped[str | None] = mapped_column(String(120))
    tick_size: Mapped[Decimal] = mapped_column(Numeric(10, 4))
    lot_size: Mapped[int] = mapped_column(default=1)
    sector: Mapped[str | None] = mapped_column(String(60), index=True)
    isin: Mapped[str | None] = mapped_column(String(12))
    is_active: Mapped[bool] = mapped_column(default=True)


class BarRow(Base):
    """One OHLCV bar; ``ts`` is the bar's start (tz-aware). Primary key: instrument+interval+ts."""

    __tablename__ = "ohlcv_bars"

    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"), primary_key=True)
    interval: Mapped[str] = mapped_column(String(8), primary_key=True)
    ts: Mapped[datetime] = mapped_column(primary_key=True)
    open: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    high: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    low: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    close: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    volume: Mapped[int] = mapped_column(BigInteger)


class QuoteRow(Base):
    """The latest quote of an instrument, written by the worker's feed loop."""

    __tablename__ = "quotes"

    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"), primary_key=True)
    ltp: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    prev_close: Mapped[Decimal | None] = mapped_column(Numeric(18, 4))
    day_open: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    day_high: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    day_low: Mapped[Decimal] = mapped_column(Numeric(18, 4))
    volume: Mapped[int] = mapped_column(BigInteger)
    quote_time: Mapped[datetime]
    source: Mapped[str] = mapped_column(String(40))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class FeedStatusRow(Base):
    """What the running market feed is doing, for the app's feed-status panel."""

    __tablename__ = "feed_status"

    name: Mapped[str] = mapped_column(String(40), primary_key=True)
    source: Mapped[str] = mapped_column(String(60))
    mode: Mapped[str] = mapped_column(String(20))
    state: Mapped[str] = mapped_column(String(20))
    session_date: Mapped[date | None]
    simulated_at: Mapped[datetime | None]
    last_tick_at: Mapped[datetime | None]
    speed: Mapped[Decimal | None] = mapped_column(Numeric(10, 2))
    replay_start: Mapped[date | None]
    ticks: Mapped[int] = mapped_column(BigInteger, default=0)
    message: Mapped[str | None] = mapped_column(String(300))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


# ----------------------------------------------------------------------------------------------
# Orders and trades (the order manager's book, broker-agnostic)
# ----------------------------------------------------------------------------------------------

Money = Numeric(18, 4)
ChargeAmount = Numeric(18, 6)


class ChargesMixin:
    """The contract-note components of a trade, unrounded (sub-paisa kept)."""

    brokerage: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    stt: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    exchange_txn: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    ipft: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    sebi_fee: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    stamp_duty: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    gst: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    dp_charge: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))
    charges_total: Mapped[Decimal] = mapped_column(ChargeAmount, default=Decimal(0))


class OrderRow(Base):
    """An order of the order manager; persisted (PENDING) before it is sent to the broker."""

    __tablename__ = "orders"
    __table_args__ = (
        Index("ix_orders_account_id_created_at", "account_id", "created_at"),
        Index("ix_orders_account_id_status", "account_id", "status"),  # the gate's open orders
        Index("ix_orders_status", "status"),
        Index("ix_orders_broker_order_id", "broker_order_id"),
        Index("ix_orders_strategy", "strategy"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    client_order_id: Mapped[str] = mapped_column(String(40), unique=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(str_enum(Side, "order_side"))
    quantity: Mapped[int]
    order_type: Mapped[OrderType] = mapped_column(str_enum(OrderType, "order_type"))
    product: Mapped[Product] = mapped_column(str_enum(Product, "order_product"))
    validity: Mapped[Validity] = mapped_column(str_enum(Validity, "order_validity"))
    price: Mapped[Decimal | None] = mapped_column(Money)
    trigger_price: Mapped[Decimal | None] = mapped_column(Money)
    is_amo: Mapped[bool] = mapped_column(default=False)
    status: Mapped[OrderStatus] = mapped_column(str_enum(OrderStatus, "order_status"))
    filled_quantity: Mapped[int] = mapped_column(default=0)
    average_price: Mapped[Decimal | None] = mapped_column(Money)
    broker: Mapped[Broker] = mapped_column(str_enum(Broker, "order_broker"))
    broker_order_id: Mapped[str | None] = mapped_column(String(64))
    rejection_reason: Mapped[str | None] = mapped_column(String(300))
    source: Mapped[str] = mapped_column(String(20), default="web")
    gtt_id: Mapped[int | None] = mapped_column(ForeignKey("gtt_orders.id"))
    placed_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    strategy: Mapped[str | None] = mapped_column(String(40))  # tag of the strategy that sent it
    #: When the risk gate cut the size: the quantity asked and the gate's reasons (alerts say
    #: them on every change of the order). NULL when the order went at the size asked.
    requested_quantity: Mapped[int | None]
    risk_note: Mapped[str | None] = mapped_column(String(300))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TradeRow(Base, ChargesMixin):
    """One execution of an order as the broker reported it, with its charges."""

    __tablename__ = "trades"
    __table_args__ = (
        UniqueConstraint("account_id", "broker_trade_id"),
        Index("ix_trades_account_id_executed_at", "account_id", "executed_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    order_id: Mapped[int] = mapped_column(ForeignKey("orders.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(str_enum(Side, "trade_side"))
    product: Mapped[Product] = mapped_column(str_enum(Product, "trade_product"))
    quantity: Mapped[int]
    price: Mapped[Decimal] = mapped_column(Money)
    executed_at: Mapped[datetime]
    trade_date: Mapped[date] = mapped_column(index=True)
    broker_trade_id: Mapped[str] = mapped_column(String(64))
    broker_order_id: Mapped[str] = mapped_column(String(64))


class GttRow(Base, TimestampMixin):
    """A good-till-triggered order the order manager watches (single or OCO)."""

    __tablename__ = "gtt_orders"
    __table_args__ = (Index("ix_gtt_orders_status_account_id", "status", "account_id"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    kind: Mapped[GttKind] = mapped_column(str_enum(GttKind, "gtt_kind"))
    product: Mapped[Product] = mapped_column(str_enum(Product, "gtt_product"))
    status: Mapped[GttStatus] = mapped_column(str_enum(GttStatus, "gtt_status"))
    reference_price: Mapped[Decimal] = mapped_column(Money)
    leg1_trigger: Mapped[Decimal] = mapped_column(Money)
    leg1_side: Mapped[Side] = mapped_column(str_enum(Side, "gtt_leg1_side"))
    leg1_quantity: Mapped[int]
    leg1_price: Mapped[Decimal] = mapped_column(Money)
    leg2_trigger: Mapped[Decimal | None] = mapped_column(Money)
    leg2_side: Mapped[Side | None] = mapped_column(str_enum(Side, "gtt_leg2_side"))
    leg2_quantity: Mapped[int | None]
    leg2_price: Mapped[Decimal | None] = mapped_column(Money)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    expires_at: Mapped[datetime]
    triggered_at: Mapped[datetime | None]
    triggered_leg: Mapped[int | None]
    order_id: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(String(300))


# ----------------------------------------------------------------------------------------------
# The paper broker's own books (its "exchange side"; the order manager mirrors them)
# ----------------------------------------------------------------------------------------------


class PaperOrderRow(Base):
    """An order resting at (or done by) the paper broker's virtual execution engine."""

    __tablename__ = "paper_orders"
    __table_args__ = (
        UniqueConstraint("account_id", "client_order_id"),
        Index("ix_paper_orders_status", "status"),
        Index("ix_paper_orders_account_id_trade_date", "account_id", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    client_order_id: Mapped[str] = mapped_column(String(40))
    instrument_id: Mapped[int] = mapped_column(ForeignKey("instruments.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(str_enum(Side, "paper_order_side"))
    quantity: Mapped[int]
    order_type: Mapped[OrderType] = mapped_column(str_enum(OrderType, "paper_order_type"))
    product: Mapped[Product] = mapped_column(str_enum(Product, "paper_order_product"))
    validity: Mapped[Validity] = mapped_column(str_enum(Validity, "paper_order_validity"))
    price: Mapped[Decimal | None] = mapped_column(Money)
    trigger_price: Mapped[Decimal | None] = mapped_column(Money)
    is_amo: Mapped[bool] = mapped_column(default=False)
    triggered: Mapped[bool] = mapped_column(default=False)
    rested: Mapped[bool] = mapped_column(default=False)
    status: Mapped[OrderStatus] = mapped_column(str_enum(OrderStatus, "paper_order_status"))
    filled_quantity: Mapped[int] = mapped_column(default=0)
    average_price: Mapped[Decimal | None] = mapped_column(Money)
    blocked_funds: Mapped[Decimal] = mapped_column(Money, default=Decimal(0))
    status_message: Mapped[str | None] = mapped_column(String(300))
    seen_quote_time: Mapped[datetime | None]
    seen_volume: Mapped[int] = mapped_column(BigInteger, default=0)
    trade_date: Mapped[date]
    placed_at: Mapped[datetime] = mapped_column(default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class PaperTradeRow(Base, ChargesMixin):
    """One fill of the paper broker, charged like a real contract note."""

    __tablename__ = "paper_trades"
    __table_args__ = (Index("ix_paper_trades_account_id_trade_date", "account_id", "trade_date"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    paper_order_id: Mapped[int] = mapped_column(ForeignKey("paper_orders.id"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"))
    symbol: Mapped[str] = mapped_column(String(32))
    side: Mapped[Side] = mapped_column(str_enum(Side, "paper_trade_side"))
    product: Mapped[Product] = mapped_column(str_enum(Product, "paper_trade_product"))
    quantity: Mapped[int]
    price: Mapped[Decimal] = mapped_column(Money)
    executed_at: Mapped[datetime]
    trade_date: Mapped[date]


class PaperLedgerRow(Base):
    """Money paid into (or out of) a paper account: its capital."""

    __tablename__ = "paper_ledger"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    kind: Mapped[str] = mapped_column(String(20))  # deposit | withdrawal
    amount: Mapped[Decimal] = mapped_column(Numeric(18, 2))
    note: Mapped[str | None] = mapped_column(String(200))
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


# ----------------------------------------------------------------------------------------------
# Signals: the model registry and the signal journal
# ----------------------------------------------------------------------------------------------


class ModelStatus(StrEnum):
    """Where a model version is in its life: being trained, ready, the active one, or failed."""

    TRAINING = "training"
    READY = "ready"
    ACTIVE = "active"
    FAILED = "failed"


class ModelVersionRow(Base):
    """One trained signal model: its windows, features, metrics and the artifact file's hash.

    At most one row is active: ``active_slot`` is 1 on the active row and NULL elsewhere, under a
    unique constraint (NULLs never collide on SQLite or PostgreSQL).
    """

    __tablename__ = "model_versions"
    __table_args__ = (Index("ix_model_versions_status_created_at", "status", "created_at"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    version: Mapped[str] = mapped_column(String(40), unique=True)
    status: Mapped[ModelStatus] = mapped_column(str_enum(ModelStatus, "model_status"))
    active_slot: Mapped[int | None] = mapped_column(unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    created_by: Mapped[str] = mapped_column(String(32))
    trained_at: Mapped[datetime | None]
    train_from: Mapped[date | None]
    train_to: Mapped[date | None]
    calibrator_kind: Mapped[str | None] = mapped_column(String(20))
    calibrated_at: Mapped[datetime | None]
    calibration_from: Mapped[date | None]
    calibration_to: Mapped[date | None]
    base_version: Mapped[str | None] = mapped_column(String(40))  # trees reused by a re-fit
    data_source: Mapped[str | None] = mapped_column(String(200))
    n_symbols: Mapped[int] = mapped_column(default=0)
    features: Mapped[str] = mapped_column(Text, default="[]")  # JSON list
    spec: Mapped[str] = mapped_column(Text, default="{}")  # JSON BarrierSpec
    metrics: Mapped[str] = mapped_column(Text, default="{}")  # JSON {name: value}
    report: Mapped[str] = mapped_column(Text, default="{}")  # JSON evaluation report
    artifact_path: Mapped[str | None] = mapped_column(String(300))
    sha256: Mapped[str | None] = mapped_column(String(64))
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    message: Mapped[str | None] = mapped_column(String(500))
    activated_at: Mapped[datetime | None]
    activated_by: Mapped[str | None] = mapped_column(String(32))


class SignalRow(Base):
    """One journaled signal and, once later bars decide it, its outcome.

    A signal is journaled once per symbol, bar and model version: generating it again returns
    the journaled one (same trace id), so performance figures never count a signal twice.
    """

    __tablename__ = "signals"
    __table_args__ = (
        UniqueConstraint("symbol", "bar_time", "model_version"),
        Index("ix_signals_outcome_bar_time", "outcome", "bar_time"),
        Index("ix_signals_generated_at", "generated_at"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trace_id: Mapped[str] = mapped_column(String(40), unique=True)
    symbol: Mapped[str] = mapped_column(String(32))
    bar_time: Mapped[datetime]
    generated_at: Mapped[datetime] = mapped_column(default=utcnow)
    generated_by: Mapped[str] = mapped_column(String(32))
    action: Mapped[Action] = mapped_column(str_enum(Action, "signal_action"))
    direction: Mapped[Direction] = mapped_column(str_enum(Direction, "signal_direction"))
    probability: Mapped[Decimal] = mapped_column(Numeric(8, 6))
    confidence: Mapped[Decimal] = mapped_column(Numeric(8, 6))
    entry: Mapped[Decimal] = mapped_column(Money)
    stop_loss: Mapped[Decimal] = mapped_column(Money)
    target1: Mapped[Decimal] = mapped_column(Money)
    target2: Mapped[Decimal] = mapped_column(Money)
    target3: Mapped[Decimal] = mapped_column(Money)
    risk_reward: Mapped[Decimal] = mapped_column(Numeric(8, 4))
    regime: Mapped[Regime] = mapped_column(str_enum(Regime, "signal_regime"))
    agreement: Mapped[int]
    voters: Mapped[int]
    evidence: Mapped[str] = mapped_column(Text)  # JSON list of Evidence
    model_version: Mapped[str] = mapped_column(String(40), index=True)
    horizon_bars: Mapped[int]
    outcome: Mapped[str] = mapped_column(String(12), default="OPEN")
    outcome_at: Mapped[datetime | None]
    outcome_price: Mapped[Decimal | None] = mapped_column(Money)


# ----------------------------------------------------------------------------------------------
# Risk: limits, states (kill switch, panic, loss limits), position controls, alerts
# ----------------------------------------------------------------------------------------------

Pct = Numeric(10, 4)


class RiskLimitsRow(Base):
    """The risk limits of a household (``account_id`` NULL: its defaults) or of one account.

    ``scope_key`` ("household:7" / "account:12") is unique, so a scope has at most one row;
    a scope without a row uses the household's row, or :class:`engines.risk_types.RiskLimits`.
    An account's row sets only the limits named in ``own_fields`` (a JSON list; NULL: every
    one); in the others it follows the household's row, whose columns are all read.
    """

    __tablename__ = "risk_limits"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), index=True)
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    scope_key: Mapped[str] = mapped_column(String(40), unique=True)
    risk_per_trade_pct: Mapped[Decimal] = mapped_column(Pct)
    atr_stop_multiple: Mapped[Decimal] = mapped_column(Pct)
    fallback_stop_pct: Mapped[Decimal] = mapped_column(Pct)
    high_volatility_atr_pct: Mapped[Decimal] = mapped_column(Pct)
    max_open_positions: Mapped[int]
    max_sector_pct: Mapped[Decimal] = mapped_column(Pct)
    correlation_threshold: Mapped[Decimal] = mapped_column(Pct)
    correlation_reduce: Mapped[bool]
    daily_loss_pct: Mapped[Decimal] = mapped_column(Pct)
    weekly_loss_pct: Mapped[Decimal] = mapped_column(Pct)
    drawdown_reduce_pct: Mapped[Decimal] = mapped_column(Pct)
    drawdown_kill_pct: Mapped[Decimal] = mapped_column(Pct)
    choppy_size_factor: Mapped[Decimal] = mapped_column(Pct)
    max_orders_per_second: Mapped[int]
    max_order_value: Mapped[Decimal] = mapped_column(Money)
    max_order_quantity: Mapped[int]
    duplicate_window_s: Mapped[int]
    portfolio_mtm_stop_loss: Mapped[Decimal | None] = mapped_column(Money)
    portfolio_mtm_target: Mapped[Decimal | None] = mapped_column(Money)
    mis_square_off_at: Mapped[time]
    own_fields: Mapped[str | None] = mapped_column(Text)  # JSON list of the account's own
    updated_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class RiskStateRow(Base):
    """A kill switch, panic, loss limit or manual disable of a scope, with its procedure report.

    ``active_key`` ("account:12:panic") is set while the state is ENGAGING or ACTIVE and NULL
    once CLEARED; its unique constraint lets one scope and kind be engaged only once at a time.
    """

    __tablename__ = "risk_states"
    __table_args__ = (Index("ix_risk_states_household_id_phase", "household_id", "phase"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    scope: Mapped[Scope] = mapped_column(str_enum(Scope, "risk_state_scope"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    strategy: Mapped[str | None] = mapped_column(String(40))
    kind: Mapped[StateKind] = mapped_column(str_enum(StateKind, "risk_state_kind"))
    phase: Mapped[StatePhase] = mapped_column(str_enum(StatePhase, "risk_state_phase"))
    reason: Mapped[str] = mapped_column(String(300))
    until: Mapped[date | None]
    engaged_at: Mapped[datetime] = mapped_column(default=utcnow)
    engaged_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    cleared_at: Mapped[datetime | None]
    cleared_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    clear_note: Mapped[str | None] = mapped_column(String(300))
    report: Mapped[str] = mapped_column(Text, default="[]")  # JSON list of PanicStep
    active_key: Mapped[str | None] = mapped_column(String(80), unique=True)


class PositionControlRow(Base):
    """Stop-loss, target and trailing stop of one open position, until it triggers or is cleared.

    ``active_key`` ("12:RELIANCE:MIS") is set while the control is active (NULL afterwards), so a
    position has at most one active control.
    """

    __tablename__ = "position_controls"

    id: Mapped[int] = mapped_column(primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), index=True)
    symbol: Mapped[str] = mapped_column(String(32))
    product: Mapped[Product] = mapped_column(str_enum(Product, "position_control_product"))
    stop_loss: Mapped[Decimal | None] = mapped_column(Money)
    target: Mapped[Decimal | None] = mapped_column(Money)
    trail_points: Mapped[Decimal | None] = mapped_column(Money)
    trail_pct: Mapped[Decimal | None] = mapped_column(Pct)
    extreme: Mapped[Decimal | None] = mapped_column(Money)
    is_active: Mapped[bool] = mapped_column(default=True)
    active_key: Mapped[str | None] = mapped_column(String(80), unique=True)
    created_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    triggered_at: Mapped[datetime | None]
    triggered_rule: Mapped[str | None] = mapped_column(String(20))
    triggered_order_id: Mapped[int | None] = mapped_column(BigInteger)


class MtmLimitRow(Base):
    """An MTM stop-loss/target in rupees for the whole household or one strategy."""

    __tablename__ = "mtm_limits"
    __table_args__ = (UniqueConstraint("household_id", "scope", "key"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    scope: Mapped[Scope] = mapped_column(str_enum(Scope, "mtm_limit_scope"))
    key: Mapped[str] = mapped_column(String(40))
    stop_loss: Mapped[Decimal | None] = mapped_column(Money)
    target: Mapped[Decimal | None] = mapped_column(Money)
    updated_by_user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class EquityPeakRow(Base):
    """The highest equity an account has reached (the drawdown's reference).

    ``paid_in`` is the money paid in net of withdrawals (the paper ledger) that the peak
    equity counted: money moved in or out since shifts the peak by as much, so only trading
    gains and losses make a drawdown.
    """

    __tablename__ = "equity_peaks"

    account_id: Mapped[int] = mapped_column(ForeignKey("accounts.id"), primary_key=True)
    peak_equity: Mapped[Decimal] = mapped_column(Money)
    peak_at: Mapped[datetime]
    paid_in: Mapped[Decimal] = mapped_column(Money, default=Decimal(0), server_default="0")


class AlertOutboxRow(Base):
    """An alert waiting for delivery (Telegram, e-mail), written with the change that caused it.

    ``dedupe_key`` is unique: the same event never alerts twice. ``user_id`` names the one
    user an alert is for (a session-expiry warning); NULL means the household's (or the
    account's) people. Delivery: ``status`` is ``pending`` until the dispatcher records
    ``sent``, ``skipped`` (the channel chose not to deliver) or ``failed`` (a permanent error,
    or ``attempts`` used up); a pending row is due from ``next_attempt_at`` (NULL once
    settled). ``last_error`` is the first line of the last failure, secrets removed.
    """

    __tablename__ = "alert_outbox"
    __table_args__ = (
        Index("ix_alert_outbox_status_created_at", "status", "created_at"),
        Index("ix_alert_outbox_household_id_created_at", "household_id", "created_at"),
        # The dispatcher's query: due pending rows (few), whatever the sent history's size.
        Index("ix_alert_outbox_due", "next_attempt_at",
              postgresql_where=text("status = 'pending'"),
              sqlite_where=text("status = 'pending'")),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    user_id: Mapped[int | None] = mapped_column(ForeignKey("users.id"), index=True)
    kind: Mapped[str] = mapped_column(String(40))
    severity: Mapped[str] = mapped_column(String(16))
    urgent: Mapped[bool] = mapped_column(default=False, server_default=false())
    title: Mapped[str] = mapped_column(String(200))
    body: Mapped[str] = mapped_column(Text)
    dedupe_key: Mapped[str] = mapped_column(String(120), unique=True)
    status: Mapped[str] = mapped_column(String(16), default="pending")
    attempts: Mapped[int] = mapped_column(default=0, server_default="0")
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(String(300))
    channel: Mapped[str | None] = mapped_column(String(20))
    delivered_at: Mapped[datetime | None]
    #: A signal alert's calibrated probability, so each member's own threshold can filter it.
    probability: Mapped[Decimal | None] = mapped_column(Numeric(5, 4))


class PnlSnapshotRow(Base):
    """The end-of-day P&L of one account, or of the whole family (``account_id`` NULL).

    ``scope_key`` ("account:12" / "household:3") is unique per ``trade_date``: a day's snapshot
    is written once, however often it is taken. Money in rupees.
    """

    __tablename__ = "pnl_snapshots"
    __table_args__ = (
        UniqueConstraint("trade_date", "scope_key"),
        Index("ix_pnl_snapshots_household_id_trade_date", "household_id", "trade_date"),
        Index("ix_pnl_snapshots_account_id_trade_date", "account_id", "trade_date"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    trade_date: Mapped[date]
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"))
    account_id: Mapped[int | None] = mapped_column(ForeignKey("accounts.id"))
    scope_key: Mapped[str] = mapped_column(String(40))
    realized_today: Mapped[Decimal] = mapped_column(Money)
    unrealized: Mapped[Decimal] = mapped_column(Money)  # of open positions (not holdings)
    charges_today: Mapped[Decimal] = mapped_column(ChargeAmount)
    day_pnl: Mapped[Decimal] = mapped_column(ChargeAmount)  # carries sub-paisa charges
    equity: Mapped[Decimal | None] = mapped_column(ChargeAmount)
    deposits: Mapped[Decimal | None] = mapped_column(Money)
    open_positions: Mapped[int]
    trades_today: Mapped[int]
    created_at: Mapped[datetime] = mapped_column(default=utcnow)


class JobOutcome(StrEnum):
    """How a worker job's last run ended."""

    OK = "ok"
    FAILED = "failed"
    SKIPPED = "skipped"  # nothing to do, or the run was missed (worker down or busy)


class JobRunRow(Base):
    """One worker job (by its scheduler id): its last run, its counts and its next run.

    ``last_message`` is the first line of the error's text for a failure (never a stack trace)
    or a one-line summary for a success. ``next_run_at`` is the scheduler's, NULL for a one-shot
    job that has run.
    """

    __tablename__ = "job_runs"

    name: Mapped[str] = mapped_column(String(60), primary_key=True)
    last_started_at: Mapped[datetime | None]
    last_finished_at: Mapped[datetime | None]
    last_outcome: Mapped[JobOutcome | None] = mapped_column(str_enum(JobOutcome, "job_outcome"))
    last_message: Mapped[str | None] = mapped_column(String(500))
    run_count: Mapped[int] = mapped_column(default=0)
    failure_count: Mapped[int] = mapped_column(default=0)
    next_run_at: Mapped[datetime | None]
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class TelegramBotRow(Base):
    """A household's Telegram bot: its token encrypted (AES-256-GCM), never shown again.

    Without a row, the household uses ``TELEGRAM_BOT_TOKEN`` from the settings (if set).
    ``bot_username`` is what getMe answered when the token was checked (None until then).
    """

    __tablename__ = "telegram_bots"

    id: Mapped[int] = mapped_column(primary_key=True)
    household_id: Mapped[int] = mapped_column(ForeignKey("households.id"), unique=True)
    token_enc: Mapped[str] = mapped_column(String(400))
    bot_username: Mapped[str | None] = mapped_column(String(64))
    set_by_user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    set_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelegramBotNameRow(Base):
    """The @username getMe reported for a bot (by its public numeric id), for every process.

    The bot process records it; the app shows "send /start CODE to @name" from it, also for the
    ``TELEGRAM_BOT_TOKEN`` bot, whose token is not in the database.
    """

    __tablename__ = "telegram_bot_names"

    bot_id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    username: Mapped[str] = mapped_column(String(64))
    seen_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelegramLinkRow(Base):
    """One Telegram chat bound to one user (a member's phone); one chat per user and vice versa."""

    __tablename__ = "telegram_links"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), unique=True)
    chat_id: Mapped[int] = mapped_column(BigInteger, unique=True)
    telegram_username: Mapped[str | None] = mapped_column(String(64))
    linked_at: Mapped[datetime] = mapped_column(default=utcnow)


class TelegramLinkCodeRow(Base):
    """A one-time linking code (only its SHA-256 is stored), valid for 10 minutes."""

    __tablename__ = "telegram_link_codes"

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    code_hash: Mapped[str] = mapped_column(String(64), unique=True)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
    expires_at: Mapped[datetime]
    used_at: Mapped[datetime | None]
    used_chat_id: Mapped[int | None] = mapped_column(BigInteger)


class AlertPreferenceRow(Base):
    """A user's choice for one alert type: ``on``, ``silent`` or ``off`` (no row: the default)."""

    __tablename__ = "alert_preferences"
    __table_args__ = (UniqueConstraint("user_id", "alert_type"),)

    id: Mapped[int] = mapped_column(primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), index=True)
    alert_type: Mapped[str] = mapped_column(String(30))
    mode: Mapped[str] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class NotificationSettingsRow(Base):
    """A user's delivery settings: do-not-disturb window, daily summary time, signal threshold.

    Times are IST wall-clock times. A DND window may cross midnight (22:00-07:00); both ends
    NULL means no window. ``daily_summary_time`` NULL means no daily summary.
    """

    __tablename__ = "notification_settings"

    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"), primary_key=True)
    dnd_start: Mapped[time | None]
    dnd_end: Mapped[time | None]
    daily_summary_time: Mapped[time | None]
    signal_min_probability: Mapped[Decimal] = mapped_column(Numeric(4, 3))
    updated_at: Mapped[datetime] = mapped_column(default=utcnow, onupdate=utcnow)


class AlertDeliveryRow(Base):
    """One alert's delivery to one user's chat: the per-recipient status behind the outbox row.

    ``status`` is ``sent``, ``skipped`` (type off, not linked, duplicate) or ``failed``;
    ``silent`` records a delivery without sound (the member's choice, or their DND window).
    ``content_hash`` (SHA-256 of the text) finds identical messages to the same user within the
    dedupe window.
    """

    __tablename__ = "alert_deliveries"
    __table_args__ = (
        UniqueConstraint("alert_id", "user_id"),
        Index("ix_alert_deliveries_user_id_content_hash", "user_id", "content_hash"),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    alert_id: Mapped[int] = mapped_column(BigId, ForeignKey("alert_outbox.id"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id"))
    chat_id: Mapped[int | None] = mapped_column(BigInteger)
    status: Mapped[str] = mapped_column(String(16))
    silent: Mapped[bool] = mapped_column(default=False)
    reason: Mapped[str | None] = mapped_column(String(300))
    content_hash: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[int | None] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(default=utcnow)
