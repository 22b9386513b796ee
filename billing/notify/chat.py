"""Chat channels through apprise: one URL per channel says the service and its credentials
(`slack://…`, `msteams://…`, `discord://…`, `tgram://…`, `ntfy://…`, `json://…` and the
other services apprise knows), so no chat client is written here."""

from __future__ import annotations

import logging

import apprise
from django.utils.translation import gettext as _
from django.utils.translation import override

from billing import alert_texts
from billing.models import AlertChannel, AlertNotification
from billing.notify.base import Attempt
from billing.notify.email import rows_of, subject_of, summary_of


def is_supported(url: str) -> bool:
    """Whether apprise knows the service of `url` and can read it."""
    return apprise.Apprise().add(url)


def body_of(notification: AlertNotification, language: str | None = None) -> str:
    """The message in `language` (the channel's; default: the site's): what was stored in it."""
    language = alert_texts.supported(language)
    with override(language):
        lines = [summary_of(notification, language)]
        lines += [
            _("%(label)s: %(value)s") % {"label": label, "value": value}
            for label, value in rows_of(notification, language)[:8]
        ]
    return "\n".join(lines)


def send(channel: AlertChannel, notification: AlertNotification) -> Attempt:
    """Sends the notification in the channel's language."""
    language = alert_texts.supported(channel.language)
    notifier = apprise.Apprise()
    if not notifier.add(channel.url):
        return Attempt(ok=False, error="apprise does not recognise this URL")
    kind = apprise.NotifyType.SUCCESS if notification.severity == "ok" else apprise.NotifyType.WARNING
    if notification.severity == "critical":
        kind = apprise.NotifyType.FAILURE
    with apprise.LogCapture(level=logging.WARNING) as captured:
        delivered = bool(
            notifier.notify(
                title=subject_of(notification, language), body=body_of(notification, language), notify_type=kind
            )
        )
        log = captured.getvalue().strip()
    if delivered:
        return Attempt(ok=True)
    return Attempt(ok=False, error=(log.splitlines()[-1] if log else "the service refused the notification")[:500])
