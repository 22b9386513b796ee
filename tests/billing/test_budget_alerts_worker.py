"""The budget scenario end to end, with a real Celery worker, a real SMTP server and a real
webhook receiver: a team budget of 10 USD a month; usage crossing 50, 80 and 100 % sends one
notification per tier to each channel; once spend stops and the next month starts, one
"resolved"; evaluators racing the worker never send anything twice."""

from __future__ import annotations

import time
from datetime import datetime, timedelta
from decimal import Decimal
from email import message_from_bytes
from email.policy import default as default_policy

from django.core.cache import cache
from django.db import connection
from django.utils import timezone

from billing import alerts
from billing.audit import Actor
from billing.budgets.services import BudgetData, create_budget
from billing.models import AlertNotification, ChannelKind, DeliveryStatus
from billing.notify.channels import create_channel
from tests.billing.conftest import ingest, record
from tests.billing.test_alerts import Sink, smtp_server  # noqa: F401
from tests.billing.test_alerts_concurrency import race
from tests.billing.webhook_receiver import WebhookReceiver
from tests.members import members_with_emails
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from usage.models import Account
from usage.periods import dashboard_tz
from usage.teams.services import create_team

SECRET = "whsec-test-budget-scenario"
DEADLINE_SECONDS = 30


def spend(account: Account, request_id: str, cost: str) -> None:
    """A call of the search team worth `cost` USD, a minute ago."""
    ingest(
        account,
        record(
            request_id, timezone.now() - timedelta(minutes=1), "gpt-4o", 1000, 100, cost, metadata={"team": "search"}
        ),
    )


def wait_until(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert condition(), f"{what} within {DEADLINE_SECONDS}s"


def next_month(now: datetime) -> datetime:
    local = now.astimezone(dashboard_tz())
    first = (local.replace(day=28) + timedelta(days=4)).replace(day=1, hour=1, minute=0, second=0, microsecond=0)
    return first


def test_a_team_budget_notifies_each_tier_once_then_resolves_in_the_next_month(
    worker,  # noqa: F811
    smtp_server: Sink,  # noqa: F811
    webhook_receiver: WebhookReceiver,
    account: Account,
    settings,
    monkeypatch,
):
    settings.ALERTS_EVALUATION_DELAY_SECONDS = 1
    cache.delete(f"billing:alerts:{connection.settings_dict['NAME']}:{account.pk}")
    members_with_emails(account, ["finance@example.com"])
    create_channel(account, kind=ChannelKind.EMAIL, target="finance@example.com")
    create_channel(account, kind=ChannelKind.WEBHOOK, target=webhook_receiver.url, secret=SECRET)
    create_team(account, "search")
    create_budget(
        account,
        BudgetData(name="Search team", amount=Decimal(10), scope="team", target="search", measure="usage_value"),
        Actor.system("tests"),
    )
    wait_until(lambda: alerts.accounts_with_rules() == [account.pk], "the budget's rule exists")

    # Each batch is followed by an evaluation on the worker (debounced, after commit); nobody calls it here.
    for step, (cost, delivered) in enumerate((("5.50", 1), ("3.00", 2), ("2.00", 3)), start=1):
        spend(account, f"search-{step}", cost)
        wait_until(lambda n=delivered: len(webhook_receiver.received) >= n, f"webhook {delivered}")
        wait_until(lambda n=delivered: len(smtp_server.envelopes) >= n, f"email {delivered}")
        if step == 3:
            # Evaluators racing the worker's own evaluation: the critical tier is still told once.
            assert race(lambda: alerts.evaluate_account(Account.objects.get(pk=account.pk))) == []

    # Spend stops; the next month starts, its spend is zero: one "resolved".
    monkeypatch.setattr("billing.alert_episodes.clock", lambda: next_month(timezone.now()))
    from billing.tasks import evaluate_account_alerts

    evaluate_account_alerts.delay(account.pk)
    wait_until(lambda: len(webhook_receiver.received) >= 4, "the resolved webhook")
    wait_until(lambda: len(smtp_server.envelopes) >= 4, "the resolved email")
    assert (
        race(lambda: alerts.evaluate_account(Account.objects.get(pk=account.pk), now=next_month(timezone.now()))) == []
    )
    time.sleep(1.5)  # anything sent twice would have arrived by now

    hooks = [hook.json for hook in webhook_receiver.received]
    assert [(h["event"], h["severity"], h["threshold"]) for h in hooks] == [
        ("alert.firing", "warning", "50"),
        ("alert.escalated", "high", "80"),
        ("alert.escalated", "critical", "100"),
        ("alert.resolved", "ok", "50"),
    ]
    assert [h["value"] for h in hooks[:3]] == ["55", "85", "105"]
    assert all(hook.signature_valid(SECRET) for hook in webhook_receiver.received)
    assert {h["budget"] for h in hooks} == {"Search team"} and {h["account"] for h in hooks} == {"acme"}
    subjects = [
        str(message_from_bytes(e.content, policy=default_policy)["Subject"]).strip() for e in smtp_server.envelopes
    ]
    assert [subject.split(":")[0] for subject in subjects] == [
        "[Acme] Budget Search team",
        "[Acme] Worse (high)",
        "[Acme] Worse (critical)",
        "[Acme] Resolved",
    ]
    assert "will exceed" in subjects[0] or "on track" in subjects[0]
    assert all(envelope.rcpt_tos == ["finance@example.com"] for envelope in smtp_server.envelopes)
    assert AlertNotification.objects.count() == 4
    assert set(AlertNotification.objects.values_list("deliveries__status", flat=True)) == {DeliveryStatus.SENT}
