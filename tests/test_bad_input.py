"""Bad input: each gives a ValidationError stating the rule and the value, and writes nothing."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pyotp
import pytest
from sqlalchemy import func, select, update

from core.domain import Actor, Permission, Relationship
from core.errors import PermissionDenied, ValidationError
from core.services import Services
from db.models import AccountGrantRow, AccountRow, AuditRow, MemberRow, UserRow

STRONG = "Good-Enough-42!"
COUNTED = (UserRow, MemberRow, AccountRow, AccountGrantRow, AuditRow)


@dataclass(frozen=True)
class Ids:
    """Member ids by username (vikram lives in the foreign Verma household), accounts by label."""

    members: dict[str, int]
    accounts: dict[str, int]


@pytest.fixture
def ids(services: Services, login: Callable[[str], Actor]) -> Ids:
    """The demo household's ids plus a foreign household whose member is 'vikram'."""
    ops = login("ops")
    verma = services.household.create_household(ops, "Verma family")
    vikram = services.users.create_user(ops, "vikram", "Vikram Verma", STRONG, "admin",
                                        relationship="self", household_id=verma.id)
    assert vikram.member_id is not None
    members = {m.username: m.id for m in services.household.list_members(ops) if m.username}
    members["vikram"] = vikram.member_id
    accounts = {a.label: a.id for a in services.household.list_accounts(ops)}
    return Ids(members=members, accounts=accounts)


def _row_counts(services: Services) -> dict[str, int]:
    with services.db.transaction() as session:
        return {
            model.__tablename__: int(session.scalar(select(func.count()).select_from(model)) or 0)
            for model in COUNTED
        }


Call = Callable[[Services, Actor, Ids], Any]


def _new_user(username: str = "newbie", password: str = STRONG, role: str = "viewer",
              relationship: str | None = "child") -> Call:
    return lambda s, a, i: s.users.create_user(a, username, "New Person", password, role,
                                               relationship=relationship)


def _grant(label: str, member: str, permission: str) -> Call:
    return lambda s, a, i: s.household.grant(a, i.accounts[label], i.members[member], permission)


def _open(owner: str, label: str) -> Call:
    return lambda s, a, i: s.household.create_account(a, i.members[owner], label, "Long-term")


def _rename(label: str, new_label: str) -> Call:
    return lambda s, a, i: s.household.update_account(a, i.accounts[label], new_label,
                                                      "Trading", True)


