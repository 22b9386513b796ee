from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from toki_dashboard.roles import Role, roles_of

# (label, url name, roles that see it); pages not built yet are left out of the menu.
NAVIGATION: list[tuple[str, str, frozenset[Role]]] = [
    ("Overview", "usage:overview", frozenset({Role.FINANCE, Role.ENGINEER})),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    roles = roles_of(request.user)
    current = request.resolver_match.view_name if request.resolver_match else ""
    items = [
        {"label": label, "url": reverse(name), "active": name == current}
        for label, name, allowed in NAVIGATION
        if roles & allowed
    ]
    return {"nav_items": items, "user_roles": sorted(r.value for r in roles)}
