"""The alert outbox's delivery: claims, outcomes, retries, concurrency; session alerts; the jobs."""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import Counter
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from alembic import command
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from sqlalchemy import column, func, insert, select, table, update

from core import alerts
from core.alerts import Alert
from core.clock import IST, now_ist, to_ist
from core.domain import Actor
from core.errors import ConfigError, ValidationError
from core.services import Services
from core.services import outbox as outbox_module
from core.services.jobs import JobResult
from core.services.outbox import CLAIM_LEASE, Delivery, OutboxService
from db.base import UTCDateTime
from db.engine import Database
from db.migrate import alembic_config
from db.models import (
    AlertOutboxRow,
    AuditRow,
    HouseholdRow,
    JobOutcome,
    JobRunRow,
    SessionRow,
    UserRow,
)
from jobs.alert_jobs import AlertJobs
from jobs.worker import Worker
from tests.conftest import make_settings
from tests.support.pg import PostgresServer

Login = Callable[[str], Actor]
TOKEN = "123456789:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsawQ"  # a fake bot token


class FakeChannel:
    """Answers each send from a script (a Delivery or an exception), then sends."""

    name = "fake"

    def __init__(self, *answers: Delivery | Exception, delay_s: float = 0.0) -> None:
        self.answers = list(answers)
        self.calls: list[int] = []
        self.delay_s = delay_s
        self._lock = threading.Lock()

    def send(self, alert: Alert) -> Delivery:
        if self.delay_s:
            time.sleep(self.delay_s)
        with self._lock:
            self.calls.append(alert.id)
            answer = self.answers.pop(0) if self.answers else Delivery.sent()
        if isinstance(answer, Exception):
            raise answer
        return answer


def _outbox(services: Services, channel: FakeChannel | None = None,
            **settings: object) -> OutboxService:
    values: dict[str, object] = {"alert_channel": "fake" if channel else "log", **settings}
    return OutboxService(services.db, make_settings(services.db.url, **values),
                         [channel] if channel else [])


def _household(services: Services) -> int:
    with services.db.transaction() as session:
        return session.scalars(select(HouseholdRow.id).order_by(HouseholdRow.id)).first() or 0


def _enqueue(services: Services, count: int = 1, severity: str = "info",
             prefix: str = "test", at: datetime | None = None) -> list[int]:
    household = _household(services)
    with services.db.transaction() as session:
        for n in range(count):
            assert alerts.enqueue(session, kind="test.alert", household_id=household,
                                  account_id=None, severity=severity, title=f"{prefix} {n}",
                                  body="body", dedupe_key=f"{prefix}:{n}", at=at)
        return list(session.scalars(
            select(AlertOutboxRow.id).where(AlertOutboxRow.dedupe_key.like(f"{prefix}:%"))
            .order_by(AlertOutboxRow.id)))


def _row(services: Services, alert_id: int) -> AlertOutboxRow:
    with services.db.transaction() as session:
        row = session.get(AlertOutboxRow, alert_id)
        assert row is not None
        return row


# -- dispatch --------------------------------------------------------------------------------


def test_dispatch_sends_each_due_alert_once_urgent_first_and_records_the_delivery(
    services: Services,
) -> None:
    plain = _enqueue(services, 2, prefix="plain")
    urgent = _enqueue(services, 1, severity="critical", prefix="urgent")
    channel = FakeChannel()
    outbox = _outbox(services, channel)
    now = now_ist()

    report = outbox.dispatch(now, limit=10)
    again = outbox.dispatch(now + timedelta(minutes=5), limit=10)

    assert (report.claimed, report.sent) == (3, 3)
    assert channel.calls == urgent + plain
    assert (again.claimed, again.sent) == (0, 0)
    row = _row(services, plain[0])
    assert (row.status, row.attempts, row.channel, row.next_attempt_at, row.last_error) == (
        "sent", 1, "fake", None, None)
    assert row.delivered_at == now
    assert report.summary() == "3 alert(s) via fake: 3 sent"


