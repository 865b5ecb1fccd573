"""Settings of the desk, read from the environment (and ``.env``) with pydantic-settings.

Every process (app, worker, CLIs, ``alembic upgrade head``) reads the same settings, so
``DATABASE_URL`` selects the database for all of them alike.
"""

from __future__ import annotations

import os
import secrets
from datetime import date, time
from functools import lru_cache
from pathlib import Path

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from core.errors import ConfigError

PROJECT_ROOT = Path(__file__).resolve().parent.parent
VAR_DIR = PROJECT_ROOT / "var"
DEFAULT_DATABASE_URL = f"sqlite:///{VAR_DIR / 'sher.db'}"
SECRET_KEY_FILE = VAR_DIR / "secret_key"
MIN_SECRET_KEY_CHARS = 32


class Settings(BaseSettings):
    """Process-wide settings; each field documents its environment variable and default."""

    model_config = SettingsConfigDict(env_file=".env", extra="ignore", case_sensitive=False)

    database_url: str = Field(
        default=DEFAULT_DATABASE_URL,
        description="DATABASE_URL: SQLAlchemy URL; sqlite:///path or postgresql://user@host/db.",
    )
    secret_key: str | None = Field(
        default=None,
        description="SECRET_KEY: signs cookies and encrypts secrets at rest; generated into "
        "var/secret_key on first run when unset.",
    )
    session_expiry_time: time = Field(
        default=time(3, 0),
        description="SESSION_EXPIRY_TIME: IST wall-clock time after which every session ends.",
    )
    login_max_failures: int = Field(
        default=5, ge=1, description="LOGIN_MAX_FAILURES: failed logins before a lockout."
    )
    login_max_failures_per_ip: int = Field(
        default=20,
        ge=1,
        description="LOGIN_MAX_FAILURES_PER_IP: failed logins from one address before a lockout.",
    )
    login_lockout_minutes: int = Field(
        default=15, ge=1, description="LOGIN_LOCKOUT_MINUTES: lockout window and duration."
    )
    worker_heartbeat_seconds: int = Field(
        default=5, ge=1, description="WORKER_HEARTBEAT_SECONDS: how often the worker beats."
    )
    worker_stale_seconds: int = Field(
        default=30,
        ge=5,
        description="WORKER_STALE_SECONDS: a lock older than this may be taken over.",
    )
    bcrypt_rounds: int = Field(
        default=12, ge=4, le=16, description="BCRYPT_ROUNDS: password hashing cost (log2)."
    )
    feed_mode: str = Field(
        default="replay",
        pattern="^(replay|wallclock|off)$",
        description="FEED_MODE: replay (sample days at REPLAY_SPEED), wallclock (the replay "
        "day's bar at the current IST time of day) or off.",
    )
    replay_speed: float = Field(
        default=37.5,
        gt=0,
        le=10_000,
        description="REPLAY_SPEED: simulated seconds per wall second (37.5 = a day in 10 min).",
    )
    replay_start: date | None = Field(
        default=None,
        description="REPLAY_START: first session to replay (default: the first full session "
        "in the 5-minute sample).",
    )
    feed_stall_seconds: int = Field(
        default=15,
        ge=2,
        description="FEED_STALL_SECONDS: a running feed silent this long is shown as stalled.",
    )
    paper_slippage_bps: int = Field(
        default=5,
        ge=0,
        le=500,
        description="PAPER_SLIPPAGE_BPS: paper MARKET and stop-market fills pay this many basis "
        "points (1/100 %) worse than the price, rounded outward to the tick.",
    )
    paper_mis_leverage: int = Field(
        default=5,
        ge=1,
        le=20,
        description="PAPER_MIS_LEVERAGE: intraday (MIS) orders block value / this as margin.",
    )
    paper_participation_pct: int = Field(
        default=25,
        ge=1,
        le=100,
        description="PAPER_PARTICIPATION_PCT: a paper order fills at most this % of the volume "
        "the market traded since it last matched (bigger orders fill in parts).",
    )
    paper_initial_capital: int = Field(
        default=1_000_000,
        ge=0,
        description="PAPER_INITIAL_CAPITAL: rupees paid into each new demo paper account.",
    )
    model_dir: Path | None = Field(
        default=None,
        description="MODEL_DIR: folder of the signal model files (one per version, named by "
        "version; each checked against its SHA-256 in the registry when loaded). Default: "
        "'models' beside a SQLite database file (var/models for the default database), else "
        "var/models.",
    )
    signal_train_on_start: bool = Field(
        default=True,
        description="SIGNAL_TRAIN_ON_START: a worker that finds no active signal model (and "
        "daily bars in the database) trains and activates the first one in the background.",
    )
    signal_refit: bool = Field(
        default=True,
        description="SIGNAL_REFIT: the worker re-fits the signal model and its calibrator on "
        "the model's schedule (monthly trees, weekly calibrator). `make run` (the demo, whose "
        "sample data does not grow) turns it off unless it is set.",
    )
    signal_outcome_time: time = Field(
        default=time(16, 15),
        description="SIGNAL_OUTCOME_TIME: IST time on weekdays when the worker marks the "
        "outcomes of journaled signals from the day's bars (after the 15:30 close).",
    )
    signal_scan_time: time = Field(
        default=time(15, 50),
        description="SIGNAL_SCAN_TIME: IST time on NSE trading days when the worker scans the "
        "universe for signals and alerts each new BUY/SELL at probability 0.50 or more "
        "(members' own thresholds filter further).",
    )
    cookie_expiry_days: float = Field(
        default=1.0, ge=0, description="COOKIE_EXPIRY_DAYS: re-login cookie lifetime (0 = off)."
    )
    alert_channel: str = Field(
        default="log",
        description="ALERT_CHANNEL: where alerts go: 'log' (the worker writes them to the "
        "sher.alerts logger; the demo's) or 'telegram' (the Telegram bot process, "
        "`python -m jobs.telegram_bot`, delivers them to each member's linked chat).",
    )
    telegram_bot_token: SecretStr | None = Field(
        default=None,
        description="TELEGRAM_BOT_TOKEN: the Telegram bot of every household that has not "
        "entered its own token on the Alerts page (stored encrypted). Never logged.",
    )
    telegram_base_url: str = Field(
        default="https://api.telegram.org/bot",
        description="TELEGRAM_BASE_URL: the Bot API base URL (python-telegram-bot's base_url; "
        "the token is appended, or put in place of '{token}'). Point it at a local Bot API "
        "server for tests or private deployments.",
    )
    alert_max_attempts: int = Field(
        default=8,
        ge=1,
        le=50,
        description="ALERT_MAX_ATTEMPTS: delivery attempts (10 s, 20 s, 40 s ... apart, at most "
        "30 min) before an alert is marked failed.",
    )

    @field_validator("database_url")
    @classmethod
    def _normalise_url(cls, value: str) -> str:
        """Use psycopg 3 for PostgreSQL whatever spelling the operator chose."""
        for prefix in ("postgres://", "postgresql://"):
            if value.startswith(prefix):
                return "postgresql+psycopg://" + value[len(prefix) :]
        if not value.startswith(("sqlite://", "postgresql+psycopg://")):
            raise ValueError(
                "DATABASE_URL must start with sqlite:// or postgresql://; "
                f"got {value.split(':')[0]!r}"
            )
        return value

    def resolved_model_dir(self) -> Path:
        """Return MODEL_DIR, or the default: ``models`` beside the SQLite file, else var/models.

        Model files belong with the registry that lists them, so a desk on its own SQLite file
        (a test's, a demo's) keeps its models beside it.
        """
        if self.model_dir is not None:
            return self.model_dir
        prefix = "sqlite:///"
        if self.database_url.startswith(prefix) and ":memory:" not in self.database_url:
            return Path(self.database_url[len(prefix):]).parent / "models"
        return VAR_DIR / "models"

    def resolved_secret_key(self) -> str:
        """Return SECRET_KEY, generating and storing one in ``var/secret_key`` on first use."""
        if self.secret_key:
            if len(self.secret_key) < MIN_SECRET_KEY_CHARS:
                raise ConfigError(
                    f"SECRET_KEY must be at least {MIN_SECRET_KEY_CHARS} characters; "
                    f"got {len(self.secret_key)}"
                )
            return self.secret_key
        return _load_or_create_secret_key(SECRET_KEY_FILE)


def _load_or_create_secret_key(path: Path) -> str:
    """Read the generated secret key, creating it with owner-only permissions if missing."""
    if path.exists():
        key = path.read_text(encoding="utf-8").strip()
        if len(key) >= MIN_SECRET_KEY_CHARS:
            return key
        raise ConfigError(f"{path} holds a key shorter than {MIN_SECRET_KEY_CHARS} characters")
    path.parent.mkdir(parents=True, exist_ok=True)
    key = secrets.token_urlsafe(48)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as handle:
        handle.write(key)
    return key


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """Return the process settings (read once)."""
    try:
        return Settings()
    except ValueError as exc:  # pydantic's ValidationError is a ValueError
        raise ConfigError(f"Invalid setting: {exc}") from exc
