"""Household members, trading accounts and per-account grants, with authorization on every call."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from sqlalchemy import bindparam, case, func, select
from sqlalchemy.orm import Session, aliased

from core import authz
from core.clock import now_ist
from core.domain import (
    Account,
    Actor,
    Broker,
    Grant,
    Household,
    Member,
    Permission,
    Relationship,
    Role,
    VerificationStatus,
    parse_choice,
)
from core.errors import ValidationError
from core.services.base import ServiceBase
from core.text import clean_name, same_name
from core.trading import GttStatus, OrderStatus, Side
from db.locks import lock_accounts
from db.models import (
    AccountGrantRow,
    AccountRow,
    GttRow,
    HouseholdRow,
    MemberRow,
    OrderRow,
    SessionRow,
    TradeRow,
    UserRow,
)


def _check_nothing_open(session: Session, row: AccountRow) -> None:
    """Refuse to close an account that still has open orders, active GTTs or shares.

    A closed account cannot be traded, so what it holds could no longer be sold, squared off
    or cancelled. The account lock waits for an order being recorded right now.
    """
    lock_accounts(session, [row.id])
    orders = session.scalar(select(func.count()).select_from(OrderRow).where(
        OrderRow.account_id == row.id, OrderRow.status.in_(
            [OrderStatus.PENDING, OrderStatus.OPEN, OrderStatus.PARTIALLY_FILLED]))) or 0
    gtts = session.scalar(select(func.count()).select_from(GttRow).where(
        GttRow.account_id == row.id, GttRow.status == GttStatus.ACTIVE)) or 0
    signed = case((TradeRow.side == Side.BUY, TradeRow.quantity), else_=-TradeRow.quantity)
    held = sorted(f"{symbol} {product}" for symbol, product, net in session.execute(
        select(TradeRow.symbol, TradeRow.product, func.sum(signed))
        .where(TradeRow.account_id == row.id)
        .group_by(TradeRow.symbol, TradeRow.product)) if net)
    if orders or gtts or held:
        raise ValidationError(
            f"Account {row.label!r} still has {orders} open order(s), {gtts} active GTT(s) and "
            f"{len(held)} open position(s) or holding(s)"
            + (f" ({', '.join(held)})" if held else "")
            + "; cancel and close them before closing the account")


LABEL_MAX = 60
GROUP_MAX = 40

def rejected_refusal(name: str) -> str:
    """Word the rule that a member whose verification was rejected trades nothing."""
    return f"{name}'s verification was rejected; a rejected member gets no trade access"


_ACTING_MEMBER = aliased(MemberRow)
# Built once: everything authorize_trade needs, in one statement (every order runs it). The
# role is NULL for a missing or disabled user; ``ended_at`` is that of the actor's session.
_TRADE_FACTS = (
    select(AccountRow.id, AccountRow.household_id, AccountRow.owner_member_id,
           AccountRow.broker, AccountRow.label, AccountRow.account_group, AccountRow.is_active,
           AccountRow.created_at, MemberRow.user_id, MemberRow.full_name,
           MemberRow.relationship,
           select(UserRow.role).where(UserRow.id == bindparam("user"),
                                      UserRow.is_active.is_(True)).scalar_subquery(),
           select(SessionRow.ended_at).where(SessionRow.id == bindparam("session"))
           .scalar_subquery(),
           select(AccountGrantRow.permission).where(
               AccountGrantRow.account_id == AccountRow.id,
               AccountGrantRow.member_id == bindparam("member")).scalar_subquery(),
           select(_ACTING_MEMBER.verification_status).where(
               _ACTING_MEMBER.id == bindparam("member")).scalar_subquery())
    .join(MemberRow, MemberRow.id == AccountRow.owner_member_id)
    .where(AccountRow.id == bindparam("account")))


def _label_and_group(label: str, group: str) -> tuple[str, str]:
    """Return an account's label and group cleaned, or refuse either naming its rule."""
    return clean_name(label, "Account label", LABEL_MAX), clean_name(group, "Account group",
                                                                      GROUP_MAX)