def test_dispatch_takes_at_most_limit_alerts_and_leaves_the_rest_due(services: Services) -> None:
    ids = _enqueue(services, 5)
    channel = FakeChannel()
    outbox = _outbox(services, channel)

    first = outbox.dispatch(limit=2)
    second = outbox.dispatch(limit=10)

    assert (first.sent, second.sent) == (2, 3)
    assert sorted(channel.calls) == ids


def test_an_alert_not_yet_due_waits(services: Services) -> None:
    later = now_ist() + timedelta(minutes=10)
    [alert_id] = _enqueue(services, at=later)
    channel = FakeChannel()
    outbox = _outbox(services, channel)

    assert outbox.dispatch(later - timedelta(seconds=1)).claimed == 0
    assert outbox.dispatch(later).sent == 1
    assert channel.calls == [alert_id]


def test_the_log_channel_writes_the_alert_to_the_sher_alerts_logger(
    services: Services, caplog: pytest.LogCaptureFixture,
) -> None:
    _enqueue(services, severity="warning", prefix="logged")
    with caplog.at_level(logging.INFO, logger="sher.alerts"):
        report = _outbox(services).dispatch()
    assert report.sent == 1
    [record] = [r for r in caplog.records if r.name == "sher.alerts"]
    assert record.levelno == logging.WARNING
    assert "test.alert" in record.getMessage()
    assert "logged 0 — body" in record.getMessage()


def test_a_temporary_failure_retries_later_with_backoff(services: Services) -> None:
    [alert_id] = _enqueue(services)
    channel = FakeChannel(Delivery.retry("timeout"), OSError("connection reset"))
    outbox = _outbox(services, channel)
    now = now_ist()

    first = outbox.dispatch(now)
    row = _row(services, alert_id)
    assert (first.retried, row.status, row.attempts, row.last_error) == (
        1, "pending", 1, "timeout")
    assert row.next_attempt_at == now + timedelta(seconds=10)
    assert outbox.dispatch(now + timedelta(seconds=9)).claimed == 0

    second = outbox.dispatch(now + timedelta(seconds=10))  # the channel raises this time
    row = _row(services, alert_id)
    assert (second.retried, row.attempts, row.last_error) == (1, 2, "connection reset")
    assert row.next_attempt_at == now + timedelta(seconds=30)  # 10 s later + 20 s

    third = outbox.dispatch(now + timedelta(seconds=30))
    row = _row(services, alert_id)
    assert (third.sent, row.status, row.attempts, row.last_error) == (1, "sent", 3, None)
    assert channel.calls == [alert_id] * 3


def test_retry_after_from_the_channel_overrides_the_backoff(services: Services) -> None:
    [alert_id] = _enqueue(services)
    outbox = _outbox(services, FakeChannel(Delivery.retry("429 Too Many Requests", 42)))
    now = now_ist()

    outbox.dispatch(now)

    assert _row(services, alert_id).next_attempt_at == now + timedelta(seconds=42)


def test_a_deferral_waits_retry_after_without_counting_an_attempt(services: Services) -> None:
    [alert_id] = _enqueue(services)
    outbox = _outbox(services, FakeChannel(Delivery.defer(3, "chat limit: 1 message/s")),
                     alert_max_attempts=1)
    now = now_ist()

    deferred = outbox.dispatch(now)
    row = _row(services, alert_id)
    assert (deferred.deferred, row.status, row.attempts) == (1, "pending", 0)
    assert row.next_attempt_at == now + timedelta(seconds=3)
    assert outbox.dispatch(now + timedelta(seconds=3)).sent == 1


def test_an_alert_that_keeps_failing_is_marked_failed_after_the_maximum_attempts(
    services: Services,
) -> None:
    [alert_id] = _enqueue(services)
    outbox = _outbox(services, FakeChannel(Delivery.retry("timeout"), Delivery.retry("timeout")),
                     alert_max_attempts=2)
    now = now_ist()

    outbox.dispatch(now)
    last = outbox.dispatch(now + timedelta(minutes=1))

    row = _row(services, alert_id)
    assert (last.failed, row.status, row.attempts, row.next_attempt_at) == (1, "failed", 2, None)
    assert row.last_error == "gave up after 2 attempts: timeout"
    assert outbox.dispatch(now + timedelta(hours=1)).claimed == 0


