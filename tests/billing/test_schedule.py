"""The sync schedule: a dispatcher every minute enqueues accounts whose interval has elapsed,
and a real Celery worker runs the syncs, retrying with backoff."""

from __future__ import annotations

import time
from datetime import timedelta
from io import StringIO

import pytest
from celery.app.task import Task
from django.conf import settings
from django.core.management import CommandError, call_command
from django.utils import timezone

from billing import sync, tasks
from billing.models import Allocation, BalanceSnapshot, SyncOutcome, SyncRun, SyncState
from tests.billing.fake_console import LogRow
from tests.test_celery_worker import worker  # noqa: F401  (a real worker on the configured broker)
from toki_dashboard.celery import app
from usage.models import Provider, UsageRecord
from usage.services import create_account

DEADLINE_SECONDS = 30


def test_the_beat_schedule_runs_the_dispatcher_every_minute():
    entry = settings.CELERY_BEAT_SCHEDULE["billing-dispatch-syncs"]

    assert entry == {"task": "billing.tasks.dispatch_due_syncs", "schedule": 60.0}
    assert entry["task"] in app.tasks


def test_an_account_is_due_again_once_its_interval_has_elapsed(newapi_account):
    newapi_account.sync_interval_minutes = 15
    newapi_account.save()
    now = timezone.now()

    assert sync.claim_due_accounts(now=now) == [newapi_account.pk]
    assert sync.claim_due_accounts(now=now + timedelta(minutes=14)) == []
    assert sync.claim_due_accounts(now=now + timedelta(minutes=15)) == [newapi_account.pk]


def test_two_dispatchers_at_once_enqueue_an_account_once(newapi_account):
    now = timezone.now()

    assert sync.claim_due_accounts(now=now) + sync.claim_due_accounts(now=now) == [newapi_account.pk]


def test_manual_accounts_and_accounts_without_credentials_or_interval_are_not_scheduled(newapi_account):
    create_account(name="Manual", slug="manual", provider=Provider.MANUAL)
    create_account(name="No secrets", slug="bare", provider=Provider.NEWAPI_CONSOLE)
    paused = create_account(name="Paused", slug="paused", provider=Provider.OPENAI_BILLING)
    paused.set_credentials({"api_key": "sk-0123456789abcdefghij"})
    paused.sync_interval_minutes = 0
    paused.save()

    assert sync.claim_due_accounts() == [newapi_account.pk]


def test_the_dispatcher_task_enqueues_each_due_account(newapi_account, monkeypatch):
    enqueued: list[tuple] = []
    monkeypatch.setattr(tasks.sync_account, "delay", lambda *args: enqueued.append(args))

    assert tasks.dispatch_due_syncs.apply().get() == 1
    assert enqueued == [(newapi_account.pk, "schedule")]


def wait_for(condition, what: str) -> None:
    deadline = time.monotonic() + DEADLINE_SECONDS
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert condition(), f"{what} within {DEADLINE_SECONDS}s"


def test_a_real_worker_runs_the_scheduled_sync_and_retries_a_failure(worker, newapi_account, console):  # noqa: F811
    now = int(timezone.now().timestamp())
    console.add_logs(
        *(LogRow(created_at=now - 600 + i, model_name="gpt-4o", prompt_tokens=100 + i, completion_tokens=5, quota=9)
          for i in range(12))
    )  # fmt: skip
    console.fail("/api/user/self", "500")  # the first attempt fails, the retry succeeds

    tasks.dispatch_due_syncs.delay()  # what beat sends every minute

    wait_for(lambda: SyncRun.objects.filter(outcome=SyncOutcome.SUCCESS).exists(), "the worker synced")
    runs = list(SyncRun.objects.order_by("pk").values_list("trigger", "attempt", "outcome"))
    assert runs == [("schedule", 1, SyncOutcome.UNAVAILABLE), ("schedule", 2, SyncOutcome.SUCCESS)]
    assert UsageRecord.objects.filter(account=newapi_account, source="sync").count() == 12
    assert BalanceSnapshot.objects.filter(account=newapi_account).count() == 1
    wait_for(lambda: Allocation.objects.filter(account=newapi_account).count() == 12, "allocations were written")


@pytest.mark.usefixtures("newapi_account")
def test_sync_now_in_the_admin_enqueues_a_manual_sync(staff_client, newapi_account, monkeypatch,
                                                      django_capture_on_commit_callbacks):  # fmt: skip
    enqueued: list[tuple] = []

    def send(task: Task, args: tuple = (), *rest: object, **options: object) -> None:
        if task.name == tasks.sync_account.name:
            enqueued.append(tuple(args))

    # The admin names the task (toki_dashboard.background.enqueue): what is sent is watched.
    monkeypatch.setattr(Task, "apply_async", send)

    with django_capture_on_commit_callbacks(execute=True):
        response = staff_client.post(
            "/admin/billing/provideraccount/",
            {"action": "sync_now", "_selected_action": [newapi_account.pk]},
        )

    assert response.status_code == 302
    assert enqueued == [(newapi_account.pk, "manual")]


def test_an_account_whose_syncs_fail_is_asked_less_often(newapi_account):
    now = timezone.now()
    assert sync.claim_due_accounts(now=now) == [newapi_account.pk]
    SyncState.objects.filter(account=newapi_account).update(consecutive_failures=3)

    assert sync.claim_due_accounts(now=now + timedelta(minutes=19)) == []
    assert sync.claim_due_accounts(now=now + timedelta(minutes=20)) == [newapi_account.pk]


def test_the_sync_provider_command_syncs_and_reports(newapi_account, console):
    out = StringIO()

    call_command("sync_provider", "--account", newapi_account.slug, stdout=out)

    assert out.getvalue().startswith("acme: success in ")
    assert SyncRun.objects.get().trigger == "command"


def test_the_sync_provider_command_fails_when_a_sync_fails(newapi_account, console):
    console.fail("/api/user/self", "success_false")

    with pytest.raises(CommandError, match="1 sync"):
        call_command("sync_provider", stdout=StringIO())
