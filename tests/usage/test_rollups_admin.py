"""The admin shows the rollups but cannot add, change or delete a row: they must stay a recount."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from usage import rollups
from usage.models import Account, DailyUsage, HourlyUsage
from usage.schemas import validate_records
from usage.services import record_usage


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


@pytest.fixture
def usage(account) -> None:
    valid, _ = validate_records(
        [{"request_id": "r", "occurred_at": "2026-11-20T10:00:00Z", "model": "m", "usage": {"prompt_tokens": 5}}]
    )
    record_usage(account, valid, source="api")


@pytest.mark.parametrize("model", [HourlyUsage, DailyUsage])
def test_rollup_rows_can_be_looked_at_but_not_added_changed_or_deleted(superuser_client, account, usage, model):
    row = model.objects.get()
    name = f"admin:usage_{model._meta.model_name}"

    assert superuser_client.get(reverse(f"{name}_changelist")).status_code == 200
    assert superuser_client.get(reverse(f"{name}_change", args=[row.pk])).status_code == 200
    assert superuser_client.get(reverse(f"{name}_add")).status_code == 403
    assert superuser_client.post(reverse(f"{name}_delete", args=[row.pk]), {"post": "yes"}).status_code == 403
    bulk = superuser_client.post(
        reverse(f"{name}_changelist"), {"action": "delete_selected", "_selected_action": [row.pk], "post": "yes"}
    )
    assert bulk.status_code in (200, 302)
    assert superuser_client.post(reverse(f"{name}_change", args=[row.pk]), {"requests": "99"}).status_code == 403

    assert model.objects.filter(pk=row.pk, requests=1).exists()
    assert rollups.verify(account) == []


def test_the_account_admin_rebuilds_a_corrupted_rollup_on_a_worker_after_commit(
    superuser_client, account, usage, monkeypatch, django_capture_on_commit_callbacks
):
    HourlyUsage.objects.update(requests=99)
    assert rollups.verify(account) != []
    ran: list[int] = []
    monkeypatch.setattr(
        "usage.tasks.rebuild_rollups.delay",
        lambda account_id: ran.append(rollups.rebuild(Account.objects.get(pk=account_id))),
    )

    with django_capture_on_commit_callbacks(execute=True) as queued:
        response = superuser_client.post(
            reverse("admin:usage_account_changelist"), {"action": "rebuild_rollups", "_selected_action": [account.pk]}
        )

    assert response.status_code == 302
    assert len(queued) == 1 and ran == [1]
    assert rollups.verify(account) == []
