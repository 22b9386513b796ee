"""Who is calling the API: a scoped bearer token (one account) or a logged-in user with a role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.http import HttpRequest
from ninja.errors import AuthorizationError, HttpError
from ninja.security import HttpBearer, SessionAuth

from toki_dashboard.roles import Role, has_any_role
from usage.models import Account, ApiToken
from usage.services import authenticate_api_token


@dataclass(frozen=True)
class Caller:
    token: ApiToken | None = None
    user: Any = None

    def account(self, slug: str | None = None) -> Account:
        """The account a call is about: a token's own, or the one a user names (default: the first)."""
        if self.token is not None:
            if slug and slug != self.token.account.slug:
                raise AuthorizationError(message="This token belongs to another account.")
            return self.token.account
        accounts = Account.objects.order_by("pk")
        account = accounts.filter(slug=slug).first() if slug else accounts.first()
        if account is None:
            raise HttpError(404, f"No account {slug!r}." if slug else "No account exists yet.")
        return account


class TokenAuth(HttpBearer):
    """Authorization: Bearer toki_…; a valid token without the scope is a 403."""

    def __init__(self, scope: str) -> None:
        super().__init__()
        self.scope = scope

    def authenticate(self, request: HttpRequest, token: str) -> Caller | None:
        api_token = authenticate_api_token(token)
        if api_token is None:
            return None
        if not api_token.allows(self.scope):
            raise AuthorizationError(message=f"This token does not have the {self.scope!r} scope.")
        return Caller(token=api_token)


class SessionRoleAuth(SessionAuth):
    """A logged-in user holding one of the roles (Django's session cookie and CSRF rules)."""

    def __init__(self, *roles: Role) -> None:
        super().__init__()
        self.roles = roles

    def authenticate(self, request: HttpRequest, key: str | None) -> Caller | None:
        if not request.user.is_authenticated:
            return None
        if not has_any_role(request.user, *self.roles):
            raise AuthorizationError(message="Your role does not give access to this.")
        return Caller(user=request.user)


def read_access() -> list[Any]:
    return [TokenAuth("read"), SessionRoleAuth(Role.FINANCE, Role.ENGINEER)]
