"""Deliver the alert outbox to Telegram: per-recipient messages under Telegram's flood limits.

The Telegram bot process (``python -m jobs.telegram_bot``) runs one :class:`TelegramDispatcher`
beside its bots' Applications when ``ALERT_CHANNEL=telegram`` (the worker's own dispatch job
then skips). About every :data:`POLL_S` seconds it claims due alerts
(:meth:`core.services.outbox.OutboxService.claim`; an idle outbox costs one indexed read) and
for each one, concurrently:

1. finds the household's bot (``bot_for``); none: the alert is ``skipped`` ("no Telegram bot
   set up for this household");
2. asks :meth:`core.services.telegram.TelegramService.plan` for its recipients and each one's
   decision (off, below the signal threshold, silent, do-not-disturb, no chat linked, a
   duplicate); skipped recipients are recorded at once;
3. sends the others through :class:`FloodControl` and records each sent message with its id;
4. settles the outbox row: ``sent`` if anyone got it, ``skipped`` (with the reasons) if nobody
   was due a message, ``failed`` if every due recipient refused it (blocked the bot: 403, chat
   not found: 400), a retry with backoff for a network error, a Telegram 5xx or a refused
   token, and a deferral (no attempt counted) when Telegram's limits keep a message waiting
   past the claim's lease. A retried alert re-plans: recipients already recorded are left
   out, so nobody gets it twice.

Flood control (:class:`FloodControl`): each (bot, chat) has a lane sending at most one message
per :attr:`RateLimits.per_chat_interval_s` (urgent alerts first, then oldest), lanes run in
parallel, and a sliding one-second window per bot caps the total at
:attr:`RateLimits.overall_per_s`. A 429 (``RetryAfter``) pauses that chat for ``retry_after``
and the same message is sent again; 429s from two chats within a second pause the whole bot.
Slots are counted from when Telegram answered the previous message, so the limits also hold as
Telegram sees them. A message that could not go before its alert's lease ends
(:data:`core.services.outbox.CLAIM_LEASE` less :data:`core.services.outbox.LEASE_MARGIN_S`) is
not sent and the alert is deferred; a claim is at most :data:`CLAIM_BATCH` alerts and at most
:data:`MAX_IN_FLIGHT` wait at once.

The database going away (a PostgreSQL restart) loses and doubles nothing: a record it refuses
(a recipient's delivery, an alert's outcome) is held in memory and written, deliveries first,
as soon as it answers again, before anything new is claimed; the alert stays in flight
meanwhile, so it is neither claimed again nor given back. An alert that was not delivered
(its planning or sending failed while the database was away: a retry or a deferral) is then
given back, due at once with no attempt counted, since the failure was the database's.
Delivery is exactly once per recipient unless the process dies (or stops while the database is
still away) between Telegram accepting a message and its record being written: then that
recipient may get it again once the claim's lease ends. Errors are logged in one line through
:func:`core.services.outbox.safe_error` (no token).

python-telegram-bot 22 warns on every ``RetryAfter`` unless the process opts into its coming
``timedelta`` periods; importing this module sets ``PTB_TIMEDELTA=true`` (if unset).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import itertools
import logging
import os
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from telegram import Bot
from telegram.error import (
    BadRequest,
    ChatMigrated,
    Forbidden,
    InvalidToken,
    RetryAfter,
    TelegramError,
)

from core.alerts import Alert
from core.clock import now_ist
from core.services import Services
from core.services.jobs import database_down
from core.services.outbox import (
    CLAIM_LEASE,
    LEASE_MARGIN_S,
    Delivery,
    DeliveryOutcome,
    DispatchReport,
    safe_error,
)
from core.services.telegram_delivery import DEDUPE_WINDOW, PlannedDelivery

os.environ.setdefault("PTB_TIMEDELTA", "true")

log = logging.getLogger("sher.telegram.dispatch")

CHANNEL = "telegram"
#: Seconds between outbox polls while idle.
POLL_S = 0.2
#: Alerts claimed per poll, and the most waiting to be sent at once.
CLAIM_BATCH = 100
MAX_IN_FLIGHT = 400
#: After a failed poll (database down) wait this long before the next.
ERROR_PAUSE_S = 5.0
#: On stop, alerts in flight get this long to finish; the rest are given back.
STOP_GRACE_S = 5.0
#: A chat's lane ends after this long without messages.
LANE_IDLE_S = 30.0
NO_BOT = "no Telegram bot set up for this household"
NO_RECIPIENT = "nobody in the household receives this alert"

SendStatus = Literal["sent", "failed", "retry", "later"]
#: Outcomes of alerts that reached nobody: given back when held through a database outage.
UNDELIVERED = frozenset({DeliveryOutcome.RETRY, DeliveryOutcome.DEFER})


@dataclass(frozen=True, slots=True)
class RateLimits:
    """Telegram's flood limits and the dispatcher's timing (defaults: Telegram's documented ones).

    Attributes
    ----------
    per_chat_interval_s
        At least this long between two messages to one chat (Telegram: about 1 message/s).
    overall_per_s
        At most this many messages per bot in any one second (Telegram: 30).
    poll_s
        Seconds between outbox polls while idle.
    lease_budget_s
        A claimed alert's messages must be sent within this many seconds of the claim (the
        claim lease less its safety margin).
    """

    per_chat_interval_s: float = 1.0
    overall_per_s: int = 30
    poll_s: float = POLL_S
    lease_budget_s: float = CLAIM_LEASE.total_seconds() - LEASE_MARGIN_S


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one message ended: ``sent`` (with its id), ``failed`` for good (this chat refuses
    it), ``retry`` (temporary error) or ``later`` (flood limits left no slot before the
    deadline; ``wait_s`` is roughly how long until one)."""

    status: SendStatus
    message_id: int | None = None
    error: str | None = None
    wait_s: float = 0.0


