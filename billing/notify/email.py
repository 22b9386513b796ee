"""Email: the text and HTML message of a notification, sent through Django's mail backend.

Written in the delivery's language (`AlertDelivery.language`: the channel's, or the one the
recipients chose for the dashboard): the subject, the summary and the rows stored in that
language when the figures were measured (`billing.alert_texts`), the template's sentences,
dates and numbers, all under `translation.override`."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from django.conf import settings
from django.core.mail import EmailMultiAlternatives
from django.template.loader import render_to_string
from django.urls import NoReverseMatch, reverse
from django.utils.dateformat import format as date_format
from django.utils.translation import get_language, override
from django.utils.translation import gettext as _

from billing import alert_texts
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
    return f"{date_format(local, _('D j M Y, H:i'))} ({settings.DASHBOARD_TIME_ZONE})"


def subject_of(notification: AlertNotification, language: str | None = None) -> str:
    """The subject line in `language` (default: the active one)."""
    return alert_texts.worded_in(notification.details, "subject", notification.subject, language or get_language())


def summary_of(notification: AlertNotification, language: str | None = None) -> str:
    details = notification.details or {}
    fallback = details.get("summary") or notification.subject
    return alert_texts.worded_in(details, "summary", fallback, language or get_language())


def rows_of(notification: AlertNotification, language: str | None = None) -> list[list[str]]:
    details = notification.details or {}
    return alert_texts.worded_in(details, "rows", details.get("rows") or [], language or get_language())


def context(notification: AlertNotification) -> dict[str, Any]:
    """What the templates show, in the active language."""
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
        "summary": summary_of(notification),
        "severity": alert_texts.severity_name(notification.severity),
        "rows": rows_of(notification),
        "language": get_language(),
        "page_url": page_url(page, account),
        "alerts_url": page_url(("billing:alerts",), account),
        "started": moment_label(episode.started_at) if episode else "",
        "resolved": moment_label(episode.resolved_at) if episode and episode.resolved_at else "",
        "time_zone": settings.DASHBOARD_TIME_ZONE,
    }


def build_message(
    notification: AlertNotification, recipients: list[str], language: str | None = None
) -> EmailMultiAlternatives:
    """The message in `language` (default: the site's)."""
    with override(alert_texts.supported(language)):
        data = context(notification)
        message = EmailMultiAlternatives(
            subject=subject_of(notification),
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
    build_message(delivery.notification, recipients, delivery.language).send(fail_silently=False)
    return Attempt(ok=True)
