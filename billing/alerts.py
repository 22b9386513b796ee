"""Alerts, in one place for their callers: rules are checked in `billing.alert_checks`,
their episodes turned into notifications in `billing.alert_episodes`, and notifications
delivered to email, webhook and chat channels by `billing.notify`. This module adds the
"Send test" actions of the Alerts page."""

from __future__ import annotations

from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy

from billing import alert_texts
from billing.alert_checks import check_rule, describe, tiers_label
from billing.alert_episodes import (
    Outcome,
    accounts_with_rules,
    details_of,
    evaluate_account,
    evaluate_rule,
    schedule_evaluation,
    subject,
)
from billing.alert_facts import Check, Facts, day_label, moment_label
from billing.models import AlertChannel, AlertDelivery, AlertNotification, AlertRule, NotificationKind
from billing.notify.deliveries import create_notification, deliver, delivery_ids, resend_stuck, retry_delay, send_now

__all__ = [
    "Check",
    "Facts",
    "Outcome",
    "accounts_with_rules",
    "check_rule",
    "day_label",
    "deliver",
    "describe",
    "evaluate_account",
    "evaluate_rule",
    "moment_label",
    "resend_stuck",
    "retry_delay",
    "schedule_evaluation",
    "send_channel_test",
    "send_now",
    "send_test",
    "tiers_label",
]


def _deliver_now(notification: AlertNotification) -> list[AlertDelivery]:
    """Whoever clicked "Send test" wants to know now whether it arrives: one attempt each, at once."""
    for delivery_id in delivery_ids(notification):
        deliver(delivery_id)
    return list(notification.deliveries.select_related("channel").order_by("pk"))


def send_test(rule: AlertRule) -> list[AlertDelivery]:
    """Evaluate the rule now (without touching its episodes) and send what it says to its
    recipients and every channel of its account."""
    facts = Facts(rule.account, timezone.now())
    check = check_rule(rule, facts)
    details = details_of(check)
    alert_texts.prepend_row(
        details,
        gettext_lazy("Right now the rule"),
        gettext_lazy("fires") if check.firing else gettext_lazy("does not fire"),
    )
    notification = create_notification(
        account=rule.account,
        rule=rule,
        kind=NotificationKind.TEST,
        tier=check.tier,
        severity=check.severity,
        value=check.value,
        threshold=check.threshold,
        subject=subject(rule.account, NotificationKind.TEST, check),
        details=details,
    )
    AlertRule.objects.filter(pk=rule.pk).update(
        last_evaluated_at=facts.now,
        last_value=check.value,
        last_summary=alert_texts.in_site_language(check.summary)[:300],
        last_texts=alert_texts.summary_texts(check.summary),
    )
    return _deliver_now(notification)


def send_channel_test(channel: AlertChannel) -> AlertDelivery:
    """A test notification to one channel, at once."""
    account = channel.account
    summary = alert_texts.later(
        lambda: (
            _("Test of the %(kind)s channel %(channel)s of %(account)s")
            % {"kind": str(channel.get_kind_display()).lower(), "channel": channel.label, "account": account.name}
        )
    )
    rows = [
        (gettext_lazy("Channel"), channel.label),
        (gettext_lazy("What next"), gettext_lazy("Nothing: if this arrived, alerts reach you here.")),
    ]
    notification = create_notification(
        account=account,
        kind=NotificationKind.TEST,
        subject=alert_texts.later(lambda: f"[{account.name}] {summary}"),
        details=alert_texts.stored_details(summary, rows, page=["billing:alerts"], tiers=0),
        channels=[channel],
    )
    (delivery,) = _deliver_now(notification)
    return delivery
