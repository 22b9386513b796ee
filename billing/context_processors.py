"""What every page says about balances: the alert rules firing for the account shown.

The banner says what each rule says *now*, with the balances every other surface shows
(billing.balances), not the text stored when the rule was last evaluated: a page and its
banner never disagree about a figure. It is read only when a page draws the banner, so
htmx fragments, which do not, cost nothing."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.urls import reverse
from django.utils import timezone
from django.utils.functional import SimpleLazyObject
from django.utils.translation import get_language, gettext_lazy

from billing import alerts
from billing.alert_texts import rule_name, worded_in
from billing.models import AlertEpisode
from toki_dashboard.roles import Role, has_any_role
from usage.models import Account
from usage.tenancy import shown_account

BANNER_LIMIT = 3
logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class FiringAlert:
    summary: str
    rule_name: str
    started_at: datetime


@dataclass(frozen=True)
class AlertBanner:
    alerts: list[FiringAlert]
    more: bool
    link: tuple[str, str] | None

    def __bool__(self) -> bool:
        return bool(self.alerts)


def _banner(request: HttpRequest, account: Account) -> AlertBanner:
    episodes = list(
        AlertEpisode.objects.filter(account=account, resolved_at__isnull=True, rule__enabled=True)
        .select_related("rule__account", "rule__budget")
        .order_by("started_at", "pk")
    )
    found: list[FiringAlert] = []
    facts = alerts.Facts(account, timezone.now()) if episodes else None
    for episode in episodes:
        try:
            check = alerts.check_rule(episode.rule, facts)  # type: ignore[arg-type]  # facts exist whenever there are episodes
        except Exception:  # a rule that cannot be checked still shows what it said last
            logger.exception("alert rule %s could not be checked for the banner", episode.rule_id)
            said = worded_in(episode.last_details, "summary", episode.last_summary or episode.summary, get_language())
            found.append(FiringAlert(said, rule_name(episode.rule), episode.started_at))
            continue
        if check.firing:  # one that stopped firing is resolved at the next evaluation
            found.append(FiringAlert(str(check.summary), rule_name(episode.rule), episode.started_at))
    link: tuple[str, str] | None = None
    if has_any_role(request.user, Role.ADMIN):
        link = (str(gettext_lazy("Alerts")), reverse("billing:alerts"))
    elif has_any_role(request.user, Role.FINANCE):
        link = (str(gettext_lazy("Plans & wallet")), reverse("billing:plans"))
    return AlertBanner(found[:BANNER_LIMIT], len(found) > BANNER_LIMIT, link)


def firing_alerts(request: HttpRequest) -> dict[str, Any]:
    """The alert banner of the current account (nothing for anonymous visitors or without an
    account), computed when a template first reads it."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated:
        return {}
    account = shown_account(request)
    if account is None:
        return {}
    return {
        "alert_banner": SimpleLazyObject(lambda: _banner(request, account)),
        "firing_alerts_tz": settings.DASHBOARD_TIME_ZONE,
    }
