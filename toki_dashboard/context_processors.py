from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.urls import reverse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

from toki_dashboard.roles import Role, roles_of

# (label, url name, roles that see it), in menu order.
NAVIGATION: list[tuple[str | Promise, str, frozenset[Role]]] = [
    (_("Overview"), "usage:overview", frozenset({Role.FINANCE, Role.ENGINEER})),
    (_("Spend"), "usage:spend", frozenset({Role.FINANCE, Role.ENGINEER})),
    (_("Models"), "usage:models", frozenset({Role.ENGINEER})),
    (_("Requests"), "usage:requests", frozenset({Role.ENGINEER})),
    (_("Errors"), "usage:errors", frozenset({Role.ENGINEER})),
    (_("Keys & teams"), "usage:keys", frozenset({Role.ENGINEER})),
    (_("Teams"), "usage:teams", frozenset({Role.FINANCE, Role.ENGINEER})),
    (_("Plans & wallet"), "billing:plans", frozenset({Role.FINANCE})),
    (_("Reports"), "billing:reports", frozenset({Role.FINANCE})),
    (_("Budgets"), "billing:budgets", frozenset({Role.FINANCE})),
    (_("Exchange rates"), "usage:exchange_rates", frozenset({Role.FINANCE})),
    (_("Import"), "usage:imports", frozenset({Role.FINANCE})),
    (_("Alerts"), "billing:alerts", frozenset({Role.ADMIN})),
    (_("Settings"), "usage:settings", frozenset({Role.ADMIN})),
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
