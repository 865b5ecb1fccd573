"""Server-side sessions: daily expiry in IST, logout, password change, lockout and TOTP."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, time
from zoneinfo import ZoneInfo

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select

from core.domain import Actor, ClientInfo
from core.errors import AuthenticationError, SessionInvalid, ValidationError
from core.passwords import generate_password
from core.seed import DemoLogin
from core.services import Services
from db.engine import Database
from db.models import AuditRow, SessionRow, UserRow
from tests.conftest import TEST_CLIENT, make_settings

IST = ZoneInfo("Asia/Kolkata")
COOKIE_EXP = 1_900_000_000.0  # the exp_date claim of a re-login cookie


def ist(day: int, hour: int, minute: int, second: int = 0) -> datetime:
    """Return an IST instant in March 2026."""
    return datetime(2026, 3, day, hour, minute, second, tzinfo=IST)


@contextmanager
def frozen_at(moment: datetime) -> Iterator[time_machine.Traveller]:
    with time_machine.travel(moment, tick=False) as traveller:
        yield traveller


def open_session(services: Services, logins: dict[str, DemoLogin], username: str) -> str:
    result = services.auth.login(username, logins[username].password, TEST_CLIENT)
    assert result.session_id is not None
    return result.session_id


def actor_of(services: Services, logins: dict[str, DemoLogin], username: str) -> Actor:
    return services.auth.check_session(open_session(services, logins, username), TEST_CLIENT)


def audit_rows(services: Services, action: str) -> list[AuditRow]:
    with services.db.transaction() as session:
        return list(
            session.scalars(select(AuditRow).where(AuditRow.action == action).order_by(AuditRow.id))
        )


def session_row(services: Services, session_id: str) -> SessionRow:
    with services.db.transaction() as session:
        row = session.get(SessionRow, session_id)
        assert row is not None
        return row


def count(services: Services, model: type) -> int:
    with services.db.transaction() as session:
        return int(session.scalar(select(func.count()).select_from(model)) or 0)


# -- daily expiry ----------------------------------------------------------------------------


def test_a_session_from_0259_is_valid_at_025930_and_invalid_at_030001(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 2, 59)) as traveller:
        session_id = open_session(services, demo_logins, "priya")
        traveller.move_to(ist(10, 2, 59, 30))
        assert services.auth.check_session(session_id).username == "priya"
        traveller.move_to(ist(10, 3, 0, 1))
        with pytest.raises(SessionInvalid) as refused:
            services.auth.check_session(session_id)
    message = str(refused.value)
    assert "expired at 2026-03-10 03:00:00 IST" in message
    assert "daily expiry 03:00 IST" in message


def test_a_session_from_030001_lives_until_0300_the_next_day(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 3, 0, 1)) as traveller:
        session_id = open_session(services, demo_logins, "priya")
        traveller.move_to(ist(10, 23, 0))
        services.auth.check_session(session_id)
        traveller.move_to(ist(11, 2, 59))
        services.auth.check_session(session_id)
        traveller.move_to(ist(11, 3, 0, 1))
        with pytest.raises(SessionInvalid, match="expired at 2026-03-11 03:00:00 IST"):
            services.auth.check_session(session_id)


def test_a_session_refused_for_expiry_is_recorded_as_ended(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 2, 0)) as traveller:
        session_id = open_session(services, demo_logins, "priya")
        services.auth.bind_cookie(session_id, "priya", COOKIE_EXP)
        traveller.move_to(ist(10, 3, 0, 1))
        with pytest.raises(SessionInvalid, match="expired"):
            services.auth.check_session(session_id)
        row = session_row(services, session_id)
        assert row.end_reason == "daily expiry"
        assert row.ended_at == ist(10, 3, 0, 1)
        assert services.auth.session_for_cookie("priya", COOKIE_EXP) is None


def test_the_re_login_cookie_of_an_expired_session_resolves_to_nothing(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 2, 0)) as traveller:
        session_id = open_session(services, demo_logins, "priya")
        services.auth.bind_cookie(session_id, "priya", COOKIE_EXP)
        assert services.auth.session_for_cookie("priya", COOKIE_EXP) == session_id
        traveller.move_to(ist(10, 3, 0, 1))
        assert services.auth.session_for_cookie("priya", COOKIE_EXP) is None


def test_a_configured_expiry_of_0430_moves_the_boundary(
    demo_url: str, demo_logins: dict[str, DemoLogin]
) -> None:
    settings = make_settings(demo_url, session_expiry_time=time(4, 30))
    services = Services(Database(demo_url), settings)
    try:
        with frozen_at(ist(10, 2, 59)) as traveller:
            session_id = open_session(services, demo_logins, "priya")
            traveller.move_to(ist(10, 3, 0, 1))
            services.auth.check_session(session_id)
            traveller.move_to(ist(10, 4, 29, 59))
            services.auth.check_session(session_id)
            traveller.move_to(ist(10, 4, 30, 1))
            with pytest.raises(SessionInvalid) as refused:
                services.auth.check_session(session_id)
    finally:
        services.db.dispose()
    assert "expired at 2026-03-10 04:30:00 IST" in str(refused.value)
    assert "daily expiry 04:30 IST" in str(refused.value)


def test_expire_due_sessions_ends_only_the_due_ones_and_audits_it(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 2, 0)) as traveller:
        due = [open_session(services, demo_logins, name) for name in ("priya", "kamla")]
        traveller.move_to(ist(10, 3, 5))
        fresh = open_session(services, demo_logins, "aarav")
        traveller.move_to(ist(10, 3, 10))
        assert services.auth.expire_due_sessions() == 2
        for session_id in due:
            row = session_row(services, session_id)
            assert (row.end_reason, row.ended_at) == ("daily expiry", ist(10, 3, 10))
            with pytest.raises(SessionInvalid, match=r"Session ended \(daily expiry\)"):
                services.auth.check_session(session_id)
        assert services.auth.check_session(fresh).username == "aarav"
        assert services.auth.expire_due_sessions() == 0
    audits = audit_rows(services, "auth.sessions_expired")
    assert len(audits) == 1
    assert audits[0].details == '{"count":2}'
    assert audits[0].resource == "sessions"


# -- ending sessions and the re-login cookie -------------------------------------------------


def _logout(services: Services, priya: Actor, rahul: Actor, logins: dict[str, DemoLogin]) -> str:
    services.auth.logout(priya)
    return "logout"


def _change_password(
    services: Services, priya: Actor, rahul: Actor, logins: dict[str, DemoLogin]
) -> str:
    services.auth.change_password(priya, logins["priya"].password, generate_password())
    return "password changed"


def _force_logout(
    services: Services, priya: Actor, rahul: Actor, logins: dict[str, DemoLogin]
) -> str:
    assert services.users.force_logout_all(rahul) >= 2
    return "forced logout"


def _admin_reset(
    services: Services, priya: Actor, rahul: Actor, logins: dict[str, DemoLogin]
) -> str:
    services.users.reset_password(rahul, priya.user_id, generate_password())
    return "forced logout"


def _deactivate(
    services: Services, priya: Actor, rahul: Actor, logins: dict[str, DemoLogin]
) -> str:
    services.users.set_active(rahul, priya.user_id, False)
    return "user deactivated"


Ender = Callable[[Services, Actor, Actor, dict[str, DemoLogin]], str]


@pytest.mark.parametrize(
    "end",
    [_logout, _change_password, _force_logout, _admin_reset, _deactivate],
    ids=["logout", "password-change", "force-logout", "admin-reset", "deactivation"],
)
def test_ending_a_session_kills_it_and_its_re_login_cookie_server_side(
    services: Services, demo_logins: dict[str, DemoLogin], end: Ender
) -> None:
    rahul = actor_of(services, demo_logins, "rahul")
    priya = actor_of(services, demo_logins, "priya")
    assert priya.session_id is not None
    services.auth.bind_cookie(priya.session_id, "priya", COOKIE_EXP)
    assert services.auth.session_for_cookie("priya", COOKIE_EXP) == priya.session_id
    # A cookie's claims that were never bound resolve to nothing.
    assert services.auth.session_for_cookie("priya", COOKIE_EXP + 1) is None
    assert services.auth.session_for_cookie("rahul", COOKIE_EXP) is None

    reason = end(services, priya, rahul, demo_logins)

    assert services.auth.session_for_cookie("priya", COOKIE_EXP) is None
    with pytest.raises(SessionInvalid, match=rf"Session ended \({reason}\)"):
        services.auth.check_session(priya.session_id)
    assert session_row(services, priya.session_id).ended_at is not None


def test_logout_is_audited_and_leaves_other_users_sessions_alone(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    priya = actor_of(services, demo_logins, "priya")
    kamla = actor_of(services, demo_logins, "kamla")
    services.auth.logout(priya)
    assert services.auth.check_session(kamla.session_id or "").username == "kamla"
    logouts = audit_rows(services, "auth.logout")
    assert [row.resource for row in logouts] == ["user:priya"]


def test_changing_the_password_ends_every_session_and_only_the_new_one_logs_in(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    old = demo_logins["priya"].password
    first = actor_of(services, demo_logins, "priya")
    second = open_session(services, demo_logins, "priya")
    new = generate_password()
    services.auth.change_password(first, old, new)
    for session_id in (first.session_id or "", second):
        with pytest.raises(SessionInvalid, match="password changed"):
            services.auth.check_session(session_id)
    with pytest.raises(AuthenticationError, match="Username or password is incorrect"):
        services.auth.login("priya", old, TEST_CLIENT)
    result = services.auth.login("priya", new, TEST_CLIENT)
    assert services.auth.check_session(result.session_id or "").username == "priya"
    (changed,) = audit_rows(services, "auth.password_changed")
    assert changed.details == '{"sessions_ended":2}'


def test_an_admin_password_reset_ends_the_targets_sessions_and_sets_the_new_password(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    rahul = actor_of(services, demo_logins, "rahul")
    priya = actor_of(services, demo_logins, "priya")
    new = generate_password()
    services.users.reset_password(rahul, priya.user_id, new)
    with pytest.raises(SessionInvalid, match="forced logout"):
        services.auth.check_session(priya.session_id or "")
    assert services.auth.check_session(rahul.session_id or "").username == "rahul"
    with pytest.raises(AuthenticationError):
        services.auth.login("priya", demo_logins["priya"].password, TEST_CLIENT)
    assert services.auth.login("priya", new, TEST_CLIENT).session_id


def test_a_deactivated_user_loses_the_live_session_and_cannot_log_in(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    rahul = actor_of(services, demo_logins, "rahul")
    priya = actor_of(services, demo_logins, "priya")
    services.users.set_active(rahul, priya.user_id, False)
    with pytest.raises(SessionInvalid):
        services.auth.check_session(priya.session_id or "")
    with pytest.raises(AuthenticationError):
        services.auth.login("priya", demo_logins["priya"].password, TEST_CLIENT)


def test_a_deactivated_user_with_the_right_password_is_told_so_and_no_failure_counts(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    rahul = actor_of(services, demo_logins, "rahul")
    priya = actor_of(services, demo_logins, "priya")
    services.users.set_active(rahul, priya.user_id, False)
    for _ in range(services.settings.login_max_failures + 1):  # never a lockout
        with pytest.raises(AuthenticationError,
                           match=r"^Your login was deactivated; ask a household admin$"):
            services.auth.login("priya", demo_logins["priya"].password, TEST_CLIENT)
    assert audit_rows(services, "auth.login_failed") == []
    refused = audit_rows(services, "auth.login_refused")
    assert [(r.resource, r.outcome, r.details) for r in refused][-1] == (
        "user:priya", "denied", '{"reason":"user deactivated"}')
    # A wrong password reveals nothing: the generic refusal, counted as a failure.
    with pytest.raises(AuthenticationError, match=r"^Username or password is incorrect$"):
        services.auth.login("priya", "Wrong-password-1", TEST_CLIENT)
    assert [r.resource for r in audit_rows(services, "auth.login_failed")] == ["user:priya"]


# -- lockout ---------------------------------------------------------------------------------


def test_five_wrong_passwords_lock_the_login_for_15_minutes_even_for_the_right_password(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    assert services.settings.login_max_failures == 5
    assert services.settings.login_lockout_minutes == 15
    right = demo_logins["priya"].password
    with frozen_at(ist(10, 11, 0)) as traveller:
        for _ in range(5):
            with pytest.raises(AuthenticationError, match="incorrect"):
                services.auth.login("priya", "wrong-password-1A", TEST_CLIENT)
        failures = audit_rows(services, "auth.login_failed")
        assert [(f.resource, f.outcome) for f in failures] == [("user:priya", "failed")] * 5
        sessions_before = count(services, SessionRow)

        with pytest.raises(AuthenticationError) as locked:
            services.auth.login("priya", right, TEST_CLIENT)
        message = str(locked.value)
        assert "5 failed attempts within 15 minutes" in message
        assert "try again after 2026-03-10 11:15:00 IST" in message
        assert count(services, SessionRow) == sessions_before

        traveller.move_to(ist(10, 11, 16))
        result = services.auth.login("priya", right, TEST_CLIENT)
        assert services.auth.check_session(result.session_id or "").username == "priya"


def test_failures_of_one_user_do_not_lock_another(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 11, 0)):
        for _ in range(5):
            with pytest.raises(AuthenticationError):
                services.auth.login("priya", "wrong-password-1A", TEST_CLIENT)
        assert open_session(services, demo_logins, "kamla")


def test_many_usernames_tried_from_one_address_lock_that_address_only(
    demo_url: str, demo_logins: dict[str, DemoLogin]
) -> None:
    svc = Services(Database(demo_url), make_settings(demo_url, login_max_failures_per_ip=3))
    attacker = ClientInfo(ip="203.0.113.9", user_agent="spray", channel="web")
    with frozen_at(ist(10, 11, 0)):
        for name in ("alice", "bob", "carol"):  # unknown usernames still count for the address
            with pytest.raises(AuthenticationError, match="incorrect"):
                svc.auth.login(name, "Wrong-password-1", attacker)
        with pytest.raises(AuthenticationError) as locked:
            svc.auth.login("priya", demo_logins["priya"].password, attacker)
        assert "Login locked for address 203.0.113.9: 3 failed attempts within 15 minutes" in str(
            locked.value
        )
        assert svc.auth.login("priya", demo_logins["priya"].password, TEST_CLIENT).session_id
    svc.db.dispose()


# -- TOTP ------------------------------------------------------------------------------------


def _enable_totp(services: Services, logins: dict[str, DemoLogin]) -> tuple[Actor, str]:
    priya = actor_of(services, logins, "priya")
    enrolment = services.auth.start_totp(priya)
    assert "SHER" in enrolment.uri
    services.auth.confirm_totp(priya, enrolment.secret, pyotp.TOTP(enrolment.secret).now())
    return priya, enrolment.secret


def test_with_totp_enabled_login_asks_for_the_code_and_refuses_a_replay(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    password = demo_logins["priya"].password
    with frozen_at(ist(10, 11, 0, 5)) as traveller:
        priya, secret = _enable_totp(services, demo_logins)
        assert services.auth.totp_enabled(priya)
        sessions_before = count(services, SessionRow)

        pending = services.auth.login("priya", password, TEST_CLIENT)
        assert pending.needs_totp
        assert pending.session_id is None
        assert count(services, SessionRow) == sessions_before

        traveller.move_to(ist(10, 11, 0, 35))  # the next 30-second step
        code = pyotp.TOTP(secret).now()
        result = services.auth.login("priya", password, TEST_CLIENT, totp_code=code)
        assert result.session_id is not None
        assert services.auth.check_session(result.session_id).username == "priya"

        traveller.move_to(ist(10, 11, 0, 40))
        with pytest.raises(AuthenticationError, match="wrong or was already used"):
            services.auth.login("priya", password, TEST_CLIENT, totp_code=code)
    assert count(services, SessionRow) == sessions_before + 1
    replay = audit_rows(services, "auth.login_failed")[-1]
    assert replay.details == '{"reason":"wrong or reused 2FA code"}'


@pytest.mark.parametrize("code", ["12ab56", "12345",
                                  "\u0967\u0968\u0969\u096a\u096b\u096c"])  # Devanagari
def test_a_malformed_totp_code_is_refused_as_not_6_digits_and_writes_nothing(
    services: Services, demo_logins: dict[str, DemoLogin], code: str
) -> None:
    with frozen_at(ist(10, 11, 0, 5)) as traveller:
        priya, _secret = _enable_totp(services, demo_logins)
        traveller.move_to(ist(10, 11, 1))
        with services.db.transaction() as session:
            step_before = session.get(UserRow, priya.user_id).totp_last_step  # type: ignore[union-attr]
        sessions_before = count(services, SessionRow)
        audits_before = count(services, AuditRow)

        with pytest.raises(ValidationError, match="must be exactly 6 digits"):
            services.auth.login("priya", demo_logins["priya"].password, TEST_CLIENT, code)

        with services.db.transaction() as session:
            step_after = session.get(UserRow, priya.user_id).totp_last_step  # type: ignore[union-attr]
    assert step_before is not None
    assert step_after == step_before
    assert count(services, SessionRow) == sessions_before
    assert count(services, AuditRow) == audits_before


def test_the_stored_totp_secret_is_encrypted(
    services: Services, demo_logins: dict[str, DemoLogin]
) -> None:
    with frozen_at(ist(10, 11, 0, 5)):
        priya, secret = _enable_totp(services, demo_logins)
    with services.db.transaction() as session:
        stored = session.get(UserRow, priya.user_id).totp_secret_enc  # type: ignore[union-attr]
    assert stored
    assert secret not in stored
    assert secret.lower() not in stored.lower()


def test_services_refuse_an_actor_whose_session_has_ended(services, login) -> None:
    from core.errors import SessionInvalid

    priya = login("priya")
    accounts = services.household.list_accounts(priya)
    services.auth.logout(priya)
    with pytest.raises(SessionInvalid, match="session has ended"):
        services.household.authorize_trade(priya, accounts[0].id)
