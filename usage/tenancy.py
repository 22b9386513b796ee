"""Accounts are tenants: the accounts a dashboard user may see, and the one a request is about.

A user sees the accounts they are a member of (`Membership`); the admin role (or a
superuser) sees every account. Pages and the API's session access ask `current_account`,
and nothing else picks an account for a person.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db.models import Q, QuerySet
from django.http import Http404, HttpRequest

from toki_dashboard.roles import Role, roles_of
from usage.models import Account

SESSION_KEY = "toki_account"
_CHOSEN = "_toki_current_account"

User = AbstractBaseUser | AnonymousUser


class NoAccount(Http404):
    """No account exists yet: pages say how to create one, anything else is a 404."""


def sees_every_account(user: User) -> bool:
    return Role.ADMIN in roles_of(user)


def visible_accounts(user: User) -> QuerySet[Account]:
    """The accounts `user` may see, oldest first."""
    accounts = Account.objects.order_by("pk")
    if not user.is_authenticated:
        return accounts.none()
    if sees_every_account(user):
        return accounts
    return accounts.filter(memberships__user_id=user.pk)


def member_emails(account: Account) -> set[str]:
    """The email addresses (lower case) of the active users who may see `account`: the only
    addresses its alerts may go to."""
    users = (
        get_user_model()
        .objects.filter(is_active=True)
        .filter(Q(is_superuser=True) | Q(groups__name=Role.ADMIN.value) | Q(account_memberships__account=account))
        .exclude(email="")
    )
    return {email.lower() for email in users.values_list("email", flat=True)}


def current_account(request: HttpRequest) -> Account:
    """The account this request is about: `?account=<slug>` (remembered in the session), else the
    one chosen last, else the first the user may see.

    PermissionDenied (403) when the user is not a member of the account asked for (an unknown
    slug too, so that names cannot be guessed; an admin gets a 404 for it), or of any account;
    NoAccount (404) when no account exists at all.
    """
    chosen = getattr(request, _CHOSEN, None)
    if chosen is None:
        chosen = _choose(request)
        setattr(request, _CHOSEN, chosen)
    return chosen


def current_account_or_none(request: HttpRequest) -> Account | None:
    """`current_account`, or None when no account exists yet (the pages then explain how to add one)."""
    try:
        return current_account(request)
    except NoAccount:
        return None


def shown_account(request: HttpRequest) -> Account | None:
    """The account to name in the page's frame (banners, the account chip); never raises, since
    the frame is drawn around error pages too."""
    try:
        return current_account(request)
    except (PermissionDenied, Http404):
        return None


def _choose(request: HttpRequest) -> Account:
    user = request.user
    visible = visible_accounts(user)
    session = getattr(request, "session", None)
    slug = request.GET.get("account")
    if slug:
        account = visible.filter(slug=slug).first()
        if account is None:
            if sees_every_account(user):
                raise Http404(f"No account “{slug[:100]}”.")
            raise PermissionDenied(f"You are not a member of the account “{slug[:100]}”.")
        if session is not None:
            session[SESSION_KEY] = account.slug
        return account
    remembered = session.get(SESSION_KEY) if session is not None else None
    account = (visible.filter(slug=remembered).first() if remembered else None) or visible.first()
    if account is not None:
        return account
    if user.is_authenticated and Account.objects.exists():
        raise PermissionDenied("You are not a member of any TOKI account yet.")
    raise NoAccount("No TOKI account yet.")