@pytest.mark.parametrize("answer", [Delivery.failed("chat not found"),
                                    ValidationError("chat not found")],
                         ids=["returned", "raised"])
def test_a_permanent_failure_marks_the_alert_failed_with_the_reason(
    services: Services, answer: Delivery | Exception,
) -> None:
    [alert_id] = _enqueue(services)
    outbox = _outbox(services, FakeChannel(answer))

    report = outbox.dispatch()

    row = _row(services, alert_id)
    assert (report.failed, row.status, row.attempts, row.last_error) == (
        1, "failed", 1, "chat not found")
    assert report.errors == [f"alert {alert_id}: chat not found"]
    assert outbox.dispatch(now_ist() + timedelta(hours=1)).claimed == 0


def test_an_alert_the_channel_skips_is_settled_with_the_reason(services: Services) -> None:
    [alert_id] = _enqueue(services)
    report = _outbox(services, FakeChannel(Delivery.skipped("alert type turned off"))).dispatch()
    row = _row(services, alert_id)
    assert (report.skipped, row.status, row.last_error, row.delivered_at) == (
        1, "skipped", "alert type turned off", None)


def test_a_channel_error_is_stored_without_secrets_or_later_lines(services: Services) -> None:
    [alert_id] = _enqueue(services)
    error = RuntimeError(f"POST https://api.telegram.org/bot{TOKEN}/sendMessage failed: "
                         f"password=hunter2 " + "x" * 400 + "\nSQL: params ...")
    _outbox(services, FakeChannel(error)).dispatch()

    stored = _row(services, alert_id).last_error or ""
    assert TOKEN not in stored and "hunter2" not in stored and "SQL" not in stored
    assert stored.startswith("POST https://api.telegram.org/bot<token>/sendMessage failed: "
                             "password=<redacted> ")
    assert len(stored) == 300


def test_a_channel_config_error_stops_the_dispatch_and_leaves_the_alerts_due(
    services: Services,
) -> None:
    ids = _enqueue(services, 3)
    broken = _outbox(services, FakeChannel(ConfigError("TELEGRAM_BOT_TOKEN is not set")))
    now = now_ist()

    with pytest.raises(ConfigError, match="TELEGRAM_BOT_TOKEN is not set"):
        broken.dispatch(now)

    rows = [_row(services, alert_id) for alert_id in ids]
    assert [(r.status, r.attempts, r.next_attempt_at) for r in rows] == [
        ("pending", 0, now)] * 3
    channel = FakeChannel()
    assert _outbox(services, channel).dispatch(now).sent == 3
    assert sorted(channel.calls) == ids


def test_a_batch_whose_lease_runs_out_gives_its_unsent_alerts_back(
    services: Services, monkeypatch: pytest.MonkeyPatch,
) -> None:
    ids = _enqueue(services, 2)
    monkeypatch.setattr(outbox_module, "LEASE_MARGIN_S", CLAIM_LEASE.total_seconds() + 1)
    channel = FakeChannel()
    now = now_ist()

    report = _outbox(services, channel).dispatch(now)

    assert (report.claimed, report.sent, report.released, channel.calls) == (2, 0, 2, [])
    assert [(_row(services, i).attempts, _row(services, i).next_attempt_at) for i in ids] == [
        (0, now)] * 2


def test_an_outcome_is_not_recorded_over_a_newer_claim_after_the_lease_lapsed(
    services: Services,
) -> None:
    [alert_id] = _enqueue(services)
    now = now_ist()
    late = now + CLAIM_LEASE + timedelta(seconds=1)
    second = _outbox(services, FakeChannel())

    class SlowChannel(FakeChannel):
        """Its send outlives the claim: another dispatcher re-claims and delivers meanwhile."""

        def send(self, alert: Alert) -> Delivery:
            self.report = second.dispatch(late)
            return Delivery.failed("too late to matter")

    slow = SlowChannel()
    report = _outbox(services, slow).dispatch(now)

    assert (report.lost, report.failed, slow.report.sent) == (1, 0, 1)
    row = _row(services, alert_id)
    assert (row.status, row.attempts, row.delivered_at) == ("sent", 2, late)


