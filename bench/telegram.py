"""Telegram alert delivery benchmark: the outbox through the real dispatcher to a fake Bot API.

Run: ``.venv/bin/python bench/telegram.py [--alerts 1000] [--chats 10] [--urgent 40]
[--postgres]``. On a temp SQLite desk (or a throwaway PostgreSQL server with ``--postgres``),
migrated and seeded with the demo household, it creates ``--chats`` members, links each one's
Telegram chat through the services (a one-time code, as the bot's ``/start CODE`` does) and:

1. **Backlog**: enqueues ``--alerts`` alerts at once (one outbox transaction; each for one
   member, round robin, so every chat gets alerts / chats of them), then runs
   :class:`jobs.telegram_dispatch.TelegramDispatcher` (real python-telegram-bot against
   :class:`tests.support.fake_bot_api.FakeBotApi` on 127.0.0.1) until every alert is settled.
   At Telegram's one message a second per chat this takes at least alerts / chats seconds:
   that is the limit, not the dispatcher.
2. **Urgent**: with the dispatcher idle (still polling), ``--urgent`` times: one critical
   alert for one member (chats in turn, so no chat's one-second limit is in the way) is
   committed and the time until the fake receives its ``sendMessage`` is measured.

Figures come from the fake's own timestamps (``time.monotonic()`` when it accepted each
``sendMessage``). The last line is one JSON object: ``alerts``, ``chats``, ``duration_s``
(dispatcher start to last message), ``ideal_s`` (the least Telegram's per-chat limit allows:
the busiest chat's messages less one, in seconds), ``messages_per_s``,
``max_per_chat_per_s`` and ``max_overall_per_s`` (most messages in any one-second window, per
chat and overall), ``min_gap_per_chat_s``, ``lost`` (alerts a member never received),
``doubled`` (messages received twice), ``not_sent`` (outbox rows not ``sent``),
``urgent_p50_s`` / ``urgent_p95_s`` / ``urgent_max_s`` (goal: p95 <= 1 s), ``backend``.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import platform
import secrets
import statistics
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from sqlalchemy import func, select

# Run as a script, this file's folder comes first on sys.path, where this module would shadow
# the python-telegram-bot package (``telegram``). Appending the folder and removing its first
# occurrence takes it out then (and is a no-op when this file is imported as bench.telegram).
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.append(str(Path(__file__).resolve().parent))
sys.path.remove(str(Path(__file__).resolve().parent))

from telegram import Bot

from bench.desk import demo_desk
from core import alerts
from core.clock import now_ist
from core.domain import Actor, ClientInfo
from core.services import Services
from db.models import AlertOutboxRow
from jobs.telegram_dispatch import TelegramDispatcher
from tests.support.fake_bot_api import DEFAULT_TOKEN, FakeBotApi, SentMessage
from tests.support.pg import PostgresServer
from tests.support.telegram_links import link_code

PASSWORD = f"Bench-{secrets.token_hex(8)}-Tg9!"  # for the bench members, never shown
CHAT_BASE = 880_000
URGENT_SPACING_S = 0.25  # between urgent alerts; with 10 chats each chat waits 2.5 s


def percentile(samples: list[float], pct: float) -> float:
    """Return the nearest-rank ``pct`` percentile of ``samples``."""
    ordered = sorted(samples)
    return ordered[min(len(ordered) - 1, max(0, round(pct / 100 * len(ordered)) - 1))]


def max_in_one_second(times: list[float]) -> int:
    """Return the most timestamps in any one-second window [t, t + 1)."""
    ordered, most, start = sorted(times), 0, 0
    for end, at in enumerate(ordered):
        while ordered[start] <= at - 1.0:
            start += 1
        most = max(most, end - start + 1)
    return most


def link_members(services: Services, admin: Actor, chats: int) -> dict[int, int]:
    """Create ``chats`` members and link each one's chat; return user id -> chat id."""
    linked = {}
    for n in range(chats):
        name = f"bench{n + 1:02d}"
        services.users.create_user(admin, name, f"Bench member {n + 1}", PASSWORD, "viewer")
        result = services.auth.login(name, PASSWORD, ClientInfo(channel="bench"))
        member = services.auth.check_session(result.session_id or "")
        code = link_code(services, member)  # the desk runs with the fake bot's token
        services.telegram.link_chat(code.code, CHAT_BASE + n, f"{name}_tg", None)
        linked[member.user_id] = CHAT_BASE + n
    return linked


def enqueue_backlog(services: Services, household_id: int, users: list[int],
                    count: int) -> None:
    """Enqueue ``count`` order alerts in one transaction, one member each, round robin."""
    at = now_ist()
    with services.db.transaction() as session:
        for n in range(count):
            alerts.enqueue(session, kind="order.filled", household_id=household_id,
                           account_id=None, severity="info", title="Order filled",
                           body=f"BUY {n % 50 + 1} INFY @ 1,500.05 (bench {n})",
                           dedupe_key=f"bench:backlog:{n}", user_id=users[n % len(users)],
                           at=at)


def enqueue_urgent(services: Services, household_id: int, user_id: int, n: int) -> float:
    """Commit one critical alert for ``user_id``; return the monotonic time of the commit."""
    with services.db.transaction() as session:
        alerts.enqueue(session, kind="risk.kill_switch", household_id=household_id,
                       account_id=None, severity="critical", title="Kill switch engaged",
                       body=f"All trading stopped (bench {n})", dedupe_key=f"bench:urgent:{n}",
                       user_id=user_id)
    return time.monotonic()


