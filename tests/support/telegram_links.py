"""Link codes for tests, made the way a desk with a Telegram bot makes them."""

from __future__ import annotations

from datetime import datetime

from pydantic import SecretStr

from core.domain import Actor
from core.services import Services
from core.services.telegram import LinkCode
from tests.support.fake_bot_api import DEFAULT_TOKEN


def link_code(services: Services, actor: Actor, now: datetime | None = None,
              token: str = DEFAULT_TOKEN) -> LinkCode:
    """Return a one-time code linking ``actor``'s chat, as the Alerts page's Connect makes it.

    The desk refuses a code while no bot serves the household. A desk whose members link their
    chats runs with ``TELEGRAM_BOT_TOKEN`` (the setting the app shares with the bot process):
    when no bot serves ``actor``'s household, the desk's Telegram service is given ``token`` as
    that setting first. A household's own stored bot is left as it is.
    """
    telegram = services.telegram
    if not telegram.bot_info(actor).configured:
        telegram.settings = telegram.settings.model_copy(
            update={"telegram_bot_token": SecretStr(token)})
    return telegram.create_link_code(actor, now=now)