@dataclass(frozen=True, slots=True)
class _HeldDelivery:
    """One recipient's delivery record (the arguments of ``record_delivery``)."""

    planned: PlannedDelivery
    status: str
    message_id: int | None = None
    reason: str | None = None

    def args(self) -> tuple[PlannedDelivery, str, int | None, str | None]:
        return self.planned, self.status, self.message_id, self.reason


@dataclass(order=True)
class _Item:
    rank: tuple[int, int]
    chat_id: int = field(compare=False)
    text: str = field(compare=False)
    silent: bool = field(compare=False)
    deadline: float = field(compare=False)
    future: asyncio.Future[SendResult] = field(compare=False)


@dataclass
class _Lane:
    heap: list[_Item] = field(default_factory=list)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    next_at: float = 0.0
    task: asyncio.Task[None] | None = None


class _Window:
    """At most ``per_s`` sends per bot in any second, counted until each send is answered."""

    def __init__(self, per_s: int) -> None:
        self.per_s = per_s
        self.slots: deque[list[float]] = deque()  # [time, answered]: start, then answer time
        self.lock = asyncio.Lock()
        self.paused_until = 0.0
        self.throttled: deque[tuple[float, int]] = deque()  # (when, chat) of recent 429s

    async def acquire(self, clock: Callable[[], float]) -> list[float]:
        async with self.lock:
            while True:
                now = clock()
                while self.slots and self.slots[0][1] and self.slots[0][0] + 1.0 <= now:
                    self.slots.popleft()
                if now < self.paused_until:
                    await asyncio.sleep(self.paused_until - now)
                    continue
                if len(self.slots) < self.per_s:
                    slot = [now, 0.0]
                    self.slots.append(slot)
                    return slot
                oldest = self.slots[0]
                await asyncio.sleep(max(oldest[0] + 1.0 - now, 0.005) if oldest[1] else 0.005)


