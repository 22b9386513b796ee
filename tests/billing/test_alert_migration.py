"""Upgrading keeps the alert history: every email sent before becomes a notification with one
email delivery, and episodes remember what they had told; the migration also runs backwards."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone

from billing.models import AlertDelivery, AlertEpisode, AlertNotification

BEFORE = [("billing", "0015_budgets_and_channels")]


@pytest.mark.django_db(transaction=True)
def test_sent_alert_emails_become_notifications_with_their_delivery():
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    account = old.get_model("usage", "Account").objects.create(name="A", slug="a", base_url="https://x.example/v1")
    rule = old.get_model("billing", "AlertRule").objects.create(
        account=account, name="Wallet low", kind="wallet_below", threshold=5, recipients="f@example.com"
    )
    now = timezone.now()
    episode = old.get_model("billing", "AlertEpisode").objects.create(
        rule=rule, account=account, started_at=now, summary="Wallet 1.00 USD", notified_at=now
    )
    old.get_model("billing", "AlertEmail").objects.create(
        rule=rule,
        episode=episode,
        kind="firing",
        recipients=["f@example.com"],
        subject="[A] Wallet 1.00 USD",
        status="sent",
        attempts=1,
        sent_at=now,
    )

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    notification = AlertNotification.objects.get()
    assert (notification.kind, notification.subject, notification.episode_id) == (
        "firing",
        "[A] Wallet 1.00 USD",
        episode.pk,
    )
    delivery = AlertDelivery.objects.get()
    assert (delivery.kind, delivery.recipients, delivery.status, delivery.attempts) == (
        "email",
        ["f@example.com"],
        "sent",
        1,
    )
    assert AlertEpisode.objects.get().notified_severity == 1 and AlertEpisode.objects.get().last_notified_at == now

    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    back = executor.loader.project_state(BEFORE).apps
    assert list(back.get_model("billing", "AlertEmail").objects.values_list("kind", "status")) == [("firing", "sent")]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
