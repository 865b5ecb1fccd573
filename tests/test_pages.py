"""Every page through Streamlit's AppTest: login, role-filtered navigation, forms, logout."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pyotp
import pytest
import time_machine
from sqlalchemy import func, select
from streamlit.testing.v1 import AppTest

from core.clock import format_ist, now_ist
from core.domain import Role
from core.errors import AuthenticationError
from db.models import AccountRow, AuditRow, UserRow
from pages.common import DISCLAIMER
from pages.nav import PAGES, pages_for
from tests.conftest import TEST_CLIENT
from tests.support.apptest import APP, ROOT, app_as, texts

ROLE_OF = {"ops": Role.SUPER_ADMIN, "rahul": Role.ADMIN, "priya": Role.TRADER,
           "kamla": Role.FAMILY_MEMBER, "aarav": Role.VIEWER}


@pytest.mark.parametrize("username", list(ROLE_OF))
def test_every_page_renders_for_each_role_that_may_see_it(desk, username) -> None:
    # Walking every page takes a while: run it at noon IST today, far from the 03:00 IST session
    # expiry (SESSION_EXPIRY_TIME), which would otherwise log the user out halfway through.
    with time_machine.travel(now_ist().replace(hour=12, minute=0), tick=True):
        at = app_as(desk, username)
        for spec in pages_for(ROLE_OF[username]):
            at.switch_page(str(ROOT / spec.path)).run()
            assert not at.exception, f"{spec.path} raised for {username}: {at.exception}"
            assert at.title[0].value.startswith(spec.title.split(" ")[0])
            assert DISCLAIMER in texts(at), f"{spec.path} lacks the disclaimer footer"


@pytest.mark.parametrize("username", ["priya", "kamla", "aarav"])
def test_admin_pages_are_absent_for_roles_that_may_not_see_them(desk, username) -> None:
    at = app_as(desk, username)
    visible = {spec.path for spec in pages_for(ROLE_OF[username])}
    hidden = [spec.path for spec in PAGES if spec.path not in visible and spec.group == "Admin"]
    assert hidden == ["pages/users.py", "pages/audit_log.py", "pages/data_import.py"]
    for path in hidden:
        with pytest.raises(ValueError, match="Could not find a navigation page"):
            at.switch_page(str(ROOT / path))


def test_the_login_form_checks_the_password_stored_in_the_database(desk) -> None:
    _, logins = desk
    at = AppTest.from_file(APP, default_timeout=30).run()
    assert not at.exception
    at.text_input[0].input("rahul")
    at.text_input[1].input(logins["rahul"].password)
    at.button[0].click().run()
    assert not at.exception
    assert "Logged in. Opening your desk" in texts(at)  # the cookie component runs first
    at.run()  # what the one-second fragment does in a browser
    assert at.title[0].value == "Dashboard · Sharma family"
    assert "Rahul Sharma" in texts(at)
    # The NSE calendar's state and the paper desk's (the demo's feed decides it), side by side.
    assert [m.label for m in at.metric][3:] == ["NSE market", "Paper desk"]
    assert "Paper desk: market feed off (FEED_MODE=off)" in texts(at)


def test_a_wrong_password_is_refused_shown_and_audited(desk) -> None:
    svc, _ = desk
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input[0].input("rahul")
    at.text_input[1].input("Wrong-password-1")
    at.button[0].click().run()
    assert "Username or password is incorrect" in texts(at)
    assert at.title[0].value.startswith("SHER")
    with svc.db.transaction() as session:
        failures = session.scalar(select(func.count()).select_from(AuditRow).where(
            AuditRow.action == "auth.login_failed", AuditRow.resource == "user:rahul"))
    assert failures == 1


def test_a_user_with_two_factor_login_must_give_the_totp_code(desk) -> None:
    svc, logins = desk
    rahul = svc.auth.check_session(
        svc.auth.login("rahul", logins["rahul"].password, TEST_CLIENT).session_id or "")
    enrolment = svc.auth.start_totp(rahul)
    svc.auth.confirm_totp(rahul, enrolment.secret, pyotp.TOTP(enrolment.secret).now())
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input[0].input("rahul")
    at.text_input[1].input(logins["rahul"].password)
    at.button[0].click().run()
    assert "Password accepted. Next: your two-factor code" in texts(at)
    at.run()
    assert "6-digit code from your authenticator app" in texts(at)
    at.text_input(key="login_totp_code").input("12ab56")
    at.button[0].click().run()
    assert "must be exactly 6 digits" in texts(at)
    assert not at.title[0].value.startswith("Dashboard")
    later = datetime.now(UTC) + timedelta(seconds=31)  # the confirm code's step is spent
    with time_machine.travel(later, tick=True):
        at.text_input(key="login_totp_code").input(pyotp.TOTP(enrolment.secret).now())
        at.button[0].click().run()
        assert "Logged in. Opening your desk" in texts(at)
        at.run()
    assert at.title[0].value == "Dashboard · Sharma family"


def test_force_logout_elsewhere_ends_the_browser_session_on_its_next_run(desk) -> None:
    svc, logins = desk
    at = app_as(desk, "priya")
    assert at.title[0].value.startswith("Dashboard")
    rahul = svc.auth.check_session(
        svc.auth.login("rahul", logins["rahul"].password, TEST_CLIENT).session_id or "")
    svc.users.force_logout_all(rahul)
    at.run()
    assert at.title[0].value.startswith("SHER")
    assert "forced logout" in texts(at)


def test_logging_out_from_the_sidebar_ends_the_server_side_session(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "kamla")
    session_id = at.session_state["sher_session_id"]
    at.button(key="sidebar_logout").click().run()
    assert "Logging out" in texts(at)
    at.run()  # the deferred rerun, after the cookie-deleting component ran
    assert at.title[0].value.startswith("SHER")
    assert "You are logged out" in texts(at)
    with pytest.raises(Exception, match="logout"):
        svc.auth.check_session(session_id)


def test_a_weak_password_on_the_users_page_states_the_rule_and_writes_nothing(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/users.py")).run()
    with svc.db.transaction() as session:
        before = session.scalar(select(func.count()).select_from(UserRow))
    at.text_input(key="users_new_username").input("meera")
    at.text_input(key="users_new_name").input("Meera Sharma")
    at.text_input(key="users_new_password").input("short")
    at.button[0].click().run()
    assert "Weak password" in texts(at) and "10 to 72 characters" in texts(at)
    with svc.db.transaction() as session:
        assert session.scalar(select(func.count()).select_from(UserRow)) == before


def test_an_admin_opens_an_account_from_the_household_page(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/household.py")).run()
    at.text_input(key="household_account_label").input("Rahul · Options")
    form_buttons = [b for b in at.button if b.label == "Open account"]
    form_buttons[0].click().run()
    assert not at.exception
    assert "Opened Rahul · Options" in texts(at)
    with svc.db.transaction() as session:
        assert session.scalar(select(AccountRow.label).where(AccountRow.label == "Rahul · Options"))


def test_a_page_script_run_on_its_own_still_requires_a_valid_session(desk) -> None:
    at = AppTest.from_file(str(ROOT / "pages/household.py"), default_timeout=30).run()
    assert not at.exception
    assert "You are not logged in" in texts(at)
    assert not at.title


def test_an_admin_page_reached_directly_by_a_viewer_is_refused_by_the_service(desk) -> None:
    svc, logins = desk
    result = svc.auth.login("aarav", logins["aarav"].password, TEST_CLIENT)
    at = AppTest.from_file(str(ROOT / "pages/users.py"), default_timeout=30)
    at.session_state["sher_session_id"] = result.session_id
    at.run()
    assert not at.exception
    assert "may not manage users" in texts(at)
    assert not at.dataframe[0].value.shape[0]  # no user rows leaked


def test_editing_an_account_shows_and_saves_the_values_of_the_account_picked(desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/household.py")).run()
    assert not at.exception
    rahul = svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)
    ids = {a.label: a.id for a in svc.household.list_accounts(rahul)}
    first, picked = ids["Rahul · Long-term"], ids["Rahul · Intraday"]
    at.selectbox(key="household_edit_account").set_value(picked).run()
    assert at.text_input(key=f"household_edit_label_{picked}").value == "Rahul · Intraday"
    at.text_input(key=f"household_edit_group_{picked}").input("Swing")
    next(b for b in at.button if b.label == "Save").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    after = {a.id: (a.label, a.group) for a in svc.household.list_accounts(rahul)}
    assert after[picked] == ("Rahul · Intraday", "Swing")  # its own label kept
    assert after[first] == ("Rahul · Long-term", "Long-term")  # the other untouched


def test_adding_a_member_shows_them_at_once_without_an_error(desk) -> None:
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/household.py")).run()
    at.text_input(key="household_member_name").input("Meera Sharma")
    at.selectbox(key="household_member_rel").set_value("child")
    next(b for b in at.button if b.label == "Add member").click().run()
    assert not at.exception, at.exception  # it raised KeyError in the same run before
    assert "Added Meera Sharma." in texts(at)
    members = next(f.value for f in at.dataframe if "relationship" in f.value.columns)
    assert "Meera Sharma" in list(members["name"])
    owners = at.selectbox(key="household_account_owner").options
    assert "Meera Sharma (child, no login)" in owners


def test_a_role_change_shows_in_the_user_picker_at_once(desk) -> None:
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/users.py")).run()
    svc, _ = desk
    rahul = svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)
    priya = next(u.id for u in svc.users.list_users(rahul) if u.username == "priya")
    at.selectbox(key="users_target").set_value(priya).run()
    at.selectbox(key=f"users_target_role_{priya}").set_value("viewer")
    next(b for b in at.button if b.label == "Set role").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Role changed." in texts(at)
    assert "priya (viewer)" in at.selectbox(key="users_target").options


def test_turning_off_two_factor_login_redraws_the_profile_in_the_off_state(desk) -> None:
    svc, logins = desk
    at = app_as(desk, "rahul")
    rahul = svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)
    enrolment = svc.auth.start_totp(rahul)
    svc.auth.confirm_totp(rahul, enrolment.secret, pyotp.TOTP(enrolment.secret).now())
    at.switch_page(str(ROOT / "pages/profile.py")).run()
    assert "Two-factor login is on." in texts(at)
    at.text_input(key="profile_totp_pw").input(logins["rahul"].password)
    next(b for b in at.button if b.label == "Turn off two-factor login").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert "Two-factor login turned off." in texts(at)
    assert "Two-factor login is on." not in texts(at)
    assert any(b.label == "Set up two-factor login" for b in at.button)


def test_the_role_picker_starts_at_the_users_role_and_offers_only_roles_the_admin_may_give(
        desk) -> None:
    svc, _ = desk
    at = app_as(desk, "rahul")
    at.switch_page(str(ROOT / "pages/users.py")).run()
    rahul = svc.auth.check_session(at.session_state["sher_session_id"], TEST_CLIENT)
    ids = {u.username: u.id for u in svc.users.list_users(rahul)}
    assert at.selectbox(key="users_new_role").options == ["trader", "family_member", "viewer"]
    aarav = ids["aarav"]
    at.selectbox(key="users_target").set_value(aarav).run()
    picker = at.selectbox(key=f"users_target_role_{aarav}")
    assert picker.value == "viewer"
    assert picker.options == ["trader", "family_member", "viewer"]
    next(b for b in at.button if b.label == "Set role").click().run()  # unchanged: harmless
    assert "'aarav' is already a viewer; nothing was changed" in texts(at)
    with svc.db.transaction() as session:
        assert session.get(UserRow, aarav).role is Role.VIEWER


def test_a_deactivated_user_with_the_right_password_is_told_so_without_a_failure(desk) -> None:
    svc, logins = desk
    rahul = svc.auth.check_session(
        svc.auth.login("rahul", logins["rahul"].password, TEST_CLIENT).session_id or "")
    priya = next(u.id for u in svc.users.list_users(rahul) if u.username == "priya")
    svc.users.set_active(rahul, priya, False)
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input[0].input("priya")
    at.text_input[1].input(logins["priya"].password)
    at.button[0].click().run()
    assert not at.exception
    assert "Your login was deactivated; ask a household admin" in texts(at)
    assert "Username or password is incorrect" not in texts(at)
    assert at.title[0].value.startswith("SHER")

    def audited(action: str) -> int:
        with svc.db.transaction() as session:
            return int(session.scalar(select(func.count()).select_from(AuditRow).where(
                AuditRow.action == action)) or 0)

    assert (audited("auth.login_failed"), audited("auth.login_refused")) == (0, 1)
    at.text_input[1].input("Wrong-password-1")  # a wrong one stays the generic refusal
    at.button[0].click().run()
    assert "Username or password is incorrect" in texts(at)
    assert "deactivated" not in texts(at)
    assert audited("auth.login_failed") == 1


def test_changing_the_password_on_the_profile_shows_the_planned_notice_on_the_login_page(
        desk) -> None:
    _, logins = desk
    at = app_as(desk, "priya")
    at.switch_page(str(ROOT / "pages/profile.py")).run()
    at.text_input(key="profile_pw_current").input(logins["priya"].password)
    at.text_input(key="profile_pw_new").input("A-new-Passw0rd-42")
    at.text_input(key="profile_pw_again").input("A-new-Passw0rd-42")
    next(b for b in at.button if b.label == "Change password").click().run()
    assert not at.exception and not at.error, [e.value for e in at.error]
    assert at.title[0].value.startswith("SHER")
    assert "Password changed. Every session of yours has ended; log in with the new one." in texts(
        at)
    assert "Session ended" not in texts(at)


def test_a_locked_login_is_refused_on_the_login_page_with_the_time_the_lockout_ends(
        desk) -> None:
    svc, logins = desk
    for _ in range(svc.settings.login_max_failures):
        with pytest.raises(AuthenticationError, match="incorrect"):
            svc.auth.login("priya", "Wrong-password-1", TEST_CLIENT)
    until = svc.auth.locked_until("priya")
    assert until is not None
    at = AppTest.from_file(APP, default_timeout=30).run()
    at.text_input[0].input("priya")
    at.text_input[1].input(logins["priya"].password)
    at.button[0].click().run()
    assert not at.exception
    assert at.title[0].value.startswith("SHER")
    assert [e.value for e in at.error] == [
        f"Login locked for 'priya': {svc.settings.login_max_failures} failed attempts within "
        f"{svc.settings.login_lockout_minutes} minutes; try again after {format_ist(until)}"]
    assert format_ist(until).endswith("IST")


def test_a_login_of_no_member_is_told_an_admin_links_it_not_to_ask_for_a_grant(desk) -> None:
    svc, logins = desk
    admin = svc.auth.check_session(svc.auth.login("rahul", logins["rahul"].password,
                                                  TEST_CLIENT).session_id)
    svc.users.create_user(admin, "ramesh", "Ramesh Sharma", "Parent-Pension-2026!", "viewer")
    result = svc.auth.login("ramesh", "Parent-Pension-2026!", TEST_CLIENT)
    at = AppTest.from_file(APP, default_timeout=30)
    at.session_state["sher_session_id"] = result.session_id
    at.run()
    assert not at.exception
    shown = texts(at)
    assert "your login is not linked to a household member" in shown
    assert "links your login to a member on the Users page" in shown
    assert "grant you access" not in shown  # no grant can reach a login of no member