def test_bad_dispatch_input_gives_a_clear_error(services: Services) -> None:
    outbox = _outbox(services)
    with pytest.raises(ValidationError, match=r"Dispatch limit must be 1-1000 alerts; got -1"):
        outbox.dispatch(limit=-1)
    with pytest.raises(ValidationError, match=r"got 0"):
        outbox.dispatch(limit=0)
    with pytest.raises(ValidationError, match=r"got 1001"):
        outbox.dispatch(limit=1001)
    with pytest.raises(ValidationError, match="must be time-zone aware; got 2026-01-01T00:00"):
        outbox.dispatch(datetime(2026, 1, 1))  # noqa: DTZ001 - the naive time under test
    pigeon = OutboxService(services.db, make_settings(services.db.url, alert_channel="pigeon"))
    with pytest.raises(ConfigError,
                       match="ALERT_CHANNEL 'pigeon' is not a known alert channel; use one of "
                             "log"):
        pigeon.dispatch()


def test_a_channel_needs_a_short_name_and_a_send_method(services: Services) -> None:
    outbox = _outbox(services)

    class Nameless(FakeChannel):
        name = "x" * 21

    with pytest.raises(ConfigError, match="name must be 1-20 characters"):
        outbox.register(Nameless())
    with pytest.raises(ConfigError, match="is not an alert channel"):
        outbox.register(object())  # type: ignore[arg-type]


def test_two_dispatchers_at_once_never_send_one_alert_twice(services: Services) -> None:
    ids = _enqueue(services, 120, prefix="race")
    channel = FakeChannel(delay_s=0.002)
    settings = make_settings(services.db.url, alert_channel="fake")
    databases = [Database(services.db.url) for _ in range(2)]
    dispatchers = [OutboxService(db, settings, [channel]) for db in databases]
    errors: list[BaseException] = []
    sent: dict[int, int] = {}
    start = threading.Barrier(2)

    def pending(db: Database) -> int:
        with db.transaction() as session:
            return session.scalar(select(func.count()).where(
                AlertOutboxRow.id.in_(ids), AlertOutboxRow.status == "pending")) or 0

    def run(outbox: OutboxService) -> None:
        try:
            start.wait()
            while True:
                report = outbox.dispatch(limit=7)
                if report.claimed:
                    sent[id(outbox)] = sent.get(id(outbox), 0) + report.sent
                elif pending(outbox.db):  # the other dispatcher is still sending its claim
                    time.sleep(0.005)
                else:
                    break
        except BaseException as exc:  # surfaced by the assertion below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(d,)) for d in dispatchers]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    for db in databases:
        db.dispose()

    assert errors == []
    assert Counter(channel.calls) == Counter(ids)  # every alert, each exactly once
    assert len(sent) == 2 and sum(sent.values()) == 120  # both took part
    with services.db.transaction() as session:
        statuses = dict(session.execute(
            select(AlertOutboxRow.status, func.count()).where(AlertOutboxRow.id.in_(ids))
            .group_by(AlertOutboxRow.status)).all())
    assert statuses == {"sent": 120}


# -- enqueue with a recipient ------------------------------------------------------------------


def test_an_alert_for_one_user_is_shown_only_to_that_user(
    services: Services, login: Login,
) -> None:
    household = _household(services)
    with services.db.transaction() as session:
        users = dict(session.execute(select(UserRow.username, UserRow.id)).all())
        alerts.enqueue(session, kind="auth.session_expiry", household_id=household,
                       account_id=None, user_id=users["priya"], severity="warning",
                       title="Your login ends", body="soon", dedupe_key="only-priya")
        alerts.enqueue(session, kind="risk.panic", household_id=household, account_id=None,
                       severity="critical", title="Panic", body="all", dedupe_key="everyone")
        for_priya = alerts.recent(session, household, None, user_id=users["priya"])
        for_rahul = alerts.recent(session, household, None, user_id=users["rahul"])
        for_nobody = alerts.recent(session, household, None)
    assert [(a.title, a.user_id) for a in for_priya] == [("Panic", None),
                                                         ("Your login ends", users["priya"])]
    assert [a.title for a in for_rahul] == [a.title for a in for_nobody] == ["Panic"]
    assert for_priya[0].urgent and not for_priya[1].urgent  # critical is urgent by default


