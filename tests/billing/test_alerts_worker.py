"""End to end: usage arrives, a real Celery worker evaluates the rules, a real SMTP server gets the email."""

from __future__ import annotations

import time

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from billing.models import AlertDelivery, AlertEpisode, DeliveryStatus
from tests.billing.test_alerts import RECIPIENTS, Sink, low_balance_rule, nearly_used_up, smtp_server  # noqa: F401
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from usage.models import Account

DEADLINE_SECONDS = 30


def test_a_batch_that_drains_the_plan_is_followed_by_one_email_sent_by_the_worker(
    worker,  # noqa: F811
    smtp_server: Sink,  # noqa: F811
    account: Account,
    settings,
):
    settings.ALERTS_EVALUATION_DELAY_SECONDS = 1
    cache.delete(f"billing:alerts:{connection.settings_dict['NAME']}:{account.pk}")  # no debounce left from before
    rule = low_balance_rule(account)

    # Ingesting schedules the evaluation (after commit, debounced); nobody calls it here.
    nearly_used_up(account, timezone.now())

    deadline = time.monotonic() + DEADLINE_SECONDS
    while not smtp_server.envelopes and time.monotonic() < deadline:
        time.sleep(0.2)
    (envelope,) = smtp_server.envelopes
    assert sorted(envelope.rcpt_tos) == sorted(RECIPIENTS)
    assert b"Token balance 5.0%" in envelope.content
    assert AlertEpisode.objects.get(rule=rule).resolved_at is None
    assert AlertDelivery.objects.get(notification__rule=rule).status == DeliveryStatus.SENT
