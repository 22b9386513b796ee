"""What every page says about balances: the alert rules firing for the account shown."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse

from billing.models import AlertEpisode
from toki_dashboard.roles import Role, has_any_role
from usage.tenancy import shown_account

BANNER_LIMIT = 3


def firing_alerts(request: HttpRequest) -> dict[str, Any]:
    """The open episodes of enabled rules of the current account (one query); nothing for
    anonymous visitors or when there is no account."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    account = shown_account(request)
    if account is None:
        return {}
    episodes = list(
        AlertEpisode.objects.filter(account=account, resolved_at__isnull=True, rule__enabled=True)
        .select_related("rule")
        .order_by("started_at", "pk")[: BANNER_LIMIT + 1]
    )
    if not episodes:
        return {}
    link: tuple[str, str] | None = None
    if has_any_role(user, Role.ADMIN):
        link = ("Alerts", reverse("billing:alerts"))
    elif has_any_role(user, Role.FINANCE):
        link = ("Plans & wallet", reverse("billing:plans"))
    return {
        "firing_alerts": episodes[:BANNER_LIMIT],
        "firing_alerts_more": len(episodes) > BANNER_LIMIT,
        "firing_alerts_link": link,
        "firing_alerts_tz": settings.DASHBOARD_TIME_ZONE,
    }
