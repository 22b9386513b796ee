"""Email: the text and HTML message of a notification, sent through Django's mail backend."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse

from billing.models import AlertDelivery, AlertNotification
from billing.notify.base import Attempt, NotDeliverable
from usage.models import Account
from usage.periods import dashboard_tz
from usage.tenancy import member_emails


def page_url(names: tuple[str, ...] | list[str], account: Account) -> str:
    """The dashboard page of the first URL name that exists, for `account`, at DASHBOARD_URL."""
    for name in names:
        try:
            path = reverse(name)
        except NoReverseMatch:
            continue
        return f"{settings.DASHBOARD_URL}{path}?{urlencode({'account': account.slug})}"
    return f"{settings.DASHBOARD_URL}/"


def moment_label(moment: Any) -> str:
    if moment is None:
        return "—"
    local = moment.astimezone(dashboard_tz())
    return f"{local:%a} {local.day} {local:%b %Y, %H:%M} ({settings.DASHBOARD_TIME_ZONE})"


def context(notification: AlertNotification) -> dict[str, Any]:
    account = notification.account
    episode = notification.episode
    details = notification.details or {}
    page = tuple(details.get("page") or ("billing:plans", "billing:alerts"))
    return {
        "email": notification,
        "notification": notification,
        "rule": notification.rule,
        "account": account,
        "episode": episode,
        "summary": details.get("summary") or notification.subject,
        "rows": details.get("rows") or [],
        "page_url": page_url(page, account),
        "alerts_url": page_url(("billing:alerts",), account),
        "started": moment_label(episode.started_at) if episode else "",
        "resolved": moment_label(episode.resolved_at) if episode and episode.resolved_at else "",
        "time_zone": settings.DASHBOARD_TIME_ZONE,
    }


def build_message(notification: AlertNotification, recipients: list[str]) -> EmailMultiAlternatives:
    data = context(notification)
    message = EmailMultiAlternatives(
        subject=notification.subject,
        body=render_to_string("billing/email/alert.txt", data),
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
    )
    message.attach_alternative(render_to_string("billing/email/alert.html", data), "text/html")
    return message


def send(delivery: AlertDelivery) -> Attempt:
    """Sends to the delivery's recipients who may still see the account when it is sent."""
    allowed = member_emails(delivery.notification.account)
    recipients = [address for address in delivery.recipients if address.lower() in allowed]
    if not recipients:
        raise NotDeliverable("no recipient who may see the account")
    build_message(delivery.notification, recipients).send(fail_silently=False)
    return Attempt(ok=True)