def retry_after_s(exc: RetryAfter) -> float:
    """Return a 429's ``retry_after`` in seconds (an int or a timedelta, per PTB's setting)."""
    value = exc.retry_after
    return value.total_seconds() if isinstance(value, timedelta) else float(value)


class FloodControl:
    """Send Telegram messages within the per-chat and per-bot limits; see the module docstring.

    Parameters
    ----------
    limits
        The limits (Telegram's by default).
    clock
        Monotonic seconds (injectable for tests).
    """

    def __init__(self, limits: RateLimits = RateLimits(),
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._lanes: dict[tuple[str, int], _Lane] = {}
        self._windows: dict[str, _Window] = {}
        self._seq = itertools.count()

    def backlog_s(self, bot: Bot, chat_id: int) -> float:
        """Return roughly how long until a new message to ``chat_id`` could be sent."""
        lane = self._lanes.get((bot.token, chat_id))
        if lane is None:
            return 0.0
        wait = max(lane.next_at - self.clock(), 0.0)
        return wait + len(lane.heap) * self.limits.per_chat_interval_s

    async def send(self, bot: Bot, chat_id: int, text: str, *, silent: bool, urgent: bool,
                   deadline: float) -> SendResult:
        """Send one HTML message when the limits allow; return how it ended.

        ``deadline`` (on ``clock``) is when the message stops being worth sending: a message
        still waiting then is not sent (``later``). A 429 re-sends the same message after
        ``retry_after``; other Telegram errors end it (``failed`` for this chat's refusals,
        ``retry`` otherwise).
        """
        key = (bot.token, chat_id)
        lane = self._lanes.get(key)
        if lane is None or lane.task is None or lane.task.done():
            lane = self._lanes[key] = _Lane()
            lane.task = asyncio.create_task(self._run_lane(key, lane, bot),
                                            name=f"telegram-chat-{chat_id}")
        future: asyncio.Future[SendResult] = asyncio.get_running_loop().create_future()
        heapq.heappush(lane.heap, _Item((0 if urgent else 1, next(self._seq)), chat_id, text,
                                        silent, deadline, future))
        lane.wake.set()
        return await future

    async def aclose(self) -> None:
        """Stop every lane; messages still waiting end as ``later``."""
        lanes = list(self._lanes.values())
        self._lanes.clear()
        for lane in lanes:
            if lane.task is not None:
                lane.task.cancel()
            for item in lane.heap:
                if not item.future.done():
                    item.future.set_result(SendResult("later", error="dispatcher stopped"))
        await asyncio.gather(*(lane.task for lane in lanes if lane.task is not None),
                             return_exceptions=True)

    def _window(self, bot: Bot) -> _Window:
        window = self._windows.get(bot.token)
        if window is None:
            window = self._windows[bot.token] = _Window(self.limits.overall_per_s)
        return window

    async def _run_lane(self, key: tuple[str, int], lane: _Lane, bot: Bot) -> None:
        window = self._window(bot)
        while True:
            if not lane.heap:
                lane.wake.clear()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(lane.wake.wait(), LANE_IDLE_S)
                if not lane.heap:
                    if self._lanes.get(key) is lane:
                        del self._lanes[key]
                    return
                continue
            wait = max(lane.next_at, window.paused_until) - self.clock()
            if wait > 0 and self.clock() + wait <= lane.heap[0].deadline:
                await asyncio.sleep(wait)
                continue  # a more urgent message may have arrived meanwhile
            item = heapq.heappop(lane.heap)
            if item.future.done():
                continue
            if wait > 0 or self.clock() > item.deadline:
                item.future.set_result(SendResult("later", error="no slot before the lease ends",
                                                  wait_s=max(wait, 0.0)))
                continue
            await self._send_one(lane, window, bot, item)

    async def _send_one(self, lane: _Lane, window: _Window, bot: Bot, item: _Item) -> None:
        slot = await window.acquire(self.clock)
        try:
            message = await bot.send_message(item.chat_id, item.text, parse_mode="HTML",
                                             disable_notification=item.silent)
        except RetryAfter as exc:
            self._throttled(lane, window, item.chat_id, retry_after_s(exc))
            heapq.heappush(lane.heap, item)  # the same message again, nothing lost
            return
        except (Forbidden, BadRequest, ChatMigrated) as exc:
            result = SendResult("failed", error=safe_error(exc))
        except InvalidToken as exc:
            result = SendResult("retry", error=f"Telegram refused the bot's token: "
                                               f"{safe_error(exc)}")
        except (TelegramError, OSError) as exc:
            result = SendResult("retry", error=safe_error(exc))
        else:
            result = SendResult("sent", message_id=message.message_id)
        finally:
            slot[0], slot[1] = self.clock(), 1.0
            lane.next_at = max(lane.next_at, self.clock() + self.limits.per_chat_interval_s)
        if not item.future.done():
            item.future.set_result(result)

    def _throttled(self, lane: _Lane, window: _Window, chat_id: int, pause: float) -> None:
        now = self.clock()
        lane.next_at = max(lane.next_at, now + pause)
        window.throttled.append((now, chat_id))
        while window.throttled and window.throttled[0][0] < now - 1.0:
            window.throttled.popleft()
        if len({chat for _, chat in window.throttled}) >= 2:
            window.paused_until = max(window.paused_until, now + pause)
            log.warning("telegram: flood control for the whole bot, pausing %.1f s", pause)
        else:
            log.warning("telegram: flood control for chat %d, pausing it %.1f s", chat_id, pause)


class TelegramDispatcher:
    """Deliver outbox alerts to members' Telegram chats; see the module docstring.

    Parameters
    ----------
    services
        The services facade (outbox and telegram services).
    bot_for
        Return the ``telegram.Bot`` serving a household id, or None when it has none.
    limits
        Telegram's limits and the polling period.
    """

    def __init__(self, services: Services, bot_for: Callable[[int], Bot | None],
                 limits: RateLimits = RateLimits()) -> None:
        self.services = services
        self.bot_for = bot_for
        self.limits = limits
        self.flood = FloodControl(limits)
        self.totals = DispatchReport(channel=CHANNEL)
        self._unsettled: dict[int, Alert] = {}
        # Records the database refused, in order, written when it answers again.
        self._held_deliveries: deque[_HeldDelivery] = deque()
        self._held_outcomes: deque[tuple[Alert, Delivery, datetime]] = deque()
        self._recent: dict[tuple[int, str], tuple[int, float]] = {}  # (user, content): alert
        self._batches: set[asyncio.Task[DispatchReport]] = set()

    @property
    def in_flight(self) -> int:
        """Return how many claimed alerts are not settled yet."""
        return len(self._unsettled)

    @property
    def held(self) -> int:
        """Return how many records wait for the database (deliveries and alert outcomes)."""
        return len(self._held_deliveries) + len(self._held_outcomes)

    async def run(self, stop: asyncio.Event) -> None:
        """Poll the outbox and deliver until ``stop`` is set; then give unsent alerts back."""
        log.info("telegram dispatcher started (poll every %.1f s)", self.limits.poll_s)
        try:
            while not stop.is_set():
                pause = self.limits.poll_s
                try:
                    await self.write_held()
                    await self._start_batch(now_ist())
                except Exception as exc:
                    log.warning("telegram dispatch: the outbox is out of reach (%d record(s) "
                                "held): %s", self.held, safe_error(exc))
                    pause = ERROR_PAUSE_S
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), pause)
        finally:
            await self._shutdown()

    async def dispatch_once(self, now: datetime | None = None) -> DispatchReport:
        """Claim the alerts due at ``now`` (default now) and deliver them; return the outcome."""
        batch = await self._start_batch(now or now_ist())
        return await batch if batch is not None else DispatchReport(channel=CHANNEL)

    async def _start_batch(self, now: datetime) -> asyncio.Task[DispatchReport] | None:
        room = min(CLAIM_BATCH, MAX_IN_FLIGHT - len(self._unsettled))
        if room <= 0:
            return None
        alerts = await asyncio.to_thread(self.services.outbox.claim, now, room)
        if not alerts:
            return None
        for alert in alerts:
            self._unsettled[alert.id] = alert
        batch = asyncio.create_task(self._deliver_all(alerts, now, time.monotonic()))
        self._batches.add(batch)
        batch.add_done_callback(self._batches.discard)
        return batch

    async def _deliver_all(self, alerts: list[Alert], now: datetime,
                           claimed_at: float) -> DispatchReport:
        report = DispatchReport(channel=CHANNEL, claimed=len(alerts))
        # Every plan first, then every send: the whole batch is queued in the chats' lanes
        # before the first message goes, so its urgent alerts go first.
        plans = await asyncio.gather(*(self._plan(alert, now) for alert in alerts))
        deadline = claimed_at + self.limits.lease_budget_s
        outcomes = await asyncio.gather(
            *(self._deliver(alert, plan, deadline) for alert, plan in zip(alerts, plans,
                                                                          strict=True)))
        held = 0
        for alert, delivery in zip(alerts, outcomes, strict=True):
            at = now + timedelta(seconds=time.monotonic() - claimed_at)
            part = DispatchReport(channel=CHANNEL)
            try:
                await asyncio.to_thread(self.services.outbox.record, alert, delivery, CHANNEL,
                                        at, part)
            except Exception as exc:
                if database_down(exc):  # held (still in flight) until the database answers
                    log.warning("telegram dispatch: alert %d: recording %s failed, held until "
                                "the database answers: %s", alert.id, delivery.outcome,
                                safe_error(exc))
                    self._held_outcomes.append((alert, delivery, at))
                    held += 1
                    continue
                log.error("telegram dispatch: alert %d: recording %s failed (it returns when "
                          "its claim's lease ends): %s: %s", alert.id, delivery.outcome,
                          type(exc).__name__, safe_error(exc))
            self._unsettled.pop(alert.id, None)
            _add(report, part)
        _add(self.totals, report)
        log.info("telegram dispatch: %s%s", report.summary(),
                 f"; {held} held until the database answers" if held else "")
        return report

    async def _plan(self, alert: Alert,
                    now: datetime) -> Delivery | tuple[Bot, list[PlannedDelivery]]:
        """Return one alert's bot and recipients, or its outcome when there is nothing to send."""
        bot = self.bot_for(alert.household_id)
        if bot is None:
            return Delivery.skipped(NO_BOT)
        try:
            return bot, await asyncio.to_thread(self.services.telegram.plan, alert, now)
        except Exception as exc:
            log.warning("telegram dispatch: alert %d: planning failed: %s", alert.id,
                        safe_error(exc))
            return Delivery.retry(safe_error(exc))

    async def _deliver(self, alert: Alert, plan: Delivery | tuple[Bot, list[PlannedDelivery]],
                       deadline: float) -> Delivery:
        """Deliver one alert to its planned recipients; return how the outbox row settles."""
        if isinstance(plan, Delivery):
            return plan
        bot, planned = plan
        try:
            results = await asyncio.gather(
                *(self._deliver_to(bot, alert, p, deadline) for p in planned))
            if not planned:
                return await self._settled_before(alert)
        except Exception as exc:
            log.warning("telegram dispatch: alert %d failed: %s", alert.id, safe_error(exc))
            return Delivery.retry(safe_error(exc))
        return _settle(planned, results)

    async def _deliver_to(self, bot: Bot, alert: Alert, planned: PlannedDelivery,
                          deadline: float) -> SendResult | None:
        """Send one recipient's message and record it; None for a recorded skip."""
        if planned.skip_reason is not None or planned.chat_id is None:
            await self._record_delivery(_HeldDelivery(planned, "skipped"))
            return None
        earlier = self._queued_before(alert, planned)
        if earlier is not None:
            await self._record_delivery(_HeldDelivery(planned, "skipped", None,
                                                      f"duplicate of alert {earlier}"))
            return None
        result = await self.flood.send(bot, planned.chat_id, planned.text, silent=planned.silent,
                                       urgent=alert.urgent, deadline=deadline)
        if result.status == "sent":
            await self._record_delivery(_HeldDelivery(planned, "sent", result.message_id))
        elif result.status == "failed":
            log.warning("telegram dispatch: alert %d to user %d refused: %s", alert.id,
                        planned.user_id, result.error)
            await self._record_delivery(_HeldDelivery(planned, "failed", None, result.error))
        elif result.status == "retry":
            log.warning("telegram dispatch: alert %d to user %d failed, will retry: %s",
                        alert.id, planned.user_id, result.error)
        return result

    async def _record_delivery(self, record: _HeldDelivery) -> None:
        """Record one recipient's delivery; hold it when the database refuses it.

        A message Telegram accepted must not be sent again because its record failed: the
        held record is written before anything else once the database answers.
        """
        try:
            await asyncio.to_thread(self.services.telegram.record_delivery, *record.args())
        except Exception as exc:
            held = database_down(exc)
            log.warning("telegram dispatch: alert %d to user %d: recording %s failed, %s: %s",
                        record.planned.alert_id, record.planned.user_id, record.status,
                        "held until the database answers" if held else "not kept",
                        safe_error(exc))
            if held:
                self._held_deliveries.append(record)

    async def write_held(self) -> None:
        """Write the records held while the database was away: deliveries, then outcomes.

        An undelivered alert's outcome (retry, deferral) is not written: the alert is given
        back, due at once with no attempt counted. Stops at the first failure saying the
        database is still away, keeping the rest; a record failing for another reason (a bug,
        not an outage) is logged and dropped, so it cannot stop delivery for good.

        Raises
        ------
        Exception
            What the database raised when it is still away (:func:`database_down`).
        """
        if not self.held:
            return
        deliveries = outcomes = 0
        while self._held_deliveries:
            record = self._held_deliveries[0]
            deliveries += await self._write_one(
                f"alert {record.planned.alert_id} to user {record.planned.user_id}",
                self.services.telegram.record_delivery, *record.args())
            self._held_deliveries.popleft()
        while self._held_outcomes:
            alert, delivery, at = self._held_outcomes[0]
            part = DispatchReport(channel=CHANNEL)
            if delivery.outcome in UNDELIVERED:
                outcomes += await self._write_one(f"alert {alert.id}", self._give_back, alert,
                                                  part)
            else:
                outcomes += await self._write_one(f"alert {alert.id}",
                                                  self.services.outbox.record, alert, delivery,
                                                  CHANNEL, at, part)
            self._held_outcomes.popleft()
            self._unsettled.pop(alert.id, None)
            _add(self.totals, part)
        log.info("telegram dispatch: the database answers again; wrote %d held delivery "
                 "record(s) and settled %d held alert(s)", deliveries, outcomes)

    def _give_back(self, alert: Alert, report: DispatchReport) -> None:
        report.released += self.services.outbox.release([alert], now_ist())

    @staticmethod
    async def _write_one(what: str, write: Callable[..., object], *args: object) -> int:
        """Run one held write in a thread; return 1, or 0 when it failed for good (logged).

        A failure saying the database is still away is raised (the record stays held).
        """
        try:
            await asyncio.to_thread(write, *args)
        except Exception as exc:
            if database_down(exc):
                raise
            log.error("telegram dispatch: %s: a held record failed and is dropped: %s: %s",
                      what, type(exc).__name__, safe_error(exc))
            return 0
        return 1

    def _queued_before(self, alert: Alert, planned: PlannedDelivery) -> int | None:
        """Return the alert whose same message to the same user was queued within the window.

        :meth:`~core.services.telegram.TelegramService.plan` finds duplicates already recorded;
        this finds those still on their way (two alerts of one batch).
        """
        now = time.monotonic()
        window = DEDUPE_WINDOW.total_seconds()
        for key, (_, at) in list(self._recent.items()):
            if at < now - window:
                del self._recent[key]
        key = (planned.user_id, planned.content_hash)
        earlier = self._recent.get(key)
        if earlier is not None and earlier[0] != alert.id:
            return earlier[0]
        self._recent[key] = (alert.id, now)
        return None

    async def _settled_before(self, alert: Alert) -> Delivery:
        """Settle an alert whose recipients were all recorded already (or that has none)."""
        outcomes = await asyncio.to_thread(self.services.outbox.recipient_outcomes, alert.id)
        if outcomes.get("sent"):
            return Delivery.sent()
        if outcomes.get("failed"):
            return Delivery.failed("every recipient refused the message")
        if outcomes.get("skipped"):
            return Delivery.skipped("no recipient was due a message")
        return Delivery.skipped(NO_RECIPIENT)

    async def _shutdown(self) -> None:
        """Let alerts in flight finish briefly, then give the rest back and stop the lanes.

        Held records are written first; an alert whose records cannot be written (the database
        is still away) is not given back (its lease ends first).
        """
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=STOP_GRACE_S)
        await self.flood.aclose()
        if self._batches:
            await asyncio.wait(set(self._batches), timeout=STOP_GRACE_S)
        try:
            await self.write_held()
        except Exception as exc:
            log.warning("telegram dispatcher stopping: %d held record(s) could not be written "
                        "(their alerts return when their lease ends; a member may get one "
                        "twice): %s", self.held, safe_error(exc))
        holding = {alert.id for alert, _delivery, _at in self._held_outcomes}
        holding |= {record.planned.alert_id for record in self._held_deliveries}
        left = [a for a in self._unsettled.values() if a.id not in holding]
        if left:
            try:
                released = await asyncio.to_thread(self.services.outbox.release, left, now_ist())
                log.info("telegram dispatcher stopped; %d alert(s) given back", released)
            except Exception as exc:
                log.warning("telegram dispatcher stopped; giving %d alert(s) back failed (they "
                            "return when their lease ends): %s", len(left), safe_error(exc))
        log.info("telegram dispatcher stopped: %s", self.totals.summary())