# -- session expiry warning and logout alerts ----------------------------------------------------


def _session_alerts(services: Services, kind: str) -> list[tuple[int | None, str]]:
    with services.db.transaction() as session:
        return [(user, key) for user, key in session.execute(
            select(AlertOutboxRow.user_id, AlertOutboxRow.dedupe_key)
            .where(AlertOutboxRow.kind == kind).order_by(AlertOutboxRow.user_id))]


def _audits(services: Services, action: str) -> list[AuditRow]:
    with services.db.transaction() as session:
        return list(session.scalars(select(AuditRow).where(AuditRow.action == action)))


def _expiry_of(services: Services, actor: Actor) -> datetime:
    with services.db.transaction() as session:
        row = session.get(SessionRow, actor.session_id)
        assert row is not None
        return services.auth._expiry(row)


def test_the_expiry_warning_writes_one_alert_per_logged_in_user_once(
    services: Services, login: Login,
) -> None:
    rahul = login("rahul")
    login("rahul")  # a second browser: still one warning
    priya = login("priya")
    kamla = login("kamla")
    services.auth.logout(kamla)
    ends = _expiry_of(services, rahul)
    assert to_ist(ends).time() == services.settings.session_expiry_time

    early = services.auth.warn_expiring_sessions(ends - timedelta(minutes=16))
    warned = services.auth.warn_expiring_sessions(ends - timedelta(minutes=15))
    twice = services.auth.warn_expiring_sessions(ends - timedelta(minutes=5))

    assert (early, warned, twice) == (0, 2, 0)
    day = to_ist(ends).date().isoformat()
    assert _session_alerts(services, "auth.session_expiry") == [
        (rahul.user_id, f"session-expiry:{rahul.user_id}:{day}"),
        (priya.user_id, f"session-expiry:{priya.user_id}:{day}"),
    ]
    [audit_row] = _audits(services, "auth.session_expiry_warned")
    assert audit_row.household_id == rahul.household_id
    assert '"rahul"' in audit_row.details and '"priya"' in audit_row.details
    with services.db.transaction() as session:
        [alert] = alerts.recent(session, rahul.household_id, None, user_id=rahul.user_id)
    assert alert.urgent and alert.severity == "warning"
    assert alert.title == f"Your SHER login ends at {to_ist(ends):%H:%M} IST (in 15 min)"


def test_no_warning_reaches_an_expired_or_ended_session(
    services: Services, login: Login,
) -> None:
    rahul = login("rahul")
    ends = _expiry_of(services, rahul)
    assert services.auth.warn_expiring_sessions(ends) == 0  # expired: too late to warn
    services.auth.logout(rahul)
    assert services.auth.warn_expiring_sessions(ends - timedelta(minutes=10)) == 0
    assert _session_alerts(services, "auth.session_expiry") == []
    assert _audits(services, "auth.session_expiry_warned") == []
    naive = datetime(2026, 1, 1, 2, 50)  # noqa: DTZ001 - the naive time under test
    with pytest.raises(ValidationError, match="must be time-zone aware; got 2026-01-01T02:50"):
        services.auth.warn_expiring_sessions(naive)
    with pytest.raises(ValidationError, match="must be time-zone aware; got 2026-01-01T02:50"):
        services.auth.alert_expired_logouts(naive)


