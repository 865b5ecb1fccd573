"""The one error tree of SHER.

Every error a user or operator can meet derives from :class:`TradingError`. Messages state the
rule and the values in plain words, so pages and the Telegram bot can show ``str(error)`` as is.
Jobs decide retry versus stop by class: only :class:`TemporaryBrokerError` is retried.
"""

from __future__ import annotations


class TradingError(Exception):
    """Root of every SHER error. Show the message to the user; never a stack trace."""


class ConfigError(TradingError):
    """The desk is misconfigured. Operator: fix the setting named in the message and restart."""


class ValidationError(TradingError):
    """Input breaks a rule. User: correct the value named in the message and try again."""


class OrderClosed(ValidationError):
    """The order is no longer open (filled, cancelled or rejected). User: refresh the book."""


class NotFound(ValidationError):
    """A named record does not exist. User: check the id or name."""


class AuthenticationError(TradingError):
    """Login failed or was refused. User: check credentials, or wait out the stated lockout."""


class SessionInvalid(AuthenticationError):
    """The server-side session ended (logout, expiry, force-logout). User: log in again."""


class PermissionDenied(TradingError):
    """The acting user's role or grants do not allow the action. Ask a household admin."""


class RiskRejected(TradingError):
    """The risk gate refused an order. User: read the reasons; change the order or the limits."""


class RateLimited(RiskRejected):
    """Only the SEBI orders-per-second limit refused the order: the same order passes once
    the second is over. A stop's exits and a square-off wait for it and send again."""


class BrokerError(TradingError):
    """The broker failed. Operator: read the broker's message; do not retry blindly."""


class TemporaryBrokerError(BrokerError):
    """A transient broker failure (timeout, rate limit). Jobs retry with backoff."""


class OrderRejected(BrokerError):
    """The broker rejected an order. User: read the reason; fix the order before resending."""


class InsufficientFunds(OrderRejected):
    """Not enough funds or margin for an order. User: add funds or reduce the quantity."""


class WorkerLockHeld(ConfigError):
    """Another worker already runs against this database. Operator: stop it or wait."""
