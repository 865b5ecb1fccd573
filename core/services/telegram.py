"""Telegram: the household's bot token, members' chat links and their notification settings.

The bot process (``jobs.telegram_bot``) and the Alerts page both call this service. A household
admin stores the bot token (encrypted, never shown again); without one the household uses
``TELEGRAM_BOT_TOKEN``. A member links their own chat with a one-time code: the page shows it,
the member sends ``/start CODE`` to the bot, :meth:`TelegramService.link_chat` binds the chat.
Delivery planning (recipients, preferences, dedupe) lives in
:mod:`core.services.telegram_delivery` and members' preferences in
:mod:`core.services.telegram_prefs`; this class includes both.
"""

from __future__ import annotations

import hashlib
import logging
import re
import secrets
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.orm import Session

from core import authz
from core.clock import now_ist, to_ist
from core.config import Settings
from core.crypto import SecretBox
from core.domain import Actor, ClientInfo
from core.errors import ConfigError, ValidationError
from core.services.household import HouseholdService
from core.services.telegram_delivery import DeliveryView, PlannedDelivery, TelegramDeliveries
from core.services.telegram_prefs import UNCHANGED, TelegramPrefs
from db.engine import Database
from db.models import (
    MemberRow,
    TelegramBotNameRow,
    TelegramBotRow,
    TelegramLinkCodeRow,
    TelegramLinkRow,
    UserRow,
)

__all__ = ["UNCHANGED", "BotInfo", "BotTarget", "ChatLink", "DeliveryView", "LinkCode",
           "LinkStatus", "PlannedDelivery", "TelegramService"]

log = logging.getLogger("sher.telegram")

#: Bot API token shape: the bot's numeric id, a colon, the secret part. ASCII digits only:
#: ``\d`` would take any script's digits (१२३...), which Telegram never issues.
TOKEN_RULE = r"^[0-9]{5,12}:[A-Za-z0-9_-]{30,64}$"  # noqa: S105 - a pattern, not a secret
_TOKEN_RE = re.compile(TOKEN_RULE)
#: Link codes use letters and digits people cannot confuse (no 0/O, 1/I/L).
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_LENGTH = 8
CODE_TTL = timedelta(minutes=10)
#: Why no link code is made while no bot serves the household.
NO_BOT_FOR_LINK = ("No Telegram bot is set up for your household, so there is no chat to link "
                   "yet: a household admin must first enter the bot's token from @BotFather "
                   "(Alerts page) or the desk must run with TELEGRAM_BOT_TOKEN set")
_CODE_RE = re.compile(f"^[{CODE_ALPHABET}]{{{CODE_LENGTH}}}$")
#: What a person may type between a code's characters (as phones copy "DGTB RHN6", "DGTB-RHN6"):
#: spaces and hyphens (also Unicode's hyphens and dashes a keyboard may put for "-").
_CODE_SEPARATORS = re.compile("[\\s\\-\u2010-\u2014]+")
_BOX_PURPOSE = "telegram-bot"
TELEGRAM_CLIENT = ClientInfo(channel="telegram")


@dataclass(frozen=True, slots=True)
class BotInfo:
    """Which bot serves the household; the token itself is never returned."""

    configured: bool
    source: str | None  # "household" (an admin stored it), "environment" or None
    bot_username: str | None
    set_at: datetime | None
    set_by: str | None


@dataclass(frozen=True, slots=True)
class LinkCode:
    """A one-time code to send to the bot as ``/start CODE``."""

    code: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class LinkStatus:
    """Whether the user's chat is linked, and to which bot."""

    linked: bool
    telegram_username: str | None
    linked_at: datetime | None
    bot_username: str | None


@dataclass(frozen=True, slots=True)
class ChatLink:
    """Who a Telegram chat belongs to, and whether their SHER login is active.

    ``actor`` None: the chat is linked to nobody this bot serves. A disabled member
    (``active`` False) gets no answers but may still unlink the chat.
    """

    actor: Actor | None
    active: bool


@dataclass(frozen=True, slots=True)
class BotTarget:
    """One bot token the bot process runs, and the households it serves.

    ``household_ids`` None: the ``TELEGRAM_BOT_TOKEN`` bot, serving every household without a
    bot of its own. The token never appears in the repr.
    """

    token: str = field(repr=False)
    household_ids: frozenset[int] | None

    def __repr__(self) -> str:
        """Show the bot's public id and households, never the token's secret part."""
        return f"BotTarget(bot_id={self.token.partition(':')[0]!r}, " \
               f"household_ids={self.household_ids!r})"


def code_hash(code: str) -> str:
    """Return the SHA-256 (hex) under which a link code is stored."""
    return hashlib.sha256(code.encode()).hexdigest()