# Each message part may name an id with {member:<username>}, filled in from the fixture.
BAD_INPUTS = [
    pytest.param(_new_user("priya"), ("'priya' is already taken",), id="duplicate-username"),
    pytest.param(_new_user("Priya"), ("'priya' is already taken",),
                 id="duplicate-username-differing-by-case"),
    pytest.param(_new_user(password="short"),
                 ("10 to 72 characters", "one lowercase letter", "one uppercase letter",
                  "one digit", "one symbol",
                  "This one fails: length 5 < 10, no uppercase letter, no digit, no symbol"),
                 id="weak-password"),
    pytest.param(_new_user(password="newbie-Pass-123"), ("must not contain the username",
                                                         "This one fails: contains the username"),
                 id="password-containing-the-username"),
    pytest.param(_new_user("bad name!"),
                 ("Invalid username 'bad name!'", "lowercase letters, digits, '.', '_' or '-'"),
                 id="invalid-username-characters"),
    pytest.param(lambda s, a, i: s.users.create_user(a, "meera", "Meera Sharma", STRONG,
                                                     "trader", relationship="self"),
                 ("The household already has its 'self' member (Rahul Sharma); relationships "
                  "are to them: choose how Meera Sharma is related",),
                 id="a-second-self-member-through-a-new-login"),
    pytest.param(_new_user(relationship="cousin"),
                 ("Unknown relationship 'cousin'", "self, spouse, parent, child"),
                 id="unknown-relationship"),
    pytest.param(_new_user(role="owner"),
                 ("Unknown role 'owner'", "super_admin, admin, trader, family_member, viewer"),
                 id="unknown-role"),
    pytest.param(lambda s, a, i: s.auth.confirm_totp(a, pyotp.random_base32(), "12ab"),
                 ("exactly 6 digits", "'12ab'"), id="malformed-totp-code"),
    pytest.param(lambda s, a, i: s.auth.confirm_totp(a, pyotp.random_base32(),
                                                     "\u0967\u0968\u0969\u096a\u096b\u096c"),
                 ("exactly 6 digits", "'\u0967\u0968\u0969\u096a\u096b\u096c'"),
                 id="totp-code-in-devanagari-digits"),
    pytest.param(_grant("Rahul · Long-term", "vikram", "view"),
                 ("Member {vikram} is not in this account's household",),
                 id="grant-to-a-member-outside-the-household"),
    pytest.param(_grant("Rahul · Intraday", "aarav", "trade"),
                 ("Aarav Sharma has the viewer role, which never trades", "grant 'view'"),
                 id="trade-grant-to-a-viewer"),
    pytest.param(_grant("Rahul · Intraday", "kamla", "admin"),
                 ("Unknown permission 'admin'", "view, trade"), id="unknown-permission"),
    pytest.param(_open("kamla", "   "), ("Account label must be 1-60 characters; got 0",),
                 id="empty-account-label"),
    pytest.param(_open("kamla", "x" * 61), ("Account label must be 1-60 characters; got 61",),
                 id="too-long-account-label"),
    pytest.param(_rename("Rahul · Intraday", ""),
                 ("Account label must be 1-60 characters; got 0",), id="empty-label-on-rename"),
    pytest.param(lambda s, a, i: s.household.add_member(a, "x" * 500, "child"),
                 ("Member name must be 1-120 characters; got 500",), id="too-long-member-name"),
    pytest.param(lambda s, a, i: s.household.add_member(a, "   ", "child"),
                 ("Member name must be 1-120 characters; got 0",), id="empty-member-name"),
    pytest.param(lambda s, a, i: s.users.create_user(a, "newbie", "y" * 300, STRONG, "viewer"),
                 ("Display name must be 1-120 characters; got 300",),
                 id="too-long-display-name"),
    pytest.param(lambda s, a, i: s.users.create_user(a, "newbie", "New Person", STRONG, "viewer",
                                                     email="a" * 390 + "@example.in"),
                 ("E-mail must be at most 254 characters; got 401",), id="too-long-e-mail"),
    *[pytest.param(lambda s, a, i, e=email: s.users.create_user(
        a, "newbie", "New Person", STRONG, "viewer", email=e),
        (f"E-mail {email!r} is not an address: an e-mail address has one '@', a dot in the "
         "part after it, and no spaces or angle brackets",), id=f"malformed-e-mail-{n}")
      for n, email in enumerate(("priya.example.in", "priya@@example.in", "priya@example",
                                 "priya sharma@example.in", "Priya <priya@example.in>",
                                 "priya@example.", "@example.in"))],
    pytest.param(_open("kamla", "Rahul · Long-term"),
                 ("An account labelled 'Rahul · Long-term' already exists",),
                 id="duplicate-account-label"),
    pytest.param(_rename("Rahul · Intraday", "Priya · Trading"),
                 ("An account labelled 'Priya · Trading' already exists",),
                 id="duplicate-account-label-on-rename"),
    pytest.param(_open("kamla", "rahul · long-term"),
                 ("An account labelled 'rahul · long-term' already exists",),
                 id="duplicate-account-label-differing-only-by-case"),
    pytest.param(_open("kamla", "Rahul ·\u00a0Long-term"),  # a no-break space
                 ("An account labelled 'Rahul · Long-term' already exists",),
                 id="duplicate-account-label-with-a-no-break-space"),
    pytest.param(_open("kamla", " RAHUL  ·  ＬＯＮＧ-TERM "),  # spaces, full-width letters
                 ("An account labelled 'RAHUL · LONG-TERM' already exists",),
                 id="duplicate-account-label-with-look-alike-text"),
    pytest.param(_rename("Rahul · Intraday", "Priya ·\u00a0Trading"),
                 ("An account labelled 'Priya · Trading' already exists",),
                 id="duplicate-account-label-with-a-no-break-space-on-rename"),
    pytest.param(_open("kamla", "\u200b"),
                 ("Account label contains U+200B: control and invisible format characters "
                  "(Unicode Cc, Cf) are not allowed",), id="invisible-account-label"),
    pytest.param(lambda s, a, i: s.household.create_account(a, i.members["kamla"], "Kamla · New",
                                                            "\ufeffTrading"),
                 ("Account group contains U+FEFF",), id="invisible-character-in-a-group"),
    pytest.param(lambda s, a, i: s.household.add_member(a, "\u200b\u200b", "child"),
                 ("Member name contains U+200B: control and invisible format characters",),
                 id="invisible-member-name"),
    pytest.param(lambda s, a, i: s.household.add_member(a, "Meera\x00Sharma\n", "child"),
                 ("Member name contains U+0000, U+000A: control and invisible",),
                 id="member-name-with-nul-and-newline"),
    pytest.param(lambda s, a, i: s.users.create_user(a, "newbie", "New\u200dPerson", STRONG,
                                                     "viewer"),
                 ("Display name contains U+200D",), id="invisible-character-in-a-display-name"),
    pytest.param(lambda s, a, i: s.household.revoke(a, i.accounts["Rahul · Intraday"],
                                                    i.members["kamla"]),
                 ("Kamla Sharma has no grant on the account 'Rahul · Intraday'",),
                 id="revoking-a-grant-that-does-not-exist"),
    pytest.param(lambda s, a, i: s.household.record_consent(a, i.members["kamla"], "  "),
                 ("Consent needs a note saying how it was given",), id="consent-with-empty-note"),
    pytest.param(lambda s, a, i: s.household.set_verification(a, i.members["kamla"], "approved"),
                 ("Unknown verification status 'approved'", "unverified, verified, rejected"),
                 id="unknown-verification-status"),
]


