"""The bot's commands: each one finds the chat's member, asks the services, replies in HTML.

Every handler starts from the chat: ``services.telegram.actor_for_chat(chat_id, households)``.
A chat that is not linked (or whose member is inactive, or of a household this bot does not
serve) gets one polite refusal telling how to link, and nothing else. Linked members get what
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
again) and replies with each step.
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
from core.services.telegram_replies import COMMANDS, HOW_TO_LINK, REFUSAL, PanicPlan

log = logging.getLogger("sher.telegram.commands")

#: How long a /panic confirmation stays valid, in seconds.
PANIC_CONFIRM_S = 120.0
#: Shown for an error that is not the user's to fix (the log has the details).
SOMETHING_WRONG = "Something went wrong; the desk logged it. Try again in a minute."
#: Shown when the desk's database does not answer (a restart, an outage).
DATABASE_AWAY = "The desk's database is not answering right now. Try again in a minute."
SHOWN_ERRORS = (ValidationError, PermissionDenied, AuthenticationError)
PANIC_PREFIX = "panic"
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

    def register(self, app: Application[Any, Any, Any, Any, Any, Any]) -> None:
        """Add every command, the panic buttons, the catch-all and the error handler."""
        commands: dict[str, Callable[[Update, Context], Coroutine[Any, Any, None]]] = {
            "start": self.start, "unlink": self.unlink, "panic": self.panic,
            "settings": self.settings,
            **{name: self._read_only(name) for name in READ_ONLY},
        }
        for name, callback in commands.items():
            app.add_handler(CommandHandler(name, callback))
        app.add_handler(CallbackQueryHandler(self.panic_button, pattern=f"^{PANIC_PREFIX}:"))
        app.add_handler(MessageHandler(filters.ALL, self.anything_else))
        app.add_error_handler(self.on_error)

    # -- plumbing -----------------------------------------------------------------------------
    async def _actor(self, chat_id: int) -> Actor | None:
        return await asyncio.to_thread(self.services.telegram.actor_for_chat, chat_id,
                                       self.household_ids)

    @staticmethod
    async def _send(update: Update, text: str,
                    markup: InlineKeyboardMarkup | None = None) -> None:
        chat = update.effective_chat
        if chat is None:
            return
        await chat.send_message(text, parse_mode=ParseMode.HTML, reply_markup=markup,
                                link_preview_options=NO_PREVIEW)

    async def _member(self, update: Update) -> tuple[int, Actor] | None:
        """Return the chat id and its member; refuse (and return None) for any other chat."""
        chat = update.effective_chat
        if chat is None:
            return None
        try:
            actor = await self._actor(chat.id)
        except Exception as exc:  # the database is down, say: tell the user, log one line
            log.error("telegram: finding the member of chat %s failed: %s: %s", chat.id,
                      type(exc).__name__, safe_error(exc))
            await self._send(update, tf.esc(trouble(exc)))
            return None
        if actor is None:
            await self._send(update, REFUSAL)
            return None
        return chat.id, actor

    async def _answer(self, update: Update, what: str,
                      reply: Callable[[Actor], str]) -> None:
        """Reply to a linked chat with ``reply(actor)`` (in a thread); refuse any other chat."""
        member = await self._member(update)
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
        if not context.args:

            def greet() -> str:
                actor = self.services.telegram.actor_for_chat(chat.id, self.household_ids)
                return "Welcome to SHER. " + HOW_TO_LINK if actor is None else replies.welcome(
                    actor)

            await self._send(update, await self._safely("/start", chat.id, greet))
            return
        if chat.type != ChatType.PRIVATE:
            await self._send(update, tf.esc(
                "Link SHER in a private chat with the bot, not in a group: what it sends is "
                "for one member's eyes."))
            return
        user = update.effective_user
        username = user.username if user is not None else None

        def link() -> str:
            actor = self.services.telegram.link_chat(context.args[0] if context.args else "",
                                                     chat.id, username, self.household_ids)
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

        await self._answer(update, "/unlink", unlink)

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
                f"{len(args)}: {' '.join(args)[:60]}"))

    async def anything_else(self, update: Update, context: Context) -> None:
        """Any other message: the refusal for a stranger, the command list for a member."""
        if update.effective_chat is None or update.effective_message is None:
            return
        replies = self.services.telegram_replies
        await self._answer(update, "message", lambda actor: tf.message(
            "I answer commands only", replies.help_lines(actor)))

    # -- panic --------------------------------------------------------------------------------
    async def panic(self, update: Update, context: Context) -> None:
        """``/panic``: say what it stops and ask Confirm / Cancel (only the asker may answer)."""
        member = await self._member(update)
        if member is None:
            return
        chat_id, actor = member
        try:
            plan = await asyncio.to_thread(self.services.telegram_replies.panic_plan, actor)
        except SHOWN_ERRORS as exc:
            await self._send(update, tf.esc(str(exc)))
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

    async def panic_button(self, update: Update, context: Context) -> None:
        """Confirm or Cancel of a /panic: checked against who asked, where and when."""
        query = update.callback_query
        chat = update.effective_chat
        if query is None or chat is None:
            return
        _prefix, choice, nonce = [*str(query.data or "").split(":"), "", ""][:3]
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
        try:
            actor = await self._actor(chat.id)
        except Exception as exc:  # the database is down, say: nothing was done
            log.error("telegram: panic button of chat %s failed: %s: %s", chat.id,
                      type(exc).__name__, safe_error(exc))
            await self._close(query, tf.esc(trouble(exc) + " Nothing was done; send /panic "
                                            "again."))
            return
        if actor is None or actor.user_id != pending.user_id:
            await self._close(query, REFUSAL)
            return
        if self.monotonic() - pending.asked_at > PANIC_CONFIRM_S:
            await self._close(query, tf.esc(
                f"This panic question expired after {PANIC_CONFIRM_S / 60:.0f} minutes: "
                "nothing was done. Send /panic again if you need it."))
            return
        if choice != "yes":
            await self._close(query, tf.esc("Panic cancelled: nothing was done."))
            return
        await self._close(query, tf.esc(f"Panic confirmed by {actor.display_name} at "
                                        f"{tf.ist_clock(now_ist())}: cancelling and closing "
                                        "now…"))
        report = await self._safely("/panic", chat.id, self.services.telegram_replies.run_panic,
                                    actor, pending.plan)
        await self._send(update, report)

    @staticmethod
    async def _close(query: CallbackQuery, html_text: str) -> None:
        """Answer the button press; replace the question (and its keyboard) with ``html_text``."""
        await query.answer()
        await query.edit_message_text(html_text, parse_mode=ParseMode.HTML)


__all__ = ["DATABASE_AWAY", "PANIC_CONFIRM_S", "SOMETHING_WRONG", "CommandHandlers",
           "PendingPanic", "bot_commands", "trouble"]