class TelegramService(TelegramPrefs, TelegramDeliveries):
    """Bot tokens, chat links, notification preferences and alert delivery planning."""

    def __init__(self, db: Database, settings: Settings, household: HouseholdService) -> None:
        """Bind to the database; ``household`` answers who may view an account."""
        super().__init__(db, settings)
        self.household = household

    # -- bot token ---------------------------------------------------------------------------
    def _box(self) -> SecretBox:
        return SecretBox(self.settings.resolved_secret_key(), _BOX_PURPOSE)

    def _env_token(self) -> str | None:
        secret = self.settings.telegram_bot_token
        value = secret.get_secret_value().strip() if secret is not None else ""
        return value or None

    def _bot_info(self, session: Session, household_id: int) -> BotInfo:
        row = session.scalar(select(TelegramBotRow)
                             .where(TelegramBotRow.household_id == household_id))
        if row is not None:
            by = session.scalar(select(UserRow.username).where(UserRow.id == row.set_by_user_id))
            return BotInfo(True, "household", row.bot_username, to_ist(row.set_at), by)
        env = self._env_token()
        if env is not None:
            return BotInfo(True, "environment", self._bot_name(session, env), None, None)
        return BotInfo(False, None, None, None, None)

    def _require_manager(self, session: Session, actor: Actor, action: str) -> None:
        role = self._fresh_role(session, actor)
        if role not in authz.HOUSEHOLD_MANAGERS:
            self._deny(actor, action, f"household:{actor.household_id}",
                       f"Your role {role.value!r} may not configure the household's Telegram bot; "
                       "ask a household admin")

    def bot_info(self, actor: Actor) -> BotInfo:
        """Return which bot serves the actor's household (any role may read it)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            return self._bot_info(session, actor.household_id)

    def set_bot_token(self, actor: Actor, token: str) -> BotInfo:
        """Store the household's bot token, encrypted; household admins and super admins only.

        Raises
        ------
        ValidationError
            For a token not shaped like ``123456789:AA...`` (:data:`TOKEN_RULE`); the message
            gives the rule and the length, never the token.
        PermissionDenied
            For any other role.
        """
        token = token.strip()
        if not _TOKEN_RE.match(token):
            raise ValidationError(
                "A Telegram bot token is the bot's id (5-12 digits), a colon and 30-64 letters, "
                f"digits, '_' or '-' (as @BotFather gives it); got {len(token)} characters that "
                "do not match")
        with self.db.transaction() as session:
            self._require_manager(session, actor, "telegram.bot.set")
            row = session.scalar(select(TelegramBotRow)
                                 .where(TelegramBotRow.household_id == actor.household_id))
            if row is None:
                row = TelegramBotRow(household_id=actor.household_id, token_enc="")
                session.add(row)
            row.token_enc = self._box().encrypt(token, f"household:{actor.household_id}")
            row.bot_username, row.set_by_user_id, row.set_at = None, actor.user_id, now_ist()
            session.flush()
            self._audit(session, actor, "telegram.bot.set", f"household:{actor.household_id}",
                        {"bot_id": token.partition(":")[0]})
            return self._bot_info(session, actor.household_id)

    def clear_bot_token(self, actor: Actor) -> BotInfo:
        """Forget the household's own token (the environment's bot, if any, takes over)."""
        with self.db.transaction() as session:
            self._require_manager(session, actor, "telegram.bot.clear")
            removed = session.scalar(delete(TelegramBotRow).where(
                TelegramBotRow.household_id == actor.household_id)
                .returning(TelegramBotRow.id))
            self._audit(session, actor, "telegram.bot.clear", f"household:{actor.household_id}",
                        {"removed": removed is not None})
            return self._bot_info(session, actor.household_id)

    def _stored_tokens(self, session: Session) -> dict[int, str]:
        """Return {household_id: token} of the stored bots that decrypt with this SECRET_KEY."""
        tokens = {}
        for household_id, sealed in session.execute(
                select(TelegramBotRow.household_id, TelegramBotRow.token_enc)):
            try:
                tokens[household_id] = self._box().decrypt(sealed, f"household:{household_id}")
            except ConfigError:
                log.warning("Household %s's Telegram bot token does not decrypt (SECRET_KEY "
                            "changed?); an admin must enter it again", household_id)
        return tokens

    def bot_targets(self) -> list[BotTarget]:
        """Return every distinct bot token and the households it serves (system call).

        A household whose stored token equals ``TELEGRAM_BOT_TOKEN`` is served by the
        environment's bot (one poller per token).
        """
        env = self._env_token()
        with self.db.reading() as session:
            by_token: dict[str, set[int]] = {}
            for household_id, token in self._stored_tokens(session).items():
                if token != env:
                    by_token.setdefault(token, set()).add(household_id)
        targets = [BotTarget(token, frozenset(ids)) for token, ids in by_token.items()]
        if env is not None:
            targets.insert(0, BotTarget(env, None))
        return targets

    @staticmethod
    def _bot_id(token: str) -> int:
        """Return a token's public part: the bot's numeric id (before the colon)."""
        return int(token.partition(":")[0])

    def _bot_name(self, session: Session, token: str) -> str | None:
        """Return the @username getMe last reported for ``token``'s bot, if any."""
        return session.scalar(select(TelegramBotNameRow.username)
                              .where(TelegramBotNameRow.bot_id == self._bot_id(token)))

    def set_bot_username(self, token: str, username: str) -> None:
        """Record what getMe said for ``token`` (system call, for the page's "send /start")."""
        name = username.strip().lstrip("@")[:64] or None
        if name is None:
            return
        with self.db.transaction() as session:
            bot_id = self._bot_id(token)
            row = session.get(TelegramBotNameRow, bot_id)
            if row is None:
                session.add(TelegramBotNameRow(bot_id=bot_id, username=name))
            else:
                row.username, row.seen_at = name, now_ist()
            for household_id, stored in self._stored_tokens(session).items():
                if stored == token:
                    session.execute(update(TelegramBotRow)
                                    .where(TelegramBotRow.household_id == household_id)
                                    .values(bot_username=name))

    def _serves(self, session: Session, household_ids: frozenset[int] | None,
                household_id: int) -> bool:
        """Return whether the bot serving ``household_ids`` (None: the env bot) serves one."""
        if household_ids is not None:
            return household_id in household_ids
        own = self._stored_tokens(session).get(household_id)
        return own is None or own == self._env_token()

    # -- chat links --------------------------------------------------------------------------
    def create_link_code(self, actor: Actor, now: datetime | None = None) -> LinkCode:
        """Return a new one-time code linking the actor's chat (any role; 10 minutes).

        Only the code's SHA-256 is stored; the actor's earlier unused codes stop working.

        Raises
        ------
        ValidationError
            When no bot serves the actor's household (no token stored for it and no
            ``TELEGRAM_BOT_TOKEN``): a code would have no bot to be sent to.
        """
        now = now or now_ist()
        code = "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_LENGTH))
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            if not self._bot_info(session, actor.household_id).configured:
                raise ValidationError(NO_BOT_FOR_LINK)
            session.execute(delete(TelegramLinkCodeRow).where(
                TelegramLinkCodeRow.user_id == actor.user_id,
                TelegramLinkCodeRow.used_at.is_(None)))
            session.add(TelegramLinkCodeRow(user_id=actor.user_id, code_hash=code_hash(code),
                                            created_at=now, expires_at=now + CODE_TTL))
            self._audit(session, actor, "telegram.link_code", f"user:{actor.user_id}",
                        {"expires_at": (now + CODE_TTL).isoformat()})
        return LinkCode(code, to_ist(now + CODE_TTL))

    def link_chat(self, code: str, chat_id: int, telegram_username: str | None,
                  household_ids: frozenset[int] | None, now: datetime | None = None) -> Actor:
        """Bind ``chat_id`` to the user who created ``code``; return that user's actor.

        A user linking again moves to the new chat. Atomic and audited. ``code`` is read
        without its spaces and hyphens and case-insensitively ("dgtb-rhn6" is DGTBRHN6).

        Raises
        ------
        ValidationError
            For a code of the wrong shape, an unknown, expired or used code, an inactive user,
            a user of a household this bot does not serve, or a chat linked to someone else.
        """
        now = now or now_ist()
        code = _CODE_SEPARATORS.sub("", code).upper()
        if not _CODE_RE.match(code):
            raise ValidationError(
                f"A link code is {CODE_LENGTH} characters from {CODE_ALPHABET}; got "
                f"{len(code)} characters that do not match. Copy it from the Alerts page")
        with self.db.transaction() as session:
            row = session.scalar(select(TelegramLinkCodeRow)
                                 .where(TelegramLinkCodeRow.code_hash == code_hash(code)))
            if row is None:
                raise ValidationError(f"Link code {code} is not known (a newer code replaces "
                                      "older ones); create a new one on the Alerts page")
            if row.used_at is not None:
                raise ValidationError(f"Link code {code} was already used at "
                                      f"{to_ist(row.used_at):%H:%M} IST; create a new one")
            if row.expires_at <= now:
                raise ValidationError(f"Link code {code} expired at {to_ist(row.expires_at):%H:%M}"
                                      " IST (codes last 10 minutes); create a new one")
            user = session.get(UserRow, row.user_id)
            assert user is not None  # noqa: S101 - foreign key
            if not user.is_active:
                raise ValidationError(f"User {user.username!r} is not active; ask a household "
                                      "admin")
            if not self._serves(session, household_ids, user.household_id):
                raise ValidationError(f"This bot does not serve {user.username!r}'s household "
                                      f"({user.household_id}); send the code to your household's "
                                      "bot")
            other = session.scalar(select(UserRow.username).join(
                TelegramLinkRow, TelegramLinkRow.user_id == UserRow.id).where(
                TelegramLinkRow.chat_id == chat_id, TelegramLinkRow.user_id != user.id))
            if other is not None:
                raise ValidationError(f"This chat is already linked to {other!r}; one chat "
                                      "serves one person (send /unlink from it first)")
            claimed = session.scalar(update(TelegramLinkCodeRow).where(
                TelegramLinkCodeRow.id == row.id, TelegramLinkCodeRow.used_at.is_(None))
                .values(used_at=now, used_chat_id=chat_id).returning(TelegramLinkCodeRow.id))
            if claimed is None:
                raise ValidationError(f"Link code {code} was already used; create a new one")
            link = session.scalar(select(TelegramLinkRow)
                                  .where(TelegramLinkRow.user_id == user.id))
            moved_from = link.chat_id if link is not None else None
            if link is None:
                link = TelegramLinkRow(user_id=user.id, chat_id=chat_id)
                session.add(link)
            link.chat_id, link.linked_at = chat_id, now
            link.telegram_username = (telegram_username or "").lstrip("@")[:64] or None
            actor = _actor(session, user)
            self._audit(session, actor, "telegram.link", f"user:{user.id}",
                        {"chat_id": chat_id, "telegram_username": link.telegram_username,
                         "moved_from_chat_id": moved_from})
            return actor

    def unlink(self, actor: Actor) -> bool:
        """Unbind the actor's chat; return whether one was linked."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            chat = session.scalar(select(TelegramLinkRow.chat_id)
                                  .where(TelegramLinkRow.user_id == actor.user_id))
            if chat is None:
                return False
            session.execute(delete(TelegramLinkRow)
                            .where(TelegramLinkRow.user_id == actor.user_id))
            self._audit(session, actor, "telegram.unlink", f"user:{actor.user_id}",
                        {"chat_id": chat})
            return True

    def unlink_chat(self, chat_id: int) -> bool:
        """Unbind a chat (its ``/unlink`` command); return whether it was linked."""
        with self.db.transaction() as session:
            user = session.scalar(select(UserRow).join(
                TelegramLinkRow, TelegramLinkRow.user_id == UserRow.id)
                .where(TelegramLinkRow.chat_id == chat_id))
            if user is None:
                return False
            session.execute(delete(TelegramLinkRow).where(TelegramLinkRow.chat_id == chat_id))
            self._audit(session, _actor(session, user), "telegram.unlink", f"user:{user.id}",
                        {"chat_id": chat_id})
            return True

    def link_status(self, actor: Actor) -> LinkStatus:
        """Return whether the actor's chat is linked and the household's bot username."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            link = session.scalar(select(TelegramLinkRow)
                                  .where(TelegramLinkRow.user_id == actor.user_id))
            bot = self._bot_info(session, actor.household_id).bot_username
            if link is None:
                return LinkStatus(False, None, None, bot)
            return LinkStatus(True, link.telegram_username, to_ist(link.linked_at), bot)

    def chat_link(self, chat_id: int, household_ids: frozenset[int] | None) -> ChatLink:
        """Return who ``chat_id`` is linked to and whether their login is active.

        ``actor`` None when the chat is not linked or this bot (``household_ids``; None: the
        environment's bot) does not serve the user's household. A disabled user's chat keeps
        its actor with ``active`` False: the bot tells it so (no data) and lets it unlink.
        """
        with self.db.reading() as session:
            user = session.scalar(select(UserRow).join(
                TelegramLinkRow, TelegramLinkRow.user_id == UserRow.id)
                .where(TelegramLinkRow.chat_id == chat_id))
            if user is None or not self._serves(session, household_ids, user.household_id):
                return ChatLink(None, False)
            return ChatLink(_actor(session, user), bool(user.is_active))

    def actor_for_chat(self, chat_id: int, household_ids: frozenset[int] | None) -> Actor | None:
        """Return the actor of the user linked to ``chat_id`` (channel ``telegram``).

        None when the chat is not linked, its user is inactive, or this bot (``household_ids``;
        None: the environment's bot) does not serve the user's household.
        """
        link = self.chat_link(chat_id, household_ids)
        return link.actor if link.active else None

def _actor(session: Session, user: UserRow) -> Actor:
    """Return the Telegram-channel actor of a user (no web session)."""
    member_id = session.scalar(select(MemberRow.id).where(MemberRow.user_id == user.id))
    return Actor(user_id=user.id, username=user.username, display_name=user.display_name,
                 role=user.role, household_id=user.household_id, member_id=member_id,
                 session_id=None, client=TELEGRAM_CLIENT)