def _refuse_taken_label(
    session: Session, household_id: int, label: str, account_id: int | None = None
) -> None:
    """Refuse a label that reads the same as another account's of the household (any case)."""
    labels = session.execute(select(AccountRow.id, AccountRow.label).where(
        AccountRow.household_id == household_id)).all()
    if any(same_name(taken, label) for ident, taken in labels if ident != account_id):
        raise ValidationError(f"An account labelled {label!r} already exists")


def check_relationship(
    session: Session, household_id: int, relationship: Relationship, name: str
) -> None:
    """Refuse a second 'self' member: a household has one head, the others are related to them.

    ``check_new_member`` calls this for every new member.
    """
    if relationship is not Relationship.SELF:
        return
    head = session.scalar(select(MemberRow.full_name).where(
        MemberRow.household_id == household_id, MemberRow.relationship == Relationship.SELF))
    if head is not None:
        raise ValidationError(
            f"The household already has its 'self' member ({head}); relationships are to them: "
            f"choose how {name} is related")


def check_new_member(
    session: Session, household_id: int, relationship: Relationship, name: str
) -> None:
    """Refuse a member the household already has: a second 'self', or the same person twice.

    The same name (any case or spacing) with the same relationship is the same person: the
    pickers could not tell the two apart. Adding a member and creating a login with a
    relationship both call this.
    """
    check_relationship(session, household_id, relationship, name)
    same = session.execute(
        select(MemberRow.full_name, UserRow.username)
        .outerjoin(UserRow, UserRow.id == MemberRow.user_id)
        .where(MemberRow.household_id == household_id, MemberRow.relationship == relationship)
    ).all()
    for taken, username in same:
        if same_name(taken, name):
            login = f"login {username}" if username else "no login"
            raise ValidationError(
                f"The household already has the member {taken} ({relationship.value}, {login}); "
                "a second member with the same name and relationship is refused. To give them "
                "a login, pick them under 'Household member' on Users")


def attach_login(session: Session, household_id: int, member_id: int, user: UserRow) -> MemberRow:
    """Link the login ``user`` to the member ``member_id``, or refuse naming the rule.

    A member has at most one login and a login belongs to at most one member, both of one
    household. Creating a login for an existing member and linking an existing login both call
    this; the member's row is locked so two links of one member are decided one after the other.
    """
    member = session.get(MemberRow, member_id, with_for_update=True, populate_existing=True)
    if member is None or member.household_id != household_id:
        raise ValidationError(f"Member {member_id} is not in your household")
    if user.household_id != household_id:
        raise ValidationError(f"User {user.id} is not in your household")
    if member.user_id == user.id:
        raise ValidationError(
            f"{member.full_name} already has the login {user.username!r}; nothing was changed")
    if member.user_id is not None:
        taken = session.scalar(select(UserRow.username).where(UserRow.id == member.user_id))
        raise ValidationError(
            f"{member.full_name} already has the login {taken!r}; a member has at most one login")
    other = session.scalar(select(MemberRow.full_name).where(MemberRow.user_id == user.id))
    if other is not None:
        raise ValidationError(
            f"The login {user.username!r} already belongs to the member {other}; a login "
            "belongs to at most one member")
    member.user_id = user.id
    session.flush()
    session.info.get("members", {}).pop(member_id, None)
    return member