def test_users_logged_out_by_the_daily_expiry_get_one_logout_alert(
    services: Services, login: Login,
) -> None:
    rahul = login("rahul")
    priya = login("priya")
    login("kamla")  # still within her session: no alert
    aarav = login("aarav")
    services.auth.logout(aarav)  # logged out by hand: no expiry alert
    past = now_ist() - timedelta(minutes=1)
    with services.db.transaction() as session:
        session.execute(update(SessionRow).where(
            SessionRow.user_id.in_([rahul.user_id, priya.user_id, aarav.user_id]))
            .values(expires_at=past))

    assert services.auth.expire_due_sessions() == 2
    first = services.auth.alert_expired_logouts(now_ist())
    again = services.auth.alert_expired_logouts(now_ist())
    much_later = services.auth.alert_expired_logouts(now_ist() + timedelta(hours=2))

    assert (first, again, much_later) == (2, 0, 0)
    day = to_ist(past).date().isoformat()
    assert _session_alerts(services, "auth.logout") == [
        (rahul.user_id, f"session-logout:{rahul.user_id}:{day}"),
        (priya.user_id, f"session-logout:{priya.user_id}:{day}"),
    ]
    assert len(_audits(services, "auth.logout_alerted")) == 1


def test_a_worker_back_hours_after_the_expiry_sends_no_stale_logout_alert(
    services: Services, login: Login,
) -> None:
    rahul = login("rahul")
    priya = login("priya")
    expired = now_ist() - timedelta(hours=12)  # 03:00, the worker down until 15:00
    with services.db.transaction() as session:
        session.execute(update(SessionRow).where(
            SessionRow.user_id.in_([rahul.user_id, priya.user_id])).values(expires_at=expired))
    assert services.auth.expire_due_sessions() == 2  # ended now, twelve hours late
    assert services.auth.alert_expired_logouts(now_ist()) == 0
    assert _session_alerts(services, "auth.logout") == []
    assert _audits(services, "auth.logout_alerted") == []


# -- the worker's jobs ---------------------------------------------------------------------------


def test_the_dispatch_job_reports_its_deliveries_and_nothing_when_idle(
    services: Services,
) -> None:
    jobs = AlertJobs(services)
    assert jobs.dispatch_alerts() is None
    _enqueue(services, 2)
    assert jobs.dispatch_alerts() == JobResult.ok("2 alert(s) via log: 2 sent")


def test_the_dispatch_job_stops_on_an_unknown_channel_and_says_why(services: Services) -> None:
    services.outbox = OutboxService(services.db, make_settings(services.db.url,
                                                               alert_channel="pigeon"))
    jobs = AlertJobs(services)
    first = jobs.dispatch_alerts()
    second = jobs.dispatch_alerts()
    assert first is not None and first.outcome is JobOutcome.FAILED
    assert first.message is not None and first.message.startswith(
        "alert delivery stopped: ALERT_CHANNEL 'pigeon' is not a known alert channel")
    assert second == JobResult.skipped(first.message)


def test_the_session_jobs_warn_and_alert_logouts_once(
    services: Services, login: Login,
) -> None:
    jobs = AlertJobs(services)
    assert jobs.warn_sessions().outcome is JobOutcome.SKIPPED  # nobody ends within 15 min
    rahul = login("rahul")
    with services.db.transaction() as session:
        session.execute(update(SessionRow).where(SessionRow.id == rahul.session_id)
                        .values(expires_at=now_ist() + timedelta(minutes=10)))
    assert jobs.warn_sessions() == JobResult.ok("warned 1 user(s) of the session expiry")
    assert jobs.warn_sessions().outcome is JobOutcome.SKIPPED
    with services.db.transaction() as session:
        session.execute(update(SessionRow).where(SessionRow.id == rahul.session_id)
                        .values(expires_at=now_ist() - timedelta(seconds=1)))
    assert jobs.alert_logouts() == JobResult.ok(
        "alerted 1 user(s) logged out by the daily expiry")
    assert jobs.alert_logouts().outcome is JobOutcome.SKIPPED


def test_the_alert_jobs_are_scheduled_around_the_daily_expiry(services: Services) -> None:
    added: dict[str, tuple[object, dict[str, object]]] = {}

    def add(job: object, trigger: object, *, id: str, **options: object) -> None:
        added[id] = (trigger, options)

    AlertJobs(services).schedule(add)

    assert set(added) == {"alert_dispatch", "session_warning", "session_logout_alerts"}
    trigger, options = added["alert_dispatch"]
    assert trigger == "interval"
    assert options == {"seconds": 2, "store": "default", "max_instances": 1, "coalesce": True,
                       "misfire_grace_time": 2}
    for name, at, grace in (("session_warning", "hour='2', minute='45'", 900),
                            ("session_logout_alerts", "hour='3', minute='1'", 3600)):
        trigger, options = added[name]
        assert isinstance(trigger, CronTrigger) and at in str(trigger)
        assert "store" not in options  # the worker's default: the desk's database
        assert (options["coalesce"], options["misfire_grace_time"]) == (True, grace)


