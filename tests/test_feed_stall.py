"""The stalled-feed alert: once per stall episode, only while the market should be ticking."""

from __future__ import annotations

from datetime import datetime, timedelta

import pytest
from sqlalchemy import func, select, text

from core.clock import IST
from core.services import Services
from core.services.feed import FeedService
from db.models import AlertOutboxRow, HouseholdRow
from tests.conftest import make_settings
from tests.test_feed import Clock, load_sample

THURSDAY = datetime(2026, 11, 19, 10, 0, tzinfo=IST)  # an NSE trading day
REPUBLIC_DAY = datetime(2026, 1, 26, 11, 0, tzinfo=IST)  # a Monday, an NSE holiday
SATURDAY = datetime(2026, 11, 21, 11, 0, tzinfo=IST)
LIMIT = 15


@pytest.fixture
def sample_db(services: Services) -> Services:
    load_sample(services)
    return services


def feed_at(services: Services, start: datetime, **settings: object) -> tuple[FeedService, Clock]:
    clock = Clock(start)
    url = services.settings.database_url
    options = {"feed_stall_seconds": LIMIT, **settings}
    return FeedService(services.db, make_settings(url, **options), clock=clock), clock


def alerts_of(services: Services, kind: str) -> list[AlertOutboxRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AlertOutboxRow).where(AlertOutboxRow.kind == kind)
                                    .order_by(AlertOutboxRow.id)))


def households(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalar(select(func.count()).select_from(HouseholdRow)) or 0


def test_a_ticking_feed_raises_no_alert_up_to_the_threshold(sample_db: Services) -> None:
    feed, clock = feed_at(sample_db, THURSDAY)
    feed.step()
    feed.step(clock.tick(1))
    check = feed.check_stalled(clock.now + timedelta(seconds=LIMIT))
    assert check.watched and not check.stalled and check.silent_seconds == LIMIT
    assert alerts_of(sample_db, "feed_stalled") == []


def test_a_stall_alerts_once_per_household_however_long_it_lasts(sample_db: Services) -> None:
    feed, clock = feed_at(sample_db, THURSDAY)
    feed.step()
    last_tick = feed.step(clock.tick(1)).last_tick_at
    first = feed.check_stalled(clock.now + timedelta(seconds=LIMIT + 1))
    assert first.stalled and first.since == last_tick and first.alerts == households(sample_db)
    for later in (30, 300, 3600):
        assert feed.check_stalled(clock.now + timedelta(seconds=later)).alerts == 0
    restarted, _ = feed_at(sample_db, THURSDAY)  # a restarted worker finds the same episode
    assert restarted.check_stalled(clock.now + timedelta(seconds=90)).alerts == 0
    rows = alerts_of(sample_db, "feed_stalled")
    assert len(rows) == households(sample_db) >= 1
    assert {(r.account_id, r.severity, r.status) for r in rows} == {(None, "warning", "pending")}
    assert "10:00:01" in rows[0].title and f"FEED_STALL_SECONDS={LIMIT}" in rows[0].body


def test_ticks_resuming_end_the_episode_and_a_new_stall_alerts_again(sample_db) -> None:
    feed, clock = feed_at(sample_db, THURSDAY)
    feed.step()
    assert feed.check_stalled(clock.tick(20)).stalled
    feed.step(clock.tick(1))  # ticks resume
    recovered = feed.check_stalled(clock.tick(1))
    assert not recovered.stalled and recovered.recoveries == households(sample_db)
    assert feed.check_stalled(clock.tick(1)).recoveries == 0  # one note per episode
    again = feed.check_stalled(clock.tick(LIMIT))
    assert again.stalled and again.alerts == households(sample_db)
    assert len(alerts_of(sample_db, "feed_stalled")) == 2 * households(sample_db)
    notes = alerts_of(sample_db, "feed_recovered")
    assert len(notes) == households(sample_db) and notes[0].severity == "info"


def test_the_silence_counts_from_the_open_after_a_night_without_ticks(sample_db) -> None:
    feed, clock = feed_at(sample_db, THURSDAY.replace(hour=15, minute=29, second=50))
    feed.step()
    assert not feed.check_stalled(clock.tick(60)).watched  # 15:30:50: the market has closed
    friday_open = datetime(2026, 11, 20, 9, 15, tzinfo=IST)
    assert not feed.check_stalled(friday_open - timedelta(minutes=5)).watched
    early = feed.check_stalled(friday_open + timedelta(seconds=LIMIT))
    assert early.watched and not early.stalled and early.since == friday_open
    late = feed.check_stalled(friday_open + timedelta(seconds=LIMIT + 1))
    assert late.stalled and late.alerts == households(sample_db)


@pytest.mark.parametrize(("moment", "settings", "reason"), [
    (THURSDAY.replace(hour=8), {}, "outside market hours"),
    (THURSDAY.replace(hour=16), {}, "outside market hours"),
    (REPUBLIC_DAY, {}, "not an NSE trading day"),
    (SATURDAY, {}, "not an NSE trading day"),
    (THURSDAY, {"feed_mode": "off"}, "FEED_MODE is off"),
])
def test_no_alert_outside_market_hours_on_holidays_or_with_the_feed_off(
    sample_db: Services, moment: datetime, settings: dict[str, object], reason: str,
) -> None:
    feed, _ = feed_at(sample_db, moment - timedelta(hours=2), **settings)
    feed.step()  # the last tick was two hours ago
    check = feed.check_stalled(moment)
    assert not check.watched and not check.stalled and reason in check.reason
    assert alerts_of(sample_db, "feed_stalled") == []


def test_a_feed_that_never_ran_is_stalled_once_the_market_has_been_open_a_while(
    services: Services,
) -> None:
    feed, _ = feed_at(services, THURSDAY)
    check = feed.check_stalled(THURSDAY)
    assert check.stalled and check.reason == "no feed status yet"
    assert len(alerts_of(services, "feed_stalled")) == households(services)


def test_a_database_error_is_logged_and_reported_not_raised(
    sample_db: Services, caplog: pytest.LogCaptureFixture,
) -> None:
    feed, clock = feed_at(sample_db, THURSDAY)
    with sample_db.db.transaction() as session:
        session.execute(text("DROP TABLE feed_status"))
    check = feed.check_stalled(clock.now)
    assert check.watched and not check.stalled and check.reason.startswith("check failed")
    assert "could not check the market feed for a stall" in caplog.text


def test_the_status_the_step_just_wrote_spares_a_read_while_the_feed_ticks(
        sample_db: Services) -> None:
    from sqlalchemy import event

    feed, clock = feed_at(sample_db, THURSDAY)
    feed.step()
    state = feed.step(clock.tick(1))
    statements: list[str] = []
    engine = sample_db.db.engine
    listener = lambda *args: statements.append(args[2])  # noqa: E731 - the statement text
    event.listen(engine, "before_cursor_execute", listener)
    try:
        ticking = feed.check_stalled(clock.now + timedelta(seconds=LIMIT), state)
        read_while_ticking = len(statements)
        stalled = feed.check_stalled(clock.now + timedelta(seconds=LIMIT + 1), state)
    finally:
        event.remove(engine, "before_cursor_execute", listener)
    assert ticking.watched and not ticking.stalled and read_while_ticking == 0
    assert stalled.stalled and len(statements) > 0  # a stall is judged on the stored status
    assert len(alerts_of(sample_db, "feed_stalled")) == households(sample_db)