class HouseholdService(ServiceBase):
    """Members, accounts and grants of a household."""

    # -- helpers ---------------------------------------------------------------------------
    def _member(self, session: Session, member_id: int) -> Member | None:
        row = session.get(MemberRow, member_id)
        if row is None:
            return None
        username = session.scalar(select(UserRow.username).where(UserRow.id == row.user_id))
        given_by = session.scalar(
            select(UserRow.username).where(UserRow.id == row.consent_given_by_user_id)
        )
        return Member(
            id=row.id,
            household_id=row.household_id,
            full_name=row.full_name,
            relationship=row.relationship,
            user_id=row.user_id,
            username=username,
            consent_given_at=row.consent_given_at,
            consent_given_by=given_by,
            verification_status=row.verification_status,
            verified_at=row.verified_at,
        )

    def _facts(
        self, session: Session, actor: Actor, row: AccountRow, role: Role | None = None
    ) -> authz.AccountFacts:
        """Gather what authorization needs; pass ``role`` if this transaction already read it."""
        role = role or self._fresh_role(session, actor)
        owner = _member(session, row.owner_member_id)
        owner_user = owner.user_id if owner else None
        grant = None
        if actor.member_id is not None:
            grant = session.scalar(
                select(AccountGrantRow.permission).where(
                    AccountGrantRow.account_id == row.id,
                    AccountGrantRow.member_id == actor.member_id,
                )
            )
        acting = _member(session, actor.member_id) if actor.member_id is not None else None
        return authz.AccountFacts(
            actor_role=role,
            same_household=row.household_id == actor.household_id,
            is_owner=owner_user == actor.user_id,
            grant=grant,
            rejected=acting is not None
            and acting.verification_status is VerificationStatus.REJECTED,
        )

    def _to_account(
        self, session: Session, row: AccountRow, perm: Permission | None, manage: bool = False
    ) -> Account:
        owner = _member(session, row.owner_member_id)
        assert owner is not None  # noqa: S101 - FK guarantees it
        return Account(
            id=row.id,
            household_id=row.household_id,
            owner_member_id=row.owner_member_id,
            owner_name=owner.full_name,
            owner_relationship=owner.relationship,
            broker=row.broker,
            label=row.label,
            group=row.account_group,
            is_active=row.is_active,
            created_at=row.created_at,
            my_permission=perm,
            can_manage=manage,
        )

    def _account_for(
        self, session: Session, actor: Actor, account_id: int, need: str, action: str
    ) -> tuple[AccountRow, Permission | None]:
        """Load an account the actor may ``need`` ('view', 'trade' or 'manage'), else refuse.

        A missing id and a foreign id get the same refusal, so ids reveal nothing (no IDOR).
        """
        row = session.get(AccountRow, account_id)
        refusal = f"Account {account_id} is not available to you for {need}"
        if row is None:
            self._fresh_role(session, actor)
            self._deny(actor, action, f"account:{account_id}", refusal)
        facts = self._facts(session, actor, row)
        perm = authz.account_permission(facts)
        allowed = {
            "view": perm is not None,
            "trade": perm is Permission.TRADE,
            "manage": authz.may_manage_account(facts),
        }[need]
        if not allowed:
            if need == "trade" and facts.rejected and authz.account_permission(
                    replace(facts, rejected=False)) is Permission.TRADE:
                acting = _member(session, actor.member_id or 0)
                refusal = rejected_refusal(acting.full_name if acting else actor.username)
            elif perm is not None:
                refusal = (
                    f"Your role {facts.actor_role.value!r} with {perm.value!r} access may not "
                    f"{need} account {row.label!r}"
                )
            self._deny(actor, action, f"account:{account_id}", refusal)
        return row, perm

    def _require_household_manager(self, session: Session, actor: Actor, action: str) -> None:
        role = self._fresh_role(session, actor)
        if role not in authz.HOUSEHOLD_MANAGERS:
            self._deny(
                actor,
                action,
                f"household:{actor.household_id}",
                f"Your role {role.value!r} may not manage household members",
            )

    # -- household and members -------------------------------------------------------------
    def household(self, actor: Actor) -> Household:
        """Return the actor's household."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            row = session.get(HouseholdRow, actor.household_id)
            assert row is not None  # noqa: S101
            return Household(id=row.id, name=row.name, created_at=row.created_at)

    def create_household(self, actor: Actor, name: str) -> Household:
        """Create another household on the desk (super admin only)."""
        name = clean_name(name, "Household name")
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            if role is not Role.SUPER_ADMIN:
                self._deny(
                    actor,
                    "households.create",
                    "desk",
                    f"Your role {role.value!r} may not create households",
                )
            row = HouseholdRow(name=name)
            session.add(row)
            session.flush()
            self._audit(
                session,
                actor,
                "households.create",
                f"household:{row.id}",
                {"name": row.name},
                household_id=row.id,
            )
            return Household(id=row.id, name=row.name, created_at=row.created_at)

    def list_members(self, actor: Actor) -> list[Member]:
        """Return the members of the actor's household (any role may read them)."""
        with self.db.transaction() as session:
            self._fresh_role(session, actor)
            ids = session.scalars(
                select(MemberRow.id)
                .where(MemberRow.household_id == actor.household_id)
                .order_by(MemberRow.id)
            ).all()
            return [m for i in ids if (m := self._member(session, i)) is not None]

    def add_member(
        self, actor: Actor, full_name: str, relationship: str, user_id: int | None = None
    ) -> Member:
        """Add a person to the household, optionally linked to an existing login."""
        rel = parse_choice(Relationship, relationship, "relationship")
        full_name = clean_name(full_name, "Member name")
        with self.db.transaction() as session:
            self._require_household_manager(session, actor, "members.add")
            check_new_member(session, actor.household_id, rel, full_name)
            if user_id is not None:
                user = session.get(UserRow, user_id)
                if user is None or user.household_id != actor.household_id:
                    raise ValidationError(f"User {user_id} is not in your household")
                if session.scalar(select(MemberRow.id).where(MemberRow.user_id == user_id)):
                    raise ValidationError(f"User {user.username!r} is already a member")
            row = MemberRow(
                household_id=actor.household_id,
                full_name=full_name,
                relationship=rel,
                user_id=user_id,
            )
            session.add(row)
            session.flush()
            self._audit(
                session,
                actor,
                "members.add",
                f"member:{row.id}",
                {"name": row.full_name, "relationship": rel.value},
            )
            member = self._member(session, row.id)
            assert member is not None  # noqa: S101 - just flushed
            return member

    def link_login(self, actor: Actor, member_id: int, user_id: int) -> Member:
        """Link an existing login that has no member to a member that has no login (admins).

        The login then sees what the member owns and is granted, from its next page.
        """
        action = "members.link_login"
        with self.db.transaction() as session:
            self._require_household_manager(session, actor, action)
            self._household_member(session, actor, member_id, action)
            user = session.get(UserRow, user_id)
            if user is None or user.household_id != actor.household_id:
                self._deny(actor, action, f"user:{user_id}",
                           f"User {user_id} is not in your household")
            row = attach_login(session, actor.household_id, member_id, user)
            self._audit(session, actor, action, f"member:{member_id}",
                        {"name": row.full_name, "user": user.username})
            member = self._member(session, member_id)
            assert member is not None  # noqa: S101 - just linked
            return member

    def _household_member(
        self, session: Session, actor: Actor, member_id: int, action: str
    ) -> MemberRow:
        row = session.get(MemberRow, member_id)
        if row is None or row.household_id != actor.household_id:
            self._deny(
                actor, action, f"member:{member_id}", f"Member {member_id} is not in your household"
            )
        return row

    def record_consent(self, actor: Actor, member_id: int, note: str) -> None:
        """Record that the member consented to the desk acting for them, by whom and when."""
        if not note.strip():
            raise ValidationError(
                "Consent needs a note saying how it was given (e.g. 'signed form')"
            )
        with self.db.transaction() as session:
            self._require_household_manager(session, actor, "members.consent")
            row = self._household_member(session, actor, member_id, "members.consent")
            row.consent_given_at = now_ist()
            row.consent_given_by_user_id = actor.user_id
            row.consent_note = note.strip()[:500]
            self._audit(
                session, actor, "members.consent", f"member:{member_id}", {"note": row.consent_note}
            )

    def set_verification(self, actor: Actor, member_id: int, status: str) -> None:
        """Set a member's verification status (unverified, verified, rejected)."""
        parsed = parse_choice(VerificationStatus, status, "verification status")
        with self.db.transaction() as session:
            self._require_household_manager(session, actor, "members.verify")
            row = self._household_member(session, actor, member_id, "members.verify")
            row.verification_status = parsed
            row.verified_at = now_ist() if parsed is VerificationStatus.VERIFIED else None
            row.verified_by_user_id = actor.user_id
            self._audit(
                session, actor, "members.verify", f"member:{member_id}", {"status": parsed.value}
            )

    # -- accounts --------------------------------------------------------------------------
    def list_accounts(self, actor: Actor, include_closed: bool = False) -> list[Account]:
        """Return the accounts the actor may see, each with the actor's permission."""
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            query = select(AccountRow).order_by(AccountRow.id)
            if role is not Role.SUPER_ADMIN:
                query = query.where(AccountRow.household_id == actor.household_id)
            if not include_closed:
                query = query.where(AccountRow.is_active.is_(True))
            result = []
            for row in session.scalars(query).all():
                facts = self._facts(session, actor, row, role)
                perm = authz.account_permission(facts)
                if perm is not None:
                    result.append(
                        self._to_account(session, row, perm, authz.may_manage_account(facts))
                    )
            return result

    def account_owner_options(self, actor: Actor) -> list[Member]:
        """Return the members the actor may open an account for (empty: none)."""
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            ids = session.scalars(
                select(MemberRow.id)
                .where(MemberRow.household_id == actor.household_id)
                .order_by(MemberRow.id)
            ).all()
            options = []
            for member_id in ids:
                member = self._member(session, member_id)
                if member and authz.may_create_account_for(
                    role, True, member.user_id == actor.user_id
                ):
                    options.append(member)
            return options

    def get_account(self, actor: Actor, account_id: int) -> Account:
        """Return one account the actor may view."""
        with self.db.transaction() as session:
            row, perm = self._account_for(session, actor, account_id, "view", "accounts.view")
            return self._to_account(session, row, perm)

    def authorize_trade(self, actor: Actor, account_id: int) -> Account:
        """Return the account if the actor may place orders on it; every order path calls this.

        The user, the session, the account, its owner and the actor's grant are read fresh in
        one statement; anything but a permitted trade on an open account is decided again by
        the general path, which words and audits the refusal.
        """
        with self.db.reading() as session:  # reads only; a refusal is audited on its own
            found = session.connection().execute(_TRADE_FACTS, {
                "account": account_id, "user": actor.user_id, "session": actor.session_id,
                "member": actor.member_id}).one_or_none()
            if found is not None:
                allowed = _trade_account(actor, tuple(found))
                if allowed is not None:
                    return allowed
            row, perm = self._account_for(session, actor, account_id, "trade", "accounts.trade")
            if not row.is_active:
                raise ValidationError(f"Account {row.label!r} is closed")
            return self._to_account(session, row, perm)

    def authorize_manage(self, actor: Actor, account_id: int) -> Account:
        """Return the account if the actor may manage it (rename, close, grant, fund)."""
        with self.db.transaction() as session:
            row, perm = self._account_for(session, actor, account_id, "manage", "accounts.manage")
            return self._to_account(session, row, perm, manage=True)

    def create_account(
        self, actor: Actor, owner_member_id: int, label: str, group: str, broker: str = "paper"
    ) -> Account:
        """Open a trading account owned by a household member."""
        parsed_broker = parse_choice(Broker, broker, "broker")
        label, group = _label_and_group(label, group)
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            owner = session.get(MemberRow, owner_member_id)
            same = owner is not None and owner.household_id == actor.household_id
            for_self = owner is not None and owner.user_id == actor.user_id
            if owner is None or not authz.may_create_account_for(role, same, for_self):
                self._deny(
                    actor,
                    "accounts.create",
                    f"member:{owner_member_id}",
                    f"Your role {role.value!r} may not open an account for "
                    + (owner.full_name if owner is not None and same  # a foreign one unnamed
                       else f"member {owner_member_id}"),
                )
            _refuse_taken_label(session, owner.household_id, label)
            row = AccountRow(
                household_id=owner.household_id,
                owner_member_id=owner.id,
                broker=parsed_broker,
                label=label,
                account_group=group,
            )
            session.add(row)
            session.flush()
            self._audit(
                session,
                actor,
                "accounts.create",
                f"account:{row.id}",
                {"label": label, "group": group, "owner_member_id": owner.id},
                household_id=owner.household_id,
            )
            return self._to_account(
                session, row, authz.account_permission(self._facts(session, actor, row))
            )

    def update_account(
        self, actor: Actor, account_id: int, label: str, group: str, is_active: bool
    ) -> None:
        """Rename, regroup, close or reopen an account."""
        label, group = _label_and_group(label, group)
        with self.db.transaction() as session:
            row, _ = self._account_for(session, actor, account_id, "manage", "accounts.update")
            _refuse_taken_label(session, row.household_id, label, row.id)
            if row.is_active and not is_active:
                _check_nothing_open(session, row)
            before = {"label": row.label, "group": row.account_group, "active": row.is_active}
            row.label, row.account_group, row.is_active = label, group, is_active
            self._audit(
                session,
                actor,
                "accounts.update",
                f"account:{row.id}",
                {"before": before, "after": {"label": label, "group": group, "active": is_active}},
                household_id=row.household_id,
            )

    # -- grants ----------------------------------------------------------------------------
    def list_grants(self, actor: Actor) -> list[Grant]:
        """Return grants on the accounts the actor may manage or that name the actor."""
        with self.db.transaction() as session:
            role = self._fresh_role(session, actor)
            query = (
                select(AccountGrantRow, AccountRow, MemberRow, UserRow.username)
                .join(AccountRow, AccountRow.id == AccountGrantRow.account_id)
                .join(MemberRow, MemberRow.id == AccountGrantRow.member_id)
                .join(UserRow, UserRow.id == AccountGrantRow.granted_by_user_id)
                .order_by(AccountGrantRow.id)
            )
            if role is not Role.SUPER_ADMIN:
                query = query.where(AccountRow.household_id == actor.household_id)
            grants = []
            for grant, account, member, by in session.execute(query).all():
                facts = self._facts(session, actor, account, role)
                if authz.may_manage_account(facts) or member.id == actor.member_id:
                    grants.append(
                        Grant(
                            id=grant.id,
                            account_id=account.id,
                            account_label=account.label,
                            member_id=member.id,
                            member_name=member.full_name,
                            permission=grant.permission,
                            granted_by=by,
                            granted_at=grant.created_at,
                        )
                    )
            return grants

    def grant(self, actor: Actor, account_id: int, member_id: int, permission: str) -> None:
        """Give (or change) a member's view/trade access to an account."""
        perm = parse_choice(Permission, permission, "permission")
        with self.db.transaction() as session:
            row, _ = self._account_for(session, actor, account_id, "manage", "grants.set")
            member = session.get(MemberRow, member_id)
            if member is None or member.household_id != row.household_id:
                raise ValidationError(
                    f"Member {member_id} is not in this account's household; grants stay "
                    "within the family"
                )
            if member.id == row.owner_member_id:
                raise ValidationError("The owner already has full access to their account")
            grantee_role = session.scalar(select(UserRow.role).where(UserRow.id == member.user_id))
            if perm is Permission.TRADE and grantee_role is Role.VIEWER:
                raise ValidationError(
                    f"{member.full_name} has the viewer role, which never trades; grant 'view'"
                )
            owner = session.get(MemberRow, row.owner_member_id)
            # Others may trade an account only with its owner's recorded consent, unless the
            # owner grants it themself (a relationship of "self" exempts nobody else's grant).
            if (
                perm is Permission.TRADE
                and owner is not None
                and owner.id != actor.member_id
                and owner.consent_given_at is None
            ):
                raise ValidationError(
                    f"{owner.full_name} ({owner.relationship.value}) has not consented to others "
                    "trading their account; record their consent on the Members tab first"
                )
            if perm is Permission.TRADE and member.verification_status is (
                    VerificationStatus.REJECTED):
                raise ValidationError(
                    f"{rejected_refusal(member.full_name)} (verify them on the Members tab "
                    "first)")
            existing = session.scalar(
                select(AccountGrantRow).where(
                    AccountGrantRow.account_id == account_id, AccountGrantRow.member_id == member_id
                )
            )
            if existing is None:
                session.add(
                    AccountGrantRow(
                        account_id=account_id,
                        member_id=member_id,
                        permission=perm,
                        granted_by_user_id=actor.user_id,
                        created_at=now_ist(),
                    )
                )
            else:
                existing.permission = perm
                existing.granted_by_user_id = actor.user_id
            self._audit(
                session,
                actor,
                "grants.set",
                f"account:{account_id}",
                {"member_id": member_id, "permission": perm.value},
                household_id=row.household_id,
            )

    def revoke(self, actor: Actor, account_id: int, member_id: int) -> None:
        """Remove a member's grant on an account."""
        with self.db.transaction() as session:
            row, _ = self._account_for(session, actor, account_id, "manage", "grants.revoke")
            existing = session.scalar(
                select(AccountGrantRow).where(
                    AccountGrantRow.account_id == account_id, AccountGrantRow.member_id == member_id
                )
            )
            if existing is None:
                member = session.get(MemberRow, member_id)
                who = (member.full_name if member and member.household_id == row.household_id
                       else f"Member {member_id}")  # a foreign member is not named
                raise ValidationError(f"{who} has no grant on the account {row.label!r}")
            session.delete(existing)
            self._audit(
                session,
                actor,
                "grants.revoke",
                f"account:{account_id}",
                {"member_id": member_id},
                household_id=row.household_id,
            )


