"""Teams as things: names unique whatever their case, renames and merges that every figure
follows, keys moved from a moment (or with all their past), and ingestion that files each
record under the team its key had when the record happened."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest
from django.core.exceptions import ValidationError

from billing.budgets.spend import spend_by_day
from billing.models import AuditEvent, Budget, BudgetScope, DailyPaid
from billing.paid import rebuild as rebuild_paid
from billing.selectors.statements import monthly_statement
from tests.billing.conftest import allocate, ingest, record, top_up
from toki_dashboard.roles import Role
from usage import rollups
from usage.budget_gate import Block, GateState
from usage.models import Account, ApiKey, DailyUsage, HourlyUsage, KeyTeamAssignment, Team, TeamRelabel, UsageRecord
from usage.teams import services
from usage.teams.services import create_team, merge_teams, move_key, rename_team

MARCH = date(2026, 3, 1)
NOW = datetime(2026, 4, 2, 12, tzinfo=UTC)


def at(day: int, hour: int = 12) -> datetime:
    return datetime(2026, 3, day, hour, tzinfo=UTC)


def usage(account: Account, key: str, days: range, *, cost: str = "0.10", **extra) -> None:
    ingest(
        account,
        *(record(f"{key}-{day}", at(day), "gpt-4o", 100, 10, cost, api_key=f"name:{key}", **extra) for day in days),
    )


def teams_of_records(account: Account, key: str) -> dict[str, int]:
    found: dict[str, int] = {}
    for team in UsageRecord.objects.filter(account=account, api_key__name=key).values_list("team", flat=True):
        found[team] = found.get(team, 0) + 1
    return found


def statement_by_team(account: Account) -> dict[str, Decimal]:
    return {row.key: row.value for row in monthly_statement(account, first_day=MARCH).by_team}


def paid_by_team(account: Account) -> dict[str, Decimal]:
    found: dict[str, Decimal] = {}
    for row in DailyPaid.objects.filter(account=account):
        found[row.team] = found.get(row.team, Decimal(0)) + row.plan_paid + row.wallet_paid
    return {team: amount for team, amount in found.items() if amount}


@pytest.fixture
def billed(account: Account) -> Account:
    """Thirty days of March on key "search-api" (no team yet), paid from the wallet."""
    top_up(account, "t1", "100", at(1, 0))
    usage(account, "search-api", range(1, 31))
    allocate(account, NOW)
    rebuild_paid(account)
    return account


# --- Names ---------------------------------------------------------------------------------------


def test_team_names_are_unique_per_account_whatever_their_case_and_spacing(account: Account):
    create_team(account, "Growth")

    for same in ("growth", "GROWTH", "  growth  "):
        with pytest.raises(ValidationError):
            create_team(account, same)
    assert list(Team.objects.filter(account=account).values_list("name", flat=True)) == ["Growth"]


def test_another_account_may_have_a_team_of_the_same_name(account: Account):
    other = Account.objects.create(name="Other", slug="other", base_url="https://other.example")
    create_team(account, "Growth")

    assert create_team(other, "growth").name == "growth"


def test_a_team_name_in_metadata_files_the_record_under_the_existing_team_whatever_its_case(account: Account):
    create_team(account, "Growth")

    usage(account, "k", range(1, 3), metadata={"team": "growth "})
    usage(account, "j", range(3, 4), metadata={"team": "GROWTH"})

    assert set(UsageRecord.objects.filter(account=account).values_list("team", flat=True)) == {"Growth"}
    assert Team.objects.filter(account=account).count() == 1


def test_an_unknown_team_name_in_metadata_creates_the_team_flagged_as_first_seen_in_usage(account: Account):
    usage(account, "k", range(1, 2), metadata={"team": "Reserch"})

    team = Team.objects.get(account=account)
    assert (team.name, team.first_seen_in_usage) == ("Reserch", True)
    assert UsageRecord.objects.get(account=account).team == "Reserch"


# --- Moving a key --------------------------------------------------------------------------------


def test_moving_a_key_from_a_date_re_attributes_exactly_its_usage_from_then_and_rollups_equal_a_recount(
    billed: Account,
):
    growth = create_team(billed, "growth")
    key = ApiKey.objects.get(account=billed, name="search-api")
    before_total = statement_by_team(billed)[""]

    move = move_key(key, growth, starts_at=at(21, 0), now=NOW)

    assert move.records == 10
    assert teams_of_records(billed, "search-api") == {"": 20, "growth": 10}
    assert rollups.verify(billed) == []
    by_team = statement_by_team(billed)
    assert by_team == {"": Decimal("2.00"), "growth": Decimal("1.00")}
    assert by_team[""] + by_team["growth"] == before_total
    # What was paid follows too, and stays equal to a rebuild from the allocations.
    assert paid_by_team(billed) == {"": Decimal("2.00"), "growth": Decimal("1.00")}
    rebuild_paid(billed)
    assert paid_by_team(billed) == {"": Decimal("2.00"), "growth": Decimal("1.00")}
    key.refresh_from_db()
    assert key.team == "growth"


def test_moving_a_key_from_now_leaves_its_history_where_it_was(billed: Account):
    growth = create_team(billed, "growth")
    key = ApiKey.objects.get(account=billed, name="search-api")

    move = move_key(key, growth, starts_at=NOW, now=NOW)

    assert move.records == 0
    assert teams_of_records(billed, "search-api") == {"": 30}
    assert statement_by_team(billed) == {"": Decimal("3.00")}
    key.refresh_from_db()
    assert key.team == "growth"
    # Its next request counts for its new team.
    ingest(billed, record("next", NOW + timedelta(minutes=5), "gpt-4o", 1, 1, "0.5", api_key="name:search-api"))
    assert UsageRecord.objects.get(request_id="next").team == "growth"


def test_moving_a_key_with_all_its_past_usage_moves_every_figure_including_paid_and_team_budgets(billed: Account):
    growth = create_team(billed, "growth")
    budget = Budget.objects.create(
        account=billed, name="Growth", scope=BudgetScope.TEAM, target="growth", amount=Decimal(100)
    )
    key = ApiKey.objects.get(account=billed, name="search-api")

    move_key(key, growth, starts_at=None, now=NOW)

    assert teams_of_records(billed, "search-api") == {"growth": 30}
    assert rollups.verify(billed) == []
    assert set(HourlyUsage.objects.filter(account=billed, requests__gt=0).values_list("team", flat=True)) == {"growth"}
    assert statement_by_team(billed) == {"growth": Decimal("3.00")}
    assert paid_by_team(billed) == {"growth": Decimal("3.00")}
    assert sum(spend_by_day(budget, MARCH, date(2026, 3, 31)).values()) == Decimal("3.00")


def test_records_that_named_their_own_team_keep_it_when_their_key_moves(account: Account):
    usage(account, "k", range(1, 3), metadata={"team": "support"})
    usage(account, "k", range(3, 5))
    growth = create_team(account, "growth")
    key = ApiKey.objects.get(account=account, name="k")

    move_key(key, growth, starts_at=None, now=NOW)

    assert teams_of_records(account, "k") == {"support": 2, "growth": 2}
    assert rollups.verify(account) == []


def test_a_late_record_gets_the_team_its_key_had_when_it_happened(account: Account):
    usage(account, "k", range(1, 2))
    platform, growth = create_team(account, "platform"), create_team(account, "growth")
    key = ApiKey.objects.get(account=account, name="k")
    move_key(key, platform, starts_at=at(5, 0), now=NOW)
    move_key(key, growth, starts_at=at(20, 0), now=NOW)

    # Imported late, out of order: each takes the team of its moment.
    ingest(
        account,
        record("late-3", at(3), "gpt-4o", 1, 1, "0.1", api_key="name:k"),
        record("late-10", at(10), "gpt-4o", 1, 1, "0.1", api_key="name:k"),
        record("late-25", at(25), "gpt-4o", 1, 1, "0.1", api_key="name:k"),
    )

    teams = dict(
        UsageRecord.objects.filter(account=account, request_id__startswith="late").values_list("request_id", "team")
    )
    assert teams == {"late-3": "", "late-10": "platform", "late-25": "growth"}
    assert rollups.verify(account) == []


def test_a_later_move_from_an_earlier_date_overrides_what_came_after_it(account: Account):
    usage(account, "k", range(1, 31))
    a, b = create_team(account, "a"), create_team(account, "b")
    key = ApiKey.objects.get(account=account, name="k")
    move_key(key, a, starts_at=at(20, 0), now=NOW)

    move_key(key, b, starts_at=at(10, 0), now=NOW)

    assert teams_of_records(account, "k") == {"": 9, "b": 21}
    ingest(account, record("late-25", at(25, 1), "gpt-4o", 1, 1, "0.1", api_key="name:k"))
    assert UsageRecord.objects.get(request_id="late-25").team == "b"
    assert KeyTeamAssignment.objects.filter(api_key=key).count() == 3  # the key's first team, a, b: the history


def test_a_key_cannot_move_from_a_date_in_the_future(account: Account):
    usage(account, "k", range(1, 2))
    key = ApiKey.objects.get(account=account, name="k")

    with pytest.raises(ValidationError):
        move_key(key, create_team(account, "a"), starts_at=NOW + timedelta(days=1), now=NOW)


# --- Rename and merge ----------------------------------------------------------------------------


def test_a_rename_follows_into_records_rollups_keys_budgets_paid_and_reports(billed: Account):
    growth = create_team(billed, "growth")
    move_key(ApiKey.objects.get(account=billed, name="search-api"), growth, starts_at=None, now=NOW)
    budget = Budget.objects.create(
        account=billed, name="Growth", scope=BudgetScope.TEAM, target="growth", amount=Decimal(100)
    )

    renamed = rename_team(growth, "Growth marketing")

    assert (renamed.records, renamed.run) == (30, None)
    assert teams_of_records(billed, "search-api") == {"Growth marketing": 30}
    assert set(DailyUsage.objects.filter(account=billed).values_list("team", flat=True)) == {"Growth marketing"}
    assert rollups.verify(billed) == []
    assert ApiKey.objects.get(account=billed, name="search-api").team == "Growth marketing"
    budget.refresh_from_db()
    assert budget.target == "Growth marketing"
    assert sum(spend_by_day(budget, MARCH, date(2026, 3, 31)).values()) == Decimal("3.00")
    assert statement_by_team(billed) == {"Growth marketing": Decimal("3.00")}
    assert paid_by_team(billed) == {"Growth marketing": Decimal("3.00")}


def test_a_rename_to_another_teams_name_is_refused_with_a_hint_to_merge(account: Account):
    create_team(account, "growth")
    support = create_team(account, "support")

    with pytest.raises(ValidationError, match="merge"):
        rename_team(support, "Growth")


def test_merging_a_typo_into_the_team_meant_moves_its_usage_keys_history_and_budgets(billed: Account):
    usage(billed, "typo-key", range(1, 5), metadata={"team": "Reserch"})
    usage(billed, "good-key", range(1, 5), metadata={"team": "Research"})
    allocate(billed, NOW)
    typo, research = Team.objects.get(name="Reserch"), Team.objects.get(name="Research")
    move_key(ApiKey.objects.get(name="search-api"), typo, starts_at=at(29, 0), now=NOW)
    budget = Budget.objects.create(account=billed, name="R", scope=BudgetScope.TEAM, target="Reserch", amount=10)

    merge_teams(typo, research)

    assert not Team.objects.filter(name="Reserch").exists()
    assert set(UsageRecord.objects.filter(account=billed).values_list("team", flat=True)) == {"", "Research"}
    assert rollups.verify(billed) == []
    assert statement_by_team(billed)["Research"] == Decimal("0.80") + Decimal("0.20")
    assert paid_by_team(billed)["Research"] == Decimal("1.00")
    assert KeyTeamAssignment.objects.filter(team=research).count() == 1
    assert ApiKey.objects.get(name="search-api").team == "Research"
    budget.refresh_from_db()
    assert budget.target == "Research"


def test_each_change_to_teams_leaves_an_audit_entry(account: Account, make_user):
    admin = make_user("ada", Role.ADMIN)
    usage(account, "k", range(1, 2))
    a = create_team(account, "a", user=admin)
    b = create_team(account, "b", user=admin)
    move_key(ApiKey.objects.get(name="k"), a, starts_at=None, user=admin, now=NOW)
    rename_team(a, "A team", user=admin)
    merge_teams(b, a, user=admin)

    actions = list(AuditEvent.objects.filter(account=account).order_by("pk").values_list("action", "actor_label"))
    assert actions == [
        ("team.create", "user ada"),
        ("team.create", "user ada"),
        ("key.move", "user ada"),
        ("team.rename", "user ada"),
        ("team.merge", "user ada"),
    ]


def test_a_rename_of_many_records_relabels_them_in_the_background_with_progress_and_ends_exact(
    billed: Account, monkeypatch, django_capture_on_commit_callbacks, repricing_runs_after_commit, admin_client
):
    monkeypatch.setattr(services, "SYNC_RECORDS", 10)
    monkeypatch.setattr(services, "CHUNK_SIZE", 7)
    growth = create_team(billed, "growth")
    move_key(ApiKey.objects.get(account=billed, name="search-api"), growth, starts_at=None, now=NOW)
    budget = Budget.objects.create(account=billed, name="G", scope=BudgetScope.TEAM, target="growth", amount=100)

    with django_capture_on_commit_callbacks() as callbacks:
        renamed = rename_team(growth, "Growth marketing")

    # The team, its keys and its budgets have the new name at once; the records wait for the worker.
    assert renamed.records == 0 and renamed.run is not None and renamed.run.total == 30
    assert ApiKey.objects.get(name="search-api").team == "Growth marketing"
    budget.refresh_from_db()
    assert budget.target == "Growth marketing"
    assert "0 of 30 requests relabelled" in admin_client.get("/teams/").content.decode()

    with repricing_runs_after_commit():  # Celery in-process: runs the enqueued task
        for callback in callbacks:
            callback()

    assert teams_of_records(billed, "search-api") == {"Growth marketing": 30}
    assert rollups.verify(billed) == []
    assert statement_by_team(billed) == {"Growth marketing": Decimal("3.00")}
    assert paid_by_team(billed) == {"Growth marketing": Decimal("3.00")}
    assert TeamRelabel.objects.get().finished_at is not None
    assert "requests relabelled…" not in admin_client.get("/teams/").content.decode()


def test_the_proxy_gate_blocks_a_team_whatever_the_case_its_header_spells_it_in():
    block = Block(budget="Growth", message="exhausted", resets_at=None)
    state = GateState(teams={"Growth": block})

    assert state.block_for(now=NOW, fingerprint=None, team="growth ", model=None) is block
    assert state.block_for(now=NOW, fingerprint=None, team="support", model=None) is None
