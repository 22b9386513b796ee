"""Who is calling the API: a scoped bearer token (one account) or a logged-in user with a role."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest
from ninja.errors import AuthorizationError, HttpError
from ninja.security import HttpBearer, SessionAuth

from toki_dashboard.roles import Role, has_any_role
from usage.models import Account, ApiToken
from usage.services import authenticate_api_token
from usage.tenancy import current_account


@dataclass(frozen=True)
class Caller:
    token: ApiToken | None = None
    request: HttpRequest | None = None  # a logged-in user's request

    @property
    def user(self) -> Any:
        return self.request.user if self.request is not None else None

    def account(self, slug: str | None = None) -> Account:
        """The account a call is about: a token's own; for a user, the one the page would show
        (`?account=`, which must be one of theirs, else their current one)."""
        if self.token is not None:
            if slug and slug != self.token.account.slug:
                raise AuthorizationError(message="This token belongs to another account.")
            return self.token.account
        assert self.request is not None
        try:
            return current_account(self.request)
        except PermissionDenied as exc:
            raise AuthorizationError(message=str(exc)) from exc
        except Http404 as exc:
            raise HttpError(404, str(exc)) from exc


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
        return Caller(request=request)


def read_access(*roles: Role) -> list[Any]:
    """A token with the `read` scope, or a session of a user holding one of `roles` (by default the
    roles that see the Overview; request-level data is for engineers, as on the pages)."""
    return [TokenAuth("read"), SessionRoleAuth(*(roles or (Role.FINANCE, Role.ENGINEER)))]
