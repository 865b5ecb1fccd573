"""``python -m jobs.telegram_bot``: the Telegram bot process, beside the worker.

One asyncio loop runs:

* one python-telegram-bot :class:`~telegram.ext.Application` (long polling) per distinct bot
  token (``services.telegram.bot_targets()``: the ``TELEGRAM_BOT_TOKEN`` bot serves every
  household without a token of its own; a household's own token gets its own bot), each with
  the commands of :mod:`jobs.telegram_commands`. The Bot API base URL is
  ``TELEGRAM_BASE_URL`` (tests point it at a fake server on 127.0.0.1); as in PTB it may hold
  ``{token}``, else the token is appended;
* the re-check of the targets every :data:`RECHECK_S` seconds: a token added, changed or
  cleared starts or stops its Application. With no token at all the process idles, saying so
  once. A token Telegram refuses (401, at start or later: each re-check asks getMe) or a
  network failure at start is logged in one line and retried with a growing wait
  (:data:`RETRY_BASE_S` doubling up to :data:`RETRY_CAP_S`); the token is never logged (a
  filter also blanks tokens in every log line of the process);
* the outbox dispatcher for the Telegram channel (:mod:`jobs.telegram_dispatch`) when
  ``ALERT_CHANNEL=telegram``; the worker then leaves delivery to this process;
* the worker watch (:class:`core.services.worker.WorkerWatch`) every :data:`WATCH_S` seconds:
  a heartbeat older than 60 s writes one ``worker.down`` alert per household per down episode
  (named by the last heartbeat), and a ``worker.up`` when it beats again. That is why the bot
  runs beside the worker and not inside it.

SIGTERM and SIGINT stop everything cleanly (polling stopped, Applications shut down).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

# python-telegram-bot warns on every RetryAfter unless its timedelta periods are opted into.
os.environ.setdefault("PTB_TIMEDELTA", "true")

from telegram import Bot
from telegram.error import InvalidToken, TelegramError
from telegram.ext import Application, ApplicationBuilder

from core.errors import ConfigError
from core.services import Services, build_services
from core.services.outbox import safe_error
from core.services.telegram import BotTarget
from core.services.worker import WorkerWatch
from jobs.telegram_commands import CommandHandlers, bot_commands

log = logging.getLogger("sher.telegram")

#: Seconds between two reads of the bot tokens (added, changed, cleared).
RECHECK_S = 30.0
#: Seconds between two looks at the worker's heartbeat.
WATCH_S = 15.0
#: Wait after a bot's first failed start; it doubles per failure up to RETRY_CAP_S.
RETRY_BASE_S = 30.0
RETRY_CAP_S = 600.0
#: Long-poll timeout of getUpdates, seconds.
POLL_TIMEOUT_S = 10.0
#: Seconds the outbox dispatcher gets to finish and give unsent alerts back at stop.
DISPATCH_STOP_S = 15.0
#: Polling errors of one bot are logged at most once in this many seconds.
POLL_ERROR_LOG_S = 300.0
_TOKEN_RE = re.compile(r"\d{5,}:[A-Za-z0-9_-]{30,}")

App = Application[Any, Any, Any, Any, Any, Any]


class RedactTokens(logging.Filter):
    """Blank Telegram bot tokens in a log record's message and traceback (PTB and httpx put
    the token in URLs and in some error texts)."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record with tokens replaced by ``<token>``; always keep it."""
        message = record.getMessage()
        if _TOKEN_RE.search(message):
            record.msg, record.args = _TOKEN_RE.sub("<token>", message), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = _TOKEN_RE.sub(
                "<token>", logging.Formatter().formatException(record.exc_info))
        return True


def target_label(target: BotTarget) -> str:
    """Return how logs name a bot without its token."""
    if target.household_ids is None:
        return "the TELEGRAM_BOT_TOKEN bot"
    ids = ", ".join(str(i) for i in sorted(target.household_ids))
    return f"the bot of household {ids}"


