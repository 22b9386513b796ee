"""Upgrading makes teams of the names already in use: one team per name keys and rollups carry
(spellings that differ only in case or spaces are one), and each key with a team gets that team
from its first request; records keep their names."""

from __future__ import annotations

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

from usage.models import Account, ApiKey, KeyTeamAssignment, Team, UsageRecord
from usage.schemas import validate_records
from usage.services import record_usage

BEFORE = [("usage", "0060_user_language")]


@pytest.mark.django_db(transaction=True)
def test_teams_are_made_from_the_names_keys_and_rollups_carry():
    account = Account.objects.create(name="A", slug="a", base_url="https://x.example/v1")
    valid, _ = validate_records(
        [
            {"request_id": "1", "occurred_at": "2026-11-02T10:00:00Z", "model": "m", "api_key": "name:k1",
             "metadata": {"team": "Growth"}},
            {"request_id": "2", "occurred_at": "2026-11-02T11:00:00Z", "model": "m", "api_key": "name:k2",
             "metadata": {"team": "support"}},
        ]
    )  # fmt: skip
    record_usage(account, valid, source="api")
    executor = MigrationExecutor(connection)
    executor.migrate(BEFORE)
    old = executor.loader.project_state(BEFORE).apps
    old.get_model("usage", "ApiKey").objects.filter(name="k1").update(team="growth")  # another spelling
    old.get_model("usage", "ApiKey").objects.filter(name="k2").update(team="")

    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())

    assert sorted(Team.objects.filter(account=account).values_list("name", flat=True)) == ["growth", "support"]
    k1 = ApiKey.objects.get(name="k1")
    assert [(a.team.name, a.starts_at) for a in KeyTeamAssignment.objects.filter(api_key=k1)] == [("growth", None)]
    assert not KeyTeamAssignment.objects.filter(api_key__name="k2").exists()
    assert dict(UsageRecord.objects.values_list("request_id", "team")) == {"1": "Growth", "2": "support"}
