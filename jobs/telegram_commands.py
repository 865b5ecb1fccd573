"""The bot's commands: each one finds the chat's member, asks the services, replies in HTML.

Every handler starts from the chat: ``services.telegram.actor_for_chat(chat_id, households)``.
A chat that is not linked (or whose member is of a household this bot does not serve) gets one
polite refusal telling how to link, and nothing else; a member whose SHER login is disabled is
told so (and may ``/unlink``), and nothing else. A group, supergroup or channel is no
member's chat: a ``/command`` for this bot there gets :data:`NOT_PRIVATE` (where to ask
instead; no data, no look-up), anything else there gets nothing. Linked members get what
their role allows, because every answer comes from the services with their actor
(:class:`core.services.telegram_replies.TelegramReplies`).

Service calls block (database, brokers), so they run in a worker thread
(:func:`asyncio.to_thread`). A :class:`~core.errors.ValidationError`,
:class:`~core.errors.PermissionDenied` or :class:`~core.errors.AuthenticationError` is shown
as its message; the database not answering as "The desk's database is not answering"; anything
else as "Something went wrong; the desk logged it". Each failure is one log line.

``/panic`` asks first: an inline keyboard Confirm / Cancel whose buttons name a one-time
nonce. Only the same chat and Telegram user may answer it, within :data:`PANIC_CONFIRM_S`;
confirming runs the risk service's panic with the member's actor (which checks the right
again) and replies with each step, unless a panic already stops what it would (an earlier
question confirmed, say): then the question says so, as /panic would; a refusal replaces
the question. A later press of an answered question only gets a popup ("Already confirmed at
10:36 IST").

The bot acts on new messages only: an edit of a sent message gets nothing (it would run the
command again). Every reply is clipped to Telegram's 4,096 characters. A reply Telegram
refuses with 429 (flood control) is sent once more after its ``retry_after`` (at most
:data:`REPLY_RETRY_MAX_S`).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from telegram import (
    BotCommand,
    CallbackQuery,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    LinkPreviewOptions,
    Update,
)
from telegram.constants import ChatType, ParseMode
from telegram.error import RetryAfter
from telegram.ext import (
    Application,
    CallbackQueryHandler,
    CommandHandler,
    ContextTypes,
    MessageHandler,
    filters,
)

from core import telegram_format as tf
from core.clock import now_ist
from core.domain import Actor
from core.errors import AuthenticationError, PermissionDenied, ValidationError
from core.services import Services
from core.services.jobs import database_down
from core.services.outbox import safe_error
from core.services.telegram import ChatLink
from core.services.telegram_replies import (
    COMMANDS,
    DISABLED,
    ECHO_CHARS,
    HOW_TO_LINK,
    REFUSAL,
    PanicPlan,
)
from jobs.telegram_dispatch import retry_after_s

log = logging.getLogger("sher.telegram.commands")

#: How long a /panic confirmation stays valid, in seconds.
PANIC_CONFIRM_S = 120.0
#: How long an answered /panic question's outcome is remembered for a late press, in seconds.
PANIC_ANSWERED_S = 24 * 3600.0
#: The longest Telegram flood-control wait (429 ``retry_after``) a reply waits before its one
#: retry; a longer one drops the reply with a log line rather than hold up the bot.
REPLY_RETRY_MAX_S = 60.0
#: Shown for an error that is not the user's to fix (the log has the details).
SOMETHING_WRONG = "Something went wrong; the desk logged it. Try again in a minute."
#: Shown when the desk's database does not answer (a restart, an outage).
DATABASE_AWAY = "The desk's database is not answering right now. Try again in a minute."
#: What a /command in a group, supergroup or channel is told ({bot}: the bot's username).
NOT_PRIVATE = ("I answer only in a private chat with me: open a chat with @{bot} and send "
               "/start CODE there.")
SHOWN_ERRORS = (ValidationError, PermissionDenied, AuthenticationError)
PANIC_PREFIX = "panic"
#: What the commands answer: new messages only. An edit of a sent message (an edited /pnl or
#: /panic) is no new request, so it gets nothing (python-telegram-bot's default handles edits).
NEW_MESSAGES = filters.UpdateType.MESSAGE
#: Commands answered by the replies method of the same name with the member's actor.
READ_ONLY = ("help", "pnl", "positions", "orders", "signals", "strategies", "status")

Context = ContextTypes.DEFAULT_TYPE


def trouble(exc: BaseException) -> str:
    """Return what a member is told when a command failed for a reason not theirs to fix."""
    return DATABASE_AWAY if database_down(exc) else SOMETHING_WRONG

NO_PREVIEW = LinkPreviewOptions(is_disabled=True)


@dataclass(frozen=True, slots=True)
class PendingPanic:
    """A /panic waiting for its Confirm: who asked, from where, what it will stop, when."""

    chat_id: int
    user_id: int
    telegram_user_id: int | None
    plan: PanicPlan
    asked_at: float  # time.monotonic()


def bot_commands() -> list[BotCommand]:
    """Return the command menu Telegram shows beside the message box."""
    return [BotCommand(name, text) for name, text in COMMANDS]


class CommandHandlers:
    """The handlers of one bot (one token) serving ``household_ids`` (None: the env bot)."""

    def __init__(self, services: Services, household_ids: frozenset[int] | None,
                 monotonic: Callable[[], float] = time.monotonic) -> None:
        """Answer over ``services`` for the households this bot serves."""
        self.services = services
        self.household_ids = household_ids
        self.monotonic = monotonic
        self.pending: dict[str, PendingPanic] = {}
        #: Answered questions: nonce -> (what a later press is told, when answered).
        self.answered: dict[str, tuple[str, float]] = {}

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Add every command, the panic buttons, the catch-all and the error handler."""
        commands: dict[str, Callable[[Update, Context], Coroutine[Any, Any, None]]] = {
            "start": self.start, "unlink": self.unlink, "panic": self.panic,
            "settings": self.settings,
            **{name: self._read_only(name) for name in READ_ONLY},
        }
        for name, callback in commands.items():
            app.add_handler(CommandHandler(name, callback, filters=NEW_MESSAGES))
        app.add_handler(CallbackQueryHandler(self.panic_button, pattern=f"^{PANIC_PREFIX}:"))
        app.add_handler(MessageHandler(NEW_MESSAGES | filters.UpdateType.CHANNEL_POST,
                                       self.anything_else))
        app.add_error_handler(self.on_error)

    # -- plumbing -----------------------------------------------------------------------------
    async def _link(self, chat_id: int) -> ChatLink:
        return await asyncio.to_thread(self.services.telegram.chat_link, chat_id,
                                       self.household_ids)

    @staticmethod
    def _refusal(link: ChatLink) -> str:
        """Return what a chat without an active member is told (HTML)."""
        return REFUSAL if link.actor is None else tf.esc(DISABLED)

    @staticmethod
    async def _send(update: Update, text: str,
                    markup: InlineKeyboardMarkup | None = None) -> None:
        """Send ``text`` (clipped to Telegram's limit); after a 429, wait and send it once more."""
        chat = update.effective_chat
        if chat is None:
            return
        text = tf.clip(text)
        try:
            await chat.send_message(text, parse_mode=ParseMode.HTML, reply_markup=markup,
                                    link_preview_options=NO_PREVIEW)
        except RetryAfter as exc:
            wait = retry_after_s(exc)
            if wait > REPLY_RETRY_MAX_S:
                raise
            log.warning("telegram: reply to chat %s hit Telegram's flood control; sending it "
                        "again in %.0f s", chat.id, wait)
            await asyncio.sleep(wait)
            await chat.send_message(text, parse_mode=ParseMode.HTML, reply_markup=markup,
                                    link_preview_options=NO_PREVIEW)

    async def _member(self, update: Update,
                      disabled_too: bool = False) -> tuple[int, Actor] | None:
        """Return the chat id and its member; refuse (and return None) for any other chat.

        ``disabled_too``: a member whose login is disabled passes too (to unlink the chat).
        """
        chat = update.effective_chat
        if chat is None:
            return None
        if chat.type != ChatType.PRIVATE:  # several people read it: no member, no data
            await self._not_private(update)
            return None
        try:
            link = await self._link(chat.id)
        except Exception as exc:  # the database is down, say: tell the user, log one line
            log.error("telegram: finding the member of chat %s failed: %s: %s", chat.id,
                      type(exc).__name__, safe_error(exc))
            await self._send(update, tf.esc(trouble(exc)))
            return None
        if link.actor is None or not (link.active or disabled_too):
            await self._send(update, self._refusal(link))
            return None
        return chat.id, link.actor

    async def _not_private(self, update: Update) -> None:
        """Answer a /command for this bot in a group or channel with :data:`NOT_PRIVATE`.

        Any other message there (a family's chatter, a channel post, an edit, a command for
        another bot) gets nothing: the bot must not answer every message of a group.
        """
        message = update.message or update.channel_post
        word = (message.text or "").split(maxsplit=1) if message is not None else []
        if not word or not word[0].startswith("/"):
            return
        bot = update.get_bot().username
        _command, _at, to = word[0].partition("@")
        if to and to.lower() != bot.lower():
            return
        await self._send(update, tf.esc(NOT_PRIVATE.format(bot=bot)))

    async def _answer(self, update: Update, what: str, reply: Callable[[Actor], str],
                      disabled_too: bool = False) -> None:
        """Reply to a linked chat with ``reply(actor)`` (in a thread); refuse any other chat."""
        member = await self._member(update, disabled_too)
        if member is not None:
            await self._send(update, await self._safely(what, member[0], reply, member[1]))

    async def _safely(self, what: str, chat_id: int, call: Callable[..., str],
                      *args: object) -> str:
        """Return ``call(*args)`` run in a thread, or the error's text for the user."""
        try:
            return await asyncio.to_thread(call, *args)
        except SHOWN_ERRORS as exc:
            return tf.esc(str(exc))
        except Exception as exc:
            log.error("telegram %s for chat %s failed: %s: %s", what, chat_id,
                      type(exc).__name__, safe_error(exc))
            return tf.esc(trouble(exc))

    async def on_error(self, update: object, context: Context) -> None:
        """Log an error no handler caught in one line (never a traceback loop, never a token)."""
        error = context.error
        log.error("telegram update failed: %s: %s", type(error).__name__,
                  safe_error(error) if error is not None else "unknown")

    # -- linking ------------------------------------------------------------------------------
    async def start(self, update: Update, context: Context) -> None:
        """``/start CODE`` links this chat to the member who created the code."""
        chat, message = update.effective_chat, update.effective_message
        if chat is None or message is None:
            return
        replies = self.services.telegram_replies
        if chat.type != ChatType.PRIVATE:  # first: a group is told nothing about linking here
            await self._send(update, tf.esc(
                "Link SHER in a private chat with the bot, not in a group: what it sends is "
                "for one member's eyes."))
            return
        if not context.args:

            def greet() -> str:
                link = self.services.telegram.chat_link(chat.id, self.household_ids)
                if link.actor is None:
                    return "Welcome to SHER. " + HOW_TO_LINK
                return replies.already_linked(link.actor) if link.active else tf.esc(DISABLED)

            await self._send(update, await self._safely("/start", chat.id, greet))
            return
        user = update.effective_user
        username = user.username if user is not None else None

        def link() -> str:
            code = " ".join(context.args or [])  # "/start DGTB RHN6": the words are one code
            actor = self.services.telegram.link_chat(code, chat.id, username,
                                                     self.household_ids)
            return replies.welcome(actor)

        await self._send(update, await self._safely("/start", chat.id, link))

    async def unlink(self, update: Update, context: Context) -> None:
        """``/unlink`` unbinds this chat: no more alerts or answers here."""
        chat = update.effective_chat
        if chat is None:
            return

        def unlink(actor: Actor) -> str:
            self.services.telegram.unlink_chat(chat.id)
            return tf.message("Telegram unlinked",
                              f"This chat no longer belongs to {tf.bold(actor.display_name)}: "
                              "no alerts will arrive here. " + HOW_TO_LINK)

        await self._answer(update, "/unlink", unlink, disabled_too=True)

    # -- read-only commands -------------------------------------------------------------------
    def _read_only(self, name: str) -> Callable[[Update, Context], Coroutine[Any, Any, None]]:
        """Return the handler of ``/name``: ``services.telegram_replies.<name>(actor)``."""

        async def handler(update: Update, context: Context) -> None:
            await self._answer(update, f"/{name}", getattr(self.services.telegram_replies, name))

        return handler

    async def settings(self, update: Update, context: Context) -> None:
        """``/settings`` shows the alert settings; ``/settings TYPE on|silent|off`` sets one."""
        args = list(context.args or [])
        replies = self.services.telegram_replies
        if not args:
            await self._answer(update, "/settings", replies.settings_text)
        elif len(args) == 2:
            await self._answer(update, "/settings",
                               lambda actor: replies.change_setting(actor, args[0], args[1]))
        else:
            await self._answer(update, "/settings", lambda _actor: tf.esc(
                f"/settings takes no words or two (TYPE and on, silent or off); got "
                f"{len(args)}: {tf.cut(' '.join(args), ECHO_CHARS)}"))

    async def anything_else(self, update: Update, context: Context) -> None:
        """Any other message: the refusal for a stranger, the command list for a member.

        An unknown ``/command`` is named as unknown, with a pointer to /help. In a group or
        channel only a /command gets an answer (:meth:`_not_private`).
        """
        message = update.effective_message
        if update.effective_chat is None or message is None:
            return
        replies = self.services.telegram_replies
        word = (message.text or "").split(maxsplit=1)[0] if message.text else ""
        title = (f"Unknown command {tf.cut(word, ECHO_CHARS)}: send /help for the list"
                 if word.startswith("/") else "I answer commands only")
        await self._answer(update, "message", lambda actor: tf.message(
            title, replies.help_lines(actor)))

    # -- panic --------------------------------------------------------------------------------
    async def panic(self, update: Update, context: Context) -> None:
        """``/panic``: say what it stops and ask Confirm / Cancel (only the asker may answer)."""
        member = await self._member(update)
        if member is None:
            return
        chat_id, actor = member
        replies = self.services.telegram_replies

        def plan_and_answer() -> tuple[PanicPlan, str | None]:
            plan = replies.panic_plan(actor)
            return plan, replies.panic_in_force(actor, plan)

        try:
            plan, in_force = await asyncio.to_thread(plan_and_answer)
        except SHOWN_ERRORS as exc:
            await self._send(update, tf.esc(str(exc)))
            return
        if in_force is not None:  # nothing left to stop: say so rather than ask again
            await self._send(update, in_force)
            return
        self._prune()
        nonce = secrets.token_urlsafe(8)
        user = update.effective_user
        self.pending[nonce] = PendingPanic(chat_id, actor.user_id,
                                           user.id if user is not None else None, plan,
                                           self.monotonic())
        keyboard = InlineKeyboardMarkup([[
            InlineKeyboardButton("Confirm panic", callback_data=f"{PANIC_PREFIX}:yes:{nonce}"),
            InlineKeyboardButton("Cancel", callback_data=f"{PANIC_PREFIX}:no:{nonce}"),
        ]])
        await self._send(update, tf.message(
            "Panic?", plan.describe(),
            f"Press Confirm within {PANIC_CONFIRM_S / 60:.0f} minutes, or Cancel."), keyboard)

    def _prune(self) -> None:
        now = self.monotonic()
        for nonce in [n for n, p in self.pending.items()
                      if now - p.asked_at > PANIC_CONFIRM_S]:
            del self.pending[nonce]
        for nonce in [n for n, (_note, at) in self.answered.items()
                      if now - at > PANIC_ANSWERED_S]:
            del self.answered[nonce]

    async def _finish(self, query: CallbackQuery, nonce: str, html_text: str,
                      later: str) -> None:
        """Replace the question with ``html_text``; a later press is only told ``later``."""
        await query.answer()
        await self._amend(query, nonce, html_text, later)

    async def panic_button(self, update: Update, context: Context) -> None:
        """Confirm or Cancel of a /panic: checked against who asked, where and when."""
        query = update.callback_query
        chat = update.effective_chat
        if query is None or chat is None:
            return
        _prefix, choice, nonce = [*str(query.data or "").split(":"), "", ""][:3]
        if nonce in self.answered:  # pressed again: the message already says what happened
            await query.answer(self.answered[nonce][0])
            return
        pending = self.pending.get(nonce)
        user_id = query.from_user.id if query.from_user is not None else None
        if pending is None:
            await self._close(query, tf.esc("This panic question is no longer open: nothing "
                                            "was done. Send /panic again if you need it."))
            return
        if pending.chat_id != chat.id or pending.telegram_user_id not in (None, user_id):
            await query.answer("This question was asked to someone else.", show_alert=True)
            return
        del self.pending[nonce]
        clock = tf.ist_clock(now_ist())
        try:
            link = await self._link(chat.id)
        except Exception as exc:  # the database is down, say: nothing was done
            log.error("telegram: panic button of chat %s failed: %s: %s", chat.id,
                      type(exc).__name__, safe_error(exc))
            await self._finish(query, nonce, tf.esc(trouble(exc) + " Nothing was done; send "
                                                    "/panic again."),
                               f"Already answered at {clock}: nothing was done")
            return
        actor = link.actor
        if actor is None or not link.active or actor.user_id != pending.user_id:
            await self._finish(query, nonce, self._refusal(link),
                               f"Already answered at {clock}: nothing was done")
            return
        if self.monotonic() - pending.asked_at > PANIC_CONFIRM_S:
            await self._finish(query, nonce, tf.esc(
                f"This panic question expired after {PANIC_CONFIRM_S / 60:.0f} minutes: "
                "nothing was done. Send /panic again if you need it."),
                f"Already expired at {clock}: nothing was done")
            return
        if choice != "yes":
            await self._finish(query, nonce, tf.esc("Panic cancelled: nothing was done."),
                               f"Already cancelled at {clock}")
            return
        if await self._in_force(query, nonce, actor, pending.plan, clock):
            return
        await self._finish(query, nonce, tf.esc(f"Panic confirmed by {actor.display_name} at "
                                                f"{clock}: cancelling and closing now…"),
                           f"Already confirmed at {clock}")
        await self._run_panic(update, query, nonce, actor, pending.plan, clock)

    async def _in_force(self, query: CallbackQuery, nonce: str, actor: Actor, plan: PanicPlan,
                        clock: str) -> bool:
        """Answer a Confirm whose panic already holds (an earlier question's, say) as /panic does.

        Return True when the question now says so (or why nothing was done): there is nothing
        to cancel or close again, and no report to send.
        """
        try:
            in_force = await asyncio.to_thread(self.services.telegram_replies.panic_in_force,
                                               actor, plan)
        except SHOWN_ERRORS as exc:
            await self._finish(query, nonce, tf.esc(f"Panic refused at {clock}: {exc}"),
                               f"Already refused at {clock}")
            return True
        except Exception as exc:  # the database is down, say: nothing was done
            log.error("telegram: checking the panics in force for %s failed: %s: %s",
                      actor.display_name, type(exc).__name__, safe_error(exc))
            await self._finish(query, nonce, tf.esc(trouble(exc) + " Nothing was done; send "
                                                    "/panic again."),
                               f"Already answered at {clock}: nothing was done")
            return True
        if in_force is None:
            return False
        await self._finish(query, nonce, in_force,
                           f"Already answered at {clock}: a panic was already active")
        return True

    async def _run_panic(self, update: Update, query: CallbackQuery, nonce: str, actor: Actor,
                         plan: PanicPlan, clock: str) -> None:
        """Run a confirmed panic; send its report, or put its refusal or failure in the question.

        The question said "cancelling and closing now…": a refusal (the member's role changed
        since /panic, say) or a failure must not leave it saying so.
        """
        try:
            report = await asyncio.to_thread(self.services.telegram_replies.run_panic, actor,
                                             plan)
        except SHOWN_ERRORS as exc:
            await self._amend(query, nonce, tf.esc(f"Panic refused at {clock}: {exc}"),
                              f"Already refused at {clock}")
            return
        except Exception as exc:
            where = update.effective_chat.id if update.effective_chat is not None else "?"
            log.error("telegram /panic for chat %s failed: %s: %s", where,
                      type(exc).__name__, safe_error(exc))
            await self._amend(query, nonce, tf.esc(
                f"Panic confirmed by {actor.display_name} at {clock}, but it failed: "
                f"{trouble(exc)} Check the Risk page in the app for what was stopped."),
                f"Already confirmed at {clock}; it failed")
            return
        await self._send(update, report)

    async def _amend(self, query: CallbackQuery, nonce: str, html_text: str,
                     later: str) -> None:
        """Replace an already answered question's text; a later press is only told ``later``."""
        self.answered[nonce] = (later, self.monotonic())
        await query.edit_message_text(tf.clip(html_text), parse_mode=ParseMode.HTML)

    @staticmethod
    async def _close(query: CallbackQuery, html_text: str) -> None:
        """Answer the button press; replace the question (and its keyboard) with ``html_text``."""
        await query.answer()
        await query.edit_message_text(tf.clip(html_text), parse_mode=ParseMode.HTML)


__all__ = ["DATABASE_AWAY", "NOT_PRIVATE", "PANIC_CONFIRM_S", "SOMETHING_WRONG", "CommandHandlers",
           "PendingPanic", "bot_commands", "trouble"]
