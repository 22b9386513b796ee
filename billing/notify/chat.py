"""Chat channels through apprise: one URL per channel says the service and its credentials
(`slack://…`, `msteams://…`, `discord://…`, `tgram://…`, `ntfy://…`, `json://…` and the
other services apprise knows), so no chat client is written here."""

from __future__ import annotations

import logging

import apprise

from billing.models import AlertChannel, AlertNotification
from billing.notify.base import Attempt


def is_supported(url: str) -> bool:
    """Whether apprise knows the service of `url` and can read it."""
    return apprise.Apprise().add(url)


def body_of(notification: AlertNotification) -> str:
    details = notification.details or {}
    lines = [details.get("summary") or notification.subject]
    lines += [f"{label}: {value}" for label, value in (details.get("rows") or [])[:8]]
    return "\n".join(lines)


def send(channel: AlertChannel, notification: AlertNotification) -> Attempt:
    notifier = apprise.Apprise()
    if not notifier.add(channel.url):
        return Attempt(ok=False, error="apprise does not recognise this URL")
    kind = apprise.NotifyType.SUCCESS if notification.severity == "ok" else apprise.NotifyType.WARNING
    if notification.severity == "critical":
        kind = apprise.NotifyType.FAILURE
    with apprise.LogCapture(level=logging.WARNING) as captured:
        delivered = bool(notifier.notify(title=notification.subject, body=body_of(notification), notify_type=kind))
        log = captured.getvalue().strip()
    if delivered:
        return Attempt(ok=True)
    return Attempt(ok=False, error=(log.splitlines()[-1] if log else "the service refused the notification")[:500])
