"""Who may see what. Roles are Django groups; the admin role (or a superuser) sees everything."""

from __future__ import annotations

import enum
from collections.abc import Callable
from functools import wraps
from typing import Any, TypeVar

from django.contrib.auth.models import AbstractBaseUser, AnonymousUser
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest
from django.http.response import HttpResponseBase


class Role(enum.StrEnum):
    FINANCE = "finance"
    ENGINEER = "engineer"
    ADMIN = "admin"


def roles_of(user: AbstractBaseUser | AnonymousUser) -> frozenset[Role]:
    if not user.is_authenticated:
        return frozenset()
    if getattr(user, "is_superuser", False):
        return frozenset(Role)
    cached = getattr(user, "_toki_roles", None)
    if cached is None:
        names = set(user.groups.values_list("name", flat=True))  # type: ignore[attr-defined]  # an authenticated user is a User with groups
        cached = frozenset(role for role in Role if role.value in names)
        if Role.ADMIN in cached:
            cached = frozenset(Role)
        user._toki_roles = cached  # type: ignore[attr-defined]  # cached on the user for the request
    return cached


def has_any_role(user: AbstractBaseUser | AnonymousUser, *roles: Role) -> bool:
    return bool(roles_of(user) & set(roles))


ViewFunc = TypeVar("ViewFunc", bound=Callable[..., HttpResponseBase])


class RoleRequired(PermissionDenied):
    """A page outside the user's roles: the 403 page says which role it needs and who to ask."""

    def __init__(self, roles: frozenset[Role]) -> None:
        self.roles = roles
        super().__init__(f"This page needs the {' or '.join(sorted(roles))} role.")


def administrators(limit: int = 5) -> list[Any]:
    """Active users who can give others a role: admins and superusers, by name."""
    from django.contrib.auth import get_user_model
    from django.db.models import Q

    users = get_user_model().objects.filter(Q(is_superuser=True) | Q(groups__name=Role.ADMIN.value), is_active=True)
    return list(users.distinct().order_by("first_name", "last_name", "username")[:limit])


def role_required(*roles: Role) -> Callable[[ViewFunc], ViewFunc]:
    """403 unless the user holds one of `roles`; login itself is enforced by middleware."""

    def decorator(view: ViewFunc) -> ViewFunc:
        @wraps(view)
        def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponseBase:
            if not has_any_role(request.user, *roles):
                raise RoleRequired(frozenset(roles))
            return view(request, *args, **kwargs)

        return wrapper  # type: ignore[return-value]  # functools.wraps keeps the view's signature

    return decorator