def test_the_worker_schedules_and_catches_up_the_alert_jobs_through_its_own_helpers(
    services: Services, login: Login,
) -> None:
    rahul = login("rahul")
    with services.db.transaction() as session:
        session.execute(update(SessionRow).where(SessionRow.id == rahul.session_id)
                        .values(expires_at=now_ist() + timedelta(minutes=10)))
    worker = Worker(services)
    worker.scheduler = BackgroundScheduler(timezone=IST)  # start() returns; paused: nothing runs
    alert_jobs = AlertJobs(services)
    worker.schedule()
    alert_jobs.schedule(worker._add)
    worker.scheduler.start(paused=True)
    try:
        in_memory = {job.id for job in worker.scheduler.get_jobs(jobstore="default")}
        in_desk = {job.id for job in worker.scheduler.get_jobs(jobstore="desk")}
        alert_jobs.catch_up(worker._run_now)
    finally:
        worker.scheduler.shutdown(wait=False)
    assert "alert_dispatch" in in_memory
    assert {"session_warning", "session_logout_alerts"} <= in_desk
    with services.db.transaction() as session:
        runs = {r.name: (r.last_outcome, r.last_message) for r in session.scalars(
            select(JobRunRow).where(JobRunRow.name.like("session_%")))}
    assert runs["session_warning"] == (JobOutcome.OK, "warned 1 user(s) of the session expiry")
    assert runs["session_logout_alerts"][0] is JobOutcome.SKIPPED


# -- migration -----------------------------------------------------------------------------------


def _unmigrated_url(request: pytest.FixtureRequest, backend: str, tmp_path: Path) -> str:
    if backend == "sqlite":
        return f"sqlite:///{tmp_path / 'pre-0009.db'}"
    server: PostgresServer = request.getfixturevalue("pg_server")
    name = f"o_{uuid.uuid4().hex[:12]}"
    server.create_database(name)
    request.addfinalizer(lambda: server.drop_database(name))
    return server.url(name)


def test_alerts_written_before_delivery_existed_become_due_from_their_creation(
    request: pytest.FixtureRequest, backend: str, tmp_path: Path,
) -> None:
    url = _unmigrated_url(request, backend, tmp_path)
    command.upgrade(alembic_config(url), "0007_job_runs")
    created = datetime(2026, 11, 20, 9, 30, tzinfo=IST)
    db = Database(url)
    try:
        households = table("households", column("id"), column("name"),
                           column("created_at", UTCDateTime()), column("updated_at", UTCDateTime()))
        outbox = table("alert_outbox", *(column(c) for c in (
            "household_id", "kind", "severity", "title", "body", "dedupe_key", "status")),
            column("created_at", UTCDateTime()))
        with db.engine.begin() as conn:  # the 0007 schema: no delivery columns yet
            conn.execute(insert(households).values(id=1, name="h", created_at=created,
                                                   updated_at=created))
            for key, status in (("old-pending", "pending"), ("old-delivered", "delivered")):
                conn.execute(insert(outbox).values(
                    created_at=created, household_id=1, kind="risk.panic", severity="critical",
                    title=key, body="b", dedupe_key=key, status=status))
        command.upgrade(alembic_config(url), "head")
        with db.transaction() as session:
            rows = {r.dedupe_key: r for r in session.scalars(select(AlertOutboxRow))}
    finally:
        db.dispose()
    pending, delivered = rows["old-pending"], rows["old-delivered"]
    assert (pending.status, pending.attempts, pending.next_attempt_at) == ("pending", 0, created)
    assert (delivered.status, delivered.next_attempt_at, delivered.urgent) == ("sent", None, False)
