"""The admin names keys but does not move them between teams: a move is made on the Keys page,
which records from when it holds (usage.teams.services.move_key)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from usage.models import ApiKey, UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage
from usage.teams.models import KeyTeamAssignment


@pytest.fixture
def superuser_client(db) -> Client:
    client = Client()
    client.force_login(User.objects.create_superuser("root", "root@example.com", "pw"))
    return client


def _record(request_id: str, occurred_at: str) -> list:
    valid, rejected = validate_records(
        [
            {
                "request_id": request_id,
                "occurred_at": occurred_at,
                "model": "m",
                "api_key": "name:search-bot",
                "usage": {"prompt_tokens": 5},
            }
        ]
    )
    assert not rejected
    return valid


def test_saving_a_key_in_the_admin_renames_it_and_leaves_its_team_and_history_alone(superuser_client, account):
    record_usage(account, _record("early", "2026-11-20T10:00:00Z"), source="api")
    key = ApiKey.objects.get()
    ApiKey.objects.filter(pk=key.pk).update(team="search")

    page = superuser_client.get(reverse("admin:usage_apikey_change", args=[key.pk]))
    assert page.status_code == 200
    assert 'name="team"' not in page.content.decode()  # shown, not editable

    saved = superuser_client.post(
        reverse("admin:usage_apikey_change", args=[key.pk]),
        {"name": "Search bot", "team": "growth", "provider_status": key.provider_status},
    )
    assert saved.status_code == 302, saved.content.decode()[:2000]
    key.refresh_from_db()
    assert (key.name, key.team) == ("Search bot", "search")
    assert not KeyTeamAssignment.objects.filter(api_key=key).exists()

    # A late record from before any move still counts for the team the key has always had.
    record_usage(account, _record("late", "2026-11-01T10:00:00Z"), source="import")
    assert UsageRecord.objects.get(request_id="late").team == "search"


def test_a_rename_in_the_admin_takes_the_keys_budgets_with_it(superuser_client, account):
    from billing.audit import Actor
    from billing.budgets.services import BudgetData, create_budget

    record_usage(account, _record("early", "2026-11-20T10:00:00Z"), source="api")
    key = ApiKey.objects.get()
    budget, _ = create_budget(
        account, BudgetData(name="Bot", amount=Decimal(5), scope="api_key", target="search-bot"), Actor.system("tests")
    )

    saved = superuser_client.post(
        reverse("admin:usage_apikey_change", args=[key.pk]), {"name": "Search bot", "provider_status": ""}
    )

    assert saved.status_code == 302, saved.content.decode()[:2000]
    budget.refresh_from_db()
    assert budget.target == "Search bot"