class BotRunner:
    """One token's Application: start (getMe, commands menu, polling), stop."""

    def __init__(self, services: Services, target: BotTarget, base_url: str,
                 poll_timeout: float = POLL_TIMEOUT_S) -> None:
        """Prepare (not start) the bot of ``target``."""
        self.services = services
        self.target = target
        self.base_url = base_url
        self.poll_timeout = poll_timeout
        self.handlers = CommandHandlers(services, target.household_ids)
        self.app: App | None = None
        self._poll_error_logged_at: float | None = None

    @property
    def label(self) -> str:
        """Return the bot's name for logs (no token)."""
        return target_label(self.target)

    @property
    def bot(self) -> Bot | None:
        """Return the running bot, or None before a successful start."""
        return self.app.bot if self.app is not None else None

    def retarget(self, target: BotTarget) -> None:
        """Serve another set of households with the same token (no restart)."""
        self.target = target
        self.handlers.household_ids = target.household_ids

    async def start(self) -> None:
        """Connect (getMe), record the bot's username, set its menu and start polling.

        Raises
        ------
        TelegramError
            The token was refused (:class:`~telegram.error.InvalidToken`) or Telegram could
            not be reached; nothing is left running.
        """
        app = (ApplicationBuilder().token(self.target.token).base_url(self.base_url)
               .job_queue(None).build())
        self.handlers.register(app)
        try:
            await app.initialize()
        except BaseException:
            await app.bot.shutdown()  # initialize opened the HTTP clients before getMe failed
            raise
        try:
            username = app.bot.username
            await asyncio.to_thread(self.services.telegram.set_bot_username, self.target.token,
                                    username)
            await app.bot.set_my_commands(bot_commands())
            await app.start()
            assert app.updater is not None  # noqa: S101 - the builder makes one
            await app.updater.start_polling(timeout=timedelta(seconds=self.poll_timeout),
                                            error_callback=self._polling_error)
        except BaseException:
            await _stop_app(app)
            raise
        self.app = app
        log.info("%s (@%s) is polling for %s", self.label, username,
                 "every household without its own bot" if self.target.household_ids is None
                 else "its household")

    def _polling_error(self, error: TelegramError) -> None:
        """Log a polling failure once per POLL_ERROR_LOG_S (PTB retries it by itself)."""
        now = time.monotonic()
        if (self._poll_error_logged_at is None
                or now - self._poll_error_logged_at > POLL_ERROR_LOG_S):
            self._poll_error_logged_at = now
            log.warning("%s: polling failed (%s: %s); python-telegram-bot retries it",
                        self.label, type(error).__name__, safe_error(error))

    async def token_refused(self) -> bool:
        """Ask Telegram who the bot is (getMe); return True when it now refuses the token.

        Polling gives up on a revoked token after one logged error; this check, made at every
        re-read of the tokens, is how the process notices and retries with its backoff. A
        network failure is not a refusal (polling retries it by itself).
        """
        if self.app is None:
            return False
        try:
            await self.app.bot.get_me()
        except InvalidToken:
            return True
        except TelegramError as exc:
            self._polling_error(exc)
        return False

    async def stop(self) -> None:
        """Stop polling and shut the Application down."""
        if self.app is not None:
            app, self.app = self.app, None
            await _stop_app(app)
            log.info("%s stopped", self.label)


async def _stop_app(app: App) -> None:
    if app.updater is not None and app.updater.running:
        await app.updater.stop()
    if app.running:
        await app.stop()
    await app.shutdown()
    await app.bot.shutdown()