@pytest.mark.parametrize(("call", "message_parts"), BAD_INPUTS)
def test_bad_input_is_refused_with_a_clear_message_and_writes_nothing(
    services: Services, login: Callable[[str], Actor], ids: Ids,
    call: Call, message_parts: tuple[str, ...],
) -> None:
    rahul = login("rahul")
    before = _row_counts(services)
    with pytest.raises(ValidationError) as refused:
        call(services, rahul, ids)
    message = str(refused.value)
    for part in message_parts:
        assert part.format(**ids.members) in message
    assert _row_counts(services) == before


def test_a_trade_grant_needs_the_owners_recorded_consent(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    rahul = login("rahul")
    nani = services.household.add_member(rahul, "Nani Devi", "parent")
    account = services.household.create_account(rahul, nani.id, "Nani · Savings", "Long-term")
    before = _row_counts(services)
    with pytest.raises(ValidationError, match=r"Nani Devi \(parent\) has not consented"):
        services.household.grant(rahul, account.id, ids.members["rahul"], "trade")
    assert _row_counts(services) == before
    services.household.grant(rahul, account.id, ids.members["priya"], "view")  # view is fine
    services.household.record_consent(rahul, nani.id, "Signed form, witnessed by Priya")
    services.household.grant(rahul, account.id, ids.members["rahul"], "trade")
    assert services.household.authorize_trade(rahul, account.id).label == "Nani · Savings"


def test_a_household_has_one_self_member_and_no_other_owner_escapes_consent(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    rahul = login("rahul")
    before = _row_counts(services)
    with pytest.raises(ValidationError, match=r"already has its 'self' member \(Rahul Sharma\); "
                                              r"relationships are to them: choose how Meera"):
        services.household.add_member(rahul, "Meera Sharma", "self")
    assert _row_counts(services) == before
    # An owner who is not the grantor must consent, whatever their relationship.
    with services.db.transaction() as session:  # a second "self" left by older data
        session.execute(update(MemberRow).where(MemberRow.id == ids.members["priya"])
                        .values(relationship=Relationship.SELF, consent_given_at=None))
    account = services.household.create_account(rahul, ids.members["priya"], "Priya · Swing",
                                                "Trading")
    with pytest.raises(ValidationError, match=r"Priya Sharma \(self\) has not consented"):
        services.household.grant(rahul, account.id, ids.members["kamla"], "trade")


def test_a_member_whose_verification_was_rejected_gets_no_trade_access(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    rahul = login("rahul")
    account = next(a.id for a in services.household.list_accounts(rahul)
                   if a.label == "Rahul · Intraday")  # Rahul grants on his own: no consent
    services.household.set_verification(rahul, ids.members["kamla"], "rejected")
    before = _row_counts(services)
    with pytest.raises(ValidationError, match="Kamla Sharma's verification was rejected; a "
                                              "rejected member gets no trade access"):
        services.household.grant(rahul, account, ids.members["kamla"], "trade")
    assert _row_counts(services) == before
    services.household.grant(rahul, account, ids.members["kamla"], "view")  # view is fine


def test_a_rejected_member_trades_nothing_through_grants_or_own_accounts_but_still_views(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    rahul, kamla = login("rahul"), login("kamla")
    hh = services.household
    accounts = ids.accounts
    hh.grant(rahul, accounts["Rahul · Intraday"], ids.members["kamla"], "trade")  # verified
    tradable = {a.label for a in services.orders.tradable_accounts(kamla)}
    assert tradable == {"Kamla · Pension", "Rahul · Intraday"}
    hh.set_verification(rahul, ids.members["kamla"], "rejected")
    for label in ("Kamla · Pension", "Rahul · Intraday"):  # her own and a granted account
        with pytest.raises(PermissionDenied, match="Kamla Sharma's verification was rejected; "
                                                   "a rejected member gets no trade access"):
            hh.authorize_trade(kamla, accounts[label])
        assert hh.get_account(kamla, accounts[label]).label == label  # viewing stays
    assert services.orders.tradable_accounts(kamla) == []
    assert {a.label: a.my_permission for a in hh.list_accounts(kamla)} == {
        "Kamla · Pension": Permission.VIEW, "Rahul · Intraday": Permission.VIEW}
    hh.set_verification(rahul, ids.members["kamla"], "verified")
    assert hh.authorize_trade(kamla, accounts["Kamla · Pension"]).label == "Kamla · Pension"


def test_names_and_e_mails_at_their_column_sizes_are_stored_whole(
    services: Services, login: Callable[[str], Actor],
) -> None:
    rahul = login("rahul")
    email = "p" * 240 + "@example.co.in"  # 254 characters
    user = services.users.create_user(rahul, "newbie", "D" * 120, STRONG, "viewer",
                                      relationship="child", email=f"  {email} ")
    member = services.household.add_member(rahul, "M" * 120, "child")
    assert (user.display_name, user.email) == ("D" * 120, email)
    names = {m.id: m.full_name for m in services.household.list_members(rahul)}
    assert names[user.member_id or 0] == "D" * 120 and names[member.id] == "M" * 120


def test_typed_names_and_labels_are_stored_normalised(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    rahul = login("rahul")
    hh = services.household
    meera = hh.add_member(rahul, "  Meera\u00a0\u00a0 Sharma ", "child")
    assert meera.full_name == "Meera Sharma"
    account = hh.create_account(rahul, meera.id, "Ｍｅｅｒａ\u00a0·  Savings", "  Long   term ")
    assert (account.label, account.group) == ("Meera · Savings", "Long term")
    user = services.users.create_user(rahul, "meera", " Meera\u3000Sharma ", STRONG, "viewer")
    assert user.display_name == "Meera Sharma"  # an ideographic space is a space too
    # a joiner that shapes an Indian script is part of the name (Marathi's eyelash ra)
    assert hh.add_member(rahul, "Tara तर्\u200dहा", "child").full_name == "Tara तर्\u200dहा"


def test_a_refused_trade_names_the_account_by_its_label(
    services: Services, login: Callable[[str], Actor], ids: Ids,
) -> None:
    aarav = login("aarav")  # a viewer with a 'view' grant on Rahul · Long-term
    with pytest.raises(PermissionDenied, match=r"^Your role 'viewer' with 'view' access may "
                                               r"not trade account 'Rahul · Long-term'$"):
        services.household.authorize_trade(aarav, ids.accounts["Rahul · Long-term"])
