from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse

from toki_dashboard.roles import Role, roles_of

# (label, url name, roles that see it), in menu order.
NAVIGATION: list[tuple[str, str, frozenset[Role]]] = [
    ("Overview", "usage:overview", frozenset({Role.FINANCE, Role.ENGINEER})),
    ("Spend", "usage:spend", frozenset({Role.FINANCE, Role.ENGINEER})),
    ("Models", "usage:models", frozenset({Role.ENGINEER})),
    ("Requests", "usage:requests", frozenset({Role.ENGINEER})),
    ("Errors", "usage:errors", frozenset({Role.ENGINEER})),
    ("Keys & teams", "usage:keys", frozenset({Role.ENGINEER})),
    ("Plans & wallet", "billing:plans", frozenset({Role.FINANCE})),
    ("Reports", "billing:reports", frozenset({Role.FINANCE})),
    ("Budgets", "billing:budgets", frozenset({Role.FINANCE})),
    ("Exchange rates", "usage:exchange_rates", frozenset({Role.FINANCE})),
    ("Import", "usage:imports", frozenset({Role.FINANCE})),
    ("Alerts", "billing:alerts", frozenset({Role.ADMIN})),
    ("Settings", "usage:settings", frozenset({Role.ADMIN})),
]


def navigation(request: HttpRequest) -> dict[str, Any]:
    if not getattr(request, "user", None) or not request.user.is_authenticated:
        return {}
    roles = roles_of(request.user)
    items = []
    for label, name, allowed in NAVIGATION:
        if roles & allowed:
            url = reverse(name)
            items.append({"label": label, "url": url, "active": _within(request.path, url)})
    return {"nav_items": items, "user_roles": sorted(r.value for r in roles)}


def _within(path: str, section: str) -> bool:
    """A page belongs to the section whose URL starts its own: /models/gpt-4o/ is under Models."""
    return path == section if section == "/" else path.startswith(section)
