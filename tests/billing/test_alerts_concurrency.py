"""Workers evaluating the same rule at the same moment send one email, and one "resolved" email.

Each thread has its own database connection (Django gives every thread one), so the
claims really race in the database. The test is about PostgreSQL, where the workers run
in parallel (CI runs it there); on SQLite the same code is exercised, with the writers
serialised by the database lock, and must give the same answer.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta

from django.core import mail
from django.db import connections
from django.utils import timezone

from billing import alerts
from billing.models import AlertEpisode, AlertNotification, NotificationKind
from tests.billing.test_alerts import low_balance_rule, nearly_used_up, recover
from usage.models import Account

WORKERS = 4


def race(work: Callable[[], object]) -> list[BaseException]:
    """Run `work` in WORKERS threads released at the same instant; return what they raised."""
    barrier = threading.Barrier(WORKERS)
    errors: list[BaseException] = []

    def worker() -> None:
        try:
            barrier.wait(timeout=30)
            work()
        except BaseException as exc:
            errors.append(exc)
        finally:
            connections.close_all()

    threads = [threading.Thread(target=worker) for _ in range(WORKERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    return errors


def test_concurrent_workers_send_one_firing_email_and_then_one_resolved_email(
    transactional_db, account: Account, caplog
):
    now = timezone.now()
    nearly_used_up(account, now)
    rule = low_balance_rule(account)

    assert race(lambda: alerts.evaluate_account(Account.objects.get(pk=account.pk), now=now)) == []

    assert len(mail.outbox) == 1
    assert AlertEpisode.objects.filter(rule=rule).count() == 1
    assert list(AlertNotification.objects.values_list("kind", flat=True)) == [NotificationKind.FIRING]

    recover(account, now)
    later = now + timedelta(minutes=5)
    assert race(lambda: alerts.evaluate_account(Account.objects.get(pk=account.pk), now=later)) == []

    assert len(mail.outbox) == 2
    assert mail.outbox[1].subject.startswith("[Acme] Resolved: ")
    assert AlertNotification.objects.filter(kind=NotificationKind.RESOLVED).count() == 1
    assert AlertEpisode.objects.get(rule=rule).resolved_at == later
    assert not [r for r in caplog.records if r.levelname == "ERROR"], "a worker failed to evaluate the rule"