def _trade_account(actor: Actor, found: tuple[Any, ...]) -> Account | None:
    """Return the account of a ``_TRADE_FACTS`` row if the actor may trade it now, else None."""
    (ident, household_id, owner_member_id, broker, label, group, is_active, created_at,
     owner_user_id, owner_name, relationship, role, ended_at, grant, verification) = found
    if role is None or ended_at is not None or not is_active:
        return None
    facts = authz.AccountFacts(actor_role=role, same_household=household_id == actor.household_id,
                               is_owner=owner_user_id == actor.user_id, grant=grant,
                               rejected=verification is VerificationStatus.REJECTED)
    if authz.account_permission(facts) is not Permission.TRADE:
        return None
    return Account(id=ident, household_id=household_id, owner_member_id=owner_member_id,
                   owner_name=owner_name, owner_relationship=relationship, broker=broker,
                   label=label, group=group, is_active=is_active, created_at=created_at,
                   my_permission=Permission.TRADE)


def _member(session: Session, member_id: int) -> MemberRow | None:
    """Return a member, read once per transaction.

    The session's identity map holds rows weakly, so a row nobody references any more is read
    again by the next ``get``; the transaction's ``info`` keeps the members it has read.
    """
    members: dict[int, MemberRow | None] = session.info.setdefault("members", {})
    if member_id not in members:
        members[member_id] = session.get(MemberRow, member_id)
    return members[member_id]