def not_sent(services: Services) -> int:
    """Return how many outbox rows are not ``sent``."""
    with services.db.reading() as session:
        return int(session.scalar(select(func.count()).select_from(AlertOutboxRow)
                                  .where(AlertOutboxRow.status != "sent")) or 0)


def backlog_figures(sent: list[SentMessage], chats: dict[int, int], count: int,
                    started: float) -> dict[str, Any]:
    """Return the backlog figures from the fake's record of accepted messages."""
    per_chat: dict[int, list[float]] = {}
    for message in sent:
        per_chat.setdefault(message.chat_id, []).append(message.at)
    users = list(chats)
    expected = {(chats[users[n % len(users)]], f"bench {n})") for n in range(count)}
    received = Counter((m.chat_id, m.text.rsplit("(", 1)[-1]) for m in sent)
    gaps = [b - a for times in per_chat.values() for a, b in itertools.pairwise(times)]
    duration = max(m.at for m in sent) - started if sent else 0.0
    return {
        "duration_s": round(duration, 2),
        "ideal_s": round(max(-(-count // len(chats)) - 1, 0), 1),
        "messages_per_s": round(len(sent) / duration, 2) if duration else 0.0,
        "max_per_chat_per_s": max((max_in_one_second(t) for t in per_chat.values()), default=0),
        "max_overall_per_s": max_in_one_second([m.at for m in sent]),
        "min_gap_per_chat_s": round(min(gaps), 3) if gaps else None,
        "lost": len(expected - set(received)),
        "doubled": sum(n - 1 for n in received.values() if n > 1),
    }


async def measure(services: Services, household_id: int, chats: dict[int, int], count: int,
                  urgent: int, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run both phases with one dispatcher; return the figures."""
    users = list(chats)
    figures: dict[str, Any] = {}
    with FakeBotApi() as fake:
        async with Bot(DEFAULT_TOKEN, base_url=fake.base_url) as bot:
            dispatcher = TelegramDispatcher(services, lambda _: bot)
            await asyncio.to_thread(enqueue_backlog, services, household_id, users, count)
            progress(f"{count} alerts enqueued for {len(users)} chats; dispatching")
            stop = asyncio.Event()
            started = time.monotonic()
            runner = asyncio.create_task(dispatcher.run(stop))
            last = 0
            while len(fake.sent) < count and not runner.done():
                await asyncio.sleep(1.0)
                if len(fake.sent) // 100 > last // 100:
                    progress(f"{len(fake.sent)} sent after {time.monotonic() - started:.0f} s")
                last = len(fake.sent)
                if time.monotonic() - started > count * 2 + 120:
                    break
            while dispatcher.in_flight and time.monotonic() - started < count * 2 + 150:
                await asyncio.sleep(0.1)  # the last alerts' rows settle
            figures.update(backlog_figures(list(fake.sent), chats, count, started))
            figures["not_sent"] = await asyncio.to_thread(not_sent, services)
            await asyncio.sleep(1.5)  # idle; every chat's one-second window has passed
            latencies = []
            for n in range(urgent):
                before = len(fake.sent)
                committed = await asyncio.to_thread(enqueue_urgent, services, household_id,
                                                    users[n % len(users)], n)
                await asyncio.to_thread(fake.wait_for, lambda b=before: len(fake.sent) > b, 10)
                latencies.append(fake.sent[before].at - committed)
                await asyncio.sleep(URGENT_SPACING_S)
            stop.set()
            await runner
    if latencies:
        figures.update(urgent=len(latencies),
                       urgent_p50_s=round(statistics.median(latencies), 3),
                       urgent_p95_s=round(percentile(latencies, 95), 3),
                       urgent_max_s=round(max(latencies), 3))
    return figures


def figures(url: str, alerts_count: int = 1000, chats: int = 10, urgent: int = 40,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Seed ``url``, link ``chats`` members and run both phases; return the figures."""
    services, admin = demo_desk(url)
    linked = link_members(services, admin, chats)
    try:
        result = asyncio.run(measure(services, admin.household_id, linked, alerts_count,
                                     urgent, progress))
    finally:
        services.db.dispose()
    return {"alerts": alerts_count, "chats": chats, **result,
            "backend": url.split(":", 1)[0].split("+", 1)[0],
            "python": platform.python_version()}


def main() -> None:
    """Parse the arguments, run, print progress and the JSON figures last."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alerts", type=int, default=1000, help="alerts in the backlog")
    parser.add_argument("--chats", type=int, default=10, help="linked members (chats)")
    parser.add_argument("--urgent", type=int, default=40, help="urgent alerts timed")
    parser.add_argument("--postgres", action="store_true", help="a PostgreSQL desk")
    args = parser.parse_args()

    def run(url: str) -> dict[str, Any]:
        return figures(url, args.alerts, args.chats, args.urgent,
                       lambda line: print(line, flush=True))

    if args.postgres:
        with PostgresServer() as server:
            server.create_database("bench_telegram")
            result = run(server.url("bench_telegram"))
    else:
        with tempfile.TemporaryDirectory() as tmp:
            result = run(f"sqlite:///{tmp}/bench.db")
    print(json.dumps(result))


if __name__ == "__main__":
    main()
