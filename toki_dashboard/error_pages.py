"""The 403 page: which role a page needs, the user's own roles, and whom to ask; and the 500
handler, which answers a database outage with a 503 to retry."""

from __future__ import annotations

import sys

from django.core.exceptions import PermissionDenied
from django.db import InterfaceError, OperationalError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.template.loader import render_to_string
from django.urls import reverse
from django.utils.translation import gettext
from django.views import defaults

from toki_dashboard.api import RETRY_AFTER_SECONDS
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


def server_error(request: HttpRequest) -> HttpResponse:
    """handler500. A database that refuses or drops connections (or a pool that stayed lent)
    gets a 503 that says so and asks to retry, as the API answers; any other error Django's
    500. Rendered without the context processors, which read the database."""
    if isinstance(sys.exc_info()[1], (OperationalError, InterfaceError)):
        html = render_to_string("503.html", {"path": request.get_full_path()})
        return HttpResponse(html, status=503, headers={"Retry-After": str(RETRY_AFTER_SECONDS)})
    return defaults.server_error(request)