def _settle(planned: list[PlannedDelivery], results: list[SendResult | None]) -> Delivery:
    """Return the outbox outcome of one alert from its recipients' results."""
    due = [r for r in results if r is not None]
    retry = [r for r in due if r.status == "retry"]
    if retry:
        return Delivery.retry(f"{len(retry)} recipient(s) failed: {retry[0].error}")
    later = [r for r in due if r.status == "later"]
    if later:
        wait = max(r.wait_s for r in later)
        return Delivery.defer(max(wait, 1.0), f"{len(later)} message(s) wait for Telegram's "
                                               "rate limits")
    if any(r.status == "sent" for r in due):
        return Delivery.sent()
    if due:
        return Delivery.failed("; ".join(sorted({r.error or "refused" for r in due})))
    reasons = sorted({p.skip_reason for p in planned if p.skip_reason})
    return Delivery.skipped("; ".join(reasons) or NO_RECIPIENT)


def _add(total: DispatchReport, part: DispatchReport) -> None:
    """Add one report's counts (and first errors) to another."""
    for name in ("claimed", "sent", "skipped", "retried", "deferred", "failed", "released",
                 "lost"):
        setattr(total, name, getattr(total, name) + getattr(part, name))
    total.errors = (total.errors + part.errors)[-5:]
