"""Risk-watch exits a broker rejected are sent again, a few times, while their position lasts.

A stop-loss, target, trailing stop, MTM limit or end-of-day square-off (the risk watch,
``source="risk"``) sends one MARKET exit under a deterministic client order id, so a watch
that runs twice never sends it twice. A live broker can still reject that exit (an RMS margin
check, a price band, a session hiccup), either at once or later in its order book; the
position then stayed open while the control that fired was retired.

The close-out of a panic, kill switch or loss limit (``source="panic"``) is not retried here:
its state, once ACTIVE, refuses every order (engines.risk), and its report names each failed
close.

:class:`ExitRetry` runs with every risk-watch run. It finds today's rejected protective exits
and sends each again, :data:`RETRY_SECONDS` after the desk first saw it rejected, as a new
order whose client order id is the rejected one's with ``:r<attempt>``; at most
:data:`ATTEMPTS` orders in all per exit. An exit is sent again only while its position is
still open on the same side and no later order of the account in that symbol and product has
filled (a person or another rule acted since), for no more than is still open. Each attempt
is audited (``risk.exit_retry``) and alerted; a last rejected attempt says the desk stopped
trying and the position must be closed by hand.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from core import alerts, audit
from core.clock import to_ist
from core.errors import TradingError
from core.orders import OrderManager
from core.trading import Order, OrderRequest, OrderStatus, OrderType, Product, Side
from db.engine import Database
from db.models import OrderRow, TradeRow

log = logging.getLogger("sher.risk")

#: Orders in all (the first exit and its retries) the desk sends for one protective exit.
ATTEMPTS = 3
#: Seconds between the desk seeing an exit rejected and sending it again.
RETRY_SECONDS = 30.0
#: Order sources whose rejected exits are retried: the risk watch's.
SOURCES = ("risk",)
_ATTEMPT = re.compile(r"^(?P<base>.*):r(?P<n>[0-9]+)$")
_CLIENT_ID_CHARS = 40  # core.trading.CLIENT_ORDER_ID_RE


def attempt_of(client_id: str) -> tuple[str, int]:
    """Return (the first exit's client order id, attempt number) of an exit's client id."""
    found = _ATTEMPT.match(client_id)
    if found is None:
        return client_id, 1
    return found["base"], int(found["n"])


def retry_client_id(client_id: str, attempt: int) -> str:
    """Return the client order id of ``attempt`` (2, 3, ...) of the exit ``client_id``."""
    base, _ = attempt_of(client_id)
    suffix = f":r{attempt}"
    return base[: _CLIENT_ID_CHARS - len(suffix)] + suffix


def rejected_note(attempt: int) -> str:
    """Return what the alert of a rejected exit says the desk does next."""
    if attempt >= ATTEMPTS:
        return (f" The desk has stopped trying after {ATTEMPTS} exit orders: the position stays "
                "open; close it by hand.")
    return (f" The desk sends it again in {RETRY_SECONDS:.0f} s (attempt {attempt} of "
            f"{ATTEMPTS}); if every attempt is rejected, close the position by hand.")


@dataclass(frozen=True, slots=True)
class RejectedExit:
    order_id: int
    client_id: str
    account_id: int
    symbol: str
    side: Side
    quantity: int
    product: Product
    strategy: str | None
    source: str
    reason: str | None


def rejected_exits(session: Session, account_ids: list[int], since: datetime) -> list[RejectedExit]:
    """Return the accounts' risk-watch exits rejected since ``since`` (one read)."""
    rows = session.execute(
        select(OrderRow.id, OrderRow.client_order_id, OrderRow.account_id, OrderRow.symbol,
               OrderRow.side, OrderRow.quantity, OrderRow.product, OrderRow.strategy,
               OrderRow.source, OrderRow.rejection_reason)
        .where(OrderRow.account_id.in_(account_ids), OrderRow.source.in_(SOURCES),
               OrderRow.status == OrderStatus.REJECTED, OrderRow.created_at >= since)
        .order_by(OrderRow.id))
    return [RejectedExit(order_id=r.id, client_id=r.client_order_id, account_id=r.account_id,
                         symbol=r.symbol, side=r.side, quantity=r.quantity, product=r.product,
                         strategy=r.strategy, source=r.source, reason=r.rejection_reason)
            for r in rows]


class ExitRetry:
    """Sends rejected risk-watch exits again (see the module docstring); one per watch."""

    def __init__(self, db: Database, manager: OrderManager,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        self.db = db
        self.manager = manager
        self.monotonic = monotonic
        self.retry_seconds = RETRY_SECONDS
        self._seen: dict[int, float] = {}  # rejected order id -> when the desk first saw it
        self._done: set[int] = set()  # rejected orders followed up (or never to be)

    @staticmethod
    def since(now: datetime) -> datetime:
        """Return the start of ``now``'s IST day in UTC: exits of earlier days stay as they are."""
        day = to_ist(now).replace(hour=0, minute=0, second=0, microsecond=0)
        return day.astimezone(UTC)

    def run(self, household_id: int, rejected: list[RejectedExit]) -> tuple[list[str], list[str]]:
        """Follow up ``rejected`` exits; return (client ids sent, failures)."""
        sent: list[str] = []
        failures: list[str] = []
        clock = self.monotonic()
        due = []
        for exit_ in rejected:
            if exit_.order_id in self._done:
                continue
            if attempt_of(exit_.client_id)[1] >= ATTEMPTS:
                self._done.add(exit_.order_id)
                continue
            first_seen = self._seen.setdefault(exit_.order_id, clock)
            if clock - first_seen >= self.retry_seconds:
                due.append(exit_)
        for exit_ in due:
            try:
                order = self._retry(household_id, exit_)
            except TradingError as exc:  # refused before anything was written: later again
                self._seen[exit_.order_id] = clock
                failures.append(f"exit retry of order {exit_.order_id} ({exit_.symbol}): {exc}")
                log.warning("risk watch: retry of exit order %s failed: %s", exit_.order_id, exc)
                continue
            self._done.add(exit_.order_id)
            if order is not None:
                sent.append(order.client_order_id)
        return sent, failures

    def _retry(self, household_id: int, exit_: RejectedExit) -> Order | None:
        """Send ``exit_`` again if its position is still there; None when it is not."""
        attempt = attempt_of(exit_.client_id)[1] + 1
        client_id = retry_client_id(exit_.client_id, attempt)
        with self.db.transaction() as session:
            if session.scalar(select(OrderRow.id).where(OrderRow.client_order_id == client_id)):
                return None  # already sent (another worker, or before a restart)
            later_fill = session.scalar(
                select(func.max(TradeRow.order_id)).where(
                    TradeRow.account_id == exit_.account_id, TradeRow.symbol == exit_.symbol,
                    TradeRow.product == exit_.product))
        if later_fill is not None and later_fill > exit_.order_id:
            return None  # the position changed after the exit: whoever acted decides
        held = sum(p.quantity for p in self.manager.broker_for(exit_.account_id).positions()
                   if p.symbol == exit_.symbol and p.product is exit_.product)
        open_side = Side.BUY if held > 0 else Side.SELL
        if held == 0 or open_side is exit_.side:
            return None  # flat, or no longer on the side the exit closes
        request = OrderRequest(exit_.account_id, exit_.symbol, exit_.side,
                               min(exit_.quantity, abs(held)), OrderType.MARKET, exit_.product,
                               client_order_id=client_id, strategy=exit_.strategy)

        def record(session: Session, order: Order) -> None:
            _record(session, household_id, exit_, order, attempt)

        return self.manager.submit(request, placed_by=None, source=exit_.source,
                                   on_recorded=record)


def _record(session: Session, household_id: int, exit_: RejectedExit, order: Order,
            attempt: int) -> None:
    """Alert and audit one retry, in the transaction that records its order."""
    placed = order.status is not OrderStatus.REJECTED
    body = (f"Exit order {exit_.order_id} ({exit_.side} {exit_.quantity} {exit_.symbol} "
            f"{exit_.product}) was rejected"
            + (f": {exit_.reason}" if exit_.reason else "")
            + f". Sent again as exit order {order.id} (attempt {attempt} of {ATTEMPTS}): "
              f"{order.side} {order.quantity} {order.symbol} {order.product} at market — "
              f"{order.status}"
            + (f" ({order.rejection_reason})." if order.rejection_reason else ".")
            + ("" if placed else rejected_note(attempt)))
    alerts.enqueue(
        session, kind="risk.exit_retry", household_id=household_id,
        account_id=exit_.account_id, severity="warning" if placed else "critical",
        title=f"Exit sent again: {exit_.symbol}" if placed
        else f"Exit rejected again: {exit_.symbol}",
        body=body, dedupe_key=f"risk-exit-retry:{order.client_order_id}")
    audit.append(session, audit.AuditEvent(
        action="risk.exit_retry", resource=f"order:{order.id}", actor_user_id=None,
        actor_username=None, household_id=household_id,
        outcome=audit.OK if placed else audit.FAILED,
        details={"account_id": exit_.account_id, "symbol": exit_.symbol,
                 "product": exit_.product.value, "quantity": order.quantity,
                 "attempt": attempt, "rejected_order": exit_.order_id,
                 "status": order.status.value},
        client=None))