class TelegramBotProcess:
    """The bot process's loop: bots per token, the dispatcher, the worker watch."""

    def __init__(self, services: Services, *, recheck_s: float = RECHECK_S,
                 watch_s: float = WATCH_S, retry_base_s: float = RETRY_BASE_S,
                 poll_timeout: float = POLL_TIMEOUT_S,
                 dispatcher_factory: Callable[[TelegramBotProcess], Any] | None = None) -> None:
        """Run over ``services``; the intervals are seconds (tests shorten them)."""
        self.services = services
        self.recheck_s = recheck_s
        self.watch_s = watch_s
        self.retry_base_s = retry_base_s
        self.poll_timeout = poll_timeout
        self.runners: dict[str, BotRunner] = {}
        self.targets: list[BotTarget] = []
        self.failures: dict[str, tuple[int, float]] = {}  # token -> (failures, retry at)
        self.watch = WorkerWatch(services.worker)
        self.dispatcher_factory = dispatcher_factory or _default_dispatcher
        self.dispatcher: Any = None
        self._dispatch_task: asyncio.Task[Any] | None = None
        self._dispatch_stop = asyncio.Event()
        self._idle_said = False

    # -- bots -------------------------------------------------------------------------------
    def bot_for(self, household_id: int) -> Bot | None:
        """Return the running bot serving ``household_id`` (its own, else the env bot).

        None when that bot is not running (its token failed, or there is none).
        """
        own = next((t.token for t in self.targets
                    if t.household_ids is not None and household_id in t.household_ids), None)
        env = next((t.token for t in self.targets if t.household_ids is None), None)
        runner = self.runners.get(own or env or "")
        return runner.bot if runner is not None else None

    async def sync(self) -> None:
        """Start, retarget or stop bots to match the tokens stored now."""
        targets = await asyncio.to_thread(self.services.telegram.bot_targets)
        self.targets = targets
        wanted = {t.token: t for t in targets}
        if not wanted and not self.runners:
            if not self._idle_said:
                log.info("no Telegram bot is configured (no TELEGRAM_BOT_TOKEN, no household "
                         "token); checking again every %.0f s", self.recheck_s)
                self._idle_said = True
        else:
            self._idle_said = False
        for token in [t for t in self.runners if t not in wanted]:
            await self.runners.pop(token).stop()
        self.failures = {t: f for t, f in self.failures.items() if t in wanted}
        for token, target in wanted.items():
            runner = self.runners.get(token)
            if runner is not None and await runner.token_refused():
                await self.runners.pop(token).stop()
                self._failed(target, runner.label, InvalidToken("Unauthorized"))
            elif runner is not None:
                runner.retarget(target)
            else:
                await self._start(target)

    async def _start(self, target: BotTarget) -> None:
        _count, retry_at = self.failures.get(target.token, (0, 0.0))
        if time.monotonic() < retry_at:
            return
        runner = BotRunner(self.services, target, self.services.settings.telegram_base_url,
                           self.poll_timeout)
        try:
            await runner.start()
        except Exception as exc:
            self._failed(target, runner.label, exc)
            return
        self.failures.pop(target.token, None)
        self.runners[target.token] = runner

    def _failed(self, target: BotTarget, label: str, exc: Exception) -> None:
        """Log a bot's failure in one line (no token) and set its next try, doubling the wait."""
        count, _retry_at = self.failures.get(target.token, (0, 0.0))
        wait = min(self.retry_base_s * 2 ** count, RETRY_CAP_S)
        self.failures[target.token] = (count + 1, time.monotonic() + wait)
        why = ("Telegram refused the token (401 Unauthorized): check it on the Alerts page or "
               "TELEGRAM_BOT_TOKEN" if isinstance(exc, InvalidToken)
               else f"{type(exc).__name__}: {safe_error(exc)}")
        log.warning("%s is not running: %s; trying again in %.0f s", label, why, wait)

    # -- the loop ---------------------------------------------------------------------------
    async def run(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; then stop the dispatcher and every bot."""
        next_sync = next_watch = 0.0
        try:
            while not stop.is_set():
                now = time.monotonic()
                if now >= next_sync:
                    await self._guarded("reading the bot tokens", self.sync)
                    await self._guarded("starting the outbox dispatcher",
                                        self._ensure_dispatcher)
                    next_sync = time.monotonic() + self.recheck_s
                if now >= next_watch:
                    await self._guarded("watching the worker",
                                        lambda: asyncio.to_thread(self.watch.check))
                    next_watch = time.monotonic() + self.watch_s
                wait = max(0.05, min(next_sync, next_watch) - time.monotonic())
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), wait)
        finally:
            await self._stop_dispatcher()
            for runner in list(self.runners.values()):
                await self._guarded(f"stopping {runner.label}", runner.stop)
            self.runners.clear()

    @staticmethod
    async def _guarded(what: str, step: Callable[[], Awaitable[Any]]) -> None:
        """Run one step; a failure (database down ...) is one log line, the loop goes on."""
        try:
            await step()
        except Exception as exc:
            log.error("telegram bot: %s failed: %s: %s", what, type(exc).__name__,
                      safe_error(exc))

    async def _ensure_dispatcher(self) -> None:
        """Start the outbox dispatcher once, when alerts go to Telegram."""
        if self.services.settings.alert_channel != "telegram" or self._dispatch_task is not None:
            return
        self.dispatcher = self.dispatcher_factory(self)
        if self.dispatcher is None:
            return
        self._dispatch_stop = asyncio.Event()
        self._dispatch_task = asyncio.create_task(self.dispatcher.run(self._dispatch_stop),
                                                  name="telegram-outbox")
        log.info("delivering alerts to Telegram (ALERT_CHANNEL=telegram)")

    async def _stop_dispatcher(self) -> None:
        """Stop the dispatcher: alerts in flight finish briefly, the rest go back."""
        task, self._dispatch_task = self._dispatch_task, None
        if task is None:
            return
        self._dispatch_stop.set()
        try:
            await asyncio.wait_for(task, timeout=DISPATCH_STOP_S)
        except TimeoutError:
            log.warning("telegram outbox dispatcher did not stop within %.0f s; cancelled",
                        DISPATCH_STOP_S)
        except Exception as exc:
            log.error("telegram outbox dispatcher failed: %s: %s", type(exc).__name__,
                      safe_error(exc))


def _default_dispatcher(process: TelegramBotProcess) -> Any:
    """Return the outbox dispatcher (:mod:`jobs.telegram_dispatch`) over the process's bots."""
    from jobs.telegram_dispatch import TelegramDispatcher

    return TelegramDispatcher(process.services, process.bot_for)


async def _serve(services: Services) -> None:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    log.info("telegram bot process started (Bot API at %s)",
             _TOKEN_RE.sub("<token>", services.settings.telegram_base_url))
    await TelegramBotProcess(services).run(stop)
    log.info("telegram bot process stopped")


def configure_logging() -> None:
    """Log one line per event, tokens blanked, no per-request lines from httpx."""
    logging.basicConfig(level=logging.INFO,
                        format="%(asctime)s %(name)s %(levelname)s %(message)s")
    for handler in logging.getLogger().handlers:
        handler.addFilter(RedactTokens())
    logging.getLogger("httpx").setLevel(logging.WARNING)
    logging.getLogger("httpcore").setLevel(logging.WARNING)
    logging.getLogger("telegram").setLevel(logging.WARNING)


def main() -> int:
    """Entry point: run until SIGTERM or SIGINT; return the exit code."""
    configure_logging()
    try:
        services = build_services()
    except ConfigError as exc:
        print(f"sher telegram bot: {exc}", file=sys.stderr)
        return 1
    try:
        asyncio.run(_serve(services))
    finally:
        services.db.dispose()
    return 0


if __name__ == "__main__":
    sys.exit(main())
