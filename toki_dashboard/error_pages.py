"""The 403 page: which role a page needs, the user's own roles, and whom to ask."""

from __future__ import annotations

from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.urls import reverse
from django.utils.translation import gettext

from toki_dashboard.context_processors import NAVIGATION
from toki_dashboard.roles import Role, RoleRequired, administrators


def _page_name(path: str) -> str:
    """The menu section a path belongs to ("Plans & wallet" for /plans/forecast-chart/)."""
    best = ""
    name = gettext("This page")
    for label, url_name, _roles in NAVIGATION:
        url = reverse(url_name)
        within = path == url if url == "/" else path.startswith(url)
        if within and len(url) > len(best):
            best, name = url, str(label)
    return name


def permission_denied(request: HttpRequest, exception: PermissionDenied | None = None) -> HttpResponse:
    """handler403: a role that is missing is named, with the administrators who can give it;
    any other refusal (an account one is not a member of) says what it says."""
    context: dict[str, object] = {"exception": str(exception or "")}
    if isinstance(exception, RoleRequired):
        roles = [role.value for role in Role if role in exception.roles and role != Role.ADMIN]
        context |= {
            "exception": "",
            "page_name": _page_name(request.path),
            "required_roles": roles or [Role.ADMIN.value],
            "administrators": administrators() if request.user.is_authenticated else [],
        }
    return render(request, "403.html", context, status=403)
