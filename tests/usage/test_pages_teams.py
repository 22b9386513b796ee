"""The Teams page and a key's move on its edit page: who may do what, and what each form does."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from django.test import Client

from billing.models import AuditEvent
from tests.billing.conftest import ingest, record
from usage import rollups
from usage.models import Account, ApiKey, Team, UsageRecord
from usage.teams.services import create_team


def at(day: int) -> datetime:
    return datetime(2026, 3, day, 12, tzinfo=UTC)


@pytest.fixture
def keyed(account: Account) -> Account:
    ingest(
        account,
        *(
            record(f"r{day}", at(day), "gpt-4o", 100, 10, "0.10", api_key="name:search-api")
            for day in (1, 2, 3, 20, 21)
        ),
    )
    create_team(account, "growth")
    Team.objects.create(account=account, name="Reserch", first_seen_in_usage=True)
    return account


def test_finance_and_engineers_read_the_teams_page_without_its_forms(keyed, finance_client: Client, engineer_client):
    for client in (finance_client, engineer_client):
        response = client.get("/teams/")

        assert response.status_code == 200
        page = response.content.decode()
        assert 'data-team="growth"' in page and "first seen in usage" in page
        assert 'name="form" value="create"' not in page


def test_only_admins_may_create_rename_or_merge_teams(keyed, finance_client: Client, engineer_client: Client):
    for client in (finance_client, engineer_client):
        assert client.post("/teams/", {"form": "create", "name": "ops"}).status_code == 403
    assert not Team.objects.filter(name="ops").exists()


def test_an_admin_creates_a_team_and_a_second_spelling_of_it_is_refused(keyed, admin_client: Client):
    assert admin_client.post("/teams/", {"form": "create", "name": "Platform"}).status_code == 302

    response = admin_client.post("/teams/", {"form": "create", "name": "platform"})

    assert response.status_code == 400
    assert "already exists" in response.content.decode()
    assert Team.objects.filter(name__iexact="platform").count() == 1
    assert (
        AuditEvent.objects.filter(action="team.create", object_id=str(Team.objects.get(name="Platform").pk)).count()
        == 1
    )


def test_an_admin_renames_a_team_and_merges_a_typo_from_the_page(keyed, admin_client: Client):
    growth, typo = Team.objects.get(name="growth"), Team.objects.get(name="Reserch")
    ingest(keyed, record("t1", at(5), "gpt-4o", 1, 1, "0.1", api_key="name:x", metadata={"team": "reserch"}))

    response = admin_client.post("/teams/", {"form": "rename", "team": growth.pk, f"rename-{growth.pk}-name": "Growth"})
    assert response.status_code == 302
    research = create_team(keyed, "Research")
    response = admin_client.post("/teams/", {"form": "merge", "team": typo.pk, f"merge-{typo.pk}-into": research.pk})

    assert response.status_code == 302
    assert sorted(Team.objects.values_list("name", flat=True)) == ["Growth", "Research"]
    assert UsageRecord.objects.get(request_id="t1").team == "Research"
    assert rollups.verify(keyed) == []


def test_moving_a_key_from_a_date_on_its_edit_page_moves_its_usage_from_that_day(keyed, admin_client: Client):
    key = ApiKey.objects.get(name="search-api")

    response = admin_client.post(
        f"/keys/{key.pk}/edit/", {"name": "search-api", "team": "growth", "since": "date", "day": "2026-03-20"}
    )

    assert response.status_code == 302
    teams = dict(UsageRecord.objects.values_list("request_id", "team"))
    assert teams == {"r1": "", "r2": "", "r3": "", "r20": "growth", "r21": "growth"}
    assert rollups.verify(keyed) == []
    page = admin_client.get(f"/keys/{key.pk}/edit/").content.decode()
    assert 'id="key-history-table"' in page and "growth" in page


@pytest.mark.parametrize("since", [{"since": "all"}, {"since": "date", "day": "2026-03-20"}])
def test_an_engineer_moves_a_key_from_now_only_its_past_usage_is_finances_record(
    keyed, engineer_client: Client, since: dict
):
    key = ApiKey.objects.get(name="search-api")

    response = engineer_client.post(f"/keys/{key.pk}/edit/", {"name": "search-api", "team": "growth"} | since)

    assert response.status_code == 400
    assert "Re-attribute its past usage?: Select a valid choice." in response.content.decode()
    key.refresh_from_db()
    assert key.team == "" and not key.team_assignments.exists()
    assert set(UsageRecord.objects.values_list("team", flat=True)) == {""}


def test_an_engineers_key_form_offers_only_a_move_from_now_and_says_who_can_move_the_past(
    keyed, engineer_client: Client, admin_client: Client
):
    key = ApiKey.objects.get(name="search-api")

    engineers = engineer_client.get(f"/keys/{key.pk}/edit/").content.decode()
    admins = admin_client.get(f"/keys/{key.pk}/edit/").content.decode()

    assert 'value="all"' not in engineers and 'name="day"' not in engineers
    assert "Only an admin can move its past usage" in engineers
    assert 'value="all"' in admins and 'name="day"' in admins


def test_from_a_date_without_the_date_is_refused_naming_the_field(keyed, admin_client: Client):
    key = ApiKey.objects.get(name="search-api")

    response = admin_client.post(f"/keys/{key.pk}/edit/", {"name": "search-api", "team": "growth", "since": "date"})

    assert response.status_code == 400
    assert "Choose the day the key moved." in response.content.decode()
    assert set(UsageRecord.objects.values_list("team", flat=True)) == {""}


def test_a_key_whose_team_is_spelt_otherwise_opens_with_that_team_chosen_and_saving_keeps_it(
    keyed, engineer_client: Client
):
    ApiKey.objects.filter(name="search-api").update(team="GROWTH")  # as a legacy label had it
    key = ApiKey.objects.get(name="search-api")

    page = engineer_client.get(f"/keys/{key.pk}/edit/").content.decode()
    assert '<option value="growth" selected>' in page

    engineer_client.post(f"/keys/{key.pk}/edit/", {"name": "renamed", "team": "growth", "since": "now"})
    key.refresh_from_db()
    assert (key.name, key.team) == ("renamed", "GROWTH")
    assert not key.team_assignments.exists()  # a rename, not a move
