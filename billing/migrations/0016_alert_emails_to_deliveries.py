# Every alert email sent so far becomes a notification with one email delivery, so the
# history and the delivery log keep it; episodes learn what they had notified.

from django.db import migrations
from django.db.models import F
from django.db.models.functions import Coalesce


def forwards(apps, schema_editor):
    AlertEmail = apps.get_model("billing", "AlertEmail")
    AlertEpisode = apps.get_model("billing", "AlertEpisode")
    AlertNotification = apps.get_model("billing", "AlertNotification")
    AlertDelivery = apps.get_model("billing", "AlertDelivery")
    AlertEpisode.objects.filter(notified_at__isnull=False).update(
        notified_severity=1, last_notified_at=Coalesce(F("reminded_at"), F("notified_at"))
    )
    for email in AlertEmail.objects.select_related("rule").order_by("pk").iterator():
        notification = AlertNotification.objects.create(
            account_id=email.rule.account_id,
            rule_id=email.rule_id,
            episode_id=email.episode_id,
            kind=email.kind,
            tier=0 if email.kind in ("resolved", "test") else 1,
            severity="ok" if email.kind in ("resolved", "test") else "warning",
            subject=email.subject,
            details=email.details,
            created_at=email.created_at,
        )
        AlertDelivery.objects.create(
            notification=notification,
            kind="email",
            target=", ".join(email.recipients)[:300],
            recipients=email.recipients,
            status=email.status,
            attempts=email.attempts,
            error=email.error,
            created_at=email.created_at,
            last_attempt_at=email.last_attempt_at,
            sent_at=email.sent_at,
        )


def backwards(apps, schema_editor):
    AlertEmail = apps.get_model("billing", "AlertEmail")
    AlertDelivery = apps.get_model("billing", "AlertDelivery")
    seen = set()
    emails = AlertDelivery.objects.filter(kind="email", notification__rule__isnull=False).select_related("notification")
    for delivery in emails.order_by("pk").iterator():
        notification = delivery.notification
        kind = notification.kind if notification.kind != "escalated" else "reminder"
        if notification.episode_id is not None and (notification.episode_id, kind) in seen:
            continue  # the old table kept one email of each kind per episode
        seen.add((notification.episode_id, kind))
        AlertEmail.objects.create(
            rule_id=notification.rule_id,
            episode_id=notification.episode_id,
            kind=kind,
            recipients=delivery.recipients,
            subject=notification.subject,
            details=notification.details,
            status=delivery.status,
            attempts=delivery.attempts,
            error=delivery.error,
            created_at=delivery.created_at,
            last_attempt_at=delivery.last_attempt_at,
            sent_at=delivery.sent_at,
        )
    # Migrating forward again converts the emails back: what they became goes now.
    apps.get_model("billing", "AlertNotification").objects.all().delete()


class Migration(migrations.Migration):
    dependencies = [("billing", "0015_budgets_and_channels")]

    operations = [migrations.RunPython(forwards, backwards)]
