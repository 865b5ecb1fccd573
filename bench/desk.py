"""A seeded demo desk for the benchmarks: migrated, the demo household, its admin logged in."""

from __future__ import annotations

from core.config import Settings
from core.domain import Actor, ClientInfo
from core.seed import seed_demo
from core.services import Services
from db.engine import Database
from db.migrate import upgrade


def demo_desk(url: str) -> tuple[Services, Actor]:
    """Migrate and seed ``url``; return its services and the household admin (rahul)."""
    upgrade(url)
    settings = Settings(database_url=url, secret_key="bench-" + "k" * 40, bcrypt_rounds=4,
                        feed_stall_seconds=3600, paper_participation_pct=100)
    services = Services(Database(url), settings)
    logins = {login.username: login for login in seed_demo(services)}
    result = services.auth.login("rahul", logins["rahul"].password, ClientInfo(channel="bench"))
    return services, services.auth.check_session(result.session_id or "")
