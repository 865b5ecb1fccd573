"""The one service facade that pages, jobs and (later) the Telegram bot call.

Every method that acts takes the acting :class:`~core.domain.Actor` and checks its rights
against the database; nothing relies on the UI hiding a button.
"""

from __future__ import annotations

from core.config import Settings, get_settings
from core.services.audit_log import AuditFilter, AuditLogService
from core.services.auth import AuthService, LoginResult, TotpEnrolment
from core.services.charts import ChartService
from core.services.daily_summary import DailySummaryService
from core.services.feed import FeedService
from core.services.household import HouseholdService
from core.services.jobs import JobService
from core.services.market import MarketService
from core.services.marketdata import MarketDataService
from core.services.orders import OrderService
from core.services.outbox import OutboxService
from core.services.pnl_snapshots import PnlSnapshotService
from core.services.portfolio import PortfolioService
from core.services.risk import RiskService
from core.services.risk_gate import DeskRiskGate
from core.services.risk_watch import RiskWatch
from core.services.signal_alerts import SignalAlertService
from core.services.signal_registry import ModelRegistry
from core.services.signals import SignalService
from core.services.telegram import TelegramService
from core.services.telegram_replies import TelegramReplies
from core.services.users import UserService
from core.services.worker import WorkerService
from db.engine import Database

__all__ = ["AuditFilter", "LoginResult", "Services", "TotpEnrolment", "build_services"]


class Services:
    """All services over one database."""

    def __init__(self, db: Database, settings: Settings) -> None:
        """Build every service over ``db``."""
        self.db = db
        self.settings = settings
        self.auth = AuthService(db, settings)
        self.users = UserService(self.auth)
        self.household = HouseholdService(db, settings)
        self.audit = AuditLogService(db, settings)
        self.worker = WorkerService(db, settings)
        self.jobs = JobService(db, settings)
        self.outbox = OutboxService(db, settings)
        self.marketdata = MarketDataService(db, settings)
        self.feed = FeedService(db, settings)
        self.market = MarketService(db, settings)
        self.charts = ChartService(db, settings)
        self.orders = OrderService(db, settings, self.household)
        # The one risk gate every order passes (the order manager needs the order service's
        # brokers and the gate needs the manager's estimates, so it is plugged in after).
        self.risk_gate = DeskRiskGate(db, self.household, self.orders)
        self.orders.manager.risk_gate = self.risk_gate
        self.risk = RiskService(db, settings, self.household, self.orders)
        self.risk_watch = RiskWatch(db, self.risk_gate, self.risk)
        self.portfolio = PortfolioService(db, settings, self.household, self.orders)
        self.pnl_snapshots = PnlSnapshotService(db, settings, self.household, self.portfolio)
        self.models = ModelRegistry(db, settings)
        self.signals = SignalService(db, settings, self.models)
        self.signal_alerts = SignalAlertService(db, settings, self.signals, self.models)
        self.daily_summary = DailySummaryService(self.pnl_snapshots)
        self.telegram = TelegramService(db, settings, self.household)
        self.telegram_replies = TelegramReplies(self)  # the bot's answers, over these services


def build_services(database_url: str | None = None, settings: Settings | None = None) -> Services:
    """Return services over ``database_url`` (default DATABASE_URL)."""
    settings = settings or get_settings()
    return Services(Database(database_url or settings.database_url), settings)
