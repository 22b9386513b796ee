"""Notifications and their deliveries: who is told, and each attempt to tell them.

`create_notification` records one transition (or a test) and a delivery per target: the
rule's own email recipients, then every enabled channel of the account. It runs inside the
transaction that claimed the transition, so the claim and the deliveries commit together;
the sending happens after the commit (`send_after_commit`), never inside a transaction.

`deliver` makes one attempt, claimed first (status → sending) so that a retry and a sweep
never send the same delivery at once; a failure is recorded (attempts, response code,
error) and retried by a Celery task with exponential backoff until
ALERT_DELIVERY_MAX_ATTEMPTS; the periodic evaluation also sends what a lost task left.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from decimal import Decimal

from django.conf import settings
from django.db import transaction
from django.db.models import F, Q
from django.utils import timezone

from billing import alert_texts
from billing.models import (
    AlertChannel,
    AlertDelivery,
    AlertNotification,
    AlertRule,
    ChannelKind,
    DeliveryStatus,
    NotificationKind,
)
from billing.notify import chat, email, webhook
from billing.notify.base import Attempt, NotDeliverable
from toki_dashboard import background
from usage.models import Account

logger = logging.getLogger(__name__)

STALE_PENDING = timedelta(minutes=10)


def _delivery(
    notification: AlertNotification, channel: AlertChannel | None, recipients: list[str], language: str = ""
) -> AlertDelivery:
    """A delivery to a channel (in the channel's language) or to some of a rule's recipients
    (in `language`, the one they chose for the dashboard)."""
    if channel is None:
        return AlertDelivery(
            notification=notification,
            kind=ChannelKind.EMAIL,
            target=", ".join(recipients)[:300],
            recipients=recipients,
            language=alert_texts.supported(language),
        )
    return AlertDelivery(
        notification=notification,
        channel=channel,
        kind=channel.kind,
        target=(channel.address if channel.kind == ChannelKind.EMAIL else channel.hint)[:300],
        recipients=[channel.address] if channel.kind == ChannelKind.EMAIL else [],
        language=alert_texts.supported(channel.language),
    )


def create_notification(
    *,
    account: Account,
    kind: str,
    subject: str,
    details: dict[str, object],
    rule: AlertRule | None = None,
    episode_id: int | None = None,
    tier: int = 0,
    severity: str = "ok",
    value: Decimal | int | None = None,
    threshold: Decimal | int | None = None,
    channels: list[AlertChannel] | None = None,
    include_rule_recipients: bool = True,
) -> AlertNotification:
    """The notification and a pending delivery per target (every enabled channel of the
    account unless `channels` names some). A rule's recipients who read different languages
    get a delivery per language. `subject` may be worded lazily: it is stored in the site's
    language, and in every language beside the details' other texts."""
    subject = alert_texts.add_subject(details, subject)
    notification = AlertNotification.objects.create(
        account=account,
        rule=rule,
        episode_id=episode_id,
        kind=kind,
        tier=tier,
        severity=severity,
        value=value,
        threshold=threshold,
        subject=subject[:300],
        details=details,
    )
    deliveries = []
    recipients = rule.allowed_recipients() if rule is not None and include_rule_recipients else []
    for language, addresses in alert_texts.languages_of(recipients).items():
        deliveries.append(_delivery(notification, None, addresses, language))
    targets = channels if channels is not None else AlertChannel.objects.filter(account=account, enabled=True)
    deliveries += [_delivery(notification, channel, []) for channel in targets]
    AlertDelivery.objects.bulk_create(deliveries)
    return notification


def delivery_ids(notification: AlertNotification) -> list[int]:
    return list(notification.deliveries.order_by("pk").values_list("pk", flat=True))


def _attempt(delivery: AlertDelivery) -> Attempt:
    notification = delivery.notification
    if delivery.channel_id is None and delivery.kind != ChannelKind.EMAIL:
        raise NotDeliverable("the channel was removed")
    if delivery.kind == ChannelKind.EMAIL:
        return email.send(delivery)
    channel = delivery.channel
    assert channel is not None
    if delivery.kind == ChannelKind.WEBHOOK:
        return webhook.send(channel, notification)
    return chat.send(channel, notification)


def retry_delay(attempts: int) -> float:
    base = settings.ALERT_DELIVERY_RETRY_BASE_SECONDS
    return min(settings.ALERT_DELIVERY_RETRY_MAX_SECONDS, base * 2 ** max(attempts - 1, 0))


def deliver(delivery_id: int) -> str:
    """One attempt at a delivery that is pending or failed; returns its new status. Call it
    outside any transaction: a slow server must not hold locks, and a rollback must not
    un-send what was sent."""
    now = timezone.now()
    claimed = AlertDelivery.objects.filter(
        pk=delivery_id, status__in=[DeliveryStatus.PENDING, DeliveryStatus.FAILED]
    ).update(status=DeliveryStatus.SENDING, attempts=F("attempts") + 1, last_attempt_at=now)
    if claimed != 1:
        return AlertDelivery.objects.filter(pk=delivery_id).values_list("status", flat=True).first() or "missing"
    delivery = AlertDelivery.objects.select_related(
        "notification__account", "notification__rule__budget", "notification__episode", "channel"
    ).get(pk=delivery_id)
    final = False
    try:
        attempt = _attempt(delivery)
    except NotDeliverable as exc:
        attempt, final = Attempt(ok=False, error=str(exc)), True
    except Exception as exc:  # SMTP, socket and template errors alike are recorded and retried
        attempt = Attempt(ok=False, error=f"{type(exc).__name__}: {exc}")
    if attempt.ok:
        AlertDelivery.objects.filter(pk=delivery_id).update(
            status=DeliveryStatus.SENT, sent_at=timezone.now(), error="", response_code=attempt.response_code
        )
        return DeliveryStatus.SENT
    is_test = delivery.notification.kind == NotificationKind.TEST
    final = final or is_test or delivery.attempts >= settings.ALERT_DELIVERY_MAX_ATTEMPTS
    status = DeliveryStatus.GAVE_UP if final else DeliveryStatus.FAILED
    AlertDelivery.objects.filter(pk=delivery_id).update(
        status=status, error=attempt.error[:2000], response_code=attempt.response_code
    )
    logger.warning(
        "alert delivery %s (%s) failed, attempt %s: %s", delivery_id, delivery.kind, delivery.attempts, attempt.error
    )
    return status


def send_now(delivery_id: int) -> str:
    """Try at once; on failure hand the delivery to the retrying task."""
    status = deliver(delivery_id)
    if status == DeliveryStatus.FAILED:
        attempts = AlertDelivery.objects.filter(pk=delivery_id).values_list("attempts", flat=True).first() or 1
        try:
            background.enqueue("billing.tasks.send_alert_delivery", delivery_id, countdown=retry_delay(attempts))
        except Exception:  # the broker is down: the periodic sweep retries it
            logger.exception("could not enqueue the retry of alert delivery %s", delivery_id)
    return status


def send_after_commit(notification: AlertNotification) -> None:
    """Every delivery of the notification, once the transaction that created it commits."""

    def send_all() -> None:
        for delivery_id in delivery_ids(notification):
            send_now(delivery_id)

    transaction.on_commit(send_all, robust=True)


def resend_stuck(*, now: datetime | None = None) -> int:
    """Deliveries a lost task left behind: pending for a while, or failed and not retried in time."""
    now = now or timezone.now()
    stuck = AlertDelivery.objects.filter(
        Q(status=DeliveryStatus.PENDING, created_at__lt=now - STALE_PENDING)
        | Q(
            status=DeliveryStatus.FAILED,
            last_attempt_at__lt=now - timedelta(seconds=settings.ALERT_DELIVERY_RETRY_MAX_SECONDS * 2),
        )
    ).values_list("pk", flat=True)[:100]
    ids = list(stuck)
    for delivery_id in ids:
        send_now(delivery_id)
    return len(ids)
